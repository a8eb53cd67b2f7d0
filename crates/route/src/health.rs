//! Target health: a pure state machine per upstream, driven by probe results.
//!
//! An upstream that is up goes down after `down_after` probes in a row go
//! unanswered; one that is down comes back after `up_after` probes in a row
//! are answered. New upstreams start up, so a fresh table carries traffic at
//! once and the prober takes away what does not answer.

use std::net::SocketAddr;
use std::time::Duration;

/// How upstreams are probed: from the groups file's `[health]` table,
/// overridden by the appliance configuration's `[routes]` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSettings {
    /// Time between two probes of an upstream; a probe not answered within
    /// it counts as missed.
    pub interval: Duration,
    /// Missed probes in a row that take an up upstream down.
    pub down_after: u32,
    /// Answered probes in a row that bring a down upstream back.
    pub up_after: u32,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            interval: Duration::from_secs(5),
            down_after: 3,
            up_after: 2,
        }
    }
}

/// Limits the files are checked against.
pub mod limits {
    /// Shortest probe interval a file may set, in milliseconds.
    pub const INTERVAL_MS_MIN: u64 = 100;
    /// Longest probe interval a file may set, in milliseconds (one hour).
    pub const INTERVAL_MS_MAX: u64 = 3_600_000;
    /// Largest `down_after` or `up_after`.
    pub const COUNT_MAX: u32 = 100;
}

/// The health of one upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetHealth {
    up: bool,
    /// Consecutive results that disagree with `up` (misses while up,
    /// answers while down).
    streak: u32,
}

impl Default for TargetHealth {
    fn default() -> Self {
        TargetHealth::new_up()
    }
}

impl TargetHealth {
    /// An upstream taken to be up until probes say otherwise.
    pub fn new_up() -> TargetHealth {
        TargetHealth {
            up: true,
            streak: 0,
        }
    }

    /// True while the upstream takes calls.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Records one probe's outcome. Returns the new state when it changed.
    pub fn record(&mut self, answered: bool, settings: &HealthSettings) -> Option<bool> {
        if answered == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.up {
            settings.down_after
        } else {
            settings.up_after
        };
        if self.streak >= needed.max(1) {
            self.up = !self.up;
            self.streak = 0;
            Some(self.up)
        } else {
            None
        }
    }
}

/// A target went up or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthChange {
    /// The target's address.
    pub addr: SocketAddr,
    /// Its new state.
    pub up: bool,
    /// Probes in a row (missed, or answered) that made the change.
    pub after: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(down_after: u32, up_after: u32) -> HealthSettings {
        HealthSettings {
            interval: Duration::from_secs(1),
            down_after,
            up_after,
        }
    }

    #[test]
    fn goes_down_after_n_missed_probes_in_a_row() {
        let s = settings(3, 2);
        let mut h = TargetHealth::new_up();
        assert_eq!(h.record(false, &s), None);
        assert_eq!(h.record(false, &s), None);
        assert_eq!(h.record(false, &s), Some(false));
        assert!(!h.is_up());
    }

    #[test]
    fn an_answer_resets_the_miss_count() {
        let s = settings(3, 2);
        let mut h = TargetHealth::new_up();
        h.record(false, &s);
        h.record(false, &s);
        assert_eq!(h.record(true, &s), None);
        assert_eq!(h.record(false, &s), None);
        assert_eq!(h.record(false, &s), None);
        assert!(h.is_up());
    }

    #[test]
    fn comes_back_after_m_answers_in_a_row() {
        let s = settings(1, 2);
        let mut h = TargetHealth::new_up();
        assert_eq!(h.record(false, &s), Some(false));
        assert_eq!(h.record(true, &s), None);
        assert_eq!(
            h.record(false, &s),
            None,
            "a miss while down restarts the count"
        );
        assert_eq!(h.record(true, &s), None);
        assert_eq!(h.record(true, &s), Some(true));
    }
}
