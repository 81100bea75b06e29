//! Moving records between Kafka and opsloop.
//!
//! [`kafka`] holds the broker-facing pieces: client configuration shared by every component,
//! topic administration, the consumer-group source that hands over Arrow micro-batches, the
//! idempotent sink and the dead-letter writer; [`metrics`] holds their Prometheus counters.
//! Errors carry a [`Retry`] hint so callers know whether trying again can help. [`decode`]
//! turns record payloads (Avro, OTLP, JSON lines, Prometheus text from node-exporter or
//! dcgm-exporter) into Arrow record batches; a record that does not decode fails whole with a
//! [`decode::DecodeError`] whose reason code becomes its dead-letter reason; [`registry`] is the
//! one table of source formats, their encodings, decoders and row layouts. [`generate`]
//! simulates a fleet of databases, GPUs and models, with scheduled faults and their ground
//! truth, for `opsloop generate`, the benchmarks and the demo.

pub mod collect;
pub mod decode;
mod error;
pub mod generate;
pub mod kafka;
pub mod metrics;
pub mod postgres;
pub mod registry;

pub use error::{ConnectorError, Retry};
