//! [`Actuator`]: one remediation event's whole life, every step an audit entry.
//!
//! 1. Already finished (a terminal step in the audit log) -> nothing; executed but not
//!    finished (the process died mid-action) -> verify only, never run it again.
//! 2. Governance: not on the allow-list or invalid parameters -> SKIPPED, nothing runs.
//! 3. PLANNED. If the event needs an approval, it waits for a correctly signed one
//!    ([`Actuator::decide`]): APPROVED runs it, REJECTED ends it; a forged one is refused.
//! 4. Canary: of the events of one incident and template on several targets, the first runs
//!    alone; the others wait for it and run only if it did not fail or roll back.
//! 5. A rate-limit token and a concurrency slot; then impact assessment (the probe, target
//!    saturation, whether acting can help): nothing to fix, saturated (unless emergency) or
//!    dry run -> SKIPPED.
//! 6. EXECUTED is written *before* the statement runs, so a restart never runs it twice; then
//!    the statement, then after `settle_ms` the probe again: the primary metric down by
//!    `min_improvement` -> VERIFIED; else the template's rollback runs -> ROLLED_BACK, or,
//!    without one, FAILED. An error anywhere -> FAILED with the reason.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opsloop_planner::templates::{self, Executor, Template};
use opsloop_schemas::ops::{
    ActionOutcome, ActionStep, Approval, Decision, ParamValue, RemediationEvent, SeverityBand,
};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;

use crate::audit::AuditLog;
use crate::governance::Governor;
use crate::{ActuatorConfig, ActuatorError, approvals, postgres, webhook};

/// What a decision on ops.approvals did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionOutcome {
    /// The signature does not check out: ignored.
    Forged,
    /// Recorded; the action runs (or ended, if rejected).
    Applied,
    /// Valid, but for an action not waiting (yet): kept for when its event arrives.
    Held,
}

/// Where [`Actuator::handle`] left an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Its life is over (or it was already): verified, rolled back, failed, skipped, rejected.
    Done,
    /// Planned and waiting for a decision on ops.approvals.
    AwaitingApproval,
}

/// Runs remediation events under governance; see the module docs.
#[derive(Debug)]
pub struct Actuator {
    config: ActuatorConfig,
    governor: Governor,
    audit: Mutex<AuditLog>,
    outcomes: UnboundedSender<ActionOutcome>,
    /// Gated events waiting for a decision, by action id.
    waiting: Mutex<HashMap<String, RemediationEvent>>,
    /// Valid decisions that came before their event.
    early: Mutex<HashMap<String, Approval>>,
    /// One operation at a time per table: two REINDEX CONCURRENTLY of one table's indexes
    /// deadlock each other.
    relations: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Per (incident, template): the canary's target and its verdict once known.
    canaries: Mutex<HashMap<String, CanaryGroup>>,
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

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn is_terminal(step: ActionStep) -> bool {
    matches!(
        step,
        ActionStep::Verified
            | ActionStep::RolledBack
            | ActionStep::Failed
            | ActionStep::Skipped
            | ActionStep::Rejected
    )
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
            config,
            governor,
            audit: Mutex::new(audit),
            outcomes,
            waiting: Mutex::new(HashMap::new()),
            early: Mutex::new(HashMap::new()),
            relations: Mutex::new(HashMap::new()),
            canaries: Mutex::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> &ActuatorConfig {
        &self.config
    }

    /// Operations holding a concurrency slot now.
    pub fn running(&self) -> usize {
        self.governor.running(self.config.max_concurrent)
    }

    /// The steps the audit log holds for `action_id`.
    pub fn steps(&self, action_id: &str) -> Vec<ActionStep> {
        self.audit
            .lock()
            .map(|a| a.steps(action_id).to_vec())
            .unwrap_or_default()
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
            time_us: now_us(),
            detail: detail.into(),
            automated,
            before: before.clone(),
            after: after.clone(),
            prev_hash: String::new(),
            hash: String::new(),
        };
        let entry = self
            .audit
            .lock()
            .map_err(|_| ActuatorError::Config("the audit log lock is poisoned".to_owned()))?
            .append(entry)?;
        tracing::info!(action_id = %entry.action_id, step = ?entry.step, template = %entry.template, target = %entry.target, detail = %entry.detail, "action");
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

    /// Takes one remediation event through its life (or as far as an approval allows).
    pub async fn handle(&self, event: RemediationEvent) -> Result<Handled, ActuatorError> {
        let steps = self.steps(&event.action_id);
        if steps.iter().copied().any(is_terminal) {
            tracing::debug!(action_id = %event.action_id, "already finished");
            return Ok(Handled::Done);
        }
        let template = match self.governor.admit(&event) {
            Ok(template) => template,
            Err(refusal) => {
                self.note(&event, ActionStep::Skipped, refusal.to_string())?;
                return Ok(Handled::Done);
            }
        };
        if steps.contains(&ActionStep::Executed) {
            // Died between executing and verifying: verify now, never execute again.
            self.verify_after_restart(&event, template).await?;
            return Ok(Handled::Done);
        }
        if !steps.contains(&ActionStep::Planned) {
            self.note(&event, ActionStep::Planned, event.rationale.clone())?;
        }
        if event.approval_required && !steps.contains(&ActionStep::Approved) {
            let early = self
                .early
                .lock()
                .ok()
                .and_then(|mut e| e.remove(&event.action_id));
            match early {
                Some(approval) => {
                    self.apply_decision(event, template, &approval).await?;
                    return Ok(Handled::Done);
                }
                None => {
                    if let Ok(mut waiting) = self.waiting.lock() {
                        waiting.insert(event.action_id.clone(), event);
                    }
                    return Ok(Handled::AwaitingApproval);
                }
            }
        }
        self.run(&event, template).await?;
        Ok(Handled::Done)
    }

    /// Takes a decision from ops.approvals; a forged one changes nothing.
    pub async fn decide(&self, approval: &Approval) -> Result<DecisionOutcome, ActuatorError> {
        if !approvals::verify(self.config.approval_key.as_bytes(), approval) {
            tracing::warn!(action_id = %approval.action_id, approver = %approval.approver, "forged or unsigned approval refused");
            return Ok(DecisionOutcome::Forged);
        }
        let event = self
            .waiting
            .lock()
            .ok()
            .and_then(|mut w| w.remove(&approval.action_id));
        let Some(event) = event else {
            if let Ok(mut early) = self.early.lock() {
                early.insert(approval.action_id.clone(), approval.clone());
            }
            return Ok(DecisionOutcome::Held);
        };
        let template = self.governor.admit(&event)?;
        self.apply_decision(event, template, approval).await?;
        Ok(DecisionOutcome::Applied)
    }

    async fn apply_decision(
        &self,
        event: RemediationEvent,
        template: &'static Template,
        approval: &Approval,
    ) -> Result<(), ActuatorError> {
        let none = BTreeMap::new();
        let detail = format!(
            "{} by {}: {}",
            if approval.decision == Decision::Approve {
                "approved"
            } else {
                "rejected"
            },
            approval.approver,
            approval.reason
        );
        match approval.decision {
            Decision::Approve => {
                self.record(&event, ActionStep::Approved, detail, &none, &none, false)?;
                self.run(&event, template).await
            }
            Decision::Reject => {
                self.record(&event, ActionStep::Rejected, detail, &none, &none, false)
            }
        }
    }

    fn canary(&self, event: &RemediationEvent) -> Canary {
        let key = format!("{}/{}", event.incident_id, event.template);
        let mut canaries = self
            .canaries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
        template: &'static Template,
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
            return self.run_governed(event, template).await;
        }
        let outcome = self.run_governed(event, template).await;
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
        template: &'static Template,
    ) -> Result<(), ActuatorError> {
        let _slot = self.governor.slot().await;
        let limit = Duration::from_secs(self.config.operation_timeout_s);
        let outcome = tokio::time::timeout(limit, async {
            match template.executor {
                Executor::Postgres => self.run_postgres(event, template).await,
                Executor::Webhook => self.run_webhook(event, template).await,
            }
        })
        .await
        .unwrap_or(Err(ActuatorError::Timeout(self.config.operation_timeout_s)));
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

    async fn run_postgres(
        &self,
        event: &RemediationEvent,
        template: &'static Template,
    ) -> Result<(), ActuatorError> {
        let limit = Duration::from_secs(self.config.operation_timeout_s);
        let client = postgres::connect(self.dsn(&event.target)?, limit).await?;
        let relation = postgres::relation_of(&client, &event.params).await?;
        let lock = relation.map(|relation| {
            let key = format!("{}/{relation}", event.target);
            let mut relations = self
                .relations
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(relations.entry(key).or_default())
        });
        let _relation_guard = match &lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        let verify = &self.config.verify;
        let assessment = postgres::assess(
            &client,
            template,
            &event.params,
            verify,
            self.config.saturation,
        )
        .await?;
        let none = BTreeMap::new();
        if let Some(reason) = assessment.skip {
            return self.record(
                event,
                ActionStep::Skipped,
                reason,
                &assessment.before,
                &none,
                true,
            );
        }
        if assessment.saturated && event.band != SeverityBand::Emergency {
            return self.record(
                event,
                ActionStep::Skipped,
                "the target is saturated and this is no emergency",
                &assessment.before,
                &none,
                true,
            );
        }
        if self.config.dry_run {
            return self.record(
                event,
                ActionStep::Skipped,
                format!("dry run: would run {}", template.id),
                &assessment.before,
                &none,
                true,
            );
        }
        let mut detail = format!("{}: {}", template.id, template.description);
        if let Some(columns) = &assessment.advised_columns {
            detail = format!(
                "{detail}; index {} on ({columns})",
                postgres::advised_index_name(&event.action_id)
            );
        }
        self.record(
            event,
            ActionStep::Executed,
            detail,
            &assessment.before,
            &none,
            true,
        )?;
        let statement = postgres::execute(
            &client,
            template,
            &event.params,
            &event.action_id,
            assessment.advised_columns.as_deref(),
        )
        .await?;
        tracing::debug!(action_id = %event.action_id, %statement, "executed");
        self.verify(
            event,
            template,
            &client,
            assessment.primary,
            &assessment.before,
        )
        .await
    }

    async fn verify_after_restart(
        &self,
        event: &RemediationEvent,
        template: &'static Template,
    ) -> Result<(), ActuatorError> {
        if template.executor != Executor::Postgres {
            return self.note(
                event,
                ActionStep::Failed,
                "interrupted after the request was sent; not resent",
            );
        }
        let limit = Duration::from_secs(self.config.operation_timeout_s);
        let client = postgres::connect(self.dsn(&event.target)?, limit).await?;
        let executed = self
            .audit
            .lock()
            .ok()
            .and_then(|a| a.last_of(&event.action_id, ActionStep::Executed));
        let before = executed.map(|e| e.before).unwrap_or_default();
        let (primary, _) =
            postgres::probe(&client, template, &event.params, &self.config.verify).await?;
        self.verify(event, template, &client, primary, &before)
            .await
    }

    async fn verify(
        &self,
        event: &RemediationEvent,
        template: &'static Template,
        client: &tokio_postgres::Client,
        primary: &str,
        before: &BTreeMap<String, f64>,
    ) -> Result<(), ActuatorError> {
        let verify = &self.config.verify;
        tokio::time::sleep(Duration::from_millis(verify.settle_ms)).await;
        let (_, after) = postgres::probe(client, template, &event.params, verify).await?;
        let was = before.get(primary).copied().unwrap_or(0.0);
        let is = after.get(primary).copied().unwrap_or(f64::INFINITY);
        if is <= was * (1.0 - verify.min_improvement) {
            return self.record(
                event,
                ActionStep::Verified,
                format!("{primary} {was} -> {is}"),
                before,
                &after,
                true,
            );
        }
        match template.rollback {
            Some(rollback_id) => {
                let rollback = templates::template(rollback_id)
                    .map_err(|error| ActuatorError::Config(error.to_string()))?;
                let params = rollback_params(template, event)?;
                rollback
                    .validate(&params)
                    .map_err(|error| ActuatorError::Refused(error.to_string()))?;
                let statement =
                    postgres::execute(client, rollback, &params, &event.action_id, None).await?;
                self.record(
                    event,
                    ActionStep::RolledBack,
                    format!("{primary} {was} -> {is}: not better by {:.0}%; rolled back with {statement}", verify.min_improvement * 100.0),
                    before,
                    &after,
                    true,
                )
            }
            None => self.record(
                event,
                ActionStep::Failed,
                format!(
                    "{primary} {was} -> {is}: no improvement, and {} has no rollback",
                    template.id
                ),
                before,
                &after,
                true,
            ),
        }
    }

    async fn run_webhook(
        &self,
        event: &RemediationEvent,
        template: &'static Template,
    ) -> Result<(), ActuatorError> {
        let none = BTreeMap::new();
        if self.config.dry_run {
            return self.record(
                event,
                ActionStep::Skipped,
                format!("dry run: would call {}", template.id),
                &none,
                &none,
                true,
            );
        }
        self.record(
            event,
            ActionStep::Executed,
            template.description,
            &none,
            &none,
            true,
        )?;
        let config = self.config.clone();
        let (id, params, action_id, incident_id) = (
            template.id,
            event.params.clone(),
            event.action_id.clone(),
            event.incident_id.clone(),
        );
        let requested = tokio::task::spawn_blocking(move || {
            webhook::execute(&config, id, &params, &action_id, &incident_id)
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

/// The rollback's parameters: what the action created, found from the action itself.
fn rollback_params(
    template: &Template,
    event: &RemediationEvent,
) -> Result<BTreeMap<String, ParamValue>, ActuatorError> {
    match template.id {
        "pg.create_index_advised" => Ok(BTreeMap::from([(
            "index".to_owned(),
            ParamValue::String(postgres::advised_index_name(&event.action_id)),
        )])),
        "pg.set_role_statement_timeout" => Ok(event
            .params
            .iter()
            .filter(|(name, _)| name.as_str() == "role")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()),
        other => Err(ActuatorError::Config(format!(
            "{other} has no rollback parameters"
        ))),
    }
}
