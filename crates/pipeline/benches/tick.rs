//! The cost of one daemon tick (sample, queue choice, charts, due rules, publish) on real
//! kernel objects, against the baseline of merely reading the three /proc/sysvipc files.
//!
//! `cargo bench -p ipcwatch-pipeline` re-executes itself in a throw-away user + IPC namespace
//! (`unshare`), so the host's namespace is never touched, and prints for each load the median
//! tick, the raw read, their ratio, and the heap allocations one steady-state tick makes.
//!
//! Loads: idle; 5,000 arrays + 1,000 queues + 500 segments with every queue charted; 32,000
//! arrays + 32,000 queues + 4,096 segments with the default cap of 100 charted queues.
//! Goals (issue 7): idle about 20 µs; the 5,000/1,000/500 load under 1 ms.

mod common;

use std::time::Duration;

use ipcwatch_alerts::Host;
use ipcwatch_pipeline::{rules, Pipeline, PipelineConfig};
use ipcwatch_sampler::{testkit as tk, Sampler, SamplerConfig};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

/// Counts heap allocations, to show what a steady-state tick allocates.
#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

fn main() {
    common::in_throwaway_namespace();
    println!(
        "{:<28} {:>12} {:>12} {:>8} {:>12}",
        "load (arrays/queues/segs)", "tick", "raw read", "ratio", "allocs/tick"
    );
    let mut made = (0, 0, 0);
    for (arrays, queues, segments, charted) in
        [(0, 0, 0, 100), (5_000, 1_000, 500, 1_000), (32_000, 32_000, 4_096, 100)]
    {
        while made.0 < arrays {
            tk::sem_create(0, 4).unwrap();
            made.0 += 1;
        }
        while made.1 < queues {
            let q = tk::msg_create(0).unwrap();
            tk::msg_send(q, 16 + made.1 % 100).unwrap();
            made.1 += 1;
        }
        while made.2 < segments {
            tk::shm_create(0, 4096).unwrap();
            made.2 += 1;
        }
        let raw = common::raw_read();
        let sampler = SamplerConfig { semaphore_detail: false, ..SamplerConfig::default() };
        let config = PipelineConfig { max_queue_dimensions: charted, ..PipelineConfig::default() };
        let (rules, _) = rules::builtin();
        let host = Host { hostname: "bench".into(), os: "linux".into(), labels: vec![] };
        let mut pipeline = Pipeline::new(Box::new(Sampler::new(sampler)), config, rules, host);
        // Ten ticks to reach the steady state (owner names cached, dimensions created).
        for _ in 0..10 {
            pipeline.tick();
        }
        let mut allocs = Vec::new();
        let tick = common::median(|| {
            let region = Region::new(GLOBAL);
            let t = pipeline.tick();
            allocs.push(region.change().allocations);
            assert!(t.published.snapshot.ok());
            assert_eq!(t.published.snapshot.message_queues.as_ref().unwrap().queues, queues as u64);
        });
        allocs.sort();
        println!(
            "{:<28} {:>9.1} µs {:>9.1} µs {:>7.2}x {:>12}",
            format!("{arrays}/{queues}/{segments} ({charted} charted)"),
            us(tick),
            us(raw),
            tick.as_secs_f64() / raw.as_secs_f64(),
            allocs[allocs.len() / 2]
        );
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
