//! A fixed-capacity table keyed by source address, for per-source state on
//! the hot path (answer budgets, abuse counts, verified sources).
//!
//! It never allocates after construction: a full neighbourhood evicts the
//! entry touched longest ago, so a spoofed flood from millions of addresses
//! costs a bounded amount of memory and only ever pushes out stale entries.
//! Where a source lands is a keyed hash ([`HashSeed`], derived from the
//! proxy's secret): without the key nobody can pick sources that share a
//! victim's neighbourhood to push it out.
//! IPv6 sources are keyed by their /64, as the XDP filter does, because one
//! host can pick any address in its /64.

use std::hash::Hasher;
use std::net::IpAddr;

use siphasher::sip::SipHasher13;

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

    /// The key of the /48 an IPv6 source's /64 belongs to (IPv4: itself),
    /// for limits per allocation: one site usually holds a /48.
    pub fn slash48(&self) -> SourceKey {
        let mut k = *self;
        if k.family == 6 {
            k.bytes[6] = 0;
            k.bytes[7] = 0;
        }
        k
    }

    /// True for an IPv6 source (its /64).
    pub fn is_ipv6(&self) -> bool {
        self.family == 6
    }

    /// A stable encoding of the key: the family, then the address bytes.
    pub fn to_bytes(&self) -> [u8; 9] {
        let mut out = [0u8; 9];
        out[0] = self.family;
        out[1..].copy_from_slice(&self.bytes);
        out
    }
}

/// The key of a table's hash (SipHash-1-3), so that where a source lands
/// cannot be predicted by anyone who does not hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashSeed {
    k0: u64,
    k1: u64,
}

impl HashSeed {
    /// A seed from two keys (derive them from a secret:
    /// `cookie::Secret::table_seed`).
    pub const fn new(k0: u64, k1: u64) -> HashSeed {
        HashSeed { k0, k1 }
    }

    fn hash(&self, key: &SourceKey) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write(&key.to_bytes());
        h.finish()
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
    seed: HashSeed,
}

impl<V: Copy + Default> SourceTable<V> {
    /// A table with room for at least `capacity` sources (rounded up to a
    /// power of two, at least the probe length), placed by `seed`.
    pub fn with_capacity(capacity: usize, seed: HashSeed) -> Self {
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
            seed,
        }
    }

    /// The value for `key`, if present (without touching it).
    pub fn get(&self, key: SourceKey) -> Option<&V> {
        let start = self.seed.hash(&key) as usize;
        (0..PROBE)
            .map(|i| &self.slots[(start + i) & self.mask])
            .find(|s| s.key == key)
            .map(|s| &s.value)
    }

    /// The value for `key`, inserting `V::default()` when absent. When the
    /// neighbourhood is full, the entry touched longest ago is replaced.
    /// `now` orders entries by use.
    pub fn entry(&mut self, key: SourceKey, now: u64) -> &mut V {
        let start = self.seed.hash(&key) as usize;
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

    /// The value for `key`, if present, to change in place (without
    /// touching it).
    pub fn get_mut(&mut self, key: SourceKey) -> Option<&mut V> {
        let start = self.seed.hash(&key) as usize;
        let mask = self.mask;
        let at = (0..PROBE)
            .map(|i| (start + i) & mask)
            .find(|&at| self.slots[at].key == key)?;
        Some(&mut self.slots[at].value)
    }

    /// Forgets `key`; false when it was not there. (Lookups look at every
    /// slot of a neighbourhood, so a hole left behind hides nothing.)
    pub fn remove(&mut self, key: SourceKey) -> bool {
        let start = self.seed.hash(&key) as usize;
        let mask = self.mask;
        match (0..PROBE)
            .map(|i| (start + i) & mask)
            .find(|&at| self.slots[at].key == key)
        {
            Some(at) => {
                self.slots[at].key = SourceKey::default();
                true
            }
            None => false,
        }
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

    const SEED: HashSeed = HashSeed::new(3, 5);

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
        let mut t: SourceTable<u32> = SourceTable::with_capacity(64, SEED);
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
        let mut t: SourceTable<u32> = SourceTable::with_capacity(256, SEED);
        for n in 0..100_000u32 {
            *t.entry(v4(n), n as u64) = n;
        }
        assert!(t.len() <= 256);
        assert!(t.evictions() >= 100_000 - 256);
        // The newest source is always present after its own insertion.
        assert_eq!(t.get(v4(99_999)), Some(&99_999));
    }

    #[test]
    fn removed_sources_are_gone_and_the_rest_stay() {
        let mut t: SourceTable<u32> = SourceTable::with_capacity(8, SEED);
        for n in 0..8u32 {
            *t.entry(v4(n), 1) = n;
        }
        assert!(t.remove(v4(3)));
        assert!(!t.remove(v4(3)));
        assert_eq!(t.get(v4(3)), None);
        for n in (0..8u32).filter(|&n| n != 3) {
            assert_eq!(t.get(v4(n)), Some(&n));
        }
        *t.get_mut(v4(4)).unwrap() = 40;
        assert_eq!(t.get(v4(4)), Some(&40));
        assert!(t.get_mut(v4(99)).is_none());
    }

    #[test]
    fn where_a_source_lands_depends_on_the_seed() {
        // Sources that share a neighbourhood under one seed spread under
        // another: collisions cannot be prepared without the key.
        let a: SourceTable<u8> = SourceTable::with_capacity(1 << 16, HashSeed::new(1, 2));
        let b: SourceTable<u8> = SourceTable::with_capacity(1 << 16, HashSeed::new(3, 4));
        let same = (0..1000u32)
            .filter(|&n| a.seed.hash(&v4(n)) & a.mask as u64 == b.seed.hash(&v4(n)) & b.mask as u64)
            .count();
        assert!(
            same < 10,
            "{same} of 1000 sources landed alike under two seeds"
        );
    }

    #[test]
    fn ipv6_sources_of_one_slash48_share_its_key() {
        let a = SourceKey::new("2001:db8:1:2::1".parse().unwrap());
        let b = SourceKey::new("2001:db8:1:ff::1".parse().unwrap());
        let c = SourceKey::new("2001:db8:2:2::1".parse().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.slash48(), b.slash48());
        assert_ne!(a.slash48(), c.slash48());
        assert_eq!(v4(7).slash48(), v4(7));
    }

    #[test]
    fn eviction_takes_the_least_recently_touched() {
        let mut t: SourceTable<u32> = SourceTable::with_capacity(8, SEED);
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
