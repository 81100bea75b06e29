//! The demo's report (`opsloop demo --report FILE.json`): every scheduled fault with what the
//! loop did about it, and what it raised outside any fault. The format, for whoever reads it:
//!
//! ```text
//! {
//!   "faults": [{
//!     "kind": "connection_exhaustion", "target": "db-3",
//!     "start_s": 540.0, "end_s": 780.0,          // seconds from the run's start
//!     "detected": true,
//!     "first_alert_type": "connection_saturation",
//!     "detection_s": 120.0,                      // fault start -> end of the first alerting window
//!     "incident_id": "…", "pattern": "standalone", "failure_type": "resource_exhaustion",
//!     "tier": "T1",
//!     "action_template": "pg.terminate_idle_sessions",
//!     "outcome": "VERIFIED",                     // the action's last step, or null
//!     "recovered_s": 185.0                       // fault start -> VERIFIED, or null
//!   }],
//!   "alerts_outside_faults": 0, "incidents_outside_faults": 0,
//!   "samples": 53280, "series": 1016, "state_bytes_per_series": 912.4, "wall_s": 7.3
//! }
//! ```
//!
//! A fault's alerts are those on its entities whose window overlaps it; its incident is the
//! first one opened on its entities from its first alert to [`INCIDENT_GRACE_US`] after its
//! end; its action is the first one that incident's plans executed. An incident no fault
//! claims is outside the faults.

use std::collections::BTreeMap;

use opsloop_connectors::generate::FaultWindow;
use opsloop_schemas::ops::{ActionOutcome, ActionStep, Alert, CycleReport, Forecast, Incident};
use serde::Serialize;

use crate::transport::Status;

/// How long after a fault's end an incident it caused may still open (detection and grouping
/// take a few windows).
pub(crate) const INCIDENT_GRACE_US: i64 = 10 * 60 * 1_000_000;

/// What the demo saw, for the report.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    pub(super) samples: usize,
    alerts: Vec<(String, String, i64, i64)>,
    /// Incident id -> its latest version.
    incidents: BTreeMap<String, Incident>,
    outcomes: Vec<ActionOutcome>,
    pub(super) status: Option<Status>,
    pub(super) cycles: Vec<CycleReport>,
    /// The forecasts of the latest cycle.
    pub(super) forecasts: Vec<Forecast>,
}

impl Recorder {
    pub(super) fn alert(&mut self, alert: &Alert) {
        self.alerts.push((
            alert.entity.clone(),
            alert.alert_type.clone(),
            alert.window_start_us,
            alert.window_end_us,
        ));
    }

    pub(super) fn incident(&mut self, incident: &Incident) {
        self.incidents
            .insert(incident.incident_id.clone(), incident.clone());
    }

    pub(super) fn outcome(&mut self, outcome: &ActionOutcome) {
        self.outcomes.push(outcome.clone());
    }

    pub(super) fn cycle(&mut self, report: &CycleReport) {
        if self
            .cycles
            .last()
            .is_none_or(|last| last.cycle_id != report.cycle_id)
        {
            self.forecasts.clear();
        }
        self.cycles.push(report.clone());
    }

    pub(super) fn forecast(&mut self, forecast: &Forecast) {
        self.forecasts.push(forecast.clone());
    }

    /// The incidents, latest versions, by opening time.
    pub(crate) fn incidents(&self) -> Vec<&Incident> {
        let mut incidents: Vec<&Incident> = self.incidents.values().collect();
        incidents.sort_by(|a, b| (a.opened_us, &a.incident_id).cmp(&(b.opened_us, &b.incident_id)));
        incidents
    }

    /// The report against `truth`, for a run that started at `started_us`.
    pub(crate) fn report(&self, truth: &[FaultWindow], started_us: i64, wall_s: f64) -> DemoReport {
        let seconds = |us: i64| (us - started_us) as f64 / 1e6;
        let mut alert_in_fault = vec![false; self.alerts.len()];
        let mut incident_in_fault: BTreeMap<&str, bool> = self
            .incidents
            .keys()
            .map(|id| (id.as_str(), false))
            .collect();
        let incidents = self.incidents();
        let mut faults = Vec::new();
        for fault in truth {
            let mut first: Option<(i64, &str)> = None;
            for (index, (entity, alert_type, start, end)) in self.alerts.iter().enumerate() {
                let overlaps = *start < fault.end_us && *end > fault.start_us;
                if overlaps && fault.entities.contains(entity) {
                    alert_in_fault[index] = true;
                    if first.is_none_or(|(at, _)| *end < at) {
                        first = Some((*end, alert_type));
                    }
                }
            }
            // Incidents of the fault's alerts: opened on its entities once it was detected.
            let caused: Vec<&Incident> = match first {
                Some((detected_us, _)) => incidents
                    .iter()
                    .copied()
                    .filter(|i| {
                        fault.entities.contains(&i.entity)
                            && (detected_us..fault.end_us + INCIDENT_GRACE_US)
                                .contains(&i.opened_us)
                    })
                    .collect(),
                None => Vec::new(),
            };
            for incident in &caused {
                incident_in_fault.insert(incident.incident_id.as_str(), true);
            }
            let incident = caused.first().copied();
            let executed = incident.and_then(|i| {
                self.outcomes
                    .iter()
                    .find(|o| o.incident_id == i.incident_id && o.step == ActionStep::Executed)
            });
            let last_step = executed.and_then(|e| {
                self.outcomes
                    .iter()
                    .rfind(|o| o.action_id == e.action_id)
                    .map(|o| o.step)
            });
            let verified = executed.and_then(|e| {
                self.outcomes
                    .iter()
                    .find(|o| o.action_id == e.action_id && o.step == ActionStep::Verified)
            });
            faults.push(FaultReport {
                kind: fault.kind.name().to_owned(),
                target: fault.target.clone(),
                start_s: seconds(fault.start_us),
                end_s: seconds(fault.end_us),
                detected: first.is_some(),
                first_alert_type: first.map(|(_, t)| t.to_owned()),
                detection_s: first.map(|(end, _)| (end - fault.start_us) as f64 / 1e6),
                incident_id: incident.map(|i| i.incident_id.clone()),
                pattern: incident.map(|i| i.pattern.clone()),
                failure_type: incident.map(|i| i.failure_type.clone()),
                tier: incident.map(|i| format!("{:?}", i.tier)),
                action_template: executed.map(|e| e.template.clone()),
                outcome: last_step.map(|step| step.as_str().to_owned()),
                recovered_s: verified.map(|v| (v.time_us - fault.start_us) as f64 / 1e6),
            });
        }
        let status = self.status;
        let series = status.map_or(0, |s| s.engine.active_groups);
        let state_bytes = status.map_or(0, |s| s.engine.state_bytes);
        DemoReport {
            faults,
            alerts_outside_faults: alert_in_fault.iter().filter(|inside| !**inside).count(),
            incidents_outside_faults: incident_in_fault
                .values()
                .filter(|inside| !**inside)
                .count(),
            samples: self.samples,
            series,
            state_bytes_per_series: if series > 0 {
                state_bytes as f64 / series as f64
            } else {
                0.0
            },
            wall_s,
        }
    }
}

/// One scheduled fault and what the loop did about it; see the module docs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultReport {
    pub kind: String,
    pub target: String,
    pub start_s: f64,
    pub end_s: f64,
    pub detected: bool,
    pub first_alert_type: Option<String>,
    pub detection_s: Option<f64>,
    pub incident_id: Option<String>,
    pub pattern: Option<String>,
    pub failure_type: Option<String>,
    pub tier: Option<String>,
    pub action_template: Option<String>,
    pub outcome: Option<String>,
    pub recovered_s: Option<f64>,
}

/// The demo's machine-readable summary; see the module docs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DemoReport {
    pub faults: Vec<FaultReport>,
    pub alerts_outside_faults: usize,
    pub incidents_outside_faults: usize,
    pub samples: usize,
    pub series: usize,
    pub state_bytes_per_series: f64,
    pub wall_s: f64,
}
