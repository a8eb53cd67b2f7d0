//! dce-loadgen against SIPp on this box, measured the same way in the same
//! run: the highest call rate each tool's callers and servers sustain against
//! each other on 127.0.0.1 (failed calls < 0.1% **and** calls started at
//! 97% of the offered rate or more: `loadgen::held`, the rule the capacity
//! search uses), and the CPU each used (from /proc/PID/stat deltas), so
//! calls per CPU-second can be compared. A step whose calls all completed
//! but were started at a fraction of the offered rate measured that
//! fraction: it does not hold, and the line says whether the callers' own
//! figures (dce-loadgen's pacer lag and busiest thread; SIPp's CPU) show
//! that they fell behind.
//!
//! Both tools run as two processes, callers pinned to core 0 and servers to
//! core 1 (`taskset`). SIPp runs its built-in `uac` scenario against a UAS
//! scenario answering 200 alone (as PLATFORM.md advises), both with
//! `-buff_size 4194304`. dce-loadgen's processes are this bench binary
//! re-executed in a role (`DCE_LOADGEN_BENCH_ROLE`), running the library.
//!
//! Run: `cargo bench -p dce-lab --bench loadgen_vs_sipp`
//! Knobs (environment): DCE_BENCH_STEP_SECS (5), DCE_BENCH_START_CPS (2000),
//! DCE_BENCH_MAX_CPS (400000), DCE_BENCH_GROWTH (1.5), DCE_BENCH_REFINE (3),
//! DCE_BENCH_SOURCES (caller sockets of dce-loadgen, 32).

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use lab::cpu::ticks_per_second;
use lab::netns::ChildGuard;
use loadgen::held::{self, GeneratorLoad, Limits, StepFacts, StepVerdict};

const ROLE: &str = "DCE_LOADGEN_BENCH_ROLE";
const UAC_CORE: &str = "0";
const UAS_CORE: &str = "1";

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        child_role(&role);
        return;
    }
    if !lab::privilege::have_program("sipp") || !lab::privilege::have_program("taskset") {
        eprintln!("loadgen_vs_sipp: needs sipp (Debian sip-tester) and taskset; skipping");
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 {
        eprintln!(
            "loadgen_vs_sipp: needs 2 cores (callers on core 0, servers on core 1); skipping"
        );
        return;
    }
    let plan = Plan {
        step: Duration::from_secs_f64(env_f64("DCE_BENCH_STEP_SECS", 5.0)),
        start: env_f64("DCE_BENCH_START_CPS", 2000.0),
        max: env_f64("DCE_BENCH_MAX_CPS", 400_000.0),
        growth: env_f64("DCE_BENCH_GROWTH", 1.5),
        refine: env_f64("DCE_BENCH_REFINE", 3.0) as u32,
    };
    let sources = env_f64("DCE_BENCH_SOURCES", 32.0) as usize;
    let load_before = loadavg();
    println!(
        "loadgen_vs_sipp: steps of {:.0} s from {:.0} cps (x{} up, {} refinements), pass = failed < 0.1% and started at >= 97% of the offered rate; load average before: {load_before}",
        plan.step.as_secs_f64(),
        plan.start,
        plan.growth,
        plan.refine
    );
    let dir = std::env::temp_dir().join(format!("dce-bench-sipp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");

    let dce = search("dce-loadgen", &plan, |cps, port| {
        dce_step(cps, port, plan.step, sources)
    });
    let sipp = search("sipp", &plan, |cps, port| {
        sipp_step(cps, port, plan.step, &dir)
    });
    let _ = std::fs::remove_dir_all(&dir);

    println!();
    println!(
        "loadgen_vs_sipp results (load average before {load_before}, after {})",
        loadavg()
    );
    println!(
        "  {:<12} {:>10} {:>12} {:>10} {:>9} {:>10} {:>10} {:>11} {:>14}",
        "tool",
        "held cps",
        "achieved cps",
        "completed",
        "failed%",
        "uac cpu s",
        "uas cpu s",
        "cores busy",
        "calls/cpu-s"
    );
    for (name, best) in [("dce-loadgen", &dce), ("sipp", &sipp)] {
        match best {
            Some(s) => println!(
                "  {:<12} {:>10.0} {:>12.0} {:>10} {:>9.3} {:>10.2} {:>10.2} {:>11.2} {:>14.0}",
                name,
                s.offered,
                s.achieved,
                s.completed,
                s.failed_ratio() * 100.0,
                s.uac_cpu_s,
                s.uas_cpu_s,
                s.cores_busy(),
                s.calls_per_cpu_second()
            ),
            None => println!("  {name:<12} no rate held"),
        }
    }
    if let (Some(d), Some(s)) = (&dce, &sipp) {
        println!(
            "  ratio dce-loadgen / sipp: held cps {:.2}x, calls per CPU-second {:.2}x (target: 5x per core used)",
            d.offered / s.offered,
            d.calls_per_cpu_second() / s.calls_per_cpu_second()
        );
    }
}

struct Plan {
    step: Duration,
    start: f64,
    max: f64,
    growth: f64,
    refine: u32,
}

#[derive(Debug, Clone)]
struct StepResult {
    offered: f64,
    /// Calls per second really started.
    achieved: f64,
    /// The callers' own load, as far as the tool shows it.
    generator: GeneratorLoad,
    started: u64,
    completed: u64,
    wall_s: f64,
    uac_cpu_s: f64,
    uas_cpu_s: f64,
}

impl StepResult {
    fn failed_ratio(&self) -> f64 {
        if self.started == 0 {
            1.0
        } else {
            (self.started - self.completed.min(self.started)) as f64 / self.started as f64
        }
    }
    /// The shared rule: failed < 0.1% and started at >= 97% of the offered
    /// rate.
    fn verdict(&self) -> StepVerdict {
        held::judge(
            &StepFacts {
                offered_cps: self.offered,
                achieved_cps: self.achieved,
                started: self.started,
                failed_ratio: self.failed_ratio(),
                p99_us: None,
                retransmitted_ratio: None,
                generator: self.generator,
            },
            &Limits::new(0.001),
        )
    }
    fn held(&self) -> bool {
        self.verdict().held()
    }
    fn cores_busy(&self) -> f64 {
        (self.uac_cpu_s + self.uas_cpu_s) / self.wall_s.max(1e-9)
    }
    fn calls_per_cpu_second(&self) -> f64 {
        self.completed as f64 / (self.uac_cpu_s + self.uas_cpu_s).max(1e-9)
    }
}

/// Rising steps until one fails, then bisection between the last good and
/// the first bad rate; returns the best step that held.
fn search(
    tool: &str,
    plan: &Plan,
    mut step: impl FnMut(f64, u16) -> Option<StepResult>,
) -> Option<StepResult> {
    let mut port = 21000 + (std::process::id() % 2000) as u16 * 10;
    let mut run = |cps: f64| -> Option<StepResult> {
        port += 3;
        let r = step(cps, port);
        match &r {
            Some(s) => println!(
                "  {tool:<12} {:>8.0} cps: achieved {:>8.0} cps  started {:>8} completed {:>8} failed {:>7.3}%  uac {:>6.2} s  uas {:>6.2} s  cores {:>4.2}  calls/cpu-s {:>7.0}  us CPU/call {:>6.1}  {}",
                cps,
                s.achieved,
                s.started,
                s.completed,
                s.failed_ratio() * 100.0,
                s.uac_cpu_s,
                s.uas_cpu_s,
                s.cores_busy(),
                s.calls_per_cpu_second(),
                1e6 / s.calls_per_cpu_second().max(1e-9),
                s.verdict()
            ),
            None => println!("  {tool:<12} {cps:>8.0} cps: the step could not run"),
        }
        std::thread::sleep(Duration::from_secs(1));
        r
    };
    let mut best: Option<StepResult> = None;
    let mut bad: Option<f64> = None;
    let mut cps = plan.start;
    loop {
        match run(cps) {
            Some(s) if s.held() => {
                best = Some(s);
                if cps >= plan.max {
                    break;
                }
                cps = (cps * plan.growth).min(plan.max);
            }
            _ => {
                bad = Some(cps);
                break;
            }
        }
    }
    for _ in 0..plan.refine {
        let (Some(g), Some(b)) = (best.as_ref().map(|s| s.offered), bad) else {
            break;
        };
        let mid = ((g + b) / 2.0).round();
        if mid <= g || mid >= b {
            break;
        }
        match run(mid) {
            Some(s) if s.held() => best = Some(s),
            _ => bad = Some(mid),
        }
    }
    best
}

/// utime + stime of a process in clock ticks, and its state letter.
fn proc_ticks(pid: u32) -> Option<(u64, char)> {
    lab::cpu::proc_stat(pid).map(|s| (s.ticks, s.state))
}

/// Waits for `child` to exit, returning its CPU ticks read while it is a
/// zombie (so nothing it used is missed) and the wall time.
fn wait_measured(child: &mut std::process::Child, limit: Duration) -> (u64, f64) {
    let start = Instant::now();
    let pid = child.id();
    let mut last = 0;
    loop {
        match proc_ticks(pid) {
            Some((t, 'Z')) => {
                last = t;
                break;
            }
            Some((t, _)) => last = t,
            None => break,
        }
        if start.elapsed() > limit {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.wait();
    (last, start.elapsed().as_secs_f64())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn self_role(role: &str, core: &str) -> Command {
    let mut c = Command::new("taskset");
    c.arg("-c")
        .arg(core)
        .arg(std::env::current_exe().expect("own path"))
        .env(ROLE, role);
    c
}

fn dce_step(cps: f64, port: u16, step: Duration, sources: usize) -> Option<StepResult> {
    let listen = format!("127.0.0.1:{port}");
    let uas = self_role("uas", UAS_CORE)
        .env("DCE_BENCH_LISTEN", &listen)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let uas_pid = uas.id();
    let mut uas = ChildGuard::new(uas);
    // Give the server a moment to bind before calls start.
    std::thread::sleep(Duration::from_millis(300));
    let before = proc_ticks(uas_pid)?.0;
    let mut uac = self_role("uac", UAC_CORE)
        .env("DCE_BENCH_TARGET", &listen)
        .env("DCE_BENCH_CPS", cps.to_string())
        .env("DCE_BENCH_SECS", step.as_secs_f64().to_string())
        .env("DCE_BENCH_SOURCES", sources.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut out = uac.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let (uac_ticks, wall) = wait_measured(&mut uac, step + Duration::from_secs(80));
    let after = proc_ticks(uas_pid)?.0;
    let _ = uas.stop(Duration::from_secs(3));
    let json: serde_json::Value = serde_json::from_str(&reader.join().ok()?).ok()?;
    let hz = ticks_per_second();
    let busiest = json["threads"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| t["peak_busy"].as_f64())
                .fold(0.0, f64::max)
        })
        .unwrap_or(0.0);
    Some(StepResult {
        offered: cps,
        achieved: json["achieved_cps"].as_f64()?,
        generator: GeneratorLoad {
            busy: Some(busiest),
            pacing_lag_us: json["latency_us"]["start_lag"]["max_us"].as_u64(),
        },
        started: json["started"].as_u64()?,
        completed: json["outcomes"]["completed"].as_u64()?,
        wall_s: wall,
        uac_cpu_s: uac_ticks as f64 / hz,
        uas_cpu_s: after.saturating_sub(before) as f64 / hz,
    })
}

const SIPP_UAS: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="UAS answering 200 alone">
  <recv request="INVITE" crlf="true"/>
  <send>
    <![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000

    ]]>
  </send>
  <recv request="ACK" crlf="true"/>
  <recv request="BYE"/>
  <send>
    <![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Length: 0

    ]]>
  </send>
  <!-- Keep the call a while so a retransmitted BYE is answered again. -->
  <timewait milliseconds="4000"/>
</scenario>
"#;

fn sipp_step(cps: f64, port: u16, step: Duration, dir: &std::path::Path) -> Option<StepResult> {
    let scenario = dir.join("uas200.xml");
    std::fs::write(&scenario, SIPP_UAS).ok()?;
    let stat = dir.join(format!("uac-{port}.csv"));
    let _ = std::fs::remove_file(&stat);
    let uas = Command::new("taskset")
        .args(["-c", UAS_CORE, "sipp", "-sf"])
        .arg(&scenario)
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-buff_size",
            "4194304",
            "-nostdin",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let uas_pid = uas.id();
    let mut uas = ChildGuard::new(uas);
    std::thread::sleep(Duration::from_millis(500));
    let before = proc_ticks(uas_pid)?.0;
    let calls = (cps * step.as_secs_f64()).round() as u64;
    let mut uac = Command::new("taskset")
        .args(["-c", UAC_CORE, "sipp", "-sn", "uac"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-i", "127.0.0.1", "-p", &(port + 1).to_string()])
        .args([
            "-r",
            &format!("{cps:.0}"),
            "-rp",
            "1000",
            "-m",
            &calls.to_string(),
        ])
        .args([
            "-buff_size",
            "4194304",
            "-nostdin",
            "-trace_stat",
            "-fd",
            "1",
        ])
        .arg("-stf")
        .arg(&stat)
        .args(["-timeout", &format!("{}s", step.as_secs() + 40)])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let (uac_ticks, wall) = wait_measured(&mut uac, step + Duration::from_secs(80));
    let after = proc_ticks(uas_pid)?.0;
    let _ = uas.stop(Duration::from_secs(3));
    let text = std::fs::read_to_string(&stat).ok()?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next()?.split(';').collect();
    let last: Vec<&str> = text.lines().last()?.split(';').collect();
    let col = |name: &str| -> Option<u64> {
        let i = header.iter().position(|h| *h == name)?;
        last.get(i)?.trim().parse().ok()
    };
    let hz = ticks_per_second();
    let started = col("OutgoingCall(C)")?;
    let uac_cpu_s = uac_ticks as f64 / hz;
    Some(StepResult {
        offered: cps,
        // The time SIPp took to start the calls asked for, from its
        // statistics file; when it never started them all, its calls over
        // the whole run (lower still).
        achieved: lab::sipp::start_rate(&stat, calls).unwrap_or(started as f64 / wall.max(1e-9)),
        // SIPp shows no pacer lag; its caller is one thread, so its
        // average CPU over the run is its busiest thread's.
        generator: GeneratorLoad {
            busy: Some(uac_cpu_s / wall.max(1e-9)),
            pacing_lag_us: None,
        },
        started,
        completed: col("SuccessfulCall(C)")?,
        wall_s: wall,
        uac_cpu_s,
        uas_cpu_s: after.saturating_sub(before) as f64 / hz,
    })
}

/// The dce-loadgen processes of a step: this binary in a role.
fn child_role(role: &str) {
    let stop = loadgen::cli::stop_flag();
    match role {
        "uas" => {
            let listen = std::env::var("DCE_BENCH_LISTEN").expect("DCE_BENCH_LISTEN");
            let cfg = loadgen::uas::UasConfig::new(listen.parse().expect("listen address"));
            let r = loadgen::uas::run(cfg, Duration::from_secs(600), &stop).expect("servers");
            eprint!("{r}");
        }
        "uac" => {
            let target = std::env::var("DCE_BENCH_TARGET").expect("DCE_BENCH_TARGET");
            let mut cfg = loadgen::uac::UacConfig::new(target.parse().expect("target"));
            cfg.cps = env_f64("DCE_BENCH_CPS", 1000.0);
            cfg.duration = Duration::from_secs_f64(env_f64("DCE_BENCH_SECS", 5.0));
            cfg.max_calls = u64::MAX;
            cfg.sources = env_f64("DCE_BENCH_SOURCES", 32.0) as usize;
            let r = loadgen::uac::run(&cfg, &AtomicBool::new(false)).expect("callers");
            eprint!("{r}");
            println!("{}", r.to_json());
        }
        other => panic!("unknown role {other}"),
    }
    let _ = stop;
}
