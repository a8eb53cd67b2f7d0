//! Attack traffic for the lab: scanner sweeps shaped like SIPVicious,
//! REGISTER password guessing, INVITE and OPTIONS floods from spoofed
//! sources (raw frames on an AF_PACKET socket), malformed SIP and non-SIP
//! garbage, and IP fragments.
//!
//! Every sender is bounded by a count and a duration, and refuses any
//! destination outside 198.18.0.0/15 and 127.0.0.0/8. Raw frames are also
//! refused on the host's default-route interface: spoofed traffic must stay
//! inside the lab's namespaces.

pub mod cli;
pub mod raw;
pub mod udp;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::Serialize;

pub use raw::{flood, fragments, FloodConfig, FragmentMode, FragmentsConfig};
pub use udp::{
    garbage, garbage_datagram, guess, scan, GarbageConfig, GuessConfig, ScanConfig, GARBAGE_KINDS,
};

/// Why an attack was refused before anything was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The destination is outside the lab ranges.
    #[error("refusing to send attack traffic to {0}: only 198.18.0.0/15 (the lab's benchmark range) and 127.0.0.0/8 are allowed, so no real network is ever hit")]
    Destination(IpAddr),
    /// Raw frames on the interface that carries the host's default route.
    #[error("refusing to send raw frames on {0}: it carries the host's default route, so spoofed frames could leave the machine; run inside a lab namespace on a veth")]
    DefaultRouteInterface(String),
    /// A bound is missing or zero.
    #[error("every attack is bounded: {0}")]
    Unbounded(String),
    /// Raw frames need IPv4.
    #[error("raw frames are built for IPv4 only; {0} is not IPv4")]
    NotIpv4(IpAddr),
    /// A spoof range outside the lab ranges.
    #[error("refusing spoofed sources {0}: they must lie inside 198.18.0.0/15 or 127.0.0.0/8")]
    SpoofRange(String),
}

/// True when `ip` is inside 198.18.0.0/15 or 127.0.0.0/8.
pub fn in_lab_range(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            o[0] == 127 || (o[0] == 198 && (o[1] & 0xfe) == 18)
        }
        IpAddr::V6(v6) => v6.is_loopback(),
    }
}

/// Refuses destinations outside the lab ranges.
pub fn check_destination(ip: IpAddr) -> Result<(), Refusal> {
    if in_lab_range(ip) {
        Ok(())
    } else {
        Err(Refusal::Destination(ip))
    }
}

/// The interfaces that carry a default route in the routing table text of
/// `/proc/net/route` (destination 00000000, mask 00000000).
pub fn default_route_interfaces(route_table: &str) -> Vec<String> {
    route_table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 8 && f[1] == "00000000" && f[7] == "00000000").then(|| f[0].to_string())
        })
        .collect()
}

fn netns_id(path: &str) -> Option<std::path::PathBuf> {
    std::fs::read_link(path).ok()
}

/// Refuses `iface` when it is the host's default-route interface. A thread
/// in another network namespace than the host (PID 1) cannot reach the
/// host's interfaces at all; in the host's namespace the default routes of
/// its table decide.
pub fn check_interface(iface: &str) -> Result<(), Refusal> {
    let ours = netns_id("/proc/thread-self/ns/net");
    let host = netns_id("/proc/1/ns/net");
    let same_as_host = match (&ours, &host) {
        (Some(a), Some(b)) => a == b,
        // Cannot tell: assume the worst.
        _ => true,
    };
    if !same_as_host {
        return Ok(());
    }
    let table = std::fs::read_to_string("/proc/thread-self/net/route")
        .or_else(|_| std::fs::read_to_string("/proc/net/route"))
        .unwrap_or_default();
    if default_route_interfaces(&table).iter().any(|i| i == iface) {
        return Err(Refusal::DefaultRouteInterface(iface.to_string()));
    }
    Ok(())
}

/// An IPv4 prefix of spoofed source addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Net {
    /// Network address.
    pub addr: Ipv4Addr,
    /// Prefix length.
    pub len: u8,
}

impl Ipv4Net {
    /// Parses `a.b.c.d/len`.
    pub fn parse(s: &str) -> Result<Ipv4Net, String> {
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: expected a.b.c.d/len"))?;
        let addr: Ipv4Addr = a.parse().map_err(|e| format!("{s:?}: {e}"))?;
        let len: u8 = l
            .parse()
            .map_err(|e| format!("{s:?}: prefix length: {e}"))?;
        if len > 32 {
            return Err(format!("{s:?}: prefix length above 32"));
        }
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        Ok(Ipv4Net {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            len,
        })
    }

    /// Addresses in the prefix.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.len))
    }

    /// Address `k mod size`, skipping the network and broadcast addresses of
    /// prefixes that have them.
    pub fn nth(&self, k: u64) -> Ipv4Addr {
        let (first, count) = if self.len <= 30 {
            (1, self.size() - 2)
        } else {
            (0, self.size())
        };
        Ipv4Addr::from(u32::from(self.addr) + (first + k % count) as u32)
    }

    /// True when the whole prefix is inside the lab ranges.
    pub fn in_lab(&self) -> bool {
        let last = Ipv4Addr::from(u32::from(self.addr) + (self.size() - 1) as u32);
        in_lab_range(IpAddr::V4(self.addr)) && in_lab_range(IpAddr::V4(last))
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Count, time and rate bounds every sender carries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// Most datagrams or frames sent (or guesses made).
    pub count: u64,
    /// Longest the sender runs.
    pub duration: Duration,
    /// Rate in packets per second; 0 sends as fast as the box can.
    pub pps: f64,
}

impl Default for Bounds {
    /// 10,000 packets, 10 seconds, 1,000 per second.
    fn default() -> Self {
        Bounds {
            count: 10_000,
            duration: Duration::from_secs(10),
            pps: 1000.0,
        }
    }
}

impl Bounds {
    fn check(&self) -> Result<(), Refusal> {
        if self.count == 0 {
            return Err(Refusal::Unbounded("the count must be at least 1".into()));
        }
        if self.duration.is_zero() {
            return Err(Refusal::Unbounded("the duration must be above 0".into()));
        }
        if !(self.pps.is_finite() && self.pps >= 0.0) {
            return Err(Refusal::Unbounded(format!("bad rate {}", self.pps)));
        }
        Ok(())
    }

    /// The pacing rate: `pps`, or effectively unpaced when 0.
    fn rate(&self) -> f64 {
        if self.pps > 0.0 {
            self.pps
        } else {
            1e9
        }
    }
}

/// What an attack sent and what came back.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AttackReport {
    /// Which attack.
    pub kind: String,
    /// Destination.
    pub target: String,
    /// Packets (datagrams or frames) the kernel took.
    pub sent: u64,
    /// Packets the kernel refused or that stayed blocked.
    pub send_failed: u64,
    /// Seconds spent sending.
    pub elapsed_s: f64,
    /// Packets per second achieved.
    pub pps: f64,
    /// Answers received, by status code.
    pub answers: std::collections::BTreeMap<u16, u64>,
    /// Datagrams received that were not SIP answers.
    pub other_received: u64,
    /// What the attack found (extensions that answered, accepted passwords).
    pub found: Vec<String>,
    /// Notes for the reader.
    pub notes: Vec<String>,
}

impl AttackReport {
    /// The JSON document.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

impl fmt::Display for AttackReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "dce-loadgen attack {} against {}",
            self.kind, self.target
        )?;
        writeln!(
            f,
            "  sent {} ({} failed) in {:.2} s, {:.0} per second",
            self.sent, self.send_failed, self.elapsed_s, self.pps
        )?;
        let codes: Vec<String> = self
            .answers
            .iter()
            .map(|(c, n)| format!("{c}:{n}"))
            .collect();
        writeln!(
            f,
            "  answers: {} ({}), other datagrams received {}",
            self.answers.values().sum::<u64>(),
            codes.join(" "),
            self.other_received
        )?;
        if !self.found.is_empty() {
            let shown: Vec<&str> = self.found.iter().take(20).map(String::as_str).collect();
            writeln!(
                f,
                "  found {}: {}{}",
                self.found.len(),
                shown.join(", "),
                if self.found.len() > 20 { ", ..." } else { "" }
            )?;
        }
        for n in &self.notes {
            writeln!(f, "  note: {n}")?;
        }
        Ok(())
    }
}

fn target_v4(target: SocketAddr) -> Result<std::net::SocketAddrV4, Refusal> {
    match target {
        SocketAddr::V4(v) => Ok(v),
        SocketAddr::V6(v) => Err(Refusal::NotIpv4(IpAddr::V6(*v.ip()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_ranges_are_allowed_and_others_refused() {
        for ok in ["198.18.0.1", "198.19.255.254", "127.0.0.1", "127.9.9.9"] {
            assert!(check_destination(ok.parse().unwrap()).is_ok(), "{ok}");
        }
        for bad in [
            "198.20.0.1",
            "198.17.255.255",
            "10.0.0.1",
            "8.8.8.8",
            "192.0.2.1",
        ] {
            let e = check_destination(bad.parse().unwrap()).unwrap_err();
            assert!(e.to_string().contains("198.18.0.0/15"), "{e}");
        }
    }

    #[test]
    fn default_route_interface_is_found_in_the_route_table() {
        let table =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                     eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                     veth1\t000012C6\t00000000\t0001\t0\t0\t0\t00FEFFFF\t0\t0\t0\n";
        assert_eq!(default_route_interfaces(table), vec!["eth0".to_string()]);
    }

    #[test]
    fn raw_frames_are_refused_on_the_hosts_default_route_interface() {
        let table = std::fs::read_to_string("/proc/1/net/route").unwrap_or_default();
        let same_ns = netns_id("/proc/thread-self/ns/net") == netns_id("/proc/1/ns/net");
        if let (true, Some(iface)) = (same_ns, default_route_interfaces(&table).first()) {
            let e = check_interface(iface).unwrap_err();
            assert!(e.to_string().contains("default route"), "{e}");
        }
        // Loopback never carries the default route.
        assert!(check_interface("lo").is_ok());
    }

    #[test]
    fn spoof_ranges_enumerate_hosts_inside_the_prefix() {
        let n = Ipv4Net::parse("198.18.100.0/24").unwrap();
        assert_eq!(n.nth(0), Ipv4Addr::new(198, 18, 100, 1));
        assert_eq!(n.nth(253), Ipv4Addr::new(198, 18, 100, 254));
        assert_eq!(n.nth(254), Ipv4Addr::new(198, 18, 100, 1));
        assert!(n.in_lab());
        assert!(!Ipv4Net::parse("198.16.0.0/13").unwrap().in_lab());
        assert!(Ipv4Net::parse("1.2.3.4/33").is_err());
    }

    #[test]
    fn unbounded_senders_are_refused() {
        let b = Bounds {
            count: 0,
            ..Bounds::default()
        };
        assert!(matches!(b.check(), Err(Refusal::Unbounded(_))));
        let b = Bounds {
            duration: Duration::ZERO,
            ..Bounds::default()
        };
        assert!(matches!(b.check(), Err(Refusal::Unbounded(_))));
    }
}
