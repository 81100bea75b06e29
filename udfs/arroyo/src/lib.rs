//! opsloop's scoring functions as Arroyo UDF plugins, so the detector SQL in `sql/` runs on an
//! Arroyo cluster too. Arroyo loads one UDF per plugin library (each exports one `__run`), so
//! every function is behind a feature of its own and is built as its own plugin:
//!
//! ```sh
//! cargo build --release --manifest-path udfs/arroyo/Cargo.toml --features opsloop_p99
//! ```
//!
//! Functions with a `Vec` argument are aggregates (UDAFs) over a window. Each wraps the same
//! plain-Rust core the DataFusion engine uses.

#[cfg(any(
    feature = "opsloop_p50",
    feature = "opsloop_p95",
    feature = "opsloop_p99",
    feature = "opsloop_p999"
))]
fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut sketch = opsloop_udfs::anomaly::quantile::QuantileSketch::new(1000.0);
    for &value in values {
        sketch.record(value);
    }
    sketch.quantile(q)
}

#[cfg(feature = "opsloop_p50")]
mod opsloop_p50 {
    use arroyo_udf_plugin::udf;

    /// Median of the window's values (hdrhistogram, 0.1% resolution).
    #[udf]
    pub fn opsloop_p50(values: Vec<f64>) -> Option<f64> {
        super::quantile(&values, 0.5)
    }
}

#[cfg(feature = "opsloop_p95")]
mod opsloop_p95 {
    use arroyo_udf_plugin::udf;

    /// 95th percentile of the window's values.
    #[udf]
    pub fn opsloop_p95(values: Vec<f64>) -> Option<f64> {
        super::quantile(&values, 0.95)
    }
}

#[cfg(feature = "opsloop_p99")]
mod opsloop_p99 {
    use arroyo_udf_plugin::udf;

    /// 99th percentile of the window's values.
    #[udf]
    pub fn opsloop_p99(values: Vec<f64>) -> Option<f64> {
        super::quantile(&values, 0.99)
    }
}

#[cfg(feature = "opsloop_p999")]
mod opsloop_p999 {
    use arroyo_udf_plugin::udf;

    /// 99.9th percentile of the window's values.
    #[udf]
    pub fn opsloop_p999(values: Vec<f64>) -> Option<f64> {
        super::quantile(&values, 0.999)
    }
}

#[cfg(feature = "opsloop_robust_zscore")]
mod opsloop_robust_zscore {
    use arroyo_udf_plugin::udf;
    use opsloop_udfs::anomaly::robust::RobustZScore;

    /// Robust z-score (median/MAD) of the window's last value against the values before it.
    #[udf]
    pub fn opsloop_robust_zscore(values: Vec<f64>) -> Option<f64> {
        let (&last, history) = values.split_last()?;
        let mut detector = RobustZScore::new(history.len().max(3), 1e-9);
        for &value in history {
            detector.push(value);
        }
        Some(detector.score(last))
    }
}

#[cfg(feature = "opsloop_steps_to_full")]
mod opsloop_steps_to_full {
    use arroyo_udf_plugin::udf;
    use opsloop_udfs::forecast::trend::LinearTrend;

    /// Steps until the window's linear trend reaches 100 (percent full); NULL if not rising.
    #[udf]
    pub fn opsloop_steps_to_full(values: Vec<f64>) -> Option<f64> {
        let x: Vec<f64> = (0..values.len()).map(|i| i as f64).collect();
        let now = values.len().checked_sub(1)? as f64;
        let crossing = LinearTrend::fit(&x, &values)?.crossing(100.0, now, 0.95)?;
        Some(crossing.at - now)
    }
}
