//! Callers (UAC): open-loop calls, OPTIONS pings, REGISTER with digest
//! authentication, and CANCEL before answer, from many sockets across ports
//! and addresses, on pinned worker threads that share nothing.
//!
//! Each worker owns its sockets, its call table, its timers and its counters;
//! it reports progress to the control thread through an SPSC ring and hands
//! its counters back when it ends. Every started call ends in exactly one
//! outcome bucket ([`crate::report::Outcomes`]).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::digest::{Challenge, Credentials};
use crate::msg::{self, CallKey, CallerTemplate, Request, Transport, Txn};
use crate::msgbuf::MsgBuf;
use crate::numbers::Numbers;
use crate::pacing::Pacer;
use crate::progress::{Progress, ProgressLine};
use crate::report::{CallerCounters, RunFacts, ThreadCpu, UacReport};
use crate::sipmsg::{self, SipView};
use crate::stream::{Conns, Loss, Received, TlsClient};
use crate::timers::{SipTimers, TimerLanes};
use sip::Method;
use sys::{self, Epoll, RxBatch, TxBatch, UdpOptions};

/// What each caller does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// INVITE, 100/180/200, ACK, hold, BYE, 200.
    Call,
    /// OPTIONS, 200.
    Options,
    /// REGISTER, 401 challenge, REGISTER with digest credentials, 200.
    Register,
    /// INVITE, first provisional answer, CANCEL, 200 (CANCEL), 487, ACK.
    Cancel,
}

impl Scenario {
    /// The scenario's name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Call => "call",
            Scenario::Options => "options",
            Scenario::Register => "register",
            Scenario::Cancel => "cancel",
        }
    }
}

/// How a caller run is set up.
#[derive(Debug, Clone)]
pub struct UacConfig {
    /// Where requests go (the edge, or a server directly).
    pub target: SocketAddr,
    /// What each call does.
    pub scenario: Scenario,
    /// Calls started per second (open loop).
    pub cps: f64,
    /// How long calls are started for.
    pub duration: Duration,
    /// Most calls started in total.
    pub max_calls: u64,
    /// Time between the ACK and the BYE.
    pub hold: Duration,
    /// Dialed numbers (Request-URI user; REGISTER address of record).
    pub numbers: Numbers,
    /// From user part of calls.
    pub caller: String,
    /// Password for REGISTER digest authentication.
    pub password: String,
    /// Local addresses to send from (empty: the one the route to the target
    /// picks).
    pub local_addrs: Vec<IpAddr>,
    /// First local port; sockets take consecutive ports from here (None:
    /// ports the kernel picks).
    pub local_port_start: Option<u16>,
    /// Sockets (source address and port pairs) in total.
    pub sources: usize,
    /// Worker threads.
    pub threads: usize,
    /// Cores to pin worker `i` to (`cores[i % len]`); empty: no pinning.
    pub cores: Vec<usize>,
    /// RFC 3261 timers; `timeout_ns` is also the longest a request waits
    /// for its final answer.
    pub timers: SipTimers,
    /// After a stop request, how long to wait for calls in flight.
    pub stop_drain: Duration,
    /// Socket buffer size asked for.
    pub buffer_bytes: usize,
    /// User-Agent header.
    pub user_agent: String,
    /// Print a progress line to stderr once a second.
    pub progress: bool,
    /// After a busy turn, sleep this long before reading again, so datagrams
    /// are taken in batches (0: wake on every arrival).
    pub coalesce: Duration,
    /// Send runs of equal-size datagrams as one segmented send (UDP GSO)
    /// and take runs in one receive (UDP GRO); what travels is unchanged.
    pub gso: bool,
    /// How the calls travel to the target. Over TCP and TLS, `sources`,
    /// `local_addrs` and `local_port_start` are not used: the calls go on
    /// `connections` connections from the address the route picks.
    pub transport: Transport,
    /// TCP and TLS: connections to the target in total (split between the
    /// threads).
    pub connections: usize,
    /// TLS: whom to trust and the name to check.
    pub tls: Option<TlsClient>,
}

impl UacConfig {
    /// Defaults for a call run against `target`: 100 cps for 10 s, hold 0,
    /// numbers `4420{0000-9999}`, 32 sources, one thread.
    pub fn new(target: SocketAddr) -> Self {
        UacConfig {
            target,
            scenario: Scenario::Call,
            cps: 100.0,
            duration: Duration::from_secs(10),
            max_calls: 10_000_000,
            hold: Duration::ZERO,
            numbers: Numbers::pattern("4420{0000-9999}").expect("valid default pattern"),
            caller: "loadgen".into(),
            password: "secret".into(),
            local_addrs: Vec::new(),
            local_port_start: None,
            sources: 32,
            threads: 1,
            cores: Vec::new(),
            timers: SipTimers::default(),
            stop_drain: Duration::from_secs(2),
            buffer_bytes: 4 << 20,
            user_agent: "dce-loadgen".into(),
            progress: false,
            // Calls start up to 1 ms late (recorded as start lag); latency
            // comes from kernel stamps, so it is not affected.
            coalesce: Duration::from_millis(1),
            gso: true,
            transport: Transport::Udp,
            connections: 8,
            tls: None,
        }
    }
}

/// Why a caller run could not start.
#[derive(Debug, thiserror::Error)]
pub enum UacError {
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

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> UacError {
    let what = what.into();
    move |source| UacError::Io { what, source }
}

/// The local address the kernel would send from towards `target`.
pub fn route_source(target: SocketAddr) -> std::io::Result<IpAddr> {
    let any: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let s = UdpSocket::bind(any)?;
    s.connect(target)?;
    Ok(s.local_addr()?.ip())
}

/// Runs callers until the schedule is done and every call has ended (or
/// `stop` is set and the drain time has passed), and returns the report.
pub fn run(cfg: &UacConfig, stop: &AtomicBool) -> Result<UacReport, UacError> {
    if !(cfg.cps.is_finite() && cfg.cps > 0.0) {
        return Err(UacError::Config(format!(
            "calls per second must be above 0, got {}",
            cfg.cps
        )));
    }
    if cfg.transport.reliable() && cfg.connections < cfg.threads {
        return Err(UacError::Config(format!(
            "{} connections cannot feed {} threads: give each thread at least one",
            cfg.connections, cfg.threads
        )));
    }
    if cfg.transport == Transport::Tls && cfg.tls.is_none() {
        return Err(UacError::Config(
            "TLS needs the certificates to trust (--tls-ca)".into(),
        ));
    }
    if cfg.threads == 0 || cfg.sources == 0 {
        return Err(UacError::Config(
            "threads and sources must be at least 1".into(),
        ));
    }
    if cfg.sources < cfg.threads {
        return Err(UacError::Config(format!(
            "{} sources cannot feed {} threads: give each thread at least one",
            cfg.sources, cfg.threads
        )));
    }
    if cfg.max_calls == 0 || cfg.duration.is_zero() {
        return Err(UacError::Config(
            "a run must be bounded by a count and a duration above 0".into(),
        ));
    }
    if let Some(p) = cfg.local_port_start {
        if u32::from(p) + cfg.sources as u32 > 65_536 {
            return Err(UacError::Config(format!(
                "{} sources from port {p} run past port 65535",
                cfg.sources
            )));
        }
    }
    let reliable = cfg.transport.reliable();
    let addrs = if reliable {
        Vec::new()
    } else if cfg.local_addrs.is_empty() {
        vec![route_source(cfg.target).map_err(io_err(format!(
            "cannot find a local address towards {}",
            cfg.target
        )))?]
    } else {
        cfg.local_addrs.clone()
    };
    // Sockets are made here, before any thread starts, so a bind error is
    // reported as such instead of as a thread failure.
    let mut per_thread: Vec<Vec<UdpSocket>> = (0..cfg.threads).map(|_| Vec::new()).collect();
    for j in 0..if reliable { 0 } else { cfg.sources } {
        let ip = addrs[j % addrs.len()];
        let port = cfg.local_port_start.map_or(0, |p| p + j as u16);
        let sock = sys::bind_udp(
            SocketAddr::new(ip, port),
            UdpOptions {
                buffer_bytes: cfg.buffer_bytes,
                force_buffers: true,
                reuse_port: false,
                ipv6_only: false,
            },
        )
        .map_err(io_err(format!("source socket {j}")))?;
        per_thread[j % cfg.threads].push(sock);
    }
    let run_id = random_u32();
    let planned = Pacer::planned_total(cfg.cps, cfg.duration.as_nanos() as u64, cfg.max_calls);
    let started_at = Instant::now();
    let results = std::thread::scope(|scope| -> Result<Vec<_>, UacError> {
        let mut lines = Vec::new();
        let mut handles = Vec::new();
        for (i, socks) in per_thread.into_iter().enumerate() {
            // Connections split like sources: thread i takes every
            // threads-th one.
            let conns = (cfg.connections + cfg.threads - 1 - i) / cfg.threads;
            let (tx, rx) = rtrb::RingBuffer::<Progress>::new(8);
            lines.push(rx);
            let core = (!cfg.cores.is_empty()).then(|| cfg.cores[i % cfg.cores.len()]);
            let h = std::thread::Builder::new()
                .name(format!("uac-{i}"))
                .spawn_scoped(scope, move || {
                    let pinned = core.filter(|&c| sys::pin_to_core(c));
                    let mut w = Worker::new(cfg, i as u16, run_id, socks, conns, started_at, stop)?;
                    let result = w.run(tx)?;
                    Ok::<_, UacError>((result, w.cpu(pinned)))
                })
                .map_err(io_err("cannot start a caller thread"))?;
            handles.push(h);
        }
        if cfg.progress {
            let mut line = ProgressLine::new("uac", started_at);
            while !handles.iter().all(|h| h.is_finished()) {
                std::thread::sleep(Duration::from_millis(100));
                line.poll(&mut lines);
            }
            line.finish();
        }
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| UacError::Config("a caller thread panicked".into()))?
            })
            .collect()
    })?;
    let mut total = CallerCounters::default();
    let mut threads = Vec::new();
    let mut warnings = Vec::new();
    let mut end_ns = 0u64;
    let mut last_start_ns = 0u64;
    for (w, cpu) in results {
        total.merge(&w.counters);
        end_ns = end_ns.max(w.end_ns);
        last_start_ns = last_start_ns.max(w.last_start_ns);
        warnings.extend(w.warnings);
        threads.push(cpu);
    }
    // The achieved rate is over the span calls really started in: to the
    // last actual start plus one interval. A generator that fell behind
    // started its last calls late, which lowers the achieved rate.
    let window = if total.started > 0 {
        last_start_ns as f64 / 1e9 + 1.0 / cfg.cps
    } else {
        0.0
    };
    Ok(UacReport::build(
        total,
        RunFacts {
            scenario: cfg.scenario.name().into(),
            target: cfg.target.to_string(),
            transport: cfg.transport.name().into(),
            offered_cps: cfg.cps,
            planned,
            start_window_s: window,
            elapsed_s: end_ns as f64 / 1e9,
            sources: if reliable {
                cfg.connections
            } else {
                cfg.sources
            },
            threads,
            warnings,
        },
    ))
}

/// A random number from the kernel's per-process randomness (for run ids).
pub(crate) fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.write_u32(std::process::id());
    h.finish() as u32
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Free,
    /// INVITE sent, no answer yet (Timer A retransmits).
    Inviting,
    /// A provisional answer came: no more INVITE retransmissions.
    Proceeding,
    /// CANCEL sent; waiting for the 487 of the INVITE.
    Cancelling,
    /// ACK sent, waiting for the hold time to end.
    Holding,
    /// BYE sent.
    Byeing,
    /// OPTIONS sent.
    Optioning,
    /// REGISTER sent; round 1 without credentials, round 2 with them.
    Registering(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimerKind {
    Retransmit,
    Timeout,
    Hold,
}

#[derive(Debug, Clone, Copy)]
struct Timer {
    slot: u32,
    token: u32,
    kind: TimerKind,
}

const TAG_MAX: usize = 64;

#[derive(Debug, Clone)]
struct Call {
    generation: u32,
    /// Changes when the call moves to a new transaction or ends, so timers
    /// set for the old one are ignored.
    token: u32,
    state: State,
    sock: u32,
    index: u64,
    t_start: u64,
    t_step: u64,
    /// Transmissions of the current request.
    sent: u32,
    answered: bool,
    /// A 200 arrived for an INVITE the scenario meant to cancel.
    cancel_lost: bool,
    to_tag: [u8; TAG_MAX],
    to_tag_len: u8,
    /// The dialog's route set: the 2xx's Record-Route (one proxy).
    route: [u8; ROUTE_MAX],
    route_len: u8,
}

/// Longest Record-Route value a call keeps for its dialog.
const ROUTE_MAX: usize = 160;

impl Call {
    fn empty() -> Self {
        Call {
            generation: 0,
            token: 0,
            state: State::Free,
            sock: 0,
            index: 0,
            t_start: 0,
            t_step: 0,
            sent: 0,
            answered: false,
            cancel_lost: false,
            to_tag: [0; TAG_MAX],
            to_tag_len: 0,
            route: [0; ROUTE_MAX],
            route_len: 0,
        }
    }
}

/// The challenge of a REGISTER in progress, kept as received.
#[derive(Clone)]
struct AuthSlot {
    value: [u8; 512],
    len: u16,
}

struct WorkerResult {
    counters: CallerCounters,
    last_start_ns: u64,
    end_ns: u64,
    warnings: Vec<String>,
}

/// Consecutive calls put on one socket before moving to the next, so that
/// bursts leave in one sendmmsg while every socket still carries calls.
const CALLS_PER_SOCKET_RUN: u64 = 16;
const BATCH: usize = 64;

/// Calls a worker starts in one turn of its loop at most: bounded so that
/// answers are still read when the generator falls behind (the lag is
/// recorded).
const STARTS_PER_TURN: usize = 4096;

/// Timers a worker handles in one turn of its loop at most, for the same
/// reason.
const TIMERS_PER_TURN: usize = 8192;

/// A worker's once-a-second bookkeeping: when the next second starts, and
/// the thread's CPU time and the wall clock when this one started.
struct SecondTick {
    next_ns: u64,
    cpu: Duration,
    wall: Instant,
}

struct Worker<'a> {
    cfg: &'a UacConfig,
    thread: u16,
    run_id: u32,
    socks: Vec<UdpSocket>,
    fds: Vec<RawFd>,
    /// TCP and TLS: the connections (calls' `sock` indexes them instead of
    /// `socks`).
    stream: Option<Conns>,
    /// What the connections read in a turn.
    inbox: Received,
    /// TCP and TLS: where a message is written before it is queued on its
    /// connection.
    scratch: Vec<u8>,
    templates: Vec<CallerTemplate>,
    register_uris: Vec<Vec<u8>>,
    calls: Vec<Call>,
    auth: Vec<AuthSlot>,
    free: Vec<u32>,
    active: usize,
    timers: TimerLanes<Timer>,
    pacer: Pacer,
    tx: TxBatch,
    c: CallerCounters,
    started_at: Instant,
    stop: &'a AtomicBool,
    local_calls: u64,
    last_start_ns: u64,
    cpu_start: Duration,
    wall_start: Instant,
    peak_busy: f64,
}

impl<'a> Worker<'a> {
    fn new(
        cfg: &'a UacConfig,
        thread: u16,
        run_id: u32,
        socks: Vec<UdpSocket>,
        conns: usize,
        started_at: Instant,
        stop: &'a AtomicBool,
    ) -> Result<Self, UacError> {
        let target = cfg.target.to_string().into_bytes();
        let mut templates = Vec::new();
        let mut register_uris = Vec::new();
        let stream = if cfg.transport.reliable() {
            Some(
                Conns::dial(cfg.target, conns, cfg.tls.clone())
                    .map_err(io_err("connections to the target"))?,
            )
        } else {
            None
        };
        let mut locals = Vec::new();
        for s in &socks {
            locals.push(s.local_addr().map_err(io_err("local address"))?);
        }
        if let Some(st) = &stream {
            let fallback = route_source(cfg.target)
                .map(|ip| SocketAddr::new(ip, 0))
                .map_err(io_err("local address"))?;
            for i in 0..st.len() {
                locals.push(st.local(i).unwrap_or(fallback));
            }
        }
        for (j, &local) in locals.iter().enumerate() {
            let mut sdp = [0u8; 512];
            let mut o = MsgBuf::new(&mut sdp);
            msg::write_sdp(&mut o, local, u64::from(run_id) ^ j as u64);
            templates.push(CallerTemplate {
                target: target.clone(),
                local: local.to_string().into_bytes(),
                caller: cfg.caller.clone().into_bytes(),
                user_agent: cfg.user_agent.clone().into_bytes(),
                sdp: o.as_bytes().to_vec(),
                transport: cfg.transport,
            });
            let mut uri = b"sip:".to_vec();
            uri.extend_from_slice(&target);
            register_uris.push(uri);
        }
        let fds = socks.iter().map(|s| s.as_raw_fd()).collect();
        let lanes = u64::from(cfg.threads as u32);
        // Room for the calls in flight at the offered rate, so the table
        // rarely grows during a run.
        let per_thread_cps = cfg.cps / cfg.threads as f64;
        let in_flight = per_thread_cps * (cfg.hold.as_secs_f64() + 1.0);
        let reserve = (in_flight as usize).clamp(64, 1 << 20);
        Ok(Worker {
            cfg,
            thread,
            run_id,
            socks,
            fds,
            stream,
            inbox: Received::default(),
            scratch: vec![0; 65_536],
            templates,
            register_uris,
            calls: Vec::with_capacity(reserve),
            auth: Vec::new(),
            free: Vec::with_capacity(reserve),
            active: 0,
            timers: TimerLanes::new(),
            pacer: Pacer::new(
                cfg.cps,
                cfg.duration.as_nanos() as u64,
                cfg.max_calls,
                u64::from(thread),
                lanes,
            ),
            tx: TxBatch::new(BATCH),
            c: CallerCounters::default(),
            started_at,
            stop,
            local_calls: 0,
            last_start_ns: 0,
            cpu_start: sys::thread_cpu_time(),
            wall_start: Instant::now(),
            peak_busy: 0.0,
        })
    }

    fn now(&self) -> u64 {
        self.started_at.elapsed().as_nanos() as u64
    }

    fn cpu(&self, core: Option<usize>) -> ThreadCpu {
        let cpu = sys::thread_cpu_time().saturating_sub(self.cpu_start);
        let wall = self.wall_start.elapsed().as_secs_f64().max(1e-9);
        let busy = cpu.as_secs_f64() / wall;
        ThreadCpu {
            thread: format!("uac-{}", self.thread),
            core,
            cpu_s: cpu.as_secs_f64(),
            busy,
            peak_busy: self.peak_busy.max(busy),
        }
    }

    fn run(&mut self, mut progress: rtrb::Producer<Progress>) -> Result<WorkerResult, UacError> {
        let mut udp = if self.stream.is_none() {
            Some((self.watch_sockets()?, self.receive_batch()))
        } else {
            None
        };
        self.tx.set_gso(self.cfg.gso);
        let mut second = SecondTick {
            next_ns: 1_000_000_000,
            cpu: sys::thread_cpu_time(),
            wall: Instant::now(),
        };
        let mut stop_deadline: Option<u64> = None;
        let mut warnings = Vec::new();
        let mut did_work = false;
        let mut rt_offset = self.realtime_offset();
        sys::set_timer_slack(10_000);
        self.enable_socket_options(&mut warnings);
        loop {
            let now = self.now();
            if stop_deadline.is_none() && self.stop.load(Ordering::Relaxed) {
                self.pacer.stop();
                stop_deadline = Some(now + self.cfg.stop_drain.as_nanos() as u64);
            }
            let started = self.start_due_calls(now);
            let fired = self.fire_expired_timers(now);
            self.flush();
            if self.pacer.finished() && self.active == 0 {
                break;
            }
            if stop_deadline.is_some_and(|d| now >= d) {
                break;
            }
            let busy = started == STARTS_PER_TURN || fired == TIMERS_PER_TURN;
            let wake = self.next_wake(now, second.next_ns, stop_deadline);
            // Coalescing: after a turn that did work, sleep a fixed interval
            // instead of waiting on the sockets, so arrivals do not wake the
            // thread one by one; the next turn takes them in batches. Latency
            // is read from kernel arrival stamps, so the sleep does not
            // distort it; calls due meanwhile start up to one interval late
            // (recorded as start lag). An idle turn waits on the sockets.
            let timeout = if busy {
                Duration::ZERO
            } else if did_work && !self.cfg.coalesce.is_zero() {
                std::thread::sleep(self.cfg.coalesce);
                Duration::ZERO
            } else {
                Duration::from_nanos(wake.saturating_sub(now).min(100_000_000))
            };
            let received = match &mut udp {
                Some((epoll, rx)) => {
                    let ready = epoll.wait(timeout).map_err(io_err("epoll wait"))?;
                    self.receive_ready(epoll, ready, rx, rt_offset, &mut warnings)
                }
                None => self.receive_stream(timeout)?,
            };
            did_work = started > 0 || fired > 0 || received > 0;
            let now = self.now();
            if now >= second.next_ns {
                rt_offset = self.realtime_offset();
                self.report_second(&mut second, &mut progress, now);
            }
        }
        self.end_unfinished_calls();
        for s in &self.socks {
            self.c.traffic.kernel_drops += sys::socket_drops(s).unwrap_or(0);
        }
        if let Some(st) = &self.stream {
            self.c.connections = st.counters;
        }
        Ok(WorkerResult {
            counters: std::mem::take(&mut self.c),
            end_ns: self.now(),
            last_start_ns: self.last_start_ns,
            warnings,
        })
    }

    /// TCP and TLS: waits up to `timeout` on the connections and handles
    /// every message they carried, then the calls of the connections that
    /// went down; returns how many messages were read.
    fn receive_stream(&mut self, timeout: Duration) -> Result<usize, UacError> {
        let mut inbox = std::mem::take(&mut self.inbox);
        inbox.clear();
        let now = self.now();
        let n = match self.stream.as_mut() {
            Some(st) => st
                .poll(timeout, now, &mut inbox)
                .map_err(io_err("poll of the connections"))?,
            None => 0,
        };
        let now = self.now();
        for (conn, range) in &inbox.messages {
            self.c.traffic.received += 1;
            // No kernel arrival stamps on a byte stream: the time it was
            // read is its arrival.
            self.on_datagram(*conn, &inbox.bytes[range.clone()], now, now);
        }
        let down = std::mem::take(&mut inbox.down);
        for &(conn, loss) in &down {
            self.end_calls_on(conn, loss);
        }
        inbox.down = down;
        self.inbox = inbox;
        self.flush();
        Ok(n)
    }

    /// Every call in flight on connection `conn` ends with it, under the
    /// reason it went down.
    fn end_calls_on(&mut self, conn: u32, loss: Loss) {
        for slot in 0..self.calls.len() {
            let c = &self.calls[slot];
            if c.sock == conn && c.state != State::Free {
                self.count_loss(loss);
                self.release(slot as u32);
            }
        }
    }

    fn count_loss(&mut self, loss: Loss) {
        let o = &mut self.c.outcomes;
        match loss {
            Loss::Refused => o.connection_refused += 1,
            Loss::Closed => o.connection_closed += 1,
            Loss::TlsFailed => o.tls_failed += 1,
        }
    }

    /// Sockets (UDP) or connections (TCP, TLS) the calls are spread over.
    fn lanes(&self) -> usize {
        match &self.stream {
            Some(st) => st.len(),
            None => self.socks.len(),
        }
    }

    /// An epoll set of the worker's sockets, each known by its index.
    fn watch_sockets(&self) -> Result<Epoll, UacError> {
        let epoll = Epoll::new(self.socks.len()).map_err(io_err("epoll"))?;
        for (i, s) in self.socks.iter().enumerate() {
            epoll.add(s, i as u64).map_err(io_err("epoll add"))?;
        }
        Ok(epoll)
    }

    fn receive_batch(&self) -> RxBatch {
        if self.cfg.gso {
            // GRO hands over runs of datagrams: slots of a full IP packet.
            RxBatch::with_slot_size(16, 65_536)
        } else {
            RxBatch::new(BATCH)
        }
    }

    /// Kernel arrival stamps are CLOCK_REALTIME; this offset maps them onto
    /// the run's monotonic clock (refreshed every second to follow slewing).
    fn realtime_offset(&self) -> u64 {
        sys::realtime_ns().saturating_sub(self.now())
    }

    /// Kernel receive timestamps and, with GSO, UDP GRO on every socket; a
    /// socket without them still works, with a warning saying what is lost.
    fn enable_socket_options(&self, warnings: &mut Vec<String>) {
        for s in &self.socks {
            if let Err(e) = sys::enable_rx_timestamps(s) {
                warnings.push(format!("no kernel receive timestamps ({e}): latency includes the generator's own delay"));
            }
            if self.cfg.gso {
                if let Err(e) = sys::enable_gro(s) {
                    warnings.push(format!(
                        "no UDP GRO ({e}): datagrams are received one by one"
                    ));
                }
            }
        }
    }

    /// Starts every call that is due, at most [`STARTS_PER_TURN`]; returns
    /// how many started.
    fn start_due_calls(&mut self, now: u64) -> usize {
        let mut started = 0;
        while started < STARTS_PER_TURN {
            let Some(due) = self.pacer.poll(now) else {
                break;
            };
            self.c
                .latencies
                .start_lag
                .record_ns(now.saturating_sub(due.scheduled_ns));
            self.start_call(due.index, now);
            self.last_start_ns = now;
            started += 1;
        }
        started
    }

    /// Handles every expired timer, at most [`TIMERS_PER_TURN`]; returns
    /// how many fired.
    fn fire_expired_timers(&mut self, now: u64) -> usize {
        let mut fired = 0;
        while fired < TIMERS_PER_TURN {
            let Some((_, t)) = self.timers.pop_expired(now) else {
                break;
            };
            self.on_timer(t, now);
            fired += 1;
        }
        fired
    }

    /// When the thread next has something to do: a call due, a timer, the
    /// next second's report or the end of the stop drain.
    fn next_wake(&self, now: u64, next_second: u64, stop_deadline: Option<u64>) -> u64 {
        [
            self.pacer.next_due_ns(),
            // Timers wake the thread on a 1 ms grid, so the many timers of
            // finished calls (cancelled lazily) cost one wake-up per ms at
            // most; a retransmission is at most 1 ms late.
            self.timers
                .next_deadline()
                .map(|d| d.div_ceil(1_000_000) * 1_000_000),
            Some(next_second),
            stop_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(now + 1_000_000)
    }

    /// Reads the `ready` sockets epoll reported and handles every datagram;
    /// returns how many receive slots were filled.
    fn receive_ready(
        &mut self,
        epoll: &Epoll,
        ready: usize,
        rx: &mut RxBatch,
        rt_offset: u64,
        warnings: &mut Vec<String>,
    ) -> usize {
        let mut received = 0;
        for r in 0..ready {
            let sock = epoll.token(r) as usize;
            // Up to a few batches per socket per turn, so one busy socket
            // cannot starve the schedule.
            for _ in 0..4 {
                let n = match rx.recv(&self.socks[sock]) {
                    Ok(n) => n,
                    Err(e) => {
                        warnings.push(format!("receive on source {sock}: {e}"));
                        0
                    }
                };
                received += n;
                self.on_batch(sock, rx, n, rt_offset);
                if n < 16 {
                    break;
                }
            }
            self.flush();
        }
        received
    }

    /// Handles the `n` slots of a receive batch from socket `sock`: each
    /// datagram of each slot (several when GRO joined them), stamped with
    /// its arrival on the run's clock.
    fn on_batch(&mut self, sock: usize, rx: &RxBatch, n: usize, rt_offset: u64) {
        let now = self.now();
        for i in 0..n {
            let (_, _, truncated) = rx.get(i);
            if truncated {
                self.c.traffic.received += 1;
                self.c.unexpected.truncated += 1;
                continue;
            }
            // Arrival time on our clock; `now` if unstamped.
            let at = rx
                .stamp(i)
                .map_or(now, |rt| rt.saturating_sub(rt_offset).min(now));
            for bytes in rx.segments(i) {
                self.c.traffic.received += 1;
                self.on_datagram(sock as u32, bytes, now, at);
            }
        }
    }

    /// The second's CPU use (for the peak) and a progress line for the
    /// control thread.
    fn report_second(
        &mut self,
        second: &mut SecondTick,
        progress: &mut rtrb::Producer<Progress>,
        now: u64,
    ) {
        let cpu = sys::thread_cpu_time();
        let wall = second.wall.elapsed().as_secs_f64().max(1e-9);
        let busy = (cpu - second.cpu).as_secs_f64() / wall;
        self.peak_busy = self.peak_busy.max(busy);
        second.cpu = cpu;
        second.wall = Instant::now();
        let _ = progress.push(Progress {
            started: self.c.started,
            completed: self.c.outcomes.completed,
            not_completed: self.c.outcomes.not_completed(),
            active: self.active as u64,
            retransmissions: self.c.retransmissions.invite + self.c.retransmissions.non_invite,
            sent: self.c.traffic.sent,
            received: self.c.traffic.received,
            busy,
            lag_us: self
                .pacer
                .next_due_ns()
                .map_or(0, |d| now.saturating_sub(d) / 1000),
        });
        second.next_ns = now + 1_000_000_000;
    }

    /// Calls still in flight when a stop cut the drain short.
    fn end_unfinished_calls(&mut self) {
        for call in self.calls.iter_mut() {
            if call.state != State::Free {
                call.state = State::Free;
                self.c.outcomes.unfinished += 1;
            }
        }
        self.active = 0;
    }

    fn flush(&mut self) {
        if !self.tx.is_empty() {
            let r = self.tx.flush(&self.fds);
            self.c.traffic.add_flush(r);
        }
        if let Some(st) = self.stream.as_mut() {
            let now = self.started_at.elapsed().as_nanos() as u64;
            let mut inbox = std::mem::take(&mut self.inbox);
            let before = inbox.down.len();
            st.flush(now, &mut inbox);
            let down: Vec<_> = inbox.down[before..].to_vec();
            self.inbox = inbox;
            for (conn, loss) in down {
                self.end_calls_on(conn, loss);
            }
        }
    }

    /// Hands a message written into `scratch` to connection `sock`.
    fn queue_on_connection(&mut self, sock: u32, n: usize) -> bool {
        let Some(st) = self.stream.as_mut() else {
            return false;
        };
        // A message the connection refuses (its send queue full) is
        // counted there, as `queue_full`, once.
        let queued = st.send(sock as usize, &self.scratch[..n]);
        if queued {
            self.c.traffic.sent += 1;
        }
        queued
    }

    fn key(&self, slot: u32) -> CallKey {
        CallKey {
            run: self.run_id,
            thread: self.thread,
            slot,
            generation: self.calls[slot as usize].generation,
        }
    }

    fn alloc(&mut self) -> u32 {
        self.active += 1;
        if let Some(s) = self.free.pop() {
            return s;
        }
        self.calls.push(Call::empty());
        if self.cfg.scenario == Scenario::Register {
            self.auth.push(AuthSlot {
                value: [0; 512],
                len: 0,
            });
        }
        (self.calls.len() - 1) as u32
    }

    fn release(&mut self, slot: u32) {
        let c = &mut self.calls[slot as usize];
        c.state = State::Free;
        c.generation = c.generation.wrapping_add(1);
        c.token = c.token.wrapping_add(1);
        self.active -= 1;
        self.free.push(slot);
    }

    fn arm(&mut self, slot: u32, now: u64, delay: u64, kind: TimerKind) {
        let token = self.calls[slot as usize].token;
        self.timers.push(now, delay, Timer { slot, token, kind });
    }

    /// Starts a new transaction of `slot` (first request, BYE, CANCEL, the
    /// authenticated REGISTER): timers of the previous one stop counting.
    fn begin_transaction(&mut self, slot: u32, state: State, now: u64) {
        let t1 = self.cfg.timers.t1_ns;
        let timeout = self.cfg.timers.timeout_ns;
        let c = &mut self.calls[slot as usize];
        c.token = c.token.wrapping_add(1);
        c.state = state;
        c.t_step = now;
        c.sent = 1;
        // A reliable transport retransmits by itself: Timers A and E run
        // over UDP only (RFC 3261 sections 17.1.1.2, 17.1.2.2).
        if !self.cfg.transport.reliable() {
            self.arm(slot, now, t1, TimerKind::Retransmit);
        }
        self.arm(slot, now, timeout, TimerKind::Timeout);
    }

    fn start_call(&mut self, index: u64, now: u64) {
        self.c.started += 1;
        let slot = self.alloc();
        let sock = ((self.local_calls / CALLS_PER_SOCKET_RUN) % self.lanes() as u64) as u32;
        self.local_calls += 1;
        if let Some(st) = self.stream.as_mut() {
            let dialled_before = st.counters.dialled;
            match st.usable(sock as usize, now) {
                Err(loss) => {
                    self.count_loss(loss);
                    self.release(slot);
                    return;
                }
                Ok(()) if st.counters.dialled != dialled_before => {
                    // Dialled again: a new local port for Via and Contact.
                    if let Some(local) = st.local(sock as usize) {
                        self.templates[sock as usize].local = local.to_string().into_bytes();
                    }
                }
                Ok(()) => {}
            }
        }
        {
            let c = &mut self.calls[slot as usize];
            c.sock = sock;
            c.index = index;
            c.t_start = now.max(self.started_at.elapsed().as_nanos() as u64);
            c.answered = false;
            c.cancel_lost = false;
            c.to_tag_len = 0;
            c.route_len = 0;
        }
        let state = match self.cfg.scenario {
            Scenario::Call | Scenario::Cancel => State::Inviting,
            Scenario::Options => State::Optioning,
            Scenario::Register => State::Registering(1),
        };
        self.calls[slot as usize].state = state;
        if !self.send_current(slot) {
            self.c.outcomes.not_sent += 1;
            self.release(slot);
            return;
        }
        self.begin_transaction(slot, state, now);
    }

    /// (Re)sends the request of the call's current transaction.
    fn send_current(&mut self, slot: u32) -> bool {
        let c = &self.calls[slot as usize];
        let (method, txn, cseq, with_sdp, tag) = match c.state {
            State::Inviting | State::Proceeding => (Method::Invite, Txn::Invite, 1, true, false),
            State::Cancelling => (Method::Cancel, Txn::Invite, 1, false, false),
            State::Byeing => (Method::Bye, Txn::Bye, 2, false, true),
            State::Optioning => (Method::Options, Txn::Options, 1, false, false),
            State::Registering(round) => (
                Method::Register,
                Txn::Register,
                u32::from(round),
                false,
                false,
            ),
            State::Holding | State::Free => return false,
        };
        self.send_request(slot, method, txn, cseq, with_sdp, tag)
    }

    fn send_request(
        &mut self,
        slot: u32,
        method: Method,
        txn: Txn,
        cseq: u32,
        with_sdp: bool,
        with_tag: bool,
    ) -> bool {
        if self.tx.is_full() {
            self.flush();
        }
        let key = self.key(slot);
        let c = &self.calls[slot as usize];
        let sock = c.sock;
        let mut num = [0u8; 128];
        let mut nb = MsgBuf::new(&mut num);
        self.cfg.numbers.write(c.index, &mut nb);
        let nlen = nb.len();
        let number = &num[..nlen];
        let tag = &c.to_tag[..usize::from(c.to_tag_len)];
        let route = &c.route[..usize::from(c.route_len)];
        // Requests inside the dialog (ACK of a 2xx, BYE) follow its route set.
        let in_dialog = matches!(txn, Txn::Ack2xx) || method == Method::Bye;
        let req = Request {
            method,
            txn,
            number,
            key,
            cseq,
            to_tag: with_tag.then_some(tag),
            with_sdp,
            route: (in_dialog && !route.is_empty()).then_some(route),
        };
        let t = &self.templates[sock as usize];
        let mut cnonce = [0u8; 32];
        let challenge;
        let creds;
        let auth_slot;
        let auth = if method == Method::Register && cseq == 2 {
            auth_slot = &self.auth[slot as usize];
            challenge = Challenge::parse(&auth_slot.value[..usize::from(auth_slot.len)]);
            let mut cb = MsgBuf::new(&mut cnonce);
            key.write(&mut cb);
            let cn = cb.len();
            creds = Credentials {
                username: number,
                password: self.cfg.password.as_bytes(),
                method: b"REGISTER",
                uri: &self.register_uris[sock as usize],
                cnonce: &cnonce[..cn],
                nc: b"00000001",
            };
            match &challenge {
                Ok(ch) => Some((ch, &creds)),
                Err(_) => return false,
            }
        } else {
            None
        };
        if self.stream.is_some() {
            return match msg::write_request(&mut self.scratch, t, &req, auth) {
                Some(n) => self.queue_on_connection(sock, n),
                None => false,
            };
        }
        match msg::write_request(self.tx.slot(), t, &req, auth) {
            Some(n) => {
                self.tx.commit(n, sock, self.cfg.target);
                true
            }
            None => false,
        }
    }

    fn send_ack(&mut self, slot: u32, for_2xx: bool) {
        let txn = if for_2xx { Txn::Ack2xx } else { Txn::Invite };
        // An ACK that cannot be written is counted like an unsendable
        // datagram; the server's retransmissions will show it.
        if !self.send_request(slot, Method::Ack, txn, 1, false, true) {
            self.c.traffic.send_errors += 1;
        }
    }

    fn on_timer(&mut self, t: Timer, now: u64) {
        let Some(c) = self.calls.get(t.slot as usize) else {
            return;
        };
        if c.token != t.token || c.state == State::Free {
            return;
        }
        let state = c.state;
        match t.kind {
            TimerKind::Retransmit => {
                let invite = matches!(state, State::Inviting);
                let retransmits = invite
                    || matches!(
                        state,
                        State::Cancelling
                            | State::Byeing
                            | State::Optioning
                            | State::Registering(_)
                    );
                if !retransmits {
                    return;
                }
                if self.send_current(t.slot) {
                    if invite {
                        self.c.retransmissions.invite += 1;
                    } else {
                        self.c.retransmissions.non_invite += 1;
                    }
                }
                let c = &mut self.calls[t.slot as usize];
                c.sent += 1;
                let sent = c.sent;
                let next = if invite {
                    self.cfg.timers.invite_interval(sent)
                } else {
                    self.cfg.timers.capped_interval(sent)
                };
                self.arm(t.slot, now, next, TimerKind::Retransmit);
            }
            TimerKind::Timeout => {
                let o = &mut self.c.outcomes;
                match state {
                    State::Inviting | State::Optioning | State::Registering(1) => {
                        o.timed_out_no_answer += 1
                    }
                    State::Proceeding => o.timed_out_no_final += 1,
                    _ => o.timed_out_later += 1,
                }
                self.release(t.slot);
            }
            TimerKind::Hold => {
                if state == State::Holding {
                    self.start_bye(t.slot, now);
                }
            }
        }
    }

    fn start_bye(&mut self, slot: u32, now: u64) {
        self.calls[slot as usize].state = State::Byeing;
        if !self.send_current(slot) {
            self.c.traffic.send_errors += 1;
        }
        self.begin_transaction(slot, State::Byeing, now);
    }

    fn on_datagram(&mut self, sock: u32, bytes: &[u8], now: u64, at: u64) {
        // The one place received bytes are read (see `sipmsg`).
        let v = match sipmsg::parse(bytes) {
            Ok(v) => v,
            Err(_) => {
                self.c.unexpected.unparseable += 1;
                return;
            }
        };
        let Some(code) = v.code() else {
            self.c.unexpected.requests += 1;
            return;
        };
        self.c.answers.add(code);
        let key = match CallKey::from_call_id(v.call_id) {
            Some(k) if k.run == self.run_id && k.thread == self.thread => k,
            _ => {
                self.c.unexpected.foreign += 1;
                return;
            }
        };
        let live = self
            .calls
            .get(key.slot as usize)
            .is_some_and(|c| c.generation == key.generation && c.state != State::Free);
        if !live {
            self.after_end(sock, &v, code);
            return;
        }
        self.on_answer(key.slot, &v, code, now, at);
    }

    /// An answer for a call that has ended: counted, and a final answer to
    /// an INVITE is acknowledged again so the server stops retransmitting.
    fn after_end(&mut self, sock: u32, v: &SipView<'_>, code: u16) {
        self.c.unexpected.after_end += 1;
        if v.cseq_method == Method::Invite && code >= 200 {
            self.c.retransmissions.answers_received_again += 1;
            if self.tx.is_full() {
                self.flush();
            }
            let local = &self.templates[sock as usize].local;
            let transport = self.cfg.transport;
            if self.stream.is_some() {
                if let Some(n) =
                    msg::write_ack_from_response(&mut self.scratch, v, local, transport)
                {
                    if self.queue_on_connection(sock, n) {
                        self.c.retransmissions.ack_again += 1;
                    }
                }
                return;
            }
            if let Some(n) = msg::write_ack_from_response(self.tx.slot(), v, local, transport) {
                self.tx.commit(n, sock, self.cfg.target);
                self.c.retransmissions.ack_again += 1;
            }
        }
    }

    fn store_tag(&mut self, slot: u32, v: &SipView<'_>) -> bool {
        let tag = v.to_tag().unwrap_or(b"");
        if tag.len() > TAG_MAX {
            return false;
        }
        let c = &mut self.calls[slot as usize];
        c.to_tag[..tag.len()].copy_from_slice(tag);
        c.to_tag_len = tag.len() as u8;
        // A route set too long to keep is dropped: the dialog then goes
        // straight to the target, as without a proxy recording the route.
        match v.record_route {
            Some(rr) if rr.len() <= ROUTE_MAX => {
                c.route[..rr.len()].copy_from_slice(rr);
                c.route_len = rr.len() as u8;
            }
            _ => c.route_len = 0,
        }
        true
    }

    /// Acts on an answer that arrived at `at` (for latency), handled at
    /// `now` (for timers).
    fn on_answer(&mut self, slot: u32, v: &SipView<'_>, code: u16, now: u64, at: u64) {
        let c = &self.calls[slot as usize];
        let (state, t_start, t_step) = (c.state, c.t_start, c.t_step);
        let final_ = code >= 200;
        let ok = (200..300).contains(&code);
        match (state, v.cseq_method) {
            (State::Inviting | State::Proceeding | State::Cancelling, Method::Invite) => {
                if !self.calls[slot as usize].answered {
                    self.calls[slot as usize].answered = true;
                    self.c
                        .latencies
                        .first_answer
                        .record_ns(at.saturating_sub(t_start));
                }
                if !final_ {
                    if state == State::Inviting {
                        if self.cfg.scenario == Scenario::Cancel {
                            // RFC 3261 section 9.1: CANCEL only after a
                            // provisional answer.
                            self.calls[slot as usize].state = State::Cancelling;
                            if !self.send_current(slot) {
                                self.c.traffic.send_errors += 1;
                            }
                            self.begin_transaction(slot, State::Cancelling, now);
                        } else {
                            self.calls[slot as usize].state = State::Proceeding;
                        }
                    }
                    return;
                }
                if !self.store_tag(slot, v) {
                    self.c.unexpected.out_of_state += 1;
                }
                if ok {
                    self.c.latencies.setup.record_ns(at.saturating_sub(t_start));
                    self.send_ack(slot, true);
                    if state == State::Cancelling {
                        self.calls[slot as usize].cancel_lost = true;
                    }
                    if self.cfg.hold.is_zero() {
                        self.start_bye(slot, now);
                    } else {
                        let c = &mut self.calls[slot as usize];
                        c.token = c.token.wrapping_add(1);
                        c.state = State::Holding;
                        self.arm(slot, now, self.cfg.hold.as_nanos() as u64, TimerKind::Hold);
                    }
                    return;
                }
                self.send_ack(slot, false);
                if state == State::Cancelling && code == 487 {
                    self.c.latencies.cancel.record_ns(at.saturating_sub(t_step));
                    self.c.outcomes.completed += 1;
                } else {
                    self.c.outcomes.failed.add(code);
                }
                self.release(slot);
            }
            (State::Cancelling, Method::Cancel) => {
                // The 200 to the CANCEL itself; the call ends with the 487.
            }
            (State::Holding | State::Byeing, Method::Invite) if ok => {
                // The server sent its 2xx again: our ACK was lost or late.
                self.c.retransmissions.answers_received_again += 1;
                self.c.retransmissions.ack_again += 1;
                self.send_ack(slot, true);
            }
            (State::Byeing, Method::Bye) => {
                if !final_ {
                    return;
                }
                self.c.latencies.bye.record_ns(at.saturating_sub(t_step));
                if !ok {
                    self.c.outcomes.bye_failed.add(code);
                } else if self.calls[slot as usize].cancel_lost {
                    // The scenario expected the CANCEL to win.
                    self.c.outcomes.failed.add(200);
                } else {
                    self.c.outcomes.completed += 1;
                }
                self.release(slot);
            }
            (State::Optioning, Method::Options) => {
                if !final_ {
                    return;
                }
                self.c
                    .latencies
                    .options
                    .record_ns(at.saturating_sub(t_start));
                if ok {
                    self.c.outcomes.completed += 1;
                } else {
                    self.c.outcomes.failed.add(code);
                }
                self.release(slot);
            }
            (State::Registering(round), Method::Register) => {
                if !final_ || v.cseq != u32::from(round) {
                    if final_ {
                        self.c.unexpected.out_of_state += 1;
                    }
                    return;
                }
                if round == 1 && (code == 401 || code == 407) {
                    let Some(value) = v.www_authenticate.filter(|w| w.len() <= 512) else {
                        self.c.outcomes.failed.add(code);
                        self.release(slot);
                        return;
                    };
                    let a = &mut self.auth[slot as usize];
                    a.value[..value.len()].copy_from_slice(value);
                    a.len = value.len() as u16;
                    self.calls[slot as usize].state = State::Registering(2);
                    if !self.send_current(slot) {
                        // An unusable challenge (not Digest MD5) fails the call.
                        self.c.outcomes.failed.add(code);
                        self.release(slot);
                        return;
                    }
                    self.begin_transaction(slot, State::Registering(2), now);
                    return;
                }
                self.c
                    .latencies
                    .register
                    .record_ns(at.saturating_sub(t_start));
                if ok {
                    self.c.outcomes.completed += 1;
                } else {
                    self.c.outcomes.failed.add(code);
                }
                self.release(slot);
            }
            (State::Byeing, Method::Invite) | (State::Holding, Method::Invite) => {
                // A provisional or final non-2xx for an INVITE already
                // answered: duplicated by the network or the server.
                self.c.retransmissions.answers_received_again += 1;
            }
            _ => self.c.unexpected.out_of_state += 1,
        }
    }
}
