//! A scorer for the Numenta Anomaly Benchmark (NAB v1.1), faithful to the reference
//! implementation (numenta/NAB: `nab/sweeper.py`, `nab/optimizer.py`, `nab/runner.py`).
//!
//! Use: load a [`Corpus`] and the [`Profile`]s, run a [`StreamingDetector`] over every series
//! with [`run_detector`], then [`score`] the result once per profile.
//!
//! ```no_run
//! # use std::path::Path;
//! # use opsloop_benches::nab::{self, Corpus, Profile, StreamingDetector};
//! # struct Never;
//! # impl StreamingDetector for Never { fn score(&mut self, _: i64, _: f64) -> f64 { 0.0 } }
//! # fn main() -> Result<(), nab::NabError> {
//! let dir = Path::new("../../shared/data/nab");
//! let corpus = Corpus::load(dir)?;
//! let scores = nab::run_detector(&corpus, || Box::new(Never));
//! for profile in Profile::load_all(&dir.join("profiles.json"))? {
//!     let result = nab::score(&corpus, &scores, &profile);
//!     println!("{}: {:.1}", profile.name, result.score);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # The rules, as NAB's code applies them
//!
//! All positions are row indices, not elapsed time.
//!
//! - **Probation.** A series of `n` rows has a probationary period of
//!   `min(floor(0.15 * n), 0.15 * 5000)` rows (so at most 750); a row is scored when its index is
//!   at least that. Rows in the period are neither detections nor misses, in or out of a window.
//! - **Windows.** A window runs from the first row whose timestamp equals its start to the first
//!   row whose timestamp equals its end, both included (NAB's `timestamps.index`). Its width `w`
//!   counts the rows between. Windows whose bounds are not row timestamps, or that overlap or are
//!   out of order, are rejected when the corpus loads (NAB would raise or skip them silently).
//! - **Detections.** A scored row is a detection when its anomaly score is `>= threshold`.
//! - **True positives.** A row `i` in a window whose last row is `r` has the position
//!   `-(r - i + 1) / w`, so the first row is at `-1.0` and the last at `-1 / w`. The window
//!   scores `tpWeight * S(position) / S(-1.0)` for its earliest detection (so exactly `tpWeight`
//!   at its first row), where `S(x) = 2 * sigmoid(-5x) - 1` for `x <= 3` and `-1.0` beyond
//!   (see [`scaled_sigmoid`]).
//! - **False negatives.** A window with at least one scored row and no detection scores
//!   `-fnWeight`. A window lying wholly in the probationary period scores nothing either way.
//! - **False positives.** Every detection outside a window adds `fpWeight * S(d / (w' - 1))`,
//!   where `d` is its distance in rows past the end of the preceding window and `w'` that
//!   window's width; with no preceding window it adds `-fpWeight`. Each detection counts, not
//!   only the first.
//! - **Threshold.** One threshold per profile for the whole corpus. NAB's sweeper sorts every
//!   scored row of every series by anomaly score and evaluates the corpus score at each distinct
//!   value (plus 1.1, where nothing fires); the best score wins, and among equal scores the
//!   highest threshold. [`score`] does the same exact sweep: one sort, then an incremental update
//!   per row, `O(n log n + distinct scores * windows)`.
//! - **Normalisation.** `100 * (raw - null) / (perfect - null)`. `perfect` is, as in NAB's
//!   `runner.normalize`, the number of windows in the label file times `tpWeight`. `null` is the
//!   raw score of a detector that never fires, `-fnWeight` per window with a scored row.
//!
//! # Where this reading departs from, or had to interpret, NAB's code
//!
//! - NAB's null detector emits a constant 0.5 and its threshold is optimised like any other; the
//!   optimum is "never fire" unless firing on every row scored better, which no profile allows on
//!   this corpus. We use the never-firing score directly.
//! - NAB scores the chosen threshold again file by file (`Sweeper.scoreDataSet`); the sum equals
//!   the corpus sweep's value at that threshold, which is what we report. (NAB's per-file lookup
//!   returns no row when a file's scores all lie above the threshold; we have no such gap.)
//! - `S` is the version in the latest `sweeper.py` (`> 3.0` is the cut-off; an older one used
//!   `>= 3.0`, which differs only at exactly 3.0).
//! - A one-row window followed by a false positive divides by zero in NAB; here the distance is
//!   infinite, so the false positive costs the full `-fpWeight`.
//! - Anomaly scores are clamped to `[0, 1]` and NaN is read as 0, so 1.1 always means "nothing
//!   fires".
//! - The counts in [`ProfileResult`] are NAB's row counts (a window with a detection in its first
//!   row and the rest undetected counts 1 true positive and `w - 1` false negatives); window
//!   counts are reported beside them.
//! - `tnWeight` is read but, as in NAB, never used.

mod corpus;
mod scoring;

use std::path::PathBuf;

pub use corpus::{Corpus, Profile, Series, Window, format_timestamp, parse_timestamp};
pub use scoring::{
    ProfileResult, probationary_length, raw_score_at, scaled_sigmoid, score, score_at_threshold,
};

/// An anomaly detector that sees one row at a time, in order, with no look-ahead.
pub trait StreamingDetector {
    /// Takes the next row of the series and returns its anomaly score in `[0, 1]`.
    fn score(&mut self, timestamp_us: i64, value: f64) -> f64;
}

/// One detector's anomaly scores: one per row, for every series of a [`Corpus`], in its order.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorScores {
    series: Vec<Vec<f64>>,
}

impl DetectorScores {
    /// Wraps precomputed scores, one `Vec` per series in the corpus's order. Scores are clamped
    /// to `[0, 1]` and NaN becomes 0.
    pub fn new(corpus: &Corpus, series: Vec<Vec<f64>>) -> Result<Self, NabError> {
        if series.len() != corpus.series().len() {
            return Err(NabError::SeriesCount {
                expected: corpus.series().len(),
                found: series.len(),
            });
        }
        for (scores, data) in series.iter().zip(corpus.series()) {
            if scores.len() != data.len() {
                return Err(NabError::ScoreCount {
                    series: data.name().to_owned(),
                    expected: data.len(),
                    found: scores.len(),
                });
            }
        }
        let series = series
            .into_iter()
            .map(|scores| scores.into_iter().map(sanitize).collect())
            .collect();
        Ok(Self { series })
    }

    /// The scores of the corpus's `index`-th series; panics if there is no such series.
    pub fn series(&self, index: usize) -> &[f64] {
        &self.series[index]
    }

    fn all(&self) -> &[Vec<f64>] {
        &self.series
    }
}

fn sanitize(score: f64) -> f64 {
    if score.is_nan() {
        0.0
    } else {
        // `+ 0.0` turns -0.0 into 0.0, so equal scores compare and sort as one.
        score.clamp(0.0, 1.0) + 0.0
    }
}

/// Runs a fresh detector from `make` over each series of the corpus, one row at a time.
pub fn run_detector(
    corpus: &Corpus,
    make: impl Fn() -> Box<dyn StreamingDetector>,
) -> DetectorScores {
    let series = corpus
        .series()
        .iter()
        .map(|data| {
            let mut detector = make();
            data.timestamps()
                .iter()
                .zip(data.values())
                .map(|(&timestamp, &value)| sanitize(detector.score(timestamp, value)))
                .collect()
        })
        .collect();
    DetectorScores { series }
}

/// Why the NAB corpus, its labels or its profiles could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum NabError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not the JSON NAB expects: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}, line {line}: {message}")]
    Csv {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{text:?} is not a timestamp like \"2014-04-01 00:00:00\" (optionally with .ffffff)")]
    Timestamp { text: String },
    #[error("window bound {} of {series} is not the timestamp of any of its rows", format_timestamp(*.timestamp_us))]
    WindowBound { series: String, timestamp_us: i64 },
    #[error("the windows of {series} overlap, are out of order or end before they start")]
    WindowOrder { series: String },
    #[error("{series} has {timestamps} timestamps but {values} values")]
    ColumnLengths {
        series: String,
        timestamps: usize,
        values: usize,
    },
    #[error("expected scores for {expected} series, got {found}")]
    SeriesCount { expected: usize, found: usize },
    #[error("{series} has {expected} rows but {found} scores")]
    ScoreCount {
        series: String,
        expected: usize,
        found: usize,
    },
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    /// The NAB data shipped beside the workspace (`/work/shared/data/nab` for `/work/main`), or
    /// `OPSLOOP_NAB_DIR`.
    fn data_dir() -> PathBuf {
        std::env::var_os("OPSLOOP_NAB_DIR").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/nab"),
            PathBuf::from,
        )
    }

    fn load() -> (Corpus, Vec<Profile>) {
        let dir = data_dir();
        let corpus = Corpus::load(&dir)
            .unwrap_or_else(|e| panic!("NAB data at {} (set OPSLOOP_NAB_DIR): {e}", dir.display()));
        let profiles = Profile::load_all(&dir.join("profiles.json")).expect("profiles load");
        (corpus, profiles)
    }

    struct Constant(f64);

    impl StreamingDetector for Constant {
        fn score(&mut self, _timestamp_us: i64, _value: f64) -> f64 {
            self.0
        }
    }

    /// A deterministic, look-ahead-free detector with many distinct scores.
    struct Hash(u64);

    impl StreamingDetector for Hash {
        fn score(&mut self, timestamp_us: i64, value: f64) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(timestamp_us as u64 ^ value.to_bits());
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    #[test]
    fn loads_the_corpus_and_profiles() {
        let (corpus, profiles) = load();
        assert_eq!(corpus.series().len(), 35);
        assert_eq!(corpus.window_count(), 55);
        assert_eq!(corpus.row_count(), 181_653);
        let names: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["standard", "reward_low_FP_rate", "reward_low_FN_rate"]
        );
        assert_eq!(profiles[2].fn_weight, 2.0);
        let taxi = corpus
            .series()
            .iter()
            .find(|s| s.name() == "realKnownCause/nyc_taxi.csv")
            .expect("nyc_taxi is in the corpus");
        assert_eq!(taxi.len(), 10_320);
        assert_eq!(taxi.windows().len(), 5);
        assert_eq!(
            format_timestamp(taxi.timestamps()[taxi.windows()[0].first_row]),
            "2014-10-30 15:30:00"
        );
    }

    #[test]
    fn the_null_detector_scores_zero() {
        let (corpus, profiles) = load();
        // NAB's own null detector emits 0.5 everywhere; never firing must be its optimum.
        for constant in [0.0, 0.5] {
            let scores = run_detector(&corpus, || Box::new(Constant(constant)));
            for profile in &profiles {
                let result = score(&corpus, &scores, profile);
                assert_eq!(result.score, 0.0, "{constant} on {}", profile.name);
                assert_eq!(result.threshold, 1.1);
                assert_eq!(result.raw_score, -55.0 * profile.fn_weight);
                assert_eq!(result.missed_windows, 55);
            }
        }
    }

    #[test]
    fn a_perfect_oracle_scores_100() {
        let (corpus, profiles) = load();
        let oracle = corpus
            .series()
            .iter()
            .map(|series| {
                let mut scores = vec![0.0; series.len()];
                for window in series.windows() {
                    scores[window.first_row] = 1.0;
                }
                scores
            })
            .collect();
        let scores = DetectorScores::new(&corpus, oracle).expect("one score per row");
        for profile in &profiles {
            let result = score(&corpus, &scores, profile);
            assert_eq!(result.score, 100.0, "{}", profile.name);
            assert_eq!(result.threshold, 1.0);
            assert_eq!((result.detected_windows, result.false_positives), (55, 0));
        }
    }

    #[test]
    fn firing_on_every_row_scores_negative() {
        let (corpus, profiles) = load();
        let scores = run_detector(&corpus, || Box::new(Constant(1.0)));
        let standard = &profiles[0];
        let always = score_at_threshold(&corpus, &scores, standard, 1.0);
        assert!(always.score < 0.0, "{}", always.score);
        assert_eq!(always.detected_windows, 55);
        // Left to choose, the sweep would rather never fire.
        assert_eq!(score(&corpus, &scores, standard).score, 0.0);
    }

    #[test]
    fn the_sweep_agrees_with_direct_scoring() {
        let (corpus, profiles) = load();
        let scores = run_detector(&corpus, || Box::new(Hash(1)));
        for profile in &profiles {
            let swept = score(&corpus, &scores, profile);
            let direct = score_at_threshold(&corpus, &scores, profile, swept.threshold);
            assert!((swept.raw_score - direct.raw_score).abs() < 1e-9);
            assert_eq!(swept.true_positives, direct.true_positives);
            assert_eq!(swept.false_positives, direct.false_positives);
            assert_eq!(swept.detected_windows, direct.detected_windows);
            // Nearby thresholds do no better.
            for nearby in [swept.threshold * 0.999, (swept.threshold * 1.001).min(1.1)] {
                assert!(raw_score_at(&corpus, &scores, profile, nearby) <= swept.raw_score + 1e-9);
            }
        }
    }

    #[test]
    fn detector_scores_check_their_shape() {
        let (corpus, _) = load();
        assert!(matches!(
            DetectorScores::new(&corpus, vec![]),
            Err(NabError::SeriesCount { .. })
        ));
        let mut wrong = vec![vec![0.0; 1]; corpus.series().len()];
        wrong[0] = vec![f64::NAN, 2.0, -1.0];
        assert!(matches!(
            DetectorScores::new(&corpus, wrong),
            Err(NabError::ScoreCount { .. })
        ));
    }
}
