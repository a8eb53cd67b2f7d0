//! Per-worker counters. Each worker owns its [`WorkerCounters`] (plain
//! integers, written by that worker only) and publishes copies as
//! [`WorkerSnapshot`]s through its event ring when asked; no other core ever
//! writes the cache lines they live in.

use wire::frame::FrameError;

/// Most drop reasons a [`super::DropReason`] may name.
pub const MAX_HANDLER_DROP_REASONS: usize = 32;

/// Names of the malformed-frame reasons, indexed by [`frame_error_index`].
pub const FRAME_ERROR_NAMES: [&str; 12] = [
    "ethernet_truncated",
    "too_many_vlan_tags",
    "not_ip",
    "ipv4_header_truncated",
    "ip_version_mismatch",
    "ipv4_bad_total_length",
    "ipv4_bad_checksum",
    "fragment",
    "ipv6_truncated",
    "ipv6_bad_extension_headers",
    "not_udp",
    "udp_bad_length",
];

/// The counter slot of a frame error.
pub fn frame_error_index(e: &FrameError) -> usize {
    match e {
        FrameError::EthernetTruncated { .. } => 0,
        FrameError::TooManyVlanTags => 1,
        FrameError::NotIp { .. } => 2,
        FrameError::Ipv4HeaderTruncated => 3,
        FrameError::IpVersionMismatch { .. } => 4,
        FrameError::Ipv4BadTotalLength { .. } => 5,
        FrameError::Ipv4BadChecksum => 6,
        FrameError::Fragment => 7,
        FrameError::Ipv6Truncated => 8,
        FrameError::Ipv6BadExtensionHeaders => 9,
        FrameError::NotUdp { .. } => 10,
        FrameError::UdpBadLength { .. } => 11,
    }
}

/// Everything one worker counts. Every received datagram ends up in exactly
/// one of `handled`, `handler_drops[..]`, `malformed[..]`, `wrong_vlan` or
/// `rx_truncated`; every datagram the handler tried to send ends up in
/// exactly one of `transmitted` or the `tx_*`/`no_*` counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerCounters {
    /// Frames or datagrams taken from the RX ring or socket.
    pub received: u64,
    /// Datagrams the handler accepted (returned `Ok`).
    pub handled: u64,
    /// Datagrams the handler dropped, by its [`super::DropReason`] index.
    pub handler_drops: [u64; MAX_HANDLER_DROP_REASONS],
    /// AF_XDP frames refused by the frame parser, by [`frame_error_index`].
    pub malformed: [u64; FRAME_ERROR_NAMES.len()],
    /// AF_XDP frames on another VLAN than configured.
    pub wrong_vlan: u64,
    /// Socket datagrams longer than `max_payload` (cut by the kernel).
    pub rx_truncated: u64,
    /// Datagrams handed to the kernel for transmission (TX ring or sendmmsg).
    pub transmitted: u64,
    /// Sends refused because the batch's outbox was full.
    pub tx_outbox_full: u64,
    /// Sends refused because no UMEM frame was free.
    pub tx_no_buffer: u64,
    /// Sends dropped because the AF_XDP TX ring had no room.
    pub tx_ring_full: u64,
    /// Sends the kernel refused (sendmmsg errors other than EAGAIN).
    pub tx_error: u64,
    /// Sends dropped because the socket's buffer was full (EAGAIN).
    pub tx_would_block: u64,
    /// Sends whose payload writer gave up or overran its buffer.
    pub tx_payload_rejected: u64,
    /// Frames handed to the kernel that the device dropped (AF_XDP copy
    /// mode: the transmit kick said `NET_XMIT_DROP`; on a veth, the peer's
    /// backlog was full). Moved out of `transmitted` when it is known.
    pub tx_device_dropped: u64,
    /// Sends dropped for want of a local address of the destination's family.
    pub no_local_address: u64,
    /// Sends dropped because the next hop's MAC is not known (yet).
    pub no_neighbour: u64,
    /// Sends dropped because no route covers the destination.
    pub no_route: u64,
    /// Messages for a TCP or TLS peer with no stream layer to take them
    /// (none configured, or its queue from this worker full).
    pub no_stream_path: u64,
    /// Times the fill ring could not be topped up completely (frames short).
    pub fill_shortfalls: u64,
    /// TX kicks (sendto) made.
    pub tx_kicks: u64,
    /// TX kicks the kernel refused outright (not a full device or ring).
    pub tx_kick_errors: u64,
    /// Batches that received at least one datagram.
    pub batches: u64,
    /// Times the worker blocked waiting for traffic.
    pub idle_waits: u64,
    /// Control messages applied.
    pub control_messages: u64,
    /// Neighbour updates applied.
    pub neighbour_updates: u64,
    /// Neighbour requests the worker could not post (ring full); it asks
    /// again after `retry_ms`.
    pub neighbour_requests_lost: u64,
}

impl Default for WorkerCounters {
    fn default() -> Self {
        WorkerCounters {
            received: 0,
            handled: 0,
            handler_drops: [0; MAX_HANDLER_DROP_REASONS],
            malformed: [0; FRAME_ERROR_NAMES.len()],
            wrong_vlan: 0,
            rx_truncated: 0,
            transmitted: 0,
            tx_outbox_full: 0,
            tx_no_buffer: 0,
            tx_ring_full: 0,
            tx_error: 0,
            tx_would_block: 0,
            tx_payload_rejected: 0,
            tx_device_dropped: 0,
            no_local_address: 0,
            no_neighbour: 0,
            no_route: 0,
            no_stream_path: 0,
            fill_shortfalls: 0,
            tx_kicks: 0,
            tx_kick_errors: 0,
            batches: 0,
            idle_waits: 0,
            control_messages: 0,
            neighbour_updates: 0,
            neighbour_requests_lost: 0,
        }
    }
}

impl WorkerCounters {
    /// Counts what the handler did with one datagram: accepted it, or
    /// dropped it for the reason at that index.
    #[inline]
    pub fn count_handled(&mut self, result: Result<(), usize>) {
        match result {
            Ok(()) => self.handled += 1,
            Err(reason) => {
                if let Some(n) = self.handler_drops.get_mut(reason) {
                    *n += 1;
                }
            }
        }
    }

    /// Received datagrams dropped before or by the handler, all reasons.
    pub fn rx_dropped(&self) -> u64 {
        self.handler_drops.iter().sum::<u64>()
            + self.malformed.iter().sum::<u64>()
            + self.wrong_vlan
            + self.rx_truncated
    }

    /// Outgoing datagrams the dataplane dropped, all reasons.
    pub fn tx_dropped(&self) -> u64 {
        self.tx_outbox_full
            + self.tx_no_buffer
            + self.tx_ring_full
            + self.tx_error
            + self.tx_would_block
            + self.tx_payload_rejected
            + self.tx_device_dropped
            + self.no_local_address
            + self.no_neighbour
            + self.no_route
            + self.no_stream_path
    }

    /// Named drop counters (dataplane reasons only; handler reasons are
    /// named by the handler's [`super::DropReason::NAMES`]).
    pub fn drops(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        FRAME_ERROR_NAMES
            .iter()
            .copied()
            .zip(self.malformed.iter().copied())
            .chain([
                ("wrong_vlan", self.wrong_vlan),
                ("rx_truncated", self.rx_truncated),
                ("tx_outbox_full", self.tx_outbox_full),
                ("tx_no_buffer", self.tx_no_buffer),
                ("tx_ring_full", self.tx_ring_full),
                ("tx_error", self.tx_error),
                ("tx_would_block", self.tx_would_block),
                ("tx_payload_rejected", self.tx_payload_rejected),
                ("tx_device_dropped", self.tx_device_dropped),
                ("no_local_address", self.no_local_address),
                ("no_neighbour", self.no_neighbour),
                ("no_route", self.no_route),
                ("no_stream_path", self.no_stream_path),
            ])
    }
}

/// How a worker's I/O actually runs (for stats: a silent slow mode is worse
/// than a refusal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoKind {
    /// UDP sockets.
    Socket,
    /// AF_XDP bound in copy mode.
    AfXdpCopy,
    /// AF_XDP bound in zero-copy mode.
    AfXdpZeroCopy,
}

/// The kernel's XDP_STATISTICS for one AF_XDP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct XskStatistics {
    /// Frames dropped for reasons other than a full RX ring or empty fill ring.
    pub rx_dropped: u64,
    /// RX descriptors the kernel found invalid.
    pub rx_invalid_descs: u64,
    /// TX descriptors the kernel found invalid.
    pub tx_invalid_descs: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the kernel found the TX ring empty when kicked.
    pub tx_ring_empty_descs: u64,
}

/// A copy of one worker's counters, sent when the control thread asks.
#[derive(Debug, Clone)]
pub struct WorkerSnapshot<S> {
    /// The worker's index in the configuration.
    pub worker: usize,
    /// The core it was configured to run on, if any.
    pub core: Option<usize>,
    /// Whether pinning to `core` succeeded.
    pub pinned: bool,
    /// Socket mode, or AF_XDP copy or zero-copy.
    pub io: IoKind,
    /// Its counters.
    pub counters: WorkerCounters,
    /// Names for `counters.handler_drops`, from the handler's drop reasons.
    pub handler_drop_names: &'static [&'static str],
    /// The AF_XDP socket's kernel statistics (AF_XDP mode; `None` if the
    /// getsockopt failed or in socket mode).
    pub xsk: Option<XskStatistics>,
    /// Socket mode: datagrams the kernel dropped on this worker's sockets
    /// before the worker read them (SO_MEMINFO drops; a full receive buffer
    /// means the worker fell behind or `net.core.rmem_max` is too small).
    pub socket_rx_drops: Option<u64>,
    /// The handler's own statistics.
    pub handler: S,
    /// Handler events and snapshots that found the event ring full.
    pub events_lost: u64,
    /// Whether the worker runs with the real-time policy it was given
    /// (`worker_priority`).
    pub realtime: bool,
    /// How the kernel has scheduled the worker's thread so far: time it
    /// ran, and time it was runnable but waited for its core (starved by
    /// other threads there; the rings fill meanwhile).
    pub sched: Option<sys::SchedStat>,
}

impl<S> WorkerSnapshot<S> {
    /// Handler drops with their names.
    pub fn handler_drops(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.handler_drop_names
            .iter()
            .copied()
            .zip(self.counters.handler_drops.iter().copied())
    }
}
