//! OTLP records as the OpenTelemetry Collector's Kafka exporter writes them: one
//! `ExportMetricsServiceRequest`, `ExportLogsServiceRequest` or `ExportTraceServiceRequest` per
//! record, in the exporter's `otlp_proto` (protobuf, the default) or `otlp_json` encoding.
//!
//! | decoder | topic (collector default) | rows |
//! |---|---|---|
//! | [`OtlpMetricsDecoder`] | [`OTLP_METRICS_TOPIC`] | one metric sample per number, count, sum or quantile |
//! | [`OtlpLogsDecoder`] | [`OTLP_LOGS_TOPIC`] | one [`LogRecord`](opsloop_schemas::telemetry::LogRecord) per log record |
//! | [`OtlpTracesDecoder`] | [`OTLP_SPANS_TOPIC`] | one [`Span`](opsloop_schemas::telemetry::Span) per span |
//!
//! # Entity
//!
//! Every row's entity comes from its resource: the first non-empty of the resource attributes
//! `service.instance.id` (one running instance, e.g. a pod or a database server), `host.name`,
//! `service.name`; else the record key; else [`UNKNOWN_ENTITY`](super::UNKNOWN_ENTITY). Database client spans name the database instead
//! (see [`OtlpTracesDecoder`]). When the exporter partitions by trace id or resource hash,
//! the record key is that id, not an entity name, so producers should set one of the
//! attributes.
//!
//! # Values as text
//!
//! Attributes and log bodies are `AnyValue`s; they become strings: a string as is, a bool,
//! integer or double in its shortest decimal form (`true`, `42`, `0.5`), bytes as lowercase
//! hex, arrays and key-value lists as compact JSON (`["a",1]`, `{"k":"v"}`), an empty value (or
//! a string-table index, which means something only in profiles) as the empty string. Trace
//! and span ids are lowercase hex, as in OTLP/JSON.
//!
//! # OTLP/JSON
//!
//! Requests follow the OTLP/JSON mapping: lowerCamelCase field names, trace and span ids as
//! hex strings, enums as integers, 64-bit integers as numbers or decimal strings
//! (`"timeUnixNano": "1700000000000000000"`), `AnyValue`s as `{"stringValue": ..}` etc.;
//! unknown fields are ignored. Doubles may also be the strings `"NaN"`, `"Infinity"`,
//! `"-Infinity"`, `"+Inf"` and `"-Inf"`, as the collector writes non-finite values, and empty
//! messages may be `{}`. Our own serde structs read it (`opentelemetry-proto`'s serde support
//! rejects those strings and `{"arrayValue":{}}`) and convert into the protobuf types, so both
//! encodings go through the same code.
//!
//! # Errors
//!
//! A record fails whole, with nothing appended, and the reason code says why:
//!
//! * `too_large`: over the decoder's size limit;
//! * `invalid_protobuf`: not a protobuf message of the signal's request type, including one
//!   with a string that is not UTF-8 or nested more than 100 messages deep;
//! * `invalid_utf8`, `invalid_json`: not UTF-8, or not the request in OTLP/JSON (nesting
//!   included, up to serde_json's 128 levels);
//! * `invalid_otlp`: decoded but breaks the OTLP data model, such as a span without a 16-byte
//!   trace id or a histogram whose bucket counts do not match its bounds.
//!
//! NaN and infinite metric values are skipped, not errors (see [`OtlpMetricsDecoder`]).

mod json;
mod logs;
mod metrics;
mod traces;

pub use logs::OtlpLogsDecoder;
pub use metrics::{OTLP_SOURCE, OtlpMetricsDecoder};
pub use traces::OtlpTracesDecoder;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opsloop_schemas::AvroRecord;
use opsloop_schemas::ids::hex;

use super::{DecodeError, RecordRows, key_entity, utf8_text};

/// The collector Kafka exporter's default topic for metrics.
pub const OTLP_METRICS_TOPIC: &str = "otlp_metrics";
/// The collector Kafka exporter's default topic for logs.
pub const OTLP_LOGS_TOPIC: &str = "otlp_logs";
/// The collector Kafka exporter's default topic for traces.
pub const OTLP_SPANS_TOPIC: &str = "otlp_spans";

/// How OTLP requests are encoded on a topic, named as in the collector Kafka exporter's
/// `encoding` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OtlpEncoding {
    /// Protobuf (`otlp_proto`), the exporter's default.
    #[default]
    Proto,
    /// OTLP/JSON (`otlp_json`).
    Json,
}

impl OtlpEncoding {
    /// Every encoding, in the order of their names in error messages.
    pub const ALL: [OtlpEncoding; 2] = [OtlpEncoding::Proto, OtlpEncoding::Json];

    /// The exporter's name for the encoding: `otlp_proto` or `otlp_json`.
    pub fn name(self) -> &'static str {
        match self {
            OtlpEncoding::Proto => "otlp_proto",
            OtlpEncoding::Json => "otlp_json",
        }
    }
}

impl FromStr for OtlpEncoding {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OtlpEncoding::ALL
            .into_iter()
            .find(|encoding| encoding.name() == s)
            .ok_or_else(|| format!("unknown OTLP encoding {s:?}: expected otlp_proto or otlp_json"))
    }
}

impl fmt::Display for OtlpEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Decodes one export request of type `M`, named `request` in errors; `J` is its OTLP/JSON
/// form.
fn decode_request<M, J>(
    payload: &[u8],
    encoding: OtlpEncoding,
    request: &'static str,
) -> Result<M, DecodeError>
where
    M: prost::Message + Default,
    J: serde::de::DeserializeOwned + Into<M>,
{
    match encoding {
        OtlpEncoding::Proto => M::decode(payload).map_err(|error| DecodeError::InvalidProtobuf {
            request,
            message: error.to_string(),
        }),
        OtlpEncoding::Json => {
            let text = utf8_text(payload, "the OTLP/JSON request")?;
            let json: J = serde_json::from_str(text).map_err(|error| {
                let message = error.to_string();
                // serde_json ends its messages with the position, which the error carries apart.
                let position = format!(" at line {} column {}", error.line(), error.column());
                DecodeError::InvalidOtlpJson {
                    request,
                    line: error.line(),
                    column: error.column(),
                    message: message
                        .strip_suffix(&position)
                        .unwrap_or(&message)
                        .to_owned(),
                }
            })?;
            Ok(json.into())
        }
    }
}

/// Resource attributes that name an entity, in order of preference.
const ENTITY_ATTRIBUTES: [&str; 3] = ["service.instance.id", "host.name", "service.name"];

/// The attributes of `resource`, empty when it is absent.
fn resource_attributes(resource: Option<&Resource>) -> &[KeyValue] {
    resource.map_or(&[], |resource| &resource.attributes)
}

/// The first of `keys` with a non-empty value among `attributes`, as text.
fn first_attribute(attributes: &[KeyValue], keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|&key| {
        attributes
            .iter()
            .filter(|attribute| attribute.key == key)
            .map(|attribute| text(attribute.value.as_ref()))
            .find(|value| !value.is_empty())
    })
}

/// The entity of rows from a resource with `attributes` (see the module docs).
fn resource_entity(attributes: &[KeyValue], key: Option<&[u8]>) -> Result<String, DecodeError> {
    match first_attribute(attributes, &ENTITY_ATTRIBUTES) {
        Some(entity) => Ok(entity),
        None => Ok(key_entity(key)?.to_owned()),
    }
}

/// Adds `attributes` to `out` as text; a later duplicate key wins.
fn flatten_attributes(attributes: &[KeyValue], out: &mut BTreeMap<String, String>) {
    for attribute in attributes {
        out.insert(attribute.key.clone(), text(attribute.value.as_ref()));
    }
}

/// An `AnyValue` as text (see the module docs).
fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|value| value.value.as_ref()) {
        // A string-table index means something only inside a profile.
        None | Some(Value::StringValueStrindex(_)) => String::new(),
        Some(Value::StringValue(text)) => text.clone(),
        Some(Value::BoolValue(value)) => value.to_string(),
        Some(Value::IntValue(value)) => value.to_string(),
        Some(Value::DoubleValue(value)) => value.to_string(),
        Some(Value::BytesValue(bytes)) => hex(bytes),
        Some(nested @ (Value::ArrayValue(_) | Value::KvlistValue(_))) => json(nested).to_string(),
    }
}

/// A nested `AnyValue` as JSON; non-finite doubles become strings, bytes hex strings.
fn json(value: &Value) -> serde_json::Value {
    let element = |value: &AnyValue| value.value.as_ref().map_or(serde_json::Value::Null, json);
    match value {
        Value::StringValue(text) => serde_json::Value::from(text.as_str()),
        Value::BoolValue(value) => serde_json::Value::from(*value),
        Value::IntValue(value) => serde_json::Value::from(*value),
        Value::DoubleValue(value) => serde_json::Number::from_f64(*value)
            .map_or_else(|| value.to_string().into(), serde_json::Value::Number),
        Value::BytesValue(bytes) => hex(bytes).into(),
        Value::StringValueStrindex(_) => serde_json::Value::Null,
        Value::ArrayValue(array) => array.values.iter().map(element).collect(),
        Value::KvlistValue(list) => list
            .values
            .iter()
            .map(|pair| {
                let value = pair.value.as_ref().map_or(serde_json::Value::Null, element);
                (pair.key.clone(), value)
            })
            .collect(),
    }
}

/// A trace or span id of `len` bytes as hex; `None` when it is empty or all zero (OTLP's
/// "no id"), an error naming `what` when it has another length.
fn id_hex(
    bytes: &[u8],
    len: usize,
    what: &str,
    request: &'static str,
) -> Result<Option<String>, DecodeError> {
    if bytes.iter().all(|&byte| byte == 0) {
        return Ok(None);
    }
    if bytes.len() != len {
        return Err(DecodeError::InvalidOtlp {
            request,
            message: format!("{what} is {} bytes long, not {len}", bytes.len()),
        });
    }
    Ok(Some(hex(bytes)))
}

/// Nanoseconds since the epoch as microseconds; `None` for 0, OTLP's "unset".
fn nanos_to_us(nanos: u64) -> Option<i64> {
    if nanos == 0 {
        return None;
    }
    // u64::MAX / 1000 is below i64::MAX, so this always converts.
    i64::try_from(nanos / 1_000).ok()
}

/// Appends every converted record to `out`; `payload_len` is shared among them for the memory
/// estimate. Log records and spans are strings, integers, unit enums and string maps, which
/// always have an Arrow representation, so no append fails once the records are converted.
/// Were one to (a bug in the row builder), the records before it would stay appended.
fn append_all<T: AvroRecord>(
    out: &mut RecordRows<T>,
    records: &[T],
    payload_len: usize,
) -> Result<usize, DecodeError> {
    let share = payload_len / records.len().max(1);
    for record in records {
        out.append(record, share)
            .map_err(|error| DecodeError::Unrepresentable {
                kind: T::KIND.name(),
                message: error.to_string(),
            })?;
    }
    Ok(records.len())
}
