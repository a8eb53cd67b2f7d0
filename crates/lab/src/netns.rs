//! Network namespaces, veth pairs and child processes that clean up after
//! themselves.
//!
//! Everything made here is removed when its guard drops, also when a test
//! panics. Names are unique per process (a prefix, the process id and a
//! sequence number), so tests running in parallel never collide, and they fit
//! the kernel's 15-byte interface name limit.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Longest interface name the kernel takes (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// A name unique to this process and call: `prefix`, the pid and a sequence
/// number, in hex. Panics if `prefix` is so long the name would not fit an
/// interface name (keep prefixes to 5 bytes or fewer).
pub fn unique_name(prefix: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}{:x}x{:x}", std::process::id(), seq);
    assert!(
        name.len() <= IFNAME_MAX,
        "name {name:?} is longer than {IFNAME_MAX} bytes; shorten the prefix {prefix:?}"
    );
    name
}

fn run_checked(cmd: &mut Command) -> io::Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run {cmd:?}: {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out)
}

/// Runs `ip` with the given arguments in the caller's namespace.
pub fn ip(args: &[&str]) -> io::Result<()> {
    run_checked(Command::new("ip").args(args)).map(|_| ())
}

/// A network namespace this process created; deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace named [`unique_name`]`(prefix)` with loopback up.
    pub fn create(prefix: &str) -> io::Result<Netns> {
        let name = unique_name(prefix);
        ip(&["netns", "add", &name])?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME args...`.
    pub fn ip(&self, args: &[&str]) -> io::Result<()> {
        run_checked(Command::new("ip").arg("-n").arg(&self.name).args(args)).map(|_| ())
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`,
    /// which also gives it the namespace's view of /sys).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `program args...` inside the namespace and returns its stdout;
    /// a non-zero exit is an error carrying its stderr.
    pub fn run(&self, program: &str, args: &[&str]) -> io::Result<String> {
        let out = run_checked(self.command(program).args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts `program args...` inside the namespace; the returned guard ends
    /// it (by its pid) when dropped.
    pub fn spawn(&self, program: &str, args: &[&str]) -> io::Result<ChildGuard> {
        let child = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {program}: {e}")))?;
        Ok(ChildGuard::new(child))
    }

    /// Runs `f` on a thread that has entered this namespace, and returns its
    /// result. Sockets, interfaces and BPF attachments made by `f` belong to
    /// the namespace. A panic in `f` is passed on to the caller.
    pub fn enter<F, R>(&self, f: F) -> io::Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let file = self.open()?;
        std::thread::scope(|s| {
            s.spawn(move || {
                enter_netns(&file)?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Like [`Netns::enter`] but on a thread that keeps running; for servers
    /// that live as long as a test.
    pub fn spawn_thread<F, R>(&self, f: F) -> io::Result<std::thread::JoinHandle<io::Result<R>>>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let file = self.open()?;
        Ok(std::thread::spawn(move || {
            enter_netns(&file)?;
            Ok(f())
        }))
    }

    /// The namespace's file in /run/netns, for `setns`.
    pub fn open(&self) -> io::Result<File> {
        File::open(format!("/run/netns/{}", self.name))
    }

    /// The namespace's inode: what names its folder of XDP pins
    /// (`netns-<inode>`).
    pub fn inode(&self) -> io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        Ok(std::fs::metadata(format!("/run/netns/{}", self.name))?.ino())
    }

    /// Removes the XDP pins in this namespace that no running filter owns
    /// (a filter process killed in it cannot remove its own) and returns
    /// their folders; the pins of filters that still run stay.
    pub fn remove_dead_pins(&self) -> io::Result<Vec<std::path::PathBuf>> {
        xdp::loader::remove_dead_pins_of_netns(self.inode()?)
            .map_err(|e| io::Error::other(e.to_string()))
    }

    /// Adds `addr` (CIDR notation) to `iface` and brings the link up.
    pub fn addr_up(&self, iface: &str, cidr: &str) -> io::Result<()> {
        let family = if cidr.contains(':') { "-6" } else { "-4" };
        let mut args = vec![family, "addr", "add", cidr, "dev", iface];
        if family == "-6" {
            args.push("nodad");
        }
        self.ip(&args)?;
        self.ip(&["link", "set", iface, "up"])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // A filter killed in here (SIGKILL, or a test that ended before
        // its child could clean up) left its pins in this namespace's
        // folder; they must go while the namespace still exists, since the
        // kernel gives its inode, and so its folder, to a later namespace.
        if let Err(e) = self.remove_dead_pins() {
            eprintln!(
                "warning: could not remove the pins left in network namespace {}: {e}",
                self.name
            );
        }
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!(
                "warning: could not remove network namespace {}: {e}",
                self.name
            );
        }
    }
}

/// Moves the calling thread into the network namespace behind `file`.
pub fn enter_netns(file: &File) -> io::Result<()> {
    // SAFETY: setns on a valid namespace file descriptor only changes the
    // calling thread's network namespace; the fd stays owned by `file`.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Creates a veth pair: `a_if` inside `a`, `b_if` inside `b`, both down and
/// without addresses. Deleting either namespace removes the pair.
pub fn veth_pair(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> io::Result<()> {
    veth_pair_with(a, a_if, b, b_if, &[])
}

/// [`veth_pair`] with one RX and one TX queue at each end, as an AF_XDP
/// worker needs on a lab veth: a queue without a socket would pass traffic
/// around it (PLATFORM.md).
pub fn veth_pair_one_queue(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> io::Result<()> {
    veth_pair_with(a, a_if, b, b_if, &["numtxqueues", "1", "numrxqueues", "1"])
}

/// [`veth_pair`] with `queues` RX and TX queues at each end: a veth picks
/// the receiving end's queue from the sending end's TX queue, which the
/// kernel chooses by the flow's hash, so many flows spread over the queues
/// as RSS spreads them on a NIC (and one flow stays on one queue). An
/// AF_XDP edge binds one worker to each queue.
pub fn veth_pair_queues(
    a: &Netns,
    a_if: &str,
    b: &Netns,
    b_if: &str,
    queues: u32,
) -> io::Result<()> {
    let q = queues.max(1).to_string();
    veth_pair_with(a, a_if, b, b_if, &["numtxqueues", &q, "numrxqueues", &q])
}

fn veth_pair_with(
    a: &Netns,
    a_if: &str,
    b: &Netns,
    b_if: &str,
    each_end: &[&str],
) -> io::Result<()> {
    let mut args = vec!["link", "add", a_if, "netns", a.name()];
    args.extend_from_slice(each_end);
    args.extend_from_slice(&["type", "veth", "peer", "name", b_if, "netns", b.name()]);
    args.extend_from_slice(each_end);
    ip(&args)
}

/// A child process this test or lab started; ended by its pid on drop
/// (SIGTERM, then SIGKILL after a grace period).
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
}

impl ChildGuard {
    /// Takes ownership of `child`.
    pub fn new(child: Child) -> Self {
        ChildGuard { child: Some(child) }
    }

    /// The child's pid.
    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The child itself (for its pipes).
    pub fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("child present until drop")
    }

    /// Waits up to `timeout` for the child to exit by itself; `None` if it
    /// is still running.
    pub fn wait_timeout(
        &mut self,
        timeout: Duration,
    ) -> io::Result<Option<std::process::ExitStatus>> {
        let child = self.child_mut();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM, waits up to `grace`, then SIGKILL; returns how it ended.
    pub fn stop(&mut self, grace: Duration) -> io::Result<std::process::ExitStatus> {
        let pid = self.id() as libc::pid_t;
        if let Some(status) = self.child_mut().try_wait()? {
            return Ok(status);
        }
        // SAFETY: kill on the pid of a child we own and have not reaped.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        if let Some(status) = self.wait_timeout(grace)? {
            return Ok(status);
        }
        let child = self.child_mut();
        child.kill()?;
        child.wait()
    }

    /// Sends SIGTERM every `every` until the child exits, then SIGKILL
    /// after `grace`; returns how it ended. For a process that takes a
    /// first signal as "begin stopping" (a fleet edge withdraws and serves
    /// a grace time) and a second as "stop now": one SIGTERM and a short
    /// wait would kill it mid-grace, before it removed what it made.
    pub fn stop_now(
        &mut self,
        every: Duration,
        grace: Duration,
    ) -> io::Result<std::process::ExitStatus> {
        let pid = self.id() as libc::pid_t;
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = self.child_mut().try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let child = self.child_mut();
                child.kill()?;
                return child.wait();
            }
            // SAFETY: kill on the pid of a child we own and have not reaped.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
            if let Some(status) = self.wait_timeout(every)? {
                return Ok(status);
            }
        }
    }

    /// Gives the child up without ending it.
    pub fn into_inner(mut self) -> Child {
        self.child.take().expect("child present until drop")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop(Duration::from_secs(3));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_fit_interface_names_and_differ() {
        let a = unique_name("dce");
        let b = unique_name("dce");
        assert_ne!(a, b);
        assert!(a.len() <= IFNAME_MAX && a.starts_with("dce"));
    }

    #[test]
    fn namespace_pair_pings_and_is_removed() {
        if !crate::privilege::privileged_or_skip("namespace_pair_pings_and_is_removed") {
            return;
        }
        let a = Netns::create("nta").unwrap();
        let b = Netns::create("ntb").unwrap();
        let (ia, ib) = (unique_name("va"), unique_name("vb"));
        veth_pair(&a, &ia, &b, &ib).unwrap();
        a.addr_up(&ia, "198.18.200.1/30").unwrap();
        b.addr_up(&ib, "198.18.200.2/30").unwrap();
        // A UDP datagram from a thread inside `a` reaches a socket inside `b`.
        let server = b
            .enter(|| std::net::UdpSocket::bind("198.18.200.2:0").unwrap())
            .unwrap();
        let port = server.local_addr().unwrap().port();
        server
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        a.enter(|| {
            let s = std::net::UdpSocket::bind("198.18.200.1:0").unwrap();
            s.send_to(b"hello", ("198.18.200.2", port)).unwrap();
        })
        .unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = server.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(from.ip().to_string(), "198.18.200.1");
        let name = a.name().to_string();
        drop(a);
        let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
        assert!(!String::from_utf8_lossy(&list.stdout).contains(&name));
    }
}
