//! Sources that proved their address is real: they received something the
//! edge sent to that address and echoed it back (the dialog cookie of a
//! Record-Route, or the edge's own To tag in the ACK of its answer). Only
//! such a source is answered and forwarded freely, and only such a source
//! can be held to account (banned) for what it does: anything else may be
//! a spoofed address.
//!
//! The table is separate from every budget, so that nothing but a proof
//! puts a source in it and no flood of spoofed sources can push one out;
//! its hash is keyed, so nobody can aim sources at a neighbourhood either.
//! A proof lasts `verified_seconds` from the latest proof (refreshed on
//! use). IPv6 sources count by their /64, and each /48 may have only
//! `verified_per_48` new /64s verified within that time, so one site
//! cannot fill the table with its own addresses.
//!
//! Every worker keeps a copy: a proof seen by one worker goes to the control
//! thread, which tells every other worker (and the XDP filter) through the
//! rings, so a caller verified on one queue is verified on all of them.

use std::net::IpAddr;

/// The lowest bit of a stored lapse time: set when the source proved its
/// address *here* (this worker, or the control thread's own proof), clear
/// when the table holds it only from elsewhere (another worker's proof
/// passed on, another edge's). A lapse time one nanosecond off is harmless.
const LOCAL: u64 = 1;

use super::rate::{RateLimit, RateState};
use super::source_table::{HashSeed, SourceKey, SourceTable};

/// What a proof did to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// The source was not verified and now is, until the given time.
    New(u64),
    /// The source was verified; its expiry moved to the given time (said
    /// at most once per `refresh_ns`, so the control thread is not told of
    /// every in-dialog request).
    Refreshed(u64),
    /// The source was verified recently enough; nothing to tell.
    Unchanged,
    /// The source's /48 already had its share of new /64s.
    Refused,
}

/// One worker's (or the control thread's) verified sources.
#[derive(Debug, Clone)]
pub struct VerifiedSources {
    table: SourceTable<u64>,
    per_48: SourceTable<RateState>,
    per_48_limit: RateLimit,
    ttl_ns: u64,
    refresh_ns: u64,
    refused: u64,
}

impl VerifiedSources {
    /// Room for `capacity` sources, each verified for `ttl_seconds` after
    /// its latest proof, at most `per_48` new IPv6 /64s per /48 in that time.
    pub fn new(capacity: usize, ttl_seconds: u32, per_48: u32, seed: HashSeed) -> Self {
        let ttl_ns = ttl_seconds.max(1) as u64 * 1_000_000_000;
        let per_48 = per_48.max(1);
        VerifiedSources {
            table: SourceTable::with_capacity(capacity.max(64), seed),
            per_48: SourceTable::with_capacity((capacity / 16).max(64), seed),
            // `per_48` at once, then `per_48` more per time to live.
            per_48_limit: RateLimit::per_ns(ttl_ns / per_48 as u64, per_48),
            ttl_ns,
            refresh_ns: (ttl_ns / 60).max(1_000_000_000),
            refused: 0,
        }
    }

    /// True when `src` proved itself within the time to live.
    pub fn is_verified(&self, src: IpAddr, now: u64) -> bool {
        self.table
            .get(SourceKey::new(src))
            .is_some_and(|&until| until > now)
    }

    /// Records that `src` proved its address at `now`. The first proof
    /// seen here of a source the table held only from elsewhere is always
    /// told (`Refreshed`): what another edge keeps saying of a source never
    /// hides that it proved itself here.
    pub fn prove(&mut self, src: IpAddr, now: u64) -> Proof {
        let key = SourceKey::new(src);
        let until = now + self.ttl_ns;
        if let Some(current) = self.table.get_mut(key) {
            if *current > now {
                let held = *current & !LOCAL;
                if *current & LOCAL == 0 {
                    let until = until.max(held);
                    *current = until | LOCAL;
                    return Proof::Refreshed(until);
                }
                if held + self.refresh_ns <= until {
                    *current = until | LOCAL;
                    return Proof::Refreshed(until);
                }
                return Proof::Unchanged;
            }
        }
        if key.is_ipv6() {
            let state = self.per_48.entry(key.slash48(), now);
            if !self.per_48_limit.admit(state, now) {
                self.refused += 1;
                return Proof::Refused;
            }
        }
        *self.table.entry(key, now) = until | LOCAL;
        Proof::New(until)
    }

    /// Takes a proof another edge of the fleet saw: `src` proved its address
    /// there and stays verified until `until` (this clock), but never longer
    /// than one local time to live from `now`, and only within the same
    /// per-/48 limit as a proof seen here (so no edge can fill this table
    /// with one site's addresses).
    pub fn adopt(&mut self, src: IpAddr, until: u64, now: u64) -> Proof {
        let until = until.min(now + self.ttl_ns);
        if until <= now {
            return Proof::Unchanged;
        }
        let key = SourceKey::new(src);
        if let Some(current) = self.table.get_mut(key) {
            if *current > now {
                if (*current & !LOCAL) + self.refresh_ns <= until {
                    *current = (until & !LOCAL) | (*current & LOCAL);
                    return Proof::Refreshed(until);
                }
                return Proof::Unchanged;
            }
        }
        if key.is_ipv6() {
            let state = self.per_48.entry(key.slash48(), now);
            if !self.per_48_limit.admit(state, now) {
                self.refused += 1;
                return Proof::Refused;
            }
        }
        *self.table.entry(key, now) = until & !LOCAL;
        Proof::New(until)
    }

    /// Takes a verification another worker (or the control thread) made:
    /// `src` is verified until `until`, unless this copy already has a
    /// later expiry. Held as from elsewhere: a proof later seen here is
    /// told once.
    pub fn apply(&mut self, src: IpAddr, until: u64, now: u64) {
        let e = self.table.entry(SourceKey::new(src), now);
        let held = if *e > now { *e } else { 0 };
        *e = (held & !LOCAL).max(until & !LOCAL) | (held & LOCAL);
    }

    /// Forgets `src` (an operator ban, an unban of trust).
    pub fn forget(&mut self, src: IpAddr) {
        self.table.remove(SourceKey::new(src));
    }

    /// Proofs refused by the per-/48 limit.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// How many sources the table holds (expired ones until pushed out).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when the table holds no source.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const SEED: HashSeed = HashSeed::new(9, 8);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_proof_verifies_for_the_time_to_live_and_a_later_one_refreshes() {
        let mut v = VerifiedSources::new(1024, 3600, 16, SEED);
        let a = ip("198.18.0.10");
        assert!(!v.is_verified(a, S));
        assert_eq!(v.prove(a, S), Proof::New(3601 * S));
        assert!(v.is_verified(a, 3600 * S));
        assert!(!v.is_verified(a, 3602 * S));
        // Proving again soon changes nothing worth telling.
        assert_eq!(v.prove(a, 2 * S), Proof::Unchanged);
        // A minute later the expiry moves.
        assert_eq!(v.prove(a, 70 * S), Proof::Refreshed(3670 * S));
        assert!(v.is_verified(a, 3660 * S));
    }

    #[test]
    fn a_lapsed_source_must_prove_itself_anew() {
        let mut v = VerifiedSources::new(1024, 10, 16, SEED);
        let a = ip("198.18.0.10");
        v.prove(a, 0);
        assert!(!v.is_verified(a, 11 * S));
        assert_eq!(v.prove(a, 11 * S), Proof::New(21 * S));
    }

    #[test]
    fn one_slash48_gets_only_its_share_of_new_slash64s() {
        let mut v = VerifiedSources::new(1 << 16, 3600, 16, SEED);
        let mut new = 0;
        for i in 0..1000u32 {
            let a: IpAddr = format!("2001:db8:7:{:x}::1", i).parse().unwrap();
            if matches!(v.prove(a, S), Proof::New(_)) {
                new += 1;
            }
        }
        assert_eq!(new, 16);
        assert_eq!(v.refused(), 1000 - 16);
        // Another /48 has its own share; IPv4 has no such limit.
        assert!(matches!(v.prove(ip("2001:db8:8::1"), S), Proof::New(_)));
        for i in 0..100u32 {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(0xC612_0000 + i));
            assert!(matches!(v.prove(a, S), Proof::New(_)));
        }
    }

    #[test]
    fn a_verification_from_another_worker_is_taken_and_never_shortened() {
        let mut v = VerifiedSources::new(1024, 3600, 16, SEED);
        let a = ip("198.18.0.10");
        v.apply(a, 100 * S, S);
        assert!(v.is_verified(a, 99 * S));
        v.apply(a, 50 * S, 2 * S);
        assert!(v.is_verified(a, 99 * S));
        v.forget(a);
        assert!(!v.is_verified(a, 2 * S));
    }

    /// Another edge (perhaps one taken over) keeps vouching for a source
    /// that also proves itself here: the first proof seen here is still
    /// told, so the control thread knows it proved itself here (and no
    /// other edge's word bans it here).
    #[test]
    fn a_proof_seen_here_is_told_even_when_another_edge_keeps_vouching() {
        let mut v = VerifiedSources::new(1 << 16, 3600, 16, SEED);
        let a = ip("198.18.0.10");
        assert_eq!(v.adopt(a, 3601 * S, S), Proof::New(3601 * S));
        // Adopted again a moment later: nothing new.
        assert_eq!(v.adopt(a, 3602 * S, 2 * S), Proof::Unchanged);
        // Its first proof here, a second after: told.
        assert_eq!(v.prove(a, 3 * S), Proof::Refreshed(3603 * S));
        assert!(v.is_verified(a, 3602 * S));
        // Then as usual: once per refresh.
        assert_eq!(v.prove(a, 4 * S), Proof::Unchanged);
        assert_eq!(v.adopt(a, 3604 * S, 4 * S), Proof::Unchanged);
        assert_eq!(v.prove(a, 70 * S), Proof::Refreshed(3670 * S));
        // A proof passed on by another worker counts as from elsewhere
        // until this worker sees one; it never shortens one seen here.
        let b = ip("198.18.0.11");
        v.apply(b, 3601 * S, S);
        assert_eq!(v.prove(b, 2 * S), Proof::Refreshed(3602 * S));
        v.apply(b, 100 * S, 3 * S);
        assert!(v.is_verified(b, 3601 * S));
        assert_eq!(v.prove(b, 4 * S), Proof::Unchanged);
    }

    #[test]
    fn a_proof_from_another_edge_is_capped_at_the_local_time_to_live_and_the_slash48_share() {
        let mut v = VerifiedSources::new(1 << 16, 3600, 16, SEED);
        let a = ip("198.18.0.10");
        // Another edge says "for a day": one local time to live at most.
        assert_eq!(v.adopt(a, 86_400 * S, S), Proof::New(3601 * S));
        assert!(!v.is_verified(a, 3602 * S));
        // Already lapsed: nothing to take.
        assert_eq!(v.adopt(ip("198.18.0.11"), S, 2 * S), Proof::Unchanged);
        assert!(!v.is_verified(ip("198.18.0.11"), 2 * S));
        // One /48 cannot be filled through the fleet either.
        let mut new = 0;
        for i in 0..100u32 {
            let b: IpAddr = format!("2001:db8:9:{:x}::1", i).parse().unwrap();
            if matches!(v.adopt(b, 3000 * S, S), Proof::New(_)) {
                new += 1;
            }
        }
        assert_eq!(new, 16);
    }
}
