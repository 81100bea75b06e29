//! Shared helpers of the detector tests: the metric-samples stream table, batches from
//! samples, RFC 3339 times and output rows as JSON.

#![allow(dead_code)]

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Builder, MapBuilder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{
    DataType, Field, Float32Type, Float64Type, Int32Type, Int64Type, SchemaRef, TimeUnit,
    TimestampMicrosecondType, UInt32Type, UInt64Type,
};
use opsloop_engine::detector::StreamTable;
use opsloop_schemas::calendar::{civil_from_days, days_from_civil, time_of_day};
use serde_json::{Map, Value};

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The metric-samples schema the connectors decode every metric format into.
pub(crate) fn metric_schema() -> SchemaRef {
    opsloop_connectors::decode::metric_samples_schema()
}

/// The `db_metrics` stream table over [`metric_schema`], event time `time`.
pub(crate) fn db_metrics() -> StreamTable {
    StreamTable::new("db_metrics", metric_schema(), "time").expect("stream table")
}

/// The `gpu` stream table: one row per DCGM sample, in the connectors' layout of
/// [`GpuSample`](opsloop_schemas::telemetry::GpuSample) records.
pub(crate) fn gpu_samples() -> StreamTable {
    let schema =
        opsloop_connectors::decode::record_schema::<opsloop_schemas::telemetry::GpuSample>();
    StreamTable::new("gpu", schema, "time_us").expect("stream table")
}

/// One metric sample.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) entity: String,
    pub(crate) name: String,
    pub(crate) value: f64,
    pub(crate) time_us: i64,
    pub(crate) labels: Vec<(String, String)>,
}

impl Sample {
    pub(crate) fn new(entity: &str, name: &str, value: f64, time_us: i64) -> Self {
        Sample {
            entity: entity.to_string(),
            name: name.to_string(),
            value,
            time_us,
            labels: Vec::new(),
        }
    }
}

/// A batch of samples in [`metric_schema`].
pub(crate) fn batch(samples: &[Sample]) -> RecordBatch {
    let schema = metric_schema();
    let mut entity = StringBuilder::new();
    let mut name = StringBuilder::new();
    let mut labels = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new())
        .with_keys_field(Arc::new(Field::new("keys", DataType::Utf8, false)))
        .with_values_field(Arc::new(Field::new("values", DataType::Utf8, false)));
    let mut value = Float64Builder::new();
    let mut time = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut source = StringBuilder::new();
    for sample in samples {
        entity.append_value(&sample.entity);
        name.append_value(&sample.name);
        for (key, label) in &sample.labels {
            labels.keys().append_value(key);
            labels.values().append_value(label);
        }
        labels.append(true).expect("labels");
        value.append_value(sample.value);
        time.append_value(sample.time_us);
        source.append_value("test");
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(entity.finish()),
        Arc::new(name.finish()),
        Arc::new(labels.finish()),
        Arc::new(value.finish()),
        Arc::new(time.finish()),
        Arc::new(source.finish()),
    ];
    RecordBatch::try_new(schema, columns).expect("batch")
}

fn number(text: &str, what: &str) -> i64 {
    text.parse()
        .unwrap_or_else(|_| panic!("bad {what} {text:?} in a time"))
}

/// Microseconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`.
pub(crate) fn parse_time(text: &str) -> i64 {
    let body = text
        .strip_suffix('Z')
        .unwrap_or_else(|| panic!("time {text:?} must end in Z"));
    let (date, clock) = body
        .split_once('T')
        .unwrap_or_else(|| panic!("time {text:?} has no T"));
    let date: Vec<&str> = date.split('-').collect();
    assert_eq!(date.len(), 3, "date of {text:?}");
    let (clock, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let clock: Vec<&str> = clock.split(':').collect();
    assert_eq!(clock.len(), 3, "clock of {text:?}");
    let days = days_from_civil(
        number(date[0], "year"),
        number(date[1], "month"),
        number(date[2], "day"),
    );
    let seconds = number(clock[0], "hour") * 3600
        + number(clock[1], "minute") * 60
        + number(clock[2], "second");
    let micros = if fraction.is_empty() {
        0
    } else {
        assert!(fraction.len() <= 6, "at most microseconds in {text:?}");
        number(fraction, "fraction") * 10_i64.pow(6 - fraction.len() as u32)
    };
    days * MICROS_PER_DAY + seconds * 1_000_000 + micros
}

/// `YYYY-MM-DDTHH:MM:SSZ`, with `.ffffff` only when the time has microseconds.
pub(crate) fn format_time(micros: i64) -> String {
    let days = micros.div_euclid(MICROS_PER_DAY);
    let rest = micros.rem_euclid(MICROS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let fraction = rest % 1_000_000;
    let clock = time_of_day(micros);
    if fraction == 0 {
        format!("{year:04}-{month:02}-{day:02}T{clock}Z")
    } else {
        format!("{year:04}-{month:02}-{day:02}T{clock}.{fraction:06}Z")
    }
}

fn json_value(array: &dyn Array, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Utf8 => Value::from(array.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => Value::from(array.as_string::<i64>().value(row)),
        DataType::Utf8View => Value::from(array.as_string_view().value(row)),
        DataType::Boolean => Value::from(array.as_boolean().value(row)),
        DataType::Int64 => Value::from(array.as_primitive::<Int64Type>().value(row)),
        DataType::Int32 => Value::from(array.as_primitive::<Int32Type>().value(row)),
        DataType::UInt64 => Value::from(array.as_primitive::<UInt64Type>().value(row)),
        DataType::UInt32 => Value::from(array.as_primitive::<UInt32Type>().value(row)),
        DataType::Float64 => Value::from(array.as_primitive::<Float64Type>().value(row)),
        DataType::Float32 => Value::from(array.as_primitive::<Float32Type>().value(row)),
        DataType::Timestamp(TimeUnit::Microsecond, _) => Value::from(format_time(
            array.as_primitive::<TimestampMicrosecondType>().value(row),
        )),
        DataType::Struct(fields) => {
            let array = array.as_struct();
            let mut object = Map::new();
            for (field, column) in fields.iter().zip(array.columns()) {
                object.insert(field.name().clone(), json_value(column.as_ref(), row));
            }
            Value::Object(object)
        }
        other => panic!("no JSON rendering for {other}"),
    }
}

/// The rows of `batch` as JSON objects (timestamps as RFC 3339, structs as objects).
pub(crate) fn rows(batch: &RecordBatch) -> Vec<Value> {
    let schema = batch.schema();
    (0..batch.num_rows())
        .map(|row| {
            let mut object = Map::new();
            for (field, column) in schema.fields().iter().zip(batch.columns()) {
                object.insert(field.name().clone(), json_value(column.as_ref(), row));
            }
            Value::Object(object)
        })
        .collect()
}

/// JSON equality with numbers compared as `f64` to a relative 1e-9.
pub(crate) fn same(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Number(a), Value::Number(e)) => {
            let (a, e) = (
                a.as_f64().unwrap_or(f64::NAN),
                e.as_f64().unwrap_or(f64::NAN),
            );
            (a - e).abs() <= 1e-9 * e.abs().max(1.0)
        }
        (Value::Array(a), Value::Array(e)) => {
            a.len() == e.len() && a.iter().zip(e).all(|(a, e)| same(a, e))
        }
        (Value::Object(a), Value::Object(e)) => {
            a.len() == e.len()
                && a.iter()
                    .all(|(key, a)| e.get(key).is_some_and(|e| same(a, e)))
        }
        _ => actual == expected,
    }
}
