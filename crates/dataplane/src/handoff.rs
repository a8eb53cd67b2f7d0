//! Messages a UDP worker's handler sends to TCP or TLS peers, handed to the
//! stream thread: one SPSC byte ring per worker (rtrb, allocated once),
//! and a mio waker that rouses the stream thread after a batch that handed
//! something over. Only messages for stream peers take this path (a UDP
//! caller routed to a TLS upstream, an upstream's in-dialog request toward
//! a caller on a connection); UDP datagrams never touch it.
//!
//! A record is a fixed header (length, transport, connection, address)
//! and the payload, pushed in one piece, so the stream thread sees whole
//! records or nothing.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use rtrb::{Consumer, Producer, RingBuffer};

use super::{ConnId, Peer, Transport};

/// Bytes of a record's header: length (4), transport (1), has-connection
/// (1), IPv4 (1), pad (1), connection (8), address (16), port (2).
pub const HEADER: usize = 34;

/// The worker's end: where its handler's messages for stream peers go.
pub struct HandoffTx {
    ring: Producer<u8>,
    waker: Arc<mio::Waker>,
    /// The reserved buffer: the header's room, then the payload.
    slot: Vec<u8>,
    /// Records pushed since the last wake.
    unwoken: bool,
}

/// The stream thread's end.
pub struct HandoffRx {
    ring: Consumer<u8>,
}

/// A ring of `bytes` for messages of at most `max_message` bytes.
pub fn channel(bytes: usize, max_message: usize, waker: Arc<mio::Waker>) -> (HandoffTx, HandoffRx) {
    let (ring, rx) = RingBuffer::new(bytes);
    (
        HandoffTx {
            ring,
            waker,
            slot: vec![0; HEADER + max_message],
            unwoken: false,
        },
        HandoffRx { ring: rx },
    )
}

impl HandoffTx {
    /// The buffer a message is written into.
    pub fn reserve(&mut self) -> &mut [u8] {
        &mut self.slot[HEADER..]
    }

    /// Hands the reserved buffer's first `len` bytes over for `to`; false
    /// when the ring has no room (the caller counts the drop).
    pub fn commit(&mut self, to: Peer, len: usize) -> bool {
        let h = &mut self.slot[..HEADER];
        h[..4].copy_from_slice(&(len as u32).to_le_bytes());
        h[4] = to.transport as u8;
        h[5] = to.conn.is_some() as u8;
        h[6] = to.addr.is_ipv4() as u8;
        h[7] = 0;
        h[8..16].copy_from_slice(&to.conn.map_or(0, |c| c.0).to_le_bytes());
        let ip = match to.addr.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        h[16..32].copy_from_slice(&ip.octets());
        h[32..34].copy_from_slice(&to.addr.port().to_le_bytes());
        if self
            .ring
            .push_entire_slice(&self.slot[..HEADER + len])
            .is_err()
        {
            return false;
        }
        self.unwoken = true;
        true
    }

    /// Rouses the stream thread if something was handed over since the
    /// last call (once per batch, not per message).
    pub fn wake(&mut self) {
        if std::mem::take(&mut self.unwoken) {
            // A failed wake leaves the records for the stream thread's
            // next round (it polls with a bounded timeout).
            let _ = self.waker.wake();
        }
    }
}

impl HandoffRx {
    /// Records wait.
    pub fn has_records(&self) -> bool {
        self.ring.slots() >= HEADER
    }

    /// Bytes waiting now: whole records (each pushed in one piece), so
    /// reading this many drains what was there and nothing pushed since.
    pub fn waiting(&self) -> usize {
        self.ring.slots()
    }

    /// The next record: its peer and its payload, copied into `buf` (which
    /// must hold the largest message). `None` when the ring is empty.
    pub fn next<'b>(&mut self, buf: &'b mut [u8]) -> Option<(Peer, &'b [u8])> {
        if self.ring.slots() < HEADER {
            return None;
        }
        let mut h = [0u8; HEADER];
        self.ring.pop_entire_slice(&mut h).ok()?;
        let len = u32::from_le_bytes(h[..4].try_into().ok()?) as usize;
        // Pushed in one piece with its header: all there.
        self.ring.pop_entire_slice(&mut buf[..len]).ok()?;
        let transport = match h[4] {
            1 => Transport::Tcp,
            2 => Transport::Tls,
            _ => Transport::Udp,
        };
        let conn = (h[5] == 1).then(|| ConnId(u64::from_le_bytes(h[8..16].try_into().unwrap())));
        let v6 = Ipv6Addr::from(<[u8; 16]>::try_from(&h[16..32]).ok()?);
        let ip = match (h[6], v6.to_ipv4_mapped()) {
            (1, Some(v4)) => IpAddr::V4(v4),
            _ => IpAddr::V6(v6),
        };
        let port = u16::from_le_bytes([h[32], h[33]]);
        let to = Peer {
            addr: SocketAddr::new(ip, port),
            transport,
            conn,
        };
        Some((to, &buf[..len]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_cross_whole_and_a_full_ring_refuses() {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(9)).unwrap());
        let (mut tx, mut rx) = channel(2 * (HEADER + 6) + 10, 100, waker);
        let peers = [
            Peer::on(
                "198.18.0.10:40001".parse().unwrap(),
                Transport::Tls,
                ConnId(7),
            ),
            Peer::at("[2001:db8::1]:5061".parse().unwrap(), Transport::Tcp),
        ];
        for (i, p) in peers.iter().enumerate() {
            let b = tx.reserve();
            b[..5].copy_from_slice(b"hello");
            b[5] = b'0' + i as u8;
            assert!(tx.commit(*p, 6));
        }
        // Full: a third does not fit.
        tx.reserve()[..1].copy_from_slice(b"x");
        assert!(!tx.commit(peers[0], 100));
        tx.wake();
        let mut buf = [0u8; 100];
        for (i, p) in peers.iter().enumerate() {
            let (to, payload) = rx.next(&mut buf).unwrap();
            assert_eq!(to, *p);
            assert_eq!(payload, format!("hello{i}").as_bytes());
        }
        assert!(rx.next(&mut buf).is_none());
    }

    /// The stream thread's poll is edge-triggered on the waker: a wake
    /// after each batch must rouse it every time, the second batch's too
    /// (a missed wake leaves the thread asleep up to its poll timeout
    /// while the ring fills), and a batch with nothing handed over wakes
    /// nobody.
    #[test]
    fn a_wake_after_each_batch_rouses_the_poll_every_time() {
        let mut poll = mio::Poll::new().unwrap();
        let mut events = mio::Events::with_capacity(8);
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(9)).unwrap());
        let (mut tx, mut rx) = channel(4096, 100, waker);
        let to = Peer::at("198.18.0.20:5060".parse().unwrap(), Transport::Tcp);
        let mut buf = [0u8; 100];
        let mut woken = |poll: &mut mio::Poll| {
            poll.poll(&mut events, Some(std::time::Duration::ZERO))
                .unwrap();
            events.iter().any(|e| e.token() == mio::Token(9))
        };
        for batch in 0..3 {
            for _ in 0..=batch {
                tx.reserve()[..2].copy_from_slice(b"ok");
                assert!(tx.commit(to, 2));
            }
            tx.wake();
            assert!(woken(&mut poll), "batch {batch}");
            let mut n = 0;
            while rx.next(&mut buf).is_some() {
                n += 1;
            }
            assert_eq!(n, batch + 1);
            // Nothing handed over since: no wake, nothing to rouse.
            tx.wake();
            assert!(!woken(&mut poll), "batch {batch}: a spurious wake");
        }
    }
}
