//! JSON lines of metric batches or flat samples.
//!
//! Each non-blank line is one object, either a `MetricBatch` as the JSON codec writes it or
//! one flat sample:
//!
//! ```text
//! {"entity":"db-1","source":"postgres","samples":[{"name":"x","labels":{},"value":1.5,"time_us":1}]}
//! {"entity":"db-1","name":"x","value":1.5,"time_us":123,"labels":{"db":"orders"}}
//! {"name":"x","value":"2.5","timestamp":"2024-05-01T12:00:00Z"}
//! ```
//!
//! The objects are read straight into the staging area with serde visitors, no intermediate
//! records or maps. Unknown fields are ignored, as the codec's serde types do.

use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};

use super::batch::{Span, StagedRow, Staging};
use super::{
    DEFAULT_MAX_RECORD_BYTES, DecodeError, Decoder, FallbackEntity, MetricSamplesBuilder,
    RecordContext, check_size, parse_rfc3339_us, utf8_text,
};

/// Decodes JSON lines: one `MetricBatch` object or flat sample object per line.
///
/// * A flat sample is `{"entity", "name", "value", "time_us", "labels", "source"}`; only
///   `name` and `value` are required. A batch is `{"entity", "source", "samples": [...]}` with
///   samples `{"name", "value", "time_us", "labels"}`.
/// * `value` is a JSON number or a string holding one (`"2.5"`, as Prometheus's HTTP API
///   writes them); NaN and infinities (`"NaN"`, `"+Inf"`) fail the record.
/// * The time is `time_us` (µs since the Unix epoch) or `timestamp` (RFC 3339), else the
///   record timestamp; giving both is an error.
/// * A missing entity is the record key, else `"unknown"`. A missing source is empty.
/// * Blank lines are ignored; an error names the 1-based line.
#[derive(Debug, Clone)]
pub struct JsonLinesDecoder {
    max_record_bytes: usize,
}

impl Default for JsonLinesDecoder {
    fn default() -> Self {
        JsonLinesDecoder {
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

impl JsonLinesDecoder {
    pub fn new() -> Self {
        JsonLinesDecoder::default()
    }

    /// Rejects records over `max` bytes ([`DEFAULT_MAX_RECORD_BYTES`] by default).
    pub fn with_max_record_bytes(self, max: usize) -> Self {
        JsonLinesDecoder {
            max_record_bytes: max,
        }
    }
}

impl Decoder for JsonLinesDecoder {
    type Rows = MetricSamplesBuilder;

    fn decode(
        &mut self,
        payload: &[u8],
        context: &RecordContext<'_>,
        out: &mut MetricSamplesBuilder,
    ) -> Result<usize, DecodeError> {
        check_size(payload, self.max_record_bytes)?;
        let text = utf8_text(payload, "the JSON payload")?;
        let staging = out.begin_record();
        let mut record = Record {
            staging,
            fallback: FallbackEntity::new(context.key),
            default_time_us: context.timestamp_us,
            line: 0,
            failure: None,
        };
        for (index, line) in text.split('\n').enumerate() {
            if line.trim_ascii().is_empty() {
                continue;
            }
            record.line = index + 1;
            record.decode_line(line)?;
        }
        Ok(out.commit_staged(text))
    }
}

/// The state of one record while its lines are read.
struct Record<'r, 'k> {
    staging: &'r mut Staging,
    fallback: FallbackEntity<'k>,
    default_time_us: i64,
    /// 1-based line being read.
    line: usize,
    /// An error that is not a JSON syntax error (a non-finite value, a bad key), set by a
    /// visitor just before it returns a placeholder serde error.
    failure: Option<DecodeError>,
}

impl Record<'_, '_> {
    fn decode_line(&mut self, line: &str) -> Result<(), DecodeError> {
        let mut deserializer = serde_json::Deserializer::from_str(line);
        let result = ObjectSeed {
            record: self,
            in_batch: false,
        }
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end());
        result.map_err(|error| {
            self.failure.take().unwrap_or_else(|| {
                let position = format!(" at line {} column {}", error.line(), error.column());
                let message = error.to_string();
                DecodeError::InvalidJson {
                    line: self.line,
                    column: error.column(),
                    message: message
                        .strip_suffix(&position)
                        .unwrap_or(&message)
                        .to_owned(),
                }
            })
        })
    }

    /// Records `failure` and returns the serde error that unwinds the parser.
    fn fail<E: de::Error>(&mut self, failure: DecodeError) -> E {
        self.failure = Some(failure);
        E::custom("the record is rejected")
    }
}

/// Keys the decoder knows; any other is skipped.
enum Key {
    Entity,
    Source,
    Samples,
    Name,
    Value,
    TimeUs,
    Timestamp,
    Labels,
    Other,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "entity" => Key::Entity,
                    "source" => Key::Source,
                    "samples" => Key::Samples,
                    "name" => Key::Name,
                    "value" => Key::Value,
                    "time_us" => Key::TimeUs,
                    "timestamp" => Key::Timestamp,
                    "labels" => Key::Labels,
                    _ => Key::Other,
                })
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

/// One object: a batch or a flat sample on a line, or a sample inside a batch.
struct ObjectSeed<'a, 'r, 'k> {
    record: &'a mut Record<'r, 'k>,
    in_batch: bool,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.in_batch {
            "a sample object"
        } else {
            "a metric batch or sample object"
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let record = self.record;
        let first_row = record.staging.rows().len();
        let mut entity = None;
        let mut source = None;
        let mut samples = false;
        let mut name = None;
        let mut value = None;
        let mut time_us = None;
        let mut timestamp = None;
        let mut labels = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Entity if !self.in_batch => {
                    set(
                        &mut entity,
                        "entity",
                        map.next_value_seed(Text(record.staging))?,
                    )
                    .map_err(A::Error::duplicate_field)?;
                }
                Key::Source if !self.in_batch => {
                    set(
                        &mut source,
                        "source",
                        map.next_value_seed(Text(record.staging))?,
                    )
                    .map_err(A::Error::duplicate_field)?;
                }
                Key::Samples if !self.in_batch => {
                    if samples {
                        return Err(A::Error::duplicate_field("samples"));
                    }
                    samples = true;
                    map.next_value_seed(Samples(record))?;
                }
                Key::Name => set(
                    &mut name,
                    "name",
                    map.next_value_seed(Text(record.staging))?,
                )
                .map_err(A::Error::duplicate_field)?,
                Key::Value => set(&mut value, "value", map.next_value_seed(Number)?)
                    .map_err(A::Error::duplicate_field)?,
                Key::TimeUs => set(&mut time_us, "time_us", map.next_value::<i64>()?)
                    .map_err(A::Error::duplicate_field)?,
                Key::Timestamp => {
                    let text = map.next_value_seed(Text(record.staging))?;
                    let text = record.staging.text(text);
                    let us = parse_rfc3339_us(text).ok_or_else(|| {
                        A::Error::custom(format_args!(
                            "timestamp {text:?} is not an RFC 3339 time such as \
                             2024-05-01T12:00:00Z"
                        ))
                    })?;
                    set(&mut timestamp, "timestamp", us).map_err(A::Error::duplicate_field)?;
                }
                Key::Labels => {
                    let start = record.staging.labels_len();
                    map.next_value_seed(Labels(record.staging))?;
                    set(&mut labels, "labels", (start, record.staging.labels_len()))
                        .map_err(A::Error::duplicate_field)?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }

        let flat = name.is_some() || value.is_some() || labels.is_some();
        let timed = time_us.is_some() || timestamp.is_some();
        if samples {
            if flat || timed {
                return Err(A::Error::custom(
                    "an object holds either samples (a metric batch) or name and value (one \
                     sample), not both",
                ));
            }
            let entity = match entity {
                Some(entity) => entity,
                None => record.fallback_entity::<A::Error>()?,
            };
            let source = source.unwrap_or_else(|| record.staging.push_text(""));
            for row in &mut record.staging.rows_mut()[first_row..] {
                row.entity = entity;
                row.source = source;
            }
            return Ok(());
        }

        let name = name.ok_or_else(|| {
            A::Error::custom(if flat || self.in_batch {
                "missing field `name`"
            } else {
                "missing field `samples` (a metric batch) or `name` and `value` (one sample)"
            })
        })?;
        let value = value.ok_or_else(|| A::Error::missing_field("value"))?;
        let time_us = match (time_us, timestamp) {
            (Some(_), Some(_)) => {
                return Err(A::Error::custom(
                    "give the time as time_us or as timestamp, not both",
                ));
            }
            (Some(us), None) | (None, Some(us)) => us,
            (None, None) => record.default_time_us,
        };
        if !value.is_finite() {
            let failure = DecodeError::NonFiniteValue {
                metric: record.staging.text(name).to_owned(),
                value,
                line: Some(record.line),
            };
            return Err(record.fail(failure));
        }
        let labels = labels.unwrap_or((0, 0));
        // Rows of a batch get their entity and source when the batch object ends.
        let (entity, source) = if self.in_batch {
            (name, name)
        } else {
            let entity = match entity {
                Some(entity) => entity,
                None => record.fallback_entity::<A::Error>()?,
            };
            (
                entity,
                source.unwrap_or_else(|| record.staging.push_text("")),
            )
        };
        record.staging.push_row(StagedRow {
            entity,
            name,
            labels,
            value,
            time_us,
            source,
            line: record.line,
        });
        Ok(())
    }
}

impl Record<'_, '_> {
    fn fallback_entity<E: de::Error>(&mut self) -> Result<Span, E> {
        match self.fallback.span(self.staging) {
            Ok(span) => Ok(span),
            Err(failure) => Err(self.fail(failure)),
        }
    }
}

/// Fills `slot`; the field name back if it was already filled.
fn set<T>(slot: &mut Option<T>, field: &'static str, value: T) -> Result<(), &'static str> {
    if slot.is_some() {
        return Err(field);
    }
    *slot = Some(value);
    Ok(())
}

/// A batch's `samples` array, each element staged as a row.
struct Samples<'a, 'r, 'k>(&'a mut Record<'r, 'k>);

impl<'de> DeserializeSeed<'de> for Samples<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Samples<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of sample objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(ObjectSeed {
                record: self.0,
                in_batch: true,
            })?
            .is_some()
        {}
        Ok(())
    }
}

/// A string, copied into the staging text.
struct Text<'a>(&'a mut Staging);

impl<'de> DeserializeSeed<'de> for Text<'_> {
    type Value = Span;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Span, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for Text<'_> {
    type Value = Span;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Span, E> {
        Ok(self.0.push_text(text))
    }
}

/// A `labels` object of string values, staged as label pairs.
struct Labels<'a>(&'a mut Staging);

impl<'de> DeserializeSeed<'de> for Labels<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Labels<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of string label values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let staging = self.0;
        let first = staging.labels_len();
        while let Some(key) = map.next_key_seed(Text(staging))? {
            let repeated = staging
                .labels((first, staging.labels_len()))
                .iter()
                .any(|&(k, _)| staging.text(k) == staging.text(key));
            if repeated {
                return Err(A::Error::custom(format_args!(
                    "label {:?} appears twice",
                    staging.text(key)
                )));
            }
            let value = map.next_value_seed(Text(staging))?;
            staging.push_label(key, value);
        }
        Ok(())
    }
}

/// A sample value: a JSON number, or a string holding one.
struct Number;

impl<'de> DeserializeSeed<'de> for Number {
    type Value = f64;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<f64, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Visitor<'_> for Number {
    type Value = f64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number, or a string holding one")
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<f64, E> {
        Ok(value)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<f64, E> {
        Ok(value as f64)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<f64, E> {
        Ok(value as f64)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<f64, E> {
        text.trim().parse().map_err(|_| {
            E::custom(format_args!(
                "value {text:?} is not a number; expected a number such as 1.5 or \"1.5\""
            ))
        })
    }
}
