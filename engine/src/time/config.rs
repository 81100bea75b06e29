//! How far event time may run out of order, when a silent partition stops counting, how long
//! a window accepts records after it closed, and how far the watermark may move in one step
//! before it is reported.

use std::time::Duration;

use serde::Deserialize;

/// Event-time settings of a pipeline. Every field has a default, so a config file names only
/// what it changes:
///
/// ```toml
/// max_out_of_orderness_ms = 10000
/// allowed_lateness_ms = 60000
/// ```
///
/// Durations are whole milliseconds; the engine converts them to the microseconds that event
/// times are kept in, saturating at `i64::MAX` (a bound that large means "never").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatermarkConfig {
    /// How far behind the newest event of a partition its records may still arrive: the
    /// partition's watermark is its largest event time minus this bound.
    pub max_out_of_orderness_ms: u64,
    /// Processing time after which a partition that received nothing stops holding the
    /// watermark back, until it receives data again. `0` turns idleness off: a partition that
    /// has received data then holds the watermark back however long it stays silent.
    pub idle_timeout_ms: u64,
    /// Event time a window still accepts records for after the watermark passed its end; its
    /// state is kept that long and its result is emitted again for each late record.
    pub allowed_lateness_ms: u64,
    /// Event time the watermark may advance in one step (one micro-batch or tick) before the
    /// step is reported as a jump ([`WatermarkJump`](crate::runtime::WatermarkJump)): logged
    /// and counted, since it closes every window it passes at once and makes the records
    /// still to come for them late. `0` turns the report off.
    pub jump_warning_ms: u64,
}

impl Default for WatermarkConfig {
    /// Five seconds of out-of-orderness, idle after 30 s of silence, no allowed lateness, a
    /// jump reported past an hour (reading a backlog moves it minutes at a time).
    fn default() -> Self {
        WatermarkConfig {
            max_out_of_orderness_ms: 5_000,
            idle_timeout_ms: 30_000,
            allowed_lateness_ms: 0,
            jump_warning_ms: 3_600_000,
        }
    }
}

impl WatermarkConfig {
    /// [`WatermarkConfig::max_out_of_orderness_ms`] in microseconds.
    pub fn max_out_of_orderness_us(&self) -> i64 {
        millis_to_micros(self.max_out_of_orderness_ms)
    }

    /// [`WatermarkConfig::allowed_lateness_ms`] in microseconds.
    pub fn allowed_lateness_us(&self) -> i64 {
        millis_to_micros(self.allowed_lateness_ms)
    }

    /// [`WatermarkConfig::jump_warning_ms`] in microseconds; `None` when jumps are not
    /// reported.
    pub fn jump_warning_us(&self) -> Option<i64> {
        (self.jump_warning_ms > 0).then(|| millis_to_micros(self.jump_warning_ms))
    }

    /// [`WatermarkConfig::idle_timeout_ms`] as a duration; `None` when idleness is off.
    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout_ms > 0).then(|| Duration::from_millis(self.idle_timeout_ms))
    }
}

fn millis_to_micros(ms: u64) -> i64 {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| ms.checked_mul(1_000))
        .unwrap_or(i64::MAX)
}
