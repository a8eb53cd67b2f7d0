//! Byte search for the parser's hot path: the first occurrence of a byte in
//! a slice, sixteen bytes per step. On x86_64 this is SSE2 (part of every
//! x86_64 CPU) through `safe_arch`, so there is no `unsafe` here; elsewhere a
//! plain loop. Header lines are short (most values hold 10 to 90 bytes), so
//! a search must cost little to start: no dispatch, no alignment prologue
//! (memchr's generic entry costs more than the search on such lines).

/// The index (in `buf`) of the first `byte` at or after `from`.
#[inline(always)]
pub(crate) fn find_byte(buf: &[u8], from: usize, byte: u8) -> Option<usize> {
    imp::find_byte(buf, from, byte)
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod imp {
    use safe_arch::{
        cmp_eq_mask_i8_m128i, load_unaligned_m128i, m128i, move_mask_i8_m128i, set_splat_i8_m128i,
    };

    /// One bit per byte of `v` that equals `byte`, lowest bit first.
    #[inline(always)]
    fn mask(v: m128i, byte: u8) -> u32 {
        move_mask_i8_m128i(cmp_eq_mask_i8_m128i(v, set_splat_i8_m128i(byte as i8))) as u32
    }

    #[inline(always)]
    fn load(buf: &[u8], at: usize) -> Option<m128i> {
        let bytes: &[u8; 16] = buf.get(at..at.checked_add(16)?)?.try_into().ok()?;
        Some(load_unaligned_m128i(bytes))
    }

    #[inline(always)]
    pub(super) fn find_byte(buf: &[u8], from: usize, byte: u8) -> Option<usize> {
        let mut at = from;
        while let Some(v) = load(buf, at) {
            let m = mask(v, byte);
            if m != 0 {
                return Some(at + m.trailing_zeros() as usize);
            }
            at += 16;
        }
        // Fewer than sixteen bytes are left: look at the last sixteen of
        // the buffer (or a padded copy of a shorter one) and drop the bits
        // of the bytes already seen.
        let len = buf.len();
        if at >= len {
            return None;
        }
        let m = match load(buf, len.wrapping_sub(16)) {
            Some(v) => mask(v, byte) >> (at + 16 - len),
            None => {
                // The padding must not match: fill it with another byte.
                let mut padded = [!byte; 16];
                padded[..len - at].copy_from_slice(&buf[at..]);
                mask(load_unaligned_m128i(&padded), byte)
            }
        };
        (m != 0).then(|| at + m.trailing_zeros() as usize)
    }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
mod imp {
    #[inline(always)]
    pub(super) fn find_byte(buf: &[u8], from: usize, byte: u8) -> Option<usize> {
        memchr::memchr(byte, buf.get(from..)?).map(|i| from + i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: one byte at a time.
    fn naive(buf: &[u8], from: usize, byte: u8) -> Option<usize> {
        (from..buf.len()).find(|&i| buf[i] == byte)
    }

    #[test]
    fn finds_match_the_byte_loop_at_every_length_and_start() {
        let mut buf = Vec::new();
        for len in 0..70 {
            for hit in 0..=len {
                buf.clear();
                buf.extend((0..len).map(|i| b'a' + (i % 20) as u8));
                if hit < len {
                    buf[hit] = [b'\n', b':', 0x00, 0xff][hit % 4];
                }
                for from in 0..=len + 1 {
                    for byte in [b'\n', b':', 0x00, 0xff, b'a'] {
                        assert_eq!(
                            find_byte(&buf, from, byte),
                            naive(&buf, from, byte),
                            "len {len} hit {hit} from {from} byte {byte:#x}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn every_byte_value_is_found_and_padding_never_matches() {
        for b in 0..=255u8 {
            assert_eq!(find_byte(&[b], 0, b), Some(0), "{b:#x}");
            assert_eq!(find_byte(b"xy", 0, b), naive(b"xy", 0, b));
            let mut long = [b'x'; 40];
            long[33] = b;
            assert_eq!(find_byte(&long, 0, b), naive(&long, 0, b), "{b:#x}");
        }
    }

    #[test]
    fn a_start_past_the_end_finds_nothing() {
        assert_eq!(find_byte(b"abc", 3, b'a'), None);
        assert_eq!(find_byte(b"abc", 9, b'a'), None);
        assert_eq!(find_byte(&[b'\n'; 40], usize::MAX, b'\n'), None);
    }
}
