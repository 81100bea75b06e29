//! Control charts and change detectors: EWMA, two-sided CUSUM and Page-Hinkley. Each keeps a
//! handful of numbers per series.

use super::Detector;

/// Exponentially weighted mean and variance; the score is |x − mean| / sd.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ewma {
    alpha: f64,
    mean: f64,
    variance: f64,
    seen: u64,
    warmup: u64,
}

impl Ewma {
    /// `alpha` in (0, 1]: the weight of the newest value. Scores are 0 for the first `warmup`
    /// values.
    pub fn new(alpha: f64, warmup: u64) -> Self {
        Ewma {
            alpha,
            mean: 0.0,
            variance: 0.0,
            seen: 0,
            warmup,
        }
    }

    pub fn mean(&self) -> f64 {
        self.mean
    }

    pub fn std_dev(&self) -> f64 {
        self.variance.sqrt()
    }

    pub fn count(&self) -> u64 {
        self.seen
    }

    /// The z-score of `value` against the current estimate, floored spread `min_spread`.
    pub fn z(&self, value: f64, min_spread: f64) -> f64 {
        if self.seen < self.warmup.max(2) {
            return 0.0;
        }
        (value - self.mean) / self.std_dev().max(min_spread)
    }

    /// Folds `value` into the estimate.
    pub fn observe(&mut self, value: f64) {
        self.seen += 1;
        if self.seen == 1 {
            self.mean = value;
            self.variance = 0.0;
            return;
        }
        // Early on, weight like a running mean so the first value does not dominate.
        let alpha = self.alpha.max(1.0 / self.seen as f64);
        let delta = value - self.mean;
        self.mean += alpha * delta;
        self.variance = (1.0 - alpha) * (self.variance + alpha * delta * delta);
    }
}

impl Detector for Ewma {
    fn update(&mut self, value: f64) -> f64 {
        let z = self.z(value, 1e-12).abs();
        self.observe(value);
        z
    }
}

/// Two-sided tabular CUSUM on values standardised by an EWMA baseline: accumulates deviations
/// beyond `k` sigmas; the score is the larger sum divided by the decision interval `h`, so 1
/// means "alarm" in the classic chart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cusum {
    baseline: Ewma,
    k: f64,
    h: f64,
    upper: f64,
    lower: f64,
}

impl Cusum {
    /// Classic settings: `k` = 0.5, `h` = 5.
    pub fn new(k: f64, h: f64, baseline_alpha: f64) -> Self {
        Cusum {
            baseline: Ewma::new(baseline_alpha, 10),
            k,
            h,
            upper: 0.0,
            lower: 0.0,
        }
    }
}

impl Detector for Cusum {
    fn update(&mut self, value: f64) -> f64 {
        let z = self.baseline.z(value, 1e-12);
        self.upper = (self.upper + z - self.k).max(0.0);
        self.lower = (self.lower - z - self.k).max(0.0);
        let score = self.upper.max(self.lower) / self.h;
        if score >= 1.0 {
            // Alarm raised: restart accumulation so the next shift is caught afresh.
            self.upper = 0.0;
            self.lower = 0.0;
        }
        self.baseline.observe(value);
        score
    }
}

/// Page-Hinkley test for a change in mean, both directions. The score is the cumulative
/// deviation's distance from its extreme, divided by `lambda` (1 = alarm).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PageHinkley {
    delta: f64,
    lambda: f64,
    mean: f64,
    seen: u64,
    up_sum: f64,
    up_min: f64,
    down_sum: f64,
    down_max: f64,
}

impl PageHinkley {
    /// `delta`: magnitude of change tolerated; `lambda`: alarm threshold.
    pub fn new(delta: f64, lambda: f64) -> Self {
        PageHinkley {
            delta,
            lambda,
            mean: 0.0,
            seen: 0,
            up_sum: 0.0,
            up_min: 0.0,
            down_sum: 0.0,
            down_max: 0.0,
        }
    }
}

impl Detector for PageHinkley {
    fn update(&mut self, value: f64) -> f64 {
        self.seen += 1;
        self.mean += (value - self.mean) / self.seen as f64;
        self.up_sum += value - self.mean - self.delta;
        self.up_min = self.up_min.min(self.up_sum);
        self.down_sum += value - self.mean + self.delta;
        self.down_max = self.down_max.max(self.down_sum);
        let statistic = (self.up_sum - self.up_min).max(self.down_max - self.down_sum);
        let score = statistic / self.lambda;
        if score >= 1.0 {
            *self = PageHinkley::new(self.delta, self.lambda);
        }
        score
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(i: usize) -> f64 {
        ((i * 7919) % 13) as f64 / 13.0 - 0.5
    }

    #[test]
    fn ewma_tracks_mean_and_spread() {
        let mut ewma = Ewma::new(0.05, 10);
        for i in 0..2000 {
            ewma.observe(5.0 + noise(i));
        }
        assert!((ewma.mean() - 5.0).abs() < 0.1);
        assert!(ewma.std_dev() > 0.1 && ewma.std_dev() < 0.5);
    }

    #[test]
    fn cusum_alarms_on_a_small_sustained_shift() {
        let mut cusum = Cusum::new(0.5, 5.0, 0.01);
        for i in 0..500 {
            assert!(cusum.update(noise(i)) < 1.0, "false alarm at {i}");
        }
        let alarm = (0..100)
            .map(|i| cusum.update(0.5 + noise(i)))
            .position(|s| s >= 1.0);
        assert!(alarm.is_some_and(|at| at < 40), "{alarm:?}");
    }

    #[test]
    fn page_hinkley_alarms_on_a_drop_in_mean() {
        let mut detector = PageHinkley::new(0.05, 10.0);
        for i in 0..300 {
            assert!(detector.update(3.0 + noise(i)) < 1.0);
        }
        let alarm = (0..200)
            .map(|i| detector.update(1.5 + noise(i)))
            .position(|s| s >= 1.0);
        assert!(alarm.is_some_and(|at| at < 20), "{alarm:?}");
    }
}
