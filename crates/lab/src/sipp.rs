//! SIPp (Debian `sip-tester`) as the lab's callers and upstream servers:
//! a UAS that answers every INVITE with 200 and the edge's OPTIONS probes,
//! and a UAC run of a bounded number of calls at a bounded rate, with the
//! outcome read from SIPp's own final statistics.
//!
//! Both run as separate processes inside a lab host's namespace and are
//! ended by their pid when their guard drops.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::netns::{ChildGuard, Netns};
use super::ping::options_ping;
use super::topology::Host;

/// A UAS scenario that answers INVITE with 200 alone (no 180: SIPp aborts
/// calls when a retransmitted INVITE arrives after a 180/200 pair), takes
/// the ACK and answers BYE.
pub const UAS_200_SCENARIO: &str = include_str!("uas_200.xml");

/// SIPp's socket buffers: with its 64 KB default it drops packets itself
/// near 3.6K CPS (PLATFORM.md).
const BUFF_SIZE: &str = "4194304";

fn seq() -> u32 {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// A SIPp UAS on port 5060 of a lab host.
#[derive(Debug)]
pub struct Uas {
    child: ChildGuard,
    addr: SocketAddr,
    stats: PathBuf,
}

impl Uas {
    /// Starts `sipp` with [`UAS_200_SCENARIO`] on `host`'s address, port
    /// 5060, answering out-of-dialog OPTIONS itself (`-aa`, so the edge's
    /// health probes see it up), writing its counters to a CSV in `dir`
    /// every second. Returns once it answers an OPTIONS (up to 20 s).
    pub fn start(host: &Host, dir: &Path) -> io::Result<Uas> {
        Uas::start_with(host, dir, true)
    }

    /// [`Uas::start`] without `-aa`: the server takes calls but leaves
    /// OPTIONS unanswered, as many SIP servers and SIPp by default do.
    /// Returns once it writes its first statistics (up to 20 s).
    pub fn start_deaf_to_options(host: &Host, dir: &Path) -> io::Result<Uas> {
        Uas::start_with(host, dir, false)
    }

    fn start_with(host: &Host, dir: &Path, answer_options: bool) -> io::Result<Uas> {
        let scenario = dir.join("uas_200.xml");
        if !scenario.exists() {
            std::fs::write(&scenario, UAS_200_SCENARIO)?;
        }
        let addr = SocketAddr::from((host.addr(), 5060));
        let stats = dir.join(format!("uas-{}-{}.csv", host.addr(), seq()));
        let ip = host.addr().to_string();
        let mut cmd = host.ns.command("sipp");
        cmd.args(["-sf", &scenario.to_string_lossy(), "-i", &ip, "-p", "5060"])
            .args(if answer_options { &["-aa"][..] } else { &[] })
            .args(["-nostdin", "-buff_size", BUFF_SIZE])
            .args(["-trace_stat", "-fd", "1", "-stf"])
            .arg(&stats)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = ChildGuard::new(
            cmd.spawn()
                .map_err(|e| io::Error::new(e.kind(), format!("cannot start sipp: {e}")))?,
        );
        let mut uas = Uas { child, addr, stats };
        if !answer_options {
            // Nothing to ping: its first statistics line says it runs.
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while uas.incoming_calls().is_none() {
                if let Some(status) = uas.child.wait_timeout(Duration::ZERO)? {
                    return Err(io::Error::other(format!(
                        "the SIPp UAS at {addr} exited at start: {status:?}"
                    )));
                }
                if std::time::Instant::now() > deadline {
                    return Err(io::Error::other(format!(
                        "the SIPp UAS at {addr} wrote no statistics within 20 s"
                    )));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            return Ok(uas);
        }
        let from = SocketAddr::from((host.addr(), 0));
        let answered = host
            .ns
            .enter(move || options_ping(from, addr, Duration::from_secs(20)))??;
        if answered != Some(200) {
            let exited = uas.child.wait_timeout(Duration::ZERO)?;
            return Err(io::Error::other(format!(
                "the SIPp UAS at {addr} did not answer OPTIONS within 20 s (exited: {exited:?})"
            )));
        }
        Ok(uas)
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Calls it has received so far, from the last line of its statistics
    /// file (written every second); `None` before the first line.
    pub fn incoming_calls(&self) -> Option<u64> {
        stat_column(&self.stats, "IncomingCall(C)")
    }

    /// Ends it at once (SIGKILL by its pid) and reaps it: an upstream that
    /// dies without a word.
    pub fn kill(&mut self) -> io::Result<()> {
        let child = self.child.child_mut();
        child.kill()?;
        child.wait().map(|_| ())
    }
}

/// The last value of `column` in a SIPp `-trace_stat` CSV.
fn stat_column(path: &Path, column: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let index = lines.next()?.split(';').position(|c| c == column)?;
    lines
        .filter_map(|l| l.split(';').nth(index)?.trim().parse().ok())
        .next_back()
}

/// A run of SIPp's built-in `uac` scenario (INVITE, 200, ACK, BYE, 200)
/// from a caller address to the edge.
#[derive(Debug, Clone)]
pub struct Uac {
    /// The caller's address (must be on the namespace's interface).
    pub local: Ipv4Addr,
    /// The caller's SIP port.
    pub port: u16,
    /// Where the calls go (the edge).
    pub target: SocketAddr,
    /// The dialed number (Request-URI user part).
    pub number: String,
    /// Calls per second.
    pub rate: u32,
    /// Calls in all; SIPp stops after them.
    pub calls: u32,
    /// Calls in progress at most.
    pub limit: u32,
    /// SIPp's global timeout: it stops after this whatever happened.
    pub timeout: Duration,
    /// One socket (so one source port) per call (`-t un`), instead of one
    /// for the whole run: many flows, which a multi-queue NIC (or veth)
    /// spreads over its queues as RSS does.
    pub socket_per_call: bool,
    /// SIPp's transport (`-t`): `u1` (UDP, the default) or `t1` (one TCP
    /// connection for every call).
    pub transport: &'static str,
}

impl Uac {
    /// `calls` calls to `number` at `rate` per second from `local`:5070 to
    /// `target`, at most 200 at once, stopped by SIPp after 60 s.
    pub fn new(local: Ipv4Addr, target: SocketAddr, number: &str, rate: u32, calls: u32) -> Uac {
        Uac {
            local,
            port: 5070,
            target,
            number: number.to_string(),
            rate,
            calls,
            limit: 200,
            timeout: Duration::from_secs(60),
            socket_per_call: false,
            transport: "u1",
        }
    }

    /// Starts the run inside `ns` (SIPp's output goes to a file in `dir`).
    pub fn spawn(&self, ns: &Netns, dir: &Path) -> io::Result<RunningUac> {
        let n = seq();
        let out = dir.join(format!("uac-{}-{}-{n}.out", self.local, self.port));
        let stats = dir.join(format!("uac-{}-{}-{n}.csv", self.local, self.port));
        let mut cmd = ns.command("sipp");
        cmd.arg(self.target.to_string())
            .args(["-sn", "uac", "-s", &self.number])
            .args(["-i", &self.local.to_string(), "-p", &self.port.to_string()])
            .args(["-r", &self.rate.to_string(), "-m", &self.calls.to_string()])
            .args(["-l", &self.limit.to_string(), "-nostdin"])
            .args(["-buff_size", BUFF_SIZE, "-trace_err"])
            .args(["-trace_stat", "-fd", "1", "-stf"])
            .arg(&stats)
            .args(["-timeout", &format!("{}s", self.timeout.as_secs().max(1))]);
        if self.socket_per_call {
            // One socket per call (`un`, `tn`); sockets in use at once are
            // bounded by the calls in progress.
            let per_call = format!("{}n", &self.transport[..1]);
            let sockets = (self.limit + 1000).to_string();
            cmd.args(["-t", &per_call, "-max_socket", &sockets]);
        } else {
            cmd.args(["-t", self.transport]);
        }
        cmd.current_dir(dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out)?)
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start sipp: {e}")))?;
        Ok(RunningUac {
            child: ChildGuard::new(child),
            out,
            stats,
            calls: self.calls,
            timeout: self.timeout,
            started: std::time::Instant::now(),
        })
    }

    /// Runs it inside `ns` and waits for its outcome.
    pub fn run(&self, ns: &Netns, dir: &Path) -> io::Result<UacOutcome> {
        self.spawn(ns, dir)?.wait()
    }
}

/// A UAC run in progress.
#[derive(Debug)]
pub struct RunningUac {
    child: ChildGuard,
    out: PathBuf,
    stats: PathBuf,
    calls: u32,
    timeout: Duration,
    started: std::time::Instant,
}

impl RunningUac {
    /// SIPp's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for SIPp to finish (its own timeout plus 30 s at most; then it
    /// is ended and what it printed so far is read).
    pub fn wait(mut self) -> io::Result<UacOutcome> {
        let status = self
            .child
            .wait_timeout(self.timeout + Duration::from_secs(30))?;
        if status.is_none() {
            let _ = self.child.stop(Duration::from_secs(5));
        }
        let elapsed = self.started.elapsed();
        let screen = std::fs::read_to_string(&self.out).unwrap_or_default();
        let count = |name: &str| {
            screen
                .lines()
                .filter(|l| l.contains(name))
                .filter_map(|l| l.split('|').nth(2)?.trim().parse::<u64>().ok())
                .next_back()
        };
        let (sent, retransmissions) = message_counts(&screen);
        Ok(UacOutcome {
            calls: self.calls,
            successful: count("Successful call").unwrap_or(0),
            failed: count("Failed call").unwrap_or(0),
            sent,
            retransmissions,
            start_rate: start_rate(&self.stats, u64::from(self.calls)),
            elapsed,
            status,
            screen,
        })
    }
}

/// The scenario screen's message and retransmission counts, summed over
/// its lines, from the last screen SIPp printed.
fn message_counts(screen: &str) -> (u64, u64) {
    let last = screen
        .rfind("Scenario Screen")
        .map_or(screen, |i| &screen[i..]);
    let mut messages = 0;
    let mut retrans = 0;
    for line in last.lines() {
        let Some(arrow) = line
            .find("---------->")
            .or_else(|| line.find("<----------"))
        else {
            continue;
        };
        // Received lines may carry a timer name (`E-RTD1`) first.
        let mut numbers = line[arrow + 11..]
            .split_whitespace()
            .skip_while(|w| w.parse::<u64>().is_err())
            .map_while(|w| w.parse::<u64>().ok());
        messages += numbers.next().unwrap_or(0);
        retrans += numbers.next().unwrap_or(0);
    }
    (messages, retrans)
}

/// The Unix time at the end of a SIPp time stamp (`date\ttime\tepoch`).
fn sipp_epoch(text: &str) -> Option<f64> {
    text.rsplit('\t').next()?.trim().parse().ok()
}

/// Calls over the time SIPp took to start `calls` of them, from its
/// `-trace_stat` file (a line a second): the time where the cumulative
/// outgoing calls reach `calls`, interpolated between the lines around it.
pub fn start_rate(path: &Path, calls: u64) -> Option<f64> {
    start_rate_of(&std::fs::read_to_string(path).ok()?, calls)
}

fn start_rate_of(text: &str, calls: u64) -> Option<f64> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next()?.split(';').collect();
    let col = |name: &str| header.iter().position(|c| *c == name);
    let (start, current, outgoing) = (
        col("StartTime")?,
        col("CurrentTime")?,
        col("OutgoingCall(C)")?,
    );
    let mut last = (0.0f64, 0u64);
    for l in lines {
        let f: Vec<&str> = l.split(';').collect();
        let (Some(t0), Some(t), Some(n)) = (
            f.get(start).and_then(|t| sipp_epoch(t)),
            f.get(current).and_then(|t| sipp_epoch(t)),
            f.get(outgoing).and_then(|n| n.trim().parse::<u64>().ok()),
        ) else {
            continue;
        };
        let t = t - t0;
        if n >= calls && n > last.1 {
            let at = last.0 + (t - last.0) * (calls - last.1) as f64 / (n - last.1) as f64;
            return (at > 0.0).then(|| calls as f64 / at);
        }
        last = (t, n);
    }
    None
}

/// What a UAC run reported in its final statistics.
#[derive(Debug, Clone)]
pub struct UacOutcome {
    /// Calls asked for.
    pub calls: u32,
    /// Calls SIPp counted successful (cumulative).
    pub successful: u64,
    /// Calls SIPp counted failed (cumulative).
    pub failed: u64,
    /// Messages of the scenario it sent or received (first copies).
    pub sent: u64,
    /// Retransmissions it counted, sent and received (the scenario
    /// screen's `Retrans` column): a message lost on the way, or answered
    /// later than SIPp's timer, shows here before a call fails.
    pub retransmissions: u64,
    /// The rate at which SIPp actually started its calls: the calls over
    /// the time it took to start the last one (from its statistics file,
    /// written every second, interpolated between lines). Below the asked
    /// rate when SIPp fell behind, or stopped starting calls because its
    /// limit of calls in progress was reached (calls waiting for answers).
    pub start_rate: Option<f64>,
    /// Wall time from the start to the end of the run.
    pub elapsed: Duration,
    /// SIPp's exit status (`None`: it had to be stopped).
    pub status: Option<ExitStatus>,
    /// Everything SIPp printed.
    pub screen: String,
}

impl UacOutcome {
    /// Every call asked for completed, none failed, SIPp exited with 0.
    pub fn all_successful(&self) -> bool {
        self.successful == self.calls as u64
            && self.failed == 0
            && self.status.is_some_and(|s| s.success())
    }

    /// One line for a failure message, then SIPp's last statistics screen.
    pub fn report(&self) -> String {
        let tail: Vec<&str> = self.screen.lines().rev().take(40).collect();
        format!(
            "sipp uac: {} successful, {} failed of {} calls, {} retransmissions, exit {:?}\n{}",
            self.successful,
            self.failed,
            self.calls,
            self.retransmissions,
            self.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCREEN: &str = "\
------------------------------ Scenario Screen -------- [1-9]: Change Screen --
                                 Messages  Retrans   Timeout   Unexpected-Msg
      INVITE ---------->         120000    58645     0
         100 <----------         0         0         0         0
         200 <----------  E-RTD1 120000    7         0         0
         ACK ---------->         120000    0
       Pause [      0ms]         120000                        0
         BYE ---------->         120000    58097     2313
         200 <----------         117687    0         0         0
------------------------------ Test Terminated --------------------------------
";

    #[test]
    fn message_and_retransmission_counts_are_summed_over_the_last_screen() {
        let earlier = "------ Scenario Screen ---\n      INVITE ---------->  5  5  0\n";
        let (messages, retrans) = message_counts(&format!("{earlier}{SCREEN}"));
        assert_eq!(messages, 4 * 120_000 + 117_687);
        assert_eq!(retrans, 58_645 + 7 + 58_097);
    }

    #[test]
    fn start_rate_is_interpolated_where_the_last_call_started() {
        let t = |s: f64| format!("2026-12-07\t02:38:55.0\t{s}");
        let line = |now: f64, calls: u64| format!("{};{};{calls};\n", t(1000.0), t(now));
        let text = format!(
            "StartTime;CurrentTime;OutgoingCall(C);\n{}{}{}{}",
            line(1000.0, 0),
            line(1001.0, 1000),
            line(1002.0, 2000),
            line(1003.0, 2000),
        );
        // 1,500 calls were started 1.5 s in.
        let r = start_rate_of(&text, 1500).unwrap();
        assert!((r - 1000.0).abs() < 1e-6, "{r}");
        assert_eq!(start_rate_of(&text, 3000), None);
    }
}
