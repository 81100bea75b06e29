//! PostgreSQL's own statistics as opsloop metric samples.
//!
//! [`PostgresCollector::connect`] opens one connection (libpq connection string or URL, TLS as
//! libpq's `sslmode` and `sslrootcert` say: [`crate::postgres`]) and
//! [`PostgresCollector::collect_once`] runs a handful of catalog and statistics queries,
//! returning one [`MetricBatch`] (`source` `"postgres"`, entity by default `host:port/dbname`)
//! with every sample stamped with the caller's `now_us`. Counters are kept between calls, so
//! rates and deltas start with the second collection. A dropped connection is reopened at the
//! next call; state survives it.
//!
//! # Metrics
//!
//! Instance-wide (every database of the server), from `pg_stat_activity` (client backends
//! only, the collector's own left out of the activity group) and the settings:
//!
//! | group | metric | labels | what |
//! |---|---|---|---|
//! | connections | `pg_connections` | `state` | client backends per state (`active`, `idle`, `idle in transaction`, ...; 0 for a state with none) |
//! | connections | `pg_max_connections` | | the `max_connections` setting |
//! | connections | `db_connections_active`, `db_connections_max` | | all client backends, and `max_connections` less `superuser_reserved_connections` (where ordinary roles are refused): what `sql/db_connection_saturation.sql` reads |
//! | activity | `pg_longest_query_seconds` | | age of the oldest running (`active`) query that is not waiting for another backend's lock, 0 when none (a query stuck behind a lock is a victim, not a runaway) |
//! | activity | `pg_longest_transaction_seconds` | | age of the oldest open transaction, 0 when none |
//! | activity | `pg_blocked_backends` | | backends waiting on a lock another backend holds (`pg_blocking_pids` non-empty) |
//! | activity | `pg_lock_blockers` | | backends others wait for (the union of every `pg_blocking_pids`) |
//! | activity | `pg_idle_blocker_seconds` | | the longest a backend others wait for has sat idle in a transaction, 0 when none: what `sql/pg_lock_blocker.sql` reads |
//! | activity | `pg_query_age_seconds` | `pid`, `usename` | the 5 oldest running queries over 1 s |
//!
//! Per database (the one the connection string names):
//!
//! | group | metric | labels | what |
//! |---|---|---|---|
//! | tables | `pg_table_seq_scan_total`, `pg_table_seq_tup_read_total`, `pg_table_idx_scan_total` | `table` | `pg_stat_user_tables` counters |
//! | tables | `pg_table_seq_scan_rate`, `pg_table_seq_tup_read_rate` | `table` | the same counters per second since the previous collection; left out for an interval in which maintenance or DDL ran (its scans are the command's own) |
//! | tables | `pg_maintenance_sessions` | | other sessions running maintenance or DDL (`CREATE`, `ALTER`, `DROP`, `REINDEX`, `REFRESH`, `CLUSTER`, `VACUUM`, `ANALYZE`, `TRUNCATE`), the actuator's included |
//! | tables | `pg_table_live_tuples`, `pg_table_dead_tuples`, `pg_table_mod_since_analyze` | `table` | estimated live and dead rows, rows changed since the last `ANALYZE` |
//! | indexes | `pg_index_scan_total` | `table`, `index` | scans that used the index |
//! | indexes | `pg_index_size_bytes` | `table`, `index` | `relpages` x block size (see below) |
//! | indexes | `pg_index_bloat_ratio` | `table`, `index` | B-tree indexes: pages held over pages needed (see below) |
//! | indexes | `pg_index_valid` | `table`, `index` | 0 for an index a failed `CREATE INDEX CONCURRENTLY` left invalid, else 1 |
//! | matviews | `pg_matview_populated` | `matview` | 0 for a view created `WITH NO DATA` and never refreshed |
//! | matviews | `pg_matview_staleness_rows` | `matview` | rows changed in the view's tables since its last refresh (see below) |
//! | statements | `pg_statement_calls_total`, `pg_statement_mean_ms` | `queryid` | the 20 statements with the most execution time (`pg_stat_statements`) |
//! | statements | `pg_query_latency_mean_ms`, `db_query_latency_ms` | | mean execution time of the calls since the previous collection (delta `total_exec_time` / delta `calls`); the second name is what `sql/db_latency_*.sql` read |
//! | replication | `pg_replication_lag_bytes` | `application` | WAL between the primary's position and each standby's replay position (none on a standalone server or a standby) |
//!
//! Tables, indexes and views are named `schema.name` (`public.orders`), as the actuators take
//! them. Every group can be switched off ([`Collections`]).
//!
//! # Index bloat
//!
//! The estimate is cheap and reads no index page: from the catalog's `reltuples` (index
//! entries) and the key's average width (`pg_stats.avg_width` of each indexed column, its
//! type's length when there are no statistics, 32 bytes for an unknown variable-width key),
//! the pages a freshly built B-tree would need: leaf entries of `4 + maxalign(8 + width)`
//! bytes packed at the default leaf fill factor (90%) of a page's usable space, the inner
//! levels above them and the metapage. The ratio is `relpages` over that: about 1 for a
//! fresh index, 10 for one that holds ten times the pages its entries need (after mass
//! deletes; B-tree pages are reused but the file never shrinks). Both `relpages` and
//! `reltuples` are as of the last `VACUUM`, `ANALYZE` or `CREATE INDEX`, so they agree with
//! each other but may lag the table; `pg_index_size_bytes` is read the same way because
//! `pg_relation_size` would wait behind an `ACCESS EXCLUSIVE` lock on the index (`REINDEX`,
//! `VACUUM FULL`, a `DROP INDEX` in an open transaction), stalling the whole collection; the
//! collector reads only catalogs and statistics views, which take no relation locks. Limits: non-B-tree indexes get no ratio, an
//! index never analyzed (`reltuples` -1) neither; a custom fill factor, null bitmaps and
//! B-tree deduplication (PostgreSQL 13+) are not modelled, so an index of many duplicate keys
//! reads smaller than 1, never falsely bloated.
//!
//! # Materialized-view staleness
//!
//! PostgreSQL records no refresh time. The collector sums `n_tup_ins + n_tup_upd + n_tup_del`
//! of the relations the view's rewrite rule depends on (`pg_rewrite` -> `pg_depend`) and
//! remembers that sum when it first sees the view and whenever it sees the view refreshed:
//! a plain `REFRESH` swaps the view's `relfilenode`, and a `REFRESH ... CONCURRENTLY` that
//! changed anything moves the view's own insert/update/delete counters (nothing else can
//! write a materialized view). Staleness is the sum now minus the remembered one. Limits:
//! changes before the collector first saw the view count as fresh; changes between a
//! refresh and the next collection are counted as covered by it; a concurrent refresh that
//! changed no row is not seen; the statistics counters lag their transactions (up to ~10 s
//! in PostgreSQL 15) and count rolled-back changes too; only direct dependencies are summed
//! (a view over a plain view sees no tables behind it); a counter reset
//! (`pg_stat_reset`) restarts the count.
//!
//! # Statements
//!
//! Only when the `pg_stat_statements` extension is created in the database (and preloaded);
//! otherwise the group is skipped with one warning and checked again at every collection.
//! The collector turns `pg_stat_statements.track` off for its own session where it may (a
//! superuser), so its own queries do not dilute the mean; otherwise they count. Entries
//! evicted from `pg_stat_statements` between two collections bias the delta; a negative one
//! (a reset) skips the latency sample. PostgreSQL 12 and older (`total_time`) are read too.
//!
//! # Permissions
//!
//! A role with `pg_monitor` sees everything; without it other roles' backends have no query
//! times and `pg_stats` hides columns the role cannot read (the bloat estimate then assumes
//! the key width).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use opsloop_schemas::telemetry::{MetricBatch, MetricSample};
use serde::Deserialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::FromSql;
use tokio_postgres::{Client, Config, Row};

use crate::Retry;
use crate::postgres::{PgConnectError, PgDsn};

/// The `source` of every batch the collector returns.
pub const SOURCE: &str = "postgres";

/// Running queries reported one by one (`pg_query_age_seconds`), oldest first.
const TOP_QUERIES: usize = 5;
/// Only queries running longer than this are reported one by one.
const QUERY_AGE_MIN_S: f64 = 1.0;
/// Statements reported one by one (`pg_statement_*`), by total execution time.
const TOP_STATEMENTS: i64 = 20;
/// The states of `pg_stat_activity` reported (as 0) even when no backend is in them.
const BACKEND_STATES: &[&str] = &[
    "active",
    "idle",
    "idle in transaction",
    "idle in transaction (aborted)",
    "fastpath function call",
    "disabled",
];
/// Settings of the collector's own session: a collection never waits long on the server.
const SESSION_SETUP: &str = "SET statement_timeout = '10s'; SET lock_timeout = '2s'";

/// How `opsloop collect postgres` reaches a server and what it collects. Its `Debug` leaves
/// the connection string out (it may hold a password).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresCollectorConfig {
    /// The server, as a libpq connection string (`host=db-1 port=5432 user=opsloop
    /// dbname=app`) or URL (`postgres://opsloop@db-1:5432/app`); TLS with `sslmode` and
    /// `sslrootcert` (`...?sslmode=verify-full&sslrootcert=/etc/opsloop/db-ca.crt`).
    pub dsn: String,
    /// The entity of every sample; by default `host:port/dbname` of the connection string.
    #[serde(default)]
    pub entity: Option<String>,
    /// Time between collections, in milliseconds.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Which groups of metrics to collect; all by default.
    #[serde(default)]
    pub collections: Collections,
}

impl fmt::Debug for PostgresCollectorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresCollectorConfig")
            .field("dsn", &"<hidden>")
            .field("entity", &self.entity)
            .field("interval_ms", &self.interval_ms)
            .field("collections", &self.collections)
            .finish()
    }
}

fn default_interval_ms() -> u64 {
    5_000
}

impl PostgresCollectorConfig {
    /// A configuration for `dsn` with the defaults.
    pub fn new(dsn: impl Into<String>) -> Self {
        PostgresCollectorConfig {
            dsn: dsn.into(),
            entity: None,
            interval_ms: default_interval_ms(),
            collections: Collections::default(),
        }
    }

    /// Time between collections.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    /// The entity of the samples: the `entity` field when set, else `host:port/dbname` of
    /// the connection string (which must parse either way).
    pub fn entity(&self) -> Result<String, PostgresCollectError> {
        let parsed = self.parse_dsn()?;
        Ok(self
            .entity
            .clone()
            .unwrap_or_else(|| default_entity(parsed.config())))
    }

    fn parse_dsn(&self) -> Result<PgDsn, PostgresCollectError> {
        PgDsn::parse(&self.dsn).map_err(|source| PostgresCollectError::Dsn { source })
    }
}

/// The groups of metrics a collection queries (see the module docs for what each holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Collections {
    /// `pg_connections`, `pg_max_connections`, `db_connections_*`.
    pub connections: bool,
    /// Long-running queries and transactions, lock waits.
    pub activity: bool,
    /// `pg_stat_user_tables` counters and rates.
    pub tables: bool,
    /// Index usage, size, bloat estimate, validity.
    pub indexes: bool,
    /// Materialized views: populated, staleness.
    pub matviews: bool,
    /// `pg_stat_statements`: top statements and the mean query latency.
    pub statements: bool,
    /// Standbys' replay lag.
    pub replication: bool,
}

impl Default for Collections {
    fn default() -> Self {
        Collections {
            connections: true,
            activity: true,
            tables: true,
            indexes: true,
            matviews: true,
            statements: true,
            replication: true,
        }
    }
}

impl Collections {
    /// The groups' names, as [`Collections::only`] takes them.
    pub const NAMES: &'static [&'static str] = &[
        "connections",
        "activity",
        "tables",
        "indexes",
        "matviews",
        "statements",
        "replication",
    ];

    /// Only the groups named in `names`.
    pub fn only<S: AsRef<str>>(names: &[S]) -> Result<Self, PostgresCollectError> {
        let mut collections = Collections {
            connections: false,
            activity: false,
            tables: false,
            indexes: false,
            matviews: false,
            statements: false,
            replication: false,
        };
        for name in names {
            let flag = match name.as_ref().trim() {
                "connections" => &mut collections.connections,
                "activity" => &mut collections.activity,
                "tables" => &mut collections.tables,
                "indexes" => &mut collections.indexes,
                "matviews" => &mut collections.matviews,
                "statements" => &mut collections.statements,
                "replication" => &mut collections.replication,
                other => {
                    return Err(PostgresCollectError::UnknownCollection {
                        name: other.to_owned(),
                    });
                }
            };
            *flag = true;
        }
        Ok(collections)
    }
}

/// Why a PostgreSQL collection failed.
#[derive(Debug, thiserror::Error)]
pub enum PostgresCollectError {
    /// The connection string does not parse.
    #[error("{source}")]
    Dsn {
        #[source]
        source: PgConnectError,
    },
    /// A collection group not in [`Collections::NAMES`].
    #[error(
        "there is no collection {name:?}; the collections are connections, activity, tables, \
         indexes, matviews, statements and replication"
    )]
    UnknownCollection { name: String },
    /// The server could not be reached, refused the connection or failed the TLS checks.
    #[error("could not connect to PostgreSQL {entity}: {source}")]
    Connect {
        entity: String,
        #[source]
        source: PgConnectError,
    },
    /// A query of one collection group failed.
    #[error("the {collection} query failed on PostgreSQL {entity}: {reason}")]
    Query {
        collection: &'static str,
        entity: String,
        reason: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

impl PostgresCollectError {
    /// Whether the failed operation may succeed if tried again.
    pub fn retry(&self) -> Retry {
        match self {
            PostgresCollectError::Dsn { .. } | PostgresCollectError::UnknownCollection { .. } => {
                Retry::Never
            }
            PostgresCollectError::Connect { source, .. } => source.retry(),
            PostgresCollectError::Query { source, .. } => {
                if source.is_closed() {
                    return Retry::WithBackoff;
                }
                match source.code() {
                    Some(code) if is_transient(code) => Retry::WithBackoff,
                    Some(_) => Retry::Never,
                    None => Retry::WithBackoff,
                }
            }
        }
    }
}

/// Errors of a server that is busy, shutting down or cut off: try again later.
fn is_transient(code: &SqlState) -> bool {
    let class = &code.code()[..2];
    // 08 connection exception, 53 insufficient resources, 57 operator intervention (incl.
    // statement timeout and admin shutdown), 40 transaction rollback, 55P03 lock timeout.
    matches!(class, "08" | "53" | "57" | "40") || *code == SqlState::LOCK_NOT_AVAILABLE
}

/// What a person needs from a client error: the server's message and SQLSTATE when it has
/// one, else the error and its cause.
fn reason(error: &tokio_postgres::Error) -> String {
    crate::postgres::describe(error)
}

/// `host:port/dbname` of a parsed connection string.
fn default_entity(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => match config.get_hostaddrs().first() {
            Some(address) => address.to_string(),
            None => "localhost".to_owned(),
        },
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let dbname = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}:{port}/{dbname}")
}

/// Counters of one table at the previous collection.
#[derive(Debug, Clone, Copy)]
struct TableCounters {
    seq_scan: i64,
    seq_tup_read: i64,
}

/// What the collector remembers of a materialized view between collections.
#[derive(Debug, Clone, Copy)]
struct MatviewState {
    relfilenode: i64,
    own_mods: i64,
    base_mods_at_refresh: i64,
}

/// The statements' totals at the previous collection.
#[derive(Debug, Clone, Copy)]
struct StatementTotals {
    calls: f64,
    total_ms: f64,
}

/// Samples of one collection, all at one time.
struct Samples {
    time_us: i64,
    samples: Vec<MetricSample>,
}

impl Samples {
    fn push(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        self.samples.push(MetricSample {
            name: name.to_owned(),
            labels,
            value,
            time_us: self.time_us,
        });
    }
}

/// Other sessions running maintenance or DDL now: index builds, REINDEX, refreshes, VACUUM,
/// CLUSTER, ALTER and the like, whoever issued them (opsloop's actuator included).
const MAINTENANCE_SESSIONS: &str = "SELECT count(*)::int8 FROM pg_stat_activity \
     WHERE state = 'active' AND pid <> pg_backend_pid() \
       AND query ~* '^\\s*(create|alter|drop|reindex|refresh|cluster|vacuum|analyze|truncate)\\M'";

/// A connection to one PostgreSQL server and the counters its rates and staleness need.
pub struct PostgresCollector {
    dsn: PgDsn,
    entity: String,
    collections: Collections,
    client: Client,
    server_version: i32,
    tables_at: Option<i64>,
    tables: HashMap<String, TableCounters>,
    /// Whether the previous collection saw maintenance or DDL running.
    maintenance_before: bool,
    matviews: HashMap<i64, MatviewState>,
    statements: Option<StatementTotals>,
    statements_missing_warned: bool,
}

impl fmt::Debug for PostgresCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresCollector")
            .field("entity", &self.entity)
            .field("collections", &self.collections)
            .field("server_version", &self.server_version)
            .field("tables", &self.tables.len())
            .field("matviews", &self.matviews.len())
            .finish_non_exhaustive()
    }
}

impl PostgresCollector {
    /// Parses the connection string and connects (the connection runs as a task on the
    /// current Tokio runtime).
    pub async fn connect(config: &PostgresCollectorConfig) -> Result<Self, PostgresCollectError> {
        let mut dsn = config.parse_dsn()?;
        if dsn.config().get_application_name().is_none() {
            dsn.config_mut().application_name("opsloop collect");
        }
        let entity = config.entity()?;
        let (client, server_version) = open(&dsn, &entity).await?;
        Ok(PostgresCollector {
            dsn,
            entity,
            collections: config.collections,
            client,
            server_version,
            tables_at: None,
            tables: HashMap::new(),
            maintenance_before: false,
            matviews: HashMap::new(),
            statements: None,
            statements_missing_warned: false,
        })
    }

    /// The entity of the batches.
    pub fn entity(&self) -> &str {
        &self.entity
    }

    /// The server's `server_version_num` (e.g. 150018).
    pub fn server_version(&self) -> i32 {
        self.server_version
    }

    /// Queries every enabled group once and returns their samples, stamped `now_us`
    /// (microseconds since the Unix epoch; rates use the difference between two calls'
    /// `now_us`). Reconnects first when the connection was lost.
    pub async fn collect_once(&mut self, now_us: i64) -> Result<MetricBatch, PostgresCollectError> {
        if self.client.is_closed() {
            tracing::info!(entity = %self.entity, "reconnecting to PostgreSQL");
            let (client, server_version) = open(&self.dsn, &self.entity).await?;
            self.client = client;
            self.server_version = server_version;
        }
        let mut samples = Samples {
            time_us: now_us,
            samples: Vec::new(),
        };
        if self.collections.connections {
            self.connections(&mut samples).await?;
        }
        if self.collections.activity {
            self.activity(&mut samples).await?;
        }
        if self.collections.tables {
            self.tables(&mut samples).await?;
        }
        if self.collections.indexes {
            self.indexes(&mut samples).await?;
        }
        if self.collections.matviews {
            self.matviews(&mut samples).await?;
        }
        if self.collections.statements {
            self.statements(&mut samples).await?;
        }
        if self.collections.replication {
            self.replication(&mut samples).await?;
        }
        Ok(MetricBatch {
            entity: self.entity.clone(),
            source: SOURCE.to_owned(),
            samples: samples.samples,
        })
    }

    async fn query(
        &self,
        collection: &'static str,
        sql: &str,
    ) -> Result<Vec<Row>, PostgresCollectError> {
        self.client
            .query(sql, &[])
            .await
            .map_err(|source| self.query_error(collection, source))
    }

    fn query_error(
        &self,
        collection: &'static str,
        source: tokio_postgres::Error,
    ) -> PostgresCollectError {
        PostgresCollectError::Query {
            collection,
            entity: self.entity.clone(),
            reason: reason(&source),
            source,
        }
    }

    /// Column `index` of `row`, a typed error when it does not convert.
    fn column<'a, T: FromSql<'a>>(
        &self,
        collection: &'static str,
        row: &'a Row,
        index: usize,
    ) -> Result<T, PostgresCollectError> {
        row.try_get(index)
            .map_err(|source| self.query_error(collection, source))
    }

    async fn connections(&self, out: &mut Samples) -> Result<(), PostgresCollectError> {
        const C: &str = "connections";
        let rows = self
            .query(
                C,
                "SELECT coalesce(state, 'unknown'), count(*)::int8 \
                 FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1",
            )
            .await?;
        let mut counts: BTreeMap<String, i64> = BACKEND_STATES
            .iter()
            .map(|state| ((*state).to_owned(), 0))
            .collect();
        for row in &rows {
            let state: String = self.column(C, row, 0)?;
            counts.insert(state, self.column(C, row, 1)?);
        }
        let limits = self
            .client
            .query_one(
                "SELECT current_setting('max_connections')::int8, \
                        current_setting('superuser_reserved_connections')::int8",
                &[],
            )
            .await
            .map_err(|source| self.query_error(C, source))?;
        let max_connections: i64 = self.column(C, &limits, 0)?;
        let reserved: i64 = self.column(C, &limits, 1)?;
        for (state, count) in &counts {
            out.push("pg_connections", &[("state", state)], *count as f64);
        }
        out.push("pg_max_connections", &[], max_connections as f64);
        out.push(
            "db_connections_active",
            &[],
            counts.values().sum::<i64>() as f64,
        );
        // Where ordinary roles are refused: the superuser slots are not theirs to use.
        out.push(
            "db_connections_max",
            &[],
            (max_connections - reserved) as f64,
        );
        Ok(())
    }

    async fn activity(&self, out: &mut Samples) -> Result<(), PostgresCollectError> {
        const C: &str = "activity";
        // pg_blocking_pids takes the lock manager's partition locks: only ask it of backends
        // that wait on a lock.
        let rows = self
            .query(
                C,
                "SELECT pid, coalesce(usename::text, ''), coalesce(state, ''), \
                        extract(epoch FROM now() - query_start)::float8, \
                        extract(epoch FROM now() - xact_start)::float8, \
                        CASE WHEN wait_event_type = 'Lock' \
                             THEN pg_blocking_pids(pid) ELSE '{}'::int[] END, \
                        extract(epoch FROM now() - state_change)::float8 \
                 FROM pg_stat_activity \
                 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
            )
            .await?;
        let mut longest_query = 0.0f64;
        let mut longest_transaction = 0.0f64;
        let mut blocked = 0u32;
        let mut blockers: BTreeSet<i32> = BTreeSet::new();
        // pid -> seconds idle in a transaction.
        let mut idle_in_transaction: BTreeMap<i32, f64> = BTreeMap::new();
        let mut running: Vec<(f64, i32, String)> = Vec::new();
        for row in &rows {
            let pid: i32 = self.column(C, row, 0)?;
            let usename: String = self.column(C, row, 1)?;
            let state: String = self.column(C, row, 2)?;
            let query_age: Option<f64> = self.column(C, row, 3)?;
            let transaction_age: Option<f64> = self.column(C, row, 4)?;
            let blocking: Option<Vec<i32>> = self.column(C, row, 5)?;
            let state_age: Option<f64> = self.column(C, row, 6)?;
            let blocking = blocking.unwrap_or_default();
            if let Some(age) = transaction_age {
                longest_transaction = longest_transaction.max(age.max(0.0));
            }
            if state.starts_with("idle in transaction") {
                idle_in_transaction.insert(pid, state_age.unwrap_or(0.0).max(0.0));
            }
            if !blocking.is_empty() {
                blocked += 1;
                blockers.extend(blocking);
            } else if state == "active"
                && let Some(age) = query_age
            {
                let age = age.max(0.0);
                longest_query = longest_query.max(age);
                if age > QUERY_AGE_MIN_S {
                    running.push((age, pid, usename));
                }
            }
        }
        let idle_blocker = blockers
            .iter()
            .filter_map(|pid| idle_in_transaction.get(pid))
            .fold(0.0f64, |longest, age| longest.max(*age));
        out.push("pg_longest_query_seconds", &[], longest_query);
        out.push("pg_longest_transaction_seconds", &[], longest_transaction);
        out.push("pg_blocked_backends", &[], f64::from(blocked));
        out.push("pg_lock_blockers", &[], blockers.len() as f64);
        out.push("pg_idle_blocker_seconds", &[], idle_blocker);
        running.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (age, pid, usename) in running.iter().take(TOP_QUERIES) {
            out.push(
                "pg_query_age_seconds",
                &[("pid", &pid.to_string()), ("usename", usename)],
                *age,
            );
        }
        Ok(())
    }

    async fn tables(&mut self, out: &mut Samples) -> Result<(), PostgresCollectError> {
        const C: &str = "tables";
        let rows = self
            .query(
                C,
                "SELECT schemaname || '.' || relname, seq_scan, seq_tup_read, \
                        coalesce(idx_scan, 0), n_live_tup, n_dead_tup, n_mod_since_analyze \
                 FROM pg_stat_user_tables",
            )
            .await?;
        let maintenance = self.query(C, MAINTENANCE_SESSIONS).await?;
        let maintenance: i64 = match maintenance.first() {
            Some(row) => self.column(C, row, 0)?,
            None => 0,
        };
        out.push("pg_maintenance_sessions", &[], maintenance as f64);
        // Scans by an index build, a REINDEX, a refresh or DDL that ran during the interval are
        // that command's own, not the workload's: no rates for the interval.
        let disturbed = maintenance > 0 || self.maintenance_before;
        self.maintenance_before = maintenance > 0;
        let elapsed_s = self
            .tables_at
            .map(|then| (out.time_us - then) as f64 / 1e6)
            .filter(|seconds| *seconds > 0.0 && !disturbed);
        let mut seen = HashMap::with_capacity(rows.len());
        for row in &rows {
            let table: String = self.column(C, row, 0)?;
            let now = TableCounters {
                seq_scan: self.column(C, row, 1)?,
                seq_tup_read: self.column(C, row, 2)?,
            };
            let idx_scan: i64 = self.column(C, row, 3)?;
            let live: i64 = self.column(C, row, 4)?;
            let dead: i64 = self.column(C, row, 5)?;
            let mod_since_analyze: i64 = self.column(C, row, 6)?;
            let labels = [("table", table.as_str())];
            out.push("pg_table_seq_scan_total", &labels, now.seq_scan as f64);
            out.push(
                "pg_table_seq_tup_read_total",
                &labels,
                now.seq_tup_read as f64,
            );
            out.push("pg_table_idx_scan_total", &labels, idx_scan as f64);
            out.push("pg_table_live_tuples", &labels, live as f64);
            out.push("pg_table_dead_tuples", &labels, dead as f64);
            out.push(
                "pg_table_mod_since_analyze",
                &labels,
                mod_since_analyze as f64,
            );
            if let (Some(seconds), Some(before)) = (elapsed_s, self.tables.get(&table)) {
                // A counter that went down was reset: no rate until the next collection.
                let scans = now.seq_scan - before.seq_scan;
                let rows_read = now.seq_tup_read - before.seq_tup_read;
                if scans >= 0 && rows_read >= 0 {
                    out.push("pg_table_seq_scan_rate", &labels, scans as f64 / seconds);
                    out.push(
                        "pg_table_seq_tup_read_rate",
                        &labels,
                        rows_read as f64 / seconds,
                    );
                }
            }
            seen.insert(table, now);
        }
        self.tables = seen;
        self.tables_at = Some(out.time_us);
        Ok(())
    }

    async fn indexes(&self, out: &mut Samples) -> Result<(), PostgresCollectError> {
        const C: &str = "indexes";
        let rows = self
            .query(
                C,
                "SELECT s.schemaname || '.' || s.relname, s.schemaname || '.' || s.indexrelname, \
                        s.idx_scan, x.indisvalid, am.amname::text, c.relpages::int8, \
                        c.reltuples::float8, current_setting('block_size')::int8, \
                        (SELECT sum(coalesce( \
                                    (SELECT st.avg_width FROM pg_stats st \
                                     WHERE st.schemaname = s.schemaname \
                                       AND st.tablename IN (s.relname, s.indexrelname) \
                                       AND st.attname = a.attname \
                                     ORDER BY st.inherited LIMIT 1), \
                                    CASE WHEN a.attlen > 0 THEN a.attlen END, 32)) \
                         FROM pg_attribute a \
                         WHERE a.attrelid = s.indexrelid AND a.attnum > 0)::float8 \
                 FROM pg_stat_user_indexes s \
                 JOIN pg_index x ON x.indexrelid = s.indexrelid \
                 JOIN pg_class c ON c.oid = s.indexrelid \
                 JOIN pg_am am ON am.oid = c.relam",
            )
            .await?;
        for row in &rows {
            let table: String = self.column(C, row, 0)?;
            let index: String = self.column(C, row, 1)?;
            let scans: i64 = self.column(C, row, 2)?;
            let valid: bool = self.column(C, row, 3)?;
            let method: String = self.column(C, row, 4)?;
            let pages: i64 = self.column(C, row, 5)?;
            let tuples: f64 = self.column(C, row, 6)?;
            let block_size: i64 = self.column(C, row, 7)?;
            let key_width: Option<f64> = self.column(C, row, 8)?;
            let labels = [("table", table.as_str()), ("index", index.as_str())];
            out.push("pg_index_scan_total", &labels, scans as f64);
            out.push("pg_index_size_bytes", &labels, (pages * block_size) as f64);
            out.push("pg_index_valid", &labels, if valid { 1.0 } else { 0.0 });
            if method == "btree"
                && let Some(ratio) = btree_bloat_ratio(
                    pages as f64,
                    tuples,
                    key_width.unwrap_or(32.0),
                    block_size as f64,
                )
            {
                out.push("pg_index_bloat_ratio", &labels, ratio);
            }
        }
        Ok(())
    }

    async fn matviews(&mut self, out: &mut Samples) -> Result<(), PostgresCollectError> {
        const C: &str = "matviews";
        let rows = self
            .query(
                C,
                "SELECT m.oid::int8, n.nspname || '.' || m.relname, m.relispopulated, \
                        m.relfilenode::int8, \
                        coalesce(s.n_tup_ins + s.n_tup_upd + s.n_tup_del, 0)::int8, \
                        coalesce((SELECT sum(b.n_tup_ins + b.n_tup_upd + b.n_tup_del) \
                                  FROM pg_stat_all_tables b \
                                  WHERE b.relid IN ( \
                                      SELECT d.refobjid FROM pg_rewrite r \
                                      JOIN pg_depend d \
                                        ON d.classid = 'pg_rewrite'::regclass \
                                       AND d.objid = r.oid \
                                       AND d.refclassid = 'pg_class'::regclass \
                                      WHERE r.ev_class = m.oid AND d.refobjid <> m.oid)), \
                                 0)::int8 \
                 FROM pg_class m \
                 JOIN pg_namespace n ON n.oid = m.relnamespace \
                 LEFT JOIN pg_stat_all_tables s ON s.relid = m.oid \
                 WHERE m.relkind = 'm'",
            )
            .await?;
        let mut seen = HashMap::with_capacity(rows.len());
        for row in &rows {
            let oid: i64 = self.column(C, row, 0)?;
            let name: String = self.column(C, row, 1)?;
            let populated: bool = self.column(C, row, 2)?;
            let relfilenode: i64 = self.column(C, row, 3)?;
            let own_mods: i64 = self.column(C, row, 4)?;
            let base_mods: i64 = self.column(C, row, 5)?;
            let mut state = match self.matviews.get(&oid) {
                None => MatviewState {
                    relfilenode,
                    own_mods,
                    base_mods_at_refresh: base_mods,
                },
                Some(before) => {
                    let refreshed =
                        before.relfilenode != relfilenode || before.own_mods != own_mods;
                    MatviewState {
                        relfilenode,
                        own_mods,
                        base_mods_at_refresh: if refreshed {
                            base_mods
                        } else {
                            before.base_mods_at_refresh
                        },
                    }
                }
            };
            if base_mods < state.base_mods_at_refresh {
                // The base tables' counters were reset.
                state.base_mods_at_refresh = base_mods;
            }
            let labels = [("matview", name.as_str())];
            out.push(
                "pg_matview_populated",
                &labels,
                if populated { 1.0 } else { 0.0 },
            );
            out.push(
                "pg_matview_staleness_rows",
                &labels,
                (base_mods - state.base_mods_at_refresh) as f64,
            );
            seen.insert(oid, state);
        }
        self.matviews = seen;
        Ok(())
    }

    async fn statements(&mut self, out: &mut Samples) -> Result<(), PostgresCollectError> {
        const C: &str = "statements";
        let schema = self
            .client
            .query_opt(
                "SELECT extnamespace::regnamespace::text FROM pg_extension \
                 WHERE extname = 'pg_stat_statements'",
                &[],
            )
            .await
            .map_err(|source| self.query_error(C, source))?
            .map(|row| self.column::<String>(C, &row, 0))
            .transpose()?;
        let Some(schema) = schema else {
            self.statements_missing(
                "the pg_stat_statements extension is not created in this database",
            );
            return Ok(());
        };
        // regnamespace::text is already quoted where the name needs it.
        let view = format!("{schema}.pg_stat_statements");
        let total = if self.server_version >= 130_000 {
            "total_exec_time"
        } else {
            "total_time"
        };
        let this_database =
            "dbid = (SELECT oid FROM pg_database WHERE datname = current_database())";
        let top = format!(
            "SELECT queryid, sum(calls)::float8, sum({total})::float8 FROM {view} \
             WHERE {this_database} AND queryid IS NOT NULL \
             GROUP BY queryid ORDER BY 3 DESC LIMIT {TOP_STATEMENTS}"
        );
        let rows = match self.client.query(&top, &[]).await {
            Ok(rows) => rows,
            // "pg_stat_statements must be loaded via shared_preload_libraries".
            Err(error) if error.code() == Some(&SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE) => {
                self.statements_missing(&reason(&error));
                return Ok(());
            }
            Err(source) => return Err(self.query_error(C, source)),
        };
        self.statements_missing_warned = false;
        for row in &rows {
            let queryid: i64 = self.column(C, row, 0)?;
            let calls: f64 = self.column(C, row, 1)?;
            let total_ms: f64 = self.column(C, row, 2)?;
            let queryid = queryid.to_string();
            let labels = [("queryid", queryid.as_str())];
            out.push("pg_statement_calls_total", &labels, calls);
            if calls > 0.0 {
                out.push("pg_statement_mean_ms", &labels, total_ms / calls);
            }
        }
        let totals = self
            .client
            .query_one(
                &format!(
                    "SELECT coalesce(sum(calls), 0)::float8, coalesce(sum({total}), 0)::float8 \
                     FROM {view} WHERE {this_database}"
                ),
                &[],
            )
            .await
            .map_err(|source| self.query_error(C, source))?;
        let now = StatementTotals {
            calls: self.column(C, &totals, 0)?,
            total_ms: self.column(C, &totals, 1)?,
        };
        if let Some(before) = self.statements {
            let calls = now.calls - before.calls;
            let total_ms = now.total_ms - before.total_ms;
            if calls > 0.0 && total_ms >= 0.0 {
                let mean_ms = total_ms / calls;
                out.push("pg_query_latency_mean_ms", &[], mean_ms);
                out.push("db_query_latency_ms", &[], mean_ms);
            }
        }
        self.statements = Some(now);
        Ok(())
    }

    /// Logs once (until the statements are back) why they are skipped.
    fn statements_missing(&mut self, why: &str) {
        if !self.statements_missing_warned {
            tracing::warn!(
                entity = %self.entity,
                "skipping statement metrics and db_query_latency_ms: {why}"
            );
            self.statements_missing_warned = true;
        }
        self.statements = None;
    }

    async fn replication(&self, out: &mut Samples) -> Result<(), PostgresCollectError> {
        const C: &str = "replication";
        let recovery = self
            .client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .map_err(|source| self.query_error(C, source))?;
        if self.column::<bool>(C, &recovery, 0)? {
            return Ok(());
        }
        let rows = self
            .query(
                C,
                "SELECT coalesce(application_name, ''), \
                        pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8 \
                 FROM pg_stat_replication WHERE replay_lsn IS NOT NULL",
            )
            .await?;
        for row in &rows {
            let application: String = self.column(C, row, 0)?;
            let lag: f64 = self.column(C, row, 1)?;
            out.push(
                "pg_replication_lag_bytes",
                &[("application", &application)],
                lag.max(0.0),
            );
        }
        Ok(())
    }
}

/// Connects, sets the session up and reads the server version.
async fn open(dsn: &PgDsn, entity: &str) -> Result<(Client, i32), PostgresCollectError> {
    let connect_error = |source: PgConnectError| PostgresCollectError::Connect {
        entity: entity.to_owned(),
        source,
    };
    let session_error = |source: tokio_postgres::Error| connect_error(source.into());
    let (client, connection) = dsn.connect().await.map_err(connect_error)?;
    let task_entity = entity.to_owned();
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(entity = %task_entity, "PostgreSQL connection closed: {}", reason(&error));
        }
    });
    client
        .batch_execute(SESSION_SETUP)
        .await
        .map_err(session_error)?;
    // Keep the collector's own queries out of pg_stat_statements where the role may (the
    // setting is superuser-only; elsewhere they count and this fails harmlessly).
    if let Err(error) = client
        .batch_execute("SET pg_stat_statements.track = 'none'")
        .await
    {
        tracing::debug!(%entity, "pg_stat_statements.track stays on: {}", reason(&error));
    }
    let version = client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .map_err(session_error)?;
    let version: i32 = version.try_get(0).map_err(session_error)?;
    Ok((client, version))
}

/// B-tree page layout, for the bloat estimate.
const PAGE_HEADER_BYTES: f64 = 24.0;
const BTREE_SPECIAL_BYTES: f64 = 16.0;
const LINE_POINTER_BYTES: f64 = 4.0;
const INDEX_TUPLE_HEADER_BYTES: f64 = 8.0;
const MAXALIGN: f64 = 8.0;
const BTREE_LEAF_FILL: f64 = 0.9;
const BTREE_INNER_FILL: f64 = 0.7;

/// Pages a freshly built B-tree of `tuples` entries of `key_width` bytes needs, and the
/// index's `pages` over that; `None` when the catalog has no tuple count (never analyzed)
/// or no pages at all.
pub fn btree_bloat_ratio(pages: f64, tuples: f64, key_width: f64, block_size: f64) -> Option<f64> {
    if tuples < 0.0 || pages <= 0.0 || block_size <= 0.0 {
        return None;
    }
    let entry =
        LINE_POINTER_BYTES + ((INDEX_TUPLE_HEADER_BYTES + key_width) / MAXALIGN).ceil() * MAXALIGN;
    let usable = block_size - PAGE_HEADER_BYTES - BTREE_SPECIAL_BYTES;
    let leaf_per_page = (usable * BTREE_LEAF_FILL / entry).floor().max(1.0);
    let inner_per_page = (usable * BTREE_INNER_FILL / entry).floor().max(2.0);
    let mut level = (tuples / leaf_per_page).ceil().max(1.0);
    // The metapage, then each level up to a single root.
    let mut needed = 1.0 + level;
    while level > 1.0 {
        level = (level / inner_per_page).ceil();
        needed += level;
    }
    Some(pages / needed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_btree_of_ints_is_about_its_estimate() {
        // 100,000 int4 keys built fresh: PostgreSQL 15 makes 276 pages (`relpages` after
        // CREATE INDEX, as tests/tests/collect_postgres.rs builds it).
        let ratio = btree_bloat_ratio(276.0, 100_000.0, 4.0, 8192.0).expect("ratio");
        assert!((0.9..1.1).contains(&ratio), "{ratio}");
        // The same pages holding a tenth of the entries are ~10x bloated.
        let bloated = btree_bloat_ratio(276.0, 10_000.0, 4.0, 8192.0).expect("ratio");
        assert!((8.0..12.0).contains(&bloated), "{bloated}");
        assert!(btree_bloat_ratio(276.0, -1.0, 4.0, 8192.0).is_none());
        // An empty index: the metapage alone.
        let empty = btree_bloat_ratio(1.0, 0.0, 4.0, 8192.0).expect("ratio");
        assert!(empty <= 1.0, "{empty}");
    }

    #[test]
    fn collections_by_name() {
        let only = Collections::only(&["tables", " indexes"]).expect("known");
        assert!(only.tables && only.indexes);
        assert!(!only.connections && !only.statements && !only.replication);
        let error = Collections::only(&["tables", "locks"]).expect_err("unknown");
        assert!(error.to_string().contains("\"locks\""), "{error}");
        assert_eq!(error.retry(), Retry::Never);
        let every: Vec<&str> = Collections::NAMES.to_vec();
        assert_eq!(
            Collections::only(&every).expect("all"),
            Collections::default()
        );
    }

    #[test]
    fn the_default_entity_is_host_port_and_database() {
        let config: Config = "host=db-1 port=6432 user=app dbname=orders"
            .parse()
            .expect("dsn");
        assert_eq!(default_entity(&config), "db-1:6432/orders");
        let config: Config = "postgres://app@db-2/sales".parse().expect("url");
        assert_eq!(default_entity(&config), "db-2:5432/sales");
        let config: Config = "postgres://app@db-3".parse().expect("url");
        assert_eq!(default_entity(&config), "db-3:5432/app");
    }
}
