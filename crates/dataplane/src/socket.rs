//! Socket mode: the worker loop over plain UDP sockets, for hosts and
//! interfaces without XDP. Every worker binds its own socket to the same
//! address and port with SO_REUSEPORT (the kernel spreads flows over them),
//! receives batches with recvmmsg, sends batches with sendmmsg, and blocks
//! in mio's poll when idle. Buffers are allocated once, at start.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use super::config::DataplaneConfig;
use super::counters::{IoKind, WorkerCounters};
use super::worker::{local_for, PacketIo, Receiver};
use super::{Datagram, Outbox, SendError, Timestamp, TxSlots};

/// Most messages per recvmmsg/sendmmsg call; the headers live on the stack.
const CHUNK: usize = 64;
/// Socket buffer size asked for (the kernel caps it at rmem_max/wmem_max).
const SOCKET_BUFFER: libc::c_int = 4 << 20;

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
}

impl TxSlots for SocketTx {
    fn reserve(&mut self, dst: SocketAddr) -> Result<&mut [u8], SendError> {
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

    fn commit(&mut self, dst: SocketAddr, len: usize) {
        self.queued.push((dst, len));
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
            let std_socket = bind_reuseport(*addr)?;
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
            tx: SocketTx {
                buf: vec![0; config.outbox_capacity * slot_size],
                slot_size,
                queued: Vec::with_capacity(config.outbox_capacity),
                capacity: config.outbox_capacity,
                local: config.local.clone(),
                counters: WorkerCounters::default(),
            },
        })
    }

    /// The addresses the sockets are bound to.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.ports.iter().map(|p| p.local).collect()
    }

    /// Receives up to `max` datagrams from port `p` into the receive slots
    /// from `first_slot` on; returns how many slots were used (datagrams
    /// received, truncated ones included).
    fn recv_from(&mut self, p: usize, max: usize, first_slot: usize) -> usize {
        let fd = self.ports[p].socket.as_raw_fd();
        let mut got = 0;
        while got < max {
            let n = (max - got).min(CHUNK);
            let base = first_slot + got;
            let mut hdrs: [libc::mmsghdr; CHUNK] = c_zeroed();
            let mut iovs: [libc::iovec; CHUNK] = c_zeroed();
            let mut names: [libc::sockaddr_storage; CHUNK] = c_zeroed();
            for k in 0..n {
                let slot = &mut self.rx_buf[(base + k) * self.slot_size..][..self.slot_size];
                iovs[k].iov_base = slot.as_mut_ptr().cast();
                iovs[k].iov_len = slot.len();
                hdrs[k].msg_hdr.msg_iov = &mut iovs[k];
                hdrs[k].msg_hdr.msg_iovlen = 1;
                hdrs[k].msg_hdr.msg_name = (&mut names[k] as *mut libc::sockaddr_storage).cast();
                hdrs[k].msg_hdr.msg_namelen =
                    std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            }
            // SAFETY: every header points at an iovec, a receive slot of
            // `slot_size` bytes and a sockaddr_storage, all alive and unaliased
            // for the duration of the call; `n` headers are initialised.
            #[allow(unsafe_code)]
            let rc = unsafe {
                libc::recvmmsg(
                    fd,
                    hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if rc <= 0 {
                // EAGAIN (drained) or an error queued by ICMP: either way
                // nothing more to read now.
                break;
            }
            let rc = rc as usize;
            for k in 0..rc {
                let h = &hdrs[k];
                let len = h.msg_len as usize;
                if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                    self.tx.counters.received += 1;
                    self.tx.counters.rx_truncated += 1;
                    continue;
                }
                match sockaddr_to_std(&names[k]) {
                    Some(src) => self.rx_meta.push((src, len, p, base + k)),
                    None => {
                        // Not an IP peer: cannot happen on an AF_INET/6
                        // socket; counted rather than trusted.
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

    fn send_family(&mut self, p: usize) {
        let fd = self.ports[p].socket.as_raw_fd();
        let v4 = self.ports[p].local.is_ipv4();
        let tx = &mut self.tx;
        let mut idx = [0usize; CHUNK];
        let mut next = 0;
        loop {
            let mut n = 0;
            while next < tx.queued.len() && n < CHUNK {
                if tx.queued[next].0.is_ipv4() == v4 {
                    idx[n] = next;
                    n += 1;
                }
                next += 1;
            }
            if n == 0 {
                return;
            }
            let mut hdrs: [libc::mmsghdr; CHUNK] = c_zeroed();
            let mut iovs: [libc::iovec; CHUNK] = c_zeroed();
            let mut names: [libc::sockaddr_storage; CHUNK] = c_zeroed();
            for k in 0..n {
                let (dst, len) = tx.queued[idx[k]];
                let slot = &mut tx.buf[idx[k] * tx.slot_size..][..len];
                iovs[k].iov_base = slot.as_mut_ptr().cast();
                iovs[k].iov_len = len;
                let namelen = std_to_sockaddr(&dst, &mut names[k]);
                hdrs[k].msg_hdr.msg_iov = &mut iovs[k];
                hdrs[k].msg_hdr.msg_iovlen = 1;
                hdrs[k].msg_hdr.msg_name = (&mut names[k] as *mut libc::sockaddr_storage).cast();
                hdrs[k].msg_hdr.msg_namelen = namelen;
            }
            let mut done = 0;
            while done < n {
                // SAFETY: headers `done..n` point at live iovecs, payload
                // slots and destination addresses owned by this frame.
                #[allow(unsafe_code)]
                let rc = unsafe {
                    libc::sendmmsg(
                        fd,
                        hdrs.as_mut_ptr().add(done),
                        (n - done) as libc::c_uint,
                        libc::MSG_DONTWAIT,
                    )
                };
                if rc > 0 {
                    tx.counters.transmitted += rc as u64;
                    done += rc as usize;
                    continue;
                }
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::WouldBlock {
                    // The socket buffer is full: the rest of this chunk is
                    // dropped and counted.
                    tx.counters.tx_would_block += (n - done) as u64;
                    done = n;
                } else if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                } else {
                    // This one message was refused; carry on with the next.
                    tx.counters.tx_error += 1;
                    done += 1;
                }
            }
        }
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
            let pkt = Datagram {
                src,
                dst: self.ports[p].local,
                payload: &self.rx_buf[slot * self.slot_size..][..len],
            };
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
            total += u64::from(sk_meminfo_drops(p.socket.as_raw_fd())?);
        }
        Some(total)
    }

    fn wait(&mut self, timeout: Duration) {
        // Interrupted or failed polls simply end the wait early; the loop
        // polls the sockets again either way.
        let _ = self.poll.poll(&mut self.events, Some(timeout));
    }
}

/// `SO_MEMINFO` from asm-generic/socket.h (not in the libc crate); the
/// value on x86-64 and arm64.
const SO_MEMINFO: libc::c_int = 55;
/// Entries of the SO_MEMINFO array (SK_MEMINFO_VARS).
const SK_MEMINFO_VARS: usize = 9;

/// Datagrams the kernel dropped on this socket (full receive buffer and
/// the like): `SK_MEMINFO_DROPS` of `SO_MEMINFO`.
fn sk_meminfo_drops(fd: std::os::fd::RawFd) -> Option<u32> {
    let mut info = [0u32; SK_MEMINFO_VARS];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: `info` and `len` describe a writable buffer of `len` bytes.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    (rc == 0).then(|| info[libc::SK_MEMINFO_DROPS as usize])
}

/// Plain C structs for which all-zero bytes are a valid value.
trait PlainC: Copy {}
impl PlainC for libc::mmsghdr {}
impl PlainC for libc::iovec {}
impl PlainC for libc::sockaddr_storage {}
impl<T: PlainC, const N: usize> PlainC for [T; N] {}

/// An all-zero C struct (null pointers, zero lengths, AF_UNSPEC).
fn c_zeroed<T: PlainC>() -> T {
    // SAFETY: PlainC is implemented only for C structs (and arrays of them)
    // made of integers and raw pointers, for which all-zero is valid.
    #[allow(unsafe_code)]
    unsafe {
        std::mem::zeroed()
    }
}

/// A nonblocking UDP socket bound to `addr` with SO_REUSEPORT (and
/// IPV6_V6ONLY for IPv6, so a v4 and a v6 socket can share a port).
fn bind_reuseport(addr: SocketAddr) -> Result<UdpSocket, SocketError> {
    let err = |what: &'static str| {
        let source = io::Error::last_os_error();
        SocketError::Io { what, addr, source }
    };
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: socket() has no memory preconditions.
    #[allow(unsafe_code)]
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(err("create"));
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    #[allow(unsafe_code)]
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    set_int(&owned, libc::SOL_SOCKET, libc::SO_REUSEPORT, one)
        .map_err(|_| err("set SO_REUSEPORT on"))?;
    if addr.is_ipv6() {
        set_int(&owned, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, one)
            .map_err(|_| err("set IPV6_V6ONLY on"))?;
    }
    // Larger buffers absorb bursts between two batches; the kernel caps the
    // size at net.core.rmem_max / wmem_max, which is fine.
    let _ = set_int(&owned, libc::SOL_SOCKET, libc::SO_RCVBUF, SOCKET_BUFFER);
    let _ = set_int(&owned, libc::SOL_SOCKET, libc::SO_SNDBUF, SOCKET_BUFFER);
    let mut storage: libc::sockaddr_storage = c_zeroed();
    let len = std_to_sockaddr(&addr, &mut storage);
    // SAFETY: `storage` holds a sockaddr_in or sockaddr_in6 of `len` bytes.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::bind(
            owned.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    if rc != 0 {
        return Err(err("bind"));
    }
    Ok(UdpSocket::from(owned))
}

fn set_int(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a c_int that outlives the call; its size is passed.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Writes `addr` into `out` as a sockaddr_in or sockaddr_in6; returns its length.
pub(crate) fn std_to_sockaddr(
    addr: &SocketAddr,
    out: &mut libc::sockaddr_storage,
) -> libc::socklen_t {
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
            write_sockaddr(out, &sin)
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
            write_sockaddr(out, &sin6)
        }
    }
}

fn write_sockaddr<T>(out: &mut libc::sockaddr_storage, value: &T) -> libc::socklen_t {
    let size = std::mem::size_of::<T>();
    assert!(size <= std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: sockaddr_storage is large and aligned enough for any
    // sockaddr type (that is its purpose); we write `size` bytes into it.
    #[allow(unsafe_code)]
    unsafe {
        std::ptr::write(
            (out as *mut libc::sockaddr_storage).cast::<MaybeUninit<T>>(),
            MaybeUninit::new(std::ptr::read(value)),
        );
    }
    size as libc::socklen_t
}

/// Reads a sockaddr_in or sockaddr_in6 the kernel wrote.
pub(crate) fn sockaddr_to_std(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, and
            // sockaddr_storage is aligned for it.
            #[allow(unsafe_code)]
            let sin = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            #[allow(unsafe_code)]
            let sin6 =
                unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses_survive_the_round_trip_through_sockaddr() {
        for a in ["198.18.0.1:5060", "[2001:db8::7]:5061"] {
            let addr: SocketAddr = a.parse().unwrap();
            let mut s: libc::sockaddr_storage = c_zeroed();
            std_to_sockaddr(&addr, &mut s);
            assert_eq!(sockaddr_to_std(&s), Some(addr));
        }
    }
}
