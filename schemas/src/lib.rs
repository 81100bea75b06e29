//! The opsloop topic contract.
//!
//! Every Kafka topic opsloop reads or writes carries one record kind ([`RecordKind`]). This crate
//! holds the Avro schema of each kind (`avro/*.avsc`, embedded at build time), the Rust type of
//! each kind ([`telemetry`], [`ops`]), the topic table ([`topics::CONTRACT`]) and the codecs
//! ([`Codec`]): plain Avro, Avro in the Confluent wire format (magic byte 0, a 4-byte big-endian
//! schema id, the datum) and JSON.
//!
//! Schema evolution follows Avro's rules for added fields: a reader decodes with the *writer's*
//! schema (found by schema id in a [`SchemaRegistry`]) and fields the writer did not know take
//! their defaults, so consumers on a newer schema read data written with an older one.

pub mod calendar;
mod catalog;
mod codec;
mod error;
pub mod examples;
pub mod ids;
pub mod ops;
mod registry;
pub mod telemetry;
pub mod topics;

pub use catalog::{AvroRecord, RecordKind};
pub use codec::{CONFLUENT_HEADER_LEN, CONFLUENT_MAGIC, Codec, WireFormat};
pub use error::{CodecError, SchemaError};
pub use registry::{RegisteredSchema, SchemaRegistry};
pub use serde_avro_fast::Schema;
