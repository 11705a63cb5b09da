//! How every `cargo bench` target times a piece of work: one warm-up run, then the median of
//! `runs` timed runs (a median, not a mean: one preempted run must not move the figure).
//! Included by path (`#[path = "../../../tests/bench/median.rs"] mod median;`), so that the
//! benches of every crate measure alike without a crate of their own.

use std::time::{Duration, Instant};

/// The median time of `runs` runs of `f` after a warm-up, and what the last run returned.
pub fn median_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut last = f();
    let mut times: Vec<Duration> = (0..runs.max(1))
        .map(|_| {
            let start = Instant::now();
            last = f();
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[times.len() / 2], last)
}
