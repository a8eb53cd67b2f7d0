//! dce-edge against Kamailio 5.6 configured as the same stateless edge proxy,
//! on this box, in one run: the same callers and servers (dce-loadgen), the
//! same route table (the lab's 10,000 prefixes; one CSV feeds both), the same
//! capacity search, and the generator's own ceiling with nothing between.
//!
//! The lab (`lab::topology`): 16 caller addresses in one namespace,
//! two upstream servers, the proxy under test in the edge namespace, all on
//! one bridge. For each configuration the bench starts fresh servers and the
//! proxy, warms up (200 cps for 2 s, so every caller address has completed a
//! call), runs a capacity search (rising rates until more than 0.1% of calls
//! fail or p99 setup passes 50 ms, then bisection), then offers 50% of the
//! rate it held (and dce-edge also 50% of Kamailio's) for the latency
//! figures, stops the proxy and offers the same rates to the servers
//! directly: the added setup latency is the difference. CPU is read from
//! /proc for the proxy (Kamailio: its main process and children), the
//! servers and the callers (this process) over every step.
//!
//! Configurations: "nothing between" (callers straight to one server),
//! Kamailio (config written by `lab::kamailio`), dce-edge in AF_XDP mode
//! (one worker on a one-queue veth; `DCE_BENCH_AFXDP_WORKERS=2`: two
//! workers on a two-queue veth, as many workers as socket mode) and in
//! socket mode (two workers,
//! the XDP filter passing in front of them). dce-edge runs the `lab` profile
//! with the demo's configuration (`lab::demo::write_config`) and
//! per-source limits raised so they do not cap the measurement; Kamailio's
//! pike gets the same treatment.
//!
//! Run as root, after building the binaries it starts:
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo bench -p dce-lab --bench edge_vs_kamailio
//! ```
//!
//! Knobs (environment): `DCE_BENCH_QUICK=1` (short steps, for a smoke run),
//! `DCE_BENCH_ONLY=direct,kamailio,afxdp,socket`, `DCE_BENCH_STEP_SECS` (5),
//! `DCE_BENCH_START_CPS` (1000), `DCE_BENCH_GROWTH` (1.5), `DCE_BENCH_REFINE`
//! (3), `DCE_BENCH_LATENCY_SECS` (10), `DCE_BENCH_SOURCES` (64 caller
//! sockets), `DCE_BENCH_CALLER_THREADS` (1), `DCE_BENCH_CALLER_CORES` and
//! `DCE_BENCH_SERVER_CORES` (e.g. `0`; default unpinned),
//! `DCE_BENCH_BUSY_POLLS` (the edge's `[dataplane.idle] busy_polls`),
//! `DCE_BENCH_AFXDP_WORKERS` (1 or 2: AF_XDP workers, one per queue of the
//! edge's veth),
//! `DCE_BENCH_LIMIT_SECS` (1200: the whole run stops there),
//! `DCE_BENCH_KEEP=DIR` (keep configurations and logs there),
//! `DCE_BENCH_LAB_PROFILE=1` (instead of the comparison, run
//! `dce-loadgen capacity --profile lab` against the AF_XDP edge: issue 7's
//! lab band), `DCE_BENCH_FLOOD_PPS` (with `DCE_BENCH_LAB_PROFILE`: also run
//! a spoofed INVITE flood at this rate from the callers' interface for the
//! whole search, `--with-flood`, which checks the profile's flood fields;
//! default none).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use lab::bin::{workspace_binary, TempDir};
use lab::cpu::ticks_per_second;
use lab::kamailio;
use lab::netns::ChildGuard;
use lab::ping::options_ping;
use lab::topology::{Lab, LabSpec, EDGE_ADDR};
use loadgen::capacity::{self, CapacityConfig, Step};
use loadgen::numbers::Numbers;
use loadgen::uac::{self, UacConfig};

/// Caller addresses in the callers' namespace.
const CALLER_ADDRS: usize = 16;
/// Prefixes in the route table (the demo's writer makes at least 10,000).
const PREFIXES: usize = 10_000;
/// Pause between steps, so late answers of one step do not load the next.
const SETTLE: Duration = Duration::from_secs(1);
/// How long a request waits for its final answer: a call slower than this
/// has long failed the 50 ms criterion, and failing steps drain sooner than
/// with RFC 3261's 32 s.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(4);
/// The per-source limits the proxies get, per second: far above what 16
/// caller addresses send, so the limiters run on every packet without
/// capping the measurement.
const PER_SOURCE_LIMIT: u32 = 1_000_000;
/// Kamailio's worker processes: one per core of the 2-core box, as
/// dce-edge's socket mode runs two workers.
const KAMAILIO_CHILDREN: u32 = 2;

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn env_cores(name: &str) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// The configurations compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    Direct,
    Kamailio,
    EdgeXdp,
    EdgeSocket,
}

impl Subject {
    const ALL: [Subject; 4] = [
        Subject::Direct,
        Subject::Kamailio,
        Subject::EdgeXdp,
        Subject::EdgeSocket,
    ];

    fn name(self) -> &'static str {
        match self {
            Subject::Direct => "nothing between",
            Subject::Kamailio => "kamailio 5.6",
            Subject::EdgeXdp => "dce-edge af_xdp",
            Subject::EdgeSocket => "dce-edge socket",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Subject::Direct => "direct",
            Subject::Kamailio => "kamailio",
            Subject::EdgeXdp => "afxdp",
            Subject::EdgeSocket => "socket",
        }
    }
}

/// How the run is set up.
#[derive(Debug, Clone)]
struct Plan {
    quick: bool,
    step: Duration,
    start_cps: f64,
    growth: f64,
    refine: u32,
    latency_step: Duration,
    sources: usize,
    caller_threads: usize,
    caller_cores: Vec<usize>,
    server_cores: Vec<usize>,
    busy_polls: Option<u32>,
    /// AF_XDP workers, one per queue of the edge's veth (1 or 2).
    afxdp_workers: u32,
    only: Vec<Subject>,
    edge_toml: Option<String>,
    limit: Duration,
    keep: Option<PathBuf>,
}

impl Plan {
    fn from_env() -> Plan {
        let quick = std::env::var("DCE_BENCH_QUICK").is_ok_and(|v| v != "0");
        let only: Vec<Subject> = match std::env::var("DCE_BENCH_ONLY") {
            Ok(v) => Subject::ALL
                .into_iter()
                .filter(|s| v.split(',').any(|k| k.trim() == s.key()))
                .collect(),
            Err(_) => Subject::ALL.to_vec(),
        };
        Plan {
            quick,
            step: Duration::from_secs_f64(env_f64(
                "DCE_BENCH_STEP_SECS",
                if quick { 2.0 } else { 5.0 },
            )),
            start_cps: env_f64("DCE_BENCH_START_CPS", if quick { 2000.0 } else { 1000.0 }),
            growth: env_f64("DCE_BENCH_GROWTH", if quick { 2.0 } else { 1.5 }),
            refine: env_f64("DCE_BENCH_REFINE", if quick { 1.0 } else { 3.0 }) as u32,
            latency_step: Duration::from_secs_f64(env_f64(
                "DCE_BENCH_LATENCY_SECS",
                if quick { 3.0 } else { 10.0 },
            )),
            sources: env_f64("DCE_BENCH_SOURCES", 64.0) as usize,
            caller_threads: env_f64("DCE_BENCH_CALLER_THREADS", 1.0) as usize,
            caller_cores: env_cores("DCE_BENCH_CALLER_CORES"),
            server_cores: env_cores("DCE_BENCH_SERVER_CORES"),
            busy_polls: std::env::var("DCE_BENCH_BUSY_POLLS")
                .ok()
                .and_then(|v| v.parse().ok()),
            afxdp_workers: (env_f64("DCE_BENCH_AFXDP_WORKERS", 1.0) as u32).clamp(1, 2),
            only,
            edge_toml: std::env::var("DCE_BENCH_EDGE_TOML").ok(),
            limit: Duration::from_secs_f64(env_f64("DCE_BENCH_LIMIT_SECS", 1200.0)),
            keep: std::env::var_os("DCE_BENCH_KEEP").map(PathBuf::from),
        }
    }
}

fn main() {
    if !lab::privilege::is_root() {
        eprintln!("edge_vs_kamailio: needs root (namespaces, XDP); skipping");
        return;
    }
    let lab_profile = std::env::var("DCE_BENCH_LAB_PROFILE").is_ok_and(|v| v != "0");
    if !lab_profile && !lab::privilege::have_program("kamailio") {
        eprintln!("edge_vs_kamailio: needs kamailio (apt-get install kamailio); skipping");
        return;
    }
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("edge_vs_kamailio: needs 2 cores; skipping");
        return;
    }
    let plan = Plan::from_env();
    let stop = loadgen::cli::stop_flag();
    // The whole run is bounded: at the limit every search ends after its
    // current step and the remaining configurations are skipped.
    {
        let stop = Arc::clone(&stop);
        let limit = plan.limit;
        std::thread::spawn(move || {
            std::thread::sleep(limit);
            if !stop.swap(true, Ordering::Relaxed) {
                eprintln!("edge_vs_kamailio: time limit reached; finishing the current step");
            }
        });
    }
    let result = if lab_profile {
        lab_band(&plan, &stop)
    } else {
        compare(&plan, &stop)
    };
    if let Err(e) = result {
        eprintln!("edge_vs_kamailio: {e:#}");
        std::process::exit(1);
    }
}

/// Everything a run shares: the lab, its files, the binaries.
struct Ctx<'a> {
    plan: &'a Plan,
    lab: Lab,
    dir: PathBuf,
    numbers: PathBuf,
    loadgen: PathBuf,
    edge_bin: PathBuf,
}

impl Ctx<'_> {
    fn edge_target(&self) -> SocketAddr {
        (EDGE_ADDR, 5060).into()
    }

    fn direct_target(&self) -> SocketAddr {
        (self.lab.upstreams[0].addr(), 5060).into()
    }

    fn callers(&self, target: SocketAddr) -> Result<UacConfig> {
        let mut u = UacConfig::new(target);
        u.numbers = Numbers::file(&self.numbers).map_err(|e| anyhow!("{e}"))?;
        u.local_addrs = self
            .lab
            .callers
            .addrs
            .iter()
            .map(|&a| IpAddr::V4(a))
            .collect();
        u.sources = self.plan.sources;
        u.threads = self.plan.caller_threads;
        u.cores = self.plan.caller_cores.clone();
        u.timers.timeout_ns = TRANSACTION_TIMEOUT.as_nanos() as u64;
        u.stop_drain = Duration::from_secs(5);
        Ok(u)
    }

    fn capacity_config(&self, target: SocketAddr) -> Result<CapacityConfig> {
        let mut c = CapacityConfig::new(self.callers(target)?);
        c.start_cps = self.plan.start_cps;
        c.growth = self.plan.growth;
        c.step_duration = self.plan.step;
        c.refine_steps = self.plan.refine;
        // The bench sleeps between steps itself, outside the CPU windows.
        c.settle = Duration::ZERO;
        Ok(c)
    }

    fn log(&self, name: &str) -> Result<std::fs::File> {
        std::fs::File::create(self.dir.join(name)).with_context(|| format!("creating {name}"))
    }
}

fn build_ctx<'a>(plan: &'a Plan, tmp: &TempDir) -> Result<Ctx<'a>> {
    let dir = match &plan.keep {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => tmp.path().to_path_buf(),
    };
    let lab = Lab::build(&LabSpec {
        caller_addrs: CALLER_ADDRS,
        upstreams: 2,
        attacker: false,
        edge_queues: plan.afxdp_workers,
    })
    .context("building the lab")?;
    lab::demo::write_routes(&dir, &lab, PREFIXES)?;
    let numbers = dir.join("numbers.txt");
    std::fs::write(&numbers, dialed_numbers(PREFIXES))?;
    Ok(Ctx {
        plan,
        lab,
        dir,
        numbers,
        loadgen: workspace_binary("dce-loadgen"),
        edge_bin: workspace_binary("dce-edge"),
    })
}

/// One dialed number per prefix 44xxxx of the route table, with six more
/// digits, in a fixed shuffled order: consecutive calls walk different
/// branches of the tables and both forward groups.
fn dialed_numbers(prefixes: usize) -> String {
    let mut rng = fastrand::Rng::with_seed(5060);
    let mut list: Vec<String> = (0..prefixes.min(10_000))
        .map(|i| format!("44{i:04}{:06}", rng.u32(0..1_000_000)))
        .collect();
    rng.shuffle(&mut list);
    let mut text = list.join("\n");
    text.push('\n');
    text
}

// ---------------------------------------------------------------------------
// CPU accounting from /proc.

#[derive(Debug, Clone, Default)]
struct Cpu {
    /// These processes (with all their threads).
    pids: Vec<u32>,
    /// And the children of these (Kamailio's workers are children of its
    /// main process).
    trees: Vec<u32>,
}

impl Cpu {
    fn ticks(&self) -> u64 {
        lab::cpu::ticks(&self.pids, &self.trees)
    }
}

#[derive(Debug, Clone, Copy)]
struct Mark {
    at: Instant,
    proxy: u64,
    servers: u64,
    callers: u64,
}

impl Mark {
    fn take(proxy: &Cpu, servers: &Cpu) -> Mark {
        Mark {
            at: Instant::now(),
            proxy: proxy.ticks(),
            servers: servers.ticks(),
            callers: lab::cpu::ticks(&[std::process::id()], &[]),
        }
    }
}

// ---------------------------------------------------------------------------
// Steps and their figures.

/// One offered rate and what it gave, with the CPU each side used.
#[derive(Debug, Clone)]
struct Line {
    offered: f64,
    achieved: f64,
    started: u64,
    completed: u64,
    failed_ratio: f64,
    p50_us: u64,
    p99_us: u64,
    held: bool,
    reason: Option<String>,
    wall_s: f64,
    proxy_cpu_s: f64,
    servers_cpu_s: f64,
    callers_cpu_s: f64,
    generator_peak_busy: f64,
    warnings: Vec<String>,
}

impl Line {
    fn new(s: &Step, before: &Mark, after: &Mark) -> Line {
        let hz = ticks_per_second();
        Line {
            offered: s.offered_cps,
            achieved: s.achieved_cps,
            started: s.started,
            completed: s.completed,
            failed_ratio: s.failed_ratio,
            p50_us: s.latency.p50_us,
            p99_us: s.latency.p99_us,
            held: s.held,
            reason: s.reason.clone(),
            wall_s: after.at.duration_since(before.at).as_secs_f64(),
            proxy_cpu_s: after.proxy.saturating_sub(before.proxy) as f64 / hz,
            servers_cpu_s: after.servers.saturating_sub(before.servers) as f64 / hz,
            callers_cpu_s: after.callers.saturating_sub(before.callers) as f64 / hz,
            generator_peak_busy: s.generator_peak_busy,
            warnings: s.warnings.clone(),
        }
    }

    fn proxy_cores(&self) -> f64 {
        self.proxy_cpu_s / self.wall_s.max(1e-9)
    }

    fn generator_cores(&self) -> f64 {
        (self.servers_cpu_s + self.callers_cpu_s) / self.wall_s.max(1e-9)
    }

    fn calls_per_proxy_cpu_s(&self) -> Option<f64> {
        (self.proxy_cpu_s > 0.0).then(|| self.completed as f64 / self.proxy_cpu_s)
    }

    fn print(&self, who: &str, what: &str) {
        println!(
            "  {who:<16} {what:<8} {:>8.0} cps (achieved {:>8.0}): started {:>7} completed {:>7} failed {:>7.3}%  setup p50 {:>7.2} ms p99 {:>7.2} ms  cores: proxy {:>4.2} generator {:>4.2} (peak thread {:>3.0}%)  {}",
            self.offered,
            self.achieved,
            self.started,
            self.completed,
            self.failed_ratio * 100.0,
            self.p50_us as f64 / 1000.0,
            self.p99_us as f64 / 1000.0,
            self.proxy_cores(),
            self.generator_cores(),
            self.generator_peak_busy * 100.0,
            match &self.reason {
                None => "held".to_string(),
                Some(r) => format!("FAILED: {r}"),
            }
        );
        for w in &self.warnings {
            println!("  {:<16}          warning: {w}", "");
        }
    }
}

/// Latency at one rate, through the proxy and direct.
#[derive(Debug, Clone)]
struct LatencyPair {
    rate: f64,
    basis: String,
    through: Line,
    direct: Option<Line>,
}

/// What one configuration gave.
#[derive(Debug, Clone)]
struct Outcome {
    subject: Subject,
    steps: Vec<Line>,
    best: Option<Line>,
    first_failed: Option<f64>,
    generator_limited: bool,
    latency: Vec<LatencyPair>,
    notes: Vec<String>,
    error: Option<String>,
}

impl Outcome {
    fn new(subject: Subject) -> Outcome {
        Outcome {
            subject,
            steps: Vec::new(),
            best: None,
            first_failed: None,
            generator_limited: false,
            latency: Vec::new(),
            notes: Vec::new(),
            error: None,
        }
    }

    fn held_cps(&self) -> Option<f64> {
        self.best.as_ref().map(|b| b.offered)
    }
}

/// The capacity search from the callers' namespace, with the CPU of every
/// step.
fn search(
    ctx: &Ctx,
    subject: Subject,
    target: SocketAddr,
    proxy: &Cpu,
    servers: &Cpu,
    stop: &AtomicBool,
) -> Result<(Vec<Line>, capacity::CapacityReport)> {
    let cfg = ctx.capacity_config(target)?;
    let mut lines = Vec::new();
    let report = ctx.lab.callers.ns.enter(|| {
        let mut mark = Mark::take(proxy, servers);
        capacity::search(&cfg, stop, |s| {
            let now = Mark::take(proxy, servers);
            let line = Line::new(s, &mark, &now);
            line.print(subject.name(), "search");
            lines.push(line);
            std::thread::sleep(SETTLE);
            mark = Mark::take(proxy, servers);
        })
    })??;
    Ok((lines, report))
}

/// One fixed rate for the latency figures.
fn fixed_rate(
    ctx: &Ctx,
    who: &str,
    target: SocketAddr,
    rate: f64,
    proxy: &Cpu,
    servers: &Cpu,
    stop: &AtomicBool,
) -> Result<Line> {
    let mut cfg = ctx.capacity_config(target)?;
    cfg.step_duration = ctx.plan.latency_step;
    let line = ctx.lab.callers.ns.enter(|| -> Result<Line> {
        let before = Mark::take(proxy, servers);
        let s = capacity::run_step(&cfg, rate, stop)?;
        let after = Mark::take(proxy, servers);
        Ok(Line::new(&s, &before, &after))
    })??;
    line.print(who, "latency");
    std::thread::sleep(SETTLE);
    Ok(line)
}

/// A short run at a low rate from every caller address, so that the
/// callers are known (verified) before anything is measured, as a real
/// edge's peers are.
fn warm_up(ctx: &Ctx, target: SocketAddr, stop: &AtomicBool) -> Result<()> {
    let mut cfg = ctx.callers(target)?;
    cfg.cps = 200.0;
    cfg.duration = Duration::from_secs(2);
    cfg.max_calls = u64::MAX;
    let r = ctx.lab.callers.ns.enter(|| uac::run(&cfg, stop))??;
    if r.outcomes.completed < r.started {
        println!(
            "  warm-up: {} of {} calls completed (the rest were not answered in time)",
            r.outcomes.completed, r.started
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Processes: servers, dce-edge, Kamailio.

struct Servers {
    guards: Vec<ChildGuard>,
    cpu: Cpu,
}

fn start_servers(ctx: &Ctx, tag: &str) -> Result<Servers> {
    let mut guards = Vec::new();
    let mut pids = Vec::new();
    for (i, up) in ctx.lab.upstreams.iter().enumerate() {
        let log = ctx.log(&format!("{tag}-upstream{i}.log"))?;
        let mut cmd = up.ns.command(ctx.loadgen.to_str().context("a UTF-8 path")?);
        cmd.args(["uas", "--listen", &format!("{}:5060", up.addr())])
            .args(["--duration", "3600", "--quiet"])
            .args(["--timeout-ms", &TRANSACTION_TIMEOUT.as_millis().to_string()]);
        if !ctx.plan.server_cores.is_empty() {
            let cores: Vec<String> = ctx
                .plan
                .server_cores
                .iter()
                .map(|c| c.to_string())
                .collect();
            cmd.args(["--cores", &cores.join(",")]);
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd.spawn().context("starting dce-loadgen uas")?;
        pids.push(child.id());
        guards.push(ChildGuard::new(child));
    }
    let caller = ctx.lab.callers.addr();
    for up in &ctx.lab.upstreams {
        let to: SocketAddr = (up.addr(), 5060).into();
        let answered = ctx
            .lab
            .callers
            .ns
            .enter(move || options_ping((caller, 0).into(), to, Duration::from_secs(20)))??;
        if answered != Some(200) {
            bail!("the server at {to} did not answer OPTIONS");
        }
    }
    Ok(Servers {
        guards,
        cpu: Cpu {
            pids,
            trees: Vec::new(),
        },
    })
}

impl Servers {
    fn stop(mut self) {
        for g in &mut self.guards {
            let _ = g.stop(Duration::from_secs(5));
        }
    }
}

/// A proxy process under test.
struct Proxy {
    guard: ChildGuard,
    cpu: Cpu,
    log: PathBuf,
    /// dce-edge's final snapshot, when it is one.
    final_snapshot: Option<PathBuf>,
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Waits until the proxy answers an OPTIONS from the callers.
fn wait_ready(ctx: &Ctx, proxy: &mut Proxy, what: &str) -> Result<()> {
    let caller = ctx.lab.callers.addr();
    let to = ctx.edge_target();
    let answered = ctx
        .lab
        .callers
        .ns
        .enter(move || options_ping((caller, 0).into(), to, Duration::from_secs(60)))??;
    if answered != Some(200) {
        let _ = proxy.guard.stop(Duration::from_secs(3));
        bail!(
            "{what} did not answer OPTIONS within 60 s; its log:\n{}",
            log_tail(&proxy.log)
        );
    }
    Ok(())
}

/// The overrides the bench puts over the demo's edge configuration.
fn edge_overrides(plan: &Plan, mode: &str) -> Result<toml::Table> {
    let (workers, cores) = match (mode, plan.afxdp_workers) {
        ("socket", _) | (_, 2) => (2, "[0, 1]"),
        _ => (1, "[1]"),
    };
    let idle = plan.busy_polls.map_or(String::new(), |b| {
        format!("[dataplane.idle]\nbusy_polls = {b}\n")
    });
    let text = format!(
        "[edge]\nmode = \"{mode}\"\nworkers = {workers}\ncores = {cores}\n\n\
         [filter]\nrate_limits.invite = {{ rate = {PER_SOURCE_LIMIT}, burst = {PER_SOURCE_LIMIT} }}\n\
         rate_limits.register = {{ rate = {PER_SOURCE_LIMIT}, burst = {PER_SOURCE_LIMIT} }}\n\
         rate_limits.other = {{ rate = {PER_SOURCE_LIMIT}, burst = {PER_SOURCE_LIMIT} }}\n\n{idle}"
    );
    let mut table = text
        .parse::<toml::Table>()
        .context("the bench's edge overrides")?;
    // DCE_BENCH_EDGE_TOML: more overrides, for trying settings by hand
    // (`[dataplane]` ring sizes, `[proxy.answers]`, ...).
    if let Some(extra) = &plan.edge_toml {
        let extra: toml::Table = extra.parse().context("DCE_BENCH_EDGE_TOML")?;
        lab::demo::merge_tables(&mut table, &extra);
    }
    Ok(table)
}

fn start_edge(ctx: &Ctx, mode: &str) -> Result<Proxy> {
    let config = lab::demo::write_config(&ctx.dir, &ctx.lab, &edge_overrides(ctx.plan, mode)?)?;
    let log = ctx.dir.join(format!("edge-{mode}.log"));
    let final_snapshot = ctx.dir.join(format!("edge-{mode}-final.json"));
    let _ = std::fs::remove_file(&final_snapshot);
    let out = std::fs::File::create(&log)?;
    let mut cmd = ctx
        .lab
        .edge
        .ns
        .command(ctx.edge_bin.to_str().context("a UTF-8 path")?);
    cmd.arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--final-snapshot")
        .arg(&final_snapshot)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    let child = cmd.spawn().context("starting dce-edge")?;
    let pid = child.id();
    let mut proxy = Proxy {
        guard: ChildGuard::new(child),
        cpu: Cpu {
            pids: vec![pid],
            trees: Vec::new(),
        },
        log,
        final_snapshot: Some(final_snapshot),
    };
    wait_ready(ctx, &mut proxy, "dce-edge")?;
    Ok(proxy)
}

fn edge_snapshot(ctx: &Ctx) -> Option<telemetry::stats::Snapshot> {
    ctx.lab
        .edge
        .ns
        .enter(|| {
            telemetry::stats::client::fetch_snapshot(
                "http://127.0.0.1:9560",
                Duration::from_secs(2),
            )
            .ok()
        })
        .ok()
        .flatten()
}

/// Waits (bounded) until the XDP filter counts every caller address as
/// verified, so the measurement never meets the unverified budgets.
fn wait_verified(ctx: &Ctx) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = 0;
    while Instant::now() < deadline {
        seen = edge_snapshot(ctx).map_or(0, |s| s.verified_sources);
        if seen >= CALLER_ADDRS as u64 {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    println!("  note: {seen} of {CALLER_ADDRS} caller addresses verified after the warm-up");
}

fn start_kamailio(ctx: &Ctx) -> Result<Proxy> {
    let (groups, prefixes) = (ctx.dir.join("groups.toml"), ctx.dir.join("prefixes.csv"));
    let files = kamailio::write(
        &ctx.dir.join("kamailio"),
        &kamailio::Spec {
            about: "Kamailio 5.6 as a stateless SIP edge proxy doing dce-edge's job, written\n\
                    by the dce-lab benchmark edge_vs_kamailio: scanner drop, pike, sanity\n\
                    checks, OPTIONS answered locally, prefix routing (mtree) over the same\n\
                    route files as dce-edge, stateless forwarding, Record-Route.",
            children: KAMAILIO_CHILDREN,
            listen: vec![(kamailio::Transport::Udp, ctx.edge_target())],
            tls: None,
            scanners: true,
            pike_density: Some(2 * PER_SOURCE_LIMIT),
            sanity: true,
            routes: kamailio::Routes::Files {
                groups: &groups,
                prefixes: &prefixes,
            },
        },
    )?;
    let log = ctx.dir.join("kamailio.log");
    let mut cmd = files.command(&ctx.lab.edge.ns, &log)?;
    let child = cmd.spawn().context("starting kamailio")?;
    let pid = child.id();
    let mut proxy = Proxy {
        guard: ChildGuard::new(child),
        cpu: Cpu {
            pids: Vec::new(),
            trees: vec![pid],
        },
        log,
        final_snapshot: None,
    };
    wait_ready(ctx, &mut proxy, "kamailio")?;
    println!(
        "  kamailio up: {} prefixes in its mtree, {} children (config {})",
        files.prefixes,
        KAMAILIO_CHILDREN,
        files.cfg.display()
    );
    Ok(proxy)
}

/// What the edge's counters say, in a few lines: every drop reason that
/// moved, ring and neighbour troubles, the modes.
fn edge_notes(s: &telemetry::stats::Snapshot) -> Vec<String> {
    let mut notes = vec![format!(
        "modes: XDP {}, dataplane {}; {} prefixes; {} verified sources",
        s.modes.attach, s.modes.dataplane, s.routes.prefixes, s.verified_sources
    )];
    if let Some(x) = &s.xdp {
        let drops: Vec<String> = x
            .drops
            .iter()
            .filter(|(_, &n)| n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        notes.push(format!(
            "XDP: redirected {}, passed {}, dropped: {}",
            x.redirected,
            x.passed,
            if drops.is_empty() {
                "nothing".into()
            } else {
                drops.join(", ")
            }
        ));
    }
    for w in &s.workers {
        let moved = |m: &std::collections::BTreeMap<String, u64>| -> String {
            let v: Vec<String> = m
                .iter()
                .filter(|(_, &n)| n > 0)
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            if v.is_empty() {
                "none".into()
            } else {
                v.join(", ")
            }
        };
        notes.push(format!(
            "worker {} (core {:?}): received {}, transmitted {}, forwarded {} requests / {} responses; dropped: {}; rings: {}",
            w.id,
            w.core,
            w.received,
            w.transmitted,
            w.forwarded_requests,
            w.forwarded_responses,
            moved(&w.dropped),
            moved(&w.rings)
        ));
    }
    notes
}

// ---------------------------------------------------------------------------
// One configuration, start to end.

fn run_subject(
    ctx: &Ctx,
    subject: Subject,
    common_rate: Option<f64>,
    stop: &AtomicBool,
) -> Outcome {
    let mut out = Outcome::new(subject);
    if let Err(e) = run_subject_inner(ctx, subject, common_rate, stop, &mut out) {
        println!("  {}: {e:#}", subject.name());
        out.error = Some(format!("{e:#}"));
    }
    out
}

fn run_subject_inner(
    ctx: &Ctx,
    subject: Subject,
    common_rate: Option<f64>,
    stop: &AtomicBool,
    out: &mut Outcome,
) -> Result<()> {
    println!("\n{}:", subject.name());
    let servers = start_servers(ctx, subject.key())?;
    let mut proxy = match subject {
        Subject::Direct => None,
        Subject::Kamailio => Some(start_kamailio(ctx)?),
        Subject::EdgeXdp => Some(start_edge(ctx, "afxdp")?),
        Subject::EdgeSocket => Some(start_edge(ctx, "socket")?),
    };
    let target = if proxy.is_some() {
        ctx.edge_target()
    } else {
        ctx.direct_target()
    };
    let proxy_cpu = proxy.as_ref().map(|p| p.cpu.clone()).unwrap_or_default();
    warm_up(ctx, target, stop)?;
    if subject == Subject::EdgeXdp {
        wait_verified(ctx);
    }
    let (steps, report) = search(ctx, subject, target, &proxy_cpu, &servers.cpu, stop)?;
    out.best = report
        .highest_held_cps
        .and_then(|cps| steps.iter().rev().find(|l| l.held && l.offered == cps))
        .cloned();
    out.first_failed = report.lowest_failed_cps;
    out.generator_limited = report.generator_limited;
    out.steps = steps;

    // Below saturation: half of what this configuration held, and for
    // dce-edge also half of Kamailio's, so both are seen at one load.
    let mut rates: Vec<(f64, String)> = Vec::new();
    if proxy.is_some() {
        if let Some(h) = out.held_cps() {
            rates.push(((h / 2.0).round(), "50% of its own capacity".into()));
        }
        if let (Some(c), Subject::EdgeXdp | Subject::EdgeSocket) = (common_rate, subject) {
            if out.held_cps().is_some_and(|h| c < h) {
                rates.push((c, "50% of Kamailio's capacity".into()));
            }
        }
    }
    for (rate, basis) in &rates {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let through = fixed_rate(
            ctx,
            subject.name(),
            target,
            *rate,
            &proxy_cpu,
            &servers.cpu,
            stop,
        )?;
        out.latency.push(LatencyPair {
            rate: *rate,
            basis: basis.clone(),
            through,
            direct: None,
        });
    }
    if matches!(subject, Subject::EdgeXdp | Subject::EdgeSocket) {
        if let Some(s) = edge_snapshot(ctx) {
            out.notes = edge_notes(&s);
        }
    }
    if let Some(p) = proxy.as_mut() {
        let _ = p.guard.stop(Duration::from_secs(10));
        if let Some(path) = &p.final_snapshot {
            if let Some(s) = std::fs::read_to_string(path)
                .ok()
                .and_then(|t| serde_json::from_str::<telemetry::stats::Snapshot>(&t).ok())
            {
                out.notes = edge_notes(&s);
            }
        }
    }
    drop(proxy);
    // The same rates with nothing between, on the same servers.
    for pair in &mut out.latency {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        pair.direct = Some(fixed_rate(
            ctx,
            "  (direct)",
            ctx.direct_target(),
            pair.rate,
            &Cpu::default(),
            &servers.cpu,
            stop,
        )?);
    }
    servers.stop();
    for n in &out.notes {
        println!("  {n}");
    }
    Ok(())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn utc_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%MZ"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn compare(plan: &Plan, stop: &AtomicBool) -> Result<()> {
    let started = Instant::now();
    let load_before = loadavg();
    let date = utc_now();
    println!(
        "edge_vs_kamailio {date}: steps of {:.0} s from {:.0} cps (x{} up, {} refinements), pass = failed <= 0.1% and p99 setup <= 50 ms; latency runs of {:.0} s; load average before: {load_before}{}",
        plan.step.as_secs_f64(),
        plan.start_cps,
        plan.growth,
        plan.refine,
        plan.latency_step.as_secs_f64(),
        if plan.quick { " (QUICK)" } else { "" }
    );
    let tmp = TempDir::new("evk")?;
    let ctx = build_ctx(plan, &tmp)?;
    println!(
        "lab: {CALLER_ADDRS} caller addresses, {} caller sockets, {} caller thread(s) (cores {:?}), 2 servers (cores {:?}); {PREFIXES} prefixes; edge veth with {} queue(s), {} AF_XDP worker(s); files in {}",
        plan.sources,
        plan.caller_threads,
        plan.caller_cores,
        plan.server_cores,
        plan.afxdp_workers,
        plan.afxdp_workers,
        ctx.dir.display()
    );
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut common_rate = None;
    for subject in Subject::ALL {
        if !plan.only.contains(&subject) || stop.load(Ordering::Relaxed) {
            continue;
        }
        let o = run_subject(&ctx, subject, common_rate, stop);
        if subject == Subject::Kamailio {
            common_rate = o.held_cps().map(|h| (h / 2.0).round());
        }
        outcomes.push(o);
    }
    let load_after = loadavg();
    drop(ctx);
    report(
        &outcomes,
        &date,
        &load_before,
        &load_after,
        started.elapsed(),
    );
    Ok(())
}

fn report(outcomes: &[Outcome], date: &str, before: &str, after: &str, took: Duration) {
    let kam = outcomes
        .iter()
        .find(|o| o.subject == Subject::Kamailio)
        .and_then(Outcome::held_cps);
    println!();
    println!(
        "edge_vs_kamailio results ({date}; load average before {before}, after {after}; {:.0} s)",
        took.as_secs_f64()
    );
    println!(
        "  {:<16} {:>9} {:>11} {:>9} {:>10} {:>10} {:>11} {:>11} {:>15}",
        "configuration",
        "held cps",
        "x kamailio",
        "failed%",
        "p50 ms",
        "p99 ms",
        "proxy cores",
        "gen. cores",
        "calls/proxy-cpu-s"
    );
    for o in outcomes {
        match &o.best {
            Some(b) => println!(
                "  {:<16} {:>9.0} {:>11} {:>9.3} {:>10.2} {:>10.2} {:>11} {:>11.2} {:>15}{}",
                o.subject.name(),
                b.offered,
                kam.map_or("-".into(), |k| format!("{:.2}x", b.offered / k)),
                b.failed_ratio * 100.0,
                ms(b.p50_us),
                ms(b.p99_us),
                if o.subject == Subject::Direct {
                    "-".into()
                } else {
                    format!("{:.2}", b.proxy_cores())
                },
                b.generator_cores(),
                b.calls_per_proxy_cpu_s()
                    .filter(|_| o.subject != Subject::Direct)
                    .map_or("-".into(), |c| format!("{c:.0}")),
                match (o.first_failed, o.generator_limited) {
                    (Some(f), true) => format!("  (failed at {f:.0}; generator saturated)"),
                    (Some(f), false) => format!("  (failed at {f:.0})"),
                    (None, _) => "  (never failed: raise the maximum)".into(),
                }
            ),
            None => println!(
                "  {:<16} {}",
                o.subject.name(),
                o.error.as_deref().unwrap_or("no rate held")
            ),
        }
    }
    println!();
    println!(
        "  added setup latency below saturation (through the proxy minus direct, same rate, same servers)"
    );
    println!(
        "  {:<16} {:>9} {:>23} {:>23} {:>23}  basis",
        "configuration",
        "rate cps",
        "through p50 / p99 ms",
        "direct p50 / p99 ms",
        "added p50 / p99 ms"
    );
    for o in outcomes {
        for p in &o.latency {
            let t = &p.through;
            let (direct, added) = match &p.direct {
                Some(d) => (
                    format!("{:>9.3} / {:>9.3}", ms(d.p50_us), ms(d.p99_us)),
                    format!(
                        "{:>9.3} / {:>9.3}",
                        ms(t.p50_us) - ms(d.p50_us),
                        ms(t.p99_us) - ms(d.p99_us)
                    ),
                ),
                None => ("-".into(), "-".into()),
            };
            println!(
                "  {:<16} {:>9.0} {:>23} {:>23} {:>23}  {}{}",
                o.subject.name(),
                p.rate,
                format!("{:>9.3} / {:>9.3}", ms(t.p50_us), ms(t.p99_us)),
                direct,
                added,
                p.basis,
                if t.held { "" } else { " (the run FAILED)" }
            );
        }
    }
    let best_edge = outcomes
        .iter()
        .filter(|o| matches!(o.subject, Subject::EdgeXdp | Subject::EdgeSocket))
        .filter_map(|o| o.held_cps().map(|h| (o.subject, h)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    if let (Some(k), Some((s, e))) = (kam, best_edge) {
        println!();
        println!(
            "  {} / kamailio: {:.2}x the calls per second (target: 3x)",
            s.name(),
            e / k
        );
    }
}

// ---------------------------------------------------------------------------
// Issue 7: the lab band, with the load generator's own command.

fn lab_band(plan: &Plan, stop: &AtomicBool) -> Result<()> {
    let date = utc_now();
    let load_before = loadavg();
    let tmp = TempDir::new("evkl")?;
    let ctx = build_ctx(plan, &tmp)?;
    let servers = start_servers(&ctx, "band")?;
    let _proxy = start_edge(&ctx, "afxdp")?;
    warm_up(&ctx, ctx.edge_target(), stop)?;
    wait_verified(&ctx);
    let json = ctx.dir.join("capacity-lab.json");
    let svg = ctx.dir.join("capacity-lab.svg");
    let mut args: Vec<String> = vec![
        "capacity".into(),
        "--target".into(),
        ctx.edge_target().to_string(),
        "--profile".into(),
        "lab".into(),
        "--numbers-file".into(),
        ctx.numbers.display().to_string(),
        "--sources".into(),
        plan.sources.to_string(),
        "--timeout-ms".into(),
        TRANSACTION_TIMEOUT.as_millis().to_string(),
        "--quiet".into(),
    ];
    for a in &ctx.lab.callers.addrs {
        args.push("--local-addr".into());
        args.push(a.to_string());
    }
    if plan.quick {
        // A smoke run: the quick plan's short steps instead of the
        // command's 10 s ones.
        args.extend([
            "--step-duration".into(),
            plan.step.as_secs_f64().to_string(),
            "--start-cps".into(),
            plan.start_cps.to_string(),
            "--growth".into(),
            plan.growth.to_string(),
            "--refine".into(),
            plan.refine.to_string(),
        ]);
    }
    if let Some(pps) = std::env::var("DCE_BENCH_FLOOD_PPS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&p| p > 0)
    {
        args.extend([
            "--with-flood".into(),
            pps.to_string(),
            "--flood-iface".into(),
            ctx.lab.callers.iface.clone(),
        ]);
    }
    args.extend([
        "--json".into(),
        json.display().to_string(),
        "--svg".into(),
        svg.display().to_string(),
    ]);
    println!(
        "{date}, load average {load_before}: in the callers' namespace, against dce-edge (AF_XDP, profile lab):\n  dce-loadgen {}",
        args.join(" ")
    );
    let mut cmd = ctx
        .lab
        .callers
        .ns
        .command(ctx.loadgen.to_str().context("a UTF-8 path")?);
    cmd.args(&args).stdin(Stdio::null());
    let mut child = ChildGuard::new(cmd.spawn().context("starting dce-loadgen capacity")?);
    let status = loop {
        if let Some(s) = child.wait_timeout(Duration::from_secs(1))? {
            break Some(s);
        }
        if stop.load(Ordering::Relaxed) {
            let _ = child.stop(Duration::from_secs(5));
            break None;
        }
    };
    println!(
        "dce-loadgen capacity exited with {status:?} (3 = the profile's target was not reached); load average after {}",
        loadavg()
    );
    if let Some(s) = edge_snapshot(&ctx) {
        for n in edge_notes(&s) {
            println!("  {n}");
        }
    }
    servers.stop();
    Ok(())
}
