//! Attacks over UDP sockets against dce-loadgen's own servers on 127.0.0.1:
//! a scanner sweep finds the extensions that answer, password guessing finds
//! the password, and garbage is counted as unparseable by the server.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use loadgen::attack::{self, Bounds, GarbageConfig, GuessConfig, ScanConfig, GARBAGE_KINDS};
use loadgen::numbers::Numbers;
use loadgen::uas::{Uas, UasConfig};
use sip::Method;

fn server(password: Option<&str>) -> Uas {
    let mut c = UasConfig::new("127.0.0.1:0".parse().unwrap());
    c.password = password.map(String::from);
    Uas::start(c).unwrap()
}

fn bounds(count: u64) -> Bounds {
    Bounds {
        count,
        duration: Duration::from_secs(20),
        pps: 500.0,
    }
}

#[test]
fn register_sweep_reports_every_extension_that_answers() {
    let uas = server(Some("secret"));
    let mut c = ScanConfig::new(uas.local_addr());
    c.method = Method::Register;
    c.extensions = Numbers::pattern("{100-149}").unwrap();
    c.bounds = bounds(50);
    let r = attack::scan(&c, &AtomicBool::new(false)).unwrap();
    let s = uas.stop().unwrap();
    assert_eq!(r.sent, 50, "{r}");
    assert_eq!(s.counters.requests.register, 50, "{s}");
    // This server challenges every REGISTER: each extension "exists".
    assert_eq!(r.answers.get(&401), Some(&50), "{r}");
    assert_eq!(r.found.len(), 50, "{r}");
}

#[test]
fn options_sweep_carries_the_scanner_user_agent_to_the_server() {
    let uas = server(None);
    let mut c = ScanConfig::new(uas.local_addr());
    c.method = Method::Options;
    c.extensions = Numbers::pattern("{100-119}").unwrap();
    c.bounds = bounds(20);
    let r = attack::scan(&c, &AtomicBool::new(false)).unwrap();
    let s = uas.stop().unwrap();
    assert_eq!(s.counters.requests.options, 20, "{s}");
    assert_eq!(r.answers.get(&200), Some(&20), "{r}");
}

#[test]
fn password_guessing_finds_the_password() {
    let uas = server(Some("0042"));
    let mut c = GuessConfig::new(uas.local_addr());
    c.passwords = Numbers::pattern("{0000-0099}").unwrap();
    c.bounds = bounds(100);
    let r = attack::guess(&c, &AtomicBool::new(false)).unwrap();
    let s = uas.stop().unwrap();
    assert_eq!(
        r.found,
        vec!["password \"0042\" accepted".to_string()],
        "{r}"
    );
    assert_eq!(s.counters.register_accepted, 1, "{s}");
    assert_eq!(s.counters.register_rejected, 99, "{s}");
    assert_eq!(s.counters.register_challenged, 100, "{s}");
}

#[test]
fn garbage_is_counted_by_the_server_and_never_answered_as_a_call() {
    let uas = server(None);
    let n = GARBAGE_KINDS.len() as u64 * 4;
    let c = GarbageConfig {
        local_addr: None,
        target: uas.local_addr(),
        sources: 4,
        bounds: bounds(n),
        seed: 9,
        listen_after: Duration::from_millis(500),
    };
    let r = attack::garbage(&c, &AtomicBool::new(false)).unwrap();
    let s = uas.stop().unwrap();
    assert_eq!(r.sent, n, "{r}");
    assert_eq!(s.counters.traffic.received, n, "{s}");
    assert_eq!(s.counters.new_calls, 0, "{s}");
    assert_eq!(s.counters.unparseable, n, "{s}");
    assert_eq!(s.counters.traffic.sent, 0, "garbage gets no answer: {s}");
}
