//! Event-time windows: the `tumble`, `hop` and `session` SQL functions and window arithmetic.
//!
//! The functions exist so DataFusion can plan a detector written in Arroyo's window syntax;
//! they return Arroyo's `window` struct type (`{start, end}`, here microsecond UTC
//! timestamps) but are never evaluated row by row: the planner finds the one `GROUP BY`
//! expression that calls them and the engine assigns windows from the event-time column.
//! Windows are aligned to the Unix epoch, as in Arroyo.

use std::any::Any;
use std::sync::Arc;

use arrow::array::{ArrayRef, StructArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Fields, IntervalUnit, TimeUnit};
use datafusion::common::{Result as DfResult, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The event-time windows a detector aggregates over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    /// `tumble(width)`: back-to-back windows `[k * width, (k + 1) * width)`.
    Tumbling {
        /// Window width in microseconds.
        width_us: i64,
    },
    /// `hop(slide, width)`: windows of `width` starting every `slide`; `width` is a multiple
    /// of `slide`, so every event falls in exactly `width / slide` windows.
    Hopping {
        /// Distance between window starts in microseconds.
        slide_us: i64,
        /// Window width in microseconds.
        width_us: i64,
    },
    /// `session(gap)`: per group key, events closer than `gap` to each other form one session
    /// `[first event, last event + gap)`; an event that bridges two sessions merges them.
    Session {
        /// Inactivity gap in microseconds.
        gap_us: i64,
    },
}

impl WindowSpec {
    /// The end of the last window an event at `time_us` falls in: once
    /// `watermark >= end + allowed lateness`, such an event is too late for every window.
    pub(crate) fn latest_end(&self, time_us: i64) -> i64 {
        match *self {
            WindowSpec::Tumbling { width_us } => time_us.div_euclid(width_us) * width_us + width_us,
            WindowSpec::Hopping { slide_us, width_us } => {
                time_us.div_euclid(slide_us) * slide_us + width_us
            }
            WindowSpec::Session { gap_us } => time_us.saturating_add(gap_us),
        }
    }
}

impl std::fmt::Display for WindowSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WindowSpec::Tumbling { width_us } => write!(f, "tumble({width_us}us)"),
            WindowSpec::Hopping { slide_us, width_us } => {
                write!(f, "hop({slide_us}us, {width_us}us)")
            }
            WindowSpec::Session { gap_us } => write!(f, "session({gap_us}us)"),
        }
    }
}

/// Which window function a `GROUP BY` expression calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum WindowKind {
    Tumble,
    Hop,
    Session,
}

impl WindowKind {
    fn name(self) -> &'static str {
        match self {
            WindowKind::Tumble => "tumble",
            WindowKind::Hop => "hop",
            WindowKind::Session => "session",
        }
    }
}

/// A window function as DataFusion sees it: typed, plannable, not evaluable.
#[derive(Debug, PartialEq, Eq, Hash)]
struct WindowFunction {
    kind: WindowKind,
    signature: Signature,
}

impl WindowFunction {
    fn new(kind: WindowKind) -> Self {
        let interval = DataType::Interval(IntervalUnit::MonthDayNano);
        let arguments = match kind {
            WindowKind::Tumble | WindowKind::Session => vec![interval],
            WindowKind::Hop => vec![interval.clone(), interval],
        };
        WindowFunction {
            kind,
            signature: Signature::exact(arguments, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for WindowFunction {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(window_type())
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        exec_err!(
            "{}() assigns event-time windows in a detector's GROUP BY; it cannot be evaluated \
             row by row",
            self.kind.name()
        )
    }
}

/// The three window functions, for the detector planner's function lookup.
pub(crate) fn window_functions() -> [Arc<ScalarUDF>; 3] {
    [WindowKind::Tumble, WindowKind::Hop, WindowKind::Session]
        .map(|kind| Arc::new(ScalarUDF::from(WindowFunction::new(kind))))
}

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn window_fields() -> Fields {
    Fields::from(vec![
        Field::new("start", timestamp_type(), false),
        Field::new("end", timestamp_type(), false),
    ])
}

/// The type of a window value: `Struct {start, end}` of microsecond UTC timestamps.
pub(crate) fn window_type() -> DataType {
    DataType::Struct(window_fields())
}

/// A column of `rows` copies of the window `[start_us, end_us)`.
pub(crate) fn window_column(start_us: i64, end_us: i64, rows: usize) -> ArrayRef {
    let start = TimestampMicrosecondArray::from_value(start_us, rows).with_timezone("UTC");
    let end = TimestampMicrosecondArray::from_value(end_us, rows).with_timezone("UTC");
    Arc::new(StructArray::new(
        window_fields(),
        vec![Arc::new(start), Arc::new(end)],
        None,
    ))
}

/// The window function `expr` calls (looking through aliases) and its arguments.
fn window_call(expr: &Expr) -> Option<(WindowKind, &[Expr])> {
    match expr {
        Expr::Alias(alias) => window_call(&alias.expr),
        Expr::ScalarFunction(call) => {
            let inner: &dyn Any = call.func.inner().as_ref();
            inner
                .downcast_ref::<WindowFunction>()
                .map(|function| (function.kind, call.args.as_slice()))
        }
        _ => None,
    }
}

/// Whether `expr` calls a window function anywhere inside it.
pub(crate) fn contains_window_call(expr: &Expr) -> bool {
    use datafusion::common::tree_node::TreeNode;
    expr.exists(|e| Ok(window_call(e).is_some()))
        .unwrap_or(false)
}

/// The window spec of a `GROUP BY` expression: `Ok(None)` when it is not a window call,
/// `Err(message)` when it is one with unusable arguments.
pub(crate) fn window_spec(expr: &Expr) -> Result<Option<WindowSpec>, String> {
    let Some((kind, args)) = window_call(expr) else {
        return Ok(None);
    };
    let name = kind.name();
    let micros = |i: usize| -> Result<i64, String> {
        let arg = args
            .get(i)
            .ok_or_else(|| format!("{name}() is missing an interval argument"))?;
        interval_micros(arg).map_err(|message| format!("{name}(): {message}"))
    };
    let spec = match kind {
        WindowKind::Tumble => WindowSpec::Tumbling {
            width_us: micros(0)?,
        },
        WindowKind::Session => WindowSpec::Session { gap_us: micros(0)? },
        WindowKind::Hop => {
            let (slide_us, width_us) = (micros(0)?, micros(1)?);
            if width_us % slide_us != 0 {
                return Err(format!(
                    "hop(slide, width): the width ({width_us} us) must be a multiple of the \
                     slide ({slide_us} us)"
                ));
            }
            WindowSpec::Hopping { slide_us, width_us }
        }
    };
    Ok(Some(spec))
}

/// A literal interval in whole microseconds, positive and without months.
fn interval_micros(expr: &Expr) -> Result<i64, String> {
    let micros = match expr {
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _) => {
            if v.months != 0 {
                return Err("intervals in months have no fixed length; use days".into());
            }
            if v.nanoseconds % 1000 != 0 {
                return Err("the interval must be a whole number of microseconds".into());
            }
            i64::from(v.days)
                .checked_mul(MICROS_PER_DAY)
                .and_then(|days| days.checked_add(v.nanoseconds / 1000))
                .ok_or("the interval is too long")?
        }
        Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _) => {
            i64::from(v.days) * MICROS_PER_DAY + i64::from(v.milliseconds) * 1000
        }
        other => {
            return Err(format!(
                "the interval must be a literal such as interval '1 minute', got {other}"
            ));
        }
    };
    if micros <= 0 {
        return Err(format!("the interval must be positive, got {micros} us"));
    }
    Ok(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_end_of_fixed_and_session_windows() {
        let tumble = WindowSpec::Tumbling { width_us: 60 };
        assert_eq!(tumble.latest_end(0), 60);
        assert_eq!(tumble.latest_end(59), 60);
        assert_eq!(tumble.latest_end(60), 120);
        assert_eq!(tumble.latest_end(-1), 0);
        let hop = WindowSpec::Hopping {
            slide_us: 10,
            width_us: 30,
        };
        // Windows containing 25: [0, 30), [10, 40), [20, 50).
        assert_eq!(hop.latest_end(25), 50);
        let session = WindowSpec::Session { gap_us: 5 };
        assert_eq!(session.latest_end(10), 15);
    }

    #[test]
    fn window_column_has_the_struct_type() {
        let column = window_column(0, 60, 3);
        assert_eq!(column.data_type(), &window_type());
        assert_eq!(column.len(), 3);
    }
}
