//! Live reconfiguration (`FilterMaps::reconfigure`, what `dce-edge filter
//! reload` does): the same program keeps running with its counters, bans
//! and run-time list entries, the new rules apply from the next packet,
//! and a configuration that is refused or does not fit changes nothing.

use std::net::IpAddr;
use std::time::Duration;

use lab::privilege::privileged_or_skip;
use wire::build::{sip_request, UdpFrameBuilder as UdpFrame};
use xdp::abi::slot;
use xdp::test_run::{self, XDP_DROP, XDP_PASS};
use xdp::{BanReason, Cidr, Filter, FilterConfig, VerdictMode};

const SRC: &str = "198.18.0.10";

fn frame(src: &str, user_agent: &str) -> Vec<u8> {
    UdpFrame::new(
        src.parse().unwrap(),
        "198.18.0.2".parse().unwrap(),
        5062,
        5060,
        &sip_request("OPTIONS", user_agent, "alice"),
    )
    .build()
}

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

fn base() -> FilterConfig {
    FilterConfig {
        mode: VerdictMode::Pass,
        auto_ban: false,
        allowlist: vec![cidr("198.18.1.0/24"), cidr("198.18.2.0/24")],
        blocklist: vec![cidr("203.0.113.0/24")],
        ..FilterConfig::default()
    }
}

fn action(f: &Filter, frame: &[u8]) -> u32 {
    test_run::run(f.program_fd(), frame, None).unwrap().action
}

#[test]
fn a_reload_makes_a_new_signature_live_in_the_same_program_keeping_counters_and_bans() {
    if !privileged_or_skip(
        "a_reload_makes_a_new_signature_live_in_the_same_program_keeping_counters_and_bans",
    ) {
        return;
    }
    let old = base();
    let mut f = Filter::load_unattached(&old).unwrap();
    let id = f.program_id().expect("a loaded program has an id");
    assert_eq!(action(&f, &frame(SRC, "EvilBot/1.0")), XDP_PASS);
    let ban: Cidr = cidr("198.18.9.9/32");
    f.ban(ban, Some(Duration::from_secs(600)), BanReason::Manual, "")
        .unwrap();
    // An operator's run-time entry, and an upstream the appliance keeps.
    f.allow(cidr("198.18.3.0/24")).unwrap();
    let passed_before = f.counters().unwrap()[slot::PASSED];

    let mut new = base();
    new.scanner_user_agents.push("EvilBot".into());
    new.allowlist = vec![cidr("198.18.1.0/24"), cidr("198.18.4.0/24")];
    new.blocklist = vec![cidr("192.0.2.0/24")];
    let changes = f.reconfigure(&old, &new, &[cidr("198.18.2.0/24")]).unwrap();
    assert_eq!(changes.allow_added, vec![cidr("198.18.4.0/24")]);
    assert!(
        changes.allow_removed.is_empty(),
        "kept: {:?}",
        changes.allow_removed
    );
    assert_eq!(changes.block_added, vec![cidr("192.0.2.0/24")]);
    assert_eq!(changes.block_removed, vec![cidr("203.0.113.0/24")]);

    assert_eq!(f.program_id(), Some(id), "the same program runs");
    assert_eq!(action(&f, &frame(SRC, "EvilBot/1.0")), XDP_DROP);
    assert!(f.counters().unwrap()[slot::DROP_SCANNER] == 1);
    assert_eq!(passed_before, 1);
    assert_eq!(
        f.counters().unwrap()[slot::PASSED],
        passed_before,
        "the counters go on from where they were"
    );
    assert_eq!(
        action(&f, &frame("198.18.9.9", "Linphone")),
        XDP_DROP,
        "ban kept"
    );
    assert_eq!(action(&f, &frame("203.0.113.5", "Linphone")), XDP_PASS);
    assert_eq!(action(&f, &frame("192.0.2.5", "Linphone")), XDP_DROP);
    let mut allowed = f.allowlist().unwrap();
    allowed.sort_by_key(|c| c.to_string());
    let names: Vec<String> = allowed.iter().map(Cidr::to_string).collect();
    assert_eq!(
        names,
        [
            "198.18.1.0/24",
            "198.18.2.0/24",
            "198.18.3.0/24",
            "198.18.4.0/24"
        ],
        "file entries changed by the difference; run-time and kept entries stay"
    );
}

#[test]
fn a_refused_reload_changes_nothing() {
    if !privileged_or_skip("a_refused_reload_changes_nothing") {
        return;
    }
    let old = base();
    let mut f = Filter::load_unattached(&old).unwrap();
    let config_before = f.config_entry().unwrap();
    let mut bad = base();
    bad.scanner_user_agents.push("EvilBot".into());
    bad.blocklist.push(cidr("192.0.2.0/24"));
    bad.overload_cap_pps = 0;
    assert!(f.reconfigure(&old, &bad, &[]).is_err());
    assert_eq!(f.config_entry().unwrap(), config_before);
    assert_eq!(action(&f, &frame(SRC, "EvilBot/1.0")), XDP_PASS);
    assert_eq!(action(&f, &frame("192.0.2.5", "Linphone")), XDP_PASS);
    assert_eq!(f.blocklist().unwrap(), vec![cidr("203.0.113.0/24")]);
}

#[test]
fn a_reload_whose_lists_do_not_fit_is_undone_whole() {
    if !privileged_or_skip("a_reload_whose_lists_do_not_fit_is_undone_whole") {
        return;
    }
    let old = base();
    let mut f = Filter::load_unattached(&old).unwrap();
    // Fill the IPv4 allow trie with run-time entries, leaving room for one.
    let room = xdp::abi::LPM_ENTRIES - f.allowlist().unwrap().len() - 1;
    for i in 0..room as u32 {
        let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000u32 + i));
        f.allow(Cidr::host(a)).unwrap();
    }
    let mut new = base();
    new.scanner_user_agents.push("EvilBot".into());
    new.allowlist
        .extend([cidr("198.18.5.0/24"), cidr("198.18.6.0/24")]);
    new.blocklist.push(cidr("192.0.2.0/24"));
    let err = f.reconfigure(&old, &new, &[]).unwrap_err();
    assert!(err.to_string().contains("allowlist"), "{err}");
    let allowed = f.allowlist().unwrap();
    assert!(
        !allowed.contains(&cidr("198.18.5.0/24")) && !allowed.contains(&cidr("198.18.6.0/24")),
        "what went in was taken out again"
    );
    assert_eq!(allowed.len(), xdp::abi::LPM_ENTRIES - 1);
    assert_eq!(
        action(&f, &frame(SRC, "EvilBot/1.0")),
        XDP_PASS,
        "old signatures"
    );
    assert_eq!(action(&f, &frame("192.0.2.5", "Linphone")), XDP_PASS);
}
