//! [`InProcessTransport`]: the demo's transport. Each tick of the twin's fleet crosses as the
//! bytes a Kafka topic would carry (Confluent-framed Avro, keyed by entity), decoded by the
//! Kafka source's own decoders into one micro-batch per table. What the loop publishes goes
//! to the observer (the live view) and the [`Recorder`](super::report::Recorder) (the report);
//! remediation events go to an [`Actuator`] whose target is the twin, incident versions to the
//! same actuator (the correlator's verdicts), and its audit entries come back as inputs.
//! Approvals are granted at once, signed with the demo's key, and the observer is told.
//!
//! Event time is the simulator's, which runs from a fixed date at whatever pace
//! `--tick-delay` sets, days ahead of the wall clock or behind it; every record is stamped by
//! that clock. So the Kafka source's future-skew check (against the wall clock) has no
//! counterpart here: against the wall clock it would refuse a simulation that runs ahead, and
//! against the simulator's clock it could never fire. The engine's watermark-jump report
//! applies as in `opsloop run`.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use opsloop_actions::seal;
use opsloop_actuator::twin::Twin;
use opsloop_actuator::{Actuator, Handled};
use opsloop_connectors::decode::{
    AvroMetricBatchDecoder, AvroRecordDecoder, Decoder, RecordContext, RowBuilder,
};
use opsloop_engine::checkpoint::SourceOffset;
use opsloop_engine::time::PartitionId;
use opsloop_schemas::ops::{ActionOutcome, Approval, Decision, RemediationEvent};
use opsloop_schemas::telemetry::GpuSample;
use opsloop_schemas::{AvroRecord, Codec, topics};
use tokio::sync::mpsc;

use super::report::Recorder;
use super::twin::FleetTwin;
use super::{DemoEvent, GPU_TABLE, METRICS_TABLE};
use crate::RuntimeError;
use crate::transport::{Input, Published, Status, Transport};

/// Who the demo's automatic approvals are signed as.
pub(crate) const DEMO_APPROVER: &str = "opsloop-demo";

/// One topic partition in memory: records are encoded as a producer would, then decoded by
/// the Kafka source's decoder into one micro-batch.
struct InProcessTopic<D: Decoder> {
    partition: PartitionId,
    codec: Codec,
    decoder: D,
    rows: D::Rows,
    payload: Vec<u8>,
}

impl<D: Decoder> InProcessTopic<D> {
    fn new(topic: &str, codec: Codec, decoder: D) -> Self {
        InProcessTopic {
            partition: PartitionId::new(topic, 0),
            rows: decoder.new_rows(),
            decoder,
            codec,
            payload: Vec::new(),
        }
    }

    /// The records, produced at `timestamp_us`, as one micro-batch, with the partition and the
    /// largest event time of its rows.
    fn carry<T: AvroRecord>(
        &mut self,
        records: &[T],
        timestamp_us: i64,
    ) -> Result<(RecordBatch, (PartitionId, i64)), RuntimeError> {
        let mut max_event_time_us = timestamp_us;
        for record in records {
            self.payload.clear();
            self.codec
                .encode_into(record, &mut self.payload)
                .map_err(|error| RuntimeError::Config(format!("encoding a record: {error}")))?;
            let first = self.rows.len();
            let context = RecordContext::new(&self.partition.topic, timestamp_us)
                .with_key(record.partition_key().as_bytes());
            self.decoder
                .decode(&self.payload, &context, &mut self.rows)
                .map_err(|error| {
                    RuntimeError::Config(format!(
                        "decoding the record of {}: {error}",
                        record.partition_key()
                    ))
                })?;
            let newest = self.rows.max_event_time_us(first).unwrap_or(timestamp_us);
            max_event_time_us = max_event_time_us.max(newest);
        }
        let batch = self
            .rows
            .finish()
            .map_err(|error| RuntimeError::Config(format!("a micro-batch: {error}")))?;
        Ok((batch, (self.partition.clone(), max_event_time_us)))
    }
}

/// How long the demo waits at most for its actions in flight before the next tick.
const LOCKSTEP_PATIENCE: Duration = Duration::from_secs(1);

/// One action in flight, counted until dropped.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The demo's transport; see the module docs.
pub(super) struct InProcessTransport {
    twin: Arc<FleetTwin>,
    end_us: i64,
    tick_delay: Duration,
    metrics: InProcessTopic<AvroMetricBatchDecoder>,
    gpus: InProcessTopic<AvroRecordDecoder<GpuSample>>,
    queued: VecDeque<Input>,
    actuator: Arc<Actuator>,
    /// Actions handed to the actuator and not finished.
    in_flight: Arc<AtomicUsize>,
    outcomes: mpsc::UnboundedReceiver<ActionOutcome>,
    approval_key: Arc<Vec<u8>>,
    notices: mpsc::UnboundedSender<String>,
    notices_in: mpsc::UnboundedReceiver<String>,
    observer: Box<dyn FnMut(DemoEvent<'_>) + Send>,
    recorder: Arc<Mutex<Recorder>>,
}

impl std::fmt::Debug for InProcessTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessTransport")
            .field("end_us", &self.end_us)
            .finish_non_exhaustive()
    }
}

impl InProcessTransport {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        twin: Arc<FleetTwin>,
        end_us: i64,
        tick_delay: Duration,
        codec: Codec,
        actuator: Arc<Actuator>,
        outcomes: mpsc::UnboundedReceiver<ActionOutcome>,
        approval_key: Vec<u8>,
        observer: Box<dyn FnMut(DemoEvent<'_>) + Send>,
        recorder: Arc<Mutex<Recorder>>,
    ) -> Self {
        let (notices, notices_in) = mpsc::unbounded_channel();
        InProcessTransport {
            metrics: InProcessTopic::new(
                topics::METRICS,
                codec.clone(),
                AvroMetricBatchDecoder::new(codec.clone()),
            ),
            gpus: InProcessTopic::new(topics::GPU, codec.clone(), AvroRecordDecoder::new(codec)),
            twin,
            end_us,
            tick_delay,
            queued: VecDeque::new(),
            actuator,
            in_flight: Arc::new(AtomicUsize::new(0)),
            outcomes,
            approval_key: Arc::new(approval_key),
            notices,
            notices_in,
            observer,
            recorder,
        }
    }

    fn recorder(&self) -> std::sync::MutexGuard<'_, Recorder> {
        self.recorder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn outcome(&mut self, outcome: ActionOutcome) -> Input {
        (self.observer)(DemoEvent::Outcome(&outcome));
        self.recorder().outcome(&outcome);
        Input::Outcome(outcome)
    }

    /// Whether an action in flight has work to do before the simulation moves on: one that
    /// neither settles on the twin nor waits for its verdict.
    fn actions_busy(&self) -> bool {
        let waiting = self.twin.waiting_for_ticks() + self.actuator.awaiting_verdicts();
        self.in_flight.load(Ordering::SeqCst) > waiting
    }

    /// Runs `event` on the actuator in its own task, approving it at once when it waits.
    fn act(&self, event: RemediationEvent) {
        let actuator = Arc::clone(&self.actuator);
        let key = Arc::clone(&self.approval_key);
        let notices = self.notices.clone();
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let in_flight = InFlight(Arc::clone(&self.in_flight));
        tokio::spawn(async move {
            let _in_flight = in_flight;
            let handled = actuator.handle(event.clone()).await;
            if matches!(handled, Ok(Handled::AwaitingApproval)) {
                let approval = seal::sign_approval(
                    &key,
                    Approval {
                        action_id: event.action_id.clone(),
                        decision: Decision::Approve,
                        approver: DEMO_APPROVER.to_owned(),
                        reason: "granted automatically in the demo".to_owned(),
                        time_us: 0,
                        signature: String::new(),
                        action_digest: seal::digest(&event),
                    },
                );
                let _ = notices.send(format!(
                    "{} {} on {} needs an approval: granted automatically (demo)",
                    event.action_id, event.template, event.target
                ));
                if let Err(error) = actuator.decide(&approval).await {
                    tracing::warn!(%error, action_id = %event.action_id, "the demo's approval failed");
                }
            } else if let Err(error) = handled {
                tracing::warn!(%error, action_id = %event.action_id, "the twin's action failed");
            }
        });
    }
}

impl Transport for InProcessTransport {
    async fn next(&mut self) -> Result<Input, RuntimeError> {
        loop {
            while let Ok(notice) = self.notices_in.try_recv() {
                (self.observer)(DemoEvent::Notice(&notice));
            }
            if let Ok(outcome) = self.outcomes.try_recv() {
                return Ok(self.outcome(outcome));
            }
            if let Some(input) = self.queued.pop_front() {
                return Ok(input);
            }
            if !self.tick_delay.is_zero() {
                tokio::select! {
                    outcome = self.outcomes.recv() => {
                        if let Some(outcome) = outcome {
                            return Ok(self.outcome(outcome));
                        }
                    }
                    () = tokio::time::sleep(self.tick_delay) => {}
                }
            }
            // In lockstep: the next tick once every action in flight waits for the simulation
            // (for long at the most, lest an action waiting on something else hold it up), so
            // a run is the same however fast it goes and however busy the machine is.
            let since = Instant::now();
            while self.actions_busy() && since.elapsed() < LOCKSTEP_PATIENCE {
                tokio::task::yield_now().await;
            }
            if let Ok(outcome) = self.outcomes.try_recv() {
                return Ok(self.outcome(outcome));
            }
            if self.twin.time_us() >= self.end_us {
                return Ok(Input::End);
            }
            let tick = self.twin.tick();
            self.recorder().samples += tick.sample_count() - tick.features.len();
            let (rows, partition) = self.metrics.carry(&tick.metrics, tick.time_us)?;
            self.queued.push_back(Input::Batch {
                table: METRICS_TABLE.to_owned(),
                rows,
                partitions: vec![partition],
            });
            let (rows, partition) = self.gpus.carry(&tick.gpus, tick.time_us)?;
            self.queued.push_back(Input::Batch {
                table: GPU_TABLE.to_owned(),
                rows,
                partitions: vec![partition],
            });
        }
    }

    async fn publish(&mut self, record: Published<'_>) -> Result<(), RuntimeError> {
        match record {
            Published::Alert(alert) => {
                (self.observer)(DemoEvent::Alert(alert));
                self.recorder().alert(alert);
            }
            Published::Incident(incident) => {
                (self.observer)(DemoEvent::Incident(incident));
                self.recorder().incident(incident);
                self.actuator.observe_incident(incident);
            }
            Published::Notification(_) => {}
            Published::Remediation(event) => {
                (self.observer)(DemoEvent::Planned(event));
                self.act(event.clone());
            }
            Published::Cycle(report) => {
                (self.observer)(DemoEvent::Cycle(report));
                self.recorder().cycle(report);
            }
            Published::Forecast(forecast) => self.recorder().forecast(forecast),
        }
        Ok(())
    }

    fn status(&mut self, status: &Status) {
        let samples = {
            let mut recorder = self.recorder();
            recorder.status = Some(*status);
            recorder.samples
        };
        (self.observer)(DemoEvent::Status {
            time_us: Twin::now_us(&*self.twin),
            samples,
            status,
        });
    }

    fn assignment(&self) -> Result<Option<BTreeSet<PartitionId>>, RuntimeError> {
        Ok(None)
    }

    async fn flush(&mut self) -> Result<Vec<SourceOffset>, RuntimeError> {
        Ok(Vec::new())
    }

    fn commit(&mut self, _last: bool) -> Result<(), RuntimeError> {
        Ok(())
    }

    async fn close(self) {}
}
