//! What each fault kind does to the series of the entities it hits: multipliers and offsets
//! that the series apply on top of their baselines, ramped in over a kind-specific onset.

use std::ops::Range;

use super::fault::FaultKind;

/// The entities one fault hits, by index into the fleet's databases, GPUs and models.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Target {
    Database(usize),
    /// A model and the database that serves its features.
    Model {
        model: usize,
        db: usize,
    },
    /// GPUs (flat indices) and the database on their host.
    Gpus {
        gpus: Range<usize>,
        db: usize,
    },
}

/// A fault placed in event time, with its target resolved.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ScheduledFault {
    pub(super) kind: FaultKind,
    pub(super) target: Target,
    pub(super) start_us: i64,
    pub(super) end_us: i64,
    /// Seconds from the run's first sample to the fault's start.
    pub(super) offset_s: f64,
    pub(super) magnitude: f64,
}

/// How far into its window a fault is at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Progress {
    /// Seconds since the fault began.
    pub(super) elapsed_s: f64,
    /// 0 at onset, 1 once the effect is fully developed.
    pub(super) ramp: f64,
}

impl ScheduledFault {
    /// Where the fault stands at `time_us`, or `None` outside its window `[start, end)`.
    pub(super) fn progress(&self, time_us: i64) -> Option<Progress> {
        if !(self.start_us..self.end_us).contains(&time_us) {
            return None;
        }
        let elapsed_s = (time_us - self.start_us) as f64 / 1e6;
        Some(Progress {
            elapsed_s,
            ramp: smoothstep(elapsed_s, self.onset_s()),
        })
    }

    fn duration_s(&self) -> f64 {
        (self.end_us - self.start_us) as f64 / 1e6
    }

    /// Seconds until the effect is fully developed: a third of the window at most, so short
    /// faults still reach full strength. Index bloat builds up over its whole window.
    fn onset_s(&self) -> f64 {
        let typical: f64 = match self.kind {
            FaultKind::IndexBloat => return self.duration_s(),
            FaultKind::DiskGrowth | FaultKind::SchemaMismatch | FaultKind::SecurityAnomaly => 0.0,
            FaultKind::LatencySpike => 20.0,
            FaultKind::CpuSaturation => 30.0,
            FaultKind::IndexDegradation
            | FaultKind::RunawayQuery
            | FaultKind::StaleCache
            | FaultKind::GpuUnderutilization => 60.0,
            FaultKind::MemoryPressure | FaultKind::DataDrift => 120.0,
            FaultKind::ConnectionExhaustion | FaultKind::GpuThermal => 180.0,
        };
        typical.min(self.duration_s() / 3.0)
    }

    /// Seconds after onset before a drifted model's accuracy starts to fall: labels arrive
    /// late, so performance metrics trail the input shift.
    fn accuracy_lag_s(&self) -> f64 {
        (self.duration_s() / 4.0).min(120.0)
    }
}

/// 0 before `x = 0`, 1 after `x = length`, a smooth S in between; 1 when `length` is 0.
fn smoothstep(x: f64, length: f64) -> f64 {
    if length <= 0.0 {
        return 1.0;
    }
    let t = (x / length).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Fault effects on one database at one instant; the default changes nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct DbEffect {
    /// Multiplies mean (and so p99) query latency.
    pub(super) latency: f64,
    /// Multiplies p99 latency on top of `latency`.
    pub(super) p99: f64,
    /// Percentage points of CPU added.
    pub(super) cpu: f64,
    /// Percentage points of memory added.
    pub(super) memory: f64,
    /// Fraction of the gap between active and maximum connections that is filled.
    pub(super) connection_fill: f64,
    /// Subtracted from the cache hit ratio.
    pub(super) cache_drop: f64,
    pub(super) seq_scans: f64,
    pub(super) idx_scans: f64,
    /// Seconds of replication lag added.
    pub(super) replication_lag_s: f64,
    /// Bytes added to disk usage.
    pub(super) disk_bytes: f64,
    pub(super) dead_tuples: f64,
    /// Added to the index bloat ratio.
    pub(super) bloat: f64,
    /// Lock waits added.
    pub(super) lock_waits: f64,
    /// Lower bound on the age of the longest running query.
    pub(super) longest_query_s: f64,
    /// Query errors per second added.
    pub(super) errors_per_s: f64,
    /// Run time (s) since which materialized views have not refreshed.
    pub(super) stale_since_s: Option<f64>,
    pub(super) rows_read: f64,
}

impl Default for DbEffect {
    fn default() -> Self {
        DbEffect {
            latency: 1.0,
            p99: 1.0,
            cpu: 0.0,
            memory: 0.0,
            connection_fill: 0.0,
            cache_drop: 0.0,
            seq_scans: 1.0,
            idx_scans: 1.0,
            replication_lag_s: 0.0,
            disk_bytes: 0.0,
            dead_tuples: 1.0,
            bloat: 0.0,
            lock_waits: 0.0,
            longest_query_s: 0.0,
            errors_per_s: 0.0,
            stale_since_s: None,
            rows_read: 1.0,
        }
    }
}

/// Fault effects on one GPU at one instant; the default changes nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct GpuEffect {
    /// Multiplies utilization (and with it engine activity, memory traffic and power).
    pub(super) util: f64,
    /// Degrees Celsius added.
    pub(super) temp: f64,
    /// Watts added.
    pub(super) power: f64,
    /// The last XID error code, 0 for none.
    pub(super) xid: f64,
}

impl Default for GpuEffect {
    fn default() -> Self {
        GpuEffect {
            util: 1.0,
            temp: 0.0,
            power: 0.0,
            xid: 0.0,
        }
    }
}

/// Fault effects on one model at one instant; the default changes nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct ModelEffect {
    /// Shift of the drifting numeric features, in baseline standard deviations.
    pub(super) shift: f64,
    /// Multiplies the spread of the drifting numeric features.
    pub(super) spread: f64,
    /// Weight of the drifted category mix against the baseline one.
    pub(super) category_mix: f64,
    /// Subtracted from accuracy.
    pub(super) accuracy_drop: f64,
    /// Added to the error rate.
    pub(super) error_rate: f64,
    /// Whether the last numeric feature is missing from the model's input.
    pub(super) missing_feature: bool,
}

impl Default for ModelEffect {
    fn default() -> Self {
        ModelEffect {
            shift: 0.0,
            spread: 1.0,
            category_mix: 0.0,
            accuracy_drop: 0.0,
            error_rate: 0.0,
            missing_feature: false,
        }
    }
}

/// The effects of every active fault at one instant, per entity.
#[derive(Debug)]
pub(super) struct Effects {
    pub(super) db: Vec<DbEffect>,
    pub(super) gpu: Vec<GpuEffect>,
    pub(super) model: Vec<ModelEffect>,
}

impl Effects {
    pub(super) fn new(databases: usize, gpus: usize, models: usize) -> Effects {
        Effects {
            db: vec![DbEffect::default(); databases],
            gpu: vec![GpuEffect::default(); gpus],
            model: vec![ModelEffect::default(); models],
        }
    }

    /// Back to no effect anywhere.
    pub(super) fn reset(&mut self) {
        self.db.fill(DbEffect::default());
        self.gpu.fill(GpuEffect::default());
        self.model.fill(ModelEffect::default());
    }

    /// Adds the effect of `fault`, `progress` into its window. Effects of several faults on
    /// one entity compound: multipliers multiply, offsets add.
    pub(super) fn apply(&mut self, fault: &ScheduledFault, progress: Progress) {
        let m = fault.magnitude;
        let mr = m * progress.ramp;
        let elapsed = progress.elapsed_s;
        match (&fault.target, fault.kind) {
            (&Target::Database(db), kind) => {
                let e = &mut self.db[db];
                match kind {
                    FaultKind::LatencySpike => {
                        e.latency *= 1.0 + 3.0 * mr;
                        e.p99 *= 1.0 + 1.5 * mr;
                    }
                    FaultKind::IndexDegradation => {
                        e.seq_scans *= 1.0 + 8.0 * mr;
                        e.idx_scans /= 1.0 + 4.0 * mr;
                        e.latency *= 1.0 + 1.5 * mr;
                        e.cpu += 15.0 * mr;
                        e.rows_read *= 1.0 + 5.0 * mr;
                    }
                    FaultKind::IndexBloat => {
                        e.bloat += 1.5 * mr;
                        e.dead_tuples *= 1.0 + 6.0 * mr;
                        e.latency *= 1.0 + 0.4 * mr;
                    }
                    FaultKind::RunawayQuery => {
                        e.longest_query_s = e.longest_query_s.max(m * (60.0 + elapsed));
                        e.lock_waits += 25.0 * mr;
                        e.latency *= 1.0 + 0.3 * mr;
                        e.p99 *= 1.0 + 1.5 * mr;
                        e.cpu += 8.0 * mr;
                        e.replication_lag_s += 4.0 * mr;
                    }
                    FaultKind::StaleCache => {
                        e.cache_drop += 0.25 * mr;
                        e.latency *= 1.0 + 0.8 * mr;
                        let since = e
                            .stale_since_s
                            .map_or(fault.offset_s, |s| s.min(fault.offset_s));
                        e.stale_since_s = Some(since);
                    }
                    FaultKind::ConnectionExhaustion => {
                        e.connection_fill = e.connection_fill.max(m.min(1.0) * progress.ramp);
                        e.errors_per_s += 8.0 * m * ((progress.ramp - 0.8) / 0.2).clamp(0.0, 1.0);
                        e.latency *= 1.0 + 0.5 * mr;
                    }
                    FaultKind::MemoryPressure => {
                        e.memory += 30.0 * mr;
                        e.cache_drop += 0.05 * mr;
                        e.latency *= 1.0 + 0.4 * mr;
                    }
                    FaultKind::CpuSaturation => {
                        e.cpu += 60.0 * mr;
                        e.latency *= 1.0 + 1.2 * mr;
                        e.replication_lag_s += 3.0 * mr;
                    }
                    FaultKind::DiskGrowth => e.disk_bytes += 100e6 * m * elapsed,
                    FaultKind::SecurityAnomaly => e.rows_read *= 1.0 + 20.0 * mr,
                    // Resolution gives model and GPU kinds model and GPU targets.
                    FaultKind::DataDrift
                    | FaultKind::SchemaMismatch
                    | FaultKind::GpuUnderutilization
                    | FaultKind::GpuThermal => {}
                }
            }
            (&Target::Model { model, db }, FaultKind::DataDrift) => {
                let late = smoothstep(elapsed - fault.accuracy_lag_s(), fault.onset_s());
                let e = &mut self.model[model];
                e.shift += 1.5 * mr;
                e.spread *= 1.0 + 0.5 * mr;
                e.category_mix = e.category_mix.max(m.min(1.0) * 0.6 * progress.ramp);
                e.accuracy_drop += 0.08 * m * late;
                let e = &mut self.db[db];
                e.latency *= 1.0 + 0.6 * mr;
                e.cache_drop += 0.03 * mr;
            }
            (&Target::Model { model, db }, FaultKind::SchemaMismatch) => {
                let e = &mut self.model[model];
                e.missing_feature = true;
                e.error_rate += 0.25 * mr;
                self.db[db].errors_per_s += 5.0 * mr;
            }
            (Target::Gpus { gpus, db }, FaultKind::GpuUnderutilization) => {
                for e in &mut self.gpu[gpus.clone()] {
                    e.util /= 1.0 + 3.0 * mr;
                }
                let e = &mut self.db[*db];
                e.cpu += 35.0 * mr;
                e.memory += 12.0 * mr;
            }
            (Target::Gpus { gpus, .. }, FaultKind::GpuThermal) => {
                for e in &mut self.gpu[gpus.clone()] {
                    e.temp += 30.0 * mr;
                    e.power += 150.0 * mr;
                    if progress.ramp >= 1.0 {
                        e.xid = XID_THERMAL;
                    }
                }
            }
            // Resolution gives every kind a target of its own kind.
            (Target::Model { .. } | Target::Gpus { .. }, _) => {}
        }
    }
}

/// XID 62, "internal micro-controller halt", whose listed causes include thermal issues.
pub(super) const XID_THERMAL: f64 = 62.0;
