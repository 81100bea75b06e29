//! `opsloop actuate` configurations of the integration tests.

/// Where `opsloop actuate` connects: the brokers, its group, the topics it reads and writes.
pub(crate) struct ActuateTopics<'a> {
    pub(crate) brokers: &'a str,
    pub(crate) group: &'a str,
    pub(crate) remediation: &'a str,
    pub(crate) approvals: &'a str,
    pub(crate) actions: &'a str,
    pub(crate) incidents: &'a str,
    pub(crate) deadletter: &'a str,
}

/// An `opsloop actuate` configuration on `topics` with these keys, the audit log in `dir`,
/// acting on `dsn`, metrics on a free port; `actuator` and `rest` are more TOML, the first
/// inside `[actuator]`.
pub(crate) fn actuate_toml(
    topics: &ActuateTopics<'_>,
    keys: (&str, &str),
    dir: &std::path::Path,
    dsn: &str,
    actuator: &str,
    rest: &str,
) -> String {
    let (approval_key, planner_key) = keys;
    format!(
        r#"
[kafka]
brokers = "{brokers}"
group_id = "{group}"
[topics]
remediation = "{remediation}"
approvals = "{approvals}"
actions = "{actions}"
incidents = "{incidents}"
deadletter = "{deadletter}"
[actuator]
approval_key = "{approval_key}"
planner_key = "{planner_key}"
audit_log = "{audit}"
default_dsn = "{dsn}"
{actuator}
[metrics]
listen = "127.0.0.1:0"
{rest}
"#,
        brokers = topics.brokers,
        group = topics.group,
        remediation = topics.remediation,
        approvals = topics.approvals,
        actions = topics.actions,
        incidents = topics.incidents,
        deadletter = topics.deadletter,
        audit = dir.join("audit.jsonl").display(),
    )
}
