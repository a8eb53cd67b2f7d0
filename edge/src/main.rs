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
    /// `stats` over HTTP (live view, JSON, summary) until the lead merges it
    /// with the filter's pinned-map `stats`.
    #[command(name = "stats-view", hide = true)]
    StatsView(dce_edge::stats::StatsArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::StatsView(args) => {
            match dce_edge::stats::cli::run(&args, &mut std::io::stdout().lock()) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("dce-edge stats: {e}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
    }
}
