//! Socket mode: the worker loop over plain UDP sockets, for hosts and
//! interfaces without XDP. Every worker binds its own socket to the same
//! address and port with SO_REUSEPORT (the kernel spreads flows over them),
//! receives batches with recvmmsg, sends batches with sendmmsg, and blocks
//! in mio's poll when idle. Buffers are allocated once, at start.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use sys::{MmsgHeaders, UdpOptions};

use super::config::DataplaneConfig;
use super::counters::{IoKind, WorkerCounters};
use super::handoff::HandoffTx;
use super::io::{local_for, PacketIo, Receiver};
use super::{Datagram, Outbox, Peer, SendError, Timestamp, TxSlots};

/// Most messages per recvmmsg/sendmmsg call; the headers are allocated
/// once per worker.
const CHUNK: usize = 64;
/// Socket buffer size asked for (the kernel caps it at rmem_max/wmem_max).
const SOCKET_BUFFER: usize = 4 << 20;

/// Why socket mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// A socket call failed.
    #[error("cannot {what} UDP socket on {addr}: {source}")]
    Io {
        /// What was attempted.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The kernel's error.
        source: io::Error,
    },
    /// The socket could not be created, configured or bound; the message
    /// says which step failed and for which address.
    #[error("{source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The kernel's error, with the step.
        source: io::Error,
    },
}

struct Port {
    socket: mio::net::UdpSocket,
    local: SocketAddr,
}

/// The transmit half: the outbox's slots and the worker's counters.
struct SocketTx {
    buf: Vec<u8>,
    slot_size: usize,
    /// (destination, payload length) per queued datagram.
    queued: Vec<(SocketAddr, usize)>,
    capacity: usize,
    local: Vec<SocketAddr>,
    counters: WorkerCounters,
    /// Where messages for TCP and TLS peers go: the stream thread.
    handoff: Option<HandoffTx>,
}

impl TxSlots for SocketTx {
    fn reserve(&mut self, to: Peer) -> Result<&mut [u8], SendError> {
        if to.transport.is_stream() {
            return match self.handoff.as_mut() {
                Some(h) => Ok(h.reserve()),
                None => {
                    self.counters.no_stream_path += 1;
                    Err(SendError::NoStreamPath(to.addr, to.transport))
                }
            };
        }
        let dst = to.addr;
        if local_for(&self.local, &dst).is_none() {
            self.counters.no_local_address += 1;
            return Err(SendError::NoLocalAddress(dst));
        }
        let i = self.queued.len();
        if i == self.capacity {
            self.counters.tx_outbox_full += 1;
            return Err(SendError::OutboxFull);
        }
        Ok(&mut self.buf[i * self.slot_size..][..self.slot_size])
    }

    fn commit(&mut self, to: Peer, len: usize) {
        if to.transport.is_stream() {
            // Handed to the stream thread; a full ring drops it, counted.
            if !self.handoff.as_mut().is_some_and(|h| h.commit(to, len)) {
                self.counters.no_stream_path += 1;
            }
            return;
        }
        self.queued.push((to.addr, len));
    }

    fn abandon(&mut self) {
        self.counters.tx_payload_rejected += 1;
    }
}

/// One worker's UDP sockets (one per local address family) and buffers.
pub struct SocketPort {
    ports: Vec<Port>,
    poll: mio::Poll,
    events: mio::Events,
    rx_buf: Vec<u8>,
    /// (source, length, port index, receive slot) per datagram of the
    /// current batch that is handed to the handler.
    rx_meta: Vec<(SocketAddr, usize, usize, usize)>,
    batch: usize,
    slot_size: usize,
    /// Headers for one recvmmsg/sendmmsg call, allocated once.
    mmsg: MmsgHeaders,
    tx: SocketTx,
}

impl SocketPort {
    /// Opens one socket per address of `config.local`, with SO_REUSEPORT so
    /// every worker can bind the same address. A port 0 in `config.local` is
    /// replaced by the port the first socket got, so later workers share it.
    pub fn open(config: &mut DataplaneConfig) -> Result<SocketPort, SocketError> {
        let poll = mio::Poll::new().map_err(|source| SocketError::Io {
            what: "create poll for",
            addr: config.local[0],
            source,
        })?;
        let mut ports = Vec::new();
        for (i, addr) in config.local.iter_mut().enumerate() {
            // IPV6_V6ONLY so an IPv4 and an IPv6 socket can share a port.
            let opts = UdpOptions {
                buffer_bytes: SOCKET_BUFFER,
                force_buffers: false,
                reuse_port: true,
                ipv6_only: true,
            };
            let std_socket = sys::bind_udp(*addr, opts).map_err(|source| SocketError::Bind {
                addr: *addr,
                source,
            })?;
            let local = std_socket.local_addr().map_err(|source| SocketError::Io {
                what: "read the address of",
                addr: *addr,
                source,
            })?;
            *addr = local;
            let mut socket = mio::net::UdpSocket::from_std(std_socket);
            poll.registry()
                .register(&mut socket, mio::Token(i), mio::Interest::READABLE)
                .map_err(|source| SocketError::Io {
                    what: "register",
                    addr: local,
                    source,
                })?;
            ports.push(Port { socket, local });
        }
        let slot_size = config.max_payload;
        Ok(SocketPort {
            ports,
            poll,
            events: mio::Events::with_capacity(8),
            rx_buf: vec![0; config.batch * slot_size],
            rx_meta: Vec::with_capacity(config.batch),
            batch: config.batch,
            slot_size,
            mmsg: MmsgHeaders::new(CHUNK),
            tx: SocketTx {
                buf: vec![0; config.outbox_capacity * slot_size],
                slot_size,
                queued: Vec::with_capacity(config.outbox_capacity),
                capacity: config.outbox_capacity,
                local: config.local.clone(),
                counters: WorkerCounters::default(),
                handoff: None,
            },
        })
    }

    /// Messages for TCP and TLS peers go to the stream thread through
    /// `handoff` (without one they are dropped as `no_stream_path`).
    pub fn set_handoff(&mut self, handoff: HandoffTx) {
        self.tx.handoff = Some(handoff);
    }

    /// Send-only handles on this worker's sockets (new descriptors for
    /// the same sockets): another thread's datagrams then leave from the
    /// SIP port. The worker keeps reading everything that arrives.
    pub fn clone_sockets(&self) -> io::Result<Vec<std::net::UdpSocket>> {
        use std::os::fd::AsFd;
        self.ports
            .iter()
            .map(|p| Ok(p.socket.as_fd().try_clone_to_owned()?.into()))
            .collect()
    }

    /// The addresses the sockets are bound to.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.ports.iter().map(|p| p.local).collect()
    }

    /// Receives up to `max` datagrams from port `p` into the receive slots
    /// from `first_slot` on; returns how many slots were used (datagrams
    /// received, truncated ones included).
    fn recv_from(&mut self, p: usize, max: usize, first_slot: usize) -> usize {
        let mut got = 0;
        while got < max {
            let n = (max - got).min(CHUNK);
            let base = first_slot + got;
            let slots = self.rx_buf[base * self.slot_size..]
                .chunks_mut(self.slot_size)
                .take(n);
            let rc = match self.mmsg.recv(&self.ports[p].socket, slots) {
                Ok(rc) if rc > 0 => rc,
                // Drained, or an error queued by ICMP: either way nothing
                // more to read now.
                _ => break,
            };
            for k in 0..rc {
                let r = self.mmsg.received(k);
                match (r.truncated, r.src) {
                    (false, Some(src)) => self.rx_meta.push((src, r.len, p, base + k)),
                    // Cut to the slot, or not an IP peer (cannot happen on
                    // an AF_INET/6 socket; counted rather than trusted).
                    _ => {
                        self.tx.counters.received += 1;
                        self.tx.counters.rx_truncated += 1;
                    }
                }
            }
            got += rc;
            if rc < n {
                break;
            }
        }
        got
    }

    /// Sends the queued datagrams of port `p`'s address family from it.
    fn send_family(&mut self, p: usize) {
        let v4 = self.ports[p].local.is_ipv4();
        let tx = &mut self.tx;
        let (buf, size) = (&tx.buf, tx.slot_size);
        let datagrams = tx
            .queued
            .iter()
            .enumerate()
            .filter(|(_, (dst, _))| dst.is_ipv4() == v4)
            .map(|(i, &(dst, len))| (&buf[i * size..][..len], dst));
        let r = self.mmsg.send_all(&self.ports[p].socket, datagrams);
        tx.counters.transmitted += r.sent;
        // A full socket buffer drops the rest of that call's batch; another
        // error drops the one message refused.
        tx.counters.tx_would_block += r.would_block;
        tx.counters.tx_error += r.errors;
    }
}

impl PacketIo for SocketPort {
    fn kind(&self) -> IoKind {
        IoKind::Socket
    }

    fn counters(&mut self) -> &mut WorkerCounters {
        &mut self.tx.counters
    }

    fn receive<R: Receiver>(&mut self, _now: Timestamp, rx: &mut R) -> usize {
        self.rx_meta.clear();
        let mut received = 0;
        for p in 0..self.ports.len() {
            let room = self.batch - received;
            if room == 0 {
                break;
            }
            received += self.recv_from(p, room, received);
        }
        if received > 0 {
            let (buf, size) = (&self.rx_buf, self.slot_size);
            rx.prepare(
                &mut self
                    .rx_meta
                    .iter()
                    .map(|&(_, len, _, slot)| &buf[slot * size..][..len]),
            );
        }
        for i in 0..self.rx_meta.len() {
            let (src, len, p, slot) = self.rx_meta[i];
            let pkt = Datagram::udp(
                src,
                self.ports[p].local,
                &self.rx_buf[slot * self.slot_size..][..len],
            );
            let result = rx.handle(&pkt, &mut Outbox::new(&mut self.tx));
            let c = &mut self.tx.counters;
            c.received += 1;
            c.count_handled(result);
        }
        if received > 0 {
            self.tx.counters.batches += 1;
        }
        received
    }

    fn transmit(&mut self, _now: Timestamp) {
        if let Some(h) = self.tx.handoff.as_mut() {
            h.wake();
        }
        if self.tx.queued.is_empty() {
            return;
        }
        for p in 0..self.ports.len() {
            self.send_family(p);
        }
        self.tx.queued.clear();
    }

    fn socket_rx_drops(&self) -> Option<u64> {
        let mut total = 0u64;
        for p in &self.ports {
            total += sys::socket_drops(&p.socket).ok()?;
        }
        Some(total)
    }

    fn wait(&mut self, timeout: Duration) {
        // Interrupted or failed polls simply end the wait early; the loop
        // polls the sockets again either way.
        let _ = self.poll.poll(&mut self.events, Some(timeout));
    }
}
