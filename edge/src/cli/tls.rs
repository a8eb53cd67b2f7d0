//! `dce-edge tls`: the TLS certificate of a running appliance.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

/// The `tls` subcommands.
#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Ask a running appliance, through its control socket, to read its
    /// [stream] certificate, key and client CA files again: new TLS
    /// connections get the new certificate, open ones keep theirs; a file
    /// that does not read (or a key that does not match) keeps the running
    /// one.
    Reload {
        /// The appliance's control socket ([edge] control_socket).
        #[arg(long, default_value = appliance::control::DEFAULT_PATH)]
        control: PathBuf,
    },
}

/// Runs a `tls` subcommand.
pub fn run(command: TlsCommand) -> ExitCode {
    let (out, ok) = match command {
        TlsCommand::Reload { control } => {
            crate::cli::run::ask(&control, &appliance::control::ControlRequest::ReloadTls)
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
