//! The writers: responses to a request, forwarded requests and responses,
//! new requests. One behaviour per test.

use std::path::Path;

use sip::write::{
    forward_request, forward_response, write_response, ForwardRequest, RequestBuilder,
    ResponseBuilder, SentBy, WriteError,
};
use sip::{self, HeaderName, Host, Method, Rport};

fn corpus(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/corpus/sip")
            .join(name),
    )
    .unwrap()
}

const REQUEST: &[u8] = b"INVITE sip:+44-20-7946-0000@edge.example.com SIP/2.0\r\n\
v: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKfirst;rport\r\n\
Via: SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKsecond, SIP/2.0/UDP 203.0.113.5;branch=z9hG4bKthird\r\n\
Max-Forwards: 12\r\n\
f: \"Caller\" <sip:caller@example.net>;tag=abc\r\n\
To: <sip:+442079460000@edge.example.com>\r\n\
Call-ID: call-1@192.0.2.10\r\n\
CSeq: 7 INVITE\r\n\
Subject: folded\r\n  subject line\r\n\
Content-Type: text/plain\r\n\
Content-Length: 5\r\n\r\nhello";

fn request() -> sip::Message<'static> {
    sip::parse_strict(REQUEST).unwrap()
}

fn write(f: impl FnOnce(&mut [u8]) -> Result<usize, WriteError>) -> Vec<u8> {
    let mut out = vec![0u8; 4096];
    let len = f(&mut out).unwrap();
    out.truncate(len);
    out
}

#[test]
fn response_copies_every_via_in_order_and_tags_to() {
    let req = request();
    let out = write(|o| write_response(&req, 486, "Busy Here", Some(b"t1"), o));
    let resp = sip::parse_strict(&out).unwrap();
    assert_eq!(resp.status(), Some(486));
    assert_eq!(resp.reason(), Some(&b"Busy Here"[..]));
    let branches: Vec<_> = resp
        .vias()
        .map(|v| v.unwrap().branch().unwrap().to_vec())
        .collect();
    assert_eq!(
        branches,
        [&b"z9hG4bKfirst"[..], b"z9hG4bKsecond", b"z9hG4bKthird"]
    );
    assert_eq!(resp.to_tag(), Some(&b"t1"[..]));
    assert_eq!(resp.from_tag(), Some(&b"abc"[..]));
    assert_eq!(resp.call_id(), b"call-1@192.0.2.10");
    assert_eq!(resp.cseq().number, 7);
    assert_eq!(resp.cseq().method, Method::Invite);
    assert_eq!(resp.content_length(), Some(0));
    assert!(resp.header(HeaderName::Subject).is_none());
}

#[test]
fn response_keeps_an_existing_to_tag() {
    let bytes = corpus("messages/bye.valid.sip");
    let req = sip::parse_strict(&bytes).unwrap();
    let out = write(|o| write_response(&req, 200, "OK", Some(b"other"), o));
    let resp = sip::parse_strict(&out).unwrap();
    assert_eq!(resp.to_tag(), Some(&b"as6151ad25"[..]));
}

#[test]
fn response_100_gets_no_to_tag() {
    let req = request();
    let out = write(|o| write_response(&req, 100, "Trying", Some(b"t1"), o));
    assert_eq!(sip::parse_strict(&out).unwrap().to_tag(), None);
}

#[test]
fn redirect_lists_contacts_and_server() {
    let req = request();
    let contacts: [&[u8]; 2] = [
        b"sip:+442079460000@198.18.0.10",
        b"sip:+442079460000@198.18.0.11:5070",
    ];
    let out = write(|o| {
        ResponseBuilder::new(302, "Moved Temporarily")
            .to_tag(b"r1")
            .contacts(&contacts)
            .server(b"dce-edge/0.1")
            .write(&req, o)
    });
    let resp = sip::parse_strict(&out).unwrap();
    let uris: Vec<_> = resp
        .contacts()
        .map(|c| c.unwrap().uri().as_bytes().to_vec())
        .collect();
    assert_eq!(uris, contacts.map(|c| c.to_vec()));
    assert_eq!(resp.server(), Some(&b"dce-edge/0.1"[..]));
}

#[test]
fn service_unavailable_carries_retry_after() {
    let req = request();
    let out = write(|o| {
        ResponseBuilder::new(503, "Service Unavailable")
            .to_tag(b"x")
            .retry_after(30)
            .write(&req, o)
    });
    let resp = sip::parse_strict(&out).unwrap();
    assert_eq!(resp.header_value(HeaderName::RetryAfter), Some(&b"30"[..]));
}

#[test]
fn response_body_sets_content_type_and_length() {
    let req = request();
    let out = write(|o| {
        ResponseBuilder::new(200, "OK")
            .to_tag(b"x")
            .headers(&[("Allow", b"INVITE, ACK, BYE"), ("Supported", b"timer")])
            .body(b"application/sdp", b"v=0\r\n")
            .write(&req, o)
    });
    let resp = sip::parse_strict(&out).unwrap();
    assert_eq!(resp.body(), b"v=0\r\n");
    assert_eq!(resp.content_type(), Some(&b"application/sdp"[..]));
    assert_eq!(
        resp.header_value(HeaderName::Allow),
        Some(&b"INVITE, ACK, BYE"[..])
    );
}

#[test]
fn response_refuses_values_that_break_framing() {
    let req = request();
    let mut out = [0u8; 1500];
    assert!(matches!(
        ResponseBuilder::new(200, "OK\r\nX: y").write(&req, &mut out),
        Err(WriteError::InvalidValue { .. })
    ));
    assert!(matches!(
        ResponseBuilder::new(200, "OK")
            .headers(&[("X-Evil", b"a\r\nVia: x")])
            .write(&req, &mut out),
        Err(WriteError::InvalidValue { .. })
    ));
    assert!(matches!(
        ResponseBuilder::new(200, "OK")
            .to_tag(b"a;b")
            .write(&req, &mut out),
        Err(WriteError::InvalidValue { .. })
    ));
    assert_eq!(
        ResponseBuilder::new(99, "Low").write(&req, &mut out),
        Err(WriteError::BadStatusCode { code: 99 })
    );
}

#[test]
fn response_to_a_response_is_refused() {
    let bytes = corpus("messages/ringing-180.valid.sip");
    let resp = sip::parse(&bytes).unwrap();
    let mut out = [0u8; 1500];
    assert_eq!(
        write_response(&resp, 200, "OK", None, &mut out),
        Err(WriteError::NotARequest)
    );
}

#[test]
fn every_writer_reports_a_short_buffer_instead_of_panicking() {
    let req = request();
    let fwd = ForwardRequest {
        sent_by: SentBy::Addr("[2001:db8::1]:5060".parse().unwrap()),
        branch: b"z9hG4bKedge",
        request_uri: Some(b"sip:+442079460000@198.18.0.2"),
        record_route: Some(b"<sip:198.18.0.1;lr>"),
        remove_routes: 0,
        via_transport: b"UDP",
        via_params: b"",
        content_length: false,
        source: None,
    };
    let full = write(|o| forward_request(&req, &fwd, o));
    for len in 0..full.len() {
        let mut out = vec![0u8; len];
        assert_eq!(
            forward_request(&req, &fwd, &mut out),
            Err(WriteError::BufferTooSmall { capacity: len })
        );
    }
    let full = write(|o| write_response(&req, 404, "Not Found", Some(b"t"), o));
    for len in 0..full.len() {
        let mut out = vec![0u8; len];
        assert_eq!(
            write_response(&req, 404, "Not Found", Some(b"t"), &mut out),
            Err(WriteError::BufferTooSmall { capacity: len })
        );
    }
}

#[test]
fn forwarded_request_has_our_via_on_top_and_max_forwards_minus_one() {
    let req = request();
    let fwd = ForwardRequest {
        sent_by: SentBy::Addr("198.18.0.1:5060".parse().unwrap()),
        branch: b"z9hG4bKedge1",
        request_uri: None,
        record_route: None,
        remove_routes: 0,
        via_transport: b"UDP",
        via_params: b"",
        content_length: false,
        source: None,
    };
    let out = write(|o| forward_request(&req, &fwd, o));
    let f = sip::parse_strict(&out).unwrap();
    let top = f.top_via();
    assert_eq!(top.host(), Host::Ipv4("198.18.0.1".parse().unwrap()));
    assert_eq!(top.port(), Some(5060));
    assert_eq!(top.branch(), Some(&b"z9hG4bKedge1"[..]));
    assert_eq!(top.rport(), Rport::Requested);
    assert_eq!(f.vias().count(), 4);
    assert_eq!(f.max_forwards(), Some(11));
    assert_eq!(f.start_line(), req.start_line());
    assert_eq!(f.body(), b"hello");
}

#[test]
fn forwarded_request_copies_other_lines_byte_for_byte() {
    let req = request();
    let fwd = ForwardRequest {
        sent_by: SentBy::Name {
            host: b"edge.example.com",
            port: None,
        },
        branch: b"z9hG4bKedge2",
        request_uri: None,
        record_route: None,
        remove_routes: 0,
        via_transport: b"UDP",
        via_params: b"",
        content_length: false,
        source: None,
    };
    let out = write(|o| forward_request(&req, &fwd, o));
    let text = String::from_utf8(out).unwrap();
    let original = std::str::from_utf8(REQUEST).unwrap();
    for line in [
        "v: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKfirst;rport\r\n",
        "f: \"Caller\" <sip:caller@example.net>;tag=abc\r\n",
        "Subject: folded\r\n  subject line\r\n",
    ] {
        assert!(original.contains(line) && text.contains(line), "{line:?}");
    }
    assert!(text.contains("Via: SIP/2.0/UDP edge.example.com;branch=z9hG4bKedge2;rport\r\n"));
    assert!(text.contains("Max-Forwards: 11\r\n"));
    // The pushed Via is the only growth: Max-Forwards 12 becomes 11, same length.
    let via = "Via: SIP/2.0/UDP edge.example.com;branch=z9hG4bKedge2;rport\r\n";
    assert_eq!(text.len(), REQUEST.len() + via.len());
}

#[test]
fn forwarded_request_without_max_forwards_gets_69() {
    let bytes = corpus("rfc4475/inv2543.valid.sip");
    let req = sip::parse_strict(&bytes).unwrap();
    let fwd = ForwardRequest {
        sent_by: SentBy::Addr("198.18.0.1:5060".parse().unwrap()),
        branch: b"z9hG4bKedge3",
        request_uri: None,
        record_route: None,
        remove_routes: 0,
        via_transport: b"UDP",
        via_params: b"",
        content_length: false,
        source: None,
    };
    let out = write(|o| forward_request(&req, &fwd, o));
    assert_eq!(sip::parse_strict(&out).unwrap().max_forwards(), Some(69));
}

#[test]
fn forwarded_request_can_replace_the_request_uri_and_record_route() {
    let req = request();
    let fwd = ForwardRequest {
        sent_by: SentBy::Addr("[2001:db8::1]:5062".parse().unwrap()),
        branch: b"z9hG4bKedge4",
        request_uri: Some(b"sip:+442079460000@198.18.0.2:5060"),
        record_route: Some(b"<sip:198.18.0.1;lr>"),
        remove_routes: 0,
        via_transport: b"UDP",
        via_params: b"",
        content_length: false,
        source: None,
    };
    let out = write(|o| forward_request(&req, &fwd, o));
    let f = sip::parse_strict(&out).unwrap();
    assert_eq!(
        f.request_uri(),
        Some(&b"sip:+442079460000@198.18.0.2:5060"[..])
    );
    assert_eq!(f.method(), Some(Method::Invite));
    assert_eq!(
        f.top_via().host(),
        Host::Ipv6("2001:db8::1".parse().unwrap())
    );
    assert_eq!(f.top_via().port(), Some(5062));
    assert_eq!(
        f.record_routes().next().unwrap().unwrap().uri().as_bytes(),
        b"sip:198.18.0.1;lr"
    );
}

#[test]
fn request_with_max_forwards_zero_is_not_forwarded() {
    let bytes = corpus("rfc4475/zeromf.valid.sip");
    let req = sip::parse_strict(&bytes).unwrap();
    let fwd = ForwardRequest {
        sent_by: SentBy::Addr("198.18.0.1:5060".parse().unwrap()),
        branch: b"z9hG4bKx",
        request_uri: None,
        record_route: None,
        remove_routes: 0,
        via_transport: b"UDP",
        via_params: b"",
        content_length: false,
        source: None,
    };
    let mut out = [0u8; 2000];
    assert_eq!(
        forward_request(&req, &fwd, &mut out),
        Err(WriteError::MaxForwardsExhausted)
    );
}

#[test]
fn forwarded_response_loses_its_top_via_line() {
    let bytes = corpus("messages/ok-200-sdp.valid.sip");
    let resp = sip::parse_strict(&bytes).unwrap();
    let out = write(|o| forward_response(&resp, o));
    let f = sip::parse_strict(&out).unwrap();
    assert_eq!(f.vias().count(), 1);
    assert_eq!(Some(*f.top_via()), resp.second_via().unwrap());
    assert_eq!(f.body(), resp.body());
    assert_eq!(
        out.len(),
        bytes.len() - resp.header(HeaderName::Via).unwrap().line.len()
    );
}

#[test]
fn forwarded_response_removes_only_the_first_value_of_a_comma_list() {
    let bytes = corpus("messages/comma-vias.valid.sip");
    let resp = sip::parse_strict(&bytes).unwrap();
    let out = write(|o| forward_response(&resp, o));
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(text.contains("\r\nVia: SIP/2.0/UDP 198.51.100.17;branch=z9hG4bKb\r\n"));
    let f = sip::parse_strict(&out).unwrap();
    assert_eq!(f.top_via().branch(), Some(&b"z9hG4bKb"[..]));
    assert_eq!(f.vias().count(), 1);
}

#[test]
fn response_with_one_via_is_not_forwarded() {
    let bytes = corpus("messages/busy-503.valid.sip");
    let resp = sip::parse_strict(&bytes).unwrap();
    let mut out = [0u8; 2000];
    assert_eq!(
        forward_response(&resp, &mut out),
        Err(WriteError::NoViaLeft)
    );
}

#[test]
fn new_request_carries_every_field_and_its_content_length() {
    let builder = RequestBuilder {
        method: Method::Invite,
        request_uri: b"sip:+14155550123@198.18.0.2",
        sent_by: SentBy::Addr("198.18.0.1:5070".parse().unwrap()),
        branch: b"z9hG4bK-load-1",
        from: b"<sip:load@198.18.0.1>;tag=lg1",
        to: b"<sip:+14155550123@198.18.0.2>",
        call_id: b"lg-1@198.18.0.1",
        cseq: 1,
        max_forwards: 70,
        headers: &[
            ("User-Agent", b"dce-loadgen"),
            ("Contact", b"<sip:load@198.18.0.1:5070>"),
        ],
        content_type: Some(b"application/sdp"),
        body: b"v=0\r\no=- 1 1 IN IP4 198.18.0.1\r\n",
    };
    let out = write(|o| builder.write(o));
    let m = sip::parse_strict(&out).unwrap();
    assert_eq!(m.method(), Some(Method::Invite));
    assert_eq!(m.top_via().branch(), Some(&b"z9hG4bK-load-1"[..]));
    assert_eq!(m.from_tag(), Some(&b"lg1"[..]));
    assert_eq!(m.to_tag(), None);
    assert_eq!(m.call_id(), b"lg-1@198.18.0.1");
    assert_eq!(m.cseq().number, 1);
    assert_eq!(m.cseq().method, Method::Invite);
    assert_eq!(m.max_forwards(), Some(70));
    assert_eq!(m.user_agent(), Some(&b"dce-loadgen"[..]));
    assert_eq!(m.content_length(), Some(builder.body.len() as u32));
    assert_eq!(m.body(), builder.body);
    assert_eq!(m.contacts().count(), 1);
}

#[test]
fn new_request_refuses_a_cseq_of_2_pow_31() {
    let builder = RequestBuilder {
        method: Method::Options,
        request_uri: b"sip:198.18.0.2",
        sent_by: SentBy::Name {
            host: b"198.18.0.1",
            port: Some(5060),
        },
        branch: b"z9hG4bKp",
        from: b"<sip:p@198.18.0.1>;tag=1",
        to: b"<sip:198.18.0.2>",
        call_id: b"p@1",
        cseq: 1 << 31,
        max_forwards: 70,
        headers: &[],
        content_type: None,
        body: b"",
    };
    let mut out = [0u8; 1000];
    assert_eq!(
        builder.write(&mut out),
        Err(WriteError::BadCSeq { number: 1 << 31 })
    );
}

#[test]
fn forwarded_response_drops_a_top_via_line_that_ends_in_a_bare_comma() {
    // Found by the fuzzer: `parse` reads only the first value of the top
    // Via line, so a trailing comma must not leave an empty Via behind.
    let resp = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa ,\t\r\n\
Via: SIP/2.0/UDP 198.51.100.17;branch=z9hG4bKb\r\n\
To: <sip:b@example.com>;tag=2\r\nFrom: <sip:a@example.net>;tag=1\r\n\
Call-ID: c@x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let msg = sip::parse(resp).unwrap();
    let out = write(|o| forward_response(&msg, o));
    let f = sip::parse_strict(&out).unwrap();
    assert_eq!(f.top_via().branch(), Some(&b"z9hG4bKb"[..]));
    assert_eq!(f.vias().count(), 1);
}

#[test]
fn response_tags_a_to_value_followed_by_a_blank_continuation_line() {
    // Found by the fuzzer: a folded line of blanks after the To value must
    // not end up between the value and the added tag.
    let req = b"OPTIONS sip:a@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa\r\n\
To: <sip:a@example.com>\r\n \r\n\
From: <sip:b@example.net>;tag=1\r\nCall-ID: c@x\r\nCSeq: 1 OPTIONS\r\n\r\n";
    let msg = sip::parse_strict(req).unwrap();
    assert_eq!(
        msg.header_value(HeaderName::To),
        Some(&b"<sip:a@example.com>"[..])
    );
    let out = write(|o| write_response(&msg, 200, "OK", Some(b"t9"), o));
    assert_eq!(sip::parse_strict(&out).unwrap().to_tag(), Some(&b"t9"[..]));
}

#[test]
fn a_request_forwarded_over_a_stream_names_its_transport_and_gets_a_content_length() {
    // Over UDP a message may leave Content-Length out; over TCP and TLS it
    // is the only framing (RFC 3261 section 18.3).
    let bytes = b"OPTIONS sip:1@edge SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKa\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:1@edge>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n\r\nbody";
    let req = sip::parse(bytes).unwrap();
    let fwd = ForwardRequest {
        via_transport: b"TLS",
        via_params: b";dcc=00000000000000a1",
        content_length: true,
        ..ForwardRequest::new(
            SentBy::Addr("198.18.0.1:5061".parse().unwrap()),
            b"z9hG4bKedge9",
        )
    };
    let out = write(|o| forward_request(&req, &fwd, o));
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(
        text.contains(
            "Via: SIP/2.0/TLS 198.18.0.1:5061;branch=z9hG4bKedge9;rport;dcc=00000000000000a1\r\n"
        ),
        "{text}"
    );
    let f = sip::parse_strict(&out).unwrap();
    assert_eq!(f.content_length(), Some(4));
    assert_eq!(f.body(), b"body");
    assert_eq!(f.top_via().transport(), sip::Transport::Tls);
    // One that has a Content-Length keeps it, and only it.
    let out = write(|o| forward_request(&request(), &fwd, o));
    assert_eq!(
        String::from_utf8(out)
            .unwrap()
            .matches("Content-Length")
            .count(),
        1
    );
    // The same for a response.
    let resp = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 198.18.0.1;branch=z9hG4bKedge, SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bKa\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:1@edge>;tag=2\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n\r\n";
    let resp = sip::parse(resp).unwrap();
    let out = write(|o| sip::write::forward_response_with(&resp, true, o));
    let f = sip::parse_strict(&out).unwrap();
    assert_eq!(f.content_length(), Some(0));
    assert_eq!(f.top_via().transport(), sip::Transport::Tls);
}

#[test]
fn a_request_forwarded_after_two_own_routes_loses_both() {
    // An edge that Record-Routed twice (one entry per transport) removes
    // both entries, on one line or on two.
    for routes in [
        "Route: <sip:198.18.0.1;lr;a>, <sip:198.18.0.1:5061;transport=tls;lr;b>, <sip:next;lr>\r\n",
        "Route: <sip:198.18.0.1;lr;a>\r\nRoute: <sip:198.18.0.1:5061;transport=tls;lr;b>, <sip:next;lr>\r\n",
        "Route: <sip:198.18.0.1;lr;a>\r\nRoute: <sip:198.18.0.1:5061;transport=tls;lr;b>\r\nRoute: <sip:next;lr>\r\n",
    ] {
        let text = format!(
            "BYE sip:1@192.0.2.10 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKa\r\n{routes}\
From: <sip:a@b>;tag=1\r\nTo: <sip:1@edge>;tag=2\r\nCall-ID: c1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
        );
        let req = sip::parse(text.as_bytes()).unwrap();
        let fwd = ForwardRequest {
            remove_routes: 2,
            ..ForwardRequest::new(
                SentBy::Addr("198.18.0.1:5060".parse().unwrap()),
                b"z9hG4bKedge9",
            )
        };
        let out = write(|o| forward_request(&req, &fwd, o));
        let f = sip::parse_strict(&out).unwrap();
        let left: Vec<Vec<u8>> = f
            .routes()
            .map(|r| r.unwrap().uri().as_bytes().to_vec())
            .collect();
        assert_eq!(left, vec![b"sip:next;lr".to_vec()], "{routes}");
    }
}
