//! A worker's own next-hop table (AF_XDP mode): the interface's routes and
//! the MACs of next hops, filled by updates from the neighbour service and
//! read without locks on the hot path. A next hop with no MAC yet is asked
//! for once per retry interval through the worker's request ring.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use rtrb::Producer;

use super::Timestamp;
use wire::frame::MacAddr;

/// One route of the interface: `dst`/`prefix_len` via `gateway`, or on link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    /// Network address.
    pub dst: IpAddr,
    /// Prefix length.
    pub prefix_len: u8,
    /// The gateway; `None` for an on-link (directly connected) route.
    pub gateway: Option<IpAddr>,
}

/// What the neighbour service tells a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NeighbourUpdate {
    /// The interface's routes, most specific first; replaces the old set.
    Routes(Box<[Route]>),
    /// `ip` (a next hop) is reachable at `mac`.
    Set(IpAddr, MacAddr),
    /// `ip` is no longer usable (entry gone or failed).
    Remove(IpAddr),
}

#[derive(Debug, Clone, Copy)]
enum Entry {
    Resolved(MacAddr),
    /// Asked the neighbour service at this time; not resolved yet.
    Asked(Timestamp),
}

/// The outcome of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NextHop {
    /// Send to this MAC.
    Mac(MacAddr),
    /// No route covers the destination.
    NoRoute,
    /// The next hop (this address) is not resolved yet.
    NoNeighbour(IpAddr),
    /// Resolution is wanted but the request ring is full.
    RequestLost(IpAddr),
}

/// Routes and neighbours as one worker sees them.
pub(crate) struct NextHopTable {
    routes: Box<[Route]>,
    entries: HashMap<IpAddr, Entry>,
    capacity: usize,
    retry: Duration,
    requests: Producer<IpAddr>,
}

/// True when `addr` lies in `net`/`len`.
pub(crate) fn prefix_contains(net: IpAddr, len: u8, addr: IpAddr) -> bool {
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let len = u32::from(len.min(32));
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let len = u32::from(len.min(128));
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

impl NextHopTable {
    /// An empty table holding up to `capacity` next hops; memory for all of
    /// them is taken now, so updates in steady state do not allocate.
    pub(crate) fn new(capacity: usize, retry: Duration, requests: Producer<IpAddr>) -> Self {
        NextHopTable {
            routes: Box::new([]),
            entries: HashMap::with_capacity(capacity),
            capacity,
            retry,
            requests,
        }
    }

    /// Applies one update from the neighbour service.
    pub(crate) fn apply(&mut self, update: NeighbourUpdate) {
        match update {
            NeighbourUpdate::Routes(mut routes) => {
                routes.sort_unstable_by_key(|r| std::cmp::Reverse(r.prefix_len));
                self.routes = routes;
            }
            NeighbourUpdate::Set(ip, mac) => {
                if self.entries.len() < self.capacity || self.entries.contains_key(&ip) {
                    self.entries.insert(ip, Entry::Resolved(mac));
                }
            }
            NeighbourUpdate::Remove(ip) => {
                self.entries.remove(&ip);
            }
        }
    }

    /// Learns the MAC of an on-link source from a frame it sent, when the
    /// table has none for it yet (unknown, or asked and not answered). The
    /// first answer to a new caller then goes out at once instead of being
    /// dropped while the kernel resolves it (SIP would retransmit after
    /// 500 ms). A MAC the kernel resolved is never replaced from a frame, and
    /// the neighbour service's next update overrides what was learned.
    pub(crate) fn learn(&mut self, src: IpAddr, mac: MacAddr) {
        if self.next_hop_ip(src) != Some(src) {
            return;
        }
        match self.entries.get(&src) {
            Some(Entry::Resolved(_)) => {}
            Some(Entry::Asked(_)) => {
                self.entries.insert(src, Entry::Resolved(mac));
            }
            None if self.entries.len() < self.capacity => {
                self.entries.insert(src, Entry::Resolved(mac));
            }
            None => {}
        }
    }

    /// The route's next hop for `dst`: its gateway, or `dst` itself when on link.
    fn next_hop_ip(&self, dst: IpAddr) -> Option<IpAddr> {
        self.routes
            .iter()
            .find(|r| prefix_contains(r.dst, r.prefix_len, dst))
            .map(|r| r.gateway.unwrap_or(dst))
    }

    /// The MAC to send a frame for `dst` to. A next hop not known yet is
    /// asked for (at most once per retry interval).
    pub(crate) fn lookup(&mut self, dst: IpAddr, now: Timestamp) -> NextHop {
        let Some(hop) = self.next_hop_ip(dst) else {
            return NextHop::NoRoute;
        };
        match self.entries.get(&hop) {
            Some(Entry::Resolved(mac)) => NextHop::Mac(*mac),
            Some(Entry::Asked(at)) if now.saturating_since(*at) < self.retry => {
                NextHop::NoNeighbour(hop)
            }
            _ => {
                if self.requests.push(hop).is_err() {
                    return NextHop::RequestLost(hop);
                }
                if self.entries.len() < self.capacity || self.entries.contains_key(&hop) {
                    self.entries.insert(hop, Entry::Asked(now));
                }
                NextHop::NoNeighbour(hop)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(dst: &str, len: u8, gw: Option<&str>) -> Route {
        Route {
            dst: dst.parse().unwrap(),
            prefix_len: len,
            gateway: gw.map(|g| g.parse().unwrap()),
        }
    }

    fn table() -> (NextHopTable, rtrb::Consumer<IpAddr>) {
        let (tx, rx) = rtrb::RingBuffer::new(4);
        let mut t = NextHopTable::new(8, Duration::from_secs(1), tx);
        t.apply(NeighbourUpdate::Routes(
            vec![
                route("0.0.0.0", 0, Some("198.18.0.1")),
                route("198.18.0.0", 30, None),
            ]
            .into(),
        ));
        (t, rx)
    }

    #[test]
    fn an_on_link_source_is_learned_from_its_frame_but_never_replaces_the_kernel() {
        let (mut t, _rx) = table();
        let t0 = Timestamp::from_nanos(0);
        let caller: IpAddr = "198.18.0.2".parse().unwrap();
        t.learn(caller, MacAddr([2, 0, 0, 0, 0, 10]));
        assert_eq!(
            t.lookup(caller, t0),
            NextHop::Mac(MacAddr([2, 0, 0, 0, 0, 10]))
        );
        // The kernel's answer wins, and a later frame does not change it.
        t.apply(NeighbourUpdate::Set(caller, MacAddr([2, 0, 0, 0, 0, 11])));
        t.learn(caller, MacAddr([2, 0, 0, 0, 0, 12]));
        assert_eq!(
            t.lookup(caller, t0),
            NextHop::Mac(MacAddr([2, 0, 0, 0, 0, 11]))
        );
        // An off-link source teaches nothing: its frames come from a router.
        let far: IpAddr = "203.0.113.7".parse().unwrap();
        t.learn(far, MacAddr([2, 0, 0, 0, 0, 13]));
        assert_ne!(
            t.lookup(far, t0),
            NextHop::Mac(MacAddr([2, 0, 0, 0, 0, 13]))
        );
    }

    #[test]
    fn on_link_destination_resolves_to_its_own_mac() {
        let (mut t, _rx) = table();
        let mac = MacAddr([2, 0, 0, 0, 0, 2]);
        t.apply(NeighbourUpdate::Set("198.18.0.2".parse().unwrap(), mac));
        let now = Timestamp::from_nanos(0);
        assert_eq!(
            t.lookup("198.18.0.2".parse().unwrap(), now),
            NextHop::Mac(mac)
        );
    }

    #[test]
    fn off_link_destination_uses_the_gateway_mac() {
        let (mut t, _rx) = table();
        let gw = MacAddr([2, 0, 0, 0, 0, 1]);
        t.apply(NeighbourUpdate::Set("198.18.0.1".parse().unwrap(), gw));
        let now = Timestamp::from_nanos(0);
        assert_eq!(
            t.lookup("198.19.5.5".parse().unwrap(), now),
            NextHop::Mac(gw)
        );
    }

    #[test]
    fn unknown_next_hop_is_asked_for_once_per_retry_interval() {
        let (mut t, mut rx) = table();
        let dst: IpAddr = "198.18.0.2".parse().unwrap();
        let t0 = Timestamp::from_nanos(0);
        assert_eq!(t.lookup(dst, t0), NextHop::NoNeighbour(dst));
        assert_eq!(
            t.lookup(dst, t0.plus(Duration::from_millis(10))),
            NextHop::NoNeighbour(dst)
        );
        assert_eq!(rx.pop(), Ok(dst));
        assert!(rx.pop().is_err());
        t.lookup(dst, t0.plus(Duration::from_secs(2)));
        assert_eq!(rx.pop(), Ok(dst));
    }

    #[test]
    fn destination_outside_every_route_has_no_route() {
        let (tx, _rx) = rtrb::RingBuffer::new(4);
        let mut t = NextHopTable::new(8, Duration::from_secs(1), tx);
        t.apply(NeighbourUpdate::Routes(
            vec![route("198.18.0.0", 30, None)].into(),
        ));
        let now = Timestamp::from_nanos(0);
        assert_eq!(
            t.lookup("203.0.113.1".parse().unwrap(), now),
            NextHop::NoRoute
        );
        assert_eq!(
            t.lookup("2001:db8::1".parse().unwrap(), now),
            NextHop::NoRoute
        );
    }

    #[test]
    fn prefixes_match_by_their_length() {
        let net: IpAddr = "2001:db8::".parse().unwrap();
        assert!(prefix_contains(net, 32, "2001:db8:1::1".parse().unwrap()));
        assert!(!prefix_contains(net, 48, "2001:db8:1::1".parse().unwrap()));
        assert!(prefix_contains(
            "0.0.0.0".parse().unwrap(),
            0,
            "203.0.113.1".parse().unwrap()
        ));
    }
}
