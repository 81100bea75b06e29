//! Any opsloop record kind as Arrow rows, one row per record, in a schema derived from its
//! Rust type.
//!
//! Metric batches are flattened to one row per sample by
//! [`MetricSamplesBuilder`](super::MetricSamplesBuilder); every other kind (log records, spans,
//! GPU samples, feature samples, alerts, incidents, remediation events, ...) maps one record to
//! one row with [`RecordRows`]. Nested values keep their shape: maps become Arrow maps, lists
//! become lists, enums become strings; strings are `Utf8` as in the metric samples. Fields whose name ends in `_us` hold event times and
//! become `Timestamp(µs, "UTC")` columns, except durations (`duration_us`).

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use opsloop_schemas::{AvroRecord, Codec};
use serde_arrow::ArrayBuilder;
use serde_arrow::schema::{SchemaLike, TracingOptions};

use super::{
    DEFAULT_MAX_RECORD_BYTES, DecodeError, Decoder, RecordContext, RowBuilder, TIME_ZONE,
    check_size,
};

/// The Arrow schema of record kind `T`, one column per top-level field.
pub fn record_schema<T: AvroRecord>() -> SchemaRef {
    Arc::new(Schema::new(record_fields::<T>()))
}

fn record_fields<T: AvroRecord>() -> Vec<FieldRef> {
    let options = TracingOptions::default()
        .enums_without_data_as_strings(true)
        .map_as_struct(false)
        .strings_as_large_utf8(false)
        .sequence_as_large_list(false)
        .bytes_as_large_binary(false)
        .allow_null_fields(true);
    // Every record type is a plain struct of serde-supported fields, so tracing cannot fail
    // for it; a failure is a bug in a schema type, caught by the test over every kind.
    let fields = Vec::<FieldRef>::from_type::<T>(options).unwrap_or_else(|error| {
        panic!(
            "record kind {} has no Arrow layout: {error}",
            T::KIND.name()
        )
    });
    fields.into_iter().map(column_type).collect()
}

/// Event times become timestamps; enums (traced as dictionaries) plain strings.
fn column_type(field: FieldRef) -> FieldRef {
    if let DataType::Dictionary(_, values) = field.data_type()
        && values.as_ref() == &DataType::Utf8
    {
        return Arc::new(Field::new(
            field.name(),
            DataType::Utf8,
            field.is_nullable(),
        ));
    }
    let is_event_time = field.name().ends_with("_us") && !field.name().ends_with("duration_us");
    if is_event_time && field.data_type() == &DataType::Int64 {
        Arc::new(Field::new(
            field.name(),
            DataType::Timestamp(TimeUnit::Microsecond, Some(TIME_ZONE.into())),
            field.is_nullable(),
        ))
    } else {
        field
    }
}

/// Rows of record kind `T` under construction.
pub struct RecordRows<T> {
    fields: Vec<FieldRef>,
    schema: SchemaRef,
    builder: ArrayBuilder,
    rows: usize,
    /// Encoded bytes of the rows appended since the last finish, a stand-in for their memory.
    bytes: usize,
    kind: PhantomData<fn(T)>,
}

impl<T> fmt::Debug for RecordRows<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordRows")
            .field("schema", &self.schema)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl<T: AvroRecord> Default for RecordRows<T> {
    fn default() -> Self {
        RecordRows::new()
    }
}

impl<T: AvroRecord> RecordRows<T> {
    pub fn new() -> Self {
        let fields = record_fields::<T>();
        let builder = new_builder(&fields);
        RecordRows {
            schema: Arc::new(Schema::new(fields.clone())),
            fields,
            builder,
            rows: 0,
            bytes: 0,
            kind: PhantomData,
        }
    }

    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// Appends one record; `encoded_len` is its size on the wire, for the memory estimate.
    pub fn append(&mut self, record: &T, encoded_len: usize) -> Result<(), ArrowError> {
        self.builder
            .push(record)
            .map_err(|error| ArrowError::InvalidArgumentError(error.to_string()))?;
        self.rows += 1;
        self.bytes += encoded_len + std::mem::size_of::<T>();
        Ok(())
    }
}

fn new_builder(fields: &[FieldRef]) -> ArrayBuilder {
    // The fields were traced from the type itself, so they are always a valid layout.
    ArrayBuilder::from_arrow(fields)
        .unwrap_or_else(|error| panic!("traced record fields are not buildable: {error}"))
}

impl<T: AvroRecord> RowBuilder for RecordRows<T> {
    fn len(&self) -> usize {
        self.rows
    }

    fn estimated_memory_bytes(&self) -> usize {
        self.bytes
    }

    fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let full = std::mem::replace(&mut self.builder, new_builder(&self.fields));
        self.rows = 0;
        self.bytes = 0;
        let columns = full
            .into_arrow()
            .map_err(|error| ArrowError::ComputeError(error.to_string()))?;
        RecordBatch::try_new(self.schema(), columns)
    }
}

/// Decodes one record of kind `T` per payload with a [`Codec`] into [`RecordRows`].
pub struct AvroRecordDecoder<T> {
    codec: Codec,
    max_record_bytes: usize,
    kind: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for AvroRecordDecoder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AvroRecordDecoder")
            .field("codec", &self.codec)
            .field("max_record_bytes", &self.max_record_bytes)
            .finish()
    }
}

impl<T> Clone for AvroRecordDecoder<T> {
    fn clone(&self) -> Self {
        AvroRecordDecoder {
            codec: self.codec.clone(),
            max_record_bytes: self.max_record_bytes,
            kind: PhantomData,
        }
    }
}

impl<T: AvroRecord> AvroRecordDecoder<T> {
    pub fn new(codec: Codec) -> Self {
        AvroRecordDecoder {
            codec,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            kind: PhantomData,
        }
    }

    /// Rejects records over `max` bytes ([`DEFAULT_MAX_RECORD_BYTES`] by default).
    pub fn with_max_record_bytes(self, max: usize) -> Self {
        AvroRecordDecoder {
            max_record_bytes: max,
            ..self
        }
    }
}

impl<T: AvroRecord> Decoder for AvroRecordDecoder<T> {
    type Rows = RecordRows<T>;

    fn decode(
        &mut self,
        payload: &[u8],
        _context: &RecordContext<'_>,
        out: &mut RecordRows<T>,
    ) -> Result<usize, DecodeError> {
        check_size(payload, self.max_record_bytes)?;
        let record: T = self.codec.decode(payload)?;
        out.append(&record, payload.len())
            .map_err(|error| DecodeError::Unrepresentable {
                kind: T::KIND.name(),
                message: error.to_string(),
            })?;
        Ok(1)
    }
}
