//! Multivariate drift by PCA reconstruction error, as NannyML's data reconstruction drift
//! calculator does it: standardise features on the reference, keep the principal components that
//! explain a share of the reference's variance (65% by default), and measure how far current rows
//! land from their reconstruction. Drift in the joint distribution — including changed
//! correlations that no single feature shows — raises the mean error.

#![allow(
    clippy::needless_range_loop,
    reason = "matrix arithmetic reads clearer with explicit indices"
)]

/// NannyML's default share of variance the kept components explain.
pub const DEFAULT_VARIANCE_EXPLAINED: f64 = 0.65;

/// A PCA model fitted on reference rows.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconstructionModel {
    means: Vec<f64>,
    scales: Vec<f64>,
    /// Kept components, each a unit vector of feature weights.
    components: Vec<Vec<f64>>,
}

impl ReconstructionModel {
    /// Fits on reference rows (all of one width); `None` with fewer than two rows.
    pub fn fit(reference: &[Vec<f64>], variance_explained: f64) -> Option<Self> {
        let width = reference.first()?.len();
        if reference.len() < 2 || width == 0 || reference.iter().any(|r| r.len() != width) {
            return None;
        }
        let n = reference.len() as f64;
        let means: Vec<f64> = (0..width)
            .map(|j| reference.iter().map(|r| r[j]).sum::<f64>() / n)
            .collect();
        let scales: Vec<f64> = (0..width)
            .map(|j| {
                let var = reference
                    .iter()
                    .map(|r| (r[j] - means[j]).powi(2))
                    .sum::<f64>()
                    / n;
                if var > 0.0 { var.sqrt() } else { 1.0 }
            })
            .collect();
        let mut covariance = vec![vec![0.0; width]; width];
        for row in reference {
            let z: Vec<f64> = (0..width)
                .map(|j| (row[j] - means[j]) / scales[j])
                .collect();
            for a in 0..width {
                for b in a..width {
                    covariance[a][b] += z[a] * z[b] / (n - 1.0);
                }
            }
        }
        for a in 0..width {
            for b in 0..a {
                covariance[a][b] = covariance[b][a];
            }
        }
        let (values, vectors) = symmetric_eigen(covariance);
        let mut order: Vec<usize> = (0..width).collect();
        order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
        let total: f64 = values.iter().map(|v| v.max(0.0)).sum();
        let mut explained = 0.0;
        let mut components = Vec::new();
        for index in order {
            components.push((0..width).map(|row| vectors[row][index]).collect());
            explained += values[index].max(0.0);
            if total <= 0.0 || explained / total >= variance_explained {
                break;
            }
        }
        Some(ReconstructionModel {
            means,
            scales,
            components,
        })
    }

    pub fn component_count(&self) -> usize {
        self.components.len()
    }

    /// Euclidean distance between a standardised row and its reconstruction.
    pub fn row_error(&self, row: &[f64]) -> f64 {
        let z: Vec<f64> = row
            .iter()
            .zip(self.means.iter().zip(&self.scales))
            .map(|(x, (m, s))| (x - m) / s)
            .collect();
        let mut reconstructed = vec![0.0; z.len()];
        for component in &self.components {
            let projection: f64 = component.iter().zip(&z).map(|(c, x)| c * x).sum();
            for (r, c) in reconstructed.iter_mut().zip(component) {
                *r += projection * c;
            }
        }
        z.iter()
            .zip(&reconstructed)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt()
    }

    /// Mean reconstruction error over rows (the chunk's drift statistic).
    pub fn mean_error(&self, rows: &[Vec<f64>]) -> f64 {
        if rows.is_empty() {
            return 0.0;
        }
        rows.iter().map(|r| self.row_error(r)).sum::<f64>() / rows.len() as f64
    }
}

/// Eigen-decomposition of a symmetric matrix by cyclic Jacobi rotations: eigenvalues and the
/// matrix whose columns are the eigenvectors.
fn symmetric_eigen(mut a: Vec<Vec<f64>>) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = a.len();
    let mut v: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
        .collect();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum();
        if off < 1e-22 {
            break;
        }
        for p in 0..n {
            for q in (p + 1)..n {
                if a[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k][p], a[k][q]);
                    a[k][p] = c * akp - s * akq;
                    a[k][q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p][k], a[q][k]);
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
                for row in v.iter_mut() {
                    let (vkp, vkq) = (row[p], row[q]);
                    row[p] = c * vkp - s * vkq;
                    row[q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i][i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigen_decomposition_reconstructs_the_matrix() {
        let m = vec![
            vec![4.0, 1.0, 0.5],
            vec![1.0, 3.0, 0.2],
            vec![0.5, 0.2, 1.0],
        ];
        let (values, vectors) = symmetric_eigen(m.clone());
        for i in 0..3 {
            for j in 0..3 {
                let rebuilt: f64 = (0..3)
                    .map(|k| vectors[i][k] * values[k] * vectors[j][k])
                    .sum();
                assert!((rebuilt - m[i][j]).abs() < 1e-10);
            }
        }
    }

    #[test]
    fn broken_correlation_raises_reconstruction_error() {
        // Two strongly correlated features in the reference; the current window breaks the link
        // while keeping each feature's own distribution.
        let reference: Vec<Vec<f64>> = (0..500)
            .map(|i| {
                let x = ((i * 37) % 101) as f64 / 10.0;
                vec![x, 2.0 * x + ((i * 13) % 7) as f64 * 0.01]
            })
            .collect();
        let model = ReconstructionModel::fit(&reference, DEFAULT_VARIANCE_EXPLAINED).expect("fit");
        assert_eq!(model.component_count(), 1);
        let current: Vec<Vec<f64>> = (0..500)
            .map(|i| {
                let x = ((i * 37) % 101) as f64 / 10.0;
                let y = 2.0 * (((i * 53) % 101) as f64 / 10.0);
                vec![x, y]
            })
            .collect();
        let baseline = model.mean_error(&reference);
        let drifted = model.mean_error(&current);
        assert!(drifted > 10.0 * baseline, "{drifted} vs {baseline}");
    }
}
