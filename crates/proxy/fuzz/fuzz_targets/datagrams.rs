//! Feeds the proxy a sequence of datagrams cut from the input (each: a
//! source chosen by one byte, a time step, then bytes up to a 0xff 0x00
//! separator) and checks what its property tests check, on everything the
//! fuzzer finds: nothing panics, a refused datagram moves exactly one drop
//! counter and sends nothing, and what an untrusted source provokes goes
//! only to a route target or back to that source.
#![no_main]

use std::net::{IpAddr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use proxy::cookie::Secret;
use proxy::handler::{Datagram, OutboxBuffer, Timestamp};
use proxy::{EdgeProxy, ProxyConfig};
use route::trie::PrefixKey;
use route::{Action, GroupId, HealthSettings, RouteControl, RouteGroup, RouteTable, Target};

const EDGE: ([u8; 4], u16) = ([198, 18, 0, 1], 5060);
const TARGETS: [([u8; 4], u16); 2] = [([198, 18, 0, 100], 5060), ([198, 18, 0, 101], 5060)];

fn table() -> RouteTable {
    let t = |(ip, port): ([u8; 4], u16)| SocketAddr::new(IpAddr::from(ip), port);
    let p = |s: &str| PrefixKey::from_digits(s.as_bytes()).unwrap();
    let groups = vec![
        RouteGroup::new("uk", Action::Forward)
            .with_target(Target::new(t(TARGETS[0]), 1, 1))
            .with_target(Target::new(t(TARGETS[1]), 2, 1)),
        RouteGroup::new("blocked", Action::Reject { code: 403 }),
        RouteGroup::new("moved", Action::Redirect).with_target(Target::new(
            t(([198, 18, 0, 102], 5060)),
            1,
            1,
        )),
    ];
    let prefixes = vec![
        (p("44"), GroupId(0)),
        (p("4490"), GroupId(1)),
        (p("4480"), GroupId(2)),
    ];
    RouteTable::build(groups, &prefixes, HealthSettings::default()).unwrap()
}

fn source(b: u8) -> SocketAddr {
    match b % 4 {
        0 => SocketAddr::new(IpAddr::from([198, 18, 0, 10 + (b >> 2) % 8]), 5060),
        1 => SocketAddr::new(IpAddr::from([198, 19, 5, b]), 5070),
        2 => SocketAddr::new(IpAddr::from([0x2001, 0xdb8, 1, 2, 0, 0, 0, b as u16]), 5060),
        // An upstream: trusted, so what it sends may go anywhere.
        _ => SocketAddr::new(IpAddr::from(TARGETS[(b >> 2) as usize % 2].0), 5060),
    }
}

fuzz_target!(|data: &[u8]| {
    let (_control, mut workers) = RouteControl::new(table(), 1);
    let edge = SocketAddr::new(IpAddr::from(EDGE.0), EDGE.1);
    let mut p = EdgeProxy::new(ProxyConfig::new(edge, Secret::new(1, 2)), workers.remove(0));
    let mut buf = OutboxBuffer::new(8, 4096);
    let mut now = 1_000_000_000u64;
    for chunk in data.split(|&b| b == 0xff).take(64) {
        let [who, step, payload @ ..] = chunk else {
            continue;
        };
        let src = source(*who);
        now += u64::from(*step) * 1_000_000;
        let before = p.snapshot();
        buf.clear();
        let r = p.handle_datagram(
            Timestamp::from_nanos(now),
            &Datagram::udp(src, edge, payload),
            &mut buf.outbox(),
        );
        let after = p.snapshot();
        let dropped = |s: &proxy::ProxyStats| s.dropped.values().sum::<u64>();
        match r {
            Err(_) => {
                assert_eq!(dropped(&after), dropped(&before) + 1);
                assert!(buf.is_empty());
            }
            Ok(()) => assert_eq!(dropped(&after), dropped(&before)),
        }
        let trusted = TARGETS.iter().any(|(ip, _)| IpAddr::from(*ip) == src.ip());
        if !trusted {
            for (dst, _) in buf.datagrams() {
                let to_target = TARGETS
                    .iter()
                    .any(|(ip, port)| SocketAddr::new(IpAddr::from(*ip), *port) == dst);
                assert!(
                    to_target || dst.ip() == src.ip(),
                    "{src} made the edge send to {dst}"
                );
            }
        }
    }
});
