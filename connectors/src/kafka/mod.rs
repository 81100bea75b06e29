//! Kafka client configuration and topic administration.

mod admin;
mod config;

pub use admin::{TopicCreated, TopicRequest, create_topics};
pub use config::KafkaConfig;
