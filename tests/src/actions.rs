//! Remediation events as the planner makes them, for the suites of what acts on them.

use std::collections::BTreeMap;

use opsloop_actions::TemplateId;
use opsloop_schemas::ops::{ParamValue, RemediationEvent};

/// An unsigned first attempt of `template` on `target` with `params`, for incident
/// `incident-<action id>`, with the template's own rollback; sign it with
/// `opsloop_actions::seal::sign_event` once its other fields are set.
pub fn remediation_event(
    action_id: &str,
    template: &str,
    target: &str,
    params: &[(&str, ParamValue)],
) -> RemediationEvent {
    let params: BTreeMap<String, ParamValue> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let mut event = RemediationEvent::new(
        action_id,
        format!("incident-{action_id}"),
        template,
        target,
        params,
    );
    event.rollback_template = template
        .parse::<TemplateId>()
        .ok()
        .and_then(|t| t.spec().rollback)
        .map(|t| t.as_str().to_owned());
    event
}
