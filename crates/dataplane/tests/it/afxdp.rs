//! AF_XDP end to end in a namespace pair, in native (driver) and SKB XDP
//! mode: a minimal XDP program redirects UDP to port 5060 into the
//! dataplane's socket, the echo worker answers through AF_XDP TX with frames
//! built by the frame writer and MACs from the neighbour cache, and the
//! peer's ordinary sockets receive every answer. The peer's veth has receive
//! checksum offload off, so its UDP stack verifies each answer's checksum:
//! arrival proves the checksums.

use crate::common as dataplane_common;

use std::time::{Duration, Instant};

use aya::maps::XskMap;
use aya::programs::{Xdp, XdpMode};
use aya::Ebpf;
use dataplane::echo::Echo;
use dataplane::{Dataplane, DataplaneConfig, IoKind, IoMode, WorkerCounters};
use dataplane_common::{compile_xsk_redirect, find_clang, run_peer, TempDir};
use lab::netns::{unique_name, veth_pair_one_queue, Netns};
use lab::privilege::{feature_or_skip, privileged_or_skip};

const PORT: u16 = 5060;

fn echo_through_afxdp(test: &str, mode: XdpMode, subnet: u8) {
    if !privileged_or_skip(test) {
        return;
    }
    let clang = find_clang();
    if !feature_or_skip(test, clang.is_some(), "clang", "apt-get install clang") {
        return;
    }
    let tmp = TempDir::new("xsk");
    let obj = compile_xsk_redirect(clang.unwrap(), &tmp.0, PORT);

    let a = Netns::create("dxa").unwrap();
    let b = Netns::create("dxb").unwrap();
    let (ia, ib) = (unique_name("xa"), unique_name("xb"));
    // One queue each way: a queue without a socket would fall back to
    // XDP_PASS and the test would miss datagrams (PLATFORM.md).
    veth_pair_one_queue(&a, &ia, &b, &ib).unwrap();
    let v4_edge = format!("198.18.{subnet}.1");
    let v4_peer = format!("198.18.{subnet}.2");
    let v6_edge = format!("2001:2:0:{subnet}::1");
    let v6_peer = format!("2001:2:0:{subnet}::2");
    a.addr_up(&ia, &format!("{v4_edge}/24")).unwrap();
    a.addr_up(&ia, &format!("{v6_edge}/64")).unwrap();
    b.addr_up(&ib, &format!("{v4_peer}/24")).unwrap();
    b.addr_up(&ib, &format!("{v6_peer}/64")).unwrap();
    // Without RX checksum offload the peer's kernel checks every UDP
    // checksum of what our AF_XDP socket sends, and drops bad ones.
    b.run("ethtool", &["-K", &ib, "rx", "off"]).unwrap();

    let mut config = DataplaneConfig::new(
        IoMode::AfXdp,
        &ia,
        vec![
            format!("{v4_edge}:{PORT}").parse().unwrap(),
            format!("[{v6_edge}]:{PORT}").parse().unwrap(),
        ],
        &[0],
    );
    config.xsk.frame_count = 1024;
    config.xsk.fill_ring = 512;
    config.xsk.rx_ring = 256;
    config.xsk.tx_ring = 256;
    config.xsk.completion_ring = 256;
    config.idle.busy_polls = 64;
    config.neighbour.refresh_ms = 200;
    config.neighbour.resolve_timeout_ms = 500;

    let ia2 = ia.clone();
    a.enter(|| {
        let mut bpf = Ebpf::load_file(&obj).unwrap();
        let prog: &mut Xdp = bpf.program_mut("xsk_redirect").unwrap().try_into().unwrap();
        prog.load().unwrap();
        prog.attach(&ia2, mode).unwrap();
        let mut map = XskMap::try_from(bpf.map_mut("xsks_map").unwrap()).unwrap();

        let hole: std::net::SocketAddr = format!("198.18.{subnet}.99:5060").parse().unwrap();
        let mut dp =
            Dataplane::start(&config, Some(&mut map), |_| Echo::with_blackhole(hole)).unwrap();
        assert!(dp.broadcast(b'X').is_empty());
        let server4 = config.local[0];
        let server6 = config.local[1];
        let bind4 = format!("{v4_peer}:0").parse().unwrap();
        let bind6 = format!("[{v6_peer}]:0").parse().unwrap();
        let p4 = b
            .spawn_thread(move || run_peer(bind4, server4, 2000, 64))
            .unwrap();
        let p6 = b
            .spawn_thread(move || run_peer(bind6, server6, 2000, 64))
            .unwrap();
        let r4 = p4.join().unwrap().unwrap();
        let r6 = p6.join().unwrap().unwrap();

        // Garbage to the SIP port that the handler refuses, and a datagram
        // to another port, which the XDP program passes to the kernel.
        b.enter(move || {
            let s = std::net::UdpSocket::bind(bind4).unwrap();
            for _ in 0..10 {
                s.send_to(b"drop me", server4).unwrap();
            }
            // Forwarded by the handler to an address nobody answers for.
            for _ in 0..5 {
                s.send_to(b"lost in the void", server4).unwrap();
            }
        })
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let snaps = dp.snapshots(Duration::from_secs(5));
            let unresolvable = dp.neighbour_stats().unwrap().unresolvable;
            if snaps.len() == 1
                && snaps[0].counters.handler_drops[0] == 10
                && snaps[0].counters.received == snaps[0].counters.handled + 10
                && snaps[0].counters.handled >= 4005
                && unresolvable >= 1
            {
                let xsk = snaps[0].xsk.expect("XDP_STATISTICS readable");
                assert_eq!(xsk.rx_invalid_descs, 0, "{xsk:?}");
                assert_eq!(xsk.tx_invalid_descs, 0, "{xsk:?}");
                break;
            }
            assert!(Instant::now() < deadline, "refused datagrams never counted");
            std::thread::sleep(Duration::from_millis(50));
        }
        let neigh = dp.neighbour_stats().unwrap();
        let finals = dp.stop().unwrap();
        assert_eq!(finals.len(), 1);
        let s = &finals[0];
        let c: WorkerCounters = s.counters;
        eprintln!(
            "{test}: final counters {c:?}, xsk {:?}, neighbour {neigh:?}",
            s.xsk
        );

        for r in [&r4, &r6] {
            assert_eq!(r.sent, 2000, "{r:?}");
            assert_eq!(r.answered, r.sent, "every datagram answered: {r:?} {c:?}");
            assert_eq!(r.bad_answers, 0, "{r:?}");
            assert_eq!(r.first_bytes, vec![b'X'], "{r:?}");
        }
        assert_eq!(s.io, IoKind::AfXdpCopy, "veth has copy mode only");
        assert_eq!(c.received, c.handled + 10, "{c:?}");
        assert!(!s.pinned, "no core configured, not pinned");
        assert_eq!(c.malformed.iter().sum::<u64>(), 0, "{c:?}");
        assert!(c.handled >= 4000, "{c:?}");
        // Every datagram handled was either transmitted or dropped under
        // a reason (only warm-ups can be: the first before the neighbour
        // is known).
        assert_eq!(c.transmitted + c.tx_dropped(), c.handled, "{c:?}");
        assert_eq!(s.handler, c.transmitted, "{c:?}");
        assert_eq!(
            c.tx_dropped(),
            c.no_neighbour,
            "only warm-ups and the black hole wait for a neighbour: {c:?}"
        );
        // The five datagrams for the address nobody answers for are counted
        // as no_neighbour (never sent), and the service gave up on it.
        assert!(c.no_neighbour >= 5, "{c:?}");
        assert!(neigh.unresolvable >= 1, "{neigh:?}");
        assert!(c.tx_kicks > 0);
        assert!(neigh.read_errors == 0, "{neigh:?}");

        // Nothing left behind: no AF_XDP socket in the namespace, and the
        // program is detached once the Ebpf object is gone. A process that
        // another test of this binary is starting at that moment holds a
        // copy of every descriptor (the link's and the sockets') between its
        // fork and its exec, where close-on-exec drops them: wait for that,
        // bounded.
        let _ = map;
        drop(bpf);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let link = std::process::Command::new("ip")
                .args(["link", "show", "dev", &ia2])
                .output()
                .unwrap();
            let link = String::from_utf8_lossy(&link.stdout).to_string();
            let ss = std::process::Command::new("ss")
                .args(["-a", "-n", "--xdp"])
                .output()
                .unwrap();
            let ss = String::from_utf8_lossy(&ss.stdout).to_string();
            let sockets = ss.lines().filter(|l| !l.trim().is_empty()).count();
            if !link.contains("xdp") && sockets <= 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "left behind after 10 s: program attached {}, AF_XDP sockets: {ss}; link: {link}",
                link.contains("xdp")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .unwrap();
    let names = (a.name().to_string(), b.name().to_string());
    drop(a);
    drop(b);
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(!list.contains(&names.0) && !list.contains(&names.1));
}

#[test]
fn afxdp_copy_mode_echo_in_native_xdp() {
    echo_through_afxdp("afxdp_copy_mode_echo_in_native_xdp", XdpMode::Driver, 2);
}

#[test]
fn afxdp_copy_mode_echo_in_skb_xdp() {
    echo_through_afxdp("afxdp_copy_mode_echo_in_skb_xdp", XdpMode::Skb, 3);
}

/// Answers a datagram starting with `big` with 1,400 bytes, anything else
/// with its own payload.
struct BigAnswers;

impl dataplane::PacketHandler for BigAnswers {
    type Control = ();
    type Stats = ();
    type Drop = dataplane::echo::EchoDrop;
    type Event = ();

    fn handle(
        &mut self,
        _now: dataplane::Timestamp,
        pkt: &dataplane::Datagram<'_>,
        out: &mut dataplane::Outbox<'_>,
    ) -> Result<(), Self::Drop> {
        let big = [b'B'; 1400];
        let answer: &[u8] = if pkt.payload.starts_with(b"big") {
            &big
        } else {
            pkt.payload
        };
        // Counted by the dataplane when it cannot be sent.
        let _ = out.send_bytes(pkt.src, answer);
        Ok(())
    }

    fn on_control(&mut self, _now: dataplane::Timestamp, _: ()) {}

    fn stats(&self) {}
}

/// A frame the device refuses after the kernel took it from the TX ring
/// (here: longer than the peer's MTU, which a veth drops as it would a
/// full backlog) comes back through the completion ring as if sent; the
/// worker counts it as `tx_device_dropped`, not as transmitted.
#[test]
fn afxdp_frames_the_device_drops_are_counted_not_lost() {
    let test = "afxdp_frames_the_device_drops_are_counted_not_lost";
    if !privileged_or_skip(test) {
        return;
    }
    let clang = find_clang();
    if !feature_or_skip(test, clang.is_some(), "clang", "apt-get install clang") {
        return;
    }
    let tmp = TempDir::new("xskd");
    let obj = compile_xsk_redirect(clang.unwrap(), &tmp.0, PORT);
    let a = Netns::create("dda").unwrap();
    let b = Netns::create("ddb").unwrap();
    let (ia, ib) = (unique_name("da"), unique_name("db"));
    veth_pair_one_queue(&a, &ia, &b, &ib).unwrap();
    a.addr_up(&ia, "198.18.4.1/24").unwrap();
    b.addr_up(&ib, "198.18.4.2/24").unwrap();
    // The peer takes frames of at most 1,000 bytes of IP.
    b.ip(&["link", "set", "dev", &ib, "mtu", "1000"]).unwrap();

    let mut config = DataplaneConfig::new(
        IoMode::AfXdp,
        &ia,
        vec![format!("198.18.4.1:{PORT}").parse().unwrap()],
        &[0],
    );
    config.xsk.frame_count = 1024;
    config.xsk.fill_ring = 512;
    config.xsk.rx_ring = 256;
    config.xsk.tx_ring = 256;
    config.xsk.completion_ring = 256;
    config.idle.busy_polls = 64;
    let ia2 = ia.clone();
    a.enter(|| {
        let mut bpf = Ebpf::load_file(&obj).unwrap();
        let prog: &mut Xdp = bpf.program_mut("xsk_redirect").unwrap().try_into().unwrap();
        prog.load().unwrap();
        prog.attach(&ia2, XdpMode::Driver).unwrap();
        let mut map = XskMap::try_from(bpf.map_mut("xsks_map").unwrap()).unwrap();
        let mut dp = Dataplane::start(&config, Some(&mut map), |_| BigAnswers).unwrap();
        let server = config.local[0];
        let (small, big) = (30u64, 20u64);
        let answered = b
            .enter(move || {
                let s = std::net::UdpSocket::bind("198.18.4.2:0").unwrap();
                s.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let mut answered = 0;
                let mut buf = [0u8; 2048];
                for i in 0..small + big {
                    let msg: &[u8] = if i % 5 < 2 { b"big please" } else { b"small" };
                    s.send_to(msg, server).unwrap();
                    // One at a time, so no answer is lost to anything but
                    // the MTU.
                    if msg == b"small" {
                        let deadline = Instant::now() + Duration::from_secs(10);
                        while Instant::now() < deadline {
                            if let Ok((n, _)) = s.recv_from(&mut buf) {
                                assert_eq!(&buf[..n], b"small");
                                answered += 1;
                                break;
                            }
                        }
                    }
                }
                answered
            })
            .unwrap();
        assert_eq!(answered, small, "every small datagram answered");
        let deadline = Instant::now() + Duration::from_secs(20);
        let c = loop {
            let snaps = dp.snapshots(Duration::from_secs(5));
            if let Some(s) = snaps.first() {
                let c = s.counters;
                if c.handled == small + big && c.transmitted + c.tx_dropped() == c.handled {
                    break c;
                }
            }
            assert!(Instant::now() < deadline, "answers never accounted for");
            std::thread::sleep(Duration::from_millis(50));
        };
        let _ = dp.stop().unwrap();
        assert_eq!(c.tx_device_dropped, big, "{c:?}");
        assert_eq!(c.transmitted, small, "{c:?}");
        assert_eq!(c.tx_dropped(), big, "{c:?}");
        assert!(c
            .drops()
            .any(|(name, n)| name == "tx_device_dropped" && n == big));
        let _ = map;
        drop(bpf);
    })
    .unwrap();
}

/// Hands every datagram to a TCP address (which the stream layer dials).
struct ToStream(std::net::SocketAddr);

impl dataplane::PacketHandler for ToStream {
    type Control = ();
    type Stats = ();
    type Drop = dataplane::echo::EchoDrop;
    type Event = ();

    fn handle(
        &mut self,
        _now: dataplane::Timestamp,
        pkt: &dataplane::Datagram<'_>,
        out: &mut dataplane::Outbox<'_>,
    ) -> Result<(), Self::Drop> {
        let to = dataplane::Peer::at(self.0, dataplane::Transport::Tcp);
        let _ = out.send_to(to, |b| {
            let n = pkt.payload.len();
            b.get_mut(..n)?.copy_from_slice(pkt.payload);
            Some(n)
        });
        Ok(())
    }

    fn on_control(&mut self, _now: dataplane::Timestamp, _msg: ()) {}

    fn stats(&self) {}
}

#[test]
fn an_afxdp_worker_hands_messages_for_stream_peers_to_the_stream_thread() {
    use dataplane::stream::{StreamConfig, StreamLayer};
    use std::io::Read;
    let test = "an_afxdp_worker_hands_messages_for_stream_peers_to_the_stream_thread";
    if !privileged_or_skip(test) {
        return;
    }
    let clang = find_clang();
    if !feature_or_skip(test, clang.is_some(), "clang", "apt-get install clang") {
        return;
    }
    let tmp = TempDir::new("xsh");
    let obj = compile_xsk_redirect(clang.unwrap(), &tmp.0, PORT);
    let a = Netns::create("dha").unwrap();
    let b = Netns::create("dhb").unwrap();
    let (ia, ib) = (unique_name("ha"), unique_name("hb"));
    veth_pair_one_queue(&a, &ia, &b, &ib).unwrap();
    a.addr_up(&ia, "198.18.57.1/24").unwrap();
    b.addr_up(&ib, "198.18.57.2/24").unwrap();
    let mut config = DataplaneConfig::new(
        IoMode::AfXdp,
        &ia,
        vec![format!("198.18.57.1:{PORT}").parse().unwrap()],
        &[0],
    );
    config.xsk.frame_count = 1024;
    config.xsk.fill_ring = 512;
    config.xsk.rx_ring = 256;
    config.xsk.tx_ring = 256;
    config.xsk.completion_ring = 256;
    let ia2 = ia.clone();
    a.enter(|| {
        let mut bpf = Ebpf::load_file(&obj).unwrap();
        let prog: &mut Xdp = bpf.program_mut("xsk_redirect").unwrap().try_into().unwrap();
        prog.load().unwrap();
        prog.attach(&ia2, XdpMode::Skb).unwrap();
        let mut map = XskMap::try_from(bpf.map_mut("xsks_map").unwrap()).unwrap();
        // The TCP peer the stream layer dials, in the edge's namespace.
        let sink = std::net::TcpListener::bind("198.18.57.1:0").unwrap();
        sink.set_nonblocking(true).unwrap();
        let sink_addr = sink.local_addr().unwrap();
        let mut layer = StreamLayer::open(
            StreamConfig::new("198.18.57.1:0".parse().unwrap()),
            Echo::new(),
        )
        .unwrap();
        let handoff = layer.handoff(1 << 16);
        let thread = layer.spawn(Duration::from_millis(20)).unwrap();
        let dp = Dataplane::start_with_handoffs(&config, Some(&mut map), vec![handoff], |_| {
            ToStream(sink_addr)
        })
        .unwrap();
        let server = config.local[0];
        b.enter(move || {
            let s = std::net::UdpSocket::bind("198.18.57.2:0").unwrap();
            for _ in 0..5 {
                s.send_to(b"via xdp\n", server).unwrap();
            }
        })
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut conn = loop {
            match sink.accept() {
                Ok((c, _)) => break c,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("the stream layer never dialled: {e}"),
            }
        };
        conn.set_nonblocking(false).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while !got.windows(8).any(|w| w == b"via xdp\n") {
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "closed");
            got.extend_from_slice(&buf[..n]);
        }
        let finals = dp.stop().unwrap();
        assert_eq!(finals[0].counters.no_stream_path, 0);
        let layer = thread.stop().unwrap();
        let k = layer.counters();
        assert!(k.handed_over >= 1, "{k:?}");
        assert_eq!(k.dialled, 1, "one connection for every message: {k:?}");
    })
    .unwrap();
}
