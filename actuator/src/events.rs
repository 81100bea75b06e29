//! The actuator's observable events, each logged (`tracing`) and counted (Prometheus) in one
//! call: every audit entry by step, and every refusal by reason. A service registers them
//! ([`ActuatorEvents::register`]) and hands them to its [`Actuator`](crate::Actuator); without
//! that they count where nobody scrapes.

use opsloop_schemas::ops::ActionOutcome;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

type ByLabel = Family<Vec<(String, String)>, Counter>;

/// The actuator's events; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct ActuatorEvents {
    steps: ByLabel,
    refused: ByLabel,
}

impl ActuatorEvents {
    /// The events, their counters registered in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let events = ActuatorEvents::default();
        for (name, help, family) in [
            (
                "opsloop_actions",
                "Audit entries written, per step",
                &events.steps,
            ),
            (
                "opsloop_actuator_refused",
                "Remediation events and approvals refused, per reason",
                &events.refused,
            ),
        ] {
            registry.register(name, help, family.clone());
        }
        events
    }

    /// An audit entry written.
    pub(crate) fn step(&self, entry: &ActionOutcome) {
        tracing::info!(action_id = %entry.action_id, step = ?entry.step, template = %entry.template, target = %entry.target, attempt = entry.attempt, detail = %entry.detail, "action");
        let step = format!("{:?}", entry.step).to_lowercase();
        self.steps
            .get_or_create(&vec![("step".to_owned(), step)])
            .inc();
    }

    /// An event or a decision refused, with the reason's code.
    pub(crate) fn refused(&self, action_id: &str, reason: &str, detail: &str) {
        tracing::warn!(action_id, reason, detail, "refused");
        self.refused
            .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
            .inc();
    }
}
