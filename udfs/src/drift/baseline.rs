//! A stored reference for drift scoring: built once by an aggregate over a reference period,
//! persisted as bytes (a column in a baselines table or a file), and compared with every window.
//!
//! A numeric baseline holds equal-frequency bins with the reference's counts (for PSI,
//! Jensen-Shannon, Hellinger) and a sorted sample of at most [`MAX_SAMPLE`] values (for KS and
//! Wasserstein). A categorical baseline holds counts per category (for chi-square, L-infinity).

use std::collections::BTreeMap;

use super::binned::Bins;
use super::samples::SortedSample;

/// Reference values kept for sample statistics; larger references are thinned evenly.
pub const MAX_SAMPLE: usize = 10_000;
/// Equal-frequency bins of a numeric baseline (Evidently's default for PSI is 10).
pub const DEFAULT_BINS: usize = 10;

const NUMERIC_TAG: u8 = 1;
const CATEGORICAL_TAG: u8 = 2;

/// Why stored baseline bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaselineError {
    #[error("baseline bytes end early: {0} more needed")]
    Truncated(usize),
    #[error("unknown baseline kind tag {0}")]
    UnknownKind(u8),
    #[error("baseline category is not UTF-8")]
    InvalidCategory,
}

/// A numeric reference.
#[derive(Debug, Clone, PartialEq)]
pub struct NumericBaseline {
    pub bins: Bins,
    pub counts: Vec<f64>,
    pub sample: SortedSample,
}

/// A stored reference of either kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Baseline {
    Numeric(NumericBaseline),
    Categorical(BTreeMap<String, f64>),
}

impl NumericBaseline {
    /// Builds from all reference values.
    pub fn from_values(values: &[f64], bins: usize) -> Self {
        let bins = Bins::quantiles(values, bins);
        let counts = bins.histogram(values);
        let sample = SortedSample::new(thin(values, MAX_SAMPLE));
        NumericBaseline {
            bins,
            counts,
            sample,
        }
    }
}

/// Every k-th value so that at most `max` remain, spread over the whole input.
pub fn thin(values: &[f64], max: usize) -> Vec<f64> {
    if values.len() <= max {
        return values.to_vec();
    }
    (0..max).map(|i| values[i * values.len() / max]).collect()
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], BaselineError> {
        if self.0.len() < n {
            return Err(BaselineError::Truncated(n - self.0.len()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<usize, BaselineError> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize)
    }

    fn f64s(&mut self) -> Result<Vec<f64>, BaselineError> {
        let n = self.u32()?;
        let bytes = self.take(
            n.checked_mul(8)
                .ok_or(BaselineError::Truncated(usize::MAX))?,
        )?;
        Ok(bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect())
    }
}

fn put_f64s(out: &mut Vec<u8>, values: &[f64]) {
    out.extend_from_slice(&(values.len() as u32).to_le_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

impl Baseline {
    /// Serialises: a kind tag, then length-prefixed little-endian arrays.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Baseline::Numeric(numeric) => {
                out.push(NUMERIC_TAG);
                put_f64s(&mut out, numeric.bins.edges());
                put_f64s(&mut out, &numeric.counts);
                put_f64s(&mut out, numeric.sample.values());
            }
            Baseline::Categorical(counts) => {
                out.push(CATEGORICAL_TAG);
                out.extend_from_slice(&(counts.len() as u32).to_le_bytes());
                for (category, count) in counts {
                    out.extend_from_slice(&(category.len() as u32).to_le_bytes());
                    out.extend_from_slice(category.as_bytes());
                    out.extend_from_slice(&count.to_le_bytes());
                }
            }
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BaselineError> {
        let mut reader = Reader(bytes);
        match reader.take(1)?[0] {
            NUMERIC_TAG => {
                let bins = Bins::from_edges(reader.f64s()?);
                let counts = reader.f64s()?;
                let sample = SortedSample::new(reader.f64s()?);
                Ok(Baseline::Numeric(NumericBaseline {
                    bins,
                    counts,
                    sample,
                }))
            }
            CATEGORICAL_TAG => {
                let n = reader.u32()?;
                let mut counts = BTreeMap::new();
                for _ in 0..n {
                    let len = reader.u32()?;
                    let category = std::str::from_utf8(reader.take(len)?)
                        .map_err(|_| BaselineError::InvalidCategory)?
                        .to_owned();
                    let raw = reader.take(8)?;
                    let count = f64::from_le_bytes([
                        raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], raw[6], raw[7],
                    ]);
                    counts.insert(category, count);
                }
                Ok(Baseline::Categorical(counts))
            }
            tag => Err(BaselineError::UnknownKind(tag)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_kinds_round_trip_through_bytes() {
        let values: Vec<f64> = (0..50_000).map(|i| (i % 977) as f64 * 0.5).collect();
        let numeric = Baseline::Numeric(NumericBaseline::from_values(&values, DEFAULT_BINS));
        let Baseline::Numeric(inner) = &numeric else {
            unreachable!()
        };
        assert_eq!(inner.sample.len(), MAX_SAMPLE);
        assert_eq!(inner.counts.iter().sum::<f64>(), 50_000.0);
        assert_eq!(Baseline::from_bytes(&numeric.to_bytes()), Ok(numeric));
        let categorical = Baseline::Categorical(
            [("gpu".to_owned(), 3.0), ("cpu".to_owned(), 9.0)]
                .into_iter()
                .collect(),
        );
        assert_eq!(
            Baseline::from_bytes(&categorical.to_bytes()),
            Ok(categorical)
        );
    }

    #[test]
    fn corrupt_bytes_are_errors_not_panics() {
        assert_eq!(Baseline::from_bytes(&[]), Err(BaselineError::Truncated(1)));
        assert_eq!(
            Baseline::from_bytes(&[9]),
            Err(BaselineError::UnknownKind(9))
        );
        assert!(Baseline::from_bytes(&[1, 255, 255, 255, 255]).is_err());
    }
}
