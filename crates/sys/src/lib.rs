//! The kernel interfaces the dataplane, the load generator and the lab need
//! and `std` does not offer: UDP sockets bound with their options (buffers,
//! SO_REUSEPORT, IPV6_V6ONLY), batched UDP I/O (recvmmsg/sendmmsg, over our
//! own buffers or the caller's), socket addresses, drop counters,
//! level-triggered epoll and poll, anonymous mappings (the AF_XDP UMEM),
//! per-thread CPU time and AF_PACKET raw sockets. Every `unsafe` block these
//! need lives here, each with the reason it is sound.

mod peer;

pub use peer::{effective_uid, peer_uid, write_file_nofollow};

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// `SO_MEMINFO` (linux/socket.h): socket memory counters, among them drops.
const SO_MEMINFO: libc::c_int = 55;
/// Index of the drop counter in the `SO_MEMINFO` array (linux/sock_diag.h).
const SK_MEMINFO_DROPS: usize = 8;
/// Length of the `SO_MEMINFO` array.
const SK_MEMINFO_VARS: usize = 9;
/// `PACKET_QDISC_BYPASS` (linux/if_packet.h).
const PACKET_QDISC_BYPASS: libc::c_int = 20;
/// `RUSAGE_THREAD` (sys/resource.h on Linux).
const RUSAGE_THREAD: libc::c_int = 1;
/// `SO_TIMESTAMPNS` (asm-generic/socket.h, 64-bit `time_t`): the kernel
/// stamps each received datagram with its arrival time (CLOCK_REALTIME).
const SO_TIMESTAMPNS: libc::c_int = 35;
/// `PR_SET_TIMERSLACK` (linux/prctl.h).
const PR_SET_TIMERSLACK: libc::c_int = 29;
/// Control bytes kept per received datagram (a timestamp and a GRO segment
/// size message).
const CTRL_WORDS: usize = 8;
/// `SOL_UDP` (netinet/udp.h).
const SOL_UDP: libc::c_int = 17;
/// `UDP_SEGMENT` (linux/udp.h): send one buffer as equal-size datagrams.
const UDP_SEGMENT: libc::c_int = 103;
/// `UDP_GRO` (linux/udp.h): receive runs of datagrams of one flow at once.
const UDP_GRO: libc::c_int = 104;
/// Most datagrams in one segmented send.
const GSO_MAX_SEGMENTS: usize = 64;
/// Most bytes in one segmented send (an IP packet's payload limit).
const GSO_MAX_BYTES: usize = 60_000;
/// Largest datagram sent segmented: below any Ethernet path MTU, since the
/// segments must fit the device's MTU.
const GSO_MAX_SEGMENT: usize = 1400;

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn setsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: i32) -> io::Result<()> {
    // SAFETY: `value` lives for the call and its size is passed with it.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    cvt(rc).map(|_| ())
}

fn getsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<i32> {
    let mut value: i32 = 0;
    let mut len = size_of::<i32>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `value`.
    #[allow(unsafe_code)]
    let rc =
        unsafe { libc::getsockopt(fd, level, name, (&mut value as *mut i32).cast(), &mut len) };
    cvt(rc).map(|_| value)
}

/// Options for a UDP socket bound with [`bind_udp`].
#[derive(Debug, Clone, Copy, Default)]
pub struct UdpOptions {
    /// Receive and send buffer size asked for, in bytes (like SIPp's
    /// `-buff_size`); 0 leaves the kernel's default.
    pub buffer_bytes: usize,
    /// Force `buffer_bytes` past `net.core.[rw]mem_max` when the process may
    /// (see [`set_socket_buffers`]; a refused size is an error). Without it
    /// the kernel caps the size at the sysctl and a refusal is ignored: the
    /// buffers only absorb bursts.
    pub force_buffers: bool,
    /// Let several sockets share the port (SO_REUSEPORT: one per server
    /// thread or worker; the kernel spreads flows over them).
    pub reuse_port: bool,
    /// For an IPv6 address: take IPv6 only (IPV6_V6ONLY), so an IPv4 and
    /// an IPv6 socket can share a port.
    pub ipv6_only: bool,
}

/// Binds a non-blocking UDP socket with the given options. The error says
/// which step failed and for which address.
pub fn bind_udp(addr: SocketAddr, opts: UdpOptions) -> io::Result<UdpSocket> {
    let step = |what: &'static str| {
        move |e: io::Error| io::Error::new(e.kind(), format!("cannot {what} UDP {addr}: {e}"))
    };
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2); the returned fd is owned right below.
    #[allow(unsafe_code)]
    let fd = cvt(unsafe {
        libc::socket(
            family,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })
    .map_err(step("create a socket for"))?;
    // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
    #[allow(unsafe_code)]
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    if opts.reuse_port {
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)
            .map_err(step("set SO_REUSEPORT on"))?;
    }
    if opts.ipv6_only && addr.is_ipv6() {
        setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)
            .map_err(step("set IPV6_V6ONLY on"))?;
    }
    if opts.buffer_bytes > 0 {
        if opts.force_buffers {
            set_socket_buffers(&owned, opts.buffer_bytes).map_err(step("size the buffers of"))?;
        } else {
            let size = opts.buffer_bytes.min(i32::MAX as usize / 2) as i32;
            let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, size);
            let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, size);
        }
    }
    let (storage, len) = sockaddr_from(addr);
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::bind(fd, (&storage as *const libc::sockaddr_storage).cast(), len) };
    cvt(rc).map_err(step("bind"))?;
    Ok(UdpSocket::from(owned))
}

/// Asks for `bytes` of receive and send buffer on `sock` (forced past
/// `net.core.[rw]mem_max` when the process may, capped by it otherwise).
pub fn set_socket_buffers(sock: &impl AsRawFd, bytes: usize) -> io::Result<()> {
    let fd = sock.as_raw_fd();
    let size = bytes.min(i32::MAX as usize / 2) as i32;
    // The FORCE variants pass net.core.[rw]mem_max but need CAP_NET_ADMIN;
    // fall back to the plain ones (capped by the sysctl) otherwise.
    if setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size).is_err() {
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, size)?;
    }
    if setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, size).is_err() {
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, size)?;
    }
    Ok(())
}

/// Lets datagrams larger than the path MTU leave fragmented (IP_PMTUDISC_DONT)
/// instead of failing with EMSGSIZE.
pub fn allow_fragmentation(sock: &UdpSocket) -> io::Result<()> {
    setsockopt_int(
        sock.as_raw_fd(),
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_DONT,
    )
}

/// Asks the kernel to stamp every datagram this socket receives with its
/// arrival time, so latency is measured at arrival and not when the worker
/// gets to the datagram (see [`RxBatch::stamp`]).
pub fn enable_rx_timestamps(sock: &impl AsRawFd) -> io::Result<()> {
    setsockopt_int(sock.as_raw_fd(), libc::SOL_SOCKET, SO_TIMESTAMPNS, 1)
}

/// Lets the kernel hand this socket runs of datagrams of one flow in one
/// receive (each run is split again by [`RxBatch::segments`]).
pub fn enable_gro(sock: &impl AsRawFd) -> io::Result<()> {
    setsockopt_int(sock.as_raw_fd(), SOL_UDP, UDP_GRO, 1)
}

/// Lets this thread's timed sleeps end within `slack_ns` of their deadline
/// (the default slack is 50 µs).
pub fn set_timer_slack(slack_ns: u64) {
    // SAFETY: PR_SET_TIMERSLACK only changes the calling thread's timer
    // slack; the extra arguments are ignored.
    #[allow(unsafe_code)]
    unsafe {
        libc::prctl(PR_SET_TIMERSLACK, slack_ns as libc::c_ulong, 0, 0, 0);
    }
}

/// CLOCK_REALTIME now, in nanoseconds since the epoch (the clock of kernel
/// receive timestamps).
pub fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The receive buffer the kernel actually granted (it doubles the request).
pub fn recv_buffer_bytes(sock: &impl AsRawFd) -> io::Result<usize> {
    getsockopt_int(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF).map(|v| v as usize)
}

/// Datagrams the kernel dropped at this socket (full receive buffer and the
/// like), from `SO_MEMINFO`.
pub fn socket_drops(sock: &impl AsRawFd) -> io::Result<u64> {
    let mut info = [0u32; SK_MEMINFO_VARS];
    let mut len = size_of::<[u32; SK_MEMINFO_VARS]>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `info`.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    cvt(rc)?;
    Ok(u64::from(info[SK_MEMINFO_DROPS]))
}

/// Converts a socket address into the kernel's representation, in a
/// fresh `sockaddr_storage` (see [`write_sockaddr`] to fill one in place).
pub fn sockaddr_from(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    #[allow(unsafe_code)]
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = write_sockaddr(&addr, &mut storage);
    (storage, len)
}

/// Writes `addr` into `out` as a `sockaddr_in` or `sockaddr_in6` and
/// returns its length: the form recvmmsg/sendmmsg headers point at, written
/// where the caller keeps it (no copy of a whole `sockaddr_storage`).
#[inline]
pub fn write_sockaddr(addr: &SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for
            // sockaddr_in (that is its purpose).
            #[allow(unsafe_code)]
            unsafe {
                std::ptr::write((out as *mut libc::sockaddr_storage).cast(), sin)
            };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            #[allow(unsafe_code)]
            unsafe {
                std::ptr::write((out as *mut libc::sockaddr_storage).cast(), sin6)
            };
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Reads the `sockaddr_in` or `sockaddr_in6` the kernel wrote into
/// `storage`, in place; `None` for other families.
#[inline]
pub fn read_sockaddr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, and
            // sockaddr_storage is aligned for it.
            #[allow(unsafe_code)]
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            #[allow(unsafe_code)]
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// An empty socket address (AF_UNSPEC), I/O vector and message header,
/// to fill the batches' arrays with before any call points them somewhere.
fn zeroed_message_parts() -> (libc::sockaddr_storage, libc::iovec, libc::mmsghdr) {
    // SAFETY: these kernel structs are plain old data (integers and raw
    // pointers); all-zero is a valid value of each.
    #[allow(unsafe_code)]
    unsafe {
        (zeroed(), zeroed(), zeroed())
    }
}

/// Largest datagram one receive slot holds; longer ones are counted as
/// truncated (SIP over UDP stays well below, RFC 3261 section 18.1.1).
pub const RX_SLOT: usize = 4096;
/// Largest datagram one transmit slot holds.
pub const TX_SLOT: usize = 2048;

/// A batch of receive slots for `recvmmsg`, allocated once.
pub struct RxBatch {
    slot: usize,
    bufs: Vec<u8>,
    lens: Vec<usize>,
    truncated: Vec<bool>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// Control messages, in u64 words so they are aligned for cmsghdr.
    ctrl: Vec<[u64; CTRL_WORDS]>,
    stamps: Vec<Option<u64>>,
    segments: Vec<usize>,
    count: usize,
}

// SAFETY: the raw pointers inside iovec/mmsghdr only ever point into this
// struct's own vectors and are rebuilt before each use.
#[allow(unsafe_code)]
unsafe impl Send for RxBatch {}

impl RxBatch {
    /// Room for `slots` datagrams of up to [`RX_SLOT`] bytes.
    pub fn new(slots: usize) -> Self {
        Self::with_slot_size(slots, RX_SLOT)
    }

    /// Room for `slots` receives of up to `slot` bytes each (64 KiB for
    /// sockets with [`enable_gro`], whose receives carry runs of datagrams).
    pub fn with_slot_size(slots: usize, slot: usize) -> Self {
        let (addr, iov, hdr) = zeroed_message_parts();
        RxBatch {
            slot,
            bufs: vec![0; slots * slot],
            lens: vec![0; slots],
            truncated: vec![false; slots],
            addrs: vec![addr; slots],
            iovs: vec![iov; slots],
            hdrs: vec![hdr; slots],
            ctrl: vec![[0; CTRL_WORDS]; slots],
            stamps: vec![None; slots],
            segments: vec![0; slots],
            count: 0,
        }
    }

    /// Receives up to the batch size without blocking; returns how many
    /// arrived (0 when none was waiting).
    pub fn recv(&mut self, sock: &impl AsRawFd) -> io::Result<usize> {
        self.recv_flags(sock, libc::MSG_DONTWAIT)
    }

    /// Waits for at least one datagram (up to the socket's read timeout, on
    /// a blocking socket), then takes what else is waiting, up to the batch
    /// size; 0 when the timeout passed with nothing.
    pub fn recv_wait(&mut self, sock: &impl AsRawFd) -> io::Result<usize> {
        self.recv_flags(sock, libc::MSG_WAITFORONE)
    }

    fn recv_flags(&mut self, sock: &impl AsRawFd, flags: libc::c_int) -> io::Result<usize> {
        let slots = self.hdrs.len();
        for i in 0..slots {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i * self.slot..].as_mut_ptr().cast(),
                iov_len: self.slot,
            };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = self.ctrl[i].as_mut_ptr().cast();
            h.msg_controllen = CTRL_WORDS * 8;
            h.msg_flags = 0;
        }
        // SAFETY: every header points at a live buffer, address slot and
        // control buffer of this batch, sized as declared; it does not block.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                slots as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            self.count = 0;
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        let n = rc as usize;
        for i in 0..n {
            let len = self.hdrs[i].msg_len as usize;
            self.truncated[i] = self.hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.lens[i] = len.min(self.slot);
            let ctrl_len = self.hdrs[i].msg_hdr.msg_controllen;
            let (stamp, segment) = read_control(&self.ctrl[i], ctrl_len);
            self.stamps[i] = stamp;
            self.segments[i] = segment.unwrap_or(0);
        }
        self.count = n;
        Ok(n)
    }

    /// Arrival time of datagram `i` (CLOCK_REALTIME, ns), when the socket
    /// has timestamps enabled.
    pub fn stamp(&self, i: usize) -> Option<u64> {
        self.stamps[i]
    }

    /// The datagrams of receive `i`: one, or a GRO run of equal-size
    /// datagrams (the last may be shorter) split back apart.
    /// An empty datagram is one (empty) segment, so it is counted too.
    pub fn segments(&self, i: usize) -> impl Iterator<Item = &[u8]> {
        let (bytes, _, _) = self.get(i);
        let seg = match self.segments[i] {
            0 => bytes.len().max(1),
            n => n,
        };
        let empty = bytes.is_empty();
        std::iter::once(bytes)
            .filter(move |_| empty)
            .chain(bytes.chunks(seg))
    }

    /// Datagram `i` of the last receive: bytes, sender, and whether the kernel
    /// cut it to the slot size.
    pub fn get(&self, i: usize) -> (&[u8], Option<SocketAddr>, bool) {
        let start = i * self.slot;
        (
            &self.bufs[start..start + self.lens[i]],
            read_sockaddr(&self.addrs[i]),
            self.truncated[i],
        )
    }

    /// How many datagrams the last receive returned.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the last receive returned nothing.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Reads the control messages of a receive: `SCM_TIMESTAMPNS` (a
/// `timespec`, arrival time) and `UDP_GRO` (an `int`, the segment size of a
/// run). Each message is a cmsghdr (length, level, type: 16 bytes on 64-bit
/// Linux) and its data, padded to 8 bytes; the buffer is read as
/// native-endian words, without pointer casts.
fn read_control(ctrl: &[u64; CTRL_WORDS], len: usize) -> (Option<u64>, Option<usize>) {
    let (mut stamp, mut segment) = (None, None);
    let mut at = 0; // in words
    while (at + 2) * 8 <= len.min(CTRL_WORDS * 8) {
        let cmsg_len = ctrl[at] as usize;
        if cmsg_len < 16 {
            break;
        }
        let (level, kind) = if cfg!(target_endian = "little") {
            (
                (ctrl[at + 1] & 0xffff_ffff) as i32,
                (ctrl[at + 1] >> 32) as i32,
            )
        } else {
            (
                (ctrl[at + 1] >> 32) as i32,
                (ctrl[at + 1] & 0xffff_ffff) as i32,
            )
        };
        let data = at + 2;
        if level == libc::SOL_SOCKET
            && kind == SO_TIMESTAMPNS
            && cmsg_len >= 32
            && data + 1 < CTRL_WORDS
        {
            stamp = Some(
                ctrl[data]
                    .wrapping_mul(1_000_000_000)
                    .wrapping_add(ctrl[data + 1]),
            );
        } else if level == SOL_UDP && kind == UDP_GRO && cmsg_len >= 20 && data < CTRL_WORDS {
            let word = ctrl[data];
            let v = if cfg!(target_endian = "little") {
                word & 0xffff_ffff
            } else {
                word >> 32
            };
            segment = Some(v as usize).filter(|&n| n > 0);
        }
        at += cmsg_len.div_ceil(8);
    }
    (stamp, segment)
}

/// What a transmit batch reports after a flush.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlushResult {
    /// Datagrams the kernel took.
    pub sent: u64,
    /// Datagrams given up after the socket stayed full (EAGAIN) for the
    /// bounded retry; the caller's retransmission timers cover them.
    pub blocked: u64,
    /// Datagrams refused with another error.
    pub errors: u64,
    /// The last error seen, if any (errno).
    pub last_errno: i32,
}

/// A batch of outgoing datagrams for `sendmmsg`, each tagged with the index
/// of the socket it leaves from. Consecutive datagrams for the same socket go
/// out in one system call.
pub struct TxBatch {
    bufs: Vec<u8>,
    lens: Vec<usize>,
    socks: Vec<u32>,
    dsts: Vec<SocketAddr>,
    /// UDP_SEGMENT control message per header, as words (see `flush`).
    gso_ctrl: Vec<[u64; 3]>,
    /// Per header: first datagram and how many it carries.
    groups: Vec<(usize, usize)>,
    gso: bool,
    addrs: Vec<libc::sockaddr_storage>,
    addr_lens: Vec<libc::socklen_t>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    count: usize,
}

// SAFETY: as for RxBatch, the pointers only reference the struct's own vectors.
#[allow(unsafe_code)]
unsafe impl Send for TxBatch {}

impl TxBatch {
    /// Room for `slots` datagrams.
    pub fn new(slots: usize) -> Self {
        let (addr, iov, hdr) = zeroed_message_parts();
        TxBatch {
            bufs: vec![0; slots * TX_SLOT],
            lens: vec![0; slots],
            socks: vec![0; slots],
            dsts: vec![SocketAddr::from(([0, 0, 0, 0], 0)); slots],
            gso_ctrl: vec![[0; 3]; slots],
            groups: Vec::with_capacity(slots),
            gso: false,
            addrs: vec![addr; slots],
            addr_lens: vec![0; slots],
            iovs: vec![iov; slots],
            hdrs: vec![hdr; slots],
            count: 0,
        }
    }

    /// Sends runs of equal-size datagrams from one socket to one destination
    /// as one segmented send (UDP GSO): the kernel walks its stack once per
    /// run instead of once per datagram; what leaves is the same datagrams.
    /// Turned off by itself if the kernel refuses it.
    pub fn set_gso(&mut self, on: bool) {
        self.gso = on;
    }

    /// True while segmented sends are in use.
    pub fn gso(&self) -> bool {
        self.gso
    }

    /// True when no slot is left; flush before pushing more.
    pub fn is_full(&self) -> bool {
        self.count == self.lens.len()
    }

    /// Datagrams waiting.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The next free slot's buffer; call [`TxBatch::commit`] with the length
    /// written to queue it. Panics when full (check [`TxBatch::is_full`]).
    pub fn slot(&mut self) -> &mut [u8] {
        assert!(!self.is_full(), "TxBatch::slot on a full batch");
        let start = self.count * TX_SLOT;
        &mut self.bufs[start..start + TX_SLOT]
    }

    /// Queues the datagram written into [`TxBatch::slot`].
    pub fn commit(&mut self, len: usize, sock: u32, dst: SocketAddr) {
        let i = self.count;
        self.lens[i] = len.min(TX_SLOT);
        self.socks[i] = sock;
        self.dsts[i] = dst;
        self.addr_lens[i] = write_sockaddr(&dst, &mut self.addrs[i]);
        self.count += 1;
    }

    /// Queues a copy of `bytes` (cut to the slot size).
    pub fn push(&mut self, bytes: &[u8], sock: u32, dst: SocketAddr) {
        let n = bytes.len().min(TX_SLOT);
        self.slot()[..n].copy_from_slice(&bytes[..n]);
        self.commit(n, sock, dst);
    }

    /// Sends everything queued, through `fds[sock]` for each datagram, and
    /// empties the batch.
    pub fn flush(&mut self, fds: &[RawFd]) -> FlushResult {
        let mut result = FlushResult::default();
        for i in 0..self.count {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i * TX_SLOT..].as_mut_ptr().cast(),
                iov_len: self.lens[i],
            };
        }
        let mut from = 0;
        while from < self.count {
            self.build_groups(from);
            match self.send_groups(fds, &mut result) {
                None => break,
                // The kernel refused a segmented send: go on without GSO
                // from the datagram where it failed.
                Some(datagram) => {
                    self.gso = false;
                    from = datagram;
                }
            }
        }
        self.count = 0;
        result
    }

    /// Fills one header per run of datagrams from `from` on.
    fn build_groups(&mut self, from: usize) {
        self.groups.clear();
        let mut i = from;
        while i < self.count {
            let mut j = i + 1;
            let len = self.lens[i];
            if self.gso && len <= GSO_MAX_SEGMENT {
                while j < self.count
                    && j - i < GSO_MAX_SEGMENTS
                    && (j - i + 1) * len <= GSO_MAX_BYTES
                    && self.socks[j] == self.socks[i]
                    && self.dsts[j] == self.dsts[i]
                    // Every segment but the last must be full size.
                    && self.lens[j] <= len
                    && self.lens[j] > 0
                {
                    let last_short = self.lens[j] < len;
                    j += 1;
                    if last_short {
                        break;
                    }
                }
            }
            let g = self.groups.len();
            let n = j - i;
            let ctrl_ptr = if n > 1 {
                // cmsghdr { cmsg_len = CMSG_LEN(2) = 18, SOL_UDP, UDP_SEGMENT }
                // followed by the u16 segment size; 24 bytes with padding.
                let level_type = if cfg!(target_endian = "little") {
                    (SOL_UDP as u64) | ((UDP_SEGMENT as u64) << 32)
                } else {
                    ((SOL_UDP as u64) << 32) | (UDP_SEGMENT as u64)
                };
                let seg = u64::from(len as u16);
                let data = if cfg!(target_endian = "little") {
                    seg
                } else {
                    seg << 48
                };
                self.gso_ctrl[g] = [18, level_type, data];
                self.gso_ctrl[g].as_mut_ptr().cast()
            } else {
                std::ptr::null_mut()
            };
            let h = &mut self.hdrs[g].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = self.addr_lens[i];
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = n;
            h.msg_control = ctrl_ptr;
            h.msg_controllen = if n > 1 { 24 } else { 0 };
            h.msg_flags = 0;
            self.groups.push((i, n));
            i = j;
        }
    }

    /// Sends the headers built by `build_groups`; returns the first datagram
    /// of a segmented send the kernel refused, if one was.
    fn send_groups(&mut self, fds: &[RawFd], result: &mut FlushResult) -> Option<usize> {
        let total = self.groups.len();
        let mut at = 0;
        let mut spins = 0u32;
        while at < total {
            let sock = self.socks[self.groups[at].0];
            let mut end = at + 1;
            while end < total && self.socks[self.groups[end].0] == sock {
                end += 1;
            }
            let fd = fds[sock as usize];
            // SAFETY: headers at..end point at live buffers, iovecs,
            // addresses and control words of this batch, sized as declared.
            #[allow(unsafe_code)]
            let rc = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs[at..].as_mut_ptr(),
                    (end - at) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if rc > 0 {
                for g in &self.groups[at..at + rc as usize] {
                    result.sent += g.1 as u64;
                }
                at += rc as usize;
                spins = 0;
                continue;
            }
            let e = io::Error::last_os_error();
            let errno = e.raw_os_error().unwrap_or(0);
            let (first, n) = self.groups[at];
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock if spins < 64 => {
                    // The socket's send queue is full: give the kernel a
                    // moment, bounded, then give the datagrams up (counted).
                    spins += 1;
                    std::thread::yield_now();
                    continue;
                }
                _ if n > 1
                    && matches!(
                        errno,
                        libc::EINVAL | libc::EIO | libc::EOPNOTSUPP | libc::ENOPROTOOPT
                    ) =>
                {
                    return Some(first);
                }
                io::ErrorKind::WouldBlock => {
                    // Still full after the bounded wait: the rest of this
                    // run to the same socket is given up too (counted), at
                    // no further call or wait. `spins` stays spent until a
                    // send succeeds, so a flush into a queue that stays
                    // full waits at most once.
                    for g in &self.groups[at..end] {
                        result.blocked += g.1 as u64;
                    }
                    result.last_errno = errno;
                    at = end;
                }
                _ => {
                    // sendmmsg reports the error of the first header; skip
                    // it and go on with the rest.
                    result.errors += n as u64;
                    result.last_errno = errno;
                    at += 1;
                }
            }
        }
        None
    }
}

/// One datagram of [`MmsgHeaders::recv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes the kernel put into the slot.
    pub len: usize,
    /// The sender; `None` when it is not an IP address.
    pub src: Option<SocketAddr>,
    /// The datagram was longer than its slot and was cut (MSG_TRUNC).
    pub truncated: bool,
}

/// What [`MmsgHeaders::send_all`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendAllResult {
    /// Datagrams the kernel took.
    pub sent: u64,
    /// Datagrams given up because the socket's send buffer was full
    /// (EAGAIN: the rest of that system call's batch).
    pub would_block: u64,
    /// Datagrams the kernel refused with another error (each skipped).
    pub errors: u64,
}

/// The headers of batched system calls (recvmmsg/sendmmsg) over buffers the
/// caller owns: headers, I/O vectors and socket addresses allocated once,
/// pointed at the caller's slots for the length of one call. For a caller
/// that keeps its own slot layout (the dataplane's receive and outbox
/// slots); [`RxBatch`] and [`TxBatch`] own their buffers.
pub struct MmsgHeaders {
    hdrs: Box<[libc::mmsghdr]>,
    iovs: Box<[libc::iovec]>,
    names: Box<[libc::sockaddr_storage]>,
    received: usize,
}

// SAFETY: the raw pointers inside the headers point into this struct's own
// arrays or into buffers borrowed for one call; they are rebuilt before
// every call and never read outside one.
#[allow(unsafe_code)]
unsafe impl Send for MmsgHeaders {}

impl MmsgHeaders {
    /// Room for `capacity` datagrams per system call.
    pub fn new(capacity: usize) -> Self {
        let (addr, iov, hdr) = zeroed_message_parts();
        let capacity = capacity.max(1);
        MmsgHeaders {
            hdrs: vec![hdr; capacity].into_boxed_slice(),
            iovs: vec![iov; capacity].into_boxed_slice(),
            names: vec![addr; capacity].into_boxed_slice(),
            received: 0,
        }
    }

    /// Most datagrams per system call.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Points header `k` at `iov` and its address slot.
    #[inline]
    fn set(&mut self, k: usize, iov: libc::iovec, namelen: libc::socklen_t) {
        self.iovs[k] = iov;
        let h = &mut self.hdrs[k].msg_hdr;
        h.msg_name = (&mut self.names[k] as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = namelen;
        h.msg_iov = &mut self.iovs[k];
        h.msg_iovlen = 1;
        h.msg_control = std::ptr::null_mut();
        h.msg_controllen = 0;
        h.msg_flags = 0;
    }

    /// Receives without blocking one datagram into each of `slots` (at most
    /// [`MmsgHeaders::capacity`]); returns how many arrived, 0 when none
    /// waited. Read them with [`MmsgHeaders::received`].
    pub fn recv<'b>(
        &mut self,
        sock: &impl AsRawFd,
        slots: impl IntoIterator<Item = &'b mut [u8]>,
    ) -> io::Result<usize> {
        let mut n = 0;
        for slot in slots.into_iter().take(self.hdrs.len()) {
            let iov = libc::iovec {
                iov_base: slot.as_mut_ptr().cast(),
                iov_len: slot.len(),
            };
            self.set(
                n,
                iov,
                size_of::<libc::sockaddr_storage>() as libc::socklen_t,
            );
            n += 1;
        }
        self.received = 0;
        if n == 0 {
            return Ok(0);
        }
        // SAFETY: headers 0..n point at slots borrowed for this call and at
        // this struct's address and iovec arrays, sized as declared; the
        // call does not block.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        self.received = rc as usize;
        Ok(self.received)
    }

    /// Datagram `k` of the last [`MmsgHeaders::recv`] (which went into its
    /// `k`-th slot).
    #[inline]
    pub fn received(&self, k: usize) -> Received {
        assert!(k < self.received, "datagram {k} of {}", self.received);
        let h = &self.hdrs[k];
        let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        Received {
            len: h.msg_len as usize,
            src: if truncated {
                None
            } else {
                read_sockaddr(&self.names[k])
            },
            truncated,
        }
    }

    /// Sends each of `datagrams` once, without blocking, in system calls of
    /// up to [`MmsgHeaders::capacity`] datagrams. A full send buffer
    /// (EAGAIN) gives up the rest of that call's batch; another error skips
    /// the datagram refused; both are counted, never retried.
    pub fn send_all<'b>(
        &mut self,
        sock: &impl AsRawFd,
        datagrams: impl IntoIterator<Item = (&'b [u8], SocketAddr)>,
    ) -> SendAllResult {
        let fd = sock.as_raw_fd();
        let mut result = SendAllResult::default();
        let mut datagrams = datagrams.into_iter().peekable();
        while datagrams.peek().is_some() {
            let mut n = 0;
            for (payload, dst) in datagrams.by_ref().take(self.hdrs.len()) {
                let iov = libc::iovec {
                    iov_base: payload.as_ptr() as *mut libc::c_void,
                    iov_len: payload.len(),
                };
                let namelen = write_sockaddr(&dst, &mut self.names[n]);
                self.set(n, iov, namelen);
                n += 1;
            }
            let mut done = 0;
            while done < n {
                // SAFETY: headers done..n point at payloads borrowed for
                // this call (the kernel only reads them) and at this
                // struct's address and iovec arrays.
                #[allow(unsafe_code)]
                let rc = unsafe {
                    libc::sendmmsg(
                        fd,
                        self.hdrs.as_mut_ptr().add(done),
                        (n - done) as libc::c_uint,
                        libc::MSG_DONTWAIT,
                    )
                };
                if rc > 0 {
                    result.sent += rc as u64;
                    done += rc as usize;
                    continue;
                }
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::WouldBlock => {
                        result.would_block += (n - done) as u64;
                        done = n;
                    }
                    io::ErrorKind::Interrupted => {}
                    _ => {
                        // sendmmsg reports the error of the first header.
                        result.errors += 1;
                        done += 1;
                    }
                }
            }
        }
        result
    }
}

/// An anonymous private read-write mapping, populated up front
/// (MAP_POPULATE) and unmapped on drop: memory shared with the kernel, such
/// as an AF_XDP UMEM.
pub struct AnonymousMapping {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value alone.
#[allow(unsafe_code)]
unsafe impl Send for AnonymousMapping {}

impl AnonymousMapping {
    /// Maps `len` bytes (page aligned, zeroed).
    pub fn new(len: usize) -> io::Result<Self> {
        // SAFETY: an anonymous private mapping with no address hint; the
        // result is checked before use.
        #[allow(unsafe_code)]
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(AnonymousMapping {
            ptr: std::ptr::NonNull::new(p.cast()).expect("mmap never returns null on success"),
            len,
        })
    }

    /// The first byte of the mapping.
    pub fn as_ptr(&self) -> std::ptr::NonNull<u8> {
        self.ptr
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a mapping of no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for AnonymousMapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; users of the
        // memory (rings, sockets) must be gone first, which owners ensure
        // by field order.
        #[allow(unsafe_code)]
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// Waits up to `timeout` (at least 1 ms) for `fd` to become readable;
/// true when it is. An interrupted wait returns false.
pub fn wait_readable(fd: &impl AsRawFd, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd for the duration of the call.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(e)
        };
    }
    Ok(rc > 0)
}

/// A level-triggered epoll set over sockets identified by a `u64` token.
pub struct Epoll {
    fd: OwnedFd,
    events: Vec<libc::epoll_event>,
    ready: usize,
}

impl Epoll {
    /// An empty set able to report `max_events` at a time.
    pub fn new(max_events: usize) -> io::Result<Self> {
        // SAFETY: plain epoll_create1; the fd is owned right below.
        #[allow(unsafe_code)]
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: fd was just created and is owned by nobody else.
        #[allow(unsafe_code)]
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Epoll {
            fd,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; max_events.max(1)],
            ready: 0,
        })
    }

    /// Watches `sock` for readability, reporting it as `token`.
    pub fn add(&self, sock: &impl AsRawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: both fds are valid; ev lives for the call.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::epoll_ctl(
                self.fd.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                sock.as_raw_fd(),
                &mut ev,
            )
        };
        cvt(rc).map(|_| ())
    }

    /// Waits up to `timeout` (0: just look) for readable sockets; returns how
    /// many tokens [`Epoll::token`] can give.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<usize> {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `events` has room for the count passed; ts lives for the call.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::epoll_pwait2(
                self.fd.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                &ts,
                std::ptr::null(),
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            self.ready = 0;
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(e);
        }
        self.ready = rc as usize;
        Ok(self.ready)
    }

    /// The token of ready socket `i` from the last wait.
    pub fn token(&self, i: usize) -> u64 {
        self.events[i].u64
    }
}

/// CPU time (user + system) the calling thread has used so far, to the
/// nanosecond (`CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time the calling thread has used so far in user and in system mode
/// (`getrusage(RUSAGE_THREAD)`, microsecond resolution).
pub fn thread_user_system_time() -> (Duration, Duration) {
    // SAFETY: rusage is plain old data; getrusage fills it.
    #[allow(unsafe_code)]
    let usage = unsafe {
        let mut usage: libc::rusage = zeroed();
        libc::getrusage(RUSAGE_THREAD, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(usage.ru_utime), tv(usage.ru_stime))
}

/// Clock ticks per second for /proc times.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code)]
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// An AF_PACKET raw socket bound to one interface, for frames built by hand.
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
}

impl PacketSocket {
    /// Opens a raw packet socket on `ifname` (in the calling thread's network
    /// namespace). Needs CAP_NET_RAW.
    pub fn open(ifname: &str) -> io::Result<Self> {
        let ifindex = ifindex(ifname)?;
        // SAFETY: plain socket(2); protocol 0 means this socket receives
        // nothing, it only transmits. The fd is owned right below.
        #[allow(unsafe_code)]
        let fd =
            cvt(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })
                .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("AF_PACKET socket: {e} (needs CAP_NET_RAW)"),
                )
            })?;
        // SAFETY: fd was just created and is owned by nobody else.
        #[allow(unsafe_code)]
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // Skipping the qdisc is what fast senders do; where the kernel
        // refuses it, frames still go out through the qdisc.
        let _ = setsockopt_int(fd.as_raw_fd(), libc::SOL_PACKET, PACKET_QDISC_BYPASS, 1);
        Ok(PacketSocket { fd, ifindex })
    }

    /// Sends each frame of `frames` as is; returns how many the kernel took.
    /// A full queue (ENOBUFS/EAGAIN) stops the batch early without error.
    pub fn send_batch(&self, frames: &[&[u8]]) -> io::Result<usize> {
        if frames.is_empty() {
            return Ok(0);
        }
        // SAFETY: sockaddr_ll is plain old data.
        #[allow(unsafe_code)]
        let mut ll: libc::sockaddr_ll = unsafe { zeroed() };
        ll.sll_family = libc::AF_PACKET as u16;
        ll.sll_ifindex = self.ifindex;
        ll.sll_protocol = (libc::ETH_P_IP as u16).to_be();
        ll.sll_halen = 6;
        let mut iovs: Vec<libc::iovec> = frames
            .iter()
            .map(|f| libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            })
            .collect();
        // SAFETY: plain old data.
        #[allow(unsafe_code)]
        let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { zeroed() }; frames.len()];
        for (h, iov) in hdrs.iter_mut().zip(iovs.iter_mut()) {
            h.msg_hdr.msg_name = (&mut ll as *mut libc::sockaddr_ll).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at a frame borrowed for this call and at
        // `ll`, both alive until it returns; the kernel only reads them.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::sendmmsg(
                self.fd.as_raw_fd(),
                hdrs.as_mut_ptr(),
                hdrs.len() as libc::c_uint,
                0,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOBUFS) | Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(0),
                _ => Err(e),
            };
        }
        Ok(rc as usize)
    }
}

/// An AF_PACKET socket that captures frames (both directions), for tests
/// and lab observers that look at what the kernel put on the wire.
pub struct CaptureSocket {
    fd: OwnedFd,
}

impl CaptureSocket {
    /// Opens a capture of every frame on `ifname` (in the calling thread's
    /// network namespace); each `recv` waits at most `timeout`. Needs
    /// CAP_NET_RAW.
    pub fn open(ifname: &str, timeout: Duration) -> io::Result<Self> {
        let ifindex = ifindex(ifname)?;
        Self::open_on(Some(ifindex), libc::ETH_P_ALL as u16, timeout)
    }

    /// Opens a capture of the IPv4 frames of every interface of the calling
    /// thread's network namespace; each `recv` waits at most `timeout`.
    /// Needs CAP_NET_RAW.
    pub fn open_ipv4(timeout: Duration) -> io::Result<Self> {
        Self::open_on(None, libc::ETH_P_IP as u16, timeout)
    }

    fn open_on(ifindex: Option<i32>, ethertype: u16, timeout: Duration) -> io::Result<Self> {
        let proto = ethertype.to_be();
        // SAFETY: plain socket(2); the fd is owned right below.
        #[allow(unsafe_code)]
        let fd = cvt(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::c_int::from(proto),
            )
        })?;
        // SAFETY: fd was just created and is owned by nobody else.
        #[allow(unsafe_code)]
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if let Some(ifindex) = ifindex {
            // SAFETY: sockaddr_ll is plain old data.
            #[allow(unsafe_code)]
            let mut ll: libc::sockaddr_ll = unsafe { zeroed() };
            ll.sll_family = libc::AF_PACKET as u16;
            ll.sll_protocol = proto;
            ll.sll_ifindex = ifindex;
            // SAFETY: binds to a sockaddr_ll of the size given.
            #[allow(unsafe_code)]
            cvt(unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&ll as *const libc::sockaddr_ll).cast(),
                    size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            })?;
        }
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: a timeval option of the size given, alive for the call.
        #[allow(unsafe_code)]
        cvt(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        })?;
        Ok(CaptureSocket { fd })
    }

    /// The next frame into `buf`: its length, or 0 when the timeout passed.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: the kernel writes at most buf.len() bytes into buf.
        #[allow(unsafe_code)]
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        Ok(n as usize)
    }
}

/// The index of interface `name` in the calling thread's network namespace.
pub fn ifindex(name: &str) -> io::Result<i32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name with NUL"))?;
    // SAFETY: `c` is a valid NUL-terminated string for the call.
    #[allow(unsafe_code)]
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface named {name:?} in this network namespace"),
        ));
    }
    Ok(idx as i32)
}

/// The hardware (MAC) address of interface `name`, read with SIOCGIFHWADDR in
/// the calling thread's namespace (sysfs may show another namespace).
pub fn interface_mac(name: &str) -> io::Result<[u8; 6]> {
    if name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "interface name {name:?} is longer than {} bytes",
                libc::IFNAMSIZ - 1
            ),
        ));
    }
    let sock = UdpSocket::bind("0.0.0.0:0").or_else(|_| UdpSocket::bind("[::]:0"))?;
    // SAFETY: ifreq is plain old data.
    #[allow(unsafe_code)]
    let mut req: libc::ifreq = unsafe { zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR reads ifr_name and writes the union's hwaddr.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) };
    cvt(rc).map_err(|e| io::Error::new(e.kind(), format!("MAC address of {name}: {e}")))?;
    // SAFETY: after a successful SIOCGIFHWADDR the union holds a sockaddr.
    #[allow(unsafe_code)]
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (m, d) in mac.iter_mut().zip(data.iter()) {
        *m = *d as u8;
    }
    Ok(mac)
}

/// Pins the calling thread to `core` (an index into the CPUs the process may
/// use); false when the core does not exist or pinning failed.
pub fn pin_to_core(core: usize) -> bool {
    core_affinity::get_core_ids()
        .and_then(|ids| ids.into_iter().find(|c| c.id == core))
        .map(core_affinity::set_for_current)
        .unwrap_or(false)
}

/// What the kernel did with an AF_XDP transmit kick (a zero-length
/// `sendto` on the socket, which in copy mode transmits a bounded batch of
/// the TX ring's frames there and then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XskKick {
    /// It transmitted what it took from the ring.
    Sent,
    /// It stopped early and will take the rest on a later kick: its batch
    /// budget ran out, the completion ring was full or the device was busy.
    Again,
    /// The device dropped a frame it was handed (`NET_XMIT_DROP`: on a veth,
    /// its peer's backlog was full). The frame comes back through the
    /// completion ring like a sent one, so this is the only sign of it.
    DeviceDropped,
    /// Any other error (the socket is not bound, ...), with its errno.
    Failed(i32),
}

/// Kicks an AF_XDP socket's transmit path and says what the kernel did.
pub fn xsk_kick(fd: &impl AsRawFd) -> XskKick {
    // SAFETY: a zero-length sendto with no buffer and no address, which the
    // kernel accepts on an AF_XDP socket as a transmit kick.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            std::ptr::null(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null(),
            0,
        )
    };
    if rc >= 0 {
        return XskKick::Sent;
    }
    match io::Error::last_os_error().raw_os_error().unwrap_or(0) {
        libc::EAGAIN | libc::ENOBUFS | libc::EINTR => XskKick::Again,
        libc::EBUSY => XskKick::DeviceDropped,
        e => XskKick::Failed(e),
    }
}

/// Gives the calling thread the real-time policy SCHED_FIFO at `priority`
/// (1-99): it runs as soon as it is runnable, ahead of every ordinary
/// thread of its core, within the kernel's real-time throttling
/// (`kernel.sched_rt_runtime_us`, 95% of each second by default). Needs
/// CAP_SYS_NICE.
pub fn set_thread_realtime(priority: u8) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: libc::c_int::from(priority.clamp(1, 99)),
    };
    // SAFETY: sched_setscheduler on the calling thread (pid 0) with a valid
    // sched_param.
    #[allow(unsafe_code)]
    cvt(unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) }).map(|_| ())
}

/// The calling thread's kernel thread id.
pub fn thread_id() -> u32 {
    // SAFETY: gettid has no preconditions.
    #[allow(unsafe_code)]
    let tid = unsafe { libc::gettid() };
    tid as u32
}

/// How a thread has been scheduled so far (`/proc/self/task/TID/schedstat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchedStat {
    /// Time it ran on a CPU.
    pub run: Duration,
    /// Time it was runnable but waited for a CPU: other threads had its
    /// core. A packet worker that waits here while its rings overflow is
    /// starved by what else runs on its core, not short of speed.
    pub wait: Duration,
    /// Times it was given a CPU.
    pub slices: u64,
}

/// The scheduler statistics of thread `tid` of this process; `None` where
/// the kernel does not keep them.
pub fn thread_schedstat(tid: u32) -> Option<SchedStat> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    let mut f = text.split_whitespace().map(|x| x.parse::<u64>().ok());
    Some(SchedStat {
        run: Duration::from_nanos(f.next()??),
        wait: Duration::from_nanos(f.next()??),
        slices: f.next()??,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_threads_schedstat_is_readable() {
        let s = thread_schedstat(thread_id()).expect("schedstat");
        assert!(s.slices > 0);
    }

    fn sock() -> UdpSocket {
        bind_udp(
            "127.0.0.1:0".parse().unwrap(),
            UdpOptions {
                buffer_bytes: 1 << 20,
                force_buffers: true,
                ..UdpOptions::default()
            },
        )
        .unwrap()
    }

    /// Reads until `want` datagrams arrived (bounded wait).
    fn read_all(rx: &UdpSocket, batch: &mut RxBatch, want: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while got.len() < want && std::time::Instant::now() < deadline {
            let n = batch.recv(rx).unwrap();
            for i in 0..n {
                got.extend(batch.segments(i).map(<[u8]>::to_vec));
            }
            if n == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        got
    }

    fn send_mixed(gso: bool, gro: bool) -> Vec<Vec<u8>> {
        let (tx_sock, rx_sock) = (sock(), sock());
        if gro {
            enable_gro(&rx_sock).unwrap();
        }
        let dst = rx_sock.local_addr().unwrap();
        let mut tx = TxBatch::new(64);
        tx.set_gso(gso);
        // A run of equal sizes, a shorter one that may end the run, an
        // empty datagram, and another run.
        let mut sent = Vec::new();
        for i in 0..10u8 {
            sent.push(vec![b'a' + i; 300]);
        }
        sent.push(vec![b'z'; 120]);
        sent.push(Vec::new());
        for i in 0..5u8 {
            sent.push(vec![b'A' + i; 700]);
        }
        for d in &sent {
            tx.push(d, 0, dst);
        }
        let r = tx.flush(&[tx_sock.as_raw_fd()]);
        assert_eq!(r.sent, sent.len() as u64, "{r:?}");
        assert_eq!(tx.gso(), gso, "the kernel took the segmented sends");
        let mut batch = RxBatch::with_slot_size(16, 65_536);
        let got = read_all(&rx_sock, &mut batch, sent.len());
        assert_eq!(got, sent, "every datagram arrives whole and in order");
        got
    }

    #[test]
    fn segmented_sends_arrive_as_the_same_datagrams() {
        send_mixed(true, false);
    }

    #[test]
    fn gro_runs_are_split_back_into_the_datagrams_sent() {
        send_mixed(true, true);
    }

    #[test]
    fn plain_sends_arrive_as_sent() {
        send_mixed(false, true);
    }

    #[test]
    fn socket_addresses_survive_the_round_trip_through_sockaddr() {
        for a in ["198.18.0.1:5060", "[2001:db8::7]:5061", "[fe80::1%3]:5060"] {
            let addr: SocketAddr = a.parse().unwrap();
            let (storage, len) = sockaddr_from(addr);
            assert_eq!(read_sockaddr(&storage), Some(addr));
            // Written in place over an address of the other family.
            let mut reused = sockaddr_from("[2001:db8::1]:1".parse().unwrap()).0;
            assert_eq!(write_sockaddr(&addr, &mut reused), len);
            assert_eq!(read_sockaddr(&reused), Some(addr));
        }
        // SAFETY: sockaddr_storage is plain old data; zero is AF_UNSPEC.
        #[allow(unsafe_code)]
        let unspec: libc::sockaddr_storage = unsafe { zeroed() };
        assert_eq!(read_sockaddr(&unspec), None);
    }

    #[test]
    fn an_ipv4_and_an_ipv6_only_socket_share_a_port() {
        let opts = UdpOptions {
            reuse_port: true,
            ipv6_only: true,
            ..UdpOptions::default()
        };
        let v6 = bind_udp("[::]:0".parse().unwrap(), opts).unwrap();
        let port = v6.local_addr().unwrap().port();
        let v4 = bind_udp(SocketAddr::from(([0, 0, 0, 0], port)), opts).unwrap();
        assert_eq!(v4.local_addr().unwrap().port(), port);
        // A second socket of one family shares it too (SO_REUSEPORT).
        bind_udp(SocketAddr::from(([0, 0, 0, 0], port)), opts).unwrap();
    }

    #[test]
    fn a_failed_bind_names_the_step_and_the_address() {
        let first = sock();
        let addr = first.local_addr().unwrap();
        let e = bind_udp(addr, UdpOptions::default()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(
            e.to_string()
                .starts_with(&format!("cannot bind UDP {addr}: ")),
            "{e}"
        );
    }

    #[test]
    fn mmsg_headers_receive_into_and_send_from_the_callers_slots() {
        let (tx, rx) = (sock(), sock());
        let (from, to) = (tx.local_addr().unwrap(), rx.local_addr().unwrap());
        let mut hdrs = MmsgHeaders::new(4);
        let payloads: Vec<Vec<u8>> = (0..6u8)
            .map(|i| vec![b'a' + i; 10 + usize::from(i)])
            .collect();
        let sent = hdrs.send_all(&tx, payloads.iter().map(|p| (&p[..], to)));
        assert_eq!(
            sent,
            SendAllResult {
                sent: 6,
                ..SendAllResult::default()
            }
        );
        // Six slots of 12 bytes: the longer datagrams are cut and say so.
        let mut slots = [0u8; 6 * 12];
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while got.len() < 6 && std::time::Instant::now() < deadline {
            let n = hdrs.recv(&rx, slots.chunks_mut(12)).unwrap();
            assert!(n <= 4, "at most the capacity per call");
            for k in 0..n {
                let r = hdrs.received(k);
                got.push((slots[k * 12..][..r.len.min(12)].to_vec(), r));
            }
            if n == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        assert_eq!(got.len(), 6);
        for ((bytes, r), p) in got.iter().zip(&payloads) {
            assert_eq!(r.truncated, p.len() > 12);
            if r.truncated {
                assert_eq!(r.src, None);
            } else {
                assert_eq!((bytes, r.src), (p, Some(from)));
            }
        }
    }

    #[test]
    fn control_messages_give_stamp_and_segment_size() {
        let mut ctrl = [0u64; CTRL_WORDS];
        // SCM_TIMESTAMPNS: len 32, SOL_SOCKET, type 35, {1 s, 5 ns}.
        ctrl[0] = 32;
        ctrl[1] = (libc::SOL_SOCKET as u64) | ((SO_TIMESTAMPNS as u64) << 32);
        ctrl[2] = 1;
        ctrl[3] = 5;
        // UDP_GRO: len 20, SOL_UDP, type 104, int 700.
        ctrl[4] = 20;
        ctrl[5] = (SOL_UDP as u64) | ((UDP_GRO as u64) << 32);
        ctrl[6] = 700;
        if cfg!(target_endian = "little") {
            assert_eq!(read_control(&ctrl, 56), (Some(1_000_000_005), Some(700)));
        }
        assert_eq!(read_control(&ctrl, 0), (None, None));
    }
}
