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
    /// Run the appliance: XDP filter, AF_XDP (or socket) workers, stateless SIP proxy.
    Run(dce_edge::appliance::cli::RunArgs),
    /// SIP message tools (`sip check FILE...`).
    Sip {
        #[command(subcommand)]
        command: dce_edge::sip::check::SipCommand,
    },
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
    /// `stats` over HTTP (live view, JSON, summary) until the lead merges it
    /// with the filter's pinned-map `stats`.
    #[command(name = "stats-view", hide = true)]
    StatsView(dce_edge::stats::StatsArgs),
    /// Hardware profiles: list, show, and detect the one that fits this host.
    Profile(dce_edge::profile::cli::ProfileArgs),
    /// Audit this host's tuning against a profile (--check), or print the fixes.
    Tune(dce_edge::profile::cli::TuneArgs),
    /// Route tables: check files, look a number up, generate large tables.
    #[command(subcommand)]
    Routes(dce_edge::route::cli::RoutesCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => match dce_edge::appliance::cli::run(&args) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("dce-edge run: {e:#}");
                std::process::ExitCode::from(2)
            }
        },
        Command::Sip { command } => dce_edge::sip::check::run(command),
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
        Command::Routes(command) => dce_edge::route::cli::run(command),
    }
}
