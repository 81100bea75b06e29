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
    #[error("invalid Kafka client configuration: {0}")]
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
}

impl ConnectorError {
    /// Whether the failed operation may succeed if tried again.
    pub fn retry(&self) -> Retry {
        match self {
            ConnectorError::Config(_) => Retry::Never,
            ConnectorError::CreateTopic { retry, .. } | ConnectorError::Delivery { retry, .. } => {
                *retry
            }
            ConnectorError::Scan { .. } => Retry::WithBackoff,
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
