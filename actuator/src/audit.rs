//! The audit trail: an append-only JSON-lines file of [`ActionOutcome`]s, each carrying the
//! SHA-256 of the entry before it, so editing, dropping or reordering any entry breaks the
//! chain at that line ([`verify`]).
//!
//! A line is the entry's JSON without its hash (`B`, keys sorted, `prev_hash` inside) with
//! `,"hash":"<hex>"` spliced in before the closing brace, where `hash = sha256(B)`: the hash
//! covers exactly the bytes written, so a genuine log always verifies (no float is parsed and
//! printed again) and any changed byte fails at its line. The first entry's `prev_hash` is 64
//! zeros. Metric values that are not finite are left out (JSON has no NaN). The same entries
//! go to `ops.actions`.
//!
//! What the chain alone cannot tell: entries cut off the end of the file. `ops.actions` holds
//! a copy of every entry to compare with.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use opsloop_schemas::ids::hex;
use opsloop_schemas::ops::{ActionOutcome, ActionStep};
use sha2::{Digest, Sha256};

use crate::ActuatorError;

/// `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `,"hash":"` + 64 hex digits + `"}`.
const HASH_SUFFIX_LEN: usize = 9 + 64 + 2;

/// The open log: where it is, its last hash and what it knows of each action.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: File,
    last_hash: String,
    actions: HashMap<String, Known>,
}

/// What the log holds about one action.
#[derive(Debug, Clone, Default)]
struct Known {
    steps: Vec<ActionStep>,
    /// The digest of its content, from its first entry that is not a refusal.
    digest: Option<String>,
    /// Its EXECUTED entry (the before metrics, for verifying after a restart).
    executed: Option<ActionOutcome>,
}

impl Known {
    fn learn(&mut self, entry: &ActionOutcome) {
        if entry.step == ActionStep::Refused {
            return;
        }
        self.steps.push(entry.step);
        if self.digest.is_none() && !entry.digest.is_empty() {
            self.digest = Some(entry.digest.clone());
        }
        if entry.step == ActionStep::Executed {
            self.executed = Some(entry.clone());
        }
    }
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
        let mut actions: HashMap<String, Known> = HashMap::new();
        for entry in &entries {
            actions
                .entry(entry.action_id.clone())
                .or_default()
                .learn(entry);
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
            actions,
        })
    }

    /// Chains `entry` (its `prev_hash` and `hash` are set here), appends it and syncs.
    pub fn append(&mut self, mut entry: ActionOutcome) -> Result<ActionOutcome, ActuatorError> {
        entry.before.retain(|_, v| v.is_finite());
        entry.after.retain(|_, v| v.is_finite());
        entry.prev_hash.clone_from(&self.last_hash);
        let (line, hash) = encode(&entry).map_err(|error| audit_error(&self.path, error))?;
        entry.hash = hash;
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.write_all(b"\n"))
            .and_then(|()| self.file.sync_data())
            .map_err(|error| audit_error(&self.path, error))?;
        self.last_hash.clone_from(&entry.hash);
        self.actions
            .entry(entry.action_id.clone())
            .or_default()
            .learn(&entry);
        Ok(entry)
    }

    /// The latest EXECUTED entry of `action_id`.
    pub fn executed(&self, action_id: &str) -> Option<&ActionOutcome> {
        self.actions.get(action_id)?.executed.as_ref()
    }

    /// The steps recorded for `action_id`, in order (refusals left out).
    pub fn steps(&self, action_id: &str) -> &[ActionStep] {
        self.actions
            .get(action_id)
            .map_or(&[], |a| a.steps.as_slice())
    }

    /// The digest of the content `action_id` names, once an entry recorded it.
    pub fn digest(&self, action_id: &str) -> Option<&str> {
        self.actions.get(action_id)?.digest.as_deref()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The line of `entry` (its `prev_hash` set) and its hash.
fn encode(entry: &ActionOutcome) -> Result<(String, String), serde_json::Error> {
    let mut value = serde_json::to_value(entry)?;
    if let Some(fields) = value.as_object_mut() {
        fields.remove("hash");
    }
    let unhashed = serde_json::to_string(&value)?;
    let hash = hex(&Sha256::digest(unhashed.as_bytes()));
    let body = unhashed.strip_suffix('}').unwrap_or(&unhashed);
    Ok((format!("{body},\"hash\":\"{hash}\"}}"), hash))
}

/// The hashed bytes of a written line and the hash it claims, if it has the written shape.
fn split(line: &str) -> Option<(String, &str)> {
    let cut = line.len().checked_sub(HASH_SUFFIX_LEN)?;
    let (body, suffix) = (line.get(..cut)?, line.get(cut..)?);
    let hash = suffix.strip_prefix(",\"hash\":\"")?.strip_suffix("\"}")?;
    let is_hex = hash
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    is_hex.then(|| (format!("{body}}}"), hash))
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
        let line = line
            .map_err(|error| audit_error(path, format!("line {number} cannot be read: {error}")))?;
        let not_an_entry = |why: String| {
            audit_error(
                path,
                format!("line {number} is not an entry this log wrote: {why}"),
            )
        };
        let entry: ActionOutcome =
            serde_json::from_str(&line).map_err(|error| not_an_entry(error.to_string()))?;
        let (hashed, claimed) =
            split(&line).ok_or_else(|| not_an_entry("it does not end in its hash".to_owned()))?;
        let expected_prev = entries.last().map_or(GENESIS, |e| e.hash.as_str());
        if entry.prev_hash != expected_prev {
            return Err(audit_error(
                path,
                format!(
                    "line {number}: prev_hash does not match the entry before (dropped or \
                     reordered entries)"
                ),
            ));
        }
        if claimed != entry.hash || hex(&Sha256::digest(hashed.as_bytes())) != claimed {
            return Err(audit_error(
                path,
                format!("line {number}: the hash does not match the entry (edited)"),
            ));
        }
        entries.push(entry);
    }
    Ok(entries)
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

    pub(super) fn outcome(action: &str, step: ActionStep) -> ActionOutcome {
        ActionOutcome {
            action_id: action.to_owned(),
            incident_id: "inc".to_owned(),
            step,
            template: "pg.analyze".to_owned(),
            target: "db-1".to_owned(),
            time_us: 1,
            detail: String::new(),
            automated: true,
            before: BTreeMap::from([("x".to_owned(), 182.333_333_333_333_34)]),
            after: BTreeMap::new(),
            prev_hash: String::new(),
            hash: String::new(),
            params: BTreeMap::new(),
            digest: "d1".to_owned(),
            attempt: 1,
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
        assert_eq!(reopened.digest("a1"), Some("d1"));

        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        let edited = text.replacen("\"db-1\"", "\"db-2\"", 1);
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

    #[test]
    fn refusals_are_recorded_but_neither_steps_nor_content() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("audit.jsonl");
        let mut log = AuditLog::open(&path).expect("open");
        let mut forged = outcome("a1", ActionStep::Refused);
        forged.digest = "forged".to_owned();
        log.append(forged).expect("append");
        assert!(log.steps("a1").is_empty());
        assert_eq!(log.digest("a1"), None);
        log.append(outcome("a1", ActionStep::Planned))
            .expect("append");
        assert_eq!(log.digest("a1"), Some("d1"));
        assert_eq!(verify(&path).expect("intact"), 2);
    }
}
