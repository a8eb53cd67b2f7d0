//! Property tests: nothing panics on arbitrary or mutated datagrams, and
//! what the writers build parses back to the same fields.

use std::path::Path;

use proptest::prelude::*;
use sip::write::{
    forward_request, forward_response, write_response, ForwardRequest, RequestBuilder, SentBy,
};
use sip::{self, DialedNumber, ErrorKind, HeaderName, Message, Method};

/// Reads every accessor and runs every writer; must never panic.
fn exercise(msg: &Message<'_>) {
    let _ = (msg.method(), msg.status(), msg.reason(), msg.start_line());
    let _ = msg.uri().map(|u| u.map(|u| (u.host(), u.params().count())));
    let _ = (msg.from(), msg.to(), msg.from_tag(), msg.to_tag());
    let _ = (
        msg.call_id(),
        msg.cseq(),
        msg.max_forwards(),
        msg.content_length(),
    );
    let _ = (msg.expires(), msg.user_agent(), msg.body(), msg.as_bytes());
    let _ = msg.top_via().response_target();
    let _ = msg.top_via().params().count();
    let _ = msg.vias().count();
    let _ = msg.second_via();
    let _ = msg
        .contacts()
        .chain(msg.routes())
        .chain(msg.record_routes())
        .count();
    for h in msg.headers() {
        let _ = msg.header_by_name(h.name_bytes);
    }
    let _ = msg.header(HeaderName::Subject);
    let mut n = DialedNumber::new();
    let _ = msg.dialed_number(&mut n);
    let _ = msg.validate();
    let mut out = [0u8; 2048];
    let _ = write_response(msg, 404, "Not Found", Some(b"t"), &mut out);
    let fwd = ForwardRequest {
        sent_by: SentBy::Addr("198.18.0.1:5060".parse().unwrap()),
        branch: b"z9hG4bKp",
        request_uri: None,
        record_route: Some(b"<sip:198.18.0.1;lr>"),
        remove_routes: 0,
        via_transport: b"UDP",
        via_params: b"",
        content_length: false,
        source: None,
    };
    if let Ok(len) = forward_request(msg, &fwd, &mut out) {
        // A forwarded copy of a parsed request parses again, unless the
        // pushed lines take it over MAX_HEADERS.
        if let Err(e) = sip::parse(&out[..len]) {
            assert_eq!(e.kind, ErrorKind::TooManyHeaders, "{e}");
        }
    }
    if let Ok(len) = forward_response(msg, &mut out) {
        let again = sip::parse(&out[..len]);
        assert!(again.is_ok(), "{again:?}");
    }
}

fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(read_seeds)
}

fn read_seeds() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/sip");
    let mut out = Vec::new();
    for sub in ["messages", "rfc4475", "rfc5118"] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            out.push(std::fs::read(entry.unwrap().path()).unwrap());
        }
    }
    out.sort();
    out
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Bytes that matter to the grammar are drawn more often than others.
    let byte = prop_oneof![
        any::<u8>(),
        prop::sample::select(b"\r\n :;,<>\"\\@[]=%/0123456789".to_vec()),
    ];
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), byte).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        match *m {
            Mutation::Flip(i, b) if len > 0 => bytes[i % len] = b,
            Mutation::Insert(i, b) => bytes.insert(i % (len + 1), b),
            Mutation::Delete(i) if len > 0 => {
                bytes.remove(i % len);
            }
            Mutation::Truncate(i) => bytes.truncate(i % (len + 1)),
            _ => {}
        }
    }
    bytes
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9.!%*_+`'~-]{1,16}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1500)) {
        if let Ok(msg) = sip::parse(&bytes) {
            exercise(&msg);
        }
        let _ = sip::parse_strict(&bytes);
    }

    #[test]
    fn text_like_bytes_never_panic(text in "(INVITE|SIP/2\\.0|[A-Za-z:;<>@ \"\\\\,=\\[\\]0-9.\r\n-]){0,300}") {
        if let Ok(msg) = sip::parse(text.as_bytes()) {
            exercise(&msg);
        }
    }

    #[test]
    fn mutated_corpus_messages_never_panic(
        seed in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let seeds = seeds();
        let bytes = apply(seeds[seed.index(seeds.len())].clone(), &mutations);
        if let Ok(msg) = sip::parse(&bytes) {
            exercise(&msg);
        }
        if let Ok(msg) = sip::parse_strict(&bytes) {
            exercise(&msg);
        }
    }

    #[test]
    fn built_requests_parse_back_to_the_same_fields(
        method in prop_oneof![
            Just("INVITE".to_owned()), Just("OPTIONS".to_owned()), Just("BYE".to_owned()), token()
        ],
        digits in "[0-9]{1,20}",
        host in "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9-]{0,10}){0,3}",
        port in 1u16..,
        branch in "[A-Za-z0-9.!%*_+`'~-]{1,24}",
        tag in token(),
        call_id in "[A-Za-z0-9.!%*_+`'~()<>:/?{}-]{1,20}(@[a-z0-9.]{1,20})?",
        cseq in 0u32..=sip::MAX_CSEQ,
        max_forwards in any::<u8>(),
        body in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let uri = format!("sip:+{digits}@{host}");
        let from = format!("<sip:load@{host}>;tag={tag}");
        let to = format!("<sip:{digits}@{host}>");
        let branch = format!("z9hG4bK{branch}");
        let builder = RequestBuilder {
            method: Method::from_bytes(method.as_bytes()),
            request_uri: uri.as_bytes(),
            sent_by: SentBy::Name { host: host.as_bytes(), port: Some(port) },
            branch: branch.as_bytes(),
            from: from.as_bytes(),
            to: to.as_bytes(),
            call_id: call_id.as_bytes(),
            cseq,
            max_forwards,
            headers: &[("User-Agent", b"proptest")],
            content_type: if body.is_empty() { None } else { Some(b"application/octet-stream") },
            body: &body,
        };
        let mut out = [0u8; 2048];
        let len = builder.write(&mut out).unwrap();
        let msg = sip::parse_strict(&out[..len]).unwrap();
        prop_assert_eq!(msg.method().unwrap().as_bytes(), method.as_bytes());
        prop_assert_eq!(msg.request_uri(), Some(uri.as_bytes()));
        prop_assert_eq!(msg.top_via().branch(), Some(branch.as_bytes()));
        prop_assert_eq!(msg.top_via().port(), Some(port));
        prop_assert_eq!(msg.from_tag(), Some(tag.as_bytes()));
        prop_assert_eq!(msg.to_tag(), None);
        prop_assert_eq!(msg.call_id(), call_id.as_bytes());
        prop_assert_eq!(msg.cseq().number, cseq);
        prop_assert_eq!(msg.cseq().method.as_bytes(), method.as_bytes());
        prop_assert_eq!(msg.max_forwards(), Some(max_forwards));
        prop_assert_eq!(msg.body(), &body[..]);
        let mut n = DialedNumber::new();
        msg.dialed_number(&mut n).unwrap();
        prop_assert_eq!(n.as_bytes(), digits.as_bytes());

        // And the response to it carries the same transaction identifiers.
        let mut resp_buf = [0u8; 2048];
        let rlen = write_response(&msg, 486, "Busy Here", Some(b"r1"), &mut resp_buf).unwrap();
        let resp = sip::parse_strict(&resp_buf[..rlen]).unwrap();
        prop_assert_eq!(resp.status(), Some(486));
        prop_assert_eq!(resp.top_via(), msg.top_via());
        prop_assert_eq!(resp.call_id(), msg.call_id());
        prop_assert_eq!(resp.cseq(), msg.cseq());
        prop_assert_eq!(resp.from_tag(), msg.from_tag());
        prop_assert_eq!(resp.to_tag(), Some(&b"r1"[..]));
    }
}
