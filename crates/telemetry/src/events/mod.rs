//! The event log a SOC feeds to its SIEM: one JSON line per thing that
//! changed (ban, unban, allowlist change, route reload, attach-mode fallback,
//! target health change, start and stop), with `time` (RFC 3339 UTC with
//! milliseconds), `event`, `subject`, `reason` and a `details` object.
//!
//! Threads: the [`EventLog`] is owned by the control thread and written
//! without locks. Other control-side threads (the target prober, a reload
//! watcher) get an [`EventSender`]: it stamps the time and queues the event
//! on a bounded channel without ever blocking; the control thread writes the
//! queue out with [`EventLog::drain`] on each tick. An event that finds the
//! queue full is counted, and the count is written as an `events_lost` event
//! on the next drain, so no loss is silent. Workers never emit events: their
//! abuse signals reach the control thread first, which decides and logs.

mod config;
mod time;

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use config::{EventSink, EventsConfig, EventsSection};
pub use time::rfc3339_millis;

/// What happened; written as the `event` field, in snake case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The edge started (subject: the interface or `dce-edge`).
    Start,
    /// The edge is stopping.
    Stop,
    /// A source was put in the XDP ban map.
    Ban,
    /// A ban was lifted (expired or removed by hand).
    Unban,
    /// An operator imported a blocklist feed; `details` counts what was
    /// banned, skipped and what did not fit.
    BanImport,
    /// A prefix was added to the allowlist.
    AllowlistAdd,
    /// A prefix was removed from the allowlist.
    AllowlistRemove,
    /// A route table reload was validated and handed to the workers.
    RouteReloadAccepted,
    /// A route table reload was refused; the running table stays.
    RouteReloadRefused,
    /// A `[filter]` reload was applied to the running XDP program (same
    /// program, new rules); `details` lists what changed.
    FilterReloadAccepted,
    /// A `[filter]` reload was refused; the running rules stay.
    FilterReloadRefused,
    /// Native XDP attach failed and the filter runs in generic (slow) mode.
    AttachFallback,
    /// An upstream target started answering probes again.
    TargetUp,
    /// An upstream target stopped answering probes.
    TargetDown,
    /// Events were queued faster than the control thread wrote them and
    /// some were lost; `details.count` says how many.
    EventsLost,
    /// An emergency call was forwarded (subject: the caller; details: the
    /// target).
    EmergencyCall,
    /// An operator's `dce-edge capture` started or ended (subject: its
    /// process id; reason: `started` or `ended`; details: what it
    /// captures, and when it ended the drops written and lost).
    Capture,
    /// The edge announced the fleet's service address (subject: the edge).
    Announce,
    /// The edge withdrew the service address (reason: why).
    Withdraw,
    /// The routing daemon could not be told what to announce (reason: the
    /// error), or can be again (`reachable`).
    RoutingDaemon,
    /// The fleet's bus was lost: the edge runs on local state alone.
    BusDown,
    /// The bus is back and the shared state was read again.
    BusUp,
    /// Connections to the SIP over TCP/TLS listeners were refused by the
    /// per-source or the total cap: one summary per window (subject: the
    /// source refused most; details: how many by each cap, from how many
    /// sources), never one line per connection.
    ConnectionsRefused,
}

/// One event, before it is stamped and written.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// What it happened to: an address or prefix, a file, an interface, a
    /// target.
    pub subject: String,
    /// Why, in a word or a sentence (`scanner`, `expired`, the reload error).
    pub reason: String,
    /// Anything else, as a JSON object.
    pub details: Map<String, Value>,
}

impl Event {
    /// An event with no details yet.
    pub fn new(kind: EventKind, subject: impl Into<String>, reason: impl Into<String>) -> Self {
        Event {
            kind,
            subject: subject.into(),
            reason: reason.into(),
            details: Map::new(),
        }
    }

    /// Adds one detail.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_string(), value.into());
        self
    }

    /// The edge started in `role` (`appliance`, `filter`) on `interface`.
    pub fn start(version: &str, role: &str, interface: Option<&str>) -> Self {
        Event::new(EventKind::Start, interface.unwrap_or("dce-edge"), "started")
            .with("version", version)
            .with("role", role)
    }

    /// The edge is stopping, because of `reason` (`signal`, `error: ...`).
    pub fn stop(reason: &str) -> Self {
        Event::new(EventKind::Stop, "dce-edge", reason)
    }

    /// `source` banned for `seconds` because of `reason` (`scanner`, `flood`,
    /// `auth_failure`, `extension_scan`, `not_found`, `manual`).
    pub fn ban(source: &str, reason: &str, seconds: u64) -> Self {
        Event::new(EventKind::Ban, source, reason).with("seconds", seconds)
    }

    /// The ban on `source` lifted (`expired` or `manual`).
    pub fn unban(source: &str, reason: &str) -> Self {
        Event::new(EventKind::Unban, source, reason)
    }

    /// `prefix` added to the allowlist (`reason`: `manual`, `config`).
    pub fn allowlist_add(prefix: &str, reason: &str) -> Self {
        Event::new(EventKind::AllowlistAdd, prefix, reason)
    }

    /// `prefix` removed from the allowlist.
    pub fn allowlist_remove(prefix: &str, reason: &str) -> Self {
        Event::new(EventKind::AllowlistRemove, prefix, reason)
    }

    /// The route table in `file` accepted as `version` with `prefixes`.
    pub fn route_reload_accepted(file: &str, version: u64, prefixes: u64) -> Self {
        Event::new(EventKind::RouteReloadAccepted, file, "valid")
            .with("version", version)
            .with("prefixes", prefixes)
    }

    /// The route table in `file` refused with `error` (file, line, reason);
    /// `kept_version` still runs.
    pub fn route_reload_refused(file: &str, error: &str, kept_version: u64) -> Self {
        Event::new(EventKind::RouteReloadRefused, file, error).with("kept_version", kept_version)
    }

    /// XDP on `interface`: `requested` mode refused by the kernel with
    /// `error`, running in `actual` mode instead.
    pub fn attach_fallback(interface: &str, requested: &str, actual: &str, error: &str) -> Self {
        Event::new(EventKind::AttachFallback, interface, error)
            .with("requested", requested)
            .with("actual", actual)
    }

    /// `target` of route `group` changed health (`reason`: what the prober
    /// saw, e.g. `3 probes unanswered`, `probe answered`).
    pub fn target_health(group: &str, target: &str, up: bool, reason: &str) -> Self {
        let kind = if up {
            EventKind::TargetUp
        } else {
            EventKind::TargetDown
        };
        Event::new(kind, target, reason).with("group", group)
    }
}

/// One written line, borrowed from the event.
#[derive(Serialize)]
struct Line<'a> {
    time: &'a str,
    event: EventKind,
    subject: &'a str,
    reason: &'a str,
    details: &'a Map<String, Value>,
}

/// One line as read back (tests, tools that tail the log).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EventLine {
    /// RFC 3339 UTC with milliseconds.
    pub time: String,
    /// What happened.
    pub event: EventKind,
    /// What it happened to.
    pub subject: String,
    /// Why.
    pub reason: String,
    /// Anything else.
    pub details: Map<String, Value>,
}

/// Why events could not be written.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The events file could not be opened.
    #[error("cannot open events file {path}: {reason}")]
    Open {
        /// The file.
        path: PathBuf,
        /// What the system said.
        reason: String,
    },
    /// A line could not be written (disk full, pipe closed).
    #[error("cannot write {event:?} event to {sink}: {reason}")]
    Write {
        /// Where the log goes.
        sink: String,
        /// The event that was not written.
        event: EventKind,
        /// What the system said.
        reason: String,
    },
}

/// The mode of a new event log: the owner writes, its group (a SIEM
/// shipper's) reads, others nothing.
pub const LOG_MODE: u32 = 0o640;

/// Opens (creating if missing, mode [`LOG_MODE`]) an events file for
/// appending: never through a symbolic link, only a regular file, and made
/// unreadable to others if it was not (the log names the sources the edge
/// banned and the operators' actions).
fn open_file(path: &std::path::Path) -> Result<std::fs::File, EventsError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let fail = |reason: String| EventsError::Open {
        path: path.to_path_buf(),
        reason,
    };
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(LOG_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                fail("is a symbolic link; refusing to follow it".into())
            } else {
                fail(e.to_string())
            }
        })?;
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("is not a regular file".into()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o007 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(mode & LOG_MODE))
            .map_err(|e| fail(format!("cannot make it unreadable to others: {e}")))?;
    }
    Ok(file)
}

/// Events queued by [`EventSender`]s before the control thread drains them.
pub const QUEUE_CAPACITY: usize = 4096;

/// Queues events from control-side threads other than the log's owner.
/// Cloneable; never blocks.
#[derive(Debug, Clone)]
pub struct EventSender {
    tx: Sender<(SystemTime, Event)>,
    lost: Arc<AtomicU64>,
}

impl EventSender {
    /// Queues `event`, stamped now. When the queue is full the event is
    /// counted as lost (reported by the next drain) and `false` returned.
    pub fn send(&self, event: Event) -> bool {
        match self.tx.try_send((SystemTime::now(), event)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.lost.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

/// The event log, owned by the control thread.
pub struct EventLog {
    out: BufWriter<Box<dyn Write + Send>>,
    sink: String,
    /// The file, when the log goes to one (what [`EventLog::reopen`] opens).
    path: Option<PathBuf>,
    tx: Sender<(SystemTime, Event)>,
    rx: Receiver<(SystemTime, Event)>,
    lost: Arc<AtomicU64>,
    written: u64,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog")
            .field("sink", &self.sink)
            .field("written", &self.written)
            .finish()
    }
}

impl EventLog {
    /// Opens the sink the configuration names (a file is created if missing
    /// and appended to). The log names attackers' and operators' addresses
    /// and every operator action: a new file is `0640`, an existing one
    /// others can read is narrowed to that, and a symbolic link or anything
    /// but a regular file at the path is refused (a root process appending
    /// through a planted link could grow any file on the box).
    pub fn open(config: &EventsConfig) -> Result<Self, EventsError> {
        match &config.sink {
            EventSink::Stdout => Ok(Self::to_writer("stdout", std::io::stdout())),
            EventSink::File(path) => {
                let mut log = Self::to_writer(&path.display().to_string(), open_file(path)?);
                log.path = Some(path.clone());
                Ok(log)
            }
        }
    }

    /// Opens the log's file again by its name, so that lines go to a new
    /// file after logrotate moved the old one away (the old file gets
    /// everything written before). Standard output stays as it is. On
    /// failure the log keeps writing where it wrote before.
    pub fn reopen(&mut self) -> Result<Option<&std::path::Path>, EventsError> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let file = open_file(path)?;
        // What is buffered belongs to the old file.
        let _ = self.out.flush();
        self.out = BufWriter::new(Box::new(file));
        Ok(self.path.as_deref())
    }

    /// A log writing to any writer; `sink` names it in errors.
    pub fn to_writer(sink: &str, writer: impl Write + Send + 'static) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE_CAPACITY);
        EventLog {
            out: BufWriter::new(Box::new(writer)),
            sink: sink.to_string(),
            path: None,
            tx,
            rx,
            lost: Arc::new(AtomicU64::new(0)),
            written: 0,
        }
    }

    /// A sender for another control-side thread.
    pub fn sender(&self) -> EventSender {
        EventSender {
            tx: self.tx.clone(),
            lost: self.lost.clone(),
        }
    }

    /// Writes `event` stamped now, and flushes it.
    pub fn write(&mut self, event: &Event) -> Result<(), EventsError> {
        self.write_at(event, SystemTime::now())
    }

    /// Writes `event` stamped `at`, and flushes it (a SIEM tailing the file
    /// sees every event as soon as it happens).
    pub fn write_at(&mut self, event: &Event, at: SystemTime) -> Result<(), EventsError> {
        let time = rfc3339_millis(at);
        let line = Line {
            time: &time,
            event: event.kind,
            subject: &event.subject,
            reason: &event.reason,
            details: &event.details,
        };
        let result = serde_json::to_writer(&mut self.out, &line)
            .map_err(std::io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"))
            .and_then(|()| self.out.flush());
        result.map_err(|e| EventsError::Write {
            sink: self.sink.clone(),
            event: event.kind,
            reason: e.to_string(),
        })?;
        self.written += 1;
        Ok(())
    }

    /// Writes every event the senders queued, in order, then an
    /// `events_lost` event if any were lost since the last drain. Returns
    /// how many lines were written.
    pub fn drain(&mut self) -> Result<usize, EventsError> {
        let mut n = 0;
        while let Ok((at, event)) = self.rx.try_recv() {
            self.write_at(&event, at)?;
            n += 1;
        }
        let lost = self.lost.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let event = Event::new(EventKind::EventsLost, "event queue", "queue full")
                .with("count", lost)
                .with("capacity", QUEUE_CAPACITY as u64);
            if let Err(e) = self.write(&event) {
                // Keep the count for the next try.
                self.lost.fetch_add(lost, Ordering::Relaxed);
                return Err(e);
            }
            n += 1;
        }
        Ok(n)
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::{Duration, UNIX_EPOCH};

    /// A writer tests can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn lines(&self) -> Vec<EventLine> {
            let bytes = self.0.lock().unwrap().clone();
            String::from_utf8(bytes)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        }
    }

    #[test]
    fn ban_line_has_every_field() {
        let out = Shared::default();
        let mut log = EventLog::to_writer("test", out.clone());
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_042);
        log.write_at(&Event::ban("198.18.0.9", "scanner", 600), at)
            .unwrap();
        let raw = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            raw,
            "{\"time\":\"2023-11-14T22:13:20.042Z\",\"event\":\"ban\",\"subject\":\"198.18.0.9\",\"reason\":\"scanner\",\"details\":{\"seconds\":600}}\n"
        );
    }

    #[test]
    fn every_kind_writes_one_parseable_line() {
        let out = Shared::default();
        let mut log = EventLog::to_writer("test", out.clone());
        let events = [
            Event::start("0.1.0", "filter", Some("eth0")),
            Event::ban("198.18.0.9", "scanner", 600),
            Event::unban("198.18.0.9", "expired"),
            Event::allowlist_add("198.18.5.0/24", "manual"),
            Event::allowlist_remove("198.18.5.0/24", "manual"),
            Event::route_reload_accepted("routes.toml", 4, 1200),
            Event::route_reload_refused(
                "routes.toml",
                "routes.toml:7: prefix \"12a\" is not digits",
                4,
            ),
            Event::attach_fallback("eth0", "native", "generic", "driver has no native XDP"),
            Event::target_health(
                "carrier_a",
                "198.18.1.10:5060",
                false,
                "3 probes unanswered",
            ),
            Event::target_health("carrier_a", "198.18.1.10:5060", true, "probe answered"),
            Event::stop("signal"),
        ];
        for e in &events {
            log.write(e).unwrap();
        }
        let lines = out.lines();
        assert_eq!(lines.len(), events.len());
        for (line, event) in lines.iter().zip(&events) {
            assert_eq!(line.event, event.kind);
            assert_eq!(line.subject, event.subject);
            assert_eq!(line.reason, event.reason);
            assert_eq!(line.details, event.details);
            assert_eq!(
                line.time.len(),
                "2023-11-14T22:13:20.042Z".len(),
                "{}",
                line.time
            );
            assert!(line.time.ends_with('Z'));
        }
        assert_eq!(lines[5].details["version"], 4);
        assert_eq!(lines[6].details["kept_version"], 4);
        assert_eq!(lines[8].event, EventKind::TargetDown);
        assert_eq!(log.written(), events.len() as u64);
    }

    #[test]
    fn events_from_other_threads_are_written_on_drain_with_their_time() {
        let out = Shared::default();
        let mut log = EventLog::to_writer("test", out.clone());
        let sender = log.sender();
        std::thread::spawn(move || {
            assert!(sender.send(Event::target_health("g", "t:5060", false, "down")));
        })
        .join()
        .unwrap();
        assert!(out.lines().is_empty());
        assert_eq!(log.drain().unwrap(), 1);
        assert_eq!(out.lines()[0].event, EventKind::TargetDown);
    }

    #[test]
    fn a_full_queue_is_reported_as_events_lost() {
        let out = Shared::default();
        let mut log = EventLog::to_writer("test", out.clone());
        let sender = log.sender();
        for i in 0..QUEUE_CAPACITY + 3 {
            sender.send(Event::ban(
                &format!("198.18.{}.{}", i / 256, i % 256),
                "flood",
                60,
            ));
        }
        assert_eq!(log.drain().unwrap(), QUEUE_CAPACITY + 1);
        let lines = out.lines();
        let last = lines.last().unwrap();
        assert_eq!(last.event, EventKind::EventsLost);
        assert_eq!(last.details["count"], 3);
        assert_eq!(log.drain().unwrap(), 0);
    }

    #[test]
    fn file_sink_appends_lines() {
        let dir = std::env::temp_dir().join(format!("dce-events-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.jsonl");
        let _ = std::fs::remove_file(&path);
        let config = EventsConfig {
            sink: EventSink::File(path.clone()),
        };
        for _ in 0..2 {
            let mut log = EventLog::open(&config).unwrap();
            log.write(&Event::stop("test")).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(text.lines().count(), 2);
    }

    #[test]
    fn the_log_is_not_world_readable_and_a_planted_link_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("dce-events-mode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let fresh = dir.join("fresh.jsonl");
        EventLog::open(&EventsConfig {
            sink: EventSink::File(fresh.clone()),
        })
        .unwrap();
        assert_eq!(mode(&fresh) & 0o007, 0, "{:o}", mode(&fresh));
        let old = dir.join("old.jsonl");
        std::fs::write(&old, "").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o666)).unwrap();
        EventLog::open(&EventsConfig {
            sink: EventSink::File(old.clone()),
        })
        .unwrap();
        assert_eq!(mode(&old), 0o640);
        let target = dir.join("target");
        std::fs::write(&target, "x").unwrap();
        let link = dir.join("link.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = EventLog::open(&EventsConfig {
            sink: EventSink::File(link),
        })
        .unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reopen_after_a_rotation_writes_to_a_new_file_and_leaves_the_old_one_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let rotated = dir.path().join("events.jsonl.1");
        let config = EventsConfig {
            sink: EventSink::File(path.clone()),
        };
        let mut log = EventLog::open(&config).unwrap();
        log.write(&Event::start("0.1.0", "appliance", Some("eth0")))
            .unwrap();
        // logrotate renames the file; the log still holds the old one open.
        std::fs::rename(&path, &rotated).unwrap();
        log.write(&Event::ban("198.18.0.9", "scanner", 600))
            .unwrap();
        assert_eq!(log.reopen().unwrap(), Some(path.as_path()));
        log.write(&Event::stop("signal")).unwrap();
        let kinds = |p: &std::path::Path| -> Vec<EventKind> {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<EventLine>(l).unwrap().event)
                .collect()
        };
        assert_eq!(kinds(&rotated), [EventKind::Start, EventKind::Ban]);
        assert_eq!(kinds(&path), [EventKind::Stop]);
    }

    #[test]
    fn reopen_of_standard_output_changes_nothing() {
        let mut log = EventLog::open(&EventsConfig::default()).unwrap();
        assert_eq!(log.reopen().unwrap(), None);
    }

    #[test]
    fn a_failed_reopen_keeps_writing_to_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("logs");
        std::fs::create_dir(&sub).unwrap();
        let path = sub.join("events.jsonl");
        let config = EventsConfig {
            sink: EventSink::File(path.clone()),
        };
        let mut log = EventLog::open(&config).unwrap();
        // The folder moved away: the name cannot be opened again.
        let moved = dir.path().join("moved");
        std::fs::rename(&sub, &moved).unwrap();
        let err = log.reopen().unwrap_err();
        assert!(err.to_string().contains("events.jsonl"), "{err}");
        log.write(&Event::stop("signal")).unwrap();
        let text = std::fs::read_to_string(moved.join("events.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 1);
    }

    #[test]
    fn unopenable_file_names_the_path() {
        let config = EventsConfig {
            sink: EventSink::File("/nonexistent/dir/events.jsonl".into()),
        };
        let err = EventLog::open(&config).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/dir/events.jsonl"),
            "{err}"
        );
    }
}
