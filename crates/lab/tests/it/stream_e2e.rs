//! SIP over TCP through the real `dce-edge run` (issue 19): a SIPp caller
//! on one TCP connection (`-t t1`) to the edge's `[stream]` listener, a
//! SIPp server over UDP behind it; every call completes (INVITE to BYE)
//! and the stream thread's counters agree.

use std::net::SocketAddr;

use dataplane::IoMode;
use lab::bin::TempDir;
use lab::edge_process::{groups_toml, EdgeConfig, EdgeProcess};
use lab::privilege::{feature_or_skip, have_program, privileged_or_skip};
use lab::sipp::{Uac, Uas};
use lab::topology::{Lab, LabSpec};

const CALLS: u32 = 50;

#[test]
fn sipp_calls_over_tcp_complete_through_the_edge_to_a_udp_upstream() {
    let test = "sipp_calls_over_tcp_complete_through_the_edge_to_a_udp_upstream";
    if !privileged_or_skip(test) {
        return;
    }
    if !feature_or_skip(
        test,
        have_program("sipp") && have_program("nsenter"),
        "sipp or nsenter",
        "apt-get install sip-tester util-linux",
    ) {
        return;
    }
    let lab = Lab::build(&LabSpec {
        caller_addrs: 1,
        upstreams: 1,
        attacker: false,
    })
    .unwrap();
    let dir = TempDir::new("stcp").unwrap();
    let uas = Uas::start(&lab.upstreams[0], dir.path()).unwrap();
    let targets: Vec<SocketAddr> = vec![uas.addr()];
    let mut cfg = EdgeConfig::new(
        &lab,
        IoMode::Socket,
        groups_toml(None, &[("uk", &targets)]),
        "prefix,group\n44,uk\n".into(),
    );
    let sip = SocketAddr::from((lab::topology::EDGE_ADDR, 5060));
    cfg.stream = format!("tcp = \"{sip}\"");
    let mut edge = EdgeProcess::start(&lab, dir.path(), &cfg).unwrap();

    let mut uac = Uac::new(lab.callers.addr(), sip, "442071234567", 20, CALLS);
    uac.transport = "t1";
    let run = uac.run(&lab.callers.ns, dir.path()).unwrap();
    assert!(run.all_successful(), "{}", run.report());

    let last = edge.stop().unwrap();
    let st = last.stream.expect("the stream thread's counters");
    // INVITE, ACK and BYE of every call came over TCP; the 200s went back
    // on the connection.
    assert!(st.counters["messages"] >= 3 * CALLS as u64, "{st:?}");
    assert!(st.counters["sent"] >= 2 * CALLS as u64, "{st:?}");
    assert_eq!(st.counters["accepted"], 1, "one connection: {st:?}");
    for bad in [
        "no_content_length",
        "bad_content_length",
        "conn_gone",
        "handler_drops",
    ] {
        assert_eq!(st.counters[bad], 0, "{bad}: {st:?}");
    }
}
