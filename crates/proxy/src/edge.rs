//! The stateless edge proxy of one worker: RFC 3261 section 16 without
//! transaction state, plus the edge's own duties (answer OPTIONS pings,
//! refuse to reflect, report abusers).
//!
//! Everything a later message needs is derived rather than remembered: the
//! Via branch from the incoming transaction (section 16.11), the loop key
//! from the request's fixed fields (section 16.3 item 4), the local answer's
//! To tag from the dialog, and the dialog cookie from the source address.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hdrhistogram::Histogram;

use super::abuse::{AbuseReason, AbuseTracker};
use super::answers::{AnswerVerdict, Answers};
use super::batch::PreparedRoutes;
use super::config::ProxyConfig;
use super::cookie::{self, branch_loop_key, is_our_branch, BRANCH_LEN, COOKIE_LEN};
use super::source_table::{SourceKey, SourceTable};
use crate::handler::{Datagram, DropReason, Outbox, PacketHandler, SendError, Timestamp};
use route::reload::Decision;
use route::{RouteTable, WorkerRoutes};
use sip::write::{ForwardRequest, ResponseBuilder, SentBy};
use sip::{self, reason_phrase, DialedNumber, ErrorKind, Host, Message, Method, Uri};

/// Why a message was neither forwarded nor answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyDrop {
    /// Not a SIP message (counted by kind as well).
    Malformed,
    /// A response whose top Via is not this edge's.
    NotOurVia,
    /// A response with no Via left after this edge's.
    NoNextVia,
    /// A message whose next hop is a host name (no DNS on the hot path).
    Unresolvable,
    /// A local answer refused by the source's own answer budget.
    AnswerLimitedSource,
    /// A local answer refused by the budget shared by unverified sources.
    AnswerLimitedUnverified,
    /// An in-dialog request to a foreign destination from a source that is
    /// neither trusted nor holding a dialog cookie: the edge is no open relay.
    RelayDenied,
    /// An ACK for an answer this edge generated; it ends there.
    AckAbsorbed,
    /// An ACK that routes nowhere (ACKs are never answered).
    AckNoRoute,
    /// A request that is not for this edge and has no address to go to.
    NoDestination,
    /// The forwarded message would not fit the transmit buffer.
    TooLarge,
    /// The source is banned (socket mode, where no XDP filter bans it).
    Banned,
    /// A new call from an unverified source over the budget for such calls.
    UnverifiedCall,
    /// A response to an unverified destination while the shields are up
    /// (it would answer a spoofed flood's INVITE admitted before they rose).
    ShieldedResponse,
}

impl ProxyDrop {
    const ALL: [ProxyDrop; 14] = [
        ProxyDrop::Malformed,
        ProxyDrop::NotOurVia,
        ProxyDrop::NoNextVia,
        ProxyDrop::Unresolvable,
        ProxyDrop::AnswerLimitedSource,
        ProxyDrop::AnswerLimitedUnverified,
        ProxyDrop::RelayDenied,
        ProxyDrop::AckAbsorbed,
        ProxyDrop::AckNoRoute,
        ProxyDrop::NoDestination,
        ProxyDrop::TooLarge,
        ProxyDrop::Banned,
        ProxyDrop::UnverifiedCall,
        ProxyDrop::ShieldedResponse,
    ];

    /// Every reason, in counter order.
    pub fn all() -> &'static [ProxyDrop] {
        &Self::ALL
    }
}

impl DropReason for ProxyDrop {
    const NAMES: &'static [&'static str] = &[
        "malformed",
        "not_our_via",
        "no_next_via",
        "unresolvable",
        "answer_limited_source",
        "answer_limited_unverified",
        "relay_denied",
        "ack_absorbed",
        "ack_no_route",
        "no_destination",
        "too_large",
        "banned",
        "unverified_call",
        "shielded_response",
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// What the proxy tells the control thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyEvent {
    /// Ban this source: it crossed an abuse limit.
    Abuse {
        /// The source.
        source: IpAddr,
        /// Which limit.
        reason: AbuseReason,
    },
    /// This source proved its address is real (echoed a dialog cookie);
    /// the XDP filter may trust it.
    Verified {
        /// The source.
        source: IpAddr,
    },
}

/// Messages from the control thread to a worker's proxy.
#[derive(Debug, Clone, Copy)]
pub enum ProxyControl {
    /// Drop everything from `source` until `until` (monotonic ns, the
    /// dataplane's clock). Used where no XDP filter does it.
    Ban {
        /// The source.
        source: IpAddr,
        /// When the ban lapses.
        until: Timestamp,
    },
    /// Lift a ban.
    Unban {
        /// The source.
        source: IpAddr,
    },
}

/// Sources a worker bans itself (socket mode), at most.
const WORKER_BANS: usize = 8192;

/// Events a worker queues between batches before counting them lost.
const EVENT_QUEUE: usize = 1024;

/// Slots of the table that times call setup (a power of two).
const SETUP_SLOTS: usize = 1 << 14;

/// How long a setup slot stays valid: older entries are stale calls.
const SETUP_STALE_NS: u64 = 64_000_000_000;

/// One worker's counters, as the control thread reads them.
#[derive(Debug, Clone)]
pub struct ProxyStats {
    /// Messages handed to the proxy.
    pub received: u64,
    /// Parse failures by kind.
    pub parse_errors: BTreeMap<&'static str, u64>,
    /// Requests forwarded.
    pub forwarded_requests: u64,
    /// Responses forwarded.
    pub forwarded_responses: u64,
    /// Local answers sent, by status code.
    pub answered: BTreeMap<u16, u64>,
    /// Messages dropped, by reason.
    pub dropped: BTreeMap<&'static str, u64>,
    /// Route lookups.
    pub lookups: u64,
    /// Lookups with no match.
    pub misses: u64,
    /// Lookups answered from the receive batch's side-by-side lookups
    /// (the rest were looked up one at a time).
    pub batched_lookups: u64,
    /// Matches by group name.
    pub hits: BTreeMap<String, u64>,
    /// 503s over a group's CPS cap, by group name.
    pub cap_rejections: BTreeMap<String, u64>,
    /// The route table version the worker runs.
    pub table_version: u64,
    /// Initial INVITEs forwarded (new calls, retransmissions excluded when
    /// recognised).
    pub invites_forwarded: u64,
    /// 2xx answers to INVITE relayed, each call once: a retransmitted final
    /// answer is not counted again when this worker forwarded the INVITE
    /// (always with one worker; with several, an answer arriving on another
    /// worker's queue is counted on every arrival).
    pub calls_answered: u64,
    /// Final failures to INVITE relayed or generated (counted like
    /// `calls_answered`).
    pub calls_failed: u64,
    /// Call setup times through this edge (INVITE forwarded to final
    /// answer relayed), in microseconds.
    pub setup_us: Histogram<u64>,
    /// Events that found the queue full.
    pub events_lost: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct SetupSlot {
    key: u64,
    started: u64,
    /// A final answer was relayed: retransmissions of it, and of the
    /// INVITE, are not counted again.
    answered: bool,
}

/// Per-group counters of the current table, folded into totals by name when
/// the table changes.
#[derive(Debug, Default, Clone)]
struct GroupCounters {
    hits: Vec<u64>,
    caps: Vec<u64>,
}

/// The proxy of one worker. Owns everything it touches.
pub struct EdgeProxy {
    cfg: ProxyConfig,
    routes: WorkerRoutes,
    answers: Answers,
    abuse: AbuseTracker,
    events: VecDeque<ProxyEvent>,
    bans: SourceTable<u64>,
    setup: Box<[SetupSlot]>,
    upstream_ips: Vec<IpAddr>,
    record_route_prefix: Vec<u8>,
    group_counters: GroupCounters,
    totals_hits: BTreeMap<String, u64>,
    totals_caps: BTreeMap<String, u64>,
    answered: Box<[u64; 700]>,
    parse_errors: [u64; 64],
    dropped: [u64; ProxyDrop::ALL.len()],
    received: u64,
    forwarded_requests: u64,
    forwarded_responses: u64,
    lookups: u64,
    misses: u64,
    batched_lookups: u64,
    prepared: PreparedRoutes,
    invites_forwarded: u64,
    calls_answered: u64,
    calls_failed: u64,
    events_lost: u64,
    setup_us: Histogram<u64>,
}

/// A routing decision with nothing borrowed from the table, so the proxy
/// can count and answer while holding it. It lives on the stack for one
/// request; the redirect variant's size costs nothing.
#[allow(clippy::large_enum_variant)]
enum Routed {
    Forward {
        dest: SocketAddr,
        group: u32,
    },
    NoRoute,
    Reject {
        group: u32,
        code: u16,
    },
    Redirect {
        group: u32,
        targets: [SocketAddr; 8],
        count: usize,
    },
    OverCap {
        group: u32,
        retry_after: Duration,
    },
    NoTargetUp {
        group: u32,
    },
}

impl From<Decision<'_>> for Routed {
    fn from(d: Decision<'_>) -> Routed {
        match d {
            Decision::Forward { route, target } => Routed::Forward {
                dest: target.addr,
                group: route.group.0,
            },
            Decision::NoRoute => Routed::NoRoute,
            Decision::Reject { route, code } => Routed::Reject {
                group: route.group.0,
                code,
            },
            Decision::Redirect { route, targets } => {
                let mut addrs = [SocketAddr::from(([0, 0, 0, 0], 0)); 8];
                let count = targets.len().min(8);
                for (a, t) in addrs.iter_mut().zip(targets) {
                    *a = t.addr;
                }
                Routed::Redirect {
                    group: route.group.0,
                    targets: addrs,
                    count,
                }
            }
            Decision::OverCap { route, retry_after } => Routed::OverCap {
                group: route.group.0,
                retry_after,
            },
            Decision::NoTargetUp { route } => Routed::NoTargetUp {
                group: route.group.0,
            },
        }
    }
}

/// What to answer locally.
struct Answer<'x> {
    code: u16,
    reason: &'static str,
    retry_after: Option<u32>,
    contacts: &'x [&'x [u8]],
}

impl<'x> Answer<'x> {
    fn new(code: u16) -> Self {
        Answer {
            code,
            reason: reason_phrase(code),
            retry_after: None,
            contacts: &[],
        }
    }
}

impl EdgeProxy {
    /// A worker's proxy over its own routes.
    pub fn new(cfg: ProxyConfig, routes: WorkerRoutes) -> EdgeProxy {
        let record_route_prefix = format!("<sip:{};lr;dce=", cfg.advertise).into_bytes();
        let mut proxy = EdgeProxy {
            answers: Answers::new(&cfg.answers),
            abuse: AbuseTracker::new(cfg.abuse),
            events: VecDeque::with_capacity(EVENT_QUEUE),
            bans: SourceTable::with_capacity(WORKER_BANS),
            setup: vec![SetupSlot::default(); SETUP_SLOTS].into_boxed_slice(),
            upstream_ips: Vec::new(),
            record_route_prefix,
            group_counters: GroupCounters::default(),
            totals_hits: BTreeMap::new(),
            totals_caps: BTreeMap::new(),
            answered: Box::new([0; 700]),
            parse_errors: [0; 64],
            dropped: [0; ProxyDrop::ALL.len()],
            received: 0,
            forwarded_requests: 0,
            forwarded_responses: 0,
            lookups: 0,
            misses: 0,
            batched_lookups: 0,
            prepared: PreparedRoutes::new(),
            invites_forwarded: 0,
            calls_answered: 0,
            calls_failed: 0,
            events_lost: 0,
            setup_us: Histogram::new_with_bounds(1, 120_000_000, 2)
                .expect("valid histogram bounds"),
            cfg,
            routes,
        };
        proxy.table_changed();
        proxy
    }

    /// The routes this proxy runs with.
    pub fn routes(&self) -> &WorkerRoutes {
        &self.routes
    }

    /// Takes what the control thread sent through the route ring; call
    /// between batches. Returns true when a new table was swapped in.
    pub fn poll_routes(&mut self) -> bool {
        let polled = self.routes.poll();
        if polled.swapped_to.is_some() {
            // Routes prepared on the old table are not this table's.
            self.prepared.clear();
            self.table_changed();
            return true;
        }
        false
    }

    /// Recomputes what depends on the table (off the hot path: reloads are
    /// rare and happen between batches).
    fn table_changed(&mut self) {
        self.fold_group_counters();
        let table: &RouteTable = self.routes.table();
        let mut ips: Vec<IpAddr> = table.upstreams().iter().map(|a| a.ip()).collect();
        ips.sort();
        ips.dedup();
        self.upstream_ips = ips;
        let groups = table.groups().len();
        self.group_counters = GroupCounters {
            hits: vec![0; groups],
            caps: vec![0; groups],
        };
    }

    fn fold_group_counters(&mut self) {
        let table = self.routes.table();
        for (i, g) in table.groups().iter().enumerate() {
            if let Some(&h) = self.group_counters.hits.get(i) {
                *self.totals_hits.entry(g.name.clone()).or_default() += h;
            }
            if let Some(&c) = self.group_counters.caps.get(i) {
                *self.totals_caps.entry(g.name.clone()).or_default() += c;
            }
        }
        self.group_counters.hits.iter_mut().for_each(|c| *c = 0);
        self.group_counters.caps.iter_mut().for_each(|c| *c = 0);
    }

    /// A snapshot of the counters (allocates; for the control thread).
    pub fn snapshot(&self) -> ProxyStats {
        let table = self.routes.table();
        let mut hits = self.totals_hits.clone();
        let mut caps = self.totals_caps.clone();
        for (i, g) in table.groups().iter().enumerate() {
            *hits.entry(g.name.clone()).or_default() +=
                self.group_counters.hits.get(i).copied().unwrap_or(0);
            *caps.entry(g.name.clone()).or_default() +=
                self.group_counters.caps.get(i).copied().unwrap_or(0);
        }
        ProxyStats {
            received: self.received,
            parse_errors: ErrorKind::ALL
                .iter()
                .filter_map(|&k| {
                    let n = self.parse_errors[k as usize];
                    (n > 0).then(|| (k.name(), n))
                })
                .collect(),
            forwarded_requests: self.forwarded_requests,
            forwarded_responses: self.forwarded_responses,
            answered: (100..700u16)
                .filter(|&c| self.answered[c as usize] > 0)
                .map(|c| (c, self.answered[c as usize]))
                .collect(),
            dropped: ProxyDrop::ALL
                .iter()
                .map(|&d| (ProxyDrop::NAMES[d as usize], self.dropped[d as usize]))
                .filter(|&(_, n)| n > 0)
                .collect(),
            lookups: self.lookups,
            misses: self.misses,
            batched_lookups: self.batched_lookups,
            hits,
            cap_rejections: caps,
            table_version: self.routes.version(),
            invites_forwarded: self.invites_forwarded,
            calls_answered: self.calls_answered,
            calls_failed: self.calls_failed,
            setup_us: self.setup_us.clone(),
            events_lost: self.events_lost,
        }
    }

    /// The next event for the control thread.
    pub fn next_event(&mut self) -> Option<ProxyEvent> {
        self.events.pop_front()
    }

    fn emit(&mut self, event: ProxyEvent) {
        if self.events.len() < EVENT_QUEUE {
            self.events.push_back(event);
        } else {
            self.events_lost += 1;
        }
    }

    /// Counts a message that is not valid SIP under its parse error kind.
    fn malformed(&mut self, kind: ErrorKind) -> Result<(), ProxyDrop> {
        if let Some(c) = self.parse_errors.get_mut(kind as usize) {
            *c += 1;
        }
        self.drop(ProxyDrop::Malformed)
    }

    fn drop(&mut self, reason: ProxyDrop) -> Result<(), ProxyDrop> {
        self.dropped[reason as usize] += 1;
        Err(reason)
    }

    /// True for allowlisted sources and the route table's upstreams.
    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.upstream_ips.binary_search(&ip).is_ok()
            || self.cfg.allowlist.iter().any(|c| c.contains(ip))
    }

    fn host_is_ours(&self, host: Host<'_>, port: Option<u16>) -> bool {
        let port_ok = port.unwrap_or(5060) == self.cfg.advertise.port();
        match host {
            Host::Ipv4(a) => port_ok && IpAddr::V4(a) == self.cfg.advertise.ip(),
            Host::Ipv6(a) => port_ok && IpAddr::V6(a) == self.cfg.advertise.ip(),
            Host::Name(n) => {
                port_ok
                    && self
                        .cfg
                        .aliases
                        .iter()
                        .any(|a| a.as_bytes().eq_ignore_ascii_case(n))
            }
        }
    }

    fn uri_is_ours(&self, uri: &Uri<'_>) -> bool {
        uri.host().is_some_and(|h| self.host_is_ours(h, uri.port()))
    }

    /// Handles one datagram; see [`PacketHandler::handle`].
    pub fn handle_datagram(
        &mut self,
        now: Timestamp,
        pkt: &Datagram<'_>,
        out: &mut Outbox<'_>,
    ) -> Result<(), ProxyDrop> {
        self.received += 1;
        self.prepared.advance();
        if self
            .bans
            .get(SourceKey::new(pkt.src.ip()))
            .is_some_and(|&until| until > now.as_nanos())
        {
            return self.drop(ProxyDrop::Banned);
        }
        // Built in this frame's slot: the message is never moved.
        let mut slot = None;
        let msg = match sip::parse_in(&mut slot, pkt.payload) {
            Ok(m) => m,
            Err(e) => return self.malformed(e.kind),
        };
        if msg.is_request() {
            self.request(now.as_nanos(), pkt.src, msg, out)
        } else {
            self.response(now.as_nanos(), msg, out)
        }
    }

    fn request(
        &mut self,
        now: u64,
        src: SocketAddr,
        msg: &Message<'_>,
        out: &mut Outbox<'_>,
    ) -> Result<(), ProxyDrop> {
        let method = msg.method().expect("a request has a method");
        // The parser checks values lazily: a bad Request-URI or Route shows
        // here, and is as malformed as a bad start line.
        let uri = match msg.uri() {
            Some(Ok(u)) => u,
            Some(Err(e)) => return self.malformed(e.kind),
            None => return self.malformed(ErrorKind::BadRequestUri),
        };
        let trusted = self.is_trusted(src.ip());

        // Loose routing (RFC 3261 section 16.4): a first Route naming this
        // edge is ours to remove; its dialog cookie proves the source real.
        let mut routes = msg.routes();
        let first_route = match routes.next().transpose() {
            Ok(r) => r,
            Err(e) => return self.malformed(e.kind),
        };
        let route_is_ours = first_route
            .as_ref()
            .is_some_and(|r| self.uri_is_ours(r.uri()));
        let mut cookie_ok = false;
        if route_is_ours {
            if let Some(Some(c)) = first_route
                .as_ref()
                .and_then(|r| r.uri().params().get(b"dce"))
            {
                cookie_ok = self.cfg.secret.verify_dialog_cookie(
                    src.ip(),
                    c,
                    now,
                    self.cfg.cookie_period_ns,
                );
            }
            if cookie_ok && !trusted && !self.answers.is_verified(src.ip(), now) {
                self.answers.verify(src.ip(), now);
                self.emit(ProxyEvent::Verified { source: src.ip() });
            }
        }
        let next_route = if route_is_ours {
            match routes.next().transpose() {
                Ok(r) => r,
                Err(e) => return self.malformed(e.kind),
            }
        } else {
            first_route
        };

        // Answers to a source we would never answer are cheap to refuse early
        // only after the checks below decide an answer is due.
        let uri_ours = self.uri_is_ours(&uri);
        let max_forwards = msg.max_forwards();

        // OPTIONS addressed to the edge itself: answer 200 (carriers ping
        // constantly). Max-Forwards 0 on an OPTIONS also asks the proxy itself
        // (section 16.3 item 2).
        if method == Method::Options && uri_ours && uri.user().is_none() && next_route.is_none() {
            return self.answer(now, src, msg, trusted, Answer::new(200), out);
        }
        if max_forwards == Some(0) {
            if method == Method::Options {
                return self.answer(now, src, msg, trusted, Answer::new(200), out);
            }
            if method == Method::Ack {
                return self.drop(ProxyDrop::AckNoRoute);
            }
            return self.answer(now, src, msg, trusted, Answer::new(483), out);
        }

        // Loop detection (section 16.3 item 4).
        let loop_key = self.loop_key(msg);
        for via in msg.vias().flatten() {
            if self.host_is_ours(via.host(), via.port())
                && via
                    .branch()
                    .and_then(branch_loop_key)
                    .is_some_and(|k| k == loop_key)
            {
                if method == Method::Ack {
                    return self.drop(ProxyDrop::AckNoRoute);
                }
                return self.answer(now, src, msg, trusted, Answer::new(482), out);
            }
        }

        // An ACK for an answer this edge made ends here (its To tag is ours).
        if method == Method::Ack && msg.to_tag().is_some_and(|t| t == self.local_tag(msg)) {
            return self.drop(ProxyDrop::AckAbsorbed);
        }

        // Requests that are not for this edge go where their next Route or
        // Request-URI says, but only for dialogs this edge is part of.
        if next_route.is_some() || !uri_ours {
            if !(trusted || cookie_ok) {
                return self.drop(ProxyDrop::RelayDenied);
            }
            let dest_uri = next_route.as_ref().map_or(uri, |r| *r.uri());
            let Some(ip) = dest_uri.host().and_then(|h| h.ip()) else {
                return self.drop(ProxyDrop::Unresolvable);
            };
            let dest = SocketAddr::new(ip, dest_uri.port().unwrap_or(5060));
            return self.forward_request(now, src, msg, dest, route_is_ours, false, out);
        }

        // For this edge: route by the dialed number. REGISTER names its user
        // in To, not in the Request-URI.
        let mut number = DialedNumber::new();
        let have_number = match method {
            Method::Register => msg
                .to()
                .is_ok_and(|to| to.uri().dialed_number(&mut number).is_ok()),
            _ => msg.dialed_number(&mut number).is_ok(),
        };
        let initial_invite = method == Method::Invite && msg.to_tag().is_none();
        if !trusted && !self.answers.is_verified(src.ip(), now) {
            self.answers.note_unverified(now);
        }
        // New calls from sources that have not shown they are real stay
        // within their budget, unanswered beyond it (see `answers`).
        if initial_invite && !self.answers.admit_call(src.ip(), trusted, now) {
            return self.drop(ProxyDrop::UnverifiedCall);
        }
        self.lookups += 1;
        let decision = {
            let found = if !have_number {
                None
            } else if let Some(found) = self.prepared.route_for(&number) {
                self.batched_lookups += 1;
                found
            } else {
                self.routes.lookup(number.as_bytes())
            };
            let d = if !have_number {
                Decision::NoRoute
            } else if initial_invite {
                self.routes
                    .route_call_found(found, msg.call_id(), Duration::from_nanos(now))
            } else {
                self.routes.route_in_dialog_found(found, msg.call_id())
            };
            Routed::from(d)
        };
        let (dest, group) = match decision {
            Routed::Forward { dest, group } => (dest, group),
            Routed::NoRoute => {
                self.misses += 1;
                if method == Method::Ack {
                    return self.drop(ProxyDrop::AckNoRoute);
                }
                if !trusted && !self.answers.is_verified(src.ip(), now) {
                    if let Some(reason) = self.abuse.not_found(src.ip(), number.as_bytes(), now) {
                        self.emit(ProxyEvent::Abuse {
                            source: src.ip(),
                            reason,
                        });
                    }
                }
                return self.answer(
                    now,
                    src,
                    msg,
                    trusted,
                    Answer::new(self.cfg.no_route_code),
                    out,
                );
            }
            Routed::Reject { group, code } => {
                self.count_hit(group);
                if method == Method::Ack {
                    return self.drop(ProxyDrop::AckNoRoute);
                }
                return self.answer(now, src, msg, trusted, Answer::new(code), out);
            }
            Routed::Redirect {
                group,
                targets,
                count,
            } => {
                self.count_hit(group);
                if method == Method::Ack {
                    return self.drop(ProxyDrop::AckNoRoute);
                }
                // Contacts: sip:NUMBER@target for each target, priority order.
                let mut text = [[0u8; 80]; 8];
                let mut lens = [0usize; 8];
                let n = count;
                for (i, t) in targets.iter().take(n).enumerate() {
                    lens[i] = write_contact(&mut text[i], number.as_bytes(), *t);
                }
                let mut contacts: [&[u8]; 8] = [&[]; 8];
                for i in 0..n {
                    contacts[i] = &text[i][..lens[i]];
                }
                let mut a = Answer::new(302);
                a.contacts = &contacts[..n];
                return self.answer(now, src, msg, trusted, a, out);
            }
            Routed::OverCap { group, retry_after } => {
                self.count_hit(group);
                if let Some(c) = self.group_counters.caps.get_mut(group as usize) {
                    *c += 1;
                }
                let mut a = Answer::new(503);
                a.retry_after = Some(retry_after.as_secs().max(1) as u32);
                return self.answer(now, src, msg, trusted, a, out);
            }
            Routed::NoTargetUp { group } => {
                self.count_hit(group);
                if method == Method::Ack {
                    return self.drop(ProxyDrop::AckNoRoute);
                }
                let mut a = Answer::new(503);
                a.retry_after = Some(5);
                return self.answer(now, src, msg, trusted, a, out);
            }
        };
        self.count_hit(group);
        self.forward_request(now, src, msg, dest, route_is_ours, initial_invite, out)
    }

    fn count_hit(&mut self, group: u32) {
        if let Some(h) = self.group_counters.hits.get_mut(group as usize) {
            *h += 1;
        }
    }

    /// The loop key of a request: Request-URI, From tag, Call-ID and CSeq
    /// number do not change as it travels.
    fn loop_key(&self, msg: &Message<'_>) -> [u8; cookie::LOOP_KEY_LEN] {
        let cseq = msg.cseq().number.to_le_bytes();
        let uri = msg.request_uri().unwrap_or(b"");
        self.cfg
            .secret
            .loop_key([uri, msg.from_tag().unwrap_or(b""), msg.call_id(), &cseq[..]])
    }

    /// The branch for forwarding `msg` (section 16.11): from the incoming
    /// branch when it is an RFC 3261 one, else from the fields that identify
    /// an RFC 2543 transaction. The method is left out so that a CANCEL and
    /// a non-2xx ACK get their INVITE's branch.
    fn branch(&self, msg: &Message<'_>) -> [u8; BRANCH_LEN] {
        let top = msg.top_via();
        let cseq = msg.cseq().number.to_le_bytes();
        let uri = msg.request_uri().unwrap_or(b"");
        let loop_parts = [uri, msg.from_tag().unwrap_or(b""), msg.call_id(), &cseq[..]];
        match top.branch() {
            Some(b) if top.has_rfc3261_branch() => {
                self.cfg.secret.branch([b, top.as_bytes()], loop_parts)
            }
            _ => self.cfg.secret.branch(
                [
                    msg.to_tag().unwrap_or(b""),
                    msg.from_tag().unwrap_or(b""),
                    msg.call_id(),
                    uri,
                    top.as_bytes(),
                    &cseq[..],
                ],
                loop_parts,
            ),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn forward_request(
        &mut self,
        now: u64,
        src: SocketAddr,
        msg: &Message<'_>,
        dest: SocketAddr,
        remove_first_route: bool,
        initial_invite: bool,
        out: &mut Outbox<'_>,
    ) -> Result<(), ProxyDrop> {
        let branch = self.branch(msg);
        let mut rr = [0u8; 128];
        let record_route = if initial_invite && self.cfg.record_route {
            let c = self
                .cfg
                .secret
                .dialog_cookie(src.ip(), now, self.cfg.cookie_period_ns);
            let p = &self.record_route_prefix;
            let len = p.len() + COOKIE_LEN + 1;
            rr[..p.len()].copy_from_slice(p);
            rr[p.len()..p.len() + COOKIE_LEN].copy_from_slice(&c);
            rr[len - 1] = b'>';
            Some(&rr[..len])
        } else {
            None
        };
        let fwd = ForwardRequest {
            sent_by: SentBy::Addr(self.cfg.advertise),
            branch: &branch,
            request_uri: None,
            record_route,
            remove_first_route,
            source: Some(src),
        };
        match out.send(dest, |buf| sip::write::forward_request(msg, &fwd, buf).ok()) {
            Ok(()) => {}
            Err(SendError::PayloadRejected { .. }) => return self.drop(ProxyDrop::TooLarge),
            // The dataplane counted it (no neighbour, ring full...).
            Err(_) => return Ok(()),
        }
        self.forwarded_requests += 1;
        if initial_invite {
            let key = setup_key(&branch);
            let slot = &mut self.setup[(key as usize) & (SETUP_SLOTS - 1)];
            // A retransmission keeps the first send time.
            if slot.key != key || now.saturating_sub(slot.started) > SETUP_STALE_NS {
                *slot = SetupSlot {
                    key,
                    started: now,
                    answered: false,
                };
                self.invites_forwarded += 1;
            }
        }
        Ok(())
    }

    fn response(
        &mut self,
        now: u64,
        msg: &Message<'_>,
        out: &mut Outbox<'_>,
    ) -> Result<(), ProxyDrop> {
        let top = msg.top_via();
        let ours =
            self.host_is_ours(top.host(), top.port()) && top.branch().is_some_and(is_our_branch);
        if !ours {
            return self.drop(ProxyDrop::NotOurVia);
        }
        let next = match msg.second_via() {
            Ok(v) => v,
            Err(e) => return self.malformed(e.kind),
        };
        let Some(next) = next else {
            return self.drop(ProxyDrop::NoNextVia);
        };
        let Some(dest) = next.response_target() else {
            return self.drop(ProxyDrop::Unresolvable);
        };
        let status = msg.status().expect("a response has a status");
        let cseq = msg.cseq();
        let to_untrusted = !self.is_trusted(dest.ip()) && !self.answers.is_verified(dest.ip(), now);
        if to_untrusted && self.answers.shields_up(now) {
            return self.drop(ProxyDrop::ShieldedResponse);
        }
        if to_untrusted {
            let reason = match status {
                401 | 403 | 407 => self.abuse.auth_failure(dest.ip(), now),
                404 | 484 => {
                    let mut number = DialedNumber::new();
                    if let Ok(to) = msg.to() {
                        let _ = to.uri().dialed_number(&mut number);
                    }
                    self.abuse.not_found(dest.ip(), number.as_bytes(), now)
                }
                _ => None,
            };
            if let Some(reason) = reason {
                self.emit(ProxyEvent::Abuse {
                    source: dest.ip(),
                    reason,
                });
            }
        }
        match out.send(dest, |buf| sip::write::forward_response(msg, buf).ok()) {
            Ok(()) => {}
            Err(SendError::PayloadRejected { .. }) => return self.drop(ProxyDrop::TooLarge),
            Err(_) => return Ok(()),
        }
        self.forwarded_responses += 1;
        if cseq.method == Method::Invite && status >= 200 {
            // The setup time is known when this worker forwarded the INVITE
            // too (always with one worker; a sample of calls with several,
            // since the answer may arrive on another worker's queue). The
            // slot also tells a retransmitted final answer from the first.
            let key = setup_key(top.branch().unwrap_or(b""));
            let slot = &mut self.setup[(key as usize) & (SETUP_SLOTS - 1)];
            let first = if slot.key == key && slot.started != 0 {
                let first = !slot.answered;
                if first {
                    let us = now.saturating_sub(slot.started) / 1000;
                    let _ = self.setup_us.record(us.clamp(1, 120_000_000));
                    slot.answered = true;
                }
                first
            } else {
                true
            };
            if first {
                if status < 300 {
                    self.calls_answered += 1;
                } else {
                    self.calls_failed += 1;
                }
            }
        }
        Ok(())
    }

    /// The To tag of this edge's answers in the dialog of `msg`: derived,
    /// so retransmissions and the ACK carry the same one.
    fn local_tag(&self, msg: &Message<'_>) -> [u8; 19] {
        let b = self.cfg.secret.branch(
            [msg.call_id(), msg.from_tag().unwrap_or(b"")],
            [&b"tag"[..]],
        );
        let mut tag = [0u8; 19];
        tag[..3].copy_from_slice(b"dce");
        tag[3..].copy_from_slice(&b[10..26]);
        tag
    }

    fn answer(
        &mut self,
        now: u64,
        src: SocketAddr,
        msg: &Message<'_>,
        trusted: bool,
        a: Answer<'_>,
        out: &mut Outbox<'_>,
    ) -> Result<(), ProxyDrop> {
        match self.answers.admit(src.ip(), trusted, now) {
            AnswerVerdict::Send => {}
            AnswerVerdict::SourceLimited => return self.drop(ProxyDrop::AnswerLimitedSource),
            AnswerVerdict::UnverifiedLimited => {
                return self.drop(ProxyDrop::AnswerLimitedUnverified)
            }
        }
        let tag = self.local_tag(msg);
        let mut b = ResponseBuilder::new(a.code, a.reason)
            .server(self.cfg.server.as_bytes())
            .contacts(a.contacts);
        if a.code > 100 {
            b = b.to_tag(&tag);
        }
        if let Some(s) = a.retry_after {
            b = b.retry_after(s);
        }
        match out.send(src, |buf| b.write(msg, buf).ok()) {
            Ok(()) => {}
            Err(SendError::PayloadRejected { .. }) => return self.drop(ProxyDrop::TooLarge),
            Err(_) => return Ok(()),
        }
        self.answered[a.code as usize] += 1;
        if msg.method() == Some(Method::Invite) && a.code >= 300 {
            self.calls_failed += 1;
        }
        Ok(())
    }
}

fn setup_key(branch: &[u8]) -> u64 {
    // The hex digits of our branch are a keyed hash already; fold them.
    branch.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    }) | 1
}

fn write_contact(buf: &mut [u8; 80], number: &[u8], addr: SocketAddr) -> usize {
    use std::io::Write;
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cur, "sip:{}@{}", String::from_utf8_lossy(number), addr);
    cur.position() as usize
}

impl PacketHandler for EdgeProxy {
    type Control = ProxyControl;
    type Stats = ProxyStats;
    type Drop = ProxyDrop;
    type Event = ProxyEvent;

    fn handle(
        &mut self,
        now: Timestamp,
        pkt: &Datagram<'_>,
        out: &mut Outbox<'_>,
    ) -> Result<(), ProxyDrop> {
        self.handle_datagram(now, pkt, out)
    }

    fn prepare(&mut self, _now: Timestamp, payloads: &mut dyn Iterator<Item = &[u8]>) {
        self.prepared.prepare(&self.routes, payloads);
    }

    fn on_control(&mut self, now: Timestamp, msg: ProxyControl) {
        match msg {
            ProxyControl::Ban { source, until } => {
                *self.bans.entry(SourceKey::new(source), now.as_nanos()) = until.as_nanos();
            }
            ProxyControl::Unban { source } => {
                if self.bans.get(SourceKey::new(source)).is_some() {
                    *self.bans.entry(SourceKey::new(source), now.as_nanos()) = 0;
                }
            }
        }
    }

    fn between_batches(&mut self, _now: Timestamp) {
        self.poll_routes();
    }

    fn stats(&self) -> ProxyStats {
        self.snapshot()
    }

    fn poll_event(&mut self) -> Option<ProxyEvent> {
        self.next_event()
    }
}
