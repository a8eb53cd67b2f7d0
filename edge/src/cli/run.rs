//! `dce-edge run --config FILE`: the appliance in the foreground until
//! SIGINT or SIGTERM. Commands reach it through its control socket
//! (`appliance::control`); SIGHUP also reloads the route tables, for
//! process supervisors that know its pid.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use appliance::control::{self, ControlRequest, ControlResponse, ControlServer};
use appliance::{Appliance, ApplianceConfig, ControlEvent};
use telemetry::events::{Event, EventKind, EventLog};
use telemetry::metrics::MetricsServer;
use xdp::config::Cidr;
use xdp::maps::BanReason;

/// Arguments of `dce-edge run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The appliance configuration (TOML).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Check the configuration and the route files, then exit.
    #[arg(long)]
    pub check: bool,
    /// Print a one-line summary of the counters to stderr every N seconds
    /// (0: never).
    #[arg(long, default_value_t = 0)]
    pub summary_every: u64,
    /// Write the final counters (a stats snapshot, JSON) to this file on exit.
    #[arg(long)]
    pub final_snapshot: Option<PathBuf>,
}

/// Runs the appliance until a stop signal.
pub fn run(args: &RunArgs) -> Result<()> {
    let cfg = ApplianceConfig::load(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in &cfg.warnings {
        eprintln!("dce-edge: warning: {w}");
    }
    if args.check {
        let loaded = cfg
            .routes
            .load(&cfg.source)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        println!(
            "{}: ok ({} workers, {} mode, {} prefixes in {} groups)",
            args.config.display(),
            cfg.dataplane.workers.len(),
            mode_name(&cfg),
            loaded.table.prefix_count(),
            loaded.table.groups().len()
        );
        return Ok(());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing a signal handler")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
        .context("installing SIGHUP")?;

    let pidfile = cfg.pidfile.clone();
    let mut events = EventLog::open(&cfg.events).context("opening the event log")?;
    let (metrics, publisher) = MetricsServer::start_published(cfg.metrics.listen)
        .with_context(|| format!("starting the metrics endpoint on {}", cfg.metrics.listen))?;
    let mut control = ControlServer::bind(&cfg.control_socket)?;
    let mut appliance = Appliance::start(cfg.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    appliance.record_control_socket(&cfg.control_socket);
    if let Some(p) = &pidfile {
        sys::write_file_nofollow(p, format!("{}\n", std::process::id()).as_bytes(), 0o644)
            .with_context(|| format!("writing the pidfile {}", p.display()))?;
    }
    let iface = (!cfg.dataplane.interface.is_empty()).then_some(cfg.dataplane.interface.as_str());
    let _ = events.write(&Event::start(env!("CARGO_PKG_VERSION"), "appliance", iface));
    eprintln!(
        "dce-edge: running on {} ({} workers, {} mode, route table version {}); metrics on http://{}/metrics",
        appliance.local_addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", "),
        cfg.dataplane.workers.len(),
        mode_name(&cfg),
        appliance.routes_version(),
        metrics.local_addr(),
    );
    let routes_file = cfg.routes.prefixes.get_ref().display().to_string();
    let mut last_publish = Instant::now() - Duration::from_secs(10);
    let mut last_summary = Instant::now();
    // On SIGTERM an edge of a fleet withdraws the service address first and
    // keeps serving for the grace time, so the routers move the flows and
    // calls in flight end; a second signal stops at once.
    let mut stop_at: Option<Instant> = None;
    let mut stops_seen = 0u32;
    loop {
        if stop.swap(false, Ordering::Relaxed) {
            stops_seen += 1;
            if stops_seen == 1 {
                let grace = appliance.begin_stop();
                if !grace.is_zero() {
                    eprintln!(
                        "dce-edge: stopping: service address withdrawn, serving {} s more",
                        grace.as_secs()
                    );
                }
                stop_at = Some(Instant::now() + grace);
            } else {
                stop_at = Some(Instant::now());
            }
        }
        if stop_at.is_some_and(|t| Instant::now() >= t) {
            break;
        }
        if reload.swap(false, Ordering::Relaxed) {
            // SIGHUP: routes and filter, each kept when refused.
            let _ = reload_routes(&mut appliance, false);
            let _ = reload_filter(&mut appliance);
        }
        control.poll(|request| match request {
            ControlRequest::ReopenEvents => reopen_events(&mut events),
            ControlRequest::CaptureNote { .. } => note_capture(&mut events, &request),
            other => handle_control(other, &mut appliance, &cfg),
        });
        for ev in appliance.tick() {
            if let ControlEvent::AttachFallback { interface } = &ev {
                eprintln!("dce-edge: WARNING: native XDP refused on {interface}; running in generic (slower) mode");
            }
            if let Some(e) = fleet_event_of(&ev, &cfg).or_else(|| ev.to_event(&routes_file)) {
                let _ = events.write(&e);
            }
        }
        if last_publish.elapsed() >= Duration::from_secs(1) {
            last_publish = Instant::now();
            let s = appliance.snapshot();
            if args.summary_every > 0
                && last_summary.elapsed() >= Duration::from_secs(args.summary_every)
            {
                last_summary = Instant::now();
                eprintln!("{}", summary_line(&s));
            }
            publisher.publish(s);
        }
        let _ = events.drain();
        std::thread::sleep(Duration::from_millis(5));
    }
    let last = appliance.stop().map_err(|e| anyhow::anyhow!("{e}"))?;
    let _ = events.write(&Event::stop("signal"));
    metrics.stop();
    if let Some(p) = &pidfile {
        let _ = std::fs::remove_file(p);
    }
    eprintln!("dce-edge: stopped; {}", summary_line(&last));
    if let Some(path) = &args.final_snapshot {
        std::fs::write(path, serde_json::to_string_pretty(&last)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// One line of totals for the operator's terminal.
pub fn summary_line(s: &telemetry::stats::Snapshot) -> String {
    format!(
        "rx {} tx {} forwarded {} requests / {} responses, answered {}, dropped {}, calls {} answered / {} failed",
        s.workers_total(|w| w.received),
        s.workers_total(|w| w.transmitted),
        s.workers_total(|w| w.forwarded_requests),
        s.workers_total(|w| w.forwarded_responses),
        s.workers.iter().flat_map(|w| w.answered.values()).sum::<u64>(),
        s.workers.iter().flat_map(|w| w.dropped.values()).sum::<u64>(),
        s.calls.answered,
        s.calls.failed,
    )
}

fn mode_name(cfg: &ApplianceConfig) -> &'static str {
    match cfg.dataplane.mode {
        dataplane::IoMode::AfXdp => "af_xdp",
        dataplane::IoMode::Socket => "socket",
    }
}

/// The subject of fleet events: this edge's name in its fleet.
fn fleet_edge(cfg: &ApplianceConfig) -> String {
    cfg.fleet
        .as_ref()
        .map_or_else(|| "dce-edge".to_string(), |f| f.edge.clone())
}

/// The event-log line of a fleet event (the others are the appliance's
/// [`ControlEvent::to_event`]); a bus warning is printed, not logged.
fn fleet_event_of(ev: &ControlEvent, cfg: &ApplianceConfig) -> Option<Event> {
    Some(match ev {
        ControlEvent::Announced { held_seconds } => {
            Event::new(EventKind::Announce, fleet_edge(cfg), "healthy")
                .with("held_seconds", *held_seconds)
        }
        ControlEvent::Withdrawn {
            reason,
            next_hold_seconds,
        } => Event::new(EventKind::Withdraw, fleet_edge(cfg), *reason)
            .with("next_hold_seconds", *next_hold_seconds),
        ControlEvent::RoutingDaemon { error } => {
            match error {
                Some(e) => eprintln!("dce-edge: routing daemon: {e}"),
                None => eprintln!("dce-edge: routing daemon reachable again"),
            }
            Event::new(
                EventKind::RoutingDaemon,
                fleet_edge(cfg),
                error.clone().unwrap_or_else(|| "reachable".into()),
            )
        }
        ControlEvent::BusDown { reason } => {
            eprintln!("dce-edge: fleet bus lost ({reason}); running on local state only");
            Event::new(EventKind::BusDown, fleet_edge(cfg), reason.clone())
        }
        ControlEvent::BusUp {
            server,
            entries,
            down_seconds,
        } => {
            eprintln!("dce-edge: fleet bus up at {server}; read {entries} shared entries");
            let mut e = Event::new(EventKind::BusUp, fleet_edge(cfg), "connected")
                .with("server", server.clone())
                .with("entries", *entries as u64);
            if let Some(d) = down_seconds {
                e = e.with("down_seconds", *d);
            }
            e
        }
        ControlEvent::BusWarning { message } => {
            eprintln!("dce-edge: fleet bus: {message}");
            return None;
        }
        ControlEvent::FleetBan {
            network,
            reason,
            origin,
            seconds,
        } => Event::ban(&network.to_string(), reason, *seconds)
            .with("by", "fleet")
            .with("origin", origin.clone()),
        ControlEvent::FleetOperator {
            action,
            network,
            origin,
            outcome,
        } => {
            let subject = network.to_string();
            let e = match *action {
                "ban" => Event::new(EventKind::Ban, subject, "manual"),
                "unban" => Event::unban(&subject, "manual"),
                "allow" => Event::allowlist_add(&subject, "manual"),
                _ => Event::allowlist_remove(&subject, "manual"),
            };
            e.with("by", "fleet")
                .with("origin", origin.clone())
                .with("outcome", outcome.clone())
        }
        ControlEvent::Drain { on } => Event::new(
            if *on {
                EventKind::Withdraw
            } else {
                EventKind::Announce
            },
            fleet_edge(cfg),
            if *on { "drain" } else { "undrain" },
        )
        .with("by", "operator"),
        _ => return None,
    })
}

/// Reloads the route files, saying what happened on stderr (the event
/// comes from the appliance's own events).
fn reload_routes(appliance: &mut Appliance, force: bool) -> Result<u64, String> {
    match appliance.reload_routes(force) {
        Ok(v) => {
            eprintln!("dce-edge: routes reloaded, version {v}");
            Ok(v)
        }
        Err(e) => {
            eprintln!("dce-edge: reload refused, the running table stays: {e}");
            Err(e)
        }
    }
}

/// Reloads the `[filter]` table, saying what happened on stderr.
fn reload_filter(appliance: &mut Appliance) -> Result<String, String> {
    match appliance.reload_filter() {
        Ok(m) => {
            eprintln!("dce-edge: filter reload {m}");
            Ok(m)
        }
        Err(e) => {
            eprintln!("dce-edge: filter reload refused, the running rules stay: {e}");
            Err(e)
        }
    }
}

/// Answers one control-socket request.
fn handle_control(
    request: ControlRequest,
    appliance: &mut Appliance,
    cfg: &ApplianceConfig,
) -> ControlResponse {
    match request {
        ControlRequest::Status => ControlResponse::ok(format!(
            "running: route table version {}, {} workers",
            appliance.routes_version(),
            cfg.dataplane.workers.len()
        )),
        ControlRequest::FilterReload => match reload_filter(appliance) {
            Ok(m) => ControlResponse::ok(m),
            Err(e) => ControlResponse::refused(format!("refused, the running rules stay: {e}")),
        },
        ControlRequest::ReloadRoutes { force } => match reload_routes(appliance, force) {
            Ok(v) => ControlResponse::ok(format!(
                "accepted: route table version {v} with {} prefixes in service",
                appliance.prefix_count()
            )),
            Err(e) => ControlResponse::refused(format!(
                "refused, version {} stays in service: {e}",
                appliance.routes_version()
            )),
        },
        // Answered by the loop that owns the event log (see `run`).
        ControlRequest::ReopenEvents | ControlRequest::CaptureNote { .. } => {
            reopen_events_elsewhere()
        }
        ControlRequest::ReloadTls => answer(appliance.reload_tls()),
        ControlRequest::Ban {
            network,
            ttl_seconds,
            reason,
            note,
        } => answer(parse_network(&network).and_then(|n| {
            let reason = reason
                .parse::<BanReason>()
                .map_err(|e| format!("reason {reason:?}: {e}"))?;
            appliance.operator_ban(n, ttl_seconds.map(Duration::from_secs), reason, &note)
        })),
        ControlRequest::BanMany {
            networks,
            ttl_seconds,
            reason,
            note,
            part,
        } => match reason.parse::<BanReason>() {
            Err(e) => ControlResponse::refused(format!("reason {reason:?}: {e}")),
            Ok(why) => match appliance.operator_ban_many(
                &networks,
                ttl_seconds.map(Duration::from_secs),
                why,
                &note,
                part,
            ) {
                Ok(report) => ControlResponse {
                    ok: true,
                    message: appliance::feeds::describe(&report),
                    data: serde_json::to_value(&report).ok(),
                },
                Err(e) => ControlResponse::refused(e),
            },
        },
        ControlRequest::Unban { network } => {
            answer(parse_network(&network).and_then(|n| appliance.operator_unban(n)))
        }
        ControlRequest::Allow { network } => {
            answer(parse_network(&network).and_then(|n| appliance.operator_allow(n)))
        }
        ControlRequest::Disallow { network } => {
            answer(parse_network(&network).and_then(|n| appliance.operator_disallow(n)))
        }
        ControlRequest::Drain { on } => answer(appliance.set_draining(on)),
        ControlRequest::FleetStatus => match appliance.fleet_report() {
            None => ControlResponse::refused("this edge is in no fleet (no [fleet] table)"),
            Some(r) => match serde_json::to_string(&r) {
                Ok(json) => ControlResponse::ok(json),
                Err(e) => ControlResponse::refused(e.to_string()),
            },
        },
    }
}

fn parse_network(text: &str) -> Result<Cidr, String> {
    text.parse::<Cidr>()
}

fn answer(r: Result<String, String>) -> ControlResponse {
    match r {
        Ok(m) => ControlResponse::ok(m),
        Err(e) => ControlResponse::refused(e),
    }
}

/// Sends `request` to the appliance's control socket at `path`; the text to
/// print and whether the appliance did it.
pub fn ask(path: &std::path::Path, request: &ControlRequest) -> (String, bool) {
    match control::request(path, request, Duration::from_secs(30)) {
        Ok(r) => (format!("{}\n", r.message), r.ok),
        Err(e) => (format!("{e}\n"), false),
    }
}

fn reopen_events_elsewhere() -> ControlResponse {
    ControlResponse::refused("the event log is written by the control loop, not here")
}

/// Writes the `capture` event a `dce-edge capture` asked for, in the
/// appliance and in shield mode.
pub(crate) fn note_capture(events: &mut EventLog, request: &ControlRequest) -> ControlResponse {
    let ControlRequest::CaptureNote {
        started,
        pid,
        what,
        written,
        lost,
    } = request
    else {
        return ControlResponse::refused("not a capture note");
    };
    let e = appliance::events::capture_event(*started, *pid, what, *written, *lost);
    match events.write(&e) {
        Ok(()) => ControlResponse::ok("noted in the event log"),
        Err(err) => ControlResponse::refused(format!("the event log refused it: {err}")),
    }
}

/// Opens the event log's file again by its name (logrotate's `postrotate`,
/// `dce-edge events reopen`), in the appliance and in shield mode.
pub(crate) fn reopen_events(events: &mut EventLog) -> ControlResponse {
    match events.reopen() {
        Ok(Some(path)) => ControlResponse::ok(format!("event log reopened: {}", path.display())),
        Ok(None) => ControlResponse::ok("the event log goes to standard output: nothing to reopen"),
        Err(e) => ControlResponse::refused(format!(
            "{e}; the event log keeps writing to the file it had open"
        )),
    }
}
