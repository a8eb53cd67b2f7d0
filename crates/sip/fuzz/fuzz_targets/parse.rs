//! Fuzzes `sip::parse` and `sip::parse_strict`, then reads every accessor
//! and runs every writer on whatever parses. Nothing may panic; what the
//! writers build from a parsed message must parse again.
#![no_main]

use sip::write::{
    forward_request, forward_response, write_response, ForwardRequest, RequestBuilder,
    ResponseBuilder, SentBy,
};
use sip::{self, DialedNumber, ErrorKind, HeaderName, Message};
use libfuzzer_sys::fuzz_target;

fn exercise(msg: &Message<'_>) {
    let _ = (msg.method(), msg.status(), msg.reason(), msg.start_line());
    if let Some(Ok(uri)) = msg.uri() {
        let _ = (uri.scheme(), uri.user(), uri.password(), uri.host(), uri.port());
        let _ = (uri.params().count(), uri.headers(), uri.opaque());
        let mut n = DialedNumber::new();
        let _ = uri.dialed_number(&mut n);
    }
    for addr in [msg.from(), msg.to()].into_iter().flatten() {
        let _ = (addr.display_name(), addr.uri().host(), addr.tag(), addr.params().count());
    }
    let _ = (msg.from_tag(), msg.to_tag(), msg.call_id(), msg.cseq());
    let _ = (msg.max_forwards(), msg.content_length(), msg.expires());
    let _ = (msg.user_agent(), msg.server(), msg.content_type(), msg.body());
    let _ = (msg.as_bytes(), msg.body_offset(), msg.header_count());
    let top = msg.top_via();
    let _ = (top.transport(), top.host(), top.port(), top.branch(), top.received());
    let _ = (top.rport(), top.maddr(), top.ttl(), top.response_target());
    let _ = top.params().count();
    for via in msg.vias().flatten() {
        let _ = via.response_target();
    }
    let _ = msg.second_via();
    for addr in msg
        .contacts()
        .chain(msg.routes())
        .chain(msg.record_routes())
        .flatten()
    {
        let _ = (addr.uri().params().get(b"lr"), addr.params().get(b"expires"));
    }
    let _ = msg.contact_is_wildcard();
    for h in msg.headers() {
        assert!(msg.header_by_name(h.name_bytes).is_some());
    }
    for &name in HeaderName::KNOWN {
        let _ = msg.headers_named(name).count();
    }
    let mut n = DialedNumber::new();
    let _ = msg.dialed_number(&mut n);
    let strict = msg.validate();

    let mut out = [0u8; 4096];
    if let Ok(len) = write_response(msg, 486, "Busy Here", Some(b"fz"), &mut out) {
        sip::parse(&out[..len]).expect("a response to a parsed request parses");
    }
    let contacts: [&[u8]; 1] = [b"sip:198.18.0.9"];
    let _ = ResponseBuilder::new(302, "Moved")
        .contacts(&contacts)
        .retry_after(5)
        .server(b"fuzz")
        .body(b"text/plain", b"x")
        .write(msg, &mut out);
    let fwd = ForwardRequest {
        sent_by: SentBy::Addr("[2001:db8::1]:5060".parse().unwrap()),
        branch: b"z9hG4bKfuzz",
        request_uri: Some(b"sip:1@198.18.0.2"),
        record_route: Some(b"<sip:198.18.0.1;lr>"),
        remove_routes: 0,
        via_transport: b"UDP",
        via_params: b"",
        content_length: false,
        source: None,
    };
    if let Ok(len) = forward_request(msg, &fwd, &mut out) {
        // Pushing a Via (and Record-Route, Max-Forwards) can take a request
        // with 62 to 64 header lines over MAX_HEADERS; anything else must parse.
        match sip::parse(&out[..len]) {
            Ok(again) => {
                assert_eq!(again.call_id(), msg.call_id());
                if strict.is_ok() {
                    sip::parse_strict(&out[..len]).expect("a forwarded valid request stays valid");
                }
            }
            Err(e) => assert_eq!(e.kind, ErrorKind::TooManyHeaders, "forwarded request: {e}"),
        }
    }
    if let Ok(len) = forward_response(msg, &mut out) {
        let again = sip::parse(&out[..len]).expect("a forwarded response parses");
        assert_eq!(again.status(), msg.status());
    }
}

fuzz_target!(|data: &[u8]| {
    let lax = sip::parse(data);
    let strict = sip::parse_strict(data);
    // Strict acceptance implies lax acceptance.
    assert!(strict.is_err() || lax.is_ok());
    if let Ok(msg) = lax {
        exercise(&msg);
    }
    // The request writer takes the datagram's bytes as field values; it
    // must refuse or write something that parses.
    if data.len() < 200 {
        let req = RequestBuilder {
            method: sip::Method::Options,
            request_uri: b"sip:198.18.0.2",
            sent_by: SentBy::Name { host: b"198.18.0.1", port: Some(5060) },
            branch: b"z9hG4bKfz",
            from: b"<sip:a@198.18.0.1>;tag=1",
            to: b"<sip:198.18.0.2>",
            call_id: data,
            cseq: 1,
            max_forwards: 70,
            headers: &[("X-Fuzz", data)],
            content_type: None,
            body: data,
        };
        let mut out = [0u8; 1024];
        let _ = req.write(&mut out);
    }
});
