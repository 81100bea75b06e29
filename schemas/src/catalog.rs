//! The record kinds of the contract, their embedded `.avsc` text and parsed schemas.

use std::sync::{Arc, LazyLock};

use serde::{Serialize, de::DeserializeOwned};
use serde_avro_fast::Schema;

use crate::{ops, telemetry};

/// Every record kind of the topic contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    MetricBatch,
    LogRecord,
    Span,
    GpuSample,
    FeatureSample,
    Alert,
    Incident,
    RemediationEvent,
    Approval,
    ActionOutcome,
    CycleReport,
    Forecast,
    DeadLetter,
}

/// A Rust type that is the in-memory form of one [`RecordKind`].
pub trait AvroRecord: Serialize + DeserializeOwned {
    const KIND: RecordKind;

    /// The Kafka message key of this record on its contract topic (see
    /// [`TopicSpec::key`](crate::topics::TopicSpec::key)): records with the same key stay in
    /// one partition, in order.
    fn partition_key(&self) -> &str;
}

macro_rules! record_kinds {
    ($($kind:ident => $ty:ty, $file:literal, $namespace:literal, $id:literal, $key:ident;)*) => {
        impl RecordKind {
            /// All kinds, in contract order.
            pub const ALL: &'static [RecordKind] = &[$(RecordKind::$kind),*];

            /// The Avro record name without namespace, e.g. `MetricBatch`.
            pub fn name(self) -> &'static str {
                match self { $(RecordKind::$kind => stringify!($kind)),* }
            }

            /// The Avro full name, e.g. `io.opsloop.telemetry.MetricBatch`.
            pub fn full_name(self) -> &'static str {
                match self { $(RecordKind::$kind => concat!($namespace, ".", stringify!($kind))),* }
            }

            /// File name of the schema under `schemas/avro/`.
            pub fn file_name(self) -> &'static str {
                match self { $(RecordKind::$kind => $file),* }
            }

            /// The `.avsc` text of the current schema version.
            pub fn avsc(self) -> &'static str {
                match self { $(RecordKind::$kind => include_str!(concat!("../avro/", $file))),* }
            }

            /// Schema id of the current version in the built-in registry.
            pub fn builtin_schema_id(self) -> u32 {
                match self { $(RecordKind::$kind => $id),* }
            }
        }

        $(impl AvroRecord for $ty {
            const KIND: RecordKind = RecordKind::$kind;

            fn partition_key(&self) -> &str {
                &self.$key
            }
        })*
    };
}

record_kinds! {
    MetricBatch => telemetry::MetricBatch, "metric_batch.avsc", "io.opsloop.telemetry", 1, entity;
    LogRecord => telemetry::LogRecord, "log_record.avsc", "io.opsloop.telemetry", 2, entity;
    Span => telemetry::Span, "span.avsc", "io.opsloop.telemetry", 3, trace_id;
    GpuSample => telemetry::GpuSample, "gpu_sample.avsc", "io.opsloop.telemetry", 4, gpu_uuid;
    FeatureSample => telemetry::FeatureSample, "feature_sample.avsc", "io.opsloop.telemetry", 5, model_id;
    Alert => ops::Alert, "alert.avsc", "io.opsloop.ops", 6, entity;
    Incident => ops::Incident, "incident.avsc", "io.opsloop.ops", 7, incident_id;
    RemediationEvent => ops::RemediationEvent, "remediation.avsc", "io.opsloop.ops", 8, incident_id;
    Approval => ops::Approval, "approval.avsc", "io.opsloop.ops", 9, action_id;
    ActionOutcome => ops::ActionOutcome, "action_outcome.avsc", "io.opsloop.ops", 10, action_id;
    CycleReport => ops::CycleReport, "cycle_report.avsc", "io.opsloop.ops", 12, cycle_id;
    Forecast => ops::Forecast, "forecast.avsc", "io.opsloop.ops", 13, entity;
    DeadLetter => ops::DeadLetter, "dead_letter.avsc", "io.opsloop.ops", 11, source_topic;
}

/// Runs `$body` with `$ty` bound to the Rust type of the [`RecordKind`] `$kind`, for code that
/// handles every kind generically (publishing files, reading topics as tables).
///
/// ```
/// use opsloop_schemas::{AvroRecord, RecordKind, with_record_type};
/// let kind = RecordKind::Alert;
/// let name = with_record_type!(kind, T => <T as AvroRecord>::KIND.name());
/// assert_eq!(name, "Alert");
/// ```
#[macro_export]
macro_rules! with_record_type {
    ($kind:expr, $ty:ident => $body:expr) => {
        match $kind {
            $crate::RecordKind::MetricBatch => {
                type $ty = $crate::telemetry::MetricBatch;
                $body
            }
            $crate::RecordKind::LogRecord => {
                type $ty = $crate::telemetry::LogRecord;
                $body
            }
            $crate::RecordKind::Span => {
                type $ty = $crate::telemetry::Span;
                $body
            }
            $crate::RecordKind::GpuSample => {
                type $ty = $crate::telemetry::GpuSample;
                $body
            }
            $crate::RecordKind::FeatureSample => {
                type $ty = $crate::telemetry::FeatureSample;
                $body
            }
            $crate::RecordKind::Alert => {
                type $ty = $crate::ops::Alert;
                $body
            }
            $crate::RecordKind::Incident => {
                type $ty = $crate::ops::Incident;
                $body
            }
            $crate::RecordKind::RemediationEvent => {
                type $ty = $crate::ops::RemediationEvent;
                $body
            }
            $crate::RecordKind::Approval => {
                type $ty = $crate::ops::Approval;
                $body
            }
            $crate::RecordKind::ActionOutcome => {
                type $ty = $crate::ops::ActionOutcome;
                $body
            }
            $crate::RecordKind::CycleReport => {
                type $ty = $crate::ops::CycleReport;
                $body
            }
            $crate::RecordKind::Forecast => {
                type $ty = $crate::ops::Forecast;
                $body
            }
            $crate::RecordKind::DeadLetter => {
                type $ty = $crate::ops::DeadLetter;
                $body
            }
        }
    };
}

static CURRENT_SCHEMAS: LazyLock<Vec<Arc<Schema>>> = LazyLock::new(|| {
    RecordKind::ALL
        .iter()
        .map(|kind| {
            Arc::new(
                kind.avsc()
                    .parse()
                    .expect("embedded schemas are valid Avro; every one is parsed by a unit test"),
            )
        })
        .collect()
});

impl RecordKind {
    /// The parsed current schema of this kind.
    pub fn schema(self) -> &'static Schema {
        &CURRENT_SCHEMAS[self as usize]
    }

    /// The parsed current schema of this kind, shareable.
    pub(crate) fn shared_schema(self) -> Arc<Schema> {
        Arc::clone(&CURRENT_SCHEMAS[self as usize])
    }

    /// Finds a kind by its Avro name, with or without namespace, or by its file stem.
    pub fn from_name(name: &str) -> Option<RecordKind> {
        RecordKind::ALL.iter().copied().find(|kind| {
            kind.name().eq_ignore_ascii_case(name)
                || kind.full_name() == name
                || kind.file_name().trim_end_matches(".avsc") == name
        })
    }
}

impl std::fmt::Display for RecordKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_schema_parses_and_names_its_kind() {
        for &kind in RecordKind::ALL {
            let schema: Schema = kind.avsc().parse().expect("schema parses");
            let json: serde_json::Value = serde_json::from_str(kind.avsc()).expect("valid JSON");
            let full_name = format!(
                "{}.{}",
                json["namespace"].as_str().expect("namespace"),
                json["name"].as_str().expect("name")
            );
            assert_eq!(full_name, kind.full_name());
            assert!(json["doc"].as_str().is_some_and(|doc| !doc.is_empty()));
            drop(schema);
        }
    }

    #[test]
    fn kinds_are_indexed_in_declaration_order() {
        for (index, &kind) in RecordKind::ALL.iter().enumerate() {
            assert_eq!(kind as usize, index);
            assert_eq!(RecordKind::from_name(kind.name()), Some(kind));
            assert_eq!(RecordKind::from_name(kind.full_name()), Some(kind));
        }
    }

    #[test]
    fn builtin_schema_ids_are_unique() {
        let mut ids: Vec<u32> = RecordKind::ALL
            .iter()
            .map(|k| k.builtin_schema_id())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), RecordKind::ALL.len());
    }
}
