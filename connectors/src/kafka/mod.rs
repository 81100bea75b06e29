//! Kafka clients: configuration, topic administration, the consumer-group source of telemetry
//! (with its event-time sanity check), the consumer of opsloop's own records, the idempotent
//! sink, the typed record writer and the dead-letter writer; the context of every client
//! (`health.rs`), which reports unreachable brokers once instead of at every retry.

mod admin;
mod config;
mod dead_letter;
mod event_time;
mod health;
mod lookup;
mod records;
mod scan;
mod sink;
mod source;
mod writer;

pub use admin::{TopicCreated, TopicRequest, create_topics};
pub use config::KafkaConfig;
pub(crate) use dead_letter::DeadLetterOrigin;
pub use dead_letter::{
    DEAD_LETTER_MAX_KEY_BYTES, DEAD_LETTER_MAX_PAYLOAD_BYTES, DeadLetterWriter, EMPTY_PAYLOAD,
    PendingDeadLetter, headers as dead_letter_headers,
};
pub use event_time::{DEFAULT_MAX_FUTURE_SKEW, FUTURE_TIMESTAMP};
pub(crate) use health::{ClientLog, register_broker_metrics};
pub use records::{RecordConsumer, RecordConsumerConfig, RecordMessage, RecordStart};
pub use scan::{StartPosition, TopicScan};
pub use sink::{Delivered, DeliveryWindow, KafkaSink, OutgoingRecord, PendingDelivery, SinkConfig};
pub use source::{
    BatchOffsets, KafkaSource, OffsetCommitter, PartitionProgress, SourceBatch, SourceConfig,
    StartOffset,
};
pub use writer::RecordWriter;
