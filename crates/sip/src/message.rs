//! The message view: one pass over a datagram that frames it (start line,
//! header lines, body against Content-Length), keeps header positions in a
//! fixed table and reads once the values a proxy always needs (top Via,
//! From and To tags, Call-ID, CSeq, Max-Forwards, Content-Length). Every
//! other typed value is parsed lazily from its slice; [`Message::validate`]
//! (or [`parse_strict`]) checks every header the parser knows against the
//! RFC 3261 grammar.

use super::error::{ErrorKind, Fail, ParseError, Res};
use super::grammar::{self, is_wsp, span, TOKEN};
use super::header::{classify, HeaderName, HEADER_NAME_COUNT};
use super::scan;
use super::uri::{self, DialedNumber, DialedNumberError, Uri};
use super::values::{self, CSeq, Method, NameAddr, Via};

/// The most header lines a message may have. A datagram with more is
/// rejected with [`ErrorKind::TooManyHeaders`]; real INVITEs carry 10 to 25.
pub const MAX_HEADERS: usize = 64;

/// The largest datagram accepted (the UDP length field is 16 bits).
pub const MAX_MESSAGE_LEN: usize = u16::MAX as usize;

/// Where one header line lies in the datagram, in eight bytes. Offsets fit
/// in 16 bits because datagrams are at most [`MAX_MESSAGE_LEN`] bytes. The
/// line starts where the one before it ends (the first one after the start
/// line), so its start is not kept.
#[derive(Debug, Clone, Copy)]
struct Slot {
    name: HeaderName,
    /// The length of the name; [`LONG_NAME`] for a name of 255 bytes or
    /// more, whose end is then found again (a name is a token).
    name_len: u8,
    value_start: u16,
    value_end: u16,
    /// One past the CRLF that ends the line (after any folded lines).
    line_end: u16,
}

/// [`Slot::name_len`] of a name too long for a byte.
const LONG_NAME: u8 = u8::MAX;

const EMPTY_SLOT: Slot = Slot {
    name: HeaderName::Other,
    name_len: 0,
    value_start: 0,
    value_end: 0,
    line_end: 0,
};

const NONE: u8 = u8::MAX;

/// One header line of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The name, classified.
    pub name: HeaderName,
    /// The name as written (`v`, `VIA`, `Via`).
    pub name_bytes: &'a [u8],
    /// The value as written, without the white space around it; folded
    /// lines keep their CRLF and leading white space.
    pub value: &'a [u8],
    /// The whole line from the name to its CRLF included, for copying.
    pub line: &'a [u8],
}

/// What the start line says: a request (RFC 3261 section 7.1) or a
/// response (section 7.2), typed, so that a caller matches on it instead of
/// asking twice and unwrapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'a> {
    /// `Method SP Request-URI SP SIP-Version`.
    Request {
        /// The method.
        method: Method<'a>,
        /// The Request-URI as written (see [`Message::uri`] to parse it).
        uri: &'a [u8],
        /// The whole line without its CRLF.
        line: &'a [u8],
    },
    /// `SIP-Version SP Status-Code SP Reason-Phrase`.
    Response {
        /// The status code, 100 to 699.
        code: u16,
        /// The reason phrase as written (may be empty).
        reason: &'a [u8],
        /// The whole line without its CRLF.
        line: &'a [u8],
    },
}

/// A parsed SIP message: a view over the datagram it was parsed from. It
/// holds no copies; every accessor returns slices of the datagram.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    buf: &'a [u8],
    start: StartLine<'a>,
    slots: [Slot; MAX_HEADERS],
    count: u8,
    /// Where the first header line starts (after the start line's CRLF).
    headers_start: u16,
    first: [u8; HEADER_NAME_COUNT],
    top_via: Via<'a>,
    from_tag: Option<&'a [u8]>,
    to_tag: Option<&'a [u8]>,
    call_id: &'a [u8],
    cseq: CSeq<'a>,
    max_forwards: Option<u8>,
    content_length: Option<u32>,
    expires: Option<u32>,
    headers_end: usize,
    body: &'a [u8],
}

/// Parses one SIP datagram for the hot path. Checks the start line (method,
/// Request-URI scheme and delimiters, `SIP/2.0`, status code), every header
/// line (name, colon, CRLF, folding), that Via, From, To, Call-ID and CSeq
/// are present and From, To, Call-ID, CSeq, Max-Forwards and Content-Length
/// appear once, and parses the top Via, the From and To tags, CSeq (its
/// method must match the request's), Max-Forwards, Content-Length and
/// Expires. The body follows RFC 3261 section 18.3: bytes past
/// Content-Length are ignored, a shorter body is an error, no
/// Content-Length means the rest of the datagram. Other values are parsed
/// when read; [`parse_strict`] also checks them all. Never panics and never
/// allocates.
///
/// The message is returned by value; on the hot path [`parse_in`] builds it
/// in the caller's slot instead and saves moving it out.
#[inline(always)]
pub fn parse(buf: &[u8]) -> Result<Message<'_>, ParseError> {
    let mut slot = None;
    parse_in(&mut slot, buf)?;
    Ok(slot.expect("parse_in fills the slot when it succeeds"))
}

/// [`parse`], building the message in `slot` (the caller's, usually a local
/// `None`) and returning a reference to it, so that the message (about
/// 900 bytes) is never moved: what the proxy does for every datagram. After
/// an error the slot holds a partly built message that means nothing.
#[inline(always)]
pub fn parse_in<'m, 'a>(
    slot: &'m mut Option<Message<'a>>,
    buf: &'a [u8],
) -> Result<&'m Message<'a>, ParseError> {
    parse_inner(slot, buf)
}

/// Parses one SIP datagram and checks it against the whole RFC 3261 grammar
/// the parser knows ([`parse`] then [`Message::validate`]): what `dce-edge
/// sip check` and the RFC 4475 / RFC 5118 torture tests use.
pub fn parse_strict(buf: &[u8]) -> Result<Message<'_>, ParseError> {
    let msg = parse(buf)?;
    msg.validate()?;
    Ok(msg)
}

/// Finds the end of the line starting at `from`: returns the index of its
/// CR. A line must end in CRLF.
#[inline(always)]
fn line_end(buf: &[u8], from: usize) -> Res<usize> {
    line_end_from(buf, from, from)
}

/// [`line_end`] when the bytes from `from` to `search_from` are known to
/// hold no LF.
#[inline(always)]
fn line_end_from(buf: &[u8], from: usize, search_from: usize) -> Res<usize> {
    match scan::find_byte(buf, search_from, b'\n') {
        Some(lf) => {
            if lf == from || buf[lf - 1] != b'\r' {
                return Err(Fail::at(ErrorKind::LineEnding, &buf[lf..]));
            }
            Ok(lf - 1)
        }
        None => Err(Fail::at(ErrorKind::Truncated, &buf[buf.len()..])),
    }
}

/// The name of the header line at `pos`: its class, where the name ends and
/// where its colon is. The fast way takes the first colon near `pos` and
/// accepts a known name spelled exactly (which is a token); anything else
/// goes through [`header_name_checked`].
#[inline(always)]
fn header_name(buf: &[u8], pos: usize) -> Res<(HeaderName, usize, usize)> {
    header_name_colon(buf, pos, scan::find_byte(buf, pos, b':'))
}

/// [`header_name`] when the first colon at or after `pos` is known
/// (`None`: there is none near).
#[inline(always)]
fn header_name_colon(
    buf: &[u8],
    pos: usize,
    colon: Option<usize>,
) -> Res<(HeaderName, usize, usize)> {
    // Known names are at most 19 bytes; a few spaces may follow.
    const NEAR: usize = 24;
    if let Some(colon) = colon {
        if colon - pos <= NEAR {
            let mut name_end = colon;
            while name_end > pos && is_wsp(buf[name_end - 1]) {
                name_end -= 1;
            }
            let name = classify(buf, pos, name_end);
            // A known name is a token; another name is accepted here when
            // it is one too (what `header_name_checked` would find).
            if name != HeaderName::Other
                || (name_end > pos && {
                    // Letters, digits and '-' sixteen at a time (all of
                    // them are token characters), then byte by byte.
                    let from = scan::skip_alnum_dash_dot(&buf[..name_end], pos);
                    buf[from..name_end].iter().all(|&b| grammar::is(b, TOKEN))
                })
            {
                return Ok((name, name_end, colon));
            }
        }
    }
    header_name_checked(buf, pos)
}

/// `header-name HCOLON` checked byte by byte: a token, optional white
/// space, a colon.
#[cold]
fn header_name_checked(buf: &[u8], pos: usize) -> Res<(HeaderName, usize, usize)> {
    let name_len = span(&buf[pos..], TOKEN);
    if name_len == 0 {
        return Err(Fail::at(ErrorKind::BadHeaderName, &buf[pos..]));
    }
    let name_end = pos + name_len;
    let mut i = name_end;
    while i < buf.len() && is_wsp(buf[i]) {
        i += 1;
    }
    if buf.get(i) != Some(&b':') {
        return Err(Fail::at(ErrorKind::BadHeaderName, &buf[i.min(buf.len())..]));
    }
    Ok((HeaderName::from_bytes(&buf[pos..name_end]), name_end, i))
}

#[inline(always)]
fn parse_inner<'m, 'a>(
    slot: &'m mut Option<Message<'a>>,
    buf: &'a [u8],
) -> Result<&'m Message<'a>, ParseError> {
    // Errors become offsets here rather than in `parse`, so that the
    // message is not moved through a second `Result` on the way out.
    let at = |f: Fail| f.relative_to(buf);
    if buf.is_empty() {
        return Err(at(Fail::at(ErrorKind::Empty, buf)));
    }
    if buf.len() > MAX_MESSAGE_LEN {
        return Err(at(Fail::at(ErrorKind::TooLarge, &buf[MAX_MESSAGE_LEN..])));
    }
    let cr = line_end(buf, 0).map_err(at)?;
    let start = start_line(&buf[..cr]).map_err(at)?;

    let msg = slot.insert(Message {
        buf,
        start,
        slots: [EMPTY_SLOT; MAX_HEADERS],
        count: 0,
        headers_start: (cr + 2) as u16,
        first: [NONE; HEADER_NAME_COUNT],
        top_via: PLACEHOLDER_VIA,
        from_tag: None,
        to_tag: None,
        call_id: &[],
        cseq: CSeq {
            number: 0,
            method: Method::Other(&[]),
        },
        max_forwards: None,
        content_length: None,
        expires: None,
        headers_end: 0,
        body: &[],
    });

    let mut pos = cr + 2;
    loop {
        let Some(&b) = buf.get(pos) else {
            return Err(at(Fail::at(ErrorKind::Truncated, &buf[buf.len()..])));
        };
        if b == b'\r' {
            if buf.get(pos + 1) != Some(&b'\n') {
                return Err(at(Fail::at(ErrorKind::LineEnding, &buf[pos..])));
            }
            pos += 2;
            break;
        }
        // The first 32 bytes of the line hold the colon (known names are
        // at most 19 bytes) and, on a short line, its end.
        let (name, name_end, colon, mut cr) = match scan::colons_and_lfs(buf, pos) {
            Some((colons, lfs)) => {
                let colon = (colons != 0).then(|| pos + colons.trailing_zeros() as usize);
                let (name, name_end, colon) = header_name_colon(buf, pos, colon).map_err(at)?;
                let i = colon + 1;
                // LFs at or after i inside the window (i - pos <= 32 when
                // the colon came from it).
                let after = match i - pos {
                    shift @ 0..=31 => lfs >> shift,
                    _ => 0,
                };
                let cr = if after != 0 {
                    let lf = i + after.trailing_zeros() as usize;
                    if lf == i || buf[lf - 1] != b'\r' {
                        return Err(at(Fail::at(ErrorKind::LineEnding, &buf[lf..])));
                    }
                    lf - 1
                } else {
                    // No LF in the window after i: one more look at the
                    // next 32 bytes, then the search goes on past them.
                    let from = (pos + 32).max(i);
                    match scan::lfs32(buf, from) {
                        Some(lfs) if lfs != 0 => {
                            let lf = from + lfs.trailing_zeros() as usize;
                            if lf == i || buf[lf - 1] != b'\r' {
                                return Err(at(Fail::at(ErrorKind::LineEnding, &buf[lf..])));
                            }
                            lf - 1
                        }
                        Some(_) => line_end_from(buf, i, from + 32).map_err(at)?,
                        None => line_end_from(buf, i, from).map_err(at)?,
                    }
                };
                (name, name_end, colon, cr)
            }
            None => {
                let (name, name_end, colon) = header_name(buf, pos).map_err(at)?;
                (name, name_end, colon, line_end(buf, colon + 1).map_err(at)?)
            }
        };
        let i = colon + 1;
        // The value runs to the CRLF that is not followed by white space.
        while matches!(buf.get(cr + 2), Some(b' ' | b'\t')) {
            cr = line_end(buf, cr + 2).map_err(at)?;
        }
        let line_end = cr + 2;
        // The value without the white space around it; leading white space
        // may include folds (`TO :\r\n sip:...`).
        let mut value_start = i;
        if buf[i] == b' ' && !matches!(buf[i + 1], b' ' | b'\t' | b'\r') {
            // `Name: value`, the usual way (i < cr, so i + 1 <= cr).
            value_start = i + 1;
        } else {
            while value_start < cr && is_wsp(buf[value_start]) {
                value_start += 1;
            }
            if value_start < cr && buf[value_start] == b'\r' {
                value_start = cr - grammar::skip_sws(&buf[value_start..cr]).len();
            }
        }
        // Trailing white space may include folds too (a continuation line
        // of blanks): every CRLF inside the value is one.
        let mut value_end = cr;
        while matches!(buf[value_end - 1], b' ' | b'\t' | b'\n') {
            if value_end > value_start && is_wsp(buf[value_end - 1]) {
                value_end -= 1;
            } else if value_end >= value_start + 2 && &buf[value_end - 2..value_end] == b"\r\n" {
                value_end -= 2;
            } else {
                break;
            }
        }
        let value = &buf[value_start..value_end];

        let index = msg.count as usize;
        if index == MAX_HEADERS {
            return Err(at(Fail::at(ErrorKind::TooManyHeaders, &buf[pos..])));
        }
        let first = &mut msg.first[name as usize];
        if *first == NONE {
            *first = index as u8;
        } else if name.is_single() {
            return Err(at(Fail::at(ErrorKind::DuplicateHeader, &buf[pos..])));
        }
        msg.slots[index] = Slot {
            name,
            name_len: (name_end - pos).min(LONG_NAME as usize) as u8,
            value_start: value_start as u16,
            value_end: (value_start + value.len()) as u16,
            line_end: line_end as u16,
        };
        msg.count += 1;
        header_value(msg, name, value, index).map_err(at)?;
        pos = line_end;
    }
    msg.headers_end = pos;

    // RFC 3261 section 8.1.1: every request carries these; responses copy them.
    for h in [
        HeaderName::Via,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
    ] {
        if msg.first[h as usize] == NONE {
            return Err(at(Fail::at(ErrorKind::MissingHeader, &buf[pos - 2..])));
        }
    }
    if let StartLine::Request { method, line, .. } = msg.start {
        // Both come from `Method::from_bytes`, which names every method it
        // knows, so equal methods are equal as written and the other way
        // round (and no memcmp is called for the usual, known method).
        if method != msg.cseq.method {
            let slot = msg.slots[msg.first[HeaderName::CSeq as usize] as usize];
            let _ = line;
            return Err(at(Fail::at(
                ErrorKind::CSeqMethodMismatch,
                &buf[slot.value_start as usize..],
            )));
        }
    }

    // RFC 3261 section 18.3: on a datagram transport, octets past
    // Content-Length are discarded; fewer octets than announced is an error.
    let rest = &buf[pos..];
    msg.body = match msg.content_length {
        Some(n) if n as usize <= rest.len() => &rest[..n as usize],
        Some(_) => {
            let slot = msg.slots[msg.first[HeaderName::ContentLength as usize] as usize];
            return Err(at(Fail::at(
                ErrorKind::BodyTooShort,
                &buf[slot.value_start as usize..],
            )));
        }
        None => rest,
    };
    Ok(msg)
}

/// Reads the value of one header line the hot path needs.
#[inline(always)]
fn header_value<'a>(
    msg: &mut Message<'a>,
    name: HeaderName,
    value: &'a [u8],
    index: usize,
) -> Res<()> {
    match name {
        HeaderName::Via if msg.first[HeaderName::Via as usize] as usize == index => {
            // `via_parm`, without moving the value through a `Result`.
            msg.top_via = match values::via_parm_fast(value) {
                Some((via, _)) => via,
                None => values::via_parm_general(value)?.0,
            };
        }
        HeaderName::From => msg.from_tag = values::light_tag(value)?,
        HeaderName::To => msg.to_tag = values::light_tag(value)?,
        HeaderName::CallId => {
            if value.is_empty() {
                return Err(Fail::at(ErrorKind::BadCallId, value));
            }
            msg.call_id = value;
        }
        HeaderName::CSeq => msg.cseq = values::cseq(value)?,
        HeaderName::MaxForwards => {
            msg.max_forwards = Some(values::number(value, 255, ErrorKind::BadMaxForwards)? as u8);
        }
        HeaderName::ContentLength => {
            msg.content_length =
                Some(
                    values::number(value, u64::from(u32::MAX), ErrorKind::BadContentLength)? as u32,
                );
        }
        HeaderName::Expires => {
            msg.expires =
                Some(values::number(value, u64::from(u32::MAX), ErrorKind::BadExpires)? as u32);
        }
        _ => {}
    }
    Ok(())
}

/// Checks one header value against its full grammar (for `validate`).
fn check_value(name: HeaderName, value: &[u8]) -> Res<()> {
    match name {
        HeaderName::Via => {
            values::via_list(value)?;
        }
        HeaderName::From | HeaderName::To => {
            values::single_name_addr(value)?;
        }
        HeaderName::CallId => values::call_id(value)?,
        HeaderName::Contact => values::name_addr_list(value, true)?,
        HeaderName::Route | HeaderName::RecordRoute => values::name_addr_list(value, false)?,
        HeaderName::Date => values::date(value)?,
        _ => {}
    }
    Ok(())
}

/// The full check of a Request-URI: a valid URI without headers.
fn request_uri(raw: &[u8]) -> Res<Uri<'_>> {
    let uri = uri::uri(raw).map_err(|f| Fail {
        kind: match f.kind {
            ErrorKind::BadUri => ErrorKind::BadRequestUri,
            k => k,
        },
        addr: f.addr,
    })?;
    if uri.headers().is_some() {
        // RFC 3261 section 19.1.1: headers are not allowed in the Request-URI.
        return Err(Fail::at(ErrorKind::RequestUriHeaders, raw));
    }
    Ok(uri)
}

/// Parses the start line (without its CRLF).
fn start_line(line: &[u8]) -> Res<StartLine<'_>> {
    const VERSION: &[u8] = b"SIP/2.0";
    if line.starts_with(b"SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let sp = if line.get(7) == Some(&b' ') {
            7
        } else {
            match memchr::memchr(b' ', line) {
                Some(sp) => sp,
                None => return Err(Fail::at(ErrorKind::BadStatusLine, &line[line.len()..])),
            }
        };
        if &line[..sp] != VERSION {
            return Err(Fail::at(ErrorKind::UnsupportedVersion, line));
        }
        let rest = &line[sp + 1..];
        let code = match rest {
            [a, b, c, b' ', ..]
                if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() =>
            {
                u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
            }
            _ => return Err(Fail::at(ErrorKind::BadStatusCode, rest)),
        };
        if !(100..=699).contains(&code) {
            return Err(Fail::at(ErrorKind::BadStatusCode, rest));
        }
        let reason = &rest[4..];
        // Reason-Phrase = *(reserved / unreserved / escaped / UTF8-NONASCII
        // / UTF8-CONT / SP / HTAB): no control characters.
        if let Some(i) = reason
            .iter()
            .position(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
        {
            return Err(Fail::at(ErrorKind::BadReasonPhrase, &reason[i..]));
        }
        return Ok(StartLine::Response { code, reason, line });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version
    // A method this parser names is a token, so when the bytes before the
    // first space name one, the token ends at that space: one search rather
    // than the byte loop.
    let (method, method_len) = match scan::find_byte(line, 0, b' ') {
        Some(sp) => match Method::from_bytes(&line[..sp]) {
            Method::Other(_) => {
                let n = span(line, TOKEN);
                (Method::from_bytes(&line[..n]), n)
            }
            known => (known, sp),
        },
        None => {
            let n = span(line, TOKEN);
            (Method::from_bytes(&line[..n]), n)
        }
    };
    if method_len == 0 {
        return Err(Fail::at(ErrorKind::BadMethod, line));
    }
    let rest = &line[method_len..];
    let Some((&b' ', rest)) = rest.split_first() else {
        return Err(Fail::at(ErrorKind::BadRequestLine, rest));
    };
    // The last space: nearly always the one before `SIP/2.0`.
    let sp = if rest.ends_with(b" SIP/2.0") {
        rest.len() - 8
    } else {
        match memchr::memrchr(b' ', rest) {
            Some(sp) => sp,
            None => return Err(Fail::at(ErrorKind::BadRequestLine, &rest[rest.len()..])),
        }
    };
    let version = &rest[sp + 1..];
    if version != VERSION {
        let kind = if version.starts_with(b"SIP/") {
            ErrorKind::UnsupportedVersion
        } else {
            ErrorKind::BadRequestLine
        };
        return Err(Fail::at(kind, version));
    }
    let raw_uri = &rest[..sp];
    // The first space or tab, if any (sixteen bytes per step).
    if let Some(i) = scan::find_space_or_tab(raw_uri, 0) {
        return Err(Fail::at(ErrorKind::BadRequestLine, &raw_uri[i..]));
    }
    // scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":" with something after it.
    let scheme_len = if raw_uri.len() >= 4 && raw_uri[..4].eq_ignore_ascii_case(b"sip:") {
        3
    } else {
        raw_uri
            .iter()
            .position(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))
            .unwrap_or(raw_uri.len())
    };
    if scheme_len == 0
        || !raw_uri[0].is_ascii_alphabetic()
        || raw_uri.get(scheme_len) != Some(&b':')
        || scheme_len + 1 == raw_uri.len()
    {
        return Err(Fail::at(ErrorKind::BadRequestUri, raw_uri));
    }
    Ok(StartLine::Request {
        method,
        uri: raw_uri,
        line,
    })
}

// Stands in for the top Via until it is parsed; the presence check at the
// end of `parse` guarantees that it does not survive.
const PLACEHOLDER_VIA: Via<'static> = values::PLACEHOLDER_VIA;

impl<'a> Message<'a> {
    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The start line, typed.
    #[inline]
    pub fn start(&self) -> StartLine<'a> {
        self.start
    }

    /// Whether this is a response.
    pub fn is_response(&self) -> bool {
        !self.is_request()
    }

    /// The method of a request, or `None` for a response (see
    /// [`Message::cseq`] for the method a response answers).
    pub fn method(&self) -> Option<Method<'a>> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI of a request, as written.
    #[inline]
    pub fn request_uri(&self) -> Option<&'a [u8]> {
        match self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI of a request, parsed (`None` for a response). An
    /// error says why it is not a valid URI; after [`parse_strict`] it is
    /// always `Ok`.
    pub fn uri(&self) -> Option<Result<Uri<'a>, ParseError>> {
        self.request_uri()
            .map(|raw| request_uri(raw).map_err(|f| f.relative_to(self.buf)))
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase of a response, as written (may be empty).
    pub fn reason(&self) -> Option<&'a [u8]> {
        match self.start {
            StartLine::Response { reason, .. } => Some(reason),
            StartLine::Request { .. } => None,
        }
    }

    /// The start line without its CRLF.
    pub fn start_line(&self) -> &'a [u8] {
        match self.start {
            StartLine::Request { line, .. } | StartLine::Response { line, .. } => line,
        }
    }

    /// Where the header line of slot `index` starts.
    #[inline]
    fn line_start(&self, index: usize) -> usize {
        match index.checked_sub(1) {
            Some(before) => self.slots[before].line_end as usize,
            None => self.headers_start as usize,
        }
    }

    fn header_at(&self, index: usize) -> Header<'a> {
        let b = self.buf;
        let slot = &self.slots[index];
        let start = self.line_start(index);
        let name_end = match slot.name_len {
            LONG_NAME => start + span(&b[start..], TOKEN),
            n => start + n as usize,
        };
        Header {
            name: slot.name,
            name_bytes: &b[start..name_end],
            value: &b[slot.value_start as usize..slot.value_end as usize],
            line: &b[start..slot.line_end as usize],
        }
    }

    /// Every header line, in order.
    pub fn headers(&self) -> impl Iterator<Item = Header<'a>> + '_ {
        (0..self.count as usize).map(|i| self.header_at(i))
    }

    /// How many header lines the message has.
    pub fn header_count(&self) -> usize {
        self.count as usize
    }

    /// The first header line with this name (compact forms included).
    #[inline]
    pub fn header(&self, name: HeaderName) -> Option<Header<'a>> {
        match self.first[name as usize] {
            NONE => None,
            i => Some(self.header_at(i as usize)),
        }
    }

    /// The value of the first header line with this name.
    #[inline]
    pub fn header_value(&self, name: HeaderName) -> Option<&'a [u8]> {
        self.header(name).map(|h| h.value)
    }

    /// Every header line with this name, in order.
    pub fn headers_named(&self, name: HeaderName) -> impl Iterator<Item = Header<'a>> + '_ {
        let from = match self.first[name as usize] {
            NONE => self.count as usize,
            i => i as usize,
        };
        (from..self.count as usize)
            .filter(move |&i| self.slots[i].name == name)
            .map(|i| self.header_at(i))
    }

    /// The first header line whose name is `name` (without regard to case;
    /// a known name also matches its compact form). For extension headers.
    pub fn header_by_name(&self, name: &[u8]) -> Option<Header<'a>> {
        match HeaderName::from_bytes(name) {
            HeaderName::Other => self
                .headers()
                .find(|h| h.name == HeaderName::Other && h.name_bytes.eq_ignore_ascii_case(name)),
            known => self.header(known),
        }
    }

    /// The top (first) Via value.
    #[inline]
    pub fn top_via(&self) -> &Via<'a> {
        &self.top_via
    }

    /// Every Via value in order, across header lines and comma lists, each
    /// parsed when reached. A malformed value yields its error and ends the walk.
    pub fn vias(&self) -> Vias<'a, '_> {
        Vias {
            msg: self,
            slot: self.first[HeaderName::Via as usize] as usize,
            rest: &[],
            done: false,
        }
    }

    /// The second Via value: where a proxy sends a response after removing
    /// its own (RFC 3261 section 16.7). `Ok(None)` when there is only one.
    pub fn second_via(&self) -> Result<Option<Via<'a>>, ParseError> {
        self.vias().nth(1).transpose()
    }

    fn single(&self, name: HeaderName) -> Result<NameAddr<'a>, ParseError> {
        let value = self.header_value(name).unwrap_or_default();
        values::single_name_addr(value).map_err(|f| f.relative_to(self.buf))
    }

    /// The From value, parsed (an error says why it is malformed; after
    /// [`parse_strict`] it is always `Ok`).
    pub fn from(&self) -> Result<NameAddr<'a>, ParseError> {
        self.single(HeaderName::From)
    }

    /// The To value, parsed (see [`Message::from`]).
    pub fn to(&self) -> Result<NameAddr<'a>, ParseError> {
        self.single(HeaderName::To)
    }

    /// The From tag.
    #[inline]
    pub fn from_tag(&self) -> Option<&'a [u8]> {
        self.from_tag
    }

    /// The To tag (absent on a dialog-creating request).
    #[inline]
    pub fn to_tag(&self) -> Option<&'a [u8]> {
        self.to_tag
    }

    /// The Call-ID.
    #[inline]
    pub fn call_id(&self) -> &'a [u8] {
        self.call_id
    }

    /// The CSeq number and method.
    #[inline]
    pub fn cseq(&self) -> CSeq<'a> {
        self.cseq
    }

    /// Max-Forwards, if present (0 to 255).
    #[inline]
    pub fn max_forwards(&self) -> Option<u8> {
        self.max_forwards
    }

    /// Content-Length, if present.
    pub fn content_length(&self) -> Option<u32> {
        self.content_length
    }

    /// Expires, if present.
    pub fn expires(&self) -> Option<u32> {
        self.expires
    }

    /// The User-Agent value, as written.
    pub fn user_agent(&self) -> Option<&'a [u8]> {
        self.header_value(HeaderName::UserAgent)
    }

    /// The Server value, as written.
    pub fn server(&self) -> Option<&'a [u8]> {
        self.header_value(HeaderName::Server)
    }

    /// The Content-Type value, as written.
    pub fn content_type(&self) -> Option<&'a [u8]> {
        self.header_value(HeaderName::ContentType)
    }

    /// Every Contact value, in order, each parsed when reached (none for
    /// `Contact: *`). A malformed value yields its error and ends the walk.
    pub fn contacts(&self) -> NameAddrs<'a, '_> {
        NameAddrs::new(self, HeaderName::Contact)
    }

    /// Whether the message carries `Contact: *` (a REGISTER removing all bindings).
    pub fn contact_is_wildcard(&self) -> bool {
        self.header_value(HeaderName::Contact) == Some(b"*")
    }

    /// Every Route value, in order.
    pub fn routes(&self) -> NameAddrs<'a, '_> {
        NameAddrs::new(self, HeaderName::Route)
    }

    /// Every Record-Route value, in order.
    pub fn record_routes(&self) -> NameAddrs<'a, '_> {
        NameAddrs::new(self, HeaderName::RecordRoute)
    }

    /// The body: the bytes after the blank line, cut to Content-Length.
    #[inline]
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The message bytes: start line, headers and body, without any bytes
    /// past Content-Length.
    pub fn as_bytes(&self) -> &'a [u8] {
        &self.buf[..self.headers_end + self.body.len()]
    }

    /// Byte offset of the body (just after the blank line).
    pub fn body_offset(&self) -> usize {
        self.headers_end
    }

    /// Writes the dialed number of a request's Request-URI into `out` (see
    /// [`Uri::dialed_number`]). A response has none.
    #[inline]
    pub fn dialed_number(&self, out: &mut DialedNumber) -> Result<(), DialedNumberError> {
        match self.start {
            StartLine::Request { uri, .. } => uri::dialed_number_of(uri, out),
            StartLine::Response { .. } => {
                out.clone_from(&DialedNumber::new());
                Err(DialedNumberError::NoNumber)
            }
        }
    }

    /// Checks every header value the parser has a grammar for (Via, From,
    /// To, Call-ID, Contact, Route, Record-Route, Date) and the Request-URI
    /// against RFC 3261; returns the first error with its offset in the
    /// datagram.
    pub fn validate(&self) -> Result<(), ParseError> {
        if let StartLine::Request { uri, .. } = self.start {
            request_uri(uri).map_err(|f| f.relative_to(self.buf))?;
        }
        for slot in &self.slots[..self.count as usize] {
            let value = &self.buf[slot.value_start as usize..slot.value_end as usize];
            check_value(slot.name, value).map_err(|f| f.relative_to(self.buf))?;
        }
        Ok(())
    }

    /// The header slots in order, for the writers: (name, line start,
    /// value start, value end, line end).
    pub(crate) fn slot_positions(
        &self,
    ) -> impl Iterator<Item = (HeaderName, usize, usize, usize, usize)> + '_ {
        self.slots[..self.count as usize]
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    s.name,
                    self.line_start(i),
                    s.value_start as usize,
                    s.value_end as usize,
                    s.line_end as usize,
                )
            })
    }

    /// The datagram this message was parsed from.
    pub(crate) fn buf(&self) -> &'a [u8] {
        self.buf
    }
}

/// Iterator over every Via value of a message.
#[derive(Debug, Clone)]
pub struct Vias<'a, 'm> {
    msg: &'m Message<'a>,
    slot: usize,
    rest: &'a [u8],
    done: bool,
}

impl<'a> Iterator for Vias<'a, '_> {
    type Item = Result<Via<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            if !self.rest.is_empty() {
                return Some(match values::next_via(self.rest) {
                    Ok((via, rest)) => {
                        self.rest = rest;
                        Ok(via)
                    }
                    Err(f) => {
                        self.done = true;
                        Err(f.relative_to(self.msg.buf))
                    }
                });
            }
            let count = self.msg.count as usize;
            while self.slot < count && self.msg.slots[self.slot].name != HeaderName::Via {
                self.slot += 1;
            }
            if self.slot >= count {
                return None;
            }
            let s = self.msg.slots[self.slot];
            self.slot += 1;
            self.rest = &self.msg.buf[s.value_start as usize..s.value_end as usize];
        }
    }
}

/// Iterator over the name-addr values of Contact, Route or Record-Route.
#[derive(Debug, Clone)]
pub struct NameAddrs<'a, 'm> {
    msg: &'m Message<'a>,
    name: HeaderName,
    slot: usize,
    rest: &'a [u8],
    done: bool,
}

impl<'a, 'm> NameAddrs<'a, 'm> {
    fn new(msg: &'m Message<'a>, name: HeaderName) -> Self {
        NameAddrs {
            msg,
            name,
            slot: match msg.first[name as usize] {
                NONE => msg.count as usize,
                i => i as usize,
            },
            rest: &[],
            done: false,
        }
    }
}

impl<'a> Iterator for NameAddrs<'a, '_> {
    type Item = Result<NameAddr<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            if !self.rest.is_empty() {
                return Some(match values::next_name_addr(self.rest) {
                    Ok((v, rest)) => {
                        self.rest = rest;
                        Ok(v)
                    }
                    Err(f) => {
                        self.done = true;
                        Err(f.relative_to(self.msg.buf))
                    }
                });
            }
            let count = self.msg.count as usize;
            while self.slot < count && self.msg.slots[self.slot].name != self.name {
                self.slot += 1;
            }
            if self.slot >= count {
                return None;
            }
            let s = self.msg.slots[self.slot];
            self.slot += 1;
            let value = &self.msg.buf[s.value_start as usize..s.value_end as usize];
            if value != b"*" {
                self.rest = value;
            }
        }
    }
}
