//! [`Predictor`]: the closed-loop cycle of predictive operations. It keeps the windowed
//! aggregates of the metrics it forecasts, learns from the incident history, and once per
//! cycle runs the forecast jobs (SQL, see [`jobs`](crate::jobs)), scores failure risk, applies
//! the proactive rules and reports.
//!
//! At each cycle every entity's current features are recorded as an example; an example is
//! labelled once `risk_horizon_s` has passed (positive if an incident opened for the entity in
//! that time), the newest `max_examples` are kept, and the risk model is retrained every
//! `retrain_every` cycles when both labels exist. A proactive plan is made once per condition
//! (entity, rule, template, parameters) until its act-within deadline passes, then again if
//! the condition still holds. [`Predictor::snapshot`] saves all of it
//! (windows, history, model) for a checkpoint, so a restart forecasts from where it stopped.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use opsloop_schemas::ops::{CycleReport, Forecast, RemediationEvent};
use serde::{Deserialize, Serialize};

use crate::error::PredictError;
use crate::jobs::{CycleInputs, ForecastJobs};
use crate::proactive::{Outlook, ProactiveRules, evaluate, to_event};
use crate::risk::{Example, RiskModel, Training};
use crate::windows::Windows;

/// A resource whose demand is forecast against a limit.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityResource {
    /// storage, connections, gpu_memory, ...
    pub resource: String,
    /// The metric carrying its usage.
    pub metric: String,
    /// Its limit, in the metric's unit.
    pub limit: f64,
}

/// `[predict]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PredictorConfig {
    /// Event time between two cycles, seconds.
    pub cycle_interval_s: i64,
    /// Where each cycle's report goes (ops.cycles).
    pub report_topic: String,
    /// Where each forecast goes (ops.forecasts).
    pub forecasts_topic: String,
    pub rules: ProactiveRules,
    /// Width of the windows the forecasts read, seconds.
    pub window_s: i64,
    /// Windows kept per entity and metric.
    pub history_points: usize,
    /// Windows per season (a day of 5-minute windows is 288).
    pub season_points: usize,
    /// The latency the SLA is about: the risk model's features and the p99 forecast job.
    pub latency_metric: String,
    /// Limits of resources the capacity job forecasts against (connections and GPU memory
    /// take theirs from the telemetry).
    pub capacity: Vec<CapacityResource>,
    /// Metrics kept as windows besides the latency and capacity ones.
    pub metrics: Vec<String>,
    /// A folder of forecast jobs (`*.sql`) run instead of the built-in ones.
    pub jobs_dir: Option<PathBuf>,
    pub risk_horizon_s: i64,
    pub retrain_every: u64,
    /// Training examples kept (the newest).
    pub max_examples: usize,
    /// Deployments by entity, for proactive scaling.
    pub deployments: BTreeMap<String, String>,
}

impl Default for PredictorConfig {
    fn default() -> Self {
        PredictorConfig {
            cycle_interval_s: 300,
            report_topic: opsloop_schemas::topics::CYCLES.to_owned(),
            forecasts_topic: opsloop_schemas::topics::FORECASTS.to_owned(),
            rules: ProactiveRules::default(),
            window_s: 300,
            history_points: 2016,
            season_points: 288,
            latency_metric: "db_query_latency_ms".to_owned(),
            capacity: Vec::new(),
            metrics: [
                "db_connections_active",
                "db_connections_max",
                "DCGM_FI_DEV_FB_USED",
                "DCGM_FI_DEV_FB_FREE",
                "db_qps",
                "db_cost_usd_per_hour",
            ]
            .map(str::to_owned)
            .to_vec(),
            jobs_dir: None,
            risk_horizon_s: 86_400,
            retrain_every: 12,
            max_examples: 10_000,
            deployments: BTreeMap::new(),
        }
    }
}

/// What one cycle produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Cycle {
    pub report: CycleReport,
    /// Every forecast the jobs made.
    pub forecasts: Vec<Forecast>,
    pub outlooks: Vec<Outlook>,
    pub events: Vec<RemediationEvent>,
}

const FEATURES: [&str; 3] = ["latency_vs_sla", "latency_trend", "capacity_share"];

/// A cycle's forecast jobs with the windows they read (see [`Predictor::start_cycle`]).
#[derive(Debug)]
pub struct CycleJobs {
    jobs: ForecastJobs,
    windows: RecordBatch,
    inputs: CycleInputs,
}

impl CycleJobs {
    pub async fn run(self) -> Result<Vec<Forecast>, PredictError> {
        self.jobs.run(self.windows, &self.inputs).await
    }
}

/// What a checkpoint keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct State {
    windows: Windows,
    /// Incident open times by entity.
    incidents: BTreeMap<String, Vec<i64>>,
    /// (entity, time, features) waiting for their horizon to pass.
    pending: Vec<(String, i64, Vec<f64>)>,
    examples: VecDeque<Example>,
    model: Option<RiskModel>,
    /// Proactive plans made, by entity, rule, template and parameters: until their deadline.
    issued: BTreeMap<String, i64>,
    cycles: u64,
    failures_since: i64,
    executed_since: i64,
    verified_since: i64,
    /// Event time the next cycle's interval counts from (see [`Predictor::due`]).
    interval_from_us: Option<i64>,
    first_sample_us: Option<i64>,
}

/// See the module docs.
#[derive(Debug)]
pub struct Predictor {
    config: PredictorConfig,
    jobs: ForecastJobs,
    state: State,
}

impl Predictor {
    /// A predictor with no history; its jobs come from `jobs_dir` or are the built-in ones.
    pub fn new(config: PredictorConfig) -> Result<Self, PredictError> {
        let jobs = match &config.jobs_dir {
            Some(dir) => ForecastJobs::load(dir)?,
            None => ForecastJobs::builtin(),
        };
        let state = State {
            windows: Windows::new(config.window_s, config.history_points),
            incidents: BTreeMap::new(),
            pending: Vec::new(),
            examples: VecDeque::new(),
            model: None,
            issued: BTreeMap::new(),
            cycles: 0,
            failures_since: 0,
            executed_since: 0,
            verified_since: 0,
            interval_from_us: None,
            first_sample_us: None,
        };
        Ok(Predictor {
            config,
            jobs,
            state,
        })
    }

    /// A predictor resumed from [`snapshot`](Self::snapshot) bytes. Windows saved with another
    /// width are dropped (they would not line up with new ones); the rest carries over.
    pub fn restore(config: PredictorConfig, snapshot: &[u8]) -> Result<Self, PredictError> {
        let mut predictor = Predictor::new(config)?;
        let mut state: State = serde_json::from_slice(snapshot)
            .map_err(|error| PredictError::Snapshot(error.to_string()))?;
        if state.windows.width_us() != predictor.state.windows.width_us() {
            state.windows = predictor.state.windows.clone();
        }
        predictor.state = state;
        Ok(predictor)
    }

    /// The saved state, for a checkpoint.
    pub fn snapshot(&self) -> Result<Vec<u8>, PredictError> {
        serde_json::to_vec(&self.state).map_err(|error| PredictError::Snapshot(error.to_string()))
    }

    /// Runs every job once on empty tables, so a broken job fails at start-up.
    pub async fn check_jobs(&self) -> Result<(), PredictError> {
        self.jobs.check(&self.inputs(0)).await
    }

    pub fn job_names(&self) -> impl Iterator<Item = &str> {
        self.jobs.names()
    }

    /// Whether a cycle is due at event time `now_us`: `cycle_interval_s` after the last one,
    /// or, before the first, after the first sample kept (a cycle wants an interval of history
    /// to forecast from; with nothing kept yet, after the first time this was asked).
    pub fn due(&mut self, now_us: i64) -> bool {
        let first_sample = self.state.first_sample_us;
        let since = *self
            .state
            .interval_from_us
            .get_or_insert(first_sample.unwrap_or(now_us));
        now_us >= since.saturating_add(self.config.cycle_interval_s * 1_000_000)
    }

    /// Whether `metric` is kept as windows.
    pub fn wants(&self, metric: &str) -> bool {
        metric == self.config.latency_metric
            || self.config.capacity.iter().any(|c| c.metric == metric)
            || self.config.metrics.iter().any(|m| m == metric)
    }

    /// The windows kept so far.
    pub fn windows(&self) -> &Windows {
        &self.state.windows
    }

    pub fn model(&self) -> Option<&RiskModel> {
        self.state.model.as_ref()
    }

    /// One sample of `metric` for `entity`; metrics nobody forecasts are ignored.
    pub fn observe(&mut self, entity: &str, metric: &str, time_us: i64, value: f64) {
        if self.wants(metric) {
            self.state.windows.observe(entity, metric, time_us, value);
            let first = self.state.first_sample_us.get_or_insert(time_us);
            *first = (*first).min(time_us);
        }
    }

    /// The samples of the metrics it forecasts in a micro-batch of the engine's stream tables:
    /// metric samples (entity, name, value, time) or DCGM samples (gpu_uuid, fields map,
    /// time). Other tables are ignored.
    pub fn observe_batch(&mut self, rows: &RecordBatch) {
        let column = |name: &str| rows.column_by_name(name);
        // Event time, µs: `time` (a timestamp) or `time_us` (as the records carry it).
        let Some(time) = ["time", "time_us"]
            .into_iter()
            .find_map(column)
            .and_then(|t| cast(t, &DataType::Int64).ok())
        else {
            return;
        };
        let Some(time) = time.as_primitive_opt::<Int64Type>() else {
            return;
        };
        if let (Some(gpu), Some(fields)) = (
            column("gpu_uuid").and_then(|c| c.as_string_opt::<i32>()),
            column("fields").and_then(|c| c.as_map_opt()),
        ) {
            let names = fields.keys().as_string_opt::<i32>();
            let values = fields.values().as_primitive_opt::<Float64Type>();
            let (Some(names), Some(values)) = (names, values) else {
                return;
            };
            let offsets = fields.value_offsets();
            for row in 0..rows.num_rows() {
                let entries = usize::try_from(offsets[row]).unwrap_or(0)
                    ..usize::try_from(offsets[row + 1]).unwrap_or(0);
                for entry in entries {
                    if values.is_valid(entry) && self.wants(names.value(entry)) {
                        self.observe(
                            gpu.value(row),
                            names.value(entry),
                            time.value(row),
                            values.value(entry),
                        );
                    }
                }
            }
            return;
        }
        let (Some(entity), Some(name), Some(value)) = (
            column("entity").and_then(|c| c.as_string_opt::<i32>()),
            column("name").and_then(|c| c.as_string_opt::<i32>()),
            column("value").and_then(|c| c.as_primitive_opt::<Float64Type>()),
        ) else {
            return;
        };
        for row in 0..rows.num_rows() {
            if name.is_null(row) || value.is_null(row) || !self.wants(name.value(row)) {
                continue;
            }
            self.observe(
                entity.value(row),
                name.value(row),
                time.value(row),
                value.value(row),
            );
        }
    }

    pub fn incident_opened(&mut self, entity: &str, time_us: i64) {
        self.state
            .incidents
            .entry(entity.to_owned())
            .or_default()
            .push(time_us);
        self.state.failures_since += 1;
    }

    pub fn action_executed(&mut self, verified: bool) {
        self.state.executed_since += 1;
        self.state.verified_since += i64::from(verified);
    }

    fn inputs(&self, now_us: i64) -> CycleInputs {
        CycleInputs {
            now_us,
            window_s: self.config.window_s,
            season_steps: i64::try_from(self.config.season_points).unwrap_or(i64::MAX),
            latency_metric: self.config.latency_metric.clone(),
            capacity: self
                .config
                .capacity
                .iter()
                .map(|c| (c.resource.clone(), c.metric.clone(), c.limit))
                .collect(),
        }
    }

    /// Forecasts, scores, plans and reports as of `now_us`: [`start_cycle`](Self::start_cycle),
    /// its jobs, [`finish_cycle`](Self::finish_cycle).
    pub async fn cycle(&mut self, now_us: i64) -> Result<Cycle, PredictError> {
        let jobs = self.start_cycle(now_us);
        let forecasts = jobs.run().await?;
        Ok(self.finish_cycle(now_us, forecasts))
    }

    /// The forecast jobs of a cycle at `now_us` over the windows as they are now, to run apart
    /// from the predictor (which goes on observing). The next cycle is due `cycle_interval_s`
    /// after this one, whether its jobs succeed or not.
    pub fn start_cycle(&mut self, now_us: i64) -> CycleJobs {
        self.state.interval_from_us = Some(now_us);
        CycleJobs {
            jobs: self.jobs.clone(),
            windows: self.state.windows.to_batch(),
            inputs: self.inputs(now_us),
        }
    }

    /// Scores, plans and reports the cycle at `now_us` from its jobs' `forecasts`.
    pub fn finish_cycle(&mut self, now_us: i64, mut forecasts: Vec<Forecast>) -> Cycle {
        let state = &mut self.state;
        state.cycles += 1;
        let cycle_id = format!("cycle-{}-{now_us}", state.cycles);
        for forecast in &mut forecasts {
            forecast.cycle_id.clone_from(&cycle_id);
        }
        let mut models_updated = Vec::new();
        self.label(now_us);
        if self
            .state
            .cycles
            .is_multiple_of(self.config.retrain_every.max(1))
        {
            let examples: Vec<Example> = self.state.examples.iter().cloned().collect();
            if let Some(model) = RiskModel::train(&FEATURES, &examples, Training::default(), now_us)
            {
                models_updated.push(model.version.clone());
                self.state.model = Some(model);
            }
        }
        self.state.issued.retain(|_, until| *until > now_us);
        let mut entities: Vec<String> = self
            .state
            .windows
            .entities()
            .map(str::to_owned)
            .chain(forecasts.iter().map(|f| f.entity.clone()))
            .collect();
        entities.sort();
        entities.dedup();
        let mut outlooks = Vec::new();
        let mut events = Vec::new();
        for entity in entities {
            let outlook = self.outlook(&entity, &forecasts);
            if self.state.windows.entities().any(|e| e == entity) {
                let features = self.features(&outlook, &entity);
                self.state.pending.push((entity.clone(), now_us, features));
            }
            for plan in evaluate(&self.config.rules, &outlook) {
                // One plan per condition until its deadline: a forecast that stays above a
                // threshold for a week asks for capacity once, not at every cycle.
                let key = format!("{entity}/{}/{:?}", plan.rule, plan.action);
                if self
                    .state
                    .issued
                    .get(&key)
                    .is_some_and(|until| *until > now_us)
                {
                    continue;
                }
                let event = to_event(&plan, &entity, &cycle_id, now_us);
                self.state
                    .issued
                    .insert(key, event.deadline_us.unwrap_or(now_us));
                events.push(event);
            }
            outlooks.push(outlook);
        }
        let state = &mut self.state;
        let report = CycleReport {
            cycle_id,
            time_us: now_us,
            failures_detected: std::mem::take(&mut state.failures_since),
            operations_executed: state.executed_since,
            success_rate: (state.executed_since > 0)
                .then(|| state.verified_since as f64 / state.executed_since as f64),
            models_updated,
            proactive_plans: i64::try_from(events.len()).unwrap_or(i64::MAX),
        };
        state.executed_since = 0;
        state.verified_since = 0;
        Cycle {
            report,
            forecasts,
            outlooks,
            events,
        }
    }

    /// What the forecasts about `entity` and the risk model say.
    fn outlook(&self, entity: &str, forecasts: &[Forecast]) -> Outlook {
        let mine: Vec<&Forecast> = forecasts.iter().filter(|f| f.entity == entity).collect();
        let mut outlook = Outlook {
            entity: entity.to_owned(),
            deployment: self.config.deployments.get(entity).cloned(),
            model_version: self.state.model.as_ref().map(|m| m.version.clone()),
            ..Outlook::default()
        };
        for forecast in &mine {
            match (forecast.forecast.as_str(), &forecast.resource) {
                ("latency_p99_ms", _) => {
                    outlook.forecast_p99_ms = Some(
                        outlook
                            .forecast_p99_ms
                            .map_or(forecast.value, |p| p.max(forecast.value)),
                    );
                }
                ("capacity_share", Some(resource)) => {
                    let share = outlook
                        .capacity_share
                        .entry(resource.clone())
                        .or_insert(forecast.value);
                    *share = share.max(forecast.value);
                    if let Some(seconds) = forecast.time_to_exhaustion_s {
                        outlook
                            .time_to_exhaustion_s
                            .insert(resource.clone(), seconds);
                    }
                }
                _ => {}
            }
        }
        outlook.forecasts = mine.into_iter().cloned().collect();
        if let Some(model) = &self.state.model
            && self.state.windows.entities().any(|e| e == entity)
        {
            outlook.failure_risk = Some(model.risk(&self.features(&outlook, entity)));
        }
        outlook
    }

    fn features(&self, outlook: &Outlook, entity: &str) -> Vec<f64> {
        let latency = self.state.windows.p99s(entity, &self.config.latency_metric);
        let sla = self.config.rules.sla_p99_ms;
        let last = latency.last().map_or(0.0, |p| p.1);
        let recent: Vec<&(i64, f64)> = latency.iter().rev().take(12).collect();
        let trend = match (recent.first(), recent.last()) {
            (Some(newest), Some(oldest)) if recent.len() > 1 => (newest.1 - oldest.1) / sla,
            _ => 0.0,
        };
        let capacity = outlook.capacity_share.values().copied().fold(0.0, f64::max);
        vec![last / sla, trend, capacity]
    }

    /// Examples whose horizon has passed get their label; incidents too old to label anything
    /// are forgotten.
    fn label(&mut self, now_us: i64) {
        let horizon = self.config.risk_horizon_s * 1_000_000;
        let state = &mut self.state;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut state.pending)
            .into_iter()
            .partition(|(_, at, _)| at + horizon <= now_us);
        state.pending = waiting;
        for (entity, at, features) in ready {
            let followed = state
                .incidents
                .get(&entity)
                .is_some_and(|times| times.iter().any(|t| *t > at && *t <= at + horizon));
            state.examples.push_back(Example {
                features,
                incident_followed: followed,
            });
            while state.examples.len() > self.config.max_examples.max(1) {
                state.examples.pop_front();
            }
        }
        let oldest_pending = state
            .pending
            .iter()
            .map(|(_, at, _)| *at)
            .min()
            .unwrap_or(now_us);
        for times in state.incidents.values_mut() {
            times.retain(|t| *t > oldest_pending);
        }
        state.incidents.retain(|_, times| !times.is_empty());
    }
}
