//! The loop's wiring in process, no broker: the simulated fleet through the same runtime as
//! `opsloop run`, acting on the digital twin under the actuator's governance.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opsloop_connectors::generate::{FaultKind, FaultSpec, FleetConfig};
use opsloop_runtime::demo::{Demo, DemoConfig, DemoEvent, DemoRun};
use opsloop_schemas::ops::{ActionStep, Alert};

fn fleet(faults: &[&str]) -> FleetConfig {
    FleetConfig {
        databases: 3,
        gpu_hosts: 1,
        gpus_per_host: 2,
        models: 0,
        faults: faults
            .iter()
            .map(|spec| spec.parse::<FaultSpec>().expect("fault"))
            .collect(),
        ..FleetConfig::default()
    }
}

/// Runs the demo flat out; its alerts and action steps as seen live.
async fn demo(
    fleet: FleetConfig,
    minutes: u64,
) -> (DemoRun, Vec<Alert>, Vec<(String, ActionStep)>) {
    let alerts = Arc::new(Mutex::new(Vec::new()));
    let steps = Arc::new(Mutex::new(Vec::new()));
    let (seen_alerts, seen_steps) = (Arc::clone(&alerts), Arc::clone(&steps));
    let run = Demo::run(
        DemoConfig {
            fleet,
            duration: Duration::from_secs(minutes * 60),
            tick_delay: Duration::ZERO,
            detectors: None,
        },
        move |event| match event {
            DemoEvent::Alert(alert) => seen_alerts.lock().expect("lock").push(alert.clone()),
            DemoEvent::Outcome(outcome) => seen_steps
                .lock()
                .expect("lock")
                .push((outcome.template.clone(), outcome.step)),
            _ => {}
        },
    )
    .await
    .expect("the demo runs");
    let alerts = alerts.lock().expect("lock").clone();
    let steps = steps.lock().expect("lock").clone();
    (run, alerts, steps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_the_loop_can_fix_is_detected_acted_on_verified_and_ended_early() {
    let (run, _, steps) = demo(fleet(&["connection_exhaustion@db-1:+3m/15m"]), 25).await;
    let fault = &run.report.faults[0];
    assert!(fault.detected, "{:#?}", run.report);
    assert_eq!(
        fault.first_alert_type.as_deref(),
        Some("connection_saturation")
    );
    assert_eq!(fault.failure_type.as_deref(), Some("resource_exhaustion"));
    assert_eq!(
        fault.action_template.as_deref(),
        Some("pg.terminate_idle_sessions")
    );
    assert_eq!(
        fault.outcome.as_deref(),
        Some("VERIFIED"),
        "{:#?}",
        run.report
    );
    let recovered = fault.recovered_s.expect("a recovery time");
    assert!(
        recovered > fault.detection_s.expect("detected") && recovered < fault.end_s - fault.start_s,
        "recovered within the fault's window: {recovered} s"
    );
    // The twin ended the fault when the action ran.
    assert!(
        run.remediations
            .iter()
            .any(|r| r.ended == [FaultKind::ConnectionExhaustion] && r.target == "db-1"),
        "{:?}",
        run.remediations
    );
    // Planned, executed, verified: the governed life of one action.
    let lives: Vec<ActionStep> = steps
        .iter()
        .filter(|(template, _)| template == "pg.terminate_idle_sessions")
        .map(|(_, step)| *step)
        .collect();
    assert_eq!(
        lives,
        [
            ActionStep::Planned,
            ActionStep::Executed,
            ActionStep::Verified
        ]
    );
    assert_eq!(run.report.alerts_outside_faults, 0);
    assert_eq!(run.report.incidents_outside_faults, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_fleet_raises_nothing_and_an_unfixed_fault_runs_its_course() {
    let (quiet, alerts, steps) = demo(fleet(&[]), 20).await;
    assert!(alerts.is_empty(), "{alerts:#?}");
    assert!(quiet.incidents.is_empty());
    assert!(steps.is_empty());
    assert!(quiet.report.samples > 0 && quiet.report.series > 0);

    // Nothing in the catalog answers an overheating GPU: it alerts until its scheduled end.
    let (run, alerts, _) = demo(fleet(&["gpu_thermal@gpu-host-0:+3m/10m"]), 20).await;
    let fault = &run.report.faults[0];
    assert!(fault.detected, "{:#?}", run.report);
    assert_eq!(fault.outcome, None);
    let end_us = run.started_us + (fault.end_s * 1e6) as i64;
    assert!(
        alerts
            .iter()
            .any(|a| a.alert_type == "gpu_thermal" && a.window_end_us >= end_us - 120_000_000),
        "still alerting near its end"
    );
    assert!(run.remediations.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_runs_the_same_however_the_tasks_are_scheduled() {
    // Two runs at once, flat out, compete for the threads: the actions in flight and the
    // simulation still move in lockstep.
    let faults = [
        "connection_exhaustion@db-1:+3m/15m",
        "runaway_query@db-2:+4m/10m",
    ];
    let (first, second) = tokio::join!(demo(fleet(&faults), 25), demo(fleet(&faults), 25));
    let ((first, _, first_steps), (second, _, second_steps)) = (first, second);
    assert_eq!(first.report.faults, second.report.faults);
    assert_eq!(first.remediations, second.remediations);
    assert_eq!(first_steps, second_steps);
    assert!(!first.remediations.is_empty(), "{:#?}", first.report);
}
