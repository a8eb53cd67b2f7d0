//! Shield mode (`dce-edge filter`): the XDP filter alone in front of a SIP
//! server already on the box. Like the appliance it has a control socket
//! (ban, unban, allow, `filter reload`), an event log and a metrics
//! endpoint; what it lacks is workers, routes and a proxy. The command line
//! that runs it lives in the `dce-edge` binary.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use toml::Spanned;

use config::{ConfigError, SourceFile};
use telemetry::events::{EventsConfig, EventsSection};
use telemetry::metrics::{MetricsConfig, MetricsSection};
use telemetry::stats::{self, ReloadCounts, Snapshot};
use xdp::config::{
    check_allow_breadth, AttachMode, Cidr, FilterConfig, FilterSection, VerdictMode,
};
use xdp::loader::{Attached, Filter};
use xdp::maps::{BanReason, BAN_NOTE_MAX};
use xdp::FilterError;

use crate::control::{ControlRequest, ControlResponse};
use crate::events::{describe_reload, BanWatch, ControlEvent};

/// Where a shield's control socket is when `--control` does not say: one
/// per filter, named like its pins (`/run/dce-edge/filter/eth0.sock`, or
/// `.../netns-<inode>/eth0.sock` in another network namespace), so two
/// shields on two interfaces, or in two namespaces, never share one.
pub fn default_control_path(iface: &str) -> Result<PathBuf, FilterError> {
    let pins = xdp::loader::pin_dir_for(iface)?;
    let rel = pins
        .strip_prefix(xdp::loader::PIN_ROOT)
        .unwrap_or(Path::new(iface));
    let mut path = Path::new(SHIELD_RUN_DIR).join(rel);
    path.set_extension("sock");
    Ok(path)
}

/// The folder of the shields' control sockets.
pub const SHIELD_RUN_DIR: &str = "/run/dce-edge/filter";

/// The tables of a configuration file the shield reads. The file may be
/// the appliance's own: its other tables are allowed (and not read), an
/// unknown one is an error with its line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShieldFile {
    #[serde(default)]
    filter: Option<Spanned<FilterSection>>,
    metrics: Option<MetricsSection>,
    events: Option<EventsSection>,
    // The appliance's tables: allowed, not read by the shield.
    #[allow(dead_code)]
    profile: Option<toml::Value>,
    #[allow(dead_code)]
    edge: Option<toml::Value>,
    #[allow(dead_code)]
    dataplane: Option<toml::Value>,
    #[allow(dead_code)]
    proxy: Option<toml::Value>,
    #[allow(dead_code)]
    routes: Option<toml::Value>,
}

/// What `dce-edge filter` runs with, checked.
#[derive(Debug, Clone)]
pub struct ShieldConfig {
    /// The file (none: every default).
    pub path: Option<PathBuf>,
    /// The filter; its verdict mode is always pass.
    pub filter: FilterConfig,
    /// The metrics endpoint.
    pub metrics: MetricsConfig,
    /// The event log.
    pub events: EventsConfig,
}

impl ShieldConfig {
    /// Reads `path` (`None`: the defaults: metrics on 127.0.0.1:9560,
    /// events on standard output).
    pub fn load(path: Option<&Path>) -> Result<ShieldConfig, ConfigError> {
        let Some(path) = path else {
            return Ok(ShieldConfig {
                path: None,
                filter: FilterConfig {
                    mode: VerdictMode::Pass,
                    ..FilterConfig::default()
                },
                metrics: MetricsConfig::default(),
                events: EventsConfig::default(),
            });
        };
        let source = SourceFile::read(path)?;
        let file: ShieldFile = source.parse_toml()?;
        let mut filter =
            FilterConfig::from_section(&source, file.filter.as_ref().map(|f| f.get_ref()))?;
        // The shield has no AF_XDP workers: good SIP always goes to the kernel.
        filter.mode = VerdictMode::Pass;
        Ok(ShieldConfig {
            path: Some(path.to_path_buf()),
            filter,
            metrics: MetricsConfig::from_section(&source, file.metrics.as_ref())?,
            events: EventsConfig::from_section(&source, file.events.as_ref())?,
        })
    }
}

/// A running shield, owned by its one thread.
pub struct Shield {
    cfg: ShieldConfig,
    filter: Filter,
    iface: String,
    started: Instant,
    last_sweep: Instant,
    ban_watch: BanWatch,
    events: Vec<ControlEvent>,
    reloads: ReloadCounts,
    imports: crate::feeds::ImportTally,
}

impl Shield {
    /// Loads and attaches the filter on `iface` in `mode`.
    pub fn start(cfg: ShieldConfig, iface: &str, mode: AttachMode) -> Result<Shield, FilterError> {
        let filter = Filter::load(&cfg.filter, iface, mode)?;
        let mut events = Vec::new();
        if let Some(Attached::Generic { fell_back: true }) = filter.attached() {
            events.push(ControlEvent::AttachFallback {
                interface: iface.to_string(),
            });
        }
        Ok(Shield {
            cfg,
            filter,
            iface: iface.to_string(),
            started: Instant::now(),
            last_sweep: Instant::now(),
            ban_watch: BanWatch::default(),
            events,
            reloads: ReloadCounts::default(),
            imports: crate::feeds::ImportTally::default(),
        })
    }

    /// The filter (its pins, attach mode, maps).
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// The configuration it runs.
    pub fn config(&self) -> &ShieldConfig {
        &self.cfg
    }

    /// Housekeeping (expired bans and verifications swept every 10 s);
    /// returns the events since the last call.
    pub fn tick(&mut self) -> Vec<ControlEvent> {
        if self.last_sweep.elapsed() >= Duration::from_secs(10) {
            // Expired bans already do not apply; this only frees their entries.
            if let Err(e) = self.filter.sweep_expired_bans() {
                eprintln!("dce-edge filter: sweeping expired bans: {e}");
            }
            if let Err(e) = self.filter.sweep_expired_verified() {
                eprintln!("dce-edge filter: sweeping lapsed verifications: {e}");
            }
            self.last_sweep = Instant::now();
        }
        std::mem::take(&mut self.events)
    }

    /// The counters, bans and top sources, as the metrics endpoint serves
    /// them; bans that appeared or went since the last call become events.
    pub fn snapshot(&mut self) -> Snapshot {
        let mut s = Snapshot {
            version: env!("CARGO_PKG_VERSION").to_string(),
            role: stats::Role::Filter,
            interface: Some(self.iface.clone()),
            taken_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            ..Snapshot::default()
        };
        s.modes.dataplane = "none".into();
        crate::run::add_filter(&mut s, &self.filter);
        s.filter_reloads = self.reloads.clone();
        self.ban_watch.update(&s.bans, &mut self.events);
        s
    }

    /// Reads the configuration file's `[filter]` table again and applies it
    /// to the running program (same program; counters, bans, verified
    /// sources and entries added at run time kept). Refused with file and
    /// line, keeping the running rules, when the table is bad, when
    /// `attach` changed (that needs a restart) or when its lists do not fit.
    pub fn reload_filter(&mut self) -> Result<String, String> {
        let file = self
            .cfg
            .path
            .as_ref()
            .map_or("(no file)".to_string(), |p| p.display().to_string());
        match self.try_reload(&file) {
            Ok((changed, lists)) => {
                self.reloads.accepted += 1;
                let id = self.filter.program_id();
                let message = describe_reload(&file, &changed, &lists, id);
                for network in &lists.allow_added {
                    self.events.push(ControlEvent::AllowAdded {
                        network: *network,
                        by: "config",
                    });
                }
                for network in &lists.allow_removed {
                    self.events.push(ControlEvent::AllowRemoved {
                        network: *network,
                        by: "config",
                    });
                }
                self.events.push(ControlEvent::FilterReloadAccepted {
                    file,
                    changed,
                    lists,
                    program_id: id,
                });
                Ok(message)
            }
            Err(reason) => {
                self.reloads.refused += 1;
                self.reloads.last_error = Some(reason.clone());
                self.events.push(ControlEvent::FilterReloadRefused {
                    file,
                    reason: reason.clone(),
                });
                Err(reason)
            }
        }
    }

    fn try_reload(&mut self, file: &str) -> Result<(Vec<&'static str>, xdp::ListChanges), String> {
        let Some(path) = self.cfg.path.clone() else {
            return Err(
                "the filter was started without --config: there is no file to read again".into(),
            );
        };
        let new = ShieldConfig::load(Some(&path)).map_err(|e| e.to_string())?;
        if new.filter.attach != self.cfg.filter.attach {
            return Err(format!(
                "{file}: attach changed ({:?} -> {:?}): attaching anew needs a restart; the \
                 running rules stay",
                self.cfg.filter.attach, new.filter.attach
            ));
        }
        let lists = self
            .filter
            .reconfigure(&self.cfg.filter, &new.filter, &[])
            .map_err(|e| format!("{file}: {e}; the running rules stay"))?;
        let changed = self.cfg.filter.changes(&new.filter);
        // The metrics address and the event log are what the process was
        // started with; a change there takes a restart (said, not hidden).
        if new.metrics != self.cfg.metrics || new.events != self.cfg.events {
            eprintln!(
                "dce-edge filter: [metrics] and [events] changes take effect at the next start"
            );
        }
        self.cfg.filter = new.filter;
        Ok((changed, lists))
    }

    /// Answers one control-socket request.
    pub fn handle(&mut self, request: ControlRequest) -> ControlResponse {
        let answer = |r: Result<String, String>| match r {
            Ok(m) => ControlResponse::ok(m),
            Err(e) => ControlResponse::refused(e),
        };
        match request {
            ControlRequest::Status => ControlResponse::ok(format!(
                "running: XDP filter (shield mode) on {}, program id {}",
                self.iface,
                self.filter
                    .program_id()
                    .map_or("unknown".to_string(), |id| id.to_string())
            )),
            ControlRequest::ReloadRoutes { .. } => ControlResponse::refused(
                "shield mode has no route table (`dce-edge filter reload` reloads the filter)",
            ),
            ControlRequest::FilterReload => answer(self.reload_filter()),
            ControlRequest::Drain { .. } | ControlRequest::FleetStatus => {
                ControlResponse::refused("shield mode is no edge of a fleet")
            }
            ControlRequest::ReloadTls => {
                ControlResponse::refused("shield mode carries no SIP over TLS: nothing to reload")
            }
            // The process running the shield owns its event log and answers
            // these itself; a shield handed them has no log.
            ControlRequest::ReopenEvents => {
                ControlResponse::refused("this shield's process keeps no event log to reopen")
            }
            ControlRequest::CaptureNote { .. } => {
                ControlResponse::refused("this shield's process keeps no event log to note it in")
            }
            ControlRequest::Ban {
                network,
                ttl_seconds,
                reason,
                note,
            } => answer(network.parse::<Cidr>().and_then(|n| {
                let reason = reason
                    .parse::<BanReason>()
                    .map_err(|e| format!("reason {reason:?}: {e}"))?;
                self.ban(n, ttl_seconds.map(Duration::from_secs), reason, &note)
            })),
            ControlRequest::BanMany {
                networks,
                ttl_seconds,
                reason,
                note,
                part,
            } => self.ban_many(&networks, ttl_seconds, &reason, &note, part),
            ControlRequest::Unban { network } => {
                answer(network.parse::<Cidr>().and_then(|n| self.unban(n)))
            }
            ControlRequest::Allow { network } => {
                answer(network.parse::<Cidr>().and_then(|n| self.allow(n)))
            }
            ControlRequest::Disallow { network } => {
                answer(network.parse::<Cidr>().and_then(|n| self.disallow(n)))
            }
        }
    }

    fn ban(
        &mut self,
        network: Cidr,
        ttl: Option<Duration>,
        reason: BanReason,
        note: &str,
    ) -> Result<String, String> {
        if note.len() > BAN_NOTE_MAX {
            return Err(format!(
                "note {note:?} is {} bytes; the limit is {BAN_NOTE_MAX}",
                note.len()
            ));
        }
        self.filter
            .ban(network, ttl, reason, note)
            .map_err(|e| e.to_string())?;
        self.ban_watch
            .claim(&network.to_string(), ttl.map_or(u64::MAX, |t| t.as_secs()));
        self.events.push(ControlEvent::OperatorBan {
            network,
            reason: reason.name().to_string(),
            seconds: ttl.map(|t| t.as_secs()),
        });
        Ok(format!(
            "banned {network} on {} ({}), {}",
            self.iface,
            reason.name(),
            match ttl {
                Some(t) => format!("for {} s", t.as_secs()),
                None => "until unbanned".into(),
            }
        ))
    }

    fn ban_many(
        &mut self,
        networks: &[String],
        ttl_seconds: Option<u64>,
        reason: &str,
        note: &str,
        part: Option<(u32, u32)>,
    ) -> ControlResponse {
        let why = match reason.parse::<BanReason>() {
            Ok(r) => r,
            Err(e) => return ControlResponse::refused(format!("reason {reason:?}: {e}")),
        };
        if note.len() > BAN_NOTE_MAX {
            return ControlResponse::refused(format!(
                "note {note:?} is {} bytes; the limit is {BAN_NOTE_MAX}",
                note.len()
            ));
        }
        let ttl = ttl_seconds.map(Duration::from_secs);
        // Without the allowlist no feed is applied: it could ban the
        // networks this edge trusts.
        let allow = match self.filter.allowlist() {
            Ok(a) => a,
            Err(e) => return ControlResponse::refused(format!("cannot read the allowlist: {e}")),
        };
        let mut room = match self.imports.room(note, part, &self.filter) {
            Ok(r) => r,
            Err(e) => return ControlResponse::refused(e.to_string()),
        };
        match crate::feeds::ban_all(
            &mut self.filter,
            networks,
            ttl,
            why,
            note,
            &allow,
            &mut room,
        ) {
            Ok((report, made)) => {
                for c in &made {
                    self.ban_watch
                        .claim(&c.to_string(), ttl_seconds.unwrap_or(u64::MAX));
                }
                let message = crate::feeds::describe(&report);
                let data = serde_json::to_value(&report).ok();
                let done = self
                    .imports
                    .add(note, why.name(), ttl_seconds, part, report, room);
                self.events.extend(done);
                ControlResponse {
                    ok: true,
                    message,
                    data,
                }
            }
            Err(e) => ControlResponse::refused(e.to_string()),
        }
    }

    fn unban(&mut self, network: Cidr) -> Result<String, String> {
        let lifted = self.filter.unban(network).map_err(|e| e.to_string())?;
        if !lifted.any() {
            return Err(format!(
                "{network} is not banned on {} (see `dce-edge ban --list`; unban takes the exact network)",
                self.iface
            ));
        }
        self.ban_watch.forget(&network.to_string());
        if network.prefix == if network.addr.is_ipv4() { 32 } else { 128 } {
            self.ban_watch.forget(
                &xdp::maps::source_network(&xdp::maps::source_key(network.addr)).to_string(),
            );
        }
        self.events.push(ControlEvent::OperatorUnban { network });
        let what = match (lifted.operator, lifted.automatic) {
            (true, true) => "the operator ban and the automatic ban",
            (true, false) => "the operator ban",
            _ => "the automatic ban",
        };
        Ok(format!(
            "unbanned {network} on {}: lifted {what}",
            self.iface
        ))
    }

    fn allow(&mut self, network: Cidr) -> Result<String, String> {
        check_allow_breadth(&network)?;
        self.filter.allow(network).map_err(|e| e.to_string())?;
        self.events.push(ControlEvent::AllowAdded {
            network,
            by: "operator",
        });
        Ok(format!(
            "allowed {network} on {}: it skips the blocklist, bans and rate limits",
            self.iface
        ))
    }

    fn disallow(&mut self, network: Cidr) -> Result<String, String> {
        if !self.filter.disallow(network).map_err(|e| e.to_string())? {
            return Err(format!(
                "{network} is not in the allowlist of {}",
                self.iface
            ));
        }
        self.events.push(ControlEvent::AllowRemoved {
            network,
            by: "operator",
        });
        Ok(format!(
            "removed {network} from the allowlist on {}",
            self.iface
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shield_reads_its_tables_from_an_appliance_file_and_refuses_unknown_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("edge.toml");
        std::fs::write(
            &path,
            "[edge]\nlisten = \"198.18.0.1:5060\"\n[routes]\nx = 1\n\
             [filter]\nscanner_user_agents = [\"a\"]\n[metrics]\nlisten = \"127.0.0.1:9999\"\n",
        )
        .unwrap();
        let c = ShieldConfig::load(Some(&path)).unwrap();
        assert_eq!(c.filter.scanner_user_agents, vec!["a"]);
        assert_eq!(c.filter.mode, VerdictMode::Pass);
        assert_eq!(c.metrics.listen.port(), 9999);
        std::fs::write(&path, "[filtr]\nallowlist = []\n").unwrap();
        let e = ShieldConfig::load(Some(&path)).unwrap_err();
        assert_eq!(e.line, 1, "{e}");
        std::fs::write(&path, "[filter]\nallow_list = []\n").unwrap();
        let e = ShieldConfig::load(Some(&path)).unwrap_err();
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn each_shield_has_its_own_control_socket() {
        // The path follows the pins, whose folder needs bpffs (root).
        let (Ok(a), Ok(b)) = (default_control_path("eth0"), default_control_path("eth1")) else {
            eprintln!("skipped: no bpffs here (not root)");
            return;
        };
        assert_ne!(a, b);
        assert!(a.starts_with(SHIELD_RUN_DIR), "{}", a.display());
        assert_eq!(a.extension().unwrap(), "sock");
        assert!(a.as_os_str().len() < 100, "fits a sockaddr_un");
    }
}
