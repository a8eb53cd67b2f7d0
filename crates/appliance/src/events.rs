//! What the appliance and the shield do that an operator may want to know
//! ([`ControlEvent`]), and how each becomes a line of the event log: every
//! operator action (ban, unban, allowlist change, reload) and every change
//! of state (a ban made or lapsed, a target up or down, an attach mode that
//! fell back) leaves one.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use telemetry::events::{Event, EventKind};
use telemetry::stats::BanInForce;
use xdp::config::Cidr;
use xdp::ListChanges;

/// Something the control thread did that an operator may want to know.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlEvent {
    /// A worker reported an abuser.
    Abuse {
        /// The source.
        source: IpAddr,
        /// Why.
        reason: &'static str,
    },
    /// The control thread banned a source a worker reported (an automatic
    /// ban: in the XDP filter's `auto_bans`, or in every worker).
    ProxyBan {
        /// The source.
        source: IpAddr,
        /// Why it was reported.
        reason: &'static str,
        /// Seconds the ban lasts.
        seconds: u64,
    },
    /// A source proved its address real.
    Verified {
        /// The source.
        source: IpAddr,
    },
    /// A target went up or down.
    Health {
        /// host:port.
        target: SocketAddr,
        /// The route groups that list it (comma-separated).
        group: String,
        /// Its new state.
        up: bool,
        /// What made the change, for a person ("3 OPTIONS probes unanswered",
        /// "5 INVITEs in a row answered 503").
        cause: String,
    },
    /// A ban the control thread did not make itself appeared in the XDP
    /// ban map: the program's own auto-ban of a scanner, or a manual
    /// `dce-edge ban` from another process.
    Banned {
        /// The banned network.
        source: String,
        /// Why (`scanner`, `manual`, ...).
        reason: String,
        /// Seconds until it lapses.
        seconds: u64,
    },
    /// A ban ended without an operator lifting it here: it lapsed
    /// (`expired`), or it left the map some other way (`removed`: another
    /// process's `dce-edge unban` on the pinned maps).
    Unbanned {
        /// The network.
        source: String,
        /// `expired` or `removed`.
        reason: &'static str,
    },
    /// A route reload was accepted.
    ReloadAccepted {
        /// The new version.
        version: u64,
        /// Prefixes in it.
        prefixes: usize,
    },
    /// `attach = "auto"` fell back to generic XDP: slower, and said loudly.
    AttachFallback {
        /// The interface.
        interface: String,
    },
    /// A route reload was refused; the running table stays.
    ReloadRefused {
        /// Why.
        reason: String,
        /// The version that stays in service.
        kept_version: u64,
    },
    /// A filter reload was applied to the running program.
    FilterReloadAccepted {
        /// The configuration file.
        file: String,
        /// The `[filter]` keys whose value changed.
        changed: Vec<&'static str>,
        /// What changed in the lists.
        lists: ListChanges,
        /// The XDP program's id (the same before and after).
        program_id: Option<u32>,
    },
    /// A filter reload was refused; the running rules stay.
    FilterReloadRefused {
        /// The configuration file.
        file: String,
        /// Why, with file and line.
        reason: String,
    },
    /// A worker reported an abuser, but it was not banned: the ban budget
    /// was spent (no report storm can fill the ban map), or the map of
    /// automatic bans is full. Logged.
    BanLimited {
        /// The source.
        source: IpAddr,
        /// Why it was reported.
        reason: &'static str,
        /// Why it was not banned.
        refused: &'static str,
    },
    /// Connections to the `[stream]` listeners were refused by the caps: the
    /// stream thread's summary of one window (at most one per window,
    /// whatever the flood).
    ConnectionsRefused(dataplane::stream::refusals::RefusalSummary),
    /// An emergency call was forwarded (every one is an event).
    EmergencyCall {
        /// The caller.
        source: IpAddr,
        /// Where it went.
        target: SocketAddr,
    },
    /// An operator banned a network through the control socket.
    OperatorBan {
        /// The network.
        network: Cidr,
        /// The reason given.
        reason: String,
        /// Seconds it lasts; `None` until unbanned.
        seconds: Option<u64>,
    },
    /// An operator imported a blocklist feed (`dce-edge ban --import`):
    /// one event per batch, not one per network.
    BansImported {
        /// The feed's note (its file name, or the operator's note).
        note: String,
        /// The reason given.
        reason: String,
        /// Seconds the bans last; `None` until unbanned.
        seconds: Option<u64>,
        /// What happened.
        report: crate::feeds::ImportReport,
        /// False when its client stopped sending batches before the last.
        complete: bool,
    },
    /// An operator lifted a ban.
    OperatorUnban {
        /// The network.
        network: Cidr,
    },
    /// A network was added to the allowlist.
    AllowAdded {
        /// The network.
        network: Cidr,
        /// `operator` (`dce-edge allow`) or `config` (a filter reload).
        by: &'static str,
    },
    /// A network was removed from the allowlist.
    AllowRemoved {
        /// The network.
        network: Cidr,
        /// `operator` or `config`.
        by: &'static str,
    },
    /// The service address is announced through the routing daemon.
    Announced {
        /// Seconds the edge had been healthy first.
        held_seconds: f64,
    },
    /// The service address is withdrawn.
    Withdrawn {
        /// Why (`draining`, `stopping`, `workers_stopped`, `xdp_detached`,
        /// `no_upstream`).
        reason: &'static str,
        /// Seconds the next announcement waits once healthy.
        next_hold_seconds: f64,
    },
    /// The routing daemon could not be told what to announce (`Some`), or
    /// can be again (`None`).
    RoutingDaemon {
        /// What went wrong.
        error: Option<String>,
    },
    /// An operator drained the edge (or undrained it).
    Drain {
        /// Draining now.
        on: bool,
    },
    /// The fleet's bus is lost: this edge runs on its local state alone.
    BusDown {
        /// How it was noticed.
        reason: String,
    },
    /// The bus is back; the shared state was read again.
    BusUp {
        /// The server.
        server: String,
        /// Entries read.
        entries: usize,
        /// How long the outage lasted (`None` for the first connection).
        down_seconds: Option<f64>,
    },
    /// Something about the bus an operator should know.
    BusWarning {
        /// What.
        message: String,
    },
    /// Another edge's ban, taken here under this edge's rules.
    FleetBan {
        /// The source.
        network: Cidr,
        /// Why it was banned there.
        reason: String,
        /// The edge that banned it.
        origin: String,
        /// Seconds it lasts here.
        seconds: u64,
    },
    /// Another edge's operator action, applied here.
    FleetOperator {
        /// `ban`, `unban`, `allow`, `disallow`.
        action: &'static str,
        /// The network.
        network: Cidr,
        /// The edge it was made on.
        origin: String,
        /// What happened here (applied, or why not).
        outcome: String,
    },
}

impl ControlEvent {
    /// The event-log line of this event, if it is one the log keeps
    /// (`routes_file` names the route table in reload events).
    pub fn to_event(&self, routes_file: &str) -> Option<Event> {
        Some(match self {
            // A report is not yet a ban: `ProxyBan` or `BanLimited` follows.
            ControlEvent::Abuse { .. } => return None,
            // The fleet's events name this edge as the fleet knows it: the
            // binary, which holds the `[fleet]` table, writes them.
            ControlEvent::Announced { .. }
            | ControlEvent::Withdrawn { .. }
            | ControlEvent::RoutingDaemon { .. }
            | ControlEvent::Drain { .. }
            | ControlEvent::BusDown { .. }
            | ControlEvent::BusUp { .. }
            | ControlEvent::BusWarning { .. }
            | ControlEvent::FleetBan { .. }
            | ControlEvent::FleetOperator { .. } => return None,
            ControlEvent::ProxyBan {
                source,
                reason,
                seconds,
            } => Event::ban(&source.to_string(), reason, *seconds).with("by", "proxy"),
            ControlEvent::Verified { .. } => return None,
            ControlEvent::Health {
                target,
                group,
                up,
                cause,
            } => Event::target_health(group, &target.to_string(), *up, cause),
            ControlEvent::Banned {
                source,
                reason,
                seconds,
            } => Event::ban(source, reason, *seconds).with("by", "xdp"),
            ControlEvent::Unbanned { source, reason } => {
                Event::unban(source, reason).with("by", "xdp")
            }
            ControlEvent::ReloadAccepted { version, prefixes } => {
                Event::route_reload_accepted(routes_file, *version, *prefixes as u64)
            }
            ControlEvent::ReloadRefused {
                reason,
                kept_version,
            } => Event::route_reload_refused(routes_file, reason, *kept_version),
            ControlEvent::FilterReloadAccepted {
                file,
                changed,
                lists,
                program_id,
            } => {
                let names = |v: &[Cidr]| v.iter().map(|c| c.to_string()).collect::<Vec<_>>();
                let mut e = Event::new(EventKind::FilterReloadAccepted, file, "valid")
                    .with("changed", changed.clone())
                    .with("allowlist_added", names(&lists.allow_added))
                    .with("allowlist_removed", names(&lists.allow_removed))
                    .with("blocklist_added", names(&lists.block_added))
                    .with("blocklist_removed", names(&lists.block_removed));
                if let Some(id) = program_id {
                    e = e.with("program_id", *id);
                }
                e
            }
            ControlEvent::FilterReloadRefused { file, reason } => {
                Event::new(EventKind::FilterReloadRefused, file, reason.as_str())
                    .with("kept", "the running rules")
            }
            ControlEvent::ConnectionsRefused(r) => {
                let (subject, top) = match r.top {
                    Some((ip, n)) => (ip.to_string(), n),
                    None => ("sip over tcp/tls".to_string(), 0),
                };
                Event::new(EventKind::ConnectionsRefused, subject, "connection_caps")
                    .with("refused_per_source", r.per_source)
                    .with("refused_total", r.total)
                    .with("sources", r.sources)
                    .with("untallied", r.untallied)
                    .with("top_refused", top)
                    .with("seconds", r.millis as f64 / 1000.0)
            }
            ControlEvent::EmergencyCall { source, target } => {
                Event::new(EventKind::EmergencyCall, source.to_string(), "forwarded")
                    .with("target", target.to_string())
            }
            ControlEvent::BanLimited {
                source,
                reason,
                refused,
            } => Event::new(EventKind::Ban, source.to_string(), *reason)
                .with("by", "proxy")
                .with("refused", *refused),
            ControlEvent::OperatorBan {
                network,
                reason,
                seconds,
            } => Event::ban(&network.to_string(), reason, seconds.unwrap_or(u64::MAX))
                .with("by", "operator"),
            ControlEvent::BansImported {
                note,
                reason,
                seconds,
                report,
                complete,
            } => Event::new(EventKind::BanImport, note.as_str(), reason.as_str())
                .with("complete", *complete)
                .with("by", "operator")
                .with("seconds", seconds.unwrap_or(u64::MAX))
                .with("banned", report.banned as u64)
                .with("allowlisted", report.allowlisted.len() as u64)
                .with("refused", report.refused.len() as u64)
                .with("not_fitted", report.not_fitted.len() as u64),
            ControlEvent::OperatorUnban { network } => {
                Event::unban(&network.to_string(), "operator").with("by", "operator")
            }
            ControlEvent::AllowAdded { network, by } => {
                Event::allowlist_add(&network.to_string(), by).with("by", *by)
            }
            ControlEvent::AllowRemoved { network, by } => {
                Event::allowlist_remove(&network.to_string(), by).with("by", *by)
            }
            ControlEvent::AttachFallback { interface } => Event::attach_fallback(
                interface,
                "auto",
                "generic",
                "native attach refused by the driver",
            ),
        })
    }
}

/// The event-log line of a `dce-edge capture` starting or ending (see
/// [`crate::control::ControlRequest::CaptureNote`]): packets of other people
/// leave the box in a file, so the log says who took which.
pub fn capture_event(started: bool, pid: u32, what: &str, written: u64, lost: u64) -> Event {
    let e = Event::new(
        EventKind::Capture,
        format!("pid {pid}"),
        if started { "started" } else { "ended" },
    )
    .with("what", what)
    .with("by", "operator");
    if started {
        e
    } else {
        e.with("written", written).with("lost", lost)
    }
}

/// One line for the operator who asked for a filter reload: what changed,
/// and that the program is the same.
pub fn describe_reload(
    file: &str,
    changed: &[&'static str],
    lists: &ListChanges,
    program_id: Option<u32>,
) -> String {
    let mut parts: Vec<String> = Vec::new();
    for key in changed {
        match *key {
            "allowlist" => parts.push(format!(
                "allowlist +{} -{}",
                lists.allow_added.len(),
                lists.allow_removed.len()
            )),
            "blocklist" => parts.push(format!(
                "blocklist +{} -{}",
                lists.block_added.len(),
                lists.block_removed.len()
            )),
            other => parts.push(other.to_string()),
        }
    }
    let what = if parts.is_empty() {
        "nothing changed".to_string()
    } else {
        format!("changed {}", parts.join(", "))
    };
    match program_id {
        Some(id) => format!(
            "accepted: [filter] of {file} applied to the running XDP program (id {id}, not detached); {what}"
        ),
        None => format!("accepted: [filter] of {file} applied (no XDP filter runs: the proxy's allowlist); {what}"),
    }
}

/// Bans seen in the XDP maps, so that each gets one `ban` event when it
/// appears and one `unban` event when it goes, whoever made it (the
/// program's auto-ban, this process, another process on the pins).
#[derive(Debug, Default)]
pub struct BanWatch {
    /// Network to seconds left when last seen, and when that was.
    seen: HashMap<String, (u64, Instant)>,
}

impl BanWatch {
    /// A ban this process made and logged itself: no second event.
    pub fn claim(&mut self, network: &str, seconds_left: u64) {
        self.seen
            .insert(network.to_string(), (seconds_left, Instant::now()));
    }

    /// A ban this process lifted and logged itself: no second event.
    pub fn forget(&mut self, network: &str) {
        self.seen.remove(network);
    }

    /// Compares the bans in force now with those seen before: new ones
    /// become `Banned`, vanished ones `Unbanned` (`expired` when their time
    /// was up, give or take the second between two looks; `removed`
    /// otherwise). One pass each way (hash lookups): tens of thousands of
    /// bans cost milliseconds.
    pub fn update(&mut self, bans: &[BanInForce], out: &mut Vec<ControlEvent>) {
        let now = Instant::now();
        let current: HashMap<&str, &BanInForce> =
            bans.iter().map(|b| (b.source.as_str(), b)).collect();
        self.seen.retain(|network, (left, at)| {
            if current.contains_key(network.as_str()) {
                return true;
            }
            let elapsed = now.saturating_duration_since(*at).as_secs();
            let reason = if elapsed + 2 >= *left {
                "expired"
            } else {
                "removed"
            };
            out.push(ControlEvent::Unbanned {
                source: network.clone(),
                reason,
            });
            false
        });
        for b in bans {
            match self.seen.get_mut(&b.source) {
                Some(entry) => *entry = (b.seconds_left, now),
                None => {
                    self.seen.insert(b.source.clone(), (b.seconds_left, now));
                    out.push(ControlEvent::Banned {
                        source: b.source.clone(),
                        reason: b.reason.clone(),
                        seconds: b.seconds_left,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(source: &str, left: u64) -> BanInForce {
        BanInForce {
            source: source.into(),
            reason: "scanner".into(),
            seconds_left: left,
        }
    }

    #[test]
    fn refused_connections_are_one_event_naming_the_top_source_and_the_caps() {
        let r = dataplane::stream::refusals::RefusalSummary {
            seq: 3,
            millis: 10_200,
            per_source: 5_000,
            total: 12,
            sources: 256,
            untallied: 40,
            top: Some(("198.18.0.9".parse().unwrap(), 4_000)),
        };
        let e = ControlEvent::ConnectionsRefused(r)
            .to_event("routes.csv")
            .unwrap();
        assert_eq!(e.kind, EventKind::ConnectionsRefused);
        assert_eq!(
            (e.subject.as_str(), e.reason.as_str()),
            ("198.18.0.9", "connection_caps")
        );
        for (k, v) in [
            ("refused_per_source", 5_000),
            ("refused_total", 12),
            ("sources", 256),
            ("untallied", 40),
            ("top_refused", 4_000),
        ] {
            assert_eq!(e.details[k], v, "{k}: {:?}", e.details);
        }
        assert_eq!(e.details["seconds"], 10.2);
    }

    #[test]
    fn a_ban_gets_one_event_when_it_appears_and_one_when_it_lapses() {
        let mut w = BanWatch::default();
        let mut out = Vec::new();
        w.update(&[ban("198.18.0.9/32", 1)], &mut out);
        w.update(&[ban("198.18.0.9/32", 1)], &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(
            matches!(&out[0], ControlEvent::Banned { source, .. } if source == "198.18.0.9/32")
        );
        w.update(&[], &mut out);
        assert_eq!(
            out[1],
            ControlEvent::Unbanned {
                source: "198.18.0.9/32".into(),
                reason: "expired"
            }
        );
    }

    #[test]
    fn a_ban_that_vanishes_early_was_removed_and_own_actions_are_not_repeated() {
        let mut w = BanWatch::default();
        let mut out = Vec::new();
        w.claim("198.18.0.1/32", 3600);
        w.update(
            &[ban("198.18.0.1/32", 3600), ban("198.18.0.2/32", 3600)],
            &mut out,
        );
        assert_eq!(out.len(), 1, "only the one not made here: {out:?}");
        w.forget("198.18.0.1/32");
        w.update(&[], &mut out);
        assert_eq!(
            out[1..],
            [ControlEvent::Unbanned {
                source: "198.18.0.2/32".into(),
                reason: "removed"
            }]
        );
    }

    #[test]
    fn a_capture_is_logged_when_it_starts_and_ends_with_what_it_wrote() {
        let start = capture_event(
            true,
            42,
            "on eth0, up to 5 drops of rate_limit into x.pcap",
            0,
            0,
        );
        assert_eq!(
            (start.kind, start.subject.as_str(), start.reason.as_str()),
            (EventKind::Capture, "pid 42", "started")
        );
        assert_eq!(start.details["by"], "operator");
        assert!(!start.details.contains_key("written"));
        let end = capture_event(
            false,
            42,
            "on eth0, up to 5 drops of rate_limit into x.pcap",
            5,
            1,
        );
        assert_eq!(end.reason, "ended");
        assert_eq!(
            (
                end.details["written"].as_u64(),
                end.details["lost"].as_u64()
            ),
            (Some(5), Some(1))
        );
    }

    #[test]
    fn every_operator_action_and_state_change_has_a_line() {
        let net: Cidr = "198.18.0.0/24".parse().unwrap();
        let events = [
            ControlEvent::OperatorBan {
                network: net,
                reason: "manual".into(),
                seconds: None,
            },
            ControlEvent::OperatorUnban { network: net },
            ControlEvent::AllowAdded {
                network: net,
                by: "operator",
            },
            ControlEvent::AllowRemoved {
                network: net,
                by: "config",
            },
            ControlEvent::Unbanned {
                source: "198.18.0.9/32".into(),
                reason: "expired",
            },
            ControlEvent::ReloadRefused {
                reason: "p.csv:3: no such group".into(),
                kept_version: 4,
            },
            ControlEvent::FilterReloadAccepted {
                file: "edge.toml".into(),
                changed: vec!["scanner_user_agents"],
                lists: ListChanges::default(),
                program_id: Some(7),
            },
            ControlEvent::FilterReloadRefused {
                file: "edge.toml".into(),
                reason: "edge.toml:9: ...".into(),
            },
            ControlEvent::Health {
                target: "198.18.0.20:5060".parse().unwrap(),
                group: "uk".into(),
                up: false,
                cause: "3 INVITEs unanswered".into(),
            },
            ControlEvent::AttachFallback {
                interface: "eth0".into(),
            },
        ];
        let kinds: Vec<EventKind> = events
            .iter()
            .map(|e| e.to_event("p.csv").expect("logged").kind)
            .collect();
        assert_eq!(
            kinds,
            [
                EventKind::Ban,
                EventKind::Unban,
                EventKind::AllowlistAdd,
                EventKind::AllowlistRemove,
                EventKind::Unban,
                EventKind::RouteReloadRefused,
                EventKind::FilterReloadAccepted,
                EventKind::FilterReloadRefused,
                EventKind::TargetDown,
                EventKind::AttachFallback,
            ]
        );
    }
}
