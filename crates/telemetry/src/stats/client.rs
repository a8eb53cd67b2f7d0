//! A small HTTP/1.1 GET over `std::net::TcpStream`, enough to fetch
//! `/snapshot.json` and `/metrics` from the edge's own endpoint: plain HTTP,
//! bounded time and size, Content-Length, chunked or read-to-close bodies.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::Snapshot;

/// Where the edge's endpoint listens by default.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9560";

/// The largest body accepted: a snapshot with every ban of a big attack
/// stays far below it, and a wrong URL cannot make us allocate without bound.
pub const MAX_BODY: usize = 32 * 1024 * 1024;

/// The largest status line or header line accepted.
const MAX_LINE: usize = 8 * 1024;

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

/// A parsed `http://host:port/path` URL.
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

/// GETs `url`, the whole exchange bounded by `timeout`.
pub fn get(url: &str, timeout: Duration) -> Result<HttpResponse, ClientError> {
    let parsed = HttpUrl::parse(url)?;
    let unreachable = |reason: String| ClientError::Unreachable {
        url: url.to_string(),
        reason,
    };
    let deadline = Instant::now() + timeout;
    let addrs: Vec<_> = (parsed.host.trim_matches(['[', ']']), parsed.port)
        .to_socket_addrs()
        .map_err(|e| unreachable(format!("cannot resolve {}: {e}", parsed.host)))?
        .collect();
    let mut last_error = String::from("no address");
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_error = e.to_string(),
        }
    }
    let mut stream = stream.ok_or_else(|| unreachable(last_error))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: dce-edge-stats\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        parsed.path, parsed.host, parsed.port
    );
    let io = |e: std::io::Error| {
        if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            unreachable(format!("no answer within {timeout:?}"))
        } else {
            unreachable(e.to_string())
        }
    };
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut reader = BufReader::new(Deadline { stream, deadline });
    read_response(&mut reader).map_err(|e| match e {
        ReadError::Io(e) => io(e),
        ReadError::Bad(reason) => ClientError::BadResponse {
            url: url.to_string(),
            reason,
        },
    })
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

/// A stream whose every read is bounded by one deadline for the whole
/// exchange, so a server that trickles bytes cannot hold us forever.
struct Deadline {
    stream: TcpStream,
    deadline: Instant,
}

impl Read for Deadline {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

enum ReadError {
    Io(std::io::Error),
    Bad(String),
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Io(e)
    }
}

fn read_line(r: &mut impl BufRead) -> Result<String, ReadError> {
    let mut line = Vec::new();
    r.take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line)?;
    if line.len() > MAX_LINE {
        return Err(ReadError::Bad(format!(
            "a line longer than {MAX_LINE} bytes"
        )));
    }
    if line.last() != Some(&b'\n') {
        return Err(ReadError::Bad("connection closed mid-line".into()));
    }
    let line = String::from_utf8(line).map_err(|_| ReadError::Bad("line is not UTF-8".into()))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Reads a response: status line, headers, then the body by
/// Content-Length, chunks, or to the close.
fn read_response(r: &mut impl BufRead) -> Result<HttpResponse, ReadError> {
    let status_line = read_line(r)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(ReadError::Bad(format!(
            "status line {:?}",
            status_line.chars().take(80).collect::<String>()
        )));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ReadError::Bad(format!("status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            break;
        }
        if headers.len() >= 100 {
            return Err(ReadError::Bad("more than 100 headers".into()));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| ReadError::Bad(format!("header line {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let header = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    let chunked = header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        read_chunked(r)?
    } else if let Some(len) = header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| ReadError::Bad(format!("content-length {len:?}")))?;
        if len > MAX_BODY {
            return Err(ReadError::Bad(format!(
                "body of {len} bytes is over the {MAX_BODY}-byte limit"
            )));
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        body
    } else {
        let mut body = Vec::new();
        r.take(MAX_BODY as u64 + 1).read_to_end(&mut body)?;
        if body.len() > MAX_BODY {
            return Err(ReadError::Bad(format!(
                "body over the {MAX_BODY}-byte limit"
            )));
        }
        body
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn read_chunked(r: &mut impl BufRead) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r)?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| ReadError::Bad(format!("chunk size {size:?}")))?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !read_line(r)?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(ReadError::Bad(format!(
                "body over the {MAX_BODY}-byte limit"
            )));
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        if !read_line(r)?.is_empty() {
            return Err(ReadError::Bad("chunk not followed by CRLF".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<HttpResponse, String> {
        read_response(&mut &raw[..]).map_err(|e| match e {
            ReadError::Io(e) => e.to_string(),
            ReadError::Bad(s) => s,
        })
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
    fn content_length_body() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        assert_eq!(r.header("x"), Some("y"));
    }

    #[test]
    fn chunked_body() {
        let r = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2;x=1\r\nlo\r\n0\r\n\r\n")
            .unwrap();
        assert_eq!(r.body, b"hello");
    }

    #[test]
    fn body_to_close() {
        let r = parse(b"HTTP/1.0 404 Not Found\r\n\r\nnope").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"nope"[..]));
    }

    #[test]
    fn oversized_content_length_is_refused_before_allocating() {
        let raw = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(parse(raw.as_bytes()).unwrap_err().contains("limit"));
    }

    #[test]
    fn not_http_is_refused() {
        assert!(parse(b"SSH-2.0-OpenSSH\r\n")
            .unwrap_err()
            .contains("status line"));
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
}
