//! Moving records between Kafka and opsloop.
//!
//! [`kafka`] holds the broker-facing pieces: client configuration shared by every component and
//! topic administration. Errors carry a [`Retry`] hint so callers know whether trying again can
//! help. [`decode`] turns record payloads (Avro, JSON lines, Prometheus text from node-exporter
//! or dcgm-exporter) into Arrow record batches; a record that does not decode fails whole with a
//! [`decode::DecodeError`] whose reason code becomes its dead-letter reason.

pub mod decode;
mod error;
pub mod kafka;

pub use error::{ConnectorError, Retry};
