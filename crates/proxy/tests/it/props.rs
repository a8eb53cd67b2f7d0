//! Properties of the proxy on generated input, as an attacker sends it:
//! near-SIP messages built from pieces an attacker would choose (victim
//! addresses in the Request-URI, Route, Via `received`/`rport`, forged
//! edge-shaped branches and cookies, every method, responses), then cut,
//! spliced and bit-flipped.
//!
//! - Nothing panics, and every datagram is accounted for exactly once: a
//!   refused one moves exactly one drop counter and sends nothing; a
//!   handled one moves none.
//! - The edge is no relay and no reflector for sources it does not trust:
//!   whatever such a source sends, the edge sends only to the route table's
//!   targets or back to that source's own address.
//! - A "response" from anyone but a hop the edge sent the request to is
//!   relayed nowhere.

use std::net::{IpAddr, SocketAddr};

use proptest::prelude::*;
use proxy::cookie::Secret;
use proxy::handler::{Datagram, OutboxBuffer, Timestamp};
use proxy::{EdgeProxy, ProxyConfig};
use route::trie::PrefixKey;
use route::{Action, GroupId, HealthSettings, RouteControl, RouteGroup, RouteTable, Target};

const EDGE: &str = "198.18.0.1:5060";
const UP_A: &str = "198.18.0.100:5060";
const UP_B: &str = "198.18.0.101:5060";
const REDIRECT_TO: &str = "198.18.0.102:5060";
/// Addresses an attacker would like the edge to send to.
const VICTIMS: [&str; 3] = ["198.19.5.5", "203.0.113.9", "[2001:db8:dead::1]"];
const MS: u64 = 1_000_000;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn table() -> RouteTable {
    let p = |s: &str| PrefixKey::from_digits(s.as_bytes()).unwrap();
    let mut capped =
        RouteGroup::new("capped", Action::Forward).with_target(Target::new(addr(UP_B), 1, 1));
    capped.cps_cap = Some(1);
    let groups = vec![
        RouteGroup::new("uk", Action::Forward)
            .with_target(Target::new(addr(UP_A), 1, 1))
            .with_target(Target::new(addr(UP_B), 2, 1)),
        RouteGroup::new("blocked", Action::Reject { code: 403 }),
        RouteGroup::new("moved", Action::Redirect).with_target(Target::new(
            addr(REDIRECT_TO),
            1,
            1,
        )),
        capped,
    ];
    let prefixes = vec![
        (p("44"), GroupId(0)),
        (p("4490"), GroupId(1)),
        (p("4480"), GroupId(2)),
        (p("33"), GroupId(3)),
    ];
    RouteTable::build(groups, &prefixes, HealthSettings::default()).unwrap()
}

fn proxy() -> (EdgeProxy, RouteControl) {
    let (control, mut workers) = RouteControl::new(table(), 1);
    let cfg = ProxyConfig::new(addr(EDGE), Secret::new(0x5eed, 0xc0de));
    (EdgeProxy::new(cfg, workers.remove(0)), control)
}

/// Where the edge may send what an untrusted source provokes: the route
/// targets (requests it routes), or the source's own address (answers,
/// and responses to its own requests).
fn allowed_destination(dst: SocketAddr, src: SocketAddr) -> bool {
    dst.ip() == src.ip() || [UP_A, UP_B].iter().any(|t| addr(t) == dst)
}

// ------------------------------------------------------------ generators

fn pick<T: Clone + std::fmt::Debug + 'static>(items: &'static [T]) -> impl Strategy<Value = T> {
    proptest::sample::select(items)
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("198.18.0.1:5060".to_string()),
        Just("198.18.0.1".to_string()),
        Just("edge.example".to_string()),
        pick(&VICTIMS).prop_map(|v| v.to_string()),
        pick(&VICTIMS).prop_map(|v| format!("{v}:5070")),
        Just("198.18.0.100".to_string()),
    ]
}

fn user() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("442071234567".to_string()),
        Just("449012345".to_string()),
        Just("448012345".to_string()),
        Just("33123".to_string()),
        Just("911".to_string()),
        Just("112".to_string()),
        Just("99999".to_string()),
        Just("alice".to_string()),
        "[0-9]{1,20}",
    ]
}

fn uri() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (user(), host()).prop_map(|(u, h)| format!("sip:{u}@{h}")),
        1 => host().prop_map(|h| format!("sip:{h}")),
        1 => user().prop_map(|u| format!("tel:{u}")),
        1 => Just("urn:service:sos".to_string()),
        1 => (user(), host()).prop_map(|(u, h)| format!("sips:{u}@{h};transport=tls")),
    ]
}

/// A branch: the client's own, or shaped like the edge's (its magic and
/// 24 hex digits, forged), or junk.
fn branch() -> impl Strategy<Value = String> {
    prop_oneof![
        "z9hG4bK[a-z0-9]{1,12}",
        "z9hG4bKdce[0-9a-f]{24}",
        "z9hG4bKdcE[0-9a-f]{24}",
        "[ -~]{0,12}",
    ]
}

fn via() -> impl Strategy<Value = String> {
    (
        host(),
        branch(),
        any::<bool>(),
        proptest::option::of(pick(&VICTIMS)),
    )
        .prop_map(|(h, b, rport, received)| {
            let mut v = format!("Via: SIP/2.0/UDP {h};branch={b}");
            if rport {
                v.push_str(";rport=5070");
            }
            if let Some(r) = received {
                v.push_str(&format!(";received={}", r.trim_matches(['[', ']'])));
            }
            v.push_str("\r\n");
            v
        })
}

fn route_header() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        ("[0-9a-f]{16}", "[0-9a-f]{12}")
            .prop_map(|(c, t)| format!("Route: <sip:198.18.0.1:5060;lr;dce={c};dct={t}>\r\n")),
        ("[0-9a-f]{16}", pick(&VICTIMS)).prop_map(|(c, v)| format!(
            "Route: <sip:198.18.0.1:5060;lr;dce={c};dct=c6120505c6c4>\r\nRoute: <sip:{v};lr>\r\n"
        )),
        pick(&VICTIMS).prop_map(|v| format!("Route: <sip:{v};lr>\r\n")),
    ]
}

fn method() -> impl Strategy<Value = &'static str> {
    pick(&[
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "MESSAGE",
        "INFO",
        "PRACK",
        "UPDATE",
        "SUBSCRIBE",
        "NOTIFY",
        "REFER",
        "PUBLISH",
        "X-FOO",
    ])
}

fn request() -> impl Strategy<Value = Vec<u8>> {
    (
        method(),
        uri(),
        proptest::collection::vec(via(), 1..3),
        route_header(),
        proptest::option::of("[a-z0-9]{1,8}"),
        "[a-z0-9@.]{1,20}",
        0u8..80,
        pick(&["friendly-scanner", "Yealink", "sipvicious", "Zoiper"]),
    )
        .prop_map(|(m, u, vias, route, to_tag, call_id, mf, ua)| {
            let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
            format!(
                "{m} {u} SIP/2.0\r\n{}{route}Max-Forwards: {mf}\r\n\
                 From: <sip:caller@198.18.0.10>;tag=f1\r\nTo: <{u}>{to_tag}\r\n\
                 Call-ID: {call_id}\r\nCSeq: 1 {m}\r\nContact: <sip:caller@198.18.0.10>\r\n\
                 User-Agent: {ua}\r\nContent-Length: 0\r\n\r\n",
                vias.concat()
            )
            .into_bytes()
        })
}

fn response() -> impl Strategy<Value = Vec<u8>> {
    (
        pick(&[
            100u16, 180, 183, 200, 302, 401, 403, 404, 407, 486, 503, 603, 699,
        ]),
        proptest::collection::vec(via(), 1..4),
        method(),
        "[a-z0-9@.]{1,20}",
    )
        .prop_map(|(code, vias, m, call_id)| {
            format!(
                "SIP/2.0 {code} Whatever\r\n{}From: <sip:a@b>;tag=f1\r\nTo: <sip:c@d>;tag=t1\r\n\
                 Call-ID: {call_id}\r\nCSeq: 1 {m}\r\nContent-Length: 0\r\n\r\n",
                vias.concat()
            )
            .into_bytes()
        })
}

/// Cuts, splices, flips and inserts into a message.
fn mutated(base: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        base,
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 0..6),
    )
        .prop_map(|(mut m, edits)| {
            for (at, byte, kind) in edits {
                if m.is_empty() {
                    break;
                }
                let i = at.index(m.len());
                match kind {
                    0 => m[i] = byte,
                    1 => m.insert(i, byte),
                    2 => m.truncate(i),
                    _ => {
                        let tail = m[i..].to_vec();
                        m.extend_from_slice(&tail);
                    }
                }
            }
            m
        })
}

fn message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => request(),
        2 => response(),
        3 => mutated(request()),
        2 => mutated(response()),
        1 => proptest::collection::vec(any::<u8>(), 0..300),
    ]
}

/// An untrusted source: a caller-side address, a victim's, or IPv6.
fn untrusted_source() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (10u8..99, 1024u16..65535)
            .prop_map(|(h, p)| SocketAddr::new(IpAddr::from([198, 18, 0, h]), p)),
        (1u16..65535).prop_map(|p| SocketAddr::new(IpAddr::from([198, 19, 5, 5]), p)),
        (1u16..0xffff, 1024u16..65535)
            .prop_map(|(h, p)| SocketAddr::new(IpAddr::from([0x2001, 0xdb8, 1, 2, 0, 0, 0, h]), p)),
    ]
}

// ------------------------------------------------------------ properties

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    /// Sequences of attacker datagrams: each accounted for exactly once,
    /// and nothing sent anywhere but route targets or the sender itself.
    #[test]
    fn untrusted_datagrams_are_counted_once_and_reach_only_targets_or_their_sender(
        seq in proptest::collection::vec((untrusted_source(), message()), 1..24),
    ) {
        let (mut p, _control) = proxy();
        let mut now = 1_000 * MS;
        let mut buf = OutboxBuffer::new(8, 4096);
        for (src, payload) in &seq {
            now += MS;
            let before = p.snapshot();
            buf.clear();
            let r = p.handle_datagram(
                Timestamp::from_nanos(now),
                &Datagram::udp(*src, addr(EDGE), payload),
                &mut buf.outbox(),
            );
            let after = p.snapshot();
            prop_assert_eq!(after.received, before.received + 1);
            let dropped = |s: &proxy::ProxyStats| s.dropped.values().sum::<u64>();
            match r {
                Err(reason) => {
                    prop_assert_eq!(dropped(&after), dropped(&before) + 1, "one drop, {:?}", reason);
                    prop_assert_eq!(
                        after.dropped.get(reason.name()).copied().unwrap_or(0),
                        before.dropped.get(reason.name()).copied().unwrap_or(0) + 1
                    );
                    prop_assert!(buf.is_empty(), "a refused datagram sent {} datagrams", buf.len());
                }
                Ok(()) => prop_assert_eq!(dropped(&after), dropped(&before)),
            }
            for (dst, out) in buf.datagrams() {
                prop_assert!(
                    allowed_destination(dst, *src),
                    "from {} the edge sent to {}:\n{}\nprovoked by:\n{}",
                    src,
                    dst,
                    String::from_utf8_lossy(out),
                    String::from_utf8_lossy(payload)
                );
            }
        }
    }

    /// A "response" from anyone, an upstream's address included, with any
    /// branch (the edge's shape forged) is relayed nowhere: the edge relays
    /// only responses to requests it sent, from the hop it sent them to.
    #[test]
    fn forged_responses_are_relayed_nowhere(
        from in prop_oneof![untrusted_source(), Just(addr(UP_A)), Just(addr(UP_B))],
        payload in prop_oneof![response(), mutated(response())],
    ) {
        let (mut p, _control) = proxy();
        let mut buf = OutboxBuffer::new(8, 4096);
        let _ = p.handle_datagram(
            Timestamp::from_nanos(1_000 * MS),
            &Datagram::udp(from, addr(EDGE), &payload),
            &mut buf.outbox(),
        );
        prop_assert!(
            buf.is_empty(),
            "relayed to {:?}:\n{}",
            buf.datagrams().map(|(d, _)| d).collect::<Vec<_>>(),
            String::from_utf8_lossy(&payload)
        );
    }
}
