//! The webhook executors against a real HTTP server: a retraining DAG run in Airflow's REST
//! shape and a scale request in the Kubernetes scale subresource's shape, each verified by the
//! receiver's answer and audited; an unreachable receiver fails after its retries.

use opsloop_actions::{TemplateId, seal};
use opsloop_actuator::{Actuator, ActuatorConfig};
use opsloop_schemas::ops::{ActionStep, ParamValue, RemediationEvent, SeverityBand};
use opsloop_tests::{TestWebhook, remediation_event};
use tokio::sync::mpsc::unbounded_channel;

fn event(action_id: &str, template: &str, params: &[(&str, ParamValue)]) -> RemediationEvent {
    let mut event = remediation_event(action_id, template, "feature-store", params);
    event.band = SeverityBand::Emergency;
    seal::sign_event(PLANNER_KEY.as_bytes(), event)
}

const PLANNER_KEY: &str = "webhook test planner key";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retraining_and_scaling_requests_reach_their_receivers() {
    let airflow = TestWebhook::start().expect("airflow");
    let kubernetes =
        TestWebhook::start_answering(r#"{"spec": {"replicas": 3}}"#).expect("kubernetes");
    let tickets = TestWebhook::start().expect("tickets");
    let dir = tempfile::tempdir().expect("dir");
    let config = ActuatorConfig {
        allow: vec![
            TemplateId::WebhookRetrain,
            TemplateId::WebhookScale,
            TemplateId::WebhookMaintenance,
        ],
        planner_key: PLANNER_KEY.to_owned(),
        audit_log: dir.path().join("audit.jsonl"),
        airflow_url: Some(airflow.url()),
        kubernetes_url: Some(kubernetes.url()),
        kubernetes_namespace: "ml".to_owned(),
        tickets_url: Some(tickets.url()),
        rate_per_s: 100.0,
        ..ActuatorConfig::default()
    };
    let (sender, mut outcomes) = unbounded_channel();
    let actuator = Actuator::new(config, sender).expect("actuator");
    let text = |v: &str| ParamValue::String(v.to_owned());
    actuator
        .handle(event(
            "retrain-1",
            "webhook.retrain",
            &[
                ("dag_id", text("retrain_ranker")),
                ("model", text("ranker")),
            ],
        ))
        .await
        .expect("retrain");
    actuator
        .handle(event(
            "scale-1",
            "webhook.scale",
            &[
                ("deployment", text("feature_api")),
                ("delta", ParamValue::Long(1)),
            ],
        ))
        .await
        .expect("scale");

    // A proactive plan: a maintenance window request.
    actuator
        .handle(event(
            "maintenance-1",
            "webhook.maintenance",
            &[("window_h", ParamValue::Long(24))],
        ))
        .await
        .expect("maintenance");
    let requests = tickets.received();
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path.as_str()),
        ("POST", "/maintenance")
    );
    let body: serde_json::Value = serde_json::from_str(&requests[0].body).expect("JSON");
    assert_eq!(body["params"]["window_h"], 24);
    assert_eq!(body["action_id"], "maintenance-1");

    let requests = airflow.received();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path.as_str()),
        ("POST", "/api/v1/dags/retrain_ranker/dagRuns")
    );
    let body: serde_json::Value = serde_json::from_str(&requests[0].body).expect("JSON");
    assert_eq!(body["dag_run_id"], "opsloop-retrain-1");
    assert_eq!(
        requests[0]
            .headers
            .get("idempotency-key")
            .map(String::as_str),
        Some("retrain-1"),
        "a receiver can tell a retry from a new request"
    );
    assert_eq!(body["conf"]["model"], "ranker");
    assert_eq!(body["conf"]["incident_id"], "incident-retrain-1");

    let requests = kubernetes.received();
    let path = "/apis/apps/v1/namespaces/ml/deployments/feature_api/scale";
    let calls: Vec<(&str, &str)> = requests
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(calls, [("GET", path), ("PATCH", path)]);
    let patch: serde_json::Value = serde_json::from_str(&requests[1].body).expect("JSON");
    assert_eq!(patch["spec"]["replicas"], 4, "3 + delta 1");

    let mut steps = Vec::new();
    while let Ok(outcome) = outcomes.try_recv() {
        steps.push((outcome.action_id, outcome.step));
    }
    for action in ["retrain-1", "scale-1", "maintenance-1"] {
        let of: Vec<ActionStep> = steps
            .iter()
            .filter(|(a, _)| a == action)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(
            of,
            [
                ActionStep::Planned,
                ActionStep::Executed,
                ActionStep::Verified
            ],
            "{action}"
        );
    }

    // Nobody listens: three attempts, then FAILED with the reason.
    let dir = tempfile::tempdir().expect("dir");
    let (sender, mut outcomes) = unbounded_channel();
    let unreachable = Actuator::new(
        ActuatorConfig {
            allow: vec![TemplateId::WebhookRetrain],
            planner_key: PLANNER_KEY.to_owned(),
            audit_log: dir.path().join("audit.jsonl"),
            airflow_url: Some("http://127.0.0.1:1".to_owned()),
            ..ActuatorConfig::default()
        },
        sender,
    )
    .expect("actuator");
    unreachable
        .handle(event(
            "retrain-2",
            "webhook.retrain",
            &[
                ("dag_id", text("retrain_ranker")),
                ("model", text("ranker")),
            ],
        ))
        .await
        .expect("handled");
    let mut last = None;
    while let Ok(outcome) = outcomes.try_recv() {
        last = Some(outcome);
    }
    let last = last.expect("an outcome");
    assert_eq!(last.step, ActionStep::Failed);
    assert!(last.detail.contains("127.0.0.1:1"), "{}", last.detail);
}
