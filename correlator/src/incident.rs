//! One open incident: its member alerts and the record its next version publishes.

use std::collections::{BTreeMap, BTreeSet};

use opsloop_schemas::ops::{Alert, Incident, IncidentState, Tier};
use serde::{Deserialize, Serialize};

use crate::config::{CorrelatorConfig, PatternConfig};
use crate::hypotheses;

/// The pattern name of incidents no pattern matched.
pub const STANDALONE: &str = "standalone";

/// The failure type of a standalone alert type the configuration does not classify.
pub const UNCLASSIFIED: &str = "unclassified";

/// What [`OpenIncident::add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Added {
    New,
    /// A member with the same id, changed (a re-emission after late data).
    Revised,
    /// A member exactly like it (a replay).
    Same,
}

/// An incident between its opening and its resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct OpenIncident {
    /// The latest version, published or about to be.
    pub(crate) record: Incident,
    /// Member alerts, ordered by window start then id; evidence maps are dropped.
    pub(crate) members: Vec<Alert>,
    /// The member windows' step: the smallest gap between successive windows of one series,
    /// else the shortest window.
    pub(crate) step_us: i64,
    /// The latest member window end: the incident resolves `resolve_after_windows` steps later.
    pub(crate) last_alert_end_us: i64,
    /// Changed since the last published version.
    pub(crate) dirty: bool,
    /// Event time of the last notification.
    pub(crate) last_notified_us: i64,
    /// The executed action whose effect is being judged, if any.
    #[serde(default)]
    pub(crate) watch: Option<Watch>,
}

/// An executed action under judgement: whether the incident's alerts stay clear for the
/// windows their detectors need after it, or come back. The verdicts published are in the
/// incident's record (`recovered_us`, `recurred_us`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Watch {
    /// Per member alert type, where its first window wholly after the action starts.
    pub(crate) boundaries: BTreeMap<String, i64>,
    /// When every member type's first window after the action has ended.
    pub(crate) clear_due_us: i64,
    /// A member alert of a window after the action: its window start and end.
    pub(crate) recurred: Option<(i64, i64)>,
}

/// The verdict a watch has due, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Recurred,
    Cleared,
}

impl Watch {
    /// A watch of an action executed at `acted_us`, over the windows of `members`.
    pub(crate) fn new(acted_us: i64, members: &[Alert]) -> Self {
        let mut boundaries = BTreeMap::new();
        let mut clear_due_us = acted_us;
        let types: BTreeSet<&str> = members.iter().map(|m| m.alert_type.as_str()).collect();
        for alert_type in types {
            let of_type = || members.iter().filter(move |m| m.alert_type == alert_type);
            let width = of_type()
                .map(|m| m.window_end_us - m.window_start_us)
                .max()
                .unwrap_or(1)
                .max(1);
            let step = window_step(of_type()).max(1);
            // Windows start at multiples of their slide: the first at or after the action.
            let boundary = (acted_us + step - 1).div_euclid(step) * step;
            boundaries.insert(alert_type.to_owned(), boundary);
            clear_due_us = clear_due_us.max(boundary.saturating_add(width));
        }
        Watch {
            boundaries,
            clear_due_us,
            recurred: None,
        }
    }

    /// Where the last member type's first window after the action starts: the clear
    /// verdict's time.
    pub(crate) fn latest_boundary(&self) -> Option<i64> {
        self.boundaries.values().max().copied()
    }

    /// Takes in a member-type alert of `record`'s incident: one of a window wholly after the
    /// action is a recurrence.
    pub(crate) fn observe(&mut self, alert: &Alert, record: &Incident) {
        let boundary = self
            .boundaries
            .get(&alert.alert_type)
            .copied()
            .or_else(|| self.latest_boundary())
            .unwrap_or(i64::MAX);
        if alert.window_start_us < boundary || record.recurred_us.is_some() {
            return;
        }
        let earliest = self
            .recurred
            .is_none_or(|(start, _)| alert.window_start_us < start);
        if earliest {
            self.recurred = Some((alert.window_start_us, alert.window_end_us));
        }
    }

    /// The next verdict to publish on `record`'s incident and its due time.
    pub(crate) fn due(&self, record: &Incident) -> Option<(i64, Verdict)> {
        match self.recurred {
            Some((_, end)) if record.recurred_us.is_none() => Some((end, Verdict::Recurred)),
            None if record.recovered_us.is_none() => Some((self.clear_due_us, Verdict::Cleared)),
            _ => None,
        }
    }
}

impl OpenIncident {
    /// A new incident of `pattern` (or standalone) with id `incident_id`, not yet published.
    pub(crate) fn new(
        incident_id: String,
        pattern: Option<&PatternConfig>,
        labels: BTreeMap<String, String>,
    ) -> Self {
        OpenIncident {
            record: Incident {
                opened_us: i64::MAX,
                labels,
                ..Incident::new(
                    incident_id,
                    "",
                    pattern.map_or(STANDALONE, |p| &p.name),
                    pattern.map_or(UNCLASSIFIED, |p| &p.failure_type),
                )
            },
            members: Vec::new(),
            step_us: i64::MAX,
            last_alert_end_us: i64::MIN,
            dirty: true,
            last_notified_us: i64::MIN,
            watch: None,
        }
    }

    pub(crate) fn is_standalone(&self) -> bool {
        self.record.pattern == STANDALONE
    }

    pub(crate) fn has_type(&self, alert_type: &str) -> bool {
        self.members.iter().any(|m| m.alert_type == alert_type)
    }

    pub(crate) fn member_types(&self) -> BTreeSet<&str> {
        self.members.iter().map(|m| m.alert_type.as_str()).collect()
    }

    /// Adds `alert`, or replaces the member with its id (a re-emission after late data).
    pub(crate) fn add(&mut self, mut alert: Alert) -> Added {
        alert.evidence.clear();
        if let Some(existing) = self
            .members
            .iter_mut()
            .find(|m| m.alert_id == alert.alert_id)
        {
            if *existing == alert {
                return Added::Same;
            }
            *existing = alert;
            self.dirty = true;
            return Added::Revised;
        }
        self.last_alert_end_us = self.last_alert_end_us.max(alert.window_end_us);
        self.dirty = true;
        let position = self.members.partition_point(|m| {
            (m.window_start_us, &m.alert_id) < (alert.window_start_us, &alert.alert_id)
        });
        self.members.insert(position, alert);
        Added::New
    }

    pub(crate) fn has_member(&self, alert_id: &str) -> bool {
        self.members.iter().any(|m| m.alert_id == alert_id)
    }

    /// When the incident resolves if no alert arrives after its members and a pending alert
    /// ending at `pending_end_us`.
    pub(crate) fn resolve_due_us(
        &self,
        config: &CorrelatorConfig,
        pending_end_us: Option<i64>,
    ) -> i64 {
        let windows = i64::from(config.resolve_after_windows);
        let last = self
            .last_alert_end_us
            .max(pending_end_us.unwrap_or(i64::MIN));
        last.saturating_add(self.step_us.saturating_mul(windows))
    }

    /// Recomputes everything derived from the members into `record` as a version at `at_us`.
    pub(crate) fn refresh(
        &mut self,
        config: &CorrelatorConfig,
        pattern: Option<&PatternConfig>,
        at_us: i64,
    ) {
        self.step_us = window_step(&self.members);
        let record = &mut self.record;
        // Opened when the first alert was known: the end of the earliest-ending member window.
        let first_known = self.members.iter().map(|m| m.window_end_us).min();
        record.opened_us = record.opened_us.min(first_known.unwrap_or(at_us));
        record.updated_us = at_us;
        record.entity = self
            .members
            .first()
            .map(|m| m.entity.clone())
            .unwrap_or_default();
        record.alert_ids = self.members.iter().map(|m| m.alert_id.clone()).collect();
        let types: BTreeSet<&str> = self.members.iter().map(|m| m.alert_type.as_str()).collect();
        record.alert_types = types.iter().map(|t| (*t).to_owned()).collect();
        if pattern.is_none() {
            record.failure_type = types
                .iter()
                .find_map(|t| config.failure_types.get(*t))
                .map_or(UNCLASSIFIED, String::as_str)
                .to_owned();
        }

        // Noisy-OR over the member types' peak severities: independent evidence adds up.
        let mut peak_by_type: BTreeMap<&str, f64> = BTreeMap::new();
        for member in &self.members {
            let peak = peak_by_type.entry(&member.alert_type).or_insert(0.0);
            *peak = peak.max(member.severity.clamp(0.0, 1.0));
        }
        let healthy: f64 = peak_by_type.values().map(|s| 1.0 - s).product();
        // Severity never falls within an incident's life: the tier and deadline hold.
        record.severity = record.severity.max(1.0 - healthy);
        let mut tier = config.tier_of(record.severity);
        if let Some(min_tier) = pattern.and_then(|p| p.min_tier) {
            tier = tier.min(min_tier);
        }
        let escalated = record.version == 0 || tier < record.tier;
        record.tier = tier.min(record.tier);
        if escalated {
            let from = if record.version == 0 {
                record.opened_us
            } else {
                at_us
            };
            bring_deadline_forward(record, tier, from);
        }

        record.model_version = self
            .members
            .iter()
            .rev()
            .find_map(|m| m.labels.get("model_version").cloned());
        let features: BTreeSet<&str> = self
            .members
            .iter()
            .filter_map(|m| m.labels.get("feature").map(String::as_str))
            .collect();
        record.feature_set = features.into_iter().map(str::to_owned).collect();
        // Member labels name what to act on (table, index, view, backend); the group's own
        // labels take precedence, then the earliest member's.
        for member in &self.members {
            for (key, value) in &member.labels {
                record
                    .labels
                    .entry(key.clone())
                    .or_insert_with(|| value.clone());
            }
        }
        record.hypotheses = hypotheses::rank(&self.members, pattern, self.step_us);
    }

    /// One tier up (T1 stays T1) at `at_us` because of `reason`, with the new tier's deadline.
    pub(crate) fn escalate(&mut self, reason: &str, at_us: i64) {
        let record = &mut self.record;
        let raised = match record.tier {
            Tier::T4 => Tier::T3,
            Tier::T3 => Tier::T2,
            Tier::T2 | Tier::T1 => Tier::T1,
        };
        if raised < record.tier {
            record.tier = raised;
            bring_deadline_forward(record, raised, at_us);
        }
        record
            .labels
            .insert("escalation".to_owned(), reason.to_owned());
        self.dirty = true;
    }

    /// The next version to publish, in `state`, at `at_us`.
    pub(crate) fn publish(&mut self, state: IncidentState, at_us: i64) -> Incident {
        self.record.version += 1;
        self.record.state = state;
        self.record.updated_us = at_us;
        self.dirty = false;
        self.record.clone()
    }
}

/// The smallest gap between successive window ends of one series (alert type on entity), or
/// the shortest window when no series has two windows. Hopping windows slide by less than
/// their length, and the slide is what "N healthy windows" counts.
fn window_step<'a>(members: impl IntoIterator<Item = &'a Alert>) -> i64 {
    let mut shortest = i64::MAX;
    let mut ends: BTreeMap<(&str, &str), Vec<i64>> = BTreeMap::new();
    for member in members {
        shortest = shortest.min((member.window_end_us - member.window_start_us).max(1));
        ends.entry((&member.alert_type, &member.entity))
            .or_default()
            .push(member.window_end_us);
    }
    for series in ends.values_mut() {
        series.sort_unstable();
        for pair in series.windows(2) {
            let gap = pair[1] - pair[0];
            if gap > 0 {
                shortest = shortest.min(gap);
            }
        }
    }
    if shortest == i64::MAX { 1 } else { shortest }
}

/// `record`'s deadline brought forward to `tier`'s, counted from `from_us`, when that is
/// sooner.
fn bring_deadline_forward(record: &mut Incident, tier: Tier, from_us: i64) {
    if let Some(within) = tier.act_within() {
        let due = from_us.saturating_add(i64::try_from(within.as_micros()).unwrap_or(i64::MAX));
        record.deadline_us = Some(record.deadline_us.map_or(due, |old| old.min(due)));
    }
}
