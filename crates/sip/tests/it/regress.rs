//! Regression of the parser's outcomes: every corpus message and thousands
//! of deterministic mutations of them (bytes that matter to the line,
//! header-name and value grammar inserted, replaced or removed) are parsed
//! with `parse` and `parse_strict`, and everything the public API reports
//! (each header line's name, value and line, the typed values the hot path
//! reads, or the error kind and offset) is folded into one hash.
//!
//! `EXPECTED` was recorded with the parser as it was before the fast paths
//! of December 2026 (commit 6d70196); the fast paths must give exactly the
//! same outcomes. If the parser's behaviour is changed on purpose, record
//! the new value with `cargo test -p dce-edge --test sip_regress -- --nocapture`.

use std::fmt::Write;
use std::path::Path;

use sip::{self, DialedNumber, Message};

/// FNV-1a over the outcome text (stable across toolchains, unlike std's hasher).
fn fnv(hash: &mut u64, bytes: &[u8]) {
    for &b in bytes {
        *hash ^= u64::from(b);
        *hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
}

fn describe_ok(msg: &Message<'_>, out: &mut String) {
    let base = msg.as_bytes().as_ptr() as usize;
    let at = |s: &[u8]| (s.as_ptr() as usize).wrapping_sub(base);
    let _ = write!(
        out,
        "ok start={:?} count={} ",
        msg.start_line(),
        msg.header_count()
    );
    for h in msg.headers() {
        let _ = write!(
            out,
            "[{:?} {}+{} v{}+{} l{}+{}]",
            h.name,
            at(h.name_bytes),
            h.name_bytes.len(),
            at(h.value),
            h.value.len(),
            at(h.line),
            h.line.len()
        );
    }
    let _ = write!(
        out,
        " via={:?} from={:?} to={:?} callid={:?} cseq={:?} mf={:?} cl={:?} exp={:?} body={}+{} status={:?} method={:?}",
        msg.top_via(),
        msg.from_tag(),
        msg.to_tag(),
        msg.call_id(),
        msg.cseq(),
        msg.max_forwards(),
        msg.content_length(),
        msg.expires(),
        msg.body_offset(),
        msg.body().len(),
        msg.status(),
        msg.method(),
    );
    let mut n = DialedNumber::new();
    let r = msg.dialed_number(&mut n);
    let _ = write!(out, " dialed={:?} {:?}", r, n.as_bytes());
    let _ = write!(out, " vias={:?}", msg.vias().collect::<Vec<_>>());
}

fn describe(buf: &[u8], out: &mut String) {
    out.clear();
    match sip::parse(buf) {
        Ok(msg) => describe_ok(&msg, out),
        Err(e) => {
            let _ = write!(out, "err {} {}", e.kind.name(), e.offset);
        }
    }
    // The proxy's way (the message built in the caller's slot) must see
    // exactly what `parse` sees.
    let mut in_slot = String::new();
    let mut slot = None;
    match sip::parse_in(&mut slot, buf) {
        Ok(msg) => describe_ok(msg, &mut in_slot),
        Err(e) => {
            let _ = write!(in_slot, "err {} {}", e.kind.name(), e.offset);
        }
    }
    assert_eq!(*out, in_slot, "parse and parse_in differ on {buf:?}");
    match sip::parse_strict(buf) {
        Ok(_) => out.push_str(" strict ok"),
        Err(e) => {
            let _ = write!(out, " strict err {} {}", e.kind.name(), e.offset);
        }
    }
}

fn corpus() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/sip");
    let mut files = Vec::new();
    for sub in ["messages", "rfc4475", "rfc5118"] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "sip") {
                files.push(path);
            }
        }
    }
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// xorshift64*, so that the mutations are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that change how a header line, name or value is read.
const INTERESTING: &[&[u8]] = &[
    b" ",
    b"  ",
    b"\t",
    b"\r\n",
    b"\r\n ",
    b"\r\n\t",
    b"\n",
    b"\r",
    b":",
    b";",
    b",",
    b"<",
    b">",
    b"\"",
    b"\\",
    b"=",
    b"[",
    b"]",
    b"@",
    b"/",
    b"x",
    b"9",
    b".",
    b"%",
    b"\x00",
    b"\x7f",
    b"\xc3\xa9",
    b"a-very-long-header-name-that-is-not-known",
    b"Via: SIP/2.0/UDP h;branch=z\r\n",
    b"v: SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bKx\r\n",
    b"Max-Forwards: 70\r\n",
    b"X-Name-Exactly-24-Bytes:",
    b"Subject:",
    b";tag=",
    b";TAG=abc",
    b"SIP/2.0/UDP ",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..1 + rng.below(3) {
        // Most edits land in the header block, where the fast paths are.
        let limit = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(bytes.len(), |i| i + 4);
        let at = rng.below(limit + 1).min(bytes.len());
        let piece = INTERESTING[rng.below(INTERESTING.len())];
        match rng.below(4) {
            0 => {
                bytes.splice(at..at, piece.iter().copied());
            }
            1 => {
                let end = (at + piece.len()).min(bytes.len());
                bytes.splice(at..end, piece.iter().copied());
            }
            2 => {
                let end = (at + 1 + rng.below(4)).min(bytes.len());
                bytes.drain(at..end);
            }
            _ => {
                if at < bytes.len() {
                    bytes[at] = rng.next() as u8;
                }
            }
        }
    }
    bytes
}

/// The hash of every outcome; also prints it, for recording.
fn outcomes_hash() -> (u64, usize) {
    let mut hash = 0xcbf2_9ce4_8422_2325;
    let mut text = String::new();
    let mut cases = 0;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for seed in corpus() {
        describe(&seed, &mut text);
        fnv(&mut hash, text.as_bytes());
        cases += 1;
        for _ in 0..150 {
            let m = mutate(&mut rng, &seed);
            describe(&m, &mut text);
            fnv(&mut hash, text.as_bytes());
            cases += 1;
        }
    }
    (hash, cases)
}

/// Recorded with the parser of commit 6d70196 (before the fast paths).
const EXPECTED: u64 = 0x329f_eb20_9082_0289;

#[test]
fn outcomes_match_the_recorded_parser() {
    let (hash, cases) = outcomes_hash();
    println!("sip_regress: {cases} cases, outcome hash {hash:#018x}");
    assert_eq!(hash, EXPECTED, "{cases} cases");
}
