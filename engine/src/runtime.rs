//! The engine proper: micro-batches of a stream table in, alerts out, whatever the transport.
//!
//! [`Engine`] joins the [`WatermarkTracker`](crate::time::WatermarkTracker) and the
//! [`Detector`]s: each micro-batch goes to the detectors reading its table, the partitions it
//! came from advance the watermark, and every window the watermark closes becomes alerts.
//! `opsloop run` feeds it from Kafka; the embedded demo from the fleet simulator in process.
//! A step that moves the watermark further than
//! [`WatermarkConfig::jump_warning_ms`](crate::time::WatermarkConfig::jump_warning_ms) is
//! reported in its [`Output`] ([`WatermarkJump`]) for the caller to log and count.
//! [`Engine::checkpoint`] and [`Engine::restore`] carry its whole state through a
//! [`Checkpoint`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use opsloop_schemas::ops::Alert;

use crate::checkpoint::{Checkpoint, Manifest, SourceOffset};
use crate::detector::{Detector, DetectorError, DetectorOptions, DetectorSnapshot};
use crate::time::{PartitionId, WatermarkConfig, WatermarkSnapshot, WatermarkTracker};

/// An error of the engine: a detector failed, or a checkpoint does not fit this engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Detector(#[from] DetectorError),
    #[error("the checkpoint's {what} cannot be read: {message}")]
    Checkpoint { what: String, message: String },
}

/// What one call produced.
#[derive(Debug, Default)]
pub struct Output {
    pub alerts: Vec<Alert>,
    /// Windows closed by the watermark (re-emissions included).
    pub windows_fired: usize,
    /// Input rows too late for every window, per detector call.
    pub too_late_rows: usize,
    /// The watermark moved further than the configured jump warning in this call.
    pub watermark_jump: Option<WatermarkJump>,
}

impl Output {
    fn absorb(&mut self, other: Output) {
        self.alerts.extend(other.alerts);
        self.windows_fired += other.windows_fired;
        self.too_late_rows += other.too_late_rows;
        self.watermark_jump = self.watermark_jump.or(other.watermark_jump);
    }
}

/// One step of the watermark longer than
/// [`WatermarkConfig::jump_warning_ms`](crate::time::WatermarkConfig::jump_warning_ms):
/// typically every partition turning idle at once far apart, or a backlog read after a long
/// stop. Every window it passed closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatermarkJump {
    /// The watermark before the step, µs since the Unix epoch.
    pub from_us: i64,
    /// The watermark after it.
    pub to_us: i64,
}

/// Gauges of the engine's state, for `/metrics` and the demo's live view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EngineStatus {
    pub watermark_us: Option<i64>,
    pub max_event_time_us: Option<i64>,
    pub open_windows: usize,
    pub active_groups: usize,
    pub state_bytes: usize,
    pub active_partitions: usize,
    pub idle_partitions: usize,
}

/// Watermarks and detectors over any number of stream tables.
#[derive(Debug)]
pub struct Engine {
    tracker: WatermarkTracker,
    detectors: Vec<Detector>,
    options: DetectorOptions,
    /// The last watermark the detectors were told.
    fired_to: Option<i64>,
}

const WATERMARK_STATE: &str = "watermark.json";

impl Engine {
    pub fn new(watermarks: WatermarkConfig, detectors: Vec<Detector>) -> Self {
        let options = DetectorOptions {
            allowed_lateness_us: watermarks.allowed_lateness_us(),
        };
        Engine {
            tracker: WatermarkTracker::new(watermarks),
            detectors,
            options,
            fired_to: None,
        }
    }

    pub fn detectors(&self) -> &[Detector] {
        &self.detectors
    }

    /// Feeds `rows` of stream `table`, which came from `partitions` (each with the largest
    /// event time of its rows), then fires the windows the new watermark closes.
    pub fn process(
        &mut self,
        table: &str,
        rows: &RecordBatch,
        partitions: &[(PartitionId, i64)],
        now: Instant,
    ) -> Result<Output, EngineError> {
        let mut output = Output::default();
        if rows.num_rows() > 0 {
            for detector in &mut self.detectors {
                if detector.plan().stream().name() == table {
                    output.too_late_rows += detector.process_batch(rows)?.too_late.num_rows();
                }
            }
        }
        for (partition, max_event_time_us) in partitions {
            self.tracker.observe(partition, *max_event_time_us, now);
        }
        output.absorb(self.fire(now_us())?);
        Ok(output)
    }

    /// Lets idle partitions stop holding the watermark back; fires what that closes.
    pub fn tick(&mut self, now: Instant) -> Result<Output, EngineError> {
        self.tracker.advance_idle(now);
        self.fire(now_us())
    }

    /// A partition joined this instance (consumer-group assignment) at `now`; it holds the
    /// watermark back until it delivers data or turns idle.
    pub fn assign(&mut self, partition: PartitionId, now: Instant) {
        self.tracker.assign(partition, now);
    }

    /// A partition left this instance; it no longer holds the watermark back.
    pub fn revoke(&mut self, partition: &PartitionId) {
        self.tracker.revoke(partition);
    }

    fn fire(&mut self, emitted_us: i64) -> Result<Output, EngineError> {
        let mut output = Output::default();
        let Some(watermark) = self.tracker.watermark() else {
            return Ok(output);
        };
        if self.fired_to.is_some_and(|fired| fired >= watermark) {
            return Ok(output);
        }
        if let (Some(from_us), Some(warning_us)) =
            (self.fired_to, self.tracker.config().jump_warning_us())
            && watermark.saturating_sub(from_us) > warning_us
        {
            output.watermark_jump = Some(WatermarkJump {
                from_us,
                to_us: watermark,
            });
        }
        for detector in &mut self.detectors {
            for window in detector.on_watermark(watermark)? {
                output.windows_fired += 1;
                output.alerts.extend(window.alerts(emitted_us)?);
            }
        }
        self.fired_to = Some(watermark);
        Ok(output)
    }

    pub fn status(&self) -> EngineStatus {
        let counts = self.tracker.counts();
        EngineStatus {
            watermark_us: self.tracker.watermark(),
            max_event_time_us: self.tracker.max_event_time(),
            open_windows: self.detectors.iter().map(Detector::open_windows).sum(),
            active_groups: self.detectors.iter().map(Detector::active_groups).sum(),
            state_bytes: self.detectors.iter().map(Detector::state_bytes).sum(),
            active_partitions: counts.active,
            idle_partitions: counts.idle,
        }
    }

    /// The whole engine state with the source offsets it covers, as checkpoint `id`.
    pub fn checkpoint(
        &mut self,
        id: u64,
        offsets: Vec<SourceOffset>,
    ) -> Result<Checkpoint, EngineError> {
        let mut states = BTreeMap::new();
        for detector in &mut self.detectors {
            let snapshot = detector.snapshot()?;
            states.insert(state_name(detector.name()), snapshot.to_ipc()?);
        }
        let watermark = serde_json::to_value(self.tracker.snapshot()).map_err(|error| {
            EngineError::Checkpoint {
                what: WATERMARK_STATE.to_owned(),
                message: error.to_string(),
            }
        })?;
        Ok(Checkpoint {
            manifest: Manifest {
                id,
                created_us: now_us(),
                offsets,
                watermark,
                states: Vec::new(),
            },
            states,
        })
    }

    /// An engine resumed from `checkpoint`: the detectors' open windows and the watermark as
    /// they were. Detectors the checkpoint does not know (a file added since) start empty.
    pub fn restore(
        watermarks: WatermarkConfig,
        detectors: Vec<Detector>,
        checkpoint: &Checkpoint,
        now: Instant,
    ) -> Result<Engine, EngineError> {
        let snapshot: WatermarkSnapshot =
            serde_json::from_value(checkpoint.manifest.watermark.clone()).map_err(|error| {
                EngineError::Checkpoint {
                    what: WATERMARK_STATE.to_owned(),
                    message: error.to_string(),
                }
            })?;
        let mut engine = Engine::new(watermarks, Vec::new());
        engine.tracker = WatermarkTracker::restore(watermarks, &snapshot, now);
        engine.fired_to = engine.tracker.watermark();
        for detector in detectors {
            let name = state_name(detector.name());
            let restored = match checkpoint.states.get(&name) {
                Some(bytes) => {
                    let snapshot = DetectorSnapshot::from_ipc(bytes)?;
                    Detector::restore(Arc::clone(detector.plan()), engine.options, &snapshot)?
                }
                None => detector,
            };
            engine.detectors.push(restored);
        }
        Ok(engine)
    }
}

fn state_name(detector: &str) -> String {
    format!("detector-{detector}.arrow")
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX)
        })
}
