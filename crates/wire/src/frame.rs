//! Ethernet frames carrying UDP: a borrowed, checked view for frames that
//! arrive ([`UdpFrame::parse`]) and an in-place writer for frames that leave
//! ([`write_udp_frame`]).
//!
//! The view follows smoltcp's `wire` idea: every field is read through one
//! bounds-checked path, and a frame that does not hold together is refused
//! with a [`FrameError`] naming what is wrong, so the worker can count it
//! under exactly one reason. The writer leaves the payload where the caller
//! put it (at [`payload_offset`]) and fills the headers and checksums around
//! it, so a payload can be serialised straight into a UMEM frame.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;

use crate::checksum::{fold, sum_be_words};

/// EtherType of IPv4 (RFC 894).
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6 (RFC 2464).
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// EtherType of an 802.1Q customer VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// EtherType of an 802.1ad service VLAN tag (QinQ outer tag).
pub const ETHERTYPE_QINQ: u16 = 0x88a8;

const ETH_LEN: usize = 14;
const VLAN_LEN: usize = 4;
const IPV4_MIN_LEN: usize = 20;
const IPV6_LEN: usize = 40;
const UDP_LEN: usize = 8;
const PROTO_UDP: u8 = 17;

/// Longest header stack [`write_udp_frame`] produces: Ethernet, one VLAN tag,
/// IPv6, UDP. A UMEM frame or send buffer with this much headroom before the
/// payload fits any outgoing frame.
pub const MAX_HEADER_LEN: usize = ETH_LEN + VLAN_LEN + IPV6_LEN + UDP_LEN;

/// How many IPv6 extension headers [`UdpFrame::parse`] walks before it gives
/// up; a chain longer than this is refused, so a crafted chain costs a
/// bounded amount of work.
pub const MAX_IPV6_EXTENSION_HEADERS: usize = 8;

/// A 48-bit IEEE 802 MAC address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The broadcast address ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// The address as six bytes.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }
}

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl std::fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Why an incoming frame was refused. Each variant is one drop reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Shorter than an Ethernet header (plus the VLAN tags it announces).
    #[error("frame of {len} bytes is shorter than its Ethernet header")]
    EthernetTruncated {
        /// Bytes in the frame.
        len: usize,
    },
    /// More than two VLAN tags (802.1ad outer plus 802.1Q inner is the most
    /// this parser accepts).
    #[error("more than two VLAN tags")]
    TooManyVlanTags,
    /// Neither IPv4 nor IPv6.
    #[error("EtherType {ethertype:#06x} is not IPv4 or IPv6")]
    NotIp {
        /// The EtherType after any VLAN tags.
        ethertype: u16,
    },
    /// IPv4 header shorter than its IHL says, or IHL below 5.
    #[error("IPv4 header truncated or IHL below 5")]
    Ipv4HeaderTruncated,
    /// Version nibble does not match the EtherType.
    #[error("IP version {version} does not match the EtherType")]
    IpVersionMismatch {
        /// The version nibble found.
        version: u8,
    },
    /// IPv4 total length below the header length or beyond the frame.
    #[error("IPv4 total length {total_length} does not fit the frame ({available} bytes)")]
    Ipv4BadTotalLength {
        /// The header's total length.
        total_length: u16,
        /// Bytes from the IPv4 header to the end of the frame.
        available: usize,
    },
    /// IPv4 header checksum does not verify (RFC 791).
    #[error("IPv4 header checksum does not verify")]
    Ipv4BadChecksum,
    /// An IPv4 or IPv6 fragment; reassembly is the kernel's job, not ours.
    #[error("IP fragment")]
    Fragment,
    /// IPv6 header truncated, or payload length beyond the frame.
    #[error("IPv6 header truncated or payload length beyond the frame")]
    Ipv6Truncated,
    /// An IPv6 extension header runs past the packet, or the chain is longer
    /// than [`MAX_IPV6_EXTENSION_HEADERS`].
    #[error("IPv6 extension header chain truncated or longer than {MAX_IPV6_EXTENSION_HEADERS}")]
    Ipv6BadExtensionHeaders,
    /// The transport protocol is not UDP.
    #[error("IP protocol {protocol} is not UDP")]
    NotUdp {
        /// The protocol number (or IPv6 next header) found.
        protocol: u8,
    },
    /// UDP header truncated, or its length field below 8 or beyond the packet.
    #[error("UDP length {udp_length} does not fit the packet ({available} bytes)")]
    UdpBadLength {
        /// The UDP length field (0 when the header itself is cut).
        udp_length: u16,
        /// Bytes from the UDP header to the end of the IP packet.
        available: usize,
    },
}

/// A checked view of an Ethernet frame carrying one UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpFrame<'a> {
    frame: &'a [u8],
    /// Destination MAC address.
    pub dst_mac: MacAddr,
    /// Source MAC address.
    pub src_mac: MacAddr,
    /// The 802.1ad service tag's VLAN id, when the frame is double tagged.
    pub outer_vlan: Option<u16>,
    /// The VLAN id of the innermost tag (the one the IP packet belongs to).
    pub vlan: Option<u16>,
    /// Source IP address and UDP port.
    pub src: SocketAddr,
    /// Destination IP address and UDP port.
    pub dst: SocketAddr,
    payload: Range<usize>,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Bytes `range` of `b`, or `err` when the range runs past the end.
fn get(b: &[u8], range: Range<usize>, err: FrameError) -> Result<&[u8], FrameError> {
    b.get(range).ok_or(err)
}

impl<'a> UdpFrame<'a> {
    /// Parses `frame` (starting at the destination MAC, no FCS). Trailing
    /// bytes after the IP packet (Ethernet minimum-size padding) are ignored.
    /// The UDP checksum is not verified: NICs verify it on receive, and
    /// frames looped through veth may carry only the partial sum of checksum
    /// offload.
    pub fn parse(frame: &'a [u8]) -> Result<UdpFrame<'a>, FrameError> {
        let eth = get(
            frame,
            0..ETH_LEN,
            FrameError::EthernetTruncated { len: frame.len() },
        )?;
        let mut dst_mac = [0u8; 6];
        let mut src_mac = [0u8; 6];
        dst_mac.copy_from_slice(&eth[0..6]);
        src_mac.copy_from_slice(&eth[6..12]);
        let mut ethertype = be16(eth, 12);
        let mut at = ETH_LEN;
        let mut tags = [0u16; 2];
        let mut ntags = 0;
        while ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
            if ntags == tags.len() {
                return Err(FrameError::TooManyVlanTags);
            }
            let tag = get(
                frame,
                at..at + VLAN_LEN,
                FrameError::EthernetTruncated { len: frame.len() },
            )?;
            // The low 12 bits of the TCI are the VLAN id (IEEE 802.1Q 9.6).
            tags[ntags] = be16(tag, 0) & 0x0fff;
            ntags += 1;
            ethertype = be16(tag, 2);
            at += VLAN_LEN;
        }
        let (outer_vlan, vlan) = match ntags {
            0 => (None, None),
            1 => (None, Some(tags[0])),
            _ => (Some(tags[0]), Some(tags[1])),
        };
        let ip = &frame[at..];
        let (src_ip, dst_ip, udp_start, ip_end) = match ethertype {
            ETHERTYPE_IPV4 => parse_ipv4(ip)?,
            ETHERTYPE_IPV6 => parse_ipv6(ip)?,
            other => return Err(FrameError::NotIp { ethertype: other }),
        };
        let available = ip_end - udp_start;
        let udp = ip
            .get(udp_start..udp_start + UDP_LEN)
            .filter(|_| udp_start + UDP_LEN <= ip_end)
            .ok_or(FrameError::UdpBadLength {
                udp_length: 0,
                available,
            })?;
        let udp_length = be16(udp, 4);
        if (udp_length as usize) < UDP_LEN || udp_length as usize > available {
            return Err(FrameError::UdpBadLength {
                udp_length,
                available,
            });
        }
        let payload_start = at + udp_start + UDP_LEN;
        let payload = payload_start..at + udp_start + udp_length as usize;
        Ok(UdpFrame {
            frame,
            dst_mac: MacAddr(dst_mac),
            src_mac: MacAddr(src_mac),
            outer_vlan,
            vlan,
            src: SocketAddr::new(src_ip, be16(udp, 0)),
            dst: SocketAddr::new(dst_ip, be16(udp, 2)),
            payload,
        })
    }

    /// The UDP payload.
    pub fn payload(&self) -> &'a [u8] {
        &self.frame[self.payload.clone()]
    }

    /// Where the UDP payload sits in the frame.
    pub fn payload_range(&self) -> Range<usize> {
        self.payload.clone()
    }

    /// The whole frame this view was parsed from.
    pub fn frame(&self) -> &'a [u8] {
        self.frame
    }
}

/// Returns (src, dst, offset of the UDP header, end of the IP packet), all
/// offsets relative to the start of the IPv4 header.
fn parse_ipv4(ip: &[u8]) -> Result<(IpAddr, IpAddr, usize, usize), FrameError> {
    let fixed = get(ip, 0..IPV4_MIN_LEN, FrameError::Ipv4HeaderTruncated)?;
    let version = fixed[0] >> 4;
    if version != 4 {
        return Err(FrameError::IpVersionMismatch { version });
    }
    let ihl = usize::from(fixed[0] & 0x0f) * 4;
    if ihl < IPV4_MIN_LEN {
        return Err(FrameError::Ipv4HeaderTruncated);
    }
    let header = get(ip, 0..ihl, FrameError::Ipv4HeaderTruncated)?;
    let total_length = be16(header, 2);
    if (total_length as usize) < ihl || total_length as usize > ip.len() {
        return Err(FrameError::Ipv4BadTotalLength {
            total_length,
            available: ip.len(),
        });
    }
    // A correct header sums to all ones including its checksum (RFC 1071).
    if fold(sum_be_words(header, 0)) != 0xffff {
        return Err(FrameError::Ipv4BadChecksum);
    }
    // More-fragments flag or a non-zero offset (RFC 791 section 3.1).
    if be16(header, 6) & 0x3fff != 0 {
        return Err(FrameError::Fragment);
    }
    if header[9] != PROTO_UDP {
        return Err(FrameError::NotUdp {
            protocol: header[9],
        });
    }
    let src = Ipv4Addr::new(header[12], header[13], header[14], header[15]);
    let dst = Ipv4Addr::new(header[16], header[17], header[18], header[19]);
    Ok((src.into(), dst.into(), ihl, total_length as usize))
}

fn parse_ipv6(ip: &[u8]) -> Result<(IpAddr, IpAddr, usize, usize), FrameError> {
    let fixed = get(ip, 0..IPV6_LEN, FrameError::Ipv6Truncated)?;
    let version = fixed[0] >> 4;
    if version != 6 {
        return Err(FrameError::IpVersionMismatch { version });
    }
    let end = IPV6_LEN + be16(fixed, 4) as usize;
    if end > ip.len() {
        return Err(FrameError::Ipv6Truncated);
    }
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&fixed[8..24]);
    dst.copy_from_slice(&fixed[24..40]);
    let mut next = fixed[6];
    let mut at = IPV6_LEN;
    let mut walked = 0;
    // RFC 8200 section 4: walk the extension headers we can skip.
    loop {
        let len = match next {
            PROTO_UDP => break,
            // Hop-by-hop, routing, destination options: 8-octet units, not
            // counting the first 8 (RFC 8200 4.3, 4.4, 4.6).
            0 | 43 | 60 => {
                let h = get(ip, at..at + 2, FrameError::Ipv6BadExtensionHeaders)?;
                (usize::from(h[1]) + 1) * 8
            }
            44 => return Err(FrameError::Fragment),
            // Authentication header: 4-octet units, minus 2 (RFC 4302 2.2).
            51 => {
                let h = get(ip, at..at + 2, FrameError::Ipv6BadExtensionHeaders)?;
                (usize::from(h[1]) + 2) * 4
            }
            other => return Err(FrameError::NotUdp { protocol: other }),
        };
        walked += 1;
        if walked > MAX_IPV6_EXTENSION_HEADERS || at + len > end {
            return Err(FrameError::Ipv6BadExtensionHeaders);
        }
        next = ip[at];
        at += len;
    }
    Ok((
        Ipv6Addr::from(src).into(),
        Ipv6Addr::from(dst).into(),
        at,
        end,
    ))
}

/// Addresses and fields of a frame to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpFrameHeaders {
    /// Source MAC (this interface's).
    pub src_mac: MacAddr,
    /// Destination MAC (the next hop's, from the neighbour table).
    pub dst_mac: MacAddr,
    /// An 802.1Q tag to add, if the interface is a VLAN trunk.
    pub vlan: Option<u16>,
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port; the same family as `src`.
    pub dst: SocketAddr,
    /// IPv4 TTL or IPv6 hop limit.
    pub hop_limit: u8,
}

/// Why a frame could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// Source and destination are of different IP families.
    #[error("source {src} and destination {dst} are of different IP families")]
    FamilyMismatch {
        /// Source address.
        src: SocketAddr,
        /// Destination address.
        dst: SocketAddr,
    },
    /// The buffer cannot hold the headers plus the payload.
    #[error("frame of {needed} bytes does not fit a {capacity}-byte buffer")]
    TooLong {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes the buffer holds.
        capacity: usize,
    },
    /// The payload is longer than a UDP datagram can carry.
    #[error("payload of {len} bytes is longer than one UDP datagram carries")]
    PayloadTooLong {
        /// Payload length.
        len: usize,
    },
}

/// Where [`write_udp_frame`] expects the payload: the length of Ethernet
/// (plus a tag when `vlan`), IP (`ipv6` or IPv4 without options) and UDP headers.
pub const fn payload_offset(ipv6: bool, vlan: bool) -> usize {
    ETH_LEN + if vlan { VLAN_LEN } else { 0 } + if ipv6 { IPV6_LEN } else { IPV4_MIN_LEN } + UDP_LEN
}

/// Builds a frame around a payload already placed at
/// `frame[payload_offset(..)..][..payload_len]`: writes Ethernet, the
/// optional VLAN tag, IPv4 (DF set, no options) or IPv6, and UDP, with the
/// IPv4 header checksum and the UDP checksum over the pseudo-header (RFC 768,
/// RFC 8200 section 8.1; mandatory on IPv6). Returns the frame's length.
pub fn write_udp_frame(
    frame: &mut [u8],
    h: &UdpFrameHeaders,
    payload_len: usize,
) -> Result<usize, BuildError> {
    let ipv6 = match (h.src.ip(), h.dst.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => false,
        (IpAddr::V6(_), IpAddr::V6(_)) => true,
        _ => {
            return Err(BuildError::FamilyMismatch {
                src: h.src,
                dst: h.dst,
            })
        }
    };
    let ip_start = ETH_LEN + if h.vlan.is_some() { VLAN_LEN } else { 0 };
    let udp_start = ip_start + if ipv6 { IPV6_LEN } else { IPV4_MIN_LEN };
    let payload_start = udp_start + UDP_LEN;
    let udp_len = UDP_LEN + payload_len;
    let ip_limit = if ipv6 { 0xffff } else { 0xffff - IPV4_MIN_LEN };
    if udp_len > ip_limit {
        return Err(BuildError::PayloadTooLong { len: payload_len });
    }
    let total = payload_start + payload_len;
    if total > frame.len() {
        return Err(BuildError::TooLong {
            needed: total,
            capacity: frame.len(),
        });
    }
    let frame = &mut frame[..total];
    frame[0..6].copy_from_slice(&h.dst_mac.0);
    frame[6..12].copy_from_slice(&h.src_mac.0);
    if let Some(vlan) = h.vlan {
        frame[12..14].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
        frame[14..16].copy_from_slice(&(vlan & 0x0fff).to_be_bytes());
    }
    let ethertype = if ipv6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 };
    frame[ip_start - 2..ip_start].copy_from_slice(&ethertype.to_be_bytes());

    // Pseudo-header sum (RFC 768; RFC 8200 section 8.1).
    let mut pseudo: u64 = u64::from(PROTO_UDP) + udp_len as u64;
    match (h.src.ip(), h.dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let ip = &mut frame[ip_start..udp_start];
            ip[0] = 0x45;
            ip[1] = 0;
            ip[2..4].copy_from_slice(&((IPV4_MIN_LEN + udp_len) as u16).to_be_bytes());
            // Identification 0 with DF set: an atomic datagram (RFC 6864).
            ip[4..6].copy_from_slice(&[0, 0]);
            ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
            ip[8] = h.hop_limit;
            ip[9] = PROTO_UDP;
            ip[10..12].copy_from_slice(&[0, 0]);
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let csum = !fold(sum_be_words(ip, 0));
            ip[10..12].copy_from_slice(&csum.to_be_bytes());
            pseudo = sum_be_words(&ip[12..20], pseudo);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let ip = &mut frame[ip_start..udp_start];
            ip[0..4].copy_from_slice(&0x6000_0000u32.to_be_bytes());
            ip[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
            ip[6] = PROTO_UDP;
            ip[7] = h.hop_limit;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            pseudo = sum_be_words(&ip[8..40], pseudo);
        }
        _ => unreachable!("families checked above"),
    }
    let udp = &mut frame[udp_start..];
    udp[0..2].copy_from_slice(&h.src.port().to_be_bytes());
    udp[2..4].copy_from_slice(&h.dst.port().to_be_bytes());
    udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    let mut csum = !fold(sum_be_words(udp, pseudo));
    // A computed zero is sent as all ones; zero means "no checksum" on IPv4
    // and is invalid on IPv6 (RFC 768, RFC 8200 section 8.1).
    if csum == 0 {
        csum = 0xffff;
    }
    udp[6..8].copy_from_slice(&csum.to_be_bytes());
    Ok(total)
}

/// Copies `payload` into place and builds the frame around it; see
/// [`write_udp_frame`].
pub fn build_udp_frame(
    frame: &mut [u8],
    h: &UdpFrameHeaders,
    payload: &[u8],
) -> Result<usize, BuildError> {
    let start = payload_offset(h.src.is_ipv6(), h.vlan.is_some());
    let end = start + payload.len();
    if end > frame.len() {
        return Err(BuildError::TooLong {
            needed: end,
            capacity: frame.len(),
        });
    }
    frame[start..end].copy_from_slice(payload);
    write_udp_frame(frame, h, payload.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAC_A: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0a]);
    const MAC_B: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0b]);

    fn headers(src: &str, dst: &str, vlan: Option<u16>) -> UdpFrameHeaders {
        UdpFrameHeaders {
            src_mac: MAC_A,
            dst_mac: MAC_B,
            vlan,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            hop_limit: 64,
        }
    }

    /// One's-complement sum of 16-bit words, bit by bit as RFC 1071 section
    /// 4.1 writes it in C: the independent reference for these tests.
    fn rfc1071(bytes: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        let mut i = 0;
        while i + 1 < bytes.len() {
            sum += (u32::from(bytes[i]) << 8) | u32::from(bytes[i + 1]);
            i += 2;
        }
        if i < bytes.len() {
            sum += u32::from(bytes[i]) << 8;
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn ipv4_header_checksum_matches_the_textbook_vector() {
        // The IPv4 header checksum example used in most references: the
        // checksum of this header is 0xb861.
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(!fold(sum_be_words(&hdr, 0)), 0xb861);
        hdr[10] = 0xb8;
        hdr[11] = 0x61;
        assert_eq!(fold(sum_be_words(&hdr, 0)), 0xffff);
    }

    #[test]
    fn ipv4_frame_matches_hand_computed_bytes() {
        // 198.18.0.1:5060 -> 198.18.0.2:5080, payload "hi": every header
        // byte written out, checksums from the RFC 1071 reference below.
        let h = headers("198.18.0.1:5060", "198.18.0.2:5080", None);
        let mut buf = [0u8; 128];
        let n = build_udp_frame(&mut buf, &h, b"hi").unwrap();
        assert_eq!(n, 14 + 20 + 8 + 2);
        #[rustfmt::skip]
        let mut expected = vec![
            0x02, 0, 0, 0, 0, 0x0b, 0x02, 0, 0, 0, 0, 0x0a, 0x08, 0x00,
            0x45, 0x00, 0x00, 30, 0x00, 0x00, 0x40, 0x00, 64, 17, 0, 0,
            198, 18, 0, 1, 198, 18, 0, 2,
            0x13, 0xc4, 0x13, 0xd8, 0x00, 10, 0, 0, b'h', b'i',
        ];
        let ip_csum = rfc1071(&expected[14..34]);
        expected[24..26].copy_from_slice(&ip_csum.to_be_bytes());
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&[198, 18, 0, 1, 198, 18, 0, 2, 0, 17, 0, 10]);
        pseudo.extend_from_slice(&expected[34..44]);
        let udp_csum = rfc1071(&pseudo);
        expected[40..42].copy_from_slice(&udp_csum.to_be_bytes());
        assert_eq!(&buf[..n], &expected[..]);
        // Both checksums also worked out by hand (16-bit word sums, folded,
        // complemented): 0xaea7 for the IPv4 header, 0xe3ac for UDP.
        assert_eq!(ip_csum, 0xaea7);
        assert_eq!(udp_csum, 0xe3ac);
    }

    #[test]
    fn ipv6_udp_checksum_matches_the_rfc1071_reference() {
        let h = headers("[2001:db8::1]:5060", "[2001:db8::2]:5061", None);
        let mut buf = [0u8; 256];
        let payload = b"OPTIONS sip:x SIP/2.0\r\n\r\n";
        let n = build_udp_frame(&mut buf, &h, payload).unwrap();
        let ip = &buf[14..54];
        let udp = &buf[54..n];
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&ip[8..40]);
        pseudo.extend_from_slice(&(udp.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 17]);
        let mut udp_zeroed = udp.to_vec();
        udp_zeroed[6] = 0;
        udp_zeroed[7] = 0;
        pseudo.extend_from_slice(&udp_zeroed);
        assert_eq!(u16::from_be_bytes([udp[6], udp[7]]), rfc1071(&pseudo));
        assert_eq!(&ip[0..8], &[0x60, 0, 0, 0, 0, udp.len() as u8, 17, 64]);
    }

    #[test]
    fn vlan_tagged_frame_parses_with_its_vlan_id() {
        let h = headers("198.18.0.1:1", "198.18.0.2:2", Some(42));
        let mut buf = [0u8; 128];
        let n = build_udp_frame(&mut buf, &h, b"x").unwrap();
        assert_eq!(&buf[12..16], &[0x81, 0x00, 0, 42]);
        let f = UdpFrame::parse(&buf[..n]).unwrap();
        assert_eq!((f.outer_vlan, f.vlan), (None, Some(42)));
        assert_eq!(f.payload(), b"x");
    }

    #[test]
    fn double_tagged_frame_reports_both_vlans() {
        let h = headers("198.18.0.1:1", "198.18.0.2:2", Some(7));
        let mut buf = [0u8; 128];
        let n = build_udp_frame(&mut buf, &h, b"x").unwrap();
        // Insert an 802.1ad outer tag (VLAN 100) in front of the 802.1Q one.
        let mut qinq = buf[..12].to_vec();
        qinq.extend_from_slice(&[0x88, 0xa8, 0, 100]);
        qinq.extend_from_slice(&buf[12..n]);
        let f = UdpFrame::parse(&qinq).unwrap();
        assert_eq!((f.outer_vlan, f.vlan), (Some(100), Some(7)));
    }

    #[test]
    fn three_vlan_tags_are_refused() {
        let mut f = vec![0u8; 12];
        for _ in 0..3 {
            f.extend_from_slice(&[0x81, 0x00, 0, 1]);
        }
        f.extend_from_slice(&[0x08, 0x00]);
        f.resize(80, 0);
        assert_eq!(UdpFrame::parse(&f), Err(FrameError::TooManyVlanTags));
    }

    fn v4_frame(payload: &[u8]) -> Vec<u8> {
        let h = headers("198.18.0.1:5060", "198.18.0.2:5060", None);
        let mut buf = vec![0u8; 64 + payload.len()];
        let n = build_udp_frame(&mut buf, &h, payload).unwrap();
        buf.truncate(n);
        buf
    }

    fn fix_ipv4_checksum(f: &mut [u8], ip: Range<usize>) {
        f[ip.start + 10] = 0;
        f[ip.start + 11] = 0;
        let c = rfc1071(&f[ip.clone()]);
        f[ip.start + 10..ip.start + 12].copy_from_slice(&c.to_be_bytes());
    }

    #[test]
    fn ipv4_options_are_skipped() {
        let plain = v4_frame(b"payload");
        // Rebuild with IHL 6 and a 4-byte option (NOP NOP NOP EOL).
        let mut f = plain[..34].to_vec();
        f[14] = 0x46;
        f.extend_from_slice(&[1, 1, 1, 0]);
        f.extend_from_slice(&plain[34..]);
        let total = (f.len() - 14) as u16;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        fix_ipv4_checksum(&mut f, 14..38);
        let v = UdpFrame::parse(&f).unwrap();
        assert_eq!(v.payload(), b"payload");
        assert_eq!(v.dst.port(), 5060);
    }

    #[test]
    fn ethernet_padding_after_the_packet_is_ignored() {
        let mut f = v4_frame(b"a");
        f.resize(60, 0xee);
        assert_eq!(UdpFrame::parse(&f).unwrap().payload(), b"a");
    }

    #[test]
    fn ipv4_bad_header_checksum_is_refused() {
        let mut f = v4_frame(b"a");
        f[24] ^= 1;
        assert_eq!(UdpFrame::parse(&f), Err(FrameError::Ipv4BadChecksum));
    }

    #[test]
    fn ipv4_fragment_is_refused() {
        let mut f = v4_frame(b"a");
        f[20] = 0x20; // more fragments
        fix_ipv4_checksum(&mut f, 14..34);
        assert_eq!(UdpFrame::parse(&f), Err(FrameError::Fragment));
    }

    #[test]
    fn non_udp_protocol_is_refused() {
        let mut f = v4_frame(b"a");
        f[23] = 6;
        fix_ipv4_checksum(&mut f, 14..34);
        assert_eq!(UdpFrame::parse(&f), Err(FrameError::NotUdp { protocol: 6 }));
    }

    #[test]
    fn arp_is_not_ip() {
        let mut f = vec![0u8; 42];
        f[12] = 0x08;
        f[13] = 0x06;
        assert_eq!(
            UdpFrame::parse(&f),
            Err(FrameError::NotIp { ethertype: 0x0806 })
        );
    }

    #[test]
    fn udp_length_beyond_the_packet_is_refused() {
        let mut f = v4_frame(b"abc");
        f[38..40].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(
            UdpFrame::parse(&f),
            Err(FrameError::UdpBadLength {
                udp_length: 100,
                available: 11
            })
        );
    }

    #[test]
    fn ipv4_total_length_beyond_the_frame_is_refused() {
        let mut f = v4_frame(b"abc");
        f[16..18].copy_from_slice(&200u16.to_be_bytes());
        fix_ipv4_checksum(&mut f, 14..34);
        assert!(matches!(
            UdpFrame::parse(&f),
            Err(FrameError::Ipv4BadTotalLength {
                total_length: 200,
                ..
            })
        ));
    }

    fn v6_with_extensions(ext: &[(u8, Vec<u8>)]) -> Vec<u8> {
        // ext: (this header's type, its bytes); the next-header bytes are
        // rewritten to chain them and end in UDP.
        let h = headers("[2001:db8::1]:5060", "[2001:db8::2]:5060", None);
        let mut buf = vec![0u8; 128];
        let n = build_udp_frame(&mut buf, &h, b"v6").unwrap();
        let mut f = buf[..54].to_vec();
        let udp = buf[54..n].to_vec();
        let mut chain = Vec::new();
        for (i, (_, bytes)) in ext.iter().enumerate() {
            let mut b = bytes.clone();
            b[0] = ext.get(i + 1).map_or(17, |e| e.0);
            chain.extend_from_slice(&b);
        }
        if let Some((first, _)) = ext.first() {
            f[20] = *first;
        }
        f.extend_from_slice(&chain);
        f.extend_from_slice(&udp);
        let plen = (chain.len() + udp.len()) as u16;
        f[18..20].copy_from_slice(&plen.to_be_bytes());
        f
    }

    #[test]
    fn ipv6_extension_headers_are_walked() {
        let hop_by_hop = vec![0, 0, 1, 4, 0, 0, 0, 0];
        let dest_opts = vec![0, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let f = v6_with_extensions(&[(0, hop_by_hop), (60, dest_opts)]);
        let v = UdpFrame::parse(&f).unwrap();
        assert_eq!(v.payload(), b"v6");
        assert_eq!(v.src, "[2001:db8::1]:5060".parse::<SocketAddr>().unwrap());
    }

    #[test]
    fn ipv6_fragment_header_is_refused() {
        let f = v6_with_extensions(&[(44, vec![0; 8])]);
        assert_eq!(UdpFrame::parse(&f), Err(FrameError::Fragment));
    }

    #[test]
    fn ipv6_extension_chain_longer_than_the_limit_is_refused() {
        let ext: Vec<(u8, Vec<u8>)> = (0..MAX_IPV6_EXTENSION_HEADERS + 1)
            .map(|_| (60, vec![0u8; 8]))
            .collect();
        let f = v6_with_extensions(&ext);
        assert_eq!(
            UdpFrame::parse(&f),
            Err(FrameError::Ipv6BadExtensionHeaders)
        );
    }

    #[test]
    fn ipv6_extension_header_past_the_packet_is_refused() {
        // Claims 8 * (255 + 1) bytes.
        let f = v6_with_extensions(&[(60, vec![0, 255, 0, 0, 0, 0, 0, 0])]);
        assert_eq!(
            UdpFrame::parse(&f),
            Err(FrameError::Ipv6BadExtensionHeaders)
        );
    }

    #[test]
    fn mixed_families_are_refused_by_the_writer() {
        let h = headers("198.18.0.1:1", "[2001:db8::2]:2", None);
        let mut buf = [0u8; 128];
        assert!(matches!(
            build_udp_frame(&mut buf, &h, b"x"),
            Err(BuildError::FamilyMismatch { .. })
        ));
    }

    #[test]
    fn too_small_buffer_is_refused_by_the_writer() {
        let h = headers("198.18.0.1:1", "198.18.0.2:2", None);
        let mut buf = [0u8; 50];
        assert_eq!(
            build_udp_frame(&mut buf, &h, &[0; 10]),
            Err(BuildError::TooLong {
                needed: 52,
                capacity: 50
            })
        );
    }

    fn socket_addr(v6: bool) -> impl Strategy<Value = SocketAddr> {
        if v6 {
            (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::new(Ipv6Addr::from(ip).into(), port))
                .boxed()
        } else {
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::new(Ipv4Addr::from(ip).into(), port))
                .boxed()
        }
    }

    fn frame_headers() -> impl Strategy<Value = UdpFrameHeaders> {
        any::<bool>().prop_flat_map(|v6| {
            (
                any::<[u8; 6]>(),
                any::<[u8; 6]>(),
                proptest::option::of(0u16..4096),
                socket_addr(v6),
                socket_addr(v6),
                any::<u8>(),
            )
                .prop_map(|(s, d, vlan, src, dst, hop_limit)| UdpFrameHeaders {
                    src_mac: MacAddr(s),
                    dst_mac: MacAddr(d),
                    vlan,
                    src,
                    dst,
                    hop_limit,
                })
        })
    }

    proptest! {
        #[test]
        fn built_frames_parse_back_to_what_was_built(
            h in frame_headers(),
            payload in proptest::collection::vec(any::<u8>(), 0..1500),
        ) {
            let mut buf = vec![0u8; MAX_HEADER_LEN + payload.len()];
            let n = build_udp_frame(&mut buf, &h, &payload).unwrap();
            let f = UdpFrame::parse(&buf[..n]).unwrap();
            prop_assert_eq!(f.src_mac, h.src_mac);
            prop_assert_eq!(f.dst_mac, h.dst_mac);
            prop_assert_eq!(f.vlan, h.vlan);
            prop_assert_eq!(f.src, h.src);
            prop_assert_eq!(f.dst, h.dst);
            prop_assert_eq!(f.payload(), &payload[..]);
            // The UDP checksum verifies against the independent reference.
            let udp_start = f.payload_range().start - 8;
            let mut pseudo = Vec::new();
            match (h.src.ip(), h.dst.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    pseudo.extend_from_slice(&s.octets());
                    pseudo.extend_from_slice(&d.octets());
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    pseudo.extend_from_slice(&s.octets());
                    pseudo.extend_from_slice(&d.octets());
                }
                _ => unreachable!(),
            }
            pseudo.extend_from_slice(&[0, 17]);
            pseudo.extend_from_slice(&((n - udp_start) as u16).to_be_bytes());
            pseudo.extend_from_slice(&buf[udp_start..n]);
            prop_assert_eq!(rfc1071(&pseudo), 0);
        }

        #[test]
        fn written_frames_are_what_etherparse_builds(
            h in frame_headers(),
            payload in proptest::collection::vec(any::<u8>(), 0..1500),
        ) {
            let mut buf = vec![0u8; MAX_HEADER_LEN + payload.len()];
            let n = build_udp_frame(&mut buf, &h, &payload).unwrap();
            // etherparse, an independent writer: IPv4 with DF set and
            // Identification 0 (RFC 6864), like ours.
            let eth = etherparse::PacketBuilder::ethernet2(h.src_mac.0, h.dst_mac.0);
            let ip = match (h.src.ip(), h.dst.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => etherparse::IpHeaders::Ipv4(
                    etherparse::Ipv4Header::new(
                        (8 + payload.len()) as u16,
                        h.hop_limit,
                        etherparse::IpNumber::UDP,
                        s.octets(),
                        d.octets(),
                    )
                    .unwrap(),
                    Default::default(),
                ),
                (IpAddr::V6(s), IpAddr::V6(d)) => etherparse::IpHeaders::Ipv6(
                    etherparse::Ipv6Header {
                        payload_length: (8 + payload.len()) as u16,
                        next_header: etherparse::IpNumber::UDP,
                        hop_limit: h.hop_limit,
                        source: s.octets(),
                        destination: d.octets(),
                        ..Default::default()
                    },
                    Default::default(),
                ),
                _ => unreachable!(),
            };
            let mut theirs = Vec::new();
            match h.vlan {
                Some(v) => eth
                    .single_vlan(etherparse::VlanId::try_new(v).unwrap())
                    .ip(ip)
                    .udp(h.src.port(), h.dst.port())
                    .write(&mut theirs, &payload),
                None => eth
                    .ip(ip)
                    .udp(h.src.port(), h.dst.port())
                    .write(&mut theirs, &payload),
            }
            .unwrap();
            prop_assert_eq!(&buf[..n], &theirs[..]);
        }

        #[test]
        fn parse_never_panics_on_arbitrary_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let _ = UdpFrame::parse(&bytes);
        }

        #[test]
        fn parse_never_panics_on_mutated_frames(
            h in frame_headers(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
        ) {
            let mut buf = vec![0u8; MAX_HEADER_LEN + payload.len()];
            let n = build_udp_frame(&mut buf, &h, &payload).unwrap();
            buf.truncate(n);
            for (at, x) in flips {
                let i = at % n;
                buf[i] ^= x;
            }
            let cut = cut % (n + 1);
            if let Ok(f) = UdpFrame::parse(&buf[..cut]) {
                prop_assert!(f.payload_range().end <= cut);
            }
        }
    }
}
