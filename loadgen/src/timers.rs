//! Timers for many transactions at once, without a heap or allocation in the
//! steady state, plus the RFC 3261 timer values.
//!
//! Every timer of a run has one of a few fixed delays (T1, 2·T1, ... T2, the
//! hold time, the answer delay, Timer B). Timers with the same delay expire in
//! the order they were set, so each delay gets a FIFO lane and the earliest
//! timer is always at the front of some lane. Cancelling is lazy: an entry
//! carries a token the owner compares with its current one when it fires.

use std::collections::VecDeque;

/// RFC 3261 section 17.1.1.1 timer values for one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SipTimers {
    /// Round-trip estimate, 500 ms by default.
    pub t1_ns: u64,
    /// Longest retransmit interval of non-INVITE requests and 2xx answers, 4 s.
    pub t2_ns: u64,
    /// Transaction timeout (Timer B and F), 64·T1 by default.
    pub timeout_ns: u64,
}

impl Default for SipTimers {
    fn default() -> Self {
        SipTimers {
            t1_ns: 500_000_000,
            t2_ns: 4_000_000_000,
            timeout_ns: 64 * 500_000_000,
        }
    }
}

impl SipTimers {
    /// Interval before retransmission number `sent` (1 = the first
    /// retransmission) of an INVITE: Timer A starts at T1 and doubles
    /// (section 17.1.1.2), without a cap.
    pub fn invite_interval(&self, sent: u32) -> u64 {
        self.t1_ns
            .saturating_mul(1u64 << (sent.saturating_sub(1)).min(32))
    }

    /// Interval before retransmission number `sent` of a non-INVITE request
    /// (Timer E, section 17.1.2.2) or of a 2xx answer to an INVITE (section
    /// 13.3.1.4): T1 doubling, capped at T2.
    pub fn capped_interval(&self, sent: u32) -> u64 {
        self.invite_interval(sent).min(self.t2_ns)
    }
}

/// Timers of type `T`, in FIFO lanes of equal delay.
#[derive(Debug)]
pub struct TimerLanes<T> {
    lanes: Vec<Lane<T>>,
}

#[derive(Debug)]
struct Lane<T> {
    delay_ns: u64,
    queue: VecDeque<(u64, T)>,
}

impl<T> Default for TimerLanes<T> {
    fn default() -> Self {
        TimerLanes { lanes: Vec::new() }
    }
}

impl<T> TimerLanes<T> {
    /// No timers; `capacity` entries per lane are reserved on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a timer firing `delay_ns` after `now_ns`, carrying `item`.
    pub fn push(&mut self, now_ns: u64, delay_ns: u64, item: T) {
        let deadline = now_ns.saturating_add(delay_ns);
        let lane = match self.lanes.iter().position(|l| l.delay_ns == delay_ns) {
            Some(i) => i,
            None => {
                self.lanes.push(Lane {
                    delay_ns,
                    queue: VecDeque::with_capacity(1024),
                });
                self.lanes.len() - 1
            }
        };
        // A lane is in deadline order as long as `now_ns` never goes back;
        // the clock is monotonic, and a stale `now` only fires a timer late.
        self.lanes[lane].queue.push_back((deadline, item));
    }

    /// The earliest timer that has expired at `now_ns`, with its deadline.
    pub fn pop_expired(&mut self, now_ns: u64) -> Option<(u64, T)> {
        let mut best: Option<(usize, u64)> = None;
        for (i, lane) in self.lanes.iter().enumerate() {
            if let Some(&(deadline, _)) = lane.queue.front() {
                if deadline <= now_ns && best.is_none_or(|(_, d)| deadline < d) {
                    best = Some((i, deadline));
                }
            }
        }
        best.and_then(|(i, _)| self.lanes[i].queue.pop_front())
    }

    /// When the earliest timer fires, if any is set.
    pub fn next_deadline(&self) -> Option<u64> {
        self.lanes
            .iter()
            .filter_map(|l| l.queue.front().map(|&(d, _)| d))
            .min()
    }

    /// Timers set (including cancelled ones not yet popped).
    pub fn len(&self) -> usize {
        self.lanes.iter().map(|l| l.queue.len()).sum()
    }

    /// True when no timer is set.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn invite_retransmissions_double_without_cap() {
        let t = SipTimers::default();
        let got: Vec<u64> = (1..=7).map(|n| t.invite_interval(n) / MS).collect();
        assert_eq!(got, vec![500, 1000, 2000, 4000, 8000, 16000, 32000]);
    }

    #[test]
    fn non_invite_retransmissions_cap_at_t2() {
        let t = SipTimers::default();
        let got: Vec<u64> = (1..=6).map(|n| t.capped_interval(n) / MS).collect();
        assert_eq!(got, vec![500, 1000, 2000, 4000, 4000, 4000]);
    }

    #[test]
    fn timeout_is_64_t1() {
        assert_eq!(SipTimers::default().timeout_ns, 32_000 * MS);
    }

    #[test]
    fn timers_fire_in_deadline_order_across_lanes() {
        let mut t = TimerLanes::new();
        t.push(0, 500, "a");
        t.push(0, 100, "b");
        t.push(50, 100, "c");
        t.push(10, 1000, "d");
        assert_eq!(t.next_deadline(), Some(100));
        assert!(t.pop_expired(99).is_none());
        let order: Vec<_> = std::iter::from_fn(|| t.pop_expired(10_000))
            .map(|(_, x)| x)
            .collect();
        assert_eq!(order, vec!["b", "c", "a", "d"]);
        assert!(t.is_empty());
    }

    #[test]
    fn only_expired_timers_pop() {
        let mut t = TimerLanes::new();
        t.push(0, 100, 1);
        t.push(0, 200, 2);
        assert_eq!(t.pop_expired(150), Some((100, 1)));
        assert_eq!(t.pop_expired(150), None);
        assert_eq!(t.len(), 1);
    }
}
