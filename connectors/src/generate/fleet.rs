//! The simulator: a [`Fleet`] built from a [`FleetConfig`] yields one [`Tick`] of records per
//! sample interval and knows the ground truth of its faults.

use std::time::Duration;

use opsloop_schemas::telemetry::{FeatureSample, GpuSample, LogRecord, MetricBatch};

use super::config::FleetConfig;
use super::effects::{Effects, ScheduledFault, Target};
use super::fault::{FaultKind, FaultSpec, FaultSpecError, TargetKind};
use super::logs::{APP_USER, LogContext, fault_logs, offset_within, slow_query};
use super::rng::Rng;
use super::series::{DbSeries, DbValues, GpuSeries, ModelSeries, Slots, empty_batch, gpu_hostname};

/// Random streams of one seed: entity parameters, per-sample noise, fault log lines.
const SETUP_STREAM: u64 = 1;
const NOISE_STREAM: u64 = 2;
const FAULT_STREAM: u64 = 3;

/// Chance per database and interval of a slow-query line with no fault about.
const BACKGROUND_SLOW_QUERY_RATE: f64 = 0.02;

/// A config the simulator cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FleetError {
    #[error("invalid fleet config: {field} {problem}")]
    Invalid {
        field: &'static str,
        problem: &'static str,
    },
    #[error(transparent)]
    Fault(#[from] FaultSpecError),
    #[error("fault {fault} targets {target:?}, which is not a {expected} of this fleet ({known})")]
    UnknownTarget {
        fault: String,
        target: String,
        expected: &'static str,
        known: String,
    },
}

/// The records of one sample interval, all stamped at or after `time_us` and before the next
/// tick's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tick {
    /// Event time of the interval's start, microseconds since the Unix epoch.
    pub time_us: i64,
    /// One batch per database (entity `db-N`), then one per model (entity `model-N`).
    pub metrics: Vec<MetricBatch>,
    /// One sample per GPU.
    pub gpus: Vec<GpuSample>,
    /// Every model's feature values for the interval.
    pub features: Vec<FeatureSample>,
    /// Slow queries and the lines faults make entities write.
    pub logs: Vec<LogRecord>,
}

impl Tick {
    /// Metric samples, GPU fields and feature values: the numbers a rate-controlled generator
    /// counts as samples. Log lines are not samples.
    pub fn sample_count(&self) -> usize {
        self.metrics.iter().map(|b| b.samples.len()).sum::<usize>()
            + self.gpus.iter().map(|g| g.fields.len()).sum::<usize>()
            + self.features.len()
    }
}

/// Where and when one scheduled fault acts, in absolute event time, for scoring detections.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultWindow {
    /// What went wrong.
    pub kind: FaultKind,
    /// The target as scheduled.
    pub target: String,
    /// First instant of the fault, microseconds since the Unix epoch.
    pub start_us: i64,
    /// First instant after the fault: every effect is gone from here on.
    pub end_us: i64,
    /// The effect size as scheduled.
    pub magnitude: f64,
    /// Entities whose records the fault moves: the database; the model and its feature
    /// store; the GPUs by uuid (and, for underutilization, the host's database).
    pub entities: Vec<String>,
}

impl FaultWindow {
    /// Whether `time_us` falls in `[start_us, end_us)`.
    pub fn contains(&self, time_us: i64) -> bool {
        (self.start_us..self.end_us).contains(&time_us)
    }
}

/// A simulated fleet of databases, GPU hosts and models. Deterministic: the same config yields
/// the same ticks.
#[derive(Debug)]
pub struct Fleet {
    config: FleetConfig,
    interval_us: i64,
    next_tick: i64,
    noise: Rng,
    fault_noise: Rng,
    dbs: Vec<DbSeries>,
    gpus: Vec<GpuSeries>,
    models: Vec<ModelSeries>,
    faults: Vec<ScheduledFault>,
    truth: Vec<FaultWindow>,
    effects: Effects,
    db_now: Vec<DbValues>,
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

impl Fleet {
    /// Builds the fleet's entities and places its faults, or says what in `config` is wrong:
    /// no databases, no numeric features for the models, a sample interval under 1 µs, or a
    /// fault that is malformed or targets something the fleet lacks.
    pub fn new(config: FleetConfig) -> Result<Fleet, FleetError> {
        let invalid = |field, problem| Err(FleetError::Invalid { field, problem });
        if config.databases == 0 {
            return invalid(
                "databases",
                "must be at least 1: models and GPU hosts use a database",
            );
        }
        if config.models > 0 && config.features_per_model == 0 {
            return invalid(
                "features_per_model",
                "must be at least 1 when there are models",
            );
        }
        let interval_us = micros(config.sample_interval);
        if interval_us < 1 {
            return invalid("sample_interval", "must be at least 1 µs");
        }

        let mut setup = Rng::new(config.seed, SETUP_STREAM);
        let dbs: Vec<DbSeries> = (0..config.databases)
            .map(|i| DbSeries::new(i, &mut setup))
            .collect();
        let models: Vec<ModelSeries> = (0..config.models)
            .map(|m| {
                let db = m % dbs.len();
                ModelSeries::new(m, db, &dbs[db].name, config.features_per_model, &mut setup)
            })
            .collect();
        let mut gpus = Vec::with_capacity(config.gpu_hosts * config.gpus_per_host);
        for host in 0..config.gpu_hosts {
            let phase_h = setup.range(-2.0, 2.0);
            let host_db = &dbs[host % dbs.len()].name;
            for index in 0..config.gpus_per_host {
                let model = (!models.is_empty()).then(|| {
                    models[(host * config.gpus_per_host + index) % models.len()]
                        .id
                        .as_str()
                });
                gpus.push(GpuSeries::new(
                    host, index, host_db, model, phase_h, &mut setup,
                ));
            }
        }

        let mut fleet = Fleet {
            interval_us,
            next_tick: 0,
            noise: Rng::new(config.seed, NOISE_STREAM),
            fault_noise: Rng::new(config.seed, FAULT_STREAM),
            effects: Effects::new(dbs.len(), gpus.len(), models.len()),
            db_now: vec![DbValues::default(); dbs.len()],
            dbs,
            gpus,
            models,
            faults: Vec::new(),
            truth: Vec::new(),
            config,
        };
        for spec in &fleet.config.faults {
            spec.validate()?;
            let (target, entities) = fleet.resolve(spec)?;
            let start_us = fleet
                .config
                .start_time_us
                .saturating_add(micros(spec.start));
            let end_us = start_us.saturating_add(micros(spec.duration));
            fleet.faults.push(ScheduledFault {
                kind: spec.kind,
                target,
                start_us,
                end_us,
                offset_s: spec.start.as_secs_f64(),
                magnitude: spec.magnitude,
            });
            fleet.truth.push(FaultWindow {
                kind: spec.kind,
                target: spec.target.clone(),
                start_us,
                end_us,
                magnitude: spec.magnitude,
                entities,
            });
        }
        Ok(fleet)
    }

    /// The entities `spec` hits, and their names for the ground truth.
    fn resolve(&self, spec: &FaultSpec) -> Result<(Target, Vec<String>), FleetError> {
        let expected = spec.kind.target_kind();
        let unknown = |known: String| FleetError::UnknownTarget {
            fault: spec.to_string(),
            target: spec.target.clone(),
            expected: expected.describe(),
            known,
        };
        let range = |prefix: &str, count: usize| match count {
            0 => format!("there are no {prefix}s"),
            1 => format!("{prefix}-0"),
            n => format!("{prefix}-0 to {prefix}-{}", n - 1),
        };
        match expected {
            TargetKind::Database => {
                let db = self
                    .dbs
                    .iter()
                    .position(|d| d.name == spec.target)
                    .ok_or_else(|| unknown(range("db", self.dbs.len())))?;
                Ok((Target::Database(db), vec![spec.target.clone()]))
            }
            TargetKind::Model => {
                let model = self
                    .models
                    .iter()
                    .position(|m| m.id == spec.target)
                    .ok_or_else(|| unknown(range("model", self.models.len())))?;
                let db = self.models[model].db;
                let entities = vec![spec.target.clone(), self.dbs[db].name.clone()];
                Ok((Target::Model { model, db }, entities))
            }
            TargetKind::Gpu => {
                let per_host = self.config.gpus_per_host;
                let by_host = (0..self.config.gpu_hosts).find(|&h| gpu_hostname(h) == spec.target);
                let (host, gpus) = match by_host {
                    Some(host) => (host, host * per_host..(host + 1) * per_host),
                    None => {
                        let gpu = self
                            .gpus
                            .iter()
                            .position(|g| g.uuid() == spec.target)
                            .ok_or_else(|| {
                                unknown(format!(
                                    "{}, or a uuid of one of their GPUs",
                                    range("gpu-host", self.config.gpu_hosts)
                                ))
                            })?;
                        (gpu / per_host, gpu..gpu + 1)
                    }
                };
                let db = host % self.dbs.len();
                let mut entities: Vec<String> = self.gpus[gpus.clone()]
                    .iter()
                    .map(|g| g.uuid().to_owned())
                    .collect();
                if spec.kind == FaultKind::GpuUnderutilization {
                    entities.push(self.dbs[db].name.clone());
                }
                Ok((Target::Gpus { gpus, db }, entities))
            }
        }
    }

    /// The config the fleet was built from.
    pub fn config(&self) -> &FleetConfig {
        &self.config
    }

    /// Event time of the next tick.
    pub fn time_us(&self) -> i64 {
        self.config
            .start_time_us
            .saturating_add(self.next_tick.saturating_mul(self.interval_us))
    }

    /// The scheduled faults in absolute event time, in schedule order.
    pub fn ground_truth(&self) -> &[FaultWindow] {
        &self.truth
    }

    /// Ends, at `at_us`, every fault of one of `kinds` under way on `entity` — a remediation
    /// that works: the fault's effects stop from then on (the ground truth keeps the
    /// schedule). Returns the kinds ended.
    pub fn remediate(&mut self, entity: &str, kinds: &[FaultKind], at_us: i64) -> Vec<FaultKind> {
        let mut ended = Vec::new();
        for (fault, truth) in self.faults.iter_mut().zip(&self.truth) {
            let under_way = fault.start_us <= at_us && at_us < fault.end_us;
            if under_way
                && kinds.contains(&fault.kind)
                && truth.entities.iter().any(|e| e == entity)
            {
                fault.end_us = at_us;
                ended.push(fault.kind);
            }
        }
        ended
    }

    /// The sample interval, microseconds.
    pub fn interval_us(&self) -> i64 {
        self.interval_us
    }

    /// The records of the next sample interval.
    pub fn tick(&mut self) -> Tick {
        let mut tick = Tick::default();
        self.tick_into(&mut tick);
        tick
    }

    /// Writes the records of the next sample interval over `tick`, reusing its allocations:
    /// after the first call, a tick of this fleet is rewritten in place, which is what a
    /// benchmark wants. The result equals what [`Fleet::tick`] would have returned.
    pub fn tick_into(&mut self, tick: &mut Tick) {
        let time_us = self.time_us();
        let run_s = (time_us - self.config.start_time_us) as f64 / 1e6;
        self.next_tick += 1;
        tick.time_us = time_us;
        tick.logs.clear();

        self.effects.reset();
        for fault in &self.faults {
            if let Some(progress) = fault.progress(time_us) {
                self.effects.apply(fault, progress);
            }
        }

        let mut metrics = Slots::new(&mut tick.metrics);
        for ((db, effect), now) in self.dbs.iter().zip(&self.effects.db).zip(&mut self.db_now) {
            *now = db.values(time_us, run_s, effect, &mut self.noise);
            db.write_batch(metrics.next(empty_batch), time_us, *now);
            if self.noise.uniform() < BACKGROUND_SLOW_QUERY_RATE {
                let query = db.cluster.queries[self.noise.below(3) as usize];
                let duration = now.p99_ms * self.noise.range(2.0, 5.0);
                let at = time_us + offset_within(&mut self.noise, self.interval_us);
                tick.logs
                    .push(slow_query(&db.name, at, duration, query, APP_USER, 1));
            }
        }
        let mut features = Slots::new(&mut tick.features);
        for (model, effect) in self.models.iter().zip(&self.effects.model) {
            let feature_latency = self.db_now[model.db].latency_ms;
            model.write_batch(
                metrics.next(empty_batch),
                time_us,
                feature_latency,
                effect,
                &mut self.noise,
            );
            model.write_features(
                &mut features,
                time_us,
                self.interval_us,
                self.config.feature_samples_per_tick,
                effect,
                &mut self.noise,
            );
        }
        metrics.finish();
        features.finish();
        let mut gpus = Slots::new(&mut tick.gpus);
        for (gpu, effect) in self.gpus.iter().zip(&self.effects.gpu) {
            gpu.write_sample(
                gpus.next(GpuSeries::empty_sample),
                time_us,
                effect,
                &mut self.noise,
            );
        }
        gpus.finish();

        let cx = LogContext {
            dbs: &self.dbs,
            db_now: &self.db_now,
            models: &self.models,
            gpus: &self.gpus,
            interval_us: self.interval_us,
        };
        for fault in &self.faults {
            if let Some(progress) = fault.progress(time_us) {
                fault_logs(
                    &cx,
                    fault,
                    progress,
                    time_us,
                    &mut self.fault_noise,
                    &mut tick.logs,
                );
            }
        }
    }
}
