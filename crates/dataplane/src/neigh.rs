//! Next hops from the kernel: routes, neighbours (ARP / NDP entries) and the
//! interface's own MAC and addresses, read over rtnetlink.
//!
//! The kernel keeps ARP and neighbour discovery (the XDP program passes
//! them); userspace only reads its tables. A missing neighbour is resolved,
//! not guessed: [`NeighbourCache::trigger`] sends RTM_NEWNEIGH with the
//! NTF_USE flag, which makes the kernel start resolution for that address
//! exactly as if a packet were waiting for it (`neigh_event_send`), without
//! putting any datagram on the wire ourselves; the entry is then read again
//! until it is usable or a deadline passes.
//!
//! [`NeighbourService`] runs that on its own control-side thread for the
//! AF_XDP workers: it answers their requests, re-reads the tables every
//! refresh interval and publishes changes to each worker's ring.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkMessage, LinkXdp};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use rtrb::{Consumer, Producer, RingBuffer};

use super::config::DataplaneConfig;
pub use super::nexthop::Route;
use super::nexthop::{NeighbourUpdate, NextHopTable};
use wire::frame::MacAddr;

/// Why a next hop could not be found.
#[derive(Debug, thiserror::Error)]
pub enum NeighbourError {
    /// A netlink request failed.
    #[error("rtnetlink {request} failed: {source}")]
    Netlink {
        /// What was asked.
        request: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The kernel's answer could not be decoded.
    #[error("cannot decode the kernel's answer to {request}: {reason}")]
    Decode {
        /// What was asked.
        request: &'static str,
        /// Why.
        reason: String,
    },
    /// No interface has this name.
    #[error("no interface named {0:?}")]
    NoInterface(String),
    /// The interface has no Ethernet MAC address.
    #[error("interface {0:?} has no Ethernet address")]
    NoMac(String),
    /// The kernel has no route to the address, or the route leaves by
    /// another interface.
    #[error("no route to {dst} through {interface}")]
    NoRoute {
        /// The destination.
        dst: IpAddr,
        /// Our interface.
        interface: String,
    },
    /// The kernel could not resolve the next hop in time (no ARP / NDP
    /// answer, or the entry went to FAILED).
    #[error("next hop {next_hop} of {dst} did not resolve within {waited:?}")]
    Unresolvable {
        /// The destination asked about.
        dst: IpAddr,
        /// Its next hop.
        next_hop: IpAddr,
        /// How long we waited.
        waited: Duration,
    },
}

/// The interface's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceInfo {
    /// Its name.
    pub name: String,
    /// Its kernel index.
    pub ifindex: u32,
    /// Its MAC address.
    pub mac: MacAddr,
    /// Its IPv4 and IPv6 addresses.
    pub addrs: Vec<IpAddr>,
}

/// A neighbour entry state we can send to (RFC 4861 7.3.2 states plus Linux's
/// PERMANENT and NOARP): STALE, DELAY and PROBE still hold a usable address,
/// and sending to them is what makes the kernel confirm it.
fn usable(state: NeighbourState) -> bool {
    matches!(
        state,
        NeighbourState::Reachable
            | NeighbourState::Stale
            | NeighbourState::Delay
            | NeighbourState::Probe
            | NeighbourState::Permanent
            | NeighbourState::Noarp
    )
}

/// Synchronous access to the kernel's routes and neighbours for one
/// interface. Control side only: every call is a netlink round trip.
pub struct NeighbourCache {
    socket: Socket,
    seq: u32,
    info: InterfaceInfo,
}

fn family_of(ip: &IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

fn route_addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

impl NeighbourCache {
    /// Opens an rtnetlink socket (in the caller's network namespace) and
    /// reads `interface`'s index, MAC and addresses.
    pub fn open(interface: &str) -> Result<NeighbourCache, NeighbourError> {
        let nl = |source| NeighbourError::Netlink {
            request: "socket",
            source,
        };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(nl)?;
        socket.bind_auto().map_err(nl)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(nl)?;
        let mut cache = NeighbourCache {
            socket,
            seq: 0,
            info: InterfaceInfo {
                name: interface.to_string(),
                ifindex: 0,
                mac: MacAddr::default(),
                addrs: Vec::new(),
            },
        };
        let links = cache.request(
            "RTM_GETLINK dump",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        let link = links
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })
            .find(|l| {
                l.attributes
                    .iter()
                    .any(|a| matches!(a, LinkAttribute::IfName(n) if n == interface))
            })
            .ok_or_else(|| NeighbourError::NoInterface(interface.to_string()))?;
        cache.info.ifindex = link.header.index;
        let mac = link
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Address(b) if b.len() == 6 => {
                    let mut m = [0u8; 6];
                    m.copy_from_slice(b);
                    Some(MacAddr(m))
                }
                _ => None,
            })
            .ok_or_else(|| NeighbourError::NoMac(interface.to_string()))?;
        cache.info.mac = mac;
        let addrs = cache.request(
            "RTM_GETADDR dump",
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
        )?;
        let ifindex = cache.info.ifindex;
        cache.info.addrs = addrs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == ifindex => Some(a),
                _ => None,
            })
            .filter_map(|a| {
                a.attributes.iter().find_map(|attr| match attr {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                })
            })
            .collect();
        Ok(cache)
    }

    /// The interface's name, index, MAC and addresses.
    pub fn interface(&self) -> &InterfaceInfo {
        &self.info
    }

    /// Sends one request and collects the answers until DONE (dumps) or the
    /// ACK / single answer (plain requests).
    fn request(
        &mut self,
        what: &'static str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NeighbourError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        let io = |source| NeighbourError::Netlink {
            request: what,
            source,
        };
        self.socket.send(&buf, 0).map_err(io)?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let ack = flags & NLM_F_ACK != 0;
        let mut out = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full().map_err(io)?;
            let mut at = 0;
            while at < data.len() {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[at..]).map_err(
                    |e| NeighbourError::Decode {
                        request: what,
                        reason: e.to_string(),
                    },
                )?;
                let len = msg.header.length as usize;
                if len == 0 {
                    break;
                }
                at += len;
                if msg.header.sequence_number != seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => match e.code {
                        None => return Ok(out),
                        Some(code) => {
                            return Err(NeighbourError::Netlink {
                                request: what,
                                source: std::io::Error::from_raw_os_error(-code.get()),
                            })
                        }
                    },
                    NetlinkPayload::InnerMessage(m) => {
                        out.push(m);
                        if !dump && !ack {
                            return Ok(out);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// The id of the XDP program attached to the interface now (in any
    /// mode), or `None` when none is: how the appliance notices that its
    /// filter was detached behind its back.
    pub fn xdp_program_id(&mut self) -> Result<Option<u32>, NeighbourError> {
        let links = self.request(
            "RTM_GETLINK dump",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        let ifindex = self.info.ifindex;
        let link = links
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })
            .find(|l| l.header.index == ifindex)
            .ok_or_else(|| NeighbourError::NoInterface(self.info.name.clone()))?;
        Ok(link.attributes.iter().find_map(|a| match a {
            LinkAttribute::Xdp(xdp) => xdp.iter().find_map(|x| match x {
                LinkXdp::ProgId(id) if *id != 0 => Some(*id),
                _ => None,
            }),
            _ => None,
        }))
    }

    /// The interface's unicast routes in the main table, most specific first.
    pub fn routes(&mut self) -> Result<Vec<Route>, NeighbourError> {
        let mut routes = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut msg = RouteMessage::default();
            msg.header.address_family = family;
            let answers = self.request(
                "RTM_GETROUTE dump",
                RouteNetlinkMessage::GetRoute(msg),
                NLM_F_DUMP,
            )?;
            for m in answers {
                let RouteNetlinkMessage::NewRoute(r) = m else {
                    continue;
                };
                if r.header.kind != RouteType::Unicast {
                    continue;
                }
                let mut table = u32::from(r.header.table);
                let mut oif = None;
                let mut dst = None;
                let mut gateway = None;
                for a in &r.attributes {
                    match a {
                        RouteAttribute::Table(t) => table = *t,
                        RouteAttribute::Oif(i) => oif = Some(*i),
                        RouteAttribute::Destination(d) => dst = route_addr(d),
                        RouteAttribute::Gateway(g) => gateway = route_addr(g),
                        _ => {}
                    }
                }
                if table != u32::from(RouteHeader::RT_TABLE_MAIN) || oif != Some(self.info.ifindex)
                {
                    continue;
                }
                let dst = dst.unwrap_or(match family {
                    AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    _ => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                });
                routes.push(Route {
                    dst,
                    prefix_len: r.header.destination_prefix_length,
                    gateway,
                });
            }
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix_len));
        Ok(routes)
    }

    /// The next hop the kernel would use for `dst` (its gateway, or `dst`
    /// itself when on link), asked with RTM_GETROUTE like `ip route get`.
    pub fn next_hop(&mut self, dst: IpAddr) -> Result<IpAddr, NeighbourError> {
        let interface = self.info.name.clone();
        let no_route = || NeighbourError::NoRoute {
            dst,
            interface: interface.clone(),
        };
        let mut msg = RouteMessage::default();
        msg.header.address_family = family_of(&dst);
        msg.header.destination_prefix_length = if dst.is_ipv4() { 32 } else { 128 };
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(dst)));
        let answers = match self.request("RTM_GETROUTE", RouteNetlinkMessage::GetRoute(msg), 0) {
            Ok(a) => a,
            // ENETUNREACH / EHOSTUNREACH: the kernel has no route.
            Err(NeighbourError::Netlink { .. }) => return Err(no_route()),
            Err(e) => return Err(e),
        };
        for m in answers {
            let RouteNetlinkMessage::NewRoute(r) = m else {
                continue;
            };
            let mut oif = None;
            let mut gateway = None;
            for a in &r.attributes {
                match a {
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    RouteAttribute::Gateway(g) => gateway = route_addr(g),
                    _ => {}
                }
            }
            if oif == Some(self.info.ifindex) && r.header.kind == RouteType::Unicast {
                return Ok(gateway.unwrap_or(dst));
            }
        }
        Err(no_route())
    }

    /// Every neighbour entry of the interface with a usable MAC.
    pub fn neighbours(&mut self) -> Result<HashMap<IpAddr, MacAddr>, NeighbourError> {
        Ok(self
            .neighbour_states()?
            .into_iter()
            .map(|(ip, (mac, _))| (ip, mac))
            .collect())
    }

    /// Like [`NeighbourCache::neighbours`], with each entry's state.
    fn neighbour_states(
        &mut self,
    ) -> Result<HashMap<IpAddr, (MacAddr, NeighbourState)>, NeighbourError> {
        let mut out = HashMap::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut msg = NeighbourMessage::default();
            msg.header.family = family;
            let answers = self.request(
                "RTM_GETNEIGH dump",
                RouteNetlinkMessage::GetNeighbour(msg),
                NLM_F_DUMP,
            )?;
            for m in answers {
                let RouteNetlinkMessage::NewNeighbour(n) = m else {
                    continue;
                };
                if n.header.ifindex != self.info.ifindex || !usable(n.header.state) {
                    continue;
                }
                let mut ip = None;
                let mut mac = None;
                for a in &n.attributes {
                    match a {
                        NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                            ip = Some(IpAddr::V4(*v4))
                        }
                        NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                            ip = Some(IpAddr::V6(*v6))
                        }
                        NeighbourAttribute::LinkLocalAddress(b) if b.len() == 6 => {
                            let mut m = [0u8; 6];
                            m.copy_from_slice(b);
                            mac = Some(MacAddr(m));
                        }
                        _ => {}
                    }
                }
                if let (Some(ip), Some(mac)) = (ip, mac) {
                    out.insert(ip, (mac, n.header.state));
                }
            }
        }
        Ok(out)
    }

    /// The usable MAC of neighbour `ip`, if the kernel has one.
    pub fn neighbour(&mut self, ip: IpAddr) -> Result<Option<MacAddr>, NeighbourError> {
        Ok(self.neighbours()?.get(&ip).copied())
    }

    /// Makes the kernel start resolving `next_hop` (RTM_NEWNEIGH with
    /// NTF_USE, as if a packet were queued for it). Returns at once.
    pub fn trigger(&mut self, next_hop: IpAddr) -> Result<(), NeighbourError> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = family_of(&next_hop);
        msg.header.ifindex = self.info.ifindex;
        msg.header.flags = NeighbourFlags::Use;
        // NTF_USE only kicks the state machine; the state given here is
        // not applied to an existing entry.
        msg.header.state = NeighbourState::Incomplete;
        let addr = match next_hop {
            IpAddr::V4(v4) => NeighbourAddress::Inet(v4),
            IpAddr::V6(v6) => NeighbourAddress::Inet6(v6),
        };
        msg.attributes.push(NeighbourAttribute::Destination(addr));
        self.request(
            "RTM_NEWNEIGH (NTF_USE)",
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_CREATE | NLM_F_ACK,
        )?;
        Ok(())
    }

    /// The MAC to send `dst`'s frames to: finds the route, then the next
    /// hop's neighbour entry, resolving it if missing; waits at most
    /// `timeout`.
    pub fn resolve(&mut self, dst: IpAddr, timeout: Duration) -> Result<MacAddr, NeighbourError> {
        let hop = self.next_hop(dst)?;
        if let Some(mac) = self.neighbour(hop)? {
            return Ok(mac);
        }
        let start = Instant::now();
        self.trigger(hop)?;
        loop {
            std::thread::sleep(Duration::from_millis(10));
            if let Some(mac) = self.neighbour(hop)? {
                return Ok(mac);
            }
            if start.elapsed() >= timeout {
                return Err(NeighbourError::Unresolvable {
                    dst,
                    next_hop: hop,
                    waited: start.elapsed(),
                });
            }
        }
    }
}

/// Figures of the neighbour service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NeighbourStats {
    /// Next hops the workers asked for.
    pub requests: u64,
    /// Resolutions started in the kernel.
    pub triggered: u64,
    /// Next hops that resolved after a request.
    pub resolved: u64,
    /// Next hops that did not resolve in time.
    pub unresolvable: u64,
    /// Updates that found a worker's ring full (that worker is resynced).
    pub updates_lost: u64,
    /// Table reads that failed (kept the last good state).
    pub read_errors: u64,
}

#[derive(Default)]
struct SharedStats {
    requests: AtomicU64,
    triggered: AtomicU64,
    resolved: AtomicU64,
    unresolvable: AtomicU64,
    updates_lost: AtomicU64,
    read_errors: AtomicU64,
}

struct WorkerLink {
    updates: Producer<NeighbourUpdate>,
    requests: Consumer<IpAddr>,
    resync: bool,
}

/// The control-side neighbour upkeep for the AF_XDP workers: one thread that
/// owns a [`NeighbourCache`], answers the workers' requests and publishes
/// route and neighbour changes to every worker's ring.
pub struct NeighbourService {
    cache: Option<NeighbourCache>,
    links: Vec<WorkerLink>,
    routes: Vec<Route>,
    neighbours: HashMap<IpAddr, MacAddr>,
    refresh: Duration,
    timeout: Duration,
    stop: Arc<AtomicBool>,
    stats: Arc<SharedStats>,
    thread: Option<JoinHandle<()>>,
}

impl NeighbourService {
    /// Opens the cache for `config.interface` and reads the tables once.
    pub fn start(config: &DataplaneConfig) -> Result<NeighbourService, NeighbourError> {
        let mut cache = NeighbourCache::open(&config.interface)?;
        let routes = cache.routes()?;
        let neighbours = cache.neighbours()?;
        Ok(NeighbourService {
            cache: Some(cache),
            links: Vec::new(),
            routes,
            neighbours,
            refresh: Duration::from_millis(config.neighbour.refresh_ms),
            timeout: Duration::from_millis(config.neighbour.resolve_timeout_ms),
            stop: Arc::new(AtomicBool::new(false)),
            stats: Arc::new(SharedStats::default()),
            thread: None,
        })
    }

    /// The interface this service reads.
    pub fn interface(&self) -> Option<&InterfaceInfo> {
        self.cache.as_ref().map(NeighbourCache::interface)
    }

    /// Adds a worker: returns its table (seeded with the current routes and
    /// neighbours), its update ring and the producer it asks through.
    pub(crate) fn add_worker(
        &mut self,
        config: &DataplaneConfig,
    ) -> (NextHopTable, Consumer<NeighbourUpdate>) {
        let ring = config.neighbour.capacity + 64;
        let (updates_tx, updates_rx) = RingBuffer::new(ring);
        let (requests_tx, requests_rx) = RingBuffer::new(1024);
        let mut table = NextHopTable::new(
            config.neighbour.capacity,
            Duration::from_millis(config.neighbour.retry_ms),
            requests_tx,
        );
        table.apply(NeighbourUpdate::Routes(self.routes.clone().into()));
        for (ip, mac) in &self.neighbours {
            table.apply(NeighbourUpdate::Set(*ip, *mac));
        }
        self.links.push(WorkerLink {
            updates: updates_tx,
            requests: requests_rx,
            resync: false,
        });
        (table, updates_rx)
    }

    /// Starts the upkeep thread.
    pub(crate) fn run(&mut self) -> std::io::Result<()> {
        let mut state = Upkeep {
            cache: self.cache.take().expect("run once"),
            links: std::mem::take(&mut self.links),
            routes: std::mem::take(&mut self.routes),
            neighbours: std::mem::take(&mut self.neighbours),
            pending: HashMap::new(),
            wanted: HashSet::new(),
            refresh: self.refresh,
            timeout: self.timeout,
            stats: self.stats.clone(),
        };
        let stop = self.stop.clone();
        self.thread = Some(std::thread::Builder::new().name("dce-neigh".into()).spawn(
            move || {
                let mut last_refresh = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    state.step(&mut last_refresh);
                    std::thread::sleep(Duration::from_millis(5));
                }
            },
        )?);
        Ok(())
    }

    /// The service's figures.
    pub fn stats(&self) -> NeighbourStats {
        let s = &self.stats;
        NeighbourStats {
            requests: s.requests.load(Ordering::Relaxed),
            triggered: s.triggered.load(Ordering::Relaxed),
            resolved: s.resolved.load(Ordering::Relaxed),
            unresolvable: s.unresolvable.load(Ordering::Relaxed),
            updates_lost: s.updates_lost.load(Ordering::Relaxed),
            read_errors: s.read_errors.load(Ordering::Relaxed),
        }
    }

    /// Ends the upkeep thread.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for NeighbourService {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// The upkeep thread's state.
struct Upkeep {
    cache: NeighbourCache,
    links: Vec<WorkerLink>,
    routes: Vec<Route>,
    neighbours: HashMap<IpAddr, MacAddr>,
    /// Next hops being resolved, with their deadlines.
    pending: HashMap<IpAddr, Instant>,
    /// Next hops the workers have asked for: kept confirmed.
    wanted: HashSet<IpAddr>,
    refresh: Duration,
    timeout: Duration,
    stats: Arc<SharedStats>,
}

impl Upkeep {
    fn publish(&mut self, update: &NeighbourUpdate) {
        for link in &mut self.links {
            if !link.resync && link.updates.push(update.clone()).is_err() {
                link.resync = true;
                self.stats.updates_lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn step(&mut self, last_refresh: &mut Instant) {
        let mut asked = HashSet::new();
        for link in &mut self.links {
            while let Ok(ip) = link.requests.pop() {
                asked.insert(ip);
            }
        }
        let now = Instant::now();
        for ip in asked {
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            self.wanted.insert(ip);
            if let Some(mac) = self.neighbours.get(&ip).copied() {
                // Known here but the worker missed it (lost update): resend.
                self.publish(&NeighbourUpdate::Set(ip, mac));
                continue;
            }
            if self.pending.contains_key(&ip) {
                continue;
            }
            if self.cache.trigger(ip).is_ok() {
                self.stats.triggered.fetch_add(1, Ordering::Relaxed);
            }
            self.pending.insert(ip, now + self.timeout);
        }
        let refresh_due = now.duration_since(*last_refresh) >= self.refresh;
        if self.pending.is_empty() && !refresh_due && !self.links.iter().any(|l| l.resync) {
            return;
        }
        match self.cache.neighbour_states() {
            Ok(states) => {
                // Our frames bypass the kernel's neighbour code, so nothing
                // confirms the entries we use: a STALE one the workers need
                // is kicked (NTF_USE), which makes the kernel probe it
                // (DELAY, PROBE, REACHABLE) before it could be collected.
                if refresh_due {
                    for (ip, (_, state)) in &states {
                        if *state == NeighbourState::Stale && self.wanted.contains(ip) {
                            let _ = self.cache.trigger(*ip);
                        }
                    }
                }
                let current: HashMap<IpAddr, MacAddr> =
                    states.into_iter().map(|(ip, (mac, _))| (ip, mac)).collect();
                let gone: Vec<IpAddr> = self
                    .neighbours
                    .keys()
                    .filter(|ip| !current.contains_key(ip))
                    .copied()
                    .collect();
                for ip in gone {
                    self.neighbours.remove(&ip);
                    self.publish(&NeighbourUpdate::Remove(ip));
                }
                for (ip, mac) in &current {
                    if self.neighbours.get(ip) != Some(mac) {
                        self.neighbours.insert(*ip, *mac);
                        let update = NeighbourUpdate::Set(*ip, *mac);
                        self.publish(&update);
                    }
                    if self.pending.remove(ip).is_some() {
                        self.stats.resolved.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Err(_) => {
                self.stats.read_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        let before = self.pending.len();
        self.pending.retain(|_, deadline| *deadline > now);
        let expired = (before - self.pending.len()) as u64;
        self.stats
            .unresolvable
            .fetch_add(expired, Ordering::Relaxed);
        if refresh_due {
            *last_refresh = now;
            match self.cache.routes() {
                Ok(routes) if routes != self.routes => {
                    self.routes = routes;
                    let update = NeighbourUpdate::Routes(self.routes.clone().into());
                    self.publish(&update);
                }
                Ok(_) => {}
                Err(_) => {
                    self.stats.read_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        for link in &mut self.links {
            if !link.resync {
                continue;
            }
            // Full state; only clear the flag when all of it went through.
            let mut ok = link
                .updates
                .push(NeighbourUpdate::Routes(self.routes.clone().into()))
                .is_ok();
            for (ip, mac) in &self.neighbours {
                ok = ok && link.updates.push(NeighbourUpdate::Set(*ip, *mac)).is_ok();
            }
            link.resync = !ok;
        }
    }
}

/// What `dce-edge neighbours` prints: the interface, its routes and
/// neighbours as the dataplane reads them, and, when asked, the resolution
/// of one destination (which may trigger ARP / NDP for its next hop).
pub fn report(
    interface: &str,
    resolve: Option<IpAddr>,
    timeout: Duration,
) -> Result<String, NeighbourError> {
    use std::fmt::Write;
    let mut cache = NeighbourCache::open(interface)?;
    let info = cache.interface().clone();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "interface {} (index {}) mac {}",
        info.name, info.ifindex, info.mac
    );
    for a in &info.addrs {
        let _ = writeln!(out, "  address {a}");
    }
    for r in cache.routes()? {
        match r.gateway {
            Some(g) => {
                let _ = writeln!(out, "route {}/{} via {g}", r.dst, r.prefix_len);
            }
            None => {
                let _ = writeln!(out, "route {}/{} on link", r.dst, r.prefix_len);
            }
        }
    }
    let mut neighbours: Vec<_> = cache.neighbours()?.into_iter().collect();
    neighbours.sort();
    for (ip, mac) in neighbours {
        let _ = writeln!(out, "neighbour {ip} at {mac}");
    }
    if let Some(dst) = resolve {
        let hop = cache.next_hop(dst)?;
        let mac = cache.resolve(dst, timeout)?;
        let _ = writeln!(out, "{dst} goes to next hop {hop} at {mac}");
    }
    Ok(out)
}
