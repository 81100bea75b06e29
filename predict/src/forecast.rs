//! Forecasts and their backtests.
//!
//! [`backtest`] walks a rolling origin through a series: at each origin it fits Holt-Winters on
//! everything before it, forecasts `horizon` steps, and scores the forecast and the naive
//! seasonal one (the value one period earlier) against what happened. MASE scales the mean
//! absolute error by the in-sample error of the naive seasonal forecast, so below 1 means
//! better than naive.

use opsloop_udfs::forecast::holt_winters::HoltWinters;
use opsloop_udfs::forecast::trend::LinearTrend;

/// Holt-Winters (additive, fitted) point forecasts for `horizon` steps; `None` when the
/// series is too short for its period.
pub fn holt_winters(series: &[f64], period: usize, horizon: usize) -> Option<Vec<f64>> {
    let model = HoltWinters::fit(series, period)?;
    Some((1..=horizon).map(|h| model.point(h)).collect())
}

/// The naive seasonal forecast: each step repeats the value one `period` earlier.
pub fn seasonal_naive(series: &[f64], period: usize, horizon: usize) -> Option<Vec<f64>> {
    if series.len() < period || period == 0 {
        return None;
    }
    let last_season = &series[series.len() - period..];
    Some((0..horizon).map(|h| last_season[h % period]).collect())
}

/// Mean absolute percentage error, in percent (points with a zero actual are left out).
pub fn mape(actual: &[f64], predicted: &[f64]) -> f64 {
    let errors: Vec<f64> = actual
        .iter()
        .zip(predicted)
        .filter(|(a, _)| **a != 0.0)
        .map(|(a, p)| ((a - p) / a).abs())
        .collect();
    100.0 * errors.iter().sum::<f64>() / errors.len().max(1) as f64
}

/// Mean absolute scaled error against the in-sample naive seasonal error of `train`.
pub fn mase(actual: &[f64], predicted: &[f64], train: &[f64], period: usize) -> f64 {
    let scale: Vec<f64> = train
        .windows(period + 1)
        .map(|w| (w[period] - w[0]).abs())
        .collect();
    let scale = scale.iter().sum::<f64>() / scale.len().max(1) as f64;
    let mae = actual
        .iter()
        .zip(predicted)
        .map(|(a, p)| (a - p).abs())
        .sum::<f64>()
        / actual.len().max(1) as f64;
    if scale > 0.0 {
        mae / scale
    } else {
        f64::INFINITY
    }
}

/// Scores of a backtest, averaged over its origins.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backtest {
    pub origins: usize,
    pub mape: f64,
    pub naive_mape: f64,
    pub mase: f64,
    pub naive_mase: f64,
}

/// A rolling-origin backtest from `first_origin` to the end, every `step` points.
pub fn backtest(
    series: &[f64],
    period: usize,
    first_origin: usize,
    horizon: usize,
    step: usize,
) -> Option<Backtest> {
    let mut scores = Vec::new();
    let mut origin = first_origin;
    while origin + horizon <= series.len() {
        let train = &series[..origin];
        let actual = &series[origin..origin + horizon];
        let model = holt_winters(train, period, horizon)?;
        let naive = seasonal_naive(train, period, horizon)?;
        scores.push((
            mape(actual, &model),
            mape(actual, &naive),
            mase(actual, &model, train, period),
            mase(actual, &naive, train, period),
        ));
        origin += step.max(1);
    }
    if scores.is_empty() {
        return None;
    }
    let n = scores.len() as f64;
    let mean = |pick: fn(&(f64, f64, f64, f64)) -> f64| scores.iter().map(pick).sum::<f64>() / n;
    Some(Backtest {
        origins: scores.len(),
        mape: mean(|s| s.0),
        naive_mape: mean(|s| s.1),
        mase: mean(|s| s.2),
        naive_mase: mean(|s| s.3),
    })
}

/// Seconds from `now` until the linear trend of (`times`, `values`) reaches `limit`; `None`
/// when it is not heading there.
pub fn time_to_exhaustion(times: &[f64], values: &[f64], limit: f64, now: f64) -> Option<f64> {
    let trend = LinearTrend::fit(times, values)?;
    trend
        .crossing(limit, now, 0.95)
        .map(|crossing| crossing.at - now)
}
