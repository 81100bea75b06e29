//! Prometheus Alertmanager's v2 API: `POST /api/v2/alerts` with one alert per incident.
//!
//! Labels identify the incident and carry its tier, pattern and failure type (so an
//! Alertmanager route can group and page by tier); annotations carry the summary, the leading
//! hypothesis and the deadline. A firing incident's `endsAt` lies one re-send horizon ahead
//! (Alertmanager resolves alerts that stop being re-sent); a resolved one ends now.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opsloop_correlator::Notification;
use opsloop_schemas::ops::{Incident, IncidentState};

use super::{EndpointConfig, Receive};

/// How long Alertmanager keeps a firing incident without hearing of it again: past the
/// correlator's default repeat interval (4 h) plus its group interval (5 min).
const FIRING_HORIZON: Duration = Duration::from_secs(4 * 3600 + 10 * 60);

pub(super) struct Alertmanager {
    endpoint: EndpointConfig,
}

impl Alertmanager {
    pub(super) fn new(mut endpoint: EndpointConfig) -> Self {
        let base = endpoint.url.trim_end_matches('/');
        endpoint.url = format!("{base}/api/v2/alerts");
        Alertmanager { endpoint }
    }
}

impl Receive for Alertmanager {
    fn name(&self) -> &str {
        "alertmanager"
    }

    fn endpoint(&self) -> &EndpointConfig {
        &self.endpoint
    }

    fn body(&self, notification: &Notification) -> String {
        alertmanager_alerts(
            std::slice::from_ref(&notification.incident),
            SystemTime::now(),
        )
        .to_string()
    }
}

/// The v2 `postableAlerts` body for `incidents`, as of wall-clock `now`.
fn alertmanager_alerts(incidents: &[Incident], now: SystemTime) -> serde_json::Value {
    let alerts: Vec<serde_json::Value> = incidents
        .iter()
        .map(|incident| {
            let mut labels: BTreeMap<String, String> = incident.labels.clone();
            labels.insert(
                "alertname".to_owned(),
                format!("opsloop_{}", incident.pattern),
            );
            labels.insert("incident_id".to_owned(), incident.incident_id.clone());
            labels.insert("entity".to_owned(), incident.entity.clone());
            labels.insert("pattern".to_owned(), incident.pattern.clone());
            labels.insert("failure_type".to_owned(), incident.failure_type.clone());
            labels.insert("tier".to_owned(), format!("{:?}", incident.tier));
            let mut annotations = BTreeMap::from([
                (
                    "summary".to_owned(),
                    format!(
                        "{} {} on {} (severity {:.2}): {}",
                        format_args!("{:?}", incident.tier),
                        incident.failure_type,
                        incident.entity,
                        incident.severity,
                        incident.alert_types.join(", ")
                    ),
                ),
                ("severity".to_owned(), format!("{:.3}", incident.severity)),
                ("version".to_owned(), incident.version.to_string()),
            ]);
            if let Some(hypothesis) = incident.hypotheses.first() {
                annotations.insert("root_cause".to_owned(), hypothesis.cause.clone());
            }
            if let Some(deadline) = incident.deadline_us {
                annotations.insert("deadline".to_owned(), rfc3339(micros_to_time(deadline)));
            }
            let ends = if incident.state == IncidentState::Resolved {
                now
            } else {
                now + FIRING_HORIZON
            };
            serde_json::json!({
                "labels": labels,
                "annotations": annotations,
                "startsAt": rfc3339(micros_to_time(incident.opened_us).min(now)),
                "endsAt": rfc3339(ends),
            })
        })
        .collect();
    serde_json::Value::Array(alerts)
}

fn micros_to_time(time_us: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(u64::try_from(time_us).unwrap_or(0))
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}
