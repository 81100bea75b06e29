//! The Arrow layout of metric samples and the builder that fills it.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayBuilder, ArrayRef, Float64Builder, MapBuilder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use opsloop_schemas::telemetry::MetricSample;

/// Time zone of the `time` column: event time is UTC everywhere in opsloop.
pub const TIME_ZONE: &str = "UTC";

static LABEL_KEYS: LazyLock<FieldRef> =
    LazyLock::new(|| Arc::new(Field::new("keys", DataType::Utf8, false)));
static LABEL_VALUES: LazyLock<FieldRef> =
    LazyLock::new(|| Arc::new(Field::new("values", DataType::Utf8, false)));
static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("entity", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new_map(
            "labels",
            "entries",
            Arc::clone(&LABEL_KEYS),
            Arc::clone(&LABEL_VALUES),
            false,
            false,
        ),
        Field::new("value", DataType::Float64, false),
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Microsecond, Some(TIME_ZONE.into())),
            false,
        ),
        Field::new("source", DataType::Utf8, false),
    ]))
});

/// The one Arrow schema of metric samples, whatever format they arrived in: `entity`, `name`
/// (Utf8), `labels` (Map<Utf8, Utf8>, keys and values not null, unsorted), `value` (Float64),
/// `time` (Timestamp(µs, "UTC")) and `source` (Utf8); no column is nullable.
pub fn metric_samples_schema() -> SchemaRef {
    Arc::clone(&SCHEMA)
}

/// Accumulates metric samples, one row each, and hands them over as a [`RecordBatch`] in
/// [`metric_samples_schema`].
///
/// Decoders stage a record's samples first and append them only once the whole record has
/// decoded, so a record that fails leaves the builder as it was.
#[derive(Debug)]
pub struct MetricSamplesBuilder {
    entity: StringBuilder,
    name: StringBuilder,
    labels: MapBuilder<StringBuilder, StringBuilder>,
    value: Float64Builder,
    time: TimestampMicrosecondBuilder,
    source: StringBuilder,
    /// Label bytes and pairs appended since the last finish, and the room reserved for them,
    /// for the memory estimate (the map builder's children are not readable through `&self`).
    label_bytes: usize,
    label_pairs: usize,
    reserved_label_bytes: usize,
    reserved_label_pairs: usize,
    staging: Staging,
}

impl Default for MetricSamplesBuilder {
    fn default() -> Self {
        MetricSamplesBuilder::with_capacity(0)
    }
}

/// Buffer sizes to reserve: a guess from a row count, or what the last batch used.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    rows: usize,
    entity_bytes: usize,
    name_bytes: usize,
    label_pairs: usize,
    key_bytes: usize,
    value_bytes: usize,
    source_bytes: usize,
}

impl Sizes {
    fn guess(rows: usize) -> Sizes {
        Sizes {
            rows,
            entity_bytes: rows * 8,
            name_bytes: rows * 24,
            label_pairs: rows,
            key_bytes: rows * 8,
            value_bytes: rows * 16,
            source_bytes: rows * 8,
        }
    }
}

impl MetricSamplesBuilder {
    pub fn new() -> Self {
        MetricSamplesBuilder::default()
    }

    /// A builder with room for `rows` samples before it reallocates.
    pub fn with_capacity(rows: usize) -> Self {
        MetricSamplesBuilder::with_sizes(Sizes::guess(rows))
    }

    fn with_sizes(sizes: Sizes) -> Self {
        let labels = MapBuilder::with_capacity(
            None,
            StringBuilder::with_capacity(sizes.label_pairs, sizes.key_bytes),
            StringBuilder::with_capacity(sizes.label_pairs, sizes.value_bytes),
            sizes.rows,
        )
        .with_keys_field(Arc::clone(&LABEL_KEYS))
        .with_values_field(Arc::clone(&LABEL_VALUES));
        MetricSamplesBuilder {
            entity: StringBuilder::with_capacity(sizes.rows, sizes.entity_bytes),
            name: StringBuilder::with_capacity(sizes.rows, sizes.name_bytes),
            labels,
            value: Float64Builder::with_capacity(sizes.rows),
            time: TimestampMicrosecondBuilder::with_capacity(sizes.rows).with_timezone(TIME_ZONE),
            source: StringBuilder::with_capacity(sizes.rows, sizes.source_bytes),
            label_bytes: 0,
            label_pairs: 0,
            reserved_label_bytes: sizes.key_bytes + sizes.value_bytes,
            reserved_label_pairs: sizes.label_pairs,
            staging: Staging::default(),
        }
    }

    /// Samples appended since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        self.value.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate heap bytes held: the column buffers' capacities plus the staging area. Use
    /// it to cut batches by memory rather than by row count.
    pub fn estimated_memory_bytes(&self) -> usize {
        let strings = |b: &StringBuilder| b.values_capacity() + 4 * b.offsets_capacity();
        strings(&self.entity)
            + strings(&self.name)
            + strings(&self.source)
            + self.label_bytes.max(self.reserved_label_bytes)
            + 8 * self.label_pairs.max(self.reserved_label_pairs)
            + 4 * self.len()
            + 8 * (self.value.capacity() + self.time.capacity())
            + self.staging.estimated_memory_bytes()
    }

    /// Appends one sample of a decoded record. It does not check the value: callers that must
    /// reject NaN or infinities do so first.
    pub fn append_sample(&mut self, entity: &str, source: &str, sample: &MetricSample) {
        self.entity.append_value(entity);
        self.name.append_value(&sample.name);
        {
            let (keys, values) = self.labels.entries();
            for (key, value) in &sample.labels {
                keys.append_value(key);
                values.append_value(value);
                self.label_bytes += key.len() + value.len();
            }
        }
        self.label_pairs += sample.labels.len();
        close_labels(&mut self.labels);
        self.value.append_value(sample.value);
        self.time.append_value(sample.time_us);
        self.source.append_value(source);
    }

    /// Builds a batch of every sample appended so far and empties the builder, reserving as
    /// much room for the next batch as this one used (batches of a stream are alike, and
    /// growing the buffers from empty every time costs a copy of every byte). The error is
    /// Arrow's column validation, which fails only if the builder itself has a bug.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let sizes = Sizes {
            rows: self.len(),
            entity_bytes: self.entity.values_slice().len(),
            name_bytes: self.name.values_slice().len(),
            label_pairs: self.label_pairs,
            key_bytes: self.labels.keys().values_slice().len(),
            value_bytes: self.labels.values().values_slice().len(),
            source_bytes: self.source.values_slice().len(),
        };
        let mut full = std::mem::replace(self, MetricSamplesBuilder::with_sizes(sizes));
        self.staging = std::mem::take(&mut full.staging);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(full.entity.finish()),
            Arc::new(full.name.finish()),
            Arc::new(full.labels.finish()),
            Arc::new(full.value.finish()),
            Arc::new(full.time.finish()),
            Arc::new(full.source.finish()),
        ];
        RecordBatch::try_new(metric_samples_schema(), columns)
    }

    /// Clears the staging area and hands it out for one record's samples.
    pub(crate) fn begin_record(&mut self) -> &mut Staging {
        self.staging.clear();
        &mut self.staging
    }

    /// Appends every staged row to the columns; returns how many. `payload` is the record the
    /// rows were staged from, which payload spans point into.
    pub(crate) fn commit_staged(&mut self, payload: &str) -> usize {
        let staging = &self.staging;
        for row in &staging.rows {
            self.entity.append_value(staging.get(row.entity, payload));
            self.name.append_value(staging.get(row.name, payload));
            {
                let (keys, values) = self.labels.entries();
                for &(key, value) in &staging.labels[row.labels.0..row.labels.1] {
                    keys.append_value(staging.get(key, payload));
                    values.append_value(staging.get(value, payload));
                    self.label_bytes += key.len() + value.len();
                }
            }
            self.label_pairs += row.labels.1 - row.labels.0;
            close_labels(&mut self.labels);
            self.value.append_value(row.value);
            self.time.append_value(row.time_us);
            self.source.append_value(staging.get(row.source, payload));
        }
        let count = self.staging.rows.len();
        self.staging.clear();
        count
    }
}

/// Ends one row's label map.
fn close_labels(labels: &mut MapBuilder<StringBuilder, StringBuilder>) {
    // Keys and values are appended in pairs, so their lengths agree and this cannot fail; if it
    // ever did, the map column would come up short and `finish` would report it.
    let closed = labels.append(true);
    debug_assert!(
        closed.is_ok(),
        "label keys and values are appended in pairs"
    );
}

/// A string of a staged row: a range of the staging text, or of the record payload for text
/// that needed no unescaping (so the parser copies it only once, into Arrow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    start: usize,
    end: usize,
    in_payload: bool,
}

impl Span {
    /// Bytes `start..end` of the record payload, which must lie on character boundaries.
    pub(crate) fn payload(start: usize, end: usize) -> Span {
        Span {
            start,
            end,
            in_payload: true,
        }
    }

    pub(crate) fn len(self) -> usize {
        self.end - self.start
    }
}

/// One staged sample; strings are spans of the staging text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StagedRow {
    pub(crate) entity: Span,
    pub(crate) name: Span,
    /// Range of [`Staging::labels`].
    pub(crate) labels: (usize, usize),
    pub(crate) value: f64,
    pub(crate) time_us: i64,
    pub(crate) source: Span,
    /// 1-based line of a text payload the row came from (0 for binary formats).
    pub(crate) line: usize,
}

/// Scratch space for one record's samples: every string is copied once into one text buffer
/// and referred to by span, so staging allocates nothing once the buffers have grown.
#[derive(Debug, Default)]
pub(crate) struct Staging {
    text: String,
    labels: Vec<(Span, Span)>,
    rows: Vec<StagedRow>,
}

impl Staging {
    pub(crate) fn clear(&mut self) {
        self.text.clear();
        self.labels.clear();
        self.rows.clear();
    }

    pub(crate) fn push_text(&mut self, text: &str) -> Span {
        let start = self.text.len();
        self.text.push_str(text);
        Span {
            start,
            end: self.text.len(),
            in_payload: false,
        }
    }

    /// The text buffer, for writers that build a string in place (unescaping); pair with
    /// [`Staging::span_from`].
    pub(crate) fn text_mut(&mut self) -> &mut String {
        &mut self.text
    }

    pub(crate) fn text_len(&self) -> usize {
        self.text.len()
    }

    /// The span from `start` to the current end of the text.
    pub(crate) fn span_from(&self, start: usize) -> Span {
        Span {
            start,
            end: self.text.len(),
            in_payload: false,
        }
    }

    /// The text of `span`; `payload` is the record that payload spans point into.
    pub(crate) fn get<'s>(&'s self, span: Span, payload: &'s str) -> &'s str {
        let source = if span.in_payload { payload } else { &self.text };
        &source[span.start..span.end]
    }

    /// The text of a span made by [`Staging::push_text`] or [`Staging::span_from`].
    pub(crate) fn text(&self, span: Span) -> &str {
        debug_assert!(!span.in_payload, "a payload span needs the payload");
        self.get(span, "")
    }

    pub(crate) fn push_label(&mut self, key: Span, value: Span) {
        self.labels.push((key, value));
    }

    pub(crate) fn labels_len(&self) -> usize {
        self.labels.len()
    }

    pub(crate) fn labels(&self, range: (usize, usize)) -> &[(Span, Span)] {
        &self.labels[range.0..range.1]
    }

    /// Drops the labels from `labels_len` and the text from `text_len` on: a sample that was
    /// parsed and then skipped.
    pub(crate) fn truncate(&mut self, labels_len: usize, text_len: usize) {
        self.labels.truncate(labels_len);
        self.text.truncate(text_len);
    }

    pub(crate) fn push_row(&mut self, row: StagedRow) {
        self.rows.push(row);
    }

    pub(crate) fn rows(&self) -> &[StagedRow] {
        &self.rows
    }

    pub(crate) fn rows_mut(&mut self) -> &mut [StagedRow] {
        &mut self.rows
    }

    fn estimated_memory_bytes(&self) -> usize {
        self.text.capacity()
            + self.labels.capacity() * size_of::<(Span, Span)>()
            + self.rows.capacity() * size_of::<StagedRow>()
    }
}

impl super::RowBuilder for MetricSamplesBuilder {
    fn len(&self) -> usize {
        MetricSamplesBuilder::len(self)
    }

    fn estimated_memory_bytes(&self) -> usize {
        MetricSamplesBuilder::estimated_memory_bytes(self)
    }

    fn max_event_time_us(&self, from: usize) -> Option<i64> {
        self.time.values_slice().get(from..)?.iter().copied().max()
    }

    fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        MetricSamplesBuilder::finish(self)
    }
}
