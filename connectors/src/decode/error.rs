//! Why a record could not be decoded: the reason a dead letter carries.

use opsloop_schemas::CodecError;

use crate::Retry;

/// A record that could not be turned into metric samples. The whole record goes to the
/// dead-letter topic with [`DecodeError::reason_code`] as its reason and the `Display` text as
/// the detail; nothing of it reaches the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The record is larger than the decoder accepts.
    #[error(
        "the record is {size} bytes, over the {max}-byte limit for one record: split it into \
         smaller batches, or raise the limit (max_record_bytes of the source's [[sources]] \
         entry for opsloop run)"
    )]
    TooLarge { size: usize, max: usize },
    /// Avro (plain or Confluent-framed) or codec-level JSON that does not decode.
    #[error("cannot decode the record as a MetricBatch: {0}")]
    Codec(#[from] CodecError),
    /// Text formats must be UTF-8; the bytes at `line` are not.
    #[error(
        "{what} is not valid UTF-8 (first bad byte at offset {offset}{}): the producer must \
         write UTF-8 text",
        line_suffix(*line)
    )]
    InvalidUtf8 {
        what: &'static str,
        /// 1-based line of the payload, when the bytes are a text payload.
        line: Option<usize>,
        offset: usize,
    },
    /// One line of a JSON-lines payload is not a metric batch or sample object.
    #[error(
        "line {line} is not a valid metric JSON object (column {column}): {message}; expected \
         {{\"entity\":..,\"samples\":[..]}} or {{\"name\":..,\"value\":..}}"
    )]
    InvalidJson {
        /// 1-based line of the payload.
        line: usize,
        /// 1-based column within the line; 0 when the whole line is at fault.
        column: usize,
        message: String,
    },
    /// A sample value is NaN or infinite where the format has no use for one.
    #[error(
        "sample {metric:?}{} has the non-finite value {value}: metric values must be finite \
         numbers; drop the sample at the producer or send a finite value",
        line_suffix(*line)
    )]
    NonFiniteValue {
        metric: String,
        value: f64,
        /// 1-based line of a text payload; `None` for Avro.
        line: Option<usize>,
    },
    /// A line of a Prometheus text page (exposition format 0.0.4) is malformed.
    #[error(
        "line {line} of the Prometheus text page is malformed: expected {expected}, found \
         {found}; the page must follow the text exposition format 0.0.4"
    )]
    PrometheusParse {
        /// 1-based line of the page.
        line: usize,
        expected: &'static str,
        /// The text at the point of failure, quoted and cut to a few dozen characters, or
        /// "the end of the line".
        found: String,
    },
    /// A DCGM series appears more than once for the same GPU, so one `GpuSample` cannot hold it.
    #[error(
        "DCGM field {field} appears more than once for GPU {gpu_uuid} (line {line}): a GPU \
         sample holds one value per field; check for duplicate series, e.g. per-pod copies of \
         a shared GPU"
    )]
    DuplicateGpuField {
        gpu_uuid: String,
        field: String,
        line: usize,
    },
    /// An `otlp_proto` record that is not a protobuf message of the expected OTLP request type,
    /// including one with a string field that is not UTF-8.
    #[error(
        "the record is not a valid OTLP protobuf {request}: {message}; check that the topic \
         holds {request}s and that its encoding is otlp_proto, not otlp_json"
    )]
    InvalidProtobuf {
        /// The expected message type, e.g. `ExportMetricsServiceRequest`.
        request: &'static str,
        message: String,
    },
    /// An `otlp_json` record that does not parse as the expected OTLP request type.
    #[error(
        "the record is not a valid OTLP/JSON {request} (line {line}, column {column}): \
         {message}; OTLP/JSON has lowerCamelCase fields, hex trace and span ids and AnyValues \
         such as {{\"stringValue\":..}}; check that the topic's encoding is otlp_json"
    )]
    InvalidOtlpJson {
        /// The expected message type, e.g. `ExportLogsServiceRequest`.
        request: &'static str,
        /// 1-based line of the payload.
        line: usize,
        /// 1-based column within the line, as serde_json reports it.
        column: usize,
        message: String,
    },
    /// An OTLP request that decoded but breaks the OTLP data model, e.g. a span without a
    /// trace id.
    #[error("the {request} decoded but is not valid OTLP: {message}")]
    InvalidOtlp {
        /// The message type, e.g. `ExportTraceServiceRequest`.
        request: &'static str,
        message: String,
    },
    /// The record decoded but a value has no Arrow representation in its kind's schema.
    #[error("the {kind} record decoded but cannot be stored as an Arrow row: {message}")]
    Unrepresentable { kind: &'static str, message: String },
}

impl DecodeError {
    /// A stable, machine-readable reason, used as the dead-letter reason and metric label.
    /// Codec errors keep the codec's own reasons (`truncated`, `bad_magic`, ...).
    pub fn reason_code(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::Codec(error) => error.reason_code(),
            DecodeError::InvalidUtf8 { .. } => "invalid_utf8",
            DecodeError::InvalidJson { .. } => "invalid_json",
            DecodeError::NonFiniteValue { .. } => "non_finite_value",
            DecodeError::PrometheusParse { .. } => "prometheus_parse_error",
            DecodeError::DuplicateGpuField { .. } => "duplicate_gpu_field",
            DecodeError::InvalidProtobuf { .. } => "invalid_protobuf",
            DecodeError::InvalidOtlpJson { .. } => "invalid_json",
            DecodeError::InvalidOtlp { .. } => "invalid_otlp",
            DecodeError::Unrepresentable { .. } => "unrepresentable",
        }
    }

    /// Decoding is deterministic: the same bytes fail the same way, so a retry never helps.
    pub fn retry(&self) -> Retry {
        Retry::Never
    }
}

fn line_suffix(line: Option<usize>) -> String {
    line.map_or_else(String::new, |line| format!(" on line {line}"))
}
