//! Incidents through the planner: which actions, which agent, conflicts settled with a
//! recorded summary, vetoes, approvals, learning, and nothing from event content that is not
//! a plain identifier.

use std::collections::BTreeMap;

use opsloop_actions::seal;
use opsloop_planner::agents::AgentsConfig;
use opsloop_planner::{Planner, PlannerConfig};
use opsloop_schemas::ops::{
    ActionOutcome, ActionStep, Incident, IncidentState, ParamValue, RemediationEvent, SeverityBand,
    Tier,
};

fn incident(
    failure_type: &str,
    alert_types: &[&str],
    severity: f64,
    labels: &[(&str, &str)],
) -> Incident {
    Incident {
        version: 1,
        severity,
        tier: if severity >= 0.8 { Tier::T1 } else { Tier::T2 },
        opened_us: 60_000_000,
        updated_us: 90_000_000,
        deadline_us: Some(360_000_000),
        alert_ids: vec!["a".to_owned()],
        alert_types: alert_types.iter().map(|t| (*t).to_owned()).collect(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Incident::new(
            format!("inc-{failure_type}"),
            "db-1",
            failure_type,
            failure_type,
        )
    }
}

const KEY: &str = "planner key";

fn planner(agents: AgentsConfig) -> Planner {
    Planner::new(PlannerConfig {
        agents,
        signing_key: KEY.to_owned(),
        seed: 42,
        ..PlannerConfig::default()
    })
}

fn templates(events: &[RemediationEvent]) -> Vec<&str> {
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
fn a_fix_in_flight_is_planned_once_with_a_deterministic_signed_id() {
    let mut open = incident(
        "cache_stale",
        &["materialized_view_stale"],
        0.5,
        &[("matview", "feature_view")],
    );
    let mut first = planner(AgentsConfig::default());
    let events = first.plan(&open, 100);
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert!(event.action_id.ends_with(".1"), "{}", event.action_id);
    assert_eq!(event.attempt, 1);
    assert!(seal::verify_event(KEY.as_bytes(), event), "signed");
    assert!(!seal::verify_event(b"another key", event));
    // Another planner makes the same id; a later version of the incident adds nothing.
    let again = planner(AgentsConfig::default()).plan(&open, 150);
    assert_eq!(again[0].action_id, event.action_id);
    open.version = 2;
    open.state = IncidentState::Updated;
    assert!(first.plan(&open, 200).is_empty());
    assert_eq!(first.open_fixes(), 1);
    open.state = IncidentState::Resolved;
    assert!(first.plan(&open, 300).is_empty());
    assert_eq!(
        first.open_fixes(),
        0,
        "a resolved incident's fixes are forgotten"
    );
}

fn outcome(event: &RemediationEvent, step: ActionStep) -> ActionOutcome {
    ActionOutcome {
        action_id: event.action_id.clone(),
        incident_id: event.incident_id.clone(),
        step,
        template: event.template.clone(),
        target: event.target.clone(),
        time_us: 0,
        detail: String::new(),
        automated: true,
        before: BTreeMap::new(),
        after: BTreeMap::new(),
        prev_hash: String::new(),
        hash: String::new(),
        params: event.params.clone(),
        digest: seal::digest(event),
        attempt: event.attempt,
    }
}

const S: i64 = 1_000_000;

#[test]
fn a_failed_fix_is_tried_again_with_backoff_then_escalated_once() {
    let stale = incident(
        "cache_stale",
        &["materialized_view_stale"],
        0.5,
        &[("matview", "feature_view")],
    );
    let mut planner = planner(AgentsConfig::default());
    let mut event = planner.plan(&stale, 0).remove(0);
    let mut ended_at = 10 * S;
    for attempt in 1..=3 {
        assert_eq!(event.attempt, attempt);
        assert!(!event.approval_required);
        planner.observe(&outcome(&event, ActionStep::Executed), ended_at - S);
        planner.observe(&outcome(&event, ActionStep::Failed), ended_at);
        let backoff = 60 * S * (1 << (attempt - 1));
        assert!(
            planner.due(ended_at + backoff - 1).events.is_empty(),
            "attempt {attempt}: not before its backoff"
        );
        let retries = planner.due(ended_at + backoff);
        assert_eq!(retries.events.len(), 1, "attempt {attempt}");
        let next = retries.events[0].clone();
        assert!(seal::verify_event(KEY.as_bytes(), &next));
        assert_ne!(
            next.action_id, event.action_id,
            "every attempt has its own id"
        );
        if attempt < 3 {
            assert!(retries.escalations.is_empty());
        } else {
            // The cap: the fourth attempt needs an approval and the incident escalates.
            assert!(next.approval_required, "{next:?}");
            assert!(
                next.rationale.starts_with("escalated"),
                "{}",
                next.rationale
            );
            assert_eq!(retries.escalations.len(), 1);
            assert_eq!(retries.escalations[0].incident_id, stale.incident_id);
        }
        event = next;
        ended_at += backoff + 10 * S;
    }
    assert!(event.action_id.ends_with(".4"), "{}", event.action_id);
    planner.observe(&outcome(&event, ActionStep::Failed), ended_at);
    assert!(
        planner.due(ended_at + 3_600 * S).events.is_empty(),
        "nothing after the escalated attempt"
    );
    assert_eq!(
        planner
            .learner()
            .record_of("cache_stale", "pg.refresh_materialized_view")
            .failures,
        4
    );
}

#[test]
fn a_verified_fix_is_tried_again_only_when_the_fault_returns() {
    let mut stale = incident(
        "cache_stale",
        &["materialized_view_stale"],
        0.5,
        &[("matview", "feature_view")],
    );
    let mut planner = planner(AgentsConfig::default());
    let first = planner.plan(&stale, 0).remove(0);
    planner.observe(&outcome(&first, ActionStep::Verified), 60 * S);
    assert!(planner.due(3_600 * S).events.is_empty(), "it held");
    // A version that only carries the verdict, or an update with the condition still clear,
    // changes nothing.
    stale.version = 3;
    stale.state = IncidentState::Updated;
    stale.updated_us = 120 * S;
    stale.action_id = Some(first.action_id.clone());
    stale.recovered_us = Some(90 * S);
    assert!(planner.plan(&stale, 120 * S).is_empty());
    assert!(planner.due(3_600 * S).events.is_empty());
    // The correlator's recurrence version: the alerts are back after the clear windows.
    stale.version = 4;
    stale.recurred_us = Some(150 * S);
    assert!(planner.plan(&stale, 200 * S).is_empty());
    let retries = planner.due(3_600 * S);
    assert_eq!(retries.events.len(), 1);
    assert_eq!(retries.events[0].attempt, 2);
    assert_eq!(retries.events[0].template, "pg.refresh_materialized_view");
    assert_eq!(
        planner
            .learner()
            .record_of("cache_stale", "pg.refresh_materialized_view")
            .successes,
        1
    );
}

#[test]
fn a_rejected_fix_ends_and_the_state_survives_a_restart() {
    let runaway = incident("runaway_query", &["runaway_query"], 0.6, &[]);
    let mut planner = planner(AgentsConfig::default());
    let event = planner.plan(&runaway, 0).remove(0);
    let restored = Planner::restore(planner.config().clone(), &planner.snapshot().expect("save"))
        .expect("restore");
    assert_eq!(restored.open_fixes(), 1);
    planner.observe(&outcome(&event, ActionStep::Rejected), 10 * S);
    assert!(planner.due(3_600 * S).events.is_empty());
    assert!(Planner::restore(PlannerConfig::default(), b"{broken").is_err());
}

#[test]
fn opposite_scaling_is_settled_by_band_and_the_decision_recorded() {
    let agents = AgentsConfig {
        deployments: BTreeMap::from([("db-1".to_owned(), "feature_api".to_owned())]),
        ..AgentsConfig::default()
    };
    let alert_types = ["cpu_utilization_high", "gpu_utilization_low"];
    // One incident per band (a fix in flight is planned once per incident).
    let contention = |severity: f64| {
        let mut incident = incident("resource_contention", &alert_types, severity, &[]);
        incident.incident_id = format!("inc-contention-{severity}");
        incident
    };
    // Corrective (0.7): reliability protects the service, cost loses.
    let mut planner = planner(agents.clone());
    let events = planner.plan(&contention(0.7), 100);
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
    let events = planner.plan(&contention(0.3), 100);
    assert_eq!(events[0].agent, "cost");
    assert_eq!(events[0].params["delta"], ParamValue::Long(-1));
    // Emergency (0.9): reliability, and no approval needed.
    let events = planner.plan(&contention(0.9), 100);
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
        learner.record("runaway_query", "pg.cancel_long_queries", false);
        learner.record("runaway_query", "pg.terminate_long_queries", true);
    }
    let fresh = |i: i64| {
        let mut incident = runaway.clone();
        incident.incident_id = format!("inc-runaway-{i}");
        incident
    };
    let chosen: Vec<RemediationEvent> = (0..20)
        .map(|i| planner.plan(&fresh(i), i).remove(0))
        .collect();
    assert!(
        chosen
            .iter()
            .all(|e| e.template == "pg.terminate_long_queries"),
        "{:?}",
        templates(&chosen)
    );
    // Terminating sessions needs approval unless the incident is an emergency.
    assert!(chosen[0].approval_required);
}

#[test]
fn lock_blockers_are_ended_not_their_victims() {
    let mut planner = planner(AgentsConfig::default());
    let blocked = incident(
        "lock_contention",
        &["lock_blocker", "runaway_query"],
        0.85,
        &[],
    );
    let events = planner.plan(&blocked, 0);
    let blockers: Vec<&RemediationEvent> = events
        .iter()
        .filter(|e| e.template == "pg.terminate_blockers")
        .collect();
    assert_eq!(blockers.len(), 1, "{:?}", templates(&events));
    assert_eq!(blockers[0].params["min_idle_s"], ParamValue::Long(30));
    assert!(!blockers[0].approval_required);
}

#[test]
fn exhausted_connections_reclaim_idle_sessions_then_ask_for_capacity() {
    let mut planner = planner(AgentsConfig::default());
    let saturated = incident("resource_exhaustion", &["connection_saturation"], 0.9, &[]);
    let events = planner.plan(&saturated, 100);
    assert_eq!(templates(&events), ["pg.terminate_idle_sessions"]);

    // The sessions were reclaimed and the saturation came back: a pooler or more connections
    // are needed, and nothing here can scale.
    let recurred = Incident {
        version: 3,
        action_id: Some(events[0].action_id.clone()),
        recurred_us: Some(400_000_000),
        updated_us: 400_000_000,
        ..saturated
    };
    let events = planner.plan(&recurred, 400);
    let requests: Vec<&RemediationEvent> = events
        .iter()
        .filter(|e| e.template == "webhook.capacity_plan")
        .collect();
    assert_eq!(requests.len(), 1, "{:?}", templates(&events));
    assert_eq!(
        requests[0].params["resource"],
        ParamValue::String("connections".into())
    );
}
