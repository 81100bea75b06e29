//! NannyML's threshold mode: alarm when a chunk's statistic leaves the band the reference's own
//! chunks span (their mean ± `multiplier` standard deviations, 3 by default).

/// An alarm band learned from the statistic computed on reference chunks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChunkThreshold {
    pub mean: f64,
    pub std_dev: f64,
    pub lower: f64,
    pub upper: f64,
}

/// NannyML's default number of standard deviations.
pub const DEFAULT_MULTIPLIER: f64 = 3.0;

impl ChunkThreshold {
    /// Learns the band from the statistic of each reference chunk (population std, ddof = 0).
    pub fn from_reference_chunks(chunk_statistics: &[f64], multiplier: f64) -> Option<Self> {
        let values: Vec<f64> = chunk_statistics
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let std_dev = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        Some(ChunkThreshold {
            mean,
            std_dev,
            lower: mean - multiplier * std_dev,
            upper: mean + multiplier * std_dev,
        })
    }

    /// Whether `statistic` is outside the band.
    pub fn alarms(&self, statistic: f64) -> bool {
        statistic > self.upper || statistic < self.lower
    }
}

/// Splits `reference` into chunks of `chunk_size` and applies `statistic` to each against the
/// whole reference; the values feed [`ChunkThreshold::from_reference_chunks`].
pub fn reference_chunk_statistics(
    reference: &[f64],
    chunk_size: usize,
    mut statistic: impl FnMut(&[f64]) -> f64,
) -> Vec<f64> {
    reference
        .chunks(chunk_size.max(1))
        .filter(|chunk| chunk.len() == chunk_size.max(1))
        .map(&mut statistic)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::binned::{Bins, psi};

    #[test]
    fn reference_chunks_set_a_band_that_a_drifted_chunk_leaves() {
        let reference: Vec<f64> = (0..5000).map(|i| ((i * 7919) % 1000) as f64).collect();
        let bins = Bins::quantiles(&reference, 10);
        let reference_counts = bins.histogram(&reference);
        let statistic = |chunk: &[f64]| psi(&reference_counts, &bins.histogram(chunk));
        let chunk_scores = reference_chunk_statistics(&reference, 500, statistic);
        assert_eq!(chunk_scores.len(), 10);
        let band = ChunkThreshold::from_reference_chunks(&chunk_scores, DEFAULT_MULTIPLIER)
            .expect("chunks");
        assert!(chunk_scores.iter().all(|&s| !band.alarms(s)));
        let drifted: Vec<f64> = reference[..500].iter().map(|v| v * 0.5).collect();
        assert!(band.alarms(statistic(&drifted)));
        assert!(ChunkThreshold::from_reference_chunks(&[], 3.0).is_none());
    }
}
