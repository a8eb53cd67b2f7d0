//! The filter-side subcommands: `filter` (the shield: XDP alone in front of
//! a SIP server on the box), `stats`, `ban`, `unban`, `allow`. `main.rs`
//! only dispatches to these.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;

use xdp::config::{AttachMode, Cidr};
use xdp::loader::Pinned;
use xdp::maps::{BanEntry, BanReason, BAN_NOTE_MAX};
use xdp::stats::StatsReport;

use appliance::control::ControlRequest;
use appliance::ControlEvent;

/// `dce-edge filter`: the XDP filter alone; legitimate SIP passes to the
/// kernel. `dce-edge filter reload` applies a changed `[filter]` table to a
/// running filter or appliance.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct FilterArgs {
    /// What to do instead of running the filter.
    #[command(subcommand)]
    pub action: Option<FilterAction>,
    /// The interface to protect.
    #[arg(long, required = true)]
    pub iface: Option<String>,
    /// The configuration file: its `[filter]`, `[metrics]` and `[events]`
    /// tables (an appliance's file will do); defaults without it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Attach mode: native, generic or auto (overrides the file's `attach`).
    #[arg(long)]
    pub mode: Option<AttachMode>,
    /// Where to listen for `dce-edge` commands (default:
    /// /run/dce-edge/filter/IFACE.sock, which the commands find by
    /// themselves).
    #[arg(long)]
    pub control: Option<PathBuf>,
    /// Where to serve /metrics and /snapshot.json (overrides the file's
    /// `[metrics] listen`; default 127.0.0.1:9560).
    #[arg(long)]
    pub metrics: Option<std::net::SocketAddr>,
}

/// What `dce-edge filter` does besides running.
#[derive(Debug, clap::Subcommand)]
pub enum FilterAction {
    /// Read the `[filter]` table of the running filter's (or appliance's)
    /// configuration file again and apply it without detaching (same XDP
    /// program, counters and bans kept); a bad table is refused with file
    /// and line and the running rules stay.
    Reload(FilterReloadArgs),
}

/// `dce-edge filter reload`.
#[derive(Debug, Args)]
pub struct FilterReloadArgs {
    /// The control socket of the appliance or filter to reload (default:
    /// the appliance's, else the filter's on --iface or the only one).
    #[arg(long)]
    pub control: Option<PathBuf>,
    /// The interface whose filter to reload (optional when one runs).
    #[arg(long)]
    pub iface: Option<String>,
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

/// `dce-edge ban`: ban a source or network, list the bans, or import a
/// blocklist feed.
#[derive(Debug, Args)]
pub struct BanArgs {
    /// ADDRESS or ADDRESS/PREFIX to ban.
    #[arg(required_unless_present_any = ["list", "import"])]
    pub target: Option<String>,
    /// Ban every address and network of a blocklist feed: a plain list (one
    /// per line, `#` and `;` comments) or APIBan JSON; --ttl and --reason
    /// apply to each. A feed with an entry that is not a network (or is
    /// wider than /8, /16 for IPv6) is refused whole, each such line named.
    /// Networks inside or covering the allowlist (and the upstreams) are
    /// not banned. Prints what was banned and what was not, and why.
    #[arg(long, conflicts_with_all = ["target", "list"])]
    pub import: Option<PathBuf>,
    /// With --import: the feed's format (auto, plain, apiban).
    #[arg(long, requires = "import", default_value = "auto")]
    pub format: appliance::feeds::FeedFormat,
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
    /// With --list or --import: print JSON.
    #[arg(long)]
    pub json: bool,
    /// The control socket of a running appliance or filter. By default the one the
    /// appliance owning the interface's filter recorded in its pins is
    /// tried, then the appliance's default (/run/dce-edge/control.sock), then
    /// the shield's on --iface (or the only one); the change goes through the process
    /// that runs the filter (filter and proxy workers alike, with an
    /// event). Only when nothing answers are the pinned maps changed
    /// directly.
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
    /// The control socket of a running appliance or filter. By default the one the
    /// appliance owning the interface's filter recorded in its pins is
    /// tried, then the appliance's default (/run/dce-edge/control.sock), then
    /// the shield's on --iface (or the only one); the change goes through the process
    /// that runs the filter (filter and proxy workers alike, with an
    /// event). Only when nothing answers are the pinned maps changed
    /// directly.
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
    /// The control socket of a running appliance or filter. By default the one the
    /// appliance owning the interface's filter recorded in its pins is
    /// tried, then the appliance's default (/run/dce-edge/control.sock), then
    /// the shield's on --iface (or the only one); the change goes through the process
    /// that runs the filter (filter and proxy workers alike, with an
    /// event). Only when nothing answers are the pinned maps changed
    /// directly.
    #[arg(long)]
    pub control: Option<PathBuf>,
}

fn open(iface: &Option<String>) -> Result<Pinned> {
    Ok(match iface {
        Some(i) => Pinned::open(i)?,
        None => Pinned::open_only()?,
    })
}

/// The control sockets to try, in order: `control` when given, else the
/// one the appliance running the filter of `iface` (or of the only filter
/// running) recorded in its pins, the appliance's default and the
/// shield's.
pub(crate) fn control_sockets(control: Option<&Path>, iface: Option<&str>) -> Vec<PathBuf> {
    if let Some(c) = control {
        return vec![c.to_path_buf()];
    }
    let mut out = Vec::new();
    let iface = match iface {
        Some(i) => Some(i.to_string()),
        None => match xdp::loader::running_ifaces() {
            Ok(list) if list.len() == 1 => list.into_iter().next(),
            _ => None,
        },
    };
    // The appliance that runs the interface's filter recorded its socket.
    if let Some(recorded) = open(&iface)
        .ok()
        .and_then(|p| p.control_socket().ok().flatten())
    {
        out.push(recorded);
    }
    let default = PathBuf::from(appliance::control::DEFAULT_PATH);
    if !out.contains(&default) {
        out.push(default);
    }
    if let Some(p) = iface.and_then(|i| appliance::shield::default_control_path(&i).ok()) {
        out.push(p);
    }
    out
}

/// Sends `request` to the first appliance or shield that answers on one of
/// the [`control_sockets`]: `None` when none does (then the pinned maps are
/// the way), else its answer.
fn via_control(
    control: Option<&Path>,
    iface: Option<&str>,
    request: ControlRequest,
) -> Option<Result<()>> {
    control_sockets(control, iface)
        .iter()
        .find_map(|path| via_appliance(path, request.clone()))
}

/// Sends `request` to the process listening at `control`: `None` when
/// nothing does, else its answer.
fn via_appliance(control: &Path, request: ControlRequest) -> Option<Result<()>> {
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

/// `dce-edge filter reload`: asks the appliance or shield that runs the
/// filter to apply its `[filter]` table again.
pub fn run_reload(args: &FilterReloadArgs) -> Result<()> {
    let tried = control_sockets(args.control.as_deref(), args.iface.as_deref());
    match via_control(
        args.control.as_deref(),
        args.iface.as_deref(),
        ControlRequest::FilterReload,
    ) {
        Some(done) => done,
        None => bail!(
            "no appliance or filter answers on {}: is one running (and are you root)?",
            tried
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" or ")
        ),
    }
}

/// Runs the shield until SIGINT or SIGTERM, then detaches and unpins;
/// SIGHUP reloads its `[filter]` table.
pub fn run_filter(args: &FilterArgs) -> Result<()> {
    use appliance::control::ControlServer;
    use appliance::shield::{Shield, ShieldConfig};
    use telemetry::events::{Event, EventLog};
    use telemetry::metrics::MetricsServer;

    if let Some(FilterAction::Reload(r)) = &args.action {
        return run_reload(r);
    }
    let iface = args.iface.clone().expect("clap requires --iface");
    let mut cfg = ShieldConfig::load(args.config.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(m) = args.metrics {
        cfg.metrics.listen = m;
    }
    let mode = args.mode.unwrap_or(cfg.filter.attach);

    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot install the SIGINT/SIGTERM handler")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
        .context("cannot install the SIGHUP handler")?;
    let mut events = EventLog::open(&cfg.events).context("opening the event log")?;
    let control_path = match &args.control {
        Some(p) => p.clone(),
        None => appliance::shield::default_control_path(&iface)?,
    };
    let mut control = ControlServer::bind(&control_path)?;
    let sip_ports = cfg.filter.sip_ports.clone();
    let listen = cfg.metrics.listen;
    let mut shield = Shield::start(cfg, &iface, mode)?;
    // Served once the filter runs: a snapshot means an attached filter.
    let (metrics, publisher) = MetricsServer::start_published(listen)
        .with_context(|| format!("starting the metrics endpoint on {listen}"))?;
    publisher.publish(shield.snapshot());
    let filter = shield.filter();
    let attached = filter.attached().expect("load attaches");
    let _ = events.write(
        &Event::start(env!("CARGO_PKG_VERSION"), "filter", Some(&iface))
            .with("attach", attached.name())
            .with("program_id", filter.program_id().unwrap_or(0)),
    );
    eprintln!(
        "dce-edge filter: XDP {}{} on {iface}, SIP ports {sip_ports:?}, program id {}; good SIP \
         passes to the kernel; maps pinned in {}; commands on {}; metrics on http://{}/metrics; \
         stop with SIGINT or SIGTERM, reload the [filter] table with SIGHUP or `dce-edge filter reload`",
        attached.name(),
        if matches!(attached, xdp::Attached::Generic { fell_back: true }) {
            " (FELL BACK from native)"
        } else {
            ""
        },
        filter
            .program_id()
            .map_or("?".to_string(), |id| id.to_string()),
        filter
            .pin_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        control.path().display(),
        metrics.local_addr(),
    );
    let mut last_publish = Instant::now() - Duration::from_secs(10);
    while !stop.load(Ordering::Relaxed) {
        if reload.swap(false, Ordering::Relaxed) {
            match shield.reload_filter() {
                Ok(m) => eprintln!("dce-edge filter: {m}"),
                Err(e) => eprintln!("dce-edge filter: reload refused, the running rules stay: {e}"),
            }
        }
        // The event log is this loop's; everything else is the shield's.
        control.poll(|request| match request {
            ControlRequest::ReopenEvents => super::run::reopen_events(&mut events),
            ControlRequest::CaptureNote { .. } => super::run::note_capture(&mut events, &request),
            other => shield.handle(other),
        });
        if last_publish.elapsed() >= Duration::from_secs(1) {
            last_publish = Instant::now();
            publisher.publish(shield.snapshot());
        }
        for ev in shield.tick() {
            if let ControlEvent::AttachFallback { interface } = &ev {
                eprintln!(
                    "dce-edge filter: WARNING: native XDP refused on {interface}; running in generic (slower) mode"
                );
            }
            if let Some(e) = ev.to_event("") {
                let _ = events.write(&e);
            }
        }
        let _ = events.drain();
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = events.write(&Event::stop("signal"));
    metrics.stop();
    drop(control);
    drop(shield);
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
    let mut top_sources = pinned.top_sources(usize::MAX)?;
    let top_networks = appliance::run::top_networks(&top_sources);
    top_sources.truncate(args.top);
    let report = StatsReport {
        iface: pinned.iface().to_string(),
        totals,
        rates,
        top_sources,
        verified_sources: pinned.verified_count()?,
    };
    if args.json {
        /// The filter's report with the top networks beside it.
        #[derive(serde::Serialize)]
        struct WithNetworks<'a> {
            #[serde(flatten)]
            report: &'a StatsReport,
            top_networks: &'a telemetry::stats::networks::NetworkTally,
        }
        let out = WithNetworks {
            report: &report,
            top_networks: &top_networks,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", report.to_text());
        print!("{}", super::stats::networks_text(&top_networks, 5));
    }
    Ok(())
}

/// Bans a network, lists the bans, or imports a feed.
pub fn run_ban(args: &BanArgs) -> Result<()> {
    if let Some(file) = &args.import {
        return run_import(args, file);
    }
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
        if let Some(done) = via_control(args.control.as_deref(), args.iface.as_deref(), request) {
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

/// `dce-edge ban --import FILE`: reads and checks the feed here (each
/// refused line named), sends it in batches to the appliance or shield that
/// runs the filter (or, when none answers, writes the pinned maps), and
/// prints what fit and what did not.
fn run_import(args: &BanArgs, file: &Path) -> Result<()> {
    use appliance::feeds::{self, ImportReport};
    let src = config::SourceFile::read_bounded(file, feeds::MAX_FEED_BYTES)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let feed = feeds::parse_feed(src.text(), args.format)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    // A feed with a bad entry is refused whole, before anything is banned.
    feed.check(&file.display().to_string())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (reason, note) = match args.reason.as_deref() {
        Some(text) if text.parse::<BanReason>().is_ok() => (text.to_string(), feed_note(file)),
        Some(text) if text.len() <= BAN_NOTE_MAX => ("manual".to_string(), text.to_string()),
        Some(text) => bail!(
            "--reason {text:?} is neither a reason name nor a note of at most {BAN_NOTE_MAX} bytes"
        ),
        None => ("manual".to_string(), feed_note(file)),
    };
    let mut report = ImportReport::default();
    let mut via = None;
    let mut pinned = None;
    let batches = feeds::batches(&feed.networks);
    let total = batches.len() as u32;
    for (i, batch) in batches.into_iter().enumerate() {
        let request = ControlRequest::BanMany {
            networks: batch.clone(),
            ttl_seconds: args.ttl,
            reason: reason.clone(),
            note: note.clone(),
            part: Some((i as u32 + 1, total)),
        };
        let answered = if pinned.is_none() {
            control_sockets(args.control.as_deref(), args.iface.as_deref())
                .into_iter()
                .find_map(|path| {
                    match appliance::control::request(&path, &request, Duration::from_secs(60)) {
                        Ok(r) => Some(Ok((path, r))),
                        Err(appliance::control::ControlError::Io { source, .. })
                            if matches!(
                                source.kind(),
                                std::io::ErrorKind::NotFound
                                    | std::io::ErrorKind::ConnectionRefused
                            ) =>
                        {
                            None
                        }
                        Err(e) => Some(Err(e)),
                    }
                })
                .transpose()?
        } else {
            None
        };
        match answered {
            Some((path, r)) if r.ok => {
                via = Some(path);
                let part: ImportReport = r
                    .data
                    .and_then(|d| serde_json::from_value(d).ok())
                    .ok_or_else(|| {
                        anyhow::anyhow!("the answer carries no report: {}", r.message)
                    })?;
                report.merge(part);
            }
            Some((_, r)) => bail!("{}", r.message),
            None => {
                // Nothing answers: the pinned maps of a filter of an
                // older version.
                if pinned.is_none() {
                    let p = open(&args.iface)?;
                    let room = feeds::Room::read(&p)?;
                    pinned = Some((p, room));
                }
                let (p, room) = pinned.as_mut().expect("opened");
                let allow = p.allowlist()?;
                let why: BanReason = reason.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
                let (part, _) = feeds::ban_all(
                    p,
                    &batch,
                    args.ttl.map(Duration::from_secs),
                    why,
                    &note,
                    &allow,
                    room,
                )?;
                report.merge(part);
            }
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "file": file.display().to_string(),
                "entries": feed.networks.len() + feed.repeats,
                "networks": feed.networks.len(),
                "repeats": feed.repeats,
                "report": report,
            }))?
        );
    } else {
        print!(
            "{}",
            import_text(
                file,
                &feed,
                &report,
                args.ttl,
                &reason,
                &note,
                via.as_deref()
            )
        );
    }
    if !report.not_fitted.is_empty() {
        bail!(
            "{} of {} networks did not fit: feeds may fill the operator ban map up to {} networks \
             per IP family (see `dce-edge ban --list`)",
            report.not_fitted.len(),
            feed.networks.len(),
            appliance::feeds::FEED_ROOM
        );
    }
    if report.banned == 0 && !feed.networks.is_empty() {
        bail!("nothing was banned");
    }
    Ok(())
}

/// The feed's file name as a ban note (at most [`BAN_NOTE_MAX`] bytes).
fn feed_note(file: &Path) -> String {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut end = name.len().min(BAN_NOTE_MAX);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

/// How many of a list are shown before "... and N more".
const SHOWN: usize = 10;

fn import_text(
    file: &Path,
    feed: &appliance::feeds::Feed,
    report: &appliance::feeds::ImportReport,
    ttl: Option<u64>,
    reason: &str,
    note: &str,
    via: Option<&Path>,
) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}: {} networks read; banned {} ({reason}, {}, note {note:?}){}",
        file.display(),
        feed.networks.len(),
        report.banned,
        match ttl {
            Some(t) => format!("for {}", human(Duration::from_secs(t))),
            None => "until unbanned".into(),
        },
        match via {
            Some(p) => format!(" through {}", p.display()),
            None => " in the pinned maps".into(),
        }
    );
    let list = |s: &mut String, title: String, items: Vec<String>| {
        if items.is_empty() {
            return;
        }
        let _ = writeln!(s, "  {title}:");
        for i in items.iter().take(SHOWN) {
            let _ = writeln!(s, "    {i}");
        }
        if items.len() > SHOWN {
            let _ = writeln!(s, "    ... and {} more", items.len() - SHOWN);
        }
    };
    // The file's own bad entries refuse the whole feed before this; these
    // are what the appliance refused (numbered within their batch).
    let rejected: Vec<String> = report
        .refused
        .iter()
        .map(|r| format!("{:?}: {}", r.text, r.reason))
        .collect();
    list(
        &mut s,
        format!("{} entries refused by the filter", rejected.len()),
        rejected,
    );
    if feed.repeats > 0 {
        let _ = writeln!(s, "  {} repeated entries skipped", feed.repeats);
    }
    if feed.empty_batches > 0 {
        let _ = writeln!(
            s,
            "  {} APIBan batches said \"no new bans\"",
            feed.empty_batches
        );
    }
    list(
        &mut s,
        format!(
            "{} inside or covering the allowlist (or an upstream), not banned",
            report.allowlisted.len()
        ),
        report.allowlisted.clone(),
    );
    list(
        &mut s,
        format!(
            "{} DID NOT FIT: feeds may fill the operator ban map up to {} networks per IP \
             family ({} stay for the operator's own bans)",
            report.not_fitted.len(),
            appliance::feeds::FEED_ROOM,
            appliance::feeds::OPERATOR_RESERVE
        ),
        report.not_fitted.clone(),
    );
    s
}

/// Lifts a ban.
pub fn run_unban(args: &UnbanArgs) -> Result<()> {
    let request = ControlRequest::Unban {
        network: args.target.clone(),
    };
    if let Some(done) = via_control(args.control.as_deref(), args.iface.as_deref(), request) {
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
    if let Some(done) = via_control(args.control.as_deref(), args.iface.as_deref(), request) {
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
