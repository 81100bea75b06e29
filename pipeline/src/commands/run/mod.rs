//! `opsloop run`: Kafka sources -> engine (watermarks, SQL detectors) -> `ops.alerts` ->
//! correlator -> `ops.incidents` and notifications, with checkpoints, a Prometheus `/metrics`
//! endpoint and graceful shutdown.
//!
//! The correlator runs on the engine's watermark: after every batch and tick, the new alerts
//! go in and the watermark moves its clock, so incidents open, update and resolve in event
//! time and a replay yields the same versions.
//!
//! Every `checkpoint.interval_ms` the loop waits until every alert emitted so far is
//! acknowledged by the brokers, writes a checkpoint of the engine's and the correlator's state with the offsets it
//! covers, and only then commits those offsets to Kafka. On start it resumes from the latest
//! checkpoint, and the sources skip records the checkpoint already covers. Alerts carry
//! deterministic ids, so the alerts re-emitted after a crash (those of windows that closed
//! after the last checkpoint) are the same records again, not new ones. SIGINT or SIGTERM
//! ends the loop with a final checkpoint.

mod metrics;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow::datatypes::SchemaRef;
use clap::Args;
use opsloop_connectors::decode::{
    AvroMetricBatchDecoder, AvroRecordDecoder, Decoder, JsonLinesDecoder, OtlpEncoding,
    OtlpMetricsDecoder, PrometheusTextDecoder, RecordRows, metric_samples_schema, record_schema,
};
use opsloop_connectors::kafka::{
    BatchOffsets, DeadLetterWriter, KafkaConfig, KafkaSink, KafkaSource, OffsetCommitter,
    RecordWriter, SinkConfig, SourceBatch, SourceConfig,
};
use opsloop_connectors::metrics::ConnectorMetrics;
use opsloop_correlator::Correlator;
use opsloop_engine::checkpoint::{CheckpointStore, SourceOffset};
use opsloop_engine::detector::{DetectorOptions, StreamTable, load_detectors, session_context};
use opsloop_engine::runtime::{Engine, Output};
use opsloop_engine::time::PartitionId;
use opsloop_planner::Planner;
use opsloop_predict::{PredictError, Predictor};
use opsloop_schemas::ops::{
    ActionOutcome, ActionStep, Forecast, Incident, IncidentState, RemediationEvent,
};
use opsloop_schemas::telemetry::{FeatureSample, GpuSample, LogRecord};
use opsloop_schemas::{Codec, SchemaRegistry, WireFormat};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};

use self::metrics::{CorrelatorMetrics, CycleMetrics, EngineMetrics};
use crate::config::{RunConfig, SourceEncoding, SourceFormat, SourceSection, default_config_text};
use crate::metrics_endpoint;
use crate::notify::{Notifier, NotifyMetrics};

/// The correlator's state in a checkpoint.
const CORRELATOR_STATE: &str = "correlator.json";
const PREDICTOR_STATE: &str = "predictor.json";
const PLANNER_STATE: &str = "planner.json";

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// A TOML file overriding the embedded defaults (see --print-default-config); any key can
    /// also be set as OPSLOOP_<SECTION>__<KEY>.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the embedded default configuration and exit.
    #[arg(long)]
    print_default_config: bool,
}

pub(crate) async fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.print_default_config {
        print!("{}", default_config_text());
        return Ok(());
    }
    let config = RunConfig::load(args.config.as_deref())?;
    let mut kafka = KafkaConfig::new(&config.kafka.brokers);
    kafka.properties = config.kafka.properties.clone();

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
    anyhow::ensure!(
        !detectors.is_empty(),
        "no detector: {} has no .sql file",
        config.engine.detectors_dir.display()
    );
    tracing::info!(
        detectors = ?detectors.iter().map(|d| d.name().to_owned()).collect::<Vec<_>>(),
        "detectors planned"
    );

    let store = CheckpointStore::open(&config.checkpoint.dir, config.checkpoint.retain)?;
    let planner_config = config.planner.planner_config();
    if planner_config.signing_key.is_empty() {
        tracing::warn!(
            "[planner] signing_key is not set: remediation events go out unsigned and actuators \
             refuse them (set OPSLOOP_PLANNER__SIGNING_KEY, and the actuators' planner_key alike)"
        );
    }
    let (engine, correlator, predictor, planner, checkpoint_id, resume) = match store.latest()? {
        Some(checkpoint) => {
            tracing::info!(id = checkpoint.manifest.id, "resuming from checkpoint");
            let mut resume: HashMap<String, HashMap<i32, i64>> = HashMap::new();
            for offset in &checkpoint.manifest.offsets {
                resume
                    .entry(offset.topic.clone())
                    .or_default()
                    .insert(offset.partition, offset.next_offset);
            }
            let engine = Engine::restore(
                config.engine.watermark,
                detectors,
                &checkpoint,
                Instant::now(),
            )?;
            let correlator = match checkpoint.states.get(CORRELATOR_STATE) {
                Some(state) => Correlator::restore(config.correlator.clone(), state)?,
                None => Correlator::new(config.correlator.clone())?,
            };
            let predictor = match checkpoint.states.get(PREDICTOR_STATE) {
                Some(state) => Predictor::restore(config.predict.clone(), state)?,
                None => Predictor::new(config.predict.clone())?,
            };
            let planner = match checkpoint.states.get(PLANNER_STATE) {
                Some(state) => Planner::restore(planner_config, state)?,
                None => Planner::new(planner_config),
            };
            (
                engine,
                correlator,
                predictor,
                planner,
                checkpoint.manifest.id,
                resume,
            )
        }
        None => (
            Engine::new(config.engine.watermark, detectors),
            Correlator::new(config.correlator.clone())?,
            Predictor::new(config.predict.clone())?,
            Planner::new(planner_config),
            0,
            HashMap::new(),
        ),
    };
    predictor.check_jobs().await?;
    tracing::info!(jobs = ?predictor.job_names().collect::<Vec<_>>(), "forecast jobs planned");

    let mut registry = Registry::default();
    let connector_metrics = ConnectorMetrics::register(&mut registry);
    let engine_metrics = EngineMetrics::register(&mut registry);
    let correlator_metrics = CorrelatorMetrics::register(&mut registry);
    let cycle_metrics = CycleMetrics::register(&mut registry);
    let notifier = Notifier::start(
        &config.notifications,
        NotifyMetrics::register(&mut registry),
    );
    let (stop, stopped) = watch::channel(false);
    let (metrics_address, metrics_task) = metrics_endpoint::serve(
        config.metrics.listen,
        Arc::new(registry),
        metrics_endpoint::Health::default(),
        stopped.clone(),
    )
    .await
    .with_context(|| format!("serving /metrics on {}", config.metrics.listen))?;
    println!("metrics on http://{metrics_address}/metrics");

    let sink = KafkaSink::new(&kafka, SinkConfig::default())?;
    let codec = Codec::new(WireFormat::Confluent, Arc::new(SchemaRegistry::builtin()));
    let (batches, received) = mpsc::channel(8);
    let mut committers = Vec::new();
    let mut readers = Vec::new();
    for (index, source) in config.sources.iter().enumerate() {
        let mut source_config = SourceConfig::new(
            &source.name,
            vec![source.topic.clone()],
            format!("{}.{}", config.kafka.group_id, source.name),
        );
        source_config.resume_from = resume.clone();
        let started = start_source(
            &kafka,
            source,
            source_config,
            DeadLetterWriter::new(sink.clone(), &config.deadletter.topic),
            &connector_metrics,
        )?;
        committers.push(started.committer());
        readers.push(tokio::spawn(forward(
            index,
            started,
            batches.clone(),
            stopped.clone(),
        )));
    }
    drop(batches);

    let (outcome_sender, outcomes) = mpsc::channel(1_000);
    let outcome_reader = tokio::spawn(read_outcomes(
        kafka.clone(),
        format!("{}.actions", config.kafka.group_id),
        config.planner.actions_topic.clone(),
        outcome_sender,
        stopped.clone(),
    ));

    let mut state = Loop {
        config: &config,
        engine,
        store,
        checkpoint_id,
        alerts: RecordWriter::new(sink, codec, 10_000),
        covered: vec![BatchOffsets::default(); config.sources.len()],
        committers,
        metrics: engine_metrics,
        emitted: BTreeSet::new(),
        assigned: BTreeSet::new(),
        correlator,
        correlator_metrics,
        notifier,
        incident_versions: 0,
        planner,
        predictor,
        cycle_in_flight: None,
        cycle_metrics,
    };
    let outcome = state.run(received, outcomes).await;
    // Stop the readers and the endpoint whatever happened, then checkpoint what was done.
    stop.send_replace(true);
    let final_checkpoint = state.checkpoint(true).await;
    for reader in readers {
        if let Err(error) = reader.await {
            tracing::error!(%error, "a source reader failed");
        }
    }
    if let Err(error) = outcome_reader.await {
        tracing::error!(%error, "the action-outcome reader failed");
    }
    if let Err(error) = metrics_task.await {
        tracing::error!(%error, "the /metrics endpoint failed");
    }
    let Loop {
        notifier,
        emitted,
        incident_versions,
        checkpoint_id,
        ..
    } = state;
    notifier.finish();
    outcome?;
    final_checkpoint?;
    println!(
        "stopped: {} alerts and {incident_versions} incident versions emitted, checkpoint {checkpoint_id} written",
        emitted.len(),
    );
    Ok(())
}

/// The stream table of each distinct table the sources feed.
fn stream_tables(sources: &[SourceSection]) -> anyhow::Result<Vec<StreamTable>> {
    let mut tables: Vec<StreamTable> = Vec::new();
    for source in sources {
        let (schema, event_time) = table_layout(source.format);
        if let Some(existing) = tables.iter().find(|t| t.name() == source.table) {
            anyhow::ensure!(
                existing.schema() == &schema,
                "sources of table {} have different formats",
                source.table
            );
            continue;
        }
        tables.push(StreamTable::new(&source.table, schema, event_time)?);
    }
    Ok(tables)
}

fn table_layout(format: SourceFormat) -> (SchemaRef, &'static str) {
    match format {
        SourceFormat::MetricBatch
        | SourceFormat::JsonLines
        | SourceFormat::Prometheus
        | SourceFormat::OtlpMetrics => (metric_samples_schema(), "time"),
        SourceFormat::GpuSample => (record_schema::<GpuSample>(), "time_us"),
        SourceFormat::FeatureSample => (record_schema::<FeatureSample>(), "time_us"),
        SourceFormat::LogRecord => (record_schema::<LogRecord>(), "time_us"),
    }
}

fn start_source(
    kafka: &KafkaConfig,
    source: &SourceSection,
    config: SourceConfig,
    dead_letters: DeadLetterWriter,
    metrics: &ConnectorMetrics,
) -> anyhow::Result<KafkaSource> {
    let metrics = metrics.source(&source.name);
    let codec = |encoding: SourceEncoding| -> anyhow::Result<Codec> {
        let format = match encoding {
            SourceEncoding::Confluent => WireFormat::Confluent,
            SourceEncoding::Avro => WireFormat::Avro,
            SourceEncoding::Json => WireFormat::Json,
            other => anyhow::bail!(
                "source {}: encoding {other:?} is not a codec format",
                source.name
            ),
        };
        Ok(Codec::new(format, Arc::new(SchemaRegistry::builtin())))
    };
    let started = match source.format {
        SourceFormat::MetricBatch => KafkaSource::start(
            kafka,
            config,
            AvroMetricBatchDecoder::new(codec(source.encoding)?),
            dead_letters,
            metrics,
        ),
        SourceFormat::JsonLines => KafkaSource::start(
            kafka,
            config,
            JsonLinesDecoder::new(),
            dead_letters,
            metrics,
        ),
        SourceFormat::Prometheus => KafkaSource::start(
            kafka,
            config,
            PrometheusTextDecoder::new(),
            dead_letters,
            metrics,
        ),
        SourceFormat::OtlpMetrics => {
            let encoding = match source.encoding {
                SourceEncoding::OtlpJson => OtlpEncoding::Json,
                _ => OtlpEncoding::Proto,
            };
            KafkaSource::start(
                kafka,
                config,
                OtlpMetricsDecoder::new(encoding),
                dead_letters,
                metrics,
            )
        }
        SourceFormat::GpuSample => start_records::<GpuSample>(
            kafka,
            config,
            codec(source.encoding)?,
            dead_letters,
            metrics,
        ),
        SourceFormat::FeatureSample => start_records::<FeatureSample>(
            kafka,
            config,
            codec(source.encoding)?,
            dead_letters,
            metrics,
        ),
        SourceFormat::LogRecord => start_records::<LogRecord>(
            kafka,
            config,
            codec(source.encoding)?,
            dead_letters,
            metrics,
        ),
    };
    Ok(started?)
}

fn start_records<T>(
    kafka: &KafkaConfig,
    config: SourceConfig,
    codec: Codec,
    dead_letters: DeadLetterWriter,
    metrics: opsloop_connectors::metrics::SourceMetrics,
) -> Result<KafkaSource, opsloop_connectors::ConnectorError>
where
    T: opsloop_schemas::AvroRecord + 'static,
    AvroRecordDecoder<T>: Decoder<Rows = RecordRows<T>>,
{
    KafkaSource::start(
        kafka,
        config,
        AvroRecordDecoder::<T>::new(codec),
        dead_letters,
        metrics,
    )
}

type Received = (
    usize,
    Result<SourceBatch, opsloop_connectors::ConnectorError>,
);

/// Moves one source's batches into the engine loop's channel until told to stop.
async fn forward(
    index: usize,
    mut source: KafkaSource,
    batches: mpsc::Sender<Received>,
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

/// The engine loop's state.
struct Loop<'a> {
    config: &'a RunConfig,
    engine: Engine,
    store: CheckpointStore,
    checkpoint_id: u64,
    alerts: RecordWriter,
    /// Per source, the offsets of every batch processed since start (what a checkpoint covers).
    covered: Vec<BatchOffsets>,
    committers: Vec<OffsetCommitter>,
    metrics: EngineMetrics,
    /// Ids of the alerts emitted by this process, for the closing summary.
    emitted: BTreeSet<String>,
    /// The partitions the engine was last told this instance owns.
    assigned: BTreeSet<PartitionId>,
    correlator: Correlator,
    correlator_metrics: CorrelatorMetrics,
    notifier: Notifier,
    /// Incident versions published by this process, for the closing summary.
    incident_versions: usize,
    planner: Planner,
    predictor: Predictor,
    /// The forecast jobs of the cycle under way, on their own task so that ingestion goes on.
    cycle_in_flight: Option<InFlightCycle>,
    cycle_metrics: CycleMetrics,
}

#[derive(Debug)]
struct InFlightCycle {
    now_us: i64,
    started: Instant,
    jobs: tokio::task::JoinHandle<Result<Vec<Forecast>, PredictError>>,
}

struct FinishedCycle {
    now_us: i64,
    started: Instant,
    forecasts: anyhow::Result<Vec<Forecast>>,
}

/// Resolves when the jobs in flight finish (never when none are), leaving the slot empty.
async fn jobs_finished(in_flight: &mut Option<InFlightCycle>) -> FinishedCycle {
    let Some(cycle) = in_flight.as_mut() else {
        return std::future::pending().await;
    };
    let joined = (&mut cycle.jobs).await;
    let InFlightCycle {
        now_us, started, ..
    } = in_flight.take().expect("in flight");
    let forecasts = match joined {
        Ok(forecasts) => forecasts.map_err(anyhow::Error::from),
        Err(error) => Err(anyhow::Error::from(error).context("the forecast jobs' task")),
    };
    FinishedCycle {
        now_us,
        started,
        forecasts,
    }
}

impl Loop<'_> {
    async fn run(
        &mut self,
        mut received: mpsc::Receiver<Received>,
        mut outcomes: mpsc::Receiver<ActionOutcome>,
    ) -> anyhow::Result<()> {
        let mut checkpoints = tokio::time::interval(Duration::from_millis(
            self.config.checkpoint.interval_ms.max(1),
        ));
        checkpoints.reset();
        let mut ticks = tokio::time::interval(Duration::from_millis(
            self.config.engine.tick_interval_ms.max(1),
        ));
        let terminate = terminate_signal();
        tokio::pin!(terminate);
        loop {
            tokio::select! {
                _ = &mut terminate => {
                    tracing::info!("shutting down");
                    return Ok(());
                }
                batch = received.recv() => {
                    let Some((index, batch)) = batch else {
                        anyhow::bail!("every source stopped");
                    };
                    let batch = batch.with_context(|| {
                        format!("source {}", self.config.sources[index].name)
                    })?;
                    self.process(index, &batch).await?;
                }
                _ = ticks.tick() => {
                    self.sync_assignment(Instant::now())?;
                    let output = self.engine.tick(Instant::now())?;
                    self.publish(output).await?;
                }
                _ = checkpoints.tick() => self.checkpoint(false).await?,
                finished = jobs_finished(&mut self.cycle_in_flight),
                    if self.cycle_in_flight.is_some() => self.predict(finished).await?,
                Some(outcome) = outcomes.recv() => self.learn(&outcome).await?,
            }
        }
    }

    /// Tells the engine which partitions the group assigned or revoked since the last call, so
    /// a partition whose backlog is still unread holds the watermark back.
    fn sync_assignment(&mut self, now: Instant) -> anyhow::Result<()> {
        let mut current = BTreeSet::new();
        for committer in &self.committers {
            for (topic, partition) in committer.assigned_partitions()? {
                current.insert(PartitionId::new(topic, partition));
            }
        }
        for revoked in self.assigned.difference(&current) {
            self.engine.revoke(revoked);
        }
        for assigned in current.difference(&self.assigned) {
            self.engine.assign(assigned.clone(), now);
        }
        self.assigned = current;
        Ok(())
    }

    async fn process(&mut self, index: usize, batch: &SourceBatch) -> anyhow::Result<()> {
        self.sync_assignment(Instant::now())?;
        let partitions: Vec<(PartitionId, i64)> = batch
            .offsets
            .partitions()
            .map(|progress| {
                (
                    PartitionId::new(Arc::clone(&progress.topic), progress.partition),
                    progress.max_event_time_us,
                )
            })
            .collect();
        let table = &self.config.sources[index].table;
        let output = self
            .engine
            .process(table, &batch.rows, &partitions, Instant::now())?;
        self.predictor.observe_batch(&batch.rows);
        self.covered[index].merge(&batch.offsets);
        self.publish(output).await
    }

    async fn publish(&mut self, output: Output) -> anyhow::Result<()> {
        self.metrics.record(&output);
        self.metrics.status(&self.engine.status());
        for alert in &output.alerts {
            tracing::info!(
                alert_id = %alert.alert_id,
                detector = %alert.detector,
                entity = %alert.entity,
                score = alert.score,
                "alert"
            );
            self.alerts.send(&self.config.alerts.topic, alert).await?;
            self.emitted.insert(alert.alert_id.clone());
            self.correlator.observe(alert);
        }
        if let Some(watermark) = self.engine.status().watermark_us {
            let emitted = self.correlator.advance(watermark);
            for incident in &emitted.versions {
                tracing::info!(
                    incident_id = %incident.incident_id,
                    version = incident.version,
                    state = ?incident.state,
                    tier = ?incident.tier,
                    pattern = %incident.pattern,
                    entity = %incident.entity,
                    "incident"
                );
                self.alerts
                    .send(&self.config.incidents.topic, incident)
                    .await?;
                self.plan(incident).await?;
                if incident.state == IncidentState::Open {
                    self.predictor
                        .incident_opened(&incident.entity, incident.opened_us);
                }
            }
            self.incident_versions += emitted.versions.len();
            for notification in emitted.notifications {
                self.notifier.notify(notification);
            }
            self.retry(watermark).await?;
        }
        self.correlator_metrics.status(&self.correlator.status());
        if let Some(watermark) = self.engine.status().watermark_us
            && self.cycle_in_flight.is_none()
            && self.predictor.due(watermark)
        {
            let jobs = self.predictor.start_cycle(watermark);
            self.cycle_in_flight = Some(InFlightCycle {
                now_us: watermark,
                started: Instant::now(),
                jobs: tokio::spawn(jobs.run()),
            });
        }
        Ok(())
    }

    /// The end of the predictive cycle whose jobs finished: proactive plans to the planner's
    /// topic, the cycle report to the log, the metrics and its topic.
    async fn predict(&mut self, finished: FinishedCycle) -> anyhow::Result<()> {
        let FinishedCycle {
            now_us,
            started,
            forecasts,
        } = finished;
        let forecasts = match forecasts {
            Ok(forecasts) => forecasts,
            Err(error) => {
                // A job that fails on this cycle's data must not stop detection.
                tracing::error!(%error, "predictive cycle failed");
                self.cycle_metrics.failed();
                return Ok(());
            }
        };
        let cycle = self.predictor.finish_cycle(now_us, forecasts);
        for forecast in &cycle.forecasts {
            tracing::debug!(
                job = %forecast.job,
                entity = %forecast.entity,
                forecast = %forecast.forecast,
                resource = ?forecast.resource,
                value = forecast.value,
                time_to_exhaustion_s = ?forecast.time_to_exhaustion_s,
                "forecast"
            );
        }
        self.cycle_metrics.forecasts(&cycle.forecasts);
        let report = &cycle.report;
        tracing::info!(
            cycle_id = %report.cycle_id,
            failures_detected = report.failures_detected,
            operations_executed = report.operations_executed,
            success_rate = ?report.success_rate,
            models_updated = ?report.models_updated,
            proactive_plans = report.proactive_plans,
            forecasts = cycle.forecasts.len(),
            took_ms = started.elapsed().as_millis(),
            "predictive cycle"
        );
        self.cycle_metrics
            .record(report, started.elapsed().as_secs_f64());
        self.alerts
            .send(&self.config.predict.report_topic, report)
            .await?;
        for forecast in &cycle.forecasts {
            self.alerts
                .send(&self.config.predict.forecasts_topic, forecast)
                .await?;
        }
        for event in &cycle.events {
            tracing::info!(action_id = %event.action_id, template = %event.template, target = %event.target, rationale = %event.rationale, "proactive plan");
            let event = self.planner.sign(event.clone());
            self.alerts.send(&self.config.planner.topic, &event).await?;
        }
        Ok(())
    }

    /// Plans `incident` and publishes the remediation events, keyed by incident id.
    async fn plan(&mut self, incident: &Incident) -> anyhow::Result<()> {
        let watermark = self.correlator.clock_us().unwrap_or(incident.updated_us);
        for event in self.planner.plan(incident, watermark) {
            self.remediate(&event).await?;
        }
        Ok(())
    }

    async fn remediate(&mut self, event: &RemediationEvent) -> anyhow::Result<()> {
        tracing::info!(
            action_id = %event.action_id,
            incident_id = %event.incident_id,
            template = %event.template,
            attempt = event.attempt,
            agent = %event.agent,
            approval_required = event.approval_required,
            "remediation planned"
        );
        self.alerts.send(&self.config.planner.topic, event).await?;
        Ok(())
    }

    /// The next attempts of fixes that failed or did not hold, due by `watermark`; incidents
    /// whose fixes ran out of attempts escalate.
    async fn retry(&mut self, watermark: i64) -> anyhow::Result<()> {
        let retries = self.planner.due(watermark);
        for event in &retries.events {
            self.remediate(event).await?;
        }
        for escalation in retries.escalations {
            tracing::warn!(incident_id = %escalation.incident_id, reason = %escalation.reason, "incident escalated");
            let emitted =
                self.correlator
                    .escalate(&escalation.incident_id, &escalation.reason, watermark);
            for version in &emitted.versions {
                self.alerts
                    .send(&self.config.incidents.topic, version)
                    .await?;
            }
            self.incident_versions += emitted.versions.len();
            for notification in emitted.notifications {
                self.notifier.notify(notification);
            }
        }
        Ok(())
    }

    /// An actuator's outcome: an execution acknowledges its incident and starts the
    /// correlator's judgement of it; every ending teaches the planner.
    async fn learn(&mut self, outcome: &ActionOutcome) -> anyhow::Result<()> {
        if outcome.step == ActionStep::Executed
            && let Some(version) = self.correlator.acknowledge(
                &outcome.incident_id,
                &outcome.action_id,
                outcome.time_us,
            )
        {
            self.alerts
                .send(&self.config.incidents.topic, &version)
                .await?;
            self.incident_versions += 1;
        }
        if matches!(
            outcome.step,
            ActionStep::Verified | ActionStep::RolledBack | ActionStep::Failed
        ) {
            self.predictor
                .action_executed(outcome.step == ActionStep::Verified);
        }
        let at_us = self.correlator.clock_us().unwrap_or(outcome.time_us);
        self.planner.observe(outcome, at_us);
        Ok(())
    }

    /// Delivers pending alerts, writes a checkpoint, then commits the offsets it covers
    /// (synchronously on shutdown).
    async fn checkpoint(&mut self, last: bool) -> anyhow::Result<()> {
        let started = Instant::now();
        self.alerts.finish().await?;
        self.checkpoint_id += 1;
        let offsets: Vec<SourceOffset> = self
            .covered
            .iter()
            .flat_map(BatchOffsets::partitions)
            .map(|progress| SourceOffset {
                topic: progress.topic.to_string(),
                partition: progress.partition,
                next_offset: progress.next_offset,
            })
            .collect();
        let mut checkpoint = self.engine.checkpoint(self.checkpoint_id, offsets)?;
        checkpoint
            .states
            .insert(CORRELATOR_STATE.to_owned(), self.correlator.snapshot()?);
        checkpoint
            .states
            .insert(PREDICTOR_STATE.to_owned(), self.predictor.snapshot()?);
        checkpoint
            .states
            .insert(PLANNER_STATE.to_owned(), self.planner.snapshot()?);
        let path = self.store.write(&checkpoint)?;
        for (committer, covered) in self.committers.iter().zip(&self.covered) {
            let committed = if last {
                committer.commit_sync(covered)
            } else {
                committer.commit(covered)
            };
            if let Err(error) = committed {
                // The checkpoint holds the offsets; the next start skips what it covers.
                tracing::warn!(%error, "committing checkpointed offsets failed");
            }
        }
        self.metrics
            .checkpoint_took(started.elapsed().as_secs_f64());
        tracing::debug!(path = %path.display(), "checkpoint written");
        Ok(())
    }
}

/// Reads the actuators' outcomes from `topic` (from the newest) until told to stop; a topic
/// that does not exist yet is retried quietly.
async fn read_outcomes(
    kafka: KafkaConfig,
    group: String,
    topic: String,
    outcomes: mpsc::Sender<ActionOutcome>,
    mut stopped: watch::Receiver<bool>,
) {
    use rdkafka::Message;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    let consumer: StreamConsumer = match kafka
        .client_config()
        .set("group.id", &group)
        .set("auto.offset.reset", "latest")
        .create()
    {
        Ok(consumer) => consumer,
        Err(error) => {
            tracing::error!(%error, "cannot read action outcomes; no learning");
            return;
        }
    };
    if let Err(error) = consumer.subscribe(&[&topic]) {
        tracing::error!(%error, %topic, "cannot subscribe to action outcomes; no learning");
        return;
    }
    let codec = Codec::new(WireFormat::Confluent, Arc::new(SchemaRegistry::builtin()));
    loop {
        tokio::select! {
            _ = async { drop(stopped.wait_for(|stop| *stop).await) } => break,
            message = consumer.recv() => match message {
                Ok(message) => {
                    let Some(payload) = message.payload() else { continue };
                    match codec.decode::<ActionOutcome>(payload) {
                        Ok(outcome) => {
                            if outcomes.send(outcome).await.is_err() {
                                break;
                            }
                        }
                        Err(error) => tracing::warn!(%error, "an action outcome does not decode"),
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, %topic, "reading action outcomes");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn terminate_signal() {
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM; SIGINT still stops");
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
