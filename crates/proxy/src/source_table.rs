//! A fixed-capacity table keyed by source address, for per-source state on
//! the hot path (answer budgets, abuse counts, verified sources).
//!
//! It never allocates after construction: a full neighbourhood evicts the
//! entry touched longest ago, so a spoofed flood from millions of addresses
//! costs a bounded amount of memory and only ever pushes out stale entries.
//! IPv6 sources are keyed by their /64, as the XDP filter does, because one
//! host can pick any address in its /64.

use std::net::IpAddr;

/// How many consecutive slots a key may live in (its neighbourhood).
const PROBE: usize = 8;

/// A source address reduced to what identifies a source: the IPv4 address,
/// or the /64 of an IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SourceKey {
    /// 4 bytes of IPv4 or the first 8 bytes of IPv6, then zeroes.
    bytes: [u8; 8],
    /// 4 or 6; 0 marks an empty slot.
    family: u8,
}

impl SourceKey {
    /// The key of a source address.
    pub fn new(ip: IpAddr) -> Self {
        let mut bytes = [0u8; 8];
        match ip {
            IpAddr::V4(v4) => {
                bytes[..4].copy_from_slice(&v4.octets());
                SourceKey { bytes, family: 4 }
            }
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SourceKey::new(IpAddr::V4(v4)),
                None => {
                    bytes.copy_from_slice(&v6.octets()[..8]);
                    SourceKey { bytes, family: 6 }
                }
            },
        }
    }

    /// A stable encoding of the key: the family, then the address bytes.
    pub fn to_bytes(&self) -> [u8; 9] {
        let mut out = [0u8; 9];
        out[0] = self.family;
        out[1..].copy_from_slice(&self.bytes);
        out
    }

    fn hash(&self) -> u64 {
        // A multiplicative mix is enough: the table bounds its probes, so a
        // crafted collision only evicts entries in one neighbourhood.
        let v = u64::from_le_bytes(self.bytes) ^ ((self.family as u64) << 56);
        let h = v.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^ (h >> 29)
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot<V> {
    key: SourceKey,
    touched: u64,
    value: V,
}

/// Per-source values in a fixed number of slots.
#[derive(Debug, Clone)]
pub struct SourceTable<V> {
    slots: Box<[Slot<V>]>,
    mask: usize,
    evictions: u64,
}

impl<V: Copy + Default> SourceTable<V> {
    /// A table with room for at least `capacity` sources (rounded up to a
    /// power of two, at least the probe length).
    pub fn with_capacity(capacity: usize) -> Self {
        let n = capacity.max(PROBE).next_power_of_two();
        let empty = Slot {
            key: SourceKey::default(),
            touched: 0,
            value: V::default(),
        };
        SourceTable {
            slots: vec![empty; n].into_boxed_slice(),
            mask: n - 1,
            evictions: 0,
        }
    }

    /// The value for `key`, if present (without touching it).
    pub fn get(&self, key: SourceKey) -> Option<&V> {
        let start = key.hash() as usize;
        (0..PROBE)
            .map(|i| &self.slots[(start + i) & self.mask])
            .find(|s| s.key == key)
            .map(|s| &s.value)
    }

    /// The value for `key`, inserting `V::default()` when absent. When the
    /// neighbourhood is full, the entry touched longest ago is replaced.
    /// `now` orders entries by use.
    pub fn entry(&mut self, key: SourceKey, now: u64) -> &mut V {
        let start = key.hash() as usize;
        let mut found = None;
        let mut empty = None;
        let mut oldest = (start & self.mask, u64::MAX);
        for i in 0..PROBE {
            let at = (start + i) & self.mask;
            let slot = &self.slots[at];
            if slot.key == key {
                found = Some(at);
                break;
            }
            if slot.key.family == 0 {
                empty = empty.or(Some(at));
            } else if slot.touched < oldest.1 {
                oldest = (at, slot.touched);
            }
        }
        let at = match (found, empty) {
            (Some(at), _) => at,
            (None, Some(at)) => {
                self.slots[at] = Slot {
                    key,
                    touched: now,
                    value: V::default(),
                };
                at
            }
            (None, None) => {
                self.evictions += 1;
                self.slots[oldest.0] = Slot {
                    key,
                    touched: now,
                    value: V::default(),
                };
                oldest.0
            }
        };
        let slot = &mut self.slots[at];
        slot.touched = now;
        &mut slot.value
    }

    /// How many entries were pushed out to make room, since creation.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// How many sources the table holds now.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.key.family != 0).count()
    }

    /// True when the table holds no source.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(n: u32) -> SourceKey {
        SourceKey::new(IpAddr::V4(Ipv4Addr::from(n)))
    }

    #[test]
    fn ipv6_sources_in_one_slash64_share_a_key() {
        let a: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(SourceKey::new(a.into()), SourceKey::new(b.into()));
        assert_ne!(SourceKey::new(a.into()), SourceKey::new(c.into()));
    }

    #[test]
    fn mapped_ipv4_is_the_ipv4_source() {
        let mapped: Ipv6Addr = "::ffff:198.18.0.7".parse().unwrap();
        assert_eq!(
            SourceKey::new(mapped.into()),
            SourceKey::new("198.18.0.7".parse().unwrap())
        );
    }

    #[test]
    fn values_persist_per_source() {
        let mut t: SourceTable<u32> = SourceTable::with_capacity(64);
        *t.entry(v4(1), 1) += 5;
        *t.entry(v4(2), 2) += 7;
        *t.entry(v4(1), 3) += 1;
        assert_eq!(t.get(v4(1)), Some(&6));
        assert_eq!(t.get(v4(2)), Some(&7));
        assert_eq!(t.get(v4(3)), None);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn a_flood_of_sources_stays_within_capacity_and_keeps_recent_ones() {
        let mut t: SourceTable<u32> = SourceTable::with_capacity(256);
        for n in 0..100_000u32 {
            *t.entry(v4(n), n as u64) = n;
        }
        assert!(t.len() <= 256);
        assert!(t.evictions() >= 100_000 - 256);
        // The newest source is always present after its own insertion.
        assert_eq!(t.get(v4(99_999)), Some(&99_999));
    }

    #[test]
    fn eviction_takes_the_least_recently_touched() {
        let mut t: SourceTable<u32> = SourceTable::with_capacity(8);
        for n in 0..8u32 {
            *t.entry(v4(n), n as u64 + 10) = n;
        }
        assert_eq!(t.len(), 8);
        // Touch everything but source 3, then add a ninth source.
        for n in (0..8u32).filter(|&n| n != 3) {
            t.entry(v4(n), 100);
        }
        t.entry(v4(1000), 200);
        assert_eq!(t.get(v4(3)), None);
        assert_eq!(t.len(), 8);
    }
}
