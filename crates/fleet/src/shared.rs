//! The rules for state that other edges share over the bus: what one edge
//! may make the others do, sans-IO (the clock and the local verified table
//! are passed in).
//!
//! A ban that replicates is a ban amplified by the size of the fleet, so
//! the rules every edge keeps for its own bans hold for the bans it takes
//! from others too, and a compromised or buggy edge is bounded:
//!
//! - only messages signed with the fleet's key are read, only under a key
//!   that names the edge that signed them (the bus can be set to let each
//!   edge write only its own keys), and never an edge's own messages;
//! - a ban is of one host, lasts no longer than this edge's own bans, and
//!   is taken only for a source that this edge knows proved its address
//!   *through the banning edge alone* (its proof shared and taken here
//!   under the same per-/48 limit as a local one): a spoofed packet never
//!   travels, and an edge can take back only the trust it gave. A source
//!   that proved its address to this edge itself, or whose proof another
//!   edge shared, is not banned here on one other edge's word (a
//!   compromised edge cannot ban the fleet's verified callers everywhere);
//! - an operator's ban from another edge is of one host, never of a source
//!   verified here, an allowlisted one or an upstream (a wider ban, or one
//!   of a verified caller, is made on each edge by its operator);
//! - each edge may make this one take at most so many bans, verifications
//!   and operator actions per second (live), and hold at most so many of
//!   its bans and verifications at once (live and after a resync);
//! - operator actions travel only where `share_operator_actions` is on, and
//!   the newest action on a network wins.
//!
//! Heartbeats tell who is in the fleet, what each edge announces, which
//! route table it runs and when it was last heard.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use proxy::rate::{RateLimit, RateState};
use wire::Cidr;

use super::message::{self, Body, Envelope, Heartbeat, MacKey, OperatorAction, Unreadable};

/// How much one other edge may make this one do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bans per second per edge (live), and their burst.
    pub bans: (u32, u32),
    /// Verified sources per second per edge (live), and their burst.
    pub verified: (u32, u32),
    /// Operator actions per second per edge (live), and their burst.
    pub operator: (u32, u32),
    /// Bans of one edge held at once.
    pub max_bans_per_edge: usize,
    /// Verifications of one edge held at once.
    pub max_verified_per_edge: usize,
    /// Edges heard at most (more are refused: the table stays bounded).
    pub max_edges: usize,
    /// The longest ban taken, in milliseconds (this edge's own longest).
    pub max_ban_ms: u64,
    /// Whether operator actions of other edges are applied here.
    pub share_operator_actions: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            bans: (10, 100),
            verified: (500, 5000),
            operator: (10, 100),
            max_bans_per_edge: 10_000,
            max_verified_per_edge: 65_536,
            max_edges: 64,
            max_ban_ms: 3_600_000,
            share_operator_actions: true,
        }
    }
}

/// What this edge knows of a network a shared ban names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Standing {
    /// Verified here: by a proof seen here or one taken from another edge.
    pub verified: bool,
    /// Proved its address to this edge itself.
    pub proved_here: bool,
    /// Trusted here: allowlisted, or an upstream.
    pub trusted: bool,
}

/// The host a source counts as in the shared tables: itself (IPv4), or
/// its /64 (IPv6, as the verified table and the XDP bans count it).
pub fn host_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(a) => IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(a) & !((1u128 << 64) - 1),
        )),
    }
}

/// True for one IPv4 host, or one IPv6 host or /64 (the XDP filter's
/// automatic bans of IPv6 sources are by /64).
fn is_host(network: &Cidr) -> bool {
    if network.addr.is_ipv4() {
        network.prefix == 32
    } else {
        matches!(network.prefix, 64 | 128)
    }
}

/// Why a message was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    /// Could not be read (see [`Unreadable`]).
    Unreadable(&'static str),
    /// For another fleet.
    WrongFleet,
    /// The key names another edge than the message.
    OriginMismatch,
    /// Under a key that does not fit what it says.
    WrongKey,
    /// This edge's own message, read back.
    Own,
    /// Already lapsed.
    Expired,
    /// The edge sent more than its share per second.
    RateLimited,
    /// The edge holds its share of bans or verifications here already.
    OverQuota,
    /// A ban of more than one host (an IPv6 /64 counts as one).
    NotHost,
    /// A ban of a source this edge does not know to be verified through
    /// the banning edge alone (unverified here, proved here, or vouched for
    /// by another edge), or one it trusts (allowlisted, an upstream); an
    /// operator's ban of a source verified or trusted here.
    NotBannable,
    /// Operator actions of other edges are not taken here.
    OperatorActionsOff,
    /// An older operator action than one already taken for the network.
    Superseded,
    /// More edges than the table holds.
    TooManyEdges,
    /// Nothing new (the same ban or proof again).
    Duplicate,
}

impl Refusal {
    /// The name in counters and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::Unreadable(n) => n,
            Refusal::WrongFleet => "wrong_fleet",
            Refusal::OriginMismatch => "origin_mismatch",
            Refusal::WrongKey => "wrong_key",
            Refusal::Own => "own",
            Refusal::Expired => "expired",
            Refusal::RateLimited => "rate_limited",
            Refusal::OverQuota => "over_quota",
            Refusal::NotHost => "not_host",
            Refusal::NotBannable => "not_bannable",
            Refusal::OperatorActionsOff => "operator_actions_off",
            Refusal::Superseded => "superseded",
            Refusal::TooManyEdges => "too_many_edges",
            Refusal::Duplicate => "duplicate",
        }
    }
}

/// What to do with a message that passed the rules.
#[derive(Debug, Clone, PartialEq)]
pub enum Apply {
    /// Ban `network` (one host) for `ttl_ms`, as `origin` did.
    Ban {
        /// The source.
        network: Cidr,
        /// Why.
        reason: String,
        /// How long, at most this edge's own longest ban.
        ttl_ms: u64,
        /// The edge that banned it.
        origin: String,
    },
    /// `source` proved its address to `origin`; verified for `ttl_ms`.
    Verify {
        /// The source.
        source: IpAddr,
        /// How long.
        ttl_ms: u64,
        /// The edge it proved itself to.
        origin: String,
    },
    /// An operator's action made on `origin`.
    Operator {
        /// The network.
        network: Cidr,
        /// The action.
        action: OperatorAction,
        /// How long a ban lasts from now (`None`: until unbanned).
        ttl_ms: Option<u64>,
        /// The edge it was made on.
        origin: String,
    },
    /// A heartbeat: the edge's entry in the table was updated.
    Heartbeat {
        /// The edge.
        edge: String,
    },
}

/// What this edge knows of another.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// Its latest heartbeat.
    pub heartbeat: Option<Heartbeat>,
    /// When anything of it was last read (Unix ms, this edge's clock).
    pub last_contact_ms: u64,
    /// When its latest heartbeat was made (its clock).
    pub heartbeat_at_ms: u64,
    bans_rate: RateState,
    verified_rate: RateState,
    operator_rate: RateState,
    /// Its bans held here: network to the lapse time it said and the one
    /// taken here (at most this edge's longest ban), Unix ms.
    bans: HashMap<Cidr, (u64, u64)>,
    /// Its verifications held here: source (as [`host_of`]) to lapse time
    /// (Unix ms).
    verified: HashMap<IpAddr, u64>,
}

impl Peer {
    /// Its bans held here and still in force at `now_ms`.
    pub fn bans_in_force(&self, now_ms: u64) -> impl Iterator<Item = (&Cidr, u64)> {
        self.bans
            .iter()
            .filter(move |(_, &(_, until))| until > now_ms)
            .map(|(c, &(_, u))| (c, u))
    }
}

/// The state shared with the rest of the fleet, as this edge holds it.
#[derive(Debug)]
pub struct SharedState {
    fleet: String,
    me: String,
    mac: MacKey,
    limits: Limits,
    bans_limit: RateLimit,
    verified_limit: RateLimit,
    operator_limit: RateLimit,
    peers: BTreeMap<String, Peer>,
    /// The newest operator action taken per (list, network): its time.
    operator_latest: HashMap<(&'static str, Cidr), u64>,
    received: BTreeMap<(&'static str, &'static str), u64>,
}

/// Drops lapsed entries when a map is at its cap; true if there is room.
fn make_room<K: std::hash::Hash + Eq, V>(
    map: &mut HashMap<K, V>,
    cap: usize,
    now_ms: u64,
    lapse: impl Fn(&V) -> u64,
) -> bool {
    if map.len() >= cap {
        map.retain(|_, v| lapse(v) > now_ms);
    }
    map.len() < cap
}

impl SharedState {
    /// This edge (`me`) of `fleet`, reading messages signed with `mac`.
    pub fn new(fleet: &str, me: &str, mac: MacKey, limits: Limits) -> SharedState {
        SharedState {
            fleet: fleet.to_string(),
            me: me.to_string(),
            mac,
            bans_limit: RateLimit::per_second(limits.bans.0, limits.bans.1),
            verified_limit: RateLimit::per_second(limits.verified.0, limits.verified.1),
            operator_limit: RateLimit::per_second(limits.operator.0, limits.operator.1),
            limits,
            peers: BTreeMap::new(),
            operator_latest: HashMap::new(),
            received: BTreeMap::new(),
        }
    }

    /// The limits it applies.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Signs `body` as this edge's message at `now_ms`; the key and payload
    /// to store. `None` for a body no key can name (a malformed network).
    pub fn seal(&self, body: Body, now_ms: u64) -> Option<(String, Vec<u8>)> {
        let key = message::key_for(&self.me, &body)?;
        let env = Envelope {
            v: message::VERSION,
            fleet: self.fleet.clone(),
            edge: self.me.clone(),
            at_ms: now_ms,
            body,
        };
        let payload = message::seal(&self.mac, &key, &env);
        Some((key, payload))
    }

    fn count(&mut self, kind: &'static str, verdict: &'static str) {
        *self.received.entry((kind, verdict)).or_default() += 1;
    }

    /// Messages read, by kind and verdict (`applied` or a refusal's name).
    pub fn received(&self) -> &BTreeMap<(&'static str, &'static str), u64> {
        &self.received
    }

    /// Reads one message stored under `key`. `live` is true for a message
    /// as it was published, false for one read back in a resync (which is
    /// not charged to the per-second limits: it was charged when live, and
    /// a resync reads a whole bucket at once). `now_ms` is the wall clock,
    /// `now_ns` the monotonic one (rates); `standing` says what this edge
    /// knows of a network a ban names (verified, proved here, trusted).
    pub fn receive(
        &mut self,
        key: &str,
        payload: &[u8],
        live: bool,
        now_ms: u64,
        now_ns: u64,
        standing: &dyn Fn(&Cidr) -> Standing,
    ) -> Result<Apply, Refusal> {
        let kind = key.split('.').next().unwrap_or("");
        let kind: &'static str = match kind {
            "edge" => "heartbeat",
            "ban" => "ban",
            "verified" => "verified",
            "op" => "operator",
            _ => "other",
        };
        let r = self.judge(key, payload, live, now_ms, now_ns, standing);
        match &r {
            Ok(_) => self.count(kind, "applied"),
            Err(e) => self.count(kind, e.name()),
        }
        r
    }

    fn judge(
        &mut self,
        key: &str,
        payload: &[u8],
        live: bool,
        now_ms: u64,
        now_ns: u64,
        standing: &dyn Fn(&Cidr) -> Standing,
    ) -> Result<Apply, Refusal> {
        let env = message::open(&self.mac, key, payload)
            .map_err(|e: Unreadable| Refusal::Unreadable(e.name()))?;
        if env.fleet != self.fleet {
            return Err(Refusal::WrongFleet);
        }
        if message::key_origin(key) != Some(env.edge.as_str()) {
            return Err(Refusal::OriginMismatch);
        }
        if message::key_for(&env.edge, &env.body).as_deref() != Some(key) {
            return Err(Refusal::WrongKey);
        }
        if env.edge == self.me {
            return Err(Refusal::Own);
        }
        if !self.peers.contains_key(&env.edge) && self.peers.len() >= self.limits.max_edges {
            return Err(Refusal::TooManyEdges);
        }
        // Whether an edge other than the sender vouches for the source a
        // ban names: then the sender's word alone does not ban it here.
        let vouched_by_others = match &env.body {
            Body::Ban { network, .. } => network.parse::<Cidr>().is_ok_and(|n| {
                let host = host_of(n.addr);
                self.peers.iter().any(|(name, p)| {
                    *name != env.edge && p.verified.get(&host).is_some_and(|&u| u > now_ms)
                })
            }),
            _ => false,
        };
        let limits = self.limits;
        let (bans_limit, verified_limit, operator_limit) =
            (self.bans_limit, self.verified_limit, self.operator_limit);
        let origin = env.edge.clone();
        let peer = self.peers.entry(env.edge.clone()).or_default();
        peer.last_contact_ms = now_ms;
        match env.body {
            Body::Heartbeat(hb) => {
                if env.at_ms >= peer.heartbeat_at_ms {
                    peer.heartbeat_at_ms = env.at_ms;
                    peer.heartbeat = Some(hb);
                }
                Ok(Apply::Heartbeat { edge: origin })
            }
            Body::Ban {
                network,
                reason,
                until_ms,
            } => {
                let network: Cidr = network.parse().map_err(|_| Refusal::WrongKey)?;
                if !is_host(&network) {
                    return Err(Refusal::NotHost);
                }
                if until_ms <= now_ms {
                    return Err(Refusal::Expired);
                }
                // The same ban again (a resync, a replay) is taken once.
                if peer
                    .bans
                    .get(&network)
                    .is_some_and(|&(said, lapse)| said >= until_ms && lapse > now_ms)
                {
                    return Err(Refusal::Duplicate);
                }
                // Only the trust the sender gave can it take back: a source
                // verified here through its proof alone, trusted by no one.
                let s = standing(&network);
                if !s.verified || s.proved_here || s.trusted || vouched_by_others {
                    return Err(Refusal::NotBannable);
                }
                if !peer.bans.contains_key(&network)
                    && !make_room(&mut peer.bans, limits.max_bans_per_edge, now_ms, |v| v.1)
                {
                    return Err(Refusal::OverQuota);
                }
                if live && !bans_limit.admit(&mut peer.bans_rate, now_ns) {
                    return Err(Refusal::RateLimited);
                }
                let ttl_ms = (until_ms - now_ms).min(limits.max_ban_ms);
                peer.bans.insert(network, (until_ms, now_ms + ttl_ms));
                Ok(Apply::Ban {
                    network,
                    reason,
                    ttl_ms,
                    origin,
                })
            }
            Body::Verified { source, until_ms } => {
                if until_ms <= now_ms {
                    return Err(Refusal::Expired);
                }
                let host = host_of(source);
                if peer.verified.get(&host).is_some_and(|&u| u >= until_ms) {
                    return Err(Refusal::Duplicate);
                }
                if !peer.verified.contains_key(&host)
                    && !make_room(
                        &mut peer.verified,
                        limits.max_verified_per_edge,
                        now_ms,
                        |&v| v,
                    )
                {
                    return Err(Refusal::OverQuota);
                }
                if live && !verified_limit.admit(&mut peer.verified_rate, now_ns) {
                    return Err(Refusal::RateLimited);
                }
                peer.verified.insert(host, until_ms);
                Ok(Apply::Verify {
                    source,
                    ttl_ms: until_ms - now_ms,
                    origin,
                })
            }
            Body::Operator(action) => {
                if !limits.share_operator_actions {
                    return Err(Refusal::OperatorActionsOff);
                }
                let network: Cidr = action
                    .network_text()
                    .parse()
                    .map_err(|_| Refusal::WrongKey)?;
                let ttl_ms = match &action {
                    OperatorAction::Ban {
                        until_ms: Some(u), ..
                    } => {
                        if *u <= now_ms {
                            return Err(Refusal::Expired);
                        }
                        Some(u - now_ms)
                    }
                    _ => None,
                };
                let slot = (action.list(), network);
                if self
                    .operator_latest
                    .get(&slot)
                    .is_some_and(|&at| at >= env.at_ms)
                {
                    return Err(Refusal::Superseded);
                }
                // Another edge's operator (or whoever holds that edge) bans
                // one host at a time, and never one this edge verified or
                // trusts: no message bans the fleet's callers or upstreams
                // everywhere.
                if matches!(action, OperatorAction::Ban { .. }) {
                    if !is_host(&network) {
                        return Err(Refusal::NotHost);
                    }
                    let s = standing(&network);
                    if s.verified || s.proved_here || s.trusted {
                        return Err(Refusal::NotBannable);
                    }
                }
                if live && !operator_limit.admit(&mut peer.operator_rate, now_ns) {
                    return Err(Refusal::RateLimited);
                }
                self.operator_latest.insert(slot, env.at_ms);
                Ok(Apply::Operator {
                    network,
                    action,
                    ttl_ms,
                    origin,
                })
            }
        }
    }

    /// Records an operator action made here (so an older one from another
    /// edge does not undo it).
    pub fn note_own_operator_action(&mut self, action: &OperatorAction, at_ms: u64) {
        if let Ok(network) = action.network_text().parse::<Cidr>() {
            self.operator_latest.insert((action.list(), network), at_ms);
        }
    }

    /// The other edges heard, by name.
    pub fn peers(&self) -> &BTreeMap<String, Peer> {
        &self.peers
    }

    /// The bans of other edges held here and in force at `now_ms`.
    pub fn remote_bans(&self, now_ms: u64) -> impl Iterator<Item = (&str, &Cidr, u64)> {
        self.peers.iter().flat_map(move |(name, p)| {
            p.bans_in_force(now_ms)
                .map(move |(c, until)| (name.as_str(), c, until))
        })
    }

    /// True when `network` is banned here because another edge banned it
    /// (such a ban is not shared again: no echo, no amplification).
    pub fn is_remote_ban(&self, network: &Cidr, now_ms: u64) -> bool {
        self.peers
            .values()
            .any(|p| p.bans.get(network).is_some_and(|&(_, u)| u > now_ms))
    }

    /// Verifications of other edges held here and in force at `now_ms`.
    pub fn remote_verified(&self, now_ms: u64) -> usize {
        self.peers
            .values()
            .map(|p| p.verified.values().filter(|&&u| u > now_ms).count())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: MacKey = MacKey::new((7, 9));
    const T: u64 = 1_800_000_000_000;
    const NS: u64 = 1_000_000_000_000;

    fn edge(name: &str) -> SharedState {
        SharedState::new("lab", name, KEY, Limits::default())
    }

    fn everyone_verified(_: &Cidr) -> Standing {
        Standing {
            verified: true,
            ..Standing::default()
        }
    }

    fn ban_of(ip: &str, until_ms: u64) -> Body {
        Body::Ban {
            network: format!("{ip}/32"),
            reason: "not_found".into(),
            until_ms,
        }
    }

    #[test]
    fn a_ban_of_another_edge_is_taken_for_at_most_the_local_longest() {
        let e1 = edge("e1");
        let mut e2 = edge("e2");
        let (k, p) = e1.seal(ban_of("198.18.0.9", T + 86_400_000), T).unwrap();
        let r = e2.receive(&k, &p, true, T, NS, &everyone_verified).unwrap();
        assert_eq!(
            r,
            Apply::Ban {
                network: "198.18.0.9".parse().unwrap(),
                reason: "not_found".into(),
                ttl_ms: 3_600_000,
                origin: "e1".into()
            }
        );
        assert!(e2.is_remote_ban(&"198.18.0.9".parse().unwrap(), T + 1));
        // The same again is nothing new.
        assert_eq!(
            e2.receive(&k, &p, true, T + 1, NS + 1, &everyone_verified),
            Err(Refusal::Duplicate)
        );
    }

    #[test]
    fn a_ban_of_a_source_not_verified_here_is_refused() {
        let e1 = edge("e1");
        let mut e2 = edge("e2");
        let (k, p) = e1.seal(ban_of("198.19.7.7", T + 600_000), T).unwrap();
        let nobody = |_: &Cidr| Standing::default();
        assert_eq!(
            e2.receive(&k, &p, true, T, NS, &nobody),
            Err(Refusal::NotBannable)
        );
        assert_eq!(e2.remote_bans(T).count(), 0);
    }

    /// A compromised edge holds the fleet key and may write its own keys:
    /// it can say anything under its own name. It still bans no caller
    /// that proved its address here or to another edge, no upstream, no
    /// allowlisted source, and no network, through bans or operator
    /// actions; it takes back only the trust it gave.
    #[test]
    fn a_compromised_edge_bans_no_caller_verified_here_or_by_another_edge_and_no_upstream() {
        let rogue = edge("e1");
        let honest = edge("e3");
        let mut e2 = edge("e2");
        let mine: IpAddr = "198.18.0.10".parse().unwrap(); // proved to e2 itself
        let theirs: IpAddr = "198.18.0.11".parse().unwrap(); // proved to e3
        let upstream: IpAddr = "198.18.5.2".parse().unwrap();
        let allowed: IpAddr = "198.18.6.9".parse().unwrap();
        let scanner: IpAddr = "198.18.0.200".parse().unwrap(); // proved to e1 only
        let v6: IpAddr = "2001:db8:0:7::5".parse().unwrap(); // proved to e3, by /64
                                                             // What e2 knows: every proof it took counts as verified.
        let verified_here = std::cell::RefCell::new(vec![mine]);
        let standing = |n: &Cidr| Standing {
            verified: verified_here
                .borrow()
                .iter()
                .any(|&v| n.contains(v) || host_of(v) == host_of(n.addr)),
            proved_here: n.contains(mine),
            trusted: n.contains(upstream) || n.contains(allowed),
        };
        let mut t = T;
        let mut take = |e2: &mut SharedState, from: &SharedState, body: Body| {
            t += 1;
            let (k, p) = from.seal(body, t).unwrap();
            let r = e2.receive(&k, &p, true, t, NS + t, &standing);
            if let Ok(Apply::Verify { source, .. }) = &r {
                verified_here.borrow_mut().push(*source);
            }
            r
        };
        let proof = |source: IpAddr| Body::Verified {
            source,
            until_ms: T + 600_000,
        };
        assert!(take(&mut e2, &honest, proof(theirs)).is_ok());
        assert!(take(&mut e2, &honest, proof(v6)).is_ok());
        // The rogue edge vouches for everyone, then bans them.
        for who in [mine, theirs, upstream, allowed, scanner] {
            let _ = take(&mut e2, &rogue, proof(who));
        }
        let _ = take(&mut e2, &rogue, proof("2001:db8:0:7::99".parse().unwrap()));
        for who in [mine, theirs, upstream, allowed] {
            assert_eq!(
                take(&mut e2, &rogue, ban_of(&who.to_string(), T + 600_000)),
                Err(Refusal::NotBannable),
                "{who}"
            );
        }
        let ban64 = Body::Ban {
            network: "2001:db8:0:7::/64".into(),
            reason: "scanner".into(),
            until_ms: T + 600_000,
        };
        assert_eq!(take(&mut e2, &rogue, ban64), Err(Refusal::NotBannable));
        // As an operator: no network, no verified caller, no upstream.
        let op_ban = |network: &str| {
            Body::Operator(OperatorAction::Ban {
                network: network.into(),
                reason: "manual".into(),
                note: String::new(),
                until_ms: None,
            })
        };
        assert_eq!(
            take(&mut e2, &rogue, op_ban("0.0.0.0/0")),
            Err(Refusal::NotHost)
        );
        assert_eq!(
            take(&mut e2, &rogue, op_ban("198.18.0.0/16")),
            Err(Refusal::NotHost)
        );
        for who in [mine, theirs, upstream, allowed] {
            assert_eq!(
                take(&mut e2, &rogue, op_ban(&format!("{who}/32"))),
                Err(Refusal::NotBannable),
                "{who}"
            );
        }
        assert_eq!(e2.remote_bans(T + 100).count(), 0);
        // What it alone vouched for, it may take back (a scanner that
        // proved its address to it, then scanned it).
        assert!(matches!(
            take(&mut e2, &rogue, ban_of("198.18.0.200", T + 600_000)),
            Ok(Apply::Ban { .. })
        ));
        // And an operator's ban of an unverified host travels.
        assert!(matches!(
            take(&mut e2, &rogue, op_ban("203.0.113.7/32")),
            Ok(Apply::Operator { .. })
        ));
        assert_eq!(e2.received()[&("ban", "not_bannable")], 5);
        assert_eq!(e2.received()[&("operator", "not_bannable")], 4);
        assert_eq!(e2.received()[&("operator", "not_host")], 2);
    }

    #[test]
    fn a_network_ban_is_refused_only_hosts_travel() {
        let e1 = edge("e1");
        let mut e2 = edge("e2");
        let body = Body::Ban {
            network: "198.18.0.0/24".into(),
            reason: "not_found".into(),
            until_ms: T + 1000,
        };
        let (k, p) = e1.seal(body, T).unwrap();
        assert_eq!(
            e2.receive(&k, &p, true, T, NS, &everyone_verified),
            Err(Refusal::NotHost)
        );
    }

    #[test]
    fn forged_and_misfiled_messages_are_refused() {
        let e1 = edge("e1");
        let mut e2 = edge("e2");
        // Signed with another key: someone with the bus password only.
        let outsider = SharedState::new("lab", "e1", MacKey::new((1, 1)), Limits::default());
        let (k, p) = outsider.seal(ban_of("198.18.0.9", T + 1000), T).unwrap();
        assert_eq!(
            e2.receive(&k, &p, true, T, NS, &everyone_verified),
            Err(Refusal::Unreadable("bad_signature"))
        );
        // e1's valid message stored under e3's key: the store may let e3
        // write only e3's keys; a copy of e1's message there is refused.
        let (_, p) = e1.seal(ban_of("198.18.0.9", T + 1000), T).unwrap();
        assert!(e2
            .receive("ban.e3.198_18_0_9_32", &p, true, T, NS, &everyone_verified)
            .is_err());
        // Another fleet's edge with the same secret.
        let other = SharedState::new("prod", "e1", KEY, Limits::default());
        let (k, p) = other.seal(ban_of("198.18.0.9", T + 1000), T).unwrap();
        assert_eq!(
            e2.receive(&k, &p, true, T, NS, &everyone_verified),
            Err(Refusal::WrongFleet)
        );
        // Its own message read back.
        let (k, p) = e2.seal(ban_of("198.18.0.9", T + 1000), T).unwrap();
        assert_eq!(
            e2.receive(&k, &p, true, T, NS, &everyone_verified),
            Err(Refusal::Own)
        );
        // Lapsed.
        let (k, p) = e1.seal(ban_of("198.18.0.9", T - 1), T - 600_000).unwrap();
        assert_eq!(
            e2.receive(&k, &p, true, T, NS, &everyone_verified),
            Err(Refusal::Expired)
        );
    }

    #[test]
    fn a_runaway_edge_gets_its_burst_then_its_rate_then_its_quota() {
        let e1 = edge("e1");
        let mut e2 = SharedState::new(
            "lab",
            "e2",
            KEY,
            Limits {
                bans: (10, 100),
                max_bans_per_edge: 150,
                ..Limits::default()
            },
        );
        let mut applied = 0;
        let mut limited = 0;
        // 10,000 bans in one second.
        for i in 0..10_000u32 {
            let ip = std::net::Ipv4Addr::from(0xC612_0000 + i);
            let (k, p) = e1.seal(ban_of(&ip.to_string(), T + 600_000), T).unwrap();
            match e2.receive(&k, &p, true, T, NS + i as u64 * 100_000, &everyone_verified) {
                Ok(_) => applied += 1,
                Err(Refusal::RateLimited) => limited += 1,
                Err(e) => panic!("{e:?}"),
            }
        }
        // The burst and ten per second for the second that passed.
        assert!((100..=111).contains(&applied), "{applied}");
        assert_eq!(applied + limited, 10_000);
        // A resync is not charged to the rate, but the quota holds.
        let mut resynced = 0;
        for i in 0..10_000u32 {
            let ip = std::net::Ipv4Addr::from(0xC613_0000 + i);
            let (k, p) = e1.seal(ban_of(&ip.to_string(), T + 600_000), T).unwrap();
            match e2.receive(&k, &p, false, T, 2 * NS, &everyone_verified) {
                Ok(_) => resynced += 1,
                Err(Refusal::OverQuota) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(applied + resynced, 150);
        assert_eq!(e2.remote_bans(T).count(), 150);
        // Another edge has a quota of its own.
        let e3 = edge("e3");
        let (k, p) = e3.seal(ban_of("198.18.0.77", T + 600_000), T).unwrap();
        assert!(e2
            .receive(&k, &p, true, T, 3 * NS, &everyone_verified)
            .is_ok());
    }

    #[test]
    fn lapsed_bans_make_room_in_the_quota() {
        let e1 = edge("e1");
        let mut e2 = SharedState::new(
            "lab",
            "e2",
            KEY,
            Limits {
                max_bans_per_edge: 2,
                ..Limits::default()
            },
        );
        for (i, ip) in ["198.18.0.1", "198.18.0.2"].iter().enumerate() {
            let (k, p) = e1.seal(ban_of(ip, T + 1000), T).unwrap();
            assert!(e2
                .receive(&k, &p, true, T, NS + i as u64, &everyone_verified)
                .is_ok());
        }
        let (k, p) = e1.seal(ban_of("198.18.0.3", T + 5000), T).unwrap();
        assert_eq!(
            e2.receive(&k, &p, true, T, 2 * NS, &everyone_verified),
            Err(Refusal::OverQuota)
        );
        assert!(e2
            .receive(&k, &p, true, T + 2000, 3 * NS, &everyone_verified)
            .is_ok());
    }

    #[test]
    fn a_proof_travels_with_its_lapse_time_and_operator_actions_newest_first() {
        let e1 = edge("e1");
        let e3 = edge("e3");
        let mut e2 = edge("e2");
        let src: IpAddr = "198.18.0.10".parse().unwrap();
        let (k, p) = e1
            .seal(
                Body::Verified {
                    source: src,
                    until_ms: T + 60_000,
                },
                T,
            )
            .unwrap();
        assert_eq!(
            e2.receive(&k, &p, true, T + 1000, NS, &everyone_verified),
            Ok(Apply::Verify {
                source: src,
                ttl_ms: 59_000,
                origin: "e1".into()
            })
        );
        let ban = |until| {
            Body::Operator(OperatorAction::Ban {
                network: "203.0.113.0/24".into(),
                reason: "manual".into(),
                note: String::new(),
                until_ms: until,
            })
        };
        let unban = Body::Operator(OperatorAction::Unban {
            network: "203.0.113.0/24".into(),
        });
        // e3 unbanned at T+5 s, e1 had banned at T+1 s: read in the other
        // order (a resync), the unban stays.
        let (k3, p3) = e3.seal(unban, T + 5000).unwrap();
        let (k1, p1) = e1.seal(ban(None), T + 1000).unwrap();
        assert!(matches!(
            e2.receive(&k3, &p3, false, T + 6000, NS, &everyone_verified),
            Ok(Apply::Operator { .. })
        ));
        assert_eq!(
            e2.receive(&k1, &p1, false, T + 6000, NS, &everyone_verified),
            Err(Refusal::Superseded)
        );
        // Switched off: nothing an operator did elsewhere applies here.
        let mut closed = SharedState::new(
            "lab",
            "e4",
            KEY,
            Limits {
                share_operator_actions: false,
                ..Limits::default()
            },
        );
        assert_eq!(
            closed.receive(&k1, &p1, true, T + 6000, NS, &everyone_verified),
            Err(Refusal::OperatorActionsOff)
        );
        assert_eq!(e2.received()[&("operator", "superseded")], 1);
    }

    #[test]
    fn heartbeats_fill_the_table_of_edges_up_to_its_size() {
        let mut e0 = SharedState::new(
            "lab",
            "e0",
            KEY,
            Limits {
                max_edges: 3,
                ..Limits::default()
            },
        );
        for i in 1..=5 {
            let e = edge(&format!("e{i}"));
            let hb = Heartbeat {
                routes_version: i,
                ..Heartbeat::default()
            };
            let (k, p) = e.seal(Body::Heartbeat(hb), T).unwrap();
            let r = e0.receive(&k, &p, true, T, NS, &everyone_verified);
            if i <= 3 {
                assert!(r.is_ok());
            } else {
                assert_eq!(r, Err(Refusal::TooManyEdges));
            }
        }
        assert_eq!(e0.peers().len(), 3);
        assert_eq!(
            e0.peers()["e2"].heartbeat.as_ref().unwrap().routes_version,
            2
        );
    }
}
