//! A digital twin as the actuator's target: with one ([`crate::Actuator::with_twin`]) every
//! action runs on it instead of on PostgreSQL or a webhook, through the same governance
//! (policy, approvals, canary, rate and concurrency limits), probes and verification, and the
//! audit log's times are the twin's clock. `opsloop demo` closes its loop on a simulated fleet
//! this way.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;

use opsloop_actions::Action;

use crate::postgres::Probe;

/// What an actuator needs of a twin.
pub trait Twin: Send + Sync + Debug {
    /// The twin's clock: event time now, microseconds since the Unix epoch.
    fn now_us(&self) -> i64;

    /// `action`'s probe on `target` from the twin's latest telemetry: the metric it should
    /// move and what it would act on; `None` when the twin has no such target.
    fn probe(&self, target: &str, action: &Action) -> Option<Probe>;

    /// Carries out `action` on `target`; what it did, or why it could not.
    fn apply(&self, target: &str, action: &Action) -> Result<String, String>;

    /// Resolves once the twin's telemetry reflects a time after the call (the effect of an
    /// action taken before it shows).
    fn settle(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}
