//! Abuse signals: per-source counts over a sliding window of what a scanner
//! or a password guesser does, and the moment a source crosses a limit.
//!
//! The worker keeps these counts itself (no sharing); when a source crosses
//! a limit it reports the source once per window, and the control thread
//! bans it. Only evidence an attacker cannot forge is counted. A UDP
//! datagram's source address can be forged, whoever it names, so by default
//! nothing that arrives over UDP counts, not even in a verified source's
//! name: anyone who knows a caller's address (a carrier's trunk, a PBX)
//! could otherwise get it banned with a few spoofed requests. Over UDP the
//! edge sheds such traffic instead (per-source rate limits and answer
//! budgets, scanner signatures in XDP), which harms nobody but the packets.
//! `ban_verified_udp = true` brings back bans of verified sources on UDP
//! evidence, for operators who accept that risk. Trusted sources are never
//! counted. The caller checks all of this before counting.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::source_table::{HashSeed, SourceKey, SourceTable};

/// Why a source is reported for a ban.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AbuseReason {
    /// Too many requests answered 404/484 (numbers that do not route).
    NotFound,
    /// Too many 401/403/407 answers relayed back (password guessing).
    AuthFailure,
    /// Too many distinct dialed numbers or users that do not route
    /// (an extension sweep).
    ExtensionScan,
}

impl AbuseReason {
    /// The reason's name in counters, events and the ban list.
    pub fn as_str(self) -> &'static str {
        match self {
            AbuseReason::NotFound => "not_found",
            AbuseReason::AuthFailure => "auth_failure",
            AbuseReason::ExtensionScan => "extension_scan",
        }
    }
}

/// The limits, per source and window. Zero disables a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AbuseConfig {
    /// The window the counts cover, in milliseconds.
    pub window_ms: u64,
    /// 404/484 answers to one source per window before it is reported.
    pub not_found: u32,
    /// 401/403/407 answers to one source per window before it is reported.
    pub auth_failures: u32,
    /// Distinct unroutable numbers or users from one source per window.
    pub distinct_numbers: u32,
    /// How long the control thread bans a reported source, in seconds.
    pub ban_seconds: u32,
    /// Bans the control thread makes per second from reports, at most
    /// (beyond, reports are counted and logged, not acted on): no report
    /// storm can fill the ban map.
    pub bans_per_second: u32,
    /// Burst of those bans.
    pub ban_burst: u32,
    /// Sources tracked per worker (memory is fixed at start).
    pub tracked_sources: usize,
    /// Count what arrives over UDP in a verified source's name toward its
    /// limits (default off: a spoofed datagram could then get a real caller
    /// banned; see the module's notes).
    pub ban_verified_udp: bool,
}

impl Default for AbuseConfig {
    fn default() -> Self {
        AbuseConfig {
            window_ms: 10_000,
            not_found: 50,
            auth_failures: 20,
            distinct_numbers: 20,
            ban_seconds: 600,
            bans_per_second: 10,
            ban_burst: 100,
            tracked_sources: 65_536,
            ban_verified_udp: false,
        }
    }
}

/// One source's counts in its current window.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    window_start: u64,
    not_found: u32,
    auth_failures: u32,
    /// Linear-counting sketch of distinct unroutable numbers.
    numbers: u128,
    /// Reported in this window already (report once per window).
    reported: bool,
}

/// Bits a 128-bit linear-counting sketch is expected to have set after
/// `n` distinct insertions: `128 * (1 - (1 - 1/128)^n)`, rounded down.
fn expected_bits(n: u32) -> u32 {
    let m = 128.0f64;
    (m * (1.0 - (1.0 - 1.0 / m).powi(n as i32))).floor() as u32
}

/// Per-source abuse counts of one worker.
#[derive(Debug, Clone)]
pub struct AbuseTracker {
    config: AbuseConfig,
    window_ns: u64,
    distinct_bits: u32,
    sources: SourceTable<Counts>,
}

impl AbuseTracker {
    /// A tracker with fixed memory for `config.tracked_sources` sources.
    pub fn new(config: AbuseConfig, seed: HashSeed) -> Self {
        AbuseTracker {
            config,
            window_ns: config.window_ms.max(1) * 1_000_000,
            distinct_bits: if config.distinct_numbers == 0 {
                0
            } else {
                expected_bits(config.distinct_numbers).max(1)
            },
            sources: SourceTable::with_capacity(config.tracked_sources.max(64), seed),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &AbuseConfig {
        &self.config
    }

    fn counts(&mut self, src: IpAddr, now: u64) -> &mut Counts {
        let window_ns = self.window_ns;
        let c = self.sources.entry(SourceKey::new(src), now);
        if now.saturating_sub(c.window_start) >= window_ns {
            *c = Counts {
                window_start: now,
                ..Counts::default()
            };
        }
        c
    }

    fn report(c: &mut Counts, crossed: bool, reason: AbuseReason) -> Option<AbuseReason> {
        if crossed && !c.reported {
            c.reported = true;
            return Some(reason);
        }
        None
    }

    /// Counts a 404/484 answered to `src` for the unroutable `number`
    /// (digits, possibly empty); returns a reason when `src` crosses a limit.
    pub fn not_found(&mut self, src: IpAddr, number: &[u8], now: u64) -> Option<AbuseReason> {
        let cfg = self.config;
        let distinct_bits = self.distinct_bits;
        let c = self.counts(src, now);
        c.not_found = c.not_found.saturating_add(1);
        if !number.is_empty() {
            c.numbers |= 1u128 << (fnv1a(number) % 128);
        }
        if cfg.distinct_numbers != 0 && c.numbers.count_ones() >= distinct_bits {
            return Self::report(c, true, AbuseReason::ExtensionScan);
        }
        Self::report(
            c,
            cfg.not_found != 0 && c.not_found >= cfg.not_found,
            AbuseReason::NotFound,
        )
    }

    /// Counts a 401/403/407 relayed or answered to `src`.
    pub fn auth_failure(&mut self, src: IpAddr, now: u64) -> Option<AbuseReason> {
        let limit = self.config.auth_failures;
        let c = self.counts(src, now);
        c.auth_failures = c.auth_failures.saturating_add(1);
        Self::report(
            c,
            limit != 0 && c.auth_failures >= limit,
            AbuseReason::AuthFailure,
        )
    }
}

/// FNV-1a over a short byte string (dialed numbers): cheap and good enough
/// to spread numbers over the sketch's bits.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn tracker() -> AbuseTracker {
        AbuseTracker::new(
            AbuseConfig {
                not_found: 5,
                auth_failures: 3,
                distinct_numbers: 10,
                ..AbuseConfig::default()
            },
            HashSeed::new(1, 2),
        )
    }

    #[test]
    fn repeated_not_found_to_one_number_reports_not_found_once() {
        let mut t = tracker();
        let reports: Vec<_> = (0..20)
            .filter_map(|i| t.not_found(ip("198.18.1.1"), b"100", i * MS))
            .collect();
        assert_eq!(reports, vec![AbuseReason::NotFound]);
    }

    #[test]
    fn a_sweep_of_distinct_numbers_reports_an_extension_scan() {
        let mut t = AbuseTracker::new(
            AbuseConfig {
                not_found: 0,
                distinct_numbers: 10,
                ..AbuseConfig::default()
            },
            HashSeed::new(1, 2),
        );
        let mut first = None;
        for ext in 100..200u32 {
            let n = ext.to_string();
            if let Some(r) = t.not_found(ip("198.18.1.2"), n.as_bytes(), ext as u64 * MS) {
                first = Some((ext - 100 + 1, r));
                break;
            }
        }
        let (after, reason) = first.expect("a sweep of 100 numbers is reported");
        assert_eq!(reason, AbuseReason::ExtensionScan);
        // Linear counting is approximate; it reports near the limit.
        assert!((8..=16).contains(&after), "reported after {after} numbers");
    }

    #[test]
    fn counts_restart_with_each_window() {
        let mut t = tracker();
        for i in 0..4 {
            assert_eq!(t.not_found(ip("198.18.1.3"), b"1", i * MS), None);
        }
        // The next one falls in a new window: counting starts again.
        assert_eq!(t.not_found(ip("198.18.1.3"), b"1", 20_000 * MS), None);
    }

    #[test]
    fn auth_failures_report_per_source() {
        let mut t = tracker();
        assert_eq!(t.auth_failure(ip("198.18.1.4"), 0), None);
        assert_eq!(t.auth_failure(ip("198.18.1.5"), 0), None);
        assert_eq!(t.auth_failure(ip("198.18.1.4"), MS), None);
        assert_eq!(
            t.auth_failure(ip("198.18.1.4"), 2 * MS),
            Some(AbuseReason::AuthFailure)
        );
        assert_eq!(t.auth_failure(ip("198.18.1.4"), 3 * MS), None);
    }

    #[test]
    fn zero_limits_never_report() {
        let mut t = AbuseTracker::new(
            AbuseConfig {
                not_found: 0,
                auth_failures: 0,
                distinct_numbers: 0,
                ..AbuseConfig::default()
            },
            HashSeed::new(1, 2),
        );
        for i in 0..1000u64 {
            assert_eq!(
                t.not_found(ip("198.18.1.6"), i.to_string().as_bytes(), i),
                None
            );
            assert_eq!(t.auth_failure(ip("198.18.1.6"), i), None);
        }
    }
}
