//! `opsloop run`'s configuration: embedded defaults (`default.toml`) overridden by a TOML file
//! and `OPSLOOP_*` environment variables.

mod layers;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use opsloop_correlator::{CorrelatorConfig, DEFAULT_CORRELATOR_CONFIG};
use opsloop_engine::time::WatermarkConfig;
use serde::Deserialize;

use crate::notify::NotifySection;

/// The embedded defaults, also printed by `opsloop run --print-default-config`.
pub(crate) const DEFAULT_CONFIG: &str = include_str!("default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunConfig {
    pub(crate) kafka: KafkaSection,
    pub(crate) sources: Vec<SourceSection>,
    pub(crate) engine: EngineSection,
    pub(crate) checkpoint: CheckpointSection,
    pub(crate) alerts: TopicSection,
    pub(crate) incidents: TopicSection,
    pub(crate) deadletter: TopicSection,
    pub(crate) metrics: MetricsSection,
    /// Alerts -> incidents; its defaults are the correlator crate's (`[correlator]`).
    pub(crate) correlator: CorrelatorConfig,
    #[serde(default)]
    pub(crate) notifications: NotifySection,
    pub(crate) planner: PlannerSection,
    /// Forecasts, failure risk and proactive plans; every key has a default.
    #[serde(default)]
    pub(crate) predict: opsloop_predict::PredictorConfig,
}

/// `[planner]`: incidents -> signed remediation events, learning from the actions' outcomes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlannerSection {
    /// Where remediation events go.
    pub(crate) topic: String,
    /// Where the actuators' outcomes are read from (learning, acknowledgements, verdicts).
    pub(crate) actions_topic: String,
    pub(crate) agents: opsloop_planner::agents::AgentsConfig,
    /// The key events are signed with (`OPSLOOP_PLANNER__SIGNING_KEY`); actuators hold it as
    /// `[actuator] planner_key`.
    #[serde(default)]
    pub(crate) signing_key: String,
    pub(crate) max_attempts: i64,
    pub(crate) retry_backoff_s: i64,
}

impl PlannerSection {
    pub(crate) fn planner_config(&self) -> opsloop_planner::PlannerConfig {
        opsloop_planner::PlannerConfig {
            agents: self.agents.clone(),
            signing_key: self.signing_key.clone(),
            max_attempts: self.max_attempts,
            retry_backoff_s: self.retry_backoff_s,
            ..opsloop_planner::PlannerConfig::default()
        }
    }
}

impl RunConfig {
    /// The defaults, overridden by `file` and the process environment.
    pub(crate) fn load(file: Option<&Path>) -> anyhow::Result<RunConfig> {
        layers::load(&default_config_text(), file, std::env::vars())
    }
}

/// Any command's configuration: `defaults`, overridden by `file` and the process
/// environment (`OPSLOOP_<SECTION>__<KEY>`).
pub(crate) fn load_layered<T: serde::de::DeserializeOwned>(
    defaults: &str,
    file: Option<&Path>,
) -> anyhow::Result<T> {
    layers::load(defaults, file, std::env::vars())
}

/// The whole default configuration: `default.toml` with the correlator's defaults as its
/// `[correlator]` section.
pub(crate) fn default_config_text() -> String {
    let mut correlator = toml::Table::new();
    // Both embedded files are tested to parse.
    if let Ok(defaults) = DEFAULT_CORRELATOR_CONFIG.parse::<toml::Table>() {
        correlator.insert("correlator".to_owned(), toml::Value::Table(defaults));
    }
    format!(
        "{DEFAULT_CONFIG}\n# The correlator (opsloop-correlator's default.toml documents each key).\n{}",
        toml::to_string(&correlator).unwrap_or_default()
    )
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KafkaSection {
    pub(crate) brokers: String,
    pub(crate) group_id: String,
    #[serde(default)]
    pub(crate) properties: BTreeMap<String, String>,
}

/// What the records of a source topic are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SourceFormat {
    MetricBatch,
    JsonLines,
    Prometheus,
    OtlpMetrics,
    GpuSample,
    FeatureSample,
    LogRecord,
}

/// How the records are encoded (codec formats for opsloop's record kinds, OTLP's two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SourceEncoding {
    Confluent,
    Avro,
    Json,
    OtlpProto,
    OtlpJson,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SourceSection {
    pub(crate) name: String,
    pub(crate) topic: String,
    pub(crate) format: SourceFormat,
    #[serde(default = "default_encoding")]
    pub(crate) encoding: SourceEncoding,
    /// The stream table the detectors read these records as.
    pub(crate) table: String,
}

fn default_encoding() -> SourceEncoding {
    SourceEncoding::Confluent
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EngineSection {
    pub(crate) detectors_dir: PathBuf,
    pub(crate) tick_interval_ms: u64,
    pub(crate) watermark: WatermarkConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckpointSection {
    pub(crate) dir: PathBuf,
    pub(crate) interval_ms: u64,
    pub(crate) retain: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TopicSection {
    pub(crate) topic: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricsSection {
    pub(crate) listen: SocketAddr,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_defaults_load() {
        let config: RunConfig =
            layers::load(&default_config_text(), None, []).expect("the defaults are valid");
        assert_eq!(config.sources.len(), 2);
        assert_eq!(config.sources[0].format, SourceFormat::MetricBatch);
        assert_eq!(config.sources[0].table, "db_metrics");
        assert_eq!(config.sources[1].format, SourceFormat::GpuSample);
        assert_eq!(config.sources[1].table, "gpu");
        assert_eq!(config.engine.watermark, WatermarkConfig::default());
        assert_eq!(config.alerts.topic, opsloop_schemas::topics::ALERTS);
        assert_eq!(config.incidents.topic, opsloop_schemas::topics::INCIDENTS);
        assert_eq!(config.deadletter.topic, opsloop_schemas::topics::DEADLETTER);
        assert_eq!(config.correlator, CorrelatorConfig::default());
        assert_eq!(config.predict, opsloop_predict::PredictorConfig::default());
        assert!(config.notifications.alertmanager.is_none());
    }

    #[test]
    fn notifications_and_correlator_settings_come_from_the_environment() {
        let env = [
            (
                "OPSLOOP_NOTIFICATIONS__ALERTMANAGER__URL".to_owned(),
                "http://alertmanager:9093".to_owned(),
            ),
            (
                "OPSLOOP_CORRELATOR__GROUP_WAIT".to_owned(),
                "10s".to_owned(),
            ),
        ];
        let config: RunConfig = layers::load(&default_config_text(), None, env).expect("valid");
        let alertmanager = config.notifications.alertmanager.expect("alertmanager");
        assert_eq!(alertmanager.url, "http://alertmanager:9093");
        assert_eq!(alertmanager.retries, 3);
        assert_eq!(
            config.correlator.group_wait,
            std::time::Duration::from_secs(10)
        );
        assert_eq!(config.correlator.patterns.len(), 8);
    }
}
