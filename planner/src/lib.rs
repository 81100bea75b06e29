//! Planning: the stage between incidents (`ops.incidents`) and remediation events
//! (`ops.remediation`).
//!
//! - [`templates`]: the catalog of action templates — typed parameters, risk, rollback,
//!   executor — that is also the actuators' allow-list: a plan names a template and its
//!   parameters, never free SQL;
//! - [`agents`]: five agents (performance, cost, reliability, security, compliance) each
//!   propose actions for an incident;
//! - [`resolver`]: settles conflicts between proposals (opposite scaling, duplicate targets,
//!   compliance vetoes) and records why;
//! - [`learning`]: Thompson sampling over each (failure type, template)'s success record, so
//!   the planner prefers what has worked;
//! - [`Planner`]: incident in, remediation events out.

pub mod agents;
mod error;
pub mod learning;
mod planner;
pub mod resolver;
pub mod templates;

pub use error::PlannerError;
pub use planner::{Planner, PlannerConfig};
