//! The control socket: how `dce-edge` commands (`routes reload`, and the
//! operator actions that follow it) talk to a running appliance and get a real answer, instead of
//! a signal sent to a pid read from a file and a guess from the metrics.
//!
//! A Unix stream socket in the run directory, root-only twice over: the
//! directory is created `0700` (and refused if someone else owns it or can
//! write to it), the socket is `0600`, and each connection's peer must be
//! root or the appliance's own user (`SO_PEERCRED`). One request per
//! connection: a JSON line in, a JSON line out. The control thread polls the
//! listener between its other duties; a request never blocks it for longer
//! than the bounded read of one line.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where the control socket is when the configuration does not say.
pub const DEFAULT_PATH: &str = "/run/dce-edge/control.sock";

/// The longest request line read (a ban note or a reason is short; a
/// `BanMany` batch of [`crate::feeds::BATCH`] networks fits).
pub const MAX_REQUEST: u64 = 16 * 1024;

/// How long a client may take to send its request line.
const READ_TIMEOUT: Duration = Duration::from_secs(1);

/// What a `dce-edge` command asks the running appliance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum ControlRequest {
    /// Are you there, and what are you running?
    Status,
    /// Read the route files again; a refused table keeps the running one.
    ReloadRoutes {
        /// Take a table without prefixes, or one that drops more than
        /// `[routes] reload_max_drop` of the running table's prefixes.
        #[serde(default)]
        force: bool,
    },
    /// Read the configuration's `[filter]` table again and apply it to the
    /// running XDP program (same program); a refused table keeps the
    /// running rules.
    FilterReload,
    /// Open the event log's file again by its name (after logrotate moved
    /// it away); lines written before stay in the old file.
    ReopenEvents,
    /// Read the TLS certificate, key and client CA files again (`[stream]`);
    /// a refused one keeps the running certificate.
    ReloadTls,
    /// Ban a source or network (operator's ban: never shortened by an
    /// automatic one).
    Ban {
        /// ADDRESS or ADDRESS/PREFIX.
        network: String,
        /// Seconds it lasts; `None` until unbanned.
        ttl_seconds: Option<u64>,
        /// A reason name (`manual`, `scanner`, ...).
        reason: String,
        /// The operator's note (at most 32 bytes).
        note: String,
    },
    /// Ban many networks at once (a blocklist feed, `dce-edge ban
    /// --import`): operator bans, each reported (banned, inside the
    /// allowlist, refused, or not fitting in the ban map).
    BanMany {
        /// ADDRESS or ADDRESS/PREFIX each.
        networks: Vec<String>,
        /// Seconds they last; `None` until unbanned.
        ttl_seconds: Option<u64>,
        /// A reason name (`manual`, `scanner`, ...).
        reason: String,
        /// The operator's note (at most 32 bytes), e.g. the feed's name.
        note: String,
        /// Which batch of an import this is (1-based) and how many there
        /// are: one event is logged for the whole import.
        #[serde(default)]
        part: Option<(u32, u32)>,
    },
    /// Lift the ban of exactly this network.
    Unban {
        /// ADDRESS or ADDRESS/PREFIX, as banned.
        network: String,
    },
    /// Trust a source or network (filter and proxy).
    Allow {
        /// ADDRESS or ADDRESS/PREFIX.
        network: String,
    },
    /// Stop trusting a network.
    Disallow {
        /// ADDRESS or ADDRESS/PREFIX, as allowed.
        network: String,
    },
    /// Withdraw the fleet's service address for maintenance (`on`), or
    /// announce it again.
    Drain {
        /// Drain (true) or undrain.
        on: bool,
    },
    /// This edge's view of its fleet; the answer's message is a JSON
    /// [`telemetry::stats::FleetReport`].
    FleetStatus,
    /// `dce-edge capture` started or ended on this process's filter (it
    /// runs on the pinned maps): one `capture` event in the log, which the
    /// loop owning the log writes ([`crate::events::capture_event`]).
    CaptureNote {
        /// Started (true) or ended.
        started: bool,
        /// The capturing process.
        pid: u32,
        /// What it captures, for a person.
        what: String,
        /// Drops written to its file (when it ended).
        #[serde(default)]
        written: u64,
        /// Matching drops the ring had no room for (when it ended).
        #[serde(default)]
        lost: u64,
    },
}

/// The appliance's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlResponse {
    /// Whether the request did what it asked.
    pub ok: bool,
    /// What happened, for a person (the reason when `ok` is false).
    pub message: String,
    /// What happened, for a program (a `BanMany` report), when there is more
    /// than the message says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl ControlResponse {
    /// A success with its message.
    pub fn ok(message: impl Into<String>) -> ControlResponse {
        ControlResponse {
            ok: true,
            message: message.into(),
            data: None,
        }
    }

    /// A refusal with its reason.
    pub fn refused(reason: impl Into<String>) -> ControlResponse {
        ControlResponse {
            ok: false,
            message: reason.into(),
            data: None,
        }
    }
}

/// Why the control socket could not be set up or reached.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The run directory is not safe to hold a root-only socket.
    #[error("control socket directory {dir}: {reason}")]
    UnsafeDirectory {
        /// The directory.
        dir: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Another live appliance answers on the socket.
    #[error("another dce-edge appliance already answers on {0}; stop it, or give this one its own [edge] control_socket")]
    InUse(PathBuf),
    /// A system call failed.
    #[error("control socket {path}: {what}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The appliance answered something that is not a response.
    #[error("control socket {path}: unreadable answer: {reason}")]
    BadAnswer {
        /// The socket path.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

fn io_err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(io::Error) -> ControlError + 'a {
    move |source| ControlError::Io {
        path: path.to_path_buf(),
        what,
        source,
    }
}

/// The listening end, owned by the control thread; removes its socket file
/// when dropped.
#[derive(Debug)]
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlServer {
    /// Creates the run directory if needed (root-only), refuses one that
    /// others own or can write, replaces a stale socket no one answers on,
    /// and listens.
    pub fn bind(path: impl Into<PathBuf>) -> Result<ControlServer, ControlError> {
        let path = path.into();
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir {
            safe_directory(dir)?;
        }
        if path.exists() {
            if UnixStream::connect(&path).is_ok() {
                return Err(ControlError::InUse(path));
            }
            std::fs::remove_file(&path).map_err(io_err(&path, "removing the stale socket"))?;
        }
        let listener = UnixListener::bind(&path).map_err(io_err(&path, "binding"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(io_err(&path, "making it root-only"))?;
        listener
            .set_nonblocking(true)
            .map_err(io_err(&path, "making it non-blocking"))?;
        Ok(ControlServer { listener, path })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answers every connection waiting now with `handle`; returns how many
    /// requests were handled. Never waits for a connection.
    pub fn poll(&mut self, mut handle: impl FnMut(ControlRequest) -> ControlResponse) -> usize {
        let mut handled = 0;
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return handled,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return handled,
            };
            if serve(stream, &mut handle).is_ok() {
                handled += 1;
            }
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One connection: check the peer, read a line, answer it.
fn serve(
    stream: UnixStream,
    handle: &mut impl FnMut(ControlRequest) -> ControlResponse,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let uid = sys::peer_uid(&stream)?;
    let response = if uid != 0 && uid != sys::effective_uid() {
        ControlResponse::refused(format!(
            "user {uid} may not control the appliance (root only)"
        ))
    } else {
        let mut line = String::new();
        BufReader::new(stream.take(MAX_REQUEST)).read_line(&mut line)?;
        match serde_json::from_str::<ControlRequest>(line.trim()) {
            Ok(request) => handle(request),
            Err(e) => ControlResponse::refused(format!("not a control request: {e}")),
        }
    };
    let mut out = serde_json::to_string(&response).map_err(io::Error::other)?;
    out.push('\n');
    writer.write_all(out.as_bytes())
}

/// Makes sure `dir` exists, belongs to this user and is writable by no one
/// else (a socket in a directory others can write could be swapped).
fn safe_directory(dir: &Path) -> Result<(), ControlError> {
    let unsafe_dir = |reason: String| ControlError::UnsafeDirectory {
        dir: dir.to_path_buf(),
        reason,
    };
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| unsafe_dir(format!("cannot create it: {e}"))),
        Err(e) => Err(unsafe_dir(format!("cannot read it: {e}"))),
        Ok(meta) => {
            if !meta.is_dir() {
                return Err(unsafe_dir(
                    "is not a directory (or is a symbolic link)".into(),
                ));
            }
            let me = sys::effective_uid();
            if meta.uid() != me {
                return Err(unsafe_dir(format!(
                    "belongs to user {}, not to this process's user {me}",
                    meta.uid()
                )));
            }
            if meta.mode() & 0o022 != 0 {
                return Err(unsafe_dir(format!(
                    "others may write to it (mode {:o}); chmod go-w it",
                    meta.mode() & 0o777
                )));
            }
            Ok(())
        }
    }
}

/// Sends `request` to the appliance listening at `path` and returns its
/// answer (the client side, for `dce-edge` commands).
pub fn request(
    path: &Path,
    request: &ControlRequest,
    timeout: Duration,
) -> Result<ControlResponse, ControlError> {
    let mut stream = UnixStream::connect(path).map_err(|e| ControlError::Io {
        path: path.to_path_buf(),
        what: "connecting (is the appliance running, and are you root?)",
        source: e,
    })?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(io_err(path, "setting a timeout"))?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(io_err(path, "setting a timeout"))?;
    let mut line = serde_json::to_string(request).map_err(|e| ControlError::BadAnswer {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .map_err(io_err(path, "sending the request"))?;
    let mut answer = String::new();
    BufReader::new(stream.take(MAX_REQUEST * 4))
        .read_line(&mut answer)
        .map_err(io_err(path, "reading the answer"))?;
    serde_json::from_str(answer.trim()).map_err(|e| ControlError::BadAnswer {
        path: path.to_path_buf(),
        reason: format!("{e}: {answer:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_in(dir: &Path) -> ControlServer {
        ControlServer::bind(dir.join("run").join("control.sock")).unwrap()
    }

    /// Answers one request on a thread of its own while the test acts as
    /// the client.
    fn answer_once(mut server: ControlServer) -> std::thread::JoinHandle<ControlServer> {
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                let n = server.poll(|r| match r {
                    ControlRequest::Status => ControlResponse::ok("running"),
                    ControlRequest::ReloadRoutes { .. } => {
                        ControlResponse::refused("prefixes.csv:3: no such group")
                    }
                    other => ControlResponse::refused(format!("not in this test: {other:?}")),
                });
                if n > 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            server
        })
    }

    #[test]
    fn a_request_gets_the_handlers_answer() {
        let tmp = tempfile::tempdir().unwrap();
        let server = server_in(tmp.path());
        let path = server.path().to_path_buf();
        let t = answer_once(server);
        let r = request(
            &path,
            &ControlRequest::ReloadRoutes { force: false },
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(r, ControlResponse::refused("prefixes.csv:3: no such group"));
        drop(t.join().unwrap());
        assert!(!path.exists(), "the socket file goes with the server");
    }

    #[test]
    fn the_run_directory_and_socket_are_root_only() {
        let tmp = tempfile::tempdir().unwrap();
        let server = server_in(tmp.path());
        let dir_mode = std::fs::metadata(tmp.path().join("run")).unwrap().mode() & 0o777;
        let sock_mode = std::fs::metadata(server.path()).unwrap().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert_eq!(sock_mode, 0o600);
    }

    #[test]
    fn a_directory_others_can_write_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("open");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = ControlServer::bind(dir.join("control.sock")).unwrap_err();
        assert!(err.to_string().contains("others may write"), "{err}");
    }

    #[test]
    fn a_second_appliance_on_the_same_socket_is_refused_and_a_stale_one_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let first = server_in(tmp.path());
        let path = first.path().to_path_buf();
        let err = ControlServer::bind(&path).unwrap_err();
        assert!(matches!(err, ControlError::InUse(_)), "{err}");
        drop(first);
        // A socket file left by a killed process: nobody answers, so it goes.
        let stale = UnixListener::bind(tmp.path().join("stale.sock"));
        drop(stale);
        let again = ControlServer::bind(tmp.path().join("stale.sock"));
        assert!(again.is_ok());
    }

    #[test]
    fn a_reload_request_without_force_reads_as_not_forced() {
        let r: ControlRequest = serde_json::from_str("{\"command\":\"reload_routes\"}").unwrap();
        assert_eq!(r, ControlRequest::ReloadRoutes { force: false });
        let r: ControlRequest = serde_json::from_str("{\"command\":\"filter_reload\"}").unwrap();
        assert_eq!(r, ControlRequest::FilterReload);
    }

    #[test]
    fn garbage_gets_a_refusal_not_a_hang() {
        let tmp = tempfile::tempdir().unwrap();
        let server = server_in(tmp.path());
        let path = server.path().to_path_buf();
        let t = answer_once(server);
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(b"{\"command\":\"format_disk\"}\n").unwrap();
        let mut answer = String::new();
        BufReader::new(s).read_line(&mut answer).unwrap();
        let r: ControlResponse = serde_json::from_str(answer.trim()).unwrap();
        assert!(!r.ok);
        assert!(r.message.contains("not a control request"), "{}", r.message);
        drop(t.join().unwrap());
    }
}
