//! The program's own cost per packet, with BPF_PROG_TEST_RUN's in-kernel
//! loop (no interface): the paths a flood takes. Ignored by default (a
//! figure, not a check); run it with
//! `cargo test -p dce-xdp -- --ignored --nocapture per_packet_cost`
//! (the program is built by clang -O2 in every profile, so a debug build
//! measures the same program).
//! `DCE_COST_RUNS` sets the repetitions of each case (default 200,000).

use std::net::IpAddr;

use lab::privilege::privileged_or_skip;
use wire::build::{sip_request, UdpFrameBuilder as UdpFrame};
use xdp::test_run::run_repeat;
use xdp::{Filter, FilterConfig, RateConfig, RateLimits, VerdictMode};

fn frame(user_agent: &str) -> Vec<u8> {
    let src: IpAddr = "198.18.128.1".parse().unwrap();
    let dst: IpAddr = "198.18.0.2".parse().unwrap();
    UdpFrame::new(
        src,
        dst,
        5060,
        5060,
        &sip_request("INVITE", user_agent, "alice"),
    )
    .build()
}

#[test]
#[ignore = "prints figures; run with --ignored --nocapture"]
fn per_packet_cost() {
    if !privileged_or_skip("per_packet_cost") {
        return;
    }
    let runs: u32 = std::env::var("DCE_COST_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let huge = RateConfig {
        rate: 10_000_000,
        burst: 10_000_000,
    };
    let flood = FilterConfig {
        mode: VerdictMode::Pass,
        rate_limits: RateLimits {
            invite: RateConfig { rate: 1, burst: 1 },
            ..Default::default()
        },
        ..FilterConfig::default()
    };
    let scan_every_time = FilterConfig {
        mode: VerdictMode::Pass,
        auto_ban: false,
        rate_limits: RateLimits {
            invite: huge,
            register: huge,
            other: huge,
        },
        unverified_cap_pps: u32::MAX,
        overload_cap_pps: u32::MAX,
        ..FilterConfig::default()
    };
    let spoofed_scanners = FilterConfig {
        mode: VerdictMode::Pass,
        ..FilterConfig::default()
    };
    let cases = [
        (
            "flood INVITE over its source's budget (rate_limit)",
            &flood,
            frame("Linphone/5.0"),
        ),
        (
            "scanner INVITE, scanned every run (scanner, auto-ban off)",
            &scan_every_time,
            frame("friendly-scanner"),
        ),
        (
            "scanner INVITE from one unverified source, default config",
            &spoofed_scanners,
            frame("friendly-scanner"),
        ),
    ];
    for (name, cfg, frame) in cases {
        let filter = Filter::load_unattached(cfg).expect("the program loads");
        let r = run_repeat(filter.program_fd(), &frame, None, runs).unwrap();
        println!(
            "program alone, {name}: {} ns per run ({runs} runs; {})",
            r.duration_ns,
            verdicts(&filter)
        );
    }
    // The same rate-limited flood with no capture, with every drop copied
    // to the capture ring (3,000 runs: the 1 MiB ring holds about 3,600
    // records, so none is lost), and with a capture armed and spent.
    {
        let mut filter = Filter::load_unattached(&flood).expect("the program loads");
        let invite = frame("Linphone/5.0");
        let fd = || filter.program_fd();
        let mut reader = filter.capture_reader().unwrap();
        let runs = 3_000u32;
        let spec = |count| xdp::capture::CaptureSpec {
            reasons: vec![xdp::abi::DropReason::RateLimit],
            source: None,
            count,
        };
        run_repeat(fd(), &invite, None, 10).unwrap(); // past the burst
        let unarmed = run_repeat(fd(), &invite, None, runs).unwrap().duration_ns;
        filter
            .arm_capture(&spec(u64::from(runs)), std::process::id())
            .unwrap();
        let copying = run_repeat(filter.program_fd(), &invite, None, runs)
            .unwrap()
            .duration_ns;
        let copied = reader.drain();
        let lost = filter.disarm_capture().unwrap().lost;
        filter.arm_capture(&spec(1), std::process::id()).unwrap();
        run_repeat(filter.program_fd(), &invite, None, 1).unwrap();
        reader.drain();
        let spent = run_repeat(filter.program_fd(), &invite, None, runs)
            .unwrap()
            .duration_ns;
        filter.disarm_capture().unwrap();
        println!(
            "program alone, flood INVITE over its source's budget ({runs} runs each): \
             no capture {unarmed} ns, every drop captured {copying} ns ({copied} copied, \
             {lost} lost), capture spent {spent} ns per run"
        );
    }
    // A spoofed scanner flood: every packet from another source, so no
    // per-source state helps. One kernel call per frame: the average of
    // single runs, which includes the test run's own timer.
    let spent = FilterConfig {
        unverified_cap_pps: 1,
        ..spoofed_scanners.clone()
    };
    for (name, cfg) in [
        ("default config", &spoofed_scanners),
        ("this CPU's unverified budget spent (cap 1/s)", &spent),
    ] {
        let filter = Filter::load_unattached(cfg).expect("the program loads");
        let sources = 20_000u32;
        let mut frame = frame("friendly-scanner");
        let mut total = 0u64;
        for i in 0..sources {
            frame[26..30].copy_from_slice(&(0x0a00_0000 + i).to_be_bytes());
            total += run_repeat(filter.program_fd(), &frame, None, 1)
                .unwrap()
                .duration_ns as u64;
        }
        println!(
            "program alone, spoofed scanner flood from {sources} sources, {name}: {} ns per run \
             (single runs; {})",
            total / sources as u64,
            verdicts(&filter)
        );
    }
}

/// The drop reasons that moved, for the figures' context.
fn verdicts(filter: &Filter) -> String {
    let stats = filter.read_stats().unwrap();
    let moved: Vec<String> = stats
        .drops
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(reason, n)| format!("{}={n}", reason.name()))
        .collect();
    format!("drops {}", moved.join(" "))
}

/// What reading the ban maps costs when they are full: the "ban map near
/// full" alert's counts and the ban list.
#[test]
#[ignore = "prints figures; run with --ignored --nocapture"]
fn ban_map_reading_cost() {
    use std::net::Ipv4Addr;
    use std::time::Instant;
    use xdp::{abi, BanReason, Cidr};

    if !privileged_or_skip("ban_map_reading_cost") {
        return;
    }
    let mut filter = Filter::load_unattached(&FilterConfig::default()).expect("the program loads");
    let now = xdp::maps::monotonic_ns();
    let ban = abi::Ban {
        expires_ns: now + 3_600_000_000_000,
        banned_ns: now,
        reason: abi::ban_reason::FLOOD,
        prefixlen: 32,
        note: [0; 32],
    };
    let full = abi::AUTO_BAN_ENTRIES as u32;
    for i in 0..full {
        let addr = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        filter.put_auto_ban_raw(addr, ban).unwrap();
    }
    for _ in 0..3 {
        let t = Instant::now();
        let n = filter.auto_ban_count().unwrap();
        println!("auto_ban_count() of {n}: {:?}", t.elapsed());
    }
    for i in 0..abi::LPM_ENTRIES as u32 {
        let host = Cidr::host(IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i)));
        filter.ban(host, None, BanReason::Manual, "").unwrap();
    }
    let t = Instant::now();
    let n = filter.operator_ban_count().unwrap();
    println!("operator_ban_count() of {n}: {:?}", t.elapsed());
    let t = Instant::now();
    let n = filter.bans().unwrap().len();
    println!("bans() of {n}: {:?}", t.elapsed());
}
