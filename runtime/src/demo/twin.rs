//! [`FleetTwin`]: the simulated fleet as the actuators' target — the demo's digital twin. An
//! action's probe reads the fleet's latest telemetry of its target; an action that answers a
//! fault of its target (REINDEX and index bloat, a refresh and a stale cache, ending sessions
//! and a runaway query, ...) ends that fault's effect from then on ([`Fleet::remediate`]); one
//! that answers nothing there changes nothing, and the fault runs to its scheduled end.
//!
//! | action | metric it should lower (the fleet's names) | acts when | ends |
//! |---|---|---|---|
//! | cancel / terminate long queries, role statement timeout | `db_longest_query_s` | over the age | runaway query |
//! | terminate blockers | `db_lock_waits` | any wait | runaway query |
//! | reindex | `db_index_bloat_ratio` | over 1.5 | index bloat |
//! | create the advised index | `db_seq_scans_per_s` | any | index degradation |
//! | vacuum | `db_dead_tuples` | any | index bloat |
//! | analyze | `db_query_latency_ms` | any | nothing |
//! | refresh a materialized view | `db_matview_age_s` | any | stale cache |
//! | terminate idle sessions | `db_connections_active` | any | connection exhaustion |
//! | terminate a role's sessions | `db_rows_read_per_s` | any | security anomaly |
//! | scale up / down | `db_cpu_utilization_percent` / `DCGM_FI_DEV_GPU_UTIL` | any | CPU, memory, connections, latency / GPU underutilization |
//! | retrain | `model_error_rate` | any | data drift |
//! | maintenance, capacity plan, failover | the request itself | not yet filed | nothing (a request for people) |

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use opsloop_actions::Action;
use opsloop_actuator::postgres::Probe;
use opsloop_actuator::twin::Twin;
use opsloop_connectors::generate::{FaultKind, FaultWindow, Fleet, Tick};
use tokio::sync::watch;

/// What an action did on the twin.
#[derive(Debug, Clone, PartialEq)]
pub struct Remediation {
    pub target: String,
    pub template: &'static str,
    pub at_us: i64,
    /// The faults it ended.
    pub ended: Vec<FaultKind>,
}

#[derive(Debug)]
struct State {
    fleet: Fleet,
    /// The latest value of every metric, by entity.
    latest: HashMap<String, BTreeMap<String, f64>>,
    /// Requests filed (maintenance, capacity plans, failovers): target and template.
    filed: BTreeSet<(String, &'static str)>,
    remediations: Vec<Remediation>,
}

/// The simulated fleet, ticked by the demo and acted on by the actuator; see the module docs.
#[derive(Debug)]
pub(crate) struct FleetTwin {
    state: Mutex<State>,
    /// Event time of the latest tick.
    clock: watch::Sender<i64>,
    interval_us: i64,
    /// The event times the actions settling on the twin wait for.
    settling: Mutex<Vec<i64>>,
}

impl FleetTwin {
    pub(crate) fn new(fleet: Fleet) -> FleetTwin {
        let (clock, _) = watch::channel(fleet.time_us());
        FleetTwin {
            interval_us: fleet.interval_us(),
            state: Mutex::new(State {
                fleet,
                latest: HashMap::new(),
                filed: BTreeSet::new(),
                remediations: Vec::new(),
            }),
            clock,
            settling: Mutex::new(Vec::new()),
        }
    }

    /// How many actions wait for the twin's clock to move on: those settling on it whose
    /// time has not come.
    pub(crate) fn waiting_for_ticks(&self) -> usize {
        let now = *self.clock.borrow();
        lock(&self.settling)
            .iter()
            .filter(|until| **until > now)
            .count()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The next tick of the fleet; its values become the twin's latest telemetry.
    pub(crate) fn tick(&self) -> Tick {
        let mut state = self.state();
        let tick = state.fleet.tick();
        let State { latest, .. } = &mut *state;
        for batch in &tick.metrics {
            let values = batch.samples.iter().map(|s| (&s.name, s.value));
            keep_latest(latest, &batch.entity, values);
        }
        for gpu in &tick.gpus {
            let values = gpu.fields.iter().map(|(field, value)| (field, *value));
            keep_latest(latest, &gpu.gpu_uuid, values);
        }
        drop(state);
        self.clock.send_replace(tick.time_us);
        tick
    }

    /// Event time of the next tick.
    pub(crate) fn time_us(&self) -> i64 {
        self.state().fleet.time_us()
    }

    pub(crate) fn ground_truth(&self) -> Vec<FaultWindow> {
        self.state().fleet.ground_truth().to_vec()
    }

    pub(crate) fn remediations(&self) -> Vec<Remediation> {
        self.state().remediations.clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `values` as `entity`'s latest, allocating only for an entity or metric seen first.
fn keep_latest<'a>(
    latest: &mut HashMap<String, BTreeMap<String, f64>>,
    entity: &str,
    values: impl Iterator<Item = (&'a String, f64)>,
) {
    if !latest.contains_key(entity) {
        latest.insert(entity.to_owned(), BTreeMap::new());
    }
    let Some(metrics) = latest.get_mut(entity) else {
        return;
    };
    for (name, value) in values {
        match metrics.get_mut(name) {
            Some(kept) => *kept = value,
            None => {
                metrics.insert(name.clone(), value);
            }
        }
    }
}

/// What an action does on the twin (the module docs' table).
struct Effect {
    /// The metric it should lower, and the least value at which it has something to do;
    /// `None` for a request filed for people, which no telemetry shows.
    watched: Option<(&'static str, f64)>,
    /// The faults it ends on its target.
    ends: &'static [FaultKind],
}

fn effect(action: &Action) -> Effect {
    use FaultKind::*;
    let (watched, ends): (Option<(&'static str, f64)>, &'static [FaultKind]) = match action {
        Action::CancelLongQueries { min_age_s } | Action::TerminateLongQueries { min_age_s } => (
            Some(("db_longest_query_s", *min_age_s as f64)),
            &[RunawayQuery],
        ),
        Action::SetRoleStatementTimeout { timeout_ms, .. } => (
            Some(("db_longest_query_s", *timeout_ms as f64 / 1000.0)),
            &[RunawayQuery],
        ),
        Action::TerminateBlockers { .. } => (Some(("db_lock_waits", 0.0)), &[RunawayQuery]),
        Action::ReindexConcurrently { .. } => (Some(("db_index_bloat_ratio", 1.5)), &[IndexBloat]),
        Action::CreateIndexAdvised { .. } => {
            (Some(("db_seq_scans_per_s", 0.0)), &[IndexDegradation])
        }
        Action::Vacuum { .. } => (Some(("db_dead_tuples", 0.0)), &[IndexBloat]),
        Action::Analyze { .. } => (Some(("db_query_latency_ms", 0.0)), &[]),
        Action::RefreshMaterializedView { .. } => (Some(("db_matview_age_s", 0.0)), &[StaleCache]),
        Action::TerminateIdleSessions { .. } => (
            Some(("db_connections_active", 0.0)),
            &[ConnectionExhaustion],
        ),
        Action::TerminateRoleSessions { .. } => {
            (Some(("db_rows_read_per_s", 0.0)), &[SecurityAnomaly])
        }
        Action::Scale { delta, .. } if *delta > 0 => (
            Some(("db_cpu_utilization_percent", 0.0)),
            &[
                CpuSaturation,
                MemoryPressure,
                ConnectionExhaustion,
                LatencySpike,
            ],
        ),
        Action::Scale { .. } => (Some(("DCGM_FI_DEV_GPU_UTIL", 0.0)), &[GpuUnderutilization]),
        Action::Retrain { .. } => (Some(("model_error_rate", 0.0)), &[DataDrift]),
        Action::DropIndex { .. } | Action::ResetRoleStatementTimeout { .. } => (None, &[]),
        Action::Maintenance { .. } | Action::CapacityPlan { .. } | Action::Failover { .. } => {
            (None, &[])
        }
    };
    Effect { watched, ends }
}

impl Twin for FleetTwin {
    fn now_us(&self) -> i64 {
        *self.clock.borrow()
    }

    fn probe(&self, target: &str, action: &Action) -> Option<Probe> {
        let state = self.state();
        let Some((metric, acts_over)) = effect(action).watched else {
            let pending = !state
                .filed
                .contains(&(target.to_owned(), action.template().as_str()));
            let value = if pending { 1.0 } else { 0.0 };
            return Some(Probe {
                primary: "request_pending",
                eligible: "request_pending",
                metrics: BTreeMap::from([("request_pending".to_owned(), value)]),
            });
        };
        let value = *state.latest.get(target)?.get(metric)?;
        let eligible = if value > acts_over { 1.0 } else { 0.0 };
        Some(Probe {
            primary: metric,
            eligible: "eligible",
            metrics: BTreeMap::from([
                (metric.to_owned(), value),
                ("eligible".to_owned(), eligible),
            ]),
        })
    }

    fn apply(&self, target: &str, action: &Action) -> Result<String, String> {
        let at_us = self.now_us();
        let mut state = self.state();
        if !state.latest.contains_key(target) {
            return Err(format!("no entity {target} in the fleet"));
        }
        let template = action.template().as_str();
        let effect = effect(action);
        if effect.watched.is_none() {
            state.filed.insert((target.to_owned(), template));
        }
        let ended = state.fleet.remediate(target, effect.ends, at_us);
        let done = if ended.is_empty() {
            format!("{template} on {target}: no fault there that it answers")
        } else {
            let names: Vec<&str> = ended.iter().map(|k| k.name()).collect();
            format!("{template} on {target}: ended {}", names.join(", "))
        };
        state.remediations.push(Remediation {
            target: target.to_owned(),
            template,
            at_us,
            ended,
        });
        Ok(done)
    }

    fn settle(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        // Two ticks after now: the first whole interval after the action.
        let until = self.now_us() + 2 * self.interval_us;
        let mut clock = self.clock.subscribe();
        lock(&self.settling).push(until);
        Box::pin(async move {
            let _ = clock.wait_for(|now| *now >= until).await;
            let mut settling = lock(&self.settling);
            if let Some(index) = settling.iter().position(|u| *u == until) {
                settling.swap_remove(index);
            }
        })
    }
}
