//! The `dce-loadgen` command line: parses arguments into the library's
//! configurations, runs them, prints the tables and writes the JSON and SVG
//! files. `main.rs` only calls [`main`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::attack;
use crate::capacity::{self, CapacityConfig};
use crate::numbers::Numbers;
use crate::timers::SipTimers;
use crate::uac::{self, Scenario, UacConfig};
use crate::uas::{self, UasConfig};

#[derive(Parser)]
#[command(
    name = "dce-loadgen",
    version,
    about = "SIP load generator: callers, servers, capacity search and lab attacks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The whole `dce-loadgen` command line, for the manual pages and shell
/// completions `dce-edge generate` writes.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    Cli::command()
}

#[derive(Subcommand)]
enum Command {
    /// Upstream servers that answer calls, OPTIONS and REGISTER.
    Uas(UasArgs),
    /// Callers at an open-loop rate; prints a report at the end.
    Uac(UacArgs),
    /// Step the offered rate until the pass criterion breaks.
    Capacity(CapacityArgs),
    /// Lab-only attack traffic (destinations in 198.18.0.0/15 or 127.0.0.0/8).
    #[command(subcommand)]
    Attack(attack::cli::AttackCommand),
    /// Callers against servers on loopback, in this process.
    Selftest(SelftestArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum TransportArg {
    Udp,
    Tcp,
    Tls,
}

impl From<TransportArg> for crate::msg::Transport {
    fn from(t: TransportArg) -> Self {
        match t {
            TransportArg::Udp => crate::msg::Transport::Udp,
            TransportArg::Tcp => crate::msg::Transport::Tcp,
            TransportArg::Tls => crate::msg::Transport::Tls,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum ScenarioArg {
    Call,
    Options,
    Register,
    Cancel,
}

impl From<ScenarioArg> for Scenario {
    fn from(s: ScenarioArg) -> Self {
        match s {
            ScenarioArg::Call => Scenario::Call,
            ScenarioArg::Options => Scenario::Options,
            ScenarioArg::Register => Scenario::Register,
            ScenarioArg::Cancel => Scenario::Cancel,
        }
    }
}

/// RFC 3261 timer settings shared by callers and servers.
#[derive(Args, Clone)]
struct TimerArgs {
    /// T1, the round-trip estimate (ms).
    #[arg(long, default_value_t = 500)]
    t1_ms: u64,
    /// T2, the longest retransmission interval of non-INVITE requests (ms).
    #[arg(long, default_value_t = 4000)]
    t2_ms: u64,
    /// Transaction timeout (ms); default 64*T1.
    #[arg(long)]
    timeout_ms: Option<u64>,
}

impl TimerArgs {
    fn timers(&self) -> Result<SipTimers> {
        if self.t1_ms == 0 || self.t2_ms < self.t1_ms {
            bail!(
                "timers: T1 must be above 0 and T2 at least T1 (got T1 {} ms, T2 {} ms)",
                self.t1_ms,
                self.t2_ms
            );
        }
        let ms = 1_000_000;
        Ok(SipTimers {
            t1_ns: self.t1_ms * ms,
            t2_ns: self.t2_ms * ms,
            timeout_ns: self.timeout_ms.unwrap_or(64 * self.t1_ms) * ms,
        })
    }
}

#[derive(Args, Clone)]
struct CallerArgs {
    /// Where to send requests (ip:port).
    #[arg(long)]
    target: SocketAddr,
    /// What each call does.
    #[arg(long, value_enum, default_value = "call")]
    scenario: ScenarioArg,
    /// Seconds between ACK and BYE.
    #[arg(long, default_value_t = 0.0)]
    hold: f64,
    /// Dialed numbers: a pattern such as 4420{0000-9999}.
    #[arg(
        long,
        default_value = "4420{0000-9999}",
        conflicts_with = "numbers_file"
    )]
    numbers: String,
    /// Dialed numbers from a file, one per line.
    #[arg(long)]
    numbers_file: Option<PathBuf>,
    /// From user of calls.
    #[arg(long, default_value = "loadgen")]
    caller: String,
    /// Password for REGISTER digest authentication.
    #[arg(long, default_value = "secret")]
    password: String,
    /// Local address to send from (repeat for several; default: the route's).
    #[arg(long = "local-addr")]
    local_addrs: Vec<IpAddr>,
    /// First local port; sockets take consecutive ports (default: kernel's).
    #[arg(long)]
    local_port: Option<u16>,
    /// Sockets (source address and port pairs); UDP only.
    #[arg(long, default_value_t = 32)]
    sources: usize,
    /// How calls travel to the target: udp, or tcp / tls on a pool of
    /// connections (framed by Content-Length, no retransmissions).
    #[arg(long, value_enum, default_value = "udp")]
    transport: TransportArg,
    /// TCP and TLS: connections to the target (split between threads).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// TLS: trust the certificates in this PEM file (the target's CA).
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// TLS: the name the target's certificate must carry (default: the
    /// target's IP address).
    #[arg(long)]
    tls_server_name: Option<String>,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Cores to pin workers to, e.g. 0,1.
    #[arg(long, value_delimiter = ',')]
    cores: Vec<usize>,
    /// Socket buffer size in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    buffer: usize,
    #[command(flatten)]
    timers: TimerArgs,
    /// After a busy turn, sleep this long (µs) and then read in batches;
    /// latency comes from kernel arrival stamps either way (0: wake per packet).
    #[arg(long, default_value_t = 1000)]
    coalesce_us: u64,
    /// Send and receive datagrams one by one (no UDP GSO/GRO).
    #[arg(long)]
    no_gso: bool,
    /// No live progress line.
    #[arg(long)]
    quiet: bool,
}

impl CallerArgs {
    fn config(&self) -> Result<UacConfig> {
        let mut c = UacConfig::new(self.target);
        c.scenario = self.scenario.into();
        if !(self.hold.is_finite() && self.hold >= 0.0) {
            bail!("--hold must be 0 or more seconds, got {}", self.hold);
        }
        c.hold = Duration::from_secs_f64(self.hold);
        c.numbers = match &self.numbers_file {
            Some(p) => Numbers::file(p)?,
            None => Numbers::pattern(&self.numbers)?,
        };
        c.caller = self.caller.clone();
        c.password = self.password.clone();
        c.local_addrs = self.local_addrs.clone();
        c.local_port_start = self.local_port;
        c.sources = self.sources;
        c.transport = self.transport.into();
        c.connections = self.connections;
        if c.transport.reliable() && !self.local_addrs.is_empty() {
            bail!("--local-addr is for UDP; TCP and TLS connections leave from the address the route to the target picks");
        }
        c.tls = match (self.transport, &self.tls_ca) {
            (TransportArg::Tls, Some(ca)) => {
                let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
                let name = self
                    .tls_server_name
                    .clone()
                    .unwrap_or_else(|| self.target.ip().to_string());
                Some(
                    crate::stream::TlsClient::new(&pem, &name)
                        .with_context(|| format!("TLS settings from {}", ca.display()))?,
                )
            }
            (TransportArg::Tls, None) => {
                bail!("--transport tls needs --tls-ca FILE (the certificates to trust)")
            }
            (_, Some(_)) => bail!("--tls-ca is for --transport tls"),
            (_, None) => None,
        };
        c.threads = self.threads;
        c.cores = self.cores.clone();
        c.buffer_bytes = self.buffer;
        c.timers = self.timers.timers()?;
        c.coalesce = Duration::from_micros(self.coalesce_us);
        c.gso = !self.no_gso;
        c.progress = !self.quiet;
        Ok(c)
    }
}

#[derive(Args)]
struct UacArgs {
    #[command(flatten)]
    caller: CallerArgs,
    /// Calls started per second.
    #[arg(long, default_value_t = 100.0)]
    cps: f64,
    /// Seconds to start calls for.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Most calls to start (default: rate × duration).
    #[arg(long)]
    calls: Option<u64>,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct UasArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:5060")]
    listen: SocketAddr,
    /// Server threads (SO_REUSEPORT).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Cores to pin threads to, e.g. 0,1.
    #[arg(long, value_delimiter = ',')]
    cores: Vec<usize>,
    /// Seconds to run (Ctrl-C ends earlier).
    #[arg(long, default_value_t = 3600.0)]
    duration: f64,
    /// Send 100 Trying.
    #[arg(long)]
    trying: bool,
    /// Send 180 Ringing before the final answer.
    #[arg(long)]
    ring: bool,
    /// Delay before the final answer (ms).
    #[arg(long, default_value_t = 0)]
    answer_delay_ms: u64,
    /// Percentage of INVITEs answered 486.
    #[arg(long, default_value_t = 0.0)]
    busy_pct: f64,
    /// Percentage of INVITEs answered 503.
    #[arg(long, default_value_t = 0.0)]
    unavailable_pct: f64,
    /// Percentage of first INVITE transmissions ignored (exercises retransmission).
    #[arg(long, default_value_t = 0.0)]
    drop_first_invite_pct: f64,
    /// Challenge REGISTER and check this password.
    #[arg(long)]
    password: Option<String>,
    /// Digest realm.
    #[arg(long, default_value = "dce-loadgen")]
    realm: String,
    /// Socket buffer size in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    buffer: usize,
    #[command(flatten)]
    timers: TimerArgs,
    /// After a busy turn, sleep this long (µs) and answer in batches; answers
    /// wait up to this long (0: answer every arrival at once).
    #[arg(long, default_value_t = 500)]
    coalesce_us: u64,
    /// Send and receive datagrams one by one (no UDP GSO/GRO).
    #[arg(long)]
    no_gso: bool,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No live progress line.
    #[arg(long)]
    quiet: bool,
}

impl UasArgs {
    fn config(&self) -> Result<UasConfig> {
        let mut c = UasConfig::new(self.listen);
        c.threads = self.threads;
        c.cores = self.cores.clone();
        c.trying = self.trying;
        c.ring = self.ring;
        c.answer_delay = Duration::from_millis(self.answer_delay_ms);
        c.busy_share = self.busy_pct / 100.0;
        c.unavailable_share = self.unavailable_pct / 100.0;
        c.drop_first_invite_share = self.drop_first_invite_pct / 100.0;
        c.password = self.password.clone();
        c.realm = self.realm.clone();
        c.buffer_bytes = self.buffer;
        c.timers = self.timers.timers()?;
        c.linger = Duration::from_nanos(c.timers.timeout_ns);
        c.coalesce = Duration::from_micros(self.coalesce_us);
        c.gso = !self.no_gso;
        c.progress = !self.quiet;
        Ok(c)
    }
}

#[derive(Args)]
struct CapacityArgs {
    #[command(flatten)]
    caller: CallerArgs,
    /// First rate offered.
    #[arg(long, default_value_t = 500.0)]
    start_cps: f64,
    /// Factor between rising steps.
    #[arg(long, default_value_t = 1.5)]
    growth: f64,
    /// Highest rate offered.
    #[arg(long, default_value_t = 1_000_000.0)]
    max_cps: f64,
    /// Seconds per step.
    #[arg(long, default_value_t = 10.0)]
    step_duration: f64,
    /// Refinement steps between the last good and first bad rate.
    #[arg(long, default_value_t = 3)]
    refine: u32,
    /// A step fails above this percentage of failed calls.
    #[arg(long, default_value_t = 0.1)]
    max_failed_pct: f64,
    /// A step fails above this p99 setup latency (ms).
    #[arg(long, default_value_t = 50.0)]
    max_p99_ms: f64,
    /// Compare the result with this hardware profile's CPS band.
    #[arg(long)]
    profile: Option<String>,
    /// Run a spoofed INVITE flood at this many packets per second for the
    /// whole search, and check the profile's flood fields (`flood_pps`,
    /// `flood_legit_success_pct`) as well as its CPS band. Lab only: raw
    /// frames on `--flood-iface`, sources spoofed from `--flood-spoof`.
    #[arg(long, value_name = "PPS", requires_all = ["profile", "flood_iface"])]
    with_flood: Option<u64>,
    /// Interface to send the flood's raw frames on (inside a lab namespace;
    /// the host's default-route interface is refused).
    #[arg(long, value_name = "IF")]
    flood_iface: Option<String>,
    /// Spoofed source prefix of the flood (inside 198.18.0.0/15).
    #[arg(long, default_value = "198.18.128.0/17")]
    flood_spoof: String,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the latency-against-rate plot (SVG) here.
    #[arg(long)]
    svg: Option<PathBuf>,
}

#[derive(Args)]
struct SelftestArgs {
    /// Calls started per second.
    #[arg(long, default_value_t = 1000.0)]
    cps: f64,
    /// Seconds to start calls for.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Caller threads.
    #[arg(long, default_value_t = 1)]
    uac_threads: usize,
    /// Server threads.
    #[arg(long, default_value_t = 1)]
    uas_threads: usize,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// A flag set by SIGINT or SIGTERM, so runs end cleanly with a report.
pub fn stop_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, flag.clone());
    }
    flag
}

fn secs(s: f64, what: &str) -> Result<Duration> {
    if !(s.is_finite() && s > 0.0) {
        bail!("{what} must be a positive number of seconds, got {s}");
    }
    Ok(Duration::from_secs_f64(s))
}

fn write_file(path: &PathBuf, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Runs the command line; the exit code says how it went (0 fine, 1 error,
/// 3 the box does not meet its profile or a self-test failed).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dce-loadgen: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let stop = stop_flag();
    match cli.command {
        Command::Uas(a) => {
            let cfg = a.config()?;
            eprintln!(
                "dce-loadgen uas: listening on {} ({} threads)",
                cfg.listen, cfg.threads
            );
            let r = uas::run(cfg, secs(a.duration, "--duration")?, &stop)?;
            print!("{r}");
            if let Some(p) = &a.json {
                write_file(p, &r.to_json())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Uac(a) => {
            let mut cfg = a.caller.config()?;
            cfg.cps = a.cps;
            cfg.duration = secs(a.duration, "--duration")?;
            cfg.max_calls = a.calls.unwrap_or(u64::MAX);
            let r = uac::run(&cfg, &stop)?;
            print!("{r}");
            if let Some(p) = &a.json {
                write_file(p, &r.to_json())?;
            }
            Ok(if r.accounting.balanced {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        Command::Capacity(a) => {
            let mut u = a.caller.config()?;
            let show = u.progress;
            u.progress = false;
            let mut cfg = CapacityConfig::new(u);
            cfg.start_cps = a.start_cps;
            cfg.growth = a.growth;
            cfg.max_cps = a.max_cps;
            cfg.step_duration = secs(a.step_duration, "--step-duration")?;
            cfg.refine_steps = a.refine;
            cfg.max_failed_ratio = a.max_failed_pct / 100.0;
            cfg.max_p99 = Duration::from_secs_f64(a.max_p99_ms / 1000.0);
            // Read the profile first: a bad profile should not cost a search.
            let band = match &a.profile {
                Some(p) => Some(crate::verdict::band(p)?),
                None => None,
            };
            // The flood runs for the whole search, stopped when it ends;
            // its bounds cover the longest search this run can make.
            let flood_stop = Arc::new(AtomicBool::new(false));
            let flood = match (a.with_flood, &a.flood_iface) {
                (Some(pps), Some(iface)) => {
                    let mut f = attack::FloodConfig::new(iface, cfg.uac.target);
                    f.spoof = attack::Ipv4Net::parse(&a.flood_spoof)
                        .map_err(|e| anyhow::anyhow!("--flood-spoof: {e}"))?;
                    // Refused here, before any call is placed, rather than
                    // by the flood thread once the search may have begun.
                    attack::check_destination(cfg.uac.target.ip())?;
                    attack::check_interface(iface)?;
                    if !f.spoof.in_lab() {
                        return Err(attack::Refusal::SpoofRange(f.spoof.to_string()).into());
                    }
                    let longest = Duration::from_secs(4 * 3600);
                    f.bounds = attack::Bounds {
                        count: pps.saturating_mul(longest.as_secs()).max(1),
                        duration: longest,
                        pps: pps as f64,
                    };
                    let flood_stop = Arc::clone(&flood_stop);
                    let h = std::thread::Builder::new()
                        .name("flood".into())
                        .spawn(move || attack::flood(&f, &flood_stop))
                        .context("cannot start the flood thread")?;
                    // Let the flood reach its rate before the first step.
                    std::thread::sleep(Duration::from_millis(500));
                    if h.is_finished() {
                        let r = h
                            .join()
                            .map_err(|_| anyhow::anyhow!("the flood thread panicked"))?;
                        bail!(
                            "the flood ended before the search began: {}",
                            match r {
                                Ok(r) => format!("{} sent", r.sent),
                                Err(e) => e.to_string(),
                            }
                        );
                    }
                    Some((pps, h))
                }
                _ => None,
            };
            let searched = capacity::search(&cfg, &stop, |s| {
                if show {
                    eprintln!(
                        "step {:>8.0} cps: achieved {:.0} cps ({:.1}%), started {}, failed {:.3}%, p99 {:.3} ms, generator {:.0}%, {} us CPU/call -> {}",
                        s.offered_cps,
                        s.achieved_cps,
                        s.rate_share * 100.0,
                        s.started,
                        s.failed_ratio * 100.0,
                        s.latency.p99_us as f64 / 1000.0,
                        s.generator_peak_busy * 100.0,
                        s.generator_us_per_call.map_or("-".to_string(), |u| format!("{u:.1}")),
                        s.reason.as_deref().unwrap_or("held")
                    );
                }
            });
            flood_stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let flood_run = match flood {
                Some((pps, h)) => {
                    let fr = h
                        .join()
                        .map_err(|_| anyhow::anyhow!("the flood thread panicked"))?
                        .context("the flood")?;
                    eprintln!(
                        "flood: {} frames sent ({} failed) in {:.1} s, {:.0} pps (asked {pps})",
                        fr.sent, fr.send_failed, fr.elapsed_s, fr.pps
                    );
                    Some(crate::verdict::FloodRun {
                        offered_pps: pps,
                        achieved_pps: fr.pps,
                        sent: fr.sent,
                        send_failed: fr.send_failed,
                    })
                }
                None => None,
            };
            let mut r = searched?;
            if let (Some(name), Some(band)) = (&a.profile, band) {
                let flood = flood_run.map(|f| crate::verdict::flood_verdict(&band, f, &r.steps));
                r.profile = Some(crate::verdict::verdict(
                    name,
                    &band,
                    r.highest_held_cps.unwrap_or(0.0),
                    flood,
                ));
            }
            print!("{r}");
            if let Some(p) = &a.json {
                write_file(p, &r.to_json())?;
            }
            if let Some(p) = &a.svg {
                write_file(p, &crate::plot::latency_vs_cps(&r, a.max_p99_ms))?;
            }
            Ok(match &r.profile {
                Some(v) if !v.meets => ExitCode::from(3),
                _ => ExitCode::SUCCESS,
            })
        }
        Command::Attack(a) => attack::cli::run(a, &stop),
        Command::Selftest(a) => {
            let mut s = UasConfig::new("127.0.0.1:0".parse().expect("literal"));
            s.threads = a.uas_threads;
            let server = uas::Uas::start(s)?;
            let mut c = UacConfig::new(server.local_addr());
            c.cps = a.cps;
            c.duration = secs(a.duration, "--duration")?;
            c.max_calls = u64::MAX;
            c.threads = a.uac_threads;
            c.sources = c.sources.max(a.uac_threads);
            c.progress = true;
            let r = uac::run(&c, &stop)?;
            let s = server.stop()?;
            print!("{r}{s}");
            if let Some(p) = &a.json {
                let doc = serde_json::json!({ "uac": r, "uas": s });
                write_file(p, &serde_json::to_string_pretty(&doc)?)?;
            }
            let ok = r.accounting.balanced && r.outcomes.completed == r.started && r.started > 0;
            println!(
                "selftest: {}",
                if ok {
                    "PASS (every call completed, buckets balance)"
                } else {
                    "FAIL"
                }
            );
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
    }
}
