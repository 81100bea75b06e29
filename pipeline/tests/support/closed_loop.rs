//! The closed loop as its tests start it: the topics, `opsloop run` and `opsloop actuate`
//! configurations on them, the processes, the database fixtures the faults act on, and the
//! outcomes on `ops.actions`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opsloop_schemas::ops::ActionOutcome;
use opsloop_schemas::{AvroRecord, Codec, SchemaRegistry, WireFormat};
use opsloop_tests::{ACCOUNTS, TestBroker, TestPostgres, unique_name};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::process::{Child, Command};
use tokio_postgres::Client;

use crate::actuate_support::{ActuateTopics, actuate_toml};

/// The planner's signing key and the approvers' key of the loop's configurations.
pub(crate) const PLANNER_KEY: &str = "closed-loop planner key";
const APPROVAL_KEY: &str = "closed-loop key";

/// Tables the faults act on: a hot lookup with its index, a table whose index bloats, a
/// materialized view over a third, a row to lock.
const FIXTURES: &str = "
    CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
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
    ANALYZE;";

/// What the loop runs against: PostgreSQL with [`FIXTURES`] (and the lock-contention
/// accounts), the broker and the loop's topics on it, a folder for configurations, logs and
/// the audit log, and a connection to the database.
pub(crate) struct LoopSetup {
    pub(crate) postgres: TestPostgres,
    pub(crate) broker: TestBroker,
    pub(crate) topics: LoopTopics,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) db: Client,
}

impl LoopSetup {
    pub(crate) async fn start() -> Self {
        let postgres = TestPostgres::start().await.expect("postgres");
        let broker = TestBroker::start().await.expect("broker");
        let topics = LoopTopics::create(&broker).await;
        let db = postgres.connect().await.expect("connect");
        db.batch_execute(ACCOUNTS).await.expect("accounts");
        db.batch_execute(FIXTURES).await.expect("fixtures");
        LoopSetup {
            postgres,
            broker,
            topics,
            dir: tempfile::tempdir().expect("dir"),
            db,
        }
    }
}

/// Wall-clock time in µs since the Unix epoch: the event time the collector stamps.
pub(crate) fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Every topic the loop reads or writes, by role, each created with one partition.
pub(crate) struct LoopTopics {
    pub(crate) by_role: BTreeMap<&'static str, String>,
}

impl LoopTopics {
    pub(crate) async fn create(broker: &TestBroker) -> Self {
        let mut topics = BTreeMap::new();
        for role in [
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
            topics.insert(role, broker.create_topic(role, 1).await.expect("topic"));
        }
        LoopTopics { by_role: topics }
    }

    pub(crate) fn get(&self, role: &str) -> &str {
        &self.by_role[role]
    }
}

/// An `opsloop run` configuration at the defaults (event time, grouping, checkpoints every
/// 10 s) but for the brokers, the topics and the checkpoints' folder `dir`.
pub(crate) fn run_toml(
    broker: &TestBroker,
    group: &str,
    topics: &LoopTopics,
    dir: &Path,
) -> String {
    let sql = concat!(env!("CARGO_MANIFEST_DIR"), "/../sql");
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
[checkpoint]
dir = "{dir}/checkpoints"
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
signing_key = "{PLANNER_KEY}"
[predict]
report_topic = "{cycles}"
forecasts_topic = "{forecasts}"
"#,
        brokers = broker.bootstrap(),
        metrics = topics.get("metrics"),
        gpu = topics.get("gpu"),
        alerts = topics.get("alerts"),
        incidents = topics.get("incidents"),
        deadletter = topics.get("deadletter"),
        remediation = topics.get("remediation"),
        actions = topics.get("actions"),
        cycles = topics.get("cycles"),
        forecasts = topics.get("forecasts"),
        dir = dir.display(),
    )
}

/// Writes the loop's `run.toml` (consumer group `group`) and `actuate.toml` (acting on `dsn`,
/// its audit log `audit.jsonl`) into `dir`; returns their paths.
pub(crate) fn write_configs(
    broker: &TestBroker,
    topics: &LoopTopics,
    dir: &Path,
    group: &str,
    dsn: &str,
) -> (PathBuf, PathBuf) {
    let run = dir.join("run.toml");
    std::fs::write(&run, run_toml(broker, group, topics, dir)).expect("run config");
    let actuate = dir.join("actuate.toml");
    std::fs::write(&actuate, actuate_loop_toml(broker, topics, dir, dsn)).expect("actuate config");
    (run, actuate)
}

/// Starts `opsloop collect postgres` at its defaults on `dsn`, publishing as `entity` to the
/// loop's metrics topic.
pub(crate) fn spawn_collector(
    broker: &TestBroker,
    topics: &LoopTopics,
    dsn: &str,
    entity: &str,
    log: &Path,
) -> Child {
    spawn(
        &[
            "collect",
            "postgres",
            "--dsn",
            dsn,
            "--entity",
            entity,
            "--metrics-topic",
            topics.get("metrics"),
            "--brokers",
            broker.bootstrap(),
        ],
        log,
    )
}

/// An `opsloop actuate` configuration on the loop's topics, acting on `dsn`, its audit log in
/// `dir`.
fn actuate_loop_toml(broker: &TestBroker, topics: &LoopTopics, dir: &Path, dsn: &str) -> String {
    let group = unique_name("actuator");
    let actuate_topics = ActuateTopics {
        brokers: broker.bootstrap(),
        group: &group,
        remediation: topics.get("remediation"),
        approvals: topics.get("approvals"),
        actions: topics.get("actions"),
        incidents: topics.get("incidents"),
        deadletter: topics.get("deadletter"),
    };
    actuate_toml(
        &actuate_topics,
        (APPROVAL_KEY, PLANNER_KEY),
        dir,
        dsn,
        "",
        "",
    )
}

/// Starts `opsloop args...`, its log in `log` (appended to, so a restart keeps the history);
/// killed when dropped.
pub(crate) fn spawn(args: &[&str], log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    Command::new(env!("CARGO_BIN_EXE_opsloop"))
        .args(args)
        .env("OPSLOOP_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("opsloop starts")
}

/// Prints the last lines of each log in `dir`, for a failure's context.
pub(crate) fn dump_logs(dir: &Path, names: &[&str]) {
    for name in names {
        let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        eprintln!(
            "--- {name}\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}

/// A reader of one topic's records from its beginning, decoded as `T`.
pub(crate) struct TopicReader<T> {
    consumer: BaseConsumer,
    codec: Codec,
    pub(crate) seen: Vec<T>,
}

impl<T: AvroRecord> TopicReader<T> {
    pub(crate) fn new(broker: &TestBroker, topic: &str) -> Self {
        let consumer: BaseConsumer = broker
            .kafka_config()
            .client_config()
            .set("group.id", unique_name("reader"))
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        TopicReader {
            consumer,
            codec: Codec::new(WireFormat::Confluent, Arc::new(SchemaRegistry::builtin())),
            seen: Vec::new(),
        }
    }

    /// Reads what arrives within `wait` after the last record (or the start); returns how many
    /// records came.
    pub(crate) async fn read_until_quiet(&mut self, wait: Duration) -> usize {
        let before = self.seen.len();
        let mut quiet_since = Instant::now();
        while quiet_since.elapsed() < wait {
            if self.poll_once().await {
                quiet_since = Instant::now();
            }
        }
        self.seen.len() - before
    }

    /// One poll; whether a record came.
    async fn poll_once(&mut self) -> bool {
        match self.consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                if let Some(record) = message
                    .payload()
                    .and_then(|p| self.codec.decode::<T>(p).ok())
                {
                    self.seen.push(record);
                }
                true
            }
            _ => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                false
            }
        }
    }
}

impl TopicReader<ActionOutcome> {
    /// Polls until an outcome matches `done` or `wait` passes.
    pub(crate) async fn wait_for(
        &mut self,
        wait: Duration,
        done: impl Fn(&ActionOutcome) -> bool,
    ) -> Option<ActionOutcome> {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Some(found) = self.seen.iter().find(|o| done(o)) {
                return Some(found.clone());
            }
            let before = self.seen.len();
            if self.poll_once().await
                && let Some(outcome) = self.seen.get(before)
            {
                eprintln!(
                    "outcome: {:?} {} {} {}",
                    outcome.step, outcome.template, outcome.target, outcome.detail
                );
            }
        }
        None
    }
}
