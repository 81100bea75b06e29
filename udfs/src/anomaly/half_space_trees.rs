//! Streaming Half-Space Trees (Tan, Ting & Liu, 2011) for multivariate points, e.g. latency,
//! rows and CPU of one query at once.
//!
//! An ensemble of random trees splits the (min-max scaled) feature space at random midpoints.
//! Each node counts how many points of the last reference window fell in it ("mass"); a point in
//! a sparsely visited region scores high. Windows alternate: the latest window's counts become
//! the reference when it fills. State is fixed: trees × 2^(depth+1) nodes × 2 counts.

/// Tuning of a [`HalfSpaceTrees`] ensemble.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HalfSpaceTreesConfig {
    pub trees: usize,
    pub depth: u32,
    /// Points per window (ψ in the paper).
    pub window: usize,
    pub seed: u64,
}

impl Default for HalfSpaceTreesConfig {
    fn default() -> Self {
        HalfSpaceTreesConfig {
            trees: 25,
            depth: 8,
            window: 250,
            seed: 0x5eed,
        }
    }
}

#[derive(Debug, Clone)]
struct Tree {
    /// Per internal node (heap order): split dimension and split value in scaled space.
    splits: Vec<(usize, f64)>,
    reference: Vec<u32>,
    latest: Vec<u32>,
}

/// A half-space-trees ensemble over points of a fixed dimension; features are expected in
/// [0, 1] (scale them with known bounds first, see [`HalfSpaceTrees::with_bounds`]).
#[derive(Debug, Clone)]
pub struct HalfSpaceTrees {
    config: HalfSpaceTreesConfig,
    trees: Vec<Tree>,
    lower: Vec<f64>,
    upper: Vec<f64>,
    in_window: usize,
    windows_done: u64,
}

/// SplitMix64: a small deterministic generator so trees are reproducible without a dependency.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn unit(state: &mut u64) -> f64 {
    (next_random(state) >> 11) as f64 / (1u64 << 53) as f64
}

impl HalfSpaceTrees {
    /// An ensemble for points with `lower[i] <= x[i] <= upper[i]`.
    pub fn with_bounds(config: HalfSpaceTreesConfig, lower: Vec<f64>, upper: Vec<f64>) -> Self {
        let dimensions = lower.len().max(1);
        let mut rng = config.seed;
        let internal = (1usize << config.depth) - 1;
        let nodes = (1usize << (config.depth + 1)) - 1;
        let trees = (0..config.trees)
            .map(|_| {
                // Random work space per tree: each dimension's range is a random sub-range
                // around [0, 1], halved at each level of the tree as in the paper.
                let mut low: Vec<f64> = vec![0.0; dimensions];
                let mut high: Vec<f64> = vec![1.0; dimensions];
                for d in 0..dimensions {
                    let s = unit(&mut rng);
                    let extent = 2.0 * s.max(1.0 - s);
                    low[d] = s - extent;
                    high[d] = s + extent;
                }
                let mut splits = vec![(0, 0.0); internal];
                let mut bounds = vec![(low, high)];
                bounds.reserve(nodes);
                for (node, split) in splits.iter_mut().enumerate() {
                    let (low, high) = bounds[node].clone();
                    let dimension = (next_random(&mut rng) % dimensions as u64) as usize;
                    let mid = 0.5 * (low[dimension] + high[dimension]);
                    *split = (dimension, mid);
                    let (mut left_high, mut right_low) = (high.clone(), low.clone());
                    left_high[dimension] = mid;
                    right_low[dimension] = mid;
                    bounds.push((low, left_high));
                    bounds.push((right_low, high));
                }
                Tree {
                    splits,
                    reference: vec![0; nodes],
                    latest: vec![0; nodes],
                }
            })
            .collect();
        HalfSpaceTrees {
            config,
            trees,
            lower,
            upper,
            in_window: 0,
            windows_done: 0,
        }
    }

    fn scaled(&self, point: &[f64], d: usize) -> f64 {
        let span = self.upper[d] - self.lower[d];
        if span > 0.0 {
            (point[d] - self.lower[d]) / span
        } else {
            0.5
        }
    }

    /// Scores `point` against the reference window (higher = more anomalous, in [0, 1]) and then
    /// records it in the latest window. Scores are 0 until the first window completes.
    pub fn update(&mut self, point: &[f64]) -> f64 {
        let depth = self.config.depth;
        let internal = (1usize << depth) - 1;
        let scaled: Vec<f64> = (0..self.lower.len())
            .map(|d| self.scaled(point, d))
            .collect();
        let mut mass_score = 0.0;
        for tree in &mut self.trees {
            // Every node on the root-to-leaf path counts the point in the latest window; the
            // score stops at the leaf or at the first node whose reference mass is below 2.
            let mut node = 0;
            let mut scored = false;
            for level in 0..=depth {
                tree.latest[node] += 1;
                if !scored && (node >= internal || tree.reference[node] < 2) {
                    mass_score += tree.reference[node] as f64 * f64::from(1u32 << level);
                    scored = true;
                }
                if node >= internal {
                    break;
                }
                let (dimension, split) = tree.splits[node];
                node = if scaled[dimension] < split {
                    2 * node + 1
                } else {
                    2 * node + 2
                };
            }
        }
        self.in_window += 1;
        if self.in_window == self.config.window {
            for tree in &mut self.trees {
                std::mem::swap(&mut tree.reference, &mut tree.latest);
                tree.latest.iter_mut().for_each(|c| *c = 0);
            }
            self.in_window = 0;
            self.windows_done += 1;
        }
        if self.windows_done == 0 {
            return 0.0;
        }
        // Normalise: the largest possible mass score is every tree's root-to-leaf path holding
        // the whole window at maximum depth.
        let max_score =
            self.trees.len() as f64 * self.config.window as f64 * f64::from(1u32 << depth);
        (1.0 - mass_score / max_score).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolated_point_scores_above_the_dense_cluster() {
        let config = HalfSpaceTreesConfig {
            window: 200,
            ..HalfSpaceTreesConfig::default()
        };
        let mut trees = HalfSpaceTrees::with_bounds(config, vec![0.0, 0.0], vec![1.0, 1.0]);
        let mut state = 7u64;
        for _ in 0..400 {
            let x = 0.3 + 0.05 * unit(&mut state);
            let y = 0.6 + 0.05 * unit(&mut state);
            trees.update(&[x, y]);
        }
        let normal = trees.update(&[0.32, 0.62]);
        let outlier = trees.update(&[0.95, 0.05]);
        assert!(outlier > normal, "outlier {outlier} vs normal {normal}");
    }
}
