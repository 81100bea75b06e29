//! Property: within one flush, the order alerts arrive in does not change the incidents; and
//! every incident's versions count up from 1 with a valid lifecycle.

use std::collections::BTreeMap;

use opsloop_correlator::{Correlator, CorrelatorConfig};
use opsloop_schemas::ops::{Alert, IncidentState};
use proptest::prelude::*;

const S: i64 = 1_000_000;
const TYPES: &[&str] = &[
    "data_drift_score_high",
    "model_performance_drop",
    "query_latency_increase",
    "connection_saturation",
    "query_error_burst",
    "cpu_utilization_high",
    "gpu_utilization_low",
    "gpu_thermal",
];

fn alert(type_index: usize, entity: usize, minute: i64, severity: f64) -> Alert {
    let alert_type = TYPES[type_index % TYPES.len()];
    Alert {
        alert_id: format!("{alert_type}/db-{entity}/{minute}"),
        entity: format!("db-{entity}"),
        detector: alert_type.to_owned(),
        alert_type: alert_type.to_owned(),
        score: 1.0,
        severity,
        window_start_us: minute * 60 * S,
        window_end_us: (minute + 1) * 60 * S,
        evidence: BTreeMap::new(),
        labels: BTreeMap::new(),
        emitted_us: 0,
    }
}

fn alerts() -> impl Strategy<Value = Vec<Alert>> {
    prop::collection::vec((0..TYPES.len(), 0usize..3, 0i64..4, 0.0f64..1.0), 1..24).prop_map(
        |specs| {
            let mut by_id = BTreeMap::new();
            for (kind, entity, minute, severity) in specs {
                let alert = alert(kind, entity, minute, severity);
                by_id.insert(alert.alert_id.clone(), alert);
            }
            by_id.into_values().collect()
        },
    )
}

proptest! {
    #[test]
    fn arrival_order_within_a_flush_does_not_matter(
        alerts in alerts(),
        seed in any::<u64>(),
    ) {
        let mut sorted = Correlator::new(CorrelatorConfig::default()).expect("defaults");
        let mut shuffled = Correlator::new(CorrelatorConfig::default()).expect("defaults");
        let mut order: Vec<usize> = (0..alerts.len()).collect();
        // A cheap deterministic shuffle from the seed.
        let mut state = seed | 1;
        for i in (1..order.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            order.swap(i, (state % (i as u64 + 1)) as usize);
        }
        for alert in &alerts {
            sorted.observe(alert);
        }
        for &i in &order {
            shuffled.observe(&alerts[i]);
        }
        // Every alert ends by 4 min; the first flush is due 30 s after the earliest end.
        let expected = sorted.advance(100_000 * S);
        let got = shuffled.advance(100_000 * S);
        prop_assert_eq!(&got, &expected);

        let mut last: BTreeMap<&str, (i64, IncidentState)> = BTreeMap::new();
        for version in &expected.versions {
            let previous = last.get(version.incident_id.as_str()).copied();
            match previous {
                None => prop_assert_eq!((version.version, version.state), (1, IncidentState::Open)),
                Some((number, state)) => {
                    prop_assert_eq!(version.version, number + 1);
                    prop_assert_ne!(state, IncidentState::Resolved);
                }
            }
            prop_assert!((0.0..=1.0).contains(&version.severity));
            let confidence: f64 = version.hypotheses.iter().map(|h| h.confidence).sum();
            prop_assert!((confidence - 1.0).abs() < 1e-9);
            last.insert(&version.incident_id, (version.version, version.state));
        }
        // Long after the last alert every incident has resolved.
        prop_assert!(last.values().all(|(_, state)| *state == IncidentState::Resolved));
        prop_assert_eq!(sorted.status().open_incidents, 0);
    }
}
