//! The cost of one census (the slow liveness pass) on real kernel objects, against the
//! baseline of merely reading the three /proc/sysvipc files, in the same run.
//!
//! `cargo bench -p ipcwatch-holders` re-executes itself in a throw-away user + IPC namespace.
//! Every semaphore is operated on once (so each has a last pid to check); half the arrays
//! and queues are left by a process that has exited (stale under --older-than 0s), half by
//! this one (alive). Printed per load: the read (a full walk plus `semctl GETPID` of every
//! semaphore), the judging (liveness of every recorded pid, owners, stale list), and the
//! raw read. `walk` is the sample alone, so read+GETPID minus walk is what reading every
//! semaphore's last pid costs (the kernel has no bulk call for pids: GETALL returns values).

#[path = "../../pipeline/benches/common/mod.rs"]
mod common;

use std::time::Duration;

use ipcwatch_holders::{Census, Gathered, HoldersConfig, Thresholds};
use ipcwatch_sampler::{testkit as tk, Sampler, SamplerConfig};

fn main() {
    common::in_throwaway_namespace();
    if std::env::args().nth(1).as_deref() == Some("--make") {
        // The exiting process of the half "left behind".
        let n: usize = std::env::args().nth(2).unwrap().parse().unwrap();
        make(n);
        return;
    }
    println!(
        "{:<24} {:>12} {:>12} {:>12} {:>12} {:>8} {:>8}",
        "arrays(4)/queues/segs", "walk", "read+GETPID", "judge", "raw read", "ratio", "stale"
    );
    let mut made = (0, 0, 0);
    for (arrays, queues, segments) in [(1_000, 1_000, 128), (32_000, 32_000, 4_096)] {
        let half = (arrays - made.0) / 2;
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--make", &half.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        make(arrays - made.0 - half);
        made.0 = arrays;
        made.1 = queues;
        while made.2 < segments {
            tk::shm_create(0, 4096).unwrap();
            made.2 += 1;
        }
        let raw = common::raw_read();
        let mut sampler = Sampler::new(SamplerConfig { semaphore_detail: true, ..SamplerConfig::default() });
        let walk = common::median(|| drop(sampler.snapshot()));
        let mut gathered = Gathered::take(&mut sampler);
        let read = common::median(|| gathered = Gathered::take(&mut sampler));
        assert_eq!(gathered.snapshot.semaphores.as_ref().unwrap().arrays, arrays as u64);
        let t = Thresholds::both(0);
        let mut census = Census::new(std::path::Path::new("/proc"), HoldersConfig::default());
        let mut stale = 0;
        let judge = common::median(|| {
            stale = census.pass(&gathered, ipcwatch_holders::unix_now() + 1, t).stale.len()
        });
        println!(
            "{:<24} {:>9.2} ms {:>9.2} ms {:>9.2} ms {:>9.2} ms {:>7.2}x {:>8}",
            format!("{arrays}/{queues}/{segments}"),
            ms(walk),
            ms(read),
            ms(judge),
            ms(raw),
            (read + judge).as_secs_f64() / raw.as_secs_f64(),
            stale
        );
    }
}

/// `n` arrays of 4 (each semaphore posted once) and `n` queues with one message.
fn make(n: usize) {
    for i in 0..n {
        let a = tk::sem_create(0, 4).unwrap();
        for s in 0..4 {
            tk::sem_post(a, s).unwrap();
        }
        let q = tk::msg_create(0).unwrap();
        tk::msg_send(q, 16 + i % 100).unwrap();
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
