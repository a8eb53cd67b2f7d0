//! SIP over TCP through the real `dce-edge run` (issue 19): a SIPp caller
//! on one TCP connection (`-t t1`) to the edge's `[stream]` listener, a
//! SIPp server over UDP behind it; every call completes (INVITE to BYE)
//! while a slow sender, an oversized header and a bad Content-Length each
//! lose their own connection, and the stream thread's counters agree. In
//! socket and AF_XDP mode (TCP passes the XDP program to the kernel), and
//! in AF_XDP mode while SYN floods from one source and from spoofed ones
//! are shed in XDP (`syn_rate_limit`, `syn_overload`). Over TLS: a caller
//! written by hand (rustls) to a UDP upstream, and to a TLS upstream (a
//! small UAS in the test) next to one whose certificate the edge does not
//! trust.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use dataplane::IoMode;
use lab::bin::TempDir;
use lab::edge_process::{groups_toml, EdgeConfig, EdgeProcess};
use lab::privilege::privileged_or_skip;
use lab::sipp::{Uac, Uas};
use lab::topology::{Lab, LabSpec};
use testpki::TestCa;

use super::{lab_with_or_skip, sipp_lab_or_skip};

const CALLS: u32 = 50;

fn calls_over_tcp(mode: IoMode, test: &str) {
    let Some(lab) = sipp_lab_or_skip(
        test,
        &LabSpec {
            caller_addrs: 1,
            upstreams: 1,
            attacker: false,
            edge_queues: 1,
        },
    ) else {
        return;
    };
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

/// Reads one framed SIP message from a (decrypted) stream; `None` once the
/// peer has closed it.
fn next_message(s: &mut impl Read, buf: &mut Vec<u8>) -> Option<String> {
    let mut framer = sip::stream::Framer::default();
    loop {
        match framer.next(buf).unwrap() {
            sip::stream::Frame::Message(n) => {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                buf.drain(..n);
                return Some(m);
            }
            sip::stream::Frame::Ping(n) | sip::stream::Frame::Skip(n) => {
                buf.drain(..n);
            }
            sip::stream::Frame::Incomplete => {
                let mut chunk = [0u8; 4096];
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        }
    }
}

/// A caller on one TLS connection to the edge, written by hand (Debian's
/// SIPp has no TLS): it trusts the test's CA for the edge's address.
struct TlsCaller {
    s: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: Vec<u8>,
    edge: SocketAddr,
    local: SocketAddr,
    me: std::net::Ipv4Addr,
    /// Messages read that were not for the call being made.
    others: Vec<String>,
}

impl TlsCaller {
    /// Connects to the edge's TLS listener (from the caller's namespace).
    fn connect(ca_pem: &str, edge: SocketAddr, me: std::net::Ipv4Addr) -> TlsCaller {
        let name = rustls::pki_types::ServerName::IpAddress(edge.ip().into());
        let conn =
            rustls::ClientConnection::new(testpki::client_config(ca_pem, None), name).unwrap();
        let sock = TcpStream::connect(edge).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let local = sock.local_addr().unwrap();
        TlsCaller {
            s: rustls::StreamOwned::new(conn, sock),
            buf: Vec::new(),
            edge,
            local,
            me,
            others: Vec::new(),
        }
    }

    /// A request of call `call` to `number` (no body).
    fn request(&self, method: &str, number: &str, call: u32, cseq: u32, to_tag: &str) -> String {
        let (edge, local, me) = (self.edge, self.local, self.me);
        let branch = format!("{}{number}x{call}", &method[..1].to_ascii_lowercase());
        format!(
            "{method} sip:{number}@{edge};transport=tls SIP/2.0\r\n\
             Via: SIP/2.0/TLS {local};branch=z9hG4bK{branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:c@{me}>;tag=ft{call}\r\n\
             To: <sip:{number}@{edge}>{to_tag}\r\nCall-ID: tls-e2e-{number}-{call}\r\n\
             CSeq: {cseq} {method}\r\nContact: <sip:c@{local};transport=tls>\r\n\
             Content-Length: 0\r\n\r\n"
        )
    }

    /// The next message for call `call` to `number`; those for other
    /// calls are kept in `others`.
    fn next(&mut self, number: &str, call: u32) -> String {
        let id = format!("Call-ID: tls-e2e-{number}-{call}\r\n");
        loop {
            let m =
                next_message(&mut self.s, &mut self.buf).expect("the edge closed the connection");
            if m.contains(&id) {
                return m;
            }
            self.others.push(m);
        }
    }

    /// Sends an INVITE and nothing else (a call that is not expected to
    /// be answered).
    fn invite_only(&mut self, number: &str, call: u32) {
        let invite = self.request("INVITE", number, call, 1, "");
        self.s.write_all(invite.as_bytes()).unwrap();
    }

    /// One call: INVITE, its 200 (provisional answers skipped), ACK, BYE
    /// and the BYE's 200, each checked.
    fn call(&mut self, number: &str, call: u32) {
        self.invite_only(number, call);
        let ok = loop {
            let m = self.next(number, call);
            if m.starts_with("SIP/2.0 200") {
                break m;
            }
            assert!(m.starts_with("SIP/2.0 1"), "{m}");
        };
        assert!(ok.contains("CSeq: 1 INVITE"), "{ok}");
        let to_tag = ok
            .split("\r\n")
            .find(|l| l.starts_with("To:"))
            .and_then(|l| l.split(";tag=").nth(1))
            .unwrap()
            .to_string();
        let tag = format!(";tag={to_tag}");
        let ack = self.request("ACK", number, call, 1, &tag);
        self.s.write_all(ack.as_bytes()).unwrap();
        let bye = self.request("BYE", number, call, 2, &tag);
        self.s.write_all(bye.as_bytes()).unwrap();
        let bye_ok = self.next(number, call);
        assert!(bye_ok.starts_with("SIP/2.0 200"), "{bye_ok}");
        assert!(bye_ok.contains("CSeq: 2 BYE"), "{bye_ok}");
    }

    /// Closes the connection; returns the messages read that were not for
    /// the call being made.
    fn close(mut self) -> Vec<String> {
        self.s.conn.send_close_notify();
        let _ = self.s.flush();
        self.others
    }
}

#[test]
fn a_tls_caller_completes_calls_through_the_edge_and_a_plain_text_peer_is_counted() {
    let test = "a_tls_caller_completes_calls_through_the_edge_and_a_plain_text_peer_is_counted";
    let Some(lab) = sipp_lab_or_skip(
        test,
        &LabSpec {
            caller_addrs: 1,
            upstreams: 1,
            attacker: false,
            edge_queues: 1,
        },
    ) else {
        return;
    };
    let dir = TempDir::new("stls").unwrap();
    let ca = TestCa::new("lab ca");
    let (cert, key) = ca.server(&[&lab::topology::EDGE_ADDR.to_string()]);
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
    let ca_pem = ca.pem.clone();

    let calls = lab
        .callers
        .ns
        .spawn_thread(move || {
            // Plain SIP to the TLS port first: refused, counted.
            let mut plain = TcpStream::connect(tls).unwrap();
            plain
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            plain
                .write_all(b"OPTIONS sip:198.18.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
            let _ = plain.read(&mut [0u8; 64]);

            let mut caller = TlsCaller::connect(&ca_pem, tls, me);
            for call in 0..5 {
                caller.call("442071234567", call);
            }
            assert_eq!(caller.close(), Vec::<String>::new());
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

/// What a [`TlsUas`] saw.
#[derive(Debug, Default)]
struct UasLog {
    /// Where each connection came from.
    peers: Vec<SocketAddr>,
    /// Connections whose TLS handshake failed.
    failed_handshakes: usize,
    /// Every request received, as it came.
    requests: Vec<String>,
}

/// A small SIP UAS over TLS, written in the test: listens in an upstream's
/// namespace with a certificate it is given, answers INVITE (with a
/// Contact and a To tag) and every other request but ACK with 200,
/// keeping the Via, From, To, Call-ID, CSeq and Record-Route headers as a
/// UAS must (RFC 3261 8.2.6.2, 12.1.1), on the connection the request came
/// on, framed by Content-Length.
struct TlsUas {
    addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    log: std::sync::Arc<std::sync::Mutex<UasLog>>,
    thread: std::thread::JoinHandle<()>,
}

impl TlsUas {
    fn start(host: &lab::topology::Host, port: u16, chain: &str, key: &str) -> TlsUas {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let addr = SocketAddr::from((host.addr(), port));
        // Bound in the namespace before the edge can dial it; the socket
        // stays there whichever thread then uses it.
        let listener = host
            .ns
            .enter(move || std::net::TcpListener::bind(addr))
            .unwrap()
            .unwrap();
        listener.set_nonblocking(true).unwrap();
        let cfg = testpki::server_config(chain, key);
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(UasLog::default()));
        let thread = {
            let (stop, log) = (stop.clone(), log.clone());
            std::thread::spawn(move || {
                let mut conns = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((sock, peer)) => {
                            sock.set_nonblocking(false).unwrap();
                            // Bounded: a connection the edge never closes
                            // cannot hang the test.
                            sock.set_read_timeout(Some(Duration::from_secs(60)))
                                .unwrap();
                            log.lock().unwrap().peers.push(peer);
                            let (cfg, log) = (cfg.clone(), log.clone());
                            conns.push(std::thread::spawn(move || {
                                TlsUas::serve(sock, cfg, addr, &log)
                            }));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(e) => panic!("accept on {addr}: {e}"),
                    }
                }
                for c in conns {
                    c.join().unwrap();
                }
            })
        };
        TlsUas {
            addr,
            stop,
            log,
            thread,
        }
    }

    /// One connection: the handshake, then each request answered until
    /// the peer closes.
    fn serve(
        sock: TcpStream,
        cfg: std::sync::Arc<rustls::ServerConfig>,
        me: SocketAddr,
        log: &std::sync::Mutex<UasLog>,
    ) {
        let conn = rustls::ServerConnection::new(cfg).unwrap();
        let mut s = rustls::StreamOwned::new(conn, sock);
        while s.conn.is_handshaking() {
            if s.conn.complete_io(&mut s.sock).is_err() {
                log.lock().unwrap().failed_handshakes += 1;
                return;
            }
        }
        let mut buf = Vec::new();
        while let Some(request) = next_message(&mut s, &mut buf) {
            let answer = TlsUas::answer(&request, me);
            log.lock().unwrap().requests.push(request);
            if let Some(answer) = answer {
                if s.write_all(answer.as_bytes()).is_err() {
                    return;
                }
            }
        }
    }

    /// The 200 for `request` (none for an ACK).
    fn answer(request: &str, me: SocketAddr) -> Option<String> {
        let method = request.split(' ').next()?;
        if method == "ACK" {
            return None;
        }
        let mut out = String::from("SIP/2.0 200 OK\r\n");
        for line in request.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
            let name = line.split(':').next().unwrap_or("").trim();
            let name = name.to_ascii_lowercase();
            let to = name == "to" || name == "t";
            if to
                || [
                    "via",
                    "v",
                    "from",
                    "f",
                    "call-id",
                    "i",
                    "cseq",
                    "record-route",
                ]
                .contains(&name.as_str())
            {
                out.push_str(line);
                if to && method == "INVITE" && !line.contains(";tag=") {
                    out.push_str(";tag=tlsuas");
                }
                out.push_str("\r\n");
            }
        }
        if method == "INVITE" {
            out.push_str(&format!("Contact: <sip:uas@{me};transport=tls>\r\n"));
        }
        out.push_str("Content-Length: 0\r\n\r\n");
        Some(out)
    }

    /// Stops accepting, waits for its connections to end (the edge closes
    /// them when it stops) and returns what it saw.
    fn stop(self) -> UasLog {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap();
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

/// Calls a TLS caller makes through the edge to a TLS upstream.
const TLS_CALLS: u32 = 20;
/// Calls routed to an upstream whose certificate the edge does not trust.
const UNTRUSTED_CALLS: u32 = 3;

/// A TLS caller to a TLS upstream through the real `dce-edge run` (socket
/// mode): the edge dials the route target over TLS once, verifying its
/// certificate against `upstream_ca`, and every call completes (INVITE,
/// 200, ACK, BYE, 200) through it, the upstream seeing the edge's Via with
/// transport TLS on top. A second target presents a certificate from
/// another CA, for the right address: each call routed there is never
/// sent (the edge's handshake fails, counted as `tls_failed_certificate`),
/// the upstream receives no request, and the good upstream's calls do not
/// notice.
#[test]
fn a_tls_caller_completes_calls_to_a_tls_upstream_and_an_untrusted_one_gets_nothing() {
    let test = "a_tls_caller_completes_calls_to_a_tls_upstream_and_an_untrusted_one_gets_nothing";
    if !privileged_or_skip(test) {
        return;
    }
    let lab = Lab::build(&LabSpec {
        caller_addrs: 1,
        upstreams: 1,
        attacker: false,
        edge_queues: 1,
    })
    .unwrap();
    let dir = TempDir::new("stlsup").unwrap();
    let ca = TestCa::new("lab ca");
    let (cert, key) = ca.server(&[&lab::topology::EDGE_ADDR.to_string()]);
    std::fs::write(dir.path().join("edge.crt"), &cert).unwrap();
    std::fs::write(dir.path().join("edge.key"), &key).unwrap();
    std::fs::write(dir.path().join("upstreams-ca.crt"), &ca.pem).unwrap();
    let upstream = &lab.upstreams[0];
    let (cert, key) = ca.server(&[&upstream.addr().to_string()]);
    let good = TlsUas::start(upstream, 5061, &cert, &key);
    // The right address, the wrong CA.
    let (cert, key) = TestCa::new("rogue ca").server(&[&upstream.addr().to_string()]);
    let rogue = TlsUas::start(upstream, 5062, &cert, &key);

    let groups = format!(
        "[[group]]\nname = \"uk\"\naction = \"forward\"\ntargets = [\n  \
         {{ address = \"{}\", priority = 1, weight = 1, transport = \"tls\" }},\n]\n\n\
         [[group]]\nname = \"fr\"\naction = \"forward\"\ntargets = [\n  \
         {{ address = \"{}\", priority = 1, weight = 1, transport = \"tls\" }},\n]\n",
        good.addr, rogue.addr
    );
    let mut cfg = EdgeConfig::new(
        &lab,
        IoMode::Socket,
        groups,
        "prefix,group\n44,uk\n33,fr\n".into(),
    );
    let tls = SocketAddr::from((lab::topology::EDGE_ADDR, 5061));
    cfg.stream = format!(
        "tls = \"{tls}\"\ncertificate = \"edge.crt\"\nkey = \"edge.key\"\n\
         upstream_ca = \"upstreams-ca.crt\""
    );
    let mut edge = EdgeProcess::start(&lab, dir.path(), &cfg).unwrap();
    let me = lab.callers.addr();
    let ca_pem = ca.pem.clone();

    // The caller makes its calls to the good upstream, then one call at a
    // time to the rogue one, each after the edge has counted the last.
    let (next, go_on) = std::sync::mpsc::channel::<()>();
    let calls = lab
        .callers
        .ns
        .spawn_thread(move || {
            let mut caller = TlsCaller::connect(&ca_pem, tls, me);
            for call in 0..TLS_CALLS {
                caller.call("442071234567", call);
            }
            for call in 0..UNTRUSTED_CALLS {
                caller.invite_only("33123456789", call);
                go_on.recv().unwrap();
            }
            // The good upstream's calls still complete afterwards.
            caller.call("442071234567", TLS_CALLS);
            caller.close()
        })
        .unwrap();
    let tls_counter = |s: &telemetry::stats::Snapshot, name: &str| {
        s.stream
            .as_ref()
            .and_then(|st| st.transports.get("tls"))
            .and_then(|t| t.counters.get(name).copied())
            .unwrap_or(0)
    };
    for n in 1..=u64::from(UNTRUSTED_CALLS) {
        edge.wait_for(
            "the edge refusing the rogue upstream's certificate",
            Duration::from_secs(60),
            |s| tls_counter(s, "tls_failed_certificate") >= n,
        )
        .unwrap();
        next.send(()).unwrap();
    }
    // Whatever the caller heard about the calls that went nowhere (a
    // stateless edge sends nothing for them).
    let others = calls.join().unwrap().unwrap();
    eprintln!(
        "{test}: the caller got {} other messages: {others:?}",
        others.len()
    );

    let last = edge.stop().unwrap();
    let good = good.stop();
    let rogue = rogue.stop();
    let st = last.stream.expect("the stream thread's counters");
    let t = &st.transports["tls"];
    eprintln!("{test}: edge tls {t:?}; rogue upstream {rogue:?}");
    // One connection from the caller, one dialled to the good upstream and
    // reused for every call, one dial per call to the rogue upstream.
    assert_eq!(t.counters["accepted"], 1, "{st:?}");
    assert_eq!(
        t.counters["dialled"],
        1 + u64::from(UNTRUSTED_CALLS),
        "{st:?}"
    );
    assert_eq!(t.counters["tls_handshakes"], 2, "{st:?}");
    assert_eq!(
        t.counters["tls_failed_certificate"],
        u64::from(UNTRUSTED_CALLS),
        "{st:?}"
    );
    assert_eq!(st.counters["dial_failed"], 0, "{st:?}");
    assert_eq!(st.counters["handler_drops"], 0, "{st:?}");
    assert_eq!(st.transports["tcp"].counters["accepted"], 0, "{st:?}");

    // The good upstream: one connection, from the edge; every request of
    // every call, each with the edge's Via on top, over TLS.
    assert_eq!(good.peers.len(), 1, "{good:?}");
    assert_eq!(good.peers[0].ip(), lab::topology::EDGE_ADDR, "{good:?}");
    assert_eq!(good.failed_handshakes, 0, "{good:?}");
    let calls = TLS_CALLS as usize + 1;
    for method in ["INVITE", "ACK", "BYE"] {
        let n = good
            .requests
            .iter()
            .filter(|r| r.starts_with(&format!("{method} ")))
            .count();
        assert_eq!(n, calls, "{method}s at the upstream");
    }
    assert_eq!(good.requests.len(), 3 * calls, "{:?}", good.requests);
    let edge_via = format!("Via: SIP/2.0/TLS {}", lab::topology::EDGE_ADDR);
    for r in &good.requests {
        let top = r.split("\r\n").find(|l| l.starts_with("Via:")).unwrap();
        assert!(top.starts_with(&edge_via), "top Via {top:?} in\n{r}");
        assert!(
            !r.contains("Call-ID: tls-e2e-33"),
            "a rogue-routed call reached the good upstream:\n{r}"
        );
    }

    // The rogue upstream: dialled once per call, never past the handshake.
    assert!(rogue.requests.is_empty(), "{rogue:?}");
    assert_eq!(rogue.peers.len(), UNTRUSTED_CALLS as usize, "{rogue:?}");
    assert_eq!(
        rogue.failed_handshakes, UNTRUSTED_CALLS as usize,
        "{rogue:?}"
    );
}

#[test]
fn sipp_calls_over_tcp_complete_during_a_syn_flood_at_the_sip_port() {
    let test = "sipp_calls_over_tcp_complete_during_a_syn_flood_at_the_sip_port";
    let Some(lab) = lab_with_or_skip(
        test,
        &LabSpec {
            caller_addrs: 1,
            upstreams: 1,
            attacker: true,
            edge_queues: 1,
        },
        &[
            ("sipp", "sip-tester"),
            ("hping3", "hping3"),
            ("nsenter", "util-linux"),
        ],
    ) else {
        return;
    };
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
    let Some(lab) = lab_with_or_skip(
        test,
        &LabSpec {
            caller_addrs: 1,
            upstreams: 1,
            attacker: true,
            edge_queues: 1,
        },
        &[
            ("sipp", "sip-tester"),
            ("hping3", "hping3"),
            ("nsenter", "util-linux"),
        ],
    ) else {
        return;
    };
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
