//! The simulated fleet's options, shared by `opsloop generate` and `opsloop demo`.

use std::time::Duration;

use clap::Args;
use opsloop_connectors::generate::{FaultSpec, FleetConfig};

#[derive(Debug, Clone, Args)]
pub(crate) struct FleetArgs {
    #[arg(long, default_value_t = 8)]
    databases: usize,
    #[arg(long, default_value_t = 2)]
    gpu_hosts: usize,
    #[arg(long, default_value_t = 8)]
    gpus_per_host: usize,
    #[arg(long, default_value_t = 4)]
    models: usize,
    /// Event time between samples.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Seed of the simulated fleet.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// A fault to inject, as kind@target:+start/duration[*magnitude] (e.g.
    /// data_drift@model-1:+10m/5m); repeatable. Without any, the default schedule runs, which
    /// injects every fault kind over 30 minutes.
    #[arg(long = "fault", value_name = "SPEC")]
    faults: Vec<FaultSpec>,
    /// Inject no fault at all.
    #[arg(long, conflicts_with = "faults")]
    no_faults: bool,
}

impl FleetArgs {
    /// The fleet these options describe, its event time starting at `start_time_us` when
    /// given.
    pub(crate) fn fleet_config(&self, start_time_us: Option<i64>) -> FleetConfig {
        let mut config = FleetConfig {
            databases: self.databases,
            gpu_hosts: self.gpu_hosts,
            gpus_per_host: self.gpus_per_host,
            models: self.models,
            sample_interval: self.interval,
            seed: self.seed,
            ..FleetConfig::default()
        };
        if let Some(start) = start_time_us {
            config.start_time_us = start;
        }
        config.faults = if self.no_faults {
            Vec::new()
        } else if self.faults.is_empty() {
            config.default_faults()
        } else {
            self.faults.clone()
        };
        config
    }

    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    /// Whether the default schedule runs (no --fault, no --no-faults).
    pub(crate) fn default_schedule(&self) -> bool {
        self.faults.is_empty() && !self.no_faults
    }
}
