//! Property-based fuzzing of every decoder: arbitrary bytes, corrupted valid payloads and
//! token soup give rows or a typed error, never a panic; a failed record appends nothing, and
//! the builder always finishes a valid batch. `PROPTEST_CASES` sets the budget.

use std::sync::Arc;

use opsloop_connectors::decode::{
    AvroMetricBatchDecoder, Decoder, JsonLinesDecoder, MetricSamplesBuilder, PrometheusTextDecoder,
    RecordContext, dcgm_gpu_samples,
};
use opsloop_schemas::telemetry::{MetricBatch, MetricSample};
use opsloop_schemas::{Codec, SchemaRegistry, WireFormat};
use proptest::prelude::*;

const T: i64 = 1_714_564_800_000_000;

fn codec(format: WireFormat) -> Codec {
    Codec::new(format, Arc::new(SchemaRegistry::builtin()))
}

fn decoders() -> Vec<Box<dyn Decoder>> {
    let mut decoders: Vec<Box<dyn Decoder>> = WireFormat::ALL
        .into_iter()
        .map(|format| Box::new(AvroMetricBatchDecoder::new(codec(format))) as Box<dyn Decoder>)
        .collect();
    decoders.push(Box::new(JsonLinesDecoder::new()));
    decoders.push(Box::new(PrometheusTextDecoder::new()));
    decoders
}

/// Runs `bytes` through every decoder with several keys into one builder, checking that each
/// call appends exactly what it reports (nothing on error) and that the batch is valid.
fn decode_everywhere(bytes: &[u8]) {
    let mut out = MetricSamplesBuilder::new();
    let mut total = 0;
    let keys: [Option<&[u8]>; 3] = [None, Some(b"host-1"), Some(b"\xff\xfe")];
    for mut decoder in decoders() {
        for key in keys {
            let context = RecordContext {
                key,
                topic: "telemetry.metrics",
                timestamp_us: T,
            };
            match decoder.decode(bytes, &context, &mut out) {
                Ok(appended) => total += appended,
                Err(error) => {
                    assert!(!error.reason_code().is_empty());
                    assert!(!error.to_string().is_empty());
                }
            }
            assert_eq!(out.len(), total);
        }
    }
    if let Ok(page) = std::str::from_utf8(bytes) {
        let _ = dcgm_gpu_samples(page, T);
    }
    let batch = out.finish().expect("a valid batch");
    assert_eq!(batch.num_rows(), total);
}

/// Valid payloads of every format, to corrupt.
fn valid_payloads() -> Vec<Vec<u8>> {
    let batch = MetricBatch {
        entity: "pg-1".into(),
        source: "postgres".into(),
        samples: vec![MetricSample {
            name: "pg_up".into(),
            labels: [("db".to_owned(), "orders".to_owned())].into(),
            value: 1.0,
            time_us: T,
        }],
    };
    let mut payloads: Vec<Vec<u8>> = WireFormat::ALL
        .into_iter()
        .map(|format| codec(format).encode(&batch).expect("encode"))
        .collect();
    payloads.push(
        b"{\"entity\":\"a\",\"name\":\"x\",\"value\":\"1.5\",\"labels\":{\"k\":\"v\\n\"}}\n\
          {\"name\":\"y\",\"value\":2,\"timestamp\":\"2024-05-01T12:00:00Z\"}\n"
            .to_vec(),
    );
    for page in [
        include_str!("fixtures/dcgm-exporter.txt"),
        include_str!("fixtures/dcgm-exporter-hostname.txt"),
        include_str!("fixtures/node-exporter.txt"),
    ] {
        payloads.push(page.as_bytes().to_vec());
    }
    payloads
}

/// Characters that steer the text parsers into their interesting states.
const TOKENS: &[u8] = b"{}=\",\\ \t\n\r#:_aeEnNIf019.+-[]HELPTYPE";

fn token_byte() -> impl Strategy<Value = u8> {
    prop_oneof![any::<u8>(), prop::sample::select(TOKENS)]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_everywhere(&bytes);
    }

    #[test]
    fn token_soup_never_panics(bytes in prop::collection::vec(prop::sample::select(TOKENS), 0..256)) {
        decode_everywhere(&bytes);
    }

    #[test]
    fn corrupted_payloads_never_panic(
        which in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), token_byte()), 1..8),
        inserts in prop::collection::vec((any::<prop::sample::Index>(), token_byte()), 0..3),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let payloads = valid_payloads();
        let mut bytes = which.get(&payloads).clone();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        for (at, value) in inserts {
            let i = at.index(bytes.len() + 1);
            bytes.insert(i, value);
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        decode_everywhere(&bytes);
    }
}

#[test]
fn valid_payloads_decode_somewhere() {
    for payload in valid_payloads() {
        let mut out = MetricSamplesBuilder::new();
        let decoded = decoders().into_iter().any(|mut decoder| {
            decoder
                .decode(&payload, &RecordContext::new("t", T), &mut out)
                .is_ok_and(|n| n > 0)
        });
        assert!(decoded, "{:?}", String::from_utf8_lossy(&payload));
    }
}
