//! BIRD 2's control socket (the protocol `birdc` speaks), and the thread
//! that keeps the service routes announced or withdrawn as the control
//! thread decides.
//!
//! The protocol: a Unix stream socket; BIRD greets with `0001 BIRD 2.0.12
//! ready.`; each request is one line, a `birdc` command; each reply is
//! lines `DDDD-text` (more follow) ending in one `DDDD text` (the code, a
//! space); a line starting with a space continues the previous code. Codes
//! 0xxx are done, 1xxx data, 8xxx runtime errors, 9xxx syntax errors (an
//! unknown protocol name is a 9001 syntax error).
//!
//! `enable P` and `disable P` are idempotent (`0010 already enabled`), so
//! the driver simply says what it wants every second: that also puts things
//! right after BIRD restarts, or `birdc configure` resets what was enabled.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long one command may take before BIRD counts as unreachable.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the driver says again what it wants.
const REASSERT_EVERY: Duration = Duration::from_secs(1);

/// One reply: its lines as (code, text); continuation lines carry the code
/// of the line they continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The lines.
    pub lines: Vec<(u16, String)>,
}

impl Reply {
    /// The first runtime or syntax error line, if any.
    pub fn error(&self) -> Option<&(u16, String)> {
        self.lines.iter().find(|(c, _)| *c >= 8000)
    }
}

/// A connection to BIRD's control socket.
pub struct Bird {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    greeting: String,
}

/// `DDDD-` or `DDDD ` (or a bare `DDDD`): the code and whether the reply
/// ends with this line.
fn parse_code(line: &str) -> Option<(u16, bool)> {
    let b = line.as_bytes();
    if b.len() < 4 || !b[..4].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = line[..4].parse().ok()?;
    match b.get(4) {
        None | Some(b' ') => Some((code, true)),
        Some(b'-') => Some((code, false)),
        _ => None,
    }
}

impl Bird {
    /// Connects and reads the greeting.
    pub fn connect(path: &Path) -> io::Result<Bird> {
        let s = UnixStream::connect(path)?;
        s.set_read_timeout(Some(COMMAND_TIMEOUT))?;
        s.set_write_timeout(Some(COMMAND_TIMEOUT))?;
        let mut bird = Bird {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
            greeting: String::new(),
        };
        let hello = bird.read_reply()?;
        bird.greeting = hello.lines.first().map(|l| l.1.clone()).unwrap_or_default();
        Ok(bird)
    }

    /// What BIRD said when the connection opened (`BIRD 2.0.12 ready.`).
    pub fn greeting(&self) -> &str {
        &self.greeting
    }

    fn read_reply(&mut self) -> io::Result<Reply> {
        let mut lines = Vec::new();
        let mut last = 0u16;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "BIRD closed the control socket",
                ));
            }
            if lines.len() > 10_000 {
                return Err(io::Error::other("BIRD's reply is implausibly long"));
            }
            let line = line.trim_end_matches(['\n', '\r']);
            match parse_code(line) {
                Some((code, last_line)) => {
                    lines.push((code, line.get(5..).unwrap_or("").to_string()));
                    last = code;
                    if last_line {
                        return Ok(Reply { lines });
                    }
                }
                None => lines.push((last, line.strip_prefix(' ').unwrap_or(line).to_string())),
            }
        }
    }

    /// Sends one command line and reads its whole reply.
    pub fn command(&mut self, line: &str) -> io::Result<Reply> {
        if line.contains(['\n', '\r']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a BIRD command is one line",
            ));
        }
        self.writer.write_all(format!("{line}\n").as_bytes())?;
        self.read_reply()
    }

    /// `enable P` or `disable P`; an error reply becomes an error naming it.
    pub fn set_protocol(&mut self, protocol: &str, enabled: bool) -> io::Result<()> {
        let verb = if enabled { "enable" } else { "disable" };
        let reply = self.command(&format!("{verb} {protocol}"))?;
        match reply.error() {
            None => Ok(()),
            Some((code, text)) => Err(io::Error::other(format!(
                "BIRD refused `{verb} {protocol}` ({code} {text}); is there a protocol {protocol} in bird.conf?"
            ))),
        }
    }
}

/// What the driver thread last managed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BirdReport {
    /// What it was asked for.
    pub wanted: bool,
    /// What BIRD was last told successfully (`None` before the first
    /// success).
    pub applied: Option<bool>,
    /// Why the last attempt failed, if it did.
    pub error: Option<String>,
}

/// The thread that talks to BIRD, so that a slow or stopped BIRD never
/// holds up the control thread.
pub struct BirdDriver {
    wanted: Sender<bool>,
    reports: Receiver<BirdReport>,
    last: BirdReport,
    thread: Option<JoinHandle<()>>,
}

impl BirdDriver {
    /// Starts the thread; it withdraws (disables the protocols) until told
    /// otherwise.
    pub fn start(socket: PathBuf, protocols: Vec<String>) -> io::Result<BirdDriver> {
        let (wanted_tx, wanted_rx) = mpsc::channel();
        let (report_tx, report_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("dce-bird".into())
            .spawn(move || drive(&socket, &protocols, &wanted_rx, &report_tx))?;
        Ok(BirdDriver {
            wanted: wanted_tx,
            reports: report_rx,
            last: BirdReport {
                wanted: false,
                applied: None,
                error: None,
            },
            thread: Some(thread),
        })
    }

    /// Asks for the service routes to be announced (`true`) or withdrawn.
    pub fn want(&mut self, announce: bool) {
        self.last.wanted = announce;
        let _ = self.wanted.send(announce);
    }

    /// The latest report (reads what the thread sent since the last call).
    pub fn report(&mut self) -> &BirdReport {
        while let Ok(r) = self.reports.try_recv() {
            self.last = r;
        }
        &self.last
    }

    /// Withdraws, waits up to `timeout` for BIRD to confirm, and stops the
    /// thread. True when BIRD confirmed the withdrawal.
    pub fn stop(mut self, timeout: Duration) -> bool {
        self.want(false);
        let deadline = Instant::now() + timeout;
        let mut confirmed = false;
        while Instant::now() < deadline {
            match self.reports.recv_timeout(Duration::from_millis(50)) {
                Ok(r) => {
                    confirmed = r.applied == Some(false) && !r.wanted;
                    if confirmed {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        // Dropping the sender ends the thread at its next wait.
        let thread = self.thread.take();
        drop(self);
        if confirmed {
            if let Some(t) = thread {
                let _ = t.join();
            }
        }
        confirmed
    }
}

fn drive(
    socket: &Path,
    protocols: &[String],
    wanted: &Receiver<bool>,
    reports: &Sender<BirdReport>,
) {
    let mut want = false;
    let mut bird: Option<Bird> = None;
    loop {
        let mut report = BirdReport {
            wanted: want,
            applied: None,
            error: None,
        };
        let result = (|| -> io::Result<()> {
            if bird.is_none() {
                bird = Some(Bird::connect(socket).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot reach BIRD at {}: {e}", socket.display()),
                    )
                })?);
            }
            let b = bird.as_mut().expect("connected above");
            for p in protocols {
                b.set_protocol(p, want)?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => report.applied = Some(want),
            Err(e) => {
                // A broken connection is made again next time.
                bird = None;
                report.error = Some(e.to_string());
            }
        }
        if reports.send(report).is_err() {
            return;
        }
        // Wait for a new wish or the next reassertion; take the latest of
        // several wishes.
        match wanted.recv_timeout(REASSERT_EVERY) {
            Ok(w) => {
                want = w;
                while let Ok(w) = wanted.try_recv() {
                    want = w;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                // The appliance is gone: leave the routes withdrawn.
                if want {
                    if let Some(b) = bird.as_mut() {
                        for p in protocols {
                            let _ = b.set_protocol(p, false);
                        }
                    }
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A stand-in for BIRD: answers like 2.0.12 does, records the commands.
    fn fake_bird(dir: &Path, commands: usize) -> (PathBuf, JoinHandle<Vec<String>>) {
        let path = dir.join("bird.ctl");
        let listener = UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            w.write_all(b"0001 BIRD 2.0.12 ready.\n").unwrap();
            let mut seen = Vec::new();
            let mut enabled = std::collections::HashSet::new();
            for _ in 0..commands {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                let line = line.trim().to_string();
                let answer = match line.split_once(' ') {
                    Some(("enable", p)) if p.starts_with("svc") => {
                        if enabled.insert(p.to_string()) {
                            format!("0011-{p}: enabled\n0000 \n")
                        } else {
                            format!("0010-{p}: already enabled\n0000 \n")
                        }
                    }
                    Some(("disable", p)) if p.starts_with("svc") => {
                        if enabled.remove(p) {
                            format!("0009-{p}: disabled\n0000 \n")
                        } else {
                            format!("0008-{p}: already disabled\n0000 \n")
                        }
                    }
                    Some(("show", _)) => "2002-Name       Proto      Table      State  Since         Info\n1002-svc4       Static     master4    up     2026-12-06\n svc6       Static     master6    up     2026-12-06\n0000 \n".into(),
                    _ => "9001 syntax error, unexpected CF_SYM_UNDEFINED\n".into(),
                };
                w.write_all(answer.as_bytes()).unwrap();
                seen.push(line);
            }
            seen
        });
        (path, t)
    }

    #[test]
    fn replies_are_read_to_their_last_line_with_continuations() {
        let dir = tempfile::tempdir().unwrap();
        let (path, t) = fake_bird(dir.path(), 3);
        let mut b = Bird::connect(&path).unwrap();
        assert_eq!(b.greeting(), "BIRD 2.0.12 ready.");
        let r = b.command("show protocols").unwrap();
        assert_eq!(r.lines.len(), 4);
        assert_eq!(
            r.lines[2],
            (
                1002,
                "svc6       Static     master6    up     2026-12-06".into()
            )
        );
        assert_eq!(r.error(), None);
        b.set_protocol("svc4", true).unwrap();
        let e = b.set_protocol("nosuch", false).unwrap_err();
        assert!(e.to_string().contains("9001"), "{e}");
        assert_eq!(
            t.join().unwrap(),
            ["show protocols", "enable svc4", "disable nosuch"]
        );
    }

    #[test]
    fn a_command_with_a_line_break_is_refused_before_it_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let (path, t) = fake_bird(dir.path(), 1);
        let mut b = Bird::connect(&path).unwrap();
        assert!(b.command("disable svc4\nshutdown").is_err());
        drop(b);
        assert!(t.join().unwrap().is_empty());
    }

    #[test]
    fn the_driver_withdraws_first_then_announces_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let (path, t) = fake_bird(dir.path(), 4);
        let mut d = BirdDriver::start(path, vec!["svc4".into(), "svc6".into()]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while d.report().applied != Some(false) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        d.want(true);
        while d.report().applied != Some(true) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let r = d.report().clone();
        assert_eq!(r.applied, Some(true), "{r:?}");
        let seen = t.join().unwrap();
        assert_eq!(
            seen,
            ["disable svc4", "disable svc6", "enable svc4", "enable svc6"]
        );
        // The fake is gone: the next attempt reports BIRD unreachable.
        while d.report().error.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(d.report().error.is_some());
    }

    #[test]
    fn an_unreachable_bird_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = BirdDriver::start(dir.path().join("none.ctl"), vec!["svc4".into()]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while d.report().error.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let e = d.report().error.clone().unwrap();
        assert!(e.contains("cannot reach BIRD"), "{e}");
        assert!(!d.stop(Duration::from_millis(100)));
    }
}
