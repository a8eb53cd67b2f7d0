//! The internet checksum (RFC 1071): one implementation for the frame
//! writer, the test-frame builder and the load generator's raw senders.
//!
//! Sums are kept unfolded in a `u64` while data is added, so a sum can be
//! carried across pieces (pseudo-header, header, payload) and folded once.

use std::net::IpAddr;

/// Adds `bytes` as big-endian 16-bit words (odd length padded with a zero
/// byte, RFC 1071) to `acc` without folding. Reads 4 bytes at a time into a
/// 64-bit accumulator, which cannot overflow for any frame size.
pub fn sum_be_words(bytes: &[u8], mut acc: u64) -> u64 {
    let mut chunks = bytes.chunks_exact(4);
    for c in &mut chunks {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    let mut words = rest.chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a sum from [`sum_be_words`] into 16 bits with end-around carry.
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum of `bytes` added to the partial sum `initial`: the value to
/// write into a header whose checksum field is zero (or zero when verifying
/// data that includes its checksum).
pub fn checksum(bytes: &[u8], initial: u64) -> u16 {
    !fold(sum_be_words(bytes, initial))
}

/// The unfolded sum of the UDP/TCP pseudo-header (RFC 768, RFC 8200 section
/// 8.1) for a segment of `len` bytes of protocol `proto` between `src` and
/// `dst` (both of one family).
pub fn pseudo_header_sum(src: IpAddr, dst: IpAddr, proto: u8, len: u32) -> u64 {
    let mut acc = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => sum_be_words(&d.octets(), sum_be_words(&s.octets(), 0)),
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                IpAddr::V6(a) => a.octets(),
            };
            sum_be_words(&v6(d), sum_be_words(&v6(s), 0))
        }
    };
    acc += u64::from(proto);
    acc += u64::from(len >> 16) + u64::from(len & 0xffff);
    acc
}

/// A UDP checksum as sent: 0 is written as 0xffff (RFC 768).
pub fn udp_wire_value(checksum: u16) -> u16 {
    if checksum == 0 {
        0xffff
    } else {
        checksum
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 1071 section 4.1 as written in C: the independent reference.
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

    proptest! {
        #[test]
        fn checksum_matches_rfc1071(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            prop_assert_eq!(checksum(&bytes, 0), rfc1071(&bytes));
        }

        #[test]
        fn sums_carry_across_pieces(bytes in proptest::collection::vec(any::<u8>(), 0..600), cut in 0usize..300) {
            // Pieces of even length add up to the sum of the whole.
            let cut = (cut.min(bytes.len())) & !1;
            let (a, b) = bytes.split_at(cut);
            prop_assert_eq!(checksum(b, sum_be_words(a, 0)), checksum(&bytes, 0));
        }
    }

    #[test]
    fn data_with_its_checksum_verifies_to_zero() {
        let mut h = [
            0x45u8, 0, 0, 0x1c, 0, 0, 0x40, 0, 0x40, 0x11, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
        ];
        let c = checksum(&h, 0);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&h, 0), 0);
    }
}
