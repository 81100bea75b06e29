//! The PostgreSQL executor: impact assessment, execution and probes for the `pg.*` templates.
//!
//! Statements are built only from validated identifiers (checked again here) and from what
//! the database itself returns (a view's definition, the index advisor's columns); values go
//! through `quote_literal` or bind parameters. Every operation's session carries a
//! `statement_timeout` of the operation timeout.
//!
//! Probes (the metric each template should lower; `primary` in the returned map's docs):
//! `pg.reindex_concurrently` index_bytes; `pg.analyze` mod_since_analyze; `pg.vacuum`
//! dead_tuples; `pg.cancel_long_queries`/`pg.terminate_long_queries` long_queries;
//! `pg.terminate_idle_sessions` idle_in_transaction; `pg.refresh_materialized_view` stale_rows
//! (rows in the view and not in its query, or the reverse); `pg.create_index_advised`
//! seq_scan_share (sequential scans over all scans of the table in the verification window); `pg.set_role_statement_timeout`
//! timeout_unset; `pg.terminate_role_sessions` role_sessions.

use std::collections::BTreeMap;
use std::time::Duration;

use opsloop_planner::templates::{Template, is_identifier};
use opsloop_schemas::ops::ParamValue;
use tokio_postgres::{Client, NoTls};

use crate::{ActuatorError, VerifyConfig};

/// What was measured before acting, and what acting would do.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// The template's probe: `primary` first, then context (blast radius, sizes).
    pub before: BTreeMap<String, f64>,
    pub primary: &'static str,
    /// Active backends over max_connections at or above the saturation share.
    pub saturated: bool,
    /// A reason not to act at all (nothing to fix, no index would help).
    pub skip: Option<String>,
    /// For `pg.create_index_advised`: the column list chosen, and its estimated benefit.
    pub advised_columns: Option<String>,
}

/// Connects to `dsn` with `statement_timeout` set; the connection is driven by a task.
pub async fn connect(dsn: &str, timeout: Duration) -> Result<Client, ActuatorError> {
    let (client, connection) = tokio_postgres::connect(dsn, NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "PostgreSQL connection ended");
        }
    });
    client
        .batch_execute(&format!(
            "SET application_name = 'opsloop-actuator'; SET statement_timeout = {}",
            timeout.as_millis()
        ))
        .await?;
    Ok(client)
}

fn text<'a>(
    params: &'a BTreeMap<String, ParamValue>,
    name: &str,
) -> Result<&'a str, ActuatorError> {
    match params.get(name) {
        Some(ParamValue::String(value)) if is_identifier(value) => Ok(value),
        other => Err(ActuatorError::Refused(format!(
            "parameter {name} is not an identifier: {other:?}"
        ))),
    }
}

fn number(params: &BTreeMap<String, ParamValue>, name: &str) -> Result<i64, ActuatorError> {
    match params.get(name) {
        Some(ParamValue::Long(value)) => Ok(*value),
        other => Err(ActuatorError::Refused(format!(
            "parameter {name} is not an integer: {other:?}"
        ))),
    }
}

/// The index name `pg.create_index_advised` gives, from the action id (so a restart or a
/// rollback finds it without any other state).
pub fn advised_index_name(action_id: &str) -> String {
    let short: String = action_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(16)
        .collect();
    format!("opsloop_{}", short.to_ascii_lowercase())
}

async fn scalar(
    client: &Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<f64, ActuatorError> {
    let row = client.query_one(sql, params).await?;
    Ok(row.get::<_, Option<f64>>(0).unwrap_or(0.0))
}

/// The template's probe: its primary metric (and context), measured now (rates over
/// `verify.window_ms`).
pub async fn probe(
    client: &Client,
    template: &Template,
    params: &BTreeMap<String, ParamValue>,
    verify: &VerifyConfig,
) -> Result<(&'static str, BTreeMap<String, f64>), ActuatorError> {
    let mut metrics = BTreeMap::new();
    let primary = match template.id {
        "pg.reindex_concurrently" => {
            let index = text(params, "index")?;
            let bytes = scalar(
                client,
                "SELECT pg_relation_size($1::text::regclass)::float8",
                &[&index],
            )
            .await?;
            metrics.insert("index_bytes".to_owned(), bytes);
            "index_bytes"
        }
        "pg.analyze" | "pg.vacuum" => {
            let table = text(params, "table")?;
            let row = client
                .query_one(
                    "SELECT n_mod_since_analyze::float8, n_dead_tup::float8, \
                     pg_total_relation_size(relid)::float8 \
                     FROM pg_stat_user_tables WHERE relid = $1::text::regclass",
                    &[&table],
                )
                .await?;
            metrics.insert("mod_since_analyze".to_owned(), row.get(0));
            metrics.insert("dead_tuples".to_owned(), row.get(1));
            metrics.insert("blast_radius_bytes".to_owned(), row.get(2));
            if template.id == "pg.analyze" {
                "mod_since_analyze"
            } else {
                "dead_tuples"
            }
        }
        "pg.cancel_long_queries" | "pg.terminate_long_queries" => {
            let age = number(params, "min_age_s")? as f64;
            let count = scalar(
                client,
                "SELECT count(*)::float8 FROM pg_stat_activity WHERE state = 'active' \
                 AND backend_type = 'client backend' AND pid <> pg_backend_pid() \
                 AND now() - query_start > make_interval(secs => $1)",
                &[&age],
            )
            .await?;
            metrics.insert("long_queries".to_owned(), count);
            metrics.insert("blast_radius_sessions".to_owned(), count);
            "long_queries"
        }
        "pg.terminate_idle_sessions" => {
            let idle = number(params, "min_idle_s")? as f64;
            let count = scalar(
                client,
                "SELECT count(*)::float8 FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' \
                 AND pid <> pg_backend_pid() AND now() - state_change > make_interval(secs => $1)",
                &[&idle],
            )
            .await?;
            metrics.insert("idle_in_transaction".to_owned(), count);
            metrics.insert("blast_radius_sessions".to_owned(), count);
            "idle_in_transaction"
        }
        "pg.refresh_materialized_view" => {
            let matview = text(params, "matview")?;
            let definition: String = client
                .query_one("SELECT pg_get_viewdef($1::text::regclass)", &[&matview])
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
            metrics.insert("stale_rows".to_owned(), stale);
            "stale_rows"
        }
        "pg.create_index_advised" => {
            // The share of the table's scans that read it whole, over the window: unlike a
            // rate it does not move with the workload's throughput.
            let table = text(params, "table")?;
            let scans = "SELECT seq_scan::float8, coalesce(idx_scan, 0)::float8 \
                         FROM pg_stat_user_tables WHERE relid = $1::text::regclass";
            let first = client.query_one(scans, &[&table]).await?;
            tokio::time::sleep(Duration::from_millis(verify.window_ms)).await;
            let second = client.query_one(scans, &[&table]).await?;
            let seq = second.get::<_, f64>(0) - first.get::<_, f64>(0);
            let idx = second.get::<_, f64>(1) - first.get::<_, f64>(1);
            let seconds = verify.window_ms.max(1) as f64 / 1000.0;
            metrics.insert("seq_scans_per_s".to_owned(), seq / seconds);
            metrics.insert("index_scans_per_s".to_owned(), idx / seconds);
            let share = if seq + idx > 0.0 {
                seq / (seq + idx)
            } else {
                0.0
            };
            metrics.insert("seq_scan_share".to_owned(), share);
            "seq_scan_share"
        }
        "pg.set_role_statement_timeout" => {
            let role = text(params, "role")?;
            let unset = scalar(
                client,
                "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_db_role_setting s JOIN pg_roles r \
                 ON r.oid = s.setrole WHERE r.rolname = $1 AND s.setdatabase = 0 \
                 AND EXISTS (SELECT 1 FROM unnest(s.setconfig) c WHERE c LIKE 'statement_timeout=%')) \
                 THEN 0 ELSE 1 END::float8",
                &[&role],
            )
            .await?;
            metrics.insert("timeout_unset".to_owned(), unset);
            "timeout_unset"
        }
        "pg.terminate_role_sessions" => {
            let role = text(params, "role")?;
            let count = scalar(
                client,
                "SELECT count(*)::float8 FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()",
                &[&role],
            )
            .await?;
            metrics.insert("role_sessions".to_owned(), count);
            metrics.insert("blast_radius_sessions".to_owned(), count);
            "role_sessions"
        }
        other => return Err(ActuatorError::Refused(format!("{other} has no probe"))),
    };
    Ok((primary, metrics))
}

/// The table an operation works on (an index's table, the table itself), if it has one:
/// operations on one table are serialized.
pub async fn relation_of(
    client: &Client,
    params: &BTreeMap<String, ParamValue>,
) -> Result<Option<String>, ActuatorError> {
    let relation = if let Ok(index) = text(params, "index") {
        client
            .query_opt(
                "SELECT indrelid::regclass::text FROM pg_index WHERE indexrelid = to_regclass($1)",
                &[&index],
            )
            .await?
            .map(|row| row.get(0))
    } else {
        text(params, "table")
            .or_else(|_| text(params, "matview"))
            .ok()
            .map(str::to_owned)
    };
    Ok(relation)
}

/// Measures before acting: the probe, saturation, and whether acting can help.
pub async fn assess(
    client: &Client,
    template: &Template,
    params: &BTreeMap<String, ParamValue>,
    verify: &VerifyConfig,
    saturation: f64,
) -> Result<Assessment, ActuatorError> {
    let (primary, before) = probe(client, template, params, verify).await?;
    let load = client
        .query_one(
            "SELECT count(*) FILTER (WHERE state = 'active')::float8, \
             current_setting('max_connections')::float8 FROM pg_stat_activity",
            &[],
        )
        .await?;
    let (active, max): (f64, f64) = (load.get(0), load.get(1));
    let mut assessment = Assessment {
        saturated: max > 0.0 && active / max >= saturation,
        skip: None,
        advised_columns: None,
        primary,
        before,
    };
    if assessment.before.get(primary).copied().unwrap_or(0.0) <= 0.0 {
        assessment.skip = Some(format!("nothing to fix: {primary} is already 0"));
    } else if template.id == "pg.create_index_advised" {
        match advise_index(client, text(params, "table")?).await? {
            Some((columns, benefit)) => {
                assessment
                    .before
                    .insert("estimated_cost_reduction".to_owned(), benefit);
                assessment.advised_columns = Some(columns);
            }
            None => {
                assessment.skip = Some(
                    "no index would help: pg_qualstats has no predicate on the table that a \
                     hypothetical index makes at least 30% cheaper"
                        .to_owned(),
                );
            }
        }
    }
    Ok(assessment)
}

/// The advisor's index for `table` that hypopg estimates cuts a sample query's cost the most
/// (at least 30%): its column list and the cost reduction.
async fn advise_index(
    client: &Client,
    table: &str,
) -> Result<Option<(String, f64)>, ActuatorError> {
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
        .all(|c| is_identifier(c) && !c.contains('.'))
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

/// Runs the template; the statement that ran, for the audit trail.
pub async fn execute(
    client: &Client,
    template: &Template,
    params: &BTreeMap<String, ParamValue>,
    action_id: &str,
    advised_columns: Option<&str>,
) -> Result<String, ActuatorError> {
    let statement = match template.id {
        "pg.reindex_concurrently" => {
            format!("REINDEX INDEX CONCURRENTLY {}", text(params, "index")?)
        }
        "pg.analyze" => format!("ANALYZE {}", text(params, "table")?),
        "pg.vacuum" => format!("VACUUM (ANALYZE) {}", text(params, "table")?),
        "pg.cancel_long_queries" | "pg.terminate_long_queries" => {
            let function = if template.id == "pg.cancel_long_queries" {
                "pg_cancel_backend"
            } else {
                "pg_terminate_backend"
            };
            format!(
                "SELECT count(*) FILTER (WHERE {function}(pid)) FROM pg_stat_activity \
                 WHERE state = 'active' AND backend_type = 'client backend' \
                 AND pid <> pg_backend_pid() AND now() - query_start > interval '{} seconds'",
                number(params, "min_age_s")?
            )
        }
        "pg.terminate_idle_sessions" => format!(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE state LIKE 'idle in transaction%' AND pid <> pg_backend_pid() \
             AND now() - state_change > interval '{} seconds'",
            number(params, "min_idle_s")?
        ),
        "pg.refresh_materialized_view" => {
            let matview = text(params, "matview")?;
            let unique: bool = client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = $1::text::regclass \
                     AND indisunique AND indpred IS NULL) AND (SELECT relispopulated FROM pg_class \
                     WHERE oid = $1::text::regclass)",
                    &[&matview],
                )
                .await?
                .get(0);
            if unique {
                format!("REFRESH MATERIALIZED VIEW CONCURRENTLY {matview}")
            } else {
                format!("REFRESH MATERIALIZED VIEW {matview}")
            }
        }
        "pg.create_index_advised" => {
            let columns = advised_columns
                .ok_or_else(|| ActuatorError::Refused("no advised index to create".to_owned()))?;
            format!(
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} ({columns})",
                advised_index_name(action_id),
                text(params, "table")?
            )
        }
        "pg.drop_index" => format!(
            "DROP INDEX CONCURRENTLY IF EXISTS {}",
            text(params, "index")?
        ),
        "pg.set_role_statement_timeout" => format!(
            "ALTER ROLE {} SET statement_timeout = {}",
            text(params, "role")?,
            number(params, "timeout_ms")?
        ),
        "pg.reset_role_statement_timeout" => {
            format!(
                "ALTER ROLE {} RESET statement_timeout",
                text(params, "role")?
            )
        }
        "pg.terminate_role_sessions" => {
            let role = text(params, "role")?;
            format!(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE usename = '{role}' AND pid <> pg_backend_pid()"
            )
        }
        other => {
            return Err(ActuatorError::Refused(format!(
                "{other} is not a PostgreSQL template"
            )));
        }
    };
    client.batch_execute(&statement).await?;
    Ok(statement)
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
        assert_eq!(advised_index_name("3f2a-BC_99"), "opsloop_3f2abc99");
    }
}
