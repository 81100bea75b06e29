//! Numerical parity with numpy/scipy: `tests/reference/generate.py` writes reference values into
//! `tests/fixtures/drift_reference.json`; every exact statistic must agree to 1e-9 relative.
//!
//! Tolerances: the exact statistics (PSI, Jensen-Shannon, Hellinger, L-infinity, chi-square
//! statistic and p-value, KS statistic, Wasserstein, normed Wasserstein) and the special
//! functions: 1e-9 relative. The KS p-value is asymptotic (`kstwobign`): it matches scipy's
//! `kstwobign.sf` to 1e-9, and scipy's default `ks_2samp` p-value (exact for small samples) to
//! within 0.05 absolute, which the last test checks and documents.

use opsloop_udfs::drift::binned::{chi_square, hellinger, jensen_shannon, l_infinity, psi};
use opsloop_udfs::drift::samples::{
    SortedSample, kolmogorov_smirnov, wasserstein, wasserstein_normed,
};
use opsloop_udfs::special;
use serde::Deserialize;

const RELATIVE: f64 = 1e-9;

#[derive(Deserialize)]
struct Reference {
    binned: Vec<BinnedCase>,
    samples: Vec<SampleCase>,
    special: Vec<SpecialPoint>,
}

#[derive(Deserialize)]
struct BinnedCase {
    name: String,
    reference: Vec<f64>,
    current: Vec<f64>,
    psi: f64,
    jensen_shannon: f64,
    hellinger: f64,
    l_infinity: f64,
    chi_square: f64,
    chi_square_p: f64,
    chi_square_dof: f64,
}

#[derive(Deserialize)]
struct SampleCase {
    name: String,
    reference: Vec<f64>,
    current: Vec<f64>,
    ks_statistic: f64,
    ks_p_asymptotic: f64,
    ks_p_scipy_default: f64,
    wasserstein: f64,
    wasserstein_normed: f64,
}

#[derive(Deserialize)]
struct SpecialPoint {
    function: String,
    x: f64,
    k: f64,
    value: f64,
}

fn reference() -> Reference {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/drift_reference.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture exists")).expect("parses")
}

#[track_caller]
fn assert_close(actual: f64, expected: f64, what: &str) {
    let scale = expected.abs().max(1e-300);
    let error = if expected == 0.0 {
        actual.abs()
    } else {
        (actual - expected).abs() / scale
    };
    assert!(
        error <= RELATIVE || (expected == 0.0 && actual.abs() < 1e-15),
        "{what}: {actual:e} vs scipy {expected:e} (relative error {error:e})"
    );
}

#[test]
fn binned_statistics_match_scipy() {
    let reference = reference();
    assert!(reference.binned.len() >= 10);
    for case in &reference.binned {
        let (r, c) = (&case.reference, &case.current);
        assert_close(psi(r, c), case.psi, &format!("{} psi", case.name));
        assert_close(
            jensen_shannon(r, c),
            case.jensen_shannon,
            &format!("{} js", case.name),
        );
        assert_close(
            hellinger(r, c),
            case.hellinger,
            &format!("{} hellinger", case.name),
        );
        assert_close(
            l_infinity(r, c),
            case.l_infinity,
            &format!("{} l_inf", case.name),
        );
        let chi = chi_square(r, c);
        assert_close(
            chi.statistic,
            case.chi_square,
            &format!("{} chi2", case.name),
        );
        assert_close(
            chi.p_value,
            case.chi_square_p,
            &format!("{} chi2 p", case.name),
        );
        assert_eq!(chi.dof, case.chi_square_dof, "{} dof", case.name);
    }
}

#[test]
fn sample_statistics_match_scipy() {
    let reference = reference();
    for case in &reference.samples {
        let a = SortedSample::new(case.reference.clone());
        let b = SortedSample::new(case.current.clone());
        let ks = kolmogorov_smirnov(&a, &b);
        assert_close(
            ks.statistic,
            case.ks_statistic,
            &format!("{} ks", case.name),
        );
        assert_close(
            ks.p_value,
            case.ks_p_asymptotic,
            &format!("{} ks p", case.name),
        );
        assert_close(
            wasserstein(&a, &b),
            case.wasserstein,
            &format!("{} w1", case.name),
        );
        assert_close(
            wasserstein_normed(&a, &b),
            case.wasserstein_normed,
            &format!("{} w1 normed", case.name),
        );
    }
}

#[test]
fn asymptotic_ks_p_value_stays_near_scipys_default() {
    for case in reference()
        .samples
        .iter()
        .filter(|c| c.reference.len() > 100)
    {
        let a = SortedSample::new(case.reference.clone());
        let b = SortedSample::new(case.current.clone());
        let p = kolmogorov_smirnov(&a, &b).p_value;
        assert!(
            (p - case.ks_p_scipy_default).abs() < 0.05,
            "{}: {p} vs ks_2samp {}",
            case.name,
            case.ks_p_scipy_default
        );
    }
}

#[test]
fn special_functions_match_scipy() {
    for point in reference().special {
        let actual = match point.function.as_str() {
            "chi_square_sf" => special::chi_square_sf(point.x, point.k),
            "kolmogorov_sf" => special::kolmogorov_sf(point.x),
            "student_t_quantile" => special::student_t_quantile(point.x, point.k),
            "normal_quantile" => special::normal_quantile(point.x),
            "normal_sf" => special::normal_sf(point.x),
            other => panic!("fixture names unknown function {other}"),
        };
        assert_close(
            actual,
            point.value,
            &format!("{}({}, {})", point.function, point.x, point.k),
        );
    }
}
