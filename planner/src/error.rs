//! The planner's error type.

/// What can go wrong while planning: a parameter that fails its template's validation, or a
/// learning state that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PlannerError {
    #[error("template {template}: parameter {param}: {reason}")]
    InvalidParam {
        template: String,
        param: String,
        reason: String,
    },
    #[error("template {0} is not in the catalog")]
    UnknownTemplate(String),
    #[error("the learning state at {path}: {reason}")]
    Learning { path: String, reason: String },
}
