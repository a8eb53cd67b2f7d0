//! Naming the profile that fits a host.
//!
//! Every (interface, profile) pair is scored on seven criteria, each worth
//! a fixed number of points out of 100:
//!
//! | criterion | points | met when |
//! |---|---|---|
//! | driver | 35 | the interface's driver is one of the profile's `nic_drivers` |
//! | cores | 25 | the host has at least the profile's `cores` online (its worker cores exist) |
//! | link speed | 15 | the link speed equals the profile's (unknown: not met) |
//! | XDP mode | 10 | native profiles: the driver has native XDP on this kernel; generic: always |
//! | AF_XDP | 5 | zero-copy profiles: the driver has zero-copy on this kernel; copy: always |
//! | clock | 5 | the CPU clock is at least the profile's minimum (unknown: not met) |
//! | queues | 5 | the NIC can give at least the profile's queues |
//!
//! The best pair has the highest score; among equal scores the more
//! demanding profile (more cores, then faster link) wins, so a box is named
//! for the largest tier it fully meets. The driver outweighs everything
//! else because it decides the data path; cores outweigh link speed because
//! a profile whose worker cores do not exist cannot run at all, while a
//! faster link than the profile's only leaves headroom.

use serde::Serialize;

use super::drivers::Support;
use super::host::{HostFacts, Interface};
use super::schema::{AfXdpMode, Hardware, Profile, XdpMode};

/// Points of each criterion; they add up to [`MAX_SCORE`].
pub const WEIGHTS: Weights = Weights {
    driver: 35,
    cores: 25,
    link_speed: 15,
    xdp_mode: 10,
    af_xdp: 5,
    clock: 5,
    queues: 5,
};

/// The score of a host that meets every criterion.
pub const MAX_SCORE: u32 = 100;

/// Points per criterion.
#[derive(Debug, Clone, Copy)]
pub struct Weights {
    /// Driver among the profile's.
    pub driver: u32,
    /// Enough online CPUs.
    pub cores: u32,
    /// Same link speed.
    pub link_speed: u32,
    /// XDP mode available.
    pub xdp_mode: u32,
    /// AF_XDP mode available.
    pub af_xdp: u32,
    /// Fast enough clock.
    pub clock: u32,
    /// Enough NIC queues.
    pub queues: u32,
}

/// Whether a criterion holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Met {
    /// It holds.
    Yes,
    /// It does not.
    No,
    /// The host did not say.
    Unknown,
}

/// One criterion of a match.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Criterion {
    /// Which (`driver`, `cores`, `link speed`, ...).
    pub what: &'static str,
    /// Points it is worth.
    pub weight: u32,
    /// Whether it holds.
    pub met: Met,
    /// The host's value against the profile's.
    pub detail: String,
}

/// How well one interface of the host fits one profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileMatch {
    /// The profile's name.
    pub profile: String,
    /// The interface scored.
    pub interface: String,
    /// Points of the criteria met.
    pub score: u32,
    /// Every criterion, met or not.
    pub criteria: Vec<Criterion>,
    /// The profile's band and what its target rests on
    /// ([`crate::Band::basis_line`]).
    pub band: String,
    #[serde(skip)]
    rank: (u32, u32, u32),
}

impl ProfileMatch {
    /// The criteria not met (or unknown): what does not match.
    pub fn misses(&self) -> impl Iterator<Item = &Criterion> {
        self.criteria.iter().filter(|c| c.met != Met::Yes)
    }

    /// True when every criterion is met.
    pub fn is_full(&self) -> bool {
        self.score == MAX_SCORE
    }
}

/// The outcome of detection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    /// The host as read.
    pub host: HostFacts,
    /// The best pair, if the host has any Ethernet interface.
    pub best: Option<ProfileMatch>,
    /// Every pair, best first.
    pub candidates: Vec<ProfileMatch>,
}

fn criterion(what: &'static str, weight: u32, met: Met, detail: String) -> Criterion {
    Criterion {
        what,
        weight,
        met,
        detail,
    }
}

fn yes_no(b: bool) -> Met {
    if b {
        Met::Yes
    } else {
        Met::No
    }
}

/// Scores one interface of `host` against `profile`.
pub fn score(host: &HostFacts, iface: &Interface, profile: &Profile) -> ProfileMatch {
    let hw = profile.hardware();
    let name = profile.name();
    let criteria = vec![
        driver(iface, hw, name),
        cores(host, hw, name),
        link_speed(iface, hw, name),
        xdp_mode(iface, hw, name),
        af_xdp(iface, hw, name),
        clock(host, hw, name),
        queues(iface, profile.runtime().queues, name),
    ];
    let score = criteria
        .iter()
        .filter(|c| c.met == Met::Yes)
        .map(|c| c.weight)
        .sum();
    ProfileMatch {
        profile: name.to_string(),
        interface: iface.name.clone(),
        score,
        criteria,
        band: profile.band().basis_line(),
        rank: (score, hw.cores, hw.link_speed_mbps),
    }
}

// One function per criterion of the module's table, in its order; `name`
// is the profile's, for the detail line.

fn driver(iface: &Interface, hw: &Hardware, name: &str) -> Criterion {
    let drivers = hw.nic_drivers.join(" or ");
    match iface.driver.ok() {
        Some(d) => criterion(
            "driver",
            WEIGHTS.driver,
            yes_no(hw.nic_drivers.iter().any(|x| x == d)),
            format!("{} is {d}; {name} expects {drivers}", iface.name),
        ),
        None => criterion(
            "driver",
            WEIGHTS.driver,
            Met::Unknown,
            format!(
                "cannot read {}'s driver ({}); {name} expects {drivers}",
                iface.name,
                iface.driver.why().unwrap_or_default()
            ),
        ),
    }
}

fn cores(host: &HostFacts, hw: &Hardware, name: &str) -> Criterion {
    match host.cpus_online.ok() {
        Some(cpus) => criterion(
            "cores",
            WEIGHTS.cores,
            yes_no(cpus.len() as u32 >= hw.cores),
            format!(
                "{} CPUs online; {name} expects at least {}",
                cpus.len(),
                hw.cores
            ),
        ),
        None => criterion(
            "cores",
            WEIGHTS.cores,
            Met::Unknown,
            format!(
                "cannot count CPUs ({})",
                host.cpus_online.why().unwrap_or_default()
            ),
        ),
    }
}

fn link_speed(iface: &Interface, hw: &Hardware, name: &str) -> Criterion {
    match iface.speed_mbps.ok() {
        Some(&s) => criterion(
            "link speed",
            WEIGHTS.link_speed,
            yes_no(s == hw.link_speed_mbps),
            format!(
                "{} links at {s} Mb/s; {name} expects {} Mb/s",
                iface.name, hw.link_speed_mbps
            ),
        ),
        None => criterion(
            "link speed",
            WEIGHTS.link_speed,
            Met::Unknown,
            format!(
                "{} reports no speed; {name} expects {} Mb/s",
                iface.name, hw.link_speed_mbps
            ),
        ),
    }
}

fn xdp_mode(iface: &Interface, hw: &Hardware, name: &str) -> Criterion {
    match hw.xdp_mode {
        XdpMode::Generic => criterion(
            "XDP mode",
            WEIGHTS.xdp_mode,
            Met::Yes,
            format!("{name} uses generic XDP, which every driver has"),
        ),
        XdpMode::Native => criterion(
            "XDP mode",
            WEIGHTS.xdp_mode,
            yes_no(iface.capability.native_xdp.is_yes()),
            format!(
                "native XDP on {}: {}; {name} needs it",
                iface.name, iface.capability.native_xdp
            ),
        ),
    }
}

fn af_xdp(iface: &Interface, hw: &Hardware, name: &str) -> Criterion {
    match hw.af_xdp {
        AfXdpMode::Copy => criterion(
            "AF_XDP",
            WEIGHTS.af_xdp,
            Met::Yes,
            format!("{name} uses copy-mode AF_XDP, which every driver has"),
        ),
        AfXdpMode::ZeroCopy => criterion(
            "AF_XDP",
            WEIGHTS.af_xdp,
            yes_no(iface.capability.zero_copy == Support::Yes),
            format!(
                "zero-copy AF_XDP on {}: {}; {name} needs it",
                iface.name, iface.capability.zero_copy
            ),
        ),
    }
}

fn clock(host: &HostFacts, hw: &Hardware, name: &str) -> Criterion {
    match host.cpu_clock.ok() {
        Some(clock) => criterion(
            "clock",
            WEIGHTS.clock,
            yes_no(clock.mhz >= hw.min_clock_mhz),
            format!(
                "{} MHz ({}); {name} expects at least {} MHz",
                clock.mhz, clock.source, hw.min_clock_mhz
            ),
        ),
        None => criterion(
            "clock",
            WEIGHTS.clock,
            Met::Unknown,
            format!(
                "cannot read the CPU clock; {name} expects at least {} MHz",
                hw.min_clock_mhz
            ),
        ),
    }
}

/// `want`: the queues the profile's runtime uses.
fn queues(iface: &Interface, want: u32, name: &str) -> Criterion {
    match iface.max_queues() {
        Some(q) => criterion(
            "queues",
            WEIGHTS.queues,
            yes_no(q >= want),
            format!("{} can have {q} queue(s); {name} uses {want}", iface.name),
        ),
        None => criterion(
            "queues",
            WEIGHTS.queues,
            Met::Unknown,
            format!("cannot read {}'s queues; {name} uses {want}", iface.name),
        ),
    }
}

/// Scores every Ethernet interface of `host` (or only `only`) against
/// every profile, best first.
pub fn detect(host: HostFacts, profiles: &[Profile], only: Option<&str>) -> Detection {
    let mut candidates: Vec<ProfileMatch> = host
        .interfaces
        .iter()
        .filter(|i| only.is_none_or(|o| i.name == o))
        .flat_map(|i| profiles.iter().map(|p| score(&host, i, p)))
        .collect();
    // Stable sort: equal ranks keep interface order, then profile order.
    candidates.sort_by_key(|m| std::cmp::Reverse(m.rank));
    Detection {
        best: candidates.first().cloned(),
        candidates,
        host,
    }
}

/// The best-scoring interface of `host` for one profile (for the audit when
/// no interface is named).
pub fn best_interface_for<'h>(host: &'h HostFacts, profile: &Profile) -> Option<&'h Interface> {
    // max_by_key keeps the last of equals; reversed, the first listed wins.
    host.interfaces
        .iter()
        .rev()
        .max_by_key(|i| score(host, i, profile).score)
}

/// The human-readable report of a detection.
pub fn render(d: &Detection) -> String {
    use std::fmt::Write;
    let h = &d.host;
    let mut out = String::new();
    let shown = |r: Option<String>, why: Option<&str>| {
        r.unwrap_or_else(|| format!("unreadable ({})", why.unwrap_or_default()))
    };
    let _ = writeln!(out, "host ({})", h.root.display());
    let _ = writeln!(
        out,
        "  kernel      {}",
        shown(h.kernel.ok().cloned(), h.kernel.why())
    );
    let _ = writeln!(
        out,
        "  cpus        {}",
        shown(
            h.cpus_online
                .ok()
                .map(|c| format!("{} online ({c})", c.len())),
            h.cpus_online.why()
        )
    );
    let _ = writeln!(
        out,
        "  numa nodes  {}",
        shown(
            h.numa_nodes.ok().map(|n| {
                let nodes: Vec<String> = n
                    .iter()
                    .map(|n| format!("node{}: {}", n.id, n.cpus))
                    .collect();
                format!("{} ({})", n.len(), nodes.join("; "))
            }),
            h.numa_nodes.why()
        )
    );
    let cpus_or_none = |c: &super::CpuSet| {
        if c.is_empty() {
            "none".to_string()
        } else {
            c.to_string()
        }
    };
    let _ = writeln!(
        out,
        "  isolated    {}",
        shown(h.isolated.ok().map(cpus_or_none), h.isolated.why())
    );
    let _ = writeln!(
        out,
        "  nohz_full   {}",
        shown(h.nohz_full.ok().map(cpus_or_none), h.nohz_full.why())
    );
    let _ = writeln!(
        out,
        "  clock       {}",
        shown(
            h.cpu_clock
                .ok()
                .map(|c| format!("{} MHz ({})", c.mhz, c.source)),
            h.cpu_clock.why()
        )
    );
    if h.interfaces.is_empty() {
        let _ = writeln!(
            out,
            "interfaces: none (no Ethernet interface besides loopback)"
        );
    } else {
        let _ = writeln!(out, "interfaces");
        for i in &h.interfaces {
            let q = |v: Option<u32>| v.map_or("?".to_string(), |n| n.to_string());
            let _ = writeln!(
                out,
                "  {:<12} driver {}  speed {}  queues {} of {}  mtu {}  native XDP {}  zero-copy {}{}",
                i.name,
                i.driver.ok().map_or("?", |d| d.as_str()),
                i.speed_mbps.ok().map_or("?".to_string(), |s| format!("{s} Mb/s")),
                q(i.queues_in_use()),
                q(i.max_queues()),
                i.mtu.ok().map_or("?".to_string(), |m| m.to_string()),
                i.capability.native_xdp,
                i.capability.zero_copy,
                i.numa_node.map_or(String::new(), |n| format!("  numa node {n}")),
            );
        }
    }
    match &d.best {
        None => {
            let _ = writeln!(out, "best match: none (no interface to match)");
        }
        Some(m) => {
            let _ = writeln!(
                out,
                "best match: {} on {} ({}/{MAX_SCORE}{})",
                m.profile,
                m.interface,
                m.score,
                if m.is_full() {
                    ", every criterion met"
                } else {
                    ""
                }
            );
            let _ = writeln!(out, "  band: {}", m.band);
            for c in &m.criteria {
                let tag = match c.met {
                    Met::Yes => "match",
                    Met::No => "MISS ",
                    Met::Unknown => "?    ",
                };
                let _ = writeln!(out, "  {tag} {:<10} {}", c.what, c.detail);
            }
            let others: Vec<String> = d
                .candidates
                .iter()
                .skip(1)
                .filter(|c| c.interface == m.interface)
                .map(|c| format!("{} {}", c.profile, c.score))
                .collect();
            if !others.is_empty() {
                let _ = writeln!(
                    out,
                    "other profiles on {}: {}",
                    m.interface,
                    others.join(", ")
                );
            }
        }
    }
    out
}
