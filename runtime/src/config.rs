//! The loop's configuration (`opsloop run`'s file): where it reads and writes, the engine,
//! checkpoints, the correlator, the planner, the predictor and notifications. Loading it from
//! the embedded defaults, a file and the environment is the binary's job.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use opsloop_connectors::registry::{SourceEncoding, SourceFormat};
use opsloop_correlator::CorrelatorConfig;
use opsloop_engine::time::WatermarkConfig;
use serde::Deserialize;

use crate::RuntimeError;
use crate::notify::NotifySection;

/// `opsloop run`'s whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub kafka: KafkaSection,
    pub sources: Vec<SourceSection>,
    pub engine: EngineSection,
    pub checkpoint: CheckpointSection,
    pub alerts: TopicSection,
    pub incidents: TopicSection,
    pub deadletter: TopicSection,
    pub metrics: MetricsSection,
    /// Alerts -> incidents; its defaults are the correlator crate's (`[correlator]`).
    pub correlator: CorrelatorConfig,
    #[serde(default)]
    pub notifications: NotifySection,
    pub planner: PlannerSection,
    /// Forecasts, failure risk and proactive plans; every key has a default.
    #[serde(default)]
    pub predict: opsloop_predict::PredictorConfig,
}

impl RunConfig {
    /// Checks what deserializing cannot: every source's format and encoding go together.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        for source in &self.sources {
            source.format.check(source.encoding()).map_err(|error| {
                RuntimeError::Config(format!("source {}: {error}", source.name))
            })?;
        }
        Ok(())
    }
}

/// `[kafka]`: the brokers, the group and further librdkafka properties.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    pub brokers: String,
    pub group_id: String,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl KafkaSection {
    pub fn kafka_config(&self) -> opsloop_connectors::kafka::KafkaConfig {
        let mut kafka = opsloop_connectors::kafka::KafkaConfig::new(&self.brokers);
        kafka.properties = self.properties.clone();
        kafka
    }
}

/// `[[sources]]`: one Kafka source per table the detectors read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    pub name: String,
    pub topic: String,
    pub format: SourceFormat,
    /// The format's default encoding when left out.
    #[serde(default)]
    pub encoding: Option<SourceEncoding>,
    /// The stream table the detectors read these records as.
    pub table: String,
}

impl SourceSection {
    pub fn encoding(&self) -> SourceEncoding {
        self.encoding
            .unwrap_or_else(|| self.format.default_encoding())
    }
}

/// `[engine]`: the detectors and event time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSection {
    pub detectors_dir: PathBuf,
    pub tick_interval_ms: u64,
    pub watermark: WatermarkConfig,
}

/// `[checkpoint]`: where and how often the loop saves its state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSection {
    pub dir: PathBuf,
    pub interval_ms: u64,
    pub retain: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSection {
    pub topic: String,
}

/// `[metrics]`: where `/metrics` and `/healthz` are served.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    pub listen: SocketAddr,
}

/// `[planner]`: incidents -> signed remediation events, learning from the actions' outcomes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannerSection {
    /// Where remediation events go.
    pub topic: String,
    /// Where the actuators' outcomes are read from (learning, acknowledgements, verdicts).
    pub actions_topic: String,
    pub agents: opsloop_planner::agents::AgentsConfig,
    /// The key events are signed with (`OPSLOOP_PLANNER__SIGNING_KEY`); actuators hold it as
    /// `[actuator] planner_key`.
    #[serde(default)]
    pub signing_key: String,
    pub max_attempts: i64,
    pub retry_backoff_s: i64,
}

impl PlannerSection {
    pub fn planner_config(&self) -> opsloop_planner::PlannerConfig {
        opsloop_planner::PlannerConfig {
            agents: self.agents.clone(),
            signing_key: self.signing_key.clone(),
            max_attempts: self.max_attempts,
            retry_backoff_s: self.retry_backoff_s,
            ..opsloop_planner::PlannerConfig::default()
        }
    }
}
