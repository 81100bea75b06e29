//! Codec throughput: metric samples per second encoded and decoded on one core, per wire format,
//! with JSON (serde_json on the same types) as the in-run baseline.
//!
//! `cargo bench -p opsloop-benches --bench codec`

use std::collections::BTreeMap;
use std::sync::Arc;

use opsloop_benches::{format_rate, items_per_second, measurement_time};
use opsloop_schemas::telemetry::{MetricBatch, MetricSample};
use opsloop_schemas::{Codec, SchemaRegistry, WireFormat};

const SAMPLES_PER_BATCH: usize = 100;

fn batch() -> MetricBatch {
    let samples = (0..SAMPLES_PER_BATCH)
        .map(|i| MetricSample {
            name: format!("pg_stat_statements_mean_exec_time_ms_{}", i % 10),
            labels: BTreeMap::from([("queryid".to_owned(), (1000 + i).to_string())]),
            value: 3.5 + i as f64 * 0.25,
            time_us: 1_795_003_200_000_000 + i as i64 * 1_000,
        })
        .collect();
    MetricBatch {
        entity: "pg-features-1".to_owned(),
        source: "bench".to_owned(),
        samples,
    }
}

fn main() {
    let registry = Arc::new(SchemaRegistry::builtin());
    let batch = batch();
    let min_time = measurement_time();
    let samples = SAMPLES_PER_BATCH as u64;

    let mut rates = Vec::new();
    for format in WireFormat::ALL {
        let codec = Codec::new(format, Arc::clone(&registry));
        let mut buffer = Vec::new();
        let encode = items_per_second(samples, min_time, || {
            buffer.clear();
            codec.encode_into(&batch, &mut buffer).expect("encodes");
        });
        let bytes = codec.encode(&batch).expect("encodes");
        let decode = items_per_second(samples, min_time, || {
            let decoded: MetricBatch = codec.decode(&bytes).expect("decodes");
            std::hint::black_box(decoded);
        });
        rates.push((format, bytes.len(), encode, decode));
    }

    let (_, _, json_encode, json_decode) = rates
        .iter()
        .copied()
        .find(|(format, ..)| *format == WireFormat::Json)
        .expect("JSON is measured");
    println!("codec throughput, one core, {SAMPLES_PER_BATCH}-sample MetricBatch");
    println!(
        "{:<10} {:>8} {:>14} {:>14} {:>10} {:>10}",
        "format", "bytes", "encode", "decode", "enc/json", "dec/json"
    );
    for (format, size, encode, decode) in rates {
        println!(
            "{:<10} {:>8} {:>14} {:>14} {:>9.2}x {:>9.2}x",
            format.name(),
            size,
            format_rate(encode),
            format_rate(decode),
            encode / json_encode,
            decode / json_decode
        );
    }
}
