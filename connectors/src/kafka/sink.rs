//! Writing records to Kafka: an idempotent producer that confirms every delivery.
//!
//! [`KafkaSink::enqueue`] hands a record to librdkafka and returns a [`PendingDelivery`];
//! awaiting it yields the partition and offset once the brokers acknowledged the record
//! (`acks=all`). Callers await deliveries before they commit the upstream offsets the records
//! came from, so a crash never loses a record that was read but not yet written.
//!
//! The producer is idempotent (`enable.idempotence`), so librdkafka's own retries of a batch
//! never duplicate it. Errors that librdkafka gives up on are retried here with exponential
//! backoff when they are transient ([`Retry::WithBackoff`]); anything else, or a transient
//! error that outlasts [`SinkConfig::max_attempts`], is a fatal [`ConnectorError::Delivery`].
//! A full local queue is backpressure: `enqueue` waits for room instead of failing.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

use super::{ClientLog, KafkaConfig};
use crate::error::is_retriable;
use crate::{ConnectorError, Retry};

/// How a [`KafkaSink`] batches and retries.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig {
    /// Attempts per record, the first included, before a transient error becomes fatal.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled for each further one, up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// How long librdkafka keeps retrying one attempt (`message.timeout.ms`).
    pub attempt_timeout: Duration,
    /// How long the producer waits to fill a batch (`linger.ms`).
    pub linger: Duration,
    /// `compression.type`: `none` or `gzip` (the codecs this build links).
    pub compression: String,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(30),
            linger: Duration::from_millis(5),
            compression: "none".to_owned(),
        }
    }
}

impl SinkConfig {
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// One record to write.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingRecord<'a> {
    pub topic: &'a str,
    /// The partitioning key: the entity id on the telemetry and ops topics, so one entity's
    /// records stay in one partition and in order.
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    /// Record timestamp in milliseconds; the broker's append time when `None`.
    pub timestamp_ms: Option<i64>,
    pub headers: &'a [(&'a str, &'a [u8])],
}

impl<'a> OutgoingRecord<'a> {
    pub fn new(topic: &'a str, key: Option<&'a [u8]>, payload: &'a [u8]) -> Self {
        OutgoingRecord {
            topic,
            key,
            payload,
            timestamp_ms: None,
            headers: &[],
        }
    }

    pub fn with_timestamp_ms(self, timestamp_ms: i64) -> Self {
        OutgoingRecord {
            timestamp_ms: Some(timestamp_ms),
            ..self
        }
    }

    pub fn with_headers(self, headers: &'a [(&'a str, &'a [u8])]) -> Self {
        OutgoingRecord { headers, ..self }
    }
}

/// Where a delivered record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// An idempotent Kafka producer; cheap to clone, and clones share the connection.
#[derive(Clone)]
pub struct KafkaSink {
    producer: FutureProducer<ClientLog>,
    config: SinkConfig,
}

impl fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    pub fn new(kafka: &KafkaConfig, config: SinkConfig) -> Result<Self, ConnectorError> {
        let mut client = kafka.client_config();
        let context = ClientLog::attach(kafka, &mut client);
        let producer = client
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                config.attempt_timeout.as_millis().to_string(),
            )
            .set("linger.ms", config.linger.as_millis().to_string())
            .set("compression.type", &config.compression)
            .create_with_context(context)
            .map_err(ConnectorError::Config)?;
        Ok(KafkaSink { producer, config })
    }

    /// Hands `record` to the producer, waiting while its local queue is full, and returns the
    /// delivery to await.
    pub async fn enqueue(
        &self,
        record: OutgoingRecord<'_>,
    ) -> Result<PendingDelivery, ConnectorError> {
        let future = self.enqueue_attempt(&record).await?;
        Ok(PendingDelivery {
            sink: self.clone(),
            future,
            attempt: 1,
        })
    }

    /// Writes `record` and waits for the brokers to acknowledge it.
    pub async fn send(&self, record: OutgoingRecord<'_>) -> Result<Delivered, ConnectorError> {
        self.enqueue(record).await?.wait().await
    }

    /// Waits until every enqueued record is delivered or failed, up to `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), ConnectorError> {
        self.producer.flush(timeout).map_err(ConnectorError::Kafka)
    }

    async fn enqueue_attempt(
        &self,
        record: &OutgoingRecord<'_>,
    ) -> Result<DeliveryFuture, ConnectorError> {
        loop {
            let mut future_record = FutureRecord::to(record.topic).payload(record.payload);
            if let Some(key) = record.key {
                future_record = future_record.key(key);
            }
            if let Some(timestamp_ms) = record.timestamp_ms {
                future_record = future_record.timestamp(timestamp_ms);
            }
            if !record.headers.is_empty() {
                let headers =
                    record
                        .headers
                        .iter()
                        .fold(OwnedHeaders::new(), |headers, &(key, value)| {
                            headers.insert(Header {
                                key,
                                value: Some(value),
                            })
                        });
                future_record = future_record.headers(headers);
            }
            match self.producer.send_result(future_record) {
                Ok(future) => return Ok(future),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    // Backpressure: the brokers are slower than the caller. Give the
                    // producer's delivery thread time to drain the queue.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((error, _)) => {
                    return Err(delivery_error(record.topic, &error, 1));
                }
            }
        }
    }
}

/// A record handed to the producer whose acknowledgement is outstanding.
#[must_use = "a record is only known to be written once its delivery is awaited"]
pub struct PendingDelivery {
    sink: KafkaSink,
    future: DeliveryFuture,
    attempt: u32,
}

impl fmt::Debug for PendingDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingDelivery")
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl PendingDelivery {
    /// Waits for the acknowledgement, re-sending the record with backoff after transient
    /// failures.
    pub async fn wait(mut self) -> Result<Delivered, ConnectorError> {
        loop {
            let outcome = (&mut self.future)
                .await
                .map_err(|_| ConnectorError::Delivery {
                    topic: String::new(),
                    reason: "the producer was dropped before the delivery report arrived"
                        .to_owned(),
                    retry: Retry::Never,
                })?;
            let (error, message) = match outcome {
                Ok(delivery) => {
                    return Ok(Delivered {
                        partition: delivery.partition,
                        offset: delivery.offset,
                    });
                }
                Err(failure) => failure,
            };
            let fatal = delivery_error(message.topic(), &error, self.attempt);
            if fatal.retry() == Retry::Never || self.attempt >= self.sink.config.max_attempts {
                return Err(fatal);
            }
            let backoff = self.sink.config.backoff(self.attempt);
            tracing::warn!(
                topic = message.topic(),
                attempt = self.attempt,
                ?backoff,
                %error,
                "delivery failed; retrying"
            );
            tokio::time::sleep(backoff).await;
            self.future = self.resend(&message).await?;
            self.attempt += 1;
        }
    }

    async fn resend(&self, message: &OwnedMessage) -> Result<DeliveryFuture, ConnectorError> {
        let header_pairs: Vec<(&str, &[u8])> = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|header| (header.key, header.value.unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        let mut record = OutgoingRecord::new(
            message.topic(),
            message.key(),
            message.payload().unwrap_or_default(),
        )
        .with_headers(&header_pairs);
        if let Some(timestamp_ms) = message.timestamp().to_millis() {
            record = record.with_timestamp_ms(timestamp_ms);
        }
        self.sink.enqueue_attempt(&record).await
    }
}

fn delivery_error(topic: &str, error: &KafkaError, attempts: u32) -> ConnectorError {
    let retry = match error.rdkafka_error_code() {
        Some(code) if is_retriable(code) || code == RDKafkaErrorCode::MessageTimedOut => {
            Retry::WithBackoff
        }
        _ => Retry::Never,
    };
    ConnectorError::Delivery {
        topic: topic.to_owned(),
        reason: format!("{error} (after {attempts} attempt(s))"),
        retry,
    }
}

/// Deliveries in flight, at most a fixed number: a producer loop pushes each pending delivery
/// and waits for the oldest once the window is full, so it runs at the brokers' pace with
/// bounded memory.
#[derive(Debug)]
pub struct DeliveryWindow {
    pending: VecDeque<PendingDelivery>,
    capacity: usize,
    delivered: u64,
}

impl DeliveryWindow {
    pub fn new(capacity: usize) -> Self {
        DeliveryWindow {
            pending: VecDeque::with_capacity(capacity.max(1)),
            capacity: capacity.max(1),
            delivered: 0,
        }
    }

    /// Adds `delivery`, first waiting for the oldest one if the window is full.
    pub async fn push(&mut self, delivery: PendingDelivery) -> Result<(), ConnectorError> {
        if self.pending.len() >= self.capacity {
            self.wait_oldest().await?;
        }
        self.pending.push_back(delivery);
        Ok(())
    }

    /// Waits for every delivery in the window, so it is empty after, even when one failed;
    /// returns the number delivered since creation, or the first failure.
    pub async fn drain(&mut self) -> Result<u64, ConnectorError> {
        let mut failed = None;
        while !self.pending.is_empty() {
            if let Err(error) = self.wait_oldest().await {
                failed.get_or_insert(error);
            }
        }
        failed.map_or(Ok(self.delivered), Err)
    }

    /// Records acknowledged so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    async fn wait_oldest(&mut self) -> Result<(), ConnectorError> {
        if let Some(oldest) = self.pending.pop_front() {
            oldest.wait().await?;
            self.delivered += 1;
        }
        Ok(())
    }
}
