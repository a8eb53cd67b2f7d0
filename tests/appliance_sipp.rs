//! Real SIPp callers and servers through `dce-edge run` in the lab's
//! namespaces: every call completes (INVITE to BYE), responses come back
//! through the edge, and the edge's final counters agree.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use dce_edge::lab::bin::{workspace_binary, TempDir};
use dce_edge::lab::netns::ChildGuard;
use dce_edge::lab::ping::options_ping;
use dce_edge::lab::topology::{Lab, LabSpec, EDGE_ADDR};
use dce_edge::privilege::{feature_or_skip, have_program, privileged_or_skip};

const CALLS: u32 = 300;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn write_config(dir: &TempDir, lab: &Lab, mode: &str) -> std::path::PathBuf {
    let targets: Vec<String> = lab
        .upstreams
        .iter()
        .map(|u| {
            format!(
                "  {{ address = \"{}:5060\", priority = 1, weight = 1 }},",
                u.addr()
            )
        })
        .collect();
    dir.write(
        "groups.toml",
        format!(
            "[[group]]\nname = \"uk\"\naction = \"forward\"\ntargets = [\n{}\n]\n",
            targets.join("\n")
        ),
    )
    .unwrap();
    dir.write("prefixes.csv", "prefix,group\n44,uk\n").unwrap();
    let iface = &lab.edge.iface;
    // The lab's veths have one queue: one AF_XDP worker; socket mode spreads
    // over two workers with SO_REUSEPORT.
    let workers = if mode == "socket" { 2 } else { 1 };
    dir.write(
        "edge.toml",
        format!(
            "[edge]\nmode = \"{mode}\"\ninterface = \"{iface}\"\nlisten = \"{EDGE_ADDR}:5060\"\nworkers = {workers}\n\
             [dataplane.idle]\nbusy_polls = 64\nwait_us = 1000\n\
             [routes]\ngroups = \"groups.toml\"\nprefixes = \"prefixes.csv\"\n\
             [proxy]\nsecret = \"0123456789abcdef0123456789abcdef\"\n\
             [filter]\nallowlist = [\"198.18.0.0/24\"]\n"
        ),
    )
    .unwrap()
}

fn start_uas(lab: &Lab, dir: &TempDir) -> Vec<ChildGuard> {
    let scenario = fixture("sipp/uas_200.xml");
    lab.upstreams
        .iter()
        .map(|u| {
            let addr = u.addr().to_string();
            let mut cmd = u.ns.command("sipp");
            cmd.args([
                "-sf",
                scenario.to_str().unwrap(),
                "-i",
                &addr,
                "-p",
                "5060",
                "-nostdin",
            ])
            .args(["-buff_size", "4194304", "-timeout", "120"])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
            ChildGuard::new(cmd.spawn().expect("start sipp uas"))
        })
        .collect()
}

fn run_calls_through_the_edge(mode: &str, test: &str) {
    if !privileged_or_skip(test) {
        return;
    }
    if !feature_or_skip(
        test,
        have_program("sipp"),
        "sipp",
        "apt-get install sip-tester",
    ) {
        return;
    }
    let lab = Lab::build(&LabSpec {
        caller_addrs: 1,
        upstreams: 2,
        attacker: false,
    })
    .unwrap();
    let dir = TempDir::new("sipp").unwrap();
    let config = write_config(&dir, &lab, mode);
    let _uas = start_uas(&lab, &dir);
    let edge_bin = workspace_binary("dce-edge");
    let mut edge_cmd = lab.edge.ns.command(edge_bin.to_str().unwrap());
    edge_cmd
        .args([
            "run",
            "--config",
            config.to_str().unwrap(),
            "--final-snapshot",
        ])
        .arg(dir.path().join("final.json"))
        .stdout(std::process::Stdio::null());
    let mut edge = ChildGuard::new(edge_cmd.spawn().expect("start dce-edge"));

    // Wait until the edge answers OPTIONS (it is then listening).
    let caller = lab.callers.addr();
    let edge_sip: SocketAddr = (EDGE_ADDR, 5060).into();
    let answered = lab
        .callers
        .ns
        .enter(move || options_ping((caller, 0).into(), edge_sip, Duration::from_secs(30)))
        .unwrap()
        .unwrap();
    assert_eq!(answered, Some(200), "the edge never answered OPTIONS");

    // SIPp's own UAC scenario: INVITE, 200, ACK, BYE, 200, through the edge.
    let out = lab
        .callers
        .ns
        .command("sipp")
        .args([
            &format!("{EDGE_ADDR}:5060"),
            "-sn",
            "uac",
            "-s",
            "442071234567",
            "-i",
            &caller.to_string(),
        ])
        .args([
            "-p",
            "5070",
            "-r",
            "100",
            "-m",
            &CALLS.to_string(),
            "-l",
            "200",
            "-nostdin",
        ])
        .args(["-buff_size", "4194304", "-timeout", "60", "-trace_err"])
        .current_dir(dir.path())
        .output()
        .expect("run sipp uac");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let successful = stdout
        .lines()
        .find(|l| l.contains("Successful call"))
        .and_then(|l| l.split('|').nth(2))
        .and_then(|v| v.trim().parse::<u32>().ok());
    assert!(
        out.status.success() && successful == Some(CALLS),
        "sipp uac: {} successful of {CALLS}, exit {}\n{}",
        successful.unwrap_or(0),
        out.status,
        stdout.lines().rev().take(40).collect::<Vec<_>>().join("\n")
    );

    // The edge's own account of it.
    edge.stop(Duration::from_secs(10)).unwrap();
    let text = std::fs::read_to_string(dir.path().join("final.json"))
        .expect("the edge wrote its final snapshot");
    let last: dce_edge::stats::Snapshot = serde_json::from_str(&text).expect("a stats snapshot");
    let requests: u64 = last.workers.iter().map(|w| w.forwarded_requests).sum();
    let responses: u64 = last.workers.iter().map(|w| w.forwarded_responses).sum();
    // INVITE, ACK and BYE of every call went up; at least 200 and 200 came back.
    assert!(
        requests >= 3 * CALLS as u64,
        "{requests} requests forwarded"
    );
    assert!(
        responses >= 2 * CALLS as u64,
        "{responses} responses forwarded"
    );
    assert!(
        last.calls.answered >= CALLS as u64,
        "{} answers relayed",
        last.calls.answered
    );
    assert!(last.setup_latency.count > 0);
    assert_eq!(
        last.modes.dataplane,
        if mode == "socket" { "socket" } else { "copy" }
    );
}

#[test]
fn sipp_calls_complete_through_the_edge_in_socket_mode() {
    run_calls_through_the_edge(
        "socket",
        "sipp_calls_complete_through_the_edge_in_socket_mode",
    );
}

#[test]
fn sipp_calls_complete_through_the_edge_in_afxdp_mode() {
    run_calls_through_the_edge(
        "afxdp",
        "sipp_calls_complete_through_the_edge_in_afxdp_mode",
    );
}
