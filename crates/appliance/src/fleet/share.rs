//! What this edge shares with its fleet and takes from it, between the
//! control thread and the [`Bus`]: its own bans, verified sources and
//! operator actions go out (paced, so no honest edge exceeds what the
//! others accept from it, and republished after every outage); other edges'
//! messages come in, are judged by [`SharedState`] and handed to the
//! control thread to apply a few hundred per tick (the workers' control
//! rings hold only so many).
//!
//! When the bus is down the edge runs on its local state alone, and says
//! so (an event, and `dce_edge_fleet_bus_connected 0`); when it returns the
//! edge reads the whole shared state again and publishes its own anew.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ::fleet::message::{Body, Heartbeat, MacKey, OperatorAction};
use ::fleet::shared::{host_of, Apply, Limits, Refusal, SharedState, Standing};
use ::fleet::BusConfig;
use proxy::rate::{RateLimit, RateState};
use telemetry::stats::{BusReport, PeerReport, SharedBan};
use wire::Cidr;

use super::bus::{Bus, BusEvent, Entry};
use super::nats::{NatsClient, NatsOptions};

/// Messages taken from the bus per tick at most.
pub const APPLY_PER_TICK: usize = 200;

/// Messages waiting to be applied at most; more (a flood) are dropped and
/// counted.
const INCOMING_MAX: usize = 200_000;

/// Messages waiting to go out at most.
const OUTGOING_MAX: usize = 200_000;

/// How often this edge says it is alive.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// An edge unheard for this long is shown as lost.
pub const LOST_AFTER_MS: u64 = 5_000;

/// Wall-clock Unix milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What the control thread must know of the bus.
#[derive(Debug, Clone, PartialEq)]
pub enum ShareEvent {
    /// The bus is lost: local state only.
    Down {
        /// How it was noticed.
        reason: String,
    },
    /// The bus is back and the shared state was read again.
    Up {
        /// The server.
        server: String,
        /// Entries read.
        entries: usize,
        /// How long the outage lasted (`None` for the first connection).
        down_for: Option<Duration>,
    },
    /// Something an operator should know.
    Warning(String),
}

/// A message that passed the rules and waits to be applied.
pub type Incoming = Apply;

/// This edge's share of the fleet's state.
pub struct Share {
    shared: SharedState,
    bus: Bus,
    /// Bans made here and shared: network to (reason, lapse Unix ms).
    own_bans: HashMap<Cidr, (String, u64)>,
    /// Verifications made here and shared: source to lapse (Unix ms).
    own_verified: HashMap<IpAddr, u64>,
    /// The same by host (an IPv6 source by its /64): what proved its
    /// address here, which no other edge's word bans here.
    own_hosts: HashMap<IpAddr, u64>,
    /// Operator actions made here while the bus was away.
    pending_ops: Vec<(OperatorAction, u64)>,
    /// Operator actions sealed but not sent when the bus went away.
    unsent_ops: Vec<(String, Vec<u8>)>,
    /// Messages to go out: key, payload, kind.
    outgoing: VecDeque<(String, Vec<u8>, &'static str)>,
    out_bans: (RateLimit, RateState),
    out_verified: (RateLimit, RateState),
    out_ops: (RateLimit, RateState),
    /// Messages read and not yet judged: entry and whether it came live.
    incoming: VecDeque<(Entry, bool)>,
    last_heartbeat: Option<Instant>,
    connected_since_ms: Option<u64>,
    down_since: Option<Instant>,
    last_down_reason: Option<String>,
    outages: u64,
    resyncs: u64,
    last_resync_entries: u64,
    last_resync_ms: f64,
    dropped_incoming: u64,
    dropped_outgoing: u64,
    verified_ttl_ms: u64,
}

impl Share {
    /// Connects (in the background) to the bus of `fleet` as `edge`, with
    /// messages signed with `mac`. `password`/`token` were read from their
    /// files; `state_max_age` is how long state entries outlive their
    /// last write; `verified_ttl_ms` how long a local proof lasts (a proof
    /// is published again when half of it is spent).
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        fleet: &str,
        edge: &str,
        cfg: &BusConfig,
        user: Option<(String, String)>,
        token: Option<String>,
        mac: MacKey,
        limits: Limits,
        state_max_age: Duration,
        verified_ttl_ms: u64,
    ) -> Share {
        let client = NatsClient::new(NatsOptions {
            servers: cfg.servers.clone(),
            name: format!("dce-edge {fleet}/{edge}"),
            user,
            token,
            ..NatsOptions::default()
        })
        // Each edge's replies under a prefix of its own, so the server can
        // let it read its own inbox only.
        .with_inbox_prefix(&format!("_INBOX.{edge}"));
        let rate = |(r, b): (u32, u32)| (RateLimit::per_second(r, b), RateState::default());
        Share {
            shared: SharedState::new(fleet, edge, mac, limits),
            bus: Bus::new(client, fleet, state_max_age),
            own_bans: HashMap::new(),
            own_verified: HashMap::new(),
            own_hosts: HashMap::new(),
            pending_ops: Vec::new(),
            unsent_ops: Vec::new(),
            outgoing: VecDeque::new(),
            out_bans: rate(limits.bans),
            out_verified: rate(limits.verified),
            out_ops: rate(limits.operator),
            incoming: VecDeque::new(),
            last_heartbeat: None,
            connected_since_ms: None,
            down_since: Some(Instant::now()),
            last_down_reason: None,
            outages: 0,
            resyncs: 0,
            last_resync_entries: 0,
            last_resync_ms: 0.0,
            dropped_incoming: 0,
            dropped_outgoing: 0,
            verified_ttl_ms,
        }
    }

    /// True when connected and in sync: what is published is stored.
    pub fn connected(&self) -> bool {
        self.bus.ready()
    }

    fn enqueue(&mut self, body: Body, now_ms: u64) {
        let kind = body.kind();
        if self.outgoing.len() >= OUTGOING_MAX {
            self.dropped_outgoing += 1;
            return;
        }
        if let Some((key, payload)) = self.shared.seal(body, now_ms) {
            self.outgoing.push_back((key, payload, kind));
        }
    }

    /// This edge banned `network` (a verified source, under its own rules)
    /// until `until_ms`: shared now, and again after every outage.
    pub fn ban_made(&mut self, network: Cidr, reason: &str, until_ms: u64, now_ms: u64) {
        if self.shared.is_remote_ban(&network, now_ms) {
            // Taken from another edge: never shared again (no echo).
            return;
        }
        self.own_bans
            .insert(network, (reason.to_string(), until_ms));
        if self.bus.ready() {
            self.enqueue(
                Body::Ban {
                    network: network.to_string(),
                    reason: reason.to_string(),
                    until_ms,
                },
                now_ms,
            );
        }
    }

    /// A source proved its address here, until `until_ms`. Shared when it
    /// is new to the fleet or half of what was shared is spent.
    pub fn verified(&mut self, source: IpAddr, until_ms: u64, now_ms: u64) {
        let fresh_enough = self
            .own_verified
            .get(&source)
            .is_some_and(|&u| u > now_ms + self.verified_ttl_ms / 2);
        if fresh_enough {
            return;
        }
        if self.own_verified.len() >= 4 * self.shared.limits().max_verified_per_edge {
            self.own_verified.retain(|_, u| *u > now_ms);
            self.own_hosts.retain(|_, u| *u > now_ms);
        }
        self.own_verified.insert(source, until_ms);
        let host = self.own_hosts.entry(host_of(source)).or_default();
        *host = (*host).max(until_ms);
        if self.bus.ready() {
            self.enqueue(Body::Verified { source, until_ms }, now_ms);
        }
    }

    /// An operator acted here: shared with every edge.
    pub fn operator_action(&mut self, action: OperatorAction, now_ms: u64) {
        self.shared.note_own_operator_action(&action, now_ms);
        if self.bus.ready() {
            self.enqueue(Body::Operator(action), now_ms);
        } else {
            self.pending_ops.push((action, now_ms));
        }
    }

    /// True when `network` is banned here because another edge banned it.
    pub fn is_remote_ban(&self, network: &Cidr, now_ms: u64) -> bool {
        self.shared.is_remote_ban(network, now_ms)
    }

    /// Verifications of other edges held here.
    pub fn remote_verified(&self, now_ms: u64) -> usize {
        self.shared.remote_verified(now_ms)
    }

    /// True when a heartbeat is due (once a second).
    pub fn heartbeat_due(&self, now: Instant) -> bool {
        self.bus.ready()
            && self
                .last_heartbeat
                .is_none_or(|t| now.duration_since(t) >= HEARTBEAT_EVERY)
    }

    /// Publishes this edge's heartbeat (not paced: one a second).
    pub fn heartbeat(&mut self, hb: Heartbeat, now: Instant, now_ms: u64) {
        self.last_heartbeat = Some(now);
        if let Some((key, payload)) = self.shared.seal(Body::Heartbeat(hb), now_ms) {
            self.bus.put(&key, &payload);
        }
    }

    /// Bans made here and still in force.
    pub fn own_bans(&self, now_ms: u64) -> usize {
        self.own_bans.values().filter(|(_, u)| *u > now_ms).count()
    }

    /// One tick: the connection, the sync, what goes out. Returns what the
    /// control thread must know; messages to apply are taken with
    /// [`Share::take`].
    pub fn poll(&mut self, now: Instant, now_ms: u64) -> Vec<ShareEvent> {
        let mut out = Vec::new();
        let mut events = Vec::new();
        self.bus.poll(now, &mut events);
        for ev in events {
            match ev {
                BusEvent::Connected { .. } => {}
                BusEvent::AttemptFailed { reason } => {
                    // Said once per different reason, not every attempt.
                    if self.last_down_reason.as_deref() != Some(reason.as_str()) {
                        out.push(ShareEvent::Warning(format!("cannot connect: {reason}")));
                        self.last_down_reason = Some(reason);
                    }
                }
                BusEvent::Down { reason } => {
                    if self.connected_since_ms.take().is_some() {
                        self.outages += 1;
                        self.down_since = Some(now);
                    }
                    self.last_down_reason = Some(reason.clone());
                    // What was not sent is republished from the tables
                    // when the bus returns; operator actions wait.
                    for (key, payload, kind) in std::mem::take(&mut self.outgoing) {
                        if kind == "operator" {
                            self.unsent_ops.push((key, payload));
                        }
                    }
                    out.push(ShareEvent::Down { reason });
                }
                BusEvent::Synced { entries, took } => {
                    self.resyncs += 1;
                    self.last_resync_entries = entries.len() as u64;
                    self.last_resync_ms = took.as_secs_f64() * 1e3;
                    // The first sync of a connection (a failed sync tried
                    // again on the same connection republishes nothing).
                    let first = self.connected_since_ms.is_none();
                    self.connected_since_ms.get_or_insert(now_ms);
                    let down_for = self.down_since.take().map(|t| now.duration_since(t));
                    // Proofs before bans: a ban is taken only for a source
                    // known verified.
                    let mut entries = entries;
                    entries.sort_by_key(|e| match e.key.split('.').next() {
                        Some("edge") => 0,
                        Some("verified") => 1,
                        Some("ban") => 2,
                        _ => 3,
                    });
                    let n = entries.len();
                    for e in entries {
                        self.push_incoming(e, false);
                    }
                    if first {
                        self.republish(now_ms);
                    }
                    out.push(ShareEvent::Up {
                        server: self.bus.server().unwrap_or("?").to_string(),
                        entries: n,
                        down_for: if self.outages == 0 { None } else { down_for },
                    });
                }
                BusEvent::Live(e) => self.push_incoming(e, true),
                BusEvent::Warning(w) => out.push(ShareEvent::Warning(w)),
            }
        }
        self.send(now_ms);
        out
    }

    fn push_incoming(&mut self, e: Entry, live: bool) {
        if self.incoming.len() >= INCOMING_MAX {
            self.dropped_incoming += 1;
            return;
        }
        self.incoming.push_back((e, live));
    }

    /// Everything this edge made and still holds, queued to go out again
    /// (after a connection: what the others missed, or never had).
    fn republish(&mut self, now_ms: u64) {
        self.own_bans.retain(|_, (_, u)| *u > now_ms);
        self.own_verified.retain(|_, u| *u > now_ms);
        self.own_hosts.retain(|_, u| *u > now_ms);
        // Proofs first: a ban is taken only for a source known verified.
        let verified: Vec<_> = self.own_verified.iter().map(|(s, u)| (*s, *u)).collect();
        for (source, until_ms) in verified {
            self.enqueue(Body::Verified { source, until_ms }, now_ms);
        }
        let bans: Vec<_> = self
            .own_bans
            .iter()
            .map(|(n, (r, u))| (*n, r.clone(), *u))
            .collect();
        for (network, reason, until_ms) in bans {
            self.enqueue(
                Body::Ban {
                    network: network.to_string(),
                    reason,
                    until_ms,
                },
                now_ms,
            );
        }
        for (key, payload) in std::mem::take(&mut self.unsent_ops) {
            self.outgoing.push_back((key, payload, "operator"));
        }
        for (action, at) in std::mem::take(&mut self.pending_ops) {
            self.enqueue(Body::Operator(action), at);
        }
    }

    /// Sends what the pacing allows.
    fn send(&mut self, now_ms: u64) {
        if !self.bus.ready() {
            return;
        }
        let now_ns = now_ms.saturating_mul(1_000_000);
        while let Some((_, _, kind)) = self.outgoing.front() {
            let admitted = match *kind {
                "ban" => self.out_bans.0.admit(&mut self.out_bans.1, now_ns),
                "verified" => self.out_verified.0.admit(&mut self.out_verified.1, now_ns),
                "operator" => self.out_ops.0.admit(&mut self.out_ops.1, now_ns),
                _ => true,
            };
            if !admitted {
                break;
            }
            let (key, payload, _) = self.outgoing.pop_front().expect("front exists");
            if !self.bus.put(&key, &payload) {
                // The connection's buffer is full or it just went: what
                // matters is republished from the tables.
                break;
            }
        }
    }

    /// Judges the next message read from the bus; `None` when none waits.
    /// The control thread applies each before judging the next (a ban
    /// may follow the proof it needs), at most [`APPLY_PER_TICK`] a tick.
    /// `standing` says what this edge knows of a network (verified here,
    /// trusted); whether the source proved its address here is added from
    /// the proofs this edge made.
    pub fn next_incoming(
        &mut self,
        now_ms: u64,
        now_ns: u64,
        standing: &dyn Fn(&Cidr) -> Standing,
    ) -> Option<Result<Incoming, (String, Refusal)>> {
        let (e, live) = self.incoming.pop_front()?;
        let own = &self.own_hosts;
        let standing = |n: &Cidr| {
            let s = standing(n);
            Standing {
                proved_here: s.proved_here
                    || own
                        .get(&host_of(n.addr))
                        .is_some_and(|&until| until > now_ms),
                ..s
            }
        };
        Some(
            self.shared
                .receive(&e.key, &e.payload, live, now_ms, now_ns, &standing)
                .map_err(|r| (e.key, r)),
        )
    }

    /// The bus for the snapshot.
    pub fn report(&self, now_ms: u64) -> BusReport {
        let (published, refused) = self.bus.publish_counts();
        let mut received = std::collections::BTreeMap::new();
        for ((kind, verdict), n) in self.shared.received() {
            received.insert(format!("{kind}:{verdict}"), *n);
        }
        BusReport {
            connected: self.bus.ready(),
            server: self.bus.server().map(String::from),
            connected_for_seconds: self
                .connected_since_ms
                .map(|t| now_ms.saturating_sub(t) as f64 / 1e3),
            last_down_reason: self.last_down_reason.clone(),
            outages: self.outages,
            resyncs: self.resyncs,
            last_resync_entries: self.last_resync_entries,
            last_resync_ms: self.last_resync_ms,
            published,
            publish_refused: refused,
            received,
            queued_out: self.outgoing.len() as u64,
            queued_in: self.incoming.len() as u64,
            dropped_in: self.dropped_incoming,
            dropped_out: self.dropped_outgoing,
            own_bans: self.own_bans(now_ms) as u64,
            remote_bans: self.shared.remote_bans(now_ms).count() as u64,
            remote_verified: self.shared.remote_verified(now_ms) as u64,
        }
    }

    /// The other edges, as heard.
    pub fn peers(&self, now_ms: u64) -> Vec<PeerReport> {
        self.shared
            .peers()
            .iter()
            .map(|(name, p)| {
                let hb = p.heartbeat.clone().unwrap_or_default();
                let ago = now_ms.saturating_sub(p.last_contact_ms);
                PeerReport {
                    edge: name.clone(),
                    address: hb.address,
                    announced: hb.announced,
                    reason: hb.reason,
                    routes_version: hb.routes_version,
                    routes_digest: hb.routes_digest,
                    bans_made: hb.bans_made,
                    verified: hb.verified,
                    last_contact_seconds: ago as f64 / 1e3,
                    lost: ago > LOST_AFTER_MS,
                    bans_held_here: p.bans_in_force(now_ms).count() as u64,
                }
            })
            .collect()
    }

    /// Bans shared in the fleet as held here: this edge's own and the
    /// others', newest lapse first, at most `limit`.
    pub fn shared_bans(&self, me: &str, now_ms: u64, limit: usize) -> Vec<SharedBan> {
        let mut out: Vec<SharedBan> = self
            .own_bans
            .iter()
            .filter(|(_, (_, u))| *u > now_ms)
            .map(|(n, (r, u))| SharedBan {
                network: n.to_string(),
                reason: r.clone(),
                origin: me.to_string(),
                seconds_left: (u - now_ms) / 1000,
            })
            .chain(self.shared.remote_bans(now_ms).map(|(o, n, u)| SharedBan {
                network: n.to_string(),
                reason: String::new(),
                origin: o.to_string(),
                seconds_left: (u - now_ms) / 1000,
            }))
            .collect();
        out.sort_by_key(|b| std::cmp::Reverse(b.seconds_left));
        out.truncate(limit);
        out
    }

    /// Closes the connection.
    pub fn close(&mut self) {
        self.bus.close();
    }
}
