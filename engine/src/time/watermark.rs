//! Per-partition watermarks combined into one monotone watermark for the stream.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::config::WatermarkConfig;
use super::lateness::{Lateness, LatenessPolicy};

/// One input partition: a Kafka topic and a partition number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionId {
    pub topic: Arc<str>,
    pub partition: i32,
}

impl PartitionId {
    /// The partition `partition` of `topic`.
    pub fn new(topic: impl Into<Arc<str>>, partition: i32) -> PartitionId {
        PartitionId {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// What the tracker knows of one partition.
#[derive(Debug, Clone, Copy)]
struct PartitionState {
    /// Largest event time received, µs; `None` until the partition delivers data.
    max_event_time_us: Option<i64>,
    /// Processing time of the last data while the partition is active; `None` when idle.
    last_data_at: Option<Instant>,
}

impl PartitionState {
    const NO_DATA: PartitionState = PartitionState {
        max_event_time_us: None,
        last_data_at: None,
    };

    fn is_idle(&self) -> bool {
        self.last_data_at.is_none()
    }
}

/// One partition as seen by [`WatermarkTracker::partitions`], for metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionStatus {
    pub id: PartitionId,
    /// Largest event time received, µs; `None` until the partition delivers data.
    pub max_event_time_us: Option<i64>,
    /// The partition's own watermark: `max_event_time_us` minus the out-of-orderness bound.
    pub watermark_us: Option<i64>,
    /// Whether the partition is idle and so does not hold the watermark back.
    pub idle: bool,
}

/// How many tracked partitions hold the watermark back and how many are idle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionCounts {
    pub active: usize,
    pub idle: usize,
}

/// The watermark of a stream read from several partitions.
///
/// Each partition's watermark is its largest event time minus
/// [`WatermarkConfig::max_out_of_orderness_ms`]. The stream's watermark is the smallest
/// watermark of the active partitions; idle partitions are left out, and when every partition
/// with data is idle it is the largest of theirs. It never moves backwards. Processing time is
/// always passed in (`now`), never read from the clock, so the same calls give the same
/// watermark. See the [module docs](super) for the semantics.
#[derive(Debug, Clone)]
pub struct WatermarkTracker {
    config: WatermarkConfig,
    partitions: BTreeMap<PartitionId, PartitionState>,
    watermark_us: Option<i64>,
}

impl WatermarkTracker {
    /// A tracker with no partitions and no watermark.
    pub fn new(config: WatermarkConfig) -> WatermarkTracker {
        WatermarkTracker {
            config,
            partitions: BTreeMap::new(),
            watermark_us: None,
        }
    }

    /// The settings this tracker applies.
    pub fn config(&self) -> &WatermarkConfig {
        &self.config
    }

    /// The stream's watermark in µs since the Unix epoch: every record still to come is
    /// expected at or after it. `None` until some partition delivered data.
    pub fn watermark(&self) -> Option<i64> {
        self.watermark_us
    }

    /// The largest event time received from any tracked partition, µs. Minus
    /// [`WatermarkTracker::watermark`], it is how far results trail the newest data.
    pub fn max_event_time(&self) -> Option<i64> {
        self.partitions
            .values()
            .filter_map(|state| state.max_event_time_us)
            .max()
    }

    /// Starts tracking `partition` after a rebalance assigned it at processing time `now`. It
    /// is active from then on: until it delivers data the watermark does not advance (its
    /// backlog may be older than everything seen so far), and after the idle timeout without
    /// data it turns idle like any silent partition. A partition already tracked is left as
    /// it is.
    pub fn assign(&mut self, partition: PartitionId, now: Instant) {
        self.partitions.entry(partition).or_insert(PartitionState {
            max_event_time_us: None,
            last_data_at: Some(now),
        });
    }

    /// Stops tracking `partition` after a rebalance revoked it, so it no longer holds the
    /// watermark back. Returns the watermark afterwards, which may have advanced.
    pub fn revoke(&mut self, partition: &PartitionId) -> Option<i64> {
        self.partitions.remove(partition);
        self.recompute()
    }

    /// Records that a micro-batch held data of `partition` up to `max_event_time_us`, at
    /// processing time `now`. The partition becomes active (it is tracked from now on if it
    /// was not yet), and partitions silent for the idle timeout become idle. Returns the
    /// watermark afterwards.
    pub fn observe(
        &mut self,
        partition: &PartitionId,
        max_event_time_us: i64,
        now: Instant,
    ) -> Option<i64> {
        let state = match self.partitions.get_mut(partition) {
            Some(state) => state,
            None => self
                .partitions
                .entry(partition.clone())
                .or_insert(PartitionState::NO_DATA),
        };
        state.max_event_time_us = state.max_event_time_us.max(Some(max_event_time_us));
        state.last_data_at = Some(now);
        self.advance_idle(now)
    }

    /// Marks partitions that received nothing for the idle timeout before `now` as idle, so
    /// they stop holding the watermark back; call it when a poll returns no data. Returns the
    /// watermark afterwards.
    pub fn advance_idle(&mut self, now: Instant) -> Option<i64> {
        if let Some(timeout) = self.config.idle_timeout() {
            for state in self.partitions.values_mut() {
                if let Some(last) = state.last_data_at
                    && now.saturating_duration_since(last) >= timeout
                {
                    state.last_data_at = None;
                }
            }
        }
        self.recompute()
    }

    /// Every tracked partition, in topic and partition order.
    pub fn partitions(&self) -> impl Iterator<Item = PartitionStatus> + '_ {
        self.partitions.iter().map(|(id, state)| PartitionStatus {
            id: id.clone(),
            max_event_time_us: state.max_event_time_us,
            watermark_us: state.max_event_time_us.map(|t| self.partition_watermark(t)),
            idle: state.is_idle(),
        })
    }

    /// How many tracked partitions are active and how many idle.
    pub fn counts(&self) -> PartitionCounts {
        let idle = self.partitions.values().filter(|s| s.is_idle()).count();
        PartitionCounts {
            active: self.partitions.len() - idle,
            idle,
        }
    }

    /// The current watermark with the configured allowed lateness, to classify records.
    pub fn lateness_policy(&self) -> LatenessPolicy {
        LatenessPolicy {
            watermark_us: self.watermark_us,
            allowed_lateness_us: self.config.allowed_lateness_us(),
        }
    }

    /// Whether a record of the window ending at `window_end_us` is on time, late but
    /// allowed, or too late at the current watermark.
    pub fn classify(&self, window_end_us: i64) -> Lateness {
        self.lateness_policy().classify(window_end_us)
    }

    /// The state to store in a checkpoint. Processing times are not part of it.
    pub fn snapshot(&self) -> WatermarkSnapshot {
        WatermarkSnapshot {
            watermark_us: self.watermark_us,
            partitions: self
                .partitions
                .iter()
                .map(|(id, state)| PartitionSnapshot {
                    topic: id.topic.to_string(),
                    partition: id.partition,
                    max_event_time_us: state.max_event_time_us,
                    idle: state.is_idle(),
                })
                .collect(),
        }
    }

    /// A tracker resumed from a checkpoint at processing time `now`. Partitions idle at the
    /// checkpoint, and those that had delivered nothing, are idle; the others count as
    /// having received data at `now`, so they hold
    /// the watermark back for one more idle timeout at most. The watermark is the
    /// checkpoint's, or later if `config` has a smaller out-of-orderness bound; it never
    /// goes back.
    pub fn restore(
        config: WatermarkConfig,
        snapshot: &WatermarkSnapshot,
        now: Instant,
    ) -> WatermarkTracker {
        let partitions = snapshot
            .partitions
            .iter()
            .map(|p| {
                let state = PartitionState {
                    max_event_time_us: p.max_event_time_us,
                    last_data_at: (!p.idle && p.max_event_time_us.is_some()).then_some(now),
                };
                (PartitionId::new(p.topic.as_str(), p.partition), state)
            })
            .collect();
        let mut tracker = WatermarkTracker {
            config,
            partitions,
            watermark_us: snapshot.watermark_us,
        };
        tracker.recompute();
        tracker
    }

    fn partition_watermark(&self, max_event_time_us: i64) -> i64 {
        max_event_time_us.saturating_sub(self.config.max_out_of_orderness_us())
    }

    /// Moves the watermark to the smallest active partition watermark, or the largest idle
    /// one when none is active, unless that would move it backwards. An active partition that
    /// has delivered nothing yet holds it where it is.
    fn recompute(&mut self) -> Option<i64> {
        if self
            .partitions
            .values()
            .any(|s| !s.is_idle() && s.max_event_time_us.is_none())
        {
            return self.watermark_us;
        }
        let with_data = || {
            self.partitions
                .values()
                .filter_map(|s| s.max_event_time_us.map(|t| (t, s.is_idle())))
        };
        let slowest_active = with_data().filter(|(_, idle)| !idle).map(|(t, _)| t).min();
        let newest = slowest_active.or_else(|| with_data().map(|(t, _)| t).max());
        let candidate = newest.map(|t| self.partition_watermark(t));
        self.watermark_us = self.watermark_us.max(candidate);
        self.watermark_us
    }
}

/// A [`WatermarkTracker`] as stored in a checkpoint. Fields added later get defaults, so
/// older checkpoints still load.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WatermarkSnapshot {
    /// The stream's watermark at the checkpoint, µs.
    pub watermark_us: Option<i64>,
    /// Every partition tracked at the checkpoint.
    pub partitions: Vec<PartitionSnapshot>,
}

/// One partition in a [`WatermarkSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionSnapshot {
    pub topic: String,
    pub partition: i32,
    /// Largest event time received, µs; `None` if the partition had delivered nothing.
    #[serde(default)]
    pub max_event_time_us: Option<i64>,
    /// Whether the partition was idle.
    #[serde(default)]
    pub idle: bool,
}
