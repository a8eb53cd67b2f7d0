//! Real SIPp callers and servers through `dce-edge run` in the lab's
//! namespaces: every call completes (INVITE to BYE), responses come back
//! through the edge, and the edge's final counters agree.

use std::net::SocketAddr;

use dataplane::IoMode;
use lab::bin::TempDir;
use lab::edge_process::{groups_toml, EdgeConfig, EdgeProcess};
use lab::sipp::{Uac, Uas};
use lab::topology::LabSpec;

const CALLS: u32 = 300;

/// `queues`: RX/TX queues of the edge's veth; in AF_XDP mode the edge runs
/// one worker per queue. With more than one, SIPp opens a socket per call,
/// so the calls are many flows that the veth spreads over the queues.
fn run_calls_through_the_edge(mode: IoMode, queues: u32, test: &str) {
    let Some(lab) = super::sipp_lab_or_skip(
        test,
        &LabSpec {
            caller_addrs: 1,
            upstreams: 2,
            attacker: false,
            edge_queues: queues,
        },
    ) else {
        return;
    };
    let dir = TempDir::new("sipp").unwrap();
    let _uas: Vec<Uas> = lab
        .upstreams
        .iter()
        .map(|u| Uas::start(u, dir.path()).unwrap())
        .collect();
    let targets: Vec<SocketAddr> = _uas.iter().map(Uas::addr).collect();
    let cfg = EdgeConfig::new(
        &lab,
        mode,
        groups_toml(None, &[("uk", &targets)]),
        "prefix,group\n44,uk\n".into(),
    );
    let mut edge = EdgeProcess::start(&lab, dir.path(), &cfg).unwrap();

    // SIPp's own UAC scenario: INVITE, 200, ACK, BYE, 200, through the edge.
    let mut uac = Uac::new(
        lab.callers.addr(),
        edge.sip_addr(),
        "442071234567",
        100,
        CALLS,
    );
    uac.socket_per_call = queues > 1;
    let run = uac.run(&lab.callers.ns, dir.path()).unwrap();
    assert!(run.all_successful(), "{}", run.report());

    // The edge's own account of it.
    let last = edge.stop().unwrap();
    let requests = last.workers_total(|w| w.forwarded_requests);
    let responses = last.workers_total(|w| w.forwarded_responses);
    // INVITE, ACK and BYE of every call went up; at least 200 and 200 came back.
    assert!(
        requests >= 3 * CALLS as u64,
        "{requests} requests forwarded"
    );
    assert!(
        responses >= 2 * CALLS as u64,
        "{responses} responses forwarded"
    );
    assert!(
        last.calls.answered >= CALLS as u64,
        "{} answers relayed",
        last.calls.answered
    );
    // Every answered call is timed once, by whichever worker its answer
    // reaches: the one that forwarded the INVITE from its own record, any
    // other from the send time in the edge's Via (`dcw`). With two
    // workers many answers come in on the other worker's queue.
    assert_eq!(
        last.setup_latency.count, last.calls.answered,
        "{:?}",
        last.setup_latency
    );
    if mode == IoMode::AfXdp {
        // One worker per queue, each bound to its own, and the calls'
        // flows spread over all of them.
        assert_eq!(cfg.workers, queues as usize);
        assert_eq!(last.workers.len(), queues as usize, "{:?}", last.workers);
        for w in &last.workers {
            assert!(
                w.received > 0,
                "worker {} received nothing: {:?}",
                w.id,
                last.workers
            );
        }
    }
    assert_eq!(
        last.modes.dataplane,
        if mode == IoMode::Socket {
            "socket"
        } else {
            "copy"
        }
    );
}

#[test]
fn sipp_calls_complete_through_the_edge_in_socket_mode() {
    run_calls_through_the_edge(
        IoMode::Socket,
        1,
        "sipp_calls_complete_through_the_edge_in_socket_mode",
    );
}

#[test]
fn sipp_calls_complete_through_the_edge_in_afxdp_mode() {
    run_calls_through_the_edge(
        IoMode::AfXdp,
        1,
        "sipp_calls_complete_through_the_edge_in_afxdp_mode",
    );
}

/// Two AF_XDP workers on a two-queue veth: a response may come back on
/// another queue than its request went out of, an ACK or BYE on another
/// worker than its INVITE, and every call still completes.
#[test]
fn sipp_calls_complete_through_two_afxdp_workers_on_two_queues() {
    run_calls_through_the_edge(
        IoMode::AfXdp,
        2,
        "sipp_calls_complete_through_two_afxdp_workers_on_two_queues",
    );
}
