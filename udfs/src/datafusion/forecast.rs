//! Forecasting scalars over an array of a series' recent values.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Float64Builder, StructArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Float64Type, Int64Type};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::forecast::ForecastPoint;
use crate::forecast::arima::Arima111;
use crate::forecast::holt_winters::HoltWinters;
use crate::forecast::trend::LinearTrend;

/// Coverage of the intervals the scalars return.
const COVERAGE: f64 = 0.95;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Method {
    HoltWinters,
    HoltWintersPeak,
    Arima,
    Linear,
    StepsToThreshold,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ForecastFunction {
    method: Method,
    signature: Signature,
}

pub(super) fn functions() -> Vec<ScalarUDF> {
    let list = || DataType::new_list(DataType::Float64, true);
    [
        (
            Method::HoltWinters,
            vec![list(), DataType::Int64, DataType::Int64],
        ),
        (
            Method::HoltWintersPeak,
            vec![list(), DataType::Int64, DataType::Int64],
        ),
        (Method::Arima, vec![list(), DataType::Int64]),
        (Method::Linear, vec![list(), DataType::Int64]),
        (Method::StepsToThreshold, vec![list(), DataType::Float64]),
    ]
    .into_iter()
    .map(|(method, arguments)| {
        ScalarUDF::from(ForecastFunction {
            method,
            signature: Signature::exact(arguments, Volatility::Immutable),
        })
    })
    .collect()
}

fn interval_fields() -> Fields {
    Fields::from(vec![
        Field::new("mean", DataType::Float64, true),
        Field::new("lower", DataType::Float64, true),
        Field::new("upper", DataType::Float64, true),
    ])
}

/// The i-th argument at row `row`, whether it came as a column or a constant.
fn argument(args: &[ArrayRef], i: usize, row: usize) -> usize {
    if args[i].len() == 1 { 0 } else { row }
}

impl ScalarUDFImpl for ForecastFunction {
    fn name(&self) -> &str {
        match self.method {
            Method::HoltWinters => "forecast_holt_winters",
            Method::HoltWintersPeak => "forecast_holt_winters_peak",
            Method::Arima => "forecast_arima",
            Method::Linear => "forecast_linear",
            Method::StepsToThreshold => "steps_to_threshold",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.method {
            Method::StepsToThreshold => DataType::Float64,
            Method::HoltWinters | Method::HoltWintersPeak | Method::Arima | Method::Linear => {
                DataType::Struct(interval_fields())
            }
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let lists = arrays[0].as_list::<i32>();
        let series = |row: usize| -> Option<Vec<f64>> {
            let row = argument(&arrays, 0, row);
            lists.is_valid(row).then(|| {
                lists
                    .value(row)
                    .as_primitive::<Float64Type>()
                    .iter()
                    .flatten()
                    .collect()
            })
        };
        if self.method == Method::StepsToThreshold {
            let thresholds = arrays[1].as_primitive::<Float64Type>();
            let mut out = Float64Builder::with_capacity(rows);
            for row in 0..rows {
                let threshold_row = argument(&arrays, 1, row);
                let steps = series(row)
                    .filter(|_| thresholds.is_valid(threshold_row))
                    .and_then(|values| {
                        let x: Vec<f64> = (0..values.len()).map(|i| i as f64).collect();
                        let now = (values.len().max(1) - 1) as f64;
                        LinearTrend::fit(&x, &values)?
                            .crossing(thresholds.value(threshold_row), now, COVERAGE)
                            .map(|crossing| crossing.at - now)
                    });
                out.append_option(steps);
            }
            return Ok(ColumnarValue::Array(Arc::new(out.finish())));
        }
        let integer = |i: usize, row: usize| -> Result<usize> {
            let column = arrays[i].as_primitive::<Int64Type>();
            let row = argument(&arrays, i, row);
            match column.is_valid(row).then(|| column.value(row)) {
                Some(v) if v >= 1 => Ok(v as usize),
                other => exec_err!(
                    "{}: argument {} must be at least 1, got {other:?}",
                    self.name(),
                    i + 1
                ),
            }
        };
        let mut points: Vec<Option<ForecastPoint>> = Vec::with_capacity(rows);
        for row in 0..rows {
            let point = match (self.method, series(row)) {
                (_, None) => None,
                (Method::HoltWinters, Some(values)) => {
                    let (period, horizon) = (integer(1, row)?, integer(2, row)?);
                    HoltWinters::fit(&values, period)
                        .and_then(|model| model.forecast(horizon, COVERAGE).pop())
                }
                (Method::HoltWintersPeak, Some(values)) => {
                    let (period, horizon) = (integer(1, row)?, integer(2, row)?);
                    HoltWinters::fit(&values, period).and_then(|model| {
                        model
                            .forecast(horizon, COVERAGE)
                            .into_iter()
                            .max_by(|a, b| a.mean.total_cmp(&b.mean))
                    })
                }
                (Method::Arima, Some(values)) => {
                    let horizon = integer(1, row)?;
                    Arima111::fit(&values).and_then(|model| model.forecast(horizon, COVERAGE).pop())
                }
                (Method::Linear, Some(values)) => {
                    let horizon = integer(1, row)?;
                    let x: Vec<f64> = (0..values.len()).map(|i| i as f64).collect();
                    LinearTrend::fit(&x, &values)
                        .map(|trend| trend.predict((values.len() - 1 + horizon) as f64, COVERAGE))
                }
                (Method::StepsToThreshold, Some(_)) => None,
            };
            points.push(point);
        }
        let column = |f: fn(&ForecastPoint) -> f64| -> ArrayRef {
            Arc::new(
                points
                    .iter()
                    .map(|p| p.as_ref().map(f))
                    .collect::<Float64Array>(),
            )
        };
        let structs = StructArray::try_new(
            interval_fields(),
            vec![column(|p| p.mean), column(|p| p.lower), column(|p| p.upper)],
            None,
        )?;
        Ok(ColumnarValue::Array(Arc::new(structs)))
    }
}
