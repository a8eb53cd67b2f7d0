//! Typed views of the header values a proxy reads: Via, name-addr headers
//! (From, To, Contact, Route, Record-Route), CSeq, methods, and the checks
//! for Call-ID, Date and the numeric headers. Each parser takes the value as
//! the header line holds it (folds included) and borrows from it.

use std::fmt;
use std::net::IpAddr;

use super::error::{ErrorKind, Fail, ParseError, Res};
use super::grammar::{
    decimal, expect_token, params, quoted_string, skip_sws, span, starts_with_lws, ParamStyle,
    Params, TOKEN, WORD,
};
use super::uri::{self, Host, Uri};

/// A SIP method. Methods are case-sensitive (RFC 3261 section 7.1); any
/// token is a valid method, unknown ones are kept as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method<'a> {
    /// INVITE
    Invite,
    /// ACK
    Ack,
    /// BYE
    Bye,
    /// CANCEL
    Cancel,
    /// OPTIONS
    Options,
    /// REGISTER
    Register,
    /// PRACK (RFC 3262)
    Prack,
    /// SUBSCRIBE (RFC 6665)
    Subscribe,
    /// NOTIFY (RFC 6665)
    Notify,
    /// PUBLISH (RFC 3903)
    Publish,
    /// INFO (RFC 6086)
    Info,
    /// REFER (RFC 3515)
    Refer,
    /// MESSAGE (RFC 3428)
    Message,
    /// UPDATE (RFC 3311)
    Update,
    /// Any other token.
    Other(&'a [u8]),
}

impl<'a> Method<'a> {
    /// The method named by `token` (compared with case).
    pub fn from_bytes(token: &'a [u8]) -> Method<'a> {
        // Dispatch on length and first byte, then compare once against a
        // fixed-size name (a few loads and compares, no memcmp call).
        fn is<const N: usize>(token: &[u8], name: &[u8; N]) -> bool {
            <&[u8; N]>::try_from(token).is_ok_and(|t| t == name)
        }
        let (candidate, matched) = match (token.len(), token.first()) {
            (3, Some(b'A')) => (Method::Ack, is(token, b"ACK")),
            (3, Some(b'B')) => (Method::Bye, is(token, b"BYE")),
            (4, Some(b'I')) => (Method::Info, is(token, b"INFO")),
            (5, Some(b'P')) => (Method::Prack, is(token, b"PRACK")),
            (5, Some(b'R')) => (Method::Refer, is(token, b"REFER")),
            (6, Some(b'I')) => (Method::Invite, is(token, b"INVITE")),
            (6, Some(b'C')) => (Method::Cancel, is(token, b"CANCEL")),
            (6, Some(b'N')) => (Method::Notify, is(token, b"NOTIFY")),
            (6, Some(b'U')) => (Method::Update, is(token, b"UPDATE")),
            (7, Some(b'O')) => (Method::Options, is(token, b"OPTIONS")),
            (7, Some(b'P')) => (Method::Publish, is(token, b"PUBLISH")),
            (7, Some(b'M')) => (Method::Message, is(token, b"MESSAGE")),
            (8, Some(b'R')) => (Method::Register, is(token, b"REGISTER")),
            (9, Some(b'S')) => (Method::Subscribe, is(token, b"SUBSCRIBE")),
            _ => return Method::Other(token),
        };
        if matched {
            candidate
        } else {
            Method::Other(token)
        }
    }

    /// The method as written on the wire.
    pub fn as_bytes(&self) -> &'a [u8] {
        match *self {
            Method::Invite => b"INVITE",
            Method::Ack => b"ACK",
            Method::Bye => b"BYE",
            Method::Cancel => b"CANCEL",
            Method::Options => b"OPTIONS",
            Method::Register => b"REGISTER",
            Method::Prack => b"PRACK",
            Method::Subscribe => b"SUBSCRIBE",
            Method::Notify => b"NOTIFY",
            Method::Publish => b"PUBLISH",
            Method::Info => b"INFO",
            Method::Refer => b"REFER",
            Method::Message => b"MESSAGE",
            Method::Update => b"UPDATE",
            Method::Other(m) => m,
        }
    }
}

impl fmt::Display for Method<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

/// The transport of a Via (`SIP/2.0/UDP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport<'a> {
    /// UDP
    Udp,
    /// TCP
    Tcp,
    /// TLS
    Tls,
    /// SCTP
    Sctp,
    /// WS (RFC 7118)
    Ws,
    /// WSS (RFC 7118)
    Wss,
    /// Any other token, as written.
    Other(&'a [u8]),
}

impl<'a> Transport<'a> {
    #[inline]
    fn from_bytes(t: &'a [u8]) -> Transport<'a> {
        let lower = |i: usize| t.get(i).map_or(0, |b| b | 0x20);
        match (t.len(), lower(0), lower(1), lower(2), lower(3)) {
            (3, b'u', b'd', b'p', _) => Transport::Udp,
            (3, b't', b'c', b'p', _) => Transport::Tcp,
            (3, b't', b'l', b's', _) => Transport::Tls,
            (4, b's', b'c', b't', b'p') => Transport::Sctp,
            (2, b'w', b's', _, _) => Transport::Ws,
            (3, b'w', b's', b's', _) => Transport::Wss,
            _ => Transport::Other(t),
        }
    }
}

/// The `rport` parameter of a Via (RFC 3581).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rport {
    /// No `rport` parameter.
    #[default]
    Absent,
    /// `;rport` without a value: the client asks for the source port.
    Requested,
    /// `;rport=N`, filled in by the server that received the request.
    Port(u16),
}

/// One Via value (`via-parm`, RFC 3261 section 20.42).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    raw: &'a [u8],
    protocol: &'a [u8],
    version: &'a [u8],
    transport: Transport<'a>,
    host: Host<'a>,
    port: Option<u16>,
    params: &'a [u8],
    branch: Option<&'a [u8]>,
    received: Option<IpAddr>,
    rport: Rport,
    maddr: Option<&'a [u8]>,
    ttl: Option<u8>,
}

/// The RFC 3261 branch prefix that marks a branch as unique (section 8.1.1.7).
pub const BRANCH_MAGIC_COOKIE: &[u8] = b"z9hG4bK";

impl<'a> Via<'a> {
    /// Parses one via-parm that fills `s` (no comma list).
    pub fn parse(s: &'a [u8]) -> Result<Via<'a>, ParseError> {
        match via_parm(s) {
            Ok((v, rest)) if skip_sws(rest).is_empty() => Ok(v),
            Ok((_, rest)) => Err(Fail::at(ErrorKind::BadVia, rest).relative_to(s)),
            Err(f) => Err(f.relative_to(s)),
        }
    }

    /// The value as written.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// The protocol name (`SIP`).
    pub fn protocol(&self) -> &'a [u8] {
        self.protocol
    }

    /// The protocol version (`2.0`).
    pub fn version(&self) -> &'a [u8] {
        self.version
    }

    /// The transport.
    pub fn transport(&self) -> Transport<'a> {
        self.transport
    }

    /// The host of sent-by.
    pub fn host(&self) -> Host<'a> {
        self.host
    }

    /// The port of sent-by, if written (5060 is implied for UDP when absent).
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The branch parameter.
    pub fn branch(&self) -> Option<&'a [u8]> {
        self.branch
    }

    /// Whether the branch starts with the RFC 3261 magic cookie `z9hG4bK`.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch
            .is_some_and(|b| b.starts_with(BRANCH_MAGIC_COOKIE))
    }

    /// The received parameter (brackets around IPv6 tolerated, RFC 5118 section 4.5).
    pub fn received(&self) -> Option<IpAddr> {
        self.received
    }

    /// The rport parameter.
    pub fn rport(&self) -> Rport {
        self.rport
    }

    /// The maddr parameter, as written.
    pub fn maddr(&self) -> Option<&'a [u8]> {
        self.maddr
    }

    /// The ttl parameter.
    pub fn ttl(&self) -> Option<u8> {
        self.ttl
    }

    /// All parameters, in order, including the ones with their own accessor.
    pub fn params(&self) -> Params<'a> {
        Params::new(self.params, ParamStyle::Header)
    }

    /// Where a response to this Via goes (RFC 3261 section 18.2.2 with RFC
    /// 3581): the received address if present, else the sent-by host when it
    /// is an IP literal; the rport value if present, else the sent-by port,
    /// else 5060. `None` when the host is a name that would need DNS.
    pub fn response_target(&self) -> Option<std::net::SocketAddr> {
        let ip = self.received.or_else(|| self.host.ip())?;
        let port = match self.rport {
            Rport::Port(p) => p,
            _ => self.port.unwrap_or(5060),
        };
        Some(std::net::SocketAddr::new(ip, port))
    }
}

/// Stands in for the top Via until the message's Via is parsed.
pub(crate) const PLACEHOLDER_VIA: Via<'static> = Via {
    raw: &[],
    protocol: &[],
    version: &[],
    transport: Transport::Udp,
    host: Host::Name(&[]),
    port: None,
    params: &[],
    branch: None,
    received: None,
    rport: Rport::Absent,
    maddr: None,
    ttl: None,
};

/// Skips `SWS sep SWS`; `None` when the separator is not next.
#[inline]
fn separator(s: &[u8], sep: u8) -> Option<&[u8]> {
    match skip_sws(s).split_first() {
        Some((&b, rest)) if b == sep => Some(skip_sws(rest)),
        _ => None,
    }
}

/// The parameters of a Via that have their own accessor, as they are read.
#[derive(Default)]
struct ViaParams<'a> {
    branch: Option<&'a [u8]>,
    received: Option<IpAddr>,
    rport: Rport,
    maddr: Option<&'a [u8]>,
    ttl: Option<u8>,
}

impl<'a> ViaParams<'a> {
    /// Reads one parameter; `at` is the parameter as written, for errors.
    #[inline(always)]
    fn read(&mut self, name: &'a [u8], value: Option<&'a [u8]>, at: &[u8]) -> Res<()> {
        let bad = || Fail::at(ErrorKind::BadVia, at);
        // Dispatch on the length first: most parameters are branch and rport.
        match name.len() {
            6 if name.eq_ignore_ascii_case(b"branch") => self.branch = Some(value.ok_or_else(bad)?),
            5 if name.eq_ignore_ascii_case(b"rport") => {
                self.rport = match value {
                    None => Rport::Requested,
                    Some(v) => Rport::Port(decimal(v, 65535).ok_or_else(bad)? as u16),
                };
            }
            8 if name.eq_ignore_ascii_case(b"received") => {
                let v = value.ok_or_else(bad)?;
                let v = v
                    .strip_prefix(b"[")
                    .and_then(|v| v.strip_suffix(b"]"))
                    .unwrap_or(v);
                let ip = match uri::ipv4(v) {
                    Some(a) => IpAddr::V4(a),
                    None => IpAddr::V6(uri::ipv6(v).ok_or_else(bad)?),
                };
                self.received = Some(ip);
            }
            5 if name.eq_ignore_ascii_case(b"maddr") => {
                let v = value.ok_or_else(bad)?;
                uri::host(v)
                    .ok()
                    .filter(|(_, r)| r.is_empty())
                    .ok_or_else(bad)?;
                self.maddr = Some(v);
            }
            3 if name.eq_ignore_ascii_case(b"ttl") => {
                self.ttl = Some(decimal(value.ok_or_else(bad)?, 255).ok_or_else(bad)? as u8);
            }
            _ => {}
        }
        Ok(())
    }
}

/// One via-parm at the start of `s`; returns it and the rest (which starts
/// at the white space or comma after it). Tries [`via_parm_fast`] first.
#[inline]
pub(crate) fn via_parm(s: &[u8]) -> Res<(Via<'_>, &[u8])> {
    match via_parm_fast(s) {
        Some(v) => Ok(v),
        None => via_parm_general(s),
    }
}

/// Whether `b` would make the general grammar skip white space or a fold
/// here: the fast path leaves such values to [`via_parm_general`].
#[inline(always)]
fn is_ws_or_cr(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r')
}

/// The common shape of a via-parm in one forward pass: `SIP/2.0/` (any
/// case), a transport token, one space, sent-by without white space, and
/// parameters written `;name` or `;name=value` without white space or
/// quotes. Returns exactly what [`via_parm_general`] returns for such a
/// value, and `None` for anything else (any white space, fold, quote,
/// IPv6 reference, error), which then goes the general way, so errors and
/// their offsets are the general parser's.
#[inline(always)]
pub(crate) fn via_parm_fast(s: &[u8]) -> Option<(Via<'_>, &[u8])> {
    use super::grammar::{is, GEN_VALUE};
    let prefix = s.get(..8)?;
    if !prefix.eq_ignore_ascii_case(b"SIP/2.0/") {
        return None;
    }
    let mut i = 8;
    // transport token, then exactly one space.
    while i < s.len() && is(s[i], TOKEN) {
        i += 1;
    }
    if i == 8 || s.get(i) != Some(&b' ') {
        return None;
    }
    let transport = &s[8..i];
    i += 1;
    // sent-by host: a dotted quad in the same pass, else `uri::host`.
    let host_start = i;
    let mut octets = [0u8; 4];
    let mut part = 0usize;
    let mut value: u32 = 0;
    let mut digits = 0u32;
    let mut quad = true;
    while let Some(&b) = s.get(i) {
        match b {
            b'0'..=b'9' => {
                if quad {
                    value = value * 10 + u32::from(b - b'0');
                    digits += 1;
                    if digits > 3 || value > 255 {
                        quad = false;
                    }
                }
            }
            b'.' => {
                if digits == 0 || part >= 3 {
                    quad = false;
                } else {
                    octets[part] = value as u8;
                }
                part += 1;
                value = 0;
                digits = 0;
            }
            _ if is(b, super::grammar::HOST) => quad = false,
            _ => break,
        }
        i += 1;
    }
    let host = if quad && part == 3 && digits > 0 {
        octets[3] = value as u8;
        Host::Ipv4(std::net::Ipv4Addr::from(octets))
    } else {
        if s.get(i) == Some(&b'[') || i == host_start {
            return None;
        }
        let (host, rest) = uri::host(&s[host_start..]).ok()?;
        if rest.len() != s.len() - i {
            return None;
        }
        host
    };
    // [":" port]
    let mut port = None;
    if s.get(i) == Some(&b':') {
        i += 1;
        let start = i;
        let mut p: u32 = 0;
        while let Some(&b) = s.get(i) {
            if !b.is_ascii_digit() {
                break;
            }
            p = p * 10 + u32::from(b - b'0');
            if p > 65535 {
                return None;
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        port = Some(p as u16);
    }
    // *( ";" name [ "=" value ] )
    let params_start = i;
    let mut read = ViaParams::default();
    while s.get(i) == Some(&b';') {
        let at = &s[i..];
        i += 1;
        let name_start = i;
        // Letters, digits, '-' and '.' (all TOKEN) sixteen at a time while
        // sixteen bytes are left, then byte by byte.
        i = super::scan::skip_alnum_dash_dot(s, i);
        while i < s.len() && is(s[i], TOKEN) {
            i += 1;
        }
        if i == name_start {
            return None;
        }
        let name = &s[name_start..i];
        let value = if s.get(i) == Some(&b'=') {
            i += 1;
            let value_start = i;
            // Long values (branches) are mostly letters, digits and '-',
            // all of them GEN_VALUE: sixteen at a time, then byte by byte.
            i = super::scan::skip_alnum_dash_dot(s, i);
            while i < s.len() && is(s[i], GEN_VALUE) {
                i += 1;
            }
            if i == value_start {
                return None;
            }
            Some(&s[value_start..i])
        } else {
            None
        };
        if s.get(i).is_some_and(|&b| is_ws_or_cr(b)) {
            return None;
        }
        read.read(name, value, at).ok()?;
    }
    if s.get(i).is_some_and(|&b| is_ws_or_cr(b)) {
        return None;
    }
    Some((
        Via {
            raw: &s[..i],
            protocol: &s[..3],
            version: &s[4..7],
            transport: Transport::from_bytes(transport),
            host,
            port,
            params: &s[params_start..i],
            branch: read.branch,
            received: read.received,
            rport: read.rport,
            maddr: read.maddr,
            ttl: read.ttl,
        },
        &s[i..],
    ))
}

/// One via-parm by the full grammar (white space and folds anywhere the
/// RFC allows them).
#[inline]
pub(crate) fn via_parm_general(s: &[u8]) -> Res<(Via<'_>, &[u8])> {
    let start = skip_sws(s);
    // sent-protocol = protocol-name SLASH protocol-version SLASH transport;
    // nearly every Via is written `SIP/2.0/...` without white space.
    let (protocol, version, rest) = match start.get(..8) {
        Some(p) if p.eq_ignore_ascii_case(b"SIP/2.0/") => (&start[..3], &start[4..7], &start[8..]),
        _ => {
            let (protocol, rest) = expect_token(start, ErrorKind::BadVia)?;
            let rest = separator(rest, b'/').ok_or(Fail::at(ErrorKind::BadVia, rest))?;
            let (version, rest) = expect_token(rest, ErrorKind::BadVia)?;
            let rest = separator(rest, b'/').ok_or(Fail::at(ErrorKind::BadVia, rest))?;
            (protocol, version, rest)
        }
    };
    let (transport, rest) = expect_token(rest, ErrorKind::BadVia)?;
    if !starts_with_lws(rest) {
        return Err(Fail::at(ErrorKind::BadVia, rest));
    }
    let rest = skip_sws(rest);
    let (host, rest) = uri::host(rest)?;
    let (port, rest) = match separator(rest, b':') {
        Some(p) => {
            let (p, rest) = uri::port(p)?;
            (Some(p), rest)
        }
        None => (None, rest),
    };
    let mut read = ViaParams::default();
    let (params, rest) = params(rest, ParamStyle::Header, |name, value, at| {
        read.read(name, value, at)
    })?;
    let raw_len = rest.as_ptr() as usize - start.as_ptr() as usize;
    Ok((
        Via {
            raw: &start[..raw_len],
            protocol,
            version,
            transport: Transport::from_bytes(transport),
            host,
            port,
            params,
            branch: read.branch,
            received: read.received,
            rport: read.rport,
            maddr: read.maddr,
            ttl: read.ttl,
        },
        rest,
    ))
}

/// After a list element: `Ok(Some(next))` at a comma, `Ok(None)` at the end
/// of the value, an error of `kind` at anything else.
#[inline]
pub(crate) fn list_next(rest: &[u8], kind: ErrorKind) -> Res<Option<&[u8]>> {
    let r = skip_sws(rest);
    match r.split_first() {
        None => Ok(None),
        Some((&b',', next)) => Ok(Some(skip_sws(next))),
        Some(_) => Err(Fail::at(kind, r)),
    }
}

/// Validates a whole Via header value (a comma list) and returns the first
/// via-parm.
#[inline]
pub(crate) fn via_list(value: &[u8]) -> Res<Via<'_>> {
    let (first, mut rest) = via_parm(value)?;
    while let Some(next) = list_next(rest, ErrorKind::BadVia)? {
        rest = via_parm(next)?.1;
    }
    Ok(first)
}

/// A name-addr or addr-spec with header parameters: the value of From, To,
/// Contact, Route and Record-Route (RFC 3261 section 20.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    raw: &'a [u8],
    display_name: Option<&'a [u8]>,
    uri: Uri<'a>,
    params: &'a [u8],
    tag: Option<&'a [u8]>,
}

impl<'a> NameAddr<'a> {
    /// Parses one value that fills `s` (no comma list).
    pub fn parse(s: &'a [u8]) -> Result<NameAddr<'a>, ParseError> {
        match name_addr(s) {
            Ok((v, rest)) if skip_sws(rest).is_empty() => Ok(v),
            Ok((_, rest)) => Err(Fail::at(ErrorKind::BadNameAddr, rest).relative_to(s)),
            Err(f) => Err(f.relative_to(s)),
        }
    }

    /// The value as written.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// The display name as written: a quoted string keeps its quotes and
    /// escapes, a run of tokens keeps its inner white space.
    pub fn display_name(&self) -> Option<&'a [u8]> {
        self.display_name
    }

    /// The URI.
    pub fn uri(&self) -> &Uri<'a> {
        &self.uri
    }

    /// The header parameters (after the URI or the closing `>`).
    pub fn params(&self) -> Params<'a> {
        Params::new(self.params, ParamStyle::Header)
    }

    /// The tag parameter (From and To, RFC 3261 section 19.3).
    pub fn tag(&self) -> Option<&'a [u8]> {
        self.tag
    }
}

/// One name-addr or addr-spec with its parameters at the start of `s`.
#[inline]
pub(crate) fn name_addr(s: &[u8]) -> Res<(NameAddr<'_>, &[u8])> {
    let start = skip_sws(s);
    let (display_name, after_display) = match start.first() {
        Some(b'"') => {
            let (q, rest) = quoted_string(start)?;
            (Some(q), skip_sws(rest))
        }
        Some(b'<') => (None, start),
        Some(_) => {
            // Either `*(token LWS) "<"` or an addr-spec whose scheme is the
            // first token.
            let mut cur = start;
            let mut end = start;
            loop {
                let n = span(cur, TOKEN);
                if n == 0 {
                    break;
                }
                end = &cur[n..];
                cur = skip_sws(end);
            }
            match cur.first() {
                Some(b'<') => {
                    let len = end.as_ptr() as usize - start.as_ptr() as usize;
                    if len == 0 {
                        (None, cur)
                    } else {
                        (Some(&start[..len]), cur)
                    }
                }
                Some(b':') if cur.as_ptr() == end.as_ptr() => (None, start),
                _ => return Err(Fail::at(ErrorKind::BadDisplayName, cur)),
            }
        }
        None => return Err(Fail::at(ErrorKind::BadNameAddr, start)),
    };
    let (uri, rest) = if let Some(inner) = after_display.strip_prefix(b"<") {
        let Some(close) = memchr::memchr(b'>', inner) else {
            return Err(Fail::at(ErrorKind::BadNameAddr, after_display));
        };
        (uri::uri(&inner[..close])?, &inner[close + 1..])
    } else {
        if display_name.is_some() {
            return Err(Fail::at(ErrorKind::BadNameAddr, after_display));
        }
        // addr-spec: the URI ends at the first separator of the header
        // grammar. A URI holding ',', ';' or '?' must be in angle brackets
        // (RFC 3261 section 20.10), so URI headers here are an error.
        let n = after_display
            .iter()
            .position(|&b| matches!(b, b';' | b',' | b' ' | b'\t' | b'\r'))
            .unwrap_or(after_display.len());
        let u = uri::uri(&after_display[..n])?;
        if u.headers().is_some() {
            return Err(Fail::at(ErrorKind::BadNameAddr, after_display));
        }
        (u, &after_display[n..])
    };
    let mut tag = None;
    let (params, rest) = params(rest, ParamStyle::Header, |name, value, at| {
        // The first tag counts, as in `light_tag`.
        if tag.is_none() && name.eq_ignore_ascii_case(b"tag") {
            tag = Some(value.ok_or(Fail::at(ErrorKind::BadParam, at))?);
        }
        Ok(())
    })?;
    let raw_len = rest.as_ptr() as usize - start.as_ptr() as usize;
    Ok((
        NameAddr {
            raw: &start[..raw_len],
            display_name,
            uri,
            params,
            tag,
        },
        rest,
    ))
}

/// The tag parameter of a From or To value without checking the URI: skips
/// the display name and the URI by their delimiters and reads the header
/// parameters (RFC 3261 section 20.10: an addr-spec ends at the first `;`,
/// a name-addr at its `>`). The full check is [`single_name_addr`].
#[inline(always)]
pub(crate) fn light_tag(value: &[u8]) -> Res<Option<&[u8]>> {
    let mut s = value;
    if s.first() == Some(&b'"') {
        s = quoted_string(s)?.1;
    }
    // The first '<' or ';' (usually within a few bytes: a display name or
    // nothing precedes the URI) decides between name-addr and addr-spec.
    let mut i = 0;
    while i < s.len() && s[i] != b'<' && s[i] != b';' {
        i += 1;
    }
    let params_at = match s.get(i) {
        Some(b'<') => match super::scan::find_byte(s, i, b'>') {
            Some(j) => &s[j + 1..],
            None => return Err(Fail::at(ErrorKind::BadNameAddr, &s[i..])),
        },
        Some(_) => &s[i..],
        None => return Ok(None),
    };
    // Nearly always the tag comes first, written `;tag=value`: the general
    // loop below returns the same value for it. A name-addr with nothing
    // after its `>` (the To of a dialog-creating request) has no tag: the
    // loop finds no parameter in an empty slice either.
    if let Some(tag) = tag_first(params_at) {
        return Ok(Some(tag));
    }
    if params_at.is_empty() {
        return Ok(None);
    }
    tag_in_params(params_at)
}

/// The tag among the header parameters at `params_at`, read one parameter at
/// a time up to it (the ones after it are checked by the full parse,
/// [`single_name_addr`]).
fn tag_in_params(params_at: &[u8]) -> Res<Option<&[u8]>> {
    let mut rest = params_at;
    while let Some((name, value, next)) = super::grammar::one_param(rest, ParamStyle::Header)? {
        if name.len() == 3 && name.eq_ignore_ascii_case(b"tag") {
            return match value {
                Some(v) => Ok(Some(v)),
                None => Err(Fail::at(ErrorKind::BadParam, rest)),
            };
        }
        rest = next;
    }
    Ok(None)
}

/// `;tag=value` (name in any case, no white space, a value that is not a
/// quoted string) at the start of `s`: the value, as `one_param` reads it.
#[inline(always)]
fn tag_first(s: &[u8]) -> Option<&[u8]> {
    use super::grammar::{is, GEN_VALUE};
    match s {
        [b';', t, a, g, b'=', ..] if [*t, *a, *g].eq_ignore_ascii_case(b"tag") => {
            let v = &s[5..];
            let n = v.iter().position(|&b| !is(b, GEN_VALUE)).unwrap_or(v.len());
            (n > 0).then(|| &v[..n])
        }
        _ => None,
    }
}

/// A From or To value: exactly one name-addr.
#[inline]
pub(crate) fn single_name_addr(value: &[u8]) -> Res<NameAddr<'_>> {
    let (v, rest) = name_addr(value)?;
    let rest = skip_sws(rest);
    if !rest.is_empty() {
        return Err(Fail::at(ErrorKind::BadNameAddr, rest));
    }
    Ok(v)
}

/// Validates a Contact, Route or Record-Route value (a comma list).
/// `star_allowed` admits Contact's `*` (RFC 3261 section 20.10).
#[inline]
pub(crate) fn name_addr_list(value: &[u8], star_allowed: bool) -> Res<()> {
    if star_allowed && value == b"*" {
        return Ok(());
    }
    let mut rest = name_addr(value)?.1;
    while let Some(next) = list_next(rest, ErrorKind::BadNameAddr)? {
        rest = name_addr(next)?.1;
    }
    Ok(())
}

/// The CSeq value: sequence number and method (RFC 3261 section 20.16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// The sequence number, below 2^31.
    pub number: u32,
    /// The method.
    pub method: Method<'a>,
}

impl<'a> CSeq<'a> {
    /// Parses a CSeq value.
    pub fn parse(s: &'a [u8]) -> Result<CSeq<'a>, ParseError> {
        cseq(s).map_err(|f| f.relative_to(s))
    }
}

/// The largest CSeq number (RFC 3261 section 8.1.1.5: less than 2^31).
pub const MAX_CSEQ: u32 = (1 << 31) - 1;

#[inline]
pub(crate) fn cseq(s: &[u8]) -> Res<CSeq<'_>> {
    match cseq_fast(s) {
        Some(c) => Ok(c),
        None => cseq_general(s),
    }
}

/// `1*DIGIT SP token` filling `s` in one pass: what [`cseq_general`] returns
/// for it; `None` for any other shape (white space runs, folds, errors).
#[inline(always)]
fn cseq_fast(s: &[u8]) -> Option<CSeq<'_>> {
    let mut i = 0;
    // At most MAX_CSEQ * 10 + 9 before the check: no overflow in 64 bits.
    let mut number: u64 = 0;
    while let Some(&b) = s.get(i) {
        if !b.is_ascii_digit() {
            break;
        }
        number = number * 10 + u64::from(b - b'0');
        if number > u64::from(MAX_CSEQ) {
            return None;
        }
        i += 1;
    }
    if i == 0 || s.get(i) != Some(&b' ') {
        return None;
    }
    let method = &s[i + 1..];
    if method.is_empty() || !method.iter().all(|&b| super::grammar::is(b, TOKEN)) {
        return None;
    }
    Some(CSeq {
        number: number as u32,
        method: Method::from_bytes(method),
    })
}

#[inline]
fn cseq_general(s: &[u8]) -> Res<CSeq<'_>> {
    let v = skip_sws(s);
    let n = span(v, super::grammar::DIGIT);
    let number = decimal(&v[..n], u64::from(MAX_CSEQ)).ok_or(Fail::at(ErrorKind::BadCSeq, v))?;
    let rest = &v[n..];
    if !starts_with_lws(rest) {
        return Err(Fail::at(ErrorKind::BadCSeq, rest));
    }
    let (method, rest) = expect_token(skip_sws(rest), ErrorKind::BadCSeq)?;
    let rest = skip_sws(rest);
    if !rest.is_empty() {
        return Err(Fail::at(ErrorKind::BadCSeq, rest));
    }
    Ok(CSeq {
        number: number as u32,
        method: Method::from_bytes(method),
    })
}

/// `callid = word [ "@" word ]` (RFC 3261 section 25.1).
#[inline]
pub(crate) fn call_id(v: &[u8]) -> Res<()> {
    let n = span(v, WORD);
    if n == 0 {
        return Err(Fail::at(ErrorKind::BadCallId, v));
    }
    let rest = &v[n..];
    let rest = match rest.split_first() {
        Some((&b'@', host)) => {
            let m = span(host, WORD);
            if m == 0 {
                return Err(Fail::at(ErrorKind::BadCallId, host));
            }
            &host[m..]
        }
        _ => rest,
    };
    if !rest.is_empty() {
        return Err(Fail::at(ErrorKind::BadCallId, rest));
    }
    Ok(())
}

/// A value that is only `1*DIGIT` no greater than `max`, or `kind`.
#[inline]
pub(crate) fn number(v: &[u8], max: u64, kind: ErrorKind) -> Res<u64> {
    decimal(v, max).ok_or(Fail::at(kind, v))
}

/// `rfc1123-date = wkday "," SP date1 SP time SP "GMT"` (RFC 3261 section 20.17).
pub(crate) fn date(v: &[u8]) -> Res<()> {
    const DAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let bad = || Fail::at(ErrorKind::BadDate, v);
    // "Fri, 01 Jan 2010 16:00:00 GMT"
    if v.len() != 29 {
        return Err(bad());
    }
    let digits = |r: std::ops::Range<usize>| v[r].iter().all(u8::is_ascii_digit);
    let ok = DAYS.contains(&&v[0..3])
        && &v[3..5] == b", "
        && digits(5..7)
        && v[7] == b' '
        && MONTHS.contains(&&v[8..11])
        && v[11] == b' '
        && digits(12..16)
        && v[16] == b' '
        && digits(17..19)
        && v[19] == b':'
        && digits(20..22)
        && v[22] == b':'
        && digits(23..25)
        && &v[25..29] == b" GMT";
    if ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// The next name-addr of a comma list and the rest after its comma (empty
/// at the end of the list).
#[inline]
pub(crate) fn next_name_addr(rest: &[u8]) -> Res<(NameAddr<'_>, &[u8])> {
    let (v, after) = name_addr(rest)?;
    let next = list_next(after, ErrorKind::BadNameAddr)?;
    Ok((v, next.unwrap_or(&[])))
}

/// The next via-parm of a comma list and the rest after its comma.
#[inline]
pub(crate) fn next_via(rest: &[u8]) -> Res<(Via<'_>, &[u8])> {
    let (v, after) = via_parm(rest)?;
    let next = list_next(after, ErrorKind::BadVia)?;
    Ok((v, next.unwrap_or(&[])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn via_with_folding_and_spaces_around_slashes() {
        // RFC 4475 section 3.1.1.1.
        let v = Via::parse(b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.protocol(), b"SIP");
        assert_eq!(v.version(), b"2.0");
        assert_eq!(v.transport(), Transport::Udp);
        assert_eq!(v.host(), Host::Ipv4(Ipv4Addr::new(192, 0, 2, 2)));
        assert_eq!(v.branch(), Some(&b"390skdjuw"[..]));
        assert!(!v.has_rfc3261_branch());
    }

    #[test]
    fn via_params_received_rport_maddr_ttl() {
        let v = Via::parse(
            b"SIP/2.0/UDP pc33.example.com:5066;branch=z9hG4bK776;received=192.0.2.4;rport=5067;maddr=239.1.1.1;ttl=16;x=y",
        )
        .unwrap();
        assert_eq!(v.port(), Some(5066));
        assert!(v.has_rfc3261_branch());
        assert_eq!(v.received(), Some("192.0.2.4".parse().unwrap()));
        assert_eq!(v.rport(), Rport::Port(5067));
        assert_eq!(v.maddr(), Some(&b"239.1.1.1"[..]));
        assert_eq!(v.ttl(), Some(16));
        assert_eq!(v.params().get(b"x"), Some(Some(&b"y"[..])));
        assert_eq!(v.response_target(), Some("192.0.2.4:5067".parse().unwrap()));
    }

    #[test]
    fn via_rport_without_value_is_a_request() {
        let v = Via::parse(b"SIP/2.0/UDP 192.0.2.1;rport;branch=z9hG4bKx").unwrap();
        assert_eq!(v.rport(), Rport::Requested);
        assert_eq!(v.response_target(), Some("192.0.2.1:5060".parse().unwrap()));
    }

    #[test]
    fn via_ipv6_sent_by_and_received_with_or_without_brackets() {
        // RFC 5118 section 4.5.
        let a = Via::parse(
            b"SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bKas3-111",
        )
        .unwrap();
        let b =
            Via::parse(b"SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3")
                .unwrap();
        assert_eq!(a.host(), Host::Ipv6("2001:db8::9:1".parse().unwrap()));
        assert_eq!(a.received(), b.received());
        assert_eq!(a.received(), Some("2001:db8::9:255".parse().unwrap()));
    }

    #[test]
    fn via_unknown_transport_is_kept() {
        let v = Via::parse(b"SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en").unwrap();
        assert_eq!(v.transport(), Transport::Other(b"UNKNOWN"));
    }

    #[test]
    fn via_with_empty_params_is_rejected() {
        // RFC 4475 section 3.1.2.1.
        assert!(via_list(b"SIP/2.0/UDP 192.0.2.15;;,;,,").is_err());
    }

    #[test]
    fn via_list_returns_the_first_value() {
        let v = via_list(b"SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8  ,\r\n SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n z9hG4bK30239").unwrap();
        assert_eq!(v.host(), Host::Name(b"spindle.example.com"));
        assert_eq!(v.branch(), Some(&b"z9hG4bK9ikj8"[..]));
    }

    #[test]
    fn via_bad_received_is_rejected() {
        assert_eq!(
            Via::parse(b"SIP/2.0/UDP h;received=host.example")
                .unwrap_err()
                .kind,
            ErrorKind::BadVia
        );
    }

    #[test]
    fn name_addr_quoted_display_name_and_tag() {
        let n = single_name_addr(
            b"\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8",
        )
        .unwrap();
        assert_eq!(n.display_name(), Some(&b"\"J Rosenberg \\\\\\\"\""[..]));
        assert_eq!(n.uri().user(), Some(&b"jdrosen"[..]));
        assert_eq!(n.tag(), Some(&b"98asjd8"[..]));
    }

    #[test]
    fn name_addr_token_display_name_without_space_before_bracket() {
        // RFC 4475 section 3.1.1.6.
        let n = single_name_addr(b"caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display_name(), Some(&b"caller"[..]));
        assert_eq!(n.tag(), Some(&b"323"[..]));
    }

    #[test]
    fn addr_spec_params_belong_to_the_header() {
        let n = single_name_addr(b"sip:caller@example.net;tag=134161461246").unwrap();
        assert_eq!(n.uri().as_bytes(), b"sip:caller@example.net");
        assert_eq!(n.tag(), Some(&b"134161461246"[..]));
        assert!(n.display_name().is_none());
    }

    #[test]
    fn unterminated_display_name_is_rejected() {
        // RFC 4475 section 3.1.2.6.
        let e = single_name_addr(b"\"Mr. J. User <sip:j.user@example.com>").unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnterminatedQuote);
    }

    #[test]
    fn comma_in_unquoted_display_name_is_rejected() {
        // RFC 4475 section 3.1.2.15.
        let e = single_name_addr(b"Bell, Alexander <sip:a.g.bell@example.com>;tag=43").unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadDisplayName);
    }

    #[test]
    fn spaces_inside_angle_brackets_are_rejected() {
        // RFC 4475 section 3.1.2.14.
        assert!(single_name_addr(b"\"Watson, Thomas\" < sip:t.watson@example.org >").is_err());
    }

    #[test]
    fn addr_spec_with_uri_headers_is_rejected() {
        // RFC 4475 section 3.1.2.13.
        let e = name_addr_list(
            b"sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            true,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadNameAddr);
        assert!(name_addr_list(
            b"<sip:user@example.com?Route=%3Csip:sip.example.com%3E>",
            true
        )
        .is_ok());
    }

    #[test]
    fn contact_star_and_lists() {
        assert!(name_addr_list(b"*", true).is_ok());
        assert!(name_addr_list(b"*", false).is_err());
        assert!(name_addr_list(b"<sip:a@b>;q=0.5, \"B\" <sip:b@c>;expires=60", true).is_ok());
        assert!(name_addr_list(b"\"Joe\" <sip:joe@example.org>;;;;", true).is_err());
    }

    #[test]
    fn cseq_number_and_method() {
        let c = CSeq::parse(b"0009\r\n  INVITE").unwrap();
        assert_eq!(c.number, 9);
        assert_eq!(c.method, Method::Invite);
        assert_eq!(CSeq::parse(b"2147483647 ACK").unwrap().number, MAX_CSEQ);
    }

    #[test]
    fn cseq_over_2_pow_31_is_rejected() {
        assert_eq!(
            CSeq::parse(b"2147483648 INVITE").unwrap_err().kind,
            ErrorKind::BadCSeq
        );
        assert_eq!(
            CSeq::parse(b"36893488147419103232 REGISTER")
                .unwrap_err()
                .kind,
            ErrorKind::BadCSeq
        );
        assert!(CSeq::parse(b"fhdjkgfhdkjhgkj").is_err());
        assert!(CSeq::parse(b"1").is_err());
    }

    #[test]
    fn call_id_is_word_at_word() {
        assert!(call_id(b"intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{").is_ok());
        assert!(call_id(b"a@b@c").is_err());
        assert!(call_id(b"a b").is_err());
        assert!(call_id(b"").is_err());
    }

    #[test]
    fn date_must_be_gmt() {
        assert!(date(b"Sat, 13 Nov 2010 23:29:00 GMT").is_ok());
        assert_eq!(
            date(b"Fri, 01 Jan 2010 16:00:00 EST").unwrap_err().kind,
            ErrorKind::BadDate
        );
    }

    #[test]
    fn methods_are_case_sensitive() {
        assert_eq!(Method::from_bytes(b"INVITE"), Method::Invite);
        assert_eq!(Method::from_bytes(b"invite"), Method::Other(b"invite"));
        assert_eq!(Method::Other(b"NEWMETHOD").as_bytes(), b"NEWMETHOD");
    }
}

/// The fast paths against the general grammar: on every input, the result
/// (value, rest, error kind and offset) is the general parser's.
#[cfg(test)]
mod fast_path_tests {
    use super::*;
    use proptest::prelude::*;

    /// `light_tag` as it was before `tag_first`: the reference.
    fn light_tag_reference(value: &[u8]) -> Res<Option<&[u8]>> {
        let mut s = value;
        if s.first() == Some(&b'"') {
            s = quoted_string_reference(s)?.1;
        }
        let params_at = match s.iter().position(|&b| b == b'<' || b == b';') {
            Some(i) if s[i] == b'<' => match memchr::memchr(b'>', &s[i..]) {
                Some(j) => &s[i + j + 1..],
                None => return Err(Fail::at(ErrorKind::BadNameAddr, &s[i..])),
            },
            Some(i) => &s[i..],
            None => return Ok(None),
        };
        tag_in_params(params_at)
    }

    /// `quoted_string` without its fast path.
    fn quoted_string_reference(s: &[u8]) -> Res<(&[u8], &[u8])> {
        super::super::grammar::quoted_string_loop(s)
    }

    /// Results as offsets from `base`, so that two parses compare.
    fn via_outcome(
        base: &[u8],
        r: Res<(Via<'_>, &[u8])>,
    ) -> Result<(Via<'static>, usize), ParseError> {
        match r {
            Ok((v, rest)) => {
                // Compare through the Debug text: Via borrows `base`.
                let _ = v;
                Ok((PLACEHOLDER_VIA, base.len() - rest.len()))
            }
            Err(f) => Err(f.relative_to(base)),
        }
    }

    fn pieces() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop::sample::select(vec![
            &b"SIP/2.0/UDP "[..],
            b"sip/2.0/tcp ",
            b"SIP/2.0/",
            b"UDP",
            b"TLS",
            b" ",
            b"  ",
            b"\t",
            b"\r\n ",
            b"\r\n",
            b"\r",
            b"198.51.100.17",
            b"192.0.2.256",
            b"1.2.3",
            b"1.2.3.4.5",
            b"0001.2.3.4",
            b"10.0.0.1.",
            b"host.example.com",
            b"h_1.example.",
            b"-bad",
            b"[2001:db8::1]",
            b"[::1",
            b":",
            b":5060",
            b":65536",
            b":0",
            b":099999",
            b";",
            b";branch=",
            b";branch",
            b"z9hG4bK-524287-1",
            b";rport",
            b";rport=",
            b";rport=5061",
            b";rport=70000",
            b";received=",
            b"192.0.2.1",
            b"[2001:db8::9:255]",
            b"2001:db8::9:255",
            b";maddr=239.1.1.1",
            b";maddr=",
            b";ttl=16",
            b";ttl=256",
            b";x",
            b"=",
            b"\"q\"",
            b",",
            b"a",
            b"9",
            b".",
            b"%",
            b"<",
            b">",
            b";tag=",
            b";TAG=",
            b"tag",
            b"9fxced76sl",
            b"\"Alice\" ",
            b"\"A\\\"b\" ",
            b"\"\t\"",
            b"\"",
            b"<sip:a@b>",
            b"sip:a@b",
            b"1 ",
            b"2147483647",
            b"2147483648",
            b"INVITE",
            b"0009",
            &[0x7f][..],
            &[0x80][..],
            &[0x01][..],
            b"\\",
        ]);
        prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
    }

    fn check_via(s: &[u8]) {
        let general = via_parm_general(s);
        let fast = via_parm_fast(s);
        if let Some((v, rest)) = fast {
            match general {
                Ok((g, grest)) => {
                    assert_eq!(v, g, "{:?}", String::from_utf8_lossy(s));
                    assert_eq!(
                        rest.as_ptr(),
                        grest.as_ptr(),
                        "{:?}",
                        String::from_utf8_lossy(s)
                    );
                }
                Err(e) => panic!(
                    "fast path accepts what the general one refuses ({:?}): {:?}",
                    e.kind,
                    String::from_utf8_lossy(s)
                ),
            }
        }
        assert_eq!(
            via_outcome(s, via_parm(s)),
            via_outcome(s, via_parm_general(s)),
            "{:?}",
            String::from_utf8_lossy(s)
        );
    }

    fn check_cseq(s: &[u8]) {
        let a = cseq(s).map_err(|f| f.relative_to(s));
        let b = cseq_general(s).map_err(|f| f.relative_to(s));
        assert_eq!(a, b, "{:?}", String::from_utf8_lossy(s));
    }

    fn check_tag(s: &[u8]) {
        let a = light_tag(s).map_err(|f| f.relative_to(s));
        let b = light_tag_reference(s).map_err(|f| f.relative_to(s));
        assert_eq!(a, b, "{:?}", String::from_utf8_lossy(s));
        if let Ok(Some(t)) = light_tag(s) {
            let r = light_tag_reference(s).unwrap().unwrap();
            assert_eq!(t.as_ptr(), r.as_ptr());
        }
        if s.first() == Some(&b'"') {
            let a = quoted_string(s).map(|(q, r)| (q.len(), r.len()));
            let b = quoted_string_reference(s).map(|(q, r)| (q.len(), r.len()));
            assert_eq!(
                a.map_err(|f| f.relative_to(s)),
                b.map_err(|f| f.relative_to(s)),
                "{:?}",
                String::from_utf8_lossy(s)
            );
        }
    }

    #[test]
    fn via_fast_path_edge_cases() {
        for s in [
            &b"SIP/2.0/UDP 198.51.100.17:5060;branch=z9hG4bK-1;rport"[..],
            b"SIP/2.0/UDP 198.51.100.17:5060;branch=z9hG4bK-1;rport, SIP/2.0/TCP h;branch=z",
            b"SIP/2.0/UDP 198.51.100.17 ;branch=z9hG4bK-1",
            b"SIP/2.0/UDP 198.51.100.17\r\n ;branch=z9hG4bK-1",
            b"SIP/2.0/UDP  198.51.100.17;branch=z9hG4bK-1",
            b"SIP/2.0/UDP\t198.51.100.17;branch=z9hG4bK-1",
            b"SIP/2.0/UDP [2001:db8::9:1]:5070;branch=z9hG4bKas3-111",
            b"SIP/2.0/UDP [2001:db8::9:1;branch=z",
            b"SIP/2.0/UDP 1.2.3.4.5;branch=z",
            b"SIP/2.0/UDP 1.2.3.256;branch=z",
            b"SIP/2.0/UDP 1.2.3.4444;branch=z",
            b"SIP/2.0/UDP 12345678901234567890.1.1.1;branch=z",
            b"SIP/2.0/UDP 1.2.3.4.;branch=z",
            b"SIP/2.0/UDP 1.2.3;branch=z",
            b"SIP/2.0/UDP 1.2.3.com;branch=z",
            b"SIP/2.0/UDP host.example.com.;branch=z",
            b"SIP/2.0/UDP host:;branch=z",
            b"SIP/2.0/UDP host:65536;branch=z",
            b"SIP/2.0/UDP host:00000005060;branch=z",
            b"SIP/2.0/UDP host: 5060;branch=z",
            b"SIP/2.0/UDP host;branch",
            b"SIP/2.0/UDP host;branch=",
            b"SIP/2.0/UDP host;branch=\"z\"",
            b"SIP/2.0/UDP host;branch = z",
            b"SIP/2.0/UDP host;;branch=z",
            b"SIP/2.0/UDP host;rport=99999",
            b"SIP/2.0/UDP host;received=[2001:db8::9:255];rport=5061;maddr=239.1.1.1;ttl=16",
            b"SIP/2.0/UDP host;received=host.example",
            b"SIP/2.0/UDP host;ttl=256",
            b"SIP/2.0/UDP host;maddr=;x",
            b"SIP/2.0/UDP host;x=y z",
            b"SIP/2.0/UDP host;x=y\t",
            b"SIP/2.0/UDP host;x=y\r\n ;branch=z",
            b"SIP/2.0/UDP host;x=y<",
            b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw",
            b"SIP/2.0/ 192.0.2.2",
            b"SIP/2.0/UDP",
            b"SIP/2.0/UDP ",
            b"SIP/2.0/",
            b"",
        ] {
            check_via(s);
        }
    }

    #[test]
    fn cseq_and_tag_fast_path_edge_cases() {
        for s in [
            &b"1 INVITE"[..],
            b"0009\r\n  INVITE",
            b"1  INVITE",
            b"1\tINVITE",
            b"1 INVITE ",
            b"1 INV ITE",
            b"1 ",
            b"2147483647 ACK",
            b"2147483648 ACK",
            b"99999999999999999999 ACK",
            b"4294967300 INVITE",
            b"42949672960 INVITE",
            b"429496730 INVITE",
            b" 1 INVITE",
            b"",
        ] {
            check_cseq(s);
        }
        for s in [
            &b"\"Alice Example\" <sip:+12125550100@carrier.example.net;user=phone>;tag=9fxced76sl"
                [..],
            b"<sip:+14155550123@edge.example.com;user=phone>",
            b"<sip:a@b>;TaG=x;tag=y",
            b"<sip:a@b>;tag",
            b"<sip:a@b>;tag=",
            b"<sip:a@b>;tag= x",
            b"<sip:a@b>;tag=\"x\"",
            b"<sip:a@b> ;tag=x",
            b"<sip:a@b>;x=1;tag=x",
            b"<sip:a@b;tag=inside>",
            b"<sip:a@b",
            b"sip:a@b;tag=x",
            b"sip:a@b",
            b"\"A \\\"q\\\" \" <sip:a@b>;tag=1",
            b"\"tab\there\" <sip:a@b>;tag=1",
            b"\"fold\r\n here\" <sip:a@b>;tag=1",
            b"\"bare\rcr\" <sip:a@b>;tag=1",
            b"\"del\x7f\" <sip:a@b>;tag=1",
            b"\"unterminated <sip:a@b>;tag=1",
            b"\"",
            b"",
        ] {
            check_tag(s);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn via_fast_path_matches_the_grammar(s in pieces()) {
            check_via(&s);
            let mut full = b"SIP/2.0/UDP ".to_vec();
            full.extend_from_slice(&s);
            check_via(&full);
        }

        #[test]
        fn cseq_and_tag_fast_paths_match_the_grammar(s in pieces()) {
            check_cseq(&s);
            check_tag(&s);
            let mut q = b"\"".to_vec();
            q.extend_from_slice(&s);
            check_tag(&q);
        }

        #[test]
        fn fast_paths_never_panic_on_bytes(s in prop::collection::vec(any::<u8>(), 0..80)) {
            check_via(&s);
            check_cseq(&s);
            check_tag(&s);
        }
    }
}
