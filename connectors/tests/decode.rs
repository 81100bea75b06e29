//! Decoders: exact rows from every format, the DCGM grouping, every error's reason code, and
//! the rule that a record that fails appends nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, TimeUnit, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;
use opsloop_connectors::decode::{
    AvroMetricBatchDecoder, DcgmGpuDecoder, DecodeError, Decoder, JsonLinesDecoder,
    MetricSamplesBuilder, PrometheusTextDecoder, RecordContext, dcgm_gpu_samples,
    metric_samples_schema,
};
use opsloop_schemas::telemetry::{GpuSample, MetricBatch, MetricSample};
use opsloop_schemas::{Codec, SchemaRegistry, WireFormat};

const DCGM_PAGE: &str = include_str!("fixtures/dcgm-exporter.txt");
const DCGM_LOWERCASE_PAGE: &str = include_str!("fixtures/dcgm-exporter-hostname.txt");
const NODE_PAGE: &str = include_str!("fixtures/node-exporter.txt");

/// 2024-05-01T12:00:00Z, the record timestamp of every test record.
const T: i64 = 1_714_564_800_000_000;

#[derive(Debug, Clone, PartialEq)]
struct Row {
    entity: String,
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
    time_us: i64,
    source: String,
}

fn row(entity: &str, name: &str, labels: &[(&str, &str)], value: f64, time_us: i64) -> Row {
    Row {
        entity: entity.to_owned(),
        name: name.to_owned(),
        labels: labels
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        value,
        time_us,
        source: String::new(),
    }
}

fn with_source(mut row: Row, source: &str) -> Row {
    row.source = source.to_owned();
    row
}

fn rows(batch: &RecordBatch) -> Vec<Row> {
    assert_eq!(batch.schema(), metric_samples_schema());
    let strings = |i: usize| batch.column(i).as_string::<i32>().clone();
    let (entity, name, source) = (strings(0), strings(1), strings(5));
    let labels = batch.column(2).as_map();
    let value = batch.column(3).as_primitive::<Float64Type>();
    let time = batch.column(4).as_primitive::<TimestampMicrosecondType>();
    (0..batch.num_rows())
        .map(|i| {
            let entries = labels.value(i);
            let keys = entries.column(0).as_string::<i32>();
            let values = entries.column(1).as_string::<i32>();
            Row {
                entity: entity.value(i).to_owned(),
                name: name.value(i).to_owned(),
                labels: (0..entries.len())
                    .map(|j| (keys.value(j).to_owned(), values.value(j).to_owned()))
                    .collect(),
                value: value.value(i),
                time_us: time.value(i),
                source: source.value(i).to_owned(),
            }
        })
        .collect()
}

fn context() -> RecordContext<'static> {
    RecordContext::new("telemetry.metrics", T)
}

/// Decodes one record into a fresh builder: the result and the rows it appended.
fn decode_one(
    decoder: &mut dyn Decoder<Rows = MetricSamplesBuilder>,
    payload: &[u8],
    context: &RecordContext<'_>,
) -> Result<Vec<Row>, DecodeError> {
    let mut out = MetricSamplesBuilder::new();
    let appended = decoder.decode(payload, context, &mut out)?;
    assert_eq!(appended, out.len());
    Ok(rows(&out.finish().expect("batch")))
}

/// Decodes a record that must fail after a good one: checks that the failure appended
/// nothing, and returns the error.
fn decode_failing(
    decoder: &mut dyn Decoder<Rows = MetricSamplesBuilder>,
    good: &[u8],
    bad: &[u8],
    context: &RecordContext<'_>,
) -> DecodeError {
    let mut out = MetricSamplesBuilder::new();
    let appended = decoder
        .decode(good, context, &mut out)
        .expect("good record");
    let before = rows(&out.finish_cloned());
    let error = decoder
        .decode(bad, context, &mut out)
        .expect_err("bad record fails");
    assert_eq!(out.len(), appended, "a failed record appended rows");
    assert_eq!(rows(&out.finish().expect("batch")), before);
    error
}

trait FinishCloned {
    fn finish_cloned(&mut self) -> RecordBatch;
}

impl FinishCloned for MetricSamplesBuilder {
    /// Finishes and re-appends, so the builder keeps its rows.
    fn finish_cloned(&mut self) -> RecordBatch {
        let batch = self.finish().expect("batch");
        for row in rows(&batch) {
            let sample = MetricSample {
                name: row.name,
                labels: row.labels.into_iter().collect(),
                value: row.value,
                time_us: row.time_us,
            };
            self.append_sample(&row.entity, &row.source, &sample);
        }
        batch
    }
}

fn codec(format: WireFormat) -> Codec {
    Codec::new(format, Arc::new(SchemaRegistry::builtin()))
}

fn example_batch() -> MetricBatch {
    MetricBatch {
        entity: "pg-orders-1".into(),
        source: "postgres".into(),
        samples: vec![
            MetricSample {
                name: "pg_stat_statements_mean_exec_time_ms".into(),
                labels: [("queryid", "-7321"), ("db", "orders")]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                value: 12.75,
                time_us: T + 1,
            },
            MetricSample {
                name: "pg_connections".into(),
                labels: BTreeMap::new(),
                value: -0.0,
                time_us: T - 5,
            },
        ],
    }
}

fn example_rows(entity: &str) -> Vec<Row> {
    vec![
        with_source(
            row(
                entity,
                "pg_stat_statements_mean_exec_time_ms",
                &[("db", "orders"), ("queryid", "-7321")],
                12.75,
                T + 1,
            ),
            "postgres",
        ),
        with_source(row(entity, "pg_connections", &[], -0.0, T - 5), "postgres"),
    ]
}

// ---- schema and builder ---------------------------------------------------------------------

#[test]
fn schema_has_the_six_columns_none_nullable() {
    let schema = metric_samples_schema();
    let columns: Vec<(&str, bool)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.is_nullable()))
        .collect();
    assert_eq!(
        columns,
        [
            ("entity", false),
            ("name", false),
            ("labels", false),
            ("value", false),
            ("time", false),
            ("source", false)
        ]
    );
    assert_eq!(
        schema.field(4).data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    let DataType::Map(entries, sorted) = schema.field(2).data_type() else {
        panic!("labels is a map");
    };
    assert!(!sorted);
    let DataType::Struct(fields) = entries.data_type() else {
        panic!("map entries are a struct");
    };
    for field in fields.iter() {
        assert_eq!(field.data_type(), &DataType::Utf8);
        assert!(!field.is_nullable());
    }
}

#[test]
fn empty_builder_finishes_an_empty_batch_and_resets() {
    let mut out = MetricSamplesBuilder::with_capacity(16);
    assert!(out.is_empty());
    assert!(out.estimated_memory_bytes() > 0);
    let batch = out.finish().expect("batch");
    assert_eq!(batch.num_rows(), 0);
    assert_eq!(batch.schema(), metric_samples_schema());

    let mut decoder = AvroMetricBatchDecoder::new(codec(WireFormat::Avro));
    let payload = codec(WireFormat::Avro)
        .encode(&example_batch())
        .expect("encode");
    decoder.decode(&payload, &context(), &mut out).expect("ok");
    assert_eq!(out.len(), 2);
    assert_eq!(out.finish().expect("batch").num_rows(), 2);
    assert!(out.is_empty(), "finish empties the builder");
}

// ---- Avro -----------------------------------------------------------------------------------

#[test]
fn avro_batches_decode_in_every_codec_format() {
    for format in WireFormat::ALL {
        let payload = codec(format).encode(&example_batch()).expect("encode");
        let mut decoder = AvroMetricBatchDecoder::new(codec(format));
        let decoded = decode_one(&mut decoder, &payload, &context()).expect("decodes");
        assert_eq!(decoded, example_rows("pg-orders-1"), "{format}");
    }
}

#[test]
fn avro_batch_without_entity_takes_the_record_key() {
    let mut batch = example_batch();
    batch.entity.clear();
    let payload = codec(WireFormat::Confluent).encode(&batch).expect("encode");
    let mut decoder = AvroMetricBatchDecoder::new(codec(WireFormat::Confluent));
    let keyed = context().with_key(b"pg-keyed");
    let decoded = decode_one(&mut decoder, &payload, &keyed).expect("decodes");
    assert_eq!(decoded, example_rows("pg-keyed"));
    let decoded = decode_one(&mut decoder, &payload, &context()).expect("decodes");
    assert_eq!(decoded, example_rows("unknown"));
    let error = decode_one(&mut decoder, &payload, &context().with_key(b"pg-\xff"))
        .expect_err("a key that is not UTF-8");
    assert_eq!(error.reason_code(), "invalid_utf8");
}

#[test]
fn avro_non_finite_values_fail_the_record() {
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut batch = example_batch();
        batch.samples[1].value = bad;
        let good = codec(WireFormat::Avro)
            .encode(&example_batch())
            .expect("encode");
        let payload = codec(WireFormat::Avro).encode(&batch).expect("encode");
        let mut decoder = AvroMetricBatchDecoder::new(codec(WireFormat::Avro));
        let error = decode_failing(&mut decoder, &good, &payload, &context());
        assert_eq!(error.reason_code(), "non_finite_value");
        let DecodeError::NonFiniteValue { metric, line, .. } = &error else {
            panic!("{error:?}");
        };
        assert_eq!((metric.as_str(), *line), ("pg_connections", None));
        assert!(error.to_string().contains("pg_connections"), "{error}");
    }
}

#[test]
fn avro_codec_errors_keep_the_codec_reason_codes() {
    let good = codec(WireFormat::Confluent)
        .encode(&example_batch())
        .expect("encode");
    let mut decoder = AvroMetricBatchDecoder::new(codec(WireFormat::Confluent));
    let mut bad_magic = good.clone();
    bad_magic[0] = 7;
    let mut unknown_id = good.clone();
    unknown_id[1..5].copy_from_slice(&999u32.to_be_bytes());
    let mut trailing = good.clone();
    trailing.push(0);
    // A GpuSample record where a MetricBatch belongs.
    let gpu = GpuSample {
        gpu_uuid: "GPU-1".into(),
        gpu_index: 0,
        hostname: String::new(),
        model_name: String::new(),
        pci_bus_id: String::new(),
        time_us: T,
        fields: BTreeMap::new(),
        labels: BTreeMap::new(),
    };
    let wrong_kind = codec(WireFormat::Confluent).encode(&gpu).expect("encode");
    for (payload, reason) in [
        (&good[..3], "truncated"),
        (&good[..good.len() - 3], "truncated"),
        (&bad_magic[..], "bad_magic"),
        (&unknown_id[..], "unknown_schema_id"),
        (&wrong_kind[..], "wrong_schema_kind"),
        (&trailing[..], "trailing_bytes"),
    ] {
        let error = decode_failing(&mut decoder, &good, payload, &context());
        assert_eq!(error.reason_code(), reason, "{error}");
        assert!(matches!(error, DecodeError::Codec(_)));
    }
    let mut json = AvroMetricBatchDecoder::new(codec(WireFormat::Json));
    let good_json = codec(WireFormat::Json)
        .encode(&example_batch())
        .expect("encode");
    let error = decode_failing(&mut json, &good_json, b"{\"entity\":", &context());
    assert_eq!(error.reason_code(), "invalid_json");
}

// ---- JSON lines -----------------------------------------------------------------------------

#[test]
fn json_lines_mix_batches_and_flat_samples() {
    let batch = codec(WireFormat::Json)
        .encode(&example_batch())
        .expect("encode");
    let mut payload = batch;
    payload.extend_from_slice(
        b"\n  \n\
        {\"entity\":\"db-1\",\"name\":\"x\",\"value\":1.5,\"time_us\":123,\"labels\":{\"b\":\"2\",\"a\":\"1\"}}\r\n\
        {\"name\":\"y\",\"value\":\"2.5e3\",\"timestamp\":\"2024-05-01T14:00:00.25+02:00\"}\n\
        {\"name\":\"z\",\"value\":7,\"source\":\"gen\",\"extra\":{\"ignored\":[1,2,{}]}}\n\
        {\"samples\":[{\"name\":\"w\",\"value\":-3,\"entity\":\"ignored-in-a-sample\"}],\"source\":\"s\"}\n",
    );
    let keyed = context().with_key(b"node-7");
    let decoded = decode_one(&mut JsonLinesDecoder::new(), &payload, &keyed).expect("decodes");
    let mut expected = example_rows("pg-orders-1");
    expected.extend([
        row("db-1", "x", &[("b", "2"), ("a", "1")], 1.5, 123),
        row("node-7", "y", &[], 2500.0, T + 250_000),
        with_source(row("node-7", "z", &[], 7.0, T), "gen"),
        with_source(row("node-7", "w", &[], -3.0, T), "s"),
    ]);
    assert_eq!(decoded, expected);

    let unkeyed = decode_one(
        &mut JsonLinesDecoder::new(),
        br#"{"name":"u","value":0}"#,
        &context(),
    )
    .expect("decodes");
    assert_eq!(unkeyed, [row("unknown", "u", &[], 0.0, T)]);
}

#[test]
fn json_escapes_in_strings_are_decoded() {
    let payload = br#"{"entity":"db\u002d1","name":"q\"x\"","labels":{"path":"C:\\tmp\nnext"},"value":1,"time_us":5}"#;
    let decoded = decode_one(&mut JsonLinesDecoder::new(), payload, &context()).expect("decodes");
    assert_eq!(
        decoded,
        [row("db-1", "q\"x\"", &[("path", "C:\\tmp\nnext")], 1.0, 5)]
    );
}

#[test]
fn json_errors_name_the_line_and_append_nothing() {
    let good = br#"{"entity":"db-1","name":"x","value":1.5}"#;
    let cases: [(&[u8], usize, &str); 17] = [
        (
            b"{\"name\":\"x\",\"value\":1}\n\n{\"name\":\"x\",\"value\":1",
            3,
            "EOF",
        ),
        (b"[1,2]", 1, "metric batch or sample object"),
        (b"{\"name\":\"x\",\"value\":1} trailing", 1, "trailing"),
        (b"{\"value\":1}", 1, "missing field `name`"),
        (b"{\"name\":\"x\"}", 1, "missing field `value`"),
        (b"{\"entity\":\"a\"}", 1, "missing field `samples`"),
        (
            b"{\"name\":\"x\",\"value\":1,\"samples\":[]}",
            1,
            "not both",
        ),
        (
            b"{\"name\":\"x\",\"name\":\"y\",\"value\":1}",
            1,
            "duplicate field `name`",
        ),
        (b"{\"name\":\"x\",\"value\":\"fast\"}", 1, "is not a number"),
        (
            b"{\"name\":\"x\",\"value\":true}",
            1,
            "a number, or a string holding one",
        ),
        (b"{\"name\":\"x\",\"value\":1,\"time_us\":1.5}", 1, "i64"),
        (
            b"{\"name\":\"x\",\"value\":1,\"timestamp\":\"yesterday\"}",
            1,
            "RFC 3339",
        ),
        (
            b"{\"name\":\"x\",\"value\":1,\"time_us\":1,\"timestamp\":\"2024-05-01T12:00:00Z\"}",
            1,
            "not both",
        ),
        (
            b"{\"name\":\"x\",\"value\":1,\"labels\":{\"a\":\"1\",\"a\":\"2\"}}",
            1,
            "appears twice",
        ),
        (
            b"{\"name\":\"x\",\"value\":1,\"labels\":{\"a\":1}}",
            1,
            "a string",
        ),
        (b"{\"samples\":[{\"value\":1}]}", 1, "missing field `name`"),
        (b"{\"name\":\"x\",\"value\":1e999}", 1, "out of range"),
    ];
    for (payload, line, message) in cases {
        let error = decode_failing(&mut JsonLinesDecoder::new(), good, payload, &context());
        assert_eq!(error.reason_code(), "invalid_json", "{error}");
        let DecodeError::InvalidJson {
            line: found,
            message: text,
            ..
        } = &error
        else {
            panic!("{error:?}");
        };
        assert_eq!(*found, line, "{error}");
        assert!(text.contains(message), "{error}");
        assert!(!text.contains("at line 1 column"), "{error}");
        assert!(
            error.to_string().starts_with(&format!("line {line} ")),
            "{error}"
        );
    }
}

#[test]
fn json_non_finite_values_fail_the_record() {
    let good = br#"{"name":"x","value":1}"#;
    for value in ["NaN", "+Inf", "-Inf", "inf", "-infinity"] {
        let payload =
            format!("{{\"name\":\"ok\",\"value\":1}}\n{{\"name\":\"lat\",\"value\":\"{value}\"}}");
        let error = decode_failing(
            &mut JsonLinesDecoder::new(),
            good,
            payload.as_bytes(),
            &context(),
        );
        assert_eq!(error.reason_code(), "non_finite_value");
        let DecodeError::NonFiniteValue { metric, line, .. } = &error else {
            panic!("{error:?}");
        };
        assert_eq!((metric.as_str(), *line), ("lat", Some(2)));
    }
    let in_batch =
        br#"{"entity":"e","samples":[{"name":"a","value":1},{"name":"b","value":"NaN"}]}"#;
    let error = decode_failing(&mut JsonLinesDecoder::new(), good, in_batch, &context());
    assert_eq!(error.reason_code(), "non_finite_value");
}

#[test]
fn json_invalid_utf8_names_the_line() {
    let good = br#"{"name":"x","value":1}"#;
    let payload = b"{\"name\":\"x\",\"value\":1}\n{\"name\":\"\xc3\x28\",\"value\":1}";
    let error = decode_failing(&mut JsonLinesDecoder::new(), good, payload, &context());
    assert_eq!(error.reason_code(), "invalid_utf8");
    let DecodeError::InvalidUtf8 { line, offset, .. } = error else {
        panic!("{error:?}");
    };
    assert_eq!((line, offset), (Some(2), 32));
    // The key is read only when a sample names no entity.
    let error = decode_failing(
        &mut JsonLinesDecoder::new(),
        br#"{"entity":"e","name":"x","value":1}"#,
        br#"{"name":"x","value":1}"#,
        &context().with_key(b"\xff"),
    );
    assert_eq!(error.reason_code(), "invalid_utf8");
}

// ---- Prometheus text ------------------------------------------------------------------------

fn prometheus(page: &str, context: &RecordContext<'_>) -> (Vec<Row>, u64) {
    let mut decoder = PrometheusTextDecoder::new();
    let rows = decode_one(&mut decoder, page.as_bytes(), context).expect("page decodes");
    (rows, decoder.skipped_non_finite())
}

#[test]
fn node_exporter_page_decodes_exactly() {
    let keyed = context().with_key(b"db-primary-1");
    let (decoded, skipped) = prometheus(NODE_PAGE, &keyed);
    assert_eq!(skipped, 3, "the three NaN quantiles");
    let entry = |name: &str, labels: &[(&str, &str)], value: f64| {
        with_source(row("db-primary-1", name, labels, value, T), "prometheus")
    };
    let gc = "go_gc_duration_seconds";
    let http = "http_request_duration_microseconds";
    let cpu = "node_cpu_seconds_total";
    let fs = "node_filesystem_avail_bytes";
    let unit = "node_systemd_unit_state";
    let bucket = "prometheus_http_request_duration_seconds_bucket";
    let handler = ("handler", "/metrics");
    let scrapes = "promhttp_metric_handler_requests_total";
    let expected = vec![
        entry(gc, &[("quantile", "0")], 2.7531e-05),
        entry(gc, &[("quantile", "0.25")], 4.0154e-05),
        entry(gc, &[("quantile", "0.5")], 5.1219e-05),
        entry(gc, &[("quantile", "0.75")], 7.3407e-05),
        entry(gc, &[("quantile", "1")], 0.001281633),
        entry("go_gc_duration_seconds_sum", &[], 0.318749127),
        entry("go_gc_duration_seconds_count", &[], 4711.0),
        entry(&format!("{http}_sum"), &[("handler", "prometheus")], 0.0),
        entry(&format!("{http}_count"), &[("handler", "prometheus")], 0.0),
        entry(cpu, &[("cpu", "0"), ("mode", "idle")], 1.83452391e+06),
        entry(cpu, &[("cpu", "0"), ("mode", "iowait")], 2214.87),
        entry(cpu, &[("cpu", "0"), ("mode", "system")], 10562.31),
        entry(cpu, &[("cpu", "0"), ("mode", "user")], 48216.05),
        entry(cpu, &[("cpu", "1"), ("mode", "idle")], 1.83561733e+06),
        entry(cpu, &[("cpu", "1"), ("mode", "iowait")], 1980.12),
        entry(cpu, &[("cpu", "1"), ("mode", "system")], 10233.9),
        entry(cpu, &[("cpu", "1"), ("mode", "user")], 47102.66),
        entry(
            "node_disk_io_time_seconds_total",
            &[("device", "nvme0n1")],
            38113.552,
        ),
        entry(
            fs,
            &[
                ("device", "/dev/nvme0n1p2"),
                ("fstype", "ext4"),
                ("mountpoint", "/"),
            ],
            4.1870815232e+10,
        ),
        entry(
            fs,
            &[
                ("device", "/dev/nvme1n1"),
                ("fstype", "xfs"),
                ("mountpoint", "/var/lib/postgresql"),
            ],
            2.92133494784e+11,
        ),
        entry("node_load1", &[], 3.42),
        entry("node_memory_MemAvailable_bytes", &[], 2.1474836e+10),
        entry(
            "node_network_receive_bytes_total",
            &[("device", "eth0")],
            9.87654321e+11,
        ),
        entry(
            unit,
            &[
                ("name", "dev-disk-by\\x2duuid-4c1a.swap"),
                ("state", "active"),
                ("type", "swap"),
            ],
            1.0,
        ),
        entry(
            unit,
            &[
                ("name", "postgresql@15-main.service"),
                ("state", "failed"),
                ("type", "notify"),
            ],
            0.0,
        ),
        entry("node_textfile_scrape_error", &[], 0.0),
        entry(
            "node_uname_info",
            &[
                ("domainname", "(none)"),
                ("machine", "x86_64"),
                ("nodename", "db-primary-1"),
                ("release", "6.1.0-18-amd64"),
                ("sysname", "Linux"),
                (
                    "version",
                    "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)",
                ),
            ],
            1.0,
        ),
        entry(
            "pg_backup_note",
            &[("note", "said \"done\"\nat 02:00")],
            1.0,
        ),
        entry(bucket, &[handler, ("le", "0.1")], 2861.0),
        entry(bucket, &[handler, ("le", "0.2")], 2866.0),
        entry(bucket, &[handler, ("le", "0.4")], 2867.0),
        entry(bucket, &[handler, ("le", "+Inf")], 2867.0),
        entry(
            "prometheus_http_request_duration_seconds_sum",
            &[handler],
            41.86227,
        ),
        entry(
            "prometheus_http_request_duration_seconds_count",
            &[handler],
            2867.0,
        ),
        entry(scrapes, &[("code", "200")], 2867.0),
        entry(scrapes, &[("code", "500")], 0.0),
        entry(scrapes, &[("code", "503")], 0.0),
    ];
    assert_eq!(decoded.len(), 37);
    assert_eq!(decoded, expected);
}

fn dcgm_labels<'a>(
    gpu: &'a str,
    uuid: &'a str,
    bus: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let device = if gpu == "0" { "nvidia0" } else { "nvidia1" };
    let mut labels = vec![
        ("gpu", gpu),
        ("UUID", uuid),
        ("pci_bus_id", bus),
        ("device", device),
        ("modelName", "NVIDIA H100 80GB HBM3"),
        ("Hostname", "infer-03"),
        ("DCGM_FI_DRIVER_VERSION", "550.90.07"),
    ];
    labels.extend_from_slice(extra);
    labels
}

const GPU0: &str = "GPU-5fd4b3c2-8a1e-4f0b-9d2c-1b2a3c4d5e6f";
const GPU1: &str = "GPU-8c3e71a9-02d4-4b5e-a6f1-7d9c0b2e4f31";
const POD: [(&str, &str); 3] = [
    ("container", "ranker"),
    ("namespace", "serving"),
    ("pod", "ranker-7d9f8b6c5-x2k4p"),
];

#[test]
fn dcgm_page_decodes_as_metric_rows() {
    let mut decoder = PrometheusTextDecoder::new().with_source("dcgm");
    let decoded = decode_one(
        &mut decoder,
        DCGM_PAGE.as_bytes(),
        &context().with_key(b"k"),
    )
    .expect("decodes");
    assert_eq!(decoded.len(), 48);
    assert!(
        decoded
            .iter()
            .all(|r| r.entity == "infer-03" && r.time_us == T)
    );
    assert!(decoded.iter().all(|r| r.source == "dcgm"));
    let gpu0 = dcgm_labels("0", GPU0, "00000000:18:00.0", &[]);
    assert_eq!(
        decoded[0],
        with_source(
            row("infer-03", "DCGM_FI_DEV_SM_CLOCK", &gpu0, 1980.0, T),
            "dcgm"
        )
    );
    let mut xid = POD.to_vec();
    xid.extend([("err_code", "0"), ("err_msg", "No Error")]);
    let xid_labels = dcgm_labels("1", GPU1, "00000000:2A:00.0", &xid);
    assert_eq!(
        decoded[23],
        with_source(
            row("infer-03", "DCGM_FI_DEV_XID_ERRORS", &xid_labels, 0.0, T),
            "dcgm"
        )
    );
    let power: Vec<f64> = decoded
        .iter()
        .filter(|r| r.name == "DCGM_FI_DEV_POWER_USAGE")
        .map(|r| r.value)
        .collect();
    assert_eq!(power, [188.412, 612.907]);

    let lower =
        decode_one(&mut decoder, DCGM_LOWERCASE_PAGE.as_bytes(), &context()).expect("decodes");
    assert_eq!(lower.len(), 18);
    assert!(lower.iter().all(|r| r.entity == "train-11"));
}

#[test]
fn prometheus_entity_prefers_hostname_then_instance_then_key() {
    let page = "a{instance=\"10.0.0.5:9100\",job=\"node\"} 1\n\
                b{instance=\"10.0.0.5:9100\",Hostname=\"h1\"} 2\n\
                c{hostname=\"h2\",instance=\"i\"} 3\n\
                d{hostname=\"h2\",Hostname=\"h1\"} 4\n\
                e{Hostname=\"\",instance=\"i\"} 5\n\
                f 6\n";
    let (decoded, _) = prometheus(page, &context().with_key(b"key-host"));
    let entities: Vec<&str> = decoded.iter().map(|r| r.entity.as_str()).collect();
    assert_eq!(
        entities,
        ["10.0.0.5:9100", "h1", "h2", "h1", "i", "key-host"]
    );
    assert_eq!(decoded[0].labels.len(), 2, "the entity label stays a label");
    let (decoded, _) = prometheus("f 6", &context());
    assert_eq!(decoded[0].entity, "unknown");
}

#[test]
fn prometheus_values_timestamps_and_layout() {
    let page = "  a 1e3\n\
                b{x=\"1\",} -1.5E-2 1714564800123\r\n\
                c{ x = \"1\" , y=\"\" }\t.5\t-1000 \n\
                \n\
                d{x=\"}\"}7\n\
                # a free comment\n\
                #HELP e free\n\
                e{x=\"\\\\\\\"\\n\"} +12 0\n\
                # TYPE f untyped\n\
                f NaN\n\
                f +Inf 5\n\
                f -Inf\n\
                f:rate5m 2\n";
    let mut decoder = PrometheusTextDecoder::new();
    let decoded = decode_one(&mut decoder, page.as_bytes(), &context()).expect("decodes");
    let p = |r: Row| with_source(r, "prometheus");
    assert_eq!(
        decoded,
        [
            p(row("unknown", "a", &[], 1000.0, T)),
            p(row(
                "unknown",
                "b",
                &[("x", "1")],
                -0.015,
                1_714_564_800_123_000
            )),
            p(row(
                "unknown",
                "c",
                &[("x", "1"), ("y", "")],
                0.5,
                -1_000_000
            )),
            p(row("unknown", "d", &[("x", "}")], 7.0, T)),
            p(row("unknown", "e", &[("x", "\\\"\n")], 12.0, 0)),
            p(row("unknown", "f:rate5m", &[], 2.0, T)),
        ]
    );
    assert_eq!(decoder.skipped_non_finite(), 3);
    decode_one(&mut decoder, NODE_PAGE.as_bytes(), &context()).expect("decodes");
    assert_eq!(decoder.skipped_non_finite(), 6, "the counter accumulates");
}

#[test]
fn prometheus_errors_name_the_line_and_append_nothing() {
    let cases: [(&str, usize, &str); 20] = [
        ("a 1\nb{x=\"1} 2\n", 2, "a '\"' closing the label value"),
        ("a{x=\"\\t\"} 1", 1, "an escape"),
        ("a{x=\"\\", 1, "an escape"),
        ("a{1x=\"1\"} 1", 1, "a label name or '}'"),
        ("a{x \"1\"} 1", 1, "'=' after the label name"),
        ("a{x=1} 1", 1, "a label value in double quotes"),
        (
            "a{x=\"1\" y=\"2\"} 1",
            1,
            "',' or '}' after the label value",
        ),
        ("a{x=\"1\"", 1, "',' or '}' after the label value"),
        ("a{x=\"1\",x=\"2\"} 1", 1, "not already used"),
        ("a{", 1, "a label name or '}'"),
        ("a", 1, "a sample value"),
        ("# ok\n\na abc", 3, "a sample value"),
        ("a 0x10", 1, "a sample value"),
        ("a 1 2 3", 1, "the end of the line after the timestamp"),
        ("a 1 1.5", 1, "a timestamp in milliseconds"),
        ("a 1 9223372036854775807", 1, "within 292,000 years"),
        ("1a 1", 1, "a metric name"),
        ("a-b 1", 1, "'{' or a blank"),
        ("# TYPE a gauges", 1, "a metric type"),
        ("# HELP", 1, "a metric name after # HELP"),
    ];
    let extra: [(&str, usize, &str); 3] = [
        ("# TYPE a", 1, "a metric type"),
        ("# TYPE a gauge extra", 1, "the end of the line"),
        ("# TYPE 9a gauge", 1, "a metric name after"),
    ];
    let good = NODE_PAGE.as_bytes();
    for (page, line, expected) in cases.into_iter().chain(extra) {
        let mut decoder = PrometheusTextDecoder::new();
        let error = decode_failing(&mut decoder, good, page.as_bytes(), &context());
        assert_eq!(error.reason_code(), "prometheus_parse_error", "{error}");
        let DecodeError::PrometheusParse {
            line: found,
            expected: what,
            ..
        } = &error
        else {
            panic!("{error:?}");
        };
        assert_eq!(*found, line, "{page:?}: {error}");
        assert!(what.contains(expected), "{page:?}: {error}");
        assert_eq!(decoder.skipped_non_finite(), 3, "only the good page counts");
    }
    let error = decode_failing(
        &mut PrometheusTextDecoder::new(),
        good,
        b"a{x=\"averyveryverylonglabelvaluethatgoesonandonandon\" y=\"2\"} 1",
        &context(),
    );
    assert_eq!(
        error.to_string(),
        "line 1 of the Prometheus text page is malformed: expected ',' or '}' after the label \
         value, found \"y=\\\"2\\\"} 1\"; the page must follow the text exposition format 0.0.4"
    );
}

#[test]
fn prometheus_invalid_utf8_names_the_line() {
    let error = decode_failing(
        &mut PrometheusTextDecoder::new(),
        b"a 1",
        b"a 1\nb{x=\"\xff\"} 2\n",
        &context(),
    );
    assert_eq!(error.reason_code(), "invalid_utf8");
    let DecodeError::InvalidUtf8 { line, offset, .. } = error else {
        panic!("{error:?}");
    };
    assert_eq!((line, offset), (Some(2), 9));
}

// ---- DCGM grouping --------------------------------------------------------------------------

fn owned(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn dcgm_page_groups_into_one_sample_per_gpu() {
    let gpus = dcgm_gpu_samples(DCGM_PAGE, T).expect("decodes");
    // (field, GPU 0, GPU 1), as on the page.
    #[rustfmt::skip]
    let table: [(&str, f64, f64); 24] = [
        ("DCGM_FI_DEV_SM_CLOCK", 1980.0, 1755.0),
        ("DCGM_FI_DEV_MEM_CLOCK", 2619.0, 2619.0),
        ("DCGM_FI_DEV_MEMORY_TEMP", 58.0, 71.0),
        ("DCGM_FI_DEV_GPU_TEMP", 47.0, 66.0),
        ("DCGM_FI_DEV_POWER_USAGE", 188.412, 612.907),
        ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 90_523_887_417.0, 312_774_410_952.0),
        ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", 0.0, 2.0),
        ("DCGM_FI_DEV_GPU_UTIL", 12.0, 97.0),
        ("DCGM_FI_DEV_MEM_COPY_UTIL", 3.0, 41.0),
        ("DCGM_FI_DEV_ENC_UTIL", 0.0, 0.0),
        ("DCGM_FI_DEV_DEC_UTIL", 0.0, 0.0),
        ("DCGM_FI_DEV_XID_ERRORS", 0.0, 0.0),
        ("DCGM_FI_DEV_FB_FREE", 10246.0, 1187.0),
        ("DCGM_FI_DEV_FB_USED", 71234.0, 80293.0),
        ("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", 0.0, 1_834_967_040.0),
        ("DCGM_FI_DEV_VGPU_LICENSE_STATUS", 0.0, 0.0),
        ("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", 0.0, 0.0),
        ("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", 0.0, 1.0),
        ("DCGM_FI_DEV_ROW_REMAP_FAILURE", 0.0, 0.0),
        ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0.118203, 0.962113),
        ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", 0.021340, 0.571874),
        ("DCGM_FI_PROF_DRAM_ACTIVE", 0.045120, 0.781120),
        ("DCGM_FI_PROF_PCIE_TX_BYTES", 4_823_117.0, 92_811_034.0),
        ("DCGM_FI_PROF_PCIE_RX_BYTES", 5_120_877.0, 118_392_211.0),
    ];
    let fields = |gpu: usize| -> BTreeMap<String, f64> {
        table
            .iter()
            .map(|&(name, v0, v1)| (name.to_owned(), if gpu == 0 { v0 } else { v1 }))
            .collect()
    };
    let expected = vec![
        GpuSample {
            gpu_uuid: GPU0.into(),
            gpu_index: 0,
            hostname: "infer-03".into(),
            model_name: "NVIDIA H100 80GB HBM3".into(),
            pci_bus_id: "00000000:18:00.0".into(),
            time_us: T,
            fields: fields(0),
            labels: owned(&[
                ("device", "nvidia0"),
                ("DCGM_FI_DRIVER_VERSION", "550.90.07"),
            ]),
        },
        GpuSample {
            gpu_uuid: GPU1.into(),
            gpu_index: 1,
            hostname: "infer-03".into(),
            model_name: "NVIDIA H100 80GB HBM3".into(),
            pci_bus_id: "00000000:2A:00.0".into(),
            time_us: T,
            fields: fields(1),
            labels: owned(&[
                ("device", "nvidia1"),
                ("DCGM_FI_DRIVER_VERSION", "550.90.07"),
                ("container", "ranker"),
                ("namespace", "serving"),
                ("pod", "ranker-7d9f8b6c5-x2k4p"),
            ]),
        },
    ];
    assert_eq!(gpus, expected);
}

#[test]
fn dcgm_lowercase_hostname_fills_the_hostname() {
    let gpus = dcgm_gpu_samples(DCGM_LOWERCASE_PAGE, T).expect("decodes");
    assert_eq!(gpus.len(), 2);
    for (index, gpu) in gpus.iter().enumerate() {
        assert_eq!(gpu.hostname, "train-11");
        assert_eq!(gpu.gpu_index, i32::try_from(index).expect("small"));
        assert_eq!(gpu.model_name, "NVIDIA A100-SXM4-80GB");
        assert_eq!(gpu.fields.len(), 9);
        assert!(!gpu.labels.contains_key("hostname"));
    }
    assert_eq!(gpus[1].fields["DCGM_FI_DEV_POWER_USAGE"], 351.26);
    assert_eq!(gpus[0].fields["DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"], 0.02134);
}

#[test]
fn dcgm_mig_instances_skips_and_timestamps() {
    let page = "\
DCGM_FI_DEV_GPU_UTIL{gpu=\"0\",UUID=\"GPU-a\",GPU_I_PROFILE=\"3g.40gb\",GPU_I_ID=\"1\",Hostname=\"h\"} 10 1714564800001
DCGM_FI_DEV_GPU_UTIL{gpu=\"0\",UUID=\"GPU-a\",GPU_I_PROFILE=\"3g.40gb\",GPU_I_ID=\"2\",Hostname=\"h\"} 20
DCGM_FI_DEV_FB_USED{gpu=\"0\",UUID=\"GPU-a\",GPU_I_PROFILE=\"3g.40gb\",GPU_I_ID=\"1\",Hostname=\"h\"} 100 1714564800009
DCGM_FI_DEV_NVSWITCH_LINK_THROUGHPUT_TX{nvswitch=\"0\",nvlink=\"3\"} 5
DCGM_FI_DEV_GPU_TEMP{gpu=\"x\",UUID=\"GPU-b\"} NaN
DCGM_FI_DEV_GPU_TEMP{gpu=\"x\",UUID=\"GPU-b\"} +Inf
DCGM_FI_DEV_FB_FREE{gpu=\"x\",UUID=\"GPU-b\"} 7
go_goroutines{UUID=\"GPU-c\"} 12
";
    let mut decoder = DcgmGpuDecoder::new();
    let gpus = decoder.decode(page, T).expect("decodes");
    assert_eq!(decoder.skipped_non_finite(), 2);
    assert_eq!(decoder.skipped_without_uuid(), 1);
    let mig = owned(&[("GPU_I_PROFILE", "3g.40gb"), ("GPU_I_ID", "1")]);
    let expected = vec![
        GpuSample {
            gpu_uuid: "GPU-a".into(),
            gpu_index: 0,
            hostname: "h".into(),
            model_name: String::new(),
            pci_bus_id: String::new(),
            time_us: 1_714_564_800_009_000,
            fields: [
                ("DCGM_FI_DEV_GPU_UTIL", 10.0),
                ("DCGM_FI_DEV_FB_USED", 100.0),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
            labels: mig,
        },
        GpuSample {
            gpu_uuid: "GPU-a".into(),
            gpu_index: 0,
            hostname: "h".into(),
            model_name: String::new(),
            pci_bus_id: String::new(),
            time_us: T,
            fields: [("DCGM_FI_DEV_GPU_UTIL".to_owned(), 20.0)].into(),
            labels: owned(&[("GPU_I_PROFILE", "3g.40gb"), ("GPU_I_ID", "2")]),
        },
        GpuSample {
            gpu_uuid: "GPU-b".into(),
            gpu_index: -1,
            hostname: String::new(),
            model_name: String::new(),
            pci_bus_id: String::new(),
            time_us: T,
            fields: [("DCGM_FI_DEV_FB_FREE".to_owned(), 7.0)].into(),
            labels: owned(&[("gpu", "x")]),
        },
    ];
    assert_eq!(gpus, expected);
}

#[test]
fn dcgm_duplicate_fields_and_broken_pages_fail() {
    let page = "DCGM_FI_DEV_GPU_UTIL{UUID=\"GPU-a\"} 1\n# c\nDCGM_FI_DEV_GPU_UTIL{UUID=\"GPU-a\",pod=\"p2\"} 2\n";
    let mut decoder = DcgmGpuDecoder::new();
    let error = decoder.decode(page, T).expect_err("duplicate field");
    assert_eq!(error.reason_code(), "duplicate_gpu_field");
    let DecodeError::DuplicateGpuField {
        gpu_uuid,
        field,
        line,
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(
        (gpu_uuid.as_str(), field.as_str(), *line),
        ("GPU-a", "DCGM_FI_DEV_GPU_UTIL", 3)
    );
    let error = decoder
        .decode(
            "DCGM_FI_DEV_GPU_UTIL{UUID=\"GPU-a\" 1\nDCGM_FI_DEV_FB_FREE NaN",
            T,
        )
        .expect_err("broken line");
    assert_eq!(error.reason_code(), "prometheus_parse_error");
    assert_eq!(
        decoder.skipped_non_finite(),
        0,
        "failed pages count nothing"
    );
    let error = DcgmGpuDecoder::new()
        .with_max_record_bytes(16)
        .decode(DCGM_PAGE, T)
        .expect_err("too large");
    assert_eq!(error.reason_code(), "too_large");
}

// ---- limits ---------------------------------------------------------------------------------

/// A payload of exactly `max` bytes decodes; one byte more fails `too_large`, appending nothing.
fn check_limit(
    mut at_limit: impl Decoder<Rows = MetricSamplesBuilder>,
    mut under_limit: impl Decoder<Rows = MetricSamplesBuilder>,
    payload: &[u8],
) {
    let mut out = MetricSamplesBuilder::new();
    at_limit
        .decode(payload, &context(), &mut out)
        .expect("at the limit");
    let before = out.len();
    let error = under_limit
        .decode(payload, &context(), &mut out)
        .expect_err("over the limit");
    assert_eq!(error.reason_code(), "too_large");
    assert_eq!(out.len(), before);
    let DecodeError::TooLarge { size, max } = error else {
        panic!("{error:?}");
    };
    assert_eq!((size, max), (payload.len(), payload.len() - 1));
}

#[test]
fn records_over_the_size_limit_are_rejected_by_every_decoder() {
    let avro = codec(WireFormat::Avro)
        .encode(&example_batch())
        .expect("encode");
    let avro_decoder =
        |max| AvroMetricBatchDecoder::new(codec(WireFormat::Avro)).with_max_record_bytes(max);
    check_limit(
        avro_decoder(avro.len()),
        avro_decoder(avro.len() - 1),
        &avro,
    );
    let json = br#"{"name":"x","value":1}"#;
    let json_decoder = |max| JsonLinesDecoder::new().with_max_record_bytes(max);
    check_limit(json_decoder(json.len()), json_decoder(json.len() - 1), json);
    let page = b"a 1\nb 2\n";
    let page_decoder = |max| PrometheusTextDecoder::new().with_max_record_bytes(max);
    check_limit(page_decoder(page.len()), page_decoder(page.len() - 1), page);

    let huge = vec![b' '; 1024 * 1024 + 1];
    let error = decode_one(&mut PrometheusTextDecoder::new(), &huge, &context())
        .expect_err("over the 1 MiB default");
    assert_eq!(
        error.to_string(),
        "the record is 1048577 bytes, over the 1048576-byte limit for one record: split it into \
         smaller batches, or raise the limit (max_record_bytes of the source's [[sources]] \
         entry for opsloop run)"
    );
    assert!(
        decode_one(&mut PrometheusTextDecoder::new(), &huge[1..], &context())
            .expect("blank page")
            .is_empty()
    );
}

#[test]
fn every_error_has_a_stable_reason_and_never_retries() {
    let errors = [
        (DecodeError::TooLarge { size: 2, max: 1 }, "too_large"),
        (
            DecodeError::InvalidUtf8 {
                what: "the JSON payload",
                line: Some(1),
                offset: 0,
            },
            "invalid_utf8",
        ),
        (
            DecodeError::InvalidJson {
                line: 1,
                column: 1,
                message: "x".into(),
            },
            "invalid_json",
        ),
        (
            DecodeError::NonFiniteValue {
                metric: "m".into(),
                value: f64::NAN,
                line: None,
            },
            "non_finite_value",
        ),
        (
            DecodeError::PrometheusParse {
                line: 1,
                expected: "a metric name",
                found: "the end of the line".into(),
            },
            "prometheus_parse_error",
        ),
        (
            DecodeError::DuplicateGpuField {
                gpu_uuid: "GPU-a".into(),
                field: "F".into(),
                line: 2,
            },
            "duplicate_gpu_field",
        ),
    ];
    for (error, reason) in errors {
        assert_eq!(error.reason_code(), reason);
        assert_eq!(error.retry(), opsloop_connectors::Retry::Never);
        let text = error.to_string();
        assert!(text.len() > 30 && !text.contains("{ "), "{text}");
    }
}

// ---- volume (a smoke test, not timed) -------------------------------------------------------

#[test]
fn many_records_into_one_builder() {
    let mut out = MetricSamplesBuilder::with_capacity(1024);
    let mut prometheus = PrometheusTextDecoder::new();
    let mut json = JsonLinesDecoder::new();
    let mut avro = AvroMetricBatchDecoder::new(codec(WireFormat::Confluent));
    let avro_payload = codec(WireFormat::Confluent)
        .encode(&example_batch())
        .expect("encode");
    let json_payload: String = (0..100)
        .map(|i| format!("{{\"entity\":\"db-{i}\",\"name\":\"qps\",\"value\":{i},\"labels\":{{\"i\":\"{i}\"}}}}\n"))
        .collect();
    let mut expected = 0;
    for _ in 0..200 {
        expected += prometheus
            .decode(DCGM_PAGE.as_bytes(), &context(), &mut out)
            .expect("dcgm");
        expected += json
            .decode(json_payload.as_bytes(), &context(), &mut out)
            .expect("json");
        expected += avro
            .decode(&avro_payload, &context(), &mut out)
            .expect("avro");
        // A failing record in between changes nothing.
        assert!(json.decode(b"{", &context(), &mut out).is_err());
    }
    assert_eq!(expected, 200 * (48 + 100 + 2));
    assert_eq!(out.len(), expected);
    let memory = out.estimated_memory_bytes();
    assert!(memory > expected * 50, "{memory} bytes for {expected} rows");
    let batch = out.finish().expect("batch");
    assert_eq!(batch.num_rows(), expected);
    let decoded = rows(&batch);
    assert_eq!(
        decoded[48 + 99],
        row("db-99", "qps", &[("i", "99")], 99.0, T)
    );
    assert!(
        out.estimated_memory_bytes() <= memory,
        "the next batch reserves what this one used"
    );
}
