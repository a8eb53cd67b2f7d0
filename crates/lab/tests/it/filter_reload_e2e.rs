//! Filter hot reload, end to end (issue 22): `dce-edge filter reload` on a
//! running appliance in the middle of a spoofed flood with SIPp calls
//! going through keeps the same XDP program (same id, never detached),
//! loses no call and makes a new scanner signature live; a bad table is
//! refused with file and line and the old rules stay. And the same in
//! shield mode (`dce-edge filter`), which now has a control socket, an
//! event log and a metrics endpoint of its own.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Stdio;
use std::time::Duration;

use dataplane::IoMode;
use lab::bin::{workspace_binary, TempDir};
use lab::edge_process::{groups_toml, xdp_program_id, EdgeConfig, EdgeProcess};
use lab::netns::{unique_name, veth_pair, ChildGuard, Netns};
use lab::privilege::{feature_or_skip, have_program, privileged_or_skip};
use lab::sipp::{Uac, Uas};
use lab::topology::{Host, Lab, LabSpec};
use lab::wait_until;

const PATIENCE: Duration = Duration::from_secs(60);
const SPOOF: &str = "198.18.128.0/17";

/// An OPTIONS from `from` with `user_agent` to `to`; the status line of the
/// answer, or `None` when none came within `wait`.
fn options_with_agent(
    from: SocketAddr,
    to: SocketAddr,
    user_agent: &str,
    wait: Duration,
) -> Option<String> {
    let s = UdpSocket::bind(from).ok()?;
    s.set_read_timeout(Some(wait)).ok()?;
    let local = s.local_addr().ok()?;
    let msg = format!(
        "OPTIONS sip:{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-reload-{}\r\n\
         Max-Forwards: 70\r\nTo: <sip:{to}>\r\nFrom: <sip:probe@{local}>;tag=1\r\n\
         Call-ID: reload-{}@{local}\r\nCSeq: 1 OPTIONS\r\nUser-Agent: {user_agent}\r\n\
         Content-Length: 0\r\n\r\n",
        local.port(),
        local.port()
    );
    s.send_to(msg.as_bytes(), to).ok()?;
    let mut buf = [0u8; 2048];
    let (n, _) = s.recv_from(&mut buf).ok()?;
    Some(
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or("")
            .to_string(),
    )
}

/// `dce-loadgen attack flood` from the attacker, spoofing [`SPOOF`].
fn flood(attacker: &Host, target: SocketAddr, pps: u64, seconds: u64) -> ChildGuard {
    let mut cmd = attacker
        .ns
        .command(workspace_binary("dce-loadgen").to_str().unwrap());
    cmd.args(["attack", "flood", "--iface", &attacker.iface])
        .args(["--target", &target.to_string(), "--spoof", SPOOF])
        .args(["--pps", &pps.to_string()])
        .args(["--count", &(pps * seconds).to_string()])
        .args(["--duration", &seconds.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    ChildGuard::new(cmd.spawn().expect("dce-loadgen starts"))
}

fn scanner_drops(edge: &EdgeProcess) -> u64 {
    edge.snapshot()
        .ok()
        .and_then(|s| s.xdp.map(|x| x.drops["scanner"]))
        .unwrap_or(0)
}

fn events_named(events: &[serde_json::Value], name: &str) -> Vec<serde_json::Value> {
    events
        .iter()
        .filter(|e| e["event"] == name)
        .cloned()
        .collect()
}

#[test]
fn a_filter_reload_mid_flood_keeps_the_program_loses_no_call_and_a_bad_one_keeps_the_rules() {
    let test =
        "a_filter_reload_mid_flood_keeps_the_program_loses_no_call_and_a_bad_one_keeps_the_rules";
    if !privileged_or_skip(test)
        || !feature_or_skip(
            test,
            have_program("sipp") && have_program("nsenter"),
            "sipp or nsenter",
            "apt-get install sip-tester util-linux (scripts/setup.sh)",
        )
    {
        return;
    }
    const CALLS: u32 = 240;
    let lab = Lab::build(&LabSpec {
        caller_addrs: 1,
        upstreams: 1,
        attacker: true,
        edge_queues: 1,
    })
    .unwrap();
    let attacker = lab.attacker.as_ref().unwrap();
    let dir = TempDir::new("freload").unwrap();
    let server = Uas::start(&lab.upstreams[0], dir.path()).unwrap();
    let mut cfg = EdgeConfig::new(
        &lab,
        IoMode::AfXdp,
        groups_toml(None, &[("uk", &[server.addr()])]),
        "prefix,group\n44,uk\n".into(),
    );
    // The flood is shed in XDP (this 2-core box also runs the callers).
    cfg.filter = "unverified_cap_pps = 2000\nscanner_user_agents = [\"friendly-scanner\"]\n".into();
    let edge = EdgeProcess::start(&lab, dir.path(), &cfg).unwrap();
    let id = edge
        .xdp_program_id()
        .unwrap()
        .expect("an XDP program is attached");
    let caller = lab.callers.addr();
    let probe = SocketAddr::from((caller, 0));

    // Before: "EvilBot" is nobody's signature; the (allowlisted) caller's
    // OPTIONS with it is answered.
    let before = lab
        .callers
        .ns
        .enter(move || options_with_agent(probe, edge_sip(), "EvilBot/2.1", Duration::from_secs(5)))
        .unwrap();
    assert_eq!(before.as_deref(), Some("SIP/2.0 200 OK"), "{before:?}");

    // Calls and a spoofed flood, together.
    let calls = Uac::new(caller, edge.sip_addr(), "442071234567", 20, CALLS)
        .spawn(&lab.callers.ns, dir.path())
        .unwrap();
    let mut attack = flood(attacker, edge.sip_addr(), 10_000, 30);
    assert!(
        wait_until(PATIENCE, || server.incoming_calls().unwrap_or(0) >= 40),
        "calls never got going: {:?}",
        server.incoming_calls()
    );
    let flood_seen = edge
        .wait_for("the flood shed in XDP", PATIENCE, |s| {
            s.xdp.as_ref().is_some_and(|x| x.drops["unverified"] > 1000)
        })
        .unwrap();
    assert_eq!(
        flood_seen.modes.program_id,
        Some(id),
        "{:?}",
        flood_seen.modes
    );

    // The reload: a new signature and a new blocklist entry.
    cfg.filter =
        "unverified_cap_pps = 2000\nscanner_user_agents = [\"friendly-scanner\", \"EvilBot\"]\n\
                  blocklist = [\"203.0.113.0/24\"]\n"
            .into();
    edge.write_file("edge.toml", &cfg.toml(edge.iface()))
        .unwrap();
    let (ok, answer) = edge.filter_reload().unwrap();
    assert!(ok, "the reload was refused: {answer}\n{}", edge.log_text());
    assert!(
        answer.contains(&format!("id {id}")) && answer.contains("scanner_user_agents"),
        "{answer}"
    );
    assert_eq!(
        edge.xdp_program_id().unwrap(),
        Some(id),
        "the same program stays attached"
    );
    // The new signature is live: the same OPTIONS is dropped as a scanner
    // (an allowlisted source is still scanned, never banned).
    let scanned = scanner_drops(&edge);
    let after = lab
        .callers
        .ns
        .enter(move || options_with_agent(probe, edge_sip(), "EvilBot/2.1", Duration::from_secs(2)))
        .unwrap();
    assert_eq!(after, None, "a scanner gets no answer");
    edge.wait_for("the scanner drop counted", PATIENCE, |s| {
        s.xdp.as_ref().is_some_and(|x| x.drops["scanner"] > scanned)
    })
    .unwrap();

    // A bad table (a misspelt key) is refused with its file and line; the
    // new rules stay, the program too.
    let good = cfg.toml(edge.iface());
    let bad = good.replace("blocklist = ", "block_list = ");
    assert_ne!(bad, good);
    edge.write_file("edge.toml", &bad).unwrap();
    let line = bad
        .lines()
        .position(|l| l.starts_with("block_list"))
        .unwrap()
        + 1;
    let (ok, answer) = edge.filter_reload().unwrap();
    assert!(!ok, "a bad table must be refused: {answer}");
    assert!(
        answer.contains(&format!("edge.toml:{line}:")) && answer.contains("block_list"),
        "the refusal names file and line: {answer}"
    );
    assert_eq!(edge.xdp_program_id().unwrap(), Some(id));
    let scanned = scanner_drops(&edge);
    let again = lab
        .callers
        .ns
        .enter(move || options_with_agent(probe, edge_sip(), "EvilBot/2.1", Duration::from_secs(2)))
        .unwrap();
    assert_eq!(again, None, "the rules of the last good table stay");
    edge.wait_for("the scanner drop counted again", PATIENCE, |s| {
        s.xdp.as_ref().is_some_and(|x| x.drops["scanner"] > scanned)
    })
    .unwrap();

    let outcome = calls.wait().unwrap();
    let _ = attack.stop(Duration::from_secs(5));
    if !outcome.all_successful() {
        let s = edge.snapshot().ok();
        panic!(
            "no call may be lost to a reload: {}\nXDP: {:?}\nworkers: {:?}\nedge log:\n{}",
            outcome.report(),
            s.as_ref().map(|s| s.xdp.clone()),
            s.as_ref().map(|s| s
                .workers
                .iter()
                .map(|w| (w.dropped.clone(), w.rings.clone()))
                .collect::<Vec<_>>()),
            edge.log_text()
        );
    }
    let s = edge.snapshot().unwrap();
    assert_eq!(s.filter_reloads.accepted, 1, "{:?}", s.filter_reloads);
    assert_eq!(s.filter_reloads.refused, 1, "{:?}", s.filter_reloads);
    let metrics = edge.scrape_metrics().unwrap();
    assert!(
        metrics.contains("dce_edge_filter_reloads_total{result=\"refused\"} 1"),
        "{metrics}"
    );
    let events = edge.events();
    let accepted = events_named(&events, "filter_reload_accepted");
    assert_eq!(accepted.len(), 1, "{events:?}");
    assert_eq!(accepted[0]["details"]["program_id"], id);
    assert_eq!(
        accepted[0]["details"]["blocklist_added"],
        serde_json::json!(["203.0.113.0/24"])
    );
    let refused = events_named(&events, "filter_reload_refused");
    assert_eq!(refused.len(), 1, "{events:?}");
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("edge.toml:{line}:")),
        "{refused:?}"
    );
}

fn edge_sip() -> SocketAddr {
    SocketAddr::from((lab::topology::EDGE_ADDR, 5060))
}

/// A UDP SIP responder on `addr`: 200 to every request.
fn responder(ns: &Netns, addr: Ipv4Addr) -> std::thread::JoinHandle<std::io::Result<()>> {
    ns.spawn_thread(move || {
        let s = UdpSocket::bind((addr, 5060)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut buf = [0u8; 4096];
        // Bounded: it ends when nothing comes for a minute.
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg.starts_with("SIP/2.0") {
                continue;
            }
            let mut reply = String::from("SIP/2.0 200 OK\r\n");
            for l in msg.lines() {
                for h in ["Via:", "From:", "To:", "Call-ID:", "CSeq:"] {
                    if l.starts_with(h) {
                        reply.push_str(l);
                        reply.push_str("\r\n");
                    }
                }
            }
            reply.push_str("Content-Length: 0\r\n\r\n");
            let _ = s.send_to(reply.as_bytes(), from);
        }
    })
    .unwrap()
}

fn run_cli(ns: &Netns, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", ns.name()))
        .arg("--")
        .arg(workspace_binary("dce-edge"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn shield_mode_reloads_its_filter_serves_metrics_and_logs_every_operator_action() {
    let test = "shield_mode_reloads_its_filter_serves_metrics_and_logs_every_operator_action";
    if !privileged_or_skip(test)
        || !feature_or_skip(
            test,
            have_program("nsenter"),
            "nsenter",
            "apt-get install util-linux (scripts/setup.sh)",
        )
    {
        return;
    }
    let (client_ip, server_ip) = (Ipv4Addr::new(198, 18, 8, 1), Ipv4Addr::new(198, 18, 8, 2));
    let client = Netns::create("shc").unwrap();
    let server = Netns::create("shs").unwrap();
    let (c_if, s_if) = (unique_name("sc"), unique_name("ss"));
    veth_pair(&client, &c_if, &server, &s_if).unwrap();
    client.addr_up(&c_if, &format!("{client_ip}/24")).unwrap();
    server.addr_up(&s_if, &format!("{server_ip}/24")).unwrap();
    let _responder = responder(&server, server_ip);

    let dir = TempDir::new("shield").unwrap();
    let config = dir.path().join("edge.toml");
    let table = |agents: &str| {
        format!(
            "[filter]\nscanner_user_agents = [{agents}]\nauto_ban = false\n\n\
             [events]\nfile = \"events.jsonl\"\n\n[metrics]\nlisten = \"127.0.0.1:9561\"\n"
        )
    };
    std::fs::write(&config, table("\"friendly-scanner\"")).unwrap();
    let log = dir.path().join("filter.log");
    let mut shield = ChildGuard::new(
        std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", server.name()))
            .arg("--")
            .arg(workspace_binary("dce-edge"))
            .args(["filter", "--iface", &s_if, "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let url = "http://127.0.0.1:9561";
    let snapshot = || {
        server
            .enter(move || telemetry::stats::client::fetch_snapshot(url, Duration::from_secs(2)))
            .unwrap()
    };
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(PATIENCE, || snapshot().is_ok()),
        "the shield did not serve its snapshot:\n{}",
        log_text()
    );
    let id = xdp_program_id(server.name(), &s_if)
        .unwrap()
        .expect("attached");
    let s = snapshot().unwrap();
    assert_eq!(s.role, telemetry::stats::Role::Filter);
    assert_eq!(s.modes.program_id, Some(id));

    let to = SocketAddr::from((server_ip, 5060));
    let from = SocketAddr::from((client_ip, 0));
    let probe = |agent: &'static str| {
        client
            .enter(move || options_with_agent(from, to, agent, Duration::from_secs(2)))
            .unwrap()
    };
    assert_eq!(probe("EvilBot/1").as_deref(), Some("SIP/2.0 200 OK"));

    // Reload through the control socket the commands find by themselves.
    std::fs::write(&config, table("\"friendly-scanner\", \"EvilBot\"")).unwrap();
    let (ok, answer) = run_cli(&server, &["filter", "reload", "--iface", &s_if]);
    assert!(ok, "{answer}\n{}", log_text());
    assert!(answer.contains(&format!("id {id}")), "{answer}");
    assert_eq!(xdp_program_id(server.name(), &s_if).unwrap(), Some(id));
    assert_eq!(probe("EvilBot/1"), None, "the new signature is live");
    assert_eq!(probe("Linphone/5").as_deref(), Some("SIP/2.0 200 OK"));

    // A bad table: refused with its line, the rules stay.
    std::fs::write(&config, table("\"\"")).unwrap();
    let (ok, answer) = run_cli(&server, &["filter", "reload", "--iface", &s_if]);
    assert!(!ok && answer.contains("edge.toml:2:"), "{answer}");
    assert_eq!(probe("EvilBot/1"), None, "the running rules stay");

    // Operator actions go through the shield, so each leaves an event.
    let net = "198.18.8.77/32";
    for args in [
        vec!["ban", net, "--ttl", "600"],
        vec!["unban", net],
        vec!["allow", "198.18.9.0/24"],
        vec!["allow", "198.18.9.0/24", "--remove"],
    ] {
        let (ok, answer) = run_cli(&server, &args);
        assert!(ok, "{args:?}: {answer}");
    }
    let (ok, answer) = run_cli(&server, &["allow", "0.0.0.0/0"]);
    assert!(
        !ok && answer.contains("/8"),
        "allowing everything is refused: {answer}"
    );
    // A ban that lapses is an event too.
    let (ok, answer) = run_cli(&server, &["ban", "198.18.8.88", "--ttl", "1"]);
    assert!(ok, "{answer}");

    let events_path = dir.path().join("events.jsonl");
    let events = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&events_path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    assert!(
        wait_until(PATIENCE, || events().iter().any(|e| e["event"] == "unban"
            && e["subject"] == "198.18.8.88/32"
            && e["reason"] == "expired")),
        "no unban event for the lapsed ban: {:?}",
        events()
    );
    let m = server
        .enter(move || telemetry::stats::client::fetch_metrics(url, Duration::from_secs(2)))
        .unwrap()
        .unwrap();
    assert!(
        m.contains("dce_edge_filter_reloads_total{result=\"accepted\"} 1")
            && m.contains("dce_edge_xdp_drops_total{reason=\"scanner\"}"),
        "{m}"
    );
    shield.stop(Duration::from_secs(30)).unwrap();
    let kinds: Vec<(String, String)> = events()
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap_or("").to_string(),
                e["subject"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for (kind, subject) in [
        ("start", s_if.as_str()),
        ("filter_reload_accepted", config.to_str().unwrap()),
        ("filter_reload_refused", config.to_str().unwrap()),
        ("ban", net),
        ("unban", net),
        ("allowlist_add", "198.18.9.0/24"),
        ("allowlist_remove", "198.18.9.0/24"),
        ("stop", "dce-edge"),
    ] {
        assert!(
            kinds.iter().any(|(k, s)| k == kind && s == subject),
            "no {kind} event about {subject}: {kinds:?}"
        );
    }
    assert_eq!(
        kinds.iter().filter(|(k, s)| k == "ban" && s == net).count(),
        1,
        "one event per ban: {kinds:?}"
    );
}
