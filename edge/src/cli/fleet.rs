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
    match &r.bus {
        None => {
            let _ = writeln!(
                out,
                "bus: none configured ([fleet.bus]): bans stay on this edge"
            );
        }
        Some(b) => {
            if b.connected {
                let _ = writeln!(
                    out,
                    "bus: connected to {} for {}; {} outages; last resync read {} entries in {:.1} ms",
                    b.server.as_deref().unwrap_or("?"),
                    seconds(b.connected_for_seconds.unwrap_or(0.0)),
                    b.outages,
                    b.last_resync_entries,
                    b.last_resync_ms
                );
            } else {
                let _ = writeln!(
                    out,
                    "bus: DOWN ({}): running on local state only; {} outages",
                    b.last_down_reason.as_deref().unwrap_or("not connected yet"),
                    b.outages
                );
            }
            let refused: u64 = b
                .received
                .iter()
                .filter(|(k, _)| !k.ends_with(":applied"))
                .map(|(_, n)| n)
                .sum();
            let applied: u64 = b
                .received
                .iter()
                .filter(|(k, _)| k.ends_with(":applied"))
                .map(|(_, n)| n)
                .sum();
            let _ = writeln!(
                out,
                "  bans in force: {} made here, {} taken from other edges; {} verified sources taken; messages {} published, {} applied, {} refused",
                b.own_bans, b.remote_bans, b.remote_verified, b.published, applied, refused
            );
            for (k, n) in b.received.iter().filter(|(k, _)| !k.ends_with(":applied")) {
                let _ = writeln!(out, "    refused {k}: {n}");
            }
        }
    }
    if r.bus.is_some() {
        let _ = writeln!(
            out,
            "\n{:<12} {:<16} {:<26} {:>8} {:<16} {:>6} {:>9} last contact",
            "edge", "address", "announcement", "routes", "digest", "bans", "verified",
        );
        let me = r.announce.as_ref();
        let _ = writeln!(
            out,
            "{:<12} {:<16} {:<26} {:>8} {:<16} {:>6} {:>9} (this edge)",
            format!("{} *", r.edge),
            r.address.as_deref().unwrap_or("-"),
            announce_text(
                me.map(|a| a.announced),
                me.and_then(|a| a.reason.as_deref())
            ),
            "-",
            "-",
            r.bus.as_ref().map_or(0, |b| b.own_bans),
            "-",
        );
        for p in &r.peers {
            let _ = writeln!(
                out,
                "{:<12} {:<16} {:<26} {:>8} {:<16} {:>6} {:>9} {}{}",
                p.edge,
                p.address.as_deref().unwrap_or("-"),
                announce_text(p.announced, p.reason.as_deref()),
                p.routes_version,
                p.routes_digest,
                p.bans_made,
                p.verified,
                seconds(p.last_contact_seconds),
                if p.lost { " ago LOST" } else { " ago" }
            );
        }
    }
    if !r.shared_bans.is_empty() {
        let _ = writeln!(out, "\nshared bans (longest left first):");
        for b in &r.shared_bans {
            let _ = writeln!(
                out,
                "  {:<24} {:<16} by {:<12} {} s left",
                b.network,
                if b.reason.is_empty() { "-" } else { &b.reason },
                b.origin,
                b.seconds_left
            );
        }
    }
    out
}

fn announce_text(announced: Option<bool>, reason: Option<&str>) -> String {
    match announced {
        None => "-".into(),
        Some(true) => "announced".into(),
        Some(false) => format!("withdrawn ({})", reason.unwrap_or("?")),
    }
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
            ..Default::default()
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

    #[test]
    fn the_table_lists_every_edge_and_a_lost_one_says_so() {
        use telemetry::stats::{BusReport, PeerReport, SharedBan};
        let r = FleetReport {
            name: "lab".into(),
            edge: "e1".into(),
            address: Some("198.18.1.2".into()),
            bus: Some(BusReport {
                connected: false,
                last_down_reason: Some("stale, 2 pings unanswered".into()),
                outages: 1,
                own_bans: 1,
                received: [
                    ("ban:applied".to_string(), 3),
                    ("ban:not_bannable".to_string(), 2),
                ]
                .into(),
                ..Default::default()
            }),
            peers: vec![
                PeerReport {
                    edge: "e2".into(),
                    announced: Some(true),
                    routes_version: 3,
                    routes_digest: "00ff".into(),
                    last_contact_seconds: 0.4,
                    ..Default::default()
                },
                PeerReport {
                    edge: "e3".into(),
                    announced: Some(false),
                    reason: Some("stopping".into()),
                    last_contact_seconds: 12.0,
                    lost: true,
                    ..Default::default()
                },
            ],
            shared_bans: vec![SharedBan {
                network: "198.18.0.200/32".into(),
                reason: "scanner".into(),
                origin: "e1".into(),
                seconds_left: 3599,
            }],
            ..Default::default()
        };
        let text = render_status(&r);
        assert!(
            text.contains("bus: DOWN (stale, 2 pings unanswered): running on local state only"),
            "{text}"
        );
        assert!(text.contains("refused ban:not_bannable: 2"), "{text}");
        assert!(text.contains("e2 "), "{text}");
        assert!(text.contains("12 s ago LOST"), "{text}");
        assert!(text.contains("withdrawn (stopping)"), "{text}");
        assert!(text.contains("198.18.0.200/32"), "{text}");
    }
}
