//! Shared pieces of the dataplane integration tests: a bounded UDP peer that
//! runs inside a namespace, and the lab around it. The handler they run is
//! the crate's reference [`dataplane::echo::Echo`].

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// What a peer saw.
#[derive(Debug, Default, Clone)]
pub struct PeerReport {
    pub sent: u64,
    pub answered: u64,
    pub bad_answers: u64,
    pub first_bytes: Vec<u8>,
}

/// Sends `count` datagrams from `bind` to `server` in windows of `window`,
/// waiting (bounded) for each window's answers; every send is bounded in
/// count and the whole run in time.
pub fn run_peer(bind: SocketAddr, server: SocketAddr, count: u64, window: u64) -> PeerReport {
    let sock = UdpSocket::bind(bind).expect("bind peer socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut report = PeerReport::default();
    // Warm-up: until one answer comes back (neighbours resolve, workers
    // start), bounded to 15 s.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 2048];
    loop {
        assert!(
            Instant::now() < deadline,
            "no answer to the warm-up datagram from {server}"
        );
        sock.send_to(b"warm-up", server).unwrap();
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            if &buf[1..n] == b"arm-up" {
                break;
            }
        }
    }
    // Drain answers to extra warm-up datagrams.
    while sock.recv_from(&mut buf).is_ok() {}
    let run_deadline = Instant::now() + Duration::from_secs(60);
    let mut next = 0u64;
    while next < count && Instant::now() < run_deadline {
        let end = (next + window).min(count);
        for i in next..end {
            let payload = format!("xpayload-{i:08}");
            sock.send_to(payload.as_bytes(), server).unwrap();
            report.sent += 1;
        }
        let mut want = end - next;
        let window_deadline = Instant::now() + Duration::from_secs(5);
        while want > 0 && Instant::now() < window_deadline {
            match sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    if from == server && n == 17 && &buf[1..9] == b"payload-" {
                        report.answered += 1;
                        if !report.first_bytes.contains(&buf[0]) {
                            report.first_bytes.push(buf[0]);
                        }
                        want -= 1;
                    } else {
                        report.bad_answers += 1;
                    }
                }
                Err(_) => continue,
            }
        }
        next = end;
    }
    report
}

/// A temporary directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let dir = std::env::temp_dir().join(lab::netns::unique_name(prefix));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The clang the tests can use, if any.
pub fn find_clang() -> Option<&'static str> {
    ["clang", "clang-15", "clang-14"]
        .into_iter()
        .find(|c| lab::privilege::have_program(c))
}

/// Compiles the test XDP program (fixtures/dataplane/xsk_redirect.c) for
/// UDP port `port` into `dir`; returns the object's path.
pub fn compile_xsk_redirect(clang: &str, dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dataplane/xsk_redirect.c");
    let obj = dir.join("xsk_redirect.o");
    let multiarch = format!("-I/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    let out = std::process::Command::new(clang)
        .args(["-O2", "-g", "-target", "bpf", &multiarch])
        .arg(format!("-DSIP_PORT={port}"))
        .arg("-c")
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .output()
        .expect("run clang");
    assert!(
        out.status.success(),
        "clang failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    obj
}

/// Two namespaces joined by a one-queue veth pair, with `198.18.{subnet}.1`
/// and `2001:2:0:{subnet}::1` on the first and `.2` / `::2` on the second.
pub struct Lab {
    pub edge: lab::netns::Netns,
    pub peer: lab::netns::Netns,
    pub edge_if: String,
    pub peer_if: String,
}

impl Lab {
    pub fn new(subnet: u8) -> Lab {
        use lab::netns::{unique_name, veth_pair_one_queue, Netns};
        let edge = Netns::create("dle").unwrap();
        let peer = Netns::create("dlp").unwrap();
        let (ei, pi) = (unique_name("le"), unique_name("lp"));
        veth_pair_one_queue(&edge, &ei, &peer, &pi).unwrap();
        edge.addr_up(&ei, &format!("198.18.{subnet}.1/24")).unwrap();
        edge.addr_up(&ei, &format!("2001:2:0:{subnet}::1/64"))
            .unwrap();
        peer.addr_up(&pi, &format!("198.18.{subnet}.2/24")).unwrap();
        peer.addr_up(&pi, &format!("2001:2:0:{subnet}::2/64"))
            .unwrap();
        Lab {
            edge,
            peer,
            edge_if: ei,
            peer_if: pi,
        }
    }
}
