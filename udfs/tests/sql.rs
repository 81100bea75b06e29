//! The DataFusion adapters from SQL: each function, called as a detector would call it, gives
//! what the plain-Rust core gives.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, AsArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema};
use datafusion::prelude::SessionContext;
use opsloop_udfs::drift::binned::{Bins, psi};
use opsloop_udfs::drift::samples::{SortedSample, kolmogorov_smirnov};

fn noise(i: usize) -> f64 {
    // Deterministic, roughly uniform in [0, 1).
    ((i as u64).wrapping_mul(2_654_435_761) % 10_007) as f64 / 10_007.0
}

async fn context() -> SessionContext {
    let context = SessionContext::new();
    opsloop_udfs::datafusion::register(&context);
    // Two features; the current window of `shifted` drifts, `steady` does not.
    let mut features = Vec::new();
    let mut periods = Vec::new();
    let mut values = Vec::new();
    for (feature, shift) in [("steady", 0.0), ("shifted", 0.35)] {
        for i in 0..4000 {
            let current = i >= 2000;
            features.push(feature);
            periods.push(if current { "current" } else { "reference" });
            values.push(noise(i) + if current { shift } else { 0.0 });
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("feature", DataType::Utf8, false),
        Field::new("period", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(features)),
            Arc::new(StringArray::from(periods)),
            Arc::new(Float64Array::from(values)),
        ],
    )
    .expect("batch");
    context.register_batch("samples", batch).expect("register");
    context
}

async fn query(context: &SessionContext, sql: &str) -> RecordBatch {
    let batches = context
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let schema = batches
        .first()
        .map_or_else(|| Arc::new(Schema::empty()), |b| b.schema());
    datafusion::arrow::compute::concat_batches(&schema, &batches).expect("concat")
}

fn column_f64(batch: &RecordBatch, i: usize) -> Vec<Option<f64>> {
    batch
        .column(i)
        .as_primitive::<Float64Type>()
        .iter()
        .collect()
}

#[tokio::test]
async fn drift_against_a_stored_baseline_matches_the_core() {
    let context = context().await;
    query(
        &context,
        "CREATE TABLE baselines AS SELECT feature, drift_baseline(value) AS baseline \
         FROM samples WHERE period = 'reference' GROUP BY feature",
    )
    .await;
    let batch = query(
        &context,
        "SELECT s.feature, psi(s.value, b.baseline), ks_p_value(s.value, b.baseline), \
                jensen_shannon(s.value, b.baseline), wasserstein_normed(s.value, b.baseline) \
         FROM samples s JOIN baselines b ON s.feature = b.feature \
         WHERE s.period = 'current' GROUP BY s.feature ORDER BY s.feature",
    )
    .await;
    let names: Vec<&str> = batch
        .column(0)
        .as_string::<i32>()
        .iter()
        .flatten()
        .collect();
    assert_eq!(names, ["shifted", "steady"]);
    let psi_sql = column_f64(&batch, 1);
    let ks_p = column_f64(&batch, 2);

    let reference: Vec<f64> = (0..2000).map(noise).collect();
    let shifted: Vec<f64> = (2000..4000).map(|i| noise(i) + 0.35).collect();
    let bins = Bins::quantiles(&reference, 10);
    let expected_psi = psi(&bins.histogram(&reference), &bins.histogram(&shifted));
    let expected_ks = kolmogorov_smirnov(
        &SortedSample::new(reference.clone()),
        &SortedSample::new(shifted),
    );
    assert!((psi_sql[0].expect("psi") - expected_psi).abs() < 1e-12);
    assert!((ks_p[0].expect("p") - expected_ks.p_value).abs() < 1e-12);
    assert!(
        psi_sql[0].expect("psi") > 0.1,
        "drifted feature crosses Evidently's alarm"
    );
    assert!(
        psi_sql[1].expect("psi") < 0.1,
        "steady feature stays under it"
    );
    assert!(ks_p[1].expect("p") > 0.01);
}

#[tokio::test]
async fn categorical_drift_and_quantiles_per_group() {
    let context = context().await;
    let batch = query(
        &context,
        "WITH labelled AS (SELECT feature, period, \
            CASE WHEN value < 0.5 THEN 'low' WHEN value < 1.0 THEN 'mid' ELSE 'high' END AS bucket \
            FROM samples), \
         baselines AS (SELECT feature, drift_baseline_categorical(bucket) AS baseline \
            FROM labelled WHERE period = 'reference' GROUP BY feature) \
         SELECT l.feature, chi_square_p_value(l.bucket, b.baseline), l_infinity(l.bucket, b.baseline) \
         FROM labelled l JOIN baselines b ON l.feature = b.feature \
         WHERE l.period = 'current' GROUP BY l.feature ORDER BY l.feature",
    )
    .await;
    let p = column_f64(&batch, 1);
    assert!(
        p[0].expect("p") < 1e-6,
        "shifted feature's buckets changed: {p:?}"
    );
    assert!(p[1].expect("p") > 0.01, "steady feature's did not: {p:?}");

    let batch = query(
        &context,
        "SELECT feature, hdr_quantile(value * 100, 0.99) FROM samples \
         WHERE period = 'reference' GROUP BY feature ORDER BY feature",
    )
    .await;
    for p99 in column_f64(&batch, 1) {
        let p99 = p99.expect("p99");
        assert!((p99 - 99.0).abs() < 0.5, "{p99}");
    }
}

#[tokio::test]
async fn forecasts_from_arrays_of_recent_values() {
    let context = SessionContext::new();
    opsloop_udfs::datafusion::register(&context);
    let hours: Vec<i64> = (0..96).collect();
    let disk: Vec<f64> = hours.iter().map(|h| 40.0 + 0.5 * *h as f64).collect();
    let load: Vec<f64> = hours
        .iter()
        .map(|h| 100.0 + 20.0 * ((*h % 24) as f64 / 24.0 * std::f64::consts::TAU).sin())
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("hour", DataType::Int64, false),
        Field::new("disk_pct", DataType::Float64, false),
        Field::new("load", DataType::Float64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(hours)),
            Arc::new(Float64Array::from(disk)),
            Arc::new(Float64Array::from(load)),
        ],
    )
    .expect("batch");
    context.register_batch("series", batch).expect("register");
    let batch = query(
        &context,
        "SELECT steps_to_threshold(array_agg(disk_pct ORDER BY hour), 100.0), \
                forecast_holt_winters(array_agg(load ORDER BY hour), 24, 6)['mean'], \
                forecast_arima(array_agg(disk_pct ORDER BY hour), 4)['mean'], \
                forecast_holt_winters_peak(array_agg(load ORDER BY hour), 24, 12)['mean'], \
                forecast_holt_winters_peak(array_agg(load ORDER BY hour), 24, 3)['mean'], \
                forecast_linear(array_agg(disk_pct ORDER BY hour), 24) \
         FROM series",
    )
    .await;
    let steps = column_f64(&batch, 0)[0].expect("heading to 100%");
    // 40% + 0.5%/h reaches 100% at hour 120; the last sample is hour 95.
    assert!((steps - 25.0).abs() < 1e-6, "{steps}");
    let expected_load = 100.0 + 20.0 * ((101 % 24) as f64 / 24.0 * std::f64::consts::TAU).sin();
    let hw = column_f64(&batch, 1)[0].expect("forecast");
    assert!((hw - expected_load).abs() < 1.0, "{hw} vs {expected_load}");
    let arima = column_f64(&batch, 2)[0].expect("forecast");
    assert!((arima - 89.5).abs() < 0.5, "{arima}");
    // The next 12 hours (96..=107) peak at hour 102, the daily crest; the next 3 at hour 98.
    let peak = column_f64(&batch, 3)[0].expect("peak");
    assert!((peak - 120.0).abs() < 1.0, "{peak}");
    let early_peak = column_f64(&batch, 4)[0].expect("peak");
    assert!((early_peak - 110.0).abs() < 1.0, "{early_peak}");
    // An exact line: hour 119 is 40% + 0.5% * 119, with a zero-width interval.
    let linear = batch.column(5).as_struct();
    let field = |name: &str| {
        linear
            .column_by_name(name)
            .expect("field")
            .as_primitive::<Float64Type>()
            .value(0)
    };
    assert!((field("mean") - 99.5).abs() < 1e-9, "{}", field("mean"));
    assert!(field("upper") - field("lower") < 1e-6);
    assert_eq!(batch.num_rows(), 1);
    assert!(batch.column(0).null_count() == 0);
}
