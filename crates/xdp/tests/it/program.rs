//! BPF_PROG_TEST_RUN tests of the XDP program: each builds a frame, runs the
//! loaded program on it, and checks the verdict and that exactly the
//! expected counters moved (one verdict slot, plus any expected events).

use std::net::{IpAddr, UdpSocket};
use std::time::Duration;

use lab::privilege::privileged_or_skip;
use wire::build::{sip_request, Ipv6Ext, UdpFrameBuilder as UdpFrame, TPID_8021AD, TPID_8021Q};
use xdp::abi::{self, slot};
use xdp::test_run::{self, action_name, XDP_DROP, XDP_PASS};

use super::support::OnOneCpu;
use xdp::{
    AutoBan, BanOrigin, BanReason, Cidr, Filter, FilterConfig, FragmentPolicy, RateConfig,
    Unbanned, VerdictMode,
};

const SRC4: &str = "198.18.0.10";
const DST4: &str = "198.18.0.2";
const SRC6: &str = "2001:db8:1:2::10";
const DST6: &str = "2001:db8:1:2::2";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn options() -> Vec<u8> {
    sip_request("OPTIONS", "Linphone/5.0", "alice")
}

fn invite() -> Vec<u8> {
    sip_request("INVITE", "Linphone/5.0", "alice")
}

fn udp4(payload: &[u8]) -> UdpFrame {
    UdpFrame::new(ip(SRC4), ip(DST4), 5062, 5060, payload)
}

fn udp6(payload: &[u8]) -> UdpFrame {
    UdpFrame::new(ip(SRC6), ip(DST6), 5062, 5060, payload)
}

/// A loaded, configured, unattached filter.
pub(super) struct Harness {
    pub(super) filter: Filter,
}

impl Harness {
    pub(super) fn with(test: &str, cfg: FilterConfig) -> Option<Harness> {
        if !privileged_or_skip(test) {
            return None;
        }
        let filter = Filter::load_unattached(&cfg).expect("the program loads");
        Some(Harness { filter })
    }

    pub(super) fn new(test: &str) -> Option<Harness> {
        Harness::with(test, pass_mode())
    }

    pub(super) fn counters(&self) -> [u64; slot::SLOTS] {
        self.filter.counters().unwrap()
    }

    /// Runs `frame` `repeat` times in one kernel call (one CPU, no gaps) and
    /// returns the last action and the counter deltas.
    pub(super) fn run_n(&self, frame: &[u8], repeat: u32) -> (u32, [u64; slot::SLOTS]) {
        let before = self.counters();
        let r = test_run::run_repeat(self.filter.program_fd(), frame, None, repeat).unwrap();
        let after = self.counters();
        let mut delta = [0u64; slot::SLOTS];
        for i in 0..slot::SLOTS {
            delta[i] = after[i] - before[i];
        }
        (r.action, delta)
    }

    /// Runs once; asserts the action, that verdict slot `slot_moved` moved by
    /// one, that each of `events` moved by one, and that nothing else moved.
    #[track_caller]
    pub(super) fn expect(&self, frame: &[u8], action: u32, slot_moved: usize, events: &[usize]) {
        let (got, delta) = self.run_n(frame, 1);
        assert_eq!(
            action_name(got),
            action_name(action),
            "verdict; counters moved: {}",
            describe(&delta)
        );
        let mut want = [0u64; slot::SLOTS];
        want[slot_moved] = 1;
        for e in events {
            want[*e] += 1;
        }
        assert_eq!(
            describe(&delta),
            describe(&want),
            "exactly the expected counters must move"
        );
    }
}

pub(super) fn describe(delta: &[u64; slot::SLOTS]) -> String {
    let moved: Vec<String> = delta
        .iter()
        .enumerate()
        .filter(|(_, v)| **v != 0)
        .map(|(i, v)| format!("{}+{v}", abi::SLOT_NAMES[i]))
        .collect();
    if moved.is_empty() {
        "nothing".into()
    } else {
        moved.join(", ")
    }
}

/// Pass mode, with automatic bans of verified scanners on (the default is
/// off) so that their verdicts and events are tested.
pub(super) fn pass_mode() -> FilterConfig {
    FilterConfig {
        mode: VerdictMode::Pass,
        auto_ban: true,
        ..FilterConfig::default()
    }
}

// ------------------------------------------------------------ good traffic

#[test]
fn ipv4_options_request_passes() {
    let Some(h) = Harness::new("ipv4_options_request_passes") else {
        return;
    };
    h.expect(&udp4(&options()).build(), XDP_PASS, slot::PASSED, &[]);
}

#[test]
fn ipv6_options_request_passes() {
    let Some(h) = Harness::new("ipv6_options_request_passes") else {
        return;
    };
    h.expect(&udp6(&options()).build(), XDP_PASS, slot::PASSED, &[]);
}

#[test]
fn status_line_response_passes() {
    let Some(h) = Harness::new("status_line_response_passes") else {
        return;
    };
    let resp = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 198.18.0.2:5060;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n";
    h.expect(&udp4(resp).build(), XDP_PASS, slot::PASSED, &[]);
}

#[test]
fn redirect_mode_without_a_bound_socket_passes() {
    let cfg = FilterConfig {
        mode: VerdictMode::Redirect,
        ..FilterConfig::default()
    };
    let Some(h) = Harness::with("redirect_mode_without_a_bound_socket_passes", cfg) else {
        return;
    };
    h.expect(&udp4(&options()).build(), XDP_PASS, slot::PASSED, &[]);
}

#[test]
fn second_configured_port_is_watched() {
    let cfg = FilterConfig {
        sip_ports: vec![5060, 5080],
        ..pass_mode()
    };
    let Some(h) = Harness::with("second_configured_port_is_watched", cfg) else {
        return;
    };
    let mut f = udp4(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n0123456789");
    f.dport = 5080;
    h.expect(&f.build(), XDP_DROP, slot::DROP_NOT_SIP, &[]);
}

// ------------------------------------------------------ not ours: untouched

#[test]
fn udp_to_another_port_passes_untouched_even_with_a_scanner_agent() {
    let Some(h) = Harness::new("udp_to_another_port_passes_untouched") else {
        return;
    };
    let mut f = udp4(&sip_request("OPTIONS", "friendly-scanner", "x"));
    f.dport = 53;
    h.expect(&f.build(), XDP_PASS, slot::PASSED_OTHER, &[]);
}

#[test]
fn ssh_and_arp_pass_untouched() {
    let Some(h) = Harness::new("ssh_and_arp_pass_untouched") else {
        return;
    };
    let mut ssh = udp4(b"SSH-2.0-OpenSSH_9.2\r\n");
    ssh.dport = 22;
    let mut bytes = ssh.build();
    bytes[14 + 9] = 6;
    h.expect(&bytes, XDP_PASS, slot::PASSED_OTHER, &[]);
    let mut arp = vec![0xffu8; 6];
    arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
    arp.extend_from_slice(&[0u8; 28]);
    h.expect(&arp, XDP_PASS, slot::PASSED_OTHER, &[]);
}

// ----------------------------------------------------------------- VLANs

#[test]
fn single_vlan_tag_is_looked_through() {
    let Some(h) = Harness::new("single_vlan_tag_is_looked_through") else {
        return;
    };
    let mut f = udp4(&sip_request("OPTIONS", "friendly-scanner", "x"));
    f.vlan_tags = vec![(TPID_8021Q, 100)];
    h.expect(
        &f.build(),
        XDP_DROP,
        slot::DROP_SCANNER,
        &[slot::EV_SCANNER_UNPROVEN],
    );
    let mut good = udp6(&options());
    good.vlan_tags = vec![(TPID_8021Q, 100)];
    h.expect(&good.build(), XDP_PASS, slot::PASSED, &[]);
}

#[test]
fn double_vlan_tag_is_looked_through() {
    let Some(h) = Harness::new("double_vlan_tag_is_looked_through") else {
        return;
    };
    let mut f = udp6(&sip_request("OPTIONS", "sipvicious", "x"));
    f.vlan_tags = vec![(TPID_8021AD, 10), (TPID_8021Q, 100)];
    h.expect(
        &f.build(),
        XDP_DROP,
        slot::DROP_SCANNER,
        &[slot::EV_SCANNER_UNPROVEN],
    );
}

#[test]
fn third_vlan_tag_is_not_ours_and_passes() {
    let Some(h) = Harness::new("third_vlan_tag_is_not_ours_and_passes") else {
        return;
    };
    let mut f = udp4(&sip_request("OPTIONS", "friendly-scanner", "x"));
    f.vlan_tags = vec![(TPID_8021AD, 10), (TPID_8021Q, 100), (TPID_8021Q, 7)];
    h.expect(&f.build(), XDP_PASS, slot::PASSED_OTHER, &[]);
}

// ------------------------------------------------------- IPv4 options, IPv6

#[test]
fn ipv4_options_are_skipped() {
    let Some(h) = Harness::new("ipv4_options_are_skipped") else {
        return;
    };
    let mut f = udp4(&sip_request("OPTIONS", "friendly-scanner", "x"));
    f.ipv4_options = vec![1; 40]; // 40 bytes of NOP: the largest IHL
    h.expect(
        &f.build(),
        XDP_DROP,
        slot::DROP_SCANNER,
        &[slot::EV_SCANNER_UNPROVEN],
    );
}

#[test]
fn ipv6_extension_headers_are_walked() {
    let Some(h) = Harness::new("ipv6_extension_headers_are_walked") else {
        return;
    };
    let mut f = udp6(&sip_request("OPTIONS", "friendly-scanner", "x"));
    f.ipv6_ext = vec![
        Ipv6Ext {
            kind: 0,
            len_units: 0,
        },
        Ipv6Ext {
            kind: 43,
            len_units: 2,
        },
        Ipv6Ext {
            kind: 60,
            len_units: 1,
        },
        Ipv6Ext {
            kind: 51,
            len_units: 1,
        },
    ];
    h.expect(
        &f.build(),
        XDP_DROP,
        slot::DROP_SCANNER,
        &[slot::EV_SCANNER_UNPROVEN],
    );
}

#[test]
fn ipv6_chain_deeper_than_the_walk_is_malformed() {
    let Some(h) = Harness::new("ipv6_chain_deeper_than_the_walk_is_malformed") else {
        return;
    };
    let mut f = udp6(&options());
    f.ipv6_ext = vec![
        Ipv6Ext {
            kind: 60,
            len_units: 0
        };
        abi::MAX_IPV6_EXT_HEADERS + 1
    ];
    h.expect(&f.build(), XDP_DROP, slot::DROP_MALFORMED, &[]);
    // ... while a chain at the limit is still walked.
    f.ipv6_ext.pop();
    h.expect(&f.build(), XDP_PASS, slot::PASSED, &[]);
}

// ------------------------------------------------------------- truncation

/// Cuts before the UDP header is whole pass (not provably SIP; the kernel
/// drops broken IP itself); cuts after it are malformed (the IP and UDP
/// lengths promise bytes that are not there).
#[test]
fn truncated_frames_at_every_header_boundary() {
    let Some(h) = Harness::new("truncated_frames_at_every_header_boundary") else {
        return;
    };
    let cases: Vec<(&str, Vec<u8>, usize)> = vec![
        ("ipv4", udp4(&options()).build(), 14 + 20),
        ("ipv6", udp6(&options()).build(), 14 + 40),
        (
            "vlan ipv4",
            {
                let mut f = udp4(&options());
                f.vlan_tags = vec![(TPID_8021Q, 5)];
                f.build()
            },
            18 + 20,
        ),
        (
            "qinq ipv6",
            {
                let mut f = udp6(&options());
                f.vlan_tags = vec![(TPID_8021AD, 5), (TPID_8021Q, 6)];
                f.build()
            },
            22 + 40,
        ),
    ];
    for (name, frame, udp_at) in cases {
        let l3_at = if name.starts_with("qinq") {
            22
        } else if name.starts_with("vlan") {
            18
        } else {
            14
        };
        let cuts = [
            (13, false),
            (14, false),
            (l3_at - 1, false),
            (l3_at, false),
            (l3_at + 1, false),
            (udp_at - 1, false),
            (udp_at, false),
            (udp_at + 7, false),
            (udp_at + 8, true),
            (udp_at + 9, true),
            (frame.len() - 1, true),
        ];
        for (cut, malformed) in cuts {
            if cut < 14 {
                // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet
                // header (EINVAL); a NIC never hands XDP one either.
                continue;
            }
            let (action, slot_moved) = if malformed {
                (XDP_DROP, slot::DROP_MALFORMED)
            } else {
                (XDP_PASS, slot::PASSED_OTHER)
            };
            let (got, delta) = h.run_n(&frame[..cut], 1);
            let mut want = [0u64; slot::SLOTS];
            want[slot_moved] = 1;
            assert_eq!(
                (action_name(got), describe(&delta)),
                (action_name(action), describe(&want)),
                "{name} cut at {cut} of {}",
                frame.len()
            );
        }
    }
}

#[test]
fn udp_length_beyond_the_ip_payload_is_malformed() {
    let Some(h) = Harness::new("udp_length_beyond_the_ip_payload_is_malformed") else {
        return;
    };
    let mut bytes = udp4(&options()).build();
    let ulen = u16::from_be_bytes([bytes[38], bytes[39]]) + 1;
    bytes[38..40].copy_from_slice(&ulen.to_be_bytes());
    h.expect(&bytes, XDP_DROP, slot::DROP_MALFORMED, &[]);
}

#[test]
fn udp_length_below_its_header_is_malformed() {
    let Some(h) = Harness::new("udp_length_below_its_header_is_malformed") else {
        return;
    };
    let mut bytes = udp6(&options()).build();
    bytes[54 + 4..54 + 6].copy_from_slice(&7u16.to_be_bytes());
    h.expect(&bytes, XDP_DROP, slot::DROP_MALFORMED, &[]);
}

// -------------------------------------------------------------- fragments

#[test]
fn first_fragment_is_dropped_by_default() {
    let Some(h) = Harness::new("first_fragment_is_dropped_by_default") else {
        return;
    };
    let mut f4 = udp4(&options());
    f4.first_fragment = true;
    h.expect(&f4.build(), XDP_DROP, slot::DROP_FRAGMENT, &[]);
    let mut f6 = udp6(&options());
    f6.first_fragment = true;
    h.expect(&f6.build(), XDP_DROP, slot::DROP_FRAGMENT, &[]);
}

#[test]
fn first_fragment_passes_when_the_policy_says_pass() {
    let cfg = FilterConfig {
        fragments: FragmentPolicy::Pass,
        ..pass_mode()
    };
    let Some(h) = Harness::with("first_fragment_passes_when_the_policy_says_pass", cfg) else {
        return;
    };
    let mut f4 = udp4(&options());
    f4.first_fragment = true;
    h.expect(
        &f4.build(),
        XDP_PASS,
        slot::PASSED,
        &[slot::EV_FRAGMENT_PASSED],
    );
    let mut f6 = udp6(&options());
    f6.first_fragment = true;
    h.expect(
        &f6.build(),
        XDP_PASS,
        slot::PASSED,
        &[slot::EV_FRAGMENT_PASSED],
    );
}

#[test]
fn later_fragments_carry_no_port_and_pass_untouched() {
    let Some(h) = Harness::new("later_fragments_carry_no_port_and_pass_untouched") else {
        return;
    };
    let mut f4 = udp4(b"rest of a datagram");
    f4.later_fragment = Some(185);
    h.expect(&f4.build(), XDP_PASS, slot::PASSED_OTHER, &[]);
    let mut f6 = udp6(b"rest of a datagram");
    f6.later_fragment = Some(185);
    h.expect(&f6.build(), XDP_PASS, slot::PASSED_OTHER, &[]);
}

#[test]
fn fragment_from_a_blocklisted_source_counts_as_blocklist() {
    let cfg = FilterConfig {
        blocklist: vec![SRC4.parse().unwrap()],
        ..pass_mode()
    };
    let Some(h) = Harness::with(
        "fragment_from_a_blocklisted_source_counts_as_blocklist",
        cfg,
    ) else {
        return;
    };
    let mut f4 = udp4(&options());
    f4.first_fragment = true;
    h.expect(&f4.build(), XDP_DROP, slot::DROP_BLOCKLIST, &[]);
}

// ------------------------------------------------------------ payload check

#[test]
fn payloads_that_do_not_start_like_sip_are_not_sip() {
    let Some(h) = Harness::new("payloads_that_do_not_start_like_sip_are_not_sip") else {
        return;
    };
    let pad = "x".repeat(40);
    let bad: Vec<Vec<u8>> = vec![
        format!("GET / HTTP/1.1\r\nHost: a\r\n{pad}").into_bytes(),
        format!("\r\n\r\n{pad}").into_bytes(),
        format!("INVITE  sip:a SIP/2.0\r\n{pad}").into_bytes(),
        format!("INVITE 123:a SIP/2.0\r\n{pad}").into_bytes(),
        format!("INVITE sip/a SIP/2.0\r\n{pad}").into_bytes(),
        format!("SIP/2.0 20 OK\r\n{pad}").into_bytes(),
        format!("SIP/2.0 999 Nope\r\n{pad}").into_bytes(),
        format!("ABCDEFGHIJKLMNOPQ sip:a SIP/2.0\r\n{pad}").into_bytes(),
        b"OPTIONS sip:a SIP/2.0\r\n".to_vec(), // shorter than any SIP message
        vec![0u8; 64],
        Vec::new(),
    ];
    for p in bad {
        let (got, delta) = h.run_n(&udp4(&p).build(), 1);
        let mut want = [0u64; slot::SLOTS];
        want[slot::DROP_NOT_SIP] = 1;
        assert_eq!(
            (action_name(got), describe(&delta)),
            (action_name(XDP_DROP), describe(&want)),
            "payload {:?}",
            String::from_utf8_lossy(&p)
        );
    }
}

#[test]
fn extension_methods_and_other_schemes_start_like_sip() {
    let Some(h) = Harness::new("extension_methods_and_other_schemes_start_like_sip") else {
        return;
    };
    for start in [
        "MESSAGE sip:a",
        "SUBSCRIBE sips:a",
        "INVITE tel:+15551234",
        "X-CUSTOM.m urn:x",
    ] {
        let p =
            format!("{start} SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.0.1\r\nContent-Length: 0\r\n\r\n");
        h.expect(&udp4(p.as_bytes()).build(), XDP_PASS, slot::PASSED, &[]);
    }
}

// ---------------------------------------------------------------- scanners

#[test]
fn each_default_user_agent_signature_is_a_scanner() {
    let cfg = FilterConfig {
        auto_ban: false,
        ..pass_mode()
    };
    let Some(h) = Harness::with("each_default_user_agent_signature_is_a_scanner", cfg) else {
        return;
    };
    for sig in xdp::config::DEFAULT_USER_AGENTS {
        for ua in [
            sig.to_string(),
            sig.to_uppercase(),
            sig.to_lowercase(),
            format!("{sig}/0.3.3 (build 7)"),
        ] {
            let (got, delta) = h.run_n(&udp4(&sip_request("OPTIONS", &ua, "x")).build(), 1);
            let mut want = [0u64; slot::SLOTS];
            want[slot::DROP_SCANNER] = 1;
            assert_eq!(
                (action_name(got), describe(&delta)),
                (action_name(XDP_DROP), describe(&want)),
                "User-Agent {ua:?}"
            );
        }
    }
}

#[test]
fn sipvicious_from_display_name_is_a_scanner() {
    let cfg = FilterConfig {
        auto_ban: false,
        ..pass_mode()
    };
    let Some(h) = Harness::with("sipvicious_from_display_name_is_a_scanner", cfg) else {
        return;
    };
    h.expect(
        &udp4(&sip_request("INVITE", "Asterisk PBX", "SIPVicious")).build(),
        XDP_DROP,
        slot::DROP_SCANNER,
        &[],
    );
    // Compact form "f:" and no quotes.
    let msg = "REGISTER sip:198.18.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.0.1\r\nf:  sipvicious <sip:1@a>;tag=1\r\nContent-Length: 0\r\n\r\n";
    h.expect(
        &udp4(msg.as_bytes()).build(),
        XDP_DROP,
        slot::DROP_SCANNER,
        &[],
    );
}

#[test]
fn signature_must_be_a_prefix_of_the_value() {
    let Some(h) = Harness::new("signature_must_be_a_prefix_of_the_value") else {
        return;
    };
    for ua in ["my friendly-scanner", "Polycom-smap", "friendly scanner"] {
        h.expect(
            &udp4(&sip_request("OPTIONS", ua, "x")).build(),
            XDP_PASS,
            slot::PASSED,
            &[],
        );
    }
    // A signature in a header other than User-Agent or From is not looked at.
    let msg = "OPTIONS sip:a SIP/2.0\r\nSubject: friendly-scanner\r\nTo: \"sipvicious\" <sip:a>\r\nContent-Length: 0\r\n\r\n";
    h.expect(&udp4(msg.as_bytes()).build(), XDP_PASS, slot::PASSED, &[]);
}

#[test]
fn signatures_in_the_body_past_the_headers_are_ignored() {
    let Some(h) = Harness::new("signatures_in_the_body_past_the_headers_are_ignored") else {
        return;
    };
    let msg = "MESSAGE sip:a SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.0.1\r\nContent-Length: 30\r\n\r\nUser-Agent: friendly-scanner\r\n";
    h.expect(&udp4(msg.as_bytes()).build(), XDP_PASS, slot::PASSED, &[]);
}

#[test]
fn user_agent_past_the_scan_window_is_not_seen() {
    let Some(h) = Harness::new("user_agent_past_the_scan_window_is_not_seen") else {
        return;
    };
    let filler = format!("X-Filler: {}\r\n", "a".repeat(abi::SCAN_BYTES));
    let msg = format!(
        "OPTIONS sip:a SIP/2.0\r\n{filler}User-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n"
    );
    h.expect(&udp4(msg.as_bytes()).build(), XDP_PASS, slot::PASSED, &[]);
}

#[test]
fn signatures_set_at_run_time_replace_the_defaults() {
    let Some(mut h) = Harness::new("signatures_set_at_run_time_replace_the_defaults") else {
        return;
    };
    let cfg = FilterConfig {
        scanner_user_agents: vec!["EvilBot".into()],
        scanner_from_names: vec![],
        auto_ban: false,
        ..pass_mode()
    };
    h.filter.configure(&cfg).unwrap();
    h.expect(
        &udp4(&sip_request("OPTIONS", "evilbot 2", "x")).build(),
        XDP_DROP,
        slot::DROP_SCANNER,
        &[],
    );
    h.expect(
        &udp4(&sip_request("OPTIONS", "friendly-scanner", "x")).build(),
        XDP_PASS,
        slot::PASSED,
        &[],
    );
}

#[test]
fn by_default_a_scanner_packet_is_dropped_and_bans_nobody_even_in_a_verified_sources_name() {
    // Its source may be forged even when that source is a verified caller.
    let cfg = FilterConfig {
        mode: VerdictMode::Pass,
        ..FilterConfig::default()
    };
    assert!(!cfg.auto_ban, "automatic bans are off by default");
    let Some(mut h) = Harness::with("by_default_a_scanner_packet_bans_nobody", cfg) else {
        return;
    };
    h.filter.verify(ip(SRC4), Duration::from_secs(600)).unwrap();
    for _ in 0..3 {
        h.expect(
            &udp4(&sip_request("OPTIONS", "friendly-scanner", "x")).build(),
            XDP_DROP,
            slot::DROP_SCANNER,
            &[slot::EV_VERIFIED],
        );
    }
    assert!(h.filter.bans().unwrap().is_empty());
    // The caller's own traffic still passes.
    h.expect(
        &udp4(&options()).build(),
        XDP_PASS,
        slot::PASSED,
        &[slot::EV_VERIFIED],
    );
}

#[test]
fn verified_scanner_is_auto_banned_and_its_next_packet_is_banned() {
    let Some(mut h) = Harness::new("verified_scanner_is_auto_banned_and_its_next_packet_is_banned")
    else {
        return;
    };
    h.filter.verify(ip(SRC4), Duration::from_secs(600)).unwrap();
    h.expect(
        &udp4(&sip_request("OPTIONS", "friendly-scanner", "x")).build(),
        XDP_DROP,
        slot::DROP_SCANNER,
        &[slot::EV_VERIFIED, slot::EV_AUTO_BAN],
    );
    let bans = h.filter.bans().unwrap();
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert_eq!(bans[0].network, Cidr::host(ip(SRC4)));
    assert_eq!(bans[0].origin, BanOrigin::Automatic, "into auto_bans");
    assert_eq!(bans[0].reason, BanReason::Scanner);
    assert_eq!(h.filter.auto_ban_count().unwrap(), 1);
    assert_eq!(h.filter.operator_ban_count().unwrap(), 0);
    let left = bans[0].left.expect("auto-bans expire");
    assert!(
        left <= Duration::from_secs(3600) && left > Duration::from_secs(3000),
        "{left:?}"
    );
    h.expect(&udp4(&options()).build(), XDP_DROP, slot::DROP_BANNED, &[]);
}

#[test]
fn verified_ipv6_scanner_is_banned_by_its_slash_64() {
    let Some(mut h) = Harness::new("verified_ipv6_scanner_is_banned_by_its_slash_64") else {
        return;
    };
    h.filter.verify(ip(SRC6), Duration::from_secs(600)).unwrap();
    h.expect(
        &udp6(&sip_request("OPTIONS", "sipcli/v1.8", "x")).build(),
        XDP_DROP,
        slot::DROP_SCANNER,
        &[slot::EV_VERIFIED, slot::EV_AUTO_BAN],
    );
    let bans = h.filter.bans().unwrap();
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert_eq!(bans[0].network.to_string(), "2001:db8:1:2::/64");
    assert_eq!(bans[0].origin, BanOrigin::Automatic);
    let mut neighbour = udp6(&options());
    neighbour.src = ip("2001:db8:1:2::99");
    h.expect(&neighbour.build(), XDP_DROP, slot::DROP_BANNED, &[]);
}

// ------------------------------------------------------ lists and bans

#[test]
fn blocklisted_source_is_dropped() {
    let cfg = FilterConfig {
        blocklist: vec![
            "198.18.0.0/24".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ],
        ..pass_mode()
    };
    let Some(h) = Harness::with("blocklisted_source_is_dropped", cfg) else {
        return;
    };
    h.expect(
        &udp4(&options()).build(),
        XDP_DROP,
        slot::DROP_BLOCKLIST,
        &[],
    );
    h.expect(
        &udp6(&options()).build(),
        XDP_DROP,
        slot::DROP_BLOCKLIST,
        &[],
    );
}

#[test]
fn manual_ban_drops_and_unban_lifts_it() {
    let Some(mut h) = Harness::new("manual_ban_drops_and_unban_lifts_it") else {
        return;
    };
    let net: Cidr = "198.18.0.0/28".parse().unwrap();
    h.filter
        .ban(
            net,
            Some(Duration::from_secs(60)),
            BanReason::AuthFailure,
            "401 storm",
        )
        .unwrap();
    h.expect(&udp4(&options()).build(), XDP_DROP, slot::DROP_BANNED, &[]);
    let bans = h.filter.bans().unwrap();
    assert_eq!(
        (bans[0].network, bans[0].reason, bans[0].note.as_str()),
        (net, BanReason::AuthFailure, "401 storm")
    );
    assert_eq!(
        h.filter.unban(net).unwrap(),
        Unbanned {
            operator: true,
            automatic: false
        }
    );
    assert!(
        !h.filter.unban(net).unwrap().any(),
        "second unban finds nothing"
    );
    h.expect(&udp4(&options()).build(), XDP_PASS, slot::PASSED, &[]);
}

#[test]
fn a_full_operator_ban_map_says_full_and_keeps_its_bans() {
    let Some(mut h) = Harness::new("a_full_operator_ban_map_says_full_and_keeps_its_bans") else {
        return;
    };
    // 100.64.0.0/16 and on: 65,536 hosts, the trie's size.
    let host = |i: u32| Cidr::host(IpAddr::from(std::net::Ipv4Addr::from(0x6440_0000 + i)));
    for i in 0..abi::LPM_ENTRIES as u32 {
        h.filter
            .ban(
                host(i),
                Some(Duration::from_secs(600)),
                BanReason::Manual,
                "feed",
            )
            .unwrap();
    }
    let err = h
        .filter
        .ban(Cidr::host(ip(SRC4)), None, BanReason::Manual, "")
        .unwrap_err();
    assert!(
        matches!(err, xdp::FilterError::Full { what: "bans_v4" }),
        "{err:?}"
    );
    assert!(err.to_string().contains("full"), "{err}");
    assert!(h.filter.has_operator_ban(host(5)).unwrap());
    assert!(!h
        .filter
        .has_operator_ban("100.64.0.0/24".parse().unwrap())
        .unwrap());
    assert!(!h.filter.has_operator_ban(Cidr::host(ip(SRC4))).unwrap());
    // The other family has its own trie; the bans in force still drop.
    h.filter
        .ban(Cidr::host(ip(SRC6)), None, BanReason::Manual, "")
        .unwrap();
    h.expect(&udp6(&options()).build(), XDP_DROP, slot::DROP_BANNED, &[]);
    h.expect(&udp4(&options()).build(), XDP_PASS, slot::PASSED, &[]);
}

#[test]
fn expired_ban_no_longer_applies() {
    let Some(mut h) = Harness::new("expired_ban_no_longer_applies") else {
        return;
    };
    let now = xdp::maps::monotonic_ns();
    h.filter.put_ban_raw(
        Cidr::host(ip(SRC4)),
        abi::Ban {
            expires_ns: now - 1_000_000_000,
            banned_ns: now - 2_000_000_000,
            reason: abi::ban_reason::FLOOD,
            prefixlen: 32,
            note: [0; 32],
        },
    );
    h.expect(
        &udp4(&options()).build(),
        XDP_PASS,
        slot::PASSED,
        &[slot::EV_BAN_EXPIRED],
    );
    assert!(h.filter.bans().unwrap()[0].expired);
    assert_eq!(h.filter.sweep_expired_bans().unwrap(), 1);
    assert!(h.filter.bans().unwrap().is_empty());
}

#[test]
fn expired_host_ban_does_not_hide_an_active_network_ban() {
    let Some(mut h) = Harness::new("expired_host_ban_does_not_hide_an_active_network_ban") else {
        return;
    };
    let now = xdp::maps::monotonic_ns();
    h.filter
        .ban("198.18.0.0/24".parse().unwrap(), None, BanReason::Flood, "")
        .unwrap();
    h.filter.put_ban_raw(
        Cidr::host(ip(SRC4)),
        abi::Ban {
            expires_ns: now - 1,
            banned_ns: now - 2,
            reason: abi::ban_reason::SCANNER,
            prefixlen: 32,
            note: [0; 32],
        },
    );
    h.expect(
        &udp4(&options()).build(),
        XDP_DROP,
        slot::DROP_BANNED,
        &[slot::EV_BAN_EXPIRED],
    );
}

#[test]
fn allowlist_beats_blocklist_ban_and_scanner_auto_ban() {
    let cfg = FilterConfig {
        allowlist: vec![SRC4.parse().unwrap()],
        blocklist: vec!["198.18.0.0/16".parse().unwrap()],
        ..pass_mode()
    };
    let Some(mut h) = Harness::with("allowlist_beats_blocklist_ban_and_scanner_auto_ban", cfg)
    else {
        return;
    };
    h.filter
        .ban(Cidr::host(ip(SRC4)), None, BanReason::Manual, "")
        .unwrap();
    h.expect(
        &udp4(&options()).build(),
        XDP_PASS,
        slot::PASSED,
        &[slot::EV_ALLOWLISTED],
    );
    // Content checks still apply, but an allowlisted source is never auto-banned.
    h.expect(
        &udp4(&sip_request("OPTIONS", "friendly-scanner", "x")).build(),
        XDP_DROP,
        slot::DROP_SCANNER,
        &[slot::EV_ALLOWLISTED],
    );
    assert_eq!(h.filter.bans().unwrap().len(), 1, "only the manual ban");
    h.expect(
        &udp4(b"garbage garbage garbage garbage garbage").build(),
        XDP_DROP,
        slot::DROP_NOT_SIP,
        &[slot::EV_ALLOWLISTED],
    );
}

// ------------------------------------------------------------ rate limits

fn tight_limits() -> FilterConfig {
    let mut cfg = pass_mode();
    cfg.rate_limits.invite = RateConfig { rate: 1, burst: 3 };
    cfg.rate_limits.register = RateConfig { rate: 1, burst: 2 };
    cfg.rate_limits.other = RateConfig { rate: 1, burst: 4 };
    cfg
}

/// Loads `cfg` with tight_limits' bursts, then stretches every interval to
/// an hour in the map, so that nothing refills during a test however slow
/// the machine (the file format's slowest rate is one per second).
fn with_tight(test: &str, cfg: FilterConfig) -> Option<Harness> {
    let mut h = Harness::with(test, cfg)?;
    let mut c = h.filter.config_entry().unwrap();
    for r in c.rates.iter_mut() {
        let burst = r.tolerance_ns / r.interval_ns.max(1) + 1;
        r.interval_ns = 3_600_000_000_000;
        r.tolerance_ns = (burst - 1) * r.interval_ns;
    }
    h.filter.set_config_entry(c).unwrap();
    Some(h)
}

#[test]
fn invites_beyond_the_burst_are_rate_limited() {
    let Some(h) = with_tight("invites_beyond_the_burst_are_rate_limited", tight_limits()) else {
        return;
    };
    let (action, delta) = h.run_n(&udp4(&invite()).build(), 10);
    assert_eq!(action_name(action), "XDP_DROP");
    let mut want = [0u64; slot::SLOTS];
    want[slot::PASSED] = 3;
    want[slot::DROP_RATE_LIMIT] = 7;
    assert_eq!(describe(&delta), describe(&want));
}

#[test]
fn each_class_has_its_own_budget() {
    let Some(h) = with_tight("each_class_has_its_own_budget", tight_limits()) else {
        return;
    };
    let (_, d_inv) = h.run_n(&udp6(&invite()).build(), 5);
    let (_, d_reg) = h.run_n(&udp6(&sip_request("REGISTER", "ua", "a")).build(), 5);
    let (_, d_oth) = h.run_n(&udp6(&options()).build(), 5);
    assert_eq!(
        (d_inv[slot::PASSED], d_inv[slot::DROP_RATE_LIMIT]),
        (3, 2),
        "INVITE"
    );
    assert_eq!(
        (d_reg[slot::PASSED], d_reg[slot::DROP_RATE_LIMIT]),
        (2, 3),
        "REGISTER"
    );
    assert_eq!(
        (d_oth[slot::PASSED], d_oth[slot::DROP_RATE_LIMIT]),
        (4, 1),
        "other"
    );
    let b = h.filter.bucket(ip(SRC6)).expect("bucket for the /64");
    assert!(b.tat[abi::CLASS_INVITE] > 0 && b.tat[abi::CLASS_REGISTER] > 0);
}

#[test]
fn sources_have_separate_budgets() {
    let Some(h) = with_tight("sources_have_separate_budgets", tight_limits()) else {
        return;
    };
    let (_, a) = h.run_n(&udp4(&invite()).build(), 3);
    let mut other = udp4(&invite());
    other.src = ip("198.18.0.11");
    let (_, b) = h.run_n(&other.build(), 3);
    assert_eq!((a[slot::PASSED], b[slot::PASSED]), (3, 3));
    // IPv6 sources in one /64 share a budget.
    let (_, c) = h.run_n(&udp6(&invite()).build(), 2);
    let mut same64 = udp6(&invite());
    same64.src = ip("2001:db8:1:2::ffff");
    let (_, d) = h.run_n(&same64.build(), 2);
    assert_eq!(
        (c[slot::PASSED], d[slot::PASSED], d[slot::DROP_RATE_LIMIT]),
        (2, 1, 1)
    );
}

#[test]
fn allowlist_beats_the_rate_limit() {
    let mut cfg = tight_limits();
    cfg.allowlist = vec![SRC4.parse().unwrap()];
    let Some(h) = with_tight("allowlist_beats_the_rate_limit", cfg) else {
        return;
    };
    let (_, delta) = h.run_n(&udp4(&invite()).build(), 10);
    let mut want = [0u64; slot::SLOTS];
    want[slot::PASSED] = 10;
    want[slot::EV_ALLOWLISTED] = 10;
    assert_eq!(describe(&delta), describe(&want));
}

#[test]
fn rates_set_at_run_time_apply() {
    let Some(mut h) = Harness::new("rates_set_at_run_time_apply") else {
        return;
    };
    let (_, before) = h.run_n(&udp4(&invite()).build(), 5);
    assert_eq!(before[slot::PASSED], 5, "default burst is 100");
    h.filter.configure(&tight_limits()).unwrap();
    let mut fresh = udp4(&invite());
    fresh.src = ip("198.18.0.99");
    let (_, after) = h.run_n(&fresh.build(), 5);
    assert_eq!((after[slot::PASSED], after[slot::DROP_RATE_LIMIT]), (3, 2));
}

// ------------------------------------------------------------- overload cap

#[test]
fn overload_cap_drops_past_the_per_cpu_budget() {
    let mut cfg = pass_mode();
    cfg.overload_cap_pps = 4;
    let Some(h) = Harness::with("overload_cap_drops_past_the_per_cpu_budget", cfg) else {
        return;
    };
    // One kernel call runs every repetition on one CPU within one window.
    let (action, delta) = h.run_n(&udp4(&options()).build(), 9);
    assert_eq!(action_name(action), "XDP_DROP");
    let mut want = [0u64; slot::SLOTS];
    want[slot::PASSED] = 4;
    want[slot::DROP_OVERLOAD] = 5;
    assert_eq!(describe(&delta), describe(&want));
}

/// The overload cap protects the workers from everyone: an allowlisted
/// (trusted) source still skips the unverified budget and its own rate
/// limits, but not the cap.
#[test]
fn allowlisted_sources_meet_the_overload_cap() {
    let mut cfg = tight_limits();
    cfg.overload_cap_pps = 2;
    cfg.allowlist = vec![SRC4.parse().unwrap()];
    let Some(h) = with_unverified_burst("allowlisted_sources_meet_the_overload_cap", cfg, 1) else {
        return;
    };
    let _cpu = OnOneCpu::pin();
    // One kernel call: one CPU, one window. INVITE's own burst is 3 and this
    // CPU's unverified budget 1: neither applies to the allowlist.
    let (action, delta) = h.run_n(&udp4(&invite()).build(), 5);
    assert_eq!(action_name(action), "XDP_DROP");
    assert_eq!(
        describe(&delta),
        counts(&[
            (slot::PASSED, 2),
            (slot::DROP_OVERLOAD, 3),
            (slot::EV_ALLOWLISTED, 5)
        ])
    );
}

// ------------------------------------------- verified sources, unverified budget

/// An hour in nanoseconds: a budget interval nothing refills in during a test.
pub(super) const HOUR_NS: u64 = 3_600_000_000_000;

/// Loads `cfg`, then gives the per-CPU unverified budget a burst of `burst`
/// packets and an interval of an hour, so that it does not refill during
/// the test however slow the machine.
pub(super) fn with_unverified_burst(test: &str, cfg: FilterConfig, burst: u64) -> Option<Harness> {
    let mut h = Harness::with(test, cfg)?;
    let mut c = h.filter.config_entry().unwrap();
    c.unverified = abi::Rate {
        interval_ns: HOUR_NS,
        tolerance_ns: (burst - 1) * HOUR_NS,
    };
    h.filter.set_config_entry(c).unwrap();
    Some(h)
}

const VERIFIED4: &str = "198.18.0.50";
const ALLOWED4: &str = "198.18.0.60";

fn invite_from(src: &str) -> Vec<u8> {
    let mut f = udp4(&invite());
    f.src = ip(src);
    f.build()
}

pub(super) fn counts(pairs: &[(usize, u64)]) -> String {
    let mut want = [0u64; slot::SLOTS];
    for (s, n) in pairs {
        want[*s] += n;
    }
    describe(&want)
}

#[test]
fn unverified_sources_are_dropped_once_the_cpu_budget_is_spent_while_verified_and_allowlisted_pass()
{
    let mut cfg = pass_mode();
    cfg.allowlist = vec![ALLOWED4.parse().unwrap()];
    let Some(mut h) = with_unverified_burst("unverified_budget_spent_others_pass", cfg, 4) else {
        return;
    };
    h.filter
        .verify(ip(VERIFIED4), Duration::from_secs(600))
        .unwrap();
    let _cpu = OnOneCpu::pin();

    let (action, d) = h.run_n(&udp4(&invite()).build(), 9);
    assert_eq!(action_name(action), "XDP_DROP");
    assert_eq!(
        describe(&d),
        counts(&[(slot::PASSED, 4), (slot::DROP_UNVERIFIED, 5)]),
        "the first 4 spend the budget"
    );
    // Another unverified source shares this CPU's budget.
    let mut other = udp4(&invite());
    other.src = ip("198.18.0.11");
    h.expect(&other.build(), XDP_DROP, slot::DROP_UNVERIFIED, &[]);

    // In the same window, a verified and an allowlisted source still pass.
    let (action, d) = h.run_n(&invite_from(VERIFIED4), 5);
    assert_eq!(action_name(action), "XDP_PASS");
    assert_eq!(
        describe(&d),
        counts(&[(slot::PASSED, 5), (slot::EV_VERIFIED, 5)])
    );
    let (action, d) = h.run_n(&invite_from(ALLOWED4), 5);
    assert_eq!(action_name(action), "XDP_PASS");
    assert_eq!(
        describe(&d),
        counts(&[(slot::PASSED, 5), (slot::EV_ALLOWLISTED, 5)])
    );
    // ... and neither spent the unverified budget: it is still spent, not over-spent.
    h.expect(
        &udp4(&invite()).build(),
        XDP_DROP,
        slot::DROP_UNVERIFIED,
        &[],
    );
    let top = h.filter.top_sources(1).unwrap();
    assert_eq!(
        (top[0].source, top[0].last_reason),
        (Cidr::host(ip(SRC4)), "unverified")
    );
}

#[test]
fn an_expired_verification_no_longer_spares_the_budget() {
    let Some(mut h) =
        with_unverified_burst("an_expired_verification_no_longer_helps", pass_mode(), 1)
    else {
        return;
    };
    let now = xdp::maps::monotonic_ns();
    h.filter.put_verified_raw(
        ip(VERIFIED4),
        abi::Verified {
            expires_ns: now - 1_000_000_000,
            verified_ns: now - 2_000_000_000,
        },
    );
    let _cpu = OnOneCpu::pin();
    h.expect(&udp4(&invite()).build(), XDP_PASS, slot::PASSED, &[]);
    h.expect(
        &invite_from(VERIFIED4),
        XDP_DROP,
        slot::DROP_UNVERIFIED,
        &[],
    );

    let listed = h.filter.verified().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(listed[0].expired && listed[0].left.is_zero(), "{listed:?}");
    assert_eq!(h.filter.verified_count().unwrap(), 0);
    assert_eq!(h.filter.sweep_expired_verified().unwrap(), 1);
    assert!(h.filter.verified().unwrap().is_empty());

    // Verified again, it passes.
    h.filter
        .verify(ip(VERIFIED4), Duration::from_secs(60))
        .unwrap();
    h.expect(
        &invite_from(VERIFIED4),
        XDP_PASS,
        slot::PASSED,
        &[slot::EV_VERIFIED],
    );
}

#[test]
fn a_verified_source_is_still_rate_limited_by_its_own_budget() {
    let Some(mut h) = with_tight(
        "a_verified_source_is_still_rate_limited_by_its_own_budget",
        tight_limits(),
    ) else {
        return;
    };
    h.filter.verify(ip(SRC4), Duration::from_secs(600)).unwrap();
    let (_, d) = h.run_n(&udp4(&invite()).build(), 10);
    assert_eq!(
        describe(&d),
        counts(&[
            (slot::PASSED, 3),
            (slot::DROP_RATE_LIMIT, 7),
            (slot::EV_VERIFIED, 10)
        ])
    );
}

#[test]
fn a_verified_source_is_still_dropped_when_banned_or_blocklisted() {
    let cfg = FilterConfig {
        blocklist: vec![ALLOWED4.parse().unwrap()],
        ..pass_mode()
    };
    let Some(mut h) = Harness::with("a_verified_source_is_still_dropped_when_banned", cfg) else {
        return;
    };
    h.filter.verify(ip(SRC4), Duration::from_secs(600)).unwrap();
    h.filter
        .verify(ip(ALLOWED4), Duration::from_secs(600))
        .unwrap();
    h.filter
        .ban(
            Cidr::host(ip(SRC4)),
            Some(Duration::from_secs(60)),
            BanReason::Flood,
            "",
        )
        .unwrap();
    h.expect(&udp4(&invite()).build(), XDP_DROP, slot::DROP_BANNED, &[]);
    h.expect(&invite_from(ALLOWED4), XDP_DROP, slot::DROP_BLOCKLIST, &[]);
}

#[test]
fn a_verified_scanner_is_dropped_and_auto_banned() {
    let Some(mut h) = Harness::new("a_verified_scanner_is_dropped_and_auto_banned") else {
        return;
    };
    h.filter.verify(ip(SRC4), Duration::from_secs(600)).unwrap();
    h.expect(
        &udp4(&sip_request("INVITE", "friendly-scanner", "x")).build(),
        XDP_DROP,
        slot::DROP_SCANNER,
        &[slot::EV_VERIFIED, slot::EV_AUTO_BAN],
    );
    assert_eq!(h.filter.bans().unwrap()[0].reason, BanReason::Scanner);
    h.expect(&udp4(&invite()).build(), XDP_DROP, slot::DROP_BANNED, &[]);
}

#[test]
fn the_unverified_budget_refills_as_time_passes() {
    let Some(mut h) = with_unverified_burst(
        "the_unverified_budget_refills_as_time_passes",
        pass_mode(),
        4,
    ) else {
        return;
    };
    let _cpu = OnOneCpu::pin();
    let frame = udp4(&invite()).build();
    let (_, d) = h.run_n(&frame, 6);
    assert_eq!(
        describe(&d),
        counts(&[(slot::PASSED, 4), (slot::DROP_UNVERIFIED, 2)])
    );
    // Four intervals later (moving this CPU's state back by as much), the
    // whole burst is there again, and no more.
    h.filter.update_cpu_budgets(|mut o| {
        o.unverified_tat = o.unverified_tat.saturating_sub(4 * HOUR_NS);
        o
    });
    let (_, d) = h.run_n(&frame, 6);
    assert_eq!(
        describe(&d),
        counts(&[(slot::PASSED, 4), (slot::DROP_UNVERIFIED, 2)])
    );
    // One interval later, one more.
    h.filter.update_cpu_budgets(|mut o| {
        o.unverified_tat = o.unverified_tat.saturating_sub(HOUR_NS);
        o
    });
    let (_, d) = h.run_n(&frame, 2);
    assert_eq!(
        describe(&d),
        counts(&[(slot::PASSED, 1), (slot::DROP_UNVERIFIED, 1)])
    );
}

/// A spoofed scanner flood pays like any other unverified flood: each
/// scanner packet that reaches the header scan spends this CPU's budget for
/// unverified sources, and once it is spent the rest are shed before the
/// scan. Verified sources' scanner packets do not spend it.
#[test]
fn scanner_packets_from_unverified_sources_spend_the_unverified_budget() {
    let Some(mut h) = with_unverified_burst(
        "scanner_packets_from_unverified_sources_spend_the_unverified_budget",
        pass_mode(),
        4,
    ) else {
        return;
    };
    h.filter
        .verify(ip(VERIFIED4), Duration::from_secs(600))
        .unwrap();
    let _cpu = OnOneCpu::pin();
    let mut scanner = udp4(&sip_request("OPTIONS", "friendly-scanner", "x"));
    scanner.src = ip("198.18.0.66");
    let (_, d) = h.run_n(&scanner.build(), 10);
    assert_eq!(
        describe(&d),
        counts(&[
            (slot::DROP_SCANNER, 4),
            (slot::EV_SCANNER_UNPROVEN, 4),
            (slot::DROP_UNVERIFIED, 6)
        ]),
        "4 scanned (the budget), 6 shed before the scan"
    );
    // The budget is spent for every unverified source on this CPU...
    h.expect(
        &udp4(&invite()).build(),
        XDP_DROP,
        slot::DROP_UNVERIFIED,
        &[],
    );
    // ... and a verified caller still passes.
    h.expect(
        &invite_from(VERIFIED4),
        XDP_PASS,
        slot::PASSED,
        &[slot::EV_VERIFIED],
    );
    assert!(h.filter.bans().unwrap().is_empty(), "nobody banned");
}

#[test]
fn a_scanner_over_its_own_budget_is_dropped_by_the_budget_before_the_scan() {
    let cfg = FilterConfig {
        auto_ban: true,
        ..tight_limits()
    };
    let Some(mut h) = with_tight("a_scanner_over_its_own_budget_is_rate_limited", cfg) else {
        return;
    };
    h.filter.verify(ip(SRC4), Duration::from_secs(600)).unwrap();
    h.filter
        .verify(ip("198.18.0.67"), Duration::from_secs(600))
        .unwrap();
    // A verified scanner within its budget is scanned, caught and banned.
    let scanner = udp4(&sip_request("OPTIONS", "friendly-scanner", "x")).build();
    h.expect(
        &scanner,
        XDP_DROP,
        slot::DROP_SCANNER,
        &[slot::EV_VERIFIED, slot::EV_AUTO_BAN],
    );
    // A source that spent its budget on clean packets first is dropped by
    // the budget, unscanned, so it is not banned until it is within it again.
    let mut quiet = udp4(&options());
    quiet.src = ip("198.18.0.67");
    let (_, d) = h.run_n(&quiet.build(), 4);
    assert_eq!(
        describe(&d),
        counts(&[(slot::PASSED, 4), (slot::EV_VERIFIED, 4)])
    );
    let mut turned = udp4(&sip_request("OPTIONS", "friendly-scanner", "x"));
    turned.src = ip("198.18.0.67");
    h.expect(
        &turned.build(),
        XDP_DROP,
        slot::DROP_RATE_LIMIT,
        &[slot::EV_VERIFIED],
    );
    assert_eq!(h.filter.bans().unwrap().len(), 1, "only the first scanner");
}

#[test]
fn verify_lists_counts_and_unverify_forgets() {
    let Some(mut h) = Harness::new("verify_lists_counts_and_unverify_forgets") else {
        return;
    };
    h.filter.verify(ip(SRC4), Duration::from_secs(600)).unwrap();
    h.filter.verify(ip(SRC6), Duration::from_secs(60)).unwrap();
    let listed = h.filter.verified().unwrap();
    let summary: Vec<(String, bool)> = listed
        .iter()
        .map(|e| (e.source.to_string(), e.expired))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("2001:db8:1:2::/64".to_string(), false),
            ("198.18.0.10/32".to_string(), false),
        ],
        "soonest to lapse first; IPv6 by its /64"
    );
    assert!(
        listed[1].left > Duration::from_secs(500) && listed[1].left <= Duration::from_secs(600)
    );
    assert_eq!(h.filter.verified_count().unwrap(), 2);
    // Another address of the same /64 is the same source.
    let mut neighbour = udp6(&invite());
    neighbour.src = ip("2001:db8:1:2::99");
    h.expect(
        &neighbour.build(),
        XDP_PASS,
        slot::PASSED,
        &[slot::EV_VERIFIED],
    );
    assert!(h.filter.unverify(ip("2001:db8:1:2::1")).unwrap());
    assert!(!h.filter.unverify(ip(SRC6)).unwrap(), "already gone");
    h.expect(&neighbour.build(), XDP_PASS, slot::PASSED, &[]);
    assert_eq!(h.filter.verified_count().unwrap(), 1);
    let err = h.filter.verify(ip(SRC4), Duration::ZERO).unwrap_err();
    assert!(err.to_string().contains("positive"), "{err}");
}

// -------------------------------------------------------------- top sources

#[test]
fn top_sources_tally_drops_and_last_reason() {
    let cfg = FilterConfig {
        blocklist: vec!["198.18.0.20/32".parse().unwrap()],
        ..pass_mode()
    };
    let Some(h) = Harness::with("top_sources_tally_drops_and_last_reason", cfg) else {
        return;
    };
    let mut blocked = udp4(&options());
    blocked.src = ip("198.18.0.20");
    h.run_n(&blocked.build(), 3);
    h.expect(
        &udp6(b"not sip at all, not sip at all, not sip at all").build(),
        XDP_DROP,
        slot::DROP_NOT_SIP,
        &[],
    );
    h.expect(&udp4(&options()).build(), XDP_PASS, slot::PASSED, &[]);
    let top = h.filter.top_sources(10).unwrap();
    let summary: Vec<(String, u64, &str)> = top
        .iter()
        .map(|t| (t.source.to_string(), t.drops, t.last_reason))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("198.18.0.20/32".to_string(), 3, "blocklist"),
            ("2001:db8:1:2::/64".to_string(), 1, "not_sip"),
        ],
        "passing sources are not listed"
    );
}

// ----------------------------------------------------------------- config

#[test]
fn a_bad_configuration_leaves_the_running_one() {
    let Some(mut h) = Harness::new("a_bad_configuration_leaves_the_running_one") else {
        return;
    };
    let before = h.filter.config_entry().unwrap();
    let mut bad = pass_mode();
    bad.rate_limits.invite.rate = 0;
    assert!(h.filter.configure(&bad).is_err());
    assert_eq!(h.filter.config_entry().unwrap(), before);
    h.expect(&udp4(&options()).build(), XDP_PASS, slot::PASSED, &[]);
}

// ------------------------------------------- trust and evidence (issue 17)
//
// What a spoofed packet carries (its source address, its User-Agent) is
// evidence only about that packet: it may get the packet dropped, never a
// third party banned. Each test forges one thing and checks nobody else
// is harmed.

/// A scanner OPTIONS with a spoofed (unverified) source address.
fn scanner_from(src: &str) -> Vec<u8> {
    let mut f = udp4(&sip_request("OPTIONS", "friendly-scanner", "x"));
    f.src = ip(src);
    f.build()
}

/// Stretches the auto-ban budget to `burst` bans and then one an hour, so
/// that nothing refills during a test however slow the machine.
fn stretch_auto_ban_budget(h: &mut Harness, burst: u64) {
    let mut c = h.filter.config_entry().unwrap();
    c.auto_ban = abi::Rate {
        interval_ns: HOUR_NS,
        tolerance_ns: (burst - 1) * HOUR_NS,
    };
    h.filter.set_config_entry(c).unwrap();
}

#[test]
fn a_spoofed_scanner_is_dropped_but_bans_nobody() {
    let Some(h) = Harness::new("a_spoofed_scanner_is_dropped_but_bans_nobody") else {
        return;
    };
    // "From" 198.18.0.10 and 2001:db8:1:2::10, neither verified: the
    // addresses may be a victim's.
    h.expect(
        &udp4(&sip_request("OPTIONS", "friendly-scanner", "x")).build(),
        XDP_DROP,
        slot::DROP_SCANNER,
        &[slot::EV_SCANNER_UNPROVEN],
    );
    h.expect(
        &udp6(&sip_request("INVITE", "Asterisk", "sipvicious")).build(),
        XDP_DROP,
        slot::DROP_SCANNER,
        &[slot::EV_SCANNER_UNPROVEN],
    );
    assert_eq!(
        h.filter.auto_ban_count().unwrap(),
        0,
        "auto_bans stays empty"
    );
    assert!(h.filter.bans().unwrap().is_empty());
    // The real owners of those addresses are not harmed.
    h.expect(&udp4(&invite()).build(), XDP_PASS, slot::PASSED, &[]);
    h.expect(&udp6(&invite()).build(), XDP_PASS, slot::PASSED, &[]);
    let stats = h.filter.read_stats().unwrap();
    assert_eq!(
        (stats.events.scanners_unproven, stats.events.auto_bans),
        (2, 0)
    );
}

#[test]
fn a_spoofed_scanner_flood_from_70000_sources_bans_nobody_and_operator_bans_still_work() {
    let mut cfg = pass_mode();
    // Every packet reaches the header scan (the worst case: no budget
    // sheds any of them first).
    cfg.unverified_cap_pps = u32::MAX;
    cfg.overload_cap_pps = u32::MAX;
    let Some(mut h) = Harness::with("a_spoofed_scanner_flood_from_70000_sources", cfg) else {
        return;
    };
    // More distinct sources than the old shared ban trie held (65,536).
    const SOURCES: u32 = 70_000;
    let mut frame = scanner_from("10.0.0.0");
    let before = h.counters();
    for i in 0..SOURCES {
        // 10.x.y.z: the source address field of the IPv4 header. The
        // program does not check the header checksum.
        frame[26..30].copy_from_slice(&(0x0a00_0000 + i).to_be_bytes());
        let r = test_run::run(h.filter.program_fd(), &frame, None).unwrap();
        assert_eq!(action_name(r.action), "XDP_DROP", "source {i}");
    }
    let after = h.counters();
    let mut delta = [0u64; slot::SLOTS];
    for i in 0..slot::SLOTS {
        delta[i] = after[i] - before[i];
    }
    assert_eq!(
        describe(&delta),
        counts(&[
            (slot::DROP_SCANNER, SOURCES as u64),
            (slot::EV_SCANNER_UNPROVEN, SOURCES as u64)
        ])
    );
    assert_eq!(h.filter.auto_ban_count().unwrap(), 0, "nobody banned");
    assert_eq!(h.filter.operator_ban_count().unwrap(), 0);
    // The operator keeps control: a ban after the flood takes effect.
    h.filter
        .ban(
            Cidr::host(ip(SRC4)),
            None,
            BanReason::Manual,
            "after the flood",
        )
        .unwrap();
    h.expect(&udp4(&invite()).build(), XDP_DROP, slot::DROP_BANNED, &[]);
    // ... and so does an automatic one the appliance makes.
    assert_eq!(
        h.filter
            .auto_ban(ip(SRC6), Duration::from_secs(600), BanReason::Flood)
            .unwrap(),
        AutoBan::Banned
    );
    h.expect(&udp6(&invite()).build(), XDP_DROP, slot::DROP_BANNED, &[]);
}

#[test]
fn the_auto_ban_budget_bounds_bans_even_from_verified_sources() {
    let Some(mut h) = Harness::new("the_auto_ban_budget_bounds_bans_even_from_verified_sources")
    else {
        return;
    };
    stretch_auto_ban_budget(&mut h, 10);
    let sources: Vec<String> = (0..25).map(|i| format!("198.18.2.{}", i + 1)).collect();
    for s in &sources {
        h.filter.verify(ip(s), Duration::from_secs(600)).unwrap();
    }
    let _cpu = OnOneCpu::pin();
    for (i, s) in sources.iter().take(20).enumerate() {
        let event = if i < 10 {
            slot::EV_AUTO_BAN
        } else {
            slot::EV_AUTO_BAN_LIMITED
        };
        h.expect(
            &scanner_from(s),
            XDP_DROP,
            slot::DROP_SCANNER,
            &[slot::EV_VERIFIED, event],
        );
    }
    assert_eq!(h.filter.auto_ban_count().unwrap(), 10, "the burst, no more");
    // A scanner refused a ban is still dropped on its next packet, as a
    // scanner (it is not banned).
    h.expect(
        &scanner_from(&sources[15]),
        XDP_DROP,
        slot::DROP_SCANNER,
        &[slot::EV_VERIFIED, slot::EV_AUTO_BAN_LIMITED],
    );
    // One interval later (moving this CPU's state back by as much), one
    // more ban.
    h.filter.update_cpu_budgets(|mut o| {
        o.auto_ban_tat = o.auto_ban_tat.saturating_sub(HOUR_NS);
        o
    });
    h.expect(
        &scanner_from(&sources[20]),
        XDP_DROP,
        slot::DROP_SCANNER,
        &[slot::EV_VERIFIED, slot::EV_AUTO_BAN],
    );
    h.expect(
        &scanner_from(&sources[21]),
        XDP_DROP,
        slot::DROP_SCANNER,
        &[slot::EV_VERIFIED, slot::EV_AUTO_BAN_LIMITED],
    );
    assert_eq!(h.filter.auto_ban_count().unwrap(), 11);
    let stats = h.filter.read_stats().unwrap();
    assert_eq!(
        (stats.events.auto_bans, stats.events.auto_bans_limited),
        (11, 12)
    );
}

#[test]
fn an_automatic_ban_never_shortens_or_replaces_an_operator_ban() {
    let Some(mut h) = Harness::new("an_automatic_ban_never_shortens_or_replaces_an_operator_ban")
    else {
        return;
    };
    let host = Cidr::host(ip(SRC4));
    h.filter
        .ban(host, None, BanReason::Manual, "operator")
        .unwrap();
    // The proxy's 600 s ban of the same host goes to its own map.
    assert_eq!(
        h.filter
            .auto_ban(ip(SRC4), Duration::from_secs(600), BanReason::NotFound)
            .unwrap(),
        AutoBan::Banned
    );
    let bans = h.filter.bans().unwrap();
    let summary: Vec<(String, BanOrigin, BanReason, bool)> = bans
        .iter()
        .map(|b| (b.network.to_string(), b.origin, b.reason, b.left.is_none()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "198.18.0.10/32".to_string(),
                BanOrigin::Automatic,
                BanReason::NotFound,
                false
            ),
            (
                "198.18.0.10/32".to_string(),
                BanOrigin::Operator,
                BanReason::Manual,
                true
            ),
        ],
        "the operator's permanent ban is still there, still permanent"
    );
    assert_eq!(
        (
            h.filter.operator_ban_count().unwrap(),
            h.filter.auto_ban_count().unwrap()
        ),
        (1, 1)
    );
    h.expect(&udp4(&invite()).build(), XDP_DROP, slot::DROP_BANNED, &[]);
    // An automatic ban is not shortened either: a shorter one keeps the
    // longer, a longer one lengthens it.
    match h
        .filter
        .auto_ban(ip(SRC4), Duration::from_secs(60), BanReason::Flood)
        .unwrap()
    {
        AutoBan::Kept { left: Some(left) } => {
            assert!(left > Duration::from_secs(500), "{left:?}")
        }
        other => panic!("expected the longer ban kept, got {other:?}"),
    }
    assert_eq!(
        h.filter
            .auto_ban(ip(SRC4), Duration::from_secs(7200), BanReason::Flood)
            .unwrap(),
        AutoBan::Banned
    );
    let auto = h
        .filter
        .bans()
        .unwrap()
        .into_iter()
        .find(|b| b.origin == BanOrigin::Automatic)
        .unwrap();
    assert_eq!(auto.reason, BanReason::Flood);
    assert!(auto.left.unwrap() > Duration::from_secs(7000));
    // Unbanning the host lifts both.
    assert_eq!(
        h.filter.unban(host).unwrap(),
        Unbanned {
            operator: true,
            automatic: true
        }
    );
    assert!(h.filter.bans().unwrap().is_empty());
    h.expect(&udp4(&invite()).build(), XDP_PASS, slot::PASSED, &[]);
}

#[test]
fn unbanning_a_network_lifts_only_what_it_names() {
    let Some(mut h) = Harness::new("unbanning_a_network_lifts_only_what_it_names") else {
        return;
    };
    let net: Cidr = "198.18.0.0/24".parse().unwrap();
    h.filter.ban(net, None, BanReason::Manual, "").unwrap();
    h.filter
        .auto_ban(ip(SRC4), Duration::from_secs(600), BanReason::AuthFailure)
        .unwrap();
    h.filter
        .auto_ban(ip(SRC6), Duration::from_secs(600), BanReason::AuthFailure)
        .unwrap();
    // The /24 is an operator's network: the automatic ban inside it stays.
    assert_eq!(
        h.filter.unban(net).unwrap(),
        Unbanned {
            operator: true,
            automatic: false
        }
    );
    h.expect(&udp4(&invite()).build(), XDP_DROP, slot::DROP_BANNED, &[]);
    // An IPv6 automatic ban covers the /64: a /48 names no source, and
    // one address of the /64 lifts it.
    assert!(!h
        .filter
        .unban("2001:db8:1::/48".parse().unwrap())
        .unwrap()
        .any());
    assert_eq!(
        h.filter
            .unban(Cidr::host(ip("2001:db8:1:2::ffff")))
            .unwrap(),
        Unbanned {
            operator: false,
            automatic: true
        }
    );
    h.expect(&udp6(&invite()).build(), XDP_PASS, slot::PASSED, &[]);
    assert_eq!(h.filter.auto_ban_count().unwrap(), 1, "the IPv4 one stays");
}

#[test]
fn an_expired_automatic_ban_no_longer_applies_and_a_verified_scanner_renews_it() {
    let Some(mut h) = Harness::new("an_expired_automatic_ban_no_longer_applies") else {
        return;
    };
    let now = xdp::maps::monotonic_ns();
    h.filter
        .put_auto_ban_raw(
            ip(SRC4),
            abi::Ban {
                expires_ns: now - 1_000_000_000,
                banned_ns: now - 2_000_000_000,
                reason: abi::ban_reason::SCANNER,
                prefixlen: 32,
                note: [0; 32],
            },
        )
        .unwrap();
    h.expect(
        &udp4(&invite()).build(),
        XDP_PASS,
        slot::PASSED,
        &[slot::EV_BAN_EXPIRED],
    );
    h.filter.verify(ip(SRC4), Duration::from_secs(600)).unwrap();
    h.expect(
        &udp4(&sip_request("OPTIONS", "friendly-scanner", "x")).build(),
        XDP_DROP,
        slot::DROP_SCANNER,
        &[slot::EV_BAN_EXPIRED, slot::EV_VERIFIED, slot::EV_AUTO_BAN],
    );
    let bans = h.filter.bans().unwrap();
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert!(!bans[0].expired && bans[0].left.unwrap() > Duration::from_secs(3000));
    h.expect(&udp4(&invite()).build(), XDP_DROP, slot::DROP_BANNED, &[]);
}

#[test]
fn sweeping_removes_expired_bans_of_both_kinds_and_keeps_the_rest() {
    let Some(mut h) = Harness::new("sweeping_removes_expired_bans_of_both_kinds") else {
        return;
    };
    let now = xdp::maps::monotonic_ns();
    let expired = |prefixlen| abi::Ban {
        expires_ns: now - 1,
        banned_ns: now - 2,
        reason: abi::ban_reason::FLOOD,
        prefixlen,
        note: [0; 32],
    };
    h.filter.put_ban_raw(Cidr::host(ip(SRC4)), expired(32));
    h.filter
        .put_auto_ban_raw(ip("198.18.0.11"), expired(32))
        .unwrap();
    h.filter.put_auto_ban_raw(ip(SRC6), expired(64)).unwrap();
    h.filter
        .ban(
            "198.18.9.0/24".parse().unwrap(),
            Some(Duration::from_secs(60)),
            BanReason::Manual,
            "",
        )
        .unwrap();
    h.filter
        .auto_ban(ip("198.18.0.12"), Duration::from_secs(30), BanReason::Flood)
        .unwrap();
    assert_eq!(h.filter.bans().unwrap().len(), 5);
    assert_eq!(h.filter.sweep_expired_bans().unwrap(), 3);
    let left: Vec<(String, BanOrigin)> = h
        .filter
        .bans()
        .unwrap()
        .into_iter()
        .map(|b| (b.network.to_string(), b.origin))
        .collect();
    assert_eq!(
        left,
        vec![
            ("198.18.0.12/32".to_string(), BanOrigin::Automatic),
            ("198.18.9.0/24".to_string(), BanOrigin::Operator),
        ]
    );
}

#[test]
fn a_full_auto_ban_map_refuses_new_automatic_bans_but_operators_keep_room() {
    let Some(mut h) = Harness::new("a_full_auto_ban_map_refuses_new_automatic_bans") else {
        return;
    };
    let now = xdp::maps::monotonic_ns();
    let ban = abi::Ban {
        expires_ns: now + HOUR_NS,
        banned_ns: now,
        reason: abi::ban_reason::FLOOD,
        prefixlen: 32,
        note: [0; 32],
    };
    let started = std::time::Instant::now();
    for i in 0..abi::AUTO_BAN_ENTRIES as u32 {
        let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        h.filter.put_auto_ban_raw(addr, ban).unwrap();
    }
    let filled = started.elapsed();
    let started = std::time::Instant::now();
    let n = h.filter.auto_ban_count().unwrap();
    let counted = started.elapsed();
    assert_eq!(n, abi::AUTO_BAN_ENTRIES);
    eprintln!("auto_bans: {n} entries written in {filled:?}; auto_ban_count() took {counted:?}");
    // The appliance's next ban is refused, and says so.
    assert_eq!(
        h.filter
            .auto_ban(ip(SRC4), Duration::from_secs(600), BanReason::Flood)
            .unwrap(),
        AutoBan::Full
    );
    // ... and so is the program's, counted.
    h.filter.verify(ip(SRC4), Duration::from_secs(600)).unwrap();
    h.expect(
        &udp4(&sip_request("OPTIONS", "friendly-scanner", "x")).build(),
        XDP_DROP,
        slot::DROP_SCANNER,
        &[slot::EV_VERIFIED, slot::EV_AUTO_BAN_FAILED],
    );
    // A ban already there can still be lengthened.
    assert_eq!(
        h.filter
            .auto_ban(ip("10.0.0.1"), Duration::from_secs(7200), BanReason::Flood)
            .unwrap(),
        AutoBan::Banned
    );
    // The operator's ban fits: it is in its own map.
    h.filter
        .ban(Cidr::host(ip(SRC4)), None, BanReason::Manual, "")
        .unwrap();
    h.expect(&udp4(&invite()).build(), XDP_DROP, slot::DROP_BANNED, &[]);
    let started = std::time::Instant::now();
    assert_eq!(h.filter.operator_ban_count().unwrap(), 1);
    eprintln!("operator_ban_count() of 1 took {:?}", started.elapsed());
}

#[test]
fn an_ipv4_mapped_address_bans_its_ipv4_source() {
    let Some(mut h) = Harness::new("an_ipv4_mapped_address_bans_its_ipv4_source") else {
        return;
    };
    // A dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d.
    let mapped = ip(&format!("::ffff:{SRC4}"));
    assert_eq!(
        h.filter
            .auto_ban(mapped, Duration::from_secs(600), BanReason::Flood)
            .unwrap(),
        AutoBan::Banned
    );
    let bans = h.filter.bans().unwrap();
    assert_eq!(bans[0].network, Cidr::host(ip(SRC4)), "{bans:?}");
    h.expect(&udp4(&invite()).build(), XDP_DROP, slot::DROP_BANNED, &[]);
    assert!(h.filter.unban(Cidr::host(mapped)).unwrap().automatic);
    h.expect(&udp4(&invite()).build(), XDP_PASS, slot::PASSED, &[]);
}

#[test]
fn automatic_bans_refuse_a_manual_reason_and_a_zero_ttl() {
    let Some(mut h) = Harness::new("automatic_bans_refuse_a_manual_reason_and_a_zero_ttl") else {
        return;
    };
    let err = h
        .filter
        .auto_ban(ip(SRC4), Duration::from_secs(60), BanReason::Manual)
        .unwrap_err();
    assert!(err.to_string().contains("operator"), "{err}");
    let err = h
        .filter
        .auto_ban(ip(SRC4), Duration::ZERO, BanReason::Flood)
        .unwrap_err();
    assert!(err.to_string().contains("positive"), "{err}");
    assert_eq!(h.filter.auto_ban_count().unwrap(), 0);
}

// ------------------------------------------------------------- AF_XDP

/// UMEM for the redirect test: page aligned, as AF_XDP requires.
#[repr(C, align(4096))]
struct UmemArea([u8; 1 << 16]);

#[test]
fn redirect_mode_delivers_good_sip_to_the_bound_af_xdp_socket() {
    use lab::netns::{enter_netns, unique_name, veth_pair, Netns};
    use std::num::NonZeroU32;
    use std::ptr::NonNull;
    use xdpilone::{IfInfo, Socket, SocketConfig, Umem, UmemConfig};

    if !privileged_or_skip("redirect_mode_delivers_good_sip_to_the_bound_af_xdp_socket") {
        return;
    }
    let a = Netns::create("xra").unwrap();
    let b = Netns::create("xrb").unwrap();
    let (ia, ib) = (unique_name("ra"), unique_name("rb"));
    veth_pair(&a, &ia, &b, &ib).unwrap();
    a.addr_up(&ia, "198.18.8.1/24").unwrap();
    b.addr_up(&ib, "198.18.8.2/24").unwrap();
    let sender_ns = a.open().unwrap();

    let (received, stats) = b
        .enter(move || {
            let cfg = FilterConfig {
                mode: VerdictMode::Redirect,
                ..FilterConfig::default()
            };
            let mut filter = Filter::load(&cfg, &ib, xdp::AttachMode::Native).unwrap();
            let mut area = Box::new(UmemArea([0; 1 << 16]));
            let mem = NonNull::from(&mut area.0[..]);
            let config = UmemConfig {
                fill_size: 16,
                complete_size: 16,
                frame_size: 4096,
                headroom: 0,
                flags: 0,
            };
            // SAFETY: `area` is page aligned, outlives the UMEM and its
            // sockets (dropped at the end of this closure, after them), and
            // nothing else touches it while the kernel owns its frames.
            #[allow(unsafe_code)]
            let umem = unsafe { Umem::new(config, mem) }.unwrap();
            let mut info = IfInfo::invalid();
            info.from_name(&std::ffi::CString::new(ib.as_str()).unwrap())
                .unwrap();
            info.set_queue(0);
            let sock = Socket::with_shared(&info, &umem).unwrap();
            let mut device = umem.fq_cq(&sock).unwrap();
            let rxtx = umem
                .rx_tx(
                    &sock,
                    &SocketConfig {
                        rx_size: NonZeroU32::new(16),
                        tx_size: None,
                        bind_flags: 0,
                    },
                )
                .unwrap();
            let mut rx = rxtx.map_rx().unwrap();
            umem.bind(&rxtx).unwrap();
            {
                let mut fill = device.fill(8);
                fill.insert((0..8u64).map(|i| i * 4096));
                fill.commit();
            }
            // PLATFORM.md: the socket goes into the XSKMAP only after bind.
            // SAFETY: the descriptor belongs to `rxtx`, alive for this call.
            #[allow(unsafe_code)]
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(rxtx.as_raw_fd()) };
            filter.xsk_map().unwrap().set(0, fd, 0).unwrap();

            let sender = std::thread::spawn(move || {
                enter_netns(&sender_ns).unwrap();
                let s = UdpSocket::bind("198.18.8.1:5070").unwrap();
                for _ in 0..20 {
                    s.send_to(&options(), "198.18.8.2:5060").unwrap();
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            let mut received = Vec::new();
            while received.is_empty() && std::time::Instant::now() < deadline {
                let mut reader = rx.receive(8);
                while let Some(desc) = reader.read() {
                    let at = desc.addr as usize;
                    received.push(area.0[at..at + desc.len as usize].to_vec());
                }
                reader.release();
                std::thread::sleep(Duration::from_millis(10));
            }
            sender.join().unwrap();
            let stats = filter.read_stats().unwrap();
            drop(rx);
            drop(rxtx);
            drop(device);
            drop(sock);
            drop(umem);
            drop(filter);
            drop(area);
            (received, stats)
        })
        .unwrap();
    assert!(
        !received.is_empty(),
        "no frame reached the AF_XDP socket: {stats:?}"
    );
    let frame = &received[0];
    let payload = String::from_utf8_lossy(&frame[42..]);
    assert!(payload.starts_with("OPTIONS sip:"), "{payload}");
    assert!(stats.redirected >= 1, "{stats:?}");
    assert_eq!(stats.drops.total(), 0, "{stats:?}");
    assert_eq!(stats.verdict_mode, "redirect");
}

// ------------------------------------------------------------------ pins

/// Pins a loaded-but-unattached filter's maps where a filter on `iface`
/// would, claiming `owner_pid`: what a crashed (or a live) run leaves.
fn leave_pins(iface: &str, owner_pid: u32) {
    let mut stale = Filter::load_unattached(&pass_mode()).unwrap();
    let dir = xdp::loader::pin_dir_for(iface).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    stale
        .maps()
        .set_info(abi::Info {
            owner_pid,
            attach_mode: abi::ATTACH_NATIVE,
            ..Default::default()
        })
        .unwrap();
    for (name, map) in stale.maps().named() {
        map.pin(dir.join(name)).unwrap();
    }
    // Dropping the unattached filter leaves these pins behind, like a crash.
}

fn with_veth<R: Send>(test: &str, f: impl FnOnce(String) -> R + Send) -> Option<R> {
    use lab::netns::{unique_name, veth_pair, Netns};
    if !privileged_or_skip(test) {
        return None;
    }
    let a = Netns::create("xpa").unwrap();
    let b = Netns::create("xpb").unwrap();
    let (ia, ib) = (unique_name("pa"), unique_name("pb"));
    veth_pair(&a, &ia, &b, &ib).unwrap();
    b.ip(&["link", "set", &ib, "up"]).unwrap();
    Some(b.enter(move || f(ib)).unwrap())
}

#[test]
fn pins_in_a_folder_another_user_could_write_or_owns_are_refused() {
    with_veth(
        "pins_in_a_folder_another_user_could_write_or_owns_are_refused",
        |iface| {
            use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
            let dir = xdp::loader::pin_dir_for(&iface).unwrap();
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
            let err = Filter::load(&pass_mode(), &iface, xdp::AttachMode::Native).unwrap_err();
            assert!(err.to_string().contains("others may write"), "{err}");
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
            std::os::unix::fs::chown(&dir, Some(4242), None).unwrap();
            let err = Filter::load(&pass_mode(), &iface, xdp::AttachMode::Native).unwrap_err();
            assert!(err.to_string().contains("belongs to user 4242"), "{err}");
            std::fs::remove_dir(&dir).unwrap();
            // A clean start makes every folder root-only.
            let filter = Filter::load(&pass_mode(), &iface, xdp::AttachMode::Native).unwrap();
            let mode = std::fs::metadata(&dir).unwrap().mode() & 0o777;
            assert_eq!(mode, 0o700);
            drop(filter);
        },
    );
}

#[test]
fn pins_left_by_a_dead_run_are_replaced() {
    with_veth("pins_left_by_a_dead_run_are_replaced", |iface| {
        let mut dead = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = dead.id();
        dead.wait().unwrap();
        leave_pins(&iface, dead_pid);
        let filter = Filter::load(&pass_mode(), &iface, xdp::AttachMode::Native).unwrap();
        let pinned = xdp::Pinned::open(&iface).unwrap();
        assert_eq!(pinned.info().unwrap().owner_pid, std::process::id());
        assert_eq!(pinned.read_stats().unwrap().attach_mode, "native");
        let dir = filter.pin_dir().unwrap().to_path_buf();
        drop(pinned);
        drop(filter);
        assert!(!dir.exists(), "pins removed on drop");
        assert!(xdp::Pinned::open(&iface).is_err());
    });
}

#[test]
fn pins_of_a_killed_run_not_yet_reaped_are_replaced() {
    with_veth(
        "pins_of_a_killed_run_not_yet_reaped_are_replaced",
        |iface| {
            // A child that has exited but is not waited for: a zombie.
            let mut zombie = std::process::Command::new("true").spawn().unwrap();
            let pid = zombie.id();
            let state = || {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_string()))
                    .and_then(|r| r.chars().next())
            };
            assert!(
                lab::wait_until(Duration::from_secs(10), || state() == Some('Z')),
                "{pid} never became a zombie: {:?}",
                state()
            );
            leave_pins(&iface, pid);
            let filter = Filter::load(&pass_mode(), &iface, xdp::AttachMode::Generic);
            zombie.wait().unwrap();
            let filter = filter.unwrap();
            let pinned = xdp::Pinned::open(&iface).unwrap();
            assert_eq!(pinned.info().unwrap().owner_pid, std::process::id());
            drop(pinned);
            drop(filter);
        },
    );
}

#[test]
fn same_named_interfaces_in_two_namespaces_pin_apart() {
    use lab::netns::{enter_netns, unique_name, veth_pair, Netns};
    if !privileged_or_skip("same_named_interfaces_in_two_namespaces_pin_apart") {
        return;
    }
    // Two namespaces, each with an interface of the same name.
    let name = unique_name("dup");
    let peers: Vec<(Netns, Netns)> = (0..2)
        .map(|_| (Netns::create("xda").unwrap(), Netns::create("xdb").unwrap()))
        .collect();
    for (a, b) in &peers {
        veth_pair(a, &unique_name("dp"), b, &name).unwrap();
        b.ip(&["link", "set", &name, "up"]).unwrap();
    }
    let first = peers[0].1.open().unwrap();
    let second = peers[1].1.open().unwrap();
    let (one, two) = std::thread::scope(|s| {
        s.spawn(|| {
            enter_netns(&first).unwrap();
            let one = Filter::load(&pass_mode(), &name, xdp::AttachMode::Generic).unwrap();
            enter_netns(&second).unwrap();
            let two = Filter::load(&pass_mode(), &name, xdp::AttachMode::Generic).unwrap();
            let dirs = (
                one.pin_dir().unwrap().to_path_buf(),
                two.pin_dir().unwrap().to_path_buf(),
            );
            // Both filters' pins exist side by side while both run.
            assert!(dirs.0.is_dir() && dirs.1.is_dir(), "{dirs:?}");
            drop(two);
            drop(one);
            dirs
        })
        .join()
        .unwrap()
    });
    assert_ne!(one, two, "two namespaces share one pin folder");
    assert!(!one.exists() && !two.exists());
}

#[test]
fn a_second_filter_on_a_live_runs_interface_is_refused() {
    with_veth(
        "a_second_filter_on_a_live_runs_interface_is_refused",
        |iface| {
            let first = Filter::load(&pass_mode(), &iface, xdp::AttachMode::Generic).unwrap();
            assert_eq!(
                first.attached(),
                Some(xdp::Attached::Generic { fell_back: false })
            );
            // Another live process claims the pins (PID 1 is always alive).
            let dir = first.pin_dir().unwrap().to_path_buf();
            let mut other = xdp::Pinned::open(&iface).unwrap();
            let mut info = other.info().unwrap();
            info.owner_pid = 1;
            other.set_info(info).unwrap();
            let err = Filter::load(&pass_mode(), &iface, xdp::AttachMode::Generic).unwrap_err();
            assert!(
                matches!(err, xdp::FilterError::AlreadyRunning { pid: 1, .. }),
                "{err}"
            );
            assert!(dir.exists(), "the running filter's pins stay");
            drop(first);
        },
    );
}
