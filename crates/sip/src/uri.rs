//! SIP, SIPS and tel URIs (RFC 3261 section 19.1, RFC 3966) as borrowed views,
//! and the dialed number a route table matches on.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::error::{ErrorKind, Fail, ParseError, Res};
use super::grammar::{
    check_escaped, hex_value, params, span, ParamStyle, Params, HNV, HOST, PASSWORD, TEL, URIC,
    USER,
};

/// The scheme of a URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme<'a> {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:` (RFC 3966)
    Tel,
    /// Any other scheme, kept as written (without the colon). A proxy answers
    /// requests for these with 416 (RFC 3261 section 16.3).
    Other(&'a [u8]),
}

/// The host of a URI or a Via sent-by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host<'a> {
    /// A host name, as written.
    Name(&'a [u8]),
    /// A dotted IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 reference (written in brackets).
    Ipv6(Ipv6Addr),
}

impl Host<'_> {
    /// The address, when the host is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match *self {
            Host::Name(_) => None,
            Host::Ipv4(a) => Some(IpAddr::V4(a)),
            Host::Ipv6(a) => Some(IpAddr::V6(a)),
        }
    }
}

impl fmt::Display for Host<'_> {
    /// As it would be written in a URI: names as they are, IPv6 in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(&String::from_utf8_lossy(n)),
            Host::Ipv4(a) => write!(f, "{a}"),
            Host::Ipv6(a) => write!(f, "[{a}]"),
        }
    }
}

/// Parses a host: a bracketed IPv6 reference, a dotted IPv4 address or a
/// host name. Returns the host and the rest.
#[inline]
pub(crate) fn host(s: &[u8]) -> Res<(Host<'_>, &[u8])> {
    if s.first() == Some(&b'[') {
        let Some(close) = memchr::memchr(b']', s) else {
            return Err(Fail::at(ErrorKind::BadHost, s));
        };
        let inner = &s[1..close];
        let addr = ipv6(inner).ok_or(Fail::at(ErrorKind::BadHost, s))?;
        return Ok((Host::Ipv6(addr), &s[close + 1..]));
    }
    let n = span(s, HOST);
    let name = &s[..n];
    if n == 0 || !name[0].is_ascii_alphanumeric() && name[0] != b'_' {
        return Err(Fail::at(ErrorKind::BadHost, s));
    }
    // A name whose last label starts with a digit can only be an IPv4
    // address (RFC 3261 toplabel starts with ALPHA); a trailing dot (a fully
    // qualified name) does not count as a label.
    let trimmed = name.strip_suffix(b".").unwrap_or(name);
    let last_label_start = trimmed
        .iter()
        .rposition(|&b| b == b'.')
        .map_or(0, |i| i + 1);
    if trimmed
        .get(last_label_start)
        .is_none_or(|b| b.is_ascii_digit())
    {
        let addr = ipv4(name).ok_or(Fail::at(ErrorKind::BadHost, s))?;
        return Ok((Host::Ipv4(addr), &s[n..]));
    }
    Ok((Host::Name(name), &s[n..]))
}

/// An IPv6 address without brackets. Tolerates the three-colon form that the
/// RFC 3261 ABNF allows before an embedded IPv4 address (`2001:db8:::192.0.2.1`),
/// as RFC 5118 section 4.10 asks, and nothing else beyond RFC 4291.
pub(crate) fn ipv6(s: &[u8]) -> Option<Ipv6Addr> {
    if s.len() > 46 {
        return None;
    }
    if let Some(a) = parse_text::<Ipv6Addr>(s) {
        return Some(a);
    }
    let at = s.windows(3).position(|w| w == b":::")?;
    let tail = &s[at + 3..];
    if tail.contains(&b':') || !tail.contains(&b'.') {
        return None;
    }
    let mut fixed = [0u8; 46];
    fixed[..at + 2].copy_from_slice(&s[..at + 2]);
    fixed[at + 2..s.len() - 1].copy_from_slice(tail);
    parse_text::<Ipv6Addr>(&fixed[..s.len() - 1])
}

fn parse_text<T: std::str::FromStr>(s: &[u8]) -> Option<T> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// A dotted-quad IPv4 address: four decimal octets of one to three digits.
#[inline]
pub(crate) fn ipv4(s: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut part = 0;
    let mut value: u32 = 0;
    let mut digits = 0;
    for &b in s {
        match b {
            b'0'..=b'9' => {
                value = value * 10 + u32::from(b - b'0');
                digits += 1;
                if digits > 3 || value > 255 {
                    return None;
                }
            }
            b'.' if digits > 0 && part < 3 => {
                octets[part] = value as u8;
                part += 1;
                value = 0;
                digits = 0;
            }
            _ => return None,
        }
    }
    if part != 3 || digits == 0 {
        return None;
    }
    octets[3] = value as u8;
    Some(Ipv4Addr::from(octets))
}

/// A port: `1*DIGIT` no greater than 65535.
#[inline]
pub(crate) fn port(s: &[u8]) -> Res<(u16, &[u8])> {
    let n = span(s, super::grammar::DIGIT);
    match super::grammar::decimal(&s[..n], 65535) {
        Some(p) => Ok((p as u16, &s[n..])),
        None => Err(Fail::at(ErrorKind::BadPort, s)),
    }
}

/// A URI as a borrowed view over the message bytes. For `sip:` and `sips:`
/// every part is split out; for `tel:` the number is in [`Uri::user`]; other
/// schemes are only checked to be made of URI characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri<'a> {
    raw: &'a [u8],
    scheme: Scheme<'a>,
    user: Option<&'a [u8]>,
    password: Option<&'a [u8]>,
    host: Option<Host<'a>>,
    port: Option<u16>,
    params: &'a [u8],
    headers: Option<&'a [u8]>,
}

impl<'a> Uri<'a> {
    /// Parses a whole URI (the slice must hold exactly the URI). Offsets in
    /// the error count from the start of `s`.
    pub fn parse(s: &'a [u8]) -> Result<Uri<'a>, ParseError> {
        uri(s).map_err(|f| f.relative_to(s))
    }

    /// The URI as written.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme<'a> {
        self.scheme
    }

    /// The user part as written (percent-escapes kept), or for a tel URI the
    /// subscriber number before its parameters.
    pub fn user(&self) -> Option<&'a [u8]> {
        self.user
    }

    /// The password of the userinfo, as written.
    pub fn password(&self) -> Option<&'a [u8]> {
        self.password
    }

    /// The host (absent for tel and unknown schemes).
    pub fn host(&self) -> Option<Host<'a>> {
        self.host
    }

    /// The port, if written.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The URI parameters (`;transport=udp;lr`), in order.
    pub fn params(&self) -> Params<'a> {
        Params::new(self.params, ParamStyle::Uri)
    }

    /// The URI headers after `?`, as written (`Route=%3Csip:x%3E&Subject=hi`).
    pub fn headers(&self) -> Option<&'a [u8]> {
        self.headers
    }

    /// For an unknown scheme, everything after the colon.
    pub fn opaque(&self) -> &'a [u8] {
        let n = memchr::memchr(b':', self.raw).map_or(0, |i| i + 1);
        &self.raw[n..]
    }

    /// True for `urn:service:sos` and its sub-services
    /// (`urn:service:sos.police`, ...), the emergency service URNs of RFC
    /// 5031 section 4.2, compared without regard to case (section 6).
    pub fn is_sos_urn(&self) -> bool {
        let Scheme::Other(scheme) = self.scheme() else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(b"urn") {
            return false;
        }
        let rest = self.opaque();
        const SOS: &[u8] = b"service:sos";
        rest.len() >= SOS.len()
            && rest[..SOS.len()].eq_ignore_ascii_case(SOS)
            && matches!(rest.get(SOS.len()), None | Some(b'.'))
    }

    /// Writes the dialed number of this URI into `out`: the user part of a
    /// sip or sips URI or the number of a tel URI, percent-escapes decoded and
    /// visual separators (`+ - . ( )` and spaces) removed. Only digits may
    /// remain. Does not allocate.
    pub fn dialed_number(&self, out: &mut DialedNumber) -> Result<(), DialedNumberError> {
        out.len = 0;
        let number = match self.scheme {
            Scheme::Sip | Scheme::Sips | Scheme::Tel => self.user,
            Scheme::Other(_) => None,
        };
        digits_into(number.ok_or(DialedNumberError::NoNumber)?, out)
    }
}

impl fmt::Display for Uri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.raw))
    }
}

/// Parses a URI that fills `s` exactly.
#[inline]
pub(crate) fn uri(s: &[u8]) -> Res<Uri<'_>> {
    // scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
    let colon = s
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')));
    let Some(colon) = colon.filter(|&c| c > 0 && s[c] == b':' && s[0].is_ascii_alphabetic()) else {
        return Err(Fail::at(ErrorKind::BadUri, s));
    };
    let name = &s[..colon];
    let rest = &s[colon + 1..];
    let scheme = if name.eq_ignore_ascii_case(b"sip") {
        Scheme::Sip
    } else if name.eq_ignore_ascii_case(b"sips") {
        Scheme::Sips
    } else if name.eq_ignore_ascii_case(b"tel") {
        Scheme::Tel
    } else {
        Scheme::Other(name)
    };
    match scheme {
        Scheme::Sip | Scheme::Sips => sip_uri(s, scheme, rest),
        Scheme::Tel => tel_uri(s, rest),
        Scheme::Other(_) => {
            if rest.is_empty() {
                return Err(Fail::at(ErrorKind::BadUri, rest));
            }
            check_escaped(rest, URIC, ErrorKind::BadUri)?;
            Ok(Uri {
                raw: s,
                scheme,
                user: None,
                password: None,
                host: None,
                port: None,
                params: &[],
                headers: None,
            })
        }
    }
}

#[inline]
fn sip_uri<'a>(raw: &'a [u8], scheme: Scheme<'a>, rest: &'a [u8]) -> Res<Uri<'a>> {
    // No '@' may appear in parameters or headers unescaped, so the first one
    // ends the userinfo (RFC 3261 section 25.1).
    let (user, password, hostport) = match memchr::memchr(b'@', rest) {
        Some(at) => {
            let userinfo = &rest[..at];
            let (user, password) = match memchr::memchr(b':', userinfo) {
                Some(c) => (&userinfo[..c], Some(&userinfo[c + 1..])),
                None => (userinfo, None),
            };
            if user.is_empty() {
                return Err(Fail::at(ErrorKind::BadUri, userinfo));
            }
            check_escaped(user, USER, ErrorKind::BadUri)?;
            if let Some(p) = password {
                check_escaped(p, PASSWORD, ErrorKind::BadUri)?;
            }
            (Some(user), password, &rest[at + 1..])
        }
        None => (None, None, rest),
    };
    let (host, rest) = host(hostport)?;
    let (port, rest) = match rest.split_first() {
        Some((&b':', p)) => {
            let (p, rest) = port(p)?;
            (Some(p), rest)
        }
        _ => (None, rest),
    };
    let (params, rest) = params(rest, ParamStyle::Uri, |_, _, _| Ok(()))?;
    let (headers, rest) = match rest.split_first() {
        Some((&b'?', h)) => {
            uri_headers(h)?;
            (Some(h), &h[h.len()..])
        }
        _ => (None, rest),
    };
    if !rest.is_empty() {
        return Err(Fail::at(ErrorKind::BadUri, rest));
    }
    Ok(Uri {
        raw,
        scheme,
        user,
        password,
        host: Some(host),
        port,
        params,
        headers,
    })
}

/// `headers = header *( "&" header )`, `header = hname "=" hvalue`.
#[inline]
fn uri_headers(h: &[u8]) -> Res<()> {
    for header in h.split(|&b| b == b'&') {
        let Some(eq) = memchr::memchr(b'=', header) else {
            return Err(Fail::at(ErrorKind::BadUri, header));
        };
        if eq == 0 {
            return Err(Fail::at(ErrorKind::BadUri, header));
        }
        check_escaped(&header[..eq], HNV, ErrorKind::BadUri)?;
        check_escaped(&header[eq + 1..], HNV, ErrorKind::BadUri)?;
    }
    Ok(())
}

#[inline]
fn tel_uri<'a>(raw: &'a [u8], rest: &'a [u8]) -> Res<Uri<'a>> {
    let n = span(rest, TEL);
    let number = &rest[..n];
    // global-number-digits = "+" *phonedigit DIGIT *phonedigit, or a
    // local-number with at least one digit, '*' or '#'.
    if !number
        .iter()
        .any(|&b| b.is_ascii_hexdigit() || b == b'*' || b == b'#')
    {
        return Err(Fail::at(ErrorKind::BadUri, rest));
    }
    if number.iter().skip(1).any(|&b| b == b'+') {
        return Err(Fail::at(ErrorKind::BadUri, rest));
    }
    check_escaped(number, TEL, ErrorKind::BadUri)?;
    let (params, rest) = params(&rest[n..], ParamStyle::Uri, |_, _, _| Ok(()))?;
    if !rest.is_empty() {
        return Err(Fail::at(ErrorKind::BadUri, rest));
    }
    Ok(Uri {
        raw,
        scheme: Scheme::Tel,
        user: Some(number),
        password: None,
        host: None,
        port: None,
        params,
        headers: None,
    })
}

/// The dialed number of a raw URI without checking the rest of it: the
/// scheme must be sip, sips or tel; the user part is what precedes the `@`
/// (and any `:password`), the tel number what precedes the first `;`.
#[inline]
pub(crate) fn dialed_number_of(
    raw: &[u8],
    out: &mut DialedNumber,
) -> Result<(), DialedNumberError> {
    use super::scan::find_byte;
    out.len = 0;
    let colon = find_byte(raw, 0, b':').ok_or(DialedNumberError::NoNumber)?;
    let (scheme, start) = (&raw[..colon], colon + 1);
    // The searches run in `raw` cut at the end of what they look in (not in
    // a slice starting at the user part), so that the SSE2 search has
    // sixteen bytes to load.
    let end = if scheme.eq_ignore_ascii_case(b"sip") || scheme.eq_ignore_ascii_case(b"sips") {
        let at = find_byte(raw, start, b'@').ok_or(DialedNumberError::NoNumber)?;
        find_byte(&raw[..at], start, b':').unwrap_or(at)
    } else if scheme.eq_ignore_ascii_case(b"tel") {
        raw.len()
    } else {
        return Err(DialedNumberError::NoNumber);
    };
    digits_in(raw, start, end, out)
}

/// [`digits_in`] over the whole of `number`.
#[inline]
fn digits_into(number: &[u8], out: &mut DialedNumber) -> Result<(), DialedNumberError> {
    digits_in(number, 0, number.len(), out)
}

/// Decodes escapes, drops visual separators and keeps digits of
/// `buf[start..end]`, stopping at the first `;` (a telephone-subscriber's
/// own parameters).
#[inline]
fn digits_in(
    buf: &[u8],
    start: usize,
    end: usize,
    out: &mut DialedNumber,
) -> Result<(), DialedNumberError> {
    out.len = 0;
    let end = super::scan::find_byte(&buf[..end], start, b';').unwrap_or(end);
    match separated_digits(buf, start, end, out) {
        Some(done) => done,
        None => digits_escaped(&buf[start..end], out),
    }
}

/// The usual number, at most sixteen bytes of digits and separators, in one
/// SSE2 look: the digits are copied in order, which is what
/// [`digits_escaped`] does with such bytes (there is no escape to decode,
/// and sixteen digits fit in [`MAX_DIALED_DIGITS`]). `None` for anything
/// else, or when fewer than sixteen bytes of `buf` follow `start`.
#[inline(always)]
fn separated_digits(
    buf: &[u8],
    start: usize,
    end: usize,
    out: &mut DialedNumber,
) -> Option<Result<(), DialedNumberError>> {
    let n = end - start;
    if n > 16 {
        return None;
    }
    let (digits, separators) = super::scan::digits_and_dial_separators(buf, start)?;
    let wanted = (1u32 << n) - 1;
    if (digits | separators) & wanted != wanted {
        return None;
    }
    let mut rest = digits & wanted;
    let mut len = 0usize;
    while rest != 0 {
        out.digits[len] = buf[start + rest.trailing_zeros() as usize];
        len += 1;
        rest &= rest - 1;
    }
    out.len = len as u8;
    Some(if len == 0 {
        Err(DialedNumberError::NoNumber)
    } else {
        Ok(())
    })
}

/// The dialed number of `number` byte by byte, escapes decoded.
fn digits_escaped(number: &[u8], out: &mut DialedNumber) -> Result<(), DialedNumberError> {
    // The count stays in a register; `out.len` is written on the way out.
    let mut len = 0usize;
    let mut i = 0;
    while i < number.len() {
        let mut b = number[i];
        if b == b'%' {
            let hi = number.get(i + 1).copied().and_then(hex_value);
            let lo = number.get(i + 2).copied().and_then(hex_value);
            match (hi, lo) {
                (Some(h), Some(l)) => {
                    b = h << 4 | l;
                    i += 2;
                }
                _ => {
                    out.len = len as u8;
                    return Err(DialedNumberError::NotANumber);
                }
            }
        }
        i += 1;
        match b {
            b'0'..=b'9' => {
                if len >= MAX_DIALED_DIGITS {
                    out.len = 0;
                    return Err(DialedNumberError::TooLong);
                }
                out.digits[len] = b;
                len += 1;
            }
            b'+' | b'-' | b'.' | b'(' | b')' | b' ' => {}
            _ => {
                out.len = 0;
                return Err(DialedNumberError::NotANumber);
            }
        }
    }
    out.len = len as u8;
    if len == 0 {
        return Err(DialedNumberError::NoNumber);
    }
    Ok(())
}

/// The longest dialed number kept, in digits. E.164 numbers have at most 15;
/// the rest is room for prefixes and carrier codes.
pub const MAX_DIALED_DIGITS: usize = 32;

/// A dialed number (ASCII digits only) held inline, so that taking it from a
/// message does not allocate. Filled by [`Uri::dialed_number`] and
/// [`Message::dialed_number`](super::Message::dialed_number).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DialedNumber {
    len: u8,
    digits: [u8; MAX_DIALED_DIGITS],
}

impl Default for DialedNumber {
    fn default() -> Self {
        Self::new()
    }
}

impl DialedNumber {
    /// An empty number, ready to be filled.
    pub const fn new() -> Self {
        DialedNumber {
            len: 0,
            digits: [0; MAX_DIALED_DIGITS],
        }
    }

    /// A number from ASCII digits (for route tables and tests).
    pub fn from_digits(digits: &[u8]) -> Result<Self, DialedNumberError> {
        if digits.is_empty() {
            return Err(DialedNumberError::NoNumber);
        }
        if digits.len() > MAX_DIALED_DIGITS {
            return Err(DialedNumberError::TooLong);
        }
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(DialedNumberError::NotANumber);
        }
        let mut n = Self::new();
        n.digits[..digits.len()].copy_from_slice(digits);
        n.len = digits.len() as u8;
        Ok(n)
    }

    /// The digits, as ASCII.
    pub fn as_bytes(&self) -> &[u8] {
        &self.digits[..self.len as usize]
    }

    /// The digits as a string.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored.
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// How many digits.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether there are no digits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for DialedNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DialedNumber({})", self.as_str())
    }
}

impl fmt::Display for DialedNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a URI has no dialed number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DialedNumberError {
    /// The URI has no user part (or is not sip, sips or tel), or it holds only separators.
    #[error("the URI has no user part or number")]
    NoNumber,
    /// The user part holds something other than digits and visual separators.
    #[error("the user part is not a telephone number")]
    NotANumber,
    /// More digits than [`MAX_DIALED_DIGITS`].
    #[error("the number has more than {MAX_DIALED_DIGITS} digits")]
    TooLong,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separated_digits_agree_with_the_byte_loop() {
        // Every number of up to 18 bytes over these bytes, written inside a
        // longer buffer (so the SSE2 look can load) and at its very end.
        const BYTES: &[u8] = b"07+-.() %3;a";
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let len = (rng % 19) as usize;
            let number: Vec<u8> = (0..len)
                .map(|i| BYTES[((rng >> (8 + 3 * i)) as usize + i) % BYTES.len()])
                .collect();
            let cut = number.iter().position(|&b| b == b';').unwrap_or(len);
            let mut want = DialedNumber::new();
            let want_result = digits_escaped(&number[..cut], &mut want);
            for tail in [&b""[..], b"@edge.example.com;user=phone"] {
                let buf = [&b"sip:"[..], &number, tail].concat();
                let mut got = DialedNumber::new();
                let got_result = digits_in(&buf, 4, 4 + len, &mut got);
                assert_eq!(
                    (got_result, got),
                    (want_result, want),
                    "{:?}",
                    String::from_utf8_lossy(&buf)
                );
            }
        }
    }

    fn dialed(s: &str) -> Result<String, DialedNumberError> {
        let u = Uri::parse(s.as_bytes()).unwrap();
        let mut n = DialedNumber::new();
        u.dialed_number(&mut n).map(|_| n.as_str().to_owned())
    }

    #[test]
    fn sip_uri_splits_user_password_host_port_params_headers() {
        let u =
            Uri::parse(b"sip:alice:secret@example.com:5070;transport=udp;lr?Subject=hi").unwrap();
        assert_eq!(u.scheme(), Scheme::Sip);
        assert_eq!(u.user(), Some(&b"alice"[..]));
        assert_eq!(u.password(), Some(&b"secret"[..]));
        assert_eq!(u.host(), Some(Host::Name(b"example.com")));
        assert_eq!(u.port(), Some(5070));
        assert_eq!(u.params().get(b"transport"), Some(Some(&b"udp"[..])));
        assert_eq!(u.params().get(b"lr"), Some(None));
        assert_eq!(u.headers(), Some(&b"Subject=hi"[..]));
    }

    #[test]
    fn sips_scheme_is_case_insensitive() {
        assert_eq!(
            Uri::parse(b"SIPS:bob@example.com").unwrap().scheme(),
            Scheme::Sips
        );
    }

    #[test]
    fn ipv4_and_ipv6_hosts_are_typed() {
        let u = Uri::parse(b"sip:192.0.2.1:5060").unwrap();
        assert_eq!(u.host(), Some(Host::Ipv4(Ipv4Addr::new(192, 0, 2, 1))));
        let u = Uri::parse(b"sip:[2001:db8::10]:5070").unwrap();
        assert_eq!(u.host(), Some(Host::Ipv6("2001:db8::10".parse().unwrap())));
        assert_eq!(u.port(), Some(5070));
    }

    #[test]
    fn port_inside_ipv6_brackets_is_part_of_the_address() {
        // RFC 5118 section 4.3.
        let u = Uri::parse(b"sip:[2001:db8::10:5070]").unwrap();
        assert_eq!(
            u.host(),
            Some(Host::Ipv6("2001:db8::10:5070".parse().unwrap()))
        );
        assert_eq!(u.port(), None);
    }

    #[test]
    fn unbracketed_ipv6_is_rejected() {
        // RFC 5118 section 4.2.
        assert_eq!(
            Uri::parse(b"sip:2001:db8::10").unwrap_err().kind,
            ErrorKind::BadHost
        );
    }

    #[test]
    fn three_colon_ipv6_before_ipv4_is_tolerated() {
        // RFC 5118 section 4.10.
        let u = Uri::parse(b"sip:user@[2001:db8:::192.0.2.1]").unwrap();
        assert_eq!(
            u.host(),
            Some(Host::Ipv6("2001:db8::192.0.2.1".parse().unwrap()))
        );
        assert!(Uri::parse(b"sip:user@[2001:db8:::10]").is_err());
    }

    #[test]
    fn bad_ipv4_is_rejected() {
        assert_eq!(
            Uri::parse(b"sip:256.1.1.1").unwrap_err().kind,
            ErrorKind::BadHost
        );
    }

    #[test]
    fn port_above_65535_is_rejected() {
        assert_eq!(
            Uri::parse(b"sip:a.example:65536").unwrap_err().kind,
            ErrorKind::BadPort
        );
    }

    #[test]
    fn user_part_may_hold_semicolons_and_question_marks() {
        // RFC 4475 section 3.1.1.2.
        let u = Uri::parse(
            b"sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
        )
        .unwrap();
        assert_eq!(
            u.user(),
            Some(&b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"[..])
        );
        assert_eq!(
            u.password(),
            Some(&b"&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"[..])
        );
        assert_eq!(u.host(), Some(Host::Name(b"example.com")));
    }

    #[test]
    fn bad_escape_in_user_is_rejected() {
        assert_eq!(
            Uri::parse(b"sip:a%4g@example.com").unwrap_err().kind,
            ErrorKind::BadEscape
        );
    }

    #[test]
    fn missing_scheme_is_rejected() {
        assert_eq!(
            Uri::parse(b"<sip:a@b>").unwrap_err().kind,
            ErrorKind::BadUri
        );
        assert_eq!(
            Uri::parse(b"example.com").unwrap_err().kind,
            ErrorKind::BadUri
        );
    }

    #[test]
    fn unknown_schemes_are_kept_opaque() {
        let u = Uri::parse(b"soap.beep://192.0.2.103:3002").unwrap();
        assert_eq!(u.scheme(), Scheme::Other(b"soap.beep"));
        assert_eq!(u.opaque(), b"//192.0.2.103:3002");
    }

    #[test]
    fn tel_uri_number_and_params() {
        let u = Uri::parse(b"tel:+1-201-555-0123;phone-context=example.com").unwrap();
        assert_eq!(u.scheme(), Scheme::Tel);
        assert_eq!(u.user(), Some(&b"+1-201-555-0123"[..]));
        assert_eq!(
            u.params().get(b"phone-context"),
            Some(Some(&b"example.com"[..]))
        );
        assert!(Uri::parse(b"tel:;x").is_err());
    }

    #[test]
    fn dialed_number_strips_visual_separators() {
        assert_eq!(
            dialed("sip:+1-(201).555-0123@example.com;user=phone").unwrap(),
            "12015550123"
        );
        assert_eq!(dialed("tel:+1-201-555-0123").unwrap(), "12015550123");
    }

    #[test]
    fn dialed_number_decodes_percent_escapes() {
        assert_eq!(
            dialed("sip:%2B44%2020%207946%200000@example.com").unwrap(),
            "442079460000"
        );
    }

    #[test]
    fn dialed_number_stops_at_subscriber_parameters() {
        assert_eq!(
            dialed("sip:5551234;phone-context=+1212@example.com").unwrap(),
            "5551234"
        );
    }

    #[test]
    fn dialed_number_rejects_names_and_long_numbers() {
        assert_eq!(
            dialed("sip:alice@example.com").unwrap_err(),
            DialedNumberError::NotANumber
        );
        assert_eq!(
            dialed("sip:example.com").unwrap_err(),
            DialedNumberError::NoNumber
        );
        assert_eq!(
            dialed("sip:null-%00-null@example.com").unwrap_err(),
            DialedNumberError::NotANumber
        );
        let long = format!("sip:{}@example.com", "1".repeat(33));
        assert_eq!(dialed(&long).unwrap_err(), DialedNumberError::TooLong);
        let max = format!("sip:{}@example.com", "1".repeat(32));
        assert_eq!(dialed(&max).unwrap().len(), 32);
    }

    #[test]
    fn sos_urns_and_their_sub_services_are_recognised() {
        for (text, sos) in [
            ("urn:service:sos", true),
            ("URN:Service:SOS", true),
            ("urn:service:sos.police", true),
            ("urn:service:sos.ambulance", true),
            ("urn:service:sosx", false),
            ("urn:service:counseling", false),
            ("urn:nena:service:sos", false),
            ("sip:911@198.18.0.1", false),
            ("tel:911", false),
        ] {
            let u = uri(text.as_bytes()).unwrap();
            assert_eq!(u.is_sos_urn(), sos, "{text}");
        }
    }
}
