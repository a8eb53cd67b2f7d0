//! The one place that reads received SIP: a borrowed view with the fields the
//! callers and servers act on (start line, Call-ID, CSeq, From, To and its
//! tag, the Via headers, the digest headers, the body).
//!
//! Interim: this is a deliberately small line scanner, kept behind
//! [`parse`] until `dce_edge::sip` lands on main; then [`parse`] becomes a thin
//! adapter over that parser and this scanner goes away.

/// SIP methods the generator acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// INVITE.
    Invite,
    /// ACK.
    Ack,
    /// BYE.
    Bye,
    /// CANCEL.
    Cancel,
    /// OPTIONS.
    Options,
    /// REGISTER.
    Register,
    /// Any other method.
    Other,
}

impl Method {
    /// The method for a token, case-sensitively (RFC 3261 section 7.1).
    pub fn from_token(t: &[u8]) -> Method {
        match t {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"OPTIONS" => Method::Options,
            b"REGISTER" => Method::Register,
            _ => Method::Other,
        }
    }

    /// The method's token.
    pub fn token(self) -> &'static [u8] {
        match self {
            Method::Invite => b"INVITE",
            Method::Ack => b"ACK",
            Method::Bye => b"BYE",
            Method::Cancel => b"CANCEL",
            Method::Options => b"OPTIONS",
            Method::Register => b"REGISTER",
            Method::Other => b"OTHER",
        }
    }
}

/// The start line of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start<'a> {
    /// A request.
    Request {
        /// The method.
        method: Method,
        /// The Request-URI.
        uri: &'a [u8],
    },
    /// A response.
    Response {
        /// The status code (100-699).
        code: u16,
    },
}

/// Most Via header values kept; a message with more is refused.
pub const MAX_VIAS: usize = 16;

/// A received message, borrowed from the datagram.
#[derive(Debug, Clone, Copy)]
pub struct SipView<'a> {
    /// Start line.
    pub start: Start<'a>,
    /// Call-ID value.
    pub call_id: &'a [u8],
    /// CSeq number.
    pub cseq: u32,
    /// CSeq method.
    pub cseq_method: Method,
    /// From value (with its parameters).
    pub from: &'a [u8],
    /// To value (with its parameters).
    pub to: &'a [u8],
    vias: [&'a [u8]; MAX_VIAS],
    via_count: usize,
    /// WWW-Authenticate value, if any.
    pub www_authenticate: Option<&'a [u8]>,
    /// Authorization value, if any.
    pub authorization: Option<&'a [u8]>,
    /// The body.
    pub body: &'a [u8],
}

/// Why a datagram is not a SIP message the generator can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// The start line is neither a request nor a status line.
    #[error("bad start line")]
    StartLine,
    /// A header the generator needs is missing.
    #[error("missing {0} header")]
    Missing(&'static str),
    /// CSeq is not `number method`.
    #[error("bad CSeq")]
    CSeq,
    /// More Via headers than [`MAX_VIAS`].
    #[error("more than {MAX_VIAS} Via headers")]
    TooManyVias,
    /// Content-Length promises more body than the datagram holds (RFC 3261
    /// section 18.3: such a datagram is discarded).
    #[error("Content-Length beyond the datagram")]
    ContentLength,
}

impl<'a> SipView<'a> {
    /// The Via header values, top first, as they appeared (a header with a
    /// comma list counts as one value).
    pub fn vias(&self) -> &[&'a [u8]] {
        &self.vias[..self.via_count]
    }

    /// The status code, for a response.
    pub fn code(&self) -> Option<u16> {
        match self.start {
            Start::Response { code } => Some(code),
            Start::Request { .. } => None,
        }
    }

    /// The method, for a request.
    pub fn method(&self) -> Option<Method> {
        match self.start {
            Start::Request { method, .. } => Some(method),
            Start::Response { .. } => None,
        }
    }

    /// The `tag` parameter of To.
    pub fn to_tag(&self) -> Option<&'a [u8]> {
        tag_param(self.to)
    }

    /// The `branch` parameter of the top Via.
    pub fn top_branch(&self) -> Option<&'a [u8]> {
        let top = self.vias().first()?;
        let top = top.split(|&b| b == b',').next()?;
        param(top, b"branch")
    }
}

fn param<'a>(value: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    value.split(|&b| b == b';').skip(1).find_map(|p| {
        let p = trim(p);
        let (n, v) = match p.iter().position(|&b| b == b'=') {
            Some(i) => (&p[..i], &p[i + 1..]),
            None => (p, &p[p.len()..]),
        };
        trim(n).eq_ignore_ascii_case(name).then(|| trim(v))
    })
}

/// The `tag` parameter of a From or To value (after any `<...>`).
pub fn tag_param(value: &[u8]) -> Option<&[u8]> {
    let after = match value.iter().rposition(|&b| b == b'>') {
        Some(i) => &value[i..],
        None => value,
    };
    param(after, b"tag")
}

fn trim(s: &[u8]) -> &[u8] {
    let a = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let b = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(a, |b| b + 1);
    &s[a..b.max(a)]
}

fn parse_u32(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 9 {
        return None;
    }
    s.iter().try_fold(0u32, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
    })
}

/// Reads a datagram as a SIP message.
pub fn parse(buf: &[u8]) -> Result<SipView<'_>, Malformed> {
    let mut lines = Lines { buf, at: 0 };
    let first = lines.next_line().ok_or(Malformed::StartLine)?;
    let start = start_line(first).ok_or(Malformed::StartLine)?;
    let mut v = SipView {
        start,
        call_id: &[],
        cseq: 0,
        cseq_method: Method::Other,
        from: &[],
        to: &[],
        vias: [&[]; MAX_VIAS],
        via_count: 0,
        www_authenticate: None,
        authorization: None,
        body: &[],
    };
    let (mut have_cseq, mut content_length) = (false, None);
    while let Some((name, value)) = lines.next_header() {
        match header_kind(name) {
            Header::CallId => v.call_id = value,
            Header::From => v.from = value,
            Header::To => v.to = value,
            Header::Via => {
                if v.via_count == MAX_VIAS {
                    return Err(Malformed::TooManyVias);
                }
                v.vias[v.via_count] = value;
                v.via_count += 1;
            }
            Header::CSeq => {
                let mut parts = value
                    .split(|b| b.is_ascii_whitespace())
                    .filter(|p| !p.is_empty());
                let n = parts.next().and_then(parse_u32).ok_or(Malformed::CSeq)?;
                let m = parts.next().ok_or(Malformed::CSeq)?;
                v.cseq = n;
                v.cseq_method = Method::from_token(m);
                have_cseq = true;
            }
            Header::WwwAuthenticate => v.www_authenticate = Some(value),
            Header::Authorization => v.authorization = Some(value),
            Header::ContentLength => content_length = parse_u32(value),
            Header::Other => {}
        }
    }
    let rest = &buf[lines.at.min(buf.len())..];
    v.body = match content_length {
        Some(n) if n as usize > rest.len() => return Err(Malformed::ContentLength),
        Some(n) => &rest[..n as usize],
        None => rest,
    };
    if v.call_id.is_empty() {
        return Err(Malformed::Missing("Call-ID"));
    }
    if !have_cseq {
        return Err(Malformed::Missing("CSeq"));
    }
    if v.via_count == 0 {
        return Err(Malformed::Missing("Via"));
    }
    if v.from.is_empty() {
        return Err(Malformed::Missing("From"));
    }
    if v.to.is_empty() {
        return Err(Malformed::Missing("To"));
    }
    Ok(v)
}

fn start_line(line: &[u8]) -> Option<Start<'_>> {
    if let Some(rest) = line.strip_prefix(b"SIP/2.0 ") {
        let code = rest.get(..3).and_then(parse_u32)?;
        if !(100..700).contains(&code) || rest.get(3).is_some_and(|&b| b != b' ') {
            return None;
        }
        return Some(Start::Response { code: code as u16 });
    }
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next()?;
    let uri = parts.next()?;
    let version = parts.next()?;
    if method.is_empty()
        || !method
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(b))
        || uri.is_empty()
        || version != b"SIP/2.0"
        || parts.next().is_some()
    {
        return None;
    }
    Some(Start::Request {
        method: Method::from_token(method),
        uri,
    })
}

enum Header {
    CallId,
    From,
    To,
    Via,
    CSeq,
    WwwAuthenticate,
    Authorization,
    ContentLength,
    Other,
}

fn header_kind(name: &[u8]) -> Header {
    // Dispatch on the length first: most headers are then decided by one
    // comparison. Compact forms from RFC 3261 section 7.3.3.
    let eq = |s: &[u8]| name.eq_ignore_ascii_case(s);
    match name.len() {
        1 => match name[0].to_ascii_lowercase() {
            b'i' => Header::CallId,
            b'f' => Header::From,
            b't' => Header::To,
            b'v' => Header::Via,
            b'l' => Header::ContentLength,
            _ => Header::Other,
        },
        2 if eq(b"to") => Header::To,
        3 if eq(b"via") => Header::Via,
        4 if eq(b"from") => Header::From,
        4 if eq(b"cseq") => Header::CSeq,
        7 if eq(b"call-id") => Header::CallId,
        13 if eq(b"authorization") => Header::Authorization,
        14 if eq(b"content-length") => Header::ContentLength,
        16 if eq(b"www-authenticate") => Header::WwwAuthenticate,
        _ => Header::Other,
    }
}

struct Lines<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Lines<'a> {
    /// The next line without its CRLF (or bare LF); `None` at the end.
    fn next_line(&mut self) -> Option<&'a [u8]> {
        if self.at >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.at..];
        let (line, used) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], i + 1),
            None => (rest, rest.len()),
        };
        self.at += used;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }

    /// The next header as (name, value), joining folded lines (RFC 3261
    /// section 7.3.1); `None` at the blank line ending the headers.
    fn next_header(&mut self) -> Option<(&'a [u8], &'a [u8])> {
        loop {
            let line_start = self.at;
            let line = self.next_line()?;
            if line.is_empty() {
                return None;
            }
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue; // Not a header line: skipped, like a lenient proxy.
            };
            let name = trim(&line[..colon]);
            let value_start = line_start + colon + 1;
            let mut value_end = line_start + line.len();
            // Folded continuation lines start with SP or HT.
            while self.at < self.buf.len() && matches!(self.buf[self.at], b' ' | b'\t') {
                let cont_start = self.at;
                let cont = self.next_line().unwrap_or(&[]);
                value_end = cont_start + cont.len();
            }
            return Some((name, trim(&self.buf[value_start..value_end])));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:44201234@198.18.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.0.1:5061;branch=z9hG4bKa\r\nv: SIP/2.0/UDP 198.18.0.9;branch=z9hG4bKb\r\nf: <sip:a@x>;tag=1\r\nTo: <sip:44201234@y>\r\ni: abc@h\r\nCSeq: 1 INVITE\r\nContent-Length: 3\r\n\r\nv=0junk";

    #[test]
    fn request_fields_are_read_with_compact_forms() {
        let v = parse(INVITE).unwrap();
        assert_eq!(v.method(), Some(Method::Invite));
        assert_eq!(v.call_id, b"abc@h");
        assert_eq!((v.cseq, v.cseq_method), (1, Method::Invite));
        assert_eq!(v.vias().len(), 2);
        assert_eq!(v.top_branch(), Some(&b"z9hG4bKa"[..]));
        assert_eq!(v.to_tag(), None);
        assert_eq!(v.body, b"v=0");
    }

    #[test]
    fn response_code_and_to_tag_are_read() {
        let m = b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@x>;tag=1\r\nTo: \"B\" <sip:b@y;user=phone>;tag=abc\r\nCall-ID: c\r\nCSeq: 7 BYE\r\n\r\n";
        let v = parse(m).unwrap();
        assert_eq!(v.code(), Some(180));
        assert_eq!(v.to_tag(), Some(&b"abc"[..]));
        assert_eq!((v.cseq, v.cseq_method), (7, Method::Bye));
    }

    #[test]
    fn folded_headers_are_joined() {
        let m = b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n ;branch=z9hG4bKf\r\nFrom: a;tag=1\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n";
        assert_eq!(parse(m).unwrap().top_branch(), Some(&b"z9hG4bKf"[..]));
    }

    #[test]
    fn garbage_and_missing_headers_are_refused() {
        assert_eq!(parse(b"\x00\x01binary").unwrap_err(), Malformed::StartLine);
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n\r\n").unwrap_err(),
            Malformed::StartLine
        );
        assert_eq!(
            parse(b"SIP/2.0 99 x\r\n\r\n").unwrap_err(),
            Malformed::StartLine
        );
        let no_cseq = b"OPTIONS sip:x SIP/2.0\r\nVia: v\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\n\r\n";
        assert_eq!(parse(no_cseq).unwrap_err(), Malformed::Missing("CSeq"));
        let bad_cseq = b"OPTIONS sip:x SIP/2.0\r\nVia: v\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: x OPTIONS\r\n\r\n";
        assert_eq!(parse(bad_cseq).unwrap_err(), Malformed::CSeq);
    }
}
