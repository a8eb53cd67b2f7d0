//! Emergency calls (911, 112, 999, ..., `urn:service:sos`): never blocked,
//! capped or shed. They skip the shields, the budget for unverified
//! sources, the route groups' CPS caps and (unless configured otherwise)
//! bans, and are never answered 503 for capacity; a target that looks down
//! is still tried when there is no other.
//!
//! What bounds them instead is their own budget, per worker: emergency
//! requests from unverified sources, and the responses relayed back to
//! them, each within a rate and burst of their own. So a flood of spoofed
//! emergency INVITEs reaches the emergency targets and the spoofed
//! addresses only within that budget, and starves nothing else.

use serde::{Deserialize, Serialize};

use super::rate::{RateLimit, RateState};
use hdrhistogram::Histogram;

/// The `[proxy.emergency]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmergencyConfig {
    /// Emergency requests per second from unverified sources, per worker.
    pub requests_rate: u32,
    /// Burst of those requests.
    pub requests_burst: u32,
    /// Responses per second relayed toward unverified emergency callers,
    /// per worker.
    pub responses_rate: u32,
    /// Burst of those responses.
    pub responses_burst: u32,
    /// Keep bans for emergency calls too (default: a banned source still
    /// reaches emergency services).
    pub keep_bans: bool,
}

impl Default for EmergencyConfig {
    fn default() -> Self {
        EmergencyConfig {
            requests_rate: 50,
            requests_burst: 20,
            responses_rate: 200,
            responses_burst: 60,
            keep_bans: false,
        }
    }
}

/// Emergency calls, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmergencyCalls {
    /// Emergency INVITEs received (retransmissions included).
    pub attempted: u64,
    /// New emergency calls forwarded.
    pub forwarded: u64,
    /// Emergency calls answered 2xx.
    pub answered: u64,
    /// Emergency calls that got a final failure.
    pub failed: u64,
    /// Emergency requests from unverified sources over the emergency budget.
    pub over_budget: u64,
}

/// One worker's emergency budgets and counters.
#[derive(Debug, Clone)]
pub struct EmergencyState {
    requests: RateLimit,
    requests_state: RateState,
    pub(crate) responses: RateLimit,
    pub(crate) responses_state: RateState,
    pub(crate) calls: EmergencyCalls,
    pub(crate) setup_us: Histogram<u64>,
}

impl EmergencyState {
    /// Budgets from `config`.
    pub fn new(config: &EmergencyConfig) -> Self {
        EmergencyState {
            requests: RateLimit::per_second(config.requests_rate, config.requests_burst),
            requests_state: RateState::default(),
            responses: RateLimit::per_second(config.responses_rate, config.responses_burst),
            responses_state: RateState::default(),
            calls: EmergencyCalls::default(),
            setup_us: Histogram::new_with_bounds(1, 120_000_000, 2)
                .expect("valid histogram bounds"),
        }
    }

    /// Whether an emergency request from an unverified source may be
    /// forwarded at `now` (charged when it may).
    pub fn admit_request(&mut self, now: u64) -> bool {
        self.requests.admit(&mut self.requests_state, now)
    }

    /// The counters.
    pub fn calls(&self) -> EmergencyCalls {
        self.calls
    }

    /// Setup times of emergency calls, in microseconds.
    pub fn setup_us(&self) -> &Histogram<u64> {
        &self.setup_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_budget_bounds_a_flood() {
        let mut e = EmergencyState::new(&EmergencyConfig::default());
        // 10,000 requests in one second.
        let admitted = (0..10_000u64)
            .filter(|i| e.admit_request(i * 100_000))
            .count();
        assert!((20..=71).contains(&admitted), "{admitted}");
    }

    #[test]
    fn the_table_reads_with_defaults() {
        let c: EmergencyConfig = toml::from_str("keep_bans = true\n").unwrap();
        assert!(c.keep_bans);
        assert_eq!(c.requests_burst, EmergencyConfig::default().requests_burst);
    }
}
