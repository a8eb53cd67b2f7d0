//! The proxy across transports: callers and upstreams on UDP, TCP and TLS,
//! answers back on the connection a request came on, in-dialog requests
//! following the Record-Route across the boundary, and the forgeries that
//! try to aim any of it at somebody else's connection.

use super::*;
use crate::cookie::FLOW_TOKEN_LEN;
use crate::handler::{ConnId, Peer, Transport};

const TLS_CALLER: &str = "198.18.0.10:40001";
const UP_TLS: &str = "198.18.0.102:5061";

impl Lab {
    /// Feeds one message that came over `transport` (on `conn`); returns
    /// the verdict and what was sent, with each peer.
    fn send_on(
        &mut self,
        from: &str,
        transport: Transport,
        conn: Option<u64>,
        msg: &str,
    ) -> (Result<(), ProxyDrop>, Vec<(Peer, String)>) {
        self.now += self.step;
        let mut buf = OutboxBuffer::new(4, 8192);
        let pkt = Datagram {
            transport,
            conn: conn.map(ConnId),
            ..Datagram::udp(addr(from), addr(EDGE), msg.as_bytes())
        };
        let r =
            self.proxy
                .handle_datagram(Timestamp::from_nanos(self.now), &pkt, &mut buf.outbox());
        let sent = buf
            .sent()
            .map(|(p, b)| (p, String::from_utf8(b.to_vec()).unwrap()))
            .collect();
        (r, sent)
    }
}

/// An edge that listens on TCP 5060 and TLS 5061 too.
fn stream_lab(t: RouteTable) -> Lab {
    Lab::with(t, |c| {
        c.advertise_tcp = Some(addr("198.18.0.1:5060"));
        c.advertise_tls = Some(addr("198.18.0.1:5061"));
    })
}

fn tls_invite(number: &str, call_id: &str) -> String {
    invite(number, call_id, "z9hG4bKt1").replace(
        "SIP/2.0/UDP 198.18.0.10:5060",
        "SIP/2.0/TLS 198.18.0.10:5060",
    )
}

/// The Record-Route values of a forwarded request, in order.
fn record_routes(msg: &str) -> Vec<String> {
    let m = sip::parse(msg.as_bytes()).unwrap();
    m.record_routes()
        .map(|r| String::from_utf8(r.unwrap().as_bytes().to_vec()).unwrap())
        .collect()
}

/// What a UAS builds as the route set of the dialog: the Record-Route in
/// order (RFC 3261 section 12.1.1); the caller's is the reverse.
fn routes_header(rr: &[String]) -> String {
    format!("Route: {}\r\n", rr.join(", "))
}

fn tls_table() -> RouteTable {
    let p = |s: &str| PrefixKey::from_digits(s.as_bytes()).unwrap();
    let groups = vec![
        RouteGroup::new("uk", Action::Forward).with_target(Target::new(addr(UP_A), 1, 1)),
        RouteGroup::new("secure", Action::Forward)
            .with_target(Target::new(addr(UP_TLS), 1, 1).with_transport(Transport::Tls)),
    ];
    RouteTable::build(
        groups,
        &[(p("44"), GroupId(0)), (p("33"), GroupId(1))],
        HealthSettings::default(),
    )
    .unwrap()
}

#[test]
fn a_tls_caller_reaches_a_udp_upstream_and_its_answer_goes_back_on_its_connection() {
    let mut lab = stream_lab(tls_table());
    let (r, sent) = lab.send_on(
        TLS_CALLER,
        Transport::Tls,
        Some(7),
        &tls_invite("442071234567", "tls-1"),
    );
    assert_eq!(r, Ok(()));
    assert_eq!(sent.len(), 1);
    let (to, fwd) = &sent[0];
    assert_eq!(*to, Peer::udp(addr(UP_A)));
    // Our Via names UDP (what it is sent over), the INVITE's send time
    // and the caller's connection.
    let via = header(fwd, "Via")[0];
    assert!(
        via.starts_with("SIP/2.0/UDP 198.18.0.1:5060;branch=z9hG4bKdce")
            && via.contains(";rport;dcw=")
            && via.ends_with(";dcc=0000000000000007"),
        "{via}"
    );
    // Two Record-Route entries: the upstream's side (UDP), then the
    // caller's (TLS) with the cookie, the target and the flow token.
    let rr = record_routes(fwd);
    assert_eq!(rr.len(), 2, "{rr:?}");
    assert_eq!(rr[0], "<sip:198.18.0.1:5060;lr>");
    assert!(
        rr[1].starts_with("<sip:198.18.0.1:5061;transport=tls;lr;dce="),
        "{rr:?}"
    );
    assert!(rr[1].contains(";dcf="), "{rr:?}");
    assert!(
        !rr[1].contains(";dcx="),
        "a UDP target needs no dcx: {rr:?}"
    );

    // The answer goes back on connection 7, to the address the INVITE came
    // from.
    let ok = upstream_response(fwd, "200 OK", "uas1", true);
    let (r, back) = lab.send_on(UP_A, Transport::Udp, None, &ok);
    assert_eq!(r, Ok(()));
    assert_eq!(back.len(), 1);
    assert_eq!(
        back[0].0,
        Peer::on(addr(TLS_CALLER), Transport::Tls, ConnId(7))
    );
    let answer = sip::parse(back[0].1.as_bytes()).unwrap();
    assert_eq!(answer.vias().count(), 1);
    assert_eq!(answer.content_length(), Some(0));
    // The caller on TLS proved its address by the handshake.
    let events: Vec<_> = std::iter::from_fn(|| lab.proxy.next_event()).collect();
    assert!(events.iter().any(
        |e| matches!(e, ProxyEvent::Verified { source, .. } if *source == addr(TLS_CALLER).ip())
    ));
}

/// One call from the TLS caller on connection `conn` to the UDP upstream,
/// answered 200: the Record-Route as the upstream saw it.
fn tls_call(lab: &mut Lab, call_id: &str, conn: u64) -> Vec<String> {
    let (_, sent) = lab.send_on(
        TLS_CALLER,
        Transport::Tls,
        Some(conn),
        &tls_invite("442071234567", call_id),
    );
    record_routes(&sent[0].1)
}

#[test]
fn the_callers_in_dialog_requests_follow_the_cookie_and_lose_both_routes() {
    let mut lab = stream_lab(tls_table());
    let rr = tls_call(&mut lab, "tls-2", 7);
    let mut reversed = rr.clone();
    reversed.reverse();
    // The BYE may come on a new connection (the old one broke): the cookie
    // is bound to the caller's address, not to the connection.
    let bye = request(
        "BYE",
        "sip:442071234567@198.18.0.100:5060",
        &routes_header(&reversed),
        "tls-2",
        "z9hG4bKbye",
        Some("uas1"),
    )
    .replace("SIP/2.0/UDP", "SIP/2.0/TLS");
    let (r, sent) = lab.send_on(TLS_CALLER, Transport::Tls, Some(9), &bye);
    assert_eq!(r, Ok(()));
    assert_eq!(sent[0].0, Peer::udp(addr(UP_A)));
    assert!(
        header(&sent[0].1, "Route").is_empty(),
        "both of our Routes are removed: {}",
        sent[0].1
    );
}

#[test]
fn the_upstreams_bye_goes_to_the_caller_on_its_connection_and_the_answer_comes_back() {
    let mut lab = stream_lab(tls_table());
    let rr = tls_call(&mut lab, "tls-3", 7);
    // The upstream's BYE: its route set is the Record-Route in order, its
    // Request-URI the caller's Contact (which nobody could dial).
    let bye = format!(
        "BYE sip:caller@198.18.0.10:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 198.18.0.100:5060;branch=z9hG4bKub1\r\n\
         {}Max-Forwards: 70\r\n\
         From: <sip:442071234567@198.18.0.1>;tag=uas1\r\n\
         To: <sip:caller@198.18.0.10>;tag=ft1\r\n\
         Call-ID: tls-3\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        routes_header(&rr)
    );
    let (r, sent) = lab.send_on(UP_A, Transport::Udp, None, &bye);
    assert_eq!(r, Ok(()));
    assert_eq!(sent.len(), 1);
    let (to, fwd) = &sent[0];
    assert_eq!(to.conn, Some(ConnId(7)));
    assert_eq!(to.transport, Transport::Tls);
    let via = header(fwd, "Via")[0];
    assert!(via.starts_with("SIP/2.0/TLS 198.18.0.1:5061;"), "{via}");
    assert!(header(fwd, "Route").is_empty(), "{fwd}");

    // The caller answers on connection 7: relayed to the upstream by UDP.
    let ok = upstream_response(fwd, "200 OK", "ft1", false);
    let (r, back) = lab.send_on(TLS_CALLER, Transport::Tls, Some(7), &ok);
    assert_eq!(r, Ok(()));
    assert_eq!(back[0].0, Peer::udp(addr(UP_A)));
    // The same answer on another connection is nobody's.
    let (r, back) = lab.send_on(TLS_CALLER, Transport::Tls, Some(8), &ok);
    assert_eq!(r, Err(ProxyDrop::UnexpectedResponse));
    assert!(back.is_empty());
}

#[test]
fn a_response_with_its_connection_rewritten_reaches_no_other_connection() {
    // The response to a request from connection 7 names 7 in our Via; an
    // upstream (or anyone in the path) that rewrites it to 8, another
    // caller's connection, breaks the branch's MAC.
    let mut lab = stream_lab(tls_table());
    let (_, sent) = lab.send_on(
        TLS_CALLER,
        Transport::Tls,
        Some(7),
        &tls_invite("442071234567", "tls-4"),
    );
    let forged = upstream_response(&sent[0].1, "200 OK", "uas1", false)
        .replace(";dcc=0000000000000007", ";dcc=0000000000000008");
    let (r, back) = lab.send_on(UP_A, Transport::Udp, None, &forged);
    assert_eq!(r, Err(ProxyDrop::UnexpectedResponse));
    assert!(back.is_empty());
    let dropped =
        upstream_response(&sent[0].1, "200 OK", "uas1", false).replace(";dcc=0000000000000007", "");
    assert_eq!(
        lab.send_on(UP_A, Transport::Udp, None, &dropped).0,
        Err(ProxyDrop::UnexpectedResponse),
        "nor does dropping it turn the answer toward UDP"
    );
}

#[test]
fn a_forged_or_foreign_flow_token_names_no_connection() {
    let mut lab = stream_lab(tls_table());
    let rr = tls_call(&mut lab, "tls-5", 7);
    let at = rr[1].find(";dcf=").unwrap() + 5;
    let mut forged = rr.clone();
    // Renumbered to connection 8 without the MAC.
    let mut token = rr[1][at..at + FLOW_TOKEN_LEN].to_string();
    token.replace_range(15..16, "8");
    forged[1].replace_range(at..at + FLOW_TOKEN_LEN, &token);
    let bye = |routes: &[String]| {
        format!(
            "BYE sip:caller@198.18.0.10:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 198.18.0.100:5060;branch=z9hG4bKub2\r\n\
             {}From: <sip:4420@198.18.0.1>;tag=uas1\r\n\
             To: <sip:caller@198.18.0.10>;tag=ft1\r\n\
             Call-ID: tls-5\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
            routes_header(routes)
        )
    };
    let (r, sent) = lab.send_on(UP_A, Transport::Udp, None, &bye(&forged));
    assert_eq!(r, Ok(()));
    assert!(
        sent.iter().all(|(p, _)| p.conn.is_none()),
        "a forged token names no connection: {sent:?}"
    );
    // A caller (verified, not trusted) that copies the real token into its
    // own request gets no relay at all.
    let mut lab2 = stream_lab(tls_table());
    let rr2 = tls_call(&mut lab2, "tls-6", 7);
    let (r, sent) = lab2.send_on("198.18.0.11:40002", Transport::Tls, Some(9), &bye(&rr2));
    assert_eq!(r, Err(ProxyDrop::RelayDenied));
    assert!(sent.is_empty());
}

#[test]
fn a_udp_caller_reaches_a_tls_upstream_and_back() {
    let mut lab = stream_lab(tls_table());
    let (r, sent) = lab.send(CALLER, &invite("33123456", "tls-7", "z9hG4bKu7"));
    assert_eq!(r, Ok(()));
    // Sent through the stream layer; the Lab's `send` records addresses.
    assert_eq!(sent[0].0, addr(UP_TLS));
    let fwd = &sent[0].1;
    assert!(
        header(fwd, "Via")[0].starts_with("SIP/2.0/TLS 198.18.0.1:5061;branch="),
        "{fwd}"
    );
    let rr = record_routes(fwd);
    assert_eq!(rr[0], "<sip:198.18.0.1:5061;transport=tls;lr>");
    assert!(rr[1].starts_with("<sip:198.18.0.1:5060;lr;dce="), "{rr:?}");
    assert!(rr[1].contains(";dcx=tls"), "{rr:?}");
    assert!(!rr[1].contains(";dcf="), "a UDP caller has no flow: {rr:?}");
    // The upstream answers on our connection to it (from its address).
    let ok = upstream_response(fwd, "200 OK", "uas7", true);
    let (r, back) = lab.send_on(UP_TLS, Transport::Tls, Some(21), &ok);
    assert_eq!(r, Ok(()));
    assert_eq!(back[0].0, Peer::udp(addr(CALLER)));
    // The same answer over UDP from the same address is not the hop the
    // request went to.
    assert_eq!(
        lab.send_on(UP_TLS, Transport::Udp, None, &ok).0,
        Err(ProxyDrop::UnexpectedResponse)
    );
    // The caller's BYE with the cookie goes to the upstream over TLS.
    let mut reversed = rr.clone();
    reversed.reverse();
    let bye = request(
        "BYE",
        "sip:33123456@198.18.0.102:5061",
        &routes_header(&reversed),
        "tls-7",
        "z9hG4bKbye7",
        Some("uas7"),
    );
    let (r, sent) = lab.send_on(CALLER, Transport::Udp, None, &bye);
    assert_eq!(r, Ok(()));
    assert_eq!(sent[0].0, Peer::at(addr(UP_TLS), Transport::Tls));
    assert_eq!(
        sip::parse(sent[0].1.as_bytes()).unwrap().content_length(),
        Some(0)
    );
}

#[test]
fn a_cookie_with_its_transport_rewritten_is_refused() {
    let mut lab = stream_lab(tls_table());
    let (_, sent) = lab.send(CALLER, &invite("33123456", "tls-8", "z9hG4bKu8"));
    let rr = record_routes(&sent[0].1);
    let mut reversed: Vec<String> = rr.iter().rev().cloned().collect();
    reversed[0] = reversed[0].replace(";dcx=tls", ";dcx=tcp");
    let bye = request(
        "BYE",
        "sip:33123456@198.18.0.102:5061",
        &routes_header(&reversed),
        "tls-8",
        "z9hG4bKbye8",
        Some("uas8"),
    );
    let (r, sent) = lab.send_on(CALLER, Transport::Udp, None, &bye);
    assert_eq!(r, Err(ProxyDrop::RelayDenied), "{sent:?}");
}

#[test]
fn a_tls_caller_to_a_tls_upstream_is_record_routed_once() {
    let mut lab = stream_lab(tls_table());
    let (r, sent) = lab.send_on(
        TLS_CALLER,
        Transport::Tls,
        Some(3),
        &tls_invite("33123456", "tls-9"),
    );
    assert_eq!(r, Ok(()));
    assert_eq!(sent[0].0, Peer::at(addr(UP_TLS), Transport::Tls));
    let rr = record_routes(&sent[0].1);
    assert_eq!(rr.len(), 1, "{rr:?}");
    assert!(
        rr[0].starts_with("<sip:198.18.0.1:5061;transport=tls;lr;dce=")
            && rr[0].contains(";dcx=tls;dcf="),
        "{rr:?}"
    );
    let ok = upstream_response(&sent[0].1, "200 OK", "uas9", true);
    let (r, back) = lab.send_on(UP_TLS, Transport::Tls, Some(22), &ok);
    assert_eq!(r, Ok(()));
    assert_eq!(
        back[0].0,
        Peer::on(addr(TLS_CALLER), Transport::Tls, ConnId(3))
    );
}

#[test]
fn local_answers_go_back_on_the_connection_the_request_came_on() {
    let mut lab = stream_lab(tls_table());
    let options = request(
        "OPTIONS",
        "sip:198.18.0.1:5061;transport=tls",
        "",
        "opt-t",
        "z9hG4bKot",
        None,
    );
    let (r, sent) = lab.send_on(TLS_CALLER, Transport::Tls, Some(5), &options);
    assert_eq!(r, Ok(()));
    assert_eq!(
        sent[0].0,
        Peer::on(addr(TLS_CALLER), Transport::Tls, ConnId(5))
    );
    assert!(sent[0].1.starts_with("SIP/2.0 200 OK\r\n"));
    // A number with no route: 404 on the connection too.
    let (_, sent) = lab.send_on(
        TLS_CALLER,
        Transport::Tcp,
        Some(6),
        &invite("9912345", "nr-t", "z9hG4bKn"),
    );
    assert_eq!(
        sent[0].0,
        Peer::on(addr(TLS_CALLER), Transport::Tcp, ConnId(6))
    );
    assert!(sent[0].1.starts_with("SIP/2.0 404"), "{}", sent[0].1);
}

#[test]
fn a_tcp_message_from_a_banned_source_proves_nothing() {
    let mut lab = stream_lab(tls_table());
    let now = Timestamp::from_nanos(lab.now);
    lab.proxy.on_control(
        now,
        ProxyControl::Ban {
            network: "198.18.0.10/32".parse().unwrap(),
            until: Timestamp::from_nanos(u64::MAX),
        },
    );
    let (r, _) = lab.send_on(
        TLS_CALLER,
        Transport::Tcp,
        Some(1),
        &tls_invite("442071234567", "ban-t"),
    );
    assert_eq!(r, Err(ProxyDrop::Banned));
    assert!(std::iter::from_fn(|| lab.proxy.next_event())
        .all(|e| !matches!(e, ProxyEvent::Verified { .. })));
}
