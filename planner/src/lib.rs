//! Planning: the stage between incidents (`ops.incidents`) and remediation events
//! (`ops.remediation`).
//!
//! The actions it may plan are the catalog of `opsloop_actions`: a plan names a template and
//! typed parameters, never free SQL.
//!
//! - [`agents`]: five agents (performance, cost, reliability, security, compliance) each
//!   propose actions for an incident;
//! - [`resolver`]: settles conflicts between proposals (opposite scaling, duplicate targets,
//!   compliance vetoes) and records why;
//! - [`learning`]: Thompson sampling over each (failure type, template)'s success record, so
//!   the planner prefers what has worked;
//! - [`Planner`]: incident versions and action outcomes in, signed remediation events out,
//!   each fix tried in attempts with backoff and escalation.

pub mod agents;
mod error;
pub mod learning;
mod planner;
pub mod resolver;

pub use error::PlannerError;
pub use planner::{Escalation, Planner, PlannerConfig, Retries};
