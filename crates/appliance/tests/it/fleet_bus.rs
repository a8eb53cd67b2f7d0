//! The fleet's shared state over a real `nats-server` (JetStream on, one
//! user per edge allowed to write only its own keys) on 127.0.0.1: two
//! edges' `Share`s exchange a verification and a ban, ride out a server
//! crash (what was banned during it arrives after it), and a third party
//! with the bus password of one edge can forge nothing.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use appliance::fleet::share::{unix_ms, Share, ShareEvent};
use fleet::message::MacKey;
use fleet::shared::{Apply, Limits, Refusal};
use fleet::{BusConfig, Credentials};
use lab::bin::TempDir;
use lab::nats::{lab_password, NatsServer};
use lab::privilege::{feature_or_skip, have_program};
use wire::Cidr;

const FLEET: &str = "itest";
const SECRET: (u64, u64) = (0x1234, 0x5678);
const PATIENCE: Duration = Duration::from_secs(60);

fn may_run(test: &str) -> bool {
    feature_or_skip(
        test,
        have_program("nats-server"),
        "nats-server",
        "apt-get install nats-server (scripts/setup.sh)",
    )
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// One edge: its share, and what it took from the fleet.
struct Edge {
    name: &'static str,
    share: Share,
    verified: HashSet<IpAddr>,
    bans: HashSet<Cidr>,
    refused: Vec<(String, Refusal)>,
    events: Vec<ShareEvent>,
}

impl Edge {
    fn new(name: &'static str, server: SocketAddr, password: &str, mac: MacKey) -> Edge {
        let cfg = BusConfig {
            servers: vec![server.to_string()],
            credentials: Credentials::None,
            limits: Limits::default(),
        };
        let share = Share::start(
            FLEET,
            name,
            &cfg,
            Some((name.to_string(), password.to_string())),
            None,
            mac,
            Limits::default(),
            Duration::from_secs(3600),
            3_600_000,
        );
        Edge {
            name,
            share,
            verified: HashSet::new(),
            bans: HashSet::new(),
            refused: Vec::new(),
            events: Vec::new(),
        }
    }

    /// One control-thread tick.
    fn tick(&mut self) {
        let now_ms = unix_ms();
        self.events.extend(self.share.poll(Instant::now(), now_ms));
        let now_ns = now_ms * 1_000_000;
        loop {
            let verified = &self.verified;
            let bannable = |ip: IpAddr| verified.contains(&ip);
            let Some(r) = self.share.next_incoming(now_ms, now_ns, &bannable) else {
                break;
            };
            match r {
                Ok(Apply::Verify { source, .. }) => {
                    self.verified.insert(source);
                }
                Ok(Apply::Ban { network, .. }) => {
                    self.bans.insert(network);
                }
                Ok(_) => {}
                Err(e) => self.refused.push(e),
            }
        }
    }
}

/// Ticks every edge until `cond` holds (up to [`PATIENCE`]).
fn run_until(edges: &mut [&mut Edge], what: &str, mut cond: impl FnMut(&[&mut Edge]) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        for e in edges.iter_mut() {
            e.tick();
        }
        if cond(edges) {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let state: Vec<String> = edges
        .iter()
        .map(|e| {
            format!(
                "{}: connected {} events {:?} refused {:?} report {:?}",
                e.name,
                e.share.connected(),
                e.events,
                e.refused,
                e.share.report(unix_ms())
            )
        })
        .collect();
    panic!("{what}: not within {PATIENCE:?}\n{}", state.join("\n"));
}

#[test]
fn two_edges_share_a_proof_and_a_ban_and_catch_up_after_a_server_crash() {
    if !may_run("two_edges_share_a_proof_and_a_ban_and_catch_up_after_a_server_crash") {
        return;
    }
    let dir = TempDir::new("fbus").unwrap();
    let listen = free_port();
    let mut server =
        NatsServer::start(None, dir.path(), FLEET, &["e1", "e2", "e3"], listen).unwrap();
    let mac = MacKey::new(SECRET);
    let mut e1 = Edge::new("e1", listen, &lab_password("e1"), mac);
    let mut e2 = Edge::new("e2", listen, &lab_password("e2"), mac);
    run_until(&mut [&mut e1, &mut e2], "both connected", |es| {
        es.iter().all(|e| e.share.connected())
    });

    // e1 sees a caller prove its address, then ban it for abuse.
    let caller: IpAddr = "198.18.0.10".parse().unwrap();
    let now = unix_ms();
    e1.share.verified(caller, now + 3_600_000, now);
    e1.share
        .ban_made(Cidr::host(caller), "not_found", now + 600_000, now);
    run_until(
        &mut [&mut e1, &mut e2],
        "e2 took the proof and the ban",
        |es| es[1].bans.contains(&Cidr::host(caller)),
    );
    assert!(e2.verified.contains(&caller));

    // The server crashes. Both notice; e1 bans another caller meanwhile.
    server.kill().unwrap();
    run_until(&mut [&mut e1, &mut e2], "both noticed the outage", |es| {
        es.iter().all(|e| {
            !e.share.connected()
                && e.events
                    .iter()
                    .any(|ev| matches!(ev, ShareEvent::Down { .. }))
        })
    });
    let second: IpAddr = "198.18.0.11".parse().unwrap();
    let now = unix_ms();
    e1.share.verified(second, now + 3_600_000, now);
    e1.share
        .ban_made(Cidr::host(second), "auth_failure", now + 600_000, now);
    for _ in 0..50 {
        e1.tick();
        e2.tick();
    }
    assert!(
        !e2.bans.contains(&Cidr::host(second)),
        "no bus, no ban elsewhere"
    );

    // Back on the same store: both read the state again, e1 republishes.
    server.restart().unwrap();
    run_until(
        &mut [&mut e1, &mut e2],
        "the ban made during the outage arrived",
        |es| es[1].bans.contains(&Cidr::host(second)),
    );
    assert!(e2.events.iter().any(|ev| matches!(
        ev,
        ShareEvent::Up {
            down_for: Some(_),
            ..
        }
    )));
    let report = e2.share.report(unix_ms());
    assert_eq!(report.outages, 1, "{report:?}");
    assert!(report.resyncs >= 2, "{report:?}");

    // A newcomer reads the whole state from the buckets.
    let mut e3 = Edge::new("e3", listen, &lab_password("e3"), mac);
    run_until(&mut [&mut e1, &mut e2, &mut e3], "e3 caught up", |es| {
        es[2].bans.contains(&Cidr::host(caller)) && es[2].bans.contains(&Cidr::host(second))
    });
}

#[test]
fn a_party_with_one_edges_bus_password_but_not_the_secret_forges_nothing() {
    if !may_run("a_party_with_one_edges_bus_password_but_not_the_secret_forges_nothing") {
        return;
    }
    let dir = TempDir::new("fbus").unwrap();
    let listen = free_port();
    let _server = NatsServer::start(None, dir.path(), FLEET, &["e1", "e2", "e3"], listen).unwrap();
    let mut e2 = Edge::new("e2", listen, &lab_password("e2"), MacKey::new(SECRET));
    // The intruder logs in as e3 (a stolen password) with a made-up key.
    let mut intruder = Edge::new("e3", listen, &lab_password("e3"), MacKey::new((1, 1)));
    // A wrong password does not get in at all.
    let mut stranger = Edge::new("e1", listen, "guess", MacKey::new(SECRET));
    run_until(&mut [&mut e2, &mut intruder], "both connected", |es| {
        es.iter().all(|e| e.share.connected())
    });
    let victim: IpAddr = "198.18.0.99".parse().unwrap();
    e2.verified.insert(victim);
    let now = unix_ms();
    intruder.share.verified(victim, now + 3_600_000, now);
    intruder
        .share
        .ban_made(Cidr::host(victim), "scanner", now + 600_000, now);
    run_until(
        &mut [&mut e2, &mut intruder],
        "e2 refused the forgeries",
        |es| {
            es[0]
                .refused
                .iter()
                .filter(|(_, r)| *r == Refusal::Unreadable("bad_signature"))
                .count()
                >= 2
        },
    );
    assert!(e2.bans.is_empty(), "{:?}", e2.bans);
    for _ in 0..200 {
        stranger.tick();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!stranger.share.connected());
    let down = stranger
        .share
        .report(unix_ms())
        .last_down_reason
        .unwrap_or_default();
    assert!(down.to_lowercase().contains("authorization"), "{down}");
}
