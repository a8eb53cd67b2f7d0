//! dce-edge between real SIPp callers and servers, at fixed rates, in every
//! worker layout this box can run: AF_XDP with one worker on a one-queue
//! veth and two workers on a two-queue veth (one pinned worker per queue),
//! socket mode with one and two workers. Each run reports what SIPp saw
//! (calls completed and failed, retransmissions, the rate it really
//! started calls at), the CPU the edge, its workers and the generator used,
//! the edge's CPU per completed call, and every counter the edge moved
//! while dropping something (so a loss inside the edge shows by reason).
//!
//! With `DCE_BENCH_CAPTURE=1` it also measures the time each message spends
//! inside the edge: a capture (tcpdump, nanosecond timestamps) on the
//! edge's port of the lab bridge sees each message go in and come out, and
//! the difference, per message kind, is the in-edge latency.
//!
//! The lab: one caller address (SIPp's UAC, one source port per call so the
//! calls are many flows, spread over a multi-queue veth's queues as RSS
//! spreads them), `DCE_BENCH_UPSTREAMS` (4) SIPp servers answering 200, the
//! edge with the `lab` profile and a 1,000-prefix table, callers and
//! servers allowlisted.
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo bench -p dce-lab --bench edge_sipp
//! ```
//!
//! Knobs (environment): `DCE_BENCH_ONLY` (`direct,afxdp1,afxdp2,socket1,socket2`),
//! `DCE_BENCH_RATES` (`6000,12000` calls per second), `DCE_BENCH_RUNS` (3
//! per rate), `DCE_BENCH_SECS` (10 s per run), `DCE_BENCH_CAPTURE` (0),
//! `DCE_BENCH_UPSTREAMS` (4), `DCE_BENCH_PREFIXES` (1000),
//! `DCE_BENCH_EDGE_TOML` (more configuration appended to the edge's file),
//! `DCE_BENCH_EDGE_BIN` (another `dce-edge` binary, to compare builds),
//! `DCE_BENCH_SOCKET_PER_CALL` (1: SIPp opens a socket per call, many
//! flows; 0: one socket, one flow, which lands on one queue),
//! `DCE_BENCH_KEEP=DIR` (keep logs and captures there).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use dataplane::IoMode;
use lab::bin::TempDir;
use lab::cpu;
use lab::edge_process::{groups_toml, EdgeConfig, EdgeProcess};
use lab::netns::ChildGuard;
use lab::privilege::{have_program, is_root};
use lab::sipp::{Uac, UacOutcome, Uas};
use lab::topology::{Lab, LabSpec, EDGE_ADDR};
use loadgen::held::{self, GeneratorLoad, Limits, StepFacts};
use telemetry::stats::Snapshot;

/// One worker layout.
#[derive(Debug, Clone, Copy)]
struct Layout {
    name: &'static str,
    mode: IoMode,
    workers: usize,
}

const LAYOUTS: [Layout; 5] = [
    // SIPp's callers straight to one SIPp server: the generator's own
    // ceiling on this box.
    Layout {
        name: "direct",
        mode: IoMode::Socket,
        workers: 0,
    },
    Layout {
        name: "afxdp1",
        mode: IoMode::AfXdp,
        workers: 1,
    },
    Layout {
        name: "afxdp2",
        mode: IoMode::AfXdp,
        workers: 2,
    },
    Layout {
        name: "socket1",
        mode: IoMode::Socket,
        workers: 1,
    },
    Layout {
        name: "socket2",
        mode: IoMode::Socket,
        workers: 2,
    },
];

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Plan {
    layouts: Vec<Layout>,
    rates: Vec<u32>,
    runs: u32,
    secs: u32,
    capture: bool,
    upstreams: usize,
    prefixes: usize,
    edge_toml: String,
    edge_bin: Option<PathBuf>,
    keep: Option<PathBuf>,
    socket_per_call: bool,
}

impl Plan {
    fn from_env() -> Plan {
        let only = std::env::var("DCE_BENCH_ONLY").unwrap_or_default();
        let layouts = LAYOUTS
            .iter()
            .copied()
            .filter(|l| only.is_empty() || only.split(',').any(|o| o.trim() == l.name))
            .collect();
        let rates = std::env::var("DCE_BENCH_RATES")
            .unwrap_or_else(|_| "6000,12000".into())
            .split(',')
            .filter_map(|r| r.trim().parse().ok())
            .collect();
        Plan {
            layouts,
            rates,
            runs: env("DCE_BENCH_RUNS", 3u32).max(1),
            secs: env("DCE_BENCH_SECS", 10u32).max(1),
            capture: env("DCE_BENCH_CAPTURE", 0u32) == 1,
            upstreams: env("DCE_BENCH_UPSTREAMS", 4usize).clamp(1, 16),
            prefixes: env("DCE_BENCH_PREFIXES", 1000usize).max(1),
            edge_toml: std::env::var("DCE_BENCH_EDGE_TOML").unwrap_or_default(),
            edge_bin: std::env::var_os("DCE_BENCH_EDGE_BIN").map(PathBuf::from),
            keep: std::env::var_os("DCE_BENCH_KEEP").map(PathBuf::from),
            socket_per_call: env("DCE_BENCH_SOCKET_PER_CALL", 1u32) == 1,
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("edge_sipp: bench");
        return;
    }
    if !is_root() {
        println!("edge_sipp: needs root (network namespaces, XDP); skipped");
        return;
    }
    if !have_program("sipp") || !have_program("nsenter") {
        println!(
            "edge_sipp: needs sipp and nsenter (apt-get install sip-tester util-linux); skipped"
        );
        return;
    }
    let plan = Plan::from_env();
    let capture = plan.capture && have_program("tcpdump");
    if plan.capture && !capture {
        println!(
            "edge_sipp: DCE_BENCH_CAPTURE=1 needs tcpdump (apt-get install tcpdump); no capture"
        );
    }
    println!(
        "edge_sipp ({}): rates {:?} cps, {} runs of {} s each, {} upstreams, {} prefixes; load average {}",
        now_utc(),
        plan.rates,
        plan.runs,
        plan.secs,
        plan.upstreams,
        plan.prefixes,
        load_average()
    );
    let mut all = Vec::new();
    for layout in plan.layouts.clone() {
        match run_layout(&plan, layout, capture) {
            Ok(mut lines) => all.append(&mut lines),
            Err(e) => println!("{}: {e:#}", layout.name),
        }
    }
    summary(&all);
    println!("load average after: {}", load_average());
}

fn now_utc() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%MZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------
// CPU from /proc.

/// utime + stime of a process (all its threads), in clock ticks.
fn process_ticks(pid: u32) -> u64 {
    cpu::proc_stat(pid).map_or(0, |s| s.ticks)
}

// ---------------------------------------------------------------------------
// One layout.

/// What one run gave.
#[derive(Debug, Clone)]
struct Line {
    layout: &'static str,
    offered: u32,
    outcome: UacOutcome,
    secs: f64,
    edge_cores: f64,
    worker_cores: f64,
    uac_cores: f64,
    uas_cores: f64,
    /// Counters the edge moved while dropping or losing something.
    drops: BTreeMap<String, u64>,
    /// Seconds the edge's workers were runnable but waited for their
    /// cores (other threads had them), summed over the workers.
    worker_wait_secs: f64,
    latency: Option<BTreeMap<String, Percentiles>>,
}

impl Line {
    fn failed_pct(&self) -> f64 {
        100.0 * self.outcome.failed as f64 / f64::from(self.outcome.calls.max(1))
    }
    fn retrans_pct(&self) -> f64 {
        100.0 * self.outcome.retransmissions as f64 / self.outcome.sent.max(1) as f64
    }
    fn achieved(&self) -> f64 {
        self.outcome.start_rate.unwrap_or(0.0)
    }
    /// Microseconds of the edge's CPU per completed call.
    fn us_per_call(&self) -> f64 {
        self.edge_cores * self.secs * 1e6 / self.outcome.successful.max(1) as f64
    }
    /// Microseconds of the generator's CPU (SIPp caller and servers) per
    /// completed call.
    fn generator_us_per_call(&self) -> f64 {
        (self.uac_cores + self.uas_cores) * self.secs * 1e6 / self.outcome.successful.max(1) as f64
    }
    /// Clean: at most 0.1% failed, under 1% retransmitted, and started at
    /// (at least 97% of) the rate offered.
    fn clean(&self) -> bool {
        self.verdict() == "clean"
    }
    /// "clean", or why not, by the rule the capacity search uses
    /// (`loadgen::held`): calls failed or messages were retransmitted (the
    /// system under test, or the path), or SIPp did not start calls at 97%
    /// of the offered rate or more, with its caller's CPU saying whether
    /// SIPp itself fell behind (SIPp shows no pacing lag of its own; with
    /// room on its core, calls waiting for answers held its limit of calls
    /// in progress).
    fn verdict(&self) -> String {
        let facts = StepFacts {
            offered_cps: f64::from(self.offered),
            achieved_cps: self.achieved(),
            started: u64::from(self.outcome.calls),
            failed_ratio: self.failed_pct() / 100.0,
            p99_us: None,
            retransmitted_ratio: Some(self.retrans_pct() / 100.0),
            generator: GeneratorLoad {
                busy: Some(self.uac_cores),
                pacing_lag_us: None,
            },
        };
        let limits = Limits {
            max_retransmitted_ratio: Some(0.01),
            ..Limits::new(0.001)
        };
        let v = held::judge(&facts, &limits);
        if v.held() {
            "clean".into()
        } else {
            format!("NOT CLEAN, {v}")
        }
    }
}

fn prefixes_csv(n: usize) -> String {
    let mut out = String::from("prefix,group\n");
    for i in 0..n {
        // 44 then four digits: 1,000 prefixes of one forward group.
        out.push_str(&format!("44{:04},up\n", 1000 + i));
    }
    out
}

fn run_layout(plan: &Plan, layout: Layout, capture: bool) -> Result<Vec<Line>> {
    let queues = if layout.mode == IoMode::AfXdp {
        layout.workers as u32
    } else {
        1
    };
    let lab = Lab::build(&LabSpec {
        caller_addrs: 1,
        upstreams: plan.upstreams,
        attacker: false,
        edge_queues: queues,
    })
    .context("building the lab")?;
    let tmp = TempDir::new("esipp")?;
    let dir: PathBuf = match &plan.keep {
        Some(k) => {
            let d = k.join(layout.name);
            std::fs::create_dir_all(&d)?;
            d
        }
        None => tmp.path().to_path_buf(),
    };
    let uas: Vec<Uas> = lab
        .upstreams
        .iter()
        .map(|u| Uas::start(u, &dir))
        .collect::<std::io::Result<_>>()
        .context("starting the SIPp servers")?;
    let targets: Vec<SocketAddr> = uas.iter().map(Uas::addr).collect();
    if layout.workers == 0 {
        let target = targets[0];
        println!(
            "\n{}: SIPp callers straight to the SIPp server at {target}",
            layout.name
        );
        return run_rates(plan, layout, &lab, &dir, &uas[..1], None, target, capture);
    }
    let mut cfg = EdgeConfig::new(
        &lab,
        layout.mode,
        groups_toml(None, &[("up", &targets)]),
        prefixes_csv(plan.prefixes),
    );
    cfg.workers = layout.workers;
    cfg.profile = Some("lab".into());
    // The mode's own idle strategy, as an appliance runs it.
    cfg.busy_polls = None;
    cfg.cores = Some(if layout.workers == 1 {
        vec![1]
    } else {
        vec![0, 1]
    });
    cfg.binary = plan.edge_bin.clone();
    cfg.extra = plan.edge_toml.clone();
    // Per-source limits far above what one caller address sends: the
    // limiters run on every packet without capping the measurement.
    cfg.filter = "rate_limits.invite = { rate = 1000000, burst = 1000000 }\n\
                  rate_limits.other = { rate = 1000000, burst = 1000000 }\n"
        .into();
    let mut edge = EdgeProcess::start(&lab, &dir, &cfg).context("starting dce-edge")?;
    println!(
        "\n{}: dce-edge {} mode, {} worker(s) on cores {:?}, edge veth {} queue(s)",
        layout.name,
        if layout.mode == IoMode::AfXdp {
            "AF_XDP"
        } else {
            "socket"
        },
        layout.workers,
        cfg.cores.as_ref().unwrap(),
        queues
    );
    let target = edge.sip_addr();
    let lines = run_rates(plan, layout, &lab, &dir, &uas, Some(&edge), target, capture)?;
    let last = edge.stop().context("stopping dce-edge")?;
    println!(
        "{}: final snapshot: {} calls answered, setup latency samples {}",
        layout.name, last.calls.answered, last.setup_latency.count
    );
    drop(uas);
    Ok(lines)
}

/// Every rate of the plan, `plan.runs` times each, against `target`.
#[allow(clippy::too_many_arguments)]
fn run_rates(
    plan: &Plan,
    layout: Layout,
    lab: &Lab,
    dir: &Path,
    uas: &[Uas],
    edge: Option<&EdgeProcess>,
    target: SocketAddr,
    capture: bool,
) -> Result<Vec<Line>> {
    let pid = edge.and_then(EdgeProcess::pid).unwrap_or(0);
    // Warm-up: every path used once (neighbours resolved, caller verified).
    let warm = uac(lab, target, 100, 200, plan.socket_per_call);
    let w = warm.run(&lab.callers.ns, dir)?;
    if w.successful == 0 {
        bail!("the warm-up completed no call: {}", w.report());
    }
    let mut lines = Vec::new();
    for &rate in &plan.rates {
        for run in 0..plan.runs {
            let before = edge.and_then(|e| e.snapshot().ok());
            let capture_file = dir.join(format!("{}-{rate}-{run}.pcap", layout.name));
            let tcpdump = if capture {
                Some(start_capture(lab, &capture_file)?)
            } else {
                None
            };
            let u = uac(lab, target, rate, rate * plan.secs, plan.socket_per_call);
            let t0 = Instant::now();
            let e0 = process_ticks(pid);
            let w0 = cpu::thread_ticks(pid, "dce-worker");
            let s0: u64 = uas.iter().map(|u| process_ticks(u.pid())).sum();
            let running = u.spawn(&lab.callers.ns, dir)?;
            let uac_pid = running.pid();
            // SIPp's ticks are read just before it exits: poll them while
            // it runs.
            let mut c_last = 0;
            let waiter = std::thread::scope(|s| {
                let h = s.spawn(|| running.wait());
                while !h.is_finished() {
                    let t = process_ticks(uac_pid);
                    if t > 0 {
                        c_last = t;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                h.join().expect("the waiter thread")
            })?;
            let secs = t0.elapsed().as_secs_f64();
            let e1 = process_ticks(pid);
            let w1 = cpu::thread_ticks(pid, "dce-worker");
            let s1: u64 = uas.iter().map(|u| process_ticks(u.pid())).sum();
            let latency = match tcpdump {
                Some(mut t) => {
                    // Let the last messages reach the capture, then stop it.
                    std::thread::sleep(Duration::from_millis(300));
                    let _ = t.stop(Duration::from_secs(5));
                    Some(in_edge_latency(&capture_file)?)
                }
                None => None,
            };
            let after = edge.and_then(|e| e.snapshot().ok());
            let line = Line {
                layout: layout.name,
                offered: rate,
                outcome: waiter,
                secs,
                edge_cores: (e1 - e0) as f64 / cpu::ticks_per_second() / secs,
                worker_cores: (w1 - w0) as f64 / cpu::ticks_per_second() / secs,
                uac_cores: c_last as f64 / cpu::ticks_per_second() / secs,
                uas_cores: (s1 - s0) as f64 / cpu::ticks_per_second() / secs,
                drops: drop_deltas(before.as_ref(), after.as_ref()),
                worker_wait_secs: worker_wait(after.as_ref())
                    .saturating_sub(worker_wait(before.as_ref()))
                    as f64
                    / 1e6,
                latency,
            };
            print_line(&line);
            if plan.keep.is_none() {
                let _ = std::fs::remove_file(&capture_file);
            }
            lines.push(line);
            // Let retransmission timers of a broken run run out.
            std::thread::sleep(Duration::from_secs(2));
        }
    }
    Ok(lines)
}

fn uac(lab: &Lab, target: SocketAddr, rate: u32, calls: u32, socket_per_call: bool) -> Uac {
    let mut u = Uac::new(lab.callers.addr(), target, "4410001234", rate, calls);
    // One second of calls in progress at most, and enough time to end.
    u.limit = rate.max(200);
    u.timeout = Duration::from_secs(u64::from(calls / rate.max(1)) + 40);
    u.socket_per_call = socket_per_call;
    u
}

fn start_capture(lab: &Lab, file: &Path) -> Result<ChildGuard> {
    let mut cmd = lab.bridge().command("tcpdump");
    // A whole SIP message (the edge's Via and Record-Route push Call-ID
    // and CSeq down; a message cut inside them would not pair up).
    cmd.args([
        "-i",
        &lab.edge.port,
        "-n",
        "-s",
        "1600",
        "-B",
        "65536",
        "-U",
    ])
    .args(["--time-stamp-precision", "nano", "-w"])
    .arg(file)
    .args(["udp", "port", "5060"])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut child = ChildGuard::new(cmd.spawn().context("starting tcpdump")?);
    // tcpdump says "listening on" once the capture runs.
    let stderr = child
        .child_mut()
        .stderr
        .take()
        .context("tcpdump's stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stderr).lines();
        if let Some(Ok(l)) = lines.next() {
            let _ = tx.send(l);
        }
        for _ in lines {}
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(l) if l.contains("listening") => Ok(child),
        other => bail!("tcpdump did not start: {other:?}"),
    }
}

/// Microseconds the edge's workers waited for their cores so far.
fn worker_wait(s: Option<&Snapshot>) -> u64 {
    s.map_or(0, |s| s.workers.iter().map(|w| w.cpu_wait_us).sum())
}

/// Counters of the edge that moved between two snapshots while dropping
/// something: the workers' drops by reason and the rings' losses.
fn drop_deltas(before: Option<&Snapshot>, after: Option<&Snapshot>) -> BTreeMap<String, u64> {
    let sum = |s: Option<&Snapshot>| {
        let mut m: BTreeMap<String, u64> = BTreeMap::new();
        if let Some(s) = s {
            for w in &s.workers {
                for (k, v) in &w.dropped {
                    *m.entry(k.clone()).or_default() += v;
                }
                for (k, v) in &w.rings {
                    // Not events; the kernel's RX losses are among the
                    // drop reasons already.
                    if !matches!(k.as_str(), "tx_kicks" | "rx_ring_full" | "rx_dropped") {
                        *m.entry(format!("ring:{k}")).or_default() += v;
                    }
                }
            }
            if let Some(x) = &s.xdp {
                for (k, v) in &x.drops {
                    *m.entry(format!("xdp:{k}")).or_default() += v;
                }
            }
        }
        m
    };
    let (b, a) = (sum(before), sum(after));
    a.into_iter()
        .filter_map(|(k, v)| {
            let d = v.saturating_sub(b.get(&k).copied().unwrap_or(0));
            (d > 0).then_some((k, d))
        })
        .collect()
}

fn print_line(l: &Line) {
    println!(
        "  {:<8} offered {:>6} cps  started {:>7.0} cps  {:>6}/{:<6} ok  failed {:>6.3}%  retrans {:>6.3}%  \
         over {:>4.1} s: edge {:.2} cores (workers {:.2}, waited for their cores {:.2} s) {:>5.1} us CPU/call  SIPp uac {:.2} uas {:.2} cores {:>5.1} us/call  {}{}",
        l.layout,
        l.offered,
        l.achieved(),
        l.outcome.successful,
        l.outcome.calls,
        l.failed_pct(),
        l.retrans_pct(),
        l.secs,
        l.edge_cores,
        l.worker_cores,
        l.worker_wait_secs,
        l.us_per_call(),
        l.uac_cores,
        l.uas_cores,
        l.generator_us_per_call(),
        l.verdict(),
        if l.drops.is_empty() {
            String::new()
        } else {
            format!("  edge drops and ring events {:?}", l.drops)
        }
    );
    if let Some(lat) = &l.latency {
        for (kind, p) in lat {
            println!(
                "      in-edge {:<12} n {:>7}  p50 {:>7.1} us  p90 {:>7.1}  p99 {:>8.1}  max {:>8.1}",
                kind, p.n, p.p50, p.p90, p.p99, p.max
            );
        }
    }
}

fn summary(lines: &[Line]) {
    println!("\nsummary (ranges over runs; clean = <=0.1% failed, <1% retransmitted, started at >=97% of the offered rate)");
    let mut keys: Vec<(&str, u32)> = lines.iter().map(|l| (l.layout, l.offered)).collect();
    keys.dedup();
    for (layout, rate) in keys {
        let ls: Vec<&Line> = lines
            .iter()
            .filter(|l| l.layout == layout && l.offered == rate)
            .collect();
        let range = |f: &dyn Fn(&Line) -> f64| {
            let v: Vec<f64> = ls.iter().map(|l| f(l)).collect();
            (
                v.iter().copied().fold(f64::INFINITY, f64::min),
                v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            )
        };
        let clean = ls.iter().filter(|l| l.clean()).count();
        let (r0, r1) = range(&|l| l.retrans_pct());
        let (c0, c1) = range(&|l| l.edge_cores);
        let (u0, u1) = range(&|l| l.us_per_call());
        let (g0, g1) = range(&|l| l.uac_cores + l.uas_cores);
        let (gu0, gu1) = range(&|l| l.generator_us_per_call());
        let (s0, s1) = range(&|l| l.achieved());
        println!(
            "  {layout:<8} {rate:>6} cps: clean {clean}/{}  started {s0:.0}-{s1:.0} cps  retrans {r0:.2}-{r1:.2}%  edge {c0:.2}-{c1:.2} cores  \
             {u0:.1}-{u1:.1} us CPU/call  generator (SIPp) {g0:.2}-{g1:.2} cores, {gu0:.1}-{gu1:.1} us CPU/call",
            ls.len()
        );
    }
}

// ---------------------------------------------------------------------------
// In-edge latency from a capture on the edge's bridge port.

/// Percentiles of one message kind, in microseconds.
#[derive(Debug, Clone, Copy)]
struct Percentiles {
    n: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

/// A SIP message seen in the capture: its kind (the method, or the status
/// code and the CSeq method), its Call-ID and CSeq number.
fn sip_key(payload: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(payload).ok()?;
    let first = text.lines().next()?;
    let mut call_id = None;
    let mut cseq = None;
    for l in text.lines().skip(1) {
        if l.is_empty() {
            break;
        }
        // A line cut short by the capture's snap length has no colon.
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        if name == "call-id" || name == "i" {
            call_id = Some(value.trim().to_string());
        } else if name == "cseq" {
            cseq = Some(value.trim().to_string());
        }
        if call_id.is_some() && cseq.is_some() {
            break;
        }
    }
    let (call_id, cseq) = (call_id?, cseq?);
    let kind = if let Some(rest) = first.strip_prefix("SIP/2.0 ") {
        let code = rest.split_whitespace().next()?;
        let method = cseq.split_whitespace().nth(1)?;
        format!("{code}/{method}")
    } else {
        first.split_whitespace().next()?.to_string()
    };
    Some((kind.clone(), format!("{kind} {call_id} {cseq}")))
}

/// Pairs each message that entered the edge with the first copy that left
/// it (same kind, Call-ID and CSeq) and returns the time between, per kind.
/// Messages seen more than once going in (retransmissions) are left out.
fn in_edge_latency(pcap: &Path) -> Result<BTreeMap<String, Percentiles>> {
    let data = std::fs::read(pcap).with_context(|| format!("reading {}", pcap.display()))?;
    if data.len() < 24 {
        bail!("{} is not a capture", pcap.display());
    }
    let magic = u32::from_le_bytes(data[0..4].try_into().unwrap());
    let nanos = match magic {
        0xa1b2_3c4d => true,
        0xa1b2_c3d4 => false,
        m => bail!("unexpected pcap magic {m:#x}"),
    };
    let edge = EDGE_ADDR.octets();
    // key -> (kind, first time in, copies in, first time out)
    let mut seen: std::collections::HashMap<String, (String, u64, u32, Option<u64>)> =
        std::collections::HashMap::new();
    let mut off = 24;
    while off + 16 <= data.len() {
        let rd = |o: usize| u32::from_le_bytes(data[o..o + 4].try_into().unwrap()) as u64;
        let sec = rd(off);
        let frac = rd(off + 4);
        let caplen = rd(off + 8) as usize;
        let t = sec * 1_000_000_000 + if nanos { frac } else { frac * 1000 };
        let frame = &data[off + 16..(off + 16 + caplen).min(data.len())];
        off += 16 + caplen;
        // Ethernet, IPv4, UDP.
        if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let ihl = usize::from(frame[14] & 0x0f) * 4;
        let (src, dst) = (&frame[26..30], &frame[30..34]);
        let payload = &frame[(14 + ihl + 8).min(frame.len())..];
        let Some((kind, key)) = sip_key(payload) else {
            continue;
        };
        if dst == edge {
            let e = seen.entry(key).or_insert((kind, t, 0, None));
            e.2 += 1;
        } else if src == edge {
            if let Some(e) = seen.get_mut(&key) {
                if e.3.is_none() {
                    e.3 = Some(t);
                }
            }
        }
    }
    let mut by_kind: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (kind, t_in, copies, t_out) in seen.into_values() {
        if let (1, Some(t_out)) = (copies, t_out) {
            if t_out >= t_in {
                by_kind
                    .entry(kind)
                    .or_default()
                    .push((t_out - t_in) as f64 / 1000.0);
            }
        }
    }
    let all: Vec<f64> = by_kind.values().flatten().copied().collect();
    by_kind.insert("(all)".into(), all);
    Ok(by_kind
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, mut v)| {
            v.sort_by(|a, b| a.total_cmp(b));
            let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
            (
                k,
                Percentiles {
                    n: v.len(),
                    p50: q(0.5),
                    p90: q(0.9),
                    p99: q(0.99),
                    max: v[v.len() - 1],
                },
            )
        })
        .collect())
}
