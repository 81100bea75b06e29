//! Acting on remediation events, under governance: the stage after the planner
//! (`ops.remediation`) whose every step is an entry of the audit trail (`ops.actions`).
//!
//! - [`policy`]: the planner's signature, the allow-list (the catalog of `opsloop_actions`,
//!   narrowed by configuration), parameter validation and who must approve: the actuator's
//!   own decisions, never the event's;
//! - [`governance`]: a token-bucket rate limit and the concurrency limit;
//! - [`claims`]: exactly once per action attempt, through a claim in the target database;
//! - [`postgres`] and [`webhook`]: the executors, each with impact assessment and probes of the
//!   metrics an action should move;
//! - [`verdicts`]: the correlator's word on whether an incident's alerts stayed clear after
//!   its action;
//! - [`twin`]: a digital twin as the target of every action (the demo's simulated fleet);
//! - [`audit`]: the append-only, hash-chained local log (`opsloop audit verify`);
//! - [`ActuatorEvents`]: every audit entry and refusal, logged and counted in one call;
//! - [`Actuator`]: one action's life — planned, approved, executed, verified or rolled back,
//!   failed, skipped, refused — once per action id across duplicates, restarts and instances.

mod actuator;
pub mod audit;
pub mod claims;
mod config;
mod error;
mod events;
pub mod governance;
mod keyed;
pub mod policy;
pub mod postgres;
pub mod twin;
pub mod verdicts;
pub mod webhook;

pub use actuator::{Actuator, DecisionOutcome, Handled};
pub use config::{ActuatorConfig, VerifyConfig};
pub use error::ActuatorError;
pub use events::ActuatorEvents;
