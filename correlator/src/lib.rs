//! Alert correlation: the stage between the engine's alerts (`ops.alerts`) and the incidents
//! the planner and people act on (`ops.incidents`).
//!
//! - [`config`]: grouping and timing as in Prometheus Alertmanager (`group_by`, `group_wait`,
//!   `group_interval`, `repeat_interval`, inhibition rules, silences), hysteresis, tiers and the
//!   seed's correlation patterns, with embedded TOML defaults;
//! - [`Correlator`]: the state machine (open, updated, acknowledged, resolved) on event time;
//! - root-cause hypotheses ranked by onset, lead-lag and the pattern's known cause.
//!
//! The crate does no I/O: `opsloop run` feeds it alerts and the watermark, publishes the
//! versions and pushes the notifications.

pub mod config;
mod correlator;
mod error;
mod hypotheses;
mod incident;
mod matcher;

pub use config::{CorrelatorConfig, DEFAULT_CORRELATOR_CONFIG};
pub use correlator::{Correlator, CorrelatorCounters, CorrelatorStatus, Emitted, Notification};
pub use error::CorrelatorError;
pub use hypotheses::MAX_LAG_STEPS;
pub use incident::{STANDALONE, UNCLASSIFIED};
pub use matcher::Matcher;
