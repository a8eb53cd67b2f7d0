//! Framing SIP messages out of a byte stream (TCP, or TLS once decrypted):
//! RFC 3261 section 18.3. Sans-IO: the caller keeps the connection's
//! buffer, appends what it reads, and asks a [`Framer`] what the front of
//! the buffer holds.
//!
//! The rules, strict on purpose (a framing error loses the stream's
//! framing for good, so it closes the connection):
//!
//! - at a message boundary, a double CRLF is a keep-alive ping (RFC 5626
//!   section 4.4.1; answer it with a single CRLF), a lone CRLF is skipped
//!   (RFC 3261 section 7.5), and a CRLF at the end of the buffer waits for
//!   more (it may be half a ping);
//! - the header block ends at the first empty line and may be at most
//!   [`FrameLimits::max_header`] bytes, found or not;
//! - Content-Length (or its compact form `l`) must be there (section
//!   18.3: "MUST be used" on stream transports), digits only, at most nine
//!   of them, at most [`FrameLimits::max_body`], and every copy of it must
//!   agree (two values that differ would let two parsers see two different
//!   messages);
//! - a folded Content-Length line is refused.
//!
//! The framer remembers how far it searched, so a sender that trickles a
//! header a byte at a time costs a bounded amount of work per byte.

/// Bounds on one message of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Most bytes of start line and header fields, the empty line included.
    pub max_header: usize,
    /// Most bytes of body.
    pub max_body: usize,
}

impl Default for FrameLimits {
    /// 16 KiB of header (Kamailio's default read buffer), 64 KiB of body.
    fn default() -> Self {
        FrameLimits {
            max_header: 16 * 1024,
            max_body: 64 * 1024,
        }
    }
}

impl FrameLimits {
    /// The most bytes one message can take, header and body: what a
    /// connection's receive buffer must hold.
    pub fn max_message(&self) -> usize {
        self.max_header + self.max_body
    }
}

/// What the front of a stream's buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Not enough bytes yet to tell.
    Incomplete,
    /// A keep-alive ping (a double CRLF) of this many bytes: remove them
    /// and answer with a single CRLF.
    Ping(usize),
    /// Bytes to skip (a lone CRLF before a start line).
    Skip(usize),
    /// A whole message: the first `len` bytes.
    Message(usize),
}

/// Why a stream lost its framing (the connection must be closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum FrameError {
    /// No empty line within [`FrameLimits::max_header`] bytes.
    #[error("header block longer than the limit")]
    HeaderTooLong,
    /// The message has no Content-Length.
    #[error("no Content-Length on a stream transport")]
    NoContentLength,
    /// A Content-Length that is not 1 to 9 digits, or is folded.
    #[error("bad Content-Length")]
    BadContentLength,
    /// Two Content-Length values that differ.
    #[error("Content-Length values that differ")]
    ConflictingContentLength,
    /// A body longer than [`FrameLimits::max_body`].
    #[error("body longer than the limit")]
    BodyTooLong,
}

impl FrameError {
    /// A name for counters and logs.
    pub fn name(self) -> &'static str {
        match self {
            FrameError::HeaderTooLong => "header_too_long",
            FrameError::NoContentLength => "no_content_length",
            FrameError::BadContentLength => "bad_content_length",
            FrameError::ConflictingContentLength => "conflicting_content_length",
            FrameError::BodyTooLong => "body_too_long",
        }
    }
}

/// Frames one stream; see the [module documentation](self).
#[derive(Debug, Clone, Default)]
pub struct Framer {
    limits: FrameLimits,
    /// Bytes of the current message's header already searched for the
    /// empty line.
    scanned: usize,
    /// The current message's length, once its header block was read.
    message_len: Option<usize>,
}

impl Framer {
    /// A framer with these limits.
    pub fn new(limits: FrameLimits) -> Framer {
        Framer {
            limits,
            scanned: 0,
            message_len: None,
        }
    }

    /// The limits it frames by.
    pub fn limits(&self) -> FrameLimits {
        self.limits
    }

    /// What the front of `buf` holds. `buf` must start where the last
    /// [`Frame::Ping`], [`Frame::Skip`] or [`Frame::Message`] ended (the
    /// caller removes those bytes) and only grow between calls otherwise.
    pub fn next(&mut self, buf: &[u8]) -> Result<Frame, FrameError> {
        if let Some(len) = self.message_len {
            return Ok(self.complete(buf.len(), len));
        }
        if self.scanned == 0 {
            match buf {
                [] | [b'\r'] | [b'\r', b'\n'] | [b'\r', b'\n', b'\r'] => {
                    return Ok(Frame::Incomplete)
                }
                [b'\r', b'\n', b'\r', b'\n', ..] => return Ok(Frame::Ping(4)),
                [b'\r', b'\n', ..] => return Ok(Frame::Skip(2)),
                _ => {}
            }
        }
        let from = self.scanned.saturating_sub(3);
        let window = &buf[..buf.len().min(self.limits.max_header)];
        let Some(at) = memchr::memmem::find(&window[from..], b"\r\n\r\n") else {
            if buf.len() >= self.limits.max_header {
                return Err(FrameError::HeaderTooLong);
            }
            self.scanned = buf.len();
            return Ok(Frame::Incomplete);
        };
        let header_len = from + at + 4;
        let body = content_length(&buf[..header_len])?;
        if body > self.limits.max_body {
            return Err(FrameError::BodyTooLong);
        }
        let len = header_len + body;
        self.message_len = Some(len);
        Ok(self.complete(buf.len(), len))
    }

    fn complete(&mut self, have: usize, len: usize) -> Frame {
        if have < len {
            return Frame::Incomplete;
        }
        self.scanned = 0;
        self.message_len = None;
        Frame::Message(len)
    }
}

/// The Content-Length of a header block (start line, fields, empty line).
fn content_length(header: &[u8]) -> Result<usize, FrameError> {
    let mut found: Option<usize> = None;
    let mut lines = header.split(|&b| b == b'\n').skip(1);
    let mut previous_was_length = false;
    for line in lines.by_ref() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            // A continuation of the previous field.
            if previous_was_length {
                return Err(FrameError::BadContentLength);
            }
            continue;
        }
        previous_was_length = false;
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = trim(&line[..colon]);
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        previous_was_length = true;
        let value = trim(&line[colon + 1..]);
        if value.is_empty() || value.len() > 9 || !value.iter().all(u8::is_ascii_digit) {
            return Err(FrameError::BadContentLength);
        }
        let n = value
            .iter()
            .fold(0usize, |n, &d| n * 10 + usize::from(d - b'0'));
        match found {
            Some(m) if m != n => return Err(FrameError::ConflictingContentLength),
            _ => found = Some(n),
        }
    }
    found.ok_or(FrameError::NoContentLength)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"MESSAGE sip:1@e SIP/2.0\r\nVia: SIP/2.0/TCP a;branch=z9hG4bK1\r\n\
Content-Length: 8\r\n\r\nab\r\n\r\ncd";

    /// Feeds `stream` split at `cut`, returning every frame in order.
    fn frames(
        stream: &[u8],
        cuts: &[usize],
        limits: FrameLimits,
    ) -> Result<Vec<Frame>, FrameError> {
        let mut f = Framer::new(limits);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        let mut fed = 0;
        for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
            buf.extend_from_slice(&stream[fed..cut]);
            fed = cut;
            loop {
                match f.next(&buf)? {
                    Frame::Incomplete => break,
                    frame @ (Frame::Ping(n) | Frame::Skip(n) | Frame::Message(n)) => {
                        buf.drain(..n);
                        out.push(frame);
                    }
                }
            }
        }
        assert!(buf.is_empty() || f.next(&buf) == Ok(Frame::Incomplete));
        Ok(out)
    }

    #[test]
    fn every_split_point_gives_the_same_frames() {
        let mut stream = b"\r\n".to_vec();
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(MSG);
        let want = vec![
            Frame::Skip(2),
            Frame::Message(MSG.len()),
            Frame::Ping(4),
            Frame::Message(MSG.len()),
        ];
        for cut in 0..=stream.len() {
            assert_eq!(
                frames(&stream, &[cut], FrameLimits::default()),
                Ok(want.clone()),
                "{cut}"
            );
        }
        // And a byte at a time.
        let cuts: Vec<usize> = (1..stream.len()).collect();
        assert_eq!(frames(&stream, &cuts, FrameLimits::default()), Ok(want));
    }

    #[test]
    fn compact_and_spaced_content_length_count() {
        let m = b"OPTIONS sip:e SIP/2.0\r\nl :  3 \r\n\r\nabc";
        assert_eq!(
            frames(m, &[], FrameLimits::default()),
            Ok(vec![Frame::Message(m.len())])
        );
        // Agreeing duplicates are fine.
        let m = b"OPTIONS sip:e SIP/2.0\r\nl: 1\r\nContent-Length: 1\r\n\r\na";
        assert_eq!(
            frames(m, &[], FrameLimits::default()),
            Ok(vec![Frame::Message(m.len())])
        );
        // The name inside another field's value is not a header.
        let m =
            b"OPTIONS sip:e SIP/2.0\r\nSubject: Content-Length: 99\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            frames(m, &[], FrameLimits::default()),
            Ok(vec![Frame::Message(m.len())])
        );
    }

    #[test]
    fn framing_errors_are_refused() {
        let d = FrameLimits::default();
        let cases: [(&[u8], FrameError); 7] = [
            (
                b"OPTIONS sip:e SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n",
                FrameError::NoContentLength,
            ),
            (
                b"OPTIONS sip:e SIP/2.0\r\nContent-Length: -1\r\n\r\n",
                FrameError::BadContentLength,
            ),
            (
                b"OPTIONS sip:e SIP/2.0\r\nContent-Length: 1234567890\r\n\r\n",
                FrameError::BadContentLength,
            ),
            (
                b"OPTIONS sip:e SIP/2.0\r\nContent-Length:\r\n\r\n",
                FrameError::BadContentLength,
            ),
            (
                b"OPTIONS sip:e SIP/2.0\r\nContent-Length: 1\r\n 2\r\n\r\n",
                FrameError::BadContentLength,
            ),
            (
                b"OPTIONS sip:e SIP/2.0\r\nContent-Length: 0\r\nl: 4\r\n\r\nabcd",
                FrameError::ConflictingContentLength,
            ),
            (
                b"OPTIONS sip:e SIP/2.0\r\nContent-Length: 65537\r\n\r\n",
                FrameError::BodyTooLong,
            ),
        ];
        for (m, e) in cases {
            assert_eq!(frames(m, &[], d), Err(e), "{}", String::from_utf8_lossy(m));
        }
    }

    #[test]
    fn a_header_without_end_is_cut_at_the_limit() {
        let limits = FrameLimits {
            max_header: 64,
            max_body: 64,
        };
        let mut f = Framer::new(limits);
        let mut buf = b"OPTIONS sip:e SIP/2.0\r\n".to_vec();
        assert_eq!(f.next(&buf), Ok(Frame::Incomplete));
        while buf.len() < 63 {
            buf.push(b'x');
            assert_eq!(f.next(&buf), Ok(Frame::Incomplete));
        }
        buf.push(b'x');
        assert_eq!(f.next(&buf), Err(FrameError::HeaderTooLong));
        // An empty line just past the limit does not save it either.
        let mut long = vec![b'x'; 62];
        long.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            Framer::new(limits).next(&long),
            Err(FrameError::HeaderTooLong)
        );
        // One that ends exactly at the limit is a message.
        let ok = b"A sip:e SIP/2.0\r\nl: 0\r\n\r\n";
        assert_eq!(
            Framer::new(FrameLimits {
                max_header: ok.len(),
                max_body: 0
            })
            .next(ok),
            Ok(Frame::Message(ok.len()))
        );
    }

    #[test]
    fn half_a_ping_waits() {
        let mut f = Framer::default();
        assert_eq!(f.next(b"\r\n"), Ok(Frame::Incomplete));
        assert_eq!(f.next(b"\r\n\r"), Ok(Frame::Incomplete));
        assert_eq!(f.next(b"\r\n\r\n"), Ok(Frame::Ping(4)));
        assert_eq!(f.next(b"\r\nO"), Ok(Frame::Skip(2)));
    }
}
