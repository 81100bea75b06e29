//! DataFusion adapters: the only module that knows DataFusion. Each function wraps the plain-Rust
//! core; [`register`] adds them all to a session, so a DataFusion upgrade touches this folder only.
//!
//! Aggregates:
//! - `hdr_quantile(value, q)`: quantile from a mergeable hdrhistogram sketch (0.1% relative
//!   resolution); has a groups accumulator for large GROUP BYs.
//! - `drift_baseline(value)` / `drift_baseline_categorical(category)`: a reference, as bytes,
//!   to store and compare windows with.
//! - `psi`, `jensen_shannon`, `hellinger`, `ks_statistic`, `ks_p_value`, `wasserstein_normed`
//!   `(value, baseline)` and `chi_square_p_value`, `l_infinity` `(category, baseline)`: drift of
//!   the group's values against a stored baseline.
//!
//! Scalars over arrays of a series' recent values (e.g. `array_agg(v ORDER BY ts)`):
//! - `forecast_holt_winters(values, period, horizon)`, `forecast_arima(values, horizon)`: a
//!   struct `{mean, lower, upper}` (95% interval) `horizon` steps ahead;
//! - `forecast_holt_winters_peak(values, period, horizon)`: the step of the next `horizon` with
//!   the highest mean ("the p99 at its worst over the next hour");
//! - `forecast_linear(values, horizon)`: the least-squares line `horizon` steps ahead, with its
//!   95% prediction interval ("storage a week from now");
//! - `steps_to_threshold(values, threshold)`: steps until the linear trend reaches the threshold
//!   (NULL when it is not heading there).

mod drift;
mod forecast;
mod quantile;

use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use datafusion::prelude::SessionContext;

pub use drift::DriftStatistic;

/// Every aggregate function of this crate.
pub fn aggregate_functions() -> Vec<AggregateUDF> {
    let mut functions = vec![
        AggregateUDF::from(quantile::HdrQuantile::new()),
        AggregateUDF::from(drift::DriftBaseline::numeric()),
        AggregateUDF::from(drift::DriftBaseline::categorical()),
    ];
    functions.extend(
        DriftStatistic::ALL
            .iter()
            .map(|&statistic| AggregateUDF::from(drift::DriftAggregate::new(statistic))),
    );
    functions
}

/// Every scalar function of this crate.
pub fn scalar_functions() -> Vec<ScalarUDF> {
    forecast::functions()
}

/// Registers every function with a session.
pub fn register(context: &SessionContext) {
    for function in aggregate_functions() {
        context.register_udaf(function);
    }
    for function in scalar_functions() {
        context.register_udf(function);
    }
}

/// The literal value of an argument, for parameters like a quantile that must be constant.
fn literal_f64(
    expression: &std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>,
) -> Option<f64> {
    use datafusion::common::ScalarValue;
    use datafusion::physical_expr::expressions::Literal;
    let literal = expression.downcast_ref::<Literal>()?;
    match *literal.value() {
        ScalarValue::Float64(Some(v)) => Some(v),
        ScalarValue::Float32(Some(v)) => Some(f64::from(v)),
        ScalarValue::Int64(Some(v)) => Some(v as f64),
        ScalarValue::Int32(Some(v)) => Some(f64::from(v)),
        _ => None,
    }
}
