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
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("dce-edge neighbours: {e}");
                std::process::ExitCode::FAILURE
            }
        },
    }
}
