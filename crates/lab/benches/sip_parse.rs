//! SIP parsing speed: dce-edge's parser against the `rsip` crate on the same
//! bytes in the same run, each parsing a message and reading the fields a
//! stateless proxy reads (top Via branch and sent-by, Call-ID, CSeq,
//! Max-Forwards, From tag, To tag, the dialed number of a request; status
//! code for a response).
//!
//! Run with `cargo bench -p dce-lab --bench sip_parse`. Prints, per message,
//! the median and p99 of the per-message time over many batches, messages
//! per second on one core (from the median), and the rsip/dce-edge ratio.
//!
//! `sip_parse count MESSAGE N` (MESSAGE one of `invite`, `ok`, `options`,
//! `strict`) instead runs only dce-edge's parse and reads N times, for an
//! instruction count under `valgrind --tool=callgrind` (the inclusive cost
//! of `dce_edge_read` divided by N is the cost of one message).

use std::hint::black_box;
use std::time::Instant;

/// CPU time of the calling thread, in nanoseconds. On a shared machine the
/// wall clock also counts time the thread spent waiting for a core; the
/// thread's CPU time does not, so both are reported.
fn thread_cpu_ns() -> u64 {
    sys::thread_cpu_time().as_nanos() as u64
}

use rsip::prelude::{HeadersExt, ToTypedHeader, UntypedHeader};
use sip::{self, DialedNumber, Host};

const INVITE: &[u8] = include_bytes!("../../sip/tests/corpus/sip/messages/invite-sdp.valid.sip");
const OK_200: &[u8] = include_bytes!("../../sip/tests/corpus/sip/messages/ok-200-sdp.valid.sip");
const OPTIONS: &[u8] = include_bytes!("../../sip/tests/corpus/sip/messages/options-ping.valid.sip");

/// Folds what was read into a number, so the optimiser cannot drop the reads.
fn fold(acc: u64, bytes: &[u8]) -> u64 {
    acc.wrapping_mul(31)
        .wrapping_add(bytes.len() as u64)
        .wrapping_add(bytes.first().copied().unwrap_or(0) as u64)
}

// Not inlined, so that callgrind counts it as one function.
#[inline(never)]
fn dce_edge_read(bytes: &[u8]) -> u64 {
    // As the proxy does: the message is built in a slot of this frame.
    let mut slot = None;
    read_fields(sip::parse_in(&mut slot, bytes).expect("dce-edge parses the benchmark message"))
}

/// The same reads after the full RFC 3261 check of every header value.
#[inline(never)]
fn dce_edge_strict_read(bytes: &[u8]) -> u64 {
    read_fields(&sip::parse_strict(bytes).expect("dce-edge parses the benchmark message"))
}

fn read_fields(msg: &sip::Message<'_>) -> u64 {
    let via = msg.top_via();
    let mut acc = fold(0, via.branch().unwrap_or_default());
    acc = match via.host() {
        Host::Name(n) => fold(acc, n),
        Host::Ipv4(a) => fold(acc, &a.octets()),
        Host::Ipv6(a) => fold(acc, &a.octets()),
    };
    acc = acc.wrapping_add(u64::from(via.port().unwrap_or(5060)));
    acc = fold(acc, msg.call_id());
    let cseq = msg.cseq();
    acc = fold(acc, cseq.method.as_bytes()).wrapping_add(u64::from(cseq.number));
    acc = acc.wrapping_add(u64::from(msg.max_forwards().unwrap_or(70)));
    acc = fold(acc, msg.from_tag().unwrap_or_default());
    acc = fold(acc, msg.to_tag().unwrap_or_default());
    if msg.is_request() {
        let mut n = DialedNumber::new();
        if msg.dialed_number(&mut n).is_ok() {
            acc = fold(acc, n.as_bytes());
        }
    } else {
        acc = acc.wrapping_add(u64::from(msg.status().unwrap_or(0)));
    }
    acc
}

fn rsip_read(bytes: &[u8]) -> u64 {
    let msg = rsip::SipMessage::try_from(bytes).expect("rsip parses the benchmark message");
    let via = msg.via_header().unwrap().typed().unwrap();
    let mut acc = fold(
        0,
        via.branch()
            .map(|b| b.to_string())
            .unwrap_or_default()
            .as_bytes(),
    );
    acc = fold(acc, via.uri.host_with_port.host.to_string().as_bytes());
    acc = acc.wrapping_add(
        via.uri
            .host_with_port
            .port
            .map(|p| u64::from(*p.value()))
            .unwrap_or(5060),
    );
    acc = fold(acc, msg.call_id_header().unwrap().value().as_bytes());
    let cseq = msg.cseq_header().unwrap().typed().unwrap();
    acc = fold(acc, cseq.method.to_string().as_bytes()).wrapping_add(u64::from(cseq.seq));
    let max_forwards = msg.max_forwards_header().ok().and_then(|h| h.num().ok());
    acc = acc.wrapping_add(u64::from(max_forwards.unwrap_or(70)));
    let from_tag = msg.from_header().unwrap().tag().unwrap();
    acc = fold(
        acc,
        from_tag
            .map(|t| t.to_string())
            .unwrap_or_default()
            .as_bytes(),
    );
    let to_tag = msg.to_header().unwrap().tag().unwrap();
    acc = fold(
        acc,
        to_tag.map(|t| t.to_string()).unwrap_or_default().as_bytes(),
    );
    match &msg {
        rsip::SipMessage::Request(req) => {
            // The same dialed-number rule: the user part without visual
            // separators, digits only, into a stack buffer.
            if let Some(auth) = &req.uri.auth {
                let mut digits = [0u8; 32];
                let mut len = 0;
                for b in auth.user.bytes() {
                    if b.is_ascii_digit() && len < digits.len() {
                        digits[len] = b;
                        len += 1;
                    }
                }
                acc = fold(acc, &digits[..len]);
            }
        }
        rsip::SipMessage::Response(resp) => {
            acc = acc.wrapping_add(u64::from(resp.status_code.code()));
        }
    }
    acc
}

struct Figures {
    /// Per-message thread CPU time: median, p99 and the least disturbed
    /// (minimum) batch.
    median_ns: f64,
    p99_ns: f64,
    best_ns: f64,
    /// Per-message wall-clock time, median over the batches.
    wall_median_ns: f64,
}

struct Batches {
    cpu: Vec<f64>,
    wall: Vec<f64>,
}

impl Batches {
    fn run(&mut self, bytes: &[u8], read: fn(&[u8]) -> u64, per_batch: u32) -> u64 {
        let mut sink = 0u64;
        let start = Instant::now();
        let cpu_start = thread_cpu_ns();
        for _ in 0..per_batch {
            sink = sink.wrapping_add(read(black_box(bytes)));
        }
        self.cpu
            .push((thread_cpu_ns() - cpu_start) as f64 / f64::from(per_batch));
        self.wall
            .push(start.elapsed().as_nanos() as f64 / f64::from(per_batch));
        sink
    }

    fn figures(mut self) -> Figures {
        self.cpu.sort_by(f64::total_cmp);
        self.wall.sort_by(f64::total_cmp);
        let at = |v: &[f64], q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Figures {
            median_ns: at(&self.cpu, 0.5),
            p99_ns: at(&self.cpu, 0.99),
            best_ns: self.cpu[0],
            wall_median_ns: at(&self.wall, 0.5),
        }
    }
}

/// Times `batches` rounds; each round runs one batch of dce-edge and one of
/// rsip back to back, so that both see the same load on a shared machine.
fn measure(
    bytes: &[u8],
    ours: fn(&[u8]) -> u64,
    theirs: fn(&[u8]) -> u64,
    batches: usize,
) -> (Figures, Figures) {
    const OURS_PER_BATCH: u32 = 2_000;
    const THEIRS_PER_BATCH: u32 = 100;
    let new = || Batches {
        cpu: Vec::with_capacity(batches),
        wall: Vec::with_capacity(batches),
    };
    let (mut a, mut b) = (new(), new());
    // Warm up caches and branch predictors.
    let mut sink = a.run(bytes, ours, OURS_PER_BATCH) ^ b.run(bytes, theirs, THEIRS_PER_BATCH);
    let (mut a, mut b) = (new(), new());
    for _ in 0..batches {
        sink ^= a.run(bytes, ours, OURS_PER_BATCH);
        sink ^= b.run(bytes, theirs, THEIRS_PER_BATCH);
    }
    black_box(sink);
    (a.figures(), b.figures())
}

/// A way to parse a message and read the proxy's fields.
type Reader = fn(&[u8]) -> u64;

/// Runs one reader `n` times on one message and nothing else, for callgrind.
fn count(message: &str, n: u64) {
    let (bytes, read): (&[u8], Reader) = match message {
        "invite" => (INVITE, dce_edge_read),
        "ok" => (OK_200, dce_edge_read),
        "options" => (OPTIONS, dce_edge_read),
        "strict" => (INVITE, dce_edge_strict_read),
        other => panic!("count: unknown message {other:?} (invite, ok, options, strict)"),
    };
    let mut sink = 0u64;
    for _ in 0..n {
        sink = sink.wrapping_add(read(black_box(bytes)));
    }
    println!("{message}: {n} messages read (sink {sink})");
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [mode, message, n] = &args[..] {
        if mode == "count" {
            count(message, n.parse().expect("count: N is a number"));
            return;
        }
    }
    let messages: [(&str, &[u8], Reader); 4] = [
        ("INVITE with SDP", INVITE, dce_edge_read),
        ("200 OK with SDP", OK_200, dce_edge_read),
        ("OPTIONS", OPTIONS, dce_edge_read),
        ("INVITE, strict", INVITE, dce_edge_strict_read),
    ];
    for (name, bytes, _) in messages {
        assert_eq!(dce_edge_read(bytes) != 0, rsip_read(bytes) != 0, "{name}");
    }

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("SIP parse + proxy field reads, one core, per message (thread CPU time)");
    println!(
        "load average at start: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "{:<16} {:>5} {:>8} | {:>10} {:>10} {:>9} {:>12} | {:>10} {:>10} {:>12} | {:>6}",
        "message",
        "bytes",
        "headers",
        "dce med ns",
        "dce p99 ns",
        "dce best",
        "dce msg/s",
        "rsip med",
        "rsip p99",
        "rsip msg/s",
        "ratio"
    );
    let mut walls = Vec::new();
    for (name, bytes, read) in messages {
        let headers = sip::parse(bytes).unwrap().header_count();
        let (ours, theirs) = measure(bytes, read, rsip_read, 400);
        println!(
            "{:<16} {:>5} {:>8} | {:>10.0} {:>10.0} {:>9.0} {:>12.0} | {:>10.0} {:>10.0} {:>12.0} | {:>5.1}x",
            name,
            bytes.len(),
            headers,
            ours.median_ns,
            ours.p99_ns,
            ours.best_ns,
            1e9 / ours.median_ns,
            theirs.median_ns,
            theirs.p99_ns,
            1e9 / theirs.median_ns,
            theirs.median_ns / ours.median_ns,
        );
        walls.push((name, ours.wall_median_ns, theirs.wall_median_ns));
    }
    println!(
        "median and p99 over 400 rounds, each one dce-edge batch (2000 messages) then one rsip \
         batch (100); best = least disturbed dce-edge batch; \
         msg/s = 1e9 / median; ratio = rsip median / dce-edge median; \
         `strict` is sip::parse_strict (every header value checked), the others sip::parse_in (the message built in the caller's slot, as the proxy does)"
    );
    for (name, ours, theirs) in walls {
        println!(
            "wall clock, {name}: dce-edge median {ours:.0} ns, rsip median {theirs:.0} ns (ratio {:.1}x)",
            theirs / ours
        );
    }
}
