//! Predictive operations: acting before anything breaks.
//!
//! - [`windows`]: the windowed aggregates of the metrics forecast, kept between cycles;
//! - [`jobs`]: forecast jobs, DataFusion SQL over those windows with the forecasting UDFs
//!   (built-in: `sql/forecast/` — p99 latency for the next hour, capacity a week out with time
//!   to exhaustion, cost per query, the total cost trend);
//! - [`forecast`]: Holt-Winters forecasts of a windowed series, backtested with a rolling origin
//!   against the naive seasonal forecast (MAPE, MASE), and time to exhaustion from a linear
//!   trend;
//! - [`risk`]: a logistic-regression failure-risk model over features of recent windows,
//!   trained on the incident history (label: an incident within the horizon), versioned;
//! - [`proactive`]: the seed's proactive rules (failure risk above 0.7, forecast p99 above the
//!   SLA, next week's capacity demand above 80%) as remediation plans of kind PROACTIVE;
//! - [`Predictor`]: the cycle that ties them together and reports (cycle id, time, failures
//!   detected, operations executed, success rate, models updated).

mod error;
pub mod forecast;
pub mod jobs;
mod predictor;
pub mod proactive;
pub mod risk;
pub mod windows;

pub use error::PredictError;
pub use predictor::{CapacityResource, Cycle, CycleJobs, Predictor, PredictorConfig};
