//! The `[stream]` table: SIP over TCP and TLS (issue 19).
//!
//! ```toml
//! [stream]
//! tcp = "198.18.0.1:5060"          # listen for SIP over TCP (optional)
//! tls = "198.18.0.1:5061"          # listen for SIP over TLS (optional)
//! certificate = "edge.crt"         # PEM chain; needed with tls
//! key = "edge.key"                 # PEM private key; needed with tls
//! client_ca = "trunks-ca.crt"      # require client certificates from this CA
//! upstream_ca = "upstreams-ca.crt" # dial TLS route targets, verified against it
//! max_connections = 4096
//! max_per_source = 16              # an IPv6 source is its /64
//! idle_timeout_s = 600
//! message_timeout_s = 10           # also the TLS handshake's and a dial's
//! max_header = 16384
//! max_body = 65536
//! max_queued = 65536               # bytes waiting to be written, per connection
//! ```
//!
//! Paths are relative to the configuration file. Every error names the file,
//! the line and the reason.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use config::{ConfigError, SourceFile};
use dataplane::stream::StreamConfig;

/// The `[stream]` table as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSection {
    tcp: Option<Spanned<String>>,
    tls: Option<Spanned<String>>,
    certificate: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    client_ca: Option<Spanned<String>>,
    upstream_ca: Option<Spanned<String>>,
    max_connections: Option<Spanned<u64>>,
    max_per_source: Option<Spanned<u64>>,
    idle_timeout_s: Option<Spanned<u64>>,
    message_timeout_s: Option<Spanned<u64>>,
    max_header: Option<Spanned<u64>>,
    max_body: Option<Spanned<u64>>,
    max_queued: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
struct Only {
    stream: Option<StreamSection>,
}

/// A port the `[stream]` table listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenPort {
    /// The key that names it: `tcp` or `tls`.
    pub key: &'static str,
    /// The TCP port.
    pub port: u16,
    /// Where the address is written in the file.
    pub span: std::ops::Range<usize>,
}

/// The ports the `[stream]` table listens on (`tcp`, `tls`), each with its
/// key and where it is written, so that a port the XDP filter does not
/// watch (`[filter] tcp_ports`) can be refused at its line. Addresses that
/// do not parse are left to [`from_source`] to refuse.
pub fn listen_ports(source: &SourceFile) -> Result<Vec<ListenPort>, ConfigError> {
    let Some(s) = source.parse_toml::<Only>()?.stream else {
        return Ok(Vec::new());
    };
    Ok([("tcp", &s.tcp), ("tls", &s.tls)]
        .into_iter()
        .filter_map(|(key, v)| {
            let v = v.as_ref()?;
            let port = v.get_ref().parse::<SocketAddr>().ok()?.port();
            Some(ListenPort {
                key,
                port,
                span: v.span(),
            })
        })
        .collect())
}

/// Reads the `[stream]` table of the appliance configuration: `None` when
/// there is none.
pub fn from_source(source: &SourceFile) -> Result<Option<StreamConfig>, ConfigError> {
    let Some(s) = source.parse_toml::<Only>()?.stream else {
        return Ok(None);
    };
    let addr = |v: &Spanned<String>, what: &str| {
        v.get_ref().parse::<SocketAddr>().map_err(|_| {
            source.error_at(
                v.span(),
                format!(
                    "{what} {:?} is not an address with a port, such as 198.18.0.1:5061",
                    v.get_ref()
                ),
            )
        })
    };
    let read = |v: &Spanned<String>, what: &str| {
        let path = source.resolve(std::path::Path::new(v.get_ref()));
        std::fs::read(&path)
            .map_err(|e| source.error_at(v.span(), format!("{what} {}: {e}", path.display())))
    };
    let tcp = s.tcp.as_ref().map(|v| addr(v, "tcp")).transpose()?;
    let tls = match &s.tls {
        None => None,
        Some(t) => {
            let at = addr(t, "tls")?;
            let (Some(cert), Some(key)) = (&s.certificate, &s.key) else {
                return Err(source.error_at(t.span(), "tls needs certificate and key"));
            };
            let client_ca = s
                .client_ca
                .as_ref()
                .map(|v| read(v, "client_ca"))
                .transpose()?;
            let server = dataplane::tls::server_config(
                &read(cert, "certificate")?,
                &read(key, "key")?,
                client_ca.as_deref(),
            )
            .map_err(|e| source.error_at(cert.span(), format!("tls: {e}")))?;
            Some((at, server))
        }
    };
    if tcp.is_none() && tls.is_none() {
        return Err(ConfigError::file(
            source.path(),
            "[stream] needs tcp or tls (an address to listen on)",
        ));
    }
    let mut cfg = StreamConfig::tls_only(tls);
    cfg.tcp = tcp;
    if let Some(ca) = &s.upstream_ca {
        cfg.tls_client = Some(
            dataplane::tls::client_config(&read(ca, "upstream_ca")?)
                .map_err(|e| source.error_at(ca.span(), format!("upstream_ca: {e}")))?,
        );
    }
    let num = |v: &Option<Spanned<u64>>, name: &str, lo: u64, hi: u64, default: u64| match v {
        None => Ok(default),
        Some(n) if (lo..=hi).contains(n.get_ref()) => Ok(*n.get_ref()),
        Some(n) => Err(source.error_at(
            n.span(),
            format!(
                "{name} is {}; it must be between {lo} and {hi}",
                n.get_ref()
            ),
        )),
    };
    cfg.max_connections = num(
        &s.max_connections,
        "max_connections",
        1,
        1_000_000,
        cfg.max_connections as u64,
    )? as usize;
    cfg.max_per_source = num(
        &s.max_per_source,
        "max_per_source",
        1,
        cfg.max_connections as u64,
        (cfg.max_per_source).min(cfg.max_connections) as u64,
    )? as usize;
    cfg.idle_timeout = Duration::from_secs(num(
        &s.idle_timeout_s,
        "idle_timeout_s",
        1,
        86_400,
        cfg.idle_timeout.as_secs(),
    )?);
    cfg.message_timeout = Duration::from_secs(num(
        &s.message_timeout_s,
        "message_timeout_s",
        1,
        600,
        cfg.message_timeout.as_secs(),
    )?);
    cfg.limits.max_header = num(
        &s.max_header,
        "max_header",
        1024,
        65_536,
        cfg.limits.max_header as u64,
    )? as usize;
    cfg.limits.max_body = num(
        &s.max_body,
        "max_body",
        0,
        1 << 20,
        cfg.limits.max_body as u64,
    )? as usize;
    cfg.max_queued = num(
        &s.max_queued,
        "max_queued",
        4096,
        16 << 20,
        cfg.max_queued as u64,
    )? as usize;
    Ok(Some(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Option<StreamConfig>, String> {
        from_source(&SourceFile::from_text("/nonexistent/edge.toml", text))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn no_table_no_stream_and_tcp_alone_gets_the_defaults() {
        assert!(load("[edge]\n").unwrap().is_none());
        let c = load("[stream]\ntcp = \"198.18.0.1:5060\"\n")
            .unwrap()
            .unwrap();
        assert_eq!(c.tcp, Some("198.18.0.1:5060".parse().unwrap()));
        assert!(c.tls.is_none() && c.tls_client.is_none());
        assert_eq!(c.max_per_source, 16);
    }

    #[test]
    fn bad_settings_are_refused_with_their_line() {
        for (text, line, want) in [
            ("[stream]\n", "", "needs tcp or tls"),
            ("[stream]\ntcp = \"198.18.0.1\"\n", ":2:", "tcp \"198.18.0.1\" is not an address"),
            ("[stream]\ntls = \"198.18.0.1:5061\"\n", ":2:", "tls needs certificate and key"),
            (
                "[stream]\ntls = \"198.18.0.1:5061\"\ncertificate = \"none.crt\"\nkey = \"none.key\"\n",
                ":3:",
                "certificate /nonexistent/none.crt",
            ),
            (
                "[stream]\ntcp = \"198.18.0.1:5060\"\nmax_per_source = 0\n",
                ":3:",
                "max_per_source is 0; it must be between 1 and 4096",
            ),
            ("[stream]\ntcp = \"198.18.0.1:5060\"\nsctp = 1\n", ":3:", "sctp"),
        ] {
            let e = load(text).unwrap_err();
            assert!(e.contains(&format!("edge.toml{line}")) && e.contains(want), "{text:?}: {e}");
        }
    }
}
