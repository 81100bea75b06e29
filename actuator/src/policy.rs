//! What an actuator decides for itself about an event before anything runs: whether the
//! planner made it, whether it may run here, and whether a person must approve it first.
//!
//! Policy belongs to the actuator: the approval need, the risk and the allow-list come from
//! the catalog and this actuator's configuration. An event can ask for more caution (its
//! `approval_required`), never for less: its risk is ignored, and a signed EMERGENCY band only
//! lifts a template's "approval unless emergency" when `emergency_without_approval` is set.

use std::fmt;

use opsloop_actions::{Action, ApprovalPolicy, Executor, Template, TemplateId, seal};
use opsloop_schemas::ops::{RemediationEvent, SeverityBand};

use crate::ActuatorConfig;

/// An event refused before anything of its action is recorded as decided: its id may still
/// belong to a genuine event. Refusals are audited, counted and dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No planner signature.
    Unsigned,
    /// A signature that does not check out: altered after signing, or signed with another key.
    Altered,
    /// The id of a known action, with other content.
    ReusedId { known: String, digest: String },
    /// A decision whose signature does not check out.
    ForgedApproval { approver: String },
    /// A signed decision for other content than the action's.
    MismatchedApproval { approver: String, digest: String },
}

impl Refusal {
    /// A stable code for counters and dead-letter headers.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Unsigned => "unsigned_event",
            Refusal::Altered => "altered_event",
            Refusal::ReusedId { .. } => "reused_action_id",
            Refusal::ForgedApproval { .. } => "forged_approval",
            Refusal::MismatchedApproval { .. } => "mismatched_approval",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Unsigned => f.write_str(
                "the event carries no planner signature: only events signed with the planner's \
                 key run (set [planner] signing_key and [actuator] planner_key alike)",
            ),
            Refusal::Altered => f.write_str(
                "the event's planner signature does not check out: it was altered after \
                 signing or signed with another key",
            ),
            Refusal::ReusedId { known, digest } => write!(
                f,
                "the action id is already taken by other content (digest {} here, {} \
                 recorded): an id names one action only",
                short(digest),
                short(known)
            ),
            Refusal::ForgedApproval { approver } => write!(
                f,
                "a decision by {approver} whose signature does not check out"
            ),
            Refusal::MismatchedApproval { approver, digest } => write!(
                f,
                "a decision by {approver} for other content (digest {}) than this action's: it \
                 does not apply",
                short(digest)
            ),
        }
    }
}

/// The first characters of a digest, enough to tell two apart in a message.
fn short(digest: &str) -> &str {
    &digest[..12.min(digest.len())]
}

/// An event the planner made and this actuator may run.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    pub action: Action,
    pub spec: &'static Template,
    /// Why a person must approve it first, when one must.
    pub approval: Option<String>,
}

/// The planner key, the allow-list and the approval rules.
#[derive(Debug)]
pub struct Policy {
    planner_key: Vec<u8>,
    allowed: Vec<TemplateId>,
    require_approval: Vec<TemplateId>,
    emergency_without_approval: bool,
}

impl Policy {
    pub fn new(config: &ActuatorConfig) -> Self {
        let allowed = if config.allow.is_empty() {
            TemplateId::ALL
                .iter()
                .copied()
                .filter(|t| t.spec().executor == Executor::Postgres)
                .collect()
        } else {
            config.allow.clone()
        };
        Policy {
            planner_key: config.planner_key.as_bytes().to_vec(),
            allowed,
            require_approval: config.require_approval.clone(),
            emergency_without_approval: config.emergency_without_approval,
        }
    }

    /// Whether the planner made `event` as it is.
    pub fn authenticate(&self, event: &RemediationEvent) -> Result<(), Refusal> {
        if event.signature.is_empty() {
            Err(Refusal::Unsigned)
        } else if seal::verify_event(&self.planner_key, event) {
            Ok(())
        } else {
            Err(Refusal::Altered)
        }
    }

    /// Whether an authentic `event` may run here, and with whose approval; the reason it may
    /// not (which ends the action) otherwise.
    pub fn admit(&self, event: &RemediationEvent) -> Result<Admitted, String> {
        let template: TemplateId = event.template.parse().map_err(|e| format!("{e}"))?;
        if !self.allowed.contains(&template) {
            return Err(format!("template {template} is not on the allow-list"));
        }
        let action = Action::parse(template, &event.params).map_err(|e| e.to_string())?;
        let spec = template.spec();
        let own_rollback = spec.rollback.map(TemplateId::as_str);
        if event.rollback_template.as_deref() != own_rollback {
            return Err(format!(
                "rollback {:?} is not {template}'s own ({own_rollback:?})",
                event.rollback_template
            ));
        }
        let emergency = event.band == SeverityBand::Emergency && self.emergency_without_approval;
        let approval = match spec.approval {
            ApprovalPolicy::Always => Some(format!("{template} always needs an approval")),
            ApprovalPolicy::UnlessEmergency if !emergency => {
                Some(format!("{template} needs an approval outside an emergency"))
            }
            _ if self.require_approval.contains(&template) => {
                Some(format!("this actuator requires an approval for {template}"))
            }
            _ if event.approval_required => Some("the planner asked for an approval".to_owned()),
            _ => None,
        };
        Ok(Admitted {
            action,
            spec,
            approval,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use opsloop_schemas::ops::ParamValue;

    use super::*;

    const KEY: &str = "planner key";

    fn event(template: &str, params: &[(&str, ParamValue)]) -> RemediationEvent {
        let params = params.iter().map(|(k, v)| ((*k).to_owned(), v.clone()));
        RemediationEvent::new(
            "a.1",
            "i",
            template,
            "db-1",
            params.collect::<BTreeMap<_, _>>(),
        )
    }

    fn policy(config: ActuatorConfig) -> Policy {
        Policy::new(&ActuatorConfig {
            planner_key: KEY.to_owned(),
            ..config
        })
    }

    #[test]
    fn only_the_planners_own_events_pass() {
        let policy = policy(ActuatorConfig::default());
        let table = [("table", ParamValue::String("orders".into()))];
        let unsigned = event("pg.analyze", &table);
        assert_eq!(policy.authenticate(&unsigned), Err(Refusal::Unsigned));
        let signed = seal::sign_event(KEY.as_bytes(), unsigned.clone());
        assert_eq!(policy.authenticate(&signed), Ok(()));
        let mut altered = signed.clone();
        altered.approval_required = false;
        altered
            .params
            .insert("table".into(), ParamValue::String("customers".into()));
        assert_eq!(policy.authenticate(&altered), Err(Refusal::Altered));
        let foreign = seal::sign_event(b"a guessed key", unsigned);
        assert_eq!(policy.authenticate(&foreign), Err(Refusal::Altered));
    }

    #[test]
    fn the_catalog_and_configuration_decide_approvals_not_the_event() {
        let policy = policy(ActuatorConfig {
            require_approval: vec![TemplateId::PgVacuum],
            ..ActuatorConfig::default()
        });
        let role = [("role", ParamValue::String("alice".into()))];
        let mut terminate = event("pg.terminate_role_sessions", &role);
        terminate.approval_required = false;
        terminate.band = SeverityBand::Emergency;
        let admitted = policy.admit(&terminate).expect("allowed");
        assert!(
            admitted.approval.is_some(),
            "the catalog says always, whatever the event says"
        );

        let age = [("min_age_s", ParamValue::Long(30))];
        let mut long = event("pg.terminate_long_queries", &age);
        assert!(policy.admit(&long).expect("allowed").approval.is_some());
        long.band = SeverityBand::Emergency;
        assert!(policy.admit(&long).expect("allowed").approval.is_none());
        let strict = Policy::new(&ActuatorConfig {
            emergency_without_approval: false,
            ..ActuatorConfig::default()
        });
        assert!(strict.admit(&long).expect("allowed").approval.is_some());

        let table = [("table", ParamValue::String("orders".into()))];
        assert!(
            policy
                .admit(&event("pg.vacuum", &table))
                .expect("allowed")
                .approval
                .is_some(),
            "required here"
        );
        let mut cautious = event("pg.analyze", &table);
        assert!(policy.admit(&cautious).expect("allowed").approval.is_none());
        cautious.approval_required = true;
        assert!(
            policy.admit(&cautious).expect("allowed").approval.is_some(),
            "an event may ask for more caution"
        );
    }

    #[test]
    fn only_allow_listed_templates_with_valid_parameters_pass() {
        let policy = policy(ActuatorConfig {
            allow: vec![TemplateId::PgAnalyze],
            ..ActuatorConfig::default()
        });
        let table = |name: &str| [("table", ParamValue::String(name.to_owned()))];
        assert!(policy.admit(&event("pg.analyze", &table("orders"))).is_ok());
        let refused = policy
            .admit(&event("pg.vacuum", &table("orders")))
            .expect_err("not allowed");
        assert!(refused.contains("allow-list"), "{refused}");
        assert!(
            policy
                .admit(&event("pg.analyze", &table("orders; DROP TABLE users")))
                .is_err()
        );
        assert!(policy.admit(&event("DROP TABLE users", &[])).is_err());
        let mut wrong_rollback = event("pg.analyze", &table("orders"));
        wrong_rollback.rollback_template = Some("pg.drop_index".to_owned());
        assert!(policy.admit(&wrong_rollback).is_err());

        let defaults = Policy::new(&ActuatorConfig::default());
        assert!(
            defaults
                .admit(&event("pg.analyze", &table("orders")))
                .is_ok()
        );
        let webhook = event(
            "webhook.failover",
            &[("cluster", ParamValue::String("c1".into()))],
        );
        assert!(defaults.admit(&webhook).is_err(), "webhooks must be listed");
    }
}
