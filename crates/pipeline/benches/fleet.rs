//! One tick over many IPC namespaces, and the discovery that finds them, on real namespaces.
//!
//! `cargo bench -p ipcwatch-pipeline --bench fleet` re-executes itself in a throw-away user +
//! IPC namespace, starts holder processes (itself with `--hold`, each in a new IPC namespace
//! with 10 arrays, 5 queues and 2 segments), and prints for 100 and 1,000 namespaces the
//! median tick of the whole fleet, the discovery time over every process (with 1,000 idle
//! processes more at the 1,000 step, so 2,000 or more), and the RSS the fleet adds.
//! Goals (issue 8): 100 namespaces <= 1 ms a tick; 1,000 <= 10 ms; discovery over 2,000
//! processes <= 20 ms; RSS at 1,000 namespaces <= 32 MB.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ipcwatch_alerts::Host;
use ipcwatch_pipeline::{rules, Fleet, FleetConfig, PipelineConfig};
use ipcwatch_sampler::namespaces;
use ipcwatch_sampler::{testkit as tk, SamplerConfig};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

/// Counts heap bytes, to tell what the fleet holds from what the allocator keeps around.
#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// Children that die with the benchmark.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

fn holder() -> Child {
    let mut child = Command::new("setpriv")
        .args(["--pdeathsig", "KILL", "--", "unshare", "--ipc"])
        .arg(std::env::current_exe().unwrap())
        .arg("--hold")
        .stdout(Stdio::piped())
        .spawn()
        .expect("setpriv and unshare (util-linux) are needed");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "the holder failed");
    child
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--hold") {
        for _ in 0..10 {
            tk::sem_create(0, 2).unwrap();
        }
        for _ in 0..5 {
            let q = tk::msg_create(0).unwrap();
            tk::msg_send(q, 64).unwrap();
        }
        for _ in 0..2 {
            tk::shm_create(0, 8192).unwrap();
        }
        println!("ready");
        loop {
            std::thread::park();
        }
    }
    common::in_throwaway_namespace();
    let mut holders = Children(Vec::new());
    let mut idle = Children(Vec::new());
    println!(
        "{:>10} {:>10} {:>12} {:>14} {:>12} {:>12}",
        "namespaces", "processes", "tick", "discovery", "fleet RSS", "fleet heap"
    );
    for (n, idle_count) in [(100usize, 0usize), (1000, 1000)] {
        while holders.0.len() < n {
            holders.0.push(holder());
        }
        while idle.0.len() < idle_count {
            idle.0.push(
                Command::new("setpriv").args(["--pdeathsig", "KILL", "--", "sleep", "3600"]).spawn().unwrap(),
            );
        }
        let pods = std::path::Path::new("/nonexistent");
        let proc = std::path::Path::new("/proc");
        let mut scan = namespaces::scan(proc, pods).unwrap();
        let first = common::median(|| scan = namespaces::scan(proc, pods).unwrap());
        // What the daemon's rescans do: identities of known namespaces are kept.
        let known_ids: Vec<namespaces::Identity> =
            scan.namespaces.iter().map(|f| f.identity.clone()).collect();
        let known: Vec<&namespaces::Identity> = known_ids.iter().collect();
        let discovery =
            common::median(|| scan = namespaces::scan_known(proc, pods, &known, true, &|_| None).unwrap());
        let processes = scan.processes - scan.unreadable;
        let rss_before = rss_kib();
        let heap = Region::new(GLOBAL);
        let (rules, _) = rules::builtin();
        let host = Host { hostname: "bench".into(), os: "linux".into(), labels: vec![] };
        let config =
            FleetConfig { rescan: Duration::from_secs(3600), max: 100_000, ..FleetConfig::default() };
        let sampler = SamplerConfig { semaphore_detail: false, ..SamplerConfig::default() };
        let mut fleet = Fleet::new(sampler, PipelineConfig::default(), rules, host, config);
        let mut watched = 0;
        for _ in 0..5 {
            watched = fleet.tick().published.namespaces.len();
        }
        assert_eq!(
            watched,
            n + 1,
            "every holder's namespace and our own; scan found {}",
            scan.namespaces.len()
        );
        let tick = common::median(|| {
            fleet.tick();
        });
        let rss = rss_kib().saturating_sub(rss_before);
        let change = heap.change();
        let held = change.bytes_allocated.saturating_sub(change.bytes_deallocated);
        // Where a tick goes: the visits alone (setns in and out), then visits that sample.
        let visitor = namespaces::Visitor::new(std::path::Path::new("/proc")).unwrap();
        let mut sampler = ipcwatch_sampler::Sampler::new(SamplerConfig {
            semaphore_detail: false,
            ..SamplerConfig::default()
        });
        // As the fleet visits: through a pidfd anchor on each namespace's oldest process.
        let anchors: Vec<Option<namespaces::Anchor>> =
            scan.namespaces.iter().map(|f| visitor.anchor(f.identity.inode, f.pids[0])).collect();
        let targets: Vec<(u64, &[u32], Option<&namespaces::Anchor>)> = scan
            .namespaces
            .iter()
            .zip(&anchors)
            .map(|(f, a)| (f.identity.inode, f.pids.as_slice(), a.as_ref()))
            .collect();
        let visit_only = common::median(|| {
            visitor.visit_all(&targets, || ()).unwrap();
        });
        let visit_sample = common::median(|| {
            visitor.visit_all(&targets, || sampler.snapshot()).unwrap();
        });
        println!(
            "{:>10} {:>10} {:>9.2} ms {:>11.2} ms {:>9.1} MB {:>9.1} MB",
            watched,
            processes,
            tick.as_secs_f64() * 1e3,
            discovery.as_secs_f64() * 1e3,
            rss as f64 / 1024.0,
            held as f64 / (1 << 20) as f64
        );
        println!(
            "{:>10} {:>10} {:>12} {:>11.2} ms (a first scan)   of which: setns round {:.2} ms, + sampling {:.2} ms",
            "",
            "",
            "",
            first.as_secs_f64() * 1e3,
            visit_only.as_secs_f64() * 1e3,
            (visit_sample.as_secs_f64() - visit_only.as_secs_f64()) * 1e3
        );
    }
}
