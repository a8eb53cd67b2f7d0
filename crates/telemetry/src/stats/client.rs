//! GETs `/snapshot.json` and `/metrics` from the edge's own endpoint: plain
//! HTTP/1.1 through `ureq` (built without TLS), the whole exchange bounded in
//! time, the body bounded in size, and every error naming the URL.

use std::io::ErrorKind;
use std::time::Duration;

use super::Snapshot;

/// Where the edge's endpoint listens by default.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9560";

/// The largest body accepted: a snapshot with every ban of a big attack
/// stays far below it, and a wrong URL cannot make us allocate without bound.
pub const MAX_BODY: usize = 32 * 1024 * 1024;

/// What the client calls itself in `User-Agent`, so a scrape by `dce-edge
/// stats` or `watch` can be told from Prometheus.
const USER_AGENT: &str = "dce-edge-stats";

/// Why a fetch failed; each says which URL.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not `http://host:port[/path]`.
    #[error("bad URL {url:?}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Nothing answered at the address, or the exchange failed midway.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// What the system said.
        reason: String,
    },
    /// The server answered something that is not HTTP/1.x.
    #[error("{url} answered something that is not HTTP: {reason}")]
    BadResponse {
        /// The URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The server answered with a status other than 200.
    #[error("{url} answered {status}: {excerpt}")]
    Status {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        excerpt: String,
    },
    /// The body is not a snapshot.
    #[error("{url} did not answer a dce-edge snapshot: {reason}")]
    NotASnapshot {
        /// The URL.
        url: String,
        /// The JSON error.
        reason: String,
    },
}

/// A parsed `http://host:port/path` URL. Every URL is checked here before
/// the request is made, so a wrong one gets a reason a person can act on and
/// `https` is refused by name rather than by a missing TLS stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host as written (an IPv6 literal keeps its brackets).
    pub host: String,
    /// Port (80 when absent).
    pub port: u16,
    /// Path with query, starting with `/`.
    pub path: String,
}

impl HttpUrl {
    /// Parses a plain-HTTP URL; `https` and other schemes are refused.
    pub fn parse(url: &str) -> Result<HttpUrl, ClientError> {
        let bad = |reason: &str| ClientError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in IPv6 host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p,
                None if after.is_empty() => "80",
                None => return Err(bad("junk after IPv6 host")),
            };
            (format!("[{h}]"), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p),
                None => (authority.to_string(), "80"),
            }
        };
        let port: u16 = port
            .parse()
            .map_err(|_| bad("port is not a number from 1 to 65535"))?;
        if port == 0 {
            return Err(bad("port 0"));
        }
        Ok(HttpUrl {
            host,
            port,
            path: path.to_string(),
        })
    }
}

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// GETs `url`, the whole exchange bounded by `timeout` and the body by
/// [`MAX_BODY`]. Any status is returned as an answer; redirects are not
/// followed.
pub fn get(url: &str, timeout: Duration) -> Result<HttpResponse, ClientError> {
    let parsed = HttpUrl::parse(url)?;
    let config = ureq::Agent::config_builder()
        // One budget from the lookup to the body's last byte, so a server
        // that trickles bytes cannot hold us past it.
        .timeout_global(Some(timeout))
        // A 404 is the endpoint's answer, for the caller to report.
        .http_status_as_error(false)
        // The endpoint never redirects: a redirect means a wrong URL, and
        // its status says so.
        .max_redirects(0)
        // The endpoint is the edge's own: an HTTP_PROXY set for other
        // tools must not carry the scrape elsewhere.
        .proxy(None)
        .user_agent(USER_AGENT)
        .build();
    let failed = |e| failure(url, &parsed, timeout, e);
    let mut response = ureq::Agent::new_with_config(config)
        .get(url)
        .header("Connection", "close")
        .call()
        .map_err(failed)?;
    // A declared length over the limit is refused before reading any of it.
    if let Some(len) = response.body().content_length() {
        if len > MAX_BODY as u64 {
            return Err(ClientError::BadResponse {
                url: url.to_string(),
                reason: format!("body of {len} bytes is over the {MAX_BODY}-byte limit"),
            });
        }
    }
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    // Chunked and read-to-close bodies have no declared length: the limit
    // stops them once they pass it.
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY as u64)
        .read_to_vec()
        .map_err(failed)?;
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// Says why `get` failed, in this module's terms.
fn failure(url: &str, parsed: &HttpUrl, timeout: Duration, error: ureq::Error) -> ClientError {
    let unreachable = |reason: String| ClientError::Unreachable {
        url: url.to_string(),
        reason,
    };
    let bad_response = |reason: String| ClientError::BadResponse {
        url: url.to_string(),
        reason,
    };
    match error {
        ureq::Error::Timeout(_) => unreachable(format!("no answer within {timeout:?}")),
        ureq::Error::Io(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            unreachable(format!("no answer within {timeout:?}"))
        }
        ureq::Error::Io(e) => unreachable(e.to_string()),
        ureq::Error::HostNotFound => unreachable(format!("cannot resolve {}", parsed.host)),
        ureq::Error::BadUri(reason) => ClientError::BadUrl {
            url: url.to_string(),
            reason,
        },
        ureq::Error::BodyExceedsLimit(_) => {
            bad_response(format!("body over the {MAX_BODY}-byte limit"))
        }
        ureq::Error::Protocol(e) => bad_response(e.to_string()),
        e @ ureq::Error::LargeResponseHeader(..) => bad_response(e.to_string()),
        // The rest (a failed connection, an HTTP error) stopped the exchange
        // before an answer could be read.
        e => unreachable(e.to_string()),
    }
}

/// Fetches one snapshot. A URL with no path (or `/`) means
/// `/snapshot.json` on that endpoint.
pub fn fetch_snapshot(url: &str, timeout: Duration) -> Result<Snapshot, ClientError> {
    let url = snapshot_url(url)?;
    let response = get(&url, timeout)?;
    if response.status != 200 {
        return Err(status_error(&url, &response));
    }
    serde_json::from_slice(&response.body).map_err(|e| ClientError::NotASnapshot {
        url,
        reason: e.to_string(),
    })
}

/// Fetches the OpenMetrics text. A URL with no path (or `/`) means
/// `/metrics` on that endpoint.
pub fn fetch_metrics(url: &str, timeout: Duration) -> Result<String, ClientError> {
    let url = with_default_path(url, "/metrics")?;
    let response = get(&url, timeout)?;
    if response.status != 200 {
        return Err(status_error(&url, &response));
    }
    String::from_utf8(response.body).map_err(|e| ClientError::BadResponse {
        url,
        reason: format!("body is not UTF-8: {e}"),
    })
}

/// The URL `fetch_snapshot` actually asks.
pub fn snapshot_url(url: &str) -> Result<String, ClientError> {
    with_default_path(url, "/snapshot.json")
}

fn with_default_path(url: &str, path: &str) -> Result<String, ClientError> {
    let parsed = HttpUrl::parse(url)?;
    Ok(if parsed.path == "/" {
        format!("{}{path}", url.trim_end_matches('/'))
    } else {
        url.to_string()
    })
}

fn status_error(url: &str, response: &HttpResponse) -> ClientError {
    let excerpt: String = String::from_utf8_lossy(&response.body)
        .chars()
        .take(200)
        .collect();
    ClientError::Status {
        url: url.to_string(),
        status: response.status,
        excerpt: excerpt.trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::thread::{self, JoinHandle};
    use std::time::Instant;

    const TIMEOUT: Duration = Duration::from_secs(5);

    /// What a canned server does once it has written its answer.
    #[derive(Clone, Copy)]
    enum Then {
        /// Closes the connection: the end of a read-to-close body.
        Close,
        /// Keeps the connection open until the client hangs up, so a client
        /// that waited for more would run into its timeout.
        Wait,
    }

    /// A server on 127.0.0.1 that takes one connection, reads the request to
    /// its blank line, writes `answer` and does what `then` says. Gives the
    /// base URL and the request it read.
    fn serve(answer: &[u8], then: Then) -> (String, JoinHandle<String>) {
        serve_on(TcpListener::bind("127.0.0.1:0").unwrap(), answer, then)
    }

    fn serve_on(listener: TcpListener, answer: &[u8], then: Then) -> (String, JoinHandle<String>) {
        let url = format!("http://{}", listener.local_addr().unwrap());
        let answer = answer.to_vec();
        let server = thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            conn.set_read_timeout(Some(TIMEOUT)).unwrap();
            let request = read_request(&mut conn);
            // The client may hang up midway (that is what some tests check).
            let _ = conn.write_all(&answer);
            if let Then::Wait = then {
                let _ = conn.read_to_end(&mut Vec::new());
            }
            request
        });
        (url, server)
    }

    fn read_request(conn: &mut TcpStream) -> String {
        let mut request = Vec::new();
        let mut byte = [0];
        while !request.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
            request.push(byte[0]);
        }
        String::from_utf8_lossy(&request).into_owned()
    }

    #[test]
    fn url_with_port_and_path() {
        assert_eq!(
            HttpUrl::parse("http://127.0.0.1:9560/snapshot.json").unwrap(),
            HttpUrl {
                host: "127.0.0.1".into(),
                port: 9560,
                path: "/snapshot.json".into()
            }
        );
    }

    #[test]
    fn url_with_ipv6_host_and_no_path() {
        let u = HttpUrl::parse("http://[::1]:9100").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("[::1]", 9100, "/")
        );
    }

    #[test]
    fn https_is_refused() {
        assert!(matches!(
            HttpUrl::parse("https://127.0.0.1:9560"),
            Err(ClientError::BadUrl { .. })
        ));
        assert!(matches!(
            get("https://127.0.0.1:9560/metrics", TIMEOUT),
            Err(ClientError::BadUrl { .. })
        ));
    }

    #[test]
    fn bare_endpoint_means_snapshot_json() {
        assert_eq!(
            snapshot_url("http://127.0.0.1:9560/").unwrap(),
            "http://127.0.0.1:9560/snapshot.json"
        );
        assert_eq!(
            snapshot_url("http://127.0.0.1:9560/other.json").unwrap(),
            "http://127.0.0.1:9560/other.json"
        );
    }

    #[test]
    fn request_is_a_get_of_the_path_named_by_our_user_agent() {
        let (url, server) = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", Then::Wait);
        get(&format!("{url}/metrics?x=1"), TIMEOUT).unwrap();
        let request = server.join().unwrap().to_ascii_lowercase();
        assert!(
            request.starts_with("get /metrics?x=1 http/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains("\r\nuser-agent: dce-edge-stats\r\n"),
            "{request}"
        );
    }

    #[test]
    fn content_length_body() {
        let (url, _) = serve(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello",
            Then::Wait,
        );
        let r = get(&url, TIMEOUT).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        assert_eq!(r.header("x"), Some("y"));
    }

    #[test]
    fn ipv6_endpoint_is_fetched() {
        let Ok(listener) = TcpListener::bind("[::1]:0") else {
            eprintln!("no IPv6 loopback here: nothing to check");
            return;
        };
        let (url, _) = serve_on(
            listener,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nv6",
            Then::Wait,
        );
        assert!(url.starts_with("http://[::1]:"), "{url}");
        assert_eq!(get(&url, TIMEOUT).unwrap().body, b"v6");
    }

    #[test]
    fn chunked_body() {
        let (url, _) = serve(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2;x=1\r\nlo\r\n0\r\n\r\n",
            Then::Wait,
        );
        assert_eq!(get(&url, TIMEOUT).unwrap().body, b"hello");
    }

    #[test]
    fn body_to_close() {
        let (url, _) = serve(b"HTTP/1.0 404 Not Found\r\n\r\nnope", Then::Close);
        let r = get(&url, TIMEOUT).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"nope"[..]));
    }

    #[test]
    fn oversized_content_length_is_refused_before_allocating() {
        // The server announces one byte over the limit and sends none: a
        // client that read on would wait for its timeout.
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        let (url, _) = serve(head.as_bytes(), Then::Wait);
        let started = Instant::now();
        let err = get(&url, TIMEOUT).unwrap_err();
        assert!(matches!(err, ClientError::BadResponse { .. }), "{err}");
        assert!(err.to_string().contains("limit"), "{err}");
        assert!(started.elapsed() < TIMEOUT / 2, "{:?}", started.elapsed());
    }

    #[test]
    fn endless_body_without_a_length_stops_at_the_limit() {
        let mut answer = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        answer.resize(answer.len() + MAX_BODY + 1, b'x');
        let (url, _) = serve(&answer, Then::Wait);
        let err = get(&url, TIMEOUT).unwrap_err();
        assert!(matches!(err, ClientError::BadResponse { .. }), "{err}");
        assert!(err.to_string().contains("limit"), "{err}");
    }

    #[test]
    fn not_http_is_refused() {
        // An SSH server speaks first and then waits for our banner.
        let (url, _) = serve(b"SSH-2.0-OpenSSH_9.6\r\n", Then::Wait);
        let err = get(&url, TIMEOUT).unwrap_err();
        assert!(matches!(err, ClientError::BadResponse { .. }), "{err}");
        assert!(err.to_string().contains(&url), "{err}");
    }

    #[test]
    fn status_other_than_200_is_reported_with_the_start_of_the_body() {
        let (url, _) = serve(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 9\r\n\r\nstarting\n",
            Then::Wait,
        );
        match fetch_snapshot(&url, TIMEOUT).unwrap_err() {
            ClientError::Status {
                url: asked,
                status,
                excerpt,
            } => {
                assert_eq!(asked, format!("{url}/snapshot.json"));
                assert_eq!((status, excerpt.as_str()), (503, "starting"));
            }
            err => panic!("{err}"),
        }
    }

    #[test]
    fn redirect_is_reported_not_followed() {
        let (url, _) = serve(
            b"HTTP/1.1 301 Moved Permanently\r\nLocation: http://192.0.2.1/\r\nContent-Length: 0\r\n\r\n",
            Then::Wait,
        );
        let err = fetch_metrics(&url, TIMEOUT).unwrap_err();
        assert!(
            matches!(err, ClientError::Status { status: 301, .. }),
            "{err}"
        );
    }

    #[test]
    fn snapshot_is_fetched_and_parsed() {
        let sent = Snapshot {
            version: "9.9.9".into(),
            taken_at_ms: 1_700_000_000_123,
            ..Snapshot::default()
        };
        let body = serde_json::to_vec(&sent).unwrap();
        let mut answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        answer.extend_from_slice(&body);
        let (url, server) = serve(&answer, Then::Wait);
        assert_eq!(fetch_snapshot(&url, TIMEOUT).unwrap(), sent);
        assert!(server.join().unwrap().starts_with("GET /snapshot.json "));
    }

    #[test]
    fn json_that_is_not_a_snapshot_is_named() {
        let (url, _) = serve(
            b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n{\"status\":1}",
            Then::Wait,
        );
        let err = fetch_snapshot(&url, TIMEOUT).unwrap_err();
        assert!(matches!(err, ClientError::NotASnapshot { .. }), "{err}");
    }

    #[test]
    fn nobody_listening_is_unreachable() {
        // Bind then drop: the port is closed and the connect is refused.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let err = fetch_metrics(&url, TIMEOUT).unwrap_err();
        assert!(matches!(err, ClientError::Unreachable { .. }), "{err}");
        assert!(err.to_string().contains(&url), "{err}");
    }

    #[test]
    fn silent_server_is_unreachable_within_the_timeout() {
        // A listener that never accepts: the kernel completes the handshake,
        // nobody answers, and the fetch must give up by itself.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", silent.local_addr().unwrap());
        let err = fetch_snapshot(&url, Duration::from_millis(300)).unwrap_err();
        assert!(matches!(err, ClientError::Unreachable { .. }), "{err}");
        assert!(err.to_string().contains("no answer"), "{err}");
    }

    #[test]
    fn trickling_server_is_cut_off_at_the_deadline() {
        // Each byte comes well within any per-read timeout; only a deadline
        // for the whole exchange stops this server.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            read_request(&mut conn);
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
            for _ in 0..100 {
                thread::sleep(Duration::from_millis(50));
                if conn.write_all(b"x").is_err() {
                    break;
                }
            }
        });
        let started = Instant::now();
        let err = get(&url, Duration::from_millis(400)).unwrap_err();
        assert!(matches!(err, ClientError::Unreachable { .. }), "{err}");
        assert!(err.to_string().contains("no answer"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}
