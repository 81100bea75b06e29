//! Checkpointable detector state: the open windows' group keys and partial aggregate states
//! as one Arrow `RecordBatch`, serialised with Arrow IPC.
//!
//! Each row is one group of one open window (or one session): `window_start`, `window_end`,
//! `emitted_revision` (null before the window first fired), `dirty` (rows arrived since it
//! last fired), then `key_<i>` per non-window `GROUP BY` value and `state_<i>_<j>` per
//! partial-state column of aggregate `i` (DataFusion's `state_fields`). The detector's name,
//! window, watermark and too-late count travel in the schema metadata.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;

use super::error::DetectorError;

const VERSION: &str = "1";
const KEY_VERSION: &str = "opsloop.snapshot_version";
const KEY_DETECTOR: &str = "opsloop.detector";
const KEY_WINDOW: &str = "opsloop.window";
const KEY_WATERMARK: &str = "opsloop.watermark_us";
const KEY_TOO_LATE: &str = "opsloop.too_late_rows";

/// A detector's state at a checkpoint; [`Detector::restore`](super::Detector::restore)
/// rebuilds a detector that goes on exactly as the snapshotted one would have.
#[derive(Debug, Clone)]
pub struct DetectorSnapshot {
    /// The detector's name.
    pub detector: String,
    /// The detector's window, as [`WindowSpec`](super::WindowSpec) displays it; a restore
    /// into a detector whose window changed is refused.
    pub window: String,
    /// The last watermark the detector saw, `None` before the first.
    pub watermark_us: Option<i64>,
    /// Rows dropped as too late so far.
    pub too_late_rows: u64,
    /// The open windows' groups and partial states (see the module docs).
    pub state: RecordBatch,
}

fn invalid(message: impl Into<String>) -> DetectorError {
    DetectorError::Snapshot {
        message: message.into(),
    }
}

impl DetectorSnapshot {
    /// The snapshot as Arrow IPC stream bytes.
    pub fn to_ipc(&self) -> Result<Vec<u8>, DetectorError> {
        let mut metadata = HashMap::from([
            (KEY_VERSION.to_string(), VERSION.to_string()),
            (KEY_DETECTOR.to_string(), self.detector.clone()),
            (KEY_WINDOW.to_string(), self.window.clone()),
            (KEY_TOO_LATE.to_string(), self.too_late_rows.to_string()),
        ]);
        if let Some(watermark) = self.watermark_us {
            metadata.insert(KEY_WATERMARK.to_string(), watermark.to_string());
        }
        let schema = Arc::new(Schema::new_with_metadata(
            self.state.schema().fields().clone(),
            metadata,
        ));
        let batch = self
            .state
            .clone()
            .with_schema(Arc::clone(&schema))
            .map_err(DetectorError::SnapshotIpc)?;
        let mut bytes = Vec::new();
        let mut writer =
            StreamWriter::try_new(&mut bytes, &schema).map_err(DetectorError::SnapshotIpc)?;
        writer.write(&batch).map_err(DetectorError::SnapshotIpc)?;
        writer.finish().map_err(DetectorError::SnapshotIpc)?;
        drop(writer);
        Ok(bytes)
    }

    /// Reads a snapshot written by [`DetectorSnapshot::to_ipc`].
    pub fn from_ipc(bytes: &[u8]) -> Result<Self, DetectorError> {
        let reader =
            StreamReader::try_new(Cursor::new(bytes), None).map_err(DetectorError::SnapshotIpc)?;
        let schema = reader.schema();
        let metadata = schema.metadata();
        let get = |key: &str| {
            metadata
                .get(key)
                .cloned()
                .ok_or_else(|| invalid(format!("the metadata has no {key}")))
        };
        let version = get(KEY_VERSION)?;
        if version != VERSION {
            return Err(invalid(format!("unknown snapshot version {version}")));
        }
        let watermark_us = match metadata.get(KEY_WATERMARK) {
            Some(text) => Some(
                text.parse()
                    .map_err(|_| invalid(format!("bad watermark {text}")))?,
            ),
            None => None,
        };
        let too_late = get(KEY_TOO_LATE)?;
        let too_late_rows = too_late
            .parse()
            .map_err(|_| invalid(format!("bad too-late count {too_late}")))?;
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(DetectorError::SnapshotIpc)?;
        let plain = Arc::new(Schema::new(schema.fields().clone()));
        let state =
            arrow::compute::concat_batches(&plain, &batches).map_err(DetectorError::SnapshotIpc)?;
        Ok(DetectorSnapshot {
            detector: get(KEY_DETECTOR)?,
            window: get(KEY_WINDOW)?,
            watermark_us,
            too_late_rows,
            state,
        })
    }
}
