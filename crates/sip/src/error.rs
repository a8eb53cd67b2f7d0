//! Why a datagram is not a SIP message, and where: every rejection names one
//! [`ErrorKind`] and the byte offset in the datagram where the parser stopped,
//! so a counter can be kept per kind and a person can find the bad byte.

use std::fmt;

/// What is wrong with a message. One kind per rule of RFC 3261 that can fail;
/// the names are stable (they appear in `dce-edge sip check --json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The datagram is empty.
    Empty,
    /// The datagram is longer than a UDP payload can be (65535 bytes).
    TooLarge,
    /// The message ends before its start line or its header block does.
    Truncated,
    /// A line ends in a bare LF or a bare CR where RFC 3261 section 7 requires CRLF.
    LineEnding,
    /// The method of the request line is not a token.
    BadMethod,
    /// The request line is not `Method SP Request-URI SP SIP-Version` with single spaces.
    BadRequestLine,
    /// The Request-URI is not a valid absolute URI.
    BadRequestUri,
    /// The Request-URI carries URI headers (`?...`), which RFC 3261 section 19.1.1 forbids there.
    RequestUriHeaders,
    /// The protocol version is not `SIP/2.0`.
    UnsupportedVersion,
    /// The status line is not `SIP/2.0 SP 3DIGIT SP Reason-Phrase`.
    BadStatusLine,
    /// The status code is not three digits between 100 and 699.
    BadStatusCode,
    /// The reason phrase holds a control character.
    BadReasonPhrase,
    /// A header line does not start with `token HCOLON`.
    BadHeaderName,
    /// A header value holds a byte no header may hold (a bare CR, for instance).
    BadHeaderValue,
    /// More header lines than [`MAX_HEADERS`](super::MAX_HEADERS).
    TooManyHeaders,
    /// A header that must appear once appears again (RFC 4475 section 3.3.8).
    DuplicateHeader,
    /// A header every request and response must carry is missing (RFC 3261 section 8.1.1).
    MissingHeader,
    /// A Via value does not match `sent-protocol LWS sent-by *( SEMI via-params )`.
    BadVia,
    /// A From, To, Contact, Route or Record-Route value is not a valid name-addr or addr-spec.
    BadNameAddr,
    /// A display name is neither a quoted string nor a run of tokens.
    BadDisplayName,
    /// An unterminated quoted string.
    UnterminatedQuote,
    /// A URI inside a header value is not valid.
    BadUri,
    /// A host is not a host name, an IPv4 address or a bracketed IPv6 reference.
    BadHost,
    /// A port is not a number between 0 and 65535.
    BadPort,
    /// A header or URI parameter is empty or malformed (`;;`, `;=x`).
    BadParam,
    /// A percent-escape is not `%` followed by two hex digits.
    BadEscape,
    /// The Call-ID is not `word [ "@" word ]`.
    BadCallId,
    /// The CSeq is not `1*DIGIT LWS Method`, or its number exceeds 2^31-1.
    BadCSeq,
    /// The CSeq method differs from the request method (RFC 3261 section 8.1.1.5).
    CSeqMethodMismatch,
    /// Max-Forwards is not a number between 0 and 255.
    BadMaxForwards,
    /// Content-Length is not a decimal number (RFC 4475 section 3.1.2.3).
    BadContentLength,
    /// Content-Length announces more bytes than the datagram holds (RFC 3261 section 18.3).
    BodyTooShort,
    /// Expires is not a number of seconds that fits in 32 bits.
    BadExpires,
    /// A Date header is not an RFC 1123 date in GMT (RFC 3261 section 20.17).
    BadDate,
}

impl ErrorKind {
    /// The stable snake_case name of the kind, as printed by `sip check --json`.
    pub fn name(self) -> &'static str {
        use ErrorKind::*;
        match self {
            Empty => "empty",
            TooLarge => "too_large",
            Truncated => "truncated",
            LineEnding => "line_ending",
            BadMethod => "bad_method",
            BadRequestLine => "bad_request_line",
            BadRequestUri => "bad_request_uri",
            RequestUriHeaders => "request_uri_headers",
            UnsupportedVersion => "unsupported_version",
            BadStatusLine => "bad_status_line",
            BadStatusCode => "bad_status_code",
            BadReasonPhrase => "bad_reason_phrase",
            BadHeaderName => "bad_header_name",
            BadHeaderValue => "bad_header_value",
            TooManyHeaders => "too_many_headers",
            DuplicateHeader => "duplicate_header",
            MissingHeader => "missing_header",
            BadVia => "bad_via",
            BadNameAddr => "bad_name_addr",
            BadDisplayName => "bad_display_name",
            UnterminatedQuote => "unterminated_quote",
            BadUri => "bad_uri",
            BadHost => "bad_host",
            BadPort => "bad_port",
            BadParam => "bad_param",
            BadEscape => "bad_escape",
            BadCallId => "bad_call_id",
            BadCSeq => "bad_cseq",
            CSeqMethodMismatch => "cseq_method_mismatch",
            BadMaxForwards => "bad_max_forwards",
            BadContentLength => "bad_content_length",
            BodyTooShort => "body_too_short",
            BadExpires => "bad_expires",
            BadDate => "bad_date",
        }
    }

    /// Every kind, for looking a name up.
    pub const ALL: &'static [ErrorKind] = &[
        ErrorKind::Empty,
        ErrorKind::TooLarge,
        ErrorKind::Truncated,
        ErrorKind::LineEnding,
        ErrorKind::BadMethod,
        ErrorKind::BadRequestLine,
        ErrorKind::BadRequestUri,
        ErrorKind::RequestUriHeaders,
        ErrorKind::UnsupportedVersion,
        ErrorKind::BadStatusLine,
        ErrorKind::BadStatusCode,
        ErrorKind::BadReasonPhrase,
        ErrorKind::BadHeaderName,
        ErrorKind::BadHeaderValue,
        ErrorKind::TooManyHeaders,
        ErrorKind::DuplicateHeader,
        ErrorKind::MissingHeader,
        ErrorKind::BadVia,
        ErrorKind::BadNameAddr,
        ErrorKind::BadDisplayName,
        ErrorKind::UnterminatedQuote,
        ErrorKind::BadUri,
        ErrorKind::BadHost,
        ErrorKind::BadPort,
        ErrorKind::BadParam,
        ErrorKind::BadEscape,
        ErrorKind::BadCallId,
        ErrorKind::BadCSeq,
        ErrorKind::CSeqMethodMismatch,
        ErrorKind::BadMaxForwards,
        ErrorKind::BadContentLength,
        ErrorKind::BodyTooShort,
        ErrorKind::BadExpires,
        ErrorKind::BadDate,
    ];

    /// The kind with this [`name`](ErrorKind::name).
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        Self::ALL.iter().copied().find(|k| k.name() == name)
    }

    /// A sentence for a person reading a log or the `sip check` output.
    pub fn description(self) -> &'static str {
        use ErrorKind::*;
        match self {
            Empty => "the datagram is empty",
            TooLarge => "the datagram is larger than 65535 bytes",
            Truncated => "the message ends before its header block is complete",
            LineEnding => "a line does not end in CRLF",
            BadMethod => "the method is not a token",
            BadRequestLine => "the request line is not `Method SP Request-URI SP SIP/2.0`",
            BadRequestUri => "the Request-URI is not a valid URI",
            RequestUriHeaders => "the Request-URI carries URI headers",
            UnsupportedVersion => "the protocol version is not SIP/2.0",
            BadStatusLine => "the status line is not `SIP/2.0 SP code SP reason`",
            BadStatusCode => "the status code is not a number from 100 to 699",
            BadReasonPhrase => "the reason phrase holds a control character",
            BadHeaderName => "a header line does not start with `name:`",
            BadHeaderValue => "a header value holds a forbidden byte",
            TooManyHeaders => "the message has more header lines than the parser keeps",
            DuplicateHeader => "a single-valued header appears more than once",
            MissingHeader => "a mandatory header (Via, From, To, Call-ID, CSeq) is missing",
            BadVia => "a Via value is malformed",
            BadNameAddr => "an address header value is malformed",
            BadDisplayName => "a display name is malformed",
            UnterminatedQuote => "a quoted string is not terminated",
            BadUri => "a URI is malformed",
            BadHost => "a host is malformed",
            BadPort => "a port is not a number from 0 to 65535",
            BadParam => "a parameter is empty or malformed",
            BadEscape => "a percent-escape is malformed",
            BadCallId => "the Call-ID is malformed",
            BadCSeq => "the CSeq is malformed or its number exceeds 2^31-1",
            CSeqMethodMismatch => "the CSeq method differs from the request method",
            BadMaxForwards => "Max-Forwards is not a number from 0 to 255",
            BadContentLength => "Content-Length is not a decimal number",
            BodyTooShort => "the body is shorter than Content-Length",
            BadExpires => "Expires is not a 32-bit number of seconds",
            BadDate => "the Date header is not an RFC 1123 date in GMT",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A rejected message: what is wrong and the byte offset where it was found
/// (from the start of the datagram for [`parse`](super::parse), from the start
/// of the given slice for the stand-alone value parsers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{} at byte {offset} ({kind})", kind.description())]
pub struct ParseError {
    /// What is wrong.
    pub kind: ErrorKind,
    /// Byte offset of the first byte that does not fit the grammar.
    pub offset: usize,
}

/// An error found inside a sub-slice, carrying the address of the bad byte so
/// that the caller holding the whole datagram can turn it into an offset
/// without every grammar rule threading a base offset through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fail {
    pub kind: ErrorKind,
    pub addr: usize,
}

impl Fail {
    /// A failure of `kind` at the first byte of `at` (which may be empty: then
    /// it points one past the end of the slice it was cut from).
    #[inline]
    pub fn at(kind: ErrorKind, at: &[u8]) -> Fail {
        Fail {
            kind,
            addr: at.as_ptr() as usize,
        }
    }

    /// The public error, with the offset measured from the start of `base`.
    /// `base` must be the slice the failing bytes were cut from.
    #[inline]
    pub fn relative_to(self, base: &[u8]) -> ParseError {
        let start = base.as_ptr() as usize;
        let offset = self.addr.saturating_sub(start).min(base.len());
        ParseError {
            kind: self.kind,
            offset,
        }
    }
}

pub(crate) type Res<T> = Result<T, Fail>;
