//! Target health: pure state machines per upstream, driven by probe results
//! ([`TargetHealth`]) and by what calls toward it show ([`TargetBook`]).
//!
//! An upstream that is up goes down after `down_after` probes in a row go
//! unanswered; one that is down comes back after `up_after` probes in a row
//! are answered. New upstreams start up, so a fresh table carries traffic at
//! once and the prober takes away what does not answer.
//!
//! Passive health: the workers report, every [`ACTIVITY_REPORT`], what the
//! INVITEs toward each target met ([`InviteActivity`]); the control thread's
//! [`TargetBook`] takes a target down after `invite_failures` INVITEs in a
//! row answered 503, or left without any response for `invite_timeout`, and
//! brings it back on a call answered, or after `hold_down` (with a probe
//! answered since, for a probed target). No clock is read here: time comes
//! in as an argument.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

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
    /// INVITE failures in a row (503s, or INVITEs left unanswered) that
    /// take an up upstream down; 0 turns passive health off.
    pub invite_failures: u32,
    /// How long INVITEs may wait for any response (a 100 Trying will do)
    /// before they count as unanswered.
    pub invite_timeout: Duration,
    /// How long a target taken down by passive health stays down before it
    /// is tried again (after a probe answered since, when it is probed).
    pub hold_down: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            interval: Duration::from_secs(5),
            down_after: 3,
            up_after: 2,
            invite_failures: 5,
            invite_timeout: Duration::from_secs(4),
            hold_down: Duration::from_secs(30),
        }
    }
}

/// Limits the files are checked against.
pub mod limits {
    /// Shortest probe interval a file may set, in milliseconds.
    pub const INTERVAL_MS_MIN: u64 = 100;
    /// Longest probe interval a file may set, in milliseconds (one hour).
    pub const INTERVAL_MS_MAX: u64 = 3_600_000;
    /// Largest `down_after`, `up_after` or `invite_failures`.
    pub const COUNT_MAX: u32 = 100;
    /// Shortest `invite_timeout_ms`: a server's 100 Trying takes a round
    /// trip and its own scheduling.
    pub const INVITE_TIMEOUT_MS_MIN: u64 = 500;
    /// Longest `invite_timeout_ms` (RFC 3261 Timer B, 64 * T1).
    pub const INVITE_TIMEOUT_MS_MAX: u64 = 32_000;
    /// Shortest `hold_down_ms`.
    pub const HOLD_DOWN_MS_MIN: u64 = 1_000;
    /// Longest `hold_down_ms` (one hour).
    pub const HOLD_DOWN_MS_MAX: u64 = 3_600_000;
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

/// How often a worker reports what INVITEs toward each target met.
pub const ACTIVITY_REPORT: Duration = Duration::from_millis(100);

/// What INVITEs toward one target met on one worker since its last report.
/// Only responses that passed the proxy's checks (this edge's branch MAC,
/// from the hop the request went to) are counted; failures only for calls
/// whose caller proved its address, so that neither a forged response nor a
/// spoofed caller can take a target down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InviteActivity {
    /// New INVITEs forwarded to it from callers that proved their address.
    pub forwarded: u32,
    /// Responses of any status it sent to INVITEs: it is alive.
    pub responded: u32,
    /// 503s it answered to INVITEs of callers that proved their address.
    pub rejected: u32,
    /// Calls it took: a provisional other than 100 Trying, or a 2xx.
    pub answered: u32,
}

impl InviteActivity {
    /// True when there is nothing to report.
    pub fn is_empty(&self) -> bool {
        *self == InviteActivity::default()
    }
}

/// Why a target went up or down, as the event log and the console say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthCause {
    /// OPTIONS probes in a row went unanswered (down) or were answered (up).
    Probes {
        /// How many.
        count: u32,
        /// Answered (up) or unanswered (down).
        answered: bool,
    },
    /// INVITEs in a row were answered 503.
    Rejected {
        /// How many.
        count: u32,
    },
    /// INVITEs got no response at all within the timeout.
    Unanswered {
        /// How many.
        count: u32,
        /// The timeout.
        timeout: Duration,
    },
    /// A call toward it was answered (a 1xx other than 100, or a 2xx).
    AnsweredAgain,
    /// Its hold-down ended and an OPTIONS probe was answered since.
    HoldDownProbed {
        /// The hold-down.
        hold_down: Duration,
    },
    /// Its hold-down ended; it is not probed, so calls try it again.
    HoldDownTrial {
        /// The hold-down.
        hold_down: Duration,
    },
}

impl fmt::Display for HealthCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            HealthCause::Probes {
                count,
                answered: false,
            } => write!(f, "{count} OPTIONS probes unanswered"),
            HealthCause::Probes {
                count,
                answered: true,
            } => write!(f, "{count} OPTIONS probes answered"),
            HealthCause::Rejected { count } => write!(f, "{count} INVITEs in a row answered 503"),
            HealthCause::Unanswered { count, timeout } => write!(
                f,
                "{count} INVITEs in a row unanswered within {} ms",
                timeout.as_millis()
            ),
            HealthCause::AnsweredAgain => f.write_str("answered again"),
            HealthCause::HoldDownProbed { hold_down } => write!(
                f,
                "hold-down of {} s over and OPTIONS answered",
                hold_down.as_secs()
            ),
            HealthCause::HoldDownTrial { hold_down } => write!(
                f,
                "hold-down of {} s over (not probed: calls try it again)",
                hold_down.as_secs()
            ),
        }
    }
}

/// A target's state changed in the [`TargetBook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The target.
    pub addr: SocketAddr,
    /// Its new state.
    pub up: bool,
    /// Why.
    pub cause: HealthCause,
}

/// What the book knows of one target.
#[derive(Debug, Clone, Copy)]
struct Booked {
    /// OPTIONS probes are sent to it.
    probed: bool,
    /// What the probes say (up when not probed).
    probe_up: bool,
    /// Taken down by passive health at this time, with the probes it had
    /// answered then.
    passive_down: Option<(Instant, u64)>,
    /// 503s since the last call it took.
    rejected: u32,
    /// INVITEs since its last response of any kind, and when the first of
    /// them was reported.
    unanswered: u32,
    unanswered_since: Option<Instant>,
    /// When a report last carried a response from it.
    last_response: Option<Instant>,
}

/// How long after a report with a response from a target the INVITEs other
/// workers report toward it are taken as answered: the workers report in
/// any order (its responses are one flow, on one worker, its INVITEs leave
/// from all), so INVITEs whose answers were reported first must not start
/// an "unanswered" streak. Ten report periods; a target that dies right
/// after a response is still taken down, this much later.
const REPORT_ORDER_SLACK: Duration = Duration::from_secs(1);

impl Booked {
    fn new(probed: bool) -> Booked {
        Booked {
            probed,
            probe_up: true,
            passive_down: None,
            rejected: 0,
            unanswered: 0,
            unanswered_since: None,
            last_response: None,
        }
    }

    fn is_up(&self) -> bool {
        self.probe_up && self.passive_down.is_none()
    }

    fn clear_streaks(&mut self) {
        self.rejected = 0;
        self.unanswered = 0;
        self.unanswered_since = None;
    }
}

/// Every target's health on the control thread: the probes' verdict and
/// passive health's, combined (a target is up when neither holds it down).
/// Each change comes out as a [`Transition`] with its cause.
#[derive(Debug, Clone)]
pub struct TargetBook {
    settings: HealthSettings,
    targets: HashMap<SocketAddr, Booked>,
}

impl TargetBook {
    /// An empty book with these thresholds.
    pub fn new(settings: HealthSettings) -> TargetBook {
        TargetBook {
            settings,
            targets: HashMap::new(),
        }
    }

    /// The thresholds (after a reload).
    pub fn set_settings(&mut self, settings: HealthSettings) {
        self.settings = settings;
    }

    /// The targets (after a reload): `all` forward targets, of which
    /// `probed` get OPTIONS. Known targets keep their state; new ones start
    /// up.
    pub fn set_targets(&mut self, all: &[SocketAddr], probed: &[SocketAddr]) {
        let mut old = std::mem::take(&mut self.targets);
        for &addr in all {
            let is_probed = probed.contains(&addr);
            let mut b = old.remove(&addr).unwrap_or_else(|| Booked::new(is_probed));
            if !is_probed {
                // What probes said no longer holds it down.
                b.probe_up = true;
            }
            b.probed = is_probed;
            self.targets.insert(addr, b);
        }
    }

    /// True when the target takes calls (unknown targets are up).
    pub fn is_up(&self, addr: SocketAddr) -> bool {
        self.targets.get(&addr).is_none_or(|b| b.is_up())
    }

    /// True while passive health holds the target down.
    pub fn is_held_down(&self, addr: SocketAddr) -> bool {
        self.targets
            .get(&addr)
            .is_some_and(|b| b.passive_down.is_some())
    }

    /// The prober changed its verdict on `addr` after `count` probes.
    pub fn probe(&mut self, addr: SocketAddr, up: bool, count: u32) -> Option<Transition> {
        let b = self.targets.get_mut(&addr)?;
        let before = b.is_up();
        b.probe_up = up;
        (b.is_up() != before).then_some(Transition {
            addr,
            up,
            cause: HealthCause::Probes {
                count,
                answered: up,
            },
        })
    }

    /// A worker's report on the INVITEs toward `addr`, at `now`.
    pub fn activity(
        &mut self,
        addr: SocketAddr,
        a: InviteActivity,
        now: Instant,
    ) -> Option<Transition> {
        let n = self.settings.invite_failures;
        if n == 0 {
            return None;
        }
        let b = self.targets.get_mut(&addr)?;
        if b.passive_down.is_some() {
            if a.answered == 0 {
                return None;
            }
            b.passive_down = None;
            b.clear_streaks();
            return b.probe_up.then_some(Transition {
                addr,
                up: true,
                cause: HealthCause::AnsweredAgain,
            });
        }
        if a.answered > 0 {
            b.rejected = 0;
        } else {
            b.rejected = b.rejected.saturating_add(a.rejected);
        }
        // Any response shows the target alive: the INVITEs reported with
        // it are taken as answered too (their order within a report is not
        // known; erring this way never takes a live target down).
        let just_answered = b
            .last_response
            .is_some_and(|t| now.saturating_duration_since(t) < REPORT_ORDER_SLACK);
        if a.responded > 0 {
            b.unanswered = 0;
            b.unanswered_since = None;
            b.last_response = Some(now);
        } else if a.forwarded > 0 && !just_answered {
            b.unanswered = b.unanswered.saturating_add(a.forwarded);
            b.unanswered_since.get_or_insert(now);
        }
        if b.rejected >= n {
            let count = b.rejected;
            return Self::take_down(addr, b, now, HealthCause::Rejected { count });
        }
        None
    }

    fn take_down(
        addr: SocketAddr,
        b: &mut Booked,
        now: Instant,
        cause: HealthCause,
    ) -> Option<Transition> {
        let was_up = b.is_up();
        // The probe count is filled in by `poll`, which knows the prober.
        b.passive_down = Some((now, u64::MAX));
        b.clear_streaks();
        was_up.then_some(Transition {
            addr,
            up: false,
            cause,
        })
    }

    /// Time passes: INVITEs unanswered past the timeout take their target
    /// down, hold-downs that ended bring theirs back. `probes_answered` says
    /// how many probes a probed target has answered so far. Changes are
    /// appended to `out`.
    pub fn poll(
        &mut self,
        now: Instant,
        probes_answered: impl Fn(SocketAddr) -> Option<u64>,
        out: &mut Vec<Transition>,
    ) {
        let s = self.settings;
        for (&addr, b) in self.targets.iter_mut() {
            if let Some((since, answered)) = &mut b.passive_down {
                if *answered == u64::MAX {
                    *answered = probes_answered(addr).unwrap_or(0);
                }
                if now.saturating_duration_since(*since) < s.hold_down {
                    continue;
                }
                let cause = if b.probed {
                    if probes_answered(addr).unwrap_or(0) <= *answered {
                        continue;
                    }
                    HealthCause::HoldDownProbed {
                        hold_down: s.hold_down,
                    }
                } else {
                    HealthCause::HoldDownTrial {
                        hold_down: s.hold_down,
                    }
                };
                b.passive_down = None;
                b.clear_streaks();
                if b.probe_up {
                    out.push(Transition {
                        addr,
                        up: true,
                        cause,
                    });
                }
                continue;
            }
            if s.invite_failures == 0 || b.unanswered < s.invite_failures {
                continue;
            }
            let overdue = b
                .unanswered_since
                .is_some_and(|t| now.saturating_duration_since(t) >= s.invite_timeout);
            if overdue {
                let cause = HealthCause::Unanswered {
                    count: b.unanswered,
                    timeout: s.invite_timeout,
                };
                if let Some(t) = Self::take_down(addr, b, now, cause) {
                    out.push(t);
                }
                if let Some((_, answered)) = &mut b.passive_down {
                    *answered = probes_answered(addr).unwrap_or(0);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(down_after: u32, up_after: u32) -> HealthSettings {
        HealthSettings {
            interval: Duration::from_secs(1),
            down_after,
            up_after,
            ..HealthSettings::default()
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

#[cfg(test)]
mod book_tests {
    use super::*;

    const A: &str = "198.18.0.10:5060";
    const B: &str = "198.18.0.11:5060";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn book(probed: &[&str]) -> TargetBook {
        let mut b = TargetBook::new(HealthSettings::default());
        let probed: Vec<SocketAddr> = probed.iter().map(|s| addr(s)).collect();
        b.set_targets(&[addr(A), addr(B)], &probed);
        b
    }

    fn rejected(n: u32) -> InviteActivity {
        InviteActivity {
            forwarded: n,
            responded: n,
            rejected: n,
            answered: 0,
        }
    }

    fn answered(n: u32) -> InviteActivity {
        InviteActivity {
            forwarded: n,
            responded: n,
            rejected: 0,
            answered: n,
        }
    }

    #[test]
    fn five_503s_in_a_row_take_a_target_down_with_their_cause() {
        let mut b = book(&[]);
        let t0 = Instant::now();
        assert_eq!(b.activity(addr(A), rejected(2), t0), None);
        assert_eq!(b.activity(addr(A), rejected(2), t0), None);
        let t = b.activity(addr(A), rejected(1), t0).expect("down");
        assert!(!t.up);
        assert_eq!(t.cause.to_string(), "5 INVITEs in a row answered 503");
        assert!(!b.is_up(addr(A)));
        assert!(b.is_up(addr(B)), "only the target that failed");
    }

    #[test]
    fn a_call_answered_between_503s_restarts_the_count() {
        let mut b = book(&[]);
        let t0 = Instant::now();
        b.activity(addr(A), rejected(4), t0);
        b.activity(addr(A), answered(1), t0);
        assert_eq!(b.activity(addr(A), rejected(4), t0), None);
        assert!(b.is_up(addr(A)));
    }

    #[test]
    fn unanswered_invites_take_a_target_down_only_after_the_timeout() {
        let mut b = book(&[]);
        let t0 = Instant::now();
        let silent = InviteActivity {
            forwarded: 6,
            ..InviteActivity::default()
        };
        assert_eq!(b.activity(addr(A), silent, t0), None);
        let mut out = Vec::new();
        b.poll(t0 + Duration::from_secs(3), |_| None, &mut out);
        assert!(out.is_empty(), "still within the timeout");
        b.poll(t0 + Duration::from_secs(4), |_| None, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].cause.to_string(),
            "6 INVITEs in a row unanswered within 4000 ms"
        );
    }

    #[test]
    fn any_response_means_the_invites_were_not_lost() {
        let mut b = book(&[]);
        let t0 = Instant::now();
        b.activity(
            addr(A),
            InviteActivity {
                forwarded: 6,
                ..InviteActivity::default()
            },
            t0,
        );
        // A 100 Trying from another worker's report.
        b.activity(
            addr(A),
            InviteActivity {
                responded: 1,
                ..InviteActivity::default()
            },
            t0,
        );
        let mut out = Vec::new();
        b.poll(t0 + Duration::from_secs(10), |_| None, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn answers_reported_before_their_invites_by_another_worker_count() {
        // Worker 0 reports the target's responses, worker 1 the INVITEs
        // they answer, 50 ms later: the target is alive.
        let mut b = book(&[]);
        let t0 = Instant::now();
        let responses = InviteActivity {
            responded: 32,
            answered: 16,
            ..InviteActivity::default()
        };
        let invites = InviteActivity {
            forwarded: 16,
            ..InviteActivity::default()
        };
        b.activity(addr(A), responses, t0);
        b.activity(addr(A), invites, t0 + Duration::from_millis(50));
        let mut out = Vec::new();
        b.poll(t0 + Duration::from_secs(10), |_| None, &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert!(b.is_up(addr(A)));
    }

    #[test]
    fn a_target_that_dies_after_its_last_answer_still_goes_down() {
        let mut b = book(&[]);
        let t0 = Instant::now();
        let invites = |n| InviteActivity {
            forwarded: n,
            ..InviteActivity::default()
        };
        b.activity(
            addr(A),
            InviteActivity {
                responded: 1,
                ..InviteActivity::default()
            },
            t0,
        );
        b.activity(addr(A), invites(3), t0 + Duration::from_millis(50));
        // Later INVITEs get nothing back.
        let later = t0 + Duration::from_millis(1_500);
        b.activity(addr(A), invites(6), later);
        let mut out = Vec::new();
        b.poll(later + Duration::from_secs(4), |_| None, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(!out[0].up);
    }

    #[test]
    fn an_unprobed_target_is_tried_again_after_its_hold_down() {
        let mut b = book(&[]);
        let t0 = Instant::now();
        b.activity(addr(A), rejected(5), t0).expect("down");
        let mut out = Vec::new();
        b.poll(t0 + Duration::from_secs(29), |_| None, &mut out);
        assert!(out.is_empty());
        b.poll(t0 + Duration::from_secs(30), |_| None, &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].up);
        assert!(matches!(out[0].cause, HealthCause::HoldDownTrial { .. }));
    }

    #[test]
    fn a_probed_target_needs_a_probe_answered_after_it_went_down() {
        let mut b = book(&[A]);
        let t0 = Instant::now();
        b.activity(addr(A), rejected(5), t0).expect("down");
        let mut out = Vec::new();
        b.poll(t0, |_| Some(10), &mut out);
        b.poll(t0 + Duration::from_secs(31), |_| Some(10), &mut out);
        assert!(out.is_empty(), "no probe answered since");
        b.poll(t0 + Duration::from_secs(32), |_| Some(11), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].cause.to_string(),
            "hold-down of 30 s over and OPTIONS answered"
        );
    }

    #[test]
    fn a_call_answered_brings_a_held_target_back_at_once() {
        let mut b = book(&[]);
        let t0 = Instant::now();
        b.activity(addr(A), rejected(5), t0).expect("down");
        assert_eq!(b.activity(addr(A), rejected(3), t0), None);
        let t = b.activity(addr(A), answered(1), t0).expect("up");
        assert!(t.up);
        assert_eq!(t.cause.to_string(), "answered again");
    }

    #[test]
    fn probes_and_passive_health_both_must_agree_for_up() {
        let mut b = book(&[A]);
        let t0 = Instant::now();
        let down = b.probe(addr(A), false, 3).expect("down");
        assert_eq!(down.cause.to_string(), "3 OPTIONS probes unanswered");
        assert_eq!(b.activity(addr(A), rejected(5), t0), None, "already down");
        assert_eq!(b.probe(addr(A), true, 2), None, "passive health holds it");
        let t = b.activity(addr(A), answered(1), t0).expect("up");
        assert!(t.up);
    }

    #[test]
    fn passive_health_off_changes_nothing() {
        let mut b = TargetBook::new(HealthSettings {
            invite_failures: 0,
            ..HealthSettings::default()
        });
        b.set_targets(&[addr(A)], &[]);
        assert_eq!(b.activity(addr(A), rejected(50), Instant::now()), None);
        assert!(b.is_up(addr(A)));
    }

    #[test]
    fn a_reload_keeps_known_targets_and_forgets_probes_of_unprobed_ones() {
        let mut b = book(&[A]);
        b.probe(addr(A), false, 3);
        b.set_targets(&[addr(A)], &[]);
        assert!(b.is_up(addr(A)), "no longer probed: probes do not hold it");
        b.activity(addr(A), rejected(5), Instant::now());
        b.set_targets(&[addr(A), addr(B)], &[]);
        assert!(!b.is_up(addr(A)), "held down across the reload");
    }
}
