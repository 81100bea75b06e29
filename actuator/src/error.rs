//! The actuators' error type, with a retry hint.

/// What went wrong while governing or executing an action.
#[derive(Debug, thiserror::Error)]
pub enum ActuatorError {
    /// Refused by governance (allow-list, parameters, approval); never retried.
    #[error("refused: {0}")]
    Refused(String),
    #[error("PostgreSQL: {}", postgres_reason(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("no PostgreSQL connection configured for target {0}")]
    NoTarget(String),
    #[error("webhook {url}: {reason}")]
    Webhook { url: String, reason: String },
    #[error("the operation took longer than {0} s")]
    Timeout(u64),
    #[error("audit log {path}: {reason}")]
    Audit { path: String, reason: String },
    #[error("actuator configuration: {0}")]
    Config(String),
}

impl ActuatorError {
    /// Whether trying again later may succeed (a transient connection or timeout), as opposed
    /// to a refusal or a misconfiguration.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            ActuatorError::Postgres(_) | ActuatorError::Webhook { .. } | ActuatorError::Timeout(_)
        )
    }
}

/// The server's message and SQLSTATE when there is one ("db error" alone says nothing).
fn postgres_reason(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}
