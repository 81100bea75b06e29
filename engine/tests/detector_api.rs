//! Detectors end to end through the public API: loading `sql/`, start-up errors, alerts,
//! the late side output, state size, and snapshot/restore equivalence.

mod detector_support;

use std::path::Path;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::TimestampMicrosecondType;
use detector_support::{Sample, batch, db_metrics, gpu_samples, metric_schema, parse_time};
use opsloop_engine::detector::{
    Detector, DetectorError, DetectorOptions, DetectorPlan, DetectorSnapshot, WindowResult,
    WindowSpec, load_detectors, session_context,
};

const MINUTE: i64 = 60_000_000;
const SECOND: i64 = 1_000_000;

fn sql_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../sql"))
}

fn detector(sql: &str, lateness_us: i64) -> Detector {
    let plan = DetectorPlan::from_sql("test", sql, &session_context(), &[db_metrics()])
        .unwrap_or_else(|e| panic!("{e}"));
    Detector::new(
        Arc::new(plan),
        DetectorOptions {
            allowed_lateness_us: lateness_us,
        },
    )
    .expect("detector")
}

fn plan_error(sql: &str) -> String {
    match DetectorPlan::from_sql("bad", sql, &session_context(), &[db_metrics()]) {
        Ok(_) => panic!("planned: {sql}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_example_detector_plans() {
    let detectors = load_detectors(
        sql_dir(),
        &session_context(),
        &[db_metrics(), gpu_samples()],
        DetectorOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let plans: Vec<(&str, WindowSpec)> = detectors
        .iter()
        .map(|d| (d.name(), d.plan().window()))
        .collect();
    assert_eq!(
        plans,
        vec![
            (
                "db_connection_saturation",
                WindowSpec::Hopping {
                    slide_us: MINUTE,
                    width_us: 5 * MINUTE
                }
            ),
            ("db_error_burst", WindowSpec::Session { gap_us: 2 * MINUTE }),
            ("db_latency_p99", WindowSpec::Tumbling { width_us: MINUTE }),
            (
                "db_latency_spike",
                WindowSpec::Hopping {
                    slide_us: MINUTE,
                    width_us: 10 * MINUTE
                }
            ),
            ("gpu_thermal", WindowSpec::Tumbling { width_us: MINUTE }),
            (
                "pg_index_bloat",
                WindowSpec::Tumbling {
                    width_us: 30 * SECOND
                }
            ),
            (
                "pg_lock_blocker",
                WindowSpec::Tumbling {
                    width_us: 30 * SECOND
                }
            ),
            (
                "pg_matview_stale",
                WindowSpec::Tumbling {
                    width_us: 30 * SECOND
                }
            ),
            (
                "pg_runaway_query",
                WindowSpec::Tumbling {
                    width_us: 30 * SECOND
                }
            ),
            (
                "pg_seq_scan_increase",
                WindowSpec::Tumbling {
                    width_us: 30 * SECOND
                }
            ),
        ]
    );
}

#[test]
fn a_broken_file_fails_start_up_with_its_path_and_the_datafusion_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("a_fine.sql"),
        "SELECT entity, count(*) AS n FROM db_metrics GROUP BY entity, tumble(interval '1 minute')",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("b_broken.sql"),
        "SELECT entity, max(no_such_column) FROM db_metrics \
         GROUP BY entity, tumble(interval '1 minute')",
    )
    .expect("write");
    std::fs::write(dir.path().join("notes.txt"), "not a detector").expect("write");
    let error = load_detectors(
        dir.path(),
        &session_context(),
        &[db_metrics()],
        DetectorOptions::default(),
    )
    .expect_err("the broken file must fail the load");
    assert!(matches!(error, DetectorError::Plan { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("b_broken.sql"), "{message}");
    assert!(message.contains("no_such_column"), "{message}");
}

#[test]
fn rejects_detectors_the_engine_cannot_run_incrementally() {
    let cases = [
        (
            "SELECT entity, count(*) FROM db_metrics GROUP BY entity",
            "needs one window",
        ),
        ("SELECT * FROM db_metrics", "needs a GROUP BY"),
        (
            "SELECT entity, count(*) FROM db_metrics \
             GROUP BY entity, tumble(interval '1 minute'), tumble(interval '2 minutes')",
            "more than one window",
        ),
        (
            "SELECT entity, count(*) FROM db_metrics \
             GROUP BY entity, hop(interval '2 minutes', interval '3 minutes')",
            "multiple of the slide",
        ),
        (
            "SELECT entity, count(*) FROM db_metrics \
             GROUP BY entity, tumble(arrow_cast('1 minute', 'Interval(MonthDayNano)'))",
            "must be a literal",
        ),
        (
            "SELECT entity, count(*) FROM db_metrics \
             GROUP BY entity, tumble(interval '1 month')",
            "months",
        ),
        (
            "SELECT a.entity, count(*) FROM db_metrics a JOIN db_metrics b \
             ON a.entity = b.entity GROUP BY a.entity, tumble(interval '1 minute')",
            "below the aggregate",
        ),
        (
            "SELECT entity, count(*) FROM db_metrics WHERE tumble(interval '1 minute') IS NOT NULL \
             GROUP BY entity, session(interval '1 minute')",
            "may only appear in the GROUP BY",
        ),
        (
            "SELECT entity, count(*) FROM other_table GROUP BY entity, tumble(interval '1 minute')",
            "other_table",
        ),
    ];
    for (sql, expected) in cases {
        let message = plan_error(sql);
        assert!(
            message.contains(expected) && message.starts_with("detector bad:"),
            "{sql}\n  -> {message}\n  expected: {expected}"
        );
    }
}

fn minute_of_latency(entity: &str, value: f64, samples: usize) -> Vec<Sample> {
    (0..samples)
        .map(|i| {
            Sample::new(
                entity,
                "db_query_latency_ms",
                value,
                parse_time("2024-05-01T00:00:00Z") + i as i64 * (MINUTE / samples as i64),
            )
        })
        .collect()
}

fn latency_detector() -> Detector {
    let sql = std::fs::read_to_string(sql_dir().join("db_latency_p99.sql")).expect("sql");
    let plan = DetectorPlan::from_sql("db_latency_p99", &sql, &session_context(), &[db_metrics()])
        .unwrap_or_else(|e| panic!("{e}"));
    Detector::new(Arc::new(plan), DetectorOptions::default()).expect("detector")
}

#[test]
fn the_latency_detector_alerts_for_the_slow_database_only() {
    let mut samples = minute_of_latency("db-slow", 300.0, 100);
    samples.extend(minute_of_latency("db-fast", 20.0, 100));
    let run = || {
        let mut detector = latency_detector();
        detector.process_batch(&batch(&samples)).expect("batch");
        detector
            .on_watermark(parse_time("2024-05-01T00:01:00Z"))
            .expect("watermark")
    };
    let results = run();
    assert_eq!(results.len(), 1);
    let alerts = results[0].alerts(42).expect("alerts");
    assert_eq!(alerts.len(), 1);
    let alert = &alerts[0];
    assert_eq!(alert.entity, "db-slow");
    assert_eq!(alert.detector, "db_latency_p99");
    assert_eq!(alert.alert_type, "query_latency_increase");
    assert!((alert.score - 1.2).abs() < 1e-9, "{alert:?}");
    assert_eq!(alert.severity, 0.5);
    assert_eq!(alert.window_start_us, parse_time("2024-05-01T00:00:00Z"));
    assert_eq!(alert.window_end_us, parse_time("2024-05-01T00:01:00Z"));
    assert_eq!(alert.emitted_us, 42);
    let evidence: Vec<(&str, f64)> = alert
        .evidence
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        evidence,
        vec![("mean_ms", 300.0), ("p99_ms", 300.0), ("samples", 100.0)]
    );
    assert!(alert.labels.is_empty(), "{alert:?}");
    // A replay yields the same id; another window or entity another.
    let again = run()[0].alerts(43).expect("alerts");
    assert_eq!(again[0].alert_id, alert.alert_id);
    assert_eq!(alert.alert_id.len(), 32);
}

#[test]
fn alerts_default_the_score_and_keep_text_columns_as_labels() {
    let mut detector = detector(
        "SELECT entity, name AS metric, count(*) AS samples, 'cluster-a' AS cluster \
         FROM db_metrics GROUP BY entity, name, tumble(interval '1 minute')",
        0,
    );
    detector
        .process_batch(&batch(&[Sample::new("db-1", "db_qps", 1.0, 5 * SECOND)]))
        .expect("batch");
    let results = detector.on_watermark(MINUTE).expect("watermark");
    let alerts = results[0].alerts(0).expect("alerts");
    assert_eq!(alerts[0].score, 1.0);
    assert_eq!(alerts[0].alert_type, "test");
    assert_eq!(
        alerts[0].labels.get("metric").map(String::as_str),
        Some("db_qps")
    );
    assert_eq!(
        alerts[0].labels.get("cluster").map(String::as_str),
        Some("cluster-a")
    );
    assert_eq!(alerts[0].evidence.get("samples"), Some(&1.0));
}

#[test]
fn a_detector_whose_rows_cannot_become_alerts_fails_start_up_naming_its_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("no_entity.sql"),
        "SELECT count(*) AS n, 2.0 AS score FROM db_metrics GROUP BY tumble(interval '1 minute')",
    )
    .expect("write");
    let error = load_detectors(
        dir.path(),
        &session_context(),
        &[db_metrics()],
        DetectorOptions::default(),
    )
    .expect_err("a detector without entity must fail the load");
    assert!(matches!(error, DetectorError::Invalid { .. }), "{error:?}");
    let message = error.to_string();
    let path = dir.path().join("no_entity.sql");
    assert!(
        message.starts_with(&format!("detector {}: ", path.display())),
        "{message}"
    );
    assert!(message.contains("no entity column"), "{message}");
    assert!(
        message.contains("the output columns are n, score"),
        "{message}"
    );

    let cases = [
        (
            "SELECT value AS entity, count(*) AS n FROM db_metrics \
             GROUP BY value, tumble(interval '1 minute')",
            "the entity column is Float64, not a string",
        ),
        (
            "SELECT entity, 'high' AS score FROM db_metrics \
             GROUP BY entity, tumble(interval '1 minute')",
            "the score column is Utf8, not a number",
        ),
        (
            "SELECT entity, max(name) AS severity FROM db_metrics \
             GROUP BY entity, tumble(interval '1 minute')",
            "the severity column is Utf8, not a number",
        ),
    ];
    for (sql, expected) in cases {
        let message = plan_error(sql);
        assert!(message.contains(expected), "{sql}\n  -> {message}");
    }
}

#[test]
fn too_late_rows_come_back_as_a_side_output_in_the_stream_schema() {
    let mut detector = detector(
        "SELECT entity, count(*) AS n FROM db_metrics GROUP BY entity, tumble(interval '1 minute')",
        0,
    );
    detector.on_watermark(2 * MINUTE).expect("watermark");
    let outcome = detector
        .process_batch(&batch(&[
            Sample::new("db-1", "db_qps", 1.0, 30 * SECOND),
            Sample::new("db-1", "db_qps", 2.0, 2 * MINUTE + SECOND),
            Sample::new("db-2", "db_qps", 3.0, MINUTE + 59 * SECOND),
        ]))
        .expect("batch");
    assert_eq!(outcome.too_late.schema(), metric_schema());
    let times: Vec<i64> = outcome
        .too_late
        .column(4)
        .as_primitive::<TimestampMicrosecondType>()
        .values()
        .to_vec();
    assert_eq!(times, vec![30 * SECOND, MINUTE + 59 * SECOND]);
    assert_eq!(detector.too_late_rows(), 2);
    let results = detector.on_watermark(3 * MINUTE).expect("watermark");
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].start_us, 2 * MINUTE);
}

#[test]
fn a_batch_of_another_schema_is_refused() {
    let mut detector = detector(
        "SELECT entity, count(*) AS n FROM db_metrics GROUP BY entity, tumble(interval '1 minute')",
        0,
    );
    let other = RecordBatch::try_new(
        Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("x", arrow::datatypes::DataType::Int64, false),
        ])),
        vec![Arc::new(arrow::array::Int64Array::from(vec![1]))],
    )
    .expect("batch");
    let error = detector.process_batch(&other).expect_err("schema mismatch");
    assert!(
        matches!(error, DetectorError::InputSchema { .. }),
        "{error}"
    );
}

#[test]
fn state_is_per_series_and_released_when_windows_close() {
    let mut detector = detector(
        "SELECT entity, count(*) AS samples, avg(value) AS mean, max(value) AS peak \
         FROM db_metrics GROUP BY entity, tumble(interval '1 minute')",
        0,
    );
    let samples: Vec<Sample> = (0..10_000)
        .map(|i| {
            Sample::new(
                &format!("db-{}", i % 1000),
                "db_query_latency_ms",
                f64::from(i),
                i64::from(i) * 5_000,
            )
        })
        .collect();
    detector.process_batch(&batch(&samples)).expect("batch");
    assert_eq!(detector.open_windows(), 1);
    assert_eq!(detector.active_groups(), 1000);
    let per_series = detector.state_bytes() / 1000;
    assert!(
        per_series > 0 && per_series <= 2048,
        "{per_series} bytes per series"
    );
    // Ten times the events, same series: the state does not grow with events.
    for _ in 0..9 {
        detector.process_batch(&batch(&samples)).expect("batch");
    }
    assert_eq!(detector.state_bytes() / 1000, per_series);
    let results = detector.on_watermark(MINUTE).expect("watermark");
    assert_eq!(results[0].batch.num_rows(), 1000);
    assert_eq!(detector.open_windows(), 0);
    assert_eq!(detector.active_groups(), 0);
}

/// Pseudo-random but deterministic samples: `batches` batches of 8 rows over 12 entities,
/// event time mostly increasing with jitter of up to 40 s backwards.
fn scenario(batches: usize) -> Vec<Vec<Sample>> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..batches)
        .map(|b| {
            (0..8)
                .map(|_| {
                    let entity = format!("db-{}", next() % 12);
                    let jitter = (next() % 40) as i64 * SECOND;
                    let time = b as i64 * 15 * SECOND - jitter;
                    let value = (next() % 10_000) as f64 / 10.0;
                    Sample::new(&entity, "db_query_latency_ms", value, time)
                })
                .collect()
        })
        .collect()
}

fn run_steps(
    detector: &mut Detector,
    steps: &[Vec<Sample>],
    first: usize,
) -> Vec<(i64, i64, u32, RecordBatch)> {
    let mut out = Vec::new();
    for (i, samples) in steps.iter().enumerate() {
        detector.process_batch(&batch(samples)).expect("batch");
        // The watermark trails the batch's nominal time by 20 s.
        let results: Vec<WindowResult> = detector
            .on_watermark((first + i) as i64 * 15 * SECOND - 20 * SECOND)
            .expect("watermark");
        out.extend(
            results
                .into_iter()
                .map(|r| (r.start_us, r.end_us, r.revision, r.batch)),
        );
    }
    out
}

#[test]
fn a_restored_detector_goes_on_exactly_as_an_uninterrupted_one() {
    // Aggregates whose partial state is lossless. (`hdr_quantile`'s state keeps bucket values,
    // not the exact min and max it clamps to, so a state round trip can move its result
    // within its 0.1% resolution.)
    let aggregates = "count(*) AS n, sum(value) AS total, avg(value) AS mean, min(value) AS low, \
                      max(value) AS high, approx_percentile_cont(value, 0.9) AS p90";
    let windows = [
        ("tumble(interval '1 minute')", 30 * SECOND),
        ("hop(interval '30 seconds', interval '2 minutes')", 0),
        ("session(interval '20 seconds')", 10 * SECOND),
    ];
    let steps = scenario(40);
    let (before, after) = steps.split_at(20);
    for (window, lateness) in windows {
        let sql = format!(
            "SELECT entity, {window} AS window, {aggregates} FROM db_metrics \
             GROUP BY entity, window ORDER BY entity"
        );
        let mut uninterrupted = detector(&sql, lateness);
        run_steps(&mut uninterrupted, before, 0);
        let expected = run_steps(&mut uninterrupted, after, before.len());

        let mut original = detector(&sql, lateness);
        run_steps(&mut original, before, 0);
        assert!(original.open_windows() > 0, "{window}: nothing to snapshot");
        let bytes = original
            .snapshot()
            .expect("snapshot")
            .to_ipc()
            .expect("ipc");
        let snapshot = DetectorSnapshot::from_ipc(&bytes).expect("read");
        let mut restored =
            Detector::restore(Arc::clone(original.plan()), *options(lateness), &snapshot)
                .expect("restore");
        assert_eq!(restored.open_windows(), original.open_windows(), "{window}");
        assert_eq!(
            restored.too_late_rows(),
            original.too_late_rows(),
            "{window}"
        );
        let actual = run_steps(&mut restored, after, before.len());
        assert!(!expected.is_empty(), "{window}: nothing fired");
        assert_eq!(actual, expected, "{window}");
        // The snapshotted detector itself goes on unchanged too.
        assert_eq!(
            run_steps(&mut original, after, before.len()),
            expected,
            "{window}"
        );
    }
}

fn options(lateness_us: i64) -> &'static DetectorOptions {
    Box::leak(Box::new(DetectorOptions {
        allowed_lateness_us: lateness_us,
    }))
}

#[test]
fn a_snapshot_of_another_detector_is_refused() {
    let mut tumbling = detector(
        "SELECT entity, count(*) AS n FROM db_metrics GROUP BY entity, tumble(interval '1 minute')",
        0,
    );
    let snapshot = tumbling.snapshot().expect("snapshot");
    let other = DetectorPlan::from_sql(
        "test",
        "SELECT entity, count(*) AS n FROM db_metrics GROUP BY entity, tumble(interval '2 minutes')",
        &session_context(),
        &[db_metrics()],
    )
    .expect("plan");
    let error = Detector::restore(Arc::new(other), DetectorOptions::default(), &snapshot)
        .expect_err("another window");
    assert!(matches!(error, DetectorError::Snapshot { .. }), "{error}");
}
