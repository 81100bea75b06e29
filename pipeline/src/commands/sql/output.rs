//! Writing a query result: a pretty table, CSV, JSON lines or Parquet.
//!
//! Columns a format cannot hold are written as their display text: every nested column (lists,
//! maps, structs) in CSV, and columns holding a union (typed action parameters) in JSON and
//! Parquet.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use arrow::array::{Array, ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::ArrowWriter;

/// How the result is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OutputFormat {
    /// A table for people.
    Table,
    /// CSV with a header row; nested values as text.
    Csv,
    /// One JSON object per row.
    Json,
    /// A Parquet file (needs --output).
    Parquet,
}

/// Writes `batches` (all in `schema`) as `format` to `path`, or to stdout without one.
pub(super) fn write(
    format: OutputFormat,
    schema: SchemaRef,
    batches: &[RecordBatch],
    path: Option<&Path>,
) -> anyhow::Result<()> {
    match format {
        OutputFormat::Table => {
            let table = arrow::util::pretty::pretty_format_batches_with_schema(schema, batches)
                .context("formatting the result as a table")?;
            let mut out = open(path)?;
            writeln!(out, "{table}")?;
            finish(out)
        }
        OutputFormat::Csv => {
            let batches = as_text(schema, batches, DataType::is_nested)?;
            let mut out = open(path)?;
            let mut writer = arrow::csv::Writer::new(&mut out);
            for batch in &batches {
                writer.write(batch).context("writing CSV")?;
            }
            // Every write has flushed its rows into `out`; the writer only borrows it.
            drop(writer);
            finish(out)
        }
        OutputFormat::Json => {
            let batches = as_text(schema, batches, holds_union)?;
            let mut out = open(path)?;
            let mut writer = arrow::json::LineDelimitedWriter::new(&mut out);
            for batch in &batches {
                writer.write(batch).context("writing JSON")?;
            }
            writer.finish().context("writing JSON")?;
            finish(out)
        }
        OutputFormat::Parquet => {
            let path =
                path.context("--format parquet writes a file: name it with --output FILE")?;
            write_parquet(schema, batches, path)
        }
    }
}

/// The file at `path`, or stdout.
fn open(path: Option<&Path>) -> anyhow::Result<Box<dyn Write>> {
    Ok(match path {
        Some(path) => Box::new(BufWriter::new(
            File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    })
}

fn finish(mut out: Box<dyn Write>) -> anyhow::Result<()> {
    out.flush().context("writing the result")
}

fn write_parquet(schema: SchemaRef, batches: &[RecordBatch], path: &Path) -> anyhow::Result<()> {
    let batches = as_text(Arc::clone(&schema), batches, holds_union)?;
    let schema = batches
        .first()
        .map_or_else(|| text_schema(&schema, holds_union), RecordBatch::schema);
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut writer =
        ArrowWriter::try_new(file, schema, None).context("starting the Parquet file")?;
    for batch in &batches {
        writer.write(batch).context("writing Parquet")?;
    }
    writer.close().context("finishing the Parquet file")?;
    Ok(())
}

/// The batches with every column whose type `unwritable` picks replaced by its display text;
/// an empty result becomes one empty batch, so that CSV still gets its header row.
fn as_text(
    schema: SchemaRef,
    batches: &[RecordBatch],
    unwritable: fn(&DataType) -> bool,
) -> anyhow::Result<Vec<RecordBatch>> {
    let text_schema = text_schema(&schema, unwritable);
    if batches.is_empty() {
        return Ok(vec![RecordBatch::new_empty(text_schema)]);
    }
    if text_schema == schema {
        return Ok(batches.to_vec());
    }
    let options = FormatOptions::default();
    batches
        .iter()
        .map(|batch| {
            let columns = batch
                .columns()
                .iter()
                .map(|column| {
                    if !unwritable(column.data_type()) {
                        return Ok(Arc::clone(column));
                    }
                    let formatter = ArrayFormatter::try_new(column.as_ref(), &options)?;
                    let text: StringArray = (0..column.len())
                        .map(|row| {
                            column
                                .is_valid(row)
                                .then(|| formatter.value(row).to_string())
                        })
                        .collect();
                    Ok(Arc::new(text) as ArrayRef)
                })
                .collect::<Result<Vec<_>, arrow::error::ArrowError>>()?;
            Ok(RecordBatch::try_new(Arc::clone(&text_schema), columns)?)
        })
        .collect()
}

fn text_schema(schema: &SchemaRef, unwritable: fn(&DataType) -> bool) -> SchemaRef {
    if !schema.fields().iter().any(|f| unwritable(f.data_type())) {
        return Arc::clone(schema);
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| {
            if unwritable(field.data_type()) {
                Field::new(field.name(), DataType::Utf8, true)
            } else {
                field.as_ref().clone()
            }
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Whether a value of this type holds a union anywhere, which neither the JSON nor the
/// Parquet writer supports.
fn holds_union(data_type: &DataType) -> bool {
    match data_type {
        DataType::Union(..) => true,
        DataType::List(field)
        | DataType::LargeList(field)
        | DataType::FixedSizeList(field, _)
        | DataType::ListView(field)
        | DataType::LargeListView(field)
        | DataType::Map(field, _) => holds_union(field.data_type()),
        DataType::Struct(fields) => fields.iter().any(|f| holds_union(f.data_type())),
        DataType::Dictionary(_, values) => holds_union(values),
        DataType::RunEndEncoded(_, values) => holds_union(values.data_type()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsloop_connectors::decode::record_schema;
    use opsloop_schemas::ops::{ActionOutcome, RemediationEvent};

    #[test]
    fn only_columns_with_unions_are_written_as_text_to_json_and_parquet() {
        let remediation = record_schema::<RemediationEvent>();
        let unions: Vec<&str> = remediation
            .fields()
            .iter()
            .filter(|f| holds_union(f.data_type()))
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(unions, ["params"]);
        let actions = record_schema::<ActionOutcome>();
        let unions: Vec<&str> = actions
            .fields()
            .iter()
            .filter(|f| holds_union(f.data_type()))
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(
            unions,
            ["params"],
            "audit entries carry the action's parameters"
        );
    }
}
