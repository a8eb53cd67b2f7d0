//! What the filter has done: drops per reason, passes, redirects, the attach
//! mode and the top offending sources, as serde-serializable snapshots (the
//! SOC live view and the Prometheus exporter reuse them) and as text.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::abi::{self, DropReason};
use super::config::Cidr;

/// One value per drop reason, indexed by [`DropReason`]: the one list of
/// reasons (generated from the header) drives the counts, their names and
/// their order everywhere. Serialises as `{"blocklist": .., "banned": .., ...}`
/// in slot order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerReason<T>([T; DropReason::COUNT]);

impl<T: Copy + Default> Default for PerReason<T> {
    fn default() -> Self {
        PerReason([T::default(); DropReason::COUNT])
    }
}

impl<T: Copy> PerReason<T> {
    /// Each reason with its value, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, T)> + '_ {
        DropReason::ALL.iter().map(move |&r| (r, self.0[r.slot()]))
    }
}

impl<T> std::ops::Index<DropReason> for PerReason<T> {
    type Output = T;
    fn index(&self, r: DropReason) -> &T {
        &self.0[r.slot()]
    }
}

impl<T> std::ops::IndexMut<DropReason> for PerReason<T> {
    fn index_mut(&mut self, r: DropReason) -> &mut T {
        &mut self.0[r.slot()]
    }
}

impl<T: Serialize + Copy> Serialize for PerReason<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(DropReason::COUNT))?;
        for (r, v) in self.iter() {
            m.serialize_entry(r.name(), &v)?;
        }
        m.end()
    }
}

/// Drop counts, one per reason.
pub type DropCounts = PerReason<u64>;

/// Drops per second, one per reason.
pub type DropRates = PerReason<f64>;

impl DropCounts {
    fn from_slots(c: &[u64; abi::slot::SLOTS]) -> DropCounts {
        let mut d = DropCounts::default();
        for r in DropReason::ALL {
            d[r] = c[r.slot()];
        }
        d
    }

    /// Sum over every reason.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// Events counted besides the verdicts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct EventCounts {
    /// First fragments passed by the `fragments = "pass"` policy (also in
    /// `passed`, or in `passed_stream` for TCP).
    pub fragments_passed: u64,
    /// SIP packets (UDP) from allowlisted sources.
    pub allowlisted: u64,
    /// Verified scanners the program banned (into `auto_bans`).
    pub auto_bans: u64,
    /// Auto-bans `auto_bans` refused (full).
    pub auto_ban_failures: u64,
    /// Verified scanners not banned because this CPU's auto-ban budget
    /// (`auto_ban_budget`) was spent (dropped all the same).
    pub auto_bans_limited: u64,
    /// Scanners from unverified sources, which may be forged: dropped,
    /// nobody banned (counted while `auto_ban` is on).
    pub scanners_unproven: u64,
    /// Packets that hit an expired ban (which no longer applied).
    pub expired_ban_hits: u64,
    /// SIP packets from verified sources (unexpired, not allowlisted).
    pub verified: u64,
    /// Emergency calls' packets passed past bans, budgets and rate limits,
    /// within the emergency budgets.
    pub emergency_passed: u64,
}

/// A snapshot of the filter's counters, summed over CPUs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FilterStats {
    /// Drops per reason.
    pub drops: DropCounts,
    /// SIP that passed every check and went to the kernel stack.
    pub passed: u64,
    /// SIP that passed every check and went to an AF_XDP socket.
    pub redirected: u64,
    /// Everything that is neither UDP to a SIP port nor TCP to a SIP TCP
    /// port, passed untouched.
    pub passed_other: u64,
    /// TCP to a SIP TCP port that passed the lists, the bans and (a SYN)
    /// the SYN budgets, to the kernel's TCP stack.
    pub passed_stream: u64,
    /// Events.
    pub events: EventCounts,
    /// "native", "generic", or "none" (loaded, not attached).
    pub attach_mode: String,
    /// True when auto mode could not attach natively and fell back to generic.
    pub fell_back_to_generic: bool,
    /// "redirect" (appliance) or "pass" (shield, socket mode).
    pub verdict_mode: String,
}

impl FilterStats {
    /// From summed counters and the `info` entry.
    pub fn from_counters(c: &[u64; abi::slot::SLOTS], info: &abi::Info) -> FilterStats {
        use abi::slot::*;
        FilterStats {
            drops: DropCounts::from_slots(c),
            passed: c[PASSED],
            redirected: c[REDIRECTED],
            passed_other: c[PASSED_OTHER],
            passed_stream: c[PASSED_STREAM],
            events: EventCounts {
                fragments_passed: c[EV_FRAGMENT_PASSED],
                allowlisted: c[EV_ALLOWLISTED],
                auto_bans: c[EV_AUTO_BAN],
                auto_ban_failures: c[EV_AUTO_BAN_FAILED],
                auto_bans_limited: c[EV_AUTO_BAN_LIMITED],
                scanners_unproven: c[EV_SCANNER_UNPROVEN],
                expired_ban_hits: c[EV_BAN_EXPIRED],
                verified: c[EV_VERIFIED],
                emergency_passed: c[EV_EMERGENCY_PASSED],
            },
            attach_mode: match info.attach_mode {
                abi::ATTACH_NATIVE => "native",
                abi::ATTACH_GENERIC => "generic",
                _ => "none",
            }
            .into(),
            fell_back_to_generic: info.fell_back != 0,
            verdict_mode: if info.verdict_mode & abi::CFG_REDIRECT != 0 {
                "redirect"
            } else {
                "pass"
            }
            .into(),
        }
    }

    /// Every packet the program has seen (each moves exactly one verdict).
    pub fn packets(&self) -> u64 {
        self.drops.total() + self.passed + self.redirected + self.passed_other + self.passed_stream
    }

    /// Per-second rates between an earlier snapshot and this one.
    pub fn rates_since(&self, earlier: &FilterStats, elapsed: Duration) -> FilterRates {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let rate = |now: u64, then: u64| now.saturating_sub(then) as f64 / secs;
        let mut drops = DropRates::default();
        for r in DropReason::ALL {
            drops[r] = rate(self.drops[r], earlier.drops[r]);
        }
        FilterRates {
            interval_secs: secs,
            drops,
            passed: rate(self.passed, earlier.passed),
            redirected: rate(self.redirected, earlier.redirected),
            passed_other: rate(self.passed_other, earlier.passed_other),
            passed_stream: rate(self.passed_stream, earlier.passed_stream),
        }
    }
}

/// Per-second rates over an interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct FilterRates {
    /// Length of the interval the rates are measured over.
    pub interval_secs: f64,
    /// Drops per second per reason.
    pub drops: DropRates,
    /// SIP passed per second.
    pub passed: f64,
    /// SIP redirected per second.
    pub redirected: f64,
    /// Other traffic passed per second.
    pub passed_other: f64,
    /// TCP to the SIP TCP ports passed per second.
    pub passed_stream: f64,
}

/// One offending source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopSourceEntry {
    /// The source (IPv4 host, or IPv6 /64).
    pub source: Cidr,
    /// Packets dropped from it.
    pub drops: u64,
    /// The reason of its last drop.
    pub last_reason: &'static str,
    /// Seconds since its last drop.
    pub secs_since_last: u64,
}

impl TopSourceEntry {
    pub(crate) fn new(source: Cidr, v: &abi::TopSource, now_ns: u64) -> Self {
        TopSourceEntry {
            source,
            drops: v.drops,
            last_reason: DropReason::from_slot(v.last_reason as usize)
                .map(DropReason::name)
                .unwrap_or("unknown"),
            secs_since_last: now_ns.saturating_sub(v.last_ns) / 1_000_000_000,
        }
    }
}

/// What `dce-edge stats` prints: totals, rates, top sources.
#[derive(Debug, Clone, Serialize)]
pub struct StatsReport {
    /// The interface the filter runs on.
    pub iface: String,
    /// Counters at the end of the interval.
    pub totals: FilterStats,
    /// Rates over the interval.
    pub rates: FilterRates,
    /// The sources with the most drops.
    pub top_sources: Vec<TopSourceEntry>,
    /// Sources verified now (unexpired entries of the `verified` map).
    pub verified_sources: usize,
}

impl StatsReport {
    /// The report as a person reads it.
    pub fn to_text(&self) -> String {
        let t = &self.totals;
        let mut s = String::new();
        let mode = if t.fell_back_to_generic {
            format!("{} (FELL BACK from native: slow path)", t.attach_mode)
        } else {
            t.attach_mode.clone()
        };
        let _ = writeln!(
            s,
            "dce-edge filter on {}: XDP {mode}, good SIP is {}",
            self.iface,
            if t.verdict_mode == "redirect" {
                "redirected to AF_XDP"
            } else {
                "passed to the kernel"
            }
        );
        let _ = writeln!(s, "{:<16} {:>14} {:>12}", "", "total", "per second");
        for (reason, total) in t.drops.iter() {
            let rate = self.rates.drops[reason];
            let _ = writeln!(
                s,
                "{:<16} {total:>14} {rate:>12.1}",
                format!("drop {}", reason.name())
            );
        }
        let _ = writeln!(
            s,
            "{:<16} {:>14} {:>12.1}",
            "passed", t.passed, self.rates.passed
        );
        let _ = writeln!(
            s,
            "{:<16} {:>14} {:>12.1}",
            "redirected", t.redirected, self.rates.redirected
        );
        let _ = writeln!(
            s,
            "{:<16} {:>14} {:>12.1}",
            "other (not SIP)", t.passed_other, self.rates.passed_other
        );
        let e = &t.events;
        let _ = writeln!(
            s,
            "events: {} auto-bans ({} refused: map full, {} over the auto-ban budget), \
             {} unverified scanners dropped without a ban, {} allowlisted, \
             {} from verified sources, {} emergency-call packets passed, {} fragments passed, \
             {} expired-ban hits",
            e.auto_bans,
            e.auto_ban_failures,
            e.auto_bans_limited,
            e.scanners_unproven,
            e.allowlisted,
            e.verified,
            e.emergency_passed,
            e.fragments_passed,
            e.expired_ban_hits
        );
        let _ = writeln!(s, "verified sources: {}", self.verified_sources);
        if self.top_sources.is_empty() {
            let _ = writeln!(s, "top sources: none dropped");
        } else {
            let _ = writeln!(s, "top sources:");
            for src in &self.top_sources {
                let _ = writeln!(
                    s,
                    "  {:<24} {:>12} drops, last {} ({}s ago)",
                    src.source.to_string(),
                    src.drops,
                    src.last_reason,
                    src.secs_since_last
                );
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_divide_the_difference_by_the_interval() {
        let mut a = FilterStats::default();
        let mut b = FilterStats::default();
        a.drops[DropReason::Scanner] = 10;
        b.drops[DropReason::Scanner] = 30;
        b.passed = 5;
        let r = b.rates_since(&a, Duration::from_secs(2));
        assert_eq!(r.drops[DropReason::Scanner], 10.0);
        assert_eq!(r.passed, 2.5);
        assert_eq!(r.drops[DropReason::Banned], 0.0);
    }

    #[test]
    fn every_drop_reason_has_a_name_in_counter_order() {
        let mut c = [0u64; abi::slot::SLOTS];
        for (i, v) in c.iter_mut().enumerate().take(abi::slot::DROP_REASONS) {
            *v = 100 + i as u64;
        }
        let drops = DropCounts::from_slots(&c);
        let in_order: Vec<u64> = drops.iter().map(|(_, v)| v).collect();
        assert_eq!(in_order, c[..abi::slot::DROP_REASONS]);
        assert_eq!(
            DropReason::ALL[abi::slot::DROP_UNVERIFIED].name(),
            "unverified"
        );
        assert_eq!(drops[DropReason::Unverified], c[abi::slot::DROP_UNVERIFIED]);
        let mut more = drops;
        more[DropReason::Unverified] += 50;
        let later = FilterStats {
            drops: more,
            ..Default::default()
        };
        let earlier = FilterStats {
            drops,
            ..Default::default()
        };
        let r = later.rates_since(&earlier, Duration::from_secs(5));
        assert_eq!(r.drops[DropReason::Unverified], 10.0);
        assert_eq!(r.drops.iter().map(|(_, v)| v).sum::<f64>(), 10.0);
    }

    #[test]
    fn text_shows_unverified_drops_and_verified_sources() {
        let mut totals = FilterStats::default();
        totals.drops[DropReason::Unverified] = 4321;
        totals.events.verified = 17;
        let report = StatsReport {
            iface: "eth0".into(),
            totals,
            rates: FilterRates::default(),
            top_sources: vec![],
            verified_sources: 3,
        };
        let text = report.to_text();
        assert!(text.contains("drop unverified"), "{text}");
        assert!(text.contains("4321"), "{text}");
        assert!(text.contains("17 from verified sources"), "{text}");
        assert!(text.contains("verified sources: 3"), "{text}");
    }

    #[test]
    fn scanner_events_are_read_from_their_slots_and_shown() {
        let mut c = [0u64; abi::slot::SLOTS];
        c[abi::slot::EV_AUTO_BAN] = 2;
        c[abi::slot::EV_AUTO_BAN_LIMITED] = 3;
        c[abi::slot::EV_SCANNER_UNPROVEN] = 70_000;
        let totals = FilterStats::from_counters(&c, &abi::Info::default());
        assert_eq!(
            (
                totals.events.auto_bans,
                totals.events.auto_bans_limited,
                totals.events.scanners_unproven
            ),
            (2, 3, 70_000)
        );
        let report = StatsReport {
            iface: "eth0".into(),
            totals,
            rates: FilterRates::default(),
            top_sources: vec![],
            verified_sources: 0,
        };
        let text = report.to_text();
        assert!(text.contains("2 auto-bans"), "{text}");
        assert!(text.contains("3 over the auto-ban budget"), "{text}");
        assert!(
            text.contains("70000 unverified scanners dropped without a ban"),
            "{text}"
        );
    }

    #[test]
    fn fallback_is_shouted_in_the_text() {
        let report = StatsReport {
            iface: "eth0".into(),
            totals: FilterStats {
                attach_mode: "generic".into(),
                fell_back_to_generic: true,
                verdict_mode: "pass".into(),
                ..Default::default()
            },
            rates: FilterRates::default(),
            top_sources: vec![],
            verified_sources: 0,
        };
        let text = report.to_text();
        assert!(text.contains("FELL BACK"), "{text}");
        assert!(text.contains("passed to the kernel"), "{text}");
    }
}
