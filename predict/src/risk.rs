//! The failure-risk model: logistic regression over features of an entity's recent windows,
//! trained on the incident history (label: the entity had an incident within the horizon
//! after the windows), retrained on a schedule; every trained model carries a version.
//!
//! Features are standardized with the training set's means and deviations (kept in the model)
//! and fitted by full-batch gradient descent with L2 regularization: small, deterministic,
//! and enough for a handful of features per entity.

use serde::{Deserialize, Serialize};

/// One training example: features of recent windows, and whether an incident followed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub features: Vec<f64>,
    pub incident_followed: bool,
}

/// How to train.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Training {
    pub epochs: usize,
    pub learning_rate: f64,
    pub l2: f64,
}

impl Default for Training {
    fn default() -> Self {
        Training {
            epochs: 2_000,
            learning_rate: 0.5,
            l2: 1e-3,
        }
    }
}

/// A trained model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskModel {
    /// `risk-<training time µs>-<examples>`: which model scored a prediction.
    pub version: String,
    pub feature_names: Vec<String>,
    means: Vec<f64>,
    scales: Vec<f64>,
    weights: Vec<f64>,
    bias: f64,
}

impl RiskModel {
    /// Trains on `examples` (at least one of each label; `None` otherwise), at `now_us`.
    pub fn train(
        feature_names: &[&str],
        examples: &[Example],
        training: Training,
        now_us: i64,
    ) -> Option<Self> {
        let d = feature_names.len();
        let positives = examples.iter().filter(|e| e.incident_followed).count();
        if positives == 0
            || positives == examples.len()
            || examples.iter().any(|e| e.features.len() != d)
        {
            return None;
        }
        let n = examples.len() as f64;
        let means: Vec<f64> = (0..d)
            .map(|j| examples.iter().map(|e| e.features[j]).sum::<f64>() / n)
            .collect();
        let scales: Vec<f64> = (0..d)
            .map(|j| {
                let var = examples
                    .iter()
                    .map(|e| (e.features[j] - means[j]).powi(2))
                    .sum::<f64>()
                    / n;
                if var > 0.0 { var.sqrt() } else { 1.0 }
            })
            .collect();
        let standardized: Vec<Vec<f64>> = examples
            .iter()
            .map(|e| {
                (0..d)
                    .map(|j| (e.features[j] - means[j]) / scales[j])
                    .collect()
            })
            .collect();
        let mut weights = vec![0.0; d];
        let mut bias = 0.0;
        for _ in 0..training.epochs {
            let mut gradient = vec![0.0; d];
            let mut gradient_bias = 0.0;
            for (x, example) in standardized.iter().zip(examples) {
                let p = sigmoid(bias + dot(&weights, x));
                let error = p - f64::from(u8::from(example.incident_followed));
                for j in 0..d {
                    gradient[j] += error * x[j];
                }
                gradient_bias += error;
            }
            for j in 0..d {
                weights[j] -= training.learning_rate * (gradient[j] / n + training.l2 * weights[j]);
            }
            bias -= training.learning_rate * gradient_bias / n;
        }
        Some(RiskModel {
            version: format!("risk-{now_us}-{}", examples.len()),
            feature_names: feature_names.iter().map(|s| (*s).to_owned()).collect(),
            means,
            scales,
            weights,
            bias,
        })
    }

    /// The probability of an incident within the horizon.
    pub fn risk(&self, features: &[f64]) -> f64 {
        let x: Vec<f64> = features
            .iter()
            .zip(self.means.iter().zip(&self.scales))
            .map(|(v, (m, s))| (v - m) / s)
            .collect();
        sigmoid(self.bias + dot(&self.weights, &x))
    }
}

/// Precision and recall of predicting "incident" when risk >= `threshold`.
pub fn precision_recall(model: &RiskModel, held_out: &[Example], threshold: f64) -> (f64, f64) {
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    for example in held_out {
        let predicted = model.risk(&example.features) >= threshold;
        match (predicted, example.incident_followed) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => {}
        }
    }
    let precision = if tp + fp > 0 {
        tp as f64 / (tp + fp) as f64
    } else {
        0.0
    };
    let recall = if tp + fn_ > 0 {
        tp as f64 / (tp + fn_) as f64
    } else {
        0.0
    };
    (precision, recall)
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
