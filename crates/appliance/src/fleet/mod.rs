//! The appliance's side of a fleet: the I/O around the sans-IO decisions of
//! the `fleet` crate. The announcement of the service address is driven
//! through BIRD's control socket ([`bird`]) from the health the control
//! thread sees each tick.

pub mod bird;
pub mod bus;
pub mod nats;
pub mod share;

use std::time::{Duration, Instant};

use ::fleet::{AnnounceConfig, Announcer, Change, Health, Problem};
use dataplane::neigh::NeighbourCache;
use telemetry::stats::AnnounceReport;

use bird::BirdDriver;

/// How often the interface is asked which XDP program it runs.
const XDP_CHECK_EVERY: Duration = Duration::from_secs(1);

/// What the announcement did, for the event log.
#[derive(Debug, Clone, PartialEq)]
pub enum AnnounceEvent {
    /// The service address is announced.
    Announced {
        /// Seconds the edge had been healthy.
        held_seconds: f64,
    },
    /// The service address is withdrawn.
    Withdrawn {
        /// Why.
        problem: Problem,
        /// Seconds the next announcement waits.
        next_hold_seconds: f64,
    },
    /// The routing daemon could not be told (or can be again: `None`).
    DaemonError {
        /// What went wrong; `None` when it works again.
        error: Option<String>,
    },
}

/// The announcement of this edge: the state machine, the thread that tells
/// BIRD, and the check that the XDP program is still attached.
pub struct Announcement {
    cfg: AnnounceConfig,
    announcer: Announcer,
    driver: BirdDriver,
    draining: bool,
    stopping: bool,
    xdp: Option<XdpCheck>,
    daemon_error: Option<String>,
}

/// The interface and the program that should be on it.
struct XdpCheck {
    link: NeighbourCache,
    program: u32,
    last: Instant,
    attached: bool,
}

impl Announcement {
    /// Starts the BIRD driver (withdrawn until healthy for the hold-down).
    /// `xdp` is the interface and the filter's program id when a filter
    /// runs.
    pub fn start(cfg: AnnounceConfig, xdp: Option<(&str, u32)>) -> Result<Announcement, String> {
        let driver = BirdDriver::start(cfg.bird_socket.clone(), cfg.protocols.clone())
            .map_err(|e| format!("cannot start the BIRD driver thread: {e}"))?;
        let xdp = match xdp {
            None => None,
            Some((iface, program)) => Some(XdpCheck {
                link: NeighbourCache::open(iface)
                    .map_err(|e| format!("cannot watch {iface}'s XDP program: {e}"))?,
                program,
                last: Instant::now(),
                attached: true,
            }),
        };
        Ok(Announcement {
            announcer: Announcer::new(cfg.hold_down()),
            cfg,
            driver,
            draining: false,
            stopping: false,
            xdp,
            daemon_error: None,
        })
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &AnnounceConfig {
        &self.cfg
    }

    /// An operator drains the edge (or undrains it).
    pub fn set_draining(&mut self, on: bool) {
        self.draining = on;
    }

    /// True while draining.
    pub fn draining(&self) -> bool {
        self.draining
    }

    /// The edge is stopping: withdraw at the next update.
    pub fn begin_stop(&mut self) {
        self.stopping = true;
    }

    /// True while the XDP program is attached where it was (as of the
    /// last check, made at most once a second).
    fn xdp_attached(&mut self, now: Instant) -> bool {
        let Some(x) = &mut self.xdp else {
            return true;
        };
        if now.duration_since(x.last) >= XDP_CHECK_EVERY {
            x.last = now;
            x.attached = match x.link.xdp_program_id() {
                Ok(id) => id == Some(x.program),
                // The interface went away: nothing is attached.
                Err(_) => false,
            };
        }
        x.attached
    }

    /// One tick: takes the workers' and upstreams' state, decides, tells
    /// BIRD when something changed, and returns what happened.
    pub fn update(
        &mut self,
        workers_running: bool,
        upstream_reachable: bool,
        now_ns: u64,
    ) -> Vec<AnnounceEvent> {
        let mut out = Vec::new();
        let health = Health {
            workers_running,
            xdp_attached: self.xdp_attached(Instant::now()),
            upstream_reachable: upstream_reachable || !self.cfg.require_upstream,
            draining: self.draining,
            stopping: self.stopping,
        };
        match self.announcer.update(&health, now_ns) {
            Some(Change::Announce { held_ns }) => {
                self.driver.want(true);
                out.push(AnnounceEvent::Announced {
                    held_seconds: held_ns as f64 / 1e9,
                });
            }
            Some(Change::Withdraw {
                problem,
                next_hold_ns,
            }) => {
                self.driver.want(false);
                out.push(AnnounceEvent::Withdrawn {
                    problem,
                    next_hold_seconds: next_hold_ns as f64 / 1e9,
                });
            }
            None => {}
        }
        let error = self.driver.report().error.clone();
        if error != self.daemon_error {
            self.daemon_error = error.clone();
            out.push(AnnounceEvent::DaemonError { error });
        }
        out
    }

    /// True while the service address should be announced.
    pub fn announced(&self) -> bool {
        self.announcer.announced()
    }

    /// For the snapshot and `dce-edge fleet status`.
    pub fn report(&mut self, now_ns: u64) -> AnnounceReport {
        let r = self.driver.report().clone();
        AnnounceReport {
            announced: self.announcer.announced(),
            reason: self.announcer.withdrawn().map(|p| p.name().to_string()),
            announces_in_seconds: self.announcer.announces_in(now_ns).map(|n| n as f64 / 1e9),
            hold_down_seconds: self.announcer.hold_ns() as f64 / 1e9,
            draining: self.draining,
            daemon_applied: r.applied,
            daemon_error: r.error,
            withdrawals: self.announcer.withdrawals(),
            flaps: self.announcer.flaps(),
        }
    }

    /// Withdraws and stops the driver; true when BIRD confirmed.
    pub fn stop(self, timeout: Duration) -> bool {
        self.driver.stop(timeout)
    }
}
