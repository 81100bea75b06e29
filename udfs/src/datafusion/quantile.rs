//! `hdr_quantile(value, q)` on [`QuantileSketch`].

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BinaryBuilder, BooleanArray, Float64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};

use super::literal_f64;
use crate::anomaly::quantile::QuantileSketch;

/// Resolution of recorded values: 1/1000 of the unit (microseconds for milliseconds).
const SCALE: f64 = 1000.0;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct HdrQuantile {
    signature: Signature,
}

impl HdrQuantile {
    pub(super) fn new() -> Self {
        HdrQuantile {
            signature: Signature::exact(
                vec![DataType::Float64, DataType::Float64],
                Volatility::Immutable,
            ),
        }
    }
}

fn quantile_argument(args: &AccumulatorArgs) -> Result<f64> {
    match args.exprs.get(1).and_then(literal_f64) {
        Some(q) if (0.0..=1.0).contains(&q) => Ok(q),
        Some(q) => plan_err!("hdr_quantile: q must be in [0, 1], got {q}"),
        None => plan_err!("hdr_quantile: q must be a constant"),
    }
}

fn sketch_to_bytes(sketch: &QuantileSketch) -> Vec<u8> {
    let mut out = Vec::new();
    for (value, count) in sketch.buckets() {
        out.extend_from_slice(&value.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
    }
    out
}

fn merge_bytes(sketch: &mut QuantileSketch, bytes: &[u8]) -> Result<()> {
    if !bytes.len().is_multiple_of(16) {
        return exec_err!(
            "hdr_quantile: corrupt partial state of {} bytes",
            bytes.len()
        );
    }
    for pair in bytes.chunks_exact(16) {
        let (value, count) = pair.split_at(8);
        let value = f64::from_le_bytes(value.try_into().unwrap_or([0; 8]));
        let count = u64::from_le_bytes(count.try_into().unwrap_or([0; 8]));
        sketch.record_n(value, count);
    }
    Ok(())
}

impl AggregateUDFImpl for HdrQuantile {
    fn name(&self) -> &str {
        "hdr_quantile"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}_sketch", args.name),
            DataType::Binary,
            true,
        ))])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(QuantileAccumulator {
            sketch: QuantileSketch::new(SCALE),
            q: quantile_argument(&args)?,
        }))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(QuantileGroups {
            sketches: Vec::new(),
            q: quantile_argument(&args)?,
        }))
    }
}

#[derive(Debug)]
struct QuantileAccumulator {
    sketch: QuantileSketch,
    q: f64,
}

impl Accumulator for QuantileAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        for value in values[0].as_primitive::<Float64Type>().iter().flatten() {
            self.sketch.record(value);
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(self.sketch.quantile(self.q)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.sketch.size_bytes()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Binary(Some(sketch_to_bytes(
            &self.sketch,
        )))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for bytes in states[0].as_binary::<i32>().iter().flatten() {
            merge_bytes(&mut self.sketch, bytes)?;
        }
        Ok(())
    }
}

/// One sketch per group, for GROUP BYs over many series.
#[derive(Debug)]
struct QuantileGroups {
    sketches: Vec<QuantileSketch>,
    q: f64,
}

impl QuantileGroups {
    fn ensure(&mut self, total_num_groups: usize) {
        if self.sketches.len() < total_num_groups {
            self.sketches
                .resize_with(total_num_groups, || QuantileSketch::new(SCALE));
        }
    }
}

fn selected(filter: Option<&BooleanArray>, row: usize) -> bool {
    filter.is_none_or(|f| f.is_valid(row) && f.value(row))
}

impl GroupsAccumulator for QuantileGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.ensure(total_num_groups);
        let values = values[0].as_primitive::<Float64Type>();
        for (row, &group) in group_indices.iter().enumerate() {
            if values.is_valid(row) && selected(opt_filter, row) {
                self.sketches[group].record(values.value(row));
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let sketches = emit_to.take_needed(&mut self.sketches);
        let values: Float64Array = sketches.iter().map(|s| s.quantile(self.q)).collect();
        Ok(Arc::new(values))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let sketches = emit_to.take_needed(&mut self.sketches);
        let mut builder = BinaryBuilder::new();
        for sketch in &sketches {
            builder.append_value(sketch_to_bytes(sketch));
        }
        let states: BinaryArray = builder.finish();
        Ok(vec![Arc::new(states)])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.ensure(total_num_groups);
        let states = values[0].as_binary::<i32>();
        for (row, &group) in group_indices.iter().enumerate() {
            if states.is_valid(row) {
                merge_bytes(&mut self.sketches[group], states.value(row))?;
            }
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let values = values[0].as_primitive::<Float64Type>();
        let mut builder = BinaryBuilder::new();
        for row in 0..values.len() {
            let mut sketch = QuantileSketch::new(SCALE);
            if values.is_valid(row) && selected(opt_filter, row) {
                sketch.record(values.value(row));
            }
            builder.append_value(sketch_to_bytes(&sketch));
        }
        Ok(vec![Arc::new(builder.finish())])
    }

    fn size(&self) -> usize {
        self.sketches
            .iter()
            .map(QuantileSketch::size_bytes)
            .sum::<usize>()
            + self.sketches.capacity() * std::mem::size_of::<QuantileSketch>()
    }
}
