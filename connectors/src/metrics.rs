//! Prometheus metrics of the connectors, registered in the process's
//! [`Registry`](prometheus_client::registry::Registry) and served by its `/metrics` endpoint.
//!
//! One [`ConnectorMetrics`] is registered per process; each source takes the handles for its
//! own name with [`ConnectorMetrics::source`], so several sources in one process (metrics,
//! GPU, logs) report separately. The dead-letter events that are not routine — a dead letter
//! stored truncated, one that could not be written — are logged in the same call that counts
//! them (`SourceMetrics::dead_letter_truncated`, `SourceMetrics::dead_letter_failed`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::ConnectorError;
use crate::kafka::DeadLetterOrigin;

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
    dead_letters_truncated: Family<SourceLabel, Counter>,
    dead_letter_failures: Family<DeadLetterLabels, Counter>,
    rebalances: Family<RebalanceLabels, Counter>,
    assigned_partitions: Family<SourceLabel, Gauge>,
}

impl ConnectorMetrics {
    /// Creates the families and registers them in `registry`, with the process-wide count of
    /// broker errors (`opsloop_kafka_broker_errors_total`).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = ConnectorMetrics::default();
        crate::kafka::register_broker_metrics(registry);
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
            "opsloop_dead_letters_truncated",
            "Dead letters stored as a prefix of the record, which was over the dead-letter \
             payload limit (its size and SHA-256 are in the headers)",
            metrics.dead_letters_truncated.clone(),
        );
        registry.register(
            "opsloop_dead_letter_failures",
            "Dead letters that could not be written, by reason; the record is skipped and \
             reading goes on",
            metrics.dead_letter_failures.clone(),
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
            dead_letters_truncated: self.dead_letters_truncated.get_or_create(&label).clone(),
            dead_letters: self.dead_letters.clone(),
            dead_letter_failures: self.dead_letter_failures.clone(),
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
    dead_letters_truncated: Counter,
    dead_letters: Family<DeadLetterLabels, Counter>,
    dead_letter_failures: Family<DeadLetterLabels, Counter>,
    rebalances: Family<RebalanceLabels, Counter>,
}

impl SourceMetrics {
    /// Handles that no registry reports, for tools and tests that need no `/metrics`.
    pub fn unregistered(source: &str) -> Self {
        ConnectorMetrics::default().source(source)
    }

    pub(crate) fn dead_letter(&self, reason: &str) {
        self.dead_letters
            .get_or_create(&self.reason_labels(reason))
            .inc();
    }

    /// Records dead-lettered for `reason` so far.
    pub fn dead_letters(&self, reason: &str) -> u64 {
        self.dead_letters
            .get_or_create(&self.reason_labels(reason))
            .get()
    }

    /// A record over the dead-letter payload limit, stored as its first `stored` bytes.
    pub(crate) fn dead_letter_truncated(&self, origin: &DeadLetterOrigin, stored: usize) {
        tracing::warn!(
            source = %self.name,
            topic = %origin.topic,
            partition = origin.partition,
            offset = origin.offset,
            reason_code = %origin.reason_code,
            size = origin.size,
            stored,
            "the record is too large to dead-letter whole: its first bytes are stored, with \
             its size and SHA-256 in the headers"
        );
        self.dead_letters_truncated.inc();
    }

    /// A dead letter the producer refused or the brokers never acknowledged: the record is
    /// skipped and reading goes on.
    pub(crate) fn dead_letter_failed(&self, origin: &DeadLetterOrigin, error: &ConnectorError) {
        tracing::error!(
            source = %self.name,
            topic = %origin.topic,
            partition = origin.partition,
            offset = origin.offset,
            reason_code = %origin.reason_code,
            %error,
            "the dead letter could not be written; the record is skipped and reading goes on"
        );
        self.dead_letter_failures
            .get_or_create(&self.reason_labels(&origin.reason_code))
            .inc();
    }

    /// Dead letters stored truncated so far.
    pub fn dead_letters_truncated(&self) -> u64 {
        self.dead_letters_truncated.get()
    }

    /// Dead letters of `reason` that could not be written so far.
    pub fn dead_letter_failures(&self, reason: &str) -> u64 {
        self.dead_letter_failures
            .get_or_create(&self.reason_labels(reason))
            .get()
    }

    fn reason_labels(&self, reason: &str) -> DeadLetterLabels {
        DeadLetterLabels {
            source: self.name.clone(),
            reason: reason.to_owned(),
        }
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

    #[test]
    fn truncated_and_unwritten_dead_letters_are_exposed_per_source() {
        let mut registry = Registry::default();
        let metrics = ConnectorMetrics::register(&mut registry).source("metrics");
        let origin = DeadLetterOrigin {
            topic: "telemetry.metrics".to_owned(),
            partition: 3,
            offset: 7,
            reason_code: "too_large".to_owned(),
            size: 2 << 20,
        };
        metrics.dead_letter_truncated(&origin, 1024);
        let refused = ConnectorError::Delivery {
            topic: "ops.deadletter".to_owned(),
            reason: "Message size too large".to_owned(),
            retry: crate::Retry::Never,
        };
        metrics.dead_letter_failed(&origin, &refused);

        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        assert!(
            text.contains(r#"opsloop_dead_letters_truncated_total{source="metrics"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"opsloop_dead_letter_failures_total{source="metrics",reason="too_large"} 1"#
            ),
            "{text}"
        );
        assert_eq!(metrics.dead_letters_truncated(), 1);
        assert_eq!(metrics.dead_letter_failures("too_large"), 1);
    }
}
