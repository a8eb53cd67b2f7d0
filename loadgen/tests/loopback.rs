//! Callers against servers on 127.0.0.1, in one process: calls complete,
//! retransmissions recover a dropped INVITE, failures are counted by code,
//! and every started call lands in exactly one outcome bucket.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use loadgen::timers::SipTimers;
use loadgen::uac::{self, Scenario, UacConfig};
use loadgen::uas::{Uas, UasConfig};

fn server(cfg: impl FnOnce(&mut UasConfig)) -> Uas {
    let mut c = UasConfig::new("127.0.0.1:0".parse().unwrap());
    cfg(&mut c);
    Uas::start(c).expect("servers start")
}

/// A short T1 keeps retransmission tests quick; the timeout stays generous
/// so a loaded test machine does not turn slow answers into failures.
fn fast_timers() -> SipTimers {
    SipTimers {
        t1_ns: 50_000_000,
        t2_ns: 400_000_000,
        timeout_ns: 20_000_000_000,
    }
}

fn callers(uas: &Uas, calls: u64, scenario: Scenario) -> UacConfig {
    let mut c = UacConfig::new(uas.local_addr());
    c.scenario = scenario;
    c.cps = 200.0;
    c.max_calls = calls;
    c.duration = Duration::from_secs(30);
    c.sources = 4;
    c.timers = fast_timers();
    c
}

#[test]
fn every_call_completes_against_an_answering_server() {
    let uas = server(|_| {});
    let r = uac::run(&callers(&uas, 200, Scenario::Call), &AtomicBool::new(false)).unwrap();
    let s = uas.stop().unwrap();
    assert_eq!(r.started, 200, "{r}");
    assert_eq!(r.outcomes.completed, 200, "{r}");
    assert!(r.accounting.balanced, "{r}");
    assert_eq!(s.counters.new_calls, 200, "{s}");
    assert_eq!(s.counters.requests.bye, 200 + s.counters.bye_again, "{s}");
    assert_eq!(r.latency_us["setup"].count, 200);
}

#[test]
fn dropped_first_invites_are_recovered_by_retransmission() {
    let uas = server(|c| c.drop_first_invite_share = 1.0);
    let r = uac::run(&callers(&uas, 50, Scenario::Call), &AtomicBool::new(false)).unwrap();
    let s = uas.stop().unwrap();
    assert_eq!(r.outcomes.completed, 50, "{r}");
    assert_eq!(s.counters.invite_dropped_on_purpose, 50, "{s}");
    // Every call needed at least one INVITE retransmission, and none of them
    // counted as a new call.
    assert!(r.retransmissions.invite >= 50, "{r}");
    assert_eq!(r.started, 50);
    assert_eq!(s.counters.new_calls, 50, "{s}");
}

#[test]
fn failures_are_counted_by_code() {
    let uas = server(|c| {
        c.busy_share = 0.3;
        c.unavailable_share = 0.2;
    });
    let r = uac::run(&callers(&uas, 400, Scenario::Call), &AtomicBool::new(false)).unwrap();
    let s = uas.stop().unwrap();
    let busy = r.outcomes.failed.get(&486).copied().unwrap_or(0);
    let unavailable = r.outcomes.failed.get(&503).copied().unwrap_or(0);
    assert!(busy > 0 && unavailable > 0, "{r}");
    assert_eq!(busy, s.counters.answers.get(486), "{r}\n{s}");
    assert_eq!(unavailable, s.counters.answers.get(503), "{r}\n{s}");
    assert_eq!(r.outcomes.completed + busy + unavailable, 400, "{r}");
    assert!(r.accounting.balanced, "{r}");
    // Failures are acknowledged, so the server stops retransmitting them.
    assert_eq!(s.counters.ack_timeouts, 0, "{s}");
}

#[test]
fn cancel_before_answer_ends_with_487() {
    let uas = server(|c| {
        c.ring = true;
        c.answer_delay = Duration::from_secs(30);
    });
    let r = uac::run(
        &callers(&uas, 40, Scenario::Cancel),
        &AtomicBool::new(false),
    )
    .unwrap();
    let s = uas.stop().unwrap();
    assert_eq!(r.outcomes.completed, 40, "{r}");
    assert_eq!(s.counters.answers.get(487), 40, "{s}");
    assert_eq!(r.latency_us["cancel"].count, 40);
}

#[test]
fn register_answers_the_digest_challenge() {
    let uas = server(|c| c.password = Some("secret".into()));
    let mut c = callers(&uas, 30, Scenario::Register);
    c.password = "secret".into();
    let r = uac::run(&c, &AtomicBool::new(false)).unwrap();
    let s = uas.stop().unwrap();
    assert_eq!(r.outcomes.completed, 30, "{r}");
    assert_eq!(
        (s.counters.register_challenged, s.counters.register_accepted),
        (30, 30),
        "{s}"
    );
}

#[test]
fn register_with_a_wrong_password_fails_with_403() {
    let uas = server(|c| c.password = Some("secret".into()));
    let mut c = callers(&uas, 10, Scenario::Register);
    c.password = "guess".into();
    let r = uac::run(&c, &AtomicBool::new(false)).unwrap();
    uas.stop().unwrap();
    assert_eq!(r.outcomes.failed.get(&403), Some(&10), "{r}");
}

#[test]
fn options_pings_are_answered() {
    let uas = server(|_| {});
    let r = uac::run(
        &callers(&uas, 30, Scenario::Options),
        &AtomicBool::new(false),
    )
    .unwrap();
    uas.stop().unwrap();
    assert_eq!(r.outcomes.completed, 30, "{r}");
    assert_eq!(r.latency_us["options"].count, 30);
}

#[test]
fn calls_to_a_silent_port_time_out_and_are_all_accounted() {
    // A bound socket that never answers: every INVITE is retransmitted and
    // every call ends as timed out, none lost from the books.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut c = UacConfig::new(silent.local_addr().unwrap());
    c.cps = 100.0;
    c.max_calls = 20;
    c.sources = 2;
    c.timers = SipTimers {
        t1_ns: 20_000_000,
        t2_ns: 80_000_000,
        timeout_ns: 300_000_000,
    };
    let r = uac::run(&c, &AtomicBool::new(false)).unwrap();
    assert_eq!(r.outcomes.timed_out_no_answer, 20, "{r}");
    assert!(r.retransmissions.invite >= 20 * 3, "{r}");
    assert!(r.accounting.balanced, "{r}");
}

#[test]
fn held_calls_send_bye_after_the_hold_time() {
    let uas = server(|c| {
        c.trying = true;
        c.ring = true;
    });
    let mut c = callers(&uas, 20, Scenario::Call);
    c.hold = Duration::from_millis(200);
    let r = uac::run(&c, &AtomicBool::new(false)).unwrap();
    let s = uas.stop().unwrap();
    assert_eq!(r.outcomes.completed, 20, "{r}");
    assert_eq!(r.answers.get(&180), Some(&20), "{r}");
    assert!(r.latency_us["first_answer"].count == 20);
    assert_eq!(s.counters.requests.ack, 20 + s.counters.ack_again, "{s}");
}

#[test]
fn two_threads_on_each_side_complete_every_call() {
    // Server threads share the port through SO_REUSEPORT; the kernel keeps
    // each source on one thread, so every call's messages meet its state.
    let uas = server(|c| c.threads = 2);
    let mut c = callers(&uas, 400, Scenario::Call);
    c.threads = 2;
    c.sources = 8;
    let r = uac::run(&c, &AtomicBool::new(false)).unwrap();
    let s = uas.stop().unwrap();
    assert_eq!(r.outcomes.completed, 400, "{r}");
    assert_eq!(r.threads.len(), 2);
    assert_eq!(s.threads.len(), 2);
    assert_eq!(
        s.counters.bye_unmatched + s.counters.ack_unmatched,
        0,
        "{s}"
    );
}

#[test]
fn numbers_from_the_pattern_reach_the_server_in_order() {
    // A server that only listens: the test reads the INVITEs itself.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut c = UacConfig::new(sock.local_addr().unwrap());
    c.numbers = loadgen::numbers::Numbers::pattern("4420{0000-0002}").unwrap();
    c.max_calls = 3;
    c.cps = 100.0;
    c.sources = 1;
    c.timers = SipTimers {
        t1_ns: 5_000_000_000,
        t2_ns: 5_000_000_000,
        timeout_ns: 200_000_000,
    };
    let handle = std::thread::spawn(move || uac::run(&c, &AtomicBool::new(false)).unwrap());
    let mut buf = [0u8; 4096];
    let mut uris = Vec::new();
    while uris.len() < 3 {
        let (n, _) = sock.recv_from(&mut buf).unwrap();
        let v = loadgen::sipmsg::parse(&buf[..n]).unwrap();
        if let loadgen::sipmsg::Start::Request { uri, .. } = v.start {
            uris.push(String::from_utf8_lossy(uri).into_owned());
        }
    }
    let r = handle.join().unwrap();
    assert_eq!(r.outcomes.timed_out_no_answer, 3, "{r}");
    let users: Vec<&str> = uris.iter().map(|u| &u[4..12]).collect();
    assert_eq!(users, ["44200000", "44200001", "44200002"]);
}

#[test]
fn calls_leave_from_every_source_across_addresses_and_ports() {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut c = UacConfig::new(sock.local_addr().unwrap());
    c.local_addrs = vec!["127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap()];
    c.sources = 4;
    c.cps = 1000.0;
    c.max_calls = 64; // 16 consecutive calls per socket: every socket is used.
    c.timers = SipTimers {
        t1_ns: 5_000_000_000,
        t2_ns: 5_000_000_000,
        timeout_ns: 300_000_000,
    };
    let handle = std::thread::spawn(move || uac::run(&c, &AtomicBool::new(false)).unwrap());
    let mut buf = [0u8; 4096];
    let mut sources = std::collections::HashSet::new();
    for _ in 0..64 {
        let (_, from) = sock.recv_from(&mut buf).unwrap();
        sources.insert(from);
    }
    let r = handle.join().unwrap();
    assert_eq!(r.started, 64);
    assert_eq!(sources.len(), 4, "{sources:?}");
    let ips: std::collections::HashSet<_> = sources.iter().map(|s| s.ip()).collect();
    assert_eq!(ips.len(), 2, "{sources:?}");
}
