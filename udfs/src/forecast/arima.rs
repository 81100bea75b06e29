//! ARIMA(1,1,1) without constant, fitted by conditional sum of squares (CSS).
//!
//! On the differenced series w_t = y_t − y_{t−1}: w_t = φ w_{t−1} + e_t + θ e_{t−1}.
//! Forecasts integrate the ARMA forecasts back; intervals use the ψ-weights of the integrated
//! process: Var(ŷ_{T+h}) = σ² Σ_{j<h} (Σ_{i≤j} ψ_i)², ψ_0 = 1, ψ_1 = φ + θ, ψ_j = φ ψ_{j−1}.
//! statsmodels fits the same model by exact maximum likelihood, so parameters differ slightly
//! on short series; the parity test documents the tolerance.

use super::ForecastPoint;
use super::optimize::nelder_mead;
use crate::special::normal_quantile;

/// A fitted ARIMA(1,1,1).
#[derive(Debug, Clone, PartialEq)]
pub struct Arima111 {
    pub phi: f64,
    pub theta: f64,
    pub sigma2: f64,
    last_value: f64,
    last_difference: f64,
    last_error: f64,
}

/// One-step errors of the ARMA(1,1) on `w`, conditional on e_0 = 0; returns (SSE, last error).
fn css(w: &[f64], phi: f64, theta: f64) -> (f64, f64) {
    let mut error = 0.0;
    let mut sse = 0.0;
    for t in 1..w.len() {
        error = w[t] - phi * w[t - 1] - theta * error;
        sse += error * error;
    }
    (sse, error)
}

impl Arima111 {
    /// Fits φ and θ in (−1, 1) by CSS; `None` for fewer than 10 values.
    pub fn fit(series: &[f64]) -> Option<Self> {
        if series.len() < 10 {
            return None;
        }
        let w: Vec<f64> = series.windows(2).map(|p| p[1] - p[0]).collect();
        let bound = 0.999;
        let (best, sse) = nelder_mead(
            |p| css(&w, p[0], p[1]).0,
            &[0.1, 0.1],
            &[(-bound, bound), (-bound, bound)],
            4000,
        );
        let (phi, theta) = (best[0], best[1]);
        let (_, last_error) = css(&w, phi, theta);
        Some(Arima111 {
            phi,
            theta,
            sigma2: sse / (w.len() - 1) as f64,
            last_value: series[series.len() - 1],
            last_difference: w[w.len() - 1],
            last_error,
        })
    }

    /// Forecasts `horizon` steps with central `coverage` intervals.
    pub fn forecast(&self, horizon: usize, coverage: f64) -> Vec<ForecastPoint> {
        let z = normal_quantile(0.5 + coverage / 2.0);
        let mut value = self.last_value;
        let mut difference = self.last_difference;
        let mut psi = 1.0;
        let mut cumulative_psi = 0.0;
        let mut variance = 0.0;
        (1..=horizon)
            .map(|h| {
                difference = if h == 1 {
                    self.phi * difference + self.theta * self.last_error
                } else {
                    self.phi * difference
                };
                value += difference;
                // ψ-weights of the ARMA part, summed into those of the integrated series.
                if h == 2 {
                    psi = self.phi + self.theta;
                } else if h > 2 {
                    psi *= self.phi;
                }
                cumulative_psi += psi;
                variance += self.sigma2 * cumulative_psi * cumulative_psi;
                ForecastPoint::with_std_error(value, variance.sqrt(), z)
            })
            .collect()
    }
}
