//! Connector errors, each with a hint on whether a retry can succeed.

/// Whether an operation that failed may succeed if tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The input or configuration is wrong; retrying repeats the failure.
    Never,
    /// A transient condition (broker unavailable, leader election); retry with backoff.
    WithBackoff,
}

/// An error talking to Kafka.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("invalid Kafka client configuration: {0}{hint}", hint = build_hint(.0))]
    Config(#[source] rdkafka::error::KafkaError),
    #[error("could not create topic {topic}: {reason}")]
    CreateTopic {
        topic: String,
        reason: String,
        retry: Retry,
    },
    #[error("Kafka request failed: {0}")]
    Kafka(#[source] rdkafka::error::KafkaError),
    #[error("could not deliver a record to topic {topic}: {reason}")]
    Delivery {
        topic: String,
        reason: String,
        retry: Retry,
    },
    #[error("could not encode a {kind} record: {reason}")]
    Encode { kind: &'static str, reason: String },
    #[error("the Kafka source stopped: {reason}")]
    SourceStopped { reason: String },
    #[error("the decoder's rows could not be turned into a batch: {0}")]
    Batch(#[source] arrow::error::ArrowError),
    #[error("scanning topic {topic}: {reason}")]
    Scan { topic: String, reason: String },
    /// No broker answered a request within its timeout.
    #[error(
        "no answer from the brokers {brokers} within {} s: check the address (--brokers, \
         kafka.brokers) and that a broker is up there",
        waited.as_secs_f64()
    )]
    Unreachable {
        brokers: String,
        waited: std::time::Duration,
    },
}

impl ConnectorError {
    /// Whether the failed operation may succeed if tried again.
    pub fn retry(&self) -> Retry {
        match self {
            ConnectorError::Config(_) => Retry::Never,
            ConnectorError::CreateTopic { retry, .. } | ConnectorError::Delivery { retry, .. } => {
                *retry
            }
            ConnectorError::Scan { .. } | ConnectorError::Unreachable { .. } => Retry::WithBackoff,
            ConnectorError::SourceStopped { .. }
            | ConnectorError::Batch(_)
            | ConnectorError::Encode { .. } => Retry::Never,
            ConnectorError::Kafka(error) => match error.rdkafka_error_code() {
                Some(code) if is_retriable(code) => Retry::WithBackoff,
                _ => Retry::Never,
            },
        }
    }
}

pub(crate) fn is_retriable(code: rdkafka::types::RDKafkaErrorCode) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        code,
        Code::BrokerTransportFailure
            | Code::AllBrokersDown
            | Code::RequestTimedOut
            | Code::OperationTimedOut
            | Code::NotLeaderForPartition
            | Code::LeaderNotAvailable
            | Code::NotEnoughReplicas
            | Code::NotEnoughReplicasAfterAppend
            | Code::NetworkException
            | Code::NotController
            | Code::QueueFull
    )
}

/// What to do when librdkafka refuses a setting this build left out: TLS and SCRAM need
/// OpenSSL, compiled in only with the `kafka-tls` feature.
fn build_hint(error: &rdkafka::error::KafkaError) -> &'static str {
    if error
        .to_string()
        .contains("OpenSSL not available at build time")
    {
        " (this opsloop was built without TLS and SASL/SCRAM: build it with `cargo build \
         --release -p opsloop-pipeline --features kafka-tls`, which needs libssl-dev, see \
         docs/topics.md)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::ClientConfig;
    use rdkafka::producer::BaseProducer;

    use super::*;

    fn producer(properties: &[(&str, &str)]) -> Result<BaseProducer, ConnectorError> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", "127.0.0.1:1");
        for (key, value) in properties {
            config.set(*key, *value);
        }
        config.create().map_err(ConnectorError::Config)
    }

    #[test]
    fn sasl_plain_needs_no_tls_and_a_missing_tls_build_says_how_to_get_one() {
        producer(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", "opsloop"),
            ("sasl.password", "secret"),
        ])
        .expect("SASL/PLAIN is built in");
        // With the kafka-tls feature this creates a client; without it the error says how.
        if let Err(error) = producer(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "opsloop"),
            ("sasl.password", "secret"),
        ]) {
            let message = error.to_string();
            eprintln!("{message}");
            assert!(message.contains("--features kafka-tls"), "{message}");
            assert_eq!(error.retry(), Retry::Never);
        }
    }
}
