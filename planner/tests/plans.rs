//! Incidents through the planner: which actions, which agent, conflicts settled with a
//! recorded summary, vetoes, approvals, learning, and nothing from event content that is not
//! a plain identifier.

use std::collections::BTreeMap;

use opsloop_planner::agents::AgentsConfig;
use opsloop_planner::learning::Learner;
use opsloop_planner::{Planner, PlannerConfig};
use opsloop_schemas::ops::{Incident, IncidentState, ParamValue, SeverityBand, Tier};

fn incident(
    failure_type: &str,
    alert_types: &[&str],
    severity: f64,
    labels: &[(&str, &str)],
) -> Incident {
    Incident {
        incident_id: format!("inc-{failure_type}"),
        version: 1,
        entity: "db-1".to_owned(),
        pattern: failure_type.to_owned(),
        failure_type: failure_type.to_owned(),
        severity,
        tier: if severity >= 0.8 { Tier::T1 } else { Tier::T2 },
        state: IncidentState::Open,
        opened_us: 60_000_000,
        updated_us: 90_000_000,
        deadline_us: Some(360_000_000),
        resolved_us: None,
        alert_ids: vec!["a".to_owned()],
        alert_types: alert_types.iter().map(|t| (*t).to_owned()).collect(),
        hypotheses: Vec::new(),
        model_version: None,
        feature_set: Vec::new(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

fn planner(agents: AgentsConfig) -> Planner {
    Planner::new(PlannerConfig { agents }, Learner::new(42))
}

fn templates(events: &[opsloop_schemas::ops::RemediationEvent]) -> Vec<&str> {
    events.iter().map(|e| e.template.as_str()).collect()
}

#[test]
fn a_bloated_index_is_rebuilt_and_a_stale_view_refreshed() {
    let mut planner = planner(AgentsConfig::default());
    let bloat = incident(
        "index_degradation",
        &["index_bloat_high", "query_latency_increase"],
        0.6,
        &[
            ("index_name", "orders_customer_idx"),
            ("table_name", "orders"),
        ],
    );
    let events = planner.plan(&bloat, 100);
    // The bloated index is rebuilt; the slower queries on its table also get fresh statistics.
    assert_eq!(
        templates(&events),
        ["pg.reindex_concurrently", "pg.analyze"]
    );
    let event = &events[0];
    assert_eq!(
        event.params["index"],
        ParamValue::String("orders_customer_idx".into())
    );
    assert_eq!(event.band, SeverityBand::Corrective);
    assert_eq!(event.agent, "performance");
    assert!(!event.approval_required);
    assert_eq!(event.deadline_us, Some(360_000_000));
    assert_eq!(event.target, "db-1");

    let stale = incident(
        "cache_stale",
        &["materialized_view_stale"],
        0.5,
        &[("matview", "feature_view")],
    );
    let events = planner.plan(&stale, 100);
    assert_eq!(templates(&events), ["pg.refresh_materialized_view"]);
}

#[test]
fn replanning_a_later_version_yields_the_same_action_ids_and_resolved_ones_nothing() {
    let mut planner = planner(AgentsConfig::default());
    let mut open = incident(
        "cache_stale",
        &["materialized_view_stale"],
        0.5,
        &[("matview", "feature_view")],
    );
    let first = planner.plan(&open, 100);
    open.version = 2;
    open.state = IncidentState::Updated;
    let second = planner.plan(&open, 200);
    assert_eq!(first[0].action_id, second[0].action_id);
    open.state = IncidentState::Resolved;
    assert!(planner.plan(&open, 300).is_empty());
}

#[test]
fn opposite_scaling_is_settled_by_band_and_the_decision_recorded() {
    let agents = AgentsConfig {
        deployments: BTreeMap::from([("db-1".to_owned(), "feature_api".to_owned())]),
        ..AgentsConfig::default()
    };
    let alert_types = ["cpu_utilization_high", "gpu_utilization_low"];
    // Corrective (0.7): reliability protects the service, cost loses.
    let mut planner = planner(agents.clone());
    let events = planner.plan(
        &incident("resource_contention", &alert_types, 0.7, &[]),
        100,
    );
    assert_eq!(templates(&events), ["webhook.scale"]);
    assert_eq!(events[0].agent, "reliability");
    assert_eq!(events[0].params["delta"], ParamValue::Long(1));
    assert!(
        events[0].approval_required,
        "scaling needs approval unless emergency"
    );
    assert!(
        events[0].rationale.contains(
            "cost wanted -1 and reliability +1 replicas: reliability wins in the Corrective band"
        ),
        "{}",
        events[0].rationale
    );
    // Preventive (0.3): cost wins.
    let events = planner.plan(
        &incident("resource_contention", &alert_types, 0.3, &[]),
        100,
    );
    assert_eq!(events[0].agent, "cost");
    assert_eq!(events[0].params["delta"], ParamValue::Long(-1));
    // Emergency (0.9): reliability, and no approval needed.
    let events = planner.plan(
        &incident("resource_contention", &alert_types, 0.9, &[]),
        100,
    );
    assert_eq!(
        (events[0].agent.as_str(), events[0].approval_required),
        ("reliability", false)
    );
}

#[test]
fn compliance_vetoes_frozen_entities_and_gates_regulated_ones() {
    let stale = incident(
        "cache_stale",
        &["materialized_view_stale"],
        0.5,
        &[("matview", "feature_view")],
    );
    let mut frozen = planner(AgentsConfig {
        frozen_entities: vec!["db-1".to_owned()],
        ..AgentsConfig::default()
    });
    assert!(frozen.plan(&stale, 100).is_empty());
    let mut regulated = planner(AgentsConfig {
        regulated_entities: vec!["db-1".to_owned()],
        ..AgentsConfig::default()
    });
    let events = regulated.plan(&stale, 100);
    assert!(events[0].approval_required);
    assert!(
        events[0].rationale.contains("db-1 holds regulated data"),
        "{}",
        events[0].rationale
    );
}

#[test]
fn labels_that_are_not_identifiers_never_become_parameters() {
    let mut planner = planner(AgentsConfig::default());
    let injected = incident(
        "index_degradation",
        &["index_bloat_high"],
        0.9,
        &[("index_name", "x; DROP TABLE users")],
    );
    assert!(planner.plan(&injected, 100).is_empty());
}

#[test]
fn learning_moves_the_choice_between_alternatives() {
    let runaway = incident("runaway_query", &["runaway_query"], 0.6, &[]);
    let mut planner = planner(AgentsConfig::default());
    let events = planner.plan(&runaway, 100);
    assert_eq!(
        events.len(),
        1,
        "one of the two alternatives: {:?}",
        templates(&events)
    );
    assert!(
        events[0].rationale.contains("for runaway chose"),
        "{}",
        events[0].rationale
    );
    // Cancelling keeps failing, terminating keeps working: terminate is chosen.
    for _ in 0..30 {
        let learner = planner.learner_mut();
        learner
            .record("runaway_query", "pg.cancel_long_queries", false)
            .expect("record");
        learner
            .record("runaway_query", "pg.terminate_long_queries", true)
            .expect("record");
    }
    let chosen: Vec<String> = (0..20)
        .map(|i| planner.plan(&runaway, i)[0].template.clone())
        .collect();
    assert!(
        chosen.iter().all(|t| t == "pg.terminate_long_queries"),
        "{chosen:?}"
    );
    // Terminating sessions needs approval unless the incident is an emergency.
    assert!(planner.plan(&runaway, 0)[0].approval_required);
}
