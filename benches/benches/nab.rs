//! NAB scores of streaming anomaly detectors on the NAB v1.1 subset, per profile, with the
//! time each detector took to score the corpus (one core).
//!
//! `cargo bench -p opsloop-benches --bench nab`
//!
//! The data folder is `OPSLOOP_NAB_DIR`, by default `../../shared/data/nab` from this crate.
//! To add a detector, add one line to [`DETECTORS`].

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use opsloop_benches::format_rate;
use opsloop_benches::nab::{self, Corpus, NabError, Profile, ProfileResult, StreamingDetector};
use opsloop_udfs::anomaly::chain::{AnomalyChain, AnomalyChainConfig};

/// Makes a fresh detector for each series.
type Factory = fn() -> Box<dyn StreamingDetector>;

/// The detectors in the table, one line each.
const DETECTORS: &[(&str, Factory)] = &[
    ("null", || Box::new(Null)),
    ("windowed gaussian w=100", || {
        Box::new(WindowedGaussian::new(100, 1))
    }),
    ("windowed gaussian w=6400/100 (NAB)", || {
        Box::new(WindowedGaussian::new(6400, 100))
    }),
    ("opsloop default chain", || {
        Box::new(DefaultChain(AnomalyChain::default()))
    }),
    ("opsloop compact chain", || {
        Box::new(DefaultChain(AnomalyChain::new(
            AnomalyChainConfig::compact(),
        )))
    }),
];

/// The engine's default detector chain for metric series.
#[derive(Debug)]
struct DefaultChain(AnomalyChain);

impl StreamingDetector for DefaultChain {
    fn score(&mut self, _timestamp_us: i64, value: f64) -> f64 {
        self.0.score(value)
    }
}

fn main() -> Result<(), NabError> {
    let dir = std::env::var_os("OPSLOOP_NAB_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/nab"),
        PathBuf::from,
    );
    let started = Instant::now();
    let corpus = Corpus::load(&dir)?;
    let profiles = Profile::load_all(&dir.join("profiles.json"))?;
    println!(
        "NAB v1.1 subset at {}: {} series, {} rows, {} windows (loaded in {:.2?})",
        dir.display(),
        corpus.series().len(),
        corpus.row_count(),
        corpus.window_count(),
        started.elapsed()
    );

    let mut rows = Vec::new();
    for &(name, make) in DETECTORS {
        let started = Instant::now();
        let scores = nab::run_detector(&corpus, make);
        let detect = started.elapsed();
        let started = Instant::now();
        let results: Vec<ProfileResult> = profiles
            .iter()
            .map(|profile| nab::score(&corpus, &scores, profile))
            .collect();
        rows.push((name, detect, started.elapsed(), results));
    }

    let width = DETECTORS
        .iter()
        .map(|(name, _)| name.len())
        .max()
        .unwrap_or(8);
    print!("\n{:<width$}", "detector");
    for profile in &profiles {
        print!(" {:>20}", profile.name);
    }
    println!(" {:>10} {:>12} {:>10}", "detect", "rows/s", "score");
    let row_count = corpus.row_count() as f64;
    for (name, detect, scoring, results) in &rows {
        print!("{name:<width$}");
        for result in results {
            print!(" {:>20.1}", result.score);
        }
        println!(
            " {:>10} {:>12} {:>10}",
            format_duration(*detect),
            format_rate(row_count / detect.as_secs_f64()),
            format_duration(*scoring)
        );
    }

    println!("\nthresholds and counts (rows; windows detected/missed)");
    for (name, _, _, results) in &rows {
        for result in results {
            println!(
                "{name:<width$} {:<20} score {:>8.3} threshold {:<18} raw {:>9.3} tp {:>5} \
                 fp {:>6} fn {:>6} windows {}/{}",
                result.profile,
                result.score,
                result.threshold,
                result.raw_score,
                result.true_positives,
                result.false_positives,
                result.false_negatives,
                result.detected_windows,
                result.missed_windows
            );
        }
    }
    Ok(())
}

fn format_duration(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1e3)
}

/// Never fires: NAB's baseline, which normalises to 0.
#[derive(Debug)]
struct Null;

impl StreamingDetector for Null {
    fn score(&mut self, _timestamp_us: i64, _value: f64) -> f64 {
        0.0
    }
}

/// NAB's windowed Gaussian (`nab/detectors/gaussian`): the mean and standard deviation of the
/// last `window` values, refreshed every `step` values once the window is full; a value scores
/// `1 - Q(|z|)`, the probability that a normal sample lies closer to the mean. The first value
/// scores 0.
#[derive(Debug)]
struct WindowedGaussian {
    window: usize,
    step: usize,
    values: VecDeque<f64>,
    pending: usize,
    mean: f64,
    std: f64,
}

impl WindowedGaussian {
    fn new(window: usize, step: usize) -> Self {
        Self {
            window,
            step,
            values: VecDeque::with_capacity(window + step),
            pending: 0,
            mean: 0.0,
            std: 1.0,
        }
    }

    fn refresh(&mut self) {
        let n = self.values.len() as f64;
        self.mean = self.values.iter().sum::<f64>() / n;
        let variance = self
            .values
            .iter()
            .map(|v| (v - self.mean).powi(2))
            .sum::<f64>()
            / n;
        self.std = if variance == 0.0 {
            0.000_001
        } else {
            variance.sqrt()
        };
    }
}

impl StreamingDetector for WindowedGaussian {
    fn score(&mut self, _timestamp_us: i64, value: f64) -> f64 {
        let score = if self.values.is_empty() {
            0.0
        } else {
            1.0 - normal_tail((value - self.mean).abs() / self.std)
        };
        self.values.push_back(value);
        if self.values.len() <= self.window {
            self.refresh();
        } else {
            self.pending += 1;
            if self.pending == self.step {
                self.values.drain(..self.step);
                self.pending = 0;
                self.refresh();
            }
        }
        score
    }
}

/// The standard normal tail probability `Q(z) = P(Z > z)` for `z >= 0`: `erfc(z / sqrt 2) / 2`.
fn normal_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The complementary error function for `x >= 0`, to an absolute 1e-15: below 3 from the
/// all-positive series `erf(x) = 2/sqrt(pi) * exp(-x^2) * sum (2x^2)^n x / (2n+1)!!`, above it
/// from its continued fraction (modified Lentz).
fn erfc(x: f64) -> f64 {
    let two_over_sqrt_pi = std::f64::consts::FRAC_2_SQRT_PI;
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 3.0 {
        let x2 = x * x;
        let mut term = x;
        let mut sum = x;
        let mut n = 0.0;
        while term > sum * 1e-17 {
            n += 1.0;
            term *= 2.0 * x2 / (2.0 * n + 1.0);
            sum += term;
        }
        1.0 - two_over_sqrt_pi * (-x2).exp() * sum
    } else if x > 27.0 {
        0.0
    } else {
        // erfc(x) = exp(-x^2) / sqrt(pi) / (x + (1/2) / (x + 1 / (x + (3/2) / (x + ...)))).
        let tiny = 1e-300;
        let mut fraction = x;
        let mut c = x;
        let mut d = 0.0;
        for n in 1..200 {
            let a = f64::from(n) / 2.0;
            d = x + a * d;
            d = if d == 0.0 { 1.0 / tiny } else { 1.0 / d };
            c = x + a / c;
            if c == 0.0 {
                c = tiny;
            }
            let delta = c * d;
            fraction *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        two_over_sqrt_pi / 2.0 * (-x * x).exp() / fraction
    }
}
