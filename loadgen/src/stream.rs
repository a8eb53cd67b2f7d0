//! Callers' connections over TCP and TLS: a bounded pool per worker thread,
//! dialled to the one target, messages framed by Content-Length when read
//! (RFC 3261 section 18.3, with the SIP crate's [`Framer`]).
//!
//! The caller's state machine ([`crate::uac`]) stays the same over every
//! transport: it writes a message and hands it to [`Conns::send`], and gets
//! back whole messages and the connections that went down
//! ([`Received`]). A connection that goes down takes the calls on it with
//! it (the worker counts them under the reason, [`Loss`]); it is dialled
//! again, at most every [`REDIAL_NS`], when a new call needs it.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use sip::stream::{Frame, Framer};

use crate::report::Connections;

/// After a connection went down, calls that need it are lost (under the
/// reason it went down for) for this long before it is dialled again, so
/// a target that refuses is not dialled at the call rate.
pub const REDIAL_NS: u64 = 250_000_000;

/// Most bytes waiting to be written on one connection: a target that does
/// not read costs the generator bounded memory (messages past it are
/// counted in [`Connections::queue_full`] and not sent).
const MAX_QUEUED: usize = 4 << 20;

/// Bytes read per read call.
const READ_CHUNK: usize = 64 * 1024;

/// Why a connection went down, which is the outcome bucket of the calls
/// it carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// It could not be made (refused, unreachable, reset while dialling).
    Refused,
    /// It closed, was reset, or lost its framing.
    Closed,
    /// Its TLS handshake or a later TLS record failed.
    TlsFailed,
}

/// TLS settings of a caller run: whom to trust and the name to check the
/// target's certificate against.
#[derive(Debug, Clone)]
pub struct TlsClient {
    /// rustls client configuration (roots, ring provider).
    pub config: Arc<ClientConfig>,
    /// The name (or IP address) the certificate must carry.
    pub server_name: ServerName<'static>,
}

/// Why a TLS client setting could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsClientError {
    /// The CA file holds no certificate that parses.
    #[error("CA certificates: {0}")]
    Roots(String),
    /// The server name is neither a DNS name nor an IP address.
    #[error("server name {0:?}: {1}")]
    ServerName(String, String),
    /// rustls refused the configuration.
    #[error("{0}")]
    Rustls(String),
}

impl TlsClient {
    /// Trusts the certificates in `ca_pem` (PEM) and checks the target's
    /// certificate against `server_name` (a DNS name or an IP address).
    pub fn new(ca_pem: &[u8], server_name: &str) -> Result<TlsClient, TlsClientError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            let cert = cert.map_err(|e| TlsClientError::Roots(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| TlsClientError::Roots(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(TlsClientError::Roots("no certificate in PEM".into()));
        }
        // The ring provider, as the edge's stream layer (no aws-lc, no
        // cmake in the build); deprecated in 0.23.48 only for lacking
        // post-quantum key exchange.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsClientError::Rustls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_name = ServerName::try_from(server_name.to_string())
            .map_err(|e| TlsClientError::ServerName(server_name.to_string(), e.to_string()))?;
        Ok(TlsClient {
            config: Arc::new(config),
            server_name,
        })
    }
}

enum State {
    /// Dialled; the TCP handshake has not completed.
    Connecting,
    /// The TCP handshake completed (TLS may still be handshaking: what is
    /// sent meanwhile waits in rustls).
    Open,
    /// Went down at this time (run clock), for this reason.
    Down { at_ns: u64, loss: Loss },
}

struct Conn {
    sock: Option<TcpStream>,
    tls: Option<ClientConnection>,
    state: State,
    /// TCP: bytes not yet written.
    out: Vec<u8>,
    /// Bytes read (decrypted) and not yet framed.
    inbuf: Vec<u8>,
    framer: Framer,
}

/// What one turn read: whole messages (ranges of `bytes`) by connection,
/// and the connections that went down, in that order of handling.
#[derive(Debug, Default)]
pub struct Received {
    /// The messages' bytes, one after another.
    pub bytes: Vec<u8>,
    /// (connection, range of `bytes`) per message, in arrival order.
    pub messages: Vec<(u32, Range<usize>)>,
    /// Connections that went down, and why.
    pub down: Vec<(u32, Loss)>,
}

impl Received {
    /// Empties it for the next turn (keeping the allocations).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.messages.clear();
        self.down.clear();
    }
}

/// One worker's connections to the target.
pub struct Conns {
    poll: Poll,
    events: Events,
    conns: Vec<Conn>,
    target: SocketAddr,
    tls: Option<TlsClient>,
    chunk: Vec<u8>,
    /// Connection counts.
    pub counters: Connections,
}

impl Conns {
    /// Dials `n` connections to `target` (TLS with `tls`); they open while
    /// the run goes (what is sent meanwhile waits).
    pub fn dial(target: SocketAddr, n: usize, tls: Option<TlsClient>) -> io::Result<Conns> {
        let mut c = Conns {
            poll: Poll::new()?,
            events: Events::with_capacity(256),
            conns: Vec::with_capacity(n),
            target,
            tls,
            chunk: vec![0; READ_CHUNK],
            counters: Connections::default(),
        };
        for i in 0..n {
            c.conns.push(Conn {
                sock: None,
                tls: None,
                state: State::Down {
                    at_ns: 0,
                    loss: Loss::Refused,
                },
                out: Vec::new(),
                inbuf: Vec::new(),
                framer: Framer::default(),
            });
            // A dial that fails at once (no route) leaves the connection
            // down: the calls that need it are counted as lost, as after a
            // later failure (no call is on it yet).
            c.redial(i, 0, &mut Vec::new());
        }
        Ok(c)
    }

    /// Connections in the pool.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// The local address of connection `i` (None while it is down).
    pub fn local(&self, i: usize) -> Option<SocketAddr> {
        self.conns[i].sock.as_ref()?.local_addr().ok()
    }

    /// Whether a new call can go on connection `i` at `now_ns`: yes if it
    /// is open or opening; if it is down and was down long enough, it is
    /// dialled again (yes, unless that fails at once); otherwise the
    /// reason it is down.
    pub fn usable(&mut self, i: usize, now_ns: u64) -> Result<(), Loss> {
        match self.conns[i].state {
            State::Connecting | State::Open => Ok(()),
            State::Down { at_ns, loss } => {
                if now_ns.saturating_sub(at_ns) < REDIAL_NS {
                    return Err(loss);
                }
                let mut down = Vec::new();
                self.redial(i, now_ns, &mut down);
                match down.first() {
                    Some(&(_, loss)) => Err(loss),
                    None => Ok(()),
                }
            }
        }
    }

    fn redial(&mut self, i: usize, now_ns: u64, down: &mut Vec<(u32, Loss)>) {
        self.counters.dialled += 1;
        let c = &mut self.conns[i];
        c.out.clear();
        c.inbuf.clear();
        c.framer = Framer::default();
        c.tls = None;
        let mut sock = match TcpStream::connect(self.target) {
            Ok(s) => s,
            Err(_) => {
                self.counters.refused += 1;
                c.state = State::Down {
                    at_ns: now_ns,
                    loss: Loss::Refused,
                };
                down.push((i as u32, Loss::Refused));
                return;
            }
        };
        // Calls are small messages that must leave now, not wait for more.
        let _ = sock.set_nodelay(true);
        if self
            .poll
            .registry()
            .register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)
            .is_err()
        {
            self.counters.refused += 1;
            c.state = State::Down {
                at_ns: now_ns,
                loss: Loss::Refused,
            };
            down.push((i as u32, Loss::Refused));
            return;
        }
        if let Some(t) = &self.tls {
            match ClientConnection::new(Arc::clone(&t.config), t.server_name.clone()) {
                Ok(mut tls) => {
                    // Room for the calls a rate can start before the
                    // handshake completes; past it `send` counts them.
                    tls.set_buffer_limit(Some(MAX_QUEUED));
                    c.tls = Some(tls);
                }
                Err(_) => {
                    self.counters.tls_failed += 1;
                    let _ = self.poll.registry().deregister(&mut sock);
                    c.state = State::Down {
                        at_ns: now_ns,
                        loss: Loss::TlsFailed,
                    };
                    down.push((i as u32, Loss::TlsFailed));
                    return;
                }
            }
        }
        c.sock = Some(sock);
        c.state = State::Connecting;
    }

    /// Queues a message on connection `i` (written by [`Conns::flush`]);
    /// false if the connection is down or its queue is full (counted).
    pub fn send(&mut self, i: usize, msg: &[u8]) -> bool {
        let c = &mut self.conns[i];
        if matches!(c.state, State::Down { .. }) {
            return false;
        }
        match &mut c.tls {
            Some(tls) => {
                // rustls buffers plaintext until the handshake completes and
                // refuses (short write) past its buffer limit.
                match tls.writer().write(msg) {
                    Ok(n) if n == msg.len() => true,
                    _ => {
                        self.counters.queue_full += 1;
                        false
                    }
                }
            }
            None => {
                if c.out.len() + msg.len() > MAX_QUEUED {
                    self.counters.queue_full += 1;
                    return false;
                }
                c.out.extend_from_slice(msg);
                true
            }
        }
    }

    /// Writes what every open connection has queued, as far as the kernel
    /// takes it; connections that fail go into `out.down`.
    pub fn flush(&mut self, now_ns: u64, out: &mut Received) {
        for i in 0..self.conns.len() {
            if matches!(self.conns[i].state, State::Open) {
                if let Err(loss) = self.write(i) {
                    self.take_down(i, now_ns, loss, out);
                }
            }
        }
    }

    fn write(&mut self, i: usize) -> Result<(), Loss> {
        let c = &mut self.conns[i];
        let Some(sock) = c.sock.as_mut() else {
            return Ok(());
        };
        match &mut c.tls {
            Some(tls) => {
                while tls.wants_write() {
                    match tls.write_tls(sock) {
                        Ok(0) => return Err(Loss::Closed),
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => return Err(Loss::Closed),
                    }
                }
            }
            None => {
                let mut done = 0;
                while done < c.out.len() {
                    match sock.write(&c.out[done..]) {
                        Ok(0) => return Err(Loss::Closed),
                        Ok(n) => done += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => return Err(Loss::Closed),
                    }
                }
                c.out.drain(..done);
            }
        }
        Ok(())
    }

    /// Waits up to `timeout` for the connections, then reads every one
    /// that is ready into `out` and completes dials; returns the number of
    /// messages read.
    pub fn poll(
        &mut self,
        timeout: Duration,
        now_ns: u64,
        out: &mut Received,
    ) -> io::Result<usize> {
        let before = out.messages.len();
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(0),
            Err(e) => return Err(e),
        }
        let ready: Vec<(usize, bool, bool)> = self
            .events
            .iter()
            .map(|e| {
                (
                    e.token().0,
                    e.is_readable() || e.is_read_closed() || e.is_error(),
                    e.is_writable() || e.is_error(),
                )
            })
            .collect();
        for (i, readable, writable) in ready {
            if i >= self.conns.len() {
                continue;
            }
            if matches!(self.conns[i].state, State::Connecting) {
                match self.connected(i) {
                    Ok(true) => {
                        self.counters.opened += 1;
                        self.conns[i].state = State::Open;
                    }
                    Ok(false) => continue,
                    Err(()) => {
                        self.counters.refused += 1;
                        self.take_down(i, now_ns, Loss::Refused, out);
                        continue;
                    }
                }
            }
            if !matches!(self.conns[i].state, State::Open) {
                continue;
            }
            if readable {
                if let Err(loss) = self.read(i, out) {
                    self.take_down(i, now_ns, loss, out);
                    continue;
                }
            }
            // TLS answers its handshake from what it read; TCP continues a
            // write the kernel cut short.
            if writable || self.conns[i].tls.is_some() {
                if let Err(loss) = self.write(i) {
                    self.take_down(i, now_ns, loss, out);
                }
            }
        }
        Ok(out.messages.len() - before)
    }

    /// Whether a dial completed (Ok(false): not yet; Err: it failed).
    fn connected(&mut self, i: usize) -> Result<bool, ()> {
        let Some(sock) = self.conns[i].sock.as_ref() else {
            return Err(());
        };
        match sock.take_error() {
            Ok(None) => {}
            Ok(Some(_)) | Err(_) => return Err(()),
        }
        match sock.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(_) => Err(()),
        }
    }

    /// Reads connection `i` until the kernel has nothing more (the poll is
    /// edge-triggered) and frames what came.
    fn read(&mut self, i: usize, out: &mut Received) -> Result<(), Loss> {
        let c = &mut self.conns[i];
        let Some(sock) = c.sock.as_mut() else {
            return Ok(());
        };
        loop {
            match &mut c.tls {
                Some(tls) => {
                    let handshaking = tls.is_handshaking();
                    let lost = if handshaking {
                        Loss::TlsFailed
                    } else {
                        Loss::Closed
                    };
                    match tls.read_tls(sock) {
                        Ok(0) => return Err(lost),
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => return Err(lost),
                    }
                    if tls.process_new_packets().is_err() {
                        // Tell the peer why (the alert rustls queued).
                        let _ = tls.write_tls(sock);
                        return Err(Loss::TlsFailed);
                    }
                    loop {
                        match tls.reader().read(&mut self.chunk) {
                            Ok(0) => return Err(Loss::Closed),
                            Ok(n) => c.inbuf.extend_from_slice(&self.chunk[..n]),
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(_) => return Err(Loss::Closed),
                        }
                    }
                }
                None => match sock.read(&mut self.chunk) {
                    Ok(0) => return Err(Loss::Closed),
                    Ok(n) => c.inbuf.extend_from_slice(&self.chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return Err(Loss::Closed),
                },
            }
            // Frame after each read, so the buffer holds at most one
            // message's worth and a read's worth.
            let mut used = 0;
            loop {
                match c.framer.next(&c.inbuf[used..]) {
                    Ok(Frame::Incomplete) => break,
                    Ok(Frame::Ping(n)) | Ok(Frame::Skip(n)) => used += n,
                    Ok(Frame::Message(n)) => {
                        let at = out.bytes.len();
                        out.bytes.extend_from_slice(&c.inbuf[used..used + n]);
                        out.messages.push((i as u32, at..at + n));
                        used += n;
                    }
                    Err(_) => {
                        self.counters.framing_errors += 1;
                        return Err(Loss::Closed);
                    }
                }
            }
            c.inbuf.drain(..used);
        }
    }

    fn take_down(&mut self, i: usize, now_ns: u64, loss: Loss, out: &mut Received) {
        let c = &mut self.conns[i];
        if matches!(c.state, State::Down { .. }) {
            return;
        }
        match loss {
            Loss::Closed => self.counters.closed += 1,
            Loss::TlsFailed => self.counters.tls_failed += 1,
            // Counted where the dial failed.
            Loss::Refused => {}
        }
        if let Some(mut s) = c.sock.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        c.tls = None;
        c.out = Vec::new();
        c.inbuf = Vec::new();
        c.state = State::Down {
            at_ns: now_ns,
            loss,
        };
        out.down.push((i as u32, loss));
    }
}
