//! The windowed aggregates the forecast jobs read: per entity and metric, a bounded series of
//! fixed event-time windows (sample count, sum, mean, min, max, last value, p99), kept between
//! cycles and saved in checkpoints. [`Windows::to_batch`] is the jobs' `windows` table.
//!
//! A sample lands in the window its event time falls in while that window is still held; a
//! window's p99 is exact over up to [`MAX_VALUES`] of its samples (beyond that, every other
//! value is dropped and the rest stand for the whole window, evenly spaced in arrival order).
//! The newest window stays open: its values are kept until a later window starts.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

/// Values of the open window kept for its p99.
pub const MAX_VALUES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Window {
    start_us: i64,
    samples: i64,
    sum: f64,
    min: f64,
    max: f64,
    last: f64,
    last_time_us: i64,
    /// Set when the window closes.
    p99: Option<f64>,
    /// The open window's values (every `stride`-th sample once over [`MAX_VALUES`]).
    values: Vec<f64>,
    stride: i64,
}

impl Window {
    fn new(start_us: i64, time_us: i64, value: f64) -> Self {
        Window {
            start_us,
            samples: 1,
            sum: value,
            min: value,
            max: value,
            last: value,
            last_time_us: time_us,
            p99: None,
            values: vec![value],
            stride: 1,
        }
    }

    fn add(&mut self, time_us: i64, value: f64) {
        self.samples += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        if time_us >= self.last_time_us {
            self.last = value;
            self.last_time_us = time_us;
        }
        if self.p99.is_some() || self.samples % self.stride != 0 {
            return;
        }
        self.values.push(value);
        if self.values.len() >= MAX_VALUES {
            let kept: Vec<f64> = self.values.iter().step_by(2).copied().collect();
            self.values = kept;
            self.stride *= 2;
        }
    }

    fn close(&mut self) {
        if self.p99.is_none() {
            self.p99 = Some(self.current_p99());
            self.values = Vec::new();
        }
    }

    fn current_p99(&self) -> f64 {
        self.p99.unwrap_or_else(|| quantile(&self.values, 0.99))
    }
}

/// The `q` quantile of `values` with linear interpolation between closest ranks (numpy's
/// default).
fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n => {
            let position = q * (n - 1) as f64;
            let below = position.floor() as usize;
            let above = (below + 1).min(n - 1);
            let weight = position - below as f64;
            sorted[below] * (1.0 - weight) + sorted[above] * weight
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Windows {
    width_us: i64,
    retain: usize,
    /// entity -> metric -> windows, oldest first.
    series: BTreeMap<String, BTreeMap<String, VecDeque<Window>>>,
}

impl Windows {
    /// Windows `width_s` wide, the newest `retain` per series.
    pub fn new(width_s: i64, retain: usize) -> Self {
        Windows {
            width_us: width_s.max(1) * 1_000_000,
            retain: retain.max(1),
            series: BTreeMap::new(),
        }
    }

    pub fn width_us(&self) -> i64 {
        self.width_us
    }

    /// One sample; one older than every window held is dropped.
    pub fn observe(&mut self, entity: &str, metric: &str, time_us: i64, value: f64) {
        if !value.is_finite() {
            return;
        }
        let start_us = time_us.div_euclid(self.width_us) * self.width_us;
        let windows = self
            .series
            .entry(entity.to_owned())
            .or_default()
            .entry(metric.to_owned())
            .or_default();
        match windows.back_mut() {
            Some(newest) if newest.start_us == start_us => newest.add(time_us, value),
            Some(newest) if newest.start_us > start_us => {
                if let Ok(i) = windows.binary_search_by_key(&start_us, |w| w.start_us) {
                    windows[i].add(time_us, value);
                }
            }
            newest => {
                if let Some(newest) = newest {
                    newest.close();
                }
                windows.push_back(Window::new(start_us, time_us, value));
                while windows.len() > self.retain {
                    windows.pop_front();
                }
            }
        }
    }

    /// Entities with at least one window, in order.
    pub fn entities(&self) -> impl Iterator<Item = &str> {
        self.series.keys().map(String::as_str)
    }

    /// (window start µs, p99) of one series, oldest first.
    pub fn p99s(&self, entity: &str, metric: &str) -> Vec<(i64, f64)> {
        self.series
            .get(entity)
            .and_then(|metrics| metrics.get(metric))
            .map(|windows| {
                windows
                    .iter()
                    .map(|w| (w.start_us, w.current_p99()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn schema() -> SchemaRef {
        let time = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let float = |name: &str| Field::new(name, DataType::Float64, false);
        Arc::new(Schema::new(vec![
            Field::new("entity", DataType::Utf8, false),
            Field::new("metric", DataType::Utf8, false),
            Field::new("window_start", time(), false),
            Field::new("window_end", time(), false),
            Field::new("samples", DataType::Int64, false),
            float("sum"),
            float("mean"),
            float("min"),
            float("max"),
            float("last"),
            float("p99"),
        ]))
    }

    /// Every window as one table (see [`schema`](Self::schema)).
    pub fn to_batch(&self) -> RecordBatch {
        let mut entity = StringBuilder::new();
        let mut metric = StringBuilder::new();
        let mut start = TimestampMicrosecondBuilder::new().with_timezone("UTC");
        let mut end = TimestampMicrosecondBuilder::new().with_timezone("UTC");
        let mut samples = Int64Builder::new();
        let mut floats: [Float64Builder; 6] = std::array::from_fn(|_| Float64Builder::new());
        for (entity_name, metrics) in &self.series {
            for (metric_name, windows) in metrics {
                for window in windows {
                    entity.append_value(entity_name);
                    metric.append_value(metric_name);
                    start.append_value(window.start_us);
                    end.append_value(window.start_us + self.width_us);
                    samples.append_value(window.samples);
                    let mean = window.sum / window.samples as f64;
                    let values = [
                        window.sum,
                        mean,
                        window.min,
                        window.max,
                        window.last,
                        window.current_p99(),
                    ];
                    for (builder, value) in floats.iter_mut().zip(values) {
                        builder.append_value(value);
                    }
                }
            }
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(entity.finish()),
            Arc::new(metric.finish()),
            Arc::new(start.finish()),
            Arc::new(end.finish()),
            Arc::new(samples.finish()),
        ];
        columns.extend(
            floats
                .iter_mut()
                .map(|builder| Arc::new(builder.finish()) as ArrayRef),
        );
        RecordBatch::try_new(Self::schema(), columns).expect("columns match the schema")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, Float64Array};
    use datafusion::arrow::datatypes::Int64Type;

    const MINUTE: i64 = 60_000_000;

    #[test]
    fn samples_aggregate_per_window_and_late_ones_land_where_they_belong() {
        let mut windows = Windows::new(60, 3);
        for (second, value) in [(0, 10.0), (30, 30.0), (59, 20.0), (60, 5.0), (45, 40.0)] {
            windows.observe("db-1", "m", second * 1_000_000, value);
        }
        let batch = windows.to_batch();
        assert_eq!(batch.num_rows(), 2);
        let samples = batch.column(4).as_primitive::<Int64Type>();
        assert_eq!(samples.values(), &[4, 1]);
        let column = |name: &str| -> Vec<f64> {
            batch
                .column_by_name(name)
                .expect("column")
                .as_any()
                .downcast_ref::<Float64Array>()
                .expect("floats")
                .values()
                .to_vec()
        };
        assert_eq!(column("sum"), [100.0, 5.0]);
        assert_eq!(column("mean"), [25.0, 5.0]);
        assert_eq!(column("max"), [40.0, 5.0]);
        // The late sample (45 s) is not the window's last: 59 s is.
        assert_eq!(column("last"), [20.0, 5.0]);
        // The first window closed before the late sample came: its p99 is of 10, 30, 20.
        let p99 = column("p99")[0];
        assert!((p99 - 29.8).abs() < 1e-9, "{p99}");
    }

    #[test]
    fn only_the_newest_windows_are_kept() {
        let mut windows = Windows::new(60, 3);
        for minute in 0..10 {
            windows.observe("db-1", "m", minute * MINUTE, minute as f64);
        }
        windows.observe("db-1", "m", 0, 99.0);
        let p99s = windows.p99s("db-1", "m");
        assert_eq!(
            p99s,
            vec![(7 * MINUTE, 7.0), (8 * MINUTE, 8.0), (9 * MINUTE, 9.0)]
        );
    }

    #[test]
    fn a_crowded_window_keeps_a_bounded_sample_with_the_right_p99() {
        let mut windows = Windows::new(60, 2);
        for i in 0..100_000 {
            windows.observe("db-1", "m", i, (i % 1000) as f64);
        }
        let window = &windows.series["db-1"]["m"][0];
        assert!(window.values.len() < MAX_VALUES, "{}", window.values.len());
        let p99 = window.current_p99();
        assert!((p99 - 989.0).abs() < 5.0, "{p99}");
        assert_eq!(window.samples, 100_000);
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.5);
        assert!((quantile(&[1.0, 2.0, 3.0, 4.0], 0.99) - 3.97).abs() < 1e-12);
        assert!(quantile(&[], 0.99).is_nan());
    }
}
