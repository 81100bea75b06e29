//! Engine throughput, window state and alert latency, embedded (no broker): metric-sample
//! batches go straight into `Engine::process`, so the watermark tracker, the event-time
//! windows, the SQL detector and the alert mapping are all in the measured path.
//!
//! The data: `OPSLOOP_BENCH_SERIES` series (default 10,000) of `db_query_latency_ms` in the
//! connectors' metric-samples layout (`metric_samples_schema`, empty labels) as the stream
//! table `db_metrics`, one sample per series per second of event time, the series spread over
//! 4 Kafka partitions, in batches of `OPSLOOP_BENCH_BATCH_ROWS` rows (default 8,192). Values are
//! 5-105 ms, and 300-400 ms in about 1% of (series, minute) pairs, so the detector's
//! `HAVING p99 > 250` lets a small fraction of series alert. Watermarks are the engine's
//! default: 5 s of out-of-orderness, no allowed lateness.
//!
//! The detector: one-minute tumbling windows of `approx_percentile_cont(value, 0.99)` (then
//! `hdr_quantile(value, 0.99)` in its place), `avg(value)` and `count(*)` per entity.
//!
//! 1. **Throughput**, one core: `OPSLOOP_BENCH_MINUTES` minutes of data (default 10) are
//!    generated before timing and fed `OPSLOOP_BENCH_REPLAYS` times (default 5), each replay
//!    shifted on in event time by the data set's span so windows keep closing (the shifted time
//!    column is built outside the timed calls). Samples/s is rows over the time spent inside
//!    `Engine::process`. Panics if no alert came out.
//! 2. **Batch baseline**, same run: DataFusion with one target partition runs the same query
//!    once over the pre-generated data set registered as a `MemTable`, with the window start
//!    computed as `CAST(time AS BIGINT) / 60000000 * 60000000` in place of `tumble` (what
//!    `date_bin(interval '1 minute', time)` gives, without DataFusion's datetime functions,
//!    which the engine does not enable); the time covers planning, execution and collecting. The (entity, window) rows that alert must be the same in both, over the
//!    windows of the data set that the streaming run closed (panics otherwise).
//! 3. **State** at `OPSLOOP_BENCH_STATE_SERIES` series (default 100,000), one sample per series
//!    per second for 130 s of event time, generated batch by batch: the peak of
//!    `EngineStatus::state_bytes` divided by the number of series. At the peak two windows are
//!    open (the minute that just ended, full, until the watermark passes its end 5 s later, and
//!    the first seconds of the next), so this is what a series costs the engine, not one
//!    window's accumulators; bytes per active group (series x open window) are printed too.
//!    The run stops early once the state passes `OPSLOOP_BENCH_STATE_MAX_MB` (default 4,096);
//!    the figure is then the bytes per group reached, a lower bound, marked ">= ... (capped)".
//! 4. **Alert latency**, from the throughput runs: for every `Engine::process` call whose
//!    partition observations move the watermark past one or more window ends, the wall time of
//!    that whole call, recorded once per window it fired (hdrhistogram, µs). The call aggregates
//!    the batch that carried the observations before the windows fire, so this is an upper
//!    bound of the time from the watermark passing a window's end to its alerts being returned.
//!
//! `cargo bench -p opsloop-benches --bench engine`

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, AsArray, Float64Builder, MapBuilder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Int64Type, TimestampMicrosecondType};
use datafusion::datasource::MemTable;
use hdrhistogram::Histogram;
use opsloop_benches::format_rate;
use opsloop_connectors::decode::{TIME_ZONE, metric_samples_schema};
use opsloop_engine::detector::{
    Detector, DetectorOptions, DetectorPlan, StreamTable, session_context,
};
use opsloop_engine::runtime::{Engine, Output};
use opsloop_engine::time::{PartitionId, WatermarkConfig};

const TABLE: &str = "db_metrics";
const METRIC: &str = "db_query_latency_ms";
const TOPIC: &str = "telemetry.metrics";
const PARTITIONS: usize = 4;
/// 2026-11-18T00:00:00Z: the data starts on a minute boundary.
const START_US: i64 = 1_795_003_200_000_000;
const SECOND_US: i64 = 1_000_000;
const MINUTE_US: i64 = 60 * SECOND_US;
/// The detector alerts on a p99 above this many milliseconds.
const THRESHOLD_MS: u32 = 250;
/// Event time of the state run: two windows fill up and close.
const STATE_SECONDS: usize = 130;
const THROUGHPUT_GOAL: f64 = 2e6;
const STATE_GOAL_BYTES: usize = 2048;
const LATENCY_GOAL_MS: f64 = 50.0;

/// The quantile function the detector computes its p99 with.
#[derive(Clone, Copy)]
struct Quantile {
    name: &'static str,
    call: &'static str,
}

const QUANTILES: [Quantile; 2] = [
    Quantile {
        name: "approx_percentile_cont",
        call: "approx_percentile_cont(value, 0.99)",
    },
    Quantile {
        name: "hdr_quantile",
        call: "hdr_quantile(value, 0.99)",
    },
];

/// The detector's SQL with `window` as the window expression.
fn query(quantile: Quantile, window: &str) -> String {
    let p99 = quantile.call;
    format!(
        "SELECT entity, {window} AS window, {p99} AS p99, avg(value) AS mean, \
         count(*) AS samples FROM {TABLE} WHERE name = '{METRIC}' \
         GROUP BY entity, window HAVING {p99} > {THRESHOLD_MS}"
    )
}

fn engine(quantile: Quantile) -> Engine {
    let stream =
        StreamTable::new(TABLE, metric_samples_schema(), "time").expect("the stream table");
    let sql = query(quantile, "tumble(interval '1 minute')");
    let plan = DetectorPlan::from_sql("bench", &sql, &session_context(), &[stream])
        .unwrap_or_else(|e| panic!("the bench detector plans: {e}"));
    let detector =
        Detector::new(Arc::new(plan), DetectorOptions::default()).expect("the bench detector");
    Engine::new(WatermarkConfig::default(), vec![detector])
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// One micro-batch and the partitions its rows came from, each with its largest event time.
struct Micro {
    rows: RecordBatch,
    partitions: Vec<(PartitionId, i64)>,
}

impl Micro {
    /// The same batch `offset_us` later in event time.
    fn shifted(&self, offset_us: i64) -> Micro {
        let index = self.rows.schema().index_of("time").expect("a time column");
        let time = self
            .rows
            .column(index)
            .as_primitive::<TimestampMicrosecondType>();
        let time = time
            .unary::<_, TimestampMicrosecondType>(|t| t + offset_us)
            .with_timezone(TIME_ZONE);
        let mut columns = self.rows.columns().to_vec();
        columns[index] = Arc::new(time);
        Micro {
            rows: RecordBatch::try_new(self.rows.schema(), columns).expect("a shifted batch"),
            partitions: self
                .partitions
                .iter()
                .map(|(partition, max)| (partition.clone(), max + offset_us))
                .collect(),
        }
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Whether `series` runs slow (300-400 ms) during `minute`: about 1 in 100.
fn slow(series: usize, minute: usize) -> bool {
    splitmix64(((series as u64) << 32) | minute as u64).is_multiple_of(100)
}

/// Micro-batches of `series` series sampled once a second for `seconds` seconds of event time,
/// series by series within each second.
struct Samples {
    entities: Vec<String>,
    partitions: Vec<PartitionId>,
    seconds: usize,
    batch_rows: usize,
    /// The next sample to generate.
    second: usize,
    series: usize,
    random: u64,
}

impl Samples {
    fn new(series: usize, seconds: usize, batch_rows: usize) -> Self {
        Samples {
            entities: (0..series).map(|s| format!("db-{s:06}")).collect(),
            partitions: (0..PARTITIONS)
                .map(|p| PartitionId::new(TOPIC, p as i32))
                .collect(),
            seconds,
            batch_rows,
            second: 0,
            series: 0,
            random: 0x2545_f491_4f6c_dd1d,
        }
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        (self.random >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Iterator for Samples {
    type Item = Micro;

    fn next(&mut self) -> Option<Micro> {
        if self.second >= self.seconds {
            return None;
        }
        let capacity = self.batch_rows;
        let mut entity = StringBuilder::with_capacity(capacity, capacity * 9);
        let mut name = StringBuilder::with_capacity(capacity, capacity * METRIC.len());
        let mut labels = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new())
            .with_keys_field(Arc::new(Field::new("keys", DataType::Utf8, false)))
            .with_values_field(Arc::new(Field::new("values", DataType::Utf8, false)));
        let mut value = Float64Builder::with_capacity(capacity);
        let mut time =
            TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone(TIME_ZONE);
        let mut source = StringBuilder::with_capacity(capacity, capacity * 5);
        let mut max_time = [None::<i64>; PARTITIONS];
        let mut rows = 0;
        while rows < self.batch_rows && self.second < self.seconds {
            let series = self.series;
            let t = START_US + self.second as i64 * SECOND_US + (series % 1000) as i64 * 1000;
            let base = if slow(series, self.second / 60) {
                300.0
            } else {
                5.0
            };
            let v = base + 100.0 * self.uniform();
            entity.append_value(&self.entities[series]);
            name.append_value(METRIC);
            labels.append(true).expect("an empty label map");
            value.append_value(v);
            time.append_value(t);
            source.append_value("bench");
            let max = &mut max_time[series % PARTITIONS];
            *max = Some(max.map_or(t, |m| m.max(t)));
            rows += 1;
            self.series += 1;
            if self.series == self.entities.len() {
                self.series = 0;
                self.second += 1;
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(entity.finish()),
            Arc::new(name.finish()),
            Arc::new(labels.finish()),
            Arc::new(value.finish()),
            Arc::new(time.finish()),
            Arc::new(source.finish()),
        ];
        Some(Micro {
            rows: RecordBatch::try_new(metric_samples_schema(), columns)
                .expect("a batch in the metric-samples layout"),
            partitions: self
                .partitions
                .iter()
                .zip(max_time)
                .filter_map(|(partition, max)| Some((partition.clone(), max?)))
                .collect(),
        })
    }
}

/// Feeds one micro-batch, timing the call.
fn feed(engine: &mut Engine, micro: &Micro) -> (Output, Duration) {
    let started = Instant::now();
    let output = engine
        .process(TABLE, &micro.rows, &micro.partitions, started)
        .expect("the engine processes a batch");
    (output, started.elapsed())
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

fn millis(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// What a streaming run measured.
struct Streamed {
    rate: f64,
    alerts: usize,
    windows_fired: usize,
    /// Alerting (entity, window start) of the data set's windows that closed.
    alerting: BTreeSet<(String, i64)>,
    /// Windows of the data set ending at or before this closed.
    closed_to_us: i64,
    latency_us: Histogram<u64>,
}

/// Throughput and latency: `data` (spanning `span_us` of event time) fed `replays` times.
fn stream(quantile: Quantile, data: &[Micro], span_us: i64, replays: usize) -> Streamed {
    let mut engine = engine(quantile);
    let mut latency_us =
        Histogram::new_with_bounds(1, 600_000_000, 3).expect("latency histogram bounds");
    let (mut rows, mut busy, mut alerts, mut windows_fired) = (0, Duration::ZERO, 0, 0);
    let mut alerting = BTreeSet::new();
    for replay in 0..replays {
        let offset = replay as i64 * span_us;
        for micro in data {
            let micro = micro.shifted(offset);
            let (output, elapsed) = feed(&mut engine, &micro);
            rows += micro.rows.num_rows();
            busy += elapsed;
            if output.windows_fired > 0 {
                latency_us.saturating_record_n(micros(elapsed), output.windows_fired as u64);
            }
            windows_fired += output.windows_fired;
            alerts += output.alerts.len();
            alerting.extend(
                output
                    .alerts
                    .into_iter()
                    .filter(|alert| alert.window_start_us < START_US + span_us)
                    .map(|alert| (alert.entity, alert.window_start_us)),
            );
        }
        println!(
            "  {:<24} replay {}/{replays}: samples at {}, {windows_fired} windows fired, \
             {alerts} alerts",
            quantile.name,
            replay + 1,
            format_rate(rows as f64 / busy.as_secs_f64()),
        );
    }
    assert!(
        alerts > 0,
        "{}: no alert came out of the streaming path",
        quantile.name
    );
    // Windows of the data set that the streaming run did not close yet are not compared.
    let closed_to_us = engine.status().watermark_us.unwrap_or(i64::MIN);
    alerting.retain(|(_, start)| start + MINUTE_US <= closed_to_us);
    Streamed {
        rate: rows as f64 / busy.as_secs_f64(),
        alerts,
        windows_fired,
        alerting,
        closed_to_us,
        latency_us,
    }
}

/// What the batch baseline measured.
struct Batched {
    rate: f64,
    elapsed: Duration,
    alerting: BTreeSet<(String, i64)>,
}

/// The same query over the whole data set with DataFusion on one target partition.
async fn batch(quantile: Quantile, data: &[Micro]) -> Batched {
    let context = session_context();
    context
        .sql("SET datafusion.execution.target_partitions = 1")
        .await
        .expect("SET plans")
        .collect()
        .await
        .expect("SET runs");
    let rows: Vec<RecordBatch> = data.iter().map(|micro| micro.rows.clone()).collect();
    let samples: usize = rows.iter().map(RecordBatch::num_rows).sum();
    let table = MemTable::try_new(metric_samples_schema(), vec![rows]).expect("a MemTable");
    context
        .register_table(TABLE, Arc::new(table))
        .expect("the table registers");
    let sql = query(
        quantile,
        &format!("CAST(time AS BIGINT) / {MINUTE_US} * {MINUTE_US}"),
    );
    let started = Instant::now();
    let batches = context
        .sql(&sql)
        .await
        .unwrap_or_else(|e| panic!("the batch query plans: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("the batch query runs: {e}"));
    let elapsed = started.elapsed();
    let mut alerting = BTreeSet::new();
    for batch in &batches {
        let entities = cast(batch.column(0), &DataType::Utf8).expect("entity as text");
        let starts = cast(batch.column(1), &DataType::Int64).expect("window as µs");
        let starts = starts.as_primitive::<Int64Type>();
        for (entity, start) in entities.as_string::<i32>().iter().zip(starts.iter()) {
            let (Some(entity), Some(start)) = (entity, start) else {
                panic!("a null entity or window in the batch result");
            };
            alerting.insert((entity.to_owned(), start));
        }
    }
    Batched {
        rate: samples as f64 / elapsed.as_secs_f64(),
        elapsed,
        alerting,
    }
}

/// What the state run measured at its peak.
struct State {
    series: usize,
    peak_bytes: usize,
    peak_groups: usize,
    peak_windows: usize,
    /// Whether the run stopped at the state cap before the windows filled.
    capped: bool,
    rate: f64,
    max_fire_us: u64,
}

impl State {
    /// Peak state bytes per series; a lower bound when capped (every series seen holds at
    /// least one group then, and its state only grows with more samples).
    fn per_series(&self) -> usize {
        if self.capped {
            self.peak_bytes / self.peak_groups.max(1)
        } else {
            self.peak_bytes / self.series.max(1)
        }
    }

    fn describe(&self) -> String {
        if self.capped {
            format!(">= {} (capped)", self.per_series())
        } else {
            self.per_series().to_string()
        }
    }
}

/// Window state at `series` series: the peak of the engine's state bytes. Stops once the
/// state passes `cap_bytes`.
fn state(quantile: Quantile, series: usize, batch_rows: usize, cap_bytes: usize) -> State {
    let mut engine = engine(quantile);
    let mut peak = State {
        series,
        peak_bytes: 0,
        peak_groups: 0,
        peak_windows: 0,
        capped: false,
        rate: 0.0,
        max_fire_us: 0,
    };
    let (mut rows, mut busy, mut alerts) = (0, Duration::ZERO, 0);
    for micro in Samples::new(series, STATE_SECONDS, batch_rows) {
        let (output, elapsed) = feed(&mut engine, &micro);
        rows += micro.rows.num_rows();
        busy += elapsed;
        alerts += output.alerts.len();
        let status = engine.status();
        if status.state_bytes > peak.peak_bytes {
            peak.peak_bytes = status.state_bytes;
            peak.peak_groups = status.active_groups;
            peak.peak_windows = status.open_windows;
        }
        if status.state_bytes > cap_bytes {
            println!(
                "  {:<24} stopped after {rows} samples: state {:.1} MB passed \
                 OPSLOOP_BENCH_STATE_MAX_MB",
                quantile.name,
                status.state_bytes as f64 / 1e6,
            );
            peak.capped = true;
            break;
        }
        if output.windows_fired > 0 {
            peak.max_fire_us = peak.max_fire_us.max(micros(elapsed));
            println!(
                "  {:<24} {series} series: {} window(s) fired after {rows} samples, \
                 {alerts} alerts so far, peak state {:.1} MB",
                quantile.name,
                output.windows_fired,
                peak.peak_bytes as f64 / 1e6,
            );
        }
    }
    peak.rate = rows as f64 / busy.as_secs_f64();
    peak
}

/// One quantile function's figures, for the summary.
struct Outcome {
    streamed: Streamed,
    batched: Batched,
    /// Alerting rows of the batch baseline over the windows the streaming run closed.
    batch_closed: usize,
    state: State,
}

/// "met" or "MISSED".
fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

fn main() {
    let started = Instant::now();
    let series = env_usize("OPSLOOP_BENCH_SERIES", 10_000);
    let minutes = env_usize("OPSLOOP_BENCH_MINUTES", 10);
    let replays = env_usize("OPSLOOP_BENCH_REPLAYS", 5).max(1);
    let state_series = env_usize("OPSLOOP_BENCH_STATE_SERIES", 100_000);
    let batch_rows = env_usize("OPSLOOP_BENCH_BATCH_ROWS", 8_192);
    let state_cap_mb = env_usize("OPSLOOP_BENCH_STATE_MAX_MB", 4_096);

    let generating = Instant::now();
    let data: Vec<Micro> = Samples::new(series, minutes * 60, batch_rows).collect();
    let samples: usize = data.iter().map(|m| m.rows.num_rows()).sum();
    let span_us = minutes as i64 * MINUTE_US;
    println!(
        "engine, embedded: {series} series x {minutes} min at 1 sample/s = {samples} samples in \
         {} batches of {batch_rows}, generated in {:.1} s; replayed {replays} times",
        data.len(),
        generating.elapsed().as_secs_f64()
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime");
    let mut results = Vec::new();
    for quantile in QUANTILES {
        println!("\n{}: streaming, one core", quantile.name);
        let streamed = stream(quantile, &data, span_us, replays);
        let latency = &streamed.latency_us;
        println!(
            "  throughput: samples at {} (window -> SQL -> alerts); {} windows fired, {} alerts",
            format_rate(streamed.rate),
            streamed.windows_fired,
            streamed.alerts,
        );
        println!(
            "  alert latency (call that fired the window, {} windows): p50 {:.2} ms, \
             p99 {:.2} ms, max {:.2} ms",
            latency.len(),
            millis(latency.value_at_quantile(0.5)),
            millis(latency.value_at_quantile(0.99)),
            millis(latency.max()),
        );

        println!(
            "{}: batch baseline, DataFusion, one partition",
            quantile.name
        );
        let batched = runtime.block_on(batch(quantile, &data));
        let closed: BTreeSet<(String, i64)> = batched
            .alerting
            .iter()
            .filter(|(_, start)| start + MINUTE_US <= streamed.closed_to_us)
            .cloned()
            .collect();
        println!(
            "  batch: {samples} samples in {:.2} s, at {}; streaming / batch = {:.2}",
            batched.elapsed.as_secs_f64(),
            format_rate(batched.rate),
            streamed.rate / batched.rate,
        );
        println!(
            "  alerting (entity, window) rows over closed windows: streaming {}, batch {} \
             ({} over every window of the data set)",
            streamed.alerting.len(),
            closed.len(),
            batched.alerting.len(),
        );
        assert_eq!(
            streamed.alerting, closed,
            "{}: streaming and batch disagree on which (entity, window) rows alert",
            quantile.name
        );

        println!("{}: state at {state_series} series", quantile.name);
        let state = state(quantile, state_series, batch_rows, state_cap_mb << 20);
        println!(
            "  peak state {:.1} MB = {} bytes per series ({} active groups in {} open windows, \
             {} bytes per group); samples at {}; slowest call that fired a window {:.1} ms",
            state.peak_bytes as f64 / 1e6,
            state.describe(),
            state.peak_groups,
            state.peak_windows,
            state.peak_bytes / state.peak_groups.max(1),
            format_rate(state.rate),
            millis(state.max_fire_us),
        );
        results.push(Outcome {
            streamed,
            batched,
            batch_closed: closed.len(),
            state,
        });
    }

    println!(
        "\nsummary ({series} series, batches of {batch_rows}; state at {state_series} series)"
    );
    println!(
        "{:<44} {:>26} {:>26}   goal",
        "", QUANTILES[0].name, QUANTILES[1].name
    );
    let row = |label: &str, cells: Vec<String>, goal: &str| {
        println!("{label:<44} {:>26} {:>26}   {goal}", cells[0], cells[1]);
    };
    let cells = |f: &dyn Fn(&Outcome) -> String| results.iter().map(f).collect::<Vec<_>>();
    row(
        "streaming throughput (samples/s, one core)",
        cells(&|o| {
            let rate = o.streamed.rate;
            format!("{} {}", format_rate(rate), verdict(rate >= THROUGHPUT_GOAL))
        }),
        ">= 2 M/s",
    );
    row(
        "batch DataFusion (samples/s, one partition)",
        cells(&|o| format_rate(o.batched.rate)),
        "",
    );
    row(
        "streaming / batch",
        cells(&|o| format!("{:.2}", o.streamed.rate / o.batched.rate)),
        "",
    );
    row(
        "alerts produced (streaming, all replays)",
        cells(&|o| o.streamed.alerts.to_string()),
        "> 0",
    );
    row(
        "alerting rows, closed windows: stream / batch",
        cells(&|o| format!("{} / {}", o.streamed.alerting.len(), o.batch_closed)),
        "equal",
    );
    row(
        &format!("state bytes per series at {state_series}"),
        cells(&|o| {
            let met = o.state.per_series() <= STATE_GOAL_BYTES;
            format!("{} {}", o.state.describe(), verdict(met))
        }),
        "<= 2048",
    );
    row(
        "alert latency p50 / p99 / max (ms)",
        cells(&|o| {
            let latency = &o.streamed.latency_us;
            let p99 = millis(latency.value_at_quantile(0.99));
            format!(
                "{:.1} / {p99:.1} / {:.1} {}",
                millis(latency.value_at_quantile(0.5)),
                millis(latency.max()),
                verdict(p99 < LATENCY_GOAL_MS)
            )
        }),
        "p99 < 50",
    );
    println!(
        "\nthe engine bench took {:.0} s",
        started.elapsed().as_secs_f64()
    );
}
