//! The small rules of the RFC 3261 section 25 grammar that every other rule
//! is built from: character classes (one table lookup per byte), linear
//! white space with folding, tokens, quoted strings, percent-escapes and
//! parameter lists.

use nom::bytes::complete::take_while1;
use nom::{IResult, Parser};

use super::error::{ErrorKind, Fail, Res};

// Character classes of RFC 3261 section 25.1, one bit each.
pub(crate) const TOKEN: u16 = 1;
pub(crate) const WORD: u16 = 1 << 1;
pub(crate) const UNRESERVED: u16 = 1 << 2;
pub(crate) const USER: u16 = 1 << 3;
pub(crate) const PASSWORD: u16 = 1 << 4;
pub(crate) const PARAM: u16 = 1 << 5;
pub(crate) const HNV: u16 = 1 << 6;
pub(crate) const HOST: u16 = 1 << 7;
pub(crate) const URIC: u16 = 1 << 8;
pub(crate) const DIGIT: u16 = 1 << 9;
pub(crate) const GEN_VALUE: u16 = 1 << 10;
pub(crate) const TEL: u16 = 1 << 11;

const fn build_classes() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut c = 0usize;
    while c < 256 {
        let b = c as u8;
        let alpha = b.is_ascii_alphabetic();
        let digit = b.is_ascii_digit();
        let alnum = alpha || digit;
        let mark = matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        );
        let unreserved = alnum || mark;
        let token = alnum
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        let word = token
            || matches!(
                b,
                b'(' | b')'
                    | b'<'
                    | b'>'
                    | b':'
                    | b'\\'
                    | b'"'
                    | b'/'
                    | b'['
                    | b']'
                    | b'?'
                    | b'{'
                    | b'}'
            );
        let mut v = 0u16;
        if token {
            v |= TOKEN;
        }
        if word {
            v |= WORD;
        }
        if unreserved {
            v |= UNRESERVED;
        }
        // user-unreserved plus '%' (escapes are checked separately).
        if unreserved
            || matches!(
                b,
                b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/' | b'%'
            )
        {
            v |= USER;
        }
        if unreserved || matches!(b, b'&' | b'=' | b'+' | b'$' | b',' | b'%') {
            v |= PASSWORD;
        }
        // paramchar: param-unreserved / unreserved / escaped.
        if unreserved || matches!(b, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$' | b'%') {
            v |= PARAM;
        }
        // hname / hvalue characters: hnv-unreserved / unreserved / escaped.
        if unreserved || matches!(b, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$' | b'%') {
            v |= HNV;
        }
        // Host names: RFC 3261 allows alphanum, '-' and '.'; '_' is tolerated
        // because deployed equipment sends it.
        if alnum || matches!(b, b'-' | b'.' | b'_') {
            v |= HOST;
        }
        // uric of RFC 2396: reserved / unreserved / escaped.
        if unreserved
            || matches!(
                b,
                b';' | b'/' | b'?' | b':' | b'@' | b'&' | b'=' | b'+' | b'$' | b',' | b'%'
            )
        {
            v |= URIC;
        }
        if digit {
            v |= DIGIT;
        }
        // gen-value = token / host / quoted-string: token characters plus
        // what a bracketed or bare IPv6 address adds.
        if token || matches!(b, b':' | b'[' | b']') {
            v |= GEN_VALUE;
        }
        // RFC 3966 telephone-subscriber characters before the parameters.
        if b.is_ascii_hexdigit()
            || matches!(b, b'*' | b'#' | b'-' | b'.' | b'(' | b')' | b'+' | b'%')
        {
            v |= TEL;
        }
        t[c] = v;
        c += 1;
    }
    t
}

pub(crate) static CLASSES: [u16; 256] = build_classes();

/// Whether `b` is in every class of `class`.
#[inline(always)]
pub(crate) fn is(b: u8, class: u16) -> bool {
    CLASSES[b as usize] & class != 0
}

/// Length of the longest prefix of `s` whose bytes are all in `class`.
#[inline(always)]
pub(crate) fn span(s: &[u8], class: u16) -> usize {
    s.iter().position(|&b| !is(b, class)).unwrap_or(s.len())
}

#[inline(always)]
pub(crate) fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Skips `SWS = [LWS]` where `LWS = [*WSP CRLF] 1*WSP`. Inside a header value
/// that the line scanner accepted, a CRLF is always followed by WSP (a fold).
#[inline]
pub(crate) fn skip_sws(mut s: &[u8]) -> &[u8] {
    loop {
        match s {
            [b' ' | b'\t', rest @ ..] => s = rest,
            [b'\r', b'\n', b' ' | b'\t', rest @ ..] => s = rest,
            _ => return s,
        }
    }
}

/// Whether `s` starts with white space or a fold.
#[inline]
pub(crate) fn starts_with_lws(s: &[u8]) -> bool {
    matches!(s, [b' ' | b'\t', ..] | [b'\r', b'\n', b' ' | b'\t', ..])
}

/// `token` (RFC 3261 section 25.1), through nom.
#[inline]
pub(crate) fn token(s: &[u8]) -> IResult<&[u8], &[u8]> {
    take_while1(|b| is(b, TOKEN)).parse(s)
}

/// A token or a failure of `kind` at the first byte.
#[inline]
pub(crate) fn expect_token(s: &[u8], kind: ErrorKind) -> Res<(&[u8], &[u8])> {
    match token(s) {
        Ok((rest, t)) => Ok((t, rest)),
        Err(_) => Err(Fail::at(kind, s)),
    }
}

/// A quoted string starting at `s[0] == '"'`: returns the whole string with
/// its quotes and the rest. `qdtext` and `quoted-pair` as in RFC 3261
/// section 25.1; bytes from 0x80 up are taken as UTF-8 without decoding.
#[inline]
pub(crate) fn quoted_string(s: &[u8]) -> Res<(&[u8], &[u8])> {
    debug_assert_eq!(s.first(), Some(&b'"'));
    // Most quoted strings hold neither escapes nor folds: when the first
    // byte the loop below would look at is the closing quote, that is the end.
    if let Some(end) = super::scan::find_quoted_stop(s, 1) {
        if s[end] == b'"' {
            return Ok((&s[..=end], &s[end + 1..]));
        }
    }
    quoted_string_loop(s)
}

/// [`quoted_string`] byte by byte, without its fast path: what it falls
/// back to for escapes and folds.
pub(crate) fn quoted_string_loop(s: &[u8]) -> Res<(&[u8], &[u8])> {
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'"' => return Ok((&s[..=i], &s[i + 1..])),
            b'\\' => {
                // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
                match s.get(i + 1) {
                    Some(&c) if c <= 0x7f && c != b'\r' && c != b'\n' => i += 2,
                    _ => return Err(Fail::at(ErrorKind::BadHeaderValue, &s[i..])),
                }
            }
            b'\r' => {
                if matches!(s.get(i + 1..i + 3), Some([b'\n', b' ' | b'\t'])) {
                    i += 3;
                } else {
                    return Err(Fail::at(ErrorKind::BadHeaderValue, &s[i..]));
                }
            }
            b'\t' => i += 1,
            c if c < 0x20 || c == 0x7f => {
                return Err(Fail::at(ErrorKind::BadHeaderValue, &s[i..]));
            }
            _ => i += 1,
        }
    }
    Err(Fail::at(ErrorKind::UnterminatedQuote, s))
}

/// The value of a hex digit.
#[inline]
pub(crate) fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Checks that every byte of `s` is in `class` and every `%` starts a valid
/// escape (`escaped = "%" HEXDIG HEXDIG`). `kind` is reported for a byte
/// outside the class.
#[inline]
pub(crate) fn check_escaped(s: &[u8], class: u16, kind: ErrorKind) -> Res<()> {
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if !is(b, class) {
            return Err(Fail::at(kind, &s[i..]));
        }
        if b == b'%' {
            match (s.get(i + 1), s.get(i + 2)) {
                (Some(&h), Some(&l)) if hex_value(h).is_some() && hex_value(l).is_some() => {
                    i += 3;
                    continue;
                }
                _ => return Err(Fail::at(ErrorKind::BadEscape, &s[i..])),
            }
        }
        i += 1;
    }
    Ok(())
}

/// Parses `1*DIGIT` as a number no greater than `max`. Leading zeros are
/// allowed (RFC 4475 section 3.1.1.1 sends `Max-Forwards: 0068`). Returns
/// `None` for an empty run, a non-digit or a value over `max`.
#[inline]
pub(crate) fn decimal(s: &[u8], max: u64) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
        if n > max {
            return None;
        }
    }
    Some(n)
}

/// Whether parameter lists are written the header way (`SEMI` with white
/// space, values that are tokens, hosts or quoted strings) or the URI way
/// (`;` without white space, `paramchar` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParamStyle {
    Header,
    Uri,
}

/// One parameter after optional white space: `Ok(None)` when the next
/// byte is not `;`, otherwise `(name, value, rest)`.
#[inline]
#[allow(clippy::type_complexity)]
pub(crate) fn one_param(s: &[u8], style: ParamStyle) -> Res<Option<(&[u8], Option<&[u8]>, &[u8])>> {
    let after_ws = match style {
        ParamStyle::Header => skip_sws(s),
        ParamStyle::Uri => s,
    };
    let Some((&b';', rest)) = after_ws.split_first() else {
        return Ok(None);
    };
    match style {
        ParamStyle::Header => {
            let rest = skip_sws(rest);
            let (name, rest) = expect_token(rest, ErrorKind::BadParam)?;
            let after = skip_sws(rest);
            if let Some((&b'=', v)) = after.split_first() {
                let v = skip_sws(v);
                let (value, rest) = if v.first() == Some(&b'"') {
                    quoted_string(v)?
                } else {
                    let n = span(v, GEN_VALUE);
                    if n == 0 {
                        return Err(Fail::at(ErrorKind::BadParam, v));
                    }
                    (&v[..n], &v[n..])
                };
                Ok(Some((name, Some(value), rest)))
            } else {
                Ok(Some((name, None, rest)))
            }
        }
        ParamStyle::Uri => {
            let n = span(rest, PARAM);
            if n == 0 {
                return Err(Fail::at(ErrorKind::BadParam, rest));
            }
            let name = &rest[..n];
            check_escaped(name, PARAM, ErrorKind::BadParam)?;
            let rest = &rest[n..];
            if let Some((&b'=', v)) = rest.split_first() {
                let n = span(v, PARAM);
                if n == 0 {
                    return Err(Fail::at(ErrorKind::BadParam, v));
                }
                check_escaped(&v[..n], PARAM, ErrorKind::BadParam)?;
                Ok(Some((name, Some(&v[..n]), &v[n..])))
            } else {
                Ok(Some((name, None, rest)))
            }
        }
    }
}

/// Validates a parameter list starting at `s` (which may start with white
/// space) and returns `(params, rest)`: `params` spans from the first `;` to
/// the end of the last parameter, `rest` starts after it. Calls `each` for
/// every parameter so that typed parsers can pick the ones they know; `each`
/// gets the name, the value and the parameter as written from its `;`.
#[inline]
pub(crate) fn params<'a>(
    s: &'a [u8],
    style: ParamStyle,
    mut each: impl FnMut(&'a [u8], Option<&'a [u8]>, &'a [u8]) -> Res<()>,
) -> Res<(&'a [u8], &'a [u8])> {
    let start = match style {
        ParamStyle::Header => skip_sws(s),
        ParamStyle::Uri => s,
    };
    let mut cur = start;
    while let Some((name, value, rest)) = one_param(cur, style)? {
        each(name, value, cur)?;
        cur = rest;
    }
    let len = cur.as_ptr() as usize - start.as_ptr() as usize;
    Ok((&start[..len], cur))
}

/// One parameter of a header value or a URI: `name` or `name=value`, as
/// written (values keep their quotes and escapes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param<'a> {
    /// The parameter name.
    pub name: &'a [u8],
    /// The value, if the parameter has one.
    pub value: Option<&'a [u8]>,
}

/// The parameters of an already validated header value or URI, in order.
#[derive(Debug, Clone, Copy)]
pub struct Params<'a> {
    rest: &'a [u8],
    style: ParamStyle,
}

impl<'a> Params<'a> {
    pub(crate) fn new(raw: &'a [u8], style: ParamStyle) -> Self {
        Params { rest: raw, style }
    }

    /// An empty list.
    pub fn empty() -> Self {
        Params {
            rest: &[],
            style: ParamStyle::Uri,
        }
    }

    /// The parameter list as written, from its first `;`.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.rest
    }

    /// The first parameter named `name` (compared without regard to case):
    /// `None` when absent, `Some(None)` when present without a value.
    pub fn get(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        self.clone()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value)
    }
}

impl<'a> Iterator for Params<'a> {
    type Item = Param<'a>;

    fn next(&mut self) -> Option<Param<'a>> {
        // The list was validated when the message was parsed; a failure here
        // can only mean the caller built the list by hand, and ends it.
        match one_param(self.rest, self.style) {
            Ok(Some((name, value, rest))) => {
                self.rest = rest;
                Some(Param { name, value })
            }
            _ => {
                self.rest = &[];
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sws_skips_spaces_tabs_and_folds() {
        assert_eq!(skip_sws(b" \t\r\n  x"), b"x");
        assert_eq!(skip_sws(b"\r\nx"), b"\r\nx");
        assert_eq!(skip_sws(b"x "), b"x ");
    }

    #[test]
    fn token_accepts_rfc3261_token_characters() {
        let t = b"!interesting-Method0123456789_*+`.%indeed'~ rest";
        let (rest, tok) = token(t).unwrap();
        assert_eq!(tok, b"!interesting-Method0123456789_*+`.%indeed'~");
        assert_eq!(rest, b" rest");
        assert!(token(b"<x").is_err());
    }

    #[test]
    fn quoted_string_handles_escaped_quotes_and_folds() {
        let (q, rest) = quoted_string(b"\"J Rosenberg \\\\\\\"\"  <x").unwrap();
        assert_eq!(q, b"\"J Rosenberg \\\\\\\"\"");
        assert_eq!(rest, b"  <x");
        let (q, _) = quoted_string(b"\"a\r\n b\"").unwrap();
        assert_eq!(q, b"\"a\r\n b\"");
    }

    #[test]
    fn quoted_string_without_closing_quote_is_rejected() {
        let e = quoted_string(b"\"Mr. J. User <sip:j.user@example.com>").unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnterminatedQuote);
    }

    #[test]
    fn escapes_need_two_hex_digits() {
        assert!(check_escaped(b"a%41b", USER, ErrorKind::BadUri).is_ok());
        let e = check_escaped(b"a%4", USER, ErrorKind::BadUri).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadEscape);
        let e = check_escaped(b"%ZZ", USER, ErrorKind::BadUri).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadEscape);
    }

    #[test]
    fn decimal_allows_leading_zeros_and_enforces_the_limit() {
        assert_eq!(decimal(b"0068", 255), Some(68));
        assert_eq!(decimal(b"256", 255), None);
        assert_eq!(decimal(b"", 255), None);
        assert_eq!(decimal(b"-1", 255), None);
        assert_eq!(decimal(b"36893488147419103232", u64::from(u32::MAX)), None);
    }

    #[test]
    fn header_params_allow_white_space_around_separators() {
        let mut seen = Vec::new();
        let (raw, rest) = params(
            b" ;   tag    = 1918181833n ; lr , next",
            ParamStyle::Header,
            |n, v, _| {
                seen.push((n.to_vec(), v.map(|v| v.to_vec())));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(raw, b";   tag    = 1918181833n ; lr");
        assert_eq!(rest, b" , next");
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].1.as_deref(), Some(&b"1918181833n"[..]));
        let list: Vec<_> = Params::new(raw, ParamStyle::Header).collect();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].name, b"lr");
        assert_eq!(list[1].value, None);
    }

    #[test]
    fn empty_parameters_are_rejected() {
        let e = params(b";;", ParamStyle::Header, |_, _, _| Ok(())).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadParam);
        let e = params(b";=x", ParamStyle::Uri, |_, _, _| Ok(())).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadParam);
    }

    #[test]
    fn uri_params_take_escapes() {
        let (raw, rest) = params(
            b";%6C%72;n%61me=v%61lue%25%34%31>",
            ParamStyle::Uri,
            |_, _, _| Ok(()),
        )
        .unwrap();
        assert_eq!(raw, b";%6C%72;n%61me=v%61lue%25%34%31");
        assert_eq!(rest, b">");
        let p = Params::new(raw, ParamStyle::Uri);
        assert_eq!(p.get(b"n%61me"), Some(Some(&b"v%61lue%25%34%31"[..])));
    }
}
