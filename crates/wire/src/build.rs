//! Building Ethernet frames that carry UDP (optionally VLAN-tagged, with
//! IPv4 options, IPv6 extension headers, as a first or later fragment, or
//! cut into IPv4 fragments), for the filter's tests, the flood senders of
//! the benchmarks and the load generator's raw attacks. Checksums are real,
//! so the kernel accepts what passes. Not for the hot path: frames that
//! leave a worker are written in place by [`crate::frame::write_udp_frame`].

use std::net::IpAddr;

use crate::checksum::{checksum, pseudo_header_sum, udp_wire_value};

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
    /// The IPv4 Identification field (a flood numbers its frames with it;
    /// fragments of one datagram share it, RFC 791).
    pub ip_id: u16,
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
            ip_id: 0x1234,
        }
    }

    /// The Ethernet header and VLAN tags, up to and with `ethertype`.
    fn ethernet(&self, ethertype: u16, capacity: usize) -> Vec<u8> {
        let mut f = Vec::with_capacity(18 + 4 * self.vlan_tags.len() + capacity);
        f.extend_from_slice(&self.macs.0);
        f.extend_from_slice(&self.macs.1);
        for (tpid, vid) in &self.vlan_tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&vid.to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f
    }

    /// Appends an IPv4 header (with the options, padded to a multiple of 4,
    /// and its checksum) for `body_len` bytes of UDP with fragment field
    /// `frag` (flags and offset) to `f`.
    fn push_ipv4_header(&self, f: &mut Vec<u8>, body_len: usize, frag: u16) {
        let (IpAddr::V4(s), IpAddr::V4(d)) = (self.src, self.dst) else {
            panic!("an IPv4 header needs IPv4 source and destination");
        };
        let mut opts = self.ipv4_options.clone();
        while !opts.len().is_multiple_of(4) {
            opts.push(0); // end of options list
        }
        let ihl = 5 + opts.len() / 4;
        let total = ihl * 4 + body_len;
        let mut h = vec![0u8; 20];
        h[0] = 0x40 | ihl as u8;
        h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        h[4..6].copy_from_slice(&self.ip_id.to_be_bytes());
        h[6..8].copy_from_slice(&frag.to_be_bytes());
        h[8] = 64;
        h[9] = 17;
        h[12..16].copy_from_slice(&s.octets());
        h[16..20].copy_from_slice(&d.octets());
        h.extend_from_slice(&opts);
        let sum = checksum(&h, 0);
        h[10..12].copy_from_slice(&sum.to_be_bytes());
        f.extend_from_slice(&h);
    }

    /// The UDP datagram cut into IPv4 fragments whose data parts are at
    /// most `fragment_data` bytes (rounded down to a multiple of 8, at
    /// least 8: RFC 791), in order; the last has More Fragments clear.
    /// Panics for IPv6 addresses.
    pub fn ipv4_fragments(&self, fragment_data: usize) -> Vec<Vec<u8>> {
        let udp = self.udp_segment();
        let step = (fragment_data / 8).max(1) * 8;
        udp.chunks(step)
            .enumerate()
            .map(|(i, piece)| {
                let off = i * step;
                let more = off + piece.len() < udp.len();
                let frag = ((off / 8) as u16) | if more { 0x2000 } else { 0 };
                let mut f = self.ethernet(0x0800, 60 + piece.len());
                self.push_ipv4_header(&mut f, piece.len(), frag);
                f.extend_from_slice(piece);
                f
            })
            .collect()
    }

    /// The frame's bytes.
    pub fn build(&self) -> Vec<u8> {
        let udp = self.udp_segment();
        match (self.src, self.dst) {
            (IpAddr::V4(_), IpAddr::V4(_)) => {
                let body: &[u8] = if self.later_fragment.is_some() {
                    &self.payload
                } else {
                    &udp
                };
                let frag: u16 = match (self.first_fragment, self.later_fragment) {
                    (_, Some(off)) => off & 0x1fff,
                    (true, None) => 0x2000,
                    (false, None) => 0x4000, // don't fragment
                };
                let mut f = self.ethernet(0x0800, 60 + body.len());
                self.push_ipv4_header(&mut f, body.len(), frag);
                f.extend_from_slice(body);
                f
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut f = self.ethernet(0x86dd, 40 + 8 * self.ipv6_ext.len() + udp.len());
                let mut ext = Vec::new();
                let mut kinds: Vec<u8> = self.ipv6_ext.iter().map(|e| e.kind).collect();
                let fragmented = self.first_fragment || self.later_fragment.is_some();
                if fragmented {
                    kinds.push(44);
                }
                kinds.push(17);
                for (i, e) in self.ipv6_ext.iter().enumerate() {
                    let next = kinds[i + 1];
                    let len = (e.len_units as usize + 1) * 8;
                    let mut h = vec![0u8; len];
                    h[0] = next;
                    h[1] = if e.kind == 51 {
                        // AH: length in 4-octet units minus 2 (RFC 4302).
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
                f
            }
            _ => panic!("source and destination must be the same IP version"),
        }
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
        let pseudo = pseudo_header_sum(self.src, self.dst, 17, len as u32);
        let sum = udp_wire_value(checksum(&u, pseudo));
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
    //! The frames are read back with etherparse, an independent parser, and
    //! their checksums recomputed with it: a mistake shared by the builder
    //! and `crate::checksum` cannot hide here.

    use super::*;
    use etherparse::{
        IpNumber, Ipv4HeaderSlice, Ipv6ExtensionsSlice, Ipv6HeaderSlice, LinkExtSlice,
        PacketBuilder, SlicedPacket, UdpHeader,
    };

    fn v4(payload: &[u8]) -> UdpFrameBuilder {
        UdpFrameBuilder::new(
            "198.18.0.1".parse().unwrap(),
            "198.18.0.2".parse().unwrap(),
            40000,
            5060,
            payload,
        )
    }

    fn v6(payload: &[u8]) -> UdpFrameBuilder {
        UdpFrameBuilder::new(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
            40000,
            5060,
            payload,
        )
    }

    /// What etherparse reads in a frame: the VLAN ids, then the IP layer.
    fn vlan_ids(frame: &[u8]) -> Vec<u16> {
        let p = SlicedPacket::from_ethernet(frame).expect("etherparse reads the frame");
        p.link_exts
            .iter()
            .map(|e| match e {
                LinkExtSlice::Vlan(v) => v.vlan_identifier().value(),
                other => panic!("not a VLAN tag: {other:?}"),
            })
            .collect()
    }

    /// Where the IP header starts: after 14 bytes of Ethernet and 4 per tag.
    fn ip_start(f: &UdpFrameBuilder) -> usize {
        14 + 4 * f.vlan_tags.len()
    }

    /// Checks an IPv4 frame with etherparse (header checksum, and the UDP
    /// checksum unless it is a later fragment); returns the IPv4 header.
    fn check_ipv4(f: &UdpFrameBuilder, frame: &[u8]) -> etherparse::Ipv4Header {
        let ip = Ipv4HeaderSlice::from_slice(&frame[ip_start(f)..]).expect("an IPv4 header");
        let h = ip.to_header();
        assert_eq!(h.calc_header_checksum(), ip.header_checksum());
        assert_eq!(usize::from(h.total_len), frame.len() - ip_start(f));
        if h.fragment_offset.value() == 0 {
            let body = &frame[ip_start(f) + h.header_len()..];
            let (udp, payload) = UdpHeader::from_slice(body).expect("a UDP header");
            assert_eq!(payload, &f.payload[..]);
            assert_eq!(udp.calc_checksum_ipv4(&h, payload).unwrap(), udp.checksum);
        }
        h
    }

    /// Checks an IPv6 frame with etherparse; returns the extension header
    /// protocol numbers in order, the payload after them, and whether a
    /// fragment header fragments it.
    fn check_ipv6(f: &UdpFrameBuilder, frame: &[u8]) -> (Vec<u8>, Vec<u8>, bool) {
        let ip = Ipv6HeaderSlice::from_slice(&frame[ip_start(f)..]).expect("an IPv6 header");
        let h = ip.to_header();
        let rest = &frame[ip_start(f) + 40..];
        assert_eq!(usize::from(h.payload_length), rest.len());
        let (exts, last, payload) =
            Ipv6ExtensionsSlice::from_slice(h.next_header, rest).expect("an extension chain");
        assert_eq!(last, IpNumber::UDP);
        let kinds = exts
            .clone()
            .into_iter()
            .map(|e| match e {
                etherparse::Ipv6ExtensionSlice::HopByHop(_) => 0,
                etherparse::Ipv6ExtensionSlice::Routing(_) => 43,
                etherparse::Ipv6ExtensionSlice::Fragment(_) => 44,
                etherparse::Ipv6ExtensionSlice::DestinationOptions(_) => 60,
                etherparse::Ipv6ExtensionSlice::Authentication(_) => 51,
            })
            .collect();
        if f.later_fragment.is_none() {
            let (udp, data) = UdpHeader::from_slice(payload).expect("a UDP header");
            assert_eq!(data, &f.payload[..]);
            assert_eq!(udp.calc_checksum_ipv6(&h, data).unwrap(), udp.checksum);
        }
        (kinds, payload.to_vec(), exts.is_fragmenting_payload())
    }

    #[test]
    fn ipv4_header_checksum_verifies() {
        let f = v4(b"x").build();
        assert_eq!(checksum(&f[14..34], 0), 0);
    }

    #[test]
    fn udp_checksum_verifies_over_the_pseudo_header() {
        for f in [v4(b"hello"), v6(b"hello"), v6(b"odd")] {
            let frame = f.build();
            if f.src.is_ipv4() {
                check_ipv4(&f, &frame);
            } else {
                check_ipv6(&f, &frame);
            }
        }
    }

    #[test]
    fn a_plain_frame_is_what_etherparse_builds() {
        let mut f = v4(b"OPTIONS sip:x SIP/2.0\r\n\r\n");
        f.ip_id = 7;
        let mut theirs = Vec::new();
        let mut ip = etherparse::Ipv4Header::new(
            (8 + f.payload.len()) as u16,
            64,
            IpNumber::UDP,
            [198, 18, 0, 1],
            [198, 18, 0, 2],
        )
        .unwrap();
        ip.identification = 7;
        PacketBuilder::ethernet2(f.macs.1, f.macs.0)
            .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
            .udp(40000, 5060)
            .write(&mut theirs, &f.payload)
            .unwrap();
        assert_eq!(f.build(), theirs);

        let f = v6(b"hello");
        let mut theirs = Vec::new();
        PacketBuilder::ethernet2(f.macs.1, f.macs.0)
            .ipv6(
                "2001:db8::1"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
                "2001:db8::2"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
                64,
            )
            .udp(40000, 5060)
            .write(&mut theirs, &f.payload)
            .unwrap();
        assert_eq!(f.build(), theirs);
    }

    #[test]
    fn vlan_tags_are_read_back_outermost_first() {
        for tags in [
            vec![(TPID_8021Q, 100)],
            vec![(TPID_8021AD, 10), (TPID_8021Q, 100)],
            vec![(TPID_8021AD, 10), (TPID_8021Q, 100), (TPID_8021Q, 7)],
        ] {
            let mut f = v4(b"x");
            f.vlan_tags = tags.clone();
            let frame = f.build();
            let ids: Vec<u16> = tags.iter().map(|t| t.1).collect();
            assert_eq!(vlan_ids(&frame), ids);
            check_ipv4(&f, &frame);
        }
    }

    #[test]
    fn ipv4_options_are_padded_and_covered_by_the_header_checksum() {
        for options in [vec![1u8; 40], vec![1u8; 3]] {
            let mut f = v4(b"x");
            f.ipv4_options = options.clone();
            let frame = f.build();
            let h = check_ipv4(&f, &frame);
            let padded = options.len().div_ceil(4) * 4;
            assert_eq!(h.options.as_slice().len(), padded);
            assert_eq!(&h.options.as_slice()[..options.len()], &options[..]);
        }
    }

    #[test]
    fn ipv6_extension_chains_are_walked_by_another_parser() {
        let ext = |kind, len_units| Ipv6Ext { kind, len_units };
        let mut f = v6(b"hello");
        f.ipv6_ext = vec![ext(0, 0), ext(43, 2), ext(60, 1), ext(51, 1)];
        let (kinds, _, _) = check_ipv6(&f, &f.build());
        assert_eq!(kinds, [0, 43, 60, 51]);
        // A chain longer than any walk of ours is still well formed.
        f.ipv6_ext = vec![ext(60, 0); 9];
        let (kinds, _, _) = check_ipv6(&f, &f.build());
        assert_eq!(kinds, [60; 9]);
    }

    #[test]
    fn first_fragments_carry_the_whole_datagram_with_more_fragments_set() {
        let mut f = v4(b"INVITE");
        f.first_fragment = true;
        let h = check_ipv4(&f, &f.build());
        assert!(h.more_fragments && !h.dont_fragment);
        assert_eq!(h.fragment_offset.value(), 0);

        let mut f = v6(b"INVITE");
        f.first_fragment = true;
        let (kinds, _, fragmenting) = check_ipv6(&f, &f.build());
        assert_eq!(kinds, [44]);
        assert!(fragmenting);
    }

    #[test]
    fn later_fragments_carry_the_bytes_at_their_offset_and_no_udp_header() {
        let mut f = v4(b"12345678");
        f.later_fragment = Some(185);
        let frame = f.build();
        let h = check_ipv4(&f, &frame);
        assert_eq!(h.fragment_offset.value(), 185);
        assert_eq!(&frame[34..], b"12345678");

        let mut f = v6(b"12345678");
        f.later_fragment = Some(185);
        let (kinds, payload, fragmenting) = check_ipv6(&f, &f.build());
        assert_eq!(kinds, [44]);
        assert!(fragmenting);
        assert_eq!(payload, b"12345678");
    }

    #[test]
    fn ipv4_fragments_cover_the_datagram_in_order() {
        let payload = vec![b'x'; 1000];
        let mut f = v4(&payload);
        f.ip_id = 9;
        let frames = f.ipv4_fragments(300);
        assert_eq!(frames.len(), 4); // 1008 bytes of UDP in 296-byte pieces.
        let mut datagram = Vec::new();
        for (i, frame) in frames.iter().enumerate() {
            let ip = Ipv4HeaderSlice::from_slice(&frame[14..]).unwrap();
            let h = ip.to_header();
            assert_eq!(h.calc_header_checksum(), ip.header_checksum());
            assert_eq!(h.identification, 9);
            assert_eq!(usize::from(h.fragment_offset.value()) * 8, datagram.len());
            assert_eq!(h.more_fragments, i + 1 < frames.len());
            assert!(!h.dont_fragment);
            datagram.extend_from_slice(&frame[34..]);
        }
        // Put back together, the pieces are the datagram, checksum and all.
        let (udp, data) = UdpHeader::from_slice(&datagram).unwrap();
        assert_eq!(data, &payload[..]);
        let whole = Ipv4HeaderSlice::from_slice(&f.build()[14..])
            .unwrap()
            .to_header();
        assert_eq!(udp.calc_checksum_ipv4(&whole, data).unwrap(), udp.checksum);
    }

    #[test]
    fn fragments_are_at_least_eight_bytes_of_data() {
        let frames = v4(&[7u8; 20]).ipv4_fragments(3);
        assert_eq!(frames.len(), 4); // 28 bytes in 8-byte pieces.
        assert!(frames[..3].iter().all(|f| f.len() == 14 + 20 + 8));
    }
}
