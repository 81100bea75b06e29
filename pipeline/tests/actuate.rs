//! `opsloop actuate` over the broker with `opsloop approve|reject`: a gated action waits for a
//! correctly signed approval of its content (a forged one changes nothing), a rejected one
//! never runs, a template outside the allow-list is skipped; unsigned events, forged approvals
//! and records that do not decode land in the dead-letter topic with their reasons; every step
//! reaches `ops.actions`. And a real `kill -9` of the actuator during `CREATE INDEX
//! CONCURRENTLY`: no second run, no invalid index left, the audit intact.

#[path = "support/actuate.rs"]
mod actuate_support;
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actuate_support::{ActuateTopics, actuate_toml};
use opsloop_actions::{advised_index_name, seal};
use opsloop_connectors::kafka::{
    KafkaSink, OutgoingRecord, RecordWriter, SinkConfig, dead_letter_headers,
};
use opsloop_schemas::ops::{ActionOutcome, ActionStep, ParamValue, RemediationEvent};
use opsloop_schemas::{Codec, SchemaRegistry, WireFormat};
use opsloop_tests::{
    ORDERS, TestBroker, TestPostgres, http_get, orders_lookups, remediation_event, unique_name,
};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use support::{opsloop, succeeded};
use tokio::process::{Child, Command};

const KEY: &str = "the shared approval key";
const PLANNER_KEY: &str = "the planner's key";

fn event(
    action_id: &str,
    template: &str,
    params: &[(&str, ParamValue)],
    gated: bool,
) -> RemediationEvent {
    let mut event = remediation_event(action_id, template, "db-1", params);
    event.approval_required = gated;
    seal::sign_event(PLANNER_KEY.as_bytes(), event)
}

/// Everything seen on the actions topic so far.
fn read_outcomes(consumer: &BaseConsumer, codec: &Codec, seen: &mut Vec<ActionOutcome>) {
    while let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
        if let Some(outcome) = message
            .payload()
            .and_then(|p| codec.decode::<ActionOutcome>(p).ok())
        {
            seen.push(outcome);
        }
    }
}

fn steps_of(seen: &[ActionOutcome], action: &str) -> Vec<ActionStep> {
    seen.iter()
        .filter(|o| o.action_id == action)
        .map(|o| o.step)
        .collect()
}

async fn wait_for_step(
    consumer: &BaseConsumer,
    codec: &Codec,
    seen: &mut Vec<ActionOutcome>,
    action: &str,
    step: ActionStep,
) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !steps_of(seen, action).contains(&step) {
        assert!(
            Instant::now() < deadline,
            "{action} never reached {step:?}: {seen:#?}"
        );
        read_outcomes(consumer, codec, seen);
    }
}

fn consumer_of(broker: &TestBroker, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = broker
        .kafka_config()
        .client_config()
        .set("group.id", unique_name("reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    consumer
}

/// The topics of one actuator test.
struct Topics {
    remediation: String,
    approvals: String,
    actions: String,
    incidents: String,
    deadletter: String,
}

impl Topics {
    async fn create(broker: &TestBroker) -> Topics {
        Topics {
            remediation: broker.create_topic("remediation", 1).await.expect("topic"),
            approvals: broker.create_topic("approvals", 1).await.expect("topic"),
            actions: broker.create_topic("actions", 1).await.expect("topic"),
            incidents: broker.create_topic("incidents", 1).await.expect("topic"),
            deadletter: broker.create_topic("deadletter", 1).await.expect("topic"),
        }
    }
}

/// An actuate config: `allow` templates, reading with `group`, judging by the probe alone (no
/// correlator runs in these tests).
fn actuate_config(
    dir: &Path,
    broker: &TestBroker,
    topics: &Topics,
    group: &str,
    allow: &str,
    dsn: &str,
) -> std::path::PathBuf {
    let config = dir.join(format!("{group}.toml"));
    let topics = ActuateTopics {
        brokers: broker.bootstrap(),
        group,
        remediation: &topics.remediation,
        approvals: &topics.approvals,
        actions: &topics.actions,
        incidents: &topics.incidents,
        deadletter: &topics.deadletter,
    };
    let toml = actuate_toml(
        &topics,
        (KEY, PLANNER_KEY),
        dir,
        dsn,
        &format!("allow = [{allow}]\nrate_per_s = 5.0"),
        "[actuator.verify]\nsettle_ms = 1500\nwindow_ms = 1500\nsymptom = false\n\
         [group]\nunassigned_warn_s = 3",
    );
    std::fs::write(&config, toml).expect("config");
    config
}

fn actuate(config: &Path, log: &Path) -> Child {
    actuate_with_stdout(config, log, Stdio::null())
}

/// `opsloop actuate` logging to `log`, its standard output to `stdout`.
fn actuate_with_stdout(config: &Path, log: &Path, stdout: Stdio) -> Child {
    Command::new(env!("CARGO_BIN_EXE_opsloop"))
        .args(["actuate", "--config"])
        .arg(config)
        .env("OPSLOOP_LOG", "info")
        .stdout(stdout)
        .stderr(std::fs::File::create(log).expect("log"))
        .kill_on_drop(true)
        .spawn()
        .expect("opsloop actuate starts")
}

/// Dead letters so far: reason code -> count.
fn dead_letters(consumer: &BaseConsumer, seen: &mut BTreeMap<String, usize>) {
    while let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
        let reason = message
            .headers()
            .and_then(|headers| {
                headers
                    .iter()
                    .find(|h| h.key == dead_letter_headers::REASON_CODE)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            })
            .unwrap_or_default();
        *seen.entry(reason).or_default() += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gated_actions_wait_for_a_signed_approval_and_rejected_ones_never_run() {
    let postgres = TestPostgres::start().await.expect("postgres");
    let broker = TestBroker::start().await.expect("broker");
    let topics = Topics::create(&broker).await;
    let dir = tempfile::tempdir().expect("dir");
    let config = actuate_config(
        dir.path(),
        &broker,
        &topics,
        &unique_name("actuator"),
        "\"pg.cancel_long_queries\"",
        &postgres.connection_string(),
    );
    let _actuator = actuate(&config, &dir.path().join("actuate.log"));

    let runaway = postgres.connect().await.expect("connect");
    let sleeping = tokio::spawn(async move { runaway.batch_execute("SELECT pg_sleep(120)").await });
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let codec = Codec::new(WireFormat::Confluent, Arc::new(SchemaRegistry::builtin()));
    let sink = KafkaSink::new(&broker.kafka_config(), SinkConfig::default()).expect("sink");
    let mut writer = RecordWriter::new(sink.clone(), codec.clone(), 10);
    let age = [("min_age_s", ParamValue::Long(1))];
    let mut unsigned = event("unsigned", "pg.cancel_long_queries", &age, false);
    unsigned.signature.clear();
    for record in [
        event("gated", "pg.cancel_long_queries", &age, true),
        event("rejected", "pg.cancel_long_queries", &age, true),
        event(
            "not-allowed",
            "pg.vacuum",
            &[("table", ParamValue::String("t".into()))],
            false,
        ),
        unsigned,
    ] {
        writer
            .send(&topics.remediation, &record)
            .await
            .expect("send");
    }
    writer.finish().await.expect("delivered");
    // Bytes that are no record, on every topic the actuator reads.
    for topic in [&topics.remediation, &topics.approvals, &topics.incidents] {
        sink.send(OutgoingRecord::new(
            topic,
            None,
            b"\x00\x00\x00\x00\x63garbage",
        ))
        .await
        .expect("sent");
    }

    let consumer = consumer_of(&broker, &topics.actions);
    let mut seen = Vec::new();
    wait_for_step(
        &consumer,
        &codec,
        &mut seen,
        "not-allowed",
        ActionStep::Skipped,
    )
    .await;
    wait_for_step(&consumer, &codec, &mut seen, "gated", ActionStep::Planned).await;

    let decide = |verb: &str, action: &str, key: &str| {
        vec![
            verb.to_owned(),
            action.to_owned(),
            "--approver".to_owned(),
            "alice".to_owned(),
            "--key".to_owned(),
            key.to_owned(),
            "--topic".to_owned(),
            topics.approvals.clone(),
            "--actions-topic".to_owned(),
            topics.actions.clone(),
            "--brokers".to_owned(),
            broker.bootstrap().to_owned(),
        ]
    };
    // A decision signed with another key: nothing happens.
    let shown = succeeded(&opsloop(decide("approve", "gated", "a guessed key")).await);
    assert!(
        shown.contains("pg.cancel_long_queries on db-1"),
        "the approver sees what is approved: {shown}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    read_outcomes(&consumer, &codec, &mut seen);
    assert_eq!(steps_of(&seen, "gated"), [ActionStep::Planned], "{seen:#?}");
    assert!(!sleeping.is_finished(), "the runaway query still runs");

    wait_for_step(
        &consumer,
        &codec,
        &mut seen,
        "rejected",
        ActionStep::Planned,
    )
    .await;
    succeeded(&opsloop(decide("reject", "rejected", KEY)).await);
    wait_for_step(
        &consumer,
        &codec,
        &mut seen,
        "rejected",
        ActionStep::Rejected,
    )
    .await;
    assert!(!sleeping.is_finished(), "a rejected action never runs");

    succeeded(&opsloop(decide("approve", "gated", KEY)).await);
    wait_for_step(&consumer, &codec, &mut seen, "gated", ActionStep::Verified).await;
    assert_eq!(
        steps_of(&seen, "gated"),
        [
            ActionStep::Planned,
            ActionStep::Approved,
            ActionStep::Executed,
            ActionStep::Verified
        ]
    );
    assert_eq!(
        steps_of(&seen, "rejected"),
        [ActionStep::Planned, ActionStep::Rejected]
    );
    assert!(
        sleeping.await.expect("task").is_err(),
        "cancelled once approved"
    );
    // Outside the allow-list: skipped at once, never planned or executed.
    assert_eq!(steps_of(&seen, "not-allowed"), [ActionStep::Skipped]);
    assert_eq!(steps_of(&seen, "unsigned"), [ActionStep::Refused]);

    // The refused and the undecodable records, with their reasons.
    let letters = consumer_of(&broker, &topics.deadletter);
    let mut reasons = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while reasons.values().sum::<usize>() < 5 && Instant::now() < deadline {
        dead_letters(&letters, &mut reasons);
    }
    assert_eq!(reasons.get("unsigned_event"), Some(&1), "{reasons:?}");
    assert_eq!(reasons.get("forged_approval"), Some(&1), "{reasons:?}");
    assert_eq!(
        reasons.get("unknown_schema_id"),
        Some(&3),
        "one undecodable record per topic: {reasons:?}"
    );
}

/// Sessions building an index concurrently now.
async fn index_builds(db: &tokio_postgres::Client) -> i64 {
    db.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX CONCURRENTLY%'",
        &[],
    )
    .await
    .expect("activity")
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_create_index_concurrently_runs_nothing_twice_and_leaves_no_invalid_index() {
    let postgres = TestPostgres::start().await.expect("postgres");
    let broker = TestBroker::start().await.expect("broker");
    let topics = Topics::create(&broker).await;
    let dir = tempfile::tempdir().expect("dir");
    let db = postgres.connect().await.expect("connect");
    db.batch_execute(ORDERS).await.expect("fixtures");
    let load = orders_lookups(postgres.connect().await.expect("connect"), false);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // An open snapshot: CREATE INDEX CONCURRENTLY waits for it before it can finish.
    let snapshot = postgres.connect().await.expect("connect");
    snapshot
        .batch_execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM orders WHERE id = 1",
        )
        .await
        .expect("snapshot");

    let allow = "\"pg.create_index_advised\"";
    let config = actuate_config(
        dir.path(),
        &broker,
        &topics,
        &unique_name("actuator"),
        allow,
        &postgres.connection_string(),
    );
    let mut first = actuate(&config, &dir.path().join("first.log"));
    let create = event(
        "create.1",
        "pg.create_index_advised",
        &[("table", ParamValue::String("orders".into()))],
        false,
    );
    let codec = Codec::new(WireFormat::Confluent, Arc::new(SchemaRegistry::builtin()));
    let sink = KafkaSink::new(&broker.kafka_config(), SinkConfig::default()).expect("sink");
    let mut writer = RecordWriter::new(sink, codec.clone(), 10);
    writer
        .send(&topics.remediation, &create)
        .await
        .expect("send");
    writer.finish().await.expect("delivered");

    // The build starts and waits for the snapshot: kill -9 the actuator then.
    let index = advised_index_name("create.1");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let building = index_builds(&db).await;
        if building > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the build never started: {}",
            std::fs::read_to_string(dir.path().join("first.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pid = first.id().expect("running");
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let _ = first.wait().await;
    // The server notices its client is gone and abandons the build: an invalid index.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let building = index_builds(&db).await;
        if building == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the orphaned build never stopped"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let valid: Option<bool> = db
        .query_opt(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)",
            &[&index],
        )
        .await
        .expect("index")
        .map(|row| row.get(0));
    assert_eq!(
        valid,
        Some(false),
        "the interrupted build left an invalid index"
    );
    snapshot.batch_execute("COMMIT").await.expect("commit");

    // A restart (a new group: the broker may hold the dead member's partitions) gets the
    // event again, finds it executed and its claim taken: it drops the invalid index and
    // never builds it again.
    let config = actuate_config(
        dir.path(),
        &broker,
        &topics,
        &unique_name("restarted"),
        allow,
        &postgres.connection_string(),
    );
    let _second = actuate(&config, &dir.path().join("second.log"));
    let consumer = consumer_of(&broker, &topics.actions);
    let mut seen = Vec::new();
    wait_for_step(
        &consumer,
        &codec,
        &mut seen,
        "create.1",
        ActionStep::RolledBack,
    )
    .await;
    load.abort();
    assert_eq!(
        steps_of(&seen, "create.1"),
        [
            ActionStep::Planned,
            ActionStep::Executed,
            ActionStep::RolledBack
        ],
        "{seen:#?}"
    );
    let left: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE c.relname LIKE 'opsloop_%'",
            &[],
        )
        .await
        .expect("indexes")
        .get(0);
    assert_eq!(left, 0, "no index of the action is left, valid or not");
    let claims: i64 = db
        .query_one(
            "SELECT count(*) FROM opsloop.action_claims WHERE action_id = 'create.1'",
            &[],
        )
        .await
        .expect("claims")
        .get(0);
    assert_eq!(claims, 1);
    let audit = succeeded(
        &opsloop(vec![
            "audit".to_owned(),
            "verify".to_owned(),
            "--log".to_owned(),
            dir.path().join("audit.jsonl").display().to_string(),
        ])
        .await,
    );
    assert!(audit.contains("3 entries, hash chain intact"), "{audit}");
}

/// An actuator with its metrics `host:port` (read from its first line of output).
async fn actuate_serving(config: &Path, log: &Path) -> (Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = actuate_with_stdout(config, log, Stdio::piped());
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = lines
        .next_line()
        .await
        .expect("reads")
        .expect("a first line");
    let address = first
        .strip_prefix("metrics on http://")
        .and_then(|url| url.strip_suffix("/metrics"))
        .expect("the metrics address")
        .to_owned();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, address)
}

async fn health(address: &str) -> (u16, String) {
    let address = address.to_owned();
    tokio::task::spawn_blocking(move || http_get(&address, "/healthz"))
        .await
        .expect("joined")
        .expect("answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actuator_without_partitions_says_so() {
    let postgres = TestPostgres::start().await.expect("postgres");
    let broker = TestBroker::start().await.expect("broker");
    let topics = Topics::create(&broker).await;
    let dir = tempfile::tempdir().expect("dir");
    let group = unique_name("pair");
    let config = actuate_config(
        dir.path(),
        &broker,
        &topics,
        &group,
        "",
        &postgres.connection_string(),
    );
    let (_first, first) = actuate_serving(&config, &dir.path().join("first.log")).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_second, second) = actuate_serving(&config, &dir.path().join("second.log")).await;
    // One partition per topic, two members: one of them holds nothing, and says so.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (idle, busy) = loop {
        let answers = [health(&first).await, health(&second).await];
        if let Some(idle) = answers.iter().position(|(status, _)| *status == 503) {
            break (answers[idle].clone(), answers[1 - idle].clone());
        }
        assert!(
            Instant::now() < deadline,
            "nobody reported no partitions: {answers:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        idle.1.contains("no partition of the remediation topic"),
        "{}",
        idle.1
    );
    assert_eq!(busy.0, 200, "{}", busy.1);
    let logs = std::fs::read_to_string(dir.path().join("first.log")).unwrap_or_default()
        + &std::fs::read_to_string(dir.path().join("second.log")).unwrap_or_default();
    assert!(logs.contains("assignment changed"), "{logs}");
}
