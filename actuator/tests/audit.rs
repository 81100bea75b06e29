//! The audit log verifies every log it wrote, whatever the numbers in it, and fails at the
//! right line on any single-byte edit, any dropped entry and any swap of two entries.

use std::collections::BTreeMap;

use opsloop_actuator::audit::{AuditLog, verify};
use opsloop_schemas::ops::{ActionOutcome, ActionStep, ParamValue};
use proptest::prelude::*;

fn entry(index: usize, metrics: &[f64], detail: &str) -> ActionOutcome {
    let steps = [
        ActionStep::Planned,
        ActionStep::Executed,
        ActionStep::Verified,
        ActionStep::RolledBack,
        ActionStep::Refused,
    ];
    let numbers: BTreeMap<String, f64> = metrics
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("m{i}"), *v))
        .collect();
    ActionOutcome {
        action_id: format!("a{}.1", index / 3),
        incident_id: "inc".to_owned(),
        step: steps[index % steps.len()],
        template: "pg.refresh_materialized_view".to_owned(),
        target: "db-1".to_owned(),
        time_us: 1_700_000_000_000_000 + index as i64,
        detail: detail.to_owned(),
        automated: index.is_multiple_of(2),
        before: numbers.clone(),
        after: numbers.into_iter().map(|(k, v)| (k, v / 3.0)).collect(),
        prev_hash: String::new(),
        hash: String::new(),
        params: BTreeMap::from([
            ("matview".to_owned(), ParamValue::String("v".to_owned())),
            (
                "ratio".to_owned(),
                ParamValue::Double(metrics.first().copied().unwrap_or(0.1)),
            ),
        ]),
        digest: "0f".repeat(32),
        attempt: 1,
    }
}

fn written(entries: &[ActionOutcome]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path).expect("open");
    for entry in entries {
        log.append(entry.clone()).expect("append");
    }
    (dir, path)
}

fn fails_at(path: &std::path::Path, line: usize) -> Result<(), TestCaseError> {
    let error = verify(path)
        .expect_err("tampering goes unnoticed")
        .to_string();
    prop_assert!(
        error.contains(&format!("line {line}:")) || error.contains(&format!("line {line} ")),
        "expected line {}: {}",
        line,
        error
    );
    Ok(())
}

fn entries() -> impl Strategy<Value = Vec<ActionOutcome>> {
    let floats = proptest::collection::vec(
        prop_oneof![
            any::<f64>().prop_filter("finite", |v| v.is_finite()),
            (0u32..1_000_000).prop_map(|n| f64::from(n) / 3.0),
        ],
        0..4,
    );
    proptest::collection::vec((floats, ".{0,12}"), 2..8).prop_map(|rows| {
        rows.iter()
            .enumerate()
            .map(|(i, (metrics, detail))| entry(i, metrics, detail))
            .collect()
    })
}

proptest! {
    #[test]
    fn a_written_log_verifies_and_reopens(entries in entries()) {
        let (_dir, path) = written(&entries);
        prop_assert_eq!(verify(&path).expect("genuine"), entries.len());
        prop_assert!(AuditLog::open(&path).is_ok(), "a restart accepts its own log");
    }

    #[test]
    fn any_single_byte_edit_fails_at_its_line(
        entries in entries(),
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let (_dir, path) = written(&entries);
        let text = std::fs::read(&path).expect("read");
        let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
        let line = which.index(lines.len());
        let mut edited: Vec<Vec<u8>> = lines.iter().map(|l| l.to_vec()).collect();
        let position = at.index(edited[line].len());
        prop_assume!(edited[line][position] != byte && byte != b'\n');
        edited[line][position] = byte;
        std::fs::write(&path, edited.join(&b'\n').into_iter().chain([b'\n']).collect::<Vec<u8>>())
            .expect("write");
        fails_at(&path, line + 1)?;
    }

    #[test]
    fn a_dropped_or_swapped_entry_fails_at_its_line(
        entries in entries(),
        which in any::<prop::sample::Index>(),
    ) {
        let (_dir, path) = written(&entries);
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        // Any entry but the last: the chain cannot tell a log cut short (ops.actions can).
        let line = which.index(lines.len() - 1);
        let mut dropped = lines.clone();
        dropped.remove(line);
        std::fs::write(&path, dropped.join("\n") + "\n").expect("write");
        fails_at(&path, line + 1)?;
        let mut swapped = lines.clone();
        swapped.swap(line, line + 1);
        std::fs::write(&path, swapped.join("\n") + "\n").expect("write");
        fails_at(&path, line + 1)?;
    }
}

#[test]
fn a_log_with_floats_that_do_not_round_trip_verifies() {
    // The log that failed in the field: 182.33333333333334 printed and parsed again.
    let mut first = entry(0, &[182.333_333_333_333_34, 0.1 + 0.2, 1e-300], "x");
    first.before.insert("nan".to_owned(), f64::NAN);
    let (_dir, path) = written(&[first, entry(1, &[2.0 / 3.0], "y")]);
    assert_eq!(verify(&path).expect("genuine"), 2);
}
