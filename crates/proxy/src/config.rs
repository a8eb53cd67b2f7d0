//! The `[proxy]` table of the appliance configuration, and the checked form
//! a worker's proxy runs with.

use std::net::SocketAddr;

use serde::Deserialize;

use super::abuse::AbuseConfig;
use super::answers::AnswerConfig;
use super::cookie::Secret;
use super::emergency::EmergencyConfig;
use crate::handler::Transport;
use config::{ConfigError, SourceFile};
pub use wire::Cidr;

/// The `[proxy]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySection {
    /// The address and port this edge puts in Via and Record-Route
    /// (`198.18.0.1:5060`); by default the appliance's SIP address.
    pub advertise: Option<toml::Spanned<String>>,
    /// Other host names or addresses Request-URIs may use for this edge.
    pub aliases: Vec<String>,
    /// Record-Route initial INVITEs with a dialog cookie, so callers prove
    /// their address is real when they send ACK and BYE (recommended).
    pub record_route: bool,
    /// The answer when no route matches: 404 (default), 484 or 604.
    pub no_route_code: toml::Spanned<u16>,
    /// The Server header of local answers.
    pub server: String,
    /// 32 hex digits; edges sharing one address must share it. Random per
    /// start when absent.
    pub secret: Option<toml::Spanned<String>>,
    /// How long one dialog-cookie epoch lasts, in seconds (cookies are
    /// accepted for two epochs).
    pub cookie_period_seconds: toml::Spanned<u32>,
    /// Budgets for locally generated answers.
    pub answers: AnswerConfig,
    /// Per-source abuse limits that lead to a ban.
    pub abuse: AbuseConfig,
    /// Emergency calls' own budgets.
    pub emergency: EmergencyConfig,
}

impl Default for ProxySection {
    fn default() -> Self {
        ProxySection {
            advertise: None,
            aliases: Vec::new(),
            record_route: true,
            no_route_code: toml::Spanned::new(0..0, 404),
            server: "dce-edge".into(),
            secret: None,
            cookie_period_seconds: toml::Spanned::new(0..0, 3600),
            answers: AnswerConfig::default(),
            abuse: AbuseConfig::default(),
            emergency: EmergencyConfig::default(),
        }
    }
}

/// What a worker's proxy runs with: the section checked and resolved.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// This edge's address in Via and Record-Route (UDP).
    pub advertise: SocketAddr,
    /// Its address for SIP over TCP, when it listens for it (the
    /// appliance's `[stream] tcp`).
    pub advertise_tcp: Option<SocketAddr>,
    /// Its address for SIP over TLS, when it listens for it (the
    /// appliance's `[stream] tls`).
    pub advertise_tls: Option<SocketAddr>,
    /// Host names Request-URIs may use for this edge (lowercase).
    pub aliases: Vec<String>,
    /// Record-Route initial INVITEs.
    pub record_route: bool,
    /// The no-route answer code.
    pub no_route_code: u16,
    /// Server header value.
    pub server: String,
    /// The secret behind branches and cookies.
    pub secret: Secret,
    /// Dialog-cookie epoch, in nanoseconds.
    pub cookie_period_ns: u64,
    /// Added to the dataplane's clock to count cookie epochs: the wall
    /// clock (Unix nanoseconds) at the dataplane clock's zero, set by the
    /// appliance. Epochs then agree between edges and across restarts, so
    /// an edge recognises the cookies of another edge of its fleet, and its
    /// own from before a restart. 0 counts from the dataplane clock alone.
    pub cookie_clock_offset_ns: u64,
    /// Answer budgets.
    pub answers: AnswerConfig,
    /// Abuse limits.
    pub abuse: AbuseConfig,
    /// Emergency calls' budgets.
    pub emergency: EmergencyConfig,
    /// Sources that are trusted: never banned, answered freely.
    pub allowlist: Vec<Cidr>,
}

impl ProxyConfig {
    /// A configuration with defaults for an edge at `advertise`; for tests
    /// and tools.
    pub fn new(advertise: SocketAddr, secret: Secret) -> Self {
        let s = ProxySection::default();
        ProxyConfig {
            advertise,
            advertise_tcp: None,
            advertise_tls: None,
            aliases: Vec::new(),
            record_route: s.record_route,
            no_route_code: *s.no_route_code.get_ref(),
            server: s.server,
            secret,
            cookie_period_ns: 3600 * 1_000_000_000,
            cookie_clock_offset_ns: 0,
            answers: s.answers,
            abuse: s.abuse,
            emergency: s.emergency,
            allowlist: Vec::new(),
        }
    }

    /// Checks `section` (read from `file`) for an edge whose SIP address is
    /// `listen`, with `allowlist` from the filter configuration (checked there).
    /// `random_secret` is used when the section pins no secret: the caller
    /// draws it from the system's random source (the proxy reads none).
    pub fn from_section(
        section: &ProxySection,
        file: &SourceFile,
        listen: SocketAddr,
        allowlist: &[Cidr],
        random_secret: Secret,
    ) -> Result<ProxyConfig, ConfigError> {
        let advertise = match &section.advertise {
            None => listen,
            Some(a) => a.get_ref().parse::<SocketAddr>().map_err(|_| {
                file.error_at(
                    a.span(),
                    format!(
                        "advertise {:?} is not an address:port such as 198.18.0.1:5060",
                        a.get_ref()
                    ),
                )
            })?,
        };
        let code = *section.no_route_code.get_ref();
        if !matches!(code, 403 | 404 | 480 | 484 | 503 | 604) {
            return Err(file.error_at(
                section.no_route_code.span(),
                format!("no_route_code {code} is not one of 403, 404, 480, 484, 503, 604"),
            ));
        }
        let secret = match &section.secret {
            None => random_secret,
            Some(s) => parse_secret(s.get_ref())
                .ok_or_else(|| file.error_at(s.span(), "secret must be exactly 32 hex digits"))?,
        };
        let period = *section.cookie_period_seconds.get_ref();
        if period == 0 {
            return Err(file.error_at(
                section.cookie_period_seconds.span(),
                "cookie_period_seconds must be at least 1",
            ));
        }
        if section.server.bytes().any(|b| b < b' ' || b == 0x7f) || section.server.is_empty() {
            return Err(ConfigError::file(
                file.path(),
                "proxy.server must be non-empty printable text",
            ));
        }
        Ok(ProxyConfig {
            advertise,
            advertise_tcp: None,
            advertise_tls: None,
            aliases: section
                .aliases
                .iter()
                .map(|a| a.to_ascii_lowercase())
                .collect(),
            record_route: section.record_route,
            no_route_code: code,
            server: section.server.clone(),
            secret,
            cookie_period_ns: period as u64 * 1_000_000_000,
            cookie_clock_offset_ns: 0,
            answers: section.answers,
            abuse: section.abuse,
            emergency: section.emergency,
            allowlist: allowlist.to_vec(),
        })
    }
}

impl ProxyConfig {
    /// This edge's address as written in a Via or Record-Route for
    /// `transport`: the configured one, else the UDP address (TCP) or its
    /// host on port 5061 (TLS).
    pub fn advertise_for(&self, transport: Transport) -> SocketAddr {
        match transport {
            Transport::Udp => self.advertise,
            Transport::Tcp => self.advertise_tcp.unwrap_or(self.advertise),
            Transport::Tls => self
                .advertise_tls
                .unwrap_or(SocketAddr::new(self.advertise.ip(), 5061)),
        }
    }
}

fn parse_secret(s: &str) -> Option<Secret> {
    if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let k0 = u64::from_str_radix(&s[..16], 16).ok()?;
    let k1 = u64::from_str_radix(&s[16..], 16).ok()?;
    Some(Secret::new(k0, k1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        proxy: ProxySection,
    }

    fn check(text: &str) -> Result<ProxyConfig, ConfigError> {
        let src = SourceFile::from_text("edge.toml", text);
        let f: File = src.parse_toml()?;
        ProxyConfig::from_section(
            &f.proxy,
            &src,
            "198.18.0.1:5060".parse().unwrap(),
            &[],
            Secret::new(7, 11),
        )
    }

    #[test]
    fn defaults_advertise_the_listen_address() {
        let c = check("").unwrap();
        assert_eq!(c.advertise, "198.18.0.1:5060".parse().unwrap());
        assert_eq!(c.no_route_code, 404);
        assert!(c.record_route);
    }

    #[test]
    fn a_bad_no_route_code_names_its_line() {
        let e = check("[proxy]\nserver = \"x\"\nno_route_code = 200\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.reason.contains("no_route_code 200"), "{e}");
    }

    #[test]
    fn a_bad_secret_is_refused() {
        let e = check("[proxy]\nsecret = \"abc\"\n").unwrap_err();
        assert_eq!(e.line, 2);
        let ok = check("[proxy]\nsecret = \"00112233445566778899aabbccddeeff\"\n").unwrap();
        assert_eq!(
            ok.secret,
            Secret::new(0x0011223344556677, 0x8899aabbccddeeff)
        );
    }
}
