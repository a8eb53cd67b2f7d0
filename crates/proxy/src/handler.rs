//! The contract between a dataplane and the sans-IO packet handler it
//! drives: what a handler is given ([`Datagram`], [`Timestamp`]), what it
//! writes into ([`Outbox`]), and the [`PacketHandler`] trait itself.
//!
//! The handler never learns which mode it runs in: it sees a [`Datagram`]
//! (addresses, the transport and connection it came on, and a borrowed
//! payload: one UDP datagram, or one message framed out of a TCP or TLS
//! stream) and writes replies into buffers the dataplane lends it, which in
//! AF_XDP mode are UMEM frames (the payload is written in place, headers
//! are added around it), in socket mode slots of a preallocated send buffer
//! handed to `sendmmsg`, and for a [`Peer`] on a stream transport slots the
//! stream layer writes to that connection.

use std::net::SocketAddr;
use std::time::Duration;

pub use route::Transport;

/// A point on the monotonic clock, in nanoseconds since an origin the
/// dataplane chose (see `dataplane::now`). The dataplane reads the clock once
/// per batch and passes it in, so handlers stay pure functions of their
/// inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// A timestamp `nanos` after the clock's origin (for tests of handlers).
    pub const fn from_nanos(nanos: u64) -> Timestamp {
        Timestamp(nanos)
    }

    /// Nanoseconds since the clock's origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self` moved forward by `d`.
    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(d.as_nanos() as u64))
    }
}

/// A TCP or TLS connection of the stream layer. Numbers are never reused
/// while the process runs, so a number that outlived its connection names
/// nothing rather than someone else's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Where a message goes, or came from: an address, a transport and, on a
/// stream transport, the connection.
///
/// Sending to a stream peer with a connection writes on that connection
/// only (gone: the stream layer drops and counts it, it never dials the
/// address instead); without one, the stream layer uses its connection to
/// that address or opens one (route targets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The address (for a connection, its remote end).
    pub addr: SocketAddr,
    /// The transport.
    pub transport: Transport,
    /// The connection, on a stream transport.
    pub conn: Option<ConnId>,
}

impl Peer {
    /// A UDP peer.
    pub const fn udp(addr: SocketAddr) -> Peer {
        Peer {
            addr,
            transport: Transport::Udp,
            conn: None,
        }
    }

    /// An address reached over `transport` (a connection of the stream
    /// layer's choosing when it is TCP or TLS).
    pub const fn at(addr: SocketAddr, transport: Transport) -> Peer {
        Peer {
            addr,
            transport,
            conn: None,
        }
    }

    /// The remote end of connection `conn`.
    pub const fn on(addr: SocketAddr, transport: Transport, conn: ConnId) -> Peer {
        Peer {
            addr,
            transport,
            conn: Some(conn),
        }
    }
}

/// One received message, as a handler sees it: a UDP datagram, or a
/// message the stream layer framed out of a TCP or TLS connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// Where it came from (for a connection, its remote end).
    pub src: SocketAddr,
    /// The local address and port it was sent to.
    pub dst: SocketAddr,
    /// The payload, borrowed from the receive buffer (a UMEM frame, a
    /// socket receive slot, a connection's buffer); valid only during the
    /// handler call.
    pub payload: &'a [u8],
    /// What it came over.
    pub transport: Transport,
    /// The connection it came on (TCP or TLS), whose handshake completed:
    /// answers to it go back there.
    pub conn: Option<ConnId>,
}

impl<'a> Datagram<'a> {
    /// A UDP datagram.
    pub const fn udp(src: SocketAddr, dst: SocketAddr, payload: &'a [u8]) -> Datagram<'a> {
        Datagram {
            src,
            dst,
            payload,
            transport: Transport::Udp,
            conn: None,
        }
    }

    /// Where it came from, as a peer to answer.
    pub const fn peer(&self) -> Peer {
        Peer {
            addr: self.src,
            transport: self.transport,
            conn: self.conn,
        }
    }
}

/// A handler's reasons for dropping a datagram; the worker counts each under
/// its name. Implement it for a fieldless enum.
pub trait DropReason: Copy + Send + 'static {
    /// One name per reason, indexed by [`DropReason::index`]; at most
    /// `dataplane::counters::MAX_HANDLER_DROP_REASONS` names (the dataplane
    /// keeps a fixed array of counters per reason).
    const NAMES: &'static [&'static str];
    /// This reason's position in [`DropReason::NAMES`].
    fn index(self) -> usize;
}

/// The sans-IO packet handler a worker drives (the SIP proxy implements it).
///
/// One instance per worker, moved to the worker's thread; it owns its state
/// (route table copy, rate-limit shares, counters) and is reached from the
/// control thread only through [`PacketHandler::on_control`].
pub trait PacketHandler: Send + 'static {
    /// Messages the control thread sends to this handler (table swaps,
    /// health changes).
    type Control: Send + 'static;
    /// What [`PacketHandler::stats`] reports in a stats snapshot.
    type Stats: Send + 'static;
    /// Why the handler dropped a datagram.
    type Drop: DropReason;
    /// What the handler reports to the control thread (abuse signals, for
    /// instance); `()` if nothing.
    type Event: Send + 'static;

    /// Called once per receive batch, before [`PacketHandler::handle`], with
    /// the payloads of the datagrams `handle` is about to get, in the order
    /// it gets them: the place to do a batch's work side by side (route
    /// lookups whose memory accesses overlap, for instance). `handle` must
    /// still be right on its own: what `prepare` computed is a hint.
    fn prepare(&mut self, _now: Timestamp, _payloads: &mut dyn Iterator<Item = &[u8]>) {}

    /// Handles one datagram: writes zero or more datagrams into `out`, or
    /// returns the reason it dropped it (which the worker counts). Sends that
    /// fail are counted by the dataplane; the handler need not count them.
    fn handle(
        &mut self,
        now: Timestamp,
        pkt: &Datagram<'_>,
        out: &mut Outbox<'_>,
    ) -> Result<(), Self::Drop>;

    /// Applies a control message, between batches.
    fn on_control(&mut self, now: Timestamp, msg: Self::Control);

    /// Called once per worker loop, before each receive batch (and at least
    /// once per idle wait): the place to take what arrived on rings of the
    /// handler's own, such as route tables and health changes.
    fn between_batches(&mut self, _now: Timestamp) {}

    /// A snapshot of the handler's own statistics, taken when the control
    /// thread asks for one (not on the hot path).
    fn stats(&self) -> Self::Stats;

    /// The next event for the control thread, polled after every batch until
    /// it returns `None`; events that find the event ring full are counted
    /// as `events_lost` in the worker's snapshot.
    fn poll_event(&mut self) -> Option<Self::Event> {
        None
    }
}

/// Why a datagram could not be queued for sending. The dataplane has
/// already counted it (see [`WorkerCounters`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// This batch's outbox is full (`outbox_capacity`).
    #[error("outbox full")]
    OutboxFull,
    /// No free frame or send slot (AF_XDP UMEM exhausted).
    #[error("no free transmit buffer")]
    NoBuffer,
    /// The next hop's MAC is not known yet; resolution was started.
    #[error("next hop of {0} not resolved yet")]
    NoNeighbour(std::net::IpAddr),
    /// No route to the destination in the kernel's table for this interface.
    #[error("no route to {0}")]
    NoRoute(std::net::IpAddr),
    /// The dataplane has no local address of the destination's family.
    #[error("no local address to send to {0} from")]
    NoLocalAddress(SocketAddr),
    /// The writer returned a length beyond the buffer, or gave up (`None`).
    #[error("payload writer gave up or overran its {capacity}-byte buffer")]
    PayloadRejected {
        /// Bytes the buffer held.
        capacity: usize,
    },
    /// A message for a TCP or TLS peer, and no stream layer to take it
    /// (no stream listeners configured), or its queue is full.
    #[error("no stream layer to send to {0} over {1}")]
    NoStreamPath(SocketAddr, Transport),
}

/// Where outgoing messages go: the dataplane's transmit buffers for this
/// batch. Backed by UMEM frames (AF_XDP), send slots (socket mode), the
/// stream layer's queue, or an [`OutboxBuffer`] in tests.
pub trait TxSlots {
    /// Reserves a buffer for a message to `to`; the payload goes at its
    /// start. Counts and returns the reason when none can be had.
    fn reserve(&mut self, to: Peer) -> Result<&mut [u8], SendError>;
    /// Queues the reserved buffer's first `len` bytes for `to`.
    fn commit(&mut self, to: Peer, len: usize);
    /// Gives the reserved buffer back unsent (the writer gave up).
    fn abandon(&mut self);
}

/// What a handler writes its outgoing messages into; see
/// [`PacketHandler::handle`]. A UDP datagram leaves from the dataplane's
/// local address of the destination's family; a message for a TCP or TLS
/// peer goes to the stream layer (the `stream` slots), which writes it on
/// the peer's connection.
pub struct Outbox<'a> {
    slots: &'a mut dyn TxSlots,
    stream: Option<&'a mut dyn TxSlots>,
}

impl<'a> Outbox<'a> {
    /// An outbox writing into `slots` (for every transport, when `slots`
    /// takes stream peers too, as [`OutboxBuffer`] does; see
    /// [`Outbox::with_stream`] otherwise).
    pub fn new(slots: &'a mut dyn TxSlots) -> Outbox<'a> {
        Outbox {
            slots,
            stream: None,
        }
    }

    /// An outbox writing UDP datagrams into `slots` and messages for TCP and
    /// TLS peers into `stream`.
    pub fn split(slots: &'a mut dyn TxSlots, stream: &'a mut dyn TxSlots) -> Outbox<'a> {
        Outbox {
            slots,
            stream: Some(stream),
        }
    }

    /// This outbox, with messages for TCP and TLS peers going to `stream`.
    pub fn with_stream<'b>(&'b mut self, stream: &'b mut dyn TxSlots) -> Outbox<'b> {
        Outbox {
            slots: &mut *self.slots,
            stream: Some(stream),
        }
    }

    /// Sends one datagram to `dst` over UDP: `write` fills the payload
    /// buffer (which is the transmit buffer itself, no copy follows) and
    /// returns the payload's length, or `None` to send nothing.
    pub fn send(
        &mut self,
        dst: SocketAddr,
        write: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Result<(), SendError> {
        self.send_to(Peer::udp(dst), write)
    }

    /// Sends one message to `to`, over its transport (see [`Peer`]).
    pub fn send_to(
        &mut self,
        to: Peer,
        write: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Result<(), SendError> {
        let slots: &mut dyn TxSlots = match (&mut self.stream, to.transport.is_stream()) {
            (Some(stream), true) => &mut **stream,
            _ => &mut *self.slots,
        };
        let buf = slots.reserve(to)?;
        let capacity = buf.len();
        match write(buf) {
            Some(len) if len <= capacity => {
                slots.commit(to, len);
                Ok(())
            }
            _ => {
                slots.abandon();
                Err(SendError::PayloadRejected { capacity })
            }
        }
    }

    /// Sends a copy of `payload` to `dst`.
    pub fn send_bytes(&mut self, dst: SocketAddr, payload: &[u8]) -> Result<(), SendError> {
        self.send(dst, |buf| {
            let dst = buf.get_mut(..payload.len())?;
            dst.copy_from_slice(payload);
            Some(payload.len())
        })
    }
}

/// A plain in-memory [`TxSlots`]: fixed slots allocated once, for handler
/// unit tests, the stream layer, and anything else that wants to see what a
/// handler sent (to peers of every transport).
#[derive(Debug, Clone)]
pub struct OutboxBuffer {
    buf: Vec<u8>,
    slot_size: usize,
    sent: Vec<(Peer, usize)>,
    capacity: usize,
}

impl OutboxBuffer {
    /// Room for `slots` datagrams of up to `slot_size` bytes each.
    pub fn new(slots: usize, slot_size: usize) -> OutboxBuffer {
        OutboxBuffer {
            buf: vec![0; slots * slot_size],
            slot_size,
            sent: Vec::with_capacity(slots),
            capacity: slots,
        }
    }

    /// An [`Outbox`] writing into this buffer.
    pub fn outbox(&mut self) -> Outbox<'_> {
        Outbox::new(self)
    }

    /// The messages sent so far: destination address and payload, in order.
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.sent().map(|(to, p)| (to.addr, p))
    }

    /// The messages sent so far: destination peer and payload, in order.
    pub fn sent(&self) -> impl Iterator<Item = (Peer, &[u8])> {
        self.sent
            .iter()
            .enumerate()
            .map(|(i, (to, len))| (*to, &self.buf[i * self.slot_size..][..*len]))
    }

    /// How many datagrams were sent.
    pub fn len(&self) -> usize {
        self.sent.len()
    }

    /// True when nothing was sent.
    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// Forgets what was sent, keeping the memory.
    pub fn clear(&mut self) {
        self.sent.clear();
    }
}

impl TxSlots for OutboxBuffer {
    fn reserve(&mut self, _to: Peer) -> Result<&mut [u8], SendError> {
        let i = self.sent.len();
        if i == self.capacity {
            return Err(SendError::OutboxFull);
        }
        Ok(&mut self.buf[i * self.slot_size..][..self.slot_size])
    }

    fn commit(&mut self, to: Peer, len: usize) {
        self.sent.push((to, len));
    }

    fn abandon(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_buffer_records_what_was_sent() {
        let mut b = OutboxBuffer::new(2, 16);
        let dst: SocketAddr = "198.18.0.9:5060".parse().unwrap();
        let mut out = b.outbox();
        out.send_bytes(dst, b"one").unwrap();
        out.send(dst, |buf| {
            buf[..3].copy_from_slice(b"two");
            Some(3)
        })
        .unwrap();
        assert_eq!(out.send_bytes(dst, b"three"), Err(SendError::OutboxFull));
        let got: Vec<_> = b.datagrams().map(|(d, p)| (d, p.to_vec())).collect();
        assert_eq!(got, vec![(dst, b"one".to_vec()), (dst, b"two".to_vec())]);
    }

    #[test]
    fn outbox_refuses_a_length_beyond_the_buffer() {
        let mut b = OutboxBuffer::new(1, 4);
        let dst: SocketAddr = "198.18.0.9:5060".parse().unwrap();
        let r = b.outbox().send(dst, |_| Some(5));
        assert_eq!(r, Err(SendError::PayloadRejected { capacity: 4 }));
        assert!(b.is_empty());
    }

    #[test]
    fn a_split_outbox_sends_stream_peers_to_the_stream_slots() {
        let mut udp = OutboxBuffer::new(2, 16);
        let mut stream = OutboxBuffer::new(2, 16);
        let dst: SocketAddr = "198.18.0.9:5060".parse().unwrap();
        let tls = Peer::on(dst, Transport::Tls, ConnId(4));
        {
            let mut out = Outbox::split(&mut udp, &mut stream);
            out.send_bytes(dst, b"udp").unwrap();
            out.send_to(tls, |b| {
                b[..3].copy_from_slice(b"tls");
                Some(3)
            })
            .unwrap();
        }
        assert_eq!(
            udp.sent().map(|(p, _)| p).collect::<Vec<_>>(),
            [Peer::udp(dst)]
        );
        assert_eq!(stream.sent().map(|(p, _)| p).collect::<Vec<_>>(), [tls]);
        // Without stream slots, everything goes to the one buffer.
        let mut one = OutboxBuffer::new(2, 16);
        one.outbox().send_to(tls, |_| Some(0)).unwrap();
        assert_eq!(one.sent().next().unwrap().0, tls);
    }

    #[test]
    fn saturating_since_never_goes_negative() {
        assert_eq!(
            Timestamp::from_nanos(5).saturating_since(Timestamp::from_nanos(9)),
            Duration::ZERO
        );
        assert_eq!(
            Timestamp::from_nanos(9).saturating_since(Timestamp::from_nanos(5)),
            Duration::from_nanos(4)
        );
    }
}
