//! The source and sink through a real broker: every format end to end (Confluent Avro, JSON
//! lines, a dcgm-exporter page, OTLP proto and JSON), a consumer group that
//! loses a member mid-stream, a corpus of bad records that all reach the dead-letter topic
//! (one too large for it stored truncated), dead letters that cannot be written, and records
//! stamped a day ahead.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Float64Type;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan, Status};
use opsloop_connectors::Retry;
use opsloop_connectors::decode::{
    AvroMetricBatchDecoder, Decoder, JsonLinesDecoder, OtlpEncoding, OtlpMetricsDecoder,
    OtlpTracesDecoder, PrometheusTextDecoder,
};
use opsloop_connectors::kafka::{
    BatchOffsets, DEAD_LETTER_MAX_PAYLOAD_BYTES, DeadLetterWriter, FUTURE_TIMESTAMP, KafkaConfig,
    KafkaSink, KafkaSource, OutgoingRecord, SinkConfig, SourceBatch, SourceConfig,
    dead_letter_headers,
};
use opsloop_connectors::metrics::SourceMetrics;
use opsloop_schemas::ids::hex;
use opsloop_schemas::telemetry::{MetricBatch, MetricSample};
use opsloop_schemas::{Codec, SchemaRegistry, WireFormat};
use opsloop_tests::{TestBroker, unique_name};
use prost::Message as _;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use sha2::{Digest, Sha256};

const DEADLINE: Duration = Duration::from_secs(60);

fn confluent() -> Codec {
    Codec::new(WireFormat::Confluent, Arc::new(SchemaRegistry::builtin()))
}

fn metric_batch(entity: &str, seq: usize) -> MetricBatch {
    MetricBatch {
        entity: entity.to_owned(),
        source: "test".to_owned(),
        samples: vec![
            MetricSample {
                name: "seq".to_owned(),
                labels: BTreeMap::from([("db".to_owned(), entity.to_owned())]),
                value: seq as f64,
                time_us: 1_795_003_200_000_000 + seq as i64,
            },
            MetricSample {
                name: "db_query_latency_ms".to_owned(),
                labels: BTreeMap::new(),
                value: 12.5,
                time_us: 1_795_003_200_000_000 + seq as i64,
            },
        ],
    }
}

struct Harness {
    broker: TestBroker,
    sink: KafkaSink,
    dead_letter_topic: String,
}

impl Harness {
    async fn start() -> Harness {
        let broker = TestBroker::start().await.expect("broker starts");
        let sink = KafkaSink::new(&large_records(broker.kafka_config()), SinkConfig::default())
            .expect("sink");
        let dead_letter_topic = broker
            .create_topic("deadletter", 1)
            .await
            .expect("dead-letter topic");
        Harness {
            broker,
            sink,
            dead_letter_topic,
        }
    }

    fn source<D: Decoder + 'static>(
        &self,
        topic: &str,
        group: &str,
        decoder: D,
    ) -> (KafkaSource, SourceMetrics) {
        let dead_letters = DeadLetterWriter::new(self.sink.clone(), &self.dead_letter_topic);
        self.source_of(&[topic], group, decoder, dead_letters)
    }

    /// A source of `topics` writing its dead letters with `dead_letters`.
    fn source_of<D: Decoder + 'static>(
        &self,
        topics: &[&str],
        group: &str,
        decoder: D,
        dead_letters: DeadLetterWriter,
    ) -> (KafkaSource, SourceMetrics) {
        let metrics = SourceMetrics::unregistered(&unique_name("source"));
        let topics = topics.iter().map(|&topic| topic.to_owned()).collect();
        let mut config = SourceConfig::new("test", topics, group);
        config.max_batch_delay = Duration::from_millis(50);
        config.session_timeout = Duration::from_secs(6);
        let source = KafkaSource::start(
            &large_records(self.broker.kafka_config()),
            config,
            decoder,
            dead_letters,
            metrics.clone(),
        )
        .expect("source starts");
        (source, metrics)
    }

    async fn send(&self, topic: &str, key: &str, payload: &[u8]) {
        self.sink
            .send(OutgoingRecord::new(topic, Some(key.as_bytes()), payload))
            .await
            .expect("delivered");
    }

    /// The first `expected` dead letters, sorted.
    async fn dead_letters(&self, expected: usize) -> Vec<Letter> {
        let consumer: StreamConsumer = self
            .broker
            .kafka_config()
            .client_config()
            .set("group.id", unique_name("dlq-reader"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        consumer
            .subscribe(&[self.dead_letter_topic.as_str()])
            .expect("subscribe");
        let mut letters = Vec::new();
        tokio::time::timeout(DEADLINE, async {
            while letters.len() < expected {
                let message = consumer.recv().await.expect("dead letter");
                let header = |name: &str| {
                    let headers = message.headers().expect("dead letters carry headers");
                    let value = headers
                        .iter()
                        .find(|h| h.key == name)
                        .and_then(|h| h.value)
                        .unwrap_or_else(|| panic!("header {name}"));
                    String::from_utf8(value.to_vec()).expect("utf-8 header")
                };
                let offset: i64 = header(dead_letter_headers::SOURCE_OFFSET)
                    .parse()
                    .expect("decimal offset");
                assert!(offset >= 0);
                let payload = message.payload().unwrap_or_default().to_vec();
                let size: usize = header(dead_letter_headers::SOURCE_SIZE)
                    .parse()
                    .expect("decimal size");
                assert!(payload.len() <= size.min(DEAD_LETTER_MAX_PAYLOAD_BYTES));
                assert!(!header(dead_letter_headers::REASON).is_empty());
                assert_eq!(
                    message.key(),
                    Some(header(dead_letter_headers::SOURCE_TOPIC).as_bytes()),
                    "dead letters are keyed by source topic"
                );
                assert!(!header(dead_letter_headers::SOURCE_KEY).is_empty());
                letters.push(Letter {
                    reason_code: header(dead_letter_headers::REASON_CODE),
                    topic: header(dead_letter_headers::SOURCE_TOPIC),
                    partition: header(dead_letter_headers::SOURCE_PARTITION)
                        .parse()
                        .expect("decimal partition"),
                    offset,
                    size,
                    sha256: header(dead_letter_headers::SOURCE_SHA256),
                    reason: header(dead_letter_headers::REASON),
                    payload,
                });
            }
        })
        .await
        .expect("every dead letter arrives");
        letters.sort();
        letters
    }
}

/// A dead letter as read back from its topic.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Letter {
    reason_code: String,
    topic: String,
    partition: i32,
    offset: i64,
    /// The original record's size and SHA-256, from the headers.
    size: usize,
    sha256: String,
    reason: String,
    /// What the dead letter stores: the record, or its first bytes.
    payload: Vec<u8>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn large_records(mut kafka: KafkaConfig) -> KafkaConfig {
    kafka
        .properties
        .insert("message.max.bytes".to_owned(), (16 << 20).to_string());
    kafka
}

/// Reads batches, committing each, until `done` says enough.
async fn read_until(
    source: &mut KafkaSource,
    mut done: impl FnMut(&[SourceBatch]) -> bool,
) -> Vec<SourceBatch> {
    let committer = source.committer();
    let mut batches = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        while !done(&batches) {
            let batch = source
                .next_batch()
                .await
                .expect("source running")
                .expect("no fatal error");
            committer.commit(&batch.offsets).expect("commit");
            batches.push(batch);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out after {} batches", batches.len()));
    batches
}

fn rows(batches: &[SourceBatch]) -> usize {
    batches.iter().map(|b| b.rows.num_rows()).sum()
}

fn records(batches: &[SourceBatch]) -> usize {
    batches.iter().map(|b| b.records).sum()
}

/// `(entity, name) -> values` over every batch.
fn values_by_series(batches: &[SourceBatch]) -> HashMap<(String, String), Vec<f64>> {
    let mut series: HashMap<(String, String), Vec<f64>> = HashMap::new();
    for batch in batches {
        let rows: &RecordBatch = &batch.rows;
        let entity = rows
            .column_by_name("entity")
            .expect("entity")
            .as_string::<i32>();
        let name = rows
            .column_by_name("name")
            .expect("name")
            .as_string::<i32>();
        let value = rows
            .column_by_name("value")
            .expect("value")
            .as_primitive::<Float64Type>();
        for row in 0..rows.num_rows() {
            series
                .entry((entity.value(row).to_owned(), name.value(row).to_owned()))
                .or_default()
                .push(value.value(row));
        }
    }
    series
}

#[tokio::test]
async fn confluent_avro_metric_batches_arrive_keyed_and_whole() {
    let harness = Harness::start().await;
    let topic = harness
        .broker
        .create_topic("metrics", 4)
        .await
        .expect("topic");
    for seq in 0..200 {
        let entity = format!("db-{}", seq % 8);
        let payload = confluent()
            .encode(&metric_batch(&entity, seq))
            .expect("encode");
        harness.send(&topic, &entity, &payload).await;
    }
    let (mut source, metrics) = harness.source(
        &topic,
        &unique_name("group"),
        AvroMetricBatchDecoder::new(confluent()),
    );
    let batches = read_until(&mut source, |b| records(b) >= 200).await;
    assert_eq!(records(&batches), 200);
    assert_eq!(rows(&batches), 400, "two samples per record");
    assert_eq!(metrics.records(), 200);

    let series = values_by_series(&batches);
    for db in 0..8 {
        let seqs = &series[&(format!("db-{db}"), "seq".to_owned())];
        assert_eq!(seqs.len(), 25);
        // Keyed by entity: one partition per entity, so its records arrive in order.
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "db-{db} in order: {seqs:?}"
        );
    }
    // Offsets cover the four partitions exactly once each record.
    let mut per_partition = BTreeMap::new();
    for batch in &batches {
        for progress in batch.offsets.partitions() {
            *per_partition.entry(progress.partition).or_insert(0) += progress.records;
            // Event time comes from the samples (base + seq µs), not the record timestamps.
            assert!(
                progress
                    .max_event_time_us
                    .is_some_and(|t| (1_795_003_200_000_000..1_795_003_200_000_200).contains(&t)),
                "{progress:?}"
            );
        }
    }
    assert_eq!(per_partition.values().sum::<usize>(), 200);
    source.stop().await;

    // A new group resuming from offsets 10 on every partition skips what lies below them.
    let resume: HashMap<i32, i64> = (0..4).map(|partition| (partition, 10)).collect();
    let metrics = SourceMetrics::unregistered(&unique_name("resume"));
    let mut config = SourceConfig::new("resume", vec![topic.clone()], unique_name("group"));
    config.max_batch_delay = Duration::from_millis(50);
    config.resume_from = HashMap::from([(topic.clone(), resume)]);
    let mut resumed = KafkaSource::start(
        &harness.broker.kafka_config(),
        config,
        AvroMetricBatchDecoder::new(confluent()),
        DeadLetterWriter::new(harness.sink.clone(), &harness.dead_letter_topic),
        metrics.clone(),
    )
    .expect("source starts");
    let batches = read_until(&mut resumed, |b| records(b) >= 160).await;
    assert_eq!(records(&batches), 160, "40 records skipped on 4 partitions");
    assert_eq!(metrics.skipped(), 40);
    for batch in &batches {
        for progress in batch.offsets.partitions() {
            assert!(progress.next_offset > 10, "{progress:?}");
        }
    }
    resumed.stop().await;
}

#[tokio::test]
async fn json_lines_and_prometheus_pages_decode_through_the_broker() {
    let harness = Harness::start().await;
    let json_topic = harness
        .broker
        .create_topic("jsonl", 2)
        .await
        .expect("topic");
    let page_topic = harness.broker.create_topic("dcgm", 2).await.expect("topic");
    let lines = concat!(
        r#"{"entity":"db-1","samples":[{"name":"cpu","value":0.5,"time_us":1795003200000000}]}"#,
        "\n",
        r#"{"entity":"db-1","name":"connections","value":42,"timestamp":"2026-11-25T12:00:00Z"}"#,
        "\n"
    );
    harness.send(&json_topic, "db-1", lines.as_bytes()).await;
    let page = include_str!("fixtures/dcgm-exporter.txt");
    harness
        .send(&page_topic, "gpu-node-1", page.as_bytes())
        .await;

    let (mut json_source, _) =
        harness.source(&json_topic, &unique_name("group"), JsonLinesDecoder::new());
    let json_batches = read_until(&mut json_source, |b| records(b) >= 1).await;
    let series = values_by_series(&json_batches);
    assert_eq!(series[&("db-1".to_owned(), "cpu".to_owned())], vec![0.5]);
    assert_eq!(
        series[&("db-1".to_owned(), "connections".to_owned())],
        vec![42.0]
    );

    let (mut page_source, _) = harness.source(
        &page_topic,
        &unique_name("group"),
        PrometheusTextDecoder::new(),
    );
    let page_batches = read_until(&mut page_source, |b| records(b) >= 1).await;
    let series = values_by_series(&page_batches);
    let utilisation: usize = series
        .iter()
        .filter(|((_, name), _)| name == "DCGM_FI_DEV_GPU_UTIL")
        .map(|(_, values)| values.len())
        .sum();
    let expected_gpus = page
        .lines()
        .filter(|line| line.starts_with("DCGM_FI_DEV_GPU_UTIL{"))
        .count();
    assert!(expected_gpus > 0);
    assert_eq!(utilisation, expected_gpus, "one utilisation sample per GPU");
    assert_eq!(
        rows(&page_batches),
        page.lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .count(),
        "every sample line of the page is a row"
    );
    json_source.stop().await;
    page_source.stop().await;
}

fn service(name: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![KeyValue {
            key: "service.instance.id".to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(name.to_owned())),
            }),
            ..Default::default()
        }],
        ..Default::default()
    })
}

fn otlp_gauge(instance: &str, value: f64) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: service(instance),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "db.client.connections.usage".to_owned(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: 1_795_003_200_000_000_000,
                            value: Some(number_data_point::Value::AsDouble(value)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn otlp_spans(instance: &str) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: service(instance),
            scope_spans: vec![ScopeSpans {
                spans: vec![OtlpSpan {
                    trace_id: vec![7; 16],
                    span_id: vec![1; 8],
                    name: "SELECT features".to_owned(),
                    start_time_unix_nano: 1_795_003_200_000_000_000,
                    end_time_unix_nano: 1_795_003_200_002_500_000,
                    status: Some(Status {
                        code: 2,
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test]
async fn otlp_requests_from_the_collector_exporter_decode_in_both_encodings() {
    let harness = Harness::start().await;
    for encoding in [OtlpEncoding::Proto, OtlpEncoding::Json] {
        let metrics_topic = harness
            .broker
            .create_topic("otlp_metrics", 2)
            .await
            .expect("topic");
        let spans_topic = harness
            .broker
            .create_topic("otlp_spans", 2)
            .await
            .expect("topic");
        for (instance, value) in [("pg-1", 3.0), ("pg-2", 5.0)] {
            let request = otlp_gauge(instance, value);
            let payload = match encoding {
                OtlpEncoding::Proto => request.encode_to_vec(),
                OtlpEncoding::Json => serde_json::to_vec(&request).expect("json"),
            };
            harness.send(&metrics_topic, instance, &payload).await;
        }
        let spans = otlp_spans("pg-1");
        let payload = match encoding {
            OtlpEncoding::Proto => spans.encode_to_vec(),
            OtlpEncoding::Json => serde_json::to_vec(&spans).expect("json"),
        };
        harness.send(&spans_topic, "trace", &payload).await;

        let (mut metrics, _) = harness.source(
            &metrics_topic,
            &unique_name("group"),
            OtlpMetricsDecoder::new(encoding),
        );
        let batches = read_until(&mut metrics, |b| records(b) >= 2).await;
        let series = values_by_series(&batches);
        let name = "db.client.connections.usage".to_owned();
        assert_eq!(
            series[&("pg-1".to_owned(), name.clone())],
            vec![3.0],
            "{encoding}"
        );
        assert_eq!(series[&("pg-2".to_owned(), name)], vec![5.0], "{encoding}");

        let (mut traces, _) = harness.source(
            &spans_topic,
            &unique_name("group"),
            OtlpTracesDecoder::new(encoding),
        );
        let batches = read_until(&mut traces, |b| records(b) >= 1).await;
        let rows = &batches
            .iter()
            .find(|b| b.rows.num_rows() > 0)
            .expect("a span")
            .rows;
        let duration = rows
            .column_by_name("duration_us")
            .expect("duration")
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0);
        assert_eq!(duration, 2500, "{encoding}");
        let status = rows
            .column_by_name("status")
            .expect("status")
            .as_string::<i32>()
            .value(0);
        assert_eq!(status, "ERROR", "{encoding}");
        metrics.stop().await;
        traces.stop().await;
    }
}

#[tokio::test]
async fn a_group_member_that_stops_mid_stream_loses_nothing() {
    let harness = Harness::start().await;
    let topic = harness
        .broker
        .create_topic("failover", 4)
        .await
        .expect("topic");
    let group = unique_name("group");
    let keys: Vec<String> = (0..40).map(|k| format!("db-{k}")).collect();
    let per_key_first = 10;
    let per_key_total = 20;
    let send_round = |from: usize, to: usize| {
        let harness = &harness;
        let topic = &topic;
        let keys = &keys;
        async move {
            for seq in from..to {
                for key in keys {
                    let payload = confluent().encode(&metric_batch(key, seq)).expect("encode");
                    harness.send(topic, key, &payload).await;
                }
            }
        }
    };
    send_round(0, per_key_first).await;

    let (mut first, _) = harness.source(&topic, &group, AvroMetricBatchDecoder::new(confluent()));
    let (mut second, _) = harness.source(&topic, &group, AvroMetricBatchDecoder::new(confluent()));

    // Both members read until the first round is through, the first member then stops
    // without warning its peer.
    let mut seen: HashMap<(String, String), Vec<f64>> = HashMap::new();
    let first_round = keys.len() * per_key_first;
    let mut read_by_first = 0;
    let mut read_by_second = 0;
    tokio::time::timeout(DEADLINE, async {
        while read_by_first + read_by_second < first_round {
            tokio::select! {
                Some(batch) = first.next_batch() => {
                    let batch = batch.expect("first member");
                    first.committer().commit(&batch.offsets).expect("commit");
                    read_by_first += batch.records;
                    merge(&mut seen, std::slice::from_ref(&batch));
                }
                Some(batch) = second.next_batch() => {
                    let batch = batch.expect("second member");
                    second.committer().commit(&batch.offsets).expect("commit");
                    read_by_second += batch.records;
                    merge(&mut seen, std::slice::from_ref(&batch));
                }
            }
        }
    })
    .await
    .expect("the first round is read");
    first.stop().await;

    send_round(per_key_first, per_key_total).await;
    let expected: usize = keys.len() * per_key_total;
    let remaining = read_until(&mut second, |batches| {
        let mut all = seen.clone();
        for (series, values) in values_by_series(batches) {
            all.entry(series).or_default().extend(values);
        }
        keys.iter().all(|key| {
            all.get(&(key.clone(), "seq".to_owned()))
                .is_some_and(|values| distinct(values) == per_key_total)
        })
    })
    .await;
    merge(&mut seen, &remaining);

    for key in &keys {
        let values = &seen[&(key.clone(), "seq".to_owned())];
        assert_eq!(
            distinct(values),
            per_key_total,
            "{key}: every record processed at least once"
        );
        assert!(values.len() >= per_key_total);
    }
    let total: usize = keys
        .iter()
        .map(|key| seen[&(key.clone(), "seq".to_owned())].len())
        .sum();
    assert!(total >= expected);
    second.stop().await;
}

fn merge(seen: &mut HashMap<(String, String), Vec<f64>>, batches: &[SourceBatch]) {
    for (series, values) in values_by_series(batches) {
        seen.entry(series).or_default().extend(values);
    }
}

fn distinct(values: &[f64]) -> usize {
    let mut sorted: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.len()
}

#[tokio::test]
async fn malformed_records_reach_the_dead_letter_topic_and_the_good_ones_flow() {
    let harness = Harness::start().await;
    let avro_topic = harness
        .broker
        .create_topic("bad-avro", 2)
        .await
        .expect("topic");
    let text_topic = harness
        .broker
        .create_topic("bad-text", 2)
        .await
        .expect("topic");
    let page_topic = harness
        .broker
        .create_topic("bad-page", 1)
        .await
        .expect("topic");
    let otlp_topic = harness
        .broker
        .create_topic("bad-otlp", 1)
        .await
        .expect("topic");

    let good = |seq| {
        confluent()
            .encode(&metric_batch("db-1", seq))
            .expect("encode")
    };
    let mut wrong_magic = good(1);
    wrong_magic[0] = 7;
    let truncated = good(2)[..9].to_vec();
    let mut not_finite = metric_batch("db-1", 3);
    not_finite.samples[1].value = f64::INFINITY;
    let not_finite = confluent().encode(&not_finite).expect("encode");
    let huge = vec![b'x'; 10 << 20];
    for payload in [
        good(10),
        wrong_magic,
        good(11),
        truncated,
        not_finite,
        huge.clone(),
        good(12),
    ] {
        harness.send(&avro_topic, "db-1", &payload).await;
    }
    harness
        .send(
            &text_topic,
            "db-2",
            b"{\"name\":\"cpu\",\"value\":1,\"time_us\":1}\n",
        )
        .await;
    harness
        .send(
            &text_topic,
            "db-2",
            b"{\"name\":\"cpu\",\"value\":\xff\xfe}\n",
        )
        .await;
    harness
        .send(
            &text_topic,
            "db-2",
            b"{\"name\":\"cpu\",\"value\":\"NaN\",\"time_us\":1}\n",
        )
        .await;
    harness
        .send(&text_topic, "db-2", b"{\"name\":\"cpu\",\"val")
        .await;
    harness
        .send(&page_topic, "node-1", b"up 1\nbroken{line 2\n")
        .await;
    harness
        .send(&page_topic, "node-1", b"up 1\nload 0.5\n")
        .await;
    let otlp = otlp_gauge("pg-9", 1.0).encode_to_vec();
    harness
        .send(&otlp_topic, "pg-9", &otlp[..otlp.len() - 3])
        .await;
    harness.send(&otlp_topic, "pg-9", &otlp).await;

    let (mut avro, avro_metrics) = harness.source(
        &avro_topic,
        &unique_name("group"),
        AvroMetricBatchDecoder::new(confluent()).with_max_record_bytes(1 << 20),
    );
    let (mut text, _) = harness.source(&text_topic, &unique_name("group"), JsonLinesDecoder::new());
    let (mut page, _) = harness.source(
        &page_topic,
        &unique_name("group"),
        PrometheusTextDecoder::new(),
    );
    let (mut otlp, _) = harness.source(
        &otlp_topic,
        &unique_name("group"),
        OtlpMetricsDecoder::new(OtlpEncoding::Proto),
    );

    let avro_batches = read_until(&mut avro, |b| records(b) >= 7).await;
    let seqs = &values_by_series(&avro_batches)[&("db-1".to_owned(), "seq".to_owned())];
    assert_eq!(seqs, &vec![10.0, 11.0, 12.0], "every good record processed");
    assert_eq!(
        avro_batches.iter().map(|b| b.dead_letters).sum::<usize>(),
        4
    );
    assert_eq!(avro_metrics.dead_letters("bad_magic"), 1);
    assert_eq!(avro_metrics.dead_letters("too_large"), 1);

    let text_batches = read_until(&mut text, |b| records(b) >= 4).await;
    assert_eq!(rows(&text_batches), 1);
    let page_batches = read_until(&mut page, |b| records(b) >= 2).await;
    assert_eq!(rows(&page_batches), 2, "the good page's two samples");

    let otlp_batches = read_until(&mut otlp, |b| records(b) >= 2).await;
    assert_eq!(rows(&otlp_batches), 1, "the whole request's one point");

    let letters = harness.dead_letters(9).await;
    let reasons: Vec<(&str, &str)> = letters
        .iter()
        .map(|letter| (letter.reason_code.as_str(), letter.topic.as_str()))
        .collect();
    let mut expected = vec![
        ("bad_magic", avro_topic.as_str()),
        ("invalid_json", text_topic.as_str()),
        ("invalid_protobuf", otlp_topic.as_str()),
        ("invalid_utf8", text_topic.as_str()),
        ("non_finite_value", avro_topic.as_str()),
        ("non_finite_value", text_topic.as_str()),
        ("prometheus_parse_error", page_topic.as_str()),
        ("too_large", avro_topic.as_str()),
        ("truncated", avro_topic.as_str()),
    ];
    expected.sort();
    assert_eq!(reasons, expected);
    let huge_letter = letters
        .iter()
        .find(|letter| letter.reason_code == "too_large")
        .expect("the 10 MB record");
    assert_eq!(
        (huge_letter.size, huge_letter.payload.len()),
        (huge.len(), DEAD_LETTER_MAX_PAYLOAD_BYTES),
        "a record over the dead-letter limit is stored as its first bytes, with its full size"
    );
    assert_eq!(huge_letter.payload, huge[..DEAD_LETTER_MAX_PAYLOAD_BYTES]);
    assert_eq!(
        huge_letter.sha256,
        sha256_hex(&huge),
        "the hash is the whole record's"
    );
    assert_eq!(avro_metrics.dead_letters_truncated(), 1);
    for letter in letters
        .iter()
        .filter(|letter| letter.reason_code != "too_large")
    {
        assert_eq!(
            letter.payload.len(),
            letter.size,
            "small records are kept whole"
        );
        assert_eq!(letter.sha256, sha256_hex(&letter.payload));
    }
    for source in [avro, text, page, otlp] {
        source.stop().await;
    }
}

#[tokio::test]
async fn a_record_the_producer_cannot_send_fails_with_a_clear_fatal_error() {
    let broker = TestBroker::start().await.expect("broker");
    let topic = broker.create_topic("oversized", 1).await.expect("topic");
    let sink = KafkaSink::new(&broker.kafka_config(), SinkConfig::default()).expect("sink");
    let oversized = vec![0u8; 2 << 20];
    let error = sink
        .send(OutgoingRecord::new(&topic, None, &oversized))
        .await
        .expect_err("over the producer's 1 MB message.max.bytes");
    assert_eq!(error.retry(), Retry::Never);
    let message = error.to_string();
    assert!(message.contains(&topic), "{message}");
    // The same sink still delivers records that fit.
    let delivered = sink
        .send(OutgoingRecord::new(&topic, Some(b"k"), b"fits"))
        .await
        .expect("a record that fits is delivered");
    assert_eq!(delivered.partition, 0);
    assert!(delivered.offset >= 0);
}

#[tokio::test]
async fn a_dead_letter_that_cannot_be_written_is_counted_and_reading_goes_on() {
    let harness = Harness::start().await;
    let topic = harness
        .broker
        .create_topic("poison", 1)
        .await
        .expect("topic");
    let good = |seq| {
        confluent()
            .encode(&metric_batch("db-1", seq))
            .expect("encode")
    };
    let mut bad = good(2);
    bad[0] = 7;
    for payload in [good(1), bad.clone(), good(3), bad, good(4)] {
        harness.send(&topic, "db-1", &payload).await;
    }
    // Dead letters go to a topic that does not exist, and the writer gives up after one short
    // attempt: every one of them fails.
    let refusing = KafkaSink::new(
        &harness.broker.kafka_config(),
        SinkConfig {
            max_attempts: 1,
            attempt_timeout: Duration::from_secs(2),
            ..SinkConfig::default()
        },
    )
    .expect("sink");
    let (mut source, metrics) = harness.source_of(
        &[&topic],
        &unique_name("group"),
        AvroMetricBatchDecoder::new(confluent()),
        DeadLetterWriter::new(refusing, unique_name("missing-deadletter")),
    );

    let batches = read_until(&mut source, |b| records(b) >= 5).await;
    let seqs = &values_by_series(&batches)[&("db-1".to_owned(), "seq".to_owned())];
    assert_eq!(seqs, &vec![1.0, 3.0, 4.0], "reading went on past both");
    assert_eq!(metrics.dead_letters("bad_magic"), 2);
    assert_eq!(
        metrics.dead_letter_failures("bad_magic"),
        2,
        "each failed write is counted"
    );
    let offsets: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.offsets.partitions().map(|p| p.next_offset))
        .collect();
    assert_eq!(offsets.iter().max(), Some(&5), "every record is covered");
    source.stop().await;
}

fn now_us() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_micros(),
    )
    .expect("fits")
}

#[tokio::test]
async fn records_stamped_a_day_ahead_are_dead_lettered_and_never_reach_the_watermark() {
    const DAY: i64 = 24 * 3_600_000_000;
    let harness = Harness::start().await;
    let mixed = harness
        .broker
        .create_topic("mixed", 1)
        .await
        .expect("topic");
    let ahead = harness
        .broker
        .create_topic("ahead", 1)
        .await
        .expect("topic");
    let now = now_us();
    let stamped = |seq: usize, time_us: i64| {
        let mut batch = metric_batch("db-1", seq);
        for sample in &mut batch.samples {
            sample.time_us = time_us;
        }
        confluent().encode(&batch).expect("encode")
    };
    harness
        .send(&mixed, "db-1", &stamped(1, now - 2_000_000))
        .await;
    harness.send(&mixed, "db-1", &stamped(2, now + DAY)).await;
    harness
        .send(&mixed, "db-1", &stamped(3, now - 1_000_000))
        .await;
    harness.send(&ahead, "db-1", &stamped(4, now + DAY)).await;

    let dead_letters = DeadLetterWriter::new(harness.sink.clone(), &harness.dead_letter_topic);
    let (mut source, metrics) = harness.source_of(
        &[&mixed, &ahead],
        &unique_name("group"),
        AvroMetricBatchDecoder::new(confluent()),
        dead_letters,
    );
    let batches = read_until(&mut source, |b| records(b) >= 4).await;
    let seqs = &values_by_series(&batches)[&("db-1".to_owned(), "seq".to_owned())];
    assert_eq!(
        seqs,
        &vec![1.0, 3.0],
        "the rows of records a day ahead are dropped"
    );
    assert_eq!(rows(&batches), 4);
    assert_eq!(metrics.dead_letters(FUTURE_TIMESTAMP), 2);

    let mut progress = BatchOffsets::default();
    for batch in &batches {
        progress.merge(&batch.offsets);
    }
    let by_topic: HashMap<&str, (i64, Option<i64>)> = progress
        .partitions()
        .map(|p| (&*p.topic, (p.next_offset, p.max_event_time_us)))
        .collect();
    assert_eq!(
        by_topic[mixed.as_str()],
        (3, Some(now - 1_000_000)),
        "the partition's event time is its current records'"
    );
    assert_eq!(
        by_topic[ahead.as_str()],
        (1, None),
        "covered, but with no event time to move the watermark"
    );

    let letters = harness.dead_letters(2).await;
    let coordinates: Vec<(&str, &str, i32, i64)> = letters
        .iter()
        .map(|l| {
            (
                l.reason_code.as_str(),
                l.topic.as_str(),
                l.partition,
                l.offset,
            )
        })
        .collect();
    let mut expected = vec![
        (FUTURE_TIMESTAMP, mixed.as_str(), 0, 1),
        (FUTURE_TIMESTAMP, ahead.as_str(), 0, 0),
    ];
    expected.sort();
    assert_eq!(coordinates, expected);
    for letter in &letters {
        let ahead_s: i64 = letter
            .reason
            .split(" s ahead")
            .next()
            .and_then(|before| before.rsplit(' ').next())
            .and_then(|seconds| seconds.parse().ok())
            .unwrap_or_else(|| panic!("how far ahead: {}", letter.reason));
        assert!((86_300..=86_400).contains(&ahead_s), "{}", letter.reason);
        assert!(
            letter.reason.contains("max_future_skew_ms of 300000"),
            "{}",
            letter.reason
        );
    }
    source.stop().await;
}
