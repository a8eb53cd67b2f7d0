//! Open-loop pacing: call `k` is due at `k / cps` seconds after the start,
//! whether or not earlier calls have finished, so an overloaded system under
//! test shows as latency and failures rather than as a slower offered rate.
//!
//! The schedule is pure arithmetic on nanoseconds since the run started; the
//! caller passes the clock in, so tests can drive it with any time they like.

/// The schedule of one sender thread: the calls `k ≡ lane (mod lanes)` of a
/// global schedule at `cps`, bounded by a count and a duration.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// The rate in thousandths of a call per second, so that schedule times
    /// are exact integers (`k * 10^12 / cps_milli` nanoseconds).
    cps_milli: u128,
    lanes: u64,
    /// Next global call index this lane will start.
    next: u64,
    /// Global calls allowed (exclusive upper bound on `k`).
    max_calls: u64,
    /// No call is due at or after this time.
    end_ns: u64,
}

/// A call that is due: its global index and when it was scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// Global index of the call (0-based, over all lanes).
    pub index: u64,
    /// When it should start, in nanoseconds since the run started.
    pub scheduled_ns: u64,
}

impl Pacer {
    /// A lane `lane` of `lanes` of a schedule offering `cps` calls per second
    /// for `duration_ns`, stopping after `max_calls` calls over all lanes.
    /// A non-positive or non-finite `cps` schedules nothing.
    pub fn new(cps: f64, duration_ns: u64, max_calls: u64, lane: u64, lanes: u64) -> Self {
        let lanes = lanes.max(1);
        let (cps_milli, max_calls) = match milli(cps) {
            Some(m) => (m, max_calls),
            None => (1, 0),
        };
        Pacer {
            cps_milli,
            lanes,
            next: lane.min(lanes - 1),
            max_calls,
            end_ns: duration_ns,
        }
    }

    fn at(&self, index: u64) -> u64 {
        (u128::from(index) * 1_000_000_000_000 / self.cps_milli).min(u128::from(u64::MAX)) as u64
    }

    /// The next call if it is due at `now_ns`; call repeatedly until `None`.
    pub fn poll(&mut self, now_ns: u64) -> Option<Due> {
        if self.finished() {
            return None;
        }
        let t = self.at(self.next);
        if t > now_ns {
            return None;
        }
        let due = Due {
            index: self.next,
            scheduled_ns: t,
        };
        self.next += self.lanes;
        Some(due)
    }

    /// When the next call is due; `None` once the schedule is exhausted.
    pub fn next_due_ns(&self) -> Option<u64> {
        (!self.finished()).then(|| self.at(self.next))
    }

    /// True when no call is left to start.
    pub fn finished(&self) -> bool {
        self.next >= self.max_calls || self.at(self.next) >= self.end_ns
    }

    /// Stops the schedule: no further call is due.
    pub fn stop(&mut self) {
        self.max_calls = 0;
    }

    /// Calls the whole schedule (all lanes) offers: the count bound or the
    /// duration bound, whichever comes first.
    pub fn planned_total(cps: f64, duration_ns: u64, max_calls: u64) -> u64 {
        let Some(m) = milli(cps) else { return 0 };
        // Calls with index k where k * 10^12 / m < duration.
        let by_time = (u128::from(duration_ns) * m).div_ceil(1_000_000_000_000);
        (by_time.min(u128::from(u64::MAX)) as u64).min(max_calls)
    }
}

/// `cps` in thousandths, if it is a usable rate (at least 0.001).
fn milli(cps: f64) -> Option<u128> {
    let m = (cps * 1000.0).round();
    (cps.is_finite() && m >= 1.0).then_some(m.min(1e15) as u128)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn drain(p: &mut Pacer, now: u64) -> Vec<Due> {
        std::iter::from_fn(|| p.poll(now)).collect()
    }

    #[test]
    fn calls_are_due_at_index_over_rate() {
        let mut p = Pacer::new(1000.0, 10 * S, u64::MAX, 0, 1);
        let due = drain(&mut p, 0);
        assert_eq!(
            due,
            vec![Due {
                index: 0,
                scheduled_ns: 0
            }]
        );
        let due = drain(&mut p, 2_500_000);
        assert_eq!(
            due.iter().map(|d| d.scheduled_ns).collect::<Vec<_>>(),
            vec![1_000_000, 2_000_000]
        );
        assert_eq!(p.next_due_ns(), Some(3_000_000));
    }

    #[test]
    fn a_late_clock_releases_every_overdue_call_at_once() {
        // Open loop: a thread that woke up late owes every call it missed.
        let mut p = Pacer::new(100.0, 10 * S, u64::MAX, 0, 1);
        assert_eq!(drain(&mut p, S - 1).len(), 100);
    }

    #[test]
    fn lanes_split_the_schedule_without_overlap() {
        let mut a = Pacer::new(300.0, S, u64::MAX, 0, 3);
        let mut b = Pacer::new(300.0, S, u64::MAX, 1, 3);
        let mut c = Pacer::new(300.0, S, u64::MAX, 2, 3);
        let mut all: Vec<u64> = [&mut a, &mut b, &mut c]
            .into_iter()
            .flat_map(|p| drain(p, S).into_iter().map(|d| d.index))
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..300).collect::<Vec<_>>());
    }

    #[test]
    fn duration_bounds_the_schedule() {
        let mut p = Pacer::new(10.0, 2 * S, u64::MAX, 0, 1);
        assert_eq!(drain(&mut p, 100 * S).len(), 20);
        assert!(p.finished());
        assert_eq!(Pacer::planned_total(10.0, 2 * S, u64::MAX), 20);
    }

    #[test]
    fn count_bounds_the_schedule() {
        let mut p = Pacer::new(1e6, 100 * S, 7, 0, 1);
        assert_eq!(drain(&mut p, 100 * S).len(), 7);
        assert_eq!(Pacer::planned_total(1e6, 100 * S, 7), 7);
    }

    #[test]
    fn fractional_rates_are_kept() {
        let mut p = Pacer::new(0.5, 10 * S, u64::MAX, 0, 1);
        let due = drain(&mut p, 10 * S);
        assert_eq!(
            due.iter().map(|d| d.scheduled_ns).collect::<Vec<_>>(),
            vec![0, 2 * S, 4 * S, 6 * S, 8 * S]
        );
    }

    #[test]
    fn zero_rate_schedules_nothing() {
        let mut p = Pacer::new(0.0, 10 * S, 100, 0, 1);
        assert!(p.poll(10 * S).is_none());
        assert!(p.finished());
    }

    #[test]
    fn stop_ends_the_schedule() {
        let mut p = Pacer::new(1000.0, 10 * S, u64::MAX, 0, 1);
        p.stop();
        assert!(p.poll(S).is_none() && p.next_due_ns().is_none());
    }
}
