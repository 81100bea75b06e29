//! Checkpoints: window state and source offsets saved together, so a restarted engine resumes
//! with no lost window and no duplicate alert.
//!
//! A checkpoint is a directory `chk-<id>` under the store's directory, holding `manifest.json`
//! (id, creation time, source offsets, watermark state, the names of the state files) and one
//! file per stateful operator (a detector's Arrow IPC snapshot, say). It is written under a
//! temporary name and renamed into place, so a crash mid-write leaves the previous checkpoint
//! as the latest; the oldest are pruned once more than [`CheckpointStore::retain`] exist.
//!
//! The engine commits source offsets to Kafka only after the checkpoint that covers them is
//! written, and on restart skips records below the checkpoint's offsets, so records that were
//! committed late (a crash between writing and committing) are not counted twice.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const MANIFEST: &str = "manifest.json";
const PREFIX: &str = "chk-";
const TMP_SUFFIX: &str = ".tmp";

/// An error reading or writing checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checkpoint manifest {path} is not valid: {source}")]
    Manifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("state name {0:?} is not a plain file name")]
    BadStateName(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where one source partition resumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceOffset {
    pub topic: String,
    pub partition: i32,
    /// The first offset not covered by the checkpoint.
    pub next_offset: i64,
}

/// What a checkpoint holds besides the operators' state files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub id: u64,
    /// Wall-clock time of writing, µs since the Unix epoch.
    pub created_us: i64,
    pub offsets: Vec<SourceOffset>,
    /// The watermark tracker's snapshot, as JSON.
    pub watermark: serde_json::Value,
    /// State file names, one per stateful operator.
    pub states: Vec<String>,
}

/// A checkpoint to write or one read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub manifest: Manifest,
    /// Operator name -> its serialized state.
    pub states: BTreeMap<String, Vec<u8>>,
}

/// A directory of checkpoints.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
    retain: usize,
}

impl CheckpointStore {
    /// Opens (creating) `dir`; keeps the newest `retain` checkpoints (at least one).
    pub fn open(dir: impl Into<PathBuf>, retain: usize) -> Result<Self, CheckpointError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(CheckpointStore {
            dir,
            retain: retain.max(1),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many checkpoints are kept.
    pub fn retain(&self) -> usize {
        self.retain
    }

    /// Writes `checkpoint` atomically and prunes old ones; returns its directory.
    pub fn write(&self, checkpoint: &Checkpoint) -> Result<PathBuf, CheckpointError> {
        let name = format!("{PREFIX}{:012}", checkpoint.manifest.id);
        let tmp = self.dir.join(format!("{name}{TMP_SUFFIX}"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        fs::create_dir(&tmp).map_err(io(&tmp))?;
        let mut manifest = checkpoint.manifest.clone();
        manifest.states = checkpoint.states.keys().cloned().collect();
        for (state, bytes) in &checkpoint.states {
            if state.is_empty() || state.contains(['/', '\\']) || state.starts_with('.') {
                return Err(CheckpointError::BadStateName(state.clone()));
            }
            write_synced(&tmp.join(state), bytes)?;
        }
        let manifest_path = tmp.join(MANIFEST);
        let json =
            serde_json::to_vec_pretty(&manifest).map_err(|source| CheckpointError::Manifest {
                path: manifest_path.clone(),
                source,
            })?;
        write_synced(&manifest_path, &json)?;
        let target = self.dir.join(&name);
        if target.exists() {
            fs::remove_dir_all(&target).map_err(io(&target))?;
        }
        fs::rename(&tmp, &target).map_err(io(&target))?;
        self.prune()?;
        Ok(target)
    }

    /// The newest complete checkpoint, if any.
    pub fn latest(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        match self.complete()?.last() {
            Some((_, path)) => read_checkpoint(path).map(Some),
            None => Ok(None),
        }
    }

    /// Complete checkpoint directories, oldest first.
    fn complete(&self) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let entry = entry.map_err(io(&self.dir))?;
            let file_name = entry.file_name();
            let Some(id) = file_name
                .to_str()
                .and_then(|name| name.strip_prefix(PREFIX))
                .and_then(|id| id.parse::<u64>().ok())
            else {
                continue;
            };
            if entry.path().join(MANIFEST).is_file() {
                found.push((id, entry.path()));
            }
        }
        found.sort();
        Ok(found)
    }

    fn prune(&self) -> Result<(), CheckpointError> {
        let complete = self.complete()?;
        let excess = complete.len().saturating_sub(self.retain);
        for (_, path) in &complete[..excess] {
            fs::remove_dir_all(path).map_err(io(path))?;
        }
        Ok(())
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let mut file = fs::File::create(path).map_err(io(path))?;
    file.write_all(bytes).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

fn read_checkpoint(dir: &Path) -> Result<Checkpoint, CheckpointError> {
    let manifest_path = dir.join(MANIFEST);
    let text = fs::read(&manifest_path).map_err(io(&manifest_path))?;
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|source| CheckpointError::Manifest {
            path: manifest_path.clone(),
            source,
        })?;
    let mut states = BTreeMap::new();
    for state in &manifest.states {
        let path = dir.join(state);
        states.insert(state.clone(), fs::read(&path).map_err(io(&path))?);
    }
    Ok(Checkpoint { manifest, states })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(id: u64, state: &[u8]) -> Checkpoint {
        Checkpoint {
            manifest: Manifest {
                id,
                created_us: 1_795_003_200_000_000 + id as i64,
                offsets: vec![SourceOffset {
                    topic: "telemetry.metrics".to_owned(),
                    partition: 3,
                    next_offset: 100 * id as i64,
                }],
                watermark: serde_json::json!({"watermark_us": id}),
                states: Vec::new(),
            },
            states: BTreeMap::from([("p99.arrow".to_owned(), state.to_vec())]),
        }
    }

    #[test]
    fn the_latest_complete_checkpoint_is_read_back_and_old_ones_pruned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CheckpointStore::open(dir.path(), 2).expect("store");
        assert_eq!(store.latest().expect("readable"), None);
        for id in 1..=3 {
            store
                .write(&checkpoint(id, &[id as u8; 3]))
                .expect("written");
        }
        let latest = store.latest().expect("readable").expect("one exists");
        assert_eq!(latest.manifest.id, 3);
        assert_eq!(latest.manifest.offsets[0].next_offset, 300);
        assert_eq!(latest.manifest.states, vec!["p99.arrow".to_owned()]);
        assert_eq!(latest.states["p99.arrow"], vec![3u8; 3]);
        let kept: Vec<u64> = store
            .complete()
            .expect("listing")
            .iter()
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(kept, vec![2, 3]);
    }

    #[test]
    fn a_half_written_checkpoint_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CheckpointStore::open(dir.path(), 3).expect("store");
        store.write(&checkpoint(1, b"one")).expect("written");
        // A crash while writing checkpoint 2 leaves its temporary directory without a rename,
        // and a directory without a manifest.
        let partial = dir.path().join(format!("{PREFIX}{:012}{TMP_SUFFIX}", 2));
        fs::create_dir(&partial).expect("mkdir");
        fs::write(partial.join("p99.arrow"), b"partial").expect("write");
        fs::create_dir(dir.path().join(format!("{PREFIX}{:012}", 3))).expect("mkdir");
        let latest = store.latest().expect("readable").expect("one exists");
        assert_eq!(latest.manifest.id, 1);
        assert_eq!(latest.states["p99.arrow"], b"one".to_vec());
        // The next write of id 2 replaces the leftover.
        store.write(&checkpoint(2, b"two")).expect("written");
        assert_eq!(
            store
                .latest()
                .expect("readable")
                .expect("exists")
                .manifest
                .id,
            2
        );
    }

    #[test]
    fn state_names_cannot_escape_the_checkpoint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CheckpointStore::open(dir.path(), 1).expect("store");
        let mut bad = checkpoint(1, b"x");
        bad.states = BTreeMap::from([("../escape".to_owned(), b"x".to_vec())]);
        assert!(matches!(
            store.write(&bad),
            Err(CheckpointError::BadStateName(_))
        ));
    }
}
