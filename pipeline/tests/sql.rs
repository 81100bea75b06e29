//! `opsloop sql` over the real broker: a hand-built history of alerts, incidents, remediation
//! events and action outcomes, published as Confluent-framed Avro, queried through the binary;
//! every expected value below is worked out by hand from that history.
//!
//! - Tables, enum strings, GROUP BY, a join, and every built-in view (`incidents_latest`, the
//!   `kpi_*` views) against the hand-checked values.
//! - A record that does not decode is skipped with a warning naming its offset.
//! - CSV, JSON lines and Parquet output parse back to the same values; a pretty table prints.
//! - `--from` earliest, latest-N and a time; a missing topic is an empty table; a bad query
//!   fails naming the query and DataFusion's reason.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrow::array::AsArray;
use opsloop_connectors::kafka::{KafkaSink, OutgoingRecord, SinkConfig};
use opsloop_schemas::calendar::civil_from_days;
use opsloop_schemas::ops::{
    ActionOutcome, ActionStep, Alert, Incident, IncidentState, RemediationEvent, RemediationKind,
    SeverityBand, Tier,
};
use opsloop_schemas::{AvroRecord, Codec, SchemaRegistry, WireFormat};
use opsloop_tests::{TestBroker, unique_name};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;
use support::{opsloop, succeeded};

/// 2024-05-01T00:00:00Z in µs: "day 1"; day 2 starts a day later.
const DAY1_US: i64 = 1_714_521_600_000_000;
const DAY_US: i64 = 86_400_000_000;
const HOUR_US: i64 = 3_600_000_000;
const SECOND_US: i64 = 1_000_000;

fn confluent() -> Codec {
    Codec::new(WireFormat::Confluent, Arc::new(SchemaRegistry::builtin()))
}

/// Publishes records one at a time, each acknowledged before the next is sent.
///
/// tansu's in-memory storage answers "latest offset" with the base offset of a partition's last
/// record batch plus one, so several records batched into one produce request would look like
/// one to a bounded scan there; one record per request keeps every batch a single record.
struct Publisher {
    sink: KafkaSink,
    codec: Codec,
}

impl Publisher {
    fn new(broker: &TestBroker) -> Publisher {
        Publisher {
            sink: KafkaSink::new(&broker.kafka_config(), SinkConfig::default()).expect("sink"),
            codec: confluent(),
        }
    }

    async fn send<T: AvroRecord>(&self, topic: &str, record: &T) {
        let payload = self.codec.encode(record).expect("encodes");
        self.send_bytes(topic, record.partition_key().as_bytes(), &payload)
            .await;
    }

    async fn send_bytes(&self, topic: &str, key: &[u8], payload: &[u8]) {
        self.sink
            .send(OutgoingRecord::new(topic, Some(key), payload))
            .await
            .expect("delivered");
    }
}

/// The four topics of one test, with `--topic` arguments naming them.
struct Topics {
    alerts: String,
    incidents: String,
    remediation: String,
    actions: String,
}

impl Topics {
    async fn create(broker: &TestBroker) -> Topics {
        Topics {
            alerts: broker.create_topic("sql-alerts", 2).await.expect("topic"),
            incidents: broker
                .create_topic("sql-incidents", 2)
                .await
                .expect("topic"),
            remediation: broker
                .create_topic("sql-remediation", 2)
                .await
                .expect("topic"),
            actions: broker.create_topic("sql-actions", 3).await.expect("topic"),
        }
    }

    fn args(&self, broker: &TestBroker) -> Vec<String> {
        vec![
            "sql".into(),
            "--brokers".into(),
            broker.bootstrap().into(),
            "--topic".into(),
            format!("alerts={}", self.alerts),
            "--topic".into(),
            format!("incidents={}", self.incidents),
            "--topic".into(),
            format!("remediation={}", self.remediation),
            "--topic".into(),
            format!("actions={}", self.actions),
        ]
    }
}

/// Runs `query` with `extra` arguments and returns its JSON rows.
async fn query_json(broker: &TestBroker, topics: &Topics, query: &str) -> Vec<Value> {
    let mut args = topics.args(broker);
    args.extend(["--format".into(), "json".into(), query.into()]);
    let stdout = succeeded(&opsloop(args).await);
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON object per line"))
        .collect()
}

/// The one row of a single-row query.
async fn one_row(broker: &TestBroker, topics: &Topics, query: &str) -> Value {
    let rows = query_json(broker, topics, query).await;
    assert_eq!(rows.len(), 1, "{query}: {rows:?}");
    rows.into_iter().next().expect("one row")
}

fn f64_of(row: &Value, column: &str) -> f64 {
    row[column]
        .as_f64()
        .unwrap_or_else(|| panic!("{column} is a number in {row}"))
}

fn assert_close(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() < 1e-9,
        "{what}: {actual} != {expected}"
    );
}

fn incident(
    id: &str,
    version: i64,
    tier: Tier,
    state: IncidentState,
    opened_us: i64,
    resolved_after_s: Option<i64>,
) -> Incident {
    let resolved_us = resolved_after_s.map(|seconds| opened_us + seconds * SECOND_US);
    Incident {
        version,
        severity: 0.7,
        tier,
        state,
        opened_us,
        updated_us: resolved_us.unwrap_or(opened_us + version * SECOND_US),
        resolved_us,
        alert_ids: vec![format!("alert-{id}-a"), format!("alert-{id}-b")],
        alert_types: vec!["latency_spike".into()],
        ..Incident::new(id, format!("db-{id}"), "latency", "performance")
    }
}

fn remediation(action_id: &str, incident_id: &str, approval_required: bool) -> RemediationEvent {
    RemediationEvent {
        action_id: action_id.into(),
        incident_id: incident_id.into(),
        kind: RemediationKind::Reactive,
        band: SeverityBand::Corrective,
        template: "kill_long_queries".into(),
        params: BTreeMap::from([(
            "max_seconds".to_owned(),
            opsloop_schemas::ops::ParamValue::Long(30),
        )]),
        target: "db-1".into(),
        risk: 0.2,
        approval_required,
        rollback_template: None,
        agent: "performance".into(),
        rationale: String::new(),
        created_us: DAY1_US,
        deadline_us: None,
        attempt: 1,
        signature: String::new(),
    }
}

/// One step of `action_id`, `after_s` seconds after its incident opened at `opened_us`.
fn step(
    action_id: &str,
    incident_id: &str,
    step: ActionStep,
    automated: bool,
    opened_us: i64,
    after_s: i64,
) -> ActionOutcome {
    ActionOutcome {
        action_id: action_id.into(),
        incident_id: incident_id.into(),
        step,
        template: "kill_long_queries".into(),
        target: "db-1".into(),
        time_us: opened_us + after_s * SECOND_US,
        detail: String::new(),
        automated,
        before: BTreeMap::new(),
        after: BTreeMap::new(),
        prev_hash: String::new(),
        hash: format!("{action_id}-{step:?}"),
        params: BTreeMap::new(),
        digest: String::new(),
        attempt: 1,
    }
}

fn alert(id: &str, alert_type: &str, entity: &str, window_start_us: i64) -> Alert {
    Alert {
        alert_id: id.into(),
        entity: entity.into(),
        detector: alert_type.into(),
        alert_type: alert_type.into(),
        score: 4.0,
        severity: 0.6,
        window_start_us,
        window_end_us: window_start_us + 60 * SECOND_US,
        evidence: BTreeMap::from([("p99_ms".to_owned(), 950.0)]),
        labels: BTreeMap::new(),
        emitted_us: window_start_us + 61 * SECOND_US,
    }
}

// When each incident opened.
const INC1_OPENED: i64 = DAY1_US + 10 * HOUR_US;
const INC2_OPENED: i64 = DAY1_US + 12 * HOUR_US;
const INC5_OPENED: i64 = DAY1_US + 20 * HOUR_US;
const INC3_OPENED: i64 = DAY1_US + DAY_US + 9 * HOUR_US;
const INC4_OPENED: i64 = DAY1_US + DAY_US + 15 * HOUR_US;

/// Publishes the history every expected value in `the_ops_topics_answer_...` is worked out
/// from:
///
/// | incident | day | versions (state, tier)                          | resolved after |
/// |----------|-----|-------------------------------------------------|----------------|
/// | inc-1    | 1   | 1 OPEN T1, 2 UPDATED T1, 3 RESOLVED T1 (twice)  | 600 s          |
/// | inc-2    | 1   | 2 RESOLVED T2 published before 1 OPEN T2        | 1800 s         |
/// | inc-5    | 1   | 1 OPEN T1                                       | -              |
/// | inc-3    | 2   | 1 OPEN T2, 2 ACKNOWLEDGED T1 (escalated)        | -              |
/// | inc-4    | 2   | 1 OPEN T3, 2 RESOLVED T3                        | 3600 s         |
///
/// | action | incident | approval required | steps (automated unless "manual", seconds after the incident opened) |
/// |--------|----------|-------------------|------------------------------------------------|
/// | act-1  | inc-1    | no  | PLANNED 60, EXECUTED 120, VERIFIED 300                       |
/// | act-5  | inc-1    | no  | PLANNED 20, SKIPPED 25                                       |
/// | act-2  | inc-2    | yes | PLANNED 30, APPROVED 200 manual, EXECUTED 240, VERIFIED 600  |
/// | act-3  | inc-3    | yes | PLANNED 10, EXECUTED 40, VERIFIED 100, ROLLED_BACK 400       |
/// | act-4  | inc-4    | no  | PLANNED 50, EXECUTED 900 manual, VERIFIED 1200               |
/// | act-6  | inc-5    | no  | PLANNED 5, EXECUTED 90, FAILED 95                            |
///
/// Alerts: four, two latency_spike (db-1, db-2), one connection_exhaustion, one
/// replication_lag; then one record on the alerts topic that is not Avro at all.
async fn publish_history(broker: &TestBroker, topics: &Topics) {
    use ActionStep::*;
    use IncidentState::*;
    use Tier::*;

    let publisher = Publisher::new(broker);

    for record in [
        alert("alert-1", "latency_spike", "db-1", INC1_OPENED),
        alert("alert-2", "latency_spike", "db-2", INC2_OPENED),
        alert("alert-3", "connection_exhaustion", "db-3", INC3_OPENED),
        alert("alert-4", "replication_lag", "db-4", INC4_OPENED),
    ] {
        publisher.send(&topics.alerts, &record).await;
    }
    publisher
        .send_bytes(&topics.alerts, b"db-9", b"not avro at all")
        .await;

    for record in [
        incident("inc-1", 1, T1, Open, INC1_OPENED, None),
        incident("inc-1", 2, T1, Updated, INC1_OPENED, None),
        incident("inc-1", 3, T1, Resolved, INC1_OPENED, Some(600)),
        incident("inc-1", 3, T1, Resolved, INC1_OPENED, Some(600)),
        incident("inc-2", 2, T2, Resolved, INC2_OPENED, Some(1800)),
        incident("inc-2", 1, T2, Open, INC2_OPENED, None),
        incident("inc-5", 1, T1, Open, INC5_OPENED, None),
        incident("inc-3", 1, T2, Open, INC3_OPENED, None),
        incident("inc-3", 2, T1, Acknowledged, INC3_OPENED, None),
        incident("inc-4", 1, T3, Open, INC4_OPENED, None),
        incident("inc-4", 2, T3, Resolved, INC4_OPENED, Some(3600)),
    ] {
        publisher.send(&topics.incidents, &record).await;
    }

    for record in [
        remediation("act-1", "inc-1", false),
        remediation("act-5", "inc-1", false),
        remediation("act-2", "inc-2", true),
        remediation("act-3", "inc-3", true),
        remediation("act-4", "inc-4", false),
        remediation("act-6", "inc-5", false),
    ] {
        publisher.send(&topics.remediation, &record).await;
    }

    for record in [
        step("act-1", "inc-1", Planned, true, INC1_OPENED, 60),
        step("act-1", "inc-1", Executed, true, INC1_OPENED, 120),
        step("act-1", "inc-1", Verified, true, INC1_OPENED, 300),
        step("act-5", "inc-1", Planned, true, INC1_OPENED, 20),
        step("act-5", "inc-1", Skipped, true, INC1_OPENED, 25),
        step("act-2", "inc-2", Planned, true, INC2_OPENED, 30),
        step("act-2", "inc-2", Approved, false, INC2_OPENED, 200),
        step("act-2", "inc-2", Executed, true, INC2_OPENED, 240),
        step("act-2", "inc-2", Verified, true, INC2_OPENED, 600),
        step("act-3", "inc-3", Planned, true, INC3_OPENED, 10),
        step("act-3", "inc-3", Executed, true, INC3_OPENED, 40),
        step("act-3", "inc-3", Verified, true, INC3_OPENED, 100),
        step("act-3", "inc-3", RolledBack, true, INC3_OPENED, 400),
        step("act-4", "inc-4", Planned, true, INC4_OPENED, 50),
        step("act-4", "inc-4", Executed, false, INC4_OPENED, 900),
        step("act-4", "inc-4", Verified, true, INC4_OPENED, 1200),
        step("act-6", "inc-5", Planned, true, INC5_OPENED, 5),
        step("act-6", "inc-5", Executed, true, INC5_OPENED, 90),
        step("act-6", "inc-5", Failed, true, INC5_OPENED, 95),
    ] {
        publisher.send(&topics.actions, &record).await;
    }
}

fn strings(rows: &[Value], column: &str) -> Vec<String> {
    rows.iter()
        .map(|row| {
            row[column]
                .as_str()
                .unwrap_or_else(|| panic!("{column} is a string in {row}"))
                .to_owned()
        })
        .collect()
}

fn integers(rows: &[Value], column: &str) -> Vec<i64> {
    rows.iter()
        .map(|row| {
            row[column]
                .as_i64()
                .unwrap_or_else(|| panic!("{column} is an integer in {row}"))
        })
        .collect()
}

#[tokio::test]
async fn the_ops_topics_answer_queries_and_kpis_with_hand_checked_values() {
    let broker = TestBroker::start().await.expect("broker");
    let topics = Topics::create(&broker).await;
    publish_history(&broker, &topics).await;

    // Every record is a row: 4 alerts (the fifth record does not decode), 11 incident
    // versions (one published twice), 6 remediation events, 19 action steps.
    let counts = one_row(
        &broker,
        &topics,
        "SELECT (SELECT count(*) FROM alerts) AS alerts, \
                (SELECT count(*) FROM incidents) AS incidents, \
                (SELECT count(*) FROM remediation) AS remediation, \
                (SELECT count(*) FROM actions) AS actions, \
                (SELECT count(*) FROM incidents_latest) AS latest",
    )
    .await;
    assert_eq!(counts["alerts"], 4, "{counts}");
    assert_eq!(counts["incidents"], 11, "{counts}");
    assert_eq!(counts["remediation"], 6, "{counts}");
    assert_eq!(counts["actions"], 19, "{counts}");
    assert_eq!(counts["latest"], 5, "one row per incident: {counts}");

    // Enums are their Avro symbols.
    let steps = query_json(
        &broker,
        &topics,
        "SELECT DISTINCT step FROM actions ORDER BY step",
    )
    .await;
    assert_eq!(
        strings(&steps, "step"),
        [
            "APPROVED",
            "EXECUTED",
            "FAILED",
            "PLANNED",
            "ROLLED_BACK",
            "SKIPPED",
            "VERIFIED"
        ]
    );

    // The latest version: inc-2's is version 2 (RESOLVED) although version 1 came later on
    // the topic; inc-3 escalated from T2 to T1.
    let latest = query_json(
        &broker,
        &topics,
        "SELECT incident_id, version, state, tier FROM incidents_latest ORDER BY incident_id",
    )
    .await;
    assert_eq!(
        strings(&latest, "incident_id"),
        ["inc-1", "inc-2", "inc-3", "inc-4", "inc-5"]
    );
    assert_eq!(integers(&latest, "version"), [3, 2, 2, 2, 1]);
    assert_eq!(
        strings(&latest, "state"),
        ["RESOLVED", "RESOLVED", "ACKNOWLEDGED", "RESOLVED", "OPEN"]
    );
    assert_eq!(strings(&latest, "tier"), ["T1", "T2", "T1", "T3", "T1"]);

    // GROUP BY tier over the latest versions: T1 = inc-1, inc-3, inc-5; T2 = inc-2; T3 = inc-4.
    let tiers = query_json(
        &broker,
        &topics,
        "SELECT tier, count(*) AS incidents FROM incidents_latest GROUP BY tier ORDER BY tier",
    )
    .await;
    assert_eq!(strings(&tiers, "tier"), ["T1", "T2", "T3"]);
    assert_eq!(integers(&tiers, "incidents"), [3, 1, 1]);

    // Alerts per type: latency_spike twice.
    let types = query_json(
        &broker,
        &topics,
        "SELECT alert_type, count(*) AS n FROM alerts GROUP BY alert_type ORDER BY n DESC, alert_type",
    )
    .await;
    assert_eq!(
        strings(&types, "alert_type"),
        ["latency_spike", "connection_exhaustion", "replication_lag"]
    );
    assert_eq!(integers(&types, "n"), [2, 1, 1]);

    // A join: incidents with their actions (inc-1 has act-1 and act-5) and the steps of them.
    let joined = query_json(
        &broker,
        &topics,
        "SELECT i.incident_id, i.tier, count(DISTINCT a.action_id) AS actions, count(*) AS steps \
         FROM incidents_latest i JOIN actions a ON a.incident_id = i.incident_id \
         GROUP BY i.incident_id, i.tier ORDER BY i.incident_id",
    )
    .await;
    assert_eq!(
        strings(&joined, "incident_id"),
        ["inc-1", "inc-2", "inc-3", "inc-4", "inc-5"]
    );
    assert_eq!(strings(&joined, "tier"), ["T1", "T2", "T1", "T3", "T1"]);
    assert_eq!(integers(&joined, "actions"), [2, 1, 1, 1, 1]);
    // inc-1: 3 + 2; inc-2: 4; inc-3: 4; inc-4: 3; inc-5: 3.
    assert_eq!(integers(&joined, "steps"), [5, 4, 4, 3, 3]);

    // MTTR: inc-1 600 s, inc-2 1800 s, inc-4 3600 s resolved; (600 + 1800 + 3600) / 3 = 2000 s.
    let mttr = one_row(&broker, &topics, "SELECT * FROM kpi_mttr").await;
    assert_eq!(mttr["resolved_incidents"], 3, "{mttr}");
    assert_close(f64_of(&mttr, "mttr_s"), 2000.0, "mttr_s");

    // Manual intervention: 5 incidents have actions; inc-2 (APPROVED by a person) and inc-4
    // (EXECUTED by a person) had manual steps: 2 / 5 = 0.4.
    let manual = one_row(
        &broker,
        &topics,
        "SELECT * FROM kpi_manual_intervention_rate",
    )
    .await;
    assert_eq!(manual["incidents_with_actions"], 5, "{manual}");
    assert_eq!(manual["incidents_with_manual_steps"], 2, "{manual}");
    assert_close(
        f64_of(&manual, "manual_intervention_rate"),
        0.4,
        "manual_intervention_rate",
    );

    // Operation success: executed act-1, act-2, act-3, act-4, act-6 (act-5 was skipped);
    // act-1, act-2, act-4 verified and kept; act-3 rolled back, act-6 failed: 3 / 5 = 0.6.
    let success = one_row(&broker, &topics, "SELECT * FROM kpi_operation_success_rate").await;
    assert_eq!(success["executed_actions"], 5, "{success}");
    assert_eq!(success["succeeded_actions"], 3, "{success}");
    assert_close(
        f64_of(&success, "operation_success_rate"),
        0.6,
        "operation_success_rate",
    );

    // Automated response: first automated EXECUTED of inc-1 at 120 s, inc-2 240 s, inc-3 40 s,
    // inc-5 90 s (inc-4 was executed by a person): (120 + 240 + 40 + 90) / 4 = 122.5 s.
    let response = one_row(
        &broker,
        &topics,
        "SELECT * FROM kpi_automated_response_time",
    )
    .await;
    assert_eq!(response["responded_incidents"], 4, "{response}");
    assert_close(
        f64_of(&response, "automated_response_s"),
        122.5,
        "automated_response_s",
    );

    // Compliance: of the 5 executed actions, act-2 and act-3 needed approval; act-2 has an
    // APPROVED step, act-3 none: 1 / 5 = 0.2.
    let compliance = one_row(
        &broker,
        &topics,
        "SELECT * FROM kpi_compliance_violation_rate",
    )
    .await;
    assert_eq!(compliance["executed_actions"], 5, "{compliance}");
    assert_eq!(compliance["violations"], 1, "{compliance}");
    assert_close(
        f64_of(&compliance, "compliance_violation_rate"),
        0.2,
        "compliance_violation_rate",
    );

    // Per day and tier: day 1 T1 = inc-1, inc-5; day 1 T2 = inc-2; day 2 T1 = inc-3 (its
    // latest tier); day 2 T3 = inc-4.
    let per_day = query_json(
        &broker,
        &topics,
        "SELECT CAST(day AS VARCHAR) AS day, tier, incidents FROM kpi_incidents_per_tier_per_day \
         ORDER BY day, tier",
    )
    .await;
    assert_eq!(
        strings(&per_day, "day"),
        ["2024-05-01", "2024-05-01", "2024-05-02", "2024-05-02"]
    );
    assert_eq!(strings(&per_day, "tier"), ["T1", "T2", "T1", "T3"]);
    assert_eq!(integers(&per_day, "incidents"), [2, 1, 1, 1]);
}

#[tokio::test]
async fn results_are_written_as_csv_json_parquet_and_a_table() {
    let broker = TestBroker::start().await.expect("broker");
    let topics = Topics::create(&broker).await;
    publish_history(&broker, &topics).await;

    // CSV, with a nested column (alert_ids) written as text; the warning of the record that
    // does not decode names its partition and offset.
    let mut args = topics.args(&broker);
    args.extend([
        "--format".into(),
        "csv".into(),
        "SELECT incident_id, tier, alert_ids, CAST(resolved_us AS BIGINT) AS resolved \
         FROM incidents_latest ORDER BY incident_id"
            .into(),
    ]);
    let output = opsloop(args).await;
    let stdout = succeeded(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("does not decode") && stderr.contains("offset="),
        "the undecodable alert is reported with its offset: {stderr}"
    );
    assert!(stderr.contains("skipped=1"), "{stderr}");
    let mut reader = csv::Reader::from_reader(stdout.as_bytes());
    assert_eq!(
        reader.headers().expect("header").iter().collect::<Vec<_>>(),
        ["incident_id", "tier", "alert_ids", "resolved"]
    );
    let records: Vec<csv::StringRecord> = reader
        .records()
        .collect::<Result<_, _>>()
        .expect("CSV rows");
    assert_eq!(records.len(), 5);
    assert_eq!(&records[0][0], "inc-1");
    assert_eq!(&records[0][1], "T1");
    assert_eq!(&records[0][2], "[alert-inc-1-a, alert-inc-1-b]");
    assert_eq!(
        records[0][3].parse::<i64>().expect("µs"),
        INC1_OPENED + 600 * SECOND_US
    );
    assert_eq!(&records[2][3], "", "inc-3 is not resolved");

    // JSON lines keep nested values as JSON.
    let rows = query_json(
        &broker,
        &topics,
        "SELECT incident_id, alert_ids FROM incidents_latest WHERE incident_id = 'inc-4'",
    )
    .await;
    assert_eq!(
        rows,
        [serde_json::json!({
            "incident_id": "inc-4",
            "alert_ids": ["alert-inc-4-a", "alert-inc-4-b"],
        })]
    );

    // Parquet: every remediation column, the typed params (a union) as text.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("remediation.parquet");
    let mut args = topics.args(&broker);
    args.extend([
        "--format".into(),
        "parquet".into(),
        "--output".into(),
        path.display().to_string(),
        "SELECT * FROM remediation ORDER BY action_id".into(),
    ]);
    succeeded(&opsloop(args).await);
    let file = std::fs::File::open(&path).expect("the Parquet file exists");
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("a Parquet file")
        .build()
        .expect("reader");
    let batches: Vec<_> = reader.collect::<Result<_, _>>().expect("batches");
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 6);
    let batch = &batches[0];
    let ids = batch
        .column_by_name("action_id")
        .expect("action_id")
        .as_string::<i32>();
    assert_eq!(ids.value(0), "act-1");
    let required = batch
        .column_by_name("approval_required")
        .expect("approval_required")
        .as_boolean();
    // act-1, act-2, act-3, ...: only act-2 and act-3 need approval.
    assert!(!required.value(0) && required.value(1) && required.value(2));
    let params = batch
        .column_by_name("params")
        .expect("params")
        .as_string::<i32>();
    assert!(
        params.value(0).contains("max_seconds") && params.value(0).contains("30"),
        "{}",
        params.value(0)
    );
    assert!(batch.column_by_name("_offset").is_some());

    // Parquet without a file is refused before anything is read.
    let mut args = topics.args(&broker);
    args.extend(["--format".into(), "parquet".into(), "SELECT 1".into()]);
    let output = opsloop(args).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--output"));

    // The pretty table.
    let mut args = topics.args(&broker);
    args.push(
        "SELECT tier, count(*) AS incidents FROM incidents_latest GROUP BY tier ORDER BY tier"
            .into(),
    );
    let table = succeeded(&opsloop(args).await);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines,
        [
            "+------+-----------+",
            "| tier | incidents |",
            "+------+-----------+",
            "| T1   | 3         |",
            "| T2   | 1         |",
            "| T3   | 1         |",
            "+------+-----------+",
        ]
    );
}

#[tokio::test]
async fn from_picks_the_start_and_a_missing_topic_is_an_empty_table() {
    let broker = TestBroker::start().await.expect("broker");
    let alerts = broker.create_topic("sql-from", 1).await.expect("topic");
    // Five alerts: two, then (a second either side of `between`) three more, each with the
    // time it was produced as its record timestamp.
    let publisher = Publisher::new(&broker);
    let mut between = String::new();
    for index in 0..5 {
        if index == 2 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            between = rfc3339(SystemTime::now());
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let record = alert(&format!("alert-{index}"), "latency_spike", "db-1", DAY1_US);
        publisher.send(&alerts, &record).await;
    }
    let missing = unique_name("sql-missing");

    let ids = |from: &str| {
        let args = vec![
            "sql".to_owned(),
            "--brokers".into(),
            broker.bootstrap().into(),
            "--topic".into(),
            format!("alerts={alerts}"),
            "--topic".into(),
            format!("incidents={missing}"),
            "--from".into(),
            from.into(),
            "--format".into(),
            "json".into(),
            "SELECT alert_id, _partition, _offset, (SELECT count(*) FROM incidents) AS incidents \
             FROM alerts ORDER BY _offset"
                .into(),
        ];
        async move {
            let output = opsloop(args).await;
            let stdout = succeeded(&output);
            let rows: Vec<Value> = stdout
                .lines()
                .map(|line| serde_json::from_str(line).expect("JSON"))
                .collect();
            for row in &rows {
                assert_eq!(row["incidents"], 0, "the missing topic is an empty table");
                assert_eq!(row["_partition"], 0);
            }
            (
                strings(&rows, "alert_id"),
                integers(&rows, "_offset"),
                output,
            )
        }
    };

    let (all, offsets, output) = ids("earliest").await;
    assert_eq!(all, ["alert-0", "alert-1", "alert-2", "alert-3", "alert-4"]);
    assert_eq!(offsets, [0, 1, 2, 3, 4]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("does not exist") && stderr.contains(&missing),
        "a missing topic is reported: {stderr}"
    );

    let (last, _, _) = ids("latest-2").await;
    assert_eq!(last, ["alert-3", "alert-4"]);
    let (none, _, _) = ids("latest-0").await;
    assert!(none.is_empty(), "{none:?}");

    let (since, offsets, _) = ids(&between).await;
    assert_eq!(since, ["alert-2", "alert-3", "alert-4"], "from {between}");
    assert_eq!(offsets, [2, 3, 4]);
}

/// `time` as an RFC 3339 UTC time with microseconds.
fn rfc3339(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).expect("after 1970");
    let seconds = i64::try_from(since_epoch.as_secs()).expect("in range");
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let of_day = seconds.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        since_epoch.subsec_micros()
    )
}

#[tokio::test]
async fn a_bad_query_fails_naming_the_query_and_the_reason() {
    let broker = TestBroker::start().await.expect("broker");
    let topics = Topics::create(&broker).await;
    let mut args = topics.args(&broker);
    args.push("SELECT nope FROM alerts".into());
    let output = opsloop(args).await;
    assert!(!output.status.success(), "a bad query fails");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("SELECT nope FROM alerts") && stderr.contains("nope"),
        "{stderr}"
    );
    assert!(
        stderr.to_lowercase().contains("field") || stderr.to_lowercase().contains("column"),
        "DataFusion's reason is shown: {stderr}"
    );

    let mut args = topics.args(&broker);
    args.extend(["--from".into(), "yesterday".into(), "SELECT 1".into()]);
    let output = opsloop(args).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("RFC 3339"));
}
