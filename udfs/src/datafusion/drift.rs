//! Drift aggregates: building a baseline and scoring a group of values against one.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_datafusion_err, exec_err, internal_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

use crate::drift::baseline::{Baseline, DEFAULT_BINS, NumericBaseline, thin};
use crate::drift::binned::{chi_square, hellinger, jensen_shannon, l_infinity, psi};
use crate::drift::samples::{SortedSample, kolmogorov_smirnov, wasserstein_normed};

/// Reference values a baseline aggregate keeps before thinning (bins and sample come from them).
const MAX_REFERENCE_VALUES: usize = 200_000;

/// Which statistic a drift aggregate computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DriftStatistic {
    Psi,
    JensenShannon,
    Hellinger,
    KsStatistic,
    KsPValue,
    WassersteinNormed,
    ChiSquarePValue,
    LInfinity,
}

impl DriftStatistic {
    pub const ALL: &'static [DriftStatistic] = &[
        DriftStatistic::Psi,
        DriftStatistic::JensenShannon,
        DriftStatistic::Hellinger,
        DriftStatistic::KsStatistic,
        DriftStatistic::KsPValue,
        DriftStatistic::WassersteinNormed,
        DriftStatistic::ChiSquarePValue,
        DriftStatistic::LInfinity,
    ];

    pub fn sql_name(self) -> &'static str {
        match self {
            DriftStatistic::Psi => "psi",
            DriftStatistic::JensenShannon => "jensen_shannon",
            DriftStatistic::Hellinger => "hellinger",
            DriftStatistic::KsStatistic => "ks_statistic",
            DriftStatistic::KsPValue => "ks_p_value",
            DriftStatistic::WassersteinNormed => "wasserstein_normed",
            DriftStatistic::ChiSquarePValue => "chi_square_p_value",
            DriftStatistic::LInfinity => "l_infinity",
        }
    }

    fn categorical(self) -> bool {
        matches!(
            self,
            DriftStatistic::ChiSquarePValue | DriftStatistic::LInfinity
        )
    }
}

/// The window's data: numeric values or category counts.
#[derive(Debug, Default)]
struct Window {
    values: Vec<f64>,
    categories: BTreeMap<String, f64>,
}

impl Window {
    fn size(&self) -> usize {
        self.values.capacity() * 8 + self.categories.keys().map(|k| k.len() + 24).sum::<usize>()
    }

    fn add_numeric(&mut self, array: &ArrayRef) {
        self.values
            .extend(array.as_primitive::<Float64Type>().iter().flatten());
    }

    fn add_categories(&mut self, array: &ArrayRef) -> Result<()> {
        let strings = datafusion::arrow::compute::cast(array, &DataType::Utf8)?;
        for category in strings.as_string::<i32>().iter().flatten() {
            *self.categories.entry(category.to_owned()).or_default() += 1.0;
        }
        Ok(())
    }
}

/// `drift_baseline(value)` and `drift_baseline_categorical(category)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct DriftBaseline {
    categorical: bool,
    signature: Signature,
}

impl DriftBaseline {
    pub(super) fn numeric() -> Self {
        DriftBaseline {
            categorical: false,
            signature: Signature::exact(vec![DataType::Float64], Volatility::Immutable),
        }
    }

    pub(super) fn categorical() -> Self {
        DriftBaseline {
            categorical: true,
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for DriftBaseline {
    fn name(&self) -> &str {
        if self.categorical {
            "drift_baseline_categorical"
        } else {
            "drift_baseline"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![window_state_field(args.name, self.categorical)])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(BaselineAccumulator {
            categorical: self.categorical,
            window: Window::default(),
        }))
    }
}

fn window_state_field(name: &str, categorical: bool) -> FieldRef {
    let data_type = if categorical {
        DataType::Binary
    } else {
        DataType::new_list(DataType::Float64, true)
    };
    Arc::new(Field::new(format!("{name}_window"), data_type, true))
}

fn window_state(window: &Window, categorical: bool) -> ScalarValue {
    if categorical {
        ScalarValue::Binary(Some(
            Baseline::Categorical(window.categories.clone()).to_bytes(),
        ))
    } else {
        let values: Vec<ScalarValue> = window
            .values
            .iter()
            .map(|&v| ScalarValue::Float64(Some(v)))
            .collect();
        ScalarValue::List(ScalarValue::new_list_nullable(&values, &DataType::Float64))
    }
}

fn merge_window_state(window: &mut Window, state: &ArrayRef, categorical: bool) -> Result<()> {
    if categorical {
        for bytes in state.as_binary::<i32>().iter().flatten() {
            match Baseline::from_bytes(bytes) {
                Ok(Baseline::Categorical(counts)) => {
                    for (category, count) in counts {
                        *window.categories.entry(category).or_default() += count;
                    }
                }
                Ok(Baseline::Numeric(_)) => {
                    return exec_err!("numeric state in a categorical drift aggregate");
                }
                Err(error) => return exec_err!("corrupt drift state: {error}"),
            }
        }
    } else {
        let lists = state.as_list::<i32>();
        for list in lists.iter().flatten() {
            window.add_numeric(&list);
        }
    }
    Ok(())
}

#[derive(Debug)]
struct BaselineAccumulator {
    categorical: bool,
    window: Window,
}

impl Accumulator for BaselineAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if self.categorical {
            self.window.add_categories(&values[0])?;
        } else {
            self.window.add_numeric(&values[0]);
            if self.window.values.len() > 2 * MAX_REFERENCE_VALUES {
                self.window.values = thin(&self.window.values, MAX_REFERENCE_VALUES);
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let baseline = if self.categorical {
            Baseline::Categorical(self.window.categories.clone())
        } else {
            Baseline::Numeric(NumericBaseline::from_values(
                &self.window.values,
                DEFAULT_BINS,
            ))
        };
        Ok(ScalarValue::Binary(Some(baseline.to_bytes())))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.window.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![window_state(&self.window, self.categorical)])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        merge_window_state(&mut self.window, &states[0], self.categorical)
    }
}

/// A drift statistic of a group's values against a baseline column.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct DriftAggregate {
    statistic: DriftStatistic,
    signature: Signature,
}

impl DriftAggregate {
    pub(super) fn new(statistic: DriftStatistic) -> Self {
        let value_type = if statistic.categorical() {
            DataType::Utf8
        } else {
            DataType::Float64
        };
        DriftAggregate {
            statistic,
            signature: Signature::exact(vec![value_type, DataType::Binary], Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for DriftAggregate {
    fn name(&self) -> &str {
        self.statistic.sql_name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                format!("{}_baseline", args.name),
                DataType::Binary,
                true,
            )),
            window_state_field(args.name, self.statistic.categorical()),
        ])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(DriftAccumulator {
            statistic: self.statistic,
            baseline: None,
            window: Window::default(),
        }))
    }
}

#[derive(Debug)]
struct DriftAccumulator {
    statistic: DriftStatistic,
    /// The stored bytes and their parsed form; the first non-null baseline of the group wins.
    baseline: Option<(Vec<u8>, Baseline)>,
    window: Window,
}

impl DriftAccumulator {
    fn take_baseline(&mut self, array: &ArrayRef) -> Result<()> {
        if self.baseline.is_some() {
            return Ok(());
        }
        if let Some(bytes) = array.as_binary::<i32>().iter().flatten().next() {
            let parsed = Baseline::from_bytes(bytes).map_err(|e| {
                exec_datafusion_err!("{}: invalid baseline: {e}", self.statistic.sql_name())
            })?;
            self.baseline = Some((bytes.to_vec(), parsed));
        }
        Ok(())
    }

    fn score(&self) -> Result<Option<f64>> {
        let Some((_, baseline)) = &self.baseline else {
            return Ok(None);
        };
        let statistic = self.statistic;
        let value = match (baseline, statistic.categorical()) {
            (Baseline::Numeric(reference), false) => {
                if self.window.values.is_empty() {
                    return Ok(None);
                }
                let current = || reference.bins.histogram(&self.window.values);
                let sample = || SortedSample::new(self.window.values.clone());
                match statistic {
                    DriftStatistic::Psi => psi(&reference.counts, &current()),
                    DriftStatistic::JensenShannon => jensen_shannon(&reference.counts, &current()),
                    DriftStatistic::Hellinger => hellinger(&reference.counts, &current()),
                    DriftStatistic::KsStatistic => {
                        kolmogorov_smirnov(&reference.sample, &sample()).statistic
                    }
                    DriftStatistic::KsPValue => {
                        kolmogorov_smirnov(&reference.sample, &sample()).p_value
                    }
                    DriftStatistic::WassersteinNormed => {
                        wasserstein_normed(&reference.sample, &sample())
                    }
                    DriftStatistic::ChiSquarePValue | DriftStatistic::LInfinity => {
                        return internal_err!("categorical statistic on a numeric window");
                    }
                }
            }
            (Baseline::Categorical(reference), true) => {
                if self.window.categories.is_empty() {
                    return Ok(None);
                }
                let keys: std::collections::BTreeSet<&String> = reference
                    .keys()
                    .chain(self.window.categories.keys())
                    .collect();
                let r: Vec<f64> = keys
                    .iter()
                    .map(|k| reference.get(*k).copied().unwrap_or(0.0))
                    .collect();
                let c: Vec<f64> = keys
                    .iter()
                    .map(|k| self.window.categories.get(*k).copied().unwrap_or(0.0))
                    .collect();
                if statistic == DriftStatistic::ChiSquarePValue {
                    chi_square(&r, &c).p_value
                } else {
                    l_infinity(&r, &c)
                }
            }
            (_, categorical) => {
                let expected = if categorical {
                    "categorical"
                } else {
                    "numeric"
                };
                return exec_err!(
                    "{} needs a {expected} baseline (from drift_baseline{})",
                    statistic.sql_name(),
                    if categorical { "_categorical" } else { "" }
                );
            }
        };
        Ok(Some(value))
    }
}

impl Accumulator for DriftAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.take_baseline(&values[1])?;
        if self.statistic.categorical() {
            self.window.add_categories(&values[0])
        } else {
            self.window.add_numeric(&values[0]);
            Ok(())
        }
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(self.score()?))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.window.size()
            + self
                .baseline
                .as_ref()
                .map_or(0, |(bytes, _)| 2 * bytes.len())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::Binary(self.baseline.as_ref().map(|(bytes, _)| bytes.clone())),
            window_state(&self.window, self.statistic.categorical()),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.take_baseline(&states[0])?;
        merge_window_state(&mut self.window, &states[1], self.statistic.categorical())
    }
}
