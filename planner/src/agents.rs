//! The five agents. Each reads an incident (failure type, alert types, the labels that name
//! what is affected) and proposes actions; compliance also reviews everyone's proposals and can
//! veto them or require an approval.
//!
//! Labels the agents read (set by the detectors' output columns, carried by the correlator):
//! `table_name`, `index_name`, `matview`, `usename`, `model`. Deployments and retraining DAGs
//! come from the [`AgentsConfig`], never from event content.

use std::collections::BTreeMap;
use std::fmt;

use opsloop_schemas::ops::{Incident, ParamValue, Tier};
use serde::Deserialize;

use crate::templates::{Template, is_identifier, template};

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
        }
    }
}

fn default_runaway_s() -> i64 {
    30
}

fn default_idle_s() -> i64 {
    60
}

/// One proposed action.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub agent: AgentKind,
    pub template: &'static Template,
    pub params: BTreeMap<String, ParamValue>,
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

/// A proposal of `template` (a catalog id; a bug if missing) with `params`.
fn proposal(
    agent: AgentKind,
    template_id: &str,
    params: &[(&str, ParamValue)],
    incident: &Incident,
    goal: &'static str,
    prior: (f64, f64),
    rationale: String,
) -> Option<Proposal> {
    let template = template(template_id).ok()?;
    let params: BTreeMap<String, ParamValue> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    // Labels come from telemetry: a value that is no identifier is no target.
    template.validate(&params).ok()?;
    Some(Proposal {
        agent,
        template,
        params,
        target: incident.entity.clone(),
        goal,
        prior,
        rationale,
    })
}

fn label<'a>(incident: &'a Incident, name: &str) -> Option<&'a str> {
    incident
        .labels
        .get(name)
        .map(String::as_str)
        .filter(|v| is_identifier(v))
}

fn has_type(incident: &Incident, alert_type: &str) -> bool {
    incident.alert_types.iter().any(|t| t == alert_type)
}

fn text(value: &str) -> ParamValue {
    ParamValue::String(value.to_owned())
}

/// Query performance: indexes, statistics, caches, runaway queries, connections.
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
                "pg.reindex_concurrently",
                &[("index", text(index))],
                incident,
                "index_bloat",
                (2.0, 1.0),
                format!("index {index} is bloated: rebuild it without blocking writes"),
            ));
        }
        if let Some(table) = label(incident, "table_name")
            && has_type(incident, "seq_scan_increase")
        {
            proposals.extend(proposal(
                kind,
                "pg.create_index_advised",
                &[("table", text(table))],
                incident,
                "seq_scans",
                (2.0, 1.0),
                format!(
                    "sequential scans on {table} jumped: create the index its predicates need \
                     (benefit estimated with hypothetical indexes first)"
                ),
            ));
        }
        if let Some(table) = label(incident, "table_name")
            && has_type(incident, "query_latency_increase")
            && !has_type(incident, "seq_scan_increase")
        {
            proposals.extend(proposal(
                kind,
                "pg.analyze",
                &[("table", text(table))],
                incident,
                "statistics",
                (1.0, 1.0),
                format!("queries on {table} slowed down: refresh the planner's statistics"),
            ));
        }
        if let Some(matview) = label(incident, "matview")
            && has_type(incident, "materialized_view_stale")
        {
            proposals.extend(proposal(
                kind,
                "pg.refresh_materialized_view",
                &[("matview", text(matview))],
                incident,
                "stale_view",
                (2.0, 1.0),
                format!("materialized view {matview} lags its base tables: refresh it"),
            ));
        }
        if has_type(incident, "runaway_query") {
            let age = ParamValue::Long(config.runaway_after_s);
            proposals.extend(proposal(
                kind,
                "pg.cancel_long_queries",
                &[("min_age_s", age.clone())],
                incident,
                "runaway",
                (2.0, 1.0),
                format!(
                    "queries running over {} s hold locks: cancel them",
                    config.runaway_after_s
                ),
            ));
            proposals.extend(proposal(
                kind,
                "pg.terminate_long_queries",
                &[("min_age_s", age)],
                incident,
                "runaway",
                // Ending sessions loses their clients' work: only once cancelling has failed.
                (1.0, 5.0),
                format!(
                    "queries running over {} s hold locks: end their sessions",
                    config.runaway_after_s
                ),
            ));
        }
        if has_type(incident, "connection_saturation") {
            proposals.extend(proposal(
                kind,
                "pg.terminate_idle_sessions",
                &[("min_idle_s", ParamValue::Long(config.idle_after_s))],
                incident,
                "connections",
                (1.0, 1.0),
                format!(
                    "connections are exhausted: reclaim sessions idle in a transaction over {} s",
                    config.idle_after_s
                ),
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
        proposal(
            self.kind(),
            "webhook.scale",
            &[
                ("deployment", text(deployment)),
                ("delta", ParamValue::Long(-1)),
            ],
            incident,
            "capacity",
            (1.0, 1.0),
            format!("GPUs behind {deployment} sit idle: one replica fewer saves cost"),
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
        if pressured && let Some(deployment) = config.deployments.get(&incident.entity) {
            proposals.extend(proposal(
                kind,
                "webhook.scale",
                &[
                    ("deployment", text(deployment)),
                    ("delta", ParamValue::Long(1)),
                ],
                incident,
                "capacity",
                (1.0, 1.0),
                format!(
                    "{} under pressure: one replica more for {deployment}",
                    incident.entity
                ),
            ));
        }
        if incident.failure_type == "data_drift"
            && let Some(model) = incident.labels.get("model")
        {
            let dag = config
                .retrain_dags
                .get(model)
                .cloned()
                .unwrap_or_else(|| format!("retrain_{model}"));
            proposals.extend(proposal(
                kind,
                "webhook.retrain",
                &[("dag_id", text(&dag)), ("model", text(model))],
                incident,
                "drift",
                (1.0, 1.0),
                format!("model {model}'s inputs drifted: retrain it on recent data"),
            ));
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
            "pg.terminate_role_sessions",
            &[("role", text(role))],
            incident,
            "access",
            (1.0, 1.0),
            format!("role {role} reads in an anomalous pattern: end its sessions"),
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
            } else if proposal.template.id == "webhook.failover" && incident.tier != Tier::T1 {
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
