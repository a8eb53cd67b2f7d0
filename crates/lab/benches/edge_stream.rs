//! Calls per second over UDP, TCP and TLS through dce-edge and through
//! Kamailio 5.6 (with its `tls` module) in the same role, in one run: the
//! same dce-loadgen callers (one address, `DCE_BENCH_CONNECTIONS`
//! connections over TCP and TLS), the same dce-loadgen server over UDP
//! behind both, the same fixed rates.
//!
//! The lab (`lab::topology`): the callers' namespace, one upstream, the
//! proxy under test in the edge namespace, on one bridge. dce-edge runs
//! `dce-edge run` in socket mode (two UDP workers) and then in AF_XDP mode
//! (one worker: lab veths have one queue; the XDP filter in front), TCP
//! and TLS on its stream thread (`[stream]`) in both, its certificate made
//! by the test PKI (`testpki`) for the edge's IP address. Kamailio listens on the same addresses (UDP and TCP on 5060, TLS
//! on 5061, two UDP and two TCP children, the `tls` module with the same
//! certificate) and forwards statelessly to the server, Record-Routing
//! INVITEs, as the edge does. Both route by one prefix to one target.
//!
//! For each proxy, transport and rate: a step of `DCE_BENCH_SECS` at that
//! rate (INVITE, 200, ACK, BYE, 200), the outcome judged by the project's
//! rule (`loadgen::held::judge`: at most 0.1% of calls failed, p99 setup
//! at most 50 ms, calls started at 97% of the offered rate or more), the
//! proxy's CPU (utime + stime of its processes from /proc, Kamailio's
//! children included) per completed call, and the generator's own CPU
//! (its threads) per call. For dce-edge, every drop reason or ring
//! shortfall its workers counted during the step is printed by name.
//!
//! ```text
//! apt-get install kamailio kamailio-tls-modules
//! cargo build --release --workspace --bins
//! cargo bench -p dce-lab --bench edge_stream
//! ```
//!
//! Knobs (environment): `DCE_BENCH_QUICK=1` (3 s steps at 500, 1000 and
//! 2000 cps), `DCE_BENCH_RATES` (`1000,2000,4000`), `DCE_BENCH_SECS` (10),
//! `DCE_BENCH_ONLY` (`edge,afxdp,kamailio`), `DCE_BENCH_TRANSPORTS`
//! (`udp,tcp,tls`), `DCE_BENCH_CONNECTIONS` (8), `DCE_BENCH_KEEP=DIR` (keep
//! configurations and logs there).
//!
//! `DCE_BENCH_SEARCH=1` runs, instead of the fixed rates, the capacity
//! search of `dce-loadgen capacity` (`loadgen::capacity::search`: rising
//! rates from `DCE_BENCH_SEARCH_START` (2000 cps), x1.5 a step, then three
//! bisection steps, each step judged by the same `loadgen::held` rule)
//! through dce-edge in socket mode, once per transport, and prints per
//! transport the highest rate held with the edge's CPU per call and the
//! generator's CPU per call at that rate.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use dataplane::IoMode;
use lab::bin::{workspace_binary, TempDir};
use lab::edge_process::{groups_toml, EdgeConfig, EdgeProcess};
use lab::netns::ChildGuard;
use lab::ping::options_ping;
use lab::topology::{Lab, LabSpec, EDGE_ADDR};
use loadgen::capacity::{self, CapacityConfig, Step};
use loadgen::held::{self, GeneratorLoad, Limits, StepFacts};
use loadgen::msg::Transport;
use loadgen::report::UacReport;
use loadgen::stream::TlsClient;
use loadgen::uac::{self, UacConfig};

/// How long a request waits for its final answer (a call this slow has long
/// failed the 50 ms criterion).
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(4);
/// Pause between steps, so late answers of one step do not load the next.
const SETTLE: Duration = Duration::from_secs(1);
/// Where Kamailio's modules live on Debian.
const KAMAILIO_MODULES: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/kamailio/modules",
    "/usr/lib/aarch64-linux-gnu/kamailio/modules",
    "/usr/lib/kamailio/modules",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    Edge,
    EdgeXdp,
    Kamailio,
}

impl Subject {
    fn key(self) -> &'static str {
        match self {
            Subject::Edge => "edge",
            Subject::EdgeXdp => "afxdp",
            Subject::Kamailio => "kamailio",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Subject::Edge => "dce-edge socket",
            Subject::EdgeXdp => "dce-edge af_xdp",
            Subject::Kamailio => "kamailio 5.6",
        }
    }
}

struct Plan {
    rates: Vec<f64>,
    step: Duration,
    subjects: Vec<Subject>,
    transports: Vec<Transport>,
    connections: usize,
    keep: Option<PathBuf>,
    quick: bool,
    /// Run the capacity search instead of the fixed rates, from this rate.
    search_from: Option<f64>,
}

fn env_list(name: &str) -> Option<Vec<String>> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
}

impl Plan {
    fn from_env() -> Plan {
        let quick = std::env::var("DCE_BENCH_QUICK").is_ok_and(|v| v != "0");
        let rates = env_list("DCE_BENCH_RATES")
            .map(|l| l.iter().filter_map(|r| r.parse().ok()).collect())
            .unwrap_or_else(|| {
                if quick {
                    vec![500.0, 1000.0, 2000.0]
                } else {
                    vec![1000.0, 2000.0, 4000.0]
                }
            });
        let secs = std::env::var("DCE_BENCH_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if quick { 3.0 } else { 10.0 });
        let every = [Subject::Edge, Subject::EdgeXdp, Subject::Kamailio];
        let subjects = env_list("DCE_BENCH_ONLY").map_or(every.to_vec(), |l| {
            every
                .into_iter()
                .filter(|s| l.iter().any(|k| k == s.key()))
                .collect()
        });
        let all = [Transport::Udp, Transport::Tcp, Transport::Tls];
        let transports = env_list("DCE_BENCH_TRANSPORTS").map_or(all.to_vec(), |l| {
            all.into_iter()
                .filter(|t| l.iter().any(|k| k == t.name()))
                .collect()
        });
        Plan {
            rates,
            step: Duration::from_secs_f64(secs),
            subjects,
            transports,
            connections: std::env::var("DCE_BENCH_CONNECTIONS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(8),
            keep: std::env::var_os("DCE_BENCH_KEEP").map(PathBuf::from),
            quick,
            search_from: std::env::var("DCE_BENCH_SEARCH")
                .is_ok_and(|v| v != "0")
                .then(|| {
                    std::env::var("DCE_BENCH_SEARCH_START")
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(2000.0)
                }),
        }
    }
}

fn kamailio_tls_module() -> Option<PathBuf> {
    KAMAILIO_MODULES
        .iter()
        .map(|d| Path::new(d).join("tls.so"))
        .find(|p| p.exists())
}

fn main() {
    if !lab::privilege::is_root() {
        eprintln!("edge_stream: needs root (namespaces); skipping");
        return;
    }
    if !lab::privilege::have_program("kamailio") {
        eprintln!(
            "edge_stream: needs kamailio (apt-get install kamailio kamailio-tls-modules); skipping"
        );
        return;
    }
    if kamailio_tls_module().is_none() {
        eprintln!(
            "edge_stream: needs Kamailio's tls module, which is not installed (apt-get install kamailio-tls-modules); skipping"
        );
        return;
    }
    let plan = Plan::from_env();
    if let Err(e) = run(&plan) {
        eprintln!("edge_stream: {e:#}");
        std::process::exit(1);
    }
}

/// A CA, and a certificate for the edge's IP address signed by it (PEM).
fn certificates() -> Result<(String, String, String)> {
    let ca = testpki::TestCa::new("edge_stream bench ca");
    let (cert, key) = ca.server(&[&EDGE_ADDR.to_string()]);
    Ok((ca.pem, cert, key))
}

/// CPU ticks of `pid` and, with `children`, of its children (Kamailio's
/// workers are children of its main process).
fn ticks(pid: u32, children: bool) -> u64 {
    if children {
        lab::cpu::ticks(&[], &[pid])
    } else {
        lab::cpu::ticks(&[pid], &[])
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// One step's figures.
struct Line {
    subject: Subject,
    transport: Transport,
    report: UacReport,
    proxy_cpu_s: f64,
    wall_s: f64,
}

impl Line {
    fn completed(&self) -> u64 {
        self.report.outcomes.completed
    }

    fn failed(&self) -> u64 {
        self.report.started - self.completed()
    }

    fn verdict(&self) -> held::StepVerdict {
        let r = &self.report;
        let facts = StepFacts {
            offered_cps: r.offered_cps,
            achieved_cps: r.achieved_cps,
            started: r.started,
            failed_ratio: r.failed_ratio,
            p99_us: r.latency_us.get("setup").map(|l| l.p99_us),
            retransmitted_ratio: None,
            generator: GeneratorLoad {
                busy: Some(r.threads.iter().map(|t| t.peak_busy).fold(0.0, f64::max)),
                pacing_lag_us: r.latency_us.get("start_lag").map(|l| l.max_us),
            },
        };
        let limits = Limits {
            max_p99_us: Some(50_000),
            ..Limits::new(0.001)
        };
        held::judge(&facts, &limits)
    }

    fn per_call_us(cpu_s: f64, calls: u64) -> String {
        if calls == 0 {
            "-".into()
        } else {
            format!("{:.0}", cpu_s * 1e6 / calls as f64)
        }
    }

    fn print(&self) {
        let r = &self.report;
        let v = self.verdict();
        let gen_cpu: f64 = r.threads.iter().map(|t| t.cpu_s).sum();
        let o = &r.outcomes;
        println!(
            "  {:<16} {:<4} offered {:>6.0} achieved {:>7.1} completed {:>7} failed {:>5} ({} refused, {} closed, {} tls, {} timed out) p99 setup {:>6.2} ms  {}  proxy {:>4.0} us/call ({:.2} cores)  generator {:>4} us/call",
            self.subject.name(),
            self.transport.name(),
            r.offered_cps,
            r.achieved_cps,
            self.completed(),
            self.failed(),
            o.connection_refused,
            o.connection_closed,
            o.tls_failed,
            o.timed_out_no_answer + o.timed_out_no_final + o.timed_out_later,
            r.latency_us.get("setup").map_or(0.0, |l| l.p99_us as f64 / 1000.0),
            if v.held() { "held" } else { "NOT HELD" },
            self.proxy_cpu_s * 1e6 / self.completed().max(1) as f64,
            self.proxy_cpu_s / self.wall_s.max(1e-9),
            Line::per_call_us(gen_cpu, self.completed()),
        );
        if !v.held() {
            println!("      {v}");
        }
    }
}

struct Ctx<'a> {
    plan: &'a Plan,
    lab: Lab,
    dir: PathBuf,
    loadgen: PathBuf,
    ca: String,
}

fn run(plan: &Plan) -> Result<()> {
    let tmp = TempDir::new("estream")?;
    let dir = match &plan.keep {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => tmp.path().to_path_buf(),
    };
    let date = humantime_now();
    let before = loadavg();
    println!(
        "edge_stream {date}: {}, {:.0} s steps, {} connections over TCP/TLS, pass = failed <= 0.1%, p99 setup <= 50 ms, started >= 97% of offered; load average before: {before}{}",
        match plan.search_from {
            Some(from) => format!("capacity search from {from:.0} cps"),
            None => format!("rates {:?} cps", plan.rates),
        },
        plan.step.as_secs_f64(),
        plan.connections,
        if plan.quick { " (quick)" } else { "" }
    );
    let lab = Lab::build(&LabSpec {
        caller_addrs: 1,
        upstreams: 1,
        attacker: false,
        edge_queues: 1,
    })
    .context("building the lab")?;
    let (ca, cert, key) = certificates()?;
    std::fs::write(dir.join("edge.crt"), &cert)?;
    std::fs::write(dir.join("edge.key"), &key)?;
    std::fs::write(dir.join("ca.crt"), &ca)?;
    let ctx = Ctx {
        plan,
        lab,
        dir,
        loadgen: workspace_binary("dce-loadgen"),
        ca,
    };
    let started = Instant::now();
    if let Some(from) = plan.search_from {
        let results = search_edge(&ctx, from)?;
        println!(
            "edge_stream capacity search, dce-edge socket ({date}; load average before {before}, after {}; {:.0} s)",
            loadavg(),
            started.elapsed().as_secs_f64()
        );
        println!(
            "  {:<4} {:>9} {:>12} {:>14} {:>11} {:>14}  note",
            "tx", "held cps", "first failed", "edge us/call", "edge cores", "gen us/call"
        );
        for r in &results {
            r.print();
        }
        return Ok(());
    }
    let mut lines = Vec::new();
    for &subject in &plan.subjects {
        println!("{}:", subject.name());
        match run_subject(&ctx, subject, &mut lines) {
            Ok(()) => {}
            Err(e) => println!("  {} did not run to its end: {e:#}", subject.name()),
        }
    }
    println!(
        "edge_stream results ({date}; load average before {before}, after {}; {:.0} s)",
        loadavg(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "  {:<16} {:<4} {:>7} {:>9} {:>9} {:>7} {:>9} {:>14} {:>14}",
        "proxy",
        "tx",
        "offered",
        "achieved",
        "completed",
        "failed",
        "held",
        "proxy us/call",
        "gen us/call"
    );
    for l in &lines {
        let gen_cpu: f64 = l.report.threads.iter().map(|t| t.cpu_s).sum();
        println!(
            "  {:<16} {:<4} {:>7.0} {:>9.1} {:>9} {:>7} {:>9} {:>14} {:>14}",
            l.subject.name(),
            l.transport.name(),
            l.report.offered_cps,
            l.report.achieved_cps,
            l.completed(),
            l.failed(),
            if l.verdict().held() { "yes" } else { "no" },
            Line::per_call_us(l.proxy_cpu_s, l.completed()),
            Line::per_call_us(gen_cpu, l.completed()),
        );
    }
    Ok(())
}

fn humantime_now() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output();
    out.ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// What the capacity search found over one transport.
struct Searched {
    transport: Transport,
    held: Option<f64>,
    first_failed: Option<f64>,
    generator_limited: bool,
    /// The highest held step, with the edge's CPU seconds and wall seconds
    /// during it.
    at_held: Option<(Step, f64, f64)>,
}

impl Searched {
    fn print(&self) {
        let fmt = |v: Option<f64>| v.map_or("-".to_string(), |c| format!("{c:.0}"));
        let (edge_us, edge_cores, gen_us) = match &self.at_held {
            Some((s, cpu_s, wall_s)) => (
                Line::per_call_us(*cpu_s, s.completed),
                format!("{:.2}", cpu_s / wall_s.max(1e-9)),
                s.generator_us_per_call
                    .map_or("-".into(), |u| format!("{u:.0}")),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "  {:<4} {:>9} {:>12} {:>14} {:>11} {:>14}  {}",
            self.transport.name(),
            fmt(self.held),
            fmt(self.first_failed),
            edge_us,
            edge_cores,
            gen_us,
            if self.generator_limited {
                "a failing step had a saturated generator thread: the limit may be the generator's"
            } else {
                ""
            }
        );
    }
}

/// The capacity search (`loadgen::capacity::search`, each step judged by
/// `loadgen::held`) through dce-edge in socket mode, once per transport,
/// with the edge's CPU during every step.
fn search_edge(ctx: &Ctx, from: f64) -> Result<Vec<Searched>> {
    let (mut server, upstream) = start_server(ctx, "search")?;
    let mut proxy = start_edge(ctx, upstream, IoMode::Socket)?;
    let hz = sys::clock_ticks_per_second() as f64;
    let stop = AtomicBool::new(false);
    let mut results = Vec::new();
    let mut outcome = Ok(());
    println!("dce-edge socket, capacity search from {from:.0} cps:");
    for &transport in &ctx.plan.transports {
        let mut cfg = match callers(ctx, transport, from) {
            Ok(u) => CapacityConfig::new(u),
            Err(e) => {
                outcome = Err(e);
                break;
            }
        };
        cfg.start_cps = from;
        cfg.step_duration = ctx.plan.step;
        // The pause between steps is taken below, outside the CPU windows.
        cfg.settle = Duration::ZERO;
        std::thread::sleep(SETTLE);
        let mut best: Option<(Step, f64, f64)> = None;
        let report = ctx.lab.callers.ns.enter(|| {
            let mut before = (proxy.ticks(), Instant::now());
            capacity::search(&cfg, &stop, |s| {
                let cpu_s = proxy.ticks().saturating_sub(before.0) as f64 / hz;
                let wall_s = before.1.elapsed().as_secs_f64();
                println!(
                    "  {:<4} {:>7.0} cps (achieved {:>7.1}) completed {:>7} failed {:>7.3}% p99 setup {:>6.2} ms  edge {:>4} us/call ({:.2} cores)  generator {:>4} us/call  {}",
                    transport.name(),
                    s.offered_cps,
                    s.achieved_cps,
                    s.completed,
                    s.failed_ratio * 100.0,
                    s.latency.p99_us as f64 / 1000.0,
                    Line::per_call_us(cpu_s, s.completed),
                    cpu_s / wall_s.max(1e-9),
                    s.generator_us_per_call.map_or("-".into(), |u| format!("{u:.0}")),
                    s.reason.as_deref().unwrap_or("held"),
                );
                if s.held && best.as_ref().is_none_or(|b| b.0.offered_cps < s.offered_cps) {
                    best = Some((s.clone(), cpu_s, wall_s));
                }
                std::thread::sleep(SETTLE);
                before = (proxy.ticks(), Instant::now());
            })
        });
        match report {
            Ok(Ok(r)) => results.push(Searched {
                transport,
                held: r.highest_held_cps,
                first_failed: r.lowest_failed_cps,
                generator_limited: r.generator_limited,
                at_held: best,
            }),
            Ok(Err(e)) => outcome = Err(anyhow!("search over {}: {e}", transport.name())),
            Err(e) => outcome = Err(anyhow!("search over {}: {e}", transport.name())),
        }
        if let Some(why) = proxy.exited() {
            outcome = Err(anyhow!("{why} during the search over {}", transport.name()));
        }
        if outcome.is_err() {
            break;
        }
    }
    if let Proxy::Edge(mut e) = proxy {
        let _ = e.stop();
    }
    let _ = server.stop(Duration::from_secs(5));
    outcome.map(|()| results)
}

/// The dce-loadgen server on the upstream, over UDP.
fn start_server(ctx: &Ctx, tag: &str) -> Result<(ChildGuard, SocketAddr)> {
    let up = &ctx.lab.upstreams[0];
    let addr = SocketAddr::from((up.addr(), 5060));
    let log = std::fs::File::create(ctx.dir.join(format!("{tag}-upstream.log")))?;
    let mut cmd = up.ns.command(ctx.loadgen.to_str().context("a UTF-8 path")?);
    cmd.args(["uas", "--listen", &addr.to_string()])
        .args(["--duration", "3600", "--quiet"])
        .args(["--timeout-ms", &TRANSACTION_TIMEOUT.as_millis().to_string()])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let guard = ChildGuard::new(cmd.spawn().context("starting dce-loadgen uas")?);
    let caller = ctx.lab.callers.addr();
    let answered = ctx
        .lab
        .callers
        .ns
        .enter(move || options_ping((caller, 0).into(), addr, Duration::from_secs(20)))??;
    if answered != Some(200) {
        bail!("the server at {addr} did not answer OPTIONS");
    }
    Ok((guard, addr))
}

enum Proxy {
    Edge(Box<EdgeProcess>),
    Kamailio(ChildGuard),
}

impl Proxy {
    fn ticks(&self) -> u64 {
        match self {
            Proxy::Edge(e) => e.pid().map_or(0, |p| ticks(p, false)),
            Proxy::Kamailio(k) => ticks(k.id(), true),
        }
    }

    /// How the proxy's process ended, if it did (a crash under load must
    /// not pass for a slow step).
    fn exited(&mut self) -> Option<String> {
        match self {
            Proxy::Edge(e) => e
                .pid()
                .filter(|p| lab::cpu::proc_stat(*p).is_none())
                .map(|_| "dce-edge's process is gone".to_string()),
            Proxy::Kamailio(k) => match k.child_mut().try_wait() {
                Ok(Some(status)) => Some(format!("kamailio exited ({status})")),
                _ => None,
            },
        }
    }

    /// dce-edge: its workers' drop reasons and ring shortfalls, summed
    /// over the workers (so a loss inside the edge shows by name).
    fn edge_counters(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        if let Proxy::Edge(e) = self {
            if let Ok(s) = e.snapshot() {
                for w in &s.workers {
                    for (k, &n) in w.dropped.iter().chain(&w.rings) {
                        *m.entry(k.clone()).or_insert(0) += n;
                    }
                }
            }
        }
        m
    }
}

/// The counters that moved between two readings of
/// [`Proxy::edge_counters`].
fn moved(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = after
        .iter()
        .filter_map(|(k, &n)| {
            let d = n.saturating_sub(before.get(k).copied().unwrap_or(0));
            (d > 0).then(|| format!("{k} {d}"))
        })
        .collect();
    parts.join(", ")
}

fn start_edge(ctx: &Ctx, upstream: SocketAddr, mode: IoMode) -> Result<Proxy> {
    let dir = ctx.dir.join(match mode {
        IoMode::Socket => "edge-socket",
        IoMode::AfXdp => "edge-afxdp",
    });
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(ctx.dir.join("edge.crt"), dir.join("edge.crt"))?;
    std::fs::copy(ctx.dir.join("edge.key"), dir.join("edge.key"))?;
    let mut cfg = EdgeConfig::new(
        &ctx.lab,
        mode,
        groups_toml(None, &[("uk", &[upstream])]),
        "prefix,group\n44,uk\n".into(),
    );
    cfg.stream = format!(
        "tcp = \"{EDGE_ADDR}:5060\"\ntls = \"{EDGE_ADDR}:5061\"\ncertificate = \"edge.crt\"\nkey = \"edge.key\"\nmax_per_source = {}",
        ctx.plan.connections.max(16)
    );
    let edge = EdgeProcess::start(&ctx.lab, &dir, &cfg).context("starting dce-edge")?;
    Ok(Proxy::Edge(Box::new(edge)))
}

/// Kamailio as the same stateless edge: UDP and TCP on 5060, TLS on 5061,
/// one route to the server.
fn start_kamailio(ctx: &Ctx, upstream: SocketAddr) -> Result<Proxy> {
    let dir = ctx.dir.join("kamailio");
    let files = lab::kamailio::write(
        &dir,
        &lab::kamailio::Spec {
            about: "Kamailio 5.6 as a stateless SIP edge over UDP, TCP and TLS, written by\n\
                    the dce-lab benchmark edge_stream: OPTIONS answered locally, one\n\
                    route to the server, stateless forwarding over UDP, Record-Route.",
            children: 2,
            listen: vec![
                (lab::kamailio::Transport::Udp, (EDGE_ADDR, 5060).into()),
                (lab::kamailio::Transport::Tcp, (EDGE_ADDR, 5060).into()),
                (lab::kamailio::Transport::Tls, (EDGE_ADDR, 5061).into()),
            ],
            tls: Some(lab::kamailio::TlsFiles {
                certificate: ctx.dir.join("edge.crt"),
                key: ctx.dir.join("edge.key"),
            }),
            scanners: false,
            pike_density: None,
            sanity: false,
            routes: lab::kamailio::Routes::Upstream(upstream),
        },
    )?;
    let log = dir.join("kamailio.log");
    let mut cmd = files.command(&ctx.lab.edge.ns, &log)?;
    let mut guard = ChildGuard::new(cmd.spawn().context("starting kamailio")?);
    let caller = ctx.lab.callers.addr();
    let to = SocketAddr::from((EDGE_ADDR, 5060));
    let answered = ctx
        .lab
        .callers
        .ns
        .enter(move || options_ping((caller, 0).into(), to, Duration::from_secs(60)))??;
    if answered != Some(200) {
        let _ = guard.stop(Duration::from_secs(3));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        bail!(
            "kamailio did not answer OPTIONS within 60 s; its log ends:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(Proxy::Kamailio(guard))
}

fn callers(ctx: &Ctx, transport: Transport, cps: f64) -> Result<UacConfig> {
    let port = if transport == Transport::Tls {
        5061
    } else {
        5060
    };
    let mut u = UacConfig::new(SocketAddr::new(IpAddr::V4(EDGE_ADDR), port));
    u.transport = transport;
    u.connections = ctx.plan.connections;
    if transport == Transport::Tls {
        u.tls = Some(
            TlsClient::new(ctx.ca.as_bytes(), &EDGE_ADDR.to_string())
                .map_err(|e| anyhow!("{e}"))?,
        );
    }
    u.cps = cps;
    u.duration = ctx.plan.step;
    u.max_calls = u64::MAX;
    u.timers.timeout_ns = TRANSACTION_TIMEOUT.as_nanos() as u64;
    u.stop_drain = Duration::from_secs(5);
    Ok(u)
}

fn run_subject(ctx: &Ctx, subject: Subject, lines: &mut Vec<Line>) -> Result<()> {
    let (mut server, upstream) = start_server(ctx, subject.key())?;
    let mut proxy = match subject {
        Subject::Edge => start_edge(ctx, upstream, IoMode::Socket)?,
        Subject::EdgeXdp => start_edge(ctx, upstream, IoMode::AfXdp)?,
        Subject::Kamailio => start_kamailio(ctx, upstream)?,
    };
    let stop = AtomicBool::new(false);
    let mut result = Ok(());
    'all: for &transport in &ctx.plan.transports {
        for &cps in &ctx.plan.rates {
            std::thread::sleep(SETTLE);
            let cfg = match callers(ctx, transport, cps) {
                Ok(c) => c,
                Err(e) => {
                    result = Err(e);
                    break 'all;
                }
            };
            let counters = proxy.edge_counters();
            let before = proxy.ticks();
            let t0 = Instant::now();
            let report = ctx.lab.callers.ns.enter(|| uac::run(&cfg, &stop))?;
            let wall_s = t0.elapsed().as_secs_f64();
            let after = proxy.ticks();
            let edge_moved = moved(&counters, &proxy.edge_counters());
            let report = match report {
                Ok(r) => r,
                Err(e) => {
                    result = Err(anyhow!("callers over {}: {e}", transport.name()));
                    break 'all;
                }
            };
            let line = Line {
                subject,
                transport,
                report,
                proxy_cpu_s: after.saturating_sub(before) as f64
                    / sys::clock_ticks_per_second() as f64,
                wall_s,
            };
            line.print();
            if !edge_moved.is_empty() {
                println!(
                    "      the edge's workers' drop and ring counters that moved: {edge_moved}"
                );
            }
            lines.push(line);
            if let Some(why) = proxy.exited() {
                result = Err(anyhow!(
                    "{why} during the step over {} at {cps} cps (its log is in the run's folder)",
                    transport.name()
                ));
                break 'all;
            }
        }
    }
    match proxy {
        Proxy::Edge(mut e) => {
            if let Ok(s) = e.stop() {
                if let Some(st) = s.stream {
                    let moved: Vec<String> = st
                        .counters
                        .iter()
                        .filter(|(_, &n)| n > 0)
                        .map(|(k, n)| format!("{k} {n}"))
                        .collect();
                    println!("  edge stream thread, final: {}", moved.join(", "));
                }
            }
        }
        Proxy::Kamailio(mut k) => {
            let _ = k.stop(Duration::from_secs(5));
        }
    }
    let _ = server.stop(Duration::from_secs(5));
    result
}
