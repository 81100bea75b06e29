//! The correlator's verdicts on executed actions, read from `ops.incidents`: after an action
//! runs, its incident says whether the alert condition stayed clear for the windows its
//! detectors need (`recovered_us`) or came back in windows that started after the action
//! (`recurred_us`). An action is VERIFIED only on a clear verdict.
//!
//! A verdict may arrive before anyone waits for it (an actuator restarting reads the recent
//! incidents again): it is kept, up to [`KEPT`] of them, the oldest dropped first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use opsloop_schemas::ops::{Incident, IncidentState};
use tokio::sync::watch;

use crate::keyed::lock;

/// Verdicts kept for actions nobody waits for (yet).
pub const KEPT: usize = 10_000;

/// What the incident said of an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The condition stayed clear from this event time on.
    Cleared { from_us: i64 },
    /// The alerts came back in a window that started at this event time.
    Recurred { at_us: i64 },
}

impl Verdict {
    /// The verdict `incident` carries about the action it names, if any: whichever came first
    /// when it carries both.
    pub fn of(incident: &Incident) -> Option<(&str, Verdict)> {
        let action_id = incident.action_id.as_deref()?;
        let verdict = match (incident.recovered_us, incident.recurred_us) {
            (Some(from_us), Some(at_us)) if from_us <= at_us => Verdict::Cleared { from_us },
            (_, Some(at_us)) => Verdict::Recurred { at_us },
            (Some(from_us), None) => Verdict::Cleared { from_us },
            (None, None) if incident.state == IncidentState::Resolved => Verdict::Cleared {
                from_us: incident.resolved_us.unwrap_or(incident.updated_us),
            },
            (None, None) => return None,
        };
        Some((action_id, verdict))
    }
}

/// Verdicts by action id, and the actions waiting for one.
#[derive(Debug, Default)]
pub struct Verdicts {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    known: HashMap<String, Verdict>,
    order: VecDeque<String>,
    waiting: HashMap<String, watch::Sender<Option<Verdict>>>,
}

impl Verdicts {
    /// Takes in an incident version; the first verdict on an action counts.
    pub fn observe(&self, incident: &Incident) {
        let Some((action_id, verdict)) = Verdict::of(incident) else {
            return;
        };
        let mut state = lock(&self.state);
        if state.known.contains_key(action_id) {
            return;
        }
        if let Some(waiter) = state.waiting.remove(action_id) {
            waiter.send_replace(Some(verdict));
        }
        state.known.insert(action_id.to_owned(), verdict);
        state.order.push_back(action_id.to_owned());
        while state.order.len() > KEPT {
            if let Some(oldest) = state.order.pop_front() {
                state.known.remove(&oldest);
            }
        }
    }

    /// How many actions wait for their verdict now.
    pub fn awaited(&self) -> usize {
        lock(&self.state).waiting.len()
    }

    /// The verdict on `action_id`, waiting up to `timeout` for it.
    pub async fn wait(&self, action_id: &str, timeout: Duration) -> Option<Verdict> {
        let mut receiver = {
            let mut state = lock(&self.state);
            if let Some(verdict) = state.known.get(action_id) {
                return Some(*verdict);
            }
            match state.waiting.get(action_id) {
                Some(sender) => sender.subscribe(),
                None => {
                    let (sender, receiver) = watch::channel(None);
                    state.waiting.insert(action_id.to_owned(), sender);
                    receiver
                }
            }
        };
        let verdict = tokio::time::timeout(timeout, receiver.wait_for(Option::is_some))
            .await
            .ok()
            .and_then(|seen| seen.ok().and_then(|v| *v));
        if verdict.is_none() {
            let mut state = lock(&self.state);
            state.waiting.remove(action_id);
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(action: &str, recovered: Option<i64>, recurred: Option<i64>) -> Incident {
        Incident {
            version: 3,
            state: IncidentState::Acknowledged,
            updated_us: 10,
            action_id: Some(action.into()),
            recovered_us: recovered,
            recurred_us: recurred,
            ..Incident::new("i", "db-1", "standalone", "cache_stale")
        }
    }

    #[tokio::test]
    async fn a_waiter_gets_the_first_verdict_early_or_late() {
        let verdicts = std::sync::Arc::new(Verdicts::default());
        verdicts.observe(&incident("early", Some(5), None));
        assert_eq!(
            verdicts.wait("early", Duration::from_millis(1)).await,
            Some(Verdict::Cleared { from_us: 5 })
        );
        let waiting = tokio::spawn({
            let verdicts = std::sync::Arc::clone(&verdicts);
            async move { verdicts.wait("late", Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        verdicts.observe(&incident("late", None, None));
        verdicts.observe(&incident("late", None, Some(7)));
        verdicts.observe(&incident("late", Some(9), Some(7)));
        assert_eq!(
            waiting.await.expect("task"),
            Some(Verdict::Recurred { at_us: 7 })
        );
        assert_eq!(verdicts.wait("none", Duration::from_millis(10)).await, None);
    }
}
