//! Kafka clients: configuration, topic administration, the consumer-group source of telemetry,
//! the consumer of opsloop's own records, the idempotent sink, the typed record writer and the
//! dead-letter writer.

mod admin;
mod config;
mod dead_letter;
mod lookup;
mod records;
mod scan;
mod sink;
mod source;
mod writer;

pub use admin::{TopicCreated, TopicRequest, create_topics};
pub use config::KafkaConfig;
pub use dead_letter::{DeadLetterWriter, EMPTY_PAYLOAD, headers as dead_letter_headers};
pub use records::{RecordConsumer, RecordConsumerConfig, RecordMessage, RecordStart};
pub use scan::{StartPosition, TopicScan};
pub use sink::{Delivered, DeliveryWindow, KafkaSink, OutgoingRecord, PendingDelivery, SinkConfig};
pub use source::{
    BatchOffsets, KafkaSource, OffsetCommitter, PartitionProgress, SourceBatch, SourceConfig,
    StartOffset,
};
pub use writer::RecordWriter;
