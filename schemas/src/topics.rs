//! The topic contract: default topic names, what each is keyed by, and the record kind it holds.

use crate::RecordKind;

/// One topic of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec {
    /// Default topic name; every name is configurable.
    pub name: &'static str,
    /// What the Kafka message key holds.
    pub key: &'static str,
    /// The record kind of the message value.
    pub kind: RecordKind,
    /// Partitions `opsloop topics create` makes unless told otherwise.
    pub default_partitions: i32,
    /// One line on what flows through the topic.
    pub description: &'static str,
}

pub const METRICS: &str = "telemetry.metrics";
pub const LOGS: &str = "telemetry.logs";
pub const TRACES: &str = "telemetry.traces";
pub const GPU: &str = "telemetry.gpu";
pub const FEATURES: &str = "telemetry.features";
pub const ALERTS: &str = "ops.alerts";
pub const INCIDENTS: &str = "ops.incidents";
pub const REMEDIATION: &str = "ops.remediation";
pub const APPROVALS: &str = "ops.approvals";
pub const ACTIONS: &str = "ops.actions";
pub const CYCLES: &str = "ops.cycles";
pub const FORECASTS: &str = "ops.forecasts";
pub const DEADLETTER: &str = "ops.deadletter";

/// Every topic opsloop reads or writes, in data-flow order.
pub const CONTRACT: &[TopicSpec] = &[
    TopicSpec {
        name: METRICS,
        key: "entity id",
        kind: RecordKind::MetricBatch,
        default_partitions: 12,
        description: "metric samples: name, labels, value, timestamp (batched)",
    },
    TopicSpec {
        name: LOGS,
        key: "entity id",
        kind: RecordKind::LogRecord,
        default_partitions: 6,
        description: "log records: severity, body, attributes (query text, user, rows)",
    },
    TopicSpec {
        name: TRACES,
        key: "trace id",
        kind: RecordKind::Span,
        default_partitions: 6,
        description: "spans: service, operation, duration, status, attributes",
    },
    TopicSpec {
        name: GPU,
        key: "gpu uuid",
        kind: RecordKind::GpuSample,
        default_partitions: 6,
        description: "DCGM fields (GPU_UTIL, FB_USED/FREE, GPU_TEMP, POWER_USAGE, XID_ERRORS, ...)",
    },
    TopicSpec {
        name: FEATURES,
        key: "model id",
        kind: RecordKind::FeatureSample,
        default_partitions: 6,
        description: "feature name, value or category, model version, timestamp",
    },
    TopicSpec {
        name: ALERTS,
        key: "entity id",
        kind: RecordKind::Alert,
        default_partitions: 6,
        description: "one detector firing: type, score, window, evidence",
    },
    TopicSpec {
        name: INCIDENTS,
        key: "incident id",
        kind: RecordKind::Incident,
        default_partitions: 3,
        description: "correlated alerts, pattern, tier, severity, failure type, hypotheses, state",
    },
    TopicSpec {
        name: REMEDIATION,
        key: "incident id",
        kind: RecordKind::RemediationEvent,
        default_partitions: 3,
        description: "action template id, typed params, risk, rollback, approval need",
    },
    TopicSpec {
        name: APPROVALS,
        key: "action id",
        kind: RecordKind::Approval,
        default_partitions: 1,
        description: "approve/reject, who, signature",
    },
    TopicSpec {
        name: ACTIONS,
        key: "action id",
        kind: RecordKind::ActionOutcome,
        default_partitions: 3,
        description: "outcome: executed/verified/rolled back/failed, before/after metrics, audit hash",
    },
    TopicSpec {
        name: CYCLES,
        key: "cycle id",
        kind: RecordKind::CycleReport,
        default_partitions: 1,
        description: "closed-loop cycle report: failures detected, operations, success rate, models updated",
    },
    TopicSpec {
        name: FORECASTS,
        key: "entity id",
        kind: RecordKind::Forecast,
        default_partitions: 1,
        description: "one forecast of a predictive cycle: job, entity, what, value, interval, time to exhaustion",
    },
    TopicSpec {
        name: DEADLETTER,
        key: "source topic",
        kind: RecordKind::DeadLetter,
        default_partitions: 1,
        description: "the original bytes + reason headers",
    },
];

/// The contract entry for a default topic name.
pub fn spec(name: &str) -> Option<&'static TopicSpec> {
    CONTRACT.iter().find(|spec| spec.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_kind_has_exactly_one_topic() {
        for &kind in RecordKind::ALL {
            assert_eq!(
                CONTRACT.iter().filter(|t| t.kind == kind).count(),
                1,
                "{kind}"
            );
        }
        assert!(CONTRACT.iter().all(|t| t.default_partitions >= 1));
        assert_eq!(spec(ALERTS).map(|s| s.kind), Some(RecordKind::Alert));
    }
}
