//! `opsloop collect postgres` as a user runs it: a real PostgreSQL under a sequential-scan
//! workload, a real broker; the published `MetricBatch` records read back, and the detectors
//! of `sql/` run over them the way `opsloop run` would decode them.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use opsloop_connectors::decode::{
    AvroMetricBatchDecoder, Decoder, RecordContext, metric_samples_schema, record_schema,
};
use opsloop_engine::detector::{DetectorOptions, StreamTable, load_detectors, session_context};
use opsloop_schemas::telemetry::{GpuSample, MetricBatch};
use opsloop_schemas::{Codec, SchemaRegistry, WireFormat};
use opsloop_tests::{TestBroker, TestPostgres, unique_name};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

const COLLECTIONS: usize = 4;

fn confluent() -> Codec {
    Codec::new(WireFormat::Confluent, Arc::new(SchemaRegistry::builtin()))
}

/// Every record of partition 0 of `topic` until `count` arrived: (key, payload).
fn read_records(broker: &TestBroker, topic: &str, count: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let consumer: BaseConsumer = broker
        .kafka_config()
        .client_config()
        .set("group.id", unique_name("pg-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .expect("assignment");
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut records = Vec::new();
    while records.len() < count {
        assert!(Instant::now() < deadline, "only {} records", records.len());
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.expect("message");
        records.push((
            message.key().expect("keyed").to_vec(),
            message.payload().expect("payload").to_vec(),
        ));
    }
    records
}

#[tokio::test]
async fn collect_postgres_publishes_batches_the_seq_scan_detector_fires_on() {
    let (broker, postgres) = tokio::join!(TestBroker::start(), TestPostgres::start());
    let (broker, postgres) = (broker.expect("broker"), postgres.expect("postgres"));
    let topic = broker.create_topic("pg-metrics", 1).await.expect("topic");
    let client = postgres.connect().await.expect("connect");
    client
        .batch_execute(
            "CREATE TABLE big (id int, v int);
             INSERT INTO big SELECT i, i % 100 FROM generate_series(1, 20000) i;
             ANALYZE big;",
        )
        .await
        .expect("schema");
    // A lookup by a column with no index: every call scans the whole table.
    let stop = Arc::new(AtomicBool::new(false));
    let workload = tokio::spawn({
        let stop = Arc::clone(&stop);
        async move {
            let mut scans = 0u64;
            while !stop.load(Ordering::Relaxed) {
                client
                    .batch_execute("SELECT count(*) FROM big WHERE v = 7")
                    .await
                    .expect("scan");
                client
                    .batch_execute("SELECT pg_stat_force_next_flush()")
                    .await
                    .expect("flush");
                scans += 1;
            }
            scans
        }
    });

    let args = vec![
        "collect".to_owned(),
        "postgres".to_owned(),
        "--dsn".to_owned(),
        postgres.connection_string(),
        "--interval".to_owned(),
        "500ms".to_owned(),
        "--collections".to_owned(),
        COLLECTIONS.to_string(),
        "--brokers".to_owned(),
        broker.bootstrap().to_owned(),
        "--metrics-topic".to_owned(),
        topic.clone(),
    ];
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_opsloop"))
            .args(&args)
            .output()
            .expect("opsloop runs")
    })
    .await
    .expect("joined");
    stop.store(true, Ordering::Relaxed);
    let scans = workload.await.expect("workload");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "opsloop failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let entity = format!("127.0.0.1:{}/postgres", postgres.port());
    for collection in 1..=COLLECTIONS {
        assert!(
            stdout.contains(&format!("collection {collection}: ")),
            "progress line {collection}: {stdout}"
        );
    }
    assert!(
        stdout.contains(&format!(
            "{COLLECTIONS} collections of {entity} (0 failed), {COLLECTIONS} records published"
        )),
        "{stdout}"
    );
    assert!(scans > 10, "the workload ran ({scans} scans)");

    let records = read_records(&broker, &topic, COLLECTIONS);
    let codec = confluent();
    let batches: Vec<MetricBatch> = records
        .iter()
        .map(|(key, payload)| {
            assert_eq!(key, entity.as_bytes(), "keyed by entity");
            codec
                .decode(payload)
                .expect("a Confluent-framed MetricBatch")
        })
        .collect();
    let table = |batch: &MetricBatch, name: &str| {
        batch
            .samples
            .iter()
            .find(|s| {
                s.name == name && s.labels.get("table").map(String::as_str) == Some("public.big")
            })
            .map(|s| s.value)
    };
    for (index, batch) in batches.iter().enumerate() {
        assert_eq!(batch.entity, entity);
        assert_eq!(batch.source, "postgres");
        for name in [
            "pg_max_connections",
            "pg_longest_query_seconds",
            "db_connections_active",
        ] {
            assert!(
                batch.samples.iter().any(|s| s.name == name),
                "batch {index} has {name}"
            );
        }
        assert!(table(batch, "pg_table_seq_scan_total").is_some());
        // Rates start with the second collection.
        assert_eq!(table(batch, "pg_table_seq_scan_rate").is_some(), index > 0);
    }
    let times: Vec<i64> = batches.iter().map(|b| b.samples[0].time_us).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    let peak_rate = batches
        .iter()
        .filter_map(|b| table(b, "pg_table_seq_scan_rate"))
        .fold(0.0, f64::max);
    assert!(peak_rate >= 1.0, "peak seq scan rate {peak_rate}/s");

    // The records through the Kafka source's decoder and every detector of sql/.
    let mut decoder = AvroMetricBatchDecoder::new(confluent());
    let mut rows = decoder.new_rows();
    for (key, payload) in &records {
        let mut context = RecordContext::new(&topic, 0);
        context.key = Some(key);
        decoder
            .decode(payload, &context, &mut rows)
            .expect("decodes");
    }
    let rows = rows.finish().expect("batch");
    let streams = [
        StreamTable::new("db_metrics", metric_samples_schema(), "time").expect("table"),
        StreamTable::new("gpu", record_schema::<GpuSample>(), "time_us").expect("table"),
    ];
    let sql_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sql");
    let mut detectors = load_detectors(
        &sql_dir,
        &session_context(),
        &streams,
        DetectorOptions::default(),
    )
    .expect("detectors");
    let watermark = times.last().copied().unwrap_or_default() + 3_600_000_000;
    let mut alerts = Vec::new();
    for detector in &mut detectors {
        if detector.plan().stream().name() != "db_metrics" {
            continue;
        }
        detector.process_batch(&rows).expect("processes");
        for result in detector.on_watermark(watermark).expect("fires") {
            alerts.extend(result.alerts(0).expect("alerts"));
        }
    }
    assert!(!alerts.is_empty(), "no alert from {} rows", rows.num_rows());
    for alert in &alerts {
        assert_eq!(alert.alert_type, "seq_scan_increase", "{alert:#?}");
        assert_eq!(alert.entity, entity);
        assert_eq!(alert.labels["table_name"], "public.big");
        assert!(alert.evidence["seq_scans_per_s"] >= 1.0, "{alert:#?}");
    }
}

/// Runs `opsloop` with `args` to its end.
async fn opsloop(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_opsloop"))
            .args(&args)
            .output()
            .expect("opsloop runs")
    })
    .await
    .expect("joined")
}

#[tokio::test]
async fn collect_postgres_over_verify_full_tls_and_a_server_the_ca_did_not_sign_stops_it() {
    let (broker, postgres) = tokio::join!(TestBroker::start(), TestPostgres::start_tls());
    let (broker, postgres) = (broker.expect("broker"), postgres.expect("TLS postgres"));
    let tls = postgres.tls().expect("certificates").clone();
    let topic = broker
        .create_topic("pg-metrics-tls", 1)
        .await
        .expect("topic");
    let args = |ca: &Path| {
        vec![
            "collect".to_owned(),
            "postgres".to_owned(),
            "--dsn".to_owned(),
            format!(
                "postgres://postgres@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
                postgres.port(),
                ca.display()
            ),
            "--interval".to_owned(),
            "200ms".to_owned(),
            "--collections".to_owned(),
            "2".to_owned(),
            "--brokers".to_owned(),
            broker.bootstrap().to_owned(),
            "--metrics-topic".to_owned(),
            topic.clone(),
        ]
    };

    let output = opsloop(args(&tls.ca_cert())).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "opsloop failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let entity = format!("localhost:{}/postgres", postgres.port());
    assert!(
        stdout.contains(&format!(
            "2 collections of {entity} (0 failed), 2 records published"
        )),
        "{stdout}"
    );
    let records = read_records(&broker, &topic, 2);
    let batch: MetricBatch = confluent().decode(&records[0].1).expect("a MetricBatch");
    assert!(batch.samples.iter().any(|s| s.name == "pg_max_connections"));

    // A certificate no trusted CA signed will not start working: the command stops at once.
    let output = opsloop(args(&tls.other_ca_cert())).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("not signed by a CA in") && stderr.contains("other-ca.crt"),
        "{stderr}"
    );
}

#[tokio::test]
async fn collect_postgres_with_an_unreachable_broker_says_nothing_was_delivered() {
    let postgres = TestPostgres::start().await.expect("postgres");
    let args = vec![
        "collect".to_owned(),
        "postgres".to_owned(),
        "--dsn".to_owned(),
        postgres.connection_string(),
        "--interval".to_owned(),
        "200ms".to_owned(),
        "--collections".to_owned(),
        "2".to_owned(),
        "--delivery-timeout".to_owned(),
        "1s".to_owned(),
        "--brokers".to_owned(),
        "127.0.0.1:1".to_owned(),
    ];
    let started = Instant::now();
    let output = opsloop(args).await;
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stdout}\n{stderr}");
    // Two delivery timeouts and a backoff of one interval, not librdkafka's retries.
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
    let entity = format!("127.0.0.1:{}/postgres", postgres.port());
    for collection in 1..=2 {
        assert!(
            stdout.contains(&format!(
                "collection {collection} of {entity} failed ({collection} so far): its records \
                 were not delivered"
            )),
            "{stdout}"
        );
    }
    assert!(stdout.contains("next collection in 200ms"), "{stdout}");
    assert!(
        !stdout.contains("samples from"),
        "nothing reported as collected: {stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "2 collections of {entity} (2 failed, 2 not delivered), 0 records published"
        )),
        "{stdout}"
    );
    assert!(
        stderr.contains("nothing was delivered: the brokers 127.0.0.1:1 acknowledged none"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("cannot reach the Kafka brokers").count(),
        1,
        "one warning: {stderr}"
    );
}
