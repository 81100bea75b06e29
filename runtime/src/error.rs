//! The runtime's error type.

use opsloop_connectors::ConnectorError;

/// What stops the loop (or keeps it from starting).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Engine(#[from] opsloop_engine::runtime::EngineError),
    #[error("detectors: {0}")]
    Detector(#[from] opsloop_engine::detector::DetectorError),
    #[error(transparent)]
    Checkpoint(#[from] opsloop_engine::checkpoint::CheckpointError),
    #[error(transparent)]
    Correlator(#[from] opsloop_correlator::CorrelatorError),
    #[error(transparent)]
    Planner(#[from] opsloop_planner::PlannerError),
    #[error(transparent)]
    Predict(#[from] opsloop_predict::PredictError),
    #[error(transparent)]
    Actuator(#[from] opsloop_actuator::ActuatorError),
    #[error("source {source_name}: {error}")]
    Source {
        source_name: String,
        #[source]
        error: ConnectorError,
    },
    #[error(transparent)]
    Kafka(#[from] ConnectorError),
    #[error("{what}: {error}")]
    Io {
        what: String,
        #[source]
        error: std::io::Error,
    },
    #[error("the simulated fleet: {0}")]
    Fleet(#[from] opsloop_connectors::generate::FleetError),
    #[error("every source stopped")]
    SourcesEnded,
}
