//! The dead-letter topic: where records that cannot be decoded go, whole, with the reason.
//!
//! A dead letter keeps the original payload bytes untouched, so it can be replayed once the
//! producer or decoder is fixed, and carries where it came from, its original key and why it
//! failed in headers ([`headers`]). It is keyed by source topic, as the topic contract says,
//! and its timestamp is the original record's.

use rdkafka::Message;

use super::sink::{KafkaSink, OutgoingRecord, PendingDelivery};
use crate::ConnectorError;

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
    /// The original record key, when it had one (the dead letter is keyed by source topic).
    pub const SOURCE_KEY: &str = "opsloop.dlq.source_key";
}

/// Reason code of a record without a payload (a tombstone on a telemetry topic).
pub const EMPTY_PAYLOAD: &str = "empty_payload";

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

    /// Enqueues `message` as a dead letter; the caller awaits the delivery before it commits
    /// the message's offset.
    pub async fn enqueue(
        &self,
        message: &impl Message,
        reason_code: &str,
        reason: &str,
    ) -> Result<PendingDelivery, ConnectorError> {
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let mut header_values: Vec<(&str, &[u8])> = vec![
            (headers::SOURCE_TOPIC, message.topic().as_bytes()),
            (headers::SOURCE_PARTITION, partition.as_bytes()),
            (headers::SOURCE_OFFSET, offset.as_bytes()),
            (headers::REASON_CODE, reason_code.as_bytes()),
            (headers::REASON, reason.as_bytes()),
        ];
        if let Some(key) = message.key() {
            header_values.push((headers::SOURCE_KEY, key));
        }
        let mut record = OutgoingRecord::new(
            &self.topic,
            Some(message.topic().as_bytes()),
            message.payload().unwrap_or_default(),
        )
        .with_headers(&header_values);
        if let Some(timestamp_ms) = message.timestamp().to_millis() {
            record = record.with_timestamp_ms(timestamp_ms);
        }
        self.sink.enqueue(record).await
    }
}
