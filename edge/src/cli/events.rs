//! `dce-edge events ...`: what an operator (or logrotate) asks of a running
//! appliance's event log. main.rs only dispatches here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use appliance::control::ControlRequest;

/// The `events` subcommands.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Ask a running appliance, through its control socket, to open its
    /// event log file again by name: logrotate's `postrotate` runs this
    /// after moving the file away, so no line is lost and none goes to the
    /// rotated file afterwards.
    Reopen {
        /// The appliance's control socket ([edge] control_socket).
        #[arg(long, default_value = appliance::control::DEFAULT_PATH)]
        control: PathBuf,
    },
}

/// Runs an `events` subcommand: the appliance's answer on stdout, or the
/// refusal (or why it could not be asked) on stderr with exit status 1.
pub fn run(command: EventsCommand) -> ExitCode {
    let (out, ok) = match command {
        EventsCommand::Reopen { control } => {
            crate::cli::run::ask(&control, &ControlRequest::ReopenEvents)
        }
    };
    if ok {
        print!("{out}");
        ExitCode::SUCCESS
    } else {
        eprint!("{out}");
        ExitCode::FAILURE
    }
}
