//! SIP over TCP through the real `dce-edge run` (issue 19): a SIPp caller
//! on one TCP connection (`-t t1`) to the edge's `[stream]` listener, a
//! SIPp server over UDP behind it; every call completes (INVITE to BYE)
//! while a slow sender, an oversized header and a bad Content-Length each
//! lose their own connection, and the stream thread's counters agree. In
//! socket and AF_XDP mode (TCP passes the XDP program to the kernel).

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
