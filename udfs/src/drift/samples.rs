//! Drift statistics on raw samples: two-sample Kolmogorov-Smirnov and Wasserstein-1.
//!
//! Both walk two sorted samples once. [`SortedSample`] sorts a sample once so a stored reference
//! is compared with many windows without sorting it again.

use crate::special::kolmogorov_sf;

/// A sample sorted ascending, NaNs removed.
#[derive(Debug, Clone, PartialEq)]
pub struct SortedSample {
    values: Vec<f64>,
}

impl SortedSample {
    pub fn new(mut values: Vec<f64>) -> Self {
        values.retain(|v| !v.is_nan());
        values.sort_unstable_by(f64::total_cmp);
        SortedSample { values }
    }

    pub fn values(&self) -> &[f64] {
        &self.values
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Population standard deviation (ddof = 0).
    pub fn std_dev(&self) -> f64 {
        let n = self.values.len() as f64;
        if n == 0.0 {
            return 0.0;
        }
        let mean = self.values.iter().sum::<f64>() / n;
        (self.values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt()
    }
}

/// Result of a two-sample Kolmogorov-Smirnov test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KolmogorovSmirnov {
    /// sup |F_reference − F_current|.
    pub statistic: f64,
    /// Asymptotic two-sided p-value: `kstwobign.sf(sqrt(n·m/(n+m)) · D)`.
    pub p_value: f64,
}

/// Walks the merged order of two sorted samples, calling `step(a_cdf, b_cdf, next_value,
/// value)` after each distinct value with both empirical CDFs evaluated at it.
fn walk_cdfs(a: &[f64], b: &[f64], mut step: impl FnMut(f64, f64, f64, f64)) {
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let value = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => break,
        };
        while i < a.len() && a[i] <= value {
            i += 1;
        }
        while j < b.len() && b[j] <= value {
            j += 1;
        }
        let next = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => value,
        };
        step(i as f64 / n, j as f64 / m, next, value);
    }
}

/// Two-sample Kolmogorov-Smirnov statistic and asymptotic p-value on sorted samples.
pub fn kolmogorov_smirnov(reference: &SortedSample, current: &SortedSample) -> KolmogorovSmirnov {
    if reference.is_empty() || current.is_empty() {
        return KolmogorovSmirnov {
            statistic: 0.0,
            p_value: 1.0,
        };
    }
    let mut statistic = 0.0f64;
    walk_cdfs(reference.values(), current.values(), |fa, fb, _, _| {
        statistic = statistic.max((fa - fb).abs());
    });
    let (n, m) = (reference.len() as f64, current.len() as f64);
    let effective = n * m / (n + m);
    KolmogorovSmirnov {
        statistic,
        p_value: kolmogorov_sf(effective.sqrt() * statistic),
    }
}

/// Wasserstein-1 distance between the samples' empirical distributions, ∫ |F_a − F_b|, as
/// `scipy.stats.wasserstein_distance` computes it.
pub fn wasserstein(reference: &SortedSample, current: &SortedSample) -> f64 {
    if reference.is_empty() || current.is_empty() {
        return 0.0;
    }
    let mut distance = 0.0;
    walk_cdfs(
        reference.values(),
        current.values(),
        |fa, fb, next, value| {
            distance += (fa - fb).abs() * (next - value);
        },
    );
    distance
}

/// Smallest reference spread used to norm Wasserstein distances, as Evidently does.
pub const WASSERSTEIN_MIN_NORM: f64 = 0.001;

/// Wasserstein-1 divided by the reference's standard deviation (Evidently's "normed"
/// Wasserstein; drift at 0.1 by its default).
pub fn wasserstein_normed(reference: &SortedSample, current: &SortedSample) -> f64 {
    wasserstein(reference, current) / reference.std_dev().max(WASSERSTEIN_MIN_NORM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ks_of_disjoint_samples_is_one() {
        let a = SortedSample::new(vec![1.0, 2.0, 3.0]);
        let b = SortedSample::new(vec![10.0, 11.0]);
        assert_eq!(kolmogorov_smirnov(&a, &b).statistic, 1.0);
    }

    #[test]
    fn ties_are_stepped_together() {
        let a = SortedSample::new(vec![1.0, 1.0, 2.0, 2.0]);
        let b = SortedSample::new(vec![1.0, 2.0]);
        assert_eq!(kolmogorov_smirnov(&a, &b).statistic, 0.0);
        assert_eq!(wasserstein(&a, &b), 0.0);
    }

    #[test]
    fn wasserstein_of_a_shift_is_the_shift() {
        let a = SortedSample::new((0..100).map(f64::from).collect());
        let b = SortedSample::new((0..100).map(|v| f64::from(v) + 2.5).collect());
        assert!((wasserstein(&a, &b) - 2.5).abs() < 1e-12);
    }
}
