//! Emergency calls in the XDP program (BPF_PROG_TEST_RUN): recognised by
//! their Request-URI or by a call in progress, passed past the budgets,
//! rate limits and (by default) bans, within budgets of their own; and what
//! a flood of forged ones can and cannot do.

use std::net::IpAddr;
use std::time::Duration;

use wire::build::UdpFrameBuilder as UdpFrame;
use xdp::abi::{self, slot};
use xdp::test_run::{action_name, XDP_DROP, XDP_PASS};
use xdp::{BanReason, Cidr, FilterConfig};

use super::program::{counts, describe, pass_mode, with_unverified_burst, Harness, HOUR_NS};
use super::support::OnOneCpu;

const CALLER4: &str = "198.18.7.10";
const CALLER6: &str = "2001:db8:7:1::10";
const DST4: &str = "198.18.0.2";
const DST6: &str = "2001:db8:1:2::2";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A request with the given Request-URI and a phone's User-Agent.
fn request(method: &str, uri: &str, user_agent: &str) -> Vec<u8> {
    format!(
        "{method} {uri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 198.18.7.10:5060;branch=z9hG4bK-e1;rport\r\n\
         Max-Forwards: 70\r\n\
         To: <{uri}>\r\n\
         From: \"caller\" <sip:5551234@198.18.7.10>;tag=e1\r\n\
         Call-ID: e1@198.18.7.10\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:5551234@198.18.7.10:5060>\r\n\
         User-Agent: {user_agent}\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn frame_from(src: &str, payload: &[u8]) -> Vec<u8> {
    let src = ip(src);
    let dst = if src.is_ipv4() { ip(DST4) } else { ip(DST6) };
    UdpFrame::new(src, dst, 5060, 5060, payload).build()
}

fn call_911(src: &str) -> Vec<u8> {
    frame_from(
        src,
        &request("INVITE", "sip:911@198.18.0.2", "Yealink SIP-T46S"),
    )
}

/// An hour-long GCRA budget of `burst` packets: nothing refills during a test.
fn burst_of(burst: u64) -> abi::Rate {
    abi::Rate {
        interval_ns: HOUR_NS,
        tolerance_ns: (burst - 1) * HOUR_NS,
    }
}

/// A budget nothing in a test reaches.
fn unlimited() -> abi::Rate {
    abi::Rate {
        interval_ns: 1,
        tolerance_ns: 1 << 62,
    }
}

/// The unverified budget spent after one packet, and the emergency
/// budgets set: this CPU's `cpu` packets and each source's `per_source`.
fn harness(
    test: &str,
    cfg: FilterConfig,
    cpu: abi::Rate,
    per_source: abi::Rate,
) -> Option<Harness> {
    let mut h = with_unverified_burst(test, cfg, 1)?;
    let mut c = h.filter.config_entry().unwrap();
    c.emergency = cpu;
    c.rates[abi::CLASS_EMERGENCY] = per_source;
    h.filter.set_config_entry(c).unwrap();
    Some(h)
}

/// Spends the unverified budget (its burst of one) with an ordinary call.
fn spend_unverified_budget(h: &Harness) {
    let ordinary = frame_from(
        "198.18.9.1",
        &request("INVITE", "sip:100@198.18.0.2", "phone"),
    );
    let (_, d) = h.run_n(&ordinary, 2);
    assert_eq!(
        describe(&d),
        counts(&[(slot::PASSED, 1), (slot::DROP_UNVERIFIED, 1)]),
        "the unverified budget is spent"
    );
}

#[test]
fn a_fresh_caller_dialling_an_emergency_number_passes_the_spent_budget_for_strangers() {
    let Some(h) = harness(
        "a_fresh_caller_dialling_an_emergency_number_passes",
        pass_mode(),
        unlimited(),
        unlimited(),
    ) else {
        return;
    };
    let _cpu = OnOneCpu::pin();
    spend_unverified_budget(&h);

    // The caller was never seen: its ordinary call is shed, its 911 passes.
    let ordinary = frame_from(CALLER4, &request("INVITE", "sip:100@198.18.0.2", "phone"));
    h.expect(&ordinary, XDP_DROP, slot::DROP_UNVERIFIED, &[]);
    h.expect(
        &call_911(CALLER4),
        XDP_PASS,
        slot::PASSED,
        &[slot::EV_EMERGENCY_PASSED],
    );
    h.expect(
        &call_911(CALLER6),
        XDP_PASS,
        slot::PASSED,
        &[slot::EV_EMERGENCY_PASSED],
    );
}

#[test]
fn every_form_of_an_emergency_request_uri_is_recognised() {
    let Some(h) = harness(
        "every_form_of_an_emergency_request_uri_is_recognised",
        pass_mode(),
        unlimited(),
        unlimited(),
    ) else {
        return;
    };
    let _cpu = OnOneCpu::pin();
    spend_unverified_budget(&h);
    for uri in [
        "sip:911@198.18.0.2",
        "sip:112@198.18.0.2;user=phone",
        "SIP:999@198.18.0.2",
        "sips:112@198.18.0.2",
        "tel:911",
        "tel:112;phone-context=+44",
        "sip:000@[2001:db8::2]",
        "sip:+911@198.18.0.2",
        "sip:9-1-1@198.18.0.2",
        "tel:(1)1.2",
        "urn:service:sos",
        "urn:service:sos.police",
        "URN:Service:SOS.fire",
        "urn:service:sos;x=1",
    ] {
        let (action, d) = h.run_n(&frame_from(CALLER4, &request("INVITE", uri, "phone")), 1);
        assert_eq!(
            (action_name(action), describe(&d)),
            (
                "XDP_PASS",
                counts(&[(slot::PASSED, 1), (slot::EV_EMERGENCY_PASSED, 1)])
            ),
            "{uri}"
        );
    }
}

#[test]
fn lookalikes_are_ordinary_calls() {
    let Some(h) = harness(
        "lookalikes_are_ordinary_calls",
        pass_mode(),
        unlimited(),
        unlimited(),
    ) else {
        return;
    };
    let _cpu = OnOneCpu::pin();
    spend_unverified_budget(&h);
    // Each would have to pass the spent budget for strangers: none is an
    // emergency call, so each is shed there.
    for uri in [
        "sip:9111@198.18.0.2",
        "sip:0911@198.18.0.2",
        "sip:911x@198.18.0.2",
        "sip:+1-911@198.18.0.2",
        "sip:91@198.18.0.2",
        "sip:9 11@198.18.0.2",
        "sip:911-----------------------x@198.18.0.2",
        "sip:alice@198.18.0.2",
        "sip:198.18.0.2",
        "tel:+1911",
        "urn:service:sosx",
        "urn:service:so",
        "urn:service:counseling",
        "http:911@198.18.0.2",
        // Escaped digits are the proxy's to decode, not the NIC path's.
        "sip:%39%31%31@198.18.0.2",
    ] {
        let (action, d) = h.run_n(&frame_from(CALLER4, &request("INVITE", uri, "phone")), 1);
        assert_eq!(
            (action_name(action), describe(&d)),
            ("XDP_DROP", counts(&[(slot::DROP_UNVERIFIED, 1)])),
            "{uri}"
        );
    }
    // 911 in the To header or the body is not the Request-URI; a response
    // is no call.
    let mut to_911 = request("INVITE", "sip:100@198.18.0.2", "phone");
    to_911.extend_from_slice(b"sip:911@198.18.0.2");
    h.expect(
        &frame_from(CALLER4, &to_911),
        XDP_DROP,
        slot::DROP_UNVERIFIED,
        &[],
    );
    let response = b"SIP/2.0 200 OK\r\nTo: <sip:911@198.18.0.2>\r\nContent-Length: 0\r\n\r\n";
    h.expect(
        &frame_from(CALLER4, response),
        XDP_DROP,
        slot::DROP_UNVERIFIED,
        &[],
    );
}

#[test]
fn numbers_and_urns_follow_the_configuration() {
    let cfg = FilterConfig {
        emergency_numbers: vec!["9111".into()],
        emergency_urns: false,
        ..pass_mode()
    };
    let Some(mut h) = harness(
        "numbers_and_urns_follow_the_configuration",
        cfg,
        unlimited(),
        unlimited(),
    ) else {
        return;
    };
    let _cpu = OnOneCpu::pin();
    spend_unverified_budget(&h);
    let invite = |uri: &str| frame_from(CALLER4, &request("INVITE", uri, "phone"));
    h.expect(
        &invite("sip:9111@198.18.0.2"),
        XDP_PASS,
        slot::PASSED,
        &[slot::EV_EMERGENCY_PASSED],
    );
    h.expect(
        &invite("sip:911@198.18.0.2"),
        XDP_DROP,
        slot::DROP_UNVERIFIED,
        &[],
    );
    h.expect(
        &invite("urn:service:sos"),
        XDP_DROP,
        slot::DROP_UNVERIFIED,
        &[],
    );

    // The appliance replaces them with its route table's at run time.
    h.filter
        .set_emergency_numbers(&["112".into(), "911".into()])
        .unwrap();
    h.expect(
        &invite("sip:911@198.18.0.2"),
        XDP_PASS,
        slot::PASSED,
        &[slot::EV_EMERGENCY_PASSED],
    );
    h.expect(
        &invite("sip:9111@198.18.0.2"),
        XDP_DROP,
        slot::DROP_UNVERIFIED,
        &[],
    );
    // An empty list: nothing is an emergency number.
    h.filter.set_emergency_numbers(&[]).unwrap();
    h.expect(
        &invite("sip:911@198.18.0.2"),
        XDP_DROP,
        slot::DROP_UNVERIFIED,
        &[],
    );
    // What the map cannot hold is refused, and the list in force stays.
    assert!(h.filter.set_emergency_numbers(&["91a".into()]).is_err());
    assert!(h
        .filter
        .set_emergency_numbers(&["1234567890123456".into()])
        .is_err());
    assert!(h
        .filter
        .set_emergency_numbers(&vec!["1".to_string(); abi::MAX_EMERGENCY_NUMBERS + 1])
        .is_err());
}

#[test]
fn emergency_calls_reach_through_bans_and_the_blocklist_unless_the_operator_keeps_them() {
    let blocked = "198.18.66.7";
    let cfg = FilterConfig {
        blocklist: vec![format!("{blocked}/32").parse().unwrap()],
        ..pass_mode()
    };
    let Some(mut h) = harness(
        "emergency_calls_reach_through_bans",
        cfg.clone(),
        unlimited(),
        unlimited(),
    ) else {
        return;
    };
    let _cpu = OnOneCpu::pin();
    h.filter
        .ban(
            Cidr::host(ip(CALLER4)),
            Some(Duration::from_secs(600)),
            BanReason::Flood,
            "",
        )
        .unwrap();
    h.filter
        .auto_ban(ip(CALLER6), Duration::from_secs(600), BanReason::Scanner)
        .unwrap();
    let options = |src: &str| frame_from(src, &request("OPTIONS", "sip:100@198.18.0.2", "phone"));
    h.expect(&options(CALLER4), XDP_DROP, slot::DROP_BANNED, &[]);
    h.expect(&options(CALLER6), XDP_DROP, slot::DROP_BANNED, &[]);
    h.expect(&options(blocked), XDP_DROP, slot::DROP_BLOCKLIST, &[]);
    for src in [CALLER4, CALLER6, blocked] {
        h.expect(
            &call_911(src),
            XDP_PASS,
            slot::PASSED,
            &[slot::EV_EMERGENCY_PASSED],
        );
    }

    // Kept: the ban and the blocklist apply to emergency calls too.
    let mut c = h.filter.config_entry().unwrap();
    c.flags |= abi::CFG_EMERGENCY_KEEP_BANS;
    h.filter.set_config_entry(c).unwrap();
    h.expect(&call_911(CALLER4), XDP_DROP, slot::DROP_BANNED, &[]);
    h.expect(&call_911(CALLER6), XDP_DROP, slot::DROP_BANNED, &[]);
    h.expect(&call_911(blocked), XDP_DROP, slot::DROP_BLOCKLIST, &[]);
    // ... and the configuration says so in the flags.
    let kept = FilterConfig {
        emergency_keep_bans: true,
        ..cfg
    };
    assert_ne!(kept.to_abi().flags & abi::CFG_EMERGENCY_KEEP_BANS, 0);
}

#[test]
fn a_spoofed_emergency_flood_gets_the_cpu_budget_and_no_more_while_a_verified_caller_still_passes()
{
    let Some(mut h) = harness(
        "a_spoofed_emergency_flood_gets_the_cpu_budget",
        pass_mode(),
        burst_of(5),
        unlimited(),
    ) else {
        return;
    };
    let _cpu = OnOneCpu::pin();
    spend_unverified_budget(&h);
    // Forged 911 calls from 40 addresses: 5 pass, the rest are shed and
    // counted as emergency calls over budget (never silently).
    let mut passed = 0;
    let mut over = 0;
    for i in 0..40 {
        let (action, d) = h.run_n(&call_911(&format!("198.18.8.{}", i + 1)), 1);
        if action == XDP_PASS {
            assert_eq!(
                describe(&d),
                counts(&[(slot::PASSED, 1), (slot::EV_EMERGENCY_PASSED, 1)])
            );
            passed += 1;
        } else {
            assert_eq!(
                describe(&d),
                counts(&[(slot::DROP_EMERGENCY_OVER_BUDGET, 1)])
            );
            over += 1;
        }
    }
    assert_eq!((passed, over), (5, 35));

    // A caller the appliance has verified still gets its emergency call
    // through: over the emergency budget, it takes the ordinary path.
    let verified = "198.18.7.50";
    h.filter
        .verify(ip(verified), Duration::from_secs(600))
        .unwrap();
    h.expect(
        &call_911(verified),
        XDP_PASS,
        slot::PASSED,
        &[slot::EV_VERIFIED],
    );
    // ... as does an allowlisted one, which never spends the emergency budget.
    let mut c = h.filter.config_entry().unwrap();
    c.emergency = burst_of(1);
    h.filter.set_config_entry(c).unwrap();
    h.filter.allow(Cidr::host(ip("198.18.7.60"))).unwrap();
    h.expect(
        &call_911("198.18.7.60"),
        XDP_PASS,
        slot::PASSED,
        &[slot::EV_ALLOWLISTED],
    );
}

#[test]
fn one_address_cannot_spend_the_emergency_budget_of_everyone_else() {
    let Some(h) = harness(
        "one_address_cannot_spend_the_emergency_budget",
        pass_mode(),
        burst_of(50),
        burst_of(3),
    ) else {
        return;
    };
    let _cpu = OnOneCpu::pin();
    spend_unverified_budget(&h);
    let (_, d) = h.run_n(&call_911(CALLER4), 20);
    assert_eq!(
        describe(&d),
        counts(&[
            (slot::PASSED, 3),
            (slot::EV_EMERGENCY_PASSED, 3),
            (slot::DROP_EMERGENCY_OVER_BUDGET, 17)
        ]),
        "the source's own emergency budget is 3"
    );
    // Someone else's emergency call still finds the CPU's budget.
    h.expect(
        &call_911("198.18.7.11"),
        XDP_PASS,
        slot::PASSED,
        &[slot::EV_EMERGENCY_PASSED],
    );
    // An IPv6 source's budget is its /64's, like every per-source budget.
    let (_, d) = h.run_n(&call_911("2001:db8:7:1::1"), 3);
    assert_eq!(
        describe(&d),
        counts(&[(slot::PASSED, 3), (slot::EV_EMERGENCY_PASSED, 3)])
    );
    h.expect(
        &call_911("2001:db8:7:1::2"),
        XDP_DROP,
        slot::DROP_EMERGENCY_OVER_BUDGET,
        &[],
    );
}

#[test]
fn a_banned_source_over_the_emergency_budget_is_counted_as_an_emergency_drop() {
    let Some(mut h) = harness(
        "a_banned_source_over_the_emergency_budget",
        pass_mode(),
        burst_of(1),
        unlimited(),
    ) else {
        return;
    };
    let _cpu = OnOneCpu::pin();
    h.filter
        .ban(Cidr::host(ip(CALLER4)), None, BanReason::Manual, "")
        .unwrap();
    h.expect(
        &call_911(CALLER4),
        XDP_PASS,
        slot::PASSED,
        &[slot::EV_EMERGENCY_PASSED],
    );
    // It never takes the ordinary path, where a ban would have stopped it.
    h.expect(
        &call_911(CALLER4),
        XDP_DROP,
        slot::DROP_EMERGENCY_OVER_BUDGET,
        &[],
    );
}

#[test]
fn the_rest_of_a_call_in_progress_passes_until_it_is_forgotten_or_expires() {
    let Some(mut h) = harness(
        "the_rest_of_a_call_in_progress_passes",
        pass_mode(),
        unlimited(),
        unlimited(),
    ) else {
        return;
    };
    let _cpu = OnOneCpu::pin();
    spend_unverified_budget(&h);
    // The ACK and BYE go to the emergency centre's Contact, not to 911.
    let bye = |src: &str| frame_from(src, &request("BYE", "sip:psap-7@198.18.0.200", "phone"));
    h.expect(&bye(CALLER4), XDP_DROP, slot::DROP_UNVERIFIED, &[]);

    h.filter
        .note_emergency_call(ip(CALLER4), Duration::from_secs(600))
        .unwrap();
    h.filter
        .note_emergency_call(ip(CALLER6), Duration::from_secs(600))
        .unwrap();
    h.expect(
        &bye(CALLER4),
        XDP_PASS,
        slot::PASSED,
        &[slot::EV_EMERGENCY_PASSED],
    );
    // The IPv6 caller's /64 is its source, as for every per-source state.
    h.expect(
        &bye("2001:db8:7:1::99"),
        XDP_PASS,
        slot::PASSED,
        &[slot::EV_EMERGENCY_PASSED],
    );
    h.expect(&bye("198.18.7.11"), XDP_DROP, slot::DROP_UNVERIFIED, &[]);

    assert!(h.filter.forget_emergency_call(ip(CALLER4)).unwrap());
    assert!(!h.filter.forget_emergency_call(ip(CALLER4)).unwrap());
    h.expect(&bye(CALLER4), XDP_DROP, slot::DROP_UNVERIFIED, &[]);
    // Expired: no longer a call in progress.
    h.filter
        .note_emergency_call(ip(CALLER4), Duration::ZERO)
        .unwrap();
    h.expect(&bye(CALLER4), XDP_DROP, slot::DROP_UNVERIFIED, &[]);
}

#[test]
fn an_emergency_call_is_not_refused_for_its_user_agent_but_a_scanner_gains_nothing_else() {
    let Some(mut h) = harness(
        "an_emergency_call_is_not_refused_for_its_user_agent",
        pass_mode(),
        unlimited(),
        burst_of(2),
    ) else {
        return;
    };
    let mut c = h.filter.config_entry().unwrap();
    c.unverified = unlimited();
    h.filter.set_config_entry(c).unwrap();
    let _cpu = OnOneCpu::pin();
    // A phone whose User-Agent happens to match a signature still reaches
    // emergency services (the proxy routes it there and nowhere else) ...
    let scanner_911 = frame_from(
        CALLER4,
        &request("INVITE", "sip:911@198.18.0.2", "friendly-scanner"),
    );
    let (_, d) = h.run_n(&scanner_911, 2);
    assert_eq!(
        describe(&d),
        counts(&[(slot::PASSED, 2), (slot::EV_EMERGENCY_PASSED, 2)])
    );
    // ... within its source's emergency budget; past it, the ordinary path
    // scans it (the unverified budget is unlimited here), bans nobody
    // unverified, and drops it as a scanner.
    h.expect(
        &scanner_911,
        XDP_DROP,
        slot::DROP_SCANNER,
        &[slot::EV_SCANNER_UNPROVEN],
    );
    // Its other requests are scanned as always.
    let scan = frame_from(
        CALLER4,
        &request("OPTIONS", "sip:100@198.18.0.2", "friendly-scanner"),
    );
    h.expect(
        &scan,
        XDP_DROP,
        slot::DROP_SCANNER,
        &[slot::EV_SCANNER_UNPROVEN],
    );
}

#[test]
fn the_first_fragment_of_an_emergency_call_from_a_banned_source_stays_banned() {
    // A first fragment cannot be read as a call; it is the ban's.
    let Some(mut h) = harness(
        "the_first_fragment_of_an_emergency_call",
        pass_mode(),
        unlimited(),
        unlimited(),
    ) else {
        return;
    };
    h.filter
        .ban(Cidr::host(ip(CALLER4)), None, BanReason::Manual, "")
        .unwrap();
    let mut payload = request("INVITE", "sip:911@198.18.0.2", "phone");
    payload.resize(1600, b'x');
    let f = UdpFrame::new(ip(CALLER4), ip(DST4), 5060, 5060, &payload);
    let frags = f.ipv4_fragments(1200);
    h.expect(&frags[0], XDP_DROP, slot::DROP_BANNED, &[]);
}

#[test]
fn the_defaults_bound_a_flood_and_leave_every_real_call_room() {
    // The defaults the filter writes: a CPU's emergency budget of 100 at
    // once and 200 a second, a source's 20 and 10, far above what one call
    // sends (an INVITE, its retransmissions, ACK, BYE).
    let c = FilterConfig::default().to_abi();
    assert_eq!(c.emergency.interval_ns, 1_000_000_000 / 200);
    assert_eq!(c.emergency.tolerance_ns, 99 * (1_000_000_000 / 200));
    let per_source = c.rates[abi::CLASS_EMERGENCY];
    assert_eq!(per_source.interval_ns, 1_000_000_000 / 10);
    assert_eq!(per_source.tolerance_ns, 19 * (1_000_000_000 / 10));
    assert_ne!(c.flags & abi::CFG_EMERGENCY_URNS, 0);
    assert_eq!(c.flags & abi::CFG_EMERGENCY_KEEP_BANS, 0);
}
