//! The loop's configuration (`opsloop run`'s file): where it reads and writes, the engine,
//! checkpoints, the correlator, the planner, the predictor and notifications. Loading it from
//! the embedded defaults, a file and the environment is the binary's job.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use opsloop_connectors::decode::DEFAULT_MAX_RECORD_BYTES;
use opsloop_connectors::kafka::{DEFAULT_MAX_FUTURE_SKEW, SourceConfig};
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
    /// librdkafka properties for every client (`security.protocol`, `sasl.mechanism`, ...):
    /// keys as librdkafka names them or with underscores for the dots
    /// ([`kafka_property_name`]), values strings, numbers or booleans.
    #[serde(default, deserialize_with = "property_values")]
    pub properties: BTreeMap<String, String>,
}

impl KafkaSection {
    pub fn kafka_config(&self) -> opsloop_connectors::kafka::KafkaConfig {
        let mut kafka = opsloop_connectors::kafka::KafkaConfig::new(&self.brokers);
        kafka.properties = self
            .properties
            .iter()
            .map(|(key, value)| (kafka_property_name(key), value.clone()))
            .collect();
        kafka
    }
}

/// The environment variables that set a librdkafka property of every client of every command
/// (`OPSLOOP_KAFKA__PROPERTIES__SECURITY_PROTOCOL=SASL_SSL`).
pub const KAFKA_PROPERTY_ENV_PREFIX: &str = "OPSLOOP_KAFKA__PROPERTIES__";

/// The librdkafka property a configuration key names: the key itself when it has a dot
/// (`"sasl.mechanism"`), else its underscores read as dots (`sasl_mechanism`, as an unquoted
/// TOML key or an environment variable must write it), except librdkafka's own names that
/// have underscores (`log_level`, `enabled_events`).
pub fn kafka_property_name(key: &str) -> String {
    const UNDERSCORED: &[&str] = &["log_level", "enabled_events"];
    let key = key.trim();
    if key.contains('.') || UNDERSCORED.contains(&key) {
        key.to_owned()
    } else {
        key.replace('_', ".")
    }
}

/// Property values as librdkafka takes them, text: TOML numbers and booleans are written out.
fn property_values<'de, D>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        Text(String),
        Integer(i64),
        Float(f64),
        Flag(bool),
    }
    let values = BTreeMap::<String, Value>::deserialize(deserializer)?;
    Ok(values
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                Value::Text(text) => text,
                Value::Integer(number) => number.to_string(),
                Value::Float(number) => number.to_string(),
                Value::Flag(flag) => flag.to_string(),
            };
            (key, text)
        })
        .collect())
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
    /// Largest record, in bytes, the source decodes; a larger one is dead-lettered
    /// (`too_large`, stored truncated with its size and SHA-256) and reading goes on. 1 MiB,
    /// Kafka's default `message.max.bytes`, when left out.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
    /// How far ahead of this instance's clock a record's event time may be, in milliseconds;
    /// a record further ahead is dead-lettered (`future_timestamp`) and never moves the
    /// watermark. `0` turns the check off (e.g. for a simulated fleet running ahead of the
    /// clock). Five minutes when left out.
    #[serde(default = "default_max_future_skew_ms")]
    pub max_future_skew_ms: u64,
}

fn default_max_record_bytes() -> usize {
    DEFAULT_MAX_RECORD_BYTES
}

fn default_max_future_skew_ms() -> u64 {
    u64::try_from(DEFAULT_MAX_FUTURE_SKEW.as_millis()).unwrap_or(u64::MAX)
}

impl SourceSection {
    pub fn encoding(&self) -> SourceEncoding {
        self.encoding
            .unwrap_or_else(|| self.format.default_encoding())
    }

    /// The Kafka source of this entry, in consumer group `group_id`.
    pub fn source_config(&self, group_id: String) -> SourceConfig {
        let mut config = SourceConfig::new(&self.name, vec![self.topic.clone()], group_id);
        config.max_record_bytes = self.max_record_bytes;
        config.max_future_skew =
            (self.max_future_skew_ms > 0).then(|| Duration::from_millis(self.max_future_skew_ms));
        config
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_properties_take_underscores_for_dots_and_any_scalar_value() {
        let section: KafkaSection = serde_json::from_value(serde_json::json!({
            "brokers": "kafka-1:9093",
            "group_id": "opsloop",
            "properties": {
                "security_protocol": "SASL_SSL",
                "sasl.mechanism": "SCRAM-SHA-512",
                "enable_idempotence": true,
                "linger_ms": 5,
                "log_level": 7,
            },
        }))
        .expect("valid");
        let kafka = section.kafka_config();
        let property = |key: &str| kafka.properties.get(key).map(String::as_str);
        assert_eq!(property("security.protocol"), Some("SASL_SSL"));
        assert_eq!(property("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(property("enable.idempotence"), Some("true"));
        assert_eq!(property("linger.ms"), Some("5"));
        assert_eq!(
            property("log_level"),
            Some("7"),
            "librdkafka's own underscore"
        );
    }
}
