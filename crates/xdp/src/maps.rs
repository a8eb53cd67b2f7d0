//! Reading and writing the filter's maps: configuration, lists, bans,
//! counters, top sources. The same code serves the process that loaded the
//! program ([`super::Filter`]) and a second process that opened its pins
//! ([`super::Pinned`]).
//!
//! Bans come in two kinds, kept in different maps so that neither can
//! crowd out or shorten the other: an operator's ([`FilterMaps::ban`]: any
//! network, LPM tries `bans_v4`/`bans_v6`, written only from here) and
//! automatic ones ([`FilterMaps::auto_ban`]: one source, an IPv4 address or
//! an IPv6 /64, in the hash `auto_bans`, which the program also writes when
//! a verified source matches a scanner signature).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData, MapError, PerCpuArray, XskMap};
use serde::Serialize;

use super::abi;
use super::batch;
use super::config::{Cidr, FilterConfig};
use super::stats::{FilterStats, TopSourceEntry};
use super::FilterError;

/// Names of the program's maps, as the object and the pin directory call them.
pub const MAP_NAMES: [&str; 17] = [
    "config",
    "info",
    "signatures",
    "counters",
    "overload",
    "allow_v4",
    "allow_v6",
    "block_v4",
    "block_v6",
    "bans_v4",
    "bans_v6",
    "auto_bans",
    "buckets",
    "syn_buckets",
    "top_sources",
    "verified",
    "xsks",
];

/// Why a source is banned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BanReason {
    /// An operator (`dce-edge ban`).
    Manual,
    /// The XDP program saw a scanner signature.
    Scanner,
    /// The appliance saw a storm of 404s from the source.
    NotFound,
    /// The appliance saw a storm of 401/403s (failed authentication).
    AuthFailure,
    /// The appliance saw the source walk through extensions.
    ExtensionScan,
    /// The appliance saw a flood from the source.
    Flood,
}

impl BanReason {
    /// Every reason, in map order.
    pub const ALL: [BanReason; 6] = [
        BanReason::Manual,
        BanReason::Scanner,
        BanReason::NotFound,
        BanReason::AuthFailure,
        BanReason::ExtensionScan,
        BanReason::Flood,
    ];

    /// The value stored in the map.
    pub fn code(self) -> u32 {
        match self {
            BanReason::Manual => abi::ban_reason::MANUAL,
            BanReason::Scanner => abi::ban_reason::SCANNER,
            BanReason::NotFound => abi::ban_reason::NOT_FOUND,
            BanReason::AuthFailure => abi::ban_reason::AUTH_FAILURE,
            BanReason::ExtensionScan => abi::ban_reason::EXTENSION_SCAN,
            BanReason::Flood => abi::ban_reason::FLOOD,
        }
    }

    /// The reason for a map value; unknown codes read as manual.
    pub fn from_code(code: u32) -> BanReason {
        BanReason::ALL
            .into_iter()
            .find(|r| r.code() == code)
            .unwrap_or(BanReason::Manual)
    }

    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            BanReason::Manual => "manual",
            BanReason::Scanner => "scanner",
            BanReason::NotFound => "not_found",
            BanReason::AuthFailure => "auth_failure",
            BanReason::ExtensionScan => "extension_scan",
            BanReason::Flood => "flood",
        }
    }
}

impl fmt::Display for BanReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BanReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        BanReason::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = BanReason::ALL.iter().map(|r| r.name()).collect();
                format!("ban reason {s:?}: expected one of {}", names.join(", "))
            })
    }
}

/// Where a ban comes from, and so which map holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BanOrigin {
    /// An operator's ban ([`FilterMaps::ban`], `dce-edge ban`): any
    /// network, in the `bans_v4`/`bans_v6` tries, which nothing automatic
    /// writes.
    Operator,
    /// An automatic ban of one source (an IPv4 address or an IPv6 /64), in
    /// `auto_bans`: the program's, of a verified scanner, or the
    /// appliance's, of an abuser the proxy saw ([`FilterMaps::auto_ban`]).
    Automatic,
}

impl BanOrigin {
    /// "operator" or "automatic", as the CLI and JSON show it.
    pub fn name(self) -> &'static str {
        match self {
            BanOrigin::Operator => "operator",
            BanOrigin::Automatic => "automatic",
        }
    }
}

impl fmt::Display for BanOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What [`FilterMaps::auto_ban`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoBan {
    /// The source is banned until now + the time to live: a new ban, or
    /// one that would have ended sooner and was lengthened.
    Banned,
    /// The source was already banned automatically for at least as long;
    /// that ban was kept as it was (an automatic ban is never shortened).
    Kept {
        /// Time left of the ban kept; `None` when it never expires.
        left: Option<Duration>,
    },
    /// `auto_bans` is full ([`abi::AUTO_BAN_ENTRIES`] sources): the source
    /// is not banned. Operator bans are unaffected; expired entries are
    /// freed by [`FilterMaps::sweep_expired_bans`].
    Full,
}

/// What [`FilterMaps::unban`] lifted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Unbanned {
    /// The operator ban of exactly that network.
    pub operator: bool,
    /// The automatic ban of that source.
    pub automatic: bool,
}

impl Unbanned {
    /// True when anything was lifted.
    pub fn any(self) -> bool {
        self.operator || self.automatic
    }
}

/// One ban as `bans()` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BanEntry {
    /// The banned network (a host is /32 or /128; automatic bans are one
    /// IPv4 address or one IPv6 /64).
    pub network: Cidr,
    /// An operator's ban or an automatic one (which map holds it).
    pub origin: BanOrigin,
    /// Why.
    pub reason: BanReason,
    /// The operator's note, if any.
    pub note: String,
    /// Time left; `None` for a ban without expiry.
    #[serde(rename = "secs_left", serialize_with = "secs_opt")]
    pub left: Option<Duration>,
    /// Time since the ban was made.
    #[serde(rename = "secs_ago", serialize_with = "secs")]
    pub age: Duration,
    /// True when the ban has expired and no longer applies (not yet swept).
    pub expired: bool,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

fn secs_opt<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs()),
        None => s.serialize_none(),
    }
}

/// One verified source as `verified()` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedEntry {
    /// The source: an IPv4 host, or the /64 of an IPv6 address.
    pub source: Cidr,
    /// Time until the verification lapses (zero once expired).
    #[serde(rename = "secs_left", serialize_with = "secs")]
    pub left: Duration,
    /// Time since the latest verification.
    #[serde(rename = "secs_ago", serialize_with = "secs")]
    pub age: Duration,
    /// True when it has lapsed and no longer applies (not yet swept).
    pub expired: bool,
}

/// Longest note a ban keeps (bytes).
pub const BAN_NOTE_MAX: usize = 32;

/// Reads the monotonic clock the XDP program's `bpf_ktime_get_ns` uses.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively
    // borrowed `ts`; CLOCK_MONOTONIC always exists on Linux.
    #[allow(unsafe_code)]
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Handles to every map of one loaded filter.
#[derive(Debug)]
pub struct FilterMaps {
    config: Map,
    info: Map,
    signatures: Map,
    counters: Map,
    overload: Map,
    allow_v4: Map,
    allow_v6: Map,
    block_v4: Map,
    block_v6: Map,
    bans_v4: Map,
    bans_v6: Map,
    auto_bans: Map,
    buckets: Map,
    syn_buckets: Map,
    top_sources: Map,
    verified: Map,
    emergency_numbers: Map,
    emergency_sources: Map,
    xsks: Map,
    capture: Map,
    capture_ring: Map,
}

fn batch_err(what: &'static str) -> impl Fn(std::io::Error) -> FilterError {
    move |e| FilterError::Map {
        what,
        error: format!("BPF_MAP_LOOKUP_BATCH: {e}"),
    }
}

pub(crate) fn map_err(what: &'static str) -> impl Fn(MapError) -> FilterError {
    move |e| match &e {
        // A preallocated map or trie with no free entry.
        MapError::SyscallError(s)
            if matches!(s.io_error.raw_os_error(), Some(libc::ENOSPC | libc::E2BIG)) =>
        {
            FilterError::Full { what }
        }
        _ => FilterError::Map {
            what,
            error: e.to_string(),
        },
    }
}

fn key_v4(c: &Cidr) -> Option<Key<[u8; 4]>> {
    match c.addr {
        IpAddr::V4(a) => Some(Key::new(c.prefix as u32, a.octets())),
        IpAddr::V6(_) => None,
    }
}

fn key_v6(c: &Cidr) -> Option<Key<[u8; 16]>> {
    match c.addr {
        IpAddr::V6(a) => Some(Key::new(c.prefix as u32, a.octets())),
        IpAddr::V4(_) => None,
    }
}

/// Emergency numbers the program can hold: at most
/// [`abi::MAX_EMERGENCY_NUMBERS`], each 1 to [`abi::EMERGENCY_NUMBER_MAX`]
/// digits.
pub fn check_emergency_numbers(numbers: &[String]) -> Result<(), String> {
    if numbers.len() > abi::MAX_EMERGENCY_NUMBERS {
        return Err(format!(
            "{} emergency numbers; the filter holds at most {}",
            numbers.len(),
            abi::MAX_EMERGENCY_NUMBERS
        ));
    }
    for n in numbers {
        if n.is_empty()
            || n.len() > abi::EMERGENCY_NUMBER_MAX
            || !n.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(format!(
                "emergency number {n:?} must be 1 to {} digits",
                abi::EMERGENCY_NUMBER_MAX
            ));
        }
    }
    Ok(())
}

/// The source a `dce_source` key stands for, as a network.
pub fn source_network(s: &abi::Source) -> Cidr {
    let v6 = Ipv6Addr::from(s.addr);
    match v6.to_ipv4_mapped() {
        Some(v4) => Cidr::host(IpAddr::V4(v4)),
        None => Cidr {
            addr: IpAddr::V6(v6),
            prefix: 64,
        },
    }
}

/// The `dce_source` key of an address (IPv4-mapped, or the IPv6 /64). An
/// IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as a dual-stack socket
/// reports an IPv4 peer) is the IPv4 source it stands for.
pub fn source_key(addr: IpAddr) -> abi::Source {
    match addr.to_canonical() {
        IpAddr::V4(a) => abi::Source {
            addr: a.to_ipv6_mapped().octets(),
        },
        IpAddr::V6(a) => {
            let mut addr = a.octets();
            addr[8..].fill(0);
            abi::Source { addr }
        }
    }
}

/// The `auto_bans` key of a network that names one source: an IPv4 host,
/// or an IPv6 /64 or /128 (whose /64 it is, or, IPv4-mapped, whose IPv4
/// source).
fn auto_ban_source(network: Cidr) -> Option<abi::Source> {
    match (network.addr, network.prefix) {
        (IpAddr::V4(_), 32) | (IpAddr::V6(_), 64 | 128) => Some(source_key(network.addr)),
        _ => None,
    }
}

fn cidr(addr: IpAddr, prefix: u32) -> Cidr {
    Cidr {
        addr,
        prefix: prefix as u8,
    }
}

fn ban_entry(network: Cidr, origin: BanOrigin, v: &abi::Ban, now: u64) -> BanEntry {
    let note_len = v.note.iter().position(|&b| b == 0).unwrap_or(v.note.len());
    BanEntry {
        network,
        origin,
        reason: BanReason::from_code(v.reason),
        note: String::from_utf8_lossy(&v.note[..note_len]).into_owned(),
        left: (v.expires_ns != u64::MAX)
            .then(|| Duration::from_nanos(v.expires_ns.saturating_sub(now))),
        age: Duration::from_nanos(now.saturating_sub(v.banned_ns)),
        expired: v.expires_ns <= now,
    }
}

/// What a reload ([`FilterMaps::reconfigure`]) changed in the lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListChanges {
    /// Networks the new file trusts that the old did not.
    pub allow_added: Vec<Cidr>,
    /// Networks the old file trusted that the new does not.
    pub allow_removed: Vec<Cidr>,
    /// Networks the new file blocks that the old did not.
    pub block_added: Vec<Cidr>,
    /// Networks the old file blocked that the new does not.
    pub block_removed: Vec<Cidr>,
}

impl FilterMaps {
    /// Takes the maps out of a loaded object.
    pub(crate) fn from_ebpf(ebpf: &mut aya::Ebpf) -> Result<FilterMaps, FilterError> {
        let mut take = |name: &'static str| {
            ebpf.take_map(name).ok_or(FilterError::Map {
                what: name,
                error: "the embedded object has no such map".into(),
            })
        };
        Ok(FilterMaps {
            config: take("config")?,
            info: take("info")?,
            signatures: take("signatures")?,
            counters: take("counters")?,
            overload: take("overload")?,
            allow_v4: take("allow_v4")?,
            allow_v6: take("allow_v6")?,
            block_v4: take("block_v4")?,
            block_v6: take("block_v6")?,
            bans_v4: take("bans_v4")?,
            bans_v6: take("bans_v6")?,
            auto_bans: take("auto_bans")?,
            buckets: take("buckets")?,
            syn_buckets: take("syn_buckets")?,
            top_sources: take("top_sources")?,
            verified: take("verified")?,
            emergency_numbers: take("emergency_numbers")?,
            emergency_sources: take("emergency_sources")?,
            xsks: take("xsks")?,
            capture: take("capture")?,
            capture_ring: take("capture_ring")?,
        })
    }

    /// Opens the maps pinned in `dir`.
    pub(crate) fn from_pins(dir: &std::path::Path) -> Result<FilterMaps, FilterError> {
        let open = |name: &'static str| {
            let path = dir.join(name);
            MapData::from_pin(&path)
                .and_then(Map::from_map_data)
                .map_err(|e| FilterError::Pins {
                    dir: dir.to_path_buf(),
                    reason: format!("cannot open pinned map {name}: {e}"),
                })
        };
        Ok(FilterMaps {
            config: open("config")?,
            info: open("info")?,
            signatures: open("signatures")?,
            counters: open("counters")?,
            overload: open("overload")?,
            allow_v4: open("allow_v4")?,
            allow_v6: open("allow_v6")?,
            block_v4: open("block_v4")?,
            block_v6: open("block_v6")?,
            bans_v4: open("bans_v4")?,
            bans_v6: open("bans_v6")?,
            auto_bans: open("auto_bans")?,
            buckets: open("buckets")?,
            syn_buckets: open("syn_buckets")?,
            top_sources: open("top_sources")?,
            verified: open("verified")?,
            emergency_numbers: open("emergency_numbers")?,
            emergency_sources: open("emergency_sources")?,
            xsks: open("xsks")?,
            capture: open("capture")?,
            capture_ring: open("capture_ring")?,
        })
    }

    /// Every map with its name, for pinning.
    pub fn named(&self) -> [(&'static str, &Map); 21] {
        [
            ("config", &self.config),
            ("info", &self.info),
            ("signatures", &self.signatures),
            ("counters", &self.counters),
            ("overload", &self.overload),
            ("allow_v4", &self.allow_v4),
            ("allow_v6", &self.allow_v6),
            ("block_v4", &self.block_v4),
            ("block_v6", &self.block_v6),
            ("bans_v4", &self.bans_v4),
            ("bans_v6", &self.bans_v6),
            ("auto_bans", &self.auto_bans),
            ("buckets", &self.buckets),
            ("syn_buckets", &self.syn_buckets),
            ("top_sources", &self.top_sources),
            ("verified", &self.verified),
            ("emergency_numbers", &self.emergency_numbers),
            ("emergency_sources", &self.emergency_sources),
            ("xsks", &self.xsks),
            ("capture", &self.capture),
            ("capture_ring", &self.capture_ring),
        ]
    }

    /// Writes a whole configuration: the `config` entry, the signatures, and
    /// the allow/block lists (entries no longer listed are removed). A
    /// configuration that does not validate changes nothing.
    pub fn configure(&mut self, cfg: &FilterConfig) -> Result<(), FilterError> {
        cfg.validate().map_err(FilterError::Config)?;
        let mut sigs: Array<&mut MapData, abi::Signature> =
            Array::try_from(&mut self.signatures).map_err(map_err("signatures"))?;
        let list = cfg.signatures();
        for i in 0..abi::MAX_SIGNATURES {
            let s = list.get(i).copied().unwrap_or_default();
            sigs.set(i as u32, s, 0).map_err(map_err("signatures"))?;
        }
        replace_list(
            &mut self.allow_v4,
            &mut self.allow_v6,
            &cfg.allowlist,
            "allowlist",
        )?;
        replace_list(
            &mut self.block_v4,
            &mut self.block_v6,
            &cfg.blocklist,
            "blocklist",
        )?;
        self.set_emergency_numbers(&cfg.emergency_numbers)?;
        let mut config: Array<&mut MapData, abi::Config> =
            Array::try_from(&mut self.config).map_err(map_err("config"))?;
        config.set(0, cfg.to_abi(), 0).map_err(map_err("config"))?;
        Ok(())
    }

    /// Applies a new configuration to the running program without
    /// detaching it (same program, same counters, bans, verifications and
    /// budgets' state): a reload. `running` is the configuration the maps
    /// hold now. The allow and block lists change by the difference between
    /// the two files' lists, so entries added at run time (`dce-edge allow`,
    /// the appliance's upstreams) stay; entries in `keep_allowed` are never
    /// removed. New list entries go in first and old ones out last, so no
    /// source is unprotected or untrusted for a moment it should not be. A
    /// configuration that does not validate, or list entries that do not
    /// fit (the tries are full), change nothing.
    pub fn reconfigure(
        &mut self,
        running: &FilterConfig,
        new: &FilterConfig,
        keep_allowed: &[Cidr],
    ) -> Result<ListChanges, FilterError> {
        new.validate().map_err(FilterError::Config)?;
        let added = |old: &[Cidr], new: &[Cidr]| -> Vec<Cidr> {
            new.iter().filter(|c| !old.contains(c)).copied().collect()
        };
        let changes = ListChanges {
            allow_added: added(&running.allowlist, &new.allowlist),
            allow_removed: added(&new.allowlist, &running.allowlist)
                .into_iter()
                .filter(|c| !keep_allowed.contains(c))
                .collect(),
            block_added: added(&running.blocklist, &new.blocklist),
            block_removed: added(&new.blocklist, &running.blocklist),
        };
        // Additions, undone if one does not fit.
        let had_allow = list_entries(&self.allow_v4, &self.allow_v6)?;
        let had_block = list_entries(&self.block_v4, &self.block_v6)?;
        let mut inserted: Vec<(bool, Cidr)> = Vec::new();
        let mut failure = None;
        for (allow, c) in changes
            .allow_added
            .iter()
            .map(|c| (true, *c))
            .chain(changes.block_added.iter().map(|c| (false, *c)))
        {
            let r = if allow {
                list_insert(&mut self.allow_v4, &mut self.allow_v6, &c, "allowlist")
            } else {
                list_insert(&mut self.block_v4, &mut self.block_v6, &c, "blocklist")
            };
            match r {
                Ok(()) => inserted.push((allow, c)),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failure {
            for (allow, c) in inserted {
                let _ = if allow {
                    (!had_allow.contains(&c)).then(|| {
                        list_remove(&mut self.allow_v4, &mut self.allow_v6, &c, "allowlist")
                    })
                } else {
                    (!had_block.contains(&c)).then(|| {
                        list_remove(&mut self.block_v4, &mut self.block_v6, &c, "blocklist")
                    })
                };
            }
            return Err(e);
        }
        let mut sigs: Array<&mut MapData, abi::Signature> =
            Array::try_from(&mut self.signatures).map_err(map_err("signatures"))?;
        let list = new.signatures();
        for i in 0..abi::MAX_SIGNATURES {
            let s = list.get(i).copied().unwrap_or_default();
            sigs.set(i as u32, s, 0).map_err(map_err("signatures"))?;
        }
        self.set_emergency_numbers(&new.emergency_numbers)?;
        self.set_config_entry(new.to_abi())?;
        for c in &changes.allow_removed {
            list_remove(&mut self.allow_v4, &mut self.allow_v6, c, "allowlist")?;
        }
        for c in &changes.block_removed {
            list_remove(&mut self.block_v4, &mut self.block_v6, c, "blocklist")?;
        }
        Ok(changes)
    }

    /// Replaces the emergency numbers the program recognises (digits,
    /// matched whole; at most [`abi::MAX_EMERGENCY_NUMBERS`] of at most
    /// [`abi::EMERGENCY_NUMBER_MAX`] digits). The appliance writes the route
    /// table's, at start and on every reload.
    pub fn set_emergency_numbers(&mut self, numbers: &[String]) -> Result<(), FilterError> {
        check_emergency_numbers(numbers).map_err(FilterError::Config)?;
        let mut m: Array<&mut MapData, abi::EmergencyNumber> =
            Array::try_from(&mut self.emergency_numbers).map_err(map_err("emergency_numbers"))?;
        for i in 0..abi::MAX_EMERGENCY_NUMBERS {
            let mut e = abi::EmergencyNumber::default();
            if let Some(n) = numbers.get(i) {
                e.len = n.len() as u8;
                e.digits[..n.len()].copy_from_slice(n.as_bytes());
            }
            m.set(i as u32, e, 0)
                .map_err(map_err("emergency_numbers"))?;
        }
        Ok(())
    }

    /// Forgets that the source of `addr` is in an emergency call; false
    /// when it was not.
    pub fn forget_emergency_call(&mut self, addr: IpAddr) -> Result<bool, FilterError> {
        let mut m: BpfHashMap<&mut MapData, abi::Source, abi::EmergencySource> =
            BpfHashMap::try_from(&mut self.emergency_sources)
                .map_err(map_err("emergency_sources"))?;
        removed(m.remove(&source_key(addr)), "emergency_sources")
    }

    /// Marks the source of `addr` as in an emergency call for `ttl`: its
    /// packets (the call's ACK, BYE, CANCEL, whose Request-URI is no longer
    /// the emergency number) are treated as the call's, within the
    /// emergency budget. The appliance does it for every emergency call it
    /// forwards.
    pub fn note_emergency_call(&mut self, addr: IpAddr, ttl: Duration) -> Result<(), FilterError> {
        let value = abi::EmergencySource {
            expires_ns: monotonic_ns().saturating_add(ttl.as_nanos().min(u64::MAX as u128) as u64),
        };
        let mut m: BpfHashMap<&mut MapData, abi::Source, abi::EmergencySource> =
            BpfHashMap::try_from(&mut self.emergency_sources)
                .map_err(map_err("emergency_sources"))?;
        m.insert(source_key(addr), value, 0)
            .map_err(map_err("emergency_sources"))
    }

    /// The `config` entry as the program sees it.
    pub fn config_entry(&self) -> Result<abi::Config, FilterError> {
        let config: Array<&MapData, abi::Config> =
            Array::try_from(&self.config).map_err(map_err("config"))?;
        config.get(&0, 0).map_err(map_err("config"))
    }

    /// Writes the `config` entry directly (tests, live tuning).
    pub fn set_config_entry(&mut self, c: abi::Config) -> Result<(), FilterError> {
        let mut config: Array<&mut MapData, abi::Config> =
            Array::try_from(&mut self.config).map_err(map_err("config"))?;
        config.set(0, c, 0).map_err(map_err("config"))
    }

    /// The `info` entry (attach mode, owner).
    pub fn info(&self) -> Result<abi::Info, FilterError> {
        let info: Array<&MapData, abi::Info> =
            Array::try_from(&self.info).map_err(map_err("info"))?;
        info.get(&0, 0).map_err(map_err("info"))
    }

    /// Writes the `info` map (the loader does, once attached; tests write
    /// stale values to check recovery).
    pub fn set_info(&mut self, value: abi::Info) -> Result<(), FilterError> {
        let mut info: Array<&mut MapData, abi::Info> =
            Array::try_from(&mut self.info).map_err(map_err("info"))?;
        info.set(0, value, 0).map_err(map_err("info"))
    }

    /// Records the control socket of the appliance that owns the program,
    /// so that another process (`dce-edge ban --iface X`) finds it.
    pub fn record_control_socket(&mut self, path: &std::path::Path) -> Result<(), FilterError> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = path.as_os_str().as_bytes();
        let mut info = self.info()?;
        if bytes.len() >= info.control_socket.len() || bytes.contains(&0) {
            return Err(FilterError::Config(format!(
                "control socket path {} is longer than a socket path may be ({} bytes)",
                path.display(),
                info.control_socket.len() - 1
            )));
        }
        info.control_socket = [0; 108];
        info.control_socket[..bytes.len()].copy_from_slice(bytes);
        self.set_info(info)
    }

    /// The control socket the owning appliance recorded, if any.
    pub fn control_socket(&self) -> Result<Option<std::path::PathBuf>, FilterError> {
        use std::os::unix::ffi::OsStrExt;
        let info = self.info()?;
        let len = info
            .control_socket
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(info.control_socket.len());
        Ok((len > 0).then(|| {
            std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&info.control_socket[..len]))
        }))
    }

    /// An operator's ban: bans a network for `ttl` (`None`: until
    /// unbanned), replacing any operator ban of exactly that network. `note`
    /// is kept with the ban (at most [`BAN_NOTE_MAX`] bytes). A ban of an
    /// allowlisted source is stored but has no effect while the allowlist
    /// holds it. Automatic bans live in another map and never touch this
    /// one; for those, see [`FilterMaps::auto_ban`].
    pub fn ban(
        &mut self,
        network: Cidr,
        ttl: Option<Duration>,
        reason: BanReason,
        note: &str,
    ) -> Result<(), FilterError> {
        if note.len() > BAN_NOTE_MAX {
            return Err(FilterError::Config(format!(
                "ban note {note:?} is {} bytes; the limit is {BAN_NOTE_MAX}",
                note.len()
            )));
        }
        let now = monotonic_ns();
        let mut value = abi::Ban {
            expires_ns: match ttl {
                Some(t) => now.saturating_add(t.as_nanos().min(u64::MAX as u128) as u64),
                None => u64::MAX,
            },
            banned_ns: now,
            reason: reason.code(),
            prefixlen: network.prefix as u32,
            note: [0; 32],
        };
        value.note[..note.len()].copy_from_slice(note.as_bytes());
        if let Some(k) = key_v4(&network) {
            let mut t: LpmTrie<&mut MapData, [u8; 4], abi::Ban> =
                LpmTrie::try_from(&mut self.bans_v4).map_err(map_err("bans_v4"))?;
            t.insert(&k, value, 0).map_err(map_err("bans_v4"))
        } else if let Some(k) = key_v6(&network) {
            let mut t: LpmTrie<&mut MapData, [u8; 16], abi::Ban> =
                LpmTrie::try_from(&mut self.bans_v6).map_err(map_err("bans_v6"))?;
            t.insert(&k, value, 0).map_err(map_err("bans_v6"))
        } else {
            unreachable!("a Cidr is IPv4 or IPv6")
        }
    }

    /// Lifts the operator ban of exactly `network`, and the automatic ban of
    /// its source when `network` names one source: an IPv4 host (/32), or an
    /// IPv6 /64 or /128 (an automatic IPv6 ban covers the whole /64, so
    /// unbanning one address of it lifts the /64). An operator ban of a
    /// wider network is lifted only by naming that network; automatic bans
    /// inside it stay. Says which kinds were lifted.
    pub fn unban(&mut self, network: Cidr) -> Result<Unbanned, FilterError> {
        let operator = self.remove_operator_ban(network)?;
        let automatic = match auto_ban_source(network) {
            Some(key) => {
                let mut m: BpfHashMap<&mut MapData, abi::Source, abi::Ban> =
                    BpfHashMap::try_from(&mut self.auto_bans).map_err(map_err("auto_bans"))?;
                removed(m.remove(&key), "auto_bans")?
            }
            None => false,
        };
        Ok(Unbanned {
            operator,
            automatic,
        })
    }

    /// Removes the operator ban of exactly `network`; false when absent.
    fn remove_operator_ban(&mut self, network: Cidr) -> Result<bool, FilterError> {
        let r = if let Some(k) = key_v4(&network) {
            let mut t: LpmTrie<&mut MapData, [u8; 4], abi::Ban> =
                LpmTrie::try_from(&mut self.bans_v4).map_err(map_err("bans_v4"))?;
            t.remove(&k)
        } else if let Some(k) = key_v6(&network) {
            let mut t: LpmTrie<&mut MapData, [u8; 16], abi::Ban> =
                LpmTrie::try_from(&mut self.bans_v6).map_err(map_err("bans_v6"))?;
            t.remove(&k)
        } else {
            unreachable!("a Cidr is IPv4 or IPv6")
        };
        removed(r, "bans")
    }

    /// An automatic ban: bans the source of `addr` (the address for IPv4,
    /// its /64 for IPv6) for `ttl` in `auto_bans`, the map the program's own
    /// scanner bans go to. For the appliance's bans of abusers the proxy saw
    /// (`reason` says why; [`BanReason::Manual`] is refused: an operator's
    /// ban is [`FilterMaps::ban`]).
    ///
    /// Never shortens a ban: when the source is already banned
    /// automatically for at least as long, that ban is kept
    /// ([`AutoBan::Kept`]). When the map is full, nothing is banned and the
    /// answer is [`AutoBan::Full`], not an error: the caller counts it
    /// (operator bans, in their own map, still fit). Errors are only a zero
    /// `ttl`, a manual reason, or a map the kernel refuses to write.
    pub fn auto_ban(
        &mut self,
        addr: IpAddr,
        ttl: Duration,
        reason: BanReason,
    ) -> Result<AutoBan, FilterError> {
        if ttl.is_zero() {
            return Err(FilterError::Config(format!(
                "banning {addr} for 0 s would change nothing; the time to live must be positive"
            )));
        }
        if reason == BanReason::Manual {
            return Err(FilterError::Config(format!(
                "an automatic ban of {addr} cannot have reason manual: \
                 an operator's ban is FilterMaps::ban"
            )));
        }
        let addr = addr.to_canonical();
        let now = monotonic_ns();
        let expires_ns = now.saturating_add(ttl.as_nanos().min(u64::MAX as u128) as u64);
        let key = source_key(addr);
        let mut m: BpfHashMap<&mut MapData, abi::Source, abi::Ban> =
            BpfHashMap::try_from(&mut self.auto_bans).map_err(map_err("auto_bans"))?;
        match m.get(&key, 0) {
            Ok(old) if old.expires_ns > now && old.expires_ns >= expires_ns => {
                return Ok(AutoBan::Kept {
                    left: (old.expires_ns != u64::MAX)
                        .then(|| Duration::from_nanos(old.expires_ns - now)),
                });
            }
            Ok(_) | Err(MapError::KeyNotFound) => {}
            Err(e) => return Err(map_err("auto_bans")(e)),
        }
        let value = abi::Ban {
            expires_ns,
            banned_ns: now,
            reason: reason.code(),
            prefixlen: if addr.is_ipv4() { 32 } else { 64 },
            note: [0; BAN_NOTE_MAX],
        };
        match m.insert(key, value, 0) {
            Ok(()) => Ok(AutoBan::Banned),
            // A preallocated hash that is full refuses a new key with E2BIG
            // (replacing an existing key always fits).
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::E2BIG) => {
                Ok(AutoBan::Full)
            }
            Err(e) => Err(map_err("auto_bans")(e)),
        }
    }

    /// Adds a network to the allowlist (it then skips bans, the blocklist
    /// and the rate limits).
    pub fn allow(&mut self, network: Cidr) -> Result<(), FilterError> {
        list_insert(
            &mut self.allow_v4,
            &mut self.allow_v6,
            &network,
            "allowlist",
        )
    }

    /// Removes exactly `network` from the allowlist; false when absent.
    pub fn disallow(&mut self, network: Cidr) -> Result<bool, FilterError> {
        list_remove(
            &mut self.allow_v4,
            &mut self.allow_v6,
            &network,
            "allowlist",
        )
    }

    /// Adds a network to the blocklist.
    pub fn block(&mut self, network: Cidr) -> Result<(), FilterError> {
        list_insert(
            &mut self.block_v4,
            &mut self.block_v6,
            &network,
            "blocklist",
        )
    }

    /// The allowlist as the program holds it.
    pub fn allowlist(&self) -> Result<Vec<Cidr>, FilterError> {
        list_entries(&self.allow_v4, &self.allow_v6)
    }

    /// The blocklist as the program holds it.
    pub fn blocklist(&self) -> Result<Vec<Cidr>, FilterError> {
        list_entries(&self.block_v4, &self.block_v6)
    }

    /// Every ban, operators' and automatic ones, soonest to expire first,
    /// with origin, reason and time left; expired ones too until swept.
    /// Reads every entry of the three ban maps: two system calls per
    /// operator ban, batches of 4,096 automatic ones.
    pub fn bans(&self) -> Result<Vec<BanEntry>, FilterError> {
        let now = monotonic_ns();
        let mut out: Vec<BanEntry> = self
            .operator_bans_raw()?
            .into_iter()
            .map(|(network, v)| ban_entry(network, BanOrigin::Operator, &v, now))
            .chain(
                self.auto_bans_raw()?
                    .into_iter()
                    .map(|(k, v)| ban_entry(source_network(&k), BanOrigin::Automatic, &v, now)),
            )
            .collect();
        out.sort_by_key(|b| {
            (
                b.left.unwrap_or(Duration::MAX),
                b.network.addr,
                b.network.prefix,
                b.origin == BanOrigin::Automatic,
            )
        });
        Ok(out)
    }

    /// Every entry of the operator ban tries.
    fn operator_bans_raw(&self) -> Result<Vec<(Cidr, abi::Ban)>, FilterError> {
        let mut out = Vec::new();
        let t4: LpmTrie<&MapData, [u8; 4], abi::Ban> =
            LpmTrie::try_from(&self.bans_v4).map_err(map_err("bans_v4"))?;
        for item in t4.iter() {
            let (k, v) = item.map_err(map_err("bans_v4"))?;
            let addr = IpAddr::V4(Ipv4Addr::from(k.data()));
            out.push((cidr(addr, k.prefix_len()), v));
        }
        let t6: LpmTrie<&MapData, [u8; 16], abi::Ban> =
            LpmTrie::try_from(&self.bans_v6).map_err(map_err("bans_v6"))?;
        for item in t6.iter() {
            let (k, v) = item.map_err(map_err("bans_v6"))?;
            let addr = IpAddr::V6(Ipv6Addr::from(k.data()));
            out.push((cidr(addr, k.prefix_len()), v));
        }
        Ok(out)
    }

    /// The `auto_bans` map's data, its key and value sizes checked.
    fn auto_bans_data(&self) -> Result<&MapData, FilterError> {
        BpfHashMap::<&MapData, abi::Source, abi::Ban>::try_from(&self.auto_bans)
            .map_err(map_err("auto_bans"))?;
        match &self.auto_bans {
            Map::HashMap(data) => Ok(data),
            _ => Err(FilterError::Map {
                what: "auto_bans",
                error: "not a hash map".into(),
            }),
        }
    }

    /// Every entry of `auto_bans`, in batches of 4,096.
    fn auto_bans_raw(&self) -> Result<Vec<(abi::Source, abi::Ban)>, FilterError> {
        batch::hash_entries(self.auto_bans_data()?).map_err(batch_err("auto_bans"))
    }

    /// How many operator bans the tries hold (expired ones included until
    /// swept), against [`abi::LPM_ENTRIES`] per address family. The tries
    /// have no batch reading: one system call per ban, 3 to 4 us each on
    /// the project's 2-core build machine (debug build, under load): cheap
    /// for the bans operators make, about a quarter of a second at 65,536.
    pub fn operator_ban_count(&self) -> Result<usize, FilterError> {
        let (v4, v6) = self.operator_ban_counts()?;
        Ok(v4 + v6)
    }

    /// [`FilterMaps::operator_ban_count`] per address family: (IPv4, IPv6).
    pub fn operator_ban_counts(&self) -> Result<(usize, usize), FilterError> {
        let t4: LpmTrie<&MapData, [u8; 4], abi::Ban> =
            LpmTrie::try_from(&self.bans_v4).map_err(map_err("bans_v4"))?;
        let t6: LpmTrie<&MapData, [u8; 16], abi::Ban> =
            LpmTrie::try_from(&self.bans_v6).map_err(map_err("bans_v6"))?;
        Ok((
            t4.keys().filter(Result::is_ok).count(),
            t6.keys().filter(Result::is_ok).count(),
        ))
    }

    /// Whether an operator ban of exactly `network` is in the tries
    /// (expired or not): one lookup.
    pub fn has_operator_ban(&self, network: Cidr) -> Result<bool, FilterError> {
        // The longest match no longer than the key's prefix is the ban of
        // exactly that network when there is one; its value says its prefix.
        let found = if let Some(k) = key_v4(&network) {
            let t: LpmTrie<&MapData, [u8; 4], abi::Ban> =
                LpmTrie::try_from(&self.bans_v4).map_err(map_err("bans_v4"))?;
            t.get(&k, 0)
        } else if let Some(k) = key_v6(&network) {
            let t: LpmTrie<&MapData, [u8; 16], abi::Ban> =
                LpmTrie::try_from(&self.bans_v6).map_err(map_err("bans_v6"))?;
            t.get(&k, 0)
        } else {
            unreachable!("a Cidr is IPv4 or IPv6")
        };
        match found {
            Ok(v) => Ok(v.prefixlen == network.prefix as u32),
            Err(MapError::KeyNotFound) => Ok(false),
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
                Ok(false)
            }
            Err(e) => Err(map_err("bans")(e)),
        }
    }

    /// How many sources `auto_bans` holds (expired ones included until
    /// swept), against [`abi::AUTO_BAN_ENTRIES`]: what a "ban map near
    /// full" alert reads. Reads the map in batches of 4,096 (at most 16
    /// system calls): 40 to 60 ms for a full map on the project's 2-core
    /// build machine (debug build, under load), less the fewer it holds;
    /// the ignored test `ban_map_reading_cost` (tests/it/cost.rs) measures it.
    pub fn auto_ban_count(&self) -> Result<usize, FilterError> {
        batch::hash_len(
            self.auto_bans_data()?,
            size_of::<abi::Source>(),
            size_of::<abi::Ban>(),
        )
        .map_err(batch_err("auto_bans"))
    }

    /// Removes expired bans of both kinds (they already no longer apply);
    /// returns how many. An automatic ban is read again just before its
    /// removal, so one the program renewed after the listing stays.
    pub fn sweep_expired_bans(&mut self) -> Result<usize, FilterError> {
        let now = monotonic_ns();
        let mut swept = 0;
        let expired: Vec<Cidr> = self
            .operator_bans_raw()?
            .into_iter()
            .filter(|(_, v)| v.expires_ns <= now)
            .map(|(n, _)| n)
            .collect();
        for n in expired {
            if self.remove_operator_ban(n)? {
                swept += 1;
            }
        }
        let expired: Vec<abi::Source> = self
            .auto_bans_raw()?
            .into_iter()
            .filter(|(_, v)| v.expires_ns <= now)
            .map(|(k, _)| k)
            .collect();
        let mut m: BpfHashMap<&mut MapData, abi::Source, abi::Ban> =
            BpfHashMap::try_from(&mut self.auto_bans).map_err(map_err("auto_bans"))?;
        for k in &expired {
            let still_expired = match m.get(k, 0) {
                Ok(v) => v.expires_ns <= monotonic_ns(),
                Err(_) => false,
            };
            if still_expired && removed(m.remove(k), "auto_bans")? {
                swept += 1;
            }
        }
        Ok(swept)
    }

    /// Counters summed over every CPU, indexed by `abi::slot`.
    pub fn counters(&self) -> Result<[u64; abi::slot::SLOTS], FilterError> {
        let c: PerCpuArray<&MapData, abi::Counters> =
            PerCpuArray::try_from(&self.counters).map_err(map_err("counters"))?;
        let per_cpu = c.get(&0, 0).map_err(map_err("counters"))?;
        let mut sum = [0u64; abi::slot::SLOTS];
        for cpu in per_cpu.iter() {
            for (s, v) in sum.iter_mut().zip(cpu.slot.iter()) {
                *s = s.wrapping_add(*v);
            }
        }
        Ok(sum)
    }

    /// Totals per reason, passes, redirects and the attach mode.
    pub fn read_stats(&self) -> Result<FilterStats, FilterError> {
        Ok(FilterStats::from_counters(&self.counters()?, &self.info()?))
    }

    /// The sources with the most drops, most first, at most `limit`.
    pub fn top_sources(&self, limit: usize) -> Result<Vec<TopSourceEntry>, FilterError> {
        let m: BpfHashMap<&MapData, abi::Source, abi::TopSource> =
            BpfHashMap::try_from(&self.top_sources).map_err(map_err("top_sources"))?;
        let now = monotonic_ns();
        let mut out = Vec::new();
        for item in m.iter() {
            // An entry evicted between listing and reading is simply gone.
            let Ok((k, v)) = item else { continue };
            out.push(TopSourceEntry::new(source_network(&k), &v, now));
        }
        out.sort_by(|a, b| {
            b.drops
                .cmp(&a.drops)
                .then(a.source.to_string().cmp(&b.source.to_string()))
        });
        out.truncate(limit);
        Ok(out)
    }

    /// Marks the source of `addr` (the address for IPv4, its /64 for IPv6)
    /// as verified for `ttl`: until then the program spares it the per-CPU
    /// budget for unverified sources (`unverified_cap_pps`). It still goes
    /// through the blocklist, bans, its own rate limits, the overload cap
    /// and the scanner checks. Verifying again moves the expiry to now +
    /// `ttl`. When the map is full, the least recently used entry makes room.
    pub fn verify(&mut self, addr: IpAddr, ttl: Duration) -> Result<(), FilterError> {
        if ttl.is_zero() {
            return Err(FilterError::Config(format!(
                "verifying {addr} for 0 s would change nothing; the time to live must be positive"
            )));
        }
        let now = monotonic_ns();
        let value = abi::Verified {
            expires_ns: now.saturating_add(ttl.as_nanos().min(u64::MAX as u128) as u64),
            verified_ns: now,
        };
        let mut m: BpfHashMap<&mut MapData, abi::Source, abi::Verified> =
            BpfHashMap::try_from(&mut self.verified).map_err(map_err("verified"))?;
        m.insert(source_key(addr), value, 0)
            .map_err(map_err("verified"))
    }

    /// Forgets the verification of the source of `addr`; false when there
    /// was none.
    pub fn unverify(&mut self, addr: IpAddr) -> Result<bool, FilterError> {
        let mut m: BpfHashMap<&mut MapData, abi::Source, abi::Verified> =
            BpfHashMap::try_from(&mut self.verified).map_err(map_err("verified"))?;
        removed(m.remove(&source_key(addr)), "verified")
    }

    /// Every entry of the `verified` map, in batches of 4,096.
    fn verified_raw(&self) -> Result<Vec<(abi::Source, abi::Verified)>, FilterError> {
        // Checks the key and value sizes against the map's.
        BpfHashMap::<&MapData, abi::Source, abi::Verified>::try_from(&self.verified)
            .map_err(map_err("verified"))?;
        let Map::LruHashMap(data) = &self.verified else {
            return Err(FilterError::Map {
                what: "verified",
                error: "not an LRU hash map".into(),
            });
        };
        batch::hash_entries(data).map_err(batch_err("verified"))
    }

    /// Every verified source, expired ones included (until swept), soonest
    /// to lapse first. Reads the whole map, in batches of 4,096.
    pub fn verified(&self) -> Result<Vec<VerifiedEntry>, FilterError> {
        let now = monotonic_ns();
        let mut out: Vec<VerifiedEntry> = self
            .verified_raw()?
            .into_iter()
            .map(|(k, v)| VerifiedEntry {
                source: source_network(&k),
                left: Duration::from_nanos(v.expires_ns.saturating_sub(now)),
                age: Duration::from_nanos(now.saturating_sub(v.verified_ns)),
                expired: v.expires_ns <= now,
            })
            .collect();
        out.sort_by_key(|e| (e.left, e.source.addr));
        Ok(out)
    }

    /// How many sources are verified now (unexpired entries). Reads the
    /// whole map like [`FilterMaps::verified`], without building the list.
    pub fn verified_count(&self) -> Result<usize, FilterError> {
        let now = monotonic_ns();
        Ok(self
            .verified_raw()?
            .iter()
            .filter(|(_, v)| v.expires_ns > now)
            .count())
    }

    /// Removes lapsed verifications (they already no longer apply);
    /// returns how many. Call it from the thread that verifies: an entry
    /// verified again between the listing and the removal would be lost.
    pub fn sweep_expired_verified(&mut self) -> Result<usize, FilterError> {
        let now = monotonic_ns();
        let expired: Vec<abi::Source> = self
            .verified_raw()?
            .into_iter()
            .filter(|(_, v)| v.expires_ns <= now)
            .map(|(k, _)| k)
            .collect();
        let mut m: BpfHashMap<&mut MapData, abi::Source, abi::Verified> =
            BpfHashMap::try_from(&mut self.verified).map_err(map_err("verified"))?;
        let mut swept = 0;
        for k in &expired {
            if removed(m.remove(k), "verified")? {
                swept += 1;
            }
        }
        Ok(swept)
    }

    /// The XSKMAP (indexed by RX queue) where AF_XDP sockets go, borrowed.
    pub fn xsk_map(&mut self) -> Result<XskMap<&mut MapData>, FilterError> {
        XskMap::try_from(&mut self.xsks).map_err(map_err("xsks"))
    }

    /// The `capture` map (one `struct dce_capture`), for [`crate::capture`].
    pub(crate) fn capture_map(&mut self) -> &mut Map {
        &mut self.capture
    }

    /// The `capture` map, read only.
    pub(crate) fn capture_map_ref(&self) -> &Map {
        &self.capture
    }

    /// The `capture_ring` ring buffer, for [`crate::capture`].
    pub(crate) fn capture_ring_map(&self) -> &Map {
        &self.capture_ring
    }

    /// An owned handle on the XSKMAP (a duplicate of its descriptor), for a
    /// dataplane thread that inserts its sockets itself.
    pub fn xsk_map_owned(&self) -> Result<XskMap<MapData>, FilterError> {
        use std::os::fd::AsFd;
        let Map::XskMap(data) = &self.xsks else {
            return Err(FilterError::Map {
                what: "xsks",
                error: "not an XSKMAP".into(),
            });
        };
        let fd = data
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| FilterError::Map {
                what: "xsks",
                error: e.to_string(),
            })?;
        let data = MapData::from_fd(fd).map_err(map_err("xsks"))?;
        XskMap::try_from(Map::XskMap(data)).map_err(map_err("xsks"))
    }

    /// The rate-limit state of a source (tests).
    pub fn bucket(&self, addr: IpAddr) -> Option<abi::Bucket> {
        let m: BpfHashMap<&MapData, abi::Source, abi::Bucket> =
            BpfHashMap::try_from(&self.buckets).ok()?;
        m.get(&source_key(addr), 0).ok()
    }

    /// Writes a verification verbatim (tests: an expiry in the past).
    pub fn put_verified_raw(&mut self, addr: IpAddr, value: abi::Verified) {
        let mut m: BpfHashMap<&mut MapData, abi::Source, abi::Verified> =
            BpfHashMap::try_from(&mut self.verified).unwrap();
        m.insert(source_key(addr), value, 0).unwrap();
    }

    /// Every CPU's budgets (tests).
    pub fn cpu_budgets(&self) -> Vec<abi::Overload> {
        let m: PerCpuArray<&MapData, abi::Overload> =
            PerCpuArray::try_from(&self.overload).unwrap();
        m.get(&0, 0).unwrap().iter().copied().collect()
    }

    /// Rewrites every CPU's budgets with `f` (tests: time passing).
    pub fn update_cpu_budgets(&mut self, f: impl Fn(abi::Overload) -> abi::Overload) {
        let values: Vec<abi::Overload> = self.cpu_budgets().into_iter().map(f).collect();
        let mut m: PerCpuArray<&mut MapData, abi::Overload> =
            PerCpuArray::try_from(&mut self.overload).unwrap();
        m.set(0, aya::maps::PerCpuValues::try_from(values).unwrap(), 0)
            .unwrap();
    }

    /// Writes an automatic ban verbatim for the source of `addr` (tests: an
    /// expiry in the past, a full map).
    pub fn put_auto_ban_raw(&mut self, addr: IpAddr, value: abi::Ban) -> Result<(), FilterError> {
        let mut m: BpfHashMap<&mut MapData, abi::Source, abi::Ban> =
            BpfHashMap::try_from(&mut self.auto_bans).map_err(map_err("auto_bans"))?;
        m.insert(source_key(addr), value, 0)
            .map_err(map_err("auto_bans"))
    }

    /// Writes an operator ban entry verbatim (tests: an expiry in the past).
    pub fn put_ban_raw(&mut self, network: Cidr, value: abi::Ban) {
        if let Some(k) = key_v4(&network) {
            let mut t: LpmTrie<&mut MapData, [u8; 4], abi::Ban> =
                LpmTrie::try_from(&mut self.bans_v4).unwrap();
            t.insert(&k, value, 0).unwrap();
        } else if let Some(k) = key_v6(&network) {
            let mut t: LpmTrie<&mut MapData, [u8; 16], abi::Ban> =
                LpmTrie::try_from(&mut self.bans_v6).unwrap();
            t.insert(&k, value, 0).unwrap();
        }
    }
}

fn removed(r: Result<(), MapError>, what: &'static str) -> Result<bool, FilterError> {
    match r {
        Ok(()) => Ok(true),
        Err(MapError::KeyNotFound) => Ok(false),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
            Ok(false)
        }
        Err(e) => Err(map_err(what)(e)),
    }
}

fn list_insert(
    v4: &mut Map,
    v6: &mut Map,
    network: &Cidr,
    what: &'static str,
) -> Result<(), FilterError> {
    let present = abi::ListEntry { present: 1 };
    if let Some(k) = key_v4(network) {
        let mut t: LpmTrie<&mut MapData, [u8; 4], abi::ListEntry> =
            LpmTrie::try_from(v4).map_err(map_err(what))?;
        t.insert(&k, present, 0).map_err(map_err(what))
    } else if let Some(k) = key_v6(network) {
        let mut t: LpmTrie<&mut MapData, [u8; 16], abi::ListEntry> =
            LpmTrie::try_from(v6).map_err(map_err(what))?;
        t.insert(&k, present, 0).map_err(map_err(what))
    } else {
        unreachable!("a Cidr is IPv4 or IPv6")
    }
}

fn list_remove(
    v4: &mut Map,
    v6: &mut Map,
    network: &Cidr,
    what: &'static str,
) -> Result<bool, FilterError> {
    let r = if let Some(k) = key_v4(network) {
        let mut t: LpmTrie<&mut MapData, [u8; 4], abi::ListEntry> =
            LpmTrie::try_from(v4).map_err(map_err(what))?;
        t.remove(&k)
    } else if let Some(k) = key_v6(network) {
        let mut t: LpmTrie<&mut MapData, [u8; 16], abi::ListEntry> =
            LpmTrie::try_from(v6).map_err(map_err(what))?;
        t.remove(&k)
    } else {
        unreachable!("a Cidr is IPv4 or IPv6")
    };
    removed(r, what)
}

fn list_entries(v4: &Map, v6: &Map) -> Result<Vec<Cidr>, FilterError> {
    let mut out = Vec::new();
    let t4: LpmTrie<&MapData, [u8; 4], abi::ListEntry> =
        LpmTrie::try_from(v4).map_err(map_err("list"))?;
    for k in t4.keys() {
        let k = k.map_err(map_err("list"))?;
        out.push(Cidr {
            addr: IpAddr::V4(Ipv4Addr::from(k.data())),
            prefix: k.prefix_len() as u8,
        });
    }
    let t6: LpmTrie<&MapData, [u8; 16], abi::ListEntry> =
        LpmTrie::try_from(v6).map_err(map_err("list"))?;
    for k in t6.keys() {
        let k = k.map_err(map_err("list"))?;
        out.push(Cidr {
            addr: IpAddr::V6(Ipv6Addr::from(k.data())),
            prefix: k.prefix_len() as u8,
        });
    }
    Ok(out)
}

/// Makes a list trie pair hold exactly `wanted`.
fn replace_list(
    v4: &mut Map,
    v6: &mut Map,
    wanted: &[Cidr],
    what: &'static str,
) -> Result<(), FilterError> {
    for old in list_entries(v4, v6)? {
        if !wanted.contains(&old) {
            list_remove(v4, v6, &old, what)?;
        }
    }
    for n in wanted {
        list_insert(v4, v6, n, what)?;
    }
    Ok(())
}
