//! Event time: watermarks across partitions, idleness, lateness and checkpoints.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;
use opsloop_engine::time::{
    LateRecords, Lateness, LatenessCounts, LatenessPolicy, PartitionCounts, PartitionId,
    PartitionStatus, SplitError, WatermarkConfig, WatermarkSnapshot, WatermarkTracker,
    split_by_lateness,
};
use proptest::prelude::*;

/// 2026-11-25T12:00:00Z in µs.
const T0: i64 = 1_795_608_000_000_000;
const SECOND: i64 = 1_000_000;

fn config(max_out_of_orderness_ms: u64, idle_timeout_ms: u64) -> WatermarkConfig {
    WatermarkConfig {
        max_out_of_orderness_ms,
        idle_timeout_ms,
        allowed_lateness_ms: 0,
        ..WatermarkConfig::default()
    }
}

fn partition(n: i32) -> PartitionId {
    PartitionId::new("telemetry.metrics", n)
}

fn after(start: Instant, seconds: u64) -> Instant {
    start + Duration::from_secs(seconds)
}

#[test]
fn config_defaults_fill_missing_fields_and_unknown_fields_are_rejected() {
    let parsed: WatermarkConfig =
        serde_json::from_str(r#"{"allowed_lateness_ms": 60000}"#).expect("a valid config");
    assert_eq!(
        parsed,
        WatermarkConfig {
            max_out_of_orderness_ms: 5_000,
            idle_timeout_ms: 30_000,
            allowed_lateness_ms: 60_000,
            jump_warning_ms: 3_600_000,
        }
    );
    assert_eq!(parsed.max_out_of_orderness_us(), 5 * SECOND);
    assert_eq!(parsed.allowed_lateness_us(), 60 * SECOND);
    assert_eq!(parsed.idle_timeout(), Some(Duration::from_secs(30)));

    let typo = serde_json::from_str::<WatermarkConfig>(r#"{"max_out_of_order_ms": 1}"#);
    assert!(typo.is_err(), "a misspelt field must not be ignored");
}

#[test]
fn config_durations_saturate_and_zero_idle_timeout_turns_idleness_off() {
    let huge = WatermarkConfig {
        max_out_of_orderness_ms: u64::MAX,
        idle_timeout_ms: 0,
        allowed_lateness_ms: u64::MAX / 1_000,
        jump_warning_ms: 0,
    };
    assert_eq!(huge.max_out_of_orderness_us(), i64::MAX);
    assert_eq!(huge.allowed_lateness_us(), i64::MAX);
    assert_eq!(huge.idle_timeout(), None);
    assert_eq!(huge.jump_warning_us(), None, "0 turns the jump report off");
    assert_eq!(
        WatermarkConfig::default().jump_warning_us(),
        Some(3_600 * SECOND)
    );
}

#[test]
fn watermark_is_none_until_data_then_max_event_time_minus_bound() {
    let start = Instant::now();
    let mut tracker = WatermarkTracker::new(config(5_000, 30_000));
    assert_eq!(tracker.watermark(), None);
    tracker.assign(partition(0), start);
    assert_eq!(tracker.advance_idle(after(start, 60)), None);

    let returned = tracker.observe(&partition(0), T0 + 20 * SECOND, start);
    assert_eq!(returned, Some(T0 + 15 * SECOND));
    assert_eq!(tracker.watermark(), Some(T0 + 15 * SECOND));
    assert_eq!(tracker.max_event_time(), Some(T0 + 20 * SECOND));
}

#[test]
fn out_of_order_events_within_the_bound_do_not_move_the_watermark_back() {
    let start = Instant::now();
    let mut tracker = WatermarkTracker::new(config(5_000, 30_000));
    tracker.observe(&partition(0), T0 + 10 * SECOND, start);
    tracker.observe(&partition(0), T0 + 7 * SECOND, after(start, 1));
    assert_eq!(tracker.watermark(), Some(T0 + 5 * SECOND));
    assert_eq!(tracker.max_event_time(), Some(T0 + 10 * SECOND));
    assert_eq!(
        tracker.classify(T0 + 6 * SECOND),
        Lateness::OnTime,
        "the window of the out-of-order record is still open"
    );

    tracker.observe(&partition(0), T0 + 12 * SECOND, after(start, 2));
    assert_eq!(tracker.watermark(), Some(T0 + 7 * SECOND));
}

#[test]
fn the_slowest_active_partition_holds_the_watermark_back() {
    let start = Instant::now();
    let mut tracker = WatermarkTracker::new(config(1_000, 30_000));
    tracker.observe(&partition(0), T0 + 50 * SECOND, start);
    assert_eq!(tracker.watermark(), Some(T0 + 49 * SECOND));
    tracker.observe(&partition(1), T0 + 20 * SECOND, start);
    tracker.observe(&partition(2), T0 + 30 * SECOND, start);
    // Partition 1 joined behind: the watermark waits for it rather than going back.
    assert_eq!(tracker.watermark(), Some(T0 + 49 * SECOND));

    tracker.observe(&partition(0), T0 + 80 * SECOND, after(start, 1));
    tracker.observe(&partition(1), T0 + 60 * SECOND, after(start, 1));
    tracker.observe(&partition(2), T0 + 70 * SECOND, after(start, 1));
    assert_eq!(tracker.watermark(), Some(T0 + 59 * SECOND));

    tracker.observe(&partition(1), T0 + 75 * SECOND, after(start, 2));
    assert_eq!(
        tracker.watermark(),
        Some(T0 + 69 * SECOND),
        "now partition 2 is slowest"
    );
}

#[test]
fn an_idle_partition_stops_holding_back_and_rejoins_without_moving_the_watermark_back() {
    let start = Instant::now();
    let mut tracker = WatermarkTracker::new(config(1_000, 30_000));
    tracker.observe(&partition(0), T0 + 10 * SECOND, start);
    tracker.observe(&partition(1), T0 + 10 * SECOND, start);

    // Partition 1 goes silent; partition 0 keeps delivering.
    tracker.observe(&partition(0), T0 + 40 * SECOND, after(start, 29));
    assert_eq!(
        tracker.watermark(),
        Some(T0 + 9 * SECOND),
        "29 s of silence is within the 30 s idle timeout"
    );
    assert_eq!(tracker.counts(), PartitionCounts { active: 2, idle: 0 });

    assert_eq!(
        tracker.advance_idle(after(start, 30)),
        Some(T0 + 39 * SECOND)
    );
    assert_eq!(tracker.counts(), PartitionCounts { active: 1, idle: 1 });

    // Partition 1 wakes up behind the watermark: the watermark stays, then waits for it.
    tracker.observe(&partition(1), T0 + 20 * SECOND, after(start, 31));
    assert_eq!(tracker.counts(), PartitionCounts { active: 2, idle: 0 });
    assert_eq!(tracker.watermark(), Some(T0 + 39 * SECOND));
    tracker.observe(&partition(0), T0 + 90 * SECOND, after(start, 32));
    assert_eq!(
        tracker.watermark(),
        Some(T0 + 39 * SECOND),
        "the woken partition holds the watermark back again"
    );
    tracker.observe(&partition(1), T0 + 60 * SECOND, after(start, 33));
    assert_eq!(tracker.watermark(), Some(T0 + 59 * SECOND));
}

#[test]
fn observing_one_partition_also_retires_the_silent_ones() {
    let start = Instant::now();
    let mut tracker = WatermarkTracker::new(config(0, 10_000));
    tracker.observe(&partition(0), T0, start);
    tracker.observe(&partition(1), T0 + 5 * SECOND, start);
    assert_eq!(
        tracker.observe(&partition(1), T0 + 8 * SECOND, after(start, 10)),
        Some(T0 + 8 * SECOND)
    );
}

#[test]
fn when_every_partition_is_idle_the_watermark_is_the_largest_of_theirs() {
    let start = Instant::now();
    let mut tracker = WatermarkTracker::new(config(2_000, 30_000));
    tracker.observe(&partition(0), T0 + 10 * SECOND, start);
    tracker.observe(&partition(1), T0 + 40 * SECOND, start);
    tracker.observe(&partition(2), T0 + 25 * SECOND, start);
    assert_eq!(tracker.watermark(), Some(T0 + 8 * SECOND));

    assert_eq!(
        tracker.advance_idle(after(start, 30)),
        Some(T0 + 38 * SECOND)
    );
    assert_eq!(tracker.counts(), PartitionCounts { active: 0, idle: 3 });

    // Data resumes on the slowest partition: the watermark does not fall back to it.
    tracker.observe(&partition(0), T0 + 11 * SECOND, after(start, 40));
    assert_eq!(tracker.watermark(), Some(T0 + 38 * SECOND));
}

#[test]
fn a_zero_idle_timeout_never_retires_a_silent_partition() {
    let start = Instant::now();
    let mut tracker = WatermarkTracker::new(config(0, 0));
    tracker.observe(&partition(0), T0, start);
    tracker.observe(&partition(1), T0 + 100 * SECOND, after(start, 3_600));
    assert_eq!(tracker.advance_idle(after(start, 86_400)), Some(T0));
    assert_eq!(tracker.counts(), PartitionCounts { active: 2, idle: 0 });
}

#[test]
fn an_assigned_partition_without_data_holds_the_watermark_until_it_speaks_or_idles() {
    let start = Instant::now();
    let mut tracker = WatermarkTracker::new(config(1_000, 30_000));
    tracker.assign(partition(0), start);
    tracker.assign(partition(1), start);
    assert_eq!(tracker.counts(), PartitionCounts { active: 2, idle: 0 });

    // Partition 1's backlog may be older than partition 0's data: no watermark yet.
    tracker.observe(&partition(0), T0 + 10 * SECOND, start);
    assert_eq!(tracker.watermark(), None);

    // Its first data lets the slowest partition set the watermark.
    tracker.observe(&partition(1), T0 + 12 * SECOND, after(start, 1));
    assert_eq!(tracker.watermark(), Some(T0 + 9 * SECOND));
    tracker.observe(&partition(0), T0 + 30 * SECOND, after(start, 2));
    assert_eq!(tracker.watermark(), Some(T0 + 11 * SECOND));

    // Assigning a tracked partition again keeps its state.
    tracker.assign(partition(1), after(start, 3));
    assert_eq!(tracker.counts(), PartitionCounts { active: 2, idle: 0 });
    assert_eq!(tracker.watermark(), Some(T0 + 11 * SECOND));

    // A partition assigned later that stays silent stops holding back after the idle timeout.
    tracker.assign(partition(2), after(start, 4));
    tracker.observe(&partition(1), T0 + 40 * SECOND, after(start, 5));
    assert_eq!(tracker.watermark(), Some(T0 + 11 * SECOND));
    tracker.observe(&partition(0), T0 + 40 * SECOND, after(start, 34));
    tracker.observe(&partition(1), T0 + 40 * SECOND, after(start, 34));
    assert_eq!(tracker.watermark(), Some(T0 + 39 * SECOND));
    assert_eq!(tracker.counts(), PartitionCounts { active: 2, idle: 1 });
}

#[test]
fn a_revoked_partition_stops_holding_the_watermark_back() {
    let start = Instant::now();
    let mut tracker = WatermarkTracker::new(config(1_000, 30_000));
    tracker.observe(&partition(0), T0 + 10 * SECOND, start);
    tracker.observe(&partition(1), T0 + 50 * SECOND, start);
    assert_eq!(tracker.watermark(), Some(T0 + 9 * SECOND));

    assert_eq!(tracker.revoke(&partition(0)), Some(T0 + 49 * SECOND));
    assert_eq!(tracker.partitions().count(), 1);

    // Revoking everything keeps the watermark where it was.
    assert_eq!(tracker.revoke(&partition(1)), Some(T0 + 49 * SECOND));
    assert_eq!(tracker.revoke(&partition(7)), Some(T0 + 49 * SECOND));
    assert_eq!(tracker.counts(), PartitionCounts::default());
}

#[test]
fn partitions_report_their_own_watermark_and_idleness() {
    let start = Instant::now();
    let mut tracker = WatermarkTracker::new(config(1_000, 30_000));
    tracker.assign(PartitionId::new("telemetry.logs", 3), start);
    tracker.advance_idle(after(start, 30));
    tracker.observe(&partition(1), T0 + 10 * SECOND, after(start, 31));
    let statuses: Vec<PartitionStatus> = tracker.partitions().collect();
    assert_eq!(
        statuses,
        vec![
            PartitionStatus {
                id: PartitionId::new("telemetry.logs", 3),
                max_event_time_us: None,
                watermark_us: None,
                idle: true,
            },
            PartitionStatus {
                id: partition(1),
                max_event_time_us: Some(T0 + 10 * SECOND),
                watermark_us: Some(T0 + 9 * SECOND),
                idle: false,
            },
        ]
    );
    assert_eq!(partition(1).to_string(), "telemetry.metrics/1");
}

#[test]
fn lateness_is_classified_by_window_end_at_the_exact_boundaries() {
    let watermark = T0 + 60 * SECOND;
    let policy = LatenessPolicy {
        watermark_us: Some(watermark),
        allowed_lateness_us: 10 * SECOND,
    };
    assert_eq!(policy.classify(watermark + 1), Lateness::OnTime);
    assert_eq!(
        policy.classify(watermark),
        Lateness::LateAllowed,
        "end == watermark"
    );
    assert_eq!(
        policy.classify(watermark - 10 * SECOND + 1),
        Lateness::LateAllowed
    );
    assert_eq!(
        policy.classify(watermark - 10 * SECOND),
        Lateness::TooLate,
        "end + lateness == watermark"
    );

    let strict = LatenessPolicy {
        allowed_lateness_us: 0,
        ..policy
    };
    assert_eq!(strict.classify(watermark + 1), Lateness::OnTime);
    assert_eq!(strict.classify(watermark), Lateness::TooLate);

    let before_data = LatenessPolicy {
        watermark_us: None,
        allowed_lateness_us: 0,
    };
    assert_eq!(before_data.classify(i64::MIN), Lateness::OnTime);

    let forever = LatenessPolicy {
        watermark_us: Some(T0 + 100 * SECOND),
        allowed_lateness_us: i64::MAX,
    };
    assert_eq!(forever.classify(T0), Lateness::LateAllowed, "no overflow");
}

#[test]
fn the_tracker_classifies_with_its_watermark_and_allowed_lateness() {
    let mut tracker = WatermarkTracker::new(WatermarkConfig {
        max_out_of_orderness_ms: 0,
        idle_timeout_ms: 30_000,
        allowed_lateness_ms: 5_000,
        ..WatermarkConfig::default()
    });
    tracker.observe(&partition(0), T0 + 60 * SECOND, Instant::now());
    assert_eq!(
        tracker.lateness_policy(),
        LatenessPolicy {
            watermark_us: Some(T0 + 60 * SECOND),
            allowed_lateness_us: 5 * SECOND,
        }
    );
    assert_eq!(tracker.classify(T0 + 61 * SECOND), Lateness::OnTime);
    assert_eq!(tracker.classify(T0 + 56 * SECOND), Lateness::LateAllowed);
    assert_eq!(tracker.classify(T0 + 55 * SECOND), Lateness::TooLate);
}

/// Rows `name` with event times `times`, in a UTC microsecond timestamp column `time`.
fn batch(times: &[i64], names: &[&str]) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("name", DataType::Utf8, false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(TimestampMicrosecondArray::from(times.to_vec()).with_timezone("UTC")),
            Arc::new(StringArray::from(names.to_vec())),
        ],
    )
    .expect("columns match the schema")
}

fn names(batch: &RecordBatch) -> Vec<String> {
    batch
        .column_by_name("name")
        .expect("a name column")
        .as_string::<i32>()
        .iter()
        .map(|name| name.expect("no null names").to_owned())
        .collect()
}

/// The end of the 10 s tumbling window holding `time`.
fn ten_second_window_end(time: i64) -> i64 {
    time - time.rem_euclid(10 * SECOND) + 10 * SECOND
}

#[test]
fn a_batch_splits_into_kept_and_too_late_rows_with_counts() {
    // Windows [T0, T0+10s), [T0+10s, T0+20s), [T0+20s, T0+30s); watermark T0+20s with 10 s
    // of allowed lateness: the first window is too late, the second late but allowed.
    let policy = LatenessPolicy {
        watermark_us: Some(T0 + 20 * SECOND),
        allowed_lateness_us: 10 * SECOND,
    };
    let input = batch(
        &[
            T0 + 25 * SECOND,
            T0 + 3 * SECOND,
            T0 + 15 * SECOND,
            T0 + 9 * SECOND,
            T0 + 20 * SECOND,
        ],
        &[
            "on-time-a",
            "too-late-a",
            "allowed",
            "too-late-b",
            "on-time-b",
        ],
    );
    let split = split_by_lateness(&input, "time", ten_second_window_end, policy)
        .expect("a valid time column");
    assert_eq!(
        split.counts,
        LatenessCounts {
            on_time: 2,
            late_allowed: 1,
            too_late: 2,
        }
    );
    assert_eq!(names(&split.kept), ["on-time-a", "allowed", "on-time-b"]);
    assert_eq!(names(&split.too_late), ["too-late-a", "too-late-b"]);
    assert_eq!(split.too_late.schema(), input.schema());
    let late_times = split
        .too_late
        .column(0)
        .as_primitive::<TimestampMicrosecondType>();
    assert_eq!(
        late_times.values().as_ref(),
        [T0 + 3 * SECOND, T0 + 9 * SECOND]
    );

    let mut late = LateRecords::new();
    let kept = late.route(split);
    assert_eq!(kept.num_rows(), 3);
    assert_eq!((late.late_allowed(), late.too_late()), (1, 2));
    assert_eq!(late.pending_rows(), 2);

    // All rows too late, then none: counters add up, only non-empty batches are kept.
    let all_late = split_by_lateness(
        &batch(&[T0, T0 + SECOND], &["x", "y"]),
        "time",
        ten_second_window_end,
        policy,
    )
    .expect("a valid time column");
    assert_eq!(all_late.kept.num_rows(), 0);
    assert_eq!(late.route(all_late).num_rows(), 0);
    let none_late = split_by_lateness(
        &batch(&[T0 + 40 * SECOND], &["z"]),
        "time",
        ten_second_window_end,
        policy,
    )
    .expect("a valid time column");
    assert_eq!(late.route(none_late).num_rows(), 1);
    assert_eq!((late.late_allowed(), late.too_late()), (1, 4));

    let drained = late.drain();
    assert_eq!(drained.len(), 2);
    assert_eq!(names(&drained[1]), ["x", "y"]);
    assert_eq!(late.pending_rows(), 0);
    assert_eq!(late.too_late(), 4, "draining keeps the totals");
}

#[test]
fn before_the_first_watermark_every_row_is_kept() {
    let input = batch(&[i64::MIN, T0], &["a", "b"]);
    let policy = LatenessPolicy {
        watermark_us: None,
        allowed_lateness_us: 0,
    };
    let split = split_by_lateness(
        &input,
        "time",
        |_| unreachable!("no window end is needed before the first watermark"),
        policy,
    )
    .expect("a valid time column");
    assert_eq!(split.counts.on_time, 2);
    assert_eq!(split.kept.num_rows(), 2);
    assert_eq!(split.too_late.num_rows(), 0);
}

#[test]
fn an_int64_time_column_is_accepted_and_bad_time_columns_are_errors() {
    let policy = LatenessPolicy {
        watermark_us: Some(T0 + 10 * SECOND),
        allowed_lateness_us: 0,
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("time_us", DataType::Int64, true),
        Field::new("name", DataType::Utf8, false),
    ]));
    let int_times = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![T0, T0 + 10 * SECOND])),
            Arc::new(StringArray::from(vec!["late", "on-time"])),
        ],
    )
    .expect("columns match the schema");
    let split = split_by_lateness(&int_times, "time_us", ten_second_window_end, policy)
        .expect("Int64 µs is a valid time column");
    assert_eq!(names(&split.too_late), ["late"]);

    let missing = split_by_lateness(&int_times, "time", ten_second_window_end, policy);
    assert!(matches!(missing, Err(SplitError::MissingColumn { column }) if column == "time"));

    let wrong_type = split_by_lateness(&int_times, "name", ten_second_window_end, policy);
    assert!(matches!(
        wrong_type,
        Err(SplitError::ColumnType {
            data_type: DataType::Utf8,
            ..
        })
    ));

    let with_null = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![Some(T0), None])),
            Arc::new(StringArray::from(vec!["a", "b"])),
        ],
    )
    .expect("columns match the schema");
    let error = split_by_lateness(&with_null, "time_us", ten_second_window_end, policy)
        .expect_err("a null event time is rejected");
    assert!(matches!(error, SplitError::NullTimes { nulls: 1, .. }));
    assert_eq!(
        error.to_string(),
        "the time column \"time_us\" has 1 empty values; every record needs an event time"
    );
}

#[test]
fn a_snapshot_round_trips_through_serde_and_restores_the_tracker() {
    let start = Instant::now();
    let config = config(1_000, 30_000);
    let mut tracker = WatermarkTracker::new(config);
    tracker.assign(partition(9), start);
    tracker.observe(&partition(0), T0 + 10 * SECOND, start);
    tracker.observe(&partition(1), T0 + 50 * SECOND, after(start, 20));
    tracker.advance_idle(after(start, 30));
    assert_eq!(tracker.watermark(), Some(T0 + 49 * SECOND));

    let snapshot = tracker.snapshot();
    let json = serde_json::to_string(&snapshot).expect("a snapshot serialises");
    let decoded: WatermarkSnapshot = serde_json::from_str(&json).expect("and deserialises");
    assert_eq!(decoded, snapshot);

    let restart = after(start, 1_000);
    let mut restored = WatermarkTracker::restore(config, &decoded, restart);
    assert_eq!(restored.watermark(), tracker.watermark());
    assert_eq!(
        restored.partitions().collect::<Vec<_>>(),
        tracker.partitions().collect::<Vec<_>>()
    );
    assert_eq!(restored.snapshot(), snapshot);

    // The active partition counts as heard from at the restart: it holds the watermark back
    // until it delivers data or times out again.
    restored.observe(&partition(0), T0 + 100 * SECOND, after(restart, 1));
    assert_eq!(restored.watermark(), Some(T0 + 49 * SECOND));
    assert_eq!(
        restored.advance_idle(after(restart, 30)),
        Some(T0 + 99 * SECOND)
    );
}

#[test]
fn restoring_never_moves_the_watermark_back_and_old_snapshots_load() {
    let start = Instant::now();
    let mut tracker = WatermarkTracker::new(config(1_000, 30_000));
    tracker.observe(&partition(0), T0 + 10 * SECOND, start);
    let snapshot = tracker.snapshot();

    let wider = WatermarkTracker::restore(config(60_000, 30_000), &snapshot, start);
    assert_eq!(wider.watermark(), Some(T0 + 9 * SECOND));
    let narrower = WatermarkTracker::restore(config(0, 30_000), &snapshot, start);
    assert_eq!(narrower.watermark(), Some(T0 + 10 * SECOND));

    let minimal: WatermarkSnapshot =
        serde_json::from_str(r#"{"partitions": [{"topic": "telemetry.metrics", "partition": 0}]}"#)
            .expect("missing fields take defaults");
    let from_minimal = WatermarkTracker::restore(config(0, 30_000), &minimal, start);
    assert_eq!(from_minimal.watermark(), None);
    assert_eq!(
        from_minimal.counts(),
        PartitionCounts { active: 0, idle: 1 }
    );
}

#[derive(Debug, Clone)]
enum Op {
    Observe {
        partition: i32,
        event_time_s: i64,
        wait_s: u64,
    },
    AdvanceIdle {
        wait_s: u64,
    },
    Assign(i32),
    Revoke(i32),
    Checkpoint {
        wait_s: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..4i32, -100..1_000i64, 0..20u64).prop_map(|(partition, event_time_s, wait_s)| {
            Op::Observe { partition, event_time_s, wait_s }
        }),
        2 => (0..60u64).prop_map(|wait_s| Op::AdvanceIdle { wait_s }),
        1 => (0..4i32).prop_map(Op::Assign),
        1 => (0..4i32).prop_map(Op::Revoke),
        1 => (0..60u64).prop_map(|wait_s| Op::Checkpoint { wait_s }),
    ]
}

proptest! {
    #[test]
    fn the_watermark_never_moves_backwards(
        bound_ms in 0..20_000u64,
        idle_ms in prop_oneof![Just(0u64), 1..40_000u64],
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let config = config(bound_ms, idle_ms);
        let mut tracker = WatermarkTracker::new(config);
        let mut now = Instant::now();
        let mut previous = tracker.watermark();
        let mut max_seen: Option<i64> = None;
        for op in ops {
            let returned = match op {
                Op::Observe { partition: p, event_time_s, wait_s } => {
                    now += Duration::from_secs(wait_s);
                    let time = T0 + event_time_s * SECOND;
                    max_seen = max_seen.max(Some(time));
                    tracker.observe(&partition(p), time, now)
                }
                Op::AdvanceIdle { wait_s } => {
                    now += Duration::from_secs(wait_s);
                    tracker.advance_idle(now)
                }
                Op::Assign(p) => {
                    tracker.assign(partition(p), now);
                    tracker.watermark()
                }
                Op::Revoke(p) => tracker.revoke(&partition(p)),
                Op::Checkpoint { wait_s } => {
                    now += Duration::from_secs(wait_s);
                    tracker = WatermarkTracker::restore(config, &tracker.snapshot(), now);
                    tracker.watermark()
                }
            };
            let current = tracker.watermark();
            prop_assert_eq!(returned, current);
            prop_assert!(current >= previous, "{:?} went back to {:?}", previous, current);
            // The watermark trails the newest event by at least the bound.
            if let (Some(watermark), Some(max)) = (current, max_seen) {
                prop_assert!(watermark <= max - config.max_out_of_orderness_us());
            }
            // No watermark without data (an assigned partition's unread backlog may hold
            // the first one back).
            prop_assert!(current.is_none() || max_seen.is_some());
            previous = current;
        }
    }
}
