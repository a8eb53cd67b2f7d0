//! Who is at the other end of a Unix socket (`SO_PEERCRED`), for the control
//! socket's root-only rule (`std`'s `peer_cred` is not stable).

use std::io;
use std::mem::size_of;
use std::os::fd::AsRawFd;

/// The user id of the process that connected `sock` (as it was when it
/// connected).
pub fn peer_uid(sock: &impl AsRawFd) -> io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `cred`, a ucred we own.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// The effective user id of this process.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::geteuid()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_pair_peer_is_this_process_user() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(peer_uid(&a).unwrap(), effective_uid());
    }
}

/// Creates or truncates `path` and writes `contents` into it, without
/// following a symbolic link at `path` (`O_NOFOLLOW`: a link planted where a
/// root process writes its pid would otherwise point the write at any file)
/// and without blocking on a FIFO (`O_NONBLOCK`); refuses anything but a
/// regular file. A new file gets `mode`.
pub fn write_file_nofollow(path: &std::path::Path, contents: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(
                    e.kind(),
                    format!(
                        "{} is a symbolic link; refusing to follow it",
                        path.display()
                    ),
                )
            } else {
                e
            }
        })?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    file.set_len(0)?;
    file.write_all(contents)
}

#[cfg(test)]
mod file_tests {
    use super::*;

    #[test]
    fn a_symbolic_link_is_not_followed_and_a_fifo_not_waited_on() {
        let dir = std::env::temp_dir().join(format!("dce-sys-nofollow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        let link = dir.join("edge.pid");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let err = write_file_nofollow(&link, b"123\n", 0o644).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
        let fifo = dir.join("fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        assert!(write_file_nofollow(&fifo, b"1\n", 0o644).is_err());
        let plain = dir.join("plain.pid");
        write_file_nofollow(&plain, b"a longer first line\n", 0o644).unwrap();
        write_file_nofollow(&plain, b"42\n", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(&plain).unwrap(), "42\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
