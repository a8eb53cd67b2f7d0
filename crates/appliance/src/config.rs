//! The appliance configuration (`dce-edge run --config FILE`): one TOML
//! file whose tables belong to the parts they configure. This module reads
//! the `[edge]` and `[dataplane]` tables, asks each part to read its own,
//! and fills what the file leaves out from the hardware profile.
//!
//! ```toml
//! profile = "lab"                  # defaults for everything not set here
//!
//! [edge]
//! mode = "afxdp"                   # afxdp | socket
//! interface = "eth0"               # AF_XDP: the NIC; XDP attaches here
//! listen = "198.18.0.1:5060"       # the edge's SIP address
//! workers = 1                      # default: the profile's
//! cores = [1]                      # default: the profile's worker cores
//!
//! [routes]
//! groups = "groups.toml"
//! prefixes = "prefixes.csv"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use ::fleet::FleetConfig;
use config::{ConfigError, SourceFile};
use dataplane::{DataplaneConfig, IoMode, NeighbourConfig, XskConfig, ZeroCopy};
use profile::{self, Profile};
use proxy::cookie::Secret;
use proxy::{ProxyConfig, ProxySection};
use route::RoutesConfig;
use telemetry::events::{EventsConfig, EventsSection};
use telemetry::metrics::{MetricsConfig, MetricsSection};
use xdp::config::{Cidr, FilterConfig, FilterSection, RateConfig, VerdictMode};

/// The `[edge]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeSection {
    /// AF_XDP (default) or socket mode.
    #[serde(default)]
    pub mode: IoMode,
    /// The NIC (AF_XDP mode; in socket mode, where to attach the XDP filter
    /// if a `[filter]` table asks for one).
    #[serde(default)]
    pub interface: Option<String>,
    /// The edge's SIP address (IPv4 or IPv6, with port).
    pub listen: Spanned<String>,
    /// A second SIP address of the other IP family.
    #[serde(default)]
    pub listen6: Option<Spanned<String>>,
    /// Worker count; default: the profile's.
    #[serde(default)]
    pub workers: Option<Spanned<u32>>,
    /// The core of each worker; default: the profile's worker cores.
    #[serde(default)]
    pub cores: Option<Spanned<Vec<usize>>>,
    /// The RX queue of each worker (AF_XDP); default 0, 1, ...
    #[serde(default)]
    pub queues: Option<Spanned<Vec<u32>>>,
    /// Where to write the process id (for process supervisors; commands
    /// talk to the control socket).
    #[serde(default)]
    pub pidfile: Option<PathBuf>,
    /// The control socket `dce-edge` commands talk to (default
    /// `/run/dce-edge/control.sock`); its directory is created root-only.
    #[serde(default)]
    pub control_socket: Option<PathBuf>,
}

/// The `[dataplane]` table: overrides of the profile's sizes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataplaneSection {
    /// Datagrams per receive batch.
    pub batch: Option<usize>,
    /// UMEM frames per socket.
    pub frame_count: Option<u32>,
    /// Bytes per UMEM frame.
    pub frame_size: Option<u32>,
    /// Fill ring entries.
    pub fill_ring: Option<u32>,
    /// Completion ring entries.
    pub completion_ring: Option<u32>,
    /// RX ring entries.
    pub rx_ring: Option<u32>,
    /// TX ring entries.
    pub tx_ring: Option<u32>,
    /// Zero-copy policy: auto, required or off.
    pub zero_copy: Option<ZeroCopy>,
    /// Idle strategy; what is not set keeps the mode's default
    /// ([`dataplane::IdleConfig::for_mode`]).
    pub idle: Option<IdleFile>,
    /// Neighbour upkeep.
    pub neighbour: Option<NeighbourConfig>,
    /// Real-time priority of the workers (SCHED_FIFO 1-99; 0: ordinary
    /// scheduling); default: the profile's.
    pub worker_priority: Option<u8>,
}

/// `[dataplane.idle]` as written: each value optional.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdleFile {
    /// Empty loops spun before blocking.
    pub busy_polls: Option<u32>,
    /// Longest blocking wait, in microseconds.
    pub wait_us: Option<u64>,
}

/// The whole file, parsed once: each table typed by the part it belongs
/// to, and handed to that part's `from_section`. A key no part knows is an
/// error with its line, wherever it is.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplianceFile {
    profile: Option<Spanned<String>>,
    edge: EdgeSection,
    #[serde(default)]
    dataplane: DataplaneSection,
    #[serde(default)]
    proxy: ProxySection,
    routes: Option<RoutesConfig>,
    filter: Option<Spanned<FilterSection>>,
    metrics: Option<MetricsSection>,
    events: Option<EventsSection>,
    #[allow(dead_code)]
    stream: Option<toml::Table>,
    #[allow(dead_code)]
    fleet: Option<toml::Table>,
}

/// Everything `dce-edge run` needs, checked.
#[derive(Debug, Clone)]
pub struct ApplianceConfig {
    /// The file it came from.
    pub source: SourceFile,
    /// The hardware profile, when the file names one.
    pub profile: Option<Profile>,
    /// The profile as the file names it.
    pub profile_name: Option<String>,
    /// The dataplane, with every size resolved.
    pub dataplane: DataplaneConfig,
    /// The edge's SIP addresses.
    pub listen: Vec<SocketAddr>,
    /// The `[routes]` table.
    pub routes: RoutesConfig,
    /// The proxy, resolved against the SIP address.
    pub proxy: ProxyConfig,
    /// Where to write the pid.
    pub pidfile: Option<PathBuf>,
    /// The control socket.
    pub control_socket: PathBuf,
    /// The XDP filter: always in AF_XDP mode (redirecting), in socket mode
    /// only when a `[filter]` table and an interface are given (passing).
    pub filter: Option<FilterConfig>,
    /// The metrics endpoint.
    pub metrics: MetricsConfig,
    /// The event log.
    pub events: EventsConfig,
    /// The fleet this edge belongs to, if any.
    pub fleet: Option<FleetConfig>,
    /// Where the health prober's probes leave from: the fleet's own
    /// address of this edge when given, else the SIP address (whose answers,
    /// when it is a shared anycast address, may reach another edge).
    pub probe_source: std::net::IpAddr,
    /// SIP over TCP and TLS (the `[stream]` table), when configured.
    pub stream: Option<dataplane::stream::StreamConfig>,
    /// What the file says that is allowed but does nothing in this mode,
    /// each with file and line: printed at start and by `--check`.
    pub warnings: Vec<String>,
}

/// What the `[filter]` table comes to in the appliance.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterPlan {
    /// The XDP filter's configuration, when one runs.
    pub filter: Option<FilterConfig>,
    /// The allowlist, which the proxy honours too (with or without XDP).
    pub allowlist: Vec<Cidr>,
    /// Whether bans apply to emergency calls, in both layers.
    pub keep_bans: bool,
    /// Keys that do nothing in this mode, with file and line.
    pub warnings: Vec<String>,
}

fn parse_addr(
    file: &SourceFile,
    s: &Spanned<String>,
    what: &str,
) -> Result<SocketAddr, ConfigError> {
    s.get_ref().parse::<SocketAddr>().map_err(|_| {
        file.error_at(
            s.span(),
            format!("{what} {:?} is not an address with a port, such as 198.18.0.1:5060 or [2001:db8::1]:5060", s.get_ref()),
        )
    })
}

impl ApplianceConfig {
    /// Reads and checks the configuration at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<ApplianceConfig, ConfigError> {
        Self::from_source(SourceFile::read(path)?)
    }

    /// Checks a configuration already in memory.
    pub fn from_source(source: SourceFile) -> Result<ApplianceConfig, ConfigError> {
        let file: ApplianceFile = source.parse_toml()?;
        let profile = match &file.profile {
            None => None,
            Some(name) => Some(profile::load(name.get_ref()).map_err(|e| {
                source.error_at(name.span(), format!("profile {:?}: {}", name.get_ref(), e))
            })?),
        };
        let runtime = profile.as_ref().map(|p| p.runtime().clone());
        let edge = &file.edge;

        let mut listen = vec![parse_addr(&source, &edge.listen, "listen")?];
        if let Some(l6) = &edge.listen6 {
            let a = parse_addr(&source, l6, "listen6")?;
            if a.is_ipv4() == listen[0].is_ipv4() {
                return Err(source.error_at(
                    l6.span(),
                    "listen6 must be of the other IP family than listen",
                ));
            }
            listen.push(a);
        }

        let workers = match &edge.workers {
            Some(w) if *w.get_ref() == 0 || *w.get_ref() > 256 => {
                return Err(source.error_at(
                    w.span(),
                    format!("workers is {}; it must be between 1 and 256", w.get_ref()),
                ))
            }
            Some(w) => *w.get_ref() as usize,
            None => runtime.as_ref().map_or(1, |r| r.workers as usize),
        };
        let cores: Vec<Option<usize>> = match &edge.cores {
            Some(c) if c.get_ref().len() != workers => {
                return Err(source.error_at(
                    c.span(),
                    format!(
                        "cores lists {} cores for {workers} workers",
                        c.get_ref().len()
                    ),
                ))
            }
            Some(c) => c.get_ref().iter().map(|&c| Some(c)).collect(),
            None => match &runtime {
                Some(r) if r.worker_cores.len() == workers => {
                    r.worker_cores.iter().map(|&c| Some(c as usize)).collect()
                }
                _ => vec![None; workers],
            },
        };
        let queues: Vec<u32> = match &edge.queues {
            Some(q) if q.get_ref().len() != workers => {
                return Err(source.error_at(
                    q.span(),
                    format!(
                        "queues lists {} queues for {workers} workers",
                        q.get_ref().len()
                    ),
                ))
            }
            Some(q) => {
                let list = q.get_ref();
                if let Some((i, dup)) = list
                    .iter()
                    .enumerate()
                    .find(|(i, v)| list[..*i].contains(v))
                {
                    return Err(source.error_at(
                        q.span(),
                        format!(
                            "queue {dup} is listed twice (entries {} and {}): one AF_XDP socket \
                             serves a queue, so the second worker would never see a packet",
                            list.iter().position(|v| v == dup).unwrap_or(0) + 1,
                            i + 1
                        ),
                    ));
                }
                list.clone()
            }
            None => (0..workers as u32).collect(),
        };
        let interface = edge.interface.clone().unwrap_or_default();
        if edge.mode == IoMode::AfXdp && interface.is_empty() {
            return Err(source.error_at(
                edge.listen.span(),
                "mode afxdp needs [edge] interface = \"NIC\"",
            ));
        }

        let mut dataplane = DataplaneConfig::new(edge.mode, &interface, listen.clone(), &queues);
        for (w, core) in dataplane.workers.iter_mut().zip(&cores) {
            w.core = *core;
        }
        let d = &file.dataplane;
        let mut xsk = XskConfig::default();
        if let Some(r) = &runtime {
            xsk.frame_count = r.umem_frames;
            xsk.frame_size = r.frame_size;
            xsk.fill_ring = r.fill_ring;
            xsk.completion_ring = r.completion_ring;
            xsk.rx_ring = r.rx_ring;
            xsk.tx_ring = r.tx_ring;
            dataplane.batch = r.batch_size as usize;
            dataplane.worker_priority = r.worker_priority;
        }
        if profile.as_ref().is_some_and(|p| p.tuning().isolate_workers) {
            // Workers with cores of their own spin between bursts; on
            // shared cores spinning costs frames (`IdleConfig::for_mode`).
            dataplane.idle = dataplane::IdleConfig::isolated(edge.mode);
        }
        xsk.frame_count = d.frame_count.unwrap_or(xsk.frame_count);
        xsk.frame_size = d.frame_size.unwrap_or(xsk.frame_size);
        xsk.fill_ring = d.fill_ring.unwrap_or(xsk.fill_ring);
        xsk.completion_ring = d.completion_ring.unwrap_or(xsk.completion_ring);
        xsk.rx_ring = d.rx_ring.unwrap_or(xsk.rx_ring);
        xsk.tx_ring = d.tx_ring.unwrap_or(xsk.tx_ring);
        xsk.zero_copy = d.zero_copy.unwrap_or(xsk.zero_copy);
        dataplane.xsk = xsk;
        dataplane.batch = d.batch.unwrap_or(dataplane.batch);
        if let Some(idle) = d.idle {
            dataplane.idle.busy_polls = idle.busy_polls.unwrap_or(dataplane.idle.busy_polls);
            dataplane.idle.wait_us = idle.wait_us.unwrap_or(dataplane.idle.wait_us);
        }
        if let Some(n) = d.neighbour {
            dataplane.neighbour = n;
        }
        dataplane.worker_priority = d.worker_priority.unwrap_or(dataplane.worker_priority);
        dataplane
            .validate()
            .map_err(|p| ConfigError::file(source.path(), format!("[dataplane] {p}")))?;

        let routes = file
            .routes
            .clone()
            .ok_or_else(|| ConfigError::file(source.path(), "no [routes] table"))?;
        routes.max_drop(&source)?;
        let plan = plan_filter(
            &source,
            &file,
            runtime.as_ref(),
            edge.mode,
            &interface,
            &listen,
            &edge.listen,
        )?;
        let secret = random_secret().map_err(|e| {
            ConfigError::file(source.path(), format!("cannot read /dev/urandom: {e}"))
        })?;
        let mut proxy =
            ProxyConfig::from_section(&file.proxy, &source, listen[0], &plan.allowlist, secret)?;
        proxy.emergency.keep_bans = plan.keep_bans;
        let metrics = MetricsConfig::from_section(&source, file.metrics.as_ref())?;
        let events = EventsConfig::from_section(&source, file.events.as_ref())?;
        let stream = crate::stream::from_source(&source)?;
        check_stream_ports(&source, plan.filter.as_ref())?;
        let fleet = FleetConfig::from_file(&source)?;
        if let Some(f) = &fleet {
            // Every edge must recognise the branches and dialog cookies of
            // every other: one secret for all, written in each file.
            if file.proxy.secret.is_none() {
                return Err(source.error_at_line(
                    f.line,
                    "[fleet] needs [proxy] secret: the edges of a fleet must share one secret (32 hex digits, the same in every edge's file), or no edge recognises another's dialogs",
                ));
            }
            if let Some(a) = f.address {
                if listen.iter().any(|l| l.ip() == a) {
                    return Err(source.error_at_line(
                        f.line,
                        format!("[fleet] address {a} is the SIP address; give this edge's own address (the SIP address is the fleet's shared one)"),
                    ));
                }
            }
        }
        let probe_source = fleet
            .as_ref()
            .and_then(|f| f.address)
            .filter(|a| a.is_ipv4() == listen[0].is_ipv4())
            .unwrap_or(listen[0].ip());
        Ok(ApplianceConfig {
            stream,
            filter: plan.filter,
            warnings: plan.warnings,
            metrics,
            events,
            fleet,
            probe_source,
            profile,
            profile_name: file.profile.as_ref().map(|p| p.get_ref().clone()),
            dataplane,
            listen,
            routes,
            proxy,
            pidfile: edge.pidfile.clone(),
            control_socket: source.resolve(
                edge.control_socket
                    .as_deref()
                    .unwrap_or(Path::new(crate::control::DEFAULT_PATH)),
            ),
            source,
        })
    }

    /// Reads the file again for a filter reload: its `[filter]` table, with
    /// the running profile, mode, interface and SIP addresses (changes to
    /// those need a restart; a changed `profile` is refused with its line,
    /// as is a changed `emergency_keep_bans`, which the running proxy
    /// workers hold too). Any error anywhere in the file refuses the reload.
    pub fn reread_filter(&self) -> Result<FilterPlan, ConfigError> {
        let source = SourceFile::read(self.source.path())?;
        let file: ApplianceFile = source.parse_toml()?;
        let running = self.profile_name.clone();
        let named = file.profile.as_ref().map(|p| p.get_ref().clone());
        if running != named {
            let at = file.profile.as_ref().map_or(0..0, |p| p.span());
            return Err(source.error_at(
                at,
                format!(
                    "profile changed ({} -> {}): a profile change needs a restart; \
                     the running filter stays",
                    running.as_deref().unwrap_or("none"),
                    named.as_deref().unwrap_or("none")
                ),
            ));
        }
        let runtime = self.profile.as_ref().map(|p| p.runtime().clone());
        let plan = plan_filter(
            &source,
            &file,
            runtime.as_ref(),
            self.dataplane.mode,
            &self.dataplane.interface,
            &self.listen,
            &file.edge.listen,
        )?;
        check_stream_ports(&source, plan.filter.as_ref())?;
        if plan.keep_bans != self.proxy.emergency.keep_bans {
            let at = file
                .filter
                .as_ref()
                .and_then(|f| f.get_ref().emergency_keep_bans())
                .map_or(0..0, |(_, span)| span);
            return Err(source.error_at(
                at,
                format!(
                    "emergency_keep_bans changed to {}: the proxy workers hold it too, so it \
                     needs a restart; the running filter stays",
                    plan.keep_bans
                ),
            ));
        }
        Ok(plan)
    }
}

/// Refuses a `[stream]` listen port that the XDP filter does not watch
/// (`[filter] tcp_ports`), at its line, like a UDP listen port missing from
/// `sip_ports`: bans, the blocklist and the SYN budgets would not apply to
/// it. Nothing to check where no filter runs.
fn check_stream_ports(
    source: &SourceFile,
    filter: Option<&FilterConfig>,
) -> Result<(), ConfigError> {
    let Some(f) = filter else {
        return Ok(());
    };
    for crate::stream::ListenPort { key, port, span } in crate::stream::listen_ports(source)? {
        if !f.tcp_ports.contains(&port) {
            return Err(source.error_at(
                span,
                format!(
                    "[stream] {key} listens on TCP port {port} but the filter's tcp_ports \
                     are {:?}: bans, the blocklist and the SYN budgets would not apply to \
                     it; add {port} to [filter] tcp_ports",
                    f.tcp_ports
                ),
            ));
        }
    }
    Ok(())
}

/// The `[filter]` table as the appliance runs it: checked whole in every
/// mode (a misspelt key is an error with its line even where no XDP filter
/// runs), with the profile's rate limits and overload cap for what it
/// leaves out and the verdict mode the appliance needs. In socket mode
/// without an interface no XDP filter runs: the allowlist still reaches the
/// proxy, and every other key set is named in a warning.
fn plan_filter(
    source: &SourceFile,
    file: &ApplianceFile,
    runtime: Option<&profile::RuntimeDefaults>,
    mode: IoMode,
    interface: &str,
    listen: &[SocketAddr],
    listen_span: &Spanned<String>,
) -> Result<FilterPlan, ConfigError> {
    let section = file.filter.as_ref().map(|f| f.get_ref());
    let mut f = FilterConfig::from_section(source, section)?;
    let allowlist = f.allowlist.clone();
    let keep_bans = file.proxy.emergency.keep_bans || f.emergency_keep_bans;
    let mut warnings = Vec::new();
    let runs = match mode {
        IoMode::AfXdp => Some(VerdictMode::Redirect),
        IoMode::Socket if file.filter.is_some() && !interface.is_empty() => Some(VerdictMode::Pass),
        IoMode::Socket => None,
    };
    let Some(verdict) = runs else {
        if let Some(table) = &file.filter {
            let unused: Vec<&str> = table
                .get_ref()
                .keys_set()
                .into_iter()
                .filter(|k| !matches!(*k, "allowlist" | "emergency_keep_bans"))
                .collect();
            if !unused.is_empty() {
                warnings.push(
                    source
                        .error_at(
                            table.span(),
                            format!(
                                "[filter] in socket mode without [edge] interface: no XDP filter \
                                 runs, so {} do nothing (the allowlist and emergency_keep_bans \
                                 apply to the proxy); set interface to run the filter",
                                unused.join(", ")
                            ),
                        )
                        .to_string(),
                );
            }
        }
        return Ok(FilterPlan {
            filter: None,
            allowlist,
            keep_bans,
            warnings,
        });
    };
    f.mode = verdict;
    f.emergency_keep_bans = keep_bans;
    for addr in listen {
        if !f.sip_ports.contains(&addr.port()) {
            let at = section
                .and_then(|s| s.sip_ports_span())
                .unwrap_or_else(|| listen_span.span());
            return Err(source.error_at(
                at,
                format!(
                    "the edge listens on port {} but the filter's sip_ports are {:?}: its SIP \
                     would pass the filter unchecked and never reach the workers; add {} to \
                     [filter] sip_ports",
                    addr.port(),
                    f.sip_ports,
                    addr.port()
                ),
            ));
        }
    }
    if let Some(r) = runtime {
        let set = |class: &str| section.is_some_and(|s| s.sets_rate_limit(class));
        let bucket = |b: profile::TokenBucket| RateConfig {
            rate: b.rate,
            burst: b.burst,
        };
        if !set("invite") {
            f.rate_limits.invite = bucket(r.rate_limits.invite);
        }
        if !set("register") {
            f.rate_limits.register = bucket(r.rate_limits.register);
        }
        if !set("other") {
            f.rate_limits.other = bucket(r.rate_limits.other);
        }
        if !section.is_some_and(|s| s.sets_overload_cap()) {
            f.overload_cap_pps = r.overload_cap_pps.min(u32::MAX as u64) as u32;
        }
        f.validate().map_err(|e| {
            ConfigError::file(
                source.path(),
                format!("[filter] with the profile's defaults: {e}"),
            )
        })?;
    }
    Ok(FilterPlan {
        filter: Some(f),
        allowlist,
        keep_bans,
        warnings,
    })
}

/// A secret for the proxy's branches and cookies from the kernel's random
/// source, used when the configuration pins none (several edges behind one
/// address must pin a shared one).
pub fn random_secret() -> std::io::Result<Secret> {
    let mut bytes = [0u8; 16];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let (a, b) = bytes.split_at(8);
    Ok(Secret::new(
        u64::from_le_bytes(a.try_into().expect("8 bytes")),
        u64::from_le_bytes(b.try_into().expect("8 bytes")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<ApplianceConfig, ConfigError> {
        ApplianceConfig::from_source(SourceFile::from_text("/etc/dce-edge/edge.toml", text))
    }

    const ROUTES: &str = "[routes]\ngroups = \"g.toml\"\nprefixes = \"p.csv\"\n";

    #[test]
    fn the_route_table_names_no_more_emergency_numbers_than_the_filter_holds() {
        // The appliance writes the table's numbers into the XDP filter.
        assert_eq!(
            route::table::MAX_EMERGENCY_NUMBERS,
            xdp::abi::MAX_EMERGENCY_NUMBERS
        );
        assert_eq!(
            route::table::MAX_EMERGENCY_DIGITS,
            xdp::abi::EMERGENCY_NUMBER_MAX
        );
    }

    #[test]
    fn keeping_bans_for_emergency_calls_is_one_decision_for_both_layers() {
        let base = format!(
            "[edge]\nmode = \"socket\"\ninterface = \"eth0\"\nlisten = \"198.18.0.1:5060\"\n{ROUTES}"
        );
        let c = load(&format!("{base}[filter]\n")).unwrap();
        assert!(!c.proxy.emergency.keep_bans);
        assert!(!c.filter.unwrap().emergency_keep_bans);
        let c = load(&format!("{base}[filter]\nemergency_keep_bans = true\n")).unwrap();
        assert!(c.proxy.emergency.keep_bans, "the proxy keeps them too");
        let c = load(&format!(
            "{base}[proxy.emergency]\nkeep_bans = true\n[filter]\n"
        ))
        .unwrap();
        assert!(
            c.filter.unwrap().emergency_keep_bans,
            "the filter keeps them too"
        );
    }

    #[test]
    fn socket_mode_with_defaults() {
        let c = load(&format!(
            "[edge]\nmode = \"socket\"\nlisten = \"198.18.0.1:5060\"\n{ROUTES}"
        ))
        .unwrap();
        assert_eq!(c.dataplane.mode, IoMode::Socket);
        assert_eq!(c.dataplane.workers.len(), 1);
        assert_eq!(c.proxy.advertise, "198.18.0.1:5060".parse().unwrap());
        assert_eq!(c.routes.groups.get_ref(), &PathBuf::from("g.toml"));
        // A socket-mode worker sleeps as soon as a loop finds nothing.
        assert_eq!(c.dataplane.idle.busy_polls, 0);
    }

    #[test]
    fn idle_defaults_follow_the_mode_and_a_partial_table_keeps_the_rest() {
        let afxdp = load(&format!(
            "[edge]\nmode = \"afxdp\"\ninterface = \"eth0\"\nlisten = \"198.18.0.1:5060\"\n{ROUTES}"
        ))
        .unwrap();
        // Nothing says the worker has its core to itself: it does not spin.
        assert_eq!(afxdp.dataplane.idle.busy_polls, 0);
        let socket = load(&format!(
            "[edge]\nmode = \"socket\"\nlisten = \"198.18.0.1:5060\"\n\
             [dataplane.idle]\nwait_us = 250\n{ROUTES}"
        ))
        .unwrap();
        assert_eq!(socket.dataplane.idle.busy_polls, 0);
        assert_eq!(socket.dataplane.idle.wait_us, 250);
        let spun = load(&format!(
            "[edge]\nmode = \"socket\"\nlisten = \"198.18.0.1:5060\"\n\
             [dataplane.idle]\nbusy_polls = 64\n{ROUTES}"
        ))
        .unwrap();
        assert_eq!(spun.dataplane.idle.busy_polls, 64);
        assert_eq!(spun.dataplane.idle.wait_us, 1000);
    }

    #[test]
    fn afxdp_workers_spin_only_on_cores_the_profile_isolates() {
        let with = |profile: &str| {
            load(&format!(
                "profile = \"{profile}\"\n[edge]\nmode = \"afxdp\"\ninterface = \"eth0\"\n\
                 listen = \"198.18.0.1:5060\"\n{ROUTES}"
            ))
            .unwrap()
        };
        assert!(
            profile::load("medium-edge")
                .unwrap()
                .tuning()
                .isolate_workers
        );
        assert_eq!(with("medium-edge").dataplane.idle.busy_polls, 1024);
        assert!(!profile::load("lab").unwrap().tuning().isolate_workers);
        assert_eq!(with("lab").dataplane.idle.busy_polls, 0);
        // The file still has the last word.
        let c = load(&format!(
            "profile = \"medium-edge\"\n[edge]\nmode = \"afxdp\"\ninterface = \"eth0\"\n\
             listen = \"198.18.0.1:5060\"\n[dataplane.idle]\nbusy_polls = 8\n{ROUTES}"
        ))
        .unwrap();
        assert_eq!(c.dataplane.idle.busy_polls, 8);
    }

    #[test]
    fn the_profile_fills_workers_cores_and_sizes() {
        let c = load(&format!(
            "profile = \"lab\"\n[edge]\nmode = \"afxdp\"\ninterface = \"eth0\"\nlisten = \"198.18.0.1:5060\"\n{ROUTES}"
        ))
        .unwrap();
        let lab = profile::load("lab").unwrap();
        let r = lab.runtime();
        assert_eq!(c.dataplane.workers.len(), r.workers as usize);
        assert_eq!(
            c.dataplane.workers[0].core,
            Some(r.worker_cores[0] as usize)
        );
        assert_eq!(c.dataplane.xsk.frame_count, r.umem_frames);
    }

    #[test]
    fn the_file_beats_the_profile() {
        let c = load(&format!(
            "profile = \"lab\"\n[edge]\nmode = \"socket\"\nlisten = \"198.18.0.1:5060\"\nworkers = 2\ncores = [0, 1]\n\
             [dataplane]\nbatch = 32\n{ROUTES}"
        ))
        .unwrap();
        assert_eq!(c.dataplane.workers.len(), 2);
        assert_eq!(c.dataplane.batch, 32);
    }

    #[test]
    fn worker_priority_comes_from_the_file_else_the_profile_and_is_checked() {
        let base = "profile = \"lab\"\n[edge]\nmode = \"socket\"\nlisten = \"198.18.0.1:5060\"\n";
        let c = load(&format!("{base}{ROUTES}")).unwrap();
        assert_eq!(c.dataplane.worker_priority, 0, "the lab profile's");
        let c = load(&format!(
            "{base}[dataplane]\nworker_priority = 20\n{ROUTES}"
        ))
        .unwrap();
        assert_eq!(c.dataplane.worker_priority, 20);
        let e = load(&format!(
            "{base}[dataplane]\nworker_priority = 100\n{ROUTES}"
        ))
        .unwrap_err();
        assert!(e.reason.contains("worker_priority"), "{e}");
    }

    #[test]
    fn errors_name_the_line() {
        let e = load(&format!(
            "[edge]\nmode = \"socket\"\nlisten = \"nowhere\"\n{ROUTES}"
        ))
        .unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        let e = load(&format!("[edge]\nlisten = \"198.18.0.1:5060\"\nmode = \"socket\"\nworkers = 2\ncores = [1]\n{ROUTES}"))
            .unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        let e = load(&format!(
            "profile = \"huge\"\n[edge]\nlisten = \"198.18.0.1:5060\"\n{ROUTES}"
        ))
        .unwrap_err();
        assert_eq!(e.line, 1, "{e}");
        let e = load(&format!(
            "[edge]\nlisten = \"198.18.0.1:5060\"\nmode = \"socket\"\n[bogus]\nx = 1\n{ROUTES}"
        ))
        .unwrap_err();
        assert!(e.reason.contains("bogus"), "{e}");
    }

    #[test]
    fn a_misspelt_filter_key_in_socket_mode_is_an_error_with_its_line() {
        // No XDP filter runs here, but the allowlist reaches the proxy: a
        // typo must not leave the proxy without it.
        let e = load(&format!(
            "[edge]\nmode = \"socket\"\nlisten = \"198.18.0.1:5060\"\n{ROUTES}\
             [filter]\nallow_list = [\"198.51.100.0/24\"]\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, 8, "{e}");
        assert!(e.reason.contains("allow_list"), "{e}");
    }

    #[test]
    fn filter_keys_that_do_nothing_in_socket_mode_are_warned_about_with_the_line() {
        let c = load(&format!(
            "[edge]\nmode = \"socket\"\nlisten = \"198.18.0.1:5060\"\n{ROUTES}\
             [filter]\nallowlist = [\"198.51.100.0/24\"]\nsip_ports = [5060, 5080]\n\
             rate_limits.invite = {{ rate = 5, burst = 5 }}\n"
        ))
        .unwrap();
        assert!(c.filter.is_none());
        assert_eq!(c.proxy.allowlist, vec!["198.51.100.0/24".parse().unwrap()]);
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        let w = &c.warnings[0];
        assert!(w.starts_with("/etc/dce-edge/edge.toml:7:"), "{w}");
        assert!(
            w.contains("sip_ports, rate_limits") && !w.contains("allowlist,"),
            "{w}"
        );
        // Only the allowlist: nothing to warn about.
        let c = load(&format!(
            "[edge]\nmode = \"socket\"\nlisten = \"198.18.0.1:5060\"\n{ROUTES}\
             [filter]\nallowlist = [\"198.51.100.0/24\"]\n"
        ))
        .unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn a_bad_filter_value_in_socket_mode_is_refused_too() {
        let e = load(&format!(
            "[edge]\nmode = \"socket\"\nlisten = \"198.18.0.1:5060\"\n{ROUTES}\
             [filter]\nrate_limits.invite = {{ rate = 0, burst = 5 }}\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, 8, "{e}");
    }

    #[test]
    fn an_allowlist_of_everything_is_refused_with_its_line() {
        for (entry, wide) in [("0.0.0.0/0", "/0"), ("::/0", "/0"), ("10.0.0.0/7", "/7")] {
            let e = load(&format!(
                "[edge]\nmode = \"socket\"\nlisten = \"198.18.0.1:5060\"\n{ROUTES}\
                 [filter]\nallowlist = [\"198.51.100.0/24\",\n  \"{entry}\"]\n"
            ))
            .unwrap_err();
            assert_eq!(e.line, 9, "{e}");
            assert!(
                e.reason.contains(wide) && e.reason.contains("at most"),
                "{e}"
            );
        }
        assert!(load(&format!(
            "[edge]\nmode = \"socket\"\nlisten = \"198.18.0.1:5060\"\n{ROUTES}\
             [filter]\nallowlist = [\"10.0.0.0/8\", \"2001::/16\"]\n"
        ))
        .is_ok());
    }

    #[test]
    fn a_stream_port_the_filter_does_not_watch_is_refused_with_the_line() {
        let head = "[edge]\nmode = \"afxdp\"\ninterface = \"eth0\"\nlisten = \"198.18.0.1:5060\"\n";
        let e = load(&format!(
            "{head}{ROUTES}[stream]\n\ntcp = \"198.18.0.1:5080\"\n"
        ))
        .unwrap_err();
        let line = 4 + ROUTES.lines().count() + 3;
        assert_eq!(e.line, line, "{e}");
        assert!(
            e.reason.contains("TCP port 5080") && e.reason.contains("tcp_ports"),
            "{e}"
        );
        assert!(load(&format!(
            "{head}{ROUTES}[stream]\ntcp = \"198.18.0.1:5080\"\n[filter]\ntcp_ports = [5080, 5061]\n"
        ))
        .is_ok());
        // The default tcp_ports cover SIP over TCP on 5060.
        assert!(load(&format!(
            "{head}{ROUTES}[stream]\ntcp = \"198.18.0.1:5060\"\n"
        ))
        .is_ok());
        // Socket mode without an interface runs no filter: nothing to watch.
        assert!(load(&format!(
            "[edge]\nmode = \"socket\"\nlisten = \"198.18.0.1:5060\"\n{ROUTES}\
             [stream]\ntcp = \"198.18.0.1:5080\"\n"
        ))
        .is_ok());
    }

    #[test]
    fn a_listen_port_the_filter_does_not_watch_is_refused_with_the_line() {
        let e = load(&format!(
            "[edge]\nmode = \"afxdp\"\ninterface = \"eth0\"\nlisten = \"198.18.0.1:5080\"\n{ROUTES}"
        ))
        .unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(
            e.reason.contains("port 5080") && e.reason.contains("sip_ports"),
            "{e}"
        );
        let e = load(&format!(
            "[edge]\nmode = \"afxdp\"\ninterface = \"eth0\"\nlisten = \"198.18.0.1:5060\"\n{ROUTES}\
             [filter]\nsip_ports = [5080]\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, 9, "{e}");
        assert!(load(&format!(
            "[edge]\nmode = \"afxdp\"\ninterface = \"eth0\"\nlisten = \"198.18.0.1:5080\"\n{ROUTES}\
             [filter]\nsip_ports = [5060, 5080]\n"
        ))
        .is_ok());
    }

    #[test]
    fn a_queue_listed_twice_is_refused_with_the_line() {
        let e = load(&format!(
            "[edge]\nmode = \"afxdp\"\ninterface = \"eth0\"\nlisten = \"198.18.0.1:5060\"\n\
             workers = 3\nqueues = [0, 1, 0]\n{ROUTES}"
        ))
        .unwrap_err();
        assert_eq!(e.line, 6, "{e}");
        assert!(e.reason.contains("queue 0 is listed twice"), "{e}");
    }

    #[test]
    fn a_filter_reread_sees_the_new_table_and_refuses_what_needs_a_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("edge.toml");
        let base = format!(
            "[edge]\nmode = \"afxdp\"\ninterface = \"eth0\"\nlisten = \"198.18.0.1:5060\"\n{ROUTES}"
        );
        std::fs::write(
            &path,
            format!("{base}[filter]\nscanner_user_agents = [\"a\"]\n"),
        )
        .unwrap();
        let c = ApplianceConfig::load(&path).unwrap();
        std::fs::write(
            &path,
            format!("{base}[filter]\nscanner_user_agents = [\"b\"]\n"),
        )
        .unwrap();
        let plan = c.reread_filter().unwrap();
        let f = plan.filter.unwrap();
        assert_eq!(f.scanner_user_agents, vec!["b"]);
        assert_eq!(f.mode, VerdictMode::Redirect, "the appliance's mode stays");
        std::fs::write(
            &path,
            format!("{base}[filter]\nemergency_keep_bans = true\n"),
        )
        .unwrap();
        let e = c.reread_filter().unwrap_err();
        assert_eq!(e.line, 9, "{e}");
        assert!(e.reason.contains("needs a restart"), "{e}");
        std::fs::write(&path, format!("profile = \"lab\"\n{base}")).unwrap();
        let e = c.reread_filter().unwrap_err();
        assert_eq!(e.line, 1, "{e}");
        std::fs::write(
            &path,
            format!("{base}[filter]\nblocklist = [\"1.2.3.4/8\"]\n"),
        )
        .unwrap();
        let e = c.reread_filter().unwrap_err();
        assert_eq!(e.line, 9, "{e}");
        assert!(e.reason.contains("host bits"), "{e}");
        // A reload may not take the stream listener's port off tcp_ports.
        std::fs::write(
            &path,
            format!("{base}[stream]\ntcp = \"198.18.0.1:5060\"\n[filter]\ntcp_ports = [5061]\n"),
        )
        .unwrap();
        let e = c.reread_filter().unwrap_err();
        assert_eq!(e.line, 9, "{e}");
        assert!(e.reason.contains("tcp_ports"), "{e}");
    }

    #[test]
    fn a_fleet_needs_a_pinned_secret_and_probes_from_its_own_address() {
        let base = format!("[edge]\nmode = \"socket\"\nlisten = \"198.18.255.1:5060\"\n{ROUTES}");
        let fleet = "[fleet]\nname = \"lab\"\nedge = \"e1\"\naddress = \"198.18.1.2\"\n";
        let e = load(&format!("{base}{fleet}")).unwrap_err();
        assert_eq!(e.line, 8, "{e}");
        assert!(e.reason.contains("[proxy] secret"), "{e}");
        let c = load(&format!(
            "{base}[proxy]\nsecret = \"00112233445566778899aabbccddeeff\"\n{fleet}"
        ))
        .unwrap();
        assert_eq!(c.fleet.unwrap().edge, "e1");
        assert_eq!(
            c.probe_source,
            "198.18.1.2".parse::<std::net::IpAddr>().unwrap()
        );
        // A lone edge probes from its SIP address.
        let c = load(&base).unwrap();
        assert!(c.fleet.is_none());
        assert_eq!(
            c.probe_source,
            "198.18.255.1".parse::<std::net::IpAddr>().unwrap()
        );
    }

    #[test]
    fn afxdp_needs_an_interface() {
        let e = load(&format!("[edge]\nlisten = \"198.18.0.1:5060\"\n{ROUTES}")).unwrap_err();
        assert!(e.reason.contains("interface"), "{e}");
    }
}
