//! The control thread of the appliance: starts the workers with a proxy
//! each, keeps their route tables and target health current, turns their
//! abuse reports into bans, and assembles the stats snapshot. It never
//! touches a worker's state except through the rings.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use super::config::ApplianceConfig;
use crate::events::{describe_reload, BanWatch, ControlEvent};
use crate::fleet::share::{unix_ms, Share, ShareEvent};
use crate::fleet::{AnnounceEvent, Announcement};
use crate::probe::Prober;
use ::fleet::message::{Heartbeat, MacKey, OperatorAction};
use ::fleet::shared::{Apply, Standing};
use dataplane::stream::{StreamLayer, StreamThread};
use dataplane::{Dataplane, DataplaneError, IoKind, IoMode, SocketMap, Timestamp, WorkerSnapshot};

/// Bytes of each worker's ring to the stream thread: what it must hold is
/// what the workers hand over while the stream thread waits for a core.
/// On a loaded 2-core box that thread was measured waiting for its core
/// 0.11-0.50 s in each second at 8,000 CPS over TCP (schedstat). Answers
/// for stream callers were two a call there (the `edge_stream` bench:
/// 320,000 handed over for 160,000 calls), taken here as 1 KiB each with
/// the record's header (a 200 with SDP): 16,000 a second, 16 MB/s, at
/// 8,000 CPS. 4 MiB holds a quarter second of that if one worker gets
/// them all, half a second split over two; the thread drains everything a
/// ring held once per round (`StreamLayer::poll_once`), so a stall shorter
/// than that loses nothing. Allocated once per worker, touched as used.
const HANDOFF_RING: usize = 4 << 20;
/// The stream thread's longest sleep (it is woken for work).
const STREAM_WAIT: Duration = Duration::from_millis(100);
use proxy::rate::{RateLimit, RateState};
use proxy::verified::{Proof, VerifiedSources};
use proxy::{EdgeProxy, ProxyControl, ProxyEvent, ProxyStats};
use route::health::{HealthChange, InviteActivity, TargetBook, Transition};
use route::{RouteControl, RouteErrors};
use telemetry::stats::{self, Snapshot};
use xdp::config::Cidr;
use xdp::loader::{Attached, Filter};
use xdp::maps::{AutoBan, BanReason};
use xdp::{FilterError, ListChanges};

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
    /// The `[stream]` listeners could not be opened, or their thread
    /// started.
    #[error("SIP over TCP/TLS: {0}")]
    Stream(std::io::Error),
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
    /// SIP over TCP and TLS, on its own thread, when configured.
    stream: Option<StreamThread<EdgeProxy>>,
    /// Its counters as last asked for.
    last_stream: Option<stats::StreamReport>,
    /// The last window of refused connections logged (its number).
    refusals_logged: u64,
    routes: RouteControl,
    prober: Prober,
    /// Every target's health: the probes' verdict and passive health's.
    book: TargetBook,
    started: Instant,
    changes: Vec<HealthChange>,
    transitions: Vec<Transition>,
    /// The cause of each target's last change, for the console.
    causes: HashMap<SocketAddr, String>,
    reloads_accepted: u64,
    reloads_refused: u64,
    last_reload_error: Option<String>,
    filter_reloads: stats::ReloadCounts,
    /// Blocklist imports in progress (one event each).
    imports: crate::feeds::ImportTally,
    last_workers: Vec<WorkerSnapshot<ProxyStats>>,
    /// When each worker last answered a snapshot request (by worker index).
    answered_at: Vec<Option<Instant>>,
    events: Vec<ControlEvent>,
    /// Bans the workers enforce themselves (no XDP filter): source to
    /// reason and expiry.
    worker_bans: HashMap<IpAddr, (&'static str, Instant)>,
    /// Bans that have had their event, so that each gets one when it
    /// appears and one when it goes.
    ban_watch: BanWatch,
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
        // The stream thread runs a proxy of its own: one more route set
        // (and CPS share).
        let proxies = workers + cfg.stream.is_some() as usize;
        let (routes, worker_routes) = RouteControl::new(loaded.table, proxies);
        let mut worker_routes: Vec<Option<_>> = worker_routes.into_iter().map(Some).collect();
        let mut proxy_cfg = cfg.proxy.clone();
        // Cookie epochs count on the wall clock, so that the edges of a
        // fleet (and this edge after a restart) agree on them;
        // set before any proxy is made, the stream thread's included.
        let mono = dataplane::now().as_nanos();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        proxy_cfg.cookie_clock_offset_ns = wall.saturating_sub(mono);
        // The stream listeners open first: every proxy names their
        // addresses (Record-Route across transports, Routes that are ours).
        let mut stream_layer = match &cfg.stream {
            None => None,
            Some(sc) => {
                let layer = StreamLayer::open_with(sc.clone(), |tcp, tls| {
                    proxy_cfg.advertise_tcp = tcp;
                    proxy_cfg.advertise_tls = tls;
                    EdgeProxy::new(
                        proxy_cfg.clone(),
                        worker_routes[workers]
                            .take()
                            .expect("the stream thread's route set"),
                    )
                })
                .map_err(StartError::Stream)?;
                Some(layer)
            }
        };
        // The workers hand messages for TCP/TLS peers to it.
        let handoffs = match &mut stream_layer {
            Some(layer) => (0..workers).map(|_| layer.handoff(HANDOFF_RING)).collect(),
            None => Vec::new(),
        };
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
        let mut dataplane = Dataplane::start_with_handoffs(
            &cfg.dataplane,
            xsk_map.as_mut().map(|m| m as &mut dyn SocketMap),
            handoffs,
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
        if let Some(layer) = stream_layer.as_mut() {
            udp_from_the_sip_port(layer, &mut dataplane, cfg.dataplane.mode);
        }
        let mut book = TargetBook::new(health);
        follow_table(&mut book, routes.table(), cfg.fleet.is_some());
        let stream = stream_layer
            .map(|l| l.spawn(STREAM_WAIT))
            .transpose()
            .map_err(StartError::Stream)?;
        let announcement = match cfg.fleet.as_ref().and_then(|f| f.announce.clone()) {
            None => None,
            Some(a) => {
                let xdp = match &filter {
                    Some(f) => Some((
                        cfg.dataplane.interface.as_str(),
                        f.program_id().ok_or_else(|| {
                            StartError::Filter(FilterError::Load(
                                "the loaded XDP program has no id".into(),
                            ))
                        })?,
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
            stream,
            last_stream: None,
            refusals_logged: 0,
            routes,
            prober,
            book,
            started: Instant::now(),
            changes: Vec::new(),
            transitions: Vec::new(),
            causes: HashMap::new(),
            reloads_accepted: 0,
            reloads_refused: 0,
            last_reload_error: None,
            filter_reloads: stats::ReloadCounts::default(),
            imports: crate::feeds::ImportTally::default(),
            last_workers: Vec::new(),
            answered_at: vec![None; workers],
            events,
            worker_bans: HashMap::new(),
            ban_watch: BanWatch::default(),
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

    /// Records where this appliance's control socket is in the XDP
    /// filter's pinned `info` map, so that `dce-edge ban --iface X` (another
    /// process) talks to this appliance, proxy workers included, rather
    /// than to the filter's maps alone.
    pub fn record_control_socket(&mut self, path: &std::path::Path) {
        let Some(f) = &mut self.filter else {
            return;
        };
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        if let Err(e) = f.record_control_socket(&path) {
            eprintln!("dce-edge: cannot record the control socket in the filter's pins: {e}");
        }
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
        // What the maps hold is what a filter reload compares against.
        if let Some(fc) = &mut self.cfg.filter {
            fc.emergency_numbers = numbers.clone();
            fc.emergency_urns = table.emergency_urns();
        }
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

    /// Reads the `[stream]` table's certificate, key and client CA files
    /// again and hands the new TLS configuration to the stream thread: new
    /// connections get it, open ones keep theirs. A file that does not read
    /// or a key that does not match keeps the running certificate.
    pub fn reload_tls(&mut self) -> Result<String, String> {
        let Some(thread) = &mut self.stream else {
            return Err("no [stream] table: no certificate to reload".into());
        };
        let fresh = crate::stream::from_source(&self.cfg.source)
            .map_err(|e| format!("refused, the running certificate stays: {e}"))?;
        let Some((_, server)) = fresh.and_then(|c| c.tls) else {
            return Err("no tls in the [stream] table: no certificate to reload".into());
        };
        if !thread.set_tls(server) {
            return Err("the stream thread's control ring is full: try again".into());
        }
        Ok(
            "accepted: new TLS connections get the certificate read now, open ones keep theirs"
                .into(),
        )
    }

    /// Where the stream thread listens for SIP over TCP and TLS (the real
    /// ports), when `[stream]` is configured.
    pub fn stream_addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        self.stream
            .as_ref()
            .map_or((None, None), |s| (s.local_tcp(), s.local_tls()))
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
        let mut activity: Vec<(SocketAddr, InviteActivity)> = Vec::new();
        let mut on_event = |ev| match ev {
            ProxyEvent::InviteActivity {
                target,
                activity: a,
            } => activity.push((target, a)),
            ProxyEvent::Abuse { source, reason } => out.push(ControlEvent::Abuse {
                source,
                reason: reason.as_str(),
            }),
            ProxyEvent::Verified { source, .. } => proofs.push(source),
            ProxyEvent::EmergencyCall { source, target } => {
                out.push(ControlEvent::EmergencyCall { source, target })
            }
        };
        self.dataplane.poll_events(|_worker, ev| on_event(ev));
        if let Some(s) = &mut self.stream {
            s.poll_events(&mut on_event);
        }
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
        self.transitions.clear();
        let now = Instant::now();
        if let Err(e) = self.prober.poll(now, &mut self.changes) {
            eprintln!("dce-edge: health prober: {e}");
        }
        for c in &self.changes {
            self.transitions
                .extend(self.book.probe(c.addr, c.up, c.after));
        }
        for (target, a) in activity {
            self.transitions.extend(self.book.activity(target, a, now));
        }
        let probes = self.prober.probes();
        self.book.poll(
            now,
            |a| probes.target_probes(a).map(|p| p.answered),
            &mut self.transitions,
        );
        for c in &self.transitions {
            self.routes.set_health(c.addr, c.up);
            self.causes.insert(c.addr, c.cause.to_string());
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
                cause: c.cause.to_string(),
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
                        self.ban_watch.claim(&network.to_string(), ttl.as_secs());
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
        let upstream_reachable =
            upstreams.is_empty() || upstreams.iter().any(|t| self.book.is_up(*t));
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
    /// table between batches, on failure the running table stays. Without
    /// `force`, a table without prefixes or one that drops more than
    /// `[routes] reload_max_drop` of the running prefixes is refused.
    pub fn reload_routes(&mut self, force: bool) -> Result<u64, String> {
        match self
            .routes
            .reload_guarded(&self.cfg.routes, &self.cfg.source, force)
        {
            Ok(r) => {
                self.reloads_accepted += 1;
                self.routes_digest = routes_digest(&self.cfg);
                self.prober.follow_table(self.routes.table());
                follow_table(
                    &mut self.book,
                    self.routes.table(),
                    self.cfg.fleet.is_some(),
                );
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
                    kept_version: self.routes.version(),
                });
                Err(reason)
            }
        }
    }

    /// Reads the configuration file's `[filter]` table again and applies
    /// it to the running XDP program without detaching it (the same
    /// program, its counters, bans and verified sources kept), and the
    /// allowlist to every worker's proxy. A table that is refused (with
    /// file and line), that changes what needs a restart (`attach`, the
    /// profile, `emergency_keep_bans`) or whose lists do not fit in the
    /// maps keeps the running rules. Returns what changed, for a person.
    pub fn reload_filter(&mut self) -> Result<String, String> {
        let file = self.cfg.source.path().display().to_string();
        match self.try_reload_filter() {
            Ok(ev) => {
                self.filter_reloads.accepted += 1;
                let message = match &ev {
                    ControlEvent::FilterReloadAccepted {
                        changed,
                        lists,
                        program_id,
                        ..
                    } => describe_reload(&file, changed, lists, *program_id),
                    _ => String::new(),
                };
                self.events.push(ev);
                Ok(message)
            }
            Err(reason) => {
                self.filter_reloads.refused += 1;
                self.filter_reloads.last_error = Some(reason.clone());
                self.events.push(ControlEvent::FilterReloadRefused {
                    file,
                    reason: reason.clone(),
                });
                Err(reason)
            }
        }
    }

    fn try_reload_filter(&mut self) -> Result<ControlEvent, String> {
        let plan = self.cfg.reread_filter().map_err(|e| e.to_string())?;
        let file = self.cfg.source.path().display().to_string();
        let table = self.routes.table();
        let (changed, lists, program_id) = match (&mut self.filter, &self.cfg.filter, plan.filter) {
            (Some(f), Some(running), Some(mut new)) => {
                if new.attach != running.attach {
                    return Err(format!(
                        "{file}: attach changed ({:?} -> {:?}): attaching anew needs a restart; \
                         the running rules stay",
                        running.attach, new.attach
                    ));
                }
                // The route table names the emergency numbers, as at start.
                new.emergency_numbers = table
                    .emergency_numbers()
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .collect();
                new.emergency_urns = table.emergency_urns();
                let keep: Vec<Cidr> = self
                    .upstreams_allowed
                    .iter()
                    .map(|ip| Cidr::host(*ip))
                    .collect();
                let lists = f
                    .reconfigure(running, &new, &keep)
                    .map_err(|e| format!("{file}: {e}; the running rules stay"))?;
                let changed = running.changes(&new);
                let id = f.program_id();
                self.cfg.filter = Some(new);
                (changed, lists, id)
            }
            (None, None, None) => {
                // No XDP filter: the allowlist is the proxy's alone.
                let old = &self.cfg.proxy.allowlist;
                let lists = ListChanges {
                    allow_added: plan
                        .allowlist
                        .iter()
                        .filter(|c| !old.contains(c))
                        .copied()
                        .collect(),
                    allow_removed: old
                        .iter()
                        .filter(|c| !plan.allowlist.contains(c))
                        .copied()
                        .collect(),
                    ..ListChanges::default()
                };
                let changed = if lists == ListChanges::default() {
                    vec![]
                } else {
                    vec!["allowlist"]
                };
                (changed, lists, None)
            }
            _ => {
                return Err(format!(
                    "{file}: the [filter] table or [edge] interface changed whether an XDP \
                     filter runs: that needs a restart; the running rules stay"
                ))
            }
        };
        for network in &lists.allow_added {
            self.broadcast_or_say(ProxyControl::Allow { network: *network })?;
            self.events.push(ControlEvent::AllowAdded {
                network: *network,
                by: "config",
            });
        }
        for network in &lists.allow_removed {
            self.broadcast_or_say(ProxyControl::Disallow { network: *network })?;
            self.events.push(ControlEvent::AllowRemoved {
                network: *network,
                by: "config",
            });
        }
        self.cfg.proxy.allowlist = plan.allowlist;
        for w in plan.warnings {
            eprintln!("dce-edge: warning: {w}");
        }
        Ok(ControlEvent::FilterReloadAccepted {
            file,
            changed,
            lists,
            program_id,
        })
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
        let answered = Instant::now();
        for w in &snaps {
            if let Some(at) = self.answered_at.get_mut(w.worker) {
                *at = Some(answered);
            }
        }
        if snaps.len() == self.dataplane.workers() {
            self.last_workers = snaps;
        }
        if let Some(s) = self
            .stream
            .as_mut()
            .and_then(|t| t.snapshot(Duration::from_secs(2)))
        {
            self.last_stream = Some(stream_report(&s.counters, s.open_connections));
            // One event per window of refusals the stream thread closed
            // (its summary stays until the next one: logged once).
            if let Some(r) = s.refusals.filter(|r| r.seq > self.refusals_logged) {
                self.refusals_logged = r.seq;
                self.events.push(ControlEvent::ConnectionsRefused(r));
            }
        }
        let mut s = self.assemble();
        // The program bans scanners by itself, `dce-edge ban` may run on the
        // pins from another process, bans lapse: the maps are where the
        // control thread learns of those.
        let from = self.events.len();
        self.ban_watch.update(&s.bans, &mut self.events);
        // The program's own ban of a verified scanner is this edge's ban
        // under its rules: shared with the fleet.
        if let Some(share) = &mut self.share {
            for ev in &self.events[from..] {
                if let ControlEvent::Banned {
                    source,
                    reason,
                    seconds,
                } = ev
                {
                    if let (true, Ok(network)) = (reason == "scanner", source.parse::<Cidr>()) {
                        let now_ms = unix_ms();
                        share.ban_made(network, "scanner", now_ms + seconds * 1000, now_ms);
                    }
                }
            }
        }
        s.fleet = self.fleet_report();
        s
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
        let full = self.broadcast(ProxyControl::Verify {
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
            events.push(ControlEvent::ProxyBan {
                source,
                reason,
                seconds: ban_for.as_secs(),
            });
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
                    // The ProxyBan event is this ban's event.
                    let network = xdp::maps::source_network(&xdp::maps::source_key(source));
                    self.ban_watch
                        .claim(&network.to_string(), ban_for.as_secs());
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
                    self.ban_watch.claim(&source.to_string(), ban_for.as_secs());
                    let until = dataplane::now().plus(ban_for);
                    self.broadcast(ProxyControl::Ban {
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
                self.ban_watch
                    .claim(&network.to_string(), ttl.map_or(u64::MAX, |t| t.as_secs()));
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

    /// Many operator bans at once (a blocklist feed): in the XDP filter,
    /// skipping networks inside or covering its allowlist (which holds the
    /// route table's upstreams) and listing what does not fit. Refused
    /// without an XDP filter.
    pub fn operator_ban_many(
        &mut self,
        networks: &[String],
        ttl: Option<Duration>,
        reason: BanReason,
        note: &str,
        part: Option<(u32, u32)>,
    ) -> Result<crate::feeds::ImportReport, String> {
        let (report, room) =
            match &mut self.filter {
                Some(f) => {
                    let mut allow = f.allowlist().map_err(|e| e.to_string())?;
                    // The upstreams are in the filter's allowlist already,
                    // unless it was full when they were added: trust them here
                    // all the same.
                    allow.extend(
                        self.routes
                            .table()
                            .forward_upstreams()
                            .iter()
                            .map(|a| Cidr::host(a.ip())),
                    );
                    let mut room = self
                        .imports
                        .room(note, part, f)
                        .map_err(|e| e.to_string())?;
                    let (report, made) =
                        crate::feeds::ban_all(f, networks, ttl, reason, note, &allow, &mut room)
                            .map_err(|e| e.to_string())?;
                    for c in &made {
                        self.ban_watch
                            .claim(&c.to_string(), ttl.map_or(u64::MAX, |t| t.as_secs()));
                    }
                    (report, room)
                }
                // The workers keep 1,024 network bans each, scanned for every
                // packet: no place for a feed.
                None => return Err(
                    "blocklist feeds need the XDP filter (io = \"af_xdp\", or `dce-edge filter` \
                     in front of a socket-mode edge): the socket-mode workers keep only a few \
                     network bans"
                        .into(),
                ),
            };
        let done = self.imports.add(
            note,
            reason.name(),
            ttl.map(|t| t.as_secs()),
            part,
            report.clone(),
            room,
        );
        self.events.extend(done);
        Ok(report)
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
        self.ban_watch.forget(&network.to_string());
        if network.prefix == if network.addr.is_ipv4() { 32 } else { 128 } {
            self.ban_watch.forget(&network.addr.to_string());
            self.ban_watch.forget(
                &xdp::maps::source_network(&xdp::maps::source_key(network.addr)).to_string(),
            );
        }
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
        // As wide as an operator may allow here, wherever the action came
        // from (another edge of the fleet included).
        xdp::config::check_allow_breadth(&network)?;
        if let Some(f) = &mut self.filter {
            f.allow(network).map_err(|e| e.to_string())?;
        }
        self.broadcast_or_say(ProxyControl::Allow { network })?;
        if origin.is_none() {
            self.events.push(ControlEvent::AllowAdded {
                network,
                by: "operator",
            });
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
            self.events.push(ControlEvent::AllowRemoved {
                network,
                by: "operator",
            });
        }
        Ok(format!("removed {network} from the allowlist"))
    }

    /// Sends `msg` to every proxy: the workers' and the stream thread's
    /// (numbered after the workers). Returns those whose ring was full.
    fn broadcast(&mut self, msg: ProxyControl) -> Vec<usize> {
        let mut full = self.dataplane.broadcast(msg);
        if let Some(s) = &mut self.stream {
            if s.send(msg).is_err() {
                full.push(self.dataplane.workers());
            }
        }
        full
    }

    fn broadcast_or_say(&mut self, msg: ProxyControl) -> Result<(), String> {
        let full = self.broadcast(msg);
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
            &self.causes,
            self.started,
            self.reload_counts(),
            &self.last_workers,
        );
        add_bans(&mut s, self.filter.as_ref(), &self.worker_bans);
        add_worker_ages(
            &mut s,
            &self.cfg.dataplane,
            &self.answered_at,
            self.started,
            Instant::now(),
        );
        s.stream = self.last_stream.clone();
        s.filter_reloads = self.filter_reloads.clone();
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
        let stream = self
            .stream
            .take()
            .and_then(|t| t.stop())
            .map(|l| stream_report(l.counters(), l.open_connections()));
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
            &self.causes,
            self.started,
            reloads,
            &finals,
        );
        add_bans(&mut s, self.filter.as_ref(), &self.worker_bans);
        s.stream = stream;
        s.filter_reloads = self.filter_reloads.clone();
        s.fleet = fleet;
        Ok(s)
    }
}

/// The stream thread's counters as the snapshot carries them.
fn stream_report(c: &dataplane::stream::StreamCounters, open: usize) -> stats::StreamReport {
    stats::StreamReport {
        open_connections: open as u64,
        counters: c.named().iter().map(|&(n, v)| (n.to_string(), v)).collect(),
        transports: [("tcp", &c.tcp), ("tls", &c.tls)]
            .into_iter()
            .map(|(name, t)| {
                let report = stats::TransportReport {
                    open_connections: t.open,
                    counters: t.named().iter().map(|&(n, v)| (n.to_string(), v)).collect(),
                };
                (name.to_string(), report)
            })
            .collect(),
    }
}

/// Makes `book` follow the targets and thresholds of `table`: at start and
/// after every accepted reload. An edge of a fleet (`in_fleet`) keeps no
/// passive health: the edges share the service address that their Vias
/// name, so the answers to this edge's INVITEs may come back through
/// another edge, and their absence here says nothing of the target (the
/// probes, which leave from this edge's own address, still decide).
fn follow_table(book: &mut TargetBook, table: &route::RouteTable, in_fleet: bool) {
    let mut settings = table.health_settings();
    if in_fleet {
        settings.invite_failures = 0;
    }
    book.set_settings(settings);
    book.set_targets(&table.forward_upstreams(), &table.probed_upstreams());
}

fn assemble(
    cfg: &ApplianceConfig,
    routes: &RouteControl,
    prober: &Prober,
    causes: &HashMap<SocketAddr, String>,
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
                    up: routes.is_up(t.addr),
                    cause: causes.get(&t.addr).cloned(),
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
        // Frames the kernel could not hand to the worker are drops like
        // any other: under a reason of their own, where every drop is
        // listed (`rx_dropped` includes those it found no fill-ring frame
        // for, which `rings` counts apart).
        for (name, n) in [
            ("rx_ring_full", x.rx_ring_full),
            ("rx_kernel_dropped", x.rx_dropped),
        ] {
            if n > 0 {
                *out.dropped.entry(name.into()).or_default() += n;
            }
        }
    }
    if let Some(s) = &w.sched {
        out.cpu_us = s.run.as_micros() as u64;
        out.cpu_wait_us = s.wait.as_micros() as u64;
    }
    out.realtime = w.realtime;
    out.rings.insert("tx_kick_errors".into(), c.tx_kick_errors);
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

/// Sets each worker's [`stats::WorkerReport::snapshot_age_ms`]: the time
/// from its last answer to a snapshot request (or, if it never answered,
/// from the start) to `now`. A worker the snapshot has no report for (one
/// that has not answered yet while the others have) is listed with its
/// placement and no counters, so its age is seen too.
fn add_worker_ages(
    s: &mut Snapshot,
    dataplane: &dataplane::DataplaneConfig,
    answered_at: &[Option<Instant>],
    started: Instant,
    now: Instant,
) {
    for (id, answered) in answered_at.iter().enumerate() {
        let age = now.saturating_duration_since(answered.unwrap_or(started));
        let age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        match s.workers.iter_mut().find(|w| w.id == id) {
            Some(w) => w.snapshot_age_ms = age_ms,
            None => {
                let placement = dataplane.workers.get(id);
                s.workers.push(stats::WorkerReport {
                    id,
                    core: placement.and_then(|p| p.core),
                    queue: placement
                        .filter(|_| dataplane.mode == IoMode::AfXdp)
                        .map(|p| p.queue),
                    snapshot_age_ms: age_ms,
                    ..Default::default()
                });
            }
        }
    }
    s.workers.sort_by_key(|w| w.id);
}

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
pub(crate) fn add_filter(s: &mut Snapshot, f: &Filter) {
    s.modes.program_id = f.program_id();
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
            // TCP to the SIP TCP ports goes to the kernel's TCP stack too.
            passed: st.passed + st.passed_other + st.passed_stream,
            redirected: st.redirected,
        });
    }
    // Every source the map holds: the networks are folded from all of them,
    // the snapshot lists the top 20 one by one.
    if let Ok(top) = f.top_sources(usize::MAX) {
        s.top_networks = Some(top_networks(&top));
        s.top_sources = top
            .into_iter()
            .take(20)
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
        s.ban_maps = ban_map_fill(&bans);
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

/// The top sources folded into networks (IPv4 /24 and /16, IPv6 /64 and
/// /48) by reason.
pub fn top_networks(top: &[xdp::TopSourceEntry]) -> stats::networks::NetworkTally {
    let sources: Vec<stats::networks::SourceDrops> = top
        .iter()
        .map(|t| stats::networks::SourceDrops {
            addr: t.source.addr,
            drops: t.drops,
            reason: t.last_reason.to_string(),
        })
        .collect();
    stats::networks::aggregate(
        &sources,
        xdp::abi::TOP_SOURCE_ENTRIES as u64,
        stats::networks::TOP_PER_LEVEL,
    )
}

/// How full the three ban maps are (operators' `bans_v4` and `bans_v6`,
/// automatic `auto_bans`), from every entry they hold (lapsed ones
/// included: they keep their slot until the sweep).
fn ban_map_fill(bans: &[xdp::maps::BanEntry]) -> Vec<stats::BanMapFill> {
    use xdp::maps::BanOrigin;
    let count = |origin: BanOrigin, v4: Option<bool>| {
        bans.iter()
            .filter(|b| b.origin == origin && v4.is_none_or(|v4| b.network.addr.is_ipv4() == v4))
            .count() as u64
    };
    let lpm = xdp::abi::LPM_ENTRIES as u64;
    [
        ("bans_v4", count(BanOrigin::Operator, Some(true)), lpm),
        ("bans_v6", count(BanOrigin::Operator, Some(false)), lpm),
        (
            "auto_bans",
            count(BanOrigin::Automatic, None),
            xdp::abi::AUTO_BAN_ENTRIES as u64,
        ),
    ]
    .into_iter()
    .map(|(map, entries, capacity)| stats::BanMapFill {
        map: map.into(),
        entries,
        capacity,
    })
    .collect()
}

/// Gives the stream thread the SIP port to send its UDP from, so a UDP
/// peer (a caller behind a NAT that admits only the address it sent to, an
/// upstream's firewall) sees one edge address. Socket mode: the workers'
/// own socket for the listener's address family, send-only (the workers
/// read what comes back and hand a TCP or TLS peer's share over). AF_XDP
/// mode: a kernel socket bound to the SIP address, which the stream thread
/// reads (the XDP filter redirects the SIP port to the workers, so little
/// reaches it). Without one, the thread keeps its own port, and says so.
fn udp_from_the_sip_port(
    layer: &mut StreamLayer<EdgeProxy>,
    dataplane: &mut Dataplane<EdgeProxy>,
    mode: IoMode,
) {
    let want_v4 = layer.local_udp().is_ipv4();
    let sip = dataplane
        .local_addrs()
        .iter()
        .position(|a| a.is_ipv4() == want_v4);
    let Some(i) = sip else {
        return;
    };
    let addr = dataplane.local_addrs()[i];
    let socket = match mode {
        IoMode::Socket => dataplane
            .take_udp_egress()
            .into_iter()
            .nth(i)
            .map(|s| (s, false))
            .ok_or_else(|| std::io::Error::other("no worker socket to share")),
        IoMode::AfXdp => sys::bind_udp(
            addr,
            sys::UdpOptions {
                buffer_bytes: 0,
                force_buffers: false,
                reuse_port: false,
                ipv6_only: true,
            },
        )
        .map(|s| (s, true)),
    };
    let set = socket.and_then(|(s, receive)| layer.set_udp_socket(s, receive));
    if let Err(e) = set {
        eprintln!(
            "dce-edge: the stream thread sends UDP from {} instead of the SIP port {addr}: {e}",
            layer.local_udp()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xdp::maps::{BanEntry, BanOrigin};

    fn ban(network: &str, origin: BanOrigin, expired: bool) -> BanEntry {
        BanEntry {
            network: network.parse().unwrap(),
            origin,
            reason: BanReason::Scanner,
            note: String::new(),
            left: None,
            age: Duration::ZERO,
            expired,
        }
    }

    /// An AF_XDP dataplane with one worker per `(queue, core)`.
    fn afxdp_plan(workers: &[(u32, Option<usize>)]) -> dataplane::DataplaneConfig {
        let queues: Vec<u32> = workers.iter().map(|(q, _)| *q).collect();
        let mut plan = dataplane::DataplaneConfig::new(
            IoMode::AfXdp,
            "eth0",
            vec!["198.18.0.1:5060".parse().unwrap()],
            &queues,
        );
        for (w, (_, core)) in plan.workers.iter_mut().zip(workers) {
            w.core = *core;
        }
        plan
    }

    #[test]
    fn ban_map_fill_counts_each_map_lapsed_entries_included() {
        let fill = ban_map_fill(&[
            ban("198.18.0.9/32", BanOrigin::Operator, false),
            ban("198.18.0.10/32", BanOrigin::Operator, true),
            ban("2001:db8::/64", BanOrigin::Operator, false),
            ban("198.18.0.11/32", BanOrigin::Automatic, false),
            ban("2001:db8:1::/64", BanOrigin::Automatic, true),
        ]);
        let by_family: Vec<(&str, u64, u64)> = fill
            .iter()
            .map(|f| (f.map.as_str(), f.entries, f.capacity))
            .collect();
        assert_eq!(
            by_family,
            [
                ("bans_v4", 2, 65536),
                ("bans_v6", 1, 65536),
                ("auto_bans", 2, 65536)
            ]
        );
    }

    #[test]
    fn a_worker_that_stops_answering_ages_while_the_others_do_not() {
        let started = Instant::now();
        let now = started + Duration::from_secs(60);
        let plan = afxdp_plan(&[(0, Some(1)), (1, Some(2))]);
        let mut s = Snapshot {
            workers: vec![
                stats::WorkerReport {
                    id: 0,
                    received: 5,
                    ..Default::default()
                },
                stats::WorkerReport {
                    id: 1,
                    received: 7,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let answered = [
            Some(now - Duration::from_millis(300)),
            Some(started + Duration::from_secs(15)),
        ];
        add_worker_ages(&mut s, &plan, &answered, started, now);
        assert_eq!(s.workers[0].snapshot_age_ms, 300);
        assert_eq!(s.workers[1].snapshot_age_ms, 45_000);
        assert_eq!(s.workers[1].received, 7, "its last answered counters stay");
    }

    #[test]
    fn a_worker_that_never_answered_is_listed_with_its_age_since_start() {
        let started = Instant::now();
        let now = started + Duration::from_secs(12);
        let plan = afxdp_plan(&[(0, None), (3, Some(4))]);
        // Nobody answered in full yet: no reports at all.
        let mut s = Snapshot::default();
        add_worker_ages(&mut s, &plan, &[Some(now), None], started, now);
        let listed: Vec<(usize, u64, Option<u32>, Option<usize>)> = s
            .workers
            .iter()
            .map(|w| (w.id, w.snapshot_age_ms, w.queue, w.core))
            .collect();
        assert_eq!(
            listed,
            [(0, 0, Some(0), None), (1, 12_000, Some(3), Some(4))]
        );
    }
}
