//! OTLP export requests like the OpenTelemetry Collector's Kafka exporter writes, built with
//! the OpenTelemetry protobuf types, for the decoding benchmark.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use opsloop_connectors::decode::OtlpEncoding;
use prost::Message;

/// Points, log records and spans per request.
pub const ITEMS_PER_REQUEST: usize = 20;
const REQUESTS: usize = 200;
const T_NS: u64 = 1_795_003_200_000_000_000;

/// Requests of each signal, built once.
#[derive(Debug)]
pub struct OtlpRequests {
    metrics: Vec<ExportMetricsServiceRequest>,
    logs: Vec<ExportLogsServiceRequest>,
    spans: Vec<ExportTraceServiceRequest>,
}

/// The requests of each signal in one encoding.
#[derive(Debug)]
pub struct EncodedRequests {
    pub metrics: Vec<Vec<u8>>,
    pub logs: Vec<Vec<u8>>,
    pub spans: Vec<Vec<u8>>,
}

fn attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

fn resource(request: usize) -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            attribute("service.name", "feature-store"),
            attribute("service.instance.id", &format!("pg-{}", request % 16)),
            attribute("host.name", "db-node-3"),
        ],
        ..Default::default()
    })
}

fn metrics_request(request: usize) -> ExportMetricsServiceRequest {
    let gauges = (0..ITEMS_PER_REQUEST - 1).map(|i| Metric {
        name: format!("db.client.connections.usage.{}", i % 5),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                attributes: vec![attribute("state", "used")],
                time_unix_nano: T_NS + (request * 1_000_000) as u64,
                value: Some(number_data_point::Value::AsDouble(
                    (request + i) as f64 * 0.5,
                )),
                ..Default::default()
            }],
        })),
        ..Default::default()
    });
    let histogram = Metric {
        name: "db.client.operation.duration".to_owned(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                time_unix_nano: T_NS + (request * 1_000_000) as u64,
                count: 100,
                sum: Some(850.0),
                bucket_counts: vec![10, 20, 30, 20, 10, 5, 3, 2],
                explicit_bounds: vec![1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0],
                ..Default::default()
            }],
            aggregation_temporality: 2,
        })),
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(request),
            scope_metrics: vec![ScopeMetrics {
                metrics: gauges.chain([histogram]).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn logs_request(request: usize) -> ExportLogsServiceRequest {
    let records = (0..ITEMS_PER_REQUEST).map(|i| LogRecord {
        time_unix_nano: T_NS + (request * 1000 + i) as u64,
        severity_number: 13,
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(format!(
                "duration: {} ms  statement: SELECT * FROM features WHERE id = $1",
                100 + i
            ))),
        }),
        attributes: vec![
            attribute("db.user", "inference"),
            attribute("db.name", "features"),
        ],
        ..Default::default()
    });
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(request),
            scope_logs: vec![ScopeLogs {
                log_records: records.collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn traces_request(request: usize) -> ExportTraceServiceRequest {
    let spans = (0..ITEMS_PER_REQUEST).map(|i| Span {
        trace_id: (request as u128 + 1).to_be_bytes().to_vec(),
        span_id: ((i + 1) as u64).to_be_bytes().to_vec(),
        parent_span_id: if i == 0 {
            Vec::new()
        } else {
            1u64.to_be_bytes().to_vec()
        },
        name: "SELECT features".to_owned(),
        kind: 3,
        start_time_unix_nano: T_NS + (i * 1000) as u64,
        end_time_unix_nano: T_NS + (i * 1000 + 1_500_000) as u64,
        attributes: vec![
            attribute("db.system", "postgresql"),
            attribute("server.address", "pg-1"),
        ],
        status: Some(Status {
            code: 1,
            ..Default::default()
        }),
        ..Default::default()
    });
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(request),
            scope_spans: vec![ScopeSpans {
                spans: spans.collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// [`REQUESTS`] requests of each signal.
pub fn requests() -> OtlpRequests {
    OtlpRequests {
        metrics: (0..REQUESTS).map(metrics_request).collect(),
        logs: (0..REQUESTS).map(logs_request).collect(),
        spans: (0..REQUESTS).map(traces_request).collect(),
    }
}

impl OtlpRequests {
    pub fn encoded(&self, encoding: OtlpEncoding) -> EncodedRequests {
        EncodedRequests {
            metrics: encode_all(&self.metrics, encoding),
            logs: encode_all(&self.logs, encoding),
            spans: encode_all(&self.spans, encoding),
        }
    }
}

fn encode_all<M: Message + serde::Serialize>(
    requests: &[M],
    encoding: OtlpEncoding,
) -> Vec<Vec<u8>> {
    requests
        .iter()
        .map(|request| match encoding {
            OtlpEncoding::Proto => request.encode_to_vec(),
            OtlpEncoding::Json => {
                serde_json::to_vec(request).expect("OTLP requests serialize to JSON")
            }
        })
        .collect()
}
