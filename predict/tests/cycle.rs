//! The predictive cycle on three days of generated telemetry for two databases: the one whose
//! daily latency peak passes the SLA and whose storage runs out within the week gets proactive
//! plans, the calm one none; the risk model is trained from the incident history and scores
//! the troubled database above the calm one; the cycle report counts what happened.

use opsloop_predict::{CapacityResource, Cycle, Predictor, PredictorConfig};
use opsloop_schemas::ops::RemediationKind;

const MINUTE_US: i64 = 60_000_000;
const START_US: i64 = 1_700_000_000 * 1_000_000 / (86_400 * 1_000_000) * (86_400 * 1_000_000);

/// p99 latency with a daily peak at 18:00 of `peak_ms` over a base of 100 ms.
fn latency(minute: i64, peak_ms: f64) -> f64 {
    let hour = (minute % 1440) as f64 / 60.0;
    let closeness = (-(hour - 18.0).powi(2) / 4.0).exp();
    100.0 + (peak_ms - 100.0) * closeness + ((minute * 7919) % 11) as f64 * 0.5
}

fn config() -> PredictorConfig {
    PredictorConfig {
        capacity: vec![CapacityResource {
            resource: "storage".to_owned(),
            metric: "db_storage_gb".to_owned(),
            limit: 1000.0,
        }],
        risk_horizon_s: 3 * 3600,
        retrain_every: 1,
        ..PredictorConfig::default()
    }
}

/// Three days, then 16:30 of the fourth: the peak is 90 minutes away.
const END_MINUTE: i64 = 3 * 1440 + 16 * 60 + 30;

/// The telemetry and incidents of `minute`, and the hourly cycle (at :30) when it is due.
async fn step(predictor: &mut Predictor, minute: i64) -> Option<Cycle> {
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
    if minute % 60 != 30 {
        return None;
    }
    if minute == END_MINUTE {
        predictor.action_executed(true);
        predictor.action_executed(false);
    }
    Some(predictor.cycle(time).await.expect("cycle"))
}

#[tokio::test]
async fn the_cycle_plans_ahead_for_the_database_heading_for_trouble() {
    let mut predictor = Predictor::new(config()).expect("predictor");
    let mut trained = Vec::new();
    let mut last = None;
    let mut capacity_plans = Vec::new();
    for minute in 0..=END_MINUTE {
        if let Some(cycle) = step(&mut predictor, minute).await {
            trained.extend(cycle.report.models_updated.clone());
            capacity_plans.extend(
                cycle
                    .events
                    .iter()
                    .filter(|e| e.rationale.starts_with("capacity"))
                    .map(|e| (minute, e.target.clone())),
            );
            last = Some(cycle);
        }
    }
    // Storage heads for full from the first cycle that has a day of windows; the plan is made
    // then and not again within its week.
    assert_eq!(capacity_plans.len(), 1, "{capacity_plans:?}");
    assert_eq!(capacity_plans[0].1, "db-hot");
    assert!(
        (1440..1440 + 60).contains(&capacity_plans[0].0),
        "{capacity_plans:?}"
    );
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

/// Equal, but for the last bits of floats (a checkpoint's JSON may round them by an ulp).
fn assert_same(got: &Cycle, expected: &Cycle) {
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
    assert_eq!(got.report, expected.report);
    assert_eq!(got.events, expected.events);
    assert_eq!(got.forecasts.len(), expected.forecasts.len());
    for (g, e) in got.forecasts.iter().zip(&expected.forecasts) {
        assert_eq!(
            (&g.job, &g.entity, &g.forecast, &g.resource),
            (&e.job, &e.entity, &e.forecast, &e.resource)
        );
        assert!(close(g.value, e.value), "{g:?} vs {e:?}");
    }
    for (g, e) in got.outlooks.iter().zip(&expected.outlooks) {
        match (g.failure_risk, e.failure_risk) {
            (Some(a), Some(b)) => assert!(close(a, b), "{a} vs {b}"),
            (a, b) => assert_eq!(a, b),
        }
    }
}

#[tokio::test]
async fn a_restored_predictor_carries_on_as_if_it_had_never_stopped() {
    let mut uninterrupted = Predictor::new(config()).expect("predictor");
    let stop = 2 * 1440 + 7 * 60 + 13;
    for minute in 0..stop {
        step(&mut uninterrupted, minute).await;
    }
    // What a checkpoint at `stop` holds, read back by a new process.
    let snapshot = uninterrupted.snapshot().expect("snapshot");
    let mut restored = Predictor::restore(config(), &snapshot).expect("restore");
    assert!(restored.model().is_some(), "the risk model came back");
    let mut compared = 0;
    for minute in stop..=END_MINUTE {
        let expected = step(&mut uninterrupted, minute).await;
        let got = step(&mut restored, minute).await;
        assert_eq!(got.is_some(), expected.is_some(), "minute {minute}");
        if let (Some(got), Some(expected)) = (got, expected) {
            assert_same(&got, &expected);
            compared += 1;
        }
    }
    assert!(compared > 30, "{compared} cycles compared");
    // A snapshot that is not one is refused, not taken for an empty history.
    assert!(Predictor::restore(config(), b"{}").is_err());
}
