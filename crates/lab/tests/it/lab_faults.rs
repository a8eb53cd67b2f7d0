//! Faults around a running `dce-edge run`, with real SIPp callers and
//! servers in the lab's namespaces: an upstream killed mid-run, a route
//! reload mid-run, a bad reload, and the edge itself stopped, restarted and
//! killed.
//!
//! Nothing here times anything: each step waits (generously, bounded) for
//! what it needs to see, in SIPp's statistics or the edge's snapshot.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use dataplane::IoMode;
use lab::bin::TempDir;
use lab::edge_process::{groups_toml, EdgeConfig, EdgeProcess, Health};
use lab::ping::options_ping_uri;
use lab::privilege::{feature_or_skip, have_program, privileged_or_skip};
use lab::sipp::{Uac, Uas};
use lab::topology::{Lab, LabSpec};
use lab::wait_until;
use telemetry::stats::{Snapshot, TargetState};

/// Long enough for anything a loaded 2-core box does in a few seconds.
const PATIENCE: Duration = Duration::from_secs(60);

fn may_run(test: &str) -> bool {
    privileged_or_skip(test)
        && feature_or_skip(
            test,
            have_program("sipp") && have_program("nsenter"),
            "sipp or nsenter",
            "apt-get install sip-tester util-linux (scripts/setup.sh)",
        )
}

/// A lab with one caller address and `upstreams` SIPp servers.
fn lab_with_servers(upstreams: usize, dir: &Path) -> (Lab, Vec<Uas>) {
    let lab = Lab::build(&LabSpec {
        caller_addrs: 1,
        upstreams,
        attacker: false,
        edge_queues: 1,
    })
    .unwrap();
    let servers = lab
        .upstreams
        .iter()
        .map(|u| Uas::start(u, dir).unwrap())
        .collect();
    (lab, servers)
}

fn target(s: &Snapshot, addr: SocketAddr) -> Option<&TargetState> {
    s.targets.iter().find(|t| t.target == addr.to_string())
}

/// The status of an OPTIONS for `number` sent from the callers to the
/// edge, once it is `want` (retried for up to `PATIENCE`: workers swap
/// tables between batches, a moment after the control thread).
fn options_for(lab: &Lab, edge: &EdgeProcess, number: &str, want: u16) -> Option<u16> {
    let from = SocketAddr::from((lab.callers.addr(), 0));
    let to = edge.sip_addr();
    let uri = format!("sip:{number}@{to}");
    let mut last = None;
    wait_until(PATIENCE, || {
        let uri = uri.clone();
        last = lab
            .callers
            .ns
            .enter(move || options_ping_uri(from, to, &uri, Duration::from_secs(5)))
            .unwrap()
            .unwrap();
        last == Some(want)
    });
    last
}

fn upstream_killed_mid_run(mode: IoMode, test: &str) {
    if !may_run(test) {
        return;
    }
    const CALLS: u32 = 360;
    const AFTER: u32 = 150;
    let dir = TempDir::new("kill").unwrap();
    let (lab, mut servers) = lab_with_servers(2, dir.path());
    let (doomed, survivor) = (servers[0].addr(), servers[1].addr());
    let health = Health {
        interval_ms: 300,
        down_after: 2,
        up_after: 2,
    };
    let cfg = EdgeConfig::new(
        &lab,
        mode,
        groups_toml(Some(health), &[("uk", &[doomed, survivor])]),
        "prefix,group\n44,uk\n".into(),
    );
    let mut edge = EdgeProcess::start(&lab, dir.path(), &cfg).unwrap();
    let caller = lab.callers.addr();

    // 30 calls/s for 12 s, shared between the two targets by Call-ID.
    let during = Uac::new(caller, edge.sip_addr(), "442071234567", 30, CALLS)
        .spawn(&lab.callers.ns, dir.path())
        .unwrap();
    // About a third of the way in (by what the doomed server has taken, not
    // by the clock), it dies without a word.
    assert!(
        wait_until(PATIENCE, || servers[0].incoming_calls().unwrap_or(0) >= 40),
        "the first upstream never took 40 calls: {:?}",
        servers[0].incoming_calls()
    );
    servers[0].kill().unwrap();
    let seen = edge
        .wait_for("the killed upstream marked down", PATIENCE, |s| {
            target(s, doomed).is_some_and(|t| !t.up)
        })
        .unwrap();
    assert!(
        target(&seen, survivor).is_some_and(|t| t.up),
        "{:?}",
        seen.targets
    );
    let during = during.wait().unwrap();
    // Only calls in flight to the dead server around the kill may fail
    // (an INVITE retransmitted after the target went down moves to the
    // survivor and completes); bound them generously.
    assert!(
        during.failed <= CALLS as u64 / 10 && during.successful + during.failed == CALLS as u64,
        "{}",
        during.report()
    );
    eprintln!(
        "{test}: {} of {CALLS} calls failed around the kill",
        during.failed
    );

    // Calls started after the target was marked down all complete, on the
    // survivor.
    let before = servers[1].incoming_calls().unwrap_or(0);
    let mut after = Uac::new(caller, edge.sip_addr(), "442071234567", 50, AFTER);
    after.port = 5072;
    let after = after.run(&lab.callers.ns, dir.path()).unwrap();
    assert!(after.all_successful(), "{}", after.report());
    assert!(
        wait_until(PATIENCE, || servers[1].incoming_calls().unwrap_or(0)
            >= before + AFTER as u64),
        "the survivor took {:?} calls, {before} before the last run",
        servers[1].incoming_calls()
    );

    let last = edge.stop().unwrap();
    let (dead, alive) = (
        target(&last, doomed).unwrap(),
        target(&last, survivor).unwrap(),
    );
    assert!(!dead.up && alive.up, "{:?}", last.targets);
    // Probe counters are each target's own: the dead one stopped answering.
    assert!(
        dead.probes_answered < dead.probes_sent
            && alive.probes_answered > dead.probes_answered
            && alive.rtt_ms.is_some(),
        "{:?}",
        last.targets
    );
    assert!(
        last.calls.answered >= (CALLS - during.failed as u32 + AFTER) as u64,
        "{:?}",
        last.calls
    );
    assert!(
        edge.events().iter().any(|e| e["event"] == "target_down"
            && e["subject"] == doomed.to_string()
            && e["details"]["group"] == "uk"),
        "no target_down event: {:?}",
        edge.events()
    );
}

#[test]
fn calls_move_to_the_surviving_target_when_an_upstream_dies_in_socket_mode() {
    upstream_killed_mid_run(
        IoMode::Socket,
        "calls_move_to_the_surviving_target_when_an_upstream_dies_in_socket_mode",
    );
}

#[test]
fn calls_move_to_the_surviving_target_when_an_upstream_dies_in_afxdp_mode() {
    upstream_killed_mid_run(
        IoMode::AfXdp,
        "calls_move_to_the_surviving_target_when_an_upstream_dies_in_afxdp_mode",
    );
}

#[test]
fn a_route_reload_mid_run_loses_no_call_and_routes_the_new_prefix() {
    let test = "a_route_reload_mid_run_loses_no_call_and_routes_the_new_prefix";
    if !may_run(test) {
        return;
    }
    const CALLS: u32 = 300;
    const NEW_CALLS: u32 = 50;
    let dir = TempDir::new("rld").unwrap();
    let (lab, servers) = lab_with_servers(2, dir.path());
    let (uk, fr) = (servers[0].addr(), servers[1].addr());
    let cfg = EdgeConfig::new(
        &lab,
        IoMode::Socket,
        groups_toml(None, &[("uk", &[uk]), ("fr", &[fr])]),
        "prefix,group\n44,uk\n".into(),
    );
    let edge = EdgeProcess::start(&lab, dir.path(), &cfg).unwrap();
    let caller = lab.callers.addr();

    // Version 1 routes no French number: the edge answers 404 itself.
    assert_eq!(options_for(&lab, &edge, "33123456789", 404), Some(404));
    let v1 = edge.snapshot().unwrap();
    assert_eq!(v1.routes.table_version, 1);

    let running = Uac::new(caller, edge.sip_addr(), "442071234567", 50, CALLS)
        .spawn(&lab.callers.ns, dir.path())
        .unwrap();
    assert!(
        wait_until(PATIENCE, || servers[0].incoming_calls().unwrap_or(0)
            >= CALLS as u64 / 3),
        "calls never reached the uk server: {:?}",
        servers[0].incoming_calls()
    );
    edge.write_file("prefixes.csv", "prefix,group\n44,uk\n33,fr\n")
        .unwrap();
    let (accepted, answer) = edge.reload().unwrap();
    assert!(
        accepted && answer.contains("accepted: route table version 2 with 2 prefixes"),
        "{answer}"
    );
    let v2 = edge
        .wait_for("the new table installed", PATIENCE, |s| {
            s.routes.reloads_accepted == 1
        })
        .unwrap();
    assert!(
        v2.routes.table_version > v1.routes.table_version,
        "{:?}",
        v2.routes
    );
    assert_eq!(v2.routes.prefixes, 2);
    // The number only the new table routes is now answered by the fr
    // group's server (SIPp answers OPTIONS itself) instead of 404.
    assert_eq!(options_for(&lab, &edge, "33123456789", 200), Some(200));

    let running = running.wait().unwrap();
    assert!(
        running.all_successful(),
        "no call may be lost: {}",
        running.report()
    );

    // Calls to the new prefix complete on the fr server.
    let mut french = Uac::new(caller, edge.sip_addr(), "33123456789", 50, NEW_CALLS);
    french.port = 5072;
    let french = french.run(&lab.callers.ns, dir.path()).unwrap();
    assert!(french.all_successful(), "{}", french.report());
    assert!(
        wait_until(PATIENCE, || servers[1].incoming_calls().unwrap_or(0)
            >= NEW_CALLS as u64),
        "the fr server took {:?} calls",
        servers[1].incoming_calls()
    );
    assert!(
        edge.events()
            .iter()
            .any(|e| e["event"] == "route_reload_accepted"),
        "{:?}",
        edge.events()
    );
}

#[test]
fn a_bad_reload_is_refused_and_the_running_table_stays() {
    let test = "a_bad_reload_is_refused_and_the_running_table_stays";
    if !may_run(test) {
        return;
    }
    const CALLS: u32 = 200;
    let dir = TempDir::new("bad").unwrap();
    let (lab, servers) = lab_with_servers(1, dir.path());
    let cfg = EdgeConfig::new(
        &lab,
        IoMode::AfXdp,
        groups_toml(None, &[("uk", &[servers[0].addr()])]),
        "prefix,group\n44,uk\n".into(),
    );
    let edge = EdgeProcess::start(&lab, dir.path(), &cfg).unwrap();
    let caller = lab.callers.addr();
    let running = Uac::new(caller, edge.sip_addr(), "442071234567", 50, CALLS)
        .spawn(&lab.callers.ns, dir.path())
        .unwrap();
    assert!(
        wait_until(PATIENCE, || servers[0].incoming_calls().unwrap_or(0)
            >= CALLS as u64 / 3),
        "calls never reached the server: {:?}",
        servers[0].incoming_calls()
    );

    // Line 3 names a group the groups file does not have.
    edge.write_file("prefixes.csv", "prefix,group\n44,uk\n33,nowhere\n")
        .unwrap();
    let (accepted, answer) = edge.reload().unwrap();
    assert!(
        !accepted
            && answer.contains("refused, version 1 stays in service")
            && answer.contains("prefixes.csv:3:")
            && answer.contains("nowhere"),
        "the operator's answer names the file, the line and the group: {answer}"
    );
    let s = edge
        .wait_for("the reload refused", PATIENCE, |s| {
            s.routes.reloads_refused >= 1
        })
        .unwrap();
    assert_eq!(s.routes.reloads_refused, 1, "{:?}", s.routes);
    assert_eq!(s.routes.reloads_accepted, 0, "{:?}", s.routes);
    assert_eq!(
        s.routes.table_version, 1,
        "the old table runs: {:?}",
        s.routes
    );
    assert_eq!(s.routes.prefixes, 1);
    let error = s.routes.last_reload_error.clone().unwrap_or_default();
    assert!(
        error.contains("prefixes.csv:3:") && error.contains("nowhere"),
        "the error must name the file, the line and the group: {error:?}"
    );
    assert!(
        edge.log_text().contains("reload refused"),
        "{}",
        edge.log_text()
    );

    // Calls went on through the refusal, and still complete after it.
    let running = running.wait().unwrap();
    assert!(running.all_successful(), "{}", running.report());
    let mut after = Uac::new(caller, edge.sip_addr(), "442071234567", 50, 50);
    after.port = 5072;
    let after = after.run(&lab.callers.ns, dir.path()).unwrap();
    assert!(after.all_successful(), "{}", after.report());
    // The refused table's numbers do not route.
    assert_eq!(options_for(&lab, &edge, "33123456789", 404), Some(404));
    assert!(
        edge.events()
            .iter()
            .any(|e| e["event"] == "route_reload_refused"),
        "{:?}",
        edge.events()
    );
}

/// 100 calls through the edge; all must complete.
fn calls_complete(lab: &Lab, edge: &EdgeProcess, dir: &Path, when: &str) {
    let run = Uac::new(lab.callers.addr(), edge.sip_addr(), "442071234567", 50, 100)
        .run(&lab.callers.ns, dir)
        .unwrap();
    assert!(run.all_successful(), "{when}: {}", run.report());
}

#[test]
fn the_edge_restarts_cleanly_after_a_stop_and_after_sigkill() {
    let test = "the_edge_restarts_cleanly_after_a_stop_and_after_sigkill";
    if !may_run(test) {
        return;
    }
    let dir = TempDir::new("rst").unwrap();
    let (lab, servers) = lab_with_servers(1, dir.path());
    let cfg = EdgeConfig::new(
        &lab,
        IoMode::AfXdp,
        groups_toml(None, &[("uk", &[servers[0].addr()])]),
        "prefix,group\n44,uk\n".into(),
    );
    let mut edge = EdgeProcess::start(&lab, dir.path(), &cfg).unwrap();
    let pins = edge.pin_dir().unwrap();
    let attached = |edge: &EdgeProcess| edge.xdp_programs().unwrap();

    // First run: one program attached, maps pinned; calls complete.
    assert_eq!(attached(&edge), 1, "one XDP program while running");
    assert!(pins.is_dir(), "{} missing while running", pins.display());
    calls_complete(&lab, &edge, dir.path(), "first run");
    let first = edge.stop().unwrap();
    assert!(first.calls.answered >= 100, "{:?}", first.calls);
    // A clean stop leaves nothing behind.
    assert_eq!(attached(&edge), 0, "program left attached after stop");
    assert!(!pins.exists(), "{} left after stop", pins.display());

    // Second run on the same interface starts cleanly.
    edge.restart().unwrap();
    assert_eq!(attached(&edge), 1);
    assert!(pins.is_dir());
    assert!(
        !edge.log_text().contains("removing pins"),
        "nothing was left to remove: {}",
        edge.log_text()
    );
    calls_complete(&lab, &edge, dir.path(), "after a restart");

    // SIGKILL: no clean-up of its own. The kernel detaches the program with
    // the process's last link fd; the pinned maps stay.
    edge.kill().unwrap();
    assert!(
        pins.is_dir(),
        "a killed edge cannot remove its pins ({})",
        pins.display()
    );
    eprintln!(
        "{test}: after SIGKILL {} XDP program(s) attached, pins left at {}",
        attached(&edge),
        pins.display()
    );

    // The next start replaces the stale state, says so, and works.
    edge.restart().unwrap();
    assert!(
        edge.log_text()
            .contains("removing pins left by a filter that is no longer running"),
        "{}",
        edge.log_text()
    );
    assert_eq!(attached(&edge), 1, "exactly one program after the restart");
    calls_complete(&lab, &edge, dir.path(), "after SIGKILL and a restart");
    let last = edge.stop().unwrap();
    assert!(last.calls.answered >= 100, "{:?}", last.calls);
    assert_eq!(last.modes.dataplane, "copy");
    assert_eq!(
        attached(&edge),
        0,
        "program left attached after the last stop"
    );
    assert!(
        !pins.exists(),
        "{} left after the last stop",
        pins.display()
    );
}
