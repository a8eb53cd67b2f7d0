//! Who may get a locally generated answer, and how often: the rule that
//! keeps the edge from being a reflector.
//!
//! A spoofed request names a victim as its source. If the edge answered every
//! request, a flood of spoofed OPTIONS would turn it into an amplifier aimed
//! at the victim. So a source only gets answers freely once it has shown it
//! is real: it is allowlisted, it is an upstream of a route, or it echoed a
//! dialog cookie (it received a response routed through this edge). Every
//! other source shares a small per-worker budget, with a tiny per-source
//! allowance inside it.
//!
//! The same holds for new calls: an INVITE from an unverified source is
//! forwarded only within a per-worker budget of new calls from unverified
//! sources. Otherwise a flood of spoofed INVITEs that routes would reach the
//! upstreams, and their answers (100, 200, retransmitted until an ACK that
//! never comes) would be reflected at the spoofed addresses through the edge.
//!
//! Under a flood (more requests from unverified sources per second than a
//! threshold) the shields go up for a while: no answers and no new calls
//! for unverified sources at all, so a spoofed flood is reflected nowhere.
//! Verified and trusted sources are not affected.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::rate::{RateLimit, RateState};
use super::source_table::{SourceKey, SourceTable};

/// Answer budgets; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnswerConfig {
    /// Answers per second to one verified source.
    pub verified_rate: u32,
    /// Burst of answers to one verified source.
    pub verified_burst: u32,
    /// Answers per second to one unverified source.
    pub unverified_rate: u32,
    /// Burst of answers to one unverified source.
    pub unverified_burst: u32,
    /// Answers per second to all unverified sources together, per worker.
    pub unverified_total_rate: u32,
    /// Burst of that total.
    pub unverified_total_burst: u32,
    /// New calls per second from all unverified sources together, per
    /// worker; beyond it their INVITEs are dropped unanswered.
    pub unverified_calls_rate: u32,
    /// Burst of those new calls.
    pub unverified_calls_burst: u32,
    /// Requests per second from unverified sources, per worker, that mean a
    /// flood and raise the shields (0: never).
    pub flood_threshold: u32,
    /// How many requests beyond that rate, arriving at once, the detector
    /// lets pass before it calls them a flood. Small, so that the shields go
    /// up within the first milliseconds of a fast flood, before the answers
    /// to what got through come back (at least 1).
    pub flood_burst: u32,
    /// How long the shields stay up after the flood was last seen, seconds.
    pub shields_seconds: u32,
    /// How long a source stays verified after it last proved itself, in
    /// seconds.
    pub verified_seconds: u32,
    /// Sources tracked per worker (memory is fixed at start).
    pub tracked_sources: usize,
}

impl Default for AnswerConfig {
    fn default() -> Self {
        AnswerConfig {
            verified_rate: 200,
            verified_burst: 400,
            unverified_rate: 2,
            unverified_burst: 4,
            unverified_total_rate: 200,
            unverified_total_burst: 200,
            unverified_calls_rate: 200,
            unverified_calls_burst: 20,
            flood_threshold: 1000,
            flood_burst: 100,
            shields_seconds: 10,
            verified_seconds: 3600,
            tracked_sources: 65_536,
        }
    }
}

/// Whether an answer may go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerVerdict {
    /// Send it.
    Send,
    /// The source's own allowance is spent.
    SourceLimited,
    /// The budget shared by all unverified sources is spent.
    UnverifiedLimited,
}

#[derive(Debug, Clone, Copy, Default)]
struct SourceState {
    /// Until when (ns) the source counts as verified; 0 when never.
    verified_until: u64,
    answers: RateState,
}

/// One worker's answer budgets and its set of verified sources.
#[derive(Debug, Clone)]
pub struct Answers {
    verified: RateLimit,
    unverified: RateLimit,
    unverified_total: RateLimit,
    total_state: RateState,
    unverified_calls: RateLimit,
    calls_state: RateState,
    /// The flood detector: unverified requests within `flood_threshold` per
    /// second and `flood_burst` at once are normal; beyond, a flood.
    flood: Option<RateLimit>,
    flood_state: RateState,
    shields_ns: u64,
    shields_until: u64,
    shields_raised: u64,
    verified_ns: u64,
    sources: SourceTable<SourceState>,
}

impl Answers {
    /// Budgets from `config`, with fixed memory for its tracked sources.
    pub fn new(config: &AnswerConfig) -> Self {
        Answers {
            verified: RateLimit::per_second(config.verified_rate, config.verified_burst),
            unverified: RateLimit::per_second(config.unverified_rate, config.unverified_burst),
            unverified_total: RateLimit::per_second(
                config.unverified_total_rate,
                config.unverified_total_burst,
            ),
            total_state: RateState::default(),
            unverified_calls: RateLimit::per_second(
                config.unverified_calls_rate,
                config.unverified_calls_burst,
            ),
            calls_state: RateState::default(),
            flood: (config.flood_threshold != 0)
                .then(|| RateLimit::per_second(config.flood_threshold, config.flood_burst)),
            flood_state: RateState::default(),
            shields_ns: config.shields_seconds as u64 * 1_000_000_000,
            shields_until: 0,
            shields_raised: 0,
            verified_ns: config.verified_seconds as u64 * 1_000_000_000,
            sources: SourceTable::with_capacity(config.tracked_sources.max(64)),
        }
    }

    /// Records that `src` proved it is real at `now`.
    pub fn verify(&mut self, src: IpAddr, now: u64) {
        let until = now + self.verified_ns;
        self.sources.entry(SourceKey::new(src), now).verified_until = until;
    }

    /// True when `src` proved itself within the verification period.
    pub fn is_verified(&self, src: IpAddr, now: u64) -> bool {
        self.sources
            .get(SourceKey::new(src))
            .is_some_and(|s| s.verified_until > now)
    }

    /// Counts a request from an unverified, untrusted source at `now`, and
    /// raises the shields when such requests exceed the flood threshold.
    pub fn note_unverified(&mut self, now: u64) {
        let Some(flood) = &self.flood else {
            return;
        };
        if !flood.admit(&mut self.flood_state, now) {
            if self.shields_until <= now {
                self.shields_raised += 1;
            }
            self.shields_until = now + self.shields_ns;
        }
    }

    /// True while a flood of unverified requests keeps the shields up.
    pub fn shields_up(&self, now: u64) -> bool {
        self.shields_until > now
    }

    /// How many times the shields went up.
    pub fn shields_raised(&self) -> u64 {
        self.shields_raised
    }

    /// Decides whether a new call from `src` may be forwarded at `now`:
    /// always for trusted and verified sources, within the shared budget for
    /// the rest, and not at all for them while the shields are up.
    pub fn admit_call(&mut self, src: IpAddr, trusted: bool, now: u64) -> bool {
        trusted
            || self.is_verified(src, now)
            || (!self.shields_up(now) && self.unverified_calls.admit(&mut self.calls_state, now))
    }

    /// Decides whether an answer to `src` may go out at `now`, charging the
    /// budgets when it may. `trusted` sources (allowlisted, upstreams) count
    /// as verified.
    pub fn admit(&mut self, src: IpAddr, trusted: bool, now: u64) -> AnswerVerdict {
        let state = self.sources.entry(SourceKey::new(src), now);
        if trusted || state.verified_until > now {
            return if self.verified.admit(&mut state.answers, now) {
                AnswerVerdict::Send
            } else {
                AnswerVerdict::SourceLimited
            };
        }
        if self.shields_until > now {
            return AnswerVerdict::UnverifiedLimited;
        }
        // Check the source's own allowance without spending the shared
        // budget on a source that would be refused anyway.
        let mut trial = state.answers;
        if !self.unverified.admit(&mut trial, now) {
            return AnswerVerdict::SourceLimited;
        }
        if !self.unverified_total.admit(&mut self.total_state, now) {
            return AnswerVerdict::UnverifiedLimited;
        }
        state.answers = trial;
        AnswerVerdict::Send
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0xC612_0000 + n))
    }

    #[test]
    fn a_spoofed_flood_from_many_sources_gets_only_the_shared_budget() {
        let cfg = AnswerConfig {
            unverified_total_rate: 100,
            unverified_total_burst: 100,
            ..AnswerConfig::default()
        };
        let mut a = Answers::new(&cfg);
        // 100k requests from 100k sources over one second.
        let sent = (0..100_000u32)
            .filter(|&i| {
                a.admit(ip(i), false, 1_000 * MS + i as u64 * 10_000) == AnswerVerdict::Send
            })
            .count();
        assert!(sent <= 200, "{sent} answers went to spoofed sources");
        assert!(sent >= 100);
    }

    #[test]
    fn one_unverified_source_gets_its_small_allowance() {
        let mut a = Answers::new(&AnswerConfig::default());
        let sent = (0..1000)
            .filter(|&i| a.admit(ip(1), false, i * MS) == AnswerVerdict::Send)
            .count();
        // Burst of 4 then 2 per second over one second.
        assert!((4..=7).contains(&sent), "{sent}");
    }

    #[test]
    fn verified_and_trusted_sources_get_their_own_budget() {
        let mut a = Answers::new(&AnswerConfig::default());
        a.verify(ip(7), 0);
        assert!(a.is_verified(ip(7), MS));
        let verified = (0..300)
            .filter(|&i| a.admit(ip(7), false, i * MS) == AnswerVerdict::Send)
            .count();
        assert_eq!(verified, 300);
        let trusted = (0..300)
            .filter(|&i| a.admit(ip(8), true, i * MS) == AnswerVerdict::Send)
            .count();
        assert_eq!(trusted, 300);
    }

    #[test]
    fn new_calls_from_unverified_sources_share_a_budget() {
        let cfg = AnswerConfig {
            unverified_calls_rate: 50,
            unverified_calls_burst: 50,
            ..AnswerConfig::default()
        };
        let mut a = Answers::new(&cfg);
        let spoofed = (0..10_000u32)
            .filter(|&i| a.admit_call(ip(i), false, i as u64 * 100_000))
            .count();
        // One simulated second: the burst plus one second of rate at most.
        assert!((50..=101).contains(&spoofed), "{spoofed}");
        a.verify(ip(5), 0);
        assert!((0..1000).all(|_| a.admit_call(ip(5), false, MS)));
        assert!((0..1000).all(|_| a.admit_call(ip(6), true, MS)));
    }

    #[test]
    fn a_flood_raises_the_shields_and_they_fall_after_it() {
        let cfg = AnswerConfig {
            flood_threshold: 100,
            shields_seconds: 2,
            ..AnswerConfig::default()
        };
        let mut a = Answers::new(&cfg);
        a.verify(ip(1), 0);
        for i in 0..500u32 {
            a.note_unverified(i as u64 * MS);
        }
        assert!(a.shields_up(500 * MS));
        assert_eq!(a.shields_raised(), 1);
        // No answers and no calls for unverified sources; verified ones go on.
        assert_eq!(
            a.admit(ip(9), false, 501 * MS),
            AnswerVerdict::UnverifiedLimited
        );
        assert!(!a.admit_call(ip(9), false, 501 * MS));
        assert!(a.admit_call(ip(1), false, 501 * MS));
        assert_eq!(a.admit(ip(1), false, 501 * MS), AnswerVerdict::Send);
        // Quiet for longer than the shield time: down again.
        assert!(!a.shields_up(3_000 * MS));
        assert!(a.admit_call(ip(9), false, 3_000 * MS));
    }

    #[test]
    fn the_detector_trips_within_its_burst_and_spares_a_steady_rate() {
        let cfg = AnswerConfig {
            flood_threshold: 1000,
            flood_burst: 100,
            ..AnswerConfig::default()
        };
        // A steady 900 unverified requests per second for ten seconds: no flood.
        let mut a = Answers::new(&cfg);
        for i in 0..9_000u64 {
            a.note_unverified(i * 1_000_000_000 / 900);
        }
        assert_eq!(a.shields_raised(), 0);
        // 50,000 per second (20 us apart): up after about the burst.
        let mut a = Answers::new(&cfg);
        let t0 = 5_000 * MS;
        let first_up = (0..1_000u64)
            .find(|&i| {
                a.note_unverified(t0 + i * 20_000);
                a.shields_up(t0 + i * 20_000)
            })
            .expect("the shields go up");
        assert!((100..=110).contains(&first_up), "{first_up}");
    }

    #[test]
    fn verification_expires() {
        let cfg = AnswerConfig {
            verified_seconds: 1,
            ..AnswerConfig::default()
        };
        let mut a = Answers::new(&cfg);
        a.verify(ip(9), 0);
        assert!(a.is_verified(ip(9), 999 * MS));
        assert!(!a.is_verified(ip(9), 1001 * MS));
    }

    #[test]
    fn a_refused_source_does_not_spend_the_shared_budget() {
        let cfg = AnswerConfig {
            unverified_total_rate: 10,
            unverified_total_burst: 10,
            ..AnswerConfig::default()
        };
        let mut a = Answers::new(&cfg);
        // One noisy source hammers; it gets its 4 and no more.
        let noisy = (0..1000)
            .filter(|_| a.admit(ip(1), false, 0) == AnswerVerdict::Send)
            .count();
        assert_eq!(noisy, 4);
        // Six other sources still get answers from the shared budget.
        let others = (2..8)
            .filter(|&i| a.admit(ip(i), false, 0) == AnswerVerdict::Send)
            .count();
        assert_eq!(others, 6);
    }
}
