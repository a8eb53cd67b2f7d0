//! The control thread of the appliance: starts the workers with a proxy
//! each, keeps their route tables and target health current, turns their
//! abuse reports into bans, and assembles the stats snapshot. It never
//! touches a worker's state except through the rings.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use super::config::ApplianceConfig;
use crate::fleet::share::{unix_ms, Share, ShareEvent};
use crate::fleet::{AnnounceEvent, Announcement};
use crate::probe::Prober;
use ::fleet::message::{Heartbeat, MacKey, OperatorAction};
use ::fleet::shared::{Apply, Standing};
use dataplane::{Dataplane, DataplaneError, IoKind, IoMode, SocketMap, Timestamp, WorkerSnapshot};
use proxy::rate::{RateLimit, RateState};
use proxy::verified::{Proof, VerifiedSources};
use proxy::{EdgeProxy, ProxyControl, ProxyEvent, ProxyStats};
use route::health::HealthChange;
use route::{RouteControl, RouteErrors};
use telemetry::stats::{self, Snapshot};
use xdp::config::Cidr;
use xdp::loader::{Attached, Filter};
use xdp::maps::{AutoBan, BanReason};
use xdp::FilterError;

/// Why the appliance could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The route files were refused.
    #[error("routes refused:\n{0}")]
    Routes(RouteErrors),
    /// The dataplane could not start.
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    /// The XDP filter could not be loaded or attached.
    #[error("XDP filter: {0}")]
    Filter(FilterError),
    /// The fleet side (announcement, bus) could not start.
    #[error("fleet: {0}")]
    Fleet(String),
    /// The health prober's socket could not be bound.
    #[error("cannot bind the health prober at {addr}: {source}")]
    Prober {
        /// Where it tried.
        addr: SocketAddr,
        /// Why not.
        source: std::io::Error,
    },
}

/// Something the control thread did that an operator may want to know.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlEvent {
    /// A worker reported an abuser.
    Abuse {
        /// The source.
        source: IpAddr,
        /// Why.
        reason: &'static str,
    },
    /// A source proved its address real.
    Verified {
        /// The source.
        source: IpAddr,
    },
    /// A target went up or down.
    Health {
        /// host:port.
        target: SocketAddr,
        /// The route groups that list it (comma-separated).
        group: String,
        /// Its new state.
        up: bool,
        /// Probes in a row (unanswered, or answered) that made the change.
        after: u32,
    },
    /// A ban the control thread did not make itself appeared in the XDP
    /// ban map: the program's own auto-ban of a scanner, or a manual
    /// `dce-edge ban` from another process.
    Banned {
        /// The banned network.
        source: String,
        /// Why (`scanner`, `manual`, ...).
        reason: String,
        /// Seconds until it lapses.
        seconds: u64,
    },
    /// A route reload was accepted.
    ReloadAccepted {
        /// The new version.
        version: u64,
        /// Prefixes in it.
        prefixes: usize,
    },
    /// `attach = "auto"` fell back to generic XDP: slower, and said loudly.
    AttachFallback {
        /// The interface.
        interface: String,
    },
    /// A route reload was refused; the running table stays.
    ReloadRefused {
        /// Why.
        reason: String,
    },
    /// A worker reported an abuser, but it was not banned: the ban budget
    /// was spent (no report storm can fill the ban map), or the map of
    /// automatic bans is full. Logged.
    BanLimited {
        /// The source.
        source: IpAddr,
        /// Why it was reported.
        reason: &'static str,
        /// Why it was not banned.
        refused: &'static str,
    },
    /// An emergency call was forwarded (every one is an event).
    EmergencyCall {
        /// The caller.
        source: IpAddr,
        /// Where it went.
        target: SocketAddr,
    },
    /// An operator banned a network through the control socket.
    OperatorBan {
        /// The network.
        network: Cidr,
        /// The reason given.
        reason: String,
        /// Seconds it lasts; `None` until unbanned.
        seconds: Option<u64>,
    },
    /// An operator lifted a ban.
    OperatorUnban {
        /// The network.
        network: Cidr,
    },
    /// An operator added a network to the allowlist.
    AllowAdded {
        /// The network.
        network: Cidr,
    },
    /// An operator removed a network from the allowlist.
    AllowRemoved {
        /// The network.
        network: Cidr,
    },
    /// The service address is announced through the routing daemon.
    Announced {
        /// Seconds the edge had been healthy first.
        held_seconds: f64,
    },
    /// The service address is withdrawn.
    Withdrawn {
        /// Why (`draining`, `stopping`, `workers_stopped`, `xdp_detached`,
        /// `no_upstream`).
        reason: &'static str,
        /// Seconds the next announcement waits once healthy.
        next_hold_seconds: f64,
    },
    /// The routing daemon could not be told what to announce (`Some`), or
    /// can be again (`None`).
    RoutingDaemon {
        /// What went wrong.
        error: Option<String>,
    },
    /// An operator drained the edge (or undrained it).
    Drain {
        /// Draining now.
        on: bool,
    },
    /// The fleet's bus is lost: this edge runs on its local state alone.
    BusDown {
        /// How it was noticed.
        reason: String,
    },
    /// The bus is back; the shared state was read again.
    BusUp {
        /// The server.
        server: String,
        /// Entries read.
        entries: usize,
        /// How long the outage lasted (`None` for the first connection).
        down_seconds: Option<f64>,
    },
    /// Something about the bus an operator should know.
    BusWarning {
        /// What.
        message: String,
    },
    /// Another edge's ban, taken here under this edge's rules.
    FleetBan {
        /// The source.
        network: Cidr,
        /// Why it was banned there.
        reason: String,
        /// The edge that banned it.
        origin: String,
        /// Seconds it lasts here.
        seconds: u64,
    },
    /// Another edge's operator action, applied here.
    FleetOperator {
        /// `ban`, `unban`, `allow`, `disallow`.
        action: &'static str,
        /// The network.
        network: Cidr,
        /// The edge it was made on.
        origin: String,
        /// What happened here (applied, or why not).
        outcome: String,
    },
}

/// The running appliance, owned by the control thread.
pub struct Appliance {
    cfg: ApplianceConfig,
    /// The XDP filter (AF_XDP mode, or socket mode with a `[filter]`).
    filter: Option<Filter>,
    /// Upstream addresses this edge put in the XDP allowlist.
    upstreams_allowed: Vec<IpAddr>,
    last_sweep: Instant,
    dataplane: Dataplane<EdgeProxy>,
    routes: RouteControl,
    prober: Prober,
    started: Instant,
    changes: Vec<HealthChange>,
    reloads_accepted: u64,
    reloads_refused: u64,
    last_reload_error: Option<String>,
    last_workers: Vec<WorkerSnapshot<ProxyStats>>,
    events: Vec<ControlEvent>,
    /// Bans the workers enforce themselves (no XDP filter): source to
    /// reason and expiry.
    worker_bans: HashMap<IpAddr, (&'static str, Instant)>,
    /// Bans in the XDP ban map that have had their event: made here (an
    /// `Abuse` event says so) or seen in the map by [`Appliance::snapshot`].
    logged_bans: HashSet<String>,
    /// The verified sources of every worker: the control thread's own
    /// copy, which decides what is spread to the workers and the filter.
    verified: VerifiedSources,
    /// How many bans reports may make, per second.
    ban_budget: RateLimit,
    ban_budget_state: RateState,
    /// The announcement of the fleet's service address, when configured.
    announcement: Option<Announcement>,
    /// The state shared with the fleet over the bus, when configured.
    share: Option<Share>,
    /// A digest of the route files in service (compared between edges).
    routes_digest: String,
    /// When this edge started (Unix ms).
    started_ms: u64,
}

impl Appliance {
    /// Loads the routes, starts one worker per configured queue (AF_XDP
    /// sockets go into `xsk_map`) and the health prober.
    pub fn start(cfg: ApplianceConfig) -> Result<Appliance, StartError> {
        let loaded = cfg.routes.load(&cfg.source).map_err(StartError::Routes)?;
        let mut events = Vec::new();
        let mut filter = match &cfg.filter {
            Some(fc) => {
                let f = Filter::load(fc, &cfg.dataplane.interface, fc.attach)
                    .map_err(StartError::Filter)?;
                if let Some(Attached::Generic { fell_back: true }) = f.attached() {
                    events.push(ControlEvent::AttachFallback {
                        interface: cfg.dataplane.interface.clone(),
                    });
                }
                Some(f)
            }
            None => None,
        };
        let health = loaded.table.health_settings();
        let workers = cfg.dataplane.workers.len();
        let (routes, worker_routes) = RouteControl::new(loaded.table, workers);
        let mut worker_routes: Vec<Option<_>> = worker_routes.into_iter().map(Some).collect();
        let mut proxy_cfg = cfg.proxy.clone();
        // Cookie epochs count on the wall clock, so that the edges of a
        // fleet (and this edge after a restart) agree on them.
        let mono = dataplane::now().as_nanos();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        proxy_cfg.cookie_clock_offset_ns = wall.saturating_sub(mono);
        let answers = cfg.proxy.answers;
        let abuse = cfg.proxy.abuse;
        let verified = VerifiedSources::new(
            answers.tracked_sources,
            answers.verified_seconds,
            answers.verified_per_48,
            cfg.proxy.secret.table_seed(0xc0),
        );
        let mut xsk_map = match (&mut filter, cfg.dataplane.mode) {
            (Some(f), IoMode::AfXdp) => Some(f.xsk_map().map_err(StartError::Filter)?),
            _ => None,
        };
        let dataplane = Dataplane::start(
            &cfg.dataplane,
            xsk_map.as_mut().map(|m| m as &mut dyn SocketMap),
            |i| {
                EdgeProxy::new(
                    proxy_cfg.clone(),
                    worker_routes[i].take().expect("one route set per worker"),
                )
            },
        )?;
        // Probes leave from the edge's address on a port of their own, so
        // their answers reach this socket and not the workers.
        let probe_addr = SocketAddr::new(cfg.probe_source, 0);
        let mut prober = Prober::bind(probe_addr, health).map_err(|source| StartError::Prober {
            addr: probe_addr,
            source,
        })?;
        prober.follow_table(routes.table());
        let announcement = match cfg.fleet.as_ref().and_then(|f| f.announce.clone()) {
            None => None,
            Some(a) => {
                let xdp = match &filter {
                    Some(f) => Some((
                        cfg.dataplane.interface.as_str(),
                        f.program_id().map_err(StartError::Filter)?,
                    )),
                    None => None,
                };
                Some(Announcement::start(a, xdp).map_err(StartError::Fleet)?)
            }
        };
        let share = match cfg
            .fleet
            .as_ref()
            .and_then(|f| f.bus.as_ref().map(|b| (f, b)))
        {
            None => None,
            Some((f, b)) => Some(start_share(&cfg, f, b)?),
        };
        let routes_digest = routes_digest(&cfg);
        let mut appliance = Appliance {
            cfg,
            filter,
            upstreams_allowed: Vec::new(),
            last_sweep: Instant::now(),
            dataplane,
            routes,
            prober,
            started: Instant::now(),
            changes: Vec::new(),
            reloads_accepted: 0,
            reloads_refused: 0,
            last_reload_error: None,
            last_workers: Vec::new(),
            events,
            worker_bans: HashMap::new(),
            logged_bans: HashSet::new(),
            verified,
            ban_budget: RateLimit::per_second(abuse.bans_per_second, abuse.ban_burst),
            ban_budget_state: RateState::default(),
            announcement,
            share,
            routes_digest,
            started_ms: unix_ms(),
        };
        appliance.allow_upstreams();
        appliance.sync_emergency().map_err(StartError::Filter)?;
        Ok(appliance)
    }

    /// Writes the route table's emergency numbers and URN setting into the
    /// XDP filter, so that the NIC path lets through exactly the calls the
    /// proxy treats as emergency calls.
    fn sync_emergency(&mut self) -> Result<(), FilterError> {
        let Some(filter) = &mut self.filter else {
            return Ok(());
        };
        let table = self.routes.table();
        let numbers: Vec<String> = table
            .emergency_numbers()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
        filter.set_emergency_numbers(&numbers)?;
        let mut c = filter.config_entry()?;
        if table.emergency_urns() {
            c.flags |= xdp::abi::CFG_EMERGENCY_URNS;
        } else {
            c.flags &= !xdp::abi::CFG_EMERGENCY_URNS;
        }
        filter.set_config_entry(c)
    }

    /// The proxy forwarded an emergency call from `source`: the rest of the
    /// call (ACK, BYE, re-INVITEs, to the emergency centre's address, not
    /// to the number) takes the emergency path in the XDP filter too.
    fn note_emergency_call(&mut self, source: IpAddr) {
        if let Some(f) = &mut self.filter {
            if let Err(e) = f.note_emergency_call(source, EMERGENCY_CALL_TTL) {
                eprintln!(
                    "dce-edge: cannot note the emergency call of {source} in the XDP filter: {e}"
                );
            }
        }
    }

    /// Keeps the route table's upstreams in the XDP allowlist: they answer
    /// every call (hundreds of responses per second from one address) and
    /// must never meet a per-source rate limit or a ban. Entries this edge
    /// added for upstreams a reload dropped are taken out again; entries the
    /// configuration lists stay.
    fn allow_upstreams(&mut self) {
        let Some(filter) = &mut self.filter else {
            return;
        };
        let configured: Vec<Cidr> = self
            .cfg
            .filter
            .as_ref()
            .map(|f| f.allowlist.clone())
            .unwrap_or_default();
        // Forward targets only: a redirect group's targets are addresses the
        // edge names to callers, not upstreams it trusts.
        let mut wanted: Vec<IpAddr> = self
            .routes
            .table()
            .forward_upstreams()
            .iter()
            .map(|a| a.ip())
            .collect();
        wanted.sort();
        wanted.dedup();
        for ip in &self.upstreams_allowed {
            if !wanted.contains(ip) && !configured.contains(&Cidr::host(*ip)) {
                let _ = filter.disallow(Cidr::host(*ip));
            }
        }
        for ip in &wanted {
            if let Err(e) = filter.allow(Cidr::host(*ip)) {
                eprintln!("dce-edge: cannot allowlist upstream {ip} in the XDP filter: {e}");
            }
        }
        self.upstreams_allowed = wanted;
    }

    /// The addresses the workers serve (the real port when the
    /// configuration said 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        self.dataplane.local_addrs()
    }

    /// One round of control work; call it every few milliseconds. Returns
    /// what happened, for the event log.
    pub fn tick(&mut self) -> Vec<ControlEvent> {
        let mut out = std::mem::take(&mut self.events);
        let mut proofs = Vec::new();
        self.dataplane.poll_events(|_worker, ev| match ev {
            ProxyEvent::Abuse { source, reason } => out.push(ControlEvent::Abuse {
                source,
                reason: reason.as_str(),
            }),
            ProxyEvent::Verified { source, .. } => proofs.push(source),
            ProxyEvent::EmergencyCall { source, target } => {
                out.push(ControlEvent::EmergencyCall { source, target })
            }
        });
        for ev in &out {
            if let ControlEvent::EmergencyCall { source, .. } = ev {
                self.note_emergency_call(*source);
            }
        }
        for source in proofs {
            if let Some(until) = self.spread_verification(source) {
                if let Some(share) = &mut self.share {
                    let now = dataplane::now().as_nanos();
                    let now_ms = unix_ms();
                    share.verified(
                        source,
                        now_ms + until.saturating_sub(now) / 1_000_000,
                        now_ms,
                    );
                }
                out.push(ControlEvent::Verified { source });
            }
        }
        self.enforce_bans(&mut out);
        self.changes.clear();
        if let Err(e) = self.prober.poll(Instant::now(), &mut self.changes) {
            eprintln!("dce-edge: health prober: {e}");
        }
        for c in &self.changes {
            self.routes.set_health(c.addr, c.up);
            let group = self
                .routes
                .table()
                .groups()
                .iter()
                .filter(|g| g.targets.iter().any(|t| t.addr == c.addr))
                .map(|g| g.name.as_str())
                .collect::<Vec<_>>()
                .join(",");
            out.push(ControlEvent::Health {
                target: c.addr,
                group,
                up: c.up,
                after: c.after,
            });
        }
        self.routes.pump();
        self.update_announcement(&mut out);
        self.update_share(&mut out);
        out
    }

    /// The fleet's bus: its connection and sync, what other edges shared
    /// (applied a few hundred per tick), this edge's heartbeat.
    fn update_share(&mut self, out: &mut Vec<ControlEvent>) {
        let Some(share) = &mut self.share else {
            return;
        };
        let now = Instant::now();
        let now_ms = unix_ms();
        for ev in share.poll(now, now_ms) {
            out.push(match ev {
                ShareEvent::Down { reason } => ControlEvent::BusDown { reason },
                ShareEvent::Up {
                    server,
                    entries,
                    down_for,
                } => ControlEvent::BusUp {
                    server,
                    entries,
                    down_seconds: down_for.map(|d| d.as_secs_f64()),
                },
                ShareEvent::Warning(message) => ControlEvent::BusWarning { message },
            });
        }
        let now_ns = dataplane::now().as_nanos();
        for _ in 0..crate::fleet::share::APPLY_PER_TICK {
            let Some(share) = &mut self.share else {
                return;
            };
            let verified = &self.verified;
            let allowlist = &self.cfg.proxy.allowlist;
            let upstreams = &self.upstreams_allowed;
            // What this edge knows of a network a shared ban names: the
            // rules (`fleet::shared`) take a ban only for a source verified
            // here through the banning edge's proof alone, and never one
            // this edge trusts (an upstream, the allowlist).
            let standing = |n: &Cidr| Standing {
                verified: verified.is_verified(n.addr, now_ns),
                proved_here: false,
                trusted: upstreams.iter().any(|&u| n.contains(u))
                    || allowlist
                        .iter()
                        .any(|c| c.contains(n.addr) || n.contains(c.addr)),
            };
            match share.next_incoming(now_ms, now_ns, &standing) {
                None => break,
                Some(Ok(apply)) => self.apply_shared(apply, out),
                // Counted by the shared state, in the metrics.
                Some(Err(_)) => {}
            }
        }
        if self.share.as_ref().is_some_and(|s| s.heartbeat_due(now)) {
            let hb = self.heartbeat(now_ms);
            if let Some(share) = &mut self.share {
                share.heartbeat(hb, now, now_ms);
            }
        }
    }

    fn heartbeat(&mut self, now_ms: u64) -> Heartbeat {
        let now_ns = dataplane::now().as_nanos();
        let announce = self.announcement.as_mut().map(|a| a.report(now_ns));
        Heartbeat {
            address: self
                .cfg
                .fleet
                .as_ref()
                .and_then(|f| f.address)
                .map(|a| a.to_string()),
            announced: announce.as_ref().map(|a| a.announced),
            reason: announce.and_then(|a| a.reason),
            routes_version: self.routes.version(),
            routes_digest: self.routes_digest.clone(),
            bans_made: self.share.as_ref().map_or(0, |s| s.own_bans(now_ms) as u64),
            verified: self.verified.len() as u64,
            started_ms: self.started_ms,
        }
    }

    /// Applies what another edge shared and the rules let through.
    fn apply_shared(&mut self, apply: Apply, out: &mut Vec<ControlEvent>) {
        let now = dataplane::now().as_nanos();
        match apply {
            Apply::Heartbeat { .. } => {}
            Apply::Verify { source, ttl_ms, .. } => {
                let until = now.saturating_add(ttl_ms.saturating_mul(1_000_000));
                let until = match self.verified.adopt(source, until, now) {
                    Proof::New(u) | Proof::Refreshed(u) => u,
                    Proof::Unchanged | Proof::Refused => return,
                };
                let full = self.dataplane.broadcast(ProxyControl::Verify {
                    source,
                    until: Timestamp::from_nanos(until),
                });
                if !full.is_empty() {
                    eprintln!("dce-edge: control rings of workers {full:?} full: {source} (verified by the fleet) verified on the others only");
                }
                if let Some(f) = &mut self.filter {
                    let ttl = Duration::from_nanos(until.saturating_sub(now));
                    if let Err(e) = f.verify(source, ttl) {
                        eprintln!("dce-edge: cannot mark {source} verified in the XDP filter: {e}");
                    }
                }
            }
            Apply::Ban {
                network,
                reason,
                ttl_ms,
                origin,
            } => {
                let ttl = Duration::from_millis(ttl_ms.max(1));
                match &mut self.filter {
                    Some(f) => {
                        self.logged_bans.insert(network.to_string());
                        let why = match reason.as_str() {
                            "scanner" => BanReason::Scanner,
                            "auth_failure" => BanReason::AuthFailure,
                            "extension_scan" => BanReason::ExtensionScan,
                            "flood" => BanReason::Flood,
                            _ => BanReason::NotFound,
                        };
                        match f.auto_ban(network.addr, ttl, why) {
                            Ok(AutoBan::Banned | AutoBan::Kept { .. }) => {}
                            Ok(AutoBan::Full) => {
                                out.push(ControlEvent::BanLimited {
                                    source: network.addr,
                                    reason: "fleet",
                                    refused: "the map of automatic bans is full",
                                });
                                return;
                            }
                            Err(e) => {
                                eprintln!("dce-edge: cannot ban {network} (from {origin}) in the XDP filter: {e}");
                                return;
                            }
                        }
                    }
                    None => {
                        self.worker_bans
                            .insert(network.addr, ("fleet", Instant::now() + ttl));
                        self.dataplane.broadcast(ProxyControl::Ban {
                            network,
                            until: dataplane::now().plus(ttl),
                        });
                    }
                }
                out.push(ControlEvent::FleetBan {
                    network,
                    reason,
                    origin,
                    seconds: ttl.as_secs(),
                });
            }
            Apply::Operator {
                network,
                action,
                ttl_ms,
                origin,
            } => {
                let (name, result) = match &action {
                    OperatorAction::Ban { reason, note, .. } => (
                        "ban",
                        reason
                            .parse::<BanReason>()
                            .map_err(|e| format!("reason {reason:?}: {e}"))
                            .and_then(|r| {
                                let note: String =
                                    note.chars().take(xdp::maps::BAN_NOTE_MAX).collect();
                                self.apply_operator_ban(
                                    network,
                                    ttl_ms.map(Duration::from_millis),
                                    r,
                                    &note,
                                    Some(&origin),
                                )
                            }),
                    ),
                    OperatorAction::Unban { .. } => {
                        ("unban", self.apply_operator_unban(network, Some(&origin)))
                    }
                    OperatorAction::Allow { .. } => {
                        ("allow", self.apply_operator_allow(network, Some(&origin)))
                    }
                    OperatorAction::Disallow { .. } => (
                        "disallow",
                        self.apply_operator_disallow(network, Some(&origin)),
                    ),
                };
                out.push(ControlEvent::FleetOperator {
                    action: name,
                    network,
                    origin,
                    outcome: match result {
                        Ok(m) => m,
                        Err(e) => format!("not applied: {e}"),
                    },
                });
            }
        }
    }

    /// Takes the edge's health to the announcement of the service address.
    fn update_announcement(&mut self, out: &mut Vec<ControlEvent>) {
        let Some(a) = &mut self.announcement else {
            return;
        };
        let workers_running = self.dataplane.all_running();
        let upstreams = self.routes.table().forward_upstreams();
        let upstream_reachable = upstreams.is_empty()
            || upstreams
                .iter()
                .any(|t| self.prober.probes().is_up(*t).unwrap_or(true));
        for ev in a.update(
            workers_running,
            upstream_reachable,
            dataplane::now().as_nanos(),
        ) {
            out.push(match ev {
                AnnounceEvent::Announced { held_seconds } => {
                    ControlEvent::Announced { held_seconds }
                }
                AnnounceEvent::Withdrawn {
                    problem,
                    next_hold_seconds,
                } => ControlEvent::Withdrawn {
                    reason: problem.name(),
                    next_hold_seconds,
                },
                AnnounceEvent::DaemonError { error } => ControlEvent::RoutingDaemon { error },
            });
        }
    }

    /// An operator drains the edge (`dce-edge drain`): the service address
    /// is withdrawn so the routers send new flows elsewhere, while the edge
    /// keeps serving what still reaches it. Undrained, it announces again
    /// after the hold-down.
    pub fn set_draining(&mut self, on: bool) -> Result<String, String> {
        let Some(a) = &mut self.announcement else {
            return Err(
                "this edge announces nothing: drain needs [fleet.announce] in the configuration"
                    .into(),
            );
        };
        let was = a.draining();
        a.set_draining(on);
        if was != on {
            self.events.push(ControlEvent::Drain { on });
        }
        Ok(match (on, was) {
            (true, true) => "already draining: the service address stays withdrawn".into(),
            (true, false) => "draining: the service address is withdrawn; this edge keeps serving what still reaches it".into(),
            (false, false) => "not draining".into(),
            (false, true) => format!(
                "undrained: the service address is announced again after {} s of health",
                a.report(dataplane::now().as_nanos()).hold_down_seconds
            ),
        })
    }

    /// The edge is about to stop: withdraws the service address first.
    /// Returns how long to keep serving before stopping the workers (the
    /// routers move the flows, calls in flight end), zero when nothing is
    /// announced.
    pub fn begin_stop(&mut self) -> Duration {
        let Some(a) = &mut self.announcement else {
            return Duration::ZERO;
        };
        let was_announced = a.announced();
        a.begin_stop();
        let mut out = Vec::new();
        self.update_announcement(&mut out);
        self.events.extend(out);
        if was_announced {
            Duration::from_secs(
                self.announcement
                    .as_ref()
                    .map_or(0, |a| a.config().withdraw_grace_seconds),
            )
        } else {
            Duration::ZERO
        }
    }

    /// This edge's fleet report, when it is in a fleet.
    pub fn fleet_report(&mut self) -> Option<stats::FleetReport> {
        let f = self.cfg.fleet.as_ref()?;
        let now = dataplane::now().as_nanos();
        let now_ms = unix_ms();
        Some(stats::FleetReport {
            name: f.name.clone(),
            edge: f.edge.clone(),
            address: f.address.map(|a| a.to_string()),
            announce: self.announcement.as_mut().map(|a| a.report(now)),
            bus: self.share.as_ref().map(|s| s.report(now_ms)),
            peers: self
                .share
                .as_ref()
                .map(|s| s.peers(now_ms))
                .unwrap_or_default(),
            shared_bans: self
                .share
                .as_ref()
                .map(|s| s.shared_bans(&f.edge, now_ms, 100))
                .unwrap_or_default(),
        })
    }

    /// Reads the route files again; on success every worker swaps to the new
    /// table between batches, on failure the running table stays.
    pub fn reload_routes(&mut self) -> Result<u64, String> {
        match self.routes.reload(&self.cfg.routes, &self.cfg.source) {
            Ok(r) => {
                self.reloads_accepted += 1;
                self.routes_digest = routes_digest(&self.cfg);
                self.prober.follow_table(self.routes.table());
                self.allow_upstreams();
                if let Err(e) = self.sync_emergency() {
                    eprintln!(
                        "dce-edge: cannot write the emergency numbers into the XDP filter: {e}"
                    );
                }
                self.events.push(ControlEvent::ReloadAccepted {
                    version: r.version,
                    prefixes: self.routes.table().prefix_count(),
                });
                Ok(r.version)
            }
            Err(e) => {
                let reason = e.to_string();
                self.reloads_refused += 1;
                self.last_reload_error = Some(reason.clone());
                self.events.push(ControlEvent::ReloadRefused {
                    reason: reason.clone(),
                });
                Err(reason)
            }
        }
    }

    /// The route table version the control thread last installed.
    pub fn routes_version(&self) -> u64 {
        self.routes.version()
    }

    /// Prefixes in the table the control thread last installed.
    pub fn prefix_count(&self) -> usize {
        self.routes.table().prefix_count()
    }

    /// Asks every worker for its counters and assembles a snapshot.
    pub fn snapshot(&mut self) -> Snapshot {
        let snaps = self.dataplane.snapshots(Duration::from_secs(2));
        if snaps.len() == self.dataplane.workers() {
            self.last_workers = snaps;
        }
        let mut s = self.assemble();
        if self.filter.is_some() {
            self.note_new_bans(&s.bans);
        }
        s.fleet = self.fleet_report();
        s
    }

    /// Queues a `Banned` event for every ban in the XDP map that has had
    /// none: the program bans scanners by itself, and `dce-edge ban` runs
    /// in another process, so the map is the only place the control thread
    /// learns of them. A ban that lapsed and comes back is new again.
    fn note_new_bans(&mut self, bans: &[stats::BanInForce]) {
        // One pass each way (hash lookups): a map of tens of thousands of
        // bans costs milliseconds, not seconds.
        let current: HashSet<&str> = bans.iter().map(|b| b.source.as_str()).collect();
        self.logged_bans
            .retain(|logged| current.contains(logged.as_str()));
        for b in bans {
            if self.logged_bans.insert(b.source.clone()) {
                // The program's own ban of a verified scanner is this edge's
                // ban under its rules: shared with the fleet.
                if b.reason == "scanner" {
                    if let (Some(share), Ok(network)) = (&mut self.share, b.source.parse::<Cidr>())
                    {
                        let now_ms = unix_ms();
                        share.ban_made(network, "scanner", now_ms + b.seconds_left * 1000, now_ms);
                    }
                }
                self.events.push(ControlEvent::Banned {
                    source: b.source.clone(),
                    reason: b.reason.clone(),
                    seconds: b.seconds_left,
                });
            }
        }
    }

    /// A worker saw `source` prove its address. When that is news (a new
    /// verification, or a refresh after a while), every worker and the XDP
    /// filter are told, so the source is verified on every queue and spared
    /// the filter's budget for unverified sources. When it was news, the
    /// time it lapses (the dataplane's clock).
    /// The per-/48 limit is applied here again, over all workers.
    fn spread_verification(&mut self, source: IpAddr) -> Option<u64> {
        let now = dataplane::now().as_nanos();
        let until = match self.verified.prove(source, now) {
            Proof::New(until) | Proof::Refreshed(until) => until,
            Proof::Unchanged | Proof::Refused => return None,
        };
        let full = self.dataplane.broadcast(ProxyControl::Verify {
            source,
            until: Timestamp::from_nanos(until),
        });
        if !full.is_empty() {
            eprintln!("dce-edge: control rings of workers {full:?} full: {source} verified on the others only");
        }
        if let Some(f) = &mut self.filter {
            let ttl = Duration::from_nanos(until.saturating_sub(now));
            if let Err(e) = f.verify(source, ttl) {
                eprintln!("dce-edge: cannot mark {source} verified in the XDP filter: {e}");
            }
        }
        Some(until)
    }

    /// Bans the sources the workers reported (only sources that proved
    /// their address are ever reported), within the ban budget: in the XDP
    /// filter, or in every worker where there is none. Several workers may
    /// report one source; it is banned once.
    fn enforce_bans(&mut self, events: &mut Vec<ControlEvent>) {
        let now = Instant::now();
        let ban_for = Duration::from_secs(self.cfg.proxy.abuse.ban_seconds as u64);
        self.worker_bans.retain(|_, (_, until)| *until > now);
        if let Some(f) = &mut self.filter {
            if now.duration_since(self.last_sweep) >= Duration::from_secs(5) {
                self.last_sweep = now;
                let _ = f.sweep_expired_bans();
                let _ = f.sweep_expired_verified();
            }
        }
        let reports: Vec<(IpAddr, &'static str)> = events
            .iter()
            .filter_map(|ev| match ev {
                ControlEvent::Abuse { source, reason } => Some((*source, *reason)),
                _ => None,
            })
            .collect();
        for (source, reason) in reports {
            if self.worker_bans.contains_key(&source) {
                continue;
            }
            let clock = dataplane::now().as_nanos();
            if !self.ban_budget.admit(&mut self.ban_budget_state, clock) {
                events.push(ControlEvent::BanLimited {
                    source,
                    reason,
                    refused: "ban budget spent",
                });
                continue;
            }
            self.worker_bans.insert(source, (reason, now + ban_for));
            if let Some(share) = &mut self.share {
                let now_ms = unix_ms();
                share.ban_made(
                    Cidr::host(source),
                    reason,
                    now_ms + ban_for.as_millis() as u64,
                    now_ms,
                );
            }
            match &mut self.filter {
                Some(f) => {
                    // The Abuse event is this ban's event.
                    self.logged_bans.insert(Cidr::host(source).to_string());
                    let why = match reason {
                        "auth_failure" => BanReason::AuthFailure,
                        "extension_scan" => BanReason::ExtensionScan,
                        _ => BanReason::NotFound,
                    };
                    // Into the automatic bans: an operator's ban of the
                    // same source is another map, never shortened.
                    match f.auto_ban(source, ban_for, why) {
                        Ok(AutoBan::Banned | AutoBan::Kept { .. }) => {}
                        Ok(AutoBan::Full) => events.push(ControlEvent::BanLimited {
                            source,
                            reason,
                            refused: "the map of automatic bans is full",
                        }),
                        Err(e) => {
                            eprintln!("dce-edge: cannot ban {source} in the XDP filter: {e}")
                        }
                    }
                }
                None => {
                    let until = dataplane::now().plus(ban_for);
                    self.dataplane.broadcast(ProxyControl::Ban {
                        network: Cidr::host(source),
                        until,
                    });
                }
            }
        }
    }

    /// An operator's ban (through the control socket): in the XDP filter,
    /// and in every worker where there is none. `ttl` `None` lasts until
    /// unbanned.
    pub fn operator_ban(
        &mut self,
        network: Cidr,
        ttl: Option<Duration>,
        reason: BanReason,
        note: &str,
    ) -> Result<String, String> {
        let done = self.apply_operator_ban(network, ttl, reason, note, None)?;
        let now_ms = unix_ms();
        self.share_operator_action(
            OperatorAction::Ban {
                network: network.to_string(),
                reason: reason.name().to_string(),
                note: note.to_string(),
                until_ms: ttl.map(|t| now_ms + t.as_millis() as u64),
            },
            now_ms,
        );
        Ok(done)
    }

    /// Shares an operator's action with the fleet, when there is one.
    fn share_operator_action(&mut self, action: OperatorAction, now_ms: u64) {
        if let Some(share) = &mut self.share {
            share.operator_action(action, now_ms);
        }
    }

    /// An operator's ban, made here (`origin` `None`) or on another edge.
    fn apply_operator_ban(
        &mut self,
        network: Cidr,
        ttl: Option<Duration>,
        reason: BanReason,
        note: &str,
        origin: Option<&str>,
    ) -> Result<String, String> {
        match &mut self.filter {
            Some(f) => {
                f.ban(network, ttl, reason, note)
                    .map_err(|e| e.to_string())?;
                self.logged_bans.insert(network.to_string());
            }
            None => {
                let until = match ttl {
                    Some(t) => dataplane::now().plus(t),
                    None => Timestamp::from_nanos(u64::MAX),
                };
                self.broadcast_or_say(ProxyControl::Ban { network, until })?;
            }
        }
        if origin.is_none() {
            self.events.push(ControlEvent::OperatorBan {
                network,
                reason: reason.name().to_string(),
                seconds: ttl.map(|t| t.as_secs()),
            });
        }
        Ok(format!(
            "banned {network} ({}), {}",
            reason.name(),
            match ttl {
                Some(t) => format!("for {} s", t.as_secs()),
                None => "until unbanned".into(),
            }
        ))
    }

    /// Lifts the ban of exactly `network`, in the filter and the workers.
    pub fn operator_unban(&mut self, network: Cidr) -> Result<String, String> {
        let done = self.apply_operator_unban(network, None)?;
        self.share_operator_action(
            OperatorAction::Unban {
                network: network.to_string(),
            },
            unix_ms(),
        );
        Ok(done)
    }

    fn apply_operator_unban(
        &mut self,
        network: Cidr,
        origin: Option<&str>,
    ) -> Result<String, String> {
        let mut found = false;
        if let Some(f) = &mut self.filter {
            let lifted = f.unban(network).map_err(|e| e.to_string())?;
            found |= lifted.operator || lifted.automatic;
        }
        if let Some(ip) = (network.prefix == if network.addr.is_ipv4() { 32 } else { 128 })
            .then_some(network.addr)
        {
            found |= self.worker_bans.remove(&ip).is_some();
        }
        self.broadcast_or_say(ProxyControl::Unban { network })?;
        if self.filter.is_some() && !found {
            return Err(format!(
                "{network} is not banned (see `dce-edge ban --list`; unban takes the exact network)"
            ));
        }
        if origin.is_none() {
            self.events.push(ControlEvent::OperatorUnban { network });
        }
        Ok(format!("unbanned {network}"))
    }

    /// Adds `network` to the allowlist of the filter and of every worker.
    pub fn operator_allow(&mut self, network: Cidr) -> Result<String, String> {
        let done = self.apply_operator_allow(network, None)?;
        self.share_operator_action(
            OperatorAction::Allow {
                network: network.to_string(),
            },
            unix_ms(),
        );
        Ok(done)
    }

    fn apply_operator_allow(
        &mut self,
        network: Cidr,
        origin: Option<&str>,
    ) -> Result<String, String> {
        if let Some(f) = &mut self.filter {
            f.allow(network).map_err(|e| e.to_string())?;
        }
        self.broadcast_or_say(ProxyControl::Allow { network })?;
        if origin.is_none() {
            self.events.push(ControlEvent::AllowAdded { network });
        }
        Ok(format!(
            "allowed {network}: trusted by the filter and the proxy (no bans, budgets or rate limits)"
        ))
    }

    /// Removes `network` from the allowlist of the filter and of every
    /// worker.
    pub fn operator_disallow(&mut self, network: Cidr) -> Result<String, String> {
        let done = self.apply_operator_disallow(network, None)?;
        self.share_operator_action(
            OperatorAction::Disallow {
                network: network.to_string(),
            },
            unix_ms(),
        );
        Ok(done)
    }

    fn apply_operator_disallow(
        &mut self,
        network: Cidr,
        origin: Option<&str>,
    ) -> Result<String, String> {
        if let Some(f) = &mut self.filter {
            if !f.disallow(network).map_err(|e| e.to_string())? {
                return Err(format!("{network} is not in the allowlist"));
            }
        }
        self.broadcast_or_say(ProxyControl::Disallow { network })?;
        if origin.is_none() {
            self.events.push(ControlEvent::AllowRemoved { network });
        }
        Ok(format!("removed {network} from the allowlist"))
    }

    fn broadcast_or_say(&mut self, msg: ProxyControl) -> Result<(), String> {
        let full = self.dataplane.broadcast(msg);
        if full.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the control rings of workers {full:?} are full; the change reached the others only: try again"
            ))
        }
    }

    fn assemble(&self) -> Snapshot {
        let mut s = assemble(
            &self.cfg,
            &self.routes,
            &self.prober,
            self.started,
            self.reload_counts(),
            &self.last_workers,
        );
        add_bans(&mut s, self.filter.as_ref(), &self.worker_bans);
        s
    }

    fn reload_counts(&self) -> (u64, u64, Option<String>) {
        (
            self.reloads_accepted,
            self.reloads_refused,
            self.last_reload_error.clone(),
        )
    }

    /// Stops the workers and returns the final snapshot.
    pub fn stop(mut self) -> Result<Snapshot, DataplaneError> {
        let fleet = self.fleet_report();
        if let Some(s) = &mut self.share {
            s.close();
        }
        if let Some(a) = self.announcement.take() {
            if !a.stop(Duration::from_secs(3)) {
                eprintln!("dce-edge: BIRD did not confirm the withdrawal of the service address");
            }
        }
        let reloads = self.reload_counts();
        let finals = self.dataplane.stop()?;
        let mut s = assemble(
            &self.cfg,
            &self.routes,
            &self.prober,
            self.started,
            reloads,
            &finals,
        );
        add_bans(&mut s, self.filter.as_ref(), &self.worker_bans);
        s.fleet = fleet;
        Ok(s)
    }
}

fn assemble(
    cfg: &ApplianceConfig,
    routes: &RouteControl,
    prober: &Prober,
    started: Instant,
    (reloads_accepted, reloads_refused, last_reload_error): (u64, u64, Option<String>),
    workers: &[WorkerSnapshot<ProxyStats>],
) -> Snapshot {
    {
        let mut s = Snapshot {
            version: env!("CARGO_PKG_VERSION").to_string(),
            role: stats::Role::Appliance,
            interface: (!cfg.dataplane.interface.is_empty())
                .then(|| cfg.dataplane.interface.clone()),
            taken_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            uptime_seconds: started.elapsed().as_secs_f64(),
            ..Snapshot::default()
        };
        s.modes.attach = "none".into();
        s.modes.dataplane = match workers.first().map(|w| w.io) {
            Some(IoKind::AfXdpZeroCopy) => "zero_copy",
            Some(IoKind::AfXdpCopy) => "copy",
            _ => "socket",
        }
        .into();
        let mut setup = Histogram::<u64>::new_with_bounds(1, 120_000_000, 2).expect("valid bounds");
        let mut emergency_setup =
            Histogram::<u64>::new_with_bounds(1, 120_000_000, 2).expect("valid bounds");
        for w in workers {
            s.workers.push(worker_counters(
                w,
                cfg.dataplane.workers.get(w.worker).map(|p| p.queue),
            ));
            let h = &w.handler;
            s.routes.lookups += h.lookups;
            s.routes.misses += h.misses;
            s.routes.batched_lookups += h.batched_lookups;
            for (g, n) in &h.hits {
                *s.routes.hits.entry(g.clone()).or_default() += n;
            }
            for (g, n) in &h.cap_rejections {
                *s.routes.cap_rejections.entry(g.clone()).or_default() += n;
            }
            s.calls.invites_forwarded += h.invites_forwarded;
            s.calls.answered += h.calls_answered;
            s.calls.failed += h.calls_failed;
            let _ = setup.add(&h.setup_us);
            let e = &h.emergency;
            s.emergency.attempted += e.attempted;
            s.emergency.forwarded += e.forwarded;
            s.emergency.answered += e.answered;
            s.emergency.failed += e.failed;
            s.emergency.over_budget += e.over_budget;
            let _ = emergency_setup.add(&h.emergency_setup_us);
        }
        s.setup_latency = latency(&setup);
        s.emergency.setup_latency = latency(&emergency_setup);
        s.routes.table_version = routes.version();
        s.routes.prefixes = routes.table().prefix_count() as u64;
        s.routes.reloads_accepted = reloads_accepted;
        s.routes.reloads_refused = reloads_refused;
        s.routes.last_reload_error = last_reload_error;
        let table = routes.table();
        for g in table.groups() {
            for t in &g.targets {
                // Each target's own probes (redirect targets are not probed).
                let probes = prober.probes().target_probes(t.addr).unwrap_or_default();
                s.targets.push(stats::TargetState {
                    group: g.name.clone(),
                    target: t.addr.to_string(),
                    up: prober.probes().is_up(t.addr).unwrap_or(true),
                    rtt_ms: probes.rtt.map(|d| d.as_secs_f64() * 1000.0),
                    probes_sent: probes.sent,
                    probes_answered: probes.answered,
                });
            }
        }
        s
    }
}

fn worker_counters(w: &WorkerSnapshot<ProxyStats>, queue: Option<u32>) -> stats::WorkerReport {
    let h = &w.handler;
    let c = &w.counters;
    let mut out = stats::WorkerReport {
        id: w.worker,
        core: w.core,
        queue: if w.io == IoKind::Socket { None } else { queue },
        received: c.received,
        transmitted: c.transmitted,
        parse_errors: h
            .parse_errors
            .iter()
            .map(|(k, n)| (k.to_string(), *n))
            .collect(),
        forwarded_requests: h.forwarded_requests,
        forwarded_responses: h.forwarded_responses,
        answered: h.answered.clone(),
        ..Default::default()
    };
    for (name, n) in w.handler_drops().chain(c.drops()) {
        if n > 0 {
            *out.dropped.entry(name.to_string()).or_default() += n;
        }
    }
    out.rings
        .insert("fill_shortfalls".into(), c.fill_shortfalls);
    out.rings.insert("tx_kicks".into(), c.tx_kicks);
    out.rings
        .insert("events_lost".into(), w.events_lost + h.events_lost);
    if let Some(x) = &w.xsk {
        out.rings.insert("rx_dropped".into(), x.rx_dropped);
        out.rings.insert("rx_ring_full".into(), x.rx_ring_full);
        out.rings
            .insert("rx_fill_ring_empty".into(), x.rx_fill_ring_empty_descs);
        out.rings
            .insert("rx_invalid_descs".into(), x.rx_invalid_descs);
        out.rings
            .insert("tx_invalid_descs".into(), x.tx_invalid_descs);
    }
    out
}

/// Connects this edge to its fleet's bus: reads the credentials from their
/// files (errors name the configuration's line), derives the signing key
/// from the shared proxy secret.
fn start_share(
    cfg: &ApplianceConfig,
    f: &::fleet::FleetConfig,
    b: &::fleet::BusConfig,
) -> Result<Share, StartError> {
    let read = |path: &std::path::Path, line: usize| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .map_err(|e| {
                StartError::Fleet(
                    config::ConfigError::at_line(
                        cfg.source.path(),
                        line,
                        format!("cannot read {}: {e}", path.display()),
                    )
                    .to_string(),
                )
            })
    };
    let (user, token) = match &b.credentials {
        ::fleet::Credentials::None => (None, None),
        ::fleet::Credentials::UserPassword {
            user,
            password_file,
            line,
        } => (Some((user.clone(), read(password_file, *line)?)), None),
        ::fleet::Credentials::Token { token_file, line } => (None, Some(read(token_file, *line)?)),
    };
    let abuse_ban = Duration::from_secs(cfg.proxy.abuse.ban_seconds as u64);
    let scanner_ban = cfg.filter.as_ref().map_or(Duration::ZERO, |f| f.ban_ttl);
    let max_ban = abuse_ban.max(scanner_ban);
    let verified = Duration::from_secs(cfg.proxy.answers.verified_seconds as u64);
    let mut limits = b.limits;
    limits.max_ban_ms = max_ban.as_millis() as u64;
    Ok(Share::start(
        &f.name,
        &f.edge,
        b,
        user,
        token,
        MacKey::new(cfg.proxy.secret.fleet_key()),
        limits,
        max_ban.max(verified) + Duration::from_secs(60),
        verified.as_millis() as u64,
    ))
}

/// A digest of the route files in service: two edges with equal digests
/// route alike (the table version is each edge's own counter).
fn routes_digest(cfg: &ApplianceConfig) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for p in [cfg.routes.groups.get_ref(), cfg.routes.prefixes.get_ref()] {
        match std::fs::read(cfg.source.resolve(p)) {
            Ok(bytes) => {
                h.update(&(bytes.len() as u64).to_le_bytes());
                h.update(&bytes);
            }
            Err(_) => h.update(b"unreadable"),
        }
    }
    format!("{:016x}", h.digest())
}

/// How long the XDP filter treats a caller's packets as its emergency
/// call's after the proxy forwarded the call: longer than nearly every
/// emergency call lasts. Another emergency call from it starts it again.
pub const EMERGENCY_CALL_TTL: Duration = Duration::from_secs(2 * 3600);

/// Bucket bounds of the setup-latency histogram, in milliseconds.
pub const SETUP_BOUNDS_MS: [f64; 14] = [
    0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
];

fn latency(h: &Histogram<u64>) -> stats::LatencyHistogram {
    let mut counts = Vec::with_capacity(SETUP_BOUNDS_MS.len() + 1);
    let mut below = 0u64;
    for b in SETUP_BOUNDS_MS {
        let upto = h.count_between(0, (b * 1000.0) as u64);
        counts.push(upto.saturating_sub(below));
        below = upto;
    }
    counts.push(h.len().saturating_sub(below));
    stats::LatencyHistogram {
        bounds_ms: SETUP_BOUNDS_MS.to_vec(),
        counts,
        count: h.len(),
        sum_ms: h.mean() * h.len() as f64 / 1000.0,
        p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
    }
}

/// The control thread's part of a snapshot: the XDP filter's counters and
/// bans when it runs, else the bans the workers enforce.
fn add_bans(
    s: &mut Snapshot,
    filter: Option<&Filter>,
    worker_bans: &HashMap<IpAddr, (&'static str, Instant)>,
) {
    if let Some(f) = filter {
        add_filter(s, f);
        return;
    }
    let now = Instant::now();
    s.bans = worker_bans
        .iter()
        .map(|(ip, (reason, until))| stats::BanInForce {
            source: ip.to_string(),
            reason: reason.to_string(),
            seconds_left: until.saturating_duration_since(now).as_secs(),
        })
        .collect();
}

/// The XDP filter's part of a snapshot: verdicts, attach mode, top sources
/// and bans, read from its maps.
fn add_filter(s: &mut Snapshot, f: &Filter) {
    if let Some(a) = f.attached() {
        s.modes.attach = a.name().into();
        s.modes.attach_fallback = matches!(a, Attached::Generic { fell_back: true });
    }
    if let Ok(st) = f.read_stats() {
        s.xdp = Some(stats::XdpCounters {
            drops: st
                .drops
                .iter()
                .map(|(reason, count)| (reason.name().to_string(), count))
                .collect(),
            passed: st.passed + st.passed_other,
            redirected: st.redirected,
        });
    }
    if let Ok(top) = f.top_sources(20) {
        s.top_sources = top
            .into_iter()
            .map(|t| stats::TopOffender {
                source: t.source.to_string(),
                drops: t.drops,
                last_reason: t.last_reason.into(),
            })
            .collect();
    }
    if let Ok(n) = f.verified_count() {
        s.verified_sources = n as u64;
    }
    if let Ok(bans) = f.bans() {
        s.bans = bans
            .into_iter()
            .filter(|b| !b.expired)
            .map(|b| stats::BanInForce {
                source: b.network.to_string(),
                reason: b.reason.name().into(),
                seconds_left: b.left.map_or(u64::MAX, |d| d.as_secs()),
            })
            .collect();
    }
}
