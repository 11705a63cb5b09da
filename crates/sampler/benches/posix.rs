//! The POSIX part of a tick: message queues (a private mqueue mount, then `mq_getsetattr` per
//! queue) and /dev/shm (statfs and a directory listing), on real objects.
//!
//! `cargo bench -p ipcwatch-sampler --bench posix` re-executes itself in a throw-away user +
//! IPC + mount namespace. Two loads:
//! * 100 container-like namespaces (`unshare --ipc --mount`), each with its own /dev (a 64 MiB
//!   /dev/shm holding 3 files, and the namespace's mqueue on /dev/mqueue, as Docker sets them
//!   up) and 10 queues. The POSIX part is a round of samples with POSIX IPC minus the same
//!   round without it, plus reading each /dev/shm; both through each container's /dev/mqueue
//!   (as the daemon does once it knows the namespace's mqueue device) and through a private
//!   mount per namespace.
//! * 10,000 queues in one namespace, when RLIMIT_MSGQUEUE allows (run as root: the
//!   benchmark lifts it with prlimit before entering the namespace), else as many as it does.
//!
//! Goals (issue 11): under 2 ms per tick for the first load, under 40 ms for the second. A
//! container's /dev/shm use is read every tick and its listing every `POSIX_DETAIL_EVERY`
//! (10 s); its queues every `POSIX_CONTAINER_EVERY` (60 s) and its limits every
//! `POSIX_CONTAINER_LIMITS_EVERY` (5 min) (issue 19), so both costs print.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ipcwatch_sampler::namespaces::Visitor;
use ipcwatch_sampler::{posix, testkit as tk, Sampler, SamplerConfig};

#[path = "../../../tests/bench/median.rs"]
mod median;

const INIT_IPC_NS: &str = "ipc:[4026531839]";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if args.get(1).map(String::as_str) == Some("--container") {
        return container();
    }
    let ns = std::fs::read_link("/proc/thread-self/ns/ipc").unwrap();
    if ns.to_string_lossy() == INIT_IPC_NS {
        // Lift RLIMIT_MSGQUEUE (root only) so 10,000 queues fit; then a new namespace.
        let me = std::process::id().to_string();
        let _ = Command::new("prlimit").args(["--pid", &me, "--msgqueue=unlimited:unlimited"]).status();
        let status = Command::new("unshare")
            .args(["--user", "--map-root-user", "--ipc", "--mount"])
            .arg(std::env::current_exe().unwrap())
            .args(args.iter().skip(1))
            .status()
            .expect("unshare (util-linux) is needed to run this benchmark");
        std::process::exit(status.code().unwrap_or(1));
    }
    containers(100);
    many_queues(10_000);
}

/// A container-like namespace: its own IPC and mount namespaces, a 64 MiB /dev/shm with 3
/// files, 10 queues; then it waits to be killed.
fn container() {
    // A /dev of its own, as Docker gives: a 64 MiB /dev/shm and the namespace's mqueue.
    let mount = |args: &[&str]| {
        let ok = Command::new("mount").args(args).status().is_ok_and(|s| s.success());
        assert!(ok, "mount {args:?}");
    };
    mount(&["-t", "tmpfs", "tmpfs", "/dev"]);
    std::fs::create_dir_all("/dev/shm").unwrap();
    std::fs::create_dir_all("/dev/mqueue").unwrap();
    mount(&["-t", "tmpfs", "-o", "size=64m", "tmpfs", "/dev/shm"]);
    mount(&["-t", "mqueue", "mqueue", "/dev/mqueue"]);
    for (i, size) in [1 << 20, 4096, 32].into_iter().enumerate() {
        std::fs::write(format!("/dev/shm/file{i}"), vec![1u8; size]).unwrap();
    }
    for i in 0..10 {
        // Small queues: the 1,000 of all containers share one RLIMIT_MSGQUEUE (819,200 B).
        tk::mq_create(&format!("/q{i}"), 1, 16).unwrap();
    }
    println!("ready");
    loop {
        std::thread::park();
    }
}

struct Killed(Vec<Child>);
impl Drop for Killed {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn containers(n: usize) {
    let me = std::env::current_exe().unwrap();
    let mut children = Killed(Vec::new());
    for _ in 0..n {
        let mut child = Command::new("unshare")
            .args(["--ipc", "--mount", "--propagation", "private"])
            .arg(&me)
            .arg("--container")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        children.0.push(child);
    }
    let visitor = Visitor::new(std::path::Path::new("/proc")).unwrap();
    let pids: Vec<u32> = children.0.iter().map(Child::id).collect();
    let inodes: Vec<u64> = pids
        .iter()
        .map(|p| {
            let l = std::fs::read_link(format!("/proc/{p}/ns/ipc")).unwrap();
            l.to_string_lossy().trim_start_matches("ipc:[").trim_end_matches(']').parse().unwrap()
        })
        .collect();
    let targets: Vec<(u64, Vec<u32>)> = inodes.iter().zip(&pids).map(|(i, p)| (*i, vec![*p])).collect();
    let refs: Vec<(u64, &[u32], Option<&ipcwatch_sampler::namespaces::Anchor>)> =
        targets.iter().map(|(i, p)| (*i, p.as_slice(), None)).collect();
    let visits = median(|| {
        visitor.visit_all(&refs, || ()).unwrap();
    });
    // The baseline: the same samples without POSIX IPC.
    let mut plain = Sampler::new(SamplerConfig { posix: false, ..SamplerConfig::default() });
    let without = median(|| {
        visitor.visit_all(&refs, || plain.snapshot()).unwrap();
    });
    // A full read (at start, every POSIX_DETAIL_EVERY, or when a count changes): a fresh
    // sampler knows no namespace yet, so it mounts each one's mqueue privately.
    let full = median(|| {
        let mut fresh = Sampler::new(SamplerConfig::default());
        visitor.visit_all(&refs, || fresh.snapshot()).unwrap();
    });
    // As the daemon does between full reads: nothing of a container's queues.
    let mut hinted = Sampler::new(SamplerConfig::default());
    let mut seen = 0;
    let steady_queues = median(|| {
        let mut next = inodes.iter();
        let out = visitor
            .visit_all(&refs, || {
                let inode = next.next().unwrap();
                hinted.set_target(*inode, true);
                hinted.snapshot()
            })
            .unwrap();
        seen = out
            .iter()
            .filter_map(|r| r.as_ref().ok()?.posix.as_ref()?.queues.as_ref())
            .map(|q| q.items.len())
            .sum();
    });
    assert_eq!(seen, 10 * n, "every queue read");
    let dev_shm = median(|| {
        for p in &pids {
            let mut snap = ipcwatch_sampler::Snapshot::default();
            hinted.add_dev_shm(&mut snap, *p);
            assert_eq!(snap.dev_shm.as_ref().map(|d| d.files), Some(3));
        }
    });
    let per = |d: Duration| us(d) / n as f64;
    let steady = steady_queues.saturating_sub(without) + dev_shm;
    let detail = full.saturating_sub(without);
    let every = ipcwatch_sampler::POSIX_CONTAINER_EVERY.as_secs_f64();
    println!(
        "{n} namespaces, each with 10 queues and a 64 MiB /dev/shm of 3 files (visits alone {:.2} ms):",
        ms(visits)
    );
    println!(
        "  per tick (/dev/shm statfs; queues on the slow clock): {:.2} ms, {:.1} µs per namespace",
        ms(steady),
        per(steady)
    );
    println!(
        "  a full read (limits, every queue, through a private mount): {:.2} ms, once per {every} s: {:.2} ms per tick on average",
        ms(detail),
        ms(steady) + ms(detail) / every
    );
}

fn many_queues(n: usize) {
    std::fs::write("/proc/sys/fs/mqueue/queues_max", format!("{}\n", n + 10)).unwrap();
    let mut made = 0;
    while made < n {
        match tk::mq_create(&format!("/m{made}"), 1, 1) {
            Ok(()) => made += 1,
            Err(e) => {
                println!("(RLIMIT_MSGQUEUE stopped queue creation at {made}: {e}; run as root for {n})");
                break;
            }
        }
    }
    let mut count = 0;
    let read = median(|| count = posix::read_queues(false, None).0.unwrap().items.len());
    assert_eq!(count, made);
    println!(
        "{made} queues in one namespace: a full read {:.2} ms ({:.2} µs per queue), once per {} s or when the count changes",
        ms(read),
        us(read) / made as f64,
        ipcwatch_sampler::POSIX_DETAIL_EVERY.as_secs()
    );
}

fn median(f: impl FnMut()) -> Duration {
    median::median_of(11, f).0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
