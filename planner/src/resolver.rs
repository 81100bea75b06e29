//! Settling the agents' proposals into one plan, with a summary of every decision:
//!
//! 1. compliance vetoes remove proposals;
//! 2. opposite scaling of one deployment (cost wants one replica fewer, reliability one more):
//!    in the preventive band cost wins, otherwise the agent protecting the service;
//! 3. alternatives (one agent, one goal): the learner's Thompson draw picks one;
//! 4. the same template with the same parameters on the same target is one action.

use std::collections::BTreeSet;
use std::fmt::Write;

use opsloop_actions::Action;
use opsloop_schemas::ops::{Incident, SeverityBand};

use crate::agents::{AgentKind, Proposal, Review};
use crate::learning::Learner;

/// A proposal that made it into the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub proposal: Proposal,
    /// Set by a reviewer (compliance) on top of the template's own policy.
    pub approval_reason: Option<String>,
}

/// The outcome of resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    pub accepted: Vec<Accepted>,
    /// What was decided and why, one sentence per decision.
    pub summary: String,
}

/// Settles `proposals` with `reviews` for `incident`; see the module docs.
pub fn resolve(
    incident: &Incident,
    proposals: Vec<Proposal>,
    reviews: &[Review],
    learner: &mut Learner,
) -> Resolution {
    let mut summary = String::new();
    let mut vetoed = BTreeSet::new();
    let mut approval: Vec<Option<String>> = vec![None; proposals.len()];
    for review in reviews {
        match review {
            Review::Veto { proposal, reason } => {
                if let Some(p) = proposals.get(*proposal) {
                    let _ = write!(
                        summary,
                        "compliance vetoed {} on {}: {reason}. ",
                        p.action.template(),
                        p.target
                    );
                    vetoed.insert(*proposal);
                }
            }
            Review::RequireApproval { proposal, reason } => {
                if let Some(slot) = approval.get_mut(*proposal) {
                    *slot = Some(reason.clone());
                }
            }
        }
    }
    let mut live: Vec<(usize, Proposal)> = proposals
        .into_iter()
        .enumerate()
        .filter(|(index, _)| !vetoed.contains(index))
        .collect();

    // Opposite scaling requests on one deployment.
    let band = SeverityBand::of(incident.severity);
    let scaling: Vec<usize> = (0..live.len())
        .filter(|&i| matches!(live[i].1.action, Action::Scale { .. }))
        .collect();
    let mut dropped = BTreeSet::new();
    for (position, &a) in scaling.iter().enumerate() {
        for &b in &scaling[position + 1..] {
            let (pa, pb) = (&live[a].1, &live[b].1);
            let same_deployment = deployment(pa) == deployment(pb);
            let opposite = delta(pa).signum() * delta(pb).signum() < 0;
            if !(same_deployment && opposite) || dropped.contains(&a) || dropped.contains(&b) {
                continue;
            }
            let cost_wins = band == SeverityBand::Preventive;
            let (winner, loser) = if (pa.agent == AgentKind::Cost) == cost_wins {
                (a, b)
            } else {
                (b, a)
            };
            let _ = write!(
                summary,
                "{} wanted {:+} and {} {:+} replicas: {} wins in the {band:?} band. ",
                live[a].1.agent,
                delta(&live[a].1),
                live[b].1.agent,
                delta(&live[b].1),
                live[winner].1.agent,
            );
            dropped.insert(loser);
        }
    }

    // Alternatives: one per (agent, goal), by Thompson sampling.
    let mut best_of_goal: Vec<(AgentKind, &'static str, usize, f64)> = Vec::new();
    for (i, (_, proposal)) in live.iter().enumerate() {
        if dropped.contains(&i) {
            continue;
        }
        let draw = learner.sample(
            &incident.failure_type,
            proposal.action.template().as_str(),
            proposal.prior,
        );
        match best_of_goal
            .iter_mut()
            .find(|(agent, goal, _, _)| *agent == proposal.agent && *goal == proposal.goal)
        {
            Some(best) => {
                let (loser, winner_draw) = if draw > best.3 {
                    let loser = best.2;
                    *best = (proposal.agent, proposal.goal, i, draw);
                    (loser, draw)
                } else {
                    (i, best.3)
                };
                let _ = write!(
                    summary,
                    "for {} chose {} over {} (sampled success {winner_draw:.2}). ",
                    proposal.goal,
                    live[best.2].1.action.template(),
                    live[loser].1.action.template(),
                );
                dropped.insert(loser);
            }
            None => best_of_goal.push((proposal.agent, proposal.goal, i, draw)),
        }
    }

    let mut accepted: Vec<Accepted> = Vec::new();
    for (i, (original, proposal)) in live.drain(..).enumerate() {
        if dropped.contains(&i) {
            continue;
        }
        let duplicate = accepted
            .iter()
            .any(|a| a.proposal.action == proposal.action && a.proposal.target == proposal.target);
        if !duplicate {
            accepted.push(Accepted {
                proposal,
                approval_reason: approval[original].clone(),
            });
        }
    }
    Resolution {
        accepted,
        summary: summary.trim_end().to_owned(),
    }
}

fn delta(proposal: &Proposal) -> i64 {
    match proposal.action {
        Action::Scale { delta, .. } => delta,
        _ => 0,
    }
}

fn deployment(proposal: &Proposal) -> Option<&str> {
    match &proposal.action {
        Action::Scale { deployment, .. } => Some(deployment.as_str()),
        _ => None,
    }
}
