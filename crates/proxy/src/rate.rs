//! Rate limits as a generic cell rate algorithm (GCRA): one `u64` of state
//! per limited thing, integer arithmetic, the clock passed in. Equivalent to
//! a token bucket of `burst` tokens refilled at `rate` per second.

/// A limit: `rate` events per second with bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Nanoseconds one event costs; `u64::MAX` when the rate is zero.
    interval_ns: u64,
    /// How far ahead of `now` the schedule may run (the burst allowance).
    tolerance_ns: u64,
}

/// The state one limited thing keeps: its theoretical arrival time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateState {
    tat: u64,
}

impl RateLimit {
    /// `rate` per second, bursts of `burst` (at least 1). A rate of zero
    /// admits nothing.
    pub fn per_second(rate: u32, burst: u32) -> Self {
        if rate == 0 {
            return RateLimit {
                interval_ns: u64::MAX,
                tolerance_ns: 0,
            };
        }
        let interval_ns = 1_000_000_000 / rate as u64;
        let interval_ns = interval_ns.max(1);
        RateLimit {
            interval_ns,
            tolerance_ns: interval_ns * (burst.max(1) as u64 - 1),
        }
    }

    /// One event per `interval_ns` nanoseconds, bursts of up to `burst`
    /// (for rates slower than one per second).
    pub fn per_ns(interval_ns: u64, burst: u32) -> Self {
        let interval_ns = interval_ns.max(1);
        RateLimit {
            interval_ns,
            tolerance_ns: interval_ns.saturating_mul(burst.max(1) as u64 - 1),
        }
    }

    /// A limit that admits everything.
    pub fn unlimited() -> Self {
        RateLimit {
            interval_ns: 0,
            tolerance_ns: 0,
        }
    }

    /// Admits one event at `now` (nanoseconds, monotonic) if the limit
    /// allows it, and charges it to `state`.
    pub fn admit(&self, state: &mut RateState, now: u64) -> bool {
        if self.interval_ns == u64::MAX {
            return false;
        }
        let tat = state.tat.max(now);
        if tat - now > self.tolerance_ns {
            return false;
        }
        state.tat = tat + self.interval_ns;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_burst_is_admitted_then_the_rate_holds() {
        let limit = RateLimit::per_second(10, 5);
        let mut s = RateState::default();
        let t0 = 100 * SEC;
        let burst = (0..20).filter(|_| limit.admit(&mut s, t0)).count();
        assert_eq!(burst, 5);
        // Over the next second at 1 ms steps, exactly 10 more are admitted.
        let more = (1..=1000)
            .filter(|ms| limit.admit(&mut s, t0 + ms * 1_000_000))
            .count();
        assert_eq!(more, 10);
    }

    #[test]
    fn zero_rate_admits_nothing() {
        let limit = RateLimit::per_second(0, 100);
        let mut s = RateState::default();
        assert!(!(0..10).any(|i| limit.admit(&mut s, i * SEC)));
    }

    #[test]
    fn unlimited_admits_everything() {
        let limit = RateLimit::unlimited();
        let mut s = RateState::default();
        assert!((0..10_000).all(|_| limit.admit(&mut s, 5)));
    }

    #[test]
    fn idle_time_restores_only_the_burst() {
        let limit = RateLimit::per_second(100, 3);
        let mut s = RateState::default();
        assert!(limit.admit(&mut s, SEC));
        let after_idle = (0..10).filter(|_| limit.admit(&mut s, 1000 * SEC)).count();
        assert_eq!(after_idle, 3);
    }
}
