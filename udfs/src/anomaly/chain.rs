//! The default anomaly detector chain the engine runs on every metric series.
//!
//! Per value, in order:
//! 1. **Component distances**, each z-like:
//!    - robust z-score of the value against the last `short_window` values (spikes),
//!    - robust z-score of the first difference (sudden steps and slope breaks),
//!    - EWMA z-score against a slow baseline (level shifts that outlast the short window),
//!    - pattern novelty: distance from the last `pattern_length` values (scaled to the range
//!      seen so far) to the nearest of the `pattern_memory` earlier patterns, times
//!      `pattern_weight` — a shape never seen before scores high even within the usual range.
//! 2. **Raw score**: ln(1 + the largest distance).
//! 3. **Anomaly likelihood** (the post-processing Numenta's HTM detector made popular): how
//!    many standard deviations the raw score sits above the series' own long-run raw scores,
//!    so a series that is always noisy does not alarm all the time. Mapped to [0, 1) by x/(x+10).
//! 4. **Suppression**: after a score above `alarm_level`, the next `suppress_for` values are
//!    damped to a tenth: one page per anomaly, not one per sample.
//!
//! Two presets: [`AnomalyChainConfig::default`] (the most accurate: NAB standard score 53.0 on
//! the shared subset, about 28 KiB per series for its pattern memory) and
//! [`AnomalyChainConfig::compact`] (no pattern memory, EWMA likelihood: NAB 42.5, about 1.3 KiB
//! per series) for very many series. `cargo bench -p opsloop-benches --bench nab` reproduces both.

use std::collections::VecDeque;

use super::Detector;
use super::control::Ewma;
use super::robust::RobustZScore;

/// How the long-run distribution of raw scores is tracked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Likelihood {
    /// Exact mean and variance over the last N raw scores (N f64s of state).
    Window(usize),
    /// Exponentially weighted mean and variance with span N (two f64s of state).
    Ewma(usize),
}

/// Tuning of the [`AnomalyChain`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnomalyChainConfig {
    pub short_window: usize,
    pub baseline_alpha: f64,
    /// Values per pattern; 0 turns pattern novelty off.
    pub pattern_length: usize,
    pub pattern_memory: usize,
    pub pattern_weight: f64,
    pub likelihood: Likelihood,
    pub alarm_level: f64,
    pub suppress_for: usize,
}

impl Default for AnomalyChainConfig {
    fn default() -> Self {
        AnomalyChainConfig {
            short_window: 64,
            baseline_alpha: 0.01,
            pattern_length: 6,
            pattern_memory: 1000,
            pattern_weight: 50.0,
            likelihood: Likelihood::Window(400),
            alarm_level: 0.27,
            suppress_for: 100,
        }
    }
}

impl AnomalyChainConfig {
    /// Bounded to about 1.3 KiB per series: no pattern memory, EWMA likelihood.
    pub fn compact() -> Self {
        AnomalyChainConfig {
            pattern_length: 0,
            pattern_memory: 0,
            likelihood: Likelihood::Ewma(400),
            ..AnomalyChainConfig::default()
        }
    }
}

/// Scores below this many raw-score observations are not trusted.
const LIKELIHOOD_WARMUP: usize = 30;

#[derive(Debug, Clone)]
struct RawScoreDistribution {
    mode: Likelihood,
    window: VecDeque<f64>,
    mean: f64,
    mean_square: f64,
    seen: usize,
}

impl RawScoreDistribution {
    fn new(mode: Likelihood) -> Self {
        let capacity = match mode {
            Likelihood::Window(n) => n,
            Likelihood::Ewma(_) => 0,
        };
        RawScoreDistribution {
            mode,
            window: VecDeque::with_capacity(capacity),
            mean: 0.0,
            mean_square: 0.0,
            seen: 0,
        }
    }

    /// Standard deviations `raw` lies above the distribution so far (0 if below); then learns it.
    fn excess(&mut self, raw: f64) -> f64 {
        let (mean, mean_square) = match self.mode {
            Likelihood::Window(_) => {
                let n = self.window.len().max(1) as f64;
                (self.mean / n, self.mean_square / n)
            }
            Likelihood::Ewma(_) => (self.mean, self.mean_square),
        };
        let excess = if self.seen < LIKELIHOOD_WARMUP {
            0.0
        } else {
            let std = (mean_square - mean * mean).max(1e-6).sqrt();
            ((raw - mean) / std).max(0.0)
        };
        self.seen += 1;
        match self.mode {
            Likelihood::Window(n) => {
                if self.window.len() == n
                    && let Some(old) = self.window.pop_front()
                {
                    self.mean -= old;
                    self.mean_square -= old * old;
                }
                self.window.push_back(raw);
                self.mean += raw;
                self.mean_square += raw * raw;
            }
            Likelihood::Ewma(span) => {
                let alpha = (1.0 / span.max(1) as f64).max(1.0 / self.seen as f64);
                self.mean += alpha * (raw - self.mean);
                self.mean_square += alpha * (raw * raw - self.mean_square);
            }
        }
        excess
    }
}

/// Recent shapes of the series, for pattern novelty; fixed capacity.
#[derive(Debug, Clone)]
struct PatternMemory {
    length: usize,
    capacity: usize,
    recent_values: VecDeque<f64>,
    patterns: VecDeque<Vec<f32>>,
}

impl PatternMemory {
    fn new(length: usize, capacity: usize) -> Self {
        PatternMemory {
            length,
            capacity,
            recent_values: VecDeque::with_capacity(length),
            patterns: VecDeque::with_capacity(capacity),
        }
    }

    /// Distance from the newest pattern to its nearest earlier, non-overlapping pattern.
    fn novelty(&mut self, value: f64, min: f64, range: f64) -> Option<f64> {
        if self.length == 0 || self.capacity == 0 {
            return None;
        }
        if self.recent_values.len() == self.length {
            self.recent_values.pop_front();
        }
        self.recent_values.push_back(value);
        if self.recent_values.len() < self.length || range <= 0.0 {
            return None;
        }
        let pattern: Vec<f32> = self
            .recent_values
            .iter()
            .map(|v| ((v - min) / range) as f32)
            .collect();
        let comparable = self.patterns.len().saturating_sub(self.length);
        let nearest = self
            .patterns
            .iter()
            .take(comparable)
            .map(|old| {
                old.iter()
                    .zip(&pattern)
                    .map(|(a, b)| f64::from(a - b).powi(2))
                    .sum::<f64>()
            })
            .min_by(f64::total_cmp)
            .map(f64::sqrt);
        if self.patterns.len() == self.capacity {
            self.patterns.pop_front();
        }
        self.patterns.push_back(pattern);
        nearest
    }

    fn bytes(&self) -> usize {
        self.capacity * (self.length * 4 + std::mem::size_of::<Vec<f32>>()) + self.length * 8
    }
}

/// The default detector chain for one series.
#[derive(Debug, Clone)]
pub struct AnomalyChain {
    config: AnomalyChainConfig,
    values: RobustZScore,
    steps: RobustZScore,
    baseline: Ewma,
    patterns: PatternMemory,
    distribution: RawScoreDistribution,
    previous: Option<f64>,
    min_seen: f64,
    max_seen: f64,
    suppressed: usize,
}

impl AnomalyChain {
    pub fn new(config: AnomalyChainConfig) -> Self {
        AnomalyChain {
            config,
            values: RobustZScore::new(config.short_window, 1e-9),
            steps: RobustZScore::new(config.short_window, 1e-9),
            baseline: Ewma::new(config.baseline_alpha, 30),
            patterns: PatternMemory::new(config.pattern_length, config.pattern_memory),
            distribution: RawScoreDistribution::new(config.likelihood),
            previous: None,
            min_seen: f64::INFINITY,
            max_seen: f64::NEG_INFINITY,
            suppressed: 0,
        }
    }

    /// Scores the next value; the result is in [0, 1). Non-finite values score 0 and are not
    /// learned.
    pub fn score(&mut self, value: f64) -> f64 {
        if !value.is_finite() {
            return 0.0;
        }
        let raw = self.raw_score(value);
        let excess = self.distribution.excess(raw);
        let score = excess / (excess + 10.0);
        if self.suppressed > 0 {
            self.suppressed -= 1;
            return score * 0.1;
        }
        if score > self.config.alarm_level {
            self.suppressed = self.config.suppress_for;
        }
        score
    }

    fn raw_score(&mut self, value: f64) -> f64 {
        let range = self.max_seen - self.min_seen;
        let range = if range.is_finite() {
            range.max(1e-9)
        } else {
            0.0
        };
        let mut distance = self.values.update(value);
        if let Some(previous) = self.previous {
            distance = distance.max(self.steps.update(value - previous));
        }
        distance = distance.max(self.baseline.update(value));
        if let Some(novelty) = self.patterns.novelty(value, self.min_seen, range) {
            distance = distance.max(self.config.pattern_weight * novelty);
        }
        self.min_seen = self.min_seen.min(value);
        self.max_seen = self.max_seen.max(value);
        self.previous = Some(value);
        distance.ln_1p()
    }

    /// Approximate bytes of state this series holds.
    pub fn state_bytes(&self) -> usize {
        let window_bytes = match self.config.likelihood {
            Likelihood::Window(n) => n * 8,
            Likelihood::Ewma(_) => 0,
        };
        std::mem::size_of::<Self>()
            + 2 * self.config.short_window * 8
            + window_bytes
            + self.patterns.bytes()
    }
}

impl Default for AnomalyChain {
    fn default() -> Self {
        AnomalyChain::new(AnomalyChainConfig::default())
    }
}

impl Detector for AnomalyChain {
    fn update(&mut self, value: f64) -> f64 {
        self.score(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wave(i: usize) -> f64 {
        50.0 + 10.0 * (i as f64 * 0.2).sin() + ((i * 7919) % 11) as f64 * 0.1
    }

    #[test]
    fn a_spike_in_a_regular_series_is_the_top_score_and_pages_once() {
        for config in [AnomalyChainConfig::default(), AnomalyChainConfig::compact()] {
            let mut chain = AnomalyChain::new(config);
            let scores: Vec<f64> = (0..3000)
                .map(|i| chain.score(if i == 2500 { 120.0 } else { wave(i) }))
                .collect();
            let top = scores
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i);
            assert_eq!(top, Some(2500), "{config:?}");
            assert!(scores[2500] > config.alarm_level);
            let pages = scores[2000..]
                .iter()
                .filter(|&&s| s > config.alarm_level)
                .count();
            assert_eq!(pages, 1, "{config:?}");
            assert!(scores.iter().all(|s| (0.0..1.0).contains(s)));
        }
    }

    #[test]
    fn compact_state_stays_near_a_kilobyte() {
        let mut chain = AnomalyChain::new(AnomalyChainConfig::compact());
        for i in 0..5000 {
            chain.score(wave(i));
        }
        assert!(chain.state_bytes() <= 2048, "{}", chain.state_bytes());
    }
}
