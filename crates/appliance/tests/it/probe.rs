//! The OPTIONS prober over real UDP sockets on 127.0.0.1: a responder that
//! answers stays up; a silent one goes down after N probes and comes back
//! after M answers; the change reaches the workers through their rings.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use appliance::probe::Prober;
use route::health::HealthChange;
use route::health::HealthSettings;
use route::trie::PrefixKey;
use route::{Action, GroupId, RouteControl, RouteGroup, RouteTable, Target};

/// A UDP server on 127.0.0.1 that answers OPTIONS with 200 while `answer`
/// is set and stays silent otherwise; it stops when dropped.
struct Responder {
    addr: SocketAddr,
    answer: Arc<AtomicBool>,
    answered: Arc<AtomicU32>,
    received: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Responder {
    fn start(answering: bool) -> Responder {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let answer = Arc::new(AtomicBool::new(answering));
        let answered = Arc::new(AtomicU32::new(0));
        let received = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (answer, answered, received, stop) = (
                answer.clone(),
                answered.clone(),
                received.clone(),
                stop.clone(),
            );
            thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Acquire) {
                    let Ok((len, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    received.fetch_add(1, Ordering::AcqRel);
                    if answer.load(Ordering::Acquire) {
                        let reply = ok_for(&buf[..len]);
                        if socket.send_to(&reply, from).is_ok() {
                            answered.fetch_add(1, Ordering::AcqRel);
                        }
                    }
                }
            })
        };
        Responder {
            addr,
            answer,
            answered,
            received,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A 200 OK for an OPTIONS, copying Via, From, To, Call-ID and CSeq as a
/// SIP server does (RFC 3261 section 8.2.6).
fn ok_for(request: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(request);
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for line in text.split("\r\n") {
        let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
        if ["via", "from", "to", "call-id", "cseq"].contains(&name.as_str()) {
            out.push_str(line);
            if name == "to" {
                out.push_str(";tag=responder");
            }
            out.push_str("\r\n");
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out.into_bytes()
}

fn settings() -> HealthSettings {
    HealthSettings {
        // Long enough that a loaded machine still answers within a round.
        interval: Duration::from_millis(400),
        down_after: 3,
        up_after: 2,
        ..HealthSettings::default()
    }
}

/// Polls the prober until `done` says so or 30 seconds pass; returns every
/// change seen.
fn run_until(
    prober: &mut Prober,
    changes: &mut Vec<HealthChange>,
    mut done: impl FnMut(&[HealthChange]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(changes) && Instant::now() < deadline {
        prober.poll(Instant::now(), changes).unwrap();
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_silent_target_goes_down_after_n_probes_and_comes_back_after_m_answers() {
    let talker = Responder::start(true);
    let silent = Responder::start(false);
    let mut prober = Prober::bind("127.0.0.1:0".parse().unwrap(), settings()).unwrap();
    prober.set_targets(&[talker.addr, silent.addr]);
    let mut changes = Vec::new();

    run_until(&mut prober, &mut changes, |c| !c.is_empty());
    assert_eq!(
        changes,
        vec![HealthChange {
            addr: silent.addr,
            up: false,
            after: 3
        }],
        "only the silent target changes, after 3 missed probes"
    );
    assert!(silent.received.load(Ordering::Acquire) >= 3);
    assert_eq!(prober.probes().is_up(talker.addr), Some(true));

    silent.answer.store(true, Ordering::Release);
    run_until(&mut prober, &mut changes, |c| c.len() >= 2);
    assert_eq!(
        changes[1..],
        [HealthChange {
            addr: silent.addr,
            up: true,
            after: 2
        }]
    );
    assert!(silent.answered.load(Ordering::Acquire) >= 2);
    assert!(talker.answered.load(Ordering::Acquire) >= 4);
    let stats = prober.probes().stats;
    assert!(stats.missed >= 3, "{stats:?}");
    assert!(stats.answered >= 6, "{stats:?}");
}

#[test]
fn health_changes_from_the_prober_reach_the_workers() {
    let silent = Responder::start(false);
    let talker = Responder::start(true);
    let group = RouteGroup::new("g", Action::Forward)
        .with_target(Target::new(silent.addr, 1, 1))
        .with_target(Target::new(talker.addr, 2, 1));
    let table = RouteTable::build(
        vec![group],
        &[(PrefixKey::from_digits(b"49").unwrap(), GroupId(0))],
        settings(),
    )
    .unwrap();
    let (mut control, mut workers) = RouteControl::new(table, 2);
    let mut prober = Prober::bind(
        "127.0.0.1:0".parse().unwrap(),
        control.table().health_settings(),
    )
    .unwrap();
    prober.set_targets(&control.table().forward_upstreams());

    // Priority 1 is the silent one: calls go there until it is found down.
    for w in &mut workers {
        assert_eq!(w.select(GroupId(0), b"c1").unwrap().addr, silent.addr);
    }
    let mut changes = Vec::new();
    run_until(&mut prober, &mut changes, |c| !c.is_empty());
    control.apply_health(&changes);
    for w in &mut workers {
        assert_eq!(w.poll().health_updates, 1);
        assert_eq!(w.select(GroupId(0), b"c1").unwrap().addr, talker.addr);
    }
}
