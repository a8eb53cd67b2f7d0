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

/// The index (in `buf`) of the first space or tab at or after `from`.
#[inline(always)]
pub(crate) fn find_space_or_tab(buf: &[u8], from: usize) -> Option<usize> {
    imp::find_space_or_tab(buf, from)
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

/// Compares the sixteen bytes at `at` with a lower-case name: `fold.0` is
/// the name padded with zeros, `fold.1` has 0x20 at its letters. Returns one
/// bit per byte that equals the name's byte once OR-ed with `fold.1`, or
/// `None` when fewer than sixteen bytes are left (or without SSE2).
#[inline(always)]
pub(crate) fn folded_eq16(buf: &[u8], at: usize, fold: &([u8; 16], [u8; 16])) -> Option<u32> {
    imp::folded_eq16(buf, at, fold)
}

/// Whether `b` is an ASCII letter or digit, `-` or `.`: the bytes most
/// tokens, host names and parameter values are made of (all of them are in
/// the grammar's TOKEN, HOST and GEN_VALUE classes).
#[cfg_attr(
    all(target_arch = "x86_64", target_feature = "sse2", not(test)),
    allow(dead_code)
)]
#[inline(always)]
pub(crate) fn is_alnum_dash_dot(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.'
}

/// Skips a run of [`is_alnum_dash_dot`] bytes from `from`, sixteen at a
/// time while sixteen bytes are left: returns an index `i >= from` such
/// that every byte of `buf[from..i]` is one. It may stop early (near the
/// end of `buf`, or without SSE2 it does not move): callers go on byte by
/// byte from there with their own class, which must hold for every such
/// byte.
#[inline(always)]
pub(crate) fn skip_alnum_dash_dot(buf: &[u8], from: usize) -> usize {
    imp::skip_alnum_dash_dot(buf, from)
}

/// The colons and the line feeds among the 32 bytes at `at`, one bit per
/// byte each (lowest bit first), or `None` when fewer than 32 bytes are left
/// (or without SSE2). A header line's name, its colon and, for a short line,
/// its end are all found from this one look.
#[inline(always)]
pub(crate) fn colons_and_lfs(buf: &[u8], at: usize) -> Option<(u64, u64)> {
    imp::colons_and_lfs(buf, at)
}

/// The line feeds among the 32 bytes at `at`, one bit per byte (lowest bit
/// first), or `None` when fewer than 32 bytes are left (or without SSE2):
/// the next look along a header line longer than the first 32 bytes.
#[inline(always)]
pub(crate) fn lfs32(buf: &[u8], at: usize) -> Option<u64> {
    imp::lfs32(buf, at)
}

/// Whether `b` is a visual separator of a telephone number that the
/// dialed number drops (`+ - . ( )` and space).
#[cfg_attr(
    all(target_arch = "x86_64", target_feature = "sse2", not(test)),
    allow(dead_code)
)]
#[inline(always)]
pub(crate) fn is_dial_separator(b: u8) -> bool {
    matches!(b, b'+' | b'-' | b'.' | b'(' | b')' | b' ')
}

/// The ASCII digits and the [`is_dial_separator`] bytes among the sixteen
/// bytes at `at`, one bit per byte each (lowest bit first), or `None` when
/// fewer than sixteen bytes are left (or without SSE2).
#[inline(always)]
pub(crate) fn digits_and_dial_separators(buf: &[u8], at: usize) -> Option<(u32, u32)> {
    imp::digits_and_dial_separators(buf, at)
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod imp {
    use safe_arch::{
        bitor_m128i, cmp_eq_mask_i8_m128i, load_unaligned_m128i, m128i, min_u8_m128i,
        move_mask_i8_m128i, set_splat_i8_m128i, sub_i8_m128i,
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

    /// One bit per byte of `v` in `lo..=hi` (unsigned): `v - lo` is at
    /// most `hi - lo` exactly when `min(v - lo, hi - lo) == v - lo`.
    #[inline(always)]
    fn in_range(v: m128i, lo: u8, hi: u8) -> m128i {
        let d = sub_i8_m128i(v, set_splat_i8_m128i(lo as i8));
        cmp_eq_mask_i8_m128i(min_u8_m128i(d, set_splat_i8_m128i((hi - lo) as i8)), d)
    }

    #[inline(always)]
    pub(super) fn skip_alnum_dash_dot(buf: &[u8], from: usize) -> usize {
        let mut at = from;
        while let Some(v) = load(buf, at) {
            // Letters of either case once OR-ed with 0x20 (only 'A'..='Z'
            // and 'a'..='z' land in 'a'..='z'), digits, '-' and '.'.
            let letter = in_range(bitor_m128i(v, set_splat_i8_m128i(0x20)), b'a', b'z');
            let digit = in_range(v, b'0', b'9');
            let dash_dot = in_range(v, b'-', b'.');
            let m = move_mask_i8_m128i(bitor_m128i(letter, bitor_m128i(digit, dash_dot))) as u32;
            if m != 0xffff {
                return at + (!m).trailing_zeros() as usize;
            }
            at += 16;
        }
        at
    }

    #[inline(always)]
    pub(super) fn digits_and_dial_separators(buf: &[u8], at: usize) -> Option<(u32, u32)> {
        let v = load(buf, at)?;
        let eq = |b: u8| cmp_eq_mask_i8_m128i(v, set_splat_i8_m128i(b as i8));
        let digits = move_mask_i8_m128i(in_range(v, b'0', b'9')) as u32;
        let separators = bitor_m128i(
            bitor_m128i(
                bitor_m128i(eq(b'+'), eq(b'-')),
                bitor_m128i(eq(b'.'), eq(b' ')),
            ),
            bitor_m128i(eq(b'('), eq(b')')),
        );
        Some((digits, move_mask_i8_m128i(separators) as u32))
    }

    #[inline(always)]
    pub(super) fn lfs32(buf: &[u8], at: usize) -> Option<u64> {
        let bytes: &[u8; 32] = buf.get(at..at.checked_add(32)?)?.try_into().ok()?;
        let (lo, hi) = bytes.split_at(16);
        let lo = load_unaligned_m128i(lo.try_into().ok()?);
        let hi = load_unaligned_m128i(hi.try_into().ok()?);
        Some(u64::from(mask(lo, b'\n')) | u64::from(mask(hi, b'\n')) << 16)
    }

    #[inline(always)]
    pub(super) fn colons_and_lfs(buf: &[u8], at: usize) -> Option<(u64, u64)> {
        let bytes: &[u8; 32] = buf.get(at..at.checked_add(32)?)?.try_into().ok()?;
        let (lo, hi) = bytes.split_at(16);
        let lo = load_unaligned_m128i(lo.try_into().ok()?);
        let hi = load_unaligned_m128i(hi.try_into().ok()?);
        let both = |b: u8| u64::from(mask(lo, b)) | u64::from(mask(hi, b)) << 16;
        Some((both(b':'), both(b'\n')))
    }

    #[inline(always)]
    pub(super) fn folded_eq16(buf: &[u8], at: usize, fold: &([u8; 16], [u8; 16])) -> Option<u32> {
        let v = load(buf, at)?;
        let folded = bitor_m128i(v, load_unaligned_m128i(&fold.1));
        let eq = cmp_eq_mask_i8_m128i(folded, load_unaligned_m128i(&fold.0));
        Some(move_mask_i8_m128i(eq) as u32)
    }

    #[inline(always)]
    pub(super) fn find_byte(buf: &[u8], from: usize, byte: u8) -> Option<usize> {
        find_by(buf, from, |v| mask(v, byte), !byte)
    }

    #[inline(always)]
    pub(super) fn find_space_or_tab(buf: &[u8], from: usize) -> Option<usize> {
        find_by(buf, from, |v| mask(v, b' ') | mask(v, b'\t'), b'a')
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
    pub(super) fn find_space_or_tab(buf: &[u8], from: usize) -> Option<usize> {
        let rest = buf.get(from..)?;
        rest.iter()
            .position(|&b| b == b' ' || b == b'\t')
            .map(|i| from + i)
    }

    #[inline(always)]
    pub(super) fn folded_eq16(_: &[u8], _: usize, _: &([u8; 16], [u8; 16])) -> Option<u32> {
        None
    }

    #[inline(always)]
    pub(super) fn colons_and_lfs(_: &[u8], _: usize) -> Option<(u64, u64)> {
        None
    }

    #[inline(always)]
    pub(super) fn skip_alnum_dash_dot(_: &[u8], from: usize) -> usize {
        from
    }

    #[inline(always)]
    pub(super) fn lfs32(_: &[u8], _: usize) -> Option<u64> {
        None
    }

    #[inline(always)]
    pub(super) fn digits_and_dial_separators(_: &[u8], _: usize) -> Option<(u32, u32)> {
        None
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
    fn space_or_tab_matches_the_byte_loop_at_every_length_and_start() {
        let naive =
            |buf: &[u8], from: usize| (from..buf.len()).find(|&i| matches!(buf[i], b' ' | b'\t'));
        let mut buf = Vec::new();
        for len in 0..50 {
            for hit in 0..=len {
                for special in [b' ', b'\t', b'a', 0x00, 0xff, b'\r'] {
                    buf.clear();
                    buf.extend((0..len).map(|i| b"sip:+1@x.example;u=p"[i % 20]));
                    if hit < len {
                        buf[hit] = special;
                    }
                    if hit + 7 < len {
                        buf[hit + 7] = b' ';
                    }
                    for from in [0, 1, hit.saturating_sub(1), hit, len, len + 2] {
                        assert_eq!(
                            find_space_or_tab(&buf, from),
                            naive(&buf, from),
                            "len {len} hit {hit} from {from} byte {special:#x}"
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
    fn colons_and_lfs_mark_every_colon_and_lf_of_32_bytes() {
        let mut buf = [b'a'; 40];
        buf[0] = b':';
        buf[5] = b'\n';
        buf[17] = b':';
        buf[31] = b'\n';
        buf[32] = b':';
        for at in 0..=8 {
            let got = colons_and_lfs(&buf, at);
            if cfg!(all(target_arch = "x86_64", target_feature = "sse2")) {
                let bits = |b: u8| {
                    (0..32)
                        .filter(|&i| buf[at + i] == b)
                        .fold(0u64, |m, i| m | 1 << i)
                };
                assert_eq!(got, Some((bits(b':'), bits(b'\n'))), "at {at}");
            } else {
                assert_eq!(got, None);
            }
        }
        assert_eq!(colons_and_lfs(&buf, 9), None);
        for at in 0..=9 {
            let got = lfs32(&buf, at);
            if at <= 8 && cfg!(all(target_arch = "x86_64", target_feature = "sse2")) {
                assert_eq!(got, colons_and_lfs(&buf, at).map(|(_, lfs)| lfs), "at {at}");
            } else {
                assert_eq!(got, None, "at {at}");
            }
        }
        assert_eq!(colons_and_lfs(&buf, usize::MAX), None);
    }

    #[test]
    fn alnum_dash_dot_bytes_are_in_every_class_that_skips_them() {
        use super::super::grammar::{is, GEN_VALUE, HOST, TOKEN};
        for b in 0..=255u8 {
            if is_alnum_dash_dot(b) {
                assert!(is(b, TOKEN) && is(b, HOST) && is(b, GEN_VALUE), "{b:#x}");
            }
        }
    }

    #[test]
    fn skip_alnum_dash_dot_never_passes_another_byte() {
        let mut buf = Vec::new();
        for len in 0..50 {
            for hit in 0..=len {
                for special in 0..=255u8 {
                    buf.clear();
                    buf.extend((0..len).map(|i| b"aZ09-.mQ"[i % 8]));
                    if hit < len {
                        buf[hit] = special;
                    }
                    for from in [0, 1, hit.saturating_sub(1), hit, len, len + 3] {
                        let got = skip_alnum_dash_dot(&buf, from);
                        assert!(got >= from, "len {len} hit {hit} from {from}");
                        if from >= len {
                            assert_eq!(got, from);
                            continue;
                        }
                        assert!(got <= len);
                        assert!(buf[from..got].iter().all(|&b| is_alnum_dash_dot(b)));
                        // With SSE2 it reaches the first other byte when the
                        // sixteen bytes of the step holding it could be loaded.
                        let first_other = (from..len)
                            .find(|&i| !is_alnum_dash_dot(buf[i]))
                            .unwrap_or(len);
                        let step = from + (first_other - from) / 16 * 16;
                        if cfg!(all(target_arch = "x86_64", target_feature = "sse2"))
                            && step + 16 <= len
                        {
                            assert_eq!(
                                got, first_other,
                                "len {len} hit {hit} from {from} byte {special:#x}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn digits_and_dial_separators_mark_every_such_byte_of_16() {
        for special in 0..=255u8 {
            let mut buf = *b"+1-(415) 555.01x3Z";
            buf[7] = special;
            for at in 0..=3 {
                let got = digits_and_dial_separators(&buf, at);
                if at + 16 > buf.len()
                    || !cfg!(all(target_arch = "x86_64", target_feature = "sse2"))
                {
                    assert_eq!(got, None, "at {at}");
                    continue;
                }
                let bits = |f: &dyn Fn(u8) -> bool| {
                    (0..16)
                        .filter(|&i| f(buf[at + i]))
                        .fold(0u32, |m, i| m | 1 << i)
                };
                let want = (bits(&|b| b.is_ascii_digit()), bits(&is_dial_separator));
                assert_eq!(got, Some(want), "at {at} byte {special:#x}");
            }
        }
        assert_eq!(digits_and_dial_separators(b"0123", usize::MAX), None);
    }

    #[test]
    fn a_start_past_the_end_finds_nothing() {
        assert_eq!(find_byte(b"abc", 3, b'a'), None);
        assert_eq!(find_byte(b"abc", 9, b'a'), None);
        assert_eq!(find_byte(&[b'\n'; 40], usize::MAX, b'\n'), None);
    }
}
