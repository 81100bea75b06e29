//! [`Planner`]: incident versions and action outcomes in, signed remediation events out.
//!
//! Every agent proposes, compliance reviews, the resolver settles. Each accepted proposal is
//! a *fix*: one goal of one agent on one target of one incident (rebuild this index, end the
//! sessions blocking others). A fix is tried in attempts, each a [`RemediationEvent`] with its
//! own action id, `<hash of incident, template, target, parameters>.<attempt>`:
//!
//! - the first attempt goes out with the version that proposes it; later versions add nothing
//!   while it is in flight;
//! - after an attempt that failed or was rolled back, the next one follows once its backoff
//!   (`retry_backoff_s`, doubling with every attempt) has passed in event time, planned again
//!   from the incident's latest version, so the learner may pick another alternative; after one
//!   that verified, or was skipped with nothing to do, only when a later version shows the
//!   fault back;
//! - the attempt after `max_attempts` needs an approval and comes with an [`Escalation`] (the
//!   caller raises the incident's tier, which notifies); there is none after it;
//! - a rejection ends the fix.
//!
//! Verified, failed and rolled-back outcomes teach the learner. Everything the planner keeps
//! — the fixes and latest versions of open incidents, the learner — is bounded by the open
//! incidents and saved with [`Planner::snapshot`]. Events are signed with `signing_key`
//! (`opsloop_actions::seal`); actuators refuse unsigned ones.

use std::collections::BTreeMap;

use opsloop_actions::seal;
use opsloop_schemas::ids::stable_id;
use opsloop_schemas::ops::{
    ActionOutcome, ActionStep, Incident, IncidentState, RemediationEvent, RemediationKind,
    SeverityBand,
};
use serde::{Deserialize, Serialize};

use crate::PlannerError;
use crate::agents::{Agent, AgentsConfig, all_agents};
use crate::learning::Learner;
use crate::resolver::{Accepted, Resolution, resolve};

/// `[planner]`: what the agents may act on, how often a fix is tried, the signing key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannerConfig {
    #[serde(default)]
    pub agents: AgentsConfig,
    /// The key remediation events are signed with; actuators hold the same one
    /// (`[actuator] planner_key`). Empty: events go out unsigned and actuators refuse them.
    #[serde(default)]
    pub signing_key: String,
    /// Attempts at one fix before the next needs an approval and the incident escalates.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: i64,
    /// Event time between an unsuccessful attempt and the next, seconds; doubles with every
    /// attempt.
    #[serde(default = "default_retry_backoff_s")]
    pub retry_backoff_s: i64,
    /// Seed of the learner's random draws.
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn default_max_attempts() -> i64 {
    3
}

fn default_retry_backoff_s() -> i64 {
    60
}

fn default_seed() -> u64 {
    0x5eed
}

impl Default for PlannerConfig {
    fn default() -> Self {
        PlannerConfig {
            agents: AgentsConfig::default(),
            signing_key: String::new(),
            max_attempts: default_max_attempts(),
            retry_backoff_s: default_retry_backoff_s(),
            seed: default_seed(),
        }
    }
}

/// An incident whose fix ran out of attempts: raise its tier and tell people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escalation {
    pub incident_id: String,
    pub reason: String,
}

/// What [`Planner::due`] planned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Retries {
    pub events: Vec<RemediationEvent>,
    pub escalations: Vec<Escalation>,
}

/// How an attempt ended, as far as planning goes, and when (event time).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Ended {
    step: ActionStep,
    at_us: i64,
}

/// One fix of an open incident and its current attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Fix {
    incident_id: String,
    goal: String,
    target: String,
    attempt: i64,
    action_id: String,
    ended: Option<Ended>,
    /// A later version showed the fault back after an attempt that seemed to work.
    recurred: bool,
}

impl Fix {
    fn key(incident_id: &str, accepted: &Accepted) -> String {
        let proposal = &accepted.proposal;
        format!(
            "{incident_id}/{}/{}/{}",
            proposal.agent, proposal.goal, proposal.target
        )
    }

    /// Whether another attempt is called for (its backoff aside).
    fn wants_retry(&self) -> bool {
        match self.ended.map(|e| e.step) {
            Some(ActionStep::Failed | ActionStep::RolledBack) => true,
            Some(ActionStep::Verified | ActionStep::Skipped) => self.recurred,
            _ => false,
        }
    }
}

/// The planner's state, as saved in a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct State {
    learner: Learner,
    /// The latest version of every open incident the planner has seen.
    incidents: BTreeMap<String, Incident>,
    fixes: BTreeMap<String, Fix>,
    /// Action id -> the key of its fix.
    actions: BTreeMap<String, String>,
}

/// Plans remediation for incidents; see the module docs.
#[derive(Debug)]
pub struct Planner {
    config: PlannerConfig,
    agents: Vec<Box<dyn Agent>>,
    state: State,
}

impl Planner {
    pub fn new(config: PlannerConfig) -> Self {
        let learner = Learner::new(config.seed);
        Planner {
            config,
            agents: all_agents(),
            state: State {
                learner,
                incidents: BTreeMap::new(),
                fixes: BTreeMap::new(),
                actions: BTreeMap::new(),
            },
        }
    }

    /// A planner resumed from [`snapshot`](Self::snapshot) bytes.
    pub fn restore(config: PlannerConfig, snapshot: &[u8]) -> Result<Self, PlannerError> {
        let mut planner = Planner::new(config);
        planner.state = serde_json::from_slice(snapshot)
            .map_err(|error| PlannerError::Snapshot(error.to_string()))?;
        Ok(planner)
    }

    /// The whole state, for a checkpoint.
    pub fn snapshot(&self) -> Result<Vec<u8>, PlannerError> {
        serde_json::to_vec(&self.state).map_err(|error| PlannerError::Snapshot(error.to_string()))
    }

    pub fn config(&self) -> &PlannerConfig {
        &self.config
    }

    pub fn learner(&self) -> &Learner {
        &self.state.learner
    }

    pub fn learner_mut(&mut self) -> &mut Learner {
        &mut self.state.learner
    }

    /// Fixes in flight or waiting for another attempt.
    pub fn open_fixes(&self) -> usize {
        self.state.fixes.len()
    }

    /// `event` signed with the planning key (unsigned when there is none).
    pub fn sign(&self, event: RemediationEvent) -> RemediationEvent {
        seal::sign_event(self.config.signing_key.as_bytes(), event)
    }

    /// The first attempts of the fixes `incident` calls for, planned at event time `now_us`;
    /// none for a resolved incident (its fixes are forgotten).
    pub fn plan(&mut self, incident: &Incident, now_us: i64) -> Vec<RemediationEvent> {
        let id = &incident.incident_id;
        if incident.state == IncidentState::Resolved {
            self.forget(id);
            return Vec::new();
        }
        self.state.incidents.insert(id.clone(), incident.clone());
        let resolution = self.decide(incident);
        let mut events = Vec::new();
        for accepted in &resolution.accepted {
            let key = Fix::key(id, accepted);
            match self.state.fixes.get_mut(&key) {
                Some(fix) => {
                    if let Some(ended) = fix.ended
                        && shows_the_fault_back(incident, fix, ended)
                    {
                        fix.recurred = true;
                    }
                }
                None => {
                    let event =
                        self.sign(self.event(incident, accepted, &resolution.summary, 1, now_us));
                    self.track(key, incident, accepted, &event);
                    events.push(event);
                }
            }
        }
        events
    }

    /// Takes an actuator's outcome, observed at event time `at_us`: the end of an attempt,
    /// and a lesson for the learner.
    pub fn observe(&mut self, outcome: &ActionOutcome, at_us: i64) {
        let Some(fix) = self
            .state
            .actions
            .get(&outcome.action_id)
            .and_then(|key| self.state.fixes.get_mut(key))
        else {
            return;
        };
        if outcome.step.is_terminal() && fix.ended.is_none() {
            fix.ended = Some(Ended {
                step: outcome.step,
                at_us,
            });
            fix.recurred = false;
        }
        let Some(success) = outcome.step.success() else {
            return;
        };
        if let Some(incident) = self.state.incidents.get(&fix.incident_id) {
            self.state
                .learner
                .record(&incident.failure_type, &outcome.template, success);
        }
    }

    /// The next attempts due by event time `now_us`, and the incidents to escalate.
    pub fn due(&mut self, now_us: i64) -> Retries {
        let mut retries = Retries::default();
        let ready: Vec<String> = self
            .state
            .fixes
            .iter()
            .filter(|(_, fix)| {
                fix.wants_retry()
                    && fix.attempt <= self.config.max_attempts
                    && fix
                        .ended
                        .is_some_and(|ended| now_us >= ended.at_us + self.backoff_us(fix))
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in ready {
            let Some(fix) = self.state.fixes.get(&key).cloned() else {
                continue;
            };
            let Some(incident) = self.state.incidents.get(&fix.incident_id).cloned() else {
                self.state.fixes.remove(&key);
                continue;
            };
            let resolution = self.decide(&incident);
            let Some(accepted) = resolution
                .accepted
                .iter()
                .find(|a| Fix::key(&incident.incident_id, a) == key)
            else {
                // Nothing proposes this fix any more (labels changed, a veto): it is over.
                self.state.fixes.remove(&key);
                continue;
            };
            let attempt = fix.attempt + 1;
            let mut event = self.event(&incident, accepted, &resolution.summary, attempt, now_us);
            let previous = fix.ended.map_or(ActionStep::Failed, |e| e.step);
            if attempt > self.config.max_attempts {
                let reason = format!(
                    "{} attempts at {} on {} did not hold (the last {previous:?})",
                    fix.attempt, fix.goal, fix.target
                );
                event.approval_required = true;
                event.rationale = format!(
                    "escalated: {reason}; approval required. {}",
                    event.rationale
                );
                retries.escalations.push(Escalation {
                    incident_id: incident.incident_id.clone(),
                    reason,
                });
            } else {
                event.rationale = format!(
                    "attempt {attempt} (the previous ended {previous:?}): {}",
                    event.rationale
                );
            }
            let event = self.sign(event);
            self.track(key, &incident, accepted, &event);
            retries.events.push(event);
        }
        retries
    }

    fn backoff_us(&self, fix: &Fix) -> i64 {
        let doublings = u32::try_from(fix.attempt.clamp(1, 20) - 1).unwrap_or(0);
        self.config
            .retry_backoff_s
            .saturating_mul(1_000_000)
            .saturating_mul(1 << doublings)
    }

    fn track(
        &mut self,
        key: String,
        incident: &Incident,
        accepted: &Accepted,
        event: &RemediationEvent,
    ) {
        let proposal = &accepted.proposal;
        if let Some(old) = self.state.fixes.get(&key) {
            self.state.actions.remove(&old.action_id);
        }
        self.state
            .actions
            .insert(event.action_id.clone(), key.clone());
        self.state.fixes.insert(
            key,
            Fix {
                incident_id: incident.incident_id.clone(),
                goal: proposal.goal.to_owned(),
                target: proposal.target.clone(),
                attempt: event.attempt,
                action_id: event.action_id.clone(),
                ended: None,
                recurred: false,
            },
        );
    }

    fn forget(&mut self, incident_id: &str) {
        self.state.incidents.remove(incident_id);
        let fixes = &mut self.state.fixes;
        self.state.actions.retain(|_, key| {
            fixes
                .get(key)
                .is_some_and(|fix| fix.incident_id != incident_id)
        });
        fixes.retain(|_, fix| fix.incident_id != incident_id);
    }

    fn decide(&mut self, incident: &Incident) -> Resolution {
        let mut proposals = Vec::new();
        for agent in &self.agents {
            proposals.extend(agent.propose(incident, &self.config.agents));
        }
        let mut reviews = Vec::new();
        for agent in &self.agents {
            reviews.extend(agent.review(incident, &proposals, &self.config.agents));
        }
        resolve(incident, proposals, &reviews, &mut self.state.learner)
    }

    /// The (unsigned) event of `attempt` at `accepted` for `incident`.
    fn event(
        &self,
        incident: &Incident,
        accepted: &Accepted,
        summary: &str,
        attempt: i64,
        now_us: i64,
    ) -> RemediationEvent {
        let proposal = &accepted.proposal;
        let template = proposal.action.template();
        let spec = template.spec();
        let band = SeverityBand::of(incident.severity);
        let by_policy = spec
            .approval
            .needs_approval(band == SeverityBand::Emergency);
        let mut rationale = proposal.rationale.clone();
        if let Some(reason) = &accepted.approval_reason {
            rationale.push_str(&format!("; approval required: {reason}"));
        }
        if !summary.is_empty() {
            rationale.push_str(&format!(" [resolution: {summary}]"));
        }
        let params = proposal.action.params();
        let content = serde_json::to_string(&params).unwrap_or_default();
        let base = stable_id(&[
            incident.incident_id.as_bytes(),
            template.as_str().as_bytes(),
            proposal.target.as_bytes(),
            content.as_bytes(),
        ]);
        RemediationEvent {
            action_id: format!("{base}.{attempt}"),
            incident_id: incident.incident_id.clone(),
            kind: RemediationKind::Reactive,
            band,
            template: template.as_str().to_owned(),
            params,
            target: proposal.target.clone(),
            risk: spec.risk,
            approval_required: by_policy || accepted.approval_reason.is_some(),
            rollback_template: spec.rollback.map(|r| r.as_str().to_owned()),
            agent: proposal.agent.to_string(),
            rationale,
            created_us: now_us,
            deadline_us: incident.deadline_us,
            attempt,
            signature: String::new(),
        }
    }
}

/// Whether `incident` (a later version) shows the fault of `fix` back after its attempt ended:
/// for a verified attempt, the correlator's word that its alerts came back in windows after
/// the action; for one skipped with nothing to do, any update after it.
fn shows_the_fault_back(incident: &Incident, fix: &Fix, ended: Ended) -> bool {
    match ended.step {
        ActionStep::Verified => {
            incident.action_id.as_deref() == Some(fix.action_id.as_str())
                && incident.recurred_us.is_some()
        }
        ActionStep::Skipped => {
            incident.state == IncidentState::Updated && incident.updated_us > ended.at_us
        }
        _ => false,
    }
}
