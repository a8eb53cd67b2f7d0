//! Passive health through the proxy's public contract: what INVITEs toward
//! a target meet is reported to the control thread, whose
//! [`TargetBook`] takes the target down; the change comes back through the
//! route ring like a probe's. Forged responses, and genuine answers to a
//! spoofed caller's INVITEs, must not take a target down.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proxy::cookie::Secret;
use proxy::handler::{Datagram, OutboxBuffer, Timestamp};
use proxy::{EdgeProxy, ProxyConfig, ProxyEvent};
use route::health::{InviteActivity, TargetBook, Transition};
use route::trie::PrefixKey;
use route::{
    Action, GroupId, HealthSettings, Probe, RouteControl, RouteGroup, RouteTable, Target,
    WhenAllDown,
};

const EDGE: &str = "198.18.0.1:5060";
const TARGET_A: &str = "198.18.0.100:5060";
const TARGET_B: &str = "198.18.0.101:5060";
/// A caller the edge trusts (allowlisted, as a carrier's trunk is).
const TRUNK: &str = "198.18.0.10:5060";
/// A caller the edge knows nothing about (its address may be forged).
const STRANGER: &str = "198.18.0.77:5060";
/// Whoever forges responses.
const FORGER: &str = "198.18.0.66:5060";
const MS: u64 = 1_000_000;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

struct Edge {
    proxy: EdgeProxy,
    control: RouteControl,
    book: TargetBook,
    now: u64,
    started: Instant,
    calls: u32,
}

impl Edge {
    fn new(when_all_down: WhenAllDown) -> Edge {
        let mut group = RouteGroup::new("uk", Action::Forward)
            .with_target(Target::new(addr(TARGET_A), 1, 1))
            .with_target(Target::new(addr(TARGET_B), 2, 1));
        group.probe = Probe::None;
        group.when_all_down = when_all_down;
        let table = RouteTable::build(
            vec![group],
            &[(PrefixKey::from_digits(b"44").unwrap(), GroupId(0))],
            HealthSettings::default(),
        )
        .unwrap();
        let mut book = TargetBook::new(table.health_settings());
        book.set_targets(&table.forward_upstreams(), &table.probed_upstreams());
        let (control, mut workers) = RouteControl::new(table, 1);
        let mut cfg = ProxyConfig::new(addr(EDGE), Secret::new(0x5eed, 0xc0de));
        cfg.allowlist = vec!["198.18.0.10/32".parse().unwrap()];
        Edge {
            proxy: EdgeProxy::new(cfg, workers.remove(0)),
            control,
            book,
            now: 1_000 * MS,
            started: Instant::now(),
            calls: 0,
        }
    }

    fn send(&mut self, from: &str, msg: &str) -> Vec<(SocketAddr, String)> {
        self.now += MS;
        let mut buf = OutboxBuffer::new(4, 4096);
        let pkt = Datagram::udp(addr(from), addr(EDGE), msg.as_bytes());
        let _ =
            self.proxy
                .handle_datagram(Timestamp::from_nanos(self.now), &pkt, &mut buf.outbox());
        buf.datagrams()
            .map(|(a, b)| (a, String::from_utf8(b.to_vec()).unwrap()))
            .collect()
    }

    /// A new call from `caller`; returns where the edge sent what.
    fn call(&mut self, caller: &str) -> Vec<(SocketAddr, String)> {
        self.calls += 1;
        let n = self.calls;
        let (host, port) = caller.split_once(':').unwrap();
        let invite = format!(
            "INVITE sip:442071234567@198.18.0.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-call-{n}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:caller@{host}>;tag=f{n}\r\n\
             To: <sip:442071234567@198.18.0.1>\r\n\
             Call-ID: call-{n}@{host}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:caller@{host}:{port}>\r\n\
             Content-Length: 0\r\n\r\n"
        );
        self.send(caller, &invite)
    }

    /// A new call from `caller` that the edge forwards; returns the target
    /// and the forwarded INVITE.
    fn forwarded_call(&mut self, caller: &str) -> (SocketAddr, String) {
        let sent = self.call(caller);
        assert_eq!(sent.len(), 1, "{sent:?}");
        sent.into_iter().next().unwrap()
    }

    /// The worker reports, the control thread's book reads the reports at
    /// `after` past the start, and what changed goes back to the worker.
    fn control_tick(&mut self, after: Duration) -> Vec<Transition> {
        self.now += 200 * MS;
        self.proxy.poll_activity(Timestamp::from_nanos(self.now));
        let at = self.started + after;
        let mut out = Vec::new();
        while let Some(ev) = self.proxy.next_event() {
            if let ProxyEvent::InviteActivity { target, activity } = ev {
                out.extend(self.book.activity(target, activity, at));
            }
        }
        self.book.poll(at, |_| None, &mut out);
        for t in &out {
            self.control.set_health(t.addr, t.up);
        }
        self.proxy.poll_routes();
        out
    }

    /// Everything the worker reported, summed per target.
    fn reported(&mut self) -> Vec<(SocketAddr, InviteActivity)> {
        self.now += 200 * MS;
        self.proxy.poll_activity(Timestamp::from_nanos(self.now));
        let mut out = Vec::new();
        while let Some(ev) = self.proxy.next_event() {
            if let ProxyEvent::InviteActivity { target, activity } = ev {
                out.push((target, activity));
            }
        }
        out
    }
}

/// The response `target` gives to the forwarded request `fwd`: its Vias,
/// From, To (with a tag), Call-ID and CSeq.
fn response(fwd: &str, status: &str) -> String {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for line in fwd.split("\r\n") {
        let lower = line.to_ascii_lowercase();
        if ["via:", "from:", "call-id:", "cseq:"]
            .iter()
            .any(|h| lower.starts_with(h))
        {
            out.push_str(line);
            out.push_str("\r\n");
        } else if lower.starts_with("to:") {
            out.push_str(line);
            out.push_str(";tag=up1\r\n");
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// `fwd`'s response with one hex digit of the edge's branch changed.
fn with_forged_branch(resp: &str) -> String {
    let at = resp.find("branch=z9hG4bKdce").expect("the edge's branch") + 20;
    let mut bytes = resp.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    String::from_utf8(bytes).unwrap()
}

#[test]
fn five_503s_from_a_target_take_it_down_and_calls_move_to_the_next() {
    let mut edge = Edge::new(WhenAllDown::Answer503);
    for _ in 0..5 {
        let (to, fwd) = edge.forwarded_call(TRUNK);
        assert_eq!(to, addr(TARGET_A));
        let relayed = edge.send(TARGET_A, &response(&fwd, "503 Service Unavailable"));
        assert_eq!(relayed.len(), 1, "a genuine 503 is relayed to the caller");
    }
    let changes = edge.control_tick(Duration::from_millis(200));
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].addr, addr(TARGET_A));
    assert!(!changes[0].up);
    assert_eq!(
        changes[0].cause.to_string(),
        "5 INVITEs in a row answered 503"
    );
    let (to, _) = edge.forwarded_call(TRUNK);
    assert_eq!(to, addr(TARGET_B), "the next priority takes the calls");
}

#[test]
fn invites_without_any_response_take_a_target_down_after_the_timeout() {
    let mut edge = Edge::new(WhenAllDown::Answer503);
    for _ in 0..5 {
        edge.forwarded_call(TRUNK);
    }
    assert!(edge.control_tick(Duration::from_secs(1)).is_empty());
    let changes = edge.control_tick(Duration::from_secs(5));
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(
        changes[0].cause.to_string(),
        "5 INVITEs in a row unanswered within 4000 ms"
    );
}

#[test]
fn a_100_trying_is_a_response_and_a_180_brings_a_held_target_back() {
    let mut edge = Edge::new(WhenAllDown::Answer503);
    let mut last = String::new();
    for _ in 0..5 {
        last = edge.forwarded_call(TRUNK).1;
    }
    edge.send(TARGET_A, &response(&last, "100 Trying"));
    edge.control_tick(Duration::from_secs(1));
    assert!(edge.control_tick(Duration::from_secs(10)).is_empty());
    // Down by 503s; its calls in progress still answer.
    let mut fwds = Vec::new();
    for _ in 0..5 {
        let (_, fwd) = edge.forwarded_call(TRUNK);
        edge.send(TARGET_A, &response(&fwd, "503 Service Unavailable"));
        fwds.push(fwd);
    }
    assert!(!edge.control_tick(Duration::from_secs(11))[0].up);
    edge.send(TARGET_A, &response(&fwds[0], "180 Ringing"));
    let back = edge.control_tick(Duration::from_secs(12));
    assert_eq!(back.len(), 1);
    assert!(back[0].up);
    assert_eq!(back[0].cause.to_string(), "answered again");
    assert_eq!(edge.forwarded_call(TRUNK).0, addr(TARGET_A));
}

#[test]
fn forged_503s_do_not_take_a_target_down() {
    let mut edge = Edge::new(WhenAllDown::Answer503);
    for _ in 0..20 {
        let (to, fwd) = edge.forwarded_call(TRUNK);
        assert_eq!(to, addr(TARGET_A));
        let genuine = response(&fwd, "503 Service Unavailable");
        // The edge's branch forged (a digit changed), from the target's
        // own address: its MAC does not hold.
        assert!(edge
            .send(TARGET_A, &with_forged_branch(&genuine))
            .is_empty());
        // The right branch (the forger saw the INVITE go by), from
        // another address, and from the target's host on another port.
        assert!(edge.send(FORGER, &genuine).is_empty());
        assert!(edge.send("198.18.0.100:5070", &genuine).is_empty());
        // The target answers the call.
        edge.send(TARGET_A, &response(&fwd, "100 Trying"));
    }
    let stats = edge.proxy.snapshot();
    assert_eq!(stats.dropped.get("unexpected_response"), Some(&60));
    let reported = edge.reported();
    assert!(
        reported.iter().all(|(_, a)| a.rejected == 0),
        "{reported:?}"
    );
    assert!(edge.control_tick(Duration::from_secs(60)).is_empty());
    assert!(edge.book.is_up(addr(TARGET_A)));
    assert_eq!(edge.forwarded_call(TRUNK).0, addr(TARGET_A));
}

#[test]
fn genuine_503s_to_a_spoofable_caller_do_not_take_a_target_down() {
    // A caller whose address is unproven may be forged: its INVITEs could
    // be crafted for the target to refuse. Their outcome says nothing.
    let mut edge = Edge::new(WhenAllDown::Answer503);
    for _ in 0..5 {
        let (to, fwd) = edge.forwarded_call(STRANGER);
        assert_eq!(to, addr(TARGET_A));
        edge.send(TARGET_A, &response(&fwd, "503 Service Unavailable"));
    }
    assert!(edge.control_tick(Duration::from_secs(60)).is_empty());
    assert!(edge.book.is_up(addr(TARGET_A)));
}

#[test]
fn a_group_with_every_target_down_answers_503_naming_no_address() {
    let mut edge = Edge::new(WhenAllDown::Answer503);
    edge.control.set_health(addr(TARGET_A), false);
    edge.control.set_health(addr(TARGET_B), false);
    edge.proxy.poll_routes();
    let sent = edge.call(TRUNK);
    assert_eq!(sent.len(), 1);
    let (to, answer) = &sent[0];
    assert_eq!(*to, addr(TRUNK));
    assert!(answer.starts_with("SIP/2.0 503 "), "{answer}");
    assert!(
        answer.contains("\r\nWarning: 399 dce-edge \"no upstream available\"\r\n"),
        "{answer}"
    );
    assert!(
        !answer.contains("198.18.0.100") && !answer.contains("198.18.0.101"),
        "no target address: {answer}"
    );
}

#[test]
fn a_try_anyway_group_sends_calls_to_its_preferred_target_when_all_are_down() {
    let mut edge = Edge::new(WhenAllDown::TryAnyway);
    edge.control.set_health(addr(TARGET_A), false);
    edge.control.set_health(addr(TARGET_B), false);
    edge.proxy.poll_routes();
    let (to, fwd) = edge.forwarded_call(TRUNK);
    assert_eq!(to, addr(TARGET_A));
    assert!(fwd.starts_with("INVITE "));
}
