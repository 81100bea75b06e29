//! The correlator's error type.

/// What can go wrong in the correlator: only its configuration and its saved state can be
/// wrong; correlating itself cannot fail.
#[derive(Debug, thiserror::Error)]
pub enum CorrelatorError {
    #[error("correlator configuration: {0}")]
    Config(String),
    #[error("the correlator's saved state cannot be read: {0}")]
    Snapshot(String),
}
