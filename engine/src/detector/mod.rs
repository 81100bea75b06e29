//! SQL detectors evaluated incrementally per event-time window.
//!
//! A detector is one `.sql` file: a DataFusion SQL query over a stream table in Arroyo's window
//! syntax, e.g.
//!
//! ```sql
//! SELECT entity, tumble(interval '1 minute') AS window,
//!        approx_percentile_cont(value, 0.99) AS p99, count(*) AS samples
//! FROM db_metrics WHERE name = 'db_query_latency_ms'
//! GROUP BY entity, window HAVING approx_percentile_cont(value, 0.99) > 250
//! ```
//!
//! # Planning, once
//!
//! [`load_detectors`] plans every `*.sql` file of a directory, in name order; a broken file
//! fails start-up with DataFusion's error and the file's path, and so does one whose output
//! rows could not become alerts (no string `entity` column, a `score` that is not a number).
//! [`DetectorPlan`] finds the one aggregate of the logical plan and the one window call in its
//! `GROUP BY` (`tumble(width)`, `hop(slide, width)` with the width a multiple of the slide, or
//! `session(gap)`, all with literal intervals), turns the `WHERE`, the group keys and the
//! aggregate arguments into physical expressions, and keeps the part above the aggregate
//! (`SELECT` list, `HAVING`, `ORDER BY`, `LIMIT`) as physical expressions too. Nothing is
//! re-planned at run time.
//!
//! # Evaluating, per micro-batch and per window
//!
//! [`Detector::process_batch`] routes each row to its window(s) by event time and feeds the
//! window's accumulators (partial aggregate states, so state is per series, not per event);
//! out-of-order rows are simply aggregated into their window. The watermark comes from
//! outside ([`crate::time`]): [`Detector::on_watermark`] fires every window with
//! `end <= watermark` that has rows not yet emitted, returning a [`WindowResult`] (the
//! detector's output rows for that window) per window.
//!
//! # Late rows
//!
//! A fired window's state is kept until `watermark >= end + allowed_lateness`
//! ([`DetectorOptions::allowed_lateness_us`]). A row arriving for such a window updates it, and
//! the next [`Detector::on_watermark`] fires it again with the next
//! [`WindowResult::revision`]. Rows whose every window is already dropped are too late:
//! [`Detector::process_batch`] returns them as a side output and counts them. For sessions, a
//! row at `t` is too late once `t + gap + allowed_lateness <= watermark`.
//!
//! # Output
//!
//! [`WindowResult::alerts`] turns output rows into `ops.alerts` records (see the alert
//! mapping in `alert.rs`: `entity` is required, `score` defaults to 1.0, other numeric
//! columns are evidence). [`Detector::snapshot`] and [`Detector::restore`] checkpoint the
//! open windows as Arrow record batches ([`DetectorSnapshot::to_ipc`]).

mod alert;
mod error;
mod plan;
mod snapshot;
mod state;
mod window;

use std::path::Path;
use std::sync::Arc;

use crate::sql_files::{SqlFile, read_sql_files};
use arrow::array::{Array, BooleanArray, RecordBatch};
use arrow::compute::{filter_record_batch, not};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use opsloop_schemas::ops::Alert;

pub use error::DetectorError;
pub use plan::{DetectorPlan, StreamTable};
pub use snapshot::DetectorSnapshot;
pub use window::WindowSpec;

use state::{Fired, FixedWindows, Sessions, snapshot_schema};

/// A session with the functions detectors may call: DataFusion's built-ins and opsloop's
/// UDFs and UDAFs (`hdr_quantile`, drift statistics, forecasts). The window functions are
/// provided by the detector planner itself.
pub fn session_context() -> SessionContext {
    let context = SessionContext::new();
    opsloop_udfs::datafusion::register(&context);
    context
}

/// Run-time options shared by the detectors of a pipeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DetectorOptions {
    /// How long after a window completes (`watermark >= end`) its state is kept for late
    /// rows, in microseconds of event time. 0 (or less) drops a window as soon as it fires.
    pub allowed_lateness_us: i64,
}

/// The output of one detector for one window.
#[derive(Debug, Clone)]
pub struct WindowResult {
    /// The detector's name.
    pub detector: String,
    /// Window start, microseconds since the Unix epoch, inclusive.
    pub start_us: i64,
    /// Window end, microseconds since the Unix epoch, exclusive.
    pub end_us: i64,
    /// 0 for the first emission of the window, then 1, 2, ... for each re-emission after
    /// late rows updated it.
    pub revision: u32,
    /// The detector's output rows for the window (possibly none, e.g. when `HAVING` filtered
    /// every group), in [`DetectorPlan::output_schema`].
    pub batch: RecordBatch,
}

impl WindowResult {
    /// One alert per output row (see the module docs of the alert mapping);
    /// `emitted_us` is the processing time to stamp them with.
    pub fn alerts(&self, emitted_us: i64) -> Result<Vec<Alert>, DetectorError> {
        alert::alerts(self, emitted_us)
    }
}

/// What [`Detector::process_batch`] did with a batch.
#[derive(Debug, Clone)]
pub struct BatchOutcome {
    /// The input rows that were too late for every window they fall in (or had no event
    /// time), in the stream's schema: the late side output.
    pub too_late: RecordBatch,
}

/// The open windows of a detector.
#[derive(Debug)]
enum Windows {
    Fixed(FixedWindows),
    Sessions(Sessions),
}

/// A planned detector and its open windows.
#[derive(Debug)]
pub struct Detector {
    plan: Arc<DetectorPlan>,
    options: DetectorOptions,
    /// The largest watermark seen; `i64::MIN` before the first.
    watermark: i64,
    too_late_rows: u64,
    windows: Windows,
}

impl Detector {
    /// A detector with no open windows.
    pub fn new(plan: Arc<DetectorPlan>, options: DetectorOptions) -> Result<Self, DetectorError> {
        let windows = match plan.window() {
            WindowSpec::Session { gap_us } => {
                Windows::Sessions(Sessions::new(&plan, gap_us).map_err(|e| execution(&plan, e))?)
            }
            WindowSpec::Tumbling { width_us } => {
                Windows::Fixed(FixedWindows::new(width_us, width_us))
            }
            WindowSpec::Hopping { slide_us, width_us } => {
                Windows::Fixed(FixedWindows::new(slide_us, width_us))
            }
        };
        let options = DetectorOptions {
            allowed_lateness_us: options.allowed_lateness_us.max(0),
        };
        Ok(Detector {
            plan,
            options,
            watermark: i64::MIN,
            too_late_rows: 0,
            windows,
        })
    }

    /// The detector's name.
    pub fn name(&self) -> &str {
        self.plan.name()
    }

    /// The detector's plan.
    pub fn plan(&self) -> &Arc<DetectorPlan> {
        &self.plan
    }

    /// The largest watermark seen, `None` before the first.
    pub fn watermark(&self) -> Option<i64> {
        (self.watermark != i64::MIN).then_some(self.watermark)
    }

    /// Rows dropped as too late since the detector started (snapshots carry the count).
    pub fn too_late_rows(&self) -> u64 {
        self.too_late_rows
    }

    /// Aggregates a micro-batch of the detector's stream table into its open windows.
    pub fn process_batch(&mut self, batch: &RecordBatch) -> Result<BatchOutcome, DetectorError> {
        let stream = self.plan.stream();
        if !Arc::ptr_eq(&batch.schema(), stream.schema())
            && batch.schema().fields() != stream.schema().fields()
        {
            return Err(DetectorError::InputSchema {
                detector: self.plan.name().to_string(),
                table: stream.name().to_string(),
                message: format!("got {:?}", batch.schema().fields()),
            });
        }
        let times = stream.event_times(batch);
        let (batch, times, too_late) = match self.too_late(&times) {
            None => (batch.clone(), times, RecordBatch::new_empty(batch.schema())),
            Some(late) => {
                let keep = not(&late).map_err(|e| execution(&self.plan, e.into()))?;
                let split = |mask: &BooleanArray| {
                    filter_record_batch(batch, mask).map_err(|e| execution(&self.plan, e.into()))
                };
                let kept_times = arrow::compute::filter(&times, &keep)
                    .map_err(|e| execution(&self.plan, e.into()))?;
                let kept_times = arrow::array::AsArray::as_primitive(&kept_times).clone();
                (split(&keep)?, kept_times, split(&late)?)
            }
        };
        if too_late.num_rows() > 0 {
            self.too_late_rows += too_late.num_rows() as u64;
            tracing::debug!(
                detector = self.plan.name(),
                rows = too_late.num_rows(),
                "rows too late for every window they fall in"
            );
        }
        let plan = &self.plan;
        let (watermark, lateness) = (self.watermark, self.options.allowed_lateness_us);
        let result = plan
            .aggregate_input(batch, times)
            .and_then(|input| match &mut self.windows {
                Windows::Fixed(windows) => windows.update(plan, &input, watermark, lateness),
                Windows::Sessions(sessions) => sessions.update(plan, &input),
            });
        result.map_err(|e| execution(plan, e))?;
        Ok(BatchOutcome { too_late })
    }

    /// The rows that are too late for every window, `None` when there are none.
    fn too_late(&self, times: &arrow::array::Int64Array) -> Option<BooleanArray> {
        let window = self.plan.window();
        let lateness = self.options.allowed_lateness_us;
        let late = |time: i64| window.latest_end(time).saturating_add(lateness) <= self.watermark;
        if times.null_count() == 0 {
            let earliest = times.values().iter().min()?;
            if !late(*earliest) {
                return None;
            }
        }
        Some(
            times
                .iter()
                .map(|time| Some(time.is_none_or(late)))
                .collect(),
        )
    }

    /// Advances the watermark (it never goes back) and fires the windows it completes, plus
    /// any kept window that late rows updated since it last fired; drops windows past their
    /// allowed lateness. Results are ordered by window start.
    pub fn on_watermark(&mut self, watermark_us: i64) -> Result<Vec<WindowResult>, DetectorError> {
        self.watermark = self.watermark.max(watermark_us);
        let plan = &self.plan;
        let lateness = self.options.allowed_lateness_us;
        let fired = match &mut self.windows {
            Windows::Fixed(windows) => windows.on_watermark(plan, self.watermark, lateness),
            Windows::Sessions(sessions) => sessions.on_watermark(plan, self.watermark, lateness),
        }
        .map_err(|e| execution(plan, e))?;
        Ok(fired
            .into_iter()
            .map(
                |Fired {
                     start,
                     end,
                     revision,
                     batch,
                 }| WindowResult {
                    detector: plan.name().to_string(),
                    start_us: start,
                    end_us: end,
                    revision,
                    batch,
                },
            )
            .collect())
    }

    /// Open windows (sessions, for session windows), fired-but-kept ones included.
    pub fn open_windows(&self) -> usize {
        match &self.windows {
            Windows::Fixed(windows) => windows.open_windows(),
            Windows::Sessions(sessions) => sessions.open_windows(),
        }
    }

    /// Groups held: the sum over open windows of their group keys (for sessions: the keys
    /// with an open session).
    pub fn active_groups(&self) -> usize {
        match &self.windows {
            Windows::Fixed(windows) => windows.active_groups(),
            Windows::Sessions(sessions) => sessions.active_groups(),
        }
    }

    /// Bytes of window state: accumulators (as DataFusion reports them), key interners and
    /// bookkeeping.
    pub fn state_bytes(&self) -> usize {
        match &self.windows {
            Windows::Fixed(windows) => windows.state_bytes(),
            Windows::Sessions(sessions) => sessions.state_bytes(),
        }
    }

    /// The open windows' state, for a checkpoint. The detector goes on unchanged (fixed
    /// windows' accumulators are rebuilt from the very partial states the snapshot holds).
    pub fn snapshot(&mut self) -> Result<DetectorSnapshot, DetectorError> {
        let plan = &self.plan;
        let state = match &mut self.windows {
            Windows::Fixed(windows) => windows.snapshot(plan),
            Windows::Sessions(sessions) => sessions.snapshot(plan),
        }
        .map_err(|e| execution(plan, e))?;
        Ok(DetectorSnapshot {
            detector: plan.name().to_string(),
            window: plan.window().to_string(),
            watermark_us: self.watermark(),
            too_late_rows: self.too_late_rows,
            state,
        })
    }

    /// A detector for `plan` that goes on from `snapshot`.
    pub fn restore(
        plan: Arc<DetectorPlan>,
        options: DetectorOptions,
        snapshot: &DetectorSnapshot,
    ) -> Result<Self, DetectorError> {
        let refuse = |message: String| DetectorError::Snapshot { message };
        if snapshot.detector != plan.name() {
            return Err(refuse(format!(
                "the snapshot is of detector {}, not {}",
                snapshot.detector,
                plan.name()
            )));
        }
        if snapshot.window != plan.window().to_string() {
            return Err(refuse(format!(
                "detector {}: the snapshot's window {} is not the plan's {}",
                plan.name(),
                snapshot.window,
                plan.window()
            )));
        }
        let expected = snapshot_schema(&plan).map_err(|e| execution(&plan, e))?;
        let types = |schema: &arrow::datatypes::Schema| {
            schema
                .fields()
                .iter()
                .map(|f| f.data_type().clone())
                .collect::<Vec<_>>()
        };
        if types(&expected) != types(&snapshot.state.schema()) {
            return Err(refuse(format!(
                "detector {}: the snapshot's state columns do not match the plan (was the SQL \
                 changed?)",
                plan.name()
            )));
        }
        let mut detector = Detector::new(plan, options)?;
        detector.watermark = snapshot.watermark_us.unwrap_or(i64::MIN);
        detector.too_late_rows = snapshot.too_late_rows;
        let plan = &detector.plan;
        match &mut detector.windows {
            Windows::Fixed(windows) => windows.restore(plan, &snapshot.state),
            Windows::Sessions(sessions) => sessions.restore(plan, &snapshot.state),
        }
        .map_err(|e| execution(plan, e))?;
        Ok(detector)
    }
}

fn execution(plan: &DetectorPlan, source: DataFusionError) -> DetectorError {
    DetectorError::Execution {
        detector: plan.name().to_string(),
        source,
    }
}

/// Plans every `*.sql` file of `dir` (sorted by file name) as a detector named after the file
/// (without `.sql`), over `streams`, with the functions registered in `context` (see
/// [`session_context`]). The first broken file fails the whole load with its path.
pub fn load_detectors(
    dir: &Path,
    context: &SessionContext,
    streams: &[StreamTable],
    options: DetectorOptions,
) -> Result<Vec<Detector>, DetectorError> {
    let files = read_sql_files(dir)?;
    let mut detectors = Vec::with_capacity(files.len());
    for SqlFile { name, path, sql } in files {
        let plan = DetectorPlan::plan(&name, &path.display().to_string(), &sql, context, streams)?;
        tracing::info!(detector = %name, window = %plan.window(), "planned detector");
        detectors.push(Detector::new(Arc::new(plan), options)?);
    }
    Ok(detectors)
}
