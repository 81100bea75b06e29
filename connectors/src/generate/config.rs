//! The shape of a simulated fleet: how many databases, GPUs and models, how often they report,
//! from when, with which seed and which scheduled faults.

use std::time::Duration;

use opsloop_schemas::examples::EXAMPLE_TIME_US;
use serde::Deserialize;

use super::fault::{FaultKind, FaultSpec, TargetKind, deserialize_duration};
use super::series::gpu_hostname;

/// What to simulate. Every field has a default, so a config file names only what it changes:
///
/// ```toml
/// databases = 16
/// sample_interval = "5s"
/// faults = ["data_drift@model-1:+10m/5m", "latency_spike@db-3:+90s/2m*3"]
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetConfig {
    /// Databases, entities `db-0` to `db-{N-1}`. At least one: models read their features
    /// from one and GPU hosts share a machine with one.
    pub databases: usize,
    /// GPU hosts, `gpu-host-0` to `gpu-host-{N-1}`.
    pub gpu_hosts: usize,
    /// GPUs on each host.
    pub gpus_per_host: usize,
    /// Models, ids `model-0` to `model-{N-1}`.
    pub models: usize,
    /// Numeric features per model (at least one when there are models); each model also has
    /// one categorical feature, `device_type`.
    pub features_per_model: usize,
    /// Values of each feature per sample interval, spread evenly over the interval.
    pub feature_samples_per_tick: usize,
    /// Event time between samples (`"10s"`).
    #[serde(deserialize_with = "deserialize_duration")]
    pub sample_interval: Duration,
    /// Event time of the first sample, in microseconds since the Unix epoch.
    pub start_time_us: i64,
    /// Seed of every random draw: the same config gives the same records.
    pub seed: u64,
    /// Scheduled faults, each as `kind@target:+start/duration[*magnitude]` or a table.
    pub faults: Vec<FaultSpec>,
}

impl Default for FleetConfig {
    /// Eight databases, two hosts of eight GPUs, four models of six numeric features, a
    /// sample every 10 s from 2026-11-25T12:00:00Z, seed 42 and no faults.
    fn default() -> Self {
        FleetConfig {
            databases: 8,
            gpu_hosts: 2,
            gpus_per_host: 8,
            models: 4,
            features_per_model: 6,
            feature_samples_per_tick: 5,
            sample_interval: Duration::from_secs(10),
            start_time_us: EXAMPLE_TIME_US,
            seed: 42,
            faults: Vec::new(),
        }
    }
}

/// How long the default fault schedule runs, in event time.
pub const DEMO_RUN: Duration = Duration::from_secs(30 * 60);

impl FleetConfig {
    /// The default fleet with [`FleetConfig::default_faults`] scheduled: the embedded demo.
    pub fn demo() -> FleetConfig {
        let mut config = FleetConfig::default();
        config.faults = config.default_faults();
        config
    }

    /// A schedule that exercises every fault kind once within [`DEMO_RUN`], after three quiet
    /// minutes for baselines, on targets that exist in this fleet. Faults on one entity do not
    /// overlap when the fleet has eight databases, four models and two GPU hosts; smaller
    /// fleets reuse entities. Model faults are left out without models, GPU faults without
    /// GPUs.
    pub fn default_faults(&self) -> Vec<FaultSpec> {
        let db = |n: usize| format!("db-{}", n % self.databases.max(1));
        let model = |n: usize| format!("model-{}", n % self.models.max(1));
        let host = |n: usize| gpu_hostname(n % self.gpu_hosts.max(1));
        let minutes = |m: u64| Duration::from_secs(m * 60);
        let schedule = [
            (FaultKind::LatencySpike, db(0), 3, 2),
            (FaultKind::IndexDegradation, db(1), 4, 5),
            (FaultKind::CpuSaturation, db(2), 6, 3),
            (FaultKind::DataDrift, model(0), 8, 8),
            (FaultKind::ConnectionExhaustion, db(3), 9, 4),
            (FaultKind::GpuThermal, host(1), 10, 5),
            (FaultKind::StaleCache, db(4), 12, 4),
            (FaultKind::SchemaMismatch, model(1), 14, 3),
            (FaultKind::MemoryPressure, db(5), 15, 5),
            (FaultKind::RunawayQuery, db(6), 17, 4),
            (FaultKind::GpuUnderutilization, host(0), 19, 5),
            (FaultKind::IndexBloat, db(7), 20, 6),
            (FaultKind::DiskGrowth, db(1), 22, 5),
            (FaultKind::SecurityAnomaly, db(3), 25, 3),
        ];
        schedule
            .into_iter()
            .filter(|(kind, ..)| match kind.target_kind() {
                TargetKind::Database => true,
                TargetKind::Model => self.models > 0,
                TargetKind::Gpu => self.gpu_hosts > 0 && self.gpus_per_host > 0,
            })
            .map(|(kind, target, start, duration)| {
                FaultSpec::new(kind, target, minutes(start), minutes(duration))
            })
            .collect()
    }
}
