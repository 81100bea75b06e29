//! OTLP metrics: one `ExportMetricsServiceRequest` per record into metric samples.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint, SummaryDataPoint,
};
use opsloop_schemas::telemetry::MetricSample;

use super::{
    OtlpEncoding, decode_request, flatten_attributes, json, nanos_to_us, resource_attributes,
    resource_entity, text,
};
use crate::decode::{
    DEFAULT_MAX_RECORD_BYTES, DecodeError, Decoder, MetricSamplesBuilder, RecordContext, check_size,
};

/// The `source` column of every sample from OTLP.
pub const OTLP_SOURCE: &str = "otlp";

const REQUEST: &str = "ExportMetricsServiceRequest";

/// Resource attributes kept as labels on every sample of the resource; a data point attribute
/// of the same name wins.
const RESOURCE_LABELS: [&str; 4] = [
    "service.namespace",
    "service.name",
    "service.instance.id",
    "host.name",
];

/// Quantiles derived from explicit-bucket histograms, with their `quantile` label values.
const HISTOGRAM_QUANTILES: [(f64, &str); 4] =
    [(0.5, "0.5"), (0.9, "0.9"), (0.95, "0.95"), (0.99, "0.99")];

/// `DataPointFlags.FLAG_NO_RECORDED_VALUE`: the point is a staleness marker, not an observation.
const FLAG_NO_RECORDED_VALUE: u32 = 1;

/// Decodes one OTLP `ExportMetricsServiceRequest` per record into one row per value.
///
/// * Gauges and sums (int or double points): one sample named after the metric. Sums keep
///   their name; no `_total` is added.
/// * Histograms with explicit buckets: `<name>_count`, `<name>_sum` (when the point has a sum),
///   and `<name>` with label `quantile` = `0.5`, `0.9`, `0.95`, `0.99`, derived from the buckets
///   like Prometheus' `histogram_quantile`: linear interpolation within the bucket that holds
///   the rank, the first bucket starting at 0 (or returning its bound when that is not
///   positive), and a rank in the overflow bucket clamped to the last finite bound. A
///   histogram without finite bounds or without observations has no quantiles.
/// * Exponential histograms: `<name>_count` and `<name>_sum`; no quantiles.
/// * Summaries: `<name>` with label `quantile` for each reported quantile, `<name>_count`
///   and `<name>_sum`.
/// * Labels are the data point's attributes, plus the resource's `service.namespace`,
///   `service.name`, `service.instance.id` and `host.name` where the point has no attribute of
///   that name. The instrumentation scope is left out.
/// * The entity follows the resource (see the [module docs](super)); the time is the point's
///   `time_unix_nano` in µs, or the record timestamp when it is 0; the source is
///   [`OTLP_SOURCE`].
/// * Like Prometheus pages (whose NaNs the collector forwards as they are), a NaN or infinite
///   value is skipped, not an error; so is a point flagged as having no recorded value (a
///   staleness marker) or a number point with no value. Each is counted in
///   [`skipped_values`](Self::skipped_values).
#[derive(Debug, Clone)]
pub struct OtlpMetricsDecoder {
    encoding: OtlpEncoding,
    max_record_bytes: usize,
    skipped_values: u64,
}

impl Default for OtlpMetricsDecoder {
    fn default() -> Self {
        OtlpMetricsDecoder::new(OtlpEncoding::default())
    }
}

impl OtlpMetricsDecoder {
    /// A decoder of records in `encoding`.
    pub fn new(encoding: OtlpEncoding) -> Self {
        OtlpMetricsDecoder {
            encoding,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            skipped_values: 0,
        }
    }

    /// Rejects records over `max` bytes ([`DEFAULT_MAX_RECORD_BYTES`] by default).
    pub fn with_max_record_bytes(self, max: usize) -> Self {
        OtlpMetricsDecoder {
            max_record_bytes: max,
            ..self
        }
    }

    /// Values skipped so far (non-finite, flagged as no recorded value, or missing), over
    /// every record decoded without error; a failed record counts nothing.
    pub fn skipped_values(&self) -> u64 {
        self.skipped_values
    }
}

impl Decoder for OtlpMetricsDecoder {
    type Rows = MetricSamplesBuilder;

    fn decode(
        &mut self,
        payload: &[u8],
        context: &RecordContext<'_>,
        out: &mut MetricSamplesBuilder,
    ) -> Result<usize, DecodeError> {
        check_size(payload, self.max_record_bytes)?;
        let request: ExportMetricsServiceRequest =
            decode_request::<_, json::MetricsRequest>(payload, self.encoding, REQUEST)?;
        // Everything is converted before anything is appended, so a failure appends nothing.
        let mut resources = Vec::with_capacity(request.resource_metrics.len());
        let mut skipped = 0;
        for resource_metrics in &request.resource_metrics {
            let attributes = resource_attributes(resource_metrics.resource.as_ref());
            let mut samples = Samples {
                resource_labels: resource_labels(attributes),
                default_time_us: context.timestamp_us,
                samples: Vec::new(),
                skipped: 0,
            };
            for scope in &resource_metrics.scope_metrics {
                for metric in &scope.metrics {
                    samples.metric(metric)?;
                }
            }
            skipped += samples.skipped;
            if !samples.samples.is_empty() {
                let entity = resource_entity(attributes, context.key)?;
                resources.push((entity, samples.samples));
            }
        }
        let mut appended = 0;
        for (entity, samples) in &resources {
            for sample in samples {
                out.append_sample(entity, OTLP_SOURCE, sample);
            }
            appended += samples.len();
        }
        self.skipped_values += skipped;
        Ok(appended)
    }
}

/// The resource attributes kept as labels.
fn resource_labels(attributes: &[KeyValue]) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    for attribute in attributes {
        if RESOURCE_LABELS.contains(&attribute.key.as_str()) {
            labels.insert(attribute.key.clone(), text(attribute.value.as_ref()));
        }
    }
    labels
}

/// The samples of one resource under construction.
struct Samples {
    resource_labels: BTreeMap<String, String>,
    default_time_us: i64,
    samples: Vec<MetricSample>,
    skipped: u64,
}

impl Samples {
    fn metric(&mut self, metric: &Metric) -> Result<(), DecodeError> {
        let name = metric.name.as_str();
        match &metric.data {
            None => {}
            Some(Data::Gauge(gauge)) => self.numbers(name, &gauge.data_points),
            Some(Data::Sum(sum)) => self.numbers(name, &sum.data_points),
            Some(Data::Histogram(histogram)) => {
                for point in &histogram.data_points {
                    self.histogram(name, point)?;
                }
            }
            Some(Data::ExponentialHistogram(histogram)) => {
                for point in &histogram.data_points {
                    self.exponential_histogram(name, point);
                }
            }
            Some(Data::Summary(summary)) => {
                for point in &summary.data_points {
                    self.summary(name, point);
                }
            }
        }
        Ok(())
    }

    fn numbers(&mut self, name: &str, points: &[NumberDataPoint]) {
        for point in points {
            let value = match point.value {
                _ if point.flags & FLAG_NO_RECORDED_VALUE != 0 => None,
                Some(Value::AsDouble(value)) => Some(value),
                // Precision is lost above 2^53, as in every f64 metric pipeline.
                Some(Value::AsInt(value)) => Some(value as f64),
                None => None,
            };
            match value {
                Some(value) => {
                    let labels = self.labels(&point.attributes);
                    self.push(name.to_owned(), labels, value, point.time_unix_nano);
                }
                None => self.skipped += 1,
            }
        }
    }

    fn histogram(&mut self, name: &str, point: &HistogramDataPoint) -> Result<(), DecodeError> {
        if point.flags & FLAG_NO_RECORDED_VALUE != 0 {
            self.skipped += 1;
            return Ok(());
        }
        let buckets = !point.bucket_counts.is_empty();
        if buckets && point.bucket_counts.len() != point.explicit_bounds.len() + 1 {
            return Err(DecodeError::InvalidOtlp {
                request: REQUEST,
                message: format!(
                    "histogram {name:?} has {} bucket counts for {} explicit bounds; there \
                     must be one more count than bounds",
                    point.bucket_counts.len(),
                    point.explicit_bounds.len()
                ),
            });
        }
        let labels = self.labels(&point.attributes);
        self.count_and_sum(name, &labels, point.count, point.sum, point.time_unix_nano);
        if buckets {
            for (q, label) in HISTOGRAM_QUANTILES {
                let Some(value) = bucket_quantile(q, &point.explicit_bounds, &point.bucket_counts)
                else {
                    continue;
                };
                let mut labels = labels.clone();
                labels.insert("quantile".to_owned(), label.to_owned());
                self.push(name.to_owned(), labels, value, point.time_unix_nano);
            }
        }
        Ok(())
    }

    fn exponential_histogram(&mut self, name: &str, point: &ExponentialHistogramDataPoint) {
        if point.flags & FLAG_NO_RECORDED_VALUE != 0 {
            self.skipped += 1;
            return;
        }
        let labels = self.labels(&point.attributes);
        self.count_and_sum(name, &labels, point.count, point.sum, point.time_unix_nano);
    }

    fn summary(&mut self, name: &str, point: &SummaryDataPoint) {
        if point.flags & FLAG_NO_RECORDED_VALUE != 0 {
            self.skipped += 1;
            return;
        }
        let labels = self.labels(&point.attributes);
        self.count_and_sum(
            name,
            &labels,
            point.count,
            Some(point.sum),
            point.time_unix_nano,
        );
        for quantile in &point.quantile_values {
            let mut labels = labels.clone();
            labels.insert("quantile".to_owned(), quantile.quantile.to_string());
            self.push(
                name.to_owned(),
                labels,
                quantile.value,
                point.time_unix_nano,
            );
        }
    }

    fn count_and_sum(
        &mut self,
        name: &str,
        labels: &BTreeMap<String, String>,
        count: u64,
        sum: Option<f64>,
        time_unix_nano: u64,
    ) {
        // Counts above 2^53 lose precision, as in every f64 metric pipeline.
        let count = count as f64;
        self.push(
            format!("{name}_count"),
            labels.clone(),
            count,
            time_unix_nano,
        );
        if let Some(sum) = sum {
            self.push(format!("{name}_sum"), labels.clone(), sum, time_unix_nano);
        }
    }

    /// A data point's labels: its attributes over the resource's labels.
    fn labels(&self, attributes: &[KeyValue]) -> BTreeMap<String, String> {
        let mut labels = self.resource_labels.clone();
        flatten_attributes(attributes, &mut labels);
        labels
    }

    /// Stages one sample, or counts it as skipped when its value is not finite.
    fn push(
        &mut self,
        name: String,
        labels: BTreeMap<String, String>,
        value: f64,
        time_unix_nano: u64,
    ) {
        if !value.is_finite() {
            self.skipped += 1;
            return;
        }
        self.samples.push(MetricSample {
            name,
            labels,
            value,
            time_us: nanos_to_us(time_unix_nano).unwrap_or(self.default_time_us),
        });
    }
}

/// Quantile `q` of an explicit-bucket histogram as Prometheus' `histogram_quantile` computes
/// it; `None` without finite bounds or observations. `counts` has one more entry than
/// `bounds`: the overflow bucket.
fn bucket_quantile(q: f64, bounds: &[f64], counts: &[u64]) -> Option<f64> {
    // Counts as f64: sums of adversarial u64 counts cannot overflow.
    let total: f64 = counts.iter().map(|&count| count as f64).sum();
    if bounds.is_empty() || total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut below = 0.0;
    for (index, &count) in counts.iter().enumerate() {
        let count = count as f64;
        if below + count >= rank {
            let Some(&upper) = bounds.get(index) else {
                // The overflow bucket: clamp to the last finite bound.
                return bounds.last().copied();
            };
            let lower = match index.checked_sub(1) {
                Some(previous) => bounds[previous],
                None if upper <= 0.0 => return Some(upper),
                None => 0.0,
            };
            return Some(lower + (upper - lower) * (rank - below) / count);
        }
        below += count;
    }
    None
}
