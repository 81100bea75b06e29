//! Shared pieces of opsloop's benchmarks: timing loops and report lines.
//!
//! Every benchmark reports its figures next to a baseline measured in the same run, so numbers
//! from different machines compare as ratios.

use std::time::{Duration, Instant};

pub mod nab;
pub mod otlp;

/// Runs `work` (which processes `items` items per call) repeatedly for at least `min_time` and
/// returns items per second.
pub fn items_per_second(items: u64, min_time: Duration, mut work: impl FnMut()) -> f64 {
    // One warm-up call so allocation and caches settle before timing.
    work();
    let started = Instant::now();
    let mut calls = 0u64;
    while started.elapsed() < min_time {
        work();
        calls += 1;
    }
    (calls * items) as f64 / started.elapsed().as_secs_f64()
}

/// Formats a rate with an SI suffix (`12.3 M/s`).
pub fn format_rate(per_second: f64) -> String {
    match per_second {
        r if r >= 1e9 => format!("{:.2} G/s", r / 1e9),
        r if r >= 1e6 => format!("{:.2} M/s", r / 1e6),
        r if r >= 1e3 => format!("{:.2} k/s", r / 1e3),
        r => format!("{r:.1} /s"),
    }
}

/// The benchmark's time budget per measurement: `OPSLOOP_BENCH_SECONDS`, default 2 s.
pub fn measurement_time() -> Duration {
    std::env::var("OPSLOOP_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .map_or(Duration::from_secs(2), Duration::from_secs_f64)
}
