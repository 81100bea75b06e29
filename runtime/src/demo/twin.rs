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
pub struct FleetTwin {
    state: Mutex<State>,
    /// Event time of the latest tick.
    clock: watch::Sender<i64>,
    interval_us: i64,
}

impl FleetTwin {
    pub fn new(fleet: Fleet) -> FleetTwin {
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
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next tick of the fleet; its values become the twin's latest telemetry.
    pub fn tick(&self) -> Tick {
        let mut state = self.state();
        let tick = state.fleet.tick();
        for batch in &tick.metrics {
            let latest = state.latest.entry(batch.entity.clone()).or_default();
            for sample in &batch.samples {
                latest.insert(sample.name.clone(), sample.value);
            }
        }
        for gpu in &tick.gpus {
            let latest = state.latest.entry(gpu.gpu_uuid.clone()).or_default();
            for (field, value) in &gpu.fields {
                latest.insert(field.clone(), *value);
            }
        }
        drop(state);
        self.clock.send_replace(tick.time_us);
        tick
    }

    /// Event time of the next tick.
    pub fn time_us(&self) -> i64 {
        self.state().fleet.time_us()
    }

    pub fn ground_truth(&self) -> Vec<FaultWindow> {
        self.state().fleet.ground_truth().to_vec()
    }

    pub fn remediations(&self) -> Vec<Remediation> {
        self.state().remediations.clone()
    }

    pub fn fleet_config(&self) -> opsloop_connectors::generate::FleetConfig {
        self.state().fleet.config().clone()
    }
}

/// The metric `action` should lower, and the least value at which it has something to do.
fn watched(action: &Action) -> Option<(&'static str, f64)> {
    Some(match action {
        Action::CancelLongQueries { min_age_s } | Action::TerminateLongQueries { min_age_s } => {
            ("db_longest_query_s", *min_age_s as f64)
        }
        Action::SetRoleStatementTimeout { timeout_ms, .. } => {
            ("db_longest_query_s", *timeout_ms as f64 / 1000.0)
        }
        Action::TerminateBlockers { .. } => ("db_lock_waits", 0.0),
        Action::ReindexConcurrently { .. } => ("db_index_bloat_ratio", 1.5),
        Action::CreateIndexAdvised { .. } => ("db_seq_scans_per_s", 0.0),
        Action::Vacuum { .. } => ("db_dead_tuples", 0.0),
        Action::Analyze { .. } => ("db_query_latency_ms", 0.0),
        Action::RefreshMaterializedView { .. } => ("db_matview_age_s", 0.0),
        Action::TerminateIdleSessions { .. } => ("db_connections_active", 0.0),
        Action::TerminateRoleSessions { .. } => ("db_rows_read_per_s", 0.0),
        Action::Scale { delta, .. } if *delta > 0 => ("db_cpu_utilization_percent", 0.0),
        Action::Scale { .. } => ("DCGM_FI_DEV_GPU_UTIL", 0.0),
        Action::Retrain { .. } => ("model_error_rate", 0.0),
        Action::DropIndex { .. }
        | Action::ResetRoleStatementTimeout { .. }
        | Action::Maintenance { .. }
        | Action::CapacityPlan { .. }
        | Action::Failover { .. } => return None,
    })
}

/// The faults `action` ends on its target.
fn ends(action: &Action) -> &'static [FaultKind] {
    match action {
        Action::CancelLongQueries { .. }
        | Action::TerminateLongQueries { .. }
        | Action::SetRoleStatementTimeout { .. }
        | Action::TerminateBlockers { .. } => &[FaultKind::RunawayQuery],
        Action::ReindexConcurrently { .. } | Action::Vacuum { .. } => &[FaultKind::IndexBloat],
        Action::CreateIndexAdvised { .. } => &[FaultKind::IndexDegradation],
        Action::RefreshMaterializedView { .. } => &[FaultKind::StaleCache],
        Action::TerminateIdleSessions { .. } => &[FaultKind::ConnectionExhaustion],
        Action::TerminateRoleSessions { .. } => &[FaultKind::SecurityAnomaly],
        Action::Scale { delta, .. } if *delta > 0 => &[
            FaultKind::CpuSaturation,
            FaultKind::MemoryPressure,
            FaultKind::ConnectionExhaustion,
            FaultKind::LatencySpike,
        ],
        Action::Scale { .. } => &[FaultKind::GpuUnderutilization],
        Action::Retrain { .. } => &[FaultKind::DataDrift],
        Action::Analyze { .. }
        | Action::DropIndex { .. }
        | Action::ResetRoleStatementTimeout { .. }
        | Action::Maintenance { .. }
        | Action::CapacityPlan { .. }
        | Action::Failover { .. } => &[],
    }
}

impl Twin for FleetTwin {
    fn now_us(&self) -> i64 {
        *self.clock.borrow()
    }

    fn probe(&self, target: &str, action: &Action) -> Option<Probe> {
        let state = self.state();
        let Some((metric, acts_over)) = watched(action) else {
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
        if watched(action).is_none() {
            state.filed.insert((target.to_owned(), template));
        }
        let ended = state.fleet.remediate(target, ends(action), at_us);
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
        Box::pin(async move {
            let _ = clock.wait_for(|now| *now >= until).await;
        })
    }
}
