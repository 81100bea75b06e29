//! Mergeable quantile sketches on `hdrhistogram`, for p50/p95/p99/p999 over windows whose
//! partial states are built per micro-batch and merged when the window closes.

use hdrhistogram::Histogram;

/// Significant decimal digits kept: relative error at most 0.1%.
const SIGNIFICANT_DIGITS: u8 = 3;

/// A quantile sketch for non-negative values with a fixed resolution (`1 / scale`).
#[derive(Debug, Clone)]
pub struct QuantileSketch {
    histogram: Histogram<u64>,
    scale: f64,
    min: f64,
    max: f64,
}

impl QuantileSketch {
    /// A sketch that resolves values to `1 / scale` (scale 1000 on milliseconds: microseconds).
    pub fn new(scale: f64) -> Self {
        QuantileSketch {
            histogram: Histogram::new(SIGNIFICANT_DIGITS)
                .expect("3 significant digits is within hdrhistogram's 0..=5"),
            scale,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Records one value; negative and non-finite values are ignored.
    pub fn record(&mut self, value: f64) {
        self.record_n(value, 1);
    }

    /// Records `value` `count` times.
    pub fn record_n(&mut self, value: f64, count: u64) {
        if !value.is_finite() || value < 0.0 || count == 0 {
            return;
        }
        let scaled = (value * self.scale).round() as u64;
        // Auto-resizing histograms only fail on u64 overflow of the value itself.
        if self.histogram.record_n(scaled, count).is_ok() {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
    }

    /// Adds another sketch of the same scale.
    pub fn merge(&mut self, other: &QuantileSketch) {
        debug_assert_eq!(self.scale, other.scale);
        if self.histogram.add(&other.histogram).is_ok() {
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
        }
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The value at quantile `q` in [0, 1]; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.histogram.is_empty() {
            return None;
        }
        let value = self.histogram.value_at_quantile(q.clamp(0.0, 1.0)) as f64 / self.scale;
        Some(value.clamp(self.min, self.max))
    }

    /// (value, count) pairs of the recorded distribution, the sketch's portable state.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        self.histogram
            .iter_recorded()
            .map(|v| {
                (
                    v.value_iterated_to() as f64 / self.scale,
                    v.count_at_value(),
                )
            })
            .collect()
    }

    /// Heap bytes held by the sketch.
    pub fn size_bytes(&self) -> usize {
        self.histogram.distinct_values() * std::mem::size_of::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_the_resolution() {
        let mut sketch = QuantileSketch::new(1000.0);
        for i in 1..=10_000 {
            sketch.record(i as f64 / 10.0);
        }
        let p99 = sketch.quantile(0.99).expect("not empty");
        assert!((p99 - 990.0).abs() / 990.0 < 0.002, "{p99}");
        assert_eq!(sketch.quantile(1.0), Some(1000.0));
    }

    #[test]
    fn merged_halves_equal_the_whole() {
        let values: Vec<f64> = (0..5000)
            .map(|i| ((i * 7919) % 4999) as f64 * 0.37)
            .collect();
        let mut whole = QuantileSketch::new(100.0);
        let (mut left, mut right) = (QuantileSketch::new(100.0), QuantileSketch::new(100.0));
        for (i, &v) in values.iter().enumerate() {
            whole.record(v);
            if i % 2 == 0 {
                left.record(v)
            } else {
                right.record(v)
            }
        }
        left.merge(&right);
        for q in [0.5, 0.95, 0.99, 0.999] {
            assert_eq!(left.quantile(q), whole.quantile(q), "q = {q}");
        }
        assert_eq!(left.buckets(), whole.buckets());
    }
}
