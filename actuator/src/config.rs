//! `[actuator]`: what may run where, who must approve, how fast, and how success is judged.

use std::collections::BTreeMap;
use std::path::PathBuf;

use opsloop_actions::TemplateId;
use serde::Deserialize;

/// The actuator's configuration; every field has a default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActuatorConfig {
    /// Templates that may run; empty means every PostgreSQL template of the catalog
    /// (webhooks must be listed).
    pub allow: Vec<TemplateId>,
    /// Templates that need an approval here whatever the catalog says.
    pub require_approval: Vec<TemplateId>,
    /// Whether an emergency (severity band EMERGENCY in the planner's signed event) runs a
    /// template whose policy is "approval unless emergency" without waiting for one.
    pub emergency_without_approval: bool,
    /// Operations running at once; more wait.
    pub max_concurrent: usize,
    /// Longest one operation (execution and the probe's verification) may take, seconds.
    pub operation_timeout_s: u64,
    /// Token bucket against operation storms: operations per second, and the burst.
    pub rate_per_s: f64,
    pub burst: u32,
    /// Run nothing: record what would run.
    pub dry_run: bool,
    /// The key approvers sign decisions with (`OPSLOOP_ACTUATOR__APPROVAL_KEY`); without one
    /// no approval is accepted.
    pub approval_key: String,
    /// The key the planner signs remediation events with (`OPSLOOP_ACTUATOR__PLANNER_KEY`,
    /// the planner's `signing_key`); events it does not verify are refused.
    pub planner_key: String,
    /// This actuator's name in the claims it takes (default: host name and process id).
    pub instance: Option<String>,
    /// Where the hash-chained audit log lives.
    pub audit_log: PathBuf,
    /// PostgreSQL connection strings by target entity; `default_dsn` for the others. TLS as
    /// their `sslmode` and `sslrootcert` say ([`opsloop_connectors::postgres`]).
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
    /// The share by which a `Reduce` template's primary metric must fall.
    pub min_improvement: f64,
    /// The share by which a `Clear` template's primary metric must fall: what it is for is
    /// (nearly) gone.
    pub clear_improvement: f64,
    /// Also wait for the incident's alert condition to stay clear for the windows its
    /// detectors need (the correlator's verdict on `ops.incidents`) before VERIFIED.
    pub symptom: bool,
    /// How long to wait for that verdict, seconds; none by then is a failure.
    pub symptom_timeout_s: u64,
}

impl Default for ActuatorConfig {
    fn default() -> Self {
        ActuatorConfig {
            allow: Vec::new(),
            require_approval: Vec::new(),
            emergency_without_approval: true,
            max_concurrent: 5,
            operation_timeout_s: 300,
            rate_per_s: 1.0,
            burst: 10,
            dry_run: false,
            approval_key: String::new(),
            planner_key: String::new(),
            instance: None,
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
            clear_improvement: 0.9,
            symptom: true,
            symptom_timeout_s: 900,
        }
    }
}

impl ActuatorConfig {
    /// The name this actuator signs its claims with.
    pub fn instance_name(&self) -> String {
        self.instance.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME")
                .ok()
                .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "actuator".to_owned());
            format!("{host}:{}", std::process::id())
        })
    }
}
