#!/usr/bin/env python3
"""Writes reference values for opsloop's scoring functions, computed with numpy, scipy and
statsmodels, into ../fixtures/*.json. The Rust parity tests read those files.

Inputs are generated here with a fixed seed and stored next to the expected values, so the Rust
side never has to reproduce numpy's random streams. Run by scripts/test.sh; run it by hand after
changing an input:  python3 udfs/tests/reference/generate.py
"""
import json
import pathlib

import numpy as np
import scipy
from scipy import stats
from scipy.spatial import distance

OUT = pathlib.Path(__file__).resolve().parent.parent / "fixtures"
rng = np.random.default_rng(20261125)


def floats(values):
    return [float(v) for v in values]


def psi(ref_counts, cur_counts):
    """Evidently's PSI: percents per bin, empty bins floored at 0.0001."""
    r = np.asarray(ref_counts, dtype=float) / np.sum(ref_counts)
    c = np.asarray(cur_counts, dtype=float) / np.sum(cur_counts)
    r[r == 0] = 0.0001
    c[c == 0] = 0.0001
    return float(np.sum((r - c) * np.log(r / c)))


def hellinger(ref_counts, cur_counts):
    r = np.asarray(ref_counts, dtype=float) / np.sum(ref_counts)
    c = np.asarray(cur_counts, dtype=float) / np.sum(cur_counts)
    return float(np.sqrt(np.sum((np.sqrt(r) - np.sqrt(c)) ** 2) / 2.0))


def l_infinity(ref_counts, cur_counts):
    r = np.asarray(ref_counts, dtype=float) / np.sum(ref_counts)
    c = np.asarray(cur_counts, dtype=float) / np.sum(cur_counts)
    return float(np.max(np.abs(r - c)))


def binned_case(name, ref_counts, cur_counts):
    table = np.array([ref_counts, cur_counts], dtype=float)
    table = table[:, table.sum(axis=0) > 0]
    chi2, p, dof, _ = stats.chi2_contingency(table, correction=False)
    return {
        "name": name,
        "reference": floats(ref_counts),
        "current": floats(cur_counts),
        "psi": psi(ref_counts, cur_counts),
        "jensen_shannon": float(distance.jensenshannon(ref_counts, cur_counts)),
        "hellinger": hellinger(ref_counts, cur_counts),
        "l_infinity": l_infinity(ref_counts, cur_counts),
        "chi_square": float(chi2),
        "chi_square_p": float(p),
        "chi_square_dof": float(dof),
    }


def sample_case(name, a, b):
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    ks = stats.ks_2samp(a, b)
    n, m = len(a), len(b)
    en = n * m / (n + m)
    return {
        "name": name,
        "reference": floats(a),
        "current": floats(b),
        "ks_statistic": float(ks.statistic),
        "ks_p_asymptotic": float(stats.kstwobign.sf(np.sqrt(en) * ks.statistic)),
        "ks_p_scipy_default": float(ks.pvalue),
        "wasserstein": float(stats.wasserstein_distance(a, b)),
        "wasserstein_normed": float(stats.wasserstein_distance(a, b) / max(np.std(a), 0.001)),
    }


def binned():
    cases = [
        binned_case("identical", [10, 20, 30, 40], [10, 20, 30, 40]),
        binned_case("proportional", [10, 20, 30, 40], [30, 60, 90, 120]),
        binned_case("shifted", [100, 250, 400, 200, 50], [40, 120, 380, 300, 160]),
        binned_case("empty_bins", [0, 50, 50, 0, 10], [5, 45, 40, 10, 0]),
        binned_case("categorical", [500, 300, 150, 50], [420, 280, 200, 100]),
    ]
    ref = rng.normal(0.0, 1.0, 5000)
    cur = rng.normal(0.3, 1.2, 4000)
    edges = np.quantile(ref, np.linspace(0, 1, 11))[1:-1]
    ref_counts = np.histogram(ref, np.concatenate(([-np.inf], edges, [np.inf])))[0]
    cur_counts = np.histogram(cur, np.concatenate(([-np.inf], edges, [np.inf])))[0]
    cases.append(binned_case("normal_deciles", ref_counts, cur_counts))
    for counts in rng.integers(0, 1000, size=(6, 2, 12)):
        cases.append(binned_case("random_counts", counts[0], counts[1]))
    return cases


def samples():
    return [
        sample_case("same_distribution", rng.normal(0, 1, 800), rng.normal(0, 1, 600)),
        sample_case("mean_shift", rng.normal(0, 1, 1000), rng.normal(0.5, 1, 900)),
        sample_case("scale_change", rng.normal(0, 1, 700), rng.normal(0, 3, 700)),
        sample_case("heavy_tail", rng.standard_t(2, 1200), rng.normal(0, 1, 500)),
        sample_case("with_ties", rng.integers(0, 10, 400), rng.integers(0, 12, 300)),
        sample_case("small", [1.0, 2.0, 3.0], [2.5, 3.5, 4.5, 5.5]),
    ]


def special():
    points = []
    for x, k in [(0.5, 1), (3.2, 2), (10.0, 4), (25.0, 10), (80.0, 60), (150.0, 100), (1e-3, 3)]:
        points.append({"function": "chi_square_sf", "x": x, "k": k, "value": float(stats.chi2.sf(x, k))})
    for x in [0.2, 0.5, 0.9, 1.0, 1.2, 1.8, 2.5, 3.5]:
        points.append({"function": "kolmogorov_sf", "x": x, "k": 0, "value": float(stats.kstwobign.sf(x))})
    for p, k in [(0.975, 3), (0.975, 30), (0.9, 8), (0.995, 120)]:
        points.append({"function": "student_t_quantile", "x": p, "k": k, "value": float(stats.t.ppf(p, k))})
    for p in [1e-8, 0.01, 0.3, 0.5, 0.95, 0.999]:
        points.append({"function": "normal_quantile", "x": p, "k": 0, "value": float(stats.norm.ppf(p))})
    for z in [-6.0, -1.5, 0.0, 0.7, 3.0, 8.0]:
        points.append({"function": "normal_sf", "x": z, "k": 0, "value": float(stats.norm.sf(z))})
    return points


def holt_winters():
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    cases = []
    period = 12
    t = np.arange(96)
    y = 50 + 0.4 * t + 8 * np.sin(2 * np.pi * t / period) + rng.normal(0, 1.0, len(t))
    level = float(np.mean(y[:period]))
    trend = float(np.mean((y[period:2 * period] - y[:period]) / period))
    seasonal = [float(v - level) for v in y[:period]]
    for alpha, beta, gamma in [(0.3, 0.05, 0.1), (0.8, 0.2, 0.4)]:
        model = ExponentialSmoothing(
            y, trend="add", seasonal="add", seasonal_periods=period,
            initialization_method="known", initial_level=level, initial_trend=trend,
            initial_seasonal=seasonal)
        fit = model.fit(smoothing_level=alpha, smoothing_trend=beta, smoothing_seasonal=gamma,
                        optimized=False)
        cases.append({"series": floats(y), "period": period, "alpha": alpha, "beta": beta,
                      "gamma": gamma, "level": level, "trend": trend, "seasonal": seasonal,
                      "forecast": floats(fit.forecast(24)), "sse": float(fit.sse)})
    return cases


def arima():
    from statsmodels.tsa.arima.model import ARIMA

    cases = []
    for phi, theta in [(0.6, 0.3), (-0.4, 0.5)]:
        e = rng.normal(0, 1.0, 600)
        w = np.zeros(600)
        for i in range(1, 600):
            w[i] = phi * w[i - 1] + e[i] + theta * e[i - 1]
        y = 100 + np.cumsum(w)
        fit = ARIMA(y, order=(1, 1, 1)).fit()
        forecast = fit.get_forecast(10)
        interval = forecast.conf_int(alpha=0.05)
        cases.append({"series": floats(y), "true_phi": phi, "true_theta": theta,
                      "phi": float(fit.params[0]), "theta": float(fit.params[1]),
                      "forecast": floats(forecast.predicted_mean),
                      "lower": floats(interval[:, 0]), "upper": floats(interval[:, 1])})
    return cases


def linear():
    import statsmodels.api as sm

    x = np.arange(60, dtype=float)
    y = 40 + 0.5 * x + rng.normal(0, 0.8, len(x))
    fit = sm.OLS(y, sm.add_constant(x)).fit()
    at = np.array([[1.0, 80.0], [1.0, 120.0]])
    frame = fit.get_prediction(at).summary_frame(alpha=0.05)
    return {"x": floats(x), "y": floats(y), "intercept": float(fit.params[0]),
            "slope": float(fit.params[1]), "predict_at": [80.0, 120.0],
            "mean": floats(frame["mean"]), "lower": floats(frame["obs_ci_lower"]),
            "upper": floats(frame["obs_ci_upper"])}


def main():
    import statsmodels

    OUT.mkdir(parents=True, exist_ok=True)
    versions = {"numpy": np.__version__, "scipy": scipy.__version__,
                "statsmodels": statsmodels.__version__}
    document = {"generated_by": "udfs/tests/reference/generate.py", "versions": versions,
                "binned": binned(), "samples": samples(), "special": special()}
    path = OUT / "drift_reference.json"
    path.write_text(json.dumps(document, indent=1) + "\n")
    forecasts = {"generated_by": "udfs/tests/reference/generate.py", "versions": versions,
                 "holt_winters": holt_winters(), "arima": arima(), "linear": linear()}
    path = OUT / "forecast_reference.json"
    path.write_text(json.dumps(forecasts, indent=1) + "\n")
    print(f"wrote fixtures with numpy {versions['numpy']}, scipy {versions['scipy']}, "
          f"statsmodels {versions['statsmodels']}")


if __name__ == "__main__":
    main()
