//! The `[events]` table: where the event log goes.
//!
//! ```toml
//! [events]
//! file = "-"                          # standard output (the default)
//! # file = "/var/log/dce-edge/events.jsonl"
//! ```
//!
//! A relative path is taken from the configuration file's folder, so the
//! same file means the same place whatever directory the edge starts in.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use config::{ConfigError, SourceFile};

/// The `[events]` table as written, before validation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSection {
    /// `file = "-"` for standard output, or a path (appended to).
    pub file: Option<toml::Spanned<String>>,
}

/// Where event lines are written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EventSink {
    /// Standard output, one line per event.
    #[default]
    Stdout,
    /// A file, created if missing and appended to (a SIEM tails it).
    File(PathBuf),
}

/// The validated `[events]` table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventsConfig {
    /// Where events go.
    pub sink: EventSink,
}

impl EventsConfig {
    /// Validates an `[events]` table read from `source` (absent: standard
    /// output). Errors name the file, the line and the reason.
    pub fn from_section(
        source: &SourceFile,
        section: Option<&EventsSection>,
    ) -> Result<Self, ConfigError> {
        let Some(file) = section.and_then(|s| s.file.as_ref()) else {
            return Ok(EventsConfig::default());
        };
        let value = file.get_ref().as_str();
        if value == "-" {
            return Ok(EventsConfig {
                sink: EventSink::Stdout,
            });
        }
        if value.trim().is_empty() {
            return Err(source.error_at(
                file.span(),
                "events file is empty: give a path, or \"-\" for standard output",
            ));
        }
        let path = source.resolve(Path::new(value));
        if value.ends_with('/') || path.is_dir() {
            return Err(source.error_at(
                file.span(),
                format!("events file {value:?} is a directory: name a file inside it"),
            ));
        }
        Ok(EventsConfig {
            sink: EventSink::File(path),
        })
    }

    /// Reads the `[events]` table of a configuration file that may hold
    /// other tables too.
    pub fn from_file(source: &SourceFile) -> Result<Self, ConfigError> {
        #[derive(Deserialize)]
        struct Only {
            events: Option<EventsSection>,
        }
        let only: Only = source.parse_toml()?;
        Self::from_section(source, only.events.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<EventsConfig, ConfigError> {
        EventsConfig::from_file(&SourceFile::from_text("conf/edge.toml", text))
    }

    #[test]
    fn absent_table_writes_to_stdout() {
        assert_eq!(parse("").unwrap().sink, EventSink::Stdout);
    }

    #[test]
    fn dash_is_stdout() {
        assert_eq!(
            parse("[events]\nfile = \"-\"\n").unwrap().sink,
            EventSink::Stdout
        );
    }

    #[test]
    fn relative_path_is_taken_from_the_config_folder() {
        assert_eq!(
            parse("[events]\nfile = \"events.jsonl\"\n").unwrap().sink,
            EventSink::File(PathBuf::from("conf/events.jsonl"))
        );
    }

    #[test]
    fn absolute_path_is_kept() {
        assert_eq!(
            parse("[events]\nfile = \"/var/log/e.jsonl\"\n")
                .unwrap()
                .sink,
            EventSink::File(PathBuf::from("/var/log/e.jsonl"))
        );
    }

    #[test]
    fn empty_path_is_refused_with_line() {
        let err = parse("[events]\nfile = \"\"\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.reason.contains("empty"), "{err}");
    }

    #[test]
    fn directory_is_refused() {
        let err = parse("[events]\nfile = \"/tmp/\"\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.reason.contains("directory"), "{err}");
    }
}
