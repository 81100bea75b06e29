//! The PostgreSQL executor: impact assessment, execution and probes of the `pg.*` actions.
//!
//! Statements are built only from validated identifiers (an [`Action`]'s) and from what the
//! database itself returns (a view's definition, the index advisor's columns); values go
//! through bind parameters. Every session carries a `statement_timeout` of the operation
//! timeout and checks every second that its client is still there, so a statement whose
//! actuator died stops instead of running on (an interrupted `CREATE INDEX CONCURRENTLY` leaves
//! an invalid index, which a restart drops).
//!
//! Probes: the metric each action should lower (`primary`), the count of what it would act on
//! (`eligible`: nothing eligible, nothing to do), and context:
//! reindex `index_bytes`; analyze `mod_since_analyze`; vacuum `dead_tuples`; cancel and
//! terminate long queries `long_queries` (active client queries over the age that are not
//! themselves waiting for a lock); terminate idle sessions `idle_sessions` (client sessions idle,
//! or idle in a transaction, over the limit; opsloop's own left alone); terminate
//! blockers `blocked_backends` (eligible: `idle_blockers`, the sessions others wait for that sit
//! idle in a transaction over the limit); refresh `unexplained_stale_rows` (rows in the view
//! and not in its query or the reverse, less the base tables' writes since the refresh: a view
//! refreshed under live writes is judged against its write rate); create index
//! `seq_scan_share` (sequential scans over all scans of the table in the window); role timeout
//! `timeout_unset`; terminate role sessions `role_sessions`.

use std::collections::BTreeMap;
use std::time::Duration;

use opsloop_actions::{Action, Identifier, advised_index_name};
use tokio_postgres::Client;

use crate::{ActuatorError, VerifyConfig};

/// What a probe measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub primary: &'static str,
    /// What the action would act on now; 0 means nothing to do.
    pub eligible: &'static str,
    pub metrics: BTreeMap<String, f64>,
}

impl Probe {
    pub fn value(&self, name: &str) -> f64 {
        self.metrics.get(name).copied().unwrap_or(0.0)
    }
}

/// What was measured before acting, and what acting would do.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub probe: Probe,
    /// Active backends over max_connections at or above the saturation share.
    pub saturated: bool,
    /// A reason not to act at all (nothing to fix, no index would help).
    pub skip: Option<String>,
    /// For `pg.create_index_advised`: the column list chosen.
    pub advised_columns: Option<String>,
}

/// Connects to `dsn` (TLS as its `sslmode` and `sslrootcert` say,
/// [`opsloop_connectors::postgres`]) with `statement_timeout` set; the connection is driven by
/// a task.
pub async fn connect(dsn: &str, timeout: Duration) -> Result<Client, ActuatorError> {
    let (client, connection) = opsloop_connectors::postgres::connect(dsn).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "PostgreSQL connection ended");
        }
    });
    client
        .batch_execute(&format!(
            "SET application_name = 'opsloop-actuator'; SET statement_timeout = {}; \
             SET client_connection_check_interval = 1000",
            timeout.as_millis()
        ))
        .await?;
    Ok(client)
}

async fn scalar(
    client: &Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<f64, ActuatorError> {
    let row = client.query_one(sql, params).await?;
    Ok(row.get::<_, Option<f64>>(0).unwrap_or(0.0))
}

/// Client queries running longer than $1 seconds that do not wait for another's lock.
const LONG_QUERIES: &str = "FROM pg_stat_activity WHERE state = 'active' \
     AND backend_type = 'client backend' AND pid <> pg_backend_pid() \
     AND now() - query_start > make_interval(secs => $1) \
     AND cardinality(pg_blocking_pids(pid)) = 0";

/// Sessions that others wait for, idle in a transaction longer than $1 seconds.
const IDLE_BLOCKERS: &str = "FROM pg_stat_activity WHERE pid <> pg_backend_pid() \
     AND state LIKE 'idle in transaction%' AND now() - state_change > make_interval(secs => $1) \
     AND pid IN (SELECT unnest(pg_blocking_pids(w.pid)) FROM pg_stat_activity w \
                 WHERE w.wait_event_type = 'Lock')";

/// Client sessions that hold a connection without using it: idle, or idle in a transaction,
/// longer than $1 seconds; opsloop's own left alone.
const IDLE_SESSIONS: &str = "FROM pg_stat_activity WHERE backend_type = 'client backend' \
     AND (state = 'idle' OR state LIKE 'idle in transaction%') \
     AND pid <> pg_backend_pid() AND application_name NOT LIKE 'opsloop%' \
     AND now() - state_change > make_interval(secs => $1)";

fn seconds(value: i64) -> f64 {
    value as f64
}

/// The refusal for a webhook action handed to the PostgreSQL executor.
fn not_postgres(action: &Action) -> ActuatorError {
    ActuatorError::Refused(format!("{} is not a PostgreSQL action", action.template()))
}

/// A probe of one metric, `name`, the primary one and what the action acts on, measured by
/// `sql`; with `sessions`, also the blast radius (the sessions it would end).
async fn single(
    client: &Client,
    name: &'static str,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    sessions: bool,
) -> Result<Probe, ActuatorError> {
    let value = scalar(client, sql, params).await?;
    let mut metrics = BTreeMap::from([(name.to_owned(), value)]);
    if sessions {
        metrics.insert("blast_radius_sessions".to_owned(), value);
    }
    Ok(Probe {
        primary: name,
        eligible: name,
        metrics,
    })
}

/// `action`'s probe, measured now (rates over `verify.window_ms`). `since`, the probe taken
/// just before the action ran, is what write-dependent metrics count from.
pub async fn probe(
    client: &Client,
    action: &Action,
    verify: &VerifyConfig,
    since: Option<&Probe>,
) -> Result<Probe, ActuatorError> {
    let mut metrics = BTreeMap::new();
    let (primary, eligible) = match action {
        Action::ReindexConcurrently { index } => {
            return single(
                client,
                "index_bytes",
                "SELECT pg_relation_size($1::text::regclass)::float8",
                &[&index.as_str()],
                false,
            )
            .await;
        }
        Action::Analyze { table } | Action::Vacuum { table } => {
            let row = client
                .query_one(
                    "SELECT n_mod_since_analyze::float8, n_dead_tup::float8, \
                     pg_total_relation_size(relid)::float8 \
                     FROM pg_stat_user_tables WHERE relid = $1::text::regclass",
                    &[&table.as_str()],
                )
                .await?;
            metrics.insert("mod_since_analyze".to_owned(), row.get(0));
            metrics.insert("dead_tuples".to_owned(), row.get(1));
            metrics.insert("blast_radius_bytes".to_owned(), row.get(2));
            let primary = if matches!(action, Action::Analyze { .. }) {
                "mod_since_analyze"
            } else {
                "dead_tuples"
            };
            (primary, primary)
        }
        Action::CancelLongQueries {
            min_age_s: threshold_s,
        }
        | Action::TerminateLongQueries {
            min_age_s: threshold_s,
        }
        | Action::TerminateIdleSessions {
            min_idle_s: threshold_s,
        } => {
            let (name, sessions) = if matches!(action, Action::TerminateIdleSessions { .. }) {
                ("idle_sessions", IDLE_SESSIONS)
            } else {
                ("long_queries", LONG_QUERIES)
            };
            return single(
                client,
                name,
                &format!("SELECT count(*)::float8 {sessions}"),
                &[&seconds(*threshold_s)],
                true,
            )
            .await;
        }
        Action::TerminateBlockers { min_idle_s } => {
            let blocked = scalar(
                client,
                "SELECT count(*)::float8 FROM pg_stat_activity \
                 WHERE wait_event_type = 'Lock' AND cardinality(pg_blocking_pids(pid)) > 0",
                &[],
            )
            .await?;
            let idle_blockers = scalar(
                client,
                &format!("SELECT count(*)::float8 {IDLE_BLOCKERS}"),
                &[&seconds(*min_idle_s)],
            )
            .await?;
            metrics.insert("blocked_backends".to_owned(), blocked);
            metrics.insert("idle_blockers".to_owned(), idle_blockers);
            metrics.insert("blast_radius_sessions".to_owned(), idle_blockers);
            ("blocked_backends", "idle_blockers")
        }
        Action::RefreshMaterializedView { matview } => {
            let definition: String = client
                .query_one(
                    "SELECT pg_get_viewdef($1::text::regclass)",
                    &[&matview.as_str()],
                )
                .await?
                .get(0);
            let definition = definition.trim().trim_end_matches(';');
            let stale = scalar(
                client,
                &format!(
                    "SELECT count(*)::float8 FROM ((TABLE {matview} EXCEPT ALL ({definition})) \
                     UNION ALL (({definition}) EXCEPT ALL TABLE {matview})) AS difference"
                ),
                &[],
            )
            .await?;
            let writes = scalar(
                client,
                "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::float8 \
                 FROM pg_stat_user_tables WHERE relid IN ( \
                   SELECT d.refobjid FROM pg_depend d JOIN pg_rewrite r ON d.objid = r.oid \
                   WHERE r.ev_class = $1::text::regclass AND d.refobjid <> r.ev_class \
                   AND d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass)",
                &[&matview.as_str()],
            )
            .await?;
            let since_refresh =
                since.map_or(0.0, |mark| (writes - mark.value("base_writes")).max(0.0));
            metrics.insert("stale_rows".to_owned(), stale);
            metrics.insert("base_writes".to_owned(), writes);
            metrics.insert("writes_since_refresh".to_owned(), since_refresh);
            metrics.insert(
                "unexplained_stale_rows".to_owned(),
                (stale - since_refresh).max(0.0),
            );
            ("unexplained_stale_rows", "stale_rows")
        }
        Action::CreateIndexAdvised { table } => {
            // The share of the table's scans that read it whole, over the window: unlike a
            // rate it does not move with the workload's throughput.
            let scans = "SELECT seq_scan::float8, coalesce(idx_scan, 0)::float8 \
                         FROM pg_stat_user_tables WHERE relid = $1::text::regclass";
            let first = client.query_one(scans, &[&table.as_str()]).await?;
            tokio::time::sleep(Duration::from_millis(verify.window_ms)).await;
            let second = client.query_one(scans, &[&table.as_str()]).await?;
            let seq = second.get::<_, f64>(0) - first.get::<_, f64>(0);
            let idx = second.get::<_, f64>(1) - first.get::<_, f64>(1);
            let window_s = verify.window_ms.max(1) as f64 / 1000.0;
            metrics.insert("seq_scans_per_s".to_owned(), seq / window_s);
            metrics.insert("index_scans_per_s".to_owned(), idx / window_s);
            let share = if seq + idx > 0.0 {
                seq / (seq + idx)
            } else {
                0.0
            };
            metrics.insert("seq_scan_share".to_owned(), share);
            ("seq_scan_share", "seq_scan_share")
        }
        Action::DropIndex { index } => {
            return single(
                client,
                "index_exists",
                "SELECT (to_regclass($1) IS NOT NULL)::int::float8",
                &[&index.as_str()],
                false,
            )
            .await;
        }
        Action::SetRoleStatementTimeout { role, .. }
        | Action::ResetRoleStatementTimeout { role } => {
            return single(
                client,
                "timeout_unset",
                "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_db_role_setting s JOIN pg_roles r \
                 ON r.oid = s.setrole WHERE r.rolname = $1 AND s.setdatabase = 0 \
                 AND EXISTS (SELECT 1 FROM unnest(s.setconfig) c WHERE c LIKE 'statement_timeout=%')) \
                 THEN 0 ELSE 1 END::float8",
                &[&role.as_str()],
                false,
            )
            .await;
        }
        Action::TerminateRoleSessions { role } => {
            return single(
                client,
                "role_sessions",
                "SELECT count(*)::float8 FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()",
                &[&role.as_str()],
                true,
            )
            .await;
        }
        Action::Retrain { .. }
        | Action::Scale { .. }
        | Action::Maintenance { .. }
        | Action::CapacityPlan { .. }
        | Action::Failover { .. } => return Err(not_postgres(action)),
    };
    Ok(Probe {
        primary,
        eligible,
        metrics,
    })
}

/// The table an operation works on (an index's table, the table or view itself), if it has
/// one: operations on one table are serialized.
pub async fn relation_of(
    client: &Client,
    action: &Action,
) -> Result<Option<String>, ActuatorError> {
    let relation = match action {
        Action::ReindexConcurrently { index } | Action::DropIndex { index } => client
            .query_opt(
                "SELECT indrelid::regclass::text FROM pg_index WHERE indexrelid = to_regclass($1)",
                &[&index.as_str()],
            )
            .await?
            .map(|row| row.get(0)),
        other => other.relation().map(|r| r.as_str().to_owned()),
    };
    Ok(relation)
}

/// Measures before acting: the probe, saturation, and whether acting can help.
pub async fn assess(
    client: &Client,
    action: &Action,
    verify: &VerifyConfig,
    saturation: f64,
) -> Result<Assessment, ActuatorError> {
    let mut probe = probe(client, action, verify, None).await?;
    let load = client
        .query_one(
            "SELECT count(*) FILTER (WHERE state = 'active')::float8, \
             current_setting('max_connections')::float8 FROM pg_stat_activity",
            &[],
        )
        .await?;
    let (active, max): (f64, f64) = (load.get(0), load.get(1));
    let mut skip = None;
    let mut advised = None;
    if probe.value(probe.eligible) <= 0.0 {
        skip = Some(format!("nothing to fix: {} is 0", probe.eligible));
    } else if let Action::CreateIndexAdvised { table } = action {
        match advise_index(client, table).await? {
            Some((columns, benefit)) => {
                probe
                    .metrics
                    .insert("estimated_cost_reduction".to_owned(), benefit);
                advised = Some(columns);
            }
            None => {
                skip = Some(
                    "no index would help: pg_qualstats has no predicate on the table that a \
                     hypothetical index makes at least 30% cheaper"
                        .to_owned(),
                );
            }
        }
    }
    Ok(Assessment {
        probe,
        saturated: max > 0.0 && active / max >= saturation,
        skip,
        advised_columns: advised,
    })
}

/// The advisor's index for `table` that hypopg estimates cuts a sample query's cost the most
/// (at least 30%): its column list and the cost reduction.
async fn advise_index(
    client: &Client,
    table: &Identifier,
) -> Result<Option<(String, f64)>, ActuatorError> {
    let table = table.as_str();
    client
        .batch_execute(
            "CREATE EXTENSION IF NOT EXISTS pg_qualstats; CREATE EXTENSION IF NOT EXISTS hypopg",
        )
        .await?;
    let oid_name: String = client
        .query_one("SELECT $1::text::regclass::text", &[&table])
        .await?
        .get(0);
    let suggestions = client
        .query(
            "SELECT value FROM json_array_elements_text(pg_qualstats_index_advisor(0, 0) -> 'indexes')",
            &[],
        )
        .await?;
    let mut best: Option<(String, f64)> = None;
    for row in suggestions {
        let statement: String = row.get(0);
        let Some(columns) = advised_columns(&statement, &oid_name) else {
            continue;
        };
        let first = columns
            .split(',')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let sample: Option<String> = client
            .query_opt(
                &format!("SELECT {first}::text FROM {table} WHERE {first} IS NOT NULL LIMIT 1"),
                &[],
            )
            .await?
            .map(|row| row.get(0));
        let Some(sample) = sample else {
            continue;
        };
        let literal: String = client
            .query_one("SELECT quote_literal($1)", &[&sample])
            .await?
            .get(0);
        let explain =
            format!("EXPLAIN (FORMAT JSON) SELECT * FROM {table} WHERE {first} = {literal}");
        let without = total_cost(client, &explain).await?;
        client
            .query_one(
                "SELECT indexrelid FROM hypopg_create_index($1)",
                &[&format!("CREATE INDEX ON {table} ({columns})")],
            )
            .await?;
        let with = total_cost(client, &explain).await;
        client.batch_execute("SELECT hypopg_reset()").await?;
        let with = with?;
        let benefit = if without > 0.0 {
            1.0 - with / without
        } else {
            0.0
        };
        if benefit >= 0.3 && best.as_ref().is_none_or(|(_, b)| benefit > *b) {
            best = Some((columns, benefit));
        }
    }
    Ok(best)
}

/// The column list of an advisor statement (`CREATE INDEX ON public.t USING btree (a, b)`)
/// when it is on `table` and every column is a plain identifier.
fn advised_columns(statement: &str, table: &str) -> Option<String> {
    let rest = statement.strip_prefix("CREATE INDEX ON ")?;
    let (on, rest) = rest.split_once(' ')?;
    let unqualified = on.rsplit('.').next()?;
    if on != table && unqualified != table {
        return None;
    }
    let columns = rest.split_once('(')?.1.rsplit_once(')')?.0;
    let columns: Vec<&str> = columns.split(',').map(str::trim).collect();
    columns
        .iter()
        .all(|c| Identifier::is_valid(c) && !c.contains('.'))
        .then(|| columns.join(", "))
}

async fn total_cost(client: &Client, explain: &str) -> Result<f64, ActuatorError> {
    // The plan is a json value; the simple protocol hands it over as text.
    let text = client
        .simple_query(explain)
        .await?
        .into_iter()
        .find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_default();
    let plan: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    Ok(plan[0]["Plan"]["Total Cost"].as_f64().unwrap_or(0.0))
}

/// Runs `action` as action `action_id`; the statement that ran, for the audit trail.
pub async fn execute(
    client: &Client,
    action: &Action,
    action_id: &str,
    advised_columns: Option<&str>,
) -> Result<String, ActuatorError> {
    let statement = match action {
        Action::ReindexConcurrently { index } => format!("REINDEX INDEX CONCURRENTLY {index}"),
        Action::Analyze { table } => format!("ANALYZE {table}"),
        Action::Vacuum { table } => format!("VACUUM (ANALYZE) {table}"),
        Action::CancelLongQueries { min_age_s } => format!(
            "SELECT count(*) FILTER (WHERE pg_cancel_backend(pid)) {}",
            LONG_QUERIES.replace("$1", &min_age_s.to_string())
        ),
        Action::TerminateLongQueries { min_age_s } => format!(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) {}",
            LONG_QUERIES.replace("$1", &min_age_s.to_string())
        ),
        Action::TerminateIdleSessions { min_idle_s } => format!(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) {}",
            IDLE_SESSIONS.replace("$1", &min_idle_s.to_string())
        ),
        Action::TerminateBlockers { min_idle_s } => format!(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) {}",
            IDLE_BLOCKERS.replace("$1", &min_idle_s.to_string())
        ),
        Action::RefreshMaterializedView { matview } => {
            let unique: bool = client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = $1::text::regclass \
                     AND indisunique AND indpred IS NULL) AND (SELECT relispopulated FROM pg_class \
                     WHERE oid = $1::text::regclass)",
                    &[&matview.as_str()],
                )
                .await?
                .get(0);
            if unique {
                format!("REFRESH MATERIALIZED VIEW CONCURRENTLY {matview}")
            } else {
                format!("REFRESH MATERIALIZED VIEW {matview}")
            }
        }
        Action::CreateIndexAdvised { table } => {
            let columns = advised_columns
                .ok_or_else(|| ActuatorError::Refused("no advised index to create".to_owned()))?;
            format!(
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {table} ({columns})",
                advised_index_name(action_id)
            )
        }
        Action::DropIndex { index } => format!("DROP INDEX CONCURRENTLY IF EXISTS {index}"),
        Action::SetRoleStatementTimeout { role, timeout_ms } => {
            format!("ALTER ROLE {role} SET statement_timeout = {timeout_ms}")
        }
        Action::ResetRoleStatementTimeout { role } => {
            format!("ALTER ROLE {role} RESET statement_timeout")
        }
        Action::TerminateRoleSessions { role } => format!(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE usename = '{role}' AND pid <> pg_backend_pid()"
        ),
        Action::Retrain { .. }
        | Action::Scale { .. }
        | Action::Maintenance { .. }
        | Action::CapacityPlan { .. }
        | Action::Failover { .. } => return Err(not_postgres(action)),
    };
    client.batch_execute(&statement).await?;
    Ok(statement)
}

/// Whether index `name` exists, and if so whether it is valid (an interrupted
/// `CREATE INDEX CONCURRENTLY` leaves an invalid one).
pub async fn index_validity(client: &Client, name: &str) -> Result<Option<bool>, ActuatorError> {
    Ok(client
        .query_opt(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)",
            &[&name],
        )
        .await?
        .map(|row| row.get(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advisor_statements_are_parsed_only_for_the_table_and_plain_columns() {
        assert_eq!(
            advised_columns(
                "CREATE INDEX ON public.orders USING btree (customer_id)",
                "orders"
            )
            .as_deref(),
            Some("customer_id")
        );
        assert_eq!(
            advised_columns("CREATE INDEX ON orders USING btree (a, b)", "orders").as_deref(),
            Some("a, b")
        );
        assert_eq!(
            advised_columns("CREATE INDEX ON public.items USING btree (a)", "orders"),
            None
        );
        assert_eq!(
            advised_columns(
                "CREATE INDEX ON orders USING btree ((lower(name)))",
                "orders"
            ),
            None
        );
    }
}
