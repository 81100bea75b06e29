//! OTLP/JSON as the collector writes it, read into the protobuf message types.
//!
//! The structs here mirror the OTLP messages, holding only the fields the decoders read; each
//! converts into its `opentelemetry-proto` message, so one walker serves both encodings.
//! Besides the OTLP/JSON rules in the [module docs](super), they accept what the proto3 JSON
//! mapping allows and the collector writes:
//!
//! * field names in lowerCamelCase or as in the `.proto` file (`timeUnixNano`,
//!   `time_unix_nano`); unknown fields are ignored, absent ones take their default;
//! * doubles as numbers or strings, including `"NaN"`, `"Infinity"`, `"-Infinity"` and the
//!   collector's `"+Inf"` / `"-Inf"`;
//! * 64-bit integers as numbers or decimal strings;
//! * `bytesValue` in standard or URL-safe base64, with or without padding;
//! * trace and span ids as hex in either case; an empty string is no id.

use std::fmt;
use std::marker::PhantomData;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1 as common;
use opentelemetry_proto::tonic::logs::v1 as logs;
use opentelemetry_proto::tonic::metrics::v1 as metrics;
use opentelemetry_proto::tonic::resource::v1 as resource;
use opentelemetry_proto::tonic::trace::v1 as trace;
use opsloop_schemas::ids::unhex;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

// ---------------------------------------------------------------------------------------------
// Scalars.

/// A `uint64` / `fixed64`: a number or a decimal string.
#[derive(Debug, Default, Clone, Copy)]
struct U64(u64);

/// An `int64` / `sfixed64`: a number or a decimal string.
#[derive(Debug, Default, Clone, Copy)]
struct I64(i64);

/// A `double`: a number or a string (`"NaN"`, `"Infinity"`, `"-Inf"`, `"1.5"`).
#[derive(Debug, Default, Clone, Copy)]
struct F64(f64);

/// Bytes of a trace or span id, written as hex.
#[derive(Debug, Default)]
struct Hex(Vec<u8>);

/// Bytes of a `bytesValue`, written as base64.
#[derive(Debug, Default)]
struct Base64(Vec<u8>);

/// Visits a number or a string and turns it into `T`.
struct NumberVisitor<T>(PhantomData<T>, &'static str);

trait FromNumber: Sized {
    fn from_u64(value: u64) -> Option<Self>;
    fn from_i64(value: i64) -> Option<Self>;
    fn from_f64(value: f64) -> Option<Self>;
    fn from_text(text: &str) -> Option<Self>;
}

impl FromNumber for U64 {
    fn from_u64(value: u64) -> Option<Self> {
        Some(U64(value))
    }
    fn from_i64(value: i64) -> Option<Self> {
        u64::try_from(value).ok().map(U64)
    }
    fn from_f64(value: f64) -> Option<Self> {
        // Only whole numbers below 2^64 (JSON writers that print every number as a double).
        let whole = value.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&value);
        whole.then_some(U64(value as u64))
    }
    fn from_text(text: &str) -> Option<Self> {
        text.parse().ok().map(U64)
    }
}

impl FromNumber for I64 {
    fn from_u64(value: u64) -> Option<Self> {
        i64::try_from(value).ok().map(I64)
    }
    fn from_i64(value: i64) -> Option<Self> {
        Some(I64(value))
    }
    fn from_f64(value: f64) -> Option<Self> {
        let range = -9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0;
        let whole = value.fract() == 0.0 && range.contains(&value);
        whole.then_some(I64(value as i64))
    }
    fn from_text(text: &str) -> Option<Self> {
        text.parse().ok().map(I64)
    }
}

impl FromNumber for F64 {
    fn from_u64(value: u64) -> Option<Self> {
        Some(F64(value as f64))
    }
    fn from_i64(value: i64) -> Option<Self> {
        Some(F64(value as f64))
    }
    fn from_f64(value: f64) -> Option<Self> {
        Some(F64(value))
    }
    fn from_text(text: &str) -> Option<Self> {
        // Rust parses "NaN", "inf", "Infinity", "+Inf" and "-Infinity" in any case.
        text.parse().ok().map(F64)
    }
}

impl<'de, T: FromNumber> Visitor<'de> for NumberVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} as a number or a string", self.1)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<T, E> {
        T::from_u64(value).ok_or_else(|| E::custom(format!("{value} is not a valid {}", self.1)))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<T, E> {
        T::from_i64(value).ok_or_else(|| E::custom(format!("{value} is not a valid {}", self.1)))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<T, E> {
        T::from_f64(value).ok_or_else(|| E::custom(format!("{value} is not a valid {}", self.1)))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        T::from_text(text).ok_or_else(|| E::custom(format!("{text:?} is not a valid {}", self.1)))
    }
}

impl<'de> Deserialize<'de> for U64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NumberVisitor(PhantomData, "64-bit unsigned integer"))
    }
}

impl<'de> Deserialize<'de> for I64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NumberVisitor(PhantomData, "64-bit integer"))
    }
}

impl<'de> Deserialize<'de> for F64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NumberVisitor(PhantomData, "double"))
    }
}

/// Visits a string and decodes it with a function.
struct TextVisitor(&'static str, fn(&str) -> Option<Vec<u8>>);

impl Visitor<'_> for TextVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} string", self.0)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<u8>, E> {
        (self.1)(text).ok_or_else(|| E::custom(format!("{text:?} is not valid {}", self.0)))
    }
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_str(TextVisitor("hex", unhex))
            .map(Hex)
    }
}

impl<'de> Deserialize<'de> for Base64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_str(TextVisitor("base64", decode_base64))
            .map(Base64)
    }
}

/// Standard or URL-safe base64, padded or not.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let sextet = |c: u8| -> Option<u32> {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        Some(u32::from(value))
    };
    let data = text.trim_end_matches('=').as_bytes();
    if text.len() - data.len() > 2 || data.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    for chunk in data.chunks(4) {
        let mut bits = 0u32;
        for &c in chunk {
            bits = bits << 6 | sextet(c)?;
        }
        // A chunk of n characters holds n - 1 bytes (4 characters hold 3).
        bits <<= 6 * (4 - chunk.len());
        let [_, b0, b1, b2] = bits.to_be_bytes();
        out.extend_from_slice(&[b0, b1, b2][..chunk.len() - 1]);
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// Common messages.

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct AnyValue {
    #[serde(alias = "string_value")]
    string_value: Option<String>,
    #[serde(alias = "bool_value")]
    bool_value: Option<bool>,
    #[serde(alias = "int_value")]
    int_value: Option<I64>,
    #[serde(alias = "double_value")]
    double_value: Option<F64>,
    #[serde(alias = "bytes_value")]
    bytes_value: Option<Base64>,
    #[serde(alias = "array_value")]
    array_value: Option<ArrayValue>,
    #[serde(alias = "kvlist_value")]
    kvlist_value: Option<KeyValueList>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ArrayValue {
    values: Vec<AnyValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct KeyValueList {
    values: Vec<KeyValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct KeyValue {
    key: String,
    value: Option<AnyValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Resource {
    attributes: Vec<KeyValue>,
}

impl From<AnyValue> for common::AnyValue {
    fn from(value: AnyValue) -> Self {
        use common::any_value::Value;
        // A well-formed value sets one field; should several be set, the first listed wins.
        let value = if let Some(text) = value.string_value {
            Some(Value::StringValue(text))
        } else if let Some(flag) = value.bool_value {
            Some(Value::BoolValue(flag))
        } else if let Some(I64(number)) = value.int_value {
            Some(Value::IntValue(number))
        } else if let Some(F64(number)) = value.double_value {
            Some(Value::DoubleValue(number))
        } else if let Some(Base64(bytes)) = value.bytes_value {
            Some(Value::BytesValue(bytes))
        } else if let Some(array) = value.array_value {
            Some(Value::ArrayValue(common::ArrayValue {
                values: convert(array.values),
            }))
        } else {
            value.kvlist_value.map(|list| {
                Value::KvlistValue(common::KeyValueList {
                    values: convert(list.values),
                })
            })
        };
        common::AnyValue { value }
    }
}

impl From<KeyValue> for common::KeyValue {
    fn from(pair: KeyValue) -> Self {
        common::KeyValue {
            key: pair.key,
            value: pair.value.map(Into::into),
            ..Default::default()
        }
    }
}

impl From<Resource> for resource::Resource {
    fn from(resource: Resource) -> Self {
        resource::Resource {
            attributes: convert(resource.attributes),
            ..Default::default()
        }
    }
}

/// Converts every element.
fn convert<T: Into<U>, U>(values: Vec<T>) -> Vec<U> {
    values.into_iter().map(Into::into).collect()
}

impl From<U64> for u64 {
    fn from(U64(value): U64) -> u64 {
        value
    }
}

impl From<F64> for f64 {
    fn from(F64(value): F64) -> f64 {
        value
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics.

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct MetricsRequest {
    #[serde(alias = "resource_metrics")]
    resource_metrics: Vec<ResourceMetrics>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ResourceMetrics {
    resource: Option<Resource>,
    #[serde(alias = "scope_metrics")]
    scope_metrics: Vec<ScopeMetrics>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ScopeMetrics {
    metrics: Vec<Metric>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Metric {
    name: String,
    gauge: Option<DataPoints<NumberDataPoint>>,
    sum: Option<DataPoints<NumberDataPoint>>,
    histogram: Option<DataPoints<HistogramDataPoint>>,
    #[serde(alias = "exponential_histogram")]
    exponential_histogram: Option<DataPoints<ExponentialHistogramDataPoint>>,
    summary: Option<DataPoints<SummaryDataPoint>>,
}

/// The data of any metric type: its points (temporality and monotonicity are not read).
#[derive(Debug, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct DataPoints<P> {
    #[serde(alias = "data_points")]
    data_points: Vec<P>,
}

impl<P> Default for DataPoints<P> {
    fn default() -> Self {
        DataPoints {
            data_points: Vec::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct NumberDataPoint {
    attributes: Vec<KeyValue>,
    #[serde(alias = "time_unix_nano")]
    time_unix_nano: U64,
    flags: u32,
    #[serde(alias = "as_double")]
    as_double: Option<F64>,
    #[serde(alias = "as_int")]
    as_int: Option<I64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct HistogramDataPoint {
    attributes: Vec<KeyValue>,
    #[serde(alias = "time_unix_nano")]
    time_unix_nano: U64,
    flags: u32,
    count: U64,
    sum: Option<F64>,
    #[serde(alias = "bucket_counts")]
    bucket_counts: Vec<U64>,
    #[serde(alias = "explicit_bounds")]
    explicit_bounds: Vec<F64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ExponentialHistogramDataPoint {
    attributes: Vec<KeyValue>,
    #[serde(alias = "time_unix_nano")]
    time_unix_nano: U64,
    flags: u32,
    count: U64,
    sum: Option<F64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct SummaryDataPoint {
    attributes: Vec<KeyValue>,
    #[serde(alias = "time_unix_nano")]
    time_unix_nano: U64,
    flags: u32,
    count: U64,
    sum: F64,
    #[serde(alias = "quantile_values")]
    quantile_values: Vec<ValueAtQuantile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ValueAtQuantile {
    quantile: F64,
    value: F64,
}

impl From<MetricsRequest> for ExportMetricsServiceRequest {
    fn from(request: MetricsRequest) -> Self {
        ExportMetricsServiceRequest {
            resource_metrics: convert(request.resource_metrics),
        }
    }
}

impl From<ResourceMetrics> for metrics::ResourceMetrics {
    fn from(resource_metrics: ResourceMetrics) -> Self {
        metrics::ResourceMetrics {
            resource: resource_metrics.resource.map(Into::into),
            scope_metrics: convert(resource_metrics.scope_metrics),
            ..Default::default()
        }
    }
}

impl From<ScopeMetrics> for metrics::ScopeMetrics {
    fn from(scope: ScopeMetrics) -> Self {
        metrics::ScopeMetrics {
            metrics: convert(scope.metrics),
            ..Default::default()
        }
    }
}

impl From<Metric> for metrics::Metric {
    fn from(metric: Metric) -> Self {
        use metrics::metric::Data;
        // A well-formed metric sets one type; should several be set, the first listed wins.
        let data = if let Some(gauge) = metric.gauge {
            Some(Data::Gauge(metrics::Gauge {
                data_points: convert(gauge.data_points),
            }))
        } else if let Some(sum) = metric.sum {
            Some(Data::Sum(metrics::Sum {
                data_points: convert(sum.data_points),
                ..Default::default()
            }))
        } else if let Some(histogram) = metric.histogram {
            Some(Data::Histogram(metrics::Histogram {
                data_points: convert(histogram.data_points),
                ..Default::default()
            }))
        } else if let Some(histogram) = metric.exponential_histogram {
            Some(Data::ExponentialHistogram(metrics::ExponentialHistogram {
                data_points: convert(histogram.data_points),
                ..Default::default()
            }))
        } else {
            metric.summary.map(|summary| {
                Data::Summary(metrics::Summary {
                    data_points: convert(summary.data_points),
                })
            })
        };
        metrics::Metric {
            name: metric.name,
            data,
            ..Default::default()
        }
    }
}

impl From<NumberDataPoint> for metrics::NumberDataPoint {
    fn from(point: NumberDataPoint) -> Self {
        use metrics::number_data_point::Value;
        let value = match (point.as_double, point.as_int) {
            (Some(F64(value)), _) => Some(Value::AsDouble(value)),
            (None, Some(I64(value))) => Some(Value::AsInt(value)),
            (None, None) => None,
        };
        metrics::NumberDataPoint {
            attributes: convert(point.attributes),
            time_unix_nano: point.time_unix_nano.0,
            flags: point.flags,
            value,
            ..Default::default()
        }
    }
}

impl From<HistogramDataPoint> for metrics::HistogramDataPoint {
    fn from(point: HistogramDataPoint) -> Self {
        metrics::HistogramDataPoint {
            attributes: convert(point.attributes),
            time_unix_nano: point.time_unix_nano.0,
            flags: point.flags,
            count: point.count.0,
            sum: point.sum.map(f64::from),
            bucket_counts: convert(point.bucket_counts),
            explicit_bounds: convert(point.explicit_bounds),
            ..Default::default()
        }
    }
}

impl From<ExponentialHistogramDataPoint> for metrics::ExponentialHistogramDataPoint {
    fn from(point: ExponentialHistogramDataPoint) -> Self {
        metrics::ExponentialHistogramDataPoint {
            attributes: convert(point.attributes),
            time_unix_nano: point.time_unix_nano.0,
            flags: point.flags,
            count: point.count.0,
            sum: point.sum.map(f64::from),
            ..Default::default()
        }
    }
}

impl From<SummaryDataPoint> for metrics::SummaryDataPoint {
    fn from(point: SummaryDataPoint) -> Self {
        metrics::SummaryDataPoint {
            attributes: convert(point.attributes),
            time_unix_nano: point.time_unix_nano.0,
            flags: point.flags,
            count: point.count.0,
            sum: point.sum.0,
            quantile_values: point
                .quantile_values
                .into_iter()
                .map(|quantile| metrics::summary_data_point::ValueAtQuantile {
                    quantile: quantile.quantile.0,
                    value: quantile.value.0,
                })
                .collect(),
            ..Default::default()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Logs.

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct LogsRequest {
    #[serde(alias = "resource_logs")]
    resource_logs: Vec<ResourceLogs>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ResourceLogs {
    resource: Option<Resource>,
    #[serde(alias = "scope_logs")]
    scope_logs: Vec<ScopeLogs>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ScopeLogs {
    #[serde(alias = "log_records")]
    log_records: Vec<LogRecord>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct LogRecord {
    #[serde(alias = "time_unix_nano")]
    time_unix_nano: U64,
    #[serde(alias = "observed_time_unix_nano")]
    observed_time_unix_nano: U64,
    #[serde(alias = "severity_number")]
    severity_number: i32,
    #[serde(alias = "severity_text")]
    severity_text: String,
    body: Option<AnyValue>,
    attributes: Vec<KeyValue>,
    #[serde(alias = "trace_id")]
    trace_id: Hex,
}

impl From<LogsRequest> for ExportLogsServiceRequest {
    fn from(request: LogsRequest) -> Self {
        ExportLogsServiceRequest {
            resource_logs: convert(request.resource_logs),
        }
    }
}

impl From<ResourceLogs> for logs::ResourceLogs {
    fn from(resource_logs: ResourceLogs) -> Self {
        logs::ResourceLogs {
            resource: resource_logs.resource.map(Into::into),
            scope_logs: convert(resource_logs.scope_logs),
            ..Default::default()
        }
    }
}

impl From<ScopeLogs> for logs::ScopeLogs {
    fn from(scope: ScopeLogs) -> Self {
        logs::ScopeLogs {
            log_records: convert(scope.log_records),
            ..Default::default()
        }
    }
}

impl From<LogRecord> for logs::LogRecord {
    fn from(record: LogRecord) -> Self {
        logs::LogRecord {
            time_unix_nano: record.time_unix_nano.0,
            observed_time_unix_nano: record.observed_time_unix_nano.0,
            severity_number: record.severity_number,
            severity_text: record.severity_text,
            body: record.body.map(Into::into),
            attributes: convert(record.attributes),
            trace_id: record.trace_id.0,
            ..Default::default()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Traces.

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct TracesRequest {
    #[serde(alias = "resource_spans")]
    resource_spans: Vec<ResourceSpans>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ResourceSpans {
    resource: Option<Resource>,
    #[serde(alias = "scope_spans")]
    scope_spans: Vec<ScopeSpans>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ScopeSpans {
    spans: Vec<Span>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Span {
    #[serde(alias = "trace_id")]
    trace_id: Hex,
    #[serde(alias = "span_id")]
    span_id: Hex,
    #[serde(alias = "parent_span_id")]
    parent_span_id: Hex,
    name: String,
    kind: i32,
    #[serde(alias = "start_time_unix_nano")]
    start_time_unix_nano: U64,
    #[serde(alias = "end_time_unix_nano")]
    end_time_unix_nano: U64,
    attributes: Vec<KeyValue>,
    status: Option<Status>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Status {
    message: String,
    code: i32,
}

impl From<TracesRequest> for ExportTraceServiceRequest {
    fn from(request: TracesRequest) -> Self {
        ExportTraceServiceRequest {
            resource_spans: convert(request.resource_spans),
        }
    }
}

impl From<ResourceSpans> for trace::ResourceSpans {
    fn from(resource_spans: ResourceSpans) -> Self {
        trace::ResourceSpans {
            resource: resource_spans.resource.map(Into::into),
            scope_spans: convert(resource_spans.scope_spans),
            ..Default::default()
        }
    }
}

impl From<ScopeSpans> for trace::ScopeSpans {
    fn from(scope: ScopeSpans) -> Self {
        trace::ScopeSpans {
            spans: convert(scope.spans),
            ..Default::default()
        }
    }
}

impl From<Span> for trace::Span {
    fn from(span: Span) -> Self {
        trace::Span {
            trace_id: span.trace_id.0,
            span_id: span.span_id.0,
            parent_span_id: span.parent_span_id.0,
            name: span.name,
            kind: span.kind,
            start_time_unix_nano: span.start_time_unix_nano.0,
            end_time_unix_nano: span.end_time_unix_nano.0,
            attributes: convert(span.attributes),
            status: span.status.map(|status| trace::Status {
                message: status.message,
                code: status.code,
            }),
            ..Default::default()
        }
    }
}
