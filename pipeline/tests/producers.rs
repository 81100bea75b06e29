//! The producer commands users run, against a real broker: `opsloop publish`, `collect
//! prometheus` (scraping a real HTTP endpoint) and `generate`.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray};
use opsloop_connectors::decode::{AvroMetricBatchDecoder, AvroRecordDecoder, Decoder};
use opsloop_connectors::kafka::{
    DeadLetterWriter, KafkaSink, KafkaSource, SinkConfig, SourceBatch, SourceConfig,
};
use opsloop_connectors::metrics::SourceMetrics;
use opsloop_schemas::telemetry::{GpuSample, LogRecord, MetricBatch, MetricSample};
use opsloop_schemas::{Codec, RecordKind, SchemaRegistry, WireFormat};
use opsloop_tests::{TestBroker, unique_name};
use support::{opsloop, succeeded};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn confluent() -> Codec {
    Codec::new(WireFormat::Confluent, Arc::new(SchemaRegistry::builtin()))
}

/// Reads `topic` from the start until `records` records arrived.
async fn read_topic<D: Decoder + 'static>(
    broker: &TestBroker,
    topic: &str,
    decoder: D,
    records: usize,
) -> Vec<SourceBatch> {
    let sink = KafkaSink::new(&broker.kafka_config(), SinkConfig::default()).expect("sink");
    let mut config = SourceConfig::new("test", vec![topic.to_owned()], unique_name("reader"));
    config.max_batch_delay = Duration::from_millis(50);
    let mut source = KafkaSource::start(
        &broker.kafka_config(),
        config,
        decoder,
        DeadLetterWriter::new(sink, unique_name("unused-dlq")),
        SourceMetrics::unregistered("test"),
    )
    .expect("source");
    let mut batches: Vec<SourceBatch> = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while batches.iter().map(|b| b.records).sum::<usize>() < records {
            let batch = source
                .next_batch()
                .await
                .expect("running")
                .expect("no error");
            assert_eq!(batch.dead_letters, 0, "every published record decodes");
            batches.push(batch);
        }
    })
    .await
    .expect("every record arrives");
    source.stop().await;
    batches
}

fn strings(batches: &[SourceBatch], column: &str) -> Vec<String> {
    batches
        .iter()
        .flat_map(|batch| {
            let values = batch
                .rows
                .column_by_name(column)
                .expect("column")
                .as_string::<i32>();
            (0..values.len())
                .map(|i| values.value(i).to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn publish_sends_json_lines_and_csv_as_keyed_avro() {
    let broker = TestBroker::start().await.expect("broker");
    let topic = broker.create_topic("publish", 3).await.expect("topic");
    let dir = tempfile::tempdir().expect("tempdir");
    let jsonl = dir.path().join("batches.jsonl");
    let mut file = std::fs::File::create(&jsonl).expect("file");
    for entity in ["db-1", "db-2", "db-3"] {
        writeln!(
            file,
            r#"{{"entity":"{entity}","source":"file","samples":[{{"name":"cpu","labels":{{}},"value":0.5,"time_us":1795003200000000}}]}}"#
        )
        .expect("write");
    }
    let csv = dir.path().join("samples.csv");
    std::fs::write(
        &csv,
        "entity,name,value,timestamp,db\n\
         db-4,latency_ms,12.5,2026-11-25T12:00:00Z,orders\n\
         db-4,latency_ms,13.5,2026-11-25T12:00:10Z,orders\n\
         db-5,latency_ms,40,2026-11-25T12:00:00Z,\n",
    )
    .expect("csv");
    let avro = dir.path().join("batches.avro");
    let container = serde_avro_fast::object_container_file_encoding::write_all(
        RecordKind::MetricBatch.schema(),
        serde_avro_fast::object_container_file_encoding::Compression::Null,
        Vec::new(),
        ["db-6", "db-7"].map(|entity| MetricBatch {
            entity: entity.to_owned(),
            source: "avro-file".to_owned(),
            samples: vec![MetricSample {
                name: "qps".to_owned(),
                labels: Default::default(),
                value: 250.0,
                time_us: 1_795_003_200_000_000,
            }],
        }),
    )
    .expect("container file");
    std::fs::write(&avro, container).expect("avro file");
    let out = succeeded(
        &opsloop(vec![
            "publish".into(),
            "--brokers".into(),
            broker.bootstrap().into(),
            "--topic".into(),
            topic.clone(),
            "--kind".into(),
            "MetricBatch".into(),
            jsonl.display().to_string(),
            csv.display().to_string(),
            avro.display().to_string(),
        ])
        .await,
    );
    // Three JSON lines, the CSV's rows grouped per entity (db-4 with two rows, db-5), and the
    // container file's two records.
    assert!(out.contains("published 7 MetricBatch records"), "{out}");

    let batches = read_topic(&broker, &topic, AvroMetricBatchDecoder::new(confluent()), 7).await;
    let entities: BTreeSet<String> = strings(&batches, "entity").into_iter().collect();
    assert_eq!(
        entities,
        ["db-1", "db-2", "db-3", "db-4", "db-5", "db-6", "db-7"]
            .map(String::from)
            .into()
    );
    assert_eq!(batches.iter().map(|b| b.rows.num_rows()).sum::<usize>(), 8);

    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "entity,name,value,time_us\ndb-1,cpu,not-a-number,1\n").expect("csv");
    let failed = opsloop(vec![
        "publish".into(),
        "--brokers".into(),
        broker.bootstrap().into(),
        "--topic".into(),
        topic,
        "--kind".into(),
        "MetricBatch".into(),
        bad.display().to_string(),
    ])
    .await;
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("CSV row 2") && stderr.contains("not a number"),
        "{stderr}"
    );
}

/// Serves `page` over HTTP on a free port for as long as the returned task runs.
async fn serve(page: &'static str) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/metrics", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut request = vec![0u8; 4096];
            let _ = stream.read(&mut request).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    (url, task)
}

#[tokio::test]
async fn collect_prometheus_scrapes_dcgm_exporter_onto_the_gpu_and_metric_topics() {
    let broker = TestBroker::start().await.expect("broker");
    let gpu_topic = broker.create_topic("gpu", 2).await.expect("topic");
    let metrics_topic = broker.create_topic("metrics", 2).await.expect("topic");
    let page = include_str!("../../connectors/tests/fixtures/dcgm-exporter.txt");
    let (url, server) = serve(page).await;
    let out = succeeded(
        &opsloop(vec![
            "collect".into(),
            "prometheus".into(),
            "--url".into(),
            url,
            "--interval".into(),
            "200ms".into(),
            "--scrapes".into(),
            "2".into(),
            "--brokers".into(),
            broker.bootstrap().into(),
            "--gpu-topic".into(),
            gpu_topic.clone(),
            "--metrics-topic".into(),
            metrics_topic,
        ])
        .await,
    );
    server.abort();
    assert!(
        out.contains("2 scrapes") && out.contains("(0 failed)"),
        "{out}"
    );

    let gpus: BTreeSet<&str> = page
        .lines()
        .filter(|line| line.starts_with("DCGM_FI_DEV_GPU_UTIL{"))
        .filter_map(|line| line.split("UUID=\"").nth(1)?.split('"').next())
        .collect();
    assert!(!gpus.is_empty());
    let batches = read_topic(
        &broker,
        &gpu_topic,
        AvroRecordDecoder::<GpuSample>::new(confluent()),
        2 * gpus.len(),
    )
    .await;
    let uuids: BTreeSet<String> = strings(&batches, "gpu_uuid").into_iter().collect();
    assert_eq!(uuids, gpus.iter().map(|g| g.to_string()).collect());
}

#[tokio::test]
async fn generate_publishes_the_fleet_with_its_faults() {
    let broker = TestBroker::start().await.expect("broker");
    let topics: Vec<String> = generate_topics(&broker).await;
    let out = succeeded(
        &opsloop(vec![
            "generate".into(),
            "--brokers".into(),
            broker.bootstrap().into(),
            "--duration".into(),
            "2m".into(),
            "--databases".into(),
            "2".into(),
            "--gpu-hosts".into(),
            "1".into(),
            "--gpus-per-host".into(),
            "2".into(),
            "--models".into(),
            "1".into(),
            "--fault".into(),
            "schema_mismatch@model-0:+0s/2m".into(),
            "--metrics-topic".into(),
            topics[0].clone(),
            "--gpu-topic".into(),
            topics[1].clone(),
            "--features-topic".into(),
            topics[2].clone(),
            "--logs-topic".into(),
            topics[3].clone(),
        ])
        .await,
    );
    assert!(out.contains("generated"), "{out}");
    // 2 minutes of 10 s ticks: 12 ticks, one sample per GPU per tick.
    let gpus = read_topic(
        &broker,
        &topics[1],
        AvroRecordDecoder::<GpuSample>::new(confluent()),
        24,
    )
    .await;
    assert_eq!(gpus.iter().map(|b| b.records).sum::<usize>(), 24);
    let logs = read_topic(
        &broker,
        &topics[3],
        AvroRecordDecoder::<LogRecord>::new(confluent()),
        1,
    )
    .await;
    assert!(
        strings(&logs, "body")
            .iter()
            .any(|body| body.contains("feature") || body.contains("schema")),
        "the schema_mismatch fault writes error logs"
    );
}

async fn generate_topics(broker: &TestBroker) -> Vec<String> {
    let mut topics = Vec::new();
    for base in ["g-metrics", "g-gpu", "g-features", "g-logs"] {
        topics.push(broker.create_topic(base, 2).await.expect("topic"));
    }
    topics
}
