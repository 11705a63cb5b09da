//! What the eBPF probes cost the calls they trace: a semop ping-pong between two processes
//! and a msgsnd/msgrcv ping-pong, each timed without the probes and with them, alternately,
//! in one run (the machine's speed drifts by the hour: only a same-run ratio means anything).
//!
//! `cargo bench -p ipcwatch-probes --bench overhead` as root (loading BPF needs CAP_BPF and
//! CAP_PERFMON); it runs itself in a throw-away IPC namespace (`unshare --ipc`), on one CPU
//! (`taskset -c 0`).

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use ipcwatch_sampler::testkit as tk;

const ROUNDS: usize = 5;
const EACH: Duration = Duration::from_secs(2);

/// The other side of a ping-pong: answers until it is killed.
fn pong(kind: &str, id: i32) -> ! {
    loop {
        let r = match kind {
            "sem" => tk::sem_op(id, 1, -1).and_then(|_| tk::sem_op(id, 0, 1)),
            _ => tk::msg_receive_type(id, 1, 8).and_then(|_| tk::msg_send_type(id, 2, 8)),
        };
        if r.is_err() {
            std::process::exit(0);
        }
    }
}

struct Partner(Child);

impl Drop for Partner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Round trips a second: one round trip is 4 traced calls one after the other (semop post,
/// semop wait on each side; or msgsnd and msgrcv on each side, of which msgsnd is traced).
fn round_trips(kind: &str, id: i32, for_: Duration) -> f64 {
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < for_ {
        for _ in 0..256 {
            match kind {
                "sem" => {
                    tk::sem_op(id, 1, 1).expect("semop post");
                    tk::sem_op(id, 0, -1).expect("semop wait");
                }
                _ => {
                    tk::msg_send_type(id, 1, 8).expect("msgsnd");
                    tk::msg_receive_type(id, 2, 8).expect("msgrcv");
                }
            }
        }
        n += 256;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--pong") {
        pong(&args[i + 1], args[i + 2].parse().expect("an id"));
    }
    if std::env::var_os("IPCWATCH_BENCH_IN_NS").is_none() {
        let exe = std::env::current_exe().expect("the bench's own path");
        // Both processes on one CPU: across CPUs a ping-pong mostly measures how fast a
        // halted CPU wakes up (an IPI; in a VM, a trip through the hypervisor), which swings
        // by a third from one second to the next and would drown the probes' cost.
        let status = Command::new("unshare")
            .args(["--ipc", "taskset", "-c", "0"])
            .arg(exe)
            .args(&args[1..])
            .env("IPCWATCH_BENCH_IN_NS", "1")
            .status()
            .expect("unshare (util-linux) runs");
        std::process::exit(status.code().unwrap_or(1));
    }
    // Loaded once, dropped and loaded again between rounds: detached, the tracepoints cost
    // nothing (their static keys are off), so "without" is the kernel as if never traced.
    // IPCWATCH_BENCH_NO_PROBES=1: both columns without, to see the bench's own noise.
    let control = std::env::var_os("IPCWATCH_BENCH_NO_PROBES").is_some();
    let load = || match ipcwatch_probes::Probes::load(10) {
        Ok(_) if control => None,
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("overhead: the probes cannot load ({e}); run as root");
            std::process::exit(1);
        }
    };
    drop(load());
    let exe = std::env::current_exe().unwrap();
    println!(
        "eBPF probe overhead: {ROUNDS} rounds of {} s each, without and with, alternately",
        EACH.as_secs()
    );
    println!(
        "{:<10} {:>14} {:>14} {:>9} {:>16}",
        "pair", "without (rt/s)", "with (rt/s)", "change", "added per call"
    );
    for kind in ["sem", "msg"] {
        let id = match kind {
            "sem" => tk::sem_create(0, 2).expect("an array"),
            _ => tk::msg_create(0).expect("a queue"),
        };
        let _partner =
            Partner(Command::new(&exe).args(["--pong", kind, &id.to_string()]).spawn().expect("the partner"));
        round_trips(kind, id, Duration::from_millis(500)); // warm up
        let (mut without, mut with) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            without.push(round_trips(kind, id, EACH));
            let probes = load();
            with.push(round_trips(kind, id, EACH));
            drop(probes);
        }
        let (a, b) = (median(without), median(with));
        // Both sides' calls are on the one path of a round trip: 4 traced calls for semop,
        // 2 for msgsnd (msgrcv is not traced).
        let traced = if kind == "sem" { 4.0 } else { 2.0 };
        let added_ns = (1e9 / b - 1e9 / a) / traced;
        let pair = if kind == "sem" { "semop" } else { "msgsnd/rcv" };
        println!("{pair:<10} {a:>14.0} {b:>14.0} {:>8.1}% {added_ns:>13.0} ns", (b / a - 1.0) * 100.0);
        let _ = tk::remove(kind, id);
    }
}
