//! Golden tests of SQL detectors: each `tests/golden/*.json` file is one case with the SQL,
//! input rows in micro-batches, a watermark schedule and the window results expected after
//! each watermark, worked out by hand.
//!
//! A case is `{description, sql, allowed_lateness_s?, steps}`; each step processes its `rows`
//! (if any) as one batch over the `db_metrics` stream table, checks how many were `too_late`
//! (default 0), then, if it has a `watermark`, advances the detector to it and compares the
//! windows `fired` (default none) in order: `start`, `end`, `revision` (default 0) and the
//! output `rows` as JSON (timestamps as RFC 3339).

mod detector_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use detector_support::{Sample, batch, db_metrics, format_time, parse_time, rows, same};
use opsloop_engine::detector::{Detector, DetectorOptions, DetectorPlan, session_context};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    description: String,
    sql: String,
    #[serde(default)]
    allowed_lateness_s: i64,
    steps: Vec<Step>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    #[serde(default)]
    rows: Vec<Row>,
    #[serde(default)]
    too_late: usize,
    watermark: Option<String>,
    #[serde(default)]
    fired: Vec<Fired>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    entity: String,
    name: String,
    value: f64,
    time: String,
    #[serde(default)]
    labels: Vec<(String, String)>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fired {
    start: String,
    end: String,
    #[serde(default)]
    revision: u32,
    rows: Vec<Value>,
}

fn golden_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/golden")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

/// Runs one case; the first mismatch is returned as a message.
fn run(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let case: Case = serde_json::from_str(&text).map_err(|e| format!("bad case: {e}"))?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let plan = DetectorPlan::from_sql(&name, &case.sql, &session_context(), &[db_metrics()])
        .map_err(|e| e.to_string())?;
    let options = DetectorOptions {
        allowed_lateness_us: case.allowed_lateness_s * 1_000_000,
    };
    let mut detector = Detector::new(Arc::new(plan), options).map_err(|e| e.to_string())?;
    for (index, step) in case.steps.iter().enumerate() {
        let at = format!("{} (step {index})", case.description);
        if !step.rows.is_empty() {
            let samples: Vec<Sample> = step
                .rows
                .iter()
                .map(|row| Sample {
                    entity: row.entity.clone(),
                    name: row.name.clone(),
                    value: row.value,
                    time_us: parse_time(&row.time),
                    labels: row.labels.clone(),
                })
                .collect();
            let outcome = detector
                .process_batch(&batch(&samples))
                .map_err(|e| format!("{at}: {e}"))?;
            if outcome.too_late.num_rows() != step.too_late {
                return Err(format!(
                    "{at}: {} rows too late, expected {}",
                    outcome.too_late.num_rows(),
                    step.too_late
                ));
            }
        }
        let Some(watermark) = &step.watermark else {
            continue;
        };
        let results = detector
            .on_watermark(parse_time(watermark))
            .map_err(|e| format!("{at}: {e}"))?;
        let actual: Vec<String> = results
            .iter()
            .map(|r| {
                format!(
                    "[{}, {}) rev {}: {}",
                    format_time(r.start_us),
                    format_time(r.end_us),
                    r.revision,
                    Value::Array(rows(&r.batch))
                )
            })
            .collect();
        let matches = results.len() == step.fired.len()
            && results.iter().zip(&step.fired).all(|(result, expected)| {
                result.start_us == parse_time(&expected.start)
                    && result.end_us == parse_time(&expected.end)
                    && result.revision == expected.revision
                    && same(
                        &Value::Array(rows(&result.batch)),
                        &Value::Array(expected.rows.clone()),
                    )
            });
        if !matches {
            let expected: Vec<String> = step
                .fired
                .iter()
                .map(|f| {
                    format!(
                        "[{}, {}) rev {}: {}",
                        f.start,
                        f.end,
                        f.revision,
                        Value::Array(f.rows.clone())
                    )
                })
                .collect();
            return Err(format!(
                "{at}: at watermark {watermark}\n  fired    {actual:#?}\n  expected {expected:#?}"
            ));
        }
    }
    Ok(())
}

#[test]
fn golden_cases() {
    let files = golden_files();
    assert!(files.len() >= 7, "golden cases missing: {files:?}");
    let failures: Vec<String> = files
        .iter()
        .filter_map(|path| run(path).err().map(|e| format!("{}: {e}", path.display())))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
