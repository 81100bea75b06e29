//! The correlator's configuration: grouping and timing as in Alertmanager, tiers, the
//! correlation patterns, inhibition rules and silences. Defaults live in `default.toml`.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use opsloop_schemas::ops::Tier;
use serde::{Deserialize, Deserializer};

use crate::error::CorrelatorError;
use crate::matcher::Matcher;

/// The embedded defaults.
pub const DEFAULT_CORRELATOR_CONFIG: &str = include_str!("default.toml");

/// How alerts become incidents. Every field has a default (see `default.toml`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorrelatorConfig {
    /// Labels whose values form a group; `entity` is the alert's entity.
    pub group_by: Vec<String>,
    /// How long a new group collects alerts before its first incidents open.
    #[serde(deserialize_with = "duration")]
    pub group_wait: Duration,
    /// How long a group with open incidents collects alerts before the next update.
    #[serde(deserialize_with = "duration")]
    pub group_interval: Duration,
    /// How often an unchanged open incident is notified again.
    #[serde(deserialize_with = "duration")]
    pub repeat_interval: Duration,
    /// Alert-free windows before an incident resolves.
    pub resolve_after_windows: u32,
    pub tiers: TierThresholds,
    /// Failure type of a standalone incident, by alert type.
    #[serde(default)]
    pub failure_types: BTreeMap<String, String>,
    #[serde(default)]
    pub patterns: Vec<PatternConfig>,
    #[serde(default)]
    pub inhibit_rules: Vec<InhibitRule>,
    #[serde(default)]
    pub silences: Vec<Silence>,
}

impl Default for CorrelatorConfig {
    fn default() -> Self {
        // The embedded file is tested to parse; see `tests::defaults_parse`.
        CorrelatorConfig::from_toml(DEFAULT_CORRELATOR_CONFIG)
            .unwrap_or_else(|error| panic!("the embedded correlator defaults are broken: {error}"))
    }
}

impl CorrelatorConfig {
    /// Parses and validates a whole configuration.
    pub fn from_toml(text: &str) -> Result<Self, CorrelatorError> {
        let config: CorrelatorConfig =
            toml::from_str(text).map_err(|error| CorrelatorError::Config(error.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: thresholds in order, patterns that can match.
    pub fn validate(&self) -> Result<(), CorrelatorError> {
        let TierThresholds { t1, t2, t3 } = self.tiers;
        let in_order = 0.0 <= t3 && t3 <= t2 && t2 <= t1 && t1 <= 1.0;
        if !in_order {
            return Err(CorrelatorError::Config(format!(
                "tier thresholds must satisfy 0 <= t3 <= t2 <= t1 <= 1, got t1 = {t1}, t2 = {t2}, t3 = {t3}"
            )));
        }
        if self.resolve_after_windows == 0 {
            return Err(CorrelatorError::Config(
                "resolve_after_windows must be at least 1".to_owned(),
            ));
        }
        for pattern in &self.patterns {
            if pattern.min_types < 2 {
                return Err(CorrelatorError::Config(format!(
                    "pattern {} needs min_types >= 2: a single alert type is a standalone incident",
                    pattern.name
                )));
            }
            if pattern.alert_types.len() < pattern.min_types {
                return Err(CorrelatorError::Config(format!(
                    "pattern {} lists {} alert types but needs {} to match",
                    pattern.name,
                    pattern.alert_types.len(),
                    pattern.min_types
                )));
            }
        }
        for silence in &self.silences {
            if silence.ends_us <= silence.starts_us {
                return Err(CorrelatorError::Config(format!(
                    "silence {:?} ends before it starts",
                    silence.comment
                )));
            }
        }
        Ok(())
    }

    /// The tier of a severity, before any pattern's `min_tier`.
    pub fn tier_of(&self, severity: f64) -> Tier {
        let TierThresholds { t1, t2, t3 } = self.tiers;
        if severity >= t1 {
            Tier::T1
        } else if severity >= t2 {
            Tier::T2
        } else if severity >= t3 {
            Tier::T3
        } else {
            Tier::T4
        }
    }
}

/// Lowest severity of tiers T1, T2 and T3.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierThresholds {
    pub t1: f64,
    pub t2: f64,
    pub t3: f64,
}

/// One correlation pattern of the seed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternConfig {
    pub name: String,
    pub failure_type: String,
    pub alert_types: Vec<String>,
    /// Distinct member alert types needed to match.
    #[serde(default = "default_min_types")]
    pub min_types: usize,
    /// The alert type that is the pattern's known cause.
    #[serde(default)]
    pub root_alert_type: Option<String>,
    /// The known cause, a sentence.
    pub cause: String,
    /// The lowest tier an incident of this pattern gets.
    #[serde(default)]
    pub min_tier: Option<Tier>,
}

fn default_min_types() -> usize {
    2
}

/// Alerts matching `target_matchers` are left out while one matching `source_matchers`, with
/// equal values of the `equal` labels, is active.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitRule {
    pub source_matchers: Vec<Matcher>,
    pub target_matchers: Vec<Matcher>,
    #[serde(default)]
    pub equal: Vec<String>,
}

/// Mutes notifications of incidents whose alerts all match, within `[starts, ends)`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Silence {
    pub matchers: Vec<Matcher>,
    #[serde(rename = "starts", deserialize_with = "rfc3339_us")]
    pub starts_us: i64,
    #[serde(rename = "ends", deserialize_with = "rfc3339_us")]
    pub ends_us: i64,
    #[serde(default)]
    pub comment: String,
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text)
        .map_err(|error| serde::de::Error::custom(format!("{text:?} is not a duration: {error}")))
}

fn rfc3339_us<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let text = String::deserialize(deserializer)?;
    let time = humantime::parse_rfc3339_weak(&text).map_err(|error| {
        serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time: {error}"))
    })?;
    let since_epoch = time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| serde::de::Error::custom(format!("{text:?} is before 1970")))?;
    i64::try_from(since_epoch.as_micros())
        .map_err(|_| serde::de::Error::custom(format!("{text:?} is too far in the future")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse() {
        let config = CorrelatorConfig::from_toml(DEFAULT_CORRELATOR_CONFIG).expect("defaults");
        assert_eq!(config.group_wait, Duration::from_secs(30));
        assert_eq!(config.group_interval, Duration::from_secs(300));
        assert_eq!(config.repeat_interval, Duration::from_secs(4 * 3600));
        let names: Vec<_> = config.patterns.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "data_drift_incident",
                "resource_contention",
                "schema_mismatch",
                "index_degradation",
                "cache_stale",
                "resource_exhaustion",
                "lock_contention",
                "security_anomaly"
            ]
        );
        assert_eq!(config.tier_of(0.8), Tier::T1);
        assert_eq!(config.tier_of(0.79), Tier::T2);
        assert_eq!(config.tier_of(0.4), Tier::T3);
        assert_eq!(config.tier_of(0.1), Tier::T4);
    }

    #[test]
    fn invalid_settings_are_refused_with_the_reason() {
        let broken = DEFAULT_CORRELATOR_CONFIG.replace("t2 = 0.6", "t2 = 0.9");
        let error = CorrelatorConfig::from_toml(&broken).expect_err("t2 > t1");
        assert!(error.to_string().contains("t3 <= t2 <= t1"), "{error}");

        let single = format!(
            "{DEFAULT_CORRELATOR_CONFIG}\n[[patterns]]\nname = \"lonely\"\nfailure_type = \"x\"\n\
             alert_types = [\"a\"]\nmin_types = 1\ncause = \"c\"\n"
        );
        let error = CorrelatorConfig::from_toml(&single).expect_err("min_types 1");
        assert!(error.to_string().contains("lonely"), "{error}");

        let bad_wait = DEFAULT_CORRELATOR_CONFIG.replace("\"30s\"", "\"soon\"");
        let error = CorrelatorConfig::from_toml(&bad_wait).expect_err("bad duration");
        assert!(error.to_string().contains("soon"), "{error}");
    }
}
