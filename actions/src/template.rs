//! The templates: their ids and specifications.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ActionError;

/// Who runs a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Executor {
    Postgres,
    Webhook,
}

/// When a template needs a person's approval (on `ops.approvals`) before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApprovalPolicy {
    Never,
    /// Unless the incident is an emergency (severity 0.8 and up) and the actuator lets
    /// emergencies through.
    UnlessEmergency,
    Always,
}

impl ApprovalPolicy {
    /// Whether an action under this policy waits for an approval, given whether its incident
    /// is an emergency that may go without.
    pub fn needs_approval(self, emergency: bool) -> bool {
        match self {
            ApprovalPolicy::Never => false,
            ApprovalPolicy::UnlessEmergency => !emergency,
            ApprovalPolicy::Always => true,
        }
    }
}

/// How far an action must move its probe's primary metric to count as having worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Goal {
    /// Down by the actuator's `min_improvement` (a bloated index shrinks by its bloat).
    Reduce,
    /// Down by the actuator's `clear_improvement`, i.e. (nearly) gone: the runaway queries,
    /// the blocked sessions, the stale rows beyond what live writes explain.
    Clear,
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

/// A template's specification.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Template {
    pub id: TemplateId,
    pub description: &'static str,
    pub executor: Executor,
    pub params: &'static [ParamSpec],
    /// Risk in [0, 1]: how much harm a wrong execution does.
    pub risk: f64,
    pub approval: ApprovalPolicy,
    /// The template that undoes this one, if any.
    pub rollback: Option<TemplateId>,
    pub goal: Goal,
}

macro_rules! template_ids {
    ($($variant:ident => $id:literal,)*) => {
        /// A template of the catalog.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum TemplateId {
            $($variant,)*
        }

        impl TemplateId {
            /// Every template, in catalog order.
            pub const ALL: &'static [TemplateId] = &[$(TemplateId::$variant,)*];

            /// The id on the wire and in configuration (`pg.analyze`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(TemplateId::$variant => $id,)*
                }
            }
        }
    };
}

template_ids! {
    PgReindexConcurrently => "pg.reindex_concurrently",
    PgAnalyze => "pg.analyze",
    PgVacuum => "pg.vacuum",
    PgCancelLongQueries => "pg.cancel_long_queries",
    PgTerminateLongQueries => "pg.terminate_long_queries",
    PgTerminateIdleSessions => "pg.terminate_idle_sessions",
    PgTerminateBlockers => "pg.terminate_blockers",
    PgRefreshMaterializedView => "pg.refresh_materialized_view",
    PgCreateIndexAdvised => "pg.create_index_advised",
    PgDropIndex => "pg.drop_index",
    PgSetRoleStatementTimeout => "pg.set_role_statement_timeout",
    PgResetRoleStatementTimeout => "pg.reset_role_statement_timeout",
    PgTerminateRoleSessions => "pg.terminate_role_sessions",
    WebhookRetrain => "webhook.retrain",
    WebhookScale => "webhook.scale",
    WebhookMaintenance => "webhook.maintenance",
    WebhookCapacityPlan => "webhook.capacity_plan",
    WebhookFailover => "webhook.failover",
}

impl TemplateId {
    /// The template's specification.
    pub fn spec(self) -> &'static Template {
        // CATALOG lists every id once, in the order of ALL (a test checks it).
        &CATALOG[self as usize]
    }
}

impl fmt::Display for TemplateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TemplateId {
    type Err = ActionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        TemplateId::ALL
            .iter()
            .copied()
            .find(|id| id.as_str() == text)
            .ok_or_else(|| ActionError::UnknownTemplate(text.to_owned()))
    }
}

impl Serialize for TemplateId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TemplateId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
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

const fn text(name: &'static str, max_len: usize) -> ParamSpec {
    ParamSpec {
        name,
        kind: ParamKind::Text { max_len },
    }
}

/// Every template, in the order of [`TemplateId::ALL`].
pub const CATALOG: &[Template] = &[
    Template {
        id: TemplateId::PgReindexConcurrently,
        description: "REINDEX INDEX CONCURRENTLY a degraded or bloated index",
        executor: Executor::Postgres,
        params: &[identifier("index")],
        risk: 0.3,
        approval: ApprovalPolicy::Never,
        rollback: None,
        goal: Goal::Reduce,
    },
    Template {
        id: TemplateId::PgAnalyze,
        description: "ANALYZE a table whose statistics are stale",
        executor: Executor::Postgres,
        params: &[identifier("table")],
        risk: 0.1,
        approval: ApprovalPolicy::Never,
        rollback: None,
        goal: Goal::Reduce,
    },
    Template {
        id: TemplateId::PgVacuum,
        description: "VACUUM (ANALYZE) a table with many dead tuples",
        executor: Executor::Postgres,
        params: &[identifier("table")],
        risk: 0.2,
        approval: ApprovalPolicy::Never,
        rollback: None,
        goal: Goal::Reduce,
    },
    Template {
        id: TemplateId::PgCancelLongQueries,
        description: "pg_cancel_backend every client query running longer than min_age_s \
                      that is not itself waiting for another session's lock",
        executor: Executor::Postgres,
        params: &[integer("min_age_s", 1, 86_400)],
        risk: 0.3,
        approval: ApprovalPolicy::Never,
        rollback: None,
        goal: Goal::Clear,
    },
    Template {
        id: TemplateId::PgTerminateLongQueries,
        description: "pg_terminate_backend every client session whose query runs longer than \
                      min_age_s and is not itself waiting for another session's lock",
        executor: Executor::Postgres,
        params: &[integer("min_age_s", 1, 86_400)],
        risk: 0.6,
        approval: ApprovalPolicy::UnlessEmergency,
        rollback: None,
        goal: Goal::Clear,
    },
    Template {
        id: TemplateId::PgTerminateIdleSessions,
        description: "pg_terminate_backend client sessions idle, or idle in transaction, longer \
                      than min_idle_s: the connections they hold go back to the pool",
        executor: Executor::Postgres,
        params: &[integer("min_idle_s", 1, 86_400)],
        risk: 0.4,
        approval: ApprovalPolicy::Never,
        rollback: None,
        goal: Goal::Clear,
    },
    Template {
        id: TemplateId::PgTerminateBlockers,
        description: "pg_terminate_backend the sessions that hold locks others wait for while \
                      idle in transaction longer than min_idle_s (the blockers, not their \
                      victims)",
        executor: Executor::Postgres,
        params: &[integer("min_idle_s", 1, 86_400)],
        risk: 0.4,
        approval: ApprovalPolicy::Never,
        rollback: None,
        goal: Goal::Clear,
    },
    Template {
        id: TemplateId::PgRefreshMaterializedView,
        description: "REFRESH MATERIALIZED VIEW CONCURRENTLY (plain REFRESH when it has no \
                      unique index)",
        executor: Executor::Postgres,
        params: &[identifier("matview")],
        risk: 0.2,
        approval: ApprovalPolicy::Never,
        rollback: None,
        goal: Goal::Clear,
    },
    Template {
        id: TemplateId::PgCreateIndexAdvised,
        description: "CREATE INDEX CONCURRENTLY the index pg_qualstats and hypopg estimate \
                      helps a table most",
        executor: Executor::Postgres,
        params: &[identifier("table")],
        risk: 0.5,
        approval: ApprovalPolicy::Never,
        rollback: Some(TemplateId::PgDropIndex),
        goal: Goal::Reduce,
    },
    Template {
        id: TemplateId::PgDropIndex,
        description: "DROP INDEX CONCURRENTLY (the rollback of an index opsloop created)",
        executor: Executor::Postgres,
        params: &[identifier("index")],
        risk: 0.5,
        approval: ApprovalPolicy::Never,
        rollback: None,
        goal: Goal::Reduce,
    },
    Template {
        id: TemplateId::PgSetRoleStatementTimeout,
        description: "ALTER ROLE ... SET statement_timeout, so a role's runaway queries stop \
                      by themselves",
        executor: Executor::Postgres,
        params: &[identifier("role"), integer("timeout_ms", 100, 3_600_000)],
        risk: 0.4,
        approval: ApprovalPolicy::UnlessEmergency,
        rollback: Some(TemplateId::PgResetRoleStatementTimeout),
        goal: Goal::Clear,
    },
    Template {
        id: TemplateId::PgResetRoleStatementTimeout,
        description: "ALTER ROLE ... RESET statement_timeout",
        executor: Executor::Postgres,
        params: &[identifier("role")],
        risk: 0.2,
        approval: ApprovalPolicy::Never,
        rollback: None,
        goal: Goal::Reduce,
    },
    Template {
        id: TemplateId::PgTerminateRoleSessions,
        description: "pg_terminate_backend every session of a role (suspected credential misuse)",
        executor: Executor::Postgres,
        params: &[identifier("role")],
        risk: 0.8,
        approval: ApprovalPolicy::Always,
        rollback: None,
        goal: Goal::Clear,
    },
    Template {
        id: TemplateId::WebhookRetrain,
        description: "Trigger a retraining DAG run (Airflow REST API: POST \
                      /api/v1/dags/{dag_id}/dagRuns)",
        executor: Executor::Webhook,
        params: &[identifier("dag_id"), text("model", 200)],
        risk: 0.3,
        approval: ApprovalPolicy::Never,
        rollback: None,
        goal: Goal::Reduce,
    },
    Template {
        id: TemplateId::WebhookScale,
        description: "Change a deployment's replicas by delta (Kubernetes scale subresource)",
        executor: Executor::Webhook,
        params: &[identifier("deployment"), integer("delta", -10, 10)],
        risk: 0.5,
        approval: ApprovalPolicy::UnlessEmergency,
        rollback: None,
        goal: Goal::Reduce,
    },
    Template {
        id: TemplateId::WebhookMaintenance,
        description: "Request a preventive-maintenance window for an entity within window_h hours",
        executor: Executor::Webhook,
        params: &[integer("window_h", 1, 168)],
        risk: 0.1,
        approval: ApprovalPolicy::Never,
        rollback: None,
        goal: Goal::Reduce,
    },
    Template {
        id: TemplateId::WebhookCapacityPlan,
        description: "Open a capacity-planning request for a resource expected to run out \
                      within days",
        executor: Executor::Webhook,
        params: &[text("resource", 100), integer("days", 1, 365)],
        risk: 0.05,
        approval: ApprovalPolicy::Never,
        rollback: None,
        goal: Goal::Reduce,
    },
    Template {
        id: TemplateId::WebhookFailover,
        description: "Request a failover of a database cluster to its replica",
        executor: Executor::Webhook,
        params: &[identifier("cluster")],
        risk: 0.9,
        approval: ApprovalPolicy::Always,
        rollback: None,
        goal: Goal::Reduce,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_lists_every_id_once_in_order() {
        assert_eq!(CATALOG.len(), TemplateId::ALL.len());
        for (template, id) in CATALOG.iter().zip(TemplateId::ALL) {
            assert_eq!(template.id, *id);
            assert_eq!(id.spec().id, *id);
            assert_eq!(id.as_str().parse::<TemplateId>(), Ok(*id));
            assert!((0.0..=1.0).contains(&template.risk), "{id}");
            if let Some(rollback) = template.rollback {
                assert_eq!(rollback.spec().executor, template.executor, "{id}");
            }
        }
        assert!("pg.drop_database".parse::<TemplateId>().is_err());
    }
}
