//! The built-in forecast jobs (SQL over windowed aggregates) on series whose future is known:
//! capacity a week out with time to exhaustion (a configured limit, the database's connection
//! limit, a GPU's framebuffer), p99 latency over the next hour, cost per query and the total
//! cost trend. A folder of jobs replaces the built-in ones; a broken job fails its check by
//! name.

use opsloop_predict::jobs::{CycleInputs, ForecastJobs};
use opsloop_predict::windows::Windows;
use opsloop_schemas::ops::Forecast;
use std::f64::consts::TAU;

const HOUR_S: i64 = 3600;
const HOUR_US: i64 = HOUR_S * 1_000_000;
/// Midnight UTC.
const START_US: i64 = 1_795_046_400 * 1_000_000;

/// Hourly windows, a daily season.
fn inputs(now_us: i64, capacity: Vec<(String, String, f64)>) -> CycleInputs {
    CycleInputs {
        now_us,
        window_s: HOUR_S,
        season_steps: 24,
        latency_metric: "db_query_latency_ms".to_owned(),
        capacity,
    }
}

/// One sample per hour of `metric` for `entity`, valued `f(hour)`.
fn series(windows: &mut Windows, entity: &str, metric: &str, hours: i64, f: impl Fn(f64) -> f64) {
    for hour in 0..hours {
        windows.observe(entity, metric, START_US + hour * HOUR_US, f(hour as f64));
    }
}

fn find<'a>(
    forecasts: &'a [Forecast],
    entity: &str,
    forecast: &str,
    resource: Option<&str>,
) -> &'a Forecast {
    forecasts
        .iter()
        .find(|f| f.entity == entity && f.forecast == forecast && f.resource.as_deref() == resource)
        .unwrap_or_else(|| panic!("no {forecast} {resource:?} for {entity} in {forecasts:#?}"))
}

fn close(got: f64, expected: f64, tolerance: f64) -> bool {
    (got - expected).abs() <= tolerance * expected.abs()
}

#[tokio::test]
async fn capacity_a_week_out_and_time_to_exhaustion() {
    let mut windows = Windows::new(HOUR_S, 1000);
    let hours = 100;
    // Storage: 500 GB + 0.5 GB/h against a configured 1,000 GB.
    series(&mut windows, "db-1", "db_storage_gb", hours, |h| {
        500.0 + 0.5 * h
    });
    // Connections: 50 + 1/h against the 200 the database reports.
    series(&mut windows, "db-1", "db_connections_active", hours, |h| {
        50.0 + h
    });
    series(&mut windows, "db-1", "db_connections_max", hours, |_| 200.0);
    // A GPU's framebuffer, flat at 40,000 of 81,559 MiB.
    series(&mut windows, "GPU-1", "DCGM_FI_DEV_FB_USED", hours, |_| {
        40_000.0
    });
    series(&mut windows, "GPU-1", "DCGM_FI_DEV_FB_FREE", hours, |_| {
        41_559.0
    });
    let now_us = START_US + (hours - 1) * HOUR_US;
    let storage = vec![("storage".to_owned(), "db_storage_gb".to_owned(), 1000.0)];
    let forecasts = ForecastJobs::builtin()
        .run(windows.to_batch(), &inputs(now_us, storage))
        .await
        .expect("jobs");
    let week_s = 7 * 86_400;

    // Hour 99 + 168 = 267: 500 + 133.5 GB; full at hour 1000, 901 hours after the last window.
    let disk = find(&forecasts, "db-1", "capacity_share", Some("storage"));
    assert!(close(disk.value, 633.5 / 1000.0, 1e-9), "{disk:?}");
    let exhaustion = disk.time_to_exhaustion_s.expect("heading for full");
    assert!(close(exhaustion, 901.0 * 3600.0, 1e-9), "{disk:?}");
    assert_eq!(disk.horizon_s, Some(week_s));
    assert_eq!(disk.job, "capacity_next_week");

    // 50 + 267 connections of 200: past the limit; 51 hours left.
    let connections = find(&forecasts, "db-1", "capacity_share", Some("connections"));
    assert!(
        close(connections.value, 317.0 / 200.0, 1e-9),
        "{connections:?}"
    );
    let exhaustion = connections.time_to_exhaustion_s.expect("heading for full");
    assert!(close(exhaustion, 51.0 * 3600.0, 1e-9), "{connections:?}");

    // Flat usage: today's share, never full.
    let gpu = find(&forecasts, "GPU-1", "capacity_share", Some("gpu_memory"));
    assert!(close(gpu.value, 40_000.0 / 81_559.0, 1e-9), "{gpu:?}");
    assert_eq!(gpu.time_to_exhaustion_s, None);

    assert_eq!(
        forecasts
            .iter()
            .filter(|f| f.forecast == "capacity_share")
            .count(),
        3,
        "{forecasts:#?}"
    );
}

#[tokio::test]
async fn a_daily_cycle_is_not_taken_for_growth() {
    // Connections swing 100 +- 40 around the day against 200, with no growth; the last window
    // is 11:00 of day 4, on the morning ramp.
    let daily = |h: f64| 100.0 + 40.0 * (TAU * (h - 9.0) / 24.0).sin();
    let hours = 3 * 24 + 12;
    let mut windows = Windows::new(HOUR_S, 1000);
    series(&mut windows, "db-1", "db_connections_active", hours, daily);
    series(&mut windows, "db-1", "db_connections_max", hours, |_| 200.0);
    let now_us = START_US + (hours - 1) * HOUR_US;
    let forecasts = ForecastJobs::builtin()
        .run(windows.to_batch(), &inputs(now_us, Vec::new()))
        .await
        .expect("jobs");
    // The day's peak, 140 of 200; a line through the ramp alone would say far more.
    let share = find(&forecasts, "db-1", "capacity_share", Some("connections"));
    eprintln!("a daily cycle: {:.3} of the limit a week out", share.value);
    assert!((0.69..0.73).contains(&share.value), "{share:?}");

    // The ramp alone (the last 12 hours) is under a season: no forecast.
    let mut ramp = Windows::new(HOUR_S, 1000);
    for hour in hours - 12..hours {
        let time = START_US + hour * HOUR_US;
        ramp.observe("db-1", "db_connections_active", time, daily(hour as f64));
        ramp.observe("db-1", "db_connections_max", time, 200.0);
    }
    let forecasts = ForecastJobs::builtin()
        .run(ramp.to_batch(), &inputs(now_us, Vec::new()))
        .await
        .expect("jobs");
    assert!(forecasts.is_empty(), "{forecasts:#?}");
}

/// A daily load cycle peaking at 15:00 UTC: 1.3 at the peak, 0.7 at the trough.
fn load(hour: f64) -> f64 {
    1.0 + 0.3 * (TAU * (hour - 9.0) / 24.0).sin()
}

#[tokio::test]
async fn latency_and_cost_follow_their_daily_cycle_and_trend() {
    let mut windows = Windows::new(HOUR_S, 1000);
    let hours = 14 * 24;
    // p99 latency follows the load.
    series(&mut windows, "db-1", "db_query_latency_ms", hours, |h| {
        120.0 * load(h)
    });
    // Spend grows 0.01 USD/h every hour and follows the load; queries follow the load.
    let cost = |h: f64| 2.0 + 0.01 * h + 0.5 * (load(h) - 1.0);
    let qps = |h: f64| 400.0 * load(h);
    for entity in ["db-1", "db-2"] {
        series(&mut windows, entity, "db_cost_usd_per_hour", hours, cost);
        series(&mut windows, entity, "db_qps", hours, qps);
    }
    // The last window is 23:00 of day 14: the next hour is midnight.
    let now_us = START_US + (hours - 1) * HOUR_US;
    let forecasts = ForecastJobs::builtin()
        .run(windows.to_batch(), &inputs(now_us, Vec::new()))
        .await
        .expect("jobs");
    let next_hour = hours as f64;
    let next_day = (hours + 23) as f64;

    let p99 = find(&forecasts, "db-1", "latency_p99_ms", None);
    let relative = |got: f64, truth: f64| 100.0 * (got - truth).abs() / truth.abs();
    eprintln!(
        "p99 next hour {:.2} ms, truth {:.2} ms ({:.2}% off)",
        p99.value,
        120.0 * load(next_hour),
        relative(p99.value, 120.0 * load(next_hour))
    );
    assert!(close(p99.value, 120.0 * load(next_hour), 0.01), "{p99:?}");
    assert!(p99.lower.expect("lower") <= p99.value && p99.value <= p99.upper.expect("upper"));
    assert_eq!(p99.horizon_s, Some(3600));

    // A day ahead: hour 359.
    let per_query = find(&forecasts, "db-1", "cost_per_query_usd", None);
    let expected = cost(next_day) / (qps(next_day) * 3600.0);
    eprintln!(
        "cost per query a day ahead {:.4e} USD, truth {expected:.4e} ({:.2}% off)",
        per_query.value,
        relative(per_query.value, expected)
    );
    assert!(
        close(per_query.value, expected, 0.02),
        "{per_query:?} vs {expected}"
    );

    for (entity, share) in [("db-1", 1.0), ("db-2", 1.0), ("fleet", 2.0)] {
        let spend = find(&forecasts, entity, "cost_usd_per_hour", None);
        assert!(
            close(spend.value, share * cost(next_day), 0.02),
            "{spend:?} vs {}",
            share * cost(next_day)
        );
        let trend = find(&forecasts, entity, "cost_trend_usd_per_hour_per_day", None);
        eprintln!(
            "{entity}: spend a day ahead {:.3} USD/h, truth {:.3} ({:.2}% off); trend {:.4} \
             USD/h per day, truth {:.2} ({:.2}% off)",
            spend.value,
            share * cost(next_day),
            relative(spend.value, share * cost(next_day)),
            trend.value,
            share * 0.24,
            relative(trend.value, share * 0.24)
        );
        assert!(close(trend.value, share * 0.24, 0.05), "{trend:?}");
    }
}

#[tokio::test]
async fn too_little_history_makes_no_forecast_rather_than_a_wrong_one() {
    let mut windows = Windows::new(HOUR_S, 1000);
    // One day: Holt-Winters needs two seasons; a line needs three points.
    series(&mut windows, "db-1", "db_query_latency_ms", 24, |h| {
        100.0 + h
    });
    series(&mut windows, "db-1", "db_storage_gb", 2, |h| 500.0 + h);
    let storage = vec![("storage".to_owned(), "db_storage_gb".to_owned(), 1000.0)];
    let forecasts = ForecastJobs::builtin()
        .run(
            windows.to_batch(),
            &inputs(START_US + 23 * HOUR_US, storage),
        )
        .await
        .expect("jobs");
    assert!(forecasts.is_empty(), "{forecasts:#?}");
}

#[tokio::test]
async fn a_folder_of_jobs_replaces_the_built_in_ones_and_a_broken_one_fails_by_name() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("busiest.sql"),
        "SELECT entity, 'samples' AS forecast, sum(samples) AS value FROM windows GROUP BY entity",
    )
    .expect("write");
    std::fs::write(dir.path().join("notes.txt"), "not a job").expect("write");
    let jobs = ForecastJobs::load(dir.path()).expect("load");
    assert_eq!(jobs.names().collect::<Vec<_>>(), ["busiest"]);
    let mut windows = Windows::new(HOUR_S, 1000);
    series(&mut windows, "db-1", "db_qps", 5, |_| 1.0);
    let forecasts = jobs
        .run(windows.to_batch(), &inputs(START_US, Vec::new()))
        .await
        .expect("run");
    assert_eq!(forecasts.len(), 1);
    assert_eq!(
        (forecasts[0].entity.as_str(), forecasts[0].value),
        ("db-1", 5.0)
    );
    jobs.check(&inputs(START_US, Vec::new()))
        .await
        .expect("a good job checks");

    std::fs::write(
        dir.path().join("broken.sql"),
        "SELECT entity, 1.0 AS value FROM windows",
    )
    .expect("write");
    let error = ForecastJobs::load(dir.path())
        .expect("load")
        .check(&inputs(START_US, Vec::new()))
        .await
        .expect_err("no forecast column");
    let message = error.to_string();
    assert!(
        message.contains("broken") && message.contains("forecast"),
        "{message}"
    );

    std::fs::write(dir.path().join("broken.sql"), "SELECT nothing FROM nowhere").expect("write");
    let error = ForecastJobs::load(dir.path())
        .expect("load")
        .check(&inputs(START_US, Vec::new()))
        .await
        .expect_err("no such table");
    assert!(error.to_string().contains("broken"), "{error}");
    assert!(ForecastJobs::load(&dir.path().join("missing")).is_err());
}
