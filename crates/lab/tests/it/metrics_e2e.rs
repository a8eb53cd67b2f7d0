//! The OpenMetrics endpoint of a real `dce-edge run` (AF_XDP mode), scraped
//! over HTTP inside the edge's namespace while known traffic runs through
//! it: garbage datagrams and scanner OPTIONS from the lab's attacker, and
//! SIPp calls from the callers to a SIPp server. Every scrape taken during
//! the traffic shows no more than had been sent by then and never less than
//! the scrape before; once the traffic stops, the figures settle on exactly
//! what was sent, per drop reason and for the calls.
//!
//! Nothing here times anything: the senders are paced far below every
//! budget of the filter, and the final figures are waited for (bounded,
//! generously), since the edge publishes a new snapshot once a second.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dataplane::IoMode;
use lab::bin::TempDir;
use lab::edge_process::{groups_toml, EdgeConfig, EdgeProcess};
use lab::privilege::{feature_or_skip, have_program, privileged_or_skip};
use lab::sipp::{Uac, UacOutcome, Uas};
use lab::topology::{Lab, LabSpec, ATTACKER_ADDR, EDGE_ADDR};
use telemetry::metrics::sample_value;

/// Garbage datagrams (not SIP) the attacker sends: `not_sip` drops.
const GARBAGE: u64 = 300;
/// OPTIONS with a scanner User-Agent the attacker sends: `scanner` drops.
const SCANS: u64 = 150;
/// Calls the callers place (20 per second, so about 10 s of calls).
const CALLS: u32 = 200;
const CALL_RATE: u32 = 20;
/// Between two attacker datagrams: 50 per second, a quarter of the
/// smallest per-source budget a scanner OPTIONS spends (`other`, 200/s
/// with a burst of 400) and nothing next to the per-CPU budget for
/// unverified sources; garbage is dropped before any budget.
const ATTACK_GAP: Duration = Duration::from_millis(20);
/// Between two scrapes while the traffic runs.
const SCRAPE_GAP: Duration = Duration::from_millis(500);
/// How long the final figures may take to appear: the edge publishes once
/// a second; a loaded 2-core box may be far slower.
const SETTLE: Duration = Duration::from_secs(60);

/// The XDP drop reasons this traffic must not touch (the filter's other
/// reasons: the two it causes are `not_sip` and `scanner`).
const QUIET_REASONS: [&str; 7] = [
    "blocklist",
    "banned",
    "fragment",
    "rate_limit",
    "overload",
    "malformed",
    "unverified",
];

/// What the attacker has sent so far (counted after each send succeeded).
#[derive(Debug, Default)]
struct Sent {
    garbage: AtomicU64,
    scans: AtomicU64,
}

/// An OPTIONS as SIPVicious's svmap sends it: well-formed SIP whose
/// User-Agent is a default scanner signature.
fn scanner_options(i: u64, port: u16) -> String {
    format!(
        "OPTIONS sip:100@{EDGE_ADDR} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {ATTACKER_ADDR}:{port};branch=z9hG4bK-scan-{i}\r\n\
         Max-Forwards: 70\r\n\
         From: \"100\" <sip:100@{ATTACKER_ADDR}>;tag=scan{i}\r\n\
         To: \"100\" <sip:100@{EDGE_ADDR}>\r\n\
         Call-ID: scan-{i}@{ATTACKER_ADDR}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Contact: <sip:100@{ATTACKER_ADDR}:{port}>\r\n\
         User-Agent: friendly-scanner\r\n\
         Accept: application/sdp\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Sends [`GARBAGE`] garbage datagrams and [`SCANS`] scanner OPTIONS to the
/// edge's SIP port from the attacker's address, interleaved (two garbage,
/// one scan), one every [`ATTACK_GAP`]; bounded in count. Runs inside the
/// attacker's namespace.
fn attack(sent: &Sent) -> std::io::Result<()> {
    let socket = UdpSocket::bind(SocketAddr::from((ATTACKER_ADDR, 0)))?;
    let port = socket.local_addr()?.port();
    let edge = SocketAddr::from((EDGE_ADDR, 5060));
    let (mut garbage, mut scans) = (0u64, 0u64);
    while garbage < GARBAGE || scans < SCANS {
        // Garbage first while it is behind two to one.
        if garbage < GARBAGE && (scans >= SCANS || garbage < 2 * (scans + 1)) {
            // A NUL first byte: nothing SIP starts like that.
            let datagram = format!("\0garbage {garbage}: not a SIP message\x7f");
            socket.send_to(datagram.as_bytes(), edge)?;
            garbage += 1;
            sent.garbage.store(garbage, Ordering::SeqCst);
        } else {
            socket.send_to(scanner_options(scans, port).as_bytes(), edge)?;
            scans += 1;
            sent.scans.store(scans, Ordering::SeqCst);
        }
        std::thread::sleep(ATTACK_GAP);
    }
    Ok(())
}

/// The figures this test checks, read from one scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Figures {
    not_sip: u64,
    scanner: u64,
    invites_forwarded: u64,
    calls_answered: u64,
    calls_failed: u64,
}

/// One sample of `text` as a count; a sample that is missing or not a
/// whole number is a failure that shows the exposition.
fn count(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    let v = sample_value(text, name, labels)
        .unwrap_or_else(|| panic!("no sample {name}{labels:?} in /metrics:\n{text}"));
    assert!(
        v >= 0.0 && v.fract() == 0.0,
        "{name}{labels:?} = {v} is not a count:\n{text}"
    );
    v as u64
}

impl Figures {
    fn read(text: &str) -> Figures {
        Figures {
            not_sip: count(text, "dce_edge_xdp_drops_total", &[("reason", "not_sip")]),
            scanner: count(text, "dce_edge_xdp_drops_total", &[("reason", "scanner")]),
            invites_forwarded: count(text, "dce_edge_calls_total", &[("outcome", "forwarded")]),
            calls_answered: count(text, "dce_edge_calls_total", &[("outcome", "answered")]),
            calls_failed: count(text, "dce_edge_calls_total", &[("outcome", "failed")]),
        }
    }

    /// What the edge must show once everything sent has been counted.
    fn expected() -> Figures {
        Figures {
            not_sip: GARBAGE,
            scanner: SCANS,
            invites_forwarded: CALLS as u64,
            calls_answered: CALLS as u64,
            calls_failed: 0,
        }
    }

    /// Every figure at least the one of `earlier`.
    fn at_least(&self, earlier: &Figures) -> bool {
        self.not_sip >= earlier.not_sip
            && self.scanner >= earlier.scanner
            && self.invites_forwarded >= earlier.invites_forwarded
            && self.calls_answered >= earlier.calls_answered
            && self.calls_failed >= earlier.calls_failed
    }
}

/// The `dce_edge_top_source_drops` sample of `source` (whatever the reason
/// label of its latest drop), if the source is among the top ones.
fn top_source_drops(text: &str, source: &str) -> Option<u64> {
    let wanted = format!("dce_edge_top_source_drops{{source=\"{source}");
    text.lines()
        .filter_map(|l| l.strip_prefix(wanted.as_str()))
        // `198.18.0.200"` or `198.18.0.200/32"`, not `198.18.0.2001...`.
        .filter(|rest| rest.starts_with('"') || rest.starts_with("/32\""))
        .filter_map(|rest| rest.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .next()
}

/// The lines of `text` a failure message needs.
fn excerpt(text: &str) -> String {
    text.lines()
        .filter(|l| {
            l.starts_with("dce_edge_xdp_")
                || l.starts_with("dce_edge_calls_total")
                || l.starts_with("dce_edge_top_source_drops")
                || l.starts_with("dce_edge_bans_active")
                || l.starts_with("dce_edge_worker_")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn metrics_scraped_during_traffic_match_what_was_sent() {
    let test = "metrics_scraped_during_traffic_match_what_was_sent";
    if !privileged_or_skip(test) {
        return;
    }
    if !feature_or_skip(
        test,
        have_program("sipp") && have_program("nsenter"),
        "sipp or nsenter",
        "apt-get install sip-tester util-linux (scripts/setup.sh)",
    ) {
        return;
    }
    let lab = Lab::build(&LabSpec {
        caller_addrs: 1,
        upstreams: 1,
        attacker: true,
        edge_queues: 1,
    })
    .unwrap();
    let attacker = lab.attacker.as_ref().unwrap();
    let dir = TempDir::new("mete2e").unwrap();
    let server = Uas::start(&lab.upstreams[0], dir.path()).unwrap();
    let mut cfg = EdgeConfig::new(
        &lab,
        IoMode::AfXdp,
        groups_toml(None, &[("uk", &[server.addr()])]),
        "prefix,group\n44,uk\n".into(),
    );
    // Without auto-ban a scanner's packets stay `scanner` drops instead of
    // turning into `banned` ones after the first: one reason per datagram
    // sent, whatever the order the XDP program sees them in.
    cfg.filter = "auto_ban = false\n".into();
    let mut edge = EdgeProcess::start(&lab, dir.path(), &cfg).unwrap();

    // Before any traffic: nothing dropped, no call (the readiness OPTIONS
    // is answered by the edge itself and is no call).
    let before = edge.scrape_metrics().unwrap();
    assert!(before.trim_end().ends_with("# EOF"), "{before}");
    assert_eq!(
        Figures::read(&before),
        Figures {
            not_sip: 0,
            scanner: 0,
            invites_forwarded: 0,
            calls_answered: 0,
            calls_failed: 0,
        },
        "{}",
        excerpt(&before)
    );

    // The traffic: calls from the callers and the attack, at once.
    let uac = Uac::new(
        lab.callers.addr(),
        edge.sip_addr(),
        "442071234567",
        CALL_RATE,
        CALLS,
    )
    .spawn(&lab.callers.ns, dir.path())
    .unwrap();
    let calls: JoinHandle<std::io::Result<UacOutcome>> = std::thread::spawn(move || uac.wait());
    let sent = Arc::new(Sent::default());
    let attack_sent = Arc::clone(&sent);
    let attacker_thread = attacker
        .ns
        .spawn_thread(move || attack(&attack_sent))
        .unwrap();

    // Scrape while it runs. Each scrape is bracketed by what the attacker
    // had sent just after it: the edge cannot have counted more.
    let mut during: Vec<Figures> = Vec::new();
    let mut previous = Figures::read(&before);
    while !(calls.is_finished() && attacker_thread.is_finished()) {
        let text = edge.scrape_metrics().unwrap();
        let (garbage, scans) = (
            sent.garbage.load(Ordering::SeqCst),
            sent.scans.load(Ordering::SeqCst),
        );
        let f = Figures::read(&text);
        assert!(
            f.not_sip <= garbage && f.scanner <= scans,
            "the edge counted more than was sent ({garbage} garbage, {scans} scans): {f:?}\n{}",
            excerpt(&text)
        );
        assert!(
            f.invites_forwarded <= CALLS as u64
                && f.calls_answered <= CALLS as u64
                && f.calls_failed == 0,
            "calls beyond the {CALLS} placed, or a failure: {f:?}\n{}",
            excerpt(&text)
        );
        assert!(
            f.at_least(&previous),
            "a counter went down: {previous:?} then {f:?}"
        );
        previous = f;
        // Taken while traffic was still being sent (or calls made).
        if !(calls.is_finished() && attacker_thread.is_finished()) {
            during.push(f);
        }
        std::thread::sleep(SCRAPE_GAP);
    }
    attacker_thread
        .join()
        .expect("attacker thread")
        .expect("attacker namespace")
        .expect("attacker send");
    let outcome = calls.join().expect("sipp waiter").unwrap();
    assert!(outcome.all_successful(), "{}", outcome.report());
    assert_eq!(
        (
            sent.garbage.load(Ordering::SeqCst),
            sent.scans.load(Ordering::SeqCst)
        ),
        (GARBAGE, SCANS)
    );
    // The traffic showed on the endpoint while it ran, not only at the end.
    assert!(
        during
            .iter()
            .any(|f| f.not_sip + f.scanner + f.invites_forwarded > 0),
        "no scrape during the traffic showed any of it: {during:?}"
    );

    // After the traffic: the figures settle on exactly what was sent.
    let expected = Figures::expected();
    let deadline = Instant::now() + SETTLE;
    let last = loop {
        let text = edge.scrape_metrics().unwrap();
        let f = Figures::read(&text);
        assert!(
            f.at_least(&previous),
            "a counter went down: {previous:?} then {f:?}"
        );
        previous = f;
        if f == expected || Instant::now() >= deadline {
            break text;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    assert_eq!(
        Figures::read(&last),
        expected,
        "after {SETTLE:?}, /metrics still differs from what was sent \
         ({GARBAGE} garbage, {SCANS} scanner OPTIONS, {CALLS} calls completed):\n{}",
        excerpt(&last)
    );
    // Each datagram dropped under exactly one reason: no other reason moved.
    for reason in QUIET_REASONS {
        assert_eq!(
            count(&last, "dce_edge_xdp_drops_total", &[("reason", reason)]),
            0,
            "{reason}:\n{}",
            excerpt(&last)
        );
    }
    // Every attacker datagram is charged to the attacker's address...
    assert_eq!(
        top_source_drops(&last, &ATTACKER_ADDR.to_string()),
        Some(GARBAGE + SCANS),
        "{}",
        excerpt(&last)
    );
    // ...and to its /24 in the top networks: one source, all of it (under
    // the reason of its latest drop), and the only /24 with drops.
    let attacker24 = {
        let o = ATTACKER_ADDR.octets();
        format!("{}.{}.{}.0/24", o[0], o[1], o[2])
    };
    let network_samples: Vec<(u64, u64)> = ["not_sip", "scanner"]
        .iter()
        .filter_map(|reason| {
            let labels = [
                ("network", attacker24.as_str()),
                ("prefix_len", "24"),
                ("reason", *reason),
            ];
            let drops =
                telemetry::metrics::sample_value(&last, "dce_edge_top_networks_drops", &labels)?;
            let sources =
                telemetry::metrics::sample_value(&last, "dce_edge_top_networks_sources", &labels)?;
            Some((drops as u64, sources as u64))
        })
        .collect();
    assert_eq!(network_samples, [(GARBAGE + SCANS, 1)], "{last}");
    assert_eq!(
        telemetry::metrics::sample_value(
            &last,
            "dce_edge_top_sources_networks",
            &[("family", "ipv4"), ("prefix_len", "24")]
        ),
        Some(1.0),
        "{last}"
    );
    // ...and without auto-ban nobody was banned for it.
    assert_eq!(
        count(&last, "dce_edge_bans_active", &[("reason", "scanner")]),
        0,
        "{}",
        excerpt(&last)
    );

    eprintln!(
        "{} scrapes during the traffic, the first showing some {:?}, the last {:?}; final:\n{}",
        during.len(),
        during
            .iter()
            .find(|f| f.not_sip + f.scanner + f.invites_forwarded > 0),
        during.last(),
        excerpt(&last)
    );

    // The final snapshot the edge writes on SIGTERM agrees with the scrape.
    let end = edge.stop().unwrap();
    let xdp = end.xdp.expect("XDP counters in AF_XDP mode");
    assert_eq!(
        (xdp.drops["not_sip"], xdp.drops["scanner"]),
        (GARBAGE, SCANS),
        "{xdp:?}"
    );
    assert_eq!(
        (end.calls.invites_forwarded, end.calls.answered),
        (CALLS as u64, CALLS as u64),
        "{:?}",
        end.calls
    );
}
