//! The proactive rules (the seed's defaults, configurable) and the plans they make:
//!
//! | rule | fires when | plan | priority, act within |
//! |---|---|---|---|
//! | `failure_risk` | the risk model's score > 0.7 | `webhook.maintenance` (a window within 24 h) | high, 24 h |
//! | `latency_sla` | forecast p99 for the next hour > 200 ms | `webhook.scale` +1 (the entity's deployment), else `webhook.capacity_plan` | medium, 1 h |
//! | `capacity` | next week's demand > 80% of a resource | `webhook.capacity_plan` | low, 7 days |
//!
//! "Above" is strict: a value exactly at a threshold does not fire. Plans become remediation
//! events of kind PROACTIVE, band PREVENTIVE, so they pass the same governance as reactive
//! ones.

use std::collections::BTreeMap;
use std::time::Duration;

use opsloop_actions::{Action, Identifier};
use opsloop_schemas::ids::stable_id;
use opsloop_schemas::ops::{RemediationEvent, RemediationKind, SeverityBand};
use serde::Deserialize;

/// The thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProactiveRules {
    pub failure_risk: f64,
    pub sla_p99_ms: f64,
    pub capacity_share: f64,
}

impl Default for ProactiveRules {
    fn default() -> Self {
        ProactiveRules {
            failure_risk: 0.7,
            sla_p99_ms: 200.0,
            capacity_share: 0.8,
        }
    }
}

/// What the forecasts and the risk model say about one entity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outlook {
    pub entity: String,
    pub failure_risk: Option<f64>,
    /// The highest forecast p99 latency over the next hour, ms.
    pub forecast_p99_ms: Option<f64>,
    /// Per resource (storage, connections, gpu_memory): the highest forecast share of its
    /// limit over the next week.
    pub capacity_share: BTreeMap<String, f64>,
    /// Per resource: seconds until its limit is reached, when heading there.
    pub time_to_exhaustion_s: BTreeMap<String, f64>,
    /// Every forecast about the entity (latency, capacity, cost, ...).
    pub forecasts: Vec<opsloop_schemas::ops::Forecast>,
    /// The deployment serving the entity, when scaling it is possible.
    pub deployment: Option<String>,
    pub model_version: Option<String>,
}

/// How urgent a proactive plan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    High,
    Medium,
    Low,
}

/// One plan a rule made.
#[derive(Debug, Clone, PartialEq)]
pub struct ProactivePlan {
    pub rule: &'static str,
    pub priority: Priority,
    pub act_within: Duration,
    pub action: Action,
    pub reason: String,
}

const HOUR: Duration = Duration::from_secs(3600);

/// The plans `outlook` calls for under `rules`.
pub fn evaluate(rules: &ProactiveRules, outlook: &Outlook) -> Vec<ProactivePlan> {
    let mut plans = Vec::new();
    if let Some(risk) = outlook.failure_risk
        && risk > rules.failure_risk
    {
        plans.push(ProactivePlan {
            rule: "failure_risk",
            priority: Priority::High,
            act_within: 24 * HOUR,
            action: Action::Maintenance { window_h: 24 },
            reason: format!(
                "failure risk {risk:.2} above {:.2} (model {})",
                rules.failure_risk,
                outlook.model_version.as_deref().unwrap_or("unknown")
            ),
        });
    }
    if let Some(p99) = outlook.forecast_p99_ms
        && p99 > rules.sla_p99_ms
    {
        let reason = format!(
            "p99 forecast for the next hour {p99:.0} ms above the {:.0} ms SLA",
            rules.sla_p99_ms
        );
        let deployment = outlook
            .deployment
            .as_deref()
            .and_then(|name| Identifier::new(name).ok());
        let action = match deployment {
            Some(deployment) => Action::Scale {
                deployment,
                delta: 1,
            },
            None => Action::CapacityPlan {
                resource: "query capacity".to_owned(),
                days: 1,
            },
        };
        plans.push(ProactivePlan {
            rule: "latency_sla",
            priority: Priority::Medium,
            act_within: HOUR,
            action,
            reason,
        });
    }
    for (resource, share) in &outlook.capacity_share {
        if *share > rules.capacity_share {
            plans.push(ProactivePlan {
                rule: "capacity",
                priority: Priority::Low,
                act_within: 7 * 24 * HOUR,
                action: Action::CapacityPlan {
                    resource: resource.clone(),
                    days: 7,
                },
                reason: format!(
                    "{resource} demand next week at {:.0}% of its limit, above {:.0}%{}",
                    share * 100.0,
                    rules.capacity_share * 100.0,
                    outlook
                        .time_to_exhaustion_s
                        .get(resource)
                        .map(|s| format!("; full in {:.1} days", s / 86_400.0))
                        .unwrap_or_default()
                ),
            });
        }
    }
    plans
}

/// `plan` for `entity` as a PROACTIVE remediation event made at `now_us`; its action id is
/// stable per (entity, rule, template, parameters, forecast cycle `cycle_id`).
pub fn to_event(
    plan: &ProactivePlan,
    entity: &str,
    cycle_id: &str,
    now_us: i64,
) -> RemediationEvent {
    let template = plan.action.template();
    let params = plan.action.params();
    let params_text = format!("{params:?}");
    let action_id = stable_id(&[
        entity.as_bytes(),
        plan.rule.as_bytes(),
        template.as_str().as_bytes(),
        params_text.as_bytes(),
        cycle_id.as_bytes(),
    ]);
    let mut event = RemediationEvent::new(
        action_id,
        format!("forecast-{cycle_id}"),
        template.as_str(),
        entity,
        params,
    );
    event.kind = RemediationKind::Proactive;
    event.band = SeverityBand::Preventive;
    let spec = template.spec();
    event.risk = spec.risk;
    event.approval_required = spec.approval.needs_approval(false);
    event.rollback_template = spec.rollback.map(|r| r.as_str().to_owned());
    event.agent = "reliability".to_owned();
    event.rationale = format!(
        "{} ({:?} priority): {}",
        plan.rule, plan.priority, plan.reason
    );
    event.created_us = now_us;
    event.deadline_us =
        Some(now_us.saturating_add(i64::try_from(plan.act_within.as_micros()).unwrap_or(i64::MAX)));
    event
}
