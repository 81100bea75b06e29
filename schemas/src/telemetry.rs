//! Record types of the telemetry topics that producers publish to.
//!
//! Each type mirrors one `.avsc` file in `schemas/avro/`; field docs live there. Fields added
//! after a schema's first version carry `#[serde(default)]` so older records still decode.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A batch of metric samples from one entity (`telemetry.metrics`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricBatch {
    pub entity: String,
    #[serde(default)]
    pub source: String,
    pub samples: Vec<MetricSample>,
}

/// One observation of one metric series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSample {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub time_us: i64,
}

/// Log severity, from OpenTelemetry severity numbers or syslog levels.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
    Fatal,
}

/// One log record (`telemetry.logs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    pub entity: String,
    pub time_us: i64,
    #[serde(default)]
    pub severity: Severity,
    pub body: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub trace_id: Option<String>,
}

/// OpenTelemetry span status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SpanStatus {
    #[default]
    Unset,
    Ok,
    Error,
}

/// One finished trace span (`telemetry.traces`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    #[serde(default)]
    pub parent_span_id: Option<String>,
    pub service: String,
    pub operation: String,
    #[serde(default)]
    pub entity: String,
    pub start_time_us: i64,
    pub duration_us: i64,
    #[serde(default)]
    pub status: SpanStatus,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// One scrape of DCGM fields for one GPU (`telemetry.gpu`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuSample {
    pub gpu_uuid: String,
    #[serde(default)]
    pub gpu_index: i32,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub model_name: String,
    #[serde(default)]
    pub pci_bus_id: String,
    pub time_us: i64,
    pub fields: BTreeMap<String, f64>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One feature value seen by a model at inference (`telemetry.features`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSample {
    pub model_id: String,
    pub model_version: String,
    pub feature: String,
    #[serde(default)]
    pub value: Option<f64>,
    #[serde(default)]
    pub category: Option<String>,
    pub time_us: i64,
    #[serde(default)]
    pub entity: String,
}
