//! Raw-frame attacks in a namespace pair (needs root): flood frames built by
//! hand arrive with valid checksums from the spoofed sources, every frame
//! sent is received, fragments reassemble, and destinations outside the lab
//! ranges are refused.

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use lab::netns::{unique_name, veth_pair, Netns};
use lab::privilege::privileged_or_skip;
use loadgen::attack::{self, Bounds, FloodConfig, FragmentMode, FragmentsConfig, Ipv4Net, Refusal};
use sys::{self, UdpOptions};

struct Lab {
    sender: Netns,
    receiver: Netns,
    sender_if: String,
}

/// Two namespaces joined by a veth: 198.18.7.1 (sender) and 198.18.7.2
/// (receiver). The receiver accepts sources that are not on its link.
fn lab() -> Lab {
    let sender = Netns::create("lfs").unwrap();
    let receiver = Netns::create("lfr").unwrap();
    let (si, ri) = (unique_name("fs"), unique_name("fr"));
    veth_pair(&sender, &si, &receiver, &ri).unwrap();
    sender.addr_up(&si, "198.18.7.1/30").unwrap();
    receiver.addr_up(&ri, "198.18.7.2/30").unwrap();
    for key in ["all", "default", ri.as_str()] {
        receiver
            .run(
                "sysctl",
                &["-qw", &format!("net.ipv4.conf.{key}.rp_filter=0")],
            )
            .unwrap();
    }
    Lab {
        sender,
        receiver,
        sender_if: si,
    }
}

/// Reads datagrams until `want` arrived or the bounded wait ends.
fn receive(sock: UdpSocket, want: usize) -> Vec<(SocketAddr, Vec<u8>)> {
    sock.set_nonblocking(false).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    while got.len() < want && Instant::now() < deadline {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            got.push((from, buf[..n].to_vec()));
        }
    }
    got
}

fn bind_big(ns: &Netns) -> UdpSocket {
    ns.enter(|| {
        sys::bind_udp(
            "198.18.7.2:5060".parse().unwrap(),
            UdpOptions {
                buffer_bytes: 32 << 20,
                force_buffers: true,
                reuse_port: false,
                ipv6_only: false,
            },
        )
        .unwrap()
    })
    .unwrap()
}

#[test]
fn flood_frames_arrive_from_spoofed_sources_and_every_one_is_counted() {
    if !privileged_or_skip("flood_frames_arrive_from_spoofed_sources_and_every_one_is_counted") {
        return;
    }
    let lab = lab();
    let sock = bind_big(&lab.receiver);
    let n = 2000usize;
    let rx = std::thread::spawn(move || receive(sock, n));
    let iface = lab.sender_if.clone();
    let report = lab
        .sender
        .enter(move || {
            let mut cfg = FloodConfig::new(&iface, "198.18.7.2:5060".parse().unwrap());
            cfg.spoof = Ipv4Net::parse("198.18.100.0/24").unwrap();
            cfg.bounds = Bounds {
                count: n as u64,
                duration: Duration::from_secs(20),
                pps: 5000.0,
            };
            attack::flood(&cfg, &AtomicBool::new(false))
        })
        .unwrap()
        .unwrap();
    let got = rx.join().unwrap();
    assert_eq!(report.sent, n as u64, "{report}");
    assert_eq!(report.send_failed, 0, "{report}");
    assert_eq!(
        got.len(),
        n,
        "the kernel delivers a frame only with valid IP and UDP checksums"
    );
    let sources: HashSet<_> = got.iter().map(|(from, _)| from.ip()).collect();
    assert_eq!(sources.len(), 254, "every host address of the /24 was used");
    for (from, bytes) in &got {
        match from.ip() {
            std::net::IpAddr::V4(v) => assert_eq!(v.octets()[..3], [198, 18, 100]),
            other => panic!("source {other} is not from the spoofed prefix"),
        }
        let v = loadgen::sipmsg::parse(bytes).expect("flood payload is SIP");
        assert_eq!(v.method(), Some(sip::Method::Invite));
    }
}

#[test]
fn complete_fragments_reassemble_into_the_datagrams_sent() {
    if !privileged_or_skip("complete_fragments_reassemble_into_the_datagrams_sent") {
        return;
    }
    let lab = lab();
    let sock = bind_big(&lab.receiver);
    let n = 100usize;
    let rx = std::thread::spawn(move || receive(sock, n));
    let iface = lab.sender_if.clone();
    let report = lab
        .sender
        .enter(move || {
            let mut cfg = FragmentsConfig::new(&iface, "198.18.7.2:5060".parse().unwrap());
            cfg.mode = FragmentMode::Complete;
            cfg.datagram_size = 3000;
            cfg.fragment_size = 1000;
            cfg.bounds = Bounds {
                count: n as u64,
                duration: Duration::from_secs(20),
                pps: 1000.0,
            };
            attack::fragments(&cfg, &AtomicBool::new(false))
        })
        .unwrap()
        .unwrap();
    let got = rx.join().unwrap();
    // 3008 bytes of UDP in 1000-byte pieces: 4 fragments per datagram.
    assert_eq!(report.sent, 4 * n as u64, "{report}");
    assert_eq!(got.len(), n);
    assert!(got.iter().all(|(_, b)| b.len() == 3000));
}

#[test]
fn raw_frames_to_destinations_outside_the_lab_are_refused_inside_a_namespace_too() {
    if !privileged_or_skip(
        "raw_frames_to_destinations_outside_the_lab_are_refused_inside_a_namespace_too",
    ) {
        return;
    }
    let lab = lab();
    let iface = lab.sender_if.clone();
    let err = lab
        .sender
        .enter(move || {
            let cfg = FloodConfig::new(&iface, "192.0.2.1:5060".parse().unwrap());
            attack::flood(&cfg, &AtomicBool::new(false))
        })
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            err,
            attack::raw::RawAttackError::Refused(Refusal::Destination(_))
        ),
        "{err}"
    );
}
