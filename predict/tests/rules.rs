//! Each proactive rule fires exactly when its threshold is crossed, and its plan is a
//! PROACTIVE remediation event with the rule's template, priority and deadline.

use std::collections::BTreeMap;

use opsloop_actions::TemplateId;
use opsloop_predict::proactive::{Outlook, Priority, ProactiveRules, evaluate, to_event};
use opsloop_schemas::ops::{ParamValue, RemediationKind, SeverityBand};

const HOUR_US: i64 = 3_600_000_000;

fn outlook() -> Outlook {
    Outlook {
        entity: "db-1".to_owned(),
        model_version: Some("risk-1-100".to_owned()),
        ..Outlook::default()
    }
}

#[test]
fn failure_risk_above_0_7_plans_maintenance_within_a_day() {
    let rules = ProactiveRules::default();
    for (risk, fires) in [(0.69, false), (0.7, false), (0.7001, true), (0.95, true)] {
        let plans = evaluate(
            &rules,
            &Outlook {
                failure_risk: Some(risk),
                ..outlook()
            },
        );
        assert_eq!(plans.len(), usize::from(fires), "risk {risk}");
    }
    let plans = evaluate(
        &rules,
        &Outlook {
            failure_risk: Some(0.8),
            ..outlook()
        },
    );
    let plan = &plans[0];
    assert_eq!(
        (plan.rule, plan.priority, plan.action.template()),
        (
            "failure_risk",
            Priority::High,
            TemplateId::WebhookMaintenance
        )
    );
    let event = to_event(plan, "db-1", "cycle-7", 10 * HOUR_US);
    assert_eq!(event.kind, RemediationKind::Proactive);
    assert_eq!(event.band, SeverityBand::Preventive);
    assert_eq!(event.deadline_us, Some(34 * HOUR_US));
    assert_eq!(event.incident_id, "forecast-cycle-7");
    assert!(
        event.rationale.contains("model risk-1-100"),
        "{}",
        event.rationale
    );
    assert!(!event.approval_required);
    assert_eq!(
        event.action_id,
        to_event(plan, "db-1", "cycle-7", 99).action_id,
        "stable per cycle"
    );
    assert_ne!(
        event.action_id,
        to_event(plan, "db-1", "cycle-8", 99).action_id
    );
}

#[test]
fn a_p99_forecast_above_the_sla_plans_scaling_within_an_hour() {
    let rules = ProactiveRules::default();
    for (p99, fires) in [(199.9, false), (200.0, false), (200.1, true)] {
        let plans = evaluate(
            &rules,
            &Outlook {
                forecast_p99_ms: Some(p99),
                ..outlook()
            },
        );
        assert_eq!(plans.len(), usize::from(fires), "p99 {p99}");
    }
    let scalable = Outlook {
        forecast_p99_ms: Some(250.0),
        deployment: Some("feature_api".to_owned()),
        ..outlook()
    };
    let plan = &evaluate(&rules, &scalable)[0];
    assert_eq!(
        (plan.rule, plan.priority, plan.action.template()),
        ("latency_sla", Priority::Medium, TemplateId::WebhookScale)
    );
    assert_eq!(plan.action.params()["delta"], ParamValue::Long(1));
    let event = to_event(plan, "db-1", "c", 0);
    assert_eq!(event.deadline_us, Some(HOUR_US));
    assert!(
        event.approval_required,
        "scaling outside an emergency needs an approval"
    );
    // No deployment to scale: a capacity request instead.
    let plan = &evaluate(
        &rules,
        &Outlook {
            forecast_p99_ms: Some(250.0),
            ..outlook()
        },
    )[0];
    assert_eq!(plan.action.template(), TemplateId::WebhookCapacityPlan);
}

#[test]
fn next_weeks_capacity_above_80_percent_plans_capacity_within_a_week() {
    let rules = ProactiveRules::default();
    let shares = BTreeMap::from([
        ("storage".to_owned(), 0.8),
        ("connections".to_owned(), 0.81),
        ("gpu_memory".to_owned(), 0.5),
    ]);
    let plans = evaluate(
        &rules,
        &Outlook {
            capacity_share: shares,
            ..outlook()
        },
    );
    assert_eq!(plans.len(), 1, "only connections is above 80%: {plans:?}");
    let plan = &plans[0];
    assert_eq!((plan.rule, plan.priority), ("capacity", Priority::Low));
    assert_eq!(
        plan.action.params()["resource"],
        ParamValue::String("connections".to_owned())
    );
    assert_eq!(
        to_event(plan, "db-1", "c", 0).deadline_us,
        Some(7 * 24 * HOUR_US)
    );
    // Thresholds are configurable.
    let strict = ProactiveRules {
        capacity_share: 0.4,
        ..rules
    };
    let shares = BTreeMap::from([("gpu_memory".to_owned(), 0.5)]);
    assert_eq!(
        evaluate(
            &strict,
            &Outlook {
                capacity_share: shares,
                ..outlook()
            }
        )
        .len(),
        1
    );
}
