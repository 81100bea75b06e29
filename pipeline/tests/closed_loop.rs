//! The closed loop on a real PostgreSQL 15 and the real broker, at the default configuration
//! (grouping, verification): `opsloop collect postgres` publishes the database's statistics,
//! `opsloop run` detects (the repository's `sql/`), correlates and plans, `opsloop actuate`
//! acts under governance and verifies by the probe and by the incident's alerts staying clear.
//! Faults injected — a runaway query holding a lock; three sessions idle in a transaction
//! holding row locks four others wait for; then together a dropped index that turns a hot
//! lookup into sequential scans, a bloated index and a stale materialized view; then the view
//! going stale again — and each must end VERIFIED on `ops.actions`: the blockers ended and
//! their victims done, the stale view refreshed a second time, nothing executed outside the
//! allow-list or twice. Prints the fault-to-verified-recovery time per fault, the operation
//! success rate and the manual intervention rate.

#[path = "support/actuate.rs"]
mod actuate_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actuate_support::{ActuateTopics, actuate_toml};
use opsloop_actions::{Executor, TemplateId};
use opsloop_schemas::ops::{ActionOutcome, ActionStep};
use opsloop_schemas::{Codec, SchemaRegistry, WireFormat};
use opsloop_tests::{
    ACCOUNTS, LockContention, TestBroker, TestPostgres, orders_lookups, unique_name,
};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::process::{Child, Command};
use tokio_postgres::Client;

/// Detection (30 s windows), the group's first wait (30 s), the action, and the windows after
/// it that verification waits for.
const WAIT_PER_FAULT: Duration = Duration::from_secs(240);

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn spawn(args: &[&str], log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_opsloop"))
        .args(args)
        .env("OPSLOOP_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .kill_on_drop(true)
        .spawn()
        .expect("opsloop starts")
}

async fn connect(postgres: &TestPostgres) -> Client {
    postgres.connect().await.expect("connect")
}

struct Outcomes {
    consumer: BaseConsumer,
    codec: Codec,
    seen: Vec<ActionOutcome>,
}

impl Outcomes {
    fn new(broker: &TestBroker, topic: &str) -> Self {
        let consumer: BaseConsumer = broker
            .kafka_config()
            .client_config()
            .set("group.id", unique_name("outcomes"))
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        Outcomes {
            consumer,
            codec: Codec::new(WireFormat::Confluent, Arc::new(SchemaRegistry::builtin())),
            seen: Vec::new(),
        }
    }

    /// Polls until an outcome matches `done` or `wait` passes.
    async fn wait_for(
        &mut self,
        wait: Duration,
        done: impl Fn(&ActionOutcome) -> bool,
    ) -> Option<ActionOutcome> {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Some(found) = self.seen.iter().find(|o| done(o)) {
                return Some(found.clone());
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    if let Some(outcome) = message
                        .payload()
                        .and_then(|p| self.codec.decode::<ActionOutcome>(p).ok())
                    {
                        eprintln!(
                            "outcome: {:?} {} {} {}",
                            outcome.step, outcome.template, outcome.target, outcome.detail
                        );
                        self.seen.push(outcome);
                    }
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_on_a_real_postgres_are_detected_remediated_verified_and_audited() {
    let postgres = TestPostgres::start().await.expect("postgres");
    let broker = TestBroker::start().await.expect("broker");
    let dir = tempfile::tempdir().expect("dir");
    let mut topics = BTreeMap::new();
    for name in [
        "metrics",
        "gpu",
        "alerts",
        "incidents",
        "remediation",
        "actions",
        "approvals",
        "cycles",
        "forecasts",
        "deadletter",
    ] {
        topics.insert(name, broker.create_topic(name, 1).await.expect("topic"));
    }
    let db = connect(&postgres).await;
    db.batch_execute(ACCOUNTS).await.expect("accounts");
    db.batch_execute(
        "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
         CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint, note text);
         INSERT INTO orders SELECT g, g % 1000, 'n' || g FROM generate_series(1, 200000) g;
         CREATE INDEX orders_customer_idx ON orders (customer_id);
         CREATE TABLE items (id bigint PRIMARY KEY, sku text);
         INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 200000) g;
         CREATE INDEX items_sku_idx ON items (sku);
         CREATE TABLE events (id bigint PRIMARY KEY, kind int);
         INSERT INTO events SELECT g, g % 10 FROM generate_series(1, 1000) g;
         CREATE MATERIALIZED VIEW event_counts AS SELECT kind, count(*) AS n FROM events GROUP BY kind;
         CREATE UNIQUE INDEX ON event_counts (kind);
         CREATE TABLE jobs (id int PRIMARY KEY); INSERT INTO jobs VALUES (1);
         ANALYZE;",
    )
    .await
    .expect("fixtures");
    let dsn = postgres.connection_string();
    let entity = "pg-main";

    let sql = concat!(env!("CARGO_MANIFEST_DIR"), "/../sql");
    let run_config = dir.path().join("run.toml");
    std::fs::write(
        &run_config,
        format!(
            r#"
[kafka]
brokers = "{brokers}"
group_id = "{group}"
[[sources]]
name = "metrics"
topic = "{metrics}"
format = "metric_batch"
table = "db_metrics"
[[sources]]
name = "gpu"
topic = "{gpu}"
format = "gpu_sample"
table = "gpu"
[engine]
detectors_dir = "{sql}"
tick_interval_ms = 200
[engine.watermark]
max_out_of_orderness_ms = 1000
idle_timeout_ms = 3000
allowed_lateness_ms = 0
[checkpoint]
dir = "{dir}/checkpoints"
interval_ms = 1000
retain = 2
[alerts]
topic = "{alerts}"
[incidents]
topic = "{incidents}"
[deadletter]
topic = "{deadletter}"
[metrics]
listen = "127.0.0.1:0"
[planner]
topic = "{remediation}"
actions_topic = "{actions}"
signing_key = "closed-loop planner key"
[predict]
report_topic = "{cycles}"
forecasts_topic = "{forecasts}"
"#,
            brokers = broker.bootstrap(),
            group = unique_name("loop"),
            metrics = topics["metrics"],
            gpu = topics["gpu"],
            alerts = topics["alerts"],
            incidents = topics["incidents"],
            deadletter = topics["deadletter"],
            remediation = topics["remediation"],
            actions = topics["actions"],
            cycles = topics["cycles"],
            forecasts = topics["forecasts"],
            dir = dir.path().display(),
        ),
    )
    .expect("run config");
    let actuate_config = dir.path().join("actuate.toml");
    let actuate_group = unique_name("actuator");
    let actuate_topics = ActuateTopics {
        brokers: broker.bootstrap(),
        group: &actuate_group,
        remediation: &topics["remediation"],
        approvals: &topics["approvals"],
        actions: &topics["actions"],
        incidents: &topics["incidents"],
        deadletter: &topics["deadletter"],
    };
    std::fs::write(
        &actuate_config,
        actuate_toml(
            &actuate_topics,
            ("closed-loop key", "closed-loop planner key"),
            dir.path(),
            &dsn,
            "",
            "",
        ),
    )
    .expect("actuate config");

    let logs = dir.path();
    let _collector = spawn(
        &[
            "collect",
            "postgres",
            "--dsn",
            &dsn,
            "--interval",
            "2s",
            "--entity",
            entity,
            "--metrics-topic",
            &topics["metrics"],
            "--brokers",
            broker.bootstrap(),
        ],
        &logs.join("collect.log"),
    );
    let _engine = spawn(
        &["run", "--config", run_config.to_str().expect("path")],
        &logs.join("run.log"),
    );
    let _actuator = spawn(
        &[
            "actuate",
            "--config",
            actuate_config.to_str().expect("path"),
        ],
        &logs.join("actuate.log"),
    );
    let load = orders_lookups(connect(&postgres).await, false);
    // Let the collector see the healthy state (and the view's refresh point) first.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let mut outcomes = Outcomes::new(&broker, &topics["actions"]);
    let mut recovery: BTreeMap<&str, f64> = BTreeMap::new();
    let dump_logs = || {
        for name in ["collect.log", "run.log", "actuate.log"] {
            let text = std::fs::read_to_string(logs.join(name)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            eprintln!(
                "--- {name}\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    };

    // 1. A runaway query holding a lock on jobs.
    let runaway = connect(&postgres).await;
    let injected = now_us();
    let holding = tokio::spawn(async move {
        runaway
            .batch_execute("BEGIN; LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600)")
            .await
    });
    let verified = outcomes
        .wait_for(WAIT_PER_FAULT, |o| {
            o.step == ActionStep::Verified && o.template.ends_with("_long_queries")
        })
        .await;
    if verified.is_none() {
        dump_logs();
    }
    let verified = verified.expect("the runaway query is cancelled and verified");
    recovery.insert("runaway query", (verified.time_us - injected) as f64 / 1e6);
    assert!(
        holding.await.expect("task").is_err(),
        "the runaway query was ended"
    );

    // 2. Three sessions idle in a transaction after updating a row each; four others wait.
    let injected = now_us();
    let LockContention {
        blockers: holders,
        victims,
    } = postgres.lock_contention().await.expect("lock contention");
    let verified = outcomes
        .wait_for(WAIT_PER_FAULT, |o| {
            o.step == ActionStep::Verified && o.template == "pg.terminate_blockers"
        })
        .await;
    if verified.is_none() {
        dump_logs();
    }
    let verified = verified.expect("the idle blockers are ended and verified");
    recovery.insert(
        "idle-in-transaction blockers",
        (verified.time_us - injected) as f64 / 1e6,
    );
    for victim in victims {
        assert_eq!(
            victim
                .await
                .expect("task")
                .expect("the victims are not cancelled"),
            1,
            "each victim's update went through"
        );
    }
    for holder in holders {
        assert!(
            holder.batch_execute("COMMIT").await.is_err(),
            "a blocker was ended"
        );
    }
    assert!(
        !outcomes.seen.iter().any(|o| o.step == ActionStep::Executed
            && o.template.ends_with("_long_queries")
            && o.time_us > injected),
        "no victim was cancelled as a runaway query"
    );

    // 3-5 together: drop the hot index, bloat another, make the view stale.
    let injected = now_us();
    // One statement per call: VACUUM cannot run in the implicit transaction of a batch.
    for fault in [
        "DROP INDEX orders_customer_idx",
        "DELETE FROM items WHERE id % 10 <> 0",
        "VACUUM ANALYZE items",
        "INSERT INTO events SELECT g, g % 10 FROM generate_series(1001, 5000) g",
    ] {
        db.batch_execute(fault).await.expect("fault");
    }
    for (fault, template) in [
        ("dropped index", "pg.create_index_advised"),
        ("bloated index", "pg.reindex_concurrently"),
        ("stale materialized view", "pg.refresh_materialized_view"),
    ] {
        let verified = outcomes
            .wait_for(WAIT_PER_FAULT, |o| {
                o.step == ActionStep::Verified && o.template == template
            })
            .await;
        if verified.is_none() {
            dump_logs();
        }
        let verified = verified.unwrap_or_else(|| panic!("{fault}: {template} verified"));
        recovery.insert(fault, (verified.time_us - injected) as f64 / 1e6);
    }

    // 6. The view goes stale again: refreshed again, by another action.
    let first_refresh = outcomes
        .seen
        .iter()
        .find(|o| o.step == ActionStep::Verified && o.template == "pg.refresh_materialized_view")
        .map(|o| o.action_id.clone())
        .expect("the first refresh");
    let injected = now_us();
    db.batch_execute("INSERT INTO events SELECT g, g % 10 FROM generate_series(5001, 9000) g")
        .await
        .expect("stale again");
    let verified = outcomes
        .wait_for(WAIT_PER_FAULT * 2, |o| {
            o.step == ActionStep::Verified
                && o.template == "pg.refresh_materialized_view"
                && o.action_id != first_refresh
        })
        .await;
    if verified.is_none() {
        dump_logs();
    }
    let verified = verified.expect("the view stale again is refreshed again");
    recovery.insert(
        "stale view again",
        (verified.time_us - injected) as f64 / 1e6,
    );
    load.abort();

    // Nothing outside the allow-list ran; the audit chain holds.
    let allowed: Vec<&str> = TemplateId::ALL
        .iter()
        .filter(|t| t.spec().executor == Executor::Postgres)
        .map(|t| t.as_str())
        .collect();
    let executed: Vec<&ActionOutcome> = outcomes
        .seen
        .iter()
        .filter(|o| o.step == ActionStep::Executed)
        .collect();
    assert!(
        executed
            .iter()
            .all(|o| allowed.contains(&o.template.as_str())),
        "{executed:#?}"
    );
    let mut runs: BTreeMap<&str, usize> = BTreeMap::new();
    for outcome in &executed {
        *runs.entry(outcome.action_id.as_str()).or_default() += 1;
    }
    assert!(
        runs.values().all(|&n| n == 1),
        "an action ran twice: {runs:?}"
    );
    let audit = std::process::Command::new(env!("CARGO_BIN_EXE_opsloop"))
        .args(["audit", "verify", "--log"])
        .arg(dir.path().join("audit.jsonl"))
        .output()
        .expect("audit verify");
    assert!(
        audit.status.success(),
        "{}",
        String::from_utf8_lossy(&audit.stderr)
    );

    let verified = outcomes
        .seen
        .iter()
        .filter(|o| o.step == ActionStep::Verified)
        .count();
    let manual = outcomes.seen.iter().filter(|o| !o.automated).count();
    eprintln!("fault -> verified recovery (s): {recovery:?}");
    eprintln!(
        "operations executed {}, verified {verified}: success rate {:.2}; manual steps {manual} of {} outcomes",
        executed.len(),
        verified as f64 / executed.len().max(1) as f64,
        outcomes.seen.len()
    );
}
