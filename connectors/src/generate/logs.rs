//! Log lines: an occasional slow query at any time, and the lines each fault kind makes its
//! entities write (PostgreSQL messages, model-server errors, NVIDIA driver XID reports).

use std::collections::BTreeMap;

use opsloop_schemas::telemetry::{LogRecord, Severity};

use super::effects::{Progress, ScheduledFault, Target, XID_THERMAL};
use super::fault::FaultKind;
use super::rng::Rng;
use super::series::{DbSeries, DbValues, GpuSeries, ModelSeries};

/// Database user of the applications' queries.
pub(super) const APP_USER: &str = "app";
/// The unusual user behind security anomalies, and where it connects from (TEST-NET-3).
pub const ANOMALOUS_USER: &str = "svc_export_tmp";
const ANOMALOUS_ADDRESS: &str = "203.0.113.47";

const MINUTE_US: i64 = 60_000_000;

/// A random offset into an interval of `interval_us`, for a line written during it.
pub(super) fn offset_within(rng: &mut Rng, interval_us: i64) -> i64 {
    i64::try_from(rng.below(interval_us.unsigned_abs())).unwrap_or(0)
}

fn record(
    entity: &str,
    time_us: i64,
    severity: Severity,
    body: String,
    attributes: &[(&str, &str)],
) -> LogRecord {
    LogRecord {
        entity: entity.to_owned(),
        time_us,
        severity,
        body,
        attributes: attributes
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        trace_id: None,
    }
}

/// A PostgreSQL `log_min_duration_statement` line, with the query text in `db.query.text`.
pub(super) fn slow_query(
    entity: &str,
    time_us: i64,
    duration_ms: f64,
    query: &str,
    user: &str,
    rows: u64,
) -> LogRecord {
    record(
        entity,
        time_us,
        Severity::Warn,
        format!("duration: {duration_ms:.1} ms  statement: {query}"),
        &[
            ("db.user", user),
            ("db.rows", &rows.to_string()),
            ("db.query.text", query),
            ("duration_ms", &format!("{duration_ms:.1}")),
        ],
    )
}

/// What the fault log lines refer to: the fleet's entities and the database series now.
#[derive(Debug)]
pub(super) struct LogContext<'a> {
    pub(super) dbs: &'a [DbSeries],
    pub(super) db_now: &'a [DbValues],
    pub(super) models: &'a [ModelSeries],
    pub(super) gpus: &'a [GpuSeries],
    pub(super) interval_us: i64,
}

/// Appends the lines `fault` makes its entities write during the interval that starts at
/// `time_us`. Lines that real systems write once in a while (autovacuum, checkpoints, XID
/// reports) come once a minute of the fault; the others every interval.
pub(super) fn fault_logs(
    cx: &LogContext<'_>,
    fault: &ScheduledFault,
    progress: Progress,
    time_us: i64,
    rng: &mut Rng,
    out: &mut Vec<LogRecord>,
) {
    let minute_mark = (time_us - fault.start_us) % MINUTE_US < cx.interval_us;
    let at = time_us + offset_within(rng, cx.interval_us);
    let m = fault.magnitude;
    match (&fault.target, fault.kind) {
        (&Target::Database(db), kind) => {
            let series = &cx.dbs[db];
            let entity = series.name.as_str();
            let p99 = cx.db_now[db].p99_ms;
            let hot = series.cluster.queries[0];
            match kind {
                FaultKind::LatencySpike | FaultKind::CpuSaturation => {
                    let duration = p99 * rng.range(1.0, 2.0);
                    out.push(slow_query(entity, at, duration, hot, APP_USER, 1));
                }
                FaultKind::IndexDegradation => {
                    let duration = p99 * rng.range(1.0, 2.0);
                    let rows = rng.range(2e5, 2e6) as u64;
                    let mut line = slow_query(entity, at, duration, hot, APP_USER, rows);
                    line.attributes.insert(
                        "db.plan".to_owned(),
                        format!("Seq Scan on {}", series.cluster.table),
                    );
                    out.push(line);
                }
                FaultKind::IndexBloat if minute_mark => {
                    let dead = (rng.range(1e6, 5e6) * m * progress.ramp.max(0.1)) as u64;
                    out.push(record(
                        entity,
                        at,
                        Severity::Info,
                        format!(
                            "automatic vacuum of table \"{0}.public.{1}\": index scans: 1, \
                             tuples: 0 removed, {dead} remain, {dead} are dead but not yet \
                             removable",
                            series.cluster.name, series.cluster.table
                        ),
                        &[],
                    ));
                }
                FaultKind::RunawayQuery => {
                    let pid = 4000 + rng.below(4000);
                    let blocker = 3000 + db;
                    out.push(record(
                        entity,
                        at,
                        Severity::Warn,
                        format!(
                            "process {pid} still waiting for ShareLock on transaction {} after \
                             1000.000 ms",
                            880_000 + db
                        ),
                        &[
                            ("db.query.text", series.cluster.queries[1]),
                            ("db.user", APP_USER),
                            ("blocking_pid", &blocker.to_string()),
                        ],
                    ));
                }
                FaultKind::StaleCache if minute_mark => out.push(record(
                    entity,
                    at,
                    Severity::Error,
                    "canceling statement due to statement timeout".to_owned(),
                    &[(
                        "db.query.text",
                        &format!(
                            "REFRESH MATERIALIZED VIEW CONCURRENTLY mv_{}_daily",
                            series.cluster.table
                        ),
                    )],
                )),
                FaultKind::ConnectionExhaustion if progress.ramp >= 0.9 => out.push(record(
                    entity,
                    at,
                    Severity::Fatal,
                    "sorry, too many clients already".to_owned(),
                    &[("db.user", APP_USER)],
                )),
                FaultKind::MemoryPressure if progress.ramp >= 0.8 => out.push(record(
                    entity,
                    at,
                    Severity::Error,
                    "out of memory".to_owned(),
                    &[(
                        "detail",
                        "Failed on request of size 8192 in memory context \"ExecutorState\".",
                    )],
                )),
                FaultKind::DiskGrowth if minute_mark => out.push(record(
                    entity,
                    at,
                    Severity::Info,
                    format!(
                        "checkpoints are occurring too frequently ({} seconds apart)",
                        3 + rng.below(8)
                    ),
                    &[(
                        "hint",
                        "Consider increasing the configuration parameter \"max_wal_size\".",
                    )],
                )),
                FaultKind::SecurityAnomaly => {
                    let rows = (rng.range(1.5e6, 2.5e6) * m) as u64;
                    let query = format!("COPY (SELECT * FROM {}) TO STDOUT", series.cluster.table);
                    let mut line = slow_query(
                        entity,
                        at,
                        rng.range(4e3, 9e3),
                        &query,
                        ANOMALOUS_USER,
                        rows,
                    );
                    line.attributes
                        .insert("client.address".to_owned(), ANOMALOUS_ADDRESS.to_owned());
                    out.push(line);
                }
                _ => {}
            }
        }
        (&Target::Model { model, db }, FaultKind::SchemaMismatch) => {
            let series = &cx.models[model];
            let feature = series.missing_feature();
            let expected = series.feature_count();
            let attributes = [("feature", feature)];
            out.push(record(
                &series.id,
                at,
                Severity::Error,
                format!("feature not found: {feature}"),
                &attributes,
            ));
            out.push(record(
                &series.id,
                at,
                Severity::Error,
                format!(
                    "model schema error: expected {expected} features, got {}",
                    expected - 1
                ),
                &attributes,
            ));
            let table = cx.dbs[db].cluster.table;
            out.push(record(
                &cx.dbs[db].name,
                at,
                Severity::Error,
                format!("column \"{feature}\" does not exist"),
                &[(
                    "db.query.text",
                    &format!("SELECT {feature} FROM {table} WHERE user_id = $1"),
                )],
            ));
        }
        (Target::Gpus { gpus, .. }, FaultKind::GpuThermal)
            if minute_mark && progress.ramp >= 1.0 =>
        {
            for gpu in &cx.gpus[gpus.clone()] {
                let pid = 10_000 + rng.below(50_000);
                out.push(record(
                    gpu.uuid(),
                    at,
                    Severity::Error,
                    format!(
                        "NVRM: Xid (PCI:{}): {XID_THERMAL}, pid={pid}, name=python3, Internal \
                         micro-controller halt",
                        gpu.pci_bus_id()
                    ),
                    &[("xid", &XID_THERMAL.to_string())],
                ));
            }
        }
        _ => {}
    }
}
