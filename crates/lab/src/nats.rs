//! `nats-server` (Debian `nats-server`) as the fleet's bus in the lab:
//! JetStream on, a store in the test's folder, one user per edge allowed to
//! write only its own keys, and ways to take it down (stop, kill, freeze)
//! and bring it back on the same store.

use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::netns::{ChildGuard, Netns};

/// The password of edge `edge` in the lab (a file per edge holds it).
pub fn lab_password(edge: &str) -> String {
    format!("lab-{edge}-secret")
}

/// A `nats-server` configuration for `fleet` listening on `listen`: each
/// of `edges` logs in as itself and may publish only under its own keys
/// (so the server, not only the signature, names the origin of a ban), read
/// the fleet's buckets and its own inbox; `monitor` may only read.
pub fn server_config(fleet: &str, edges: &[&str], listen: SocketAddr, store: &Path) -> String {
    let state = format!("$KV.dce_{fleet}_state");
    let ops = format!("$KV.dce_{fleet}_ops");
    let mut users = String::new();
    for e in edges {
        let publish = [
            format!("{state}.*.{e}.>"),
            format!("{state}.edge.{e}"),
            format!("{ops}.op.{e}.>"),
            format!("$JS.API.STREAM.CREATE.KV_dce_{fleet}_state"),
            format!("$JS.API.STREAM.CREATE.KV_dce_{fleet}_ops"),
            format!("$JS.API.CONSUMER.CREATE.KV_dce_{fleet}_state"),
            format!("$JS.API.CONSUMER.CREATE.KV_dce_{fleet}_ops"),
            format!("$JS.API.CONSUMER.DELETE.KV_dce_{fleet}_state.*"),
            format!("$JS.API.CONSUMER.DELETE.KV_dce_{fleet}_ops.*"),
        ];
        let subscribe = [
            format!("{state}.>"),
            format!("{ops}.>"),
            format!("_INBOX.{e}.>"),
        ];
        let list = |l: &[String]| {
            l.iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        users.push_str(&format!(
            "    {{ user: \"{e}\", password: \"{pw}\", permissions: {{ publish: {{ allow: [{p}] }}, subscribe: {{ allow: [{s}] }} }} }}\n",
            pw = lab_password(e),
            p = list(&publish),
            s = list(&subscribe),
        ));
    }
    format!(
        "listen: \"{listen}\"\n\
         jetstream {{ store_dir: \"{store}\" }}\n\
         authorization {{\n  users = [\n{users}  ]\n}}\n",
        store = store.display()
    )
}

/// A running `nats-server` (in a namespace, or on 127.0.0.1 when none).
#[derive(Debug)]
pub struct NatsServer {
    ns: Option<String>,
    config: PathBuf,
    log: PathBuf,
    listen: SocketAddr,
    child: Option<ChildGuard>,
    starts: u32,
}

impl NatsServer {
    /// Writes the configuration into `dir` and starts the server inside
    /// `ns` (or here), returning once it accepts connections.
    pub fn start(
        ns: Option<&Netns>,
        dir: &Path,
        fleet: &str,
        edges: &[&str],
        listen: SocketAddr,
    ) -> io::Result<NatsServer> {
        let store = dir.join("jetstream");
        std::fs::create_dir_all(&store)?;
        let config = dir.join("nats.conf");
        std::fs::write(&config, server_config(fleet, edges, listen, &store))?;
        let mut s = NatsServer {
            ns: ns.map(|n| n.name().to_string()),
            config,
            log: dir.join("nats-0.log"),
            listen,
            child: None,
            starts: 0,
        };
        s.restart()?;
        Ok(s)
    }

    /// Where it listens.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ChildGuard::id)
    }

    /// Starts it again on the same store (after [`NatsServer::kill`] or
    /// [`NatsServer::stop`]) and waits until it accepts connections.
    pub fn restart(&mut self) -> io::Result<()> {
        if self.child.is_some() {
            return Err(io::Error::other("nats-server is still running"));
        }
        self.starts += 1;
        self.log = self
            .config
            .with_file_name(format!("nats-{}.log", self.starts));
        let mut cmd = match &self.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "nats-server"]);
                c
            }
            None => Command::new("nats-server"),
        };
        cmd.arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&self.log)?);
        let child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start nats-server: {e}")))?;
        self.child = Some(ChildGuard::new(child));
        self.wait_ready(Duration::from_secs(60))
    }

    fn wait_ready(&mut self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .expect("started")
                .wait_timeout(Duration::ZERO)?
            {
                self.child = None;
                return Err(io::Error::other(format!(
                    "nats-server exited ({status}):\n{}",
                    self.log_text()
                )));
            }
            // The server logs this line once its listener is up.
            if self.log_text().contains("Server is ready") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "nats-server not ready within {timeout:?}:\n{}",
                    self.log_text()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the current run logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Ends it with SIGKILL (a crash): clients see the connection close.
    pub fn kill(&mut self) -> io::Result<()> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| io::Error::other("nats-server is not running"))?;
        child.child_mut().kill()?;
        child.child_mut().wait().map(|_| ())
    }

    /// Freezes it (SIGSTOP): no FIN, no answers; clients notice only by
    /// their pings going unanswered. [`NatsServer::thaw`] undoes it.
    pub fn freeze(&self) -> io::Result<()> {
        self.signal(libc::SIGSTOP)
    }

    /// Undoes [`NatsServer::freeze`].
    pub fn thaw(&self) -> io::Result<()> {
        self.signal(libc::SIGCONT)
    }

    fn signal(&self, sig: libc::c_int) -> io::Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| io::Error::other("nats-server is not running"))?;
        // `ip netns exec` execs the server in place, so the child's pid is
        // the server's.
        // SAFETY: kill on the pid of a child this guard owns and has not
        // reaped.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        // A frozen server would ignore SIGTERM until thawed.
        let _ = self.thaw();
    }
}

/// Writes each edge's password into `dir/<edge>.nats-password` (mode 0600)
/// and returns the paths.
pub fn write_passwords(dir: &Path, edges: &[&str]) -> io::Result<Vec<PathBuf>> {
    use std::os::unix::fs::OpenOptionsExt;
    edges
        .iter()
        .map(|e| {
            let p = dir.join(format!("{e}.nats-password"));
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&p)?;
            writeln!(f, "{}", lab_password(e))?;
            Ok(p)
        })
        .collect()
}
