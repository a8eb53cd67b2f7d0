//! Socket mode end to end: workers answer datagrams from a peer namespace
//! over IPv4 and IPv6 through SO_REUSEPORT sockets, and every datagram is
//! accounted for in their counters.

use crate::common as dataplane_common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dataplane::config::WorkerPlacement;
use dataplane::echo::Echo;
use dataplane::{Dataplane, DataplaneConfig, IoMode, WorkerCounters};
use dataplane_common::run_peer;
use lab::netns::{unique_name, veth_pair_one_queue, Netns};
use lab::privilege::privileged_or_skip;

fn sum(snaps: &[dataplane::WorkerSnapshot<u64>]) -> (WorkerCounters, u64) {
    let mut c = WorkerCounters::default();
    let mut echoed = 0;
    for s in snaps {
        let w = &s.counters;
        c.received += w.received;
        c.handled += w.handled;
        c.transmitted += w.transmitted;
        c.handler_drops[0] += w.handler_drops[0];
        c.rx_truncated += w.rx_truncated;
        c.tx_error += w.tx_error;
        c.tx_would_block += w.tx_would_block;
        c.tx_outbox_full += w.tx_outbox_full;
        c.no_local_address += w.no_local_address;
        c.tx_payload_rejected += w.tx_payload_rejected;
        echoed += s.handler;
    }
    (c, echoed)
}

#[test]
fn socket_mode_answers_every_datagram_over_ipv4_and_ipv6() {
    if !privileged_or_skip("socket_mode_answers_every_datagram_over_ipv4_and_ipv6") {
        return;
    }
    let a = Netns::create("dsa").unwrap();
    let b = Netns::create("dsb").unwrap();
    let (ia, ib) = (unique_name("sa"), unique_name("sb"));
    veth_pair_one_queue(&a, &ia, &b, &ib).unwrap();
    a.addr_up(&ia, "198.18.1.1/24").unwrap();
    a.addr_up(&ia, "2001:2:0:1::1/64").unwrap();
    b.addr_up(&ib, "198.18.1.2/24").unwrap();
    b.addr_up(&ib, "2001:2:0:1::2/64").unwrap();

    let mut config = DataplaneConfig::new(
        IoMode::Socket,
        "",
        vec![
            "198.18.1.1:0".parse().unwrap(),
            "[2001:2:0:1::1]:0".parse().unwrap(),
        ],
        &[0, 0],
    );
    config.workers = vec![
        WorkerPlacement {
            queue: 0,
            core: Some(0),
        },
        WorkerPlacement {
            queue: 0,
            core: Some(1),
        },
    ];
    config.idle.busy_polls = 64;

    a.enter(|| {
        let mut dp = Dataplane::start(&config, None, |_| Echo::new()).unwrap();
        assert_eq!(dp.workers(), 2);
        let local = dp.local_addrs().to_vec();
        assert!(local.iter().all(|l| l.port() != 0), "{local:?}");
        let (v4, v6) = (local[0], local[1]);
        // Set the answers' mark through the control ring before traffic.
        assert!(dp.broadcast(b'M').is_empty());

        let p4 = b
            .spawn_thread(move || run_peer("198.18.1.2:0".parse().unwrap(), v4, 3000, 100))
            .unwrap();
        let p6 = b
            .spawn_thread(move || run_peer("[2001:2:0:1::2]:0".parse().unwrap(), v6, 3000, 100))
            .unwrap();
        let r4 = p4.join().unwrap().unwrap();
        let r6 = p6.join().unwrap().unwrap();
        for r in [&r4, &r6] {
            assert_eq!(r.sent, 3000, "{r:?}");
            assert_eq!(r.answered, r.sent, "every datagram answered: {r:?}");
            assert_eq!(r.bad_answers, 0, "{r:?}");
            assert_eq!(r.first_bytes, vec![b'M'], "control message applied: {r:?}");
        }

        // Ten datagrams the handler refuses, counted under its reason.
        b.enter(move || {
            let s = std::net::UdpSocket::bind("198.18.1.2:0").unwrap();
            for _ in 0..10 {
                s.send_to(b"drop me", v4).unwrap();
            }
        })
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let snaps = dp.snapshots(Duration::from_secs(5));
            let (c, _) = sum(&snaps);
            if snaps.len() == 2 && c.handler_drops[0] == 10 {
                assert_eq!(
                    snaps[0].handler_drops().next(),
                    Some(("refused", snaps[0].counters.handler_drops[0]))
                );
                break;
            }
            assert!(Instant::now() < deadline, "drops never counted: {c:?}");
            std::thread::sleep(Duration::from_millis(50));
        }

        let finals = dp.stop().unwrap();
        assert_eq!(finals.len(), 2);
        let (c, echoed) = sum(&finals);
        // 6000 datagrams plus the warm-ups, all handled and all answered.
        assert!(c.handled >= 6000, "{c:?}");
        assert_eq!(c.received, c.handled + 10, "{c:?}");
        assert_eq!(c.handler_drops[0], 10);
        assert_eq!(c.transmitted, c.handled, "{c:?}");
        assert_eq!(echoed, c.handled);
        assert_eq!(
            c.rx_truncated
                + c.tx_error
                + c.tx_would_block
                + c.tx_outbox_full
                + c.no_local_address
                + c.tx_payload_rejected,
            0,
            "{c:?}"
        );
        for s in &finals {
            assert_eq!(s.io, dataplane::IoKind::Socket);
            assert_eq!(s.socket_rx_drops, Some(0), "kernel dropped datagrams");
            let cores = core_affinity::get_core_ids().unwrap_or_default();
            if cores.iter().any(|c| Some(c.id) == s.core) {
                assert!(s.pinned, "worker {} not pinned to {:?}", s.worker, s.core);
            }
        }
        // The sockets are closed: the port can be bound again without
        // SO_REUSEPORT. A process that another test of this binary is
        // starting at that moment holds a copy of every descriptor between
        // its fork and its exec (where close-on-exec drops them), so the
        // port may stay taken for a moment: retry, bounded.
        let again: SocketAddr = v4;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match std::net::UdpSocket::bind(again) {
                Ok(_) => break,
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("port {again} not free after stop: {e}"),
            }
        }
    })
    .unwrap();
}

#[test]
fn oversized_datagram_is_counted_and_the_rest_of_its_batch_answered_intact() {
    if !privileged_or_skip(
        "oversized_datagram_is_counted_and_the_rest_of_its_batch_answered_intact",
    ) {
        return;
    }
    let a = Netns::create("dsc").unwrap();
    let b = Netns::create("dsd").unwrap();
    let (ia, ib) = (unique_name("sc"), unique_name("sd"));
    veth_pair_one_queue(&a, &ia, &b, &ib).unwrap();
    a.addr_up(&ia, "198.18.4.1/24").unwrap();
    b.addr_up(&ib, "198.18.4.2/24").unwrap();
    let mut config = DataplaneConfig::new(
        IoMode::Socket,
        "",
        vec!["198.18.4.1:0".parse().unwrap()],
        &[0],
    );
    config.max_payload = 512;
    a.enter(|| {
        let dp = Dataplane::start(&config, None, |_| Echo::new()).unwrap();
        let server = dp.local_addrs()[0];
        let answers = b
            .enter(move || {
                let s = std::net::UdpSocket::bind("198.18.4.2:0").unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                // Warm up (neighbour resolution), then one burst with an
                // oversized datagram in the middle, so it likely shares a
                // recvmmsg batch with the others.
                s.send_to(b"xwarm", server).unwrap();
                let mut buf = [0u8; 2048];
                s.recv_from(&mut buf).unwrap();
                let big = vec![b'b'; 1000];
                for i in 0..40u32 {
                    if i == 20 {
                        s.send_to(&big, server).unwrap();
                    }
                    s.send_to(format!("x{i:04}").as_bytes(), server).unwrap();
                }
                let mut got = Vec::new();
                while got.len() < 40 {
                    let (n, _) = s.recv_from(&mut buf).expect("answer within 5 s");
                    got.push(String::from_utf8_lossy(&buf[1..n]).into_owned());
                }
                got.sort();
                got
            })
            .unwrap();
        let want: Vec<String> = (0..40u32).map(|i| format!("{i:04}")).collect();
        assert_eq!(answers, want, "answers carry their own payloads");
        let finals = dp.stop().unwrap();
        let c = finals[0].counters;
        assert_eq!(c.rx_truncated, 1, "{c:?}");
        assert_eq!(c.received, 42, "{c:?}");
        assert_eq!(c.handled, 41, "{c:?}");
    })
    .unwrap();
}

/// `worker_priority` gives each worker SCHED_FIFO (root has CAP_SYS_NICE)
/// and its snapshots say so, with the kernel's account of its scheduling:
/// time run and time waited for its core.
#[test]
fn worker_priority_makes_workers_real_time_and_snapshots_say_so() {
    if !privileged_or_skip("worker_priority_makes_workers_real_time_and_snapshots_say_so") {
        return;
    }
    let mut config = DataplaneConfig::new(
        IoMode::Socket,
        "",
        vec!["127.0.0.1:0".parse().unwrap()],
        &[0],
    );
    config.worker_priority = 1;
    config.idle.busy_polls = 64;
    let mut dp = Dataplane::start(&config, None, |_| Echo::new()).unwrap();
    let server = dp.local_addrs()[0];
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.send_to(b"xping", server).unwrap();
    let mut buf = [0u8; 64];
    s.recv_from(&mut buf).expect("an answer within 5 s");
    let snaps = dp.snapshots(Duration::from_secs(5));
    let w = snaps.first().expect("a snapshot");
    assert!(w.realtime, "the worker runs SCHED_FIFO");
    let sched = w.sched.expect("the worker's schedstat");
    assert!(sched.slices > 0 && sched.run > Duration::ZERO, "{sched:?}");
    let finals = dp.stop().unwrap();
    assert!(finals[0].realtime);

    // Priority 0: ordinary scheduling.
    config.worker_priority = 0;
    let dp = Dataplane::start(&config, None, |_| Echo::new()).unwrap();
    let finals = dp.stop().unwrap();
    assert!(!finals[0].realtime);
}
