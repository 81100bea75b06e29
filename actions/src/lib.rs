//! The action catalog: everything opsloop may do to a system it looks after, shared by the
//! planner that proposes actions, the predictor that plans ahead and the actuators that run
//! them. It sits below all three, so none of them depends on another for it.
//!
//! - [`TemplateId`] names a template; [`Template`] is its specification (parameters, risk,
//!   approval policy, rollback, executor, how success is judged). Adding a template adds a
//!   variant, and every `match` over templates and [`Action`]s stops compiling until it is
//!   handled.
//! - [`Action`]: a template with its parameters, typed and validated: identifiers are plain
//!   SQL names, integers are within bounds. An [`Identifier`] is built only through
//!   validation, so nothing in an event can smuggle SQL into an executor; an action from an
//!   event is parsed ([`Action::parse`]), one built in code is checked with
//!   [`Action::validate`].
//! - [`seal`]: the digest of an action's content (id, incident, template, target, parameters,
//!   attempt), the planner's signature over a remediation event and the approvers' signature
//!   over a decision on that digest.

mod action;
mod error;
pub mod seal;
mod template;

pub use action::{Action, Identifier, advised_index_name};
pub use error::ActionError;
pub use template::{
    ApprovalPolicy, CATALOG, Executor, Goal, ParamKind, ParamSpec, Template, TemplateId,
};
