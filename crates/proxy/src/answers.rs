//! Who may get what from the edge, and how often: the rule that keeps the
//! edge from being a reflector or an amplifier.
//!
//! A spoofed request names a victim as its source. If the edge answered
//! every request, or forwarded every request and relayed every response, a
//! flood of spoofed requests would be turned at the victim. So a source only
//! gets service freely once it has shown it is real (see [`crate::verified`]):
//! it is allowlisted, it is an upstream, or it proved it receives what the
//! edge sends to its address. Everything toward or from every other source
//! pays budgets, per worker:
//!
//! - **requests** from unverified sources that the edge would forward,
//!   whatever their method, share one budget (`unverified_requests_*`);
//! - **answers** the edge makes itself toward an unverified source pay that
//!   source's small allowance (`unverified_*`), and **responses** it relays
//!   toward one pay that source's allowance for responses
//!   (`unverified_responses_*`);
//! - both then pay one budget shared by every datagram toward every
//!   unverified address (`unverified_total_*`): its burst is the most a
//!   flood can get back at its onset from one worker.
//!
//! Under a flood (more requests from unverified sources per second than a
//! threshold) the shields go up for a while: nothing is forwarded for,
//! answered or relayed to unverified sources at all, so a spoofed flood is
//! reflected nowhere. Verified and trusted sources are not affected.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::rate::{RateLimit, RateState};
use super::source_table::{HashSeed, SourceKey, SourceTable};

/// Budgets; see the module documentation. The table is `[proxy.answers]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnswerConfig {
    /// Local answers per second to one verified or trusted source.
    pub verified_rate: u32,
    /// Burst of answers to one verified or trusted source.
    pub verified_burst: u32,
    /// Local answers per second to one unverified source.
    pub unverified_rate: u32,
    /// Burst of local answers to one unverified source.
    pub unverified_burst: u32,
    /// Relayed responses per second toward one unverified source (a new
    /// caller's 100, 180 and 200 before its ACK proves it).
    pub unverified_responses_rate: u32,
    /// Burst of relayed responses toward one unverified source.
    pub unverified_responses_burst: u32,
    /// Datagrams per second (answers and relayed responses) toward all
    /// unverified addresses together, per worker.
    pub unverified_total_rate: u32,
    /// Burst of that total: the most one worker sends toward unverified
    /// addresses at a flood's onset, before its shields go up.
    pub unverified_total_burst: u32,
    /// Requests per second from all unverified sources together that the
    /// worker forwards, whatever their method; beyond it they are dropped
    /// unanswered.
    #[serde(alias = "unverified_calls_rate")]
    pub unverified_requests_rate: u32,
    /// Burst of those requests.
    #[serde(alias = "unverified_calls_burst")]
    pub unverified_requests_burst: u32,
    /// Requests per second from unverified sources, per worker, that mean a
    /// flood and raise the shields (0: never).
    pub flood_threshold: u32,
    /// How many requests beyond that rate, arriving at once, the detector
    /// lets pass before it calls them a flood. Small, so that the shields go
    /// up within the first milliseconds of a fast flood (at least 1).
    pub flood_burst: u32,
    /// How long the shields stay up after the flood was last seen, seconds.
    pub shields_seconds: u32,
    /// How long a source stays verified after it last proved itself, in
    /// seconds.
    pub verified_seconds: u32,
    /// IPv6 /64s that may become verified per /48 within
    /// `verified_seconds` (one site holds a /48; an attacker holding one
    /// cannot fill the verified table with its 65,536 /64s).
    pub verified_per_48: u32,
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
            unverified_responses_rate: 10,
            unverified_responses_burst: 10,
            unverified_total_rate: 200,
            unverified_total_burst: 40,
            unverified_requests_rate: 200,
            unverified_requests_burst: 10,
            flood_threshold: 1000,
            flood_burst: 100,
            shields_seconds: 10,
            verified_seconds: 3600,
            verified_per_48: 16,
            tracked_sources: 65_536,
        }
    }
}

/// How far the edge trusts an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Allowlisted, or an upstream the route table forwards to.
    Trusted,
    /// Proved it receives what the edge sends to it.
    Verified,
    /// Anything else: possibly spoofed.
    Unverified,
}

impl Standing {
    /// True for trusted and verified addresses.
    pub fn is_proven(self) -> bool {
        self != Standing::Unverified
    }
}

/// Whether a datagram may go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerVerdict {
    /// Send it.
    Send,
    /// The destination's own allowance is spent.
    SourceLimited,
    /// The budget shared by all unverified destinations is spent.
    UnverifiedLimited,
    /// A flood of unverified requests keeps the shields up.
    Shielded,
}

#[derive(Debug, Clone, Copy, Default)]
struct SourceState {
    answers: RateState,
    responses: RateState,
}

/// One worker's budgets.
#[derive(Debug, Clone)]
pub struct Answers {
    verified: RateLimit,
    unverified: RateLimit,
    unverified_responses: RateLimit,
    unverified_total: RateLimit,
    total_state: RateState,
    unverified_requests: RateLimit,
    requests_state: RateState,
    /// The flood detector: unverified requests within `flood_threshold` per
    /// second and `flood_burst` at once are normal; beyond, a flood.
    flood: Option<RateLimit>,
    flood_state: RateState,
    shields_ns: u64,
    shields_until: u64,
    shields_raised: u64,
    sources: SourceTable<SourceState>,
}

impl Answers {
    /// Budgets from `config`, with fixed memory for its tracked sources,
    /// placed by `seed`.
    pub fn new(config: &AnswerConfig, seed: HashSeed) -> Self {
        Answers {
            verified: RateLimit::per_second(config.verified_rate, config.verified_burst),
            unverified: RateLimit::per_second(config.unverified_rate, config.unverified_burst),
            unverified_responses: RateLimit::per_second(
                config.unverified_responses_rate,
                config.unverified_responses_burst,
            ),
            unverified_total: RateLimit::per_second(
                config.unverified_total_rate,
                config.unverified_total_burst,
            ),
            total_state: RateState::default(),
            unverified_requests: RateLimit::per_second(
                config.unverified_requests_rate,
                config.unverified_requests_burst,
            ),
            requests_state: RateState::default(),
            flood: (config.flood_threshold != 0)
                .then(|| RateLimit::per_second(config.flood_threshold, config.flood_burst)),
            flood_state: RateState::default(),
            shields_ns: config.shields_seconds as u64 * 1_000_000_000,
            shields_until: 0,
            shields_raised: 0,
            sources: SourceTable::with_capacity(config.tracked_sources.max(64), seed),
        }
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

    /// Decides whether a request from a source of `standing` may be
    /// forwarded at `now`: always for trusted and verified sources, within
    /// the shared budget for the rest, and not at all for them while the
    /// shields are up.
    pub fn admit_request(&mut self, standing: Standing, now: u64) -> bool {
        standing.is_proven()
            || (!self.shields_up(now)
                && self
                    .unverified_requests
                    .admit(&mut self.requests_state, now))
    }

    /// Decides whether a local answer to `dst` may go out at `now`, charging
    /// the budgets when it may.
    pub fn admit_answer(&mut self, dst: IpAddr, standing: Standing, now: u64) -> AnswerVerdict {
        let verified = self.verified;
        let state = self.sources.entry(SourceKey::new(dst), now);
        if standing.is_proven() {
            return if verified.admit(&mut state.answers, now) {
                AnswerVerdict::Send
            } else {
                AnswerVerdict::SourceLimited
            };
        }
        let limit = self.unverified;
        self.admit_unverified(dst, now, limit, |s| &mut s.answers)
    }

    /// Decides whether a relayed response toward `dst` may go out at `now`:
    /// always toward trusted and verified addresses, within the budgets
    /// toward the rest.
    pub fn admit_response(&mut self, dst: IpAddr, standing: Standing, now: u64) -> AnswerVerdict {
        if standing.is_proven() {
            return AnswerVerdict::Send;
        }
        let limit = self.unverified_responses;
        self.admit_unverified(dst, now, limit, |s| &mut s.responses)
    }

    /// The shields, then the destination's own allowance (checked without
    /// spending the shared budget on a destination that would be refused),
    /// then the shared budget.
    fn admit_unverified(
        &mut self,
        dst: IpAddr,
        now: u64,
        own: RateLimit,
        field: impl Fn(&mut SourceState) -> &mut RateState,
    ) -> AnswerVerdict {
        if self.shields_until > now {
            return AnswerVerdict::Shielded;
        }
        let state = self.sources.entry(SourceKey::new(dst), now);
        let mut trial = *field(state);
        if !own.admit(&mut trial, now) {
            return AnswerVerdict::SourceLimited;
        }
        if !self.unverified_total.admit(&mut self.total_state, now) {
            return AnswerVerdict::UnverifiedLimited;
        }
        let state = self.sources.entry(SourceKey::new(dst), now);
        *field(state) = trial;
        AnswerVerdict::Send
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const SEED: HashSeed = HashSeed::new(1, 2);

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0xC612_0000 + n))
    }

    #[test]
    fn a_spoofed_flood_from_many_sources_gets_only_the_shared_budget() {
        let cfg = AnswerConfig {
            unverified_total_rate: 100,
            unverified_total_burst: 100,
            flood_threshold: 0,
            ..AnswerConfig::default()
        };
        let mut a = Answers::new(&cfg, SEED);
        // 100k requests from 100k sources over one second.
        let sent = (0..100_000u32)
            .filter(|&i| {
                a.admit_answer(ip(i), Standing::Unverified, 1_000 * MS + i as u64 * 10_000)
                    == AnswerVerdict::Send
            })
            .count();
        assert!(sent <= 200, "{sent} answers went to spoofed sources");
        assert!(sent >= 100);
    }

    #[test]
    fn answers_and_responses_toward_unverified_addresses_share_one_budget() {
        let cfg = AnswerConfig {
            unverified_total_rate: 1,
            unverified_total_burst: 30,
            flood_threshold: 0,
            ..AnswerConfig::default()
        };
        let mut a = Answers::new(&cfg, SEED);
        let mut sent = 0;
        for i in 0..100u32 {
            sent +=
                (a.admit_answer(ip(i), Standing::Unverified, MS) == AnswerVerdict::Send) as usize;
            sent += (a.admit_response(ip(1000 + i), Standing::Unverified, MS)
                == AnswerVerdict::Send) as usize;
        }
        assert_eq!(sent, 30);
    }

    #[test]
    fn one_unverified_source_gets_its_small_allowance() {
        let mut a = Answers::new(&AnswerConfig::default(), SEED);
        let sent = (0..1000)
            .filter(|&i| a.admit_answer(ip(1), Standing::Unverified, i * MS) == AnswerVerdict::Send)
            .count();
        // Burst of 4 then 2 per second over one second.
        assert!((4..=7).contains(&sent), "{sent}");
    }

    #[test]
    fn verified_and_trusted_sources_get_their_own_budget() {
        let mut a = Answers::new(&AnswerConfig::default(), SEED);
        let verified = (0..300)
            .filter(|&i| a.admit_answer(ip(7), Standing::Verified, i * MS) == AnswerVerdict::Send)
            .count();
        assert_eq!(verified, 300);
        let trusted = (0..300)
            .filter(|&i| a.admit_answer(ip(8), Standing::Trusted, i * MS) == AnswerVerdict::Send)
            .count();
        assert_eq!(trusted, 300);
        assert!((0..1000)
            .all(|i| a.admit_response(ip(7), Standing::Verified, i) == AnswerVerdict::Send));
    }

    #[test]
    fn requests_from_unverified_sources_share_a_budget_whatever_their_method() {
        let cfg = AnswerConfig {
            unverified_requests_rate: 50,
            unverified_requests_burst: 50,
            flood_threshold: 0,
            ..AnswerConfig::default()
        };
        let mut a = Answers::new(&cfg, SEED);
        let spoofed = (0..10_000u32)
            .filter(|&i| a.admit_request(Standing::Unverified, i as u64 * 100_000))
            .count();
        // One simulated second: the burst plus one second of rate at most.
        assert!((50..=101).contains(&spoofed), "{spoofed}");
        assert!((0..1000).all(|_| a.admit_request(Standing::Verified, MS)));
        assert!((0..1000).all(|_| a.admit_request(Standing::Trusted, MS)));
    }

    #[test]
    fn a_flood_raises_the_shields_and_they_fall_after_it() {
        let cfg = AnswerConfig {
            flood_threshold: 100,
            shields_seconds: 2,
            ..AnswerConfig::default()
        };
        let mut a = Answers::new(&cfg, SEED);
        for i in 0..500u32 {
            a.note_unverified(i as u64 * MS);
        }
        assert!(a.shields_up(500 * MS));
        assert_eq!(a.shields_raised(), 1);
        // Nothing for unverified addresses; verified ones go on.
        assert_eq!(
            a.admit_answer(ip(9), Standing::Unverified, 501 * MS),
            AnswerVerdict::Shielded
        );
        assert_eq!(
            a.admit_response(ip(9), Standing::Unverified, 501 * MS),
            AnswerVerdict::Shielded
        );
        assert!(!a.admit_request(Standing::Unverified, 501 * MS));
        assert!(a.admit_request(Standing::Verified, 501 * MS));
        assert_eq!(
            a.admit_answer(ip(1), Standing::Verified, 501 * MS),
            AnswerVerdict::Send
        );
        // Quiet for longer than the shield time: down again.
        assert!(!a.shields_up(3_000 * MS));
        assert!(a.admit_request(Standing::Unverified, 3_000 * MS));
    }

    #[test]
    fn the_detector_trips_within_its_burst_and_spares_a_steady_rate() {
        let cfg = AnswerConfig {
            flood_threshold: 1000,
            flood_burst: 100,
            ..AnswerConfig::default()
        };
        // A steady 900 unverified requests per second for ten seconds: no flood.
        let mut a = Answers::new(&cfg, SEED);
        for i in 0..9_000u64 {
            a.note_unverified(i * 1_000_000_000 / 900);
        }
        assert_eq!(a.shields_raised(), 0);
        // 50,000 per second (20 us apart): up after about the burst.
        let mut a = Answers::new(&cfg, SEED);
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
    fn a_refused_source_does_not_spend_the_shared_budget() {
        let cfg = AnswerConfig {
            unverified_total_rate: 10,
            unverified_total_burst: 10,
            ..AnswerConfig::default()
        };
        let mut a = Answers::new(&cfg, SEED);
        // One noisy source hammers; it gets its 4 and no more.
        let noisy = (0..1000)
            .filter(|_| a.admit_answer(ip(1), Standing::Unverified, 0) == AnswerVerdict::Send)
            .count();
        assert_eq!(noisy, 4);
        // Six other sources still get answers from the shared budget.
        let others = (2..8)
            .filter(|&i| a.admit_answer(ip(i), Standing::Unverified, 0) == AnswerVerdict::Send)
            .count();
        assert_eq!(others, 6);
    }

    #[test]
    fn the_default_onset_burst_is_under_a_hundred_datagrams_for_two_workers() {
        // What a spoofed flood can get back before the shields rise, at most:
        // the shared burst of each worker.
        let cfg = AnswerConfig::default();
        assert!(2 * cfg.unverified_total_burst <= 100);
        assert!(cfg.flood_burst >= 1);
    }

    #[test]
    fn old_configuration_names_of_the_request_budget_still_read() {
        let c: AnswerConfig =
            toml::from_str("unverified_calls_rate = 7\nunverified_calls_burst = 3\n").unwrap();
        assert_eq!(c.unverified_requests_rate, 7);
        assert_eq!(c.unverified_requests_burst, 3);
    }
}
