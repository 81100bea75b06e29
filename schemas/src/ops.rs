//! Record types of the topics opsloop itself writes: alerts, incidents, remediation events,
//! approvals, action outcomes, cycle reports, forecasts and dead letters.
//!
//! Each type mirrors one `.avsc` file in `schemas/avro/`; field docs live there.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One detector firing for one entity and window (`ops.alerts`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub alert_id: String,
    pub entity: String,
    pub detector: String,
    pub alert_type: String,
    pub score: f64,
    #[serde(default = "default_alert_severity")]
    pub severity: f64,
    pub window_start_us: i64,
    pub window_end_us: i64,
    #[serde(default)]
    pub evidence: BTreeMap<String, f64>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub emitted_us: i64,
}

fn default_alert_severity() -> f64 {
    0.5
}

/// Incident tier: how soon someone (or something) must act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Tier {
    /// Critical: act within 5 minutes.
    T1,
    /// High: act within 1 hour.
    T2,
    /// Medium: act within 24 hours.
    T3,
    /// Informational: no deadline.
    T4,
}

impl Tier {
    /// How long after opening an incident of this tier must be acted on; `None` for T4.
    pub fn act_within(self) -> Option<std::time::Duration> {
        const MINUTE: u64 = 60;
        match self {
            Tier::T1 => Some(std::time::Duration::from_secs(5 * MINUTE)),
            Tier::T2 => Some(std::time::Duration::from_secs(60 * MINUTE)),
            Tier::T3 => Some(std::time::Duration::from_secs(24 * 60 * MINUTE)),
            Tier::T4 => None,
        }
    }
}

/// Lifecycle state of an incident version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IncidentState {
    Open,
    Updated,
    Acknowledged,
    Resolved,
}

/// A ranked root-cause hypothesis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hypothesis {
    pub cause: String,
    pub confidence: f64,
    #[serde(default)]
    pub evidence: String,
}

/// One version of a correlated incident (`ops.incidents`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub incident_id: String,
    pub version: i64,
    pub entity: String,
    pub pattern: String,
    pub failure_type: String,
    pub severity: f64,
    pub tier: Tier,
    pub state: IncidentState,
    pub opened_us: i64,
    pub updated_us: i64,
    #[serde(default)]
    pub deadline_us: Option<i64>,
    #[serde(default)]
    pub resolved_us: Option<i64>,
    pub alert_ids: Vec<String>,
    #[serde(default)]
    pub alert_types: Vec<String>,
    #[serde(default)]
    pub hypotheses: Vec<Hypothesis>,
    #[serde(default)]
    pub model_version: Option<String>,
    #[serde(default)]
    pub feature_set: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The action whose effect this version judges: set from the action's execution on.
    #[serde(default)]
    pub action_id: Option<String>,
    /// Set when the incident's alert condition stayed clear, after that action, for the
    /// windows its detectors need: the start of the first clear window.
    #[serde(default)]
    pub recovered_us: Option<i64>,
    /// Set when the alerts came back in windows that started after that action: the start of
    /// the first such window.
    #[serde(default)]
    pub recurred_us: Option<i64>,
}

impl Incident {
    /// Version 0 of an open T4 incident of `pattern` and `failure_type` on `entity`, with no
    /// alert yet, severity 0 and every time 0; set the other fields as needed.
    pub fn new(
        incident_id: impl Into<String>,
        entity: impl Into<String>,
        pattern: impl Into<String>,
        failure_type: impl Into<String>,
    ) -> Self {
        Incident {
            incident_id: incident_id.into(),
            version: 0,
            entity: entity.into(),
            pattern: pattern.into(),
            failure_type: failure_type.into(),
            severity: 0.0,
            tier: Tier::T4,
            state: IncidentState::Open,
            opened_us: 0,
            updated_us: 0,
            deadline_us: None,
            resolved_us: None,
            alert_ids: Vec::new(),
            alert_types: Vec::new(),
            hypotheses: Vec::new(),
            model_version: None,
            feature_set: Vec::new(),
            labels: BTreeMap::new(),
            action_id: None,
            recovered_us: None,
            recurred_us: None,
        }
    }
}

/// Whether an action answers an incident or a forecast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RemediationKind {
    #[default]
    Reactive,
    Proactive,
}

/// The seed's severity bands: below 0.5 preventive, 0.5 to 0.8 corrective, 0.8 and up emergency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SeverityBand {
    Preventive,
    Corrective,
    Emergency,
}

impl SeverityBand {
    /// The band a severity in [0, 1] falls in.
    pub fn of(severity: f64) -> Self {
        if severity >= 0.8 {
            SeverityBand::Emergency
        } else if severity >= 0.5 {
            SeverityBand::Corrective
        } else {
            SeverityBand::Preventive
        }
    }
}

/// A typed action-template parameter (an Avro union of string, long, double and boolean).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ParamValue {
    String(String),
    Long(i64),
    Double(f64),
    Boolean(bool),
}

/// A planned action (`ops.remediation`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemediationEvent {
    pub action_id: String,
    pub incident_id: String,
    #[serde(default)]
    pub kind: RemediationKind,
    pub band: SeverityBand,
    pub template: String,
    #[serde(default)]
    pub params: BTreeMap<String, ParamValue>,
    pub target: String,
    pub risk: f64,
    pub approval_required: bool,
    #[serde(default)]
    pub rollback_template: Option<String>,
    #[serde(default)]
    pub agent: String,
    #[serde(default)]
    pub rationale: String,
    pub created_us: i64,
    #[serde(default)]
    pub deadline_us: Option<i64>,
    /// Which attempt at this fix (1 for the first); a later attempt has its own action id.
    #[serde(default = "first_attempt")]
    pub attempt: i64,
    /// The planner's signature (`opsloop_actions::seal`); actuators refuse events without a
    /// valid one.
    #[serde(default)]
    pub signature: String,
}

fn first_attempt() -> i64 {
    1
}

impl RemediationEvent {
    /// A reactive, corrective, unsigned first attempt of `template` on `target` with
    /// `params`, no approval, no rollback, risk 0 and created at time 0; set the other fields
    /// as needed.
    pub fn new(
        action_id: impl Into<String>,
        incident_id: impl Into<String>,
        template: impl Into<String>,
        target: impl Into<String>,
        params: BTreeMap<String, ParamValue>,
    ) -> Self {
        RemediationEvent {
            action_id: action_id.into(),
            incident_id: incident_id.into(),
            kind: RemediationKind::Reactive,
            band: SeverityBand::Corrective,
            template: template.into(),
            params,
            target: target.into(),
            risk: 0.0,
            approval_required: false,
            rollback_template: None,
            agent: String::new(),
            rationale: String::new(),
            created_us: 0,
            deadline_us: None,
            attempt: 1,
            signature: String::new(),
        }
    }
}

/// Approve or reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Decision {
    Approve,
    Reject,
}

/// A signed decision on a gated action (`ops.approvals`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub action_id: String,
    pub decision: Decision,
    pub approver: String,
    #[serde(default)]
    pub reason: String,
    pub time_us: i64,
    pub signature: String,
    /// The digest of the action content decided on (`opsloop_actions::seal::digest`).
    #[serde(default)]
    pub action_digest: String,
}

/// A step in an action's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActionStep {
    Planned,
    Approved,
    Rejected,
    Executed,
    Verified,
    RolledBack,
    Failed,
    Skipped,
    /// An event or decision refused before anything ran (unsigned, altered, reused id, not
    /// allowed); not the end of the action it names.
    Refused,
}

impl ActionStep {
    /// The step's name on the wire (`VERIFIED`, `ROLLED_BACK`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ActionStep::Planned => "PLANNED",
            ActionStep::Approved => "APPROVED",
            ActionStep::Rejected => "REJECTED",
            ActionStep::Executed => "EXECUTED",
            ActionStep::Verified => "VERIFIED",
            ActionStep::RolledBack => "ROLLED_BACK",
            ActionStep::Failed => "FAILED",
            ActionStep::Skipped => "SKIPPED",
            ActionStep::Refused => "REFUSED",
        }
    }

    /// Whether the action's life ends here.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ActionStep::Verified
                | ActionStep::RolledBack
                | ActionStep::Failed
                | ActionStep::Skipped
                | ActionStep::Rejected
        )
    }

    /// Whether an action that ran helped: `Some` for the endings of one that ran (verified,
    /// rolled back, failed), `None` otherwise.
    pub fn success(self) -> Option<bool> {
        match self {
            ActionStep::Verified => Some(true),
            ActionStep::RolledBack | ActionStep::Failed => Some(false),
            _ => None,
        }
    }
}

/// One audit-trail entry (`ops.actions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionOutcome {
    pub action_id: String,
    pub incident_id: String,
    pub step: ActionStep,
    pub template: String,
    pub target: String,
    pub time_us: i64,
    #[serde(default)]
    pub detail: String,
    #[serde(default = "default_automated")]
    pub automated: bool,
    #[serde(default)]
    pub before: BTreeMap<String, f64>,
    #[serde(default)]
    pub after: BTreeMap<String, f64>,
    pub prev_hash: String,
    pub hash: String,
    /// The action's parameters, as in its remediation event.
    #[serde(default)]
    pub params: BTreeMap<String, ParamValue>,
    /// The digest of the action's content (`opsloop_actions::seal::digest`).
    #[serde(default)]
    pub digest: String,
    /// Which attempt at its fix the action is.
    #[serde(default = "first_attempt")]
    pub attempt: i64,
}

fn default_automated() -> bool {
    true
}

/// The closed-loop cycle report of one predictive cycle (`ops.cycles`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CycleReport {
    pub cycle_id: String,
    pub time_us: i64,
    pub failures_detected: i64,
    pub operations_executed: i64,
    #[serde(default)]
    pub success_rate: Option<f64>,
    #[serde(default)]
    pub models_updated: Vec<String>,
    #[serde(default)]
    pub proactive_plans: i64,
}

/// One forecast of a predictive cycle (`ops.forecasts`): what a forecast job said about an
/// entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    pub cycle_id: String,
    pub time_us: i64,
    /// The forecast job (its file name) that made it.
    pub job: String,
    pub entity: String,
    /// What is forecast: `latency_p99_ms`, `capacity_share`, `cost_per_query_usd`, ...
    pub forecast: String,
    #[serde(default)]
    pub resource: Option<String>,
    pub value: f64,
    #[serde(default)]
    pub lower: Option<f64>,
    #[serde(default)]
    pub upper: Option<f64>,
    /// How far ahead, seconds.
    #[serde(default)]
    pub horizon_s: Option<i64>,
    #[serde(default)]
    pub time_to_exhaustion_s: Option<f64>,
}

/// A record that could not be processed, read back whole (`ops.deadletter`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub source_topic: String,
    pub partition: i32,
    pub offset: i64,
    pub reason_code: String,
    pub reason: String,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    pub time_us: i64,
}

#[cfg(test)]
mod tests {
    use super::ActionStep;

    #[test]
    fn a_steps_name_is_its_name_on_the_wire() {
        for step in [
            ActionStep::Planned,
            ActionStep::Approved,
            ActionStep::Rejected,
            ActionStep::Executed,
            ActionStep::Verified,
            ActionStep::RolledBack,
            ActionStep::Failed,
            ActionStep::Skipped,
            ActionStep::Refused,
        ] {
            let wire = serde_json::to_string(&step).expect("serializes");
            assert_eq!(wire, format!("\"{}\"", step.as_str()));
        }
    }
}
