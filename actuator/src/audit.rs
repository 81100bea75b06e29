//! The audit trail: an append-only JSON-lines file of [`ActionOutcome`]s, each carrying the
//! SHA-256 of the entry before it, so editing, dropping or reordering any entry breaks the
//! chain at that line ([`verify`]).
//!
//! `hash = sha256(prev_hash ‖ canonical JSON of the entry with an empty hash)`; the first
//! entry's `prev_hash` is 64 zeros. The same entries go to `ops.actions`.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use opsloop_schemas::ops::{ActionOutcome, ActionStep};
use sha2::{Digest, Sha256};

use crate::ActuatorError;

/// `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The open log: where it is, its last hash and each action's latest step.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: File,
    last_hash: String,
    steps: HashMap<String, Vec<ActionStep>>,
    /// Each action's EXECUTED entry (its before metrics, for verifying after a restart).
    executed: HashMap<String, ActionOutcome>,
}

impl AuditLog {
    /// Opens (creating) the log at `path`, checking its chain.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, ActuatorError> {
        let path = path.into();
        let entries = if path.exists() {
            read_verified(&path)?
        } else {
            Vec::new()
        };
        let mut steps: HashMap<String, Vec<ActionStep>> = HashMap::new();
        let mut executed = HashMap::new();
        for entry in &entries {
            steps
                .entry(entry.action_id.clone())
                .or_default()
                .push(entry.step);
            if entry.step == ActionStep::Executed {
                executed.insert(entry.action_id.clone(), entry.clone());
            }
        }
        let last_hash = entries
            .last()
            .map_or_else(|| GENESIS.to_owned(), |e| e.hash.clone());
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|error| audit_error(&path, error))?;
        Ok(AuditLog {
            path,
            file,
            last_hash,
            steps,
            executed,
        })
    }

    /// Chains `entry` (its `prev_hash` and `hash` are set here), appends it and syncs.
    pub fn append(&mut self, mut entry: ActionOutcome) -> Result<ActionOutcome, ActuatorError> {
        entry.prev_hash.clone_from(&self.last_hash);
        entry.hash = entry_hash(&entry);
        let mut line =
            serde_json::to_string(&entry).map_err(|error| audit_error(&self.path, error))?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|error| audit_error(&self.path, error))?;
        self.last_hash.clone_from(&entry.hash);
        self.steps
            .entry(entry.action_id.clone())
            .or_default()
            .push(entry.step);
        if entry.step == ActionStep::Executed {
            self.executed.insert(entry.action_id.clone(), entry.clone());
        }
        Ok(entry)
    }

    /// The latest entry of `step` for `action_id` (only EXECUTED entries are kept).
    pub fn last_of(&self, action_id: &str, step: ActionStep) -> Option<ActionOutcome> {
        (step == ActionStep::Executed)
            .then(|| self.executed.get(action_id).cloned())
            .flatten()
    }

    /// The steps recorded for `action_id`, in order.
    pub fn steps(&self, action_id: &str) -> &[ActionStep] {
        self.steps.get(action_id).map_or(&[], Vec::as_slice)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The hash an entry must carry.
pub fn entry_hash(entry: &ActionOutcome) -> String {
    let mut unhashed = entry.clone();
    unhashed.hash = String::new();
    // serde_json writes struct fields in declaration order and maps sorted (BTreeMap): stable.
    let canonical = serde_json::to_string(&unhashed).unwrap_or_default();
    let mut hasher = Sha256::new();
    hasher.update(entry.prev_hash.as_bytes());
    hasher.update(canonical.as_bytes());
    hex(&hasher.finalize())
}

/// Checks the whole chain of the log at `path`; the number of entries, or the first broken
/// line and why.
pub fn verify(path: &Path) -> Result<usize, ActuatorError> {
    read_verified(path).map(|entries| entries.len())
}

fn read_verified(path: &Path) -> Result<Vec<ActionOutcome>, ActuatorError> {
    let file = File::open(path).map_err(|error| audit_error(path, error))?;
    let mut entries: Vec<ActionOutcome> = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let number = index + 1;
        let line = line.map_err(|error| audit_error(path, error))?;
        let entry: ActionOutcome = serde_json::from_str(&line).map_err(|error| {
            audit_error(path, format!("line {number} is not an entry: {error}"))
        })?;
        let expected_prev = entries.last().map_or(GENESIS, |e| e.hash.as_str());
        if entry.prev_hash != expected_prev {
            return Err(audit_error(
                path,
                format!(
                    "line {number}: prev_hash does not match the entry before (dropped or reordered entries)"
                ),
            ));
        }
        if entry.hash != entry_hash(&entry) {
            return Err(audit_error(
                path,
                format!("line {number}: the hash does not match the entry (edited)"),
            ));
        }
        entries.push(entry);
    }
    Ok(entries)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

fn audit_error(path: &Path, reason: impl std::fmt::Display) -> ActuatorError {
    ActuatorError::Audit {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn outcome(action: &str, step: ActionStep) -> ActionOutcome {
        ActionOutcome {
            action_id: action.to_owned(),
            incident_id: "inc".to_owned(),
            step,
            template: "pg.analyze".to_owned(),
            target: "db-1".to_owned(),
            time_us: 1,
            detail: String::new(),
            automated: true,
            before: BTreeMap::from([("x".to_owned(), 1.0)]),
            after: BTreeMap::new(),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn the_chain_detects_edits_drops_and_reorders() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("audit.jsonl");
        let mut log = AuditLog::open(&path).expect("open");
        for step in [
            ActionStep::Planned,
            ActionStep::Executed,
            ActionStep::Verified,
        ] {
            log.append(outcome("a1", step)).expect("append");
        }
        drop(log);
        assert_eq!(verify(&path).expect("intact"), 3);
        let reopened = AuditLog::open(&path).expect("reopen");
        assert_eq!(
            reopened.steps("a1"),
            [
                ActionStep::Planned,
                ActionStep::Executed,
                ActionStep::Verified
            ]
        );

        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        let edited = text.replace("\"db-1\"", "\"db-2\"");
        std::fs::write(&path, &edited).expect("write");
        let error = verify(&path).expect_err("edited");
        assert!(error.to_string().contains("line 1: the hash"), "{error}");

        std::fs::write(&path, format!("{}\n{}\n", lines[0], lines[2])).expect("write");
        let error = verify(&path).expect_err("dropped");
        assert!(error.to_string().contains("line 2: prev_hash"), "{error}");

        std::fs::write(&path, format!("{}\n{}\n{}\n", lines[1], lines[0], lines[2]))
            .expect("write");
        assert!(verify(&path).is_err(), "reordered");
        assert!(
            AuditLog::open(&path).is_err(),
            "a broken log is not appended to"
        );
    }
}
