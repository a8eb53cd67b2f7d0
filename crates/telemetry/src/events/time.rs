//! RFC 3339 timestamps in UTC with milliseconds (`2024-05-01T12:00:00.123Z`),
//! the form SIEMs parse without a format hint.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The last millisecond RFC 3339 can write: its years have four digits.
const LAST: Duration = Duration::from_millis(253_402_300_799_999);

/// Formats `t` as RFC 3339 UTC with milliseconds. A clock set before 1970
/// writes the epoch, one set past 9999 the last millisecond of 9999, so a
/// wrong clock never stops the event log.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let t = t.clamp(UNIX_EPOCH, UNIX_EPOCH + LAST);
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> String {
        rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms))
    }

    /// Year, month and day of an `rfc3339_millis` string.
    fn date(stamp: &str) -> (u32, u32, u32) {
        let field = |range: std::ops::Range<usize>| stamp[range].parse().unwrap();
        (field(0..4), field(5..7), field(8..10))
    }

    #[test]
    fn epoch_is_1970() {
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn leap_day_2000() {
        assert_eq!(at(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn milliseconds_are_kept() {
        assert_eq!(at(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn last_second_of_a_year() {
        assert_eq!(at(1_735_689_599_999), "2024-12-31T23:59:59.999Z");
    }

    #[test]
    fn a_clock_before_1970_writes_the_epoch() {
        let before = UNIX_EPOCH - Duration::from_secs(86_400);
        assert_eq!(rfc3339_millis(before), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn a_clock_past_9999_writes_the_last_millisecond_of_9999() {
        assert_eq!(at(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        assert_eq!(at(253_402_300_800_000), "9999-12-31T23:59:59.999Z");
        assert_eq!(at(u64::MAX / 4), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn every_day_over_four_centuries_follows_the_previous() {
        // Walks 1970..2370 day by day at midnight: each date is the day after
        // the last, and the clock reads 00:00:00.000.
        let mut prev = date(&at(0));
        for d in 1..146_097u64 {
            let stamp = at(d * 86_400_000);
            assert!(stamp.ends_with("T00:00:00.000Z"), "{stamp}");
            let next = date(&stamp);
            let (y, m, day) = prev;
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ][m as usize - 1];
            let expected = if day < len {
                (y, m, day + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
            assert_eq!(next, expected, "day {d}: {stamp}");
            prev = next;
        }
    }
}
