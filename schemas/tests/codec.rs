//! Codec behaviour on good and bad input, in every wire format.

use std::fmt::Debug;
use std::sync::Arc;

use opsloop_schemas::examples::{self, ExampleVisitor};
use opsloop_schemas::ops::{Alert, Incident};
use opsloop_schemas::telemetry::{MetricBatch, Span};
use opsloop_schemas::{AvroRecord, Codec, CodecError, RecordKind, SchemaRegistry, WireFormat};

fn codec(format: WireFormat) -> Codec {
    Codec::new(format, Arc::new(SchemaRegistry::builtin()))
}

struct RoundTrip {
    seen: Vec<RecordKind>,
}

impl ExampleVisitor for RoundTrip {
    fn visit<T: AvroRecord + Debug + PartialEq>(&mut self, example: &T) {
        for format in WireFormat::ALL {
            let codec = codec(format);
            let bytes = codec.encode(example).expect("encodes");
            let back: T = codec.decode(&bytes).expect("decodes");
            assert_eq!(&back, example, "{} in {format}", T::KIND);
        }
        self.seen.push(T::KIND);
    }
}

#[test]
fn every_kind_round_trips_in_every_format() {
    let mut visitor = RoundTrip { seen: Vec::new() };
    examples::visit_all(&mut visitor);
    assert_eq!(visitor.seen, RecordKind::ALL);
}

fn first_metric_batch() -> MetricBatch {
    struct Grab(Option<MetricBatch>);
    impl ExampleVisitor for Grab {
        fn visit<T: AvroRecord + Debug + PartialEq>(&mut self, example: &T) {
            if T::KIND == RecordKind::MetricBatch {
                let json = serde_json::to_vec(example).expect("json");
                self.0 = Some(serde_json::from_slice(&json).expect("same type"));
            }
        }
    }
    let mut grab = Grab(None);
    examples::visit_all(&mut grab);
    grab.0.expect("the examples include a metric batch")
}

#[test]
fn confluent_frame_is_magic_id_then_plain_datum() {
    let batch = first_metric_batch();
    let framed = codec(WireFormat::Confluent)
        .encode(&batch)
        .expect("encodes");
    let plain = codec(WireFormat::Avro).encode(&batch).expect("encodes");
    assert_eq!(framed[0], 0);
    assert_eq!(
        u32::from_be_bytes(framed[1..5].try_into().expect("4 bytes")),
        RecordKind::MetricBatch.builtin_schema_id()
    );
    assert_eq!(&framed[5..], &plain[..]);
}

#[test]
fn truncated_records_are_reported_as_truncated() {
    let confluent = codec(WireFormat::Confluent);
    let framed = confluent.encode(&first_metric_batch()).expect("encodes");
    for cut in [0, 3, framed.len() / 2, framed.len() - 1] {
        let err = confluent
            .decode::<MetricBatch>(&framed[..cut])
            .expect_err("truncated input must fail");
        assert!(
            matches!(err, CodecError::Truncated { .. }),
            "cut at {cut}: {err}"
        );
        assert_eq!(err.reason_code(), "truncated");
    }
}

#[test]
fn wrong_magic_byte_is_named() {
    let confluent = codec(WireFormat::Confluent);
    let mut framed = confluent.encode(&first_metric_batch()).expect("encodes");
    framed[0] = b'{';
    let err = confluent
        .decode::<MetricBatch>(&framed)
        .expect_err("bad magic");
    assert!(matches!(err, CodecError::BadMagic { found: b'{' }), "{err}");
    assert!(err.to_string().contains("0x7b"), "{err}");
}

#[test]
fn unknown_schema_id_is_named() {
    let confluent = codec(WireFormat::Confluent);
    let mut framed = confluent.encode(&first_metric_batch()).expect("encodes");
    framed[1..5].copy_from_slice(&4242u32.to_be_bytes());
    let err = confluent
        .decode::<MetricBatch>(&framed)
        .expect_err("unknown id");
    assert!(
        matches!(err, CodecError::UnknownSchemaId { id: 4242 }),
        "{err}"
    );
    assert!(err.to_string().contains("4242"));
}

#[test]
fn schema_id_of_another_kind_is_refused() {
    let confluent = codec(WireFormat::Confluent);
    let framed = confluent.encode(&first_metric_batch()).expect("encodes");
    let err = confluent.decode::<Span>(&framed).expect_err("wrong kind");
    assert!(
        matches!(
            err,
            CodecError::WrongKind {
                found: RecordKind::MetricBatch,
                expected: RecordKind::Span,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn record_that_breaks_the_schema_is_a_schema_mismatch() {
    // An Incident whose `tier` enum index is 9 although the enum has four symbols.
    let mut datum = Vec::new();
    let avro_string = |out: &mut Vec<u8>, s: &str| {
        out.push((s.len() as u8) << 1);
        out.extend_from_slice(s.as_bytes());
    };
    avro_string(&mut datum, "inc-1");
    datum.push(2); // version = 1 (zig-zag)
    for field in ["db", "standalone", "latency"] {
        avro_string(&mut datum, field);
    }
    datum.extend_from_slice(&0.5f64.to_le_bytes()); // severity
    datum.push(18); // tier index 9 (zig-zag)
    datum.extend_from_slice(&[0; 16]);
    let err = codec(WireFormat::Avro)
        .decode::<Incident>(&datum)
        .expect_err("enum index out of range");
    assert!(matches!(err, CodecError::SchemaMismatch { .. }), "{err}");
}

#[test]
fn trailing_bytes_are_refused() {
    let avro = codec(WireFormat::Avro);
    let mut bytes = avro.encode(&first_metric_batch()).expect("encodes");
    bytes.extend_from_slice(&[1, 2, 3]);
    let err = avro.decode::<MetricBatch>(&bytes).expect_err("trailing");
    assert!(
        matches!(err, CodecError::TrailingBytes { count: 3, .. }),
        "{err}"
    );
}

#[test]
fn invalid_json_is_named() {
    let err = codec(WireFormat::Json)
        .decode::<Alert>(br#"{"alert_id": 7}"#)
        .expect_err("wrong type");
    assert_eq!(err.reason_code(), "invalid_json");
    assert!(err.to_string().contains("Alert"), "{err}");
}

/// The alert schema as it was before `labels` and `emitted_us` were added.
const ALERT_V1: &str = r#"{
  "type": "record", "name": "Alert", "namespace": "io.opsloop.ops",
  "fields": [
    {"name": "alert_id", "type": "string"},
    {"name": "entity", "type": "string"},
    {"name": "detector", "type": "string"},
    {"name": "alert_type", "type": "string"},
    {"name": "score", "type": "double"},
    {"name": "severity", "type": "double"},
    {"name": "window_start_us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "window_end_us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "evidence", "type": {"type": "map", "values": "double"}}
  ]
}"#;

#[test]
fn newer_reader_reads_records_written_with_an_older_schema() {
    #[derive(serde::Serialize)]
    struct AlertV1<'a> {
        alert_id: &'a str,
        entity: &'a str,
        detector: &'a str,
        alert_type: &'a str,
        score: f64,
        severity: f64,
        window_start_us: i64,
        window_end_us: i64,
        evidence: std::collections::BTreeMap<String, f64>,
    }
    let old_schema: opsloop_schemas::Schema = ALERT_V1.parse().expect("v1 parses");
    let v1 = AlertV1 {
        alert_id: "a-1",
        entity: "db-1",
        detector: "latency",
        alert_type: "query_latency_increase",
        score: 4.5,
        severity: 0.6,
        window_start_us: 1_000,
        window_end_us: 61_000_000,
        evidence: [("p99_ms".to_owned(), 120.0)].into_iter().collect(),
    };
    let datum = serde_avro_fast::to_datum_vec(
        &v1,
        &mut serde_avro_fast::ser::SerializerConfig::new(&old_schema),
    )
    .expect("v1 encodes");

    let mut registry = SchemaRegistry::builtin();
    registry
        .register(600, RecordKind::Alert, ALERT_V1)
        .expect("v1 registers");
    let mut framed = vec![0];
    framed.extend_from_slice(&600u32.to_be_bytes());
    framed.extend_from_slice(&datum);

    let alert: Alert = Codec::new(WireFormat::Confluent, Arc::new(registry))
        .decode(&framed)
        .expect("current reader decodes v1 data");
    assert_eq!(alert.alert_id, "a-1");
    assert_eq!(alert.evidence["p99_ms"], 120.0);
    assert!(alert.labels.is_empty(), "added map field takes its default");
    assert_eq!(alert.emitted_us, 0, "added long field takes its default");
}

#[test]
fn registering_a_schema_for_the_wrong_record_fails() {
    let mut registry = SchemaRegistry::builtin();
    let err = registry
        .register(601, RecordKind::Span, ALERT_V1)
        .expect_err("names Alert, not Span");
    assert!(err.to_string().contains("io.opsloop.ops.Alert"), "{err}");
    let err = registry
        .register(
            RecordKind::Span.builtin_schema_id(),
            RecordKind::Alert,
            ALERT_V1,
        )
        .expect_err("id taken");
    assert!(err.to_string().contains("already registered"), "{err}");
}
