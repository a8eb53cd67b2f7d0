//! Walks the message corpus in `tests/corpus/sip/` and checks each file
//! against the outcome its name encodes: `NAME.valid.sip` must parse,
//! `NAME.invalid.KIND.sip` must be rejected with that error kind. Every valid
//! message is also pushed through every accessor and the writers.

use std::path::{Path, PathBuf};

use sip::write::{self, ForwardRequest, ResponseBuilder, SentBy, WriteError};
use sip::{self, DialedNumber, ErrorKind, HeaderName, Message};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/sip")
}

fn corpus_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![corpus_dir()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "sip") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

enum Expected {
    Valid,
    Invalid(ErrorKind),
}

fn expected(path: &Path) -> Expected {
    let name = path.file_name().unwrap().to_str().unwrap();
    let parts: Vec<&str> = name.trim_end_matches(".sip").split('.').collect();
    match parts.as_slice() {
        [_, "valid"] => Expected::Valid,
        [_, "invalid", kind] => Expected::Invalid(
            ErrorKind::from_name(kind).unwrap_or_else(|| panic!("{name}: unknown error kind")),
        ),
        _ => panic!("{name}: corpus names are NAME.valid.sip or NAME.invalid.KIND.sip"),
    }
}

/// Calls every accessor, so that a valid message is known to be readable
/// through the whole API.
fn read_everything(msg: &Message<'_>) {
    let _ = (msg.method(), msg.status(), msg.reason());
    if msg.is_request() {
        assert!(msg.uri().unwrap().is_ok());
        assert!(msg.request_uri().is_some());
    }
    assert_eq!(msg.from().unwrap().tag(), msg.from_tag());
    assert_eq!(msg.to().unwrap().tag(), msg.to_tag());
    for h in msg.headers() {
        assert!(h.line.ends_with(b"\r\n"));
        assert_eq!(msg.header_by_name(h.name_bytes).map(|_| ()), Some(()));
    }
    for &name in HeaderName::KNOWN {
        assert_eq!(
            msg.header(name).is_some(),
            msg.headers_named(name).next().is_some()
        );
    }
    let vias: Vec<_> = msg.vias().map(Result::unwrap).collect();
    assert!(!vias.is_empty());
    assert_eq!(&vias[0], msg.top_via());
    assert_eq!(msg.second_via().unwrap(), vias.get(1).copied());
    let _ = (msg.top_via().branch(), msg.top_via().response_target());
    let _ = (msg.from_tag(), msg.to_tag(), msg.call_id(), msg.cseq());
    let _ = (msg.max_forwards(), msg.content_length(), msg.expires());
    let _ = (msg.user_agent(), msg.server(), msg.content_type());
    for c in msg
        .contacts()
        .chain(msg.routes())
        .chain(msg.record_routes())
    {
        let c = c.unwrap();
        let _ = (c.uri().host(), c.params().count(), c.tag());
    }
    let mut n = DialedNumber::new();
    let _ = msg.dialed_number(&mut n);
    if let Some(cl) = msg.content_length() {
        assert_eq!(msg.body().len(), cl as usize);
    }
}

/// Builds what a proxy would send from this message and checks that the
/// result parses and carries the same transaction identifiers.
fn write_everything(msg: &Message<'_>) {
    let mut out = vec![0u8; 70_000];
    if msg.is_request() {
        let len = ResponseBuilder::new(404, "Not Found")
            .to_tag(b"corpus1")
            .server(b"dce-edge")
            .write(msg, &mut out)
            .unwrap();
        let resp = sip::parse_strict(&out[..len]).unwrap();
        assert_eq!(resp.status(), Some(404));
        assert_eq!(resp.call_id(), msg.call_id());
        assert_eq!(resp.cseq(), msg.cseq());
        assert_eq!(resp.vias().count(), msg.vias().count());
        assert_eq!(resp.top_via(), msg.top_via());
        assert_eq!(
            resp.to_tag(),
            Some(msg.to_tag().unwrap_or(b"corpus1".as_slice()))
        );

        let fwd = ForwardRequest {
            record_route: Some(b"<sip:198.18.0.1;lr>"),
            ..ForwardRequest::new(
                SentBy::Addr("198.18.0.1:5060".parse().unwrap()),
                b"z9hG4bK-corpus",
            )
        };
        match write::forward_request(msg, &fwd, &mut out) {
            Ok(len) => {
                let f = sip::parse_strict(&out[..len]).unwrap();
                assert_eq!(f.top_via().branch(), Some(&b"z9hG4bK-corpus"[..]));
                assert_eq!(f.second_via().unwrap().as_ref(), Some(msg.top_via()));
                assert_eq!(f.vias().count(), msg.vias().count() + 1);
                assert_eq!(f.max_forwards(), Some(msg.max_forwards().unwrap_or(70) - 1));
                assert_eq!(f.body(), msg.body());
                assert_eq!(f.call_id(), msg.call_id());
                assert_eq!(
                    f.record_routes().next().unwrap().unwrap().uri().as_bytes(),
                    b"sip:198.18.0.1;lr"
                );
            }
            Err(WriteError::MaxForwardsExhausted) => assert_eq!(msg.max_forwards(), Some(0)),
            Err(e) => panic!("forward_request: {e}"),
        }
    } else {
        match write::forward_response(msg, &mut out) {
            Ok(len) => {
                let f = sip::parse_strict(&out[..len]).unwrap();
                assert_eq!(f.vias().count(), msg.vias().count() - 1);
                assert_eq!(Some(*f.top_via()), msg.second_via().unwrap());
                assert_eq!(f.status(), msg.status());
                assert_eq!(f.body(), msg.body());
            }
            Err(WriteError::NoViaLeft) => assert_eq!(msg.vias().count(), 1),
            Err(e) => panic!("forward_response: {e}"),
        }
    }
}

#[test]
fn every_corpus_file_has_its_expected_outcome() {
    let files = corpus_files();
    assert!(files.len() >= 80, "corpus has only {} files", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        let name = path
            .strip_prefix(corpus_dir())
            .unwrap()
            .display()
            .to_string();
        match (expected(path), sip::parse_strict(&bytes)) {
            (Expected::Valid, Ok(msg)) => {
                read_everything(&msg);
                write_everything(&msg);
            }
            (Expected::Valid, Err(e)) => failures.push(format!("{name}: rejected: {e}")),
            (Expected::Invalid(kind), Err(e)) if e.kind == kind => {
                assert!(e.offset <= bytes.len(), "{name}: offset past the end");
            }
            (Expected::Invalid(kind), Err(e)) => {
                failures.push(format!("{name}: expected {kind}, got {e}"))
            }
            (Expected::Invalid(kind), Ok(_)) => {
                failures.push(format!("{name}: expected {kind}, but it parsed"))
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_rfc4475_and_rfc5118_section_is_in_the_corpus() {
    let names: Vec<String> = corpus_files()
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
        .collect();
    let rfc4475 = [
        "wsinv",
        "intmeth",
        "esc01",
        "escnull",
        "esc02",
        "lwsdisp",
        "longreq",
        "dblreq",
        "semiuri",
        "transports",
        "mpart01-adapted",
        "unreason",
        "noreason",
        "badinv01",
        "clerr",
        "ncl",
        "scalar02",
        "scalarlg",
        "quotbal",
        "ltgtruri",
        "lwsruri",
        "lwsstart",
        "trws",
        "escruri",
        "baddate",
        "regbadct",
        "badaspec",
        "baddn",
        "badvers",
        "mismatch01",
        "mismatch02",
        "bigcode",
        "badbranch",
        "insuf",
        "unkscm",
        "novelsc",
        "unksm2",
        "bext01",
        "invut",
        "regaut01",
        "multi01",
        "mcl01",
        "bcast",
        "zeromf",
        "cparam01",
        "cparam02",
        "regescrt",
        "sdp01",
        "inv2543",
    ];
    let rfc5118 = [
        "ipv6-good",
        "ipv6-bad",
        "port-ambiguous",
        "port-unambiguous",
        "via-received-param-with-delim",
        "via-received-param-no-delim",
        "ipv6-in-sdp",
        "mult-ip-in-header",
        "mult-ip-in-sdp",
        "ipv4-mapped-ipv6",
        "ipv6-bug-abnf-3-colons",
        "ipv6-correct-abnf-2-colons",
    ];
    for n in rfc4475.iter().chain(&rfc5118) {
        assert!(
            names.iter().any(|f| f.starts_with(&format!("{n}."))),
            "{n} is missing"
        );
    }
}
