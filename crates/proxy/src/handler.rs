//! The contract between a dataplane and the sans-IO packet handler it
//! drives: what a handler is given ([`Datagram`], [`Timestamp`]), what it
//! writes into ([`Outbox`]), and the [`PacketHandler`] trait itself.
//!
//! The handler never learns which mode it runs in: it sees a [`Datagram`]
//! (addresses and a borrowed payload) and writes replies into buffers the
//! dataplane lends it, which in AF_XDP mode are UMEM frames (the payload is
//! written in place, headers are added around it) and in socket mode slots
//! of a preallocated send buffer handed to `sendmmsg`.

use std::net::SocketAddr;
use std::time::Duration;

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

/// One received UDP datagram, as a handler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// Where it came from.
    pub src: SocketAddr,
    /// The local address and port it was sent to.
    pub dst: SocketAddr,
    /// The UDP payload, borrowed from the receive buffer (a UMEM frame or a
    /// socket receive slot); valid only during the handler call.
    pub payload: &'a [u8],
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
}

/// Where outgoing datagrams go: the dataplane's transmit buffers for this
/// batch. Backed by UMEM frames (AF_XDP) or send slots (socket mode), or by
/// an [`OutboxBuffer`] in tests.
pub trait TxSlots {
    /// Reserves a buffer for a datagram to `dst`; the payload goes at its
    /// start. Counts and returns the reason when none can be had.
    fn reserve(&mut self, dst: SocketAddr) -> Result<&mut [u8], SendError>;
    /// Queues the reserved buffer's first `len` bytes for `dst`.
    fn commit(&mut self, dst: SocketAddr, len: usize);
    /// Gives the reserved buffer back unsent (the writer gave up).
    fn abandon(&mut self);
}

/// What a handler writes its outgoing datagrams into; see
/// [`PacketHandler::handle`]. The source address is the dataplane's local
/// address of the destination's family.
pub struct Outbox<'a> {
    slots: &'a mut dyn TxSlots,
}

impl<'a> Outbox<'a> {
    /// An outbox writing into `slots`.
    pub fn new(slots: &'a mut dyn TxSlots) -> Outbox<'a> {
        Outbox { slots }
    }

    /// Sends one datagram to `dst`: `write` fills the payload buffer (which
    /// is the transmit buffer itself, no copy follows) and returns the
    /// payload's length, or `None` to send nothing.
    pub fn send(
        &mut self,
        dst: SocketAddr,
        write: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Result<(), SendError> {
        let buf = self.slots.reserve(dst)?;
        let capacity = buf.len();
        match write(buf) {
            Some(len) if len <= capacity => {
                self.slots.commit(dst, len);
                Ok(())
            }
            _ => {
                self.slots.abandon();
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
/// unit tests and anything else that wants to see what a handler sent.
#[derive(Debug, Clone)]
pub struct OutboxBuffer {
    buf: Vec<u8>,
    slot_size: usize,
    sent: Vec<(SocketAddr, usize)>,
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

    /// The datagrams sent so far: destination and payload, in order.
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.sent
            .iter()
            .enumerate()
            .map(|(i, (dst, len))| (*dst, &self.buf[i * self.slot_size..][..*len]))
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
    fn reserve(&mut self, _dst: SocketAddr) -> Result<&mut [u8], SendError> {
        let i = self.sent.len();
        if i == self.capacity {
            return Err(SendError::OutboxFull);
        }
        Ok(&mut self.buf[i * self.slot_size..][..self.slot_size])
    }

    fn commit(&mut self, dst: SocketAddr, len: usize) {
        self.sent.push((dst, len));
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
