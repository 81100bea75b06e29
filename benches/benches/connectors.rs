//! Connector throughput.
//!
//! 1. Decoding, one core: records/s and samples/s into Arrow for every format a source reads.
//! 2. Reading from a real broker: the opsloop source (consumer group, decoding into Arrow
//!    micro-batches, offset commits) against a bare rdkafka consumer that only receives the
//!    same topic, measured in the same run; the goal is at least 0.8 of the bare rate.
//!
//! `cargo bench -p opsloop-benches --bench connectors` (starts tansu unless
//! `OPSLOOP_TEST_BROKERS` names a broker; `OPSLOOP_BENCH_RECORDS` sets the topic size).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use opsloop_benches::{format_rate, items_per_second, measurement_time};
use opsloop_connectors::decode::{
    AvroMetricBatchDecoder, AvroRecordDecoder, Decoder, JsonLinesDecoder, OtlpEncoding,
    OtlpLogsDecoder, OtlpMetricsDecoder, OtlpTracesDecoder, PrometheusTextDecoder, RecordContext,
    RowBuilder,
};
use opsloop_connectors::kafka::{
    DeadLetterWriter, KafkaSink, KafkaSource, RecordWriter, SinkConfig, SourceConfig,
};
use opsloop_connectors::metrics::SourceMetrics;
use opsloop_schemas::telemetry::{GpuSample, MetricBatch, MetricSample};
use opsloop_schemas::{Codec, SchemaRegistry, WireFormat};
use opsloop_tests::{TestBroker, unique_name};
use rdkafka::consumer::{Consumer, StreamConsumer};

const SAMPLES_PER_BATCH: usize = 20;

fn metric_batch(seq: usize) -> MetricBatch {
    MetricBatch {
        entity: format!("db-{}", seq % 64),
        source: "bench".to_owned(),
        samples: (0..SAMPLES_PER_BATCH)
            .map(|i| MetricSample {
                name: format!("pg_stat_statements_mean_exec_time_ms_{}", i % 10),
                labels: BTreeMap::from([("queryid".to_owned(), (1000 + i).to_string())]),
                value: 3.5 + (seq + i) as f64 * 0.25,
                time_us: 1_795_003_200_000_000 + (seq * 1000 + i) as i64,
            })
            .collect(),
    }
}

fn confluent() -> Codec {
    Codec::new(WireFormat::Confluent, Arc::new(SchemaRegistry::builtin()))
}

/// Decodes `payloads` in a loop; returns (records/s, samples/s).
fn decode_rate<D: Decoder>(mut decoder: D, payloads: &[Vec<u8>]) -> (f64, f64) {
    let mut rows = decoder.new_rows();
    let context = RecordContext::new("bench", 1_795_003_200_000_000).with_key(b"db-1");
    let mut samples_per_pass = 0;
    for payload in payloads {
        samples_per_pass += decoder
            .decode(payload, &context, &mut rows)
            .expect("bench payloads decode");
    }
    rows.finish().expect("batch");
    let records = payloads.len() as u64;
    let rate = items_per_second(records, measurement_time(), || {
        for payload in payloads {
            decoder
                .decode(payload, &context, &mut rows)
                .expect("bench payloads decode");
        }
        std::hint::black_box(rows.finish().expect("batch"));
    });
    (rate, rate * samples_per_pass as f64 / records as f64)
}

fn decoding() {
    let batches: Vec<MetricBatch> = (0..1000).map(metric_batch).collect();
    let avro: Vec<Vec<u8>> = batches
        .iter()
        .map(|b| confluent().encode(b).expect("encode"))
        .collect();
    let json_lines: Vec<Vec<u8>> = batches
        .iter()
        .map(|b| serde_json::to_vec(b).expect("json"))
        .collect();
    let node_exporter =
        vec![include_bytes!("../../connectors/tests/fixtures/node-exporter.txt").to_vec()];
    let dcgm = vec![include_bytes!("../../connectors/tests/fixtures/dcgm-exporter.txt").to_vec()];
    let gpus: Vec<Vec<u8>> = opsloop_connectors::decode::dcgm_gpu_samples(
        std::str::from_utf8(&dcgm[0]).expect("utf-8"),
        0,
    )
    .expect("fixture")
    .iter()
    .map(|gpu: &GpuSample| confluent().encode(gpu).expect("encode"))
    .collect();
    let otlp = opsloop_benches::otlp::requests();

    println!("decoding into Arrow, one core");
    println!("{:<34} {:>14} {:>14}", "format", "records/s", "samples/s");
    let report = |name: &str, (records, samples): (f64, f64)| {
        println!(
            "{name:<34} {:>14} {:>14}",
            format_rate(records),
            format_rate(samples)
        );
    };
    report(
        "Avro (Confluent) MetricBatch x20",
        decode_rate(AvroMetricBatchDecoder::new(confluent()), &avro),
    );
    report(
        "JSON lines MetricBatch x20",
        decode_rate(JsonLinesDecoder::new(), &json_lines),
    );
    report(
        "Prometheus text (node-exporter)",
        decode_rate(PrometheusTextDecoder::new(), &node_exporter),
    );
    report(
        "Prometheus text (dcgm-exporter)",
        decode_rate(PrometheusTextDecoder::new(), &dcgm),
    );
    report(
        "Avro (Confluent) GpuSample",
        decode_rate(AvroRecordDecoder::<GpuSample>::new(confluent()), &gpus),
    );
    for (encoding, name) in [
        (OtlpEncoding::Proto, "otlp_proto"),
        (OtlpEncoding::Json, "otlp_json"),
    ] {
        let payloads = otlp.encoded(encoding);
        report(
            &format!("{name} metrics"),
            decode_rate(OtlpMetricsDecoder::new(encoding), &payloads.metrics),
        );
        report(
            &format!("{name} logs"),
            decode_rate(OtlpLogsDecoder::new(encoding), &payloads.logs),
        );
        report(
            &format!("{name} spans"),
            decode_rate(OtlpTracesDecoder::new(encoding), &payloads.spans),
        );
    }
}

async fn broker_read() {
    let records: usize = std::env::var("OPSLOOP_BENCH_RECORDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    let broker = TestBroker::start().await.expect("broker starts");
    let topic = broker.create_topic("bench-read", 4).await.expect("topic");
    let sink = KafkaSink::new(&broker.kafka_config(), SinkConfig::default()).expect("sink");
    let mut writer = RecordWriter::new(sink.clone(), confluent(), 50_000);
    let started = Instant::now();
    for seq in 0..records {
        writer.send(&topic, &metric_batch(seq)).await.expect("send");
    }
    writer.finish().await.expect("delivered");
    let (_, bytes) = writer.sent();
    println!(
        "\nbroker read ({:?}): {records} records of {SAMPLES_PER_BATCH} samples ({:.1} MB) on 4 partitions, produced in {:.1} s",
        broker.backend(),
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    let mut bare_best = 0f64;
    let mut source_best = 0f64;
    for round in 1..=3 {
        let bare = bare_consumer_rate(&broker, &topic, records).await;
        let source = source_rate(&broker, &topic, records, &sink).await;
        println!(
            "round {round}: records read, bare rdkafka {}, opsloop source {} ({} samples) = {:.2}",
            format_rate(bare),
            format_rate(source),
            format_rate(source * SAMPLES_PER_BATCH as f64),
            source / bare
        );
        bare_best = bare_best.max(bare);
        source_best = source_best.max(source);
    }
    println!(
        "best of 3: records read, bare {}, source {}: ratio {:.2} (goal >= 0.80)",
        format_rate(bare_best),
        format_rate(source_best),
        source_best / bare_best
    );
}

async fn bare_consumer_rate(broker: &TestBroker, topic: &str, records: usize) -> f64 {
    let consumer: StreamConsumer = broker
        .kafka_config()
        .client_config()
        .set("group.id", unique_name("bench-bare"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    // The clock starts once the first record is in: group join time is not read throughput.
    let first = consumer.recv().await.expect("message");
    std::hint::black_box(&first);
    let started = Instant::now();
    for _ in 1..records {
        let message = consumer.recv().await.expect("message");
        std::hint::black_box(&message);
    }
    (records - 1) as f64 / started.elapsed().as_secs_f64()
}

async fn source_rate(broker: &TestBroker, topic: &str, records: usize, sink: &KafkaSink) -> f64 {
    let config = SourceConfig::new("bench", vec![topic.to_owned()], unique_name("bench-source"));
    let mut source = KafkaSource::start(
        &broker.kafka_config(),
        config,
        AvroMetricBatchDecoder::new(confluent()),
        DeadLetterWriter::new(sink.clone(), unique_name("bench-dlq")),
        SourceMetrics::unregistered("bench"),
    )
    .expect("source");
    let committer = source.committer();
    // As for the bare consumer, the clock starts once the first batch is in, and that batch's
    // records are not counted.
    let first = source.next_batch().await.expect("running").expect("batch");
    committer.commit(&first.offsets).expect("commit");
    let started = Instant::now();
    let mut read = first.records;
    while read < records {
        let batch = source.next_batch().await.expect("running").expect("batch");
        read += batch.records;
        committer.commit(&batch.offsets).expect("commit");
    }
    let rate = (read - first.records) as f64 / started.elapsed().as_secs_f64();
    source.stop().await;
    rate
}

fn main() {
    decoding();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(broker_read());
}
