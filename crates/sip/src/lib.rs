//! Zero-copy SIP over UDP: a parser that turns a datagram into a checked,
//! borrowed [`Message`] view (RFC 3261 grammar, RFC 4475 and RFC 5118
//! torture tests), and writers that build responses, forwarded requests and
//! responses, and new requests into a caller's buffer without allocating.
//!
//! ```
//! use sip::{self, DialedNumber, Method};
//!
//! let datagram = b"OPTIONS sip:+1-201-555-0123@edge.example.com SIP/2.0\r\n\
//!     Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
//!     Max-Forwards: 70\r\n\
//!     From: <sip:probe@example.net>;tag=1928301774\r\n\
//!     To: <sip:+12015550123@edge.example.com>\r\n\
//!     Call-ID: a84b4c76e66710@192.0.2.10\r\n\
//!     CSeq: 63104 OPTIONS\r\n\
//!     Content-Length: 0\r\n\r\n";
//! let msg = sip::parse(datagram).unwrap();
//! assert_eq!(msg.method(), Some(Method::Options));
//! assert_eq!(msg.top_via().branch(), Some(&b"z9hG4bK776asdhds"[..]));
//! let mut number = DialedNumber::new();
//! msg.dialed_number(&mut number).unwrap();
//! assert_eq!(number.as_str(), "12015550123");
//!
//! let mut out = [0u8; 1500];
//! let len = sip::write::ResponseBuilder::new(200, "OK")
//!     .to_tag(b"edge1")
//!     .write(&msg, &mut out)
//!     .unwrap();
//! let answer = sip::parse(&out[..len]).unwrap();
//! assert_eq!(answer.status(), Some(200));
//! assert_eq!(answer.to_tag(), Some(&b"edge1"[..]));
//! ```

mod error;
mod grammar;
mod header;
mod message;
mod peek;
mod reason;
mod scan;
mod uri;
mod values;

pub mod stream;
pub mod write;

pub use error::{ErrorKind, ParseError};
pub use grammar::{Param, Params};
pub use header::HeaderName;
pub use message::{
    parse, parse_in, parse_strict, Header, Message, NameAddrs, StartLine, Vias, MAX_HEADERS,
    MAX_MESSAGE_LEN,
};
pub use peek::peek_dialed_number;
pub use reason::reason_phrase;
pub use uri::{DialedNumber, DialedNumberError, Host, Scheme, Uri, MAX_DIALED_DIGITS};
pub use values::{CSeq, Method, NameAddr, Rport, Transport, Via, BRANCH_MAGIC_COOKIE, MAX_CSEQ};
