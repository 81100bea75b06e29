//! Bounded scans of a topic: every partition from a start position up to the high watermark
//! read when the scan began, decoded into Arrow batches.
//!
//! The scan assigns the partitions itself (no consumer group, nothing committed), so it never
//! disturbs the pipeline's groups, and records published after it began are not read. Rows are
//! decoded by the Kafka source's own decoder ([`AvroRecordDecoder`]), in the kind's
//! [`record_schema`], with two columns added: [`PARTITION_COLUMN`] and [`OFFSET_COLUMN`]. A
//! record that does not decode is skipped with a warning naming its partition and offset.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arrow::array::{ArrayRef, Int32Array, Int64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use opsloop_connectors::decode::{
    AvroRecordDecoder, Decoder, RecordContext, RecordRows, RowBuilder, parse_rfc3339_us,
    record_schema,
};
use opsloop_connectors::kafka::KafkaConfig;
use opsloop_schemas::{AvroRecord, Codec};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};

/// The partition a row was read from (Int32).
pub(super) const PARTITION_COLUMN: &str = "_partition";
/// The offset a row was read from (Int64).
pub(super) const OFFSET_COLUMN: &str = "_offset";
/// Rows per Arrow batch of a table.
const BATCH_ROWS: usize = 8192;
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Where the scan of every partition starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartPosition {
    /// The oldest retained record.
    Earliest,
    /// The last N records of every partition.
    Latest(i64),
    /// The first record whose timestamp is at or after this time (µs since the Unix epoch).
    Time(i64),
}

impl FromStr for StartPosition {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "earliest" {
            return Ok(StartPosition::Earliest);
        }
        if let Some(count) = text.strip_prefix("latest-") {
            return count
                .parse::<u32>()
                .map(|count| StartPosition::Latest(i64::from(count)))
                .map_err(|_| format!("{text:?}: the N of latest-N is not a record count"));
        }
        parse_rfc3339_us(text)
            .map(StartPosition::Time)
            .ok_or_else(|| {
                format!(
                    "{text:?} is not earliest, latest-N or an RFC 3339 time (2024-05-01T12:00:00Z)"
                )
            })
    }
}

/// The rows of one table, read from its topic.
#[derive(Debug)]
pub(super) struct TableScan {
    pub(super) schema: SchemaRef,
    pub(super) batches: Vec<RecordBatch>,
    /// Records decoded into rows.
    pub(super) rows: usize,
    /// Records skipped because they did not decode.
    pub(super) skipped: usize,
    /// Partitions of the topic; 0 when the topic does not exist.
    pub(super) partitions: usize,
}

/// The schema of record kind `T`'s table: its [`record_schema`], then the partition and the
/// offset each row was read from.
pub(super) fn table_schema<T: AvroRecord>() -> SchemaRef {
    let mut fields: Vec<Field> = record_schema::<T>()
        .fields()
        .iter()
        .map(|field| field.as_ref().clone())
        .collect();
    fields.push(Field::new(PARTITION_COLUMN, DataType::Int32, false));
    fields.push(Field::new(OFFSET_COLUMN, DataType::Int64, false));
    Arc::new(Schema::new(fields))
}

/// Reads topics from a start position to the high watermarks they have when asked.
#[derive(Debug, Clone)]
pub(super) struct Scanner {
    kafka: KafkaConfig,
    codec: Codec,
    start: StartPosition,
    /// Wait for a metadata or offset request, and for a partition that stops delivering.
    timeout: Duration,
}

impl Scanner {
    pub(super) fn new(
        kafka: KafkaConfig,
        codec: Codec,
        start: StartPosition,
        timeout: Duration,
    ) -> Self {
        Scanner {
            kafka,
            codec,
            start,
            timeout,
        }
    }

    /// Reads every partition of `topic` as records of kind `T`. It blocks: call it off the
    /// async runtime. A topic that does not exist is an empty table, with a warning.
    pub(super) fn scan<T: AvroRecord>(&self, topic: &str) -> anyhow::Result<TableScan> {
        let consumer = self.consumer()?;
        let mut reader = TableReader::<T>::new(self.codec.clone());
        let Some(partitions) = self.partitions(&consumer, topic)? else {
            tracing::warn!(topic, "the topic does not exist; its table is empty");
            return reader.finish(0);
        };
        let mut assignment = TopicPartitionList::new();
        let mut ends: HashMap<i32, i64> = HashMap::new();
        for (partition, start, end) in self.bounds(&consumer, topic, &partitions)? {
            tracing::debug!(topic, partition, start, end, "partition bounds");
            if start < end {
                assignment
                    .add_partition_offset(topic, partition, Offset::Offset(start))
                    .with_context(|| format!("assigning {topic} partition {partition}"))?;
                ends.insert(partition, end);
            }
        }
        if ends.is_empty() {
            return reader.finish(partitions.len());
        }
        consumer
            .assign(&assignment)
            .with_context(|| format!("assigning the partitions of {topic}"))?;
        let mut last_record = Instant::now();
        while !ends.is_empty() {
            let message = match consumer.poll(POLL_INTERVAL) {
                None => {
                    if last_record.elapsed() > self.timeout {
                        bail!(
                            "reading {topic}: no record for {}s while partitions {:?} are short \
                             of their end offsets",
                            self.timeout.as_secs(),
                            ends
                        );
                    }
                    continue;
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    ends.remove(&partition);
                    continue;
                }
                Some(Err(error)) => {
                    return Err(error).with_context(|| format!("reading {topic}"));
                }
                Some(Ok(message)) => message,
            };
            last_record = Instant::now();
            let partition = message.partition();
            let Some(&end) = ends.get(&partition) else {
                continue;
            };
            let offset = message.offset();
            if offset >= end {
                ends.remove(&partition);
                continue;
            }
            reader.read(&message)?;
            if offset + 1 >= end {
                ends.remove(&partition);
            }
        }
        reader.finish(partitions.len())
    }

    fn consumer(&self) -> anyhow::Result<BaseConsumer> {
        // librdkafka wants a group id even to assign partitions by hand; the group is never
        // joined (nothing subscribes) and nothing is committed to it.
        self.kafka
            .client_config()
            .set("group.id", "opsloop-sql")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("allow.auto.create.topics", "false")
            .create()
            .with_context(|| format!("creating a Kafka consumer for {}", self.kafka.brokers))
    }

    /// The partition ids of `topic`, `None` when it does not exist.
    fn partitions(&self, consumer: &BaseConsumer, topic: &str) -> anyhow::Result<Option<Vec<i32>>> {
        let metadata = consumer
            .fetch_metadata(Some(topic), self.timeout)
            .with_context(|| {
                format!(
                    "fetching the metadata of {topic} from {}",
                    self.kafka.brokers
                )
            })?;
        let Some(entry) = metadata.topics().iter().find(|entry| entry.name() == topic) else {
            return Ok(None);
        };
        if let Some(error) = entry.error() {
            let code = RDKafkaErrorCode::from(error);
            if code == RDKafkaErrorCode::UnknownTopicOrPartition {
                return Ok(None);
            }
            bail!("the broker answered the metadata request for {topic} with: {code}");
        }
        let partitions: Vec<i32> = entry.partitions().iter().map(|p| p.id()).collect();
        Ok((!partitions.is_empty()).then_some(partitions))
    }

    /// Per partition: the first offset to read and the high watermark, the end (exclusive).
    fn bounds(
        &self,
        consumer: &BaseConsumer,
        topic: &str,
        partitions: &[i32],
    ) -> anyhow::Result<Vec<(i32, i64, i64)>> {
        let mut watermarks = Vec::with_capacity(partitions.len());
        for &partition in partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, self.timeout)
                .with_context(|| format!("fetching the watermarks of {topic}/{partition}"))?;
            watermarks.push((partition, low, high));
        }
        let bounds = match self.start {
            StartPosition::Earliest => watermarks,
            StartPosition::Latest(count) => watermarks
                .into_iter()
                .map(|(partition, low, high)| (partition, (high - count).max(low), high))
                .collect(),
            StartPosition::Time(time_us) => {
                // Record timestamps are milliseconds: the first whole millisecond at or after.
                let time_ms = time_us.div_euclid(1000) + i64::from(time_us.rem_euclid(1000) > 0);
                let mut query = TopicPartitionList::new();
                for &(partition, ..) in &watermarks {
                    query
                        .add_partition_offset(topic, partition, Offset::Offset(time_ms))
                        .with_context(|| format!("asking for {topic}/{partition} by time"))?;
                }
                let found = consumer
                    .offsets_for_times(query, self.timeout)
                    .with_context(|| format!("looking up the offsets of {topic} by time"))?;
                watermarks
                    .into_iter()
                    .map(|(partition, low, high)| {
                        // No record at or after the time: the partition is read from its end.
                        let start = match found.find_partition(topic, partition) {
                            Some(entry) => {
                                entry.error().with_context(|| {
                                    format!("looking up {topic}/{partition} by time")
                                })?;
                                match entry.offset() {
                                    Offset::Offset(offset) => offset.clamp(low, high),
                                    _ => high,
                                }
                            }
                            None => high,
                        };
                        Ok((partition, start, high))
                    })
                    .collect::<anyhow::Result<_>>()?
            }
        };
        Ok(bounds)
    }
}

/// Decodes the records of one topic into batches of its table.
struct TableReader<T: AvroRecord> {
    schema: SchemaRef,
    decoder: AvroRecordDecoder<T>,
    rows: RecordRows<T>,
    partitions: Vec<i32>,
    offsets: Vec<i64>,
    batches: Vec<RecordBatch>,
    decoded: usize,
    skipped: usize,
}

impl<T: AvroRecord> TableReader<T> {
    fn new(codec: Codec) -> Self {
        let decoder = AvroRecordDecoder::<T>::new(codec);
        TableReader {
            schema: table_schema::<T>(),
            rows: decoder.new_rows(),
            decoder,
            partitions: Vec::new(),
            offsets: Vec::new(),
            batches: Vec::new(),
            decoded: 0,
            skipped: 0,
        }
    }

    fn read(&mut self, message: &BorrowedMessage<'_>) -> anyhow::Result<()> {
        let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
        let Some(payload) = message.payload() else {
            tracing::warn!(topic, partition, offset, "skipping a record with no value");
            self.skipped += 1;
            return Ok(());
        };
        let timestamp_us = message.timestamp().to_millis().unwrap_or(0) * 1000;
        let context = RecordContext::new(topic, timestamp_us);
        match self.decoder.decode(payload, &context, &mut self.rows) {
            Ok(_) => {
                self.partitions.push(partition);
                self.offsets.push(offset);
                self.decoded += 1;
                if self.rows.len() >= BATCH_ROWS {
                    self.flush()?;
                }
            }
            Err(error) => {
                tracing::warn!(
                    topic,
                    partition,
                    offset,
                    %error,
                    "skipping a record that does not decode as {}",
                    T::KIND.name()
                );
                self.skipped += 1;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let decoded = self
            .rows
            .finish()
            .with_context(|| format!("building the {} rows", T::KIND.name()))?;
        let mut columns: Vec<ArrayRef> = decoded.columns().to_vec();
        columns.push(Arc::new(Int32Array::from(std::mem::take(
            &mut self.partitions,
        ))));
        columns.push(Arc::new(Int64Array::from(std::mem::take(
            &mut self.offsets,
        ))));
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), columns)
            .with_context(|| format!("adding the Kafka columns to the {} rows", T::KIND.name()))?;
        self.batches.push(batch);
        Ok(())
    }

    fn finish(mut self, partitions: usize) -> anyhow::Result<TableScan> {
        self.flush()?;
        Ok(TableScan {
            schema: self.schema,
            batches: self.batches,
            rows: self.decoded,
            skipped: self.skipped,
            partitions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_positions_parse() {
        assert_eq!("earliest".parse(), Ok(StartPosition::Earliest));
        assert_eq!("latest-25".parse(), Ok(StartPosition::Latest(25)));
        assert_eq!(
            "2024-05-01T00:00:01Z".parse(),
            Ok(StartPosition::Time(1_714_521_601_000_000))
        );
        assert!("latest".parse::<StartPosition>().is_err());
        assert!("latest--1".parse::<StartPosition>().is_err());
        assert!("yesterday".parse::<StartPosition>().is_err());
    }

    #[test]
    fn a_table_is_its_record_schema_plus_partition_and_offset() {
        let schema = table_schema::<opsloop_schemas::ops::ActionOutcome>();
        let record = record_schema::<opsloop_schemas::ops::ActionOutcome>();
        assert_eq!(schema.fields().len(), record.fields().len() + 2);
        assert_eq!(
            schema
                .field_with_name(OFFSET_COLUMN)
                .ok()
                .map(|f| f.data_type()),
            Some(&DataType::Int64)
        );
        assert_eq!(
            schema.field_with_name("step").ok().map(|f| f.data_type()),
            Some(&DataType::Utf8)
        );
    }
}
