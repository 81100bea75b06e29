//! Properties the drift statistics and mergeable states must have, on generated inputs:
//! identical distributions are at distance zero, symmetric statistics are symmetric, and a state
//! built from two halves equals the state built from the whole.

use opsloop_udfs::anomaly::quantile::QuantileSketch;
use opsloop_udfs::drift::binned::{Bins, chi_square, hellinger, jensen_shannon, l_infinity, psi};
use opsloop_udfs::drift::samples::{SortedSample, kolmogorov_smirnov, wasserstein};
use proptest::prelude::*;

fn counts() -> impl Strategy<Value = Vec<f64>> {
    proptest::collection::vec(0u32..1000, 2..20)
        .prop_filter("some mass", |c| c.iter().any(|&v| v > 0))
        .prop_map(|c| c.into_iter().map(f64::from).collect())
}

fn sample() -> impl Strategy<Value = Vec<f64>> {
    proptest::collection::vec(-1e6f64..1e6, 1..300)
}

proptest! {
    #[test]
    fn identical_histograms_are_at_distance_zero(c in counts(), scale in 1u32..5) {
        let scaled: Vec<f64> = c.iter().map(|v| v * f64::from(scale)).collect();
        prop_assert!(psi(&c, &scaled).abs() < 1e-12);
        prop_assert!(jensen_shannon(&c, &scaled) < 1e-7);
        prop_assert!(hellinger(&c, &scaled) < 1e-7);
        prop_assert!(l_infinity(&c, &scaled) < 1e-12);
        prop_assert!(chi_square(&c, &scaled).statistic < 1e-9);
    }

    #[test]
    fn symmetric_statistics_are_symmetric(a in counts(), b in counts()) {
        let n = a.len().min(b.len());
        let (a, b) = (&a[..n], &b[..n]);
        prop_assert!((psi(a, b) - psi(b, a)).abs() < 1e-9);
        prop_assert!((jensen_shannon(a, b) - jensen_shannon(b, a)).abs() < 1e-12);
        prop_assert!((hellinger(a, b) - hellinger(b, a)).abs() < 1e-12);
        prop_assert!((l_infinity(a, b) - l_infinity(b, a)).abs() < 1e-12);
        let (ab, ba) = (chi_square(a, b), chi_square(b, a));
        prop_assert!((ab.statistic - ba.statistic).abs() <= 1e-9 * ab.statistic.max(1.0));
    }

    #[test]
    fn sample_statistics_are_symmetric_and_zero_on_identical_samples(a in sample(), b in sample()) {
        let (sa, sb) = (SortedSample::new(a.clone()), SortedSample::new(b));
        prop_assert_eq!(kolmogorov_smirnov(&sa, &sb).statistic, kolmogorov_smirnov(&sb, &sa).statistic);
        let (w_ab, w_ba) = (wasserstein(&sa, &sb), wasserstein(&sb, &sa));
        prop_assert!((w_ab - w_ba).abs() <= 1e-9 * w_ab.max(1.0));
        let copy = SortedSample::new(a);
        prop_assert_eq!(kolmogorov_smirnov(&sa, &copy).statistic, 0.0);
        prop_assert_eq!(wasserstein(&sa, &copy), 0.0);
    }

    #[test]
    fn histograms_of_two_halves_add_up_to_the_whole(values in sample(), split in any::<prop::sample::Index>()) {
        let bins = Bins::quantiles(&values, 10);
        let at = split.index(values.len() + 1);
        let mut halves = bins.histogram(&values[..at]);
        bins.accumulate(&values[at..], &mut halves);
        prop_assert_eq!(halves, bins.histogram(&values));
    }

    #[test]
    fn merged_quantile_sketches_equal_the_whole(
        values in proptest::collection::vec(0f64..1e5, 1..500),
        split in any::<prop::sample::Index>(),
    ) {
        let at = split.index(values.len() + 1);
        let (mut left, mut right, mut whole) =
            (QuantileSketch::new(1000.0), QuantileSketch::new(1000.0), QuantileSketch::new(1000.0));
        values[..at].iter().for_each(|&v| left.record(v));
        values[at..].iter().for_each(|&v| right.record(v));
        values.iter().for_each(|&v| whole.record(v));
        left.merge(&right);
        prop_assert_eq!(left.buckets(), whole.buckets());
        for q in [0.5, 0.95, 0.99, 0.999] {
            prop_assert_eq!(left.quantile(q), whole.quantile(q));
        }
    }
}
