//! Target health with real SIPp servers that take calls but leave OPTIONS
//! unanswered (SIPp without `-aa`): in a group with `probe = "none"` calls
//! keep completing long past the 15 s after which probes would have taken
//! the server down, while the same kind of server in a probed group goes
//! down with its cause in the event log and the stats.

use std::net::SocketAddr;
use std::time::Duration;

use dataplane::IoMode;
use lab::bin::TempDir;
use lab::edge_process::{EdgeConfig, EdgeProcess};
use lab::sipp::{Uac, Uas};
use lab::topology::LabSpec;
use lab::wait_until;

/// 20 calls per second for 25 s: past the 15 s (3 probes 5 s apart) after
/// which the default probes mark a silent server down.
const RATE: u32 = 20;
const CALLS: u32 = 500;

#[test]
fn calls_keep_completing_to_a_server_deaf_to_options_in_a_probe_none_group() {
    let test = "calls_keep_completing_to_a_server_deaf_to_options_in_a_probe_none_group";
    let Some(lab) = super::sipp_lab_or_skip(
        test,
        &LabSpec {
            caller_addrs: 1,
            upstreams: 2,
            attacker: false,
            edge_queues: 1,
        },
    ) else {
        return;
    };
    let dir = TempDir::new("deaf").unwrap();
    let unprobed = Uas::start_deaf_to_options(&lab.upstreams[0], dir.path()).unwrap();
    let probed = Uas::start_deaf_to_options(&lab.upstreams[1], dir.path()).unwrap();
    let (a, b): (SocketAddr, SocketAddr) = (unprobed.addr(), probed.addr());
    let groups = format!(
        "[[group]]\nname = \"uk\"\naction = \"forward\"\nprobe = \"none\"\n\
         targets = [{{ address = \"{a}\" }}]\n\n\
         [[group]]\nname = \"fr\"\naction = \"forward\"\n\
         targets = [{{ address = \"{b}\" }}]\n"
    );
    let cfg = EdgeConfig::new(
        &lab,
        IoMode::Socket,
        groups,
        "prefix,group\n44,uk\n33,fr\n".into(),
    );
    let mut edge = EdgeProcess::start(&lab, dir.path(), &cfg).unwrap();

    let mut uac = Uac::new(
        lab.callers.addr(),
        edge.sip_addr(),
        "442071234567",
        RATE,
        CALLS,
    );
    uac.timeout = Duration::from_secs(90);
    let run = uac.run(&lab.callers.ns, dir.path()).unwrap();
    assert!(run.all_successful(), "{}", run.report());
    assert!(
        unprobed.incoming_calls().unwrap_or(0) >= CALLS as u64 - RATE as u64,
        "the server took the calls: {:?}",
        unprobed.incoming_calls()
    );

    let last = edge.stop().unwrap();
    let target = |addr: SocketAddr| {
        last.targets
            .iter()
            .find(|t| t.target == addr.to_string())
            .cloned()
            .unwrap_or_else(|| panic!("{addr} not in {:?}", last.targets))
    };
    let (ta, tb) = (target(a), target(b));
    assert!(ta.up, "{ta:?}");
    assert_eq!(
        ta.probes_sent, 0,
        "a probe = \"none\" target is never probed"
    );
    assert_eq!(ta.cause, None, "it never changed: {ta:?}");
    assert!(
        !tb.up,
        "the probed server deaf to OPTIONS went down: {tb:?}"
    );
    assert_eq!(tb.cause.as_deref(), Some("3 OPTIONS probes unanswered"));

    let events = edge.events();
    let downs: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "target_down")
        .collect();
    assert_eq!(downs.len(), 1, "{downs:?}");
    assert_eq!(downs[0]["subject"], b.to_string());
    assert_eq!(downs[0]["reason"], "3 OPTIONS probes unanswered");
}

/// Passive health across the control thread: two servers deaf to OPTIONS
/// in a `probe = "none"` group, two workers (socket mode: a server's
/// responses reach one worker, the INVITEs toward it leave from both); one
/// server is killed mid-run. Only its unanswered INVITEs can take it down.
#[test]
fn a_killed_server_in_a_probe_none_group_goes_down_by_its_unanswered_invites() {
    let test = "a_killed_server_in_a_probe_none_group_goes_down_by_its_unanswered_invites";
    let Some(lab) = super::sipp_lab_or_skip(
        test,
        &LabSpec {
            caller_addrs: 1,
            upstreams: 2,
            attacker: false,
            edge_queues: 1,
        },
    ) else {
        return;
    };
    const CALLS: u32 = 360;
    const AFTER: u32 = 150;
    let patience = Duration::from_secs(60);
    let dir = TempDir::new("dkill").unwrap();
    let mut servers: Vec<Uas> = lab
        .upstreams
        .iter()
        .map(|u| Uas::start_deaf_to_options(u, dir.path()).unwrap())
        .collect();
    let (doomed, survivor) = (servers[0].addr(), servers[1].addr());
    // A long hold-down: the dead server is not tried again within the test.
    let groups = format!(
        "[health]\nhold_down_ms = 600000\n\n\
         [[group]]\nname = \"uk\"\naction = \"forward\"\nprobe = \"none\"\n\
         targets = [{{ address = \"{doomed}\" }}, {{ address = \"{survivor}\" }}]\n"
    );
    let cfg = EdgeConfig::new(&lab, IoMode::Socket, groups, "prefix,group\n44,uk\n".into());
    assert_eq!(cfg.workers, 2);
    let mut edge = EdgeProcess::start(&lab, dir.path(), &cfg).unwrap();
    let caller = lab.callers.addr();

    let mut during = Uac::new(caller, edge.sip_addr(), "442071234567", 30, CALLS);
    during.timeout = Duration::from_secs(120);
    let during = during.spawn(&lab.callers.ns, dir.path()).unwrap();
    assert!(
        wait_until(patience, || servers[0].incoming_calls().unwrap_or(0) >= 40),
        "the first server never took 40 calls: {:?}",
        servers[0].incoming_calls()
    );
    servers[0].kill().unwrap();
    let seen = edge
        .wait_for("the killed server marked down", patience, |s| {
            s.targets
                .iter()
                .any(|t| t.target == doomed.to_string() && !t.up)
        })
        .unwrap();
    let dead = seen
        .targets
        .iter()
        .find(|t| t.target == doomed.to_string())
        .unwrap();
    let cause = dead.cause.clone().unwrap_or_default();
    assert!(
        cause.ends_with("INVITEs in a row unanswered within 4000 ms"),
        "{cause}"
    );
    assert_eq!(dead.probes_sent, 0);
    let during = during.wait().unwrap();
    assert_eq!(during.successful + during.failed, CALLS as u64);
    assert!(during.failed <= CALLS as u64 / 4, "{}", during.report());
    eprintln!(
        "{test}: {} of {CALLS} calls failed around the kill; cause {cause:?}",
        during.failed
    );

    let before = servers[1].incoming_calls().unwrap_or(0);
    let mut after = Uac::new(caller, edge.sip_addr(), "442071234567", 50, AFTER);
    after.port = 5072;
    let after = after.run(&lab.callers.ns, dir.path()).unwrap();
    assert!(after.all_successful(), "{}", after.report());
    assert!(
        wait_until(patience, || servers[1].incoming_calls().unwrap_or(0)
            >= before + AFTER as u64),
        "the survivor took {:?} calls, {before} before the last run",
        servers[1].incoming_calls()
    );
    let last = edge.stop().unwrap();
    assert!(
        last.targets
            .iter()
            .any(|t| t.target == survivor.to_string() && t.up && t.cause.is_none()),
        "{:?}",
        last.targets
    );
    let downs: Vec<_> = edge
        .events()
        .into_iter()
        .filter(|e| e["event"] == "target_down")
        .collect();
    assert_eq!(downs.len(), 1, "{downs:?}");
    assert_eq!(downs[0]["subject"], doomed.to_string());
    assert_eq!(downs[0]["reason"], cause.as_str());
}
