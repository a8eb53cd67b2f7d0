//! `dce-edge demo`: the lab demo's flags, Ctrl-C handling and report.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Result;
use lab::demo::{self, DemoOptions};

/// Arguments of `dce-edge demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// How long the calls and attacks run, in seconds.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Legitimate calls started per second.
    #[arg(long, default_value_t = 200.0)]
    pub cps: f64,
    /// Packets per second of the spoofed INVITE flood (0: none).
    #[arg(long, default_value_t = 100_000)]
    pub flood_pps: u64,
    /// Prefixes in the route table (at least 10,000).
    #[arg(long, default_value_t = 10_000)]
    pub prefixes: usize,
    /// Write the report as JSON to this file too.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Keep the lab's files (configuration, route table, reports) here
    /// instead of a temporary directory.
    #[arg(long)]
    pub keep: Option<PathBuf>,
    /// Instead: a fleet of N edges behind one anycast address (BGP through
    /// BIRD, ECMP at a router, state shared over NATS): the per-edge split,
    /// one edge stopped and started mid-run, a ban spreading (needs bird2
    /// and nats-server). --cps defaults to 60 there; --flood-pps and
    /// --prefixes do not apply.
    #[arg(long, value_name = "N")]
    pub fleet: Option<usize>,
    /// AF_XDP workers, one per queue of the edge's veth, each pinned (1 to
    /// 8; the veth spreads flows over its queues as a NIC's RSS does).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub workers: u32,
}

/// Runs the demo until it ends or SIGINT/SIGTERM, then prints the report.
pub fn main(args: &DemoArgs) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    if let Some(edges) = args.fleet {
        let options = lab::fleet_demo::FleetDemoOptions {
            edges,
            seconds: args.seconds,
            cps: if args.cps == 200.0 {
                60
            } else {
                args.cps.round() as u32
            },
            json: args.json.clone(),
            keep: args.keep.clone(),
        };
        let report = lab::fleet_demo::run(&options, stop)?;
        print!("{}", lab::fleet_demo::render(&report));
        return Ok(());
    }
    let options = DemoOptions {
        seconds: args.seconds,
        cps: args.cps,
        flood_pps: args.flood_pps,
        prefixes: args.prefixes,
        json: args.json.clone(),
        keep: args.keep.clone(),
        workers: args.workers,
    };
    let report = demo::run(&options, stop)?;
    print!("{}", demo::render(&report));
    Ok(())
}
