//! Reading configuration files with errors that name the file, the line and
//! the reason. Every configuration section (filter, routes, profiles, the
//! appliance) reads its files through [`SourceFile`], so a person fixing a
//! refused file is always pointed at the exact place.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A refused configuration: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file that holds the problem.
    pub file: PathBuf,
    /// 1-based line; 0 when the problem is the file as a whole.
    pub line: usize,
    /// 1-based column; 0 when unknown.
    pub column: usize,
    /// What is wrong and, where possible, what is allowed.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (0, _) => write!(f, "{}: {}", self.file.display(), self.reason),
            (l, 0) => write!(f, "{}:{}: {}", self.file.display(), l, self.reason),
            (l, c) => write!(f, "{}:{}:{}: {}", self.file.display(), l, c, self.reason),
        }
    }
}

impl ConfigError {
    /// An error about a whole file (it cannot be read, it is empty, ...).
    pub fn file(file: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        ConfigError {
            file: file.into(),
            line: 0,
            column: 0,
            reason: reason.into(),
        }
    }

    /// An error at a 1-based line of a file.
    pub fn at_line(file: impl Into<PathBuf>, line: usize, reason: impl Into<String>) -> Self {
        ConfigError {
            file: file.into(),
            line,
            column: 0,
            reason: reason.into(),
        }
    }
}

/// A configuration file held in memory, so that byte spans (from `toml`'s
/// `Spanned` values or parser errors) can be turned into lines and columns.
#[derive(Debug, Clone)]
pub struct SourceFile {
    path: PathBuf,
    text: String,
}

/// The largest configuration file [`SourceFile::read`] takes: far more
/// than any hand-written file, small enough that a wrong path (a log, a
/// disk image) is refused instead of read into memory.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

impl SourceFile {
    /// Reads a UTF-8 file of at most [`MAX_FILE_BYTES`]; an unreadable,
    /// oversized, non-regular or non-UTF-8 file is a [`ConfigError`].
    pub fn read(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::read_bounded(path, MAX_FILE_BYTES)
    }

    /// Reads a UTF-8 file of at most `max_bytes`. Only regular files are
    /// read (a FIFO or a device would block or never end), and no more than
    /// `max_bytes + 1` bytes are ever read, whatever the file claims.
    pub fn read_bounded(path: impl AsRef<Path>, max_bytes: u64) -> Result<Self, ConfigError> {
        use std::io::Read;
        let path = path.as_ref();
        let cannot = |e: std::io::Error| ConfigError::file(path, format!("cannot read: {e}"));
        // Looked at before opening: opening a FIFO waits for a writer.
        if !std::fs::metadata(path).map_err(cannot)?.is_file() {
            return Err(ConfigError::file(path, "is not a regular file"));
        }
        let file = std::fs::File::open(path).map_err(cannot)?;
        let meta = file.metadata().map_err(cannot)?;
        if !meta.is_file() {
            return Err(ConfigError::file(path, "is not a regular file"));
        }
        let too_big = |n: u64| {
            ConfigError::file(
                path,
                format!("is {n} bytes; the limit is {max_bytes} (is this the right file?)"),
            )
        };
        if meta.len() > max_bytes {
            return Err(too_big(meta.len()));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.take(max_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(cannot)?;
        if bytes.len() as u64 > max_bytes {
            return Err(too_big(bytes.len() as u64));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            let (line, column) = line_column(&String::from_utf8_lossy(e.as_bytes()), at);
            ConfigError {
                file: path.into(),
                line,
                column,
                reason: "not valid UTF-8".into(),
            }
        })?;
        Ok(SourceFile {
            path: path.into(),
            text,
        })
    }

    /// A file whose text is already in memory (tests, stdin, generated tables).
    pub fn from_text(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        SourceFile {
            path: path.into(),
            text: text.into(),
        }
    }

    /// The file's path as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where a path written in this file points: a relative path is taken
    /// from the file's own directory (so a configuration and the files it
    /// names can move together), an absolute one as written.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        match self.path.parent() {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_path_buf(),
        }
    }

    /// The file's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// An error located at the start of a byte span of this file.
    pub fn error_at(&self, span: Range<usize>, reason: impl Into<String>) -> ConfigError {
        let (line, column) = line_column(&self.text, span.start);
        ConfigError {
            file: self.path.clone(),
            line,
            column,
            reason: reason.into(),
        }
    }

    /// An error at a 1-based line of this file.
    pub fn error_at_line(&self, line: usize, reason: impl Into<String>) -> ConfigError {
        ConfigError::at_line(self.path.clone(), line, reason)
    }

    /// Deserializes the file as TOML; syntax and type errors carry their line.
    pub fn parse_toml<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str(&self.text).map_err(|e| {
            let reason = e.message().to_string();
            match e.span() {
                Some(span) => self.error_at(span, reason),
                None => ConfigError::file(self.path.clone(), reason),
            }
        })
    }
}

/// 1-based line and column of a byte offset (clamped to the text).
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    (line, offset - line_start + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
        rate: toml::Spanned<u32>,
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("ab\ncd", 99), (2, 3));
    }

    #[test]
    fn toml_type_error_names_file_and_line() {
        let src = SourceFile::from_text("edge.toml", "name = \"x\"\nrate = \"fast\"\n");
        let err = src.parse_toml::<Sample>().unwrap_err();
        assert_eq!(err.file, PathBuf::from("edge.toml"));
        assert_eq!(err.line, 2);
        assert!(err.to_string().starts_with("edge.toml:2:"), "{err}");
    }

    #[test]
    fn spanned_value_error_points_at_the_value() {
        let src = SourceFile::from_text("edge.toml", "name = \"x\"\n\nrate = 0\n");
        let sample: Sample = src.parse_toml().unwrap();
        let err = src.error_at(sample.rate.span(), "rate must be at least 1");
        assert_eq!((err.line, err.column), (3, 8));
        assert_eq!(err.to_string(), "edge.toml:3:8: rate must be at least 1");
    }

    #[test]
    fn a_file_over_the_bound_or_not_a_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("dce-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big.toml");
        std::fs::write(&big, "x = 1\n".repeat(100)).unwrap();
        let err = SourceFile::read_bounded(&big, 64).unwrap_err();
        assert!(
            err.reason.contains("600 bytes") && err.reason.contains("64"),
            "{err}"
        );
        assert!(SourceFile::read_bounded(&big, 600).is_ok());
        let err = SourceFile::read(&dir).unwrap_err();
        assert!(err.reason.contains("not a regular file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unreadable_file_is_a_file_error() {
        let err = SourceFile::read("/nonexistent/dce-edge.toml").unwrap_err();
        assert_eq!(err.line, 0);
        assert!(err.reason.starts_with("cannot read"), "{err}");
    }
}
