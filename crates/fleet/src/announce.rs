//! When an edge announces the service address, and when it withdraws it.
//!
//! The routing daemon (BIRD) does the BGP; this state machine only decides
//! what it should say, from the edge's health and the time passed in. An
//! unhealthy edge withdraws at once: traffic sent to it would be lost. A
//! healthy one announces only after it has stayed healthy for the hold-down,
//! and every withdrawal shortly after an announcement doubles the hold-down
//! (up to a maximum), so an edge whose health flaps stops pulling flows
//! back and forth through the routers' ECMP. An edge that stays announced
//! for the maximum hold-down is forgiven its past flaps.

use std::fmt;

/// Why the edge does not announce the service address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Problem {
    /// It has just started and has not been healthy for the hold-down yet.
    Starting,
    /// It is stopping (SIGTERM): withdrawn first, then the workers stop.
    Stopping,
    /// An operator asked it to drain (`dce-edge drain`).
    Draining,
    /// A worker thread is not running.
    WorkersStopped,
    /// The XDP program is no longer attached to the interface.
    XdpDetached,
    /// No upstream target of any forward group answers its probes.
    NoUpstream,
}

impl Problem {
    /// The name in events, metrics and `dce-edge fleet status`.
    pub fn name(self) -> &'static str {
        match self {
            Problem::Starting => "starting",
            Problem::Stopping => "stopping",
            Problem::Draining => "draining",
            Problem::WorkersStopped => "workers_stopped",
            Problem::XdpDetached => "xdp_detached",
            Problem::NoUpstream => "no_upstream",
        }
    }

    /// Whether an operator asked for it: such a withdrawal is no flap.
    fn deliberate(self) -> bool {
        matches!(self, Problem::Stopping | Problem::Draining)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the control thread knows about the edge's health, each tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// Every worker thread runs.
    pub workers_running: bool,
    /// The XDP program is attached where it was (true where none is used).
    pub xdp_attached: bool,
    /// At least one upstream target answers its probes (true when the
    /// configuration does not ask for it, or the table forwards nowhere).
    pub upstream_reachable: bool,
    /// An operator asked the edge to drain.
    pub draining: bool,
    /// The edge is stopping.
    pub stopping: bool,
}

impl Health {
    /// Everything well.
    pub const HEALTHY: Health = Health {
        workers_running: true,
        xdp_attached: true,
        upstream_reachable: true,
        draining: false,
        stopping: false,
    };

    /// The problem that keeps the edge withdrawn, if any; deliberate ones
    /// (stopping, draining) first, since they say most about what happens
    /// next.
    pub fn problem(&self) -> Option<Problem> {
        if self.stopping {
            Some(Problem::Stopping)
        } else if self.draining {
            Some(Problem::Draining)
        } else if !self.workers_running {
            Some(Problem::WorkersStopped)
        } else if !self.xdp_attached {
            Some(Problem::XdpDetached)
        } else if !self.upstream_reachable {
            Some(Problem::NoUpstream)
        } else {
            None
        }
    }
}

/// The hold-down: how long an edge must be healthy before it announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldDown {
    /// The hold-down of an edge that has not flapped, in nanoseconds.
    pub base_ns: u64,
    /// The longest hold-down flapping can earn; also how long an edge must
    /// stay announced before its flaps are forgiven.
    pub max_ns: u64,
}

/// Doubling starts from at least this, so a hold-down of 0 still grows.
const MIN_PENALTY_NS: u64 = 1_000_000_000;

/// A change the routing daemon must make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Announce the service address.
    Announce {
        /// How long the edge had been healthy (the hold-down it served).
        held_ns: u64,
    },
    /// Withdraw it.
    Withdraw {
        /// Why.
        problem: Problem,
        /// The hold-down the next announcement will wait (grown when this
        /// withdrawal was a flap).
        next_hold_ns: u64,
    },
}

/// The announcement state of one edge.
#[derive(Debug, Clone)]
pub struct Announcer {
    hold: HoldDown,
    current_hold_ns: u64,
    announced_at: Option<u64>,
    /// Why it is withdrawn (`None` while announced).
    withdrawn: Option<Problem>,
    healthy_since: Option<u64>,
    flaps: u64,
    withdrawals: u64,
}

impl Announcer {
    /// A freshly started edge: withdrawn, [`Problem::Starting`].
    pub fn new(hold: HoldDown) -> Announcer {
        let hold = HoldDown {
            base_ns: hold.base_ns,
            max_ns: hold.max_ns.max(hold.base_ns),
        };
        Announcer {
            hold,
            current_hold_ns: hold.base_ns,
            announced_at: None,
            withdrawn: Some(Problem::Starting),
            healthy_since: None,
            flaps: 0,
            withdrawals: 0,
        }
    }

    /// Takes the edge's health at `now` (nanoseconds, monotonic) and says
    /// what must change, if anything.
    pub fn update(&mut self, health: &Health, now: u64) -> Option<Change> {
        match health.problem() {
            Some(problem) => {
                self.healthy_since = None;
                match self.announced_at.take() {
                    Some(at) => {
                        self.withdrawals += 1;
                        if !problem.deliberate() && now.saturating_sub(at) < self.hold.max_ns {
                            self.flaps += 1;
                            self.current_hold_ns = self
                                .current_hold_ns
                                .saturating_mul(2)
                                .max(MIN_PENALTY_NS)
                                .min(self.hold.max_ns);
                        }
                        self.withdrawn = Some(problem);
                        Some(Change::Withdraw {
                            problem,
                            next_hold_ns: self.current_hold_ns,
                        })
                    }
                    None => {
                        // Already withdrawn: only the reason shown changes.
                        self.withdrawn = Some(problem);
                        None
                    }
                }
            }
            None => match self.announced_at {
                Some(at) => {
                    if now.saturating_sub(at) >= self.hold.max_ns {
                        self.current_hold_ns = self.hold.base_ns;
                    }
                    None
                }
                None => {
                    let since = *self.healthy_since.get_or_insert(now);
                    let held = now.saturating_sub(since);
                    if held >= self.current_hold_ns {
                        self.announced_at = Some(now);
                        self.withdrawn = None;
                        Some(Change::Announce { held_ns: held })
                    } else {
                        // Healthy, serving the hold-down: still withdrawn,
                        // and "starting" reads better than a lapsed problem.
                        None
                    }
                }
            },
        }
    }

    /// True while the service address should be announced.
    pub fn announced(&self) -> bool {
        self.announced_at.is_some()
    }

    /// Why it is withdrawn, `None` while announced. While an edge serves its
    /// hold-down this is the problem it last had.
    pub fn withdrawn(&self) -> Option<Problem> {
        self.withdrawn
    }

    /// How long until it announces, if it stays healthy; `None` while
    /// announced or unhealthy.
    pub fn announces_in(&self, now: u64) -> Option<u64> {
        if self.announced() {
            return None;
        }
        let since = self.healthy_since?;
        Some(
            self.current_hold_ns
                .saturating_sub(now.saturating_sub(since)),
        )
    }

    /// The hold-down the next announcement waits.
    pub fn hold_ns(&self) -> u64 {
        self.current_hold_ns
    }

    /// Withdrawals that came too soon after an announcement.
    pub fn flaps(&self) -> u64 {
        self.flaps
    }

    /// Withdrawals of every kind.
    pub fn withdrawals(&self) -> u64 {
        self.withdrawals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn hold(base: u64, max: u64) -> Announcer {
        Announcer::new(HoldDown {
            base_ns: base * S,
            max_ns: max * S,
        })
    }

    fn sick(f: impl FnOnce(&mut Health)) -> Health {
        let mut h = Health::HEALTHY;
        f(&mut h);
        h
    }

    #[test]
    fn a_started_edge_announces_only_after_the_hold_down() {
        let mut a = hold(5, 60);
        assert_eq!(a.withdrawn(), Some(Problem::Starting));
        assert_eq!(a.update(&Health::HEALTHY, 10 * S), None);
        assert_eq!(a.announces_in(12 * S), Some(3 * S));
        assert_eq!(a.update(&Health::HEALTHY, 14 * S), None);
        assert_eq!(
            a.update(&Health::HEALTHY, 15 * S),
            Some(Change::Announce { held_ns: 5 * S })
        );
        assert!(a.announced());
        assert_eq!(a.withdrawn(), None);
        assert_eq!(a.update(&Health::HEALTHY, 16 * S), None);
    }

    #[test]
    fn each_problem_withdraws_at_once_and_names_itself() {
        let cases: [(Health, Problem); 5] = [
            (sick(|h| h.workers_running = false), Problem::WorkersStopped),
            (sick(|h| h.xdp_attached = false), Problem::XdpDetached),
            (sick(|h| h.upstream_reachable = false), Problem::NoUpstream),
            (sick(|h| h.draining = true), Problem::Draining),
            (sick(|h| h.stopping = true), Problem::Stopping),
        ];
        for (health, problem) in cases {
            let mut a = hold(0, 60);
            assert!(matches!(
                a.update(&Health::HEALTHY, S),
                Some(Change::Announce { .. })
            ));
            match a.update(&health, S + 1) {
                Some(Change::Withdraw { problem: p, .. }) => assert_eq!(p, problem),
                other => panic!("{problem}: {other:?}"),
            }
            assert_eq!(a.withdrawn(), Some(problem));
            assert_eq!(a.update(&health, 2 * S), None, "withdrawn once only");
        }
    }

    #[test]
    fn an_unhealthy_start_stays_withdrawn_and_the_hold_down_counts_from_recovery() {
        let mut a = hold(5, 60);
        let down = sick(|h| h.upstream_reachable = false);
        assert_eq!(a.update(&down, 0), None);
        assert_eq!(a.withdrawn(), Some(Problem::NoUpstream));
        assert_eq!(a.update(&down, 30 * S), None);
        assert_eq!(a.update(&Health::HEALTHY, 31 * S), None);
        assert_eq!(a.update(&down, 33 * S), None, "the clock starts again");
        assert_eq!(a.update(&Health::HEALTHY, 34 * S), None);
        assert_eq!(a.update(&Health::HEALTHY, 38 * S), None);
        assert!(matches!(
            a.update(&Health::HEALTHY, 39 * S),
            Some(Change::Announce { .. })
        ));
    }

    #[test]
    fn flapping_doubles_the_hold_down_up_to_the_maximum() {
        let mut a = hold(2, 10);
        let down = sick(|h| h.upstream_reachable = false);
        let mut t = 0;
        let mut holds = Vec::new();
        for _ in 0..5 {
            // Healthy until announced, then down a second later.
            a.update(&Health::HEALTHY, t);
            let wait = a.announces_in(t).unwrap();
            t += wait;
            assert!(matches!(
                a.update(&Health::HEALTHY, t),
                Some(Change::Announce { .. })
            ));
            t += S;
            match a.update(&down, t) {
                Some(Change::Withdraw { next_hold_ns, .. }) => holds.push(next_hold_ns / S),
                other => panic!("{other:?}"),
            }
            t += S;
        }
        assert_eq!(holds, [4, 8, 10, 10, 10]);
        assert_eq!(a.flaps(), 5);
    }

    #[test]
    fn staying_announced_for_the_maximum_forgives_past_flaps() {
        let mut a = hold(2, 10);
        let down = sick(|h| h.workers_running = false);
        a.update(&Health::HEALTHY, 0);
        a.update(&Health::HEALTHY, 2 * S);
        a.update(&down, 3 * S);
        assert_eq!(a.hold_ns(), 4 * S);
        a.update(&Health::HEALTHY, 4 * S);
        assert!(matches!(
            a.update(&Health::HEALTHY, 8 * S),
            Some(Change::Announce { .. })
        ));
        a.update(&Health::HEALTHY, 18 * S);
        assert_eq!(a.hold_ns(), 2 * S, "forgiven after 10 s announced");
        // A withdrawal after a long, stable announcement is no flap.
        a.update(&down, 30 * S);
        assert_eq!(a.hold_ns(), 2 * S);
        assert_eq!(a.flaps(), 1);
    }

    #[test]
    fn draining_and_stopping_withdraw_without_a_penalty() {
        let mut a = hold(3, 60);
        a.update(&Health::HEALTHY, 0);
        a.update(&Health::HEALTHY, 3 * S);
        assert!(a.announced());
        let drain = sick(|h| h.draining = true);
        assert!(matches!(
            a.update(&drain, 4 * S),
            Some(Change::Withdraw {
                problem: Problem::Draining,
                next_hold_ns
            }) if next_hold_ns == 3 * S
        ));
        // Undrained: back after the ordinary hold-down.
        a.update(&Health::HEALTHY, 10 * S);
        assert!(matches!(
            a.update(&Health::HEALTHY, 13 * S),
            Some(Change::Announce { .. })
        ));
        assert_eq!(a.flaps(), 0);
        assert_eq!(a.withdrawals(), 1);
    }

    #[test]
    fn a_deliberate_reason_wins_over_a_fault_in_what_is_shown() {
        let h = Health {
            workers_running: false,
            xdp_attached: false,
            upstream_reachable: false,
            draining: true,
            stopping: false,
        };
        assert_eq!(h.problem(), Some(Problem::Draining));
        assert_eq!(
            sick(|h| {
                h.xdp_attached = false;
                h.upstream_reachable = false
            })
            .problem(),
            Some(Problem::XdpDetached)
        );
    }

    #[test]
    fn a_clock_that_steps_back_does_not_announce_early_or_panic() {
        let mut a = hold(5, 60);
        a.update(&Health::HEALTHY, 100 * S);
        assert_eq!(a.update(&Health::HEALTHY, 50 * S), None);
        assert_eq!(a.announces_in(50 * S), Some(5 * S));
    }
}
