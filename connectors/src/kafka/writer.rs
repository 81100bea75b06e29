//! Publishing typed records: encode, key by the contract's key, send, and keep a bounded
//! window of deliveries in flight. What `opsloop publish`, `collect` and `generate` share.

use opsloop_schemas::{AvroRecord, Codec};

use super::sink::{DeliveryWindow, KafkaSink, OutgoingRecord};
use crate::ConnectorError;

/// Writes records of any kind with one codec, at most `in_flight` unacknowledged at a time.
#[derive(Debug)]
pub struct RecordWriter {
    sink: KafkaSink,
    codec: Codec,
    window: DeliveryWindow,
    records: u64,
    bytes: u64,
}

impl RecordWriter {
    pub fn new(sink: KafkaSink, codec: Codec, in_flight: usize) -> Self {
        RecordWriter {
            sink,
            codec,
            window: DeliveryWindow::new(in_flight),
            records: 0,
            bytes: 0,
        }
    }

    /// Encodes `record` and sends it to `topic`, keyed by its
    /// [`partition_key`](AvroRecord::partition_key).
    pub async fn send<T: AvroRecord>(
        &mut self,
        topic: &str,
        record: &T,
    ) -> Result<(), ConnectorError> {
        let payload = self
            .codec
            .encode(record)
            .map_err(|error| ConnectorError::Encode {
                kind: T::KIND.name(),
                reason: error.to_string(),
            })?;
        self.send_bytes(topic, Some(record.partition_key().as_bytes()), &payload)
            .await
    }

    /// Sends an already encoded payload.
    pub async fn send_bytes(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<(), ConnectorError> {
        let pending = self
            .sink
            .enqueue(OutgoingRecord::new(topic, key, payload))
            .await?;
        self.window.push(pending).await?;
        self.records += 1;
        self.bytes += payload.len() as u64;
        Ok(())
    }

    /// Records sent so far (acknowledged or not) and their payload bytes.
    pub fn sent(&self) -> (u64, u64) {
        (self.records, self.bytes)
    }

    /// Waits for every outstanding delivery; returns how many records were acknowledged since
    /// the writer was created, or the first delivery that failed. The writer goes on either way.
    pub async fn finish(&mut self) -> Result<u64, ConnectorError> {
        self.window.drain().await
    }
}
