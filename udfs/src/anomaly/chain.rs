//! The default anomaly detector chain the engine runs on every metric series.
//!
//! Per value, in order:
//! 1. **Component scores**, each a two-sided z-like distance:
//!    - robust z-score of the value against the last `short_window` values (spikes),
//!    - robust z-score of the first difference (sudden steps and slope breaks),
//!    - EWMA z-score against a slow baseline (level shifts that outlast the short window),
//!    - seasonal z-score against the value's hour of day (only once a series has covered two
//!      weeks),
//!    - novelty: how far the value lies outside the range seen so far, in spreads.
//! 2. **Raw score**: the largest component, mapped to (0, 1) by the normal tail probability.
//! 3. **Anomaly likelihood** (the post-processing Numenta's HTM detector uses): how unusual
//!    the recent average raw score is against the long-run distribution of raw scores, so a
//!    series that is always noisy does not alarm all the time.
//! 4. **Suppression**: after a score above `alarm_level`, the next `suppress_for` values are
//!    damped, since a person needs one page per anomaly, not one per sample.
//!
//! State per series: two windows of `short_window` values, the likelihood windows, and a few
//! dozen numbers — about 1.5 KiB with the defaults.

use std::collections::VecDeque;

use super::Detector;
use super::control::Ewma;
use super::robust::RobustZScore;
use super::seasonal::{SeasonalBaseline, Seasonality};
use crate::special::normal_sf;

/// Tuning of the [`AnomalyChain`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnomalyChainConfig {
    pub short_window: usize,
    pub baseline_alpha: f64,
    pub seasonal_alpha: f64,
    pub likelihood_long: usize,
    pub likelihood_short: usize,
    pub alarm_level: f64,
    pub suppress_for: usize,
}

impl Default for AnomalyChainConfig {
    fn default() -> Self {
        AnomalyChainConfig {
            short_window: 64,
            baseline_alpha: 0.01,
            seasonal_alpha: 0.1,
            likelihood_long: 400,
            likelihood_short: 5,
            alarm_level: 0.99,
            suppress_for: 100,
        }
    }
}

const MICROS_PER_WEEK: i64 = 7 * 24 * 3_600_000_000;

/// The default detector chain for one series.
#[derive(Debug, Clone)]
pub struct AnomalyChain {
    config: AnomalyChainConfig,
    values: RobustZScore,
    steps: RobustZScore,
    baseline: Ewma,
    seasonal: SeasonalBaseline,
    first_timestamp_us: Option<i64>,
    previous: Option<f64>,
    min_seen: f64,
    max_seen: f64,
    raw_history: VecDeque<f64>,
    raw_sum: f64,
    raw_sum_sq: f64,
    recent: VecDeque<f64>,
    suppressed: usize,
}

impl AnomalyChain {
    pub fn new(config: AnomalyChainConfig) -> Self {
        AnomalyChain {
            config,
            values: RobustZScore::new(config.short_window, 1e-9),
            steps: RobustZScore::new(config.short_window, 1e-9),
            baseline: Ewma::new(config.baseline_alpha, 30),
            seasonal: SeasonalBaseline::new(Seasonality::HourOfDay, config.seasonal_alpha, 1e-9),
            first_timestamp_us: None,
            previous: None,
            min_seen: f64::INFINITY,
            max_seen: f64::NEG_INFINITY,
            raw_history: VecDeque::with_capacity(config.likelihood_long),
            raw_sum: 0.0,
            raw_sum_sq: 0.0,
            recent: VecDeque::with_capacity(config.likelihood_short),
            suppressed: 0,
        }
    }

    /// Scores the value observed at `timestamp_us`; the result is in [0, 1].
    pub fn score(&mut self, timestamp_us: i64, value: f64) -> f64 {
        if !value.is_finite() {
            return 0.0;
        }
        let raw = self.raw_score(timestamp_us, value);
        let likelihood = self.likelihood(raw);
        if self.suppressed > 0 {
            self.suppressed -= 1;
            return likelihood * 0.5;
        }
        if likelihood >= self.config.alarm_level {
            self.suppressed = self.config.suppress_for;
        }
        likelihood
    }

    fn raw_score(&mut self, timestamp_us: i64, value: f64) -> f64 {
        let spread = self.values_spread();
        let mut z = self.values.update(value);
        if let Some(previous) = self.previous {
            z = z.max(self.steps.update(value - previous));
        }
        z = z.max(self.baseline.update(value));
        let first = *self.first_timestamp_us.get_or_insert(timestamp_us);
        let seasonal = self.seasonal.update(timestamp_us, value);
        if timestamp_us - first >= 2 * MICROS_PER_WEEK {
            z = z.max(seasonal);
        }
        if self.min_seen.is_finite() && spread > 0.0 {
            let outside = (self.min_seen - value).max(value - self.max_seen).max(0.0);
            z = z.max(outside / spread);
        }
        self.min_seen = self.min_seen.min(value);
        self.max_seen = self.max_seen.max(value);
        self.previous = Some(value);
        // Two-sided tail probability mapped so that larger z gives a score nearer 1.
        1.0 - 2.0 * normal_sf(z.abs())
    }

    fn values_spread(&self) -> f64 {
        let range = self.max_seen - self.min_seen;
        if range.is_finite() {
            range.max(1e-9)
        } else {
            0.0
        }
    }

    fn likelihood(&mut self, raw: f64) -> f64 {
        if self.recent.len() == self.config.likelihood_short {
            self.recent.pop_front();
        }
        self.recent.push_back(raw);
        let short_mean = self.recent.iter().sum::<f64>() / self.recent.len() as f64;
        let n = self.raw_history.len() as f64;
        let likelihood = if n < 30.0 {
            0.5
        } else {
            let mean = self.raw_sum / n;
            let variance = (self.raw_sum_sq / n - mean * mean).max(1e-6);
            1.0 - normal_sf((short_mean - mean) / variance.sqrt())
        };
        if self.raw_history.len() == self.config.likelihood_long
            && let Some(old) = self.raw_history.pop_front()
        {
            self.raw_sum -= old;
            self.raw_sum_sq -= old * old;
        }
        self.raw_history.push_back(raw);
        self.raw_sum += raw;
        self.raw_sum_sq += raw * raw;
        likelihood
    }
}

impl Default for AnomalyChain {
    fn default() -> Self {
        AnomalyChain::new(AnomalyChainConfig::default())
    }
}

impl Detector for AnomalyChain {
    fn update(&mut self, value: f64) -> f64 {
        self.score(0, value)
    }
}
