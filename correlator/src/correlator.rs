//! [`Correlator`]: alerts and event time in, incident versions and notifications out.
//!
//! Alerts join a group (equal `group_by` label values). A new alert waits in the group's
//! pending set; a flush lets it join the open incident that holds its type (or whose pattern
//! names it). Changes go out in flushes, as in Alertmanager: a new group's first flush comes
//! `group_wait` after its first alert, later ones at least `group_interval` apart. Two kinds of
//! alert do not wait for that rhythm: one no open incident would take is flushed `group_wait`
//! after its own window, so an unrelated problem of the same database is not held back by a
//! noisy incident; one whose severity reaches T1 is flushed at once when it opens an incident
//! or raises one to T1. A flush first lets pending alerts join open incidents, then matches
//! patterns over the pending alerts and the open standalone incidents (a standalone incident
//! whose type completes a pattern is promoted, keeping its id), then opens one standalone
//! incident per remaining alert type, then publishes a version of every changed incident. An
//! incident resolves `resolve_after_windows` window steps after its last alert; resolutions and
//! acknowledgements publish at once.
//!
//! The clock is event time: [`Correlator::advance`] with the engine's watermark. Every
//! action happens at its due time, not at the time `advance` was called, so the versions
//! depend only on the alerts and their order of arrival between flushes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use opsloop_schemas::ids::stable_id;
use opsloop_schemas::ops::{Alert, Incident, IncidentState, Tier};
use serde::{Deserialize, Serialize};

use crate::config::{CorrelatorConfig, PatternConfig};
use crate::error::CorrelatorError;
use crate::incident::{Added, OpenIncident, Verdict, Watch};
use crate::matcher::{all_match, label_value};

/// What the correlator produced in one call.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Emitted {
    /// New incident versions for `ops.incidents`, in the order they happened.
    pub versions: Vec<Incident>,
    /// Incidents to push to Alertmanager and webhooks: every unsilenced version, and repeats of
    /// unchanged open incidents every `repeat_interval`.
    pub notifications: Vec<Notification>,
}

impl Emitted {
    fn absorb(&mut self, other: Emitted) {
        self.versions.extend(other.versions);
        self.notifications.extend(other.notifications);
    }
}

/// One incident to notify about.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub incident: Incident,
    /// A reminder of an unchanged incident rather than a new version.
    pub repeat: bool,
}

/// Running totals, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorrelatorCounters {
    pub alerts: u64,
    /// Alerts with the id of a member or pending alert (re-emissions, replays).
    pub duplicates: u64,
    pub inhibited: u64,
    /// Alerts older than the last resolution of their type in their group.
    pub late: u64,
    pub silenced_notifications: u64,
    pub versions: u64,
}

/// Gauges of the correlator's state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CorrelatorStatus {
    pub groups: usize,
    pub open_incidents: usize,
    pub pending_alerts: usize,
    pub counters: CorrelatorCounters,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Group {
    /// The group's `group_by` values (entity left out; it is on the incident).
    labels: BTreeMap<String, String>,
    pending: Vec<Alert>,
    /// Earliest window end among the changes waiting for the next flush.
    changed_since_us: Option<i64>,
    /// Due time of the last flush; `None` while the group has had no open incident.
    last_flush_us: Option<i64>,
    incidents: Vec<OpenIncident>,
    /// Per alert type, the latest resolution of an incident holding it.
    resolved_until: BTreeMap<String, i64>,
}

/// The correlator's whole state, as saved in a checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    clock_us: Option<i64>,
    groups: HashMap<String, Group>,
    /// Active alerts per inhibition rule and `equal` values.
    inhibitors: HashMap<String, u64>,
    counters: CorrelatorCounters,
}

/// Groups alerts into incidents; see the module docs.
#[derive(Debug)]
pub struct Correlator {
    config: CorrelatorConfig,
    state: State,
    /// Next due time per group and the groups due then; derived from `state`.
    due: BTreeMap<i64, BTreeSet<String>>,
    due_of: HashMap<String, i64>,
    /// Open incident id -> group key.
    incident_groups: HashMap<String, String>,
}

enum Action {
    Flush,
    /// Drop a quiet group once its resolutions are too old to make alerts late.
    Forget,
    Resolve(usize),
    Repeat(usize),
    /// Publish the verdict on an incident's action.
    Judge(usize, Verdict),
}

impl Correlator {
    pub fn new(config: CorrelatorConfig) -> Result<Self, CorrelatorError> {
        config.validate()?;
        Ok(Correlator {
            config,
            state: State::default(),
            due: BTreeMap::new(),
            due_of: HashMap::new(),
            incident_groups: HashMap::new(),
        })
    }

    pub fn config(&self) -> &CorrelatorConfig {
        &self.config
    }

    /// Event time as far as the correlator has been told.
    pub fn clock_us(&self) -> Option<i64> {
        self.state.clock_us
    }

    pub fn status(&self) -> CorrelatorStatus {
        let groups = self.state.groups.values();
        CorrelatorStatus {
            groups: self.state.groups.len(),
            open_incidents: self.incident_groups.len(),
            pending_alerts: groups.map(|g| g.pending.len()).sum(),
            counters: self.state.counters,
        }
    }

    /// Open incidents, in no particular order.
    pub fn open_incidents(&self) -> impl Iterator<Item = &Incident> {
        self.state
            .groups
            .values()
            .flat_map(|g| g.incidents.iter().map(|i| &i.record))
    }

    /// Takes in one alert. Nothing is published until [`advance`](Self::advance) reaches a
    /// due time, so arrival order within a flush does not matter.
    pub fn observe(&mut self, alert: &Alert) {
        self.state.counters.alerts += 1;
        let key = self.group_key(alert);
        if self.is_inhibited(alert) {
            self.state.counters.inhibited += 1;
            return;
        }
        let group = self
            .state
            .groups
            .entry(key.clone())
            .or_insert_with(|| Group {
                labels: group_labels(&self.config, alert),
                ..Group::default()
            });
        if group
            .resolved_until
            .get(&alert.alert_type)
            .is_some_and(|&until| alert.window_end_us <= until)
        {
            self.state.counters.late += 1;
            return;
        }
        for incident in &mut group.incidents {
            if incident.watch.is_some()
                && incident.has_type(&alert.alert_type)
                && let Some(watch) = &mut incident.watch
            {
                watch.observe(alert, &incident.record);
            }
        }
        if let Some(pending) = group
            .pending
            .iter_mut()
            .find(|p| p.alert_id == alert.alert_id)
        {
            *pending = alert.clone();
            self.state.counters.duplicates += 1;
            return;
        }
        let member_of = group
            .incidents
            .iter_mut()
            .find(|i| i.has_member(&alert.alert_id));
        match member_of {
            // A re-emission after late data revises the member in place; a replay is nothing.
            Some(incident) => {
                self.state.counters.duplicates += 1;
                if incident.add(alert.clone()) == Added::Same {
                    return;
                }
            }
            None => {
                hold_inhibitors(&self.config, &mut self.state.inhibitors, alert, 1);
                group.pending.push(alert.clone());
            }
        }
        group.changed_since_us = Some(
            group
                .changed_since_us
                .map_or(alert.window_end_us, |t| t.min(alert.window_end_us)),
        );
        self.reschedule(&key);
    }

    /// Moves event time to `now_us` (never backwards) and performs everything due by then.
    pub fn advance(&mut self, now_us: i64) -> Emitted {
        let now_us = self
            .state
            .clock_us
            .map_or(now_us, |clock| clock.max(now_us));
        self.state.clock_us = Some(now_us);
        let mut emitted = Emitted::default();
        // One action at a time, earliest first across all groups (ties by group key), so the
        // versions come out in event-time order whatever the groups' history.
        while let Some((&due_us, keys)) = self.due.first_key_value() {
            if due_us > now_us {
                break;
            }
            let Some(key) = keys.first().cloned() else {
                self.due.remove(&due_us);
                continue;
            };
            self.unschedule(&key);
            emitted.absorb(self.run_next(&key, now_us));
            self.reschedule(&key);
        }
        emitted
    }

    /// Marks open incident `incident_id` acknowledged at `at_us` because action `action_id`
    /// ran then (an operator or an actuator took it), and starts judging that action: the
    /// incident publishes at once whether its alerts came back in windows after the action, or
    /// stayed clear for the windows its detectors need (`recovered_us`, `recurred_us`). `None`
    /// if it is not open or already acknowledged for that action.
    pub fn acknowledge(
        &mut self,
        incident_id: &str,
        action_id: &str,
        at_us: i64,
    ) -> Option<Incident> {
        let (key, incident) =
            open_incident(&mut self.state.groups, &self.incident_groups, incident_id)?;
        if incident.record.action_id.as_deref() == Some(action_id) {
            return None;
        }
        let at_us = at_us.max(incident.record.updated_us);
        let pattern = pattern_named(&self.config, &incident.record.pattern);
        incident.refresh(&self.config, pattern, at_us);
        incident.watch = Some(Watch::new(at_us, &incident.members));
        incident.record.action_id = Some(action_id.to_owned());
        incident.record.recovered_us = None;
        incident.record.recurred_us = None;
        let version = incident.publish(IncidentState::Acknowledged, at_us);
        self.state.counters.versions += 1;
        self.reschedule(&key);
        Some(version)
    }

    /// Raises open incident `incident_id` one tier at `at_us`, because `reason` (its fixes ran
    /// out of attempts): a new version, notified even if repeat_interval has not passed.
    pub fn escalate(&mut self, incident_id: &str, reason: &str, at_us: i64) -> Emitted {
        let mut emitted = Emitted::default();
        let Some((key, incident)) =
            open_incident(&mut self.state.groups, &self.incident_groups, incident_id)
        else {
            return emitted;
        };
        let at_us = at_us.max(incident.record.updated_us);
        let pattern = pattern_named(&self.config, &incident.record.pattern);
        incident.refresh(&self.config, pattern, at_us);
        incident.escalate(reason, at_us);
        let version = incident.publish(IncidentState::Updated, at_us);
        incident.last_notified_us = at_us;
        let silenced = is_silenced(&self.config, &incident.members, at_us);
        self.state.counters.versions += 1;
        self.reschedule(&key);
        self.notify(&mut emitted, &version, silenced, false);
        emitted.versions.push(version);
        emitted
    }

    /// The next action of group `key`, if it is due by `now_us`.
    fn run_next(&mut self, key: &str, now_us: i64) -> Emitted {
        let mut emitted = Emitted::default();
        if let Some((due_us, action)) = self.next_action(key).filter(|(due, _)| *due <= now_us) {
            let Some(mut group) = self.state.groups.remove(key) else {
                return emitted;
            };
            let versions = match action {
                Action::Flush => self.flush(key, &mut group, due_us),
                Action::Resolve(index) => self.resolve(&mut group, index, due_us),
                Action::Forget => Vec::new(),
                Action::Repeat(index) => {
                    let incident = &mut group.incidents[index];
                    incident.last_notified_us = due_us;
                    let silenced = is_silenced(&self.config, &incident.members, due_us);
                    self.notify(&mut emitted, &incident.record, silenced, true);
                    Vec::new()
                }
                Action::Judge(index, verdict) => self.judge(&mut group, index, verdict, due_us),
            };
            for (version, silenced) in versions {
                self.notify(&mut emitted, &version, silenced, false);
                emitted.versions.push(version);
                self.state.counters.versions += 1;
            }
            if !matches!(action, Action::Forget) {
                self.state.groups.insert(key.to_owned(), group);
            }
        }
        emitted
    }

    fn next_action(&self, key: &str) -> Option<(i64, Action)> {
        let group = self.state.groups.get(key)?;
        let mut next: Option<(i64, Action)> = None;
        let mut consider = |due: i64, action: Action| {
            if next.as_ref().is_none_or(|(best, _)| due < *best) {
                next = Some((due, action));
            }
        };
        if let Some(changed) = group.changed_since_us {
            let mut due = match group.last_flush_us {
                None => changed.saturating_add(micros(self.config.group_wait)),
                Some(last) => changed.max(last.saturating_add(micros(self.config.group_interval))),
            };
            if let Some(sooner) = group
                .pending
                .iter()
                .filter(|alert| !self.is_inhibited(alert))
                .filter_map(|alert| self.own_due_us(group, alert))
                .min()
            {
                due = due.min(sooner);
            }
            // Pending alerts may complete an open incident's pattern: correlate them before
            // that incident would resolve, even if that is earlier than group_interval allows.
            if !group.pending.is_empty()
                && let Some(resolving) = group
                    .incidents
                    .iter()
                    .filter(|i| i.record.version > 0)
                    .map(|i| resolve_due_us(&self.config, group, i))
                    .min()
            {
                due = due.min(resolving.max(changed));
            }
            consider(due, Action::Flush);
        }
        for (index, incident) in group.incidents.iter().enumerate() {
            if incident.record.version > 0 {
                if let Some((due, verdict)) = incident
                    .watch
                    .as_ref()
                    .and_then(|watch| watch.due(&incident.record))
                {
                    consider(due, Action::Judge(index, verdict));
                }
                consider(
                    resolve_due_us(&self.config, group, incident),
                    Action::Resolve(index),
                );
                consider(
                    incident
                        .last_notified_us
                        .saturating_add(micros(self.config.repeat_interval)),
                    Action::Repeat(index),
                );
            }
        }
        if group.incidents.is_empty() && group.pending.is_empty() {
            let last = group
                .resolved_until
                .values()
                .max()
                .copied()
                .unwrap_or(i64::MIN);
            consider(
                last.saturating_add(micros(self.config.group_interval)),
                Action::Forget,
            );
        }
        next
    }

    /// When `alert` must be correlated regardless of its group's rhythm: at once when it
    /// brings T1 to an incident that is not T1 yet (or opens one), `group_wait` after its window
    /// when no open incident would take it, so an unrelated problem of the same database does
    /// not wait out the `group_interval` of the group's other incidents. `None` when it only
    /// updates an incident and waits for the group's next flush.
    fn own_due_us(&self, group: &Group, alert: &Alert) -> Option<i64> {
        let home = home_of(&self.config, &group.incidents, &alert.alert_type)
            .map(|index| &group.incidents[index]);
        let critical = self.config.tier_of(alert.severity) == Tier::T1;
        match home {
            Some(incident) if critical && incident.record.tier != Tier::T1 => {
                Some(alert.window_end_us)
            }
            Some(_) => None,
            None if critical => Some(alert.window_end_us),
            None => Some(
                alert
                    .window_end_us
                    .saturating_add(micros(self.config.group_wait)),
            ),
        }
    }

    fn unschedule(&mut self, key: &str) {
        if let Some(old) = self.due_of.remove(key)
            && let Some(keys) = self.due.get_mut(&old)
        {
            keys.remove(key);
            if keys.is_empty() {
                self.due.remove(&old);
            }
        }
    }

    fn reschedule(&mut self, key: &str) {
        self.unschedule(key);
        if let Some((due, _)) = self.next_action(key) {
            self.due.entry(due).or_default().insert(key.to_owned());
            self.due_of.insert(key.to_owned(), due);
        }
    }

    /// Pending alerts into incidents; a version of every changed incident.
    fn flush(&mut self, key: &str, group: &mut Group, at_us: i64) -> Vec<(Incident, bool)> {
        let mut published = Vec::new();
        // A source that arrived after its target: the target is left out now.
        // Only what event time `at_us` knows: later alerts wait for the next flush, however
        // far the clock jumped.
        let (known, later): (Vec<Alert>, Vec<Alert>) = std::mem::take(&mut group.pending)
            .into_iter()
            .partition(|a| a.window_end_us <= at_us);
        group.pending = later;
        let mut remaining = Vec::with_capacity(known.len());
        for alert in known {
            hold_inhibitors(&self.config, &mut self.state.inhibitors, &alert, -1);
            if self.is_inhibited(&alert) {
                self.state.counters.inhibited += 1;
            } else {
                hold_inhibitors(&self.config, &mut self.state.inhibitors, &alert, 1);
                remaining.push(alert);
            }
        }
        remaining.sort_by(|a, b| {
            (a.window_start_us, &a.alert_id).cmp(&(b.window_start_us, &b.alert_id))
        });

        // Alerts whose type an open incident holds, or whose pattern it is, join it.
        let mut unmatched = Vec::new();
        for alert in remaining {
            match home_of(&self.config, &group.incidents, &alert.alert_type) {
                Some(index) => {
                    group.incidents[index].add(alert);
                }
                None => unmatched.push(alert),
            }
        }

        // Patterns over the unmatched alerts and the open standalone incidents.
        while let Some(pattern) = best_pattern(&self.config, group, &unmatched) {
            let types: BTreeSet<&str> = pattern.alert_types.iter().map(String::as_str).collect();
            let mut involved: Vec<usize> = (0..group.incidents.len())
                .filter(|&i| {
                    let incident = &group.incidents[i];
                    incident.is_standalone()
                        && incident.member_types().iter().all(|t| types.contains(t))
                })
                .collect();
            involved.sort_by_key(|&i| {
                let record = &group.incidents[i].record;
                (record.opened_us, record.incident_id.clone())
            });
            let (joining, rest): (Vec<Alert>, Vec<Alert>) = unmatched
                .into_iter()
                .partition(|a| types.contains(a.alert_type.as_str()));
            unmatched = rest;
            let target = match involved.first() {
                Some(&first) => {
                    let incident = &mut group.incidents[first];
                    incident.record.pattern.clone_from(&pattern.name);
                    incident
                        .record
                        .failure_type
                        .clone_from(&pattern.failure_type);
                    incident.dirty = true;
                    first
                }
                None => {
                    let first_alert = joining.first().map_or("", |a| a.alert_id.as_str());
                    let id = stable_id(&[
                        key.as_bytes(),
                        pattern.name.as_bytes(),
                        first_alert.as_bytes(),
                    ]);
                    group.incidents.push(OpenIncident::new(
                        id,
                        Some(pattern),
                        group.labels.clone(),
                    ));
                    group.incidents.len() - 1
                }
            };
            for alert in joining {
                group.incidents[target].add(alert);
            }
            // The other standalone incidents merge into the promoted one and close.
            let target_id = group.incidents[target].record.incident_id.clone();
            let mut merged_away: Vec<usize> = involved.iter().skip(1).copied().collect();
            merged_away.sort_unstable_by(|a, b| b.cmp(a));
            for merged in merged_away {
                let mut incident = group.incidents.remove(merged);
                let members = std::mem::take(&mut incident.members);
                let target = group
                    .incidents
                    .iter_mut()
                    .find(|i| i.record.incident_id == target_id);
                if let Some(target) = target {
                    for member in members.iter().cloned() {
                        target.add(member);
                    }
                }
                incident.members = members;
                incident
                    .record
                    .labels
                    .insert("merged_into".to_owned(), target_id.clone());
                self.incident_groups.remove(&incident.record.incident_id);
                if incident.record.version > 0 {
                    incident.refresh(&self.config, None, at_us);
                    let version = incident.publish(IncidentState::Resolved, at_us);
                    let silenced = is_silenced(&self.config, &incident.members, at_us);
                    published.push((version, silenced));
                }
            }
        }

        // What is left: one standalone incident per alert type.
        let mut by_type: BTreeMap<String, Vec<Alert>> = BTreeMap::new();
        for alert in unmatched {
            by_type
                .entry(alert.alert_type.clone())
                .or_default()
                .push(alert);
        }
        for (_, alerts) in by_type {
            let first_alert = alerts.first().map_or("", |a| a.alert_id.as_str());
            let id = stable_id(&[key.as_bytes(), b"standalone", first_alert.as_bytes()]);
            let mut incident = OpenIncident::new(id, None, group.labels.clone());
            for alert in alerts {
                incident.add(alert);
            }
            group.incidents.push(incident);
        }

        for incident in &mut group.incidents {
            if !incident.dirty {
                continue;
            }
            let pattern = pattern_named(&self.config, &incident.record.pattern);
            incident.refresh(&self.config, pattern, at_us);
            let state = if incident.record.version == 0 {
                IncidentState::Open
            } else {
                IncidentState::Updated
            };
            let version = incident.publish(state, at_us);
            incident.last_notified_us = at_us;
            self.incident_groups
                .insert(version.incident_id.clone(), key.to_owned());
            let silenced = is_silenced(&self.config, &incident.members, at_us);
            published.push((version, silenced));
        }
        group.changed_since_us = group.pending.iter().map(|a| a.window_end_us).min();
        // A flush that left no incident open (everything inhibited) does not start the
        // group_interval rhythm: the next alert waits group_wait as in a new group.
        group.last_flush_us = (!group.incidents.is_empty()).then_some(at_us);
        published
    }

    fn resolve(&mut self, group: &mut Group, index: usize, at_us: i64) -> Vec<(Incident, bool)> {
        let mut incident = group.incidents.remove(index);
        for member in &incident.members {
            hold_inhibitors(&self.config, &mut self.state.inhibitors, member, -1);
            let until = group
                .resolved_until
                .entry(member.alert_type.clone())
                .or_insert(at_us);
            *until = (*until).max(at_us);
        }
        self.incident_groups.remove(&incident.record.incident_id);
        let pattern = pattern_named(&self.config, &incident.record.pattern);
        incident.refresh(&self.config, pattern, at_us);
        incident.record.resolved_us = Some(at_us);
        let version = incident.publish(IncidentState::Resolved, at_us);
        if group.incidents.is_empty() {
            group.last_flush_us = None;
        }
        let silenced = is_silenced(&self.config, &incident.members, at_us);
        vec![(version, silenced)]
    }

    /// The verdict on incident `index`'s action, published at `at_us`.
    fn judge(
        &mut self,
        group: &mut Group,
        index: usize,
        verdict: Verdict,
        at_us: i64,
    ) -> Vec<(Incident, bool)> {
        let incident = &mut group.incidents[index];
        let Some(watch) = incident.watch.as_ref() else {
            return Vec::new();
        };
        let state = match verdict {
            Verdict::Recurred => {
                incident.record.recurred_us = watch.recurred.map(|(start, _)| start);
                IncidentState::Updated
            }
            Verdict::Cleared => {
                incident.record.recovered_us = Some(watch.latest_boundary().unwrap_or(at_us));
                IncidentState::Acknowledged
            }
        };
        let pattern = pattern_named(&self.config, &incident.record.pattern);
        incident.refresh(&self.config, pattern, at_us);
        let version = incident.publish(state, at_us);
        let silenced = is_silenced(&self.config, &incident.members, at_us);
        vec![(version, silenced)]
    }

    /// A notification of `incident`, or a count of it when `silenced`.
    fn notify(&mut self, emitted: &mut Emitted, incident: &Incident, silenced: bool, repeat: bool) {
        if silenced {
            self.state.counters.silenced_notifications += 1;
        } else {
            emitted.notifications.push(Notification {
                incident: incident.clone(),
                repeat,
            });
        }
    }

    fn group_key(&self, alert: &Alert) -> String {
        let values: Vec<&[u8]> = self
            .config
            .group_by
            .iter()
            .map(|label| label_value(alert, label).as_bytes())
            .collect();
        stable_id(&values)
    }

    fn is_inhibited(&self, alert: &Alert) -> bool {
        self.config
            .inhibit_rules
            .iter()
            .enumerate()
            .any(|(index, rule)| {
                all_match(&rule.target_matchers, alert)
                    && self
                        .state
                        .inhibitors
                        .get(&inhibitor_key(index, &rule.equal, alert))
                        .is_some_and(|&count| count > 0)
            })
    }

    /// The saved state, for a checkpoint.
    pub fn snapshot(&self) -> Result<Vec<u8>, CorrelatorError> {
        serde_json::to_vec(&self.state)
            .map_err(|error| CorrelatorError::Snapshot(error.to_string()))
    }

    /// A correlator resumed from [`snapshot`](Self::snapshot) bytes.
    pub fn restore(config: CorrelatorConfig, snapshot: &[u8]) -> Result<Self, CorrelatorError> {
        let mut correlator = Correlator::new(config)?;
        correlator.state = serde_json::from_slice(snapshot)
            .map_err(|error| CorrelatorError::Snapshot(error.to_string()))?;
        let keys: Vec<String> = correlator.state.groups.keys().cloned().collect();
        for key in keys {
            for incident in &correlator.state.groups[&key].incidents {
                if incident.record.version > 0 {
                    correlator
                        .incident_groups
                        .insert(incident.record.incident_id.clone(), key.clone());
                }
            }
            correlator.reschedule(&key);
        }
        Ok(correlator)
    }
}

/// The pattern with the most member types present among `unmatched` alerts and the group's
/// open standalone incidents (at least its `min_types`); the first listed on a tie.
fn best_pattern<'c>(
    config: &'c CorrelatorConfig,
    group: &Group,
    unmatched: &[Alert],
) -> Option<&'c PatternConfig> {
    let mut present: BTreeSet<&str> = unmatched.iter().map(|a| a.alert_type.as_str()).collect();
    for incident in group.incidents.iter().filter(|i| i.is_standalone()) {
        present.extend(incident.member_types());
    }
    let mut best: Option<(&PatternConfig, usize)> = None;
    for pattern in &config.patterns {
        let matched = pattern
            .alert_types
            .iter()
            .filter(|t| present.contains(t.as_str()))
            .count();
        // Only worth it when an unmatched alert takes part (else nothing changes).
        let new = unmatched
            .iter()
            .any(|a| pattern.alert_types.contains(&a.alert_type));
        if new && matched >= pattern.min_types && best.is_none_or(|(_, count)| matched > count) {
            best = Some((pattern, matched));
        }
    }
    best.map(|(pattern, _)| pattern)
}

/// When `incident` resolves if no further alert arrives: its pending alerts of member types
/// count as seen, so an update held back by `group_interval` does not let it resolve.
fn resolve_due_us(config: &CorrelatorConfig, group: &Group, incident: &OpenIncident) -> i64 {
    let pending_end = group
        .pending
        .iter()
        .filter(|a| incident.has_type(&a.alert_type))
        .map(|a| a.window_end_us)
        .max();
    incident.resolve_due_us(config, pending_end)
}

/// Whether a silence active at `at_us` matches every member of an incident.
fn is_silenced(config: &CorrelatorConfig, members: &[Alert], at_us: i64) -> bool {
    config.silences.iter().any(|silence| {
        (silence.starts_us..silence.ends_us).contains(&at_us)
            && !members.is_empty()
            && members.iter().all(|m| all_match(&silence.matchers, m))
    })
}

/// The open incident an alert of `alert_type` joins: the one holding that type, else one
/// whose pattern names it.
fn home_of(
    config: &CorrelatorConfig,
    incidents: &[OpenIncident],
    alert_type: &str,
) -> Option<usize> {
    incidents
        .iter()
        .position(|i| i.has_type(alert_type))
        .or_else(|| {
            incidents.iter().position(|i| {
                pattern_named(config, &i.record.pattern)
                    .is_some_and(|p| p.alert_types.iter().any(|t| t == alert_type))
            })
        })
}

fn pattern_named<'c>(config: &'c CorrelatorConfig, name: &str) -> Option<&'c PatternConfig> {
    config.patterns.iter().find(|p| p.name == name)
}

fn group_labels(config: &CorrelatorConfig, alert: &Alert) -> BTreeMap<String, String> {
    config
        .group_by
        .iter()
        .filter(|label| label.as_str() != "entity")
        .filter_map(|label| {
            let value = label_value(alert, label);
            (!value.is_empty()).then(|| (label.clone(), value.to_owned()))
        })
        .collect()
}

fn inhibitor_key(rule: usize, equal: &[String], alert: &Alert) -> String {
    let rule = rule.to_le_bytes();
    let mut fields: Vec<&[u8]> = vec![&rule];
    fields.extend(
        equal
            .iter()
            .map(|label| label_value(alert, label).as_bytes()),
    );
    stable_id(&fields)
}

/// Counts `alert` in (`delta` 1) or out (-1) of every rule it is a source of.
fn hold_inhibitors(
    config: &CorrelatorConfig,
    inhibitors: &mut HashMap<String, u64>,
    alert: &Alert,
    delta: i64,
) {
    for (index, rule) in config.inhibit_rules.iter().enumerate() {
        if !all_match(&rule.source_matchers, alert) {
            continue;
        }
        let key = inhibitor_key(index, &rule.equal, alert);
        let count = inhibitors.entry(key.clone()).or_insert(0);
        *count = count.saturating_add_signed(delta);
        if *count == 0 {
            inhibitors.remove(&key);
        }
    }
}

fn micros(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// Open incident `incident_id` and the key of its group.
fn open_incident<'a>(
    groups: &'a mut HashMap<String, Group>,
    incident_groups: &HashMap<String, String>,
    incident_id: &str,
) -> Option<(String, &'a mut OpenIncident)> {
    let key = incident_groups.get(incident_id)?.clone();
    let incident = groups
        .get_mut(&key)?
        .incidents
        .iter_mut()
        .find(|i| i.record.incident_id == incident_id)?;
    Some((key, incident))
}
