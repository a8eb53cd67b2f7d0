//! End to end: `dce-edge filter` (the real binary) on a veth in a network
//! namespace, in front of a small SIP responder; the real SIPVicious
//! scanners, a legitimate client and an INVITE flood on the other side.
//! The scanners must find nothing, the legitimate client must be answered,
//! and the counters read by a second `dce-edge` process must match what was
//! sent.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lab::netns::{unique_name, veth_pair, ChildGuard, Netns};
use lab::privilege::{feature_or_skip, have_program, privileged_or_skip};

const SERVER: &str = "198.18.7.2";
const SCANNER: &str = "198.18.7.1";
const CLIENT: &str = "198.18.7.3";
const FLOODER: &str = "198.18.7.4";
const FLOOD_INVITES: usize = 2000;
const CLIENT_OPTIONS: usize = 5;
const CLIENT_INVITES: usize = 3;

/// The `dce-edge` binary next to this test's `deps/` folder.
fn dce_edge_bin() -> PathBuf {
    lab::bin::workspace_binary("dce-edge")
}

/// A command run inside `ns` without a new mount namespace (unlike `ip
/// netns exec`), so every `dce-edge` process sees the same bpffs pins.
fn in_netns(ns: &Netns, program: &std::path::Path) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{}", ns.name()))
        .arg("--")
        .arg(program);
    cmd
}

/// What the responder saw: (source address, method) per request.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A minimal UDP SIP server: OPTIONS -> 200, INVITE -> 486, REGISTER -> 401
/// (what a real registrar says, and what svwar looks for), else 200.
fn responder(socket: UdpSocket, seen: Seen, stop: Arc<AtomicBool>) {
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        let method = msg.split(' ').next().unwrap_or("").to_string();
        if method.starts_with("SIP/") {
            continue;
        }
        seen.lock()
            .unwrap()
            .push((from.ip().to_string(), method.clone()));
        let status = match method.as_str() {
            "INVITE" => "486 Busy Here",
            "REGISTER" => "401 Unauthorized",
            "ACK" => continue,
            _ => "200 OK",
        };
        let mut reply = format!("SIP/2.0 {status}\r\n");
        for h in ["Via", "From", "To", "Call-ID", "CSeq"] {
            if let Some(v) = header(&msg, h) {
                reply.push_str(&format!("{h}: {v}\r\n"));
            }
        }
        if method == "REGISTER" {
            reply.push_str("WWW-Authenticate: Digest realm=\"lab\", nonce=\"1234\"\r\n");
        }
        reply.push_str("User-Agent: e2e-responder\r\nContent-Length: 0\r\n\r\n");
        let _ = socket.send_to(reply.as_bytes(), from);
    }
}

fn request(method: &str, seq: usize, from_ip: &str) -> String {
    format!(
        "{method} sip:100@{SERVER} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from_ip}:5070;branch=z9hG4bK-e2e-{method}-{seq}\r\n\
         Max-Forwards: 70\r\n\
         To: <sip:100@{SERVER}>\r\n\
         From: \"Alice\" <sip:alice@{from_ip}>;tag={seq}\r\n\
         Call-ID: e2e-{method}-{seq}@{from_ip}\r\n\
         CSeq: {seq} {method}\r\n\
         Contact: <sip:alice@{from_ip}:5070>\r\n\
         User-Agent: Linphone/5.2\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Runs a program inside `ns` and returns its stdout and stderr together
/// (SIPVicious logs its verdicts to stderr, its result table to stdout).
fn output_of(ns: &Netns, program: &str, args: &[&str]) -> String {
    let out = ns
        .command(program)
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

fn stats_json(bin: &std::path::Path, ns: &Netns, iface: &str) -> Result<serde_json::Value, String> {
    let out = in_netns(ns, bin)
        .args([
            "stats",
            "--iface",
            iface,
            "--json",
            "--interval",
            "0.1",
            "--top",
            "20",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

fn n(v: &serde_json::Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_u64()
        .unwrap_or_else(|| panic!("{path:?} missing in {v}"))
}

#[test]
fn filter_stops_scanners_and_floods_and_lets_sip_through() {
    if !privileged_or_skip("filter_stops_scanners_and_floods_and_lets_sip_through") {
        return;
    }
    if !feature_or_skip(
        "filter_e2e",
        have_program("svmap") && have_program("svwar") && have_program("nsenter"),
        "svmap/svwar (SIPVicious) or nsenter",
        "apt-get install sipvicious util-linux (scripts/setup.sh)",
    ) {
        return;
    }
    let bin = dce_edge_bin();
    let started = Instant::now();

    let attackers = Netns::create("fea").unwrap();
    let server = Netns::create("fes").unwrap();
    let (a_if, s_if) = (unique_name("fa"), unique_name("fs"));
    veth_pair(&attackers, &a_if, &server, &s_if).unwrap();
    for addr in [SCANNER, CLIENT, FLOODER] {
        attackers.addr_up(&a_if, &format!("{addr}/24")).unwrap();
    }
    server.addr_up(&s_if, &format!("{SERVER}/24")).unwrap();

    let seen: Seen = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let socket = server
        .enter(|| UdpSocket::bind((SERVER, 5060)).unwrap())
        .unwrap();
    let responder_thread = {
        let (seen, stop) = (seen.clone(), stop.clone());
        std::thread::spawn(move || responder(socket, seen, stop))
    };

    // Control: without the filter, svmap does find the server.
    let control = output_of(&attackers, "svmap", &[SERVER]);
    assert!(
        control.contains(SERVER) && !control.contains("found nothing"),
        "svmap should find the unprotected responder; it said:\n{control}"
    );
    seen.lock().unwrap().clear();

    // The shield, configured from a file with other tables around [filter].
    let dir = std::env::temp_dir().join(unique_name("fe2e"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("edge.toml");
    std::fs::write(
        &config,
        "[proxy]\nlisten = \"ignored here\"\n\n\
         [filter]\nsip_ports = [5060]\nattach = \"auto\"\nauto_ban = true\nban_ttl_secs = 600\n\
         rate_limits.invite = { rate = 1, burst = 5 }\n\n[routes]\nx = 1\n",
    )
    .unwrap();
    let log = dir.join("filter.log");
    let mut filter = ChildGuard::new(
        in_netns(&server, &bin)
            .args(["filter", "--iface", &s_if, "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let baseline = loop {
        match stats_json(&bin, &server, &s_if) {
            Ok(v) => break v,
            Err(e) if Instant::now() > deadline => panic!(
                "the filter did not come up: {e}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert_eq!(baseline["totals"]["attach_mode"], "native", "{baseline}");

    // A legitimate client, not allowlisted: every request answered.
    let answered = attackers
        .enter(|| {
            let s = UdpSocket::bind((CLIENT, 5070)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let to: SocketAddr = format!("{SERVER}:5060").parse().unwrap();
            let mut answers = Vec::new();
            let plan = std::iter::repeat_n("OPTIONS", CLIENT_OPTIONS)
                .chain(std::iter::repeat_n("INVITE", CLIENT_INVITES));
            for (seq, method) in plan.enumerate() {
                s.send_to(request(method, seq + 1, CLIENT).as_bytes(), to)
                    .unwrap();
                let mut buf = [0u8; 2048];
                let status = match s.recv_from(&mut buf) {
                    Ok((len, _)) => String::from_utf8_lossy(&buf[..len])
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_string(),
                    Err(e) => format!("no answer: {e}"),
                };
                answers.push((method, status));
            }
            answers
        })
        .unwrap();
    for (method, status) in &answered {
        let want = if *method == "OPTIONS" {
            "SIP/2.0 200"
        } else {
            "SIP/2.0 486"
        };
        assert!(status.starts_with(want), "{method} got {status:?}");
    }

    // The real scanners, from another source: they must find nothing.
    let svmap = output_of(&attackers, "svmap", &[SERVER]);
    assert!(
        svmap.contains("found nothing") && !svmap.contains(&format!("{SERVER}:5060")),
        "svmap found something:\n{svmap}"
    );
    let svwar_out = output_of(&attackers, "svwar", &["-e100-110", SERVER]);
    assert!(
        svwar_out.contains("found nothing") && !svwar_out.contains("reqauth"),
        "svwar found something:\n{svwar_out}"
    );

    // A bounded INVITE flood from one source, paced so the veth ring never
    // overflows (every packet must reach the program to be counted).
    attackers
        .enter(|| {
            let s = UdpSocket::bind((FLOODER, 5070)).unwrap();
            for i in 0..FLOOD_INVITES {
                s.send_to(
                    request("INVITE", 1000 + i, FLOODER).as_bytes(),
                    (SERVER, 5060),
                )
                .unwrap();
                if i % 50 == 49 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let after = stats_json(&bin, &server, &s_if).unwrap();
    stop.store(true, Ordering::Relaxed);
    responder_thread.join().unwrap();

    let by_source: HashMap<String, usize> =
        seen.lock()
            .unwrap()
            .iter()
            .fold(HashMap::new(), |mut m, (src, _)| {
                *m.entry(src.clone()).or_default() += 1;
                m
            });
    let got = |ip: &str| by_source.get(ip).copied().unwrap_or(0);
    let d = |path: &[&str]| n(&after, path) - n(&baseline, path);

    assert_eq!(
        got(SCANNER),
        0,
        "no scanner packet may reach the server: {by_source:?}"
    );
    assert_eq!(
        got(CLIENT),
        CLIENT_OPTIONS + CLIENT_INVITES,
        "{by_source:?}"
    );
    let flood_passed = got(FLOODER);
    assert!(
        (5..FLOOD_INVITES / 2).contains(&flood_passed),
        "the burst of 5 passes, the flood does not: {flood_passed}"
    );
    // Every SIP packet that passed reached the server, and every flood
    // packet is either passed or rate limited.
    assert_eq!(
        d(&["totals", "passed"]) as usize,
        CLIENT_OPTIONS + CLIENT_INVITES + flood_passed,
        "{after}"
    );
    assert_eq!(
        d(&["totals", "drops", "rate_limit"]) as usize,
        FLOOD_INVITES - flood_passed,
        "{after}"
    );
    assert!(d(&["totals", "drops", "scanner"]) >= 1, "{after}");
    // Nobody vouches for the scanners' source address (it could be anyone's),
    // so its packets are dropped and nobody is banned (issue 17).
    assert!(
        d(&["totals", "events", "scanners_unproven"]) >= 1,
        "{after}"
    );
    assert_eq!(d(&["totals", "events", "auto_bans"]), 0, "{after}");
    for quiet in [
        "blocklist",
        "banned",
        "fragment",
        "not_sip",
        "overload",
        "malformed",
        "unverified",
    ] {
        assert_eq!(d(&["totals", "drops", quiet]), 0, "{quiet}: {after}");
    }
    let top = after["top_sources"].as_array().unwrap();
    let reason_of = |ip: &str| {
        top.iter()
            .find(|t| t["source"] == format!("{ip}/32"))
            .map(|t| t["last_reason"].as_str().unwrap().to_string())
    };
    assert_eq!(reason_of(FLOODER).as_deref(), Some("rate_limit"), "{after}");
    assert_eq!(reason_of(SCANNER).as_deref(), Some("scanner"), "{after}");
    assert_eq!(reason_of(CLIENT), None, "{after}");
    // The same drops folded into networks: the flooder and the scanner
    // share 198.18.7.0/24 and 198.18.0.0/16, split by reason.
    let nets = &after["top_networks"];
    assert_eq!(nets["capacity"], 8192, "{after}");
    let net = |network: &str, reason: &str| {
        nets["networks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["network"] == network && t["reason"] == reason)
            .map(|t| (t["drops"].as_u64().unwrap(), t["sources"].as_u64().unwrap()))
    };
    for network in ["198.18.7.0/24", "198.18.0.0/16"] {
        let (drops, sources) = net(network, "rate_limit").expect(network);
        assert!(
            drops >= (FLOOD_INVITES - flood_passed) as u64 && sources >= 1,
            "{network}: {after}"
        );
        assert!(net(network, "scanner").is_some(), "{network}: {after}");
    }

    // The ban list, read by a second process, is empty: an unverified
    // scanner bans nobody.
    let bans = in_netns(&server, &bin)
        .args(["ban", "--list", "--json", "--iface", &s_if])
        .output()
        .unwrap();
    let bans: serde_json::Value = serde_json::from_slice(&bans.stdout).unwrap();
    assert_eq!(bans, serde_json::json!([]), "{bans}");

    // A blocklist feed through the shield's control socket: the networks in
    // and around its allowlist are not banned, the flooder is; a feed with
    // a bad line is refused whole.
    let control = appliance::shield::default_control_path(&s_if).unwrap();
    let control = control.to_str().unwrap();
    let cli = |args: &[&str]| {
        let out = in_netns(&server, &bin).args(args).output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, out) = cli(&["allow", "198.51.100.0/24", "--control", control]);
    assert!(ok, "{out}");
    let feed = dir.join("feed.txt");
    std::fs::write(&feed, "198.51.100.7\n198.51.0.0/16\nnot-an-address\n").unwrap();
    let (ok, out) = cli(&[
        "ban",
        "--import",
        feed.to_str().unwrap(),
        "--control",
        control,
    ]);
    assert!(
        !ok && out.contains("feed.txt:3: \"not-an-address\"") && out.contains("nothing was banned"),
        "{out}"
    );
    std::fs::write(
        &feed,
        format!("198.51.100.7\n198.51.0.0/16\n{FLOODER} ; the flooder\n"),
    )
    .unwrap();
    let (ok, out) = cli(&[
        "ban",
        "--import",
        feed.to_str().unwrap(),
        "--control",
        control,
    ]);
    assert!(
        ok && out.contains("banned 1")
            && out.contains("2 inside or covering the allowlist")
            && out.contains("198.51.0.0/16 (covers allowlisted 198.51.100.0/24)"),
        "{out}"
    );
    let bans = in_netns(&server, &bin)
        .args(["ban", "--list", "--json", "--iface", &s_if])
        .output()
        .unwrap();
    let bans: serde_json::Value = serde_json::from_slice(&bans.stdout).unwrap();
    let banned: Vec<&str> = bans
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["network"].as_str().unwrap())
        .collect();
    assert_eq!(banned, [format!("{FLOODER}/32")], "{bans}");

    // SIGTERM: detached, pins removed.
    let status = filter.stop(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "filter exit: {status}");
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(log_text.contains("pins removed"), "{log_text}");
    assert!(
        stats_json(&bin, &server, &s_if).is_err(),
        "nothing may be left pinned after exit"
    );
    let link = server.run("ip", &["link", "show", &s_if]).unwrap();
    assert!(!link.contains("xdp"), "program left attached: {link}");
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("filter_e2e took {:?}", started.elapsed());
}

#[test]
fn filter_killed_leaves_no_pins_once_its_namespace_is_gone() {
    let test = "filter_killed_leaves_no_pins_once_its_namespace_is_gone";
    if !privileged_or_skip(test) {
        return;
    }
    if !feature_or_skip(
        test,
        have_program("nsenter"),
        "nsenter",
        "apt-get install util-linux",
    ) {
        return;
    }
    let outside = Netns::create("fko").unwrap();
    let server = Netns::create("fks").unwrap();
    let (o_if, s_if) = (unique_name("fo"), unique_name("fk"));
    veth_pair(&outside, &o_if, &server, &s_if).unwrap();
    server.ip(&["link", "set", &s_if, "up"]).unwrap();
    let dir = lab::bin::TempDir::new("fkill").unwrap();
    let log = dir.path().join("filter.log");
    let mut filter = ChildGuard::new(
        in_netns(&server, &dce_edge_bin())
            .args(["filter", "--iface", &s_if, "--mode", "generic", "--control"])
            .arg(dir.path().join("control.sock"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let pins = {
        let iface = s_if.clone();
        server
            .enter(move || xdp::loader::pin_dir_for(&iface).unwrap())
            .unwrap()
    };
    assert!(
        lab::wait_until(Duration::from_secs(60), || pins.join("info").exists()),
        "the filter did not pin its maps in {}:\n{}",
        pins.display(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // SIGKILL: the filter cannot remove its own pins.
    filter.child_mut().kill().unwrap();
    filter.child_mut().wait().unwrap();
    assert!(pins.is_dir(), "a killed filter removed its pins?");
    drop(filter);

    // The namespace's owner removes them with it.
    drop(server);
    assert!(
        !pins.exists(),
        "{} outlived the namespace of its killed filter",
        pins.display()
    );
    drop(outside);
}
