//! Reading topics as a consumer group, decoded into Arrow micro-batches.
//!
//! A [`KafkaSource`] joins a consumer group, decodes every record with a [`Decoder`] and hands
//! [`SourceBatch`]es to the pipeline through a bounded channel. A batch is cut when it holds
//! [`SourceConfig::max_batch_rows`] rows or [`SourceConfig::max_batch_bytes`] bytes, or
//! [`SourceConfig::max_batch_delay`] after its first record, whichever comes first.
//!
//! Delivery is at least once. Offsets are never committed automatically: each batch carries
//! the offsets it covers, and the pipeline commits them through the [`OffsetCommitter`] only
//! once the batch's effects are safe (written downstream, or checkpointed). Records that do
//! not decode, or are larger than [`SourceConfig::max_record_bytes`], go to the dead-letter
//! topic, and a batch is handed over only after its dead letters are acknowledged, so
//! committing a batch never loses one. Poison input never stops the source: a dead letter
//! that cannot be written is logged and counted and the record skipped
//! ([`PendingDeadLetter::wait`]).
//!
//! Event time is checked against the reader's clock: a record whose rows (or, for rows without
//! an event time the decoder knows, whose Kafka timestamp) lie more than
//! [`SourceConfig::max_future_skew`] ahead is dead-lettered as
//! [`FUTURE_TIMESTAMP`](super::FUTURE_TIMESTAMP), its rows are dropped from the batch, and its
//! event time is left out of [`PartitionProgress::max_event_time_us`], so it never moves the
//! watermark ([`event_time`](super::event_time)).
//!
//! Memory is bounded: at most [`SourceConfig::max_in_flight_batches`] batches wait in the
//! channel; when the pipeline falls behind, the source stops polling (librdkafka's prefetch
//! queue is capped by `queued.max.messages.kbytes`), which is the backpressure.
//!
//! Rebalances are logged and counted. Records of a partition revoked mid-batch are still
//! handed over; committing them may fail (the partition moved) and they are then read again
//! by the new owner, which at-least-once allows.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::BooleanArray;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::BorrowedMessage;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::dead_letter::{DeadLetterWriter, EMPTY_PAYLOAD, PendingDeadLetter};
use super::event_time::{DEFAULT_MAX_FUTURE_SKEW, FUTURE_TIMESTAMP, check_future_skew};
use super::{ClientLog, KafkaConfig};
use crate::ConnectorError;
use crate::decode::{DEFAULT_MAX_RECORD_BYTES, Decoder, RecordContext, RowBuilder};
use crate::metrics::SourceMetrics;

/// Where a consumer group with no committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartOffset {
    /// The oldest retained record: nothing published before start-up is missed.
    #[default]
    Earliest,
    /// Only records published after the group joined.
    Latest,
}

/// What a source reads and how it batches.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    /// A name for logs and metric labels, e.g. `metrics`.
    pub name: String,
    pub topics: Vec<String>,
    /// The consumer group; instances with the same group share the partitions.
    pub group_id: String,
    pub start: StartOffset,
    pub max_batch_rows: usize,
    pub max_batch_bytes: usize,
    pub max_batch_delay: Duration,
    /// Batches handed over but not yet received by the pipeline.
    pub max_in_flight_batches: usize,
    /// Cap on librdkafka's prefetch queue per partition (`queued.max.messages.kbytes`).
    pub max_prefetch_kbytes: usize,
    pub session_timeout: Duration,
    /// Largest record payload the decoder accepts; a larger record is dead-lettered
    /// (`too_large`). [`DEFAULT_MAX_RECORD_BYTES`] by default. The source hands it to the
    /// decoder it is started with ([`SourceFormat::start`](crate::registry::SourceFormat::start)).
    pub max_record_bytes: usize,
    /// How far ahead of the reader's clock a record's event time may be; a record further
    /// ahead is dead-lettered (`future_timestamp`) and never moves the watermark. `None`
    /// turns the check off. [`DEFAULT_MAX_FUTURE_SKEW`] by default.
    pub max_future_skew: Option<Duration>,
    /// Per topic and partition, the first offset not covered by the pipeline's last
    /// checkpoint. Records below it were processed before a restart whose offsets may not
    /// have been committed yet; they are skipped instead of processed twice.
    pub resume_from: HashMap<String, HashMap<i32, i64>>,
}

impl SourceConfig {
    pub fn new(name: impl Into<String>, topics: Vec<String>, group_id: impl Into<String>) -> Self {
        SourceConfig {
            name: name.into(),
            topics,
            group_id: group_id.into(),
            start: StartOffset::Earliest,
            max_batch_rows: 8192,
            max_batch_bytes: 16 * 1024 * 1024,
            max_batch_delay: Duration::from_millis(100),
            max_in_flight_batches: 4,
            max_prefetch_kbytes: 16 * 1024,
            session_timeout: Duration::from_secs(10),
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            max_future_skew: Some(DEFAULT_MAX_FUTURE_SKEW),
            resume_from: HashMap::new(),
        }
    }
}

/// How far one partition is covered by a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionProgress {
    pub topic: Arc<str>,
    pub partition: i32,
    /// The offset after the last record of the batch: what to commit.
    pub next_offset: i64,
    /// Records of this partition in the batch, dead letters included.
    pub records: usize,
    /// Largest event time (µs) of the partition's rows in the batch, for per-partition
    /// watermarks: the rows' own time where the decoder knows it, else the record timestamp.
    /// `None` when every record of the partition in the batch was stamped too far ahead
    /// ([`SourceConfig::max_future_skew`]): those never move the watermark.
    pub max_event_time_us: Option<i64>,
}

/// Offsets covered by one or more batches, per partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOffsets {
    partitions: BTreeMap<(Arc<str>, i32), PartitionProgress>,
}

impl BatchOffsets {
    fn record(&mut self, topic: &str, partition: i32, offset: i64, event_time_us: Option<i64>) {
        let entry = match self.partitions.get_mut(&(Arc::from(topic), partition)) {
            Some(entry) => entry,
            None => self
                .partitions
                .entry((Arc::from(topic), partition))
                .or_insert(PartitionProgress {
                    topic: Arc::from(topic),
                    partition,
                    next_offset: offset + 1,
                    records: 0,
                    max_event_time_us: None,
                }),
        };
        entry.next_offset = entry.next_offset.max(offset + 1);
        entry.records += 1;
        entry.max_event_time_us = entry.max_event_time_us.max(event_time_us);
    }

    /// Folds `later` in: the furthest offset per partition wins.
    pub fn merge(&mut self, later: &BatchOffsets) {
        for (key, progress) in &later.partitions {
            let entry = self
                .partitions
                .entry(key.clone())
                .or_insert_with(|| PartitionProgress {
                    records: 0,
                    ..progress.clone()
                });
            entry.next_offset = entry.next_offset.max(progress.next_offset);
            entry.records += progress.records;
            entry.max_event_time_us = entry.max_event_time_us.max(progress.max_event_time_us);
        }
    }

    pub fn partitions(&self) -> impl Iterator<Item = &PartitionProgress> {
        self.partitions.values()
    }

    pub fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }

    fn to_topic_partition_list(&self) -> Result<TopicPartitionList, ConnectorError> {
        let mut list = TopicPartitionList::with_capacity(self.partitions.len());
        for progress in self.partitions.values() {
            list.add_partition_offset(
                &progress.topic,
                progress.partition,
                Offset::Offset(progress.next_offset),
            )
            .map_err(ConnectorError::Kafka)?;
        }
        Ok(list)
    }
}

/// One micro-batch of decoded rows and the offsets it covers.
#[derive(Debug, Clone)]
pub struct SourceBatch {
    pub rows: RecordBatch,
    /// Kafka records read, dead letters included.
    pub records: usize,
    pub dead_letters: usize,
    pub offsets: BatchOffsets,
}

/// A running source: receive batches with [`next_batch`](Self::next_batch), commit them
/// with [`committer`](Self::committer), stop with [`stop`](Self::stop).
#[derive(Debug)]
pub struct KafkaSource {
    batches: mpsc::Receiver<Result<SourceBatch, ConnectorError>>,
    committer: OffsetCommitter,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl KafkaSource {
    /// Joins the group and starts reading in a task of the current runtime. Undecodable records
    /// go to `dead_letters`.
    pub fn start<D>(
        kafka: &KafkaConfig,
        config: SourceConfig,
        decoder: D,
        dead_letters: DeadLetterWriter,
        metrics: SourceMetrics,
    ) -> Result<KafkaSource, ConnectorError>
    where
        D: Decoder + 'static,
    {
        let mut client = kafka.client_config();
        let context = GroupContext {
            source: config.name.clone(),
            metrics: metrics.clone(),
            log: ClientLog::attach(kafka, &mut client),
        };
        let consumer: StreamConsumer<GroupContext> = client
            .set("group.id", &config.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.offset.reset",
                match config.start {
                    StartOffset::Earliest => "earliest",
                    StartOffset::Latest => "latest",
                },
            )
            .set(
                "session.timeout.ms",
                config.session_timeout.as_millis().to_string(),
            )
            .set(
                "queued.max.messages.kbytes",
                config.max_prefetch_kbytes.to_string(),
            )
            .set("partition.assignment.strategy", "cooperative-sticky")
            .create_with_context(context)
            .map_err(ConnectorError::Config)?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(ConnectorError::Kafka)?;
        let consumer = Arc::new(consumer);
        let (sender, batches) = mpsc::channel(config.max_in_flight_batches.max(1));
        let (stop, stopped) = oneshot::channel();
        let reader = Reader {
            consumer: Arc::clone(&consumer),
            rows: decoder.new_rows(),
            decoder,
            dead_letters,
            metrics,
            config,
            sender,
        };
        let task = tokio::spawn(reader.run(stopped));
        Ok(KafkaSource {
            batches,
            committer: OffsetCommitter { consumer },
            stop: Some(stop),
            task,
        })
    }

    /// The next batch; `None` once the source has stopped. An error is fatal: the source has
    /// stopped after reporting it.
    pub async fn next_batch(&mut self) -> Option<Result<SourceBatch, ConnectorError>> {
        self.batches.recv().await
    }

    pub fn committer(&self) -> OffsetCommitter {
        self.committer.clone()
    }

    /// Leaves the group and waits for the reader to finish. Batches not yet received are
    /// dropped uncommitted, so the group reads them again.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            // The reader may have stopped already; then there is nobody to tell.
            let _ = stop.send(());
        }
        self.batches.close();
        if let Err(error) = (&mut self.task).await {
            tracing::error!(%error, "the Kafka source task failed");
        }
    }
}

/// Commits offsets of processed batches; cheap to clone and usable from any task.
#[derive(Clone)]
pub struct OffsetCommitter {
    consumer: Arc<StreamConsumer<GroupContext>>,
}

impl fmt::Debug for OffsetCommitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OffsetCommitter").finish_non_exhaustive()
    }
}

impl OffsetCommitter {
    /// Commits `offsets` without waiting for the broker's answer. A failure (typically a
    /// partition that moved in a rebalance) is logged; its records are read again.
    pub fn commit(&self, offsets: &BatchOffsets) -> Result<(), ConnectorError> {
        self.commit_with(offsets, CommitMode::Async)
    }

    /// Commits `offsets` and waits for the broker to store them, e.g. before shutting down.
    pub fn commit_sync(&self, offsets: &BatchOffsets) -> Result<(), ConnectorError> {
        self.commit_with(offsets, CommitMode::Sync)
    }

    /// The partitions the group has assigned to this source right now, as (topic, partition).
    pub fn assigned_partitions(&self) -> Result<Vec<(String, i32)>, ConnectorError> {
        let assignment = self.consumer.assignment().map_err(ConnectorError::Kafka)?;
        Ok(assignment
            .elements()
            .iter()
            .map(|element| (element.topic().to_owned(), element.partition()))
            .collect())
    }

    fn commit_with(&self, offsets: &BatchOffsets, mode: CommitMode) -> Result<(), ConnectorError> {
        if offsets.is_empty() {
            return Ok(());
        }
        self.consumer
            .commit(&offsets.to_topic_partition_list()?, mode)
            .map_err(ConnectorError::Kafka)
    }
}

/// Logs and counts consumer-group events; the client's own errors and logs go to `log`.
struct GroupContext {
    source: String,
    metrics: SourceMetrics,
    log: ClientLog,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.log.log(level, facility, message);
    }

    fn stats(&self, statistics: Statistics) {
        self.log.stats(statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // The reader's poll returns the others, and logs them.
        if !self.log.broker_error(&error, reason) {
            tracing::debug!(source = %self.source, %error, reason, "consumer client error");
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            self.metrics.rebalance("revoke");
            self.metrics
                .assigned_partitions
                .dec_by(i64::try_from(partitions.count()).unwrap_or(i64::MAX));
            tracing::info!(source = %self.source, partitions = ?partition_names(partitions), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                self.metrics.rebalance("assign");
                self.metrics
                    .assigned_partitions
                    .inc_by(i64::try_from(partitions.count()).unwrap_or(i64::MAX));
                tracing::info!(source = %self.source, partitions = ?partition_names(partitions), "partitions assigned");
            }
            Rebalance::Error(error) => {
                self.metrics.rebalance("error");
                tracing::warn!(source = %self.source, %error, "rebalance failed");
            }
            Rebalance::Revoke(_) => {}
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(error) = result {
            tracing::warn!(source = %self.source, %error, partitions = ?partition_names(offsets), "offset commit failed; those records will be read again");
        }
    }
}

fn partition_names(list: &TopicPartitionList) -> Vec<String> {
    list.elements()
        .iter()
        .map(|element| format!("{}/{}", element.topic(), element.partition()))
        .collect()
}

/// The task behind a [`KafkaSource`].
struct Reader<D: Decoder> {
    consumer: Arc<StreamConsumer<GroupContext>>,
    decoder: D,
    rows: D::Rows,
    dead_letters: DeadLetterWriter,
    metrics: SourceMetrics,
    config: SourceConfig,
    sender: mpsc::Sender<Result<SourceBatch, ConnectorError>>,
}

/// The batch being filled.
#[derive(Default)]
struct OpenBatch {
    records: usize,
    dead_letters: Vec<PendingDeadLetter>,
    /// Rows of the builder that records turned away after they decoded (stamped too far
    /// ahead) appended; dropped when the batch is handed over.
    rejected_rows: Vec<std::ops::Range<usize>>,
    offsets: BatchOffsets,
    deadline: Option<Instant>,
}

impl<D: Decoder> Reader<D> {
    async fn run(mut self, mut stopped: oneshot::Receiver<()>) {
        let consumer = Arc::clone(&self.consumer);
        let mut open = OpenBatch::default();
        let outcome = loop {
            let deadline = open.deadline.map(tokio::time::Instant::from_std);
            tokio::select! {
                biased;
                _ = &mut stopped => break Ok(()),
                () = sleep_until(deadline) => {
                    if let Err(error) = self.hand_over(&mut open).await {
                        break Err(error);
                    }
                }
                message = consumer.recv() => {
                    match message {
                        Ok(message) => self.read(&message, &mut open).await,
                        Err(error) => {
                            if !consumer.context().log.broker_error(&error, "") {
                                tracing::warn!(source = %self.config.name, %error, "consumer error");
                            }
                        }
                    }
                    let full = open.deadline.is_some()
                        && (self.rows.len() >= self.config.max_batch_rows
                            || self.rows.estimated_memory_bytes() >= self.config.max_batch_bytes);
                    if full && let Err(error) = self.hand_over(&mut open).await {
                        break Err(error);
                    }
                }
            }
        };
        match outcome {
            Ok(()) => tracing::info!(source = %self.config.name, "source stopped"),
            Err(ConnectorError::SourceStopped { .. }) => {}
            Err(error) => {
                tracing::error!(source = %self.config.name, %error, "source failed");
                // The receiver may be gone too; then nobody is left to tell.
                let _ = self.sender.send(Err(error)).await;
            }
        }
        self.consumer.unsubscribe();
    }

    async fn read(&mut self, message: &BorrowedMessage<'_>, open: &mut OpenBatch) {
        let now_us = now_us();
        let timestamp_us = message
            .timestamp()
            .to_millis()
            .map_or(now_us, |ms| ms.saturating_mul(1000));
        let resume_at = self
            .config
            .resume_from
            .get(message.topic())
            .and_then(|partitions| partitions.get(&message.partition()));
        if resume_at.is_some_and(|&next| message.offset() < next) {
            self.metrics.skipped.inc();
            return;
        }
        self.metrics.records.inc();
        open.records += 1;
        open.deadline
            .get_or_insert_with(|| Instant::now() + self.config.max_batch_delay);
        let Some(payload) = message.payload() else {
            let in_time = check_future_skew(timestamp_us, now_us, self.config.max_future_skew);
            open.offsets.record(
                message.topic(),
                message.partition(),
                message.offset(),
                in_time.is_ok().then_some(timestamp_us),
            );
            self.dead_letter(message, EMPTY_PAYLOAD, "the record has no payload", open)
                .await;
            return;
        };
        self.metrics.bytes.inc_by(payload.len() as u64);
        let mut context = RecordContext::new(message.topic(), timestamp_us);
        if let Some(key) = message.key() {
            context = context.with_key(key);
        }
        let first_row = self.rows.len();
        let decoded = self.decoder.decode(payload, &context, &mut self.rows);
        let event_time_us = self
            .rows
            .max_event_time_us(first_row)
            .unwrap_or(timestamp_us);
        let in_time = check_future_skew(event_time_us, now_us, self.config.max_future_skew);
        open.offsets.record(
            message.topic(),
            message.partition(),
            message.offset(),
            in_time.is_ok().then_some(event_time_us),
        );
        match (decoded, in_time) {
            (Ok(_), Ok(())) => {}
            (Err(error), _) => {
                self.dead_letter(message, error.reason_code(), &error.to_string(), open)
                    .await;
            }
            (Ok(_), Err(ahead)) => {
                open.rejected_rows.push(first_row..self.rows.len());
                self.dead_letter(message, FUTURE_TIMESTAMP, &ahead.to_string(), open)
                    .await;
            }
        }
    }

    async fn dead_letter(
        &mut self,
        message: &BorrowedMessage<'_>,
        reason_code: &str,
        reason: &str,
        open: &mut OpenBatch,
    ) {
        tracing::debug!(
            source = %self.config.name,
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            reason_code,
            "dead letter"
        );
        self.metrics.dead_letter(reason_code);
        let pending = self
            .dead_letters
            .enqueue(message, reason_code, reason, &self.metrics)
            .await;
        open.dead_letters.push(pending);
    }

    /// Waits for the batch's dead letters (one that fails is logged, counted and skipped),
    /// then hands the batch over (waiting while the channel is full: the backpressure).
    async fn hand_over(&mut self, open: &mut OpenBatch) -> Result<(), ConnectorError> {
        let batch = std::mem::take(open);
        let dead_letters = batch.dead_letters.len();
        for pending in batch.dead_letters {
            pending.wait().await;
        }
        let rows = self.rows.finish().map_err(ConnectorError::Batch)?;
        let rows = without_rows(rows, &batch.rejected_rows).map_err(ConnectorError::Batch)?;
        self.metrics.rows.inc_by(rows.num_rows() as u64);
        self.metrics.batches.inc();
        let batch = SourceBatch {
            rows,
            records: batch.records,
            dead_letters,
            offsets: batch.offsets,
        };
        self.sender
            .send(Ok(batch))
            .await
            .map_err(|_| ConnectorError::SourceStopped {
                reason: "the pipeline stopped receiving batches".to_owned(),
            })
    }
}

/// `rows` without the row ranges in `rejected`.
fn without_rows(
    rows: RecordBatch,
    rejected: &[std::ops::Range<usize>],
) -> Result<RecordBatch, ArrowError> {
    if rejected.is_empty() {
        return Ok(rows);
    }
    let mut keep = vec![true; rows.num_rows()];
    for range in rejected {
        keep[range.clone()].fill(false);
    }
    arrow::compute::filter_record_batch(&rows, &BooleanArray::from(keep))
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX)
        })
}
