//! Choosing a target: the most preferred priority that has an up target,
//! weighted between equals, with dialog affinity.
//!
//! Affinity is weighted rendezvous hashing (Thaler and Ravishankar, "Using
//! name-based mappings to increase hit rates", 1998; the weighted form scores
//! `-ln(u) / weight`): every target scores the Call-ID, the best score wins.
//! The same Call-ID picks the same target while that target is up, and when a
//! target goes down only its own calls move, spread over the others by weight.

use crate::table::{RouteGroup, Target, UpstreamId};

/// Which upstreams are up, as one worker knows it: a bit per upstream.
/// Changed only through the worker's ring (see [`route::reload`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthView {
    up: Vec<u64>,
    len: usize,
}

impl HealthView {
    /// A view of `upstreams` upstreams, all up.
    pub fn all_up(upstreams: usize) -> HealthView {
        let mut up = vec![!0u64; upstreams.div_ceil(64)];
        if !upstreams.is_multiple_of(64) {
            if let Some(last) = up.last_mut() {
                *last = (1u64 << (upstreams % 64)) - 1;
            }
        }
        HealthView { up, len: upstreams }
    }

    /// Upstreams in the view.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a view of no upstream.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when the upstream takes calls; an id outside the view is down.
    #[inline]
    pub fn is_up(&self, id: UpstreamId) -> bool {
        let i = id.0 as usize;
        self.up.get(i / 64).is_some_and(|w| w >> (i % 64) & 1 != 0)
    }

    /// Marks an upstream up or down; ids outside the view are ignored.
    pub fn set(&mut self, id: UpstreamId, up: bool) {
        let i = id.0 as usize;
        if let Some(w) = self.up.get_mut(i / 64) {
            if up {
                *w |= 1 << (i % 64);
            } else {
                *w &= !(1 << (i % 64));
            }
        }
    }

    /// How many upstreams are up.
    pub fn up_count(&self) -> usize {
        self.up.iter().map(|w| w.count_ones() as usize).sum()
    }
}

/// The Call-ID's hash, from which every target's score is derived. Stable
/// across workers and processes (XXH3 with its fixed default seed).
#[inline]
pub fn call_id_hash(call_id: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(call_id)
}

/// A target's pseudo-random draw for a call: the SplitMix64 finalizer of the
/// two hashes (Steele, Lea and Flood, OOPSLA 2014).
#[inline]
fn draw(call: u64, seed: u64) -> u64 {
    let mut z = call ^ seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Weighted score; lower wins. `u` in (0, 1] from the draw, score -ln(u)/w.
#[inline]
fn weighted_score(draw: u64, weight: u16) -> f64 {
    let u = ((draw >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64);
    -u.ln() / f64::from(weight)
}

impl RouteGroup {
    /// The target for a call with this Call-ID, or `None` when no target is
    /// up. Never allocates.
    ///
    /// Targets are sorted by priority; the first priority with an up target
    /// is used. Between its up targets, weighted rendezvous hashing picks one:
    /// with equal weights the highest draw wins (the same order as the
    /// weighted score, without a logarithm).
    pub fn select(&self, call_id: &[u8], health: &HealthView) -> Option<&Target> {
        self.select_hashed(call_id_hash(call_id), health)
    }

    /// The target for a call with this Call-ID as if every target were up
    /// (`when_all_down = "try_anyway"`): the most preferred priority, by
    /// the same rendezvous hashing. `None` only for a group without targets.
    pub fn select_ignoring_health(&self, call_id: &[u8]) -> Option<&Target> {
        let call = call_id_hash(call_id);
        let first = self.targets.first()?.priority;
        let end = self
            .targets
            .iter()
            .take_while(|t| t.priority == first)
            .count();
        pick_by(&self.targets[..end], call, |_| true)
    }

    /// [`RouteGroup::select`] with the Call-ID already hashed by
    /// [`call_id_hash`].
    pub fn select_hashed(&self, call: u64, health: &HealthView) -> Option<&Target> {
        let targets = &self.targets[..];
        let mut start = 0;
        while start < targets.len() {
            let priority = targets[start].priority;
            let end = start
                + targets[start..]
                    .iter()
                    .take_while(|t| t.priority == priority)
                    .count();
            let class = &targets[start..end];
            if let Some(t) = pick(class, call, health) {
                return Some(t);
            }
            start = end;
        }
        None
    }
}

/// The rendezvous winner among the up targets of one priority class.
fn pick<'a>(class: &'a [Target], call: u64, health: &HealthView) -> Option<&'a Target> {
    pick_by(class, call, |u| health.is_up(u))
}

/// The rendezvous winner among the targets of one class that `up` accepts.
#[inline]
fn pick_by(class: &[Target], call: u64, up: impl Fn(UpstreamId) -> bool) -> Option<&Target> {
    let first_weight = class.first()?.weight;
    if class.iter().all(|t| t.weight == first_weight) {
        class
            .iter()
            .filter(|t| up(t.upstream))
            .max_by_key(|t| draw(call, t.seed))
    } else {
        class.iter().filter(|t| up(t.upstream)).min_by(|a, b| {
            weighted_score(draw(call, a.seed), a.weight)
                .total_cmp(&weighted_score(draw(call, b.seed), b.weight))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::HealthSettings;
    use crate::table::{Action, GroupId, RouteTable};
    use crate::trie::PrefixKey;

    fn table(targets: &[(&str, u16, u16)]) -> RouteTable {
        let mut g = RouteGroup::new("g", Action::Forward);
        for &(a, priority, weight) in targets {
            g = g.with_target(Target::new(a.parse().unwrap(), priority, weight));
        }
        RouteTable::build(
            vec![g],
            &[(PrefixKey::from_digits(b"").unwrap(), GroupId(0))],
            HealthSettings::default(),
        )
        .unwrap()
    }

    fn call(i: usize) -> String {
        format!("{i:08x}-call@198.18.0.9")
    }

    #[test]
    fn health_view_tracks_bits() {
        let mut h = HealthView::all_up(70);
        assert_eq!(h.up_count(), 70);
        h.set(UpstreamId(69), false);
        assert!(!h.is_up(UpstreamId(69)));
        assert!(h.is_up(UpstreamId(68)));
        assert!(!h.is_up(UpstreamId(70)), "outside the view is down");
        assert_eq!(h.up_count(), 69);
    }

    #[test]
    fn the_same_call_id_picks_the_same_target() {
        let t = table(&[
            ("198.18.0.1:5060", 1, 1),
            ("198.18.0.2:5060", 1, 1),
            ("198.18.0.3:5060", 1, 1),
        ]);
        let g = t.group(GroupId(0));
        let h = HealthView::all_up(3);
        for i in 0..100 {
            let first = g.select(call(i).as_bytes(), &h).unwrap().addr;
            assert_eq!(g.select(call(i).as_bytes(), &h).unwrap().addr, first);
        }
    }

    #[test]
    fn the_preferred_priority_takes_every_call_while_up() {
        let t = table(&[("198.18.0.1:5060", 2, 1), ("198.18.0.2:5060", 1, 1)]);
        let g = t.group(GroupId(0));
        let mut h = HealthView::all_up(2);
        for i in 0..100 {
            assert_eq!(
                g.select(call(i).as_bytes(), &h).unwrap().addr.to_string(),
                "198.18.0.2:5060"
            );
        }
        h.set(g.targets[0].upstream(), false);
        assert_eq!(
            g.select(b"x", &h).unwrap().addr.to_string(),
            "198.18.0.1:5060"
        );
        h.set(g.targets[1].upstream(), false);
        assert_eq!(g.select(b"x", &h), None);
    }

    #[test]
    fn try_anyway_picks_a_preferred_target_when_all_are_down() {
        let t = table(&[("198.18.0.1:5060", 2, 1), ("198.18.0.2:5060", 1, 1)]);
        let g = t.group(GroupId(0));
        let mut h = HealthView::all_up(2);
        h.set(UpstreamId(0), false);
        h.set(UpstreamId(1), false);
        assert_eq!(g.select(b"x", &h), None);
        assert_eq!(
            g.select_ignoring_health(b"x").unwrap().addr.to_string(),
            "198.18.0.2:5060"
        );
    }

    #[test]
    fn a_down_target_moves_only_its_own_calls() {
        let t = table(&[
            ("198.18.0.1:5060", 1, 1),
            ("198.18.0.2:5060", 1, 1),
            ("198.18.0.3:5060", 1, 1),
        ]);
        let g = t.group(GroupId(0));
        let all = HealthView::all_up(3);
        let mut two = all.clone();
        let down = g.targets[1].upstream();
        two.set(down, false);
        for i in 0..1000 {
            let before = g.select(call(i).as_bytes(), &all).unwrap();
            let after = g.select(call(i).as_bytes(), &two).unwrap();
            if before.upstream() != down {
                assert_eq!(before.addr, after.addr, "call {i} moved without cause");
            } else {
                assert_ne!(after.upstream(), down);
            }
        }
    }

    #[test]
    fn weights_share_calls_in_proportion() {
        let t = table(&[("198.18.0.1:5060", 1, 3), ("198.18.0.2:5060", 1, 1)]);
        let g = t.group(GroupId(0));
        let h = HealthView::all_up(2);
        let heavy = (0..20_000)
            .filter(|&i| g.select(call(i).as_bytes(), &h).unwrap().weight == 3)
            .count();
        // Expected 15,000; the binomial standard deviation is about 61.
        assert!((14_400..=15_600).contains(&heavy), "{heavy}");
    }

    #[test]
    fn equal_weights_spread_calls_evenly() {
        let t = table(&[
            ("198.18.0.1:5060", 1, 5),
            ("198.18.0.2:5060", 1, 5),
            ("[2001:db8::7]:5060", 1, 5),
        ]);
        let g = t.group(GroupId(0));
        let h = HealthView::all_up(3);
        let mut counts = [0usize; 3];
        for i in 0..30_000 {
            let a = g.select(call(i).as_bytes(), &h).unwrap().upstream();
            counts[a.0 as usize] += 1;
        }
        for c in counts {
            assert!((9_400..=10_600).contains(&c), "{counts:?}");
        }
    }
}
