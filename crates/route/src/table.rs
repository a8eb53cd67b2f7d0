//! The route table: prefixes of dialed numbers to route groups, each with an
//! action, targets and an optional CPS cap.
//!
//! A [`RouteTable`] is built once (from files by [`route::files`], or
//! in code with [`RouteTable::build`]), then cloned into every worker, which
//! looks numbers up in its own copy.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::health::HealthSettings;
use crate::trie::{self, PrefixKey, PrefixTrie};

/// Index of a route group in its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(pub u32);

/// Index of an upstream (one distinct target address) in its table. Health is
/// kept per upstream: an address used by several groups is probed once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UpstreamId(pub u32);

/// What the edge does with a call whose number matches a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Forward statelessly to one of the group's targets.
    Forward,
    /// Answer 302 Moved Temporarily with the targets as Contacts.
    Redirect,
    /// Answer with this final status code (400-699).
    Reject {
        /// The status code, such as 403, 404 or 503.
        code: u16,
    },
}

impl Action {
    /// The action's name as the groups file spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Forward => "forward",
            Action::Redirect => "redirect",
            Action::Reject { .. } => "reject",
        }
    }
}

/// The transport a SIP message travels over: what a route target is
/// reached by, and what a message arrived on (the proxy's handler contract
/// re-exports it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Transport {
    /// UDP (the default).
    #[default]
    Udp,
    /// TCP, framed by Content-Length (RFC 3261 section 18.3).
    Tcp,
    /// TLS over TCP.
    Tls,
}

impl Transport {
    /// Every transport, in counter order.
    pub const ALL: [Transport; 3] = [Transport::Udp, Transport::Tcp, Transport::Tls];

    /// The name as a groups file and the counters spell it: `udp`, `tcp`,
    /// `tls` (also the value of a URI's `transport` parameter).
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// The transport token of a Via written for it (`SIP/2.0/UDP`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// A connection-oriented transport (TCP or TLS), framed by
    /// Content-Length.
    pub fn is_stream(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The port SIP uses for it by default (RFC 3261 section 19.1.2).
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 5061,
            _ => 5060,
        }
    }

    /// Reads a name (`udp`, `tcp`, `tls`, any case).
    pub fn from_name(name: &[u8]) -> Option<Transport> {
        Transport::ALL
            .into_iter()
            .find(|t| t.name().as_bytes().eq_ignore_ascii_case(name))
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One target of a route group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Where to send: an IPv4 or IPv6 address and a port.
    pub addr: SocketAddr,
    /// What to send over (`transport = "udp" | "tcp" | "tls"` in the groups
    /// file; UDP by default).
    pub transport: Transport,
    /// Lower is preferred, as in DNS SRV (RFC 2782): targets of priority 1
    /// take all calls while any of them is up, then priority 2, and so on.
    pub priority: u16,
    /// Share of calls among up targets of the same priority (at least 1).
    pub weight: u16,
    pub(crate) upstream: UpstreamId,
    /// Hash of the address: the target's identity in rendezvous hashing, so a
    /// target keeps its calls across reloads that keep its address.
    pub(crate) seed: u64,
}

impl Target {
    /// A target; `weight` 0 is raised to 1.
    pub fn new(addr: SocketAddr, priority: u16, weight: u16) -> Target {
        Target {
            addr,
            transport: Transport::Udp,
            priority,
            weight: weight.max(1),
            upstream: UpstreamId(0),
            seed: address_seed(addr),
        }
    }

    /// The same target reached over `transport`.
    pub fn with_transport(mut self, transport: Transport) -> Target {
        self.transport = transport;
        self
    }

    /// The upstream whose health decides whether this target is up.
    pub fn upstream(&self) -> UpstreamId {
        self.upstream
    }
}

fn address_seed(addr: SocketAddr) -> u64 {
    let mut bytes = [0u8; 18];
    match addr {
        SocketAddr::V4(a) => bytes[..4].copy_from_slice(&a.ip().octets()),
        SocketAddr::V6(a) => bytes[..16].copy_from_slice(&a.ip().octets()),
    }
    bytes[16..].copy_from_slice(&addr.port().to_be_bytes());
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

/// Most emergency numbers a table may name, and the longest (E.164's 15
/// digits): the XDP filter recognises that many of that length in the NIC
/// path, and the appliance writes the table's numbers there.
pub const MAX_EMERGENCY_NUMBERS: usize = 16;
/// See [`MAX_EMERGENCY_NUMBERS`].
pub const MAX_EMERGENCY_DIGITS: usize = 15;

/// The numbers dialed for emergency services when a groups file names
/// none: North America, the EU and GSM, the UK, Australia, and the police,
/// fire and ambulance numbers of China and Japan. An operator replaces them
/// with `numbers = [...]` on the emergency group.
pub const DEFAULT_EMERGENCY_NUMBERS: &[&str] = &["911", "112", "999", "000", "110", "118", "119"];

/// What makes a group the emergency group (`emergency = true` in the groups
/// file): the numbers that reach it (matched whole, not as prefixes: 112 is
/// an emergency call, 1125551234 is not), whether `urn:service:sos` URIs do
/// (RFC 5031), and the group to fail over to when all of its targets are
/// down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emergency {
    /// The emergency numbers, digits only.
    pub numbers: Vec<String>,
    /// `urn:service:sos` and its sub-services route here.
    pub urns: bool,
    /// The group to use when every target of this one is down.
    pub fallback: Option<String>,
}

impl Default for Emergency {
    fn default() -> Self {
        Emergency {
            numbers: DEFAULT_EMERGENCY_NUMBERS
                .iter()
                .map(|n| n.to_string())
                .collect(),
            urns: true,
            fallback: None,
        }
    }
}

/// How a group's targets are checked (`probe` in the groups file).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Probe {
    /// A SIP OPTIONS every interval; unanswered ones take a target down.
    #[default]
    Options,
    /// No probes: only what calls show (passive health) takes a target
    /// down. For servers that take calls but do not answer OPTIONS.
    None,
}

/// What a forward group does when every one of its targets is down
/// (`when_all_down` in the groups file).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WhenAllDown {
    /// Answer 503 at once, saying no upstream is available: the caller's
    /// own failover (route advance) starts without waiting.
    #[default]
    Answer503,
    /// Send the call to a target anyway, chosen as if all were up: health
    /// evidence may be wrong, the call's own outcome is the last word.
    TryAnyway,
}

/// A route group: what to do with calls to its prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteGroup {
    /// The group's name, as the files spell it.
    pub name: String,
    /// Forward, redirect or reject.
    pub action: Action,
    /// The targets, sorted by priority (stable: equal priorities keep file order).
    pub targets: Vec<Target>,
    /// Calls per second this group admits across all workers; `None` is no cap.
    pub cps_cap: Option<u32>,
    /// What a 503 over the cap says in Retry-After.
    pub retry_after: Duration,
    /// Set on the one group emergency calls go to.
    pub emergency: Option<Emergency>,
    /// Whether its targets are probed with OPTIONS.
    pub probe: Probe,
    /// What calls meet when all of its targets are down.
    pub when_all_down: WhenAllDown,
}

impl RouteGroup {
    /// A group with no targets, no cap and a Retry-After of one second.
    pub fn new(name: impl Into<String>, action: Action) -> RouteGroup {
        RouteGroup {
            name: name.into(),
            action,
            targets: Vec::new(),
            cps_cap: None,
            retry_after: Duration::from_secs(1),
            emergency: None,
            probe: Probe::Options,
            when_all_down: WhenAllDown::Answer503,
        }
    }

    /// Makes this the emergency group (builder style).
    pub fn with_emergency(mut self, emergency: Emergency) -> RouteGroup {
        self.emergency = Some(emergency);
        self
    }

    /// Adds a target (builder style).
    pub fn with_target(mut self, target: Target) -> RouteGroup {
        self.targets.push(target);
        self
    }

    /// Sets the CPS cap (builder style).
    pub fn with_cps_cap(mut self, cap: u32) -> RouteGroup {
        self.cps_cap = Some(cap);
        self
    }
}

/// The answer of a lookup: which group, and how many digits matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch {
    /// The group of the longest matching prefix.
    pub group: GroupId,
    /// The prefix's length: the matched prefix is the number's first
    /// `prefix_len` digits (0 for the default route).
    pub prefix_len: usize,
}

/// Why [`RouteTable::build`] refused its input. Positions are indices into
/// the prefix list it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// Two entries have the same prefix.
    #[error("prefix at position {second} repeats the one at position {first}")]
    DuplicatePrefix {
        /// The earlier entry.
        first: usize,
        /// The repeat.
        second: usize,
    },
    /// An entry names a group the table does not have.
    #[error("prefix at position {position} names group {group}, but there are only {groups}")]
    UnknownGroup {
        /// The entry.
        position: usize,
        /// The group index it names.
        group: u32,
        /// How many groups there are.
        groups: usize,
    },
    /// More groups than a table can index.
    #[error("{groups} groups is more than the limit of {limit}")]
    TooManyGroups {
        /// How many were given.
        groups: usize,
        /// The limit.
        limit: u32,
    },
    /// More than one group says `emergency = true`.
    #[error(
        "groups {first} and {second} are both marked emergency; one group takes emergency calls"
    )]
    TwoEmergencyGroups {
        /// The first one.
        first: String,
        /// The second one.
        second: String,
    },
    /// The emergency group, or its fallback, cannot forward calls.
    #[error("emergency group {group}: {reason}")]
    BadEmergencyGroup {
        /// The group.
        group: String,
        /// What is wrong.
        reason: String,
    },
}

/// Where emergency calls go, resolved when the table is built.
#[derive(Debug, Clone)]
pub struct EmergencyRoute {
    /// The emergency group.
    pub group: GroupId,
    /// Its fallback, if any.
    pub fallback: Option<GroupId>,
}

/// The emergency group of `groups`, checked: at most one, a forward group
/// with targets, its fallback a forward group too.
#[allow(clippy::type_complexity)]
fn emergency_of(
    groups: &[RouteGroup],
) -> Result<(Option<EmergencyRoute>, Vec<Box<[u8]>>, bool), Vec<TableError>> {
    let marked: Vec<(usize, &RouteGroup)> = groups
        .iter()
        .enumerate()
        .filter(|(_, g)| g.emergency.is_some())
        .collect();
    let defaults = || -> Vec<Box<[u8]>> {
        DEFAULT_EMERGENCY_NUMBERS
            .iter()
            .map(|n| n.as_bytes().into())
            .collect()
    };
    let Some(&(index, group)) = marked.first() else {
        return Ok((None, defaults(), true));
    };
    if let Some((_, second)) = marked.get(1) {
        return Err(vec![TableError::TwoEmergencyGroups {
            first: group.name.clone(),
            second: second.name.clone(),
        }]);
    }
    let bad = |reason: String| {
        vec![TableError::BadEmergencyGroup {
            group: group.name.clone(),
            reason,
        }]
    };
    if group.action != Action::Forward || group.targets.is_empty() {
        return Err(bad(
            "it must be a forward group with at least one target".into()
        ));
    }
    let e = group.emergency.as_ref().expect("marked");
    let fallback = match &e.fallback {
        None => None,
        Some(name) => {
            let Some(i) = groups.iter().position(|g| &g.name == name) else {
                return Err(bad(format!("fallback {name:?} is not a group")));
            };
            if groups[i].action != Action::Forward || groups[i].targets.is_empty() || i == index {
                return Err(bad(format!(
                    "fallback {name:?} must be another forward group with targets"
                )));
            }
            Some(GroupId(i as u32))
        }
    };
    let numbers: Vec<Box<[u8]>> = e.numbers.iter().map(|n| n.as_bytes().into()).collect();
    Ok((
        Some(EmergencyRoute {
            group: GroupId(index as u32),
            fallback,
        }),
        numbers,
        e.urns,
    ))
}

/// Longest-prefix routing of dialed numbers to route groups.
///
/// Cloning makes an independent deep copy; each worker owns one. Lookups and
/// target selection never allocate.
#[derive(Debug, Clone)]
pub struct RouteTable {
    trie: PrefixTrie,
    groups: Vec<RouteGroup>,
    upstreams: Vec<SocketAddr>,
    health: HealthSettings,
    emergency: Option<EmergencyRoute>,
    /// The emergency numbers (the emergency group's, or the defaults).
    emergency_numbers: Vec<Box<[u8]>>,
    emergency_urns: bool,
}

impl RouteTable {
    /// Builds a table from groups and `(prefix, group)` entries (an empty
    /// prefix is the default route). Every duplicate and unknown group is
    /// reported. Targets are sorted by priority and get their upstream ids.
    pub fn build(
        mut groups: Vec<RouteGroup>,
        prefixes: &[(PrefixKey, GroupId)],
        health: HealthSettings,
    ) -> Result<RouteTable, Vec<TableError>> {
        if groups.len() >= trie::Match::VALUE_LIMIT as usize {
            return Err(vec![TableError::TooManyGroups {
                groups: groups.len(),
                limit: trie::Match::VALUE_LIMIT,
            }]);
        }
        let mut errors: Vec<TableError> = prefixes
            .iter()
            .enumerate()
            .filter(|(_, (_, g))| g.0 as usize >= groups.len())
            .map(|(position, (_, g))| TableError::UnknownGroup {
                position,
                group: g.0,
                groups: groups.len(),
            })
            .collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        let entries: Vec<(PrefixKey, u32)> = prefixes.iter().map(|&(k, g)| (k, g.0)).collect();
        let trie = PrefixTrie::build(&entries).map_err(|dups| {
            dups.into_iter()
                .map(|d| TableError::DuplicatePrefix {
                    first: d.first,
                    second: d.second,
                })
                .collect::<Vec<_>>()
        });
        let trie = match trie {
            Ok(t) => t,
            Err(mut dups) => {
                errors.append(&mut dups);
                return Err(errors);
            }
        };
        let mut upstreams = Vec::new();
        let mut by_addr: HashMap<SocketAddr, u32> = HashMap::new();
        for group in &mut groups {
            group.targets.sort_by_key(|t| t.priority);
            for t in &mut group.targets {
                let next = upstreams.len() as u32;
                let id = *by_addr.entry(t.addr).or_insert_with(|| {
                    upstreams.push(t.addr);
                    next
                });
                t.upstream = UpstreamId(id);
                t.seed = address_seed(t.addr);
                t.weight = t.weight.max(1);
            }
        }
        let (emergency, emergency_numbers, emergency_urns) = emergency_of(&groups)?;
        Ok(RouteTable {
            trie,
            groups,
            upstreams,
            health,
            emergency,
            emergency_numbers,
            emergency_urns,
        })
    }

    /// Where emergency calls go: the emergency group and its fallback, when
    /// the table has one (without it, emergency numbers route by prefix, but
    /// still never meet a cap).
    pub fn emergency(&self) -> Option<&EmergencyRoute> {
        self.emergency.as_ref()
    }

    /// True when `number` (digits) is an emergency number, whole.
    #[inline]
    pub fn is_emergency_number(&self, number: &[u8]) -> bool {
        !number.is_empty() && self.emergency_numbers.iter().any(|n| **n == *number)
    }

    /// True when `urn:service:sos` URIs are emergency calls here.
    pub fn emergency_urns(&self) -> bool {
        self.emergency_urns
    }

    /// The emergency numbers, digits only.
    pub fn emergency_numbers(&self) -> impl Iterator<Item = &[u8]> {
        self.emergency_numbers.iter().map(|n| &**n)
    }

    /// The group of the longest prefix of `number`, read as ASCII digits up
    /// to its end or its first non-digit byte. Never allocates.
    #[inline]
    pub fn lookup(&self, number: &[u8]) -> Option<RouteMatch> {
        self.trie.lookup(number).map(|m| RouteMatch {
            group: GroupId(m.value),
            prefix_len: m.len,
        })
    }

    /// [`RouteTable::lookup`] for a batch: `out[i]` answers `numbers[i]`
    /// (`out` must be at least as long). The memory accesses of the batch
    /// overlap (see [`PrefixTrie::lookup_batch`]); never allocates.
    pub fn lookup_batch(&self, numbers: &[&[u8]], out: &mut [Option<RouteMatch>]) {
        const CHUNK: usize = 64;
        assert!(out.len() >= numbers.len(), "out shorter than numbers");
        let mut found = [None; CHUNK];
        for (chunk, outs) in numbers.chunks(CHUNK).zip(out.chunks_mut(CHUNK)) {
            self.trie.lookup_batch(chunk, &mut found[..chunk.len()]);
            for (o, m) in outs.iter_mut().zip(&found[..chunk.len()]) {
                *o = m.map(|m| RouteMatch {
                    group: GroupId(m.value),
                    prefix_len: m.len,
                });
            }
        }
    }

    /// The group with this id. Panics on an id from another table.
    pub fn group(&self, id: GroupId) -> &RouteGroup {
        &self.groups[id.0 as usize]
    }

    /// Every group, indexed by [`GroupId`].
    pub fn groups(&self) -> &[RouteGroup] {
        &self.groups
    }

    /// The group with this name (a linear search: for tools, not packets).
    pub fn group_by_name(&self, name: &str) -> Option<GroupId> {
        self.groups
            .iter()
            .position(|g| g.name == name)
            .map(|i| GroupId(i as u32))
    }

    /// Distinct target addresses, indexed by [`UpstreamId`].
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// The upstream with this address, if the table has it.
    pub fn upstream_by_addr(&self, addr: SocketAddr) -> Option<UpstreamId> {
        self.upstreams
            .iter()
            .position(|&a| a == addr)
            .map(|i| UpstreamId(i as u32))
    }

    /// Addresses of the targets of forward groups: what the prober checks.
    pub fn forward_upstreams(&self) -> Vec<SocketAddr> {
        let mut seen = vec![false; self.upstreams.len()];
        let mut out = Vec::new();
        for g in self.groups.iter().filter(|g| g.action == Action::Forward) {
            for t in &g.targets {
                if !std::mem::replace(&mut seen[t.upstream.0 as usize], true) {
                    out.push(t.addr);
                }
            }
        }
        out
    }

    /// Addresses of the forward targets reached over UDP: what the prober
    /// checks with OPTIONS over UDP (a TCP or TLS target is taken to be up;
    /// its connection's failures show in the stream counters).
    pub fn forward_upstreams_udp(&self) -> Vec<SocketAddr> {
        let mut seen = vec![false; self.upstreams.len()];
        let mut out = Vec::new();
        for g in self.groups.iter().filter(|g| g.action == Action::Forward) {
            for t in g.targets.iter().filter(|t| t.transport == Transport::Udp) {
                if !std::mem::replace(&mut seen[t.upstream.0 as usize], true) {
                    out.push(t.addr);
                }
            }
        }
        out
    }

    /// The forward targets reached over UDP that OPTIONS probes check: those
    /// of groups with `probe = "options"`, less any target that a group with
    /// `probe = "none"` lists too (that group says the server does not
    /// answer OPTIONS; probes must not take it down there or anywhere).
    pub fn probed_upstreams(&self) -> Vec<SocketAddr> {
        let mut unprobed = vec![false; self.upstreams.len()];
        for g in self.groups.iter().filter(|g| g.probe == Probe::None) {
            for t in &g.targets {
                unprobed[t.upstream.0 as usize] = true;
            }
        }
        let mut seen = vec![false; self.upstreams.len()];
        let mut out = Vec::new();
        for g in self
            .groups
            .iter()
            .filter(|g| g.action == Action::Forward && g.probe == Probe::Options)
        {
            for t in g.targets.iter().filter(|t| t.transport == Transport::Udp) {
                let i = t.upstream.0 as usize;
                if !unprobed[i] && !std::mem::replace(&mut seen[i], true) {
                    out.push(t.addr);
                }
            }
        }
        out
    }

    /// How targets are probed (interval, misses before down, answers before up).
    pub fn health_settings(&self) -> HealthSettings {
        self.health
    }

    /// Prefixes in the table (the default route counts as one).
    pub fn prefix_count(&self) -> usize {
        self.trie.len()
    }

    /// Targets over all groups.
    pub fn target_count(&self) -> usize {
        self.groups.iter().map(|g| g.targets.len()).sum()
    }

    /// The longest prefix, in digits.
    pub fn longest_prefix(&self) -> usize {
        self.trie.longest_prefix()
    }

    /// Heap bytes of the lookup structure of this copy (what each worker
    /// holds for the prefixes; groups and targets add little).
    pub fn heap_bytes(&self) -> usize {
        self.trie.heap_bytes()
            + self.groups.capacity() * std::mem::size_of::<RouteGroup>()
            + self
                .groups
                .iter()
                .map(|g| g.name.capacity() + g.targets.capacity() * std::mem::size_of::<Target>())
                .sum::<usize>()
            + self.upstreams.capacity() * std::mem::size_of::<SocketAddr>()
    }

    /// True when the prefix trie sits on huge-page-advised memory (tables
    /// of more than about 2 MiB; see [`route::huge`]).
    pub fn on_huge_pages(&self) -> bool {
        self.trie.on_huge_pages()
    }

    /// A copy whose trie stays on small pages whatever its size, to measure
    /// what huge pages change (`benches/route_lookup.rs`); workers never use
    /// it.
    pub fn clone_on_small_pages(&self) -> RouteTable {
        RouteTable {
            trie: self.trie.clone_on_small_pages(),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: &str) -> PrefixKey {
        PrefixKey::from_digits(p.as_bytes()).unwrap()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn lookup_names_the_group_and_prefix_length() {
        let groups = vec![
            RouteGroup::new("de", Action::Forward).with_target(Target::new(
                addr("198.18.0.1:5060"),
                1,
                1,
            )),
            RouteGroup::new("blocked", Action::Reject { code: 403 }),
        ];
        let t = RouteTable::build(
            groups,
            &[(key("49"), GroupId(0)), (key("49900"), GroupId(1))],
            HealthSettings::default(),
        )
        .unwrap();
        let m = t.lookup(b"4930123").unwrap();
        assert_eq!((t.group(m.group).name.as_str(), m.prefix_len), ("de", 2));
        let m = t.lookup(b"499001").unwrap();
        assert_eq!(t.group(m.group).action, Action::Reject { code: 403 });
        assert_eq!(t.lookup(b"33"), None);
    }

    #[test]
    fn a_shared_address_is_one_upstream() {
        let a = addr("198.18.0.1:5060");
        let b = addr("[2001:db8::1]:5070");
        let groups = vec![
            RouteGroup::new("x", Action::Forward)
                .with_target(Target::new(a, 2, 1))
                .with_target(Target::new(b, 1, 1)),
            RouteGroup::new("y", Action::Forward).with_target(Target::new(a, 1, 1)),
        ];
        let t = RouteTable::build(
            groups,
            &[(key("1"), GroupId(0)), (key("2"), GroupId(1))],
            HealthSettings::default(),
        )
        .unwrap();
        assert_eq!(t.upstreams().len(), 2);
        assert_eq!(t.group(GroupId(0)).targets[0].addr, b, "sorted by priority");
        assert_eq!(
            t.group(GroupId(0)).targets[1].upstream(),
            t.group(GroupId(1)).targets[0].upstream()
        );
        assert_eq!(t.forward_upstreams().len(), 2);
    }

    #[test]
    fn unknown_groups_and_duplicates_are_refused() {
        let groups = vec![RouteGroup::new("x", Action::Reject { code: 404 })];
        let err = RouteTable::build(
            groups.clone(),
            &[(key("1"), GroupId(3))],
            HealthSettings::default(),
        )
        .unwrap_err();
        assert!(matches!(
            err[0],
            TableError::UnknownGroup {
                position: 0,
                group: 3,
                ..
            }
        ));
        let err = RouteTable::build(
            groups,
            &[(key("1"), GroupId(0)), (key("1"), GroupId(0))],
            HealthSettings::default(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            vec![TableError::DuplicatePrefix {
                first: 0,
                second: 1
            }]
        );
    }

    #[test]
    fn batch_lookup_answers_like_single_lookups() {
        let table = crate::synth::prefixes(9, 500, 3);
        let entries: Vec<_> = table
            .iter()
            .map(|(p, g)| (key(p), GroupId(*g as u32)))
            .collect();
        let groups = (0..3)
            .map(|g| RouteGroup::new(format!("g{g}"), Action::Reject { code: 404 }))
            .collect();
        let t = RouteTable::build(groups, &entries, HealthSettings::default()).unwrap();
        let numbers = crate::synth::numbers(10, 300, &table, 50);
        let refs: Vec<&[u8]> = numbers.iter().map(|n| n.as_bytes()).collect();
        let mut out = vec![None; refs.len()];
        t.lookup_batch(&refs, &mut out);
        for (n, got) in refs.iter().zip(&out) {
            assert_eq!(*got, t.lookup(n));
        }
        assert!(out.iter().filter(|m| m.is_some()).count() > 100);
    }
}
