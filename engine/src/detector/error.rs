//! The detector error type.

use arrow::error::ArrowError;
use datafusion::error::DataFusionError;

/// Why a detector could not be loaded, planned, evaluated or checkpointed.
///
/// Retrying never helps: every variant is deterministic for the same SQL, input and state.
/// Loading and planning errors ([`DetectorError::Plan`], [`DetectorError::Invalid`]) name the
/// detector's file so a broken file fails start-up with a message that points at it.
#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    /// The detector directory could not be listed, or a file in it read.
    #[error("detector files: {0}")]
    Read(#[from] crate::sql_files::ReadSqlError),
    /// DataFusion rejected the detector's SQL (parse, plan, type or physical planning error).
    #[error("detector {origin}: {source}")]
    Plan {
        /// The file the SQL came from, or the detector's name when it did not come from a file.
        origin: String,
        #[source]
        source: DataFusionError,
    },
    /// The SQL is valid DataFusion SQL but not a detector the engine can run incrementally.
    #[error("detector {origin}: {message}")]
    Invalid {
        /// The file the SQL came from, or the detector's name when it did not come from a file.
        origin: String,
        message: String,
    },
    /// A stream table definition is unusable.
    #[error("stream table {table}: {message}")]
    Stream { table: String, message: String },
    /// An input batch does not have the schema of the detector's stream table.
    #[error("detector {detector}: the input batch does not match stream table {table}: {message}")]
    InputSchema {
        detector: String,
        table: String,
        message: String,
    },
    /// Evaluating the detector on a batch or a closing window failed.
    #[error("detector {detector}: evaluation failed: {source}")]
    Execution {
        detector: String,
        #[source]
        source: DataFusionError,
    },
    /// An output row could not be turned into an alert.
    #[error("detector {detector}: cannot turn its output into alerts: {message}")]
    Alert { detector: String, message: String },
    /// A snapshot could not be written, read or applied.
    #[error("detector snapshot: {message}")]
    Snapshot { message: String },
    /// A snapshot's Arrow IPC bytes could not be written or read.
    #[error("detector snapshot: Arrow IPC failed: {0}")]
    SnapshotIpc(#[source] ArrowError),
}
