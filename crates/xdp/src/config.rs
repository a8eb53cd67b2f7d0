//! The `[filter]` table of the appliance configuration file, validated, and
//! its translation into the XDP program's map contents.
//!
//! Other top-level tables of the same file (`[routes]`, `[proxy]`, ...) are
//! ignored here; each section reads only its own. Every refused value names
//! the file, the line and the reason.

use std::ops::Range;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::abi;
use config::{ConfigError, SourceFile};
pub use wire::Cidr;

/// The scanner User-Agent signatures used when the file names none.
pub const DEFAULT_USER_AGENTS: &[&str] = &[
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "sip-scan",
    "iWar",
    "smap",
    "VaxSIPUserAgent",
    "pplsip",
    "sundayddr",
    "siparmyknife",
];

/// The From display names used when the file names none (SIPVicious's own).
pub const DEFAULT_FROM_NAMES: &[&str] = &["sipvicious"];

/// Largest rate or burst the filter takes (packets per second / packets).
pub const MAX_RATE: u32 = 10_000_000;

/// Largest auto-ban rate or burst: a budget beyond the size of `auto_bans`
/// would not bound anything.
pub const MAX_AUTO_BAN_BUDGET: u32 = abi::AUTO_BAN_ENTRIES as u32;

/// Default per-CPU budget of packets to userspace per second from sources
/// neither allowlisted nor verified: above the per-queue CPS band of every
/// hardware profile (at most 15,000 new calls per second per queue), so
/// first INVITEs of new callers fit in it when there is no flood, and far
/// below the overload cap, so a spoofed flood leaves the workers most of
/// their capacity for verified sources.
pub const DEFAULT_UNVERIFIED_CAP_PPS: u32 = 20_000;

/// Default per-CPU budget of automatic bans the program makes (of verified
/// scanners): 10 per second, 10 at once. Over an hour's ban that is at most
/// 36,000 bans per CPU, and a burst of scanners from verified sources, rare
/// in itself, cannot fill `auto_bans` ([`abi::AUTO_BAN_ENTRIES`]) in seconds.
pub const DEFAULT_AUTO_BAN_BUDGET: RateConfig = RateConfig {
    rate: 10,
    burst: 10,
};

/// The TCP ports of SIP when the file names none: SIP over TCP (5060) and
/// over TLS (5061), RFC 3261 section 19.1.2.
pub const DEFAULT_TCP_PORTS: &[u16] = &[5060, 5061];

/// Default per-source budget of TCP SYNs to the SIP TCP ports: a trunk or a
/// PBX keeps its connections open and reconnects rarely, while the phones of
/// an office behind one NAT address may all reconnect at once after an
/// outage (50 at once, then 20 a second; a refused SYN is retried by the
/// sender's TCP a second later and then backs off).
pub const DEFAULT_SYN_PER_SOURCE: RateConfig = RateConfig {
    rate: 20,
    burst: 50,
};

/// Default per-CPU budget of TCP SYNs to the SIP TCP ports from sources
/// neither allowlisted nor verified: far above the connections real callers
/// open (each connection carries many calls), small beside a SYN flood, and
/// admitted evenly (a burst of a tenth of a second's worth).
pub const DEFAULT_SYN_PER_CPU: RateConfig = RateConfig {
    rate: 2_000,
    burst: 200,
};

/// How the program is attached to the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// In the driver; refuse when the driver cannot.
    Native,
    /// In the kernel's generic (SKB) path: slower, works everywhere.
    Generic,
    /// Native, falling back to generic with a warning in the log and the stats.
    #[default]
    Auto,
}

impl FromStr for AttachMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "native" => Ok(AttachMode::Native),
            "generic" => Ok(AttachMode::Generic),
            "auto" => Ok(AttachMode::Auto),
            _ => Err(format!(
                "attach mode {s:?}: expected native, generic or auto"
            )),
        }
    }
}

/// What happens to SIP that passes every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VerdictMode {
    /// To the queue's AF_XDP socket when one is bound (appliance mode).
    #[default]
    Redirect,
    /// To the kernel stack (shield and socket modes).
    Pass,
}

/// What happens to the first fragment of a datagram to a SIP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FragmentPolicy {
    /// Dropped and counted (`fragment`); the rest never reassembles.
    #[default]
    Drop,
    /// Passed to the kernel, which reassembles it.
    Pass,
}

/// A per-source budget: a sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RateConfig {
    /// Packets per second, sustained.
    pub rate: u32,
    /// Packets admitted back to back before the rate applies.
    pub burst: u32,
}

impl RateConfig {
    /// The GCRA form the program uses.
    pub fn to_abi(self) -> abi::Rate {
        let interval_ns = (1_000_000_000u64 / self.rate.max(1) as u64).max(1);
        abi::Rate {
            interval_ns,
            tolerance_ns: interval_ns * (self.burst.max(1) as u64 - 1),
        }
    }
}

/// Budgets per message class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RateLimits {
    /// INVITE requests.
    pub invite: RateConfig,
    /// REGISTER requests.
    pub register: RateConfig,
    /// Every other request and every response.
    pub other: RateConfig,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            invite: RateConfig {
                rate: 50,
                burst: 100,
            },
            register: RateConfig {
                rate: 10,
                burst: 20,
            },
            other: RateConfig {
                rate: 200,
                burst: 400,
            },
        }
    }
}

/// The validated `[filter]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilterConfig {
    /// UDP ports that carry SIP (1 to 8).
    pub sip_ports: Vec<u16>,
    /// How to attach.
    pub attach: AttachMode,
    /// Redirect good SIP to AF_XDP, or pass it to the kernel.
    pub mode: VerdictMode,
    /// First fragments to SIP ports.
    pub fragments: FragmentPolicy,
    /// Sources that skip the blocklist, bans and rate limits.
    pub allowlist: Vec<Cidr>,
    /// Sources always dropped (`blocklist`).
    pub blocklist: Vec<Cidr>,
    /// User-Agent prefixes of scanners (case-insensitive).
    pub scanner_user_agents: Vec<String>,
    /// From display-name prefixes of scanners (case-insensitive).
    pub scanner_from_names: Vec<String>,
    /// Ban a *verified* source that matches a scanner signature (an
    /// unverified one may be forged: its packet is dropped, nobody is banned).
    pub auto_ban: bool,
    /// How long an auto-ban lasts.
    pub ban_ttl: Duration,
    /// Per CPU: how many automatic bans the program may make, per second
    /// and at once; scanners past it are dropped without a ban.
    pub auto_ban_budget: RateConfig,
    /// Per-source budgets.
    pub rate_limits: RateLimits,
    /// Packets to userspace per second per CPU before `overload` drops.
    pub overload_cap_pps: u32,
    /// Packets to userspace per second per CPU from sources neither
    /// allowlisted nor verified before `unverified` drops (admitted evenly:
    /// a burst of a tenth of a second's worth, then one per 1/rate).
    pub unverified_cap_pps: u32,
    /// The numbers of emergency calls (digits, matched whole); the appliance
    /// replaces them with its route table's.
    pub emergency_numbers: Vec<String>,
    /// `urn:service:sos` Request-URIs are emergency calls.
    pub emergency_urns: bool,
    /// Bans and the blocklist apply to emergency calls too (default: an
    /// emergency call reaches through them).
    pub emergency_keep_bans: bool,
    /// Per CPU: emergency calls' packets that skip bans, budgets and rate
    /// limits, per second and at once.
    pub emergency_budget: RateConfig,
    /// Per source: the part of that budget one address may spend (so one
    /// address cannot take all of it). Over either budget an emergency
    /// call's packet takes the ordinary path.
    pub emergency_per_source: RateConfig,
    /// TCP ports that carry SIP (over TCP or TLS; 0 to 8): every segment to
    /// them meets the allowlist, the blocklist and the bans, and a SYN the
    /// SYN budgets. Empty: TCP passes untouched.
    pub tcp_ports: Vec<u16>,
    /// Per source (an IPv4 address, an IPv6 /64): TCP SYNs to the SIP TCP
    /// ports per second and at once, before `syn_rate_limit` drops.
    /// Allowlisted sources skip it.
    pub syn_per_source: RateConfig,
    /// Per CPU: TCP SYNs to the SIP TCP ports from sources neither
    /// allowlisted nor verified, per second and at once, before
    /// `syn_overload` drops.
    pub syn_per_cpu: RateConfig,
}

/// One source's share of the emergency budget when the file says none: a
/// call's INVITE, its retransmissions, ACK and BYE many times over.
pub const DEFAULT_EMERGENCY_PER_SOURCE: RateConfig = RateConfig {
    rate: 10,
    burst: 20,
};

/// The per-CPU budget of emergency calls' packets when the file says none:
/// far above any real emergency traffic, small beside a flood.
pub const DEFAULT_EMERGENCY_BUDGET: RateConfig = RateConfig {
    rate: 200,
    burst: 100,
};

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig {
            sip_ports: vec![5060],
            attach: AttachMode::Auto,
            mode: VerdictMode::Redirect,
            fragments: FragmentPolicy::Drop,
            allowlist: Vec::new(),
            blocklist: Vec::new(),
            scanner_user_agents: DEFAULT_USER_AGENTS.iter().map(|s| s.to_string()).collect(),
            scanner_from_names: DEFAULT_FROM_NAMES.iter().map(|s| s.to_string()).collect(),
            auto_ban: false,
            ban_ttl: Duration::from_secs(3600),
            auto_ban_budget: DEFAULT_AUTO_BAN_BUDGET,
            rate_limits: RateLimits::default(),
            overload_cap_pps: 250_000,
            unverified_cap_pps: DEFAULT_UNVERIFIED_CAP_PPS,
            emergency_numbers: DEFAULT_EMERGENCY_NUMBERS
                .iter()
                .map(|n| n.to_string())
                .collect(),
            emergency_urns: true,
            emergency_keep_bans: false,
            emergency_budget: DEFAULT_EMERGENCY_BUDGET,
            emergency_per_source: DEFAULT_EMERGENCY_PER_SOURCE,
            tcp_ports: DEFAULT_TCP_PORTS.to_vec(),
            syn_per_source: DEFAULT_SYN_PER_SOURCE,
            syn_per_cpu: DEFAULT_SYN_PER_CPU,
        }
    }
}

/// The emergency numbers when neither the file nor the route table names
/// any (the same defaults as the route table's emergency group).
pub const DEFAULT_EMERGENCY_NUMBERS: &[&str] = &["911", "112", "999", "000", "110", "118", "119"];

/// The file as this section sees it: only `[filter]`, the rest ignored.
#[derive(Deserialize, Default)]
struct FileWrapper {
    #[serde(default)]
    filter: FilterSection,
}

/// The `[filter]` table as written, before validation: every key optional,
/// values carrying their place in the file so that a refusal names the
/// line. The appliance deserializes it with the rest of its file and hands
/// it to [`FilterConfig::from_section`].
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FilterSection {
    sip_ports: Option<Spanned<Vec<Spanned<i64>>>>,
    attach: Option<Spanned<AttachMode>>,
    mode: Option<VerdictMode>,
    fragments: Option<FragmentPolicy>,
    #[serde(default)]
    allowlist: Vec<Spanned<String>>,
    #[serde(default)]
    blocklist: Vec<Spanned<String>>,
    scanner_user_agents: Option<Vec<Spanned<String>>>,
    scanner_from_names: Option<Vec<Spanned<String>>>,
    auto_ban: Option<bool>,
    ban_ttl_secs: Option<Spanned<i64>>,
    auto_ban_budget: Option<RawRate>,
    emergency_numbers: Option<Vec<Spanned<String>>>,
    emergency_urns: Option<bool>,
    emergency_keep_bans: Option<Spanned<bool>>,
    emergency_budget: Option<RawRate>,
    emergency_per_source: Option<RawRate>,
    overload_cap_pps: Option<Spanned<i64>>,
    unverified_cap_pps: Option<Spanned<i64>>,
    #[serde(default)]
    rate_limits: RawRateLimits,
    tcp_ports: Option<Spanned<Vec<Spanned<i64>>>>,
    syn_per_source: Option<RawRate>,
    syn_per_cpu: Option<RawRate>,
}

impl FilterSection {
    /// Whether the table sets the per-source budget of `class` (`invite`,
    /// `register`, `other`): what it leaves out, a hardware profile fills.
    pub fn sets_rate_limit(&self, class: &str) -> bool {
        match class {
            "invite" => self.rate_limits.invite.is_some(),
            "register" => self.rate_limits.register.is_some(),
            "other" => self.rate_limits.other.is_some(),
            _ => false,
        }
    }

    /// Whether the table sets `overload_cap_pps`.
    pub fn sets_overload_cap(&self) -> bool {
        self.overload_cap_pps.is_some()
    }

    /// Where `attach` is written, when it is.
    pub fn attach_span(&self) -> Option<Range<usize>> {
        self.attach.as_ref().map(|a| a.span())
    }

    /// Where `sip_ports` is written, when it is.
    pub fn sip_ports_span(&self) -> Option<Range<usize>> {
        self.sip_ports.as_ref().map(|p| p.span())
    }

    /// Where `tcp_ports` is written, when it is.
    pub fn tcp_ports_span(&self) -> Option<Range<usize>> {
        self.tcp_ports.as_ref().map(|p| p.span())
    }

    /// `emergency_keep_bans` and where it is written, when it is.
    pub fn emergency_keep_bans(&self) -> Option<(bool, Range<usize>)> {
        self.emergency_keep_bans
            .as_ref()
            .map(|k| (*k.get_ref(), k.span()))
    }

    /// Where the allowlist entry `index` is written.
    pub fn allowlist_span(&self, index: usize) -> Option<Range<usize>> {
        self.allowlist.get(index).map(|a| a.span())
    }

    /// The keys the table sets, in file order of their definition here
    /// (to say which ones a mode without an XDP filter does not use).
    pub fn keys_set(&self) -> Vec<&'static str> {
        let r = &self.rate_limits;
        [
            ("sip_ports", self.sip_ports.is_some()),
            ("attach", self.attach.is_some()),
            ("mode", self.mode.is_some()),
            ("fragments", self.fragments.is_some()),
            ("allowlist", !self.allowlist.is_empty()),
            ("blocklist", !self.blocklist.is_empty()),
            ("scanner_user_agents", self.scanner_user_agents.is_some()),
            ("scanner_from_names", self.scanner_from_names.is_some()),
            ("auto_ban", self.auto_ban.is_some()),
            ("ban_ttl_secs", self.ban_ttl_secs.is_some()),
            ("auto_ban_budget", self.auto_ban_budget.is_some()),
            ("emergency_numbers", self.emergency_numbers.is_some()),
            ("emergency_urns", self.emergency_urns.is_some()),
            ("emergency_keep_bans", self.emergency_keep_bans.is_some()),
            ("emergency_budget", self.emergency_budget.is_some()),
            ("emergency_per_source", self.emergency_per_source.is_some()),
            ("overload_cap_pps", self.overload_cap_pps.is_some()),
            ("unverified_cap_pps", self.unverified_cap_pps.is_some()),
            (
                "rate_limits",
                r.invite.is_some() || r.register.is_some() || r.other.is_some(),
            ),
            ("tcp_ports", self.tcp_ports.is_some()),
            ("syn_per_source", self.syn_per_source.is_some()),
            ("syn_per_cpu", self.syn_per_cpu.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(k, _)| k)
        .collect()
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRateLimits {
    invite: Option<RawRate>,
    register: Option<RawRate>,
    other: Option<RawRate>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    rate: Spanned<i64>,
    burst: Spanned<i64>,
}

/// The widest allowlist entries taken: an IPv4 /8 and an IPv6 /16. A wider
/// one (`0.0.0.0/0` above all) trusts a good part of the internet, turning
/// the filter off for it; it is far more likely a typo than a wish.
pub const WIDEST_ALLOW_V4: u8 = 8;
/// See [`WIDEST_ALLOW_V4`].
pub const WIDEST_ALLOW_V6: u8 = 16;

/// Refuses an allowlist entry wider than [`WIDEST_ALLOW_V4`] /
/// [`WIDEST_ALLOW_V6`], saying why.
pub fn check_allow_breadth(c: &Cidr) -> Result<(), String> {
    let (widest, family) = if c.addr.is_ipv4() {
        (WIDEST_ALLOW_V4, "IPv4")
    } else {
        (WIDEST_ALLOW_V6, "IPv6")
    };
    if c.prefix < widest {
        return Err(format!(
            "{c} would trust a /{} ({family}): the filter would let floods and scanners \
             from all of it through; allowlist entries may be at most a /{widest}",
            c.prefix
        ));
    }
    Ok(())
}

impl FilterConfig {
    /// Reads the `[filter]` table of a configuration file (defaults when absent).
    pub fn from_file(path: impl AsRef<Path>) -> Result<FilterConfig, ConfigError> {
        Self::from_source(&SourceFile::read(path)?)
    }

    /// Reads the `[filter]` table of a file already in memory.
    pub fn from_source(src: &SourceFile) -> Result<FilterConfig, ConfigError> {
        let raw = src.parse_toml::<FileWrapper>()?.filter;
        Self::from_section(src, Some(&raw))
    }

    /// Validates a `[filter]` table read from `src` (absent: the defaults).
    /// Errors name the file, the line and the reason.
    pub fn from_section(
        src: &SourceFile,
        section: Option<&FilterSection>,
    ) -> Result<FilterConfig, ConfigError> {
        let default = FilterSection::default();
        let raw = section.unwrap_or(&default);
        let mut cfg = FilterConfig::default();
        let number = |v: &Spanned<i64>, what: &str, min: i64, max: i64| {
            let n = *v.get_ref();
            if n < min || n > max {
                Err(src.error_at(
                    v.span(),
                    format!("{what} {n} is out of range: it must be {min} to {max}"),
                ))
            } else {
                Ok(n)
            }
        };

        if let Some(ports) = &raw.sip_ports {
            let list = ports.get_ref();
            if list.is_empty() || list.len() > abi::MAX_SIP_PORTS {
                return Err(src.error_at(
                    ports.span(),
                    format!(
                        "sip_ports has {} ports; it takes 1 to {}",
                        list.len(),
                        abi::MAX_SIP_PORTS
                    ),
                ));
            }
            cfg.sip_ports.clear();
            for p in list {
                let port = number(p, "SIP port", 1, 65535)? as u16;
                if cfg.sip_ports.contains(&port) {
                    return Err(src.error_at(p.span(), format!("SIP port {port} is listed twice")));
                }
                cfg.sip_ports.push(port);
            }
        }
        if let Some(a) = &raw.attach {
            cfg.attach = *a.get_ref();
        }
        if let Some(m) = raw.mode {
            cfg.mode = m;
        }
        if let Some(f) = raw.fragments {
            cfg.fragments = f;
        }
        let cidrs = |list: &[Spanned<String>], what: &str| -> Result<Vec<Cidr>, ConfigError> {
            if list.len() > abi::LPM_ENTRIES {
                return Err(src.error_at(
                    list[abi::LPM_ENTRIES].span(),
                    format!("{what} has more than {} entries", abi::LPM_ENTRIES),
                ));
            }
            list.iter()
                .map(|s| {
                    s.get_ref()
                        .parse::<Cidr>()
                        .map_err(|e| src.error_at(s.span(), format!("{what}: {e}")))
                })
                .collect()
        };
        cfg.allowlist = cidrs(&raw.allowlist, "allowlist")?;
        for (c, s) in cfg.allowlist.iter().zip(&raw.allowlist) {
            check_allow_breadth(c)
                .map_err(|e| src.error_at(s.span(), format!("allowlist: {e}")))?;
        }
        cfg.blocklist = cidrs(&raw.blocklist, "blocklist")?;
        let signatures =
            |list: &[Spanned<String>], what: &str| -> Result<Vec<String>, ConfigError> {
                list.iter()
                    .map(|s| {
                        check_signature(s.get_ref())
                            .map(|()| s.get_ref().clone())
                            .map_err(|e| src.error_at(s.span(), format!("{what}: {e}")))
                    })
                    .collect()
            };
        if let Some(list) = &raw.scanner_user_agents {
            cfg.scanner_user_agents = signatures(list, "scanner_user_agents")?;
        }
        if let Some(list) = &raw.scanner_from_names {
            cfg.scanner_from_names = signatures(list, "scanner_from_names")?;
        }
        let total = cfg.scanner_user_agents.len() + cfg.scanner_from_names.len();
        if total > abi::MAX_SIGNATURES {
            let span = raw
                .scanner_user_agents
                .as_ref()
                .and_then(|l| l.last())
                .or(raw.scanner_from_names.as_ref().and_then(|l| l.last()))
                .map(|s| s.span())
                .unwrap_or(0..0);
            return Err(src.error_at(
                span,
                format!(
                    "{total} scanner signatures; the filter holds at most {}",
                    abi::MAX_SIGNATURES
                ),
            ));
        }
        if let Some(b) = raw.auto_ban {
            cfg.auto_ban = b;
        }
        if let Some(t) = &raw.ban_ttl_secs {
            cfg.ban_ttl =
                Duration::from_secs(number(t, "ban_ttl_secs", 1, 10 * 365 * 86400)? as u64);
        }
        if let Some(c) = &raw.overload_cap_pps {
            cfg.overload_cap_pps = number(c, "overload_cap_pps", 1, u32::MAX as i64)? as u32;
        }
        if let Some(c) = &raw.unverified_cap_pps {
            if *c.get_ref() == 0 {
                return Err(src.error_at(c.span(), UNVERIFIED_CAP_ZERO.to_string()));
            }
            cfg.unverified_cap_pps = number(c, "unverified_cap_pps", 1, u32::MAX as i64)? as u32;
        }
        let rate = |r: &Option<RawRate>, what: &str, default: RateConfig, max: u32| match r {
            None => Ok(default),
            Some(r) => Ok(RateConfig {
                rate: number(&r.rate, &format!("{what}.rate"), 1, max as i64)? as u32,
                burst: number(&r.burst, &format!("{what}.burst"), 1, max as i64)? as u32,
            }),
        };
        let d = RateLimits::default();
        cfg.rate_limits = RateLimits {
            invite: rate(
                &raw.rate_limits.invite,
                "rate_limits.invite",
                d.invite,
                MAX_RATE,
            )?,
            register: rate(
                &raw.rate_limits.register,
                "rate_limits.register",
                d.register,
                MAX_RATE,
            )?,
            other: rate(
                &raw.rate_limits.other,
                "rate_limits.other",
                d.other,
                MAX_RATE,
            )?,
        };
        cfg.auto_ban_budget = rate(
            &raw.auto_ban_budget,
            "auto_ban_budget",
            DEFAULT_AUTO_BAN_BUDGET,
            MAX_AUTO_BAN_BUDGET,
        )?;
        cfg.emergency_budget = rate(
            &raw.emergency_budget,
            "emergency_budget",
            DEFAULT_EMERGENCY_BUDGET,
            MAX_RATE,
        )?;
        cfg.emergency_per_source = rate(
            &raw.emergency_per_source,
            "emergency_per_source",
            DEFAULT_EMERGENCY_PER_SOURCE,
            MAX_RATE,
        )?;
        cfg.syn_per_source = rate(
            &raw.syn_per_source,
            "syn_per_source",
            DEFAULT_SYN_PER_SOURCE,
            MAX_RATE,
        )?;
        cfg.syn_per_cpu = rate(
            &raw.syn_per_cpu,
            "syn_per_cpu",
            DEFAULT_SYN_PER_CPU,
            MAX_RATE,
        )?;
        if let Some(ports) = &raw.tcp_ports {
            let list = ports.get_ref();
            if list.len() > abi::MAX_SIP_PORTS {
                return Err(src.error_at(
                    ports.span(),
                    format!(
                        "tcp_ports has {} ports; it takes 0 to {}",
                        list.len(),
                        abi::MAX_SIP_PORTS
                    ),
                ));
            }
            cfg.tcp_ports.clear();
            for p in list {
                let port = number(p, "SIP TCP port", 1, 65535)? as u16;
                if cfg.tcp_ports.contains(&port) {
                    return Err(
                        src.error_at(p.span(), format!("SIP TCP port {port} is listed twice"))
                    );
                }
                cfg.tcp_ports.push(port);
            }
        }
        if let Some(list) = &raw.emergency_numbers {
            cfg.emergency_numbers = list.iter().map(|n| n.get_ref().clone()).collect();
            if let Err(e) = crate::maps::check_emergency_numbers(&cfg.emergency_numbers) {
                let at = list
                    .iter()
                    .find(|n| crate::maps::check_emergency_numbers(&[n.get_ref().clone()]).is_err())
                    .map(|n| n.span())
                    .or_else(|| list.last().map(|n| n.span()))
                    .unwrap_or(0..0);
                return Err(src.error_at(at, e));
            }
        }
        if let Some(u) = raw.emergency_urns {
            cfg.emergency_urns = u;
        }
        if let Some(k) = &raw.emergency_keep_bans {
            cfg.emergency_keep_bans = *k.get_ref();
        }
        Ok(cfg)
    }

    /// Checks a configuration built in code (the file path checks as it reads).
    pub fn validate(&self) -> Result<(), String> {
        if self.sip_ports.is_empty() || self.sip_ports.len() > abi::MAX_SIP_PORTS {
            return Err(format!(
                "{} SIP ports; the filter takes 1 to {}",
                self.sip_ports.len(),
                abi::MAX_SIP_PORTS
            ));
        }
        if self.sip_ports.contains(&0) {
            return Err("SIP port 0 is not a port".into());
        }
        if self.tcp_ports.len() > abi::MAX_SIP_PORTS {
            return Err(format!(
                "{} SIP TCP ports; the filter takes 0 to {}",
                self.tcp_ports.len(),
                abi::MAX_SIP_PORTS
            ));
        }
        if self.tcp_ports.contains(&0) {
            return Err("SIP TCP port 0 is not a port".into());
        }
        for s in self
            .scanner_user_agents
            .iter()
            .chain(&self.scanner_from_names)
        {
            check_signature(s)?;
        }
        let total = self.scanner_user_agents.len() + self.scanner_from_names.len();
        if total > abi::MAX_SIGNATURES {
            return Err(format!(
                "{total} scanner signatures; the filter holds at most {}",
                abi::MAX_SIGNATURES
            ));
        }
        for (class, r) in [
            ("invite", self.rate_limits.invite),
            ("register", self.rate_limits.register),
            ("other", self.rate_limits.other),
        ] {
            if r.rate == 0 || r.burst == 0 || r.rate > MAX_RATE || r.burst > MAX_RATE {
                return Err(format!(
                    "rate_limits.{class}: rate {} and burst {} must be 1 to {MAX_RATE}",
                    r.rate, r.burst
                ));
            }
        }
        let b = self.auto_ban_budget;
        if b.rate == 0
            || b.burst == 0
            || b.rate > MAX_AUTO_BAN_BUDGET
            || b.burst > MAX_AUTO_BAN_BUDGET
        {
            return Err(format!(
                "auto_ban_budget: rate {} and burst {} must be 1 to {MAX_AUTO_BAN_BUDGET}",
                b.rate, b.burst
            ));
        }
        if self.overload_cap_pps == 0 {
            return Err("overload_cap_pps must be at least 1".into());
        }
        crate::maps::check_emergency_numbers(&self.emergency_numbers)?;
        for (name, e) in [
            ("emergency_budget", self.emergency_budget),
            ("emergency_per_source", self.emergency_per_source),
            ("syn_per_source", self.syn_per_source),
            ("syn_per_cpu", self.syn_per_cpu),
        ] {
            if e.rate == 0 || e.burst == 0 || e.rate > MAX_RATE || e.burst > MAX_RATE {
                return Err(format!(
                    "{name}: rate {} and burst {} must be 1 to {MAX_RATE}",
                    e.rate, e.burst
                ));
            }
        }
        if self.unverified_cap_pps == 0 {
            return Err(UNVERIFIED_CAP_ZERO.into());
        }
        if self.ban_ttl.is_zero() {
            return Err("ban_ttl must be at least one second".into());
        }
        for list in [&self.allowlist, &self.blocklist] {
            if list.len() > abi::LPM_ENTRIES {
                return Err(format!("more than {} list entries", abi::LPM_ENTRIES));
            }
        }
        for c in &self.allowlist {
            check_allow_breadth(c).map_err(|e| format!("allowlist: {e}"))?;
        }
        Ok(())
    }

    /// The keys whose value differs between `self` (running) and `new`, as
    /// the `[filter]` table names them: what a reload changes.
    pub fn changes(&self, new: &FilterConfig) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut differs = |key: &'static str, changed: bool| {
            if changed {
                out.push(key);
            }
        };
        differs("sip_ports", self.sip_ports != new.sip_ports);
        differs("attach", self.attach != new.attach);
        differs("mode", self.mode != new.mode);
        differs("fragments", self.fragments != new.fragments);
        differs("allowlist", self.allowlist != new.allowlist);
        differs("blocklist", self.blocklist != new.blocklist);
        differs(
            "scanner_user_agents",
            self.scanner_user_agents != new.scanner_user_agents,
        );
        differs(
            "scanner_from_names",
            self.scanner_from_names != new.scanner_from_names,
        );
        differs("auto_ban", self.auto_ban != new.auto_ban);
        differs("ban_ttl_secs", self.ban_ttl != new.ban_ttl);
        differs(
            "auto_ban_budget",
            self.auto_ban_budget != new.auto_ban_budget,
        );
        differs("rate_limits", self.rate_limits != new.rate_limits);
        differs(
            "overload_cap_pps",
            self.overload_cap_pps != new.overload_cap_pps,
        );
        differs(
            "unverified_cap_pps",
            self.unverified_cap_pps != new.unverified_cap_pps,
        );
        differs(
            "emergency_numbers",
            self.emergency_numbers != new.emergency_numbers,
        );
        differs("emergency_urns", self.emergency_urns != new.emergency_urns);
        differs(
            "emergency_keep_bans",
            self.emergency_keep_bans != new.emergency_keep_bans,
        );
        differs(
            "emergency_budget",
            self.emergency_budget != new.emergency_budget,
        );
        differs(
            "emergency_per_source",
            self.emergency_per_source != new.emergency_per_source,
        );
        differs("tcp_ports", self.tcp_ports != new.tcp_ports);
        differs("syn_per_source", self.syn_per_source != new.syn_per_source);
        differs("syn_per_cpu", self.syn_per_cpu != new.syn_per_cpu);
        out
    }

    /// The `config` map entry.
    pub fn to_abi(&self) -> abi::Config {
        let mut c = abi::Config::default();
        for (slot, port) in c.sip_ports.iter_mut().zip(&self.sip_ports) {
            *slot = *port;
        }
        c.n_sip_ports = self.sip_ports.len().min(abi::MAX_SIP_PORTS) as u32;
        for (slot, port) in c.tcp_ports.iter_mut().zip(&self.tcp_ports) {
            *slot = *port;
        }
        c.n_tcp_ports = self.tcp_ports.len().min(abi::MAX_SIP_PORTS) as u32;
        c.syn = self.syn_per_source.to_abi();
        c.syn_cpu = self.syn_per_cpu.to_abi();
        if self.fragments == FragmentPolicy::Pass {
            c.flags |= abi::CFG_FRAGMENTS_PASS;
        }
        if self.auto_ban {
            c.flags |= abi::CFG_AUTO_BAN;
        }
        if self.mode == VerdictMode::Redirect {
            c.flags |= abi::CFG_REDIRECT;
        }
        if self.emergency_urns {
            c.flags |= abi::CFG_EMERGENCY_URNS;
        }
        if self.emergency_keep_bans {
            c.flags |= abi::CFG_EMERGENCY_KEEP_BANS;
        }
        c.emergency = self.emergency_budget.to_abi();
        c.ban_ttl_ns = self.ban_ttl.as_nanos().min(u64::MAX as u128) as u64;
        c.rates[abi::CLASS_INVITE] = self.rate_limits.invite.to_abi();
        c.rates[abi::CLASS_REGISTER] = self.rate_limits.register.to_abi();
        c.rates[abi::CLASS_OTHER] = self.rate_limits.other.to_abi();
        c.rates[abi::CLASS_EMERGENCY] = self.emergency_per_source.to_abi();
        c.overload_cap = self.overload_cap_pps as u64;
        c.unverified = unverified_budget(self.unverified_cap_pps);
        c.auto_ban = self.auto_ban_budget.to_abi();
        for (set, list) in [
            (0, &self.scanner_user_agents),
            (1, &self.scanner_from_names),
        ] {
            for sig in list.iter() {
                if let Some(&b) = sig.as_bytes().first() {
                    let folded = b.to_ascii_lowercase() | 0x20;
                    c.sig_first[set][(folded >> 6) as usize] |= 1 << (folded & 63);
                }
            }
        }
        c
    }

    /// The `signatures` map entries, in order (User-Agents, then From names).
    pub fn signatures(&self) -> Vec<abi::Signature> {
        self.scanner_user_agents
            .iter()
            .map(|s| signature(s, abi::SIG_USER_AGENT))
            .chain(
                self.scanner_from_names
                    .iter()
                    .map(|s| signature(s, abi::SIG_FROM_NAME)),
            )
            .collect()
    }
}

/// Why an `unverified_cap_pps` of 0 is refused, and what to write instead.
const UNVERIFIED_CAP_ZERO: &str = "unverified_cap_pps 0 would drop every packet from sources \
     that are neither allowlisted nor verified, including a new caller's first INVITE; \
     it must be at least 1 (to effectively disable the budget, give a large value \
     such as 4294967295)";

/// The per-CPU GCRA of the unverified budget: `cap` per second, with a
/// burst of a tenth of a second's worth. Evenly admitted, a spoofed flood
/// reaches the workers at the budget's rate instead of in a one-second
/// window's worth at line rate at the start of each window, which would
/// overflow their RX rings and lose verified packets with it.
pub fn unverified_budget(cap: u32) -> abi::Rate {
    RateConfig {
        rate: cap,
        burst: (cap / 10).max(1),
    }
    .to_abi()
}

/// A signature must be 1 to 32 printable ASCII bytes.
fn check_signature(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("an empty signature would match everything".into());
    }
    if s.len() > abi::SIGNATURE_MAX_LEN {
        return Err(format!(
            "signature {s:?} is {} bytes long; the limit is {}",
            s.len(),
            abi::SIGNATURE_MAX_LEN
        ));
    }
    if let Some(c) = s.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(format!(
            "signature {s:?} holds {c:?}; only printable ASCII is matched"
        ));
    }
    Ok(())
}

/// The map form of one signature: lower-case words, a mask over its bytes,
/// and a fold bit at its letters (see `struct dce_signature`); `kinds` are
/// `SIG_*` bits (they fit the struct's byte).
pub fn signature(text: &str, kinds: u32) -> abi::Signature {
    let mut word = [0u8; abi::SIGNATURE_MAX_LEN];
    let mut mask = [0u8; abi::SIGNATURE_MAX_LEN];
    let mut fold = [0u8; abi::SIGNATURE_MAX_LEN];
    for (i, b) in text.bytes().take(abi::SIGNATURE_MAX_LEN).enumerate() {
        word[i] = b.to_ascii_lowercase();
        mask[i] = 0xff;
        fold[i] = if b.is_ascii_alphabetic() { 0x20 } else { 0 };
    }
    let words = |bytes: [u8; abi::SIGNATURE_MAX_LEN]| {
        let mut out = [0u64; abi::SIGNATURE_WORDS];
        for (w, chunk) in out.iter_mut().zip(bytes.chunks_exact(8)) {
            *w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        }
        out
    };
    abi::Signature {
        len: text.len().min(abi::SIGNATURE_MAX_LEN) as u8,
        kinds: kinds as u8,
        _pad: [0; 6],
        word: words(word),
        mask: words(mask),
        fold: words(fold),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FilterConfig, ConfigError> {
        FilterConfig::from_source(&SourceFile::from_text("edge.toml", text))
    }

    #[test]
    fn missing_table_gives_the_defaults() {
        let cfg = parse("[routes]\nx = 1\n").unwrap();
        assert_eq!(cfg, FilterConfig::default());
        assert_eq!(cfg.sip_ports, vec![5060]);
        assert_eq!(cfg.scanner_user_agents.len(), 10);
    }

    #[test]
    fn full_table_is_read_and_other_tables_ignored() {
        let cfg = parse(
            r#"
[proxy]
anything = "goes"

[filter]
sip_ports = [5060, 5080]
attach = "generic"
mode = "pass"
fragments = "pass"
allowlist = ["198.18.0.0/24", "2001:db8::/32", "198.18.9.9"]
blocklist = ["203.0.113.0/24"]
scanner_user_agents = ["evil-ua"]
scanner_from_names = ["sipvicious", "x"]
auto_ban = false
ban_ttl_secs = 60
auto_ban_budget = { rate = 2, burst = 5 }
overload_cap_pps = 1000
unverified_cap_pps = 300
rate_limits.invite = { rate = 5, burst = 10 }
rate_limits.register = { rate = 1, burst = 2 }

[routes]
table = "x"
"#,
        )
        .unwrap();
        assert_eq!(cfg.sip_ports, vec![5060, 5080]);
        assert_eq!(cfg.attach, AttachMode::Generic);
        assert_eq!(cfg.mode, VerdictMode::Pass);
        assert_eq!(cfg.fragments, FragmentPolicy::Pass);
        assert_eq!(cfg.allowlist.len(), 3);
        assert_eq!(cfg.allowlist[2].to_string(), "198.18.9.9/32");
        assert_eq!(cfg.blocklist[0].to_string(), "203.0.113.0/24");
        assert_eq!(cfg.scanner_user_agents, vec!["evil-ua"]);
        assert!(!cfg.auto_ban);
        assert_eq!(cfg.ban_ttl, Duration::from_secs(60));
        assert_eq!(cfg.auto_ban_budget, RateConfig { rate: 2, burst: 5 });
        assert_eq!(cfg.overload_cap_pps, 1000);
        assert_eq!(cfg.unverified_cap_pps, 300);
        assert_eq!(cfg.rate_limits.invite, RateConfig { rate: 5, burst: 10 });
        assert_eq!(cfg.rate_limits.other, RateLimits::default().other);
    }

    fn refused(text: &str) -> ConfigError {
        parse(text).expect_err("must be refused")
    }

    #[test]
    fn bad_cidr_is_refused_with_file_and_line() {
        let e = refused("[filter]\nallowlist = [\"198.18.0.0/24\",\n  \"198.18.0.300/24\"]\n");
        assert_eq!((e.file.to_str(), e.line), (Some("edge.toml"), 3), "{e}");
        assert!(e.reason.contains("not an IPv4 or IPv6"), "{e}");
    }

    #[test]
    fn cidr_with_host_bits_is_refused() {
        let e = refused("[filter]\nblocklist = [\"198.18.0.1/24\"]\n");
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("host bits"), "{e}");
    }

    #[test]
    fn too_long_signature_is_refused() {
        let long = "x".repeat(33);
        let e = refused(&format!("[filter]\n\nscanner_user_agents = [\"{long}\"]\n"));
        assert_eq!(e.line, 3);
        assert!(
            e.reason.contains("33 bytes") && e.reason.contains("32"),
            "{e}"
        );
    }

    #[test]
    fn zero_rate_is_refused() {
        let e = refused("[filter]\nrate_limits.invite = { rate = 0, burst = 5 }\n");
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("rate_limits.invite.rate 0"), "{e}");
    }

    #[test]
    fn zero_unverified_cap_is_refused_with_the_way_to_disable_it() {
        let e = refused("[filter]\noverload_cap_pps = 5\nunverified_cap_pps = 0\n");
        assert_eq!((e.file.to_str(), e.line), (Some("edge.toml"), 3), "{e}");
        assert!(
            e.reason.contains("unverified_cap_pps 0") && e.reason.contains("4294967295"),
            "{e}"
        );
        let code = FilterConfig {
            unverified_cap_pps: 0,
            ..FilterConfig::default()
        };
        assert!(code.validate().unwrap_err().contains("unverified_cap_pps"));
    }

    #[test]
    fn unverified_cap_above_the_range_is_refused() {
        let e = refused("[filter]\nunverified_cap_pps = 4294967296\n");
        assert_eq!(e.line, 2, "{e}");
        assert!(e.reason.contains("unverified_cap_pps 4294967296"), "{e}");
    }

    #[test]
    fn unverified_budget_admits_a_tenth_of_a_second_at_once() {
        assert_eq!(FilterConfig::default().unverified_cap_pps, 20_000);
        let r = FilterConfig::default().to_abi().unverified;
        assert_eq!(r.interval_ns, 50_000, "one per 50 us at 20,000/s");
        assert_eq!(r.tolerance_ns, 1999 * 50_000, "a burst of 2,000");
        let one = unverified_budget(1);
        assert_eq!((one.interval_ns, one.tolerance_ns), (1_000_000_000, 0));
        let most = unverified_budget(u32::MAX);
        assert_eq!(most.interval_ns, 1, "the interval never reaches 0");
    }

    #[test]
    fn auto_ban_budget_defaults_to_ten_a_second_and_reaches_the_program() {
        let cfg = FilterConfig::default();
        assert_eq!(
            cfg.auto_ban_budget,
            RateConfig {
                rate: 10,
                burst: 10
            }
        );
        let r = cfg.to_abi().auto_ban;
        assert_eq!(r.interval_ns, 100_000_000);
        assert_eq!(r.tolerance_ns, 9 * 100_000_000);
    }

    #[test]
    fn auto_ban_budget_out_of_range_is_refused_with_its_line() {
        let e = refused("[filter]\n\nauto_ban_budget = { rate = 0, burst = 5 }\n");
        assert_eq!(e.line, 3, "{e}");
        assert!(e.reason.contains("auto_ban_budget.rate 0"), "{e}");
        let e = refused("[filter]\nauto_ban_budget = { rate = 1, burst = 65537 }\n");
        assert_eq!(e.line, 2, "{e}");
        assert!(
            e.reason.contains("auto_ban_budget.burst 65537") && e.reason.contains("65536"),
            "{e}"
        );
        let e = refused("[filter]\nauto_ban_budget = { rate = 1 }\n");
        assert_eq!(e.line, 2, "{e}");
        let code = FilterConfig {
            auto_ban_budget: RateConfig { rate: 10, burst: 0 },
            ..FilterConfig::default()
        };
        assert!(code.validate().unwrap_err().contains("auto_ban_budget"));
    }

    #[test]
    fn an_allowlist_entry_wider_than_a_slash_8_is_refused_with_its_line() {
        let e = refused("[filter]\nallowlist = [\n  \"0.0.0.0/0\"]\n");
        assert_eq!(e.line, 3, "{e}");
        assert!(
            e.reason.contains("0.0.0.0/0") && e.reason.contains("/8"),
            "{e}"
        );
        let e = refused("[filter]\nallowlist = [\"8000::/1\"]\n");
        assert!(e.reason.contains("/16"), "{e}");
        assert!(parse("[filter]\nallowlist = [\"10.0.0.0/8\", \"2001::/16\"]\n").is_ok());
        let code = FilterConfig {
            allowlist: vec!["0.0.0.0/0".parse().unwrap()],
            ..FilterConfig::default()
        };
        assert!(code.validate().unwrap_err().contains("allowlist"));
        // The blocklist may be as wide as an operator likes.
        assert!(parse("[filter]\nblocklist = [\"0.0.0.0/0\"]\n").is_ok());
    }

    #[test]
    fn changes_name_the_keys_that_differ() {
        let old = FilterConfig::default();
        let new = parse(
            "[filter]\nscanner_user_agents = [\"evil\"]\nrate_limits.invite = { rate = 1, burst = 1 }\n",
        )
        .unwrap();
        assert_eq!(
            old.changes(&new),
            vec!["scanner_user_agents", "rate_limits"]
        );
        assert!(old.changes(&old).is_empty());
    }

    #[test]
    fn a_section_says_which_keys_it_sets() {
        let src = SourceFile::from_text(
            "edge.toml",
            "[filter]\nattach = \"native\"\nrate_limits.other = { rate = 1, burst = 1 }\n",
        );
        let f = src.parse_toml::<FileWrapper>().unwrap().filter;
        assert_eq!(f.keys_set(), vec!["attach", "rate_limits"]);
        assert!(f.sets_rate_limit("other") && !f.sets_rate_limit("invite"));
        assert_eq!(
            config::line_column(src.text(), f.attach_span().unwrap().start).0,
            2
        );
    }

    #[test]
    fn tcp_ports_and_syn_budgets_default_and_reach_the_program() {
        let cfg = FilterConfig::default();
        assert_eq!(cfg.tcp_ports, vec![5060, 5061]);
        let c = cfg.to_abi();
        assert_eq!((c.n_tcp_ports, &c.tcp_ports[..2]), (2, &[5060, 5061][..]));
        assert_eq!(c.syn, DEFAULT_SYN_PER_SOURCE.to_abi());
        assert_eq!(c.syn_cpu, DEFAULT_SYN_PER_CPU.to_abi());
        let cfg = parse(
            "[filter]\ntcp_ports = [5070]\nsyn_per_source = { rate = 2, burst = 3 }\n\
             syn_per_cpu = { rate = 100, burst = 10 }\n",
        )
        .unwrap();
        assert_eq!(cfg.tcp_ports, vec![5070]);
        assert_eq!(cfg.syn_per_source, RateConfig { rate: 2, burst: 3 });
        assert_eq!(
            cfg.syn_per_cpu,
            RateConfig {
                rate: 100,
                burst: 10
            }
        );
        assert_eq!(
            FilterConfig::default().changes(&cfg),
            vec!["tcp_ports", "syn_per_source", "syn_per_cpu"]
        );
        let none = parse("[filter]\ntcp_ports = []\n").unwrap();
        assert_eq!(none.to_abi().n_tcp_ports, 0, "empty: TCP passes untouched");
    }

    #[test]
    fn bad_tcp_ports_and_syn_budgets_are_refused_with_their_line() {
        let e = refused("[filter]\n\ntcp_ports = [5060, 5060]\n");
        assert_eq!((e.file.to_str(), e.line), (Some("edge.toml"), 3), "{e}");
        assert!(e.reason.contains("5060 is listed twice"), "{e}");
        let e = refused("[filter]\ntcp_ports = [0]\n");
        assert_eq!(e.line, 2, "{e}");
        assert!(e.reason.contains("SIP TCP port 0"), "{e}");
        let e = refused("[filter]\ntcp_ports = [1,2,3,4,5,6,7,8,9]\n");
        assert!(e.reason.contains("9 ports"), "{e}");
        let e = refused("[filter]\nsyn_per_source = { rate = 0, burst = 5 }\n");
        assert_eq!(e.line, 2, "{e}");
        assert!(e.reason.contains("syn_per_source.rate 0"), "{e}");
        let e = refused("[filter]\n\n\nsyn_per_cpu = { rate = 5, burst = 10000001 }\n");
        assert_eq!(e.line, 4, "{e}");
        assert!(e.reason.contains("syn_per_cpu.burst 10000001"), "{e}");
        let code = FilterConfig {
            syn_per_cpu: RateConfig { rate: 0, burst: 1 },
            ..FilterConfig::default()
        };
        assert!(code.validate().unwrap_err().contains("syn_per_cpu"));
        let code = FilterConfig {
            tcp_ports: vec![0],
            ..FilterConfig::default()
        };
        assert!(code.validate().unwrap_err().contains("TCP port 0"));
    }

    #[test]
    fn more_than_eight_ports_is_refused() {
        let e = refused("[filter]\nsip_ports = [1,2,3,4,5,6,7,8,9]\n");
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("9 ports"), "{e}");
    }

    #[test]
    fn unknown_key_is_refused() {
        let e = refused("[filter]\nsip_port = [5060]\n");
        assert_eq!(e.line, 2, "{e}");
        assert!(e.reason.contains("sip_port"), "{e}");
    }

    #[test]
    fn bad_attach_mode_is_refused() {
        let e = refused("[filter]\nattach = \"fast\"\n");
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn gcra_form_of_a_budget() {
        let r = RateConfig { rate: 10, burst: 5 }.to_abi();
        assert_eq!(r.interval_ns, 100_000_000);
        assert_eq!(r.tolerance_ns, 400_000_000);
    }

    #[test]
    fn signature_words_fold_letters_only() {
        let s = signature("sip-Scan", abi::SIG_USER_AGENT);
        assert_eq!(s.len, 8);
        assert_eq!(s.word[0], u64::from_le_bytes(*b"sip-scan"));
        assert_eq!(s.mask[0], u64::MAX);
        assert_eq!(s.mask[1], 0);
        // '-' is not folded, letters are.
        assert_eq!(
            s.fold[0].to_le_bytes(),
            [0x20, 0x20, 0x20, 0, 0x20, 0x20, 0x20, 0x20]
        );
    }
}
