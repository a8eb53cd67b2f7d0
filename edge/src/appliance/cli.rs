//! `dce-edge run --config FILE`: the appliance in the foreground until
//! SIGINT or SIGTERM; SIGHUP reloads the route tables.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::{Appliance, ApplianceConfig, ControlEvent};

/// Arguments of `dce-edge run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The appliance configuration (TOML).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Check the configuration and the route files, then exit.
    #[arg(long)]
    pub check: bool,
    /// Print a one-line summary of the counters every N seconds (0: never).
    #[arg(long, default_value_t = 0)]
    pub summary_every: u64,
}

/// Runs the appliance until a stop signal.
pub fn run(args: &RunArgs) -> Result<()> {
    let cfg = ApplianceConfig::load(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
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
    let mut appliance = Appliance::start(cfg.clone(), None).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(p) = &pidfile {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    eprintln!(
        "dce-edge: running on {} ({} workers, {} mode, route table version {})",
        appliance
            .local_addrs()
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        cfg.dataplane.workers.len(),
        mode_name(&cfg),
        appliance.routes_version()
    );
    let mut last_summary = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if reload.swap(false, Ordering::Relaxed) {
            match appliance.reload_routes() {
                Ok(v) => eprintln!("dce-edge: routes reloaded, version {v}"),
                Err(e) => eprintln!("dce-edge: reload refused, the running table stays: {e}"),
            }
        }
        for ev in appliance.tick() {
            log_event(&ev);
        }
        if args.summary_every > 0
            && last_summary.elapsed() >= Duration::from_secs(args.summary_every)
        {
            last_summary = Instant::now();
            let s = appliance.snapshot();
            eprintln!(
                "dce-edge: rx {} tx {} fwd {}/{} answered {} dropped {}",
                s.workers_total(|w| w.received),
                s.workers_total(|w| w.transmitted),
                s.workers_total(|w| w.forwarded_requests),
                s.workers_total(|w| w.forwarded_responses),
                s.workers
                    .iter()
                    .flat_map(|w| w.answered.values())
                    .sum::<u64>(),
                s.workers
                    .iter()
                    .flat_map(|w| w.dropped.values())
                    .sum::<u64>(),
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let last = appliance.stop().map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(p) = &pidfile {
        let _ = std::fs::remove_file(p);
    }
    eprintln!("dce-edge: stopped; final counters:");
    println!("{}", serde_json::to_string_pretty(&last)?);
    Ok(())
}

fn mode_name(cfg: &ApplianceConfig) -> &'static str {
    match cfg.dataplane.mode {
        crate::dataplane::IoMode::AfXdp => "af_xdp",
        crate::dataplane::IoMode::Socket => "socket",
    }
}

fn log_event(ev: &ControlEvent) {
    match ev {
        ControlEvent::Abuse { source, reason } => {
            eprintln!("dce-edge: abuse from {source}: {reason}")
        }
        ControlEvent::Verified { source } => eprintln!("dce-edge: source {source} verified"),
        ControlEvent::Health { target, up } => {
            eprintln!(
                "dce-edge: target {target} is {}",
                if *up { "up" } else { "down" }
            )
        }
        ControlEvent::ReloadAccepted { version, prefixes } => {
            eprintln!("dce-edge: route table version {version} ({prefixes} prefixes) in service")
        }
        ControlEvent::ReloadRefused { reason } => {
            eprintln!("dce-edge: route reload refused: {reason}")
        }
    }
}
