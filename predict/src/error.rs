//! Errors of predictive operations.

#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error("forecast jobs: {0}")]
    ReadJobs(#[from] opsloop_engine::sql_files::ReadSqlError),
    #[error("forecast job {job}: {reason}")]
    Job { job: String, reason: String },
    #[error("the forecast jobs' tables: {0}")]
    Tables(String),
    #[error("predictor snapshot: {0}")]
    Snapshot(String),
}
