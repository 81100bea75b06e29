//! The loop over Kafka (`opsloop run`): [`KafkaRun`] builds it from a [`RunConfig`] — the
//! detectors, the latest checkpoint, the `/metrics` endpoint, the sources of the registry,
//! the sink, the action-outcome reader and the notifier — and runs it.
//!
//! [`KafkaTransport`]: every source is a consumer group (`<group_id>.<source name>`) whose
//! batches are forwarded into one channel; records the latest checkpoint covers are skipped.
//! Everything published goes through one idempotent writer (`acks=all`), notifications to
//! Alertmanager and webhooks on the notifier's thread. Actuators' outcomes are read from the
//! newest on, every partition by every instance (an instance takes those of the incidents it
//! holds); one that does not decode is dead-lettered. A checkpoint's flush waits for every
//! delivery; its commit commits each source's covered offsets.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opsloop_connectors::ConnectorError;
use opsloop_connectors::kafka::{
    BatchOffsets, DeadLetterWriter, KafkaSink, KafkaSource, OffsetCommitter, RecordConsumer,
    RecordConsumerConfig, RecordStart, RecordWriter, SinkConfig, SourceBatch,
};
use opsloop_connectors::metrics::ConnectorMetrics;
use opsloop_engine::checkpoint::{CheckpointStore, SourceOffset};
use opsloop_engine::detector::{DetectorOptions, StreamTable, load_detectors, session_context};
use opsloop_engine::runtime::Engine;
use opsloop_engine::time::PartitionId;
use opsloop_schemas::ops::ActionOutcome;
use opsloop_schemas::{Codec, SchemaRegistry, WireFormat};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};

use crate::RuntimeError;
use crate::config::{RunConfig, SourceSection};
use crate::events::Events;
use crate::http::{Health, MetricsServer};
use crate::notify::{Notifier, NotifyMetrics};
use crate::runtime::{Checkpoints, Runtime, Stages, Totals};
use crate::transport::{Input, Published, Transport};

/// The stream table of each distinct table the sources feed.
pub fn stream_tables(sources: &[SourceSection]) -> Result<Vec<StreamTable>, RuntimeError> {
    let mut tables: Vec<StreamTable> = Vec::new();
    for source in sources {
        let (schema, event_time) = source.format.layout();
        if let Some(existing) = tables.iter().find(|t| t.name() == source.table) {
            if existing.schema() != &schema {
                return Err(RuntimeError::Config(format!(
                    "sources of table {} have different formats",
                    source.table
                )));
            }
            continue;
        }
        tables.push(StreamTable::new(&source.table, schema, event_time)?);
    }
    Ok(tables)
}

/// `opsloop run`, built and ready to run; see the module docs.
#[derive(Debug)]
pub struct KafkaRun {
    runtime: Runtime<KafkaTransport>,
    metrics: MetricsServer,
}

impl KafkaRun {
    /// Plans the detectors, restores the latest checkpoint, serves `/metrics` and starts the
    /// sources.
    pub async fn start(config: &RunConfig) -> Result<KafkaRun, RuntimeError> {
        let streams = stream_tables(&config.sources)?;
        let options = DetectorOptions {
            allowed_lateness_us: config.engine.watermark.allowed_lateness_us(),
        };
        let detectors = load_detectors(
            &config.engine.detectors_dir,
            &session_context(),
            &streams,
            options,
        )?;
        if detectors.is_empty() {
            return Err(RuntimeError::Config(format!(
                "no detector: {} has no .sql file",
                config.engine.detectors_dir.display()
            )));
        }
        tracing::info!(
            detectors = ?detectors.iter().map(|d| d.name().to_owned()).collect::<Vec<_>>(),
            "detectors planned"
        );
        let planner = config.planner.planner_config();
        if planner.signing_key.is_empty() {
            tracing::warn!(
                "[planner] signing_key is not set: remediation events go out unsigned and \
                 actuators refuse them (set OPSLOOP_PLANNER__SIGNING_KEY, and the actuators' \
                 planner_key alike)"
            );
        }
        let store = CheckpointStore::open(&config.checkpoint.dir, config.checkpoint.retain)?;
        let mut resume: HashMap<String, HashMap<i32, i64>> = HashMap::new();
        let latest = store.latest()?;
        let engine = match &latest {
            Some(checkpoint) => {
                tracing::info!(id = checkpoint.manifest.id, "resuming from checkpoint");
                for offset in &checkpoint.manifest.offsets {
                    resume
                        .entry(offset.topic.clone())
                        .or_default()
                        .insert(offset.partition, offset.next_offset);
                }
                Engine::restore(
                    config.engine.watermark,
                    detectors,
                    checkpoint,
                    Instant::now(),
                )?
            }
            None => Engine::new(config.engine.watermark, detectors),
        };
        let stages = Stages::new(
            engine,
            config.correlator.clone(),
            planner,
            config.predict.clone(),
            latest.as_ref(),
        )?;
        let last_id = latest.map_or(0, |checkpoint| checkpoint.manifest.id);
        stages.predictor.check_jobs().await?;
        tracing::info!(jobs = ?stages.predictor.job_names().collect::<Vec<_>>(), "forecast jobs planned");

        let mut registry = Registry::default();
        let connector_metrics = ConnectorMetrics::register(&mut registry);
        let events = Events::register(&mut registry);
        let notifier = Notifier::start(
            &config.notifications,
            NotifyMetrics::register(&mut registry),
        );
        let metrics =
            MetricsServer::start(config.metrics.listen, registry, Health::default()).await?;
        let transport = KafkaTransport::start(config, resume, &connector_metrics, notifier)?;
        let checkpoints = Checkpoints {
            store,
            interval: Duration::from_millis(config.checkpoint.interval_ms),
            last_id,
        };
        let runtime = Runtime::new(
            transport,
            stages,
            Some(checkpoints),
            events,
            Duration::from_millis(config.engine.tick_interval_ms),
        );
        Ok(KafkaRun { runtime, metrics })
    }

    /// Where `/metrics` and `/healthz` are served.
    pub fn metrics_address(&self) -> SocketAddr {
        self.metrics.address()
    }

    /// Runs until `shutdown` (or a fatal error); a last checkpoint either way.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<Totals, RuntimeError> {
        let KafkaRun { runtime, metrics } = self;
        let totals = runtime.run(shutdown).await;
        metrics.stop().await;
        totals
    }
}

/// One source's batches, forwarded into the loop's channel.
type Forwarded = (usize, Result<SourceBatch, ConnectorError>);

/// The Kafka transport; see the module docs.
#[derive(Debug)]
pub struct KafkaTransport {
    sources: Vec<SourceSection>,
    batches: mpsc::Receiver<Forwarded>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    committers: Vec<OffsetCommitter>,
    /// Per source, the offsets of every batch handed to the loop since start.
    covered: Vec<BatchOffsets>,
    outcomes: RecordConsumer,
    writer: RecordWriter,
    notifier: Notifier,
    topics: Topics,
    /// Tells the source readers to stop.
    stop: watch::Sender<bool>,
}

#[derive(Debug)]
struct Topics {
    alerts: String,
    incidents: String,
    remediation: String,
    cycles: String,
    forecasts: String,
}

impl KafkaTransport {
    fn start(
        config: &RunConfig,
        resume: HashMap<String, HashMap<i32, i64>>,
        metrics: &ConnectorMetrics,
        notifier: Notifier,
    ) -> Result<KafkaTransport, RuntimeError> {
        let kafka = config.kafka.kafka_config();
        let (stop, stopped) = watch::channel(false);
        let sink = KafkaSink::new(&kafka, SinkConfig::default())?;
        let codec = Codec::new(WireFormat::Confluent, Arc::new(SchemaRegistry::builtin()));
        let (forward_to, batches) = mpsc::channel(8);
        let mut committers = Vec::new();
        let mut readers = Vec::new();
        for (index, source) in config.sources.iter().enumerate() {
            let mut source_config =
                source.source_config(format!("{}.{}", config.kafka.group_id, source.name));
            source_config.resume_from = resume.clone();
            let started = source
                .format
                .start(
                    source.encoding(),
                    &kafka,
                    source_config,
                    DeadLetterWriter::new(sink.clone(), &config.deadletter.topic),
                    metrics.source(&source.name),
                )
                .map_err(|error| {
                    RuntimeError::Config(format!("source {}: {error}", source.name))
                })?;
            committers.push(started.committer());
            readers.push(tokio::spawn(forward(
                index,
                started,
                forward_to.clone(),
                stopped.clone(),
            )));
        }
        // Every partition, not a group's share: the outcome of an action is for whichever
        // instance holds its incident.
        let outcomes = RecordConsumer::start(
            &kafka,
            RecordConsumerConfig {
                group_id: format!("{}.actions", config.kafka.group_id),
                topics: vec![config.planner.actions_topic.clone()],
                start: RecordStart::Since(Duration::ZERO),
            },
            codec.clone(),
            Some(DeadLetterWriter::new(
                sink.clone(),
                &config.deadletter.topic,
            )),
            metrics.source("actions"),
        )?;
        Ok(KafkaTransport {
            covered: vec![BatchOffsets::default(); config.sources.len()],
            sources: config.sources.clone(),
            batches,
            readers,
            committers,
            outcomes,
            writer: RecordWriter::new(sink, codec, 10_000),
            notifier,
            topics: Topics {
                alerts: config.alerts.topic.clone(),
                incidents: config.incidents.topic.clone(),
                remediation: config.planner.topic.clone(),
                cycles: config.predict.report_topic.clone(),
                forecasts: config.predict.forecasts_topic.clone(),
            },
            stop,
        })
    }
}

/// Moves one source's batches into the loop's channel until told to stop.
async fn forward(
    index: usize,
    mut source: KafkaSource,
    batches: mpsc::Sender<Forwarded>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            // The guard `wait_for` returns is not `Send`: drop it inside.
            _ = async { drop(stopped.wait_for(|stop| *stop).await) } => break,
            batch = source.next_batch() => match batch {
                Some(batch) => {
                    if batches.send((index, batch)).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
        }
    }
    source.stop().await;
}

impl Transport for KafkaTransport {
    async fn next(&mut self) -> Result<Input, RuntimeError> {
        loop {
            tokio::select! {
                batch = self.batches.recv() => {
                    let Some((index, batch)) = batch else {
                        return Err(RuntimeError::SourcesEnded);
                    };
                    let source = &self.sources[index];
                    let batch = batch.map_err(|error| RuntimeError::Source {
                        source_name: source.name.clone(),
                        error,
                    })?;
                    self.covered[index].merge(&batch.offsets);
                    // A partition whose every record was stamped too far ahead does not move
                    // the watermark.
                    let partitions = batch
                        .offsets
                        .partitions()
                        .filter_map(|progress| {
                            Some((
                                PartitionId::new(Arc::clone(&progress.topic), progress.partition),
                                progress.max_event_time_us?,
                            ))
                        })
                        .collect();
                    return Ok(Input::Batch {
                        table: source.table.clone(),
                        rows: batch.rows,
                        partitions,
                    });
                }
                message = self.outcomes.next() => {
                    if let Some(outcome) = self.outcomes.decode::<ActionOutcome>(&message).await {
                        return Ok(Input::Outcome(outcome));
                    }
                }
            }
        }
    }

    async fn publish(&mut self, record: Published<'_>) -> Result<(), RuntimeError> {
        let topics = &self.topics;
        match record {
            Published::Alert(alert) => self.writer.send(&topics.alerts, alert).await?,
            Published::Incident(incident) => {
                self.writer.send(&topics.incidents, incident).await?;
            }
            Published::Notification(notification) => self.notifier.notify(*notification),
            Published::Remediation(event) => {
                self.writer.send(&topics.remediation, event).await?;
            }
            Published::Cycle(report) => self.writer.send(&topics.cycles, report).await?,
            Published::Forecast(forecast) => {
                self.writer.send(&topics.forecasts, forecast).await?;
            }
        }
        Ok(())
    }

    fn assignment(&self) -> Result<Option<BTreeSet<PartitionId>>, RuntimeError> {
        let mut current = BTreeSet::new();
        for committer in &self.committers {
            for (topic, partition) in committer.assigned_partitions()? {
                current.insert(PartitionId::new(topic, partition));
            }
        }
        Ok(Some(current))
    }

    async fn flush(&mut self) -> Result<Vec<SourceOffset>, RuntimeError> {
        self.writer.finish().await?;
        Ok(self
            .covered
            .iter()
            .flat_map(BatchOffsets::partitions)
            .map(|progress| SourceOffset {
                topic: progress.topic.to_string(),
                partition: progress.partition,
                next_offset: progress.next_offset,
            })
            .collect())
    }

    fn commit(&mut self, last: bool) -> Result<(), RuntimeError> {
        for (committer, covered) in self.committers.iter().zip(&self.covered) {
            if last {
                committer.commit_sync(covered)?;
            } else {
                committer.commit(covered)?;
            }
        }
        Ok(())
    }

    async fn close(self) {
        self.stop.send_replace(true);
        drop(self.batches);
        for reader in self.readers {
            if let Err(error) = reader.await {
                tracing::error!(%error, "a source reader failed");
            }
        }
        self.notifier.finish();
    }
}
