//! The NAB data: series, their labelled windows, and the scoring profiles.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use opsloop_schemas::calendar::{civil_from_days, days_from_civil, days_in_month};
use serde::Deserialize;

use super::NabError;

/// The labelled series of a NAB data folder, in the order of their names.
#[derive(Debug, Clone)]
pub struct Corpus {
    series: Vec<Series>,
    windows: usize,
}

impl Corpus {
    /// Loads every series named in `dir/labels/combined_windows.json` from `dir/data/`.
    pub fn load(dir: &Path) -> Result<Self, NabError> {
        let labels_path = dir.join("labels").join("combined_windows.json");
        let labels: BTreeMap<String, Vec<[String; 2]>> = read_json(&labels_path)?;
        let series = labels
            .into_iter()
            .map(|(name, windows)| {
                let (timestamps, values) = read_csv(&dir.join("data").join(&name))?;
                let windows = windows
                    .iter()
                    .map(|[start, end]| Ok((parse_or_err(start)?, parse_or_err(end)?)))
                    .collect::<Result<Vec<_>, NabError>>()?;
                Series::new(name, timestamps, values, &windows)
            })
            .collect::<Result<Vec<_>, NabError>>()?;
        Ok(Self::from_series(series))
    }

    /// A corpus of series built in memory.
    pub fn from_series(series: Vec<Series>) -> Self {
        let windows = series.iter().map(|s| s.windows.len()).sum();
        Self { series, windows }
    }

    /// The series, in order.
    pub fn series(&self) -> &[Series] {
        &self.series
    }

    /// The number of labelled windows over all series.
    pub fn window_count(&self) -> usize {
        self.windows
    }

    /// The number of rows over all series.
    pub fn row_count(&self) -> usize {
        self.series.iter().map(Series::len).sum()
    }
}

/// One series: its rows and its anomaly windows.
#[derive(Debug, Clone)]
pub struct Series {
    name: String,
    timestamps: Vec<i64>,
    values: Vec<f64>,
    windows: Vec<Window>,
}

impl Series {
    /// Builds a series from its rows and its windows as `(start, end)` timestamps in
    /// microseconds; each bound must be the timestamp of a row, and the windows in order and
    /// apart.
    pub fn new(
        name: impl Into<String>,
        timestamps: Vec<i64>,
        values: Vec<f64>,
        windows: &[(i64, i64)],
    ) -> Result<Self, NabError> {
        let name = name.into();
        if timestamps.len() != values.len() {
            return Err(NabError::ColumnLengths {
                series: name,
                timestamps: timestamps.len(),
                values: values.len(),
            });
        }
        // NAB finds a bound with `timestamps.index`: the first row with that timestamp.
        let row_of = |timestamp_us: i64| {
            timestamps
                .iter()
                .position(|&t| t == timestamp_us)
                .ok_or_else(|| NabError::WindowBound {
                    series: name.clone(),
                    timestamp_us,
                })
        };
        let mut resolved: Vec<Window> = Vec::with_capacity(windows.len());
        for &(start_us, end_us) in windows {
            let window = Window {
                start_us,
                end_us,
                first_row: row_of(start_us)?,
                last_row: row_of(end_us)?,
            };
            let after_previous = resolved
                .last()
                .is_none_or(|p| p.last_row < window.first_row);
            if window.last_row < window.first_row || !after_previous {
                return Err(NabError::WindowOrder { series: name });
            }
            resolved.push(window);
        }
        Ok(Self {
            name,
            timestamps,
            values,
            windows: resolved,
        })
    }

    /// The path of the series under `data/`, like `realKnownCause/nyc_taxi.csv`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Row timestamps, in microseconds since the Unix epoch (UTC).
    pub fn timestamps(&self) -> &[i64] {
        &self.timestamps
    }

    /// Row values.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// The labelled anomaly windows, in order.
    pub fn windows(&self) -> &[Window] {
        &self.windows
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// Whether the series has no rows.
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }
}

/// A labelled anomaly window: its bounds and the rows they fall on (both included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_us: i64,
    pub end_us: i64,
    pub first_row: usize,
    pub last_row: usize,
}

impl Window {
    /// The number of rows in the window.
    pub fn width(&self) -> usize {
        self.last_row - self.first_row + 1
    }
}

/// A scoring profile: the weights of NAB's cost matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    pub tp_weight: f64,
    pub fp_weight: f64,
    pub fn_weight: f64,
    /// Read for completeness; NAB's scoring never uses it.
    pub tn_weight: f64,
}

/// The standard profiles first, in NAB's order; any others after them by name.
const PROFILE_ORDER: [&str; 3] = ["standard", "reward_low_FP_rate", "reward_low_FN_rate"];

impl Profile {
    /// Loads the profiles of a NAB `profiles.json`.
    pub fn load_all(path: &Path) -> Result<Vec<Profile>, NabError> {
        let file: BTreeMap<String, ProfileFile> = read_json(path)?;
        let mut profiles: Vec<Profile> = file
            .into_iter()
            .map(|(name, profile)| {
                let ProfileFile {
                    cost_matrix:
                        CostMatrix {
                            tp_weight,
                            fp_weight,
                            fn_weight,
                            tn_weight,
                        },
                } = profile;
                Profile {
                    name,
                    tp_weight,
                    fp_weight,
                    fn_weight,
                    tn_weight,
                }
            })
            .collect();
        let rank = |p: &Profile| {
            PROFILE_ORDER
                .iter()
                .position(|&n| n == p.name)
                .unwrap_or(PROFILE_ORDER.len())
        };
        profiles.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.name.cmp(&b.name)));
        Ok(profiles)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    #[serde(rename = "CostMatrix")]
    cost_matrix: CostMatrix,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CostMatrix {
    tp_weight: f64,
    fp_weight: f64,
    fn_weight: f64,
    tn_weight: f64,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, NabError> {
    let text = read_text(path)?;
    serde_json::from_str(&text).map_err(|source| NabError::Json {
        path: path.to_owned(),
        source,
    })
}

fn read_text(path: &Path) -> Result<String, NabError> {
    std::fs::read_to_string(path).map_err(|source| NabError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Reads a NAB data file: a `timestamp,value` header, then one row per line.
fn read_csv(path: &Path) -> Result<(Vec<i64>, Vec<f64>), NabError> {
    let text = read_text(path)?;
    let error = |line: usize, message: String| NabError::Csv {
        path: PathBuf::from(path),
        line,
        message,
    };
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if header.trim() == "timestamp,value" => {}
        _ => return Err(error(1, "the header is not \"timestamp,value\"".to_owned())),
    }
    let mut timestamps = Vec::new();
    let mut values = Vec::new();
    for (index, line) in lines {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (timestamp, value) = line
            .split_once(',')
            .ok_or_else(|| error(index + 1, "expected two columns".to_owned()))?;
        let timestamp = parse_timestamp(timestamp)
            .ok_or_else(|| error(index + 1, format!("bad timestamp {timestamp:?}")))?;
        let value = value
            .trim()
            .parse::<f64>()
            .map_err(|e| error(index + 1, format!("bad value {value:?}: {e}")))?;
        timestamps.push(timestamp);
        values.push(value);
    }
    Ok((timestamps, values))
}

fn parse_or_err(text: &str) -> Result<i64, NabError> {
    parse_timestamp(text).ok_or_else(|| NabError::Timestamp {
        text: text.to_owned(),
    })
}

const MICROS_PER_SECOND: i64 = 1_000_000;
const SECONDS_PER_DAY: i64 = 86_400;

/// Parses `YYYY-MM-DD HH:MM:SS` (or with a `T`), with an optional fraction of up to six digits,
/// as UTC, into microseconds since the Unix epoch.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    let (seconds_part, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let bytes = seconds_part.as_bytes();
    if bytes.len() != 19
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b' ' | b'T')
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = seconds_part.get(range)?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let micros = match fraction {
        None => 0,
        Some(f) if (1..=6).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()) => {
            f.parse::<i64>().ok()? * 10_i64.pow(6 - f.len() as u32)
        }
        Some(_) => return None,
    };
    let seconds =
        days_from_civil(year, month, day) * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second;
    Some(seconds * MICROS_PER_SECOND + micros)
}

/// Formats microseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC).
pub fn format_timestamp(timestamp_us: i64) -> String {
    let seconds = timestamp_us.div_euclid(MICROS_PER_SECOND);
    let micros = timestamp_us.rem_euclid(MICROS_PER_SECOND);
    let (year, month, day) = civil_from_days(seconds.div_euclid(SECONDS_PER_DAY));
    let in_day = seconds.rem_euclid(SECONDS_PER_DAY);
    let (hour, minute, second) = (in_day / 3600, in_day / 60 % 60, in_day % 60);
    let whole = format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}");
    if micros == 0 {
        whole
    } else {
        format!("{whole}.{micros:06}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nab_timestamps() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Some(0));
        // 2014-04-01 00:00:00 UTC is 1396310400 s after the epoch.
        assert_eq!(
            parse_timestamp("2014-04-01 00:00:00"),
            Some(1_396_310_400_000_000)
        );
        assert_eq!(
            parse_timestamp("2014-04-10 07:15:00.000000"),
            parse_timestamp("2014-04-10 07:15:00")
        );
        assert_eq!(
            parse_timestamp("2000-02-29T23:59:59.5"),
            Some(951_868_799 * 1_000_000 + 500_000)
        );
        for bad in [
            "2014-02-30 00:00:00",
            "2014-13-01 00:00:00",
            "2014-04-01 24:00:00",
            "2014-04-01",
            "2014-04-01 00:00:00.1234567",
            "2014-04-01 00:00:0x",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_what_it_parses() {
        for text in [
            "1970-01-01 00:00:00",
            "1969-12-31 23:59:59.999999",
            "2014-04-10 07:15:00",
            "2000-02-29 12:34:56.000100",
            "2100-03-01 00:00:00",
        ] {
            let parsed = parse_timestamp(text).expect("parses");
            assert_eq!(format_timestamp(parsed), text);
        }
    }

    #[test]
    fn rejects_bad_windows() {
        let timestamps: Vec<i64> = (0..10).collect();
        let values = vec![0.0; 10];
        let build = |windows: &[(i64, i64)]| {
            Series::new("s", timestamps.clone(), values.clone(), windows).map(|s| s.windows)
        };
        let windows = build(&[(2, 4), (6, 6)]).expect("valid windows");
        assert_eq!((windows[0].first_row, windows[0].last_row), (2, 4));
        assert_eq!(windows[1].width(), 1);
        assert!(matches!(
            build(&[(2, 11)]),
            Err(NabError::WindowBound { .. })
        ));
        assert!(matches!(
            build(&[(4, 2)]),
            Err(NabError::WindowOrder { .. })
        ));
        assert!(matches!(
            build(&[(2, 4), (4, 6)]),
            Err(NabError::WindowOrder { .. })
        ));
    }
}
