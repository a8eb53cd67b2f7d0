//! The fleet's shared state over a real `nats-server` (JetStream on, one
//! user per edge allowed to write only its own keys) on 127.0.0.1: two
//! edges' `Share`s exchange a verification and a ban, ride out a server
//! crash (what was banned during it arrives after it), a third party
//! with the bus password of one edge can forge nothing, and an edge taken
//! over (the secret and its own password) bans no caller another edge
//! verified and no upstream.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use appliance::fleet::share::{unix_ms, Share, ShareEvent};
use fleet::message::MacKey;
use fleet::message::OperatorAction;
use fleet::shared::{Apply, Limits, Refusal, Standing};
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
    /// Upstreams and allowlisted sources: never banned from elsewhere.
    trusted: HashSet<IpAddr>,
    /// Networks banned by other edges' operators.
    operator_bans: HashSet<Cidr>,
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
            trusted: HashSet::new(),
            operator_bans: HashSet::new(),
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
            let trusted = &self.trusted;
            let standing = |n: &Cidr| Standing {
                verified: verified.iter().any(|&v| n.contains(v)),
                proved_here: false,
                trusted: trusted.iter().any(|&t| n.contains(t)),
            };
            let Some(r) = self.share.next_incoming(now_ms, now_ns, &standing) else {
                break;
            };
            match r {
                Ok(Apply::Verify { source, .. }) => {
                    self.verified.insert(source);
                }
                Ok(Apply::Ban { network, .. }) => {
                    self.bans.insert(network);
                }
                Ok(Apply::Operator {
                    network,
                    action: OperatorAction::Ban { .. },
                    ..
                }) => {
                    self.operator_bans.insert(network);
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

/// An edge taken over holds what every edge holds (the fleet secret, its
/// own bus password), so its messages are genuine. It vouches for a
/// caller that proved its address to e2, one that proved it to e3, and an
/// upstream of e2, and bans them all, as automatic bans and as an operator,
/// with a network ban of everything on top. e2 takes none of it; only the
/// ban of a source that nobody but the rogue edge vouched for (what a
/// scanner that proved its address to it and scanned it looks like) is
/// taken, and that one is the sign that everything before it was read.
#[test]
fn a_compromised_edge_bans_no_caller_verified_by_another_edge_and_no_upstream() {
    let test = "a_compromised_edge_bans_no_caller_verified_by_another_edge_and_no_upstream";
    if !may_run(test) {
        return;
    }
    let dir = TempDir::new("fbus").unwrap();
    let listen = free_port();
    let _server = NatsServer::start(None, dir.path(), FLEET, &["e1", "e2", "e3"], listen).unwrap();
    let mac = MacKey::new(SECRET);
    let mut rogue = Edge::new("e1", listen, &lab_password("e1"), mac);
    let mut e2 = Edge::new("e2", listen, &lab_password("e2"), mac);
    let mut e3 = Edge::new("e3", listen, &lab_password("e3"), mac);
    run_until(&mut [&mut rogue, &mut e2, &mut e3], "all connected", |es| {
        es.iter().all(|e| e.share.connected())
    });

    let mine: IpAddr = "198.18.0.10".parse().unwrap();
    let theirs: IpAddr = "198.18.0.11".parse().unwrap();
    let upstream: IpAddr = "198.18.5.2".parse().unwrap();
    let scanner: IpAddr = "198.18.0.200".parse().unwrap();
    e2.trusted.insert(upstream);
    let now = unix_ms();
    // `mine` proved its address to e2, `theirs` to e3 (e3 shares it).
    e2.share.verified(mine, now + 3_600_000, now);
    e2.verified.insert(mine);
    e3.share.verified(theirs, now + 3_600_000, now);
    e3.verified.insert(theirs);
    run_until(
        &mut [&mut rogue, &mut e2, &mut e3],
        "e2 took e3's proof",
        |es| es[1].verified.contains(&theirs),
    );

    // The rogue edge vouches for all of them and bans them.
    let now = unix_ms();
    for who in [mine, theirs, upstream, scanner] {
        rogue.share.verified(who, now + 3_600_000, now);
    }
    for who in [mine, theirs, upstream] {
        rogue
            .share
            .ban_made(Cidr::host(who), "scanner", now + 600_000, now);
    }
    for network in [
        "0.0.0.0/0",
        "198.18.0.10/32",
        "198.18.0.11/32",
        "198.18.5.2/32",
    ] {
        rogue.share.operator_action(
            OperatorAction::Ban {
                network: network.into(),
                reason: "manual".into(),
                note: String::new(),
                until_ms: None,
            },
            now,
        );
    }
    rogue
        .share
        .ban_made(Cidr::host(scanner), "scanner", now + 600_000, now);
    run_until(
        &mut [&mut rogue, &mut e2, &mut e3],
        "e2 and e3 took the ban of the source only the rogue edge vouched for, and e2 read the operator actions",
        |es| {
            es[1].bans.contains(&Cidr::host(scanner))
                && es[2].bans.contains(&Cidr::host(scanner))
                && es[1].refused.iter().filter(|(k, _)| k.starts_with("op.")).count() >= 4
        },
    );
    assert_eq!(
        e2.bans,
        HashSet::from([Cidr::host(scanner)]),
        "refused: {:?}",
        e2.refused
    );
    assert!(e2.operator_bans.is_empty(), "{:?}", e2.operator_bans);
    let refused = |r: Refusal| e2.refused.iter().filter(|(_, x)| *x == r).count();
    assert_eq!(refused(Refusal::NotBannable), 3 + 3, "{:?}", e2.refused);
    assert_eq!(refused(Refusal::NotHost), 1, "{:?}", e2.refused);
    // e3 too: it took nothing of its own caller's or of e2's.
    assert!(
        !e3.bans.contains(&Cidr::host(theirs)) && !e3.bans.contains(&Cidr::host(mine)),
        "{:?}",
        e3.bans
    );
}
