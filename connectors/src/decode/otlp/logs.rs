//! OTLP logs: one `ExportLogsServiceRequest` per record into log records.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::LogRecord as OtlpLogRecord;
use opsloop_schemas::telemetry::{LogRecord, Severity};

use super::{
    OtlpEncoding, decode_request, first_attribute, flatten_attributes, id_hex, json, nanos_to_us,
    resource_attributes, resource_entity, text,
};
use crate::decode::{
    DEFAULT_MAX_RECORD_BYTES, DecodeError, Decoder, RecordContext, RecordRows, check_size,
};

const REQUEST: &str = "ExportLogsServiceRequest";

/// Decodes one OTLP `ExportLogsServiceRequest` per record into one [`LogRecord`] per log
/// record.
///
/// * Entity: from the resource (see the [module docs](super)).
/// * Time: `time_unix_nano`, else `observed_time_unix_nano`, else the record timestamp, in µs.
/// * Severity: from `severity_number` by the OpenTelemetry ranges (1-4 TRACE, 5-8 DEBUG,
///   9-12 INFO, 13-16 WARN, 17-20 ERROR, 21-24 FATAL); when it is 0 or out of range, from
///   `severity_text` (`trace`, `debug`, `info`/`information`/`notice`, `warn`/`warning`,
///   `error`/`err`, `fatal`/`critical`/`crit`/`alert`/`emerg`/`emergency`/`panic`, any case,
///   a trailing digit ignored as in `INFO2`); else INFO.
/// * Body: the `AnyValue` as text (see the [module docs](super)).
/// * Attributes: the log record's attributes as text, plus the resource's `service.name`
///   unless the record has an attribute of that name.
/// * Trace id: lowercase hex when present and not all zero; an id that is not 16 bytes long
///   fails the record (`invalid_otlp`).
#[derive(Debug, Clone)]
pub struct OtlpLogsDecoder {
    encoding: OtlpEncoding,
    max_record_bytes: usize,
}

impl Default for OtlpLogsDecoder {
    fn default() -> Self {
        OtlpLogsDecoder::new(OtlpEncoding::default())
    }
}

impl OtlpLogsDecoder {
    /// A decoder of records in `encoding`.
    pub fn new(encoding: OtlpEncoding) -> Self {
        OtlpLogsDecoder {
            encoding,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }

    /// Rejects records over `max` bytes ([`DEFAULT_MAX_RECORD_BYTES`] by default).
    pub fn with_max_record_bytes(self, max: usize) -> Self {
        OtlpLogsDecoder {
            max_record_bytes: max,
            ..self
        }
    }
}

impl Decoder for OtlpLogsDecoder {
    type Rows = RecordRows<LogRecord>;

    fn decode(
        &mut self,
        payload: &[u8],
        context: &RecordContext<'_>,
        out: &mut RecordRows<LogRecord>,
    ) -> Result<usize, DecodeError> {
        check_size(payload, self.max_record_bytes)?;
        let request: ExportLogsServiceRequest =
            decode_request::<_, json::LogsRequest>(payload, self.encoding, REQUEST)?;
        // Everything is converted before anything is appended, so a failure appends nothing.
        let mut records = Vec::new();
        for resource_logs in &request.resource_logs {
            let attributes = resource_attributes(resource_logs.resource.as_ref());
            let mut log_records = resource_logs
                .scope_logs
                .iter()
                .flat_map(|scope| &scope.log_records)
                .peekable();
            if log_records.peek().is_none() {
                continue;
            }
            let entity = resource_entity(attributes, context.key)?;
            let service = first_attribute(attributes, &["service.name"]);
            for record in log_records {
                records.push(log_record(
                    record,
                    &entity,
                    service.as_deref(),
                    context.timestamp_us,
                )?);
            }
        }
        super::append_all(out, &records, payload.len())
    }
}

fn log_record(
    record: &OtlpLogRecord,
    entity: &str,
    service: Option<&str>,
    default_time_us: i64,
) -> Result<LogRecord, DecodeError> {
    let mut attributes = BTreeMap::new();
    flatten_attributes(&record.attributes, &mut attributes);
    if let Some(service) = service {
        attributes
            .entry("service.name".to_owned())
            .or_insert_with(|| service.to_owned());
    }
    Ok(LogRecord {
        entity: entity.to_owned(),
        time_us: nanos_to_us(record.time_unix_nano)
            .or_else(|| nanos_to_us(record.observed_time_unix_nano))
            .unwrap_or(default_time_us),
        severity: severity_from_number(record.severity_number)
            .or_else(|| severity_from_text(&record.severity_text))
            .unwrap_or(Severity::Info),
        body: text(record.body.as_ref()),
        attributes,
        trace_id: id_hex(&record.trace_id, 16, "a log record's trace_id", REQUEST)?,
    })
}

/// The severity of an OpenTelemetry severity number; `None` outside 1-24.
fn severity_from_number(number: i32) -> Option<Severity> {
    Some(match number {
        1..=4 => Severity::Trace,
        5..=8 => Severity::Debug,
        9..=12 => Severity::Info,
        13..=16 => Severity::Warn,
        17..=20 => Severity::Error,
        21..=24 => Severity::Fatal,
        _ => return None,
    })
}

/// Severity texts and what they mean, compared without case.
const SEVERITY_TEXTS: [(&str, Severity); 16] = [
    ("trace", Severity::Trace),
    ("debug", Severity::Debug),
    ("info", Severity::Info),
    ("information", Severity::Info),
    ("notice", Severity::Info),
    ("warn", Severity::Warn),
    ("warning", Severity::Warn),
    ("error", Severity::Error),
    ("err", Severity::Error),
    ("fatal", Severity::Fatal),
    ("critical", Severity::Fatal),
    ("crit", Severity::Fatal),
    ("alert", Severity::Fatal),
    ("emerg", Severity::Fatal),
    ("emergency", Severity::Fatal),
    ("panic", Severity::Fatal),
];

/// The severity of a severity text such as `WARN` or `INFO2`; `None` for any other text.
fn severity_from_text(text: &str) -> Option<Severity> {
    let word = text.trim();
    let word = word
        .strip_suffix(|c: char| c.is_ascii_digit())
        .unwrap_or(word);
    SEVERITY_TEXTS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(word))
        .map(|&(_, severity)| severity)
}
