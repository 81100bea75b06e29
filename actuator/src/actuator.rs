//! [`Actuator`]: one remediation event's whole life, every step an audit entry.
//!
//! 1. One delivery of an action at a time: a duplicate waits for the first to finish, then
//!    finds the action over.
//! 2. Authenticity: an event without the planner's valid signature, or reusing the id of an
//!    action recorded with other content, is REFUSED (audited, handed back to be
//!    dead-lettered); its id is not spent.
//! 3. Already finished (a terminal step in the audit log) -> nothing; executed but not
//!    finished (the process died mid-action) -> verify only, never run it again.
//! 4. Policy ([`crate::policy`]): not on the allow-list or invalid parameters -> SKIPPED. PLANNED.
//!    If the catalog, this actuator's configuration or the event calls for an approval, it
//!    waits for a correctly signed one on the same content ([`Actuator::decide`]): APPROVED
//!    runs it, REJECTED ends it; a forged one or one for other content is refused.
//! 5. Canary: of the events of one incident and template on several targets, the first runs
//!    alone; the others wait for it and run only if it did not fail or roll back.
//! 6. A rate-limit token and a concurrency slot; the target's claim ([`crate::claims`]):
//!    already claimed -> verify instead of running; then impact assessment (the probe, target
//!    saturation, whether acting can help): nothing to fix, saturated (unless emergency) or
//!    dry run -> SKIPPED.
//! 7. The claim, then EXECUTED, both *before* the statement runs, so neither a restart nor
//!    another actuator runs it twice; then the statement, then after `settle_ms` the probe
//!    again: the primary metric must fall by the template's goal. Then, for an incident's
//!    action, the symptom: the correlator's verdict that the alert condition stayed clear for
//!    the windows its detectors need ([`crate::verdicts`]). Both -> VERIFIED; else the
//!    template's rollback runs -> ROLLED_BACK, or, without one, FAILED. An error anywhere ->
//!    FAILED with the reason.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opsloop_actions::{Action, Executor, Goal, advised_index_name, seal};
use opsloop_schemas::calendar::time_of_day;
use opsloop_schemas::ops::{
    ActionOutcome, ActionStep, Approval, Decision, Incident, RemediationEvent, RemediationKind,
    SeverityBand,
};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;

use crate::audit::AuditLog;
use crate::events::ActuatorEvents;
use crate::governance::Governor;
use crate::keyed::{KeyedLocks, lock};
use crate::policy::{Admitted, Policy, Refusal};
use crate::twin::Twin;
use crate::verdicts::{Verdict, Verdicts};
use crate::{ActuatorConfig, ActuatorError, claims, postgres, webhook};

/// Decisions kept for actions whose event has not arrived (yet).
const EARLY_DECISIONS: usize = 10_000;

/// What a decision on ops.approvals did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionOutcome {
    /// A forged decision (ignored), or one for other content than the waiting event's.
    Refused(Refusal),
    /// Recorded; the action runs (or ended, if rejected).
    Applied,
    /// Valid, but for an action not waiting (yet): kept for when its event arrives.
    Held,
}

/// Where [`Actuator::handle`] left an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Its life is over (or it was already): verified, rolled back, failed, skipped, rejected.
    Done,
    /// Planned and waiting for a decision on ops.approvals.
    AwaitingApproval,
    /// Refused before anything ran; dead-letter it.
    Refused(Refusal),
}

/// Runs remediation events under governance; see the module docs.
#[derive(Debug)]
pub struct Actuator {
    config: ActuatorConfig,
    instance: String,
    policy: Policy,
    governor: Governor,
    audit: Mutex<AuditLog>,
    outcomes: UnboundedSender<ActionOutcome>,
    verdicts: Verdicts,
    /// One delivery of an action at a time.
    actions: KeyedLocks,
    /// One operation at a time per table: two REINDEX CONCURRENTLY of one table's indexes
    /// deadlock each other.
    relations: KeyedLocks,
    /// Gated events waiting for a decision, by action id.
    waiting: Mutex<HashMap<String, RemediationEvent>>,
    /// Valid decisions that came before their event.
    early: Mutex<HashMap<String, Approval>>,
    /// Per (incident, template): the canary's target and its verdict once known.
    canaries: Mutex<HashMap<String, CanaryGroup>>,
    /// Targets whose claim table is known to exist.
    prepared: Mutex<std::collections::HashSet<String>>,
    /// Where every action runs instead, when set.
    twin: Option<Arc<dyn Twin>>,
    events: ActuatorEvents,
}

/// A canary group's first target and its verdict (`None` while it runs).
type CanaryGroup = (String, watch::Receiver<Option<bool>>);

/// An event's part in its canary group.
enum Canary {
    /// The first: runs, then tells the others.
    First(watch::Sender<Option<bool>>),
    /// A later one: waits for the canary on that target.
    Follower(String, watch::Receiver<Option<bool>>),
    /// The canary's own redelivery.
    Alone,
}

/// What became of the incident's alerts after the action.
enum Symptom {
    /// Nobody watches them: a proactive action, or symptom checks are off.
    Unwatched,
    Judged(Verdict),
    /// No verdict came in time: the action is not verified.
    Silent {
        timeout_s: u64,
    },
}

/// What the probe said after the action, before the symptom's verdict.
struct Judged {
    primary: &'static str,
    was: f64,
    is: f64,
    /// The share of `was` it had to come down by.
    need: f64,
    improved: bool,
    after: BTreeMap<String, f64>,
}

fn twin_refused(reason: String) -> ActuatorError {
    ActuatorError::Refused(format!("the twin refused: {reason}"))
}

/// The refusal of a signed `approval` for other content than its action's.
fn mismatched(approval: &Approval) -> Refusal {
    Refusal::MismatchedApproval {
        approver: approval.approver.clone(),
        digest: approval.action_digest.clone(),
    }
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl Actuator {
    /// An actuator whose audit entries also go to `outcomes` (for `ops.actions`).
    pub fn new(
        config: ActuatorConfig,
        outcomes: UnboundedSender<ActionOutcome>,
    ) -> Result<Self, ActuatorError> {
        let governor = Governor::new(&config)?;
        let audit = AuditLog::open(&config.audit_log)?;
        Ok(Actuator {
            instance: config.instance_name(),
            policy: Policy::new(&config),
            config,
            governor,
            audit: Mutex::new(audit),
            outcomes,
            verdicts: Verdicts::default(),
            actions: KeyedLocks::default(),
            relations: KeyedLocks::default(),
            waiting: Mutex::new(HashMap::new()),
            early: Mutex::new(HashMap::new()),
            canaries: Mutex::new(HashMap::new()),
            prepared: Mutex::new(std::collections::HashSet::new()),
            twin: None,
            events: ActuatorEvents::default(),
        })
    }

    /// This actuator logging and counting into `events` (registered by its service).
    pub fn with_events(mut self, events: ActuatorEvents) -> Self {
        self.events = events;
        self
    }

    /// This actuator with every action run on `twin`, and the twin's clock in its audit log.
    pub fn with_twin(mut self, twin: Arc<dyn Twin>) -> Self {
        self.twin = Some(twin);
        self
    }

    fn now_us(&self) -> i64 {
        self.twin.as_ref().map_or_else(now_us, |twin| twin.now_us())
    }

    pub fn config(&self) -> &ActuatorConfig {
        &self.config
    }

    /// Operations holding a concurrency slot now.
    pub fn running(&self) -> usize {
        self.governor.running(self.config.max_concurrent)
    }

    /// The steps the audit log holds for `action_id` (refusals left out).
    pub fn steps(&self, action_id: &str) -> Vec<ActionStep> {
        lock(&self.audit).steps(action_id).to_vec()
    }

    /// Takes in an incident version: the correlator's verdict on an executed action.
    pub fn observe_incident(&self, incident: &Incident) {
        self.verdicts.observe(incident);
    }

    /// How many actions wait for the correlator's verdict now.
    pub fn awaiting_verdicts(&self) -> usize {
        self.verdicts.awaited()
    }

    fn record(
        &self,
        event: &RemediationEvent,
        step: ActionStep,
        detail: impl Into<String>,
        before: &BTreeMap<String, f64>,
        after: &BTreeMap<String, f64>,
        automated: bool,
    ) -> Result<(), ActuatorError> {
        let entry = ActionOutcome {
            action_id: event.action_id.clone(),
            incident_id: event.incident_id.clone(),
            step,
            template: event.template.clone(),
            target: event.target.clone(),
            time_us: self.now_us(),
            detail: detail.into(),
            automated,
            before: before.clone(),
            after: after.clone(),
            prev_hash: String::new(),
            hash: String::new(),
            params: event.params.clone(),
            digest: seal::digest(event),
            attempt: event.attempt,
        };
        let entry = lock(&self.audit).append(entry)?;
        self.events.step(&entry);
        // The receiver going away (shutdown) does not undo the local audit entry.
        let _ = self.outcomes.send(entry);
        Ok(())
    }

    fn note(
        &self,
        event: &RemediationEvent,
        step: ActionStep,
        detail: impl Into<String>,
    ) -> Result<(), ActuatorError> {
        let none = BTreeMap::new();
        self.record(event, step, detail, &none, &none, true)
    }

    /// Counts, logs and audits `refusal` of `event`; the refusal back.
    fn refuse(&self, event: &RemediationEvent, refusal: Refusal) -> Result<Refusal, ActuatorError> {
        let detail = refusal.to_string();
        self.events
            .refused(&event.action_id, refusal.code(), &detail);
        self.note(event, ActionStep::Refused, detail)?;
        Ok(refusal)
    }

    /// Takes one remediation event through its life (or as far as an approval allows).
    pub async fn handle(&self, event: RemediationEvent) -> Result<Handled, ActuatorError> {
        let _one_at_a_time = self.actions.lock(&event.action_id).await;
        if let Err(refusal) = self.policy.authenticate(&event) {
            return self.refuse(&event, refusal).map(Handled::Refused);
        }
        let digest = seal::digest(&event);
        let known = lock(&self.audit)
            .digest(&event.action_id)
            .map(str::to_owned);
        if let Some(known) = known
            && known != digest
        {
            return self
                .refuse(&event, Refusal::ReusedId { known, digest })
                .map(Handled::Refused);
        }
        let steps = self.steps(&event.action_id);
        if steps.iter().copied().any(ActionStep::is_terminal) {
            tracing::debug!(action_id = %event.action_id, "already finished");
            return Ok(Handled::Done);
        }
        let admitted = match self.policy.admit(&event) {
            Ok(admitted) => admitted,
            Err(reason) => {
                self.note(&event, ActionStep::Skipped, format!("refused: {reason}"))?;
                return Ok(Handled::Done);
            }
        };
        if steps.contains(&ActionStep::Executed) {
            // Died between executing and verifying: verify now, never execute again.
            self.resume(&event, &admitted).await?;
            return Ok(Handled::Done);
        }
        if !steps.contains(&ActionStep::Planned) {
            let detail = match &admitted.approval {
                Some(why) => format!("{} (awaiting approval: {why})", event.rationale),
                None => event.rationale.clone(),
            };
            self.note(&event, ActionStep::Planned, detail)?;
        }
        if admitted.approval.is_some() && !steps.contains(&ActionStep::Approved) {
            let early = lock(&self.early).remove(&event.action_id);
            match early {
                Some(approval) if approval.action_digest == digest => {
                    self.apply_decision(&event, &admitted, &approval).await?;
                    return Ok(Handled::Done);
                }
                Some(approval) => {
                    self.refuse(&event, mismatched(&approval))?;
                }
                None => {}
            }
            lock(&self.waiting).insert(event.action_id.clone(), event);
            return Ok(Handled::AwaitingApproval);
        }
        self.run(&event, &admitted).await?;
        Ok(Handled::Done)
    }

    /// Takes a decision from ops.approvals; a forged one, or one for other content than the
    /// waiting event's, changes nothing.
    pub async fn decide(&self, approval: &Approval) -> Result<DecisionOutcome, ActuatorError> {
        if !seal::verify_approval(self.config.approval_key.as_bytes(), approval) {
            let refusal = Refusal::ForgedApproval {
                approver: approval.approver.clone(),
            };
            self.events
                .refused(&approval.action_id, refusal.code(), &refusal.to_string());
            return Ok(DecisionOutcome::Refused(refusal));
        }
        let _one_at_a_time = self.actions.lock(&approval.action_id).await;
        let Some(event) = lock(&self.waiting).remove(&approval.action_id) else {
            let mut early = lock(&self.early);
            if early.len() >= EARLY_DECISIONS {
                early.clear();
            }
            early.insert(approval.action_id.clone(), approval.clone());
            return Ok(DecisionOutcome::Held);
        };
        if approval.action_digest != seal::digest(&event) {
            let refusal = self.refuse(&event, mismatched(approval))?;
            lock(&self.waiting).insert(event.action_id.clone(), event);
            return Ok(DecisionOutcome::Refused(refusal));
        }
        let admitted = match self.policy.admit(&event) {
            Ok(admitted) => admitted,
            Err(reason) => {
                self.note(&event, ActionStep::Skipped, format!("refused: {reason}"))?;
                return Ok(DecisionOutcome::Applied);
            }
        };
        self.apply_decision(&event, &admitted, approval).await?;
        Ok(DecisionOutcome::Applied)
    }

    async fn apply_decision(
        &self,
        event: &RemediationEvent,
        admitted: &Admitted,
        approval: &Approval,
    ) -> Result<(), ActuatorError> {
        let none = BTreeMap::new();
        let verb = match approval.decision {
            Decision::Approve => "approved",
            Decision::Reject => "rejected",
        };
        let detail = format!("{verb} by {}: {}", approval.approver, approval.reason);
        match approval.decision {
            Decision::Approve => {
                self.record(event, ActionStep::Approved, detail, &none, &none, false)?;
                self.run(event, admitted).await
            }
            Decision::Reject => {
                self.record(event, ActionStep::Rejected, detail, &none, &none, false)
            }
        }
    }

    fn canary(&self, event: &RemediationEvent) -> Canary {
        let key = format!("{}/{}", event.incident_id, event.template);
        let mut canaries = lock(&self.canaries);
        match canaries.get(&key) {
            Some((target, _)) if *target == event.target => Canary::Alone,
            Some((target, verdict)) => Canary::Follower(target.clone(), verdict.clone()),
            None => {
                let (sender, receiver) = watch::channel(None);
                canaries.insert(key, (event.target.clone(), receiver));
                Canary::First(sender)
            }
        }
    }

    async fn run(
        &self,
        event: &RemediationEvent,
        admitted: &Admitted,
    ) -> Result<(), ActuatorError> {
        let canary = self.canary(event);
        if let Canary::Follower(target, mut verdict) = canary {
            let passed = verdict
                .wait_for(Option::is_some)
                .await
                .map(|v| *v == Some(true))
                .unwrap_or(false);
            if !passed {
                return self.note(
                    event,
                    ActionStep::Skipped,
                    format!("the canary on {target} failed; not run on more targets"),
                );
            }
            return self.run_governed(event, admitted).await;
        }
        let outcome = self.run_governed(event, admitted).await;
        if let Canary::First(verdict) = canary {
            let last = self.steps(&event.action_id).last().copied();
            let passed = matches!(last, Some(ActionStep::Verified | ActionStep::Skipped));
            verdict.send_replace(Some(passed));
        }
        outcome
    }

    async fn run_governed(
        &self,
        event: &RemediationEvent,
        admitted: &Admitted,
    ) -> Result<(), ActuatorError> {
        let outcome = match (&self.twin, admitted.spec.executor) {
            (Some(twin), _) => self.run_twin(event, admitted, twin.as_ref()).await,
            (None, Executor::Postgres) => self.run_postgres(event, admitted).await,
            (None, Executor::Webhook) => self.run_webhook(event, admitted).await,
        };
        match outcome {
            Ok(()) => Ok(()),
            Err(error) => self.note(event, ActionStep::Failed, error.to_string()),
        }
    }

    fn dsn(&self, target: &str) -> Result<&str, ActuatorError> {
        self.config
            .postgres
            .get(target)
            .or(self.config.default_dsn.as_ref())
            .map(String::as_str)
            .ok_or_else(|| ActuatorError::NoTarget(target.to_owned()))
    }

    /// The reason a dry run gives for not running `action`; `None` when it is no dry run.
    fn dry_run(&self, action: &Action) -> Option<String> {
        self.config
            .dry_run
            .then(|| format!("dry run: would run {}", action.template()))
    }

    fn operation_timeout(&self) -> Duration {
        Duration::from_secs(self.config.operation_timeout_s)
    }

    /// A session on the target holding the action's advisory lock, and the action's claim if
    /// it has one.
    async fn claimed_session(
        &self,
        event: &RemediationEvent,
    ) -> Result<(tokio_postgres::Client, Option<claims::Claim>), ActuatorError> {
        let dsn = self.dsn(&event.target)?;
        let client = postgres::connect(dsn, self.operation_timeout()).await?;
        if !lock(&self.prepared).contains(dsn) {
            claims::prepare(&client).await?;
            lock(&self.prepared).insert(dsn.to_owned());
        }
        claims::lock(&client, &event.action_id).await?;
        let claim = claims::read(&client, &event.action_id).await?;
        Ok((client, claim))
    }

    async fn run_postgres(
        &self,
        event: &RemediationEvent,
        admitted: &Admitted,
    ) -> Result<(), ActuatorError> {
        let (client, claim) = self.claimed_session(event).await?;
        if claim.is_some() {
            return self.verify_claimed(event, admitted, &client, claim).await;
        }
        let ran = self.run_unclaimed(event, admitted, &client).await;
        if ran.is_err()
            && let Err(error) = claims::abandon(&client, &event.action_id, &self.instance).await
        {
            tracing::warn!(action_id = %event.action_id, %error, "could not end the failed action's claim");
        }
        ran
    }

    /// An action nobody claimed yet, in `client`'s session holding its advisory lock: assessed,
    /// claimed, executed, judged (the claim ends with the verdict).
    async fn run_unclaimed(
        &self,
        event: &RemediationEvent,
        admitted: &Admitted,
        client: &tokio_postgres::Client,
    ) -> Result<(), ActuatorError> {
        let slot = self.governor.slot().await;
        let relation = postgres::relation_of(client, &admitted.action).await?;
        let relation_guard = match &relation {
            Some(relation) => Some(
                self.relations
                    .lock(&format!("{}/{relation}", event.target))
                    .await,
            ),
            None => None,
        };
        let judged = tokio::time::timeout(
            self.operation_timeout(),
            self.execute_postgres(event, admitted, client),
        )
        .await
        .unwrap_or(Err(ActuatorError::Timeout(self.config.operation_timeout_s)))?;
        drop(relation_guard);
        drop(slot);
        let Some((judged, before)) = judged else {
            return Ok(());
        };
        let step = self
            .conclude(event, admitted, judged, &before, |rollback| {
                postgres_rollback(client, rollback, &event.action_id)
            })
            .await?;
        claims::finish(client, &event.action_id, step).await
    }

    /// Assesses and, unless there is a reason not to, claims, executes and probes again;
    /// `None` when it did not run (the reason is recorded).
    async fn execute_postgres(
        &self,
        event: &RemediationEvent,
        admitted: &Admitted,
        client: &tokio_postgres::Client,
    ) -> Result<Option<(Judged, BTreeMap<String, f64>)>, ActuatorError> {
        let verify = &self.config.verify;
        let action = &admitted.action;
        let assessment = postgres::assess(client, action, verify, self.config.saturation).await?;
        let before = assessment.probe.metrics.clone();
        let none = BTreeMap::new();
        let skip = if let Some(reason) = assessment.skip.clone() {
            Some(reason)
        } else if assessment.saturated && event.band != SeverityBand::Emergency {
            Some("the target is saturated and this is no emergency".to_owned())
        } else {
            self.dry_run(action)
        };
        if let Some(reason) = skip {
            self.record(event, ActionStep::Skipped, reason, &before, &none, true)?;
            return Ok(None);
        }
        let digest = seal::digest(event);
        if !claims::take(client, &event.action_id, &digest, &self.instance, &before).await? {
            return Err(ActuatorError::Refused(
                "the action was claimed while it was being assessed".to_owned(),
            ));
        }
        let mut detail = format!("{}: {}", action.template(), admitted.spec.description);
        if let Some(columns) = &assessment.advised_columns {
            detail = format!(
                "{detail}; index {} on ({columns})",
                advised_index_name(&event.action_id)
            );
        }
        self.record(event, ActionStep::Executed, detail, &before, &none, true)?;
        let statement = postgres::execute(
            client,
            action,
            &event.action_id,
            assessment.advised_columns.as_deref(),
        )
        .await?;
        tracing::debug!(action_id = %event.action_id, %statement, "executed");
        tokio::time::sleep(Duration::from_millis(verify.settle_ms)).await;
        let after = postgres::probe(client, action, verify, Some(&assessment.probe)).await?;
        Ok(Some((self.judge(admitted, &before, after), before)))
    }

    fn judge(
        &self,
        admitted: &Admitted,
        before: &BTreeMap<String, f64>,
        after: postgres::Probe,
    ) -> Judged {
        let verify = &self.config.verify;
        let need = match admitted.spec.goal {
            Goal::Reduce => verify.min_improvement,
            Goal::Clear => verify.clear_improvement,
        };
        let was = before.get(after.primary).copied().unwrap_or(0.0);
        let is = after.value(after.primary);
        Judged {
            primary: after.primary,
            was,
            is,
            need,
            improved: was > 0.0 && is <= was * (1.0 - need),
            after: after.metrics,
        }
    }

    /// The verdict after the probe: the symptom's, then VERIFIED, or the rollback `undo`
    /// runs (the statement or request that undid the action).
    async fn conclude<F>(
        &self,
        event: &RemediationEvent,
        admitted: &Admitted,
        judged: Judged,
        before: &BTreeMap<String, f64>,
        undo: impl FnOnce(Action) -> F,
    ) -> Result<ActionStep, ActuatorError>
    where
        F: Future<Output = Result<String, ActuatorError>>,
    {
        let Judged {
            primary,
            was,
            is,
            need,
            ..
        } = judged;
        let probe_says = format!("{primary} {was} -> {is}");
        let verified = if !judged.improved {
            Err(format!("{probe_says}: not down by {:.0}%", need * 100.0))
        } else {
            match self.symptom(event).await {
                Symptom::Unwatched => Ok(probe_says),
                Symptom::Judged(Verdict::Cleared { from_us }) => Ok(format!(
                    "{probe_says}; the incident's alerts stayed clear from {} UTC",
                    time_of_day(from_us)
                )),
                Symptom::Judged(Verdict::Recurred { at_us }) => Err(format!(
                    "{probe_says}, but the incident's alerts came back in the window from {} UTC",
                    time_of_day(at_us)
                )),
                Symptom::Silent { timeout_s } => Err(format!(
                    "{probe_says}, but no verdict on the incident's alerts came within {timeout_s} s"
                )),
            }
        };
        let why = match verified {
            Ok(detail) => {
                let step = ActionStep::Verified;
                self.record(event, step, detail, before, &judged.after, true)?;
                return Ok(step);
            }
            Err(why) => why,
        };
        let (step, detail) = match admitted.action.rollback(&event.action_id) {
            Some(rollback) => {
                let done = undo(rollback).await?;
                (
                    ActionStep::RolledBack,
                    format!("{why}; rolled back with {done}"),
                )
            }
            None => (
                ActionStep::Failed,
                format!("{why}; {} has no rollback", admitted.action.template()),
            ),
        };
        self.record(event, step, detail, before, &judged.after, true)?;
        Ok(step)
    }

    /// The correlator's verdict on an incident's action, unless none is awaited (a proactive
    /// action, or symptom checks are off).
    async fn symptom(&self, event: &RemediationEvent) -> Symptom {
        if !self.config.verify.symptom || event.kind == RemediationKind::Proactive {
            return Symptom::Unwatched;
        }
        let timeout_s = self.config.verify.symptom_timeout_s;
        match self
            .verdicts
            .wait(&event.action_id, Duration::from_secs(timeout_s))
            .await
        {
            Some(verdict) => Symptom::Judged(verdict),
            None => {
                tracing::warn!(action_id = %event.action_id, timeout_s, "no verdict on the incident's alerts (is `opsloop run` reading ops.actions?)");
                Symptom::Silent { timeout_s }
            }
        }
    }

    /// An action that ran before this delivery (this process before a restart, or another
    /// actuator): verified, never run again. The claim is missing when this process died
    /// between its audit's EXECUTED and the claim.
    async fn verify_claimed(
        &self,
        event: &RemediationEvent,
        admitted: &Admitted,
        client: &tokio_postgres::Client,
        claim: Option<claims::Claim>,
    ) -> Result<(), ActuatorError> {
        if let Some(claim) = &claim {
            let digest = seal::digest(event);
            if claim.digest != digest {
                let known = claim.digest.clone();
                return self
                    .refuse(event, Refusal::ReusedId { known, digest })
                    .map(|_| ());
            }
            if let Some(outcome) = &claim.outcome {
                return self.note(
                    event,
                    ActionStep::Skipped,
                    format!(
                        "already run by {} and ended {outcome}: not run again",
                        claim.claimed_by
                    ),
                );
            }
        }
        let before = match lock(&self.audit).executed(&event.action_id) {
            Some(executed) => executed.before.clone(),
            None => claim.map(|claim| claim.before).unwrap_or_default(),
        };
        let none = BTreeMap::new();
        if let Action::CreateIndexAdvised { .. } = &admitted.action {
            let index = advised_index_name(&event.action_id);
            let step = match postgres::index_validity(client, &index).await? {
                None => Some((
                    ActionStep::Failed,
                    format!("interrupted before index {index} existed; not run again"),
                )),
                Some(false) => {
                    let rollback = admitted.action.rollback(&event.action_id);
                    if let Some(rollback) = rollback {
                        postgres::execute(client, &rollback, &event.action_id, None).await?;
                    }
                    Some((
                        ActionStep::RolledBack,
                        format!(
                            "the interrupted build left index {index} invalid: dropped it; not \
                             run again"
                        ),
                    ))
                }
                Some(true) => None,
            };
            if let Some((step, detail)) = step {
                self.record(event, step, detail, &before, &none, true)?;
                return claims::finish(client, &event.action_id, step).await;
            }
        }
        let after = postgres::probe(client, &admitted.action, &self.config.verify, None).await?;
        let judged = self.judge(admitted, &before, after);
        let step = self
            .conclude(event, admitted, judged, &before, |rollback| {
                postgres_rollback(client, rollback, &event.action_id)
            })
            .await?;
        claims::finish(client, &event.action_id, step).await
    }

    /// Carries on an action this process executed before it died.
    async fn resume(
        &self,
        event: &RemediationEvent,
        admitted: &Admitted,
    ) -> Result<(), ActuatorError> {
        if admitted.spec.executor != Executor::Postgres {
            return self.note(
                event,
                ActionStep::Failed,
                "interrupted after the request was sent; not resent",
            );
        }
        let outcome = async {
            let (client, claim) = self.claimed_session(event).await?;
            self.verify_claimed(event, admitted, &client, claim).await
        }
        .await;
        match outcome {
            Ok(()) => Ok(()),
            Err(error) => self.note(event, ActionStep::Failed, error.to_string()),
        }
    }

    /// An action on the twin: its probe, the action, the probe again once the twin's
    /// telemetry moved on, the symptom; the rollback on the twin when it did not help.
    async fn run_twin(
        &self,
        event: &RemediationEvent,
        admitted: &Admitted,
        twin: &dyn Twin,
    ) -> Result<(), ActuatorError> {
        let _slot = self.governor.slot().await;
        let action = &admitted.action;
        let none = BTreeMap::new();
        let Some(before) = twin.probe(&event.target, action) else {
            return self.note(
                event,
                ActionStep::Failed,
                format!("the twin has no target {}", event.target),
            );
        };
        let skip = if before.value(before.eligible) <= 0.0 {
            Some(format!("nothing to fix: {} is 0", before.eligible))
        } else {
            self.dry_run(action)
        };
        if let Some(reason) = skip {
            return self.record(
                event,
                ActionStep::Skipped,
                reason,
                &before.metrics,
                &none,
                true,
            );
        }
        let detail = format!("{}: {}", action.template(), admitted.spec.description);
        self.record(
            event,
            ActionStep::Executed,
            detail,
            &before.metrics,
            &none,
            true,
        )?;
        twin.apply(&event.target, action).map_err(twin_refused)?;
        twin.settle().await;
        let after = twin
            .probe(&event.target, action)
            .unwrap_or_else(|| before.clone());
        let judged = self.judge(admitted, &before.metrics, after);
        let target = event.target.clone();
        self.conclude(
            event,
            admitted,
            judged,
            &before.metrics,
            |rollback| async move { twin.apply(&target, &rollback).map_err(twin_refused) },
        )
        .await?;
        Ok(())
    }

    async fn run_webhook(
        &self,
        event: &RemediationEvent,
        admitted: &Admitted,
    ) -> Result<(), ActuatorError> {
        let none = BTreeMap::new();
        if self.config.dry_run {
            return self.record(
                event,
                ActionStep::Skipped,
                format!("dry run: would call {}", admitted.action.template()),
                &none,
                &none,
                true,
            );
        }
        let _slot = self.governor.slot().await;
        self.record(
            event,
            ActionStep::Executed,
            admitted.spec.description,
            &none,
            &none,
            true,
        )?;
        let config = self.config.clone();
        let (action, action_id, incident_id) = (
            admitted.action.clone(),
            event.action_id.clone(),
            event.incident_id.clone(),
        );
        let requested = tokio::task::spawn_blocking(move || {
            webhook::execute(&config, &action, &action_id, &incident_id)
        })
        .await
        .map_err(|error| ActuatorError::Config(format!("the webhook task failed: {error}")))??;
        self.record(
            event,
            ActionStep::Verified,
            format!("accepted by the receiver: {requested}"),
            &none,
            &none,
            true,
        )
    }
}

/// Runs `rollback` on the target, as action `action_id` undoing itself.
async fn postgres_rollback(
    client: &tokio_postgres::Client,
    rollback: Action,
    action_id: &str,
) -> Result<String, ActuatorError> {
    postgres::execute(client, &rollback, action_id, None).await
}
