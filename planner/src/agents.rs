//! The five agents. Each reads an incident (failure type, alert types, the labels that name
//! what is affected) and proposes actions; compliance also reviews everyone's proposals and can
//! veto them or require an approval.
//!
//! Labels the agents read (set by the detectors' output columns, carried by the correlator):
//! `table_name`, `index_name`, `matview`, `usename`, `model`; an alert type names what is wrong
//! (`lock_blocker`, `runaway_query`, ...). Deployments and retraining DAGs
//! come from the [`AgentsConfig`], never from event content.

use std::collections::BTreeMap;
use std::fmt;

use opsloop_actions::{Action, Identifier, TemplateId};
use opsloop_schemas::ops::{Incident, Tier};
use serde::Deserialize;

/// Which agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AgentKind {
    Performance,
    Cost,
    Reliability,
    Security,
    Compliance,
}

impl fmt::Display for AgentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            AgentKind::Performance => "performance",
            AgentKind::Cost => "cost",
            AgentKind::Reliability => "reliability",
            AgentKind::Security => "security",
            AgentKind::Compliance => "compliance",
        };
        f.write_str(name)
    }
}

/// What the agents may act on, from configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsConfig {
    /// Entities under a change freeze: compliance vetoes every action on them.
    #[serde(default)]
    pub frozen_entities: Vec<String>,
    /// Entities holding regulated data: every action on them needs an approval.
    #[serde(default)]
    pub regulated_entities: Vec<String>,
    /// The deployment serving each entity (for scaling requests).
    #[serde(default)]
    pub deployments: BTreeMap<String, String>,
    /// The retraining DAG of each model (default `retrain_<model>`).
    #[serde(default)]
    pub retrain_dags: BTreeMap<String, String>,
    /// Queries running longer than this are runaway (seconds; default 30).
    #[serde(default = "default_runaway_s")]
    pub runaway_after_s: i64,
    /// Sessions idle in a transaction longer than this are reclaimed (seconds; default 60).
    #[serde(default = "default_idle_s")]
    pub idle_after_s: i64,
    /// Sessions that hold locks others wait for, idle in a transaction longer than this, are
    /// ended (seconds; default 30, what `sql/pg_lock_blocker.sql` fires on).
    #[serde(default = "default_blocker_idle_s")]
    pub blocker_idle_after_s: i64,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        AgentsConfig {
            frozen_entities: Vec::new(),
            regulated_entities: Vec::new(),
            deployments: BTreeMap::new(),
            retrain_dags: BTreeMap::new(),
            runaway_after_s: default_runaway_s(),
            idle_after_s: default_idle_s(),
            blocker_idle_after_s: default_blocker_idle_s(),
        }
    }
}

fn default_runaway_s() -> i64 {
    30
}

fn default_idle_s() -> i64 {
    60
}

fn default_blocker_idle_s() -> i64 {
    30
}

/// One proposed action.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub agent: AgentKind,
    pub action: Action,
    pub target: String,
    /// What the action is for; proposals of one agent with one goal are alternatives, of
    /// which the learner picks one.
    pub goal: &'static str,
    /// Prior belief in its success (pseudo-counts of successes and failures).
    pub prior: (f64, f64),
    pub rationale: String,
}

/// A reviewer's verdict on one proposal (by index).
#[derive(Debug, Clone, PartialEq)]
pub enum Review {
    Veto { proposal: usize, reason: String },
    RequireApproval { proposal: usize, reason: String },
}

/// An agent.
pub trait Agent: fmt::Debug + Send {
    fn kind(&self) -> AgentKind;
    fn propose(&self, incident: &Incident, config: &AgentsConfig) -> Vec<Proposal>;
    /// Verdicts on all agents' proposals; most agents have none.
    fn review(
        &self,
        _incident: &Incident,
        _proposals: &[Proposal],
        _config: &AgentsConfig,
    ) -> Vec<Review> {
        Vec::new()
    }
}

/// The five agents, in the order they propose.
pub fn all_agents() -> Vec<Box<dyn Agent>> {
    vec![
        Box::new(PerformanceAgent),
        Box::new(CostAgent),
        Box::new(ReliabilityAgent),
        Box::new(SecurityAgent),
        Box::new(ComplianceAgent),
    ]
}

/// A proposal of `action` on the incident's entity, if its parameters pass the template's
/// validation (free text within bounds).
fn proposal(
    agent: AgentKind,
    rationale: String,
    action: Action,
    incident: &Incident,
    goal: &'static str,
    prior: (f64, f64),
) -> Option<Proposal> {
    action.validate().ok()?;
    Some(Proposal {
        agent,
        action,
        target: incident.entity.clone(),
        goal,
        prior,
        rationale,
    })
}

/// A label naming what to act on; labels come from telemetry, and a value that is no plain
/// identifier is no target.
fn label(incident: &Incident, name: &str) -> Option<Identifier> {
    incident
        .labels
        .get(name)
        .and_then(|value| Identifier::new(value.as_str()).ok())
}

fn has_type(incident: &Incident, alert_type: &str) -> bool {
    incident.alert_types.iter().any(|t| t == alert_type)
}

/// Query performance: indexes, statistics, caches, runaway queries, lock blockers,
/// connections.
#[derive(Debug)]
pub struct PerformanceAgent;

impl Agent for PerformanceAgent {
    fn kind(&self) -> AgentKind {
        AgentKind::Performance
    }

    fn propose(&self, incident: &Incident, config: &AgentsConfig) -> Vec<Proposal> {
        let kind = self.kind();
        let mut proposals = Vec::new();
        if let Some(index) = label(incident, "index_name")
            && has_type(incident, "index_bloat_high")
        {
            proposals.extend(proposal(
                kind,
                format!("index {index} is bloated: rebuild it without blocking writes"),
                Action::ReindexConcurrently { index },
                incident,
                "index_bloat",
                (2.0, 1.0),
            ));
        }
        if let Some(table) = label(incident, "table_name")
            && has_type(incident, "seq_scan_increase")
        {
            proposals.extend(proposal(
                kind,
                format!(
                    "sequential scans on {table} jumped: create the index its predicates need \
                     (benefit estimated with hypothetical indexes first)"
                ),
                Action::CreateIndexAdvised { table },
                incident,
                "seq_scans",
                (2.0, 1.0),
            ));
        }
        if let Some(table) = label(incident, "table_name")
            && has_type(incident, "query_latency_increase")
            && !has_type(incident, "seq_scan_increase")
        {
            proposals.extend(proposal(
                kind,
                format!("queries on {table} slowed down: refresh the planner's statistics"),
                Action::Analyze { table },
                incident,
                "statistics",
                (1.0, 1.0),
            ));
        }
        if let Some(matview) = label(incident, "matview")
            && has_type(incident, "materialized_view_stale")
        {
            proposals.extend(proposal(
                kind,
                format!("materialized view {matview} lags its base tables: refresh it"),
                Action::RefreshMaterializedView { matview },
                incident,
                "stale_view",
                (2.0, 1.0),
            ));
        }
        if has_type(incident, "runaway_query") {
            let min_age_s = config.runaway_after_s;
            proposals.extend(proposal(
                kind,
                format!("queries running over {min_age_s} s hold resources: cancel them"),
                Action::CancelLongQueries { min_age_s },
                incident,
                "runaway",
                (2.0, 1.0),
            ));
            proposals.extend(proposal(
                kind,
                format!("queries running over {min_age_s} s hold resources: end their sessions"),
                Action::TerminateLongQueries { min_age_s },
                incident,
                "runaway",
                // Ending sessions loses their clients' work: only once cancelling has failed.
                (1.0, 5.0),
            ));
        }
        if has_type(incident, "lock_blocker") {
            let min_idle_s = config.blocker_idle_after_s;
            proposals.extend(proposal(
                kind,
                format!(
                    "sessions idle in a transaction for over {min_idle_s} s hold locks others \
                     wait for: end the blockers, not the sessions waiting on them"
                ),
                Action::TerminateBlockers { min_idle_s },
                incident,
                "lock_blockers",
                (2.0, 1.0),
            ));
        }
        if has_type(incident, "connection_saturation") {
            let min_idle_s = config.idle_after_s;
            proposals.extend(proposal(
                kind,
                format!(
                    "connections are exhausted: reclaim the client sessions idle (or idle in \
                     a transaction) over {min_idle_s} s"
                ),
                Action::TerminateIdleSessions { min_idle_s },
                incident,
                "connections",
                (1.0, 1.0),
            ));
        }
        proposals
    }
}

/// Spend: scale down what sits idle.
#[derive(Debug)]
pub struct CostAgent;

impl Agent for CostAgent {
    fn kind(&self) -> AgentKind {
        AgentKind::Cost
    }

    fn propose(&self, incident: &Incident, config: &AgentsConfig) -> Vec<Proposal> {
        let Some(deployment) = config.deployments.get(&incident.entity) else {
            return Vec::new();
        };
        if !has_type(incident, "gpu_utilization_low") {
            return Vec::new();
        }
        let Ok(name) = Identifier::new(deployment.as_str()) else {
            return Vec::new();
        };
        proposal(
            self.kind(),
            format!("GPUs behind {deployment} sit idle: one replica fewer saves cost"),
            Action::Scale {
                deployment: name,
                delta: -1,
            },
            incident,
            "capacity",
            (1.0, 1.0),
        )
        .into_iter()
        .collect()
    }
}

/// Availability: capacity under pressure, models that drifted.
#[derive(Debug)]
pub struct ReliabilityAgent;

impl Agent for ReliabilityAgent {
    fn kind(&self) -> AgentKind {
        AgentKind::Reliability
    }

    fn propose(&self, incident: &Incident, config: &AgentsConfig) -> Vec<Proposal> {
        let kind = self.kind();
        let mut proposals = Vec::new();
        let pressured = matches!(
            incident.failure_type.as_str(),
            "resource_exhaustion" | "resource_contention"
        );
        let deployment = config
            .deployments
            .get(&incident.entity)
            .and_then(|deployment| Identifier::new(deployment.as_str()).ok());
        match deployment {
            Some(deployment) if pressured => {
                proposals.extend(proposal(
                    kind,
                    format!(
                        "{} under pressure: one replica more for {deployment}",
                        incident.entity
                    ),
                    Action::Scale {
                        deployment,
                        delta: 1,
                    },
                    incident,
                    "capacity",
                    (1.0, 1.0),
                ));
            }
            // Nothing to scale here, and the fix in hand (reclaiming idle sessions) did not
            // hold: ask the people who can add a pooler or capacity.
            None if has_type(incident, "connection_saturation")
                && incident.recurred_us.is_some() =>
            {
                proposals.extend(proposal(
                    kind,
                    format!(
                        "{} refuses connections soon and has no deployment to scale: request \
                         a connection pooler or more connections",
                        incident.entity
                    ),
                    Action::CapacityPlan {
                        resource: "connections".to_owned(),
                        days: 1,
                    },
                    incident,
                    "capacity",
                    (1.0, 1.0),
                ));
            }
            _ => {}
        }
        if incident.failure_type == "data_drift"
            && let Some(model) = incident.labels.get("model")
        {
            let dag = config
                .retrain_dags
                .get(model)
                .cloned()
                .unwrap_or_else(|| format!("retrain_{model}"));
            if let Ok(dag_id) = Identifier::new(dag) {
                proposals.extend(proposal(
                    kind,
                    format!("model {model}'s inputs drifted: retrain it on recent data"),
                    Action::Retrain {
                        dag_id,
                        model: model.clone(),
                    },
                    incident,
                    "drift",
                    (1.0, 1.0),
                ));
            }
        }
        proposals
    }
}

/// Security: cut off a misused account.
#[derive(Debug)]
pub struct SecurityAgent;

impl Agent for SecurityAgent {
    fn kind(&self) -> AgentKind {
        AgentKind::Security
    }

    fn propose(&self, incident: &Incident, _config: &AgentsConfig) -> Vec<Proposal> {
        if incident.failure_type != "security_anomaly" {
            return Vec::new();
        }
        let Some(role) = label(incident, "usename") else {
            return Vec::new();
        };
        proposal(
            self.kind(),
            format!("role {role} reads in an anomalous pattern: end its sessions"),
            Action::TerminateRoleSessions { role },
            incident,
            "access",
            (1.0, 1.0),
        )
        .into_iter()
        .collect()
    }
}

/// Compliance: change freezes, regulated data, failovers only for critical incidents.
#[derive(Debug)]
pub struct ComplianceAgent;

impl Agent for ComplianceAgent {
    fn kind(&self) -> AgentKind {
        AgentKind::Compliance
    }

    fn propose(&self, _incident: &Incident, _config: &AgentsConfig) -> Vec<Proposal> {
        Vec::new()
    }

    fn review(
        &self,
        incident: &Incident,
        proposals: &[Proposal],
        config: &AgentsConfig,
    ) -> Vec<Review> {
        let mut reviews = Vec::new();
        for (index, proposal) in proposals.iter().enumerate() {
            if config.frozen_entities.contains(&proposal.target) {
                reviews.push(Review::Veto {
                    proposal: index,
                    reason: format!("{} is under a change freeze", proposal.target),
                });
            } else if proposal.action.template() == TemplateId::WebhookFailover
                && incident.tier != Tier::T1
            {
                reviews.push(Review::Veto {
                    proposal: index,
                    reason: "a failover needs a T1 incident".to_owned(),
                });
            } else if config.regulated_entities.contains(&proposal.target) {
                reviews.push(Review::RequireApproval {
                    proposal: index,
                    reason: format!("{} holds regulated data", proposal.target),
                });
            }
        }
        reviews
    }
}
