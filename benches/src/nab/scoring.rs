//! NAB's scoring: the scaled sigmoid, the per-row weights, the threshold sweep and the
//! normalisation. The rules are in the parent module's docs.

use super::{Corpus, DetectorScores, Profile, Series, Window};

/// The share of each series that is probationary (NAB's `probationPercent`).
const PROBATION_PERCENT: f64 = 0.15;

/// The threshold at which nothing fires: where NAB's sweep starts.
const NO_DETECTION_THRESHOLD: f64 = 1.1;

/// NAB's scaled sigmoid of a relative position: `2 * sigmoid(-5x) - 1`, and `-1.0` past 3.0.
///
/// `-1.0` (a window's first row) gives 0.98661, `0.0` (just past its end) gives 0, `1.0` (one
/// window width after its end) gives -0.98661.
pub fn scaled_sigmoid(position: f64) -> f64 {
    if position > 3.0 {
        -1.0
    } else {
        2.0 * sigmoid(-5.0 * position) - 1.0
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The number of leading rows of an `rows`-row series that are not scored:
/// `min(floor(0.15 * rows), 750)`, computed in floating point as NAB does.
pub fn probationary_length(rows: usize) -> usize {
    let length = (PROBATION_PERCENT * rows as f64)
        .floor()
        .min(PROBATION_PERCENT * 5000.0);
    // NAB scores row `i` when `i >= length`; `length` is a whole number.
    length.ceil() as usize
}

/// How one detector scores on one profile.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileResult {
    pub profile: String,
    /// The normalised NAB score: 100 is perfect, 0 is the detector that never fires.
    pub score: f64,
    /// The threshold: rows whose anomaly score is at least this are detections. 1.1 when the
    /// best choice is to never fire.
    pub threshold: f64,
    /// The sum of the weighted true-positive, false-positive and false-negative terms.
    pub raw_score: f64,
    /// The raw score of the detector that never fires.
    pub null_score: f64,
    /// The raw score of a perfect detector: the number of windows times `tpWeight`.
    pub perfect_score: f64,
    /// Scored rows inside windows that are detections (NAB's `tp`).
    pub true_positives: usize,
    /// Scored rows outside windows that are detections (NAB's `fp`).
    pub false_positives: usize,
    /// Scored rows inside windows that are not detections (NAB's `fn`).
    pub false_negatives: usize,
    /// Scored rows outside windows that are not detections (NAB's `tn`).
    pub true_negatives: usize,
    /// Windows with at least one detection.
    pub detected_windows: usize,
    /// Windows with scored rows but no detection.
    pub missed_windows: usize,
}

/// Scores `scores` on `profile` at the threshold that maximises the raw score over the whole
/// corpus, found by an exact sweep over every distinct anomaly score.
pub fn score(corpus: &Corpus, scores: &DetectorScores, profile: &Profile) -> ProfileResult {
    let layout = Layout::new(corpus);
    let weights = Weights::new(profile);
    let mut rows: Vec<(f64, Place)> = layout
        .rows
        .iter()
        .map(|r| (scores.all()[r.series][r.row], r.place))
        .collect();
    // Descending and stable, like NAB's `sorted(..., reverse=True)`.
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));

    let mut tally = Tally::new(&layout, &weights);
    let mut best = (NO_DETECTION_THRESHOLD, tally.raw(), tally.clone());
    let null = best.1;
    let mut start = 0;
    while start < rows.len() {
        let threshold = rows[start].0;
        let mut end = start;
        while end < rows.len() && rows[end].0 == threshold {
            tally.detect(rows[end].1, &weights);
            end += 1;
        }
        let raw = tally.raw();
        // Strictly better only: among equal scores the highest threshold wins, as in NAB.
        if raw > best.1 {
            best = (threshold, raw, tally.clone());
        }
        start = end;
    }
    let (threshold, raw, tally) = best;
    tally.result(corpus, profile, threshold, raw, null)
}

/// Scores `scores` on `profile` at a given threshold (rows scoring at least `threshold` are
/// detections), evaluating every series directly rather than by a sweep.
pub fn score_at_threshold(
    corpus: &Corpus,
    scores: &DetectorScores,
    profile: &Profile,
    threshold: f64,
) -> ProfileResult {
    let layout = Layout::new(corpus);
    let weights = Weights::new(profile);
    let null = Tally::new(&layout, &weights).raw();
    let mut tally = Tally::new(&layout, &weights);
    for row in &layout.rows {
        if scores.all()[row.series][row.row] >= threshold {
            tally.detect(row.place, &weights);
        }
    }
    let raw = tally.raw();
    tally.result(corpus, profile, threshold, raw, null)
}

/// The raw (unnormalised) NAB score at a given threshold.
pub fn raw_score_at(
    corpus: &Corpus,
    scores: &DetectorScores,
    profile: &Profile,
    threshold: f64,
) -> f64 {
    score_at_threshold(corpus, scores, profile, threshold).raw_score
}

/// Where a scored row lies, with its unweighted scaled-sigmoid value.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// In the window with this slot (windows are numbered over the corpus, counting only those
    /// with a scored row).
    Window {
        slot: usize,
        unweighted: f64,
    },
    Outside {
        unweighted: f64,
    },
}

#[derive(Debug, Clone, Copy)]
struct ScoredRow {
    series: usize,
    row: usize,
    place: Place,
}

/// The scored rows of a corpus and where each lies: everything that does not depend on the
/// detector or the profile.
#[derive(Debug)]
struct Layout {
    rows: Vec<ScoredRow>,
    /// Scored rows inside windows.
    window_rows: usize,
    /// Windows with at least one scored row.
    windows: usize,
}

impl Layout {
    fn new(corpus: &Corpus) -> Self {
        let mut layout = Self {
            rows: Vec::with_capacity(corpus.row_count()),
            window_rows: 0,
            windows: 0,
        };
        for (index, series) in corpus.series().iter().enumerate() {
            layout.add_series(index, series);
        }
        layout
    }

    /// Walks one series as NAB's `Sweeper.calcSweepScore` does.
    fn add_series(&mut self, index: usize, series: &Series) {
        let probation = probationary_length(series.len());
        let windows = series.windows();
        let mut next = 0;
        let mut current: Option<Window> = None;
        let mut previous: Option<Window> = None;
        let mut slot = None;
        for row in 0..series.len() {
            if current.is_none() && windows.get(next).is_some_and(|w| w.first_row == row) {
                current = Some(windows[next]);
                next += 1;
                slot = None;
            }
            if row >= probation {
                let place = match current {
                    Some(window) => {
                        let position =
                            -((window.last_row - row + 1) as f64) / window.width() as f64;
                        // A window's first scored row gives it a slot.
                        let slot = *slot.get_or_insert_with(|| {
                            self.windows += 1;
                            self.windows - 1
                        });
                        self.window_rows += 1;
                        Place::Window {
                            slot,
                            unweighted: scaled_sigmoid(position),
                        }
                    }
                    None => Place::Outside {
                        unweighted: match previous {
                            None => -1.0,
                            Some(window) => {
                                let past = (row - window.last_row) as f64;
                                scaled_sigmoid(past / (window.width() as f64 - 1.0))
                            }
                        },
                    },
                };
                self.rows.push(ScoredRow {
                    series: index,
                    row,
                    place,
                });
            }
            if let Some(window) = current
                && window.last_row == row
            {
                previous = current;
                current = None;
            }
        }
    }
}

/// A profile's weights, with NAB's normaliser for true positives.
#[derive(Debug)]
struct Weights {
    tp: f64,
    fp: f64,
    fn_: f64,
    max_tp: f64,
}

impl Weights {
    fn new(profile: &Profile) -> Self {
        Self {
            tp: profile.tp_weight,
            fp: profile.fp_weight,
            fn_: profile.fn_weight,
            max_tp: scaled_sigmoid(-1.0),
        }
    }
}

/// The score terms and counts for one set of detections.
#[derive(Debug, Clone)]
struct Tally {
    false_positive_sum: f64,
    /// Per window slot: `-fnWeight`, or the best true-positive weight among its detections.
    window_terms: Vec<f64>,
    detected: Vec<bool>,
    true_positives: usize,
    false_positives: usize,
    false_negatives: usize,
    true_negatives: usize,
}

impl Tally {
    /// Nothing detected: every window a miss.
    fn new(layout: &Layout, weights: &Weights) -> Self {
        Self {
            false_positive_sum: 0.0,
            window_terms: vec![-weights.fn_; layout.windows],
            detected: vec![false; layout.windows],
            true_positives: 0,
            false_positives: 0,
            false_negatives: layout.window_rows,
            true_negatives: layout.rows.len() - layout.window_rows,
        }
    }

    fn detect(&mut self, place: Place, weights: &Weights) {
        match place {
            Place::Window { slot, unweighted } => {
                self.true_positives += 1;
                self.false_negatives -= 1;
                let weighted = unweighted * weights.tp / weights.max_tp;
                self.window_terms[slot] = self.window_terms[slot].max(weighted);
                self.detected[slot] = true;
            }
            Place::Outside { unweighted } => {
                self.false_positives += 1;
                self.true_negatives -= 1;
                self.false_positive_sum += unweighted * weights.fp;
            }
        }
    }

    /// The raw score, summed in a fixed order (false positives, then windows in order), so the
    /// sweep and the direct evaluation agree and "never fires" is exactly the null score.
    fn raw(&self) -> f64 {
        self.window_terms
            .iter()
            .fold(self.false_positive_sum, |sum, term| sum + term)
    }

    fn result(
        self,
        corpus: &Corpus,
        profile: &Profile,
        threshold: f64,
        raw: f64,
        null: f64,
    ) -> ProfileResult {
        let perfect = corpus.window_count() as f64 * profile.tp_weight;
        let detected_windows = self.detected.iter().filter(|&&d| d).count();
        ProfileResult {
            profile: profile.name.clone(),
            score: 100.0 * (raw - null) / (perfect - null),
            threshold,
            raw_score: raw,
            null_score: null,
            perfect_score: perfect,
            true_positives: self.true_positives,
            false_positives: self.false_positives,
            false_negatives: self.false_negatives,
            true_negatives: self.true_negatives,
            detected_windows,
            missed_windows: self.detected.len() - detected_windows,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nab::Series;

    fn standard() -> Profile {
        Profile {
            name: "standard".to_owned(),
            tp_weight: 1.0,
            fp_weight: 0.11,
            fn_weight: 1.0,
            tn_weight: 1.0,
        }
    }

    fn assert_close(actual: f64, expected: f64) {
        assert!(
            (actual - expected).abs() < 1e-12,
            "{actual} is not {expected}"
        );
    }

    /// 30 rows five minutes apart, probation 4 rows (floor(4.5)), one window on rows 8..=11.
    fn one_window_corpus() -> Corpus {
        let start = 1_396_310_400_000_000;
        let step = 300_000_000;
        let timestamps: Vec<i64> = (0..30).map(|i| start + i * step).collect();
        let window = (timestamps[8], timestamps[11]);
        let series =
            Series::new("synthetic.csv", timestamps, vec![0.0; 30], &[window]).expect("valid");
        Corpus::from_series(vec![series])
    }

    fn scores_with(corpus: &Corpus, set: &[(usize, f64)], rest: f64) -> DetectorScores {
        let mut scores = vec![rest; 30];
        for &(row, score) in set {
            scores[row] = score;
        }
        DetectorScores::new(corpus, vec![scores]).expect("one series of 30 rows")
    }

    #[test]
    fn scaled_sigmoid_matches_nab() {
        // Values from NAB's Python `scaledSigmoid`.
        assert_close(scaled_sigmoid(-1.0), 0.986_614_298_151_430_5);
        assert_close(scaled_sigmoid(-0.75), 0.954_045_260_179_948_7);
        assert_close(scaled_sigmoid(-0.5), 0.848_283_639_957_513_1);
        assert_eq!(scaled_sigmoid(0.0), 0.0);
        assert_close(scaled_sigmoid(1.0), -0.986_614_298_151_430_3);
        assert_close(scaled_sigmoid(2.0 / 3.0), -0.931_109_608_667_577_6);
        // 3.0 itself is still on the curve; beyond it the value is -1.
        assert_close(scaled_sigmoid(3.0), -0.999_999_388_195_546_1);
        assert_eq!(scaled_sigmoid(3.000_001), -1.0);
        assert_eq!(scaled_sigmoid(f64::INFINITY), -1.0);
    }

    #[test]
    fn probation_is_fifteen_percent_up_to_750_rows() {
        assert_eq!(probationary_length(20), 3);
        assert_eq!(probationary_length(30), 4);
        assert_eq!(probationary_length(1882), 282);
        assert_eq!(probationary_length(4032), 604);
        assert_eq!(probationary_length(5000), 750);
        assert_eq!(probationary_length(22_695), 750);
    }

    #[test]
    fn fixed_threshold_on_one_window() {
        let corpus = one_window_corpus();
        // Row 3 is probationary; 5 precedes the window; 9 and 10 are in it (9 counts);
        // 13, 20 and 25 are 2, 9 and 14 rows past it (window width 4, so positions 2/3, 3, 14/3).
        let scores = scores_with(
            &corpus,
            &[
                (3, 1.0),
                (5, 1.0),
                (9, 1.0),
                (10, 1.0),
                (13, 1.0),
                (20, 1.0),
                (25, 1.0),
            ],
            0.0,
        );
        let result = score_at_threshold(&corpus, &scores, &standard(), 0.5);
        let max_tp = scaled_sigmoid(-1.0);
        let expected = -0.11
            + scaled_sigmoid(-0.75) / max_tp
            + 0.11 * scaled_sigmoid(2.0 / 3.0)
            + 0.11 * scaled_sigmoid(3.0)
            - 0.11;
        assert_close(result.raw_score, expected);
        // The same sum, as NAB's Python computes it.
        assert_close(result.raw_score, 0.534_567_098_145_116_9);
        assert_eq!(result.null_score, -1.0);
        assert_eq!(result.perfect_score, 1.0);
        assert_close(result.score, 100.0 * (expected + 1.0) / 2.0);
        // 26 scored rows: 4 in the window, 22 outside.
        assert_eq!(
            (
                result.true_positives,
                result.false_negatives,
                result.false_positives,
                result.true_negatives
            ),
            (2, 2, 4, 18)
        );
        assert_eq!((result.detected_windows, result.missed_windows), (1, 0));
    }

    #[test]
    fn a_detection_at_the_window_start_scores_tp_weight_exactly() {
        let corpus = one_window_corpus();
        let scores = scores_with(&corpus, &[(8, 1.0)], 0.0);
        let result = score(&corpus, &scores, &standard());
        assert_eq!(result.threshold, 1.0);
        assert_eq!(result.raw_score, 1.0);
        assert_eq!(result.score, 100.0);
    }

    #[test]
    fn the_sweep_picks_the_best_threshold() {
        let corpus = one_window_corpus();
        // 0.9: the window at row 9; 0.8 adds a far false positive; 0.1 fires everywhere.
        let scores = scores_with(&corpus, &[(9, 0.9), (25, 0.8)], 0.1);
        let result = score(&corpus, &scores, &standard());
        assert_eq!(result.threshold, 0.9);
        assert_eq!(
            result.raw_score,
            scaled_sigmoid(-0.75) * 1.0 / scaled_sigmoid(-1.0)
        );
        assert_close(result.raw_score, 0.966_989_087_800_060_5);
        assert_eq!(result.false_positives, 0);
        for threshold in [1.1, 0.8, 0.1] {
            assert!(raw_score_at(&corpus, &scores, &standard(), threshold) < result.raw_score);
        }
    }

    #[test]
    fn ties_go_to_the_highest_threshold() {
        let corpus = one_window_corpus();
        // A second, later detection in the window changes nothing: 0.9 and 0.7 tie.
        let scores = scores_with(&corpus, &[(8, 0.9), (10, 0.7)], 0.0);
        let result = score(&corpus, &scores, &standard());
        assert_eq!(result.threshold, 0.9);
        assert_eq!(raw_score_at(&corpus, &scores, &standard(), 0.7), 1.0);
    }

    #[test]
    fn never_firing_keeps_the_no_detection_threshold() {
        let corpus = one_window_corpus();
        let scores = scores_with(&corpus, &[], 0.5);
        let result = score(&corpus, &scores, &standard());
        assert_eq!(result.threshold, NO_DETECTION_THRESHOLD);
        assert_eq!(result.raw_score, -1.0);
        assert_eq!(result.score, 0.0);
        assert_eq!((result.detected_windows, result.missed_windows), (0, 1));
    }

    #[test]
    fn probationary_rows_of_a_window_are_not_scored() {
        // 20 rows, probation 3 rows; the window covers rows 1..=4, so only rows 3 and 4 count.
        let timestamps: Vec<i64> = (0..20).collect();
        let series = Series::new("early.csv", timestamps, vec![0.0; 20], &[(1, 4)]).expect("ok");
        let corpus = Corpus::from_series(vec![series]);
        let mut at_start = vec![0.0; 20];
        at_start[1] = 1.0;
        let scores = DetectorScores::new(&corpus, vec![at_start]).expect("20 rows");
        let result = score_at_threshold(&corpus, &scores, &standard(), 0.5);
        // The detection is probationary, so the window is missed.
        assert_eq!(result.raw_score, -1.0);
        assert_eq!((result.true_positives, result.false_negatives), (0, 2));
        let mut in_scored_part = vec![0.0; 20];
        in_scored_part[3] = 1.0;
        let scores = DetectorScores::new(&corpus, vec![in_scored_part]).expect("20 rows");
        let result = score_at_threshold(&corpus, &scores, &standard(), 0.5);
        // Row 3 is at position -(4 - 3 + 1) / 4 = -0.5.
        assert_eq!(
            result.raw_score,
            scaled_sigmoid(-0.5) * 1.0 / scaled_sigmoid(-1.0)
        );
    }
}
