//! Which action works: a Beta posterior of the success rate of every (failure type, template),
//! sampled (Thompson sampling) to choose among alternatives and updated by verified outcomes.
//! It is part of the planner's state, which `opsloop run` keeps in its checkpoints.
//!
//! The random numbers come from a seeded xorshift generator, so a planner started with the
//! same seed and history makes the same choices.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Successes and failures seen for one arm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub successes: u64,
    pub failures: u64,
}

/// The learning state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Learner {
    /// "failure_type/template" -> record.
    records: BTreeMap<String, Record>,
    rng: u64,
}

impl Learner {
    /// An empty learner whose choices follow from `seed`.
    pub fn new(seed: u64) -> Self {
        Learner {
            records: BTreeMap::new(),
            rng: seed | 1,
        }
    }

    pub fn record_of(&self, failure_type: &str, template: &str) -> Record {
        self.records
            .get(&key(failure_type, template))
            .copied()
            .unwrap_or_default()
    }

    /// Counts a verified success or a failure (rolled back, failed) of `template` on
    /// `failure_type`.
    pub fn record(&mut self, failure_type: &str, template: &str, success: bool) {
        let record = self.records.entry(key(failure_type, template)).or_default();
        if success {
            record.successes += 1;
        } else {
            record.failures += 1;
        }
    }

    /// A draw from the posterior Beta(prior.0 + successes, prior.1 + failures).
    pub fn sample(&mut self, failure_type: &str, template: &str, prior: (f64, f64)) -> f64 {
        let record = self.record_of(failure_type, template);
        let alpha = prior.0 + record.successes as f64;
        let beta = prior.1 + record.failures as f64;
        let x = self.gamma(alpha);
        let y = self.gamma(beta);
        if x + y > 0.0 { x / (x + y) } else { 0.5 }
    }

    fn uniform(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        // 53 random bits in (0, 1).
        ((self.rng >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Marsaglia and Tsang's method; shape below 1 through the boost `U^(1/shape)`.
    fn gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            let u = self.uniform();
            return self.gamma(shape + 1.0) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = self.uniform();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }
}

fn key(failure_type: &str, template: &str) -> String {
    format!("{failure_type}/{template}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_follow_the_record() {
        let mut learner = Learner::new(7);
        for _ in 0..40 {
            learner.record("runaway", "cancel", false);
            learner.record("runaway", "terminate", true);
        }
        let draws = 2_000;
        let mut terminate_wins = 0;
        let mut mean = 0.0;
        for _ in 0..draws {
            let cancel = learner.sample("runaway", "cancel", (2.0, 1.0));
            let terminate = learner.sample("runaway", "terminate", (1.0, 1.0));
            mean += terminate / f64::from(draws);
            if terminate > cancel {
                terminate_wins += 1;
            }
        }
        // Beta(41, 1) has mean 41/42 = 0.976; Beta(2, 41) about 0.047.
        assert!((mean - 41.0 / 42.0).abs() < 0.01, "{mean}");
        assert!(terminate_wins > draws * 99 / 100, "{terminate_wins}");
    }

    #[test]
    fn the_state_survives_serialization() {
        let mut learner = Learner::new(1);
        learner.record("cache_stale", "pg.refresh_materialized_view", true);
        learner.record("cache_stale", "pg.refresh_materialized_view", false);
        let mut copy: Learner =
            serde_json::from_slice(&serde_json::to_vec(&learner).expect("json")).expect("back");
        assert_eq!(
            copy.record_of("cache_stale", "pg.refresh_materialized_view"),
            Record {
                successes: 1,
                failures: 1
            }
        );
        // The generator's position travels too: the copy draws what the original draws.
        assert_eq!(
            copy.sample("cache_stale", "pg.analyze", (1.0, 1.0)),
            learner.sample("cache_stale", "pg.analyze", (1.0, 1.0))
        );
    }
}
