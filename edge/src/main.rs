//! The `dce-edge` command: appliance, filter, and the tools around them.
//! Each subcommand lives in the library; this file only dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dce_edge::xdp::cli as xdp_cli;

#[derive(Parser)]
#[command(
    name = "dce-edge",
    version,
    about = "SIP edge appliance: XDP filter, AF_XDP workers, stateless SIP proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Shield mode: the XDP filter alone in front of the SIP server on this
    /// box; legitimate SIP passes to the kernel. Runs until SIGINT/SIGTERM.
    Filter(xdp_cli::FilterArgs),
    /// Counters of a running filter or appliance: drops per reason, rates,
    /// passes, redirects, attach mode, top offending sources.
    Stats(xdp_cli::StatsArgs),
    /// Ban a source or network in the running filter, or list the bans.
    Ban(xdp_cli::BanArgs),
    /// Lift a ban.
    Unban(xdp_cli::UnbanArgs),
    /// Add a source or network to the allowlist (or remove it).
    Allow(xdp_cli::AllowArgs),
    /// `stats` over HTTP (live view, JSON, summary) until the lead merges it
    /// with the filter's pinned-map `stats`.
    #[command(name = "stats-view", hide = true)]
    StatsView(dce_edge::stats::StatsArgs),
    /// Hardware profiles: list, show, and detect the one that fits this host.
    Profile(dce_edge::profile::cli::ProfileArgs),
    /// Audit this host's tuning against a profile (--check), or print the fixes.
    Tune(dce_edge::profile::cli::TuneArgs),
    /// Show an interface's routes and neighbours as the dataplane reads them,
    /// and optionally resolve the next hop of one destination.
    Neighbours {
        /// The interface.
        #[arg(long)]
        interface: String,
        /// A destination to resolve (may trigger ARP / neighbour discovery).
        #[arg(long)]
        resolve: Option<std::net::IpAddr>,
        /// How long resolution may take, in milliseconds.
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
    /// Route tables: check files, look a number up, generate large tables.
    #[command(subcommand)]
    Routes(dce_edge::route::cli::RoutesCommand),
}

/// Maps a filter-side command's result to an exit code, printing the error.
fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dce-edge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Filter(args) => exit(xdp_cli::run_filter(&args)),
        Command::Stats(args) => exit(xdp_cli::run_stats(&args)),
        Command::Ban(args) => exit(xdp_cli::run_ban(&args)),
        Command::Unban(args) => exit(xdp_cli::run_unban(&args)),
        Command::Allow(args) => exit(xdp_cli::run_allow(&args)),
        Command::StatsView(args) => {
            match dce_edge::stats::cli::run(&args, &mut std::io::stdout().lock()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("dce-edge stats: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Profile(args) => dce_edge::profile::cli::run_profile(args),
        Command::Tune(args) => dce_edge::profile::cli::run_tune(args),
        Command::Neighbours {
            interface,
            resolve,
            timeout_ms,
        } => match dce_edge::dataplane::neigh::report(
            &interface,
            resolve,
            std::time::Duration::from_millis(timeout_ms),
        ) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("dce-edge neighbours: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Routes(command) => dce_edge::route::cli::run(command),
    }
}
