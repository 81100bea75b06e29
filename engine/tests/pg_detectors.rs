//! The PostgreSQL detectors of `sql/` (`pg_*.sql`) on the samples `opsloop collect postgres`
//! writes: each fires on its fault, stays quiet on a healthy database, and names what is
//! affected in the labels the planner reads (`table_name`, `index_name`, `matview`).

mod detector_support;

use std::path::Path;
use std::sync::Arc;

use detector_support::{Sample, batch, db_metrics, parse_time};
use opsloop_engine::detector::{Detector, DetectorOptions, DetectorPlan, session_context};
use opsloop_schemas::ops::Alert;

const SECOND: i64 = 1_000_000;

/// The detector of `sql/{name}.sql`.
fn detector(name: &str) -> Detector {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../sql")
        .join(format!("{name}.sql"));
    let sql = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let plan = DetectorPlan::from_sql(name, &sql, &session_context(), &[db_metrics()])
        .unwrap_or_else(|e| panic!("{e}"));
    Detector::new(Arc::new(plan), DetectorOptions::default()).expect("detector")
}

/// A sample `offset_s` seconds into the test's first 30-second window.
fn at(entity: &str, name: &str, labels: &[(&str, &str)], value: f64, offset_s: i64) -> Sample {
    let mut sample = Sample::new(
        entity,
        name,
        value,
        parse_time("2024-05-01T00:00:00Z") + offset_s * SECOND,
    );
    sample.labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    sample
}

/// Runs `samples` through `name` and closes every window they fall in.
fn alerts(name: &str, samples: &[Sample]) -> Vec<Alert> {
    let mut detector = detector(name);
    detector.process_batch(&batch(samples)).expect("batch");
    let results = detector
        .on_watermark(parse_time("2024-05-01T01:00:00Z"))
        .expect("fires");
    let mut alerts: Vec<Alert> = results
        .iter()
        .flat_map(|result| result.alerts(0).expect("alerts"))
        .collect();
    alerts.sort_by(|a, b| (&a.entity, &a.labels).cmp(&(&b.entity, &b.labels)));
    alerts
}

fn label<'a>(alert: &'a Alert, name: &str) -> &'a str {
    alert.labels.get(name).map_or("", String::as_str)
}

#[test]
fn seq_scan_increase_names_the_big_table_scanned_every_second() {
    let orders = [("table", "public.orders")];
    let lookups = [("table", "public.countries")];
    let mut samples = Vec::new();
    for (offset, scans, rows) in [(0, 0.2, 2_000.0), (5, 4.0, 400_000.0), (10, 5.0, 500_000.0)] {
        samples.push(at("db-1", "pg_table_seq_scan_rate", &orders, scans, offset));
        samples.push(at(
            "db-1",
            "pg_table_seq_tup_read_rate",
            &orders,
            rows,
            offset,
        ));
        samples.push(at(
            "db-1",
            "pg_table_live_tuples",
            &orders,
            100_000.0,
            offset,
        ));
        // Scanned often and reading many rows in all, but small: the planner rightly scans it.
        samples.push(at("db-1", "pg_table_seq_scan_rate", &lookups, 60.0, offset));
        samples.push(at(
            "db-1",
            "pg_table_seq_tup_read_rate",
            &lookups,
            12_000.0,
            offset,
        ));
        samples.push(at("db-1", "pg_table_live_tuples", &lookups, 200.0, offset));
        // Big, but scanned less than once a second.
        samples.push(at("db-2", "pg_table_seq_scan_rate", &orders, 0.5, offset));
        samples.push(at(
            "db-2",
            "pg_table_seq_tup_read_rate",
            &orders,
            1e6,
            offset,
        ));
        samples.push(at("db-2", "pg_table_live_tuples", &orders, 2e6, offset));
        // Big, and scanned whole in one interval only: an index build's or a refresh's scan.
        let once = if offset == 5 { (2.0, 2e6) } else { (0.0, 0.0) };
        samples.push(at(
            "db-3",
            "pg_table_seq_scan_rate",
            &orders,
            once.0,
            offset,
        ));
        samples.push(at(
            "db-3",
            "pg_table_seq_tup_read_rate",
            &orders,
            once.1,
            offset,
        ));
        samples.push(at("db-3", "pg_table_live_tuples", &orders, 4e6, offset));
    }
    let alerts = alerts("pg_seq_scan_increase", &samples);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let alert = &alerts[0];
    assert_eq!(alert.entity, "db-1");
    assert_eq!(alert.alert_type, "seq_scan_increase");
    assert_eq!(label(alert, "table_name"), "public.orders");
    assert_eq!(alert.evidence["seq_scans_per_s"], 5.0);
    assert_eq!(alert.evidence["rows_read_per_s"], 500_000.0);
    assert!((alert.score - 50.0).abs() < 1e-9, "{}", alert.score);
    assert!((alert.severity - 0.7).abs() < 1e-9);
    assert_eq!(alert.window_end_us - alert.window_start_us, 30 * SECOND);
}

#[test]
fn index_bloat_fires_for_big_indexes_twice_the_size_they_need() {
    let index = |name: &'static str| [("table", "public.events"), ("index", name)];
    let mut samples = Vec::new();
    for (name, ratio, bytes) in [
        ("public.events_bloated", 9.5, 8.0 * 1_048_576.0),
        ("public.events_fresh", 1.05, 8.0 * 1_048_576.0),
        ("public.events_tiny", 4.0, 16_384.0),
    ] {
        samples.push(at("db-1", "pg_index_bloat_ratio", &index(name), ratio, 3));
        samples.push(at("db-1", "pg_index_size_bytes", &index(name), bytes, 3));
    }
    let alerts = alerts("pg_index_bloat", &samples);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let alert = &alerts[0];
    assert_eq!(alert.alert_type, "index_bloat_high");
    assert_eq!(label(alert, "index_name"), "public.events_bloated");
    assert_eq!(label(alert, "table_name"), "public.events");
    assert_eq!(alert.evidence["bloat_ratio"], 9.5);
    assert!((alert.score - 4.75).abs() < 1e-9, "{}", alert.score);
}

#[test]
fn runaway_query_fires_on_a_long_query_only() {
    let mut samples = Vec::new();
    // db-1: a query running for 40 s.
    for (offset, age) in [(0, 30.0), (5, 35.0), (10, 40.0)] {
        samples.push(at("db-1", "pg_longest_query_seconds", &[], age, offset));
    }
    // db-3: queries under the limit: healthy.
    for offset in [0, 5, 10] {
        samples.push(at("db-3", "pg_longest_query_seconds", &[], 29.0, offset));
    }
    let alerts = alerts("pg_runaway_query", &samples);
    let entities: Vec<&str> = alerts.iter().map(|a| a.entity.as_str()).collect();
    assert_eq!(entities, ["db-1"], "{alerts:#?}");
    assert_eq!(alerts[0].alert_type, "runaway_query");
    assert!((alerts[0].score - 40.0 / 30.0).abs() < 1e-9);
    assert_eq!(alerts[0].evidence["longest_query_s"], 40.0);
    assert!((alerts[0].severity - 0.8).abs() < 1e-9);
}

#[test]
fn lock_blocker_fires_on_lasting_waits_behind_an_idle_transaction() {
    let mut samples = Vec::new();
    let mut collection = |entity: &str, offset, blocked: f64, idle: f64| {
        samples.push(at(entity, "pg_blocked_backends", &[], blocked, offset));
        samples.push(at(
            entity,
            "pg_lock_blockers",
            &[],
            blocked.min(1.0),
            offset,
        ));
        samples.push(at(entity, "pg_idle_blocker_seconds", &[], idle, offset));
    };
    // db-1: four sessions wait at every collection behind one idle for 35 to 45 s.
    for (offset, idle) in [(0, 35.0), (5, 40.0), (10, 45.0)] {
        collection("db-1", offset, 4.0, idle);
    }
    // db-2: waits that last, but the blocker is busy (a runaway, not an idle holder).
    for offset in [0, 5, 10] {
        collection("db-2", offset, 2.0, 0.0);
    }
    // db-3: an idle blocker, but the wait was seen once (a row lock in passing).
    for (offset, blocked) in [(0, 0.0), (5, 1.0), (10, 0.0)] {
        collection("db-3", offset, blocked, 50.0);
    }
    let alerts = alerts("pg_lock_blocker", &samples);
    let entities: Vec<&str> = alerts.iter().map(|a| a.entity.as_str()).collect();
    assert_eq!(entities, ["db-1"], "{alerts:#?}");
    let alert = &alerts[0];
    assert_eq!(alert.alert_type, "lock_blocker");
    assert_eq!(alert.evidence["blocked_backends"], 4.0);
    assert_eq!(alert.evidence["idle_blocker_s"], 45.0);
    assert!((alert.score - 1.5).abs() < 1e-9);
    assert!((alert.severity - 0.85).abs() < 1e-9);
}

#[test]
fn matview_stale_fires_on_changed_base_rows_or_an_unpopulated_view() {
    let view = |name: &'static str| [("matview", name)];
    let mut samples = Vec::new();
    for (name, staleness, populated) in [
        ("public.daily_sales", 5_000.0, 1.0),
        ("public.fresh_view", 10.0, 1.0),
        ("public.never_filled", 0.0, 0.0),
    ] {
        samples.push(at(
            "db-1",
            "pg_matview_staleness_rows",
            &view(name),
            staleness,
            1,
        ));
        samples.push(at(
            "db-1",
            "pg_matview_populated",
            &view(name),
            populated,
            1,
        ));
    }
    let alerts = alerts("pg_matview_stale", &samples);
    let views: Vec<&str> = alerts.iter().map(|a| label(a, "matview")).collect();
    assert_eq!(
        views,
        ["public.daily_sales", "public.never_filled"],
        "{alerts:#?}"
    );
    assert!(
        alerts
            .iter()
            .all(|a| a.alert_type == "materialized_view_stale")
    );
    assert!((alerts[0].score - 5.0).abs() < 1e-9);
    assert_eq!(alerts[0].evidence["staleness_rows"], 5_000.0);
    assert!((alerts[1].score - 1.0).abs() < 1e-9);
}

#[test]
fn latency_spikes_need_a_sustained_level_and_an_absolute_floor() {
    let mut samples = Vec::new();
    for step in 0..120 {
        let offset = step * 5;
        let spiking = (60..84).contains(&step);
        // A checkpoint's single slow collection on a fast workload: no spike.
        let blip = if step == 70 { 45.0 } else { 0.05 };
        samples.push(at("db-blip", "db_query_latency_ms", &[], blip, offset));
        // Microseconds tripling for two minutes: a ratio, but under the floor.
        let micro = if spiking { 0.2 } else { 0.05 };
        samples.push(at("db-micro", "db_query_latency_ms", &[], micro, offset));
        // Milliseconds quadrupling for two minutes: a spike.
        let slow = if spiking { 12.0 } else { 3.0 };
        samples.push(at("db-slow", "db_query_latency_ms", &[], slow, offset));
    }
    let alerts = alerts("db_latency_spike", &samples);
    let entities: std::collections::BTreeSet<&str> =
        alerts.iter().map(|a| a.entity.as_str()).collect();
    assert_eq!(entities, ["db-slow"].into(), "{alerts:#?}");
    assert!(alerts.iter().all(|a| a.alert_type == "query_latency_spike"));
    assert!(
        alerts.iter().any(|a| (a.score - 4.0).abs() < 0.1),
        "{alerts:#?}"
    );
}

#[test]
fn connection_saturation_is_more_severe_the_closer_to_refusal() {
    let mut samples = Vec::new();
    for (entity, active) in [("db-near", 93.0), ("db-full", 97.0), ("db-fine", 80.0)] {
        samples.push(at(entity, "db_connections_active", &[], active, 10));
        samples.push(at(entity, "db_connections_max", &[], 97.0, 10));
    }
    let alerts = alerts("db_connection_saturation", &samples);
    let severity = |entity: &str| {
        let of: Vec<f64> = alerts
            .iter()
            .filter(|a| a.entity == entity)
            .map(|a| a.severity)
            .collect();
        assert!(!of.is_empty(), "no alert for {entity}: {alerts:#?}");
        of.into_iter().fold(f64::NAN, f64::max)
    };
    assert!(alerts.iter().all(|a| a.entity != "db-fine"), "{alerts:#?}");
    // 93 of 97 is 95.9%: T2; all 97 taken: as severe as it gets.
    let near = severity("db-near");
    assert!((0.6..0.8).contains(&near), "{near}");
    assert!((severity("db-full") - 1.0).abs() < 1e-9);
}
