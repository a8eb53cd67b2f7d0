//! The `dce-edge` command: appliance, filter, and the tools around them.
//! Each subcommand's flags live in [`cli`]; the work is done by the library
//! crates; this file only dispatches.

mod cli;

use std::process::ExitCode;

use crate::cli::filter as xdp_cli;
use clap::{CommandFactory, Parser, Subcommand};

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
    /// Run the appliance: XDP filter, AF_XDP (or socket) workers, stateless
    /// SIP proxy. Runs until SIGINT/SIGTERM; SIGHUP reloads the routes and
    /// the [filter] table.
    Run(crate::cli::run::RunArgs),
    /// Remove what `run --config FILE` left behind when its process died
    /// (XDP pins of its interface, a control socket nobody answers on);
    /// what a live process owns stays. The packaged unit's ExecStopPost.
    Cleanup(crate::cli::cleanup::CleanupArgs),
    /// The running appliance's event log: `events reopen` after logrotate.
    #[command(subcommand)]
    Events(crate::cli::events::EventsCommand),
    /// The lab demo: legitimate calls through the edge while it sheds
    /// scanners, a password guess, a spoofed INVITE flood and garbage, and
    /// emergency calls from a never-verified caller during the flood, in
    /// network namespaces (root; removes everything it made).
    Demo(crate::cli::demo::DemoArgs),
    /// Shield mode: the XDP filter alone in front of the SIP server on this
    /// box; legitimate SIP passes to the kernel. Runs until SIGINT/SIGTERM;
    /// SIGHUP or `dce-edge filter reload` applies a changed [filter] table.
    Filter(xdp_cli::FilterArgs),
    /// Counters of a running appliance or filter: from its metrics endpoint
    /// (default), live with --watch, or from the filter's pinned maps with
    /// --iface: drops per reason, rates, calls, top sources, bans.
    Stats(crate::cli::stats::StatsArgs),
    /// Ban a source or network in the running filter, or list the bans.
    Ban(xdp_cli::BanArgs),
    /// Write frames the running filter drops, of a reason or from a source,
    /// to a pcap file (at most --count; nothing is copied when no capture runs).
    Capture(crate::cli::capture::CaptureArgs),
    /// Lift a ban.
    Unban(xdp_cli::UnbanArgs),
    /// Add a source or network to the allowlist (or remove it).
    Allow(xdp_cli::AllowArgs),
    /// Withdraw this edge's announcement of the fleet's service address for
    /// maintenance (it keeps serving what still reaches it); --off
    /// announces it again after the hold-down.
    Drain(crate::cli::fleet::DrainArgs),
    /// The fleet this edge belongs to (`fleet status`).
    #[command(subcommand)]
    Fleet(crate::cli::fleet::FleetCommand),
    /// SIP message tools (`sip check FILE...`).
    Sip {
        #[command(subcommand)]
        command: crate::cli::sip::SipCommand,
    },
    /// Route tables: check files, look a number up, generate large tables.
    #[command(subcommand)]
    Routes(crate::cli::routes::RoutesCommand),
    /// SIP over TLS: reload the certificate of a running appliance.
    #[command(subcommand)]
    Tls(crate::cli::tls::TlsCommand),
    /// Hardware profiles: list, show, and detect the one that fits this host.
    Profile(crate::cli::profile::ProfileArgs),
    /// Audit this host's tuning against a profile (--check), or print the fixes.
    Tune(crate::cli::profile::TuneArgs),
    /// Manual pages and shell completions of dce-edge and dce-loadgen (for
    /// packaging).
    #[command(subcommand, hide = true)]
    Generate(crate::cli::generate::GenerateCommand),
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

/// Maps a command's result to an exit code, printing the error.
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
        Command::Run(args) => match crate::cli::run::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("dce-edge run: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Cleanup(args) => exit(crate::cli::cleanup::run(&args)),
        Command::Events(command) => crate::cli::events::run(command),
        Command::Generate(what) => exit(crate::cli::generate::run(
            &what,
            vec![Cli::command(), loadgen::cli::command()],
        )),
        Command::Demo(args) => exit(crate::cli::demo::main(&args)),
        Command::Filter(args) => exit(xdp_cli::run_filter(&args)),
        Command::Stats(args) if !args.reads_endpoint() => {
            exit(xdp_cli::run_stats(&xdp_cli::PinnedStatsArgs {
                iface: args.iface.clone(),
                json: args.json,
                top: args.top,
                interval: args.interval,
            }))
        }
        Command::Stats(args) => exit(
            crate::cli::stats::run(&args, &mut std::io::stdout().lock())
                .map_err(|e| anyhow::anyhow!("{e}")),
        ),
        Command::Ban(args) => exit(xdp_cli::run_ban(&args)),
        Command::Capture(args) => exit(crate::cli::capture::run(&args)),
        Command::Unban(args) => exit(xdp_cli::run_unban(&args)),
        Command::Allow(args) => exit(xdp_cli::run_allow(&args)),
        Command::Drain(args) => exit(crate::cli::fleet::run_drain(&args)),
        Command::Fleet(command) => exit(crate::cli::fleet::run(&command)),
        Command::Sip { command } => crate::cli::sip::run(command),
        Command::Routes(command) => crate::cli::routes::run(command),
        Command::Tls(command) => crate::cli::tls::run(command),
        Command::Profile(args) => crate::cli::profile::run_profile(args),
        Command::Tune(args) => crate::cli::profile::run_tune(args),
        Command::Neighbours {
            interface,
            resolve,
            timeout_ms,
        } => exit(
            dataplane::neigh::report(
                &interface,
                resolve,
                std::time::Duration::from_millis(timeout_ms),
            )
            .map(|text| print!("{text}"))
            .map_err(|e| anyhow::anyhow!("{e}")),
        ),
    }
}
