//! `opsloop actuate` over the broker with `opsloop approve|reject`: a gated action waits for a
//! correctly signed approval (a forged one changes nothing), a rejected one never runs, a
//! template outside the allow-list is skipped; every step reaches `ops.actions`.

mod support;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opsloop_connectors::kafka::{KafkaSink, RecordWriter, SinkConfig};
use opsloop_schemas::ops::{ActionOutcome, ActionStep, ParamValue, RemediationEvent};
use opsloop_schemas::{Codec, SchemaRegistry, WireFormat};
use opsloop_tests::{TestBroker, TestPostgres, unique_name};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use support::{opsloop, succeeded};
use tokio::process::Command;

const KEY: &str = "the shared approval key";

fn event(
    action_id: &str,
    template: &str,
    params: &[(&str, ParamValue)],
    gated: bool,
) -> RemediationEvent {
    let params = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect::<BTreeMap<_, _>>();
    let mut event = RemediationEvent::new(
        action_id,
        format!("incident-{action_id}"),
        template,
        "db-1",
        params,
    );
    event.approval_required = gated;
    event
}

/// The steps seen on the actions topic so far, per action.
fn read_steps(
    consumer: &BaseConsumer,
    codec: &Codec,
    steps: &mut BTreeMap<String, Vec<ActionStep>>,
) {
    while let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
        if let Some(outcome) = message
            .payload()
            .and_then(|p| codec.decode::<ActionOutcome>(p).ok())
        {
            steps
                .entry(outcome.action_id)
                .or_default()
                .push(outcome.step);
        }
    }
}

async fn wait_for_step(
    consumer: &BaseConsumer,
    codec: &Codec,
    steps: &mut BTreeMap<String, Vec<ActionStep>>,
    action: &str,
    step: ActionStep,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !steps.get(action).is_some_and(|s| s.contains(&step)) {
        assert!(
            Instant::now() < deadline,
            "{action} never reached {step:?}: {steps:?}"
        );
        read_steps(consumer, codec, steps);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gated_actions_wait_for_a_signed_approval_and_rejected_ones_never_run() {
    let postgres = TestPostgres::start().await.expect("postgres");
    let broker = TestBroker::start().await.expect("broker");
    let remediation = broker.create_topic("remediation", 1).await.expect("topic");
    let approvals = broker.create_topic("approvals", 1).await.expect("topic");
    let actions = broker.create_topic("actions", 1).await.expect("topic");
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("actuate.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"{}\"\ngroup_id = \"{}\"\n[topics]\nremediation = \"{remediation}\"\n\
             approvals = \"{approvals}\"\nactions = \"{actions}\"\n[actuator]\n\
             allow = [\"pg.cancel_long_queries\"]\napproval_key = \"{KEY}\"\naudit_log = \"{}\"\n\
             default_dsn = \"{}\"\n[actuator.verify]\nsettle_ms = 300\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
            broker.bootstrap(),
            unique_name("actuator"),
            dir.path().join("audit.jsonl").display(),
            postgres.connection_string(),
        ),
    )
    .expect("config");
    let _actuator = Command::new(env!("CARGO_BIN_EXE_opsloop"))
        .args(["actuate", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("opsloop actuate starts");

    let runaway = postgres.connect().await.expect("connect");
    let sleeping = tokio::spawn(async move { runaway.batch_execute("SELECT pg_sleep(120)").await });
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let codec = Codec::new(WireFormat::Confluent, Arc::new(SchemaRegistry::builtin()));
    let sink = KafkaSink::new(&broker.kafka_config(), SinkConfig::default()).expect("sink");
    let mut writer = RecordWriter::new(sink, codec.clone(), 10);
    let age = [("min_age_s", ParamValue::Long(1))];
    for record in [
        event("gated", "pg.cancel_long_queries", &age, true),
        event("rejected", "pg.cancel_long_queries", &age, true),
        event(
            "not-allowed",
            "pg.vacuum",
            &[("table", ParamValue::String("t".into()))],
            false,
        ),
    ] {
        writer.send(&remediation, &record).await.expect("send");
    }
    writer.finish().await.expect("delivered");

    let consumer: BaseConsumer = broker
        .kafka_config()
        .client_config()
        .set("group.id", unique_name("steps"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&actions]).expect("subscribe");
    let mut steps = BTreeMap::new();
    wait_for_step(
        &consumer,
        &codec,
        &mut steps,
        "not-allowed",
        ActionStep::Skipped,
    )
    .await;
    wait_for_step(&consumer, &codec, &mut steps, "gated", ActionStep::Planned).await;

    let decide = |verb: &str, action: &str, key: &str| {
        vec![
            verb.to_owned(),
            action.to_owned(),
            "--approver".to_owned(),
            "alice".to_owned(),
            "--key".to_owned(),
            key.to_owned(),
            "--topic".to_owned(),
            approvals.clone(),
            "--brokers".to_owned(),
            broker.bootstrap().to_owned(),
        ]
    };
    // A decision signed with another key: nothing happens.
    succeeded(&opsloop(decide("approve", "gated", "a guessed key")).await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    read_steps(&consumer, &codec, &mut steps);
    assert_eq!(steps["gated"], [ActionStep::Planned], "{steps:?}");
    assert!(!sleeping.is_finished(), "the runaway query still runs");

    succeeded(&opsloop(decide("reject", "rejected", KEY)).await);
    wait_for_step(
        &consumer,
        &codec,
        &mut steps,
        "rejected",
        ActionStep::Rejected,
    )
    .await;
    assert!(!sleeping.is_finished(), "a rejected action never runs");

    succeeded(&opsloop(decide("approve", "gated", KEY)).await);
    wait_for_step(&consumer, &codec, &mut steps, "gated", ActionStep::Verified).await;
    assert_eq!(
        steps["gated"],
        [
            ActionStep::Planned,
            ActionStep::Approved,
            ActionStep::Executed,
            ActionStep::Verified
        ]
    );
    assert_eq!(
        steps["rejected"],
        [ActionStep::Planned, ActionStep::Rejected]
    );
    assert!(
        sleeping.await.expect("task").is_err(),
        "cancelled once approved"
    );
    // Outside the allow-list: skipped at once, never planned or executed.
    assert_eq!(steps["not-allowed"], [ActionStep::Skipped]);
}
