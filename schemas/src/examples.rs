//! One realistic example record of every kind, for the round-trip demo, `opsloop schemas
//! --examples` and tests. The values describe one story: a feature-store database whose hot
//! query lost its index while a model's input drifted.

use std::collections::BTreeMap;
use std::fmt::Debug;

use crate::AvroRecord;
use crate::ops::*;
use crate::telemetry::*;

/// Receives each example record in turn, typed.
pub trait ExampleVisitor {
    fn visit<T: AvroRecord + Debug + PartialEq>(&mut self, example: &T);
}

/// 2026-11-25T12:00:00Z in microseconds; the examples' event time.
pub const EXAMPLE_TIME_US: i64 = 1_795_003_200_000_000;

fn labels<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn numbers<const N: usize>(pairs: [(&str, f64); N]) -> BTreeMap<String, f64> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Calls `visitor` with one example of every [`RecordKind`](crate::RecordKind), in contract order.
pub fn visit_all(visitor: &mut impl ExampleVisitor) {
    let t = EXAMPLE_TIME_US;
    visitor.visit(&MetricBatch {
        entity: "pg-features-1".into(),
        source: "postgres".into(),
        samples: vec![
            MetricSample {
                name: "pg_query_p99_latency_ms".into(),
                labels: labels([("queryid", "4412"), ("cluster", "features")]),
                value: 212.5,
                time_us: t,
            },
            MetricSample {
                name: "pg_connections_active".into(),
                labels: BTreeMap::new(),
                value: 87.0,
                time_us: t,
            },
        ],
    });
    visitor.visit(&LogRecord {
        entity: "pg-features-1".into(),
        time_us: t + 1_500,
        severity: Severity::Warn,
        body: "duration: 2210.4 ms  statement: SELECT * FROM user_features WHERE user_id = $1"
            .into(),
        attributes: labels([("db.user", "inference"), ("db.rows", "1")]),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
    });
    visitor.visit(&Span {
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        span_id: "00f067aa0ba902b7".into(),
        parent_span_id: None,
        service: "ranker".into(),
        operation: "SELECT user_features".into(),
        entity: "pg-features-1".into(),
        start_time_us: t,
        duration_us: 2_210_400,
        status: SpanStatus::Ok,
        attributes: labels([("db.system", "postgresql")]),
    });
    visitor.visit(&GpuSample {
        gpu_uuid: "GPU-5fd4b3c2-8a1e-4f0b-9d2c-1b2a3c4d5e6f".into(),
        gpu_index: 0,
        hostname: "infer-03".into(),
        model_name: "NVIDIA H100 80GB HBM3".into(),
        pci_bus_id: "00000000:18:00.0".into(),
        time_us: t,
        fields: numbers([
            ("DCGM_FI_DEV_GPU_UTIL", 12.0),
            ("DCGM_FI_DEV_FB_USED", 71_234.0),
            ("DCGM_FI_DEV_FB_FREE", 10_246.0),
            ("DCGM_FI_DEV_GPU_TEMP", 61.0),
            ("DCGM_FI_DEV_POWER_USAGE", 188.4),
            ("DCGM_FI_DEV_XID_ERRORS", 0.0),
        ]),
        labels: labels([("container", "ranker"), ("namespace", "serving")]),
    });
    visitor.visit(&FeatureSample {
        model_id: "ranker".into(),
        model_version: "2026-11-20.1".into(),
        feature: "session_length_s".into(),
        value: Some(431.0),
        category: None,
        time_us: t,
        entity: "pg-features-1".into(),
    });
    visitor.visit(&Alert {
        alert_id: "a-5e1f0c2d9b7a4e33".into(),
        entity: "pg-features-1".into(),
        detector: "query_latency".into(),
        alert_type: "query_latency_increase".into(),
        score: 6.2,
        severity: 0.74,
        window_start_us: t - 60_000_000,
        window_end_us: t,
        evidence: numbers([
            ("p99_ms", 212.5),
            ("baseline_p99_ms", 18.0),
            ("count", 5120.0),
        ]),
        labels: labels([("cluster", "features")]),
        emitted_us: t + 12_000,
    });
    visitor.visit(&Incident {
        incident_id: "inc-7d3a9f10".into(),
        version: 2,
        entity: "pg-features-1".into(),
        pattern: "data_drift_incident".into(),
        failure_type: "data_drift".into(),
        severity: 0.82,
        tier: Tier::T1,
        state: IncidentState::Updated,
        opened_us: t - 60_000_000,
        updated_us: t + 20_000,
        deadline_us: Some(t - 60_000_000 + 300_000_000),
        resolved_us: None,
        alert_ids: vec!["a-5e1f0c2d9b7a4e33".into(), "a-91c0d7e2aa104b6f".into()],
        alert_types: vec![
            "query_latency_increase".into(),
            "data_drift_score_high".into(),
        ],
        hypotheses: vec![Hypothesis {
            cause: "input distribution of session_length_s shifted".into(),
            confidence: 0.7,
            evidence: "drift onset 40 s before the latency increase".into(),
        }],
        model_version: Some("2026-11-20.1".into()),
        feature_set: vec!["session_length_s".into()],
        labels: labels([("cluster", "features"), ("model", "ranker")]),
        action_id: None,
        recovered_us: None,
        recurred_us: None,
    });
    visitor.visit(&RemediationEvent {
        action_id: "act-1b2c3d4e".into(),
        incident_id: "inc-7d3a9f10".into(),
        kind: RemediationKind::Reactive,
        band: SeverityBand::Emergency,
        template: "pg.create_index_concurrently".into(),
        params: [
            (
                "table".to_owned(),
                ParamValue::String("user_features".into()),
            ),
            ("column".to_owned(), ParamValue::String("user_id".into())),
            ("estimated_speedup".to_owned(), ParamValue::Double(11.8)),
            ("max_duration_s".to_owned(), ParamValue::Long(300)),
            ("canary".to_owned(), ParamValue::Boolean(true)),
        ]
        .into_iter()
        .collect(),
        target: "pg-features-1".into(),
        risk: 0.2,
        approval_required: false,
        rollback_template: Some("pg.drop_index_concurrently".into()),
        agent: "performance".into(),
        rationale: "hypothetical index cuts the hot query's cost 11.8x".into(),
        created_us: t + 30_000,
        deadline_us: Some(t + 240_000_000),
        attempt: 1,
        signature: "4a1c6f0e9d2b83c57e6a1f0d9c8b7a6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a".into(),
    });
    visitor.visit(&Approval {
        action_id: "act-1b2c3d4e".into(),
        decision: Decision::Approve,
        approver: "oncall@example.com".into(),
        reason: "index build during low traffic".into(),
        time_us: t + 45_000_000,
        signature: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        action_digest: "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae".into(),
    });
    visitor.visit(&ActionOutcome {
        action_id: "act-1b2c3d4e".into(),
        incident_id: "inc-7d3a9f10".into(),
        step: ActionStep::Verified,
        template: "pg.create_index_concurrently".into(),
        target: "pg-features-1".into(),
        time_us: t + 95_000_000,
        detail: "p99 latency back to 17.2 ms from 212.5 ms".into(),
        automated: true,
        before: numbers([("p99_ms", 212.5)]),
        after: numbers([("p99_ms", 17.2)]),
        prev_hash: "0".repeat(64),
        hash: "5f2b0a8c4d6e7f1029384756abcdef0123456789abcdef0123456789abcdef01".into(),
        params: [(
            "table".to_owned(),
            ParamValue::String("user_features".into()),
        )]
        .into_iter()
        .collect(),
        digest: "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae".into(),
        attempt: 1,
    });
    visitor.visit(&CycleReport {
        cycle_id: "cycle-42-1717236000000000".into(),
        time_us: t + 900,
        failures_detected: 3,
        operations_executed: 4,
        success_rate: Some(0.75),
        models_updated: vec!["risk-1717236000000000-5120".into()],
        proactive_plans: 2,
    });
    visitor.visit(&Forecast {
        cycle_id: "cycle-42-1717236000000000".into(),
        time_us: t + 900,
        job: "capacity_next_week".into(),
        entity: "db-3".into(),
        forecast: "capacity_share".into(),
        resource: Some("storage".into()),
        value: 0.87,
        lower: None,
        upper: None,
        horizon_s: Some(604_800),
        time_to_exhaustion_s: Some(5.2 * 86_400.0),
    });
    visitor.visit(&DeadLetter {
        source_topic: "telemetry.metrics".into(),
        partition: 3,
        offset: 1_204_887,
        reason_code: "bad_magic".into(),
        reason: "wrong magic byte 0x7b: Confluent-framed records start with 0x00".into(),
        payload: br#"{"entity":"pg-features-1"}"#.to_vec(),
        time_us: t + 1_000,
    });
}
