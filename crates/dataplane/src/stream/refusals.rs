//! Connections refused by the caps, folded into one summary per window so
//! that the event log says who is refused without letting a flood of
//! connections write a line each.
//!
//! A refused connection completed its TCP handshake, so its source is
//! real; still, one host (or one IPv6 network of many /64s) can open
//! connections as fast as the kernel accepts them. The tally keeps at most
//! [`MAX_TALLIED_SOURCES`] sources per window (the rest are counted, not
//! named) and closes a window at most every [`REFUSAL_WINDOW`]: whatever
//! the flood, the control thread sees one summary per window.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// How long one window of refusals lasts: at most one summary (one event)
/// per window.
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(10);

/// Most sources a window names; refusals from sources beyond them are
/// counted in [`RefusalSummary::untallied`].
pub const MAX_TALLIED_SOURCES: usize = 256;

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// The source (an address, an IPv6 /64) had its connections open.
    PerSource,
    /// The layer had its connections open.
    Total,
}

/// One closed window of refusals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefusalSummary {
    /// Windows closed so far, this one included: a new number is a new
    /// summary (a reader that sees the same one twice reports it once).
    pub seq: u64,
    /// How long the window lasted, in milliseconds.
    pub millis: u64,
    /// Connections refused by the per-source cap.
    pub per_source: u64,
    /// Connections refused by the total cap.
    pub total: u64,
    /// Distinct sources named (at most [`MAX_TALLIED_SOURCES`]).
    pub sources: u64,
    /// Refusals from sources the window had no room left to name.
    pub untallied: u64,
    /// The source refused most often, and how often.
    pub top: Option<(IpAddr, u64)>,
}

/// The refusals of the current window and the last closed one.
#[derive(Debug, Default)]
pub struct RefusalTally {
    started: u64,
    per_source: u64,
    total: u64,
    sources: HashMap<IpAddr, u64>,
    untallied: u64,
    closed: u64,
    last: Option<RefusalSummary>,
}

impl RefusalTally {
    /// Counts one connection from `source` refused by `cap` at `now` (ns).
    pub fn note(&mut self, now: u64, source: IpAddr, cap: Cap) {
        self.roll(now);
        match cap {
            Cap::PerSource => self.per_source += 1,
            Cap::Total => self.total += 1,
        }
        let room = self.sources.len() < MAX_TALLIED_SOURCES;
        match self.sources.get_mut(&source) {
            Some(n) => *n += 1,
            None if room => {
                self.sources.insert(source, 1);
            }
            None => self.untallied += 1,
        }
    }

    /// Closes the window when it has lasted [`REFUSAL_WINDOW`] (a window
    /// with no refusal closes without a summary). Call it now and then;
    /// [`note`](Self::note) calls it too.
    pub fn roll(&mut self, now: u64) {
        let window = REFUSAL_WINDOW.as_nanos() as u64;
        let elapsed = now.saturating_sub(self.started);
        if elapsed < window {
            return;
        }
        if self.per_source + self.total > 0 {
            self.closed += 1;
            // Most refused first; equal counts: the lower address, so the
            // summary does not depend on the map's order.
            let top = self
                .sources
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                .map(|(ip, n)| (*ip, *n));
            self.last = Some(RefusalSummary {
                seq: self.closed,
                millis: elapsed / 1_000_000,
                per_source: self.per_source,
                total: self.total,
                sources: self.sources.len() as u64,
                untallied: self.untallied,
                top,
            });
        }
        self.started = now;
        self.per_source = 0;
        self.total = 0;
        self.untallied = 0;
        self.sources.clear();
    }

    /// The last window closed with refusals in it.
    pub fn last(&self) -> Option<RefusalSummary> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0xc612_0000 + n))
    }

    #[test]
    fn a_flood_of_refusals_closes_one_summary_per_window() {
        let mut t = RefusalTally::default();
        // A minute of refusals: a million, from 100,000 sources, one of
        // them ten times as often as the others.
        let mut seen = Vec::new();
        let mut heavy = 0;
        for i in 0..1_000_000u64 {
            let now = i * 60 * S / 1_000_000;
            let source = if i % 10 == 0 {
                ip(7)
            } else {
                ip(i as u32 % 100_000)
            };
            heavy += (source == ip(7)) as u64;
            let cap = if i % 100 == 0 {
                Cap::Total
            } else {
                Cap::PerSource
            };
            t.note(now, source, cap);
            if let Some(s) = t.last() {
                if seen.last() != Some(&s) {
                    seen.push(s);
                }
            }
        }
        t.roll(61 * S);
        if let Some(s) = t.last() {
            if seen.last() != Some(&s) {
                seen.push(s);
            }
        }
        // Six windows of ten seconds, the last closed by the final roll.
        assert_eq!(seen.len(), 6, "{seen:?}");
        assert_eq!(
            seen.iter().map(|s| s.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5, 6]
        );
        let refused: u64 = seen.iter().map(|s| s.per_source + s.total).sum();
        assert_eq!(refused, 1_000_000);
        let top: u64 = seen.iter().map(|s| s.top.unwrap().1).sum();
        for s in &seen {
            assert_eq!(s.top.unwrap().0, ip(7), "{s:?}");
            assert_eq!(s.sources, MAX_TALLIED_SOURCES as u64, "{s:?}");
            assert!(s.untallied > 0, "{s:?}");
        }
        // The heavy source is counted in full (it is named from the start).
        assert_eq!(top, heavy);
    }

    #[test]
    fn a_quiet_window_closes_without_a_summary() {
        let mut t = RefusalTally::default();
        t.roll(100 * S);
        assert_eq!(t.last(), None);
        t.note(101 * S, ip(1), Cap::PerSource);
        t.note(102 * S, ip(2), Cap::PerSource);
        t.note(103 * S, ip(2), Cap::Total);
        t.roll(105 * S);
        assert_eq!(t.last(), None, "the window has not lasted ten seconds");
        t.roll(110 * S);
        let s = t.last().unwrap();
        assert_eq!(
            (s.seq, s.per_source, s.total, s.sources, s.untallied, s.top),
            (1, 2, 1, 2, 0, Some((ip(2), 2)))
        );
        // Nothing since: the next roll keeps the last summary as it was.
        t.roll(130 * S);
        assert_eq!(t.last().unwrap().seq, 1);
    }
}
