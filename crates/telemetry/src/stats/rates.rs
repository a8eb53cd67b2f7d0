//! Rates per second from two consecutive snapshots: what the live view shows
//! (drops per reason, passes, redirects, legitimate CPS, per-worker traffic).
//! Pure arithmetic over [`Snapshot`]s, so it is tested without a clock.

use std::collections::BTreeMap;

use super::Snapshot;

/// The per-second rate of a counter between two readings `seconds` apart.
/// A counter that went down was reset (the edge restarted): its rate counts
/// from zero, as Prometheus' `rate()` does.
pub fn counter_rate(previous: u64, current: u64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        return 0.0;
    }
    let increase = if current >= previous {
        current - previous
    } else {
        current
    };
    increase as f64 / seconds
}

/// The key of a top network in [`Rates::networks`]: a network is listed
/// once per drop reason.
pub fn network_key(network: &str, reason: &str) -> String {
    format!("{network} {reason}")
}

/// One worker's rates.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerRates {
    /// Worker index.
    pub id: usize,
    /// Datagrams received per second.
    pub received: f64,
    /// Datagrams transmitted per second.
    pub transmitted: f64,
    /// Messages dropped per second, all reasons.
    pub dropped: f64,
}

/// Rates between two snapshots.
#[derive(Debug, Clone, PartialEq)]
pub struct Rates {
    /// Seconds between the two snapshots.
    pub seconds: f64,
    /// XDP drops per second, by reason (every reason of the newer snapshot).
    pub drops: BTreeMap<String, f64>,
    /// XDP drops per second, all reasons.
    pub drops_total: f64,
    /// Packets passed to the kernel per second.
    pub passed: f64,
    /// Packets redirected to AF_XDP per second.
    pub redirected: f64,
    /// Legitimate calls per second: 2xx answers to INVITE relayed.
    pub cps: f64,
    /// INVITEs forwarded per second.
    pub invites_forwarded: f64,
    /// Calls failed per second.
    pub calls_failed: f64,
    /// Drops per second of each top source seen in both snapshots.
    pub sources: BTreeMap<String, f64>,
    /// Drops per second of each listed top network seen in both snapshots,
    /// keyed by [`network_key`] (network and reason).
    pub networks: BTreeMap<String, f64>,
    /// Per-worker rates, for workers present in both snapshots.
    pub workers: Vec<WorkerRates>,
}

impl Rates {
    /// Rates from `previous` to `current`, timed by the snapshots' own
    /// `taken_at_ms` (or `uptime_seconds` when the clock did not move).
    /// `None` when no time passed between them.
    pub fn between(previous: &Snapshot, current: &Snapshot) -> Option<Rates> {
        let seconds = elapsed_seconds(previous, current)?;
        let rate = |p: u64, c: u64| counter_rate(p, c, seconds);
        let empty = Default::default();
        let prev_xdp = previous.xdp.as_ref().unwrap_or(&empty);
        let cur_xdp = current.xdp.as_ref().unwrap_or(&empty);
        let drops: BTreeMap<String, f64> = cur_xdp
            .drops
            .iter()
            .map(|(reason, n)| {
                let before = prev_xdp.drops.get(reason).copied().unwrap_or(0);
                (reason.clone(), rate(before, *n))
            })
            .collect();
        let sources = current
            .top_sources
            .iter()
            .filter_map(|c| {
                previous
                    .top_sources
                    .iter()
                    .find(|p| p.source == c.source)
                    .map(|p| (c.source.clone(), rate(p.drops, c.drops)))
            })
            .collect();
        let networks = match (&previous.top_networks, &current.top_networks) {
            (Some(p), Some(c)) => c
                .networks
                .iter()
                .filter_map(|c| {
                    let key = network_key(&c.network, &c.reason);
                    p.networks
                        .iter()
                        .find(|p| p.network == c.network && p.reason == c.reason)
                        .map(|p| (key, rate(p.drops, c.drops)))
                })
                .collect(),
            _ => BTreeMap::new(),
        };
        let workers = current
            .workers
            .iter()
            .filter_map(|c| {
                let p = previous.workers.iter().find(|p| p.id == c.id)?;
                Some(WorkerRates {
                    id: c.id,
                    received: rate(p.received, c.received),
                    transmitted: rate(p.transmitted, c.transmitted),
                    dropped: rate(p.dropped.values().sum(), c.dropped.values().sum()),
                })
            })
            .collect();
        Some(Rates {
            seconds,
            drops_total: drops.values().sum(),
            drops,
            passed: rate(prev_xdp.passed, cur_xdp.passed),
            redirected: rate(prev_xdp.redirected, cur_xdp.redirected),
            cps: rate(previous.calls.answered, current.calls.answered),
            invites_forwarded: rate(
                previous.calls.invites_forwarded,
                current.calls.invites_forwarded,
            ),
            calls_failed: rate(previous.calls.failed, current.calls.failed),
            sources,
            networks,
            workers,
        })
    }
}

fn elapsed_seconds(previous: &Snapshot, current: &Snapshot) -> Option<f64> {
    if previous.taken_at_ms > 0 && current.taken_at_ms > previous.taken_at_ms {
        return Some((current.taken_at_ms - previous.taken_at_ms) as f64 / 1000.0);
    }
    let by_uptime = current.uptime_seconds - previous.uptime_seconds;
    (by_uptime > 0.0).then_some(by_uptime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{CallCounters, TopOffender, WorkerReport, XdpCounters};

    fn snapshot(at_ms: u64, scanner: u64, answered: u64, rx: u64) -> Snapshot {
        Snapshot {
            taken_at_ms: at_ms,
            uptime_seconds: at_ms as f64 / 1000.0,
            xdp: Some(XdpCounters {
                drops: [("scanner".to_string(), scanner), ("not_sip".to_string(), 0)].into(),
                passed: at_ms,
                redirected: 0,
            }),
            calls: CallCounters {
                invites_forwarded: answered,
                answered,
                failed: 0,
            },
            top_sources: vec![TopOffender {
                source: "198.18.0.9".into(),
                drops: scanner,
                last_reason: "scanner".into(),
            }],
            workers: vec![WorkerReport {
                id: 0,
                received: rx,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn rates_are_increase_over_elapsed_time() {
        let a = snapshot(10_000, 100, 50, 1000);
        let b = snapshot(12_000, 700, 250, 3000);
        let r = Rates::between(&a, &b).unwrap();
        assert_eq!(r.seconds, 2.0);
        assert_eq!(r.drops["scanner"], 300.0);
        assert_eq!(r.drops["not_sip"], 0.0);
        assert_eq!(r.drops_total, 300.0);
        assert_eq!(r.passed, 1000.0);
        assert_eq!(r.cps, 100.0);
        assert_eq!(r.sources["198.18.0.9"], 300.0);
        assert_eq!(r.workers[0].received, 1000.0);
    }

    #[test]
    fn no_elapsed_time_gives_no_rates() {
        let a = snapshot(10_000, 100, 50, 1000);
        assert_eq!(Rates::between(&a, &a), None);
    }

    #[test]
    fn uptime_times_snapshots_without_a_clock() {
        let mut a = snapshot(0, 0, 0, 0);
        let mut b = snapshot(0, 40, 0, 0);
        a.uptime_seconds = 1.0;
        b.uptime_seconds = 5.0;
        assert_eq!(Rates::between(&a, &b).unwrap().drops["scanner"], 10.0);
    }

    #[test]
    fn a_reset_counter_counts_from_zero() {
        assert_eq!(counter_rate(1000, 30, 3.0), 10.0);
    }
}
