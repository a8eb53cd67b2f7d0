//! `dce-edge run` as a separate process in the lab's edge namespace, the
//! way an operator runs it: a configuration and route files in a folder,
//! the real binary, signals to reload and stop it, and its stats snapshot
//! read over HTTP inside the namespace.
//!
//! The edge is started with `nsenter --net` rather than `ip netns exec`, so
//! it shares this process's mount namespace: its bpffs pins are where a
//! second `dce-edge` process (`ban --list`, `stats`) and the test look.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::bin::workspace_binary;
use super::netns::{enter_netns, ChildGuard};
use super::ping::options_ping;
use super::topology::{Lab, EDGE_ADDR};
use super::wait_until;
use dataplane::IoMode;
use telemetry::stats::{client, Snapshot};

/// Where the edge serves `/snapshot.json` and `/metrics` inside its
/// namespace (the `[metrics]` default).
pub const METRICS_URL: &str = "http://127.0.0.1:9560";

/// How long a start may take before it counts as failed: loading the XDP
/// program, binding the sockets and resolving the first neighbour take well
/// under a second on an idle box, far longer on a loaded 2-core one.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The `[health]` table of a groups file: how the edge probes its targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// One OPTIONS per target every this many milliseconds.
    pub interval_ms: u64,
    /// Unanswered probes in a row that mark a target down.
    pub down_after: u32,
    /// Answered probes in a row that mark it up again.
    pub up_after: u32,
}

/// A groups file (TOML) with an optional `[health]` table and one forward
/// group per `(name, targets)`, every target of priority 1 and weight 1.
pub fn groups_toml(health: Option<Health>, groups: &[(&str, &[SocketAddr])]) -> String {
    let mut out = String::new();
    if let Some(h) = health {
        out.push_str(&format!(
            "[health]\ninterval_ms = {}\ndown_after = {}\nup_after = {}\n\n",
            h.interval_ms, h.down_after, h.up_after
        ));
    }
    for (name, targets) in groups {
        out.push_str(&format!(
            "[[group]]\nname = \"{name}\"\naction = \"forward\"\ntargets = [\n"
        ));
        for t in *targets {
            out.push_str(&format!(
                "  {{ address = \"{t}\", priority = 1, weight = 1 }},\n"
            ));
        }
        out.push_str("]\n\n");
    }
    out
}

/// What to write into the edge's folder before starting it.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// AF_XDP (the XDP filter redirecting into the workers) or socket mode
    /// (UDP sockets, no XDP program).
    pub mode: IoMode,
    /// Worker threads (AF_XDP: one per queue, and lab veths have one).
    pub workers: usize,
    /// The groups file (TOML), written as `groups.toml`.
    pub groups: String,
    /// The prefixes file (CSV), written as `prefixes.csv`.
    pub prefixes: String,
    /// The `[filter]` allowlist; the proxy trusts it too.
    pub allowlist: Vec<String>,
    /// More lines for the `[filter]` table.
    pub filter: String,
    /// More lines for the `[proxy]` table.
    pub proxy: String,
    /// The hardware profile the edge takes its defaults from, if any.
    pub profile: Option<String>,
    /// `[dataplane.idle] busy_polls`: empty loops a worker spins before it
    /// sleeps. The tests keep it low (64) so an idle edge leaves the shared
    /// cores to the peers; `None` keeps the appliance's default for the mode.
    pub busy_polls: Option<u32>,
    /// The `dce-edge` binary to run; `None`: the workspace's, next to the
    /// running test (see [`workspace_binary`]).
    pub binary: Option<PathBuf>,
    /// `[edge] cores`: the core of each worker; `None` leaves them to the
    /// profile (unpinned without one).
    pub cores: Option<Vec<usize>>,
    /// The SIP address (`listen`); `None`: the lab edge's, [`EDGE_ADDR`]:5060.
    pub listen: Option<SocketAddr>,
    /// More TOML appended to the file as it is (`[dataplane]` sizes,
    /// `[fleet]`, ...).
    pub extra: String,
    /// The lines of a `[stream]` table (SIP over TCP and TLS); empty: none.
    pub stream: String,
}

impl EdgeConfig {
    /// A configuration for `lab`: in AF_XDP mode one worker per queue of
    /// the edge's veth, in socket mode two workers; the callers and
    /// upstreams allowlisted (not the attacker), the filter's and proxy's
    /// defaults otherwise.
    pub fn new(lab: &Lab, mode: IoMode, groups: String, prefixes: String) -> EdgeConfig {
        let allowlist = std::iter::once(&lab.callers)
            .chain(&lab.upstreams)
            .flat_map(|h| h.addrs.iter().map(|a| format!("{a}/32")))
            .collect();
        EdgeConfig {
            mode,
            workers: if mode == IoMode::AfXdp {
                lab.edge_queues as usize
            } else {
                2
            },
            groups,
            prefixes,
            allowlist,
            filter: String::new(),
            proxy: String::new(),
            profile: None,
            busy_polls: Some(64),
            binary: None,
            cores: None,
            listen: None,
            extra: String::new(),
            stream: String::new(),
        }
    }

    /// A configuration with no allowlist at all (callers earn their trust),
    /// for labs other than [`Lab`].
    pub fn plain(mode: IoMode, groups: String, prefixes: String) -> EdgeConfig {
        EdgeConfig {
            mode,
            workers: if mode == IoMode::AfXdp { 1 } else { 2 },
            groups,
            prefixes,
            allowlist: Vec::new(),
            filter: String::new(),
            proxy: String::new(),
            profile: None,
            busy_polls: Some(64),
            binary: None,
            listen: None,
            extra: String::new(),
            cores: None,
            stream: String::new(),
        }
    }

    /// The appliance configuration for an edge on `iface`.
    pub fn toml(&self, iface: &str) -> String {
        let (mode, interface) = match self.mode {
            IoMode::AfXdp => ("afxdp", format!("interface = \"{iface}\"\n")),
            // No interface: no XDP program at all in socket mode.
            IoMode::Socket => ("socket", String::new()),
        };
        let allow: Vec<String> = self.allowlist.iter().map(|a| format!("\"{a}\"")).collect();
        let profile = self
            .profile
            .as_ref()
            .map(|p| format!("profile = \"{p}\"\n\n"))
            .unwrap_or_default();
        let cores = self
            .cores
            .as_ref()
            .map(|c| {
                let list: Vec<String> = c.iter().map(|c| c.to_string()).collect();
                format!("cores = [{}]\n", list.join(", "))
            })
            .unwrap_or_default();
        let idle = self
            .busy_polls
            .map(|b| format!("[dataplane.idle]\nbusy_polls = {b}\nwait_us = 1000\n\n"))
            .unwrap_or_default();
        let listen = self
            .listen
            .unwrap_or(SocketAddr::new(IpAddr::V4(EDGE_ADDR), 5060));
        format!(
            "{profile}[edge]\nmode = \"{mode}\"\ncontrol_socket = \"run/control.sock\"\n{interface}listen = \"{listen}\"\nworkers = {}\n{cores}\n\
             {idle}\
             [routes]\ngroups = \"groups.toml\"\nprefixes = \"prefixes.csv\"\n\n\
             [proxy]\nsecret = \"0123456789abcdef0123456789abcdef\"\n{}\n\
             [filter]\nallowlist = [{}]\n{}\n\
             [events]\nfile = \"events.jsonl\"\n{}\n{}",
            self.workers,
            self.proxy,
            allow.join(", "),
            self.filter,
            self.extra,
            if self.stream.is_empty() {
                String::new()
            } else {
                format!("\n[stream]\n{}\n", self.stream)
            },
        )
    }
}

/// Runs `f` on a thread inside the named namespace.
fn in_netns<R: Send>(name: &str, f: impl FnOnce() -> R + Send) -> io::Result<R> {
    let file = File::open(format!("/run/netns/{name}"))?;
    std::thread::scope(|s| {
        s.spawn(move || {
            enter_netns(&file)?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// `dce-edge run` in the lab's edge namespace; stopped when dropped
/// (SIGTERM, repeated so that a fleet edge skips its grace time; SIGKILL
/// after 30 s).
#[derive(Debug)]
pub struct EdgeProcess {
    ns: String,
    iface: String,
    /// Where the readiness OPTIONS comes from and goes: the callers'
    /// namespace, a caller address, the edge's SIP address (`None`: ready
    /// once it serves its snapshot).
    probe: Option<(String, Ipv4Addr, SocketAddr)>,
    dir: PathBuf,
    config: PathBuf,
    final_snapshot: PathBuf,
    log: PathBuf,
    starts: u32,
    binary: Option<PathBuf>,
    child: Option<ChildGuard>,
}

impl EdgeProcess {
    /// Writes `edge.toml`, `groups.toml` and `prefixes.csv` into `dir`,
    /// starts `dce-edge run` on the lab's edge interface and returns once it
    /// answers an OPTIONS from the callers and serves its snapshot.
    pub fn start(lab: &Lab, dir: &Path, cfg: &EdgeConfig) -> io::Result<EdgeProcess> {
        let config = dir.join("edge.toml");
        std::fs::write(&config, cfg.toml(&lab.edge.iface))?;
        std::fs::write(dir.join("groups.toml"), &cfg.groups)?;
        std::fs::write(dir.join("prefixes.csv"), &cfg.prefixes)?;
        let mut edge = EdgeProcess {
            ns: lab.edge.ns.name().to_string(),
            iface: lab.edge.iface.clone(),
            probe: Some((
                lab.callers.ns.name().to_string(),
                lab.callers.addr(),
                SocketAddr::from((EDGE_ADDR, 5060)),
            )),
            dir: dir.to_path_buf(),
            config,
            final_snapshot: dir.join("final.json"),
            log: dir.join("edge-0.log"),
            starts: 0,
            binary: cfg.binary.clone(),
            child: None,
        };
        edge.restart()?;
        Ok(edge)
    }

    /// Like [`EdgeProcess::start`] for an edge of another lab than
    /// [`Lab`] (the fleet's): `dce-edge run` in namespace `ns` on `iface`,
    /// ready once it serves its snapshot (its SIP address may not be
    /// reachable yet: an edge of a fleet is reached once it announces).
    pub fn start_in(
        ns: &super::netns::Netns,
        iface: &str,
        dir: &Path,
        cfg: &EdgeConfig,
    ) -> io::Result<EdgeProcess> {
        let config = dir.join("edge.toml");
        std::fs::write(&config, cfg.toml(iface))?;
        std::fs::write(dir.join("groups.toml"), &cfg.groups)?;
        std::fs::write(dir.join("prefixes.csv"), &cfg.prefixes)?;
        let mut edge = EdgeProcess {
            ns: ns.name().to_string(),
            iface: iface.to_string(),
            probe: None,
            dir: dir.to_path_buf(),
            config,
            final_snapshot: dir.join("final.json"),
            log: dir.join("edge-0.log"),
            starts: 0,
            binary: cfg.binary.clone(),
            child: None,
        };
        edge.restart()?;
        Ok(edge)
    }

    /// Starts the edge again with the files in its folder (after
    /// [`EdgeProcess::stop`] or [`EdgeProcess::kill`]) and waits until it
    /// is ready, as [`EdgeProcess::start`] does. Each start logs to a file
    /// of its own (`edge-N.log`).
    pub fn restart(&mut self) -> io::Result<()> {
        if self.child.is_some() {
            return Err(io::Error::other("dce-edge is still running"));
        }
        self.starts += 1;
        self.log = self.dir.join(format!("edge-{}.log", self.starts));
        let _ = std::fs::remove_file(&self.final_snapshot);
        let bin = self
            .binary
            .clone()
            .unwrap_or_else(|| workspace_binary("dce-edge"));
        let mut cmd = self.nsenter(&bin);
        cmd.arg("run")
            .arg("--config")
            .arg(&self.config)
            .arg("--final-snapshot")
            .arg(&self.final_snapshot)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&self.log)?);
        let child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start dce-edge: {e}")))?;
        self.child = Some(ChildGuard::new(child));
        self.wait_ready()
    }

    fn nsenter(&self, program: &Path) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.ns))
            .arg("--")
            .arg(program);
        cmd
    }

    fn wait_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while let Some((callers_ns, caller, to)) = self.probe.clone() {
            let from = SocketAddr::from((caller, 0));
            self.check_running("before answering OPTIONS")?;
            let answered = in_netns(&callers_ns, move || {
                options_ping(from, to, Duration::from_secs(1))
            })??;
            if answered == Some(200) {
                break;
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "dce-edge did not answer OPTIONS within {READY_TIMEOUT:?} (last answer {answered:?}):\n{}",
                    self.log_text()
                )));
            }
        }
        loop {
            self.check_running("before serving its snapshot")?;
            match self.snapshot() {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(io::Error::other(format!(
                        "dce-edge did not serve {METRICS_URL}/snapshot.json: {e}\n{}",
                        self.log_text()
                    )))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn check_running(&mut self, when: &str) -> io::Result<()> {
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| io::Error::other("dce-edge is not running"))?;
        if let Some(status) = child.wait_timeout(Duration::ZERO)? {
            self.child = None;
            return Err(io::Error::other(format!(
                "dce-edge exited ({status}) {when}:\n{}",
                self.log_text()
            )));
        }
        Ok(())
    }

    /// The edge's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ChildGuard::id)
    }

    /// The folder with its configuration, route files, log and events.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The edge's interface (in its namespace).
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// What the current (or last) run wrote to standard error.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The event log (`events.jsonl`), one JSON object per line.
    pub fn events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Reads `/snapshot.json` from a thread inside the edge's namespace.
    /// The edge publishes a new snapshot every second.
    pub fn snapshot(&self) -> io::Result<Snapshot> {
        in_netns(&self.ns, || {
            client::fetch_snapshot(METRICS_URL, Duration::from_secs(5))
        })?
        .map_err(|e| io::Error::other(e.to_string()))
    }

    /// Reads the OpenMetrics text of `/metrics` (a plain HTTP GET, what a
    /// Prometheus scrape sees) from a thread inside the edge's namespace.
    pub fn scrape_metrics(&self) -> io::Result<String> {
        in_netns(&self.ns, || {
            client::fetch_metrics(METRICS_URL, Duration::from_secs(5))
        })?
        .map_err(|e| io::Error::other(e.to_string()))
    }

    /// Reads snapshots until `cond` holds (up to `timeout`) and returns the
    /// one that satisfied it; the error names `what` and shows the last
    /// snapshot read.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&Snapshot) -> bool,
    ) -> io::Result<Snapshot> {
        let mut last: Option<Snapshot> = None;
        let mut last_error = None;
        let held = wait_until(timeout, || match self.snapshot() {
            Ok(s) => {
                let hit = cond(&s);
                last = Some(s);
                hit
            }
            Err(e) => {
                last_error = Some(e.to_string());
                false
            }
        });
        match (held, last) {
            (true, Some(s)) => Ok(s),
            (_, last) => Err(io::Error::other(format!(
                "{what}: not seen within {timeout:?}; last error {last_error:?}; last snapshot:\n{}",
                last.map(|s| serde_json::to_string_pretty(&s).unwrap_or_default())
                    .unwrap_or_default()
            ))),
        }
    }

    /// Asks the running edge to read its route files again, as an operator
    /// does (`dce-edge routes reload --control ...`): whether it accepted
    /// the new table, and the edge's answer.
    pub fn reload(&self) -> io::Result<(bool, String)> {
        let control = self.control_socket();
        let control = control.to_string_lossy();
        let out = self.command(&["routes", "reload", "--control", &control])?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((out.status.success(), text))
    }

    /// Asks the running edge to apply its `[filter]` table again, as an
    /// operator does (`dce-edge filter reload --control ...`): whether it
    /// accepted, and its answer.
    pub fn filter_reload(&self) -> io::Result<(bool, String)> {
        let control = self.control_socket();
        let control = control.to_string_lossy();
        let out = self.command(&["filter", "reload", "--control", &control])?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((out.status.success(), text))
    }

    /// The id of the XDP program attached to the edge's interface, as `ip
    /// -d link show` reports it (`prog/xdp id N`), if one is.
    pub fn xdp_program_id(&self) -> io::Result<Option<u32>> {
        xdp_program_id(&self.ns, &self.iface)
    }

    /// The edge's control socket.
    pub fn control_socket(&self) -> PathBuf {
        self.dir.join("run").join("control.sock")
    }

    /// Writes `contents` into the edge's folder as `name` (a new prefixes
    /// file before [`EdgeProcess::reload`]).
    pub fn write_file(&self, name: &str, contents: &str) -> io::Result<PathBuf> {
        let path = self.dir.join(name);
        // Written whole then renamed, so a reload never reads half a file.
        let tmp = self.dir.join(format!(".{name}.new"));
        std::fs::write(&tmp, contents)?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }

    /// Stops the edge with SIGTERM (SIGKILL after 30 s), checks it exited
    /// cleanly, and returns the final snapshot it wrote.
    pub fn stop(&mut self) -> io::Result<Snapshot> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| io::Error::other("dce-edge is not running"))?;
        let status = child.stop(Duration::from_secs(30))?;
        if !status.success() {
            return Err(io::Error::other(format!(
                "dce-edge exited with {status} on SIGTERM:\n{}",
                self.log_text()
            )));
        }
        let text = std::fs::read_to_string(&self.final_snapshot).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "no final snapshot at {}: {e}\n{}",
                    self.final_snapshot.display(),
                    self.log_text()
                ),
            )
        })?;
        serde_json::from_str(&text).map_err(|e| io::Error::other(format!("final snapshot: {e}")))
    }

    /// Ends the edge with SIGKILL (no clean-up of its own) and reaps it.
    pub fn kill(&mut self) -> io::Result<()> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| io::Error::other("dce-edge is not running"))?;
        child.child_mut().kill()?;
        child.child_mut().wait().map(|_| ())
    }

    /// Runs another `dce-edge` command (`ban --list --json`, `stats`) in
    /// the edge's namespace and mount namespace, and returns its output.
    pub fn command(&self, args: &[&str]) -> io::Result<Output> {
        self.nsenter(&workspace_binary("dce-edge"))
            .args(args)
            .stdin(Stdio::null())
            .output()
    }

    /// XDP programs attached to the edge's interface, as `ip -d link show`
    /// lists them.
    pub fn xdp_programs(&self) -> io::Result<usize> {
        let out = Command::new("ip")
            .args(["-n", &self.ns, "-d", "link", "show", "dev", &self.iface])
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "ip link show {}: {}",
                self.iface,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .matches("prog/xdp")
            .count())
    }

    /// Where the XDP filter on the edge's interface pins its maps (computed
    /// from inside the namespace, as the edge computes it).
    pub fn pin_dir(&self) -> io::Result<PathBuf> {
        let iface = self.iface.clone();
        in_netns(&self.ns, move || xdp::loader::pin_dir_for(&iface))?
            .map_err(|e| io::Error::other(e.to_string()))
    }

    /// The edge's SIP address.
    pub fn sip_addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(EDGE_ADDR), 5060)
    }
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The second SIGTERM ends a fleet edge's withdrawal grace, so
            // it exits by itself (removing its pins) well before SIGKILL.
            let _ = child.stop_now(Duration::from_millis(500), Duration::from_secs(30));
        }
    }
}

/// The id of the XDP program attached to `iface` in namespace `ns`, as `ip
/// -d link show` reports it (`prog/xdp id N`), if one is.
pub fn xdp_program_id(ns: &str, iface: &str) -> io::Result<Option<u32>> {
    let out = Command::new("ip")
        .args(["-n", ns, "-d", "link", "show", "dev", iface])
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "ip link show {iface}: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.split("prog/xdp").nth(1).and_then(|rest| {
        let mut words = rest.split_whitespace();
        while let Some(w) = words.next() {
            if w == "id" {
                return words.next()?.parse().ok();
            }
        }
        None
    }))
}
