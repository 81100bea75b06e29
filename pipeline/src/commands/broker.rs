//! Broker options shared by every subcommand that talks to Kafka.

use anyhow::Context;
use clap::Args;
use opsloop_connectors::kafka::KafkaConfig;

#[derive(Debug, Clone, Args)]
pub(crate) struct BrokerArgs {
    /// Bootstrap brokers, host:port[,host:port...].
    #[arg(long, env = "OPSLOOP_BROKERS", default_value = "127.0.0.1:9092")]
    pub(crate) brokers: String,
    /// A librdkafka property for every client, as KEY=VALUE (security.protocol,
    /// sasl.mechanism, ...); repeatable.
    #[arg(short = 'X', long = "kafka-property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
}

impl BrokerArgs {
    pub(crate) fn kafka_config(&self) -> anyhow::Result<KafkaConfig> {
        let mut kafka = KafkaConfig::new(&self.brokers);
        for pair in &self.properties {
            let (key, value) = pair
                .split_once('=')
                .with_context(|| format!("-X {pair:?} is not KEY=VALUE"))?;
            kafka.properties.insert(key.to_owned(), value.to_owned());
        }
        Ok(kafka)
    }
}
