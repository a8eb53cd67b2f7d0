//! The stream layer on 127.0.0.1: framing, keep-alives, caps, timeouts and
//! slow consumers with the echo handler; TLS handshakes that fail, each
//! counted; TCP and TLS callers through the real proxy to a UDP upstream
//! and back on their connection. The layer is driven
//! from the test's own thread (no sleeps: each wait polls it until a
//! condition holds, with a generous bound).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use dataplane::echo::Echo;
use dataplane::stream::{StreamConfig, StreamLayer, UDP_BATCH};
use dataplane::PacketHandler;

const WAIT: Duration = Duration::from_secs(20);

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Polls `layer` until `cond` holds (true) or [`WAIT`] passes (false).
fn pump<H: PacketHandler>(
    layer: &mut StreamLayer<H>,
    mut cond: impl FnMut(&mut StreamLayer<H>) -> bool,
) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        layer.poll_once(Duration::from_millis(10)).unwrap();
        if cond(layer) {
            return true;
        }
    }
    false
}

fn connect(layer: &StreamLayer<impl PacketHandler>) -> TcpStream {
    let c = TcpStream::connect(layer.local_tcp().unwrap()).unwrap();
    c.set_nonblocking(true).unwrap();
    c
}

/// Reads what `c` has into `got`; true when the peer closed (or reset).
fn drain(c: &mut TcpStream, got: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 65536];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

fn message(body: &str) -> String {
    format!(
        "MESSAGE sip:1@e SIP/2.0\r\nVia: SIP/2.0/TCP a;branch=z9hG4bK1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn stream_messages_are_framed_by_content_length_and_pings_answered() {
    let mut layer = StreamLayer::open(StreamConfig::new(local()), Echo::new()).unwrap();
    let mut c = connect(&layer);
    let one = message("ab\r\n\r\ncd");
    let two = message("");
    // A lone CRLF, a message, a ping, a second message, all in one write.
    let stream = format!("\r\n{one}\r\n\r\n{two}");
    c.write_all(stream.as_bytes()).unwrap();
    let want = format!("{one}\r\n{two}");
    let mut got = Vec::new();
    assert!(
        pump(&mut layer, |_| {
            drain(&mut c, &mut got);
            got.len() >= want.len()
        }),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(String::from_utf8(got).unwrap(), want);
    // A byte at a time.
    let mut got = Vec::new();
    for b in one.as_bytes() {
        c.write_all(&[*b]).unwrap();
        layer.poll_once(Duration::ZERO).unwrap();
    }
    assert!(pump(&mut layer, |_| {
        drain(&mut c, &mut got);
        got.len() >= one.len()
    }));
    assert_eq!(String::from_utf8(got).unwrap(), one);
    let k = layer.counters();
    assert_eq!((k.messages, k.pings, k.sent), (3, 1, 3), "{k:?}");
    assert_eq!(layer.open_connections(), 1);
}

#[test]
fn framing_errors_close_only_their_connection_each_counted() {
    let mut cfg = StreamConfig::new(local());
    cfg.limits.max_header = 1024;
    cfg.limits.max_body = 1024;
    let mut layer = StreamLayer::open(cfg, Echo::new()).unwrap();
    let mut good = connect(&layer);
    let cases: [&[u8]; 4] = [
        b"MESSAGE sip:1@e SIP/2.0\r\nVia: x\r\n\r\n",
        b"MESSAGE sip:1@e SIP/2.0\r\nContent-Length: 12x\r\n\r\n",
        b"MESSAGE sip:1@e SIP/2.0\r\nContent-Length: 4096\r\n\r\n",
        &[b'A'; 2048],
    ];
    let mut bad: Vec<TcpStream> = cases
        .iter()
        .map(|m| {
            let mut c = connect(&layer);
            c.write_all(m).unwrap();
            c
        })
        .collect();
    let mut closed = vec![false; bad.len()];
    assert!(pump(&mut layer, |_| {
        for (c, done) in bad.iter_mut().zip(closed.iter_mut()) {
            *done |= drain(c, &mut Vec::new());
        }
        closed.iter().all(|&d| d)
    }));
    let k = layer.counters().clone();
    assert_eq!(
        (
            k.no_content_length,
            k.bad_content_length,
            k.body_too_long,
            k.header_too_long
        ),
        (1, 1, 1, 1),
        "{k:?}"
    );
    // All of it on the TCP listener: the TCP transport's counters carry
    // the same, the TLS transport's nothing.
    assert_eq!(
        (
            k.tcp.no_content_length,
            k.tcp.bad_content_length,
            k.tcp.body_too_long,
            k.tcp.header_too_long,
            k.tcp.accepted,
            k.tcp.open
        ),
        (1, 1, 1, 1, 5, 1),
        "{k:?}"
    );
    assert_eq!(k.tls, Default::default(), "{k:?}");
    assert_eq!(k.messages, 0);
    // The well-behaved connection still works.
    let m = message("still here");
    good.write_all(m.as_bytes()).unwrap();
    let mut got = Vec::new();
    assert!(pump(&mut layer, |_| {
        drain(&mut good, &mut got);
        got.len() >= m.len()
    }));
    assert_eq!(layer.open_connections(), 1);
}

#[test]
fn connection_caps_per_source_and_in_total_refuse_the_extra_ones() {
    let mut cfg = StreamConfig::new(local());
    cfg.max_per_source = 2;
    let mut layer = StreamLayer::open(cfg, Echo::new()).unwrap();
    let mut kept: Vec<TcpStream> = (0..2).map(|_| connect(&layer)).collect();
    assert!(pump(&mut layer, |l| l.open_connections() == 2));
    let mut extra = connect(&layer);
    assert!(pump(&mut layer, |_| drain(&mut extra, &mut Vec::new())));
    assert_eq!(layer.counters().refused_per_source, 1);
    assert_eq!(layer.counters().tcp.refused_per_source, 1);
    assert_eq!(layer.counters().tcp.open, 2);
    assert_eq!(layer.open_connections(), 2);
    // Closing one frees its place.
    kept.pop();
    assert!(pump(&mut layer, |l| l.open_connections() == 1));
    let _again = connect(&layer);
    assert!(pump(&mut layer, |l| l.open_connections() == 2));

    let mut cfg = StreamConfig::new(local());
    cfg.max_connections = 1;
    let mut layer = StreamLayer::open(cfg, Echo::new()).unwrap();
    let _one = connect(&layer);
    assert!(pump(&mut layer, |l| l.open_connections() == 1));
    let mut two = connect(&layer);
    assert!(pump(&mut layer, |_| drain(&mut two, &mut Vec::new())));
    assert_eq!(layer.counters().refused_total, 1);
    assert_eq!(layer.counters().tcp.refused_total, 1);
    assert_eq!(layer.counters().tls.refused_total, 0);
}

#[test]
fn a_slow_sender_and_an_idle_connection_are_closed_and_others_are_not() {
    let mut cfg = StreamConfig::new(local());
    cfg.message_timeout = Duration::from_millis(300);
    cfg.idle_timeout = Duration::from_millis(600);
    let mut layer = StreamLayer::open(cfg, Echo::new()).unwrap();
    // Slowloris: a header that never ends, a byte now and then (more often
    // than the idle timeout, so only the message timeout can catch it).
    let mut slow = connect(&layer);
    let mut idle = connect(&layer);
    let mut chatty = connect(&layer);
    let header = b"MESSAGE sip:1@e SIP/2.0\r\nVia: SIP/2.0/TCP a;branch=z9hG4bK1\r\n";
    let mut sent = 0;
    let mut last = Instant::now();
    let mut slow_closed = false;
    let mut idle_closed = false;
    let ping_every = Duration::from_millis(100);
    assert!(pump(&mut layer, |_| {
        if last.elapsed() >= ping_every {
            last = Instant::now();
            if !slow_closed && sent < header.len() {
                let _ = slow.write_all(&header[sent..sent + 1]);
                sent += 1;
            }
            // Keep-alives keep a connection from idling out.
            chatty.write_all(b"\r\n\r\n").unwrap();
        }
        slow_closed |= drain(&mut slow, &mut Vec::new());
        idle_closed |= drain(&mut idle, &mut Vec::new());
        slow_closed && idle_closed
    }));
    let k = layer.counters().clone();
    assert_eq!((k.slow_timeouts, k.idle_timeouts), (1, 1), "{k:?}");
    assert_eq!(layer.open_connections(), 1, "the chatty one stays");
    let mut got = Vec::new();
    assert!(!drain(&mut chatty, &mut got));
    assert!(!got.is_empty() && got.iter().all(|&b| b == b'\r' || b == b'\n'));
}

#[test]
fn a_peer_that_does_not_read_is_closed_at_its_queue_cap() {
    let mut cfg = StreamConfig::new(local());
    cfg.max_queued = 64 * 1024;
    let mut layer = StreamLayer::open(cfg, Echo::new()).unwrap();
    let mut c = connect(&layer);
    let m = message(&"x".repeat(32 * 1024));
    // Each message is echoed; the client never reads, so the kernel's
    // buffers fill, then the layer's queue. Bounded: 2000 messages.
    let mut sent = 0;
    let mut pos = 0;
    assert!(pump(&mut layer, |l| {
        if sent < 2000 {
            match c.write(&m.as_bytes()[pos..]) {
                Ok(n) => {
                    pos += n;
                    if pos == m.len() {
                        pos = 0;
                        sent += 1;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => {}
            }
        }
        l.counters().queue_overflow == 1
    }));
    assert_eq!(layer.open_connections(), 0);
}

/// A layer that answers UDP requests (the echo handler) on its own UDP
/// socket, and a client socket on 127.0.0.1 to send them from.
fn udp_echo_layer(echo: Echo) -> (StreamLayer<Echo>, UdpSocket) {
    let mut cfg = StreamConfig::new(local());
    cfg.udp_requests = true;
    let layer = StreamLayer::open(cfg, echo).unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    (layer, client)
}

#[test]
fn a_round_with_more_udp_datagrams_than_a_batch_sends_them_all_each_counted() {
    let (mut layer, client) = udp_echo_layer(Echo::new());
    let n = 2 * UDP_BATCH;
    for i in 0..n {
        client
            .send_to(format!("n{i}").as_bytes(), layer.local_udp())
            .unwrap();
    }
    // Everything a round reads is sent by the round's end, whole batches
    // and the rest.
    let mut biggest_round = 0;
    let mut read_before = 0;
    assert!(pump(&mut layer, |l| {
        let k = l.counters();
        assert_eq!(k.udp_sent + k.udp_errors, k.udp_received, "{k:?}");
        biggest_round = biggest_round.max(k.udp_received - read_before);
        read_before = k.udp_received;
        k.udp_received == n as u64
    }));
    assert!(
        biggest_round > UDP_BATCH as u64,
        "one round read {biggest_round} datagrams, not more than a batch ({UDP_BATCH})"
    );
    let k = layer.counters();
    assert_eq!((k.udp_sent, k.udp_errors), (n as u64, 0), "{k:?}");
    let mut got: Vec<String> = (0..n)
        .map(|_| {
            let mut buf = [0u8; 64];
            let (len, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!(from, layer.local_udp());
            String::from_utf8(buf[..len].to_vec()).unwrap()
        })
        .collect();
    got.sort();
    let mut want: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn every_udp_datagram_the_kernel_refuses_is_counted_and_the_rest_of_the_batch_goes_out() {
    // Payloads starting with `lost` go to an IPv6 address, which the
    // layer's IPv4 socket refuses (EAFNOSUPPORT): one error per datagram,
    // in the same batches as the answers that go out.
    let (mut layer, client) = udp_echo_layer(Echo::with_blackhole("[::1]:9".parse().unwrap()));
    let pairs = UDP_BATCH;
    for i in 0..pairs {
        for what in ["lost", "ok"] {
            client
                .send_to(format!("{what}{i}").as_bytes(), layer.local_udp())
                .unwrap();
        }
    }
    assert!(pump(&mut layer, |l| l.counters().udp_received
        == 2 * pairs as u64));
    let k = layer.counters();
    assert_eq!(
        (k.udp_sent, k.udp_errors),
        (pairs as u64, pairs as u64),
        "{k:?}"
    );
    for _ in 0..pairs {
        let mut buf = [0u8; 64];
        let (len, _) = client.recv_from(&mut buf).unwrap();
        assert!(buf[..len].starts_with(b"ok"));
    }
}

#[test]
fn a_udp_datagram_longer_than_a_batch_slot_goes_out_whole_in_its_order() {
    let (mut layer, client) = udp_echo_layer(Echo::new());
    let big = vec![b'b'; sys::TX_SLOT + 1000];
    client.send_to(b"first", layer.local_udp()).unwrap();
    client.send_to(&big, layer.local_udp()).unwrap();
    client.send_to(b"last", layer.local_udp()).unwrap();
    assert!(pump(&mut layer, |l| l.counters().udp_sent == 3));
    let mut buf = vec![0u8; 65536];
    let mut got = Vec::new();
    for _ in 0..3 {
        let (len, _) = client.recv_from(&mut buf).unwrap();
        got.push(buf[..len].to_vec());
    }
    assert_eq!(got, [b"first".to_vec(), big, b"last".to_vec()]);
}

mod attacks;
mod tls;

mod through_the_proxy {
    use super::*;
    use proxy::cookie::Secret;
    use proxy::{EdgeProxy, ProxyConfig};
    use route::trie::PrefixKey;
    use route::{Action, GroupId, HealthSettings, RouteControl, RouteGroup, RouteTable, Target};

    pub(super) fn recv(s: &UdpSocket) -> (String, SocketAddr) {
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 65536];
        let (n, from) = s.recv_from(&mut buf).unwrap();
        (String::from_utf8(buf[..n].to_vec()).unwrap(), from)
    }

    /// The upstream's 200 to `req`: its Vias and dialog fields echoed.
    pub(super) fn ok_for(req: &str) -> String {
        let mut out = String::from("SIP/2.0 200 OK\r\n");
        for line in req.split("\r\n").skip(1) {
            let name = line.split(':').next().unwrap_or("");
            match name {
                "Via" | "From" | "Call-ID" | "CSeq" | "Record-Route" => {
                    out.push_str(line);
                    out.push_str("\r\n");
                }
                "To" => {
                    out.push_str(line);
                    out.push_str(";tag=uas1\r\n");
                }
                _ => {}
            }
        }
        out.push_str("Content-Length: 0\r\n\r\n");
        out
    }

    #[test]
    fn a_tcp_caller_reaches_a_udp_upstream_and_the_answer_comes_back_on_its_connection() {
        let upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
        let up = upstream.local_addr().unwrap();
        let table = RouteTable::build(
            vec![RouteGroup::new("uk", Action::Forward).with_target(Target::new(up, 1, 1))],
            &[(PrefixKey::from_digits(b"44").unwrap(), GroupId(0))],
            HealthSettings::default(),
        )
        .unwrap();
        let (_control, mut workers) = RouteControl::new(table, 1);
        // The layer binds first; the proxy learns its TCP address.
        let mut layer = StreamLayer::open_with(StreamConfig::new(local()), |tcp, _| {
            let mut cfg = ProxyConfig::new("127.0.0.1:5060".parse().unwrap(), Secret::new(3, 4));
            cfg.advertise_tcp = tcp;
            EdgeProxy::new(cfg, workers.remove(0))
        })
        .unwrap();
        let tcp = layer.local_tcp().unwrap();
        let mut caller = connect(&layer);
        let me = caller.local_addr().unwrap();
        let invite = format!(
            "INVITE sip:442071234567@{tcp} SIP/2.0\r\n\
             Via: SIP/2.0/TCP {me};branch=z9hG4bKtcp1;rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:caller@{me}>;tag=ft1\r\n\
             To: <sip:442071234567@{tcp}>\r\n\
             Call-ID: tcp-call-1\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:caller@{me};transport=tcp>\r\n\
             Content-Length: 0\r\n\r\n"
        );
        caller.write_all(invite.as_bytes()).unwrap();
        assert!(pump(&mut layer, |l| l.counters().udp_sent == 1));
        let (fwd, from) = recv(&upstream);
        assert_eq!(from, layer.local_udp());
        assert!(
            fwd.contains("Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKdce"),
            "{fwd}"
        );
        assert!(fwd.contains(";dcc="), "{fwd}");
        assert!(
            fwd.contains(&format!("<sip:{tcp};transport=tcp;lr;dce=")),
            "{fwd}"
        );
        // The upstream answers to where the request came from (rport).
        upstream.send_to(ok_for(&fwd).as_bytes(), from).unwrap();
        let mut got = Vec::new();
        assert!(pump(&mut layer, |_| {
            drain(&mut caller, &mut got);
            got.windows(4).any(|w| w == b"\r\n\r\n")
        }));
        let answer = String::from_utf8(got).unwrap();
        assert!(answer.starts_with("SIP/2.0 200 OK\r\n"), "{answer}");
        assert!(answer.contains("branch=z9hG4bKtcp1"), "{answer}");
        assert!(
            !answer.contains("z9hG4bKdce"),
            "our Via is removed: {answer}"
        );
        let k = layer.counters();
        assert_eq!((k.messages, k.udp_received, k.sent), (1, 1, 1), "{k:?}");
        assert_eq!(k.handler_drops, 0);

        // A request to the layer's UDP socket (not a SIP port, nothing of
        // the XDP filter in front of it) is refused unread.
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        stranger
            .send_to(
                invite
                    .replace("tcp-call-1", "udp-sneak")
                    .replace("SIP/2.0/TCP", "SIP/2.0/UDP")
                    .as_bytes(),
                layer.local_udp(),
            )
            .unwrap();
        assert!(pump(&mut layer, |l| l.counters().udp_requests_refused == 1));
        assert_eq!(layer.counters().udp_sent, 1, "nothing forwarded");
    }
}

#[test]
fn a_tls_caller_reaches_a_udp_upstream_through_the_proxy_and_back_on_its_connection() {
    use crate::stream::tls::{client_config, pki, TlsClient};
    use proxy::cookie::Secret;
    use proxy::{EdgeProxy, ProxyConfig};
    use route::trie::PrefixKey;
    use route::{Action, GroupId, HealthSettings, RouteControl, RouteGroup, RouteTable, Target};
    let pki = pki();
    let upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
    let up = upstream.local_addr().unwrap();
    let table = RouteTable::build(
        vec![RouteGroup::new("uk", Action::Forward).with_target(Target::new(up, 1, 1))],
        &[(PrefixKey::from_digits(b"44").unwrap(), GroupId(0))],
        HealthSettings::default(),
    )
    .unwrap();
    let (_control, mut workers) = RouteControl::new(table, 1);
    let cfg = StreamConfig::tls_only(Some((local(), pki.server_config(false))));
    let mut layer = StreamLayer::open_with(cfg, |_, tls| {
        let mut cfg = ProxyConfig::new("127.0.0.1:5060".parse().unwrap(), Secret::new(3, 4));
        cfg.advertise_tls = tls;
        EdgeProxy::new(cfg, workers.remove(0))
    })
    .unwrap();
    let tls = layer.local_tls().unwrap();
    let mut caller = TlsClient::connect(tls, client_config(&pki, None));
    let me = caller.local_addr();
    let invite = format!(
        "INVITE sip:442071234567@{tls};transport=tls SIP/2.0\r\n\
         Via: SIP/2.0/TLS {me};branch=z9hG4bKtls1;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:caller@{me}>;tag=ft1\r\n\
         To: <sip:442071234567@{tls}>\r\n\
         Call-ID: tls-call-1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:caller@{me};transport=tls>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    caller.send(invite.as_bytes());
    assert!(pump(&mut layer, |l| {
        caller.io();
        l.counters().udp_sent == 1
    }));
    let (fwd, from) = through_the_proxy::recv(&upstream);
    assert!(fwd.contains("Via: SIP/2.0/UDP 127.0.0.1:5060;"), "{fwd}");
    assert!(
        fwd.contains(&format!("<sip:{tls};transport=tls;lr;dce=")) && fwd.contains(";dcf="),
        "{fwd}"
    );
    upstream
        .send_to(through_the_proxy::ok_for(&fwd).as_bytes(), from)
        .unwrap();
    assert!(pump(&mut layer, |_| {
        caller.io();
        caller.got.windows(4).any(|w| w == b"\r\n\r\n")
    }));
    let answer = String::from_utf8(caller.got.clone()).unwrap();
    assert!(answer.starts_with("SIP/2.0 200 OK\r\n"), "{answer}");
    assert!(answer.contains("branch=z9hG4bKtls1"), "{answer}");
    let k = layer.counters();
    assert_eq!((k.tls_handshakes, k.messages, k.sent), (1, 1, 1), "{k:?}");
    // Counted under TLS, not TCP.
    assert_eq!(
        (k.tls.accepted, k.tls.tls_handshakes, k.tls.open),
        (1, 1, 1),
        "{k:?}"
    );
    assert_eq!(k.tcp, Default::default(), "{k:?}");
}

#[test]
fn a_stream_thread_takes_control_messages_and_gives_its_layer_back() {
    let layer = StreamLayer::open(StreamConfig::new(local()), Echo::new()).unwrap();
    let mut thread = layer.spawn(Duration::from_millis(50)).unwrap();
    let addr = thread.local_tcp().unwrap();
    // The echo's control message: the mark that replaces the first byte
    // of every later answer.
    thread.send(b'#').unwrap();
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    let m = message("marked");
    let deadline = Instant::now() + WAIT;
    let mut marked = false;
    while !marked && Instant::now() < deadline {
        c.write_all(m.as_bytes()).unwrap();
        let mut got = vec![0u8; m.len()];
        c.read_exact(&mut got).unwrap();
        marked = got[0] == b'#';
        assert_eq!(&got[1..], &m.as_bytes()[1..]);
    }
    assert!(marked);
    thread.poll_events(|()| {});
    let layer = thread.stop().unwrap();
    assert!(layer.counters().messages >= 1);
    assert_eq!(layer.open_connections(), 1);
}

/// What the UDP workers hand over after the stream thread waited (for its
/// core, say) is all sent in the next round, none left for later rounds
/// while the workers' rings fill, and all of it reaches the connection, in
/// order. (With a fixed count per round, 64, a backlog grew while the
/// thread was busy and the workers dropped answers as `no_stream_path`.)
#[test]
fn a_backlog_handed_over_is_drained_in_one_round_and_all_reaches_the_connection() {
    use dataplane::{Peer, Transport};
    use std::net::TcpListener;

    let mut layer = StreamLayer::open(StreamConfig::new(local()), Echo::new()).unwrap();
    let mut tx = layer.handoff(1 << 20);
    let upstream = TcpListener::bind(local()).unwrap();
    let to = Peer::at(upstream.local_addr().unwrap(), Transport::Tcp);
    let hand = |tx: &mut dataplane::handoff::HandoffTx, m: &str| {
        tx.reserve()[..m.len()].copy_from_slice(m.as_bytes());
        assert!(tx.commit(to, m.len()), "the ring has room");
    };
    // The first record dials the connection; its answer says it is up.
    let first = message("first");
    hand(&mut tx, &first);
    tx.wake();
    upstream.set_nonblocking(true).unwrap();
    let mut peer = None;
    let mut got = Vec::new();
    assert!(pump(&mut layer, |_| {
        if peer.is_none() {
            peer = upstream.accept().ok().map(|(s, _)| s);
        }
        let Some(p) = peer.as_mut() else {
            return false;
        };
        p.set_nonblocking(true).unwrap();
        drain(p, &mut got);
        got.len() >= first.len()
    }));
    let mut peer = peer.unwrap();
    // A backlog: far more than one round's old bound, more than one write
    // batch, less than the connection's queue cap.
    let backlog: Vec<String> = (0..1000).map(|i| message(&format!("{i:05}"))).collect();
    for m in &backlog {
        hand(&mut tx, m);
    }
    tx.wake();
    layer.poll_once(Duration::ZERO).unwrap();
    let k = layer.counters();
    assert_eq!((k.handed_over, k.sent), (1001, 1001), "one round: {k:?}");
    assert_eq!(k.queue_overflow, 0);
    let want: String = std::iter::once(first).chain(backlog).collect();
    assert!(pump(&mut layer, |_| {
        drain(&mut peer, &mut got);
        got.len() >= want.len()
    }));
    assert_eq!(String::from_utf8(got).unwrap(), want);
    assert_eq!(layer.counters().queue_overflow, 0);
}
