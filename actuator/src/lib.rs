//! Acting on remediation events, under governance: the stage after the planner
//! (`ops.remediation`) whose every step is an entry of the audit trail (`ops.actions`).
//!
//! - [`governance`]: the allow-list (planner's catalog, narrowed by configuration), parameter
//!   validation, a token-bucket rate limit and the concurrency limit;
//! - [`approvals`]: HMAC-SHA256-signed decisions on gated actions;
//! - [`postgres`] and [`webhook`]: the executors, each with impact assessment and probes of the
//!   metrics an action should move;
//! - [`audit`]: the append-only, hash-chained local log (`opsloop audit verify`);
//! - [`Actuator`]: one action's life — planned, approved, executed, verified or rolled back,
//!   failed, skipped — idempotent by action id across restarts.

mod actuator;
pub mod approvals;
pub mod audit;
mod config;
mod error;
pub mod governance;
pub mod postgres;
pub mod webhook;

pub use actuator::{Actuator, DecisionOutcome, Handled};
pub use config::{ActuatorConfig, VerifyConfig};
pub use error::ActuatorError;
