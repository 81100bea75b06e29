//! The fleet simulator: determinism, record shapes, the effect of every fault kind against the
//! same fleet without faults, ground truth, the fault syntax and config parsing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use opsloop_connectors::generate::{
    ANOMALOUS_USER, CATEGORICAL_FEATURE, DB_METRICS, DCGM_FIELDS, DEMO_RUN, DEVICE_TYPES,
    FAULT_SYNTAX, FaultKind, FaultSpec, FaultSpecError, Fleet, FleetConfig, FleetError,
    GPU_MODEL_NAME, MODEL_METRICS, TargetKind, Tick, gpu_uuid,
};
use opsloop_schemas::telemetry::LogRecord;
use opsloop_schemas::{AvroRecord, Codec, SchemaRegistry, WireFormat};

const INTERVAL_S: u64 = 10;

/// A small fleet: four databases, two hosts of two GPUs, two models of four numeric features.
fn small_config() -> FleetConfig {
    FleetConfig {
        databases: 4,
        gpu_hosts: 2,
        gpus_per_host: 2,
        models: 2,
        features_per_model: 4,
        feature_samples_per_tick: 5,
        sample_interval: Duration::from_secs(INTERVAL_S),
        seed: 7,
        ..FleetConfig::default()
    }
}

fn run(config: FleetConfig, ticks: usize) -> Vec<Tick> {
    let mut fleet = Fleet::new(config).expect("valid config");
    (0..ticks).map(|_| fleet.tick()).collect()
}

fn metric(tick: &Tick, entity: &str, name: &str) -> f64 {
    tick.metrics
        .iter()
        .find(|batch| batch.entity == entity)
        .and_then(|batch| batch.samples.iter().find(|s| s.name == name))
        .unwrap_or_else(|| panic!("no {name} for {entity}"))
        .value
}

fn gpu_field(tick: &Tick, host: usize, index: usize, field: &str) -> f64 {
    let uuid = gpu_uuid(host, index);
    tick.gpus
        .iter()
        .find(|gpu| gpu.gpu_uuid == uuid)
        .and_then(|gpu| gpu.fields.get(field))
        .copied()
        .unwrap_or_else(|| panic!("no {field} for {uuid}"))
}

/// The values of a numeric feature of a model in one tick.
fn feature_values<'t>(
    tick: &'t Tick,
    model: &'t str,
    feature: &'t str,
) -> impl Iterator<Item = Option<f64>> + 't {
    tick.features
        .iter()
        .filter(move |f| f.model_id == model && f.feature == feature)
        .map(|f| f.value)
}

fn mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, count) = values
        .into_iter()
        .fold((0.0, 0.0), |(sum, count), v| (sum + v, count + 1.0));
    assert!(count > 0.0, "mean of nothing");
    sum / count
}

/// One fault's run next to the same fleet's run without it.
struct Comparison {
    clean: Vec<Tick>,
    faulted: Vec<Tick>,
    /// Ticks inside the fault window.
    window: Range<usize>,
}

/// Faults start 5 minutes in and last 6, so ticks 30..66 lie inside; the run has 80 ticks.
const FAULT_TIMING: &str = ":+5m/6m";
const WINDOW: Range<usize> = 30..66;
const RUN_TICKS: usize = 80;

impl Comparison {
    fn new(fault: &str) -> Comparison {
        let mut config = small_config();
        config.faults = vec![fault.parse().expect("a valid fault")];
        Comparison {
            clean: run(small_config(), RUN_TICKS),
            faulted: run(config, RUN_TICKS),
            window: WINDOW,
        }
    }

    /// The second half of the window, after every onset ramp.
    fn developed(&self) -> Range<usize> {
        (self.window.start + self.window.end) / 2..self.window.end
    }

    /// Mean of `signal` over the developed part of the window: (with the fault, without).
    fn means(&self, signal: impl Fn(&Tick) -> f64) -> (f64, f64) {
        let range = self.developed();
        (
            mean(self.faulted[range.clone()].iter().map(&signal)),
            mean(self.clean[range].iter().map(&signal)),
        )
    }

    /// Asserts that the developed mean of `signal` is at least `factor` times the clean one.
    fn rises(&self, what: &str, factor: f64, signal: impl Fn(&Tick) -> f64) {
        let (faulted, clean) = self.means(signal);
        assert!(
            faulted >= factor * clean,
            "{what}: {faulted} with the fault is not {factor}× the clean {clean}"
        );
    }

    /// Asserts that the developed mean of `signal` is at most `factor` times the clean one.
    fn falls(&self, what: &str, factor: f64, signal: impl Fn(&Tick) -> f64) {
        let (faulted, clean) = self.means(signal);
        assert!(
            faulted <= factor * clean,
            "{what}: {faulted} with the fault is not below {factor}× the clean {clean}"
        );
    }

    /// Asserts that the developed mean of `signal` exceeds the clean one by at least `delta`
    /// (or falls short of it, for a negative `delta`).
    fn shifts(&self, what: &str, delta: f64, signal: impl Fn(&Tick) -> f64) {
        let (faulted, clean) = self.means(signal);
        let moved = faulted - clean;
        assert!(
            if delta >= 0.0 {
                moved >= delta
            } else {
                moved <= delta
            },
            "{what}: moved by {moved} ({clean} -> {faulted}), expected at least {delta}"
        );
    }

    /// Log lines of the faulted run that the clean run lacks and that match `wanted`, inside
    /// and outside the window.
    fn logs(&self, wanted: impl Fn(&LogRecord) -> bool) -> (usize, usize) {
        let (mut inside, mut outside) = (0, 0);
        for (i, (tick, clean)) in self.faulted.iter().zip(&self.clean).enumerate() {
            let count = tick
                .logs
                .iter()
                .filter(|l| !clean.logs.contains(l) && wanted(l))
                .count();
            if self.window.contains(&i) {
                inside += count;
            } else {
                outside += count;
            }
        }
        (inside, outside)
    }

    /// Asserts that the fault adds lines matching `wanted` in the window and nowhere else.
    fn logs_only_inside(&self, what: &str, wanted: impl Fn(&LogRecord) -> bool) {
        let (inside, outside) = self.logs(wanted);
        assert!(inside > 0, "no {what} lines in the window");
        assert_eq!(outside, 0, "{what} lines outside the window");
    }
}

fn latency(tick: &Tick) -> f64 {
    metric(tick, "db-1", "db_query_latency_ms")
}

fn logs_with(body: &'static str) -> impl Fn(&LogRecord) -> bool {
    move |line| line.body.contains(body)
}

/// The signals each kind must move, on `db-1`, `model-1` (whose features live on `db-1`) or
/// `gpu-host-1` (which shares its machine with `db-1`).
fn check_kind(kind: FaultKind, c: &Comparison) {
    let db = |name: &'static str| move |t: &Tick| metric(t, "db-1", name);
    let host_gpus =
        |field: &'static str| move |t: &Tick| mean((0..2).map(|g| gpu_field(t, 1, g, field)));
    match kind {
        FaultKind::LatencySpike => {
            c.rises("mean latency", 3.0, latency);
            c.rises("p99 latency", 5.0, db("db_query_latency_p99_ms"));
            c.logs_only_inside("slow query", |l| {
                l.entity == "db-1"
                    && l.attributes.contains_key("db.query.text")
                    && l.body.starts_with("duration")
                    && l.attributes.get("db.user").is_some_and(|u| u == "app")
                    && !l.attributes.contains_key("db.plan")
            });
        }
        FaultKind::IndexDegradation => {
            c.rises("sequential scans", 6.0, db("db_seq_scans_per_s"));
            c.falls("index scans", 0.3, db("db_idx_scans_per_s"));
            c.rises("latency", 2.0, latency);
            c.logs_only_inside("seq scan", |l| {
                l.attributes
                    .get("db.plan")
                    .is_some_and(|p| p.starts_with("Seq Scan"))
            });
        }
        FaultKind::IndexBloat => {
            c.shifts("bloat ratio", 0.8, db("db_index_bloat_ratio"));
            c.rises("dead tuples", 3.0, db("db_dead_tuples"));
            c.rises("latency", 1.15, latency);
            c.logs_only_inside("autovacuum", logs_with("automatic vacuum"));
        }
        FaultKind::RunawayQuery => {
            c.rises("longest query", 20.0, db("db_longest_query_s"));
            c.shifts("lock waits", 15.0, db("db_lock_waits"));
            c.rises("p99 latency", 2.0, db("db_query_latency_p99_ms"));
            c.logs_only_inside("lock wait", logs_with("still waiting for ShareLock"));
        }
        FaultKind::StaleCache => {
            c.shifts("cache hit ratio", -0.15, db("db_cache_hit_ratio"));
            c.rises("latency", 1.5, latency);
            let ages: Vec<f64> = c.faulted[c.window.clone()]
                .iter()
                .map(db("db_matview_age_s"))
                .collect();
            assert!(
                ages.windows(2)
                    .all(|w| (w[1] - w[0] - INTERVAL_S as f64).abs() < 1e-6),
                "views refreshed during the fault: {ages:?}"
            );
            assert!(ages.last().is_some_and(|&age| age >= 350.0), "{ages:?}");
            c.logs_only_inside("refresh timeout", logs_with("statement timeout"));
        }
        FaultKind::ConnectionExhaustion => {
            for tick in &c.faulted[c.developed()] {
                assert_eq!(
                    metric(tick, "db-1", "db_connections_active"),
                    metric(tick, "db-1", "db_connections_max"),
                    "connections not exhausted"
                );
            }
            c.rises("active connections", 2.0, db("db_connections_active"));
            c.shifts("query errors", 4.0, db("db_query_errors_per_s"));
            c.logs_only_inside("too many clients", logs_with("too many clients"));
        }
        FaultKind::MemoryPressure => {
            c.shifts("memory", 20.0, db("db_memory_utilization_percent"));
            c.shifts("cache hit ratio", -0.03, db("db_cache_hit_ratio"));
            c.logs_only_inside("out of memory", logs_with("out of memory"));
        }
        FaultKind::CpuSaturation => {
            c.shifts("CPU", 40.0, db("db_cpu_utilization_percent"));
            c.rises("latency", 1.8, latency);
            c.shifts("replication lag", 2.0, db("db_replication_lag_s"));
        }
        FaultKind::DiskGrowth => {
            c.shifts("disk used", 15e9, db("db_disk_used_bytes"));
            c.logs_only_inside("checkpoint", logs_with("checkpoints are occurring"));
        }
        FaultKind::SecurityAnomaly => {
            c.rises("rows read", 10.0, db("db_rows_read_per_s"));
            c.logs_only_inside("unusual user", |l| {
                l.attributes
                    .get("db.user")
                    .is_some_and(|u| u == ANOMALOUS_USER)
                    && l.attributes
                        .get("db.rows")
                        .and_then(|rows| rows.parse::<u64>().ok())
                        .is_some_and(|rows| rows > 1_000_000)
            });
        }
        FaultKind::DataDrift => {
            // The drifting feature moves by more than one baseline standard deviation.
            let first = "clicks_7d";
            let values = |ticks: &[Tick]| -> Vec<f64> {
                ticks
                    .iter()
                    .flat_map(|t| feature_values(t, "model-1", first))
                    .map(|v| v.expect("drift keeps values"))
                    .collect()
            };
            let clean = values(&c.clean[c.developed()]);
            let faulted = values(&c.faulted[c.developed()]);
            let clean_mean = mean(clean.iter().copied());
            let sd = mean(clean.iter().map(|v| (v - clean_mean).powi(2))).sqrt();
            let shift = mean(faulted.iter().copied()) - clean_mean;
            assert!(shift > sd, "{first} moved {shift}, less than its sd {sd}");
            let tv_share = |ticks: &[Tick]| {
                mean(ticks.iter().flat_map(|t| {
                    t.features
                        .iter()
                        .filter(|f| f.model_id == "model-1" && f.feature == CATEGORICAL_FEATURE)
                        .map(|f| f64::from(u8::from(f.category.as_deref() == Some("tv"))))
                }))
            };
            let (before, after) = (
                tv_share(&c.clean[c.developed()]),
                tv_share(&c.faulted[c.developed()]),
            );
            assert!(
                after > 0.15 && before < 0.08,
                "tv share {before} -> {after}"
            );
            c.shifts("accuracy", -0.05, |t| {
                metric(t, "model-1", "model_accuracy")
            });
            c.rises("feature store latency", 1.4, latency);
        }
        FaultKind::SchemaMismatch => {
            // model-1's numeric features: clicks_7d, basket_value_usd, days_since_signup,
            // embedding_norm; the last goes missing.
            let missing = "embedding_norm";
            for (i, tick) in c.faulted.iter().enumerate() {
                let values: Vec<Option<f64>> = feature_values(tick, "model-1", missing).collect();
                assert_eq!(values.len(), 5);
                let all_null = values.iter().all(Option::is_none);
                assert_eq!(all_null, c.window.contains(&i), "tick {i}: {values:?}");
            }
            c.shifts("model error rate", 0.2, |t| {
                metric(t, "model-1", "model_error_rate")
            });
            c.shifts("query errors", 3.0, db("db_query_errors_per_s"));
            c.logs_only_inside("feature not found", |l| {
                l.entity == "model-1" && l.body == format!("feature not found: {missing}")
            });
            c.logs_only_inside("model schema error", |l| {
                l.entity == "model-1" && l.body.starts_with("model schema error")
            });
            c.logs_only_inside("query execution error", |l| {
                l.entity == "db-1" && l.body.contains("does not exist")
            });
        }
        FaultKind::GpuUnderutilization => {
            c.falls("GPU utilization", 0.4, host_gpus("DCGM_FI_DEV_GPU_UTIL"));
            c.falls(
                "engine activity",
                0.4,
                host_gpus("DCGM_FI_PROF_GR_ENGINE_ACTIVE"),
            );
            c.shifts("host database CPU", 25.0, db("db_cpu_utilization_percent"));
            c.shifts(
                "host database memory",
                8.0,
                db("db_memory_utilization_percent"),
            );
            // Host 0 is untouched.
            let (faulted, clean) = c.means(|t| gpu_field(t, 0, 0, "DCGM_FI_DEV_GPU_UTIL"));
            assert_eq!(faulted, clean);
        }
        FaultKind::GpuThermal => {
            c.shifts("temperature", 20.0, host_gpus("DCGM_FI_DEV_GPU_TEMP"));
            c.shifts("power", 100.0, host_gpus("DCGM_FI_DEV_POWER_USAGE"));
            let last = &c.faulted[c.window.end - 1];
            assert_eq!(gpu_field(last, 1, 0, "DCGM_FI_DEV_XID_ERRORS"), 62.0);
            assert!(
                c.clean
                    .iter()
                    .all(|t| gpu_field(t, 1, 0, "DCGM_FI_DEV_XID_ERRORS") == 0.0)
            );
            c.logs_only_inside("XID", logs_with("NVRM: Xid"));
        }
    }
}

fn target(kind: FaultKind) -> &'static str {
    match kind.target_kind() {
        TargetKind::Database => "db-1",
        TargetKind::Model => "model-1",
        TargetKind::Gpu => "gpu-host-1",
    }
}

#[test]
fn every_kind_moves_its_signals_inside_its_window_and_nothing_outside() {
    for kind in FaultKind::ALL {
        let c = Comparison::new(&format!("{kind}@{}{FAULT_TIMING}", target(kind)));
        for (i, (faulted, clean)) in c.faulted.iter().zip(&c.clean).enumerate() {
            if !c.window.contains(&i) {
                assert_eq!(
                    faulted.metrics, clean.metrics,
                    "{kind}: metrics at tick {i}"
                );
                assert_eq!(faulted.gpus, clean.gpus, "{kind}: GPUs at tick {i}");
                assert_eq!(
                    faulted.features, clean.features,
                    "{kind}: features at tick {i}"
                );
            }
        }
        assert_ne!(
            c.faulted[c.window.clone()],
            c.clean[c.window.clone()],
            "{kind} changed nothing"
        );
        check_kind(kind, &c);
    }
}

#[test]
fn magnitude_scales_the_effect() {
    let p99 = |fault: &str| {
        let c = Comparison::new(fault);
        let (faulted, clean) = c.means(|t| metric(t, "db-1", "db_query_latency_p99_ms"));
        faulted / clean
    };
    let (one, three) = (
        p99("latency_spike@db-1:+5m/6m"),
        p99("latency_spike@db-1:+5m/6m*3"),
    );
    assert!(
        three > 2.0 * one,
        "magnitude 3 gives {three}×, magnitude 1 {one}×"
    );
    let half = p99("latency_spike@db-1:+5m/6m*0.5");
    assert!(half < one && half > 1.5, "magnitude 0.5 gives {half}×");
}

#[test]
fn drifted_model_loses_accuracy_only_after_its_inputs_shift() {
    let c = Comparison::new("data_drift@model-1:+5m/6m");
    // The accuracy lag is a quarter of the window (90 s): nine ticks.
    for i in c.window.start..c.window.start + 9 {
        let (faulted, clean) = (
            metric(&c.faulted[i], "model-1", "model_accuracy"),
            metric(&c.clean[i], "model-1", "model_accuracy"),
        );
        assert_eq!(faulted, clean, "accuracy moved at tick {i}, before the lag");
    }
    let shifted_early = (c.window.start + 3..c.window.start + 9).any(|i| {
        feature_values(&c.faulted[i], "model-1", "clicks_7d").ne(feature_values(
            &c.clean[i],
            "model-1",
            "clicks_7d",
        ))
    });
    assert!(shifted_early, "features did not move before accuracy");
    let end = c.window.end - 1;
    assert!(
        metric(&c.faulted[end], "model-1", "model_accuracy")
            < metric(&c.clean[end], "model-1", "model_accuracy") - 0.05
    );
}

#[test]
fn same_config_gives_the_same_records_and_another_seed_does_not() {
    let ticks = 40;
    let first = run(FleetConfig::demo(), ticks);
    assert_eq!(first, run(FleetConfig::demo(), ticks));
    let other = run(
        FleetConfig {
            seed: 43,
            ..FleetConfig::demo()
        },
        ticks,
    );
    assert_ne!(first[0].metrics, other[0].metrics);
    assert_ne!(first[0].gpus, other[0].gpus);
    assert_ne!(first[0].features, other[0].features);
    // Identities do not depend on the seed, so faults can name them.
    assert_eq!(
        first[0]
            .gpus
            .iter()
            .map(|g| &g.gpu_uuid)
            .collect::<Vec<_>>(),
        other[0]
            .gpus
            .iter()
            .map(|g| &g.gpu_uuid)
            .collect::<Vec<_>>()
    );
}

#[test]
fn tick_into_rewrites_any_tick_into_what_tick_returns() {
    let mut fresh = Fleet::new(FleetConfig::demo()).expect("demo");
    let mut reusing = Fleet::new(FleetConfig::demo()).expect("demo");
    // Start from a tick of a differently shaped fleet, so nothing lines up at first.
    let mut tick = run(
        FleetConfig {
            databases: 11,
            models: 1,
            gpu_hosts: 3,
            seed: 5,
            ..FleetConfig::default()
        },
        1,
    )
    .remove(0);
    for _ in 0..120 {
        reusing.tick_into(&mut tick);
        assert_eq!(tick, fresh.tick());
    }
}

#[test]
fn records_have_the_documented_shape() {
    let config = small_config();
    let mut fleet = Fleet::new(config.clone()).expect("valid");
    let start = config.start_time_us;
    let interval_us = 10_000_000;
    for n in 0..3 {
        let tick = fleet.tick();
        assert_eq!(tick.time_us, start + n * interval_us);
        let entities: Vec<&str> = tick.metrics.iter().map(|b| b.entity.as_str()).collect();
        assert_eq!(
            entities,
            ["db-0", "db-1", "db-2", "db-3", "model-0", "model-1"]
        );
        for batch in &tick.metrics {
            let names: Vec<&str> = batch.samples.iter().map(|s| s.name.as_str()).collect();
            if batch.entity.starts_with("db-") {
                assert_eq!(names, DB_METRICS);
                assert_eq!(batch.source, "postgres");
                assert!(
                    batch
                        .samples
                        .iter()
                        .all(|s| s.labels.contains_key("cluster"))
                );
            } else {
                assert_eq!(names, MODEL_METRICS);
                assert_eq!(batch.source, "model-server");
                let db = &batch.samples[0].labels["db"];
                assert_eq!(
                    db,
                    if batch.entity == "model-0" {
                        "db-0"
                    } else {
                        "db-1"
                    }
                );
            }
            assert!(batch.samples.iter().all(|s| s.time_us == tick.time_us));
            assert!(batch.samples.iter().all(|s| s.value.is_finite()));
        }
        assert_eq!(tick.gpus.len(), 4);
        for (i, gpu) in tick.gpus.iter().enumerate() {
            let (host, index) = (i / 2, i % 2);
            assert_eq!(gpu.gpu_uuid, gpu_uuid(host, index));
            assert_eq!(gpu.hostname, format!("gpu-host-{host}"));
            assert_eq!(gpu.gpu_index, index as i32);
            assert_eq!(gpu.model_name, GPU_MODEL_NAME);
            assert_eq!(gpu.labels["db"], format!("db-{host}"));
            assert!(gpu.pci_bus_id.starts_with("00000000:") && gpu.pci_bus_id.ends_with(":00.0"));
            let fields: BTreeSet<&str> = gpu.fields.keys().map(String::as_str).collect();
            assert_eq!(fields, BTreeSet::from(DCGM_FIELDS));
            let f = |name: &str| gpu.fields[name];
            assert_eq!(
                f("DCGM_FI_DEV_FB_USED") + f("DCGM_FI_DEV_FB_FREE"),
                81_047.0
            );
            assert!((0.0..=100.0).contains(&f("DCGM_FI_DEV_GPU_UTIL")));
            assert!((20.0..=100.0).contains(&f("DCGM_FI_DEV_GPU_TEMP")));
            assert!((50.0..=700.0).contains(&f("DCGM_FI_DEV_POWER_USAGE")));
            assert!((0.0..=1.0).contains(&f("DCGM_FI_PROF_GR_ENGINE_ACTIVE")));
            assert!((0.0..=1.0).contains(&f("DCGM_FI_PROF_DRAM_ACTIVE")));
        }
        // 2 models × (4 numeric + 1 categorical) × 5 values.
        assert_eq!(tick.features.len(), 50);
        for feature in &tick.features {
            assert!((tick.time_us..tick.time_us + interval_us).contains(&feature.time_us));
            if feature.feature == CATEGORICAL_FEATURE {
                assert!(feature.value.is_none());
                let category = feature.category.as_deref().expect("a category");
                assert!(DEVICE_TYPES.contains(&category));
            } else {
                assert!(feature.value.is_some_and(f64::is_finite));
                assert!(feature.category.is_none());
            }
        }
        assert_eq!(
            tick.sample_count(),
            4 * DB_METRICS.len() + 2 * MODEL_METRICS.len() + 4 * DCGM_FIELDS.len() + 50
        );
    }
    for uuid in [gpu_uuid(0, 0), gpu_uuid(3, 7)] {
        let groups: Vec<usize> = uuid["GPU-".len()..].split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{uuid}");
        assert!(
            uuid["GPU-".len()..]
                .chars()
                .all(|c| c == '-' || c.is_ascii_hexdigit())
        );
    }
    assert_ne!(gpu_uuid(0, 1), gpu_uuid(1, 0));
}

#[test]
fn load_follows_a_daily_cycle_that_peaks_in_the_afternoon() {
    let ticks = run(
        FleetConfig {
            sample_interval: Duration::from_secs(3600),
            // Midnight UTC.
            start_time_us: 1_795_003_200_000_000 - 12 * 3_600_000_000,
            ..small_config()
        },
        24,
    );
    let qps: Vec<f64> = ticks.iter().map(|t| metric(t, "db-0", "db_qps")).collect();
    let (peak, _) = qps
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .expect("24 hours");
    let (low, high) = qps
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &q| (lo.min(q), hi.max(q)));
    assert!(high / low > 1.4, "qps only ranges {low}..{high}");
    assert!((11..=19).contains(&peak), "qps peaks at {peak}:00");
}

struct EncodesEverywhere {
    records: usize,
}

impl EncodesEverywhere {
    fn check<T: AvroRecord + Debug + PartialEq>(&mut self, record: &T) {
        for format in WireFormat::ALL {
            let codec = Codec::new(format, Arc::new(SchemaRegistry::builtin()));
            let bytes = codec
                .encode(record)
                .unwrap_or_else(|e| panic!("{record:?} does not encode in {format}: {e}"));
            let back: T = codec.decode(&bytes).expect("decodes");
            if format != WireFormat::Json {
                assert_eq!(&back, record, "{format}");
            }
        }
        self.records += 1;
    }
}

#[test]
fn every_record_encodes_in_every_wire_format() {
    // The demo's busiest stretch: every kind of log line, null feature values, XID errors.
    let mut fleet = Fleet::new(FleetConfig::demo()).expect("demo");
    let mut check = EncodesEverywhere { records: 0 };
    let mut logs = 0;
    let mut null_features = 0;
    for n in 0..180 {
        let tick = fleet.tick();
        if n % 3 != 0 {
            continue;
        }
        tick.metrics.iter().for_each(|r| check.check(r));
        tick.gpus.iter().for_each(|r| check.check(r));
        tick.features.iter().for_each(|r| check.check(r));
        tick.logs.iter().for_each(|r| check.check(r));
        logs += tick.logs.len();
        null_features += tick
            .features
            .iter()
            .filter(|f| f.value.is_none() && f.category.is_none())
            .count();
    }
    assert!(logs > 50, "only {logs} log lines");
    assert!(null_features > 0, "no missing feature values");
    assert!(check.records > 5_000, "only {} records", check.records);
}

#[test]
fn ground_truth_places_the_schedule_in_event_time() {
    let config = FleetConfig {
        faults: vec![
            "latency_spike@db-3:+90s/2m*3".parse().expect("valid"),
            "data_drift@model-1:+10m/5m".parse().expect("valid"),
            "gpu_underutilization@gpu-host-1:+0s/1m"
                .parse()
                .expect("valid"),
            format!("gpu_thermal@{}:+1h/30s", gpu_uuid(0, 1))
                .parse()
                .expect("valid"),
        ],
        ..FleetConfig::default()
    };
    let start = config.start_time_us;
    let fleet = Fleet::new(config).expect("valid");
    let truth = fleet.ground_truth();
    let s = 1_000_000;
    let windows: Vec<(FaultKind, &str, i64, i64, f64)> = truth
        .iter()
        .map(|w| {
            (
                w.kind,
                w.target.as_str(),
                w.start_us - start,
                w.end_us - start,
                w.magnitude,
            )
        })
        .collect();
    let thermal_target = gpu_uuid(0, 1);
    assert_eq!(
        windows,
        [
            (FaultKind::LatencySpike, "db-3", 90 * s, 210 * s, 3.0),
            (FaultKind::DataDrift, "model-1", 600 * s, 900 * s, 1.0),
            (FaultKind::GpuUnderutilization, "gpu-host-1", 0, 60 * s, 1.0),
            (
                FaultKind::GpuThermal,
                thermal_target.as_str(),
                3600 * s,
                3630 * s,
                1.0
            ),
        ]
    );
    assert_eq!(truth[0].entities, ["db-3"]);
    assert_eq!(truth[1].entities, ["model-1", "db-1"]);
    let host_gpus: Vec<String> = (0..8).map(|g| gpu_uuid(1, g)).collect();
    assert_eq!(truth[2].entities[..8], host_gpus[..]);
    assert_eq!(truth[2].entities[8], "db-1");
    assert_eq!(truth[3].entities, [thermal_target]);
    assert!(truth[0].contains(start + 90 * s) && !truth[0].contains(start + 210 * s));
}

#[test]
fn default_schedule_exercises_every_kind_once_within_the_demo_run() {
    let config = FleetConfig::demo();
    let fleet = Fleet::new(config.clone()).expect("the demo schedule is valid");
    let truth = fleet.ground_truth();
    let kinds: BTreeSet<FaultKind> = truth.iter().map(|w| w.kind).collect();
    assert_eq!(kinds, BTreeSet::from(FaultKind::ALL));
    assert_eq!(truth.len(), FaultKind::ALL.len());
    let end = config.start_time_us + DEMO_RUN.as_micros() as i64;
    assert!(
        truth
            .iter()
            .all(|w| w.start_us >= config.start_time_us + 180_000_000)
    );
    assert!(truth.iter().all(|w| w.end_us <= end));
    // No entity suffers two faults at once, so every alert has one cause.
    let mut by_entity: BTreeMap<&str, Vec<(i64, i64)>> = BTreeMap::new();
    for w in truth {
        for entity in &w.entities {
            by_entity
                .entry(entity)
                .or_default()
                .push((w.start_us, w.end_us));
        }
    }
    for (entity, mut windows) in by_entity {
        windows.sort();
        assert!(
            windows.windows(2).all(|w| w[0].1 <= w[1].0),
            "{entity} has overlapping faults: {windows:?}"
        );
    }
    // A fleet without GPUs or models gets only database faults, all on its own databases.
    let small = FleetConfig {
        databases: 2,
        gpu_hosts: 0,
        models: 0,
        ..FleetConfig::default()
    };
    let faults = small.default_faults();
    assert_eq!(faults.len(), 10);
    assert!(
        faults
            .iter()
            .all(|f| f.target == "db-0" || f.target == "db-1")
    );
    Fleet::new(FleetConfig { faults, ..small }).expect("valid on the small fleet");
}

#[test]
fn fault_syntax_round_trips() {
    for text in [
        "data_drift@model-1:+10m/5m",
        "latency_spike@db-3:+90s/2m*3",
        "gpu_thermal@gpu-host-0:+0s/1h*0.25",
        "disk_growth@db-0:+1500ms/250us*1.5",
    ] {
        let fault: FaultSpec = text.parse().expect(text);
        assert_eq!(fault.to_string(), text);
    }
    let fault: FaultSpec = "latency_spike@db-3:+1m30s/2m*3".parse().expect("compound");
    assert_eq!(
        fault,
        FaultSpec::new(
            FaultKind::LatencySpike,
            "db-3",
            Duration::from_secs(90),
            Duration::from_secs(120)
        )
        .with_magnitude(3.0)
    );
    assert_eq!(fault.to_string(), "latency_spike@db-3:+90s/2m*3");
    for kind in FaultKind::ALL {
        let fault = FaultSpec::new(kind, "x", Duration::new(3661, 5), Duration::from_millis(1))
            .with_magnitude(0.1 + 0.2);
        assert_eq!(fault.to_string().parse::<FaultSpec>(), Ok(fault.clone()));
        assert_eq!(FaultKind::from_name(kind.name()), Some(kind));
    }
}

/// The variant of a fault syntax error, and for a bad duration which part it names.
fn variant(error: &FaultSpecError) -> &'static str {
    match error {
        FaultSpecError::Syntax { .. } => "syntax",
        FaultSpecError::UnknownKind { .. } => "unknown kind",
        FaultSpecError::EmptyTarget { .. } => "empty target",
        FaultSpecError::BadDuration { part, .. } => part,
        FaultSpecError::ZeroDuration { .. } => "zero duration",
        FaultSpecError::BadMagnitude { .. } => "bad magnitude",
    }
}

#[test]
fn fault_syntax_errors_name_the_bad_part() {
    let error = |text: &str| text.parse::<FaultSpec>().expect_err(text);
    let cases = [
        ("latency_spike", "syntax", "'@'"),
        ("latency_spike@db-1", "syntax", "':'"),
        ("latency_spike@db-1:90s/2m", "syntax", "'+'"),
        ("latency_spike@db-1:+90s", "syntax", "'/'"),
        (
            "latency_spiek@db-1:+90s/2m",
            "unknown kind",
            "latency_spiek",
        ),
        ("latency_spike@:+90s/2m", "empty target", "empty target"),
        ("latency_spike@db-1:+90x/2m", "start offset", "\"90x\""),
        ("latency_spike@db-1:+90s/2", "duration", "\"2\""),
        (
            "latency_spike@db-1:+90s/0m",
            "zero duration",
            "duration must be positive",
        ),
        ("latency_spike@db-1:+90s/2m*-1", "bad magnitude", "\"-1\""),
    ];
    for (text, expected, names) in cases {
        let e = error(text);
        assert_eq!(variant(&e), expected, "{text}: {e:?}");
        let message = e.to_string();
        assert!(message.contains(names), "{text}: {message}");
        assert!(message.contains(text), "{text}: {message}");
    }
    assert!(error("latency_spike").to_string().contains(FAULT_SYNTAX));
    assert!(error("x@db-1:+1s/1s").to_string().contains("gpu_thermal"));
    assert!(matches!(
        error("cpu_saturation@db-1:+1s/1s*lots"),
        FaultSpecError::BadMagnitude { .. }
    ));
    assert!(matches!(
        error("cpu_saturation@db-1:+1s/1s*inf"),
        FaultSpecError::BadMagnitude { .. }
    ));
}

#[test]
fn config_reads_faults_as_strings_or_tables() {
    let config: FleetConfig = serde_json::from_str(
        r#"{
            "databases": 3,
            "sample_interval": "5s",
            "faults": [
                "latency_spike@db-2:+90s/2m*3",
                {"kind": "data_drift", "target": "model-1", "start": "10m", "duration": "5m"}
            ]
        }"#,
    )
    .expect("valid config");
    assert_eq!(config.databases, 3);
    assert_eq!(config.gpu_hosts, FleetConfig::default().gpu_hosts);
    assert_eq!(config.sample_interval, Duration::from_secs(5));
    assert_eq!(
        config.faults,
        [
            "latency_spike@db-2:+90s/2m*3".parse().expect("valid"),
            FaultSpec::new(
                FaultKind::DataDrift,
                "model-1",
                Duration::from_secs(600),
                Duration::from_secs(300)
            ),
        ]
    );
    let rejected = |json: &str| {
        serde_json::from_str::<FleetConfig>(json)
            .expect_err(json)
            .to_string()
    };
    assert!(rejected(r#"{"databses": 3}"#).contains("databses"));
    assert!(rejected(r#"{"sample_interval": "soon"}"#).contains("\"soon\""));
    assert!(rejected(r#"{"faults": ["latency_spike@db-1"]}"#).contains(FAULT_SYNTAX));
    assert!(rejected(r#"{"faults": [{"kind": "meltdown", "target": "db-1", "start": "1s", "duration": "1s"}]}"#)
        .contains("meltdown"));
    assert!(rejected(r#"{"faults": [{"kind": "latency_spike", "target": "db-1", "start": "1s", "duration": "0s"}]}"#)
        .contains("duration must be positive"));
}

#[test]
fn fleet_rejects_configs_it_cannot_run() {
    let with_fault = |fault: FaultSpec| {
        Fleet::new(FleetConfig {
            faults: vec![fault],
            ..small_config()
        })
        .expect_err("invalid")
    };
    let minute = Duration::from_secs(60);
    let unknown = with_fault(FaultSpec::new(
        FaultKind::CpuSaturation,
        "db-9",
        minute,
        minute,
    ));
    assert!(matches!(unknown, FleetError::UnknownTarget { .. }));
    assert!(unknown.to_string().contains("db-0 to db-3"), "{unknown}");
    let wrong_kind = with_fault(FaultSpec::new(FaultKind::DataDrift, "db-1", minute, minute));
    assert!(
        wrong_kind.to_string().contains("model (model-N)"),
        "{wrong_kind}"
    );
    let wrong_gpu = with_fault(FaultSpec::new(
        FaultKind::GpuThermal,
        "GPU-nope",
        minute,
        minute,
    ));
    assert!(
        wrong_gpu.to_string().contains("gpu-host-0 to gpu-host-1"),
        "{wrong_gpu}"
    );
    let zero = with_fault(FaultSpec::new(
        FaultKind::CpuSaturation,
        "db-1",
        minute,
        Duration::ZERO,
    ));
    assert!(matches!(
        zero,
        FleetError::Fault(FaultSpecError::ZeroDuration { .. })
    ));
    let negative = with_fault(
        FaultSpec::new(FaultKind::CpuSaturation, "db-1", minute, minute).with_magnitude(-2.0),
    );
    assert!(matches!(
        negative,
        FleetError::Fault(FaultSpecError::BadMagnitude { .. })
    ));
    for (config, field) in [
        (
            FleetConfig {
                databases: 0,
                ..small_config()
            },
            "databases",
        ),
        (
            FleetConfig {
                features_per_model: 0,
                ..small_config()
            },
            "features_per_model",
        ),
        (
            FleetConfig {
                sample_interval: Duration::from_nanos(10),
                ..small_config()
            },
            "sample_interval",
        ),
    ] {
        let error = Fleet::new(config).expect_err(field);
        assert!(
            matches!(error, FleetError::Invalid { field: f, .. } if f == field),
            "{error}"
        );
    }
}
