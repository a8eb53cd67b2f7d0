//! A differential test of the XDP program against a small model of its
//! verdict order, written here in Rust from the documented rules (parse
//! result, allowlist, blocklist, operator and automatic bans, fragment
//! policy, SIP start, verified, unverified budget, per-source rate limit,
//! overload cap, scanner signature, redirect/pass; for TCP to the SIP TCP
//! ports: header checks, lists, bans, the SYN budgets). Random frames (SIP
//! requests and responses with random methods, headers and User-Agents,
//! scanner signatures among them; garbage; other ports; IPv4 and IPv6; VLAN
//! tags; IPv4 options and IPv6 extension headers; fragments; truncation;
//! length lies; padding) meet random map contents (allow, block, operator
//! bans, automatic bans, verified sources over a small address pool) and
//! run through BPF_PROG_TEST_RUN. For every frame the program's action, its
//! verdict slot and its events must be exactly the model's.
//!
//! The outcome never depends on timing: every budget is unlimited, spent
//! from the start, or a burst of a few with an hour between refills (so
//! "admitted" means "fewer than the burst charged so far"), expiries are an
//! hour away or already past, and the thread stays on one CPU (the
//! budgets are per CPU).
//!
//! The seed is printed; `DCE_DIFF_SEED=<n>` replays a run and
//! `DCE_DIFF_SCENARIOS=<n>` changes how many scenarios (of
//! `FRAMES_PER_SCENARIO` frames each, on fresh maps) it runs.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use lab::privilege::privileged_or_skip;
use wire::build::{Ipv6Ext, UdpFrameBuilder, TPID_8021AD, TPID_8021Q};
use xdp::abi::{self, slot};
use xdp::test_run::{self, action_name, XDP_DROP, XDP_PASS};
use xdp::{BanReason, Cidr, Filter, FilterConfig, FragmentPolicy, VerdictMode};

use super::support::OnOneCpu;

/// The seed when `DCE_DIFF_SEED` is not set.
const DEFAULT_SEED: u64 = 0x17_d1ff;
/// Scenarios when `DCE_DIFF_SCENARIOS` is not set.
const DEFAULT_SCENARIOS: usize = 60;
/// Frames run against one scenario's maps.
const FRAMES_PER_SCENARIO: usize = 80;
/// An hour in nanoseconds: no budget refills and nothing expires in it.
const HOUR_NS: u64 = 3_600_000_000_000;
/// The SIP ports the filter watches here.
const SIP_PORTS: [u16; 2] = [5060, 5080];
/// The SIP TCP ports the filter watches here (5080 is UDP only).
const TCP_PORTS: [u16; 2] = [5060, 5061];

/// The scanner signatures of a custom set (some scenarios use it instead of
/// the defaults): User-Agents, then From display names.
const CUSTOM_USER_AGENTS: [&str; 3] = ["EvilBot", "friendly-scanner", "a-b_c"];
const CUSTOM_FROM_NAMES: [&str; 2] = ["sipvicious", "Mr. X"];

// ---------------------------------------------------------------- budgets

/// A budget whose outcome does not depend on timing.
#[derive(Debug, Clone, Copy)]
enum Budget {
    /// Spent from the start: admits nothing.
    Spent,
    /// Admits this many, then one an hour.
    Burst(u64),
    /// Admits everything.
    Unlimited,
}

impl Budget {
    fn random(rng: &mut fastrand::Rng, may_be_spent: bool) -> Budget {
        match rng.u8(0..4) {
            0 if may_be_spent => Budget::Spent,
            0 | 1 => Budget::Burst(rng.u64(1..=4)),
            _ => Budget::Unlimited,
        }
    }

    /// The GCRA form the program reads.
    fn rate(self) -> abi::Rate {
        match self {
            Budget::Spent => abi::Rate {
                interval_ns: HOUR_NS,
                tolerance_ns: 0,
            },
            Budget::Burst(n) => abi::Rate {
                interval_ns: HOUR_NS,
                tolerance_ns: (n - 1) * HOUR_NS,
            },
            Budget::Unlimited => abi::Rate {
                interval_ns: 1,
                tolerance_ns: 1 << 62,
            },
        }
    }

    /// The per-CPU GCRA state to start from: far in the future when spent.
    fn start_tat(self, now: u64) -> u64 {
        match self {
            Budget::Spent => now + 100 * HOUR_NS,
            _ => 0,
        }
    }

    /// Whether a packet is admitted after `charged` were.
    fn admits(self, charged: u64) -> bool {
        match self {
            Budget::Spent => false,
            Budget::Burst(n) => charged < n,
            Budget::Unlimited => true,
        }
    }
}

// ------------------------------------------------------------- addresses

/// A network as the model holds it: the family, the address as an integer
/// (IPv4 in the low 32 bits) and the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Net {
    v6: bool,
    bits: u128,
    prefix: u8,
}

fn width(v6: bool) -> u8 {
    if v6 {
        128
    } else {
        32
    }
}

fn ip_bits(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(a) => (false, u32::from(a) as u128),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

/// `bits` with everything past the first `prefix` of `width` bits cleared.
fn masked(bits: u128, prefix: u8, width: u8) -> u128 {
    let host = (width - prefix) as u32;
    let low = if host >= 128 {
        u128::MAX
    } else {
        (1u128 << host) - 1
    };
    bits & !low
}

impl Net {
    fn of(ip: IpAddr, prefix: u8) -> Net {
        let (v6, bits) = ip_bits(ip);
        Net {
            v6,
            bits: masked(bits, prefix, width(v6)),
            prefix,
        }
    }

    /// Whether `ip` is inside it when looked up with a key of `bound` bits.
    fn covers(&self, ip: IpAddr, bound: u8) -> bool {
        let (v6, bits) = ip_bits(ip);
        v6 == self.v6 && self.prefix <= bound && masked(bits, self.prefix, width(v6)) == self.bits
    }

    fn cidr(&self) -> Cidr {
        let addr = if self.v6 {
            IpAddr::V6(Ipv6Addr::from(self.bits))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.bits as u32))
        };
        Cidr::new(addr, self.prefix).expect("host bits are clear")
    }
}

/// The source key the program uses (`struct dce_source`): the IPv4
/// address, or the IPv6 /64.
fn source_of(ip: IpAddr) -> Net {
    match ip {
        IpAddr::V4(_) => Net::of(ip, 32),
        IpAddr::V6(_) => Net::of(ip, 64),
    }
}

/// Longest-prefix match among `nets` for `ip`, bounded by `bound` bits (an
/// LPM trie lookup with a key of that prefix length).
fn longest<'a>(nets: impl Iterator<Item = &'a Net>, ip: IpAddr, bound: u8) -> Option<Net> {
    nets.filter(|n| n.covers(ip, bound))
        .max_by_key(|n| n.prefix)
        .copied()
}

/// When an entry expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Past,
    Hour,
    Never,
}

impl Expiry {
    fn applies(self) -> bool {
        self != Expiry::Past
    }
}

// ------------------------------------------------------------ the model

/// What the program made of a frame: action, verdict slot, events (each
/// once per occurrence), and how the model got there.
#[derive(Debug)]
struct Outcome {
    action: u32,
    slot: usize,
    events: Vec<usize>,
    trace: Vec<String>,
}

/// A frame as the parser sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parsed {
    /// Not UDP to a SIP port: passes untouched.
    Other,
    /// To a SIP port, but the lengths do not add up (or the IPv6 chain is too deep).
    Malformed,
    /// To a SIP port: the payload's bounds in the frame.
    Sip {
        first_fragment: bool,
        off: usize,
        end: usize,
    },
    /// TCP to a SIP TCP port, its header sound; `syn`: SYN set, ACK clear.
    Tcp { syn: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Invite = 0,
    Register = 1,
    Other = 2,
}

/// The per-source budget class of an emergency call's packets.
const CLASS_EMERGENCY: usize = 3;

/// The program's state and configuration, as the model tracks it.
struct Model {
    user_agents: Vec<String>,
    from_names: Vec<String>,
    fragments_pass: bool,
    auto_ban: bool,
    allow: Vec<Net>,
    block: Vec<Net>,
    bans: HashMap<Net, Expiry>,
    auto_bans: HashMap<Net, Expiry>,
    verified: HashMap<Net, Expiry>,
    unverified: Budget,
    unverified_charged: u64,
    auto_ban_budget: Budget,
    auto_ban_charged: u64,
    /// Per class (Class, then CLASS_EMERGENCY).
    rates: [Budget; 4],
    /// Admitted packets per (source, class).
    buckets: HashMap<(Net, usize), u64>,
    overload_cap_zero: bool,
    emergency_numbers: Vec<String>,
    emergency_urns: bool,
    emergency_keep_bans: bool,
    emergency_sources: HashMap<Net, Expiry>,
    emergency_budget: Budget,
    emergency_charged: u64,
    /// Per source: SYNs to the SIP TCP ports.
    syn_per_source: Budget,
    /// SYNs each source had admitted.
    syn_buckets: HashMap<Net, u64>,
    /// Per CPU: SYNs of sources neither allowlisted nor verified.
    syn_cpu: Budget,
    syn_cpu_charged: u64,
}

impl Model {
    /// The verdict of one frame, updating the state the program would.
    fn run(&mut self, case: &Case) -> Outcome {
        let mut o = Outcome {
            action: XDP_PASS,
            slot: slot::PASSED,
            events: Vec::new(),
            trace: Vec::new(),
        };
        let f = &case.frame;
        let (first_fragment, off, end) = match case.parsed {
            Parsed::Other => return o.verdict(XDP_PASS, slot::PASSED_OTHER, "not ours"),
            Parsed::Malformed => return o.verdict(XDP_DROP, slot::DROP_MALFORMED, "malformed"),
            Parsed::Tcp { syn } => return self.run_tcp(case.src, syn, o),
            Parsed::Sip {
                first_fragment,
                off,
                end,
            } => (first_fragment, off, end),
        };
        let src = case.src;
        let max = width(src.is_ipv6());
        let allowlisted = longest(self.allow.iter(), src, max).is_some();
        // None: not yet known whether the packet is an emergency call's.
        let mut emergency = None;
        // An emergency call's packet that reached past a ban or the blocklist.
        let mut bypassed = false;
        if allowlisted {
            o.event(slot::EV_ALLOWLISTED, "allowlisted");
        } else {
            let blocked = longest(self.block.iter(), src, max).is_some();
            let banned = !blocked && self.banned(src, max, &mut o);
            if blocked || banned {
                if !self.emergency_keep_bans && !first_fragment && sip_class(f, off, end).is_some()
                {
                    emergency = Some(self.is_emergency(f, off, end, src));
                }
                if emergency != Some(true) {
                    return if blocked {
                        o.verdict(XDP_DROP, slot::DROP_BLOCKLIST, "blocklisted")
                    } else {
                        o.verdict(XDP_DROP, slot::DROP_BANNED, "banned")
                    };
                }
                bypassed = true;
            }
        }
        if first_fragment {
            if !self.fragments_pass {
                return o.verdict(XDP_DROP, slot::DROP_FRAGMENT, "first fragment");
            }
            o.event(slot::EV_FRAGMENT_PASSED, "fragment passed by policy");
            return o.verdict(XDP_PASS, slot::PASSED, "fragment");
        }
        let Some(class) = sip_class(f, off, end) else {
            return o.verdict(XDP_DROP, slot::DROP_NOT_SIP, "not SIP");
        };
        // Over its emergency budgets, an emergency call's packet takes the
        // ordinary path, whose budget drops are then counted as its own.
        let mut emergency_spent = false;
        if !allowlisted {
            let emergency = emergency.unwrap_or_else(|| self.is_emergency(f, off, end, src));
            if emergency {
                if !self.emergency_budget.admits(self.emergency_charged) {
                    o.trace.push("emergency budget spent".into());
                    emergency_spent = true;
                } else {
                    let admitted = self
                        .buckets
                        .entry((source_of(src), CLASS_EMERGENCY))
                        .or_insert(0);
                    if self.rates[CLASS_EMERGENCY].admits(*admitted) {
                        *admitted += 1;
                    } else {
                        o.trace.push("source's emergency budget spent".into());
                        emergency_spent = true;
                    }
                }
                if !emergency_spent {
                    self.emergency_charged += 1;
                    o.event(slot::EV_EMERGENCY_PASSED, "emergency call");
                    return o.verdict(XDP_PASS, slot::PASSED, "emergency passed");
                }
                if bypassed {
                    return o.verdict(
                        XDP_DROP,
                        slot::DROP_EMERGENCY_OVER_BUDGET,
                        "emergency over budget, through a ban",
                    );
                }
            }
        }
        let budget_drop = |reason: usize| {
            if emergency_spent {
                slot::DROP_EMERGENCY_OVER_BUDGET
            } else {
                reason
            }
        };
        let verified = !allowlisted
            && self
                .verified
                .get(&source_of(src))
                .is_some_and(|e| e.applies());
        if verified {
            o.event(slot::EV_VERIFIED, "verified");
        }
        let trusted = allowlisted || verified;
        if !trusted && !self.unverified.admits(self.unverified_charged) {
            return o.verdict(
                XDP_DROP,
                budget_drop(slot::DROP_UNVERIFIED),
                "unverified budget spent",
            );
        }
        if !allowlisted {
            let admitted = self
                .buckets
                .entry((source_of(src), class as usize))
                .or_insert(0);
            if !self.rates[class as usize].admits(*admitted) {
                return o.verdict(
                    XDP_DROP,
                    budget_drop(slot::DROP_RATE_LIMIT),
                    "over its budget",
                );
            }
            *admitted += 1;
        }
        if self.overload_cap_zero {
            return o.verdict(XDP_DROP, budget_drop(slot::DROP_OVERLOAD), "overload cap 0");
        }
        if scanner(f, off, end, &self.user_agents, &self.from_names) {
            if !trusted {
                self.unverified_charged += 1;
                if self.auto_ban {
                    o.event(
                        slot::EV_SCANNER_UNPROVEN,
                        "unverified scanner: nobody banned",
                    );
                }
            } else if verified && self.auto_ban {
                if self.auto_ban_budget.admits(self.auto_ban_charged) {
                    self.auto_ban_charged += 1;
                    self.auto_bans.insert(source_of(src), Expiry::Hour);
                    o.event(slot::EV_AUTO_BAN, "verified scanner banned");
                } else {
                    o.event(slot::EV_AUTO_BAN_LIMITED, "auto-ban budget spent");
                }
            }
            return o.verdict(XDP_DROP, slot::DROP_SCANNER, "scanner");
        }
        if !trusted {
            self.unverified_charged += 1;
        }
        // Redirect mode without a bound AF_XDP socket passes too.
        o.verdict(XDP_PASS, slot::PASSED, "passed")
    }
}

impl Model {
    /// TCP to a SIP TCP port: the lists and the bans for every segment, the
    /// SYN budgets (this CPU's unless verified, then the source's) for a SYN.
    fn run_tcp(&mut self, src: IpAddr, syn: bool, mut o: Outcome) -> Outcome {
        let max = width(src.is_ipv6());
        if longest(self.allow.iter(), src, max).is_some() {
            return o.verdict(XDP_PASS, slot::PASSED_STREAM, "TCP, allowlisted");
        }
        if longest(self.block.iter(), src, max).is_some() {
            return o.verdict(XDP_DROP, slot::DROP_BLOCKLIST, "TCP, blocklisted");
        }
        if self.banned(src, max, &mut o) {
            return o.verdict(XDP_DROP, slot::DROP_BANNED, "TCP, banned");
        }
        if !syn {
            return o.verdict(XDP_PASS, slot::PASSED_STREAM, "TCP, not a SYN");
        }
        let verified = self
            .verified
            .get(&source_of(src))
            .is_some_and(|e| e.applies());
        if !verified && !self.syn_cpu.admits(self.syn_cpu_charged) {
            return o.verdict(XDP_DROP, slot::DROP_SYN_OVERLOAD, "CPU's SYN budget spent");
        }
        let admitted = self.syn_buckets.entry(source_of(src)).or_insert(0);
        if !self.syn_per_source.admits(*admitted) {
            return o.verdict(
                XDP_DROP,
                slot::DROP_SYN_RATE_LIMIT,
                "source's SYN budget spent",
            );
        }
        *admitted += 1;
        if !verified {
            self.syn_cpu_charged += 1;
        }
        o.verdict(XDP_PASS, slot::PASSED_STREAM, "SYN admitted")
    }

    /// An unexpired ban of `src`: the operator tries (an expired entry
    /// sends the lookup on with a shorter prefix, four lookups at most),
    /// then the automatic ban of its source.
    fn banned(&self, src: IpAddr, max: u8, o: &mut Outcome) -> bool {
        let mut bound = max;
        for _ in 0..4 {
            let Some(net) = longest(self.bans.keys(), src, bound) else {
                break;
            };
            if self.bans[&net].applies() {
                o.trace.push("operator ban".into());
                return true;
            }
            o.event(slot::EV_BAN_EXPIRED, "expired operator ban");
            if net.prefix == 0 {
                break;
            }
            bound = net.prefix - 1;
        }
        match self.auto_bans.get(&source_of(src)) {
            Some(e) if e.applies() => {
                o.trace.push("automatic ban".into());
                true
            }
            Some(_) => {
                o.event(slot::EV_BAN_EXPIRED, "expired automatic ban");
                false
            }
            None => false,
        }
    }

    /// The program's emergency test: the Request-URI, or the source in an
    /// emergency call.
    fn is_emergency(&self, f: &[u8], off: usize, end: usize, src: IpAddr) -> bool {
        emergency_uri(f, off, end, &self.emergency_numbers, self.emergency_urns)
            || self
                .emergency_sources
                .get(&source_of(src))
                .is_some_and(|e| e.applies())
    }
}

/// `dce_emergency_uri`, byte for byte: the first 64 bytes of the message
/// (zero past its end), the method up to a space at 1..=16, then
/// urn:service:sos or a sip/sips/tel number of up to 15 digits (and visual
/// separators, 24 bytes in all) ended by '@', ';', ' ' or '>'.
fn emergency_uri(f: &[u8], off: usize, end: usize, numbers: &[String], urns: bool) -> bool {
    if end < off + 32 {
        return false;
    }
    let mut b = [0u8; 64];
    let n = (end - off).min(64);
    b[..n].copy_from_slice(&f[off..off + n]);
    let Some(sp) = (1..=16).find(|&i| b[i] == b' ') else {
        return false;
    };
    let at = sp + 1;
    if b[at] | 0x20 == b'u' {
        if !urns {
            return false;
        }
        let urn = b"urn:service:sos";
        for (i, &w) in urn.iter().enumerate() {
            let mut c = b[at + i];
            if w.is_ascii_lowercase() {
                c |= 0x20;
            }
            if c != w {
                return false;
            }
        }
        return matches!(b[at + 15], b' ' | b'.' | b'>' | b';');
    }
    let fold = |i: usize| b[at + i] | 0x20;
    let digits_at = if fold(0) == b's' && fold(1) == b'i' && fold(2) == b'p' && b[at + 3] == b':' {
        at + 4
    } else if fold(0) == b's'
        && fold(1) == b'i'
        && fold(2) == b'p'
        && fold(3) == b's'
        && b[at + 4] == b':'
    {
        at + 5
    } else if fold(0) == b't' && fold(1) == b'e' && fold(2) == b'l' && b[at + 3] == b':' {
        at + 4
    } else {
        return false;
    };
    // Digits up to the end of the user part, past visual separators, within
    // 24 bytes and the 64-byte window.
    let mut number = Vec::new();
    let mut ended = false;
    for i in 0..24 {
        if digits_at + i >= 64 {
            return false;
        }
        let c = b[digits_at + i];
        if c.is_ascii_digit() {
            if number.len() >= 15 {
                return false;
            }
            number.push(c);
            continue;
        }
        if matches!(c, b'+' | b'-' | b'.' | b'(' | b')') {
            continue;
        }
        if !matches!(c, b'@' | b';' | b' ' | b'>') {
            return false;
        }
        ended = true;
        break;
    }
    if !ended || number.is_empty() {
        return false;
    }
    numbers.iter().any(|n| n.as_bytes() == number.as_slice())
}

impl Outcome {
    fn verdict(mut self, action: u32, slot: usize, why: &str) -> Outcome {
        self.action = action;
        self.slot = slot;
        self.trace.push(why.to_string());
        self
    }

    fn event(&mut self, slot: usize, why: &str) {
        self.events.push(slot);
        self.trace.push(why.to_string());
    }

    fn expected_delta(&self) -> [u64; slot::SLOTS] {
        let mut d = [0u64; slot::SLOTS];
        d[self.slot] += 1;
        for e in &self.events {
            d[*e] += 1;
        }
        d
    }
}

fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c)
}

fn is_scheme_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"+-.".contains(&c)
}

/// RFC 3261 sections 7.1 and 7.2 as the program checks them, on the first
/// 32 bytes: `METHOD SP scheme:` or `SIP/2.0 SP 3DIGIT SP`; `None`: not SIP.
fn sip_class(f: &[u8], off: usize, end: usize) -> Option<Class> {
    if end < off + 32 {
        return None;
    }
    let b = &f[off..off + 32];
    if b.starts_with(b"SIP/2.0 ") {
        let ok = (b'1'..=b'6').contains(&b[8])
            && b[9].is_ascii_digit()
            && b[10].is_ascii_digit()
            && b[11] == b' ';
        return ok.then_some(Class::Other);
    }
    let method_len = (0..=16).find(|&i| !is_token_char(b[i]))?;
    if method_len == 0 || b[method_len] != b' ' {
        return None;
    }
    let scheme = method_len + 1;
    if !b[scheme].is_ascii_alphabetic() {
        return None;
    }
    let mut colon = false;
    for c in &b[scheme + 1..=scheme + 8] {
        if *c == b':' {
            colon = true;
            break;
        }
        if !is_scheme_char(*c) {
            return None;
        }
    }
    if !colon {
        return None;
    }
    Some(match &b[..method_len] {
        b"INVITE" => Class::Invite,
        b"REGISTER" => Class::Register,
        _ => Class::Other,
    })
}

/// Up to eight blanks from `at` (reads are bounded by the frame, as the
/// program's are).
fn skip_ws(f: &[u8], mut at: usize) -> usize {
    for _ in 0..8 {
        match f.get(at) {
            Some(b' ' | b'\t') => at += 1,
            _ => break,
        }
    }
    at
}

/// Past `*(SP / HTAB) ":" *(SP / HTAB)`, or `None`.
fn skip_hcolon(f: &[u8], at: usize) -> Option<usize> {
    let at = skip_ws(f, at);
    (f.get(at) == Some(&b':')).then(|| skip_ws(f, at + 1))
}

/// Whether the value at `at` (the scan window ending at `end`) starts with
/// one of `signatures`, letters in either case.
fn value_is_scanner(f: &[u8], at: usize, end: usize, signatures: &[String]) -> bool {
    if at >= end {
        return false;
    }
    let value = &f[at..end.min(at + 32)];
    signatures.iter().any(|sig| {
        let sig = sig.as_bytes();
        value.len() >= sig.len()
            && sig.iter().zip(value).all(|(s, v)| {
                if s.is_ascii_alphabetic() {
                    v | 0x20 == s.to_ascii_lowercase()
                } else {
                    v == s
                }
            })
    })
}

enum Line {
    Other,
    End,
    Scanner,
}

/// The header line at `at`: the end of the headers, a User-Agent or From
/// whose value is a scanner's, or anything else.
fn check_line(f: &[u8], at: usize, end: usize, ua: &[String], from: &[String]) -> Line {
    if at >= end {
        return Line::Other;
    }
    let p = f[at];
    if p == b'\r' || p == b'\n' {
        return Line::End;
    }
    let hit = |yes: bool| if yes { Line::Scanner } else { Line::Other };
    match p | 0x20 {
        b'u' => {
            let Some(h) = f.get(at..at + 10) else {
                return Line::Other;
            };
            // The program folds every byte with 0x20, punctuation included.
            if !h.iter().zip(b"user-agent").all(|(c, t)| c | 0x20 == *t) {
                return Line::Other;
            }
            match skip_hcolon(f, at + 10) {
                Some(v) => hit(value_is_scanner(f, v, end, ua)),
                None => Line::Other,
            }
        }
        b'f' => {
            let long = f
                .get(at..at + 4)
                .is_some_and(|h| h[1] | 0x20 == b'r' && h[2] | 0x20 == b'o' && h[3] | 0x20 == b'm');
            let Some(mut v) = skip_hcolon(f, if long { at + 4 } else { at + 1 }) else {
                return Line::Other;
            };
            if f.get(v) == Some(&b'"') {
                v += 1;
            }
            hit(value_is_scanner(f, v, end, from))
        }
        _ => Line::Other,
    }
}

/// The program's header scan: lines found eight bytes at a time in the
/// first 1,024 bytes of the message (a last partial word is not searched),
/// each line after a line feed checked until the empty line.
fn scanner(f: &[u8], off: usize, end: usize, ua: &[String], from: &[String]) -> bool {
    let end = end.min(off + abi::SCAN_BYTES);
    let mut at = off;
    for _ in 0..abi::SCAN_BYTES / 8 {
        if at + 8 > end {
            break;
        }
        for j in 0..8 {
            if f[at + j] != b'\n' {
                continue;
            }
            if j < 7 {
                let first = f[at + j + 1];
                if first != b'\r' && first != b'\n' && first | 0x20 != b'u' && first | 0x20 != b'f'
                {
                    continue;
                }
            }
            match check_line(f, at + j + 1, end, ua, from) {
                Line::Scanner => return true,
                Line::End => return false,
                Line::Other => {}
            }
        }
        at += 8;
    }
    false
}

// ------------------------------------------------------------- frames

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fragment {
    None,
    First,
    Later,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UdpLength {
    True,
    OneTooLong,
    BelowItsHeader,
}

/// How a frame was made (printed when the program and the model disagree).
#[derive(Debug, Clone)]
struct Spec {
    src: IpAddr,
    dport: u16,
    vlan_tags: usize,
    ipv4_options: usize,
    ipv6_ext_units: Vec<u8>,
    fragment: Fragment,
    not_udp: bool,
    /// For a TCP frame (`not_udp`): the data offset and flags written into
    /// the bytes where TCP has them.
    tcp_doff_flags: (u8, u8),
    udp_length: UdpLength,
    padding: usize,
    cut: Option<usize>,
    payload_kind: &'static str,
}

/// One frame, how it was made, and what the parser makes of it.
struct Case {
    spec: Spec,
    src: IpAddr,
    frame: Vec<u8>,
    parsed: Parsed,
}

fn pick<'a, T: ?Sized>(rng: &mut fastrand::Rng, from: &[&'a T]) -> &'a T {
    from[rng.usize(..from.len())]
}

const USER_AGENTS: &[&str] = &[
    "Linphone/5.0",
    "friendly-scanner",
    "Friendly-Scanner 0.3",
    "FRIENDLY-SCANNER",
    "friendly scanner",
    "my friendly-scanner",
    "sipvicious",
    "SIPVicious/0.3.3",
    "sipcli/v1.8",
    "sip-scan",
    "iWar",
    "smap",
    "Polycom-smap",
    "VaxSIPUserAgent",
    "pplsip",
    "sundayddr",
    "siparmyknife",
    "EvilBot 2",
    "evilbot",
    "a-b_c",
    "A-B_C",
    "A-B-C",
    "Asterisk PBX",
    "",
    "f",
    "sip",
];

const DISPLAY_NAMES: &[&str] = &[
    "\"alice\"",
    "\"sipvicious\"",
    "\"SIPVicious\"",
    "sipvicious",
    "SiPvIcIoUs x",
    "\"Mr. X\"",
    "Mr. X",
    "mr. x",
    "\"bob\"",
    "",
];

const SEPARATORS: &[&str] = &[
    ": ",
    ":",
    " : ",
    ":\t",
    "\t:  ",
    "         : ",
    ":         ",
];

fn user_agent_header(rng: &mut fastrand::Rng) -> String {
    let name = pick(
        rng,
        &[
            "User-Agent",
            "User-Agent",
            "user-agent",
            "USER-AGENT",
            "UserAgent",
            "User-Agentx",
            "User\rAgent",
        ],
    );
    format!("{name}{}{}", pick(rng, SEPARATORS), pick(rng, USER_AGENTS))
}

fn from_header(rng: &mut fastrand::Rng) -> String {
    let name = pick(
        rng,
        &["From", "From", "from", "FROM", "f", "F", "Fro", "Frombar"],
    );
    format!(
        "{name}{}{} <sip:200@198.18.0.1>;tag=abcd",
        pick(rng, SEPARATORS),
        pick(rng, DISPLAY_NAMES)
    )
}

/// The headers of a message, shuffled, with a User-Agent or not, and a
/// filler of up to 1,100 bytes that moves them around the scan window.
fn headers(rng: &mut fastrand::Rng, cseq: &str) -> Vec<String> {
    let mut h = vec![
        "Via: SIP/2.0/UDP 198.18.0.1:5060;branch=z9hG4bK-1".to_string(),
        "Max-Forwards: 70".to_string(),
        "To: <sip:100@198.18.0.2>".to_string(),
        from_header(rng),
        "Call-ID: 1234@198.18.0.1".to_string(),
        format!("CSeq: 1 {cseq}"),
    ];
    if rng.u8(0..3) > 0 {
        h.push(user_agent_header(rng));
    }
    if rng.u8(0..4) == 0 {
        h.push(format!("X-Filler: {}", "a".repeat(rng.usize(0..1100))));
    }
    rng.shuffle(&mut h);
    h
}

fn message(rng: &mut fastrand::Rng, start: &str, cseq: &str) -> Vec<u8> {
    let eol = if rng.u8(0..10) == 0 { "\n" } else { "\r\n" };
    let body = if rng.u8(0..5) == 0 {
        "User-Agent: friendly-scanner\r\n"
    } else {
        ""
    };
    let mut m = format!("{start}{eol}");
    for h in headers(rng, cseq) {
        m.push_str(&h);
        m.push_str(eol);
    }
    m.push_str(&format!("Content-Length: {}{eol}{eol}{body}", body.len()));
    m.into_bytes()
}

fn request(rng: &mut fastrand::Rng) -> Vec<u8> {
    let method = pick(
        rng,
        &[
            "INVITE",
            "INVITE",
            "REGISTER",
            "OPTIONS",
            "OPTIONS",
            "BYE",
            "ACK",
            "CANCEL",
            "MESSAGE",
            "SUBSCRIBE",
            "PRACK",
            "X-CUSTOM.m",
            "invite",
            "ABCDEFGHIJKLMNOPQ",
        ],
    );
    let uri = pick(
        rng,
        &[
            "sip:100@198.18.0.2",
            "sips:bob@example.com",
            "tel:+15551234",
            "urn:service:sos",
            "URN:Service:SOS.police",
            "urn:service:sosx",
            "urn:service:counseling",
            "sip:911@198.18.0.2",
            "sip:112;user=phone@198.18.0.2",
            "sips:999@198.18.0.2",
            "tel:112",
            "tel:911;phone-context=+1",
            "sip:9111@198.18.0.2",
            "sip:911x@198.18.0.2",
            "sip:0@198.18.0.2",
            "sip:123456789012345@x",
            "sip:1234567890123456@x",
            "sip:+911@198.18.0.2",
            "sip:9-1-1@198.18.0.2",
            "tel:(1)(1)(2)",
            "sip:+1-911@198.18.0.2",
            "sip:1-2-3-4-5-6-7-8-9-0-1-2-3-4-5@x",
            "sip:%39%31%31@198.18.0.2",
            "abcdefghij:x",
            "123:a",
            "sip/a",
        ],
    );
    message(rng, &format!("{method} {uri} SIP/2.0"), method)
}

fn response(rng: &mut fastrand::Rng) -> Vec<u8> {
    let code = pick(
        rng,
        &[
            "100", "180", "200", "404", "486", "503", "699", "700", "20", "099", "2000",
        ],
    );
    message(rng, &format!("SIP/2.0 {code} Whatever"), "INVITE")
}

fn garbage(rng: &mut fastrand::Rng) -> Vec<u8> {
    let pad = "x".repeat(rng.usize(0..60));
    match rng.u8(0..6) {
        0 => (0..rng.usize(0..200)).map(|_| rng.u8(..)).collect(),
        1 => format!("GET / HTTP/1.1\r\nHost: a\r\n\r\n{pad}").into_bytes(),
        2 => format!("INVITE  sip:a SIP/2.0\r\n{pad}").into_bytes(),
        3 => format!("\r\n\r\n{pad}").into_bytes(),
        // Shorter than any SIP message can be.
        4 => b"OPTIONS sip:a SIP/2.0\r\n".to_vec(),
        _ => format!("SIP/2.0 20 OK\r\nUser-Agent: friendly-scanner\r\n{pad}").into_bytes(),
    }
}

impl Case {
    fn random(rng: &mut fastrand::Rng, pool: &[IpAddr]) -> Case {
        let src = pool[rng.usize(..pool.len())];
        let v6 = src.is_ipv6();
        let (payload, payload_kind) = match rng.u8(0..10) {
            0..=4 => (request(rng), "request"),
            5 | 6 => (response(rng), "response"),
            _ => (garbage(rng), "garbage"),
        };
        let fragment = match rng.u8(0..50) {
            0..=2 => Fragment::First,
            3 | 4 => Fragment::Later,
            _ => Fragment::None,
        };
        let ipv6_ext_units: Vec<u8> = match (v6, rng.u8(0..20)) {
            (false, _) => vec![],
            (true, 0) => vec![0; abi::MAX_IPV6_EXT_HEADERS + 1],
            (true, 1..=4) => (0..rng.usize(1..=2)).map(|_| rng.u8(0..2)).collect(),
            _ => vec![],
        };
        // A non-UDP protocol is written into the IP header, so only
        // where no extension header or fragment header follows it.
        let not_udp = rng.u8(0..4) == 0 && ipv6_ext_units.is_empty() && fragment == Fragment::None;
        let mut spec = Spec {
            src,
            dport: if not_udp && rng.u8(0..10) > 0 {
                TCP_PORTS[rng.usize(..2)]
            } else if rng.u8(0..10) > 0 {
                SIP_PORTS[rng.usize(..2)]
            } else {
                *pick(rng, &[&53u16, &5070, &5061, &22])
            },
            vlan_tags: match rng.u8(0..20) {
                0..=2 => 1,
                3 | 4 => 2,
                5 => 3,
                _ => 0,
            },
            ipv4_options: if !v6 && rng.u8(0..5) == 0 {
                *pick(rng, &[&4usize, &8, &40])
            } else {
                0
            },
            not_udp,
            tcp_doff_flags: (
                *pick(rng, &[&5u8, &5, &5, &5, &8, &4, &0, &15]),
                *pick(
                    rng,
                    &[&0x02u8, &0x02, &0x02, &0x10, &0x12, &0x18, &0x03, &0x00],
                ),
            ),
            ipv6_ext_units,
            fragment,
            udp_length: match rng.u8(0..40) {
                0 => UdpLength::OneTooLong,
                1 => UdpLength::BelowItsHeader,
                _ => UdpLength::True,
            },
            padding: if rng.u8(0..10) == 0 {
                rng.usize(1..=8)
            } else {
                0
            },
            cut: None,
            payload_kind,
        };
        let (full, layout) = build(&spec, &payload);
        spec.cut = match rng.u8(0..25) {
            0 => Some(rng.usize(14..(layout.udp_off + 12).min(full.len()))),
            1 => Some(rng.usize(14..full.len())),
            _ => None,
        };
        let mut frame = full;
        if let Some(c) = spec.cut {
            frame.truncate(c);
        }
        let parsed = parse(&spec, &layout, &frame);
        Case {
            spec,
            src,
            frame,
            parsed,
        }
    }
}

/// Where the builder put things.
struct Layout {
    /// Ethernet and VLAN headers.
    l2: usize,
    /// The UDP header (where it would be, for a later fragment).
    udp_off: usize,
    /// The end of the IP packet.
    l4_end: usize,
    /// The UDP length field as written.
    ulen: usize,
    /// IPv6 headers after the fixed one: extension sizes, then (true) the fragment header.
    ipv6_chain: Vec<(usize, bool)>,
}

fn build(spec: &Spec, payload: &[u8]) -> (Vec<u8>, Layout) {
    let v6 = spec.src.is_ipv6();
    let dst: IpAddr = if v6 {
        "2001:db8:ffff::2".parse().unwrap()
    } else {
        "198.18.0.2".parse().unwrap()
    };
    let mut b = UdpFrameBuilder::new(spec.src, dst, 5062, spec.dport, payload);
    b.vlan_tags =
        [(TPID_8021AD, 10), (TPID_8021Q, 100), (TPID_8021Q, 7)][..spec.vlan_tags].to_vec();
    if spec.vlan_tags == 1 {
        b.vlan_tags = vec![(TPID_8021Q, 100)];
    }
    b.ipv4_options = vec![1; spec.ipv4_options];
    b.ipv6_ext = spec
        .ipv6_ext_units
        .iter()
        .map(|&len_units| Ipv6Ext {
            kind: 60,
            len_units,
        })
        .collect();
    b.first_fragment = spec.fragment == Fragment::First;
    b.later_fragment = (spec.fragment == Fragment::Later).then_some(185);
    let mut f = b.build();
    let l2 = 14 + 4 * spec.vlan_tags;
    let mut ipv6_chain: Vec<(usize, bool)> = spec
        .ipv6_ext_units
        .iter()
        .map(|&u| ((u as usize + 1) * 8, false))
        .collect();
    if v6 && spec.fragment != Fragment::None {
        ipv6_chain.push((8, true));
    }
    let udp_off = if v6 {
        l2 + 40 + ipv6_chain.iter().map(|(n, _)| n).sum::<usize>()
    } else {
        l2 + 20 + spec.ipv4_options
    };
    if spec.not_udp {
        // IPv4 protocol, or IPv6 next header (no chain here): TCP.
        f[if v6 { l2 + 6 } else { l2 + 9 }] = 6;
        // The data offset and flags, where TCP has them (payload bytes of
        // the UDP frame, present when the payload is at least 6 bytes).
        let (doff, flags) = spec.tcp_doff_flags;
        if let Some(b) = f.get_mut(udp_off + 12) {
            *b = doff << 4;
        }
        if let Some(b) = f.get_mut(udp_off + 13) {
            *b = flags;
        }
    }
    let mut ulen = 8 + payload.len();
    if spec.fragment != Fragment::Later && !spec.not_udp {
        ulen = match spec.udp_length {
            UdpLength::True => ulen,
            UdpLength::OneTooLong => ulen + 1,
            UdpLength::BelowItsHeader => 7,
        };
        // The program does not check checksums.
        f[udp_off + 4..udp_off + 6].copy_from_slice(&(ulen as u16).to_be_bytes());
    }
    let l4_end = f.len();
    f.extend((0..spec.padding).map(|i| 0xa5 ^ i as u8));
    (
        f,
        Layout {
            l2,
            udp_off,
            l4_end,
            ulen,
            ipv6_chain,
        },
    )
}

/// What the program's parser makes of `frame` (the built frame, perhaps
/// cut): the rules of docs/xdp.md step 1 and "Truncation".
fn parse(spec: &Spec, layout: &Layout, frame: &[u8]) -> Parsed {
    let len = frame.len();
    if spec.vlan_tags > 2 {
        return Parsed::Other; // a third tag: not IP as far as the program looks
    }
    let mut first_fragment = spec.fragment == Fragment::First;
    if spec.src.is_ipv6() {
        if len < layout.l2 + 40 {
            return Parsed::Other;
        }
        if spec.not_udp {
            return parse_tcp(layout, frame);
        }
        let mut at = layout.l2 + 40;
        for (i, &(size, fragment_header)) in layout.ipv6_chain.iter().enumerate() {
            if i == abi::MAX_IPV6_EXT_HEADERS {
                return Parsed::Malformed; // still in the chain after 8 headers
            }
            if fragment_header {
                if len < at + 8 || spec.fragment == Fragment::Later {
                    return Parsed::Other;
                }
                first_fragment = true;
            } else if len < at + 2 {
                return Parsed::Other;
            }
            at += size;
        }
        debug_assert_eq!(at, layout.udp_off);
    } else if spec.fragment == Fragment::Later {
        return Parsed::Other;
    } else if spec.not_udp {
        return parse_tcp(layout, frame);
    }
    let udp = layout.udp_off;
    if len < udp + 8 || !SIP_PORTS.contains(&spec.dport) {
        return Parsed::Other;
    }
    if first_fragment {
        return Parsed::Sip {
            first_fragment,
            off: udp + 8,
            end: udp + 8,
        };
    }
    if layout.l4_end > len || layout.ulen < 8 || udp + layout.ulen > layout.l4_end {
        return Parsed::Malformed;
    }
    Parsed::Sip {
        first_fragment,
        off: udp + 8,
        end: udp + layout.ulen,
    }
}

/// TCP (never fragmented here, no IPv6 chain): a frame cut before the
/// destination port is not ours; to a SIP TCP port, a header that does not
/// fit the segment, or a data offset under 5, is malformed.
fn parse_tcp(layout: &Layout, frame: &[u8]) -> Parsed {
    let tcp = layout.udp_off;
    if frame.len() < tcp + 4 {
        return Parsed::Other;
    }
    let dport = u16::from_be_bytes([frame[tcp + 2], frame[tcp + 3]]);
    if !TCP_PORTS.contains(&dport) {
        return Parsed::Other;
    }
    if layout.l4_end > frame.len() || tcp + 20 > layout.l4_end {
        return Parsed::Malformed;
    }
    let doff = (frame[tcp + 12] >> 4) as usize;
    if doff < 5 || tcp + doff * 4 > layout.l4_end {
        return Parsed::Malformed;
    }
    Parsed::Tcp {
        syn: frame[tcp + 13] & 0x12 == 0x02,
    }
}

// ----------------------------------------------------------- scenarios

/// One scenario: a configuration, map contents over a small pool of
/// addresses of its own (so no state of an earlier scenario applies), and
/// the model that goes with them.
struct Scenario {
    pool: Vec<IpAddr>,
    cfg: FilterConfig,
    model: Model,
    bans: Vec<(Net, Expiry)>,
    auto_bans: Vec<(IpAddr, Expiry)>,
    verified: Vec<(IpAddr, Expiry)>,
    emergency_sources: Vec<(IpAddr, Expiry)>,
}

impl Scenario {
    fn random(rng: &mut fastrand::Rng, k: usize) -> Scenario {
        let k = k as u32;
        let v4 =
            |c: u32, d: u32| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (k << 16) | (c << 8) | d));
        let v6 = |net: u16, host: u16| {
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, k as u16, net, 0, 0, 0, host))
        };
        let pool = vec![
            v4(0, 1),
            v4(0, 2),
            v4(0, 3),
            v4(1, 1),
            v4(1, 2),
            v6(1, 1),
            v6(1, 2),
            v6(2, 1),
            v6(2, 2),
        ];
        let mut candidates: Vec<Net> = pool
            .iter()
            .map(|&a| Net::of(a, width(a.is_ipv6())))
            .collect();
        candidates.extend([
            Net::of(v4(0, 0), 24),
            Net::of(v4(1, 0), 24),
            Net::of(v4(0, 0), 16),
            Net::of(v4(0, 2), 31),
            Net::of(v6(1, 0), 64),
            Net::of(v6(2, 0), 64),
            Net::of(v6(0, 0), 48),
        ]);
        let chosen = |rng: &mut fastrand::Rng, p: u8| -> Vec<Net> {
            candidates
                .iter()
                .filter(|_| rng.u8(0..100) < p)
                .copied()
                .collect()
        };
        let allow = chosen(rng, 5);
        let block = chosen(rng, 3);
        let bans: Vec<(Net, Expiry)> = chosen(rng, 10)
            .into_iter()
            .map(|n| {
                let e = *pick(
                    rng,
                    &[&Expiry::Past, &Expiry::Past, &Expiry::Hour, &Expiry::Never],
                );
                (n, e)
            })
            .collect();
        let mut sources: Vec<IpAddr> = Vec::new();
        for a in &pool {
            if !sources.iter().any(|s| source_of(*s) == source_of(*a)) {
                sources.push(*a);
            }
        }
        let mut auto_bans: Vec<(IpAddr, Expiry)> = Vec::new();
        let mut verified: Vec<(IpAddr, Expiry)> = Vec::new();
        let mut emergency_sources: Vec<(IpAddr, Expiry)> = Vec::new();
        for &a in &sources {
            if rng.u8(0..100) < 10 {
                let e = if rng.bool() {
                    Expiry::Past
                } else {
                    Expiry::Hour
                };
                emergency_sources.push((a, e));
            }
            if rng.u8(0..100) < 12 {
                let e = if rng.bool() {
                    Expiry::Past
                } else {
                    Expiry::Hour
                };
                auto_bans.push((a, e));
            }
            if rng.u8(0..100) < 45 {
                let e = if rng.u8(0..4) == 0 {
                    Expiry::Past
                } else {
                    Expiry::Hour
                };
                verified.push((a, e));
            }
        }
        let custom_signatures = rng.u8(0..10) < 3;
        let cfg = FilterConfig {
            sip_ports: SIP_PORTS.to_vec(),
            tcp_ports: TCP_PORTS.to_vec(),
            mode: if rng.bool() {
                VerdictMode::Pass
            } else {
                VerdictMode::Redirect
            },
            fragments: if rng.bool() {
                FragmentPolicy::Drop
            } else {
                FragmentPolicy::Pass
            },
            auto_ban: rng.u8(0..4) > 0,
            allowlist: allow.iter().map(Net::cidr).collect(),
            blocklist: block.iter().map(Net::cidr).collect(),
            scanner_user_agents: if custom_signatures {
                CUSTOM_USER_AGENTS.iter().map(|s| s.to_string()).collect()
            } else {
                xdp::config::DEFAULT_USER_AGENTS
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            },
            scanner_from_names: if custom_signatures {
                CUSTOM_FROM_NAMES.iter().map(|s| s.to_string()).collect()
            } else {
                xdp::config::DEFAULT_FROM_NAMES
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            },
            emergency_numbers: if rng.u8(0..4) == 0 {
                vec!["9111".into(), "0".into(), "123456789012345".into()]
            } else {
                xdp::config::DEFAULT_EMERGENCY_NUMBERS
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            },
            emergency_urns: rng.u8(0..4) > 0,
            emergency_keep_bans: rng.u8(0..4) == 0,
            ..FilterConfig::default()
        };
        let model = Model {
            user_agents: cfg.scanner_user_agents.clone(),
            from_names: cfg.scanner_from_names.clone(),
            fragments_pass: cfg.fragments == FragmentPolicy::Pass,
            auto_ban: cfg.auto_ban,
            allow,
            block,
            bans: bans.iter().copied().collect(),
            auto_bans: auto_bans.iter().map(|(a, e)| (source_of(*a), *e)).collect(),
            verified: verified.iter().map(|(a, e)| (source_of(*a), *e)).collect(),
            unverified: Budget::random(rng, true),
            unverified_charged: 0,
            auto_ban_budget: Budget::random(rng, true),
            auto_ban_charged: 0,
            rates: [
                Budget::random(rng, false),
                Budget::random(rng, false),
                Budget::random(rng, false),
                Budget::random(rng, false),
            ],
            buckets: HashMap::new(),
            overload_cap_zero: rng.u8(0..5) == 0,
            emergency_numbers: cfg.emergency_numbers.clone(),
            emergency_urns: cfg.emergency_urns,
            emergency_keep_bans: cfg.emergency_keep_bans,
            emergency_sources: emergency_sources
                .iter()
                .map(|(a, e)| (source_of(*a), *e))
                .collect(),
            emergency_budget: Budget::random(rng, true),
            emergency_charged: 0,
            // Often a burst of one: a scenario sees few SYNs per source.
            syn_per_source: if rng.bool() {
                Budget::Burst(1)
            } else {
                Budget::random(rng, false)
            },
            syn_buckets: HashMap::new(),
            syn_cpu: Budget::random(rng, true),
            syn_cpu_charged: 0,
        };
        Scenario {
            pool,
            cfg,
            model,
            bans,
            auto_bans,
            verified,
            emergency_sources,
        }
    }

    /// Writes the scenario into the filter's maps.
    fn install(&self, filter: &mut Filter) {
        filter.configure(&self.cfg).unwrap();
        let m = &self.model;
        let mut c = filter.config_entry().unwrap();
        c.unverified = m.unverified.rate();
        c.auto_ban = m.auto_ban_budget.rate();
        c.emergency = m.emergency_budget.rate();
        c.syn = m.syn_per_source.rate();
        c.syn_cpu = m.syn_cpu.rate();
        for (i, r) in m.rates.iter().enumerate() {
            c.rates[i] = r.rate();
        }
        c.overload_cap = if m.overload_cap_zero { 0 } else { u64::MAX };
        c.ban_ttl_ns = HOUR_NS;
        filter.set_config_entry(c).unwrap();
        let now = xdp::maps::monotonic_ns();
        let past = |prefixlen: u8| abi::Ban {
            expires_ns: now - 1_000_000_000,
            banned_ns: now - 2_000_000_000,
            reason: abi::ban_reason::FLOOD,
            prefixlen: prefixlen as u32,
            note: [0; 32],
        };
        for (net, e) in &self.bans {
            match e {
                Expiry::Past => filter.put_ban_raw(net.cidr(), past(net.prefix)),
                Expiry::Hour => filter
                    .ban(
                        net.cidr(),
                        Some(Duration::from_secs(3600)),
                        BanReason::Flood,
                        "",
                    )
                    .unwrap(),
                Expiry::Never => filter.ban(net.cidr(), None, BanReason::Manual, "").unwrap(),
            }
        }
        for (a, e) in &self.auto_bans {
            match e {
                Expiry::Past => filter
                    .put_auto_ban_raw(*a, past(source_of(*a).prefix))
                    .unwrap(),
                _ => {
                    filter
                        .auto_ban(*a, Duration::from_secs(3600), BanReason::Flood)
                        .unwrap();
                }
            }
        }
        for (a, e) in &self.verified {
            match e {
                Expiry::Past => filter.put_verified_raw(
                    *a,
                    abi::Verified {
                        expires_ns: now - 1_000_000_000,
                        verified_ns: now - 2_000_000_000,
                    },
                ),
                _ => filter.verify(*a, Duration::from_secs(3600)).unwrap(),
            }
        }
        for (a, e) in &self.emergency_sources {
            let ttl = match e {
                Expiry::Past => Duration::ZERO,
                _ => Duration::from_secs(3600),
            };
            filter.note_emergency_call(*a, ttl).unwrap();
        }
        let (unverified_tat, auto_ban_tat, emergency_tat, syn_tat) = (
            m.unverified.start_tat(now),
            m.auto_ban_budget.start_tat(now),
            m.emergency_budget.start_tat(now),
            m.syn_cpu.start_tat(now),
        );
        filter.update_cpu_budgets(|_| abi::Overload {
            window_start_ns: 0,
            count: 0,
            unverified_tat,
            auto_ban_tat,
            emergency_tat,
            syn_tat,
        });
    }

    /// Removes its bans and verifications (the next scenario's addresses
    /// are others, so its rate-limit state cannot matter).
    fn uninstall(&self, filter: &mut Filter) {
        for b in filter.bans().unwrap() {
            filter.unban(b.network).unwrap();
        }
        for v in filter.verified().unwrap() {
            filter.unverify(v.source.addr).unwrap();
        }
        for (a, _) in &self.emergency_sources {
            filter.forget_emergency_call(*a).unwrap();
        }
        assert!(filter.bans().unwrap().is_empty());
    }
}

fn env_or<T: std::str::FromStr>(var: &str, default: T) -> T {
    match std::env::var(var) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{var}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// The program's counter deltas as "slot+n, ..." (verdicts and events).
fn describe(delta: &[u64; slot::SLOTS]) -> String {
    let moved: Vec<String> = delta
        .iter()
        .enumerate()
        .filter(|(_, v)| **v != 0)
        .map(|(i, v)| format!("{}+{v}", slot_name(i)))
        .collect();
    moved.join(", ")
}

fn slot_name(i: usize) -> String {
    abi::SLOT_NAMES.get(i).copied().unwrap_or("?").to_string()
}

#[test]
fn the_program_matches_its_model_on_random_frames_and_maps() {
    if !privileged_or_skip("the_program_matches_its_model_on_random_frames_and_maps") {
        return;
    }
    let seed: u64 = env_or("DCE_DIFF_SEED", DEFAULT_SEED);
    let scenarios: usize = env_or("DCE_DIFF_SCENARIOS", DEFAULT_SCENARIOS);
    eprintln!(
        "differential: seed {seed}, {scenarios} scenarios of {FRAMES_PER_SCENARIO} frames \
         (DCE_DIFF_SEED=<n> replays, DCE_DIFF_SCENARIOS=<n> runs more or fewer)"
    );
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut filter = Filter::load_unattached(&FilterConfig::default()).expect("the program loads");
    // The budgets are per CPU: every run meets this CPU's.
    let _cpu = OnOneCpu::pin();
    let mut seen = [0u64; slot::SLOTS];
    let mut kinds: HashMap<&str, u64> = HashMap::new();
    for k in 0..scenarios {
        let mut scenario = Scenario::random(&mut rng, k);
        scenario.install(&mut filter);
        for i in 0..FRAMES_PER_SCENARIO {
            let case = Case::random(&mut rng, &scenario.pool);
            let want = scenario.model.run(&case);
            let before = filter.counters().unwrap();
            let got = test_run::run(filter.program_fd(), &case.frame, None).unwrap();
            let after = filter.counters().unwrap();
            let mut delta = [0u64; slot::SLOTS];
            for s in 0..slot::SLOTS {
                delta[s] = after[s] - before[s];
            }
            let expected = want.expected_delta();
            if got.action != want.action || delta != expected {
                panic!(
                    "seed {seed}, scenario {k}, frame {i}: the program and the model disagree\n\
                     program: {} with {}\n\
                     model:   {} with {} ({})\n\
                     frame: {:?}, parsed as {:?}\n\
                     budgets: unverified {:?} ({} charged), auto-ban {:?} ({} charged), \
                     rates {:?}, overload cap 0: {}; auto_ban {}, fragments pass {}\n\
                     payload: {:?}",
                    action_name(got.action),
                    describe(&delta),
                    action_name(want.action),
                    describe(&expected),
                    want.trace.join(" > "),
                    case.spec,
                    case.parsed,
                    scenario.model.unverified,
                    scenario.model.unverified_charged,
                    scenario.model.auto_ban_budget,
                    scenario.model.auto_ban_charged,
                    scenario.model.rates,
                    scenario.model.overload_cap_zero,
                    scenario.model.auto_ban,
                    scenario.model.fragments_pass,
                    String::from_utf8_lossy(&case.frame[case.frame.len().min(42)..]),
                );
            }
            for (s, d) in seen.iter_mut().zip(delta) {
                *s += d;
            }
            *kinds.entry(case.spec.payload_kind).or_default() += 1;
        }
        scenario.uninstall(&mut filter);
    }
    let mut all = [0u64; slot::SLOTS];
    all.copy_from_slice(&seen);
    eprintln!(
        "differential: frames by payload {kinds:?}; counters moved: {}",
        describe(&all)
    );
    // The default run must have walked every verdict and event the model
    // knows (redirects need a bound socket, a failed auto-ban a full map).
    if seed == DEFAULT_SEED && scenarios >= DEFAULT_SCENARIOS {
        for (s, n) in seen.iter().enumerate() {
            if s == slot::REDIRECTED || s == slot::EV_AUTO_BAN_FAILED {
                continue;
            }
            assert!(*n > 0, "the default run never reached {}", slot_name(s));
        }
    }
}
