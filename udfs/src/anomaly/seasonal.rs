//! Seasonal baselines: one EWMA of level and spread per hour of day (or per day of week), so a
//! nightly batch job's load is compared with other nights, not with the afternoon.

use super::control::Ewma;

const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// Which season a value is compared within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seasonality {
    /// 24 buckets, one per UTC hour.
    HourOfDay,
    /// 7 buckets, Monday first.
    DayOfWeek,
}

impl Seasonality {
    fn buckets(self) -> usize {
        match self {
            Seasonality::HourOfDay => 24,
            Seasonality::DayOfWeek => 7,
        }
    }

    fn bucket(self, timestamp_us: i64) -> usize {
        let hours = timestamp_us.div_euclid(MICROS_PER_HOUR);
        match self {
            Seasonality::HourOfDay => hours.rem_euclid(24) as usize,
            // 1970-01-01 was a Thursday; index 0 is Monday.
            Seasonality::DayOfWeek => (hours.div_euclid(24) + 3).rem_euclid(7) as usize,
        }
    }
}

/// One EWMA per season bucket (24 or 7 per series).
#[derive(Debug, Clone)]
pub struct SeasonalBaseline {
    seasonality: Seasonality,
    buckets: Vec<Ewma>,
    min_spread: f64,
}

impl SeasonalBaseline {
    pub fn new(seasonality: Seasonality, alpha: f64, min_spread: f64) -> Self {
        SeasonalBaseline {
            seasonality,
            buckets: vec![Ewma::new(alpha, 3); seasonality.buckets()],
            min_spread,
        }
    }

    /// Scores `value` at `timestamp_us` (UTC) against its bucket's baseline (absolute z), then
    /// learns it.
    pub fn update(&mut self, timestamp_us: i64, value: f64) -> f64 {
        let bucket = &mut self.buckets[self.seasonality.bucket(timestamp_us)];
        let z = bucket.z(value, self.min_spread).abs();
        bucket.observe(value);
        z
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: i64, hour: i64) -> i64 {
        (day * 24 + hour) * MICROS_PER_HOUR
    }

    #[test]
    fn daily_peak_is_normal_once_learned_but_an_off_hour_peak_is_not() {
        let mut baseline = SeasonalBaseline::new(Seasonality::HourOfDay, 0.2, 1e-6);
        for day in 0..28 {
            for hour in 0..24 {
                let load = if hour == 14 { 100.0 } else { 10.0 };
                baseline.update(at(day, hour), load + (day % 4) as f64 * 0.5);
            }
        }
        let peak = baseline.update(at(28, 14), 100.5);
        let off_hour = baseline.update(at(28, 3), 100.0);
        assert!(peak < 3.0, "{peak}");
        assert!(off_hour > 10.0, "{off_hour}");
    }

    #[test]
    fn weekday_buckets_start_on_monday() {
        // 1970-01-05 was a Monday.
        assert_eq!(Seasonality::DayOfWeek.bucket(at(4, 12)), 0);
        assert_eq!(Seasonality::DayOfWeek.bucket(at(0, 0)), 3);
    }
}
