//! Logs and spans as stream tables: the source registry's layouts feed detectors like metrics
//! do, so `opsloop run` reads `telemetry.logs` and `telemetry.traces` with two `[[sources]]`;
//! and what a `[[sources]]` entry sets of its Kafka source.

use std::sync::Arc;
use std::time::{Duration, Instant};

use opsloop_connectors::decode::{AvroRecordDecoder, Decoder, RecordContext, RowBuilder};
use opsloop_connectors::registry::SourceFormat;
use opsloop_engine::detector::{Detector, DetectorOptions, DetectorPlan, session_context};
use opsloop_engine::runtime::Engine;
use opsloop_engine::time::{PartitionId, WatermarkConfig};
use opsloop_runtime::config::SourceSection;
use opsloop_runtime::kafka::stream_tables;
use opsloop_schemas::telemetry::{LogRecord, Severity, Span, SpanStatus};
use opsloop_schemas::{AvroRecord, Codec, SchemaRegistry, WireFormat};

const MINUTE: i64 = 60_000_000;
const T0: i64 = 1_800_000_000 * 1_000_000;

fn source(name: &str, format: SourceFormat) -> SourceSection {
    SourceSection {
        name: name.to_owned(),
        topic: format!("telemetry.{name}"),
        format,
        encoding: None,
        table: name.to_owned(),
        max_record_bytes: 1 << 20,
        max_future_skew_ms: 300_000,
    }
}

/// `records` through the Kafka source's decoder into one micro-batch.
fn batch<T: AvroRecord>(records: &[T]) -> arrow::record_batch::RecordBatch {
    let codec = Codec::new(WireFormat::Confluent, Arc::new(SchemaRegistry::builtin()));
    let mut decoder = AvroRecordDecoder::<T>::new(codec.clone());
    let mut rows = decoder.new_rows();
    for record in records {
        let payload = codec.encode(record).expect("encodes");
        decoder
            .decode(&payload, &RecordContext::new("t", 0), &mut rows)
            .expect("decodes");
    }
    rows.finish().expect("a batch")
}

#[test]
fn logs_and_spans_feed_detectors_through_the_registry_layouts() {
    let streams = stream_tables(&[
        source("logs", SourceFormat::OtlpLogs),
        source("traces", SourceFormat::Span),
    ])
    .expect("tables");
    let context = session_context();
    let plan = |name: &str, sql: &str| {
        Detector::new(
            Arc::new(DetectorPlan::from_sql(name, sql, &context, &streams).expect("plans")),
            DetectorOptions::default(),
        )
        .expect("detector")
    };
    let detectors = vec![
        plan(
            "log_errors",
            "SELECT entity, tumble(interval '1 minute') AS window, count(*) AS errors, \
             'log_error_burst' AS alert_type FROM logs WHERE severity = 'ERROR' \
             GROUP BY entity, window HAVING count(*) >= 3",
        ),
        plan(
            "span_errors",
            "SELECT entity, tumble(interval '1 minute') AS window, count(*) AS failed, \
             'span_error_burst' AS alert_type FROM traces WHERE status = 'ERROR' \
             GROUP BY entity, window HAVING count(*) >= 2",
        ),
    ];
    let mut engine = Engine::new(WatermarkConfig::default(), detectors);
    let log = |entity: &str, at: i64, severity| LogRecord {
        entity: entity.to_owned(),
        time_us: T0 + at,
        severity,
        body: "connection refused".to_owned(),
        attributes: Default::default(),
        trace_id: None,
    };
    let logs: Vec<LogRecord> = (0..4)
        .map(|i| log("db-1", i * 1_000_000, Severity::Error))
        .chain([
            log("db-2", 0, Severity::Error),
            log("db-2", 5, Severity::Info),
        ])
        .collect();
    let span = |entity: &str, at: i64, status| Span {
        trace_id: format!("t{at}"),
        span_id: "s".to_owned(),
        parent_span_id: None,
        service: "ranker".to_owned(),
        operation: "SELECT".to_owned(),
        entity: entity.to_owned(),
        start_time_us: T0 + 3 * MINUTE + at,
        duration_us: 1_000,
        status,
        attributes: Default::default(),
    };
    let spans = vec![
        span("db-3", 1, SpanStatus::Error),
        span("db-3", 2, SpanStatus::Error),
        span("db-4", 3, SpanStatus::Ok),
    ];
    let now = Instant::now();
    let mut alerts = Vec::new();
    // The logs' minutes first, then the spans' (later: a row behind the watermark is late).
    for (table, rows, newest) in [
        ("logs", batch(&logs), T0 + 2 * MINUTE),
        ("traces", batch(&spans), T0 + 5 * MINUTE),
    ] {
        let partition = (PartitionId::new(table, 0), newest);
        alerts.extend(
            engine
                .process(table, &rows, &[partition], now)
                .expect("processed")
                .alerts,
        );
    }
    // The logs' partition goes quiet: the watermark follows the spans' and closes their window.
    let later = now + std::time::Duration::from_secs(60);
    alerts.extend(engine.tick(later).expect("ticked").alerts);
    let mut fired: Vec<(String, String)> = alerts
        .iter()
        .map(|a| (a.alert_type.clone(), a.entity.clone()))
        .collect();
    fired.sort();
    assert_eq!(
        fired,
        [
            ("log_error_burst".to_owned(), "db-1".to_owned()),
            ("span_error_burst".to_owned(), "db-3".to_owned()),
        ]
    );
}

#[test]
fn a_source_entry_sets_its_record_limit_and_future_skew_and_zero_turns_the_check_off() {
    let entry = |extra: &[(&str, serde_json::Value)]| {
        let mut entry = serde_json::json!({
            "name": "metrics",
            "topic": "telemetry.metrics",
            "format": "metric_batch",
            "table": "db_metrics",
        });
        for (key, value) in extra {
            entry[*key] = value.clone();
        }
        serde_json::from_value::<SourceSection>(entry)
    };
    let defaults = entry(&[])
        .expect("every new key has a default")
        .source_config("opsloop.metrics".to_owned());
    assert_eq!(defaults.group_id, "opsloop.metrics");
    assert_eq!(defaults.topics, ["telemetry.metrics"]);
    assert_eq!(defaults.max_record_bytes, 1 << 20);
    assert_eq!(defaults.max_future_skew, Some(Duration::from_secs(300)));

    let set = entry(&[
        ("max_record_bytes", 4_194_304.into()),
        ("max_future_skew_ms", 60_000.into()),
    ])
    .expect("valid")
    .source_config("g".to_owned());
    assert_eq!(
        (set.max_record_bytes, set.max_future_skew),
        (4_194_304, Some(Duration::from_secs(60)))
    );
    let off = entry(&[("max_future_skew_ms", 0.into())])
        .expect("valid")
        .source_config("g".to_owned());
    assert_eq!(off.max_future_skew, None, "0 turns the check off");
    assert!(
        entry(&[("max_record_size", 1.into())]).is_err(),
        "a misspelt key is refused"
    );
}
