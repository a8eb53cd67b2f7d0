//! BPF_PROG_TEST_RUN tests of SIP over TCP and TLS in the XDP program: every
//! segment to a SIP TCP port meets the allowlist, the blocklist and the bans;
//! SYNs pay a per-source and a per-CPU budget; everything else TCP (SSH
//! above all) passes untouched.

use std::net::IpAddr;
use std::time::Duration;

use wire::checksum::{checksum, pseudo_header_sum};
use xdp::abi::{self, slot};
use xdp::test_run::{XDP_DROP, XDP_PASS};
use xdp::{BanReason, Cidr, FilterConfig, FragmentPolicy, RateConfig};

use super::program::{counts, describe, pass_mode, Harness, HOUR_NS};
use super::support::OnOneCpu;

const SRC4: &str = "198.18.0.10";
const DST4: &str = "198.18.0.2";
const SRC6: &str = "2001:db8:1:2::10";
const DST6: &str = "2001:db8:1:2::2";

/// SYN set, ACK clear: a connection being opened.
const SYN: u8 = 0x02;
/// ACK alone: a segment of an established connection.
const ACK: u8 = 0x10;
/// PSH and ACK: data on an established connection.
const PSH_ACK: u8 = 0x18;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// One TCP segment in an Ethernet frame, built by hand: the wire crate's
/// builder makes UDP only.
#[derive(Clone)]
struct TcpFrame {
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    flags: u8,
    /// The data offset field, in 32-bit words (5: no options).
    doff: u8,
    /// Bytes of options actually present after the fixed header.
    options: usize,
    payload: Vec<u8>,
    /// IPv4 first fragment (more fragments set, offset 0).
    first_fragment: bool,
}

impl TcpFrame {
    fn new(src: &str, dst: &str, dport: u16, flags: u8) -> TcpFrame {
        TcpFrame {
            src: ip(src),
            dst: ip(dst),
            sport: 40000,
            dport,
            flags,
            doff: 5,
            options: 0,
            payload: Vec::new(),
            first_fragment: false,
        }
    }

    fn syn4() -> TcpFrame {
        TcpFrame::new(SRC4, DST4, 5060, SYN)
    }

    fn syn6() -> TcpFrame {
        TcpFrame::new(SRC6, DST6, 5060, SYN)
    }

    fn from(mut self, src: &str) -> TcpFrame {
        self.src = ip(src);
        self
    }

    fn flags(mut self, flags: u8) -> TcpFrame {
        self.flags = flags;
        self
    }

    fn build(&self) -> Vec<u8> {
        let mut tcp = Vec::new();
        tcp.extend_from_slice(&self.sport.to_be_bytes());
        tcp.extend_from_slice(&self.dport.to_be_bytes());
        tcp.extend_from_slice(&1000u32.to_be_bytes()); // sequence number
        let ack = if self.flags & ACK != 0 { 2000u32 } else { 0 };
        tcp.extend_from_slice(&ack.to_be_bytes());
        tcp.push(self.doff << 4);
        tcp.push(self.flags);
        tcp.extend_from_slice(&64240u16.to_be_bytes()); // window
        tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        tcp.extend(std::iter::repeat_n(1u8, self.options)); // NOPs
        tcp.extend_from_slice(&self.payload);
        let sum = checksum(
            &tcp,
            pseudo_header_sum(self.src, self.dst, 6, tcp.len() as u32),
        );
        tcp[16..18].copy_from_slice(&sum.to_be_bytes());

        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f.extend_from_slice(&[0x08, 0x00]);
                let mut h = vec![0x45, 0];
                h.extend_from_slice(&((20 + tcp.len()) as u16).to_be_bytes());
                h.extend_from_slice(&[0x12, 0x34]);
                h.extend_from_slice(if self.first_fragment {
                    &[0x20, 0]
                } else {
                    &[0x40, 0] // don't fragment
                });
                h.extend_from_slice(&[64, 6, 0, 0]);
                h.extend_from_slice(&s.octets());
                h.extend_from_slice(&d.octets());
                let sum = checksum(&h, 0);
                h[10..12].copy_from_slice(&sum.to_be_bytes());
                f.extend_from_slice(&h);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                f.extend_from_slice(&[0x86, 0xdd]);
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                f.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
                f.extend_from_slice(&[6, 64]);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
            }
            _ => panic!("mixed address families"),
        }
        f.extend_from_slice(&tcp);
        f
    }
}

/// Offset of the TCP header in a frame of `family` (no VLAN tags).
fn tcp_offset(v6: bool) -> usize {
    14 + if v6 { 40 } else { 20 }
}

/// Loads `cfg` and gives the SYN budgets bursts of `per_source` and
/// `per_cpu` SYNs with an interval of an hour, so neither refills during
/// the test however slow the machine.
fn with_syn_bursts(
    test: &str,
    cfg: FilterConfig,
    per_source: u64,
    per_cpu: u64,
) -> Option<Harness> {
    let mut h = Harness::with(test, cfg)?;
    let mut c = h.filter.config_entry().unwrap();
    c.syn = abi::Rate {
        interval_ns: HOUR_NS,
        tolerance_ns: (per_source - 1) * HOUR_NS,
    };
    c.syn_cpu = abi::Rate {
        interval_ns: HOUR_NS,
        tolerance_ns: (per_cpu - 1) * HOUR_NS,
    };
    h.filter.set_config_entry(c).unwrap();
    Some(h)
}

// --------------------------------------------------- lists and bans, every segment

#[test]
fn tcp_from_an_operator_banned_source_is_dropped_as_banned_syn_or_not() {
    let Some(mut h) = Harness::new("tcp_from_an_operator_banned_source_is_dropped") else {
        return;
    };
    for src in [SRC4, SRC6] {
        h.filter
            .ban(Cidr::host(ip(src)), None, BanReason::Manual, "")
            .unwrap();
    }
    for f in [TcpFrame::syn4(), TcpFrame::syn6()] {
        // A banned source can neither open a connection nor go on using one.
        for flags in [SYN, ACK, PSH_ACK] {
            h.expect(
                &f.clone().flags(flags).build(),
                XDP_DROP,
                slot::DROP_BANNED,
                &[],
            );
        }
    }
    let top = h.filter.top_sources(10).unwrap();
    assert!(
        top.iter()
            .all(|t| t.last_reason == "banned" && t.drops == 3),
        "{top:?}"
    );
}

#[test]
fn tcp_from_an_automatically_banned_source_is_dropped_as_banned() {
    let Some(mut h) = Harness::new("tcp_from_an_automatically_banned_source_is_dropped") else {
        return;
    };
    let ttl = Duration::from_secs(600);
    h.filter.auto_ban(ip(SRC4), ttl, BanReason::Flood).unwrap();
    // An automatic IPv6 ban covers the source's /64.
    h.filter
        .auto_ban(ip("2001:db8:1:2::77"), ttl, BanReason::Scanner)
        .unwrap();
    for f in [TcpFrame::syn4(), TcpFrame::syn6()] {
        h.expect(&f.build(), XDP_DROP, slot::DROP_BANNED, &[]);
        h.expect(&f.flags(ACK).build(), XDP_DROP, slot::DROP_BANNED, &[]);
    }
}

#[test]
fn tcp_from_a_blocklisted_source_is_dropped_as_blocklist() {
    let cfg = FilterConfig {
        blocklist: vec![
            "198.18.0.0/24".parse().unwrap(),
            "2001:db8:1::/48".parse().unwrap(),
        ],
        ..pass_mode()
    };
    let Some(h) = Harness::with("tcp_from_a_blocklisted_source_is_dropped_as_blocklist", cfg)
    else {
        return;
    };
    for f in [TcpFrame::syn4(), TcpFrame::syn6()] {
        h.expect(&f.build(), XDP_DROP, slot::DROP_BLOCKLIST, &[]);
        h.expect(
            &f.flags(PSH_ACK).build(),
            XDP_DROP,
            slot::DROP_BLOCKLIST,
            &[],
        );
    }
}

#[test]
fn allowlisted_syns_pass_past_bans_and_pay_no_budget() {
    let cfg = FilterConfig {
        allowlist: vec![SRC4.parse().unwrap(), "2001:db8:1:2::/64".parse().unwrap()],
        blocklist: vec!["198.18.0.0/16".parse().unwrap()],
        ..pass_mode()
    };
    let Some(mut h) = with_syn_bursts("allowlisted_syns_pass_unbudgeted", cfg, 1, 1) else {
        return;
    };
    let _cpu = OnOneCpu::pin();
    h.filter
        .ban(Cidr::host(ip(SRC4)), None, BanReason::Manual, "")
        .unwrap();
    for f in [TcpFrame::syn4(), TcpFrame::syn6()] {
        let (action, delta) = h.run_n(&f.build(), 50);
        assert_eq!(action, XDP_PASS);
        assert_eq!(
            describe(&delta),
            counts(&[(slot::PASSED_STREAM, 50)]),
            "neither budget applies to the allowlist"
        );
    }
    // ...and they spent neither: an unlisted source's first SYN passes.
    h.expect(
        &TcpFrame::syn6().from("2001:db8:9::1").build(),
        XDP_PASS,
        slot::PASSED_STREAM,
        &[],
    );
}

// ----------------------------------------------------------------- SYN budgets

#[test]
fn a_syn_flood_from_one_source_is_dropped_over_its_budget_and_counted() {
    let Some(h) = with_syn_bursts("a_syn_flood_from_one_source", pass_mode(), 3, 1000) else {
        return;
    };
    let _cpu = OnOneCpu::pin();
    let (action, delta) = h.run_n(&TcpFrame::syn4().build(), 100);
    assert_eq!(action, XDP_DROP);
    assert_eq!(
        describe(&delta),
        counts(&[(slot::PASSED_STREAM, 3), (slot::DROP_SYN_RATE_LIMIT, 97)])
    );
    let top = h.filter.top_sources(10).unwrap();
    assert_eq!(top.len(), 1, "{top:?}");
    assert_eq!(
        (top[0].source, top[0].drops, top[0].last_reason),
        (Cidr::host(ip(SRC4)), 97, "syn_rate_limit")
    );
    let stats = h.filter.read_stats().unwrap();
    assert_eq!(stats.drops[abi::DropReason::SynRateLimit], 97);
    assert_eq!(stats.passed_stream, 3);
    // Nobody else paid for it: another source's SYN passes, and so does the
    // flooding source's own established connection.
    h.expect(
        &TcpFrame::syn4().from("198.18.0.11").build(),
        XDP_PASS,
        slot::PASSED_STREAM,
        &[],
    );
    h.expect(
        &TcpFrame::syn4().flags(ACK).build(),
        XDP_PASS,
        slot::PASSED_STREAM,
        &[],
    );
}

#[test]
fn an_ipv6_syn_flood_is_budgeted_per_slash_64() {
    let Some(h) = with_syn_bursts(
        "an_ipv6_syn_flood_is_budgeted_per_slash_64",
        pass_mode(),
        2,
        1000,
    ) else {
        return;
    };
    let _cpu = OnOneCpu::pin();
    let (_, delta) = h.run_n(&TcpFrame::syn6().build(), 10);
    assert_eq!(
        describe(&delta),
        counts(&[(slot::PASSED_STREAM, 2), (slot::DROP_SYN_RATE_LIMIT, 8)])
    );
    // Another address of the same /64 is the same source...
    h.expect(
        &TcpFrame::syn6().from("2001:db8:1:2::99").build(),
        XDP_DROP,
        slot::DROP_SYN_RATE_LIMIT,
        &[],
    );
    // ...one of another /64 is not.
    h.expect(
        &TcpFrame::syn6().from("2001:db8:1:3::10").build(),
        XDP_PASS,
        slot::PASSED_STREAM,
        &[],
    );
}

#[test]
fn syns_from_many_sources_are_dropped_over_the_cpu_budget_while_verified_sources_pass() {
    let Some(mut h) = with_syn_bursts(
        "syns_from_many_sources_over_the_cpu_budget",
        pass_mode(),
        1000,
        4,
    ) else {
        return;
    };
    let _cpu = OnOneCpu::pin();
    h.filter
        .verify(ip("198.18.1.50"), Duration::from_secs(600))
        .unwrap();
    let mut delta_sum = [0u64; slot::SLOTS];
    for i in 0..20u8 {
        let f = TcpFrame::syn4().from(&format!("198.18.0.{}", 100 + i));
        let (_, d) = h.run_n(&f.build(), 1);
        for (s, v) in delta_sum.iter_mut().zip(d) {
            *s += v;
        }
    }
    assert_eq!(
        describe(&delta_sum),
        counts(&[(slot::PASSED_STREAM, 4), (slot::DROP_SYN_OVERLOAD, 16)]),
        "one SYN each from 20 sources, 4 fit this CPU's budget"
    );
    // A verified source skips this CPU's budget (and did not spend it)...
    h.expect(
        &TcpFrame::syn4().from("198.18.1.50").build(),
        XDP_PASS,
        slot::PASSED_STREAM,
        &[],
    );
    // ...while an unverified IPv6 source meets the same spent budget.
    h.expect(
        &TcpFrame::syn6().build(),
        XDP_DROP,
        slot::DROP_SYN_OVERLOAD,
        &[],
    );
    // Established connections are not budgeted at all.
    h.expect(
        &TcpFrame::syn4().from("198.18.0.200").flags(ACK).build(),
        XDP_PASS,
        slot::PASSED_STREAM,
        &[],
    );
    let stats = h.filter.read_stats().unwrap();
    assert_eq!(stats.drops[abi::DropReason::SynOverload], 17);
}

#[test]
fn a_verified_source_still_meets_its_own_syn_budget() {
    let Some(mut h) = with_syn_bursts(
        "a_verified_source_still_meets_its_own_syn_budget",
        pass_mode(),
        2,
        1,
    ) else {
        return;
    };
    let _cpu = OnOneCpu::pin();
    h.filter.verify(ip(SRC4), Duration::from_secs(600)).unwrap();
    let (_, delta) = h.run_n(&TcpFrame::syn4().build(), 5);
    assert_eq!(
        describe(&delta),
        counts(&[(slot::PASSED_STREAM, 2), (slot::DROP_SYN_RATE_LIMIT, 3)]),
        "skips the CPU budget (burst 1), not its own (burst 2)"
    );
}

#[test]
fn segments_of_established_connections_pass_unbudgeted() {
    let Some(h) = with_syn_bursts(
        "segments_of_established_connections_pass",
        pass_mode(),
        1,
        1,
    ) else {
        return;
    };
    let _cpu = OnOneCpu::pin();
    for f in [TcpFrame::syn4(), TcpFrame::syn6()] {
        // ACK, data, FIN/ACK, RST: the kernel's TCP state judges them.
        for flags in [ACK, PSH_ACK, 0x11, 0x04, SYN | ACK] {
            let (action, delta) = h.run_n(&f.clone().flags(flags).build(), 100);
            assert_eq!(action, XDP_PASS, "flags {flags:#x}");
            assert_eq!(describe(&delta), counts(&[(slot::PASSED_STREAM, 100)]));
        }
    }
}

// ---------------------------------------------------------- ports, untouched

#[test]
fn tcp_to_other_ports_passes_untouched_even_from_banned_and_blocklisted_sources() {
    let cfg = FilterConfig {
        blocklist: vec!["198.18.0.0/16".parse().unwrap()],
        ..pass_mode()
    };
    let Some(mut h) = with_syn_bursts("tcp_to_other_ports_passes_untouched", cfg, 1, 1) else {
        return;
    };
    h.filter
        .ban(Cidr::host(ip(SRC6)), None, BanReason::Manual, "")
        .unwrap();
    // SSH must never be touched: an operator locked out of the box is worse
    // than any flood.
    for dport in [22u16, 443, 5062] {
        for f in [TcpFrame::syn4(), TcpFrame::syn6()] {
            let mut f = f;
            f.dport = dport;
            let (action, delta) = h.run_n(&f.build(), 20);
            assert_eq!(action, XDP_PASS, "port {dport}");
            assert_eq!(describe(&delta), counts(&[(slot::PASSED_OTHER, 20)]));
            // Even a broken header on another port is none of ours.
            f.doff = 2;
            h.expect(&f.build(), XDP_PASS, slot::PASSED_OTHER, &[]);
        }
    }
    // Traffic the box itself started (its source port is the SIP port,
    // the destination an ephemeral one) is not ours either.
    let mut reply = TcpFrame::syn4().flags(SYN | ACK);
    (reply.sport, reply.dport) = (5060, 40000);
    h.expect(&reply.build(), XDP_PASS, slot::PASSED_OTHER, &[]);
}

#[test]
fn the_tls_port_is_watched_and_tcp_ports_say_which_ports_are_sip() {
    let Some(h) = Harness::new("the_tls_port_is_watched") else {
        return;
    };
    let mut tls = TcpFrame::syn4();
    tls.dport = 5061;
    let (_, delta) = h.run_n(&tls.build(), 100);
    // The default per-source budget: 50 at once (and 20 a second, which
    // may let one more through if the machine is slow).
    let (passed, limited) = (delta[slot::PASSED_STREAM], delta[slot::DROP_SYN_RATE_LIMIT]);
    assert!(
        passed + limited == 100 && passed >= 50 && limited > 0,
        "{}",
        describe(&delta)
    );
    let cfg = FilterConfig {
        tcp_ports: vec![5080],
        ..pass_mode()
    };
    let Some(h) = Harness::with("tcp_ports_say_which_ports_are_sip", cfg) else {
        return;
    };
    h.expect(&TcpFrame::syn4().build(), XDP_PASS, slot::PASSED_OTHER, &[]);
    let mut f = TcpFrame::syn4();
    f.dport = 5080;
    h.expect(&f.build(), XDP_PASS, slot::PASSED_STREAM, &[]);
    let cfg = FilterConfig {
        tcp_ports: Vec::new(),
        ..pass_mode()
    };
    let Some(h) = Harness::with("no_tcp_ports_no_tcp_checks", cfg) else {
        return;
    };
    let mut broken = TcpFrame::syn4();
    broken.doff = 1;
    h.expect(&broken.build(), XDP_PASS, slot::PASSED_OTHER, &[]);
}

#[test]
fn a_reload_changes_the_tcp_ports_and_the_syn_budgets() {
    let Some(mut h) = Harness::new("a_reload_changes_the_syn_budgets") else {
        return;
    };
    let _cpu = OnOneCpu::pin();
    let running = pass_mode();
    let new = FilterConfig {
        tcp_ports: vec![5060],
        syn_per_source: RateConfig { rate: 1, burst: 2 },
        ..pass_mode()
    };
    let changes = h.filter.reconfigure(&running, &new, &[]).unwrap();
    assert!(changes.allow_added.is_empty());
    let (_, delta) = h.run_n(&TcpFrame::syn4().build(), 10);
    assert_eq!(
        describe(&delta),
        counts(&[(slot::PASSED_STREAM, 2), (slot::DROP_SYN_RATE_LIMIT, 8)])
    );
    let mut tls = TcpFrame::syn4();
    tls.dport = 5061;
    h.expect(&tls.build(), XDP_PASS, slot::PASSED_OTHER, &[]);
}

// ------------------------------------------------------------------- malformed

#[test]
fn a_data_offset_under_five_is_malformed() {
    let Some(h) = Harness::new("a_data_offset_under_five_is_malformed") else {
        return;
    };
    for f in [TcpFrame::syn4(), TcpFrame::syn6()] {
        for doff in [0u8, 4] {
            let mut f = f.clone();
            f.doff = doff;
            h.expect(&f.build(), XDP_DROP, slot::DROP_MALFORMED, &[]);
        }
    }
}

#[test]
fn a_data_offset_past_the_segment_is_malformed_and_options_within_it_are_fine() {
    let Some(h) = Harness::new("a_data_offset_past_the_segment_is_malformed") else {
        return;
    };
    for f in [TcpFrame::syn4(), TcpFrame::syn6()] {
        let mut long = f.clone();
        long.doff = 15; // 60 bytes claimed, 20 present
        h.expect(&long.build(), XDP_DROP, slot::DROP_MALFORMED, &[]);
        let mut options = f.clone();
        options.doff = 10;
        options.options = 20;
        h.expect(&options.build(), XDP_PASS, slot::PASSED_STREAM, &[]);
    }
}

#[test]
fn a_truncated_tcp_header_is_malformed_once_its_port_says_sip() {
    let Some(h) = Harness::new("a_truncated_tcp_header_is_malformed") else {
        return;
    };
    for (f, v6) in [(TcpFrame::syn4(), false), (TcpFrame::syn6(), true)] {
        let full = f.build();
        let at = tcp_offset(v6);
        // Cut after the ports (the IP length still claims the whole
        // header): the port says SIP, the header is not there.
        h.expect(&full[..at + 12], XDP_DROP, slot::DROP_MALFORMED, &[]);
        // Cut before the destination port: it cannot be shown to be ours.
        h.expect(&full[..at + 3], XDP_PASS, slot::PASSED_OTHER, &[]);
        // The frame whole, but the IP length says the segment is shorter
        // than its header.
        let mut short = full.clone();
        if v6 {
            short[14 + 4..14 + 6].copy_from_slice(&12u16.to_be_bytes());
        } else {
            short[14 + 2..14 + 4].copy_from_slice(&32u16.to_be_bytes());
        }
        h.expect(&short, XDP_DROP, slot::DROP_MALFORMED, &[]);
    }
}

#[test]
fn a_first_fragment_of_a_tcp_segment_follows_the_fragment_policy_after_the_bans() {
    let Some(mut h) = Harness::new("a_first_fragment_of_a_tcp_segment") else {
        return;
    };
    let mut f = TcpFrame::syn4();
    f.first_fragment = true;
    h.expect(&f.build(), XDP_DROP, slot::DROP_FRAGMENT, &[]);
    h.filter
        .ban(Cidr::host(ip(SRC4)), None, BanReason::Manual, "")
        .unwrap();
    h.expect(&f.build(), XDP_DROP, slot::DROP_BANNED, &[]);
    let cfg = FilterConfig {
        fragments: FragmentPolicy::Pass,
        ..pass_mode()
    };
    let Some(h) = Harness::with("a_first_fragment_of_a_tcp_segment_passed", cfg) else {
        return;
    };
    h.expect(
        &f.build(),
        XDP_PASS,
        slot::PASSED_STREAM,
        &[slot::EV_FRAGMENT_PASSED],
    );
}
