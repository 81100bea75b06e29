//! Errors of the schema catalog and the codecs.

use crate::RecordKind;

/// A record that could not be encoded or decoded. Each variant names the problem so a dead
/// letter's reason tells a person what was wrong with the bytes.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("the {kind} record is truncated: {detail}")]
    Truncated { kind: RecordKind, detail: String },
    #[error("wrong magic byte {found:#04x}: Confluent-framed records start with 0x00")]
    BadMagic { found: u8 },
    #[error("unknown schema id {id}: no schema with that id is registered")]
    UnknownSchemaId { id: u32 },
    #[error("schema id {id} is a {found} schema, but a {expected} record was expected")]
    WrongKind {
        id: u32,
        found: RecordKind,
        expected: RecordKind,
    },
    #[error("record does not match the {kind} Avro schema: {message}")]
    SchemaMismatch { kind: RecordKind, message: String },
    #[error("{count} bytes left over after the end of the {kind} record")]
    TrailingBytes { kind: RecordKind, count: usize },
    #[error("cannot encode the {kind} record as Avro: {message}")]
    Encode { kind: RecordKind, message: String },
    #[error("invalid JSON for a {kind} record: {source}")]
    Json {
        kind: RecordKind,
        #[source]
        source: serde_json::Error,
    },
}

impl CodecError {
    /// A stable, machine-readable reason, used as the dead-letter reason code and metric label.
    pub fn reason_code(&self) -> &'static str {
        match self {
            CodecError::Truncated { .. } => "truncated",
            CodecError::BadMagic { .. } => "bad_magic",
            CodecError::UnknownSchemaId { .. } => "unknown_schema_id",
            CodecError::WrongKind { .. } => "wrong_schema_kind",
            CodecError::SchemaMismatch { .. } => "schema_mismatch",
            CodecError::TrailingBytes { .. } => "trailing_bytes",
            CodecError::Encode { .. } => "encode_failed",
            CodecError::Json { .. } => "invalid_json",
        }
    }
}

/// A schema that could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("invalid Avro schema for {kind}: {message}")]
    Invalid { kind: RecordKind, message: String },
    #[error("schema names record {found}, but {expected} was expected")]
    WrongRecord {
        found: String,
        expected: &'static str,
    },
    #[error("schema id {id} is already registered for {kind}")]
    IdTaken { id: u32, kind: RecordKind },
}
