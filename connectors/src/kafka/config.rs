//! Connection settings shared by every Kafka client opsloop creates.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;

/// Where the brokers are and how to talk to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` bootstrap list.
    pub brokers: String,
    /// `client.id` sent to the brokers, visible in their logs and quotas.
    pub client_id: String,
    /// Further librdkafka properties (`security.protocol`, `sasl.mechanism`, ...), passed as-is.
    pub properties: BTreeMap<String, String>,
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            client_id: "opsloop".to_owned(),
            properties: BTreeMap::new(),
        }
    }

    /// The librdkafka configuration for a client of this cluster.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id);
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }
}
