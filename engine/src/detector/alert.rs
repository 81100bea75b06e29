//! A fired window's output rows -> [`Alert`]s for `ops.alerts`.
//!
//! Each output row is one alert. Columns by name:
//!
//! - `entity` (string, required, non-null): the alert's entity;
//! - `score` (numeric, optional): the alert's score; **1.0 when the column is absent or the
//!   value is null**, so a detector whose `HAVING` is the whole test ("p99 above 250 ms") still
//!   alerts;
//! - `severity` (numeric, optional): clamped to [0, 1]; 0.5 (the schema default) otherwise;
//! - `alert_type` (string, optional): the type correlation patterns match on; the detector's
//!   name otherwise;
//! - window-typed columns (`tumble(...) AS window`) are left out: the window is in
//!   `window_start_us` / `window_end_us`;
//! - every other numeric column goes to `evidence` (as `f64`) and every other column to
//!   `labels` (rendered as text); null values are left out.
//!
//! [`check_output_schema`] holds a planned detector's output to the required columns and
//! types, so a detector whose rows can never become alerts fails start-up, not its first
//! window.
//!
//! The alert id is deterministic: a 128-bit FNV-1a hash (hex) of the detector, the entity and
//! the window start. It leaves out the revision on purpose, so a re-emission after late data
//! carries the same id as the first emission and downstream consumers upsert rather than
//! count it twice; a replay after a crash yields the same ids. A session that grows
//! backwards through a late event or a merge starts earlier and so gets a new id.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use opsloop_schemas::ops::Alert;

use super::WindowResult;
use super::error::DetectorError;
use super::window::window_type;

/// The default severity of the `ops.alerts` schema.
const DEFAULT_SEVERITY: f64 = 0.5;

/// The alert's deterministic id (see the module docs).
pub(crate) fn alert_id(detector: &str, entity: &str, window_start_us: i64) -> String {
    opsloop_schemas::ids::stable_id(&[
        detector.as_bytes(),
        entity.as_bytes(),
        &window_start_us.to_le_bytes(),
    ])
}

/// How one output column feeds the alert.
enum Role {
    Entity,
    Score,
    Severity,
    AlertType,
    Evidence,
    Label,
    Skip,
}

fn role(name: &str, data_type: &DataType) -> Role {
    let numeric = data_type.is_numeric();
    match name {
        "entity" => Role::Entity,
        "score" if numeric => Role::Score,
        "severity" if numeric => Role::Severity,
        "alert_type" => Role::AlertType,
        _ if *data_type == window_type() => Role::Skip,
        _ if numeric => Role::Evidence,
        _ => Role::Label,
    }
}

/// Whether a column of `data_type` holds text: the type `entity` must have.
fn is_text(data_type: &DataType) -> bool {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, values) => is_text(values),
        _ => false,
    }
}

/// Why a detector whose output has `schema` could not turn its rows into alerts: no text
/// `entity` column, or a `score` or `severity` column that is not numeric (it would silently
/// become a label). The message says what to change in the `SELECT` list.
pub(crate) fn check_output_schema(schema: &Schema) -> Result<(), String> {
    let column = |name: &str| schema.fields().iter().find(|field| field.name() == name);
    let Some(entity) = column("entity") else {
        let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        return Err(format!(
            "the output has no entity column, and every alert needs one: add it to the SELECT \
             list (`SELECT entity, ...` or `... AS entity`, a string); the output columns are \
             {}",
            columns.join(", ")
        ));
    };
    if !is_text(entity.data_type()) {
        return Err(format!(
            "the entity column is {}, not a string: cast it (`CAST(... AS VARCHAR) AS entity`)",
            entity.data_type()
        ));
    }
    for name in ["score", "severity"] {
        if let Some(field) = column(name).filter(|field| !field.data_type().is_numeric()) {
            return Err(format!(
                "the {name} column is {}, not a number: compute it as one, or rename the column",
                field.data_type()
            ));
        }
    }
    Ok(())
}

/// A column read as `f64` (numeric) or as text (anything else).
enum Values {
    Numbers(ArrayRef),
    Text(ArrayRef),
}

impl Values {
    fn number(&self, row: usize) -> Option<f64> {
        match self {
            Values::Numbers(array) => {
                let array = array.as_primitive::<Float64Type>();
                array.is_valid(row).then(|| array.value(row))
            }
            Values::Text(_) => None,
        }
    }
}

pub(crate) fn alerts(result: &WindowResult, emitted_us: i64) -> Result<Vec<Alert>, DetectorError> {
    let batch = &result.batch;
    let failure = |message: String| DetectorError::Alert {
        detector: result.detector.clone(),
        message,
    };
    let options = FormatOptions::default();
    let mut columns = Vec::new();
    let schema = batch.schema();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let role = role(field.name(), field.data_type());
        let values = match role {
            Role::Skip => continue,
            Role::Score | Role::Severity | Role::Evidence => Values::Numbers(
                cast(column, &DataType::Float64)
                    .map_err(|e| failure(format!("column {}: {e}", field.name())))?,
            ),
            Role::Entity | Role::AlertType | Role::Label => Values::Text(Arc::clone(column)),
        };
        columns.push((field.name().as_str(), role, values));
    }
    if !columns
        .iter()
        .any(|(_, role, _)| matches!(role, Role::Entity))
    {
        return Err(failure("the output has no entity column".into()));
    }
    let mut alerts = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let mut alert = Alert {
            alert_id: String::new(),
            entity: String::new(),
            detector: result.detector.clone(),
            alert_type: result.detector.clone(),
            score: 1.0,
            severity: DEFAULT_SEVERITY,
            window_start_us: result.start_us,
            window_end_us: result.end_us,
            evidence: BTreeMap::new(),
            labels: BTreeMap::new(),
            emitted_us,
        };
        let mut entity = None;
        for (name, role, values) in &columns {
            let text = || -> Result<Option<String>, DetectorError> {
                let Values::Text(array) = values else {
                    return Ok(None);
                };
                if array.is_null(row) {
                    return Ok(None);
                }
                let formatter = ArrayFormatter::try_new(array.as_ref(), &options)
                    .map_err(|e| failure(format!("column {name}: {e}")))?;
                Ok(Some(formatter.value(row).to_string()))
            };
            match role {
                Role::Entity => entity = text()?,
                Role::AlertType => {
                    if let Some(alert_type) = text()? {
                        alert.alert_type = alert_type;
                    }
                }
                Role::Score => alert.score = values.number(row).unwrap_or(1.0),
                Role::Severity => {
                    if let Some(severity) = values.number(row) {
                        alert.severity = severity.clamp(0.0, 1.0);
                    }
                }
                Role::Evidence => {
                    if let Some(value) = values.number(row) {
                        alert.evidence.insert((*name).to_string(), value);
                    }
                }
                Role::Label => {
                    if let Some(value) = text()? {
                        alert.labels.insert((*name).to_string(), value);
                    }
                }
                Role::Skip => {}
            }
        }
        alert.entity = entity.ok_or_else(|| failure(format!("row {row} has a null entity")))?;
        alert.alert_id = alert_id(&alert.detector, &alert.entity, alert.window_start_us);
        alerts.push(alert);
    }
    Ok(alerts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_ids_are_stable_and_distinct() {
        let id = alert_id("db_latency", "db-1", 60_000_000);
        assert_eq!(id.len(), 32);
        assert_eq!(id, alert_id("db_latency", "db-1", 60_000_000));
        assert_ne!(id, alert_id("db_latency", "db-1", 120_000_000));
        assert_ne!(id, alert_id("db_latency", "db-2", 60_000_000));
        // Pinned: the id must never change across releases (computed independently).
        assert_eq!(
            alert_id("db_latency_p99", "db-1", 60_000_000),
            "afc9bf26f252b8e70aa39b7b68b51b6e"
        );
        // Length prefixes keep field boundaries apart.
        assert_ne!(alert_id("ab", "c", 0), alert_id("a", "bc", 0));
    }
}
