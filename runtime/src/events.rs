//! The loop's observable events, each logged (`tracing`) and counted (Prometheus) in one call
//! of [`Events`]: alerts, watermark jumps, incident versions, plans, escalations, outcomes,
//! checkpoints, predictive cycles, and the engine's and correlator's gauges. Durations are in seconds. The
//! sources' own events (records in, dead letters) are the connectors'.

use opsloop_correlator::CorrelatorStatus;
use opsloop_engine::runtime::{EngineStatus, Output};
use opsloop_planner::Escalation;
use opsloop_schemas::ops::{ActionOutcome, CycleReport, Forecast, Incident, RemediationEvent};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

type Seconds = Gauge<f64, std::sync::atomic::AtomicU64>;

/// Registers metrics of one type, each with its name and help.
fn register<M: Metric + Clone>(registry: &mut Registry, metrics: &[(&str, &str, &M)]) {
    for (name, help, metric) in metrics {
        registry.register(*name, *help, (*metric).clone());
    }
}

#[derive(Debug, Clone)]
struct EngineMetrics {
    alerts: Counter,
    windows_fired: Counter,
    late_rows: Counter,
    watermark_jumps: Counter,
    open_windows: Gauge,
    active_groups: Gauge,
    state_bytes: Gauge,
    watermark_lag_seconds: Seconds,
    watermark_seconds: Seconds,
    idle_partitions: Gauge,
    checkpoint_seconds: Histogram,
}

impl Default for EngineMetrics {
    fn default() -> Self {
        EngineMetrics {
            alerts: Counter::default(),
            windows_fired: Counter::default(),
            late_rows: Counter::default(),
            watermark_jumps: Counter::default(),
            open_windows: Gauge::default(),
            active_groups: Gauge::default(),
            state_bytes: Gauge::default(),
            watermark_lag_seconds: Seconds::default(),
            watermark_seconds: Seconds::default(),
            idle_partitions: Gauge::default(),
            checkpoint_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
        }
    }
}

impl EngineMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = EngineMetrics::default();
        register(
            registry,
            &[
                ("opsloop_alerts", "Alerts emitted", &m.alerts),
                (
                    "opsloop_windows_fired",
                    "Windows closed by the watermark (re-emissions included)",
                    &m.windows_fired,
                ),
                (
                    "opsloop_late_rows",
                    "Rows too late for every window they fall in (the late side output)",
                    &m.late_rows,
                ),
                (
                    "opsloop_watermark_jumps",
                    "Steps of the watermark longer than [engine.watermark] jump_warning_ms",
                    &m.watermark_jumps,
                ),
            ],
        );
        register(
            registry,
            &[
                (
                    "opsloop_windows_open",
                    "Windows holding state",
                    &m.open_windows,
                ),
                (
                    "opsloop_active_groups",
                    "Groups (series) with state in open windows",
                    &m.active_groups,
                ),
                (
                    "opsloop_state_bytes",
                    "Bytes of window state held by the detectors",
                    &m.state_bytes,
                ),
                (
                    "opsloop_idle_partitions",
                    "Partitions excluded from the watermark for being idle",
                    &m.idle_partitions,
                ),
            ],
        );
        register(
            registry,
            &[
                (
                    "opsloop_watermark_lag_seconds",
                    "Newest event time seen minus the watermark",
                    &m.watermark_lag_seconds,
                ),
                (
                    "opsloop_watermark_seconds",
                    "The watermark: event time in seconds since the Unix epoch",
                    &m.watermark_seconds,
                ),
            ],
        );
        registry.register(
            "opsloop_checkpoint_duration_seconds",
            "Time to deliver pending alerts, write a checkpoint and commit its offsets",
            m.checkpoint_seconds.clone(),
        );
        m
    }

    fn record(&self, output: &Output) {
        self.alerts.inc_by(output.alerts.len() as u64);
        self.windows_fired.inc_by(output.windows_fired as u64);
        self.late_rows.inc_by(output.too_late_rows as u64);
    }

    fn status(&self, status: &EngineStatus) {
        let gauge = |value: usize| i64::try_from(value).unwrap_or(i64::MAX);
        self.open_windows.set(gauge(status.open_windows));
        self.active_groups.set(gauge(status.active_groups));
        self.state_bytes.set(gauge(status.state_bytes));
        self.idle_partitions.set(gauge(status.idle_partitions));
        if let Some(watermark) = status.watermark_us {
            self.watermark_seconds.set(watermark as f64 / 1e6);
        }
        if let (Some(newest), Some(watermark)) = (status.max_event_time_us, status.watermark_us) {
            self.watermark_lag_seconds
                .set((newest - watermark) as f64 / 1e6);
        }
    }
}

/// The correlator's gauges and totals (set from its status after every step).
#[derive(Debug, Clone, Default)]
struct CorrelatorMetrics {
    open_incidents: Gauge,
    pending_alerts: Gauge,
    versions: Gauge,
    inhibited: Gauge,
    late: Gauge,
    duplicates: Gauge,
    silenced: Gauge,
}

impl CorrelatorMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = CorrelatorMetrics::default();
        let gauges = [
            (
                "opsloop_incidents_open",
                "Incidents open now",
                &metrics.open_incidents,
            ),
            (
                "opsloop_correlator_pending_alerts",
                "Alerts waiting for their group's next flush (group_wait, group_interval)",
                &metrics.pending_alerts,
            ),
            (
                "opsloop_incident_versions",
                "Incident versions produced since the correlator's state began",
                &metrics.versions,
            ),
            (
                "opsloop_alerts_inhibited",
                "Alerts left out by an inhibition rule since the state began",
                &metrics.inhibited,
            ),
            (
                "opsloop_alerts_late_for_correlation",
                "Alerts older than the last resolution of their type in their group",
                &metrics.late,
            ),
            (
                "opsloop_alerts_duplicate",
                "Alerts seen again (replays, re-emissions) since the state began",
                &metrics.duplicates,
            ),
            (
                "opsloop_notifications_silenced",
                "Notifications muted by a silence since the state began",
                &metrics.silenced,
            ),
        ];
        register(registry, &gauges);
        metrics
    }

    fn status(&self, status: &CorrelatorStatus) {
        let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.open_incidents.set(gauge(status.open_incidents as u64));
        self.pending_alerts.set(gauge(status.pending_alerts as u64));
        let counters = status.counters;
        self.versions.set(gauge(counters.versions));
        self.inhibited.set(gauge(counters.inhibited));
        self.late.set(gauge(counters.late));
        self.duplicates.set(gauge(counters.duplicates));
        self.silenced.set(gauge(counters.silenced_notifications));
    }
}

/// The closed-loop cycle report of the last predictive cycle, and running totals.
#[derive(Debug, Clone, Default)]
struct CycleMetrics {
    cycles: Counter,
    failures_detected: Gauge,
    operations_executed: Gauge,
    success_rate: Gauge<f64, std::sync::atomic::AtomicU64>,
    duration: Gauge<f64, std::sync::atomic::AtomicU64>,
    models_updated: Counter,
    proactive_plans: Counter,
    failed: Counter,
    forecasts: Family<ForecastLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

/// Labels of `opsloop_forecast`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ForecastLabels {
    entity: String,
    forecast: String,
    resource: String,
}

impl CycleMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = CycleMetrics::default();
        register(
            registry,
            &[
                ("opsloop_cycles", "Predictive cycles run", &m.cycles),
                (
                    "opsloop_models_updated",
                    "Failure-risk models trained",
                    &m.models_updated,
                ),
                (
                    "opsloop_proactive_plans",
                    "Proactive remediation events planned",
                    &m.proactive_plans,
                ),
                (
                    "opsloop_cycles_failed",
                    "Predictive cycles whose forecast jobs failed",
                    &m.failed,
                ),
            ],
        );
        register(
            registry,
            &[
                (
                    "opsloop_cycle_failures_detected",
                    "Incidents opened during the last cycle",
                    &m.failures_detected,
                ),
                (
                    "opsloop_cycle_operations_executed",
                    "Actions that finished (verified, rolled back, failed) during the last cycle",
                    &m.operations_executed,
                ),
            ],
        );
        register(
            registry,
            &[
                (
                    "opsloop_cycle_success_rate",
                    "Verified over finished actions in the last cycle (NaN when none)",
                    &m.success_rate,
                ),
                (
                    "opsloop_cycle_duration_seconds",
                    "Wall time of the last cycle: forecast jobs, risk scoring, rules",
                    &m.duration,
                ),
            ],
        );
        registry.register(
            "opsloop_forecast",
            "The last cycle's forecasts, by entity, what is forecast and resource",
            m.forecasts.clone(),
        );
        m
    }

    /// Replaces the forecasts with the last cycle's.
    fn forecasts(&self, forecasts: &[Forecast]) {
        self.forecasts.clear();
        for forecast in forecasts {
            let labels = ForecastLabels {
                entity: forecast.entity.clone(),
                forecast: forecast.forecast.clone(),
                resource: forecast.resource.clone().unwrap_or_default(),
            };
            self.forecasts.get_or_create(&labels).set(forecast.value);
        }
    }

    fn record(&self, report: &CycleReport, seconds: f64) {
        self.cycles.inc();
        self.duration.set(seconds);
        self.failures_detected.set(report.failures_detected);
        self.operations_executed.set(report.operations_executed);
        self.success_rate
            .set(report.success_rate.unwrap_or(f64::NAN));
        self.models_updated
            .inc_by(report.models_updated.len() as u64);
        self.proactive_plans
            .inc_by(u64::try_from(report.proactive_plans).unwrap_or(0));
    }
}

/// The plans and what became of them.
#[derive(Debug, Clone, Default)]
struct PlanMetrics {
    remediation: Family<Vec<(String, String)>, Counter>,
    escalations: Counter,
    outcomes: Family<Vec<(String, String)>, Counter>,
    open_fixes: Gauge,
}

impl PlanMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = PlanMetrics::default();
        register(
            registry,
            &[
                (
                    "opsloop_remediation_planned",
                    "Remediation events planned, by kind (reactive, proactive)",
                    &m.remediation,
                ),
                (
                    "opsloop_action_outcomes_seen",
                    "Actuator audit entries read back, by step",
                    &m.outcomes,
                ),
            ],
        );
        registry.register(
            "opsloop_escalations",
            "Incidents escalated because their fixes ran out of attempts",
            m.escalations.clone(),
        );
        registry.register(
            "opsloop_open_fixes",
            "Fixes in flight or waiting for another attempt",
            m.open_fixes.clone(),
        );
        m
    }
}

/// Every event of the loop; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct Events {
    engine: EngineMetrics,
    correlator: CorrelatorMetrics,
    cycles: CycleMetrics,
    plans: PlanMetrics,
}

impl Events {
    /// The events, their metrics registered in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        Events {
            engine: EngineMetrics::register(registry),
            correlator: CorrelatorMetrics::register(registry),
            cycles: CycleMetrics::register(registry),
            plans: PlanMetrics::register(registry),
        }
    }

    /// What the engine did with a batch or a tick, and where it stands.
    pub(crate) fn engine(&self, output: &Output, status: &EngineStatus) {
        self.engine.record(output);
        self.engine.status(status);
        if let Some(jump) = output.watermark_jump {
            tracing::warn!(
                from_us = jump.from_us,
                to_us = jump.to_us,
                seconds = (jump.to_us - jump.from_us) as f64 / 1e6,
                "the watermark jumped: every window it passed closed at once, and records \
                 still to come for them are late; check the sources' clocks"
            );
            self.engine.watermark_jumps.inc();
        }
        for alert in &output.alerts {
            tracing::info!(
                alert_id = %alert.alert_id,
                detector = %alert.detector,
                entity = %alert.entity,
                score = alert.score,
                "alert"
            );
        }
    }

    pub(crate) fn incident(&self, incident: &Incident) {
        tracing::info!(
            incident_id = %incident.incident_id,
            version = incident.version,
            state = ?incident.state,
            tier = ?incident.tier,
            pattern = %incident.pattern,
            entity = %incident.entity,
            action_id = ?incident.action_id,
            recovered_us = ?incident.recovered_us,
            recurred_us = ?incident.recurred_us,
            "incident"
        );
    }

    pub(crate) fn correlator(&self, status: &CorrelatorStatus, open_fixes: usize) {
        self.correlator.status(status);
        self.plans
            .open_fixes
            .set(i64::try_from(open_fixes).unwrap_or(i64::MAX));
    }

    pub(crate) fn planned(&self, event: &RemediationEvent) {
        tracing::info!(
            action_id = %event.action_id,
            incident_id = %event.incident_id,
            template = %event.template,
            target = %event.target,
            attempt = event.attempt,
            agent = %event.agent,
            kind = ?event.kind,
            approval_required = event.approval_required,
            rationale = %event.rationale,
            "remediation planned"
        );
        let kind = format!("{:?}", event.kind).to_lowercase();
        self.plans
            .remediation
            .get_or_create(&vec![("kind".to_owned(), kind)])
            .inc();
    }

    pub(crate) fn escalated(&self, escalation: &Escalation) {
        tracing::warn!(incident_id = %escalation.incident_id, reason = %escalation.reason, "incident escalated");
        self.plans.escalations.inc();
    }

    pub(crate) fn outcome(&self, outcome: &ActionOutcome) {
        tracing::debug!(action_id = %outcome.action_id, step = ?outcome.step, template = %outcome.template, "action outcome");
        let step = format!("{:?}", outcome.step).to_lowercase();
        self.plans
            .outcomes
            .get_or_create(&vec![("step".to_owned(), step)])
            .inc();
    }

    pub(crate) fn checkpoint_written(&self, id: u64, seconds: f64, path: &std::path::Path) {
        tracing::debug!(id, seconds, path = %path.display(), "checkpoint written");
        self.engine.checkpoint_seconds.observe(seconds);
    }

    pub(crate) fn commit_failed(&self, error: &crate::RuntimeError) {
        // The checkpoint holds the offsets; the next start skips what it covers.
        tracing::warn!(%error, "committing checkpointed offsets failed");
    }

    pub(crate) fn cycle(&self, report: &CycleReport, forecasts: &[Forecast], seconds: f64) {
        for forecast in forecasts {
            tracing::debug!(
                job = %forecast.job,
                entity = %forecast.entity,
                forecast = %forecast.forecast,
                resource = ?forecast.resource,
                value = forecast.value,
                time_to_exhaustion_s = ?forecast.time_to_exhaustion_s,
                "forecast"
            );
        }
        tracing::info!(
            cycle_id = %report.cycle_id,
            failures_detected = report.failures_detected,
            operations_executed = report.operations_executed,
            success_rate = ?report.success_rate,
            models_updated = ?report.models_updated,
            proactive_plans = report.proactive_plans,
            forecasts = forecasts.len(),
            seconds,
            "predictive cycle"
        );
        self.cycles.forecasts(forecasts);
        self.cycles.record(report, seconds);
    }

    pub(crate) fn cycle_failed(&self, error: &crate::RuntimeError) {
        // A job that fails on this cycle's data must not stop detection.
        tracing::error!(%error, "predictive cycle failed");
        self.cycles.failed.inc();
    }
}
