//! Dataplane echo rate on a veth pair: how many datagrams per second the
//! dataplane receives, hands to the reference handler
//! (`dataplane::echo::Echo`) and answers, in socket mode and in AF_XDP copy
//! mode (native and SKB XDP), measured in one run with the same closed-loop
//! peer (a window of datagrams in flight, one UDP socket, bounded in count
//! and time).
//!
//! `cargo bench -p dce-lab --bench dataplane_echo` (root; namespaces,
//! XDP). Optional: `DCE_BENCH_SECONDS` (default 5), `DCE_BENCH_WINDOW`
//! (default 256).
//!
//! On veth the receiving side runs on the sender's CPU and everything
//! shares two cores, so these figures are sender-bound and say nothing
//! about a real NIC; they compare the modes with each other, run to run.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use aya::maps::XskMap;
use aya::programs::{Xdp, XdpMode};
use aya::Ebpf;
use dataplane::echo::Echo;
use dataplane::{Dataplane, DataplaneConfig, IoMode, SocketMap};
use lab::netns::{unique_name, veth_pair_one_queue, Netns};

struct Figures {
    sent: u64,
    answered: u64,
    lost: u64,
    seconds: f64,
}

/// Keeps up to `window` datagrams in flight to `server` for `seconds`.
/// When nothing comes back for 200 ms the outstanding ones are written off
/// (so the window refills); the final loss is what never came back after a
/// last second of draining.
/// Asks for a 4 MiB receive buffer (capped by net.core.rmem_max), so a
/// window of answers arriving at once is not dropped by the peer itself.
fn big_receive_buffer(sock: &UdpSocket) {
    let _ = sys::set_socket_buffers(sock, 4 << 20);
}

fn closed_loop(bind: SocketAddr, server: SocketAddr, seconds: u64, window: u64) -> Figures {
    let sock = UdpSocket::bind(bind).unwrap();
    big_receive_buffer(&sock);
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let payload = [b'x'; 64];
    let mut buf = [0u8; 2048];
    // Warm-up until the first answer (neighbours, workers), at most 15 s.
    let warm = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(Instant::now() < warm, "no answer from {server}");
        sock.send_to(&payload, server).unwrap();
        if sock.recv_from(&mut buf).is_ok() {
            break;
        }
    }
    while sock.recv_from(&mut buf).is_ok() {}
    let mut f = Figures {
        sent: 0,
        answered: 0,
        lost: 0,
        seconds: 0.0,
    };
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut written_off = 0u64;
    while Instant::now() < end {
        while f.sent - f.answered.min(f.sent) - written_off.min(f.sent - f.answered) < window {
            sock.send_to(&payload, server).unwrap();
            f.sent += 1;
        }
        match sock.recv_from(&mut buf) {
            Ok(_) => f.answered += 1,
            Err(_) => written_off = f.sent - f.answered,
        }
    }
    f.seconds = start.elapsed().as_secs_f64();
    let drain = Instant::now() + Duration::from_secs(1);
    while f.answered < f.sent && Instant::now() < drain {
        if sock.recv_from(&mut buf).is_ok() {
            f.answered += 1;
        }
    }
    f.lost = f.sent - f.answered;
    f
}

/// The peer: a plain kernel UDP echo server (recv_from / send_to on one
/// std socket) on `addr` until `stop` is set.
fn kernel_echo(addr: SocketAddr, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> u64 {
    let sock = UdpSocket::bind(addr).unwrap();
    big_receive_buffer(&sock);
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let mut echoed = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            if sock.send_to(&buf[..n], from).is_ok() {
                echoed += 1;
            }
        }
    }
    echoed
}

struct Lab {
    edge: Netns,
    peer: Netns,
    edge_if: String,
}

fn lab(subnet: u8) -> Lab {
    let edge = Netns::create("bde").unwrap();
    let peer = Netns::create("bdp").unwrap();
    let (ei, pi) = (unique_name("be"), unique_name("bp"));
    veth_pair_one_queue(&edge, &ei, &peer, &pi).unwrap();
    edge.addr_up(&ei, &format!("198.18.{subnet}.1/24")).unwrap();
    peer.addr_up(&pi, &format!("198.18.{subnet}.2/24")).unwrap();
    Lab {
        edge,
        peer,
        edge_if: ei,
    }
}

fn run(
    name: &str,
    lab: &Lab,
    config: &DataplaneConfig,
    map: Option<&mut dyn SocketMap>,
    subnet: u8,
    seconds: u64,
    window: u64,
) {
    let dp = Dataplane::start(config, map, |_| Echo::new()).unwrap();
    let server = dp.local_addrs()[0];
    let bind: SocketAddr = format!("198.18.{subnet}.2:0").parse().unwrap();
    let f = lab
        .peer
        .spawn_thread(move || closed_loop(bind, server, seconds, window))
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    let finals = dp.stop().unwrap();
    let c = &finals[0].counters;
    println!(
        "{name:<30} {:>10.0} answers/s  (sent {}, answered {}, lost {}, {:.1} s; worker received {}, transmitted {}, tx drops {}, kicks {}, mean batch {:.1}, idle waits {})",
        f.answered as f64 / f.seconds,
        f.sent,
        f.answered,
        f.lost,
        f.seconds,
        c.received,
        c.transmitted,
        c.tx_dropped(),
        c.tx_kicks,
        c.received as f64 / c.batches.max(1) as f64,
        c.idle_waits,
    );
}

fn main() {
    if !lab::privilege::is_root() {
        eprintln!("dataplane_echo: needs root (namespaces, XDP, AF_XDP); skipped");
        return;
    }
    let seconds: u64 = std::env::var("DCE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let window: u64 = std::env::var("DCE_BENCH_WINDOW")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    println!("dataplane echo on a veth pair, 64-byte payloads, window {window}, {seconds} s each");

    {
        let l = lab(59);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let server = l
            .edge
            .spawn_thread(move || kernel_echo("198.18.59.1:5060".parse().unwrap(), stop2))
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let f = l
            .peer
            .spawn_thread(move || {
                closed_loop(
                    "198.18.59.2:0".parse().unwrap(),
                    "198.18.59.1:5060".parse().unwrap(),
                    seconds,
                    window,
                )
            })
            .unwrap()
            .join()
            .unwrap()
            .unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let echoed = server.join().unwrap().unwrap();
        println!(
            "{:<30} {:>10.0} answers/s  (sent {}, answered {}, lost {}, {:.1} s; server echoed {echoed})",
            "peer: kernel UDP echo",
            f.answered as f64 / f.seconds,
            f.sent,
            f.answered,
            f.lost,
            f.seconds,
        );
    }

    for (name, busy_polls, subnet) in [
        ("socket mode, busy_polls 1024", 1024, 60u8),
        ("socket mode, busy_polls 0", 0, 63u8),
    ] {
        let l = lab(subnet);
        let mut config = DataplaneConfig::new(
            IoMode::Socket,
            "",
            vec![format!("198.18.{subnet}.1:5060").parse().unwrap()],
            &[0],
        );
        config.workers[0].core = Some(1);
        config.idle.busy_polls = busy_polls;
        l.edge
            .enter(|| run(name, &l, &config, None, subnet, seconds, window))
            .unwrap();
    }

    let clang = ["clang", "clang-15", "clang-14"]
        .into_iter()
        .find(|c| lab::privilege::have_program(c));
    let Some(clang) = clang else {
        eprintln!("dataplane_echo: clang missing (apt-get install clang); AF_XDP skipped");
        return;
    };
    let dir = std::env::temp_dir().join(unique_name("bxk"));
    std::fs::create_dir_all(&dir).unwrap();
    let obj = dir.join("xsk_redirect.o");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../dataplane/tests/fixtures/dataplane/xsk_redirect.c");
    let status = std::process::Command::new(clang)
        .args(["-O2", "-g", "-target", "bpf"])
        .arg(format!(
            "-I/usr/include/{}-linux-gnu",
            std::env::consts::ARCH
        ))
        .arg("-DSIP_PORT=5060")
        .arg("-c")
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .status()
        .unwrap();
    assert!(status.success(), "clang failed");

    for (name, mode, busy_polls, subnet) in [
        ("AF_XDP copy, native, bp 1024", XdpMode::Driver, 1024, 61u8),
        ("AF_XDP copy, native, bp 0", XdpMode::Driver, 0, 64u8),
        ("AF_XDP copy, SKB, bp 1024", XdpMode::Skb, 1024, 62u8),
    ] {
        let l = lab(subnet);
        let mut config = DataplaneConfig::new(
            IoMode::AfXdp,
            &l.edge_if,
            vec![format!("198.18.{subnet}.1:5060").parse().unwrap()],
            &[0],
        );
        config.workers[0].core = Some(1);
        config.idle.busy_polls = busy_polls;
        l.edge
            .enter(|| {
                let mut bpf = Ebpf::load_file(&obj).unwrap();
                let prog: &mut Xdp = bpf.program_mut("xsk_redirect").unwrap().try_into().unwrap();
                prog.load().unwrap();
                prog.attach(&l.edge_if, mode).unwrap();
                let mut map = XskMap::try_from(bpf.map_mut("xsks_map").unwrap()).unwrap();
                run(name, &l, &config, Some(&mut map), subnet, seconds, window);
            })
            .unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
