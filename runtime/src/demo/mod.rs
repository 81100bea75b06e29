//! The loop in process (`opsloop demo`): the simulated fleet ([`FleetTwin`]) is the source, the
//! same [`Runtime`] as `opsloop run` detects, correlates, plans and predicts, and an
//! [`Actuator`] whose target is the twin acts — under the same governance (policy, approvals,
//! canary, rate and concurrency limits), verifies by the twin's telemetry and the correlator's
//! verdict, rolls back, and teaches the planner. Approvals are granted at once with the demo's
//! own key (and said so); the planner's and approvers' keys are made per run. No checkpoint,
//! no broker, no database.
//!
//! The live view is the caller's: every alert, incident version, plan, notice, outcome, cycle
//! report and status goes to its observer as a [`DemoEvent`]. [`Demo::run`] returns the
//! [`DemoReport`] against the fleet's ground truth.

mod report;
mod transport;
mod twin;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opsloop_actions::TemplateId;
use opsloop_actuator::{Actuator, ActuatorConfig, VerifyConfig};
use opsloop_connectors::generate::{Fleet, FleetConfig};
use opsloop_connectors::registry::SourceFormat;
use opsloop_correlator::CorrelatorConfig;
use opsloop_engine::detector::{
    Detector, DetectorOptions, DetectorPlan, StreamTable, load_detectors, session_context,
};
use opsloop_engine::runtime::Engine;
use opsloop_engine::time::WatermarkConfig;
use opsloop_planner::PlannerConfig;
use opsloop_predict::{CapacityResource, PredictorConfig};
use opsloop_schemas::ops::{
    ActionOutcome, Alert, CycleReport, Forecast, Incident, RemediationEvent,
};
use opsloop_schemas::{Codec, SchemaRegistry, WireFormat};

use self::report::Recorder;
pub use self::report::{DemoReport, FaultReport};
use self::transport::InProcessTransport;
use self::twin::FleetTwin;
pub use self::twin::Remediation;
use crate::RuntimeError;
use crate::events::Events;
use crate::runtime::{Runtime, Stages};
use crate::transport::Status;

/// The stream tables the detectors read, as `opsloop run`'s default sources name them.
pub(crate) const METRICS_TABLE: &str = "db_metrics";
pub(crate) const GPU_TABLE: &str = "gpu";

/// The detectors of the repository's `sql/`, built in so the demo runs from anywhere (a test
/// checks the list against the folder).
pub(crate) const BUILTIN_DETECTORS: &[(&str, &str)] = &[
    (
        "db_connection_saturation",
        include_str!("../../../sql/db_connection_saturation.sql"),
    ),
    (
        "db_error_burst",
        include_str!("../../../sql/db_error_burst.sql"),
    ),
    (
        "db_latency_p99",
        include_str!("../../../sql/db_latency_p99.sql"),
    ),
    (
        "db_latency_spike",
        include_str!("../../../sql/db_latency_spike.sql"),
    ),
    ("gpu_thermal", include_str!("../../../sql/gpu_thermal.sql")),
    (
        "pg_index_bloat",
        include_str!("../../../sql/pg_index_bloat.sql"),
    ),
    (
        "pg_lock_blocker",
        include_str!("../../../sql/pg_lock_blocker.sql"),
    ),
    (
        "pg_matview_stale",
        include_str!("../../../sql/pg_matview_stale.sql"),
    ),
    (
        "pg_runaway_query",
        include_str!("../../../sql/pg_runaway_query.sql"),
    ),
    (
        "pg_seq_scan_increase",
        include_str!("../../../sql/pg_seq_scan_increase.sql"),
    ),
];

/// What the demo tells its observer, as it happens.
#[derive(Debug)]
pub enum DemoEvent<'a> {
    Alert(&'a Alert),
    Incident(&'a Incident),
    Planned(&'a RemediationEvent),
    /// Something the demo did on the operator's behalf (an approval granted).
    Notice(&'a str),
    Outcome(&'a ActionOutcome),
    Cycle(&'a CycleReport),
    /// After every input: the latest tick's event time and the samples so far.
    Status {
        time_us: i64,
        samples: usize,
        status: &'a Status,
    },
}

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub fleet: FleetConfig,
    /// Event time to simulate.
    pub duration: Duration,
    /// Wall time between ticks; zero runs flat out.
    pub tick_delay: Duration,
    /// A folder of detectors to run instead of the built-in ones.
    pub detectors: Option<PathBuf>,
}

/// What a demo run ends with.
#[derive(Debug)]
pub struct DemoRun {
    pub report: DemoReport,
    /// The incidents (latest versions) by opening time.
    pub incidents: Vec<Incident>,
    /// Every cycle report, and the last cycle's forecasts.
    pub cycles: Vec<CycleReport>,
    pub forecasts: Vec<Forecast>,
    /// What the actions did on the twin.
    pub remediations: Vec<Remediation>,
    pub started_us: i64,
}

/// One-minute windows and a cycle every five minutes, so half an hour shows trends; disks of
/// the simulated fleet (100 GB to 1.5 TB) against a 2 TB limit.
pub(crate) fn predictor_config() -> PredictorConfig {
    PredictorConfig {
        cycle_interval_s: 300,
        window_s: 60,
        season_points: 1440,
        history_points: 3 * 1440,
        capacity: vec![CapacityResource {
            resource: "storage".to_owned(),
            metric: "db_disk_used_bytes".to_owned(),
            limit: 2e12,
        }],
        ..PredictorConfig::default()
    }
}

/// The stream tables of the demo's sources.
pub(crate) fn stream_tables() -> Result<[StreamTable; 2], RuntimeError> {
    let table = |name: &str, format: SourceFormat| {
        let (schema, event_time) = format.layout();
        StreamTable::new(name, schema, event_time)
    };
    Ok([
        table(METRICS_TABLE, SourceFormat::MetricBatch)?,
        table(GPU_TABLE, SourceFormat::GpuSample)?,
    ])
}

/// The built-in detectors, or those of `dir`.
pub(crate) fn detectors(
    dir: Option<&PathBuf>,
    watermarks: WatermarkConfig,
) -> Result<Vec<Detector>, RuntimeError> {
    let streams = stream_tables()?;
    let context = session_context();
    let options = DetectorOptions {
        allowed_lateness_us: watermarks.allowed_lateness_us(),
    };
    if let Some(dir) = dir {
        return Ok(load_detectors(dir, &context, &streams, options)?);
    }
    BUILTIN_DETECTORS
        .iter()
        .map(|(name, sql)| {
            let plan = DetectorPlan::from_sql(name, sql, &context, &streams)?;
            Ok(Detector::new(Arc::new(plan), options)?)
        })
        .collect()
}

/// A key made for this run (planner signatures, approvals): never the same twice.
fn run_key(purpose: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    opsloop_schemas::ids::stable_id(&[
        purpose.as_bytes(),
        &nanos.to_le_bytes(),
        &std::process::id().to_le_bytes(),
    ])
}

/// The demo; see the module docs.
#[derive(Debug)]
pub struct Demo;

impl Demo {
    /// Runs the demo of `config`, telling `observer` what happens.
    pub async fn run(
        config: DemoConfig,
        observer: impl FnMut(DemoEvent<'_>) + Send + 'static,
    ) -> Result<DemoRun, RuntimeError> {
        let watermarks = WatermarkConfig::default();
        let detectors = detectors(config.detectors.as_ref(), watermarks)?;
        let twin = Arc::new(FleetTwin::new(Fleet::new(config.fleet)?));
        let started_us = twin.time_us();
        let end_us = started_us
            .saturating_add(i64::try_from(config.duration.as_micros()).unwrap_or(i64::MAX));
        let planner_key = run_key("planner");
        let approval_key = run_key("approvals");
        let audit = tempfile::Builder::new()
            .prefix("opsloop-demo-")
            .tempdir()
            .map_err(|error| RuntimeError::Io {
                what: "creating the demo's audit folder".to_owned(),
                error,
            })?;
        let (outcome_sender, outcomes) = tokio::sync::mpsc::unbounded_channel();
        let actuator = Actuator::new(
            ActuatorConfig {
                allow: TemplateId::ALL.to_vec(),
                planner_key: planner_key.clone(),
                approval_key: approval_key.clone(),
                audit_log: audit.path().join("audit.jsonl"),
                // Wall time: the simulation runs far faster than the limits are meant for.
                rate_per_s: 1_000.0,
                burst: 100,
                verify: VerifyConfig {
                    settle_ms: 0,
                    window_ms: 0,
                    // The twin's telemetry goes back to its daily baseline, not to zero.
                    clear_improvement: 0.5,
                    ..VerifyConfig::default()
                },
                ..ActuatorConfig::default()
            },
            outcome_sender,
        )?
        .with_twin(Arc::clone(&twin) as Arc<dyn opsloop_actuator::twin::Twin>);
        let recorder = Arc::new(Mutex::new(Recorder::default()));
        let codec = Codec::new(WireFormat::Confluent, Arc::new(SchemaRegistry::builtin()));
        let transport = InProcessTransport::new(
            Arc::clone(&twin),
            end_us,
            config.tick_delay,
            codec,
            Arc::new(actuator),
            outcomes,
            approval_key.into_bytes(),
            Box::new(observer),
            Arc::clone(&recorder),
        );
        let stages = Stages::new(
            Engine::new(watermarks, detectors),
            CorrelatorConfig::default(),
            PlannerConfig {
                signing_key: planner_key,
                ..PlannerConfig::default()
            },
            predictor_config(),
            None,
        )?;
        let runtime = Runtime::new(
            transport,
            stages,
            None,
            Events::default(),
            Duration::from_millis(200),
        );
        let started = Instant::now();
        runtime.run(std::future::pending()).await?;
        let wall_s = started.elapsed().as_secs_f64();
        let recorder = recorder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(DemoRun {
            report: recorder.report(&twin.ground_truth(), started_us, wall_s),
            incidents: recorder.incidents().into_iter().cloned().collect(),
            cycles: recorder.cycles.clone(),
            forecasts: recorder.forecasts.clone(),
            remediations: twin.remediations(),
            started_us,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_detector_of_sql_is_built_in() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../sql");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("sql/")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter_map(|name| name.strip_suffix(".sql").map(str::to_owned))
            .collect();
        files.sort();
        let built_in: Vec<&str> = BUILTIN_DETECTORS.iter().map(|(name, _)| *name).collect();
        assert_eq!(built_in, files);
    }
}
