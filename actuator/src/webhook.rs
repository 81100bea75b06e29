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

use std::collections::BTreeMap;
use std::time::Duration;

use opsloop_schemas::ops::ParamValue;

use crate::{ActuatorConfig, ActuatorError};

/// Runs `template` with `params`; what was requested, for the audit trail.
pub fn execute(
    config: &ActuatorConfig,
    template: &str,
    params: &BTreeMap<String, ParamValue>,
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
    let text = |name: &str| match params.get(name) {
        Some(ParamValue::String(value)) => Ok(value.clone()),
        other => Err(ActuatorError::Refused(format!(
            "parameter {name}: {other:?}"
        ))),
    };
    let base = |url: &Option<String>, what: &str| {
        url.as_deref()
            .map(|u| u.trim_end_matches('/').to_owned())
            .ok_or_else(|| ActuatorError::Config(format!("no {what} configured for {template}")))
    };
    match template {
        "webhook.retrain" => {
            let url = format!(
                "{}/api/v1/dags/{}/dagRuns",
                base(&config.airflow_url, "airflow_url")?,
                text("dag_id")?
            );
            let body = serde_json::json!({
                "dag_run_id": format!("opsloop-{action_id}"),
                "conf": {"model": text("model")?, "incident_id": incident_id},
            });
            post_json(&agent, &url, &body.to_string(), &[409])
        }
        "webhook.scale" => {
            let url = format!(
                "{}/apis/apps/v1/namespaces/{}/deployments/{}/scale",
                base(&config.kubernetes_url, "kubernetes_url")?,
                config.kubernetes_namespace,
                text("deployment")?
            );
            let delta = match params.get("delta") {
                Some(ParamValue::Long(delta)) => *delta,
                other => {
                    return Err(ActuatorError::Refused(format!(
                        "parameter delta: {other:?}"
                    )));
                }
            };
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
                    .send(patch.as_str())
                    .map(|r| r.status().as_u16())
            })?;
            accept(&url, status, &[])?;
            Ok(format!(
                "PATCH {url}: replicas {replicas} -> {wanted} (HTTP {status})"
            ))
        }
        "webhook.failover" => {
            let url = format!(
                "{}/failover/{}",
                base(&config.kubernetes_url, "kubernetes_url")?,
                text("cluster")?
            );
            let body = serde_json::json!({"action_id": action_id}).to_string();
            post_json(&agent, &url, &body, &[])
        }
        "webhook.maintenance" | "webhook.capacity_plan" => {
            let kind = if template == "webhook.maintenance" {
                "maintenance"
            } else {
                "capacity-plans"
            };
            let url = format!("{}/{kind}", base(&config.tickets_url, "tickets_url")?);
            let params: BTreeMap<&str, serde_json::Value> = params
                .iter()
                .map(|(name, value)| {
                    let value = match value {
                        ParamValue::String(text) => serde_json::json!(text),
                        ParamValue::Long(number) => serde_json::json!(number),
                        ParamValue::Double(number) => serde_json::json!(number),
                        ParamValue::Boolean(flag) => serde_json::json!(flag),
                    };
                    (name.as_str(), value)
                })
                .collect();
            let body = serde_json::json!({
                "action_id": action_id,
                "incident_id": incident_id,
                "params": params,
            })
            .to_string();
            post_json(&agent, &url, &body, &[])
        }
        other => Err(ActuatorError::Refused(format!(
            "{other} is not a webhook template"
        ))),
    }
}

/// POSTs JSON `body` (with retries); success is a 2xx or one of `also`.
fn post_json(
    agent: &ureq::Agent,
    url: &str,
    body: &str,
    also: &[u16],
) -> Result<String, ActuatorError> {
    let status = with_retries(url, || {
        agent
            .post(url)
            .header("content-type", "application/json")
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
