//! The real SIPVicious scanners (svmap, svwar, svcrack) from the lab's
//! attacker against `dce-edge run` in AF_XDP mode, while SIPp callers make
//! calls: the scanners find nothing, the XDP counters show the scanner
//! drops, no scanner packet reaches the workers, nobody is banned (the
//! scanners' sources are not verified, and a packet's word is evidence only
//! about that packet: issue 17), and every legitimate call completes.

use std::net::Ipv4Addr;
use std::process::Stdio;

use dataplane::IoMode;
use lab::bin::TempDir;
use lab::edge_process::{groups_toml, EdgeConfig, EdgeProcess};
use lab::privilege::{feature_or_skip, have_program, privileged_or_skip};
use lab::sipp::{Uac, Uas};
use lab::topology::{Host, Lab, LabSpec, ATTACKER_ADDR, EDGE_ADDR};

const CALLS_DURING: u32 = 450;
const CALLS_AFTER: u32 = 100;

/// Runs a scanner in the attacker's namespace and returns stdout and stderr
/// together (SIPVicious logs its verdicts to stderr and its result table to
/// stdout). Never with `-R`: that sends a report to the tool's author.
fn scan(attacker: &Host, program: &str, args: &[&str]) -> String {
    assert!(!args
        .iter()
        .any(|a| a.starts_with("-R") || a.starts_with("--reportback")));
    // Bounded even if a scanner hangs: coreutils' timeout ends it.
    let out = attacker
        .ns
        .command("timeout")
        .args(["120", program])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Makes the attacker's packets to the edge leave from `src`.
fn prefer_source(attacker: &Host, src: Ipv4Addr) {
    attacker
        .ns
        .ip(&[
            "route",
            "replace",
            &format!("{EDGE_ADDR}/32"),
            "dev",
            &attacker.iface,
            "src",
            &src.to_string(),
        ])
        .unwrap();
}

#[test]
fn scanners_find_nothing_and_ban_nobody_while_calls_complete() {
    let test = "scanners_find_nothing_and_ban_nobody_while_calls_complete";
    if !privileged_or_skip(test) {
        return;
    }
    if !feature_or_skip(
        test,
        ["sipp", "svmap", "svwar", "svcrack", "nsenter"]
            .iter()
            .all(|p| have_program(p)),
        "sipp, svmap, svwar, svcrack or nsenter",
        "apt-get install sip-tester sipvicious util-linux (scripts/setup.sh)",
    ) {
        return;
    }
    let lab = Lab::build(&LabSpec {
        caller_addrs: 1,
        upstreams: 1,
        attacker: true,
        edge_queues: 1,
    })
    .unwrap();
    let attacker = lab.attacker.as_ref().unwrap();
    // One source per scanner (the attacker holds several addresses, the
    // first being ATTACKER_ADDR): svwar and svcrack ignore `-b`, so each
    // runs while the route to the edge prefers its own source.
    assert!(attacker.addrs.len() >= 3, "{:?}", attacker.addrs);
    let (svwar_addr, svcrack_addr) = (attacker.addrs[1], attacker.addrs[2]);
    let dir = TempDir::new("scan").unwrap();
    let server = Uas::start(&lab.upstreams[0], dir.path()).unwrap();
    let attacker_ip = ATTACKER_ADDR.to_string();

    // Control: svmap does find an unprotected SIP server here (the SIPp
    // upstream answers OPTIONS), so "found nothing" below is the edge's
    // doing and not a scanner that cannot work in this lab.
    let control = scan(
        attacker,
        "svmap",
        &["-b", &attacker_ip, &server.addr().ip().to_string()],
    );
    assert!(
        control.contains(&server.addr().to_string()) && !control.contains("found nothing"),
        "svmap should find the unprotected SIPp server:\n{control}"
    );

    // The callers and the upstream are allowlisted; the attacker is not.
    let cfg = EdgeConfig::new(
        &lab,
        IoMode::AfXdp,
        groups_toml(None, &[("uk", &[server.addr()])]),
        "prefix,group\n44,uk\n".into(),
    );
    let mut edge = EdgeProcess::start(&lab, dir.path(), &cfg).unwrap();
    let edge_ip = EDGE_ADDR.to_string();

    // Legitimate calls (30/s for 15 s) while the scanners run.
    let during = Uac::new(
        lab.callers.addr(),
        edge.sip_addr(),
        "442071234567",
        30,
        CALLS_DURING,
    )
    .spawn(&lab.callers.ns, dir.path())
    .unwrap();

    // svmap: a sweep for SIP devices (OPTIONS).
    let svmap = scan(attacker, "svmap", &["-b", &attacker_ip, &edge_ip]);
    assert!(
        svmap.contains("found nothing") && !svmap.contains(&format!("{edge_ip}:5060")),
        "svmap found the edge:\n{svmap}"
    );
    // svwar: an extension sweep (REGISTER for 100-199).
    prefer_source(attacker, svwar_addr);
    let svwar = scan(
        attacker,
        "svwar",
        &["-e100-199", "--maximumtime", "3", &edge_ip],
    );
    assert!(
        svwar.contains("found nothing") && !svwar.contains("| Extension"),
        "svwar found extensions:\n{svwar}"
    );
    // svcrack: a password guess for extension 100.
    prefer_source(attacker, svcrack_addr);
    let svcrack = scan(
        attacker,
        "svcrack",
        &["-u100", "-r1-200", "--maximumtime", "3", &edge_ip],
    );
    assert!(
        svcrack.contains("found nothing") && !svcrack.contains("| Extension"),
        "svcrack found a password:\n{svcrack}"
    );

    let during = during.wait().unwrap();
    assert!(during.all_successful(), "{}", during.report());
    let mut after = Uac::new(
        lab.callers.addr(),
        edge.sip_addr(),
        "442071234567",
        50,
        CALLS_AFTER,
    );
    after.port = 5072;
    let after = after.run(&lab.callers.ns, dir.path()).unwrap();
    assert!(after.all_successful(), "{}", after.report());

    // Each scanning source's packets were dropped in XDP: as `scanner`, or
    // as `rate_limit` once over its own budget.
    let sources: Vec<String> = [ATTACKER_ADDR, svwar_addr, svcrack_addr]
        .iter()
        .map(|a| format!("{a}/32"))
        .collect();
    let s = edge
        .wait_for(
            "the three scanning sources among the top sources",
            std::time::Duration::from_secs(30),
            |s| {
                sources
                    .iter()
                    .all(|src| s.top_sources.iter().any(|t| &t.source == src))
            },
        )
        .unwrap();
    let xdp = s.xdp.clone().expect("XDP counters in AF_XDP mode");
    assert!(xdp.drops["scanner"] >= 3, "{xdp:?}");
    for quiet in [
        "blocklist",
        "banned",
        "fragment",
        "not_sip",
        "overload",
        "malformed",
    ] {
        assert_eq!(xdp.drops[quiet], 0, "{quiet}: {xdp:?}");
    }
    // Nobody is banned: the scanners' sources never proved their addresses,
    // which could be anyone's. Not in the snapshot...
    assert!(s.bans.is_empty(), "{:?}", s.bans);
    // ...nor in the ban list a second dce-edge process reads from the pins.
    // Named by its interface: pins other filters left in a namespace
    // directory whose inode this one reuses would make "the only filter"
    // ambiguous.
    let list = edge
        .command(&["ban", "--list", "--json", "--iface", edge.iface()])
        .unwrap();
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list, serde_json::json!([]), "{list}");

    // No scanner packet reached a worker: nothing was answered but the
    // readiness OPTIONS (200); an unrouted REGISTER would have drawn a 404.
    let last = edge.stop().unwrap();
    let answered: Vec<u16> = last
        .workers
        .iter()
        .flat_map(|w| w.answered.keys().copied())
        .collect();
    assert!(answered.iter().all(|&c| c == 200), "{:?}", last.workers);
    assert!(
        last.calls.answered >= (CALLS_DURING + CALLS_AFTER) as u64,
        "{:?}",
        last.calls
    );
    // ... and the SOC's event log has no ban.
    let events = edge.events();
    assert!(
        !events.iter().any(|e| e["event"] == "ban"),
        "a ban was logged: {events:?}"
    );
}
