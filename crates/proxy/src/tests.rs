//! The proxy on message sequences, without a network: what it sends, where,
//! and what it counts.

use std::net::SocketAddr;

use super::answers::AnswerConfig;
use super::cookie::{self, Secret};
use super::*;
use crate::handler::{Datagram, OutboxBuffer, PacketHandler, Timestamp};
use route::trie::PrefixKey;
use route::{Action, GroupId, HealthSettings, RouteControl, RouteGroup, RouteTable, Target};
use sip::{self, Method};

const EDGE: &str = "198.18.0.1:5060";
const CALLER: &str = "198.18.0.10:5060";
const UP_A: &str = "198.18.0.100:5060";
const UP_B: &str = "198.18.0.101:5060";
const MS: u64 = 1_000_000;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn table(cap: Option<u32>) -> RouteTable {
    let mut fwd = RouteGroup::new("uk", Action::Forward)
        .with_target(Target::new(addr(UP_A), 1, 1))
        .with_target(Target::new(addr(UP_B), 1, 1));
    fwd.cps_cap = cap;
    let groups = vec![
        fwd,
        RouteGroup::new("blocked", Action::Reject { code: 403 }),
        RouteGroup::new("moved", Action::Redirect).with_target(Target::new(addr(UP_B), 1, 1)),
    ];
    let p = |s: &str| PrefixKey::from_digits(s.as_bytes()).unwrap();
    let prefixes = vec![
        (p("44"), GroupId(0)),
        (p("4490"), GroupId(1)),
        (p("4480"), GroupId(2)),
    ];
    RouteTable::build(groups, &prefixes, HealthSettings::default()).unwrap()
}

struct Lab {
    proxy: EdgeProxy,
    control: RouteControl,
    now: u64,
    /// Time between two datagrams fed.
    step: u64,
}

impl Lab {
    fn new() -> Lab {
        Lab::with(table(None), |_| {})
    }

    fn with(t: RouteTable, tweak: impl FnOnce(&mut ProxyConfig)) -> Lab {
        let (control, mut workers) = RouteControl::new(t, 1);
        let mut cfg = ProxyConfig::new(addr(EDGE), Secret::new(7, 9));
        tweak(&mut cfg);
        Lab {
            proxy: EdgeProxy::new(cfg, workers.remove(0)),
            control,
            now: 1_000 * MS,
            step: MS,
        }
    }

    /// Feeds one datagram; returns the verdict and what was sent.
    fn send(
        &mut self,
        from: &str,
        msg: &str,
    ) -> (Result<(), ProxyDrop>, Vec<(SocketAddr, String)>) {
        self.now += self.step;
        let mut buf = OutboxBuffer::new(4, 4096);
        let pkt = Datagram::udp(addr(from), addr(EDGE), msg.as_bytes());
        let r =
            self.proxy
                .handle_datagram(Timestamp::from_nanos(self.now), &pkt, &mut buf.outbox());
        let sent = buf
            .datagrams()
            .map(|(a, b)| (a, String::from_utf8(b.to_vec()).unwrap()))
            .collect();
        (r, sent)
    }
}

fn invite(number: &str, call_id: &str, branch: &str) -> String {
    format!(
        "INVITE sip:{number}@198.18.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 198.18.0.10:5060;branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:caller@198.18.0.10>;tag=ft1\r\n\
         To: <sip:{number}@198.18.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:caller@198.18.0.10:5060>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn request(
    method: &str,
    uri: &str,
    extra: &str,
    call_id: &str,
    branch: &str,
    to_tag: Option<&str>,
) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "{method} {uri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 198.18.0.10:5060;branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:caller@198.18.0.10>;tag=ft1\r\n\
         To: <sip:dest@198.18.0.1>{to_tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 2 {method}\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
}

/// The response an upstream gives to the forwarded request `fwd`.
fn upstream_response(fwd: &str, status: &str, to_tag: &str, record_route: bool) -> String {
    let msg = sip::parse(fwd.as_bytes()).unwrap();
    let mut out = format!("SIP/2.0 {status}\r\n");
    for h in msg.headers() {
        let name = String::from_utf8_lossy(h.name_bytes);
        let value = String::from_utf8_lossy(h.value);
        match name.to_ascii_lowercase().as_str() {
            "via" | "from" | "call-id" | "cseq" => out.push_str(&format!("{name}: {value}\r\n")),
            "record-route" if record_route => out.push_str(&format!("{name}: {value}\r\n")),
            "to" => out.push_str(&format!("{name}: {value};tag={to_tag}\r\n")),
            _ => {}
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

impl Lab {
    /// The upstream that got `fwd` answers it, from its own address.
    fn respond(
        &mut self,
        fwd: &(SocketAddr, String),
        status: &str,
        to_tag: &str,
        record_route: bool,
    ) -> (Result<(), ProxyDrop>, Vec<(SocketAddr, String)>) {
        let from = fwd.0.to_string();
        let msg = upstream_response(&fwd.1, status, to_tag, record_route);
        self.send(&from, &msg)
    }

    /// Makes `from` prove its address: a 404 from the edge, and the ACK
    /// that echoes the edge's To tag.
    fn verify(&mut self, from: &str) {
        let call = format!("verify-{from}");
        let (_, sent) = self.send(from, &invite("3312345", &call, "z9hG4bKv"));
        let tag = sip::parse(sent[0].1.as_bytes())
            .unwrap()
            .to_tag()
            .unwrap()
            .to_vec();
        let ack = request(
            "ACK",
            "sip:3312345@198.18.0.1:5060",
            "",
            &call,
            "z9hG4bKv",
            Some(std::str::from_utf8(&tag).unwrap()),
        )
        .replace("CSeq: 2 ACK", "CSeq: 1 ACK");
        assert_eq!(self.send(from, &ack).0, Err(ProxyDrop::AckAbsorbed));
        let events: Vec<_> = std::iter::from_fn(|| self.proxy.next_event()).collect();
        assert!(
            events.iter().any(
                |e| matches!(e, ProxyEvent::Verified { source, .. } if *source == addr(from).ip())
            ),
            "{from} did not become verified: {events:?}"
        );
    }
}

fn header<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

#[test]
fn options_to_the_edge_is_answered_200_locally() {
    let mut lab = Lab::new();
    let (r, sent) = lab.send(
        CALLER,
        &request(
            "OPTIONS",
            "sip:198.18.0.1:5060",
            "",
            "opt-1",
            "z9hG4bKo1",
            None,
        ),
    );
    assert_eq!(r, Ok(()));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, addr(CALLER));
    assert!(sent[0].1.starts_with("SIP/2.0 200 OK\r\n"), "{}", sent[0].1);
    assert_eq!(lab.proxy.snapshot().answered.get(&200), Some(&1));
}

#[test]
fn routed_invite_is_forwarded_with_our_via_on_top_and_max_forwards_decremented() {
    let mut lab = Lab::new();
    let (r, sent) = lab.send(CALLER, &invite("442071234567", "call-1", "z9hG4bKc1"));
    assert_eq!(r, Ok(()));
    assert_eq!(sent.len(), 1);
    let (to, fwd) = &sent[0];
    assert!(*to == addr(UP_A) || *to == addr(UP_B));
    let msg = sip::parse(fwd.as_bytes()).unwrap();
    let top = msg.top_via();
    assert_eq!(top.response_target(), Some(addr(EDGE)));
    assert!(top.branch().unwrap().starts_with(b"z9hG4bKdce"));
    assert_eq!(msg.max_forwards(), Some(69));
    // The caller's Via is second, with received and rport filled in.
    let second = msg.second_via().unwrap();
    assert_eq!(second.unwrap().response_target(), Some(addr(CALLER)));
    assert!(header(fwd, "Via")[1].contains("rport=5060"), "{fwd}");
    // Record-Route carries the dialog cookie.
    assert!(
        header(fwd, "Record-Route")[0].starts_with("<sip:198.18.0.1:5060;lr;dce="),
        "{fwd}"
    );
    let s = lab.proxy.snapshot();
    assert_eq!(s.forwarded_requests, 1);
    assert_eq!(s.invites_forwarded, 1);
    assert_eq!(s.hits.get("uk"), Some(&1));
}

#[test]
fn retransmission_cancel_and_ack_follow_the_invite_with_its_branch() {
    let mut lab = Lab::new();
    let inv = invite("442071234567", "call-2", "z9hG4bKc2");
    let (_, first) = lab.send(CALLER, &inv);
    let (_, again) = lab.send(CALLER, &inv);
    let cancel = inv
        .replacen("INVITE sip", "CANCEL sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let (_, cancelled) = lab.send(CALLER, &cancel);
    let branch = |m: &str| {
        sip::parse(m.as_bytes())
            .unwrap()
            .top_via()
            .branch()
            .unwrap()
            .to_vec()
    };
    assert_eq!(first[0].0, again[0].0);
    assert_eq!(
        first[0].0, cancelled[0].0,
        "CANCEL goes to the INVITE's target"
    );
    assert_eq!(branch(&first[0].1), branch(&again[0].1));
    assert_eq!(
        branch(&first[0].1),
        branch(&cancelled[0].1),
        "CANCEL carries the INVITE's branch"
    );
    // The retransmission is not a new call.
    assert_eq!(lab.proxy.snapshot().invites_forwarded, 1);
}

#[test]
fn in_dialog_requests_of_a_call_reach_the_same_target() {
    let mut lab = Lab::new();
    let (_, inv) = lab.send(CALLER, &invite("442071234567", "call-3", "z9hG4bKc3"));
    let bye = request(
        "BYE",
        "sip:442071234567@198.18.0.1:5060",
        "",
        "call-3",
        "z9hG4bKb3",
        Some("uas1"),
    );
    let (r, sent) = lab.send(CALLER, &bye);
    assert_eq!(r, Ok(()));
    assert_eq!(sent[0].0, inv[0].0);
}

#[test]
fn response_pops_our_via_and_goes_to_the_callers_received_and_rport() {
    let mut lab = Lab::new();
    let (_, fwd) = lab.send(
        "198.18.0.10:40000",
        &invite("442071234567", "call-4", "z9hG4bKc4"),
    );
    let (r, sent) = lab.respond(&fwd[0], "200 OK", "uas4", true);
    assert_eq!(r, Ok(()));
    assert_eq!(sent.len(), 1);
    // rport said 40000: the answer goes to the port the INVITE came from.
    assert_eq!(sent[0].0, addr("198.18.0.10:40000"));
    let back = sip::parse(sent[0].1.as_bytes()).unwrap();
    assert_eq!(back.vias().count(), 1);
    assert_eq!(back.top_via().branch(), Some(&b"z9hG4bKc4"[..]));
    let s = lab.proxy.snapshot();
    assert_eq!(s.forwarded_responses, 1);
    assert_eq!(s.calls_answered, 1);
    assert_eq!(s.setup_us.len(), 1);
}

#[test]
fn a_retransmitted_answer_and_a_late_invite_copy_count_no_second_call() {
    let mut lab = Lab::new();
    let inv = invite("442071234567", "call-rt", "z9hG4bKrt");
    let (_, fwd) = lab.send("198.18.0.10:40000", &inv);
    // The server resends its 200 until the ACK comes: every copy is
    // relayed, the call is counted once.
    for _ in 0..3 {
        let (r, sent) = lab.respond(&fwd[0], "200 OK", "uasrt", true);
        assert_eq!(r, Ok(()));
        assert_eq!(sent.len(), 1);
    }
    // A copy of the INVITE arriving after the answer is forwarded (the
    // server answers it again) but is no new call.
    let (r, sent) = lab.send("198.18.0.10:40000", &inv);
    assert_eq!(r, Ok(()));
    assert_eq!(sent.len(), 1);
    let s = lab.proxy.snapshot();
    assert_eq!(s.forwarded_responses, 3);
    assert_eq!(s.invites_forwarded, 1);
    assert_eq!(s.calls_answered, 1);
    assert_eq!(s.setup_us.len(), 1);
}

#[test]
fn response_not_through_us_is_dropped_and_counted() {
    let mut lab = Lab::new();
    let stray = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 198.18.0.10:5060;branch=z9hG4bKx\r\n\
                 From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: s1\r\nCSeq: 1 INVITE\r\n\r\n";
    let (r, sent) = lab.send(UP_A, stray);
    assert_eq!(r, Err(ProxyDrop::NotOurVia));
    assert!(sent.is_empty());
    assert_eq!(lab.proxy.snapshot().dropped.get("not_our_via"), Some(&1));
}

#[test]
fn max_forwards_zero_is_answered_483() {
    let mut lab = Lab::new();
    let inv = invite("442071234567", "call-5", "z9hG4bKc5")
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    let (_, sent) = lab.send(CALLER, &inv);
    assert!(sent[0].1.starts_with("SIP/2.0 483 "), "{}", sent[0].1);
}

#[test]
fn a_request_that_comes_back_to_us_is_answered_482() {
    let mut lab = Lab::new();
    let (_, fwd) = lab.send(CALLER, &invite("442071234567", "call-6", "z9hG4bKc6"));
    // The upstream sends it straight back, adding its own Via on top.
    let looped = fwd[0].1.replacen(
        "Via: ",
        "Via: SIP/2.0/UDP 198.18.0.100:5060;branch=z9hG4bKup6\r\nVia: ",
        1,
    );
    let (_, sent) = lab.send(UP_A, &looped);
    assert!(sent[0].1.starts_with("SIP/2.0 482 "), "{}", sent[0].1);
}

#[test]
fn no_route_is_answered_404_and_its_ack_absorbed() {
    let mut lab = Lab::new();
    let inv = invite("3312345", "call-7", "z9hG4bKc7");
    let (_, sent) = lab.send(CALLER, &inv);
    assert!(
        sent[0].1.starts_with("SIP/2.0 404 Not Found\r\n"),
        "{}",
        sent[0].1
    );
    let tag = sip::parse(sent[0].1.as_bytes())
        .unwrap()
        .to_tag()
        .unwrap()
        .to_vec();
    let ack = request(
        "ACK",
        "sip:3312345@198.18.0.1:5060",
        "",
        "call-7",
        "z9hG4bKc7",
        Some(std::str::from_utf8(&tag).unwrap()),
    )
    .replace("CSeq: 2 ACK", "CSeq: 1 ACK");
    let (r, sent) = lab.send(CALLER, &ack);
    assert_eq!(r, Err(ProxyDrop::AckAbsorbed));
    assert!(sent.is_empty());
    let s = lab.proxy.snapshot();
    assert_eq!(s.misses, 1);
    assert_eq!(s.calls_failed, 1);
}

#[test]
fn reject_and_redirect_groups_answer_with_their_codes() {
    let mut lab = Lab::new();
    let (_, rejected) = lab.send(CALLER, &invite("44901234", "call-8", "z9hG4bKc8"));
    assert!(
        rejected[0].1.starts_with("SIP/2.0 403 "),
        "{}",
        rejected[0].1
    );
    let (_, moved) = lab.send(CALLER, &invite("44801234", "call-9", "z9hG4bKc9"));
    assert!(moved[0].1.starts_with("SIP/2.0 302 "), "{}", moved[0].1);
    assert_eq!(
        header(&moved[0].1, "Contact"),
        vec!["<sip:44801234@198.18.0.101:5060>"]
    );
}

#[test]
fn over_the_cps_cap_calls_get_503_with_retry_after() {
    let mut lab = Lab::with(table(Some(2)), |_| {});
    let verdicts: Vec<String> = (0..4)
        .map(|i| {
            lab.send(
                CALLER,
                &invite(
                    "442071234567",
                    &format!("cap-{i}"),
                    &format!("z9hG4bKcap{i}"),
                ),
            )
            .1
        })
        .map(|sent| sent[0].1.lines().next().unwrap().to_string())
        .collect();
    assert!(verdicts[0].starts_with("INVITE"));
    assert!(verdicts[1].starts_with("INVITE"));
    assert_eq!(verdicts[2], "SIP/2.0 503 Service Unavailable");
    assert_eq!(lab.proxy.snapshot().cap_rejections.get("uk"), Some(&2));
}

#[test]
fn a_spoofed_options_flood_gets_almost_no_answers() {
    let mut lab = Lab::new();
    let mut answered = 0;
    for i in 0..20_000u32 {
        let src = format!("198.19.{}.{}:5060", (i >> 8) & 0xff, i & 0xff);
        let (_, sent) = lab.send(
            &src,
            &request(
                "OPTIONS",
                "sip:198.18.0.1",
                "",
                &format!("f{i}"),
                "z9hG4bKf",
                None,
            ),
        );
        answered += sent.len();
    }
    // 20,000 spoofed requests over 20 simulated seconds: the shared budget
    // for unverified destinations (200/s, burst 40) bounds what goes out.
    assert!(
        answered <= 40 + 200 * 20,
        "{answered} answers to spoofed sources"
    );
    let s = lab.proxy.snapshot();
    assert_eq!(
        s.dropped
            .get("answer_limited_unverified")
            .copied()
            .unwrap_or(0) as usize
            + answered,
        20_000
    );
}

#[test]
fn a_caller_that_echoes_its_dialog_cookie_becomes_verified() {
    let mut lab = Lab::new();
    let (_, fwd) = lab.send(CALLER, &invite("442071234567", "call-10", "z9hG4bKc10"));
    let rr = header(&fwd[0].1, "Record-Route")[0].to_string();
    let _ = lab.respond(&fwd[0], "200 OK", "uas10", true);
    // The ACK follows the route set: our Record-Route as its Route, the
    // upstream's Contact as its Request-URI.
    let ack = request(
        "ACK",
        "sip:uas@198.18.0.100:5060",
        &format!("Route: {rr}\r\n"),
        "call-10",
        "z9hG4bKa10",
        Some("uas10"),
    )
    .replace("CSeq: 2 ACK", "CSeq: 1 ACK");
    let (r, sent) = lab.send(CALLER, &ack);
    assert_eq!(r, Ok(()));
    // The ACK goes to the target the INVITE went to, which the cookie names.
    assert_eq!(sent[0].0, fwd[0].0);
    // Our Route is removed before the ACK goes on.
    assert!(header(&sent[0].1, "Route").is_empty(), "{}", sent[0].1);
    assert!(matches!(
        lab.proxy.next_event(),
        Some(ProxyEvent::Verified { source, .. }) if source == addr(CALLER).ip()
    ));
}

#[test]
fn a_cookie_made_by_one_edge_of_a_fleet_is_recognised_by_another() {
    // Two edges with the shared secret, started at different times: their
    // dataplane clocks differ by hours, their wall clocks agree. The ACK of
    // a dialog recorded by edge A reaches edge B (ECMP moved the caller).
    const H: u64 = 3_600_000 * MS;
    let wall = 1_800_000_000 * 1_000 * MS;
    let mut a = Lab::with(table(None), |c| c.cookie_clock_offset_ns = wall - 10 * H);
    a.now = 10 * H;
    let (_, fwd) = a.send(CALLER, &invite("442071234567", "call-f1", "z9hG4bKf1"));
    let rr = header(&fwd[0].1, "Record-Route")[0].to_string();
    // B started five hours after A: its clock reads five hours less.
    let mut b = Lab::with(table(None), |c| c.cookie_clock_offset_ns = wall - 5 * H);
    b.now = a.now - 5 * H;
    let ack = request(
        "ACK",
        "sip:uas@198.18.0.100:5060",
        &format!("Route: {rr}\r\n"),
        "call-f1",
        "z9hG4bKaf1",
        Some("uasf1"),
    )
    .replace("CSeq: 2 ACK", "CSeq: 1 ACK");
    let (r, sent) = b.send(CALLER, &ack);
    assert_eq!(r, Ok(()));
    assert_eq!(sent[0].0, fwd[0].0, "the ACK follows the INVITE's target");
    assert!(matches!(
        b.proxy.next_event(),
        Some(ProxyEvent::Verified { source, .. }) if source == addr(CALLER).ip()
    ));
    // Counting epochs from each edge's own start, B would have refused it.
    let mut c = Lab::new();
    c.now = b.now;
    let (r, _) = c.send(CALLER, &ack);
    assert!(c.proxy.next_event().is_none(), "{r:?}");
}

#[test]
fn in_dialog_request_to_a_foreign_host_without_cookie_is_not_relayed() {
    let mut lab = Lab::new();
    let bye = request(
        "BYE",
        "sip:victim@203.0.113.9:5060",
        "",
        "relay-1",
        "z9hG4bKr1",
        Some("x"),
    );
    let (r, sent) = lab.send("198.19.1.1:5060", &bye);
    assert_eq!(r, Err(ProxyDrop::RelayDenied));
    assert!(sent.is_empty());
}

#[test]
fn upstream_bye_toward_the_caller_is_forwarded() {
    let mut lab = Lab::new();
    let bye = request(
        "BYE",
        "sip:caller@198.18.0.10:5060",
        "",
        "call-11",
        "z9hG4bKb11",
        Some("ft1"),
    );
    let (r, sent) = lab.send(UP_A, &bye);
    assert_eq!(r, Ok(()));
    assert_eq!(sent[0].0, addr(CALLER));
}

#[test]
fn an_extension_sweep_in_a_verified_sources_name_bans_nobody_by_default() {
    // Its source may be forged: only the packets are shed.
    let mut lab = Lab::new();
    lab.verify("198.18.0.66:5060");
    for ext in 100..160 {
        let _ = lab.send(
            "198.18.0.66:5060",
            &invite(&format!("{ext}"), &format!("sweep-{ext}"), "z9hG4bKs"),
        );
    }
    let events: Vec<_> = std::iter::from_fn(|| lab.proxy.next_event()).collect();
    assert!(
        !events.iter().any(|e| matches!(e, ProxyEvent::Abuse { .. })),
        "{events:?}"
    );
}

#[test]
fn an_extension_sweep_from_a_verified_source_is_reported_when_udp_evidence_is_accepted() {
    let mut lab = Lab::with(table(None), |c| c.abuse.ban_verified_udp = true);
    lab.verify("198.18.0.66:5060");
    for ext in 100..160 {
        let _ = lab.send(
            "198.18.0.66:5060",
            &invite(&format!("{ext}"), &format!("sweep-{ext}"), "z9hG4bKs"),
        );
    }
    let events: Vec<_> = std::iter::from_fn(|| lab.proxy.next_event()).collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        matches!(events[0], ProxyEvent::Abuse { source, .. } if source == addr("198.18.0.66:1").ip())
    );
}

#[test]
fn allowlisted_sources_are_never_reported() {
    let mut lab = Lab::with(table(None), |c| {
        c.allowlist.push("198.18.0.0/24".parse::<Cidr>().unwrap())
    });
    for ext in 100..200 {
        let _ = lab.send(
            "198.18.0.66:5060",
            &invite(&format!("{ext}"), &format!("sweep-{ext}"), "z9hG4bKs"),
        );
    }
    assert_eq!(lab.proxy.next_event(), None);
}

#[test]
fn garbage_is_counted_by_parse_error_kind() {
    let mut lab = Lab::new();
    let (r, sent) = lab.send(CALLER, "HELLO\r\n\r\n");
    assert_eq!(r, Err(ProxyDrop::Malformed));
    assert!(sent.is_empty());
    let s = lab.proxy.snapshot();
    assert_eq!(s.parse_errors.values().sum::<u64>(), 1);
    assert_eq!(s.dropped.get("malformed"), Some(&1));
}

/// Reloads `lab`'s proxy with a table that sends prefix 33 to one group,
/// `name`, forwarding to UP_B without a cap, and checks the proxy swapped.
fn route_33_to_up_b(lab: &mut Lab, name: &str) {
    let mut fwd = RouteGroup::new(name, Action::Forward).with_target(Target::new(addr(UP_B), 1, 1));
    fwd.cps_cap = None;
    let t = RouteTable::build(
        vec![fwd],
        &[(PrefixKey::from_digits(b"33").unwrap(), GroupId(0))],
        HealthSettings::default(),
    )
    .unwrap();
    lab.control.install(t);
    lab.control.pump();
    assert!(lab.proxy.poll_routes());
}

#[test]
fn a_route_reload_takes_effect_between_batches() {
    let mut lab = Lab::new();
    route_33_to_up_b(&mut lab, "uk");
    let (_, sent) = lab.send(CALLER, &invite("3312345", "reload-1", "z9hG4bKr"));
    assert_eq!(sent[0].0, addr(UP_B));
    assert_eq!(lab.proxy.snapshot().table_version, 2);
    let _ = Method::Invite;
}

#[test]
fn a_banned_source_is_dropped_until_the_ban_lapses() {
    use crate::handler::PacketHandler;
    let mut lab = Lab::new();
    let until = Timestamp::from_nanos(lab.now + 10_000 * MS);
    lab.proxy.on_control(
        Timestamp::from_nanos(lab.now),
        ProxyControl::Ban {
            network: Cidr::host(addr(CALLER).ip()),
            until,
        },
    );
    let (r, sent) = lab.send(
        CALLER,
        &request("OPTIONS", "sip:198.18.0.1", "", "b1", "z9hG4bKb1", None),
    );
    assert_eq!(r, Err(ProxyDrop::Banned));
    assert!(sent.is_empty());
    lab.now += 20_000 * MS;
    let (r, _) = lab.send(
        CALLER,
        &request("OPTIONS", "sip:198.18.0.1", "", "b2", "z9hG4bKb2", None),
    );
    assert_eq!(r, Ok(()));
    // A network ban covers every source in it; its unban lifts it.
    let net: Cidr = "198.18.0.0/24".parse().unwrap();
    let now = Timestamp::from_nanos(lab.now);
    let until = Timestamp::from_nanos(lab.now + 10_000 * MS);
    lab.proxy.on_control(
        now,
        ProxyControl::Ban {
            network: net,
            until,
        },
    );
    let (r, _) = lab.send(
        CALLER,
        &request("OPTIONS", "sip:198.18.0.1", "", "b3", "z9hG4bKb3", None),
    );
    assert_eq!(r, Err(ProxyDrop::Banned));
    lab.proxy
        .on_control(now, ProxyControl::Unban { network: net });
    let (r, _) = lab.send(
        CALLER,
        &request("OPTIONS", "sip:198.18.0.1", "", "b4", "z9hG4bKb4", None),
    );
    assert_eq!(r, Ok(()));
}

#[test]
fn a_spoofed_invite_flood_reaches_the_upstreams_only_within_the_budget() {
    let mut lab = Lab::new();
    let mut forwarded = 0;
    for i in 0..5_000u32 {
        let src = format!("198.19.{}.{}:5060", (i >> 8) & 0xff, i & 0xff);
        let (_, sent) = lab.send(
            &src,
            &invite(
                "442071234567",
                &format!("flood-{i}"),
                &format!("z9hG4bKfl{i}"),
            ),
        );
        forwarded += sent
            .iter()
            .filter(|(to, _)| *to == addr(UP_A) || *to == addr(UP_B))
            .count();
    }
    // 5,000 INVITEs over 5 simulated seconds; 200 per second (burst 10).
    assert!(
        forwarded <= 10 + 200 * 5,
        "{forwarded} flood INVITEs forwarded"
    );
    let s = lab.proxy.snapshot();
    assert_eq!(
        s.dropped.get("unverified_request").copied().unwrap_or(0) as usize + forwarded,
        5_000
    );
    // A trusted caller is not held back by the flood.
    let mut lab2 = Lab::with(table(None), |c| {
        c.allowlist.push("198.18.0.0/24".parse().unwrap())
    });
    for i in 0..2_000u32 {
        let src = format!("198.19.{}.{}:5060", (i >> 8) & 0xff, i & 0xff);
        let _ = lab2.send(
            &src,
            &invite("442071234567", &format!("f-{i}"), &format!("z9hG4bKf{i}")),
        );
    }
    let (r, sent) = lab2.send(CALLER, &invite("442071234567", "legit-1", "z9hG4bKlegit"));
    assert_eq!(r, Ok(()));
    assert!(sent[0].1.starts_with("INVITE"));
}

impl Lab {
    /// Feeds datagrams as one receive batch: `prepare` over all of them,
    /// then each in turn, as a worker does.
    fn send_batch(&mut self, from: &str, msgs: &[String]) -> Vec<Sent> {
        let now = Timestamp::from_nanos(self.now + MS);
        PacketHandler::prepare(&mut self.proxy, now, &mut msgs.iter().map(|m| m.as_bytes()));
        msgs.iter().map(|m| self.send(from, m)).collect()
    }
}

/// One datagram's verdict and what it sent.
type Sent = (Result<(), ProxyDrop>, Vec<(SocketAddr, String)>);

fn mixed_batch() -> Vec<String> {
    vec![
        invite("4420123", "batch-1", "z9hG4bKb1"),
        invite("4490123", "batch-2", "z9hG4bKb2"),
        invite("4480123", "batch-3", "z9hG4bKb3"),
        invite("3312345", "batch-4", "z9hG4bKb4"),
        request(
            "BYE",
            "sip:4420123@198.18.0.1",
            "",
            "batch-1",
            "z9hG4bKb5",
            Some("tt"),
        ),
        request(
            "REGISTER",
            "sip:198.18.0.1",
            "Contact: <sip:dest@198.18.0.10>\r\n",
            "batch-6",
            "z9hG4bKb6",
            None,
        ),
        "SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n".to_string(),
        "garbage that is not SIP".to_string(),
        request(
            "INVITE",
            "sip:+44-20-555@198.18.0.1:5060;user=phone",
            "",
            "batch-9",
            "z9hG4bKb9",
            None,
        ),
        invite("4420124", "batch-10", "z9hG4bKb10"),
    ]
}

#[test]
fn a_prepared_batch_routes_exactly_as_one_datagram_at_a_time() {
    let trusted = |c: &mut ProxyConfig| c.allowlist.push("198.18.0.0/24".parse().unwrap());
    let mut batched = Lab::with(table(None), trusted);
    let mut single = Lab::with(table(None), trusted);
    let msgs = mixed_batch();
    let a = batched.send_batch(CALLER, &msgs);
    let b: Vec<_> = msgs.iter().map(|m| single.send(CALLER, m)).collect();
    assert_eq!(a, b);
    let (sa, sb) = (batched.proxy.snapshot(), single.proxy.snapshot());
    assert_eq!(sa.lookups, sb.lookups);
    assert_eq!(sa.misses, sb.misses);
    assert_eq!(sa.hits, sb.hits);
    assert_eq!(sb.batched_lookups, 0);
    // Every request routed by its Request-URI (not the REGISTER, which
    // routes by To) took the prepared answer.
    assert_eq!(sa.batched_lookups, 7);
    assert_eq!(sa.lookups, 8);
    // And the decisions are the table's: forward, reject, redirect, no route.
    assert!([addr(UP_A), addr(UP_B)].contains(&a[0].1[0].0));
    assert!(a[1].1[0].1.starts_with("SIP/2.0 403 "), "{:?}", a[1]);
    assert!(a[2].1[0].1.starts_with("SIP/2.0 302 "), "{:?}", a[2]);
    assert!(a[3].1[0].1.starts_with("SIP/2.0 404 "), "{:?}", a[3]);
    assert!(
        a[8].1
            .first()
            .is_some_and(|s| [addr(UP_A), addr(UP_B)].contains(&s.0)),
        "{:?}",
        a[8]
    );
}

#[test]
fn routes_prepared_before_a_reload_are_not_used_after_it() {
    let mut lab = Lab::new();
    let msgs = [invite("3312345", "prep-1", "z9hG4bKp1")];
    let now = Timestamp::from_nanos(lab.now + MS);
    PacketHandler::prepare(&mut lab.proxy, now, &mut msgs.iter().map(|m| m.as_bytes()));
    // The table changes between the prepared lookups and the handling.
    route_33_to_up_b(&mut lab, "fr");
    let (r, sent) = lab.send(CALLER, &msgs[0]);
    assert_eq!(r, Ok(()));
    assert_eq!(sent[0].0, addr(UP_B), "routed by the new table");
    let s = lab.proxy.snapshot();
    assert_eq!(s.batched_lookups, 0);
    assert_eq!(s.misses, 0);
}

// ----------------------------------------------------------------------
// Adversarial: each test forges what an attacker controls and checks that
// nobody else is harmed (docs/threat-model.md).

const VICTIM: &str = "203.0.113.9:5060";
const ATTACKER: &str = "198.18.0.66:5060";

/// A response whose top Via names the edge with a branch of the edge's
/// shape (any hex), and whose second Via names `victim`.
fn forged_response(status: &str, branch: &str, victim: &str, call_id: &str) -> String {
    let (host, port) = victim.split_once(':').unwrap();
    format!(
        "SIP/2.0 {status}\r\n\
         Via: SIP/2.0/UDP 198.18.0.1:5060;branch={branch}\r\n\
         Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bKvic;received={host};rport={port}\r\n\
         From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
}

fn shaped_branch(fill: char) -> String {
    let hex: String = std::iter::repeat_n(fill, cookie::BRANCH_LEN - 10).collect();
    format!("z9hG4bKdce{hex}")
}

#[test]
fn a_forged_response_with_a_branch_of_our_shape_reaches_no_one() {
    let mut lab = Lab::new();
    for (i, status) in ["200 OK", "404 Not Found", "401 Unauthorized", "180 Ringing"]
        .iter()
        .enumerate()
    {
        let forged = forged_response(status, &shaped_branch('a'), VICTIM, &format!("f{i}"));
        for from in [ATTACKER, UP_A, VICTIM] {
            let (r, sent) = lab.send(from, &forged);
            assert_eq!(
                r,
                Err(ProxyDrop::UnexpectedResponse),
                "{status} from {from}"
            );
            assert!(sent.is_empty(), "relayed {sent:?}");
        }
    }
    assert_eq!(
        lab.proxy.snapshot().dropped.get("unexpected_response"),
        Some(&12)
    );
}

#[test]
fn a_true_branch_echoed_by_another_host_is_not_relayed() {
    let mut lab = Lab::new();
    let (_, fwd) = lab.send(CALLER, &invite("442071234567", "echo-1", "z9hG4bKe1"));
    let ok = upstream_response(&fwd[0].1, "200 OK", "uas", true);
    // The other upstream, an attacker, the caller itself: none sent the
    // INVITE's answer, so none is relayed.
    let other = if fwd[0].0 == addr(UP_A) { UP_B } else { UP_A };
    for from in [other, ATTACKER, CALLER] {
        let (r, sent) = lab.send(from, &ok);
        assert_eq!(r, Err(ProxyDrop::UnexpectedResponse), "from {from}");
        assert!(sent.is_empty());
    }
    // The same answer rewritten for another transaction fails too.
    let moved = ok.replace("Call-ID: echo-1", "Call-ID: echo-2");
    let (r, _) = lab.send(&fwd[0].0.to_string(), &moved);
    assert_eq!(r, Err(ProxyDrop::UnexpectedResponse));
    // From the hop it went to, it is relayed.
    let (r, sent) = lab.send(&fwd[0].0.to_string(), &ok);
    assert_eq!(r, Ok(()));
    assert_eq!(sent[0].0, addr(CALLER));
}

#[test]
fn forged_failures_naming_a_verified_caller_never_get_it_reported() {
    let mut lab = Lab::new();
    lab.verify(CALLER);
    for i in 0..500 {
        for status in ["404 Not Found", "401 Unauthorized", "403 Forbidden"] {
            let forged = forged_response(status, &shaped_branch('b'), CALLER, &format!("x{i}"));
            let _ = lab.send(ATTACKER, &forged);
        }
    }
    let events: Vec<_> = std::iter::from_fn(|| lab.proxy.next_event()).collect();
    assert!(
        !events.iter().any(|e| matches!(e, ProxyEvent::Abuse { .. })),
        "{events:?}"
    );
}

/// A caller's real call: the forwarded INVITE, and the Record-Route
/// (with its dialog cookie) from the upstream's 200.
fn one_real_call(lab: &mut Lab, from: &str, call_id: &str) -> ((SocketAddr, String), String) {
    let (_, fwd) = lab.send(from, &invite("442071234567", call_id, "z9hG4bKreal"));
    let rr = header(&fwd[0].1, "Record-Route")[0].to_string();
    let (r, _) = lab.respond(&fwd[0], "200 OK", "uasreal", true);
    assert_eq!(r, Ok(()));
    (fwd[0].clone(), rr)
}

#[test]
fn a_dialog_cookie_is_no_relay_ticket() {
    let mut lab = Lab::new();
    let (inv, rr) = one_real_call(&mut lab, ATTACKER, "relay-call");
    let route = format!("Route: {rr}\r\n");
    let victim_uri = format!("sip:victim@{VICTIM}");
    // In-dialog requests carrying the cookie go to the dialog's target,
    // never to the victim the Request-URI names.
    for method in ["BYE", "INFO", "INVITE", "ACK"] {
        let m = request(
            method,
            &victim_uri,
            &route,
            "relay-call",
            "z9hG4bKr2",
            Some("uasreal"),
        );
        let (r, sent) = lab.send(ATTACKER, &m);
        assert_eq!(r, Ok(()), "{method}");
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, inv.0, "{method} went to {}", sent[0].0);
    }
    // A request that starts something new (no To tag) never takes the
    // cookie path: with the Route and a foreign Request-URI it is no relay.
    let fresh = request(
        "INVITE",
        &victim_uri,
        &route,
        "relay-call",
        "z9hG4bKr3",
        None,
    );
    let (r, sent) = lab.send(ATTACKER, &fresh);
    assert_eq!(r, Err(ProxyDrop::RelayDenied));
    assert!(sent.is_empty());
    // The cookie of one dialog opens no other dialog.
    let other = request(
        "BYE",
        &victim_uri,
        &route,
        "another-call",
        "z9hG4bKr4",
        Some("x"),
    );
    let (r, sent) = lab.send(ATTACKER, &other);
    assert_eq!(r, Err(ProxyDrop::RelayDenied));
    assert!(sent.is_empty());
    // Nor does it work from another address.
    let (r, sent) = lab.send(
        "198.18.0.67:5060",
        &request(
            "BYE",
            &victim_uri,
            &route,
            "relay-call",
            "z9hG4bKr5",
            Some("uasreal"),
        ),
    );
    assert_eq!(r, Err(ProxyDrop::RelayDenied));
    assert!(sent.is_empty());
}

#[test]
fn a_cookie_with_a_target_rewritten_to_a_victim_is_refused() {
    let mut lab = Lab::new();
    let (_, rr) = one_real_call(&mut lab, ATTACKER, "retarget");
    let mut target = [0u8; cookie::TARGET_MAX_LEN];
    let n = cookie::encode_target(addr(VICTIM), &mut target);
    let at = rr.find(";dct=").unwrap() + 5;
    let end = rr[at..].find('>').unwrap() + at;
    let forged = format!(
        "{}{}{}",
        &rr[..at],
        std::str::from_utf8(&target[..n]).unwrap(),
        &rr[end..]
    );
    let m = request(
        "BYE",
        &format!("sip:v@{VICTIM}"),
        &format!("Route: {forged}\r\n"),
        "retarget",
        "z9hG4bKrt2",
        Some("uasreal"),
    );
    let (r, sent) = lab.send(ATTACKER, &m);
    assert_eq!(r, Err(ProxyDrop::RelayDenied));
    assert!(sent.is_empty());
}

#[test]
fn spoofed_requests_of_every_method_pay_the_unverified_budget() {
    for (method, uri, to_tag) in [
        ("OPTIONS", "sip:442071234567@198.18.0.1", None),
        ("MESSAGE", "sip:442071234567@198.18.0.1", None),
        ("BYE", "sip:442071234567@198.18.0.1", Some("t")),
        ("INVITE", "sip:442071234567@198.18.0.1", Some("t")),
        ("REGISTER", "sip:198.18.0.1", None),
    ] {
        let mut lab = Lab::new();
        let mut forwarded = 0;
        for i in 0..2_000u32 {
            let src = format!("198.19.{}.{}:5060", (i >> 8) & 0xff, i & 0xff);
            let extra = if method == "REGISTER" {
                "Contact: <sip:x@198.19.0.1>\r\n"
            } else {
                ""
            };
            let (_, sent) = lab.send(
                &src,
                &request(method, uri, extra, &format!("m{i}"), "z9hG4bKm", to_tag).replace(
                    "To: <sip:dest@198.18.0.1>",
                    "To: <sip:442071234567@198.18.0.1>",
                ),
            );
            forwarded += sent
                .iter()
                .filter(|(to, _)| *to == addr(UP_A) || *to == addr(UP_B))
                .count();
        }
        // Two simulated seconds: the burst plus two seconds of rate.
        assert!(forwarded <= 10 + 200 * 2, "{method}: {forwarded} forwarded");
        assert!(forwarded > 0, "{method}: nothing forwarded at all");
    }
}

/// Feeds a fast spoofed flood of `method` requests and answers every
/// forwarded one from its upstream (100, 180 and a 200 sent three times);
/// returns how many datagrams went toward the spoofed range.
fn reflected_by_a_fast_flood(method: &str, to_tag: Option<&str>) -> usize {
    let mut lab = Lab::new();
    // 50,000 packets per second.
    lab.step = 20_000;
    let mut toward_spoofed = 0;
    for i in 0..20_000u32 {
        let src = format!("198.19.{}.{}:5060", (i >> 8) & 0xff, i & 0xff);
        let m = request(
            method,
            "sip:442071234567@198.18.0.1",
            "",
            &format!("fl{i}"),
            &format!("z9hG4bKfl{i}"),
            to_tag,
        );
        let (_, sent) = lab.send(&src, &m);
        for (to, msg) in sent {
            if to.ip().to_string().starts_with("198.19.") {
                toward_spoofed += 1;
            } else if msg.starts_with(method) {
                for status in ["100 Trying", "180 Ringing", "200 OK", "200 OK", "200 OK"] {
                    let (_, back) = lab.respond(&(to, msg.clone()), status, "up", true);
                    toward_spoofed += back
                        .iter()
                        .filter(|(a, _)| a.ip().to_string().starts_with("198.19."))
                        .count();
                }
            }
        }
    }
    toward_spoofed
}

#[test]
fn a_fast_spoofed_flood_of_any_method_gets_at_most_the_onset_burst_back() {
    for (method, to_tag) in [
        ("INVITE", None),
        ("INVITE", Some("t")),
        ("OPTIONS", None),
        ("MESSAGE", None),
        ("BYE", Some("t")),
    ] {
        let n = reflected_by_a_fast_flood(method, to_tag);
        assert!(
            n <= AnswerConfig::default().unverified_total_burst as usize,
            "{method} (to tag {to_tag:?}): {n} datagrams toward spoofed sources"
        );
    }
}

#[test]
fn a_verified_caller_keeps_service_while_a_spoofed_flood_raises_the_shields() {
    let mut lab = Lab::new();
    lab.verify(CALLER);
    lab.step = 20_000;
    for i in 0..5_000u32 {
        let src = format!("198.19.{}.{}:5060", (i >> 8) & 0xff, i & 0xff);
        let _ = lab.send(
            &src,
            &request(
                "OPTIONS",
                "sip:198.18.0.1",
                "",
                &format!("s{i}"),
                "z9hG4bKs",
                None,
            ),
        );
    }
    assert!(lab.proxy.answers.shields_up(lab.now));
    let (r, sent) = lab.send(CALLER, &invite("442071234567", "during", "z9hG4bKdur"));
    assert_eq!(r, Ok(()));
    let (r, back) = lab.respond(&sent[0], "200 OK", "uas", true);
    assert_eq!(r, Ok(()));
    assert_eq!(back[0].0, addr(CALLER));
}

#[test]
fn while_the_shields_are_up_a_spoofed_request_costs_no_route_lookup() {
    let mut lab = Lab::new();
    lab.verify(CALLER);
    raise_the_shields(&mut lab);
    let before = lab.proxy.snapshot().lookups;
    // A batch of spoofed INVITEs: refused before any lookup, batched or not.
    let flood: Vec<String> = (0..64)
        .map(|i| invite("442071234567", &format!("sp{i}"), "z9hG4bKsp"))
        .collect();
    for (r, sent) in lab.send_batch("198.19.200.1:5060", &flood) {
        assert_eq!(r, Err(ProxyDrop::UnverifiedRequest));
        assert!(sent.is_empty());
    }
    let s = lab.proxy.snapshot();
    assert_eq!(s.lookups, before, "spoofed requests made route lookups");
    assert_eq!(s.batched_lookups, 0);
    // The verified caller is still routed, by a lookup of its own.
    let (r, sent) = lab.send(CALLER, &invite("442071234567", "ok", "z9hG4bKok"));
    assert_eq!(r, Ok(()));
    assert!(sent[0].1.starts_with("INVITE"));
    assert_eq!(lab.proxy.snapshot().lookups, before + 1);
}

#[test]
fn a_final_answer_arriving_on_another_worker_is_counted_and_timed_once_however_often_it_comes() {
    // Two workers of one edge (one secret, one clock): the INVITE leaves
    // from the first, its 200 and the 200's retransmissions come in on the
    // second, 7 ms later.
    let mut first = Lab::new();
    let mut second = Lab::new();
    let (r, sent) = first.send(CALLER, &invite("442071234567", "xq", "z9hG4bKxq"));
    assert_eq!(r, Ok(()));
    second.now = first.now + 7 * MS;
    for _ in 0..3 {
        let (r, back) = second.respond(&sent[0], "200 OK", "uas", true);
        assert_eq!(r, Ok(()));
        assert_eq!(back.len(), 1, "relayed to the caller every time");
    }
    let (r, _) = second.respond(&sent[0], "486 Busy Here", "uas", true);
    assert_eq!(r, Ok(()));
    let s = second.proxy.snapshot();
    assert_eq!((s.calls_answered, s.calls_failed), (1, 0));
    assert_eq!(
        s.setup_us.len(),
        1,
        "timed once, from the send time in the Via"
    );
    // 7 ms, and the lab's step of 1 ms before each message it hands over.
    assert_eq!(s.setup_us.value_at_quantile(0.5) / 1000, 8, "milliseconds");
    let s = first.proxy.snapshot();
    assert_eq!((s.invites_forwarded, s.calls_answered), (1, 0));
}

#[test]
fn a_send_time_from_the_future_the_distant_past_or_garbage_is_counted_not_timed() {
    // The upstream (or anyone on its path) can rewrite the Via parameter
    // the edge wrote: the call is still counted once, but a time that is
    // no setup time stays out of the histogram. The untouched stamp 7 ms
    // later is the control.
    let cases: [(Option<&str>, u64, usize); 5] = [
        (None, 7 * MS, 1),
        (Some("dcw=ffffffffffffffff"), 7 * MS, 0),
        (Some("dcw=zz"), 7 * MS, 0),
        (Some("dcw"), 7 * MS, 0),
        (None, 70_000 * MS, 0),
    ];
    for (i, (forged, later, timed)) in cases.into_iter().enumerate() {
        let mut first = Lab::new();
        let mut second = Lab::new();
        let call = format!("xf{i}");
        let (r, sent) = first.send(CALLER, &invite("442071234567", &call, "z9hG4bKxf"));
        assert_eq!(r, Ok(()));
        second.now = first.now + later;
        let fwd = &sent[0];
        let via = header(&fwd.1, "Via")[0];
        let at = via.find(";dcw=").expect("the INVITE carries its send time") + 1;
        let stamp = &via[at..at + 20];
        let mut msg = upstream_response(&fwd.1, "200 OK", "uas", true);
        if let Some(f) = forged {
            msg = msg.replace(stamp, f);
        }
        let (r, back) = second.send(&fwd.0.to_string(), &msg);
        assert_eq!(r, Ok(()), "case {i}");
        assert_eq!(back.len(), 1, "relayed all the same (case {i})");
        let s = second.proxy.snapshot();
        assert_eq!(
            (s.calls_answered, s.setup_us.len() as usize),
            (1, timed),
            "case {i}"
        );
    }
}

#[test]
fn an_ack_echoing_our_tag_from_another_address_proves_nothing() {
    let mut lab = Lab::new();
    let (_, sent) = lab.send(ATTACKER, &invite("3312345", "tag-1", "z9hG4bKt1"));
    let tag = sip::parse(sent[0].1.as_bytes())
        .unwrap()
        .to_tag()
        .unwrap()
        .to_vec();
    let ack = request(
        "ACK",
        "sip:3312345@198.18.0.1:5060",
        "",
        "tag-1",
        "z9hG4bKt1",
        Some(std::str::from_utf8(&tag).unwrap()),
    )
    .replace("CSeq: 2 ACK", "CSeq: 1 ACK");
    // The attacker received the 404 at its own address; an ACK carrying
    // its tag in the victim's name proves nothing about the victim.
    let _ = lab.send(VICTIM, &ack);
    let events: Vec<_> = std::iter::from_fn(|| lab.proxy.next_event()).collect();
    assert!(events.is_empty(), "{events:?}");
    assert!(!lab.proxy.verified.is_verified(addr(VICTIM).ip(), lab.now));
}

#[test]
fn an_unverified_extension_sweep_is_never_reported() {
    let mut lab = Lab::new();
    for ext in 100..400 {
        let _ = lab.send(
            ATTACKER,
            &invite(&format!("{ext}"), &format!("sweep-{ext}"), "z9hG4bKs"),
        );
    }
    let events: Vec<_> = std::iter::from_fn(|| lab.proxy.next_event()).collect();
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn a_runtime_allow_reaches_the_proxy_and_a_disallow_takes_it_back() {
    let mut lab = Lab::new();
    let net: Cidr = "198.18.0.66/32".parse().unwrap();
    lab.proxy.on_control(
        Timestamp::from_nanos(lab.now),
        ProxyControl::Allow { network: net },
    );
    // Trusted: answered far beyond an unverified source's allowance, and
    // may send requests anywhere.
    let answered = (0..50)
        .filter(|i| {
            lab.send(
                ATTACKER,
                &request(
                    "OPTIONS",
                    "sip:198.18.0.1",
                    "",
                    &format!("a{i}"),
                    "z9hG4bKa",
                    None,
                ),
            )
            .0
            .is_ok()
        })
        .count();
    assert_eq!(answered, 50);
    lab.proxy.on_control(
        Timestamp::from_nanos(lab.now),
        ProxyControl::Disallow { network: net },
    );
    let (r, _) = lab.send(
        ATTACKER,
        &request(
            "BYE",
            &format!("sip:v@{VICTIM}"),
            "",
            "d1",
            "z9hG4bKd",
            Some("t"),
        ),
    );
    assert_eq!(r, Err(ProxyDrop::RelayDenied));
}

#[test]
fn redirect_targets_are_not_trusted() {
    let fwd = RouteGroup::new("uk", Action::Forward).with_target(Target::new(addr(UP_A), 1, 1));
    let moved = RouteGroup::new("moved", Action::Redirect).with_target(Target::new(
        addr("198.18.0.102:5060"),
        1,
        1,
    ));
    let p = |s: &str| PrefixKey::from_digits(s.as_bytes()).unwrap();
    let t = RouteTable::build(
        vec![fwd, moved],
        &[(p("44"), GroupId(0)), (p("4480"), GroupId(1))],
        HealthSettings::default(),
    )
    .unwrap();
    let mut lab = Lab::with(t, |_| {});
    let (r, sent) = lab.send(
        "198.18.0.102:5060",
        &request(
            "BYE",
            &format!("sip:v@{VICTIM}"),
            "",
            "rd1",
            "z9hG4bKrd",
            Some("t"),
        ),
    );
    assert_eq!(r, Err(ProxyDrop::RelayDenied));
    assert!(sent.is_empty());
    // The forward target is trusted.
    let (r, sent) = lab.send(
        UP_A,
        &request(
            "BYE",
            &format!("sip:v@{VICTIM}"),
            "",
            "rd2",
            "z9hG4bKrd",
            Some("t"),
        ),
    );
    assert_eq!(r, Ok(()));
    assert_eq!(sent[0].0, addr(VICTIM));
}

#[test]
fn a_verification_made_by_another_worker_is_honoured() {
    let mut lab = Lab::new();
    let until = Timestamp::from_nanos(lab.now + 60_000 * MS);
    lab.proxy.on_control(
        Timestamp::from_nanos(lab.now),
        ProxyControl::Verify {
            source: addr(CALLER).ip(),
            until,
        },
    );
    assert!(lab.proxy.verified.is_verified(addr(CALLER).ip(), lab.now));
    assert_eq!(
        lab.proxy.standing(addr(CALLER).ip(), lab.now),
        answers::Standing::Verified
    );
}

// ----------------------------------------------------------------------
// Emergency calls: never blocked, capped or shed; bounded by their own
// budget.

const SOS_A: &str = "198.18.0.110:5060";
const SOS_B: &str = "198.18.0.111:5060";

/// The `uk` group (capped at `cap` calls per second) and an emergency
/// group of two targets, the second its own fallback group.
fn emergency_table(cap: Option<u32>) -> RouteTable {
    let mut uk = RouteGroup::new("uk", Action::Forward).with_target(Target::new(addr(UP_A), 1, 1));
    uk.cps_cap = cap;
    let sos = RouteGroup::new("sos", Action::Forward)
        .with_target(Target::new(addr(SOS_A), 1, 1))
        .with_emergency(route::table::Emergency {
            fallback: Some("sos-backup".into()),
            ..Default::default()
        });
    let backup =
        RouteGroup::new("sos-backup", Action::Forward).with_target(Target::new(addr(SOS_B), 1, 1));
    let p = |s: &str| PrefixKey::from_digits(s.as_bytes()).unwrap();
    RouteTable::build(
        vec![uk, sos, backup],
        &[(p("44"), GroupId(0)), (p(""), GroupId(0))],
        HealthSettings::default(),
    )
    .unwrap()
}

fn emergency_invite(uri: &str, call_id: &str) -> String {
    format!(
        "INVITE {uri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 198.18.0.10:5060;branch=z9hG4bK{call_id};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:caller@198.18.0.10>;tag=ft1\r\n\
         To: <{uri}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:caller@198.18.0.10:5060>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn raise_the_shields(lab: &mut Lab) {
    let step = lab.step;
    lab.step = 20_000;
    for i in 0..3_000u32 {
        let src = format!("198.19.{}.{}:5060", (i >> 8) & 0xff, i & 0xff);
        let _ = lab.send(
            &src,
            &invite("442071234567", &format!("fl{i}"), "z9hG4bKfl"),
        );
    }
    assert!(lab.proxy.answers.shields_up(lab.now));
    lab.step = step;
}

#[test]
fn a_fresh_caller_reaches_emergency_services_while_the_shields_are_up() {
    let mut lab = Lab::with(emergency_table(None), |_| {});
    raise_the_shields(&mut lab);
    let _ = std::iter::from_fn(|| lab.proxy.next_event()).count();
    // An ordinary call from an unverified caller waits for the flood to pass.
    let (r, _) = lab.send(CALLER, &invite("442071234567", "plain", "z9hG4bKp"));
    assert_eq!(r, Err(ProxyDrop::UnverifiedRequest));
    // 911, 112 and urn:service:sos go through, to the emergency group.
    for (uri, call) in [
        ("sip:911@198.18.0.1", "e911"),
        ("tel:112", "e112"),
        ("urn:service:sos.fire", "esos"),
    ] {
        let (r, sent) = lab.send(CALLER, &emergency_invite(uri, call));
        assert_eq!(r, Ok(()), "{uri}");
        assert_eq!(sent[0].0, addr(SOS_A), "{uri}");
        assert!(
            header(&sent[0].1, "Via")[0].contains("branch=z9hG4bKdcs"),
            "{}",
            sent[0].1
        );
        // Its answers reach the caller, shields or not.
        let (r, back) = lab.respond(&sent[0], "180 Ringing", "sos", true);
        assert_eq!(r, Ok(()), "{uri}");
        assert_eq!(back[0].0, addr(CALLER));
        let (r, _) = lab.respond(&sent[0], "200 OK", "sos", true);
        assert_eq!(r, Ok(()), "{uri}");
    }
    let s = lab.proxy.snapshot();
    assert_eq!(s.emergency.attempted, 3);
    assert_eq!(s.emergency.forwarded, 3);
    assert_eq!(s.emergency.answered, 3);
    assert_eq!(s.emergency_setup_us.len(), 3);
    let events: Vec<_> = std::iter::from_fn(|| lab.proxy.next_event()).collect();
    assert_eq!(
        events
            .iter()
            .filter(
                |e| matches!(e, ProxyEvent::EmergencyCall { target, .. } if *target == addr(SOS_A))
            )
            .count(),
        3,
        "{events:?}"
    );
}

#[test]
fn emergency_calls_skip_a_cap_that_ordinary_calls_meet() {
    let mut lab = Lab::with(emergency_table(Some(1)), |c| {
        c.allowlist.push("198.18.0.0/24".parse().unwrap())
    });
    let first = lab
        .send(CALLER, &invite("442071234567", "c1", "z9hG4bKc1"))
        .1;
    assert!(first[0].1.starts_with("INVITE"));
    let over = lab
        .send(CALLER, &invite("442071234567", "c2", "z9hG4bKc2"))
        .1;
    assert!(over[0].1.starts_with("SIP/2.0 503 "), "{}", over[0].1);
    for i in 0..20 {
        let (r, sent) = lab.send(
            CALLER,
            &emergency_invite("sip:112@198.18.0.1", &format!("e{i}")),
        );
        assert_eq!(r, Ok(()));
        assert!(sent[0].1.starts_with("INVITE"), "{}", sent[0].1);
    }
}

#[test]
fn a_number_that_starts_like_an_emergency_number_is_an_ordinary_call() {
    let mut lab = Lab::with(emergency_table(None), |_| {});
    let (_, sent) = lab.send(CALLER, &emergency_invite("sip:1125551234@198.18.0.1", "n1"));
    assert_eq!(sent[0].0, addr(UP_A));
    assert!(!header(&sent[0].1, "Via")[0].contains("z9hG4bKdcs"));
    assert_eq!(lab.proxy.snapshot().emergency.attempted, 0);
}

#[test]
fn emergency_calls_fail_over_and_try_a_down_target_rather_than_none() {
    let mut lab = Lab::with(emergency_table(None), |_| {});
    lab.control.set_health(addr(SOS_A), false);
    lab.control.pump();
    lab.proxy.between_batches(Timestamp::from_nanos(lab.now));
    let (_, sent) = lab.send(CALLER, &emergency_invite("sip:911@198.18.0.1", "f1"));
    assert_eq!(sent[0].0, addr(SOS_B), "the fallback takes it");
    lab.control.set_health(addr(SOS_B), false);
    lab.control.pump();
    lab.proxy.between_batches(Timestamp::from_nanos(lab.now));
    let (r, sent) = lab.send(CALLER, &emergency_invite("sip:911@198.18.0.1", "f2"));
    assert_eq!(r, Ok(()));
    assert_eq!(
        sent[0].0,
        addr(SOS_A),
        "no 503: the emergency target is tried"
    );
}

#[test]
fn a_spoofed_emergency_flood_stays_within_the_emergency_budget() {
    let mut lab = Lab::with(emergency_table(None), |_| {});
    lab.step = 20_000;
    let (mut forwarded, mut reflected) = (0, 0);
    for i in 0..10_000u32 {
        let src = format!("198.19.{}.{}:5060", (i >> 8) & 0xff, i & 0xff);
        let (_, sent) = lab.send(
            &src,
            &emergency_invite("sip:911@198.18.0.1", &format!("s{i}")),
        );
        for fwd in sent {
            forwarded += 1;
            for status in ["100 Trying", "180 Ringing", "200 OK"] {
                let (_, back) = lab.respond(&fwd, status, "sos", true);
                reflected += back.len();
            }
        }
    }
    // 10,000 over 0.2 simulated seconds: the burst (20) and 50/s.
    assert!(
        forwarded <= 20 + 11,
        "{forwarded} spoofed emergency INVITEs forwarded"
    );
    // And what comes back toward the spoofed sources: the response burst.
    assert!(
        reflected <= 60 + 41,
        "{reflected} responses toward spoofed sources"
    );
    assert!(lab.proxy.snapshot().emergency.over_budget >= 9_900);
    // Ordinary verified service is untouched by it.
    lab.step = MS;
    lab.proxy.on_control(
        Timestamp::from_nanos(lab.now),
        ProxyControl::Verify {
            source: addr(CALLER).ip(),
            until: Timestamp::from_nanos(lab.now + 60_000 * MS),
        },
    );
    let (r, _) = lab.send(CALLER, &invite("442071234567", "after", "z9hG4bKaf"));
    assert_eq!(r, Ok(()));
}

#[test]
fn a_banned_source_still_reaches_emergency_services_unless_configured_otherwise() {
    for keep_bans in [false, true] {
        let mut lab = Lab::with(emergency_table(None), |c| c.emergency.keep_bans = keep_bans);
        let until = Timestamp::from_nanos(lab.now + 10_000 * MS);
        lab.proxy.on_control(
            Timestamp::from_nanos(lab.now),
            ProxyControl::Ban {
                network: Cidr::host(addr(CALLER).ip()),
                until,
            },
        );
        let (r, _) = lab.send(CALLER, &invite("442071234567", "b1", "z9hG4bKb1"));
        assert_eq!(r, Err(ProxyDrop::Banned));
        let (r, _) = lab.send(CALLER, &emergency_invite("sip:911@198.18.0.1", "b2"));
        if keep_bans {
            assert_eq!(r, Err(ProxyDrop::Banned));
        } else {
            assert_eq!(r, Ok(()));
        }
    }
}

#[test]
fn without_an_emergency_group_emergency_numbers_route_by_prefix_without_a_cap() {
    let mut lab = Lab::with(table(Some(1)), |_| {});
    // The table's default route is none; 911 matches no prefix of `table`,
    // so the configured answer goes back; 44-numbers route uncapped.
    let (_, sent) = lab.send(CALLER, &emergency_invite("sip:911@198.18.0.1", "p1"));
    assert!(sent[0].1.starts_with("SIP/2.0 404 "), "{}", sent[0].1);
    let _ = lab.send(CALLER, &invite("442071234567", "p2", "z9hG4bKp2"));
    let over = lab
        .send(CALLER, &invite("442071234567", "p3", "z9hG4bKp3"))
        .1;
    assert!(over[0].1.starts_with("SIP/2.0 503 "));
}

mod transport;
