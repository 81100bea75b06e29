//! Incident notifications: tiered alerts pushed to a Prometheus Alertmanager (its v2 API) and
//! to generic webhooks, so teams keep their paging setup.
//!
//! A [`Notifier`] runs on its own thread with a bounded queue: the engine loop hands it
//! notifications and never waits on HTTP. Each push has a timeout and retries with doubling
//! back-off; a push that still fails is logged and counted, and the next version of the
//! incident (or its repeat) carries the state again.

mod alertmanager;
mod webhook;

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use opsloop_correlator::Notification;
use opsloop_schemas::ops::Tier;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Deserialize;

/// `[notifications]`: where incidents are pushed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySection {
    /// A Prometheus Alertmanager, e.g. `http://alertmanager:9093`.
    #[serde(default)]
    pub alertmanager: Option<EndpointConfig>,
    /// Generic webhooks; each receives every notification at or above its `min_tier`.
    #[serde(default)]
    pub webhooks: Vec<EndpointConfig>,
}

/// One HTTP endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    pub url: String,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Only incidents of this tier or more critical (T1 is the most critical).
    #[serde(default = "default_min_tier")]
    pub min_tier: Tier,
}

fn default_timeout_ms() -> u64 {
    5_000
}

fn default_retries() -> u32 {
    3
}

fn default_min_tier() -> Tier {
    Tier::T4
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReceiverLabel {
    receiver: String,
}

/// `opsloop_notifications_total{receiver}` and `opsloop_notification_failures_total{receiver}`.
#[derive(Debug, Clone, Default)]
pub struct NotifyMetrics {
    sent: Family<ReceiverLabel, Counter>,
    failed: Family<ReceiverLabel, Counter>,
    dropped: Counter,
}

impl NotifyMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = NotifyMetrics::default();
        registry.register(
            "opsloop_notifications",
            "Incident notifications delivered, per receiver",
            metrics.sent.clone(),
        );
        registry.register(
            "opsloop_notification_failures",
            "Incident notifications that failed after every retry, per receiver",
            metrics.failed.clone(),
        );
        registry.register(
            "opsloop_notifications_dropped",
            "Notifications dropped because the notifier's queue was full",
            metrics.dropped.clone(),
        );
        metrics
    }
}

/// A receiver of notifications over HTTP.
trait Receive: Send {
    fn name(&self) -> &str;
    fn endpoint(&self) -> &EndpointConfig;
    /// The request body for `notification`.
    fn body(&self, notification: &Notification) -> String;
}

/// The running notifier: a queue and the thread draining it.
#[derive(Debug)]
pub struct Notifier {
    queue: Option<SyncSender<Notification>>,
    thread: Option<JoinHandle<()>>,
    metrics: NotifyMetrics,
}

const QUEUE_CAPACITY: usize = 10_000;

impl Notifier {
    /// Starts the notifier thread; with no receiver configured nothing is started.
    pub fn start(config: &NotifySection, metrics: NotifyMetrics) -> Self {
        let mut receivers: Vec<Box<dyn Receive>> = Vec::new();
        if let Some(endpoint) = &config.alertmanager {
            receivers.push(Box::new(alertmanager::Alertmanager::new(endpoint.clone())));
        }
        for endpoint in &config.webhooks {
            receivers.push(Box::new(webhook::Webhook::new(endpoint.clone())));
        }
        if receivers.is_empty() {
            return Notifier {
                queue: None,
                thread: None,
                metrics,
            };
        }
        let (queue, received) = sync_channel(QUEUE_CAPACITY);
        let thread_metrics = metrics.clone();
        let thread = std::thread::Builder::new()
            .name("opsloop-notifier".to_owned())
            .spawn(move || deliver_all(receivers, received, thread_metrics))
            .ok();
        if thread.is_none() {
            tracing::error!("cannot start the notifier thread; notifications are off");
        }
        Notifier {
            queue: thread.as_ref().map(|_| queue),
            thread,
            metrics,
        }
    }

    /// Queues `notification`; drops it (and counts it) if the queue is full.
    pub fn notify(&self, notification: Notification) {
        let Some(queue) = &self.queue else {
            return;
        };
        match queue.try_send(notification) {
            Ok(()) => {}
            Err(TrySendError::Full(dropped)) => {
                self.metrics.dropped.inc();
                tracing::warn!(
                    incident_id = %dropped.incident.incident_id,
                    "notifier queue full; notification dropped"
                );
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Delivers what is queued, then stops the thread.
    pub fn finish(mut self) {
        self.queue = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the notifier thread panicked");
        }
    }
}

fn deliver_all(
    receivers: Vec<Box<dyn Receive>>,
    received: Receiver<Notification>,
    metrics: NotifyMetrics,
) {
    let agents: Vec<ureq::Agent> = receivers
        .iter()
        .map(|receiver| {
            ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_millis(receiver.endpoint().timeout_ms)))
                .build()
                .into()
        })
        .collect();
    for notification in received {
        for (receiver, agent) in receivers.iter().zip(&agents) {
            if notification.incident.tier > receiver.endpoint().min_tier {
                continue;
            }
            let label = ReceiverLabel {
                receiver: receiver.name().to_owned(),
            };
            match post(agent, receiver.as_ref(), &notification) {
                Ok(()) => {
                    metrics.sent.get_or_create(&label).inc();
                }
                Err(error) => {
                    metrics.failed.get_or_create(&label).inc();
                    tracing::warn!(
                        receiver = receiver.name(),
                        incident_id = %notification.incident.incident_id,
                        %error,
                        "notification failed after every retry"
                    );
                }
            }
        }
    }
}

/// POSTs the receiver's body, retrying with doubling back-off from 200 ms.
fn post(
    agent: &ureq::Agent,
    receiver: &dyn Receive,
    notification: &Notification,
) -> Result<(), ureq::Error> {
    let endpoint = receiver.endpoint();
    let body = receiver.body(notification);
    let mut backoff = Duration::from_millis(200);
    let mut attempt = 0;
    loop {
        let sent = agent
            .post(&endpoint.url)
            .header("content-type", "application/json")
            .send(body.as_str());
        match sent {
            Ok(_) => return Ok(()),
            Err(error) if attempt >= endpoint.retries => return Err(error),
            Err(error) => {
                tracing::debug!(receiver = receiver.name(), %error, attempt, "notification retry");
                std::thread::sleep(backoff);
                backoff *= 2;
                attempt += 1;
            }
        }
    }
}
