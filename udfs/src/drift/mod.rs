//! Drift between a reference and a current window.
//!
//! - [`binned`]: statistics over histograms on the reference's bins — PSI, Jensen-Shannon,
//!   Hellinger, L-infinity, chi-square — for numeric features (binned) and categorical ones
//!   (one bin per category).
//! - [`samples`]: statistics over raw samples — two-sample Kolmogorov-Smirnov and
//!   Wasserstein-1.
//! - [`threshold`]: NannyML's threshold mode (reference chunks' mean ± 3σ).
//! - [`multivariate`]: drift of many features at once by PCA reconstruction error.

pub mod baseline;
pub mod binned;
pub mod multivariate;
pub mod samples;
pub mod threshold;

/// Evidently's default PSI alarm level.
pub const PSI_ALARM: f64 = 0.1;
