//! OTLP decoders: requests built with the OpenTelemetry protobuf types and hand-written
//! OTLP/JSON documents decode to exact rows; entity resolution, severity mapping, histogram
//! quantiles, error reasons, the size limit, and the rule that a record that fails appends
//! nothing.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord as OtlpLogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
    metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan, Status};
use opsloop_connectors::decode::{
    DEFAULT_MAX_RECORD_BYTES, DecodeError, Decoder, MetricSamplesBuilder, OTLP_LOGS_TOPIC,
    OTLP_METRICS_TOPIC, OTLP_SOURCE, OTLP_SPANS_TOPIC, OtlpEncoding, OtlpLogsDecoder,
    OtlpMetricsDecoder, OtlpTracesDecoder, RecordContext, RecordRows, RowBuilder,
    metric_samples_schema, record_schema,
};
use opsloop_schemas::AvroRecord;
use opsloop_schemas::telemetry::{LogRecord, Severity, Span, SpanStatus};
use prost::Message;
use serde::de::DeserializeOwned;

use crate::erased::Json;

/// 2024-05-01T12:00:00Z, the record timestamp of every test record, in µs.
const T: i64 = 1_714_564_800_000_000;
/// `T` in nanoseconds, for OTLP times.
const T_NS: u64 = 1_714_564_800_000_000_000;
const SECOND_NS: u64 = 1_000_000_000;
const SECOND_US: i64 = 1_000_000;

const TRACE_ID: [u8; 16] = [
    0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c,
];
const TRACE_HEX: &str = "5b8efff798038103d269b633813fc60c";
const SPAN_ID: [u8; 8] = [0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74];
const SPAN_HEX: &str = "eee19b7ec3c1b174";
const PARENT_ID: [u8; 8] = [0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x73];
const PARENT_HEX: &str = "eee19b7ec3c1b173";

// ---------------------------------------------------------------------------------------------
// Building requests with the OpenTelemetry protobuf types.

fn any(value: Value) -> AnyValue {
    AnyValue { value: Some(value) }
}

fn string(text: &str) -> Value {
    Value::StringValue(text.to_owned())
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(any(value)),
        ..Default::default()
    }
}

fn kvs(pairs: &[(&str, &str)]) -> Vec<KeyValue> {
    pairs.iter().map(|&(k, v)| kv(k, string(v))).collect()
}

fn resource(pairs: &[(&str, &str)]) -> Option<Resource> {
    Some(Resource {
        attributes: kvs(pairs),
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "io.opsloop.test".to_owned(),
        version: "1.0".to_owned(),
        ..Default::default()
    })
}

fn metrics_request(
    resource_pairs: &[(&str, &str)],
    metrics: Vec<Metric>,
) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(resource_pairs),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn metric(name: &str, data: Data) -> Metric {
    Metric {
        name: name.to_owned(),
        data: Some(data),
        ..Default::default()
    }
}

fn gauge(name: &str, points: Vec<NumberDataPoint>) -> Metric {
    metric(
        name,
        Data::Gauge(Gauge {
            data_points: points,
        }),
    )
}

fn double_point(attributes: &[(&str, &str)], time_ns: u64, value: f64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: kvs(attributes),
        time_unix_nano: time_ns,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

fn histogram_point(bounds: &[f64], counts: &[u64], sum: Option<f64>) -> HistogramDataPoint {
    HistogramDataPoint {
        time_unix_nano: T_NS,
        count: counts.iter().sum(),
        sum,
        bucket_counts: counts.to_vec(),
        explicit_bounds: bounds.to_vec(),
        ..Default::default()
    }
}

fn histogram(name: &str, points: Vec<HistogramDataPoint>) -> Metric {
    metric(
        name,
        Data::Histogram(Histogram {
            data_points: points,
            aggregation_temporality: 2,
        }),
    )
}

fn logs_request(
    resource_pairs: &[(&str, &str)],
    records: Vec<OtlpLogRecord>,
) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(resource_pairs),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn log(body: Value) -> OtlpLogRecord {
    OtlpLogRecord {
        time_unix_nano: T_NS,
        body: Some(any(body)),
        ..Default::default()
    }
}

fn traces_request(
    resource_pairs: &[(&str, &str)],
    spans: Vec<OtlpSpan>,
) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(resource_pairs),
            scope_spans: vec![ScopeSpans {
                scope: scope(),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn span(name: &str) -> OtlpSpan {
    OtlpSpan {
        trace_id: TRACE_ID.to_vec(),
        span_id: SPAN_ID.to_vec(),
        name: name.to_owned(),
        start_time_unix_nano: T_NS,
        end_time_unix_nano: T_NS + 1_500_000,
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Reading rows back.

fn context() -> RecordContext<'static> {
    RecordContext::new(OTLP_METRICS_TOPIC, T)
}

#[derive(Debug, Clone, PartialEq)]
struct Row {
    entity: String,
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
    time_us: i64,
}

fn row(entity: &str, name: &str, labels: &[(&str, &str)], value: f64, time_us: i64) -> Row {
    Row {
        entity: entity.to_owned(),
        name: name.to_owned(),
        labels: labels
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        value,
        time_us,
    }
}

/// The rows of a metric batch; checks the schema and that every source is `otlp`.
fn metric_rows(batch: &RecordBatch) -> Vec<Row> {
    assert_eq!(batch.schema(), metric_samples_schema());
    let strings = |i: usize| batch.column(i).as_string::<i32>().clone();
    let (entity, name, source) = (strings(0), strings(1), strings(5));
    let labels = batch.column(2).as_map();
    let value = batch.column(3).as_primitive::<Float64Type>();
    let time = batch.column(4).as_primitive::<TimestampMicrosecondType>();
    (0..batch.num_rows())
        .map(|i| {
            assert_eq!(source.value(i), OTLP_SOURCE);
            let entries = labels.value(i);
            let keys = entries.column(0).as_string::<i32>();
            let values = entries.column(1).as_string::<i32>();
            Row {
                entity: entity.value(i).to_owned(),
                name: name.value(i).to_owned(),
                labels: (0..entries.len())
                    .map(|j| (keys.value(j).to_owned(), values.value(j).to_owned()))
                    .collect(),
                value: value.value(i),
                time_us: time.value(i),
            }
        })
        .collect()
}

fn decode_metrics(
    decoder: &mut OtlpMetricsDecoder,
    payload: &[u8],
    context: &RecordContext<'_>,
) -> Result<Vec<Row>, DecodeError> {
    let mut out = decoder.new_rows();
    let appended = decoder.decode(payload, context, &mut out)?;
    assert_eq!(appended, out.len());
    Ok(metric_rows(&out.finish().expect("batch")))
}

/// Decodes one record of kind `T` and reads its rows back as records.
fn decode_records<D, T>(
    decoder: &mut D,
    payload: &[u8],
    context: &RecordContext<'_>,
) -> Result<Vec<T>, DecodeError>
where
    D: Decoder<Rows = RecordRows<T>>,
    T: AvroRecord + DeserializeOwned,
{
    let mut out = decoder.new_rows();
    let appended = decoder.decode(payload, context, &mut out)?;
    assert_eq!(appended, out.len());
    let batch = out.finish().expect("batch");
    assert_eq!(batch.schema(), record_schema::<T>());
    Ok(serde_arrow::from_record_batch(&batch).expect("rows read back"))
}

/// The same request as protobuf and as the JSON that `opentelemetry-proto` writes.
fn both_encodings<M: Message + serde::Serialize>(request: &M) -> [(OtlpEncoding, Vec<u8>); 2] {
    [
        (OtlpEncoding::Proto, request.encode_to_vec()),
        (
            OtlpEncoding::Json,
            serde_json::to_vec(request).expect("request serializes"),
        ),
    ]
}

fn approx(actual: f64, expected: f64) -> bool {
    (actual - expected).abs() < 1e-9
}

// ---------------------------------------------------------------------------------------------
// Encoding names and topics.

#[test]
fn encodings_parse_by_exporter_name_and_default_to_proto() {
    assert_eq!("otlp_proto".parse(), Ok(OtlpEncoding::Proto));
    assert_eq!("otlp_json".parse(), Ok(OtlpEncoding::Json));
    assert_eq!(OtlpEncoding::default(), OtlpEncoding::Proto);
    for encoding in OtlpEncoding::ALL {
        assert_eq!(encoding.to_string().parse(), Ok(encoding));
    }
    let error = "json".parse::<OtlpEncoding>().expect_err("unknown name");
    assert!(error.contains("otlp_proto or otlp_json"), "{error}");
    assert_eq!(
        [OTLP_METRICS_TOPIC, OTLP_LOGS_TOPIC, OTLP_SPANS_TOPIC],
        ["otlp_metrics", "otlp_logs", "otlp_spans"]
    );
}

// ---------------------------------------------------------------------------------------------
// Metrics.

const RESOURCE: [(&str, &str); 4] = [
    ("service.name", "checkout"),
    ("service.instance.id", "checkout-7f9c"),
    ("host.name", "node-1"),
    ("cloud.region", "eu-west-1"),
];

/// The labels every sample of [`RESOURCE`] carries.
fn resource_labels<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut labels = vec![
        ("host.name", "node-1"),
        ("service.instance.id", "checkout-7f9c"),
        ("service.name", "checkout"),
    ];
    labels.extend_from_slice(extra);
    labels
}

fn gauge_and_sum_request() -> ExportMetricsServiceRequest {
    let sum_point = NumberDataPoint {
        attributes: vec![
            kv("route", string("/pay")),
            kv("code", Value::IntValue(200)),
        ],
        start_time_unix_nano: T_NS - 60 * SECOND_NS,
        time_unix_nano: 0,
        value: Some(number_data_point::Value::AsInt(1027)),
        ..Default::default()
    };
    metrics_request(
        &RESOURCE,
        vec![
            gauge(
                "system.cpu.utilization",
                vec![
                    double_point(&[("cpu", "0")], T_NS + SECOND_NS, 0.25),
                    // A point attribute wins over the resource label of the same name.
                    double_point(&[("host.name", "override")], T_NS + SECOND_NS, 0.5),
                ],
            ),
            metric(
                "http.server.requests",
                Data::Sum(Sum {
                    data_points: vec![sum_point],
                    aggregation_temporality: 2,
                    is_monotonic: true,
                }),
            ),
        ],
    )
}

fn gauge_and_sum_rows() -> Vec<Row> {
    let e = "checkout-7f9c";
    let mut overridden = resource_labels(&[]);
    overridden[0].1 = "override";
    vec![
        row(
            e,
            "system.cpu.utilization",
            &resource_labels(&[("cpu", "0")]),
            0.25,
            T + SECOND_US,
        ),
        row(e, "system.cpu.utilization", &overridden, 0.5, T + SECOND_US),
        row(
            e,
            "http.server.requests",
            &resource_labels(&[("code", "200"), ("route", "/pay")]),
            1027.0,
            T,
        ),
    ]
}

#[test]
fn gauges_and_sums_decode_in_both_encodings() {
    for (encoding, payload) in both_encodings(&gauge_and_sum_request()) {
        let mut decoder = OtlpMetricsDecoder::new(encoding);
        let rows = decode_metrics(&mut decoder, &payload, &context()).expect("decodes");
        assert_eq!(rows, gauge_and_sum_rows(), "{encoding}");
        assert_eq!(decoder.skipped_values(), 0);
    }
}

/// A hand-written OTLP/JSON metrics request in the shape of the OTLP specification's
/// examples: 64-bit integers as strings and as numbers, `asInt` as a string.
const METRICS_JSON: &str = r#"{
  "resourceMetrics": [
    {
      "resource": {
        "attributes": [
          { "key": "service.name", "value": { "stringValue": "checkout" } },
          { "key": "service.instance.id", "value": { "stringValue": "checkout-7f9c" } },
          { "key": "host.name", "value": { "stringValue": "node-1" } },
          { "key": "cloud.region", "value": { "stringValue": "eu-west-1" } }
        ]
      },
      "scopeMetrics": [
        {
          "scope": { "name": "io.opsloop.test", "version": "1.0", "unknownField": true },
          "metrics": [
            {
              "name": "system.cpu.utilization",
              "unit": "1",
              "gauge": {
                "dataPoints": [
                  {
                    "attributes": [{ "key": "cpu", "value": { "stringValue": "0" } }],
                    "timeUnixNano": "1714564801000000000",
                    "asDouble": 0.25
                  },
                  {
                    "attributes": [{ "key": "host.name", "value": { "stringValue": "override" } }],
                    "timeUnixNano": 1714564801000000000,
                    "asDouble": 0.5
                  }
                ]
              }
            },
            {
              "name": "http.server.requests",
              "sum": {
                "aggregationTemporality": 2,
                "isMonotonic": true,
                "dataPoints": [
                  {
                    "attributes": [
                      { "key": "route", "value": { "stringValue": "/pay" } },
                      { "key": "code", "value": { "intValue": "200" } }
                    ],
                    "startTimeUnixNano": "1714564740000000000",
                    "asInt": "1027"
                  }
                ]
              }
            }
          ]
        }
      ]
    }
  ]
}"#;

#[test]
fn hand_written_otlp_json_metrics_decode() {
    let mut decoder = OtlpMetricsDecoder::new(OtlpEncoding::Json);
    let rows = decode_metrics(&mut decoder, METRICS_JSON.as_bytes(), &context()).expect("decodes");
    assert_eq!(rows, gauge_and_sum_rows());
}

/// Bounds 1, 2, 4 with 40, 40, 15 and 5 observations (100 in all) hold the quantiles:
/// p50 rank 50 in (1, 2]: 1 + 1 * 10/40 = 1.25; p90 rank 90 in (2, 4]: 2 + 2 * 10/15;
/// p95 rank 95 at the top of (2, 4]: 4; p99 rank 99 in the overflow bucket: clamped to 4.
#[test]
fn histogram_quantiles_interpolate_like_histogram_quantile() {
    let request = metrics_request(
        &[("host.name", "node-1")],
        vec![
            histogram(
                "http.server.duration",
                vec![histogram_point(
                    &[1.0, 2.0, 4.0],
                    &[40, 40, 15, 5],
                    Some(180.0),
                )],
            ),
            // Everything in the first bucket, which starts at 0: p50 rank 2 of 4 -> 5.
            histogram(
                "first.bucket",
                vec![histogram_point(&[10.0], &[4, 0], Some(20.0))],
            ),
            // The first bucket's bound is not positive: its quantiles are the bound itself.
            histogram(
                "negative",
                vec![histogram_point(&[-1.0, 5.0], &[3, 1, 0], None)],
            ),
            // No buckets (count and sum only) and no observations: no quantiles.
            histogram(
                "no.buckets",
                vec![HistogramDataPoint {
                    count: 7,
                    sum: Some(3.5),
                    ..histogram_point(&[], &[], None)
                }],
            ),
            histogram("empty", vec![histogram_point(&[1.0], &[0, 0], Some(0.0))]),
        ],
    );
    for (encoding, payload) in both_encodings(&request) {
        let rows = decode_metrics(&mut OtlpMetricsDecoder::new(encoding), &payload, &context())
            .expect("decodes");
        let value = |name: &str, quantile: Option<&str>| -> Vec<f64> {
            rows.iter()
                .filter(|row| {
                    row.name == name && row.labels.get("quantile").map(String::as_str) == quantile
                })
                .map(|row| row.value)
                .collect()
        };
        let one = |name: &str, quantile: Option<&str>| -> f64 {
            let values = value(name, quantile);
            assert_eq!(values.len(), 1, "{name} {quantile:?}: {rows:?}");
            values[0]
        };
        let d = "http.server.duration";
        assert_eq!(one(&format!("{d}_count"), None), 100.0);
        assert_eq!(one(&format!("{d}_sum"), None), 180.0);
        assert!(approx(one(d, Some("0.5")), 1.25));
        assert!(approx(one(d, Some("0.9")), 2.0 + 2.0 * 10.0 / 15.0));
        assert!(approx(one(d, Some("0.95")), 4.0));
        assert!(approx(one(d, Some("0.99")), 4.0));
        assert!(approx(one("first.bucket", Some("0.5")), 5.0));
        assert!(approx(one("first.bucket", Some("0.9")), 9.0));
        assert!(approx(one("first.bucket", Some("0.99")), 9.9));
        assert_eq!(one("negative", Some("0.5")), -1.0);
        // Rank 3.96 of 4 lies in (-1, 5] holding one observation: -1 + 6 * 0.96.
        assert!(approx(one("negative", Some("0.99")), -1.0 + 6.0 * 0.96));
        assert!(
            value("negative_sum", None).is_empty(),
            "a point without a sum"
        );
        assert_eq!(one("no.buckets_count", None), 7.0);
        assert_eq!(one("no.buckets_sum", None), 3.5);
        assert!(value("no.buckets", Some("0.5")).is_empty());
        assert_eq!(one("empty_count", None), 0.0);
        assert!(value("empty", Some("0.5")).is_empty());
        // 6 + 6 + 5 + 2 + 2 rows, every one on the host's entity and labels.
        assert_eq!(rows.len(), 21);
        for row in &rows {
            assert_eq!(row.entity, "node-1");
            assert_eq!(
                row.labels.get("host.name").map(String::as_str),
                Some("node-1")
            );
            assert_eq!(row.time_us, T);
        }
    }
}

#[test]
fn summaries_and_exponential_histograms() {
    let summary_point = SummaryDataPoint {
        attributes: kvs(&[("method", "get")]),
        time_unix_nano: T_NS,
        count: 10,
        sum: 12.5,
        quantile_values: vec![
            ValueAtQuantile {
                quantile: 0.5,
                value: 1.0,
            },
            ValueAtQuantile {
                quantile: 0.99,
                value: 3.5,
            },
        ],
        ..Default::default()
    };
    let exponential_point = ExponentialHistogramDataPoint {
        time_unix_nano: T_NS,
        count: 12,
        sum: Some(30.0),
        scale: 2,
        zero_count: 1,
        ..Default::default()
    };
    let request = metrics_request(
        &[("service.name", "api")],
        vec![
            metric(
                "rpc.latency",
                Data::Summary(Summary {
                    data_points: vec![summary_point],
                }),
            ),
            metric(
                "request.size",
                Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![exponential_point],
                    aggregation_temporality: 1,
                }),
            ),
        ],
    );
    let labels = |extra: &[(&'static str, &'static str)]| {
        let mut labels = vec![("method", "get"), ("service.name", "api")];
        labels.extend_from_slice(extra);
        labels
    };
    let expected = vec![
        row("api", "rpc.latency_count", &labels(&[]), 10.0, T),
        row("api", "rpc.latency_sum", &labels(&[]), 12.5, T),
        row(
            "api",
            "rpc.latency",
            &labels(&[("quantile", "0.5")]),
            1.0,
            T,
        ),
        row(
            "api",
            "rpc.latency",
            &labels(&[("quantile", "0.99")]),
            3.5,
            T,
        ),
        row(
            "api",
            "request.size_count",
            &[("service.name", "api")],
            12.0,
            T,
        ),
        row(
            "api",
            "request.size_sum",
            &[("service.name", "api")],
            30.0,
            T,
        ),
    ];
    for (encoding, payload) in both_encodings(&request) {
        let rows = decode_metrics(&mut OtlpMetricsDecoder::new(encoding), &payload, &context())
            .expect("decodes");
        assert_eq!(rows, expected, "{encoding}");
    }
}

#[test]
fn non_finite_stale_and_empty_values_are_skipped_and_counted() {
    let stale = NumberDataPoint {
        flags: 1,
        ..double_point(&[], T_NS, 3.0)
    };
    let no_value = NumberDataPoint {
        value: None,
        ..double_point(&[], T_NS, 0.0)
    };
    let nan_summary = SummaryDataPoint {
        time_unix_nano: T_NS,
        count: 0,
        sum: 0.0,
        quantile_values: vec![ValueAtQuantile {
            quantile: 0.5,
            value: f64::NAN,
        }],
        ..Default::default()
    };
    let request = metrics_request(
        &[("host.name", "h")],
        vec![
            gauge(
                "g",
                vec![
                    double_point(&[], T_NS, f64::NAN),
                    double_point(&[], T_NS, f64::INFINITY),
                    stale,
                    no_value,
                    double_point(&[], T_NS, 2.0),
                ],
            ),
            histogram(
                "h",
                vec![HistogramDataPoint {
                    flags: 1,
                    ..histogram_point(&[1.0], &[1, 1], Some(1.0))
                }],
            ),
            histogram(
                "hs",
                vec![histogram_point(&[1.0], &[1, 0], Some(f64::NEG_INFINITY))],
            ),
            metric(
                "s",
                Data::Summary(Summary {
                    data_points: vec![nan_summary],
                }),
            ),
        ],
    );
    let mut decoder = OtlpMetricsDecoder::new(OtlpEncoding::Proto);
    let payload = request.encode_to_vec();
    let rows = decode_metrics(&mut decoder, &payload, &context()).expect("decodes");
    let names: Vec<&str> = rows.iter().map(|row| row.name.as_str()).collect();
    assert_eq!(
        names,
        ["g", "hs_count", "hs", "hs", "hs", "hs", "s_count", "s_sum"]
    );
    assert_eq!(rows[0].value, 2.0);
    // NaN, +Inf, stale, no value; the stale histogram; -Inf sum; the NaN quantile.
    assert_eq!(decoder.skipped_values(), 7);
    decode_metrics(&mut decoder, &payload, &context()).expect("decodes");
    assert_eq!(decoder.skipped_values(), 14, "the counter accumulates");
}

// ---------------------------------------------------------------------------------------------
// Entity resolution.

/// Resource attributes as key-value pairs.
type Attributes<'a> = &'a [(&'a str, &'a str)];

#[test]
fn entity_prefers_instance_then_host_then_service_then_key() {
    let cases: [(Attributes, Option<&[u8]>, &str); 7] = [
        (&RESOURCE, Some(b"key-1"), "checkout-7f9c"),
        (
            &[("service.name", "checkout"), ("host.name", "node-1")],
            Some(b"key-1"),
            "node-1",
        ),
        (&[("service.name", "checkout")], Some(b"key-1"), "checkout"),
        // Empty attribute values do not count.
        (
            &[("service.instance.id", ""), ("service.name", "checkout")],
            None,
            "checkout",
        ),
        (&[("cloud.region", "eu")], Some(b"key-1"), "key-1"),
        (&[], None, "unknown"),
        (&[], Some(b""), "unknown"),
    ];
    for (attributes, key, expected) in cases {
        let mut context = context();
        context.key = key;
        let metrics = metrics_request(
            attributes,
            vec![gauge("g", vec![double_point(&[], T_NS, 1.0)])],
        );
        let logs = logs_request(attributes, vec![log(string("hello"))]);
        let traces = traces_request(attributes, vec![span("GET /")]);
        for encoding in OtlpEncoding::ALL {
            let encode = |proto: Vec<u8>, json: Vec<u8>| match encoding {
                OtlpEncoding::Proto => proto,
                OtlpEncoding::Json => json,
            };
            let json = |value: &dyn erased::Json| value.json();
            let rows = decode_metrics(
                &mut OtlpMetricsDecoder::new(encoding),
                &encode(metrics.encode_to_vec(), json(&metrics)),
                &context,
            )
            .expect("metrics decode");
            assert_eq!(
                rows[0].entity, expected,
                "metrics {attributes:?} {encoding}"
            );
            let logs: Vec<LogRecord> = decode_records(
                &mut OtlpLogsDecoder::new(encoding),
                &encode(logs.encode_to_vec(), json(&logs)),
                &context,
            )
            .expect("logs decode");
            assert_eq!(logs[0].entity, expected, "logs {attributes:?} {encoding}");
            let spans: Vec<Span> = decode_records(
                &mut OtlpTracesDecoder::new(encoding),
                &encode(traces.encode_to_vec(), json(&traces)),
                &context,
            )
            .expect("traces decode");
            assert_eq!(spans[0].entity, expected, "spans {attributes:?} {encoding}");
        }
    }
}

/// Serializing requests of any signal as JSON through one function.
mod erased {
    pub(crate) trait Json {
        fn json(&self) -> Vec<u8>;
    }

    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> Vec<u8> {
            serde_json::to_vec(self).expect("request serializes")
        }
    }
}

#[test]
fn the_key_is_checked_for_utf8_only_when_it_is_the_entity() {
    let mut context = context();
    context.key = Some(b"\xff\xfe");
    let named = metrics_request(
        &[("host.name", "h")],
        vec![gauge("g", vec![double_point(&[], T_NS, 1.0)])],
    );
    let rows = decode_metrics(
        &mut OtlpMetricsDecoder::default(),
        &named.encode_to_vec(),
        &context,
    )
    .expect("the resource names the entity");
    assert_eq!(rows[0].entity, "h");
    let unnamed = metrics_request(&[], vec![gauge("g", vec![double_point(&[], T_NS, 1.0)])]);
    let error = decode_metrics(
        &mut OtlpMetricsDecoder::default(),
        &unnamed.encode_to_vec(),
        &context,
    )
    .expect_err("the key is the entity and not UTF-8");
    assert_eq!(error.reason_code(), "invalid_utf8");
}

// ---------------------------------------------------------------------------------------------
// Logs.

#[test]
fn severity_numbers_map_by_range_and_texts_fill_in() {
    let numbered: Vec<(i32, Severity)> = (1..=24)
        .map(|number| {
            let severity = match number {
                1..=4 => Severity::Trace,
                5..=8 => Severity::Debug,
                9..=12 => Severity::Info,
                13..=16 => Severity::Warn,
                17..=20 => Severity::Error,
                _ => Severity::Fatal,
            };
            (number, severity)
        })
        .collect();
    let mut records: Vec<OtlpLogRecord> = numbered
        .iter()
        .map(|&(number, _)| OtlpLogRecord {
            severity_number: number,
            // The number wins over a contradicting text.
            severity_text: "TRACE".to_owned(),
            ..log(string("x"))
        })
        .collect();
    let texts = [
        ("WARN", Severity::Warn),
        ("warning", Severity::Warn),
        ("Error", Severity::Error),
        ("INFO2", Severity::Info),
        ("debug", Severity::Debug),
        ("CRITICAL", Severity::Fatal),
        ("", Severity::Info),
        ("verbose", Severity::Info),
    ];
    for (text, _) in texts {
        records.push(OtlpLogRecord {
            severity_text: text.to_owned(),
            ..log(string("x"))
        });
    }
    // Out of range: the text decides.
    records.push(OtlpLogRecord {
        severity_number: 25,
        severity_text: "error".to_owned(),
        ..log(string("x"))
    });
    let expected: Vec<Severity> = numbered
        .iter()
        .map(|&(_, severity)| severity)
        .chain(texts.iter().map(|&(_, severity)| severity))
        .chain([Severity::Error])
        .collect();
    let request = logs_request(&[("service.name", "api")], records);
    for (encoding, payload) in both_encodings(&request) {
        let logs: Vec<LogRecord> =
            decode_records(&mut OtlpLogsDecoder::new(encoding), &payload, &context())
                .expect("decodes");
        let severities: Vec<Severity> = logs.iter().map(|log| log.severity).collect();
        assert_eq!(severities, expected, "{encoding}");
    }
}

fn owned(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn log_records_carry_body_attributes_trace_id_and_times() {
    let nested = Value::KvlistValue(KeyValueList {
        values: vec![
            kv(
                "ids",
                Value::ArrayValue(ArrayValue {
                    values: vec![any(Value::IntValue(1)), any(Value::DoubleValue(2.5))],
                }),
            ),
            kv("user", string("ada")),
        ],
    });
    let records = vec![
        OtlpLogRecord {
            severity_number: 17,
            severity_text: "ERROR".to_owned(),
            attributes: vec![
                kv("http.status_code", Value::IntValue(503)),
                kv("retry", Value::BoolValue(true)),
                kv("ratio", Value::DoubleValue(0.5)),
                kv("payload", Value::BytesValue(vec![0xde, 0xad])),
                kv(
                    "tags",
                    Value::ArrayValue(ArrayValue {
                        values: vec![any(string("a")), any(Value::BoolValue(false))],
                    }),
                ),
            ],
            trace_id: TRACE_ID.to_vec(),
            span_id: SPAN_ID.to_vec(),
            ..log(string("upstream timed out"))
        },
        // No time: the observed time; a zero trace id means none.
        OtlpLogRecord {
            time_unix_nano: 0,
            observed_time_unix_nano: T_NS + 2 * SECOND_NS,
            trace_id: vec![0; 16],
            attributes: kvs(&[("service.name", "overridden")]),
            ..log(nested)
        },
        // Neither time: the record timestamp; an empty body.
        OtlpLogRecord {
            time_unix_nano: 0,
            body: None,
            ..log(Value::IntValue(0))
        },
        log(Value::DoubleValue(1e-3)),
    ];
    let request = logs_request(&[("service.name", "api"), ("host.name", "node-1")], records);
    let expected = vec![
        LogRecord {
            entity: "node-1".to_owned(),
            time_us: T,
            severity: Severity::Error,
            body: "upstream timed out".to_owned(),
            attributes: owned(&[
                ("http.status_code", "503"),
                ("payload", "dead"),
                ("ratio", "0.5"),
                ("retry", "true"),
                ("service.name", "api"),
                ("tags", r#"["a",false]"#),
            ]),
            trace_id: Some(TRACE_HEX.to_owned()),
        },
        LogRecord {
            entity: "node-1".to_owned(),
            time_us: T + 2 * SECOND_US,
            severity: Severity::Info,
            body: r#"{"ids":[1,2.5],"user":"ada"}"#.to_owned(),
            attributes: owned(&[("service.name", "overridden")]),
            trace_id: None,
        },
        LogRecord {
            entity: "node-1".to_owned(),
            time_us: T - 5 * SECOND_US,
            severity: Severity::Info,
            body: String::new(),
            attributes: owned(&[("service.name", "api")]),
            trace_id: None,
        },
        LogRecord {
            entity: "node-1".to_owned(),
            time_us: T,
            severity: Severity::Info,
            body: "0.001".to_owned(),
            attributes: owned(&[("service.name", "api")]),
            trace_id: None,
        },
    ];
    let context = RecordContext::new(OTLP_LOGS_TOPIC, T - 5 * SECOND_US);
    for (encoding, payload) in both_encodings(&request) {
        let logs: Vec<LogRecord> =
            decode_records(&mut OtlpLogsDecoder::new(encoding), &payload, &context)
                .expect("decodes");
        assert_eq!(logs, expected, "{encoding}");
    }
}

/// A hand-written OTLP/JSON logs request: hex trace id, enums as integers, nested AnyValues.
const LOGS_JSON: &str = r#"{
  "resourceLogs": [{
    "resource": { "attributes": [
      { "key": "service.name", "value": { "stringValue": "api" } },
      { "key": "host.name", "value": { "stringValue": "node-1" } }
    ] },
    "scopeLogs": [{
      "scope": { "name": "io.opsloop.test" },
      "logRecords": [{
        "timeUnixNano": "1714564800000000000",
        "observedTimeUnixNano": "1714564801000000000",
        "severityNumber": 13,
        "severityText": "Warning",
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "body": { "stringValue": "disk 91% full" },
        "attributes": [
          { "key": "disk", "value": { "stringValue": "/dev/sda1" } },
          { "key": "used", "value": { "doubleValue": 0.91 } },
          { "key": "inodes", "value": { "intValue": 12345 } },
          { "key": "labels", "value": { "kvlistValue": { "values": [
            { "key": "tier", "value": { "stringValue": "gold" } }
          ] } } }
        ]
      }]
    }]
  }]
}"#;

#[test]
fn hand_written_otlp_json_logs_decode() {
    let logs: Vec<LogRecord> = decode_records(
        &mut OtlpLogsDecoder::new(OtlpEncoding::Json),
        LOGS_JSON.as_bytes(),
        &context(),
    )
    .expect("decodes");
    assert_eq!(
        logs,
        [LogRecord {
            entity: "node-1".to_owned(),
            time_us: T,
            severity: Severity::Warn,
            body: "disk 91% full".to_owned(),
            attributes: owned(&[
                ("disk", "/dev/sda1"),
                ("inodes", "12345"),
                ("labels", r#"{"tier":"gold"}"#),
                ("service.name", "api"),
                ("used", "0.91"),
            ]),
            trace_id: Some(TRACE_HEX.to_owned()),
        }]
    );
}

// ---------------------------------------------------------------------------------------------
// Traces.

fn traced_spans() -> ExportTraceServiceRequest {
    let server = OtlpSpan {
        kind: SpanKind::Server as i32,
        attributes: vec![
            kv("http.route", string("/pay")),
            kv("http.response.status_code", Value::IntValue(500)),
        ],
        status: Some(Status {
            message: "payment failed".to_owned(),
            code: StatusCode::Error as i32,
        }),
        ..span("POST /pay")
    };
    let database = OtlpSpan {
        span_id: PARENT_ID.to_vec(),
        parent_span_id: SPAN_ID.to_vec(),
        kind: SpanKind::Client as i32,
        start_time_unix_nano: T_NS + 100_000,
        end_time_unix_nano: T_NS + 1_100_000,
        attributes: kvs(&[
            ("db.system.name", "postgresql"),
            ("db.namespace", "orders"),
            ("server.address", "pg-1"),
        ]),
        status: Some(Status {
            message: String::new(),
            code: StatusCode::Ok as i32,
        }),
        ..span("SELECT orders")
    };
    // A client span that is not a database call keeps the resource's entity; unset times.
    let http_client = OtlpSpan {
        span_id: vec![1; 8],
        parent_span_id: vec![0; 8],
        kind: SpanKind::Client as i32,
        start_time_unix_nano: 0,
        attributes: kvs(&[("server.address", "payments.example")]),
        ..span("GET /charge")
    };
    // The end precedes the start: duration 0. A database system on a server span does not
    // move its entity.
    let backwards = OtlpSpan {
        span_id: vec![2; 8],
        start_time_unix_nano: T_NS + 5_000_000,
        end_time_unix_nano: T_NS,
        attributes: kvs(&[("db.system", "redis"), ("server.address", "cache-1")]),
        kind: SpanKind::Server as i32,
        ..span("internal")
    };
    traces_request(
        &[
            ("service.name", "checkout"),
            ("service.instance.id", "checkout-7f9c"),
        ],
        vec![server, database, http_client, backwards],
    )
}

fn traced_rows() -> Vec<Span> {
    let span = |span_id: &str, operation: &str| Span {
        trace_id: TRACE_HEX.to_owned(),
        span_id: span_id.to_owned(),
        parent_span_id: None,
        service: "checkout".to_owned(),
        operation: operation.to_owned(),
        entity: "checkout-7f9c".to_owned(),
        start_time_us: T,
        duration_us: 1_500,
        status: SpanStatus::Unset,
        attributes: BTreeMap::new(),
    };
    vec![
        Span {
            status: SpanStatus::Error,
            attributes: owned(&[
                ("http.response.status_code", "500"),
                ("http.route", "/pay"),
                ("otel.status_description", "payment failed"),
                ("span.kind", "server"),
            ]),
            ..span(SPAN_HEX, "POST /pay")
        },
        Span {
            parent_span_id: Some(SPAN_HEX.to_owned()),
            entity: "pg-1".to_owned(),
            start_time_us: T + 100,
            duration_us: 1_000,
            status: SpanStatus::Ok,
            attributes: owned(&[
                ("db.namespace", "orders"),
                ("db.system.name", "postgresql"),
                ("server.address", "pg-1"),
                ("span.kind", "client"),
            ]),
            ..span(PARENT_HEX, "SELECT orders")
        },
        Span {
            start_time_us: T - SECOND_US,
            duration_us: 0,
            attributes: owned(&[
                ("server.address", "payments.example"),
                ("span.kind", "client"),
            ]),
            ..span("0101010101010101", "GET /charge")
        },
        Span {
            start_time_us: T + 5_000,
            duration_us: 0,
            attributes: owned(&[
                ("db.system", "redis"),
                ("server.address", "cache-1"),
                ("span.kind", "server"),
            ]),
            ..span("0202020202020202", "internal")
        },
    ]
}

#[test]
fn spans_carry_ids_durations_status_and_database_entities() {
    let context = RecordContext::new(OTLP_SPANS_TOPIC, T - SECOND_US);
    for (encoding, payload) in both_encodings(&traced_spans()) {
        let spans: Vec<Span> =
            decode_records(&mut OtlpTracesDecoder::new(encoding), &payload, &context)
                .expect("decodes");
        assert_eq!(spans, traced_rows(), "{encoding}");
    }
}

#[test]
fn spans_without_a_service_name_are_unknown_service() {
    let request = traces_request(&[("host.name", "node-1")], vec![span("job")]);
    let spans: Vec<Span> = decode_records(
        &mut OtlpTracesDecoder::default(),
        &request.encode_to_vec(),
        &context(),
    )
    .expect("decodes");
    assert_eq!(spans[0].service, "unknown_service");
    assert_eq!(spans[0].entity, "node-1");
    assert_eq!(spans[0].duration_us, 1_500);
}

/// A hand-written OTLP/JSON traces request: hex ids, `kind` and `status.code` as integers,
/// times as strings.
const TRACES_JSON: &str = r#"{"resourceSpans":[{
  "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}]},
  "scopeSpans":[{"scope":{"name":"io.opsloop.test"},"spans":[
    {"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"eee19b7ec3c1b173",
     "parentSpanId":"eee19b7ec3c1b174","name":"SELECT orders","kind":3,
     "startTimeUnixNano":"1714564800000100000","endTimeUnixNano":"1714564800002600000",
     "attributes":[{"key":"db.system","value":{"stringValue":"postgresql"}},
                   {"key":"db.name","value":{"stringValue":"orders"}}],
     "events":[{"timeUnixNano":"1714564800000200000","name":"retry"}],
     "status":{"code":2,"message":"deadlock"}},
    {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
     "name":"POST /pay","startTimeUnixNano":"1714564800000000000",
     "endTimeUnixNano":"1714564800003000000","status":{}}
  ]}]
}]}"#;

#[test]
fn hand_written_otlp_json_traces_decode() {
    let spans: Vec<Span> = decode_records(
        &mut OtlpTracesDecoder::new(OtlpEncoding::Json),
        TRACES_JSON.as_bytes(),
        &context(),
    )
    .expect("decodes");
    assert_eq!(
        spans,
        [
            Span {
                trace_id: TRACE_HEX.to_owned(),
                span_id: PARENT_HEX.to_owned(),
                parent_span_id: Some(SPAN_HEX.to_owned()),
                service: "checkout".to_owned(),
                operation: "SELECT orders".to_owned(),
                entity: "orders".to_owned(),
                start_time_us: T + 100,
                duration_us: 2_500,
                status: SpanStatus::Error,
                attributes: owned(&[
                    ("db.name", "orders"),
                    ("db.system", "postgresql"),
                    ("otel.status_description", "deadlock"),
                    ("span.kind", "client"),
                ]),
            },
            Span {
                trace_id: TRACE_HEX.to_owned(),
                span_id: SPAN_HEX.to_owned(),
                parent_span_id: None,
                service: "checkout".to_owned(),
                operation: "POST /pay".to_owned(),
                entity: "checkout".to_owned(),
                start_time_us: T,
                duration_us: 3_000,
                status: SpanStatus::Unset,
                attributes: BTreeMap::new(),
            },
        ]
    );
}

/// What the collector writes for non-finite doubles, plus the other liberties of the proto3
/// JSON mapping: snake_case names, empty messages as `{}`, base64 bytes, uppercase hex ids.
const LENIENT_JSON: &str = r#"{"resource_metrics":[{"resource":{"attributes":[
    {"key":"host.name","value":{"stringValue":"node-1"}},
    {"key":"empty","value":{"arrayValue":{}}},
    {"key":"raw","value":{"bytesValue":"3q2+7w=="}}]},
  "scope_metrics":[{"metrics":[
    {"name":"go_gc_duration_seconds","summary":{"dataPoints":[
      {"time_unix_nano":"1714564800000000000","count":"0","sum":"NaN",
       "quantileValues":[{"quantile":0.5,"value":"NaN"},{"quantile":1,"value":"+Inf"},
                         {"quantile":0.25,"value":"-Infinity"},{"value":"0.5"}]}]}},
    {"name":"temperature","gauge":{"data_points":[
      {"timeUnixNano":1714564800000000000,"as_double":"Infinity"},
      {"timeUnixNano":"1714564800000000000","asDouble":"-Inf"},
      {"timeUnixNano":"1714564800000000000","asDouble":"21.5",
       "attributes":[{"key":"raw","value":{"bytes_value":"3q2-7w"}},
                     {"key":"list","value":{"kvlistValue":{}}},
                     {"key":"none","value":{}}]}]}},
    {"name":"latency","histogram":{"dataPoints":[
      {"timeUnixNano":"1714564800000000000","count":2,"sum":"3.5",
       "bucketCounts":["1",1],"explicitBounds":["2"]}]}}
  ]}]}]}"#;

#[test]
fn otlp_json_non_finite_strings_and_proto3_json_liberties() {
    let mut decoder = OtlpMetricsDecoder::new(OtlpEncoding::Json);
    let rows = decode_metrics(&mut decoder, LENIENT_JSON.as_bytes(), &context()).expect("decodes");
    let host = ("host.name", "node-1");
    let expected = vec![
        row("node-1", "go_gc_duration_seconds_count", &[host], 0.0, T),
        row(
            "node-1",
            "go_gc_duration_seconds",
            &[host, ("quantile", "0")],
            0.5,
            T,
        ),
        row(
            "node-1",
            "temperature",
            &[host, ("list", "{}"), ("none", ""), ("raw", "deadbeef")],
            21.5,
            T,
        ),
        row("node-1", "latency_count", &[host], 2.0, T),
        row("node-1", "latency_sum", &[host], 3.5, T),
        // p50: rank 1 at the top of (0, 2]; the others in the overflow bucket, clamped to 2.
        row("node-1", "latency", &[host, ("quantile", "0.5")], 2.0, T),
        row("node-1", "latency", &[host, ("quantile", "0.9")], 2.0, T),
        row("node-1", "latency", &[host, ("quantile", "0.95")], 2.0, T),
        row("node-1", "latency", &[host, ("quantile", "0.99")], 2.0, T),
    ];
    assert_eq!(rows, expected);
    // The NaN sum, three non-finite quantiles, two infinite gauges.
    assert_eq!(decoder.skipped_values(), 6);

    // Resource attributes outside the identifying ones are not labels, but a log shows them
    // all when they are record attributes.
    let logs = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{
        "traceId":"5B8EFFF798038103D269B633813FC60C","severityNumber":9,
        "body":{"arrayValue":{}},
        "attributes":[{"key":"raw","value":{"bytesValue":"3q2+7w=="}},
                      {"key":"big","value":{"intValue":"-9223372036854775808"}},
                      {"key":"nan","value":{"doubleValue":"NaN"}},
                      {"key":"nested","value":{"arrayValue":{"values":[
                        {"doubleValue":"Infinity"},{"bytesValue":"AQI="},{}]}}}]}]}]}]}"#;
    let logs: Vec<LogRecord> = decode_records(
        &mut OtlpLogsDecoder::new(OtlpEncoding::Json),
        logs.as_bytes(),
        &context(),
    )
    .expect("decodes");
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].trace_id.as_deref(), Some(TRACE_HEX));
    assert_eq!(logs[0].body, "[]");
    assert_eq!(logs[0].time_us, T, "no time at all: the record timestamp");
    assert_eq!(
        logs[0].attributes,
        owned(&[
            ("big", "-9223372036854775808"),
            ("nan", "NaN"),
            ("nested", r#"["inf","0102",null]"#),
            ("raw", "deadbeef"),
        ])
    );
}

#[test]
fn otlp_json_rejects_malformed_scalars() {
    let bad = [
        // Not base64, not hex, odd hex, a negative count, a fraction where an integer belongs,
        // an integer out of range, a double that is no number.
        r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"bytesValue":"!!"}}]}]}]}"#,
        r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"zz"}]}]}]}"#,
        r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"abc"}]}]}]}"#,
        r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":-1}]}]}]}"#,
        r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":1.5}]}]}]}"#,
        r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"intValue":"9223372036854775808"}}]}]}]}"#,
        r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"doubleValue":"lots"}}]}]}]}"#,
        r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityNumber":"SEVERITY_NUMBER_INFO"}]}]}]}"#,
    ];
    for document in bad {
        let error = decode_records::<_, LogRecord>(
            &mut OtlpLogsDecoder::new(OtlpEncoding::Json),
            document.as_bytes(),
            &context(),
        )
        .expect_err(document);
        assert_eq!(error.reason_code(), "invalid_json", "{document}: {error}");
    }
    // Whole doubles are integers; padding-free base64 is fine.
    let good = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[
        {"timeUnixNano":1.7145648e18,"body":{"bytesValue":"AQ"}}]}]}]}"#;
    let logs: Vec<LogRecord> = decode_records(
        &mut OtlpLogsDecoder::new(OtlpEncoding::Json),
        good.as_bytes(),
        &context(),
    )
    .expect("decodes");
    assert_eq!(logs[0].time_us, 1_714_564_800_000_000);
    assert_eq!(logs[0].body, "01");
}

// ---------------------------------------------------------------------------------------------
// Errors and the all-or-nothing rule.

/// Decodes `bad` after `good` into one builder: the failure appends nothing, and the rows are
/// those of `good` alone.
fn fails_appending_nothing<D: Decoder>(decoder: &mut D, good: &[u8], bad: &[u8]) -> DecodeError {
    let mut out = decoder.new_rows();
    let appended = decoder
        .decode(good, &context(), &mut out)
        .expect("good record");
    assert!(appended > 0);
    let error = decoder
        .decode(bad, &context(), &mut out)
        .expect_err("bad record fails");
    assert_eq!(out.len(), appended, "a failed record appended rows");
    let batch = out.finish().expect("batch");
    assert_eq!(batch.num_rows(), appended);
    assert!(!error.to_string().is_empty());
    assert_eq!(error.retry(), opsloop_connectors::Retry::Never);
    error
}

/// One request of each signal, encoded, with a decoder for it: runs `check` on each.
fn for_each_signal(
    encoding: OtlpEncoding,
    mut check: impl FnMut(&str, &mut dyn FnMut(&[u8], &[u8]) -> DecodeError, Vec<u8>),
) {
    let encode = |request: &dyn erased::Json, proto: Vec<u8>| match encoding {
        OtlpEncoding::Proto => proto,
        OtlpEncoding::Json => request.json(),
    };
    let metrics = gauge_and_sum_request();
    let logs = logs_request(&RESOURCE, vec![log(string("hello"))]);
    let traces = traced_spans();
    let mut metrics_decoder = OtlpMetricsDecoder::new(encoding);
    check(
        "metrics",
        &mut |good, bad| fails_appending_nothing(&mut metrics_decoder, good, bad),
        encode(&metrics, metrics.encode_to_vec()),
    );
    let mut logs_decoder = OtlpLogsDecoder::new(encoding);
    check(
        "logs",
        &mut |good, bad| fails_appending_nothing(&mut logs_decoder, good, bad),
        encode(&logs, logs.encode_to_vec()),
    );
    let mut traces_decoder = OtlpTracesDecoder::new(encoding);
    check(
        "traces",
        &mut |good, bad| fails_appending_nothing(&mut traces_decoder, good, bad),
        encode(&traces, traces.encode_to_vec()),
    );
}

#[test]
fn broken_protobuf_fails_as_invalid_protobuf() {
    for_each_signal(OtlpEncoding::Proto, |signal, fail, good| {
        let truncated = &good[..good.len() - 3];
        let error = fail(&good, truncated);
        assert_eq!(error.reason_code(), "invalid_protobuf", "{signal}: {error}");
        // Field 1, wire type 7 (no such type), then noise.
        let garbage = [0x0f, 0xff, 0xfe, 0x00, 0x13];
        let error = fail(&good, &garbage);
        assert_eq!(error.reason_code(), "invalid_protobuf", "{signal}: {error}");
        assert!(error.to_string().contains("Export"), "{error}");
        // JSON on a protobuf topic.
        let error = fail(&good, br#"{"resourceMetrics":[]}"#);
        assert_eq!(error.reason_code(), "invalid_protobuf", "{signal}: {error}");
    });
}

#[test]
fn invalid_utf8_in_a_protobuf_string_is_invalid_protobuf() {
    let marker = "MARKER";
    let request = logs_request(&[("host.name", "h")], vec![log(string(marker))]);
    let good = request.encode_to_vec();
    let at = good
        .windows(marker.len())
        .position(|window| window == marker.as_bytes())
        .expect("the body is in the payload");
    let mut bad = good.clone();
    bad[at..at + 2].copy_from_slice(b"\xff\xfe");
    let error = fails_appending_nothing(&mut OtlpLogsDecoder::default(), &good, &bad);
    assert_eq!(error.reason_code(), "invalid_protobuf");
    assert!(error.to_string().contains("UTF-8"), "{error}");
}

#[test]
fn broken_json_fails_as_invalid_json_or_utf8() {
    for_each_signal(OtlpEncoding::Json, |signal, fail, good| {
        let error = fail(&good, b"{\"resourceMetrics\": [\n  {\"resource\": }\n]}");
        assert_eq!(error.reason_code(), "invalid_json", "{signal}: {error}");
        match error {
            DecodeError::InvalidOtlpJson { line, column, .. } => {
                assert_eq!((line, column), (2, 16), "{signal}");
            }
            other => panic!("{signal}: {other:?}"),
        }
        // Valid JSON of the wrong shape.
        let error = fail(
            &good,
            br#"{"resourceLogs": 5, "resourceSpans": 5, "resourceMetrics": 5}"#,
        );
        assert_eq!(error.reason_code(), "invalid_json", "{signal}: {error}");
        // A trace id that is not hex; a time that is not a number.
        let error = fail(
            &good,
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"xyz"}]}]}],
                 "resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"xyz"}]}]}],
                 "resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","gauge":
                   {"dataPoints":[{"timeUnixNano":"not a number","asInt":"1"}]}}]}]}]}"#,
        );
        assert_eq!(error.reason_code(), "invalid_json", "{signal}: {error}");
        let error = fail(&good, b"");
        assert_eq!(error.reason_code(), "invalid_json", "{signal}: {error}");
        let error = fail(&good, b"{\"resourceMetrics\":[],\n\"x\":\"\xff\"}");
        assert_eq!(error.reason_code(), "invalid_utf8", "{signal}: {error}");
        match error {
            DecodeError::InvalidUtf8 { line, .. } => assert_eq!(line, Some(2)),
            other => panic!("{signal}: {other:?}"),
        }
        // Protobuf on a JSON topic.
        let error = fail(&good, &gauge_and_sum_request().encode_to_vec());
        assert!(
            ["invalid_json", "invalid_utf8"].contains(&error.reason_code()),
            "{signal}: {error}"
        );
    });
}

#[test]
fn ids_of_the_wrong_length_and_bad_histograms_are_invalid_otlp() {
    for encoding in OtlpEncoding::ALL {
        let encode = |request: &dyn erased::Json, proto: Vec<u8>| match encoding {
            OtlpEncoding::Proto => proto,
            OtlpEncoding::Json => request.json(),
        };
        let good_traces = traced_spans();
        let good = encode(&good_traces, good_traces.encode_to_vec());
        // The bad span comes after good ones in the same request.
        let bad_spans = [
            OtlpSpan {
                trace_id: vec![1; 8],
                ..span("short trace")
            },
            OtlpSpan {
                trace_id: Vec::new(),
                ..span("no trace")
            },
            OtlpSpan {
                span_id: vec![0; 8],
                ..span("zero span id")
            },
            OtlpSpan {
                parent_span_id: vec![1; 16],
                ..span("long parent")
            },
        ];
        for bad_span in bad_spans {
            let mut bad = traced_spans();
            bad.resource_spans[0].scope_spans[0].spans.push(bad_span);
            let bad = encode(&bad, bad.encode_to_vec());
            let error = fails_appending_nothing(&mut OtlpTracesDecoder::new(encoding), &good, &bad);
            assert_eq!(error.reason_code(), "invalid_otlp", "{error}");
        }

        let good_logs = logs_request(&[], vec![log(string("ok"))]);
        let bad_logs = logs_request(
            &[],
            vec![
                log(string("ok")),
                OtlpLogRecord {
                    trace_id: vec![7; 4],
                    ..log(string("short trace id"))
                },
            ],
        );
        let error = fails_appending_nothing(
            &mut OtlpLogsDecoder::new(encoding),
            &encode(&good_logs, good_logs.encode_to_vec()),
            &encode(&bad_logs, bad_logs.encode_to_vec()),
        );
        assert_eq!(error.reason_code(), "invalid_otlp", "{error}");
        assert!(error.to_string().contains("4 bytes"), "{error}");

        let good_metrics = gauge_and_sum_request();
        let mut bad_metrics = gauge_and_sum_request();
        bad_metrics.resource_metrics[0].scope_metrics[0]
            .metrics
            .push(histogram(
                "mismatched",
                vec![histogram_point(&[1.0, 2.0], &[1, 2], Some(1.0))],
            ));
        let error = fails_appending_nothing(
            &mut OtlpMetricsDecoder::new(encoding),
            &encode(&good_metrics, good_metrics.encode_to_vec()),
            &encode(&bad_metrics, bad_metrics.encode_to_vec()),
        );
        assert_eq!(error.reason_code(), "invalid_otlp", "{error}");
        assert!(error.to_string().contains("mismatched"), "{error}");
    }
}

#[test]
fn a_failed_metrics_record_counts_no_skipped_values() {
    let mut bad = metrics_request(
        &[],
        vec![gauge("g", vec![double_point(&[], T_NS, f64::NAN)])],
    );
    bad.resource_metrics[0].scope_metrics[0]
        .metrics
        .push(histogram("bad", vec![histogram_point(&[], &[1, 2], None)]));
    let mut decoder = OtlpMetricsDecoder::default();
    let error = fails_appending_nothing(
        &mut decoder,
        &gauge_and_sum_request().encode_to_vec(),
        &bad.encode_to_vec(),
    );
    assert_eq!(error.reason_code(), "invalid_otlp");
    assert_eq!(decoder.skipped_values(), 0);
}

#[test]
fn records_over_the_size_limit_are_too_large() {
    for encoding in OtlpEncoding::ALL {
        let metrics = gauge_and_sum_request();
        let logs = logs_request(&RESOURCE, vec![log(string("hello"))]);
        let traces = traced_spans();
        let payloads: [Vec<u8>; 3] = match encoding {
            OtlpEncoding::Proto => [
                metrics.encode_to_vec(),
                logs.encode_to_vec(),
                traces.encode_to_vec(),
            ],
            OtlpEncoding::Json => [metrics.json(), logs.json(), traces.json()],
        };
        let check = |error: DecodeError, payload: &[u8]| {
            assert_eq!(error.reason_code(), "too_large");
            match error {
                DecodeError::TooLarge { size, max } => {
                    assert_eq!((size, max), (payload.len(), payload.len() - 1));
                }
                other => panic!("{other:?}"),
            }
        };
        let [metrics, logs, traces] = &payloads;

        let mut at_limit = OtlpMetricsDecoder::new(encoding).with_max_record_bytes(metrics.len());
        let mut out = at_limit.new_rows();
        assert!(at_limit.decode(metrics, &context(), &mut out).is_ok());
        let mut under = OtlpMetricsDecoder::new(encoding).with_max_record_bytes(metrics.len() - 1);
        check(
            under
                .decode(metrics, &context(), &mut out)
                .expect_err("too large"),
            metrics,
        );

        let mut at_limit = OtlpLogsDecoder::new(encoding).with_max_record_bytes(logs.len());
        let mut out = at_limit.new_rows();
        assert!(at_limit.decode(logs, &context(), &mut out).is_ok());
        let mut under = OtlpLogsDecoder::new(encoding).with_max_record_bytes(logs.len() - 1);
        check(
            under
                .decode(logs, &context(), &mut out)
                .expect_err("too large"),
            logs,
        );

        let mut at_limit = OtlpTracesDecoder::new(encoding).with_max_record_bytes(traces.len());
        let mut out = at_limit.new_rows();
        assert!(at_limit.decode(traces, &context(), &mut out).is_ok());
        let mut under = OtlpTracesDecoder::new(encoding).with_max_record_bytes(traces.len() - 1);
        check(
            under
                .decode(traces, &context(), &mut out)
                .expect_err("too large"),
            traces,
        );
    }
    let big = vec![0u8; DEFAULT_MAX_RECORD_BYTES + 1];
    let mut out = MetricSamplesBuilder::new();
    let error = OtlpMetricsDecoder::default()
        .decode(&big, &context(), &mut out)
        .expect_err("over the default limit");
    assert_eq!(error.reason_code(), "too_large");
}

#[test]
fn many_records_accumulate_in_one_builder() {
    let payload = traced_spans().encode_to_vec();
    let mut decoder = OtlpTracesDecoder::default();
    let mut out = decoder.new_rows();
    for _ in 0..5 {
        assert_eq!(
            decoder
                .decode(&payload, &context(), &mut out)
                .expect("decodes"),
            4
        );
    }
    assert_eq!(out.len(), 20);
    assert!(out.estimated_memory_bytes() >= 5 * payload.len());
    let batch = out.finish().expect("batch");
    assert_eq!(batch.num_rows(), 20);
    assert!(out.is_empty());
    // An empty request is valid and appends nothing.
    let empty = ExportTraceServiceRequest::default().encode_to_vec();
    assert_eq!(
        decoder
            .decode(&empty, &context(), &mut out)
            .expect("decodes"),
        0
    );
}

#[test]
fn deeply_nested_values_fail_instead_of_overflowing_the_stack() {
    let nest = |depth: usize| {
        let mut value = string("leaf");
        for _ in 0..depth {
            value = Value::ArrayValue(ArrayValue {
                values: vec![any(value)],
            });
        }
        logs_request(&[], vec![log(value)])
    };
    // Within the limits: rendered as nested JSON arrays.
    let shallow = nest(30);
    for (encoding, payload) in both_encodings(&shallow) {
        let logs: Vec<LogRecord> =
            decode_records(&mut OtlpLogsDecoder::new(encoding), &payload, &context())
                .expect("decodes");
        let expected = format!("{}\"leaf\"{}", "[".repeat(30), "]".repeat(30));
        assert_eq!(logs[0].body, expected, "{encoding}");
    }
    // prost stops at 100 nested messages, serde_json at 128 nested JSON values.
    let deep = nest(200);
    let proto = fails_appending_nothing(
        &mut OtlpLogsDecoder::new(OtlpEncoding::Proto),
        &shallow.encode_to_vec(),
        &deep.encode_to_vec(),
    );
    assert_eq!(proto.reason_code(), "invalid_protobuf", "{proto}");
    let json_document = |depth: usize| {
        format!(
            r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{}{{"stringValue":"leaf"}}{}}}]}}]}}]}}"#,
            r#"{"arrayValue":{"values":["#.repeat(depth),
            "]}}".repeat(depth)
        )
    };
    // The hand-written document is well formed: at depth 30 it decodes.
    let logs: Vec<LogRecord> = decode_records(
        &mut OtlpLogsDecoder::new(OtlpEncoding::Json),
        json_document(30).as_bytes(),
        &context(),
    )
    .expect("decodes");
    assert_eq!(logs[0].body.matches('[').count(), 30);
    let json = fails_appending_nothing(
        &mut OtlpLogsDecoder::new(OtlpEncoding::Json),
        &shallow.json(),
        json_document(200).as_bytes(),
    );
    assert_eq!(json.reason_code(), "invalid_json", "{json}");
    assert!(json.to_string().contains("recursion limit"), "{json}");
}
