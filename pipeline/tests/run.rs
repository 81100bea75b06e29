//! `opsloop run` over the real broker: the repository's SQL detectors on the simulated fleet's
//! telemetry, alerts on a topic of their own per run.
//!
//! - A run killed with SIGKILL mid-stream and restarted emits the same set of alerts and
//!   incident versions as an uninterrupted run: nothing lost, every re-emitted record the very
//!   same record (same id).
//! - Two instances in one consumer group emit the same alerts and incidents as one instance.
//! - The correlator's incidents reach their topic, a real Alertmanager (grouped by its
//!   route) and a webhook, the same versions everywhere.
//! - The predictive cycle's proactive plans reach the remediation topic.
//! - Poison input never stops the run: a 2 MB record is dead-lettered truncated with its size,
//!   hash and coordinates, and a batch stamped a day ahead is dead-lettered without moving the
//!   watermark; detection goes on over the records after them either way.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use opsloop_connectors::generate::{FaultSpec, Fleet, FleetConfig};
use opsloop_connectors::kafka::{
    DEAD_LETTER_MAX_PAYLOAD_BYTES, Delivered, KafkaSink, OutgoingRecord, RecordWriter, SinkConfig,
    dead_letter_headers,
};
use opsloop_schemas::ops::{
    Alert, CycleReport, Forecast, Incident, IncidentState, RemediationEvent, RemediationKind,
};
use opsloop_schemas::telemetry::{MetricBatch, MetricSample};
use opsloop_schemas::{AvroRecord, Codec, SchemaRegistry, WireFormat};
use opsloop_tests::{TestAlertmanager, TestBroker, TestWebhook, unique_name};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::{Message, Offset, TopicPartitionList};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

const PARTITIONS: i32 = 4;
const OUT_OF_ORDERNESS_MS: i64 = 5_000;
const WAIT: Duration = Duration::from_secs(90);
const METRICS_ASSIGNED: &str = r#"opsloop_source_assigned_partitions{source="metrics"}"#;

fn confluent() -> Codec {
    Codec::new(WireFormat::Confluent, Arc::new(SchemaRegistry::builtin()))
}

/// Twenty minutes of a twelve-database fleet, a tick every 10 s, with faults the latency and
/// saturation detectors see; the metric batches of each tick.
fn fleet_ticks() -> Vec<Vec<MetricBatch>> {
    fleet_ticks_from(FleetConfig::default().start_time_us)
}

/// The fleet of [`fleet_ticks`], its first tick at `start_us`.
fn fleet_ticks_from(start_us: i64) -> Vec<Vec<MetricBatch>> {
    let faults = [
        "latency_spike@db-1:+3m/4m",
        "connection_exhaustion@db-5:+5m/5m",
        "runaway_query@db-7:+9m/4m",
        "latency_spike@db-10:+13m/3m",
    ];
    let mut fleet = Fleet::new(FleetConfig {
        databases: 12,
        gpu_hosts: 0,
        models: 0,
        start_time_us: start_us,
        faults: faults
            .iter()
            .map(|spec| spec.parse::<FaultSpec>().expect("fault spec"))
            .collect(),
        ..FleetConfig::default()
    })
    .expect("fleet");
    (0..120).map(|_| fleet.tick().metrics).collect()
}

/// The event time the watermark reaches once every tick is read.
fn final_watermark_ms(ticks: &[Vec<MetricBatch>]) -> i64 {
    let newest = ticks
        .iter()
        .flatten()
        .flat_map(|batch| batch.samples.iter().map(|s| s.time_us))
        .max()
        .expect("samples");
    newest / 1000 - OUT_OF_ORDERNESS_MS
}

async fn publish(broker: &TestBroker, topic: &str, ticks: &[Vec<MetricBatch>]) {
    let sink = KafkaSink::new(&broker.kafka_config(), SinkConfig::default()).expect("sink");
    let mut writer = RecordWriter::new(sink, confluent(), 1_000);
    for batch in ticks.iter().flatten() {
        writer.send(topic, batch).await.expect("send");
    }
    writer.finish().await.expect("delivered");
}

/// What one `opsloop run` instance reads and writes.
struct RunSetup<'a> {
    broker: &'a TestBroker,
    group: String,
    metrics_topic: &'a str,
    gpu_topic: &'a str,
    alerts_topic: &'a str,
    incidents_topic: &'a str,
    remediation_topic: &'a str,
    cycles_topic: &'a str,
    forecasts_topic: &'a str,
    deadletter_topic: &'a str,
    checkpoint_dir: &'a Path,
    /// How long a partition without data holds the watermark back.
    idle_timeout_ms: u64,
    /// More TOML, appended (e.g. `[notifications]`).
    extra: String,
}

/// A run over the test's topics with no extra settings.
fn run_setup<'a>(
    broker: &'a TestBroker,
    topics: &'a Topics,
    group: String,
    alerts_topic: &'a str,
    checkpoint_dir: &'a Path,
) -> RunSetup<'a> {
    RunSetup {
        broker,
        group,
        metrics_topic: &topics.metrics,
        gpu_topic: &topics.gpu,
        alerts_topic,
        incidents_topic: &topics.incidents,
        remediation_topic: &topics.remediation,
        cycles_topic: &topics.cycles,
        forecasts_topic: &topics.forecasts,
        deadletter_topic: &topics.deadletter,
        checkpoint_dir,
        idle_timeout_ms: 5_000,
        extra: String::new(),
    }
}

impl RunSetup<'_> {
    fn write_config(&self, path: &Path) {
        let sql = concat!(env!("CARGO_MANIFEST_DIR"), "/../sql");
        let config = format!(
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
tick_interval_ms = 100

[engine.watermark]
max_out_of_orderness_ms = {OUT_OF_ORDERNESS_MS}
idle_timeout_ms = {idle_timeout_ms}

[checkpoint]
dir = "{checkpoints}"
interval_ms = 300

[alerts]
topic = "{alerts}"

[incidents]
topic = "{incidents}"

[planner]
topic = "{remediation}"
actions_topic = "{remediation}-actions"
signing_key = "run test planner key"

[deadletter]
topic = "{deadletter}"

[metrics]
listen = "127.0.0.1:0"

[predict]
report_topic = "{cycles}"
forecasts_topic = "{forecasts}"
{extra}
"#,
            brokers = self.broker.bootstrap(),
            group = self.group,
            metrics = self.metrics_topic,
            gpu = self.gpu_topic,
            checkpoints = self.checkpoint_dir.display(),
            alerts = self.alerts_topic,
            incidents = self.incidents_topic,
            remediation = self.remediation_topic,
            cycles = self.cycles_topic,
            forecasts = self.forecasts_topic,
            deadletter = self.deadletter_topic,
            idle_timeout_ms = self.idle_timeout_ms,
            extra = self.extra,
        );
        std::fs::write(path, config).expect("config file");
    }
}

/// A running `opsloop run` process and its `/metrics` address.
struct Instance {
    child: Child,
    metrics: String,
    stdout: tokio::task::JoinHandle<String>,
}

impl Instance {
    async fn start(setup: &RunSetup<'_>, dir: &Path) -> Instance {
        let config = dir.join(format!("{}.toml", unique_name("run")));
        setup.write_config(&config);
        let mut child = Command::new(env!("CARGO_BIN_EXE_opsloop"))
            .arg("run")
            .arg("--config")
            .arg(&config)
            .env("OPSLOOP_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("opsloop run starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let metrics = tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await.expect("stdout") {
                if let Some(url) = line.strip_prefix("metrics on http://") {
                    return url.trim_end_matches("/metrics").to_owned();
                }
            }
            panic!("opsloop run ended before serving /metrics");
        })
        .await
        .expect("opsloop run serves /metrics");
        let stdout = tokio::spawn(async move {
            let mut rest = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                rest.push_str(&line);
                rest.push('\n');
            }
            rest
        });
        Instance {
            child,
            metrics,
            stdout,
        }
    }

    /// The sum of a metric's samples (every label set, unless `name` ends with one), `None`
    /// when it is not exposed.
    async fn metric(&self, name: &str) -> Option<f64> {
        let mut stream = tokio::net::TcpStream::connect(&self.metrics).await.ok()?;
        let request = format!(
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.metrics
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        let mut found = None;
        for line in response.lines() {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            if !(rest.starts_with(' ') || rest.starts_with('{')) {
                continue;
            }
            if let Some(value) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
                *found.get_or_insert(0.0) += value;
            }
        }
        found
    }

    /// Waits until `metric` reaches at least `target`.
    async fn wait_for(&self, metric: &str, target: f64) {
        let reached = tokio::time::timeout(WAIT, async {
            while self.metric(metric).await.is_none_or(|value| value < target) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        assert!(
            reached.is_ok(),
            "{metric} did not reach {target} (is {:?})",
            self.metric(metric).await
        );
    }

    /// SIGKILL: no shutdown, no final checkpoint.
    async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL");
    }

    /// SIGTERM, then the closing summary line after a clean exit.
    async fn terminate(mut self) -> String {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let exit = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("opsloop run stops on SIGTERM")
            .expect("exit status");
        let stdout = self.stdout.await.expect("stdout reader");
        assert!(exit.success(), "opsloop run failed: {exit}\n{stdout}");
        stdout
    }
}

fn read_alerts(broker: &TestBroker, topic: &str) -> Vec<Alert> {
    read_records(broker, topic)
}

/// Every record of `topic`, decoded: read from the start until 2 s pass without a new one
/// (the writers have all stopped, with their deliveries confirmed).
fn read_records<T: AvroRecord>(broker: &TestBroker, topic: &str) -> Vec<T> {
    let codec = confluent();
    read_messages(broker, topic, PARTITIONS)
        .iter()
        .map(|message| {
            codec
                .decode(message.payload().expect("payload"))
                .expect("a record of the topic's kind")
        })
        .collect()
}

/// Every record of the `partitions` of `topic`, as read from the start until 2 s pass without
/// a new one.
fn read_messages(broker: &TestBroker, topic: &str, partitions: i32) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = broker
        .kafka_config()
        .client_config()
        .set("group.id", unique_name("alerts-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("assignment");
    }
    consumer.assign(&assignment).expect("assign");
    let mut records = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    let mut last_seen = std::time::Instant::now();
    while last_seen.elapsed() < Duration::from_secs(2) {
        assert!(
            std::time::Instant::now() < deadline,
            "{topic} never went quiet"
        );
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        records.push(message.expect("message").detach());
        last_seen = std::time::Instant::now();
    }
    records
}

/// Alerts by id; panics when two records with one id differ (a replay must repeat a record
/// exactly, apart from the processing time it was emitted at).
fn by_id(alerts: Vec<Alert>) -> BTreeMap<String, Alert> {
    let mut unique: BTreeMap<String, Alert> = BTreeMap::new();
    for mut alert in alerts {
        alert.emitted_us = 0;
        if let Some(earlier) = unique.get(&alert.alert_id) {
            assert_eq!(earlier, &alert, "two different alerts share an id");
        }
        unique.insert(alert.alert_id.clone(), alert);
    }
    unique
}

/// Panics with what differs: alerts missing, alerts extra, alerts with other values.
fn assert_same_alerts(actual: &BTreeMap<String, Alert>, reference: &BTreeMap<String, Alert>) {
    let missing: Vec<&Alert> = reference
        .iter()
        .filter(|(id, _)| !actual.contains_key(*id))
        .map(|(_, alert)| alert)
        .collect();
    let extra: Vec<&Alert> = actual
        .iter()
        .filter(|(id, _)| !reference.contains_key(*id))
        .map(|(_, alert)| alert)
        .collect();
    let differing: Vec<(&Alert, &Alert)> = actual
        .iter()
        .filter_map(|(id, alert)| reference.get(id).map(|expected| (alert, expected)))
        .filter(|(alert, expected)| alert != expected)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && differing.is_empty(),
        "missing: {missing:#?}\nextra: {extra:#?}\ndiffering (actual, reference): {differing:#?}"
    );
}

/// The metric telemetry carries the test's faults; the GPU topic stays empty (the GPU
/// detector of `sql/` needs its table).
struct Topics {
    metrics: String,
    gpu: String,
    incidents: String,
    remediation: String,
    cycles: String,
    forecasts: String,
    deadletter: String,
}

async fn topics(broker: &TestBroker) -> Topics {
    Topics {
        metrics: broker
            .create_topic("metrics", PARTITIONS)
            .await
            .expect("metrics topic"),
        gpu: broker.create_topic("gpu", 1).await.expect("gpu topic"),
        incidents: broker
            .create_topic("incidents", PARTITIONS)
            .await
            .expect("incidents topic"),
        remediation: broker
            .create_topic("remediation", PARTITIONS)
            .await
            .expect("remediation topic"),
        cycles: broker
            .create_topic("cycles", PARTITIONS)
            .await
            .expect("cycles topic"),
        forecasts: broker
            .create_topic("forecasts", PARTITIONS)
            .await
            .expect("forecasts topic"),
        deadletter: broker
            .create_topic("deadletter", 1)
            .await
            .expect("deadletter topic"),
    }
}

/// An uninterrupted single-instance run over everything already on the metrics topic.
async fn reference_run(
    broker: &TestBroker,
    topics: &Topics,
    dir: &Path,
    final_watermark_ms: i64,
) -> (BTreeMap<String, Alert>, BTreeMap<(String, i64), Incident>) {
    let alerts_topic = broker
        .create_topic("alerts-reference", PARTITIONS)
        .await
        .expect("topic");
    let incidents_topic = broker
        .create_topic("incidents-reference", PARTITIONS)
        .await
        .expect("topic");
    let checkpoints = dir.join("reference-checkpoints");
    let setup = RunSetup {
        incidents_topic: &incidents_topic,
        ..run_setup(
            broker,
            topics,
            unique_name("reference"),
            &alerts_topic,
            &checkpoints,
        )
    };
    let instance = Instance::start(&setup, dir).await;
    instance
        .wait_for(
            "opsloop_watermark_seconds",
            final_watermark_ms as f64 / 1000.0,
        )
        .await;
    instance.terminate().await;
    (
        by_id(read_alerts(broker, &alerts_topic)),
        versions_by_id(read_records(broker, &incidents_topic)),
    )
}

/// Incident versions by (id, version); panics when a replay produced a different record for
/// one version.
fn versions_by_id(versions: Vec<Incident>) -> BTreeMap<(String, i64), Incident> {
    let mut unique = BTreeMap::new();
    for version in versions {
        let key = (version.incident_id.clone(), version.version);
        if let Some(earlier) = unique.get(&key) {
            assert_eq!(
                earlier, &version,
                "two different records of one incident version"
            );
        }
        unique.insert(key, version);
    }
    unique
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_mid_stream_and_restarted_emits_the_same_alerts_and_incidents() {
    let broker = TestBroker::start().await.expect("broker");
    let topics = topics(&broker).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ticks = fleet_ticks();
    let final_watermark = final_watermark_ms(&ticks);
    let (first, rest) = ticks.split_at(50);
    let (during, last) = rest.split_at(30);

    let alerts_topic = broker
        .create_topic("alerts", PARTITIONS)
        .await
        .expect("topic");
    let checkpoints = dir.path().join("checkpoints");
    let setup = run_setup(
        &broker,
        &topics,
        unique_name("crash"),
        &alerts_topic,
        &checkpoints,
    );
    publish(&broker, &topics.metrics, first).await;
    let instance = Instance::start(&setup, dir.path()).await;
    instance
        .wait_for(
            "opsloop_watermark_seconds",
            final_watermark_ms(first) as f64 / 1000.0,
        )
        .await;
    // Mid-stream: the next ticks are being published and read when the process dies.
    let publishing = publish(&broker, &topics.metrics, during);
    tokio::pin!(publishing);
    tokio::select! {
        _ = &mut publishing => {}
        _ = tokio::time::sleep(Duration::from_millis(150)) => {}
    }
    instance.kill().await;
    publishing.await;
    let before_restart = read_alerts(&broker, &alerts_topic).len();
    assert!(
        std::fs::read_dir(&checkpoints)
            .expect("checkpoint dir")
            .count()
            > 0,
        "a checkpoint was written before the kill"
    );

    publish(&broker, &topics.metrics, last).await;
    // tansu 0.6 keeps a killed member's partitions in the group, so the restart joins a group
    // of its own; where it starts reading comes from the checkpoint's offsets either way.
    let setup = RunSetup {
        group: unique_name("crash-restart"),
        ..setup
    };
    let restarted = Instance::start(&setup, dir.path()).await;
    restarted
        .wait_for("opsloop_watermark_seconds", final_watermark as f64 / 1000.0)
        .await;
    restarted.terminate().await;
    let records = read_alerts(&broker, &alerts_topic);
    let total_records = records.len();
    let crashed = by_id(records);

    let (reference, reference_incidents) =
        reference_run(&broker, &topics, dir.path(), final_watermark).await;
    assert!(
        reference.len() >= 4,
        "the faults raise alerts: {:?}",
        reference.keys()
    );
    // The correlator's state is in the checkpoints: the incidents come out the same too.
    assert!(!reference_incidents.is_empty(), "the alerts open incidents");
    assert_eq!(
        versions_by_id(read_records(&broker, &topics.incidents)),
        reference_incidents
    );
    assert!(
        before_restart > 0 && before_restart < total_records,
        "alerts came both before the kill ({before_restart}) and after the restart \
         ({total_records} in all)"
    );
    assert_same_alerts(&crashed, &reference);
    eprintln!(
        "{} alerts; {total_records} records on the crashed run's topic ({} replayed after the \
         restart)",
        reference.len(),
        total_records - crashed.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_in_one_group_emit_the_alerts_and_incidents_of_one() {
    let broker = TestBroker::start().await.expect("broker");
    let topics = topics(&broker).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ticks = fleet_ticks();
    let final_watermark = final_watermark_ms(&ticks);

    let alerts_topic = broker
        .create_topic("alerts-group", PARTITIONS)
        .await
        .expect("topic");
    let group = unique_name("group");
    let (first_dir, second_dir) = (dir.path().join("one"), dir.path().join("two"));
    // A partition that has had no data for the idle timeout stops holding the watermark
    // back, and whatever it delivers after the watermark moved on is late. The first
    // instance holds its partitions from its start, seconds before the group settles and
    // the test publishes: a timeout of seconds would let those partitions turn idle first.
    let setup = |checkpoint_dir| RunSetup {
        idle_timeout_ms: 20_000,
        ..run_setup(
            &broker,
            &topics,
            group.clone(),
            &alerts_topic,
            checkpoint_dir,
        )
    };
    let one = Instance::start(&setup(&first_dir), dir.path()).await;
    let two = Instance::start(&setup(&second_dir), dir.path()).await;
    // Publish once the group has settled with partitions on both instances: the same split
    // for three seconds (a cooperative rebalance goes through several rounds).
    let settled = tokio::time::timeout(WAIT, async {
        let mut stable_since: Option<(f64, std::time::Instant)> = None;
        loop {
            let assigned = (
                one.metric(METRICS_ASSIGNED).await,
                two.metric(METRICS_ASSIGNED).await,
            );
            match assigned {
                (Some(a), Some(b)) if a >= 1.0 && b >= 1.0 && a + b == f64::from(PARTITIONS) => {
                    match stable_since {
                        Some((split, since)) if split == a => {
                            if since.elapsed() >= Duration::from_secs(3) {
                                break;
                            }
                        }
                        _ => stable_since = Some((a, std::time::Instant::now())),
                    }
                }
                _ => stable_since = None,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(settled.is_ok(), "both instances got partitions");
    publish(&broker, &topics.metrics, &ticks).await;
    one.wait_for("opsloop_watermark_seconds", final_watermark as f64 / 1000.0)
        .await;
    two.wait_for("opsloop_watermark_seconds", final_watermark as f64 / 1000.0)
        .await;
    let records = [
        one.metric("opsloop_source_records_total").await,
        two.metric("opsloop_source_records_total").await,
    ];
    one.terminate().await;
    two.terminate().await;
    let grouped = by_id(read_alerts(&broker, &alerts_topic));

    let (reference, reference_incidents) =
        reference_run(&broker, &topics, dir.path(), final_watermark).await;
    assert!(
        reference.len() >= 4,
        "the faults raise alerts: {} in the reference run, {} from the group",
        reference.len(),
        grouped.len()
    );
    assert_same_alerts(&grouped, &reference);
    // Incidents group by entity and the topics are keyed by entity: the instances' incidents
    // together are the single instance's.
    assert_eq!(
        versions_by_id(read_records(&broker, &topics.incidents)),
        reference_incidents
    );
    let total: usize = ticks.iter().map(Vec::len).sum();
    assert_eq!(
        records
            .iter()
            .map(|r| r.expect("records metric"))
            .sum::<f64>(),
        total as f64,
        "the instances shared the records: {records:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_reach_their_topic_an_alertmanager_and_a_webhook() {
    let broker = TestBroker::start().await.expect("broker");
    let topics = topics(&broker).await;
    let alertmanager = TestAlertmanager::start(&["tier", "pattern"]).expect("alertmanager");
    let webhook = TestWebhook::start().expect("webhook server");
    let dir = tempfile::tempdir().expect("tempdir");
    let ticks = fleet_ticks();
    let final_watermark = final_watermark_ms(&ticks);
    let alerts_topic = broker
        .create_topic("alerts-notify", PARTITIONS)
        .await
        .expect("topic");
    let checkpoints = dir.path().join("checkpoints");
    let setup = RunSetup {
        extra: format!(
            "[notifications.alertmanager]\nurl = \"{}\"\n\n[[notifications.webhooks]]\n\
             url = \"{}/incidents\"\ntimeout_ms = 2000\n",
            alertmanager.url(),
            webhook.url()
        ),
        ..run_setup(
            &broker,
            &topics,
            unique_name("notify"),
            &alerts_topic,
            &checkpoints,
        )
    };
    publish(&broker, &topics.metrics, &ticks).await;
    let instance = Instance::start(&setup, dir.path()).await;
    instance
        .wait_for("opsloop_watermark_seconds", final_watermark as f64 / 1000.0)
        .await;
    // SIGTERM drains the notifier's queue before the process exits.
    instance.terminate().await;

    let versions: Vec<Incident> = read_records(&broker, &topics.incidents);
    let mut latest: BTreeMap<String, Incident> = BTreeMap::new();
    for version in &versions {
        let previous = latest.get(&version.incident_id).map_or(0, |v| v.version);
        assert_eq!(
            version.version,
            previous + 1,
            "versions of one incident go up by one"
        );
        if version.version == 1 {
            assert_eq!(version.state, IncidentState::Open);
        }
        latest.insert(version.incident_id.clone(), version.clone());
    }
    assert!(latest.len() >= 2, "the faults open incidents: {latest:#?}");
    assert!(
        latest.values().any(|i| i.state == IncidentState::Resolved),
        "an early fault's incident resolves within the run: {latest:#?}"
    );
    assert!(latest.values().all(|i| !i.hypotheses.is_empty()));

    // The webhook got exactly the versions on the topic, as JSON.
    let mut notified: Vec<(String, i64)> = webhook
        .received()
        .iter()
        .map(|request| {
            assert_eq!(
                (request.method.as_str(), request.path.as_str()),
                ("POST", "/incidents")
            );
            let body: serde_json::Value = serde_json::from_str(&request.body).expect("JSON");
            let incident = &body["incident"];
            (
                incident["incident_id"].as_str().expect("id").to_owned(),
                incident["version"].as_i64().expect("version"),
            )
        })
        .collect();
    notified.sort();
    let mut published: Vec<(String, i64)> = versions
        .iter()
        .map(|v| (v.incident_id.clone(), v.version))
        .collect();
    published.sort();
    assert_eq!(notified, published);

    // Alertmanager holds the incidents still open, grouped by tier and pattern as its route
    // says, with the tier of their latest version.
    let open: BTreeMap<&str, &Incident> = latest
        .iter()
        .filter(|(_, i)| i.state != IncidentState::Resolved)
        .map(|(id, i)| (id.as_str(), i))
        .collect();
    let groups: serde_json::Value =
        serde_json::from_str(&alertmanager.api("alerts/groups").expect("groups"))
            .expect("groups JSON");
    let mut seen = BTreeMap::new();
    for group in groups.as_array().expect("array") {
        let group_labels = &group["labels"];
        for alert in group["alerts"].as_array().expect("alerts") {
            let labels = &alert["labels"];
            assert_eq!(labels["tier"], group_labels["tier"]);
            assert_eq!(labels["pattern"], group_labels["pattern"]);
            let id = labels["incident_id"]
                .as_str()
                .expect("incident_id")
                .to_owned();
            seen.insert(id, labels["tier"].as_str().expect("tier").to_owned());
        }
    }
    for (id, incident) in &open {
        assert_eq!(
            seen.get(*id).map(String::as_str),
            Some(format!("{:?}", incident.tier).as_str()),
            "open incident {id} is in Alertmanager with its tier: {groups:#}"
        );
    }
    assert!(
        !open.is_empty(),
        "some incident is still open at the end of the run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proactive_plans_reach_the_remediation_topic() {
    let broker = TestBroker::start().await.expect("broker");
    let topics = topics(&broker).await;
    let dir = tempfile::tempdir().expect("dir");
    let alerts_topic = broker
        .create_topic("alerts-predict", PARTITIONS)
        .await
        .expect("topic");
    let checkpoints = dir.path().join("checkpoints");
    // Storage growing 1 GB a minute towards a 1,000 GB limit: out within hours, so next week's
    // demand is past 80% and the capacity rule plans at every cycle.
    let start_us = 1_795_000_000_000_000i64;
    let batches: Vec<Vec<MetricBatch>> = (0..180)
        .map(|tick| {
            let time_us = start_us + tick * 10_000_000;
            vec![MetricBatch {
                entity: "db-grow".to_owned(),
                source: "test".to_owned(),
                samples: vec![MetricSample {
                    name: "db_storage_gb".to_owned(),
                    labels: BTreeMap::new(),
                    value: 700.0 + tick as f64 / 6.0,
                    time_us,
                }],
            }]
        })
        .collect();
    let setup = RunSetup {
        // Keys of the [predict] table the configuration ends with.
        // A ten-minute "season": the capacity job wants one before it forecasts.
        extra: "cycle_interval_s = 60\nwindow_s = 60\nseason_points = 10\n\n[[predict.capacity]]\n\
                resource = \"storage\"\nmetric = \"db_storage_gb\"\nlimit = 1000.0\n"
            .to_owned(),
        ..run_setup(
            &broker,
            &topics,
            unique_name("predict"),
            &alerts_topic,
            &checkpoints,
        )
    };
    publish(&broker, &topics.metrics, &batches).await;
    let instance = Instance::start(&setup, dir.path()).await;
    instance
        .wait_for(
            "opsloop_watermark_seconds",
            final_watermark_ms(&batches) as f64 / 1000.0,
        )
        .await;
    instance
        .wait_for("opsloop_proactive_plans_total", 1.0)
        .await;
    // The capacity job's forecast, as exported: 700 GB growing 1 GB a minute is far past the
    // 1,000 GB limit a week out.
    let share = instance
        .metric(
            "opsloop_forecast{entity=\"db-grow\",forecast=\"capacity_share\",resource=\"storage\"}",
        )
        .await
        .expect("the capacity forecast is exported");
    assert!(share > 1.0, "{share}");
    instance.terminate().await;

    let reports: Vec<CycleReport> = read_records(&broker, &topics.cycles);
    assert!(
        reports.iter().any(|r| r.proactive_plans > 0),
        "the cycle reports count the plans: {reports:#?}"
    );
    // Every cycle's forecasts are on their topic, each naming a cycle that reported.
    let forecasts: Vec<Forecast> = read_records(&broker, &topics.forecasts);
    let storage: Vec<&Forecast> = forecasts
        .iter()
        .filter(|f| f.entity == "db-grow" && f.resource.as_deref() == Some("storage"))
        .collect();
    assert!(!storage.is_empty(), "{forecasts:#?}");
    for forecast in &storage {
        assert_eq!(
            (forecast.job.as_str(), forecast.forecast.as_str()),
            ("capacity_next_week", "capacity_share")
        );
        assert!(forecast.value > 1.0, "{forecast:?}");
        assert!(forecast.time_to_exhaustion_s.is_some_and(|s| s > 0.0));
        assert!(
            reports.iter().any(|r| r.cycle_id == forecast.cycle_id),
            "{forecast:?}"
        );
    }
    let events: Vec<RemediationEvent> = read_records(&broker, &topics.remediation);
    let proactive: Vec<&RemediationEvent> = events
        .iter()
        .filter(|e| e.kind == RemediationKind::Proactive)
        .collect();
    assert!(!proactive.is_empty(), "{events:#?}");
    for event in &proactive {
        assert_eq!(
            (event.template.as_str(), event.target.as_str()),
            ("webhook.capacity_plan", "db-grow")
        );
        assert!(
            event.incident_id.starts_with("forecast-cycle-"),
            "{}",
            event.incident_id
        );
        assert!(
            event.rationale.starts_with("capacity"),
            "{}",
            event.rationale
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_outcome_that_does_not_decode_goes_to_the_dead_letter_topic() {
    use opsloop_connectors::kafka::{TopicRequest, create_topics};

    let broker = TestBroker::start().await.expect("broker");
    let topics = topics(&broker).await;
    // The run reads the actuators' outcomes from `<remediation>-actions` (see RunSetup).
    let actions = format!("{}-actions", topics.remediation);
    create_topics(
        &broker.kafka_config(),
        &[TopicRequest {
            name: actions.clone(),
            partitions: 1,
            replication_factor: 1,
        }],
        Duration::from_secs(30),
    )
    .await
    .expect("actions topic");
    let alerts = broker
        .create_topic("alerts", PARTITIONS)
        .await
        .expect("topic");
    let dir = tempfile::tempdir().expect("dir");
    let checkpoints = dir.path().join("checkpoints");
    let setup = run_setup(&broker, &topics, unique_name("dlq"), &alerts, &checkpoints);
    let instance = Instance::start(&setup, dir.path()).await;
    let sink = KafkaSink::new(&broker.kafka_config(), SinkConfig::default()).expect("sink");
    let letters: BaseConsumer = broker
        .kafka_config()
        .client_config()
        .set("group.id", unique_name("letters"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    letters.subscribe(&[&topics.deadletter]).expect("subscribe");
    // The outcome reader starts at the newest record: keep sending until one is seen.
    let deadline = std::time::Instant::now() + WAIT;
    let reason = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no dead letter from {actions}"
        );
        sink.send(OutgoingRecord::new(
            &actions,
            None,
            b"\x00\x00\x00\x00\x63no outcome",
        ))
        .await
        .expect("sent");
        let found = tokio::task::block_in_place(|| {
            letters.poll(Duration::from_secs(1)).and_then(|message| {
                let message = message.ok()?;
                let header = |name: &str| {
                    message.headers().and_then(|headers| {
                        headers
                            .iter()
                            .find(|h| h.key == name)
                            .and_then(|h| h.value)
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                    })
                };
                Some((
                    header(dead_letter_headers::SOURCE_TOPIC)?,
                    header(dead_letter_headers::REASON_CODE)?,
                ))
            })
        });
        if let Some((source, reason)) = found {
            assert_eq!(source, actions);
            break reason;
        }
    };
    assert_eq!(reason, "unknown_schema_id");
    instance.terminate().await;
}

const MINUTE_US: i64 = 60_000_000;

fn now_us() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(now.as_micros()).expect("fits")
}

/// `opsloop run` over twenty minutes of the test fleet ending five minutes ago, with `poison`
/// on the metrics topic halfway through.
struct PoisonedRun {
    broker: TestBroker,
    topics: Topics,
    alerts_topic: String,
    instance: Instance,
    _dir: tempfile::TempDir,
    /// Where the poison landed.
    poison: Delivered,
    /// The event time after the fleet's tenth minute, when the poison came.
    poisoned_at_us: i64,
    final_watermark_ms: i64,
}

impl PoisonedRun {
    /// Publishes the fleet's first ten minutes, `poison` keyed by `key`, the last ten, and runs
    /// until the watermark has reached the last tick.
    async fn start(key: &str, poison: &[u8]) -> PoisonedRun {
        let broker = TestBroker::start().await.expect("broker");
        let topics = topics(&broker).await;
        let dir = tempfile::tempdir().expect("dir");
        let alerts_topic = broker
            .create_topic("alerts-poison", PARTITIONS)
            .await
            .expect("topic");
        let start_us = now_us() - 25 * MINUTE_US;
        let ticks = fleet_ticks_from(start_us);
        let (before, after) = ticks.split_at(60);
        publish(&broker, &topics.metrics, before).await;
        // A producer that sends records up to 16 MB, as a misconfigured one might.
        let mut large = broker.kafka_config();
        large
            .properties
            .insert("message.max.bytes".to_owned(), (16 << 20).to_string());
        let sink = KafkaSink::new(&large, SinkConfig::default()).expect("sink");
        let poison = sink
            .send(OutgoingRecord::new(
                &topics.metrics,
                Some(key.as_bytes()),
                poison,
            ))
            .await
            .expect("the poison is on the topic");
        publish(&broker, &topics.metrics, after).await;

        let checkpoints = dir.path().join("checkpoints");
        let setup = run_setup(
            &broker,
            &topics,
            unique_name("poison"),
            &alerts_topic,
            &checkpoints,
        );
        let instance = Instance::start(&setup, dir.path()).await;
        let final_watermark_ms = final_watermark_ms(&ticks);
        instance
            .wait_for(
                "opsloop_watermark_seconds",
                final_watermark_ms as f64 / 1000.0,
            )
            .await;
        PoisonedRun {
            broker,
            topics,
            alerts_topic,
            instance,
            _dir: dir,
            poison,
            poisoned_at_us: start_us + 10 * MINUTE_US,
            final_watermark_ms,
        }
    }

    /// Stops the run (which must exit cleanly) and checks that detection went on after the
    /// poison (the latency spike of db-10, 13 minutes in, is alerted) and that the poison's one
    /// dead letter names where it is.
    async fn stop_and_check_detection(self) -> Stopped {
        let PoisonedRun {
            broker,
            topics,
            alerts_topic,
            instance,
            poison,
            poisoned_at_us,
            ..
        } = self;
        instance.terminate().await;
        let alerts = read_alerts(&broker, &alerts_topic);
        assert!(
            alerts
                .iter()
                .any(|a| a.entity == "db-10" && a.window_end_us > poisoned_at_us + 3 * MINUTE_US),
            "the fault after the poison is detected: {alerts:#?}"
        );
        let letters = read_messages(&broker, &topics.deadletter, 1);
        assert_eq!(letters.len(), 1, "one dead letter, the poison's");
        let letter = letters.into_iter().next().expect("one");
        let header = |name: &str| dead_letter_header(&letter, name);
        assert_eq!(
            (
                header(dead_letter_headers::SOURCE_TOPIC),
                header(dead_letter_headers::SOURCE_PARTITION),
                header(dead_letter_headers::SOURCE_OFFSET),
            ),
            (
                topics.metrics.clone(),
                poison.partition.to_string(),
                poison.offset.to_string(),
            ),
            "the dead letter names where the poison is"
        );
        Stopped {
            broker,
            topics,
            alerts,
            letter,
        }
    }
}

/// What a [`PoisonedRun`] left.
struct Stopped {
    broker: TestBroker,
    topics: Topics,
    alerts: Vec<Alert>,
    /// The poison's dead letter.
    letter: OwnedMessage,
}

fn dead_letter_header(letter: &OwnedMessage, name: &str) -> String {
    let headers = letter.headers().expect("dead letters carry headers");
    let value = headers
        .iter()
        .find(|header| header.key == name)
        .and_then(|header| header.value)
        .unwrap_or_else(|| panic!("header {name}"));
    String::from_utf8(value.to_vec()).expect("UTF-8 header")
}

/// A valid metric batch of `samples` latency samples of `entity` at `time_us`, each with a
/// 100-byte label.
fn latency_batch(entity: &str, samples: usize, time_us: i64) -> MetricBatch {
    MetricBatch {
        entity: entity.to_owned(),
        source: "test".to_owned(),
        samples: (0..samples)
            .map(|i| MetricSample {
                name: "db_query_latency_ms".to_owned(),
                labels: BTreeMap::from([("query".to_owned(), format!("{i:0>100}"))]),
                value: 900.0,
                time_us,
            })
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2_mb_record_is_dead_lettered_truncated_and_the_run_goes_on() {
    let oversized = confluent()
        .encode(&latency_batch("db-3", 20_000, now_us() - 15 * MINUTE_US))
        .expect("encodes");
    assert!(oversized.len() > 2_000_000, "{}", oversized.len());
    let run = PoisonedRun::start("db-3", &oversized).await;
    let metric = |name: &'static str| run.instance.metric(name);
    assert_eq!(
        metric(r#"opsloop_dead_letters_total{source="metrics",reason="too_large"}"#).await,
        Some(1.0)
    );
    assert_eq!(
        metric(r#"opsloop_dead_letters_truncated_total{source="metrics"}"#).await,
        Some(1.0)
    );
    assert!(
        metric("opsloop_dead_letter_failures_total")
            .await
            .is_none_or(|failures| failures == 0.0)
    );
    let letter = run.stop_and_check_detection().await.letter;
    let header = |name: &str| dead_letter_header(&letter, name);
    assert_eq!(header(dead_letter_headers::REASON_CODE), "too_large");
    assert_eq!(
        header(dead_letter_headers::SOURCE_SIZE),
        oversized.len().to_string()
    );
    assert_eq!(
        header(dead_letter_headers::SOURCE_SHA256),
        opsloop_schemas::ids::hex(&Sha256::digest(&oversized)),
        "the hash is the whole record's"
    );
    assert_eq!(header(dead_letter_headers::SOURCE_KEY), "db-3");
    assert_eq!(
        letter.payload(),
        Some(&oversized[..DEAD_LETTER_MAX_PAYLOAD_BYTES]),
        "the dead letter stores the record's first bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_stamped_a_day_ahead_is_dead_lettered_and_the_watermark_stays() {
    let tomorrow = now_us() + 24 * 60 * MINUTE_US;
    let ahead = confluent()
        .encode(&latency_batch("db-3", 50, tomorrow))
        .expect("encodes");
    let run = PoisonedRun::start("db-3", &ahead).await;
    let metric = |name: &'static str| run.instance.metric(name);
    assert_eq!(
        metric(r#"opsloop_dead_letters_total{source="metrics",reason="future_timestamp"}"#).await,
        Some(1.0)
    );
    let watermark_s = metric("opsloop_watermark_seconds")
        .await
        .expect("a watermark");
    assert!(
        (watermark_s - run.final_watermark_ms as f64 / 1000.0).abs() < 1.0,
        "the watermark is the fleet's, not tomorrow: {watermark_s}"
    );
    assert_eq!(metric("opsloop_watermark_jumps_total").await, Some(0.0));
    let final_watermark_us = run.final_watermark_ms * 1000;
    let stopped = run.stop_and_check_detection().await;
    assert_eq!(
        dead_letter_header(&stopped.letter, dead_letter_headers::REASON_CODE),
        "future_timestamp"
    );
    for alert in &stopped.alerts {
        assert!(
            alert.window_end_us <= final_watermark_us,
            "no window closed past the fleet's own time: {alert:?}"
        );
    }
    let reports: Vec<CycleReport> = read_records(&stopped.broker, &stopped.topics.cycles);
    for report in &reports {
        assert!(
            report.time_us <= final_watermark_us,
            "no cycle report dated tomorrow: {report:?}"
        );
    }
}
