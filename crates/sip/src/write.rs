//! Writers that build SIP messages into a caller's buffer without
//! allocating: responses to a parsed request, forwarded requests (RFC 3261
//! section 16.6) and responses (section 16.7), and new requests. Each returns
//! the length written or a typed error; on error the buffer's content is
//! unspecified.

use std::fmt::{self, Write as _};
use std::net::SocketAddr;

use super::grammar::{is, TOKEN};
use super::header::HeaderName;
use super::message::Message;
use super::values::{self, Method, Via, MAX_CSEQ};

/// Why a message could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The output buffer cannot hold the message.
    #[error("the output buffer of {capacity} bytes is too small for the message")]
    BufferTooSmall {
        /// Size of the buffer that was given.
        capacity: usize,
    },
    /// A caller-supplied value would break the message framing (CR, LF, or
    /// an empty or non-token value where a token is needed).
    #[error("the {what} given to the writer is empty or holds CR, LF or a forbidden byte")]
    InvalidValue {
        /// Which value.
        what: &'static str,
    },
    /// The status code is outside 100..=699.
    #[error("status code {code} is not between 100 and 699")]
    BadStatusCode {
        /// The code given.
        code: u16,
    },
    /// A response was asked for a message that is not a request.
    #[error("a response can only be built for a request")]
    NotARequest,
    /// A request was asked to be forwarded from a message that is not a request.
    #[error("only a request can be forwarded as a request")]
    NotAResponse,
    /// The request arrived with Max-Forwards 0: answer 483 instead (RFC 3261 section 16.3).
    #[error("Max-Forwards is 0: the request must be answered with 483, not forwarded")]
    MaxForwardsExhausted,
    /// The response has a single Via, so it was meant for this element (RFC 3261 section 16.7).
    #[error("the response has no Via left after removing the top one")]
    NoViaLeft,
    /// The response's Via values after the top one do not parse.
    #[error("the response's second Via is malformed")]
    BadVia,
    /// The CSeq number of a new request is 2^31 or more.
    #[error("CSeq {number} is not below 2^31")]
    BadCSeq {
        /// The number given.
        number: u32,
    },
}

/// The output cursor: appends to the caller's buffer, checking room.
struct Out<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> Out<'b> {
    fn new(buf: &'b mut [u8]) -> Self {
        Out { buf, len: 0 }
    }

    #[inline]
    fn put(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        let end = self.len + bytes.len();
        match self.buf.get_mut(self.len..end) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.len = end;
                Ok(())
            }
            None => Err(WriteError::BufferTooSmall {
                capacity: self.buf.len(),
            }),
        }
    }

    #[inline]
    fn num(&mut self, mut n: u64) -> Result<(), WriteError> {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.put(&digits[i..])
    }

    fn sent_by(&mut self, sent_by: &SentBy<'_>) -> Result<(), WriteError> {
        match *sent_by {
            SentBy::Addr(addr) => {
                let capacity = self.buf.len();
                write!(self, "{addr}").map_err(|_| WriteError::BufferTooSmall { capacity })
            }
            SentBy::Name { host, port } => {
                self.put(host)?;
                if let Some(p) = port {
                    self.put(b":")?;
                    self.num(u64::from(p))?;
                }
                Ok(())
            }
        }
    }

    fn header(&mut self, name: &[u8], value: &[u8]) -> Result<(), WriteError> {
        self.put(name)?;
        self.put(b": ")?;
        self.put(value)?;
        self.put(b"\r\n")
    }

    fn header_num(&mut self, name: &[u8], value: u64) -> Result<(), WriteError> {
        self.put(name)?;
        self.put(b": ")?;
        self.num(value)?;
        self.put(b"\r\n")
    }
}

impl fmt::Write for Out<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.put(s.as_bytes()).map_err(|_| fmt::Error)
    }
}

/// A value a caller puts into a header must not break the framing.
fn check_value(v: &[u8], what: &'static str) -> Result<(), WriteError> {
    if v.is_empty() || v.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(WriteError::InvalidValue { what });
    }
    Ok(())
}

fn check_token(v: &[u8], what: &'static str) -> Result<(), WriteError> {
    if v.is_empty() || !v.iter().all(|&b| is(b, TOKEN)) {
        return Err(WriteError::InvalidValue { what });
    }
    Ok(())
}

/// Checks that `v` is non-empty and holds no white space, CR, LF or NUL (a
/// URI or a host on a start line or in a Via).
fn check_word(v: &[u8], what: &'static str) -> Result<(), WriteError> {
    if v.is_empty() || v.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(WriteError::InvalidValue { what });
    }
    Ok(())
}

/// The sent-by of a Via this element writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentBy<'x> {
    /// An address and port (IPv6 is written in brackets).
    Addr(SocketAddr),
    /// A host name (or an address already written as text, IPv6 in
    /// brackets) and an optional port.
    Name {
        /// The host as it goes on the wire.
        host: &'x [u8],
        /// The port, if any.
        port: Option<u16>,
    },
}

impl SentBy<'_> {
    fn check(&self) -> Result<(), WriteError> {
        match self {
            SentBy::Addr(_) => Ok(()),
            SentBy::Name { host, .. } => check_word(host, "Via host"),
        }
    }
}

/// Writes `Via: SIP/2.0/UDP sent-by;branch=...;rport`.
fn our_via(out: &mut Out<'_>, sent_by: &SentBy<'_>, branch: &[u8]) -> Result<(), WriteError> {
    our_via_over(out, b"UDP", sent_by, branch, b"")
}

/// Writes `Via: SIP/2.0/{transport} sent-by;branch=...;rport{params}`.
fn our_via_over(
    out: &mut Out<'_>,
    transport: &[u8],
    sent_by: &SentBy<'_>,
    branch: &[u8],
    params: &[u8],
) -> Result<(), WriteError> {
    out.put(b"Via: SIP/2.0/")?;
    out.put(transport)?;
    out.put(b" ")?;
    out.sent_by(sent_by)?;
    out.put(b";branch=")?;
    out.put(branch)?;
    out.put(b";rport")?;
    out.put(params)?;
    out.put(b"\r\n")
}

/// A response to a parsed request (RFC 3261 section 8.2.6): status line, the
/// request's Via lines in order, From, To (with a tag added when the
/// request's To has none and the code is above 100), Call-ID and CSeq,
/// then the extra headers, Content-Length and the body.
///
/// ```
/// # use sip::{self, write::ResponseBuilder};
/// # let req = sip::parse(b"INVITE sip:1@e SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:1@e>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n").unwrap();
/// let mut out = [0u8; 1500];
/// let len = ResponseBuilder::new(503, "Service Unavailable")
///     .to_tag(b"x1")
///     .retry_after(30)
///     .write(&req, &mut out)?;
/// assert!(out[..len].starts_with(b"SIP/2.0 503 Service Unavailable\r\n"));
/// # Ok::<(), sip::write::WriteError>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ResponseBuilder<'x> {
    code: u16,
    reason: &'x str,
    to_tag: Option<&'x [u8]>,
    contacts: &'x [&'x [u8]],
    retry_after: Option<u32>,
    server: Option<&'x [u8]>,
    headers: &'x [(&'x str, &'x [u8])],
    body: Option<(&'x [u8], &'x [u8])>,
}

impl<'x> ResponseBuilder<'x> {
    /// A response with this status code and reason phrase.
    pub fn new(code: u16, reason: &'x str) -> Self {
        ResponseBuilder {
            code,
            reason,
            to_tag: None,
            contacts: &[],
            retry_after: None,
            server: None,
            headers: &[],
            body: None,
        }
    }

    /// The To tag to add when the request's To has none (used for codes above 100).
    pub fn to_tag(mut self, tag: &'x [u8]) -> Self {
        self.to_tag = Some(tag);
        self
    }

    /// Contact URIs, one `Contact: <uri>` line each (for 3xx redirects).
    pub fn contacts(mut self, uris: &'x [&'x [u8]]) -> Self {
        self.contacts = uris;
        self
    }

    /// `Retry-After: N` (for 503 and 480).
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// `Server: value`.
    pub fn server(mut self, value: &'x [u8]) -> Self {
        self.server = Some(value);
        self
    }

    /// More header lines, written in order as `name: value`.
    pub fn headers(mut self, headers: &'x [(&'x str, &'x [u8])]) -> Self {
        self.headers = headers;
        self
    }

    /// A body with its Content-Type.
    pub fn body(mut self, content_type: &'x [u8], body: &'x [u8]) -> Self {
        self.body = Some((content_type, body));
        self
    }

    /// Writes the response to `request` into `out`; returns its length.
    pub fn write(&self, request: &Message<'_>, out: &mut [u8]) -> Result<usize, WriteError> {
        if !request.is_request() {
            return Err(WriteError::NotARequest);
        }
        if !(100..=699).contains(&self.code) {
            return Err(WriteError::BadStatusCode { code: self.code });
        }
        if self
            .reason
            .bytes()
            .any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
        {
            return Err(WriteError::InvalidValue {
                what: "reason phrase",
            });
        }
        if let Some(tag) = self.to_tag {
            check_token(tag, "To tag")?;
        }
        for c in self.contacts {
            check_word(c, "Contact URI")?;
        }
        if let Some(s) = self.server {
            check_value(s, "Server value")?;
        }
        for (name, value) in self.headers {
            check_token(name.as_bytes(), "header name")?;
            check_value(value, "header value")?;
        }
        if let Some((ct, _)) = self.body {
            check_value(ct, "Content-Type")?;
        }

        let mut o = Out::new(out);
        o.put(b"SIP/2.0 ")?;
        o.num(u64::from(self.code))?;
        o.put(b" ")?;
        o.put(self.reason.as_bytes())?;
        o.put(b"\r\n")?;
        let buf = request.buf();
        let add_tag = self.code > 100 && request.to_tag().is_none();
        for (name, start, _value_start, value_end, end) in request.slot_positions() {
            match name {
                HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                    o.put(&buf[start..end])?;
                }
                HeaderName::To => match self.to_tag {
                    Some(tag) if add_tag => {
                        o.put(&buf[start..value_end])?;
                        o.put(b";tag=")?;
                        o.put(tag)?;
                        o.put(b"\r\n")?;
                    }
                    _ => o.put(&buf[start..end])?,
                },
                _ => {}
            }
        }
        for c in self.contacts {
            o.put(b"Contact: <")?;
            o.put(c)?;
            o.put(b">\r\n")?;
        }
        if let Some(n) = self.retry_after {
            o.header_num(b"Retry-After", u64::from(n))?;
        }
        if let Some(s) = self.server {
            o.header(b"Server", s)?;
        }
        for (name, value) in self.headers {
            o.header(name.as_bytes(), value)?;
        }
        let body: &[u8] = match self.body {
            Some((ct, body)) => {
                o.header(b"Content-Type", ct)?;
                body
            }
            None => &[],
        };
        o.header_num(b"Content-Length", body.len() as u64)?;
        o.put(b"\r\n")?;
        o.put(body)?;
        Ok(o.len)
    }
}

/// The response to `request` with no extras: status line, Via, From, To
/// (tagged with `to_tag` when needed), Call-ID, CSeq, `Content-Length: 0`.
pub fn write_response(
    request: &Message<'_>,
    code: u16,
    reason: &str,
    to_tag: Option<&[u8]>,
    out: &mut [u8],
) -> Result<usize, WriteError> {
    let mut b = ResponseBuilder::new(code, reason);
    if let Some(t) = to_tag {
        b = b.to_tag(t);
    }
    b.write(request, out)
}

/// What a stateless proxy changes when it forwards a request (RFC 3261
/// section 16.6).
#[derive(Debug, Clone, Copy)]
pub struct ForwardRequest<'x> {
    /// The sent-by of the Via this element pushes.
    pub sent_by: SentBy<'x>,
    /// The branch of that Via; it should start with `z9hG4bK` and, for a
    /// stateless proxy, be derived from the incoming branch (section 16.11).
    pub branch: &'x [u8],
    /// A new Request-URI, or `None` to keep the request's.
    pub request_uri: Option<&'x [u8]>,
    /// A Record-Route value to add above the request's own, e.g.
    /// `<sip:192.0.2.1;lr>`, or `None`.
    pub record_route: Option<&'x [u8]>,
    /// How many Route values to remove from the top: they name this
    /// element (RFC 3261 section 16.4, loose routing; two when it
    /// Record-Routed twice, once per transport).
    pub remove_routes: u8,
    /// The address the request came from, written as `received` on the
    /// request's top Via when it differs from the sent-by host (RFC 3261
    /// section 18.2.1), and the port, written as the value of an empty
    /// `rport` (RFC 3581), so responses find their way back.
    pub source: Option<SocketAddr>,
    /// The transport token of the Via this element pushes: `UDP`, `TCP`,
    /// `TLS` (RFC 3261 section 18.1.1: the transport it is sent over).
    pub via_transport: &'x [u8],
    /// More parameters for that Via, written after `;rport` as given
    /// (`;name=value`...), or empty.
    pub via_params: &'x [u8],
    /// Add a Content-Length header when the request has none: a message
    /// sent over a stream transport must carry one (RFC 3261 section 18.3).
    pub content_length: bool,
}

impl<'x> ForwardRequest<'x> {
    /// Forwarding with this element's Via (over UDP) and nothing else
    /// changed.
    pub fn new(sent_by: SentBy<'x>, branch: &'x [u8]) -> Self {
        ForwardRequest {
            sent_by,
            branch,
            request_uri: None,
            record_route: None,
            remove_routes: 0,
            source: None,
            via_transport: b"UDP",
            via_params: b"",
            content_length: false,
        }
    }
}

/// Writes the top Via value `via` with `received` set to `source`'s address
/// (unless the sent-by host is that address already) and an empty `rport`
/// filled with its port.
fn via_with_source(o: &mut Out<'_>, via: &Via<'_>, source: SocketAddr) -> Result<(), WriteError> {
    let raw = via.as_bytes();
    let params = via.params().as_bytes();
    o.put(&raw[..raw.len() - params.len()])?;
    let mut had_rport = false;
    for p in via.params() {
        if p.name.eq_ignore_ascii_case(b"received") {
            continue;
        }
        o.put(b";")?;
        o.put(p.name)?;
        if p.name.eq_ignore_ascii_case(b"rport") {
            had_rport = true;
            o.put(b"=")?;
            match p.value {
                Some(v) if !v.is_empty() => o.put(v)?,
                _ => o.num(u64::from(source.port()))?,
            }
            continue;
        }
        if let Some(v) = p.value {
            o.put(b"=")?;
            o.put(v)?;
        }
    }
    if via.host().ip() != Some(source.ip()) || had_rport {
        let capacity = o.buf.len();
        write!(o, ";received={}", source.ip())
            .map_err(|_| WriteError::BufferTooSmall { capacity })?;
    }
    Ok(())
}

/// The default Max-Forwards of RFC 3261 section 8.1.1.6, used when a request
/// to forward has none.
pub const DEFAULT_MAX_FORWARDS: u8 = 70;

/// Writes `request` as forwarded: the start line (with the new Request-URI,
/// if any), this element's Via on top, the Record-Route if any,
/// Max-Forwards decremented (added as 69 when absent), and every other
/// header line and the body copied byte for byte. The copy has up to three
/// more header lines than the request, so a request near
/// [`MAX_HEADERS`](super::MAX_HEADERS) lines forwards into one this parser
/// would refuse with `TooManyHeaders`.
pub fn forward_request(
    request: &Message<'_>,
    forward: &ForwardRequest<'_>,
    out: &mut [u8],
) -> Result<usize, WriteError> {
    let Some(method) = request.method() else {
        return Err(WriteError::NotAResponse);
    };
    forward.sent_by.check()?;
    check_token(forward.branch, "branch")?;
    check_token(forward.via_transport, "Via transport")?;
    if !forward.via_params.is_empty() {
        check_value(forward.via_params, "Via parameters")?;
    }
    if let Some(u) = forward.request_uri {
        check_word(u, "Request-URI")?;
    }
    if let Some(rr) = forward.record_route {
        check_value(rr, "Record-Route value")?;
    }
    let max_forwards = match request.max_forwards() {
        Some(0) => return Err(WriteError::MaxForwardsExhausted),
        Some(n) => n - 1,
        None => DEFAULT_MAX_FORWARDS - 1,
    };

    let mut o = Out::new(out);
    let buf = request.buf();
    match forward.request_uri {
        Some(u) => {
            o.put(method.as_bytes())?;
            o.put(b" ")?;
            o.put(u)?;
            o.put(b" SIP/2.0\r\n")?;
        }
        None => {
            o.put(request.start_line())?;
            o.put(b"\r\n")?;
        }
    }
    our_via_over(
        &mut o,
        forward.via_transport,
        &forward.sent_by,
        forward.branch,
        forward.via_params,
    )?;
    if let Some(rr) = forward.record_route {
        o.header(b"Record-Route", rr)?;
    }
    if request.max_forwards().is_none() {
        o.header_num(b"Max-Forwards", u64::from(max_forwards))?;
    }
    if forward.content_length && request.content_length().is_none() {
        o.header_num(b"Content-Length", request.body().len() as u64)?;
    }
    let mut first_via = forward.source.is_some();
    let mut routes_left = forward.remove_routes;
    for (name, start, value_start, value_end, end) in request.slot_positions() {
        if name == HeaderName::Via && first_via {
            first_via = false;
            let value = &buf[value_start..value_end];
            let (via, after) =
                values::via_parm(value).map_err(|_| WriteError::InvalidValue { what: "Via" })?;
            o.put(&buf[start..value_start])?;
            via_with_source(&mut o, &via, forward.source.expect("checked above"))?;
            o.put(after)?;
            o.put(&buf[value_end..end])?;
            continue;
        }
        if name == HeaderName::Route && routes_left > 0 {
            let mut rest = &buf[value_start..value_end];
            while routes_left > 0 && !rest.is_empty() {
                routes_left -= 1;
                rest = match values::next_name_addr(rest) {
                    Ok((_, after)) => after,
                    Err(_) => &[],
                };
            }
            if !rest.is_empty() {
                // Keep the other values of the list on this line.
                o.put(&buf[start..value_start])?;
                o.put(rest)?;
                o.put(b"\r\n")?;
            }
            continue;
        }
        if name == HeaderName::MaxForwards {
            // Keep the name and separator as written; replace the number.
            o.put(&buf[start..value_start])?;
            o.num(u64::from(max_forwards))?;
            o.put(b"\r\n")?;
        } else {
            o.put(&buf[start..end])?;
        }
    }
    o.put(b"\r\n")?;
    o.put(request.body())?;
    Ok(o.len)
}

/// Writes `response` as forwarded by a proxy (RFC 3261 section 16.7): the
/// top Via value removed (only the first value when the top Via line holds a
/// comma list), everything else copied byte for byte.
pub fn forward_response(response: &Message<'_>, out: &mut [u8]) -> Result<usize, WriteError> {
    forward_response_with(response, false, out)
}

/// [`forward_response`], adding a Content-Length header when the response
/// has none and `content_length` is set (for a stream transport, RFC 3261
/// section 18.3).
pub fn forward_response_with(
    response: &Message<'_>,
    content_length: bool,
    out: &mut [u8],
) -> Result<usize, WriteError> {
    if response.is_request() {
        return Err(WriteError::NotARequest);
    }
    match response.second_via() {
        Ok(Some(_)) => {}
        Ok(None) => return Err(WriteError::NoViaLeft),
        Err(_) => return Err(WriteError::BadVia),
    }
    let buf = response.buf();
    let mut o = Out::new(out);
    o.put(response.start_line())?;
    o.put(b"\r\n")?;
    if content_length && response.content_length().is_none() {
        o.header_num(b"Content-Length", response.body().len() as u64)?;
    }
    let mut top_done = false;
    for (name, start, value_start, value_end, end) in response.slot_positions() {
        if name == HeaderName::Via && !top_done {
            top_done = true;
            let value = &buf[value_start..value_end];
            let rest = values::via_parm(value)
                .ok()
                .and_then(|(_, after)| values::list_next(after, super::ErrorKind::BadVia).ok())
                .flatten();
            // Keep the other values of the list on this line (a trailing
            // comma with nothing after it leaves nothing to keep).
            if let Some(rest) = rest.filter(|r| !r.is_empty()) {
                o.put(&buf[start..value_start])?;
                o.put(rest)?;
                o.put(b"\r\n")?;
            }
            continue;
        }
        o.put(&buf[start..end])?;
    }
    o.put(b"\r\n")?;
    o.put(response.body())?;
    Ok(o.len)
}

/// A new request (OPTIONS probes, the load generator): every field is
/// written as given, Content-Length is computed.
///
/// ```
/// # use sip::{self, Method, write::{RequestBuilder, SentBy}};
/// let req = RequestBuilder {
///     method: Method::Options,
///     request_uri: b"sip:198.18.0.2:5060",
///     sent_by: SentBy::Addr("198.18.0.1:5060".parse().unwrap()),
///     branch: b"z9hG4bKprobe1",
///     from: b"<sip:probe@198.18.0.1>;tag=p1",
///     to: b"<sip:198.18.0.2:5060>",
///     call_id: b"probe-1@198.18.0.1",
///     cseq: 1,
///     max_forwards: 70,
///     headers: &[],
///     content_type: None,
///     body: b"",
/// };
/// let mut out = [0u8; 800];
/// let len = req.write(&mut out)?;
/// let msg = sip::parse(&out[..len]).unwrap();
/// assert_eq!(msg.method(), Some(Method::Options));
/// # Ok::<(), sip::write::WriteError>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RequestBuilder<'x> {
    /// The method (also written in CSeq).
    pub method: Method<'x>,
    /// The Request-URI.
    pub request_uri: &'x [u8],
    /// The sent-by of the Via.
    pub sent_by: SentBy<'x>,
    /// The Via branch (start it with `z9hG4bK`).
    pub branch: &'x [u8],
    /// The From value, with its tag (`<sip:a@b>;tag=x`).
    pub from: &'x [u8],
    /// The To value.
    pub to: &'x [u8],
    /// The Call-ID.
    pub call_id: &'x [u8],
    /// The CSeq number (below 2^31).
    pub cseq: u32,
    /// Max-Forwards.
    pub max_forwards: u8,
    /// More header lines, written in order as `name: value`.
    pub headers: &'x [(&'x str, &'x [u8])],
    /// The Content-Type of the body, if there is one.
    pub content_type: Option<&'x [u8]>,
    /// The body (may be empty).
    pub body: &'x [u8],
}

impl RequestBuilder<'_> {
    /// Writes the request into `out`; returns its length.
    pub fn write(&self, out: &mut [u8]) -> Result<usize, WriteError> {
        check_token(self.method.as_bytes(), "method")?;
        check_word(self.request_uri, "Request-URI")?;
        self.sent_by.check()?;
        check_token(self.branch, "branch")?;
        check_value(self.from, "From value")?;
        check_value(self.to, "To value")?;
        check_word(self.call_id, "Call-ID")?;
        if self.cseq > MAX_CSEQ {
            return Err(WriteError::BadCSeq { number: self.cseq });
        }
        for (name, value) in self.headers {
            check_token(name.as_bytes(), "header name")?;
            check_value(value, "header value")?;
        }
        if let Some(ct) = self.content_type {
            check_value(ct, "Content-Type")?;
        }
        let method: &[u8] = self.method.as_bytes();
        let mut o = Out::new(out);
        o.put(method)?;
        o.put(b" ")?;
        o.put(self.request_uri)?;
        o.put(b" SIP/2.0\r\n")?;
        our_via(&mut o, &self.sent_by, self.branch)?;
        o.header_num(b"Max-Forwards", u64::from(self.max_forwards))?;
        o.header(b"From", self.from)?;
        o.header(b"To", self.to)?;
        o.header(b"Call-ID", self.call_id)?;
        o.put(b"CSeq: ")?;
        o.num(u64::from(self.cseq))?;
        o.put(b" ")?;
        o.put(method)?;
        o.put(b"\r\n")?;
        for (name, value) in self.headers {
            o.header(name.as_bytes(), value)?;
        }
        if let Some(ct) = self.content_type {
            o.header(b"Content-Type", ct)?;
        }
        o.header_num(b"Content-Length", self.body.len() as u64)?;
        o.put(b"\r\n")?;
        o.put(self.body)?;
        Ok(o.len)
    }
}
