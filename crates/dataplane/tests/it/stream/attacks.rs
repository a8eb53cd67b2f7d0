//! Attacks on the stream thread's batched sends: a UDP socket the kernel
//! refuses to send on (its send buffer held full), and a TLS client that
//! never reads while the edge keeps answering it. Each checks that what
//! was lost is counted once and that nobody else is disturbed.

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};

use dataplane::echo::Echo;
use dataplane::stream::{StreamConfig, StreamLayer};
use lab::netns::{unique_name, Netns};
use lab::privilege::privileged_or_skip;

use super::tls::{client_config, pki, TlsClient};
use super::{connect, drain, local, message, pump};

/// A SIP-framed message whose payload starts with `lost`: the echo handler
/// sends it over UDP to its blackhole instead of answering it.
fn lost(i: usize, body_len: usize) -> String {
    let body = "l".repeat(body_len);
    format!(
        "lost{i} sip:1@e SIP/2.0\r\nVia: SIP/2.0/TCP a;branch=z9hG4bK{i}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn a_udp_socket_that_cannot_send_loses_only_counted_datagrams_and_tcp_is_still_served() {
    const TEST: &str =
        "a_udp_socket_that_cannot_send_loses_only_counted_datagrams_and_tcp_is_still_served";
    if !privileged_or_skip(TEST) {
        return;
    }
    // The layer's UDP traffic leaves through a veth whose queue (a token
    // bucket at 1 kbit/s) holds what it is given for minutes, and the
    // socket's send buffer is the kernel's smallest: after a datagram or
    // two the kernel refuses every send with EAGAIN, whatever the timing.
    let ns = Netns::create("dsq").unwrap();
    let (a, b) = (unique_name("sqa"), unique_name("sqb"));
    ns.ip(&["link", "add", &a, "type", "veth", "peer", "name", &b])
        .unwrap();
    ns.addr_up(&a, "198.18.77.1/24").unwrap();
    ns.ip(&["link", "set", &b, "up"]).unwrap();
    // No ARP: the upstream's address resolves at once.
    ns.ip(&[
        "neigh",
        "add",
        "198.18.77.2",
        "lladdr",
        "02:00:00:00:00:02",
        "dev",
        &a,
        "nud",
        "permanent",
    ])
    .unwrap();
    ns.run(
        "tc",
        &[
            "qdisc", "add", "dev", &a, "root", "tbf", "rate", "1kbit", "burst", "1600", "limit",
            "1000000",
        ],
    )
    .unwrap();
    ns.enter(|| {
        let upstream: SocketAddr = "198.18.77.2:5060".parse().unwrap();
        let mut layer =
            StreamLayer::open(StreamConfig::new(local()), Echo::with_blackhole(upstream)).unwrap();
        let udp = UdpSocket::bind("198.18.77.1:0").unwrap();
        sys::set_socket_buffers(&udp, 1).unwrap();
        layer.set_udp_socket(udp, false).unwrap();
        let mut c = connect(&layer);
        // A burst of 200 messages, each forwarded over UDP: several
        // batches of the round(s) that read them.
        let n = 200;
        let burst: String = (0..n).map(|i| lost(i, 900)).collect();
        let mut pos = 0;
        assert!(
            pump(&mut layer, |l| {
                if let Ok(w) = c.write(&burst.as_bytes()[pos..]) {
                    pos += w;
                }
                l.counters().messages == n as u64
            }),
            "{:?}",
            layer.counters()
        );
        let k = layer.counters().clone();
        assert_eq!(k.udp_sent + k.udp_errors, n as u64, "{k:?}");
        assert!(
            k.udp_errors >= n as u64 - 10,
            "the kernel refused only {} of {n} datagrams: {k:?}",
            k.udp_errors
        );
        // The thread still serves its connection: a request is answered.
        let m = message("after the burst");
        c.write_all(m.as_bytes()).unwrap();
        let mut got = Vec::new();
        assert!(
            pump(&mut layer, |_| {
                drain(&mut c, &mut got);
                got.len() >= m.len()
            }),
            "{:?}",
            layer.counters()
        );
        assert_eq!(String::from_utf8(got).unwrap(), m);
        let k = layer.counters();
        assert_eq!(k.messages, n as u64 + 1);
        assert_eq!(k.handler_drops, 0, "{k:?}");
        assert_eq!(layer.open_connections(), 1);
        assert_eq!(k.tcp.io_errors + k.tcp.queue_overflow, 0, "{k:?}");
    })
    .unwrap();
}

#[test]
fn a_tls_client_that_never_reads_is_closed_alone_and_another_is_answered_in_the_same_rounds() {
    let pki = pki();
    let mut cfg = StreamConfig::tls_only(Some((local(), pki.server_config(false))));
    cfg.max_queued = 64 * 1024;
    let mut layer = StreamLayer::open(cfg, Echo::new()).unwrap();
    let addr = layer.local_tls().unwrap();
    let mut slow = TlsClient::connect(addr, client_config(&pki, None));
    let mut good = TlsClient::connect(addr, client_config(&pki, None));
    assert!(pump(&mut layer, |_| {
        slow.io();
        good.io();
        slow.handshaken() && good.handshaken()
    }));
    // The slow reader sends echoed 32 KiB messages and never reads: the
    // kernel's buffers fill, then rustls's, up to the cap. Meanwhile the
    // good client sends a small request every round and reads its answers.
    let big = message(&"y".repeat(32 * 1024));
    let (mut sent_big, mut pos) = (0, 0);
    let mut asked = String::new();
    let mut i = 0;
    assert!(
        pump(&mut layer, |l| {
            if sent_big < 2000 {
                pos += slow.try_send(&big.as_bytes()[pos..]);
                if pos == big.len() {
                    pos = 0;
                    sent_big += 1;
                }
                slow.write();
            }
            let m = message(&format!("good{i}"));
            i += 1;
            good.send(m.as_bytes());
            asked.push_str(&m);
            good.io();
            l.counters().queue_overflow == 1
        }),
        "{:?}",
        layer.counters()
    );
    // Every request of the good client, sent in the same rounds, answered
    // in order.
    assert!(pump(&mut layer, |_| {
        good.io();
        good.got.len() >= asked.len()
    }));
    assert_eq!(String::from_utf8(good.got.clone()).unwrap(), asked);
    assert!(!good.closed);
    let k = layer.counters();
    assert_eq!((k.queue_overflow, k.tls.queue_overflow), (1, 1), "{k:?}");
    assert_eq!(k.tcp.queue_overflow, 0, "{k:?}");
    // Nothing else closed: one connection left, no other reason counted.
    assert_eq!(layer.open_connections(), 1);
    assert_eq!(k.tls.open, 1, "{k:?}");
    for (name, v) in k.tls.named() {
        let want = match name {
            "accepted" | "tls_handshakes" => 2,
            "queue_overflow" => 1,
            _ => 0,
        };
        assert_eq!(v, want, "tls.{name}: {k:?}");
    }
    assert_eq!(k.conn_gone, 0, "{k:?}");
    // The good one still works after the overflow.
    let m = message("still here");
    good.got.clear();
    good.send(m.as_bytes());
    assert!(pump(&mut layer, |_| {
        good.io();
        good.got.len() >= m.len()
    }));
    assert_eq!(String::from_utf8(good.got.clone()).unwrap(), m);
}
