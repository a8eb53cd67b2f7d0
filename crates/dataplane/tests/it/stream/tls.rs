//! TLS on the stream layer: certificates from a test CA, a non-blocking
//! rustls client the test drives between polls, and the handshakes that
//! fail, each counted under its reason without disturbing other
//! connections.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use dataplane::echo::Echo;
use dataplane::stream::{StreamConfig, StreamLayer};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ServerConfig};
use testpki::TestCa;

use super::{local, message, pump};

/// A CA, a server certificate for 127.0.0.1 and localhost, a client
/// certificate from the same CA and one from a rogue CA (all PEM).
pub struct Pki {
    pub ca: String,
    pub server: (String, String),
    pub client: (String, String),
    pub rogue_client: (String, String),
}

impl Pki {
    /// The edge's configuration; `require_client` asks clients for a
    /// certificate from the CA.
    pub fn server_config(&self, require_client: bool) -> Arc<ServerConfig> {
        dataplane::tls::server_config(
            self.server.0.as_bytes(),
            self.server.1.as_bytes(),
            require_client.then_some(self.ca.as_bytes()),
        )
        .unwrap()
    }
}

pub fn pki() -> Pki {
    let ca = TestCa::new("dce test ca");
    Pki {
        server: ca.server(&["localhost", "127.0.0.1"]),
        client: ca.client(&["trunk.test"]),
        rogue_client: TestCa::new("rogue ca").client(&["trunk.test"]),
        ca: ca.pem,
    }
}

/// A client trusting the test CA, presenting `cert` (PEM certificate and
/// key) when given.
pub fn client_config(pki: &Pki, cert: Option<&(String, String)>) -> Arc<ClientConfig> {
    testpki::client_config(&pki.ca, cert)
}

/// A non-blocking TLS client: [`TlsClient::io`] moves what it can both
/// ways (the test calls it between polls of the layer).
pub struct TlsClient {
    conn: ClientConnection,
    sock: TcpStream,
    /// Plaintext received.
    pub got: Vec<u8>,
    /// The connection ended (closed, reset, or a TLS error).
    pub closed: bool,
    /// The TLS error that ended it, if one did.
    pub error: Option<rustls::Error>,
    /// Application-data records received (TLS 1.3 post-handshake messages
    /// travel as such records too).
    pub app_records: usize,
    /// Every byte received, for reading record headers.
    wire: Vec<u8>,
    /// Where the next record header starts in `wire`.
    next_record: usize,
}

impl TlsClient {
    pub fn connect(addr: SocketAddr, cfg: Arc<ClientConfig>) -> TlsClient {
        let sock = TcpStream::connect(addr).unwrap();
        sock.set_nonblocking(true).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        TlsClient {
            conn: ClientConnection::new(cfg, name).unwrap(),
            sock,
            got: Vec::new(),
            closed: false,
            error: None,
            app_records: 0,
            wire: Vec::new(),
            next_record: 0,
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.conn.writer().write_all(bytes).unwrap();
    }

    /// Queues what the client's buffer takes of `bytes`; how much.
    pub fn try_send(&mut self, bytes: &[u8]) -> usize {
        self.conn.writer().write(bytes).unwrap_or(0)
    }

    pub fn handshaken(&self) -> bool {
        !self.conn.is_handshaking()
    }

    /// Writes what is pending, reads what arrived, writes what that
    /// called for (handshake records); true once closed.
    pub fn io(&mut self) -> bool {
        self.write();
        self.read();
        self.write();
        self.closed
    }

    /// Writes what is pending, reading nothing.
    pub fn write(&mut self) {
        while !self.closed && self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => self.closed = true,
            }
        }
    }

    fn read(&mut self) {
        let mut raw = vec![0u8; 65536];
        while !self.closed {
            match self.sock.read(&mut raw) {
                Ok(0) => self.closed = true,
                Ok(n) => {
                    self.count_records(&raw[..n]);
                    let mut rest = &raw[..n];
                    while !rest.is_empty() && !self.closed {
                        match self.conn.read_tls(&mut rest) {
                            Ok(_) => self.process(),
                            Err(_) => self.closed = true,
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => self.closed = true,
            }
        }
    }

    fn process(&mut self) {
        match self.conn.process_new_packets() {
            Ok(_) => {
                let mut buf = [0u8; 16384];
                while let Ok(n) = self.conn.reader().read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    self.got.extend_from_slice(&buf[..n]);
                }
            }
            Err(e) => {
                self.error = Some(e);
                self.closed = true;
            }
        }
    }

    /// Counts the application-data records whose header arrived: a
    /// record header is its type (23 for application data), the version
    /// (2 bytes) and the length (2 bytes).
    fn count_records(&mut self, bytes: &[u8]) {
        self.wire.extend_from_slice(bytes);
        while self.wire.len() >= self.next_record + 5 {
            let h = &self.wire[self.next_record..self.next_record + 5];
            if h[0] == 23 {
                self.app_records += 1;
            }
            self.next_record += 5 + usize::from(u16::from_be_bytes([h[3], h[4]]));
        }
    }
}

#[test]
fn messages_and_pings_over_tls_are_answered_on_the_connection() {
    let pki = pki();
    let cfg = StreamConfig::tls_only(Some((local(), pki.server_config(false))));
    let mut layer = StreamLayer::open(cfg, Echo::new()).unwrap();
    let mut c = TlsClient::connect(layer.local_tls().unwrap(), client_config(&pki, None));
    let m = message("over tls");
    c.send(format!("{m}\r\n\r\n{m}").as_bytes());
    let want = format!("{m}\r\n{m}");
    assert!(pump(&mut layer, |_| {
        c.io();
        c.got.len() >= want.len()
    }));
    assert_eq!(String::from_utf8(c.got.clone()).unwrap(), want);
    let k = layer.counters();
    assert_eq!((k.tls_handshakes, k.messages, k.pings), (1, 2, 1), "{k:?}");
}

#[test]
fn messages_answered_in_one_round_on_a_tls_connection_share_records() {
    let pki = pki();
    let cfg = StreamConfig::tls_only(Some((local(), pki.server_config(false))));
    let mut layer = StreamLayer::open(cfg, Echo::new()).unwrap();
    let mut c = TlsClient::connect(layer.local_tls().unwrap(), client_config(&pki, None));
    // A first exchange: the handshake, and the session tickets the server
    // sends after it, are behind us.
    let first = message("first");
    c.send(first.as_bytes());
    assert!(pump(&mut layer, |_| {
        c.io();
        c.got.len() >= first.len()
    }));
    let (records_before, messages_before) = (c.app_records, layer.counters().messages);
    c.got.clear();
    // Ten messages in one client record: the layer reads them in one
    // round and answers them together.
    let ten: String = (0..10).map(|i| message(&format!("m{i}"))).collect();
    c.send(ten.as_bytes());
    assert!(pump(&mut layer, |_| {
        c.io();
        c.got.len() >= ten.len()
    }));
    assert_eq!(String::from_utf8(c.got.clone()).unwrap(), ten);
    assert_eq!(layer.counters().messages - messages_before, 10);
    let records = c.app_records - records_before;
    assert!(
        records < 10,
        "ten answers came in {records} records, one each: they were sealed one by one"
    );
}

#[test]
fn failed_tls_handshakes_are_counted_by_reason_and_spare_other_connections() {
    let pki = pki();
    let mut cfg = StreamConfig::tls_only(Some((local(), pki.server_config(true))));
    cfg.message_timeout = Duration::from_millis(500);
    let mut layer = StreamLayer::open(cfg, Echo::new()).unwrap();
    let addr = layer.local_tls().unwrap();
    // A trunk with a certificate from the CA: served throughout.
    let mut good = TlsClient::connect(addr, client_config(&pki, Some(&pki.client)));
    assert!(pump(&mut layer, |_| {
        good.io();
        good.handshaken()
    }));
    // Plain SIP to the TLS port: not TLS.
    let mut plain = TcpStream::connect(addr).unwrap();
    plain.write_all(message("").as_bytes()).unwrap();
    plain.set_nonblocking(true).unwrap();
    // A certificate from another CA, and none at all.
    let mut rogue = TlsClient::connect(addr, client_config(&pki, Some(&pki.rogue_client)));
    let mut anonymous = TlsClient::connect(addr, client_config(&pki, None));
    // Connects and never says hello.
    let mut silent = TcpStream::connect(addr).unwrap();
    silent.set_nonblocking(true).unwrap();
    // TLS 1.3: a client whose certificate is refused learns it on its
    // first read, so each sends a message too.
    rogue.send(message("rogue").as_bytes());
    anonymous.send(message("anonymous").as_bytes());
    assert!(
        pump(&mut layer, |l| {
            rogue.io();
            anonymous.io();
            let _ = super::drain(&mut plain, &mut Vec::new());
            let _ = super::drain(&mut silent, &mut Vec::new());
            let k = l.counters();
            k.tls_failed_certificate == 2
                && k.tls_failed_protocol == 1
                && k.tls_handshake_timeouts == 1
        }),
        "{:?} rogue {:?} anonymous {:?}",
        layer.counters(),
        rogue.error,
        anonymous.error
    );
    assert!(rogue.got.is_empty() && anonymous.got.is_empty());
    assert_eq!(layer.counters().messages, 0);
    // The good one still works.
    let m = message("still here");
    good.send(m.as_bytes());
    assert!(pump(&mut layer, |_| {
        good.io();
        good.got.len() >= m.len()
    }));
    assert_eq!(layer.open_connections(), 1);
    assert_eq!(layer.counters().tls_handshakes, 1);
}

#[test]
fn a_tls_peer_that_does_not_read_is_closed_at_its_queue_cap() {
    let pki = pki();
    let mut cfg = StreamConfig::tls_only(Some((local(), pki.server_config(false))));
    cfg.max_queued = 64 * 1024;
    let mut layer = StreamLayer::open(cfg, Echo::new()).unwrap();
    let mut c = TlsClient::connect(layer.local_tls().unwrap(), client_config(&pki, None));
    assert!(pump(&mut layer, |_| {
        c.io();
        c.handshaken()
    }));
    // Echoed 32 KiB messages the client never reads: the kernel's buffers
    // fill, then rustls's, capped at the queue limit. Bounded: 2000.
    let m = message(&"y".repeat(32 * 1024));
    let (mut sent, mut pos) = (0, 0);
    assert!(
        pump(&mut layer, |l| {
            if sent < 2000 {
                pos += c.try_send(&m.as_bytes()[pos..]);
                if pos == m.len() {
                    pos = 0;
                    sent += 1;
                }
                c.write();
            }
            l.counters().queue_overflow == 1
        }),
        "{:?}",
        layer.counters()
    );
    assert_eq!(layer.open_connections(), 0);
}

/// A UAS for the upstream's side: answers every request 200 where it came
/// from (on its connection).
struct Uas;

impl dataplane::PacketHandler for Uas {
    type Control = ();
    type Stats = ();
    type Drop = dataplane::echo::EchoDrop;
    type Event = ();

    fn handle(
        &mut self,
        _now: dataplane::Timestamp,
        pkt: &dataplane::Datagram<'_>,
        out: &mut dataplane::Outbox<'_>,
    ) -> Result<(), Self::Drop> {
        let refused = dataplane::echo::EchoDrop::Refused;
        let msg = sip::parse(pkt.payload).map_err(|_| refused)?;
        if !msg.is_request() {
            return Err(refused);
        }
        let _ = out.send_to(pkt.peer(), |buf| {
            sip::write::ResponseBuilder::new(200, "OK")
                .to_tag(b"uas1")
                .write(&msg, buf)
                .ok()
        });
        Ok(())
    }

    fn on_control(&mut self, _now: dataplane::Timestamp, _msg: ()) {}

    fn stats(&self) {}
}

#[test]
fn udp_and_tls_callers_reach_a_tls_upstream_the_edge_dials_once() {
    use proxy::cookie::Secret;
    use proxy::{EdgeProxy, ProxyConfig};
    use route::trie::PrefixKey;
    use route::{Action, GroupId, HealthSettings, RouteControl, RouteGroup, RouteTable, Target};
    use std::net::UdpSocket;

    let pki = pki();
    let mut upstream = StreamLayer::open(
        StreamConfig::tls_only(Some((local(), pki.server_config(false)))),
        Uas,
    )
    .unwrap();
    let up = upstream.local_tls().unwrap();
    let table = RouteTable::build(
        vec![RouteGroup::new("secure", Action::Forward)
            .with_target(Target::new(up, 1, 1).with_transport(dataplane::Transport::Tls))],
        &[(PrefixKey::from_digits(b"33").unwrap(), GroupId(0))],
        HealthSettings::default(),
    )
    .unwrap();
    let (_control, mut workers) = RouteControl::new(table, 1);
    let mut cfg = StreamConfig::tls_only(Some((local(), pki.server_config(false))));
    cfg.tls_client = Some(client_config(&pki, None));
    // The caller sends to the layer's UDP socket, standing in for a UDP
    // worker handing it over.
    cfg.udp_requests = true;
    let mut edge = StreamLayer::open_with(cfg, |_, tls| {
        let mut cfg = ProxyConfig::new("127.0.0.1:5060".parse().unwrap(), Secret::new(5, 6));
        cfg.advertise_tls = tls;
        EdgeProxy::new(cfg, workers.remove(0))
    })
    .unwrap();
    let edge_udp = edge.local_udp();
    let edge_tls = edge.local_tls().unwrap();
    let invite = |via: &str, me: SocketAddr, call: &str| {
        format!(
            "INVITE sip:33123456@{edge_tls} SIP/2.0\r\n\
             Via: SIP/2.0/{via} {me};branch=z9hG4bK{call};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:caller@{me}>;tag=ft1\r\n\
             To: <sip:33123456@{edge_tls}>\r\n\
             Call-ID: {call}\r\n\
             CSeq: 1 INVITE\r\n\
             Content-Length: 0\r\n\r\n"
        )
    };

    // A UDP caller (to the layer's UDP socket): the edge dials the
    // upstream over TLS, and the 200 comes back over UDP.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_nonblocking(true).unwrap();
    let me = udp.local_addr().unwrap();
    udp.send_to(invite("UDP", me, "udp1").as_bytes(), edge_udp)
        .unwrap();
    let mut answer = String::new();
    assert!(
        pump(&mut edge, |_| {
            upstream.poll_once(Duration::ZERO).unwrap();
            let mut buf = [0u8; 4096];
            if let Ok((n, from)) = udp.recv_from(&mut buf) {
                assert_eq!(from, edge_udp);
                answer = String::from_utf8_lossy(&buf[..n]).into_owned();
            }
            !answer.is_empty()
        }),
        "edge {:?} upstream {:?}",
        edge.counters(),
        upstream.counters()
    );
    assert!(answer.starts_with("SIP/2.0 200 OK\r\n"), "{answer}");
    assert!(answer.contains("branch=z9hG4bKudp1"), "{answer}");

    // A TLS caller: on the same upstream connection, back on its own.
    let mut caller = TlsClient::connect(edge_tls, client_config(&pki, None));
    let me = caller.local_addr();
    caller.send(invite("TLS", me, "tls1").as_bytes());
    assert!(pump(&mut edge, |_| {
        upstream.poll_once(Duration::ZERO).unwrap();
        caller.io();
        caller.got.windows(4).any(|w| w == b"\r\n\r\n")
    }));
    let answer = String::from_utf8(caller.got.clone()).unwrap();
    assert!(answer.starts_with("SIP/2.0 200 OK\r\n"), "{answer}");
    assert!(answer.contains("branch=z9hG4bKtls1"), "{answer}");
    let k = edge.counters();
    assert_eq!((k.dialled, k.dial_failed), (1, 0), "{k:?}");
    assert_eq!(k.tls_handshakes, 2, "the dial and the caller: {k:?}");
    assert_eq!(k.handler_drops, 0, "{k:?}");
    assert_eq!(upstream.counters().messages, 2);
}

#[test]
fn a_tls_upstream_whose_certificate_does_not_verify_gets_nothing() {
    use proxy::cookie::Secret;
    use proxy::{EdgeProxy, ProxyConfig};
    use route::trie::PrefixKey;
    use route::{Action, GroupId, HealthSettings, RouteControl, RouteGroup, RouteTable, Target};
    use std::net::UdpSocket;

    // The upstream's certificate is from a CA the edge does not trust.
    let pki = pki();
    let other = super::tls::pki();
    let mut upstream = StreamLayer::open(
        StreamConfig::tls_only(Some((local(), other.server_config(false)))),
        Uas,
    )
    .unwrap();
    let up = upstream.local_tls().unwrap();
    let table = RouteTable::build(
        vec![RouteGroup::new("secure", Action::Forward)
            .with_target(Target::new(up, 1, 1).with_transport(dataplane::Transport::Tls))],
        &[(PrefixKey::from_digits(b"33").unwrap(), GroupId(0))],
        HealthSettings::default(),
    )
    .unwrap();
    let (_control, mut workers) = RouteControl::new(table, 1);
    let mut cfg = StreamConfig::tls_only(Some((local(), pki.server_config(false))));
    cfg.tls_client = Some(client_config(&pki, None));
    // The caller sends to the layer's UDP socket, standing in for a UDP
    // worker handing it over.
    cfg.udp_requests = true;
    let mut edge = StreamLayer::open_with(cfg, |_, tls| {
        let mut cfg = ProxyConfig::new("127.0.0.1:5060".parse().unwrap(), Secret::new(5, 6));
        cfg.advertise_tls = tls;
        EdgeProxy::new(cfg, workers.remove(0))
    })
    .unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = udp.local_addr().unwrap();
    let invite = format!(
        "INVITE sip:33123456@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bKbad1;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:c@{me}>;tag=1\r\nTo: <sip:33123456@127.0.0.1>\r\n\
         Call-ID: bad1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    udp.send_to(invite.as_bytes(), edge.local_udp()).unwrap();
    assert!(pump(&mut edge, |l| {
        upstream.poll_once(Duration::ZERO).unwrap();
        l.counters().tls_failed_certificate == 1
    }));
    assert_eq!(upstream.counters().messages, 0, "nothing reached it");
    assert_eq!(edge.open_connections(), 0);
}

/// The edge's proxy as both the UDP worker and the stream layer run it:
/// one secret, UDP at 127.0.0.1:5060 (not bound: Vias ask for `rport`),
/// TLS where the stream layer listens.
fn edge_proxy(tls: Option<SocketAddr>, routes: route::WorkerRoutes) -> proxy::EdgeProxy {
    let mut cfg = proxy::ProxyConfig::new(
        "127.0.0.1:5060".parse().unwrap(),
        proxy::cookie::Secret::new(5, 6),
    );
    cfg.advertise_tls = tls;
    proxy::EdgeProxy::new(cfg, routes)
}

#[test]
fn a_udp_worker_hands_messages_for_stream_peers_to_the_stream_layer() {
    use dataplane::{Dataplane, DataplaneConfig, IoMode};
    use route::trie::PrefixKey;
    use route::{Action, GroupId, HealthSettings, RouteControl, RouteGroup, RouteTable, Target};
    use std::net::UdpSocket;

    let pki = pki();
    let mut upstream = StreamLayer::open(
        StreamConfig::tls_only(Some((local(), pki.server_config(false)))),
        Uas,
    )
    .unwrap();
    let tls_up = upstream.local_tls().unwrap();
    let udp_up = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp_up.set_read_timeout(Some(super::WAIT)).unwrap();
    let table = RouteTable::build(
        vec![
            RouteGroup::new("secure", Action::Forward)
                .with_target(Target::new(tls_up, 1, 1).with_transport(dataplane::Transport::Tls)),
            RouteGroup::new("plain", Action::Forward).with_target(Target::new(
                udp_up.local_addr().unwrap(),
                1,
                1,
            )),
        ],
        &[
            (PrefixKey::from_digits(b"33").unwrap(), GroupId(0)),
            (PrefixKey::from_digits(b"44").unwrap(), GroupId(1)),
        ],
        HealthSettings::default(),
    )
    .unwrap();
    let (_control, mut routes) = RouteControl::new(table, 2);
    let stream_routes = routes.pop().unwrap();
    let mut worker_routes = routes.pop();
    let mut cfg = StreamConfig::tls_only(Some((local(), pki.server_config(false))));
    cfg.tls_client = Some(client_config(&pki, None));
    let mut edge = StreamLayer::open_with(cfg, |_, tls| edge_proxy(tls, stream_routes)).unwrap();
    let tls = edge.local_tls().unwrap();
    let handoff = edge.handoff(1 << 20);
    let config = DataplaneConfig::new(
        IoMode::Socket,
        "",
        vec!["127.0.0.1:0".parse().unwrap()],
        &[0],
    );
    let dp = Dataplane::start_with_handoffs(&config, None, vec![handoff], |_| {
        edge_proxy(Some(tls), worker_routes.take().unwrap())
    })
    .unwrap();
    let worker = dp.local_addrs()[0];

    // 1. A UDP caller to the worker, routed to the TLS upstream: handed
    // over, dialled by the stream layer, the 200 back over UDP.
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    caller.set_nonblocking(true).unwrap();
    let me = caller.local_addr().unwrap();
    let invite = format!(
        "INVITE sip:33123456@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bKho1;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:c@{me}>;tag=1\r\nTo: <sip:33123456@127.0.0.1>\r\n\
         Call-ID: ho1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    caller.send_to(invite.as_bytes(), worker).unwrap();
    let mut answer = String::new();
    assert!(
        pump(&mut edge, |_| {
            upstream.poll_once(Duration::ZERO).unwrap();
            let mut buf = [0u8; 4096];
            if let Ok((n, _)) = caller.recv_from(&mut buf) {
                answer = String::from_utf8_lossy(&buf[..n]).into_owned();
            }
            !answer.is_empty()
        }),
        "edge {:?}",
        edge.counters()
    );
    assert!(answer.starts_with("SIP/2.0 200 OK\r\n"), "{answer}");
    assert!(answer.contains("branch=z9hG4bKho1"), "{answer}");

    // 2. A TLS caller to the UDP upstream; the upstream's BYE reaches the
    // worker over UDP and goes to the caller on its connection.
    let mut tls_caller = TlsClient::connect(tls, client_config(&pki, None));
    let me = tls_caller.local_addr();
    tls_caller.send(
        format!(
            "INVITE sip:44123456@127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/TLS {me};branch=z9hG4bKho2;rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:c@{me}>;tag=ft2\r\nTo: <sip:44123456@127.0.0.1>\r\n\
             Call-ID: ho2\r\nCSeq: 1 INVITE\r\nContact: <sip:c@{me};transport=tls>\r\n\
             Content-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    );
    let sent_before = edge.counters().udp_sent;
    assert!(pump(&mut edge, |l| {
        tls_caller.io();
        l.counters().udp_sent > sent_before
    }));
    let mut buf = [0u8; 65536];
    let (n, _) = udp_up.recv_from(&mut buf).unwrap();
    let fwd = String::from_utf8_lossy(&buf[..n]).into_owned();
    // Both entries (one per side) on one line, as the upstream's route set.
    let rr: Vec<&str> = fwd
        .split("\r\n")
        .filter_map(|l| l.strip_prefix("Record-Route: "))
        .collect();
    assert_eq!(rr.len(), 1, "{fwd}");
    assert_eq!(rr[0].matches("<sip:").count(), 2, "{fwd}");
    let bye = format!(
        "BYE sip:c@{me};transport=tls SIP/2.0\r\n\
         Via: SIP/2.0/UDP {};branch=z9hG4bKub1\r\n\
         Route: {}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:44123456@127.0.0.1>;tag=uas2\r\nTo: <sip:c@{me}>;tag=ft2\r\n\
         Call-ID: ho2\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        udp_up.local_addr().unwrap(),
        rr[0],
    );
    udp_up.send_to(bye.as_bytes(), worker).unwrap();
    assert!(
        pump(&mut edge, |_| {
            tls_caller.io();
            tls_caller.got.windows(3).any(|w| w == b"BYE")
        }),
        "edge {:?}",
        edge.counters()
    );
    let got = String::from_utf8_lossy(&tls_caller.got).into_owned();
    assert!(got.contains("Via: SIP/2.0/TLS "), "{got}");
    assert_eq!(edge.counters().handed_over, 2, "{:?}", edge.counters());
    let finals = dp.stop().unwrap();
    assert_eq!(finals[0].counters.no_stream_path, 0);
}
