//! Cost of one `/metrics` render (what a scrape does) for N per-queue series sets, against a
//! baseline of formatting the same number of sample lines with `write!` into a String (the
//! least any text exposition can cost). Run: `cargo bench -p ipcwatch-exporter`.

use std::fmt::Write;
use std::time::Duration;

use std::sync::Arc;

use ipcwatch_charts::QueueChoice;
use ipcwatch_exporter::{BuildInfo, State};
use ipcwatch_pipeline::{FleetPublished, Published};
use ipcwatch_sampler::{Key, Limits, MessageQueue, MessageQueues, Semaphores, SharedMemory, Snapshot};

#[path = "../../../tests/bench/median.rs"]
mod median;

const RUNS: usize = 51;

fn sample(queues: usize) -> Arc<FleetPublished> {
    let items: Vec<MessageQueue> = (0..queues)
        .map(|i| MessageQueue {
            key: Key(i as i32 * 7919),
            id: i as i32,
            owner: 0,
            creator: 0,
            mode: 0o600,
            messages: i as u64,
            bytes: i as u64 * 100,
            capacity_bytes: Some(16384),
            last_send_pid: 1,
            last_recv_pid: 1,
            last_send_time: 0,
            last_recv_time: 0,
            changed_time: 0,
        })
        .collect();
    let limit = Some(32000);
    let snapshot = Snapshot {
        timestamp: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64(),
        semaphores: Some(Semaphores { arrays: 10, semaphores: 20, items: vec![] }),
        message_queues: Some(MessageQueues { queues: queues as u64, items, ..Default::default() }),
        shared_memory: Some(SharedMemory::default()),
        limits: Limits { semmni: limit, semmns: limit, msgmni: limit, shmmni: limit, ..Default::default() },
        ..Default::default()
    };
    let owner: Arc<str> = "postgres".into();
    let one = Arc::new(Published {
        queues: QueueChoice::choose(&snapshot, queues, |_| owner.clone()),
        snapshot,
        charts: Default::default(),
        alarm_log: Default::default(),
        alerts: Default::default(),
        failed_samples: 0,
        slow_samples: 0,
        finished: std::time::Instant::now(),
    });
    Arc::new(FleetPublished::single(one, Default::default()))
}

fn median(f: impl FnMut() -> usize) -> (Duration, usize) {
    median::median_of(RUNS, f)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!(
        "{:>7} {:>10} {:>12} {:>12} {:>7} {:>12} {:>12}",
        "queues", "bytes", "baseline", "render", "ratio", "+gzip", "cached"
    );
    for n in [0usize, 100, 1_000] {
        let state = State::new(BuildInfo { version: "bench".into(), revision: "bench".into() });
        let published = sample(n);
        state.publish(published.clone());
        let body = state.metrics_body(false);
        let lines = body.split(|b| *b == b'\n').filter(|l| !l.is_empty() && l[0] != b'#').count();
        let (base, _) = median(|| {
            let mut s = String::new();
            for i in 0..lines {
                let _ = writeln!(
                    s,
                    "sysvipc_message_queue_bytes{{key=\"0x{:08x}\",id=\"{}\",owner=\"postgres\"}} {}",
                    i,
                    i,
                    i * 100
                );
            }
            s.len()
        });
        // A new sample each time: what the first scrape after a tick pays.
        let (render, bytes) = median(|| {
            state.publish(published.clone());
            state.metrics_body(false).len()
        });
        let (gzip, _) = median(|| {
            state.publish(published.clone());
            state.metrics_body(true).len()
        });
        // The same sample again: what every other scrape of that second pays.
        let (cached, _) = median(|| state.metrics_body(false).len());
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "{:>7} {:>10} {:>9.1} µs {:>9.1} µs {:>6.1}x {:>9.1} µs {:>9.2} µs",
            n,
            bytes,
            us(base),
            us(render),
            render.as_secs_f64() / base.as_secs_f64(),
            us(gzip),
            us(cached)
        );
    }
}
