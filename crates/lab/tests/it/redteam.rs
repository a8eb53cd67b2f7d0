//! The red-team suite (issue 17): each attack of docs/threat-model.md run
//! against the real `dce-edge run` in the lab, with raw-socket spoofing
//! from the attacker's namespace and a victim host that counts every
//! datagram it receives. Each test asserts what the user sees (bans,
//! completed calls, datagrams at the victim or the spoofed range), by
//! counts, never by timings; waits are bounded and generous.
//!
//! Callers are not allowlisted here: like real customers they earn their
//! trust by completing calls (the dialog cookie), so that the tests see
//! what spoofing does to ordinary callers. Every test prints a report
//! (what the victim received, the bans in force, the edge's counters)
//! before it asserts, so a failure says why.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use dataplane::IoMode;
use lab::ping::options_ping;
use lab::ping::options_ping_uri;
use lab::redteam::{
    bans_covering, bans_text, cidr_contains, describe, forged_response, options_burst, place_call,
    route_to_attacker, scanner_options, sdp, send_from, spoof_base, spoofed_source, Ban,
    FloodControl, RedTeamLab, RedTeamSpec, Req, UdpCounter, EDGE_SIP, PATIENCE, ROUTED_NUMBER,
};
use lab::topology::{ATTACKER_ADDR, EDGE_ADDR};
use lab::wait_until;

fn mode_name(mode: IoMode) -> &'static str {
    match mode {
        IoMode::AfXdp => "afxdp",
        IoMode::Socket => "socket",
    }
}

/// Bans in the ban list and in the snapshot covering `ip`.
fn bans_of(rt: &RedTeamLab, ip: Ipv4Addr) -> (Vec<Ban>, Vec<Ban>) {
    let listed = bans_covering(&rt.bans().expect("the ban list"), ip);
    let snap = rt.edge.snapshot().expect("a snapshot");
    let in_snapshot = snap
        .bans
        .iter()
        .filter(|b| cidr_contains(&b.source, ip))
        .map(|b| Ban {
            network: b.source.clone(),
            reason: b.reason.clone(),
            secs_left: Some(b.seconds_left),
        })
        .collect();
    (listed, in_snapshot)
}

// ------------------------------------------------------------------ 1

/// Attack 1: the attacker forges a handful of scanner OPTIONS
/// (`User-Agent: friendly-scanner`, From "sipvicious") carrying real
/// callers' addresses: a regular (verified by earlier calls) and a
/// newcomer (never called). Neither may be banned, and both must still
/// get calls through and OPTIONS answered. AF_XDP only: the scanner
/// fingerprint is the XDP program's (socket mode runs none).
#[test]
fn spoofed_scanner_packets_with_callers_addresses_ban_no_caller_in_afxdp_mode() {
    let test = "spoofed_scanner_packets_with_callers_addresses_ban_no_caller_in_afxdp_mode";
    let Some(rt) = RedTeamLab::start_or_skip(test, &RedTeamSpec::new(IoMode::AfXdp, 2)) else {
        return;
    };
    let callers = [rt.lab.callers.addrs[0], rt.lab.callers.addrs[1]];
    let (regular, newcomer) = (callers[0], callers[1]);
    rt.verify_callers(&[regular]).unwrap();

    let spoofer = rt.spoofer().unwrap();
    let forged: Vec<(SocketAddrV4, String)> = callers
        .iter()
        .flat_map(|&ip| {
            (0..5).map(move |i| {
                let src = SocketAddrV4::new(ip, 5060);
                (src, scanner_options(src, &format!("scan{ip}x{i}")))
            })
        })
        .collect();
    let before = rt.edge.snapshot().unwrap();
    let sent = spoofer.send_all(&forged, 50).unwrap();
    let after = rt.wait_accounted(&before, sent).unwrap();

    let (regular_listed, regular_snap) = bans_of(&rt, regular);
    let (newcomer_listed, newcomer_snap) = bans_of(&rt, newcomer);
    let calls = rt.calls(&callers, 16, 20).unwrap();
    let options = callers.map(|ip| rt.options_from_caller(ip).unwrap());
    eprintln!(
        "{test}: {sent} spoofed scanner OPTIONS (5 with the regular caller {regular}, 5 with the newcomer {newcomer})\n\
         bans of the regular caller: listed {regular_listed:?}, snapshot {regular_snap:?}\n\
         bans of the newcomer: listed {newcomer_listed:?}, snapshot {newcomer_snap:?}\n\
         all bans:\n{}\n\
         calls afterwards: {}\n\
         OPTIONS afterwards: regular {:?}, newcomer {:?}\n{}",
        bans_text(&rt.bans().unwrap()),
        calls.summary(),
        options[0],
        options[1],
        describe(&after)
    );
    assert!(
        regular_listed.is_empty() && regular_snap.is_empty(),
        "the regular caller {regular} was banned for packets it never sent: {regular_listed:?} {regular_snap:?}"
    );
    assert!(
        newcomer_listed.is_empty() && newcomer_snap.is_empty(),
        "the newcomer {newcomer} was banned for packets it never sent: {newcomer_listed:?} {newcomer_snap:?}"
    );
    assert!(
        calls.all_completed(),
        "callers lost service: {}",
        calls.summary()
    );
    assert_eq!(options, [Some(200), Some(200)], "OPTIONS unanswered");
}

/// Attack 1, the proxy's side: the attacker forges requests for 60
/// different unrouted numbers (what an extension sweep looks like, answered
/// 404) carrying real callers' addresses. The proxy's abuse counters may
/// drop or refuse them, never ban the callers.
fn spoofed_unrouted_requests_ban_no_caller(mode: IoMode, test: &str) {
    let Some(rt) = RedTeamLab::start_or_skip(test, &RedTeamSpec::new(mode, 2)) else {
        return;
    };
    let callers = [rt.lab.callers.addrs[0], rt.lab.callers.addrs[1]];
    let (regular, newcomer) = (callers[0], callers[1]);
    rt.verify_callers(&[regular]).unwrap();

    let spoofer = rt.spoofer().unwrap();
    let forged: Vec<(SocketAddrV4, String)> = callers
        .iter()
        .flat_map(|&ip| {
            (0..60).map(move |i| {
                let src = SocketAddrV4::new(ip, 5060);
                let uri = format!("sip:{}@{EDGE_SIP}", 1000 + i);
                let req = Req::new("OPTIONS", &uri, src, &format!("sweep{ip}x{i}"));
                (src, req.text())
            })
        })
        .collect();
    let before = rt.edge.snapshot().unwrap();
    let sent = spoofer.send_all(&forged, 100).unwrap();
    let after = rt.wait_accounted(&before, sent).unwrap();

    let (regular_bans, _) = bans_of(&rt, regular);
    let (newcomer_bans, _) = bans_of(&rt, newcomer);
    let calls = rt.calls(&callers, 16, 20).unwrap();
    let options = callers.map(|ip| rt.options_from_caller(ip).unwrap());
    let last = rt.edge.snapshot().unwrap();
    eprintln!(
        "{test}: {sent} spoofed OPTIONS to unrouted numbers (60 with the regular caller {regular}, 60 with the newcomer {newcomer})\n\
         bans in force:\n{}\n\
         calls afterwards: {}\n\
         OPTIONS afterwards: regular {:?}, newcomer {:?}\n\
         after the spoofed requests:\n{}\n\
         after the calls:\n{}",
        bans_text(&rt.bans().unwrap()),
        calls.summary(),
        options[0],
        options[1],
        describe(&after),
        describe(&last)
    );
    assert!(
        regular_bans.is_empty(),
        "the regular caller {regular} was banned for requests it never sent: {regular_bans:?}"
    );
    assert!(
        newcomer_bans.is_empty(),
        "the newcomer {newcomer} was banned for requests it never sent: {newcomer_bans:?}"
    );
    assert!(
        calls.all_completed(),
        "callers lost service: {}",
        calls.summary()
    );
    assert_eq!(options, [Some(200), Some(200)], "OPTIONS unanswered");
}

#[test]
fn spoofed_unrouted_requests_with_callers_addresses_ban_no_caller_in_socket_mode() {
    spoofed_unrouted_requests_ban_no_caller(
        IoMode::Socket,
        "spoofed_unrouted_requests_with_callers_addresses_ban_no_caller_in_socket_mode",
    );
}

#[test]
fn spoofed_unrouted_requests_with_callers_addresses_ban_no_caller_in_afxdp_mode() {
    spoofed_unrouted_requests_ban_no_caller(
        IoMode::AfXdp,
        "spoofed_unrouted_requests_with_callers_addresses_ban_no_caller_in_afxdp_mode",
    );
}

// ------------------------------------------------------------------ 2

/// Spoofed scanner sources beyond 198.19.0.0/16 (65,536 addresses) come
/// from here, routed to the attacker too.
const EXTRA_SPOOF: &str = "198.18.128.0/19";

/// The `i`th of the flood's 70,000 spoofed sources.
fn flood_source(i: u64) -> Ipv4Addr {
    if i < 65_536 {
        spoofed_source(spoof_base(), i)
    } else {
        Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 128, 0)) + (i - 65_536) as u32)
    }
}

/// Attack 2: a scanner flood from 70,000 spoofed sources (70,000
/// friendly-scanner OPTIONS, 20,000 a second). Nobody it names is banned
/// automatically (so the ban map cannot be filled); an operator's manual
/// ban of the attacker's real address, made once 66,000 are out, works
/// (listed, never expiring; the address's traffic is dropped as banned);
/// verified callers keep service throughout. AF_XDP only (the scanner
/// fingerprint and the ban map are the XDP program's).
#[test]
fn a_70000_source_spoofed_scanner_flood_bans_no_one_and_the_operators_ban_works() {
    let test = "a_70000_source_spoofed_scanner_flood_bans_no_one_and_the_operators_ban_works";
    let Some(rt) = RedTeamLab::start_or_skip(test, &RedTeamSpec::new(IoMode::AfXdp, 4)) else {
        return;
    };
    const FLOOD: u64 = 70_000;
    const BAN_AT: u64 = 66_000;
    route_to_attacker(&rt.lab, EXTRA_SPOOF).unwrap();
    let callers = rt.lab.callers.addrs.clone();
    rt.verify_callers(&callers).unwrap();

    let spoofer = rt.spoofer().unwrap();
    let ctl = Arc::new(FloodControl::default());
    let calls = rt.start_calls(&callers, 16, 20).unwrap();
    let flood = {
        let ctl = Arc::clone(&ctl);
        std::thread::spawn(move || {
            spoofer.flood(FLOOD, 20_000, Duration::from_secs(120), &ctl, |i| {
                let src = SocketAddrV4::new(flood_source(i), 5060);
                (src, scanner_options(src, &format!("fl{i}")))
            })
        })
    };
    // The operator acts while the flood runs, once it has named more
    // sources than the ban map holds (65,536).
    assert!(
        wait_until(Duration::from_secs(120), || ctl.sent.load(Ordering::SeqCst)
            >= BAN_AT
            || flood.is_finished()),
        "the flood never reached {BAN_AT} packets: {}",
        ctl.sent.load(Ordering::SeqCst)
    );
    let at_ban = ctl.sent.load(Ordering::SeqCst);
    let (ban_ok, ban_said) = rt.operator(&["ban", &ATTACKER_ADDR.to_string()]).unwrap();
    let flooded = flood.join().expect("flood thread").unwrap();
    let calls = calls.wait().unwrap();
    let quiet = rt.wait_quiet().unwrap();

    let bans = rt.ban_list().unwrap();
    let spoofed_bans: Vec<&Ban> = bans
        .iter()
        .filter(|b| {
            let ip = b.network.split('/').next().unwrap_or_default();
            ip.parse::<Ipv4Addr>().is_ok_and(|ip| {
                cidr_contains("198.19.0.0/16", ip) || cidr_contains(EXTRA_SPOOF, ip)
            })
        })
        .collect();
    let operator_ban = bans_covering(&bans, ATTACKER_ADDR);

    // The banned address's own traffic: 20 OPTIONS, none answered, all
    // dropped as banned.
    let banned_before = quiet.xdp.as_ref().map_or(0, |x| x.drops["banned"]);
    let answered = rt
        .as_attacker(|| {
            options_burst(
                SocketAddrV4::new(ATTACKER_ADDR, 0),
                20,
                Duration::from_secs(3),
            )
        })
        .unwrap()
        .unwrap();
    let dropped = rt.edge.wait_for("20 more banned drops", PATIENCE, |s| {
        s.xdp
            .as_ref()
            .is_some_and(|x| x.drops["banned"] >= banned_before + 20)
    });
    let banned_drops = rt
        .edge
        .snapshot()
        .ok()
        .and_then(|s| s.xdp.map(|x| x.drops["banned"]))
        .unwrap_or(0)
        - banned_before;

    eprintln!(
        "{test}: {flooded} spoofed scanner OPTIONS from {flooded} sources\n\
         automatic bans of spoofed sources: {} (of {} bans in force)\n\
         the operator's `dce-edge ban {ATTACKER_ADDR}` after {at_ban} flood packets: {} ({ban_said})\n\
         the operator's ban as listed: {operator_ban:?}\n\
         the banned address's 20 OPTIONS afterwards: {answered} answered, {banned_drops} dropped as banned\n\
         calls during the flood: {}\n{}",
        spoofed_bans.len(),
        bans.len(),
        if ban_ok { "accepted" } else { "REFUSED" },
        calls.summary(),
        describe(&quiet)
    );
    assert!(
        spoofed_bans.is_empty(),
        "{} spoofed sources were banned automatically, e.g. {:?}",
        spoofed_bans.len(),
        spoofed_bans.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        ban_ok,
        "the operator's ban was refused during the flood: {ban_said}"
    );
    assert!(
        operator_ban
            .iter()
            .any(|b| b.reason == "manual" && b.secs_left.is_none()),
        "the operator's ban is not listed as a manual ban without expiry: {operator_ban:?}"
    );
    assert!(
        dropped.is_ok() && answered == 0,
        "the banned address still got through: {answered} answers, {banned_drops} banned drops"
    );
    assert!(
        calls.all_completed(),
        "callers lost service: {}",
        calls.summary()
    );
}

// ------------------------------------------------------------------ 3

/// Attack 3: forged "responses" whose top Via names the edge with a branch
/// shaped like its own. Those naming the victim as the next hop (200, 404
/// and 401, sent from the attacker's own address and with the upstream's
/// address spoofed) must reach no one; those naming real callers (401s and
/// 404s enough to cross every abuse limit) must get no caller banned, and
/// the callers keep service.
fn forged_responses(mode: IoMode, test: &str) {
    let Some(rt) = RedTeamLab::start_or_skip(test, &RedTeamSpec::new(mode, 2)) else {
        return;
    };
    let callers = [rt.lab.callers.addrs[0], rt.lab.callers.addrs[1]];
    let (regular, newcomer) = (callers[0], callers[1]);
    rt.verify_callers(&[regular]).unwrap();
    let attacker = SocketAddrV4::new(rt.attacker().addrs[1], 5060);
    let upstream = match rt.upstream.addr() {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => unreachable!("the lab is IPv4"),
    };
    let victim = rt.victim.sip_addr();

    let mut at_victim = Vec::new();
    for src in [attacker, upstream] {
        for (code, method) in [(200, "INVITE"), (404, "INVITE"), (401, "REGISTER")] {
            for i in 0..20 {
                let id = format!("v{}x{code}x{i}", src.ip());
                at_victim.push((src, forged_response(code, method, victim, &id)));
            }
        }
    }
    let mut at_callers = Vec::new();
    for ip in callers {
        let next = SocketAddrV4::new(ip, 5060);
        for i in 0..30 {
            let id = format!("c{ip}x401x{i}");
            at_callers.push((attacker, forged_response(401, "REGISTER", next, &id)));
        }
        for i in 0..60 {
            let id = format!("c{ip}x404x{i}");
            at_callers.push((attacker, forged_response(404, "INVITE", next, &id)));
        }
    }
    let spoofer = rt.spoofer().unwrap();
    let before = rt.edge.snapshot().unwrap();
    let sent =
        spoofer.send_all(&at_victim, 200).unwrap() + spoofer.send_all(&at_callers, 200).unwrap();
    let after = rt.wait_accounted(&before, sent).unwrap();
    let victim_got = rt.victim.settled();

    let (regular_bans, _) = bans_of(&rt, regular);
    let (newcomer_bans, _) = bans_of(&rt, newcomer);
    let calls = rt.calls(&callers, 16, 20).unwrap();
    let options = callers.map(|ip| rt.options_from_caller(ip).unwrap());
    eprintln!(
        "{test}: {} forged responses naming the victim {victim} (200/404/401, from {attacker} and spoofed from the upstream {upstream}), \
         {} naming the callers (30 401 and 60 404 each)\n\
         {}\n\
         bans in force:\n{}\n\
         calls afterwards: {}\n\
         OPTIONS afterwards: regular {:?}, newcomer {:?}\n{}",
        at_victim.len(),
        at_callers.len(),
        rt.victim.report(),
        bans_text(&rt.bans().unwrap()),
        calls.summary(),
        options[0],
        options[1],
        describe(&after)
    );
    assert_eq!(
        victim_got,
        0,
        "forged responses were relayed to the victim: {}",
        rt.victim.report()
    );
    assert!(
        regular_bans.is_empty(),
        "the regular caller {regular} was banned on forged responses: {regular_bans:?}"
    );
    assert!(
        newcomer_bans.is_empty(),
        "the newcomer {newcomer} was banned on forged responses: {newcomer_bans:?}"
    );
    assert!(
        calls.all_completed(),
        "callers lost service: {}",
        calls.summary()
    );
    assert_eq!(options, [Some(200), Some(200)], "OPTIONS unanswered");
}

#[test]
fn forged_responses_are_relayed_to_no_one_and_ban_no_caller_in_socket_mode() {
    forged_responses(
        IoMode::Socket,
        "forged_responses_are_relayed_to_no_one_and_ban_no_caller_in_socket_mode",
    );
}

#[test]
fn forged_responses_are_relayed_to_no_one_and_ban_no_caller_in_afxdp_mode() {
    forged_responses(
        IoMode::AfXdp,
        "forged_responses_are_relayed_to_no_one_and_ban_no_caller_in_afxdp_mode",
    );
}

// ------------------------------------------------------------------ 4

/// Attack 4: the attacker places one real call through the edge, so it
/// holds the Record-Route's `dce=` cookie (valid for its own address),
/// then sends requests carrying that Route whose Request-URI (or second
/// Route) names the victim: an INVITE without a To tag, and BYE, INFO and
/// a re-INVITE inside the dialog. The victim receives nothing: a cookie
/// proves the caller real, it does not make the edge an open relay.
fn cookie_is_no_relay_ticket(mode: IoMode, test: &str) {
    let Some(rt) = RedTeamLab::start_or_skip(test, &RedTeamSpec::new(mode, 1)) else {
        return;
    };
    let ticket = rt
        .as_attacker(|| place_call(SocketAddrV4::new(ATTACKER_ADDR, 5070), ROUTED_NUMBER))
        .unwrap()
        .unwrap_or_else(|e| {
            panic!(
                "{test}: the attacker's real call failed: {e}\n{}",
                rt.describe()
            )
        });
    let victim = rt.victim.sip_addr();
    let at_victim = format!("sip:{ROUTED_NUMBER}@{victim}");
    let route = format!("Route: {}", ticket.record_route);
    let from = SocketAddrV4::new(ATTACKER_ADDR, 5071);
    let in_dialog = |method: &str, id: &str| {
        let mut r = Req::new(method, &at_victim, from, id)
            .in_dialog(&ticket.to_tag)
            .header(&route);
        r.call_id = ticket.call_id.clone();
        r.from_tag = ticket.from_tag.clone();
        r.cseq = 10;
        r
    };
    let kinds = [
        "INVITE without To tag, Request-URI at the victim",
        "BYE in the dialog, Request-URI at the victim",
        "INFO in the dialog, Request-URI at the victim",
        "re-INVITE in the dialog, Request-URI at the victim",
        "INVITE for a routed number, second Route at the victim",
    ];
    let make = |kind: usize, i: u32| -> String {
        match kind {
            0 => Req::new("INVITE", &at_victim, from, &format!("inv{i}"))
                .header(&route)
                .body(&sdp(ATTACKER_ADDR))
                .text(),
            1 => in_dialog("BYE", &format!("bye{i}")).text(),
            2 => in_dialog("INFO", &format!("info{i}"))
                .body("signal=1")
                .text(),
            3 => in_dialog("INVITE", &format!("reinv{i}"))
                .body(&sdp(ATTACKER_ADDR))
                .text(),
            _ => Req::new(
                "INVITE",
                &format!("sip:{ROUTED_NUMBER}@{EDGE_SIP}"),
                from,
                &format!("lr{i}"),
            )
            .header(&route)
            .header(&format!("Route: <sip:{victim};lr>"))
            .body(&sdp(ATTACKER_ADDR))
            .text(),
        }
    };
    let mut rows = Vec::new();
    for (kind, name) in kinds.iter().enumerate() {
        let messages: Vec<String> = (0..5).map(|i| make(kind, i)).collect();
        let before_victim = rt.victim.received();
        let before = rt.edge.snapshot().unwrap();
        rt.as_attacker(|| send_from(from, &messages))
            .unwrap()
            .unwrap();
        rt.wait_accounted(&before, messages.len() as u64).unwrap();
        let got = rt.victim.settled() - before_victim;
        rows.push((*name, messages.len(), got));
    }
    let total: u64 = rows.iter().map(|r| r.2).sum();
    let table: Vec<String> = rows
        .iter()
        .map(|(name, sent, got)| format!("  {name}: {sent} sent, {got} reached the victim"))
        .collect();
    eprintln!(
        "{test}: the attacker's real call from {ATTACKER_ADDR} holds Record-Route {} (cookie {})\n{}\n{}\n{}",
        ticket.record_route,
        ticket.cookie,
        table.join("\n"),
        rt.victim.report(),
        rt.describe()
    );
    assert_eq!(
        total,
        0,
        "requests carrying the attacker's cookie were relayed to the victim:\n{}\n{}",
        table.join("\n"),
        rt.victim.report()
    );
}

#[test]
fn a_dialog_cookie_is_no_relay_ticket_in_socket_mode() {
    cookie_is_no_relay_ticket(
        IoMode::Socket,
        "a_dialog_cookie_is_no_relay_ticket_in_socket_mode",
    );
}

#[test]
fn a_dialog_cookie_is_no_relay_ticket_in_afxdp_mode() {
    cookie_is_no_relay_ticket(
        IoMode::AfXdp,
        "a_dialog_cookie_is_no_relay_ticket_in_afxdp_mode",
    );
}

// ------------------------------------------------------------------ 5

/// Packets of each spoofed flood of attack 5.
const METHOD_FLOOD: u64 = 20_000;
/// Its rate: well past the shields' threshold (1,000 a second).
const METHOD_FLOOD_PPS: u64 = 10_000;
/// The onset burst a flood may draw toward its spoofed sources.
const ONSET_BOUND: u64 = 100;

/// The `i`th datagram of a spoofed flood of `method` (one of the six of
/// attack 5), from the `i`th spoofed source.
fn flood_datagram(method: &str, i: u64) -> (SocketAddrV4, String) {
    let src = SocketAddrV4::new(spoofed_source(spoof_base(), i), 5060);
    let routed = format!("sip:{ROUTED_NUMBER}@{EDGE_SIP}");
    let id = format!("m{i}");
    let req = match method {
        "OPTIONS" => Req::new("OPTIONS", &format!("sip:{EDGE_SIP}"), src, &id),
        "BYE" => Req::new("BYE", &routed, src, &id).in_dialog(&format!("t{i}")),
        "MESSAGE" => Req::new("MESSAGE", &routed, src, &id).body("hello"),
        "INVITE" => Req::new("INVITE", &routed, src, &id).body(&sdp(*src.ip())),
        "INVITE+tag" => Req::new("INVITE", &routed, src, &id)
            .in_dialog(&format!("t{i}"))
            .body(&sdp(*src.ip())),
        "REGISTER" => {
            let mut r = Req::new("REGISTER", &format!("sip:{EDGE_SIP}"), src, &id);
            r.to_uri = routed.clone();
            r.header("Expires: 3600")
        }
        other => unreachable!("no flood of {other}"),
    };
    (src, req.text())
}

/// One flood's outcome.
struct FloodRow {
    method: &'static str,
    sent: u64,
    reflected: u64,
    received: u64,
    forwarded: u64,
    answered: u64,
    calls: String,
}

/// Attack 5: for each of OPTIONS, BYE, MESSAGE to a routed number, INVITE
/// without and with a To tag, and REGISTER, a fresh edge (and upstream)
/// with verified callers placing calls takes a spoofed flood of 20,000
/// requests from 20,000 sources of 198.19.0.0/16, which the lab routes to
/// the attacker. What the edge sends toward the spoofed range, counted on
/// the attacker's interface, stays within the onset burst: at most 100
/// datagrams per flood.
fn floods_of_every_method(mode: IoMode, test: &str) {
    let Some(mut rt) = RedTeamLab::start_or_skip(test, &RedTeamSpec::new(mode, 4)) else {
        return;
    };
    let callers = rt.lab.callers.addrs.clone();
    let counter = UdpCounter::start(&rt.attacker().ns, spoof_base(), 16).unwrap();
    let methods = [
        "OPTIONS",
        "BYE",
        "MESSAGE",
        "INVITE",
        "INVITE+tag",
        "REGISTER",
    ];
    let mut rows = Vec::new();
    for (k, method) in methods.into_iter().enumerate() {
        if k > 0 {
            rt.restart().unwrap();
        }
        rt.verify_callers(&callers).unwrap();
        // The path to the spoofed range works (and the edge knows the
        // attacker's MAC): a datagram from the edge's kernel arrives.
        let primed = counter.counted().from_edge;
        rt.lab
            .edge
            .ns
            .enter(|| {
                let s = std::net::UdpSocket::bind((EDGE_ADDR, 0))?;
                s.send_to(b"prime", (spoofed_source(spoof_base(), 65_535), 9))
            })
            .unwrap()
            .unwrap();
        let from = SocketAddr::from((ATTACKER_ADDR, 0));
        rt.as_attacker(move || {
            options_ping(from, SocketAddr::V4(EDGE_SIP), Duration::from_secs(10))
        })
        .unwrap()
        .unwrap();
        assert!(
            wait_until(PATIENCE, || counter.counted().from_edge > primed),
            "{test}: the edge's datagram to the spoofed range never reached the attacker"
        );
        let base = counter
            .settled(Duration::from_millis(500), PATIENCE)
            .from_edge;

        let before = rt.edge.snapshot().unwrap();
        let calls = rt.start_calls(&callers, 16, 20).unwrap();
        let spoofer = rt.spoofer().unwrap();
        let sent = spoofer
            .flood(
                METHOD_FLOOD,
                METHOD_FLOOD_PPS,
                Duration::from_secs(60),
                &FloodControl::default(),
                |i| flood_datagram(method, i),
            )
            .unwrap();
        let calls = calls.wait().unwrap();
        rt.wait_quiet().unwrap();
        // Stopped, the edge sends nothing more: what arrived is the count.
        let last = rt.edge.stop().unwrap();
        let reflected = counter
            .settled(Duration::from_secs(1), PATIENCE)
            .from_edge
            .saturating_sub(base);
        let delta =
            |f: &dyn Fn(&telemetry::stats::Snapshot) -> u64| f(&last).saturating_sub(f(&before));
        let row = FloodRow {
            method,
            sent,
            reflected,
            received: delta(&|s| RedTeamLab::accounted(s)),
            forwarded: delta(&|s| {
                s.workers_total(|w| w.forwarded_requests + w.forwarded_responses)
            }),
            answered: delta(&|s| s.workers_total(|w| w.answered.values().sum())),
            calls: calls.summary(),
        };
        eprintln!(
            "{test}: {method} flood: {} sent, {} reached the edge, {} forwarded, {} answered locally, {} datagrams to the spoofed range; calls {}\n{}",
            row.sent,
            row.received,
            row.forwarded,
            row.answered,
            row.reflected,
            row.calls,
            describe(&last)
        );
        rows.push(row);
    }
    let samples = counter.counted();
    let mode = mode_name(mode);
    eprintln!("\nreflected toward the spoofed range, {mode} mode ({METHOD_FLOOD} spoofed requests per flood from {METHOD_FLOOD} sources at {METHOD_FLOOD_PPS}/s, counted at the attacker):");
    eprintln!(
        "| method | sent | reached the edge | forwarded | answered | reflected |\n|---|---|---|---|---|---|"
    );
    for r in &rows {
        eprintln!(
            "| {} | {} | {} | {} | {} | {} |",
            r.method, r.sent, r.received, r.forwarded, r.answered, r.reflected
        );
    }
    let line: Vec<String> = rows
        .iter()
        .map(|r| format!("{} {}", r.method, r.reflected))
        .collect();
    eprintln!("REFLECTED {mode}: {}", line.join(" | "));
    eprintln!(
        "first datagrams toward the spoofed range:\n{}",
        samples.samples_text()
    );
    let over: Vec<String> = rows
        .iter()
        .filter(|r| r.reflected > ONSET_BOUND)
        .map(|r| format!("{} {} (of {} sent)", r.method, r.reflected, r.sent))
        .collect();
    assert!(
        over.is_empty(),
        "floods reflected more than the onset burst of {ONSET_BOUND}: {}",
        over.join(", ")
    );
}

#[test]
fn spoofed_floods_of_every_method_are_not_reflected_in_socket_mode() {
    floods_of_every_method(
        IoMode::Socket,
        "spoofed_floods_of_every_method_are_not_reflected_in_socket_mode",
    );
}

#[test]
fn spoofed_floods_of_every_method_are_not_reflected_in_afxdp_mode() {
    floods_of_every_method(
        IoMode::AfXdp,
        "spoofed_floods_of_every_method_are_not_reflected_in_afxdp_mode",
    );
}

// ------------------------------------------------------------------ 6

/// Attack 6: 16 callers verified before the attack; then a spoofed flood
/// from all 65,536 sources of 198.19.0.0/16, 10,000 a second: OPTIONS
/// (each source once), then INVITEs (each source in turn, again and
/// again) until the callers are done. Calls the verified callers start
/// during the INVITE part all complete: spoofed sources cannot push
/// verified ones out of the edge's memory, nor crowd them out.
fn verified_callers_keep_service(mode: IoMode, test: &str) {
    let Some(rt) = RedTeamLab::start_or_skip(test, &RedTeamSpec::new(mode, 16)) else {
        return;
    };
    const SOURCES: u64 = 65_536;
    let callers = rt.lab.callers.addrs.clone();
    rt.verify_callers(&callers).unwrap();
    let spoofer = rt.spoofer().unwrap();
    let ctl = Arc::new(FloodControl::default());
    let flood = {
        let ctl = Arc::clone(&ctl);
        std::thread::spawn(move || {
            // At most 5 rounds of the range (about 33 s at this rate).
            spoofer.flood(5 * SOURCES, 10_000, Duration::from_secs(120), &ctl, |i| {
                let method = if i < SOURCES { "OPTIONS" } else { "INVITE" };
                flood_datagram(method, i % SOURCES)
            })
        })
    };
    assert!(
        wait_until(Duration::from_secs(120), || ctl.sent.load(Ordering::SeqCst)
            >= SOURCES + 5_000
            || flood.is_finished()),
        "the flood never reached its INVITE part: {}",
        ctl.sent.load(Ordering::SeqCst)
    );
    let started_at = ctl.sent.load(Ordering::SeqCst);
    let calls = rt.calls(&callers, 16, 50).unwrap();
    let still_flooding = !flood.is_finished();
    ctl.stop.store(true, Ordering::SeqCst);
    let flooded = flood.join().expect("flood thread").unwrap();
    let after = rt.settle().unwrap();
    eprintln!(
        "{test}: {} verified callers; a flood of {flooded} spoofed requests ({SOURCES} OPTIONS, then INVITEs from the same {SOURCES} sources in turn)\n\
         calls started after {started_at} flood packets, the flood {} when they ended: {}\n{}",
        callers.len(),
        if still_flooding { "still running" } else { "OVER" },
        calls.summary(),
        describe(&after)
    );
    assert!(
        calls.all_completed(),
        "verified callers lost service during the flood: {}",
        calls.summary()
    );
    assert!(
        still_flooding,
        "the flood ended before the calls did: the test proves nothing"
    );
}

#[test]
fn verified_callers_keep_service_through_a_65536_source_flood_in_socket_mode() {
    verified_callers_keep_service(
        IoMode::Socket,
        "verified_callers_keep_service_through_a_65536_source_flood_in_socket_mode",
    );
}

#[test]
fn verified_callers_keep_service_through_a_65536_source_flood_in_afxdp_mode() {
    verified_callers_keep_service(
        IoMode::AfXdp,
        "verified_callers_keep_service_through_a_65536_source_flood_in_afxdp_mode",
    );
}

// ------------------------------------------------------------------ 7

/// Trust integrity: an operator bans an address for good; forged 401s and
/// 404s naming that address (enough to cross the proxy's abuse limits)
/// must not turn the ban into a ten-minute one. AF_XDP only (the ban map
/// and `dce-edge ban` are the XDP filter's).
#[test]
fn an_operators_permanent_ban_is_not_shortened_by_an_automatic_one() {
    let test = "an_operators_permanent_ban_is_not_shortened_by_an_automatic_one";
    let Some(rt) = RedTeamLab::start_or_skip(test, &RedTeamSpec::new(IoMode::AfXdp, 1)) else {
        return;
    };
    let banned = rt.attacker().addrs[3];
    let (ok, said) = rt.operator(&["ban", &banned.to_string()]).unwrap();
    assert!(ok, "the operator's ban was refused: {said}");
    let before_bans = bans_covering(&rt.ban_list().unwrap(), banned);
    assert!(
        before_bans
            .iter()
            .any(|b| b.reason == "manual" && b.secs_left.is_none()),
        "{before_bans:?}"
    );

    let sender = SocketAddrV4::new(rt.attacker().addrs[1], 5060);
    let next = SocketAddrV4::new(banned, 5060);
    let mut forged = Vec::new();
    for i in 0..30 {
        forged.push((
            sender,
            forged_response(401, "REGISTER", next, &format!("pb401x{i}")),
        ));
    }
    for i in 0..60 {
        forged.push((
            sender,
            forged_response(404, "INVITE", next, &format!("pb404x{i}")),
        ));
    }
    let spoofer = rt.spoofer().unwrap();
    let before = rt.edge.snapshot().unwrap();
    let sent = spoofer.send_all(&forged, 200).unwrap();
    let after = rt.wait_accounted(&before, sent).unwrap();
    // Give the control thread a few more rounds to act, then look.
    let after = rt
        .settle()
        .map(|s| describe(&s))
        .unwrap_or_else(|_| describe(&after));
    let bans = bans_covering(&rt.ban_list().unwrap(), banned);
    let events: Vec<String> = rt
        .edge
        .events()
        .into_iter()
        .filter(|e| {
            e["event"] == "ban"
                && e["subject"]
                    .as_str()
                    .is_some_and(|s| s.starts_with(&banned.to_string()))
        })
        .map(|e| e.to_string())
        .collect();
    eprintln!(
        "{test}: `dce-edge ban {banned}` ({said}), then {sent} forged 401/404 responses naming {banned} from {sender}\n\
         bans of {banned} now:\n{}\n\
         ban events naming it: {events:?}\n{after}",
        bans_text(&bans)
    );
    assert!(
        !bans.is_empty()
            && bans
                .iter()
                .all(|b| b.reason == "manual" && b.secs_left.is_none()),
        "the operator's permanent ban of {banned} was replaced or shortened:\n{}",
        bans_text(&bans)
    );
}

/// Trust integrity: `dce-edge allow` at runtime reaches the proxy, not
/// only the XDP filter: an address that got only the unverified answer
/// allowance before gets every one of 30 OPTIONS answered after it is
/// allowed. AF_XDP only (`dce-edge allow` writes the XDP filter's list).
#[test]
fn a_runtime_allow_reaches_the_proxy() {
    let test = "a_runtime_allow_reaches_the_proxy";
    let Some(rt) = RedTeamLab::start_or_skip(test, &RedTeamSpec::new(IoMode::AfXdp, 1)) else {
        return;
    };
    let partner = rt.attacker().addrs[2];
    let burst = move || options_burst(SocketAddrV4::new(partner, 0), 30, Duration::from_secs(5));
    let before_allow = rt.as_attacker(burst).unwrap().unwrap();
    let (ok, said) = rt.operator(&["allow", &format!("{partner}/32")]).unwrap();
    assert!(ok, "dce-edge allow was refused: {said}");
    rt.settle().unwrap();
    let after_allow = rt.as_attacker(burst).unwrap().unwrap();
    eprintln!(
        "{test}: 30 OPTIONS from {partner}: {before_allow} answered before `dce-edge allow {partner}/32` ({said}), {after_allow} after\n{}",
        rt.describe()
    );
    assert!(
        before_allow < 30,
        "control: an unverified source should get only its small allowance, got {before_allow} of 30"
    );
    assert_eq!(
        after_allow, 30,
        "an allowed source gets every answer (the proxy never heard of the allow)"
    );
}

/// Trust integrity: a redirect group's targets are where the edge sends
/// callers, not sources it trusts. Requests from a redirect target's
/// address (one the attacker holds) are untrusted: those whose
/// Request-URI names the victim are relayed nowhere, and its OPTIONS get
/// the unverified allowance only.
fn redirect_target_is_untrusted(mode: IoMode, test: &str) {
    let mut spec = RedTeamSpec::new(mode, 1);
    // The attacker's third address is a redirect target (group `fr`).
    let target = Ipv4Addr::from(u32::from(ATTACKER_ADDR) + 2);
    spec.groups_extra = format!(
        "[[group]]\nname = \"fr\"\naction = \"redirect\"\ntargets = [\n  {{ address = \"{target}:5060\", priority = 1, weight = 1 }},\n]\n"
    );
    spec.prefixes_extra = "33,fr\n".into();
    let Some(rt) = RedTeamLab::start_or_skip(test, &spec) else {
        return;
    };
    assert_eq!(rt.attacker().addrs[2], target);
    // Control: the redirect group is live (a caller's OPTIONS for 33... is
    // answered 302 toward the target).
    let from = SocketAddr::from((rt.lab.callers.addr(), 0));
    let redirect = rt
        .as_callers(move || {
            options_ping_uri(
                from,
                SocketAddr::V4(EDGE_SIP),
                &format!("sip:33123456789@{EDGE_SIP}"),
                Duration::from_secs(10),
            )
        })
        .unwrap()
        .unwrap();
    assert_eq!(
        redirect,
        Some(302),
        "control: the redirect group answers 302"
    );

    let victim = rt.victim.sip_addr();
    let src = SocketAddrV4::new(target, 5062);
    let messages: Vec<String> = (0..5)
        .flat_map(|i| {
            [
                Req::new(
                    "MESSAGE",
                    &format!("sip:x@{victim}"),
                    src,
                    &format!("rm{i}"),
                )
                .body("relay me")
                .text(),
                Req::new("INFO", &format!("sip:x@{victim}"), src, &format!("ri{i}"))
                    .in_dialog("t1")
                    .text(),
                Req::new(
                    "OPTIONS",
                    &format!("sip:x@{victim}"),
                    src,
                    &format!("ro{i}"),
                )
                .text(),
            ]
        })
        .collect();
    let before = rt.edge.snapshot().unwrap();
    rt.as_attacker(|| send_from(src, &messages))
        .unwrap()
        .unwrap();
    let after = rt.wait_accounted(&before, messages.len() as u64).unwrap();
    let victim_got = rt.victim.settled();
    let answered = rt
        .as_attacker(move || {
            options_burst(SocketAddrV4::new(target, 0), 30, Duration::from_secs(5))
        })
        .unwrap()
        .unwrap();
    eprintln!(
        "{test}: {} requests from the redirect target {target} with the victim as Request-URI; 30 OPTIONS from it got {answered} answers\n{}\n{}",
        messages.len(),
        rt.victim.report(),
        describe(&after)
    );
    assert_eq!(
        victim_got,
        0,
        "a redirect target's requests were relayed to the victim: {}",
        rt.victim.report()
    );
    assert!(
        answered <= 10,
        "a redirect target got {answered} of 30 OPTIONS answered: it is trusted"
    );
}

#[test]
fn a_redirect_target_is_not_trusted_in_socket_mode() {
    redirect_target_is_untrusted(
        IoMode::Socket,
        "a_redirect_target_is_not_trusted_in_socket_mode",
    );
}

#[test]
fn a_redirect_target_is_not_trusted_in_afxdp_mode() {
    redirect_target_is_untrusted(
        IoMode::AfXdp,
        "a_redirect_target_is_not_trusted_in_afxdp_mode",
    );
}
