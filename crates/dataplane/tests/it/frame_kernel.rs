//! The frame writer against the kernel: a peer namespace sends UDP
//! datagrams from an ordinary socket with transmit checksum offload off (so
//! the kernel computes the UDP checksum in software), the frames are
//! captured with an AF_PACKET socket, and the frame writer, given the same
//! addresses, ports, hop limit and payload, must produce the same bytes,
//! checksums included (for IPv4 after taking over the identification the
//! kernel chose, with the header checksum carried along by RFC 1624). An
//! independent check of both checksums.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use lab::netns::{unique_name, veth_pair, Netns};
use lab::privilege::privileged_or_skip;
use wire::frame::{build_udp_frame, UdpFrame, UdpFrameHeaders};

/// Captures frames on `iface` (in the calling thread's namespace) until one
/// carries UDP to `port`, bounded to 10 s.
fn capture_udp_to(iface: &str, port: u16, send: impl FnOnce()) -> Vec<u8> {
    let capture =
        sys::CaptureSocket::open(iface, Duration::from_millis(200)).expect("AF_PACKET capture");
    send();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 4096];
    loop {
        assert!(
            Instant::now() < deadline,
            "no UDP frame to port {port} captured"
        );
        let n = capture.recv(&mut buf).expect("capture");
        if n == 0 {
            continue;
        }
        let f = &buf[..n];
        if let Ok(v) = UdpFrame::parse(f) {
            if v.dst.port() == port {
                return f.to_vec();
            }
        }
    }
}

fn kernel_frame_equals_ours(subnet: u8, src: &str, dst: &str, payload: &'static [u8]) {
    let a = Netns::create("dfa").unwrap();
    let b = Netns::create("dfb").unwrap();
    let (ia, ib) = (unique_name("fa"), unique_name("fb"));
    veth_pair(&a, &ia, &b, &ib).unwrap();
    // Software checksums and no IPv6 flow label on the sending side, so
    // the frame on the wire is fully determined by its fields.
    b.run("ethtool", &["-K", &ib, "tx", "off"]).unwrap();
    b.run("sysctl", &["-q", "-w", "net.ipv6.auto_flowlabels=0"])
        .unwrap();
    a.addr_up(&ia, &format!("198.18.{subnet}.1/24")).unwrap();
    a.addr_up(&ia, &format!("2001:2:0:{subnet}::1/64")).unwrap();
    b.addr_up(&ib, &format!("198.18.{subnet}.2/24")).unwrap();
    b.addr_up(&ib, &format!("2001:2:0:{subnet}::2/64")).unwrap();
    let src: SocketAddr = src.parse().unwrap();
    let dst: SocketAddr = dst.parse().unwrap();
    let captured = a
        .enter(|| {
            capture_udp_to(&ia, dst.port(), || {
                b.enter(move || {
                    let s = UdpSocket::bind(src).unwrap();
                    // Bounded: a handful of copies in case the first is
                    // held for neighbour resolution.
                    for _ in 0..5 {
                        s.send_to(payload, dst).unwrap();
                        std::thread::sleep(Duration::from_millis(50));
                    }
                })
                .unwrap();
            })
        })
        .unwrap();
    let v = UdpFrame::parse(&captured).unwrap();
    assert_eq!((v.src, v.dst), (src, dst));
    let hop_limit = if src.is_ipv4() {
        captured[14 + 8]
    } else {
        captured[14 + 7]
    };
    let headers = UdpFrameHeaders {
        src_mac: v.src_mac,
        dst_mac: v.dst_mac,
        vlan: None,
        src,
        dst,
        hop_limit,
    };
    let mut ours = vec![0u8; 2048];
    let n = build_udp_frame(&mut ours, &headers, payload).unwrap();
    let mut ours = ours[..n].to_vec();
    if src.is_ipv4() {
        // The kernel picks an IPv4 identification even for DF datagrams;
        // ours is 0 (RFC 6864 allows any value for atomic datagrams). Take
        // the kernel's and check that our header checksum, brought along by
        // the RFC 1624 incremental update, equals the kernel's.
        let old_id = u16::from_be_bytes([ours[18], ours[19]]);
        let new_id = u16::from_be_bytes([captured[18], captured[19]]);
        let old_sum = u16::from_be_bytes([ours[24], ours[25]]);
        // HC' = ~(~HC + ~m + m')  (RFC 1624 equation 3)
        let mut acc = u32::from(!old_sum) + u32::from(!old_id) + u32::from(new_id);
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        let new_sum = !(acc as u16);
        ours[18..20].copy_from_slice(&new_id.to_be_bytes());
        ours[24..26].copy_from_slice(&new_sum.to_be_bytes());
    }
    assert_eq!(
        &ours[..],
        &captured[..],
        "frame writer differs from the kernel's frame"
    );
}

#[test]
fn ipv4_udp_frame_matches_the_kernels_byte_for_byte() {
    if !privileged_or_skip("ipv4_udp_frame_matches_the_kernels_byte_for_byte") {
        return;
    }
    // Odd payload length: the checksum pads the last byte (RFC 1071).
    kernel_frame_equals_ours(
        30,
        "198.18.30.2:40001",
        "198.18.30.1:5099",
        b"OPTIONS sip:edge SIP/2.0\r\nVia: x\r\n\r\n!",
    );
}

#[test]
fn ipv6_udp_frame_matches_the_kernels_byte_for_byte() {
    if !privileged_or_skip("ipv6_udp_frame_matches_the_kernels_byte_for_byte") {
        return;
    }
    kernel_frame_equals_ours(
        31,
        "[2001:2:0:31::2]:40002",
        "[2001:2:0:31::1]:5099",
        b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    );
}
