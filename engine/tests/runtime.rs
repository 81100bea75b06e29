//! The engine end to end without a transport: per-partition watermarks close windows, SQL
//! detectors turn them into alerts, a checkpoint taken mid-stream restores an engine that
//! emits exactly the alerts an uninterrupted one does, and a watermark that leaps ahead is
//! reported.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use opsloop_engine::checkpoint::{CheckpointStore, SourceOffset};
use opsloop_engine::detector::{
    Detector, DetectorOptions, DetectorPlan, StreamTable, session_context,
};
use opsloop_engine::runtime::{Engine, WatermarkJump};
use opsloop_engine::time::{PartitionId, WatermarkConfig};

const START_US: i64 = 1_795_003_200_000_000;
const ENTITIES: usize = 5;
const MINUTES: i64 = 10;
/// Seconds of event time per micro-batch.
const BATCH_SECONDS: i64 = 10;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("entity", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]))
}

fn detectors() -> Vec<Detector> {
    let context = session_context();
    let stream = StreamTable::new("db_metrics", schema(), "time").expect("stream table");
    let sql = include_str!("../../sql/db_latency_p99.sql");
    let plan = DetectorPlan::from_sql("db_latency_p99", sql, &context, &[stream]).expect("plans");
    vec![Detector::new(Arc::new(plan), DetectorOptions::default()).expect("detector")]
}

/// One micro-batch per partition (entities alternate between partitions 0 and 1): a latency
/// sample per entity per second; db-2 is at 400 ms during minutes 3 to 5, the rest at 100 ms.
fn batches() -> Vec<(RecordBatch, Vec<(PartitionId, i64)>)> {
    let mut out = Vec::new();
    for step in 0..(MINUTES * 60 / BATCH_SECONDS) {
        for partition in 0..2 {
            let mut entity = Vec::new();
            let mut time = Vec::new();
            let mut value = Vec::new();
            for second in step * BATCH_SECONDS..(step + 1) * BATCH_SECONDS {
                for e in (0..ENTITIES).filter(|e| e % 2 == partition) {
                    let slow = e == 2 && (180..360).contains(&second);
                    entity.push(format!("db-{e}"));
                    time.push(START_US + second * 1_000_000);
                    value.push(if slow {
                        400.0
                    } else {
                        100.0 + (second % 7) as f64
                    });
                }
            }
            let rows = entity.len();
            let max_time = *time.iter().max().expect("rows");
            let batch = RecordBatch::try_new(
                schema(),
                vec![
                    Arc::new(StringArray::from(entity)),
                    Arc::new(StringArray::from(vec!["db_query_latency_ms"; rows])),
                    Arc::new(Float64Array::from(value)),
                    Arc::new(TimestampMicrosecondArray::from(time).with_timezone("UTC")),
                ],
            )
            .expect("batch");
            out.push((
                batch,
                vec![(
                    PartitionId::new("telemetry.metrics", partition as i32),
                    max_time,
                )],
            ));
        }
    }
    out
}

fn watermarks() -> WatermarkConfig {
    WatermarkConfig {
        max_out_of_orderness_ms: 2_000,
        ..WatermarkConfig::default()
    }
}

fn run(engine: &mut Engine, batches: &[(RecordBatch, Vec<(PartitionId, i64)>)]) -> Vec<String> {
    let now = Instant::now();
    let mut ids = Vec::new();
    for (rows, partitions) in batches {
        let output = engine
            .process("db_metrics", rows, partitions, now)
            .expect("processes");
        assert_eq!(output.too_late_rows, 0);
        ids.extend(output.alerts.into_iter().map(|alert| {
            assert_eq!(alert.entity, "db-2");
            assert_eq!(alert.detector, "db_latency_p99");
            assert!(alert.score > 1.0, "p99 over the 250 ms threshold");
            alert.alert_id
        }));
    }
    ids
}

#[test]
fn watermarks_close_windows_into_alerts() {
    let mut engine = Engine::new(watermarks(), detectors());
    let ids = run(&mut engine, &batches());
    // Minutes 3, 4 and 5 of db-2 are slow; the last minute is still open (the watermark
    // trails the newest event by the 2 s bound).
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        3,
        "ids are unique"
    );
    let status = engine.status();
    assert_eq!(status.open_windows, 1, "{status:?}");
    assert_eq!(status.active_groups, ENTITIES);
    assert!(status.state_bytes > 0);
    assert_eq!(
        status.watermark_us,
        Some(START_US + (MINUTES * 60 - 1) * 1_000_000 - 2_000_000)
    );
}

#[test]
fn an_engine_restored_from_a_checkpoint_emits_the_same_alerts() {
    let batches = batches();
    let mut uninterrupted = Engine::new(watermarks(), detectors());
    let expected: BTreeSet<String> = run(&mut uninterrupted, &batches).into_iter().collect();
    assert_eq!(expected.len(), 3);

    // Stop in the middle of db-2's slow minutes, with a window half aggregated.
    let cut = batches.len() * 4 / 10 + 1;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = CheckpointStore::open(dir.path(), 2).expect("store");
    let mut first = Engine::new(watermarks(), detectors());
    let mut emitted: Vec<String> = run(&mut first, &batches[..cut]);
    let offsets = vec![SourceOffset {
        topic: "telemetry.metrics".to_owned(),
        partition: 0,
        next_offset: cut as i64,
    }];
    let checkpoint = first.checkpoint(1, offsets.clone()).expect("checkpoint");
    assert!(
        first.status().open_windows > 0,
        "state is in flight at the cut"
    );
    store.write(&checkpoint).expect("written");
    drop(first);

    let latest = store.latest().expect("readable").expect("exists");
    assert_eq!(latest.manifest.offsets, offsets);
    let mut resumed = Engine::restore(
        watermarks(),
        detectors(),
        &latest,
        Instant::now() + Duration::from_millis(1),
    )
    .expect("restores");
    emitted.extend(run(&mut resumed, &batches[cut..]));

    let unique: BTreeSet<String> = emitted.iter().cloned().collect();
    assert_eq!(unique.len(), emitted.len(), "no alert emitted twice");
    assert_eq!(unique, expected, "no alert lost");
}

#[test]
fn a_watermark_step_past_the_jump_warning_is_reported_and_steady_steps_are_not() {
    const TWO_HOURS: i64 = 2 * 3_600_000_000;
    let batches = batches();
    let now = Instant::now();
    let ahead = |watermark: i64| {
        [0, 1].map(|p| {
            (
                PartitionId::new("telemetry.metrics", p),
                watermark + TWO_HOURS,
            )
        })
    };
    let no_rows = batches[0].0.slice(0, 0);

    let mut engine = Engine::new(watermarks(), detectors());
    for (rows, partitions) in &batches {
        let output = engine
            .process("db_metrics", rows, partitions, now)
            .expect("processes");
        assert_eq!(output.watermark_jump, None, "10 s steps are steady");
    }
    let before = engine.status().watermark_us.expect("a watermark");
    let output = engine
        .process("db_metrics", &no_rows, &ahead(before), now)
        .expect("processes");
    assert_eq!(
        output.watermark_jump,
        Some(WatermarkJump {
            from_us: before,
            to_us: before + TWO_HOURS - 2_000_000,
        }),
        "two hours in one step are over the default hour"
    );
    assert_eq!(
        engine
            .process("db_metrics", &no_rows, &ahead(before), now)
            .expect("processes")
            .watermark_jump,
        None,
        "reported once: the watermark stays"
    );

    let quiet = WatermarkConfig {
        jump_warning_ms: 0,
        ..watermarks()
    };
    let mut engine = Engine::new(quiet, detectors());
    let (rows, partitions) = &batches[0];
    engine
        .process("db_metrics", rows, partitions, now)
        .expect("processes");
    let before = engine.status().watermark_us.expect("a watermark");
    let output = engine
        .process("db_metrics", &no_rows, &ahead(before), now)
        .expect("processes");
    assert_eq!(output.watermark_jump, None, "0 turns the report off");
}
