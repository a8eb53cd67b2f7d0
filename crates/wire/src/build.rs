//! Building Ethernet frames that carry UDP (optionally VLAN-tagged, with
//! IPv4 options, IPv6 extension headers, or as a first fragment), for the
//! filter's tests and the flood senders of the benchmarks. Checksums are
//! real, so the kernel accepts what passes.

use std::net::IpAddr;

use crate::checksum::{checksum, sum_be_words};

/// 802.1Q tag protocol identifier.
pub const TPID_8021Q: u16 = 0x8100;
/// 802.1ad (QinQ outer) tag protocol identifier.
pub const TPID_8021AD: u16 = 0x88a8;

/// An IPv6 extension header to put before the UDP header.
#[derive(Debug, Clone)]
pub struct Ipv6Ext {
    /// Its protocol number (0 hop-by-hop, 43 routing, 60 destination options, 51 AH).
    pub kind: u8,
    /// Length in 8-byte units beyond the first 8 (the header's own length field).
    pub len_units: u8,
}

/// A UDP datagram in an Ethernet frame.
#[derive(Debug, Clone)]
pub struct UdpFrameBuilder {
    /// Source address (sets the IP version; `dst` must match).
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// UDP payload.
    pub payload: Vec<u8>,
    /// VLAN tags, outermost first: (TPID, VLAN id).
    pub vlan_tags: Vec<(u16, u16)>,
    /// IPv4 option bytes (padded to a multiple of 4 by the builder).
    pub ipv4_options: Vec<u8>,
    /// IPv6 extension headers, in order.
    pub ipv6_ext: Vec<Ipv6Ext>,
    /// Make it the first fragment of a larger datagram (MF set, offset 0).
    pub first_fragment: bool,
    /// Make it a later fragment at this offset (in 8-byte units); no UDP header.
    pub later_fragment: Option<u16>,
    /// Destination and source MAC.
    pub macs: ([u8; 6], [u8; 6]),
}

impl UdpFrameBuilder {
    /// A plain frame: no tags, no options.
    pub fn new(
        src: IpAddr,
        dst: IpAddr,
        sport: u16,
        dport: u16,
        payload: &[u8],
    ) -> UdpFrameBuilder {
        UdpFrameBuilder {
            src,
            dst,
            sport,
            dport,
            payload: payload.to_vec(),
            vlan_tags: Vec::new(),
            ipv4_options: Vec::new(),
            ipv6_ext: Vec::new(),
            first_fragment: false,
            later_fragment: None,
            macs: ([0x02, 0, 0, 0, 0, 2], [0x02, 0, 0, 0, 0, 1]),
        }
    }

    /// The frame's bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut f = Vec::with_capacity(64 + self.payload.len());
        f.extend_from_slice(&self.macs.0);
        f.extend_from_slice(&self.macs.1);
        for (tpid, vid) in &self.vlan_tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&vid.to_be_bytes());
        }
        let udp = self.udp_segment();
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f.extend_from_slice(&0x0800u16.to_be_bytes());
                let mut opts = self.ipv4_options.clone();
                while !opts.len().is_multiple_of(4) {
                    opts.push(0); // end of options list
                }
                let ihl = 5 + opts.len() / 4;
                let body: &[u8] = if self.later_fragment.is_some() {
                    &self.payload
                } else {
                    &udp
                };
                let total = ihl * 4 + body.len();
                let mut h = vec![0u8; 20];
                h[0] = 0x40 | ihl as u8;
                h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
                h[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
                let frag: u16 = match (self.first_fragment, self.later_fragment) {
                    (_, Some(off)) => off & 0x1fff,
                    (true, None) => 0x2000,
                    (false, None) => 0x4000, // don't fragment
                };
                h[6..8].copy_from_slice(&frag.to_be_bytes());
                h[8] = 64;
                h[9] = 17;
                h[12..16].copy_from_slice(&s.octets());
                h[16..20].copy_from_slice(&d.octets());
                h.extend_from_slice(&opts);
                let sum = checksum(&h, 0);
                h[10..12].copy_from_slice(&sum.to_be_bytes());
                f.extend_from_slice(&h);
                f.extend_from_slice(body);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                f.extend_from_slice(&0x86ddu16.to_be_bytes());
                let mut ext = Vec::new();
                let mut kinds: Vec<u8> = self.ipv6_ext.iter().map(|e| e.kind).collect();
                let fragmented = self.first_fragment || self.later_fragment.is_some();
                if fragmented {
                    kinds.push(44);
                }
                kinds.push(17);
                for (i, e) in self.ipv6_ext.iter().enumerate() {
                    let next = kinds[i + 1];
                    let len = if e.kind == 51 {
                        // AH: length in 4-octet units minus 2
                        (e.len_units as usize + 1) * 8
                    } else {
                        (e.len_units as usize + 1) * 8
                    };
                    let mut h = vec![0u8; len];
                    h[0] = next;
                    h[1] = if e.kind == 51 {
                        (len / 4 - 2) as u8
                    } else {
                        e.len_units
                    };
                    if len > 2 {
                        // PadN option filling the rest (RFC 8200 section 4.2).
                        h[2] = 1;
                        h[3] = (len - 4) as u8;
                    }
                    ext.extend_from_slice(&h);
                }
                if fragmented {
                    let off = self.later_fragment.unwrap_or(0);
                    let field = (off << 3) | u16::from(self.first_fragment);
                    ext.extend_from_slice(&[17, 0]);
                    ext.extend_from_slice(&field.to_be_bytes());
                    ext.extend_from_slice(&0x1234_5678u32.to_be_bytes());
                }
                let body: &[u8] = if self.later_fragment.is_some() {
                    &self.payload
                } else {
                    &udp
                };
                let plen = ext.len() + body.len();
                let mut h = vec![0u8; 40];
                h[0] = 0x60;
                h[4..6].copy_from_slice(&(plen as u16).to_be_bytes());
                h[6] = kinds[0];
                h[7] = 64;
                h[8..24].copy_from_slice(&s.octets());
                h[24..40].copy_from_slice(&d.octets());
                f.extend_from_slice(&h);
                f.extend_from_slice(&ext);
                f.extend_from_slice(body);
            }
            _ => panic!("source and destination must be the same IP version"),
        }
        f
    }

    /// The UDP header and payload with a real checksum.
    fn udp_segment(&self) -> Vec<u8> {
        let len = 8 + self.payload.len();
        let mut u = Vec::with_capacity(len);
        u.extend_from_slice(&self.sport.to_be_bytes());
        u.extend_from_slice(&self.dport.to_be_bytes());
        u.extend_from_slice(&(len as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(&self.payload);
        // RFC 768 / RFC 8200 section 8.1: the pseudo-header covers the addresses.
        let mut pseudo = Vec::new();
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                pseudo.extend_from_slice(&s.octets());
                pseudo.extend_from_slice(&d.octets());
                pseudo.extend_from_slice(&[0, 17]);
                pseudo.extend_from_slice(&(len as u16).to_be_bytes());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                pseudo.extend_from_slice(&s.octets());
                pseudo.extend_from_slice(&d.octets());
                pseudo.extend_from_slice(&(len as u32).to_be_bytes());
                pseudo.extend_from_slice(&[0, 0, 0, 17]);
            }
            _ => {}
        }
        let mut sum = checksum(&u, sum_be_words(&pseudo, 0));
        if sum == 0 {
            sum = 0xffff;
        }
        u[6..8].copy_from_slice(&sum.to_be_bytes());
        u
    }
}

/// A SIP request as scanners and floods send it: request line, the usual
/// headers, the given User-Agent and From display name.
pub fn sip_request(method: &str, user_agent: &str, from_name: &str) -> Vec<u8> {
    format!(
        "{method} sip:100@198.18.0.2 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 198.18.0.1:5060;branch=z9hG4bK-1234;rport\r\n\
         Max-Forwards: 70\r\n\
         To: <sip:100@198.18.0.2>\r\n\
         From: \"{from_name}\" <sip:200@198.18.0.1>;tag=abcd\r\n\
         Call-ID: 1234567890@198.18.0.1\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:200@198.18.0.1:5060>\r\n\
         User-Agent: {user_agent}\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_checksum_verifies() {
        let f = UdpFrameBuilder::new(
            "198.18.0.1".parse().unwrap(),
            "198.18.0.2".parse().unwrap(),
            1,
            5060,
            b"x",
        )
        .build();
        assert_eq!(checksum(&f[14..34], 0), 0);
    }

    #[test]
    fn udp_checksum_verifies_over_the_pseudo_header() {
        let fr = UdpFrameBuilder::new(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
            1,
            5060,
            b"hello",
        );
        let f = fr.build();
        let udp = &f[54..];
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&f[22..54]);
        pseudo.extend_from_slice(&(udp.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 17]);
        assert_eq!(checksum(udp, sum_be_words(&pseudo, 0)), 0);
    }
}
