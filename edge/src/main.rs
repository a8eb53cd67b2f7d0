//! The `dce-edge` command: appliance, filter, and the tools around them.
//! Each subcommand lives in the library; this file only dispatches.

use clap::{Parser, Subcommand};

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
    /// Hardware profiles: list, show, and detect the one that fits this host.
    Profile(dce_edge::profile::cli::ProfileArgs),
    /// Audit this host's tuning against a profile (--check), or print the fixes.
    Tune(dce_edge::profile::cli::TuneArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Profile(args) => dce_edge::profile::cli::run_profile(args),
        Command::Tune(args) => dce_edge::profile::cli::run_tune(args),
    }
}
