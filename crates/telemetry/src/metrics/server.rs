//! The HTTP side of the metrics endpoint: one thread on the control side
//! (never a worker) serving `/metrics` and `/snapshot.json` with `tiny_http`.
//!
//! The server holds no figures. Either it asks a source closure for a fresh
//! [`Snapshot`] on every scrape ([`MetricsServer::start`]), or it serves the
//! latest snapshot the control thread published ([`MetricsServer::start_published`]).

use std::net::{SocketAddr, TcpListener};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tiny_http::{Header, Method, Request, Response, Server};

use super::encode::{render_openmetrics, OPENMETRICS_CONTENT_TYPE};
use crate::stats::Snapshot;

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The listen address could not be bound (in use, not local, no right).
    #[error("metrics endpoint cannot listen on {addr}: {reason}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// What the system said.
        reason: String,
    },
    /// The serving thread could not be started.
    #[error("metrics endpoint cannot start its thread: {0}")]
    Thread(std::io::Error),
}

/// The latest snapshot the control thread published, shared with the
/// server thread. Publishing swaps one `Arc` under a mutex that only the
/// control side and the server take, once a second and once a scrape.
/// Until the first publish there is none, and the endpoint answers 503
/// rather than an exposition of zeros a scraper would take for a counter
/// reset.
#[derive(Debug, Clone, Default)]
pub struct SnapshotPublisher {
    latest: Arc<Mutex<Option<Arc<Snapshot>>>>,
}

impl SnapshotPublisher {
    /// Makes `snapshot` the one served from now on.
    pub fn publish(&self, snapshot: Snapshot) {
        let snapshot = Arc::new(snapshot);
        // A poisoned lock only means a scrape panicked mid-read; the value is
        // a whole Arc either way.
        match self.latest.lock() {
            Ok(mut guard) => *guard = Some(snapshot),
            Err(poisoned) => *poisoned.into_inner() = Some(snapshot),
        }
    }

    /// The snapshot currently served; `None` before the first publish.
    pub fn latest(&self) -> Option<Arc<Snapshot>> {
        match self.latest.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// Where a request's snapshot comes from; `None` while there is none yet.
type Source = Box<dyn Fn() -> Option<Arc<Snapshot>> + Send>;

/// A running metrics endpoint. Stops when [`MetricsServer::stop`] is called
/// or when it is dropped.
pub struct MetricsServer {
    local_addr: SocketAddr,
    server: Arc<Server>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

/// How long the serving thread waits for a request before it looks at the
/// stop flag again (stop also unblocks it at once).
const POLL: Duration = Duration::from_millis(200);

impl MetricsServer {
    /// Listens on `listen` and serves a fresh snapshot from `source` on
    /// every request. `source` runs on the server thread: it should read
    /// what the control thread assembled, never reach into a worker.
    pub fn start(
        listen: SocketAddr,
        source: impl Fn() -> Snapshot + Send + 'static,
    ) -> Result<Self, MetricsError> {
        let listener = bind(listen)?;
        Self::start_on(listener, source)
    }

    /// Like [`MetricsServer::start`], on a listener the caller already bound
    /// (tests hold a port before the server exists; systemd hands sockets).
    pub fn start_on(
        listener: TcpListener,
        source: impl Fn() -> Snapshot + Send + 'static,
    ) -> Result<Self, MetricsError> {
        Self::serve(listener, Box::new(move || Some(Arc::new(source()))))
    }

    /// Listens on `listen` and serves whatever the returned publisher last
    /// published (503, "starting", until the first publish).
    pub fn start_published(listen: SocketAddr) -> Result<(Self, SnapshotPublisher), MetricsError> {
        let publisher = SnapshotPublisher::default();
        let reader = publisher.clone();
        let server = Self::serve(bind(listen)?, Box::new(move || reader.latest()))?;
        Ok((server, publisher))
    }

    fn serve(listener: TcpListener, source: Source) -> Result<Self, MetricsError> {
        let local_addr = listener.local_addr().map_err(|e| MetricsError::Bind {
            addr: "a bound listener".into(),
            reason: e.to_string(),
        })?;
        let server = Server::from_listener(listener, None).map_err(|e| MetricsError::Bind {
            addr: local_addr.to_string(),
            reason: e.to_string(),
        })?;
        let server = Arc::new(server);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let server = server.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("dce-metrics".into())
                .spawn(move || serve_loop(&server, &stop, &source))
                .map_err(MetricsError::Thread)?
        };
        Ok(MetricsServer {
            local_addr,
            server,
            stop,
            thread: Some(thread),
        })
    }

    /// The address actually bound (the port, when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops serving and waits for the server thread to end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn bind(listen: SocketAddr) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(listen).map_err(|e| MetricsError::Bind {
        addr: listen.to_string(),
        reason: e.to_string(),
    })
}

fn serve_loop(server: &Server, stop: &AtomicBool, source: &Source) {
    while !stop.load(Ordering::Acquire) {
        match server.recv_timeout(POLL) {
            Ok(Some(request)) => answer(request, source),
            Ok(None) => {}
            // Errors here are about one connection; keep serving.
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header is valid")
}

/// What a path answers; pure, so it is tested without sockets.
pub(crate) fn route(method: &Method, url: &str, source: &Source) -> (u16, &'static str, Vec<u8>) {
    let path = url.split('?').next().unwrap_or_default();
    if !matches!(method, Method::Get | Method::Head) {
        return (
            405,
            "text/plain; charset=utf-8",
            b"only GET is served here\n".to_vec(),
        );
    }
    let snapshot = || std::panic::catch_unwind(AssertUnwindSafe(source));
    match path {
        "/metrics" => match snapshot() {
            Ok(None) => not_yet(),
            Ok(Some(s)) => (
                200,
                OPENMETRICS_CONTENT_TYPE,
                render_openmetrics(&s).into_bytes(),
            ),
            Err(_) => source_failed(),
        },
        "/snapshot.json" => match snapshot() {
            Ok(None) => not_yet(),
            Ok(Some(s)) => match serde_json::to_vec(&*s) {
                Ok(body) => (200, "application/json", body),
                Err(e) => (
                    500,
                    "text/plain; charset=utf-8",
                    format!("snapshot cannot be written as JSON: {e}\n").into_bytes(),
                ),
            },
            Err(_) => source_failed(),
        },
        "/" => (
            200,
            "text/plain; charset=utf-8",
            b"dce-edge: /metrics (OpenMetrics), /snapshot.json (the stats snapshot)\n".to_vec(),
        ),
        _ => (
            404,
            "text/plain; charset=utf-8",
            b"not found: try /metrics or /snapshot.json\n".to_vec(),
        ),
    }
}

/// Before the control thread's first snapshot: a scrape fails (Prometheus
/// marks the target down for that scrape) instead of reading zeros.
fn not_yet() -> (u16, &'static str, Vec<u8>) {
    (
        503,
        "text/plain; charset=utf-8",
        b"the edge is starting: no snapshot published yet\n".to_vec(),
    )
}

fn source_failed() -> (u16, &'static str, Vec<u8>) {
    (
        500,
        "text/plain; charset=utf-8",
        b"the snapshot source failed; see the edge's log\n".to_vec(),
    )
}

fn answer(request: Request, source: &Source) {
    let (status, content_type, body) = route(request.method(), request.url(), source);
    let response = Response::from_data(body)
        .with_status_code(status)
        .with_header(header("Content-Type", content_type))
        .with_header(header("Cache-Control", "no-store"))
        // Always send a Content-Length, never chunked: scrapers and the
        // small client in `stats::client` read the body in one go.
        .with_chunked_threshold(usize::MAX);
    // A client that hung up mid-answer is its own problem.
    let _ = request.respond(response);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> Source {
        Box::new(|| {
            Some(Arc::new(Snapshot {
                version: "9.9.9".into(),
                ..Snapshot::default()
            }))
        })
    }

    #[test]
    fn metrics_path_answers_openmetrics() {
        let (status, ctype, body) = route(&Method::Get, "/metrics", &source());
        assert_eq!((status, ctype), (200, OPENMETRICS_CONTENT_TYPE));
        assert!(String::from_utf8(body).unwrap().ends_with("# EOF\n"));
    }

    #[test]
    fn snapshot_path_answers_the_snapshot_as_json() {
        let (status, _, body) = route(&Method::Get, "/snapshot.json?x=1", &source());
        assert_eq!(status, 200);
        let s: Snapshot = serde_json::from_slice(&body).unwrap();
        assert_eq!(s.version, "9.9.9");
    }

    #[test]
    fn unknown_path_is_404_and_post_is_405() {
        assert_eq!(route(&Method::Get, "/nope", &source()).0, 404);
        assert_eq!(route(&Method::Post, "/metrics", &source()).0, 405);
    }

    #[test]
    fn panicking_source_answers_500() {
        let bad: Source = Box::new(|| panic!("control thread gone"));
        assert_eq!(route(&Method::Get, "/metrics", &bad).0, 500);
    }

    #[test]
    fn nothing_published_yet_answers_503_on_both_paths() {
        let publisher = SnapshotPublisher::default();
        let reader = publisher.clone();
        let source: Source = Box::new(move || reader.latest());
        assert_eq!(route(&Method::Get, "/metrics", &source).0, 503);
        assert_eq!(route(&Method::Get, "/snapshot.json", &source).0, 503);
        assert_eq!(route(&Method::Get, "/", &source).0, 200);
        publisher.publish(Snapshot::default());
        assert_eq!(route(&Method::Get, "/metrics", &source).0, 200);
    }

    #[test]
    fn published_snapshot_is_the_one_served() {
        let publisher = SnapshotPublisher::default();
        publisher.publish(Snapshot {
            version: "1.2.3".into(),
            ..Snapshot::default()
        });
        assert_eq!(publisher.latest().unwrap().version, "1.2.3");
    }
}
