//! Per-tick cost of charting a sample, and the memory an hour of history takes, with 100
//! queue dimensions (the default cap) out of 1,000 queues. The memory baseline is the bare
//! values (dimensions x rows x 8 bytes); the time baseline is cloning the snapshot (the
//! least a per-second consumer of the sample can do). Run: `cargo bench -p ipcwatch-charts`.

use std::time::{Duration, Instant};

use ipcwatch_charts::{QueueChoice, Registry, RegistryConfig};
use ipcwatch_sampler::{Key, Limits, MessageQueue, MessageQueues, Semaphores, SharedMemory, Snapshot};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn snapshot(t: f64) -> Snapshot {
    let items = (0..1000)
        .map(|i| MessageQueue {
            key: Key(i),
            id: i,
            owner: 0,
            creator: 0,
            mode: 0o600,
            messages: (i as u64 * 31 + t as u64) % 50,
            bytes: (i as u64 * 97 + t as u64) % 16384,
            capacity_bytes: Some(16384),
            last_send_pid: 0,
            last_recv_pid: 0,
            last_send_time: 0,
            last_recv_time: 0,
            changed_time: 0,
        })
        .collect();
    let l = Some(32000);
    Snapshot {
        timestamp: t,
        semaphores: Some(Semaphores { arrays: 5, semaphores: 10, items: vec![] }),
        message_queues: Some(MessageQueues { queues: 1000, items, ..Default::default() }),
        shared_memory: Some(SharedMemory::default()),
        limits: Limits {
            semmni: l,
            semmns: l,
            semmsl: l,
            semopm: l,
            msgmni: l,
            msgmax: l,
            msgmnb: l,
            shmmni: l,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let snaps: Vec<Snapshot> = (0..60).map(|i| snapshot(i as f64)).collect();
    let rss_before = rss_kib();
    let mut r = Registry::new(RegistryConfig {
        history_rows: 3600,
        max_queue_dimensions: 100,
        ..RegistryConfig::default()
    });
    let mut update = Duration::ZERO;
    let owner: std::sync::Arc<str> = "postgres".into();
    let mut clone = Duration::ZERO;
    for t in 0..3600 {
        let mut s = snaps[t % 60].clone();
        s.timestamp = t as f64;
        let start = Instant::now();
        let c = std::hint::black_box(s.clone());
        clone += start.elapsed();
        drop(c);
        let start = Instant::now();
        let choice = QueueChoice::choose(&s, r.max_queue_dimensions(), |_| owner.clone());
        r.update(&s, &choice);
        update += start.elapsed();
    }
    let rss_after = rss_kib();
    let dims: usize = r.charts().map(|c| c.dimensions.len()).sum();
    let bare_kib = (dims * 3600 * 4 + r.charts().len() * 3600 * 8) / 1024;
    println!("{} charts, {} dimensions, 3600 rows (1 h at 1 s)", r.charts().len(), dims);
    println!(
        "update per tick: {:.1} µs   snapshot clone: {:.1} µs   ratio {:.2}x",
        update.as_secs_f64() * 1e6 / 3600.0,
        clone.as_secs_f64() * 1e6 / 3600.0,
        update.as_secs_f64() / clone.as_secs_f64()
    );
    println!(
        "history memory: {} KiB RSS growth   bare values: {} KiB   ratio {:.2}x",
        rss_after.saturating_sub(rss_before),
        bare_kib,
        rss_after.saturating_sub(rss_before) as f64 / bare_kib as f64
    );
}
