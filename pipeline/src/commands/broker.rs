//! Broker options shared by every subcommand that talks to Kafka.

use anyhow::Context;
use clap::Args;
use opsloop_connectors::kafka::KafkaConfig;
use opsloop_runtime::config::{KAFKA_PROPERTY_ENV_PREFIX, kafka_property_name};

#[derive(Debug, Clone, Args)]
pub(crate) struct BrokerArgs {
    /// Bootstrap brokers, host:port[,host:port...].
    #[arg(long, env = "OPSLOOP_BROKERS", default_value = "127.0.0.1:9092")]
    pub(crate) brokers: String,
    /// A librdkafka property for every client, as KEY=VALUE (security.protocol,
    /// sasl.mechanism, ...); repeatable. Also read from OPSLOOP_KAFKA__PROPERTIES__<KEY>
    /// variables (OPSLOOP_KAFKA__PROPERTIES__SASL_PASSWORD: secrets stay off the command
    /// line); -X wins.
    #[arg(short = 'X', long = "kafka-property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
}

impl BrokerArgs {
    pub(crate) fn kafka_config(&self) -> anyhow::Result<KafkaConfig> {
        self.kafka_config_with_env(std::env::vars())
    }

    fn kafka_config_with_env(
        &self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<KafkaConfig> {
        let mut kafka = KafkaConfig::new(&self.brokers);
        for (key, value) in env_properties(env) {
            kafka.properties.insert(kafka_property_name(&key), value);
        }
        for pair in &self.properties {
            let (key, value) = pair
                .split_once('=')
                .with_context(|| format!("-X {pair:?} is not KEY=VALUE"))?;
            kafka
                .properties
                .insert(kafka_property_name(key), value.to_owned());
        }
        Ok(kafka)
    }
}

/// The `OPSLOOP_KAFKA__PROPERTIES__<KEY>` variables of `env` as `[kafka.properties]` keys
/// (lower case, underscores) and their values as written, for the commands without a
/// configuration file (`opsloop run` and `actuate` read them through their configuration).
fn env_properties(
    env: impl IntoIterator<Item = (String, String)>,
) -> impl Iterator<Item = (String, String)> {
    env.into_iter().filter_map(|(name, value)| {
        name.strip_prefix(KAFKA_PROPERTY_ENV_PREFIX)
            .map(|key| (key.to_ascii_lowercase(), value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_come_from_the_environment_and_the_command_line_wins() {
        let args = BrokerArgs {
            brokers: "kafka-1:9092".to_owned(),
            properties: vec!["sasl.username=cli".to_owned()],
        };
        let env = [
            ("OPSLOOP_KAFKA__PROPERTIES__SECURITY_PROTOCOL", "SASL_SSL"),
            ("OPSLOOP_KAFKA__PROPERTIES__SASL_USERNAME", "env"),
            ("OPSLOOP_KAFKA__PROPERTIES__SASL_PASSWORD", "1e5"),
            ("OPSLOOP_BROKERS", "ignored-here"),
        ]
        .map(|(name, value)| (name.to_owned(), value.to_owned()));
        let kafka = args.kafka_config_with_env(env).expect("valid");
        let property = |key: &str| kafka.properties.get(key).map(String::as_str);
        assert_eq!(property("security.protocol"), Some("SASL_SSL"));
        assert_eq!(property("sasl.username"), Some("cli"));
        assert_eq!(property("sasl.password"), Some("1e5"), "text as written");
        assert_eq!(kafka.properties.len(), 3);
    }
}
