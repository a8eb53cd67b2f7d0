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
use telemetry::events::EventsConfig;
use telemetry::metrics::MetricsConfig;
use xdp::config::{FilterConfig, RateConfig, VerdictMode};

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

/// The top level of the file: which tables may appear. Each part reads its
/// own table again with its own types; here they are only allowed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplianceFile {
    profile: Option<Spanned<String>>,
    edge: EdgeSection,
    #[serde(default)]
    dataplane: DataplaneSection,
    #[serde(default)]
    proxy: ProxySection,
    #[allow(dead_code)]
    routes: Option<toml::Table>,
    #[allow(dead_code)]
    filter: Option<toml::Table>,
    #[allow(dead_code)]
    metrics: Option<toml::Table>,
    #[allow(dead_code)]
    events: Option<toml::Table>,
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
            Some(q) => q.get_ref().clone(),
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
        dataplane
            .validate()
            .map_err(|p| ConfigError::file(source.path(), format!("[dataplane] {p}")))?;

        let routes = RoutesConfig::from_appliance_config(&source)?;
        let allowlist = filter_allowlist(&source)?;
        let secret = random_secret().map_err(|e| {
            ConfigError::file(source.path(), format!("cannot read /dev/urandom: {e}"))
        })?;
        let mut proxy =
            ProxyConfig::from_section(&file.proxy, &source, listen[0], &allowlist, secret)?;
        let mut filter = match edge.mode {
            IoMode::AfXdp => Some(filter_config(
                &source,
                runtime.as_ref(),
                VerdictMode::Redirect,
            )?),
            IoMode::Socket if file.filter.is_some() && !interface.is_empty() => {
                Some(filter_config(&source, runtime.as_ref(), VerdictMode::Pass)?)
            }
            IoMode::Socket => None,
        };
        // Whether bans apply to emergency calls is one decision for both
        // layers: either table saying so keeps them in both.
        let keep_bans = proxy.emergency.keep_bans || filter_keeps_bans(&source)?;
        proxy.emergency.keep_bans = keep_bans;
        if let Some(f) = &mut filter {
            f.emergency_keep_bans = keep_bans;
        }
        let metrics = MetricsConfig::from_file(&source)?;
        let events = EventsConfig::from_file(&source)?;
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
            filter,
            metrics,
            events,
            fleet,
            probe_source,
            profile,
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
}

/// The `[filter]` table with the profile's rate limits and overload cap
/// for what the table leaves out, and the verdict mode the appliance needs.
fn filter_config(
    source: &SourceFile,
    runtime: Option<&profile::RuntimeDefaults>,
    mode: VerdictMode,
) -> Result<FilterConfig, ConfigError> {
    let mut f = FilterConfig::from_source(source)?;
    f.mode = mode;
    let Some(r) = runtime else {
        return Ok(f);
    };
    #[derive(Deserialize)]
    struct Only {
        filter: Option<toml::Table>,
    }
    let table = source.parse_toml::<Only>()?.filter.unwrap_or_default();
    let rates = table.get("rate_limits").and_then(|v| v.as_table());
    let set = |class: &str| rates.is_some_and(|t| t.contains_key(class));
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
    if !table.contains_key("overload_cap_pps") {
        f.overload_cap_pps = r.overload_cap_pps.min(u32::MAX as u64) as u32;
    }
    f.validate().map_err(|e| {
        ConfigError::file(
            source.path(),
            format!("[filter] with the profile's defaults: {e}"),
        )
    })?;
    Ok(f)
}

/// `[filter] emergency_keep_bans`, which the proxy honours too.
fn filter_keeps_bans(source: &SourceFile) -> Result<bool, ConfigError> {
    #[derive(Deserialize)]
    struct Only {
        filter: Option<Keep>,
    }
    #[derive(Deserialize)]
    struct Keep {
        #[serde(default)]
        emergency_keep_bans: bool,
    }
    let only: Only = source.parse_toml()?;
    Ok(only.filter.is_some_and(|f| f.emergency_keep_bans))
}

/// The allowlist of the `[filter]` table, which the proxy honours too.
fn filter_allowlist(source: &SourceFile) -> Result<Vec<String>, ConfigError> {
    #[derive(Deserialize)]
    struct Only {
        filter: Option<Allow>,
    }
    #[derive(Deserialize)]
    struct Allow {
        #[serde(default)]
        allowlist: Vec<String>,
    }
    let only: Only = source.parse_toml()?;
    Ok(only.filter.map(|f| f.allowlist).unwrap_or_default())
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
        assert_eq!(afxdp.dataplane.idle.busy_polls, 1024);
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
