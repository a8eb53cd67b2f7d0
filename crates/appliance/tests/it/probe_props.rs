//! The prober's reply parser reads whatever comes back from a target: it
//! never panics, on random bytes or on near-SIP.

use appliance::probe::wire;
use proptest::collection::vec;
use proptest::prelude::*;

proptest! {
    #[test]
    fn the_probe_reply_parser_never_panics(bytes in vec(any::<u8>(), 0..600)) {
        let _ = wire::parse_reply(&bytes);
    }

    #[test]
    fn the_probe_reply_parser_never_panics_on_near_sip(
        status in "[0-9x]{0,4}",
        headers in vec(("[A-Za-z-]{0,8}", "[ :;=,a-zA-Z0-9]{0,30}"), 0..8)
    ) {
        let mut msg = format!("SIP/2.0 {status} OK\r\n");
        for (name, value) in &headers {
            msg.push_str(&format!("{name}: {value}\r\n"));
        }
        msg.push_str("\r\n");
        let _ = wire::parse_reply(msg.as_bytes());
    }
}
