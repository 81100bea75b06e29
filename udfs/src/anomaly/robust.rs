//! Robust z-score over a sliding window: |x − median| / (1.4826 · MAD).

use std::collections::VecDeque;

use super::Detector;

/// Scale that makes the MAD a consistent estimator of a normal standard deviation.
const MAD_TO_SIGMA: f64 = 1.482_602_218_505_602;

/// Windows up to this size find their median without a heap allocation.
const STACK_SCRATCH: usize = 256;

/// Robust z-score against the last `window` values.
#[derive(Debug, Clone)]
pub struct RobustZScore {
    window: usize,
    values: VecDeque<f64>,
    min_spread: f64,
}

impl RobustZScore {
    /// `window` values of history (state is `window` f64s); `min_spread` floors the MAD so a
    /// flat history does not make every wiggle infinite.
    pub fn new(window: usize, min_spread: f64) -> Self {
        RobustZScore {
            window: window.max(3),
            values: VecDeque::with_capacity(window.max(3)),
            min_spread,
        }
    }

    /// The score `value` would get against the current window, without adding it.
    pub fn score(&self, value: f64) -> f64 {
        if self.values.len() < 3 {
            return 0.0;
        }
        // Short windows sort on the stack so the per-series state is only the window itself.
        let mut on_stack = [0.0; STACK_SCRATCH];
        let mut on_heap = Vec::new();
        let scratch: &mut [f64] = if self.values.len() <= STACK_SCRATCH {
            &mut on_stack[..self.values.len()]
        } else {
            on_heap.resize(self.values.len(), 0.0);
            &mut on_heap
        };
        for (slot, value) in scratch.iter_mut().zip(&self.values) {
            *slot = *value;
        }
        let median = median_in_place(scratch);
        for v in scratch.iter_mut() {
            *v = (*v - median).abs();
        }
        let mad = median_in_place(scratch);
        let spread = (mad * MAD_TO_SIGMA).max(self.min_spread);
        (value - median).abs() / spread
    }

    pub fn push(&mut self, value: f64) {
        if self.values.len() == self.window {
            self.values.pop_front();
        }
        self.values.push_back(value);
    }
}

impl Detector for RobustZScore {
    fn update(&mut self, value: f64) -> f64 {
        let score = self.score(value);
        self.push(value);
        score
    }
}

/// Median by selection; reorders `values`.
pub fn median_in_place(values: &mut [f64]) -> f64 {
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    let (_, &mut upper, _) = values.select_nth_unstable_by(n / 2, f64::total_cmp);
    if n % 2 == 1 {
        upper
    } else {
        let lower = values[..n / 2]
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        (lower + upper) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_handles_odd_and_even_lengths() {
        assert_eq!(median_in_place(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_in_place(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn spike_scores_high_and_normal_values_low() {
        let mut detector = RobustZScore::new(32, 1e-9);
        for i in 0..64 {
            let value = 10.0 + (i % 5) as f64 * 0.1;
            assert!(detector.update(value) < 3.0 || i < 3);
        }
        assert!(detector.update(30.0) > 50.0);
    }
}
