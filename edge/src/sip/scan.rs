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

/// Whether a quoted string must look at `b` (RFC 3261 `qdtext` takes every
/// other byte as it is): the closing quote, a backslash, a control byte
/// (tab and CR included) or DEL.
#[cfg_attr(
    all(target_arch = "x86_64", target_feature = "sse2", not(test)),
    allow(dead_code)
)]
#[inline(always)]
pub(crate) fn is_quoted_stop(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20 || b == 0x7f
}

/// The index of the first byte at or after `from` for which
/// [`is_quoted_stop`] holds.
#[inline(always)]
pub(crate) fn find_quoted_stop(buf: &[u8], from: usize) -> Option<usize> {
    imp::find_quoted_stop(buf, from)
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod imp {
    use safe_arch::{
        bitor_m128i, cmp_eq_mask_i8_m128i, load_unaligned_m128i, m128i, min_u8_m128i,
        move_mask_i8_m128i, set_splat_i8_m128i,
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
        find_by(buf, from, |v| mask(v, byte), !byte)
    }

    /// One bit per byte that [`super::is_quoted_stop`] takes.
    #[inline(always)]
    fn quoted_stop_mask(v: m128i) -> u32 {
        let eq = |b: u8| cmp_eq_mask_i8_m128i(v, set_splat_i8_m128i(b as i8));
        // v <= 0x1f (unsigned) exactly when min(v, 0x1f) == v.
        let control = cmp_eq_mask_i8_m128i(min_u8_m128i(v, set_splat_i8_m128i(0x1f)), v);
        let any = bitor_m128i(
            bitor_m128i(eq(b'"'), eq(b'\\')),
            bitor_m128i(eq(0x7f), control),
        );
        move_mask_i8_m128i(any) as u32
    }

    #[inline(always)]
    pub(super) fn find_quoted_stop(buf: &[u8], from: usize) -> Option<usize> {
        find_by(buf, from, quoted_stop_mask, b'a')
    }

    /// The first byte at or after `from` whose bit `mask` sets; `pad` is a
    /// byte whose bit `mask` never sets.
    #[inline(always)]
    fn find_by(buf: &[u8], from: usize, mask: impl Fn(m128i) -> u32, pad: u8) -> Option<usize> {
        let mut at = from;
        while let Some(v) = load(buf, at) {
            let m = mask(v);
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
            Some(v) => mask(v) >> (at + 16 - len),
            None => {
                // The padding must not match: fill it with another byte.
                let mut padded = [pad; 16];
                padded[..len - at].copy_from_slice(&buf[at..]);
                mask(load_unaligned_m128i(&padded))
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

    #[inline(always)]
    pub(super) fn find_quoted_stop(buf: &[u8], from: usize) -> Option<usize> {
        let rest = buf.get(from..)?;
        rest.iter()
            .position(|&b| super::is_quoted_stop(b))
            .map(|i| from + i)
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
    fn quoted_stops_match_the_byte_loop() {
        let naive = |buf: &[u8], from: usize| (from..buf.len()).find(|&i| is_quoted_stop(buf[i]));
        let mut buf = Vec::new();
        for len in 0..40 {
            for hit in 0..=len {
                for special in 0..=255u8 {
                    buf.clear();
                    buf.extend((0..len).map(|i| [b'a', b' ', 0x80, 0xff, b'~'][i % 5]));
                    if hit < len {
                        buf[hit] = special;
                    }
                    for from in [0, 1, hit.saturating_sub(1), hit, len] {
                        assert_eq!(
                            find_quoted_stop(&buf, from),
                            naive(&buf, from),
                            "len {len} hit {hit} from {from} byte {special:#x}"
                        );
                    }
                }
            }
        }
        assert_eq!(find_quoted_stop(b"abc", 9), None);
    }

    #[test]
    fn a_start_past_the_end_finds_nothing() {
        assert_eq!(find_byte(b"abc", 3, b'a'), None);
        assert_eq!(find_byte(b"abc", 9, b'a'), None);
        assert_eq!(find_byte(&[b'\n'; 40], usize::MAX, b'\n'), None);
    }
}
