//! The dead-letter topic: where records that cannot be decoded or used go, with the reason.
//!
//! A dead letter keeps the original payload bytes untouched, so it can be replayed once the
//! producer or decoder is fixed, and carries where it came from, its original key, its size,
//! its SHA-256 and why it was turned away in headers ([`headers`]). It is keyed by source
//! topic, as the topic contract says, and its timestamp is the original record's.
//!
//! A payload over [`DEAD_LETTER_MAX_PAYLOAD_BYTES`] (256 KiB, well under the brokers' default
//! 1 MB `message.max.bytes`) is stored as its first 256 KiB: the size and hash headers still
//! describe the whole record, and the source coordinates find it for as long as the source
//! topic retains it. A key over [`DEAD_LETTER_MAX_KEY_BYTES`] is left out. Poison input must
//! not stop the pipeline, so a dead letter that still cannot be written (the topic is missing,
//! the brokers refuse it) is logged and counted, and the caller reads on
//! ([`PendingDeadLetter::wait`]).

use opsloop_schemas::ids::hex;
use rdkafka::Message;
use sha2::{Digest, Sha256};

use super::sink::{KafkaSink, OutgoingRecord, PendingDelivery};
use crate::metrics::SourceMetrics;

/// Header names of a dead letter.
pub mod headers {
    /// Topic the record was read from.
    pub const SOURCE_TOPIC: &str = "opsloop.dlq.source_topic";
    /// Its partition, decimal.
    pub const SOURCE_PARTITION: &str = "opsloop.dlq.source_partition";
    /// Its offset, decimal.
    pub const SOURCE_OFFSET: &str = "opsloop.dlq.source_offset";
    /// The stable reason code, e.g. `truncated` or `invalid_json`.
    pub const REASON_CODE: &str = "opsloop.dlq.reason_code";
    /// The human-readable reason.
    pub const REASON: &str = "opsloop.dlq.reason";
    /// The original record key, when it had one of at most
    /// [`DEAD_LETTER_MAX_KEY_BYTES`](super::DEAD_LETTER_MAX_KEY_BYTES) bytes (the dead letter
    /// is keyed by source topic).
    pub const SOURCE_KEY: &str = "opsloop.dlq.source_key";
    /// The original payload's size in bytes, decimal; more than the dead letter's payload when
    /// it was truncated.
    pub const SOURCE_SIZE: &str = "opsloop.dlq.source_size";
    /// The SHA-256 of the whole original payload, lowercase hex.
    pub const SOURCE_SHA256: &str = "opsloop.dlq.source_sha256";
}

/// Reason code of a record without a payload (a tombstone on a telemetry topic).
pub const EMPTY_PAYLOAD: &str = "empty_payload";

/// The most payload bytes a dead letter stores: a larger record keeps this prefix.
pub const DEAD_LETTER_MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// The longest original key a dead letter keeps in its [`headers::SOURCE_KEY`] header.
pub const DEAD_LETTER_MAX_KEY_BYTES: usize = 1024;

/// Which record a dead letter is for and why, for the events about it.
#[derive(Debug, Clone)]
pub(crate) struct DeadLetterOrigin {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) reason_code: String,
    /// The original payload's size in bytes.
    pub(crate) size: usize,
}

/// A dead letter handed to the producer, or one it refused (already logged and counted).
#[must_use = "a dead letter is only known to be written once it is awaited"]
#[derive(Debug)]
pub struct PendingDeadLetter {
    delivery: Option<PendingDelivery>,
    origin: DeadLetterOrigin,
    metrics: SourceMetrics,
}

impl PendingDeadLetter {
    /// Waits until the brokers acknowledge the dead letter. A failure is logged and counted
    /// (`opsloop_dead_letter_failures_total`): the record is then skipped, and the caller
    /// reads on.
    pub async fn wait(self) {
        let Some(delivery) = self.delivery else {
            return;
        };
        if let Err(error) = delivery.wait().await {
            self.metrics.dead_letter_failed(&self.origin, &error);
        }
    }
}

/// Writes dead letters to one topic.
#[derive(Debug, Clone)]
pub struct DeadLetterWriter {
    sink: KafkaSink,
    topic: String,
}

impl DeadLetterWriter {
    pub fn new(sink: KafkaSink, topic: impl Into<String>) -> Self {
        DeadLetterWriter {
            sink,
            topic: topic.into(),
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Enqueues `message` as a dead letter, its payload cut to
    /// [`DEAD_LETTER_MAX_PAYLOAD_BYTES`]; the caller awaits it ([`PendingDeadLetter::wait`])
    /// before it commits the message's offset. Truncation and a dead letter the producer
    /// refuses are logged and counted in `metrics`.
    pub async fn enqueue(
        &self,
        message: &impl Message,
        reason_code: &str,
        reason: &str,
        metrics: &SourceMetrics,
    ) -> PendingDeadLetter {
        let payload = message.payload().unwrap_or_default();
        let origin = DeadLetterOrigin {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            reason_code: reason_code.to_owned(),
            size: payload.len(),
        };
        let stored = &payload[..payload.len().min(DEAD_LETTER_MAX_PAYLOAD_BYTES)];
        if stored.len() < payload.len() {
            metrics.dead_letter_truncated(&origin, stored.len());
        }
        let partition = origin.partition.to_string();
        let offset = origin.offset.to_string();
        let size = payload.len().to_string();
        let sha256 = hex(&Sha256::digest(payload));
        let mut header_values: Vec<(&str, &[u8])> = vec![
            (headers::SOURCE_TOPIC, origin.topic.as_bytes()),
            (headers::SOURCE_PARTITION, partition.as_bytes()),
            (headers::SOURCE_OFFSET, offset.as_bytes()),
            (headers::REASON_CODE, reason_code.as_bytes()),
            (headers::REASON, reason.as_bytes()),
            (headers::SOURCE_SIZE, size.as_bytes()),
            (headers::SOURCE_SHA256, sha256.as_bytes()),
        ];
        if let Some(key) = message
            .key()
            .filter(|key| key.len() <= DEAD_LETTER_MAX_KEY_BYTES)
        {
            header_values.push((headers::SOURCE_KEY, key));
        }
        let mut record = OutgoingRecord::new(&self.topic, Some(origin.topic.as_bytes()), stored)
            .with_headers(&header_values);
        if let Some(timestamp_ms) = message.timestamp().to_millis() {
            record = record.with_timestamp_ms(timestamp_ms);
        }
        let delivery = match self.sink.enqueue(record).await {
            Ok(delivery) => Some(delivery),
            Err(error) => {
                metrics.dead_letter_failed(&origin, &error);
                None
            }
        };
        PendingDeadLetter {
            delivery,
            origin,
            metrics: metrics.clone(),
        }
    }
}
