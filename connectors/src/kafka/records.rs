//! [`RecordConsumer`]: opsloop's own records (alerts, incidents, remediation events, approvals,
//! action outcomes) read from Kafka as typed values. A record that does not decode goes
//! to the dead-letter topic with its reason and `opsloop_dead_letters_total` rises, and reading
//! goes on; so does a record its reader refuses ([`RecordConsumer::dead_letter`]).
//!
//! Where reading starts ([`RecordStart`]): the group's committed offsets (a consumer group
//! sharing the partitions, offsets committed by the reader), or every partition from some time
//! back, the newest records with none (no group: each instance reads everything, e.g. every
//! actuator reads the incidents' verdicts, every `opsloop run` the action outcomes). A reader
//! that must not write (a command-line lookup) has no dead-letter writer: what does not decode
//! is logged and skipped.

use std::time::Duration;

use opsloop_schemas::{AvroRecord, Codec};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::config::KafkaConfig;
use super::dead_letter::{DeadLetterWriter, EMPTY_PAYLOAD};
use super::health::ClientLog;
use super::lookup::{offsets_at, partition_ids};
use crate::ConnectorError;
use crate::metrics::SourceMetrics;

/// Where a [`RecordConsumer`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordStart {
    /// A consumer group: the group's committed offsets, else the earliest record; the reader
    /// commits ([`RecordConsumer::commit`]).
    Committed,
    /// Every partition, from records this long before now; no group.
    Since(Duration),
}

/// A [`RecordConsumer`]'s settings.
#[derive(Debug, Clone)]
pub struct RecordConsumerConfig {
    pub group_id: String,
    pub topics: Vec<String>,
    pub start: RecordStart,
}

/// One record as read: where it is, and its bytes.
#[derive(Debug, Clone)]
pub struct RecordMessage {
    message: OwnedMessage,
}

impl RecordMessage {
    pub fn topic(&self) -> &str {
        self.message.topic()
    }

    pub fn partition(&self) -> i32 {
        self.message.partition()
    }

    pub fn offset(&self) -> i64 {
        self.message.offset()
    }

    pub fn payload(&self) -> &[u8] {
        self.message.payload().unwrap_or_default()
    }
}

/// Reads opsloop's records; see the module docs.
pub struct RecordConsumer {
    consumer: StreamConsumer<ClientLog>,
    codec: Codec,
    dead_letters: Option<DeadLetterWriter>,
    metrics: SourceMetrics,
    config: RecordConsumerConfig,
    /// For [`RecordStart::Since`]: whether every partition has been assigned yet.
    assigned: bool,
}

impl std::fmt::Debug for RecordConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordConsumer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

impl RecordConsumer {
    /// A consumer of `config.topics`, decoding with `codec`.
    pub fn start(
        kafka: &KafkaConfig,
        config: RecordConsumerConfig,
        codec: Codec,
        dead_letters: Option<DeadLetterWriter>,
        metrics: SourceMetrics,
    ) -> Result<Self, ConnectorError> {
        let reset = match config.start {
            RecordStart::Committed => "earliest",
            RecordStart::Since(_) => "latest",
        };
        let mut client = kafka.client_config();
        let context = ClientLog::attach(kafka, &mut client);
        let consumer: StreamConsumer<ClientLog> = client
            .set("group.id", &config.group_id)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", reset)
            .create_with_context(context)
            .map_err(ConnectorError::Config)?;
        let mut consumer = RecordConsumer {
            consumer,
            codec,
            dead_letters,
            metrics,
            config,
            assigned: false,
        };
        match consumer.config.start {
            RecordStart::Committed => {
                let topics: Vec<&str> = consumer.config.topics.iter().map(String::as_str).collect();
                consumer
                    .consumer
                    .subscribe(&topics)
                    .map_err(ConnectorError::Kafka)?;
                consumer.assigned = true;
            }
            RecordStart::Since(_) => consumer.assign_since_off_the_reactor(),
        }
        Ok(consumer)
    }

    /// [`assign_since`](Self::assign_since) without stalling the async threads: its metadata
    /// and offset lookups block for up to seconds each.
    fn assign_since_off_the_reactor(&mut self) {
        let multi_thread = tokio::runtime::Handle::try_current().is_ok_and(|handle| {
            handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
        });
        if multi_thread {
            tokio::task::block_in_place(|| self.assign_since());
        } else {
            self.assign_since();
        }
    }

    /// Assigns every partition of the topics from the start time; leaves it for the next read
    /// when a topic is not there yet. It blocks: see `assign_since_off_the_reactor`.
    fn assign_since(&mut self) {
        let RecordStart::Since(back) = self.config.start else {
            return;
        };
        let start_us = std::time::SystemTime::now()
            .checked_sub(back)
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        let mut start = TopicPartitionList::new();
        for topic in &self.config.topics {
            let found = partition_ids(&self.consumer, topic, METADATA_TIMEOUT).and_then(|ids| {
                let ids = ids.ok_or_else(|| "it does not exist yet".to_owned())?;
                offsets_at(&self.consumer, topic, &ids, start_us, METADATA_TIMEOUT)
            });
            let offsets = match found {
                Ok(offsets) => offsets,
                Err(reason) => {
                    tracing::debug!(%topic, %reason, "not assigned yet");
                    return;
                }
            };
            for (partition, offset) in offsets {
                // A partition with nothing that recent starts at its end.
                let offset = offset.map_or(Offset::End, Offset::Offset);
                if start
                    .add_partition_offset(topic, partition, offset)
                    .is_err()
                {
                    return;
                }
            }
        }
        match self.consumer.assign(&start) {
            Ok(()) => self.assigned = true,
            Err(error) => tracing::debug!(%error, "assigning the partitions failed"),
        }
    }

    /// The next record; a transient broker error is retried quietly.
    pub async fn next(&mut self) -> RecordMessage {
        loop {
            if !self.assigned {
                self.assign_since_off_the_reactor();
                if !self.assigned {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
            match self.consumer.recv().await {
                Ok(message) => {
                    self.metrics.records.inc();
                    self.metrics.bytes.inc_by(message.payload_len() as u64);
                    return RecordMessage {
                        message: message.detach(),
                    };
                }
                Err(error) => {
                    if !self.consumer.context().broker_error(&error, "") {
                        tracing::debug!(%error, topics = ?self.config.topics, "reading");
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// The record `message` holds; one that does not decode is dead-lettered with the reason
    /// (and `None` returned).
    pub async fn decode<T: AvroRecord>(&self, message: &RecordMessage) -> Option<T> {
        if message.message.payload().is_none() {
            self.dead_letter(message, EMPTY_PAYLOAD, "the record has no payload")
                .await;
            return None;
        }
        match self.codec.decode::<T>(message.payload()) {
            Ok(record) => Some(record),
            Err(error) => {
                self.dead_letter(message, error.reason_code(), &error.to_string())
                    .await;
                None
            }
        }
    }

    /// Sends `message` to the dead-letter topic with `reason`, and counts it; a failed write
    /// is logged and counted too (reading goes on either way).
    pub async fn dead_letter(&self, message: &RecordMessage, reason_code: &str, reason: &str) {
        tracing::warn!(
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            reason_code,
            reason,
            "record dead-lettered"
        );
        self.metrics.dead_letter(reason_code);
        let Some(dead_letters) = &self.dead_letters else {
            return;
        };
        dead_letters
            .enqueue(&message.message, reason_code, reason, &self.metrics)
            .await
            .wait()
            .await;
    }

    /// Commits, per (topic, partition), the next offset to read.
    pub fn commit(&self, points: &[(String, i32, i64)]) -> Result<(), ConnectorError> {
        let mut list = TopicPartitionList::new();
        for (topic, partition, offset) in points {
            list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .map_err(ConnectorError::Kafka)?;
        }
        if list.count() == 0 {
            return Ok(());
        }
        self.consumer
            .commit(&list, CommitMode::Async)
            .map_err(ConnectorError::Kafka)
    }

    /// The partitions this consumer holds now.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.consumer
            .assignment()
            .map(|list| {
                list.elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect()
            })
            .unwrap_or_default()
    }
}
