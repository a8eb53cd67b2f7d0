//! The one place that reads received SIP: a borrowed view with the fields the
//! callers and servers act on (start line, Call-ID, CSeq, From, To and its
//! tag, the Via headers, the digest headers, the body).
//!
//! The bytes are parsed by the appliance's own parser (`sip`:
//! zero-copy, RFC 3261 grammar, fuzzed); this module only maps its view onto
//! the few fields the generator acts on, in one place. Methods are the
//! parser's own [`sip::Method`], borrowed like the rest of the view.

use sip::Method;

/// The start line of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start<'a> {
    /// A request.
    Request {
        /// The method.
        method: Method<'a>,
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
    pub cseq_method: Method<'a>,
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
    /// The first Record-Route value as written (a proxy that records the
    /// route; one proxy between caller and server is the lab's case).
    pub record_route: Option<&'a [u8]>,
    /// The body.
    pub body: &'a [u8],
}

/// Why a datagram is not a SIP message the generator can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// The SIP parser refused it (bad start line, missing or repeated
    /// required header, Content-Length beyond the datagram, ...).
    #[error("{0}")]
    Sip(sip::ParseError),
    /// More Via headers than [`MAX_VIAS`].
    #[error("more than {MAX_VIAS} Via headers")]
    TooManyVias,
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
    pub fn method(&self) -> Option<Method<'a>> {
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

/// Reads a datagram as a SIP message, with `sip::parse`.
pub fn parse(buf: &[u8]) -> Result<SipView<'_>, Malformed> {
    use sip::HeaderName;
    let m = sip::parse(buf).map_err(Malformed::Sip)?;
    let start = match (m.method(), m.request_uri(), m.status()) {
        (Some(meth), Some(uri), _) => Start::Request { method: meth, uri },
        (_, _, Some(code)) => Start::Response { code },
        // The parser yields either a request or a response.
        _ => Start::Response { code: 0 },
    };
    let mut vias = [&[][..]; MAX_VIAS];
    let mut via_count = 0;
    for h in m.headers_named(HeaderName::Via) {
        if via_count == MAX_VIAS {
            return Err(Malformed::TooManyVias);
        }
        vias[via_count] = h.value;
        via_count += 1;
    }
    let cseq = m.cseq();
    Ok(SipView {
        start,
        call_id: m.call_id(),
        cseq: cseq.number,
        cseq_method: cseq.method,
        from: m.header_value(HeaderName::From).unwrap_or_default(),
        to: m.header_value(HeaderName::To).unwrap_or_default(),
        vias,
        via_count,
        www_authenticate: m.header_value(HeaderName::WwwAuthenticate),
        authorization: m.header_value(HeaderName::Authorization),
        record_route: m.header_value(HeaderName::RecordRoute),
        body: m.body(),
    })
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
        assert!(parse(b"\x00\x01binary").is_err());
        assert!(parse(b"GET / HTTP/1.1\r\n\r\n").is_err());
        assert!(parse(b"SIP/2.0 99 x\r\n\r\n").is_err());
        let no_cseq = b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: c\r\n\r\n";
        assert!(matches!(parse(no_cseq), Err(Malformed::Sip(_))));
        let bad_cseq = b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: c\r\nCSeq: x OPTIONS\r\n\r\n";
        assert!(matches!(parse(bad_cseq), Err(Malformed::Sip(_))));
        let short_body = b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 10\r\n\r\nv=0";
        assert!(matches!(parse(short_body), Err(Malformed::Sip(_))));
    }
}
