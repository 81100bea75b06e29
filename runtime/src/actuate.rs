//! The actuator service (`opsloop actuate`): a consumer group on `ops.remediation` and
//! `ops.approvals` that runs the events through the governed [`Actuator`] and publishes every
//! audit entry to `ops.actions`.
//!
//! Offsets are committed only past events whose life is over: an event waiting for an
//! approval, or still running, keeps its partition's commit point behind it, so after a crash
//! it is delivered again and the actuator — once per action id through its audit log and the
//! claims in the target databases — carries it on without running anything twice.
//!
//! Every instance also reads `ops.incidents` (from `incidents_lookback_s` back, no group) for
//! the correlator's verdicts on executed actions. Refused events (unsigned, altered, a reused
//! id), forged approvals or approvals of other content, and records that do not decode go to
//! `ops.deadletter` with the reason. The group assignment is logged and exported; an instance
//! holding no partition for `unassigned_warn_s` warns and `/healthz` says so.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opsloop_actuator::{Actuator, ActuatorConfig, ActuatorEvents, DecisionOutcome, Handled};
use opsloop_connectors::kafka::{
    DeadLetterWriter, KafkaSink, RecordConsumer, RecordConsumerConfig, RecordMessage, RecordStart,
    RecordWriter, SinkConfig,
};
use opsloop_connectors::metrics::ConnectorMetrics;
use opsloop_schemas::ops::{ActionOutcome, Approval, Incident, RemediationEvent};
use opsloop_schemas::{Codec, SchemaRegistry, WireFormat};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::RuntimeError;
use crate::config::{KafkaSection, MetricsSection};
use crate::http::{Health, MetricsServer};

/// `opsloop actuate`'s whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActuateConfig {
    pub kafka: KafkaSection,
    pub topics: ActuateTopics,
    pub group: GroupSection,
    pub actuator: ActuatorConfig,
    pub metrics: MetricsSection,
}

/// `[topics]`: what the service reads and writes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActuateTopics {
    pub remediation: String,
    pub approvals: String,
    pub actions: String,
    pub incidents: String,
    pub deadletter: String,
}

/// `[group]`: membership and the verdicts' look-back.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSection {
    pub unassigned_warn_s: u64,
    pub incidents_lookback_s: u64,
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
    /// The message was refused: to the dead-letter topic, then done with.
    Refused(Box<RecordMessage>, &'static str, String),
}

/// How many partitions this actuator holds, for `/metrics`.
#[derive(Debug, Clone, Default)]
struct ActuateMetrics {
    assigned: Gauge,
}

impl ActuateMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = ActuateMetrics::default();
        registry.register(
            "opsloop_actuator_assigned_partitions",
            "Partitions of the remediation and approval topics this actuator holds",
            metrics.assigned.clone(),
        );
        metrics
    }
}

/// Watches the group assignment: logs changes, exports the count, warns when there is none
/// for too long.
struct Membership {
    assigned: Vec<(String, i32)>,
    empty_since: Option<Instant>,
    warned: bool,
    warn_after: Duration,
}

impl Membership {
    fn check(&mut self, mut now: Vec<(String, i32)>, metrics: &ActuateMetrics, health: &Health) {
        now.sort();
        if now != self.assigned {
            tracing::info!(partitions = ?now, "assignment changed");
            metrics.assigned.set(now.len() as i64);
            self.empty_since = now.is_empty().then(Instant::now);
            self.warned = false;
            health.set(None);
            self.assigned = now;
        }
        if let Some(since) = self.empty_since
            && !self.warned
            && since.elapsed() >= self.warn_after
        {
            let problem = format!(
                "no partition of the remediation topic for {} s: another member holds them all, \
                 or the broker still counts a dead member (set group.instance.id in \
                 [kafka.properties] to take its place at once)",
                since.elapsed().as_secs()
            );
            tracing::warn!("{problem}");
            health.set(Some(problem));
            self.warned = true;
        }
    }
}

/// The actuator service, started and ready to run; see the module docs.
#[derive(Debug)]
pub struct ActuateService {
    config: ActuateConfig,
    actuator: Arc<Actuator>,
    outcomes: mpsc::UnboundedReceiver<ActionOutcome>,
    metrics: ActuateMetrics,
    health: Health,
    requests: RecordConsumer,
    incidents: RecordConsumer,
    actions: RecordWriter,
    server: MetricsServer,
}

impl ActuateService {
    /// Opens the audit log, serves `/metrics` and `/healthz`, joins the group.
    pub async fn start(config: ActuateConfig) -> Result<ActuateService, RuntimeError> {
        if config.actuator.planner_key.is_empty() {
            return Err(RuntimeError::Config(
                "no planner key: set [actuator] planner_key (or OPSLOOP_ACTUATOR__PLANNER_KEY) \
                 to the planner's signing_key; without it every remediation event is refused"
                    .to_owned(),
            ));
        }
        let kafka = config.kafka.kafka_config();
        let (outcome_sender, outcomes) = mpsc::unbounded_channel();
        let mut registry = Registry::default();
        let events = ActuatorEvents::register(&mut registry);
        let actuator =
            Arc::new(Actuator::new(config.actuator.clone(), outcome_sender)?.with_events(events));
        let metrics = ActuateMetrics::register(&mut registry);
        let connector_metrics = ConnectorMetrics::register(&mut registry);
        let health = Health::default();
        let server = MetricsServer::start(config.metrics.listen, registry, health.clone()).await?;
        let sink = KafkaSink::new(&kafka, SinkConfig::default())?;
        let codec = Codec::new(WireFormat::Confluent, Arc::new(SchemaRegistry::builtin()));
        let dead_letters = DeadLetterWriter::new(sink.clone(), &config.topics.deadletter);
        let requests = RecordConsumer::start(
            &kafka,
            RecordConsumerConfig {
                group_id: config.kafka.group_id.clone(),
                topics: vec![
                    config.topics.remediation.clone(),
                    config.topics.approvals.clone(),
                ],
                start: RecordStart::Committed,
            },
            codec.clone(),
            Some(dead_letters.clone()),
            connector_metrics.source("actuate"),
        )?;
        let incidents = RecordConsumer::start(
            &kafka,
            RecordConsumerConfig {
                group_id: format!("{}.incidents", config.kafka.group_id),
                topics: vec![config.topics.incidents.clone()],
                start: RecordStart::Since(Duration::from_secs(config.group.incidents_lookback_s)),
            },
            codec.clone(),
            Some(dead_letters),
            connector_metrics.source("actuate.incidents"),
        )?;
        Ok(ActuateService {
            actions: RecordWriter::new(sink, codec, 1_000),
            config,
            actuator,
            outcomes,
            metrics,
            health,
            requests,
            incidents,
            server,
        })
    }

    /// Where `/metrics` and `/healthz` are served.
    pub fn metrics_address(&self) -> SocketAddr {
        self.server.address()
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), RuntimeError> {
        let ActuateService {
            config,
            actuator,
            outcomes: mut outcome_receiver,
            metrics,
            health,
            mut requests,
            mut incidents,
            mut actions,
            server,
        } = self;
        let (done_sender, mut done_receiver) = mpsc::unbounded_channel::<Finished>();
        let mut progress: HashMap<PartitionKey, Progress> = HashMap::new();
        // Gated events waiting for a decision: action id -> where the event is.
        let mut awaiting: HashMap<String, (PartitionKey, i64)> = HashMap::new();
        let mut membership = Membership {
            assigned: Vec::new(),
            empty_since: Some(Instant::now()),
            warned: false,
            warn_after: Duration::from_secs(config.group.unassigned_warn_s),
        };
        let mut commits = tokio::time::interval(Duration::from_secs(1));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                outcome = outcome_receiver.recv() => {
                    let Some(outcome) = outcome else { break };
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
                        Finished::Refused(message, code, reason) => {
                            requests.dead_letter(&message, code, &reason).await;
                            ((message.topic().to_owned(), message.partition()), message.offset())
                        }
                    };
                    if let Some(partition) = progress.get_mut(&key) {
                        partition.in_flight.remove(&offset);
                    }
                }
                _ = commits.tick() => {
                    commit(&requests, &progress);
                    membership.check(requests.assignment(), &metrics, &health);
                }
                message = incidents.next() => {
                    if let Some(incident) = incidents.decode::<Incident>(&message).await {
                        actuator.observe_incident(&incident);
                    }
                }
                message = requests.next() => {
                    let key: PartitionKey = (message.topic().to_owned(), message.partition());
                    let offset = message.offset();
                    progress.entry(key.clone()).or_default().next = Some(offset + 1);
                    let done = done_sender.clone();
                    let actuator = Arc::clone(&actuator);
                    if message.topic() == config.topics.approvals {
                        let Some(approval) = requests.decode::<Approval>(&message).await else {
                            continue;
                        };
                        progress.entry(key.clone()).or_default().in_flight.insert(offset);
                        tokio::spawn(async move {
                            let finished = match actuator.decide(&approval).await {
                                Ok(DecisionOutcome::Refused(refusal)) => Finished::Refused(
                                    Box::new(message),
                                    refusal.code(),
                                    refusal.to_string(),
                                ),
                                Ok(DecisionOutcome::Applied) => {
                                    let _ = done.send(Finished::Decided(approval.action_id.clone()));
                                    Finished::Offset(key, offset)
                                }
                                Ok(DecisionOutcome::Held) => Finished::Offset(key, offset),
                                Err(error) => {
                                    tracing::error!(%error, action_id = %approval.action_id, "deciding failed");
                                    Finished::Offset(key, offset)
                                }
                            };
                            let _ = done.send(finished);
                        });
                        continue;
                    }
                    let Some(event) = requests.decode::<RemediationEvent>(&message).await else {
                        continue;
                    };
                    progress.entry(key.clone()).or_default().in_flight.insert(offset);
                    tokio::spawn(async move {
                        let action_id = event.action_id.clone();
                        let finished = match actuator.handle(event).await {
                            Ok(Handled::AwaitingApproval) => Finished::Awaiting(action_id, key, offset),
                            Ok(Handled::Done) => Finished::Offset(key, offset),
                            Ok(Handled::Refused(refusal)) => {
                                Finished::Refused(Box::new(message), refusal.code(), refusal.to_string())
                            }
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
        commit(&requests, &progress);
        actions.finish().await?;
        server.stop().await;
        Ok(())
    }
}

/// Commits every partition up to its first unfinished offset.
fn commit(requests: &RecordConsumer, progress: &HashMap<PartitionKey, Progress>) {
    let points: Vec<(String, i32, i64)> = progress
        .iter()
        .filter_map(|((topic, partition), state)| {
            state
                .commit_point()
                .map(|point| (topic.clone(), *partition, point))
        })
        .collect();
    if let Err(error) = requests.commit(&points) {
        tracing::warn!(%error, "committing offsets failed");
    }
}
