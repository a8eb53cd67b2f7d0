//! `dce-edge drain` and `dce-edge fleet status`: an edge of a fleet, as an
//! operator sees it through the running appliance's control socket.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};

use appliance::control::{self, ControlRequest};
use telemetry::stats::FleetReport;

/// Arguments of `dce-edge drain`.
#[derive(Debug, clap::Args)]
pub struct DrainArgs {
    /// Announce the service address again (after the hold-down).
    #[arg(long)]
    pub off: bool,
    /// The running appliance's control socket.
    #[arg(long, default_value = control::DEFAULT_PATH)]
    pub control: PathBuf,
}

/// `dce-edge fleet ...`.
#[derive(Debug, clap::Subcommand)]
pub enum FleetCommand {
    /// Every edge of the fleet as this edge knows it: its announcement of
    /// the service address, the bus, and the bans shared.
    Status(StatusArgs),
}

/// Arguments of `dce-edge fleet status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The running appliance's control socket.
    #[arg(long, default_value = control::DEFAULT_PATH)]
    pub control: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `dce-edge drain`.
pub fn run_drain(args: &DrainArgs) -> Result<()> {
    let r = control::request(
        &args.control,
        &ControlRequest::Drain { on: !args.off },
        Duration::from_secs(10),
    )?;
    if !r.ok {
        bail!("{}", r.message);
    }
    println!("{}", r.message);
    Ok(())
}

/// Runs `dce-edge fleet ...`.
pub fn run(command: &FleetCommand) -> Result<()> {
    match command {
        FleetCommand::Status(args) => {
            let r = control::request(
                &args.control,
                &ControlRequest::FleetStatus,
                Duration::from_secs(10),
            )?;
            if !r.ok {
                bail!("{}", r.message);
            }
            let report: FleetReport = serde_json::from_str(&r.message)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", render_status(&report));
            }
            Ok(())
        }
    }
}

fn seconds(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.1} s")
    } else {
        format!("{s:.0} s")
    }
}

/// The report as a person reads it.
pub fn render_status(r: &FleetReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "fleet {}, seen from edge {}{}",
        r.name,
        r.edge,
        r.address
            .as_ref()
            .map(|a| format!(" ({a})"))
            .unwrap_or_default()
    );
    match &r.announce {
        None => {
            let _ = writeln!(out, "announcement: none configured ([fleet.announce])");
        }
        Some(a) => {
            let state = if a.announced {
                "announced".to_string()
            } else {
                format!(
                    "withdrawn ({}){}",
                    a.reason.as_deref().unwrap_or("?"),
                    a.announces_in_seconds
                        .map(|s| format!(", announces in {} if it stays healthy", seconds(s)))
                        .unwrap_or_default()
                )
            };
            let daemon = match (&a.daemon_error, a.daemon_applied) {
                (Some(e), _) => format!("routing daemon: ERROR {e}"),
                (None, Some(x)) if x == a.announced => "routing daemon: confirmed".into(),
                (None, _) => "routing daemon: not yet confirmed".into(),
            };
            let _ = writeln!(
                out,
                "announcement: {state}; {daemon}; hold-down {}, {} withdrawals ({} flaps){}",
                seconds(a.hold_down_seconds),
                a.withdrawals,
                a.flaps,
                if a.draining { "; DRAINING" } else { "" }
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use telemetry::stats::AnnounceReport;

    #[test]
    fn a_withdrawn_edge_says_why_and_when_it_comes_back() {
        let r = FleetReport {
            name: "lab".into(),
            edge: "e2".into(),
            address: Some("198.18.2.2".into()),
            announce: Some(AnnounceReport {
                announced: false,
                reason: Some("no_upstream".into()),
                announces_in_seconds: Some(3.5),
                hold_down_seconds: 4.0,
                daemon_applied: Some(false),
                withdrawals: 2,
                flaps: 1,
                ..Default::default()
            }),
        };
        let text = render_status(&r);
        assert!(
            text.contains("fleet lab, seen from edge e2 (198.18.2.2)"),
            "{text}"
        );
        assert!(
            text.contains("withdrawn (no_upstream), announces in 3.5 s if it stays healthy; routing daemon: confirmed"),
            "{text}"
        );
        assert!(text.contains("2 withdrawals (1 flaps)"), "{text}");
    }
}
