//! The `[metrics]` table: where the Prometheus endpoint listens.
//!
//! ```toml
//! [metrics]
//! listen = "127.0.0.1:9560"   # the default; an IP address and a non-zero port
//! ```

use std::net::SocketAddr;

use serde::Deserialize;

use config::{ConfigError, SourceFile};

/// The default listen address: localhost only, so the counters are not on the
/// network until an operator says so.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9560";

/// The `[metrics]` table as written, before validation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// `listen = "ip:port"`.
    pub listen: Option<toml::Spanned<String>>,
}

/// Where the metrics endpoint listens, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsConfig {
    /// The address `/metrics` and `/snapshot.json` are served on.
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: DEFAULT_LISTEN.parse().expect("the default address parses"),
        }
    }
}

impl MetricsConfig {
    /// Validates a `[metrics]` table read from `source` (absent: the
    /// defaults). Errors name the file, the line and the reason.
    pub fn from_section(
        source: &SourceFile,
        section: Option<&MetricsSection>,
    ) -> Result<Self, ConfigError> {
        let Some(listen) = section.and_then(|s| s.listen.as_ref()) else {
            return Ok(MetricsConfig::default());
        };
        let addr: SocketAddr = listen.get_ref().trim().parse().map_err(|_| {
            source.error_at(
                listen.span(),
                format!(
                    "metrics listen address {:?} is not an IP address and port (like \"{DEFAULT_LISTEN}\" or \"[::1]:9560\")",
                    listen.get_ref()
                ),
            )
        })?;
        if addr.port() == 0 {
            return Err(source.error_at(
                listen.span(),
                format!(
                    "metrics listen address {addr} has port 0: Prometheus needs a fixed port (the default is 9560)"
                ),
            ));
        }
        Ok(MetricsConfig { listen: addr })
    }

    /// Reads the `[metrics]` table of a configuration file that may hold
    /// other tables too (they are left to their own readers).
    pub fn from_file(source: &SourceFile) -> Result<Self, ConfigError> {
        #[derive(Deserialize)]
        struct Only {
            metrics: Option<MetricsSection>,
        }
        let only: Only = source.parse_toml()?;
        Self::from_section(source, only.metrics.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<MetricsConfig, ConfigError> {
        MetricsConfig::from_file(&SourceFile::from_text("edge.toml", text))
    }

    #[test]
    fn absent_table_listens_on_localhost_9560() {
        let cfg = parse("[filter]\niface = \"eth0\"\n").unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:9560".parse().unwrap());
    }

    #[test]
    fn listen_address_is_read() {
        let cfg = parse("[metrics]\nlisten = \"[::1]:9100\"\n").unwrap();
        assert_eq!(cfg.listen, "[::1]:9100".parse().unwrap());
    }

    #[test]
    fn host_name_is_refused_with_file_and_line() {
        let err = parse("[metrics]\n\nlisten = \"localhost:9560\"\n").unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.to_string().starts_with("edge.toml:3:"), "{err}");
        assert!(err.reason.contains("not an IP address and port"), "{err}");
    }

    #[test]
    fn port_zero_is_refused() {
        let err = parse("[metrics]\nlisten = \"127.0.0.1:0\"\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.reason.contains("port 0"), "{err}");
    }

    #[test]
    fn unknown_key_is_refused() {
        let err = parse("[metrics]\nlisten_on = \"127.0.0.1:1\"\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.reason.contains("listen_on"), "{err}");
    }
}
