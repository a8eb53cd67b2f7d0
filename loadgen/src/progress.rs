//! The live progress line: workers push a snapshot once a second through an
//! SPSC ring; the control thread sums the latest snapshots and prints one
//! line to stderr per second.

use std::io::Write;
use std::time::Instant;

/// One worker's cumulative counters at a moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Calls (or requests, for servers) started or received.
    pub started: u64,
    /// Completed (servers: final answers sent).
    pub completed: u64,
    /// Ended without completing (servers: retransmissions absorbed).
    pub not_completed: u64,
    /// In flight now.
    pub active: u64,
    /// Retransmissions sent.
    pub retransmissions: u64,
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams received.
    pub received: u64,
    /// Busy fraction of the worker's core over the last second.
    pub busy: f64,
    /// How late the schedule is, in microseconds.
    pub lag_us: u64,
}

/// Sums worker snapshots and prints a line per second.
pub struct ProgressLine {
    role: &'static str,
    started_at: Instant,
    latest: Vec<Progress>,
    last_print: Instant,
    last_started: u64,
}

impl ProgressLine {
    /// A progress line for `role` (`uac`, `uas`).
    pub fn new(role: &'static str, started_at: Instant) -> Self {
        ProgressLine {
            role,
            started_at,
            latest: Vec::new(),
            last_print: Instant::now(),
            last_started: 0,
        }
    }

    /// Reads the rings and prints a line if a second has passed.
    pub fn poll(&mut self, rings: &mut [rtrb::Consumer<Progress>]) {
        self.latest.resize(rings.len(), Progress::default());
        for (i, r) in rings.iter_mut().enumerate() {
            while let Ok(p) = r.pop() {
                self.latest[i] = p;
            }
        }
        if self.last_print.elapsed().as_secs_f64() < 1.0 {
            return;
        }
        let dt = self.last_print.elapsed().as_secs_f64();
        self.last_print = Instant::now();
        let sum = |f: fn(&Progress) -> u64| self.latest.iter().map(f).sum::<u64>();
        let started = sum(|p| p.started);
        let rate = (started - self.last_started.min(started)) as f64 / dt;
        self.last_started = started;
        let busy = self.latest.iter().map(|p| p.busy).fold(0.0, f64::max);
        let lag = self.latest.iter().map(|p| p.lag_us).max().unwrap_or(0);
        eprint!(
            "\r[{} {:>6.1}s] started {} ({:.0}/s) done {} not-done {} active {} retrans {} tx {} rx {} busiest thread {:.0}%{}   ",
            self.role,
            self.started_at.elapsed().as_secs_f64(),
            started,
            rate,
            sum(|p| p.completed),
            sum(|p| p.not_completed),
            sum(|p| p.active),
            sum(|p| p.retransmissions),
            sum(|p| p.sent),
            sum(|p| p.received),
            busy * 100.0,
            if lag > 10_000 { format!(" LAG {} ms", lag / 1000) } else { String::new() }
        );
        let _ = std::io::stderr().flush();
    }

    /// Ends the line.
    pub fn finish(&mut self) {
        eprintln!();
    }
}
