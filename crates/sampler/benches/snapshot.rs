//! Snapshot cost against the baseline of merely reading the three /proc/sysvipc files.
//!
//! `cargo bench -p ipcwatch-sampler` re-executes itself in a throw-away user + IPC namespace
//! (`unshare`), raises that namespace's SHMMNI, creates N = 0, 1,000 and 10,000 objects of each
//! kind, and prints per N the median time of:
//! * `raw read`: open + read() + close of /proc/sysvipc/{sem,msg,shm} (no parsing at all);
//! * `snapshot`: what the daemon does each second (INFO calls, limits, three `*_STAT_ANY` walks);
//! * `snapshot+rss`: the one-shot report, which also parses /proc/sysvipc/shm for per-segment
//!   resident/swapped bytes.
//!
//! Goal: snapshot <= 0.5x raw read at 10,000 objects.

use std::io::Read;
use std::process::Command;
use std::time::Duration;

use ipcwatch_sampler::{testkit as tk, Sampler, SamplerConfig};

#[path = "../../../tests/bench/median.rs"]
mod median;

const INIT_IPC_NS: &str = "ipc:[4026531839]";
const RUNS: usize = 21;

fn main() {
    let ns = std::fs::read_link("/proc/thread-self/ns/ipc").unwrap();
    if ns.to_string_lossy() == INIT_IPC_NS {
        // Never create objects in the host's namespace: go again inside a new one.
        let me = std::env::current_exe().unwrap();
        let status = Command::new("unshare")
            .args(["--user", "--map-root-user", "--ipc"])
            .arg(me)
            .args(std::env::args().skip(1))
            .status()
            .expect("unshare (util-linux) is needed to run this benchmark");
        std::process::exit(status.code().unwrap_or(1));
    }
    if std::env::args().any(|a| a == "--list") {
        // `cargo test --benches` asks for the list of benchmarks; this one has no harness.
        return;
    }
    std::fs::write("/proc/sys/kernel/shmmni", "32768\n").expect("raise SHMMNI in the namespace");

    println!(
        "{:>7} {:>14} {:>14} {:>8} {:>14} {:>8}",
        "N", "raw read", "snapshot", "ratio", "snapshot+rss", "ratio"
    );
    let mut made = 0;
    for n in [0usize, 1_000, 10_000] {
        while made < n {
            tk::sem_create(0, 1).unwrap();
            let q = tk::msg_create(0).unwrap();
            tk::msg_send(q, 16).unwrap();
            tk::shm_create(0, 4096).unwrap();
            made += 1;
        }
        let mut buf = Vec::with_capacity(4 << 20);
        let raw = median(|| {
            for f in ["/proc/sysvipc/sem", "/proc/sysvipc/msg", "/proc/sysvipc/shm"] {
                buf.clear();
                std::fs::File::open(f).unwrap().read_to_end(&mut buf).unwrap();
            }
        });
        let mut daemon = Sampler::new(SamplerConfig::default());
        let snap = median(|| {
            let s = daemon.snapshot();
            assert!(s.ok());
            assert_eq!(s.message_queues.as_ref().unwrap().items.len(), n);
        });
        let mut report = Sampler::new(SamplerConfig { segment_memory: true, ..SamplerConfig::default() });
        let full = median(|| {
            let s = report.snapshot();
            assert_eq!(s.shared_memory.as_ref().unwrap().items.len(), n);
        });
        println!(
            "{:>7} {:>11.1} µs {:>11.1} µs {:>7.2}x {:>11.1} µs {:>7.2}x",
            n,
            us(raw),
            us(snap),
            snap.as_secs_f64() / raw.as_secs_f64(),
            us(full),
            full.as_secs_f64() / raw.as_secs_f64()
        );
    }
}

fn median(f: impl FnMut()) -> Duration {
    median::median_of(RUNS, f).0
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
