//! Reason phrases for status codes: the one table the edge's answers, the
//! load generator's servers and the benchmarks' Kamailio configuration
//! write, so the same code reads the same everywhere.

/// The reason phrase for `code`: RFC 3261 section 21's phrase for the codes
/// it defines, otherwise a name for the code's class (a receiver treats an
/// unknown code as the x00 of its class, section 8.1.3.2, and the phrase is
/// for people only).
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        493 => "Undecipherable",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        c if c < 200 => "Provisional",
        c if c < 300 => "OK",
        c if c < 400 => "Redirect",
        c if c < 500 => "Client Error",
        c if c < 600 => "Server Error",
        _ => "Global Failure",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defined_codes_have_their_rfc_3261_phrase() {
        assert_eq!(reason_phrase(200), "OK");
        assert_eq!(reason_phrase(404), "Not Found");
        assert_eq!(reason_phrase(481), "Call/Transaction Does Not Exist");
        assert_eq!(reason_phrase(604), "Does Not Exist Anywhere");
    }

    #[test]
    fn other_codes_are_named_for_their_class() {
        assert_eq!(reason_phrase(199), "Provisional");
        assert_eq!(reason_phrase(299), "OK");
        assert_eq!(reason_phrase(399), "Redirect");
        assert_eq!(reason_phrase(499), "Client Error");
        assert_eq!(reason_phrase(599), "Server Error");
        assert_eq!(reason_phrase(699), "Global Failure");
    }

    #[test]
    fn every_phrase_is_a_valid_reason_phrase() {
        // Reason-Phrase = *(reserved / unreserved / escaped / UTF8 / SP /
        // HTAB); the table keeps to printable ASCII without CR or LF.
        for code in 100..700 {
            let p = reason_phrase(code);
            assert!(
                !p.is_empty() && p.bytes().all(|b| (0x20..0x7f).contains(&b)),
                "{code}"
            );
        }
    }
}
