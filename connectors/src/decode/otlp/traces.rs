//! OTLP traces: one `ExportTraceServiceRequest` per record into spans.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{Span as OtlpSpan, Status};
use opsloop_schemas::telemetry::{Span, SpanStatus};

use super::{
    OtlpEncoding, decode_request, first_attribute, flatten_attributes, id_hex, json, nanos_to_us,
    resource_attributes, resource_entity,
};
use crate::decode::{
    DEFAULT_MAX_RECORD_BYTES, DecodeError, Decoder, RecordContext, RecordRows, check_size,
};

const REQUEST: &str = "ExportTraceServiceRequest";

/// The service of spans whose resource has no `service.name`, as OpenTelemetry SDKs name it.
const UNKNOWN_SERVICE: &str = "unknown_service";

/// Span attributes that mark a database call (current and older semantic conventions).
const DB_SYSTEM_ATTRIBUTES: [&str; 2] = ["db.system.name", "db.system"];

/// Span attributes that name the database a client span calls, in order of preference.
const DB_ENTITY_ATTRIBUTES: [&str; 4] =
    ["server.address", "net.peer.name", "db.namespace", "db.name"];

/// Decodes one OTLP `ExportTraceServiceRequest` per record into one [`Span`] per span.
///
/// * Ids: `trace_id`, `span_id` and `parent_span_id` as lowercase hex. A span without a
///   16-byte trace id or an 8-byte span id, or with a parent id that is not 8 bytes, fails the
///   record (`invalid_otlp`); an empty or all-zero parent id means a root span.
/// * Service: the resource's `service.name`, else `unknown_service`; operation: the span name.
/// * Entity: a client span (kind `CLIENT`) with a `db.system.name` or `db.system` attribute is
///   about the database it calls, so its entity is the first non-empty span attribute of
///   `server.address`, `net.peer.name`, `db.namespace`, `db.name`; other spans (and database
///   spans without those) follow the resource (see the [module docs](super)).
/// * Times: start from `start_time_unix_nano` in µs (the record timestamp when it is 0);
///   `duration_us` = (end - start) / 1000, 0 when either is unset or the end precedes the
///   start.
/// * Status: `STATUS_CODE_OK` -> OK, `STATUS_CODE_ERROR` -> ERROR, anything else UNSET.
/// * Attributes: the span's attributes as text, plus `span.kind` (`internal`, `server`,
///   `client`, `producer`, `consumer`) and `otel.status_description` (the status message) when
///   set, unless the span has attributes of those names. Events and links are left out.
#[derive(Debug, Clone)]
pub struct OtlpTracesDecoder {
    encoding: OtlpEncoding,
    max_record_bytes: usize,
}

impl Default for OtlpTracesDecoder {
    fn default() -> Self {
        OtlpTracesDecoder::new(OtlpEncoding::default())
    }
}

impl OtlpTracesDecoder {
    /// A decoder of records in `encoding`.
    pub fn new(encoding: OtlpEncoding) -> Self {
        OtlpTracesDecoder {
            encoding,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }

    /// Rejects records over `max` bytes ([`DEFAULT_MAX_RECORD_BYTES`] by default).
    pub fn with_max_record_bytes(self, max: usize) -> Self {
        OtlpTracesDecoder {
            max_record_bytes: max,
            ..self
        }
    }
}

impl Decoder for OtlpTracesDecoder {
    type Rows = RecordRows<Span>;

    fn decode(
        &mut self,
        payload: &[u8],
        context: &RecordContext<'_>,
        out: &mut RecordRows<Span>,
    ) -> Result<usize, DecodeError> {
        check_size(payload, self.max_record_bytes)?;
        let request: ExportTraceServiceRequest =
            decode_request::<_, json::TracesRequest>(payload, self.encoding, REQUEST)?;
        // Everything is converted before anything is appended, so a failure appends nothing.
        let mut spans = Vec::new();
        for resource_spans in &request.resource_spans {
            let attributes = resource_attributes(resource_spans.resource.as_ref());
            let mut otlp_spans = resource_spans
                .scope_spans
                .iter()
                .flat_map(|scope| &scope.spans)
                .peekable();
            if otlp_spans.peek().is_none() {
                continue;
            }
            let entity = resource_entity(attributes, context.key)?;
            let service = first_attribute(attributes, &["service.name"])
                .unwrap_or_else(|| UNKNOWN_SERVICE.to_owned());
            for span in otlp_spans {
                spans.push(span_row(span, &entity, &service, context.timestamp_us)?);
            }
        }
        super::append_all(out, &spans, payload.len())
    }
}

fn span_row(
    span: &OtlpSpan,
    resource_entity: &str,
    service: &str,
    default_time_us: i64,
) -> Result<Span, DecodeError> {
    let missing = |what: &str| DecodeError::InvalidOtlp {
        request: REQUEST,
        message: format!("span {:?} has no {what}", span.name),
    };
    let trace_id = id_hex(&span.trace_id, 16, "a span's trace_id", REQUEST)?
        .ok_or_else(|| missing("trace_id"))?;
    let span_id =
        id_hex(&span.span_id, 8, "a span's span_id", REQUEST)?.ok_or_else(|| missing("span_id"))?;
    let parent_span_id = id_hex(&span.parent_span_id, 8, "a span's parent_span_id", REQUEST)?;

    let kind = SpanKind::try_from(span.kind).ok();
    let mut attributes = BTreeMap::new();
    flatten_attributes(&span.attributes, &mut attributes);
    let database = (kind == Some(SpanKind::Client))
        .then(|| first_attribute(&span.attributes, &DB_SYSTEM_ATTRIBUTES))
        .flatten()
        .and_then(|_| first_attribute(&span.attributes, &DB_ENTITY_ATTRIBUTES));
    if let Some(kind) = kind.and_then(kind_name) {
        attributes
            .entry("span.kind".to_owned())
            .or_insert_with(|| kind.to_owned());
    }
    let status = span.status.as_ref();
    if let Some(Status { message, .. }) = status.filter(|status| !status.message.is_empty()) {
        attributes
            .entry("otel.status_description".to_owned())
            .or_insert_with(|| message.clone());
    }

    let start_us = nanos_to_us(span.start_time_unix_nano);
    let duration_us = match (span.start_time_unix_nano, span.end_time_unix_nano) {
        (0, _) | (_, 0) => 0,
        (start, end) => nanos_to_us(end.saturating_sub(start)).unwrap_or(0),
    };
    Ok(Span {
        trace_id,
        span_id,
        parent_span_id,
        service: service.to_owned(),
        operation: span.name.clone(),
        entity: database.unwrap_or_else(|| resource_entity.to_owned()),
        start_time_us: start_us.unwrap_or(default_time_us),
        duration_us,
        status: match status.map(|status| StatusCode::try_from(status.code)) {
            Some(Ok(StatusCode::Ok)) => SpanStatus::Ok,
            Some(Ok(StatusCode::Error)) => SpanStatus::Error,
            _ => SpanStatus::Unset,
        },
        attributes,
    })
}

/// The `span.kind` attribute value of a span kind; `None` for `SPAN_KIND_UNSPECIFIED`.
fn kind_name(kind: SpanKind) -> Option<&'static str> {
    match kind {
        SpanKind::Unspecified => None,
        SpanKind::Internal => Some("internal"),
        SpanKind::Server => Some("server"),
        SpanKind::Client => Some("client"),
        SpanKind::Producer => Some("producer"),
        SpanKind::Consumer => Some("consumer"),
    }
}
