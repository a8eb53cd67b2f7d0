//! AF_XDP mode: one socket per NIC RX queue (xdpilone, no libbpf), with its
//! own UMEM. The fill ring is topped up every loop, RX and TX go in batches,
//! the completion ring is drained and its frames reused, and TX is kicked
//! with sendto when the ring asks for it (and always when anything is
//! pending in copy mode, where the kernel transmits only when kicked).
//!
//! Zero-copy is tried first and copy mode otherwise (veth only has copy
//! mode); [`XskPort::kind`] says which one is running. The socket is handed
//! to the XDP program's XSKMAP only after bind, by the caller.

use std::ffi::CString;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::time::Duration;

use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig, User};

use super::config::{DataplaneConfig, ZeroCopy};
use super::counters::{frame_error_index, IoKind, WorkerCounters, XskStatistics};
use super::handoff::HandoffTx;
use super::io::{local_for, PacketIo, Receiver};
use super::nexthop::{NeighbourUpdate, NextHop, NextHopTable, Parking};
use super::{Datagram, Outbox, Peer, SendError, Timestamp, TxSlots};
use wire::frame::{payload_offset, write_udp_frame, MacAddr, UdpFrame, UdpFrameHeaders};

/// Kick-and-reap rounds for a batch that does not fit the TX ring at once.
const TX_ROUNDS: usize = 4;

/// Frames that may wait, per worker, for a next hop the kernel is
/// resolving (the kernel keeps a few per neighbour, `unres_qlen`).
const PARKED_MAX: usize = 64;
/// How long one waits before it is dropped as `no_neighbour`: a neighbour
/// on the link answers ARP or NDP within milliseconds.
const PARKED_FOR: Duration = Duration::from_secs(1);
/// Most sendto kicks per round in copy mode (the kernel sends up to 32
/// frames per kick, so this covers a 256-entry ring).
const COPY_KICKS: usize = 8;

/// Why an AF_XDP socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    /// A step of the setup failed in the kernel.
    #[error("AF_XDP {step} on {interface} queue {queue} failed: {source}")]
    Kernel {
        /// Which step.
        step: &'static str,
        /// The interface.
        interface: String,
        /// The queue.
        queue: u32,
        /// The kernel's error.
        source: std::io::Error,
    },
    /// Zero-copy was required and the driver refused it.
    #[error("zero-copy AF_XDP is not supported on {interface} queue {queue} ({source}); set xsk.zero_copy = \"auto\" to allow copy mode")]
    ZeroCopyUnsupported {
        /// The interface.
        interface: String,
        /// The queue.
        queue: u32,
        /// The bind error.
        source: std::io::Error,
    },
}

/// The UMEM's memory: an anonymous mapping owned by one port.
struct UmemArea {
    map: sys::AnonymousMapping,
}

impl UmemArea {
    /// `len` bytes of the area from `start` (panics past its end). Only for
    /// frames the kernel handed over through the RX ring: it does not write
    /// them until they go back through the fill ring, which happens after
    /// the batch is handled, and TX frames come from the free list, so they
    /// never alias them.
    #[inline]
    fn bytes(&self, start: usize, len: usize) -> &[u8] {
        assert!(
            start <= self.map.len() && len <= self.map.len() - start,
            "outside the UMEM"
        );
        // SAFETY: the range lies within the mapping (checked above), which
        // lives as long as `self`; see above for why nothing writes it.
        #[allow(unsafe_code)]
        unsafe {
            std::slice::from_raw_parts(self.map.as_ptr().as_ptr().add(start), len)
        }
    }

    fn map(len: usize) -> std::io::Result<UmemArea> {
        Ok(UmemArea {
            map: sys::AnonymousMapping::new(len)?,
        })
    }

    fn ptr(&self) -> NonNull<u8> {
        self.map.as_ptr()
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn as_slice_ptr(&self) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(self.ptr(), self.len())
    }
}

/// The transmit half: free frames, the frames queued for TX in this batch,
/// the next-hop table and the counters.
struct XskTx {
    base: NonNull<u8>,
    area_len: usize,
    frame_size: usize,
    free: Vec<u64>,
    /// Frames the fill ring must leave for TX.
    tx_reserve: usize,
    queued: Vec<XdpDesc>,
    outbox_capacity: usize,
    /// The frame handed out by `reserve`, with its destination MAC, or the
    /// next hop it waits for when that is being resolved.
    reserved: Option<(u64, MacAddr, Option<IpAddr>)>,
    table: NextHopTable,
    /// Frames written for a next hop the kernel is resolving.
    parking: Parking<XdpDesc>,
    src_mac: MacAddr,
    local: Vec<SocketAddr>,
    vlan: Option<u16>,
    hop_limit: u8,
    now: Timestamp,
    counters: WorkerCounters,
    /// Where messages for TCP and TLS peers go: the stream thread.
    handoff: Option<HandoffTx>,
}

// SAFETY: `base` points into the UmemArea owned by the same XskPort (see
// UmemArea's Send); nothing else holds it.
#[allow(unsafe_code)]
unsafe impl Send for XskTx {}

impl XskTx {
    /// The frame at `addr` (a frame base) as a mutable slice.
    fn frame_mut(&mut self, addr: u64) -> &mut [u8] {
        let start = addr as usize;
        assert!(start + self.frame_size <= self.area_len);
        // SAFETY: the range lies inside the mapping (checked above), and the
        // frame is owned by us (taken from the free list), so neither the
        // kernel nor another slice touches it while this borrow lives.
        #[allow(unsafe_code)]
        unsafe {
            std::slice::from_raw_parts_mut(self.base.as_ptr().add(start), self.frame_size)
        }
    }
}

impl XskTx {
    /// Queues the parked frames whose next hop the kernel resolved, with
    /// its MAC written in; frees (and counts as `no_neighbour`) those that
    /// waited too long.
    fn release_parked(&mut self, now: Timestamp) {
        if self.parking.len() == 0 {
            return;
        }
        let XskTx {
            base,
            area_len,
            frame_size,
            free,
            queued,
            table,
            parking,
            counters,
            ..
        } = self;
        parking.release(
            table,
            now,
            |desc, mac| {
                let start = desc.addr as usize;
                assert!(start + *frame_size <= *area_len);
                // SAFETY: inside the mapping (checked above); the frame is
                // ours (parked, neither free nor on a ring).
                #[allow(unsafe_code)]
                unsafe {
                    std::ptr::copy_nonoverlapping(mac.0.as_ptr(), base.as_ptr().add(start), 6)
                };
                queued.push(desc);
            },
            |desc| {
                counters.no_neighbour += 1;
                free.push(desc.addr);
            },
        );
    }
}

impl TxSlots for XskTx {
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
        if self.queued.len() == self.outbox_capacity {
            self.counters.tx_outbox_full += 1;
            return Err(SendError::OutboxFull);
        }
        let mac = match self.table.lookup(dst.ip(), self.now) {
            NextHop::Mac(mac) => mac,
            NextHop::NoRoute => {
                self.counters.no_route += 1;
                return Err(SendError::NoRoute(dst.ip()));
            }
            // The kernel is resolving it: the datagram waits, written, for
            // the MAC (see `Parking`), unless too many already do.
            NextHop::NoNeighbour(hop) if self.parking.has_room() => {
                let Some(addr) = self.free.pop() else {
                    self.counters.tx_no_buffer += 1;
                    return Err(SendError::NoBuffer);
                };
                self.reserved = Some((addr, MacAddr([0; 6]), Some(hop)));
                let offset = payload_offset(dst.is_ipv6(), self.vlan.is_some());
                return Ok(&mut self.frame_mut(addr)[offset..]);
            }
            NextHop::NoNeighbour(_) => {
                self.counters.no_neighbour += 1;
                return Err(SendError::NoNeighbour(dst.ip()));
            }
            NextHop::RequestLost(_) => {
                self.counters.no_neighbour += 1;
                self.counters.neighbour_requests_lost += 1;
                return Err(SendError::NoNeighbour(dst.ip()));
            }
        };
        let Some(addr) = self.free.pop() else {
            self.counters.tx_no_buffer += 1;
            return Err(SendError::NoBuffer);
        };
        self.reserved = Some((addr, mac, None));
        let offset = payload_offset(dst.is_ipv6(), self.vlan.is_some());
        Ok(&mut self.frame_mut(addr)[offset..])
    }

    fn commit(&mut self, to: Peer, len: usize) {
        if to.transport.is_stream() {
            // Handed to the stream thread; a full ring drops it, counted.
            if !self.handoff.as_mut().is_some_and(|h| h.commit(to, len)) {
                self.counters.no_stream_path += 1;
            }
            return;
        }
        let dst = to.addr;
        let Some((addr, dst_mac, waits_for)) = self.reserved.take() else {
            return;
        };
        let src = local_for(&self.local, &dst).expect("checked in reserve");
        let headers = UdpFrameHeaders {
            src_mac: self.src_mac,
            dst_mac,
            vlan: self.vlan,
            src,
            dst,
            hop_limit: self.hop_limit,
        };
        match write_udp_frame(self.frame_mut(addr), &headers, len) {
            Ok(total) => {
                let desc = XdpDesc {
                    addr,
                    len: total as u32,
                    options: 0,
                };
                match waits_for {
                    None => self.queued.push(desc),
                    Some(hop) => {
                        if !self.parking.park(desc, hop, self.now) {
                            // `reserve` checked for room; counted all the same.
                            self.counters.no_neighbour += 1;
                            self.free.push(addr);
                        }
                    }
                }
            }
            Err(_) => {
                // Length was checked by the Outbox against this very buffer,
                // so this is unreachable in practice; counted all the same.
                self.counters.tx_payload_rejected += 1;
                self.free.push(addr);
            }
        }
    }

    fn abandon(&mut self) {
        if let Some((addr, _, _)) = self.reserved.take() {
            self.free.push(addr);
        }
        self.counters.tx_payload_rejected += 1;
    }
}

/// A received frame that holds a datagram for the handler: where its UMEM
/// frame starts, where its payload lies in the UMEM, and its addresses.
#[derive(Clone, Copy)]
struct RxFrame {
    base_addr: u64,
    payload: usize,
    len: usize,
    src: SocketAddr,
    dst: SocketAddr,
}

/// One AF_XDP socket bound to one RX queue, with its UMEM and rings.
pub struct XskPort {
    // Field order is drop order: rings and sockets before the memory.
    device: DeviceQueue,
    rx: RingRx,
    tx_ring: RingTx,
    user: User,
    kind: IoKind,
    need_wakeup: bool,
    batch: usize,
    fill_size: u32,
    rx_descs: Vec<XdpDesc>,
    /// The datagrams of the batch being received.
    rx_frames: Vec<RxFrame>,
    vlan: Option<u16>,
    tx: XskTx,
    area: UmemArea,
}

struct Bound {
    device: DeviceQueue,
    rx: RingRx,
    tx: RingTx,
    user: User,
}

fn bind(
    config: &DataplaneConfig,
    area: &UmemArea,
    info: &IfInfo,
    flags: u16,
) -> Result<Bound, (&'static str, std::io::Error)> {
    let x = &config.xsk;
    let errno = |step: &'static str| {
        move |e: xdpilone::Errno| (step, std::io::Error::from_raw_os_error(e.get_raw().abs()))
    };
    let umem_config = UmemConfig {
        fill_size: x.fill_ring,
        complete_size: x.completion_ring,
        frame_size: x.frame_size,
        headroom: 0,
        flags: 0,
    };
    // SAFETY: the area is page aligned (fresh mmap), `frame_count *
    // frame_size` bytes long, and outlives every ring made from it (it is
    // the last field of XskPort).
    #[allow(unsafe_code)]
    let umem = unsafe { Umem::new(umem_config, area.as_slice_ptr()) }
        .map_err(errno("UMEM registration"))?;
    let sock = Socket::with_shared(info, &umem).map_err(errno("socket"))?;
    let device = umem
        .fq_cq(&sock)
        .map_err(errno("fill/completion ring setup"))?;
    let user = umem
        .rx_tx(
            &sock,
            &SocketConfig {
                rx_size: NonZeroU32::new(x.rx_ring),
                tx_size: NonZeroU32::new(x.tx_ring),
                bind_flags: flags,
            },
        )
        .map_err(errno("RX/TX ring setup"))?;
    let rx = user.map_rx().map_err(errno("RX ring mmap"))?;
    let tx = user.map_tx().map_err(errno("TX ring mmap"))?;
    umem.bind(&user).map_err(errno("bind"))?;
    Ok(Bound {
        device,
        rx,
        tx,
        user,
    })
}

impl XskPort {
    /// Creates the UMEM, binds a socket to `config.interface` queue `queue`
    /// (zero-copy first unless `xsk.zero_copy = "off"`), fills the fill
    /// ring, and prepares `table` for next-hop lookups. `src_mac` is the
    /// interface's MAC.
    pub(crate) fn open(
        config: &DataplaneConfig,
        queue: u32,
        src_mac: MacAddr,
        table: NextHopTable,
    ) -> Result<XskPort, XskError> {
        let x = &config.xsk;
        let kernel = |step: &'static str, source: std::io::Error| XskError::Kernel {
            step,
            interface: config.interface.clone(),
            queue,
            source,
        };
        let frame_size = x.frame_size as usize;
        let area = UmemArea::map(x.frame_count as usize * frame_size)
            .map_err(|e| kernel("UMEM mmap", e))?;
        let name = CString::new(config.interface.as_str()).map_err(|_| {
            kernel(
                "interface name",
                std::io::Error::from(std::io::ErrorKind::InvalidInput),
            )
        })?;
        let mut info = IfInfo::invalid();
        info.from_name(&name).map_err(|e| {
            kernel(
                "interface lookup",
                std::io::Error::from_raw_os_error(e.get_raw()),
            )
        })?;
        info.set_queue(queue);

        let wakeup = SocketConfig::XDP_BIND_NEED_WAKEUP;
        let (bound, kind) = match x.zero_copy {
            ZeroCopy::Off => (
                bind(config, &area, &info, wakeup | SocketConfig::XDP_BIND_COPY)
                    .map_err(|(s, e)| kernel(s, e))?,
                IoKind::AfXdpCopy,
            ),
            ZeroCopy::Required => (
                bind(
                    config,
                    &area,
                    &info,
                    wakeup | SocketConfig::XDP_BIND_ZEROCOPY,
                )
                .map_err(|(_, source)| XskError::ZeroCopyUnsupported {
                    interface: config.interface.clone(),
                    queue,
                    source,
                })?,
                IoKind::AfXdpZeroCopy,
            ),
            ZeroCopy::Auto => {
                match bind(
                    config,
                    &area,
                    &info,
                    wakeup | SocketConfig::XDP_BIND_ZEROCOPY,
                ) {
                    Ok(b) => (b, IoKind::AfXdpZeroCopy),
                    // The failed attempt's sockets are closed by now; copy
                    // mode starts over on fresh ones.
                    Err(_) => (
                        bind(config, &area, &info, wakeup | SocketConfig::XDP_BIND_COPY)
                            .map_err(|(s, e)| kernel(s, e))?,
                        IoKind::AfXdpCopy,
                    ),
                }
            }
        };
        let mut free: Vec<u64> = (0..u64::from(x.frame_count))
            .rev()
            .map(|i| i * frame_size as u64)
            .collect();
        free.reserve(x.frame_count as usize);
        let mut port = XskPort {
            device: bound.device,
            rx: bound.rx,
            tx_ring: bound.tx,
            user: bound.user,
            kind,
            need_wakeup: true,
            batch: config.batch,
            fill_size: x.fill_ring,
            rx_descs: Vec::with_capacity(config.batch),
            rx_frames: Vec::with_capacity(config.batch),
            vlan: config.vlan,
            tx: XskTx {
                base: area.ptr(),
                area_len: area.len(),
                frame_size,
                free,
                tx_reserve: config.outbox_capacity,
                queued: Vec::with_capacity(config.outbox_capacity + PARKED_MAX),
                outbox_capacity: config.outbox_capacity,
                reserved: None,
                table,
                parking: Parking::new(PARKED_MAX, PARKED_FOR),
                src_mac,
                local: config.local.clone(),
                vlan: config.vlan,
                hop_limit: config.hop_limit,
                now: crate::now(),
                counters: WorkerCounters::default(),
                handoff: None,
            },
            area,
        };
        port.refill();
        Ok(port)
    }

    /// Messages for TCP and TLS peers go to the stream thread through
    /// `handoff` (without one they are dropped as `no_stream_path`).
    pub fn set_handoff(&mut self, handoff: HandoffTx) {
        self.tx.handoff = Some(handoff);
    }

    /// The socket's file descriptor, for the XSKMAP.
    pub fn raw_fd(&self) -> RawFd {
        self.user.as_raw_fd()
    }

    /// Copy or zero-copy.
    pub fn kind(&self) -> IoKind {
        self.kind
    }

    /// Tops the fill ring up from the free frames, leaving `tx_reserve`
    /// frames for transmission.
    fn refill(&mut self) {
        let in_ring = self.device.pending();
        let room = self.fill_size.saturating_sub(in_ring);
        if room == 0 {
            return;
        }
        let spare = self.tx.free.len().saturating_sub(self.tx.tx_reserve);
        let want = (room as usize).min(spare) as u32;
        if (want as usize) < room as usize {
            self.tx.counters.fill_shortfalls += 1;
        }
        if want == 0 {
            return;
        }
        let mut writer = self.device.fill(want);
        // Hand over exactly as many frames as slots were reserved: the
        // ring's insert zips the iterator first, so a longer iterator would
        // lose one frame per call.
        let cap = writer.capacity() as usize;
        let free = &mut self.tx.free;
        let start = free.len() - cap.min(free.len());
        writer.insert(free.drain(start..));
        writer.commit();
    }

    /// Kicks the kernel to transmit. Copy mode transmits only from sendto,
    /// a bounded budget per call, so it is kicked while anything is pending
    /// (a few times at most per loop); zero-copy only when the ring asks.
    fn kick(&mut self) {
        match self.kind {
            IoKind::AfXdpCopy => {
                for _ in 0..COPY_KICKS {
                    if self.tx_ring.pending() == 0 {
                        break;
                    }
                    self.kick_once();
                }
            }
            _ => {
                if self.tx_ring.pending() > 0 && self.tx_ring.needs_wakeup() {
                    self.kick_once();
                }
            }
        }
    }

    /// One sendto kick, with what the kernel said counted: in copy mode a
    /// frame the device drops (a veth whose peer's backlog is full) comes
    /// back through the completion ring as if sent, and the kick's error is
    /// the only trace of it.
    fn kick_once(&mut self) {
        self.tx.counters.tx_kicks += 1;
        match sys::xsk_kick(&self.user.as_raw_fd()) {
            sys::XskKick::Sent | sys::XskKick::Again => {}
            // Only copy mode transmits in the kick (EBUSY there is
            // NET_XMIT_DROP); a zero-copy driver's wakeup may say EBUSY
            // for a busy queue, and the frame is still sent later.
            sys::XskKick::DeviceDropped if self.kind == IoKind::AfXdpCopy => {
                // The kernel stops at the first frame the device drops.
                self.tx.counters.tx_device_dropped += 1;
                self.tx.counters.transmitted = self.tx.counters.transmitted.saturating_sub(1);
            }
            sys::XskKick::DeviceDropped => {}
            sys::XskKick::Failed(_) => self.tx.counters.tx_kick_errors += 1,
        }
    }

    /// Returns completed TX frames to the free list.
    fn reap_completions(&mut self) {
        let mut reader = self.device.complete(self.fill_size);
        let mask = !(self.tx.frame_size as u64 - 1);
        while let Some(addr) = reader.read() {
            self.tx.free.push(addr & mask);
        }
        reader.release();
    }
}

impl PacketIo for XskPort {
    fn kind(&self) -> IoKind {
        self.kind
    }

    fn counters(&mut self) -> &mut WorkerCounters {
        &mut self.tx.counters
    }

    fn receive<R: Receiver>(&mut self, now: Timestamp, rx: &mut R) -> usize {
        self.tx.now = now;
        self.rx_descs.clear();
        {
            let mut reader = self.rx.receive(self.batch as u32);
            while let Some(desc) = reader.read() {
                self.rx_descs.push(desc);
            }
            reader.release();
        }
        let received = self.rx_descs.len();
        if received == 0 {
            // With NEED_WAKEUP a zero-copy driver may wait for a poll before
            // it uses the fill ring again.
            if self.need_wakeup && self.device.needs_wakeup() {
                self.device.wake();
            }
            return 0;
        }
        // First pass: check and parse every frame; the ones that are not
        // datagrams for the handler are counted and their frames freed.
        let mask = !(self.tx.frame_size as u64 - 1);
        self.rx_frames.clear();
        for i in 0..received {
            let desc = self.rx_descs[i];
            let start = desc.addr as usize;
            let end = start + desc.len as usize;
            let base_addr = desc.addr & mask;
            self.tx.counters.received += 1;
            if end > self.area.len() || end > (base_addr as usize + self.tx.frame_size) {
                // The kernel never hands out such a descriptor; if it did,
                // the frame is refused, not read.
                self.tx.counters.malformed[0] += 1;
                self.tx.free.push(base_addr);
                continue;
            }
            match UdpFrame::parse(self.area.bytes(start, desc.len as usize)) {
                Err(e) => self.tx.counters.malformed[frame_error_index(&e)] += 1,
                Ok(f) if f.vlan != self.vlan => self.tx.counters.wrong_vlan += 1,
                Ok(f) => {
                    let payload = f.payload_range();
                    self.rx_frames.push(RxFrame {
                        base_addr,
                        payload: start + payload.start,
                        len: payload.len(),
                        src: f.src,
                        dst: f.dst,
                    });
                    continue;
                }
            }
            self.tx.free.push(base_addr);
        }
        let area = &self.area;
        rx.prepare(&mut self.rx_frames.iter().map(|f| area.bytes(f.payload, f.len)));
        // Second pass: handle them, in the same order.
        for i in 0..self.rx_frames.len() {
            let f = self.rx_frames[i];
            let pkt = Datagram::udp(f.src, f.dst, self.area.bytes(f.payload, f.len));
            let result = rx.handle(&pkt, &mut Outbox::new(&mut self.tx));
            self.tx.counters.count_handled(result);
            self.tx.free.push(f.base_addr);
        }
        self.tx.counters.batches += 1;
        received
    }

    fn transmit(&mut self, now: Timestamp) {
        if let Some(h) = self.tx.handoff.as_mut() {
            h.wake();
        }
        self.reap_completions();
        self.tx.release_parked(now);
        let queued = self.tx.queued.len();
        let mut sent = 0;
        // A full TX ring gets a few kick-and-reap rounds before what is
        // left is dropped (and counted): in copy mode the kernel sends at
        // most a small budget per kick.
        for _round in 0..TX_ROUNDS {
            if sent < queued {
                let mut writer = self.tx_ring.transmit((queued - sent) as u32);
                let cap = writer.capacity() as usize;
                let n = writer.insert(self.tx.queued[sent..sent + cap].iter().copied()) as usize;
                writer.commit();
                sent += n;
                // Counted before the kick, which moves a frame the device
                // drops from here to `tx_device_dropped`.
                self.tx.counters.transmitted += n as u64;
            }
            self.kick();
            if sent == queued {
                break;
            }
            self.reap_completions();
        }
        for i in sent..queued {
            let addr = self.tx.queued[i].addr;
            self.tx.free.push(addr);
            self.tx.counters.tx_ring_full += 1;
        }
        self.tx.queued.clear();
        self.refill();
    }

    fn tx_pending(&self) -> bool {
        // Zero-copy drivers take frames on their own (or when the ring
        // asks for a wakeup, which `kick` answers).
        self.kind == IoKind::AfXdpCopy && self.tx_ring.pending() > 0
    }

    fn wait(&mut self, timeout: Duration) {
        // An interrupted or failed wait ends early; the loop polls the
        // rings again either way.
        let _ = sys::wait_readable(&self.user.as_raw_fd(), timeout);
    }

    fn apply_neighbour(&mut self, update: NeighbourUpdate) {
        self.tx.counters.neighbour_updates += 1;
        self.tx.table.apply(update);
    }

    fn finish(&mut self) {
        let XskTx {
            free,
            parking,
            counters,
            ..
        } = &mut self.tx;
        parking.drain(|desc| {
            counters.no_neighbour += 1;
            free.push(desc.addr);
        });
    }

    fn xsk_statistics(&self) -> Option<XskStatistics> {
        let s = self.user.statistics_v2().ok()?;
        Some(XskStatistics {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            tx_invalid_descs: s.tx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: s.tx_ring_empty_descs,
        })
    }
}
