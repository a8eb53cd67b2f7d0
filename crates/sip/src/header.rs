//! Header names: the headers the parser knows by name, their compact forms
//! (RFC 3261 section 7.3.3 and the IANA registry), and case-insensitive
//! classification of the name bytes of a header line.

use std::fmt;

macro_rules! header_names {
    ($( $(#[$doc:meta])* $variant:ident = $canonical:literal $(, $compact:literal)? ;)*) => {
        /// A header name. Known names are matched without regard to case and
        /// in their compact forms; everything else is [`HeaderName::Other`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum HeaderName {
            $( $(#[$doc])* $variant, )*
            /// Any other header (compare its name with
            /// [`Message::header_by_name`](super::Message::header_by_name)).
            Other,
        }

        impl HeaderName {
            /// Every known name, in declaration order (without `Other`).
            pub const KNOWN: &'static [HeaderName] = &[$(HeaderName::$variant,)*];

            /// The canonical spellings, in declaration order.
            const CANONICAL: &'static [&'static str] = &[$($canonical,)*];

            /// The canonical spelling (`Call-ID`, `CSeq`, `WWW-Authenticate`).
            pub fn canonical(self) -> &'static str {
                match self {
                    $(HeaderName::$variant => $canonical,)*
                    HeaderName::Other => "",
                }
            }

            /// The compact form, if the name has one (`i` for Call-ID).
            pub fn compact(self) -> Option<u8> {
                match self {
                    $( $(HeaderName::$variant => Some($compact),)? )*
                    _ => None,
                }
            }
        }
    };
}

header_names! {
    /// Accept
    Accept = "Accept";
    /// Accept-Contact (RFC 3841)
    AcceptContact = "Accept-Contact", b'a';
    /// Accept-Encoding
    AcceptEncoding = "Accept-Encoding";
    /// Accept-Language
    AcceptLanguage = "Accept-Language";
    /// Alert-Info
    AlertInfo = "Alert-Info";
    /// Allow
    Allow = "Allow";
    /// Allow-Events (RFC 6665)
    AllowEvents = "Allow-Events", b'u';
    /// Authentication-Info
    AuthenticationInfo = "Authentication-Info";
    /// Authorization
    Authorization = "Authorization";
    /// Call-ID
    CallId = "Call-ID", b'i';
    /// Call-Info
    CallInfo = "Call-Info";
    /// Contact
    Contact = "Contact", b'm';
    /// Content-Disposition
    ContentDisposition = "Content-Disposition";
    /// Content-Encoding
    ContentEncoding = "Content-Encoding", b'e';
    /// Content-Language
    ContentLanguage = "Content-Language";
    /// Content-Length
    ContentLength = "Content-Length", b'l';
    /// Content-Type
    ContentType = "Content-Type", b'c';
    /// CSeq
    CSeq = "CSeq";
    /// Date
    Date = "Date";
    /// Error-Info
    ErrorInfo = "Error-Info";
    /// Event (RFC 6665)
    Event = "Event", b'o';
    /// Expires
    Expires = "Expires";
    /// From
    From = "From", b'f';
    /// Identity (RFC 8224)
    Identity = "Identity", b'y';
    /// In-Reply-To
    InReplyTo = "In-Reply-To";
    /// Max-Forwards
    MaxForwards = "Max-Forwards";
    /// MIME-Version
    MimeVersion = "MIME-Version";
    /// Min-Expires
    MinExpires = "Min-Expires";
    /// Organization
    Organization = "Organization";
    /// Path (RFC 3327)
    Path = "Path";
    /// Priority
    Priority = "Priority";
    /// Proxy-Authenticate
    ProxyAuthenticate = "Proxy-Authenticate";
    /// Proxy-Authorization
    ProxyAuthorization = "Proxy-Authorization";
    /// Proxy-Require
    ProxyRequire = "Proxy-Require";
    /// RAck (RFC 3262)
    RAck = "RAck";
    /// Reason (RFC 3326)
    Reason = "Reason";
    /// Record-Route
    RecordRoute = "Record-Route";
    /// Refer-To (RFC 3515)
    ReferTo = "Refer-To", b'r';
    /// Referred-By (RFC 3892)
    ReferredBy = "Referred-By", b'b';
    /// Reply-To
    ReplyTo = "Reply-To";
    /// Require
    Require = "Require";
    /// Retry-After
    RetryAfter = "Retry-After";
    /// Route
    Route = "Route";
    /// RSeq (RFC 3262)
    RSeq = "RSeq";
    /// Server
    Server = "Server";
    /// Session-Expires (RFC 4028)
    SessionExpires = "Session-Expires", b'x';
    /// Subject
    Subject = "Subject", b's';
    /// Supported
    Supported = "Supported", b'k';
    /// Timestamp
    Timestamp = "Timestamp";
    /// To
    To = "To", b't';
    /// Unsupported
    Unsupported = "Unsupported";
    /// User-Agent
    UserAgent = "User-Agent";
    /// Via
    Via = "Via", b'v';
    /// Warning
    Warning = "Warning";
    /// WWW-Authenticate
    WwwAuthenticate = "WWW-Authenticate";
}

/// How many distinct values [`HeaderName`] has, `Other` included.
pub(crate) const HEADER_NAME_COUNT: usize = HeaderName::Other as usize + 1;

impl HeaderName {
    /// Classifies the name bytes of a header line (without regard to case;
    /// one-letter names are compact forms).
    #[inline]
    pub fn from_bytes(name: &[u8]) -> HeaderName {
        classify(name, 0, name.len())
    }

    /// Whether the header may appear only once (RFC 3261 section 7.3.1:
    /// these are not comma lists), so a repeat is an error (RFC 4475 section 3.3.8).
    pub fn is_single(self) -> bool {
        matches!(
            self,
            HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
                | HeaderName::MaxForwards
                | HeaderName::ContentLength
        )
    }
}

/// Classifies the header name `buf[pos..end]` (see
/// [`HeaderName::from_bytes`]). Bytes after `end` may be loaded to compare
/// sixteen at a time; they do not count.
#[inline(always)]
pub(crate) fn classify(buf: &[u8], pos: usize, end: usize) -> HeaderName {
    let name = &buf[pos..end];
    if let [c] = name {
        return match c.to_ascii_lowercase() {
            b'a' => HeaderName::AcceptContact,
            b'b' => HeaderName::ReferredBy,
            b'c' => HeaderName::ContentType,
            b'e' => HeaderName::ContentEncoding,
            b'f' => HeaderName::From,
            b'i' => HeaderName::CallId,
            b'k' => HeaderName::Supported,
            b'l' => HeaderName::ContentLength,
            b'm' => HeaderName::Contact,
            b'o' => HeaderName::Event,
            b'r' => HeaderName::ReferTo,
            b's' => HeaderName::Subject,
            b't' => HeaderName::To,
            b'u' => HeaderName::AllowEvents,
            b'v' => HeaderName::Via,
            b'x' => HeaderName::SessionExpires,
            b'y' => HeaderName::Identity,
            _ => HeaderName::Other,
        };
    }
    // Every known name of two or more bytes has its own slot in a
    // 128-entry table, found from its length and three of its letters;
    // one case-folding comparison then confirms it.
    let n = name.len();
    if !(2..=MAX_NAME_LEN).contains(&n) {
        return HeaderName::Other;
    }
    let candidate = NAME_TABLE[name_hash(n, name[0], name[n - 1], name[n / 2])];
    if candidate == HeaderName::Other {
        return HeaderName::Other;
    }
    // Sixteen bytes at once when the buffer holds them from the name on.
    let matched = match super::scan::folded_eq16(buf, pos, &FOLD16[candidate as usize]) {
        Some(mask) if n <= 16 => !mask & ((1u32 << n) - 1) == 0,
        _ => folded_eq(name, lower_name(candidate)),
    };
    if matched {
        candidate
    } else {
        HeaderName::Other
    }
}

/// The longest known header name (`Proxy-Authorization` and others).
const MAX_NAME_LEN: usize = 19;

/// The slot of a name in [`NAME_TABLE`]: from its length and its first,
/// last and middle bytes with bit 0x20 set. The multipliers were chosen so
/// that no two known names share a slot (`build_name_table` checks it when
/// compiling).
#[inline(always)]
const fn name_hash(len: usize, first: u8, last: u8, mid: u8) -> usize {
    let h = (first | 0x20) as u32 * 11
        + (last | 0x20) as u32 * 145
        + (mid | 0x20) as u32 * 152
        + len as u32 * 211;
    (h & 127) as usize
}

/// The known names (two bytes or more) by their [`name_hash`] slot;
/// `Other` in the free slots.
static NAME_TABLE: [HeaderName; 128] = build_name_table();

/// Every known name in lower case, by [`HeaderName`] value, padded with
/// zeros, and its length.
static LOWER_NAMES: [([u8; MAX_NAME_LEN], u8); HEADER_NAME_COUNT] = build_lower_names();

const fn build_lower_names() -> [([u8; MAX_NAME_LEN], u8); HEADER_NAME_COUNT] {
    let mut out = [([0u8; MAX_NAME_LEN], 0u8); HEADER_NAME_COUNT];
    let mut i = 0;
    while i < HeaderName::CANONICAL.len() {
        let name = HeaderName::CANONICAL[i].as_bytes();
        assert!(
            name.len() <= MAX_NAME_LEN,
            "a header name is longer than MAX_NAME_LEN"
        );
        let mut j = 0;
        while j < name.len() {
            out[i].0[j] = name[j].to_ascii_lowercase();
            j += 1;
        }
        out[i].1 = name.len() as u8;
        i += 1;
    }
    out
}

const fn build_name_table() -> [HeaderName; 128] {
    let mut table = [HeaderName::Other; 128];
    let mut i = 0;
    while i < HeaderName::CANONICAL.len() {
        let name = HeaderName::CANONICAL[i].as_bytes();
        let n = name.len();
        let h = name_hash(n, name[0], name[n - 1], name[n / 2]);
        assert!(
            matches!(table[h], HeaderName::Other),
            "two header names share a NAME_TABLE slot: change the name_hash multipliers"
        );
        table[h] = HeaderName::KNOWN[i];
        i += 1;
    }
    table
}

/// Every known name of up to sixteen bytes as the 16-byte comparison wants
/// it: the lower-case name padded with zeros, and 0x20 where it has a
/// letter (OR-ing that folds exactly the letters, as in [`folded_eq`]).
static FOLD16: [([u8; 16], [u8; 16]); HEADER_NAME_COUNT] = build_fold16();

const fn build_fold16() -> [([u8; 16], [u8; 16]); HEADER_NAME_COUNT] {
    let lower = build_lower_names();
    let mut out = [([0u8; 16], [0u8; 16]); HEADER_NAME_COUNT];
    let mut i = 0;
    while i < HEADER_NAME_COUNT {
        let mut j = 0;
        while j < 16 && j < lower[i].1 as usize {
            let l = lower[i].0[j];
            out[i].0[j] = l;
            out[i].1[j] = (l & 0x40) >> 1;
            j += 1;
        }
        i += 1;
    }
    out
}

/// The lower-case spelling of a known name.
#[inline(always)]
fn lower_name(name: HeaderName) -> &'static [u8] {
    let (bytes, len) = &LOWER_NAMES[name as usize];
    &bytes[..*len as usize]
}

/// Whether `name` equals `lower` (a lower-case header name of the same
/// length) without regard to case. Only the letters of `lower` (the bytes
/// with bit 0x40) are compared with bit 0x20 set; OR-ing 0x20 turns a byte
/// into a lower-case letter only when it is that letter in either case, and
/// every other byte ('-') must match exactly (a CR OR 0x20 is '-'). So a
/// match is always a token. Compares eight or four bytes at a time.
#[inline(always)]
fn folded_eq(name: &[u8], lower: &[u8]) -> bool {
    let n = lower.len();
    if name.len() != n {
        return false;
    }
    let word8 = |s: &[u8]| u64::from_le_bytes(<[u8; 8]>::try_from(s).unwrap_or([0; 8]));
    let word4 = |s: &[u8]| u32::from_le_bytes(<[u8; 4]>::try_from(s).unwrap_or([0; 4]));
    let eq8 = |a: u64, l: u64| a | ((l & 0x4040_4040_4040_4040) >> 1) == l;
    let eq4 = |a: u32, l: u32| a | ((l & 0x4040_4040) >> 1) == l;
    if n >= 8 {
        // Two overlapping words cover names of 8 to 16 bytes; longer ones
        // (up to 19) also compare the middle byte by byte.
        eq8(word8(&name[..8]), word8(&lower[..8]))
            && eq8(word8(&name[n - 8..]), word8(&lower[n - 8..]))
            && name[8..n.saturating_sub(8).max(8)]
                .iter()
                .zip(&lower[8..n.saturating_sub(8).max(8)])
                .all(|(&a, &b)| a | ((b & 0x40) >> 1) == b)
    } else if n >= 4 {
        eq4(word4(&name[..4]), word4(&lower[..4]))
            && eq4(word4(&name[n - 4..]), word4(&lower[n - 4..]))
    } else {
        name.iter()
            .zip(lower)
            .all(|(&a, &b)| a | ((b & 0x40) >> 1) == b)
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HeaderName::Other => "(other)",
            h => h.canonical(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_compact_form_maps_to_its_header() {
        let pairs = [
            (b'i', HeaderName::CallId),
            (b'm', HeaderName::Contact),
            (b'e', HeaderName::ContentEncoding),
            (b'l', HeaderName::ContentLength),
            (b'f', HeaderName::From),
            (b't', HeaderName::To),
            (b'v', HeaderName::Via),
            (b'k', HeaderName::Supported),
            (b'c', HeaderName::ContentType),
            (b's', HeaderName::Subject),
            (b'o', HeaderName::Event),
            (b'u', HeaderName::AllowEvents),
            (b'r', HeaderName::ReferTo),
            (b'b', HeaderName::ReferredBy),
            (b'x', HeaderName::SessionExpires),
            (b'y', HeaderName::Identity),
            (b'a', HeaderName::AcceptContact),
        ];
        for (c, h) in pairs {
            assert_eq!(HeaderName::from_bytes(&[c]), h, "{}", c as char);
            assert_eq!(HeaderName::from_bytes(&[c.to_ascii_uppercase()]), h);
            assert_eq!(h.compact(), Some(c));
        }
        assert_eq!(HeaderName::from_bytes(b"z"), HeaderName::Other);
    }

    #[test]
    fn names_match_without_regard_to_case() {
        assert_eq!(
            HeaderName::from_bytes(b"MaX-fOrWaRdS"),
            HeaderName::MaxForwards
        );
        assert_eq!(HeaderName::from_bytes(b"cseq"), HeaderName::CSeq);
        assert_eq!(HeaderName::from_bytes(b"VIA"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"call-id"), HeaderName::CallId);
        assert_eq!(HeaderName::from_bytes(b"C%6Fntact"), HeaderName::Other);
        assert_eq!(
            HeaderName::from_bytes(b"Proxy-AuthoXization"),
            HeaderName::Other
        );
        assert_eq!(HeaderName::from_bytes(b"Content-Lengtx"), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(b"Reply-To"), HeaderName::ReplyTo);
        assert_eq!(HeaderName::from_bytes(b"refer-to"), HeaderName::ReferTo);
    }

    #[test]
    fn a_control_byte_never_stands_for_a_dash() {
        // CR OR 0x20 is '-': the dash must be compared exactly.
        assert_eq!(HeaderName::from_bytes(b"Call\rID"), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(b"Max\rForwards"), HeaderName::Other);
        assert_eq!(
            HeaderName::from_bytes(b"www\rauthenticate"),
            HeaderName::Other
        );
        assert_eq!(HeaderName::from_bytes(b"Reply\rTo"), HeaderName::Other);
    }

    #[test]
    fn an_empty_name_is_other() {
        assert_eq!(HeaderName::from_bytes(b""), HeaderName::Other);
    }

    #[test]
    fn every_canonical_name_round_trips() {
        for &h in HeaderName::KNOWN {
            assert_eq!(HeaderName::from_bytes(h.canonical().as_bytes()), h);
            assert_eq!(
                HeaderName::from_bytes(h.canonical().to_ascii_uppercase().as_bytes()),
                h
            );
        }
    }
}
