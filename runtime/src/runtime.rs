//! [`Runtime`]: the loop, whatever carries its records. Inputs in event-time order per
//! partition: batches go through the engine (watermarks, SQL detectors) to alerts; the
//! correlator, on the watermark, makes incident versions; the planner plans them (signed
//! remediation events, later attempts of fixes that did not hold, escalations); the predictor
//! runs its cycle on its own task; actuators' outcomes acknowledge incidents, start the
//! correlator's verdict on the action, and teach the planner.
//!
//! With checkpoints ([`Checkpoints`]), every interval the loop waits until everything
//! published so far is delivered, writes the engine's, correlator's, planner's and
//! predictor's state with the source positions it covers, and only then commits those
//! positions; a restart resumes from the latest checkpoint and replays deterministically (ids
//! are stable), so what it publishes again is the same records.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

use opsloop_correlator::{Correlator, Emitted};
use opsloop_engine::checkpoint::{Checkpoint, CheckpointStore};
use opsloop_engine::runtime::{Engine, Output};
use opsloop_engine::time::PartitionId;
use opsloop_planner::Planner;
use opsloop_predict::{PredictError, Predictor};
use opsloop_schemas::ops::{ActionOutcome, ActionStep, Forecast, IncidentState};

use crate::RuntimeError;
use crate::events::Events;
use crate::transport::{Input, Published, Status, Transport};

const CORRELATOR_STATE: &str = "correlator.json";
const PREDICTOR_STATE: &str = "predictor.json";
const PLANNER_STATE: &str = "planner.json";

/// The stages the loop drives, and their state.
#[derive(Debug)]
pub struct Stages {
    pub engine: Engine,
    pub correlator: Correlator,
    pub planner: Planner,
    pub predictor: Predictor,
}

impl Stages {
    /// The stages, with the correlator's, planner's and predictor's states from `checkpoint`
    /// (the engine's is restored by the caller, which holds its detectors); a stage the
    /// checkpoint lacks, or all without one, starts fresh.
    pub fn new(
        engine: Engine,
        correlator: opsloop_correlator::CorrelatorConfig,
        planner: opsloop_planner::PlannerConfig,
        predictor: opsloop_predict::PredictorConfig,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<Stages, RuntimeError> {
        let state = |name: &str| checkpoint.and_then(|c| c.states.get(name));
        Ok(Stages {
            engine,
            correlator: match state(CORRELATOR_STATE) {
                Some(bytes) => Correlator::restore(correlator, bytes)?,
                None => Correlator::new(correlator)?,
            },
            planner: match state(PLANNER_STATE) {
                Some(bytes) => Planner::restore(planner, bytes)?,
                None => Planner::new(planner),
            },
            predictor: match state(PREDICTOR_STATE) {
                Some(bytes) => Predictor::restore(predictor, bytes)?,
                None => Predictor::new(predictor)?,
            },
        })
    }
}

/// Where checkpoints go and how often.
#[derive(Debug)]
pub struct Checkpoints {
    pub store: CheckpointStore,
    pub interval: Duration,
    /// The id of the last checkpoint written (or restored from).
    pub last_id: u64,
}

/// What a run did, for its closing line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub alerts: u64,
    pub incident_versions: u64,
    pub remediation_events: u64,
    /// The id of the last checkpoint written (or restored from), 0 without checkpoints.
    pub checkpoint_id: u64,
}

/// The forecast jobs of the cycle under way, on their own task so that ingestion goes on.
#[derive(Debug)]
struct InFlightCycle {
    now_us: i64,
    started: Instant,
    jobs: tokio::task::JoinHandle<Result<Vec<Forecast>, PredictError>>,
}

/// The loop; see the module docs.
#[derive(Debug)]
pub struct Runtime<T: Transport> {
    transport: T,
    stages: Stages,
    checkpoints: Option<Checkpoints>,
    events: Events,
    tick_interval: Duration,
    /// The partitions the engine was last told this instance owns.
    assigned: BTreeSet<PartitionId>,
    cycle: Option<InFlightCycle>,
    totals: Totals,
}

/// The next tick of `interval`; never without one.
async fn next_tick(interval: Option<&mut tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Resolves when the jobs in flight finish (never when none are), leaving the slot empty.
async fn jobs_finished(
    in_flight: &mut Option<InFlightCycle>,
) -> (i64, Instant, Result<Vec<Forecast>, RuntimeError>) {
    let Some(cycle) = in_flight.as_mut() else {
        return std::future::pending().await;
    };
    let joined = (&mut cycle.jobs).await;
    let (now_us, started) = (cycle.now_us, cycle.started);
    *in_flight = None;
    let forecasts = match joined {
        Ok(forecasts) => forecasts.map_err(RuntimeError::from),
        Err(error) => Err(RuntimeError::Config(format!(
            "the forecast jobs' task failed: {error}"
        ))),
    };
    (now_us, started, forecasts)
}

impl<T: Transport> Runtime<T> {
    pub fn new(
        transport: T,
        stages: Stages,
        checkpoints: Option<Checkpoints>,
        events: Events,
        tick_interval: Duration,
    ) -> Self {
        Runtime {
            transport,
            stages,
            checkpoints,
            events,
            tick_interval: tick_interval.max(Duration::from_millis(1)),
            assigned: BTreeSet::new(),
            cycle: None,
            totals: Totals::default(),
        }
    }

    /// Runs until the transport ends or `shutdown` resolves; then a last checkpoint.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<Totals, RuntimeError> {
        let outcome = self.drive(shutdown).await;
        // Checkpoint what was done whatever happened, then stop the transport.
        let last = self.checkpoint(true).await;
        let Runtime {
            transport,
            checkpoints,
            mut totals,
            ..
        } = self;
        transport.close().await;
        outcome?;
        last?;
        totals.checkpoint_id = checkpoints.map_or(0, |c| c.last_id);
        Ok(totals)
    }

    async fn drive(&mut self, shutdown: impl Future<Output = ()>) -> Result<(), RuntimeError> {
        tokio::pin!(shutdown);
        let mut checkpoints = self.checkpoints.as_ref().map(|c| {
            let mut every = tokio::time::interval(c.interval.max(Duration::from_millis(1)));
            every.reset();
            every
        });
        let mut ticks = tokio::time::interval(self.tick_interval);
        loop {
            tokio::select! {
                () = &mut shutdown => {
                    tracing::info!("shutting down");
                    return Ok(());
                }
                input = self.transport.next() => match input? {
                    Input::Batch { table, rows, partitions } => {
                        self.sync_assignment(Instant::now())?;
                        let output = self.stages.engine.process(&table, &rows, &partitions, Instant::now())?;
                        self.stages.predictor.observe_batch(&rows);
                        self.publish(output).await?;
                    }
                    Input::Outcome(outcome) => self.outcome(&outcome).await?,
                    Input::End => return Ok(()),
                },
                _ = ticks.tick() => {
                    self.sync_assignment(Instant::now())?;
                    let output = self.stages.engine.tick(Instant::now())?;
                    self.publish(output).await?;
                }
                () = next_tick(checkpoints.as_mut()) => self.checkpoint(false).await?,
                (now_us, started, forecasts) = jobs_finished(&mut self.cycle), if self.cycle.is_some() => {
                    self.predicted(now_us, started, forecasts).await?;
                }
            }
        }
    }

    /// Tells the engine which partitions the group assigned or revoked since the last call,
    /// so a partition whose backlog is still unread holds the watermark back.
    fn sync_assignment(&mut self, now: Instant) -> Result<(), RuntimeError> {
        let Some(current) = self.transport.assignment()? else {
            return Ok(());
        };
        for revoked in self.assigned.difference(&current) {
            self.stages.engine.revoke(revoked);
        }
        for assigned in current.difference(&self.assigned) {
            self.stages.engine.assign(assigned.clone(), now);
        }
        self.assigned = current;
        Ok(())
    }

    /// The engine's output onward: alerts to the correlator, the correlator moved to the
    /// watermark, incident versions planned, due retries planned, a cycle started when due.
    async fn publish(&mut self, output: Output) -> Result<(), RuntimeError> {
        let status = self.stages.engine.status();
        self.events.engine(&output, &status);
        for alert in &output.alerts {
            self.transport.publish(Published::Alert(alert)).await?;
            self.stages.correlator.observe(alert);
        }
        self.totals.alerts += output.alerts.len() as u64;
        if let Some(watermark) = status.watermark_us {
            let emitted = self.stages.correlator.advance(watermark);
            self.incidents(emitted, true).await?;
            let retries = self.stages.planner.due(watermark);
            for event in &retries.events {
                self.remediate(event).await?;
            }
            for escalation in retries.escalations {
                self.events.escalated(&escalation);
                let emitted = self.stages.correlator.escalate(
                    &escalation.incident_id,
                    &escalation.reason,
                    watermark,
                );
                self.incidents(emitted, true).await?;
            }
            if self.cycle.is_none() && self.stages.predictor.due(watermark) {
                let jobs = self.stages.predictor.start_cycle(watermark);
                self.cycle = Some(InFlightCycle {
                    now_us: watermark,
                    started: Instant::now(),
                    jobs: tokio::spawn(jobs.run()),
                });
            }
        }
        let open_fixes = self.stages.planner.open_fixes();
        let correlator = self.stages.correlator.status();
        self.events.correlator(&correlator, open_fixes);
        self.transport.status(&Status {
            engine: status,
            correlator,
            open_fixes,
        });
        Ok(())
    }

    /// Publishes incident versions and notifications; plans the versions when `plan`.
    async fn incidents(&mut self, emitted: Emitted, plan: bool) -> Result<(), RuntimeError> {
        for incident in &emitted.versions {
            self.events.incident(incident);
            self.transport
                .publish(Published::Incident(incident))
                .await?;
            if incident.state == IncidentState::Open {
                self.stages
                    .predictor
                    .incident_opened(&incident.entity, incident.opened_us);
            }
            if plan {
                let at_us = self
                    .stages
                    .correlator
                    .clock_us()
                    .unwrap_or(incident.updated_us);
                for event in self.stages.planner.plan(incident, at_us) {
                    self.remediate(&event).await?;
                }
            }
        }
        self.totals.incident_versions += emitted.versions.len() as u64;
        for notification in emitted.notifications {
            self.transport
                .publish(Published::Notification(Box::new(notification)))
                .await?;
        }
        Ok(())
    }

    async fn remediate(
        &mut self,
        event: &opsloop_schemas::ops::RemediationEvent,
    ) -> Result<(), RuntimeError> {
        self.events.planned(event);
        self.transport
            .publish(Published::Remediation(event))
            .await?;
        self.totals.remediation_events += 1;
        Ok(())
    }

    /// An actuator's outcome: an execution acknowledges its incident and starts the
    /// correlator's judgement of it; every ending teaches the planner.
    async fn outcome(&mut self, outcome: &ActionOutcome) -> Result<(), RuntimeError> {
        self.events.outcome(outcome);
        if outcome.step == ActionStep::Executed
            && let Some(version) = self.stages.correlator.acknowledge(
                &outcome.incident_id,
                &outcome.action_id,
                outcome.time_us,
            )
        {
            let emitted = Emitted {
                versions: vec![version],
                notifications: Vec::new(),
            };
            self.incidents(emitted, false).await?;
        }
        if let Some(success) = outcome.step.success() {
            self.stages.predictor.action_executed(success);
        }
        let at_us = self.stages.correlator.clock_us().unwrap_or(outcome.time_us);
        self.stages.planner.observe(outcome, at_us);
        Ok(())
    }

    /// The end of the predictive cycle whose jobs finished: the cycle report and forecasts
    /// published, proactive plans signed and published.
    async fn predicted(
        &mut self,
        now_us: i64,
        started: Instant,
        forecasts: Result<Vec<Forecast>, RuntimeError>,
    ) -> Result<(), RuntimeError> {
        let forecasts = match forecasts {
            Ok(forecasts) => forecasts,
            Err(error) => {
                self.events.cycle_failed(&error);
                return Ok(());
            }
        };
        let cycle = self.stages.predictor.finish_cycle(now_us, forecasts);
        self.events.cycle(
            &cycle.report,
            &cycle.forecasts,
            started.elapsed().as_secs_f64(),
        );
        self.transport
            .publish(Published::Cycle(&cycle.report))
            .await?;
        for forecast in &cycle.forecasts {
            self.transport
                .publish(Published::Forecast(forecast))
                .await?;
        }
        for event in &cycle.events {
            let event = self.stages.planner.sign(event.clone());
            self.remediate(&event).await?;
        }
        Ok(())
    }

    /// Delivers what was published, writes a checkpoint, then commits the positions it
    /// covers (synchronously when `last`).
    async fn checkpoint(&mut self, last: bool) -> Result<(), RuntimeError> {
        let started = Instant::now();
        let offsets = self.transport.flush().await?;
        let Some(checkpoints) = self.checkpoints.as_mut() else {
            return Ok(());
        };
        checkpoints.last_id += 1;
        let id = checkpoints.last_id;
        let mut checkpoint = self.stages.engine.checkpoint(id, offsets)?;
        let states = [
            (CORRELATOR_STATE, self.stages.correlator.snapshot()?),
            (PREDICTOR_STATE, self.stages.predictor.snapshot()?),
            (PLANNER_STATE, self.stages.planner.snapshot()?),
        ];
        for (name, state) in states {
            checkpoint.states.insert(name.to_owned(), state);
        }
        let path = checkpoints.store.write(&checkpoint)?;
        if let Err(error) = self.transport.commit(last) {
            self.events.commit_failed(&error);
        }
        self.events
            .checkpoint_written(id, started.elapsed().as_secs_f64(), &path);
        Ok(())
    }
}
