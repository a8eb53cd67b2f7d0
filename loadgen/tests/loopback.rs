//! Callers against servers on 127.0.0.1, in one process: calls complete,
//! retransmissions recover a dropped INVITE, failures are counted by code,
//! and every started call lands in exactly one outcome bucket.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use dce_loadgen::timers::SipTimers;
use dce_loadgen::uac::{self, Scenario, UacConfig};
use dce_loadgen::uas::{Uas, UasConfig};

fn server(cfg: impl FnOnce(&mut UasConfig)) -> Uas {
    let mut c = UasConfig::new("127.0.0.1:0".parse().unwrap());
    cfg(&mut c);
    Uas::start(c).expect("servers start")
}

/// A short T1 keeps retransmission tests quick; the timeout stays generous
/// so a loaded test machine does not turn slow answers into failures.
fn fast_timers() -> SipTimers {
    SipTimers {
        t1_ns: 50_000_000,
        t2_ns: 400_000_000,
        timeout_ns: 20_000_000_000,
    }
}

fn callers(uas: &Uas, calls: u64, scenario: Scenario) -> UacConfig {
    let mut c = UacConfig::new(uas.local_addr());
    c.scenario = scenario;
    c.cps = 200.0;
    c.max_calls = calls;
    c.duration = Duration::from_secs(30);
    c.sources = 4;
    c.timers = fast_timers();
    c
}

#[test]
fn every_call_completes_against_an_answering_server() {
    let uas = server(|_| {});
    let r = uac::run(&callers(&uas, 200, Scenario::Call), &AtomicBool::new(false)).unwrap();
    let s = uas.stop().unwrap();
    assert_eq!(r.started, 200, "{r}");
    assert_eq!(r.outcomes.completed, 200, "{r}");
    assert!(r.accounting.balanced, "{r}");
    assert_eq!(s.counters.new_calls, 200, "{s}");
    assert_eq!(s.counters.requests.bye, 200 + s.counters.bye_again, "{s}");
    assert_eq!(r.latency_us["setup"].count, 200);
}
