//! Why a test service could not be started.

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(
        "{program} was not found; run scripts/test.sh (it installs the test services) or set {hint}"
    )]
    NotInstalled {
        program: &'static str,
        hint: &'static str,
    },
    #[error("could not run {command}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed: {output}")]
    CommandFailed { command: String, output: String },
    #[error("{service} did not become ready within {seconds} s; its log:\n{log}")]
    NotReady {
        service: &'static str,
        seconds: u64,
        log: String,
    },
    #[error("I/O error preparing a test service: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Kafka(#[from] opsloop_connectors::ConnectorError),
    #[error("PostgreSQL connection failed: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("PostgreSQL connection failed: {0}")]
    PostgresConnect(#[from] opsloop_connectors::postgres::PgConnectError),
    #[cfg(feature = "docker")]
    #[error("could not start the Kafka container: {0}")]
    Container(#[from] testcontainers_modules::testcontainers::TestcontainersError),
}
