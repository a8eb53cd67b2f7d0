//! `dce-edge demo --fleet N`: the fleet lab ([`super::fleet`]) with calls
//! running through it, and what a fleet is for, shown as it happens: the
//! router spreads the calls over the edges; a third of the way in, one
//! edge is stopped (it withdraws its route first, the calls go on), and
//! later started again; halfway, a verified scanner is banned on the edge
//! it reaches and, over the bus, on every other. The report gives the
//! per-edge split, the failover and the spread of the ban.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::bin::TempDir;
use super::fleet::{bans_host, FleetLab, FleetSpec, NUMBER, PATIENCE, SCANNER, SERVICE_SIP};
use super::redteam::{place_call_to, scanner_options, Calls, LoadgenUas};

/// What to run.
#[derive(Debug, Clone)]
pub struct FleetDemoOptions {
    /// Edges (2 to 9).
    pub edges: usize,
    /// How long calls run, in seconds.
    pub seconds: u64,
    /// Calls started per second.
    pub cps: u32,
    /// Write the report as JSON here too.
    pub json: Option<PathBuf>,
    /// Keep the lab's files here instead of a temporary directory.
    pub keep: Option<PathBuf>,
}

/// One edge's share.
#[derive(Debug, Clone, Serialize)]
pub struct EdgeShare {
    /// `e1`, ...
    pub edge: String,
    /// INVITEs it forwarded (over both of its runs for the restarted one).
    pub invites_forwarded: u64,
    /// Sources verified there at the end (its own proofs and the fleet's).
    pub verified: u64,
}

/// The demo's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct FleetDemoReport {
    /// Edges.
    pub edges: usize,
    /// Seconds of calls.
    pub seconds: u64,
    /// Calls per second asked for.
    pub cps: u32,
    /// Calls offered.
    pub offered: u64,
    /// Calls completed (INVITE, 200, ACK, BYE, 200).
    pub completed: u64,
    /// Calls that did not complete.
    pub failed: u64,
    /// The per-edge split.
    pub split: Vec<EdgeShare>,
    /// After SIGTERM to e1: until the router dropped its route, in ms.
    pub withdrawn_after_ms: Option<f64>,
    /// From e1's withdrawal to its stop, as its event log says (the grace
    /// time it served), in ms.
    pub stopped_after_ms: Option<f64>,
    /// After e1 started again: until the router used it again, in ms.
    pub back_after_ms: Option<f64>,
    /// The edge that banned the scanner.
    pub scanner_banned_on: Option<String>,
    /// From that ban until every edge had it, in ms.
    pub ban_everywhere_after_ms: Option<f64>,
}

fn preflight() -> Result<()> {
    if !super::privilege::is_root() {
        bail!("dce-edge demo --fleet needs root: it creates network namespaces and attaches XDP programs (run it with sudo)");
    }
    for (p, pkg) in [
        ("bird", "bird2"),
        ("birdc", "bird2"),
        ("nats-server", "nats-server"),
        ("nsenter", "util-linux"),
        ("ip", "iproute2"),
    ] {
        if !super::privilege::have_program(p) {
            bail!("`{p}` is missing: apt-get install {pkg} (scripts/setup.sh)");
        }
    }
    Ok(())
}

fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the dce-edge binary")?;
    let path = exe.with_file_name(name);
    if !path.is_file() {
        bail!(
            "{} is missing: build the workspace (`cargo build --release --workspace --bins`)",
            path.display()
        );
    }
    Ok(path)
}

fn forwarded(lab: &FleetLab) -> Vec<Option<u64>> {
    lab.edges
        .iter()
        .map(|e| {
            e.process
                .as_ref()
                .and_then(|p| p.snapshot().ok())
                .map(|s| s.calls.invites_forwarded)
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs the demo; `stop` (Ctrl-C) ends it early with a report of what ran.
pub fn run(opts: &FleetDemoOptions, stop: Arc<AtomicBool>) -> Result<FleetDemoReport> {
    preflight()?;
    let edge_bin = std::env::current_exe()?;
    let loadgen = sibling("dce-loadgen")?;
    let edges = opts.edges.clamp(2, 9);
    let seconds = opts.seconds.clamp(10, 3600);
    let cps = opts.cps.clamp(1, 2000);
    let tmp;
    let dir: PathBuf = match &opts.keep {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            tmp = TempDir::new("fdemo")?;
            tmp.path().to_path_buf()
        }
    };
    println!("building the fleet lab: a BGP router with ECMP, {edges} edges (BIRD + dce-edge, AF_XDP), 2 upstreams, callers, a NATS bus ...");
    // The demo's verified scanner is banned by the XDP program and the ban
    // shared: the operator's opt-in to bans on UDP evidence.
    let spec = FleetSpec {
        edges,
        edge_binary: Some(edge_bin),
        auto_ban: true,
        ..FleetSpec::default()
    };
    let mut lab = FleetLab::build(&spec, &dir)?;
    let _uas: Vec<LoadgenUas> = lab
        .upstreams
        .iter()
        .map(|u| LoadgenUas::start_with(u, &dir, &loadgen))
        .collect::<std::io::Result<_>>()?;
    lab.start_edges()?;
    let all: Vec<usize> = (0..edges).collect();
    lab.wait_announcing(&all, PATIENCE)
        .map_err(anyhow::Error::msg)?;
    println!(
        "every edge announces {SERVICE_SIP}; the router's route:\n{}",
        lab.router_route().trim_end()
    );
    let per_address = (u64::from(cps) * seconds / lab.caller_addrs().len() as u64).max(16);
    let mut calls = Calls::new(&lab.caller_addrs(), cps, per_address);
    calls.target = SERVICE_SIP;
    calls.sources = lab.caller_addrs().len() * 4;
    calls.binary = Some(loadgen);
    let offered = calls.calls;
    println!(
        "{offered} calls at {cps} cps from {} callers over {} flows; e1 stops at {} s and starts again at {} s; a scanner sweeps at {} s\n",
        lab.caller_addrs().len(),
        calls.sources,
        seconds / 3,
        2 * seconds / 3,
        seconds / 2
    );
    let running = calls.spawn(&lab.callers.ns, &dir)?;
    let start = Instant::now();
    let mut report = FleetDemoReport {
        edges,
        seconds,
        cps,
        offered,
        completed: 0,
        failed: 0,
        split: Vec::new(),
        withdrawn_after_ms: None,
        stopped_after_ms: None,
        back_after_ms: None,
        scanner_banned_on: None,
        ban_everywhere_after_ms: None,
    };
    let mut e1_before = 0u64;
    type Stopped = (std::io::Result<()>, super::edge_process::EdgeProcess);
    let mut stopper: Option<std::thread::JoinHandle<Stopped>> = None;
    let mut stop_sent: Option<Instant> = None;
    let mut restart_at: Option<Instant> = None;
    let mut swept = false;
    let mut sweeper: Option<std::thread::JoinHandle<std::io::Result<()>>> = None;
    let mut ban_first: Option<(String, Instant)> = None;
    let mut starter: Option<
        std::thread::JoinHandle<(std::io::Result<()>, super::edge_process::EdgeProcess)>,
    > = None;
    let mut last = vec![0u64; edges];
    let mut tick = 1u64;
    let end = start + Duration::from_secs(seconds + 3);
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        let due = start + Duration::from_secs(tick);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            let measuring = (stop_sent.is_some() && report.withdrawn_after_ms.is_none())
                || (restart_at.is_some() && report.back_after_ms.is_none());
            let banning = swept && report.ban_everywhere_after_ms.is_none();
            let step = if measuring {
                5
            } else if banning {
                100
            } else {
                200
            };
            std::thread::sleep(wait.min(Duration::from_millis(step)));
            if Instant::now() < due {
                // Meanwhile: catch the router dropping or taking back e1.
                if let (Some(t), None) = (stop_sent, report.withdrawn_after_ms) {
                    if !lab.announcing().contains(&0) {
                        report.withdrawn_after_ms = Some(ms(t.elapsed()));
                    }
                }
                if let (Some(t), None) = (restart_at, report.back_after_ms) {
                    if lab.announcing().contains(&0) {
                        report.back_after_ms = Some(ms(t.elapsed()));
                    }
                }
                if banning {
                    check_ban(&lab, &mut ban_first, &mut report);
                }
                continue;
            }
        }
        if starter.as_ref().is_some_and(|h| h.is_finished()) {
            let (r, p) = starter
                .take()
                .expect("checked")
                .join()
                .expect("the starter thread");
            if let Err(e) = r {
                println!("       e1: did not start again: {e}");
            }
            lab.edges[0].process = Some(p);
        }
        let now = forwarded(&lab);
        let mut line = format!("{:>4}s  INVITEs forwarded", tick);
        for (i, n) in now.iter().enumerate() {
            match n {
                Some(n) => {
                    let d = n.saturating_sub(last[i]);
                    last[i] = *n;
                    line.push_str(&format!("  e{} {:>6} (+{:>4}/s)", i + 1, n, d));
                }
                None => line.push_str(&format!("  e{} {:>6} (stopped) ", i + 1, "-")),
            }
        }
        let ann = lab.announcing();
        line.push_str(&format!(
            "  | announcing: {}",
            ann.iter()
                .map(|i| format!("e{}", i + 1))
                .collect::<Vec<_>>()
                .join(" ")
        ));
        println!("{line}");
        let _ = std::io::stdout().flush();
        // A third of the way in: e1 stops (SIGTERM).
        if tick == seconds / 3 && stopper.is_none() {
            e1_before = now[0].unwrap_or(0);
            let mut p = lab.edges[0].process.take().expect("e1 runs");
            stop_sent = Some(Instant::now());
            println!("       e1: SIGTERM (it withdraws its route, serves its grace time, exits)");
            stopper = Some(std::thread::spawn(move || {
                let r = p.stop().map(|_| ());
                (r, p)
            }));
        }
        if tick == seconds / 2 && !swept {
            swept = true;
            // In the background, so the per-second lines stay honest.
            let ns = lab.callers.ns.open()?;
            sweeper = Some(std::thread::spawn(move || -> std::io::Result<()> {
                super::netns::enter_netns(&ns)?;
                let local = SocketAddrV4::new(SCANNER, 40_000);
                place_call_to(local, SERVICE_SIP, NUMBER)?;
                let s = std::net::UdpSocket::bind(local)?;
                // Over a second: the proof of the call reaches the XDP
                // filter a few milliseconds after its ACK.
                for i in 0..10 {
                    std::thread::sleep(Duration::from_millis(100));
                    s.send_to(
                        scanner_options(local, &format!("demo{i}")).as_bytes(),
                        SERVICE_SIP,
                    )?;
                }
                Ok(())
            }));
            println!("       scanner {SCANNER}: a real call (so it is verified), then a friendly-scanner sweep");
        }
        if swept && report.ban_everywhere_after_ms.is_none() {
            check_ban(&lab, &mut ban_first, &mut report);
        }
        if tick == 2 * seconds / 3 {
            if let Some(h) = stopper.take() {
                let (r, p) = h.join().expect("the stopper thread");
                if let Err(e) = r {
                    println!("       e1: did not stop cleanly: {e}");
                }
                report.stopped_after_ms = served_grace_ms(&p.events());
                restart_at = Some(Instant::now());
                println!("       e1: started again (it announces after its hold-down)");
                starter = Some(std::thread::spawn(move || {
                    let mut p = p;
                    let r = p.restart();
                    (r, p)
                }));
            }
        }
        tick += 1;
    }
    if let Some(h) = stopper.take() {
        let (_, p) = h.join().expect("the stopper thread");
        lab.edges[0].process = Some(p);
    }
    if let Some(h) = starter.take() {
        let (r, p) = h.join().expect("the starter thread");
        if let Err(e) = r {
            println!("       e1: did not start again: {e}");
        }
        lab.edges[0].process = Some(p);
    }
    if let Some(h) = sweeper.take() {
        if let Ok(Err(e)) = h.join() {
            println!("       scanner: {e}");
        }
    }
    let outcome = running.wait()?;
    report.completed = outcome.completed;
    report.failed = outcome.calls.saturating_sub(outcome.completed);
    for (i, e) in lab.edges.iter().enumerate() {
        let s = e.process.as_ref().and_then(|p| p.snapshot().ok());
        let mut n = s.as_ref().map_or(0, |s| s.calls.invites_forwarded);
        if i == 0 {
            n += e1_before;
        }
        report.split.push(EdgeShare {
            edge: e.name.clone(),
            invites_forwarded: n,
            verified: s.map_or(0, |s| s.verified_sources),
        });
    }
    if let Some(path) = &opts.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report)
}

/// From the first `withdraw` (reason `stopping`) to the `stop` event after
/// it, in ms, from the edge's event log (times of one day: `HH:MM:SS.mmm`).
fn served_grace_ms(events: &[serde_json::Value]) -> Option<f64> {
    let secs = |e: &serde_json::Value| -> Option<f64> {
        let t = e["time"].as_str()?;
        let hms = t.get(11..23)?;
        let mut parts = hms.split(':');
        let h: f64 = parts.next()?.parse().ok()?;
        let m: f64 = parts.next()?.parse().ok()?;
        let s: f64 = parts.next()?.parse().ok()?;
        Some(h * 3600.0 + m * 60.0 + s)
    };
    let i = events
        .iter()
        .position(|e| e["event"] == "withdraw" && e["reason"] == "stopping")?;
    let w = secs(&events[i])?;
    let s = events[i..]
        .iter()
        .find(|e| e["event"] == "stop")
        .and_then(secs)?;
    Some(((s - w).rem_euclid(86_400.0)) * 1e3)
}

/// Which edges ban the scanner: notes the first, and when every running
/// edge does.
fn check_ban(lab: &FleetLab, first: &mut Option<(String, Instant)>, report: &mut FleetDemoReport) {
    let ip = IpAddr::V4(SCANNER);
    let banned: Vec<Option<bool>> = lab
        .edges
        .iter()
        .map(|e| {
            e.process
                .as_ref()
                .and_then(|p| p.snapshot().ok())
                .map(|s| bans_host(&s, ip))
        })
        .collect();
    if first.is_none() {
        if let Some(i) = banned.iter().position(|b| *b == Some(true)) {
            *first = Some((lab.edges[i].name.clone(), Instant::now()));
            println!("       scanner banned on {}", lab.edges[i].name);
        }
    }
    if let Some((edge, at)) = first {
        if banned.iter().all(|b| *b != Some(false)) {
            report.ban_everywhere_after_ms = Some(ms(at.elapsed()));
            report.scanner_banned_on = Some(edge.clone());
            println!(
                "       scanner banned on every running edge, {:.0} ms after {edge}",
                ms(at.elapsed())
            );
        }
    }
}

/// The report as text.
pub fn render(r: &FleetDemoReport) -> String {
    let mut out = format!(
        "\ndce-edge demo --fleet {}: {} s of calls at {} cps through one anycast address\n\n",
        r.edges, r.seconds, r.cps
    );
    out.push_str(&format!(
        "calls: offered {}  completed {}  failed {}\n\nper-edge split (INVITEs forwarded; the router's ECMP hash spreads the flows)\n",
        r.offered, r.completed, r.failed
    ));
    let total: u64 = r
        .split
        .iter()
        .map(|s| s.invites_forwarded)
        .sum::<u64>()
        .max(1);
    for s in &r.split {
        out.push_str(&format!(
            "  {:<4} {:>7}  {:>5.1}%   verified sources there {}\n",
            s.edge,
            s.invites_forwarded,
            100.0 * s.invites_forwarded as f64 / total as f64,
            s.verified
        ));
    }
    let f = |v: Option<f64>| v.map_or("-".to_string(), |m| format!("{m:.0} ms"));
    out.push_str(&format!(
        "\nfailover: e1 SIGTERM -> route withdrawn at the router {}, workers stopped {} after the withdrawal (grace time); started again -> announced {}\n",
        f(r.withdrawn_after_ms),
        f(r.stopped_after_ms),
        f(r.back_after_ms)
    ));
    out.push_str(&format!(
        "shared ban: scanner banned on {} -> on every running edge {} later\n",
        r.scanner_banned_on.as_deref().unwrap_or("-"),
        f(r.ban_everywhere_after_ms)
    ));
    out
}
