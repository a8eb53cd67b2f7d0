//! What the parser must read out of the RFC 4475 and RFC 5118 torture
//! messages, beyond accepting them: one test per message feature.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use sip::{
    self, DialedNumber, DialedNumberError, ErrorKind, HeaderName, Host, Method, Rport, Scheme,
    Transport,
};

fn corpus(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus/sip")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn wsinv_reads_through_folding_and_white_space() {
    let bytes = corpus("rfc4475/wsinv.valid.sip");
    let m = sip::parse_strict(&bytes).unwrap();
    assert_eq!(m.method(), Some(Method::Invite));
    assert_eq!(
        m.to().unwrap().uri().as_bytes(),
        b"sip:vivekg@chair-dnrc.example.com"
    );
    assert_eq!(m.to_tag(), Some(&b"1918181833n"[..]));
    assert_eq!(
        m.from().unwrap().display_name(),
        Some(&b"\"J Rosenberg \\\\\\\"\""[..])
    );
    assert_eq!(m.from_tag(), Some(&b"98asjd8"[..]));
    assert_eq!(m.max_forwards(), Some(68));
    assert_eq!(m.cseq().number, 9);
    assert_eq!(m.cseq().method, Method::Invite);
    assert_eq!(m.call_id(), b"wsinv.ndaksdj@192.0.2.1");
    assert_eq!(m.vias().count(), 3);
    assert_eq!(m.top_via().host(), Host::Ipv4(Ipv4Addr::new(192, 0, 2, 2)));
    assert_eq!(m.top_via().branch(), Some(&b"390skdjuw"[..]));
    let third = m.vias().nth(2).unwrap().unwrap();
    assert_eq!(third.branch(), Some(&b"z9hG4bK30239"[..]));
    assert_eq!(third.transport(), Transport::Udp);
    assert_eq!(m.header_value(HeaderName::Subject), Some(&b""[..]));
    assert_eq!(
        m.header_by_name(b"newfangledheader").unwrap().value,
        b"newfangled value\r\n continued newfangled value"
    );
    assert_eq!(
        m.header_by_name(b"UnknownHeaderWithUnusualValue")
            .unwrap()
            .value,
        b";;,,;;,;"
    );
    let contact = m.contacts().next().unwrap().unwrap();
    assert_eq!(
        contact.params().get(b"newparam"),
        Some(Some(&b"newvalue"[..]))
    );
    assert_eq!(contact.params().get(b"secondparam"), Some(None));
    assert_eq!(contact.params().get(b"q"), Some(Some(&b"0.33"[..])));
    assert_eq!(m.routes().count(), 1);
    assert_eq!(m.header_count(), 14);
    assert_eq!(m.body().len(), 150);
}

#[test]
fn intmeth_keeps_unusual_tokens_and_quoted_controls() {
    let bytes = corpus("rfc4475/intmeth.valid.sip");
    let m = sip::parse_strict(&bytes).unwrap();
    assert_eq!(
        m.method(),
        Some(Method::Other(
            b"!interesting-Method0123456789_*+`.%indeed'~"
        ))
    );
    let uri = m.uri().unwrap().unwrap();
    assert_eq!(
        uri.user(),
        Some(&b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"[..])
    );
    assert_eq!(
        m.to().unwrap().display_name(),
        Some(&b"\"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f\""[..])
    );
    assert_eq!(
        m.from().unwrap().display_name(),
        Some(&b"token1~` token2'+_ token3*%!.-"[..])
    );
    assert_eq!(m.from_tag(), Some(&b"_token~1'+`*%!-."[..]));
    assert_eq!(m.max_forwards(), Some(255));
    assert_eq!(m.cseq().number, 139122385);
    let mut n = DialedNumber::new();
    assert_eq!(m.dialed_number(&mut n), Err(DialedNumberError::NotANumber));
}

#[test]
fn esc01_keeps_escapes_in_user_and_params() {
    let bytes = corpus("rfc4475/esc01.valid.sip");
    let m = sip::parse_strict(&bytes).unwrap();
    assert_eq!(
        m.uri().unwrap().unwrap().user(),
        Some(&b"sips%3Auser%40example.com"[..])
    );
    assert_eq!(m.to().unwrap().uri().user(), Some(&b"%75se%72"[..]));
    let c = m.contacts().next().unwrap().unwrap();
    assert_eq!(
        c.uri().params().get(b"n%61me"),
        Some(Some(&b"v%61lue%25%34%31"[..]))
    );
    assert_eq!(m.call_id(), b"esc01.239409asdfakjkn23onasd0-3234");
    assert_eq!(m.content_type(), Some(&b"application/sdp"[..]));
}

#[test]
fn esc02_treats_escaped_header_name_as_unknown() {
    let bytes = corpus("rfc4475/esc02.valid.sip");
    let m = sip::parse_strict(&bytes).unwrap();
    assert_eq!(m.method(), Some(Method::Other(b"RE%47IST%45R")));
    assert_eq!(m.contacts().count(), 2);
    assert!(m.header_by_name(b"C%6Fntact").is_some());
}

#[test]
fn escnull_holds_escaped_nulls() {
    let bytes = corpus("rfc4475/escnull.valid.sip");
    let m = sip::parse_strict(&bytes).unwrap();
    assert_eq!(m.to().unwrap().uri().user(), Some(&b"null-%00-null"[..]));
    assert_eq!(m.contacts().count(), 2);
    assert_eq!(m.content_length(), Some(0));
}

#[test]
fn longreq_reads_34_vias_across_every_spelling() {
    let bytes = corpus("rfc4475/longreq.valid.sip");
    let m = sip::parse_strict(&bytes).unwrap();
    assert_eq!(m.vias().count(), 34);
    assert_eq!(m.top_via().host(), Host::Name(b"sip33.example.com"));
    assert_eq!(m.to().unwrap().uri().port(), Some(6000));
    assert_eq!(
        m.vias().last().unwrap().unwrap().received(),
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 5)))
    );
}

#[test]
fn dblreq_ignores_bytes_past_content_length() {
    let bytes = corpus("rfc4475/dblreq.valid.sip");
    let m = sip::parse_strict(&bytes).unwrap();
    assert_eq!(m.method(), Some(Method::Register));
    assert_eq!(m.body(), b"");
    assert!(m.as_bytes().len() < bytes.len());
    assert!(m.as_bytes().ends_with(b"Content-Length: 0\r\n\r\n"));
}

#[test]
fn semiuri_user_holds_a_semicolon() {
    let bytes = corpus("rfc4475/semiuri.valid.sip");
    let m = sip::parse_strict(&bytes).unwrap();
    let uri = m.uri().unwrap().unwrap();
    assert_eq!(uri.user(), Some(&b"user;par=u%40example.net"[..]));
    assert_eq!(uri.host(), Some(Host::Name(b"example.com")));
    assert!(uri.params().next().is_none());
}

#[test]
fn transports_keep_unknown_transport() {
    let bytes = corpus("rfc4475/transports.valid.sip");
    let m = sip::parse_strict(&bytes).unwrap();
    let t: Vec<_> = m.vias().map(|v| v.unwrap().transport()).collect();
    assert_eq!(
        t,
        [
            Transport::Udp,
            Transport::Sctp,
            Transport::Tls,
            Transport::Other(b"UNKNOWN"),
            Transport::Tcp
        ]
    );
}

#[test]
fn noreason_and_unreason_keep_their_reason_phrases() {
    let bytes = corpus("rfc4475/noreason.valid.sip");
    let m = sip::parse_strict(&bytes).unwrap();
    assert_eq!(m.status(), Some(100));
    assert_eq!(m.reason(), Some(&b""[..]));
    let bytes = corpus("rfc4475/unreason.valid.sip");
    let m = sip::parse_strict(&bytes).unwrap();
    assert!(std::str::from_utf8(m.reason().unwrap())
        .unwrap()
        .ends_with("простое"));
}

#[test]
fn unknown_schemes_parse_as_other() {
    let bytes = corpus("rfc4475/unkscm.valid.sip");
    let m = sip::parse_strict(&bytes).unwrap();
    assert_eq!(
        m.uri().unwrap().unwrap().scheme(),
        Scheme::Other(b"nobodyKnowsThisScheme")
    );
    let bytes = corpus("rfc4475/unksm2.valid.sip");
    let m = sip::parse_strict(&bytes).unwrap();
    assert_eq!(m.to().unwrap().uri().scheme(), Scheme::Other(b"isbn"));
    assert_eq!(m.from().unwrap().uri().scheme(), Scheme::Other(b"http"));
}

#[test]
fn zeromf_reads_max_forwards_zero() {
    let bytes = corpus("rfc4475/zeromf.valid.sip");
    assert_eq!(sip::parse_strict(&bytes).unwrap().max_forwards(), Some(0));
}

#[test]
fn inv2543_without_content_length_takes_the_rest_as_body() {
    let bytes = corpus("rfc4475/inv2543.valid.sip");
    let m = sip::parse_strict(&bytes).unwrap();
    assert_eq!(m.content_length(), None);
    assert!(m.body().starts_with(b"v=0\r\n"));
    assert!(m.top_via().branch().is_none());
    assert_eq!(m.max_forwards(), None);
}

#[test]
fn cparam01_addr_spec_params_are_header_params() {
    let bytes = corpus("rfc4475/cparam01.valid.sip");
    let m = sip::parse_strict(&bytes).unwrap();
    let c = m.contacts().next().unwrap().unwrap();
    assert_eq!(c.uri().as_bytes(), b"sip:+19725552222@gw1.example.net");
    assert_eq!(c.params().get(b"unknownparam"), Some(None));
    let bytes = corpus("rfc4475/cparam02.valid.sip");
    let m = sip::parse_strict(&bytes).unwrap();
    let c = m.contacts().next().unwrap().unwrap();
    assert_eq!(c.uri().params().get(b"unknownparam"), Some(None));
}

#[test]
fn invalid_torture_messages_name_the_right_place() {
    let bytes = corpus("rfc4475/ncl.invalid.bad_content_length.sip");
    let e = sip::parse_strict(&bytes).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadContentLength);
    assert!(bytes[e.offset..].starts_with(b"-999"));
    let bytes = corpus("rfc4475/badinv01.invalid.bad_param.sip");
    let e = sip::parse_strict(&bytes).unwrap_err();
    assert!(bytes[..e.offset].ends_with(b"Via: SIP/2.0/UDP 192.0.2.15;"));
}

#[test]
fn rfc5118_ipv6_references_are_typed() {
    let bytes = corpus("rfc5118/port-ambiguous.valid.sip");
    let m = sip::parse_strict(&bytes).unwrap();
    assert_eq!(
        m.uri().unwrap().unwrap().host(),
        Some(Host::Ipv6("2001:db8::10:5070".parse().unwrap()))
    );
    assert_eq!(m.uri().unwrap().unwrap().port(), None);
    let bytes = corpus("rfc5118/port-unambiguous.valid.sip");
    let m = sip::parse_strict(&bytes).unwrap();
    assert_eq!(m.uri().unwrap().unwrap().port(), Some(5070));
    let bytes = corpus("rfc5118/mult-ip-in-header.valid.sip");
    let m = sip::parse_strict(&bytes).unwrap();
    assert_eq!(m.top_via().port(), Some(6050));
    assert_eq!(
        m.vias().nth(2).unwrap().unwrap().received(),
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 200)))
    );
    let bytes = corpus("rfc5118/ipv4-mapped-ipv6.valid.sip");
    let m = sip::parse_strict(&bytes).unwrap();
    assert_eq!(
        m.top_via().response_target(),
        Some("[::ffff:192.0.2.10]:19823".parse().unwrap())
    );
}

#[test]
fn rfc5118_received_with_and_without_brackets_is_the_same_address() {
    let a = corpus("rfc5118/via-received-param-with-delim.valid.sip");
    let b = corpus("rfc5118/via-received-param-no-delim.valid.sip");
    let a = sip::parse_strict(&a).unwrap();
    let b = sip::parse_strict(&b).unwrap();
    assert_eq!(a.top_via().received(), b.top_via().received());
    assert_eq!(a.top_via().rport(), Rport::Absent);
}
