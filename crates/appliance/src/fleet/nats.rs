//! A NATS client for the control thread: the core protocol over one TCP
//! connection, polled, never blocking. The control thread calls
//! [`NatsClient::poll`] every tick; connecting happens on a short-lived
//! helper thread (a TCP connect cannot be polled with the standard
//! library), everything else on a non-blocking socket.
//!
//! The protocol (NATS client protocol, plain text lines ending in CRLF):
//! the server greets with `INFO {json}`; the client answers `CONNECT
//! {json}` (with credentials) and `PING`, and is ready at the `PONG`.
//! `SUB subject sid`, `PUB subject [reply] n` + payload; the server
//! delivers `MSG subject sid [reply] n` or, with headers, `HMSG subject
//! sid [reply] hn tn`, and sends `PING` (answered `PONG`), `+OK`, `-ERR`.
//! The client pings every `ping_interval`; two pings unanswered and the
//! connection counts as dead (a frozen server sends no FIN).
//!
//! What is published while disconnected is refused, not buffered: the bus
//! layer republishes what must survive an outage from its own state.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

use serde::Serialize;

/// How the client connects.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// `host:port` of each server, tried in turn.
    pub servers: Vec<String>,
    /// The connection's name (seen in the server's monitoring).
    pub name: String,
    /// User and password, when the server asks for them.
    pub user: Option<(String, String)>,
    /// A token, when the server asks for one.
    pub token: Option<String>,
    /// How often the client pings the server.
    pub ping_interval: Duration,
    /// Pings unanswered before the connection counts as dead.
    pub max_pings_out: u32,
    /// Wait between connection attempts.
    pub reconnect_wait: Duration,
    /// How long a TCP connect and the handshake may take.
    pub connect_timeout: Duration,
    /// Bytes waiting to be written at most; a publish beyond is refused.
    pub max_pending: usize,
    /// The largest message taken from the server.
    pub max_payload: usize,
}

impl Default for NatsOptions {
    fn default() -> Self {
        NatsOptions {
            servers: vec!["127.0.0.1:4222".into()],
            name: "dce-edge".into(),
            user: None,
            token: None,
            ping_interval: Duration::from_secs(1),
            max_pings_out: 2,
            reconnect_wait: Duration::from_millis(250),
            connect_timeout: Duration::from_secs(2),
            max_pending: 8 << 20,
            max_payload: 1 << 20,
        }
    }
}

/// A message delivered by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// Its subject.
    pub subject: String,
    /// The subscription it came through.
    pub sid: u64,
    /// Where to answer, if anywhere.
    pub reply: Option<String>,
    /// The header block (`NATS/1.0 ...`), for HMSG.
    pub headers: Option<Vec<u8>>,
    /// The payload.
    pub payload: Vec<u8>,
}

impl Msg {
    /// The status code of the header line (`NATS/1.0 503`), if any.
    pub fn status(&self) -> Option<u16> {
        let h = self.headers.as_ref()?;
        let line = h.split(|&b| b == b'\r').next()?;
        std::str::from_utf8(line)
            .ok()?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// The value of header `key`, if present.
    pub fn header(&self, key: &str) -> Option<String> {
        let h = std::str::from_utf8(self.headers.as_ref()?).ok()?;
        h.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(key)
                .then(|| v.trim().to_string())
        })
    }
}

/// What happened on the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsEvent {
    /// Connected and subscribed (again).
    Connected {
        /// The server.
        server: String,
    },
    /// The connection is gone (or the attempt failed).
    Disconnected {
        /// How it was noticed.
        reason: String,
    },
    /// A message.
    Msg(Msg),
    /// The server reported an error that did not close the connection
    /// (a permission violation, for instance).
    ServerError(String),
}

enum Conn {
    /// Waiting to try again.
    Idle { retry_at: Instant },
    /// A helper thread is connecting.
    Connecting {
        server: String,
        result: Receiver<io::Result<TcpStream>>,
        deadline: Instant,
    },
    /// TCP is up; the handshake is under way.
    Handshake {
        server: String,
        stream: TcpStream,
        deadline: Instant,
        sent_connect: bool,
    },
    /// Ready.
    Ready {
        server: String,
        stream: TcpStream,
        last_ping: Instant,
        pings_out: u32,
    },
}

/// The client: one connection, its subscriptions, its buffers.
pub struct NatsClient {
    opts: NatsOptions,
    conn: Conn,
    next_server: usize,
    subs: Vec<(u64, String)>,
    next_sid: u64,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    inbox_prefix: String,
    published: u64,
    refused: u64,
    /// Connection attempts that failed in a row (the wait grows with them).
    failures: u32,
}

/// The longest wait between connection attempts.
const MAX_RECONNECT_WAIT: Duration = Duration::from_secs(5);

#[derive(Serialize)]
struct Connect<'a> {
    verbose: bool,
    pedantic: bool,
    tls_required: bool,
    name: &'a str,
    lang: &'a str,
    version: &'a str,
    protocol: u8,
    echo: bool,
    headers: bool,
    no_responders: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pass: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_token: Option<&'a str>,
}

/// Longest control line taken from the server.
const MAX_LINE: usize = 4096;

/// Bytes read per poll at most, so one poll stays short.
const READ_PER_POLL: usize = 4 << 20;

fn random_token() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// A subject token or subject the client may send: printable, no spaces.
fn valid_subject(s: &str) -> bool {
    !s.is_empty() && s.len() <= 1024 && s.bytes().all(|b| b > b' ' && b != 0x7f)
}

impl NatsClient {
    /// A client that connects at its first poll.
    pub fn new(opts: NatsOptions) -> NatsClient {
        NatsClient {
            opts,
            conn: Conn::Idle {
                retry_at: Instant::now(),
            },
            next_server: 0,
            subs: Vec::new(),
            next_sid: 1,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            inbox_prefix: format!("_INBOX.{}", random_token()),
            published: 0,
            refused: 0,
            failures: 0,
        }
    }

    /// A client whose reply subjects start with `prefix` (a server can then
    /// let each edge subscribe to its own inbox only).
    pub fn with_inbox_prefix(mut self, prefix: &str) -> NatsClient {
        self.inbox_prefix = format!("{prefix}.{}", random_token());
        self
    }

    /// The prefix of this client's reply subjects (`_INBOX.<random>`).
    pub fn inbox_prefix(&self) -> &str {
        &self.inbox_prefix
    }

    /// True when connected and past the handshake.
    pub fn is_connected(&self) -> bool {
        matches!(self.conn, Conn::Ready { .. })
    }

    /// The server connected to.
    pub fn server(&self) -> Option<&str> {
        match &self.conn {
            Conn::Ready { server, .. } => Some(server),
            _ => None,
        }
    }

    /// Messages published, and publishes refused (not connected, or the
    /// write buffer full).
    pub fn publish_counts(&self) -> (u64, u64) {
        (self.published, self.refused)
    }

    /// Subscribes to `subject` (now when connected, and again after every
    /// reconnect); returns the subscription's id.
    pub fn subscribe(&mut self, subject: &str) -> u64 {
        let sid = self.next_sid;
        self.next_sid += 1;
        self.subs.push((sid, subject.to_string()));
        if self.is_connected() {
            self.wbuf
                .extend_from_slice(format!("SUB {subject} {sid}\r\n").as_bytes());
        }
        sid
    }

    /// Ends a subscription.
    pub fn unsubscribe(&mut self, sid: u64) {
        self.subs.retain(|(s, _)| *s != sid);
        if self.is_connected() {
            self.wbuf
                .extend_from_slice(format!("UNSUB {sid}\r\n").as_bytes());
        }
    }

    /// Publishes `payload` on `subject` (answers to `reply`, if given).
    /// False, and counted, when not connected or the buffer is full.
    pub fn publish(&mut self, subject: &str, reply: Option<&str>, payload: &[u8]) -> bool {
        if !self.is_connected()
            || self.wbuf.len() + payload.len() > self.opts.max_pending
            || !valid_subject(subject)
            || reply.is_some_and(|r| !valid_subject(r))
        {
            self.refused += 1;
            return false;
        }
        let head = match reply {
            Some(r) => format!("PUB {subject} {r} {}\r\n", payload.len()),
            None => format!("PUB {subject} {}\r\n", payload.len()),
        };
        self.wbuf.extend_from_slice(head.as_bytes());
        self.wbuf.extend_from_slice(payload);
        self.wbuf.extend_from_slice(b"\r\n");
        self.published += 1;
        true
    }

    /// Closes the connection now (tests; the appliance stopping).
    pub fn close(&mut self) {
        if let Conn::Ready { stream, .. } = &mut self.conn {
            let _ = stream.write_all(&self.wbuf);
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        self.wbuf.clear();
        self.conn = Conn::Idle {
            retry_at: Instant::now() + Duration::from_secs(3600 * 24 * 365),
        };
    }

    /// Does what is due: connects, reads, writes, pings. Events go to
    /// `out`.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<NatsEvent>) {
        loop {
            let progressed = match std::mem::replace(&mut self.conn, Conn::Idle { retry_at: now }) {
                Conn::Idle { retry_at } => {
                    if now < retry_at || self.opts.servers.is_empty() {
                        self.conn = Conn::Idle { retry_at };
                        false
                    } else {
                        self.start_connect(now);
                        true
                    }
                }
                Conn::Connecting {
                    server,
                    result,
                    deadline,
                } => match result.try_recv() {
                    Ok(Ok(stream)) => match stream.set_nonblocking(true) {
                        Ok(()) => {
                            let _ = stream.set_nodelay(true);
                            self.rbuf.clear();
                            self.wbuf.clear();
                            self.conn = Conn::Handshake {
                                server,
                                stream,
                                deadline,
                                sent_connect: false,
                            };
                            true
                        }
                        Err(e) => {
                            self.fail(now, format!("{server}: {e}"), out);
                            false
                        }
                    },
                    Ok(Err(e)) => {
                        self.fail(now, format!("cannot connect to {server}: {e}"), out);
                        false
                    }
                    Err(TryRecvError::Empty) if now < deadline => {
                        self.conn = Conn::Connecting {
                            server,
                            result,
                            deadline,
                        };
                        false
                    }
                    Err(_) => {
                        self.fail(now, format!("cannot connect to {server}: timed out"), out);
                        false
                    }
                },
                Conn::Handshake {
                    server,
                    stream,
                    deadline,
                    sent_connect,
                } => {
                    self.handshake(now, server, stream, deadline, sent_connect, out);
                    false
                }
                Conn::Ready {
                    server,
                    stream,
                    last_ping,
                    pings_out,
                } => {
                    self.conn = Conn::Ready {
                        server,
                        stream,
                        last_ping,
                        pings_out,
                    };
                    self.run_ready(now, out);
                    false
                }
            };
            if !progressed {
                return;
            }
        }
    }

    fn start_connect(&mut self, now: Instant) {
        let server = self.opts.servers[self.next_server % self.opts.servers.len()].clone();
        self.next_server += 1;
        let timeout = self.opts.connect_timeout;
        let (tx, rx) = mpsc::channel();
        let target = server.clone();
        let spawned = std::thread::Builder::new()
            .name("dce-nats-connect".into())
            .spawn(move || {
                let r = (|| {
                    let addrs: Vec<SocketAddr> = target.to_socket_addrs()?.collect();
                    let mut last = io::Error::new(ErrorKind::NotFound, "no address");
                    for a in addrs {
                        match TcpStream::connect_timeout(&a, timeout) {
                            Ok(s) => return Ok(s),
                            Err(e) => last = e,
                        }
                    }
                    Err(last)
                })();
                let _ = tx.send(r);
            });
        match spawned {
            Ok(_) => {
                self.conn = Conn::Connecting {
                    server,
                    result: rx,
                    deadline: now + timeout + Duration::from_millis(500),
                }
            }
            Err(_) => {
                self.conn = Conn::Idle {
                    retry_at: now + self.opts.reconnect_wait,
                }
            }
        }
    }

    fn fail(&mut self, now: Instant, reason: String, out: &mut Vec<NatsEvent>) {
        self.rbuf.clear();
        self.wbuf.clear();
        // A server that is down, or refuses these credentials, is not
        // asked four times a second for long.
        let wait = self
            .opts
            .reconnect_wait
            .saturating_mul(1 << self.failures.min(5))
            .min(MAX_RECONNECT_WAIT.max(self.opts.reconnect_wait));
        self.failures = self.failures.saturating_add(1);
        self.conn = Conn::Idle {
            retry_at: now + wait,
        };
        out.push(NatsEvent::Disconnected { reason });
    }

    /// Reads what the socket has; Err(reason) when it closed or failed.
    fn fill(stream: &mut TcpStream, rbuf: &mut Vec<u8>) -> Result<(), String> {
        let mut chunk = [0u8; 64 * 1024];
        let mut taken = 0;
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => return Err("the server closed the connection".into()),
                Ok(n) => {
                    rbuf.extend_from_slice(&chunk[..n]);
                    taken += n;
                    if taken >= READ_PER_POLL {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    fn flush(stream: &mut TcpStream, wbuf: &mut Vec<u8>) -> Result<(), String> {
        let mut written = 0;
        while written < wbuf.len() {
            match stream.write(&wbuf[written..]) {
                Ok(0) => return Err("the connection refused more bytes".into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        wbuf.drain(..written);
        Ok(())
    }

    fn handshake(
        &mut self,
        now: Instant,
        server: String,
        mut stream: TcpStream,
        deadline: Instant,
        mut sent_connect: bool,
        out: &mut Vec<NatsEvent>,
    ) {
        // A refusal (`-ERR 'Authorization Violation'`) comes just before
        // the close: read it first, it says why.
        let closed = Self::fill(&mut stream, &mut self.rbuf).err();
        while let Some(line) = take_line(&mut self.rbuf) {
            let line = String::from_utf8_lossy(&line).to_string();
            if line.starts_with("INFO ") && !sent_connect {
                let connect = Connect {
                    verbose: false,
                    pedantic: false,
                    tls_required: false,
                    name: &self.opts.name,
                    lang: "rust-dce-edge",
                    version: env!("CARGO_PKG_VERSION"),
                    protocol: 1,
                    // Its own publishes are of no use to the edge.
                    echo: false,
                    headers: true,
                    no_responders: true,
                    user: self.opts.user.as_ref().map(|u| u.0.as_str()),
                    pass: self.opts.user.as_ref().map(|u| u.1.as_str()),
                    auth_token: self.opts.token.as_deref(),
                };
                let json = serde_json::to_string(&connect).expect("serializes");
                self.wbuf
                    .extend_from_slice(format!("CONNECT {json}\r\nPING\r\n").as_bytes());
                sent_connect = true;
            } else if line == "PONG" && sent_connect {
                // Ready: subscriptions go first, ahead of anything published.
                let mut subs = Vec::new();
                for (sid, subject) in &self.subs {
                    subs.extend_from_slice(format!("SUB {subject} {sid}\r\n").as_bytes());
                }
                self.wbuf.splice(0..0, subs);
                self.conn = Conn::Ready {
                    server: server.clone(),
                    stream,
                    last_ping: now,
                    pings_out: 0,
                };
                self.failures = 0;
                out.push(NatsEvent::Connected { server });
                self.run_ready(now, out);
                return;
            } else if line.starts_with("-ERR") {
                return self.fail(now, format!("{server} refused the connection: {line}"), out);
            } else if line == "PING" {
                self.wbuf.extend_from_slice(b"PONG\r\n");
            }
        }
        if let Some(e) = closed {
            return self.fail(now, format!("{server}: {e} during the handshake"), out);
        }
        if self.rbuf.len() > MAX_LINE {
            return self.fail(
                now,
                format!("{server}: oversized line in the handshake"),
                out,
            );
        }
        if let Err(e) = Self::flush(&mut stream, &mut self.wbuf) {
            return self.fail(now, format!("{server}: {e} during the handshake"), out);
        }
        if now >= deadline {
            return self.fail(now, format!("{server}: the handshake timed out"), out);
        }
        self.conn = Conn::Handshake {
            server,
            stream,
            deadline,
            sent_connect,
        };
    }

    fn run_ready(&mut self, now: Instant, out: &mut Vec<NatsEvent>) {
        let Conn::Ready {
            server,
            stream,
            last_ping,
            pings_out,
        } = &mut self.conn
        else {
            return;
        };
        let server = server.clone();
        // What arrived before a close is still read.
        let closed = Self::fill(stream, &mut self.rbuf).err();
        loop {
            match parse_op(&self.rbuf, self.opts.max_payload) {
                Parsed::Need => break,
                Parsed::Bad(why) => {
                    return self.fail(now, format!("{server}: protocol error: {why}"), out)
                }
                Parsed::Op(used, op) => {
                    self.rbuf.drain(..used);
                    match op {
                        Op::Ping => self.wbuf.extend_from_slice(b"PONG\r\n"),
                        Op::Pong => *pings_out = 0,
                        Op::Ok | Op::Info => {}
                        Op::Err(e) => {
                            // Permission and subject errors leave the
                            // connection open; the others close it.
                            let lower = e.to_ascii_lowercase();
                            if lower.contains("permission") || lower.contains("invalid subject") {
                                out.push(NatsEvent::ServerError(e));
                            } else {
                                return self.fail(now, format!("{server}: {e}"), out);
                            }
                        }
                        Op::Msg(m) => out.push(NatsEvent::Msg(m)),
                    }
                }
            }
        }
        if let Some(e) = closed {
            return self.fail(now, format!("{server}: {e}"), out);
        }
        if now.duration_since(*last_ping) >= self.opts.ping_interval {
            if *pings_out >= self.opts.max_pings_out {
                let reason = format!(
                    "{server}: stale, {} pings unanswered (every {:?})",
                    pings_out, self.opts.ping_interval
                );
                return self.fail(now, reason, out);
            }
            *last_ping = now;
            *pings_out += 1;
            self.wbuf.extend_from_slice(b"PING\r\n");
        }
        if let Err(e) = Self::flush(stream, &mut self.wbuf) {
            self.fail(now, format!("{server}: {e}"), out);
        }
    }
}

/// Takes one CRLF-terminated line off the front of `buf`.
fn take_line(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = buf[..end].to_vec();
    buf.drain(..end + 2);
    Some(line)
}

enum Op {
    Info,
    Ping,
    Pong,
    Ok,
    Err(String),
    Msg(Msg),
}

enum Parsed {
    Need,
    Bad(String),
    Op(usize, Op),
}

/// Reads one server operation from the front of `buf`.
fn parse_op(buf: &[u8], max_payload: usize) -> Parsed {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() > MAX_LINE {
            Parsed::Bad("control line too long".into())
        } else {
            Parsed::Need
        };
    };
    if end > MAX_LINE {
        return Parsed::Bad("control line too long".into());
    }
    let line = String::from_utf8_lossy(&buf[..end]);
    let mut words = line.split_ascii_whitespace();
    let verb = words.next().unwrap_or("").to_ascii_uppercase();
    let after = end + 2;
    match verb.as_str() {
        "PING" => Parsed::Op(after, Op::Ping),
        "PONG" => Parsed::Op(after, Op::Pong),
        "+OK" => Parsed::Op(after, Op::Ok),
        "INFO" => Parsed::Op(after, Op::Info),
        "-ERR" => Parsed::Op(
            after,
            Op::Err(
                line.trim_start_matches("-ERR")
                    .trim()
                    .trim_matches('\'')
                    .to_string(),
            ),
        ),
        "MSG" | "HMSG" => {
            let args: Vec<&str> = words.collect();
            let headers = verb == "HMSG";
            // MSG subject sid [reply] n ; HMSG subject sid [reply] hn tn
            let fixed = if headers { 4 } else { 3 };
            if args.len() != fixed && args.len() != fixed + 1 {
                return Parsed::Bad(format!("{verb} with {} arguments", args.len()));
            }
            let reply = (args.len() == fixed + 1).then(|| args[2].to_string());
            let nums = &args[args.len() - if headers { 2 } else { 1 }..];
            let Ok(total) = nums[nums.len() - 1].parse::<usize>() else {
                return Parsed::Bad(format!("{verb} size {:?}", nums[nums.len() - 1]));
            };
            let hlen = if headers {
                match nums[0].parse::<usize>() {
                    Ok(h) if h <= total => h,
                    _ => return Parsed::Bad(format!("HMSG header size {:?}", nums[0])),
                }
            } else {
                0
            };
            if total > max_payload {
                return Parsed::Bad(format!("a {total}-byte message (limit {max_payload})"));
            }
            let Ok(sid) = args[1].parse::<u64>() else {
                return Parsed::Bad(format!("{verb} sid {:?}", args[1]));
            };
            if buf.len() < after + total + 2 {
                return Parsed::Need;
            }
            if &buf[after + total..after + total + 2] != b"\r\n" {
                return Parsed::Bad(format!("{verb} payload not followed by CRLF"));
            }
            let body = &buf[after..after + total];
            Parsed::Op(
                after + total + 2,
                Op::Msg(Msg {
                    subject: args[0].to_string(),
                    sid,
                    reply,
                    headers: headers.then(|| body[..hlen].to_vec()),
                    payload: body[hlen..].to_vec(),
                }),
            )
        }
        _ => Parsed::Bad(format!("unknown operation {:?}", verb)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(buf: &[u8]) -> (usize, Op) {
        match parse_op(buf, 1 << 20) {
            Parsed::Op(n, op) => (n, op),
            Parsed::Need => panic!("need more"),
            Parsed::Bad(e) => panic!("bad: {e}"),
        }
    }

    #[test]
    fn messages_with_and_without_reply_and_headers_are_parsed() {
        let (n, o) = op(b"MSG a.b 7 5\r\nhello\r\nPING\r\n");
        assert_eq!(n, 20);
        let Op::Msg(m) = o else { panic!() };
        assert_eq!(
            (m.subject.as_str(), m.sid, m.reply, m.payload.as_slice()),
            ("a.b", 7, None, &b"hello"[..])
        );
        let raw = b"HMSG $KV.b.k 2 $JS.ACK.x.y.1.2.3.4.0 31 33\r\nNATS/1.0\r\nKV-Operation: DEL\r\n\r\nhi\r\n";
        let (n, o) = op(raw);
        assert_eq!(n, raw.len());
        let Op::Msg(m) = o else { panic!() };
        assert_eq!(m.reply.as_deref(), Some("$JS.ACK.x.y.1.2.3.4.0"));
        assert_eq!(m.header("kv-operation").as_deref(), Some("DEL"));
        assert_eq!(m.payload, b"hi");
        let no = b"HMSG _INBOX.a.1 3 16 16\r\nNATS/1.0 503\r\n\r\n\r\n";
        let Op::Msg(m) = op(no).1 else { panic!() };
        assert_eq!(m.status(), Some(503));
    }

    #[test]
    fn a_partial_message_waits_and_garbage_is_an_error() {
        assert!(matches!(
            parse_op(b"MSG a 1 10\r\nhel", 1 << 20),
            Parsed::Need
        ));
        assert!(matches!(parse_op(b"MSG a 1", 1 << 20), Parsed::Need));
        assert!(matches!(parse_op(b"BOGUS x\r\n", 1 << 20), Parsed::Bad(_)));
        assert!(matches!(
            parse_op(b"MSG a 1 5\r\nhelloXX", 1 << 20),
            Parsed::Bad(_)
        ));
        assert!(matches!(
            parse_op(b"MSG a 1 99999\r\n", 1024),
            Parsed::Bad(_)
        ));
        assert!(matches!(
            parse_op(&[b'x'; MAX_LINE + 10], 1024),
            Parsed::Bad(_)
        ));
        let (_, o) = op(b"-ERR 'Permissions Violation for Publish to \"x\"'\r\n");
        let Op::Err(e) = o else { panic!() };
        assert!(e.starts_with("Permissions Violation"), "{e}");
    }

    #[test]
    fn nothing_is_published_while_disconnected() {
        let mut c = NatsClient::new(NatsOptions {
            servers: vec![],
            ..NatsOptions::default()
        });
        assert!(!c.publish("a", None, b"x"));
        assert_eq!(c.publish_counts(), (0, 1));
        assert!(c.inbox_prefix().starts_with("_INBOX."));
    }

    /// A fake server on 127.0.0.1: greets, checks the credentials, answers
    /// PING, echoes one PUB back as a MSG on the subscription.
    #[test]
    fn connects_with_credentials_subscribes_and_receives() {
        use std::io::{BufRead, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            w.write_all(b"INFO {\"server_id\":\"x\",\"auth_required\":true}\r\n")
                .unwrap();
            let mut lines = Vec::new();
            let mut sid = String::new();
            loop {
                let mut l = String::new();
                if r.read_line(&mut l).unwrap() == 0 {
                    break;
                }
                let l = l.trim_end().to_string();
                if l == "PING" {
                    w.write_all(b"PONG\r\n").unwrap();
                } else if let Some(rest) = l.strip_prefix("SUB ") {
                    sid = rest.split(' ').nth(1).unwrap().to_string();
                } else if let Some(rest) = l.strip_prefix("PUB ") {
                    let n: usize = rest.rsplit(' ').next().unwrap().parse().unwrap();
                    let mut body = vec![0u8; n + 2];
                    std::io::Read::read_exact(&mut r, &mut body).unwrap();
                    w.write_all(format!("MSG fleet.x {sid} {n}\r\n").as_bytes())
                        .unwrap();
                    w.write_all(&body).unwrap();
                    lines.push(l);
                    break;
                }
                lines.push(l);
            }
            lines
        });
        let mut c = NatsClient::new(NatsOptions {
            servers: vec![addr.to_string()],
            user: Some(("e1".into(), "pw".into())),
            ..NatsOptions::default()
        });
        c.subscribe("fleet.>");
        let mut events = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut sent = false;
        while Instant::now() < deadline && !events.iter().any(|e| matches!(e, NatsEvent::Msg(_))) {
            c.poll(Instant::now(), &mut events);
            if c.is_connected() && !sent {
                sent = c.publish("fleet.x", None, b"ban");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let lines = server.join().unwrap();
        assert!(lines[0].starts_with("CONNECT {"), "{lines:?}");
        assert!(
            lines[0].contains("\"user\":\"e1\",\"pass\":\"pw\""),
            "{lines:?}"
        );
        assert!(
            matches!(&events[0], NatsEvent::Connected { .. }),
            "{events:?}"
        );
        let msg = events
            .iter()
            .find_map(|e| match e {
                NatsEvent::Msg(m) => Some(m.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(msg.payload, b"ban");
        // The server went away: noticed, and the client tries again.
        let mut later = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && later.is_empty() {
            c.poll(Instant::now(), &mut later);
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(
            matches!(&later[0], NatsEvent::Disconnected { .. }),
            "{later:?}"
        );
        assert!(!c.is_connected());
    }
}
