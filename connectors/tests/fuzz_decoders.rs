//! Property-based fuzzing of every decoder (the OTLP ones in both encodings included):
//! arbitrary bytes, corrupted valid payloads and token soup give rows or a typed error, never a
//! panic; a failed record appends nothing, and every builder finishes a valid batch.
//! `PROPTEST_CASES` sets the budget.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
    number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use opsloop_connectors::decode::{
    AvroMetricBatchDecoder, Decoder, JsonLinesDecoder, MetricSamplesBuilder, OtlpEncoding,
    OtlpLogsDecoder, OtlpMetricsDecoder, OtlpTracesDecoder, PrometheusTextDecoder, RecordContext,
    RowBuilder, dcgm_gpu_samples,
};
use opsloop_schemas::telemetry::{MetricBatch, MetricSample};
use opsloop_schemas::{Codec, SchemaRegistry, WireFormat};
use proptest::prelude::*;
use prost::Message;

const T: i64 = 1_714_564_800_000_000;

fn codec(format: WireFormat) -> Codec {
    Codec::new(format, Arc::new(SchemaRegistry::builtin()))
}

fn decoders() -> Vec<Box<dyn Decoder<Rows = MetricSamplesBuilder>>> {
    let mut decoders: Vec<Box<dyn Decoder<Rows = MetricSamplesBuilder>>> = WireFormat::ALL
        .into_iter()
        .map(|format| {
            Box::new(AvroMetricBatchDecoder::new(codec(format)))
                as Box<dyn Decoder<Rows = MetricSamplesBuilder>>
        })
        .collect();
    decoders.push(Box::new(JsonLinesDecoder::new()));
    decoders.push(Box::new(PrometheusTextDecoder::new()));
    for encoding in OtlpEncoding::ALL {
        decoders.push(Box::new(OtlpMetricsDecoder::new(encoding)));
    }
    decoders
}

const KEYS: [Option<&[u8]>; 3] = [None, Some(b"host-1"), Some(b"\xff\xfe")];

/// Runs `bytes` through `decoder` with every key into `out`, checking that each call appends
/// exactly what it reports (nothing on error); returns the rows appended.
fn decode_with_keys<D: Decoder + ?Sized>(
    decoder: &mut D,
    bytes: &[u8],
    out: &mut D::Rows,
) -> usize {
    let mut total = 0;
    for key in KEYS {
        let context = RecordContext {
            key,
            topic: "telemetry.metrics",
            timestamp_us: T,
        };
        let before = out.len();
        match decoder.decode(bytes, &context, out) {
            Ok(appended) => {
                assert_eq!(out.len(), before + appended);
                total += appended;
            }
            Err(error) => {
                assert_eq!(out.len(), before, "a failed record appended rows");
                assert!(!error.reason_code().is_empty());
                assert!(!error.to_string().is_empty());
            }
        }
    }
    total
}

/// Runs `bytes` through the decoders of OTLP logs and spans in both encodings; each builder
/// must finish a valid batch of exactly the rows reported. Returns the rows appended.
fn decode_records_everywhere(bytes: &[u8]) -> usize {
    fn check<D: Decoder>(mut decoder: D, bytes: &[u8]) -> usize {
        let mut out = decoder.new_rows();
        let appended = decode_with_keys(&mut decoder, bytes, &mut out);
        assert_eq!(out.len(), appended);
        let batch = out.finish().expect("a valid batch");
        assert_eq!(batch.num_rows(), appended);
        appended
    }
    OtlpEncoding::ALL
        .into_iter()
        .map(|encoding| {
            check(OtlpLogsDecoder::new(encoding), bytes)
                + check(OtlpTracesDecoder::new(encoding), bytes)
        })
        .sum()
}

/// Runs `bytes` through every decoder with several keys, the metric decoders into one
/// builder, checking that each call appends exactly what it reports (nothing on error) and
/// that every batch is valid. Returns the rows appended.
fn decode_everywhere(bytes: &[u8]) -> usize {
    let mut out = MetricSamplesBuilder::new();
    let mut total = 0;
    for mut decoder in decoders() {
        total += decode_with_keys(decoder.as_mut(), bytes, &mut out);
    }
    if let Ok(page) = std::str::from_utf8(bytes) {
        let _ = dcgm_gpu_samples(page, T);
    }
    let batch = out.finish().expect("a valid batch");
    assert_eq!(batch.num_rows(), total);
    total + decode_records_everywhere(bytes)
}

/// Valid payloads of every format, to corrupt.
fn valid_payloads() -> Vec<Vec<u8>> {
    let batch = MetricBatch {
        entity: "pg-1".into(),
        source: "postgres".into(),
        samples: vec![MetricSample {
            name: "pg_up".into(),
            labels: [("db".to_owned(), "orders".to_owned())].into(),
            value: 1.0,
            time_us: T,
        }],
    };
    let mut payloads: Vec<Vec<u8>> = WireFormat::ALL
        .into_iter()
        .map(|format| codec(format).encode(&batch).expect("encode"))
        .collect();
    payloads.push(
        b"{\"entity\":\"a\",\"name\":\"x\",\"value\":\"1.5\",\"labels\":{\"k\":\"v\\n\"}}\n\
          {\"name\":\"y\",\"value\":2,\"timestamp\":\"2024-05-01T12:00:00Z\"}\n"
            .to_vec(),
    );
    payloads.extend(otlp_payloads());
    for page in [
        include_str!("fixtures/dcgm-exporter.txt"),
        include_str!("fixtures/dcgm-exporter-hostname.txt"),
        include_str!("fixtures/node-exporter.txt"),
    ] {
        payloads.push(page.as_bytes().to_vec());
    }
    payloads
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv("service.name", Value::StringValue("api".to_owned())),
            kv("host.name", Value::StringValue("node-1".to_owned())),
        ],
        ..Default::default()
    })
}

/// An OTLP request of each signal with every metric type, in protobuf and in OTLP/JSON.
fn otlp_payloads() -> Vec<Vec<u8>> {
    let attributes = vec![
        kv("cpu", Value::IntValue(3)),
        kv("ratio", Value::DoubleValue(0.5)),
        kv(
            "tags",
            Value::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(Value::BytesValue(vec![1, 2])),
                }],
            }),
        ),
    ];
    let time_unix_nano = 1_714_564_800_000_000_000;
    let number = NumberDataPoint {
        attributes: attributes.clone(),
        time_unix_nano,
        value: Some(number_data_point::Value::AsInt(7)),
        ..Default::default()
    };
    let metric = |name: &str, data: Data| Metric {
        name: name.to_owned(),
        data: Some(data),
        ..Default::default()
    };
    let metrics = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    metric(
                        "g",
                        Data::Gauge(Gauge {
                            data_points: vec![number.clone()],
                        }),
                    ),
                    metric(
                        "s",
                        Data::Sum(Sum {
                            data_points: vec![number],
                            aggregation_temporality: 2,
                            is_monotonic: true,
                        }),
                    ),
                    metric(
                        "h",
                        Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint {
                                attributes,
                                time_unix_nano,
                                count: 6,
                                sum: Some(9.0),
                                bucket_counts: vec![1, 2, 3],
                                explicit_bounds: vec![1.0, 5.0],
                                ..Default::default()
                            }],
                            aggregation_temporality: 2,
                        }),
                    ),
                    metric(
                        "e",
                        Data::ExponentialHistogram(ExponentialHistogram {
                            data_points: vec![ExponentialHistogramDataPoint {
                                count: 2,
                                sum: Some(1.0),
                                ..Default::default()
                            }],
                            aggregation_temporality: 1,
                        }),
                    ),
                    metric(
                        "q",
                        Data::Summary(Summary {
                            data_points: vec![SummaryDataPoint {
                                count: 3,
                                sum: 4.5,
                                quantile_values: vec![ValueAtQuantile {
                                    quantile: 0.5,
                                    value: 1.5,
                                }],
                                ..Default::default()
                            }],
                        }),
                    ),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano,
                    severity_number: 13,
                    body: Some(AnyValue {
                        value: Some(Value::StringValue("disk full".to_owned())),
                    }),
                    attributes: vec![kv("disk", Value::StringValue("sda".to_owned()))],
                    trace_id: vec![7; 16],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let traces = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![7; 16],
                    span_id: vec![8; 8],
                    parent_span_id: vec![9; 8],
                    name: "GET /".to_owned(),
                    kind: 3,
                    start_time_unix_nano: time_unix_nano,
                    end_time_unix_nano: time_unix_nano + 2_000_000,
                    attributes: vec![kv("db.system", Value::StringValue("redis".to_owned()))],
                    status: Some(Status {
                        message: "boom".to_owned(),
                        code: 2,
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let json = |value: &dyn erased_serde_json::Json| value.json();
    vec![
        metrics.encode_to_vec(),
        json(&metrics),
        logs.encode_to_vec(),
        json(&logs),
        traces.encode_to_vec(),
        json(&traces),
    ]
}

/// Serializes requests of any signal through one function.
mod erased_serde_json {
    pub(crate) trait Json {
        fn json(&self) -> Vec<u8>;
    }

    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> Vec<u8> {
            serde_json::to_vec(self).expect("request serializes")
        }
    }
}

/// Characters that steer the text parsers into their interesting states.
const TOKENS: &[u8] = b"{}=\",\\ \t\n\r#:_aeEnNIf019.+-[]HELPTYPE";

fn token_byte() -> impl Strategy<Value = u8> {
    prop_oneof![any::<u8>(), prop::sample::select(TOKENS)]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_everywhere(&bytes);
    }

    #[test]
    fn token_soup_never_panics(bytes in prop::collection::vec(prop::sample::select(TOKENS), 0..256)) {
        decode_everywhere(&bytes);
    }

    #[test]
    fn corrupted_payloads_never_panic(
        which in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), token_byte()), 1..8),
        inserts in prop::collection::vec((any::<prop::sample::Index>(), token_byte()), 0..3),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let payloads = valid_payloads();
        let mut bytes = which.get(&payloads).clone();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        for (at, value) in inserts {
            let i = at.index(bytes.len() + 1);
            bytes.insert(i, value);
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        decode_everywhere(&bytes);
    }
}

#[test]
fn valid_payloads_decode_somewhere() {
    for payload in valid_payloads() {
        assert!(
            decode_everywhere(&payload) > 0,
            "{:?}",
            String::from_utf8_lossy(&payload)
        );
    }
}
