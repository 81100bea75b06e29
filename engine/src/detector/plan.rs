//! Planning a detector once: SQL -> DataFusion logical plan -> the pieces the engine evaluates
//! per micro-batch (below the aggregate) and per closing window (above it).
//!
//! The logical plan must have exactly one `Aggregate`. Below it only projections, filters
//! (`WHERE`), subquery aliases and one scan of a stream table are allowed; above it only
//! projections, filters (`HAVING`), sorts, limits and aliases. Every expression is turned into
//! a DataFusion physical expression here, so evaluation never re-plans; aggregates become
//! [`AggregateFunctionExpr`]s whose accumulators the window state owns. The output schema is
//! checked against what an alert needs (a string `entity`, a numeric `score`), so a detector
//! that could never alert fails here, naming its file.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch};
use arrow::array::{RecordBatchOptions, UInt32Array};
use arrow::compute::{FilterBuilder, lexsort_to_indices, take_record_batch};
use arrow::datatypes::{
    DataType, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
};
use datafusion::common::{DFSchema, Result as DfResult, TableReference, plan_datafusion_err};
use datafusion::config::ConfigOptions;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::logical_expr::execution_props::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::planner::{ContextProvider, ExprPlanner, RelationPlanner};
use datafusion::logical_expr::{
    AggregateUDF, Expr, FetchType, HigherOrderUDF, LogicalPlan, LogicalTableSource, ScalarUDF,
    SkipType, TableSource, WindowUDF,
};
use datafusion::physical_expr::aggregate::{AggregateFunctionExpr, LoweredAggregateBuilder};
use datafusion::physical_expr::{
    PhysicalExpr, PhysicalSortExpr, create_physical_expr, create_physical_sort_exprs,
};
use datafusion::prelude::SessionContext;
use datafusion::sql::planner::{ParserOptions, SqlToRel};

use super::alert::check_output_schema;
use super::error::DetectorError;
use super::window::{WindowSpec, contains_window_call, window_functions, window_spec};

/// A stream table detectors read: its name in SQL, its Arrow schema and its event-time column.
///
/// The engine is schema-agnostic: any schema works as long as the event-time column is a
/// `Timestamp(Microsecond, _)` or an `Int64` of microseconds since the Unix epoch.
#[derive(Debug, Clone)]
pub struct StreamTable {
    name: String,
    schema: SchemaRef,
    event_time: String,
    event_time_index: usize,
}

impl StreamTable {
    /// A stream table named `name` (as written in `FROM`) whose rows have `schema` and whose
    /// event time is the column `event_time`.
    pub fn new(
        name: impl Into<String>,
        schema: SchemaRef,
        event_time: impl Into<String>,
    ) -> Result<Self, DetectorError> {
        let name = name.into();
        let event_time = event_time.into();
        let invalid = |message: String| DetectorError::Stream {
            table: name.clone(),
            message,
        };
        let event_time_index = schema
            .index_of(&event_time)
            .map_err(|_| invalid(format!("there is no event-time column {event_time}")))?;
        match schema.field(event_time_index).data_type() {
            DataType::Timestamp(TimeUnit::Microsecond, _) | DataType::Int64 => {}
            other => {
                return Err(invalid(format!(
                    "the event-time column {event_time} is {other}; it must be a microsecond \
                     timestamp or an Int64 of microseconds"
                )));
            }
        }
        Ok(StreamTable {
            name,
            schema,
            event_time,
            event_time_index,
        })
    }

    /// The table's name in SQL.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The schema of the table's rows.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The name of the event-time column.
    pub fn event_time(&self) -> &str {
        &self.event_time
    }

    /// The event times of a batch of this table, in microseconds (nulls kept).
    pub(crate) fn event_times(&self, batch: &RecordBatch) -> Int64Array {
        let column = batch.column(self.event_time_index);
        let values = match column.data_type() {
            DataType::Int64 => column.as_primitive::<Int64Type>().values().clone(),
            _ => column
                .as_primitive::<TimestampMicrosecondType>()
                .values()
                .clone(),
        };
        Int64Array::new(values, column.logical_nulls())
    }
}

/// A step of the per-batch pipeline between the stream scan and the aggregate.
#[derive(Debug)]
enum InputStep {
    /// `TableScan` with a projection.
    Columns(Vec<usize>, SchemaRef),
    Filter(Arc<dyn PhysicalExpr>),
    Project(Vec<Arc<dyn PhysicalExpr>>, SchemaRef),
    /// `SubqueryAlias`: same columns, requalified names.
    Rename(SchemaRef),
}

/// A step of the per-window pipeline above the aggregate.
#[derive(Debug)]
enum OutputStep {
    Filter(Arc<dyn PhysicalExpr>),
    Project(Vec<Arc<dyn PhysicalExpr>>, SchemaRef),
    Rename(SchemaRef),
    Sort(Vec<PhysicalSortExpr>, Option<usize>),
    Limit { skip: usize, fetch: Option<usize> },
}

/// One aggregate of the detector: the function and the physical expressions that feed it.
#[derive(Debug)]
pub(crate) struct AggregatePlan {
    /// The aggregate function; its accumulators hold the window state.
    pub(crate) function: Arc<AggregateFunctionExpr>,
    /// Arguments, then the `ORDER BY` expressions of order-sensitive aggregates.
    pub(crate) inputs: Vec<Arc<dyn PhysicalExpr>>,
    /// The aggregate's `FILTER (WHERE ...)`, if any.
    pub(crate) filter: Option<Arc<dyn PhysicalExpr>>,
}

/// The rows of one micro-batch that reached the aggregate, evaluated for it.
#[derive(Debug)]
pub(crate) struct AggregateInput {
    /// Event time of each row, microseconds.
    pub(crate) times: Int64Array,
    /// The non-window `GROUP BY` values.
    pub(crate) keys: Vec<ArrayRef>,
    /// The input columns of each aggregate.
    pub(crate) values: Vec<Vec<ArrayRef>>,
    /// The `FILTER` of each aggregate.
    pub(crate) filters: Vec<Option<BooleanArray>>,
}

/// A detector planned once: what to evaluate per micro-batch and per closing window.
#[derive(Debug)]
pub struct DetectorPlan {
    name: String,
    sql: String,
    stream: StreamTable,
    window: WindowSpec,
    input: Vec<InputStep>,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    key_schema: SchemaRef,
    window_position: usize,
    aggregates: Vec<AggregatePlan>,
    aggregate_schema: SchemaRef,
    output: Vec<OutputStep>,
    output_schema: SchemaRef,
}

/// Function and table lookups for planning a detector without touching the session's catalog:
/// the stream tables are the only tables, and the window functions are added to the session's.
struct DetectorContext<'a> {
    state: &'a SessionState,
    streams: &'a [StreamTable],
    windows: [Arc<ScalarUDF>; 3],
}

impl ContextProvider for DetectorContext<'_> {
    fn get_table_source(&self, name: TableReference) -> DfResult<Arc<dyn TableSource>> {
        self.streams
            .iter()
            .find(|stream| stream.name == name.table())
            .map(|stream| {
                Arc::new(LogicalTableSource::new(Arc::clone(&stream.schema)))
                    as Arc<dyn TableSource>
            })
            .ok_or_else(|| {
                let names: Vec<&str> = self.streams.iter().map(|s| s.name.as_str()).collect();
                plan_datafusion_err!(
                    "table '{name}' not found; detectors read the stream tables {names:?}"
                )
            })
    }

    fn get_expr_planners(&self) -> &[Arc<dyn ExprPlanner>] {
        self.state.expr_planners()
    }

    fn get_relation_planners(&self) -> &[Arc<dyn RelationPlanner>] {
        self.state.relation_planners()
    }

    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.windows
            .iter()
            .find(|function| function.name() == name)
            .or_else(|| self.state.scalar_functions().get(name))
            .cloned()
    }

    fn get_higher_order_meta(&self, name: &str) -> Option<Arc<HigherOrderUDF>> {
        self.state.higher_order_functions().get(name).cloned()
    }

    fn get_aggregate_meta(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        self.state.aggregate_functions().get(name).cloned()
    }

    fn get_window_meta(&self, name: &str) -> Option<Arc<WindowUDF>> {
        self.state.window_functions().get(name).cloned()
    }

    fn get_variable_type(&self, _variable_names: &[String]) -> Option<DataType> {
        None
    }

    fn options(&self) -> &ConfigOptions {
        self.state.config_options()
    }

    fn udf_names(&self) -> Vec<String> {
        let windows = self.windows.iter().map(|f| f.name().to_string());
        windows
            .chain(self.state.scalar_functions().keys().cloned())
            .collect()
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        self.state
            .higher_order_functions()
            .keys()
            .cloned()
            .collect()
    }

    fn udaf_names(&self) -> Vec<String> {
        self.state.aggregate_functions().keys().cloned().collect()
    }

    fn udwf_names(&self) -> Vec<String> {
        self.state.window_functions().keys().cloned().collect()
    }
}

/// What planning needs besides the plan: the file (or name) for errors and DataFusion's
/// physical planning inputs.
struct Planner<'a> {
    origin: &'a str,
    props: &'a ExecutionProps,
    planning: PhysicalPlanningContext,
}

impl Planner<'_> {
    fn invalid(&self, message: impl Into<String>) -> DetectorError {
        DetectorError::Invalid {
            origin: self.origin.to_string(),
            message: message.into(),
        }
    }

    fn datafusion(&self, source: DataFusionError) -> DetectorError {
        DetectorError::Plan {
            origin: self.origin.to_string(),
            source,
        }
    }

    fn physical(
        &self,
        expr: &Expr,
        schema: &DFSchema,
    ) -> Result<Arc<dyn PhysicalExpr>, DetectorError> {
        create_physical_expr(expr, schema, self.props, &self.planning)
            .map_err(|e| self.datafusion(e))
    }

    fn physical_all(
        &self,
        exprs: &[Expr],
        schema: &DFSchema,
    ) -> Result<Vec<Arc<dyn PhysicalExpr>>, DetectorError> {
        exprs.iter().map(|e| self.physical(e, schema)).collect()
    }

    /// Errors when `exprs` call a window function outside the aggregate's `GROUP BY`.
    fn no_window_calls<'e>(
        &self,
        exprs: impl IntoIterator<Item = &'e Expr>,
        place: &str,
    ) -> Result<(), DetectorError> {
        if exprs.into_iter().any(contains_window_call) {
            return Err(self.invalid(format!(
                "tumble/hop/session may only appear in the GROUP BY (found in {place})"
            )));
        }
        Ok(())
    }
}

fn arrow_schema(schema: &DFSchema) -> SchemaRef {
    Arc::new(schema.as_arrow().clone())
}

fn node_name(plan: &LogicalPlan) -> String {
    let line = plan.display().to_string();
    line.split(':').next().unwrap_or_default().to_string()
}

impl DetectorPlan {
    /// Plans `sql` as the detector `name` over `streams`, with the functions (UDFs, UDAFs)
    /// registered in `context`; errors name the detector.
    pub fn from_sql(
        name: &str,
        sql: &str,
        context: &SessionContext,
        streams: &[StreamTable],
    ) -> Result<Self, DetectorError> {
        Self::plan(name, name, sql, context, streams)
    }

    /// Plans `sql`; errors name `origin` (the file path when loading a directory).
    pub(crate) fn plan(
        name: &str,
        origin: &str,
        sql: &str,
        context: &SessionContext,
        streams: &[StreamTable],
    ) -> Result<Self, DetectorError> {
        let state = context.state();
        let planner = Planner {
            origin,
            props: state.execution_props(),
            planning: PhysicalPlanningContext::default(),
        };
        let logical = logical_plan(&state, sql, streams).map_err(|e| planner.datafusion(e))?;

        // Walk down single-input nodes: those above the aggregate, the aggregate, those below.
        let mut above = Vec::new();
        let mut node = &logical;
        let aggregate = loop {
            match node {
                LogicalPlan::Aggregate(aggregate) => break aggregate,
                LogicalPlan::Projection(_)
                | LogicalPlan::Filter(_)
                | LogicalPlan::Sort(_)
                | LogicalPlan::Limit(_)
                | LogicalPlan::SubqueryAlias(_) => {
                    above.push(node);
                    node = node.inputs()[0];
                }
                LogicalPlan::TableScan(_) => {
                    return Err(planner.invalid(
                        "a detector aggregates per window: it needs a GROUP BY with \
                         tumble(...), hop(...) or session(...)",
                    ));
                }
                other => {
                    return Err(planner.invalid(format!(
                        "{} is not supported above the aggregate; a detector may only \
                         project, filter (HAVING), sort and limit its aggregate",
                        node_name(other)
                    )));
                }
            }
        };

        // The output pipeline, bottom-up.
        let mut output = Vec::new();
        for node in above.iter().rev() {
            let input_schema = node.inputs()[0].schema();
            let step = match node {
                LogicalPlan::Projection(p) => {
                    planner.no_window_calls(&p.expr, "the SELECT list")?;
                    OutputStep::Project(
                        planner.physical_all(&p.expr, input_schema)?,
                        arrow_schema(&p.schema),
                    )
                }
                LogicalPlan::Filter(f) => {
                    planner.no_window_calls([&f.predicate], "HAVING")?;
                    OutputStep::Filter(planner.physical(&f.predicate, input_schema)?)
                }
                LogicalPlan::Sort(s) => {
                    planner.no_window_calls(s.expr.iter().map(|e| &e.expr), "ORDER BY")?;
                    let exprs = create_physical_sort_exprs(
                        &s.expr,
                        input_schema,
                        planner.props,
                        &planner.planning,
                    )
                    .map_err(|e| planner.datafusion(e))?;
                    OutputStep::Sort(exprs, s.fetch)
                }
                LogicalPlan::Limit(l) => {
                    let skip = match l.get_skip_type().map_err(|e| planner.datafusion(e))? {
                        SkipType::Literal(skip) => skip,
                        SkipType::UnsupportedExpr => {
                            return Err(planner.invalid("OFFSET must be a literal"));
                        }
                    };
                    let fetch = match l.get_fetch_type().map_err(|e| planner.datafusion(e))? {
                        FetchType::Literal(fetch) => fetch,
                        FetchType::UnsupportedExpr => {
                            return Err(planner.invalid("LIMIT must be a literal"));
                        }
                    };
                    OutputStep::Limit { skip, fetch }
                }
                other => OutputStep::Rename(arrow_schema(other.schema())),
            };
            output.push(step);
        }

        // The aggregate: exactly one window call among the GROUP BY expressions.
        let input_schema = aggregate.input.schema();
        let mut window = None;
        let mut window_position = 0;
        let mut keys = Vec::new();
        let mut key_fields = Vec::new();
        for (position, expr) in aggregate.group_expr.iter().enumerate() {
            if matches!(expr, Expr::GroupingSet(_)) {
                return Err(planner.invalid("GROUPING SETS, CUBE and ROLLUP are not supported"));
            }
            match window_spec(expr).map_err(|message| planner.invalid(message))? {
                Some(spec) => {
                    if window.replace(spec).is_some() {
                        return Err(planner.invalid(
                            "the GROUP BY has more than one window (tumble, hop or session)",
                        ));
                    }
                    window_position = position;
                }
                None => {
                    planner.no_window_calls([expr], "a GROUP BY expression")?;
                    keys.push(planner.physical(expr, input_schema)?);
                    key_fields.push(Arc::clone(&aggregate.schema.fields()[position]));
                }
            }
        }
        let window = window.ok_or_else(|| {
            planner.invalid(
                "the GROUP BY needs one window: tumble(interval ...), hop(interval slide, \
                 interval width) or session(interval gap)",
            )
        })?;
        planner.no_window_calls(&aggregate.aggr_expr, "an aggregate")?;
        let physical_input = input_schema.as_arrow();
        let mut aggregates = Vec::new();
        for expr in &aggregate.aggr_expr {
            let lowered = LoweredAggregateBuilder::new(
                expr,
                input_schema,
                physical_input,
                planner.props,
                &planner.planning,
            )
            .build()
            .map_err(|e| planner.datafusion(e))?;
            let function = lowered.aggregate;
            let mut inputs = function.expressions();
            inputs.extend(function.order_bys().iter().map(|o| Arc::clone(&o.expr)));
            aggregates.push(AggregatePlan {
                function,
                inputs,
                filter: lowered.filter,
            });
        }

        // The input pipeline: down to the stream scan, then reversed.
        let mut input = Vec::new();
        let mut node = aggregate.input.as_ref();
        let stream = loop {
            let input_schema = node.inputs().first().map(|i| i.schema());
            match (node, input_schema) {
                (LogicalPlan::Projection(p), Some(schema)) => {
                    planner.no_window_calls(&p.expr, "a subquery")?;
                    input.push(InputStep::Project(
                        planner.physical_all(&p.expr, schema)?,
                        arrow_schema(&p.schema),
                    ));
                }
                (LogicalPlan::Filter(f), Some(schema)) => {
                    planner.no_window_calls([&f.predicate], "WHERE")?;
                    input.push(InputStep::Filter(planner.physical(&f.predicate, schema)?));
                }
                (LogicalPlan::SubqueryAlias(a), Some(_)) => {
                    input.push(InputStep::Rename(arrow_schema(&a.schema)));
                }
                (LogicalPlan::TableScan(scan), _) => {
                    let stream = streams
                        .iter()
                        .find(|s| s.name == scan.table_name.table())
                        .ok_or_else(|| {
                            planner.invalid(format!("{} is not a stream table", scan.table_name))
                        })?;
                    if !scan.filters.is_empty() || scan.fetch.is_some() {
                        return Err(planner.invalid("scan filters and limits are not supported"));
                    }
                    if let Some(projection) = &scan.projection {
                        input.push(InputStep::Columns(
                            projection.clone(),
                            arrow_schema(&scan.projected_schema),
                        ));
                    }
                    break stream.clone();
                }
                (other, _) => {
                    return Err(planner.invalid(format!(
                        "{} is not supported below the aggregate; a detector reads one stream \
                         table through projections and filters",
                        node_name(other)
                    )));
                }
            }
            node = node.inputs()[0];
        };
        input.reverse();
        let output_schema = arrow_schema(logical.schema());
        check_output_schema(&output_schema).map_err(|message| planner.invalid(message))?;

        Ok(DetectorPlan {
            name: name.to_string(),
            sql: sql.to_string(),
            stream,
            window,
            input,
            keys,
            key_schema: Arc::new(Schema::new(key_fields)),
            window_position,
            aggregates,
            aggregate_schema: arrow_schema(&aggregate.schema),
            output,
            output_schema,
        })
    }

    /// The detector's name (its file name without `.sql`); alerts carry it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The SQL the detector was planned from.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The stream table the detector reads.
    pub fn stream(&self) -> &StreamTable {
        &self.stream
    }

    /// The windows the detector aggregates over.
    pub fn window(&self) -> WindowSpec {
        self.window
    }

    /// The schema of the detector's output rows (one batch per fired window).
    pub fn output_schema(&self) -> &SchemaRef {
        &self.output_schema
    }

    pub(crate) fn aggregates(&self) -> &[AggregatePlan] {
        &self.aggregates
    }

    /// The schema of the non-window `GROUP BY` values.
    pub(crate) fn key_schema(&self) -> &SchemaRef {
        &self.key_schema
    }

    /// Runs the pipeline below the aggregate on rows of the stream table whose event times
    /// are `times` (no nulls), and evaluates the aggregate's inputs.
    pub(crate) fn aggregate_input(
        &self,
        batch: RecordBatch,
        times: Int64Array,
    ) -> DfResult<AggregateInput> {
        let mut batch = batch;
        let mut times = times;
        for step in &self.input {
            batch = match step {
                InputStep::Columns(indices, schema) => {
                    let columns = indices.iter().map(|&i| Arc::clone(batch.column(i)));
                    with_schema(schema, columns.collect(), batch.num_rows())?
                }
                InputStep::Filter(predicate) => {
                    let mask = predicate.evaluate(&batch)?.into_array(batch.num_rows())?;
                    let mask = mask.as_boolean_opt().ok_or_else(|| {
                        plan_datafusion_err!("WHERE does not evaluate to a boolean")
                    })?;
                    if mask.null_count() == 0 && mask.true_count() == mask.len() {
                        continue;
                    }
                    let filter = FilterBuilder::new(mask).optimize().build();
                    times = filter.filter(&times)?.as_primitive::<Int64Type>().clone();
                    filter.filter_record_batch(&batch)?
                }
                InputStep::Project(exprs, schema) => project(exprs, schema, &batch)?,
                InputStep::Rename(schema) => {
                    with_schema(schema, batch.columns().to_vec(), batch.num_rows())?
                }
            };
        }
        let rows = batch.num_rows();
        let keys = evaluate(&self.keys, &batch)?;
        let mut values = Vec::with_capacity(self.aggregates.len());
        let mut filters = Vec::with_capacity(self.aggregates.len());
        for aggregate in &self.aggregates {
            values.push(evaluate(&aggregate.inputs, &batch)?);
            let filter = match &aggregate.filter {
                Some(filter) => {
                    let mask = filter.evaluate(&batch)?.into_array(rows)?;
                    let mask = mask.as_boolean_opt().ok_or_else(|| {
                        plan_datafusion_err!("an aggregate FILTER is not a boolean")
                    })?;
                    Some(mask.clone())
                }
                None => None,
            };
            filters.push(filter);
        }
        Ok(AggregateInput {
            times,
            keys,
            values,
            filters,
        })
    }

    /// The aggregate's output for one window: the window column, the group keys and the
    /// aggregate values, in the aggregate's column order.
    pub(crate) fn aggregate_output(
        &self,
        window: ArrayRef,
        keys: Vec<ArrayRef>,
        values: Vec<ArrayRef>,
    ) -> DfResult<RecordBatch> {
        let rows = window.len();
        let mut columns = Vec::with_capacity(keys.len() + 1 + values.len());
        let mut keys = keys.into_iter();
        for position in 0..=self.keys.len() {
            if position == self.window_position {
                columns.push(Arc::clone(&window));
            } else if let Some(key) = keys.next() {
                columns.push(key);
            }
        }
        columns.extend(values);
        with_schema(&self.aggregate_schema, columns, rows)
    }

    /// Runs the pipeline above the aggregate (SELECT list, HAVING, ORDER BY, LIMIT).
    pub(crate) fn finish(&self, aggregated: RecordBatch) -> DfResult<RecordBatch> {
        let mut batch = aggregated;
        for step in &self.output {
            batch = match step {
                OutputStep::Filter(predicate) => {
                    let mask = predicate.evaluate(&batch)?.into_array(batch.num_rows())?;
                    let mask = mask.as_boolean_opt().ok_or_else(|| {
                        plan_datafusion_err!("HAVING does not evaluate to a boolean")
                    })?;
                    arrow::compute::filter_record_batch(&batch, mask)?
                }
                OutputStep::Project(exprs, schema) => project(exprs, schema, &batch)?,
                OutputStep::Rename(schema) => {
                    with_schema(schema, batch.columns().to_vec(), batch.num_rows())?
                }
                OutputStep::Sort(exprs, fetch) => {
                    let columns = exprs
                        .iter()
                        .map(|e| e.evaluate_to_sort_column(&batch))
                        .collect::<DfResult<Vec<_>>>()?;
                    let indices: UInt32Array = lexsort_to_indices(&columns, *fetch)?;
                    take_record_batch(&batch, &indices)?
                }
                OutputStep::Limit { skip, fetch } => {
                    let start = (*skip).min(batch.num_rows());
                    let length = fetch.unwrap_or(usize::MAX).min(batch.num_rows() - start);
                    batch.slice(start, length)
                }
            };
        }
        Ok(batch)
    }
}

/// Parses and plans `sql` (one statement) against the stream tables, then runs DataFusion's
/// analyzer (type coercion and the other semantic rules). The optimizer is not run: the
/// engine evaluates the plan's expressions itself and needs its shape as written.
fn logical_plan(state: &SessionState, sql: &str, streams: &[StreamTable]) -> DfResult<LogicalPlan> {
    let options = state.config_options();
    let statement = state.sql_to_statement(sql, &options.sql_parser.dialect)?;
    let provider = DetectorContext {
        state,
        streams,
        windows: window_functions(),
    };
    let planner = SqlToRel::new_with_options(&provider, ParserOptions::from(&options.sql_parser));
    let plan = planner.statement_to_plan(statement)?;
    state.analyzer().execute_and_check(plan, options, |_, _| {})
}

fn evaluate(exprs: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> DfResult<Vec<ArrayRef>> {
    exprs
        .iter()
        .map(|e| e.evaluate(batch)?.into_array(batch.num_rows()))
        .collect()
}

fn project(
    exprs: &[Arc<dyn PhysicalExpr>],
    schema: &SchemaRef,
    batch: &RecordBatch,
) -> DfResult<RecordBatch> {
    with_schema(schema, evaluate(exprs, batch)?, batch.num_rows())
}

fn with_schema(schema: &SchemaRef, columns: Vec<ArrayRef>, rows: usize) -> DfResult<RecordBatch> {
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &options,
    )?)
}
