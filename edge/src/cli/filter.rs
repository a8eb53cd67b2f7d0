//! The filter-side subcommands: `filter` (the shield: XDP alone in front of
//! a SIP server on the box), `stats`, `ban`, `unban`, `allow`. `main.rs`
//! only dispatches to these.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;

use xdp::config::{AttachMode, Cidr, FilterConfig, VerdictMode};
use xdp::loader::{Filter, Pinned};
use xdp::maps::{BanEntry, BanReason, BAN_NOTE_MAX};
use xdp::stats::StatsReport;

use appliance::control::ControlRequest;

/// `dce-edge filter`: the XDP filter alone; legitimate SIP passes to the kernel.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// The interface to protect.
    #[arg(long)]
    pub iface: String,
    /// The appliance configuration file (its `[filter]` table); defaults without it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Attach mode: native, generic or auto (overrides the file's `attach`).
    #[arg(long)]
    pub mode: Option<AttachMode>,
}

/// `dce-edge stats`: counters of a running filter or appliance.
#[derive(Debug, Args)]
pub struct PinnedStatsArgs {
    /// The interface (optional when only one filter runs).
    #[arg(long)]
    pub iface: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// How many top sources to show.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Seconds between the two reads the rates come from.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
}

/// `dce-edge ban`: ban a source or network, or list the bans.
#[derive(Debug, Args)]
pub struct BanArgs {
    /// ADDRESS or ADDRESS/PREFIX to ban.
    #[arg(required_unless_present = "list")]
    pub target: Option<String>,
    /// The interface (optional when only one filter runs).
    #[arg(long)]
    pub iface: Option<String>,
    /// Seconds the ban lasts; without it the ban lasts until `unban`.
    #[arg(long)]
    pub ttl: Option<u64>,
    /// A reason (manual, scanner, not_found, auth_failure, extension_scan,
    /// flood) or a note of up to 32 bytes (kept with reason manual).
    #[arg(long)]
    pub reason: Option<String>,
    /// List the bans (operators' and automatic ones) with their origin,
    /// reason and time left instead.
    #[arg(long, conflicts_with = "target")]
    pub list: bool,
    /// With --list: print JSON.
    #[arg(long, requires = "list")]
    pub json: bool,
    /// A running appliance's control socket: when it answers, the change
    /// goes through the appliance (filter and proxy workers alike); when
    /// nothing listens there, the filter's pinned maps are changed (shield
    /// mode). Default: the one the appliance owning the interface's filter
    /// recorded, else /run/dce-edge/control.sock.
    #[arg(long)]
    pub control: Option<PathBuf>,
}

/// `dce-edge unban`: lift a ban.
#[derive(Debug, Args)]
pub struct UnbanArgs {
    /// ADDRESS or ADDRESS/PREFIX, exactly as banned. An IPv4 address, or an
    /// IPv6 /64 or address, also lifts the automatic ban of that source
    /// (automatic IPv6 bans cover the /64).
    pub target: String,
    /// The interface (optional when only one filter runs).
    #[arg(long)]
    pub iface: Option<String>,
    /// A running appliance's control socket: when it answers, the change
    /// goes through the appliance (filter and proxy workers alike); when
    /// nothing listens there, the filter's pinned maps are changed (shield
    /// mode). Default: the one the appliance owning the interface's filter
    /// recorded, else /run/dce-edge/control.sock.
    #[arg(long)]
    pub control: Option<PathBuf>,
}

/// `dce-edge allow`: add a source or network to the allowlist.
#[derive(Debug, Args)]
pub struct AllowArgs {
    /// ADDRESS or ADDRESS/PREFIX.
    pub target: String,
    /// The interface (optional when only one filter runs).
    #[arg(long)]
    pub iface: Option<String>,
    /// Remove it from the allowlist instead.
    #[arg(long)]
    pub remove: bool,
    /// A running appliance's control socket: when it answers, the change
    /// goes through the appliance (filter and proxy workers alike); when
    /// nothing listens there, the filter's pinned maps are changed (shield
    /// mode). Default: the one the appliance owning the interface's filter
    /// recorded, else /run/dce-edge/control.sock.
    #[arg(long)]
    pub control: Option<PathBuf>,
}

fn open(iface: &Option<String>) -> Result<Pinned> {
    Ok(match iface {
        Some(i) => Pinned::open(i)?,
        None => Pinned::open_only()?,
    })
}

/// The control socket to try: the one given, else the one the appliance
/// owning the interface's filter recorded in its pins, else the default.
fn control_path(given: &Option<PathBuf>, iface: &Option<String>) -> PathBuf {
    if let Some(p) = given {
        return p.clone();
    }
    open(iface)
        .ok()
        .and_then(|p| p.control_socket().ok().flatten())
        .unwrap_or_else(|| PathBuf::from(appliance::control::DEFAULT_PATH))
}

/// Sends `request` to the appliance at `control` when one listens there:
/// `None` when nothing does (then the pinned maps are the way), else the
/// appliance's answer.
fn via_appliance(control: &std::path::Path, request: ControlRequest) -> Option<Result<()>> {
    use std::io::ErrorKind;
    match appliance::control::request(control, &request, Duration::from_secs(30)) {
        Ok(r) if r.ok => {
            println!("{}", r.message);
            Some(Ok(()))
        }
        Ok(r) => Some(Err(anyhow::anyhow!("{}", r.message))),
        Err(appliance::control::ControlError::Io { source, .. })
            if matches!(
                source.kind(),
                ErrorKind::NotFound | ErrorKind::ConnectionRefused
            ) =>
        {
            None
        }
        Err(e) => Some(Err(e.into())),
    }
}

fn parse_target(s: &str) -> Result<Cidr> {
    s.parse::<Cidr>().map_err(|e| anyhow::anyhow!("{e}"))
}

/// Runs the shield until SIGINT or SIGTERM, then detaches and unpins.
pub fn run_filter(args: &FilterArgs) -> Result<()> {
    let mut cfg = match &args.config {
        Some(path) => FilterConfig::from_file(path)?,
        None => FilterConfig::default(),
    };
    let mode = args.mode.unwrap_or(cfg.attach);
    // The shield has no AF_XDP workers: good SIP always goes to the kernel.
    cfg.mode = VerdictMode::Pass;

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot install the SIGINT/SIGTERM handler")?;
    }
    let mut filter = Filter::load(&cfg, &args.iface, mode)?;
    let attached = filter.attached().expect("load attaches");
    eprintln!(
        "dce-edge filter: XDP {}{} on {}, SIP ports {:?}; good SIP passes to the kernel; \
         maps pinned in {}; stop with SIGINT or SIGTERM",
        attached.name(),
        if matches!(attached, xdp::Attached::Generic { fell_back: true }) {
            " (FELL BACK from native)"
        } else {
            ""
        },
        args.iface,
        cfg.sip_ports,
        filter
            .pin_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
    );
    let mut last_sweep = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if last_sweep.elapsed() >= Duration::from_secs(10) {
            // Expired bans already do not apply; this only frees their entries.
            if let Err(e) = filter.sweep_expired_bans() {
                eprintln!("dce-edge filter: sweeping expired bans: {e}");
            }
            if let Err(e) = filter.sweep_expired_verified() {
                eprintln!("dce-edge filter: sweeping lapsed verifications: {e}");
            }
            last_sweep = Instant::now();
        }
    }
    let iface = args.iface.clone();
    drop(filter);
    eprintln!("dce-edge filter: detached from {iface}, pins removed");
    Ok(())
}

/// Prints totals, rates over `--interval`, the top sources and how many
/// sources are verified.
pub fn run_stats(args: &PinnedStatsArgs) -> Result<()> {
    if !(args.interval > 0.0 && args.interval <= 3600.0) {
        bail!(
            "--interval {} must be above 0 and at most 3600 seconds",
            args.interval
        );
    }
    let pinned = open(&args.iface)?;
    let first = pinned.read_stats()?;
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(args.interval));
    let totals = pinned.read_stats()?;
    let rates = totals.rates_since(&first, started.elapsed());
    let report = StatsReport {
        iface: pinned.iface().to_string(),
        totals,
        rates,
        top_sources: pinned.top_sources(args.top)?,
        verified_sources: pinned.verified_count()?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

/// Bans a network, or lists the bans.
pub fn run_ban(args: &BanArgs) -> Result<()> {
    if !args.list {
        let target = args.target.clone().expect("clap requires it");
        let (reason, note) = match args.reason.as_deref() {
            Some(text) if text.parse::<BanReason>().is_err() => ("manual".into(), text.into()),
            Some(text) => (text.to_string(), String::new()),
            None => ("manual".into(), String::new()),
        };
        let request = ControlRequest::Ban {
            network: target,
            ttl_seconds: args.ttl,
            reason,
            note,
        };
        if let Some(done) = via_appliance(&control_path(&args.control, &args.iface), request) {
            return done;
        }
    }
    let mut pinned = open(&args.iface)?;
    if args.list {
        let bans = pinned.bans()?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&bans)?);
        } else {
            print!("{}", ban_table(&bans));
        }
        return Ok(());
    }
    let target = parse_target(args.target.as_deref().expect("clap requires it"))?;
    let (reason, note) = match args.reason.as_deref() {
        None => (BanReason::Manual, String::new()),
        Some(text) => match text.parse::<BanReason>() {
            Ok(r) => (r, String::new()),
            Err(_) if text.len() <= BAN_NOTE_MAX => (BanReason::Manual, text.to_string()),
            Err(_) => bail!(
                "--reason {text:?} is neither a reason name nor a note of at most {BAN_NOTE_MAX} bytes"
            ),
        },
    };
    let ttl = args.ttl.map(Duration::from_secs);
    pinned.ban(target, ttl, reason, &note)?;
    println!(
        "banned {target} on {} ({reason}{}), {}",
        pinned.iface(),
        if note.is_empty() {
            String::new()
        } else {
            format!(": {note}")
        },
        match ttl {
            Some(t) => format!("for {}", human(t)),
            None => "until unbanned".into(),
        }
    );
    Ok(())
}

/// Lifts a ban.
pub fn run_unban(args: &UnbanArgs) -> Result<()> {
    let request = ControlRequest::Unban {
        network: args.target.clone(),
    };
    if let Some(done) = via_appliance(&control_path(&args.control, &args.iface), request) {
        return done;
    }
    let mut pinned = open(&args.iface)?;
    let target = parse_target(&args.target)?;
    let lifted = pinned.unban(target)?;
    if lifted.any() {
        let what = match (lifted.operator, lifted.automatic) {
            (true, true) => "the operator ban and the automatic ban",
            (true, false) => "the operator ban",
            _ => "the automatic ban",
        };
        println!("unbanned {target} on {}: lifted {what}", pinned.iface());
        Ok(())
    } else {
        bail!(
            "{target} is not banned on {} (see `dce-edge ban --list`; unban takes the exact network)",
            pinned.iface()
        )
    }
}

/// Adds to (or removes from) the allowlist.
pub fn run_allow(args: &AllowArgs) -> Result<()> {
    let request = if args.remove {
        ControlRequest::Disallow {
            network: args.target.clone(),
        }
    } else {
        ControlRequest::Allow {
            network: args.target.clone(),
        }
    };
    if let Some(done) = via_appliance(&control_path(&args.control, &args.iface), request) {
        return done;
    }
    let mut pinned = open(&args.iface)?;
    let target = parse_target(&args.target)?;
    if args.remove {
        if !pinned.disallow(target)? {
            bail!("{target} is not in the allowlist of {}", pinned.iface());
        }
        println!("removed {target} from the allowlist on {}", pinned.iface());
    } else {
        pinned.allow(target)?;
        println!(
            "allowed {target} on {}: it skips the blocklist, bans and rate limits",
            pinned.iface()
        );
    }
    Ok(())
}

/// "1h 2m 3s".
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s / 60) % 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m {sec}s"),
        (h, m, sec) => format!("{h}h {m}m {sec}s"),
    }
}

/// The ban list as a table.
pub fn ban_table(bans: &[BanEntry]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    if bans.is_empty() {
        s.push_str("no bans\n");
        return s;
    }
    let _ = writeln!(
        s,
        "{:<28} {:<10} {:<15} {:<14} {:<12} NOTE",
        "NETWORK", "ORIGIN", "REASON", "TIME LEFT", "BANNED AGO"
    );
    for b in bans {
        let left = match (b.expired, b.left) {
            (true, _) => "expired".to_string(),
            (false, Some(l)) => human(l),
            (false, None) => "never expires".to_string(),
        };
        let _ = writeln!(
            s,
            "{:<28} {:<10} {:<15} {:<14} {:<12} {}",
            b.network.to_string(),
            b.origin.name(),
            b.reason.name(),
            left,
            human(b.age),
            b.note
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use xdp::maps::BanOrigin;

    #[test]
    fn ban_table_shows_each_bans_origin() {
        let entry = |net: &str, origin, reason, left| BanEntry {
            network: net.parse().unwrap(),
            origin,
            reason,
            note: String::new(),
            left,
            age: Duration::from_secs(5),
            expired: false,
        };
        let table = ban_table(&[
            entry(
                "198.18.0.10/32",
                BanOrigin::Automatic,
                BanReason::Scanner,
                Some(Duration::from_secs(600)),
            ),
            entry(
                "198.18.0.10/32",
                BanOrigin::Operator,
                BanReason::Manual,
                None,
            ),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].contains("ORIGIN"), "{table}");
        assert!(
            lines[1].contains("automatic") && lines[1].contains("scanner"),
            "{table}"
        );
        assert!(
            lines[2].contains("operator") && lines[2].contains("never expires"),
            "{table}"
        );
    }
}
