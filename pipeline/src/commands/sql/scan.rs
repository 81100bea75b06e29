//! Topics as tables: a bounded scan of each (`opsloop_connectors::kafka::TopicScan`) decoded
//! into Arrow batches. Rows are decoded by the Kafka source's own decoder
//! ([`AvroRecordDecoder`]), in the kind's [`record_schema`], with two columns added:
//! [`PARTITION_COLUMN`] and [`OFFSET_COLUMN`]. A record that does not decode is skipped with a
//! warning naming its partition and offset.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arrow::array::{ArrayRef, Int32Array, Int64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use opsloop_connectors::ConnectorError;
use opsloop_connectors::decode::{
    AvroRecordDecoder, Decoder, RecordContext, RecordRows, RowBuilder, record_schema,
};
use opsloop_connectors::kafka::{KafkaConfig, StartPosition, TopicScan};
use opsloop_schemas::{AvroRecord, Codec};
use rdkafka::Message;
use rdkafka::message::BorrowedMessage;

/// The partition a row was read from (Int32).
pub(super) const PARTITION_COLUMN: &str = "_partition";
/// The offset a row was read from (Int64).
pub(super) const OFFSET_COLUMN: &str = "_offset";
/// Rows per Arrow batch of a table.
const BATCH_ROWS: usize = 8192;

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

/// Reads topics into tables.
#[derive(Debug, Clone)]
pub(super) struct Scanner {
    scan: TopicScan,
    codec: Codec,
}

impl Scanner {
    pub(super) fn new(
        kafka: KafkaConfig,
        codec: Codec,
        start: StartPosition,
        timeout: Duration,
    ) -> Self {
        Scanner {
            scan: TopicScan::new(kafka, start, timeout),
            codec,
        }
    }

    /// Reads every partition of `topic` as records of kind `T`. It blocks: call it off the
    /// async runtime. A topic that does not exist is an empty table, with a warning.
    pub(super) fn scan<T: AvroRecord>(&self, topic: &str) -> anyhow::Result<TableScan> {
        let mut reader = TableReader::<T>::new(self.codec.clone());
        let partitions = self
            .scan
            .scan(topic, |message| {
                reader.read(message).map_err(|error| ConnectorError::Scan {
                    topic: topic.to_owned(),
                    reason: format!("{error:#}"),
                })
            })
            .with_context(|| format!("reading {topic}"))?;
        let Some(partitions) = partitions else {
            tracing::warn!(topic, "the topic does not exist; its table is empty");
            return reader.finish(0);
        };
        reader.finish(partitions)
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
