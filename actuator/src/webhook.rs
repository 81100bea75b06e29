//! The webhook executor: retraining triggers in the shape of Airflow's REST API and scaling in
//! the shape of the Kubernetes scale subresource, each with a timeout and retries.
//!
//! - `webhook.retrain`: `POST {airflow_url}/api/v1/dags/{dag_id}/dagRuns` with
//!   `{"dag_run_id": "opsloop-<action id>", "conf": {"model", "incident_id"}}`; the run id
//!   makes a retry idempotent (Airflow answers 409 for a run that exists, taken as done).
//! - `webhook.scale`: `GET .../namespaces/{ns}/deployments/{name}/scale`, then `PATCH` it
//!   (`application/merge-patch+json`) to `spec.replicas + delta`, at least 0.
//! - `webhook.failover`: `POST {kubernetes_url}/failover/{cluster}` with the action id.
//! - `webhook.maintenance` and `webhook.capacity_plan` (proactive plans): `POST
//!   {tickets_url}/maintenance` or `/capacity-plans` with the action id, the incident (forecast
//!   cycle) and the parameters, for whatever tracks such requests.
//!
//! Every request carries the action id in an `Idempotency-Key` header.

use std::time::Duration;

use opsloop_actions::Action;
use opsloop_schemas::ops::ParamValue;

use crate::{ActuatorConfig, ActuatorError};

/// Runs `action` as action `action_id` of `incident_id`; what was requested, for the audit
/// trail. Every request carries the action id as its `Idempotency-Key`, so a receiver can
/// tell a retry from a new request.
pub fn execute(
    config: &ActuatorConfig,
    action: &Action,
    action_id: &str,
    incident_id: &str,
) -> Result<String, ActuatorError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(
            config.operation_timeout_s.clamp(1, 30),
        )))
        .http_status_as_error(false)
        .build()
        .into();
    let template = action.template();
    let base = |url: &Option<String>, what: &str| {
        url.as_deref()
            .map(|u| u.trim_end_matches('/').to_owned())
            .ok_or_else(|| ActuatorError::Config(format!("no {what} configured for {template}")))
    };
    let post = |url: &str, body: serde_json::Value, also: &[u16]| {
        post_json(&agent, url, &body.to_string(), action_id, also)
    };
    match action {
        Action::Retrain { dag_id, model } => {
            let url = format!(
                "{}/api/v1/dags/{dag_id}/dagRuns",
                base(&config.airflow_url, "airflow_url")?
            );
            let body = serde_json::json!({
                "dag_run_id": format!("opsloop-{action_id}"),
                "conf": {"model": model, "incident_id": incident_id},
            });
            post(&url, body, &[409])
        }
        Action::Scale { deployment, delta } => {
            let url = format!(
                "{}/apis/apps/v1/namespaces/{}/deployments/{deployment}/scale",
                base(&config.kubernetes_url, "kubernetes_url")?,
                config.kubernetes_namespace,
            );
            let current = with_retries(&url, || {
                agent
                    .get(&url)
                    .call()
                    .and_then(|mut r| r.body_mut().read_to_string())
            })?;
            let current: serde_json::Value =
                serde_json::from_str(&current).map_err(|error| ActuatorError::Webhook {
                    url: url.clone(),
                    reason: format!("the scale is not JSON: {error}"),
                })?;
            let replicas = current["spec"]["replicas"].as_i64().unwrap_or(0);
            let wanted = (replicas + delta).max(0);
            let patch = serde_json::json!({"spec": {"replicas": wanted}}).to_string();
            let status = with_retries(&url, || {
                agent
                    .patch(&url)
                    .header("content-type", "application/merge-patch+json")
                    .header("idempotency-key", action_id)
                    .send(patch.as_str())
                    .map(|r| r.status().as_u16())
            })?;
            accept(&url, status, &[])?;
            Ok(format!(
                "PATCH {url}: replicas {replicas} -> {wanted} (HTTP {status})"
            ))
        }
        Action::Failover { cluster } => {
            let url = format!(
                "{}/failover/{cluster}",
                base(&config.kubernetes_url, "kubernetes_url")?
            );
            post(&url, serde_json::json!({"action_id": action_id}), &[])
        }
        Action::Maintenance { .. } | Action::CapacityPlan { .. } => {
            let kind = if matches!(action, Action::Maintenance { .. }) {
                "maintenance"
            } else {
                "capacity-plans"
            };
            let url = format!("{}/{kind}", base(&config.tickets_url, "tickets_url")?);
            let params: serde_json::Map<String, serde_json::Value> = action
                .params()
                .into_iter()
                .map(|(name, value)| {
                    let value = match value {
                        ParamValue::String(text) => serde_json::json!(text),
                        ParamValue::Long(number) => serde_json::json!(number),
                        ParamValue::Double(number) => serde_json::json!(number),
                        ParamValue::Boolean(flag) => serde_json::json!(flag),
                    };
                    (name, value)
                })
                .collect();
            let body = serde_json::json!({
                "action_id": action_id,
                "incident_id": incident_id,
                "params": params,
            });
            post(&url, body, &[])
        }
        other => Err(ActuatorError::Refused(format!(
            "{} is not a webhook action",
            other.template()
        ))),
    }
}

/// POSTs JSON `body` (with retries); success is a 2xx or one of `also`.
fn post_json(
    agent: &ureq::Agent,
    url: &str,
    body: &str,
    idempotency_key: &str,
    also: &[u16],
) -> Result<String, ActuatorError> {
    let status = with_retries(url, || {
        agent
            .post(url)
            .header("content-type", "application/json")
            .header("idempotency-key", idempotency_key)
            .send(body)
            .map(|r| r.status().as_u16())
    })?;
    accept(url, status, also)?;
    Ok(format!("POST {url} (HTTP {status})"))
}

/// Three attempts with doubling back-off from 200 ms, on transport errors.
fn with_retries<T>(
    url: &str,
    mut call: impl FnMut() -> Result<T, ureq::Error>,
) -> Result<T, ActuatorError> {
    let mut backoff = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match call() {
            Ok(value) => return Ok(value),
            Err(error) if attempt >= 3 => {
                return Err(ActuatorError::Webhook {
                    url: url.to_owned(),
                    reason: error.to_string(),
                });
            }
            Err(_) => {
                std::thread::sleep(backoff);
                backoff *= 2;
                attempt += 1;
            }
        }
    }
}

fn accept(url: &str, status: u16, also: &[u16]) -> Result<(), ActuatorError> {
    if (200..300).contains(&status) || also.contains(&status) {
        Ok(())
    } else {
        Err(ActuatorError::Webhook {
            url: url.to_owned(),
            reason: format!("HTTP {status}"),
        })
    }
}
