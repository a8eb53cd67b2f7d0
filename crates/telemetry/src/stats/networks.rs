//! The top offending sources folded into networks, so that a spoofed flood
//! from thousands of addresses with one drop each shows its shape: IPv4 by
//! /24 and /16, IPv6 by /64 and /48, each network split by drop reason, with
//! its drops and its distinct sources.
//!
//! The input is what the XDP program's `top_sources` map holds: an LRU of
//! bounded size (8192 entries), one entry per source (an IPv4 address, an
//! IPv6 /64) with its drops and the reason of its latest drop. The
//! aggregates are therefore over what that map holds now, not over every
//! packet ever dropped, and a source's drops all count under its latest
//! reason. Folding runs in the control thread (or the CLI) once per
//! snapshot, off the packet path.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// The aggregation levels, in the order they are listed: address family
/// and prefix length.
pub const LEVELS: [(Family, u8); 4] = [
    (Family::Ipv4, 24),
    (Family::Ipv4, 16),
    (Family::Ipv6, 64),
    (Family::Ipv6, 48),
];

/// How many networks of each level a snapshot lists (and `/metrics`
/// exports): the top ones by drops.
pub const TOP_PER_LEVEL: usize = 10;

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
}

impl Family {
    /// `ipv4` or `ipv6`, as the JSON and the metrics labels say it.
    pub fn name(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }
}

/// One source as the `top_sources` map holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceDrops {
    /// The source: an IPv4 address, or an IPv6 address whose /64 is the
    /// source (bits past /64 are ignored).
    pub addr: IpAddr,
    /// Packets dropped from it.
    pub drops: u64,
    /// The reason of its latest drop (all its drops count under it).
    pub reason: String,
}

/// The drops of one network under one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopNetwork {
    /// The network in CIDR notation (`198.51.100.0/24`, `2001:db8::/48`).
    pub network: String,
    /// Its prefix length (24 or 16 for IPv4, 64 or 48 for IPv6).
    pub prefix_len: u8,
    /// The drop reason (the latest drop's, per source).
    pub reason: String,
    /// Packets dropped from sources in it under that reason.
    pub drops: u64,
    /// Distinct sources in it with that reason (IPv4 addresses; IPv6 /64s,
    /// so an IPv6 /64 always counts one).
    pub sources: u64,
}

/// One aggregation level over everything the map holds, all reasons
/// together: how many networks the sources fall in says the shape at once
/// (8,000 sources in one /24 versus 8,000 sources in 8,000 /16s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkLevel {
    /// The address family.
    pub family: Family,
    /// The prefix length.
    pub prefix_len: u8,
    /// Distinct networks of this length holding at least one source.
    pub networks: u64,
    /// Sources of this family held.
    pub sources: u64,
    /// Their drops.
    pub drops: u64,
}

/// The top offending networks, as listed in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NetworkTally {
    /// Sources the `top_sources` map held when read (the aggregates are
    /// over these only).
    pub sources_held: u64,
    /// The most sources the map holds (an LRU: when full, the least
    /// recently dropped source makes room).
    pub capacity: u64,
    /// One entry per level of [`LEVELS`] that holds any source, in that
    /// order.
    pub levels: Vec<NetworkLevel>,
    /// For each level of [`LEVELS`] in that order, its top networks (at
    /// most the `per_level` asked, usually [`TOP_PER_LEVEL`]), each
    /// network split by reason, ordered by drops (most first), then
    /// distinct sources (most first), then network address and reason
    /// (ascending), so that equal counts keep their order from one
    /// snapshot to the next.
    pub networks: Vec<TopNetwork>,
}

/// The network of `prefix` bits holding `addr`.
fn network_of(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

fn family_of(addr: IpAddr) -> Family {
    match addr {
        IpAddr::V4(_) => Family::Ipv4,
        IpAddr::V6(_) => Family::Ipv6,
    }
}

/// Folds `sources` into networks at every level of [`LEVELS`] and keeps
/// the top `per_level` (network, reason) pairs of each. `capacity` is the
/// map's size, reported alongside. IPv4-mapped IPv6 addresses count as
/// the IPv4 address they stand for.
pub fn aggregate(sources: &[SourceDrops], capacity: u64, per_level: usize) -> NetworkTally {
    #[derive(Default)]
    struct Sum {
        drops: u64,
        sources: u64,
    }
    let mut tally = NetworkTally {
        sources_held: sources.len() as u64,
        capacity,
        ..Default::default()
    };
    for (family, prefix_len) in LEVELS {
        let mut by_network: BTreeMap<(IpAddr, &str), Sum> = BTreeMap::new();
        let mut networks: BTreeSet<IpAddr> = BTreeSet::new();
        let mut level = NetworkLevel {
            family,
            prefix_len,
            networks: 0,
            sources: 0,
            drops: 0,
        };
        for s in sources {
            let addr = s.addr.to_canonical();
            if family_of(addr) != family {
                continue;
            }
            let network = network_of(addr, prefix_len);
            let sum = by_network.entry((network, s.reason.as_str())).or_default();
            sum.drops = sum.drops.saturating_add(s.drops);
            sum.sources += 1;
            networks.insert(network);
            level.sources += 1;
            level.drops = level.drops.saturating_add(s.drops);
        }
        if level.sources == 0 {
            continue;
        }
        level.networks = networks.len() as u64;
        tally.levels.push(level);
        // BTreeMap order (address, then reason) is the tie-break: a stable
        // sort by the counts keeps it among equals.
        let mut top: Vec<_> = by_network.into_iter().collect();
        top.sort_by(|(_, a), (_, b)| b.drops.cmp(&a.drops).then(b.sources.cmp(&a.sources)));
        tally.networks.extend(
            top.into_iter()
                .take(per_level)
                .map(|((network, reason), sum)| TopNetwork {
                    network: format!("{network}/{prefix_len}"),
                    prefix_len,
                    reason: reason.to_string(),
                    drops: sum.drops,
                    sources: sum.sources,
                }),
        );
    }
    tally
}

impl NetworkTally {
    /// The listed networks of one prefix length, in their order.
    pub fn at(&self, prefix_len: u8) -> impl Iterator<Item = &TopNetwork> {
        self.networks
            .iter()
            .filter(move |n| n.prefix_len == prefix_len)
    }

    /// One line on the shape: how many networks of each level the held
    /// sources fall in (`8,192 sources held (of 8,192): 1 /24, 1 /16`).
    pub fn shape(&self) -> String {
        let levels: Vec<String> = self
            .levels
            .iter()
            .map(|l| {
                format!(
                    "{} {} in {} /{}",
                    l.sources,
                    l.family.name(),
                    l.networks,
                    l.prefix_len
                )
            })
            .collect();
        format!(
            "{} sources held (map of {}){}{}",
            self.sources_held,
            self.capacity,
            if levels.is_empty() { "" } else { ": " },
            levels.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(addr: &str, drops: u64, reason: &str) -> SourceDrops {
        SourceDrops {
            addr: addr.parse().unwrap(),
            drops,
            reason: reason.into(),
        }
    }

    fn row(t: &TopNetwork) -> (&str, &str, u64, u64) {
        (&t.network, &t.reason, t.drops, t.sources)
    }

    #[test]
    fn a_spoofed_flood_of_single_drops_folds_into_its_networks() {
        // 1000 spoofed sources, one drop each, in four /24s of one /16.
        let sources: Vec<SourceDrops> = (0..1000u32)
            .map(|i| src(&format!("198.51.{}.{}", i / 250, i % 250), 1, "rate_limit"))
            .collect();
        let t = aggregate(&sources, 8192, TOP_PER_LEVEL);
        assert_eq!(t.sources_held, 1000);
        let by24: Vec<_> = t.at(24).map(row).collect();
        assert_eq!(
            by24,
            [
                ("198.51.0.0/24", "rate_limit", 250, 250),
                ("198.51.1.0/24", "rate_limit", 250, 250),
                ("198.51.2.0/24", "rate_limit", 250, 250),
                ("198.51.3.0/24", "rate_limit", 250, 250),
            ]
        );
        let by16: Vec<_> = t.at(16).map(row).collect();
        assert_eq!(by16, [("198.51.0.0/16", "rate_limit", 1000, 1000)]);
        assert_eq!(
            t.levels,
            [
                NetworkLevel {
                    family: Family::Ipv4,
                    prefix_len: 24,
                    networks: 4,
                    sources: 1000,
                    drops: 1000
                },
                NetworkLevel {
                    family: Family::Ipv4,
                    prefix_len: 16,
                    networks: 1,
                    sources: 1000,
                    drops: 1000
                },
            ]
        );
        assert_eq!(
            t.shape(),
            "1000 sources held (map of 8192): 1000 ipv4 in 4 /24, 1000 ipv4 in 1 /16"
        );
    }

    #[test]
    fn ipv6_folds_by_64_and_48() {
        let sources = [
            src("2001:db8:1:1::", 5, "not_sip"),
            src("2001:db8:1:2::", 3, "not_sip"),
            // Bits past /64 are not part of the network (the map never
            // holds two of one /64, but the folding does not rely on it).
            src("2001:db8:1:2::99", 2, "not_sip"),
            src("2001:db8:2:1::", 1, "not_sip"),
        ];
        let t = aggregate(&sources, 8192, TOP_PER_LEVEL);
        assert_eq!(
            t.at(64).map(row).collect::<Vec<_>>(),
            [
                ("2001:db8:1:2::/64", "not_sip", 5, 2),
                ("2001:db8:1:1::/64", "not_sip", 5, 1),
                ("2001:db8:2:1::/64", "not_sip", 1, 1),
            ]
        );
        assert_eq!(
            t.at(48).map(row).collect::<Vec<_>>(),
            [
                ("2001:db8:1::/48", "not_sip", 10, 3),
                ("2001:db8:2::/48", "not_sip", 1, 1),
            ]
        );
        assert_eq!(t.at(24).count() + t.at(16).count(), 0);
        assert_eq!(
            t.levels.iter().map(|l| l.prefix_len).collect::<Vec<_>>(),
            [64, 48]
        );
    }

    #[test]
    fn reasons_split_a_network_and_families_stay_apart() {
        let sources = [
            src("203.0.113.1", 10, "scanner"),
            src("203.0.113.2", 4, "rate_limit"),
            src("203.0.113.3", 4, "rate_limit"),
            src("::ffff:203.0.113.4", 1, "scanner"),
            src("2001:db8::", 7, "scanner"),
        ];
        let t = aggregate(&sources, 8192, TOP_PER_LEVEL);
        assert_eq!(
            t.at(24).map(row).collect::<Vec<_>>(),
            [
                ("203.0.113.0/24", "scanner", 11, 2),
                ("203.0.113.0/24", "rate_limit", 8, 2),
            ]
        );
        assert_eq!(
            t.at(64).map(row).collect::<Vec<_>>(),
            [("2001:db8::/64", "scanner", 7, 1)]
        );
        assert_eq!(t.levels[0].networks, 1);
        assert_eq!(t.levels[0].sources, 4);
    }

    #[test]
    fn order_is_drops_then_sources_then_address_then_reason() {
        let sources = [
            // 10.0.9.0/24: 6 drops from 1 source.
            src("10.0.9.1", 6, "banned"),
            // 10.0.2.0/24: 6 drops from 2 sources: more sources ranks first.
            src("10.0.2.1", 3, "banned"),
            src("10.0.2.2", 3, "banned"),
            // Ties on both counts: address order, numeric (10.0.3 < 10.0.10),
            // then reason name.
            src("10.0.10.1", 2, "banned"),
            src("10.0.3.1", 2, "scanner"),
            src("10.0.3.2", 2, "banned"),
        ];
        let t = aggregate(&sources, 8192, TOP_PER_LEVEL);
        assert_eq!(
            t.at(24).map(row).collect::<Vec<_>>(),
            [
                ("10.0.2.0/24", "banned", 6, 2),
                ("10.0.9.0/24", "banned", 6, 1),
                ("10.0.3.0/24", "banned", 2, 1),
                ("10.0.3.0/24", "scanner", 2, 1),
                ("10.0.10.0/24", "banned", 2, 1),
            ]
        );
        // The same input in another order gives the same listing.
        let mut reversed = sources.to_vec();
        reversed.reverse();
        assert_eq!(aggregate(&reversed, 8192, TOP_PER_LEVEL), t);
    }

    #[test]
    fn each_level_keeps_only_its_top_networks() {
        let sources: Vec<SourceDrops> = (0..50u64)
            .map(|i| src(&format!("10.{i}.0.1"), i + 1, "not_sip"))
            .collect();
        let t = aggregate(&sources, 8192, 3);
        let nets: Vec<&str> = t.at(16).map(|n| n.network.as_str()).collect();
        assert_eq!(nets, ["10.49.0.0/16", "10.48.0.0/16", "10.47.0.0/16"]);
        assert_eq!(t.at(24).count(), 3);
        // The level summary still counts every network.
        assert_eq!(t.levels[1].networks, 50);
    }

    #[test]
    fn nothing_held_lists_nothing() {
        let t = aggregate(&[], 8192, TOP_PER_LEVEL);
        assert_eq!(t.sources_held, 0);
        assert!(t.levels.is_empty() && t.networks.is_empty());
        assert_eq!(t.shape(), "0 sources held (map of 8192)");
    }

    #[test]
    fn json_field_names_are_stable() {
        let t = aggregate(&[src("198.51.100.7", 3, "rate_limit")], 8192, 1);
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "sources_held": 1,
                "capacity": 8192,
                "levels": [
                    {"family": "ipv4", "prefix_len": 24, "networks": 1, "sources": 1, "drops": 3},
                    {"family": "ipv4", "prefix_len": 16, "networks": 1, "sources": 1, "drops": 3},
                ],
                "networks": [
                    {"network": "198.51.100.0/24", "prefix_len": 24, "reason": "rate_limit", "drops": 3, "sources": 1},
                    {"network": "198.51.0.0/16", "prefix_len": 16, "reason": "rate_limit", "drops": 3, "sources": 1},
                ],
            })
        );
        let back: NetworkTally = serde_json::from_value(v).unwrap();
        assert_eq!(back, t);
    }
}
