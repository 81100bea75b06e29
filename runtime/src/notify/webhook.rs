//! A generic webhook: the incident version as JSON, with a firing/resolved status.

use opsloop_correlator::Notification;
use opsloop_schemas::ops::IncidentState;

use super::{EndpointConfig, Receive};

pub(super) struct Webhook {
    endpoint: EndpointConfig,
}

impl Webhook {
    pub(super) fn new(endpoint: EndpointConfig) -> Self {
        Webhook { endpoint }
    }
}

impl Receive for Webhook {
    fn name(&self) -> &str {
        "webhook"
    }

    fn endpoint(&self) -> &EndpointConfig {
        &self.endpoint
    }

    /// `{"version": "1", "status": "firing"|"resolved", "repeat": bool, "incident": {...}}`
    fn body(&self, notification: &Notification) -> String {
        let status = if notification.incident.state == IncidentState::Resolved {
            "resolved"
        } else {
            "firing"
        };
        serde_json::json!({
            "version": "1",
            "status": status,
            "repeat": notification.repeat,
            "incident": notification.incident,
        })
        .to_string()
    }
}
