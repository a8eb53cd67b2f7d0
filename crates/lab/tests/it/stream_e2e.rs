//! SIP over TCP through the real `dce-edge run` (issue 19): a SIPp caller
//! on one TCP connection (`-t t1`) to the edge's `[stream]` listener, a
//! SIPp server over UDP behind it; every call completes (INVITE to BYE)
//! while a slow sender, an oversized header and a bad Content-Length each
//! lose their own connection, and the stream thread's counters agree. In
//! socket and AF_XDP mode (TCP passes the XDP program to the kernel), and
//! in AF_XDP mode while SYN floods from one source and from spoofed ones
//! are shed in XDP (`syn_rate_limit`, `syn_overload`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use dataplane::IoMode;
use lab::bin::TempDir;
use lab::edge_process::{groups_toml, EdgeConfig, EdgeProcess};
use lab::privilege::{feature_or_skip, have_program, privileged_or_skip};
use lab::sipp::{Uac, Uas};
use lab::topology::{Lab, LabSpec};

const CALLS: u32 = 50;

fn calls_over_tcp(mode: IoMode, test: &str) {
    if !privileged_or_skip(test) {
        return;
    }
    if !feature_or_skip(
        test,
        have_program("sipp") && have_program("nsenter"),
        "sipp or nsenter",
        "apt-get install sip-tester util-linux",
    ) {
        return;
    }
    let lab = Lab::build(&LabSpec {
        caller_addrs: 1,
        upstreams: 1,
        attacker: false,
        edge_queues: 1,
    })
    .unwrap();
    let dir = TempDir::new("stcp").unwrap();
    let uas = Uas::start(&lab.upstreams[0], dir.path()).unwrap();
    let targets: Vec<SocketAddr> = vec![uas.addr()];
    let mut cfg = EdgeConfig::new(
        &lab,
        mode,
        groups_toml(None, &[("uk", &targets)]),
        "prefix,group\n44,uk\n".into(),
    );
    let sip = SocketAddr::from((lab::topology::EDGE_ADDR, 5060));
    cfg.stream = format!("tcp = \"{sip}\"\nmessage_timeout_s = 2\nmax_header = 4096");
    let mut edge = EdgeProcess::start(&lab, dir.path(), &cfg).unwrap();

    // Attackers on connections of their own while the calls run: a slow
    // sender (a header that never ends), an oversized header, a bad
    // Content-Length. Each is closed; the calls do not notice.
    let attacks = lab
        .callers
        .ns
        .spawn_thread(move || {
            let open = || {
                let c = TcpStream::connect(sip).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                c
            };
            let closed = |mut c: TcpStream| {
                let mut buf = [0u8; 512];
                loop {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => return true,
                        Ok(_) => {}
                    }
                }
            };
            let mut slow = open();
            slow.write_all(b"INVITE sip:442071234567@198.18.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP x")
                .unwrap();
            let mut big = open();
            let _ = big.write_all(&[b'A'; 8192]);
            let mut bad = open();
            bad.write_all(b"OPTIONS sip:198.18.0.1 SIP/2.0\r\nContent-Length: 1x\r\n\r\n")
                .unwrap();
            [closed(slow), closed(big), closed(bad)]
        })
        .unwrap();

    let mut uac = Uac::new(lab.callers.addr(), sip, "442071234567", 20, CALLS);
    uac.transport = "t1";
    let run = uac.run(&lab.callers.ns, dir.path()).unwrap();
    assert!(run.all_successful(), "{}", run.report());
    assert_eq!(attacks.join().unwrap().unwrap(), [true; 3]);

    let last = edge.stop().unwrap();
    let st = last.stream.expect("the stream thread's counters");
    // INVITE, ACK and BYE of every call came over TCP; the 200s went back
    // on the connection.
    assert!(st.counters["messages"] >= 3 * CALLS as u64, "{st:?}");
    assert!(st.counters["sent"] >= 2 * CALLS as u64, "{st:?}");
    assert_eq!(
        st.counters["accepted"], 4,
        "SIPp's and three attackers': {st:?}"
    );
    for (counter, n) in [
        ("slow_timeouts", 1),
        ("header_too_long", 1),
        ("bad_content_length", 1),
        ("no_content_length", 0),
        ("conn_gone", 0),
        ("handler_drops", 0),
    ] {
        assert_eq!(st.counters[counter], n, "{counter}: {st:?}");
    }
}

#[test]
fn sipp_calls_over_tcp_complete_through_the_edge_in_socket_mode_despite_attackers() {
    calls_over_tcp(
        IoMode::Socket,
        "sipp_calls_over_tcp_complete_through_the_edge_in_socket_mode_despite_attackers",
    );
}

#[test]
fn sipp_calls_over_tcp_complete_through_the_edge_in_afxdp_mode_despite_attackers() {
    calls_over_tcp(
        IoMode::AfXdp,
        "sipp_calls_over_tcp_complete_through_the_edge_in_afxdp_mode_despite_attackers",
    );
}

/// A CA and a server certificate for the edge's address (PEM: CA, chain,
/// key).
fn certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "lab ca");
    let ca_key = KeyPair::generate().unwrap();
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let mut p = CertificateParams::new(vec![lab::topology::EDGE_ADDR.to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, "edge");
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &issuer).unwrap().pem();
    (ca_pem, cert, key.serialize_pem())
}

/// Reads one framed SIP message from a TLS stream.
fn next_message(
    s: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: &mut Vec<u8>,
) -> String {
    let mut framer = sip::stream::Framer::default();
    loop {
        match framer.next(buf).unwrap() {
            sip::stream::Frame::Message(n) => {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                buf.drain(..n);
                return m;
            }
            sip::stream::Frame::Ping(n) | sip::stream::Frame::Skip(n) => {
                buf.drain(..n);
            }
            sip::stream::Frame::Incomplete => {
                let mut chunk = [0u8; 4096];
                let n = s.read(&mut chunk).unwrap();
                assert!(n > 0, "the edge closed the connection");
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

#[test]
fn a_tls_caller_completes_calls_through_the_edge_and_a_plain_text_peer_is_counted() {
    let test = "a_tls_caller_completes_calls_through_the_edge_and_a_plain_text_peer_is_counted";
    if !privileged_or_skip(test) {
        return;
    }
    if !feature_or_skip(
        test,
        have_program("sipp") && have_program("nsenter"),
        "sipp or nsenter",
        "apt-get install sip-tester util-linux",
    ) {
        return;
    }
    let lab = Lab::build(&LabSpec {
        caller_addrs: 1,
        upstreams: 1,
        attacker: false,
        edge_queues: 1,
    })
    .unwrap();
    let dir = TempDir::new("stls").unwrap();
    let (ca, cert, key) = certificates();
    std::fs::write(dir.path().join("edge.crt"), &cert).unwrap();
    std::fs::write(dir.path().join("edge.key"), &key).unwrap();
    let uas = Uas::start(&lab.upstreams[0], dir.path()).unwrap();
    let mut cfg = EdgeConfig::new(
        &lab,
        IoMode::Socket,
        groups_toml(None, &[("uk", &[uas.addr()])]),
        "prefix,group\n44,uk\n".into(),
    );
    let tls = SocketAddr::from((lab::topology::EDGE_ADDR, 5061));
    cfg.stream = format!("tls = \"{tls}\"\ncertificate = \"edge.crt\"\nkey = \"edge.key\"");
    let mut edge = EdgeProcess::start(&lab, dir.path(), &cfg).unwrap();
    let me = lab.callers.addr();

    let calls = lab
        .callers
        .ns
        .spawn_thread(move || {
            use rustls::pki_types::pem::PemObject;
            // Plain SIP to the TLS port first: refused, counted.
            let mut plain = TcpStream::connect(tls).unwrap();
            plain
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            plain
                .write_all(b"OPTIONS sip:198.18.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
            let _ = plain.read(&mut [0u8; 64]);

            let mut roots = rustls::RootCertStore::empty();
            for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
            let cfg = rustls::ClientConfig::builder_with_provider(dataplane::tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = rustls::pki_types::ServerName::IpAddress(lab::topology::EDGE_ADDR.into());
            let conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap();
            let sock = TcpStream::connect(tls).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let local = sock.local_addr().unwrap();
            let mut s = rustls::StreamOwned::new(conn, sock);
            let mut buf = Vec::new();
            for call in 0..5 {
                let head = |method: &str, cseq: u32, to_tag: &str, branch: &str| {
                    format!(
                        "{method} sip:442071234567@{tls};transport=tls SIP/2.0\r\n\
                         Via: SIP/2.0/TLS {local};branch=z9hG4bK{branch};rport\r\n\
                         Max-Forwards: 70\r\nFrom: <sip:c@{me}>;tag=ft{call}\r\n\
                         To: <sip:442071234567@{tls}>{to_tag}\r\nCall-ID: tls-e2e-{call}\r\n\
                         CSeq: {cseq} {method}\r\nContact: <sip:c@{local};transport=tls>\r\n\
                         Content-Length: 0\r\n\r\n"
                    )
                };
                s.write_all(head("INVITE", 1, "", &format!("i{call}")).as_bytes())
                    .unwrap();
                let ok = loop {
                    let m = next_message(&mut s, &mut buf);
                    if m.starts_with("SIP/2.0 200") {
                        break m;
                    }
                    assert!(m.starts_with("SIP/2.0 1"), "{m}");
                };
                let to_tag = ok
                    .split("\r\n")
                    .find(|l| l.starts_with("To:"))
                    .and_then(|l| l.split(";tag=").nth(1))
                    .unwrap()
                    .to_string();
                let tag = format!(";tag={to_tag}");
                s.write_all(head("ACK", 1, &tag, &format!("a{call}")).as_bytes())
                    .unwrap();
                s.write_all(head("BYE", 2, &tag, &format!("b{call}")).as_bytes())
                    .unwrap();
                let bye_ok = next_message(&mut s, &mut buf);
                assert!(bye_ok.starts_with("SIP/2.0 200"), "{bye_ok}");
                assert!(bye_ok.contains("CSeq: 2 BYE"), "{bye_ok}");
            }
            s.conn.send_close_notify();
            let _ = s.flush();
        })
        .unwrap();
    calls.join().unwrap().unwrap();

    let last = edge.stop().unwrap();
    let st = last.stream.expect("the stream thread's counters");
    assert_eq!(st.counters["tls_handshakes"], 1, "{st:?}");
    assert_eq!(st.counters["tls_failed_protocol"], 1, "{st:?}");
    assert!(st.counters["messages"] >= 15, "{st:?}");
    assert_eq!(st.counters["handler_drops"], 0, "{st:?}");
}

#[test]
fn sipp_calls_over_tcp_complete_during_a_syn_flood_at_the_sip_port() {
    let test = "sipp_calls_over_tcp_complete_during_a_syn_flood_at_the_sip_port";
    if !privileged_or_skip(test) {
        return;
    }
    if !feature_or_skip(
        test,
        have_program("sipp") && have_program("hping3") && have_program("nsenter"),
        "sipp, hping3 or nsenter",
        "apt-get install sip-tester hping3 util-linux",
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
    let dir = TempDir::new("ssyn").unwrap();
    let uas = Uas::start(&lab.upstreams[0], dir.path()).unwrap();
    let mut cfg = EdgeConfig::new(
        &lab,
        IoMode::Socket,
        groups_toml(None, &[("uk", &[uas.addr()])]),
        "prefix,group\n44,uk\n".into(),
    );
    let sip = SocketAddr::from((lab::topology::EDGE_ADDR, 5060));
    cfg.stream = format!("tcp = \"{sip}\"");
    let mut edge = EdgeProcess::start(&lab, dir.path(), &cfg).unwrap();

    // The flood: bounded by time (hping3's --flood ignores -c), stopped by
    // SIGINT so it prints its count; ended by pid if it outlives the test.
    let attacker = lab.attacker.as_ref().unwrap();
    let report = dir.path().join("hping3.out");
    let mut flood = lab::netns::ChildGuard::new(
        attacker
            .ns
            .command("timeout")
            .args(["-s", "INT", "6", "hping3", "-S", "-p", "5060", "--flood"])
            .arg(lab::topology::EDGE_ADDR.to_string())
            .stdout(std::fs::File::create(&report).unwrap())
            .stderr(std::fs::File::create(dir.path().join("hping3.err")).unwrap())
            .spawn()
            .unwrap(),
    );

    let mut uac = Uac::new(lab.callers.addr(), sip, "442071234567", 20, CALLS);
    uac.transport = "t1";
    let run = uac.run(&lab.callers.ns, dir.path()).unwrap();
    assert!(run.all_successful(), "{}", run.report());

    flood.wait_timeout(Duration::from_secs(30)).unwrap();
    let err = std::fs::read_to_string(dir.path().join("hping3.err")).unwrap();
    let sent: u64 = err
        .lines()
        .find_map(|l| {
            l.split(" packets transmitted")
                .next()
                .filter(|_| l.contains(" packets transmitted"))
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(sent > 1000, "hping3 sent {sent} SYNs: {err}");
    eprintln!("{test}: {CALLS} calls over TCP completed while hping3 sent {sent} SYNs");
    let st = edge.stop().unwrap().stream.unwrap();
    assert!(st.counters["messages"] >= 3 * CALLS as u64, "{st:?}");
}

/// Runs a bounded, paced hping3 SYN flood at the SIP TCP port from the
/// attacker's namespace (`extra` picks its sources) and waits for it: the
/// SYNs it reports sent and how many whole seconds it ran, rounded up.
fn syn_flood(
    lab: &Lab,
    dir: &std::path::Path,
    name: &str,
    syns: u64,
    gap_us: u32,
    extra: &[&str],
    during: impl FnOnce(),
) -> (u64, u64) {
    let attacker = lab.attacker.as_ref().unwrap();
    let err = dir.join(format!("{name}.err"));
    let started = std::time::Instant::now();
    let mut flood = lab::netns::ChildGuard::new(
        attacker
            .ns
            .command("timeout")
            .args(["-s", "INT", "120", "hping3", "-S", "-p", "5060", "-c"])
            .arg(syns.to_string())
            .args(["-i", &format!("u{gap_us}")])
            .args(extra)
            .arg(lab::topology::EDGE_ADDR.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(dir.join(format!("{name}.out"))).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap(),
    );
    during();
    flood
        .wait_timeout(Duration::from_secs(180))
        .unwrap()
        .expect("hping3 ended by its timeout");
    let secs = started.elapsed().as_secs() + 1;
    let text = std::fs::read_to_string(&err).unwrap();
    let sent: u64 = text
        .lines()
        .find_map(|l| {
            l.split(" packets transmitted")
                .next()
                .filter(|_| l.contains(" packets transmitted"))
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert_eq!(sent, syns, "hping3 {name}: {text}");
    (sent, secs)
}

/// The per-source SYN budget the XDP flood test gives the filter.
const SYN_SOURCE_RATE: u64 = 10;
const SYN_SOURCE_BURST: u64 = 20;
/// The per-CPU SYN budget (for sources neither allowlisted nor verified):
/// above one source's budget, so a single source never spends it, and low
/// enough that a paced hping3 overruns it.
const SYN_CPU_RATE: u64 = 100;
const SYN_CPU_BURST: u64 = 100;

/// Issue 19: the real `dce-edge run` in AF_XDP mode with the XDP program on
/// the edge's interface. The caller is NOT allowlisted (the lab allowlists
/// callers by default; here it earns its standing): its first TCP
/// connection carries SIP, which proves its address, and the control
/// thread marks it verified in the XDP filter. A verified source skips the
/// per-CPU SYN budget (`syn_overload`) and still meets its own per-source
/// budget, which a caller opening one connection per run never reaches.
/// Then, each while SIPp opens a new TCP connection and completes its calls
/// (INVITE to BYE): a single-source SYN flood from the attacker's own
/// address, shed in XDP as `syn_rate_limit`, and a flood from random
/// (spoofed) sources (`--rand-source`; hping3 cannot draw them from a
/// range), each new source within its own budget, shed as `syn_overload`
/// once the per-CPU budget is spent. Neither flood reaches the stream
/// thread: it accepts SIPp's three connections and the two the attacker
/// opened for real within its cap (`max_per_source = 2`), refuses the
/// attacker's other two, counts all of it under `tcp` as well, and the
/// event log has one `connections_refused` event naming the attacker.
#[test]
fn sipp_calls_over_tcp_complete_while_xdp_sheds_syn_floods_in_afxdp_mode() {
    let test = "sipp_calls_over_tcp_complete_while_xdp_sheds_syn_floods_in_afxdp_mode";
    if !privileged_or_skip(test) {
        return;
    }
    if !feature_or_skip(
        test,
        have_program("sipp") && have_program("hping3") && have_program("nsenter"),
        "sipp, hping3 or nsenter",
        "apt-get install sip-tester hping3 util-linux",
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
    let dir = TempDir::new("sxdp").unwrap();
    let uas = Uas::start(&lab.upstreams[0], dir.path()).unwrap();
    let mut cfg = EdgeConfig::new(
        &lab,
        IoMode::AfXdp,
        groups_toml(None, &[("uk", &[uas.addr()])]),
        "prefix,group\n44,uk\n".into(),
    );
    let caller = lab.callers.addr();
    cfg.allowlist.retain(|a| *a != format!("{caller}/32"));
    cfg.filter = format!(
        "syn_per_source = {{ rate = {SYN_SOURCE_RATE}, burst = {SYN_SOURCE_BURST} }}\n\
         syn_per_cpu = {{ rate = {SYN_CPU_RATE}, burst = {SYN_CPU_BURST} }}\n"
    );
    let sip = SocketAddr::from((lab::topology::EDGE_ADDR, 5060));
    cfg.stream = format!("tcp = \"{sip}\"\nmax_per_source = 2");
    let mut edge = EdgeProcess::start(&lab, dir.path(), &cfg).unwrap();

    // The attacker's real connections over its cap: four opened, two kept,
    // two refused (accepted and closed at once), which the event log
    // summarises in one `connections_refused` event naming it.
    let cap_probe = lab
        .attacker
        .as_ref()
        .unwrap()
        .ns
        .spawn_thread(move || {
            let conns: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(sip).unwrap()).collect();
            conns
                .into_iter()
                .filter(|mut c| {
                    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                    matches!(c.read(&mut [0u8; 16]), Ok(0))
                })
                .count()
        })
        .unwrap();

    // Each SIPp run opens its own connection (a new SYN) from its own port.
    let calls = |port: u16| {
        let mut uac = Uac::new(caller, sip, "442071234567", 20, CALLS);
        uac.transport = "t1";
        uac.port = port;
        let run = uac.run(&lab.callers.ns, dir.path()).unwrap();
        assert!(
            run.all_successful(),
            "SIPp from port {port}: {}",
            run.report()
        );
    };
    let drops = |s: &telemetry::stats::Snapshot, reason: &str| {
        s.xdp.as_ref().map_or(0, |x| x.drops[reason])
    };

    // Before any flood: the caller's calls over TCP verify it, in the XDP
    // filter too.
    calls(5070);
    assert_eq!(
        cap_probe.join().unwrap().unwrap(),
        2,
        "two refused by the cap"
    );
    edge.wait_for(
        "the caller verified in the XDP filter",
        Duration::from_secs(30),
        |s| s.verified_sources >= 1,
    )
    .unwrap();

    // One source floods; the caller opens a new connection meanwhile.
    let (sent, secs) = syn_flood(&lab, dir.path(), "flood-one", 3000, 1000, &[], || {
        std::thread::sleep(Duration::from_millis(300));
        calls(5071);
    });
    // At most the burst and the rate for each second of the flood passed.
    let floor = sent - SYN_SOURCE_BURST - SYN_SOURCE_RATE * secs;
    let one = edge
        .wait_for(
            "the single-source flood counted",
            Duration::from_secs(30),
            |s| drops(s, "syn_rate_limit") >= floor,
        )
        .unwrap();
    assert_eq!(drops(&one, "syn_overload"), 0, "{:?}", one.xdp);
    let attacker = format!("{}/32", lab::topology::ATTACKER_ADDR);
    let top = one.top_sources.iter().find(|t| t.source == attacker);
    assert_eq!(
        top.map(|t| t.last_reason.as_str()),
        Some("syn_rate_limit"),
        "{:?}",
        one.top_sources
    );
    let limited = drops(&one, "syn_rate_limit");

    // Spoofed sources flood; the caller opens a new connection meanwhile.
    // The per-CPU budget is per CPU: every CPU that runs the XDP program
    // may pass its burst and rate.
    // SAFETY: sysconf reads a constant of the running system.
    #[allow(unsafe_code)]
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }.max(1) as u64;
    let (spoofed, secs) = syn_flood(
        &lab,
        dir.path(),
        "flood-spoofed",
        6000,
        500,
        &["--rand-source"],
        || {
            std::thread::sleep(Duration::from_millis(300));
            calls(5072);
        },
    );
    let floor = spoofed.saturating_sub(cpus * (SYN_CPU_BURST + SYN_CPU_RATE * secs));
    edge.wait_for("the spoofed flood counted", Duration::from_secs(30), |s| {
        drops(s, "syn_overload") >= floor
    })
    .unwrap();

    // One event for the refusals (the stream thread closes a window of
    // them every 10 s), naming the attacker.
    let refused = |e: &serde_json::Value| e["event"] == "connections_refused";
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !edge.events().iter().any(refused) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }

    let last = edge.stop().unwrap();
    let events: Vec<serde_json::Value> = edge.events().into_iter().filter(refused).collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        events[0]["subject"],
        lab::topology::ATTACKER_ADDR.to_string(),
        "{events:?}"
    );
    assert_eq!(events[0]["details"]["refused_per_source"], 2, "{events:?}");
    let xdp = last.xdp.as_ref().unwrap();
    eprintln!(
        "{test}: {} calls over TCP completed; {sent} SYNs from one source, {} dropped as \
         syn_rate_limit; {spoofed} from random sources, {} dropped as syn_overload",
        3 * CALLS,
        limited,
        xdp.drops["syn_overload"]
    );
    assert!(xdp.drops["syn_overload"] >= floor, "{xdp:?}");
    assert!(xdp.drops["syn_overload"] <= spoofed, "{xdp:?}");
    let st = last.stream.expect("the stream thread's counters");
    assert!(st.counters["messages"] >= 9 * CALLS as u64, "{st:?}");
    assert_eq!(
        st.counters["accepted"], 5,
        "SIPp's three connections and the attacker's two kept only: {st:?}"
    );
    assert_eq!(st.counters["handler_drops"], 0, "{st:?}");
    // All of it over TCP, by transport too.
    let tcp = &st.transports["tcp"];
    assert_eq!(tcp.counters["accepted"], 5, "{st:?}");
    assert_eq!(tcp.counters["refused_per_source"], 2, "{st:?}");
    assert_eq!(st.transports["tls"].counters["accepted"], 0, "{st:?}");
}
