//! BPF_PROG_TEST_RUN tests of the capture of dropped frames (`dce-edge
//! capture`): armed for a reason or a source, the program copies exactly
//! the matching drops, at most the count asked, into the capture ring;
//! unarmed, it copies nothing.

use std::net::IpAddr;
use std::time::Duration;

use wire::build::{sip_request, UdpFrameBuilder as UdpFrame};
use xdp::abi::DropReason;
use xdp::capture::{CaptureReader, CaptureSpec, CapturedFrame};
use xdp::test_run::{XDP_DROP, XDP_PASS};
use xdp::FilterConfig;

use super::program::{pass_mode, Harness};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn frame(src: &str, payload: &[u8]) -> Vec<u8> {
    UdpFrame::new(ip(src), ip("198.18.0.2"), 5062, 5060, payload).build()
}

fn options(src: &str) -> Vec<u8> {
    frame(src, &sip_request("OPTIONS", "Linphone/5.0", "alice"))
}

/// Garbage on the SIP port, numbered so each frame is told apart.
fn garbage(src: &str, n: u32) -> Vec<u8> {
    frame(
        src,
        format!("garbage number {n:04} on the SIP port").as_bytes(),
    )
}

/// Every frame waiting in the ring (none wait on the kernel: a test run
/// commits its records before it returns).
fn read_all(reader: &mut CaptureReader) -> Vec<CapturedFrame> {
    std::iter::from_fn(|| reader.next_frame()).collect()
}

fn harness(test: &str) -> Option<Harness> {
    let cfg = FilterConfig {
        blocklist: vec!["198.18.0.66/32".parse().unwrap()],
        ..pass_mode()
    };
    Harness::with(test, cfg)
}

#[test]
fn armed_for_a_reason_it_copies_exactly_the_first_count_drops_of_that_reason() {
    let Some(mut h) = harness("capture_armed_for_a_reason") else {
        return;
    };
    let mut reader = h.filter.capture_reader().unwrap();
    assert_eq!(reader.drain(), 0);
    h.filter
        .arm_capture(
            &CaptureSpec {
                reasons: vec![DropReason::NotSip],
                source: None,
                count: 3,
            },
            std::process::id(),
        )
        .unwrap();
    let mut sent = Vec::new();
    for n in 0..5 {
        // A passed frame and a drop of another reason between each.
        assert_eq!(h.run_n(&options("198.18.0.10"), 1).0, XDP_PASS);
        assert_eq!(h.run_n(&options("198.18.0.66"), 1).0, XDP_DROP);
        let g = garbage("198.18.0.10", n);
        assert_eq!(h.run_n(&g, 1).0, XDP_DROP);
        sent.push(g);
    }
    let got = read_all(&mut reader);
    assert_eq!(got.len(), 3, "{got:?}");
    for (f, want) in got.iter().zip(&sent) {
        assert_eq!(f.reason, Some(DropReason::NotSip));
        assert_eq!(f.frame_len as usize, want.len());
        assert_eq!(&f.data, want, "the first three not_sip frames, whole");
        assert!(f.ts_ns > 0);
    }
    let state = h.filter.capture_state().unwrap();
    // Once spent, later drops stop at the one compare and claim nothing.
    assert_eq!((state.count, state.taken, state.lost), (3, 3, 0));
    assert!(!state.armed());
    // Spent, it copies nothing more.
    h.run_n(&garbage("198.18.0.10", 99), 1);
    assert!(read_all(&mut reader).is_empty());
}

#[test]
fn unarmed_it_copies_nothing() {
    let Some(mut h) = harness("capture_unarmed") else {
        return;
    };
    let mut reader = h.filter.capture_reader().unwrap();
    reader.drain();
    h.run_n(&garbage("198.18.0.10", 1), 10);
    h.run_n(&options("198.18.0.66"), 10);
    h.run_n(&options("198.18.0.10"), 10);
    assert!(read_all(&mut reader).is_empty());
    assert!(!reader.wait(Duration::from_millis(10)));
    // Armed then disarmed before any drop: nothing either.
    h.filter
        .arm_capture(
            &CaptureSpec {
                reasons: vec![],
                source: None,
                count: 10,
            },
            std::process::id(),
        )
        .unwrap();
    let ended = h.filter.disarm_capture().unwrap();
    assert_eq!((ended.count, ended.taken), (10, 0));
    h.run_n(&garbage("198.18.0.10", 2), 10);
    assert!(read_all(&mut reader).is_empty());
    let state = h.filter.capture_state().unwrap();
    assert!(!state.armed(), "{state:?}");
}

#[test]
fn armed_for_a_source_it_copies_only_that_networks_drops_of_any_reason() {
    let Some(mut h) = harness("capture_armed_for_a_source") else {
        return;
    };
    let mut reader = h.filter.capture_reader().unwrap();
    reader.drain();
    h.filter
        .arm_capture(
            &CaptureSpec {
                reasons: vec![],
                source: Some("198.18.0.64/26".parse().unwrap()),
                count: 100,
            },
            std::process::id(),
        )
        .unwrap();
    // An OPTIONS is longer than the capture length: its first bytes.
    let inside_blocked = options("198.18.0.66");
    assert!(inside_blocked.len() > xdp::abi::CAPTURE_BYTES);
    let inside_garbage = garbage("198.18.0.70", 1);
    h.run_n(&inside_blocked, 1);
    h.run_n(&garbage("198.18.0.10", 2), 1); // outside
    h.run_n(&options("198.18.0.70"), 1); // inside, passed
    h.run_n(&inside_garbage, 1);
    h.run_n(
        &UdpFrame::new(
            ip("2001:db8::1"),
            ip("2001:db8::2"),
            5062,
            5060,
            b"v6 garbage",
        )
        .build(),
        1,
    ); // another family
    let got = read_all(&mut reader);
    let summary: Vec<(Option<DropReason>, &[u8])> =
        got.iter().map(|f| (f.reason, f.data.as_slice())).collect();
    assert_eq!(
        summary,
        [
            (
                Some(DropReason::Blocklist),
                &inside_blocked[..xdp::abi::CAPTURE_BYTES]
            ),
            (Some(DropReason::NotSip), inside_garbage.as_slice()),
        ]
    );
    let ended = h.filter.disarm_capture().unwrap();
    assert_eq!((ended.taken, ended.lost), (2, 0));
}

#[test]
fn a_long_frame_is_cut_to_the_capture_length() {
    let Some(mut h) = harness("capture_cuts_long_frames") else {
        return;
    };
    let mut reader = h.filter.capture_reader().unwrap();
    reader.drain();
    h.filter
        .arm_capture(
            &CaptureSpec {
                reasons: vec![DropReason::NotSip],
                source: None,
                count: 1,
            },
            std::process::id(),
        )
        .unwrap();
    let long = frame("198.18.0.10", &[b'x'; 1000]);
    h.run_n(&long, 1);
    let got = read_all(&mut reader);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].frame_len as usize, long.len());
    assert_eq!(got[0].data, long[..xdp::abi::CAPTURE_BYTES]);
}

#[test]
fn a_second_capture_is_refused_while_a_live_process_holds_one() {
    let Some(mut h) = harness("capture_one_at_a_time") else {
        return;
    };
    let spec = CaptureSpec {
        reasons: vec![],
        source: None,
        count: 5,
    };
    // This process holds it; pid 1 (always alive) asks for another.
    h.filter.arm_capture(&spec, std::process::id()).unwrap();
    let err = h.filter.arm_capture(&spec, 1).unwrap_err();
    assert!(err.to_string().contains("one capture at a time"), "{err}");
    // A capture whose owner is gone is taken over.
    h.filter.disarm_capture().unwrap();
    h.filter.arm_capture(&spec, u32::MAX - 1).unwrap();
    h.filter.arm_capture(&spec, std::process::id()).unwrap();
    assert_eq!(
        h.filter.capture_state().unwrap().owner_pid,
        std::process::id()
    );
}
