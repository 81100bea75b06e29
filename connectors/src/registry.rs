//! The source registry: every format a Kafka source can read, the encodings it comes in, the
//! decoder that reads it and the layout (Arrow schema, event-time column) of its rows — one
//! table, so adding a format is one entry here and a configuration with a format and an
//! encoding that do not go together is refused when it loads.
//!
//! | format | encodings (first: default) | decoder | rows |
//! |---|---|---|---|
//! | `metric_batch` | confluent, avro, json | [`AvroMetricBatchDecoder`] | metric samples |
//! | `json_lines` | json | [`JsonLinesDecoder`] | metric samples |
//! | `prometheus` | text | [`PrometheusTextDecoder`] | metric samples |
//! | `otlp_metrics` | otlp_proto, otlp_json | [`OtlpMetricsDecoder`] | metric samples |
//! | `otlp_logs` | otlp_proto, otlp_json | [`OtlpLogsDecoder`] | `LogRecord` |
//! | `otlp_traces` | otlp_proto, otlp_json | [`OtlpTracesDecoder`] | `Span` |
//! | `gpu_sample` | confluent, avro, json | [`AvroRecordDecoder`] | `GpuSample` |
//! | `feature_sample` | confluent, avro, json | [`AvroRecordDecoder`] | `FeatureSample` |
//! | `log_record` | confluent, avro, json | [`AvroRecordDecoder`] | `LogRecord` |
//! | `span` | confluent, avro, json | [`AvroRecordDecoder`] | `Span` |
//!
//! Metric-sample rows are [`metric_samples_schema`] with event time `time`; the others are
//! their kind's [`record_schema`] with event time `time_us` (`start_time_us` for spans).

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use opsloop_schemas::telemetry::{FeatureSample, GpuSample, LogRecord, Span};
use opsloop_schemas::{AvroRecord, Codec, SchemaRegistry, WireFormat};
use serde::Deserialize;

use crate::ConnectorError;
use crate::decode::{
    AvroMetricBatchDecoder, AvroRecordDecoder, Decoder, JsonLinesDecoder, OtlpEncoding,
    OtlpLogsDecoder, OtlpMetricsDecoder, OtlpTracesDecoder, PrometheusTextDecoder, RecordRows,
    metric_samples_schema, record_schema,
};
use crate::kafka::{DeadLetterWriter, KafkaConfig, KafkaSource, SourceConfig};
use crate::metrics::SourceMetrics;

/// What the records of a source topic are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceFormat {
    MetricBatch,
    JsonLines,
    Prometheus,
    OtlpMetrics,
    OtlpLogs,
    OtlpTraces,
    GpuSample,
    FeatureSample,
    LogRecord,
    Span,
}

/// How the records are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceEncoding {
    /// Avro with the Confluent framing (magic byte, schema id).
    Confluent,
    /// Plain Avro datums of the built-in schema.
    Avro,
    /// JSON (the codec's JSON form, or JSON lines of samples).
    Json,
    /// Prometheus text exposition.
    Text,
    OtlpProto,
    OtlpJson,
}

impl fmt::Display for SourceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            SourceFormat::MetricBatch => "metric_batch",
            SourceFormat::JsonLines => "json_lines",
            SourceFormat::Prometheus => "prometheus",
            SourceFormat::OtlpMetrics => "otlp_metrics",
            SourceFormat::OtlpLogs => "otlp_logs",
            SourceFormat::OtlpTraces => "otlp_traces",
            SourceFormat::GpuSample => "gpu_sample",
            SourceFormat::FeatureSample => "feature_sample",
            SourceFormat::LogRecord => "log_record",
            SourceFormat::Span => "span",
        };
        f.write_str(name)
    }
}

impl fmt::Display for SourceEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            SourceEncoding::Confluent => "confluent",
            SourceEncoding::Avro => "avro",
            SourceEncoding::Json => "json",
            SourceEncoding::Text => "text",
            SourceEncoding::OtlpProto => "otlp_proto",
            SourceEncoding::OtlpJson => "otlp_json",
        };
        f.write_str(name)
    }
}

const CODEC: &[SourceEncoding] = &[
    SourceEncoding::Confluent,
    SourceEncoding::Avro,
    SourceEncoding::Json,
];
const OTLP: &[SourceEncoding] = &[SourceEncoding::OtlpProto, SourceEncoding::OtlpJson];

/// A format read in an encoding it does not come in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("format {format} comes in {}, not {encoding}", list(.format.encodings()))]
pub struct UnsupportedEncoding {
    pub format: SourceFormat,
    pub encoding: SourceEncoding,
}

fn list(encodings: &[SourceEncoding]) -> String {
    encodings
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl SourceFormat {
    /// The encodings this format comes in; the first is the default.
    pub fn encodings(self) -> &'static [SourceEncoding] {
        match self {
            SourceFormat::MetricBatch
            | SourceFormat::GpuSample
            | SourceFormat::FeatureSample
            | SourceFormat::LogRecord
            | SourceFormat::Span => CODEC,
            SourceFormat::JsonLines => &[SourceEncoding::Json],
            SourceFormat::Prometheus => &[SourceEncoding::Text],
            SourceFormat::OtlpMetrics | SourceFormat::OtlpLogs | SourceFormat::OtlpTraces => OTLP,
        }
    }

    pub fn default_encoding(self) -> SourceEncoding {
        self.encodings()[0]
    }

    /// `encoding` if this format comes in it.
    pub fn check(self, encoding: SourceEncoding) -> Result<(), UnsupportedEncoding> {
        if self.encodings().contains(&encoding) {
            Ok(())
        } else {
            Err(UnsupportedEncoding {
                format: self,
                encoding,
            })
        }
    }

    /// The Arrow schema of the rows this format decodes into, and their event-time column.
    pub fn layout(self) -> (SchemaRef, &'static str) {
        match self {
            SourceFormat::MetricBatch
            | SourceFormat::JsonLines
            | SourceFormat::Prometheus
            | SourceFormat::OtlpMetrics => (metric_samples_schema(), "time"),
            SourceFormat::GpuSample => (record_schema::<GpuSample>(), "time_us"),
            SourceFormat::FeatureSample => (record_schema::<FeatureSample>(), "time_us"),
            SourceFormat::LogRecord | SourceFormat::OtlpLogs => {
                (record_schema::<LogRecord>(), "time_us")
            }
            SourceFormat::Span | SourceFormat::OtlpTraces => {
                (record_schema::<Span>(), "start_time_us")
            }
        }
    }

    /// Starts a Kafka source of this format in `encoding` (checked first), its decoder
    /// refusing records over [`SourceConfig::max_record_bytes`].
    pub fn start(
        self,
        encoding: SourceEncoding,
        kafka: &KafkaConfig,
        config: SourceConfig,
        dead_letters: DeadLetterWriter,
        metrics: SourceMetrics,
    ) -> Result<KafkaSource, StartError> {
        self.check(encoding)?;
        let codec = || {
            let wire = match encoding {
                SourceEncoding::Avro => WireFormat::Avro,
                SourceEncoding::Json => WireFormat::Json,
                _ => WireFormat::Confluent,
            };
            Codec::new(wire, Arc::new(SchemaRegistry::builtin()))
        };
        let otlp = if encoding == SourceEncoding::OtlpJson {
            OtlpEncoding::Json
        } else {
            OtlpEncoding::Proto
        };
        let max = config.max_record_bytes;
        let source = match self {
            SourceFormat::MetricBatch => KafkaSource::start(
                kafka,
                config,
                AvroMetricBatchDecoder::new(codec()).with_max_record_bytes(max),
                dead_letters,
                metrics,
            ),
            SourceFormat::JsonLines => KafkaSource::start(
                kafka,
                config,
                JsonLinesDecoder::new().with_max_record_bytes(max),
                dead_letters,
                metrics,
            ),
            SourceFormat::Prometheus => KafkaSource::start(
                kafka,
                config,
                PrometheusTextDecoder::new().with_max_record_bytes(max),
                dead_letters,
                metrics,
            ),
            SourceFormat::OtlpMetrics => KafkaSource::start(
                kafka,
                config,
                OtlpMetricsDecoder::new(otlp).with_max_record_bytes(max),
                dead_letters,
                metrics,
            ),
            SourceFormat::OtlpLogs => KafkaSource::start(
                kafka,
                config,
                OtlpLogsDecoder::new(otlp).with_max_record_bytes(max),
                dead_letters,
                metrics,
            ),
            SourceFormat::OtlpTraces => KafkaSource::start(
                kafka,
                config,
                OtlpTracesDecoder::new(otlp).with_max_record_bytes(max),
                dead_letters,
                metrics,
            ),
            SourceFormat::GpuSample => {
                records::<GpuSample>(kafka, config, codec(), dead_letters, metrics)
            }
            SourceFormat::FeatureSample => {
                records::<FeatureSample>(kafka, config, codec(), dead_letters, metrics)
            }
            SourceFormat::LogRecord => {
                records::<LogRecord>(kafka, config, codec(), dead_letters, metrics)
            }
            SourceFormat::Span => records::<Span>(kafka, config, codec(), dead_letters, metrics),
        };
        Ok(source?)
    }
}

fn records<T>(
    kafka: &KafkaConfig,
    config: SourceConfig,
    codec: Codec,
    dead_letters: DeadLetterWriter,
    metrics: SourceMetrics,
) -> Result<KafkaSource, ConnectorError>
where
    T: AvroRecord + 'static,
    AvroRecordDecoder<T>: Decoder<Rows = RecordRows<T>>,
{
    let max = config.max_record_bytes;
    KafkaSource::start(
        kafka,
        config,
        AvroRecordDecoder::<T>::new(codec).with_max_record_bytes(max),
        dead_letters,
        metrics,
    )
}

/// Why a source did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Encoding(#[from] UnsupportedEncoding),
    #[error(transparent)]
    Kafka(#[from] ConnectorError),
}
