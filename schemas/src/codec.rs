//! Encoding and decoding records in the three wire formats opsloop speaks.

use std::io::BufRead;
use std::sync::Arc;

use serde_avro_fast::Schema;
use serde_avro_fast::de::{DeserializerConfig, DeserializerState, read::SliceRead};
use serde_avro_fast::ser::SerializerConfig;

use crate::{AvroRecord, CodecError, RecordKind, SchemaRegistry};

/// First byte of a Confluent-framed record.
pub const CONFLUENT_MAGIC: u8 = 0;
/// Magic byte plus the 4-byte big-endian schema id.
pub const CONFLUENT_HEADER_LEN: usize = 5;
/// Longest array or map accepted in one record; longer claims in corrupt input fail fast.
const MAX_SEQUENCE_LEN: usize = 10_000_000;

/// How record values are laid out on a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireFormat {
    /// A bare Avro datum written with the current schema.
    Avro,
    /// Magic byte 0, 4-byte big-endian schema id, Avro datum (Confluent Schema Registry framing).
    Confluent,
    /// One JSON object per record.
    Json,
}

impl WireFormat {
    pub const ALL: [WireFormat; 3] = [WireFormat::Avro, WireFormat::Confluent, WireFormat::Json];

    pub fn name(self) -> &'static str {
        match self {
            WireFormat::Avro => "avro",
            WireFormat::Confluent => "confluent",
            WireFormat::Json => "json",
        }
    }
}

impl std::str::FromStr for WireFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WireFormat::ALL
            .into_iter()
            .find(|format| format.name() == s)
            .ok_or_else(|| format!("unknown wire format {s:?}: expected avro, confluent or json"))
    }
}

impl std::fmt::Display for WireFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Encodes and decodes records of any kind in one wire format.
#[derive(Debug, Clone)]
pub struct Codec {
    format: WireFormat,
    registry: Arc<SchemaRegistry>,
}

impl Codec {
    pub fn new(format: WireFormat, registry: Arc<SchemaRegistry>) -> Self {
        Codec { format, registry }
    }

    pub fn format(&self) -> WireFormat {
        self.format
    }

    pub fn registry(&self) -> &SchemaRegistry {
        &self.registry
    }

    /// Encodes `value` into a new buffer.
    pub fn encode<T: AvroRecord>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        let mut buffer = Vec::new();
        self.encode_into(value, &mut buffer)?;
        Ok(buffer)
    }

    /// Appends the encoding of `value` to `buffer`, so hot paths can reuse one allocation.
    pub fn encode_into<T: AvroRecord>(
        &self,
        value: &T,
        buffer: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        match self.format {
            WireFormat::Avro => write_datum(value, T::KIND.schema(), buffer),
            WireFormat::Confluent => {
                buffer.push(CONFLUENT_MAGIC);
                buffer.extend_from_slice(&self.registry.writer_id(T::KIND).to_be_bytes());
                write_datum(value, T::KIND.schema(), buffer)
            }
            WireFormat::Json => {
                serde_json::to_writer(buffer, value).map_err(|source| CodecError::Json {
                    kind: T::KIND,
                    source,
                })
            }
        }
    }

    /// Decodes one record value.
    pub fn decode<T: AvroRecord>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        match self.format {
            WireFormat::Avro => read_datum(bytes, T::KIND.schema(), T::KIND),
            WireFormat::Confluent => {
                let (writer, datum) = self.confluent_writer_schema(bytes, T::KIND)?;
                read_datum(datum, writer, T::KIND)
            }
            WireFormat::Json => serde_json::from_slice(bytes).map_err(|source| CodecError::Json {
                kind: T::KIND,
                source,
            }),
        }
    }

    /// Splits a Confluent-framed record into the writer schema its id names and the datum.
    fn confluent_writer_schema<'b>(
        &self,
        bytes: &'b [u8],
        expected: RecordKind,
    ) -> Result<(&Schema, &'b [u8]), CodecError> {
        let Some((header, datum)) = bytes.split_first_chunk::<CONFLUENT_HEADER_LEN>() else {
            return Err(CodecError::Truncated {
                kind: expected,
                detail: format!(
                    "the Confluent header needs {CONFLUENT_HEADER_LEN} bytes but only {} are present",
                    bytes.len()
                ),
            });
        };
        let [magic, id @ ..] = *header;
        if magic != CONFLUENT_MAGIC {
            return Err(CodecError::BadMagic { found: magic });
        }
        let id = u32::from_be_bytes(id);
        let registered = self
            .registry
            .get(id)
            .ok_or(CodecError::UnknownSchemaId { id })?;
        if registered.kind != expected {
            return Err(CodecError::WrongKind {
                id,
                found: registered.kind,
                expected,
            });
        }
        Ok((&registered.schema, datum))
    }
}

fn write_datum<T: AvroRecord>(
    value: &T,
    schema: &Schema,
    buffer: &mut Vec<u8>,
) -> Result<(), CodecError> {
    serde_avro_fast::to_datum(value, buffer, &mut SerializerConfig::new(schema))
        .map(drop)
        .map_err(|e| CodecError::Encode {
            kind: T::KIND,
            message: e.to_string(),
        })
}

/// Decodes a datum written with `writer`. Fields the reader type has but the writer schema
/// lacks take their serde defaults: that is how newer readers read older data.
fn read_datum<T: AvroRecord>(
    bytes: &[u8],
    writer: &Schema,
    kind: RecordKind,
) -> Result<T, CodecError> {
    let mut config = DeserializerConfig::new(writer);
    config.max_seq_size = MAX_SEQUENCE_LEN;
    let mut state = DeserializerState::with_config(SliceRead::new(bytes), config);
    let value = T::deserialize(state.deserializer()).map_err(|e| {
        let message = e.to_string();
        let truncated = message.contains("end of slice")
            || message.contains("Reached EOF")
            || e.io_error()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::UnexpectedEof);
        if truncated {
            CodecError::Truncated {
                kind,
                detail: format!("the Avro datum ends early ({message})"),
            }
        } else {
            CodecError::SchemaMismatch { kind, message }
        }
    })?;
    let mut rest = state.into_reader();
    let count = rest.fill_buf().map_or(0, |left| left.len());
    if count > 0 {
        return Err(CodecError::TrailingBytes { kind, count });
    }
    Ok(value)
}
