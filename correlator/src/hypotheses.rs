//! Root-cause hypotheses of an incident, ranked.
//!
//! Each member series (alert type on entity) is a candidate cause, scored by three signals:
//! its onset order (the earliest series is the likeliest origin; weight 0.5), how many of the
//! other series it leads by lead-lag correlation (weight 0.3), and whether it is the alert
//! type the pattern names as its known cause (weight 0.2). A pattern's known cause whose alert
//! type has not fired is still listed, on the pattern prior alone. Confidences are the scores
//! normalised to sum to 1.
//!
//! Lead-lag: each series is a set of window ends on a grid of the incident's window step; the
//! lag between two series is the shift (within [`MAX_LAG_STEPS`]) that maximises their overlap
//! `|A ∩ (B - k)| / sqrt(|A| |B|)`. A positive best shift means the first series leads.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

use opsloop_schemas::ops::{Alert, Hypothesis};

use crate::config::PatternConfig;

/// The largest lag, in window steps, the lead-lag search tries.
pub const MAX_LAG_STEPS: i64 = 10;

const ONSET_WEIGHT: f64 = 0.5;
const LEAD_WEIGHT: f64 = 0.3;
const PRIOR_WEIGHT: f64 = 0.2;

struct Series<'a> {
    alert_type: &'a str,
    entity: &'a str,
    detector: &'a str,
    onset_us: i64,
    /// Window ends as grid indices.
    points: BTreeSet<i64>,
}

/// The hypotheses for `members` (any order), most likely first.
pub(crate) fn rank(
    members: &[Alert],
    pattern: Option<&PatternConfig>,
    step_us: i64,
) -> Vec<Hypothesis> {
    let step_us = step_us.max(1);
    let mut by_series: BTreeMap<(&str, &str), Series<'_>> = BTreeMap::new();
    for member in members {
        let series = by_series
            .entry((member.alert_type.as_str(), member.entity.as_str()))
            .or_insert_with(|| Series {
                alert_type: &member.alert_type,
                entity: &member.entity,
                detector: &member.detector,
                onset_us: member.window_start_us,
                points: BTreeSet::new(),
            });
        series.onset_us = series.onset_us.min(member.window_start_us);
        series
            .points
            .insert(member.window_end_us.div_euclid(step_us));
    }
    let mut series: Vec<Series<'_>> = by_series.into_values().collect();
    series.sort_by(|a, b| {
        (a.onset_us, a.alert_type, a.entity).cmp(&(b.onset_us, b.alert_type, b.entity))
    });
    let n = series.len();
    let root = pattern.and_then(|p| p.root_alert_type.as_deref());

    let mut scored: Vec<(f64, i64, String, Hypothesis)> = Vec::with_capacity(n + 1);
    for (position, candidate) in series.iter().enumerate() {
        let mut leads = Vec::new();
        for (other_position, other) in series.iter().enumerate() {
            if other_position == position {
                continue;
            }
            if let Some((lag, overlap)) = best_lag(&candidate.points, &other.points)
                && lag > 0
            {
                leads.push((other, lag, overlap));
            }
        }
        let onset_score = (n - position) as f64 / n as f64;
        let lead_score = if n > 1 {
            leads.len() as f64 / (n - 1) as f64
        } else {
            0.0
        };
        let is_root = root == Some(candidate.alert_type);
        let score = ONSET_WEIGHT * onset_score
            + LEAD_WEIGHT * lead_score
            + if is_root { PRIOR_WEIGHT } else { 0.0 };

        let cause = match pattern {
            Some(pattern) if is_root => format!(
                "{} ({} on {})",
                pattern.cause, candidate.alert_type, candidate.entity
            ),
            Some(_) => format!(
                "{} on {} is the origin; the other alerts follow it",
                candidate.alert_type, candidate.entity
            ),
            None => format!(
                "{} on {}: detector {} fired in {} window(s)",
                candidate.alert_type,
                candidate.entity,
                candidate.detector,
                candidate.points.len()
            ),
        };
        let mut evidence = format!(
            "onset {} ({} of {n})",
            rfc3339(candidate.onset_us),
            ordinal(position + 1)
        );
        for (other, lag, overlap) in &leads {
            let _ = write!(
                evidence,
                "; leads {} on {} by {} (overlap {overlap:.2})",
                other.alert_type,
                other.entity,
                humantime::format_duration(Duration::from_micros(
                    u64::try_from(lag * step_us).unwrap_or(0)
                ))
            );
        }
        if is_root {
            evidence.push_str("; the pattern's known cause");
        }
        scored.push((
            score,
            candidate.onset_us,
            cause.clone(),
            Hypothesis {
                cause,
                confidence: score,
                evidence,
            },
        ));
    }
    if let Some(pattern) = pattern
        && let Some(root) = root
        && !series.iter().any(|s| s.alert_type == root)
    {
        scored.push((
            PRIOR_WEIGHT,
            i64::MAX,
            pattern.cause.clone(),
            Hypothesis {
                cause: pattern.cause.clone(),
                confidence: PRIOR_WEIGHT,
                evidence: format!(
                    "the pattern's known cause; its alert type {root} has not fired (yet)"
                ),
            },
        ));
    }
    let total: f64 = scored.iter().map(|(score, ..)| score).sum();
    scored.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then(a.1.cmp(&b.1))
            .then_with(|| a.2.cmp(&b.2))
    });
    scored
        .into_iter()
        .map(|(_, _, _, mut hypothesis)| {
            if total > 0.0 {
                hypothesis.confidence /= total;
            }
            hypothesis
        })
        .collect()
}

/// The shift `k` of `b` against `a` with the largest overlap, and that overlap; `None` when
/// no shift within [`MAX_LAG_STEPS`] overlaps. Ties go to the smallest `|k|`, then the positive.
fn best_lag(a: &BTreeSet<i64>, b: &BTreeSet<i64>) -> Option<(i64, f64)> {
    let norm = ((a.len() * b.len()) as f64).sqrt();
    let mut best: Option<(i64, usize)> = None;
    for magnitude in 0..=MAX_LAG_STEPS {
        for lag in [magnitude, -magnitude] {
            let hits = a.iter().filter(|&&i| b.contains(&(i + lag))).count();
            if hits > 0 && best.is_none_or(|(_, best_hits)| hits > best_hits) {
                best = Some((lag, hits));
            }
            if magnitude == 0 {
                break;
            }
        }
    }
    best.map(|(lag, hits)| (lag, hits as f64 / norm))
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, 11) | (2, 12) | (3, 13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

pub(crate) fn rfc3339(time_us: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_micros(u64::try_from(time_us).unwrap_or(0));
    humantime::format_rfc3339_seconds(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(indices: &[i64]) -> BTreeSet<i64> {
        indices.iter().copied().collect()
    }

    #[test]
    fn lag_is_the_shift_with_most_overlap() {
        // b repeats a two steps later: a leads b by 2.
        assert_eq!(
            best_lag(&points(&[1, 2, 5]), &points(&[3, 4, 7])),
            Some((2, 1.0))
        );
        assert_eq!(
            best_lag(&points(&[3, 4, 7]), &points(&[1, 2, 5])),
            Some((-2, 1.0))
        );
        assert_eq!(best_lag(&points(&[1]), &points(&[1])), Some((0, 1.0)));
        assert_eq!(best_lag(&points(&[1]), &points(&[100])), None);
    }

    #[test]
    fn ordinals() {
        let words: Vec<_> = [1, 2, 3, 4, 11, 12, 13, 21, 22].map(ordinal).into();
        assert_eq!(
            words,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd"
            ]
        );
    }
}
