//! Correlator throughput and memory with many open incidents, embedded (no broker).
//!
//! 1. **Memory per open incident**: `OPSLOOP_BENCH_INCIDENTS` entities (default 100,000) each
//!    get one `cpu_utilization_high` alert, 1,000 entities per second of event time; advancing
//!    second by second past `group_wait` opens one standalone incident per entity (so the
//!    published versions, dropped after each call, never pile up). Bytes are the growth of the
//!    process's resident set (VmRSS) from before the correlator exists to after the opening,
//!    divided by the open incidents; the alerts themselves are built before the first reading
//!    and the published versions are dropped before the second. (The workspace forbids
//!    `unsafe`, so no counting allocator; RSS includes allocator slack.)
//! 2. **Throughput**, one core, the same correlator: `OPSLOOP_BENCH_ALERTS` alerts (default
//!    1,000,000) round-robin over the entities, so every incident stays open (each entity sees
//!    an alert every `INCIDENTS / 1000` s of event time, under the 3 healthy windows that
//!    resolve it); one alert in 10 is `memory_pressure_high`, which completes the
//!    `resource_contention` pattern and promotes the entity's standalone incident. Event time
//!    advances by one second per 1,000 alerts with an `advance` call, so flushes
//!    (`group_interval`, 5 min) run inside the measured loop. Alerts/s is alerts over the wall
//!    time of the loop (observe + advance); the alerts are built before timing.
//! 3. **Flush latency**: the wall time of every `advance` call that published versions
//!    (hdrhistogram, µs), i.e. from the watermark reaching a due time to the incident versions
//!    being ready for `ops.incidents`; and that time per version.

use std::collections::BTreeMap;
use std::time::Instant;

use hdrhistogram::Histogram;
use opsloop_correlator::{Correlator, CorrelatorConfig};
use opsloop_schemas::ops::Alert;

/// Resident set size of this process, from /proc (Linux); 0 elsewhere.
fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<usize>()
                .ok()
        })
        .map_or(0, |kb| kb * 1024)
}

const S: i64 = 1_000_000;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn alert(alert_type: &str, entity: &str, start_us: i64) -> Alert {
    Alert {
        alert_id: format!("{alert_type}/{entity}/{start_us}"),
        entity: entity.to_owned(),
        detector: alert_type.to_owned(),
        alert_type: alert_type.to_owned(),
        score: 1.2,
        severity: 0.5,
        window_start_us: start_us,
        window_end_us: start_us + 60 * S,
        evidence: BTreeMap::from([("p99".to_owned(), 300.0)]),
        labels: BTreeMap::from([("cluster".to_owned(), "eu-1".to_owned())]),
        emitted_us: 0,
    }
}

fn main() {
    let incidents = env("OPSLOOP_BENCH_INCIDENTS", 100_000);
    let total_alerts = env("OPSLOOP_BENCH_ALERTS", 1_000_000);
    let entities: Vec<String> = (0..incidents).map(|i| format!("db-{i:06}")).collect();
    let opening: Vec<Alert> = entities
        .iter()
        .enumerate()
        .map(|(i, e)| alert("cpu_utilization_high", e, (i / 1_000) as i64 * S))
        .collect();

    println!("correlator: {incidents} entities, then {total_alerts} alerts round-robin");
    let before = rss_bytes();
    let mut correlator = Correlator::new(CorrelatorConfig::default()).expect("defaults");
    let started = Instant::now();
    let mut opened_versions = 0;
    for (second, chunk) in opening.chunks(1_000).enumerate() {
        for alert in chunk {
            correlator.observe(alert);
        }
        opened_versions += correlator.advance((90 + second as i64) * S).versions.len();
    }
    let last_opening_s = 90 + (incidents / 1_000) as i64;
    opened_versions += correlator.advance(last_opening_s * S).versions.len();
    let open_time = started.elapsed();
    assert_eq!(opened_versions, incidents);
    let open = correlator.status().open_incidents;
    let bytes = rss_bytes().saturating_sub(before);
    assert_eq!(open, incidents, "every entity has one open incident");
    println!(
        "  memory: {open} open incidents, {:.1} MiB resident growth = {} bytes per open incident \
         (opening took {:.2} s)",
        bytes as f64 / (1 << 20) as f64,
        bytes / open.max(1),
        open_time.as_secs_f64()
    );

    // Build every alert before timing: window i of entity k starts where event time is.
    let per_second = 1_000usize;
    let mut stream = Vec::with_capacity(total_alerts);
    for i in 0..total_alerts {
        let entity = &entities[i % incidents];
        let now_s = last_opening_s + 1 + (i / per_second) as i64;
        let kind = if i % 10 == 9 {
            "memory_pressure_high"
        } else {
            "cpu_utilization_high"
        };
        // Windows end at the current second, so they are never late for the clock.
        stream.push(alert(kind, entity, (now_s - 60) * S));
    }
    let mut flush_us = Histogram::<u64>::new(3).expect("histogram");
    let mut per_version_ns = Histogram::<u64>::new(3).expect("histogram");
    let mut versions = 0usize;
    let started = Instant::now();
    for (second, chunk) in stream.chunks(per_second).enumerate() {
        for alert in chunk {
            correlator.observe(alert);
        }
        let call = Instant::now();
        let emitted = correlator.advance((last_opening_s + 2 + second as i64) * S);
        if !emitted.versions.is_empty() {
            let took = call.elapsed();
            flush_us.record(took.as_micros() as u64).ok();
            per_version_ns
                .record(took.as_nanos() as u64 / emitted.versions.len() as u64)
                .ok();
            versions += emitted.versions.len();
        }
    }
    let elapsed = started.elapsed();
    let status = correlator.status();
    assert!(versions > 0, "flushes published versions");
    println!(
        "  throughput: {total_alerts} alerts in {:.2} s = {:.0} alerts/s on one core, with {} \
         incidents open at the end; {versions} versions published",
        elapsed.as_secs_f64(),
        total_alerts as f64 / elapsed.as_secs_f64(),
        status.open_incidents
    );
    println!(
        "  flush latency (advance calls that published, {} calls): p50 {} µs, p99 {} µs, max {} \
         µs; per version p50 {} ns, p99 {} ns",
        flush_us.len(),
        flush_us.value_at_quantile(0.5),
        flush_us.value_at_quantile(0.99),
        flush_us.max(),
        per_version_ns.value_at_quantile(0.5),
        per_version_ns.value_at_quantile(0.99)
    );
    let promoted = correlator
        .open_incidents()
        .filter(|i| i.pattern == "resource_contention")
        .count();
    println!("  {promoted} incidents promoted to resource_contention");
}
