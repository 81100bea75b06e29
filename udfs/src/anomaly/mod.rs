//! Streaming anomaly detectors, one value at a time, with bounded state per series.
//!
//! Each detector implements [`Detector`]: `update` takes the next value and returns a raw score
//! (a z-like distance, 0 for normal). [`chain::AnomalyChain`] combines them into the default
//! detector the engine runs on metric series, with a score in [0, 1].

pub mod chain;
pub mod control;
pub mod half_space_trees;
pub mod quantile;
pub mod robust;
pub mod seasonal;

/// A univariate streaming detector.
pub trait Detector {
    /// Feeds the next value and returns its raw anomaly score (0 when normal).
    fn update(&mut self, value: f64) -> f64;
}
