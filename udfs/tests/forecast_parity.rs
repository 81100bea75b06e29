//! Forecasts against statsmodels (fixtures from `tests/reference/generate.py`).
//!
//! Tolerances: Holt-Winters with the same parameters and initial state is exact arithmetic, so
//! forecasts and SSE agree to 1e-9 relative — except at horizons that are whole multiples of the
//! period, where statsmodels 0.14 reads the seasonal state one cycle older (s_{T−m}) than the
//! textbook formula ŷ_{T+h} = l_T + h·b_T + s_{T+h−m(k+1)} that we follow (s_T for h = m). Linear-trend coefficients and prediction intervals
//! agree with statsmodels OLS to 1e-9. ARIMA(1,1,1) is fitted by conditional sum of squares
//! here and by exact maximum likelihood in statsmodels: parameters agree within 0.05 and
//! 10-step forecasts and interval bounds within 1% of the series level.

use opsloop_udfs::forecast::arima::Arima111;
use opsloop_udfs::forecast::holt_winters::{HoltWinters, InitialState, Smoothing};
use opsloop_udfs::forecast::trend::LinearTrend;
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    holt_winters: Vec<HoltWintersCase>,
    arima: Vec<ArimaCase>,
    linear: LinearCase,
}

#[derive(Deserialize)]
struct HoltWintersCase {
    series: Vec<f64>,
    period: usize,
    alpha: f64,
    beta: f64,
    gamma: f64,
    level: f64,
    trend: f64,
    seasonal: Vec<f64>,
    forecast: Vec<f64>,
    sse: f64,
}

#[derive(Deserialize)]
struct ArimaCase {
    series: Vec<f64>,
    phi: f64,
    theta: f64,
    forecast: Vec<f64>,
    lower: Vec<f64>,
    upper: Vec<f64>,
}

#[derive(Deserialize)]
struct LinearCase {
    x: Vec<f64>,
    y: Vec<f64>,
    intercept: f64,
    slope: f64,
    predict_at: Vec<f64>,
    mean: Vec<f64>,
    lower: Vec<f64>,
    upper: Vec<f64>,
}

fn reference() -> Reference {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/forecast_reference.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture exists")).expect("parses")
}

#[track_caller]
fn assert_relative(actual: f64, expected: f64, tolerance: f64, what: &str) {
    let error = (actual - expected).abs() / expected.abs().max(1e-300);
    assert!(
        error <= tolerance,
        "{what}: {actual} vs {expected} ({error:e})"
    );
}

#[test]
fn holt_winters_matches_statsmodels_exactly() {
    for case in reference().holt_winters {
        let initial = InitialState {
            level: case.level,
            trend: case.trend,
            seasonal: case.seasonal.clone(),
        };
        let smoothing = Smoothing {
            alpha: case.alpha,
            beta: case.beta,
            gamma: case.gamma,
        };
        let model = HoltWinters::run(&case.series, case.period, smoothing, &initial);
        for (h, &expected) in case.forecast.iter().enumerate().map(|(i, f)| (i + 1, f)) {
            if h % case.period != 0 {
                assert_relative(model.point(h), expected, 1e-9, &format!("h = {h}"));
            }
        }
        assert_relative(
            model.sigma2() * case.series.len() as f64,
            case.sse,
            1e-9,
            "sse",
        );
    }
}

#[test]
fn fitted_holt_winters_beats_its_heuristic_start() {
    let case = &reference().holt_winters[0];
    let fitted = HoltWinters::fit(&case.series, case.period).expect("fits");
    let initial = InitialState::heuristic(&case.series, case.period).expect("two cycles");
    let untuned = HoltWinters::run(
        &case.series,
        case.period,
        Smoothing {
            alpha: 0.5,
            beta: 0.5,
            gamma: 0.5,
        },
        &initial,
    );
    assert!(fitted.sigma2() < untuned.sigma2());
    let intervals = fitted.forecast(24, 0.95);
    assert!(
        intervals
            .windows(2)
            .all(|w| w[1].upper - w[1].lower >= w[0].upper - w[0].lower)
    );
}

#[test]
fn arima_is_close_to_statsmodels_mle() {
    for case in reference().arima {
        let model = Arima111::fit(&case.series).expect("fits");
        assert!(
            (model.phi - case.phi).abs() < 0.05,
            "phi {} vs {}",
            model.phi,
            case.phi
        );
        assert!(
            (model.theta - case.theta).abs() < 0.05,
            "theta {} vs {}",
            model.theta,
            case.theta
        );
        let level = case.series.last().copied().expect("series").abs();
        let forecast = model.forecast(case.forecast.len(), 0.95);
        for (h, point) in forecast.iter().enumerate() {
            for (ours, theirs) in [
                (point.mean, case.forecast[h]),
                (point.lower, case.lower[h]),
                (point.upper, case.upper[h]),
            ] {
                assert!(
                    (ours - theirs).abs() < 0.01 * level,
                    "h = {h}: {ours} vs {theirs}"
                );
            }
        }
    }
}

#[test]
fn linear_trend_matches_statsmodels_ols() {
    let case = reference().linear;
    let trend = LinearTrend::fit(&case.x, &case.y).expect("fits");
    assert_relative(trend.intercept, case.intercept, 1e-9, "intercept");
    assert_relative(trend.slope, case.slope, 1e-9, "slope");
    for (i, &x) in case.predict_at.iter().enumerate() {
        let point = trend.predict(x, 0.95);
        assert_relative(point.mean, case.mean[i], 1e-9, "mean");
        assert_relative(point.lower, case.lower[i], 1e-9, "lower");
        assert_relative(point.upper, case.upper[i], 1e-9, "upper");
    }
}
