//! A look at a datagram's start line without parsing the message: what a
//! worker reads from every request of a receive batch to route the batch's
//! calls side by side before it parses each one in full.

use crate::uri::{dialed_number_of, DialedNumber};

/// Reads the dialed number of a request's Request-URI from its start line
/// only; `false` (and `out` empty) for responses, REGISTER (which names its
/// user in To) and anything whose start line this quick read cannot take.
/// A hint: the full parse decides, and may find another number.
#[inline]
pub fn peek_dialed_number(datagram: &[u8], out: &mut DialedNumber) -> bool {
    *out = DialedNumber::new();
    match request_uri(datagram) {
        Some(uri) => dialed_number_of(uri, out).is_ok() && !out.is_empty(),
        None => false,
    }
}

/// The Request-URI of a request other than REGISTER, by its start line's
/// two spaces; `None` for responses, REGISTER and anything else.
fn request_uri(payload: &[u8]) -> Option<&[u8]> {
    // A start line is short; do not search a whole datagram for it.
    let head = &payload[..payload.len().min(512)];
    let sp = memchr::memchr(b' ', head)?;
    let method = &head[..sp];
    if method.starts_with(b"SIP/") || method == b"REGISTER" {
        return None;
    }
    let rest = &head[sp + 1..];
    let end = memchr::memchr3(b' ', b'\r', b'\n', rest)?;
    (rest[end] == b' ').then(|| &rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_uri_is_read_from_start_lines_only() {
        assert_eq!(
            request_uri(b"INVITE sip:4930123@edge SIP/2.0\r\n"),
            Some(&b"sip:4930123@edge"[..])
        );
        assert_eq!(
            request_uri(b"BYE tel:+49-30-123 SIP/2.0\r\n"),
            Some(&b"tel:+49-30-123"[..])
        );
        assert_eq!(request_uri(b"REGISTER sip:edge SIP/2.0\r\n"), None);
        assert_eq!(request_uri(b"SIP/2.0 200 OK\r\n"), None);
        assert_eq!(request_uri(b"INVITE sip:1@edge\r\nVia: x y\r\n"), None);
        assert_eq!(request_uri(b""), None);
        assert_eq!(request_uri(b"INVITE"), None);
    }

    #[test]
    fn the_dialed_number_is_peeked_from_the_request_line() {
        let mut n = DialedNumber::new();
        assert!(peek_dialed_number(
            b"INVITE tel:+49-30-123 SIP/2.0\r\n",
            &mut n
        ));
        assert_eq!(n.as_str(), "4930123");
        assert!(!peek_dialed_number(b"SIP/2.0 200 OK\r\n", &mut n));
        assert!(n.is_empty());
        assert!(!peek_dialed_number(b"OPTIONS sip:edge SIP/2.0\r\n", &mut n));
    }
}
