//! `dce-edge sip check`: parse captured SIP datagrams from files and say, per
//! file, whether each is a valid message (and what it is) or why not.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;

use sip::{parse_strict, DialedNumber, MAX_MESSAGE_LEN};

/// The `dce-edge sip` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SipCommand {
    /// Parse each file as one SIP datagram and report whether it is valid.
    ///
    /// Exit status: 0 when every file is valid, 1 when any is invalid, 2 on a
    /// usage or I/O error.
    Check {
        /// Print one JSON object per line (keys: file, valid, kind, method,
        /// status, dialed, error, offset).
        #[arg(long)]
        json: bool,
        /// Files holding one SIP message each, with CRLF line endings.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Runs a `dce-edge sip` subcommand, printing to standard output.
pub fn run(command: SipCommand) -> ExitCode {
    match command {
        SipCommand::Check { json, files } => {
            let stdout = io::stdout();
            let mut out = stdout.lock();
            let status = check_files(&files, json, &mut out);
            ExitCode::from(status)
        }
    }
}

/// One file's outcome, as printed with `--json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// The file name as given.
    pub file: String,
    /// Whether the file holds a valid SIP message.
    pub valid: bool,
    /// `request` or `response` when valid.
    pub kind: Option<&'static str>,
    /// The request method.
    pub method: Option<String>,
    /// The response status code.
    pub status: Option<u16>,
    /// The dialed number of a request, when its Request-URI has one.
    pub dialed: Option<String>,
    /// The error kind (`bad_content_length`, ...) or `io` when the file
    /// could not be read.
    pub error: Option<String>,
    /// Byte offset of the error in the file.
    pub offset: Option<usize>,
}

/// Checks one datagram.
pub fn check_bytes(file: &str, bytes: &[u8]) -> CheckReport {
    let mut report = CheckReport {
        file: file.to_owned(),
        valid: false,
        kind: None,
        method: None,
        status: None,
        dialed: None,
        error: None,
        offset: None,
    };
    match parse_strict(bytes) {
        Ok(msg) => {
            report.valid = true;
            if let Some(m) = msg.method() {
                report.kind = Some("request");
                report.method = Some(m.to_string());
                let mut n = DialedNumber::new();
                if msg.dialed_number(&mut n).is_ok() {
                    report.dialed = Some(n.as_str().to_owned());
                }
            } else {
                report.kind = Some("response");
                report.status = msg.status();
            }
        }
        Err(e) => {
            report.error = Some(e.kind.name().to_owned());
            report.offset = Some(e.offset);
        }
    }
    report
}

fn read_datagram(path: &Path) -> io::Result<Vec<u8>> {
    // Read at most one byte more than a datagram can hold, so that a huge
    // file is reported as too large without being loaded whole.
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_MESSAGE_LEN as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Checks every file and writes one line per file to `out`. Returns the exit
/// status: 0 all valid, 1 some invalid, 2 some file could not be read.
pub fn check_files(files: &[PathBuf], json: bool, out: &mut dyn Write) -> u8 {
    let mut status = 0u8;
    for path in files {
        let name = path.display().to_string();
        let (line, file_status) = match read_datagram(path) {
            Ok(bytes) => {
                let report = check_bytes(&name, &bytes);
                let s = if report.valid { 0 } else { 1 };
                let line = if json {
                    serde_json::to_string(&report).unwrap_or_default()
                } else {
                    text_line(&report)
                };
                (line, s)
            }
            Err(e) => {
                // The reason goes to standard error so that `--json` lines
                // keep exactly the documented keys.
                eprintln!("{name}: cannot read: {e}");
                let report = CheckReport {
                    file: name.clone(),
                    valid: false,
                    kind: None,
                    method: None,
                    status: None,
                    dialed: None,
                    error: Some("io".to_owned()),
                    offset: None,
                };
                let line = if json {
                    serde_json::to_string(&report).unwrap_or_default()
                } else {
                    format!("{name}: error: cannot read: {e}")
                };
                (line, 2)
            }
        };
        status = status.max(file_status);
        if writeln!(out, "{line}").is_err() {
            return 2;
        }
    }
    status
}

fn text_line(r: &CheckReport) -> String {
    if r.valid {
        let what = match (r.method.as_deref(), r.status) {
            (Some(m), _) => format!("request {m}"),
            (None, Some(code)) => format!("response {code}"),
            (None, None) => "message".to_owned(),
        };
        match &r.dialed {
            Some(d) => format!("{}: valid: {what}, dialed {d}", r.file),
            None => format!("{}: valid: {what}", r.file),
        }
    } else {
        let kind = r.error.as_deref().unwrap_or("?");
        let description = sip::ErrorKind::from_name(kind)
            .map(|k| k.description())
            .unwrap_or("");
        format!(
            "{}: invalid: {kind} at byte {} ({description})",
            r.file,
            r.offset.unwrap_or(0)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &[u8] = b"OPTIONS sip:+44-20-7946-0000@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
        From: <sip:a@example.net>;tag=1\r\nTo: <sip:b@example.com>\r\n\
        Call-ID: x@y\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn valid_request_reports_method_and_dialed_number() {
        let r = check_bytes("a.sip", OPTIONS);
        assert!(r.valid);
        assert_eq!(r.kind, Some("request"));
        assert_eq!(r.method.as_deref(), Some("OPTIONS"));
        assert_eq!(r.dialed.as_deref(), Some("442079460000"));
        assert_eq!(
            text_line(&r),
            "a.sip: valid: request OPTIONS, dialed 442079460000"
        );
    }

    #[test]
    fn invalid_message_reports_kind_and_offset() {
        let r = check_bytes("b.sip", b"OPTIONS sip:a@b SIP/3.0\r\n\r\n");
        assert!(!r.valid);
        assert_eq!(r.error.as_deref(), Some("unsupported_version"));
        assert_eq!(r.offset, Some(16));
        assert!(text_line(&r).starts_with("b.sip: invalid: unsupported_version at byte 16"));
    }

    #[test]
    fn json_line_has_every_key() {
        let r = check_bytes("a.sip", OPTIONS);
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        for key in [
            "file", "valid", "kind", "method", "status", "dialed", "error", "offset",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
    }
}
