//! Emergency calls through `dce-edge run` in the lab, under attack (issue
//! 18): a caller the edge has never seen, and a banned one, reach the
//! emergency centre during a spoofed INVITE flood, past a CPS cap of 1 on
//! the emergency group; and a flood of forged emergency INVITEs reaches the
//! emergency centre only within the emergency budget while a real caller's
//! emergency calls still complete.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use dataplane::IoMode;
use lab::bin::{workspace_binary, TempDir};
use lab::edge_process::{groups_toml, EdgeConfig, EdgeProcess};
use lab::netns::ChildGuard;
use lab::sipp::{Uac, Uas};
use lab::topology::{Host, Lab, LabSpec};

/// Where the forged sources come from.
const SPOOF: &str = "198.18.128.0/17";

/// `dce-loadgen attack flood` from the attacker's namespace, spoofing
/// [`SPOOF`], at `pps` for at most `seconds`; `number` dials one number.
fn flood(
    attacker: &Host,
    target: SocketAddr,
    pps: u64,
    seconds: u64,
    number: Option<&str>,
) -> ChildGuard {
    let mut cmd = attacker
        .ns
        .command(workspace_binary("dce-loadgen").to_str().unwrap());
    cmd.args(["attack", "flood", "--iface", &attacker.iface])
        .args(["--target", &target.to_string(), "--spoof", SPOOF])
        .args([
            "--pps",
            &pps.to_string(),
            "--count",
            &(pps * seconds).to_string(),
        ])
        .args(["--duration", &seconds.to_string()]);
    if let Some(n) = number {
        cmd.args(["--number", n]);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    ChildGuard::new(cmd.spawn().expect("dce-loadgen starts"))
}

/// SIPp calls to `number` from `local` on `port`: every one must complete.
fn calls(
    lab: &Lab,
    edge: &EdgeProcess,
    dir: &Path,
    local: Ipv4Addr,
    port: u16,
    number: &str,
    n: u32,
) {
    let mut uac = Uac::new(local, edge.sip_addr(), number, 2, n);
    uac.port = port;
    let run = uac.run(&lab.callers.ns, dir).unwrap();
    if !run.all_successful() {
        let s = edge.snapshot().ok();
        panic!(
            "{number} from {local}: {}\nemergency: {:?}\nworker drops: {:?}\nXDP: {:?}\nedge log:\n{}",
            run.report(),
            s.as_ref().map(|s| s.emergency.clone()),
            s.as_ref().map(|s| s
                .workers
                .iter()
                .map(|w| (w.dropped.clone(), w.rings.clone()))
                .collect::<Vec<_>>()),
            s.as_ref().map(|s| s.xdp.clone()),
            edge.log_text()
        );
    }
}

fn emergency_calls_pass_the_attacks(mode: IoMode, test: &str) {
    let Some(lab) = super::sipp_lab_or_skip(
        test,
        &LabSpec {
            caller_addrs: 3,
            upstreams: 2,
            attacker: true,
            edge_queues: 1,
        },
    ) else {
        return;
    };
    let attacker = lab.attacker.as_ref().unwrap();
    let dir = TempDir::new("sos").unwrap();
    let carrier = Uas::start(&lab.upstreams[0], dir.path()).unwrap();
    let psap = Uas::start(&lab.upstreams[1], dir.path()).unwrap();
    let mut groups = groups_toml(None, &[("uk", &[carrier.addr()])]);
    groups.push_str(&format!(
        "[[group]]\nname = \"psap\"\naction = \"forward\"\nemergency = true\ncps_cap = 1\n\
         targets = [{{ address = \"{}\" }}]\n",
        psap.addr()
    ));
    let mut cfg = EdgeConfig::new(&lab, mode, groups, "prefix,group\n44,uk\n".into());
    // The callers are strangers: only the upstreams are trusted.
    cfg.allowlist = lab
        .upstreams
        .iter()
        .map(|u| format!("{}/32", u.addr()))
        .collect();
    // This shared 2-core box runs the flood, the edge and the callers:
    // the flood is shed in XDP, not by a worker it would starve.
    cfg.filter = "unverified_cap_pps = 2000\n".into();
    let edge = EdgeProcess::start(&lab, dir.path(), &cfg).unwrap();
    let (banned, fresh, verified) = (
        lab.callers.addrs[0],
        lab.callers.addrs[1],
        lab.callers.addrs[2],
    );

    // An operator ban of one caller (it still reaches emergency services).
    let control = edge.control_socket();
    let out = edge
        .command(&[
            "ban",
            &format!("{banned}/32"),
            "--control",
            control.to_str().unwrap(),
        ])
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The verified caller proves its address with an ordinary call (the
    // dialog cookie its ACK and BYE echo).
    calls(&lab, &edge, dir.path(), verified, 5063, "442071234567", 2);

    // 1. A spoofed INVITE flood (ordinary numbers) spends the budget for
    //    unverified sources. Meanwhile the fresh caller and the banned one
    //    dial 911 and 112, two calls a second into a group capped at one.
    let mut attack = flood(attacker, edge.sip_addr(), 20_000, 30, None);
    std::thread::sleep(Duration::from_secs(2));
    calls(&lab, &edge, dir.path(), fresh, 5061, "911", 6);
    calls(&lab, &edge, dir.path(), banned, 5062, "112", 4);
    let _ = attack.stop(Duration::from_secs(5));
    let s = edge
        .wait_for(
            "the emergency calls counted",
            Duration::from_secs(10),
            |s| s.emergency.forwarded >= 10,
        )
        .unwrap();
    let shed = s.workers_total(|w| w.dropped.get("unverified_request").copied().unwrap_or(0))
        + s.xdp.as_ref().map_or(0, |x| x.drops["unverified"]);
    assert!(shed > 0, "the flood was shed as unverified: {s:?}");
    assert!(s.emergency.forwarded >= 10, "{:?}", s.emergency);
    let psap_before = psap.incoming_calls().unwrap_or(0);

    // 2. A flood of forged 911 INVITEs: it reaches the emergency centre
    //    within the emergency budget and no more, while real callers' 911
    //    calls (one verified, one fresh) still complete.
    let started = Instant::now();
    let mut attack = flood(attacker, edge.sip_addr(), 5_000, 12, Some("911"));
    std::thread::sleep(Duration::from_secs(2));
    calls(&lab, &edge, dir.path(), verified, 5064, "911", 4);
    calls(&lab, &edge, dir.path(), fresh, 5065, "911", 2);
    let _ = attack.child_mut().wait();
    let seconds = started.elapsed().as_secs_f64();
    let s = edge
        .wait_for(
            "the counters after the flood",
            Duration::from_secs(10),
            |s| s.emergency.over_budget > 0,
        )
        .unwrap();
    // The SIPp UAS writes its counters once a second.
    std::thread::sleep(Duration::from_secs(2));
    let reached = psap.incoming_calls().unwrap_or(0) - psap_before;
    // Per worker: the emergency budget for unverified sources (50 a
    // second, 20 at once), plus the real calls.
    let workers = cfg.workers as f64;
    let bound = (workers * (50.0 * (seconds + 3.0) + 20.0)) as u64 + 6;
    assert!(
        reached <= bound,
        "{reached} emergency calls reached the centre in {seconds:.1} s; the budget allows {bound}"
    );
    assert!(reached >= 6, "the real calls reached it: {reached}");
    if let Some(xdp) = &s.xdp {
        assert!(
            xdp.drops["emergency_over_budget"] > 0,
            "the forged emergency flood was shed in XDP: {xdp:?}"
        );
    }
    // Every emergency call is an event.
    let events = edge.events();
    let sos = events
        .iter()
        .filter(|e| e["event"] == "emergency_call")
        .count();
    assert!(sos >= 16, "{sos} emergency_call events");
}

#[test]
fn emergency_calls_pass_a_flood_a_ban_and_a_cap_in_afxdp_mode() {
    emergency_calls_pass_the_attacks(
        IoMode::AfXdp,
        "emergency_calls_pass_a_flood_a_ban_and_a_cap_in_afxdp_mode",
    );
}

#[test]
fn emergency_calls_pass_a_flood_a_ban_and_a_cap_in_socket_mode() {
    emergency_calls_pass_the_attacks(
        IoMode::Socket,
        "emergency_calls_pass_a_flood_a_ban_and_a_cap_in_socket_mode",
    );
}
