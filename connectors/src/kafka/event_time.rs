//! Event-time sanity at the source. A record stamped further ahead of the reader's clock than
//! the source allows ([`SourceConfig::max_future_skew`](super::SourceConfig::max_future_skew))
//! comes from a producer with a wrong clock or time unit, not from the future: read, it would
//! move the watermark that far ahead, close every open window at once and make every current
//! record late. The source dead-letters it instead ([`FUTURE_TIMESTAMP`]), and its event time
//! never reaches the watermark.

use std::time::Duration;

/// Reason code of a record stamped too far ahead of the reader's clock.
pub const FUTURE_TIMESTAMP: &str = "future_timestamp";

/// Five minutes: the event time a record may have past the reader's clock, unless the source
/// says otherwise. Producers' clocks drift by seconds, not minutes.
pub const DEFAULT_MAX_FUTURE_SKEW: Duration = Duration::from_secs(5 * 60);

/// A record whose event time is further ahead of the reader's clock than the source allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the record's event time ({event_time_us} µs since the Unix epoch) is {} s ahead of this \
     reader's clock, more than the source's max_future_skew_ms of {}: fix the producer's clock \
     or its time unit (event times are microseconds since the Unix epoch), or raise \
     max_future_skew_ms (0 turns the check off)",
    (.event_time_us - .now_us) / 1_000_000,
    .max_skew_us / 1_000
)]
pub(crate) struct FutureTimestamp {
    pub(crate) event_time_us: i64,
    /// The reader's clock when it read the record, µs since the Unix epoch.
    pub(crate) now_us: i64,
    pub(crate) max_skew_us: i64,
}

/// `Ok` unless `event_time_us` is more than `max_skew` past `now_us`; no bound when `None`.
pub(crate) fn check_future_skew(
    event_time_us: i64,
    now_us: i64,
    max_skew: Option<Duration>,
) -> Result<(), FutureTimestamp> {
    let Some(max_skew) = max_skew else {
        return Ok(());
    };
    let max_skew_us = i64::try_from(max_skew.as_micros()).unwrap_or(i64::MAX);
    if event_time_us <= now_us.saturating_add(max_skew_us) {
        return Ok(());
    }
    Err(FutureTimestamp {
        event_time_us,
        now_us,
        max_skew_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_608_000_000_000;
    const MINUTE: i64 = 60_000_000;

    #[test]
    fn records_up_to_the_skew_ahead_pass_and_later_ones_are_refused_with_a_fix() {
        let skew = Some(DEFAULT_MAX_FUTURE_SKEW);
        assert_eq!(check_future_skew(NOW - 60 * MINUTE, NOW, skew), Ok(()));
        assert_eq!(check_future_skew(NOW + 5 * MINUTE, NOW, skew), Ok(()));
        let refused = check_future_skew(NOW + 24 * 60 * MINUTE, NOW, skew)
            .expect_err("a day ahead is over five minutes");
        assert_eq!(refused.max_skew_us, 5 * MINUTE);
        let reason = refused.to_string();
        assert!(reason.contains("86400 s ahead"), "{reason}");
        assert!(reason.contains("max_future_skew_ms of 300000"), "{reason}");
        assert!(check_future_skew(NOW + 5 * MINUTE + 1, NOW, skew).is_err());
    }

    #[test]
    fn no_bound_lets_everything_through_and_huge_bounds_do_not_overflow() {
        assert_eq!(check_future_skew(i64::MAX, NOW, None), Ok(()));
        assert_eq!(
            check_future_skew(i64::MAX, NOW, Some(Duration::MAX)),
            Ok(())
        );
    }
}
