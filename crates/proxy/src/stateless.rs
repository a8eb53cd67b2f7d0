//! The stateless edge proxy of one worker: RFC 3261 section 16 without
//! transaction state, plus the edge's own duties (answer OPTIONS pings,
//! refuse to reflect, report abusers).
//!
//! Everything a later message needs is derived rather than remembered: the
//! Via branch from the incoming transaction and the next hop (section 16.11),
//! the loop key from the request's fixed fields (section 16.3 item 4), the
//! local answer's To tag from the dialog and the address answered, and the
//! dialog cookie from the caller's address, the dialog and its target (see
//! [`crate::cookie`]).
//!
//! Each request is first decided (a [`Disposition`]: forward, answer, or a
//! counted drop), then acted on in one place ([`EdgeProxy::act`]), where
//! the budgets toward unverified addresses are paid and the counters move.
//!
//! What it never does, whatever arrives (the adversarial rules of
//! docs/threat-model.md):
//! - relay a response that does not come from the hop this edge sent the
//!   request to, for that request (the branch's MAC);
//! - forward a request from an untrusted source anywhere but a route
//!   target: in-dialog requests go to the target their dialog cookie names;
//! - forward, answer or relay toward an unverified address beyond the
//!   budgets of [`crate::answers`];
//! - count what an unverified source seems to do toward a ban.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hdrhistogram::Histogram;

use super::abuse::{AbuseReason, AbuseTracker};
use super::answers::{AnswerVerdict, Answers, Standing};
use super::batch::PreparedRoutes;
use super::config::{Cidr, ProxyConfig};
use super::cookie::{
    self, branch_is_emergency, branch_loop_key, decode_target, encode_target, is_our_branch,
    Dialog, Hop, Transaction, BRANCH_LEN, COOKIE_LEN, TARGET_MAX_LEN,
};
use super::emergency::{EmergencyCalls, EmergencyState};
use super::source_table::{SourceKey, SourceTable};
use super::verified::{Proof, VerifiedSources};
use crate::handler::{
    ConnId, Datagram, DropReason, Outbox, PacketHandler, Peer, SendError, Timestamp, Transport,
};
use route::health::ACTIVITY_REPORT;
use route::reload::Decision;
use route::{InviteActivity, RouteTable, WorkerRoutes};
use sip::write::{ForwardRequest, ResponseBuilder, SentBy};
use sip::{
    self, reason_phrase, DialedNumber, ErrorKind, Host, Message, Method, Scheme, StartLine, Uri,
};

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
    /// A request from a source that is neither trusted nor holding a valid
    /// dialog cookie, for an address that is not this edge: the edge is no
    /// open relay.
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
    /// A request from an unverified source over the budget for such
    /// requests (or any, while the shields are up).
    UnverifiedRequest,
    /// A response to an unverified destination while the shields are up
    /// (it would answer a spoofed flood's request admitted before they rose).
    ShieldedResponse,
    /// A response whose top Via looks like this edge's but that this edge
    /// did not send the request for, to the host it came from: a forged
    /// branch, or a response echoed by another host.
    UnexpectedResponse,
    /// A response toward an unverified destination over its budget.
    ResponseLimited,
    /// An emergency request from an unverified source over the emergency
    /// budget.
    EmergencyOverBudget,
}

impl ProxyDrop {
    const ALL: [ProxyDrop; 17] = [
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
        ProxyDrop::UnverifiedRequest,
        ProxyDrop::ShieldedResponse,
        ProxyDrop::UnexpectedResponse,
        ProxyDrop::ResponseLimited,
        ProxyDrop::EmergencyOverBudget,
    ];

    /// Every reason, in counter order.
    pub fn all() -> &'static [ProxyDrop] {
        &Self::ALL
    }

    /// The reason's name in counters, metrics and stats.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
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
        "unverified_request",
        "shielded_response",
        "unexpected_response",
        "response_limited",
        "emergency_over_budget",
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// What the proxy tells the control thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyEvent {
    /// Ban this source: it proved its address and then crossed an abuse
    /// limit. Never sent for a source that did not prove its address.
    Abuse {
        /// The source.
        source: IpAddr,
        /// Which limit.
        reason: AbuseReason,
    },
    /// A new emergency call from `source` was forwarded to `target`: every
    /// one is an event, and the XDP filter spares the source's packets the
    /// budgets and bans for a while, so the call's ACK and BYE get through.
    EmergencyCall {
        /// The caller.
        source: IpAddr,
        /// Where the call went.
        target: SocketAddr,
    },
    /// This source proved its address is real (echoed a dialog cookie, or
    /// this edge's To tag in an ACK) and is verified until `until`: every
    /// worker and the XDP filter should know.
    Verified {
        /// The source.
        source: IpAddr,
        /// When the verification lapses (the dataplane's clock).
        until: Timestamp,
    },
    /// What INVITEs toward a route target met on this worker since its
    /// last report (every [`route::health::ACTIVITY_REPORT`]): the
    /// control thread's passive health reads it.
    InviteActivity {
        /// The target.
        target: SocketAddr,
        /// What was seen.
        activity: InviteActivity,
    },
}

/// Messages from the control thread to a worker's proxy.
#[derive(Debug, Clone, Copy)]
pub enum ProxyControl {
    /// Drop everything from `network` until `until` (monotonic ns, the
    /// dataplane's clock). Used where no XDP filter does it.
    Ban {
        /// The banned source (a host) or network.
        network: Cidr,
        /// When the ban lapses.
        until: Timestamp,
    },
    /// Lift the ban of exactly `network`.
    Unban {
        /// The network, as banned.
        network: Cidr,
    },
    /// Another worker saw `source` prove its address.
    Verify {
        /// The source.
        source: IpAddr,
        /// When the verification lapses.
        until: Timestamp,
    },
    /// An operator trusts `network` from now on (`dce-edge allow`).
    Allow {
        /// The network.
        network: Cidr,
    },
    /// An operator no longer trusts `network`.
    Disallow {
        /// The network.
        network: Cidr,
    },
}

/// Sources a worker bans itself (socket mode), at most.
const WORKER_BANS: usize = 8192;

/// Networks wider than one source a worker bans itself (socket mode).
const NETWORK_BANS: usize = 1024;

/// Networks an operator may add to the allowlist at run time, per worker.
const RUNTIME_ALLOWS: usize = 1024;

/// Events a worker queues between batches before counting them lost.
const EVENT_QUEUE: usize = 1024;

/// Slots of the table that times call setup (a power of two).
const SETUP_SLOTS: usize = 1 << 14;

/// How long a setup slot stays valid: older entries are stale calls.
const SETUP_STALE_NS: u64 = 64_000_000_000;

/// Length of one of this edge's own Via parameters: `;dcc=` or `;dcw=` and
/// 16 hex digits.
const VIA_PARAM_LEN: usize = 21;

/// Seeds of the per-source tables (domains of the secret's table seed).
mod table {
    pub const ANSWERS: u8 = 1;
    pub const VERIFIED: u8 = 2;
    pub const ABUSE: u8 = 3;
    pub const BANS: u8 = 4;
}

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
    /// answer is not counted again, on the worker that forwarded the INVITE
    /// or on the one whose queue the answer came in on (retransmissions
    /// of an answer share its flow, so its queue).
    pub calls_answered: u64,
    /// Final failures to INVITE relayed or generated (counted like
    /// `calls_answered`).
    pub calls_failed: u64,
    /// Call setup times through this edge (INVITE forwarded to final
    /// answer relayed), in microseconds: of the calls whose answer came
    /// back to the worker that forwarded the INVITE (all of them with one
    /// worker).
    pub setup_us: Histogram<u64>,
    /// Events that found the queue full.
    pub events_lost: u64,
    /// Proofs of address refused because the source's IPv6 /48 had its
    /// share of verified /64s.
    pub proofs_refused: u64,
    /// Emergency calls.
    pub emergency: EmergencyCalls,
    /// Setup times of emergency calls, in microseconds.
    pub emergency_setup_us: Histogram<u64>,
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

/// The most contacts a redirect answer lists.
const MAX_CONTACTS: usize = 8;

/// The proxy of one worker. Owns everything it touches.
pub struct EdgeProxy {
    cfg: ProxyConfig,
    routes: WorkerRoutes,
    pub(crate) answers: Answers,
    pub(crate) verified: VerifiedSources,
    emergency: EmergencyState,
    abuse: AbuseTracker,
    events: VecDeque<ProxyEvent>,
    bans: SourceTable<u64>,
    /// Bans of networks wider than one source, with their expiry.
    network_bans: Vec<(Cidr, u64)>,
    setup: Box<[SetupSlot]>,
    /// Addresses of the current table's forward targets, sorted: trusted.
    upstream_ips: Vec<IpAddr>,
    /// What INVITEs toward each forward target met since the last report,
    /// sorted by address (sized when the table changes, never on the hot
    /// path).
    passive: Vec<(SocketAddr, InviteActivity)>,
    /// When the last [`ProxyEvent::InviteActivity`] reports went out (ns).
    passive_reported: u64,
    /// The target the next report starts at (where the last one stopped).
    passive_cursor: usize,
    /// Networks an operator allowed at run time.
    runtime_allows: Vec<Cidr>,
    /// The text of a redirect's contacts, written before the answer.
    contacts: [[u8; 80]; MAX_CONTACTS],
    contact_lens: [usize; MAX_CONTACTS],
    record_route_prefix: Vec<u8>,
    /// This edge's addresses: UDP, and TCP and TLS when it listens there.
    our_addrs: Vec<SocketAddr>,
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
        transport: Transport,
        group: u32,
    },
    NoRoute,
    Reject {
        group: u32,
        code: u16,
    },
    Redirect {
        group: u32,
        targets: [SocketAddr; MAX_CONTACTS],
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
                transport: target.transport,
                group: route.group.0,
            },
            Decision::NoRoute => Routed::NoRoute,
            Decision::Reject { route, code } => Routed::Reject {
                group: route.group.0,
                code,
            },
            Decision::Redirect { route, targets } => {
                let mut addrs = [SocketAddr::from(([0, 0, 0, 0], 0)); MAX_CONTACTS];
                let count = targets.len().min(MAX_CONTACTS);
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
#[derive(Debug, Clone, Copy)]
struct Answer {
    code: u16,
    retry_after: Option<u32>,
    /// Say in a Warning header that no upstream is available (a group whose
    /// targets are all down); no address is named.
    no_upstream: bool,
    /// How many of the proxy's contact buffers the answer lists.
    contacts: usize,
}

impl Answer {
    fn new(code: u16) -> Self {
        Answer {
            code,
            retry_after: None,
            no_upstream: false,
            contacts: 0,
        }
    }
}

/// Where a forwarded request goes and what it carries.
#[derive(Debug, Clone, Copy)]
struct Forward {
    /// Where to, over what.
    to: Peer,
    /// How many Routes at the top name this edge (removed).
    remove_routes: u8,
    /// An initial INVITE: Record-Route it and time its setup.
    initial_invite: bool,
    /// An emergency call's request: paid from the emergency budget, and
    /// its branch says so, so that its responses are too.
    emergency: bool,
    /// The caller proved its address (trusted or verified): what this
    /// INVITE meets may count against its target (passive health).
    proven_caller: bool,
}

/// What the proxy does with one request, decided before anything is sent.
#[derive(Debug, Clone, Copy)]
enum Disposition {
    Forward(Forward),
    Answer(Answer),
}

/// What the edge knows about one request's routing header fields.
struct RouteInfo<'m> {
    /// How many Routes at the top name this edge (at most
    /// [`MAX_OWN_ROUTES`]: one per transport of a call that changed them).
    own_routes: u8,
    /// The first Route after ours.
    next: Option<sip::NameAddr<'m>>,
    /// The dialog target (and its transport) the first Route's cookie
    /// vouches for.
    cookie_target: Option<(SocketAddr, Transport)>,
    /// The connection a flow token in one of our Routes names (valid MAC),
    /// and its transport: where an in-dialog request toward a caller on
    /// TCP or TLS goes.
    flow: Option<(ConnId, Transport)>,
}

/// Most Routes naming this edge that one request may carry on top: it
/// Record-Routes twice when a call changes transport.
const MAX_OWN_ROUTES: u8 = 2;

impl EdgeProxy {
    /// A worker's proxy over its own routes.
    pub fn new(cfg: ProxyConfig, routes: WorkerRoutes) -> EdgeProxy {
        let record_route_prefix = format!("<sip:{};lr;dce=", cfg.advertise).into_bytes();
        let mut our_addrs = vec![cfg.advertise];
        our_addrs.extend(cfg.advertise_tcp);
        our_addrs.extend(cfg.advertise_tls);
        our_addrs.sort();
        our_addrs.dedup();
        let seed = |t| cfg.secret.table_seed(t);
        let mut proxy = EdgeProxy {
            answers: Answers::new(&cfg.answers, seed(table::ANSWERS)),
            verified: VerifiedSources::new(
                cfg.answers.tracked_sources,
                cfg.answers.verified_seconds,
                cfg.answers.verified_per_48,
                seed(table::VERIFIED),
            ),
            emergency: EmergencyState::new(&cfg.emergency),
            abuse: AbuseTracker::new(cfg.abuse, seed(table::ABUSE)),
            events: VecDeque::with_capacity(EVENT_QUEUE),
            bans: SourceTable::with_capacity(WORKER_BANS, seed(table::BANS)),
            network_bans: Vec::with_capacity(NETWORK_BANS),
            setup: vec![SetupSlot::default(); SETUP_SLOTS].into_boxed_slice(),
            upstream_ips: Vec::new(),
            passive: Vec::new(),
            passive_reported: 0,
            passive_cursor: 0,
            runtime_allows: Vec::with_capacity(RUNTIME_ALLOWS),
            contacts: [[0; 80]; MAX_CONTACTS],
            contact_lens: [0; MAX_CONTACTS],
            record_route_prefix,
            our_addrs,
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
        // What was seen under the old table is reported before its targets go.
        self.report_activity();
        let table: &RouteTable = self.routes.table();
        let mut passive: Vec<(SocketAddr, InviteActivity)> = table
            .forward_upstreams()
            .into_iter()
            .map(|a| (a, InviteActivity::default()))
            .collect();
        passive.sort_by_key(|&(a, _)| a);
        self.passive = passive;
        self.passive_cursor = 0;
        // Only forward targets are trusted: a redirect group's targets are
        // addresses the edge tells callers about, not its upstreams.
        let mut ips: Vec<IpAddr> = table.forward_upstreams().iter().map(|a| a.ip()).collect();
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
                .map(|&d| (d.name(), self.dropped[d as usize]))
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
            proofs_refused: self.verified.refused(),
            emergency: EmergencyCalls {
                over_budget: self.dropped[ProxyDrop::EmergencyOverBudget as usize],
                ..self.emergency.calls()
            },
            emergency_setup_us: self.emergency.setup_us().clone(),
        }
    }

    /// Reports what INVITEs toward each target met since the last report,
    /// for the targets where anything happened. Reports fill at most half
    /// the event queue, so that abuse and proof events always find room
    /// (and the ring to the control thread, of the same size, is not
    /// flooded); targets left over keep counting and are reported first
    /// next time.
    fn report_activity(&mut self) {
        let n = self.passive.len();
        for k in 0..n {
            let i = (self.passive_cursor + k) % n;
            let (target, activity) = self.passive[i];
            if activity.is_empty() {
                continue;
            }
            if self.events.len() >= EVENT_QUEUE / 2 {
                self.passive_cursor = i;
                return;
            }
            self.passive[i].1 = InviteActivity::default();
            self.emit(ProxyEvent::InviteActivity { target, activity });
        }
        self.passive_cursor = 0;
    }

    /// The passive health counters of the forward target at `addr`.
    #[inline]
    fn passive_mut(&mut self, addr: SocketAddr) -> Option<&mut InviteActivity> {
        let i = self.passive.binary_search_by_key(&addr, |&(a, _)| a).ok()?;
        Some(&mut self.passive[i].1)
    }

    /// Reports target activity when [`ACTIVITY_REPORT`] has passed since
    /// the last report; call it between batches.
    pub fn poll_activity(&mut self, now: Timestamp) {
        let now = now.as_nanos();
        if now.saturating_sub(self.passive_reported) >= ACTIVITY_REPORT.as_nanos() as u64 {
            self.passive_reported = now;
            self.report_activity();
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

    /// True when a ban the control thread sent covers `ip` at `now`.
    fn is_banned(&self, ip: IpAddr, now: u64) -> bool {
        self.bans
            .get(SourceKey::new(ip))
            .is_some_and(|&until| until > now)
            || self
                .network_bans
                .iter()
                .any(|(n, until)| *until > now && n.contains(ip))
    }

    /// True for allowlisted sources (configured or added at run time) and
    /// the route table's forward targets.
    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.upstream_ips.binary_search(&ip).is_ok()
            || self.cfg.allowlist.iter().any(|c| c.contains(ip))
            || self.runtime_allows.iter().any(|c| c.contains(ip))
    }

    /// How far the edge trusts `ip` at `now`.
    pub(crate) fn standing(&self, ip: IpAddr, now: u64) -> Standing {
        if self.is_trusted(ip) {
            Standing::Trusted
        } else if self.verified.is_verified(ip, now) {
            Standing::Verified
        } else {
            Standing::Unverified
        }
    }

    /// `src` proved its address at `now`: verified here, and every other
    /// worker and the XDP filter are told (when there is news).
    fn prove(&mut self, src: IpAddr, now: u64) {
        if self.is_trusted(src) {
            return;
        }
        match self.verified.prove(src, now) {
            Proof::New(until) | Proof::Refreshed(until) => self.emit(ProxyEvent::Verified {
                source: src,
                until: Timestamp::from_nanos(until),
            }),
            Proof::Unchanged | Proof::Refused => {}
        }
    }

    /// True when `host` and `port` are one of this edge's addresses (UDP,
    /// TCP or TLS); no port means 5060 or, for TLS, 5061.
    fn host_is_ours(&self, host: Host<'_>, port: Option<u16>) -> bool {
        let port_ok = |ours: u16| port.map_or(ours == 5060 || ours == 5061, |p| p == ours);
        match host {
            Host::Ipv4(a) => self
                .our_addrs
                .iter()
                .any(|o| o.ip() == IpAddr::V4(a) && port_ok(o.port())),
            Host::Ipv6(a) => self
                .our_addrs
                .iter()
                .any(|o| o.ip() == IpAddr::V6(a) && port_ok(o.port())),
            Host::Name(n) => {
                self.our_addrs.iter().any(|o| port_ok(o.port()))
                    && self
                        .cfg
                        .aliases
                        .iter()
                        .any(|a| a.as_bytes().eq_ignore_ascii_case(n))
            }
        }
    }

    /// Whether what a datagram in the name of a source of `standing` shows
    /// counts toward that source's abuse limits: a verified source's, and
    /// only where the operator accepts UDP evidence (a datagram's source
    /// can be forged, verified or not).
    fn counts_abuse(&self, standing: Standing) -> bool {
        standing == Standing::Verified && self.cfg.abuse.ban_verified_udp
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
        let now = now.as_nanos();
        let from = pkt.peer();
        let banned = self.is_banned(pkt.src.ip(), now);
        // Built in this frame's slot: the message is never moved.
        let mut slot = None;
        let msg = match sip::parse_in(&mut slot, pkt.payload) {
            Ok(m) => m,
            Err(_) if banned => return self.drop(ProxyDrop::Banned),
            Err(e) => return self.malformed(e.kind),
        };
        // A TCP or TLS connection completed its handshake with this
        // address: it receives what is sent to it, as a dialog cookie
        // echoed would show.
        if from.transport.is_stream() && !banned {
            self.prove(from.addr.ip(), now);
        }
        match msg.start() {
            StartLine::Request { method, .. } => {
                let emergency = self.is_emergency(method, msg);
                // A banned source still reaches emergency services, unless
                // the operator says otherwise.
                if banned && (!emergency || self.cfg.emergency.keep_bans) {
                    return self.drop(ProxyDrop::Banned);
                }
                match self.decide_request(now, pkt.src, method, msg, emergency) {
                    Ok(d) => self.act(now, from, method, msg, d, out),
                    Err(reason) => self.drop(reason),
                }
            }
            StartLine::Response { .. } if banned => self.drop(ProxyDrop::Banned),
            StartLine::Response { code, .. } => self.response(now, from, code, msg, out),
        }
    }

    /// True when `msg` belongs to an emergency call: its Request-URI is an
    /// emergency number (whole) or, where the table takes them, an
    /// `urn:service:sos` URN; for the methods of a call.
    fn is_emergency(&self, method: Method<'_>, msg: &Message<'_>) -> bool {
        if !matches!(
            method,
            Method::Invite
                | Method::Ack
                | Method::Cancel
                | Method::Bye
                | Method::Prack
                | Method::Update
                | Method::Info
        ) {
            return false;
        }
        let Some(Ok(uri)) = msg.uri() else {
            return false;
        };
        let table = self.routes.table();
        if uri.is_sos_urn() {
            return table.emergency_urns();
        }
        let mut number = DialedNumber::new();
        uri.dialed_number(&mut number).is_ok() && table.is_emergency_number(number.as_bytes())
    }

    /// The Route fields of a request: how many at the top are ours, the
    /// next hop they name, (for an in-dialog request from `src`) the
    /// target a valid dialog cookie vouches for, and the connection a valid
    /// flow token names.
    fn route_info<'m>(
        &self,
        now: u64,
        src: SocketAddr,
        msg: &'m Message<'_>,
    ) -> Result<RouteInfo<'m>, ErrorKind> {
        let mut info = RouteInfo {
            own_routes: 0,
            next: None,
            cookie_target: None,
            flow: None,
        };
        let mut routes = msg.routes();
        while let Some(route) = routes.next().transpose().map_err(|e| e.kind)? {
            if info.own_routes == MAX_OWN_ROUTES || !self.uri_is_ours(route.uri()) {
                info.next = Some(route);
                break;
            }
            let params = route.uri().params();
            // Only an in-dialog request takes the cookie path: a request
            // without a To tag starts something new and is routed like one.
            // The cookie is in the Route the caller sees first.
            if info.own_routes == 0 && msg.to_tag().is_some() {
                info.cookie_target = self.cookie_target(now, src, msg, &params);
            }
            if info.flow.is_none() {
                if let Some(Some(token)) = params.get(b"dcf") {
                    if let Some(conn) = self.cfg.secret.verify_flow_token(token) {
                        let transport = uri_transport(route.uri());
                        let transport = if transport.is_stream() {
                            transport
                        } else {
                            Transport::Tcp
                        };
                        info.flow = Some((ConnId(conn), transport));
                    }
                }
            }
            info.own_routes += 1;
        }
        Ok(info)
    }

    /// The dialog target (and transport) the cookie in a Route of ours
    /// vouches for, when it is valid for `src` and this dialog.
    fn cookie_target(
        &self,
        now: u64,
        src: SocketAddr,
        msg: &Message<'_>,
        params: &sip::Params<'_>,
    ) -> Option<(SocketAddr, Transport)> {
        let (Some(Some(c)), Some(Some(t))) = (params.get(b"dce"), params.get(b"dct")) else {
            return None;
        };
        let target = decode_target(t)?;
        let transport = match params.get(b"dcx") {
            None => Transport::Udp,
            Some(v) => Transport::from_name(v.unwrap_or(b""))?,
        };
        let dialog = Dialog {
            call_id: msg.call_id(),
            from_tag: msg.from_tag().unwrap_or(b""),
            target,
            transport,
        };
        self.cfg
            .secret
            .verify_dialog_cookie(
                src.ip(),
                c,
                dialog,
                now.wrapping_add(self.cfg.cookie_clock_offset_ns),
                self.cfg.cookie_period_ns,
            )
            .then_some((target, transport))
    }

    /// Decides what to do with a request; nothing is sent here. Counters of
    /// routing (lookups, hits) and abuse reports move here, where what they
    /// count is known.
    fn decide_request(
        &mut self,
        now: u64,
        src: SocketAddr,
        method: Method<'_>,
        msg: &Message<'_>,
        emergency: bool,
    ) -> Result<Disposition, ProxyDrop> {
        // The parser checks values lazily: a bad Request-URI or Route shows
        // here, and is as malformed as a bad start line.
        let uri = match msg.uri() {
            Some(Ok(u)) => u,
            Some(Err(e)) => return Err(self.count_malformed(e.kind)),
            None => return Err(self.count_malformed(ErrorKind::BadRequestUri)),
        };
        let routing = match self.route_info(now, src, msg) {
            Ok(r) => r,
            Err(kind) => return Err(self.count_malformed(kind)),
        };
        // Loose routing (RFC 3261 section 16.4): a valid dialog cookie in
        // the Route naming this edge proves the source real.
        if routing.cookie_target.is_some() {
            self.prove(src.ip(), now);
        }
        let standing = self.standing(src.ip(), now);
        // Emergency requests pay their own budget, and do not count toward
        // the flood detector of the rest.
        if standing == Standing::Unverified && !emergency {
            self.answers.note_unverified(now);
        }
        let uri_ours = self.uri_is_ours(&uri);

        // OPTIONS addressed to the edge itself: answer 200 (carriers ping
        // constantly). Max-Forwards 0 on an OPTIONS also asks the proxy
        // itself (section 16.3 item 2).
        if method == Method::Options && uri_ours && uri.user().is_none() && routing.next.is_none() {
            return Ok(Disposition::Answer(Answer::new(200)));
        }
        if msg.max_forwards() == Some(0) {
            return match method {
                Method::Options => Ok(Disposition::Answer(Answer::new(200))),
                Method::Ack => Err(ProxyDrop::AckNoRoute),
                _ => Ok(Disposition::Answer(Answer::new(483))),
            };
        }

        // Loop detection (section 16.3 item 4).
        let loop_key = self.loop_key(msg);
        let looped = msg.vias().flatten().any(|via| {
            self.host_is_ours(via.host(), via.port())
                && via
                    .branch()
                    .and_then(branch_loop_key)
                    .is_some_and(|k| k == loop_key)
        });
        if looped {
            return match method {
                Method::Ack => Err(ProxyDrop::AckNoRoute),
                _ => Ok(Disposition::Answer(Answer::new(482))),
            };
        }

        // An ACK for an answer this edge made ends here (its To tag is ours,
        // bound to the address answered: echoing it proves that address).
        if method == Method::Ack
            && msg
                .to_tag()
                .is_some_and(|t| t == self.local_tag(msg, src.ip()))
        {
            self.prove(src.ip(), now);
            return Err(ProxyDrop::AckAbsorbed);
        }

        // An in-dialog request whose cookie vouches for its dialog goes to
        // the dialog's target, and only there.
        if let Some((target, transport)) = routing.cookie_target {
            return Ok(Disposition::Forward(Forward {
                to: Peer::at(target, transport),
                remove_routes: routing.own_routes,
                initial_invite: false,
                emergency,
                proven_caller: false,
            }));
        }

        // Emergency calls: wherever their Request-URI's host says, they are
        // this edge's to route.
        if emergency {
            return self.decide_emergency(method, msg, routing.own_routes);
        }

        // Requests not for this edge go where their next Route or
        // Request-URI says, for trusted sources only: the edge is no relay.
        if routing.next.is_some() || !uri_ours {
            if standing != Standing::Trusted {
                return Err(ProxyDrop::RelayDenied);
            }
            // Toward a caller on TCP or TLS: on its connection, which our
            // Record-Route's flow token names (its Contact is seldom
            // reachable: an ephemeral port, a NAT).
            if let (None, Some((conn, transport))) = (&routing.next, routing.flow) {
                let addr = uri
                    .host()
                    .and_then(|h| h.ip())
                    .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |ip| {
                        SocketAddr::new(ip, uri.port().unwrap_or(transport.default_port()))
                    });
                return Ok(Disposition::Forward(Forward {
                    to: Peer::on(addr, transport, conn),
                    remove_routes: routing.own_routes,
                    initial_invite: false,
                    emergency: false,
                    proven_caller: false,
                }));
            }
            let dest_uri = routing.next.as_ref().map_or(uri, |r| *r.uri());
            let Some(ip) = dest_uri.host().and_then(|h| h.ip()) else {
                return Err(ProxyDrop::Unresolvable);
            };
            let transport = uri_transport(&dest_uri);
            return Ok(Disposition::Forward(Forward {
                to: Peer::at(
                    SocketAddr::new(ip, dest_uri.port().unwrap_or(transport.default_port())),
                    transport,
                ),
                remove_routes: routing.own_routes,
                initial_invite: false,
                emergency: false,
                proven_caller: false,
            }));
        }

        // While the shields are up nothing goes out for an unverified
        // source (no forward, no answer), so its request is refused before
        // the route lookup: a spoofed flood buys no lookups.
        if !standing.is_proven() && self.answers.shields_up(now) {
            return Err(ProxyDrop::UnverifiedRequest);
        }
        self.decide_by_route(now, src, method, msg, standing, routing.own_routes)
    }

    /// An emergency request: to the emergency group (or its fallback, or a
    /// target that looks down rather than none), else by prefix without a
    /// cap. Never counted toward abuse.
    fn decide_emergency(
        &mut self,
        method: Method<'_>,
        msg: &Message<'_>,
        remove_routes: u8,
    ) -> Result<Disposition, ProxyDrop> {
        let initial_invite = method == Method::Invite && msg.to_tag().is_none();
        if initial_invite {
            self.emergency.calls.attempted += 1;
        }
        let forward = |dest, transport| {
            Ok(Disposition::Forward(Forward {
                to: Peer::at(dest, transport),
                remove_routes,
                initial_invite,
                emergency: true,
                proven_caller: false,
            }))
        };
        if let Some(target) = self.routes.route_emergency(msg.call_id()) {
            return forward(target.addr, target.transport);
        }
        let mut number = DialedNumber::new();
        let found = match msg.dialed_number(&mut number) {
            Ok(()) => {
                self.lookups += 1;
                self.routes.lookup(number.as_bytes())
            }
            Err(_) => None,
        };
        match Routed::from(self.routes.route_emergency_by_prefix(found, msg.call_id())) {
            Routed::Forward {
                dest,
                transport,
                group,
            } => {
                self.count_hit(group);
                forward(dest, transport)
            }
            _ if method == Method::Ack => Err(ProxyDrop::AckNoRoute),
            Routed::Redirect {
                group,
                targets,
                count,
            } => {
                self.count_hit(group);
                Ok(self.redirect(&number, &targets[..count.min(targets.len())]))
            }
            Routed::Reject { group, code } => {
                self.count_hit(group);
                Ok(Disposition::Answer(Answer::new(code)))
            }
            Routed::NoRoute | Routed::OverCap { .. } | Routed::NoTargetUp { .. } => {
                self.misses += 1;
                Ok(Disposition::Answer(Answer::new(self.cfg.no_route_code)))
            }
        }
    }

    /// A 302 to `targets`: a Contact `sip:NUMBER@target` for each, in
    /// priority order.
    fn redirect(&mut self, number: &DialedNumber, targets: &[SocketAddr]) -> Disposition {
        for (i, t) in targets.iter().enumerate() {
            self.contact_lens[i] = write_contact(&mut self.contacts[i], number.as_bytes(), *t);
        }
        let mut a = Answer::new(302);
        a.contacts = targets.len();
        Disposition::Answer(a)
    }

    /// A request for this edge: routed by its dialed number. REGISTER names
    /// its user in To, not in the Request-URI.
    fn decide_by_route(
        &mut self,
        now: u64,
        src: SocketAddr,
        method: Method<'_>,
        msg: &Message<'_>,
        standing: Standing,
        remove_routes: u8,
    ) -> Result<Disposition, ProxyDrop> {
        let mut number = DialedNumber::new();
        let have_number = match method {
            Method::Register => msg
                .to()
                .is_ok_and(|to| to.uri().dialed_number(&mut number).is_ok()),
            _ => msg.dialed_number(&mut number).is_ok(),
        };
        let initial_invite = method == Method::Invite && msg.to_tag().is_none();
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
        let is_ack = method == Method::Ack;
        match decision {
            Routed::Forward {
                dest,
                transport,
                group,
            } => {
                self.count_hit(group);
                Ok(Disposition::Forward(Forward {
                    to: Peer::at(dest, transport),
                    remove_routes,
                    initial_invite,
                    emergency: false,
                    proven_caller: false,
                }))
            }
            Routed::NoRoute => {
                self.misses += 1;
                if is_ack {
                    return Err(ProxyDrop::AckNoRoute);
                }
                // Only unforgeable evidence holds a source to account (see
                // `abuse`): over UDP, by default, nothing does.
                if self.counts_abuse(standing) {
                    if let Some(reason) = self.abuse.not_found(src.ip(), number.as_bytes(), now) {
                        self.emit(ProxyEvent::Abuse {
                            source: src.ip(),
                            reason,
                        });
                    }
                }
                Ok(Disposition::Answer(Answer::new(self.cfg.no_route_code)))
            }
            Routed::Reject { group, code } => {
                self.count_hit(group);
                if is_ack {
                    return Err(ProxyDrop::AckNoRoute);
                }
                Ok(Disposition::Answer(Answer::new(code)))
            }
            Routed::Redirect {
                group,
                targets,
                count,
            } => {
                self.count_hit(group);
                if is_ack {
                    return Err(ProxyDrop::AckNoRoute);
                }
                Ok(self.redirect(&number, &targets[..count.min(targets.len())]))
            }
            Routed::OverCap { group, retry_after } => {
                self.count_hit(group);
                if let Some(c) = self.group_counters.caps.get_mut(group as usize) {
                    *c += 1;
                }
                let mut a = Answer::new(503);
                a.retry_after = Some(retry_after.as_secs().max(1) as u32);
                Ok(Disposition::Answer(a))
            }
            Routed::NoTargetUp { group } => {
                self.count_hit(group);
                if is_ack {
                    return Err(ProxyDrop::AckNoRoute);
                }
                let mut a = Answer::new(503);
                a.retry_after = Some(5);
                a.no_upstream = true;
                Ok(Disposition::Answer(a))
            }
        }
    }

    /// Carries out a disposition: pays the budgets of an unverified source
    /// or destination, sends, and counts.
    fn act(
        &mut self,
        now: u64,
        from: Peer,
        method: Method<'_>,
        msg: &Message<'_>,
        disposition: Disposition,
        out: &mut Outbox<'_>,
    ) -> Result<(), ProxyDrop> {
        let standing = self.standing(from.addr.ip(), now);
        match disposition {
            Disposition::Forward(mut f) if f.emergency => {
                f.proven_caller = standing.is_proven();
                // Emergency requests from unverified sources pay their own
                // budget: shields up or not, never the unverified budget.
                if !standing.is_proven() && !self.emergency.admit_request(now) {
                    return self.drop(ProxyDrop::EmergencyOverBudget);
                }
                self.forward_request(now, from, msg, f, out)
            }
            Disposition::Forward(mut f) => {
                f.proven_caller = standing.is_proven();
                // Every request from an unverified source that would be
                // forwarded pays the budget, whatever its method.
                if !self.answers.admit_request(standing, now) {
                    return self.drop(ProxyDrop::UnverifiedRequest);
                }
                self.forward_request(now, from, msg, f, out)
            }
            Disposition::Answer(a) => self.answer(now, from, method, msg, standing, a, out),
        }
    }

    /// Writes the Record-Route of an initial INVITE from `from` forwarded
    /// to `to` into `out`; returns its length. The entry the caller sees
    /// first (the last one written) carries the dialog cookie, the target
    /// with its transport, and (when the caller is on a connection) the
    /// flow token that brings in-dialog requests back on it. When the call
    /// changes transport the edge Record-Routes twice, one entry per side
    /// (RFC 3261 section 16.6 item 4: each names the address and transport
    /// that side reaches), so each side sends to the edge over its own.
    fn write_record_route(
        &self,
        out: &mut [u8; RECORD_ROUTE_MAX],
        from: Peer,
        to: Peer,
        cookie: &[u8],
    ) -> usize {
        let mut target = [0u8; TARGET_MAX_LEN];
        let tn = encode_target(to.addr, &mut target);
        let mut w = Writer { buf: out, len: 0 };
        if from.transport == Transport::Udp && to.transport == Transport::Udp {
            // As it always was: one entry.
            w.put(&self.record_route_prefix);
            w.put(cookie);
            w.put(b";dct=");
            w.put(&target[..tn]);
            w.put(b">");
            return w.len;
        }
        if from.transport != to.transport {
            self.write_rr_uri(&mut w, to.transport);
            w.put(b";lr>, ");
        }
        self.write_rr_uri(&mut w, from.transport);
        w.put(b";lr;dce=");
        w.put(cookie);
        w.put(b";dct=");
        w.put(&target[..tn]);
        if to.transport != Transport::Udp {
            w.put(b";dcx=");
            w.put(to.transport.name().as_bytes());
        }
        if let Some(c) = from.conn {
            w.put(b";dcf=");
            w.put(&self.cfg.secret.flow_token(c.0));
        }
        w.put(b">");
        w.len
    }

    /// `<sip:ADDRESS` and, for a stream transport, `;transport=NAME`.
    fn write_rr_uri(&self, w: &mut Writer<'_>, transport: Transport) {
        use std::io::Write;
        w.put(b"<sip:");
        let mut addr = [0u8; 64];
        let mut cur = std::io::Cursor::new(&mut addr[..]);
        let _ = write!(cur, "{}", self.cfg.advertise_for(transport));
        let n = cur.position() as usize;
        w.put(&addr[..n]);
        if transport.is_stream() {
            w.put(b";transport=");
            w.put(transport.name().as_bytes());
        }
    }

    fn count_malformed(&mut self, kind: ErrorKind) -> ProxyDrop {
        if let Some(c) = self.parse_errors.get_mut(kind as usize) {
            *c += 1;
        }
        ProxyDrop::Malformed
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

    /// The branch for forwarding `msg` to `next_hop` (section 16.11): from
    /// the incoming branch when it is an RFC 3261 one, else from the fields
    /// that identify an RFC 2543 transaction. The method is left out so that
    /// a CANCEL and a non-2xx ACK get their INVITE's branch.
    fn branch(
        &self,
        msg: &Message<'_>,
        next_hop: Hop,
        emergency: bool,
        conn: Option<ConnId>,
    ) -> [u8; BRANCH_LEN] {
        let top = msg.top_via();
        let cseq = msg.cseq().number;
        let cseq_bytes = cseq.to_le_bytes();
        let uri = msg.request_uri().unwrap_or(b"");
        let loop_parts = [
            uri,
            msg.from_tag().unwrap_or(b""),
            msg.call_id(),
            &cseq_bytes[..],
        ];
        let tx = Transaction {
            call_id: msg.call_id(),
            cseq,
            emergency,
            conn: conn.map(|c| c.0),
        };
        match top.branch() {
            Some(b) if top.has_rfc3261_branch() => {
                self.cfg
                    .secret
                    .branch([b, top.as_bytes()], loop_parts, next_hop, tx)
            }
            _ => self.cfg.secret.branch(
                [
                    msg.to_tag().unwrap_or(b""),
                    msg.from_tag().unwrap_or(b""),
                    msg.call_id(),
                    uri,
                    top.as_bytes(),
                    &cseq_bytes[..],
                ],
                loop_parts,
                next_hop,
                tx,
            ),
        }
    }

    fn forward_request(
        &mut self,
        now: u64,
        from: Peer,
        msg: &Message<'_>,
        f: Forward,
        out: &mut Outbox<'_>,
    ) -> Result<(), ProxyDrop> {
        let src = from.addr;
        let hop = match f.to.conn {
            Some(c) => Hop::Conn(c.0),
            None => Hop::Addr(f.to.addr, f.to.transport),
        };
        let branch = self.branch(msg, hop, f.emergency, from.conn);
        let mut rr = [0u8; RECORD_ROUTE_MAX];
        let record_route = if f.initial_invite && self.cfg.record_route {
            let dialog = Dialog {
                call_id: msg.call_id(),
                from_tag: msg.from_tag().unwrap_or(b""),
                target: f.to.addr,
                transport: f.to.transport,
            };
            let c = self.cfg.secret.dialog_cookie(
                src.ip(),
                dialog,
                now.wrapping_add(self.cfg.cookie_clock_offset_ns),
                self.cfg.cookie_period_ns,
            );
            let len = self.write_record_route(&mut rr, from, f.to, &c[..COOKIE_LEN]);
            Some(&rr[..len])
        } else {
            None
        };
        // An initial INVITE's send time (`dcw`), so that the worker its
        // final answer reaches times the call's setup even when another
        // worker forwarded it; then the connection the request came on, for
        // its response to go back on (covered by the branch's MAC).
        let mut via_params = [0u8; 2 * VIA_PARAM_LEN];
        let mut len = 0;
        if f.initial_invite {
            via_params[..5].copy_from_slice(b";dcw=");
            // On the wall clock, as the dialog cookie's epoch: the answer
            // may come in at another edge of a fleet, whose monotonic
            // clock started elsewhere.
            let wall = now.wrapping_add(self.cfg.cookie_clock_offset_ns);
            cookie::write_hex16(wall, &mut via_params[5..VIA_PARAM_LEN]);
            len = VIA_PARAM_LEN;
        }
        if let Some(c) = from.conn {
            via_params[len..len + 5].copy_from_slice(b";dcc=");
            cookie::write_hex16(c.0, &mut via_params[len + 5..len + VIA_PARAM_LEN]);
            len += VIA_PARAM_LEN;
        }
        let via_params: &[u8] = &via_params[..len];
        let fwd = ForwardRequest {
            sent_by: SentBy::Addr(self.cfg.advertise_for(f.to.transport)),
            branch: &branch,
            request_uri: None,
            record_route,
            remove_routes: f.remove_routes,
            source: Some(src),
            via_transport: f.to.transport.via_token().as_bytes(),
            via_params,
            content_length: f.to.transport.is_stream(),
        };
        match out.send_to(f.to, |buf| sip::write::forward_request(msg, &fwd, buf).ok()) {
            Ok(()) => {}
            Err(SendError::PayloadRejected { .. }) => return self.drop(ProxyDrop::TooLarge),
            // The dataplane counted it (no neighbour, ring full...).
            Err(_) => return Ok(()),
        }
        self.forwarded_requests += 1;
        if f.initial_invite {
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
                if f.proven_caller {
                    if let Some(p) = self.passive_mut(f.to.addr) {
                        p.forwarded += 1;
                    }
                }
                if f.emergency {
                    self.emergency.calls.forwarded += 1;
                    self.emit(ProxyEvent::EmergencyCall {
                        source: src.ip(),
                        target: f.to.addr,
                    });
                }
            }
        }
        Ok(())
    }

    fn response(
        &mut self,
        now: u64,
        from: Peer,
        status: u16,
        msg: &Message<'_>,
        out: &mut Outbox<'_>,
    ) -> Result<(), ProxyDrop> {
        let top = msg.top_via();
        let branch = top.branch().unwrap_or(b"");
        if !(self.host_is_ours(top.host(), top.port()) && is_our_branch(branch)) {
            return self.drop(ProxyDrop::NotOurVia);
        }
        // The connection the request came in on, if it came on one.
        let conn = match top.params().get(b"dcc") {
            None => None,
            Some(v) => match v.and_then(cookie::read_hex16) {
                Some(c) => Some(c),
                None => return self.drop(ProxyDrop::UnexpectedResponse),
            },
        };
        // Only the hop the request went to, answering that request, gets a
        // response relayed: a branch of our shape proves nothing by itself.
        // The MAC covers the connection the response is to go back on, so
        // nobody can turn it toward another caller's connection.
        let cseq = msg.cseq();
        let emergency = branch_is_emergency(branch);
        let tx = Transaction {
            call_id: msg.call_id(),
            cseq: cseq.number,
            emergency,
            conn,
        };
        let secret = &self.cfg.secret;
        let ours = secret.response_is_ours(branch, Hop::Addr(from.addr, from.transport), tx)
            || from
                .conn
                .is_some_and(|c| secret.response_is_ours(branch, Hop::Conn(c.0), tx));
        if !ours {
            return self.drop(ProxyDrop::UnexpectedResponse);
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
        // Back on the caller's connection when the request came on one;
        // else over UDP (this edge never dials a caller's Via).
        let to = match conn {
            Some(c) => {
                let transport = match next.transport() {
                    sip::Transport::Tls => Transport::Tls,
                    _ => Transport::Tcp,
                };
                Peer::on(dest, transport, ConnId(c))
            }
            None => Peer::udp(dest),
        };
        let standing = self.standing(dest.ip(), now);
        // Passive health: this response passed the checks above (our
        // branch's MAC, from the hop the request went to), so it is
        // evidence about that hop. A failure counts only for a caller that
        // proved its address: a spoofed caller's INVITE proves nothing.
        if cseq.method == Method::Invite {
            if let Some(p) = self.passive_mut(from.addr) {
                p.responded += 1;
                if (101..300).contains(&status) {
                    p.answered += 1;
                } else if status == 503 && standing.is_proven() {
                    p.rejected += 1;
                }
            }
        }
        // An emergency call's responses reach its caller within the
        // emergency budget, shields up or not; others pay the budgets
        // toward unverified addresses.
        let verdict = if emergency && !standing.is_proven() {
            if self
                .emergency
                .responses
                .admit(&mut self.emergency.responses_state, now)
            {
                AnswerVerdict::Send
            } else {
                AnswerVerdict::UnverifiedLimited
            }
        } else {
            self.answers.admit_response(dest.ip(), standing, now)
        };
        match verdict {
            AnswerVerdict::Send => {}
            AnswerVerdict::Shielded => return self.drop(ProxyDrop::ShieldedResponse),
            AnswerVerdict::SourceLimited | AnswerVerdict::UnverifiedLimited => {
                return self.drop(ProxyDrop::ResponseLimited)
            }
        }
        // A genuine answer to a request counts toward its source's abuse
        // limits only where the request's own source could not be forged
        // (see `abuse`; never an emergency call's).
        if self.counts_abuse(standing) && !emergency {
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
        match out.send_to(to, |buf| {
            sip::write::forward_response_with(msg, to.transport.is_stream(), buf).ok()
        }) {
            Ok(()) => {}
            Err(SendError::PayloadRejected { .. }) => return self.drop(ProxyDrop::TooLarge),
            Err(_) => return Ok(()),
        }
        self.forwarded_responses += 1;
        if cseq.method == Method::Invite && status >= 200 {
            // When the INVITE left (`dcw`), for a worker that did not send
            // it. Not covered by the MAC: only the hop the INVITE went to
            // saw it, and a value it changed moves only this edge's own
            // histogram, within the bounds `note_final_answer` checks.
            let sent_at = top
                .params()
                .get(b"dcw")
                .flatten()
                .and_then(cookie::read_hex16)
                .map(|wall| wall.wrapping_sub(self.cfg.cookie_clock_offset_ns));
            self.note_final_answer(now, branch, status, emergency, sent_at);
        }
        Ok(())
    }

    /// Times the call's setup and counts its outcome, once per call: the
    /// slot also tells a retransmitted final answer from the first. The
    /// setup starts when this worker first forwarded the INVITE, or, when
    /// another worker forwarded it (the answer came in on another queue),
    /// at the send time `sent_at` that worker wrote in its Via (`dcw`, on
    /// the wall clock; the workers of an edge read one clock, the edges of
    /// a fleet keep theirs in step with NTP). A `sent_at` in the future or
    /// older than a transaction lives is not a setup time: counted, not
    /// timed.
    fn note_final_answer(
        &mut self,
        now: u64,
        branch: &[u8],
        status: u16,
        emergency: bool,
        sent_at: Option<u64>,
    ) {
        let key = setup_key(branch);
        let slot = &mut self.setup[(key as usize) & (SETUP_SLOTS - 1)];
        let (first, started) = if slot.key == key {
            let first = !slot.answered;
            slot.answered = true;
            (first, slot.started)
        } else {
            // The INVITE left from another worker and its answer came in on
            // this worker's queue: counted here, and remembered, so that
            // its retransmissions (the same flow, so the same queue) are
            // not counted again.
            *slot = SetupSlot {
                key,
                started: 0,
                answered: true,
            };
            let started = sent_at
                .filter(|&t| t != 0 && t <= now && now - t <= SETUP_STALE_NS)
                .unwrap_or(0);
            (true, started)
        };
        if first && started != 0 {
            let us = (now.saturating_sub(started) / 1000).clamp(1, 120_000_000);
            let _ = self.setup_us.record(us);
            if emergency {
                let _ = self.emergency.setup_us.record(us);
            }
        }
        if first {
            if status < 300 {
                self.calls_answered += 1;
                self.emergency.calls.answered += emergency as u64;
            } else {
                self.calls_failed += 1;
                self.emergency.calls.failed += emergency as u64;
            }
        }
    }

    /// The To tag of this edge's answers in the dialog of `msg`, answered to
    /// `to`: derived, so retransmissions and the ACK carry the same one.
    fn local_tag(&self, msg: &Message<'_>, to: IpAddr) -> [u8; cookie::LOCAL_TAG_LEN] {
        self.cfg
            .secret
            .local_tag(msg.call_id(), msg.from_tag().unwrap_or(b""), to)
    }

    #[allow(clippy::too_many_arguments)]
    fn answer(
        &mut self,
        now: u64,
        from: Peer,
        method: Method<'_>,
        msg: &Message<'_>,
        standing: Standing,
        a: Answer,
        out: &mut Outbox<'_>,
    ) -> Result<(), ProxyDrop> {
        let src = from.addr;
        match self.answers.admit_answer(src.ip(), standing, now) {
            AnswerVerdict::Send => {}
            AnswerVerdict::SourceLimited => return self.drop(ProxyDrop::AnswerLimitedSource),
            AnswerVerdict::UnverifiedLimited | AnswerVerdict::Shielded => {
                return self.drop(ProxyDrop::AnswerLimitedUnverified)
            }
        }
        let tag = self.local_tag(msg, src.ip());
        let mut contacts: [&[u8]; MAX_CONTACTS] = [&[]; MAX_CONTACTS];
        for (c, (text, &len)) in contacts
            .iter_mut()
            .zip(self.contacts.iter().zip(&self.contact_lens))
            .take(a.contacts)
        {
            *c = &text[..len];
        }
        let mut b = ResponseBuilder::new(a.code, reason_phrase(a.code))
            .server(self.cfg.server.as_bytes())
            .contacts(&contacts[..a.contacts]);
        if a.code > 100 {
            b = b.to_tag(&tag);
        }
        if let Some(s) = a.retry_after {
            b = b.retry_after(s);
        }
        if a.no_upstream {
            b = b.headers(NO_UPSTREAM_WARNING);
        }
        match out.send_to(from, |buf| b.write(msg, buf).ok()) {
            Ok(()) => {}
            Err(SendError::PayloadRejected { .. }) => return self.drop(ProxyDrop::TooLarge),
            Err(_) => return Ok(()),
        }
        self.answered[a.code as usize] += 1;
        if method == Method::Invite && a.code >= 300 {
            self.calls_failed += 1;
        }
        Ok(())
    }
}

/// The one source a network is, when it is no wider than one (an IPv4
/// host, or an IPv6 prefix of at least 64 bits: one /64 is one source).
fn one_source(network: Cidr) -> Option<IpAddr> {
    match network.addr {
        IpAddr::V4(_) => (network.prefix == 32).then_some(network.addr),
        IpAddr::V6(_) => (network.prefix >= 64).then_some(network.addr),
    }
}

/// The transport a URI asks for: its `transport` parameter, or TLS for a
/// `sips:` URI, else UDP.
fn uri_transport(uri: &Uri<'_>) -> Transport {
    match uri.params().get(b"transport") {
        Some(Some(t)) => Transport::from_name(t).unwrap_or(Transport::Udp),
        _ if uri.scheme() == Scheme::Sips => Transport::Tls,
        _ => Transport::Udp,
    }
}

/// A byte writer over a fixed buffer that stops at its end (the buffer is
/// sized for the longest Record-Route).
struct Writer<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = (self.len + bytes.len()).min(self.buf.len());
        let n = end - self.len;
        self.buf[self.len..end].copy_from_slice(&bytes[..n]);
        self.len = end;
    }
}

/// The Warning (RFC 3261 section 20.43, code 399: miscellaneous) of a 503
/// for a group whose targets are all down. It names no target: callers
/// need not be trusted with the edge's upstream addresses.
const NO_UPSTREAM_WARNING: &[(&str, &[u8])] =
    &[("Warning", b"399 dce-edge \"no upstream available\"")];

/// Room for the Record-Route this edge writes: two entries, IPv6
/// addresses, the cookie, the target and a flow token.
const RECORD_ROUTE_MAX: usize = 512;

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

    fn prepare(&mut self, now: Timestamp, payloads: &mut dyn Iterator<Item = &[u8]>) {
        // Under a flood (shields up) most of a batch is refused before its
        // route lookup; the few proven callers look up one by one.
        if self.answers.shields_up(now.as_nanos()) {
            self.prepared.clear();
            return;
        }
        self.prepared.prepare(&self.routes, payloads);
    }

    fn on_control(&mut self, now: Timestamp, msg: ProxyControl) {
        let now = now.as_nanos();
        match msg {
            ProxyControl::Ban { network, until } => match one_source(network) {
                Some(source) => *self.bans.entry(SourceKey::new(source), now) = until.as_nanos(),
                None => {
                    self.network_bans.retain(|(n, u)| *n != network && *u > now);
                    if self.network_bans.len() < NETWORK_BANS {
                        self.network_bans.push((network, until.as_nanos()));
                    }
                }
            },
            ProxyControl::Unban { network } => match one_source(network) {
                Some(source) => {
                    self.bans.remove(SourceKey::new(source));
                }
                None => self.network_bans.retain(|(n, _)| *n != network),
            },
            ProxyControl::Verify { source, until } => {
                self.verified.apply(source, until.as_nanos(), now);
            }
            ProxyControl::Allow { network } => {
                if !self.runtime_allows.contains(&network)
                    && self.runtime_allows.len() < RUNTIME_ALLOWS
                {
                    self.runtime_allows.push(network);
                }
            }
            ProxyControl::Disallow { network } => {
                // Configured entries too: the filter's reload and
                // `dce-edge allow --remove` take a network out of both layers.
                self.runtime_allows.retain(|n| *n != network);
                self.cfg.allowlist.retain(|n| *n != network);
            }
        }
    }

    fn between_batches(&mut self, now: Timestamp) {
        self.poll_routes();
        self.poll_activity(now);
    }

    fn stats(&self) -> ProxyStats {
        self.snapshot()
    }

    fn poll_event(&mut self) -> Option<ProxyEvent> {
        self.next_event()
    }
}
