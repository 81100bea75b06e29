//! What carries the loop's records: the [`Transport`] trait, and what crosses it. Two
//! implementations: Kafka ([`crate::kafka`], `opsloop run`) and in process ([`crate::demo`],
//! `opsloop demo`, where the simulated fleet is the source and a digital twin the actuator).

use std::collections::BTreeSet;
use std::future::Future;

use arrow::record_batch::RecordBatch;
use opsloop_correlator::{CorrelatorStatus, Notification};
use opsloop_engine::checkpoint::SourceOffset;
use opsloop_engine::runtime::EngineStatus;
use opsloop_engine::time::PartitionId;
use opsloop_schemas::ops::{
    ActionOutcome, Alert, CycleReport, Forecast, Incident, RemediationEvent,
};

use crate::RuntimeError;

/// What the loop takes in.
#[derive(Debug)]
pub enum Input {
    /// A micro-batch of a stream table, with the partitions its rows came from and the newest
    /// event time of each.
    Batch {
        table: String,
        rows: RecordBatch,
        partitions: Vec<(PartitionId, i64)>,
    },
    /// An actuator's audit entry.
    Outcome(ActionOutcome),
    /// Nothing more will come.
    End,
}

/// One record the loop publishes, in the order it happened.
#[derive(Debug)]
pub enum Published<'a> {
    Alert(&'a Alert),
    Incident(&'a Incident),
    /// Handed over: the notifier sends it on its own thread.
    Notification(Box<Notification>),
    Remediation(&'a RemediationEvent),
    Cycle(&'a CycleReport),
    Forecast(&'a Forecast),
}

/// Where the loop stands, after every input.
#[derive(Debug, Clone, Copy)]
pub struct Status {
    pub engine: EngineStatus,
    pub correlator: CorrelatorStatus,
    pub open_fixes: usize,
}

/// Carries the loop's records in and out.
pub trait Transport: Send {
    /// The next input. The loop selects on it, so it must be cancel-safe.
    fn next(&mut self) -> impl Future<Output = Result<Input, RuntimeError>> + Send;

    /// Publishes one record.
    fn publish(
        &mut self,
        record: Published<'_>,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Where the loop stands now; for transports that show it.
    fn status(&mut self, _status: &Status) {}

    /// The partitions this instance owns now, when a consumer group decides it; `None` when
    /// every partition is this instance's.
    fn assignment(&self) -> Result<Option<BTreeSet<PartitionId>>, RuntimeError>;

    /// Waits until everything published so far is delivered; the source positions every
    /// input so far came from, for a checkpoint.
    fn flush(&mut self) -> impl Future<Output = Result<Vec<SourceOffset>, RuntimeError>> + Send;

    /// Commits the positions of the last flush, now that a checkpoint holds them
    /// (synchronously when `last`).
    fn commit(&mut self, last: bool) -> Result<(), RuntimeError>;

    /// Stops reading and writing.
    fn close(self) -> impl Future<Output = ()> + Send;
}
