//! `dce-edge demo`: the appliance's main job where anyone can watch it.
//!
//! It builds the lab (callers, an attacker, the edge and two upstream
//! servers in namespaces on one bridge), runs `dce-edge run` in AF_XDP mode
//! with a route table of ten thousand prefixes, sends legitimate calls from
//! the callers through the edge to the upstreams with `dce-loadgen`, and at
//! the same time attacks the edge: a SIPVicious-style scanner sweep, a
//! REGISTER password guess, an INVITE flood from spoofed sources and garbage
//! on the SIP port. During the flood a caller address the edge has never
//! seen (not verified, not allowlisted) dials the emergency numbers 112 and
//! 911, which the route table sends to an emergency group (issue 18). It
//! shows progress each second and a report at the end, and removes
//! everything it made, also on Ctrl-C or failure.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;

use super::bin::TempDir;
use super::edge_process::{EdgeConfig, EdgeProcess};
use super::netns::{ChildGuard, Netns};
use super::topology::{Host, Lab, LabSpec, EDGE_ADDR, SPOOF_PREFIX};
use dataplane::IoMode;
use telemetry::stats::Snapshot;

/// What the demo runs (the `dce-edge demo` flags).
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// How long the calls and attacks run, in seconds.
    pub seconds: u64,
    /// Legitimate calls started per second.
    pub cps: f64,
    /// Packets per second of the spoofed INVITE flood (0: none).
    pub flood_pps: u64,
    /// Prefixes in the route table (at least 10,000).
    pub prefixes: usize,
    /// Write the report as JSON to this file too.
    pub json: Option<PathBuf>,
    /// Keep the lab's files (configuration, route table, reports) here
    /// instead of a temporary directory.
    pub keep: Option<PathBuf>,
    /// AF_XDP workers: one per queue of the edge's veth, each pinned (1 to
    /// 8); the veth spreads flows over its queues as a NIC's RSS does.
    pub workers: u32,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            seconds: 30,
            cps: 200.0,
            flood_pps: 100_000,
            prefixes: 10_000,
            json: None,
            keep: None,
            workers: 1,
        }
    }
}

/// The demo's report.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    /// Seconds of traffic.
    pub seconds: u64,
    /// XDP attach mode and AF_XDP mode.
    pub attach_mode: String,
    /// `copy` or `zero_copy`.
    pub dataplane_mode: String,
    /// Prefixes in the route table.
    pub prefixes: u64,
    /// Legitimate calls as the callers saw them.
    pub calls: CallsReport,
    /// What each attack sent.
    pub attacks: Vec<AttackLine>,
    /// XDP drops by reason.
    pub xdp_drops: std::collections::BTreeMap<String, u64>,
    /// Packets XDP redirected to the workers.
    pub xdp_redirected: u64,
    /// Messages the workers dropped, by reason.
    pub worker_drops: std::collections::BTreeMap<String, u64>,
    /// Local answers the workers sent, by code.
    pub worker_answers: std::collections::BTreeMap<u16, u64>,
    /// Route lookups the workers made, and how many of them were answered
    /// from a receive batch's side-by-side lookups.
    pub route_lookups: u64,
    /// See `route_lookups`.
    pub route_lookups_batched: u64,
    /// Bans in force at the end: source and reason.
    pub bans: Vec<(String, String)>,
    /// Datagrams the edge sent to spoofed sources (a reflector shows here).
    pub reflected: u64,
    /// Emergency calls from a fresh caller during the flood.
    pub emergency: EmergencyCallsReport,
    /// What each worker received and forwarded (its queue's share).
    pub workers: Vec<WorkerLine>,
}

/// One worker's share of the traffic.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerLine {
    /// Worker index.
    pub id: usize,
    /// The NIC queue it serves.
    pub queue: Option<u32>,
    /// Datagrams it received.
    pub received: u64,
    /// Requests and responses it forwarded.
    pub forwarded: u64,
}

/// Emergency calls placed during the flood from a caller address the edge
/// has never verified, as that caller saw them and as the edge counted
/// them.
#[derive(Debug, Clone, Serialize, Default)]
pub struct EmergencyCallsReport {
    /// The caller's address (not allowlisted; not verified before its
    /// first call, which verifies it).
    pub caller: String,
    /// The numbers it dialled, in turn.
    pub numbers: Vec<String>,
    /// Calls started.
    pub attempted: u64,
    /// Calls that completed (INVITE, 200, ACK, BYE, 200).
    pub completed: u64,
    /// Calls that failed or timed out.
    pub failed: u64,
    /// Median setup time at the caller (INVITE to 200), milliseconds.
    pub setup_p50_ms: f64,
    /// 99th percentile setup time at the caller, milliseconds.
    pub setup_p99_ms: f64,
    /// The edge's own emergency counters (snapshot `emergency`).
    pub edge: EdgeEmergencyCounters,
}

/// The edge's emergency counters at the end of the run.
#[derive(Debug, Clone, Serialize, Default)]
pub struct EdgeEmergencyCounters {
    /// Emergency INVITEs received (retransmissions included).
    pub attempted: u64,
    /// New emergency calls forwarded.
    pub forwarded: u64,
    /// Emergency calls answered 2xx.
    pub answered: u64,
    /// Emergency calls that got a final failure.
    pub failed: u64,
    /// Emergency requests of unverified sources over the emergency budget.
    pub over_budget: u64,
    /// Median emergency setup latency through the edge, milliseconds.
    pub setup_p50_ms: f64,
    /// 99th percentile of it, milliseconds.
    pub setup_p99_ms: f64,
}

/// Legitimate calls.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CallsReport {
    /// Calls started.
    pub offered: u64,
    /// Calls that completed (INVITE, 200, ACK, BYE, 200).
    pub completed: u64,
    /// Calls that failed or timed out.
    pub failed: u64,
    /// Median setup time (INVITE to 200), milliseconds.
    pub setup_p50_ms: f64,
    /// 99th percentile setup time, milliseconds.
    pub setup_p99_ms: f64,
}

/// One attack.
#[derive(Debug, Clone, Serialize)]
pub struct AttackLine {
    /// Which.
    pub kind: String,
    /// Packets sent.
    pub sent: u64,
    /// Packets the attacker's kernel refused (not sent, so not in `sent`).
    pub send_failed: u64,
    /// Packets per second it reached (what the box could send, which may be
    /// less than what was asked for).
    pub pps: f64,
    /// SIP answers the attacker got back.
    pub answers: u64,
    /// What it found (extensions, passwords): should be nothing.
    pub found: Vec<String>,
}

/// The loadgen binary next to this one.
fn loadgen_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the dce-edge binary")?;
    let path = exe.with_file_name("dce-loadgen");
    if !path.is_file() {
        bail!(
            "{} is missing: build the workspace (`cargo build --release --workspace --bins`)",
            path.display()
        );
    }
    Ok(path)
}

/// Refuses to start where the demo cannot run, saying why.
fn preflight() -> Result<()> {
    if !crate::privilege::is_root() {
        bail!("dce-edge demo needs root: it creates network namespaces and attaches an XDP program (run it with sudo)");
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        bail!("this kernel has no BTF (/sys/kernel/btf/vmlinux): it cannot load dce-edge's XDP program");
    }
    if let Err(e) = xdp::loader::Filter::load_unattached(&xdp::config::FilterConfig::default()) {
        bail!("this kernel refuses dce-edge's XDP program: {e}");
    }
    if !crate::privilege::have_program("ip") {
        bail!("the `ip` command (iproute2) is missing: apt-get install iproute2");
    }
    Ok(())
}

/// The route table: `prefixes` six-digit prefixes 44xxxx split over two
/// forward groups with the upstreams in opposite priority, plus a reject
/// group (900) and a redirect group (800). Returns the groups file and the
/// prefixes file.
pub fn demo_routes(lab: &Lab, prefixes: usize) -> (String, String) {
    let up: Vec<String> = lab
        .upstreams
        .iter()
        .map(|u| format!("{}:5060", u.addr()))
        .collect();
    let groups = format!(
        "[health]\ninterval_ms = 1000\ndown_after = 3\nup_after = 2\n\n\
         [[group]]\nname = \"uk-fixed\"\naction = \"forward\"\ntargets = [\n  {{ address = \"{a}\", priority = 1, weight = 1 }},\n  {{ address = \"{b}\", priority = 1, weight = 1 }},\n]\n\n\
         [[group]]\nname = \"uk-mobile\"\naction = \"forward\"\ntargets = [\n  {{ address = \"{b}\", priority = 1 }},\n  {{ address = \"{a}\", priority = 2 }},\n]\n\n\
         [[group]]\nname = \"premium\"\naction = \"reject\"\ncode = 403\n\n\
         [[group]]\nname = \"moved\"\naction = \"redirect\"\ntargets = [{{ address = \"{a}\" }}]\n",
        a = up[0],
        b = up[up.len() - 1]
    );
    let mut csv = String::with_capacity(prefixes * 16);
    csv.push_str("prefix,group\n900,premium\n800,moved\n");
    for i in 0..prefixes.max(10_000) {
        // 44 followed by four to six digits: 440000 .. 449999, then 4400000 ...
        let p = if i < 10_000 {
            format!("44{i:04}")
        } else {
            format!("44{:05}", i)
        };
        let g = if i % 2 == 0 { "uk-fixed" } else { "uk-mobile" };
        csv.push_str(&p);
        csv.push(',');
        csv.push_str(g);
        csv.push('\n');
    }
    (groups, csv)
}

/// Emergency numbers the fresh caller dials in turn.
const EMERGENCY_NUMBERS: [&str; 2] = ["112", "911"];
/// Emergency calls it places, and how many a second.
const EMERGENCY_CALLS: u64 = 6;
const EMERGENCY_CPS: u64 = 2;
/// Caller addresses placing the ordinary calls; the lab has one more, the
/// fresh emergency caller, which places nothing before the flood.
const CALLER_ADDRS: usize = 40;

/// The emergency group appended to [`demo_routes`]'s groups for the demo
/// itself: `emergency = true` with the default numbers (911, 112, 999, ...)
/// and `urn:service:sos`, to the first upstream and failing over to the
/// second, and to the `uk-fixed` group when both are down. (Benchmarks that
/// feed [`demo_routes`] to peers without emergency routing leave it out.)
pub fn emergency_group(lab: &Lab) -> String {
    let up: Vec<String> = lab
        .upstreams
        .iter()
        .map(|u| format!("{}:5060", u.addr()))
        .collect();
    format!(
        "\n[[group]]\nname = \"emergency\"\naction = \"forward\"\nemergency = true\nfallback = \"uk-fixed\"\n\
         targets = [\n  {{ address = \"{a}\", priority = 1 }},\n  {{ address = \"{b}\", priority = 2 }},\n]\n",
        a = up[0],
        b = up[up.len() - 1]
    )
}

/// The edge's configuration: AF_XDP mode with the lab profile, the XDP
/// filter's defaults (scanners dropped, nobody banned on forgeable
/// evidence), nobody allowlisted but the
/// route table's upstreams (added by the appliance itself), so the callers
/// have to prove their addresses like any caller.
/// `routes` are the groups and prefixes files' texts ([`demo_routes`]).
fn demo_edge(lab: &Lab, routes: (String, String), binary: PathBuf) -> EdgeConfig {
    let (groups, csv) = routes;
    let mut cfg = EdgeConfig::new(lab, IoMode::AfXdp, groups, csv);
    cfg.allowlist.clear();
    cfg.profile = Some("lab".into());
    cfg.binary = Some(binary);
    // The appliance's own idle defaults, as a deployment runs it.
    cfg.busy_polls = None;
    cfg
}

/// Writes the demo's route table into `dir` (`groups.toml`, `prefixes.csv`,
/// [`demo_routes`]), so that a benchmark can feed the same files to the
/// edge and to the peers it compares the edge with.
pub fn write_routes(dir: &Path, lab: &Lab, prefixes: usize) -> Result<()> {
    let (groups, csv) = demo_routes(lab, prefixes);
    std::fs::write(dir.join("groups.toml"), groups)?;
    std::fs::write(dir.join("prefixes.csv"), csv)?;
    Ok(())
}

/// Writes the demo edge's configuration (`edge.toml`, for the route files
/// of [`write_routes`]) into `dir` and returns its path. `overrides` is
/// merged over it table by table (a value in `overrides` replaces the
/// demo's), so a benchmark can run the same edge in socket mode or with
/// other limits.
pub fn write_config(dir: &Path, lab: &Lab, overrides: &toml::Table) -> Result<PathBuf> {
    // The route files are already in `dir`; the configuration only names them.
    let cfg = demo_edge(lab, (String::new(), String::new()), PathBuf::new());
    let base = cfg.toml(&lab.edge.iface);
    let mut table: toml::Table = base.parse().context("the demo's own configuration")?;
    merge_tables(&mut table, overrides);
    let path = dir.join("edge.toml");
    std::fs::write(&path, format!("# Written by dce-edge's lab.\n{table}"))?;
    Ok(path)
}

/// Merges `over` into `base`: tables merge key by key, any other value
/// replaces what `base` had.
pub fn merge_tables(base: &mut toml::Table, over: &toml::Table) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_tables(b, o),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

/// The thread of [`count_reflections`]: entering the namespace can fail,
/// and so can the raw socket inside it.
type ReflectionThread = std::thread::JoinHandle<std::io::Result<std::io::Result<()>>>;

/// Counts IPv4 UDP datagrams from the edge to spoofed sources arriving in
/// the attacker's namespace, on a raw socket, until `stop`.
fn count_reflections(
    ns: &Netns,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
) -> Result<ReflectionThread> {
    let edge = u32::from(EDGE_ADDR);
    let (net, bits) = SPOOF_PREFIX.split_once('/').expect("a prefix");
    let net = u32::from(net.parse::<Ipv4Addr>().expect("an IPv4 prefix"));
    let mask = u32::MAX << (32 - bits.parse::<u32>().expect("a prefix length"));
    Ok(ns.spawn_thread(move || -> std::io::Result<()> {
        let sock = sys::CaptureSocket::open_ipv4(Duration::from_millis(200))?;
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            // 0: the wait ended with nothing (or an empty frame).
            let n = sock.recv(&mut buf)?;
            // Ethernet (14) + IPv4 header: protocol, source, destination.
            if n < 34 || buf[12..14] != [0x08, 0x00] || buf[23] != 17 {
                continue;
            }
            let src = u32::from_be_bytes(buf[26..30].try_into().expect("4 bytes"));
            let dst = u32::from_be_bytes(buf[30..34].try_into().expect("4 bytes"));
            if src == edge && dst & mask == net & mask {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    })?)
}

/// The `dce-loadgen` processes of a demo (upstream servers, callers,
/// attacks), each named for what it plays and logging to `NAME.log` in the
/// demo's folder. Dropping it ends every one still running.
struct LoadgenProcesses {
    loadgen: PathBuf,
    dir: PathBuf,
    children: Vec<(String, ChildGuard)>,
}

impl LoadgenProcesses {
    fn new(loadgen: PathBuf, dir: &Path) -> Self {
        LoadgenProcesses {
            loadgen,
            dir: dir.to_path_buf(),
            children: Vec::new(),
        }
    }

    /// Where the process `name` is told to write its JSON report
    /// (`NAME.json` in the demo's folder), as a command-line argument.
    fn report_arg(&self, name: &str) -> String {
        self.dir.join(format!("{name}.json")).display().to_string()
    }

    fn spawn(&mut self, name: &str, ns: &Netns, args: &[String]) -> Result<()> {
        let out = std::fs::File::create(self.dir.join(format!("{name}.log")))?;
        let mut cmd = ns.command(self.loadgen.to_str().context("a UTF-8 path")?);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        self.children
            .push((name.to_string(), ChildGuard::new(child)));
        Ok(())
    }

    fn wait(&mut self, name: &str, timeout: Duration) -> Result<()> {
        let Some((_, c)) = self.children.iter_mut().find(|(n, _)| n == name) else {
            return Ok(());
        };
        match c.wait_timeout(timeout)? {
            Some(_) => Ok(()),
            None => {
                c.stop(Duration::from_secs(3))?;
                Ok(())
            }
        }
    }
}

fn read_json(path: &Path) -> Option<Value> {
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .read_to_string(&mut text)
        .ok()?;
    serde_json::from_str(&text).ok()
}

fn u(v: &Value, path: &[&str]) -> u64 {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

fn f(v: &Value, path: &[&str]) -> f64 {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_f64)
        .unwrap_or(0.0)
}

/// Runs the demo; `stop` ends it early (Ctrl-C).
pub fn run(args: &DemoOptions, stop: Arc<AtomicBool>) -> Result<DemoReport> {
    preflight()?;
    let loadgen = loadgen_binary()?;
    let edge_bin = std::env::current_exe()?;
    let seconds = args.seconds.clamp(5, 3600);
    let prefixes = args.prefixes.max(10_000);

    // Declared before the lab and the processes, so that on any way out
    // they are stopped and removed before the folder holding their files.
    let (_tmp, dir) = demo_dir(args.keep.as_deref())?;
    let lab = build_lab(args.workers.clamp(1, 8))?;
    let attacker = lab.attacker.as_ref().expect("the lab has an attacker");
    let mut procs = LoadgenProcesses::new(loadgen, &dir);
    start_upstreams(&mut procs, &lab, seconds)?;
    let (mut groups, csv) = demo_routes(&lab, prefixes);
    groups.push_str(&emergency_group(&lab));
    let mut edge = EdgeProcess::start(&lab, &dir, &demo_edge(&lab, (groups, csv), edge_bin))
        .context("starting the edge")?;
    say_edge_is_up(&edge, seconds, args.cps);

    start_callers(&mut procs, &lab, edge.sip_addr(), args.cps, seconds)?;
    let warm_up = wait_for_callers_verified(&edge, CALLER_ADDRS as u64, seconds, &stop);
    let attacks = start_attacks(
        &mut procs,
        attacker,
        edge.sip_addr(),
        args.flood_pps,
        seconds,
        warm_up,
    )?;
    let reflections = ReflectionCount::start(&attacker.ns)?;

    // The fresh caller dials once the flood shows in the edge's counters
    // (or a third of the way through, if there is no flood to wait for).
    let fresh = lab.callers.addrs[CALLER_ADDRS];
    let edge_sip = edge.sip_addr();
    let mut emergency_started: Option<Result<()>> = None;
    let newest = show_progress(&edge, seconds, &stop, |elapsed, s| {
        let flood_seen = s
            .xdp
            .as_ref()
            .is_some_and(|x| x.drops.get("unverified").copied().unwrap_or(0) > 0);
        if emergency_started.is_none()
            && (flood_seen || args.flood_pps == 0 || elapsed.as_secs() >= seconds / 3)
        {
            eprintln!(
                "{fresh} (not allowlisted, never verified) starts dialling {} during the flood",
                EMERGENCY_NUMBERS.join(" and ")
            );
            emergency_started = Some(start_emergency_caller(&mut procs, &lab, edge_sip, fresh));
        }
    });
    if let Some(Err(e)) = emergency_started {
        return Err(e.context("starting the emergency caller"));
    }
    wait_for_traffic_to_end(&mut procs, &attacks, &stop)?;
    let reflected = reflections.finish();
    let before_stop = edge.snapshot().ok().or(newest).unwrap_or_default();
    drop(procs);
    let final_snapshot = edge.stop().unwrap_or(before_stop);

    let report = DemoReport::from_run(
        seconds,
        calls_report(&dir),
        attack_lines(&dir, &attacks),
        &final_snapshot,
        reflected,
        emergency_report(&dir, fresh, &final_snapshot),
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    drop(lab);
    Ok(report)
}

/// The folder for the lab's files: `keep` (created if missing), or a
/// temporary one, returned with it so that it lives as long as the demo.
fn demo_dir(keep: Option<&Path>) -> Result<(Option<TempDir>, PathBuf)> {
    match keep {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            Ok((None, d.to_path_buf()))
        }
        None => {
            let tmp = TempDir::new("demo")?;
            let dir = tmp.path().to_path_buf();
            Ok((Some(tmp), dir))
        }
    }
}

/// The demo's lab: 41 caller addresses (40 for the ordinary calls, one for
/// the emergency calls), two upstreams and an attacker; the edge's veth
/// has `queues` queues (one AF_XDP worker each).
fn build_lab(queues: u32) -> Result<Lab> {
    eprintln!(
        "building the lab: callers, attacker, edge ({queues} queue(s)), two upstreams (198.18.0.0/24) ..."
    );
    Lab::build(&LabSpec {
        caller_addrs: CALLER_ADDRS + 1,
        upstreams: 2,
        attacker: true,
        edge_queues: queues,
    })
    .context("building the lab's namespaces")
}

/// One `dce-loadgen uas` per upstream (`upstream0`, `upstream1`), answering
/// calls on port 5060 until well after the callers stop.
fn start_upstreams(procs: &mut LoadgenProcesses, lab: &Lab, seconds: u64) -> Result<()> {
    let run_for = (seconds + 15).to_string();
    for (i, up) in lab.upstreams.iter().enumerate() {
        let name = format!("upstream{i}");
        let args = [
            "uas".into(),
            "--listen".into(),
            format!("{}:5060", up.addr()),
            "--duration".into(),
            run_for.clone(),
            "--quiet".into(),
            "--json".into(),
            procs.report_arg(&name),
        ];
        procs.spawn(&name, &up.ns, &args)?;
    }
    Ok(())
}

/// The line saying what the edge runs in and what the demo will do.
fn say_edge_is_up(edge: &EdgeProcess, seconds: u64, cps: f64) {
    let first = edge.snapshot().ok().unwrap_or_default();
    eprintln!(
        "edge up: XDP {} mode, AF_XDP {} mode, {} prefixes; {} s of calls at {} cps with attacks",
        first.modes.attach, first.modes.dataplane, first.routes.prefixes, seconds, cps
    );
}

/// Legitimate callers from the first [`CALLER_ADDRS`] caller addresses,
/// `cps` calls a second through the edge for `seconds`.
fn start_callers(
    procs: &mut LoadgenProcesses,
    lab: &Lab,
    edge_sip: SocketAddr,
    cps: f64,
    seconds: u64,
) -> Result<()> {
    let mut caller_args: Vec<String> = vec![
        "uac".into(),
        "--target".into(),
        edge_sip.to_string(),
        "--cps".into(),
        cps.to_string(),
        "--duration".into(),
        seconds.to_string(),
        "--numbers".into(),
        "44{00000000-99999999}".into(),
        "--sources".into(),
        "80".into(),
        "--quiet".into(),
        "--json".into(),
        procs.report_arg("callers"),
    ];
    for a in &lab.callers.addrs[..CALLER_ADDRS] {
        caller_args.push("--local-addr".into());
        caller_args.push(a.to_string());
    }
    procs.spawn("callers", &lab.callers.ns, &caller_args)
}

/// [`EMERGENCY_CALLS`] calls to [`EMERGENCY_NUMBERS`] in turn from `fresh`, a
/// caller address that has placed no call before (`emergency`).
fn start_emergency_caller(
    procs: &mut LoadgenProcesses,
    lab: &Lab,
    edge_sip: SocketAddr,
    fresh: Ipv4Addr,
) -> Result<()> {
    let numbers = procs.dir.join("emergency-numbers.txt");
    std::fs::write(&numbers, EMERGENCY_NUMBERS.join("\n") + "\n")?;
    let args: Vec<String> = vec![
        "uac".into(),
        "--target".into(),
        edge_sip.to_string(),
        "--numbers-file".into(),
        numbers.display().to_string(),
        "--cps".into(),
        EMERGENCY_CPS.to_string(),
        "--calls".into(),
        EMERGENCY_CALLS.to_string(),
        "--duration".into(),
        (EMERGENCY_CALLS / EMERGENCY_CPS + 1).to_string(),
        "--local-addr".into(),
        fresh.to_string(),
        "--sources".into(),
        "1".into(),
        "--quiet".into(),
        "--json".into(),
        procs.report_arg("emergency"),
    ];
    procs.spawn("emergency", &lab.callers.ns, &args)
}

/// Waits (bounded) until the edge has verified every caller address, and
/// returns when the wait began.
///
/// Attacks start once the callers are known to the edge: every caller
/// address has completed a call and echoed its dialog cookie, as the
/// regular callers of a real edge have long before any attack. (A caller
/// that first appears during a flood competes with the flood's budget;
/// that is the price of reflecting nothing.)
fn wait_for_callers_verified(
    edge: &EdgeProcess,
    callers: u64,
    seconds: u64,
    stop: &AtomicBool,
) -> Instant {
    let warm_up = Instant::now();
    let warm_up_limit = Duration::from_secs((seconds / 2).clamp(2, 20));
    while warm_up.elapsed() < warm_up_limit && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(500));
        if edge
            .snapshot()
            .ok()
            .is_some_and(|s| s.verified_sources >= callers)
        {
            break;
        }
    }
    eprintln!(
        "callers verified after {:.1} s; the attacks start",
        warm_up.elapsed().as_secs_f64()
    );
    warm_up
}

/// An attack sent from one of the attacker's own addresses (the flood,
/// which spoofs its sources, is [`start_flood`]).
struct AddressedAttack {
    /// `dce-loadgen attack KIND`.
    kind: &'static str,
    /// Which of the attacker's addresses it sends from.
    local_addr: usize,
    /// Flags of this kind only.
    extra: &'static [&'static str],
    pps: &'static str,
    count: &'static str,
}

/// A SIPVicious-style scanner sweep, a REGISTER password guess as a known
/// softphone, and garbage on the SIP port.
const ADDRESSED_ATTACKS: [AddressedAttack; 3] = [
    AddressedAttack {
        kind: "scan",
        local_addr: 1,
        extra: &[],
        pps: "200",
        count: "100000",
    },
    AddressedAttack {
        kind: "guess",
        local_addr: 2,
        extra: &["--user-agent", "Zoiper rv2.10"],
        pps: "100",
        count: "100000",
    },
    AddressedAttack {
        kind: "garbage",
        local_addr: 3,
        extra: &[],
        pps: "500",
        count: "1000000",
    },
];

/// Starts every attack from the attacker's namespace (`attack-KIND`), and
/// the spoofed flood if `flood_pps` is not 0; returns the kinds started.
/// The attacks end a few seconds before the callers stop placing calls.
fn start_attacks(
    procs: &mut LoadgenProcesses,
    attacker: &Host,
    edge_sip: SocketAddr,
    flood_pps: u64,
    seconds: u64,
    warm_up: Instant,
) -> Result<Vec<&'static str>> {
    let attack_for = seconds
        .saturating_sub(warm_up.elapsed().as_secs() + 3)
        .max(2)
        .to_string();
    let target = edge_sip.to_string();
    let mut kinds = Vec::new();
    for attack in &ADDRESSED_ATTACKS {
        let name = format!("attack-{}", attack.kind);
        let local_addr =
            attacker.addrs[attack.local_addr.min(attacker.addrs.len() - 1)].to_string();
        let mut argv: Vec<String> = ["attack", attack.kind, "--target", &target]
            .into_iter()
            .chain(["--local-addr", &local_addr])
            .chain(attack.extra.iter().copied())
            .chain(["--pps", attack.pps, "--count", attack.count])
            .chain(["--duration", &attack_for])
            .map(String::from)
            .collect();
        argv.push("--json".into());
        argv.push(procs.report_arg(&name));
        procs.spawn(&name, &attacker.ns, &argv)?;
        kinds.push(attack.kind);
    }
    if flood_pps > 0 {
        start_flood(procs, attacker, &target, flood_pps, seconds, &attack_for)?;
        kinds.push("flood");
    }
    Ok(kinds)
}

/// An INVITE flood at `flood_pps` from sources spoofed in
/// [`SPOOF_PREFIX`], sent raw on the attacker's interface.
fn start_flood(
    procs: &mut LoadgenProcesses,
    attacker: &Host,
    target: &str,
    flood_pps: u64,
    seconds: u64,
    attack_for: &str,
) -> Result<()> {
    let argv: Vec<String> = vec![
        "attack".into(),
        "flood".into(),
        "--iface".into(),
        attacker.iface.clone(),
        "--target".into(),
        target.into(),
        "--spoof".into(),
        SPOOF_PREFIX.into(),
        "--pps".into(),
        flood_pps.to_string(),
        "--count".into(),
        (flood_pps * seconds).to_string(),
        "--duration".into(),
        attack_for.into(),
        "--json".into(),
        procs.report_arg("attack-flood"),
    ];
    procs.spawn("attack-flood", &attacker.ns, &argv)
}

/// Datagrams from the edge to spoofed sources, counted in the attacker's
/// namespace while the demo runs ([`count_reflections`]).
struct ReflectionCount {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    thread: ReflectionThread,
}

impl ReflectionCount {
    fn start(ns: &Netns) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let thread = count_reflections(ns, Arc::clone(&stop), Arc::clone(&count))?;
        Ok(ReflectionCount {
            stop,
            count,
            thread,
        })
    }

    /// Stops counting and returns the count.
    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.count.load(Ordering::Relaxed)
    }
}

/// Progress, once a second, from the edge's own counters, until `seconds`
/// have passed or `stop`; `on_snapshot` sees each snapshot read with the
/// time since the start. Returns the newest snapshot read.
fn show_progress(
    edge: &EdgeProcess,
    seconds: u64,
    stop: &AtomicBool,
    mut on_snapshot: impl FnMut(Duration, &Snapshot),
) -> Option<Snapshot> {
    let started = Instant::now();
    // The edge refreshes its snapshot about once a second, so a read can
    // find the same one again: rates come from the last two different ones.
    let (mut base, mut newest): (Option<Snapshot>, Option<Snapshot>) = (None, None);
    while started.elapsed() < Duration::from_secs(seconds) && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_secs(1));
        if let Ok(s) = edge.snapshot() {
            on_snapshot(started.elapsed(), &s);
            let fresh = newest
                .as_ref()
                .is_none_or(|n| n.taken_at_ms != s.taken_at_ms);
            if fresh {
                base = newest.replace(s);
            }
            if let Some(n) = &newest {
                // A read can come just before the edge's next refresh:
                // say so rather than print the line before as if it were new.
                let stale = if fresh {
                    ""
                } else {
                    " [edge snapshot not refreshed]"
                };
                eprintln!(
                    "{}{stale}",
                    progress_line(started.elapsed(), n, base.as_ref())
                );
            }
        }
    }
    newest
}

/// Callers finish their last calls (bounded; briefly after Ctrl-C), then
/// the attacks end.
fn wait_for_traffic_to_end(
    procs: &mut LoadgenProcesses,
    attacks: &[&str],
    stop: &AtomicBool,
) -> Result<()> {
    if stop.load(Ordering::Relaxed) {
        eprintln!("interrupted: stopping the lab ...");
    }
    let grace = Duration::from_secs(if stop.load(Ordering::Relaxed) { 1 } else { 45 });
    procs.wait("callers", grace)?;
    procs.wait("emergency", grace)?;
    for kind in attacks {
        procs.wait(&format!("attack-{kind}"), Duration::from_secs(5))?;
    }
    Ok(())
}

/// The legitimate calls as the callers saw them (`callers.json`).
fn calls_report(dir: &Path) -> CallsReport {
    let callers = read_json(&dir.join("callers.json")).unwrap_or(Value::Null);
    CallsReport {
        offered: u(&callers, &["accounting", "started"]),
        completed: u(&callers, &["outcomes", "completed"]),
        failed: u(&callers, &["accounting", "started"])
            .saturating_sub(u(&callers, &["outcomes", "completed"])),
        setup_p50_ms: f(&callers, &["latency_us", "setup", "p50_us"]) / 1000.0,
        setup_p99_ms: f(&callers, &["latency_us", "setup", "p99_us"]) / 1000.0,
    }
}

/// The emergency calls as the fresh caller saw them (`emergency.json`) and
/// as the edge counted them (`s`).
fn emergency_report(dir: &Path, fresh: Ipv4Addr, s: &Snapshot) -> EmergencyCallsReport {
    let v = read_json(&dir.join("emergency.json")).unwrap_or(Value::Null);
    let e = &s.emergency;
    EmergencyCallsReport {
        caller: fresh.to_string(),
        numbers: EMERGENCY_NUMBERS.iter().map(|n| n.to_string()).collect(),
        attempted: u(&v, &["accounting", "started"]),
        completed: u(&v, &["outcomes", "completed"]),
        failed: u(&v, &["accounting", "started"]).saturating_sub(u(&v, &["outcomes", "completed"])),
        setup_p50_ms: f(&v, &["latency_us", "setup", "p50_us"]) / 1000.0,
        setup_p99_ms: f(&v, &["latency_us", "setup", "p99_us"]) / 1000.0,
        edge: EdgeEmergencyCounters {
            attempted: e.attempted,
            forwarded: e.forwarded,
            answered: e.answered,
            failed: e.failed,
            over_budget: e.over_budget,
            setup_p50_ms: e.setup_latency.p50_ms,
            setup_p99_ms: e.setup_latency.p99_ms,
        },
    }
}

/// What each attack reported (`attack-KIND.json`), in the order started.
fn attack_lines(dir: &Path, kinds: &[&str]) -> Vec<AttackLine> {
    kinds
        .iter()
        .map(|kind| {
            let v = read_json(&dir.join(format!("attack-{kind}.json"))).unwrap_or(Value::Null);
            AttackLine {
                kind: kind.to_string(),
                sent: u(&v, &["sent"]),
                send_failed: u(&v, &["send_failed"]),
                pps: f(&v, &["pps"]),
                answers: v
                    .get("answers")
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.values().filter_map(Value::as_u64).sum()),
                found: v
                    .get("found")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect()
}

impl DemoReport {
    /// The report of a run: what the peers reported and the edge's final
    /// snapshot `s`.
    fn from_run(
        seconds: u64,
        calls: CallsReport,
        attacks: Vec<AttackLine>,
        s: &Snapshot,
        reflected: u64,
        emergency: EmergencyCallsReport,
    ) -> DemoReport {
        DemoReport {
            seconds,
            attach_mode: s.modes.attach.clone(),
            dataplane_mode: s.modes.dataplane.clone(),
            prefixes: s.routes.prefixes,
            calls,
            attacks,
            xdp_drops: s.xdp.as_ref().map(|x| x.drops.clone()).unwrap_or_default(),
            xdp_redirected: s.xdp.as_ref().map_or(0, |x| x.redirected),
            worker_drops: s.workers.iter().flat_map(|w| w.dropped.clone()).fold(
                Default::default(),
                |mut m, (k, v)| {
                    *m.entry(k).or_default() += v;
                    m
                },
            ),
            worker_answers: s.workers.iter().flat_map(|w| w.answered.clone()).fold(
                Default::default(),
                |mut m, (k, v)| {
                    *m.entry(k).or_default() += v;
                    m
                },
            ),
            route_lookups: s.routes.lookups,
            route_lookups_batched: s.routes.batched_lookups,
            bans: before_or_final_bans(s),
            reflected,
            emergency,
            workers: s
                .workers
                .iter()
                .map(|w| WorkerLine {
                    id: w.id,
                    queue: w.queue,
                    received: w.received,
                    forwarded: w.forwarded_requests + w.forwarded_responses,
                })
                .collect(),
        }
    }
}

fn before_or_final_bans(s: &Snapshot) -> Vec<(String, String)> {
    s.bans
        .iter()
        .map(|b| (b.source.clone(), b.reason.clone()))
        .collect()
}

/// One progress line: totals from `s`, rates per second against `last`
/// over the time between the two snapshots (the edge's own clock), so a
/// snapshot read twice does not show as a second with no traffic.
fn progress_line(elapsed: Duration, s: &Snapshot, last: Option<&Snapshot>) -> String {
    let drops = s.xdp_drops_total();
    let span_ms = last.map_or(0, |l| s.taken_at_ms.saturating_sub(l.taken_at_ms));
    let rate = |now: u64, before: Option<u64>| match before {
        Some(b) if span_ms > 0 => now.saturating_sub(b) * 1000 / span_ms,
        _ => 0,
    };
    let d_drops = rate(drops, last.map(Snapshot::xdp_drops_total));
    let d_calls = rate(s.calls.answered, last.map(|l| l.calls.answered));
    let top: Vec<String> = s
        .xdp
        .as_ref()
        .map(|x| {
            let mut v: Vec<_> = x.drops.iter().filter(|(_, &n)| n > 0).collect();
            v.sort_by(|a, b| b.1.cmp(a.1));
            v.into_iter()
                .take(4)
                .map(|(k, n)| format!("{k} {n}"))
                .collect()
        })
        .unwrap_or_default();
    format!(
        "{:>4}s  calls answered {:>7} (+{:>5}/s) failed {:>4}  setup p50 {:>5.1} ms p99 {:>6.1} ms | XDP dropped {:>9} (+{:>7}/s): {} | bans {} verified {}",
        elapsed.as_secs(),
        s.calls.answered,
        d_calls,
        s.calls.failed,
        s.setup_latency.p50_ms,
        s.setup_latency.p99_ms,
        drops,
        d_drops,
        top.join(", "),
        s.bans.len(),
        s.verified_sources
    )
}

/// The report as a person reads it.
pub fn render(r: &DemoReport) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let c = &r.calls;
    let pct = |n: u64, d: u64| {
        if d == 0 {
            0.0
        } else {
            100.0 * n as f64 / d as f64
        }
    };
    let _ = writeln!(
        o,
        "\ndce-edge demo: {} s; XDP {} mode, AF_XDP {} mode; {} route prefixes",
        r.seconds, r.attach_mode, r.dataplane_mode, r.prefixes
    );
    let _ = writeln!(
        o,
        "\nlegitimate calls (dce-loadgen callers -> edge -> upstream servers)"
    );
    let _ = writeln!(
        o,
        "  offered {}  completed {} ({:.2}%)  failed {}  setup p50 {:.2} ms  p99 {:.2} ms",
        c.offered,
        c.completed,
        pct(c.completed, c.offered),
        c.failed,
        c.setup_p50_ms,
        c.setup_p99_ms
    );
    let e = &r.emergency;
    let _ = writeln!(
        o,
        "\nemergency calls during the flood ({}: not allowlisted, never verified before its first call; dials {})",
        e.caller,
        e.numbers.join(", ")
    );
    let _ = writeln!(
        o,
        "  attempted {}  completed {}  failed {}  setup p50 {:.2} ms  p99 {:.2} ms",
        e.attempted, e.completed, e.failed, e.setup_p50_ms, e.setup_p99_ms
    );
    let _ = writeln!(
        o,
        "  the edge's counters: attempted {}  forwarded {}  answered {}  failed {}  over budget {}  setup p50 {:.2} ms  p99 {:.2} ms",
        e.edge.attempted,
        e.edge.forwarded,
        e.edge.answered,
        e.edge.failed,
        e.edge.over_budget,
        e.edge.setup_p50_ms,
        e.edge.setup_p99_ms
    );
    let _ = writeln!(
        o,
        "\nattacks (sent at the rate reached / refused by the sender's kernel / SIP answers received / found)"
    );
    for a in &r.attacks {
        let found = if a.found.is_empty() {
            "nothing".to_string()
        } else {
            a.found.join(", ")
        };
        let _ = writeln!(
            o,
            "  {:<8} {:>10} sent {:>8.0} pps  {:>6} refused  {:>6} answers  found {}",
            a.kind, a.sent, a.pps, a.send_failed, a.answers, found
        );
    }
    let _ = writeln!(o, "\ndropped in XDP, by reason");
    let width = r.xdp_drops.keys().map(String::len).max().unwrap_or(0);
    for (k, v) in &r.xdp_drops {
        let _ = writeln!(o, "  {k:<width$} {v:>10}");
    }
    let _ = writeln!(o, "reached the workers (AF_XDP): {}", r.xdp_redirected);
    if r.workers.len() > 1 {
        for w in &r.workers {
            let queue = w.queue.map_or("-".into(), |q| q.to_string());
            let _ = writeln!(
                o,
                "  worker {} (queue {queue}): received {}, forwarded {}",
                w.id, w.received, w.forwarded
            );
        }
    }
    let _ = writeln!(o, "  dropped there, by reason: {:?}", r.worker_drops);
    let _ = writeln!(o, "  answered locally, by code: {:?}", r.worker_answers);
    let _ = writeln!(
        o,
        "  route lookups: {} ({} of them batched per receive batch)",
        r.route_lookups, r.route_lookups_batched
    );
    let _ = writeln!(o, "\nbans in force: {}", r.bans.len());
    for (src, why) in &r.bans {
        let _ = writeln!(o, "  {src:<20} {why}");
    }
    let _ = writeln!(
        o,
        "\nreflected to spoofed sources: {} datagrams",
        r.reflected
    );
    o
}
