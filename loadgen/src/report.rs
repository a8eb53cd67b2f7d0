//! What a run measured, and how it is shown: HDR latency histograms, counts
//! per response code, outcome buckets that must add up to the calls started,
//! retransmissions and unexpected messages, the generator's own CPU use, a
//! human-readable table and a JSON document.

use std::collections::BTreeMap;
use std::fmt;

use hdrhistogram::Histogram;
use serde::Serialize;

/// A latency histogram in microseconds, 1 µs to 1 hour, 3 significant digits.
#[derive(Debug, Clone)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Latency(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds"))
    }
}

impl Latency {
    /// Records one sample given in nanoseconds.
    #[inline]
    pub fn record_ns(&mut self, ns: u64) {
        self.0.saturating_record((ns / 1000).max(1));
    }

    /// Adds another histogram's samples.
    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The value at quantile `q` (0..=1) in microseconds.
    pub fn quantile_us(&self, q: f64) -> u64 {
        self.0.value_at_quantile(q)
    }

    /// Percentiles for reports.
    pub fn summary(&self) -> LatencySummary {
        let h = &self.0;
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest sample.
    pub max_us: u64,
}

/// Counts per SIP status code (100-699), in a fixed array so the hot path
/// never allocates.
#[derive(Debug, Clone)]
pub struct CodeCounts(Box<[u64; 600]>);

impl Default for CodeCounts {
    fn default() -> Self {
        CodeCounts(Box::new([0; 600]))
    }
}

impl CodeCounts {
    /// Counts one `code` (the SIP reader only yields 100-699; anything else
    /// would be clamped into that range, never dropped).
    #[inline]
    pub fn add(&mut self, code: u16) {
        let i = usize::from(code.clamp(100, 699) - 100);
        self.0[i] += 1;
    }

    /// The count for `code`.
    pub fn get(&self, code: u16) -> u64 {
        self.0[usize::from(code.clamp(100, 699) - 100)]
    }

    /// Adds another set of counts.
    pub fn merge(&mut self, o: &CodeCounts) {
        for (a, b) in self.0.iter_mut().zip(o.0.iter()) {
            *a += b;
        }
    }

    /// Sum over all codes.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The non-zero counts, by code.
    pub fn to_map(&self) -> BTreeMap<u16, u64> {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &n)| (i as u16 + 100, n))
            .collect()
    }
}

/// Where each started call (or transaction, for OPTIONS and REGISTER runs)
/// ended. Every started call is in exactly one bucket.
#[derive(Debug, Clone, Default)]
pub struct Outcomes {
    /// The scenario ran to its end as intended.
    pub completed: u64,
    /// A final answer other than the one the scenario expects, by code.
    pub failed: CodeCounts,
    /// The call was answered but its BYE got a non-2xx answer, by code.
    pub bye_failed: CodeCounts,
    /// No answer at all before the transaction timeout.
    pub timed_out_no_answer: u64,
    /// Provisional answers only, no final answer before the timeout.
    pub timed_out_no_final: u64,
    /// The BYE (or CANCEL, or the REGISTER answering a challenge) got no
    /// answer before the timeout.
    pub timed_out_later: u64,
    /// The first request could not be written (too long for a datagram).
    pub not_sent: u64,
    /// Still running when the run was cut short (stop requested and the
    /// drain limit passed).
    pub unfinished: u64,
    /// TCP or TLS: the call's connection could not be made (refused,
    /// unreachable), or was down and not yet due to be dialled again.
    pub connection_refused: u64,
    /// TCP or TLS: the call's connection closed (by the peer or an error,
    /// or it lost its framing) before the call ended.
    pub connection_closed: u64,
    /// TLS: the call's connection failed its handshake (or a later TLS
    /// record).
    pub tls_failed: u64,
}

impl Outcomes {
    /// Adds another thread's outcomes.
    pub fn merge(&mut self, o: &Outcomes) {
        self.completed += o.completed;
        self.failed.merge(&o.failed);
        self.bye_failed.merge(&o.bye_failed);
        self.timed_out_no_answer += o.timed_out_no_answer;
        self.timed_out_no_final += o.timed_out_no_final;
        self.timed_out_later += o.timed_out_later;
        self.not_sent += o.not_sent;
        self.unfinished += o.unfinished;
        self.connection_refused += o.connection_refused;
        self.connection_closed += o.connection_closed;
        self.tls_failed += o.tls_failed;
    }

    /// Calls that did not complete.
    pub fn not_completed(&self) -> u64 {
        self.total() - self.completed
    }

    /// Sum of all buckets.
    pub fn total(&self) -> u64 {
        self.completed
            + self.failed.total()
            + self.bye_failed.total()
            + self.timed_out_no_answer
            + self.timed_out_no_final
            + self.timed_out_later
            + self.not_sent
            + self.unfinished
            + self.connection_refused
            + self.connection_closed
            + self.tls_failed
    }
}

/// The outcome buckets as they appear in the JSON report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OutcomeReport {
    /// Ran to the end as intended.
    pub completed: u64,
    /// Unexpected final answers, by code.
    pub failed: BTreeMap<u16, u64>,
    /// BYE answered with non-2xx, by code.
    pub bye_failed: BTreeMap<u16, u64>,
    /// No answer at all.
    pub timed_out_no_answer: u64,
    /// Provisional answers only.
    pub timed_out_no_final: u64,
    /// A later request of the call (BYE, CANCEL, authenticated REGISTER)
    /// got no answer.
    pub timed_out_later: u64,
    /// Could not be written.
    pub not_sent: u64,
    /// Cut short.
    pub unfinished: u64,
    /// Connection could not be made (TCP, TLS).
    pub connection_refused: u64,
    /// Connection closed under the call (TCP, TLS).
    pub connection_closed: u64,
    /// TLS handshake or record failure.
    pub tls_failed: u64,
    /// Sum of the buckets above.
    pub total: u64,
}

impl From<&Outcomes> for OutcomeReport {
    fn from(o: &Outcomes) -> Self {
        OutcomeReport {
            completed: o.completed,
            failed: o.failed.to_map(),
            bye_failed: o.bye_failed.to_map(),
            timed_out_no_answer: o.timed_out_no_answer,
            timed_out_no_final: o.timed_out_no_final,
            timed_out_later: o.timed_out_later,
            not_sent: o.not_sent,
            unfinished: o.unfinished,
            connection_refused: o.connection_refused,
            connection_closed: o.connection_closed,
            tls_failed: o.tls_failed,
            total: o.total(),
        }
    }
}

/// Retransmissions, counted apart from calls: a retransmission is neither a
/// new call nor a loss.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Retransmissions {
    /// INVITE retransmissions sent (Timer A).
    pub invite: u64,
    /// Non-INVITE request retransmissions sent (Timer E): BYE, CANCEL,
    /// OPTIONS, REGISTER.
    pub non_invite: u64,
    /// ACKs sent again for a 2xx answer that came again.
    pub ack_again: u64,
    /// Answers received again (the server retransmitted them).
    pub answers_received_again: u64,
}

impl Retransmissions {
    /// Adds another thread's counts.
    pub fn merge(&mut self, o: &Retransmissions) {
        self.invite += o.invite;
        self.non_invite += o.non_invite;
        self.ack_again += o.ack_again;
        self.answers_received_again += o.answers_received_again;
    }
}

/// Messages that did not fit any call, each counted under one reason.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Unexpected {
    /// Not readable as SIP.
    pub unparseable: u64,
    /// Longer than a receive slot (cut by the kernel).
    pub truncated: u64,
    /// A Call-ID this run did not make.
    pub foreign: u64,
    /// For a call that had already ended (a late or duplicated answer).
    pub after_end: u64,
    /// A request sent to the caller (callers expect only answers).
    pub requests: u64,
    /// An answer that does not fit the call's state (wrong CSeq method or
    /// number).
    pub out_of_state: u64,
}

impl Unexpected {
    /// Adds another thread's counts.
    pub fn merge(&mut self, o: &Unexpected) {
        self.unparseable += o.unparseable;
        self.truncated += o.truncated;
        self.foreign += o.foreign;
        self.after_end += o.after_end;
        self.requests += o.requests;
        self.out_of_state += o.out_of_state;
    }

    /// Sum of all reasons.
    pub fn total(&self) -> u64 {
        self.unparseable
            + self.truncated
            + self.foreign
            + self.after_end
            + self.requests
            + self.out_of_state
    }
}

/// Datagram counts of one side.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Traffic {
    /// Datagrams the kernel took for sending.
    pub sent: u64,
    /// Datagrams received.
    pub received: u64,
    /// Datagrams given up because the socket stayed full (EAGAIN).
    pub send_blocked: u64,
    /// Datagrams refused by the kernel with another error.
    pub send_errors: u64,
    /// errno of the last refused send (0 if none).
    pub last_send_errno: i32,
    /// Datagrams the kernel dropped at our sockets (full receive buffers),
    /// from SO_MEMINFO.
    pub kernel_drops: u64,
}

impl Traffic {
    /// Adds another thread's counts.
    pub fn merge(&mut self, o: &Traffic) {
        self.sent += o.sent;
        self.received += o.received;
        self.send_blocked += o.send_blocked;
        self.send_errors += o.send_errors;
        if o.last_send_errno != 0 {
            self.last_send_errno = o.last_send_errno;
        }
        self.kernel_drops += o.kernel_drops;
    }

    /// Adds a flush result.
    pub fn add_flush(&mut self, f: sys::FlushResult) {
        self.sent += f.sent;
        self.send_blocked += f.blocked;
        self.send_errors += f.errors;
        if f.last_errno != 0 {
            self.last_send_errno = f.last_errno;
        }
    }
}

/// Connection counts of a TCP or TLS caller run (all zero over UDP).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Connections {
    /// Connections dialled (the first time and again after a loss).
    pub dialled: u64,
    /// Connections that completed the TCP handshake.
    pub opened: u64,
    /// Dials that failed (refused, unreachable).
    pub refused: u64,
    /// Open connections that closed (peer close, reset, write error).
    pub closed: u64,
    /// TLS connections that failed their handshake or a later record.
    pub tls_failed: u64,
    /// Connections closed because what they carried lost its framing
    /// (RFC 3261 section 18.3), also counted in `closed`.
    pub framing_errors: u64,
    /// Messages not sent because the connection's send queue was full.
    pub queue_full: u64,
}

impl Connections {
    /// Adds another thread's counts.
    pub fn merge(&mut self, o: &Connections) {
        self.dialled += o.dialled;
        self.opened += o.opened;
        self.refused += o.refused;
        self.closed += o.closed;
        self.tls_failed += o.tls_failed;
        self.framing_errors += o.framing_errors;
        self.queue_full += o.queue_full;
    }
}

/// CPU the generator itself used, per worker thread.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ThreadCpu {
    /// Thread name.
    pub thread: String,
    /// Core it was pinned to, if any.
    pub core: Option<usize>,
    /// CPU seconds used (user + system).
    pub cpu_s: f64,
    /// CPU seconds over wall-clock seconds while the thread ran.
    pub busy: f64,
    /// Highest one-second busy fraction seen.
    pub peak_busy: f64,
}

/// A thread busier than this fraction of a core is near saturation: its
/// measurements may be the generator's limits, not the target's.
pub const SATURATION: f64 = 0.85;

/// Latency histograms of a caller run.
#[derive(Debug, Clone, Default)]
pub struct CallerLatencies {
    /// INVITE (first transmission) to 200 OK.
    pub setup: Latency,
    /// INVITE to its first answer of any kind.
    pub first_answer: Latency,
    /// BYE to its final answer.
    pub bye: Latency,
    /// CANCEL to the 487 of the INVITE.
    pub cancel: Latency,
    /// OPTIONS to its final answer.
    pub options: Latency,
    /// First REGISTER to the final answer after the challenge.
    pub register: Latency,
    /// How late calls started against the schedule (the generator's own
    /// lateness; large values mean it could not keep up).
    pub start_lag: Latency,
}

impl CallerLatencies {
    /// Adds another thread's samples.
    pub fn merge(&mut self, o: &CallerLatencies) {
        self.setup.merge(&o.setup);
        self.first_answer.merge(&o.first_answer);
        self.bye.merge(&o.bye);
        self.cancel.merge(&o.cancel);
        self.options.merge(&o.options);
        self.register.merge(&o.register);
        self.start_lag.merge(&o.start_lag);
    }

    fn summaries(&self) -> BTreeMap<&'static str, LatencySummary> {
        [
            ("setup", &self.setup),
            ("first_answer", &self.first_answer),
            ("bye", &self.bye),
            ("cancel", &self.cancel),
            ("options", &self.options),
            ("register", &self.register),
            ("start_lag", &self.start_lag),
        ]
        .into_iter()
        .filter(|(_, h)| h.count() > 0)
        .map(|(n, h)| (n, h.summary()))
        .collect()
    }
}

/// Does the accounting hold: every started call in exactly one bucket.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Accounting {
    /// Calls started.
    pub started: u64,
    /// Sum of the outcome buckets.
    pub in_buckets: u64,
    /// `started == in_buckets`.
    pub balanced: bool,
}

/// Everything a caller run measured.
#[derive(Debug, Clone, Serialize)]
pub struct UacReport {
    /// Scenario name.
    pub scenario: String,
    /// Target address.
    pub target: String,
    /// Calls per second asked for.
    pub offered_cps: f64,
    /// Calls started per second over the span they really started in.
    pub achieved_cps: f64,
    /// Seconds from the run's start to the last actual start, plus one
    /// interval of the offered rate.
    pub start_window_s: f64,
    /// Seconds from the start to the last call's end.
    pub elapsed_s: f64,
    /// Calls the schedule planned (count or duration bound).
    pub planned: u64,
    /// Calls started.
    pub started: u64,
    /// Where they ended.
    pub outcomes: OutcomeReport,
    /// The accounting check.
    pub accounting: Accounting,
    /// Failed calls over started calls (everything but `completed`).
    pub failed_ratio: f64,
    /// Every answer received, by code (retransmitted ones included).
    pub answers: BTreeMap<u16, u64>,
    /// Latency percentiles per measurement.
    pub latency_us: BTreeMap<&'static str, LatencySummary>,
    /// Retransmissions.
    pub retransmissions: Retransmissions,
    /// Messages that fit no call.
    pub unexpected: Unexpected,
    /// Datagram counts (messages, over TCP and TLS).
    pub traffic: Traffic,
    /// Transport of the calls: `udp`, `tcp` or `tls`.
    pub transport: String,
    /// Connection counts (TCP and TLS).
    pub connections: Connections,
    /// Sockets (UDP) or connections (TCP, TLS) the calls came from.
    pub sources: usize,
    /// The generator's own CPU use.
    pub threads: Vec<ThreadCpu>,
    /// Things the reader must know (generator saturated, losses...).
    pub warnings: Vec<String>,
    /// The histograms themselves (for plots); not in the JSON.
    #[serde(skip)]
    pub latencies: CallerLatencies,
}

/// The raw counters of a caller run, merged from its threads.
#[derive(Debug, Clone, Default)]
pub struct CallerCounters {
    /// Calls started.
    pub started: u64,
    /// Where they ended.
    pub outcomes: Outcomes,
    /// Every answer received, by code.
    pub answers: CodeCounts,
    /// Latencies.
    pub latencies: CallerLatencies,
    /// Retransmissions.
    pub retransmissions: Retransmissions,
    /// Unexpected messages.
    pub unexpected: Unexpected,
    /// Datagrams.
    pub traffic: Traffic,
    /// Connections (TCP, TLS).
    pub connections: Connections,
}

impl CallerCounters {
    /// Adds another thread's counters.
    pub fn merge(&mut self, o: &CallerCounters) {
        self.started += o.started;
        self.outcomes.merge(&o.outcomes);
        self.answers.merge(&o.answers);
        self.latencies.merge(&o.latencies);
        self.retransmissions.merge(&o.retransmissions);
        self.unexpected.merge(&o.unexpected);
        self.traffic.merge(&o.traffic);
        self.connections.merge(&o.connections);
    }
}

/// Inputs of [`UacReport::build`] besides the counters.
#[derive(Debug, Clone)]
pub struct RunFacts {
    /// Scenario name.
    pub scenario: String,
    /// Target.
    pub target: String,
    /// Transport name.
    pub transport: String,
    /// Offered rate.
    pub offered_cps: f64,
    /// Planned calls.
    pub planned: u64,
    /// Seconds over which calls were started.
    pub start_window_s: f64,
    /// Seconds the run took.
    pub elapsed_s: f64,
    /// Sockets used.
    pub sources: usize,
    /// Per-thread CPU.
    pub threads: Vec<ThreadCpu>,
    /// Warnings raised during the run.
    pub warnings: Vec<String>,
}

impl UacReport {
    /// Builds the report and its warnings from merged counters.
    pub fn build(c: CallerCounters, f: RunFacts) -> UacReport {
        let in_buckets = c.outcomes.total();
        let accounting = Accounting {
            started: c.started,
            in_buckets,
            balanced: in_buckets == c.started,
        };
        let mut warnings = f.warnings;
        if !accounting.balanced {
            warnings.push(format!(
                "BUG: {} calls started but {} are in outcome buckets",
                c.started, in_buckets
            ));
        }
        for t in &f.threads {
            if t.peak_busy > SATURATION {
                warnings.push(format!(
                    "generator thread {} reached {:.0}% of a core: figures may show the generator's limit, not the target's",
                    t.thread,
                    t.peak_busy * 100.0
                ));
            }
        }
        if c.traffic.kernel_drops > 0 {
            warnings.push(format!(
                "the kernel dropped {} datagrams at the generator's own sockets (receive buffers full)",
                c.traffic.kernel_drops
            ));
        }
        let lost_conn =
            c.outcomes.connection_refused + c.outcomes.connection_closed + c.outcomes.tls_failed;
        if lost_conn > 0 {
            warnings.push(format!(
                "{lost_conn} calls lost with their connection ({} could not connect, {} closed, {} TLS failed)",
                c.outcomes.connection_refused, c.outcomes.connection_closed, c.outcomes.tls_failed
            ));
        }
        if c.traffic.send_blocked + c.traffic.send_errors > 0 {
            warnings.push(format!(
                "{} datagrams could not be sent ({} socket full, {} errors, last errno {})",
                c.traffic.send_blocked + c.traffic.send_errors,
                c.traffic.send_blocked,
                c.traffic.send_errors,
                c.traffic.last_send_errno
            ));
        }
        let lag = c.latencies.start_lag.summary();
        if lag.count > 0 && lag.p99_us > 10_000 {
            warnings.push(format!(
                "calls started up to {} ms late (p99 {} ms): the generator fell behind its schedule",
                lag.max_us / 1000,
                lag.p99_us / 1000
            ));
        }
        if f.planned > c.started && c.outcomes.unfinished == 0 {
            warnings.push(format!(
                "{} of {} planned calls were not started (run stopped early)",
                f.planned - c.started,
                f.planned
            ));
        }
        let achieved = if f.start_window_s > 0.0 {
            c.started as f64 / f.start_window_s
        } else {
            0.0
        };
        UacReport {
            scenario: f.scenario,
            target: f.target,
            offered_cps: f.offered_cps,
            achieved_cps: achieved,
            start_window_s: f.start_window_s,
            elapsed_s: f.elapsed_s,
            planned: f.planned,
            started: c.started,
            outcomes: OutcomeReport::from(&c.outcomes),
            accounting,
            failed_ratio: if c.started > 0 {
                c.outcomes.not_completed() as f64 / c.started as f64
            } else {
                0.0
            },
            answers: c.answers.to_map(),
            latency_us: c.latencies.summaries(),
            retransmissions: c.retransmissions,
            unexpected: c.unexpected,
            traffic: c.traffic,
            transport: f.transport,
            connections: c.connections,
            sources: f.sources,
            threads: f.threads,
            warnings,
            latencies: c.latencies,
        }
    }

    /// The JSON document.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

fn fmt_codes(m: &BTreeMap<u16, u64>) -> String {
    if m.is_empty() {
        return "0".into();
    }
    let parts: Vec<String> = m.iter().map(|(c, n)| format!("{c}:{n}")).collect();
    format!("{} ({})", m.values().sum::<u64>(), parts.join(" "))
}

/// Writes a latency table.
pub fn fmt_latency(
    f: &mut fmt::Formatter<'_>,
    rows: &BTreeMap<&'static str, LatencySummary>,
) -> fmt::Result {
    writeln!(
        f,
        "  {:<14} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max"
    )?;
    let ms = |us: u64| us as f64 / 1000.0;
    for (name, s) in rows {
        writeln!(
            f,
            "  {:<14} {:>9} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            name,
            s.count,
            ms(s.p50_us),
            ms(s.p90_us),
            ms(s.p99_us),
            ms(s.p999_us),
            ms(s.max_us)
        )?;
    }
    Ok(())
}

impl fmt::Display for UacReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.outcomes;
        writeln!(
            f,
            "dce-loadgen uac: {} against {} over {}",
            self.scenario, self.target, self.transport
        )?;
        writeln!(
            f,
            "  offered {:.1} cps, achieved {:.1} cps over {:.2} s ({} planned, {} started, {} sources), run took {:.2} s",
            self.offered_cps, self.achieved_cps, self.start_window_s, self.planned, self.started, self.sources, self.elapsed_s
        )?;
        writeln!(f, "  outcomes")?;
        writeln!(f, "    completed               {}", o.completed)?;
        writeln!(f, "    failed (final answer)   {}", fmt_codes(&o.failed))?;
        writeln!(
            f,
            "    BYE failed              {}",
            fmt_codes(&o.bye_failed)
        )?;
        writeln!(f, "    timed out, no answer    {}", o.timed_out_no_answer)?;
        writeln!(f, "    timed out, no final     {}", o.timed_out_no_final)?;
        writeln!(f, "    timed out, later step   {}", o.timed_out_later)?;
        writeln!(f, "    not sent                {}", o.not_sent)?;
        writeln!(f, "    unfinished (cut short)  {}", o.unfinished)?;
        if self.transport != "udp" {
            writeln!(f, "    connection refused      {}", o.connection_refused)?;
            writeln!(f, "    connection closed       {}", o.connection_closed)?;
            writeln!(f, "    TLS failed              {}", o.tls_failed)?;
        }
        writeln!(
            f,
            "    sum of buckets          {} {} {} started{}",
            o.total,
            if self.accounting.balanced { "=" } else { "!=" },
            self.started,
            if self.accounting.balanced {
                ""
            } else {
                "  <-- BUG"
            }
        )?;
        writeln!(f, "  failed ratio {:.4}%", self.failed_ratio * 100.0)?;
        writeln!(f, "  answers received   {}", fmt_codes(&self.answers))?;
        fmt_latency(f, &self.latency_us)?;
        let r = &self.retransmissions;
        writeln!(
            f,
            "  retransmissions: INVITE {}, non-INVITE {}, ACK again {}, answers received again {}",
            r.invite, r.non_invite, r.ack_again, r.answers_received_again
        )?;
        let u = &self.unexpected;
        writeln!(
            f,
            "  unexpected: unparseable {}, truncated {}, foreign Call-ID {}, after call end {}, requests {}, out of state {}",
            u.unparseable, u.truncated, u.foreign, u.after_end, u.requests, u.out_of_state
        )?;
        let t = &self.traffic;
        writeln!(
            f,
            "  datagrams: sent {}, received {}, send blocked {}, send errors {}, kernel drops at our sockets {}",
            t.sent, t.received, t.send_blocked, t.send_errors, t.kernel_drops
        )?;
        if self.transport != "udp" {
            let c = &self.connections;
            writeln!(
                f,
                "  connections: dialled {}, opened {}, refused {}, closed {}, TLS failed {}, framing errors {}, send queue full {}",
                c.dialled, c.opened, c.refused, c.closed, c.tls_failed, c.framing_errors, c.queue_full
            )?;
        }
        fmt_threads(f, &self.threads)?;
        for w in &self.warnings {
            writeln!(f, "  WARNING: {w}")?;
        }
        Ok(())
    }
}

/// Writes the per-thread CPU table.
pub fn fmt_threads(f: &mut fmt::Formatter<'_>, threads: &[ThreadCpu]) -> fmt::Result {
    for t in threads {
        writeln!(
            f,
            "  thread {:<10} core {:<4} cpu {:>7.3} s  busy {:>5.1}%  peak {:>5.1}%",
            t.thread,
            t.core.map_or("-".to_string(), |c| c.to_string()),
            t.cpu_s,
            t.busy * 100.0,
            t.peak_busy * 100.0
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(planned: u64) -> RunFacts {
        RunFacts {
            scenario: "call".into(),
            target: "127.0.0.1:5060".into(),
            transport: "udp".into(),
            offered_cps: 10.0,
            planned,
            start_window_s: 1.0,
            elapsed_s: 1.0,
            sources: 1,
            threads: vec![],
            warnings: vec![],
        }
    }

    #[test]
    fn buckets_that_sum_to_started_balance() {
        let mut c = CallerCounters {
            started: 10,
            ..Default::default()
        };
        c.outcomes.completed = 6;
        c.outcomes.failed.add(486);
        c.outcomes.failed.add(503);
        c.outcomes.timed_out_no_answer = 1;
        c.outcomes.bye_failed.add(481);
        let r = UacReport::build(c, facts(10));
        assert!(r.accounting.balanced);
        assert_eq!(r.outcomes.total, 10);
        assert!((r.failed_ratio - 0.4).abs() < 1e-9);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn a_call_missing_from_the_buckets_is_reported_as_a_bug() {
        let mut c = CallerCounters {
            started: 3,
            ..Default::default()
        };
        c.outcomes.completed = 2;
        let r = UacReport::build(c, facts(3));
        assert!(!r.accounting.balanced);
        assert!(r.warnings.iter().any(|w| w.starts_with("BUG")));
        assert!(r.to_string().contains("<-- BUG"));
    }

    #[test]
    fn merged_threads_keep_every_bucket() {
        let mut a = CallerCounters {
            started: 2,
            ..Default::default()
        };
        a.outcomes.completed = 1;
        a.outcomes.timed_out_no_final = 1;
        let mut b = CallerCounters {
            started: 2,
            ..Default::default()
        };
        b.outcomes.failed.add(486);
        b.outcomes.unfinished = 1;
        a.merge(&b);
        assert_eq!((a.started, a.outcomes.total()), (4, 4));
        assert_eq!(a.outcomes.failed.get(486), 1);
    }

    #[test]
    fn saturated_generator_threads_raise_a_warning() {
        let mut f = facts(0);
        f.threads.push(ThreadCpu {
            thread: "uac-0".into(),
            core: Some(0),
            cpu_s: 1.0,
            busy: 0.95,
            peak_busy: 0.97,
        });
        let r = UacReport::build(CallerCounters::default(), f);
        assert!(r.warnings.iter().any(|w| w.contains("97% of a core")));
    }

    #[test]
    fn latency_percentiles_come_from_the_histogram() {
        let mut l = Latency::default();
        for ms in 1..=100u64 {
            l.record_ns(ms * 1_000_000);
        }
        let s = l.summary();
        assert_eq!(s.count, 100);
        assert!((49_900..=50_100).contains(&s.p50_us), "{s:?}");
        assert!((99_900..=100_100).contains(&s.max_us), "{s:?}");
    }

    #[test]
    fn json_report_carries_the_accounting() {
        let mut c = CallerCounters {
            started: 1,
            ..Default::default()
        };
        c.outcomes.completed = 1;
        let j: serde_json::Value =
            serde_json::from_str(&UacReport::build(c, facts(1)).to_json()).unwrap();
        assert_eq!(j["accounting"]["balanced"], true);
        assert_eq!(j["outcomes"]["total"], 1);
    }
}
