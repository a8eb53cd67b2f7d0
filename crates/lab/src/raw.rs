//! A raw AF_PACKET socket that reads every IPv4 frame of its namespace, for
//! the lab's observers (the demo counts what the edge sends to spoofed
//! sources with it).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// An AF_PACKET socket receiving IPv4 frames from every interface of the
/// calling thread's network namespace.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Opens a socket for ETH_P_IP frames (needs CAP_NET_RAW).
    pub fn open_ipv4() -> io::Result<PacketSocket> {
        let proto = (libc::ETH_P_IP as u16).to_be() as i32;
        // SAFETY: socket(2) with constant arguments; the returned descriptor
        // is owned by the OwnedFd below and closed exactly once.
        #[allow(unsafe_code)]
        let fd =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        #[allow(unsafe_code)]
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(PacketSocket { fd })
    }

    /// Receives one frame into `buf`, waiting up to `timeout`; `None` when
    /// nothing arrived in time. Returns the frame's length.
    pub fn recv_timeout(&self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll(2) on one pollfd that lives on this stack frame.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::poll(
                &mut pfd,
                1,
                timeout.as_millis().min(i32::MAX as u128) as i32,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(None)
            } else {
                Err(e)
            };
        }
        if rc == 0 {
            return Ok(None);
        }
        // SAFETY: recv(2) into `buf`, at most its length.
        #[allow(unsafe_code)]
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(None)
            } else {
                Err(e)
            };
        }
        Ok(Some(n as usize))
    }
}
