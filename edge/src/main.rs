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
    /// Route tables: check files, look a number up, generate large tables.
    #[command(subcommand)]
    Routes(dce_edge::route::cli::RoutesCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Routes(command) => dce_edge::route::cli::run(command),
    }
}
