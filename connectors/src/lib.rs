//! Moving records between Kafka and opsloop.
//!
//! [`kafka`] holds the broker-facing pieces: client configuration shared by every component and
//! topic administration. Errors carry a [`Retry`] hint so callers know whether trying again can
//! help.

mod error;
pub mod kafka;

pub use error::{ConnectorError, Retry};
