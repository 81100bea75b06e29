//! `opsloop actuate`: a consumer group on `ops.remediation` and `ops.approvals` that runs the
//! events through the governed [`Actuator`] and publishes every audit entry to `ops.actions`.
//!
//! Offsets are committed only past events whose life is over: an event waiting for an
//! approval, or still running, keeps its partition's commit point behind it, so after a crash
//! it is delivered again and the actuator — idempotent by action id through its audit log —
//! carries it on without running anything twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use opsloop_actuator::{Actuator, ActuatorConfig, DecisionOutcome, Handled};
use opsloop_connectors::kafka::{KafkaConfig, KafkaSink, RecordWriter, SinkConfig};
use opsloop_schemas::ops::{Approval, RemediationEvent};
use opsloop_schemas::{Codec, SchemaRegistry, WireFormat};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};

use crate::config::{KafkaSection, MetricsSection, load_layered};
use crate::metrics_endpoint;

const DEFAULT_CONFIG: &str = include_str!("../config/actuate.toml");

#[derive(Debug, Args)]
pub(crate) struct ActuateArgs {
    /// A TOML file overriding the embedded defaults (see --print-default-config).
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    print_default_config: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActuateConfig {
    kafka: KafkaSection,
    topics: Topics,
    actuator: ActuatorConfig,
    metrics: MetricsSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Topics {
    remediation: String,
    approvals: String,
    actions: String,
}

/// Per partition: the offsets handed to the actuator and not finished, and the next offset.
#[derive(Debug, Default)]
struct Progress {
    in_flight: BTreeSet<i64>,
    next: Option<i64>,
}

impl Progress {
    fn commit_point(&self) -> Option<i64> {
        self.in_flight.first().copied().or(self.next)
    }
}

type PartitionKey = (String, i32);

/// What a task tells the loop when it is through with a message.
enum Finished {
    /// The message at this offset is done with.
    Offset(PartitionKey, i64),
    /// This event waits for a decision; its offset stays uncommitted until then.
    Awaiting(String, PartitionKey, i64),
    /// A decision on this action was applied: its event is done with too.
    Decided(String),
}

pub(crate) async fn run(args: ActuateArgs) -> anyhow::Result<()> {
    if args.print_default_config {
        print!("{DEFAULT_CONFIG}");
        return Ok(());
    }
    let config: ActuateConfig = load_layered(DEFAULT_CONFIG, args.config.as_deref())?;
    let mut kafka = KafkaConfig::new(&config.kafka.brokers);
    kafka.properties = config.kafka.properties.clone();

    let (outcome_sender, mut outcome_receiver) = mpsc::unbounded_channel();
    let actuator = Arc::new(
        Actuator::new(config.actuator.clone(), outcome_sender).context("starting the actuator")?,
    );

    let mut registry = Registry::default();
    let steps: Family<Vec<(String, String)>, Counter> = Family::default();
    registry.register(
        "opsloop_actions",
        "Audit entries written, per step",
        steps.clone(),
    );
    let forged: Counter = Counter::default();
    registry.register(
        "opsloop_approvals_refused",
        "Approvals refused for a bad signature",
        forged.clone(),
    );
    let (stop, stopped) = watch::channel(false);
    let (address, metrics_task) =
        metrics_endpoint::serve(config.metrics.listen, Arc::new(registry), stopped.clone()).await?;
    println!("metrics on http://{address}/metrics");

    let consumer: StreamConsumer = kafka
        .client_config()
        .set("group.id", &config.kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .context("creating the consumer")?;
    consumer.subscribe(&[&config.topics.remediation, &config.topics.approvals])?;

    let sink = KafkaSink::new(&kafka, SinkConfig::default())?;
    let codec = Codec::new(WireFormat::Confluent, Arc::new(SchemaRegistry::builtin()));
    let mut actions = RecordWriter::new(sink, codec.clone(), 1_000);
    let (done_sender, mut done_receiver) = mpsc::unbounded_channel::<Finished>();
    let mut progress: HashMap<PartitionKey, Progress> = HashMap::new();
    // Gated events waiting for a decision: action id -> where the event is.
    let mut awaiting: HashMap<String, (PartitionKey, i64)> = HashMap::new();
    let mut commits = tokio::time::interval(Duration::from_secs(1));
    let terminate = tokio::signal::ctrl_c();
    tokio::pin!(terminate);
    println!(
        "actuating {} (approvals on {}), audit log {}",
        config.topics.remediation,
        config.topics.approvals,
        config.actuator.audit_log.display()
    );
    loop {
        tokio::select! {
            _ = &mut terminate => break,
            outcome = outcome_receiver.recv() => {
                let Some(outcome) = outcome else { break };
                let step = format!("{:?}", outcome.step).to_lowercase();
                steps.get_or_create(&vec![("step".to_owned(), step)]).inc();
                actions.send(&config.topics.actions, &outcome).await?;
            }
            finished = done_receiver.recv() => {
                let Some(finished) = finished else { break };
                let (key, offset) = match finished {
                    Finished::Offset(key, offset) => (key, offset),
                    Finished::Awaiting(action_id, key, offset) => {
                        awaiting.insert(action_id, (key, offset));
                        continue;
                    }
                    Finished::Decided(action_id) => match awaiting.remove(&action_id) {
                        Some(place) => place,
                        None => continue,
                    },
                };
                if let Some(partition) = progress.get_mut(&key) {
                    partition.in_flight.remove(&offset);
                }
            }
            _ = commits.tick() => commit(&consumer, &progress),
            message = consumer.recv() => {
                let message = message.context("reading the remediation and approval topics")?;
                let key: PartitionKey = (message.topic().to_owned(), message.partition());
                let offset = message.offset();
                let partition = progress.entry(key.clone()).or_default();
                partition.next = Some(offset + 1);
                let Some(payload) = message.payload() else { continue };
                let done = done_sender.clone();
                let actuator = Arc::clone(&actuator);
                if message.topic() == config.topics.approvals {
                    let approval = match codec.decode::<Approval>(payload) {
                        Ok(approval) => approval,
                        Err(error) => {
                            tracing::warn!(%error, offset, "an approval does not decode; skipped");
                            continue;
                        }
                    };
                    partition.in_flight.insert(offset);
                    let forged = forged.clone();
                    tokio::spawn(async move {
                        match actuator.decide(&approval).await {
                            Ok(DecisionOutcome::Forged) => {
                                forged.inc();
                            }
                            Ok(DecisionOutcome::Applied) => {
                                let _ = done.send(Finished::Decided(approval.action_id.clone()));
                            }
                            Ok(DecisionOutcome::Held) => {}
                            Err(error) => {
                                tracing::error!(%error, action_id = %approval.action_id, "deciding failed");
                            }
                        }
                        let _ = done.send(Finished::Offset(key, offset));
                    });
                    continue;
                }
                let event = match codec.decode::<RemediationEvent>(payload) {
                    Ok(event) => event,
                    Err(error) => {
                        tracing::warn!(%error, offset, "a remediation event does not decode; skipped");
                        continue;
                    }
                };
                partition.in_flight.insert(offset);
                tokio::spawn(async move {
                    let action_id = event.action_id.clone();
                    let finished = match actuator.handle(event).await {
                        Ok(Handled::AwaitingApproval) => Finished::Awaiting(action_id, key, offset),
                        Ok(Handled::Done) => Finished::Offset(key, offset),
                        Err(error) => {
                            tracing::error!(%error, %action_id, "the action failed");
                            Finished::Offset(key, offset)
                        }
                    };
                    let _ = done.send(finished);
                });
            }
        }
    }
    stop.send_replace(true);
    commit(&consumer, &progress);
    actions.finish().await?;
    metrics_task.await?;
    Ok(())
}

/// Commits every partition up to its first unfinished offset.
fn commit(consumer: &StreamConsumer, progress: &HashMap<PartitionKey, Progress>) {
    let mut list = TopicPartitionList::new();
    let mut points = BTreeMap::new();
    for ((topic, partition), state) in progress {
        if let Some(point) = state.commit_point() {
            points.insert((topic.clone(), *partition), point);
        }
    }
    for ((topic, partition), point) in points {
        if list
            .add_partition_offset(&topic, partition, Offset::Offset(point))
            .is_err()
        {
            return;
        }
    }
    if list.count() > 0
        && let Err(error) = consumer.commit(&list, CommitMode::Async)
    {
        tracing::warn!(%error, "committing offsets failed");
    }
}
