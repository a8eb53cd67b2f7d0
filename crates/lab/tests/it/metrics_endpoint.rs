//! End to end: a MetricsServer on 127.0.0.1 fed by a source that reads
//! counters a "traffic" thread advances, scraped with plain HTTP GETs while
//! that thread runs. What the endpoint shows must match what the traffic
//! thread counted: at a midpoint the test holds it at, on every scrape while
//! it runs (never more than sent, never going back), and at the end.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use telemetry::metrics::{sample_value, MetricsServer, OPENMETRICS_CONTENT_TYPE};
use telemetry::stats::client::{self, fetch_snapshot};
use telemetry::stats::{
    CallCounters, Modes, Role, Snapshot, TopOffender, WorkerReport, XdpCounters,
};

const TIMEOUT: Duration = Duration::from_secs(10);
/// Bounded waits: generous, for a noisy shared 2-core machine.
const WAIT: Duration = Duration::from_secs(60);

/// What the edge counted, as the control thread would hold it.
#[derive(Default)]
struct Counted {
    scanner: AtomicU64,
    not_sip: AtomicU64,
    rate_limit: AtomicU64,
    redirected: AtomicU64,
    received: AtomicU64,
    invites_forwarded: AtomicU64,
    answered: AtomicU64,
    failed: AtomicU64,
}

impl Counted {
    fn snapshot(&self, started: Instant) -> Snapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Acquire);
        let scanner = get(&self.scanner);
        Snapshot {
            version: env!("CARGO_PKG_VERSION").into(),
            role: Role::Appliance,
            interface: Some("lo".into()),
            uptime_seconds: started.elapsed().as_secs_f64(),
            modes: Modes {
                attach: "native".into(),
                attach_fallback: false,
                dataplane: "copy".into(),
                program_id: None,
            },
            xdp: Some(XdpCounters {
                drops: [
                    ("scanner".to_string(), scanner),
                    ("not_sip".to_string(), get(&self.not_sip)),
                    ("rate_limit".to_string(), get(&self.rate_limit)),
                ]
                .into(),
                passed: 0,
                redirected: get(&self.redirected),
            }),
            top_sources: vec![TopOffender {
                source: "198.18.0.66".into(),
                drops: scanner,
                last_reason: "scanner".into(),
            }],
            workers: vec![WorkerReport {
                id: 0,
                received: get(&self.received),
                forwarded_requests: get(&self.invites_forwarded),
                forwarded_responses: get(&self.answered) + get(&self.failed),
                ..Default::default()
            }],
            calls: CallCounters {
                invites_forwarded: get(&self.invites_forwarded),
                answered: get(&self.answered),
                failed: get(&self.failed),
            },
            ..Default::default()
        }
    }
}

/// The traffic the test "sends": packet `i` of a fixed mix. Returns what
/// it sent, by the sample it must show up as.
fn send(counted: &Counted, range: std::ops::Range<u64>, sent: &mut BTreeMap<&'static str, u64>) {
    for i in range {
        let mut bump = |a: &AtomicU64, key: &'static str| {
            a.fetch_add(1, Ordering::AcqRel);
            *sent.entry(key).or_default() += 1;
        };
        match i % 10 {
            0..=2 => bump(&counted.scanner, "scanner"),
            3 => bump(&counted.not_sip, "not_sip"),
            4 => bump(&counted.rate_limit, "rate_limit"),
            n => {
                // A call: redirected to the worker, INVITE forwarded; one
                // call in ten fails, the rest are answered.
                bump(&counted.redirected, "redirected");
                bump(&counted.received, "received");
                bump(&counted.invites_forwarded, "forwarded");
                if n == 9 && i % 20 == 9 {
                    bump(&counted.failed, "failed");
                } else {
                    bump(&counted.answered, "answered");
                }
            }
        }
    }
}

fn scrape(addr: std::net::SocketAddr) -> String {
    let response = client::get(&format!("http://{addr}/metrics"), TIMEOUT).expect("scrape");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some(OPENMETRICS_CONTENT_TYPE)
    );
    let text = String::from_utf8(response.body).expect("UTF-8 exposition");
    assert!(
        text.ends_with("# EOF\n"),
        "exposition not terminated:\n{text}"
    );
    text
}

/// The figures of one scrape, keyed like the ledger of what was sent.
fn figures(text: &str) -> BTreeMap<&'static str, u64> {
    let v = |name: &str, labels: &[(&str, &str)]| {
        sample_value(text, name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in:\n{text}")) as u64
    };
    let drops = "dce_edge_xdp_drops_total";
    let calls = "dce_edge_calls_total";
    [
        ("scanner", v(drops, &[("reason", "scanner")])),
        ("not_sip", v(drops, &[("reason", "not_sip")])),
        ("rate_limit", v(drops, &[("reason", "rate_limit")])),
        ("redirected", v("dce_edge_xdp_redirected_total", &[])),
        (
            "received",
            v("dce_edge_worker_received_total", &[("worker", "0")]),
        ),
        ("forwarded", v(calls, &[("outcome", "forwarded")])),
        ("answered", v(calls, &[("outcome", "answered")])),
        ("failed", v(calls, &[("outcome", "failed")])),
    ]
    .into()
}

#[test]
fn scrape_while_traffic_runs_matches_what_was_sent() {
    let counted = Arc::new(Counted::default());
    let started = Instant::now();
    let source = {
        let counted = counted.clone();
        move || counted.snapshot(started)
    };
    let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), source).expect("start");
    let addr = server.local_addr();

    const HALF: u64 = 50_000;
    const ALL: u64 = 400_000;
    const BATCH: u64 = 1_000;
    let (half_tx, half_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let traffic = {
        let counted = counted.clone();
        std::thread::spawn(move || {
            let mut sent = BTreeMap::new();
            send(&counted, 0..HALF, &mut sent);
            half_tx.send(sent.clone()).unwrap();
            // Held here until the test has scraped the midpoint.
            go_rx
                .recv_timeout(WAIT)
                .expect("the test never released the traffic");
            // The rest in paced batches, so scrapes land while it runs
            // (bounded: a fixed count, and at most ~1 ms of sleep a batch).
            let mut next = HALF;
            while next < ALL {
                let end = (next + BATCH).min(ALL);
                send(&counted, next..end, &mut sent);
                next = end;
                std::thread::sleep(Duration::from_millis(1));
            }
            sent
        })
    };

    let sent_at_half = half_rx
        .recv_timeout(WAIT)
        .expect("traffic reached the midpoint");
    assert_eq!(figures(&scrape(addr)), sent_at_half, "midpoint scrape");
    go_tx.send(()).unwrap();

    // Scrape as fast as we can while the rest runs: every figure moves
    // forward only and never past the final count.
    let final_bound: BTreeMap<&str, u64> = {
        let mut probe = BTreeMap::new();
        send(&Counted::default(), 0..ALL, &mut probe);
        probe
    };
    let mut last = sent_at_half.clone();
    let mut scrapes_while_running = 0;
    let deadline = Instant::now() + WAIT;
    while !traffic.is_finished() {
        assert!(
            Instant::now() < deadline,
            "traffic did not finish in {WAIT:?}"
        );
        let now = figures(&scrape(addr));
        for (key, value) in &now {
            assert!(
                *value >= last[key],
                "{key} went back: {} -> {value}",
                last[key]
            );
            assert!(
                *value <= final_bound[key],
                "{key} {value} over what is sent"
            );
        }
        last = now;
        scrapes_while_running += 1;
    }
    let sent = traffic.join().expect("traffic thread");
    assert_eq!(sent, final_bound);
    eprintln!("{scrapes_while_running} scrapes while traffic ran");

    let text = scrape(addr);
    assert_eq!(figures(&text), sent, "final scrape");
    assert_eq!(
        sample_value(
            &text,
            "dce_edge_top_source_drops",
            &[("source", "198.18.0.66"), ("reason", "scanner")]
        ),
        Some(sent["scanner"] as f64)
    );
    // The JSON side says the same.
    let snapshot = fetch_snapshot(&format!("http://{addr}"), TIMEOUT).expect("snapshot.json");
    let xdp = snapshot.xdp.expect("xdp counters");
    assert_eq!(xdp.drops["scanner"], sent["scanner"]);
    assert_eq!(xdp.drops["not_sip"], sent["not_sip"]);
    assert_eq!(xdp.drops["rate_limit"], sent["rate_limit"]);
    assert_eq!(snapshot.calls.invites_forwarded, sent["forwarded"]);
    assert_eq!(snapshot.calls.answered, sent["answered"]);
    server.stop();
}

#[test]
fn published_snapshots_are_served_as_they_are_published() {
    let (server, publisher) =
        MetricsServer::start_published("127.0.0.1:0".parse().unwrap()).expect("start");
    let addr = server.local_addr();
    // Before the first publish: 503, not an exposition of zeros that a
    // scraper would read as every counter reset.
    let early = client::get(&format!("http://{addr}/metrics"), TIMEOUT).expect("scrape");
    assert_eq!(
        early.status,
        503,
        "{:?}",
        String::from_utf8_lossy(&early.body)
    );
    for answered in [10u64, 20, 35] {
        publisher.publish(Snapshot {
            version: "0.1.0".into(),
            calls: CallCounters {
                invites_forwarded: answered,
                answered,
                failed: 0,
            },
            ..Default::default()
        });
        let text = scrape(addr);
        assert_eq!(
            sample_value(&text, "dce_edge_calls_total", &[("outcome", "answered")]),
            Some(answered as f64)
        );
    }
    server.stop();
}

#[test]
fn stopped_server_no_longer_answers() {
    let server =
        MetricsServer::start("127.0.0.1:0".parse().unwrap(), Snapshot::default).expect("start");
    let url = format!("http://{}/metrics", server.local_addr());
    assert_eq!(client::get(&url, TIMEOUT).expect("scrape").status, 200);
    server.stop();
    assert!(client::get(&url, Duration::from_secs(2)).is_err());
}

#[test]
fn second_server_on_a_taken_port_is_refused_with_the_address() {
    let first =
        MetricsServer::start("127.0.0.1:0".parse().unwrap(), Snapshot::default).expect("start");
    let err = MetricsServer::start(first.local_addr(), Snapshot::default).unwrap_err();
    assert!(
        err.to_string().contains(&first.local_addr().to_string()),
        "{err}"
    );
}
