//! Turning record payloads from Kafka into Arrow [`RecordBatch`](arrow::record_batch::RecordBatch)es.
//!
//! A [`Decoder`] appends the rows of one record to its [`RowBuilder`]. Metric decoders share
//! one builder, [`MetricSamplesBuilder`], whose batches follow one schema,
//! [`metric_samples_schema`], whatever the wire format; decoders of other kinds append one row
//! per record to [`RecordRows`] in the kind's [`record_schema`]:
//!
//! | decoder | payload |
//! |---|---|
//! | [`AvroMetricBatchDecoder`] | a `MetricBatch` as plain Avro, Confluent-framed Avro or JSON ([`Codec`](opsloop_schemas::Codec)) |
//! | [`JsonLinesDecoder`] | JSON lines: `MetricBatch` objects or flat sample objects |
//! | [`PrometheusTextDecoder`] | a Prometheus text page (exposition format 0.0.4), e.g. from node-exporter or dcgm-exporter |
//! | [`OtlpMetricsDecoder`] | an OTLP `ExportMetricsServiceRequest` as the OpenTelemetry Collector's Kafka exporter writes it (`otlp_proto` or `otlp_json`) |
//! | [`AvroRecordDecoder`] | any other record kind (logs, spans, GPU and feature samples, alerts, incidents, ...) in the codec formats, one row each in [`record_schema`] |
//! | [`OtlpLogsDecoder`], [`OtlpTracesDecoder`] | an OTLP `ExportLogsServiceRequest` / `ExportTraceServiceRequest` from the collector's Kafka exporter, one row per log record / span in [`record_schema`] |
//!
//! [`dcgm_gpu_samples`] reads a dcgm-exporter page into one
//! [`GpuSample`](opsloop_schemas::telemetry::GpuSample) per GPU for `telemetry.gpu`.
//!
//! A record either decodes whole or not at all: a decoder that returns an error has appended
//! nothing, and the record goes to the dead-letter topic with [`DecodeError::reason_code`] as
//! its reason. Appending part of a record would duplicate data when it is replayed.

mod avro;
mod batch;
mod dcgm;
mod error;
mod json;
pub mod otlp;
mod prometheus;
mod records;
mod time;

pub use avro::AvroMetricBatchDecoder;
pub use batch::{MetricSamplesBuilder, TIME_ZONE, metric_samples_schema};
pub use dcgm::{DCGM_FIELD_PREFIX, DcgmGpuDecoder, dcgm_gpu_samples};
pub use error::DecodeError;
pub use json::JsonLinesDecoder;
pub use otlp::{
    OTLP_LOGS_TOPIC, OTLP_METRICS_TOPIC, OTLP_SOURCE, OTLP_SPANS_TOPIC, OtlpEncoding,
    OtlpLogsDecoder, OtlpMetricsDecoder, OtlpTracesDecoder,
};
pub use prometheus::{PROMETHEUS_SOURCE, PrometheusTextDecoder};
pub use records::{AvroRecordDecoder, RecordRows, record_schema};
pub use time::parse_rfc3339_us;

use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use batch::{Span, Staging};

/// Largest record a decoder accepts unless configured otherwise: 1 MiB, Kafka's default
/// `message.max.bytes`.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1024 * 1024;

/// Entity of samples that name none, when the record has no key either.
pub const UNKNOWN_ENTITY: &str = "unknown";

/// What a decoder knows about a record besides its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordContext<'a> {
    /// The record key: the entity id on the metric topics, used when the payload names none.
    pub key: Option<&'a [u8]>,
    /// The topic the record was read from.
    pub topic: &'a str,
    /// The record timestamp (µs since the Unix epoch), the time of samples that carry none.
    /// Callers substitute the time of reading when the broker reports no timestamp.
    pub timestamp_us: i64,
}

impl<'a> RecordContext<'a> {
    pub fn new(topic: &'a str, timestamp_us: i64) -> Self {
        RecordContext {
            key: None,
            topic,
            timestamp_us,
        }
    }

    pub fn with_key(self, key: &'a [u8]) -> Self {
        RecordContext {
            key: Some(key),
            ..self
        }
    }
}

/// An Arrow batch under construction that a [`Decoder`] appends rows to.
pub trait RowBuilder: Send {
    /// Rows appended since the last [`finish`](Self::finish).
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate heap bytes held, to cut batches by memory rather than by row count.
    fn estimated_memory_bytes(&self) -> usize;

    /// The largest event time (µs) among the rows appended at or after row `from`, when the
    /// rows carry one in a known column; `None` otherwise, and the record timestamp stands in.
    fn max_event_time_us(&self, from: usize) -> Option<i64> {
        let _ = from;
        None
    }

    /// Builds a batch of every row appended so far and empties the builder. The error is
    /// Arrow's column validation, which fails only if the builder itself has a bug.
    fn finish(&mut self) -> Result<RecordBatch, ArrowError>;
}

/// Decodes one record payload into rows of an Arrow batch.
pub trait Decoder: Send {
    /// The batch the rows go to; its schema is the decoder's output schema.
    type Rows: RowBuilder + Default;

    /// A builder for this decoder's rows.
    fn new_rows(&self) -> Self::Rows {
        Self::Rows::default()
    }

    /// Appends the rows of `payload` to `out` and returns how many. On error nothing has
    /// been appended.
    fn decode(
        &mut self,
        payload: &[u8],
        context: &RecordContext<'_>,
        out: &mut Self::Rows,
    ) -> Result<usize, DecodeError>;
}

fn check_size(payload: &[u8], max: usize) -> Result<(), DecodeError> {
    if payload.len() > max {
        return Err(DecodeError::TooLarge {
            size: payload.len(),
            max,
        });
    }
    Ok(())
}

/// The payload as text, or an error naming the line of the first invalid byte.
fn utf8_text<'p>(payload: &'p [u8], what: &'static str) -> Result<&'p str, DecodeError> {
    std::str::from_utf8(payload).map_err(|error| {
        let offset = error.valid_up_to();
        let line = 1 + payload[..offset].iter().filter(|&&b| b == b'\n').count();
        DecodeError::InvalidUtf8 {
            what,
            line: Some(line),
            offset,
        }
    })
}

/// The record key as an entity name, checked for UTF-8 only when a sample needs it.
fn key_entity(key: Option<&[u8]>) -> Result<&str, DecodeError> {
    match key {
        None | Some([]) => Ok(UNKNOWN_ENTITY),
        Some(key) => std::str::from_utf8(key).map_err(|error| DecodeError::InvalidUtf8 {
            what: "the record key (used as the entity)",
            line: None,
            offset: error.valid_up_to(),
        }),
    }
}

/// The fallback entity of one record, staged once, on first use.
#[derive(Debug)]
struct FallbackEntity<'a> {
    key: Option<&'a [u8]>,
    span: Option<Span>,
}

impl<'a> FallbackEntity<'a> {
    fn new(key: Option<&'a [u8]>) -> Self {
        FallbackEntity { key, span: None }
    }

    fn span(&mut self, staging: &mut Staging) -> Result<Span, DecodeError> {
        if let Some(span) = self.span {
            return Ok(span);
        }
        let span = staging.push_text(key_entity(self.key)?);
        self.span = Some(span);
        Ok(span)
    }
}
