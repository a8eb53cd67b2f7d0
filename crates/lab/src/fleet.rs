//! The fleet lab (issue 20): edges behind one anycast service address,
//! each announcing it over BGP through its own BIRD to a router that
//! spreads flows over them by equal-cost multipath, sharing bans and
//! verified sources over a `nats-server`.
//!
//! ```text
//!   callers 198.18.0.0/24 ──┐           ┌── e1 198.18.1.2  (lo: 198.18.255.1, 2001:db8:ffff::1)
//!                           │  router   ├── e2 198.18.2.2      BIRD AS 65001 + dce-edge run
//!   upstreams 198.18.1x.100─┤  BIRD     └── e3 198.18.3.2
//!   bus 198.18.20.2:4222 ───┘  AS 65000, ECMP (merge paths, L4 hash)
//! ```
//!
//! Every host is a namespace of its own with one veth to the router;
//! addresses come from 198.18.0.0/15. The router's BIRD learns the service
//! address from every edge that announces it and installs one multipath
//! route; its kernel hashes each flow (5-tuple) onto one edge. Edges answer
//! from the service address, probe their upstreams from their own.
//!
//! Everything started here (BIRD, nats-server, `dce-edge`, `dce-loadgen`)
//! is a child process ended by its pid when its guard drops; namespaces go
//! last, with their veths.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::edge_process::{groups_toml, EdgeConfig, EdgeProcess, Health};
use super::nats::{write_passwords, NatsServer};
use super::netns::{unique_name, veth_pair_one_queue, ChildGuard, Netns};
use super::topology::Host;
use super::wait_until;
use dataplane::IoMode;

/// The fleet's name (buckets `dce_lab_state`, `dce_lab_ops`).
pub const FLEET: &str = "lab";
/// The service address every edge announces (on its loopback).
pub const SERVICE: Ipv4Addr = Ipv4Addr::new(198, 18, 255, 1);
/// Its IPv6 twin.
pub const SERVICE6: &str = "2001:db8:ffff::1";
/// The service's SIP address.
pub const SERVICE_SIP: SocketAddrV4 = SocketAddrV4::new(SERVICE, 5060);
/// The first caller address (the callers' namespace holds consecutive ones).
pub const FIRST_CALLER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
/// A scanner's address, in the callers' namespace too.
pub const SCANNER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 200);
/// Where `nats-server` listens.
pub const BUS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 20, 2), 4222);
/// A number the edges route (prefix `44`, group `uk`).
pub const NUMBER: &str = "442071234567";
/// The proxy secret every edge shares.
pub const SECRET: &str = "0123456789abcdef0123456789abcdef";

/// Long enough for anything a loaded 2-core box does in a few seconds.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// What to build.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    /// Edges (1 to 9).
    pub edges: usize,
    /// Caller addresses.
    pub callers: usize,
    /// Upstream servers (`dce-loadgen uas`), each in its own namespace.
    pub upstreams: usize,
    /// The edges' hold-down before announcing, in seconds.
    pub hold_down_seconds: u64,
    /// How long a stopping edge serves after withdrawing, in seconds.
    pub withdraw_grace_seconds: u64,
    /// Whether the edges share state over the bus.
    pub bus: bool,
    /// The `dce-edge` binary; `None`: the workspace's.
    pub edge_binary: Option<PathBuf>,
    /// `[filter] auto_ban`: the XDP program bans a verified source that
    /// shows a scanner's fingerprint. Off by default (a spoofed packet can
    /// carry a verified caller's address); the tests and the demo of a
    /// shared ban turn it on, as an operator who accepts that would.
    pub auto_ban: bool,
}

impl Default for FleetSpec {
    fn default() -> Self {
        FleetSpec {
            edges: 3,
            callers: 8,
            upstreams: 2,
            hold_down_seconds: 1,
            withdraw_grace_seconds: 3,
            bus: true,
            edge_binary: None,
            auto_ban: false,
        }
    }
}

/// A BIRD 2 daemon in a namespace, in the foreground (so it is a child of
/// this process, ended by its pid).
#[derive(Debug)]
pub struct Bird {
    ns: String,
    conf: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    child: Option<ChildGuard>,
}

impl Bird {
    /// Writes `conf` to `dir/<name>.conf` and starts `bird -f` in `ns`;
    /// returns once its control socket answers.
    pub fn start(ns: &Netns, dir: &Path, name: &str, conf: &str) -> io::Result<Bird> {
        let conf_path = dir.join(format!("{name}.conf"));
        std::fs::write(&conf_path, conf)?;
        let mut b = Bird {
            ns: ns.name().to_string(),
            conf: conf_path,
            socket: dir.join(format!("{name}.ctl")),
            log: dir.join(format!("{name}.bird.log")),
            child: None,
        };
        b.restart()?;
        Ok(b)
    }

    /// Starts it again (after [`Bird::kill`]).
    pub fn restart(&mut self) -> io::Result<()> {
        let _ = std::fs::remove_file(&self.socket);
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "bird", "-f", "-c"])
            .arg(&self.conf)
            .arg("-s")
            .arg(&self.socket)
            .arg("-P")
            .arg(self.socket.with_extension("pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&self.log)?)
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start bird: {e}")))?;
        self.child = Some(ChildGuard::new(child));
        let ok = wait_until(Duration::from_secs(30), || {
            self.birdc("show status")
                .is_ok_and(|s| s.contains("Daemon is up and running"))
        });
        if !ok {
            return Err(io::Error::other(format!(
                "bird did not come up:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            )));
        }
        Ok(())
    }

    /// Its control socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Runs `birdc -s SOCKET command` and returns what it printed.
    pub fn birdc(&self, command: &str) -> io::Result<String> {
        let out = Command::new("birdc")
            .arg("-s")
            .arg(&self.socket)
            .args(command.split_whitespace())
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(
                String::from_utf8_lossy(&out.stderr).to_string(),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Ends it at once (SIGKILL): its BGP sessions close.
    pub fn kill(&mut self) -> io::Result<()> {
        let mut c = self
            .child
            .take()
            .ok_or_else(|| io::Error::other("bird is not running"))?;
        c.child_mut().kill()?;
        c.child_mut().wait().map(|_| ())
    }
}

/// One edge: its namespace, its BIRD, its `dce-edge run`.
#[derive(Debug)]
pub struct FleetEdge {
    /// `e1`, `e2`, ...
    pub name: String,
    /// The running edge (dropped first).
    pub process: Option<EdgeProcess>,
    /// Its BIRD.
    pub bird: Bird,
    /// Its configuration, as started.
    pub config: EdgeConfig,
    /// Its folder (configuration, logs, events).
    pub dir: PathBuf,
    /// Its namespace and its veth to the router (address `198.18.i.2`).
    pub host: Host,
}

impl FleetEdge {
    /// Its own address.
    pub fn addr(&self) -> Ipv4Addr {
        self.host.addr()
    }

    /// The running process.
    pub fn edge(&self) -> &EdgeProcess {
        self.process.as_ref().expect("the edge runs")
    }

    /// Starts `dce-edge run` (again) with its configuration.
    pub fn start(&mut self) -> io::Result<()> {
        match &mut self.process {
            Some(p) => p.restart(),
            None => {
                self.process = Some(EdgeProcess::start_in(
                    &self.host.ns,
                    &self.host.iface,
                    &self.dir,
                    &self.config,
                )?);
                Ok(())
            }
        }
    }

    /// Runs `dce-edge fleet status --json` against it.
    pub fn fleet_status(&self) -> io::Result<serde_json::Value> {
        let control = self.edge().control_socket();
        let out = self.edge().command(&[
            "fleet",
            "status",
            "--json",
            "--control",
            &control.to_string_lossy(),
        ])?;
        if !out.status.success() {
            return Err(io::Error::other(
                String::from_utf8_lossy(&out.stderr).to_string(),
            ));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| io::Error::other(e.to_string()))
    }
}

/// The lab; dropping it ends every process and removes every namespace.
#[derive(Debug)]
pub struct FleetLab {
    /// The edges (processes first, then namespaces).
    pub edges: Vec<FleetEdge>,
    /// The bus.
    pub nats: Option<NatsServer>,
    /// The router's BIRD.
    pub router_bird: Bird,
    /// Callers and the scanner (addresses 198.18.0.10.., 198.18.0.200).
    pub callers: Host,
    /// Upstream servers' hosts (their servers are the test's).
    pub upstreams: Vec<Host>,
    /// The bus's host.
    pub bus_host: Host,
    /// The router.
    pub router: Netns,
    dir: PathBuf,
}

/// Adds a host namespace linked to the router: `router_addr` on the
/// router's end, `addrs` (the first with `len`) on the host's, a default
/// route through the router, IPv6 `v6` (router ::1, host ::2) when given.
fn add_host(
    router: &Netns,
    prefix: &str,
    router_addr: Ipv4Addr,
    addrs: Vec<Ipv4Addr>,
    len: u8,
    v6: Option<&str>,
) -> io::Result<(Host, String)> {
    let ns = Netns::create(prefix)?;
    let iface = unique_name("h");
    let port = unique_name("r");
    veth_pair_one_queue(&ns, &iface, router, &port)?;
    router.addr_up(&port, &format!("{router_addr}/{len}"))?;
    for (i, a) in addrs.iter().enumerate() {
        if i == 0 {
            ns.addr_up(&iface, &format!("{a}/{len}"))?;
        } else {
            ns.ip(&["addr", "add", &format!("{a}/{len}"), "dev", &iface])?;
        }
    }
    ns.ip(&["route", "add", "default", "via", &router_addr.to_string()])?;
    if let Some(net) = v6 {
        router.addr_up(&port, &format!("{net}::1/64"))?;
        ns.addr_up(&iface, &format!("{net}::2/64"))?;
        ns.ip(&["-6", "route", "add", "default", "via", &format!("{net}::1")])?;
    }
    Ok((
        Host {
            ns,
            iface,
            addrs,
            port: port.clone(),
        },
        port,
    ))
}

fn offset(base: Ipv4Addr, n: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(base) + n as u32)
}

fn router_conf(edges: usize, dir: &Path) -> String {
    let mut c = format!(
        "log \"{}\" all;\n\
         router id 198.18.0.1;\n\
         protocol device {{ scan time 10; }}\n\
         # BGP routes to the kernel; equal paths merged into one multipath route.\n\
         protocol kernel k4 {{ ipv4 {{ import none; export where source = RTS_BGP; }}; merge paths on; }}\n\
         protocol kernel k6 {{ ipv6 {{ import none; export where source = RTS_BGP; }}; merge paths on; }}\n\
         template bgp edge {{\n\
           local as 65000;\n\
           hold time 3; keepalive time 1;\n\
           connect delay time 1; connect retry time 2; error wait time 1, 5;\n\
           ipv4 {{ import where net = {SERVICE}/32; export none; }};\n\
           ipv6 {{ import where net = {SERVICE6}/128; export none; }};\n\
         }}\n",
        dir.join("router.bird-events.log").display()
    );
    for i in 1..=edges {
        c.push_str(&format!(
            "protocol bgp e{i} from edge {{ neighbor 198.18.{i}.2 as 65001; }}\n"
        ));
    }
    c
}

fn edge_bird_conf(i: usize) -> String {
    format!(
        "router id 198.18.{i}.2;\n\
         protocol device {{ scan time 10; }}\n\
         # The service routes: dce-edge enables these when healthy.\n\
         protocol static svc4 {{ disabled; ipv4; route {SERVICE}/32 unreachable; }}\n\
         protocol static svc6 {{ disabled; ipv6; route {SERVICE6}/128 unreachable; }}\n\
         protocol bgp uplink {{\n\
           local 198.18.{i}.2 as 65001;\n\
           neighbor 198.18.{i}.1 as 65000;\n\
           hold time 3; keepalive time 1;\n\
           connect delay time 1; connect retry time 2; error wait time 1, 5;\n\
           ipv4 {{ import none; export where proto = \"svc4\"; }};\n\
           ipv6 {{ import none; export where proto = \"svc6\"; }};\n\
         }}\n"
    )
}

impl FleetLab {
    /// Builds the namespaces, starts the router's and each edge's BIRD and
    /// the bus (not the edges, not the upstream servers). Files go to
    /// `dir`. On failure, what was built is removed.
    pub fn build(spec: &FleetSpec, dir: &Path) -> io::Result<FleetLab> {
        let edges_n = spec.edges.clamp(1, 9);
        let router = Netns::create("flr")?;
        for (k, v) in [
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv6.conf.all.forwarding", "1"),
            // The flow's ports in the hash: flows of one caller spread.
            ("net.ipv4.fib_multipath_hash_policy", "1"),
            ("net.ipv6.fib_multipath_hash_policy", "1"),
        ] {
            router.run("sysctl", &["-q", "-w", &format!("{k}={v}")])?;
        }
        let mut caller_addrs: Vec<Ipv4Addr> = (0..spec.callers.clamp(1, 100))
            .map(|i| offset(FIRST_CALLER, i))
            .collect();
        caller_addrs.push(SCANNER);
        let (callers, _) = add_host(
            &router,
            "flc",
            Ipv4Addr::new(198, 18, 0, 1),
            caller_addrs,
            24,
            Some("2001:db8:100"),
        )?;
        let upstreams = (0..spec.upstreams.clamp(1, 4))
            .map(|k| {
                add_host(
                    &router,
                    "flu",
                    Ipv4Addr::new(198, 18, 10 + k as u8, 1),
                    vec![Ipv4Addr::new(198, 18, 10 + k as u8, 100)],
                    24,
                    None,
                )
                .map(|h| h.0)
            })
            .collect::<io::Result<Vec<_>>>()?;
        let (bus_host, _) = add_host(
            &router,
            "flb",
            Ipv4Addr::new(198, 18, 20, 1),
            vec![*BUS.ip()],
            24,
            None,
        )?;
        let router_bird = Bird::start(&router, dir, "router", &router_conf(edges_n, dir))?;
        let names: Vec<String> = (1..=edges_n).map(|i| format!("e{i}")).collect();
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let nats = if spec.bus {
            let nd = dir.join("bus");
            std::fs::create_dir_all(&nd)?;
            Some(NatsServer::start(
                Some(&bus_host.ns),
                &nd,
                FLEET,
                &name_refs,
                SocketAddr::V4(BUS),
            )?)
        } else {
            None
        };
        let mut lab = FleetLab {
            edges: Vec::new(),
            nats,
            router_bird,
            callers,
            upstreams,
            bus_host,
            router,
            dir: dir.to_path_buf(),
        };
        for i in 1..=edges_n {
            let name = format!("e{i}");
            let edir = dir.join(&name);
            std::fs::create_dir_all(&edir)?;
            let (host, _) = add_host(
                &lab.router,
                "fle",
                Ipv4Addr::new(198, 18, i as u8, 1),
                vec![Ipv4Addr::new(198, 18, i as u8, 2)],
                24,
                Some(&format!("2001:db8:{i}")),
            )?;
            // The service address lives on the loopback (no dummy links
            // on this kernel); answers leave from it.
            host.ns
                .ip(&["addr", "add", &format!("{SERVICE}/32"), "dev", "lo"])?;
            host.ns
                .ip(&["-6", "addr", "add", &format!("{SERVICE6}/128"), "dev", "lo"])?;
            let bird = Bird::start(&host.ns, &edir, "bird", &edge_bird_conf(i))?;
            let config = lab.edge_config(spec, i, &edir, bird.socket())?;
            lab.edges.push(FleetEdge {
                name,
                process: None,
                bird,
                config,
                dir: edir,
                host,
            });
        }
        Ok(lab)
    }

    fn edge_config(
        &self,
        spec: &FleetSpec,
        i: usize,
        edir: &Path,
        bird_socket: &Path,
    ) -> io::Result<EdgeConfig> {
        let targets: Vec<SocketAddr> = self
            .upstreams
            .iter()
            .map(|u| SocketAddr::from((u.addr(), 5060)))
            .collect();
        let health = Health {
            interval_ms: 300,
            down_after: 3,
            up_after: 2,
        };
        let mut c = EdgeConfig::plain(
            IoMode::AfXdp,
            groups_toml(Some(health), &[("uk", &targets)]),
            "prefix,group\n44,uk\n".into(),
        );
        c.listen = Some(SocketAddr::V4(SERVICE_SIP));
        c.binary = spec.edge_binary.clone();
        if spec.auto_ban {
            c.filter = "auto_ban = true\n".into();
        }
        let mut extra = format!(
            "\n[fleet]\nname = \"{FLEET}\"\nedge = \"e{i}\"\naddress = \"198.18.{i}.2\"\n\n\
             [fleet.announce]\nbird_socket = \"{}\"\nprotocols = [\"svc4\", \"svc6\"]\n\
             hold_down_seconds = {}\nmax_hold_down_seconds = 30\nwithdraw_grace_seconds = {}\n",
            bird_socket.display(),
            spec.hold_down_seconds,
            spec.withdraw_grace_seconds,
        );
        if spec.bus {
            let pw = write_passwords(edir, &[&format!("e{i}")])?;
            extra.push_str(&format!(
                "\n[fleet.bus]\nservers = [\"{BUS}\"]\nuser = \"e{i}\"\npassword_file = \"{}\"\n",
                pw[0].display()
            ));
        }
        c.extra = extra;
        Ok(c)
    }

    /// The lab's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts every edge's `dce-edge run`.
    pub fn start_edges(&mut self) -> io::Result<()> {
        for e in &mut self.edges {
            e.start()?;
        }
        Ok(())
    }

    /// The next hops of the router's route to the service address: the
    /// edges that announce it, by index.
    pub fn announcing(&self) -> Vec<usize> {
        let out = Command::new("ip")
            .args([
                "-n",
                self.router.name(),
                "route",
                "show",
                &format!("{SERVICE}/32"),
            ])
            .stdin(Stdio::null())
            .output();
        let Ok(out) = out else {
            return Vec::new();
        };
        let text = String::from_utf8_lossy(&out.stdout);
        self.edges
            .iter()
            .enumerate()
            .filter(|(_, e)| text.contains(&format!("via {} ", e.addr())))
            .map(|(i, _)| i)
            .collect()
    }

    /// Waits until exactly the edges `want` (indices) announce the service
    /// address at the router; the last route seen when it did not.
    pub fn wait_announcing(&self, want: &[usize], timeout: Duration) -> Result<(), String> {
        let mut last = Vec::new();
        if wait_until(timeout, || {
            last = self.announcing();
            last == want
        }) {
            Ok(())
        } else {
            Err(format!(
                "the router's route names edges {last:?}, not {want:?}, after {timeout:?}:\n{}",
                self.router_route()
            ))
        }
    }

    /// `ip route show` of the service address in the router.
    pub fn router_route(&self) -> String {
        Command::new("ip")
            .args([
                "-n",
                self.router.name(),
                "route",
                "show",
                &format!("{SERVICE}/32"),
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// The MAC of the router's end of the callers' link (where spoofed
    /// frames from the callers' namespace go).
    pub fn router_mac_for_callers(&self) -> io::Result<[u8; 6]> {
        // The router's address on the callers' link is 198.18.0.1: find
        // its interface from inside the router.
        let out = self
            .router
            .run("ip", &["-o", "-4", "addr", "show", "to", "198.18.0.1"])?;
        let iface = out
            .split_whitespace()
            .nth(1)
            .ok_or_else(|| io::Error::other(format!("no router interface for 198.18.0.1: {out}")))?
            .to_string();
        self.router.enter(move || sys::interface_mac(&iface))?
    }

    /// Caller addresses (not the scanner's).
    pub fn caller_addrs(&self) -> Vec<Ipv4Addr> {
        self.callers
            .addrs
            .iter()
            .copied()
            .filter(|a| *a != SCANNER)
            .collect()
    }

    /// Sum of the XDP drops under `reason` on every running edge.
    pub fn xdp_drops(&self, reason: &str) -> Vec<u64> {
        self.edges
            .iter()
            .map(|e| {
                e.process
                    .as_ref()
                    .and_then(|p| p.snapshot().ok())
                    .and_then(|s| s.xdp.map(|x| x.drops.get(reason).copied().unwrap_or(0)))
                    .unwrap_or(0)
            })
            .collect()
    }
}

/// True when `snapshot`'s ban list names `ip` (as a host).
pub fn bans_host(s: &telemetry::stats::Snapshot, ip: IpAddr) -> bool {
    let host = format!("{ip}/32");
    s.bans
        .iter()
        .any(|b| b.source == host || b.source == ip.to_string())
}

/// Waits up to `timeout` for `cond`, checking every 100 ms; how long it
/// took when it held.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    wait_until(timeout, &mut cond).then(|| start.elapsed())
}
