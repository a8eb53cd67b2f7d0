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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Filter(args) => xdp_cli::run_filter(&args),
        Command::Stats(args) => xdp_cli::run_stats(&args),
        Command::Ban(args) => xdp_cli::run_ban(&args),
        Command::Unban(args) => xdp_cli::run_unban(&args),
        Command::Allow(args) => xdp_cli::run_allow(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dce-edge: {e:#}");
            ExitCode::FAILURE
        }
    }
}
