//! SIP over TCP through the real `dce-edge run` (issue 19): a SIPp caller
//! on one TCP connection (`-t t1`) to the edge's `[stream]` listener, a
//! SIPp server over UDP behind it; every call completes (INVITE to BYE)
//! while a slow sender, an oversized header and a bad Content-Length each
//! lose their own connection, and the stream thread's counters agree. In
//! socket and AF_XDP mode (TCP passes the XDP program to the kernel).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use dataplane::IoMode;
use lab::bin::TempDir;
use lab::edge_process::{groups_toml, EdgeConfig, EdgeProcess};
use lab::privilege::{feature_or_skip, have_program, privileged_or_skip};
use lab::sipp::{Uac, Uas};
use lab::topology::{Lab, LabSpec};

const CALLS: u32 = 50;

fn calls_over_tcp(mode: IoMode, test: &str) {
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
        mode,
        groups_toml(None, &[("uk", &targets)]),
        "prefix,group\n44,uk\n".into(),
    );
    let sip = SocketAddr::from((lab::topology::EDGE_ADDR, 5060));
    cfg.stream = format!("tcp = \"{sip}\"\nmessage_timeout_s = 2\nmax_header = 4096");
    let mut edge = EdgeProcess::start(&lab, dir.path(), &cfg).unwrap();

    // Attackers on connections of their own while the calls run: a slow
    // sender (a header that never ends), an oversized header, a bad
    // Content-Length. Each is closed; the calls do not notice.
    let attacks = lab
        .callers
        .ns
        .spawn_thread(move || {
            let open = || {
                let c = TcpStream::connect(sip).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                c
            };
            let closed = |mut c: TcpStream| {
                let mut buf = [0u8; 512];
                loop {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => return true,
                        Ok(_) => {}
                    }
                }
            };
            let mut slow = open();
            slow.write_all(b"INVITE sip:442071234567@198.18.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP x")
                .unwrap();
            let mut big = open();
            let _ = big.write_all(&[b'A'; 8192]);
            let mut bad = open();
            bad.write_all(b"OPTIONS sip:198.18.0.1 SIP/2.0\r\nContent-Length: 1x\r\n\r\n")
                .unwrap();
            [closed(slow), closed(big), closed(bad)]
        })
        .unwrap();

    let mut uac = Uac::new(lab.callers.addr(), sip, "442071234567", 20, CALLS);
    uac.transport = "t1";
    let run = uac.run(&lab.callers.ns, dir.path()).unwrap();
    assert!(run.all_successful(), "{}", run.report());
    assert_eq!(attacks.join().unwrap().unwrap(), [true; 3]);

    let last = edge.stop().unwrap();
    let st = last.stream.expect("the stream thread's counters");
    // INVITE, ACK and BYE of every call came over TCP; the 200s went back
    // on the connection.
    assert!(st.counters["messages"] >= 3 * CALLS as u64, "{st:?}");
    assert!(st.counters["sent"] >= 2 * CALLS as u64, "{st:?}");
    assert_eq!(
        st.counters["accepted"], 4,
        "SIPp's and three attackers': {st:?}"
    );
    for (counter, n) in [
        ("slow_timeouts", 1),
        ("header_too_long", 1),
        ("bad_content_length", 1),
        ("no_content_length", 0),
        ("conn_gone", 0),
        ("handler_drops", 0),
    ] {
        assert_eq!(st.counters[counter], n, "{counter}: {st:?}");
    }
}

#[test]
fn sipp_calls_over_tcp_complete_through_the_edge_in_socket_mode_despite_attackers() {
    calls_over_tcp(
        IoMode::Socket,
        "sipp_calls_over_tcp_complete_through_the_edge_in_socket_mode_despite_attackers",
    );
}

#[test]
fn sipp_calls_over_tcp_complete_through_the_edge_in_afxdp_mode_despite_attackers() {
    calls_over_tcp(
        IoMode::AfXdp,
        "sipp_calls_over_tcp_complete_through_the_edge_in_afxdp_mode_despite_attackers",
    );
}
