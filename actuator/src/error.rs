//! The actuators' error type.

/// What went wrong while governing or executing an action.
#[derive(Debug, thiserror::Error)]
pub enum ActuatorError {
    /// The action cannot run as asked: an executor of another kind, a twin that cannot apply
    /// it, a claim taken meanwhile.
    #[error("refused: {0}")]
    Refused(String),
    #[error("PostgreSQL: {}", postgres_reason(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// The target's connection string, TLS files or server refused a session.
    #[error("PostgreSQL: {0}")]
    Connect(#[from] opsloop_connectors::postgres::PgConnectError),
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

/// The server's message and SQLSTATE when there is one ("db error" alone says nothing).
fn postgres_reason(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}
