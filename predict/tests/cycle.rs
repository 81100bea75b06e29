//! The predictive cycle on three days of generated telemetry for two databases: the one whose
//! daily latency peak passes the SLA and whose storage runs out within the week gets proactive
//! plans, the calm one none; the risk model is trained from the incident history and scores
//! the troubled database above the calm one; the cycle report counts what happened.

use opsloop_predict::{CapacityResource, Predictor, PredictorConfig};
use opsloop_schemas::ops::RemediationKind;

const MINUTE_US: i64 = 60_000_000;
const START_US: i64 = 1_700_000_000 * 1_000_000 / (86_400 * 1_000_000) * (86_400 * 1_000_000);

/// p99 latency with a daily peak at 18:00 of `peak_ms` over a base of 100 ms.
fn latency(minute: i64, peak_ms: f64) -> f64 {
    let hour = (minute % 1440) as f64 / 60.0;
    let closeness = (-(hour - 18.0).powi(2) / 4.0).exp();
    100.0 + (peak_ms - 100.0) * closeness + ((minute * 7919) % 11) as f64 * 0.5
}

#[test]
fn the_cycle_plans_ahead_for_the_database_heading_for_trouble() {
    let config = PredictorConfig {
        capacity: vec![CapacityResource {
            resource: "storage".to_owned(),
            metric: "db_storage_gb".to_owned(),
            limit: 1000.0,
        }],
        risk_horizon_s: 3 * 3600,
        retrain_every: 1,
        ..PredictorConfig::default()
    };
    let mut predictor = Predictor::new(config);
    let mut trained = Vec::new();
    let mut last = None;
    // Three days, then 16:30 of the fourth: the peak is 90 minutes away.
    let end_minute = 3 * 1440 + 16 * 60 + 30;
    for minute in 0..=end_minute {
        let time = START_US + minute * MINUTE_US;
        predictor.observe(
            "db-hot",
            "db_query_latency_ms",
            time,
            latency(minute, 240.0),
        );
        predictor.observe(
            "db-calm",
            "db_query_latency_ms",
            time,
            latency(minute, 150.0),
        );
        predictor.observe(
            "db-hot",
            "db_storage_gb",
            time,
            500.0 + minute as f64 * 0.06,
        );
        predictor.observe("db-calm", "db_storage_gb", time, 300.0);
        predictor.observe("db-calm", "cpu_seconds", time, 1.0);
        // The hot database's incidents: its latency peak, every day.
        if minute % 1440 == 18 * 60 {
            predictor.incident_opened("db-hot", time);
        }
        if minute % 60 == 30 {
            if minute == end_minute {
                predictor.action_executed(true);
                predictor.action_executed(false);
            }
            let cycle = predictor.cycle(time);
            trained.extend(cycle.report.models_updated.clone());
            last = Some(cycle);
        }
    }
    let cycle = last.expect("cycles ran");
    assert!(!trained.is_empty(), "the risk model was trained");
    let report = &cycle.report;
    assert!(report.cycle_id.starts_with("cycle-"), "{report:?}");
    assert_eq!(report.operations_executed, 2);
    assert_eq!(report.success_rate, Some(0.5));
    assert_eq!(
        report.failures_detected, 0,
        "no incident since the previous cycle"
    );
    assert_eq!(report.proactive_plans as usize, cycle.events.len());

    let hot = cycle
        .outlooks
        .iter()
        .find(|o| o.entity == "db-hot")
        .expect("hot");
    let calm = cycle
        .outlooks
        .iter()
        .find(|o| o.entity == "db-calm")
        .expect("calm");
    eprintln!("hot: {hot:?}\ncalm: {calm:?}");
    assert!(hot.forecast_p99_ms.expect("forecast") > 200.0);
    assert!(calm.forecast_p99_ms.expect("forecast") < 200.0);
    assert!(hot.capacity_share["storage"] > 0.8);
    assert!(calm.capacity_share["storage"] < 0.8);
    assert!(hot.failure_risk.expect("scored") > calm.failure_risk.expect("scored"));

    let rules: Vec<(&str, &str)> = cycle
        .events
        .iter()
        .map(|e| (e.target.as_str(), e.template.as_str()))
        .collect();
    assert!(
        rules.contains(&("db-hot", "webhook.capacity_plan")),
        "{rules:?}"
    );
    assert!(
        cycle.events.iter().all(|e| e.target == "db-hot"),
        "nothing for the calm one: {rules:?}"
    );
    assert!(
        cycle
            .events
            .iter()
            .all(|e| e.kind == RemediationKind::Proactive)
    );
    assert!(
        cycle
            .events
            .iter()
            .any(|e| e.rationale.starts_with("latency_sla")),
        "the p99 forecast rule fired: {rules:?}"
    );
}
