//! Prometheus metrics of the connectors, registered in the process's
//! [`Registry`](prometheus_client::registry::Registry) and served by its `/metrics` endpoint.
//!
//! One [`ConnectorMetrics`] is registered per process; each source takes the handles for its
//! own name with [`ConnectorMetrics::source`], so several sources in one process (metrics,
//! GPU, logs) report separately.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DeadLetterLabels {
    source: String,
    reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RebalanceLabels {
    source: String,
    event: String,
}

/// Every connector metric family, cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ConnectorMetrics {
    records: Family<SourceLabel, Counter>,
    skipped: Family<SourceLabel, Counter>,
    bytes: Family<SourceLabel, Counter>,
    rows: Family<SourceLabel, Counter>,
    batches: Family<SourceLabel, Counter>,
    dead_letters: Family<DeadLetterLabels, Counter>,
    rebalances: Family<RebalanceLabels, Counter>,
    assigned_partitions: Family<SourceLabel, Gauge>,
}

impl ConnectorMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = ConnectorMetrics::default();
        registry.register(
            "opsloop_source_records",
            "Kafka records read",
            metrics.records.clone(),
        );
        registry.register(
            "opsloop_source_skipped_records",
            "Records skipped on restart because the last checkpoint already covers them",
            metrics.skipped.clone(),
        );
        registry.register(
            "opsloop_source_bytes",
            "Payload bytes of the Kafka records read",
            metrics.bytes.clone(),
        );
        registry.register(
            "opsloop_source_rows",
            "Arrow rows decoded from the records read",
            metrics.rows.clone(),
        );
        registry.register(
            "opsloop_source_batches",
            "Micro-batches handed to the pipeline",
            metrics.batches.clone(),
        );
        registry.register(
            "opsloop_dead_letters",
            "Records sent to the dead-letter topic, by reason",
            metrics.dead_letters.clone(),
        );
        registry.register(
            "opsloop_source_rebalances",
            "Consumer-group rebalance events (assign, revoke, error)",
            metrics.rebalances.clone(),
        );
        registry.register(
            "opsloop_source_assigned_partitions",
            "Partitions currently assigned to this consumer",
            metrics.assigned_partitions.clone(),
        );
        metrics
    }

    /// The handles of the source named `source`.
    pub fn source(&self, source: &str) -> SourceMetrics {
        let label = SourceLabel {
            source: source.to_owned(),
        };
        SourceMetrics {
            name: source.to_owned(),
            records: self.records.get_or_create(&label).clone(),
            skipped: self.skipped.get_or_create(&label).clone(),
            bytes: self.bytes.get_or_create(&label).clone(),
            rows: self.rows.get_or_create(&label).clone(),
            batches: self.batches.get_or_create(&label).clone(),
            assigned_partitions: self.assigned_partitions.get_or_create(&label).clone(),
            dead_letters: self.dead_letters.clone(),
            rebalances: self.rebalances.clone(),
        }
    }
}

/// The metrics of one source.
#[derive(Debug, Clone)]
pub struct SourceMetrics {
    name: String,
    pub(crate) records: Counter,
    pub(crate) skipped: Counter,
    pub(crate) bytes: Counter,
    pub(crate) rows: Counter,
    pub(crate) batches: Counter,
    pub(crate) assigned_partitions: Gauge,
    dead_letters: Family<DeadLetterLabels, Counter>,
    rebalances: Family<RebalanceLabels, Counter>,
}

impl SourceMetrics {
    /// Handles that no registry reports, for tools and tests that need no `/metrics`.
    pub fn unregistered(source: &str) -> Self {
        ConnectorMetrics::default().source(source)
    }

    pub(crate) fn dead_letter(&self, reason: &str) {
        self.dead_letters
            .get_or_create(&DeadLetterLabels {
                source: self.name.clone(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Records dead-lettered for `reason` so far.
    pub fn dead_letters(&self, reason: &str) -> u64 {
        self.dead_letters
            .get_or_create(&DeadLetterLabels {
                source: self.name.clone(),
                reason: reason.to_owned(),
            })
            .get()
    }

    pub(crate) fn rebalance(&self, event: &str) {
        self.rebalances
            .get_or_create(&RebalanceLabels {
                source: self.name.clone(),
                event: event.to_owned(),
            })
            .inc();
    }

    /// Records read so far, not counting those skipped on resume.
    pub fn records(&self) -> u64 {
        self.records.get()
    }

    /// Records skipped because a checkpoint already covered them.
    pub fn skipped(&self) -> u64 {
        self.skipped.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letters_are_exposed_per_source_and_reason() {
        let mut registry = Registry::default();
        let metrics = ConnectorMetrics::register(&mut registry);
        let gpu = metrics.source("gpu");
        gpu.dead_letter("invalid_utf8");
        gpu.dead_letter("invalid_utf8");
        metrics.source("metrics").dead_letter("truncated");
        gpu.records.inc_by(5);

        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        assert!(
            text.contains(r#"opsloop_dead_letters_total{source="gpu",reason="invalid_utf8"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"opsloop_dead_letters_total{source="metrics",reason="truncated"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"opsloop_source_records_total{source="gpu"} 5"#),
            "{text}"
        );
        assert_eq!(gpu.dead_letters("invalid_utf8"), 2);
    }
}
