//! opsloop's scoring functions: drift, anomaly and forecasting.
//!
//! The core is plain Rust over `f64` slices and small state structs; it knows nothing of
//! DataFusion or Arroyo, so the same math runs in the engine, in Arroyo UDF plugins and in
//! benchmarks. Every streaming detector keeps bounded state per series.
//!
//! - [`drift`]: reference-vs-window statistics (PSI, KS, Jensen-Shannon, Wasserstein,
//!   Hellinger, chi-square, L-infinity), NannyML thresholds, PCA reconstruction drift.
//! - [`anomaly`]: streaming detectors (robust z-score, EWMA, CUSUM, Page-Hinkley, half-space
//!   trees, seasonal baselines, hdrhistogram quantiles) and the default [`anomaly::chain`].
//! - [`forecast`]: Holt-Winters, ARIMA(1,1,1) and linear trend with time-to-threshold, each with
//!   prediction intervals.
//! - [`special`]: the special functions behind the p-values.
//! - `datafusion` (feature `datafusion`, on by default): the SQL adapters, registered in one place.

pub mod anomaly;
#[cfg(feature = "datafusion")]
pub mod datafusion;
pub mod drift;
pub mod forecast;
pub mod special;
