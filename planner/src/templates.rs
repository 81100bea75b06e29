//! The action-template catalog: everything opsloop may do, each with typed parameters, a risk,
//! an approval policy, a rollback and the executor that runs it.
//!
//! The catalog is the actuators' allow-list: a remediation event names a template id and
//! parameters; an actuator runs only templates its configuration allows and only after
//! [`Template::validate`] accepts the parameters, so nothing in an event can smuggle in SQL.
//! Identifiers must be plain SQL identifiers (`[A-Za-z_][A-Za-z0-9_]*`, at most 63 bytes,
//! optionally schema-qualified); the executors quote them as well.

use std::collections::BTreeMap;

use opsloop_schemas::ops::ParamValue;

use crate::PlannerError;

/// Who runs a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Executor {
    Postgres,
    Webhook,
}

/// When a template needs a person's approval (on `ops.approvals`) before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalPolicy {
    Never,
    /// Unless the incident is an emergency (severity 0.8 and up).
    UnlessEmergency,
    Always,
}

/// The type of one parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A SQL identifier, optionally schema-qualified (`public.orders`).
    Identifier,
    /// An integer within bounds.
    Integer { min: i64, max: i64 },
    /// Free text up to a length (webhook payloads only; never reaches SQL).
    Text { max_len: usize },
}

/// One parameter of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamKind,
}

/// An action template.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Template {
    pub id: &'static str,
    pub description: &'static str,
    pub executor: Executor,
    pub params: &'static [ParamSpec],
    /// Risk in [0, 1]: how much harm a wrong execution does.
    pub risk: f64,
    pub approval: ApprovalPolicy,
    /// The template that undoes this one, if any.
    pub rollback: Option<&'static str>,
}

const fn identifier(name: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        kind: ParamKind::Identifier,
    }
}

const fn integer(name: &'static str, min: i64, max: i64) -> ParamSpec {
    ParamSpec {
        name,
        kind: ParamKind::Integer { min, max },
    }
}

/// Every template opsloop knows.
pub const CATALOG: &[Template] = &[
    Template {
        id: "pg.reindex_concurrently",
        description: "REINDEX INDEX CONCURRENTLY a degraded or bloated index",
        executor: Executor::Postgres,
        params: &[identifier("index")],
        risk: 0.3,
        approval: ApprovalPolicy::Never,
        rollback: None,
    },
    Template {
        id: "pg.analyze",
        description: "ANALYZE a table whose statistics are stale",
        executor: Executor::Postgres,
        params: &[identifier("table")],
        risk: 0.1,
        approval: ApprovalPolicy::Never,
        rollback: None,
    },
    Template {
        id: "pg.vacuum",
        description: "VACUUM (ANALYZE) a table with many dead tuples",
        executor: Executor::Postgres,
        params: &[identifier("table")],
        risk: 0.2,
        approval: ApprovalPolicy::Never,
        rollback: None,
    },
    Template {
        id: "pg.cancel_long_queries",
        description: "pg_cancel_backend every client query running longer than min_age_s",
        executor: Executor::Postgres,
        params: &[integer("min_age_s", 1, 86_400)],
        risk: 0.3,
        approval: ApprovalPolicy::Never,
        rollback: None,
    },
    Template {
        id: "pg.terminate_long_queries",
        description: "pg_terminate_backend every client session whose query runs longer than min_age_s",
        executor: Executor::Postgres,
        params: &[integer("min_age_s", 1, 86_400)],
        risk: 0.6,
        approval: ApprovalPolicy::UnlessEmergency,
        rollback: None,
    },
    Template {
        id: "pg.terminate_idle_sessions",
        description: "pg_terminate_backend sessions idle in transaction longer than min_idle_s",
        executor: Executor::Postgres,
        params: &[integer("min_idle_s", 1, 86_400)],
        risk: 0.4,
        approval: ApprovalPolicy::Never,
        rollback: None,
    },
    Template {
        id: "pg.refresh_materialized_view",
        description: "REFRESH MATERIALIZED VIEW CONCURRENTLY (plain REFRESH when it has no unique index)",
        executor: Executor::Postgres,
        params: &[identifier("matview")],
        risk: 0.2,
        approval: ApprovalPolicy::Never,
        rollback: None,
    },
    Template {
        id: "pg.create_index_advised",
        description: "CREATE INDEX CONCURRENTLY the index pg_qualstats and hypopg estimate helps a table most",
        executor: Executor::Postgres,
        params: &[identifier("table")],
        risk: 0.5,
        approval: ApprovalPolicy::Never,
        rollback: Some("pg.drop_index"),
    },
    Template {
        id: "pg.drop_index",
        description: "DROP INDEX CONCURRENTLY (the rollback of an index opsloop created)",
        executor: Executor::Postgres,
        params: &[identifier("index")],
        risk: 0.5,
        approval: ApprovalPolicy::Never,
        rollback: None,
    },
    Template {
        id: "pg.set_role_statement_timeout",
        description: "ALTER ROLE ... SET statement_timeout, so a role's runaway queries stop by themselves",
        executor: Executor::Postgres,
        params: &[identifier("role"), integer("timeout_ms", 100, 3_600_000)],
        risk: 0.4,
        approval: ApprovalPolicy::UnlessEmergency,
        rollback: Some("pg.reset_role_statement_timeout"),
    },
    Template {
        id: "pg.reset_role_statement_timeout",
        description: "ALTER ROLE ... RESET statement_timeout (or back to the value before)",
        executor: Executor::Postgres,
        params: &[identifier("role")],
        risk: 0.2,
        approval: ApprovalPolicy::Never,
        rollback: None,
    },
    Template {
        id: "pg.terminate_role_sessions",
        description: "pg_terminate_backend every session of a role (suspected credential misuse)",
        executor: Executor::Postgres,
        params: &[identifier("role")],
        risk: 0.8,
        approval: ApprovalPolicy::Always,
        rollback: None,
    },
    Template {
        id: "webhook.retrain",
        description: "Trigger a retraining DAG run (Airflow REST API: POST /api/v1/dags/{dag_id}/dagRuns)",
        executor: Executor::Webhook,
        params: &[
            identifier("dag_id"),
            ParamSpec {
                name: "model",
                kind: ParamKind::Text { max_len: 200 },
            },
        ],
        risk: 0.3,
        approval: ApprovalPolicy::Never,
        rollback: None,
    },
    Template {
        id: "webhook.scale",
        description: "Change a deployment's replicas by delta (Kubernetes scale subresource)",
        executor: Executor::Webhook,
        params: &[identifier("deployment"), integer("delta", -10, 10)],
        risk: 0.5,
        approval: ApprovalPolicy::UnlessEmergency,
        rollback: None,
    },
    Template {
        id: "webhook.maintenance",
        description: "Request a preventive-maintenance window for an entity within window_h hours",
        executor: Executor::Webhook,
        params: &[integer("window_h", 1, 168)],
        risk: 0.1,
        approval: ApprovalPolicy::Never,
        rollback: None,
    },
    Template {
        id: "webhook.capacity_plan",
        description: "Open a capacity-planning request for a resource expected to run out within days",
        executor: Executor::Webhook,
        params: &[
            ParamSpec {
                name: "resource",
                kind: ParamKind::Text { max_len: 100 },
            },
            integer("days", 1, 365),
        ],
        risk: 0.05,
        approval: ApprovalPolicy::Never,
        rollback: None,
    },
    Template {
        id: "webhook.failover",
        description: "Request a failover of a database cluster to its replica",
        executor: Executor::Webhook,
        params: &[identifier("cluster")],
        risk: 0.9,
        approval: ApprovalPolicy::Always,
        rollback: None,
    },
];

/// The template with `id`.
pub fn template(id: &str) -> Result<&'static Template, PlannerError> {
    CATALOG
        .iter()
        .find(|t| t.id == id)
        .ok_or_else(|| PlannerError::UnknownTemplate(id.to_owned()))
}

impl Template {
    /// Checks `params` against the template: every parameter present with its type and bounds,
    /// identifiers plain, nothing extra.
    pub fn validate(&self, params: &BTreeMap<String, ParamValue>) -> Result<(), PlannerError> {
        let invalid = |param: &str, reason: String| PlannerError::InvalidParam {
            template: self.id.to_owned(),
            param: param.to_owned(),
            reason,
        };
        for name in params.keys() {
            if !self.params.iter().any(|spec| spec.name == name) {
                return Err(invalid(
                    name,
                    "is not a parameter of this template".to_owned(),
                ));
            }
        }
        for spec in self.params {
            let value = params
                .get(spec.name)
                .ok_or_else(|| invalid(spec.name, "is missing".to_owned()))?;
            match (spec.kind, value) {
                (ParamKind::Identifier, ParamValue::String(text)) => {
                    if !is_identifier(text) {
                        return Err(invalid(
                            spec.name,
                            format!(
                                "{text:?} is not a plain (optionally schema-qualified) SQL identifier"
                            ),
                        ));
                    }
                }
                (ParamKind::Integer { min, max }, ParamValue::Long(number)) => {
                    if !(min..=max).contains(number) {
                        return Err(invalid(
                            spec.name,
                            format!("{number} is outside [{min}, {max}]"),
                        ));
                    }
                }
                (ParamKind::Text { max_len }, ParamValue::String(text)) => {
                    if text.len() > max_len || text.chars().any(char::is_control) {
                        return Err(invalid(
                            spec.name,
                            format!("must be at most {max_len} bytes without control characters"),
                        ));
                    }
                }
                (kind, value) => {
                    return Err(invalid(
                        spec.name,
                        format!("expected {kind:?}, got {value:?}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A plain SQL identifier, or two joined by a dot: letters, digits, underscores, not starting
/// with a digit, at most 63 bytes each (PostgreSQL's NAMEDATALEN - 1).
pub fn is_identifier(text: &str) -> bool {
    let parts: Vec<&str> = text.split('.').collect();
    parts.len() <= 2
        && parts.iter().all(|part| {
            let mut chars = part.chars();
            part.len() <= 63
                && chars
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, ParamValue)]) -> BTreeMap<String, ParamValue> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn identifiers_are_plain_names_only() {
        for good in ["orders", "public.orders", "_x1", "Orders_2024"] {
            assert!(is_identifier(good), "{good}");
        }
        for bad in [
            "",
            "1orders",
            "orders; DROP TABLE users",
            "a.b.c",
            "\"quoted\"",
            "orders--",
            "ord ers",
            "ordérs",
            &"x".repeat(64),
        ] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn validation_checks_names_types_and_bounds() {
        let reindex = template("pg.reindex_concurrently").expect("template");
        assert!(
            reindex
                .validate(&params(&[(
                    "index",
                    ParamValue::String("public.orders_pkey".into())
                )]))
                .is_ok()
        );
        let injected = reindex
            .validate(&params(&[(
                "index",
                ParamValue::String("x; DROP TABLE t".into()),
            )]))
            .expect_err("injection");
        assert!(injected.to_string().contains("not a plain"), "{injected}");
        assert!(reindex.validate(&params(&[])).is_err(), "missing");
        assert!(
            reindex
                .validate(&params(&[
                    ("index", ParamValue::String("i".into())),
                    ("extra", ParamValue::Long(1)),
                ]))
                .is_err()
        );
        let cancel = template("pg.cancel_long_queries").expect("template");
        assert!(
            cancel
                .validate(&params(&[("min_age_s", ParamValue::Long(0))]))
                .is_err()
        );
        assert!(
            cancel
                .validate(&params(&[("min_age_s", ParamValue::String("30".into()))]))
                .is_err()
        );
        assert!(
            cancel
                .validate(&params(&[("min_age_s", ParamValue::Long(30))]))
                .is_ok()
        );
        assert!(template("pg.drop_database").is_err());
    }

    #[test]
    fn every_rollback_is_in_the_catalog() {
        for template in CATALOG {
            if let Some(rollback) = template.rollback {
                assert!(super::template(rollback).is_ok(), "{}", template.id);
            }
            assert!((0.0..=1.0).contains(&template.risk));
        }
    }
}
