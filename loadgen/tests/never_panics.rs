//! Everything that reads bytes from the network (or from a user) takes any
//! input without panicking: the SIP reader, the digest headers, the number
//! patterns, and the answers path of a server fed random datagrams.

use loadgen::digest::{Answer, Challenge};
use loadgen::numbers::Numbers;
use loadgen::sipmsg;
use proptest::prelude::*;

const INVITE: &[u8] = b"INVITE sip:44201234@198.18.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.0.1:5061;branch=z9hG4bKa\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:44201234@y>\r\nCall-ID: abc@h\r\nCSeq: 1 INVITE\r\nAuthorization: Digest username=\"u\", response=\"r\"\r\nContent-Length: 3\r\n\r\nv=0";

proptest! {
    #[test]
    fn sip_reader_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(v) = sipmsg::parse(&bytes) {
            let _ = (v.to_tag(), v.top_branch(), v.vias().len());
        }
    }

    #[test]
    fn sip_reader_takes_mutated_messages(at in 0usize..INVITE.len(), byte in any::<u8>(), cut in 0usize..INVITE.len()) {
        let mut m = INVITE.to_vec();
        m[at] = byte;
        m.truncate(cut.max(1));
        let _ = sipmsg::parse(&m);
    }

    #[test]
    fn digest_headers_take_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Challenge::parse(&bytes);
        if let Ok(a) = Answer::parse(&bytes) {
            let _ = a.verify(b"REGISTER", b"secret");
        }
        let mut with_scheme = b"Digest ".to_vec();
        with_scheme.extend_from_slice(&bytes);
        let _ = Challenge::parse(&with_scheme);
        let _ = Answer::parse(&with_scheme);
    }

    #[test]
    fn number_patterns_take_any_text(text in ".{0,40}", k in any::<u64>()) {
        if let Ok(n) = Numbers::pattern(&text) {
            prop_assert!(!n.is_empty());
            let _ = n.get(k);
        }
    }
}
