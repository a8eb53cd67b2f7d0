//! The reference packet handler: it answers every datagram with its own
//! payload. The dataplane's integration tests and the echo benchmark
//! (`crates/lab/benches/dataplane_echo.rs`) run the workers with it, so what
//! they measure is the dataplane alone, with a handler that costs one copy.

use std::net::SocketAddr;

use super::{Datagram, DropReason, Outbox, PacketHandler, Timestamp};

/// The echo handler's one drop reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoDrop {
    /// The payload started with `drop`.
    Refused,
}

impl DropReason for EchoDrop {
    const NAMES: &'static [&'static str] = &["refused"];
    fn index(self) -> usize {
        0
    }
}

/// Answers every datagram to its source with its payload. Besides:
///
/// - a payload starting with `drop` is refused ([`EchoDrop::Refused`]), so
///   a test sees handler drops counted;
/// - a control message (a byte) becomes the mark that replaces the first
///   byte of every later answer, so a test sees control messages arrive;
/// - with a blackhole set ([`Echo::with_blackhole`]), a payload starting
///   with `lost` is forwarded there instead (an address nobody answers ARP
///   for exercises the dataplane's `no_neighbour` count).
///
/// Its stats are the number of answers the outbox took.
#[derive(Debug, Clone, Default)]
pub struct Echo {
    echoed: u64,
    mark: Option<u8>,
    blackhole: Option<SocketAddr>,
}

impl Echo {
    /// An echo with no mark and no blackhole: answers are the payloads as
    /// they came.
    pub fn new() -> Self {
        Echo::default()
    }

    /// An echo that forwards payloads starting with `lost` to `blackhole`.
    pub fn with_blackhole(blackhole: SocketAddr) -> Self {
        Echo {
            blackhole: Some(blackhole),
            ..Echo::default()
        }
    }

    /// Answers the outbox took so far.
    pub fn echoed(&self) -> u64 {
        self.echoed
    }
}

impl PacketHandler for Echo {
    type Control = u8;
    type Stats = u64;
    type Drop = EchoDrop;
    type Event = ();

    #[inline]
    fn handle(
        &mut self,
        _now: Timestamp,
        pkt: &Datagram<'_>,
        out: &mut Outbox<'_>,
    ) -> Result<(), EchoDrop> {
        if pkt.payload.starts_with(b"drop") {
            return Err(EchoDrop::Refused);
        }
        if let (true, Some(hole)) = (pkt.payload.starts_with(b"lost"), self.blackhole) {
            // Counted by the dataplane when it cannot be sent.
            let _ = out.send_bytes(hole, pkt.payload);
            return Ok(());
        }
        let mark = self.mark;
        // Back where it came from: over UDP, or on its connection.
        let sent = out.send_to(pkt.peer(), |buf| {
            let n = pkt.payload.len();
            let dst = buf.get_mut(..n)?;
            dst.copy_from_slice(pkt.payload);
            if let (Some(mark), Some(first)) = (mark, dst.first_mut()) {
                *first = mark;
            }
            Some(n)
        });
        if sent.is_ok() {
            self.echoed += 1;
        }
        Ok(())
    }

    fn on_control(&mut self, _now: Timestamp, mark: u8) {
        self.mark = Some(mark);
    }

    fn stats(&self) -> u64 {
        self.echoed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OutboxBuffer;

    fn datagram(payload: &[u8]) -> Datagram<'_> {
        Datagram::udp(
            "198.18.0.2:4000".parse().unwrap(),
            "198.18.0.1:5060".parse().unwrap(),
            payload,
        )
    }

    #[test]
    fn answers_carry_the_payload_back_to_its_source() {
        let mut echo = Echo::new();
        let mut buf = OutboxBuffer::new(4, 64);
        let pkt = datagram(b"hello");
        echo.handle(Timestamp::from_nanos(0), &pkt, &mut buf.outbox())
            .unwrap();
        let sent: Vec<_> = buf.datagrams().collect();
        assert_eq!(sent, [(pkt.src, &b"hello"[..])]);
        assert_eq!(echo.stats(), 1);
    }

    #[test]
    fn a_control_message_marks_later_answers() {
        let mut echo = Echo::new();
        echo.on_control(Timestamp::from_nanos(0), b'M');
        let mut buf = OutboxBuffer::new(4, 64);
        echo.handle(
            Timestamp::from_nanos(0),
            &datagram(b"hello"),
            &mut buf.outbox(),
        )
        .unwrap();
        assert_eq!(buf.datagrams().next().unwrap().1, b"Mello");
    }

    #[test]
    fn payloads_starting_with_drop_are_refused() {
        let mut echo = Echo::new();
        let mut buf = OutboxBuffer::new(4, 64);
        let r = echo.handle(
            Timestamp::from_nanos(0),
            &datagram(b"drop me"),
            &mut buf.outbox(),
        );
        assert_eq!(r, Err(EchoDrop::Refused));
        assert!(buf.is_empty());
    }
}
