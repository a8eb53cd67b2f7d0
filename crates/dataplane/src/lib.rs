//! The dataplane: everything between a NIC queue and a sans-IO packet
//! handler. Frames arrive through AF_XDP sockets ([`afxdp`]) or UDP sockets
//! ([`socket`]), both behind one I/O trait ([`io`]); pinned workers
//! ([`worker`]) hand each datagram to a
//! [`PacketHandler`] and send what it writes into the [`Outbox`]. The
//! contract between the two (those types, [`Datagram`], [`Timestamp`]) is
//! the proxy crate's `handler` module, re-exported here; this crate owns the
//! clock ([`now`]) and every socket. SIP over TCP and TLS runs in its
//! own thread ([`stream`], [`tls`]), on the kernel's TCP stack, with the
//! same handler.

pub mod afxdp;
pub mod config;
pub mod counters;
pub mod echo;
pub mod handoff;
pub mod io;
pub mod neigh;
pub mod socket;
pub mod stream;
pub mod tls;
pub mod worker;

mod nexthop;

pub use nexthop::NeighbourUpdate;

use std::sync::OnceLock;
use std::time::Instant;

pub use config::{
    ConfigProblem, DataplaneConfig, IdleConfig, IoMode, NeighbourConfig, WorkerPlacement,
    XskConfig, ZeroCopy,
};
pub use counters::{IoKind, XskStatistics};
pub use counters::{WorkerCounters, WorkerSnapshot};
pub use io::{PacketIo, Receiver};
pub use neigh::{NeighbourCache, NeighbourError, NeighbourStats, Route};
pub use worker::{Control, Dataplane, DataplaneError, SocketMap, Worker, WorkerEvent};

pub use proxy::handler::{
    ConnId, Datagram, DropReason, Outbox, OutboxBuffer, PacketHandler, Peer, SendError, Timestamp,
    Transport, TxSlots,
};

/// The current time on the dataplane's monotonic clock: nanoseconds since
/// the process first asked. The only place a [`Timestamp`] is read from a
/// clock; handlers get it passed in.
pub fn now() -> Timestamp {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    Timestamp::from_nanos(start.elapsed().as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_moves_forward() {
        let a = now();
        let b = now();
        assert!(b >= a);
    }
}
