//! Creating topics, for `opsloop topics create` and test fixtures.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::{ClientLog, KafkaConfig};
use crate::error::is_retriable;
use crate::{ConnectorError, Retry};

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRequest {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
}

/// What happened to one requested topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicCreated {
    Created,
    AlreadyExisted,
}

/// Creates `topics`; a topic that already exists is reported, not an error. `timeout` bounds
/// the whole request, finding a broker included: when none answers in time the error is
/// [`ConnectorError::Unreachable`].
pub async fn create_topics(
    kafka: &KafkaConfig,
    topics: &[TopicRequest],
    timeout: Duration,
) -> Result<Vec<(String, TopicCreated)>, ConnectorError> {
    let mut client = kafka.client_config();
    let context = ClientLog::attach(kafka, &mut client);
    let admin: AdminClient<ClientLog> = client
        .create_with_context(context)
        .map_err(ConnectorError::Config)?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            NewTopic::new(
                &t.name,
                t.partitions,
                TopicReplication::Fixed(t.replication_factor),
            )
        })
        .collect();
    // The request timeout is librdkafka's socket.timeout.ms (60 s) unless set: it is what a
    // request waits for a broker to connect to.
    let options = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    let results =
        admin
            .create_topics(&new_topics, &options)
            .await
            .map_err(|error| match error {
                KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut) => {
                    ConnectorError::Unreachable {
                        brokers: kafka.brokers.clone(),
                        waited: timeout,
                    }
                }
                _ => ConnectorError::Kafka(error),
            })?;
    results
        .into_iter()
        .map(|result| match result {
            Ok(name) => Ok((name, TopicCreated::Created)),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                Ok((name, TopicCreated::AlreadyExisted))
            }
            Err((name, code)) => Err(ConnectorError::CreateTopic {
                topic: name,
                reason: code.to_string(),
                retry: if is_retriable(code) {
                    Retry::WithBackoff
                } else {
                    Retry::Never
                },
            }),
        })
        .collect()
}
