//! The lab network: hosts in their own namespaces on one LAN, joined by a
//! bridge in a namespace of its own (DESIGN.md's one-armed appliance: one
//! interface carries callers and upstreams alike).
//!
//! ```text
//!   callers ─┐
//!  upstream ─┼── br (bridge namespace) ── edge
//!  attacker ─┘
//! ```
//!
//! Addresses come from 198.18.0.0/15: the LAN is 198.18.0.0/24, and
//! spoofed flood sources live in 198.19.0.0/16, routed from every host to
//! the attacker, so anything the edge sends to a spoofed source lands on the
//! attacker's interface, where it can be counted (a reflector shows there).

use std::io;
use std::net::Ipv4Addr;

use super::netns::{unique_name, Netns};

/// The lab LAN.
pub const LAN_PREFIX: &str = "198.18.0.0/24";
/// Where spoofed flood sources come from; routed to the attacker.
pub const SPOOF_PREFIX: &str = "198.19.0.0/16";
/// The edge's address on the LAN.
pub const EDGE_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The first caller address; callers get consecutive addresses.
pub const FIRST_CALLER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
/// The first upstream address; upstreams get consecutive addresses.
pub const FIRST_UPSTREAM: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
/// The attacker's own address; it holds [`ATTACKER_ADDRS`] consecutive ones.
pub const ATTACKER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 200);
/// How many addresses the attacker holds.
pub const ATTACKER_ADDRS: usize = 4;

/// What to build.
#[derive(Debug, Clone)]
pub struct LabSpec {
    /// Source addresses the callers' namespace holds (at least 1).
    pub caller_addrs: usize,
    /// Upstream servers, each in its own namespace (at least 1).
    pub upstreams: usize,
    /// Whether to build the attacker namespace.
    pub attacker: bool,
    /// RX and TX queues of the edge's veth pair (1 to 8): an AF_XDP edge
    /// runs one worker per queue. Every other host keeps one queue.
    pub edge_queues: u32,
}

impl Default for LabSpec {
    fn default() -> Self {
        LabSpec {
            caller_addrs: 16,
            upstreams: 2,
            attacker: true,
            edge_queues: 1,
        }
    }
}

/// One host of the lab: a namespace with one interface on the LAN.
#[derive(Debug)]
pub struct Host {
    /// The host's namespace (removed on drop, which removes its veth).
    pub ns: Netns,
    /// The host's interface name inside its namespace.
    pub iface: String,
    /// The host's addresses on the LAN; the first is its main one.
    pub addrs: Vec<Ipv4Addr>,
    /// The other end of its veth: its port on the bridge, in the bridge
    /// namespace (where a capture sees its traffic as the wire would).
    pub port: String,
}

impl Host {
    /// The host's main address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addrs[0]
    }
}

/// A built lab; dropping it removes every namespace and link it made.
#[derive(Debug)]
pub struct Lab {
    /// The edge's host.
    pub edge: Host,
    /// The callers' host (all caller addresses).
    pub callers: Host,
    /// The upstream servers.
    pub upstreams: Vec<Host>,
    /// The attacker, when asked for.
    pub attacker: Option<Host>,
    /// RX and TX queues of the edge's veth.
    pub edge_queues: u32,
    // Dropped last: the hosts' veths go with their own namespaces first.
    bridge: Netns,
}

fn add_host(bridge: &Netns, prefix: &str, addrs: Vec<Ipv4Addr>, queues: u32) -> io::Result<Host> {
    let ns = Netns::create(prefix)?;
    let iface = unique_name("h");
    let port = unique_name("p");
    // One queue each way unless asked: an AF_XDP socket binds one queue,
    // and an unbound queue would pass traffic around it (PLATFORM.md).
    super::netns::veth_pair_queues(&ns, &iface, bridge, &port, queues)?;
    bridge.ip(&["link", "set", &port, "master", "br0"])?;
    bridge.ip(&["link", "set", &port, "up"])?;
    for (i, a) in addrs.iter().enumerate() {
        let cidr = format!("{a}/24");
        if i == 0 {
            ns.addr_up(&iface, &cidr)?;
        } else {
            ns.ip(&["addr", "add", &cidr, "dev", &iface])?;
        }
    }
    Ok(Host {
        ns,
        iface,
        addrs,
        port,
    })
}

fn offset(base: Ipv4Addr, n: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(base) + n as u32)
}

impl Lab {
    /// Builds the lab. On any failure, what was built so far is removed.
    pub fn build(spec: &LabSpec) -> io::Result<Lab> {
        let callers = spec.caller_addrs.clamp(1, 80);
        let upstreams = spec.upstreams.clamp(1, 90);
        let bridge = Netns::create("lbr")?;
        bridge.ip(&["link", "add", "br0", "type", "bridge"])?;
        bridge.ip(&["link", "set", "br0", "up"])?;
        let edge_queues = spec.edge_queues.clamp(1, 8);
        let edge = add_host(&bridge, "ledge", vec![EDGE_ADDR], edge_queues)?;
        let callers = add_host(
            &bridge,
            "lcall",
            (0..callers).map(|i| offset(FIRST_CALLER, i)).collect(),
            1,
        )?;
        let upstreams = (0..upstreams)
            .map(|i| add_host(&bridge, "lup", vec![offset(FIRST_UPSTREAM, i)], 1))
            .collect::<io::Result<Vec<_>>>()?;
        // The attacker holds a few addresses, so that each attack can come
        // from a source of its own (and be banned on its own).
        let attacker = if spec.attacker {
            Some(add_host(
                &bridge,
                "latk",
                (0..ATTACKER_ADDRS)
                    .map(|i| offset(ATTACKER_ADDR, i))
                    .collect(),
                1,
            )?)
        } else {
            None
        };
        let lab = Lab {
            edge,
            callers,
            upstreams,
            attacker,
            edge_queues,
            bridge,
        };
        if let Some(att) = &lab.attacker {
            // Whatever the edge (or anyone) sends to a spoofed source goes
            // to the attacker, which accepts the whole range locally.
            let via = ATTACKER_ADDR.to_string();
            for host in lab.hosts().filter(|h| h.addr() != ATTACKER_ADDR) {
                host.ns.ip(&["route", "add", SPOOF_PREFIX, "via", &via])?;
            }
            att.ns
                .ip(&["route", "add", "local", SPOOF_PREFIX, "dev", "lo"])?;
        }
        Ok(lab)
    }

    /// Every host of the lab (not the bridge).
    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        std::iter::once(&self.edge)
            .chain(std::iter::once(&self.callers))
            .chain(&self.upstreams)
            .chain(&self.attacker)
    }

    /// The bridge namespace.
    pub fn bridge(&self) -> &Netns {
        &self.bridge
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_host_reaches_the_edge_and_spoofed_replies_reach_the_attacker() {
        if !crate::privilege::privileged_or_skip(
            "every_host_reaches_the_edge_and_spoofed_replies_reach_the_attacker",
        ) {
            return;
        }
        let lab = Lab::build(&LabSpec {
            caller_addrs: 3,
            upstreams: 2,
            attacker: true,
            edge_queues: 1,
        })
        .unwrap();
        let server = lab
            .edge
            .ns
            .enter(|| std::net::UdpSocket::bind((EDGE_ADDR, 0)).unwrap())
            .unwrap();
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let port = server.local_addr().unwrap().port();
        for host in lab.hosts().filter(|h| h.addr() != EDGE_ADDR) {
            for &a in &host.addrs {
                host.ns
                    .enter(move || {
                        let s = std::net::UdpSocket::bind((a, 0)).unwrap();
                        s.send_to(b"ping", (EDGE_ADDR, port)).unwrap();
                    })
                    .unwrap();
                let mut buf = [0u8; 8];
                let (_, from) = server.recv_from(&mut buf).unwrap();
                assert_eq!(from.ip(), std::net::IpAddr::V4(a));
            }
        }
        // A datagram from the edge to a spoofed source arrives at the attacker.
        let att = lab.attacker.as_ref().unwrap();
        let sink = att
            .ns
            .enter(|| std::net::UdpSocket::bind("198.19.7.7:0").unwrap())
            .unwrap();
        sink.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let sink_port = sink.local_addr().unwrap().port();
        lab.edge
            .ns
            .enter(move || {
                server
                    .send_to(b"reflect", ("198.19.7.7", sink_port))
                    .unwrap()
            })
            .unwrap();
        let mut buf = [0u8; 16];
        let (n, _) = sink.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"reflect");
    }
}
