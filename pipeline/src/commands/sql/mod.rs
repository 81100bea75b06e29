//! `opsloop sql "<query>"`: one SQL query over what the ops topics hold now.
//!
//! The query is checked first, before any topic is read: parsed and planned against the
//! tables' schemas (empty tables with the views over them), and refused unless it is a query —
//! `DROP TABLE`, `INSERT`, `CREATE`, `SET` and the like have nothing to change here. Then each
//! of `ops.alerts`, `ops.incidents`, `ops.remediation`, `ops.actions`, `ops.cycles` and
//! `ops.forecasts` is read once, every partition from the start position up to the high
//! watermark it had when the command began ([`scan`]), into an in-memory DataFusion table
//! (`alerts`, `incidents`, `remediation`, `actions`, `cycles`, `forecasts`). The built-in views of `views.sql` (`incidents_latest` and the `kpi_*` views) are
//! defined over them, then the query runs and its result is written as a table, CSV, JSON
//! lines or Parquet ([`output`]).

mod output;
mod scan;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use clap::Args;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::MemTable;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::DFParser;
use opsloop_schemas::ops::{
    ActionOutcome, Alert, CycleReport, Forecast, Incident, RemediationEvent,
};
use opsloop_schemas::{Codec, SchemaRegistry, WireFormat, topics};

use self::output::OutputFormat;
use opsloop_connectors::kafka::StartPosition;

use self::scan::{Scanner, TableScan};
use super::broker::BrokerArgs;

/// The built-in views, defined in order over the tables.
const VIEWS: &str = include_str!("views.sql");

#[derive(Debug, Args)]
#[command(after_help = "\
Tables: alerts, incidents, remediation, actions: one row per record of ops.alerts,
ops.incidents, ops.remediation, ops.actions, with the record's fields (times *_us as
Timestamp(µs, UTC), enums as strings) plus _partition and _offset.
Views: incidents_latest (latest version per incident), kpi_mttr,
kpi_manual_intervention_rate, kpi_operation_success_rate, kpi_automated_response_time,
kpi_compliance_violation_rate, kpi_incidents_per_tier_per_day (pipeline/src/commands/sql/views.sql).

Example: opsloop sql \"SELECT tier, count(*) FROM incidents_latest GROUP BY tier\"")]
pub(crate) struct SqlArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// Where every partition is read from: earliest, latest-N (its last N records) or an
    /// RFC 3339 time (its first record at or after it, by record timestamp).
    #[arg(long, default_value = "earliest", value_name = "START")]
    from: StartPosition,
    /// The topic a table is read from, as TABLE=TOPIC (tables: alerts, incidents, remediation,
    /// actions, cycles, forecasts); repeatable. Defaults are the contract's names.
    #[arg(long = "topic", value_name = "TABLE=TOPIC")]
    topics: Vec<String>,
    /// Wire format of the records.
    #[arg(long, default_value_t = WireFormat::Confluent)]
    wire_format: WireFormat,
    /// How the result is written.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    /// Write the result to this file instead of stdout (needed by --format parquet).
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Seconds to wait for the broker, and for a partition that stops delivering.
    #[arg(long, default_value_t = 30)]
    timeout_s: u64,
    /// The query: one SQL query (SELECT, WITH ..., EXPLAIN) over the tables and views below.
    query: String,
}

/// A table `opsloop sql` reads from a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Table {
    Alerts,
    Incidents,
    Remediation,
    Actions,
    Cycles,
    Forecasts,
}

impl Table {
    const ALL: [Table; 6] = [
        Table::Alerts,
        Table::Incidents,
        Table::Remediation,
        Table::Actions,
        Table::Cycles,
        Table::Forecasts,
    ];

    fn name(self) -> &'static str {
        match self {
            Table::Alerts => "alerts",
            Table::Incidents => "incidents",
            Table::Remediation => "remediation",
            Table::Actions => "actions",
            Table::Cycles => "cycles",
            Table::Forecasts => "forecasts",
        }
    }

    fn default_topic(self) -> &'static str {
        match self {
            Table::Alerts => topics::ALERTS,
            Table::Incidents => topics::INCIDENTS,
            Table::Remediation => topics::REMEDIATION,
            Table::Actions => topics::ACTIONS,
            Table::Cycles => topics::CYCLES,
            Table::Forecasts => topics::FORECASTS,
        }
    }

    /// The table's schema, whatever its topic holds.
    fn schema(self) -> SchemaRef {
        match self {
            Table::Alerts => scan::table_schema::<Alert>(),
            Table::Incidents => scan::table_schema::<Incident>(),
            Table::Remediation => scan::table_schema::<RemediationEvent>(),
            Table::Actions => scan::table_schema::<ActionOutcome>(),
            Table::Cycles => scan::table_schema::<CycleReport>(),
            Table::Forecasts => scan::table_schema::<Forecast>(),
        }
    }

    fn scan(self, scanner: &Scanner, topic: &str) -> anyhow::Result<TableScan> {
        match self {
            Table::Alerts => scanner.scan::<Alert>(topic),
            Table::Incidents => scanner.scan::<Incident>(topic),
            Table::Remediation => scanner.scan::<RemediationEvent>(topic),
            Table::Actions => scanner.scan::<ActionOutcome>(topic),
            Table::Cycles => scanner.scan::<CycleReport>(topic),
            Table::Forecasts => scanner.scan::<Forecast>(topic),
        }
    }
}

pub(crate) async fn run(args: SqlArgs) -> anyhow::Result<()> {
    let topics = table_topics(&args.topics)?;
    if args.format == OutputFormat::Parquet && args.output.is_none() {
        bail!("--format parquet writes a file: name it with --output FILE");
    }
    let query = args.query.trim();
    // A query that cannot run fails now, not after every topic was read.
    plan_query(&empty_session().await?, query).await?;

    let codec = Codec::new(args.wire_format, Arc::new(SchemaRegistry::builtin()));
    let scanner = Scanner::new(
        args.broker.kafka_config()?,
        codec,
        args.from,
        Duration::from_secs(args.timeout_s),
    );
    let scans = tokio::task::spawn_blocking(move || scan_all(&scanner, &topics))
        .await
        .context("the topic scan stopped unexpectedly")??;

    let tables = scans
        .into_iter()
        .map(|(table, scan)| (table, scan.schema, scan.batches));
    let frame = plan_query(&session(tables).await?, query).await?;
    let schema = Arc::clone(frame.schema().inner());
    let batches = frame
        .collect()
        .await
        .with_context(|| format!("running the query {query:?}"))?;
    let rows: usize = batches.iter().map(|batch| batch.num_rows()).sum();
    tracing::info!(rows, "query done");
    output::write(args.format, schema, &batches, args.output.as_deref())
}

/// The topic of every table: the contract's names, replaced by `--topic TABLE=TOPIC` pairs.
fn table_topics(pairs: &[String]) -> anyhow::Result<BTreeMap<Table, String>> {
    let mut topics: BTreeMap<Table, String> = Table::ALL
        .into_iter()
        .map(|table| (table, table.default_topic().to_owned()))
        .collect();
    for pair in pairs {
        let (name, topic) = pair
            .split_once('=')
            .with_context(|| format!("--topic {pair:?} is not TABLE=TOPIC"))?;
        let Some(table) = Table::ALL.into_iter().find(|table| table.name() == name) else {
            bail!(
                "--topic {pair:?}: {name:?} is not a table; the tables are alerts, incidents, \
                 remediation, actions, cycles and forecasts"
            );
        };
        if topic.is_empty() {
            bail!("--topic {pair:?} names no topic");
        }
        topics.insert(table, topic.to_owned());
    }
    Ok(topics)
}

/// A session with `tables` (each with its schema and rows) and the built-in views over them.
async fn session(
    tables: impl IntoIterator<Item = (Table, SchemaRef, Vec<RecordBatch>)>,
) -> anyhow::Result<SessionContext> {
    let context = opsloop_engine::detector::session_context();
    for (table, schema, batches) in tables {
        let provider = MemTable::try_new(schema, vec![batches])
            .with_context(|| format!("building the {} table", table.name()))?;
        context
            .register_table(table.name(), Arc::new(provider))
            .with_context(|| format!("registering the {} table", table.name()))?;
    }
    define_views(&context).await?;
    Ok(context)
}

/// The tables with no rows and the views over them: what a query is checked against.
async fn empty_session() -> anyhow::Result<SessionContext> {
    session(Table::ALL.map(|table| (table, table.schema(), Vec::new()))).await
}

/// Parses and plans `query` in `context`, refusing anything but a query: a statement that
/// would define, change or drop something (DDL, DML, `SET`) is an error, not executed.
async fn plan_query(context: &SessionContext, query: &str) -> anyhow::Result<DataFrame> {
    let plan = context
        .state()
        .create_logical_plan(query)
        .await
        .with_context(|| format!("the query {query:?} is invalid"))?;
    let reads_only = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    if let Err(refused) = reads_only.verify_plan(&plan) {
        bail!(
            "{query:?} is not a query ({}): opsloop sql only reads the ops topics; write a \
             SELECT (or WITH ..., EXPLAIN ...)",
            refused.message()
        );
    }
    context
        .execute_logical_plan(plan)
        .await
        .with_context(|| format!("planning the query {query:?}"))
}

/// Reads every table's topic, one after the other. It blocks.
fn scan_all(
    scanner: &Scanner,
    topics: &BTreeMap<Table, String>,
) -> anyhow::Result<Vec<(Table, TableScan)>> {
    topics
        .iter()
        .map(|(&table, topic)| {
            let scan = table
                .scan(scanner, topic)
                .with_context(|| format!("reading the {} table from {topic}", table.name()))?;
            if scan.skipped > 0 {
                tracing::warn!(
                    table = table.name(),
                    topic = %topic,
                    skipped = scan.skipped,
                    "records skipped because they did not decode"
                );
            }
            tracing::info!(
                table = table.name(),
                topic = %topic,
                partitions = scan.partitions,
                rows = scan.rows,
                skipped = scan.skipped,
                "table read"
            );
            Ok((table, scan))
        })
        .collect()
}

/// Defines the built-in views of [`VIEWS`], in order.
async fn define_views(context: &SessionContext) -> anyhow::Result<()> {
    let statements = DFParser::parse_sql(VIEWS).context("parsing the built-in views")?;
    for statement in statements {
        let text = statement.to_string();
        let plan = context
            .state()
            .statement_to_plan(statement)
            .await
            .with_context(|| format!("planning the built-in view {text}"))?;
        context
            .execute_logical_plan(plan)
            .await
            .with_context(|| format!("defining the built-in view {text}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use arrow::array::Array;

    use super::*;

    #[test]
    fn topics_default_to_the_contract_and_can_be_replaced() {
        let topics = table_topics(&["actions=audit".to_owned()]).expect("valid pairs");
        assert_eq!(topics[&Table::Actions], "audit");
        assert_eq!(topics[&Table::Incidents], "ops.incidents");
        assert_eq!(topics[&Table::Cycles], "ops.cycles");
        assert_eq!(topics[&Table::Forecasts], "ops.forecasts");
        assert_eq!(topics.len(), 6);
        assert!(table_topics(&["approvals=ops.approvals".to_owned()]).is_err());
        assert!(table_topics(&["actions".to_owned()]).is_err());
    }

    #[tokio::test]
    async fn the_built_in_views_plan_over_empty_tables() {
        let context = empty_session().await.expect("the views are valid");
        let rates = plan_query(
            &context,
            "SELECT manual_intervention_rate FROM kpi_manual_intervention_rate",
        )
        .await
        .expect("planned")
        .collect()
        .await
        .expect("ran");
        assert_eq!(rates.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
        assert!(rates[0].column(0).is_null(0), "no incidents: no rate");
    }

    #[tokio::test]
    async fn only_queries_are_planned() {
        let context = empty_session().await.expect("the views are valid");
        for statement in [
            "DROP TABLE alerts",
            "INSERT INTO alerts SELECT * FROM alerts",
            "CREATE TABLE copy AS SELECT * FROM alerts",
            "CREATE VIEW mine AS SELECT 1",
            "SET datafusion.execution.batch_size = 1",
        ] {
            let error = plan_query(&context, statement).await.expect_err(statement);
            let message = format!("{error:#}");
            assert!(
                message.contains("is not a query") && message.contains("only reads"),
                "{statement}: {message}"
            );
        }
        assert!(
            context.table_exist("alerts").expect("lookup"),
            "alerts was not dropped"
        );
        assert!(!context.table_exist("copy").expect("lookup"));
        for query in [
            "SELECT count(*) FROM alerts",
            "WITH recent AS (SELECT * FROM incidents_latest) SELECT tier FROM recent",
            "EXPLAIN SELECT * FROM kpi_mttr",
        ] {
            plan_query(&context, query).await.expect(query);
        }
        let error = plan_query(&context, "SELECT nope FROM alerts")
            .await
            .expect_err("no such column");
        assert!(format!("{error:#}").contains("nope"), "{error:#}");
    }
}
