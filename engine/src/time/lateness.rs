//! Classifying records against the watermark, and splitting off those too late to count.

use arrow::array::{Array, AsArray, BooleanArray};
use arrow::compute::{filter_record_batch, not};
use arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMicrosecondType};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

/// Where a record stands relative to the watermark, judged by the end of its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lateness {
    /// The watermark has not reached the window's end: the window is still open.
    OnTime,
    /// The window has closed, but by less than the allowed lateness: its state is still kept
    /// and its result is emitted again with the record.
    LateAllowed,
    /// The window closed longer ago than the allowed lateness: the record goes to the late
    /// side output and is counted, not aggregated.
    TooLate,
}

/// The watermark and allowed lateness at one instant: everything needed to classify records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatenessPolicy {
    /// The stream's watermark, µs; `None` before any data, when nothing is late.
    pub watermark_us: Option<i64>,
    /// How long after its end a window still accepts records, µs.
    pub allowed_lateness_us: i64,
}

impl LatenessPolicy {
    /// Classifies a record of the window ending (exclusively) at `window_end_us`. The window
    /// has closed once `window_end_us <= watermark`; it still accepts records while
    /// `window_end_us + allowed_lateness > watermark`.
    pub fn classify(&self, window_end_us: i64) -> Lateness {
        match self.watermark_us {
            Some(watermark) if window_end_us <= watermark => {
                if window_end_us.saturating_add(self.allowed_lateness_us) > watermark {
                    Lateness::LateAllowed
                } else {
                    Lateness::TooLate
                }
            }
            _ => Lateness::OnTime,
        }
    }
}

/// Rows of a batch in each [`Lateness`] class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatenessCounts {
    pub on_time: usize,
    pub late_allowed: usize,
    pub too_late: usize,
}

impl LatenessCounts {
    fn add(&mut self, lateness: Lateness) {
        match lateness {
            Lateness::OnTime => self.on_time += 1,
            Lateness::LateAllowed => self.late_allowed += 1,
            Lateness::TooLate => self.too_late += 1,
        }
    }
}

/// A batch split by [`split_by_lateness`].
#[derive(Debug, Clone)]
pub struct LatenessSplit {
    /// Rows on time or late but allowed, in their original order: for the window operator.
    pub kept: RecordBatch,
    /// Rows too late, in their original order: for the late side output.
    pub too_late: RecordBatch,
    pub counts: LatenessCounts,
}

/// A batch's time column could not be read, or the batch could not be split.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error("the batch has no time column named {column:?}")]
    MissingColumn { column: String },
    #[error(
        "the time column {column:?} holds {data_type}, not timestamps in microseconds or 64-bit integers"
    )]
    ColumnType { column: String, data_type: DataType },
    #[error(
        "the time column {column:?} has {nulls} empty values; every record needs an event time"
    )]
    NullTimes { column: String, nulls: usize },
    #[error("could not split the batch into kept and too-late rows: {0}")]
    Filter(#[source] ArrowError),
}

/// Splits `batch` into the rows to aggregate and the rows too late for their window.
///
/// `time_column` holds each row's event time (`Timestamp(Microsecond, _)` or `Int64` µs, no
/// nulls). `window_end_of` maps an event time to the exclusive end of the **last** window the
/// row belongs to: for tumbling windows its only window; for hopping windows the latest one,
/// so a row is kept while any of its windows still accepts it, and the operator classifies
/// each of the row's windows with [`LatenessPolicy::classify`]. Before the first watermark
/// every row is on time and `window_end_of` is not called.
pub fn split_by_lateness(
    batch: &RecordBatch,
    time_column: &str,
    mut window_end_of: impl FnMut(i64) -> i64,
    policy: LatenessPolicy,
) -> Result<LatenessSplit, SplitError> {
    let times = event_times(batch, time_column)?;
    let mut counts = LatenessCounts::default();
    if policy.watermark_us.is_none() {
        counts.on_time = batch.num_rows();
        return Ok(LatenessSplit {
            kept: batch.clone(),
            too_late: batch.slice(0, 0),
            counts,
        });
    }
    let keep: BooleanArray = times
        .iter()
        .map(|&time| {
            let lateness = policy.classify(window_end_of(time));
            counts.add(lateness);
            Some(lateness != Lateness::TooLate)
        })
        .collect();
    let (kept, too_late) = if counts.too_late == 0 {
        (batch.clone(), batch.slice(0, 0))
    } else if counts.too_late == batch.num_rows() {
        (batch.slice(0, 0), batch.clone())
    } else {
        let late = not(&keep).map_err(SplitError::Filter)?;
        (
            filter_record_batch(batch, &keep).map_err(SplitError::Filter)?,
            filter_record_batch(batch, &late).map_err(SplitError::Filter)?,
        )
    };
    Ok(LatenessSplit {
        kept,
        too_late,
        counts,
    })
}

/// The event times of `batch`'s column `column`, µs.
fn event_times<'a>(batch: &'a RecordBatch, column: &str) -> Result<&'a [i64], SplitError> {
    let array = batch
        .column_by_name(column)
        .ok_or_else(|| SplitError::MissingColumn {
            column: column.to_owned(),
        })?;
    let times: &[i64] = match array.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            array.as_primitive::<TimestampMicrosecondType>().values()
        }
        DataType::Int64 => array.as_primitive::<Int64Type>().values(),
        other => {
            return Err(SplitError::ColumnType {
                column: column.to_owned(),
                data_type: other.clone(),
            });
        }
    };
    match array.null_count() {
        0 => Ok(times),
        nulls => Err(SplitError::NullTimes {
            column: column.to_owned(),
            nulls,
        }),
    }
}

/// The late side output: rows too late for their window, kept until drained, with running
/// counts of late rows for metrics.
///
/// The counters are totals since creation; [`LateRecords::drain`] hands over the rows but
/// leaves the counters. Rows accumulate until drained, so drain after every micro-batch.
#[derive(Debug, Default)]
pub struct LateRecords {
    batches: Vec<RecordBatch>,
    late_allowed: u64,
    too_late: u64,
}

impl LateRecords {
    /// An empty side output.
    pub fn new() -> LateRecords {
        LateRecords::default()
    }

    /// Counts `split`'s late rows, keeps its too-late rows and returns the rows to aggregate.
    pub fn route(&mut self, split: LatenessSplit) -> RecordBatch {
        self.late_allowed = self
            .late_allowed
            .saturating_add(split.counts.late_allowed as u64);
        self.too_late = self.too_late.saturating_add(split.counts.too_late as u64);
        if split.too_late.num_rows() > 0 {
            self.batches.push(split.too_late);
        }
        split.kept
    }

    /// Late rows accepted into a window that had closed, since creation.
    pub fn late_allowed(&self) -> u64 {
        self.late_allowed
    }

    /// Rows too late for their window, since creation.
    pub fn too_late(&self) -> u64 {
        self.too_late
    }

    /// Too-late rows not yet drained.
    pub fn pending_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// Hands over the too-late rows kept so far, oldest batch first.
    pub fn drain(&mut self) -> Vec<RecordBatch> {
        std::mem::take(&mut self.batches)
    }
}
