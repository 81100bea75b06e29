//! The planner's error type.

/// What can go wrong while planning: a saved state that cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum PlannerError {
    #[error("the planner's saved state: {0}")]
    Snapshot(String),
}
