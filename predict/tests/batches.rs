//! The predictor reads the engine's micro-batches as `opsloop run` and `opsloop demo` decode
//! them from the topics: metric samples by entity and metric name, DCGM samples by GPU and
//! field; metrics nobody forecasts are not kept.

use std::collections::BTreeMap;
use std::sync::Arc;

use opsloop_connectors::decode::{
    AvroMetricBatchDecoder, AvroRecordDecoder, Decoder, RecordContext, RowBuilder,
};
use opsloop_predict::{Predictor, PredictorConfig};
use opsloop_schemas::telemetry::{GpuSample, MetricBatch, MetricSample};
use opsloop_schemas::{AvroRecord, Codec, SchemaRegistry, WireFormat};

const START_US: i64 = 1_795_046_400 * 1_000_000;
const MINUTE_US: i64 = 60_000_000;

fn codec() -> Codec {
    Codec::new(WireFormat::Confluent, Arc::new(SchemaRegistry::builtin()))
}

/// `records` as one decoded micro-batch.
fn decode<T: AvroRecord, D: Decoder>(
    mut decoder: D,
    records: &[T],
) -> datafusion::arrow::array::RecordBatch {
    let codec = codec();
    let mut rows = decoder.new_rows();
    for record in records {
        let payload = codec.encode(record).expect("encode");
        decoder
            .decode(&payload, &RecordContext::new("topic", START_US), &mut rows)
            .expect("decode");
    }
    rows.finish().expect("batch")
}

#[test]
fn metric_and_dcgm_batches_become_windows() {
    let config = PredictorConfig {
        window_s: 60,
        ..PredictorConfig::default()
    };
    let mut predictor = Predictor::new(config).expect("predictor");
    let batches: Vec<MetricBatch> = (0..3)
        .map(|minute| MetricBatch {
            entity: "db-1".to_owned(),
            source: "test".to_owned(),
            samples: [
                ("db_query_latency_ms", 10.0 * (minute + 1) as f64),
                ("db_connections_active", 50.0),
                ("db_cache_hit_ratio", 0.9),
            ]
            .into_iter()
            .map(|(name, value)| MetricSample {
                name: name.to_owned(),
                labels: BTreeMap::new(),
                value,
                time_us: START_US + minute * MINUTE_US,
            })
            .collect(),
        })
        .collect();
    predictor.observe_batch(&decode(AvroMetricBatchDecoder::new(codec()), &batches));
    let gpus: Vec<GpuSample> = (0..2)
        .map(|minute| GpuSample {
            gpu_uuid: "GPU-1".to_owned(),
            gpu_index: 0,
            hostname: "gpu-host-0".to_owned(),
            model_name: "H100".to_owned(),
            pci_bus_id: String::new(),
            time_us: START_US + minute * MINUTE_US,
            fields: BTreeMap::from([
                ("DCGM_FI_DEV_FB_USED".to_owned(), 1000.0 + minute as f64),
                ("DCGM_FI_DEV_GPU_TEMP".to_owned(), 60.0),
            ]),
            labels: BTreeMap::new(),
        })
        .collect();
    predictor.observe_batch(&decode(AvroRecordDecoder::<GpuSample>::new(codec()), &gpus));

    let windows = predictor.windows();
    assert_eq!(
        windows.p99s("db-1", "db_query_latency_ms"),
        vec![
            (START_US, 10.0),
            (START_US + MINUTE_US, 20.0),
            (START_US + 2 * MINUTE_US, 30.0)
        ]
    );
    assert_eq!(windows.p99s("db-1", "db_connections_active").len(), 3);
    assert!(windows.p99s("db-1", "db_cache_hit_ratio").is_empty());
    assert_eq!(
        windows.p99s("GPU-1", "DCGM_FI_DEV_FB_USED"),
        vec![(START_US, 1000.0), (START_US + MINUTE_US, 1001.0)]
    );
    assert!(windows.p99s("GPU-1", "DCGM_FI_DEV_GPU_TEMP").is_empty());
}
