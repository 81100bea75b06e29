//! Forecast jobs: DataFusion SQL over the windowed aggregates, with opsloop's forecasting
//! functions (`forecast_holt_winters_peak`, `forecast_linear`, `steps_to_threshold`, ...).
//!
//! Each job is one query, run once per predictive cycle over three tables:
//!
//! - `windows(entity, metric, window_start, window_end, samples, sum, mean, min, max, last,
//!   p99)`: the [`Windows`](crate::windows::Windows) the cycle keeps;
//! - `capacity(resource, metric, "limit")`: the configured limits (`[[predict.capacity]]`);
//! - `cycle(now, window_s, hour_steps, day_steps, week_steps, season_steps, latency_metric)`:
//!   one row, the cycle's time and the window counts of its horizons.
//!
//! Every row a job returns is one forecast: `entity` (text), `forecast` (text: what is
//! forecast, e.g. `latency_p99_ms`, `capacity_share`, `cost_per_query_usd`) and `value`
//! (number) are required; `resource` (text), `lower`, `upper`, `time_to_exhaustion_s`
//! (numbers) and `horizon_s` (integer) are optional. A row whose value is NULL (too little
//! history to forecast) is left out. Rows become [`Forecast`] records (`ops.forecasts`). The
//! built-in jobs are the files of `sql/forecast/`.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::prelude::{SessionConfig, SessionContext};
use opsloop_engine::sql_files::read_sql_files;
use opsloop_schemas::ops::Forecast;

use crate::error::PredictError;

/// What a cycle's jobs read besides the windows.
#[derive(Debug, Clone, PartialEq)]
pub struct CycleInputs {
    pub now_us: i64,
    pub window_s: i64,
    pub season_steps: i64,
    pub latency_metric: String,
    /// (resource, metric, limit).
    pub capacity: Vec<(String, String, f64)>,
}

/// Columns every job returns.
const REQUIRED: [&str; 3] = ["entity", "forecast", "value"];

#[derive(Debug, Clone, PartialEq)]
struct Job {
    name: String,
    sql: String,
}

/// The jobs a predictor runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastJobs {
    jobs: Vec<Job>,
}

const BUILTIN: [(&str, &str); 4] = [
    (
        "latency_p99_next_hour",
        include_str!("../../sql/forecast/latency_p99_next_hour.sql"),
    ),
    (
        "capacity_next_week",
        include_str!("../../sql/forecast/capacity_next_week.sql"),
    ),
    (
        "cost_per_query",
        include_str!("../../sql/forecast/cost_per_query.sql"),
    ),
    (
        "cost_total_trend",
        include_str!("../../sql/forecast/cost_total_trend.sql"),
    ),
];

impl ForecastJobs {
    /// The built-in jobs (`sql/forecast/`).
    pub fn builtin() -> Self {
        ForecastJobs {
            jobs: BUILTIN
                .iter()
                .map(|(name, sql)| Job {
                    name: (*name).to_owned(),
                    sql: (*sql).to_owned(),
                })
                .collect(),
        }
    }

    /// Every `.sql` file of `dir`, in name order.
    pub fn load(dir: &Path) -> Result<Self, PredictError> {
        let jobs = read_sql_files(dir)?
            .into_iter()
            .map(|file| Job {
                name: file.name,
                sql: file.sql,
            })
            .collect();
        Ok(ForecastJobs { jobs })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.jobs.iter().map(|job| job.name.as_str())
    }

    /// Runs every job over `windows`; the first job that fails ends the run with its error. Each
    /// job's forecasts come sorted by entity, forecast and resource.
    pub async fn run(
        &self,
        windows: RecordBatch,
        inputs: &CycleInputs,
    ) -> Result<Vec<Forecast>, PredictError> {
        // One partition: the windows are small, and sums come out the same at every replay.
        let context =
            SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
        opsloop_udfs::datafusion::register(&context);
        let register = |name: &str, batch: RecordBatch| {
            context
                .register_batch(name, batch)
                .map(drop)
                .map_err(|error| PredictError::Tables(error.to_string()))
        };
        register("windows", windows)?;
        register("capacity", capacity_table(&inputs.capacity))?;
        register("cycle", cycle_table(inputs))?;
        let mut forecasts = Vec::new();
        for job in &self.jobs {
            let failed = |reason: String| PredictError::Job {
                job: job.name.clone(),
                reason,
            };
            let frame = context
                .sql(&job.sql)
                .await
                .map_err(|error| failed(error.to_string()))?;
            for required in REQUIRED {
                if frame
                    .schema()
                    .field_with_unqualified_name(required)
                    .is_err()
                {
                    return Err(failed(format!("the query has no `{required}` column")));
                }
            }
            let batches = frame
                .collect()
                .await
                .map_err(|error| failed(error.to_string()))?;
            let mut made = Vec::new();
            for batch in &batches {
                made.extend(rows(&job.name, inputs.now_us, batch).map_err(failed)?);
            }
            made.sort_by(|a, b| {
                (&a.entity, &a.forecast, &a.resource).cmp(&(&b.entity, &b.forecast, &b.resource))
            });
            forecasts.extend(made);
        }
        Ok(forecasts)
    }

    /// Plans and runs every job on empty tables: a query that does not parse, names a table or
    /// column that does not exist, or lacks a required output column fails here, at start-up.
    pub async fn check(&self, inputs: &CycleInputs) -> Result<(), PredictError> {
        let empty = RecordBatch::new_empty(crate::windows::Windows::schema());
        self.run(empty, inputs).await.map(drop)
    }
}

fn capacity_table(capacity: &[(String, String, f64)]) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("resource", DataType::Utf8, false),
        Field::new("metric", DataType::Utf8, false),
        Field::new("limit", DataType::Float64, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(capacity.iter().map(|c| &c.0))),
        Arc::new(StringArray::from_iter_values(capacity.iter().map(|c| &c.1))),
        Arc::new(Float64Array::from_iter_values(capacity.iter().map(|c| c.2))),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).expect("columns match the schema")
}

fn cycle_table(inputs: &CycleInputs) -> RecordBatch {
    let window_s = inputs.window_s.max(1);
    let steps = |seconds: i64| Int64Array::from(vec![(seconds / window_s).max(1)]);
    let time = DataType::Timestamp(
        datafusion::arrow::datatypes::TimeUnit::Microsecond,
        Some("UTC".into()),
    );
    let schema = Schema::new(vec![
        Field::new("now", time, false),
        Field::new("window_s", DataType::Int64, false),
        Field::new("hour_steps", DataType::Int64, false),
        Field::new("day_steps", DataType::Int64, false),
        Field::new("week_steps", DataType::Int64, false),
        Field::new("season_steps", DataType::Int64, false),
        Field::new("latency_metric", DataType::Utf8, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from(vec![inputs.now_us]).with_timezone("UTC")),
        Arc::new(Int64Array::from(vec![window_s])),
        Arc::new(steps(3_600)),
        Arc::new(steps(86_400)),
        Arc::new(steps(7 * 86_400)),
        Arc::new(Int64Array::from(vec![inputs.season_steps.max(1)])),
        Arc::new(StringArray::from(vec![inputs.latency_metric.as_str()])),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).expect("columns match the schema")
}

/// The forecasts of one output batch (see the module docs for the columns), made at `now_us`;
/// their cycle id is the predictor's to set.
fn rows(job: &str, now_us: i64, batch: &RecordBatch) -> Result<Vec<Forecast>, String> {
    let column = |name: &str, to: &DataType, required: bool| -> Result<Option<ArrayRef>, String> {
        match batch.column_by_name(name) {
            Some(array) => cast(array, to)
                .map(Some)
                .map_err(|error| format!("column {name}: {error}")),
            None if required => Err(format!("the query has no `{name}` column")),
            None => Ok(None),
        }
    };
    let text = |name, required| column(name, &DataType::Utf8, required);
    let number = |name, required| column(name, &DataType::Float64, required);
    let entity = text("entity", true)?;
    let forecast = text("forecast", true)?;
    let value = number("value", true)?;
    let resource = text("resource", false)?;
    let lower = number("lower", false)?;
    let upper = number("upper", false)?;
    let exhaustion = number("time_to_exhaustion_s", false)?;
    let horizon = column("horizon_s", &DataType::Int64, false)?;
    let strings = |array: &Option<ArrayRef>| {
        array
            .as_ref()
            .and_then(|a| a.as_any().downcast_ref::<StringArray>().cloned())
    };
    let floats = |array: &Option<ArrayRef>| {
        array
            .as_ref()
            .and_then(|a| a.as_any().downcast_ref::<Float64Array>().cloned())
    };
    let (entity, forecast, value) = (
        strings(&entity).expect("cast to text"),
        strings(&forecast).expect("cast to text"),
        floats(&value).expect("cast to numbers"),
    );
    let (resource, lower, upper, exhaustion) = (
        strings(&resource),
        floats(&lower),
        floats(&upper),
        floats(&exhaustion),
    );
    let horizon = horizon
        .as_ref()
        .and_then(|a| a.as_any().downcast_ref::<Int64Array>().cloned());
    let float_at = |array: &Option<Float64Array>, row: usize| {
        array
            .as_ref()
            .filter(|a| a.is_valid(row))
            .map(|a| a.value(row))
            .filter(|v| v.is_finite())
    };
    let mut forecasts = Vec::new();
    for row in 0..batch.num_rows() {
        if !value.is_valid(row) || !value.value(row).is_finite() {
            continue;
        }
        if entity.is_null(row) || forecast.is_null(row) {
            return Err(format!("row {row} has a NULL entity or forecast"));
        }
        forecasts.push(Forecast {
            cycle_id: String::new(),
            time_us: now_us,
            job: job.to_owned(),
            entity: entity.value(row).to_owned(),
            forecast: forecast.value(row).to_owned(),
            resource: resource
                .as_ref()
                .filter(|a| a.is_valid(row))
                .map(|a| a.value(row).to_owned()),
            value: value.value(row),
            lower: float_at(&lower, row),
            upper: float_at(&upper, row),
            horizon_s: horizon
                .as_ref()
                .filter(|a| a.is_valid(row))
                .map(|a| a.value(row)),
            time_to_exhaustion_s: float_at(&exhaustion, row),
        });
    }
    Ok(forecasts)
}
