//! Timed alert sequences through the correlator, asserting the exact incidents, tiers,
//! patterns, hypothesis order and lifecycle transitions.

use std::collections::BTreeMap;

use opsloop_correlator::{Correlator, CorrelatorConfig, DEFAULT_CORRELATOR_CONFIG, Emitted};
use opsloop_schemas::ops::{Alert, Incident, IncidentState, Tier};

const S: i64 = 1_000_000;

fn alert(alert_type: &str, entity: &str, start_s: i64, end_s: i64, severity: f64) -> Alert {
    Alert {
        alert_id: format!("{alert_type}/{entity}/{start_s}"),
        entity: entity.to_owned(),
        detector: format!("{alert_type}_detector"),
        alert_type: alert_type.to_owned(),
        score: 1.0,
        severity,
        window_start_us: start_s * S,
        window_end_us: end_s * S,
        evidence: BTreeMap::from([("p99".to_owned(), 300.0)]),
        labels: BTreeMap::new(),
        emitted_us: 0,
    }
}

fn with_labels(mut alert: Alert, labels: &[(&str, &str)]) -> Alert {
    for (key, value) in labels {
        alert.labels.insert((*key).to_owned(), (*value).to_owned());
    }
    alert
}

fn correlator(overrides: &str) -> Correlator {
    let mut text = String::new();
    // Top-level keys must come before the tables of the defaults.
    text.push_str(overrides);
    text.push('\n');
    for line in DEFAULT_CORRELATOR_CONFIG.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        if !key.is_empty()
            && overrides
                .lines()
                .any(|o| o.split('=').next().map(str::trim) == Some(key))
        {
            continue;
        }
        text.push_str(line);
        text.push('\n');
    }
    Correlator::new(CorrelatorConfig::from_toml(&text).expect("config")).expect("correlator")
}

fn run(correlator: &mut Correlator, alerts: &[Alert], until_s: i64) -> Emitted {
    for alert in alerts {
        correlator.observe(alert);
    }
    correlator.advance(until_s * S)
}

fn transitions(versions: &[Incident]) -> Vec<(String, i64, IncidentState, i64)> {
    versions
        .iter()
        .map(|v| (v.incident_id.clone(), v.version, v.state, v.updated_us / S))
        .collect()
}

fn drift_alerts() -> Vec<Alert> {
    let labels = [("model", "ranker"), ("cluster", "eu-1")];
    vec![
        with_labels(
            alert("data_drift_score_high", "fs-db", 0, 60, 0.6),
            &[
                ("model", "ranker"),
                ("cluster", "eu-1"),
                ("model_version", "v7"),
                ("feature", "user_age"),
            ],
        ),
        with_labels(
            alert("query_latency_increase", "fs-db", 20, 80, 0.5),
            &labels,
        ),
        with_labels(
            alert("model_performance_drop", "fs-db", 30, 90, 0.7),
            &[
                ("model", "ranker"),
                ("cluster", "eu-1"),
                ("model_version", "v7"),
            ],
        ),
    ]
}

#[test]
fn data_drift_pattern_opens_one_incident_with_ranked_hypotheses_then_resolves() {
    let mut correlator = correlator("");
    let opened = run(&mut correlator, &drift_alerts(), 90);
    assert_eq!(opened.versions.len(), 1, "{:#?}", opened.versions);
    let incident = &opened.versions[0];
    assert_eq!(incident.pattern, "data_drift_incident");
    assert_eq!(incident.failure_type, "data_drift");
    assert_eq!(incident.state, IncidentState::Open);
    assert_eq!(incident.version, 1);
    assert_eq!(incident.entity, "fs-db");
    // Noisy-OR of 0.6, 0.5, 0.7: 1 - 0.4 * 0.5 * 0.3 = 0.94 -> T1, act within 5 min of opening.
    assert!(
        (incident.severity - 0.94).abs() < 1e-12,
        "{}",
        incident.severity
    );
    assert_eq!(incident.tier, Tier::T1);
    assert_eq!(incident.opened_us, 60 * S, "the first alert's window end");
    assert_eq!(
        incident.updated_us,
        90 * S,
        "group_wait after the first alert's window end"
    );
    assert_eq!(incident.deadline_us, Some((60 + 300) * S));
    assert_eq!(
        incident.alert_ids,
        [
            "data_drift_score_high/fs-db/0",
            "query_latency_increase/fs-db/20",
            "model_performance_drop/fs-db/30"
        ]
    );
    assert_eq!(incident.model_version.as_deref(), Some("v7"));
    assert_eq!(incident.feature_set, ["user_age"]);
    // The group's labels, then the members' (first seen wins).
    assert_eq!(
        incident.labels,
        BTreeMap::from([
            ("cluster".to_owned(), "eu-1".to_owned()),
            ("feature".to_owned(), "user_age".to_owned()),
            ("model".to_owned(), "ranker".to_owned()),
            ("model_version".to_owned(), "v7".to_owned()),
        ])
    );
    // Onset order drift, latency, performance; drift is also the pattern's known cause.
    // Scores 0.5 + 0.2, 0.5 * 2/3, 0.5 * 1/3 (no lead-lag: one window each, same step).
    let causes: Vec<&str> = incident
        .hypotheses
        .iter()
        .map(|h| h.cause.as_str())
        .collect();
    assert!(
        causes[0].starts_with("The model's input data drifted"),
        "{causes:?}"
    );
    assert!(
        causes[1].starts_with("query_latency_increase on fs-db"),
        "{causes:?}"
    );
    assert!(
        causes[2].starts_with("model_performance_drop on fs-db"),
        "{causes:?}"
    );
    let confidences: Vec<f64> = incident.hypotheses.iter().map(|h| h.confidence).collect();
    for (got, want) in confidences
        .iter()
        .zip([0.7 / 1.2, (1.0 / 3.0) / 1.2, (1.0 / 6.0) / 1.2])
    {
        assert!((got - want).abs() < 1e-12, "{confidences:?}");
    }
    assert!(incident.hypotheses[0].evidence.contains("1st of 3"));
    assert_eq!(opened.notifications.len(), 1);

    // Healthy for 3 windows (60 s each) after the last alert's end at 90 s: resolved at 270 s.
    assert!(correlator.advance(269 * S).versions.is_empty());
    let resolved = correlator.advance(10_000 * S);
    assert_eq!(
        transitions(&resolved.versions),
        [(
            incident.incident_id.clone(),
            2,
            IncidentState::Resolved,
            270
        )]
    );
    assert_eq!(resolved.versions[0].resolved_us, Some(270 * S));
    assert_eq!(correlator.status().open_incidents, 0);
}

#[test]
fn out_of_order_arrival_yields_the_same_incident() {
    let mut in_order = correlator("");
    let mut reversed = correlator("");
    let mut alerts = drift_alerts();
    let expected = run(&mut in_order, &alerts, 90);
    alerts.reverse();
    let got = run(&mut reversed, &alerts, 90);
    assert_eq!(got, expected);
    // A replayed alert changes nothing.
    reversed.observe(&alerts[0]);
    assert!(reversed.advance(100 * S).versions.is_empty());
    assert_eq!(reversed.status().counters.duplicates, 1);
}

#[test]
fn a_flapping_signal_keeps_one_incident_open_until_healthy_for_n_windows() {
    let mut correlator = correlator("");
    // 1-minute windows alerting at 0-60, 60-120, healthy at 120-180, alerting at 180-240.
    let alerts = [
        alert("query_latency_spike", "db-1", 0, 60, 0.5),
        alert("query_latency_spike", "db-1", 60, 120, 0.5),
        alert("query_latency_spike", "db-1", 180, 240, 0.5),
    ];
    let mut versions = Vec::new();
    for (alert, advance_to) in alerts.iter().zip([90, 150, 250]) {
        correlator.observe(alert);
        versions.extend(correlator.advance(advance_to * S).versions);
    }
    // Up to past the resolution, but not so far that the group's memory of it is gone.
    versions.extend(correlator.advance(600 * S).versions);
    let id = versions[0].incident_id.clone();
    // Open after group_wait; the later alerts join at once and go out one group_interval
    // (300 s) after the first flush; resolved 3 healthy windows after 240 s.
    assert_eq!(
        transitions(&versions),
        [
            (id.clone(), 1, IncidentState::Open, 90),
            (id.clone(), 2, IncidentState::Updated, 390),
            (id, 3, IncidentState::Resolved, 420),
        ]
    );
    assert_eq!(versions[0].pattern, "standalone");
    assert_eq!(versions[0].failure_type, "latency_degradation");
    // Severity 0.5 -> T3 (>= 0.4, < 0.6), 24 h from onset.
    assert_eq!(versions[0].tier, Tier::T3);
    assert_eq!(versions[0].deadline_us, Some((60 + 24 * 3600) * S));
    assert_eq!(versions[2].alert_ids.len(), 3);

    // After resolution a new alert of the same type opens a new incident; an alert older than
    // the resolution is late.
    correlator.observe(&alert("query_latency_spike", "db-1", 300, 360, 0.5));
    correlator.observe(&alert("query_latency_spike", "db-1", 500, 560, 0.5));
    let reopened = correlator.advance(20_000 * S);
    assert_eq!(correlator.status().counters.late, 1);
    assert_eq!(reopened.versions[0].state, IncidentState::Open);
    assert_ne!(reopened.versions[0].incident_id, versions[0].incident_id);
}

#[test]
fn a_standalone_incident_is_promoted_to_its_pattern_and_ranked_by_lead_lag() {
    let mut correlator = correlator("");
    let mut alerts = Vec::new();
    for start in [0, 60, 120] {
        alerts.push(alert(
            "cpu_utilization_high",
            "db-1",
            start,
            start + 60,
            0.5,
        ));
    }
    for start in [60, 120, 180] {
        alerts.push(alert("gpu_utilization_low", "db-1", start, start + 60, 0.5));
    }
    correlator.observe(&alerts[0]);
    let first = correlator.advance(90 * S);
    assert_eq!(first.versions.len(), 1);
    assert_eq!(first.versions[0].pattern, "standalone");
    assert_eq!(first.versions[0].failure_type, "resource_contention");
    for alert in &alerts[1..] {
        correlator.observe(alert);
    }
    let promoted = correlator.advance(1_000 * S);
    let id = first.versions[0].incident_id.clone();
    // No open incident holds the first GPU alert (window end 120 s): it is correlated
    // group_wait later, not a group_interval after the CPU incident opened, and promotes that
    // incident, keeping its id. The later GPU alerts update it before it would resolve; it
    // resolves 3 windows after 240 s.
    assert_eq!(
        transitions(&promoted.versions),
        [
            (id.clone(), 2, IncidentState::Updated, 150),
            (id.clone(), 3, IncidentState::Updated, 420),
            (id, 4, IncidentState::Resolved, 420),
        ]
    );
    assert_eq!(promoted.versions[0].pattern, "resource_contention");
    let incident = &promoted.versions[1];
    assert_eq!(incident.pattern, "resource_contention");
    assert_eq!(
        incident.alert_types,
        ["cpu_utilization_high", "gpu_utilization_low"]
    );
    // 1 - 0.5 * 0.5 = 0.75 -> T2; escalated from T3 at 150 s: deadline min(24 h, 150 s + 1 h).
    assert_eq!(incident.tier, Tier::T2);
    assert_eq!(incident.deadline_us, Some((150 + 3600) * S));
    // CPU: first onset, leads GPU by one window, the pattern's root: 0.5 + 0.3 + 0.2 = 1.0;
    // GPU: 0.5 * 1/2 = 0.25.
    let hypotheses = &incident.hypotheses;
    assert_eq!(hypotheses.len(), 2);
    assert!(
        hypotheses[0].cause.starts_with("The database host's CPU"),
        "{hypotheses:?}"
    );
    assert!(
        hypotheses[0]
            .evidence
            .contains("leads gpu_utilization_low on db-1 by 1m (overlap 1.00)"),
        "{}",
        hypotheses[0].evidence
    );
    assert!((hypotheses[0].confidence - 0.8).abs() < 1e-12);
    assert!((hypotheses[1].confidence - 0.2).abs() < 1e-12);
}

#[test]
fn inhibited_alerts_are_left_out_whatever_their_arrival_order() {
    let mut correlator = correlator("");
    // The latency alert arrives before the saturation that inhibits it (same entity).
    let alerts = [
        alert("query_latency_increase", "db-1", 0, 60, 0.6),
        alert("connection_saturation", "db-1", 0, 60, 0.6),
        alert("query_error_burst", "db-1", 10, 70, 0.6),
        alert("query_latency_increase", "db-2", 0, 60, 0.6),
    ];
    let emitted = run(&mut correlator, &alerts, 100);
    let mut by_entity: Vec<(&str, &str, Vec<String>)> = emitted
        .versions
        .iter()
        .map(|v| (v.entity.as_str(), v.pattern.as_str(), v.alert_types.clone()))
        .collect();
    by_entity.sort();
    assert_eq!(
        by_entity,
        [
            (
                "db-1",
                "resource_exhaustion",
                vec![
                    "connection_saturation".to_owned(),
                    "query_error_burst".to_owned()
                ]
            ),
            (
                "db-2",
                "standalone",
                vec!["query_latency_increase".to_owned()]
            ),
        ]
    );
    assert_eq!(correlator.status().counters.inhibited, 1);
    // While the saturation is active, a later latency alert on db-1 is inhibited at once.
    correlator.observe(&alert("query_latency_increase", "db-1", 60, 120, 0.6));
    assert_eq!(correlator.status().counters.inhibited, 2);
}

#[test]
fn silences_mute_notifications_but_not_incidents() {
    let config = format!(
        "{DEFAULT_CORRELATOR_CONFIG}\n[[silences]]\nmatchers = [\"entity=db-3\"]\n\
         starts = \"1970-01-01T00:00:00Z\"\nends = \"1970-01-01T01:00:00Z\"\ncomment = \"maintenance\"\n"
    );
    let mut correlator =
        Correlator::new(CorrelatorConfig::from_toml(&config).expect("config")).expect("correlator");
    let emitted = run(
        &mut correlator,
        &[
            alert("gpu_thermal", "db-3", 0, 60, 0.9),
            alert("gpu_thermal", "db-4", 0, 60, 0.9),
        ],
        10_000,
    );
    // Both open and resolve; only db-4's two versions are notified.
    assert_eq!(emitted.versions.len(), 4);
    let notified: Vec<&str> = emitted
        .notifications
        .iter()
        .map(|n| n.incident.entity.as_str())
        .collect();
    assert_eq!(notified, ["db-4", "db-4"]);
    assert_eq!(correlator.status().counters.silenced_notifications, 2);
}

#[test]
fn unchanged_open_incidents_are_notified_again_every_repeat_interval() {
    let mut correlator = correlator("repeat_interval = \"10m\"\nresolve_after_windows = 60");
    let emitted = run(
        &mut correlator,
        &[alert("gpu_thermal", "gpu-1", 0, 60, 0.9)],
        1_900,
    );
    // Opened at 90 s; reminders at 690, 1290, 1890 s; resolves at 60 + 60 * 60 = 3660 s.
    let repeats: Vec<(bool, i64)> = emitted
        .notifications
        .iter()
        .map(|n| (n.repeat, n.incident.version))
        .collect();
    assert_eq!(repeats, [(false, 1), (true, 1), (true, 1), (true, 1)]);
    assert_eq!(emitted.versions.len(), 1);
}

#[test]
fn acknowledgement_is_a_version_and_pattern_min_tier_holds() {
    let mut correlator = correlator("");
    let emitted = run(
        &mut correlator,
        &[
            alert("anomalous_access_pattern", "db-9", 0, 60, 0.2),
            alert("exfiltration_sized_read", "db-9", 30, 90, 0.2),
        ],
        120,
    );
    let incident = &emitted.versions[0];
    assert_eq!(incident.pattern, "security_anomaly");
    // 1 - 0.8 * 0.8 = 0.36 would be T4; the pattern's min_tier makes it T2 (1 h).
    assert!((incident.severity - 0.36).abs() < 1e-12);
    assert_eq!(incident.tier, Tier::T2);
    assert_eq!(incident.deadline_us, Some((60 + 3600) * S));
    // The root type's hypothesis leads; exfiltration follows.
    assert!(incident.hypotheses[0].cause.starts_with("An account reads"));

    let acknowledged = correlator
        .acknowledge(&incident.incident_id, "act.1", 130 * S)
        .expect("open");
    assert_eq!(
        (acknowledged.version, acknowledged.state),
        (2, IncidentState::Acknowledged)
    );
    assert_eq!(acknowledged.action_id.as_deref(), Some("act.1"));
    assert!(
        correlator
            .acknowledge(&incident.incident_id, "act.1", 140 * S)
            .is_none()
    );
    assert!(
        correlator
            .acknowledge("no-such-incident", "act.1", 140 * S)
            .is_none()
    );
    // The first windows wholly after the action ([180, 240) for both 60 s detectors) pass
    // without an alert: the verdict, then the resolution.
    let later = correlator.advance(10_000 * S);
    let states: Vec<(i64, IncidentState, Option<i64>)> = later
        .versions
        .iter()
        .map(|v| (v.version, v.state, v.recovered_us))
        .collect();
    assert_eq!(
        states,
        [
            (3, IncidentState::Acknowledged, Some(180 * S)),
            (4, IncidentState::Resolved, Some(180 * S))
        ]
    );
    assert_eq!(later.versions[0].updated_us, 240 * S);
}

#[test]
fn an_action_is_judged_by_the_windows_after_it() {
    let mut correlator = correlator("");
    // A stale view, alerting every 30 s window from 0 to 120.
    let stale = |start: i64| {
        with_labels(
            alert("materialized_view_stale", "db-1", start, start + 30, 0.5),
            &[("matview", "v")],
        )
    };
    let opened = run(
        &mut correlator,
        &[stale(0), stale(30), stale(60), stale(90)],
        120,
    );
    let id = opened.versions[0].incident_id.clone();
    // Refreshed at 125: the window [120, 150) still saw the stale view (it straddles the
    // action); [150, 180) is the first wholly after it.
    correlator
        .acknowledge(&id, "refresh.1", 125 * S)
        .expect("open");
    let emitted = run(&mut correlator, &[stale(120)], 175);
    assert!(emitted.versions.is_empty(), "{:?}", emitted.versions);
    let emitted = correlator.advance(180 * S);
    assert_eq!(emitted.versions.len(), 1);
    let cleared = &emitted.versions[0];
    assert_eq!(cleared.recovered_us, Some(150 * S));
    assert_eq!(cleared.recurred_us, None);

    // The view goes stale again at 240: published at once (no group_interval wait), and the
    // verdict is the first window of the recurrence.
    let emitted = run(&mut correlator, &[stale(240)], 270);
    let recurred = emitted
        .versions
        .iter()
        .find(|v| v.recurred_us.is_some())
        .expect("the recurrence is published");
    assert_eq!(recurred.state, IncidentState::Updated);
    assert_eq!(recurred.recurred_us, Some(240 * S));
    assert_eq!(recurred.updated_us, 270 * S);
    assert_eq!(recurred.action_id.as_deref(), Some("refresh.1"));

    // A second attempt is judged afresh; its alerts come back before any clear window.
    let again = correlator
        .acknowledge(&id, "refresh.2", 275 * S)
        .expect("open");
    assert_eq!((again.recovered_us, again.recurred_us), (None, None));
    let emitted = run(&mut correlator, &[stale(300)], 330);
    let recurred = emitted
        .versions
        .iter()
        .find(|v| v.action_id.as_deref() == Some("refresh.2") && v.recurred_us.is_some())
        .expect("the second attempt's recurrence");
    assert_eq!(recurred.recovered_us, None);

    // Out of attempts: escalated one tier, notified.
    let tier = recurred.tier;
    let escalated = correlator.escalate(&id, "3 attempts at stale_view did not hold", 335 * S);
    assert_eq!(escalated.versions.len(), 1);
    assert!(
        escalated.versions[0].tier < tier,
        "{:?} -> {:?}",
        tier,
        escalated.versions[0].tier
    );
    assert_eq!(
        escalated.versions[0].labels["escalation"],
        "3 attempts at stale_view did not hold"
    );
    assert_eq!(escalated.notifications.len(), 1);
}

#[test]
fn a_restored_correlator_continues_where_the_snapshot_was_taken() {
    let alerts = drift_alerts();
    let mut uninterrupted = correlator("");
    let mut expected = run(&mut uninterrupted, &alerts, 90).versions;
    expected.extend(uninterrupted.advance(10_000 * S).versions);

    let mut first = correlator("");
    let mut got = run(&mut first, &alerts, 90).versions;
    let snapshot = first.snapshot().expect("snapshot");
    let mut resumed = Correlator::restore(CorrelatorConfig::default(), &snapshot).expect("restore");
    got.extend(resumed.advance(10_000 * S).versions);
    assert_eq!(got, expected);
    assert!(Correlator::restore(CorrelatorConfig::default(), b"not json").is_err());
}

#[test]
fn a_critical_or_unrelated_alert_does_not_wait_for_its_groups_interval() {
    let mut correlator = correlator("");
    // A noisy latency incident opens at 60 s + group_wait; its group then flushes at most
    // every 5 minutes.
    let latency = run(
        &mut correlator,
        &[alert("query_latency_spike", "db-1", 0, 60, 0.5)],
        100,
    );
    assert_eq!(transitions(&latency.versions)[0].2, IncidentState::Open);
    assert_eq!(latency.versions[0].updated_us, 90 * S);

    // A stale view, unrelated to latency spikes: group_wait after its own window, not 90 s +
    // group_interval.
    let stale = run(
        &mut correlator,
        &[alert("materialized_view_stale", "db-1", 60, 120, 0.5)],
        200,
    );
    let opened: Vec<_> = stale
        .versions
        .iter()
        .filter(|v| v.alert_types == ["materialized_view_stale"])
        .collect();
    assert_eq!(opened.len(), 1, "{:?}", transitions(&stale.versions));
    assert_eq!(opened[0].updated_us, 150 * S);

    // A runaway query at T1 severity opens its incident at the end of its window.
    let runaway = run(
        &mut correlator,
        &[alert("runaway_query", "db-1", 150, 180, 0.85)],
        180,
    );
    let critical: Vec<_> = runaway
        .versions
        .iter()
        .filter(|v| v.alert_types.contains(&"runaway_query".to_owned()))
        .collect();
    assert_eq!(critical.len(), 1, "{:?}", transitions(&runaway.versions));
    assert_eq!(critical[0].tier, Tier::T1);
    assert_eq!(critical[0].updated_us, 180 * S);

    // Another runaway window changes nothing urgent: its T1 incident is already T1, so the
    // update waits for the group's interval.
    let repeat = run(
        &mut correlator,
        &[alert("runaway_query", "db-1", 180, 210, 0.85)],
        240,
    );
    assert!(
        repeat.versions.is_empty(),
        "{:?}",
        transitions(&repeat.versions)
    );
}
