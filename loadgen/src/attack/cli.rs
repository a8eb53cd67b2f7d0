//! The `dce-loadgen attack ...` subcommands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};

use super::raw::parse_mac;
use super::{
    Bounds, FloodConfig, FragmentMode, FragmentsConfig, GarbageConfig, GuessConfig, Ipv4Net,
    ScanConfig,
};
use crate::numbers::Numbers;
use sip::Method;

/// Attack kinds.
#[derive(Subcommand)]
pub enum AttackCommand {
    /// Sweep extensions like SIPVicious (svmap/svwar).
    Scan(ScanArgs),
    /// Guess a user's REGISTER password (like svcrack).
    Guess(GuessArgs),
    /// Flood INVITEs or OPTIONS from spoofed sources (raw frames).
    Flood(FloodArgs),
    /// Malformed SIP and non-SIP garbage on a SIP port.
    Garbage(GarbageArgs),
    /// IP fragments of SIP datagrams (raw frames).
    Fragments(FragmentsArgs),
}

/// Bounds every attack carries.
#[derive(Args)]
pub struct BoundArgs {
    /// Most packets (or guesses, or datagrams) to send.
    #[arg(long, default_value_t = 10_000)]
    count: u64,
    /// Longest run, in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Packets per second; 0 = as fast as the box can.
    #[arg(long, default_value_t = 1000.0)]
    pps: f64,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
}

impl BoundArgs {
    fn bounds(&self) -> Result<Bounds> {
        if !(self.duration.is_finite() && self.duration > 0.0) {
            bail!(
                "--duration must be a positive number of seconds, got {}",
                self.duration
            );
        }
        Ok(Bounds {
            count: self.count,
            duration: Duration::from_secs_f64(self.duration),
            pps: self.pps,
        })
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum ScanMethod {
    Options,
    Register,
    Invite,
}

/// `attack scan`.
#[derive(Args)]
pub struct ScanArgs {
    /// Target (198.18.0.0/15 or 127.0.0.0/8).
    #[arg(long)]
    target: SocketAddr,
    /// Request sent to each extension.
    #[arg(long, value_enum, default_value = "register")]
    method: ScanMethod,
    /// Extensions swept.
    #[arg(long, default_value = "{100-999}")]
    extensions: String,
    /// User-Agent.
    #[arg(long, default_value = "friendly-scanner")]
    user_agent: String,
    /// From display name.
    #[arg(long, default_value = "sipvicious")]
    from_name: String,
    /// Address to send from (default: the route's source address); lets
    /// each attack in a lab come from a source of its own.
    #[arg(long)]
    local_addr: Option<std::net::IpAddr>,
    /// Source sockets.
    #[arg(long, default_value_t = 1)]
    sources: usize,
    #[command(flatten)]
    bounds: BoundArgs,
}

/// `attack guess`.
#[derive(Args)]
pub struct GuessArgs {
    /// Target (198.18.0.0/15 or 127.0.0.0/8).
    #[arg(long)]
    target: SocketAddr,
    /// User attacked.
    #[arg(long, default_value = "100")]
    user: String,
    /// Passwords tried, as a pattern.
    #[arg(long, default_value = "{0000-9999}", conflicts_with = "passwords_file")]
    passwords: String,
    /// Passwords tried, one per line.
    #[arg(long)]
    passwords_file: Option<PathBuf>,
    /// User-Agent.
    #[arg(long, default_value = "friendly-scanner")]
    user_agent: String,
    /// Address to send from (default: the route's source address); lets
    /// each attack in a lab come from a source of its own.
    #[arg(long)]
    local_addr: Option<std::net::IpAddr>,
    /// Source sockets.
    #[arg(long, default_value_t = 1)]
    sources: usize,
    #[command(flatten)]
    bounds: BoundArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum FloodMethod {
    Invite,
    Options,
}

/// `attack flood`.
#[derive(Args)]
pub struct FloodArgs {
    /// Interface to send raw frames on (inside a lab namespace).
    #[arg(long)]
    iface: String,
    /// Target (198.18.0.0/15 or 127.0.0.0/8, IPv4).
    #[arg(long)]
    target: SocketAddr,
    /// Spoofed source prefix.
    #[arg(long, default_value = "198.18.128.0/17")]
    spoof: String,
    /// Request flooded.
    #[arg(long, value_enum, default_value = "invite")]
    method: FloodMethod,
    /// Destination MAC (default: from the neighbour table).
    #[arg(long)]
    dst_mac: Option<String>,
    /// Dial this number in every request (e.g. 911: a forged emergency
    /// flood); default: 10,000 numbers in turn.
    #[arg(long, value_parser = digits)]
    number: Option<String>,
    #[command(flatten)]
    bounds: BoundArgs,
}

fn digits(s: &str) -> Result<String, String> {
    if !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?}: 1 to 32 digits"))
    }
}

/// `attack garbage`.
#[derive(Args)]
pub struct GarbageArgs {
    /// Target (198.18.0.0/15 or 127.0.0.0/8).
    #[arg(long)]
    target: SocketAddr,
    /// Address to send from (default: the route's source address); lets
    /// each attack in a lab come from a source of its own.
    #[arg(long)]
    local_addr: Option<std::net::IpAddr>,
    /// Source sockets.
    #[arg(long, default_value_t = 8)]
    sources: usize,
    /// Noise seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    bounds: BoundArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Complete,
    Incomplete,
    Tiny,
}

/// `attack fragments`.
#[derive(Args)]
pub struct FragmentsArgs {
    /// Interface to send raw frames on (inside a lab namespace).
    #[arg(long)]
    iface: String,
    /// Target (198.18.0.0/15 or 127.0.0.0/8, IPv4).
    #[arg(long)]
    target: SocketAddr,
    /// Source prefix.
    #[arg(long, default_value = "198.18.200.0/24")]
    spoof: String,
    /// Which fragments are sent.
    #[arg(long, value_enum, default_value = "complete")]
    mode: ModeArg,
    /// Datagram size before fragmentation.
    #[arg(long, default_value_t = 3000)]
    datagram_size: usize,
    /// Data bytes per fragment.
    #[arg(long, default_value_t = 1200)]
    fragment_size: usize,
    /// Destination MAC (default: from the neighbour table).
    #[arg(long)]
    dst_mac: Option<String>,
    #[command(flatten)]
    bounds: BoundArgs,
}

/// Runs an attack subcommand.
pub fn run(cmd: AttackCommand, stop: &AtomicBool) -> Result<ExitCode> {
    let (report, json) = match cmd {
        AttackCommand::Scan(a) => {
            let mut c = ScanConfig::new(a.target);
            c.method = match a.method {
                ScanMethod::Options => Method::Options,
                ScanMethod::Register => Method::Register,
                ScanMethod::Invite => Method::Invite,
            };
            c.extensions = Numbers::pattern(&a.extensions)?;
            c.user_agent = a.user_agent;
            c.from_name = a.from_name;
            c.sources = a.sources;
            c.local_addr = a.local_addr;
            c.bounds = a.bounds.bounds()?;
            (super::scan(&c, stop)?, a.bounds.json)
        }
        AttackCommand::Guess(a) => {
            let mut c = GuessConfig::new(a.target);
            c.user = a.user;
            c.passwords = match &a.passwords_file {
                Some(p) => Numbers::file(p)?,
                None => Numbers::pattern(&a.passwords)?,
            };
            c.user_agent = a.user_agent;
            c.sources = a.sources;
            c.local_addr = a.local_addr;
            c.bounds = a.bounds.bounds()?;
            (super::guess(&c, stop)?, a.bounds.json)
        }
        AttackCommand::Flood(a) => {
            let mut c = FloodConfig::new(&a.iface, a.target);
            c.spoof = Ipv4Net::parse(&a.spoof).map_err(anyhow::Error::msg)?;
            c.method = match a.method {
                FloodMethod::Invite => Method::Invite,
                FloodMethod::Options => Method::Options,
            };
            c.dst_mac = a
                .dst_mac
                .as_deref()
                .map(parse_mac)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            c.number = a.number.clone();
            c.bounds = a.bounds.bounds()?;
            (super::flood(&c, stop)?, a.bounds.json)
        }
        AttackCommand::Garbage(a) => {
            let c = GarbageConfig {
                target: a.target,
                sources: a.sources,
                local_addr: a.local_addr,
                bounds: a.bounds.bounds()?,
                seed: a.seed,
                listen_after: Duration::from_secs(1),
            };
            (super::garbage(&c, stop)?, a.bounds.json)
        }
        AttackCommand::Fragments(a) => {
            let mut c = FragmentsConfig::new(&a.iface, a.target);
            c.spoof = Ipv4Net::parse(&a.spoof).map_err(anyhow::Error::msg)?;
            c.mode = match a.mode {
                ModeArg::Complete => FragmentMode::Complete,
                ModeArg::Incomplete => FragmentMode::Incomplete,
                ModeArg::Tiny => FragmentMode::Tiny,
            };
            c.datagram_size = a.datagram_size;
            c.fragment_size = a.fragment_size;
            c.dst_mac = a
                .dst_mac
                .as_deref()
                .map(parse_mac)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            c.bounds = a.bounds.bounds()?;
            (super::fragments(&c, stop)?, a.bounds.json)
        }
    };
    print!("{report}");
    if let Some(p) = json {
        std::fs::write(&p, report.to_json())
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
