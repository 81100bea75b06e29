//! [`Action`]: a template with typed, validated parameters.

use std::collections::BTreeMap;
use std::fmt;

use opsloop_schemas::ops::ParamValue;

use crate::{ActionError, ParamKind, TemplateId};

/// A plain SQL identifier, or two joined by a dot: letters, digits, underscores, not starting
/// with a digit, at most 63 bytes each (PostgreSQL's NAMEDATALEN - 1). Executors may splice it
/// into a statement.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identifier(String);

impl Identifier {
    pub fn new(text: impl Into<String>) -> Result<Self, ActionError> {
        let text = text.into();
        if Self::is_valid(&text) {
            Ok(Identifier(text))
        } else {
            Err(ActionError::NotAnIdentifier(text))
        }
    }

    /// Whether `text` is a plain, optionally schema-qualified identifier.
    pub fn is_valid(text: &str) -> bool {
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

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One action of the catalog with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    ReindexConcurrently { index: Identifier },
    Analyze { table: Identifier },
    Vacuum { table: Identifier },
    CancelLongQueries { min_age_s: i64 },
    TerminateLongQueries { min_age_s: i64 },
    TerminateIdleSessions { min_idle_s: i64 },
    TerminateBlockers { min_idle_s: i64 },
    RefreshMaterializedView { matview: Identifier },
    CreateIndexAdvised { table: Identifier },
    DropIndex { index: Identifier },
    SetRoleStatementTimeout { role: Identifier, timeout_ms: i64 },
    ResetRoleStatementTimeout { role: Identifier },
    TerminateRoleSessions { role: Identifier },
    Retrain { dag_id: Identifier, model: String },
    Scale { deployment: Identifier, delta: i64 },
    Maintenance { window_h: i64 },
    CapacityPlan { resource: String, days: i64 },
    Failover { cluster: Identifier },
}

/// Parameters checked against a template's specification, read by name.
struct Checked<'a> {
    template: TemplateId,
    params: &'a BTreeMap<String, ParamValue>,
}

impl Checked<'_> {
    fn identifier(&self, name: &str) -> Identifier {
        match self.params.get(name) {
            Some(ParamValue::String(text)) => Identifier(text.clone()),
            _ => unreachable!("{} validated {name} as an identifier", self.template),
        }
    }

    fn integer(&self, name: &str) -> i64 {
        match self.params.get(name) {
            Some(ParamValue::Long(number)) => *number,
            _ => unreachable!("{} validated {name} as an integer", self.template),
        }
    }

    fn text(&self, name: &str) -> String {
        match self.params.get(name) {
            Some(ParamValue::String(text)) => text.clone(),
            _ => unreachable!("{} validated {name} as text", self.template),
        }
    }
}

impl Action {
    /// The action `template` names with `params`: every parameter present with its type and
    /// bounds, identifiers plain, nothing extra.
    pub fn parse(
        template: TemplateId,
        params: &BTreeMap<String, ParamValue>,
    ) -> Result<Action, ActionError> {
        validate(template, params)?;
        let p = Checked { template, params };
        Ok(match template {
            TemplateId::PgReindexConcurrently => Action::ReindexConcurrently {
                index: p.identifier("index"),
            },
            TemplateId::PgAnalyze => Action::Analyze {
                table: p.identifier("table"),
            },
            TemplateId::PgVacuum => Action::Vacuum {
                table: p.identifier("table"),
            },
            TemplateId::PgCancelLongQueries => Action::CancelLongQueries {
                min_age_s: p.integer("min_age_s"),
            },
            TemplateId::PgTerminateLongQueries => Action::TerminateLongQueries {
                min_age_s: p.integer("min_age_s"),
            },
            TemplateId::PgTerminateIdleSessions => Action::TerminateIdleSessions {
                min_idle_s: p.integer("min_idle_s"),
            },
            TemplateId::PgTerminateBlockers => Action::TerminateBlockers {
                min_idle_s: p.integer("min_idle_s"),
            },
            TemplateId::PgRefreshMaterializedView => Action::RefreshMaterializedView {
                matview: p.identifier("matview"),
            },
            TemplateId::PgCreateIndexAdvised => Action::CreateIndexAdvised {
                table: p.identifier("table"),
            },
            TemplateId::PgDropIndex => Action::DropIndex {
                index: p.identifier("index"),
            },
            TemplateId::PgSetRoleStatementTimeout => Action::SetRoleStatementTimeout {
                role: p.identifier("role"),
                timeout_ms: p.integer("timeout_ms"),
            },
            TemplateId::PgResetRoleStatementTimeout => Action::ResetRoleStatementTimeout {
                role: p.identifier("role"),
            },
            TemplateId::PgTerminateRoleSessions => Action::TerminateRoleSessions {
                role: p.identifier("role"),
            },
            TemplateId::WebhookRetrain => Action::Retrain {
                dag_id: p.identifier("dag_id"),
                model: p.text("model"),
            },
            TemplateId::WebhookScale => Action::Scale {
                deployment: p.identifier("deployment"),
                delta: p.integer("delta"),
            },
            TemplateId::WebhookMaintenance => Action::Maintenance {
                window_h: p.integer("window_h"),
            },
            TemplateId::WebhookCapacityPlan => Action::CapacityPlan {
                resource: p.text("resource"),
                days: p.integer("days"),
            },
            TemplateId::WebhookFailover => Action::Failover {
                cluster: p.identifier("cluster"),
            },
        })
    }

    /// The template this action instantiates.
    pub fn template(&self) -> TemplateId {
        match self {
            Action::ReindexConcurrently { .. } => TemplateId::PgReindexConcurrently,
            Action::Analyze { .. } => TemplateId::PgAnalyze,
            Action::Vacuum { .. } => TemplateId::PgVacuum,
            Action::CancelLongQueries { .. } => TemplateId::PgCancelLongQueries,
            Action::TerminateLongQueries { .. } => TemplateId::PgTerminateLongQueries,
            Action::TerminateIdleSessions { .. } => TemplateId::PgTerminateIdleSessions,
            Action::TerminateBlockers { .. } => TemplateId::PgTerminateBlockers,
            Action::RefreshMaterializedView { .. } => TemplateId::PgRefreshMaterializedView,
            Action::CreateIndexAdvised { .. } => TemplateId::PgCreateIndexAdvised,
            Action::DropIndex { .. } => TemplateId::PgDropIndex,
            Action::SetRoleStatementTimeout { .. } => TemplateId::PgSetRoleStatementTimeout,
            Action::ResetRoleStatementTimeout { .. } => TemplateId::PgResetRoleStatementTimeout,
            Action::TerminateRoleSessions { .. } => TemplateId::PgTerminateRoleSessions,
            Action::Retrain { .. } => TemplateId::WebhookRetrain,
            Action::Scale { .. } => TemplateId::WebhookScale,
            Action::Maintenance { .. } => TemplateId::WebhookMaintenance,
            Action::CapacityPlan { .. } => TemplateId::WebhookCapacityPlan,
            Action::Failover { .. } => TemplateId::WebhookFailover,
        }
    }

    /// Whether this action's parameters are within its template's bounds (an action built
    /// by hand rather than parsed may not be).
    pub fn validate(&self) -> Result<(), ActionError> {
        validate(self.template(), &self.params())
    }

    /// The parameters as they travel in a remediation event.
    pub fn params(&self) -> BTreeMap<String, ParamValue> {
        let name = |id: &Identifier| ParamValue::String(id.0.clone());
        let pairs: Vec<(&str, ParamValue)> = match self {
            Action::ReindexConcurrently { index } | Action::DropIndex { index } => {
                vec![("index", name(index))]
            }
            Action::Analyze { table }
            | Action::Vacuum { table }
            | Action::CreateIndexAdvised { table } => vec![("table", name(table))],
            Action::CancelLongQueries { min_age_s }
            | Action::TerminateLongQueries { min_age_s } => {
                vec![("min_age_s", ParamValue::Long(*min_age_s))]
            }
            Action::TerminateIdleSessions { min_idle_s }
            | Action::TerminateBlockers { min_idle_s } => {
                vec![("min_idle_s", ParamValue::Long(*min_idle_s))]
            }
            Action::RefreshMaterializedView { matview } => vec![("matview", name(matview))],
            Action::SetRoleStatementTimeout { role, timeout_ms } => vec![
                ("role", name(role)),
                ("timeout_ms", ParamValue::Long(*timeout_ms)),
            ],
            Action::ResetRoleStatementTimeout { role } | Action::TerminateRoleSessions { role } => {
                vec![("role", name(role))]
            }
            Action::Retrain { dag_id, model } => vec![
                ("dag_id", name(dag_id)),
                ("model", ParamValue::String(model.clone())),
            ],
            Action::Scale { deployment, delta } => vec![
                ("deployment", name(deployment)),
                ("delta", ParamValue::Long(*delta)),
            ],
            Action::Maintenance { window_h } => vec![("window_h", ParamValue::Long(*window_h))],
            Action::CapacityPlan { resource, days } => vec![
                ("resource", ParamValue::String(resource.clone())),
                ("days", ParamValue::Long(*days)),
            ],
            Action::Failover { cluster } => vec![("cluster", name(cluster))],
        };
        pairs
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect()
    }

    /// The action that undoes this one, as run `action_id` did it: the index it created, the
    /// role setting it made.
    pub fn rollback(&self, action_id: &str) -> Option<Action> {
        match self {
            Action::CreateIndexAdvised { .. } => Some(Action::DropIndex {
                index: Identifier(advised_index_name(action_id)),
            }),
            Action::SetRoleStatementTimeout { role, .. } => {
                Some(Action::ResetRoleStatementTimeout { role: role.clone() })
            }
            _ => None,
        }
    }

    /// The table the action works on (a table, an index's table is found by the executor, a
    /// view), when it names one: operations on one relation are serialized.
    pub fn relation(&self) -> Option<&Identifier> {
        match self {
            Action::Analyze { table }
            | Action::Vacuum { table }
            | Action::CreateIndexAdvised { table } => Some(table),
            Action::ReindexConcurrently { index } | Action::DropIndex { index } => Some(index),
            Action::RefreshMaterializedView { matview } => Some(matview),
            _ => None,
        }
    }
}

/// The name `pg.create_index_advised` gives the index of action `action_id` (so a restart or
/// a rollback finds it without other state): 16 hex digits of a hash of the whole id, so every
/// attempt of an action has its own.
pub fn advised_index_name(action_id: &str) -> String {
    let id = opsloop_schemas::ids::stable_id(&[action_id.as_bytes()]);
    format!("opsloop_{}", &id[..16])
}

fn validate(
    template: TemplateId,
    params: &BTreeMap<String, ParamValue>,
) -> Result<(), ActionError> {
    let spec = template.spec();
    let invalid = |param: &str, reason: String| ActionError::InvalidParam {
        template: template.as_str(),
        param: param.to_owned(),
        reason,
    };
    for name in params.keys() {
        if !spec.params.iter().any(|p| p.name == name) {
            return Err(invalid(
                name,
                "is not a parameter of this template".to_owned(),
            ));
        }
    }
    for param in spec.params {
        let value = params
            .get(param.name)
            .ok_or_else(|| invalid(param.name, "is missing".to_owned()))?;
        match (param.kind, value) {
            (ParamKind::Identifier, ParamValue::String(text)) => {
                if !Identifier::is_valid(text) {
                    return Err(invalid(
                        param.name,
                        format!(
                            "is {text:?}, not a plain (optionally schema-qualified) SQL identifier"
                        ),
                    ));
                }
            }
            (ParamKind::Integer { min, max }, ParamValue::Long(number)) => {
                if !(min..=max).contains(number) {
                    return Err(invalid(
                        param.name,
                        format!("is {number}, outside [{min}, {max}]"),
                    ));
                }
            }
            (ParamKind::Text { max_len }, ParamValue::String(text)) => {
                if text.len() > max_len || text.chars().any(char::is_control) {
                    return Err(invalid(
                        param.name,
                        format!("must be at most {max_len} bytes without control characters"),
                    ));
                }
            }
            (kind, value) => {
                return Err(invalid(
                    param.name,
                    format!("must be {kind:?}, not {value:?}"),
                ));
            }
        }
    }
    Ok(())
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
            assert!(Identifier::is_valid(good), "{good}");
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
            assert!(Identifier::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parsing_checks_names_types_and_bounds() {
        let reindex = TemplateId::PgReindexConcurrently;
        let good = params(&[("index", ParamValue::String("public.orders_pkey".into()))]);
        let action = Action::parse(reindex, &good).expect("valid");
        assert_eq!(action.params(), good, "the parameters round-trip");
        assert_eq!(action.template(), reindex);
        let injected = Action::parse(
            reindex,
            &params(&[("index", ParamValue::String("x; DROP TABLE t".into()))]),
        )
        .expect_err("injection");
        assert!(injected.to_string().contains("not a plain"), "{injected}");
        assert!(Action::parse(reindex, &params(&[])).is_err(), "missing");
        assert!(
            Action::parse(
                reindex,
                &params(&[
                    ("index", ParamValue::String("i".into())),
                    ("extra", ParamValue::Long(1)),
                ])
            )
            .is_err()
        );
        let cancel = TemplateId::PgCancelLongQueries;
        assert!(Action::parse(cancel, &params(&[("min_age_s", ParamValue::Long(0))])).is_err());
        assert!(
            Action::parse(
                cancel,
                &params(&[("min_age_s", ParamValue::String("30".into()))])
            )
            .is_err()
        );
        assert_eq!(
            Action::parse(cancel, &params(&[("min_age_s", ParamValue::Long(30))])),
            Ok(Action::CancelLongQueries { min_age_s: 30 })
        );
    }

    #[test]
    fn every_template_round_trips_and_rolls_back_within_the_catalog() {
        for &id in TemplateId::ALL {
            let params: BTreeMap<String, ParamValue> = id
                .spec()
                .params
                .iter()
                .map(|p| {
                    let value = match p.kind {
                        ParamKind::Identifier => ParamValue::String("t1".into()),
                        ParamKind::Integer { min, .. } => ParamValue::Long(min),
                        ParamKind::Text { .. } => ParamValue::String("some text".into()),
                    };
                    (p.name.to_owned(), value)
                })
                .collect();
            let action = Action::parse(id, &params).expect("valid");
            assert_eq!(action.template(), id);
            assert_eq!(action.params(), params, "{id}");
            let rollback = action.rollback("a-1");
            assert_eq!(
                rollback.as_ref().map(Action::template),
                id.spec().rollback,
                "{id}"
            );
        }
        assert_ne!(advised_index_name("x-1"), advised_index_name("x-2"));
        assert!(Identifier::is_valid(&advised_index_name("x-1")));
    }
}
