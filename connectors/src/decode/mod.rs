//! Turning record payloads from Kafka into Arrow [`RecordBatch`](arrow::record_batch::RecordBatch)es.
//!
//! Every decoder appends to a [`MetricSamplesBuilder`], whose batches follow one schema,
//! [`metric_samples_schema`], whatever the wire format:
//!
//! | decoder | payload |
//! |---|---|
//! | [`AvroMetricBatchDecoder`] | a `MetricBatch` as plain Avro, Confluent-framed Avro or JSON ([`Codec`](opsloop_schemas::Codec)) |
//! | [`JsonLinesDecoder`] | JSON lines: `MetricBatch` objects or flat sample objects |
//! | [`PrometheusTextDecoder`] | a Prometheus text page (exposition format 0.0.4), e.g. from node-exporter or dcgm-exporter |
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
mod prometheus;
mod time;

pub use avro::AvroMetricBatchDecoder;
pub use batch::{MetricSamplesBuilder, TIME_ZONE, metric_samples_schema};
pub use dcgm::{DCGM_FIELD_PREFIX, DcgmGpuDecoder, dcgm_gpu_samples};
pub use error::DecodeError;
pub use json::JsonLinesDecoder;
pub use prometheus::{PROMETHEUS_SOURCE, PrometheusTextDecoder};
pub use time::parse_rfc3339_us;

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

/// Decodes one record payload into metric samples.
pub trait Decoder {
    /// Appends the samples of `payload` to `out` and returns how many. On error nothing has
    /// been appended.
    fn decode(
        &mut self,
        payload: &[u8],
        context: &RecordContext<'_>,
        out: &mut MetricSamplesBuilder,
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
