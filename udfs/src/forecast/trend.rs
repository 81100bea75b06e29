//! Linear trend by least squares, with prediction intervals and time-to-threshold: when does a
//! growing quantity (disk, memory, GPU memory, connections) reach its limit.

use super::ForecastPoint;
use crate::special::student_t_quantile;

/// A fitted line y = intercept + slope · x.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearTrend {
    pub intercept: f64,
    pub slope: f64,
    /// Residual standard error (n − 2 degrees of freedom).
    pub residual_std: f64,
    n: usize,
    x_mean: f64,
    sxx: f64,
}

/// When the trend reaches a threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Crossing {
    /// x at which the fitted line reaches the threshold.
    pub at: f64,
    /// Earliest and latest x from the slope's central confidence interval.
    pub earliest: f64,
    pub latest: f64,
}

impl LinearTrend {
    /// Fits on (x, y) points; `None` with fewer than 3 points or constant x.
    pub fn fit(x: &[f64], y: &[f64]) -> Option<Self> {
        let n = x.len().min(y.len());
        if n < 3 {
            return None;
        }
        let x_mean = x[..n].iter().sum::<f64>() / n as f64;
        let y_mean = y[..n].iter().sum::<f64>() / n as f64;
        let sxx: f64 = x[..n].iter().map(|v| (v - x_mean).powi(2)).sum();
        if sxx <= 0.0 {
            return None;
        }
        let sxy: f64 = x[..n]
            .iter()
            .zip(&y[..n])
            .map(|(a, b)| (a - x_mean) * (b - y_mean))
            .sum();
        let slope = sxy / sxx;
        let intercept = y_mean - slope * x_mean;
        let rss: f64 = x[..n]
            .iter()
            .zip(&y[..n])
            .map(|(a, b)| (b - intercept - slope * a).powi(2))
            .sum();
        Some(LinearTrend {
            intercept,
            slope,
            residual_std: (rss / (n - 2) as f64).sqrt(),
            n,
            x_mean,
            sxx,
        })
    }

    /// Prediction at `x` with a central `coverage` prediction interval for a new observation.
    pub fn predict(&self, x: f64, coverage: f64) -> ForecastPoint {
        let t = student_t_quantile(0.5 + coverage / 2.0, (self.n - 2) as f64);
        let se = self.residual_std
            * (1.0 + 1.0 / self.n as f64 + (x - self.x_mean).powi(2) / self.sxx).sqrt();
        ForecastPoint::with_std_error(self.intercept + self.slope * x, se, t)
    }

    /// When the line reaches `threshold`, if it is heading there (crossing after `now`).
    pub fn crossing(&self, threshold: f64, now: f64, coverage: f64) -> Option<Crossing> {
        let at_now = self.intercept + self.slope * now;
        let heading = (threshold - at_now) * self.slope > 0.0;
        if !heading {
            return None;
        }
        let t = student_t_quantile(0.5 + coverage / 2.0, (self.n - 2) as f64);
        let slope_se = self.residual_std / self.sxx.sqrt();
        let reach = |slope: f64| {
            if slope * (threshold - at_now) > 0.0 {
                now + (threshold - at_now) / slope
            } else {
                f64::INFINITY
            }
        };
        let (fast, slow) = if self.slope > 0.0 {
            (self.slope + t * slope_se, self.slope - t * slope_se)
        } else {
            (self.slope - t * slope_se, self.slope + t * slope_se)
        };
        Some(Crossing {
            at: reach(self.slope),
            earliest: reach(fast),
            latest: reach(slow),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_to_full_on_linear_growth_is_exact() {
        // Disk at 40% growing 0.5% per hour with small wobble: full (100%) at hour 120.
        let x: Vec<f64> = (0..48).map(f64::from).collect();
        let y: Vec<f64> = x
            .iter()
            .map(|h| 40.0 + 0.5 * h + if (*h as i64) % 2 == 0 { 0.1 } else { -0.1 })
            .collect();
        let trend = LinearTrend::fit(&x, &y).expect("fits");
        let crossing = trend.crossing(100.0, 47.0, 0.95).expect("heading up");
        assert!((crossing.at - 120.0).abs() < 0.5, "{crossing:?}");
        assert!(crossing.earliest <= crossing.at && crossing.at <= crossing.latest);
        assert!(trend.crossing(10.0, 47.0, 0.95).is_none());
    }
}
