//! What the pipeline's benchmarks share: a throw-away namespace to run in, and medians.

use std::process::Command;
use std::time::Duration;

#[path = "../../../../tests/bench/median.rs"]
mod median;

const INIT_IPC_NS: &str = "ipc:[4026531839]";

/// Objects are never created in the host's namespace: in it, run this benchmark again inside
/// a new user + IPC namespace and exit with its status. `--list` (from `cargo test
/// --benches`) exits at once: these benchmarks have no harness.
pub fn in_throwaway_namespace() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        std::process::exit(0);
    }
    let ns = std::fs::read_link("/proc/thread-self/ns/ipc").unwrap();
    if ns.to_string_lossy() == INIT_IPC_NS {
        let status = Command::new("unshare")
            .args(["--user", "--map-root-user", "--ipc"])
            .arg(std::env::current_exe().unwrap())
            .args(args.iter().skip(1))
            .status()
            .expect("unshare (util-linux) is needed to run this benchmark");
        std::process::exit(status.code().unwrap_or(1));
    }
}

/// The median of 31 runs after one to warm up.
pub fn median(f: impl FnMut()) -> Duration {
    median::median_of(31, f).0
}

/// The baseline of every IPC benchmark: the median time to merely read the three
/// /proc/sysvipc files (no parsing at all).
// Not every benchmark that includes this module measures against it.
#[allow(dead_code)]
pub fn raw_read() -> Duration {
    use std::io::Read;
    let mut buf = Vec::with_capacity(8 << 20);
    median(|| {
        for f in ["/proc/sysvipc/sem", "/proc/sysvipc/msg", "/proc/sysvipc/shm"] {
            buf.clear();
            std::fs::File::open(f).unwrap().read_to_end(&mut buf).unwrap();
        }
    })
}
