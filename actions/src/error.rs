//! The catalog's error type.

/// An action that does not fit the catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("template {0:?} is not in the catalog")]
    UnknownTemplate(String),
    #[error("template {template}: parameter {param} {reason}")]
    InvalidParam {
        template: &'static str,
        param: String,
        reason: String,
    },
    #[error("{0:?} is not a plain (optionally schema-qualified) SQL identifier")]
    NotAnIdentifier(String),
}
