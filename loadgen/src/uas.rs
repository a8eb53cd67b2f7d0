//! Upstream servers (UAS) that answer the callers: immediate or delayed
//! answers (100, 180, 200 with SDP), a configured share of failures (486,
//! 503), CANCEL, OPTIONS, REGISTER with a digest challenge, and the RFC 3261
//! timers on the server side: a retransmitted INVITE gets the last answer
//! again, and a final answer is retransmitted until its ACK (sections 13.3.1.4
//! and 17.2.1).
//!
//! Threads share one port through SO_REUSEPORT; the kernel sends every
//! source to the same thread, so each thread owns its calls outright.

use std::collections::HashMap;
use std::fmt;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::digest::Answer;
use crate::msg::{self, Response};
use crate::msgbuf::MsgBuf;
use crate::progress::{Progress, ProgressLine};
use crate::report::{CodeCounts, ThreadCpu, Traffic, SATURATION};
use crate::sipmsg::{self, SipView};
use crate::timers::{SipTimers, TimerLanes};
use sip::Method;
use sys::{self, Epoll, RxBatch, TxBatch, UdpOptions, TX_SLOT};

/// How the servers answer.
#[derive(Debug, Clone)]
pub struct UasConfig {
    /// Address to listen on (port 0: the kernel picks; see [`Uas::local_addr`]).
    pub listen: SocketAddr,
    /// Server threads sharing the port.
    pub threads: usize,
    /// Cores to pin thread `i` to (`cores[i % len]`); empty: no pinning.
    pub cores: Vec<usize>,
    /// Send 100 Trying on a new INVITE.
    pub trying: bool,
    /// Send 180 Ringing before the final answer.
    pub ring: bool,
    /// Wait this long before the final answer of an INVITE.
    pub answer_delay: Duration,
    /// Share of INVITEs answered 486 Busy Here (0..=1).
    pub busy_share: f64,
    /// Share of INVITEs answered 503 Service Unavailable (0..=1).
    pub unavailable_share: f64,
    /// Share of new INVITEs whose first transmission is ignored, to exercise
    /// the callers' retransmissions (0..=1; lab and tests).
    pub drop_first_invite_share: f64,
    /// RFC 3261 timers for answer retransmission.
    pub timers: SipTimers,
    /// How long an ended call is remembered, to absorb retransmitted BYEs
    /// and answers (RFC 3261 Timer J: 64·T1).
    pub linger: Duration,
    /// A confirmed call without a BYE is forgotten after this long.
    pub dialog_limit: Duration,
    /// Challenge REGISTER with this password (None: accept every REGISTER).
    pub password: Option<String>,
    /// Digest realm of the challenge.
    pub realm: String,
    /// Socket buffer size asked for.
    pub buffer_bytes: usize,
    /// Print a progress line to stderr once a second.
    pub progress: bool,
    /// After a busy turn, sleep this long before reading again, so requests
    /// are taken and answered in batches; answers then wait up to this long
    /// (0: answer on every arrival, at a higher CPU cost).
    pub coalesce: Duration,
    /// UDP GSO for runs of equal-size answers and GRO for runs of requests
    /// (see [`crate::uac::UacConfig::gso`]).
    pub gso: bool,
}

impl UasConfig {
    /// Defaults: answer 200 at once, no failures, one thread.
    pub fn new(listen: SocketAddr) -> Self {
        let timers = SipTimers::default();
        UasConfig {
            listen,
            threads: 1,
            cores: Vec::new(),
            trying: false,
            ring: false,
            answer_delay: Duration::ZERO,
            busy_share: 0.0,
            unavailable_share: 0.0,
            drop_first_invite_share: 0.0,
            timers,
            linger: Duration::from_nanos(timers.timeout_ns),
            dialog_limit: Duration::from_secs(600),
            password: None,
            realm: "dce-loadgen".into(),
            buffer_bytes: 4 << 20,
            progress: false,
            coalesce: Duration::from_micros(500),
            gso: true,
        }
    }
}

/// Requests received, by method.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct RequestCounts {
    /// INVITE (first transmissions and retransmissions).
    pub invite: u64,
    /// ACK.
    pub ack: u64,
    /// BYE.
    pub bye: u64,
    /// CANCEL.
    pub cancel: u64,
    /// OPTIONS.
    pub options: u64,
    /// REGISTER.
    pub register: u64,
    /// Anything else (answered 501).
    pub other: u64,
}

/// Everything a server run counted. Each received datagram is counted once
/// under its method (or as unparseable, truncated or a response).
#[derive(Debug, Clone, Default, Serialize)]
pub struct UasCounters {
    /// Requests by method.
    pub requests: RequestCounts,
    /// INVITEs that started a new call.
    pub new_calls: u64,
    /// Retransmitted INVITEs absorbed (answered with the last answer again).
    pub invite_again: u64,
    /// First INVITE transmissions ignored on purpose (`drop_first_invite_share`).
    pub invite_dropped_on_purpose: u64,
    /// Answers sent, by code (timer retransmissions not included).
    #[serde(serialize_with = "ser_codes")]
    pub answers: CodeCounts,
    /// Final answers retransmitted because no ACK came yet.
    pub answer_retransmissions: u64,
    /// Final answers never acknowledged within 64·T1.
    pub ack_timeouts: u64,
    /// ACKs for a call already confirmed (duplicates).
    pub ack_again: u64,
    /// ACKs matching no call.
    pub ack_unmatched: u64,
    /// BYEs for a call already ended (retransmissions, answered 200 again).
    pub bye_again: u64,
    /// BYEs matching no call (answered 481).
    pub bye_unmatched: u64,
    /// CANCELs matching no pending INVITE (answered 481).
    pub cancel_unmatched: u64,
    /// Confirmed calls forgotten after `dialog_limit` without a BYE.
    pub dialogs_expired: u64,
    /// REGISTERs answered with a challenge.
    pub register_challenged: u64,
    /// REGISTERs accepted.
    pub register_accepted: u64,
    /// REGISTERs with wrong credentials (answered 403).
    pub register_rejected: u64,
    /// Datagrams not readable as SIP.
    pub unparseable: u64,
    /// Datagrams longer than a receive slot.
    pub truncated: u64,
    /// Responses received (a server expects requests only).
    pub responses_received: u64,
    /// Datagram counts.
    pub traffic: Traffic,
}

fn ser_codes<S: serde::Serializer>(c: &CodeCounts, s: S) -> Result<S::Ok, S::Error> {
    c.to_map().serialize(s)
}

impl UasCounters {
    fn merge(&mut self, o: &UasCounters) {
        let r = &mut self.requests;
        r.invite += o.requests.invite;
        r.ack += o.requests.ack;
        r.bye += o.requests.bye;
        r.cancel += o.requests.cancel;
        r.options += o.requests.options;
        r.register += o.requests.register;
        r.other += o.requests.other;
        self.new_calls += o.new_calls;
        self.invite_again += o.invite_again;
        self.invite_dropped_on_purpose += o.invite_dropped_on_purpose;
        self.answers.merge(&o.answers);
        self.answer_retransmissions += o.answer_retransmissions;
        self.ack_timeouts += o.ack_timeouts;
        self.ack_again += o.ack_again;
        self.ack_unmatched += o.ack_unmatched;
        self.bye_again += o.bye_again;
        self.bye_unmatched += o.bye_unmatched;
        self.cancel_unmatched += o.cancel_unmatched;
        self.dialogs_expired += o.dialogs_expired;
        self.register_challenged += o.register_challenged;
        self.register_accepted += o.register_accepted;
        self.register_rejected += o.register_rejected;
        self.unparseable += o.unparseable;
        self.truncated += o.truncated;
        self.responses_received += o.responses_received;
        self.traffic.merge(&o.traffic);
    }
}

/// What a server run measured.
#[derive(Debug, Clone, Serialize)]
pub struct UasReport {
    /// Address served.
    pub listen: String,
    /// Seconds it ran.
    pub elapsed_s: f64,
    /// The counters, summed over threads.
    #[serde(flatten)]
    pub counters: UasCounters,
    /// CPU per thread.
    pub threads: Vec<ThreadCpu>,
    /// Things the reader must know.
    pub warnings: Vec<String>,
}

impl UasReport {
    /// The JSON document.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

impl fmt::Display for UasReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counters;
        let r = &c.requests;
        writeln!(
            f,
            "dce-loadgen uas on {} for {:.2} s",
            self.listen, self.elapsed_s
        )?;
        writeln!(
            f,
            "  requests: INVITE {} ACK {} BYE {} CANCEL {} OPTIONS {} REGISTER {} other {}",
            r.invite, r.ack, r.bye, r.cancel, r.options, r.register, r.other
        )?;
        writeln!(
            f,
            "  calls: new {}, INVITE again {}, first INVITE ignored on purpose {}",
            c.new_calls, c.invite_again, c.invite_dropped_on_purpose
        )?;
        let codes: Vec<String> = c
            .answers
            .to_map()
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect();
        writeln!(f, "  answers sent: {}", codes.join(" "))?;
        writeln!(
            f,
            "  answer retransmissions {}, ACK timeouts {}, ACK again {}, ACK unmatched {}, BYE again {}, BYE unmatched {}, CANCEL unmatched {}, dialogs expired {}",
            c.answer_retransmissions, c.ack_timeouts, c.ack_again, c.ack_unmatched, c.bye_again, c.bye_unmatched, c.cancel_unmatched, c.dialogs_expired
        )?;
        writeln!(
            f,
            "  REGISTER: challenged {}, accepted {}, rejected {}",
            c.register_challenged, c.register_accepted, c.register_rejected
        )?;
        writeln!(
            f,
            "  unexpected: unparseable {}, truncated {}, responses {}",
            c.unparseable, c.truncated, c.responses_received
        )?;
        let t = &c.traffic;
        writeln!(
            f,
            "  datagrams: sent {}, received {}, send blocked {}, send errors {}, kernel drops at our sockets {}",
            t.sent, t.received, t.send_blocked, t.send_errors, t.kernel_drops
        )?;
        crate::report::fmt_threads(f, &self.threads)?;
        for w in &self.warnings {
            writeln!(f, "  WARNING: {w}")?;
        }
        Ok(())
    }
}

/// Why the servers could not start.
#[derive(Debug, thiserror::Error)]
pub enum UasError {
    /// A setting is out of range.
    #[error("{0}")]
    Config(String),
    /// A socket could not be made.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

type ThreadResult = Result<(UasCounters, ThreadCpu, Vec<String>), UasError>;

/// Running servers; [`Uas::stop`] ends them and returns the report.
pub struct Uas {
    local: SocketAddr,
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<ThreadResult>>,
    started_at: Instant,
    progress: Option<JoinHandle<()>>,
}

impl Uas {
    /// Binds the sockets and starts the server threads.
    pub fn start(cfg: UasConfig) -> Result<Uas, UasError> {
        for (name, share) in [
            ("busy share", cfg.busy_share),
            ("unavailable share", cfg.unavailable_share),
            ("drop share", cfg.drop_first_invite_share),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return Err(UasError::Config(format!(
                    "{name} must be within 0..=1, got {share}"
                )));
            }
        }
        if cfg.busy_share + cfg.unavailable_share > 1.0 {
            return Err(UasError::Config(format!(
                "busy and unavailable shares add up to {}, more than all calls",
                cfg.busy_share + cfg.unavailable_share
            )));
        }
        if cfg.threads == 0 {
            return Err(UasError::Config("threads must be at least 1".into()));
        }
        let opts = UdpOptions {
            buffer_bytes: cfg.buffer_bytes,
            force_buffers: true,
            reuse_port: true,
            ipv6_only: false,
        };
        let first = sys::bind_udp(cfg.listen, opts).map_err(|source| UasError::Io {
            what: format!("listen on {}", cfg.listen),
            source,
        })?;
        let local = first.local_addr().map_err(|source| UasError::Io {
            what: "local address".into(),
            source,
        })?;
        let mut socks = vec![first];
        for _ in 1..cfg.threads {
            socks.push(sys::bind_udp(local, opts).map_err(|source| UasError::Io {
                what: format!("listen on {local} (SO_REUSEPORT)"),
                source,
            })?);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let started_at = Instant::now();
        let cfg = Arc::new(cfg);
        let mut handles = Vec::new();
        let mut rings = Vec::new();
        for (i, sock) in socks.into_iter().enumerate() {
            let (tx, rx) = rtrb::RingBuffer::<Progress>::new(8);
            rings.push(rx);
            let cfg = cfg.clone();
            let stop = stop.clone();
            let core = (!cfg.cores.is_empty()).then(|| cfg.cores[i % cfg.cores.len()]);
            let h = std::thread::Builder::new()
                .name(format!("uas-{i}"))
                .spawn(move || {
                    let pinned = core.filter(|&c| sys::pin_to_core(c));
                    let mut w = Server::new(&cfg, i, sock, local);
                    let warnings = w.run(&stop, tx)?;
                    Ok((std::mem::take(&mut w.c), w.cpu(pinned), warnings))
                })
                .map_err(|source| UasError::Io {
                    what: "cannot start a server thread".into(),
                    source,
                })?;
            handles.push(h);
        }
        let progress = if cfg.progress {
            let stop = stop.clone();
            Some(std::thread::spawn(move || {
                let mut line = ProgressLine::new("uas", started_at);
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    line.poll(&mut rings);
                }
                line.finish();
            }))
        } else {
            None
        };
        Ok(Uas {
            local,
            stop,
            handles,
            started_at,
            progress,
        })
    }

    /// The address the servers listen on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops the threads and returns what they counted.
    pub fn stop(self) -> Result<UasReport, UasError> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(p) = self.progress {
            let _ = p.join();
        }
        let mut total = UasCounters::default();
        let mut threads = Vec::new();
        let mut warnings = Vec::new();
        for h in self.handles {
            match h.join() {
                Ok(Ok((c, cpu, w))) => {
                    total.merge(&c);
                    threads.push(cpu);
                    warnings.extend(w);
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(UasError::Config("a server thread panicked".into())),
            }
        }
        for t in &threads {
            if t.peak_busy > SATURATION {
                warnings.push(format!(
                    "server thread {} reached {:.0}% of a core: the servers may be the limit",
                    t.thread,
                    t.peak_busy * 100.0
                ));
            }
        }
        if total.traffic.kernel_drops > 0 {
            warnings.push(format!(
                "the kernel dropped {} datagrams at the servers' sockets (receive buffers full)",
                total.traffic.kernel_drops
            ));
        }
        Ok(UasReport {
            listen: self.local.to_string(),
            elapsed_s: self.started_at.elapsed().as_secs_f64(),
            counters: total,
            threads,
            warnings,
        })
    }
}

/// Runs servers until `duration` passes or `stop` is set.
pub fn run(cfg: UasConfig, duration: Duration, stop: &AtomicBool) -> Result<UasReport, UasError> {
    let uas = Uas::start(cfg)?;
    let end = Instant::now() + duration;
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    uas.stop()
}

/// Keys of the call table are already hashes ([`fnv1a`]); hashing them
/// again (SipHash) would only cost time.
#[derive(Default, Clone, Copy)]
struct PreHashed(u64);

impl std::hash::Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type CallTable = HashMap<u64, ServerCall, std::hash::BuildHasherDefault<PreHashed>>;

/// FNV-1a: a fast, stable hash of a Call-ID (keys and deterministic
/// choices must be the same on every retransmission).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Final mix so that the high bits depend on every byte too.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// A uniform fraction in [0, 1) from a hash and a salt.
fn fraction(h: u64, salt: u64) -> f64 {
    let x = (h ^ salt).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    /// The first INVITE was ignored on purpose; the next one starts the call.
    Dropped,
    /// Provisional answer sent; final answer waits for the answer timer.
    Proceeding,
    /// Final answer sent, retransmitted until the ACK.
    Answered,
    /// ACK received for a 2xx: the dialog is up.
    Confirmed,
    /// BYE answered, or ACK for a failure received; kept to absorb
    /// retransmissions until the linger timer.
    Ended,
}

#[derive(Debug, Clone, Copy)]
struct ServerCall {
    state: CallState,
    code: u16,
    /// Pool buffer: the INVITE while Proceeding, the final answer while
    /// Answered.
    buf: Option<u32>,
    peer: SocketAddr,
    sent: u32,
    t_answer: u64,
    token: u32,
}

#[derive(Debug, Clone, Copy)]
enum TimerKind {
    Answer,
    Retransmit,
    Forget,
}

#[derive(Debug, Clone, Copy)]
struct Timer {
    key: u64,
    token: u32,
    kind: TimerKind,
}

/// Fixed-size buffers reused for stored INVITEs and answers.
struct Pool {
    // Boxed so that growing the pool moves pointers, not 2 KiB arrays, and
    // so `Server::with_stored` can swap a buffer out in O(1).
    #[allow(clippy::vec_box)]
    bufs: Vec<Box<[u8; TX_SLOT]>>,
    lens: Vec<u16>,
    free: Vec<u32>,
}

impl Pool {
    fn put(&mut self, bytes: &[u8]) -> Option<u32> {
        if bytes.len() > TX_SLOT {
            return None;
        }
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.bufs.push(Box::new([0; TX_SLOT]));
                self.lens.push(0);
                (self.bufs.len() - 1) as u32
            }
        };
        self.bufs[i as usize][..bytes.len()].copy_from_slice(bytes);
        self.lens[i as usize] = bytes.len() as u16;
        Some(i)
    }

    fn get(&self, i: u32) -> &[u8] {
        &self.bufs[i as usize][..usize::from(self.lens[i as usize])]
    }

    fn release(&mut self, i: u32) {
        self.free.push(i);
    }
}

const BATCH: usize = 64;

struct Server<'a> {
    cfg: &'a UasConfig,
    index: usize,
    sock: UdpSocket,
    fds: [std::os::fd::RawFd; 1],
    calls: CallTable,
    timers: TimerLanes<Timer>,
    pool: Pool,
    tx: TxBatch,
    scratch: Box<[u8; TX_SLOT]>,
    spare: Option<Box<[u8; TX_SLOT]>>,
    contact: Vec<u8>,
    sdp: Vec<u8>,
    challenge_salt: u64,
    c: UasCounters,
    started_at: Instant,
    cpu_start: Duration,
    peak_busy: f64,
}

impl<'a> Server<'a> {
    fn new(cfg: &'a UasConfig, index: usize, sock: UdpSocket, local: SocketAddr) -> Self {
        let mut sdp = [0u8; 512];
        let mut o = MsgBuf::new(&mut sdp);
        msg::write_sdp(&mut o, local, 1);
        let sdp = o.as_bytes().to_vec();
        let fds = [sock.as_raw_fd()];
        Server {
            cfg,
            index,
            sock,
            fds,
            calls: CallTable::with_capacity_and_hasher(1 << 16, Default::default()),
            timers: TimerLanes::new(),
            pool: Pool {
                bufs: Vec::new(),
                lens: Vec::new(),
                free: Vec::new(),
            },
            tx: TxBatch::new(BATCH),
            scratch: Box::new([0; TX_SLOT]),
            spare: Some(Box::new([0; TX_SLOT])),
            contact: format!("<sip:uas@{local}>").into_bytes(),
            sdp,
            challenge_salt: u64::from(crate::uac::random_u32()),
            c: UasCounters::default(),
            started_at: Instant::now(),
            cpu_start: sys::thread_cpu_time(),
            peak_busy: 0.0,
        }
    }

    fn now(&self) -> u64 {
        self.started_at.elapsed().as_nanos() as u64
    }

    fn cpu(&self, core: Option<usize>) -> ThreadCpu {
        let cpu = sys::thread_cpu_time().saturating_sub(self.cpu_start);
        let busy = cpu.as_secs_f64() / self.started_at.elapsed().as_secs_f64().max(1e-9);
        ThreadCpu {
            thread: format!("uas-{}", self.index),
            core,
            cpu_s: cpu.as_secs_f64(),
            busy,
            peak_busy: self.peak_busy.max(busy),
        }
    }

    fn run(
        &mut self,
        stop: &AtomicBool,
        mut progress: rtrb::Producer<Progress>,
    ) -> Result<Vec<String>, UasError> {
        let io = |what: &str| {
            let what = what.to_string();
            move |source| UasError::Io { what, source }
        };
        let mut epoll = Epoll::new(1).map_err(io("epoll"))?;
        epoll.add(&self.sock, 0).map_err(io("epoll add"))?;
        let mut warnings = Vec::new();
        let mut rx = if self.cfg.gso {
            RxBatch::with_slot_size(16, 65_536)
        } else {
            RxBatch::new(BATCH)
        };
        self.tx.set_gso(self.cfg.gso);
        if self.cfg.gso {
            if let Err(e) = sys::enable_gro(&self.sock) {
                warnings.push(format!(
                    "no UDP GRO ({e}): datagrams are received one by one"
                ));
            }
        }
        let mut next_tick = 1_000_000_000u64;
        let mut tick_cpu = sys::thread_cpu_time();
        let mut tick_wall = Instant::now();
        let mut did_work = false;
        sys::set_timer_slack(10_000);
        while !stop.load(Ordering::Relaxed) {
            let now = self.now();
            let mut fired = 0;
            while let Some((_, t)) = self.timers.pop_expired(now) {
                self.on_timer(t, now);
                fired += 1;
            }
            self.flush();
            // Timers wake the thread on a 1 ms grid (see the callers' loop).
            let wake = self
                .timers
                .next_deadline()
                .map_or(u64::MAX, |d| d.div_ceil(1_000_000) * 1_000_000)
                .min(next_tick);
            // Coalescing (see `UasConfig::coalesce`): after a busy turn,
            // sleep instead of waiting on the socket, then read in batches.
            let readable = if did_work && !self.cfg.coalesce.is_zero() {
                std::thread::sleep(self.cfg.coalesce);
                true
            } else {
                // Wake at least every 50 ms to see a stop request.
                let timeout = Duration::from_nanos(wake.saturating_sub(now).min(50_000_000));
                epoll.wait(timeout).map_err(io("epoll wait"))? > 0
            };
            let mut received = 0;
            if readable {
                for _ in 0..16 {
                    let n = match rx.recv(&self.sock) {
                        Ok(n) => n,
                        Err(e) => {
                            if warnings.len() < 10 {
                                warnings.push(format!("receive: {e}"));
                            }
                            0
                        }
                    };
                    received += n;
                    let now = self.now();
                    for i in 0..n {
                        let (_, from, truncated) = rx.get(i);
                        if truncated {
                            self.c.traffic.received += 1;
                            self.c.truncated += 1;
                            continue;
                        }
                        let Some(from) = from else { continue };
                        for bytes in rx.segments(i) {
                            self.c.traffic.received += 1;
                            self.on_datagram(bytes, from, now);
                        }
                    }
                    self.flush();
                    if n < 16 {
                        break;
                    }
                }
            }
            did_work = received > 0 || fired > 0;
            let now = self.now();
            if now >= next_tick {
                let cpu = sys::thread_cpu_time();
                let busy =
                    (cpu - tick_cpu).as_secs_f64() / tick_wall.elapsed().as_secs_f64().max(1e-9);
                self.peak_busy = self.peak_busy.max(busy);
                tick_cpu = cpu;
                tick_wall = Instant::now();
                let _ = progress.push(Progress {
                    started: self.c.new_calls,
                    completed: self.c.answers.total(),
                    not_completed: self.c.invite_again,
                    active: self.calls.len() as u64,
                    retransmissions: self.c.answer_retransmissions,
                    sent: self.c.traffic.sent,
                    received: self.c.traffic.received,
                    busy,
                    lag_us: 0,
                });
                next_tick = now + 1_000_000_000;
            }
        }
        self.flush();
        self.c.traffic.kernel_drops += sys::socket_drops(&self.sock).unwrap_or(0);
        Ok(warnings)
    }

    fn flush(&mut self) {
        if !self.tx.is_empty() {
            let r = self.tx.flush(&self.fds);
            self.c.traffic.add_flush(r);
        }
    }

    fn queue(&mut self, len: usize, peer: SocketAddr) {
        if self.tx.is_full() {
            self.flush();
        }
        self.tx.push(&self.scratch[..len], 0, peer);
    }

    /// Writes a response to `req` into the scratch buffer; returns its length.
    fn write(&mut self, req: &SipView<'_>, code: u16, extra: &[u8]) -> Option<usize> {
        let mut tag = [0u8; 20];
        let mut tb = MsgBuf::new(&mut tag);
        tb.put(b"u");
        tb.put_hex_padded(fnv1a(req.call_id), 16);
        let tn = tb.len();
        let invite = req.cseq_method == Method::Invite;
        let r = Response {
            code,
            // RFC 3261 section 8.2.6.2: 100 Trying carries no tag.
            to_tag: (code > 100).then_some(&tag[..tn]),
            contact: (invite && (101..300).contains(&code)).then_some(&self.contact[..]),
            extra,
            sdp: (invite && (200..300).contains(&code)).then_some(&self.sdp[..]),
        };
        msg::write_response(&mut self.scratch[..], req, &r)
    }

    fn answer(&mut self, req: &SipView<'_>, code: u16, peer: SocketAddr) -> Option<usize> {
        let n = self.write(req, code, b"")?;
        self.c.answers.add(code);
        self.queue(n, peer);
        Some(n)
    }

    fn final_code(&self, h: u64) -> u16 {
        let u = fraction(h, 0x5eed);
        if u < self.cfg.busy_share {
            486
        } else if u < self.cfg.busy_share + self.cfg.unavailable_share {
            503
        } else {
            200
        }
    }

    /// Runs `f` with the bytes of pool buffer `buf` moved out of the pool,
    /// so `f` may use the server mutably without copying them. `f` may
    /// release `buf` (its slot then holds the spare box until reused, and the
    /// bytes are put back into that free slot), but must store new bytes
    /// before releasing, as `send_final` does.
    fn with_stored<R>(&mut self, buf: u32, f: impl FnOnce(&mut Self, &[u8]) -> R) -> R {
        let spare = self.spare.take().unwrap_or_else(|| Box::new([0; TX_SLOT]));
        let held = std::mem::replace(&mut self.pool.bufs[buf as usize], spare);
        let len = usize::from(self.pool.lens[buf as usize]);
        let r = f(self, &held[..len]);
        self.spare = Some(std::mem::replace(&mut self.pool.bufs[buf as usize], held));
        r
    }

    fn arm(&mut self, key: u64, now: u64, delay: u64, kind: TimerKind) {
        let token = self.calls.get(&key).map_or(0, |c| c.token);
        self.timers.push(now, delay, Timer { key, token, kind });
    }

    fn on_datagram(&mut self, bytes: &[u8], peer: SocketAddr, now: u64) {
        let v = match sipmsg::parse(bytes) {
            Ok(v) => v,
            Err(_) => {
                self.c.unparseable += 1;
                return;
            }
        };
        let Some(method) = v.method() else {
            self.c.responses_received += 1;
            return;
        };
        match method {
            Method::Invite => {
                self.c.requests.invite += 1;
                self.on_invite(&v, peer, now);
            }
            Method::Ack => {
                self.c.requests.ack += 1;
                self.on_ack(&v, now);
            }
            Method::Bye => {
                self.c.requests.bye += 1;
                self.on_bye(&v, peer, now);
            }
            Method::Cancel => {
                self.c.requests.cancel += 1;
                self.on_cancel(&v, peer, now);
            }
            Method::Options => {
                self.c.requests.options += 1;
                self.answer(&v, 200, peer);
            }
            Method::Register => {
                self.c.requests.register += 1;
                self.on_register(&v, peer);
            }
            _ => {
                self.c.requests.other += 1;
                self.answer(&v, 501, peer);
            }
        }
    }

    fn on_invite(&mut self, v: &SipView<'_>, peer: SocketAddr, now: u64) {
        let key = fnv1a(v.call_id);
        match self.calls.get(&key).map(|c| (c.state, c.code)) {
            Some((CallState::Dropped, _)) | None => {}
            Some((state, code)) => {
                // A retransmitted INVITE: answer it with the last answer
                // again (RFC 3261 section 17.2.1), built from the request
                // itself since it carries the same headers.
                self.c.invite_again += 1;
                let last = match state {
                    CallState::Proceeding if self.cfg.ring => 180,
                    CallState::Proceeding => 100,
                    _ => code,
                };
                if let Some(n) = self.write(v, last, b"") {
                    self.queue(n, peer);
                }
                return;
            }
        }
        let dropped_before = self.calls.contains_key(&key);
        if !dropped_before
            && self.cfg.drop_first_invite_share > 0.0
            && fraction(key, 0xd0d0) < self.cfg.drop_first_invite_share
        {
            self.c.invite_dropped_on_purpose += 1;
            self.calls.insert(
                key,
                ServerCall {
                    state: CallState::Dropped,
                    code: 0,
                    buf: None,
                    peer,
                    sent: 0,
                    t_answer: now,
                    token: 0,
                },
            );
            self.arm(key, now, self.cfg.timers.timeout_ns, TimerKind::Forget);
            return;
        }
        self.c.new_calls += 1;
        let code = self.final_code(key);
        let token = self.calls.get(&key).map_or(0, |c| c.token.wrapping_add(1));
        self.calls.insert(
            key,
            ServerCall {
                state: CallState::Proceeding,
                code,
                buf: None,
                peer,
                sent: 0,
                t_answer: now,
                token,
            },
        );
        if self.cfg.trying {
            self.answer(v, 100, peer);
        }
        if self.cfg.ring {
            self.answer(v, 180, peer);
        }
        if self.cfg.answer_delay.is_zero() {
            self.send_final(key, v, code, peer, now);
        } else {
            // Keep the INVITE to build the answer from when the timer fires.
            let buf = self.pool_put_request(v);
            if let Some(c) = self.calls.get_mut(&key) {
                c.buf = buf;
            }
            self.arm(
                key,
                now,
                self.cfg.answer_delay.as_nanos() as u64,
                TimerKind::Answer,
            );
        }
    }

    fn pool_put_request(&mut self, v: &SipView<'_>) -> Option<u32> {
        // The request is rebuilt from its parsed view's source bytes: the
        // view borrows the datagram, so copy the fields we answer from into a
        // compact request of our own.
        let mut out = MsgBuf::new(&mut self.scratch[..]);
        out.put(b"INVITE sip:x SIP/2.0\r\n");
        for via in v.vias() {
            out.put(b"Via: ");
            out.put(via);
            out.put(b"\r\n");
        }
        out.put(b"From: ");
        out.put(v.from);
        out.put(b"\r\nTo: ");
        out.put(v.to);
        out.put(b"\r\nCall-ID: ");
        out.put(v.call_id);
        out.put(b"\r\nCSeq: ");
        out.put_u64(u64::from(v.cseq));
        out.put(b" INVITE\r\n\r\n");
        if out.overflowed() {
            return None;
        }
        let n = out.len();
        self.pool.put(&self.scratch[..n])
    }

    /// Sends the final answer of an INVITE and keeps it for retransmission
    /// until the ACK.
    fn send_final(&mut self, key: u64, req: &SipView<'_>, code: u16, peer: SocketAddr, now: u64) {
        let Some(n) = self.answer(req, code, peer) else {
            return;
        };
        let stored = self.pool.put(&self.scratch[..n]);
        if let Some(c) = self.calls.get_mut(&key) {
            if let Some(old) = c.buf.take() {
                self.pool.release(old);
            }
            c.state = CallState::Answered;
            c.code = code;
            c.buf = stored;
            c.sent = 1;
            c.t_answer = now;
        }
        self.arm(key, now, self.cfg.timers.t1_ns, TimerKind::Retransmit);
    }

    fn end(&mut self, key: u64, now: u64) {
        if let Some(c) = self.calls.get_mut(&key) {
            if let Some(b) = c.buf.take() {
                self.pool.release(b);
            }
            c.state = CallState::Ended;
            c.token = c.token.wrapping_add(1);
        }
        self.arm(
            key,
            now,
            self.cfg.linger.as_nanos() as u64,
            TimerKind::Forget,
        );
    }

    fn on_ack(&mut self, v: &SipView<'_>, now: u64) {
        let key = fnv1a(v.call_id);
        let Some(c) = self.calls.get_mut(&key) else {
            self.c.ack_unmatched += 1;
            return;
        };
        match c.state {
            CallState::Answered if (200..300).contains(&c.code) => {
                if let Some(b) = c.buf.take() {
                    self.pool.release(b);
                }
                c.state = CallState::Confirmed;
                c.token = c.token.wrapping_add(1);
                self.arm(
                    key,
                    now,
                    self.cfg.dialog_limit.as_nanos() as u64,
                    TimerKind::Forget,
                );
            }
            CallState::Answered => self.end(key, now),
            CallState::Confirmed | CallState::Ended => self.c.ack_again += 1,
            CallState::Proceeding | CallState::Dropped => self.c.ack_unmatched += 1,
        }
    }

    fn on_bye(&mut self, v: &SipView<'_>, peer: SocketAddr, now: u64) {
        let key = fnv1a(v.call_id);
        match self.calls.get(&key).map(|c| c.state) {
            Some(CallState::Confirmed | CallState::Answered) => {
                self.answer(v, 200, peer);
                self.end(key, now);
            }
            Some(CallState::Ended) => {
                self.c.bye_again += 1;
                self.answer(v, 200, peer);
            }
            _ => {
                self.c.bye_unmatched += 1;
                self.answer(v, 481, peer);
            }
        }
    }

    fn on_cancel(&mut self, v: &SipView<'_>, peer: SocketAddr, now: u64) {
        let key = fnv1a(v.call_id);
        let pending = self
            .calls
            .get(&key)
            .filter(|c| c.state == CallState::Proceeding)
            .and_then(|c| c.buf);
        let Some(buf) = pending else {
            let known = self.calls.contains_key(&key);
            if known {
                // Final answer already sent: the CANCEL has no effect
                // (RFC 3261 section 9.2) but is answered.
                self.answer(v, 200, peer);
            } else {
                self.c.cancel_unmatched += 1;
                self.answer(v, 481, peer);
            }
            return;
        };
        self.answer(v, 200, peer);
        // 487 for the INVITE, built from the stored INVITE.
        self.with_stored(buf, |s, invite| {
            if let Ok(iv) = sipmsg::parse(invite) {
                s.send_final(key, &iv, 487, peer, now);
            }
        });
    }

    fn on_register(&mut self, v: &SipView<'_>, peer: SocketAddr) {
        let Some(password) = self.cfg.password.clone() else {
            self.c.register_accepted += 1;
            self.answer(v, 200, peer);
            return;
        };
        match v.authorization.map(Answer::parse) {
            Some(Ok(a)) if a.verify(b"REGISTER", password.as_bytes()) => {
                self.c.register_accepted += 1;
                self.answer(v, 200, peer);
            }
            Some(_) => {
                self.c.register_rejected += 1;
                self.answer(v, 403, peer);
            }
            None => {
                self.c.register_challenged += 1;
                let mut extra = [0u8; 256];
                let mut o = MsgBuf::new(&mut extra);
                o.put(b"WWW-Authenticate: Digest realm=\"");
                o.put(self.cfg.realm.as_bytes());
                o.put(b"\", nonce=\"");
                o.put_hex_padded(fnv1a(v.call_id) ^ self.challenge_salt, 16);
                o.put(b"\", algorithm=MD5, qop=\"auth\"\r\n");
                let n = o.len();
                if let Some(len) = self.write(v, 401, &extra[..n]) {
                    self.c.answers.add(401);
                    self.queue(len, peer);
                }
            }
        }
    }

    fn on_timer(&mut self, t: Timer, now: u64) {
        let Some(c) = self.calls.get(&t.key).copied() else {
            return;
        };
        if c.token != t.token {
            return;
        }
        match t.kind {
            TimerKind::Answer if c.state == CallState::Proceeding => {
                let Some(buf) = c.buf else { return };
                self.with_stored(buf, |s, invite| {
                    if let Ok(iv) = sipmsg::parse(invite) {
                        s.send_final(t.key, &iv, c.code, c.peer, now);
                    }
                });
            }
            TimerKind::Retransmit if c.state == CallState::Answered => {
                if now.saturating_sub(c.t_answer) >= self.cfg.timers.timeout_ns {
                    // RFC 3261 section 13.3.1.4 / Timer H: give up.
                    self.c.ack_timeouts += 1;
                    self.end(t.key, now);
                    return;
                }
                if let Some(buf) = c.buf {
                    if self.tx.is_full() {
                        self.flush();
                    }
                    self.tx.push(self.pool.get(buf), 0, c.peer);
                    self.c.answer_retransmissions += 1;
                }
                let sent = c.sent + 1;
                if let Some(cm) = self.calls.get_mut(&t.key) {
                    cm.sent = sent;
                }
                let next = self.cfg.timers.capped_interval(sent);
                self.arm(t.key, now, next, TimerKind::Retransmit);
            }
            TimerKind::Forget => {
                if c.state == CallState::Confirmed {
                    self.c.dialogs_expired += 1;
                }
                if let Some(b) = c.buf {
                    self.pool.release(b);
                }
                self.calls.remove(&t.key);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_shares_are_honoured_over_many_calls() {
        let cfg = UasConfig {
            busy_share: 0.2,
            unavailable_share: 0.1,
            ..UasConfig::new("127.0.0.1:0".parse().unwrap())
        };
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let local = sock.local_addr().unwrap();
        let s = Server::new(&cfg, 0, sock, local);
        let mut counts = [0u32; 3];
        for i in 0..20_000u32 {
            let id = format!("{i}@test");
            match s.final_code(fnv1a(id.as_bytes())) {
                486 => counts[0] += 1,
                503 => counts[1] += 1,
                _ => counts[2] += 1,
            }
        }
        // Loose bounds: the split is by hash, not by exact count.
        assert!((3_400..4_600).contains(&counts[0]), "{counts:?}");
        assert!((1_600..2_400).contains(&counts[1]), "{counts:?}");
    }

    #[test]
    fn shares_above_one_are_refused() {
        let cfg = UasConfig {
            busy_share: 0.7,
            unavailable_share: 0.7,
            ..UasConfig::new("127.0.0.1:0".parse().unwrap())
        };
        assert!(matches!(Uas::start(cfg), Err(UasError::Config(_))));
    }
}
