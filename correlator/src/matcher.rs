//! Label matchers of inhibition rules and silences: `label=value` or `label!=value`, where the
//! alert's `alert_type`, `detector` and `entity` match like labels and a missing label is
//! empty (as in Alertmanager).

use std::fmt;
use std::str::FromStr;

use opsloop_schemas::ops::Alert;
use serde::{Deserialize, Deserializer};

use crate::error::CorrelatorError;

/// One `label=value` or `label!=value` test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    label: String,
    value: String,
    negated: bool,
}

impl Matcher {
    pub fn matches(&self, alert: &Alert) -> bool {
        (label_value(alert, &self.label) == self.value) != self.negated
    }
}

/// The value of `label` on `alert`: its fields first, then its labels; empty when missing.
pub(crate) fn label_value<'a>(alert: &'a Alert, label: &str) -> &'a str {
    match label {
        "entity" => &alert.entity,
        "alert_type" => &alert.alert_type,
        "detector" => &alert.detector,
        _ => alert.labels.get(label).map_or("", String::as_str),
    }
}

/// Whether every matcher matches `alert`.
pub(crate) fn all_match(matchers: &[Matcher], alert: &Alert) -> bool {
    matchers.iter().all(|matcher| matcher.matches(alert))
}

impl FromStr for Matcher {
    type Err = CorrelatorError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (label, value, negated) = match text.split_once("!=") {
            Some((label, value)) => (label, value, true),
            None => match text.split_once('=') {
                Some((label, value)) => (label, value, false),
                None => {
                    return Err(CorrelatorError::Config(format!(
                        "matcher {text:?} is neither label=value nor label!=value"
                    )));
                }
            },
        };
        let label = label.trim();
        if label.is_empty() {
            return Err(CorrelatorError::Config(format!(
                "matcher {text:?} has no label name"
            )));
        }
        Ok(Matcher {
            label: label.to_owned(),
            value: value.trim().trim_matches('"').to_owned(),
            negated,
        })
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = if self.negated { "!=" } else { "=" };
        write!(f, "{}{op}{}", self.label, self.value)
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn alert(alert_type: &str, cluster: Option<&str>) -> Alert {
        Alert {
            alert_id: "a".into(),
            entity: "db-1".into(),
            detector: "d".into(),
            alert_type: alert_type.into(),
            score: 1.0,
            severity: 0.5,
            window_start_us: 0,
            window_end_us: 60_000_000,
            evidence: BTreeMap::new(),
            labels: cluster
                .map(|c| BTreeMap::from([("cluster".to_owned(), c.to_owned())]))
                .unwrap_or_default(),
            emitted_us: 0,
        }
    }

    #[test]
    fn equality_negation_and_missing_labels() {
        let is_cpu: Matcher = "alert_type=cpu_high".parse().expect("matcher");
        let not_eu: Matcher = "cluster != eu".parse().expect("matcher");
        let no_cluster: Matcher = "cluster=".parse().expect("matcher");
        assert!(is_cpu.matches(&alert("cpu_high", None)));
        assert!(!is_cpu.matches(&alert("gpu_low", None)));
        assert!(not_eu.matches(&alert("x", Some("us"))));
        assert!(!not_eu.matches(&alert("x", Some("eu"))));
        assert!(no_cluster.matches(&alert("x", None)));
        assert_eq!(not_eu.to_string(), "cluster!=eu");
        assert!("no operator".parse::<Matcher>().is_err());
        assert!("=value".parse::<Matcher>().is_err());
    }
}
