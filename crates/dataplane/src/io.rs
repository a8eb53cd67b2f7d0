//! What a worker's I/O is to the worker: the [`PacketIo`] trait that AF_XDP
//! and socket mode implement, the [`Receiver`] a received batch is handed
//! to, and what both modes share. The worker loop ([`crate::worker`]) and
//! the two modes ([`crate::afxdp`], [`crate::socket`]) depend on this
//! module, not on each other.

use std::net::SocketAddr;
use std::time::Duration;

use super::counters::{IoKind, WorkerCounters, XskStatistics};
use super::nexthop::NeighbourUpdate;
use super::{Datagram, Outbox, Timestamp};

/// A worker's I/O: receives batches, lends transmit buffers through an
/// [`Outbox`], transmits, waits when idle. AF_XDP and socket mode implement it.
pub trait PacketIo: Send + 'static {
    /// Socket mode or AF_XDP copy / zero-copy.
    fn kind(&self) -> IoKind;
    /// The counters this I/O keeps (the worker's counters).
    fn counters(&mut self) -> &mut WorkerCounters;
    /// Receives up to one batch, calls [`Receiver::prepare`] once with the
    /// payloads of the datagrams it is about to hand to
    /// [`Receiver::handle`] (in that order), then `handle` on each datagram
    /// with an outbox for its replies. Returns how many datagrams (or
    /// frames) were received.
    fn receive<R: Receiver>(&mut self, now: Timestamp, rx: &mut R) -> usize;
    /// Transmits what the outbox queued and recycles finished buffers.
    fn transmit(&mut self, now: Timestamp);
    /// Blocks until traffic arrives or `timeout` passes.
    fn wait(&mut self, timeout: Duration);
    /// True while frames handed to the kernel still wait for it to take
    /// them (AF_XDP copy mode transmits only when kicked): the worker must
    /// not sleep then, or they wait with it.
    fn tx_pending(&self) -> bool {
        false
    }
    /// Applies a neighbour update (AF_XDP mode).
    fn apply_neighbour(&mut self, _update: NeighbourUpdate) {}
    /// The worker stops: what still waits to go out (AF_XDP mode: frames
    /// parked for a neighbour) is dropped and counted, so the final
    /// counters account for every datagram.
    fn finish(&mut self) {}
    /// The kernel's socket statistics (AF_XDP mode).
    fn xsk_statistics(&self) -> Option<XskStatistics> {
        None
    }
    /// Datagrams the kernel dropped on the worker's UDP sockets before the
    /// worker saw them (socket mode: full receive buffers).
    fn socket_rx_drops(&self) -> Option<u64> {
        None
    }
}

/// What a [`PacketIo`] hands a received batch to.
pub trait Receiver {
    /// Sees the payloads of the batch's datagrams before they are handled.
    fn prepare(&mut self, payloads: &mut dyn Iterator<Item = &[u8]>);
    /// Handles one datagram; returns a handler drop index on drop.
    fn handle(&mut self, pkt: &Datagram<'_>, out: &mut Outbox<'_>) -> Result<(), usize>;
}

/// The local address of `dst`'s family among `local`.
pub(crate) fn local_for(local: &[SocketAddr], dst: &SocketAddr) -> Option<SocketAddr> {
    local.iter().copied().find(|l| l.is_ipv4() == dst.is_ipv4())
}
