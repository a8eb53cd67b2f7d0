//! A worker's own next-hop table (AF_XDP mode): the interface's routes and
//! the MACs of next hops, filled by updates from the neighbour service and
//! read without locks on the hot path. A next hop with no MAC yet is asked
//! for once per retry interval through the worker's request ring.
//!
//! MACs come only from the kernel's neighbour table (ARP and neighbour
//! discovery), never from the frames received: a frame's source MAC is
//! whatever its sender wrote, and a host on the link that sent one frame
//! in a caller's name would otherwise receive that caller's answers. A
//! datagram for a next hop being resolved waits in [`Parking`] (as the
//! kernel queues a packet on an unresolved neighbour) instead of being
//! dropped, so the first answer to a new caller still goes out.

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

    /// The MAC of `hop` if the kernel resolved it; asks nothing.
    pub(crate) fn resolved(&self, hop: IpAddr) -> Option<MacAddr> {
        match self.entries.get(&hop) {
            Some(Entry::Resolved(mac)) => Some(*mac),
            _ => None,
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

/// Datagrams written and waiting for their next hop's MAC: at most
/// `capacity` (memory taken at start), each for at most `timeout`.
pub(crate) struct Parking<T> {
    waiting: Vec<(T, IpAddr, Timestamp)>,
    capacity: usize,
    timeout: Duration,
}

impl<T: Copy> Parking<T> {
    pub(crate) fn new(capacity: usize, timeout: Duration) -> Self {
        Parking {
            waiting: Vec::with_capacity(capacity),
            capacity,
            timeout,
        }
    }

    /// True when one more datagram can wait.
    pub(crate) fn has_room(&self) -> bool {
        self.waiting.len() < self.capacity
    }

    /// Parks `item` until `hop` resolves; false (nothing kept) when full.
    pub(crate) fn park(&mut self, item: T, hop: IpAddr, now: Timestamp) -> bool {
        if !self.has_room() {
            return false;
        }
        self.waiting.push((item, hop, now));
        true
    }

    /// Hands every waiting datagram to `expire`.
    pub(crate) fn drain(&mut self, expire: impl FnMut(T)) {
        self.waiting
            .drain(..)
            .map(|(item, _, _)| item)
            .for_each(expire);
    }

    /// How many datagrams wait.
    pub(crate) fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Hands each datagram whose next hop `table` has resolved to `send`
    /// with its MAC, and each that waited `timeout` to `expire`; keeps the
    /// rest, in order.
    pub(crate) fn release(
        &mut self,
        table: &NextHopTable,
        now: Timestamp,
        mut send: impl FnMut(T, MacAddr),
        mut expire: impl FnMut(T),
    ) {
        let timeout = self.timeout;
        self.waiting.retain(|&(item, hop, since)| {
            if let Some(mac) = table.resolved(hop) {
                send(item, mac);
                false
            } else if now.saturating_since(since) >= timeout {
                expire(item);
                false
            } else {
                true
            }
        });
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
    fn a_parked_datagram_leaves_with_the_kernels_mac_once_resolved() {
        let (mut t, _rx) = table();
        let caller: IpAddr = "198.18.0.2".parse().unwrap();
        let t0 = Timestamp::from_nanos(0);
        assert_eq!(t.lookup(caller, t0), NextHop::NoNeighbour(caller));
        let mut p = Parking::new(2, Duration::from_secs(1));
        assert!(p.park(7u32, caller, t0));
        let (mut sent, mut expired) = (vec![], vec![]);
        let t1 = t0.plus(Duration::from_millis(5));
        p.release(&t, t1, |i, m| sent.push((i, m)), |i| expired.push(i));
        assert!(sent.is_empty() && expired.is_empty());
        assert_eq!(p.len(), 1);
        let mac = MacAddr([2, 0, 0, 0, 0, 2]);
        t.apply(NeighbourUpdate::Set(caller, mac));
        p.release(&t, t1, |i, m| sent.push((i, m)), |i| expired.push(i));
        assert_eq!(sent, [(7, mac)]);
        assert!(expired.is_empty());
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn a_parked_datagram_expires_and_a_full_parking_refuses() {
        let (t, _rx) = table();
        let hop: IpAddr = "198.18.0.2".parse().unwrap();
        let t0 = Timestamp::from_nanos(0);
        let mut p = Parking::new(2, Duration::from_secs(1));
        assert!(p.park(1u32, hop, t0));
        assert!(p.park(2u32, hop, t0.plus(Duration::from_millis(600))));
        assert!(!p.has_room());
        assert!(!p.park(3u32, hop, t0));
        let (mut sent, mut expired) = (vec![], vec![]);
        let t1 = t0.plus(Duration::from_secs(1));
        p.release(&t, t1, |i, m| sent.push((i, m)), |i| expired.push(i));
        assert!(sent.is_empty());
        assert_eq!(expired, [1]);
        assert_eq!(p.len(), 1);
        p.drain(|i| expired.push(i));
        assert_eq!(expired, [1, 2]);
        assert_eq!(p.len(), 0);
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
