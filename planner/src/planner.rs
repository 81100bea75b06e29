//! [`Planner`]: an incident version in, remediation events out.
//!
//! Every agent proposes, compliance reviews, the resolver settles; each accepted proposal
//! becomes one [`RemediationEvent`] with the incident's severity band and deadline, the
//! template's risk, rollback and approval need, and a rationale that ends with the
//! resolution summary. Action ids are deterministic (incident, template, target, parameters),
//! so planning every version of an incident again yields the same events and the actuators,
//! idempotent by action id, act once.

use std::collections::BTreeMap;

use opsloop_schemas::ids::stable_id;
use opsloop_schemas::ops::{
    Incident, IncidentState, ParamValue, RemediationEvent, RemediationKind, SeverityBand,
};
use serde::Deserialize;

use crate::agents::{Agent, AgentsConfig, all_agents};
use crate::learning::Learner;
use crate::resolver::resolve;
use crate::templates::ApprovalPolicy;

/// `[planner]`: what the agents may act on.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannerConfig {
    #[serde(default)]
    pub agents: AgentsConfig,
}

/// Plans remediation for incidents.
#[derive(Debug)]
pub struct Planner {
    config: PlannerConfig,
    agents: Vec<Box<dyn Agent>>,
    learner: Learner,
}

impl Planner {
    pub fn new(config: PlannerConfig, learner: Learner) -> Self {
        Planner {
            config,
            agents: all_agents(),
            learner,
        }
    }

    pub fn learner(&self) -> &Learner {
        &self.learner
    }

    pub fn learner_mut(&mut self) -> &mut Learner {
        &mut self.learner
    }

    /// The remediation events for `incident`, planned at `now_us`; none for a resolved one.
    pub fn plan(&mut self, incident: &Incident, now_us: i64) -> Vec<RemediationEvent> {
        if incident.state == IncidentState::Resolved {
            return Vec::new();
        }
        let mut proposals = Vec::new();
        for agent in &self.agents {
            proposals.extend(agent.propose(incident, &self.config.agents));
        }
        let mut reviews = Vec::new();
        for agent in &self.agents {
            reviews.extend(agent.review(incident, &proposals, &self.config.agents));
        }
        let resolution = resolve(incident, proposals, &reviews, &mut self.learner);
        let band = SeverityBand::of(incident.severity);
        resolution
            .accepted
            .into_iter()
            .map(|accepted| {
                let proposal = accepted.proposal;
                let template = proposal.template;
                let by_policy = match template.approval {
                    ApprovalPolicy::Never => false,
                    ApprovalPolicy::UnlessEmergency => band != SeverityBand::Emergency,
                    ApprovalPolicy::Always => true,
                };
                let mut rationale = proposal.rationale.clone();
                if let Some(reason) = &accepted.approval_reason {
                    rationale.push_str(&format!("; approval required: {reason}"));
                }
                if !resolution.summary.is_empty() {
                    rationale.push_str(&format!(" [resolution: {}]", resolution.summary));
                }
                RemediationEvent {
                    action_id: action_id(
                        &incident.incident_id,
                        template.id,
                        &proposal.target,
                        &proposal.params,
                    ),
                    incident_id: incident.incident_id.clone(),
                    kind: RemediationKind::Reactive,
                    band,
                    template: template.id.to_owned(),
                    params: proposal.params,
                    target: proposal.target,
                    risk: template.risk,
                    approval_required: by_policy || accepted.approval_reason.is_some(),
                    rollback_template: template.rollback.map(str::to_owned),
                    agent: proposal.agent.to_string(),
                    rationale,
                    created_us: now_us,
                    deadline_us: incident.deadline_us,
                }
            })
            .collect()
    }
}

fn action_id(
    incident_id: &str,
    template: &str,
    target: &str,
    params: &BTreeMap<String, ParamValue>,
) -> String {
    let params = serde_json::to_string(params).unwrap_or_default();
    stable_id(&[
        incident_id.as_bytes(),
        template.as_bytes(),
        target.as_bytes(),
        params.as_bytes(),
    ])
}
