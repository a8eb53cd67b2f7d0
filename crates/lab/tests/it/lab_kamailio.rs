//! Kamailio (the reference open-source SIP proxy) as the upstream behind
//! `dce-edge run`: SIPp callers -> dce-edge -> Kamailio -> a SIPp server
//! and back. Every call completes, and the edge's prober sees Kamailio up
//! from Kamailio's own answers to its OPTIONS.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use dataplane::IoMode;
use lab::bin::TempDir;
use lab::edge_process::{groups_toml, EdgeConfig, EdgeProcess, Health};
use lab::netns::ChildGuard;
use lab::ping::options_ping;
use lab::privilege::{feature_or_skip, have_program, privileged_or_skip};
use lab::sipp::{Uac, Uas};
use lab::topology::{Host, Lab, LabSpec};
use lab::wait_until;

const CALLS: u32 = 200;
const PATIENCE: Duration = Duration::from_secs(60);

/// The fixture with this lab's addresses, checked with `kamailio -c`.
fn kamailio_config(dir: &Path, listen: SocketAddr, server: SocketAddr) -> std::path::PathBuf {
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kamailio/upstream.cfg"),
    )
    .unwrap();
    let text = template
        .replace("@LISTEN@", &listen.to_string())
        .replace("@SERVER_HOST@", &server.ip().to_string())
        .replace("@SERVER_PORT@", &server.port().to_string());
    let path = dir.join("kamailio.cfg");
    std::fs::write(&path, text).unwrap();
    let check = std::process::Command::new("kamailio")
        .args(["-c", "-f"])
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "kamailio -c refused the configuration:\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    path
}

/// Kamailio in the foreground in `host`'s namespace, bound to its address
/// only; returns once it answers an OPTIONS.
fn start_kamailio(host: &Host, dir: &Path, server: SocketAddr) -> ChildGuard {
    let listen = SocketAddr::from((host.addr(), 5060));
    let cfg = kamailio_config(dir, listen, server);
    let log = dir.join("kamailio.log");
    let mut cmd = host.ns.command("kamailio");
    cmd.arg("-f")
        .arg(&cfg)
        // Creator in the foreground (its workers are its children), log
        // to stderr, working and runtime folders of the test's own.
        .args(["-DD", "-E", "-m", "32", "-M", "8", "-w"])
        .arg(dir)
        .arg("-Y")
        .arg(dir)
        .arg("-P")
        .arg(dir.join("kamailio.pid"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut kamailio = ChildGuard::new(cmd.spawn().expect("start kamailio"));
    let from = SocketAddr::from((host.addr(), 0));
    let answered = host
        .ns
        .enter(move || options_ping(from, listen, PATIENCE))
        .unwrap()
        .unwrap();
    assert_eq!(
        answered,
        Some(200),
        "kamailio did not answer OPTIONS (exited: {:?}):\n{}",
        kamailio.wait_timeout(Duration::ZERO),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    kamailio
}

fn calls_through_kamailio(mode: IoMode, test: &str) {
    if !privileged_or_skip(test) {
        return;
    }
    if !feature_or_skip(
        test,
        have_program("sipp") && have_program("kamailio") && have_program("nsenter"),
        "sipp, kamailio or nsenter",
        "apt-get install sip-tester kamailio util-linux (scripts/setup.sh)",
    ) {
        return;
    }
    let lab = Lab::build(&LabSpec {
        caller_addrs: 1,
        upstreams: 2,
        attacker: false,
        edge_queues: 1,
    })
    .unwrap();
    let dir = TempDir::new("kam").unwrap();
    // The SIPp server is known only to Kamailio, never to the edge: a call
    // it answers went through Kamailio.
    let server = Uas::start(&lab.upstreams[1], dir.path()).unwrap();
    let mut kamailio = start_kamailio(&lab.upstreams[0], dir.path(), server.addr());
    let kamailio_addr = SocketAddr::from((lab.upstreams[0].addr(), 5060));

    let health = Health {
        interval_ms: 500,
        down_after: 3,
        up_after: 2,
    };
    let cfg = EdgeConfig::new(
        &lab,
        mode,
        groups_toml(Some(health), &[("uk", &[kamailio_addr])]),
        "prefix,group\n44,uk\n".into(),
    );
    let mut edge = EdgeProcess::start(&lab, dir.path(), &cfg).unwrap();
    // The prober's OPTIONS are answered by Kamailio itself.
    edge.wait_for("the prober's probes answered by Kamailio", PATIENCE, |s| {
        s.targets
            .iter()
            .any(|t| t.target == kamailio_addr.to_string() && t.up && t.probes_answered >= 2)
    })
    .unwrap();

    let run = Uac::new(
        lab.callers.addr(),
        edge.sip_addr(),
        "442071234567",
        50,
        CALLS,
    )
    .run(&lab.callers.ns, dir.path())
    .unwrap();
    assert!(run.all_successful(), "{}", run.report());
    assert!(
        wait_until(PATIENCE, || server.incoming_calls().unwrap_or(0)
            >= CALLS as u64),
        "the server behind Kamailio took {:?} calls",
        server.incoming_calls()
    );

    let last = edge.stop().unwrap();
    let target = last
        .targets
        .iter()
        .find(|t| t.target == kamailio_addr.to_string())
        .unwrap();
    assert!(
        target.up && target.probes_answered >= 2 && target.rtt_ms.is_some(),
        "{:?}",
        last.targets
    );
    // INVITE, ACK and BYE of every call went to Kamailio; 200 and 200 came
    // back from it.
    assert!(
        last.workers_total(|w| w.forwarded_requests) >= 3 * CALLS as u64,
        "{:?}",
        last.workers
    );
    assert!(
        last.workers_total(|w| w.forwarded_responses) >= 2 * CALLS as u64,
        "{:?}",
        last.workers
    );
    assert!(last.calls.answered >= CALLS as u64, "{:?}", last.calls);
    let status = kamailio.stop(Duration::from_secs(10)).unwrap();
    assert!(
        status.success(),
        "kamailio exit {status}:\n{}",
        std::fs::read_to_string(dir.path().join("kamailio.log")).unwrap_or_default()
    );
}

#[test]
fn sipp_calls_complete_through_the_edge_and_kamailio_in_socket_mode() {
    calls_through_kamailio(
        IoMode::Socket,
        "sipp_calls_complete_through_the_edge_and_kamailio_in_socket_mode",
    );
}

#[test]
fn sipp_calls_complete_through_the_edge_and_kamailio_in_afxdp_mode() {
    calls_through_kamailio(
        IoMode::AfXdp,
        "sipp_calls_complete_through_the_edge_and_kamailio_in_afxdp_mode",
    );
}
