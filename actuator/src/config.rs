//! `[actuator]`: what may run where, how fast, and how success is judged.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// The actuator's configuration; every field has a default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActuatorConfig {
    /// Template ids that may run; empty means every PostgreSQL template of the catalog
    /// (webhooks must be listed).
    pub allow: Vec<String>,
    /// Operations running at once; more wait.
    pub max_concurrent: usize,
    /// Longest one operation (execution and verification) may take, seconds.
    pub operation_timeout_s: u64,
    /// Token bucket against operation storms: operations per second, and the burst.
    pub rate_per_s: f64,
    pub burst: u32,
    /// Run nothing: record what would run.
    pub dry_run: bool,
    /// The shared key approvals are signed with (`OPSLOOP_ACTUATOR__APPROVAL_KEY`).
    pub approval_key: String,
    /// Where the hash-chained audit log lives.
    pub audit_log: PathBuf,
    /// PostgreSQL connection strings by target entity; `default_dsn` for the others.
    pub postgres: BTreeMap<String, String>,
    pub default_dsn: Option<String>,
    /// Base URLs of the webhook executors.
    pub airflow_url: Option<String>,
    pub kubernetes_url: Option<String>,
    pub kubernetes_namespace: String,
    /// Where proactive maintenance and capacity-planning requests go.
    pub tickets_url: Option<String>,
    /// A target with more active backends than this share of max_connections is saturated:
    /// only emergencies act on it.
    pub saturation: f64,
    pub verify: VerifyConfig,
}

/// How an action's effect is judged.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifyConfig {
    /// Wait after executing before measuring, milliseconds. PostgreSQL 15 flushes a busy
    /// backend's statistics at most once a second, so under 1.5 s the after-window still sees
    /// counts from before the action.
    pub settle_ms: u64,
    /// Length of the before and after windows of rate metrics, milliseconds.
    pub window_ms: u64,
    /// The primary metric must fall by at least this share.
    pub min_improvement: f64,
}

impl Default for ActuatorConfig {
    fn default() -> Self {
        ActuatorConfig {
            allow: Vec::new(),
            max_concurrent: 5,
            operation_timeout_s: 300,
            rate_per_s: 1.0,
            burst: 10,
            dry_run: false,
            approval_key: String::new(),
            audit_log: PathBuf::from("opsloop-audit.jsonl"),
            postgres: BTreeMap::new(),
            default_dsn: None,
            airflow_url: None,
            kubernetes_url: None,
            kubernetes_namespace: "default".to_owned(),
            tickets_url: None,
            saturation: 0.9,
            verify: VerifyConfig::default(),
        }
    }
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            settle_ms: 2_000,
            window_ms: 3_000,
            min_improvement: 0.1,
        }
    }
}
