//! Forecasting with prediction intervals: additive Holt-Winters, ARIMA(1,1,1) and a linear trend
//! with time-to-threshold ("when does the disk reach 100%").

pub mod arima;
pub mod holt_winters;
pub mod optimize;
pub mod trend;

/// One forecast step: point and central prediction interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastPoint {
    pub mean: f64,
    pub lower: f64,
    pub upper: f64,
}

impl ForecastPoint {
    pub(crate) fn with_std_error(mean: f64, std_error: f64, z: f64) -> Self {
        ForecastPoint {
            mean,
            lower: mean - z * std_error,
            upper: mean + z * std_error,
        }
    }
}
