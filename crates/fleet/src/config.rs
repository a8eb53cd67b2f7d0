//! The `[fleet]` table of the appliance configuration: which fleet this
//! edge belongs to, under what name, and how it announces the service
//! address through the local routing daemon.
//!
//! ```toml
//! [fleet]
//! name = "prod"                     # the fleet: every edge of it says the same
//! edge = "edge-a"                   # this edge, unique in the fleet
//! address = "192.0.2.11"            # this edge's own address (probes leave from it)
//!
//! [fleet.announce]
//! bird_socket = "/run/bird/bird.ctl"
//! protocols = ["svc4", "svc6"]      # BIRD protocols holding the service routes
//! hold_down_seconds = 5             # healthy this long before announcing
//! max_hold_down_seconds = 120       # flapping doubles the hold-down up to this
//! withdraw_grace_seconds = 3        # on SIGTERM: withdraw, keep serving this long
//! require_upstream = true           # withdraw when no upstream answers probes
//!
//! [fleet.bus]
//! servers = ["192.0.2.50:4222"]     # nats-server with JetStream (-js)
//! user = "edge-a"                   # or token_file = "nats.token"
//! password_file = "nats.password"
//! bans_per_second = 10              # what one other edge may make this one do
//! ban_burst = 100
//! verified_per_second = 500
//! verified_burst = 5000
//! operator_per_second = 10
//! operator_burst = 100
//! max_bans_per_edge = 10000         # held at once, per other edge
//! max_verified_per_edge = 65536
//! share_operator_actions = true     # apply other edges' operator bans and allows
//! ```

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use config::{ConfigError, SourceFile};

/// Longest fleet or edge name: it becomes part of bus subjects.
pub const NAME_MAX: usize = 32;

/// `[fleet]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetSection {
    name: Spanned<String>,
    edge: Spanned<String>,
    #[serde(default)]
    address: Option<Spanned<String>>,
    #[serde(default)]
    announce: Option<AnnounceSection>,
    #[serde(default)]
    bus: Option<BusSection>,
}

/// `[fleet.bus]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct BusSection {
    servers: Spanned<Vec<String>>,
    #[serde(default)]
    user: Option<Spanned<String>>,
    #[serde(default)]
    password_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    token_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    bans_per_second: Option<Spanned<u32>>,
    #[serde(default)]
    ban_burst: Option<Spanned<u32>>,
    #[serde(default)]
    verified_per_second: Option<Spanned<u32>>,
    #[serde(default)]
    verified_burst: Option<Spanned<u32>>,
    #[serde(default)]
    operator_per_second: Option<Spanned<u32>>,
    #[serde(default)]
    operator_burst: Option<Spanned<u32>>,
    #[serde(default)]
    max_bans_per_edge: Option<Spanned<u32>>,
    #[serde(default)]
    max_verified_per_edge: Option<Spanned<u32>>,
    #[serde(default = "yes")]
    share_operator_actions: bool,
}

/// How this edge logs in to the bus; secrets are read from files (kept
/// out of the configuration, which is shown and copied around).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No authentication (a bus on a private network only).
    None,
    /// A user and the file holding its password.
    UserPassword {
        /// The user.
        user: String,
        /// The password's file.
        password_file: PathBuf,
        /// The line that names it, for errors reading it.
        line: usize,
    },
    /// The file holding a token.
    Token {
        /// The token's file.
        token_file: PathBuf,
        /// The line that names it.
        line: usize,
    },
}

/// The bus the fleet shares its state over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusConfig {
    /// `host:port` of each NATS server.
    pub servers: Vec<String>,
    /// How to log in.
    pub credentials: Credentials,
    /// What one other edge may make this one do.
    pub limits: super::shared::Limits,
}

/// `[fleet.announce]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnnounceSection {
    bird_socket: Spanned<PathBuf>,
    #[serde(default = "default_protocols")]
    protocols: Spanned<Vec<String>>,
    #[serde(default = "default_hold")]
    hold_down_seconds: Spanned<u64>,
    #[serde(default = "default_max_hold")]
    max_hold_down_seconds: Spanned<u64>,
    #[serde(default = "default_grace")]
    withdraw_grace_seconds: Spanned<u64>,
    #[serde(default = "yes")]
    require_upstream: bool,
}

fn default_protocols() -> Spanned<Vec<String>> {
    Spanned::new(0..0, vec!["svc4".into(), "svc6".into()])
}
fn default_hold() -> Spanned<u64> {
    Spanned::new(0..0, 5)
}
fn default_max_hold() -> Spanned<u64> {
    Spanned::new(0..0, 120)
}
fn default_grace() -> Spanned<u64> {
    Spanned::new(0..0, 3)
}
fn yes() -> bool {
    true
}

/// How this edge announces the service address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceConfig {
    /// BIRD's control socket (`bird -s`).
    pub bird_socket: PathBuf,
    /// The BIRD protocols (static routes of the service address) that
    /// `enable` announces and `disable` withdraws.
    pub protocols: Vec<String>,
    /// Healthy this long before announcing, in seconds.
    pub hold_down_seconds: u64,
    /// The longest hold-down flapping can earn, in seconds.
    pub max_hold_down_seconds: u64,
    /// On SIGTERM: withdrawn first, then served this long (the routers move
    /// the flows, calls in flight finish), then stopped.
    pub withdraw_grace_seconds: u64,
    /// Withdraw when no upstream target of a forward group answers probes.
    pub require_upstream: bool,
}

impl AnnounceConfig {
    /// The hold-down in the state machine's terms.
    pub fn hold_down(&self) -> super::announce::HoldDown {
        super::announce::HoldDown {
            base_ns: self.hold_down_seconds.saturating_mul(1_000_000_000),
            max_ns: self.max_hold_down_seconds.saturating_mul(1_000_000_000),
        }
    }
}

/// The `[fleet]` table, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// The fleet's name.
    pub name: String,
    /// This edge's name in the fleet.
    pub edge: String,
    /// This edge's own (unicast) address, when given: health probes leave
    /// from it, since answers to the shared service address may reach
    /// another edge.
    pub address: Option<IpAddr>,
    /// The announcement, when the table asks for one.
    pub announce: Option<AnnounceConfig>,
    /// The bus, when the table asks for one.
    pub bus: Option<BusConfig>,
    /// The line of `[fleet] name`, for errors found later (a fleet needs a
    /// pinned proxy secret).
    pub line: usize,
}

/// True for a name that can be a token of a bus subject and a key.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= NAME_MAX
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn name(source: &SourceFile, s: &Spanned<String>, what: &str) -> Result<String, ConfigError> {
    if !valid_name(s.get_ref()) {
        return Err(source.error_at(
            s.span(),
            format!(
                "{what} {:?} must be 1 to {NAME_MAX} letters, digits, '-' or '_'",
                s.get_ref()
            ),
        ));
    }
    Ok(s.get_ref().clone())
}

impl FleetConfig {
    /// Reads `[fleet]` from the appliance configuration; `None` when the
    /// table is absent (a lone edge).
    pub fn from_file(source: &SourceFile) -> Result<Option<FleetConfig>, ConfigError> {
        #[derive(Deserialize)]
        struct Only {
            fleet: Option<FleetSection>,
        }
        let only: Only = source.parse_toml()?;
        let Some(f) = only.fleet else {
            return Ok(None);
        };
        let fleet_name = name(source, &f.name, "[fleet] name")?;
        let edge = name(source, &f.edge, "[fleet] edge")?;
        let address = match &f.address {
            None => None,
            Some(a) => Some(a.get_ref().parse::<IpAddr>().map_err(|_| {
                source.error_at(
                    a.span(),
                    format!(
                        "[fleet] address {:?} is not an IP address (this edge's own, such as 192.0.2.11)",
                        a.get_ref()
                    ),
                )
            })?),
        };
        let announce = match f.announce {
            None => None,
            Some(a) => Some(announce(source, a)?),
        };
        let bus = match f.bus {
            None => None,
            Some(b) => Some(bus(source, b)?),
        };
        let line = config::line_column(source.text(), f.name.span().start).0;
        Ok(Some(FleetConfig {
            name: fleet_name,
            edge,
            address,
            announce,
            bus,
            line,
        }))
    }
}

fn bus(source: &SourceFile, b: BusSection) -> Result<BusConfig, ConfigError> {
    let servers = b.servers.get_ref();
    if servers.is_empty() {
        return Err(source.error_at(
            b.servers.span(),
            "[fleet.bus] servers is empty: name at least one NATS server as host:port",
        ));
    }
    for s in servers {
        let ok = s.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !ok {
            return Err(source.error_at(
                b.servers.span(),
                format!("[fleet.bus] server {s:?} is not host:port (such as 192.0.2.50:4222)"),
            ));
        }
    }
    let line_of = |span: std::ops::Range<usize>| config::line_column(source.text(), span.start).0;
    let credentials = match (&b.user, &b.password_file, &b.token_file) {
        (None, None, None) => Credentials::None,
        (Some(u), Some(p), None) => {
            if u.get_ref().is_empty() || u.get_ref().bytes().any(|c| c.is_ascii_control()) {
                return Err(source.error_at(
                    u.span(),
                    "[fleet.bus] user must be non-empty printable text",
                ));
            }
            Credentials::UserPassword {
                user: u.get_ref().clone(),
                password_file: source.resolve(p.get_ref()),
                line: line_of(p.span()),
            }
        }
        (None, None, Some(t)) => Credentials::Token {
            token_file: source.resolve(t.get_ref()),
            line: line_of(t.span()),
        },
        (Some(u), None, _) => {
            return Err(source.error_at(
                u.span(),
                "[fleet.bus] user needs password_file (the password is read from a file)",
            ))
        }
        (None, Some(p), _) => {
            return Err(source.error_at(p.span(), "[fleet.bus] password_file needs user"))
        }
        (Some(_), Some(_), Some(t)) => {
            return Err(source.error_at(
                t.span(),
                "[fleet.bus] give either user and password_file or token_file, not both",
            ))
        }
    };
    let d = super::shared::Limits::default();
    let positive =
        |v: &Option<Spanned<u32>>, name: &str, default: u32| -> Result<u32, ConfigError> {
            match v {
                None => Ok(default),
                Some(x) if *x.get_ref() == 0 => {
                    Err(source.error_at(x.span(), format!("[fleet.bus] {name} must be at least 1")))
                }
                Some(x) => Ok(*x.get_ref()),
            }
        };
    let limits = super::shared::Limits {
        bans: (
            positive(&b.bans_per_second, "bans_per_second", d.bans.0)?,
            positive(&b.ban_burst, "ban_burst", d.bans.1)?,
        ),
        verified: (
            positive(&b.verified_per_second, "verified_per_second", d.verified.0)?,
            positive(&b.verified_burst, "verified_burst", d.verified.1)?,
        ),
        operator: (
            positive(&b.operator_per_second, "operator_per_second", d.operator.0)?,
            positive(&b.operator_burst, "operator_burst", d.operator.1)?,
        ),
        max_bans_per_edge: positive(
            &b.max_bans_per_edge,
            "max_bans_per_edge",
            d.max_bans_per_edge as u32,
        )? as usize,
        max_verified_per_edge: positive(
            &b.max_verified_per_edge,
            "max_verified_per_edge",
            d.max_verified_per_edge as u32,
        )? as usize,
        share_operator_actions: b.share_operator_actions,
        ..d
    };
    Ok(BusConfig {
        servers: servers.clone(),
        credentials,
        limits,
    })
}

fn announce(source: &SourceFile, a: AnnounceSection) -> Result<AnnounceConfig, ConfigError> {
    if a.bird_socket.get_ref().as_os_str().is_empty() {
        return Err(source.error_at(
            a.bird_socket.span(),
            "[fleet.announce] bird_socket is empty: give BIRD's control socket (bird -s PATH)",
        ));
    }
    let protocols = a.protocols.get_ref();
    if protocols.is_empty() {
        return Err(source.error_at(
            a.protocols.span(),
            "[fleet.announce] protocols is empty: name the BIRD protocols that hold the service routes",
        ));
    }
    for p in protocols {
        // BIRD symbol names; anything else could change the command sent.
        let ok = !p.is_empty()
            && p.len() <= 64
            && p.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok {
            return Err(source.error_at(
                a.protocols.span(),
                format!("[fleet.announce] protocol {p:?} is not a BIRD protocol name (a letter, then letters, digits or '_')"),
            ));
        }
    }
    let hold = *a.hold_down_seconds.get_ref();
    let max = *a.max_hold_down_seconds.get_ref();
    if hold > 3600 {
        return Err(source.error_at(
            a.hold_down_seconds.span(),
            format!("[fleet.announce] hold_down_seconds {hold} is over an hour"),
        ));
    }
    if max < hold || max > 86_400 {
        return Err(source.error_at(
            a.max_hold_down_seconds.span(),
            format!(
                "[fleet.announce] max_hold_down_seconds {max} must be between hold_down_seconds ({hold}) and 86400"
            ),
        ));
    }
    let grace = *a.withdraw_grace_seconds.get_ref();
    if grace > 600 {
        return Err(source.error_at(
            a.withdraw_grace_seconds.span(),
            format!("[fleet.announce] withdraw_grace_seconds {grace} is over ten minutes"),
        ));
    }
    Ok(AnnounceConfig {
        bird_socket: source.resolve(a.bird_socket.get_ref()),
        protocols: protocols.clone(),
        hold_down_seconds: hold,
        max_hold_down_seconds: max,
        withdraw_grace_seconds: grace,
        require_upstream: a.require_upstream,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<FleetConfig>, ConfigError> {
        FleetConfig::from_file(&SourceFile::from_text("/etc/dce-edge/edge.toml", text))
    }

    #[test]
    fn no_table_no_fleet() {
        assert_eq!(parse("[edge]\nlisten = \"x\"\n").unwrap(), None);
    }

    #[test]
    fn a_full_table_is_read_with_paths_beside_the_file() {
        let c = parse(
            "[fleet]\nname = \"prod\"\nedge = \"edge-a\"\naddress = \"192.0.2.11\"\n\
             [fleet.announce]\nbird_socket = \"bird.ctl\"\nprotocols = [\"svc4\"]\nhold_down_seconds = 2\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.name, "prod");
        assert_eq!(c.edge, "edge-a");
        assert_eq!(c.address, Some("192.0.2.11".parse().unwrap()));
        assert_eq!(c.line, 2);
        let a = c.announce.unwrap();
        assert_eq!(a.bird_socket, PathBuf::from("/etc/dce-edge/bird.ctl"));
        assert_eq!(a.protocols, ["svc4"]);
        assert_eq!(a.hold_down_seconds, 2);
        assert_eq!(a.max_hold_down_seconds, 120);
        assert!(a.require_upstream);
    }

    #[test]
    fn the_bus_reads_credentials_from_files_beside_the_config() {
        let c = parse(
            "[fleet]\nname = \"f\"\nedge = \"e\"\n[fleet.bus]\nservers = [\"198.18.20.2:4222\"]\n\
             user = \"e\"\npassword_file = \"nats.pw\"\nbans_per_second = 5\nshare_operator_actions = false\n",
        )
        .unwrap()
        .unwrap();
        let b = c.bus.unwrap();
        assert_eq!(b.servers, ["198.18.20.2:4222"]);
        assert_eq!(
            b.credentials,
            Credentials::UserPassword {
                user: "e".into(),
                password_file: "/etc/dce-edge/nats.pw".into(),
                line: 7
            }
        );
        assert_eq!(b.limits.bans, (5, 100));
        assert!(!b.limits.share_operator_actions);
        for (text, line, what) in [
            ("servers = []\n", 5, "empty"),
            ("servers = [\"nats\"]\n", 5, "host:port"),
            ("servers = [\"a:1\"]\nuser = \"e\"\n", 6, "password_file"),
            (
                "servers = [\"a:1\"]\nmax_bans_per_edge = 0\n",
                6,
                "at least 1",
            ),
            (
                "servers = [\"a:1\"]\npassword = \"inline\"\n",
                6,
                "password",
            ),
        ] {
            let e = parse(&format!(
                "[fleet]\nname = \"f\"\nedge = \"e\"\n[fleet.bus]\n{text}"
            ))
            .unwrap_err();
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.reason.contains(what), "{text}: {e}");
        }
    }

    #[test]
    fn bad_values_are_refused_with_their_line() {
        let cases = [
            ("[fleet]\nname = \"a.b\"\nedge = \"e\"\n", 2, "name"),
            ("[fleet]\nname = \"f\"\nedge = \"\"\n", 3, "edge"),
            (
                "[fleet]\nname = \"f\"\nedge = \"e\"\naddress = \"edge-a\"\n",
                4,
                "not an IP address",
            ),
            (
                "[fleet]\nname = \"f\"\nedge = \"e\"\n[fleet.announce]\nbird_socket = \"s\"\nprotocols = [\"svc4; disable all\"]\n",
                6,
                "not a BIRD protocol name",
            ),
            (
                "[fleet]\nname = \"f\"\nedge = \"e\"\n[fleet.announce]\nbird_socket = \"s\"\nhold_down_seconds = 10\nmax_hold_down_seconds = 5\n",
                7,
                "max_hold_down_seconds",
            ),
            (
                "[fleet]\nname = \"f\"\nedge = \"e\"\n[fleet.announce]\nprotocols = []\n",
                4,
                "bird_socket",
            ),
            (
                "[fleet]\nname = \"f\"\nedge = \"e\"\nbogus = 1\n",
                4,
                "bogus",
            ),
        ];
        for (text, line, what) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.reason.contains(what), "{text}: {e}");
        }
    }
}
