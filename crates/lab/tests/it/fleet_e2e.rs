//! A fleet of three edges behind one anycast address (issue 20): a router
//! running BIRD with ECMP, three edges each with BIRD and `dce-edge run`
//! (AF_XDP), two upstreams, callers behind the router, a `nats-server`.
//! Calls spread over the edges; a stopped edge withdraws its route and the
//! calls go on; a scanner banned on one edge is dropped on the others;
//! spoofed scanner traffic bans no one; the bus goes away and comes back;
//! every edge is restarted in turn with calls running.
//!
//! Nothing is timed: each step waits (generously, bounded) for what it
//! needs to see; the times it took are printed, never asserted.

use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lab::bin::TempDir;
use lab::fleet::{
    bans_host, wait_for, FleetLab, FleetSpec, NUMBER, PATIENCE, SCANNER, SERVICE_SIP,
};
use lab::privilege::{feature_or_skip, have_program, privileged_or_skip};
use lab::redteam::{place_call_to, scanner_options, Calls, CallsOutcome, LoadgenUas, Spoofer};
use lab::wait_until;
use telemetry::stats::Snapshot;

/// One fleet at a time: three AF_XDP edges, four BIRDs and the bus are
/// what a shared 2-core box can run at once.
static ONE_FLEET: Mutex<()> = Mutex::new(());

fn may_run(test: &str) -> bool {
    privileged_or_skip(test)
        && feature_or_skip(
            test,
            have_program("bird")
                && have_program("birdc")
                && have_program("nats-server")
                && have_program("nsenter"),
            "bird, birdc, nats-server or nsenter",
            "apt-get install bird2 nats-server util-linux (scripts/setup.sh)",
        )
}

/// A running fleet: the lab, its upstream servers, its folder.
struct Running {
    lab: FleetLab,
    _uas: Vec<LoadgenUas>,
    dir: TempDir,
}

/// Builds the lab, starts the upstreams and the edges, and waits until all
/// of them announce the service address (and, with a bus, are connected).
fn fleet(spec: FleetSpec) -> Running {
    let dir = TempDir::new("flt").unwrap();
    let mut lab = FleetLab::build(&spec, dir.path()).unwrap();
    let uas = lab
        .upstreams
        .iter()
        .map(|u| LoadgenUas::start(u, dir.path()).unwrap())
        .collect();
    lab.start_edges().unwrap();
    let all: Vec<usize> = (0..lab.edges.len()).collect();
    if let Err(e) = lab.wait_announcing(&all, PATIENCE) {
        panic!("{e}\n{}", logs(&lab));
    }
    if spec.bus {
        for e in &lab.edges {
            e.edge()
                .wait_for("connected to the bus", PATIENCE, bus_connected)
                .unwrap();
        }
    }
    Running {
        lab,
        _uas: uas,
        dir,
    }
}

fn bus_connected(s: &Snapshot) -> bool {
    s.fleet
        .as_ref()
        .and_then(|f| f.bus.as_ref())
        .is_some_and(|b| b.connected)
}

fn logs(lab: &FleetLab) -> String {
    lab.edges
        .iter()
        .map(|e| {
            format!(
                "--- {} ---\n{}",
                e.name,
                e.process.as_ref().map(|p| p.log_text()).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// INVITEs each edge forwarded.
fn forwarded(lab: &FleetLab) -> Vec<u64> {
    lab.edges
        .iter()
        .map(|e| {
            e.process
                .as_ref()
                .and_then(|p| p.snapshot().ok())
                .map_or(0, |s| s.calls.invites_forwarded)
        })
        .collect()
}

/// Calls from every caller address, four flows each, to the service.
fn calls(lab: &FleetLab, cps: u32, per_address: u64) -> Calls {
    let mut c = Calls::new(&lab.caller_addrs(), cps, per_address);
    c.target = SERVICE_SIP;
    c.sources = lab.caller_addrs().len() * 4;
    c
}

/// Calls that did not complete.
fn failed(o: &CallsOutcome) -> u64 {
    o.calls.saturating_sub(o.completed)
}

#[test]
fn calls_spread_over_three_edges_and_a_stopped_edge_withdraws_while_calls_go_on() {
    let test = "calls_spread_over_three_edges_and_a_stopped_edge_withdraws_while_calls_go_on";
    if !may_run(test) {
        return;
    }
    let _one = ONE_FLEET.lock().unwrap_or_else(|e| e.into_inner());
    let mut f = fleet(FleetSpec::default());
    let lab = &mut f.lab;

    // `dce-edge fleet status` on e2 lists the other two, announcing, with
    // the same route files.
    let mut status = serde_json::Value::Null;
    let seen = wait_until(PATIENCE, || {
        status = lab.edges[1].fleet_status().unwrap_or_default();
        let peers = status["peers"].as_array().cloned().unwrap_or_default();
        peers.len() == 2 && peers.iter().all(|p| p["announced"] == true)
    });
    assert!(seen, "{status:#}");
    let digests: Vec<&str> = status["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["routes_digest"].as_str().unwrap_or(""))
        .collect();
    assert!(
        digests.iter().all(|d| !d.is_empty() && *d == digests[0]),
        "{digests:?}"
    );

    // 30 calls a second for about 17 s, over 32 flows.
    let run = calls(lab, 30, 64)
        .spawn(&lab.callers.ns, f.dir.path())
        .unwrap();
    // Every edge takes its share before one is stopped.
    let spread = wait_for(PATIENCE, || forwarded(lab).iter().all(|&n| n >= 20));
    let before = forwarded(lab);
    assert!(
        spread.is_some(),
        "calls did not reach every edge: {before:?}"
    );
    eprintln!("{test}: INVITEs forwarded per edge before the stop: {before:?}");

    // e1 stops (SIGTERM): it withdraws, serves its grace time, exits.
    let t = Instant::now();
    let mut e1 = lab.edges[0].process.take().unwrap();
    let stopper = std::thread::spawn(move || e1.stop());
    let withdrawn = wait_for(PATIENCE, || {
        !lab_announcing_has(&lab.router_route(), "198.18.1.2")
    });
    let last = stopper.join().unwrap().unwrap();
    assert!(
        withdrawn.is_some(),
        "e1's route stayed: {}",
        lab.router_route()
    );
    eprintln!(
        "{test}: e1 withdrawn at the router {:?} after SIGTERM; it exited after {:?}, having forwarded {} INVITEs",
        withdrawn.unwrap(),
        t.elapsed(),
        last.calls.invites_forwarded
    );
    lab.wait_announcing(&[1, 2], PATIENCE).unwrap();
    // The others saw it go: its last heartbeat said why, then it fell
    // silent.
    let gone = wait_until(PATIENCE, || {
        let st = lab.edges[1].fleet_status().unwrap_or_default();
        st["peers"].as_array().is_some_and(|ps| {
            ps.iter().any(|p| {
                p["edge"] == "e1"
                    && p["announced"] == false
                    && p["reason"] == "stopping"
                    && p["lost"] == true
            })
        })
    });
    assert!(
        gone,
        "{:#}",
        lab.edges[1].fleet_status().unwrap_or_default()
    );

    let outcome = run.wait().unwrap();
    let after = forwarded(lab);
    eprintln!(
        "{test}: {}; INVITEs forwarded per edge at the end: {after:?}",
        outcome.summary()
    );
    assert_eq!(outcome.started, outcome.calls, "{}", outcome.summary());
    // e1 withdrew before it stopped and the others know its callers and
    // its dialogs (the shared secret and the bus): at most the calls in
    // flight on it when its flows moved may fail.
    assert!(failed(&outcome) <= 10, "{}", outcome.summary());
    assert!(
        after[1] > before[1] && after[2] > before[2],
        "{before:?} -> {after:?}"
    );

    // Each edge saw only its share of the callers, but every caller is
    // verified on every edge (proofs travel over the bus), in the XDP
    // filter too.
    for e in &lab.edges[1..] {
        let s = e
            .edge()
            .wait_for("every caller verified", PATIENCE, |s| {
                s.verified_sources >= lab.caller_addrs().len() as u64
            })
            .unwrap();
        eprintln!("{test}: {} verifies {} sources", e.name, s.verified_sources);
    }
}

fn lab_announcing_has(route: &str, edge: &str) -> bool {
    route.contains(&format!("via {edge} "))
}

#[test]
fn a_scanner_banned_on_one_edge_is_dropped_on_the_others() {
    let test = "a_scanner_banned_on_one_edge_is_dropped_on_the_others";
    if !may_run(test) {
        return;
    }
    let _one = ONE_FLEET.lock().unwrap_or_else(|e| e.into_inner());
    // Bans on a scanner fingerprint are the operator's opt-in
    // (`auto_ban`, off by default: see the threat model, attack 1).
    let f = fleet(FleetSpec {
        auto_ban: true,
        ..FleetSpec::default()
    });
    let lab = &f.lab;

    // The scanner first places a real call (so it is verified: only a
    // source that proved its address may be banned), then sweeps with
    // SIPVicious's User-Agent from the same socket, so the same edge sees
    // both.
    let local = SocketAddrV4::new(SCANNER, 40_000);
    lab.callers
        .ns
        .enter(move || place_call_to(local, SERVICE_SIP, NUMBER))
        .unwrap()
        .unwrap();
    let t = Instant::now();
    lab.callers
        .ns
        .enter(move || {
            let s = std::net::UdpSocket::bind(local).unwrap();
            for i in 0..5 {
                let m = scanner_options(local, &format!("sweep{i}"));
                s.send_to(m.as_bytes(), SERVICE_SIP).unwrap();
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .unwrap();
    let scanner = IpAddr::V4(SCANNER);
    // Every edge bans it, within a bounded wait: the one it swept on its
    // own evidence, the others because that edge said so.
    for e in &lab.edges {
        let s = e
            .edge()
            .wait_for("the scanner banned on every edge", PATIENCE, |s| {
                bans_host(s, scanner)
            })
            .unwrap_or_else(|err| panic!("{err}\n{}", logs(lab)));
        let b = s
            .bans
            .iter()
            .find(|b| b.source.starts_with("198.18.0.200"))
            .unwrap();
        eprintln!(
            "{test}: {} bans the scanner ({}, {} s left) {:?} after the sweep",
            e.name,
            b.reason,
            b.seconds_left,
            t.elapsed()
        );
    }
    // The edge that banned it on its own evidence is the one that shared
    // it (however long each step took, whichever edge was looked at first).
    let own: Vec<u64> = lab
        .edges
        .iter()
        .map(|e| {
            e.edge()
                .snapshot()
                .ok()
                .and_then(|s| s.fleet)
                .and_then(|f| f.bus)
                .map_or(0, |b| b.own_bans)
        })
        .collect();
    assert_eq!(
        own.iter().filter(|&&n| n > 0).count(),
        1,
        "bans made (not taken from the bus) per edge: {own:?}"
    );
    let banned_at = own.iter().position(|&n| n > 0).unwrap();
    let ev: Vec<_> = lab.edges[(banned_at + 1) % 3]
        .edge()
        .events()
        .into_iter()
        .filter(|e| {
            e["event"] == "ban"
                && e["subject"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("198.18.0.200"))
        })
        .collect();
    assert!(
        ev.iter().any(|e| e["details"]["by"] == "fleet"
            && e["details"]["origin"] == lab.edges[banned_at].name.as_str()),
        "{ev:?}"
    );

    // Whatever flow it uses now, the scanner is dropped: plain OPTIONS from
    // 32 ports (spread by the router over every edge) get no answer, and
    // edges other than the one that banned it drop them as banned.
    let before = lab.xdp_drops("banned");
    let answered = lab
        .callers
        .ns
        .enter(move || {
            let mut answered = 0;
            for port in 41_000..41_032u16 {
                let from = SocketAddr::V4(SocketAddrV4::new(SCANNER, port));
                if lab::ping::options_ping(
                    from,
                    SocketAddr::V4(SERVICE_SIP),
                    Duration::from_millis(300),
                )
                .unwrap()
                .is_some()
                {
                    answered += 1;
                }
            }
            answered
        })
        .unwrap();
    assert_eq!(answered, 0);
    let mut after = Vec::new();
    assert!(
        wait_until(PATIENCE, || {
            after = lab.xdp_drops("banned");
            after
                .iter()
                .zip(&before)
                .enumerate()
                .any(|(i, (a, b))| i != banned_at && a > b)
        }),
        "no other edge dropped the scanner as banned: {before:?} -> {after:?}"
    );
    eprintln!(
        "{test}: XDP banned drops per edge {before:?} -> {after:?} (banned on e{})",
        banned_at + 1
    );
}

#[test]
fn spoofed_scanner_traffic_on_one_edge_bans_no_one_on_any_edge() {
    let test = "spoofed_scanner_traffic_on_one_edge_bans_no_one_on_any_edge";
    if !may_run(test) {
        return;
    }
    let _one = ONE_FLEET.lock().unwrap_or_else(|e| e.into_inner());
    let f = fleet(FleetSpec::default());
    let lab = &f.lab;
    // Callers earn trust on every edge.
    let outcome = calls(lab, 40, 16)
        .run(&lab.callers.ns, f.dir.path())
        .unwrap();
    assert!(outcome.all_completed(), "{}", outcome.summary());

    // Scanner OPTIONS with forged sources, sent into the callers' link:
    // 2,000 spoofed addresses of 198.19.0.0/16, and the scanner's own
    // address, which has proved nothing.
    let mac = lab.router_mac_for_callers().unwrap();
    let spoofer = Spoofer::open_to(&lab.callers.ns, &lab.callers.iface, mac, SERVICE_SIP).unwrap();
    let mut datagrams = Vec::new();
    for i in 0..2_000u32 {
        let src = SocketAddrV4::new(
            std::net::Ipv4Addr::new(198, 19, (i >> 8) as u8, i as u8),
            5060,
        );
        datagrams.push((src, scanner_options(src, &format!("spoof{i}"))));
    }
    for port in 0..200u16 {
        let src = SocketAddrV4::new(SCANNER, 20_000 + port);
        datagrams.push((src, scanner_options(src, &format!("self{port}"))));
    }
    let sent = spoofer.send_all(&datagrams, 2_000).unwrap();
    assert_eq!(sent, datagrams.len() as u64);
    // Every edge saw some of it (the router spreads the flows), dropped
    // it as a scanner's, and banned no one; nothing travelled.
    let mut scanner_drops = Vec::new();
    assert!(
        wait_until(PATIENCE, || {
            scanner_drops = lab.xdp_drops("scanner");
            scanner_drops.iter().all(|&n| n > 0)
                && scanner_drops.iter().sum::<u64>()
                    + lab.xdp_drops("unverified").iter().sum::<u64>()
                    >= 1_000
        }),
        "scanner drops per edge {scanner_drops:?}"
    );
    // Give a ban, had one been made, time to travel: each edge reads its
    // XDP ban map once a second and hears each other edge once a second,
    // so wait (bounded) until every edge heard three more heartbeats from
    // each of the others.
    let heartbeats = |lab: &FleetLab| -> Vec<u64> {
        lab.edges
            .iter()
            .map(|e| {
                e.edge()
                    .snapshot()
                    .ok()
                    .and_then(|s| s.fleet)
                    .and_then(|f| f.bus)
                    .and_then(|b| b.received.get("heartbeat:applied").copied())
                    .unwrap_or(0)
            })
            .collect()
    };
    let hb_before = heartbeats(lab);
    let mut hb_after = Vec::new();
    assert!(
        wait_until(PATIENCE, || {
            hb_after = heartbeats(lab);
            hb_after.iter().zip(&hb_before).all(|(a, b)| *a >= b + 6)
        }),
        "heartbeats {hb_before:?} -> {hb_after:?}"
    );
    for e in &lab.edges {
        let s = e.edge().snapshot().unwrap();
        assert!(s.bans.is_empty(), "{} bans {:?}", e.name, s.bans);
        let bus = s.fleet.as_ref().and_then(|f| f.bus.clone()).unwrap();
        assert_eq!(bus.own_bans + bus.remote_bans, 0, "{}: {bus:?}", e.name);
        assert!(
            !bus.received.keys().any(|k| k.starts_with("ban:")),
            "{}: {:?}",
            e.name,
            bus.received
        );
    }
    eprintln!("{test}: {sent} spoofed scanner datagrams; XDP scanner drops per edge {scanner_drops:?}; no ban anywhere");
}

#[test]
fn a_bus_outage_leaves_each_edge_on_its_own_and_the_state_catches_up_after_it() {
    let test = "a_bus_outage_leaves_each_edge_on_its_own_and_the_state_catches_up_after_it";
    if !may_run(test) {
        return;
    }
    let _one = ONE_FLEET.lock().unwrap_or_else(|e| e.into_inner());
    let f = fleet(FleetSpec::default());
    let lab = &f.lab;
    let nats = lab.nats.as_ref().unwrap();

    // The bus freezes: no FIN, no answers. Each edge notices by its pings.
    let t = Instant::now();
    nats.freeze().unwrap();
    for e in &lab.edges {
        e.edge()
            .wait_for("the outage noticed", PATIENCE, |s| !bus_connected(s))
            .unwrap();
    }
    eprintln!(
        "{test}: every edge noticed the frozen bus {:?} after SIGSTOP",
        t.elapsed()
    );
    for e in &lab.edges {
        assert!(
            e.edge().events().iter().any(|ev| ev["event"] == "bus_down"),
            "{}: no bus_down event",
            e.name
        );
    }
    // Local-only: calls go on, and an operator's ban on e1 holds on e1.
    let outcome = calls(lab, 30, 16)
        .run(&lab.callers.ns, f.dir.path())
        .unwrap();
    assert!(outcome.all_completed(), "{}", outcome.summary());
    let control = lab.edges[0].edge().control_socket();
    let out = lab.edges[0]
        .edge()
        .command(&[
            "ban",
            "198.18.0.250",
            "--ttl",
            "600",
            "--control",
            &control.to_string_lossy(),
        ])
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manual: IpAddr = "198.18.0.250".parse().unwrap();
    lab.edges[0]
        .edge()
        .wait_for("the ban on e1", PATIENCE, |s| bans_host(s, manual))
        .unwrap();
    assert!(!bans_host(&lab.edges[1].edge().snapshot().unwrap(), manual));

    // The bus comes back: every edge reconnects, reads the state again,
    // and the operator's ban made during the outage reaches the others.
    let t = Instant::now();
    nats.thaw().unwrap();
    for e in &lab.edges {
        e.edge()
            .wait_for("reconnected", PATIENCE, bus_connected)
            .unwrap();
        e.edge()
            .wait_for("the ban made during the outage", PATIENCE, |s| {
                bans_host(s, manual)
            })
            .unwrap();
    }
    eprintln!(
        "{test}: the bus back, every edge in sync {:?} after SIGCONT",
        t.elapsed()
    );
    for e in &lab.edges {
        let s = e.edge().snapshot().unwrap();
        let b = s.fleet.unwrap().bus.unwrap();
        assert_eq!(b.outages, 1, "{}: {b:?}", e.name);
        assert!(e.edge().events().iter().any(|ev| ev["event"] == "bus_up"));
    }
}

#[test]
fn a_rolling_restart_of_every_edge_fails_no_call_beyond_those_in_flight() {
    let test = "a_rolling_restart_of_every_edge_fails_no_call_beyond_those_in_flight";
    if !may_run(test) {
        return;
    }
    let _one = ONE_FLEET.lock().unwrap_or_else(|e| e.into_inner());
    let mut f = fleet(FleetSpec::default());
    let lab = &mut f.lab;
    // 25 calls a second for about 40 s.
    let run = calls(lab, 25, 128)
        .spawn(&lab.callers.ns, f.dir.path())
        .unwrap();
    let all = [0usize, 1, 2];
    for i in 0..3 {
        assert!(wait_for(PATIENCE, || forwarded(lab).iter().sum::<u64>()
            > 50 * (i as u64 + 1))
        .is_some());
        let t = Instant::now();
        let e = &mut lab.edges[i];
        e.process.as_mut().unwrap().stop().unwrap();
        e.process.as_mut().unwrap().restart().unwrap();
        lab.wait_announcing(&all, PATIENCE).unwrap();
        eprintln!(
            "{test}: e{} restarted and announcing again after {:?}",
            i + 1,
            t.elapsed()
        );
    }
    let outcome = run.wait().unwrap();
    eprintln!("{test}: {}", outcome.summary());
    assert_eq!(outcome.started, outcome.calls, "{}", outcome.summary());
    // Each edge withdrew before it stopped; a call may fail only when it
    // was in flight on an edge as its flows moved.
    assert!(failed(&outcome) <= 15, "{}", outcome.summary());
}
