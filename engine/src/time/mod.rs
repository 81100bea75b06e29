//! Event time: watermarks, idle partitions and late records.
//!
//! Every time here is event time in microseconds since the Unix epoch (`i64`), except the
//! processing time that idleness is measured in, which callers pass in as an
//! [`Instant`](std::time::Instant) so the same calls always give the same watermark.
//!
//! # Watermarks: bounded out-of-orderness
//!
//! As in Flink's `forBoundedOutOfOrderness` and Arroyo's watermark expression, records of a
//! partition may arrive out of order by up to [`WatermarkConfig::max_out_of_orderness_ms`].
//! A partition's watermark is the largest event time it delivered minus that bound. A
//! watermark `W` says that every record still to come has an event time of at least `W`; a
//! window `[start, end)` is therefore complete once `end <= W`.
//!
//! [`WatermarkTracker`] combines the partitions of a stream: the stream's watermark is the
//! smallest watermark of its *active* partitions, so a slow partition holds the others back
//! rather than having its records dropped as late. The stream's watermark never moves
//! backwards, whatever partitions join, wake up or leave.
//!
//! # Idle partitions
//!
//! A partition that delivered nothing for [`WatermarkConfig::idle_timeout_ms`] of processing
//! time becomes idle and stops holding the watermark back; it is active again with its next
//! data. If that data is behind the watermark, the watermark waits (it does not go back)
//! until the partition catches up, and the records in windows that already closed are late.
//!
//! - A partition assigned by a rebalance counts as idle until it delivers data, so a
//!   partition that never receives anything cannot stall the stream. The price: records of a
//!   partition whose first data is older than the other partitions' watermark are late.
//! - A revoked partition is forgotten at once, so it no longer holds the watermark back.
//! - When every partition with data is idle, the watermark is the **largest** of their
//!   watermarks, as in Flink's `StatusWatermarkValve`: a stream that has gone quiet still
//!   closes the windows its partitions have each moved past, rather than waiting for the
//!   slowest partition's next record.
//!
//! # Lateness
//!
//! A record is classified by the end of its window ([`LatenessPolicy::classify`]):
//!
//! - [`Lateness::OnTime`] while `end > watermark`;
//! - [`Lateness::LateAllowed`] when `end <= watermark < end + allowed_lateness`
//!   ([`WatermarkConfig::allowed_lateness_ms`]): the window's state is still kept and its
//!   result is emitted again with the record;
//! - [`Lateness::TooLate`] once `end + allowed_lateness <= watermark`: the record is not
//!   aggregated; [`split_by_lateness`] splits such rows off a batch and [`LateRecords`]
//!   collects and counts them as the late side output.
//!
//! # Checkpoints
//!
//! [`WatermarkTracker::snapshot`] gives a serde-serialisable [`WatermarkSnapshot`] (the
//! watermark and each partition's largest event time and idleness);
//! [`WatermarkTracker::restore`] resumes from it without moving the watermark back.

mod config;
mod lateness;
mod watermark;

pub use config::WatermarkConfig;
pub use lateness::{
    LateRecords, Lateness, LatenessCounts, LatenessPolicy, LatenessSplit, SplitError,
    split_by_lateness,
};
pub use watermark::{
    PartitionCounts, PartitionId, PartitionSnapshot, PartitionStatus, WatermarkSnapshot,
    WatermarkTracker,
};
