//! Next-hop resolution against the kernel's tables in a namespace pair:
//! the peer's MAC on link, the gateway's MAC for an off-link destination,
//! and clear errors for addresses that cannot be resolved or routed.

use std::net::IpAddr;
use std::time::Duration;

use dataplane::neigh::{NeighbourCache, NeighbourError};
use lab::netns::{unique_name, veth_pair, Netns};
use lab::privilege::privileged_or_skip;

struct Pair {
    a: Netns,
    b: Netns,
    ia: String,
    ib: String,
}

fn pair(subnet: u8) -> Pair {
    let a = Netns::create("dna").unwrap();
    let b = Netns::create("dnb").unwrap();
    let (ia, ib) = (unique_name("na"), unique_name("nb"));
    veth_pair(&a, &ia, &b, &ib).unwrap();
    a.addr_up(&ia, &format!("198.18.{subnet}.1/24")).unwrap();
    a.addr_up(&ia, &format!("2001:2:0:{subnet}::1/64")).unwrap();
    b.addr_up(&ib, &format!("198.18.{subnet}.2/24")).unwrap();
    b.addr_up(&ib, &format!("2001:2:0:{subnet}::2/64")).unwrap();
    Pair { a, b, ia, ib }
}

fn peer_mac(p: &Pair) -> wire::frame::MacAddr {
    let ib = p.ib.clone();
    p.b.enter(move || NeighbourCache::open(&ib).unwrap().interface().mac)
        .unwrap()
}

#[test]
fn interface_reports_its_mac_and_addresses() {
    if !privileged_or_skip("interface_reports_its_mac_and_addresses") {
        return;
    }
    let p = pair(20);
    let ia = p.ia.clone();
    let info =
        p.a.enter(move || NeighbourCache::open(&ia).unwrap().interface().clone())
            .unwrap();
    assert_eq!(info.name, p.ia);
    assert_ne!(info.mac.octets(), [0; 6]);
    assert!(
        info.addrs
            .contains(&"198.18.20.1".parse::<IpAddr>().unwrap()),
        "{info:?}"
    );
    assert!(
        info.addrs
            .contains(&"2001:2:0:20::1".parse::<IpAddr>().unwrap()),
        "{info:?}"
    );
}

#[test]
fn peer_on_link_resolves_to_its_mac_over_ipv4_and_ipv6() {
    if !privileged_or_skip("peer_on_link_resolves_to_its_mac_over_ipv4_and_ipv6") {
        return;
    }
    let p = pair(21);
    let want = peer_mac(&p);
    let ia = p.ia.clone();
    let (v4, v6) =
        p.a.enter(move || {
            let mut c = NeighbourCache::open(&ia).unwrap();
            // Nothing has been sent yet: the entries do not exist until
            // resolution is triggered.
            assert_eq!(c.neighbour("198.18.21.2".parse().unwrap()).unwrap(), None);
            let v4 = c.resolve("198.18.21.2".parse().unwrap(), Duration::from_secs(10));
            let v6 = c.resolve("2001:2:0:21::2".parse().unwrap(), Duration::from_secs(10));
            (v4.unwrap(), v6.unwrap())
        })
        .unwrap();
    assert_eq!(v4, want);
    assert_eq!(v6, want);
}

#[test]
fn off_link_destination_resolves_to_the_gateway_mac() {
    if !privileged_or_skip("off_link_destination_resolves_to_the_gateway_mac") {
        return;
    }
    let p = pair(22);
    p.a.ip(&["route", "add", "198.19.22.0/24", "via", "198.18.22.2"])
        .unwrap();
    let want = peer_mac(&p);
    let ia = p.ia.clone();
    let (hop, mac, routes) =
        p.a.enter(move || {
            let mut c = NeighbourCache::open(&ia).unwrap();
            let dst: IpAddr = "198.19.22.7".parse().unwrap();
            let hop = c.next_hop(dst).unwrap();
            let mac = c.resolve(dst, Duration::from_secs(10)).unwrap();
            (hop, mac, c.routes().unwrap())
        })
        .unwrap();
    assert_eq!(hop, "198.18.22.2".parse::<IpAddr>().unwrap());
    assert_eq!(mac, want);
    let via = routes
        .iter()
        .find(|r| r.dst == "198.19.22.0".parse::<IpAddr>().unwrap())
        .expect("gateway route listed");
    assert_eq!(via.prefix_len, 24);
    assert_eq!(via.gateway, Some(hop));
}

#[test]
fn address_nobody_answers_for_is_reported_unresolvable() {
    if !privileged_or_skip("address_nobody_answers_for_is_reported_unresolvable") {
        return;
    }
    let p = pair(23);
    let ia = p.ia.clone();
    let r =
        p.a.enter(move || {
            let mut c = NeighbourCache::open(&ia).unwrap();
            c.resolve("198.18.23.99".parse().unwrap(), Duration::from_millis(1500))
        })
        .unwrap();
    match r {
        Err(NeighbourError::Unresolvable {
            next_hop, waited, ..
        }) => {
            assert_eq!(next_hop, "198.18.23.99".parse::<IpAddr>().unwrap());
            assert!(waited >= Duration::from_millis(1500));
        }
        other => panic!("expected Unresolvable, got {other:?}"),
    }
}

#[test]
fn destination_without_route_is_reported_as_such() {
    if !privileged_or_skip("destination_without_route_is_reported_as_such") {
        return;
    }
    let p = pair(24);
    let ia = p.ia.clone();
    let r =
        p.a.enter(move || {
            let mut c = NeighbourCache::open(&ia).unwrap();
            // Only looked up in the kernel's table: nothing is sent.
            c.resolve("198.19.99.1".parse().unwrap(), Duration::from_secs(1))
        })
        .unwrap();
    assert!(matches!(r, Err(NeighbourError::NoRoute { .. })), "{r:?}");
}

#[test]
fn unknown_interface_is_refused_by_name() {
    if !privileged_or_skip("unknown_interface_is_refused_by_name") {
        return;
    }
    let ns = Netns::create("dnc").unwrap();
    let r = ns
        .enter(|| NeighbourCache::open("nosuchif0").map(|_| ()))
        .unwrap();
    match r {
        Err(e @ NeighbourError::NoInterface(_)) => assert!(e.to_string().contains("nosuchif0")),
        other => panic!("expected NoInterface, got {other:?}"),
    }
}

#[test]
fn stale_neighbour_is_confirmed_again_when_kicked() {
    if !privileged_or_skip("stale_neighbour_is_confirmed_again_when_kicked") {
        return;
    }
    // The neighbour thread kicks STALE next hops the workers use, since
    // AF_XDP frames never confirm them in the kernel; this is that kick.
    let p = pair(25);
    let mac = peer_mac(&p);
    p.a.ip(&[
        "neigh",
        "replace",
        "198.18.25.2",
        "lladdr",
        &mac.to_string(),
        "nud",
        "stale",
        "dev",
        &p.ia,
    ])
    .unwrap();
    let state = |p: &Pair| {
        p.a.run("ip", &["neigh", "show", "198.18.25.2", "dev", &p.ia])
            .unwrap()
    };
    assert!(state(&p).contains("STALE"), "{}", state(&p));
    let ia = p.ia.clone();
    p.a.enter(move || {
        NeighbourCache::open(&ia)
            .unwrap()
            .trigger("198.18.25.2".parse().unwrap())
            .unwrap()
    })
    .unwrap();
    // DELAY, then a unicast probe the peer answers: REACHABLE (the delay is
    // delay_first_probe_time, 5 s by default).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s = state(&p);
        if s.contains("REACHABLE") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {s}");
        assert!(!s.contains("STALE"), "kick did not move the entry: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
