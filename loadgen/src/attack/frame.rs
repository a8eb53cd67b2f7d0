//! Ethernet/IPv4/UDP frames built by hand, with correct IPv4 and UDP
//! checksums (RFC 791, RFC 768, RFC 1071), whole or cut into IP fragments.

use std::net::Ipv4Addr;

/// Ethernet (14) + IPv4 without options (20) + UDP (8).
pub const HEADERS: usize = 14 + 20 + 8;

/// Addresses and ports of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints {
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Source address (may be spoofed).
    pub src_ip: Ipv4Addr,
    /// Destination address.
    pub dst_ip: Ipv4Addr,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

/// RFC 1071 one's-complement sum of `data`, folded to 16 bits, starting
/// from `initial`.
pub fn ones_complement_sum(data: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The IPv4 header checksum of a 20-byte header whose checksum field is 0.
pub fn ipv4_checksum(header: &[u8]) -> u16 {
    !ones_complement_sum(header, 0)
}

/// The UDP checksum over the pseudo-header and `segment` (UDP header with
/// checksum 0, then payload). 0 is sent as 0xffff (RFC 768).
pub fn udp_checksum(src: Ipv4Addr, dst: Ipv4Addr, segment: &[u8]) -> u16 {
    let mut pseudo = [0u8; 12];
    pseudo[..4].copy_from_slice(&src.octets());
    pseudo[4..8].copy_from_slice(&dst.octets());
    pseudo[9] = 17;
    pseudo[10..12].copy_from_slice(&(segment.len() as u16).to_be_bytes());
    let partial = ones_complement_sum(&pseudo, 0);
    let c = !ones_complement_sum(segment, u32::from(partial));
    if c == 0 {
        0xffff
    } else {
        c
    }
}

fn write_eth(out: &mut [u8], e: &Endpoints) {
    out[0..6].copy_from_slice(&e.dst_mac);
    out[6..12].copy_from_slice(&e.src_mac);
    out[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
}

fn write_ipv4(out: &mut [u8], e: &Endpoints, total_len: u16, id: u16, frag_field: u16) {
    let ip = &mut out[..20];
    ip[0] = 0x45;
    ip[1] = 0;
    ip[2..4].copy_from_slice(&total_len.to_be_bytes());
    ip[4..6].copy_from_slice(&id.to_be_bytes());
    ip[6..8].copy_from_slice(&frag_field.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[10..12].copy_from_slice(&[0, 0]);
    ip[12..16].copy_from_slice(&e.src_ip.octets());
    ip[16..20].copy_from_slice(&e.dst_ip.octets());
    let c = ipv4_checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Builds the whole UDP datagram (header + payload) with its checksum.
fn udp_segment(e: &Endpoints, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut seg = vec![0u8; len];
    seg[0..2].copy_from_slice(&e.src_port.to_be_bytes());
    seg[2..4].copy_from_slice(&e.dst_port.to_be_bytes());
    seg[4..6].copy_from_slice(&(len as u16).to_be_bytes());
    seg[8..].copy_from_slice(payload);
    let c = udp_checksum(e.src_ip, e.dst_ip, &seg);
    seg[6..8].copy_from_slice(&c.to_be_bytes());
    seg
}

/// Writes one unfragmented frame into `out` and returns its length, or
/// `None` if `out` is too small or the payload does not fit an IPv4 packet.
pub fn write_udp_frame(out: &mut [u8], e: &Endpoints, ip_id: u16, payload: &[u8]) -> Option<usize> {
    let total = HEADERS + payload.len();
    if total > out.len() || 28 + payload.len() > usize::from(u16::MAX) {
        return None;
    }
    write_eth(out, e);
    // Don't Fragment set: this frame is whole.
    write_ipv4(
        &mut out[14..],
        e,
        (28 + payload.len()) as u16,
        ip_id,
        0x4000,
    );
    let udp = &mut out[34..total];
    udp[0..2].copy_from_slice(&e.src_port.to_be_bytes());
    udp[2..4].copy_from_slice(&e.dst_port.to_be_bytes());
    udp[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    udp[8..].copy_from_slice(payload);
    let c = udp_checksum(e.src_ip, e.dst_ip, udp);
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    Some(total)
}

/// Cuts a UDP datagram carrying `payload` into IPv4 fragments whose data
/// parts are at most `fragment_data` bytes (rounded down to a multiple of 8,
/// RFC 791), and returns the frames in order.
pub fn fragment_frames(
    e: &Endpoints,
    ip_id: u16,
    payload: &[u8],
    fragment_data: usize,
) -> Vec<Vec<u8>> {
    let seg = udp_segment(e, payload);
    let step = (fragment_data / 8).max(1) * 8;
    let mut frames = Vec::new();
    let mut off = 0;
    while off < seg.len() {
        let end = (off + step).min(seg.len());
        let more = end < seg.len();
        let mut f = vec![0u8; 14 + 20 + (end - off)];
        write_eth(&mut f, e);
        let field = ((off / 8) as u16) | if more { 0x2000 } else { 0 };
        write_ipv4(&mut f[14..], e, (20 + end - off) as u16, ip_id, field);
        f[34..].copy_from_slice(&seg[off..end]);
        frames.push(f);
        off = end;
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends() -> Endpoints {
        Endpoints {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: Ipv4Addr::new(198, 18, 100, 7),
            dst_ip: Ipv4Addr::new(198, 18, 0, 2),
            src_port: 40000,
            dst_port: 5060,
        }
    }

    #[test]
    fn rfc1071_example_sum() {
        // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        assert_eq!(
            ones_complement_sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7], 0),
            0xddf2
        );
    }

    #[test]
    fn checksums_verify_to_zero() {
        let mut buf = [0u8; 256];
        let n = write_udp_frame(&mut buf, &ends(), 7, b"OPTIONS sip:x SIP/2.0\r\n\r\n").unwrap();
        let f = &buf[..n];
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        // A header with its checksum in place sums to 0xffff.
        assert_eq!(ones_complement_sum(&f[14..34], 0), 0xffff);
        let e = ends();
        let mut pseudo = [0u8; 12];
        pseudo[..4].copy_from_slice(&e.src_ip.octets());
        pseudo[4..8].copy_from_slice(&e.dst_ip.octets());
        pseudo[9] = 17;
        pseudo[10..12].copy_from_slice(&((n - 34) as u16).to_be_bytes());
        let p = ones_complement_sum(&pseudo, 0);
        assert_eq!(ones_complement_sum(&f[34..], u32::from(p)), 0xffff);
    }

    #[test]
    fn fragments_cover_the_datagram_in_order() {
        let payload = vec![b'x'; 1000];
        let frames = fragment_frames(&ends(), 9, &payload, 300);
        assert_eq!(frames.len(), 4); // 1008 bytes of UDP in 296-byte pieces.
        let mut at = 0usize;
        for (i, f) in frames.iter().enumerate() {
            let field = u16::from_be_bytes([f[20], f[21]]);
            assert_eq!(usize::from(field & 0x1fff) * 8, at);
            assert_eq!(field & 0x2000 != 0, i + 1 < frames.len());
            assert_eq!(ones_complement_sum(&f[14..34], 0), 0xffff);
            at += f.len() - 34;
        }
        assert_eq!(at, 1008);
    }

    #[test]
    fn oversized_payload_is_refused() {
        let mut buf = [0u8; 64];
        assert_eq!(write_udp_frame(&mut buf, &ends(), 1, &[0u8; 100]), None);
    }
}
