//! Backtests on generated series with known futures: Holt-Winters against the naive seasonal
//! forecast on each series family, the built-in forecast jobs (SQL) against it too, time to
//! exhaustion on linear growth, and the failure-risk model's precision and recall on a
//! held-out part of a generated incident history.

use opsloop_predict::forecast::{backtest, mape, mase, time_to_exhaustion};
use opsloop_predict::jobs::{CycleInputs, ForecastJobs};
use opsloop_predict::risk::{Example, RiskModel, Training, precision_recall};
use opsloop_predict::windows::Windows;

/// A deterministic normal generator (xorshift + Box-Muller).
struct Noise(u64);

impl Noise {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

const DAY: usize = 24;

/// Hourly points for `days` days: level + trend per hour + daily amplitude + noise.
fn family(days: usize, level: f64, trend: f64, amplitude: f64, noise: f64, seed: u64) -> Vec<f64> {
    let mut rng = Noise(seed);
    (0..days * DAY)
        .map(|t| {
            let daily = (std::f64::consts::TAU * (t % DAY) as f64 / DAY as f64).sin();
            level + trend * t as f64 + amplitude * daily + noise * rng.normal()
        })
        .collect()
}

#[test]
fn holt_winters_beats_the_naive_seasonal_forecast_on_every_family() {
    let families = [
        // p99 latency (ms): daily load cycle, slow drift up.
        ("p99 latency", family(28, 120.0, 0.05, 40.0, 6.0, 1)),
        // storage (GB): steady growth, a small daily wobble.
        ("storage", family(28, 500.0, 0.4, 2.0, 1.5, 2)),
        // connections: strong daily cycle.
        ("connections", family(28, 300.0, 0.0, 120.0, 15.0, 3)),
        // cost per 1k queries ($): daily cycle and a falling trend.
        ("cost per query", family(28, 2.0, -0.0005, 0.4, 0.05, 4)),
    ];
    for (name, series) in families {
        let result = backtest(&series, DAY, 14 * DAY, DAY, 12).expect("backtest");
        eprintln!(
            "{name}: {} origins, MAPE {:.2}% vs naive {:.2}%, MASE {:.3} vs naive {:.3}",
            result.origins, result.mape, result.naive_mape, result.mase, result.naive_mase
        );
        assert!(result.origins >= 20);
        assert!(result.mase < result.naive_mase, "{name}: {result:?}");
        assert!(result.mape < result.naive_mape, "{name}: {result:?}");
    }
}

/// (job forecasts, naive seasonal forecasts, actuals) of one series.
#[derive(Default)]
struct Scores {
    job: Vec<f64>,
    naive: Vec<f64>,
    actual: Vec<f64>,
}

impl Scores {
    fn report(&self, name: &str, train: &[f64]) -> (f64, f64, f64, f64) {
        let scores = (
            mape(&self.actual, &self.job),
            mape(&self.actual, &self.naive),
            mase(&self.actual, &self.job, train, DAY),
            mase(&self.actual, &self.naive, train, DAY),
        );
        eprintln!(
            "{name} job: {} origins, MAPE {:.2}% vs naive {:.2}%, MASE {:.3} vs naive {:.3}",
            self.actual.len(),
            scores.0,
            scores.1,
            scores.2,
            scores.3
        );
        scores
    }
}

#[tokio::test]
async fn the_forecast_jobs_beat_the_naive_seasonal_forecast() {
    const HOUR_US: i64 = 3_600_000_000;
    let start_us = 1_795_046_400 * 1_000_000;
    let days = 28;
    let latency = family(days, 120.0, 0.05, 40.0, 6.0, 21);
    let cost = family(days, 3.0, 0.002, 0.6, 0.05, 22);
    let qps = family(days, 800.0, 0.0, 240.0, 20.0, 23);
    let per_query: Vec<f64> = cost
        .iter()
        .zip(&qps)
        .map(|(c, q)| c / (q * 3600.0))
        .collect();
    let jobs = ForecastJobs::builtin();
    let (mut p99, mut cost_per_query) = (Scores::default(), Scores::default());
    let first_origin = 14 * DAY;
    // Each origin: the windows before it, the jobs' forecasts, and the naive seasonal one (the
    // value a season before the forecast hour) against what happened.
    for origin in (first_origin..latency.len() - DAY).step_by(12) {
        let mut windows = Windows::new(3600, 10_000);
        for hour in 0..origin {
            let time_us = start_us + hour as i64 * HOUR_US;
            windows.observe("db-1", "db_query_latency_ms", time_us, latency[hour]);
            windows.observe("db-1", "db_cost_usd_per_hour", time_us, cost[hour]);
            windows.observe("db-1", "db_qps", time_us, qps[hour]);
        }
        let inputs = CycleInputs {
            now_us: start_us + (origin as i64 - 1) * HOUR_US,
            window_s: 3600,
            season_steps: DAY as i64,
            latency_metric: "db_query_latency_ms".to_owned(),
            capacity: Vec::new(),
        };
        let forecasts = jobs.run(windows.to_batch(), &inputs).await.expect("jobs");
        let value = |forecast: &str| {
            forecasts
                .iter()
                .find(|f| f.entity == "db-1" && f.forecast == forecast)
                .unwrap_or_else(|| panic!("no {forecast}"))
                .value
        };
        // The next hour (one window); a day ahead (window origin + 23).
        p99.job.push(value("latency_p99_ms"));
        p99.naive.push(latency[origin - DAY]);
        p99.actual.push(latency[origin]);
        let day_ahead = origin + DAY - 1;
        cost_per_query.job.push(value("cost_per_query_usd"));
        cost_per_query.naive.push(per_query[day_ahead - DAY]);
        cost_per_query.actual.push(per_query[day_ahead]);
    }
    for (name, scores, train) in [
        ("p99 latency", &p99, &latency[..first_origin]),
        (
            "cost per query",
            &cost_per_query,
            &per_query[..first_origin],
        ),
    ] {
        let (mape, naive_mape, mase, naive_mase) = scores.report(name, train);
        assert!(scores.actual.len() >= 20);
        assert!(mape < naive_mape, "{name}: {mape} vs {naive_mape}");
        assert!(mase < naive_mase, "{name}: {mase} vs {naive_mase}");
    }
}

#[test]
fn time_to_exhaustion_of_linear_growth_is_within_ten_percent() {
    // 500 GB growing 0.4 GB/h with noise, a 1 TB disk: observed for a week.
    let series = family(7, 500.0, 0.4, 0.0, 2.0, 9);
    let times: Vec<f64> = (0..series.len()).map(|t| t as f64 * 3600.0).collect();
    let now = *times.last().expect("points");
    let truth = (1000.0 - (500.0 + 0.4 * (series.len() - 1) as f64)) / 0.4 * 3600.0;
    let estimate = time_to_exhaustion(&times, &series, 1000.0, now).expect("heading there");
    let error = (estimate - truth).abs() / truth;
    eprintln!(
        "time to exhaustion {:.1} h, truth {:.1} h, error {:.2}%",
        estimate / 3600.0,
        truth / 3600.0,
        error * 100.0
    );
    assert!(error < 0.10, "{error}");
    // A shrinking series never exhausts.
    let falling: Vec<f64> = series.iter().rev().copied().collect();
    assert!(time_to_exhaustion(&times, &falling, 1000.0, now).is_none());
}

fn true_risk(p99_ratio: f64, error_rate: f64, connection_share: f64) -> f64 {
    let z = -9.0 + 4.0 * p99_ratio + 60.0 * error_rate + 3.0 * connection_share;
    1.0 / (1.0 + (-z).exp())
}

/// Entities' recent-window features and whether an incident followed, drawn from a known
/// logistic relation (plus a feature that does not matter).
fn history(n: usize, seed: u64) -> Vec<Example> {
    let mut rng = Noise(seed);
    (0..n)
        .map(|_| {
            let p99_ratio = 0.5 + rng.uniform();
            let error_rate = rng.uniform() * 0.05;
            let connection_share = rng.uniform();
            let irrelevant = rng.normal();
            let incident = rng.uniform() < true_risk(p99_ratio, error_rate, connection_share);
            Example {
                features: vec![p99_ratio, error_rate, connection_share, irrelevant],
                incident_followed: incident,
            }
        })
        .collect()
}

#[test]
fn the_failure_risk_model_finds_incidents_on_held_out_history() {
    let examples = history(4_000, 11);
    let (train, held_out) = examples.split_at(2_800);
    let names = ["p99_ratio", "error_rate", "connection_share", "irrelevant"];
    let model = RiskModel::train(&names, train, Training::default(), 1_700_000_000_000_000)
        .expect("trained");
    assert_eq!(model.version, "risk-1700000000000000-2800");
    let base_rate =
        held_out.iter().filter(|e| e.incident_followed).count() as f64 / held_out.len() as f64;
    // The labels are draws, so even the true probabilities miss some: compare the model with
    // that oracle at the same threshold (0.5, and the proactive rule's 0.7).
    for threshold in [0.5, 0.7] {
        let (precision, recall) = precision_recall(&model, held_out, threshold);
        let (mut tp, mut fp, mut fn_) = (0.0, 0.0, 0.0);
        for example in held_out {
            let f = &example.features;
            match (
                true_risk(f[0], f[1], f[2]) >= threshold,
                example.incident_followed,
            ) {
                (true, true) => tp += 1.0,
                (true, false) => fp += 1.0,
                (false, true) => fn_ += 1.0,
                (false, false) => {}
            }
        }
        let (oracle_precision, oracle_recall) = (tp / (tp + fp), tp / (tp + fn_));
        eprintln!(
            "held out: {} examples, base rate {base_rate:.3}; at {threshold}: precision {precision:.3} \
             (oracle {oracle_precision:.3}), recall {recall:.3} (oracle {oracle_recall:.3})",
            held_out.len()
        );
        assert!(
            precision > 2.0 * base_rate,
            "precision {precision} vs base rate {base_rate}"
        );
        assert!(
            (precision - oracle_precision).abs() < 0.06,
            "{precision} vs {oracle_precision}"
        );
        assert!(
            (recall - oracle_recall).abs() < 0.06,
            "{recall} vs {oracle_recall}"
        );
    }
    // The riskiest profile scores above the safest.
    assert!(model.risk(&[1.5, 0.05, 1.0, 0.0]) > 0.9);
    assert!(model.risk(&[0.5, 0.0, 0.0, 0.0]) < 0.05);
    // One label only: nothing to learn.
    let only_healthy: Vec<Example> = train
        .iter()
        .filter(|e| !e.incident_followed)
        .cloned()
        .collect();
    assert!(RiskModel::train(&names, &only_healthy, Training::default(), 0).is_none());
}
