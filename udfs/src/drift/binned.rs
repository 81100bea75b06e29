//! Drift statistics on histograms that share the reference's bins.
//!
//! Inputs are counts (or weights) per bin, reference first; they are normalised to
//! probabilities inside each statistic.

use crate::special::chi_square_sf;

/// Bin edges fixed by a reference sample. `edges` are interior cut points in ascending order;
/// bin `i` holds values in `[edges[i-1], edges[i])` (numpy's `histogram` convention), with open
/// first and last bins, so there are `edges.len() + 1` bins and every value lands somewhere.
#[derive(Debug, Clone, PartialEq)]
pub struct Bins {
    edges: Vec<f64>,
}

impl Bins {
    /// Bins from interior edges; they are sorted and de-duplicated, NaNs dropped.
    pub fn from_edges(mut edges: Vec<f64>) -> Self {
        edges.retain(|e| !e.is_nan());
        edges.sort_by(f64::total_cmp);
        edges.dedup();
        Bins { edges }
    }

    /// `count` equal-frequency bins from the reference's quantiles.
    pub fn quantiles(reference: &[f64], count: usize) -> Self {
        let mut sorted: Vec<f64> = reference.iter().copied().filter(|v| !v.is_nan()).collect();
        sorted.sort_unstable_by(f64::total_cmp);
        if sorted.is_empty() || count < 2 {
            return Bins { edges: Vec::new() };
        }
        let edges = (1..count)
            .map(|i| {
                let rank = i * (sorted.len() - 1) / count;
                sorted[rank]
            })
            .collect();
        Bins::from_edges(edges)
    }

    /// `count` equal-width bins between `min` and `max`.
    pub fn uniform(min: f64, max: f64, count: usize) -> Self {
        let width = (max - min) / count.max(1) as f64;
        Bins::from_edges((1..count).map(|i| min + width * i as f64).collect())
    }

    pub fn edges(&self) -> &[f64] {
        &self.edges
    }

    pub fn len(&self) -> usize {
        self.edges.len() + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The bin `value` falls in.
    #[inline]
    pub fn index(&self, value: f64) -> usize {
        if self.edges.len() <= LINEAR_SCAN_EDGES {
            // Branch-free count of edges at or below the value; vectorises, unlike a search.
            self.edges
                .iter()
                .map(|&edge| usize::from(edge <= value))
                .sum()
        } else {
            self.edges.partition_point(|&edge| edge <= value)
        }
    }

    /// Counts per bin of `values` (NaNs skipped).
    pub fn histogram(&self, values: &[f64]) -> Vec<f64> {
        let mut counts = vec![0.0; self.len()];
        self.accumulate(values, &mut counts);
        counts
    }

    /// Adds `values` to existing counts, for streaming windows.
    pub fn accumulate(&self, values: &[f64], counts: &mut [f64]) {
        for &value in values {
            if !value.is_nan() {
                counts[self.index(value)] += 1.0;
            }
        }
    }
}

/// Up to this many edges a linear branch-free scan beats binary search.
const LINEAR_SCAN_EDGES: usize = 32;

fn normalised(counts: &[f64]) -> Vec<f64> {
    let total: f64 = counts.iter().sum();
    if total <= 0.0 {
        return vec![0.0; counts.len()];
    }
    counts.iter().map(|c| c / total).collect()
}

/// Probability floor for empty bins in PSI, as Evidently uses, so the log stays finite.
pub const PSI_EMPTY_BIN: f64 = 0.0001;

/// Population stability index: Σ (r − c) · ln(r / c) over bins, empty bins floored at
/// [`PSI_EMPTY_BIN`].
pub fn psi(reference: &[f64], current: &[f64]) -> f64 {
    let floor = |p: f64| if p == 0.0 { PSI_EMPTY_BIN } else { p };
    normalised(reference)
        .into_iter()
        .zip(normalised(current))
        .map(|(r, c)| {
            let (r, c) = (floor(r), floor(c));
            (r - c) * (r / c).ln()
        })
        .sum()
}

fn relative_entropy(p: f64, q: f64) -> f64 {
    if p > 0.0 && q > 0.0 {
        p * (p / q).ln()
    } else if p == 0.0 {
        0.0
    } else {
        f64::INFINITY
    }
}

/// Jensen-Shannon distance (natural log), the square root of the JS divergence, as
/// `scipy.spatial.distance.jensenshannon` computes it.
pub fn jensen_shannon(reference: &[f64], current: &[f64]) -> f64 {
    let p = normalised(reference);
    let q = normalised(current);
    let divergence: f64 = p
        .iter()
        .zip(&q)
        .map(|(&p, &q)| {
            let m = 0.5 * (p + q);
            relative_entropy(p, m) + relative_entropy(q, m)
        })
        .sum::<f64>()
        / 2.0;
    divergence.max(0.0).sqrt()
}

/// Hellinger distance, sqrt(½ Σ (√r − √c)²), in [0, 1].
pub fn hellinger(reference: &[f64], current: &[f64]) -> f64 {
    let sum: f64 = normalised(reference)
        .into_iter()
        .zip(normalised(current))
        .map(|(r, c)| (r.sqrt() - c.sqrt()).powi(2))
        .sum();
    (sum / 2.0).sqrt()
}

/// Largest absolute difference between bin probabilities (for categorical features).
pub fn l_infinity(reference: &[f64], current: &[f64]) -> f64 {
    normalised(reference)
        .into_iter()
        .zip(normalised(current))
        .map(|(r, c)| (r - c).abs())
        .fold(0.0, f64::max)
}

/// Result of a chi-square test of homogeneity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChiSquare {
    pub statistic: f64,
    pub p_value: f64,
    pub dof: f64,
}

/// Chi-square test that reference and current counts come from one distribution: the 2×k
/// contingency test `scipy.stats.chi2_contingency(..., correction=False)` runs. Bins empty in
/// both are left out, as they carry no information and would make an expected count zero.
pub fn chi_square(reference: &[f64], current: &[f64]) -> ChiSquare {
    let columns: Vec<(f64, f64)> = reference
        .iter()
        .zip(current)
        .map(|(&r, &c)| (r, c))
        .filter(|(r, c)| r + c > 0.0)
        .collect();
    let reference_total: f64 = columns.iter().map(|(r, _)| r).sum();
    let current_total: f64 = columns.iter().map(|(_, c)| c).sum();
    let total = reference_total + current_total;
    if columns.len() < 2 || reference_total == 0.0 || current_total == 0.0 {
        return ChiSquare {
            statistic: 0.0,
            p_value: 1.0,
            dof: 0.0,
        };
    }
    let statistic: f64 = columns
        .iter()
        .map(|&(r, c)| {
            let column = r + c;
            let expected_r = column * reference_total / total;
            let expected_c = column * current_total / total;
            (r - expected_r).powi(2) / expected_r + (c - expected_c).powi(2) / expected_c
        })
        .sum();
    let dof = (columns.len() - 1) as f64;
    ChiSquare {
        statistic,
        p_value: chi_square_sf(statistic, dof),
        dof,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_bin_whose_lower_edge_they_reach() {
        let bins = Bins::from_edges(vec![1.0, 2.0]);
        assert_eq!(bins.len(), 3);
        assert_eq!(bins.index(0.5), 0);
        assert_eq!(bins.index(1.0), 1);
        assert_eq!(bins.index(1.5), 1);
        assert_eq!(bins.index(2.0), 2);
        assert_eq!(bins.index(9.0), 2);
        assert_eq!(
            bins.histogram(&[0.0, 1.0, 1.1, 3.0, f64::NAN]),
            vec![1.0, 2.0, 1.0]
        );
        let many = Bins::from_edges((1..100).map(f64::from).collect());
        assert_eq!(many.index(1.0), 1);
        assert_eq!(many.index(99.5), 99);
    }

    #[test]
    fn quantile_bins_split_the_reference_evenly() {
        let reference: Vec<f64> = (0..1000).map(f64::from).collect();
        let bins = Bins::quantiles(&reference, 10);
        let counts = bins.histogram(&reference);
        assert_eq!(counts.len(), 10);
        assert!(
            counts.iter().all(|&c| (99.0..=101.0).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn chi_square_of_identical_proportions_is_zero() {
        let test = chi_square(&[10.0, 20.0, 30.0], &[20.0, 40.0, 60.0]);
        assert!(test.statistic.abs() < 1e-12);
        assert!((test.p_value - 1.0).abs() < 1e-12);
        assert_eq!(test.dof, 2.0);
    }
}
