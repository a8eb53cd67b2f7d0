//! End to end: `dce-edge filter` (the real binary) on a veth in a network
//! namespace, in front of a plain TCP listener on the SIP port (and one on
//! another port). A banned source cannot open a connection to the SIP port
//! (while it still reaches the other port, and reaches the SIP port again
//! once unbanned), an unbanned one can, and a bounded hping3 SYN flood from
//! one source is dropped over its SYN budget and counted as
//! `syn_rate_limit` (issue 19).

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lab::netns::{unique_name, veth_pair, ChildGuard, Netns};
use lab::privilege::{feature_or_skip, have_program, privileged_or_skip};

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 8, 2);
const BANNED: Ipv4Addr = Ipv4Addr::new(198, 18, 8, 1);
const GOOD: Ipv4Addr = Ipv4Addr::new(198, 18, 8, 3);
const FLOODER: Ipv4Addr = Ipv4Addr::new(198, 18, 8, 4);
/// A TCP port that is not SIP (think SSH): never touched by the filter.
const OTHER_PORT: u16 = 2222;
/// SYNs hping3 sends (bounded by count, paced).
const FLOOD_SYNS: u64 = 300;
/// The flooder's per-source SYN budget here: 5 at once, then 1 a second.
const SYN_BURST: u64 = 5;

/// A command run inside `ns` without a new mount namespace (unlike `ip
/// netns exec`), so every `dce-edge` process sees the same bpffs pins.
fn in_netns(ns: &Netns, program: &Path) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{}", ns.name()))
        .arg("--")
        .arg(program);
    cmd
}

fn stats_json(bin: &Path, ns: &Netns, iface: &str) -> Result<serde_json::Value, String> {
    let out = in_netns(ns, bin)
        .args([
            "stats",
            "--iface",
            iface,
            "--json",
            "--interval",
            "0.1",
            "--top",
            "20",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

fn n(v: &serde_json::Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_u64()
        .unwrap_or_else(|| panic!("{path:?} missing in {v}"))
}

/// Opens a TCP connection from `src` (std cannot bind a client socket
/// before connecting), giving up after `timeout`.
fn connect_from(src: Ipv4Addr, dst: SocketAddrV4, timeout: Duration) -> io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let sockaddr = |a: SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    let (local, remote) = (sockaddr(SocketAddrV4::new(src, 0)), sockaddr(dst));
    // SAFETY: `socket` returns a new descriptor that the TcpStream takes
    // ownership of at once (it closes it on every path); setsockopt, bind
    // and connect read only the local values passed, with their sizes.
    #[allow(unsafe_code)]
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        // A blocking connect gives up after SO_SNDTIMEO (Linux).
        let r = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stream)
    }
}

/// Accepts connections until `stop`, recording each peer's address.
fn listener(l: TcpListener, peers: Arc<Mutex<Vec<Ipv4Addr>>>, stop: Arc<AtomicBool>) {
    l.set_nonblocking(true).unwrap();
    while !stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((_conn, std::net::SocketAddr::V4(from))) => peers.lock().unwrap().push(*from.ip()),
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

#[test]
fn the_shield_keeps_banned_sources_and_syn_floods_off_sip_over_tcp() {
    let test = "the_shield_keeps_banned_sources_and_syn_floods_off_sip_over_tcp";
    if !privileged_or_skip(test) {
        return;
    }
    if !feature_or_skip(
        test,
        have_program("hping3") && have_program("nsenter"),
        "hping3 or nsenter",
        "apt-get install hping3 util-linux",
    ) {
        return;
    }
    let bin: PathBuf = lab::bin::workspace_binary("dce-edge");

    let clients = Netns::create("fta").unwrap();
    let server = Netns::create("fts").unwrap();
    let (c_if, s_if) = (unique_name("ta"), unique_name("ts"));
    veth_pair(&clients, &c_if, &server, &s_if).unwrap();
    for addr in [BANNED, GOOD, FLOODER] {
        clients.addr_up(&c_if, &format!("{addr}/24")).unwrap();
    }
    server.addr_up(&s_if, &format!("{SERVER}/24")).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let sip_peers: Arc<Mutex<Vec<Ipv4Addr>>> = Arc::default();
    let other_peers: Arc<Mutex<Vec<Ipv4Addr>>> = Arc::default();
    let mut threads = Vec::new();
    for (port, peers) in [(5060, &sip_peers), (OTHER_PORT, &other_peers)] {
        let l = server
            .enter(move || TcpListener::bind((SERVER, port)).unwrap())
            .unwrap();
        let (peers, stop) = (peers.clone(), stop.clone());
        threads.push(std::thread::spawn(move || listener(l, peers, stop)));
    }

    // The shield, with a small SYN budget per source.
    let dir = std::env::temp_dir().join(unique_name("ft2e"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "[filter]\nsip_ports = [5060]\ntcp_ports = [5060, 5061]\n\
             syn_per_source = {{ rate = 1, burst = {SYN_BURST} }}\n"
        ),
    )
    .unwrap();
    let log = dir.join("filter.log");
    let mut filter = ChildGuard::new(
        in_netns(&server, &bin)
            .args(["filter", "--iface", &s_if, "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let baseline = loop {
        match stats_json(&bin, &server, &s_if) {
            Ok(v) => break v,
            Err(e) if Instant::now() > deadline => panic!(
                "the filter did not come up: {e}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let cli = |args: &[&str]| {
        let out = in_netns(&server, &bin).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "dce-edge {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    cli(&["ban", &BANNED.to_string(), "--iface", &s_if]);

    let sip = SocketAddrV4::new(SERVER, 5060);
    let connect = |src: Ipv4Addr, dst: SocketAddrV4| {
        clients
            .enter(move || connect_from(src, dst, Duration::from_secs(3)).map(|_| ()))
            .unwrap()
    };
    // An unbanned source opens a connection to the SIP port...
    connect(GOOD, sip).expect("an unbanned source connects to the SIP port");
    // ...a banned one cannot (its SYN and the kernel's retries are dropped)...
    let refused = connect(BANNED, sip);
    assert!(
        refused.is_err(),
        "a banned source connected to the SIP port"
    );
    // ...but reaches a port that is not SIP: the filter never touches it.
    connect(BANNED, SocketAddrV4::new(SERVER, OTHER_PORT))
        .expect("a banned source still reaches a non-SIP TCP port");

    // A bounded SYN flood from one source.
    let flood_started = Instant::now();
    let flood = clients
        .command("timeout")
        .args(["30", "hping3", "-S", "-p", "5060", "-c"])
        .arg(FLOOD_SYNS.to_string())
        .args(["-i", "u2000", "-a"])
        .arg(FLOODER.to_string())
        .arg(SERVER.to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let flood_secs = flood_started.elapsed().as_secs() + 1;
    let flood_err = String::from_utf8_lossy(&flood.stderr).into_owned();
    assert!(
        flood_err.contains(&format!("{FLOOD_SYNS} packets transmitted")),
        "hping3: {flood_err}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let after = stats_json(&bin, &server, &s_if).unwrap();
    let d = |path: &[&str]| n(&after, path) - n(&baseline, path);

    // Once unbanned, the same source connects.
    cli(&["unban", &BANNED.to_string(), "--iface", &s_if]);
    connect(BANNED, sip).expect("an unbanned source connects again");

    // A connection completes in the kernel before the listener accepts it:
    // wait for the listeners to have taken the last ones.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && !(sip_peers.lock().unwrap().contains(&BANNED)
            && other_peers.lock().unwrap().contains(&BANNED))
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let sip_peers = sip_peers.lock().unwrap().clone();
    assert_eq!(
        sip_peers.iter().filter(|p| **p == BANNED).count(),
        1,
        "only the connection after the unban: {sip_peers:?}"
    );
    assert!(sip_peers.contains(&GOOD), "{sip_peers:?}");
    assert_eq!(other_peers.lock().unwrap().clone(), vec![BANNED]);

    // Counted: the banned source's SYNs as `banned`, the flood over its
    // budget as `syn_rate_limit` (at most the burst and one a second of
    // the flood's duration passed), nothing as `syn_overload`.
    assert!(d(&["totals", "drops", "banned"]) >= 1, "{after}");
    let limited = d(&["totals", "drops", "syn_rate_limit"]);
    assert!(
        limited <= FLOOD_SYNS && limited >= FLOOD_SYNS - SYN_BURST - flood_secs,
        "{limited} of {FLOOD_SYNS} SYNs dropped as syn_rate_limit in about {flood_secs} s: {after}"
    );
    for quiet in ["syn_overload", "malformed", "blocklist"] {
        assert_eq!(d(&["totals", "drops", quiet]), 0, "{quiet}: {after}");
    }
    assert!(d(&["totals", "passed_stream"]) >= 2, "{after}");
    let top = after["top_sources"].as_array().unwrap();
    let reason_of = |ip: Ipv4Addr| {
        top.iter()
            .find(|t| t["source"] == format!("{ip}/32"))
            .map(|t| t["last_reason"].as_str().unwrap().to_string())
    };
    assert_eq!(
        reason_of(FLOODER).as_deref(),
        Some("syn_rate_limit"),
        "{after}"
    );
    assert_eq!(reason_of(BANNED).as_deref(), Some("banned"), "{after}");
    assert_eq!(reason_of(GOOD), None, "{after}");
    eprintln!(
        "{test}: {limited} of {FLOOD_SYNS} flood SYNs dropped as syn_rate_limit, {} banned SYNs",
        d(&["totals", "drops", "banned"])
    );

    let status = filter.stop(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "filter exit: {status}");
    let _ = std::fs::remove_dir_all(&dir);
}
