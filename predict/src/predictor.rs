//! [`Predictor`]: the closed-loop cycle of predictive operations. It keeps per-entity series
//! of window aggregates (p99 latency, resource usage), learns from the incident history, and
//! once per cycle forecasts, scores failure risk, applies the proactive rules and reports.
//!
//! Series are bucketed by `window_s` (the latency bucket keeps its maximum, a resource its
//! latest value) and bounded to `history_points` buckets. At each cycle every entity's
//! current features are recorded as an example; an example is labelled once `risk_horizon_s`
//! has passed (positive if an incident opened for the entity in that time), and the risk
//! model is retrained every `retrain_every` cycles when both labels exist.

use std::collections::{BTreeMap, VecDeque};

use opsloop_schemas::ops::{CycleReport, RemediationEvent};
use serde::Deserialize;

use crate::forecast::{holt_winters, time_to_exhaustion};
use crate::proactive::{Outlook, ProactiveRules, evaluate, to_event};
use crate::risk::{Example, RiskModel, Training};

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
    pub rules: ProactiveRules,
    pub window_s: i64,
    pub history_points: usize,
    /// Buckets per season (a day of hourly buckets is 24).
    pub season_points: usize,
    pub latency_metric: String,
    pub capacity: Vec<CapacityResource>,
    pub risk_horizon_s: i64,
    pub retrain_every: u64,
    /// Deployments by entity, for proactive scaling.
    pub deployments: BTreeMap<String, String>,
}

impl Default for PredictorConfig {
    fn default() -> Self {
        PredictorConfig {
            cycle_interval_s: 300,
            report_topic: opsloop_schemas::topics::CYCLES.to_owned(),
            rules: ProactiveRules::default(),
            window_s: 300,
            history_points: 2016,
            season_points: 288,
            latency_metric: "db_query_latency_ms".to_owned(),
            capacity: Vec::new(),
            risk_horizon_s: 86_400,
            retrain_every: 12,
            deployments: BTreeMap::new(),
        }
    }
}

/// What one cycle produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Cycle {
    pub report: CycleReport,
    pub outlooks: Vec<Outlook>,
    pub events: Vec<RemediationEvent>,
}

#[derive(Debug, Default)]
struct Series {
    /// (bucket start µs, value), oldest first.
    points: VecDeque<(i64, f64)>,
}

const FEATURES: [&str; 3] = ["latency_vs_sla", "latency_trend", "capacity_share"];

/// See the module docs.
#[derive(Debug)]
pub struct Predictor {
    config: PredictorConfig,
    series: BTreeMap<(String, String), Series>,
    incidents: BTreeMap<String, Vec<i64>>,
    pending: Vec<(String, i64, Vec<f64>)>,
    examples: Vec<Example>,
    model: Option<RiskModel>,
    cycles: u64,
    failures_since: i64,
    executed_since: i64,
    verified_since: i64,
    last_cycle_us: Option<i64>,
}

impl Predictor {
    pub fn new(config: PredictorConfig) -> Self {
        Predictor {
            config,
            series: BTreeMap::new(),
            incidents: BTreeMap::new(),
            pending: Vec::new(),
            examples: Vec::new(),
            model: None,
            cycles: 0,
            failures_since: 0,
            executed_since: 0,
            verified_since: 0,
            last_cycle_us: None,
        }
    }

    /// Whether a cycle is due at event time `now_us` (`cycle_interval_s` after the last).
    pub fn due(&self, now_us: i64) -> bool {
        self.last_cycle_us.is_none_or(|last| {
            now_us >= last.saturating_add(self.config.cycle_interval_s * 1_000_000)
        })
    }

    /// Whether `metric` feeds a forecast.
    pub fn wants(&self, metric: &str) -> bool {
        metric == self.config.latency_metric
            || self.config.capacity.iter().any(|c| c.metric == metric)
    }

    pub fn model(&self) -> Option<&RiskModel> {
        self.model.as_ref()
    }

    /// One sample of `metric` for `entity`; metrics nobody forecasts are ignored.
    pub fn observe(&mut self, entity: &str, metric: &str, time_us: i64, value: f64) {
        if !self.wants(metric) {
            return;
        }
        let latency = metric == self.config.latency_metric;
        let window = self.config.window_s.max(1) * 1_000_000;
        let bucket = time_us.div_euclid(window) * window;
        let series = self
            .series
            .entry((entity.to_owned(), metric.to_owned()))
            .or_default();
        match series.points.back_mut() {
            Some((start, last)) if *start == bucket => {
                *last = if latency { last.max(value) } else { value };
            }
            Some((start, _)) if *start > bucket => {}
            _ => {
                series.points.push_back((bucket, value));
                while series.points.len() > self.config.history_points {
                    series.points.pop_front();
                }
            }
        }
    }

    pub fn incident_opened(&mut self, entity: &str, time_us: i64) {
        self.incidents
            .entry(entity.to_owned())
            .or_default()
            .push(time_us);
        self.failures_since += 1;
    }

    pub fn action_executed(&mut self, verified: bool) {
        self.executed_since += 1;
        self.verified_since += i64::from(verified);
    }

    /// Forecasts, scores, plans and reports as of `now_us`.
    pub fn cycle(&mut self, now_us: i64) -> Cycle {
        self.cycles += 1;
        self.last_cycle_us = Some(now_us);
        let cycle_id = format!("cycle-{}-{now_us}", self.cycles);
        let mut models_updated = Vec::new();
        self.label(now_us);
        if self.cycles.is_multiple_of(self.config.retrain_every.max(1))
            && let Some(model) =
                RiskModel::train(&FEATURES, &self.examples, Training::default(), now_us)
        {
            models_updated.push(model.version.clone());
            self.model = Some(model);
        }
        let entities: Vec<String> = {
            let mut all: Vec<String> = self
                .series
                .keys()
                .map(|(entity, _)| entity.clone())
                .collect();
            all.dedup();
            all
        };
        let mut outlooks = Vec::new();
        let mut events = Vec::new();
        for entity in entities {
            let outlook = self.outlook(&entity, now_us);
            let features = self.features(&outlook, &entity);
            self.pending.push((entity.clone(), now_us, features));
            for plan in evaluate(&self.config.rules, &outlook) {
                events.push(to_event(&plan, &entity, &cycle_id, now_us));
            }
            outlooks.push(outlook);
        }
        let report = CycleReport {
            cycle_id,
            time_us: now_us,
            failures_detected: std::mem::take(&mut self.failures_since),
            operations_executed: self.executed_since,
            success_rate: (self.executed_since > 0)
                .then(|| self.verified_since as f64 / self.executed_since as f64),
            models_updated,
            proactive_plans: i64::try_from(events.len()).unwrap_or(i64::MAX),
        };
        self.executed_since = 0;
        self.verified_since = 0;
        Cycle {
            report,
            outlooks,
            events,
        }
    }

    fn values(&self, entity: &str, metric: &str) -> Vec<(i64, f64)> {
        self.series
            .get(&(entity.to_owned(), metric.to_owned()))
            .map(|s| s.points.iter().copied().collect())
            .unwrap_or_default()
    }

    fn outlook(&self, entity: &str, now_us: i64) -> Outlook {
        let window_us = self.config.window_s.max(1) * 1_000_000;
        let latency: Vec<f64> = self
            .values(entity, &self.config.latency_metric)
            .iter()
            .map(|p| p.1)
            .collect();
        let hour = usize::try_from(3_600_000_000 / window_us)
            .unwrap_or(1)
            .max(1);
        let forecast_p99_ms = holt_winters(&latency, self.config.season_points, hour)
            .map(|points| points.into_iter().fold(f64::MIN, f64::max));
        let mut capacity_share = BTreeMap::new();
        for resource in &self.config.capacity {
            let points = self.values(entity, &resource.metric);
            if points.len() < 3 || resource.limit <= 0.0 {
                continue;
            }
            let times: Vec<f64> = points.iter().map(|p| p.0 as f64 / 1e6).collect();
            let values: Vec<f64> = points.iter().map(|p| p.1).collect();
            let week_s = 7.0 * 86_400.0;
            let now_s = now_us as f64 / 1e6;
            // The share a week out: by the trend, or the latest value when it is not growing.
            let latest = values.last().copied().unwrap_or(0.0);
            let share = match time_to_exhaustion(&times, &values, resource.limit, now_s) {
                Some(seconds) if seconds <= week_s => 1.0,
                _ => {
                    let slope = opsloop_udfs::forecast::trend::LinearTrend::fit(&times, &values)
                        .map_or(0.0, |t| t.slope.max(0.0));
                    (latest + slope * week_s) / resource.limit
                }
            };
            capacity_share.insert(resource.resource.clone(), share);
        }
        let mut outlook = Outlook {
            entity: entity.to_owned(),
            failure_risk: None,
            forecast_p99_ms,
            capacity_share,
            deployment: self.config.deployments.get(entity).cloned(),
            model_version: self.model.as_ref().map(|m| m.version.clone()),
        };
        if let Some(model) = &self.model {
            outlook.failure_risk = Some(model.risk(&self.features(&outlook, entity)));
        }
        outlook
    }

    fn features(&self, outlook: &Outlook, entity: &str) -> Vec<f64> {
        let latency = self.values(entity, &self.config.latency_metric);
        let last = latency.last().map_or(0.0, |p| p.1);
        let recent: Vec<&(i64, f64)> = latency.iter().rev().take(12).collect();
        let trend = match (recent.first(), recent.last()) {
            (Some(newest), Some(oldest)) if recent.len() > 1 => {
                (newest.1 - oldest.1) / self.config.rules.sla_p99_ms
            }
            _ => 0.0,
        };
        let capacity = outlook.capacity_share.values().copied().fold(0.0, f64::max);
        vec![last / self.config.rules.sla_p99_ms, trend, capacity]
    }

    /// Examples whose horizon has passed get their label.
    fn label(&mut self, now_us: i64) {
        let horizon = self.config.risk_horizon_s * 1_000_000;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(_, at, _)| at + horizon <= now_us);
        self.pending = waiting;
        for (entity, at, features) in ready {
            let followed = self
                .incidents
                .get(&entity)
                .is_some_and(|times| times.iter().any(|t| *t > at && *t <= at + horizon));
            self.examples.push(Example {
                features,
                incident_followed: followed,
            });
        }
    }
}
