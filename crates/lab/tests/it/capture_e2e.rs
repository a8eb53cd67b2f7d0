//! End to end: `dce-edge capture` (the real binary) against `dce-edge
//! filter` on a veth in a network namespace, during an INVITE flood from
//! twenty sources mixed with garbage: the pcap holds exactly the count
//! asked, every frame a rate-limited INVITE from a flooder, none of the
//! garbage, and tcpdump reads it; the top networks show the flood as one
//! /24 of twenty sources.

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lab::netns::{unique_name, veth_pair, ChildGuard, Netns};
use lab::privilege::{feature_or_skip, have_program, privileged_or_skip};

const SERVER: &str = "198.18.9.2";
const GARBAGE_FROM: &str = "198.18.9.3";
const FLOODERS: u8 = 20;
const INVITES_EACH: usize = 40;
const CAPTURED: usize = 50;

fn flooder(i: u8) -> String {
    format!("198.18.9.{}", 10 + i)
}

/// A command run inside `ns` without a new mount namespace, so every
/// `dce-edge` process sees the same bpffs pins.
fn in_netns(ns: &Netns, program: &std::path::Path) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{}", ns.name()))
        .arg("--")
        .arg(program);
    cmd
}

fn invite(seq: usize, from_ip: &str) -> String {
    format!(
        "INVITE sip:100@{SERVER} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from_ip}:5070;branch=z9hG4bK-cap-{seq}\r\n\
         Max-Forwards: 70\r\n\
         To: <sip:100@{SERVER}>\r\n\
         From: <sip:flood@{from_ip}>;tag={seq}\r\n\
         Call-ID: cap-{seq}@{from_ip}\r\n\
         CSeq: 1 INVITE\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Waits up to `timeout` for `path` to contain `text`.
fn wait_for_text(path: &std::path::Path, text: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let now = std::fs::read_to_string(path).unwrap_or_default();
        if now.contains(text) || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn capture_writes_the_rate_limited_invites_of_a_flood_to_a_pcap() {
    if !privileged_or_skip("capture_writes_the_rate_limited_invites_of_a_flood_to_a_pcap") {
        return;
    }
    if !feature_or_skip(
        "capture_e2e",
        have_program("nsenter"),
        "nsenter",
        "apt-get install util-linux",
    ) {
        return;
    }
    let bin: PathBuf = lab::bin::workspace_binary("dce-edge");
    let attackers = Netns::create("cpa").unwrap();
    let server = Netns::create("cps").unwrap();
    let (a_if, s_if) = (unique_name("ca"), unique_name("cs"));
    veth_pair(&attackers, &a_if, &server, &s_if).unwrap();
    attackers
        .addr_up(&a_if, &format!("{GARBAGE_FROM}/24"))
        .unwrap();
    for i in 0..FLOODERS {
        attackers
            .addr_up(&a_if, &format!("{}/24", flooder(i)))
            .unwrap();
    }
    server.addr_up(&s_if, &format!("{SERVER}/24")).unwrap();

    let dir = std::env::temp_dir().join(unique_name("cap2e"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("edge.toml");
    std::fs::write(
        &config,
        "[filter]\nsip_ports = [5060]\nattach = \"auto\"\n\
         rate_limits.invite = { rate = 1, burst = 5 }\n\
         [events]\nfile = \"events.jsonl\"\n",
    )
    .unwrap();
    let filter_log = dir.join("filter.log");
    let mut filter = ChildGuard::new(
        in_netns(&server, &bin)
            .args(["filter", "--iface", &s_if, "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&filter_log).unwrap())
            .spawn()
            .unwrap(),
    );
    // Up when a second process can read its pins.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !in_netns(&server, &bin)
        .args(["ban", "--list", "--iface", &s_if])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "the filter did not come up:\n{}",
            std::fs::read_to_string(&filter_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let pcap = dir.join("rate_limit.pcap");
    let capture_log = dir.join("capture.log");
    let mut capture = ChildGuard::new(
        in_netns(&server, &bin)
            .args(["capture", "--iface", &s_if, "--reason", "rate_limit"])
            .args(["--count", &CAPTURED.to_string(), "--timeout", "60", "--out"])
            .arg(&pcap)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("capture.out")).unwrap())
            .stderr(std::fs::File::create(&capture_log).unwrap())
            .spawn()
            .unwrap(),
    );
    let said = wait_for_text(
        &capture_log,
        "dce-edge capture: on",
        Duration::from_secs(20),
    );
    assert!(said.contains("dce-edge capture: on"), "{said}");

    // The flood, interleaved with garbage that is dropped under another
    // reason; paced so the veth ring never overflows.
    attackers
        .enter(|| {
            let garbage = UdpSocket::bind((GARBAGE_FROM, 5070)).unwrap();
            let sockets: Vec<UdpSocket> = (0..FLOODERS)
                .map(|i| UdpSocket::bind((flooder(i).as_str(), 5070)).unwrap())
                .collect();
            for seq in 0..INVITES_EACH {
                for (i, s) in sockets.iter().enumerate() {
                    s.send_to(invite(seq, &flooder(i as u8)).as_bytes(), (SERVER, 5060))
                        .unwrap();
                }
                garbage
                    .send_to(b"this is not SIP at all", (SERVER, 5060))
                    .unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        })
        .unwrap();

    let status = capture
        .wait_timeout(Duration::from_secs(30))
        .unwrap()
        .expect("the capture ends by itself once it has its count");
    let printed = std::fs::read_to_string(dir.join("capture.out")).unwrap_or_default();
    assert!(
        status.success(),
        "{printed}{}",
        std::fs::read_to_string(&capture_log).unwrap_or_default()
    );
    assert!(
        printed.contains(&format!(
            "captured {CAPTURED} of {CAPTURED} drops into {} ({CAPTURED} rate_limit)",
            pcap.display()
        )),
        "{printed}"
    );

    let bytes = std::fs::read(&pcap).unwrap();
    let (snaplen, packets) = xdp::capture::read_pcap(&bytes).unwrap();
    assert_eq!(snaplen, 256);
    assert_eq!(packets.len(), CAPTURED);
    let flooders: Vec<[u8; 4]> = (0..FLOODERS).map(|i| [198, 18, 9, 10 + i]).collect();
    for p in &packets {
        // Ethernet, IPv4, UDP to 5060, an INVITE from one of the flooders.
        assert_eq!(&p.data[12..14], &[0x08, 0x00], "{p:?}");
        let src: [u8; 4] = p.data[26..30].try_into().unwrap();
        assert!(flooders.contains(&src), "from {src:?}");
        assert_eq!(u16::from_be_bytes([p.data[36], p.data[37]]), 5060);
        assert!(p.data[42..].starts_with(b"INVITE "), "{p:?}");
        assert!(p.orig_len as usize >= p.data.len());
        assert!(p.since_epoch > Duration::from_secs(1_700_000_000));
    }
    let state = std::fs::metadata(&pcap).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(state.permissions().mode() & 0o777, 0o600);

    // tcpdump reads it as the same 50 UDP packets.
    if have_program("tcpdump") {
        let out = Command::new("tcpdump")
            .args(["-nn", "-r"])
            .arg(&pcap)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(text.lines().count(), CAPTURED, "{text}");
        assert!(
            text.lines()
                .all(|l| l.contains("> 198.18.9.2.5060: SIP")
                    || l.contains("> 198.18.9.2.5060: UDP")),
            "{text}"
        );
    } else {
        eprintln!("tcpdump is not installed: the pcap was checked by our reader only");
    }

    // The same flood as the top networks show it: twenty sources, one /24.
    let stats = in_netns(&server, &bin)
        .args(["stats", "--iface", &s_if, "--json", "--interval", "0.1"])
        .output()
        .unwrap();
    assert!(
        stats.status.success(),
        "{}",
        String::from_utf8_lossy(&stats.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    let nets = &stats["top_networks"];
    let entry = |network: &str, reason: &str| {
        nets["networks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["network"] == network && n["reason"] == reason)
            .cloned()
            .unwrap_or_else(|| panic!("no {network} {reason}: {nets}"))
    };
    let flood = entry("198.18.9.0/24", "rate_limit");
    assert_eq!(flood["sources"], FLOODERS as u64, "{nets}");
    // Every rate-limit drop of the filter is one of theirs (the budget's
    // refill over the flood's duration decides how many; the sum does not
    // depend on it).
    assert!(flood["drops"].as_u64().unwrap() > 0, "{nets}");
    assert_eq!(
        flood["drops"], stats["totals"]["drops"]["rate_limit"],
        "{stats}"
    );
    let garbage = entry("198.18.9.0/24", "not_sip");
    assert_eq!(
        (garbage["drops"].as_u64(), garbage["sources"].as_u64()),
        (Some(INVITES_EACH as u64), Some(1)),
        "{nets}"
    );
    assert_eq!(nets["levels"][0]["networks"], 1, "{nets}");
    assert_eq!(nets["levels"][0]["sources"], FLOODERS as u64 + 1, "{nets}");

    // Disarmed afterwards: a second capture may start at once.
    let again = in_netns(&server, &bin)
        .args(["capture", "--iface", &s_if, "--reason", "not_sip"])
        .args(["--count", "1", "--timeout", "0.5", "--out"])
        .arg(dir.join("again.pcap"))
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("captured 0 of 1 drops"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );

    // Each capture left two lines in the shield's event log: who took
    // which packets, and how many.
    filter.stop(Duration::from_secs(5)).unwrap();
    let log = std::fs::read_to_string(dir.join("events.jsonl")).unwrap_or_default();
    let captures: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "capture")
        .collect();
    let phases: Vec<&str> = captures
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(phases, ["started", "ended", "started", "ended"], "{log}");
    assert_eq!(captures[1]["details"]["written"], CAPTURED as u64, "{log}");
    assert!(
        captures[0]["details"]["what"]
            .as_str()
            .unwrap()
            .contains("of rate_limit"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
