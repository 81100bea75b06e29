//! Additive Holt-Winters (ETS(A,A,A)): level, trend and a seasonal cycle of `period` steps.
//!
//! Recursions (Hyndman & Athanasopoulos, the form statsmodels' `ExponentialSmoothing` uses):
//! ```text
//! l_t = α (y_t − s_{t−m}) + (1 − α)(l_{t−1} + b_{t−1})
//! b_t = β (l_t − l_{t−1}) + (1 − β) b_{t−1}
//! s_t = γ (y_t − l_{t−1} − b_{t−1}) + (1 − γ) s_{t−m}
//! ŷ_{t+h} = l_t + h b_t + s_{t+h−m(k+1)},  k = ⌊(h−1)/m⌋
//! ```
//! Prediction intervals use the analytic ETS(A,A,A) variance (Hyndman et al. 2008, table 6.1).

use super::ForecastPoint;
use super::optimize::nelder_mead;
use crate::special::normal_quantile;

/// Smoothing parameters in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Smoothing {
    pub alpha: f64,
    pub beta: f64,
    pub gamma: f64,
}

/// Initial state: level, trend and one seasonal term per period position.
#[derive(Debug, Clone, PartialEq)]
pub struct InitialState {
    pub level: f64,
    pub trend: f64,
    pub seasonal: Vec<f64>,
}

impl InitialState {
    /// The classic heuristic: level = mean of the first cycle, trend = mean per-step change
    /// between the first two cycles, seasonal = first cycle minus its mean.
    pub fn heuristic(series: &[f64], period: usize) -> Option<Self> {
        if period == 0 || series.len() < 2 * period {
            return None;
        }
        let first = &series[..period];
        let second = &series[period..2 * period];
        let level = first.iter().sum::<f64>() / period as f64;
        let trend = first
            .iter()
            .zip(second)
            .map(|(a, b)| (b - a) / period as f64)
            .sum::<f64>()
            / period as f64;
        let seasonal = first.iter().map(|v| v - level).collect();
        Some(InitialState {
            level,
            trend,
            seasonal,
        })
    }
}

/// A Holt-Winters model run over a series.
#[derive(Debug, Clone, PartialEq)]
pub struct HoltWinters {
    pub smoothing: Smoothing,
    pub period: usize,
    level: f64,
    trend: f64,
    /// Seasonal terms of the last `period` steps, oldest first.
    seasonal: Vec<f64>,
    sse: f64,
    observations: usize,
}

impl HoltWinters {
    /// Runs the recursions over `series` from `initial`.
    pub fn run(
        series: &[f64],
        period: usize,
        smoothing: Smoothing,
        initial: &InitialState,
    ) -> Self {
        let Smoothing { alpha, beta, gamma } = smoothing;
        let mut level = initial.level;
        let mut trend = initial.trend;
        let mut seasonal = initial.seasonal.clone();
        let mut sse = 0.0;
        for (t, &y) in series.iter().enumerate() {
            let s = seasonal[t % period];
            let error = y - (level + trend + s);
            sse += error * error;
            let (previous_level, previous_trend) = (level, trend);
            level = alpha * (y - s) + (1.0 - alpha) * (previous_level + previous_trend);
            trend = beta * (level - previous_level) + (1.0 - beta) * previous_trend;
            seasonal[t % period] =
                gamma * (y - previous_level - previous_trend) + (1.0 - gamma) * s;
        }
        // Rotate so index 0 is the season of the next step.
        seasonal.rotate_left(series.len() % period);
        HoltWinters {
            smoothing,
            period,
            level,
            trend,
            seasonal,
            sse,
            observations: series.len(),
        }
    }

    /// Fits α, β, γ by minimising the one-step squared error from the heuristic start.
    pub fn fit(series: &[f64], period: usize) -> Option<Self> {
        let initial = InitialState::heuristic(series, period)?;
        let objective = |p: &[f64]| {
            let smoothing = Smoothing {
                alpha: p[0],
                beta: p[1],
                gamma: p[2],
            };
            HoltWinters::run(series, period, smoothing, &initial).sse
        };
        let (best, _) = nelder_mead(
            objective,
            &[0.3, 0.05, 0.1],
            &[(0.0, 1.0), (0.0, 1.0), (0.0, 1.0)],
            2000,
        );
        let smoothing = Smoothing {
            alpha: best[0],
            beta: best[1],
            gamma: best[2],
        };
        Some(HoltWinters::run(series, period, smoothing, &initial))
    }

    /// Residual variance of the one-step errors.
    pub fn sigma2(&self) -> f64 {
        self.sse / self.observations.max(1) as f64
    }

    /// Point forecast `h` steps ahead (h ≥ 1).
    pub fn point(&self, h: usize) -> f64 {
        self.level + h as f64 * self.trend + self.seasonal[(h - 1) % self.period]
    }

    /// Forecasts `horizon` steps with central `coverage` intervals (e.g. 0.95).
    pub fn forecast(&self, horizon: usize, coverage: f64) -> Vec<ForecastPoint> {
        let z = normal_quantile(0.5 + coverage / 2.0);
        let Smoothing { alpha, beta, gamma } = self.smoothing;
        let m = self.period as f64;
        (1..=horizon)
            .map(|h| {
                let hf = h as f64;
                let k = ((h - 1) / self.period) as f64;
                let variance = self.sigma2()
                    * (1.0
                        + (hf - 1.0)
                            * (alpha * alpha
                                + alpha * beta * hf
                                + beta * beta * hf * (2.0 * hf - 1.0) / 6.0)
                        + gamma * k * (2.0 * alpha + gamma + beta * m * (k + 1.0)));
                ForecastPoint::with_std_error(self.point(h), variance.max(0.0).sqrt(), z)
            })
            .collect()
    }
}
