//! The fleet's entities and their baseline series: databases, GPUs and models, each with
//! parameters drawn once from the seed, daily seasonality and per-sample noise, with the
//! [`effects`](super::effects) of active faults applied on top.
//!
//! Every sample draws the same number of random numbers whatever the faults do, so a fleet with
//! faults and one without share their noise and differ only by the faults' effects.

use std::collections::BTreeMap;
use std::f64::consts::TAU;

use opsloop_schemas::telemetry::{FeatureSample, GpuSample, MetricBatch, MetricSample};

use super::effects::{DbEffect, GpuEffect, ModelEffect};
use super::rng::{Rng, splitmix64};

/// Metric names of every database batch, in batch order.
pub const DB_METRICS: [&str; 20] = [
    "db_query_latency_ms",
    "db_query_latency_p99_ms",
    "db_qps",
    "db_cpu_utilization_percent",
    "db_memory_utilization_percent",
    "db_connections_active",
    "db_connections_max",
    "db_cache_hit_ratio",
    "db_seq_scans_per_s",
    "db_idx_scans_per_s",
    "db_replication_lag_s",
    "db_disk_used_bytes",
    "db_dead_tuples",
    "db_index_bloat_ratio",
    "db_lock_waits",
    "db_longest_query_s",
    "db_query_errors_per_s",
    "db_matview_age_s",
    "db_rows_read_per_s",
    "db_cost_usd_per_hour",
];

/// Metric names of every model batch (entity = model id), in batch order.
pub const MODEL_METRICS: [&str; 4] = [
    "model_accuracy",
    "model_error_rate",
    "model_requests_per_s",
    "model_inference_latency_ms",
];

/// The DCGM fields of every GPU sample.
pub const DCGM_FIELDS: [&str; 8] = [
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_XID_ERRORS",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
    "DCGM_FI_PROF_DRAM_ACTIVE",
];

/// `model_name` of every simulated GPU.
pub const GPU_MODEL_NAME: &str = "NVIDIA H100 80GB HBM3";

/// The categorical feature every model has, besides its numeric ones.
pub const CATEGORICAL_FEATURE: &str = "device_type";

/// Categories of [`CATEGORICAL_FEATURE`].
pub const DEVICE_TYPES: [&str; 4] = ["mobile", "desktop", "tablet", "tv"];
const BASELINE_DEVICE_MIX: [f64; 4] = [0.55, 0.35, 0.08, 0.02];
const DRIFTED_DEVICE_MIX: [f64; 4] = [0.20, 0.25, 0.15, 0.40];

/// `source` of database and model batches.
const DB_SOURCE: &str = "postgres";
const MODEL_SOURCE: &str = "model-server";

/// Framebuffer of an H100 80GB HBM3 as DCGM reports it, and the part the driver reserves (MiB).
const FB_TOTAL_MIB: f64 = 81_559.0;
const FB_RESERVED_MIB: f64 = 512.0;

/// The load multiplier of a daily cycle that peaks at 15:00 UTC (shifted by `phase_h` hours):
/// 1.3 at the peak, 0.7 at the trough.
fn daily_load(time_us: i64, phase_h: f64) -> f64 {
    let hour = time_us.rem_euclid(86_400_000_000) as f64 / 3.6e9;
    1.0 + 0.3 * (TAU * (hour - 15.0 - phase_h) / 24.0).cos()
}

fn labels<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Samples named `names` with `labels` and no value yet, cloned and filled in on every tick.
fn template(names: &[&str], labels: &BTreeMap<String, String>) -> Vec<MetricSample> {
    names
        .iter()
        .map(|name| MetricSample {
            name: (*name).to_owned(),
            labels: labels.clone(),
            value: 0.0,
            time_us: 0,
        })
        .collect()
}

/// Hands out the records of a reused vector one at a time, appending empty ones when it runs
/// short, so a tick can be written over the previous one without allocating.
#[derive(Debug)]
pub(super) struct Slots<'a, T> {
    records: &'a mut Vec<T>,
    used: usize,
}

impl<'a, T> Slots<'a, T> {
    pub(super) fn new(records: &'a mut Vec<T>) -> Slots<'a, T> {
        Slots { records, used: 0 }
    }

    /// The next record to overwrite, `empty()` if the vector has no more.
    pub(super) fn next(&mut self, empty: impl FnOnce() -> T) -> &mut T {
        if self.used == self.records.len() {
            self.records.push(empty());
        }
        self.used += 1;
        &mut self.records[self.used - 1]
    }

    /// Drops the records not handed out.
    pub(super) fn finish(self) {
        self.records.truncate(self.used);
    }
}

/// Sets `target` to `value`, reusing its allocation.
fn set_str(target: &mut String, value: &str) {
    if target != value {
        target.clear();
        target.push_str(value);
    }
}

pub(super) fn empty_batch() -> MetricBatch {
    MetricBatch {
        entity: String::new(),
        source: String::new(),
        samples: Vec::new(),
    }
}

/// Writes a batch over `batch`: samples named and labelled as `template`, with `values` at
/// `time_us`. Reuses the samples when `batch` already has the template's names and labels.
fn write_batch(
    batch: &mut MetricBatch,
    entity: &str,
    source: &str,
    template: &[MetricSample],
    values: &[f64],
    time_us: i64,
) {
    set_str(&mut batch.entity, entity);
    set_str(&mut batch.source, source);
    let same_series = batch.samples.len() == template.len()
        && batch
            .samples
            .iter()
            .zip(template)
            .all(|(sample, model)| sample.name == model.name && sample.labels == model.labels);
    if !same_series {
        batch.samples = template.to_vec();
    }
    for (sample, value) in batch.samples.iter_mut().zip(values) {
        sample.value = *value;
        sample.time_us = time_us;
    }
}

/// A database cluster role: its tables and the queries its slow-query logs show.
#[derive(Debug)]
pub(super) struct Cluster {
    pub(super) name: &'static str,
    /// The table behind the hot query.
    pub(super) table: &'static str,
    /// The hot query first.
    pub(super) queries: [&'static str; 3],
}

const CLUSTERS: [Cluster; 4] = [
    Cluster {
        name: "features",
        table: "user_features",
        queries: [
            "SELECT * FROM user_features WHERE user_id = $1",
            "SELECT feature_name, value FROM feature_values WHERE entity_id = $1 AND ts > $2",
            "INSERT INTO feature_values (entity_id, feature_name, value, ts) VALUES ($1, $2, $3, $4)",
        ],
    },
    Cluster {
        name: "embeddings",
        table: "item_embeddings",
        queries: [
            "SELECT item_id FROM item_embeddings ORDER BY embedding <-> $1 LIMIT 20",
            "SELECT embedding FROM item_embeddings WHERE item_id = ANY($1)",
            "UPDATE item_embeddings SET embedding = $2, updated_at = now() WHERE item_id = $1",
        ],
    },
    Cluster {
        name: "registry",
        table: "model_versions",
        queries: [
            "SELECT * FROM model_versions WHERE model_id = $1 ORDER BY created_at DESC LIMIT 1",
            "UPDATE model_versions SET stage = $2 WHERE version_id = $1",
            "SELECT run_id, metrics FROM training_runs WHERE model_id = $1",
        ],
    },
    Cluster {
        name: "serving",
        table: "predictions",
        queries: [
            "INSERT INTO predictions (request_id, model_id, score, ts) VALUES ($1, $2, $3, $4)",
            "SELECT score FROM predictions WHERE request_id = $1",
            "SELECT count(*) FROM predictions WHERE ts > now() - interval '5 minutes'",
        ],
    },
];

/// One database: entity `db-N`, the parameters of its series and its batch template.
#[derive(Debug)]
pub(super) struct DbSeries {
    pub(super) name: String,
    pub(super) cluster: &'static Cluster,
    template: Vec<MetricSample>,
    phase_h: f64,
    qps: f64,
    latency_ms: f64,
    p99_ratio: f64,
    cpu: f64,
    memory: f64,
    connections: f64,
    max_connections: f64,
    cache_hit: f64,
    seq_scans: f64,
    idx_per_query: f64,
    replication_lag_s: f64,
    disk_bytes: f64,
    disk_growth_per_s: f64,
    dead_tuples: f64,
    bloat: f64,
    lock_waits: f64,
    longest_query_s: f64,
    errors_per_s: f64,
    matview_phase_s: f64,
    rows_per_query: f64,
}

/// One instant of a database's series.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct DbValues {
    pub(super) latency_ms: f64,
    pub(super) p99_ms: f64,
    qps: f64,
    cpu: f64,
    memory: f64,
    connections: f64,
    max_connections: f64,
    cache_hit: f64,
    seq_scans: f64,
    idx_scans: f64,
    replication_lag_s: f64,
    disk_bytes: f64,
    dead_tuples: f64,
    bloat: f64,
    lock_waits: f64,
    longest_query_s: f64,
    errors_per_s: f64,
    matview_age_s: f64,
    rows_read: f64,
    cost_usd_per_hour: f64,
}

impl DbValues {
    /// The values in [`DB_METRICS`] order.
    fn to_array(self) -> [f64; DB_METRICS.len()] {
        [
            self.latency_ms,
            self.p99_ms,
            self.qps,
            self.cpu,
            self.memory,
            self.connections,
            self.max_connections,
            self.cache_hit,
            self.seq_scans,
            self.idx_scans,
            self.replication_lag_s,
            self.disk_bytes,
            self.dead_tuples,
            self.bloat,
            self.lock_waits,
            self.longest_query_s,
            self.errors_per_s,
            self.matview_age_s,
            self.rows_read,
            self.cost_usd_per_hour,
        ]
    }
}

/// Materialized views refresh every 15 minutes.
const MATVIEW_PERIOD_S: f64 = 900.0;

impl DbSeries {
    pub(super) fn new(index: usize, setup: &mut Rng) -> DbSeries {
        let cluster = &CLUSTERS[index % CLUSTERS.len()];
        let name = format!("db-{index}");
        let max_connections = [200.0, 300.0, 500.0][setup.below(3) as usize];
        DbSeries {
            template: template(&DB_METRICS, &labels([("cluster", cluster.name)])),
            name,
            cluster,
            phase_h: setup.range(-2.0, 2.0),
            qps: setup.range(200f64.ln(), 4000f64.ln()).exp(),
            latency_ms: setup.range(1.5, 12.0),
            p99_ratio: setup.range(3.0, 6.0),
            cpu: setup.range(18.0, 40.0),
            memory: setup.range(50.0, 68.0),
            connections: max_connections * setup.range(0.15, 0.35),
            max_connections,
            cache_hit: setup.range(0.965, 0.995),
            seq_scans: setup.range(0.5, 5.0),
            idx_per_query: setup.range(1.0, 3.0),
            replication_lag_s: setup.range(0.02, 0.4),
            disk_bytes: setup.range(100e9, 1.5e12).round(),
            disk_growth_per_s: setup.range(1e9, 5e9) / 86_400.0,
            dead_tuples: setup.range(5e4, 5e5),
            bloat: setup.range(1.05, 1.35),
            lock_waits: setup.range(0.0, 2.0),
            longest_query_s: setup.range(0.5, 4.0),
            errors_per_s: setup.range(0.01, 0.1),
            matview_phase_s: setup.range(0.0, MATVIEW_PERIOD_S),
            rows_per_query: setup.range(5.0, 40.0),
        }
    }

    /// Age of the materialized views `run_s` seconds into the run when they refresh on time.
    fn matview_age_s(&self, run_s: f64) -> f64 {
        (run_s + self.matview_phase_s).rem_euclid(MATVIEW_PERIOD_S)
    }

    /// What the database costs an hour, as a cost exporter would report it: an instance sized
    /// by its connection limit (1.2 USD/h per 100 connections), burst capacity billed with CPU
    /// use (up to half the instance price again) and storage at 0.10 USD per GB-month. Drawn
    /// from no random numbers, so it leaves every other series as it was.
    fn cost_usd_per_hour(&self, cpu_percent: f64, disk_bytes: f64) -> f64 {
        let instance = 1.2 * self.max_connections / 100.0;
        instance * (1.0 + 0.5 * cpu_percent / 100.0) + disk_bytes / 1e9 * 0.10 / 730.0
    }

    /// The series at `time_us`, `run_s` seconds into the run.
    pub(super) fn values(&self, time_us: i64, run_s: f64, e: &DbEffect, rng: &mut Rng) -> DbValues {
        let load = daily_load(time_us, self.phase_h);
        let qps = (self.qps * load * (1.0 + 0.03 * rng.normal())).max(0.0);
        let latency_ms =
            (self.latency_ms * (1.0 + 0.15 * (load - 1.0)) * (1.0 + 0.05 * rng.normal())).max(0.05)
                * e.latency;
        let p99_ms = latency_ms * (self.p99_ratio * (1.0 + 0.06 * rng.normal())).max(1.2) * e.p99;
        let active = (self.connections * load * (1.0 + 0.05 * rng.normal())).max(1.0);
        let connections = (active + (self.max_connections - active) * e.connection_fill)
            .round()
            .min(self.max_connections);
        let cpu = (self.cpu * load + e.cpu + 1.5 * rng.normal()).clamp(1.0, 100.0);
        let disk_bytes = (self.disk_bytes + self.disk_growth_per_s * run_s + e.disk_bytes).round();
        let matview_age_s = match e.stale_since_s {
            Some(since) => self.matview_age_s(since) + (run_s - since),
            None => self.matview_age_s(run_s),
        };
        DbValues {
            latency_ms,
            p99_ms,
            qps,
            cpu,
            memory: (self.memory + 2.0 * (load - 1.0) + e.memory + 0.4 * rng.normal())
                .clamp(1.0, 99.5),
            connections,
            max_connections: self.max_connections,
            cache_hit: (self.cache_hit - e.cache_drop + 0.002 * rng.normal()).clamp(0.0, 1.0),
            seq_scans: (self.seq_scans * load * (1.0 + 0.1 * rng.normal())).max(0.0) * e.seq_scans,
            idx_scans: (qps * self.idx_per_query * (1.0 + 0.03 * rng.normal())).max(0.0)
                * e.idx_scans,
            replication_lag_s: (self.replication_lag_s * (1.0 + 0.3 * rng.normal())).abs()
                + e.replication_lag_s,
            disk_bytes,
            dead_tuples: ((self.dead_tuples * (1.0 + 0.08 * rng.normal())).max(0.0)
                * e.dead_tuples)
                .round(),
            bloat: self.bloat + e.bloat + 0.004 * rng.normal(),
            lock_waits: ((self.lock_waits * load + 0.8 * rng.normal()).max(0.0) + e.lock_waits)
                .round(),
            longest_query_s: (self.longest_query_s * (0.3 * rng.normal()).exp())
                .max(e.longest_query_s),
            errors_per_s: (self.errors_per_s * load * (1.0 + 0.2 * rng.normal())).max(0.0)
                + e.errors_per_s,
            matview_age_s,
            rows_read: (qps * self.rows_per_query * (1.0 + 0.05 * rng.normal())).max(0.0)
                * e.rows_read,
            cost_usd_per_hour: self.cost_usd_per_hour(cpu, disk_bytes),
        }
    }

    /// Writes the batch of `values` at `time_us` over `batch`.
    pub(super) fn write_batch(&self, batch: &mut MetricBatch, time_us: i64, values: DbValues) {
        let values = values.to_array();
        write_batch(
            batch,
            &self.name,
            DB_SOURCE,
            &self.template,
            &values,
            time_us,
        );
    }
}

/// A deterministic uuid-shaped id for GPU `index` of host `host`, the same for every seed so
/// that faults can name it: `GPU-xxxxxxxx-xxxx-4xxx-8xxx-xxxxxxxxxxxx`.
pub fn gpu_uuid(host: usize, index: usize) -> String {
    let mut state = 0x6770_755f_7575_6964 ^ ((host as u64) << 32 | index as u64);
    let (a, b) = (splitmix64(&mut state), splitmix64(&mut state));
    format!(
        "GPU-{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

/// Host name of GPU host `host`.
pub fn gpu_hostname(host: usize) -> String {
    format!("gpu-host-{host}")
}

/// PCI bus ids of the eight GPUs of an HGX H100 board.
const HGX_BUSES: [u8; 8] = [0x18, 0x2a, 0x3a, 0x5d, 0x9a, 0xab, 0xba, 0xdb];

/// One GPU: its identity, the parameters of its series and its sample template.
#[derive(Debug)]
pub(super) struct GpuSeries {
    template: GpuSample,
    /// For each entry of the template's field map, in map order, its index in [`DCGM_FIELDS`].
    field_order: Vec<usize>,
    phase_h: f64,
    util: f64,
    weights_mib: f64,
    kv_cache_mib: f64,
}

impl GpuSeries {
    pub(super) fn new(
        host: usize,
        index: usize,
        host_db: &str,
        model: Option<&str>,
        phase_h: f64,
        setup: &mut Rng,
    ) -> GpuSeries {
        let fields: BTreeMap<String, f64> =
            DCGM_FIELDS.iter().map(|f| ((*f).to_owned(), 0.0)).collect();
        let field_order = fields
            .keys()
            .filter_map(|key| DCGM_FIELDS.iter().position(|f| f == key))
            .collect();
        let mut labels = labels([("db", host_db), ("namespace", "serving")]);
        if let Some(model) = model {
            labels.insert("model".to_owned(), model.to_owned());
        }
        GpuSeries {
            template: GpuSample {
                gpu_uuid: gpu_uuid(host, index),
                gpu_index: i32::try_from(index).unwrap_or(i32::MAX),
                hostname: gpu_hostname(host),
                model_name: GPU_MODEL_NAME.to_owned(),
                pci_bus_id: format!(
                    "{:08X}:{:02X}:00.0",
                    index / HGX_BUSES.len(),
                    HGX_BUSES[index % HGX_BUSES.len()]
                ),
                time_us: 0,
                fields,
                labels,
            },
            field_order,
            phase_h,
            util: setup.range(55.0, 85.0),
            weights_mib: setup.range(30_000.0, 50_000.0),
            kv_cache_mib: setup.range(10_000.0, 25_000.0),
        }
    }

    pub(super) fn uuid(&self) -> &str {
        &self.template.gpu_uuid
    }

    pub(super) fn pci_bus_id(&self) -> &str {
        &self.template.pci_bus_id
    }

    pub(super) fn empty_sample() -> GpuSample {
        GpuSample {
            gpu_uuid: String::new(),
            gpu_index: 0,
            hostname: String::new(),
            model_name: String::new(),
            pci_bus_id: String::new(),
            time_us: 0,
            fields: BTreeMap::new(),
            labels: BTreeMap::new(),
        }
    }

    /// Writes the sample at `time_us` over `sample`, reusing its allocations.
    pub(super) fn write_sample(
        &self,
        sample: &mut GpuSample,
        time_us: i64,
        e: &GpuEffect,
        rng: &mut Rng,
    ) {
        let load = daily_load(time_us, self.phase_h);
        let util =
            ((self.util * (0.8 + 0.2 * load) + 3.0 * rng.normal()) * e.util).clamp(0.0, 100.0);
        let fb_capacity = FB_TOTAL_MIB - FB_RESERVED_MIB;
        let fb_used = (self.weights_mib + self.kv_cache_mib * util / 100.0 + 200.0 * rng.normal())
            .clamp(0.0, fb_capacity)
            .round();
        let values = [
            util.round(),
            fb_used,
            fb_capacity - fb_used,
            (32.0 + 0.35 * util + 0.8 * rng.normal() + e.temp)
                .clamp(20.0, 100.0)
                .round(),
            (70.0 + 5.2 * util + 6.0 * rng.normal() + e.power).clamp(50.0, 700.0),
            e.xid,
            (util / 100.0 * 0.92 + 0.015 * rng.normal()).clamp(0.0, 1.0),
            (util / 100.0 * 0.55 + 0.015 * rng.normal()).clamp(0.0, 1.0),
        ];
        let template = &self.template;
        set_str(&mut sample.gpu_uuid, &template.gpu_uuid);
        sample.gpu_index = template.gpu_index;
        set_str(&mut sample.hostname, &template.hostname);
        set_str(&mut sample.model_name, &template.model_name);
        set_str(&mut sample.pci_bus_id, &template.pci_bus_id);
        sample.time_us = time_us;
        if !sample.fields.keys().eq(template.fields.keys()) {
            sample.fields = template.fields.clone();
        }
        if sample.labels != template.labels {
            sample.labels = template.labels.clone();
        }
        for (slot, &i) in sample.fields.values_mut().zip(&self.field_order) {
            *slot = values[i];
        }
    }
}

/// The distribution of a numeric feature, as a function of a standard normal draw.
#[derive(Debug, Clone, Copy)]
enum Dist {
    Normal { mean: f64, sd: f64 },
    LogNormal { mu: f64, sigma: f64 },
}

impl Dist {
    fn value(self, z: f64) -> f64 {
        match self {
            Dist::Normal { mean, sd } => mean + sd * z,
            Dist::LogNormal { mu, sigma } => (mu + sigma * z).exp(),
        }
    }
}

const FEATURE_POOL: [(&str, Dist); 8] = [
    (
        "session_length_s",
        Dist::LogNormal {
            mu: 5.7,
            sigma: 0.6,
        },
    ),
    (
        "clicks_7d",
        Dist::LogNormal {
            mu: 2.5,
            sigma: 0.5,
        },
    ),
    (
        "basket_value_usd",
        Dist::LogNormal {
            mu: 3.8,
            sigma: 0.5,
        },
    ),
    (
        "days_since_signup",
        Dist::LogNormal {
            mu: 5.8,
            sigma: 0.7,
        },
    ),
    (
        "embedding_norm",
        Dist::Normal {
            mean: 1.0,
            sd: 0.08,
        },
    ),
    (
        "ctr_30d",
        Dist::Normal {
            mean: 0.035,
            sd: 0.008,
        },
    ),
    (
        "price_usd",
        Dist::LogNormal {
            mu: 3.0,
            sigma: 0.8,
        },
    ),
    (
        "user_age",
        Dist::Normal {
            mean: 38.0,
            sd: 9.0,
        },
    ),
];

pub(super) fn empty_feature() -> FeatureSample {
    FeatureSample {
        model_id: String::new(),
        model_version: String::new(),
        feature: String::new(),
        value: None,
        category: None,
        time_us: 0,
        entity: String::new(),
    }
}

#[derive(Debug)]
struct Feature {
    name: String,
    dist: Dist,
}

/// One model: its id, the feature store it reads, its features and its batch template.
#[derive(Debug)]
pub(super) struct ModelSeries {
    pub(super) id: String,
    version: String,
    /// Index of the database that serves its features.
    pub(super) db: usize,
    db_name: String,
    template: Vec<MetricSample>,
    features: Vec<Feature>,
    phase_h: f64,
    accuracy: f64,
    error_rate: f64,
    requests_per_s: f64,
    latency_ms: f64,
}

impl ModelSeries {
    pub(super) fn new(
        index: usize,
        db: usize,
        db_name: &str,
        numeric_features: usize,
        setup: &mut Rng,
    ) -> ModelSeries {
        let id = format!("model-{index}");
        let version = format!("{}.{}.0", 1 + setup.below(3), setup.below(10));
        let features = (0..numeric_features)
            .map(|f| {
                let (name, dist) = FEATURE_POOL[(index + f) % FEATURE_POOL.len()];
                let round = f / FEATURE_POOL.len();
                let name = match round {
                    0 => name.to_owned(),
                    _ => format!("{name}_{round}"),
                };
                Feature { name, dist }
            })
            .collect();
        let labels = labels([("db", db_name), ("version", &version)]);
        ModelSeries {
            template: template(&MODEL_METRICS, &labels),
            id,
            version,
            db,
            db_name: db_name.to_owned(),
            features,
            phase_h: setup.range(-2.0, 2.0),
            accuracy: setup.range(0.88, 0.95),
            error_rate: setup.range(0.001, 0.004),
            requests_per_s: setup.range(50.0, 400.0),
            latency_ms: setup.range(8.0, 25.0),
        }
    }

    /// The numeric feature that a schema mismatch removes: the last one.
    pub(super) fn missing_feature(&self) -> &str {
        self.features
            .last()
            .map_or(CATEGORICAL_FEATURE, |f| &f.name)
    }

    /// Features the model expects, the categorical one included.
    pub(super) fn feature_count(&self) -> usize {
        self.features.len() + 1
    }

    /// Writes the performance batch at `time_us` over `batch`; inference waits on two
    /// feature-store lookups that take `feature_latency_ms` each.
    pub(super) fn write_batch(
        &self,
        batch: &mut MetricBatch,
        time_us: i64,
        feature_latency_ms: f64,
        e: &ModelEffect,
        rng: &mut Rng,
    ) {
        let load = daily_load(time_us, self.phase_h);
        let values = [
            (self.accuracy - e.accuracy_drop + 0.003 * rng.normal()).clamp(0.0, 1.0),
            ((self.error_rate + 0.0005 * rng.normal()).max(0.0) + e.error_rate).min(1.0),
            (self.requests_per_s * load * (1.0 + 0.04 * rng.normal())).max(0.0),
            self.latency_ms * (1.0 + 0.05 * rng.normal()).max(0.5) + 2.0 * feature_latency_ms,
        ];
        write_batch(
            batch,
            &self.id,
            MODEL_SOURCE,
            &self.template,
            &values,
            time_us,
        );
    }

    /// Writes `per_tick` values of every feature, spread evenly over the interval that starts
    /// at `time_us`. The first half of the numeric features (rounded up) drift under data
    /// drift.
    pub(super) fn write_features(
        &self,
        out: &mut Slots<'_, FeatureSample>,
        time_us: i64,
        interval_us: i64,
        per_tick: usize,
        e: &ModelEffect,
        rng: &mut Rng,
    ) {
        let drifting = self.features.len().div_ceil(2);
        let missing = self
            .features
            .len()
            .checked_sub(1)
            .filter(|_| e.missing_feature);
        let mix = e.category_mix;
        let step = interval_us / i64::try_from(per_tick.max(1)).unwrap_or(i64::MAX);
        let mut at = time_us;
        for _ in 0..per_tick {
            for (f, feature) in self.features.iter().enumerate() {
                let z = rng.normal();
                let z = if f < drifting {
                    z * e.spread + e.shift
                } else {
                    z
                };
                let value = (missing != Some(f)).then(|| feature.dist.value(z));
                self.write_feature(out.next(empty_feature), &feature.name, value, None, at);
            }
            let u = rng.uniform();
            let mut cumulative = 0.0;
            let category = DEVICE_TYPES
                .iter()
                .zip(BASELINE_DEVICE_MIX.iter().zip(DRIFTED_DEVICE_MIX))
                .find(|(_, (base, drifted))| {
                    cumulative += (1.0 - mix) * **base + mix * drifted;
                    u < cumulative
                })
                .map_or(DEVICE_TYPES[DEVICE_TYPES.len() - 1], |(name, _)| name);
            self.write_feature(
                out.next(empty_feature),
                CATEGORICAL_FEATURE,
                None,
                Some(category),
                at,
            );
            at += step;
        }
    }

    fn write_feature(
        &self,
        sample: &mut FeatureSample,
        feature: &str,
        value: Option<f64>,
        category: Option<&str>,
        time_us: i64,
    ) {
        set_str(&mut sample.model_id, &self.id);
        set_str(&mut sample.model_version, &self.version);
        set_str(&mut sample.feature, feature);
        sample.value = value;
        match (&mut sample.category, category) {
            (Some(old), Some(new)) => set_str(old, new),
            (old, new) => *old = new.map(str::to_owned),
        }
        sample.time_us = time_us;
        set_str(&mut sample.entity, &self.db_name);
    }
}
