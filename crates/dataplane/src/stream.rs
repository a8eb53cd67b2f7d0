//! Stream mode: SIP over TCP and TLS, on the kernel's TCP stack, feeding
//! the same sans-IO [`PacketHandler`] the UDP workers drive.
//!
//! Thread layout: one stream thread, apart from the UDP workers, owns the
//! TCP and TLS listeners, every connection and one handler instance, in one
//! mio loop. AF_XDP cannot carry TCP (the kernel must own the handshake,
//! retransmissions and windows), and connections are few and long-lived
//! next to UDP datagrams, so one thread that never touches the UDP hot
//! path keeps that path exactly as it was; a second stream thread (sharded
//! by connection) can come when one core is not enough.
//!
//! What it does to a connection, all bounded:
//!
//! - TLS (rustls, [`super::tls`]): the handshake must complete within the
//!   message timeout; a failed one closes the connection, counted by
//!   reason ([`TlsFailure`]); messages are framed on the decrypted bytes;
//! - framing by Content-Length ([`sip::stream::Framer`], RFC 3261 section
//!   18.3): a receive buffer never holds more than one message's worth
//!   ([`FrameLimits::max_message`]); a framing error closes the connection,
//!   counted by reason;
//! - CRLF keep-alives (RFC 5626 section 4.4.1): a double CRLF is answered
//!   with a single one;
//! - caps: total connections and connections per source address (over
//!   either, the connection is accepted and closed at once, counted);
//! - idle timeout (nothing received), and a message timeout against slow
//!   senders (slowloris): a message that began must be complete within it;
//! - a bounded send queue per connection: a peer that does not read what
//!   it is sent is closed, not buffered for;
//! - answers go back on the connection a request came on
//!   ([`Peer::conn`]); a message for a connection that is gone is dropped
//!   and counted, never sent to the address by a new connection;
//! - a message for a TCP or TLS address with no connection named (a route
//!   target, or a next hop only a trusted source can name) goes on this
//!   layer's connection to that address, dialled when there is none
//!   (within the total cap; TLS only with a client configuration, which
//!   verifies the upstream's certificate for its IP address).
//!
//! Messages the handler sends over UDP (a TCP caller routed to a UDP
//! upstream, a response relayed to a UDP caller) leave from a UDP socket
//! of this thread, gathered over a round and sent with one `sendmmsg` per
//! [`UDP_BATCH`] datagrams ([`sys::TxBatch`]) instead of one `sendto`
//! each: by default on the listener's address and a port of its
//! own, whose answers this thread reads. The appliance gives it the SIP
//! port instead ([`StreamLayer::set_udp_socket`]), so UDP peers see the
//! edge's one address; in socket mode the workers read that port and hand
//! what belongs to a TCP or TLS peer back here. Requests that arrive on a
//! socket this thread reads are dropped unless
//! [`StreamConfig::udp_requests`] says otherwise: the SIP port's requests
//! are the workers' (behind the XDP filter's shields).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use std::sync::Arc;

use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};
use sip::stream::{Frame, FrameError, FrameLimits, Framer};

pub mod refusals;

use super::handoff::{self, HandoffRx, HandoffTx};
use super::tls::TlsFailure;
use super::{
    ConnId, Datagram, DropReason, OutboxBuffer, PacketHandler, Peer, Timestamp, Transport,
};
use refusals::{Cap, RefusalSummary, RefusalTally};

const TCP_LISTENER: Token = Token(0);
const UDP: Token = Token(1);
const TLS_LISTENER: Token = Token(2);
const WAKE: Token = Token(3);
const FIRST_CONN: usize = 4;
/// Most reads from one connection per readiness event before the others
/// get a turn (the connection is revisited on the next round).
const READS_PER_ROUND: usize = 8;
/// Bytes read per read call.
const READ_CHUNK: usize = 16 * 1024;
/// Most UDP datagrams read per round.
const UDP_PER_ROUND: usize = 64;
/// Bytes queued on a connection in one round before they are written at
/// once: messages for one connection are gathered and written once a
/// round (one syscall, or one TLS flush, for many messages), or sooner
/// when this much waits.
const WRITE_BATCH: usize = 16 * 1024;
/// Most UDP datagrams gathered before they are sent with one `sendmmsg`;
/// what a round gathers is sent at its end (or when this many wait). The
/// batch's buffers are allocated once, with the layer.
pub const UDP_BATCH: usize = 32;
/// How often connections are checked for timeouts.
const SWEEP_EVERY: u64 = 200_000_000;
/// Messages one handler call may send.
const STAGING_SLOTS: usize = 8;
/// Room for what a handler adds to a message it forwards (Via,
/// Record-Route, Content-Length).
const STAGING_EXTRA: usize = 4096;

/// How the stream layer listens and what it allows.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Where to listen for SIP over TCP, if anywhere.
    pub tcp: Option<SocketAddr>,
    /// Where to listen for SIP over TLS, if anywhere, and with what.
    pub tls: Option<(SocketAddr, Arc<ServerConfig>)>,
    /// How to connect to TLS upstreams (trusted roots, a client
    /// certificate); without it, messages for TLS addresses are dropped.
    pub tls_client: Option<Arc<ClientConfig>>,
    /// Header and body caps of one message.
    pub limits: FrameLimits,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections open at once from one source address (an IPv6
    /// source is its /64: one host can hold a whole /64).
    pub max_per_source: usize,
    /// Hand requests that arrive on the layer's UDP socket to the handler
    /// (off by default: only responses are expected there).
    pub udp_requests: bool,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// A message must be complete this long after its first byte arrived.
    pub message_timeout: Duration,
    /// Most bytes waiting to be written to one connection.
    pub max_queued: usize,
}

impl StreamConfig {
    /// Defaults, listening on `tcp`: 16 KiB header, 64 KiB body, 4096
    /// connections, 16 per source, 10 minutes idle, 10 s per message (and
    /// per TLS handshake), 64 KiB queued per connection. At most about
    /// 4096 x (80 + 64) KiB of buffers.
    pub fn new(tcp: SocketAddr) -> StreamConfig {
        StreamConfig {
            tcp: Some(tcp),
            ..StreamConfig::tls_only(None)
        }
    }

    /// Defaults, listening for TLS only (when given).
    pub fn tls_only(tls: Option<(SocketAddr, Arc<ServerConfig>)>) -> StreamConfig {
        StreamConfig {
            tcp: None,
            tls,
            tls_client: None,
            limits: FrameLimits::default(),
            max_connections: 4096,
            max_per_source: 16,
            udp_requests: false,
            idle_timeout: Duration::from_secs(600),
            message_timeout: Duration::from_secs(10),
            max_queued: 64 * 1024,
        }
    }
}

/// What the stream layer counted. Every message received is handled,
/// dropped by the handler, or lost with its connection under one reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamCounters {
    /// Connections accepted and kept.
    pub accepted: u64,
    /// Connections closed at once: the total cap was reached.
    pub refused_total: u64,
    /// Connections closed at once: their source had its cap open.
    pub refused_per_source: u64,
    /// Connections closed by their peer.
    pub closed_by_peer: u64,
    /// Connections closed on a read or write error.
    pub io_errors: u64,
    /// Connections closed for sending nothing for the idle timeout.
    pub idle_timeouts: u64,
    /// Connections closed for not completing a message in time.
    pub slow_timeouts: u64,
    /// Connections closed: header block over the limit.
    pub header_too_long: u64,
    /// Connections closed: a message without Content-Length.
    pub no_content_length: u64,
    /// Connections closed: a malformed Content-Length.
    pub bad_content_length: u64,
    /// Connections closed: Content-Length values that differ.
    pub conflicting_content_length: u64,
    /// Connections closed: body over the limit.
    pub body_too_long: u64,
    /// Connections closed: the peer did not read what it was sent.
    pub queue_overflow: u64,
    /// Messages framed and handed to the handler.
    pub messages: u64,
    /// Keep-alive pings answered.
    pub pings: u64,
    /// Messages the handler dropped (by reason in
    /// [`StreamLayer::handler_drops`]).
    pub handler_drops: u64,
    /// Messages queued on a connection.
    pub sent: u64,
    /// Messages for a connection that is gone.
    pub conn_gone: u64,
    /// Messages for a TLS address with no client configuration to dial it.
    pub no_stream_path: u64,
    /// Connections dialled to TCP or TLS addresses.
    pub dialled: u64,
    /// Dials that failed (refused, unreachable, over the total cap).
    pub dial_failed: u64,
    /// Messages UDP workers handed over (for stream peers).
    pub handed_over: u64,
    /// UDP datagrams received (responses to what this thread sent).
    pub udp_received: u64,
    /// UDP datagrams dropped for not being responses (see
    /// [`StreamConfig::udp_requests`]).
    pub udp_requests_refused: u64,
    /// UDP datagrams sent.
    pub udp_sent: u64,
    /// UDP datagrams the kernel refused, one per datagram: an error, or a
    /// send buffer that stayed full (EAGAIN) through the batch's bounded
    /// retry (SIP's retransmission timers cover those).
    pub udp_errors: u64,
    /// Handler events that found the ring to the control thread full.
    pub events_lost: u64,
    /// TLS handshakes completed.
    pub tls_handshakes: u64,
    /// TLS connections closed: the peer's certificate was missing,
    /// invalid or untrusted.
    pub tls_failed_certificate: u64,
    /// TLS connections closed: not TLS, or TLS we do not accept.
    pub tls_failed_protocol: u64,
    /// TLS connections closed: the peer sent an alert.
    pub tls_failed_alert: u64,
    /// TLS connections closed for another TLS error.
    pub tls_failed_other: u64,
    /// TLS connections closed: the handshake did not complete in time.
    pub tls_handshake_timeouts: u64,
    /// The connections' counters of SIP over TCP alone.
    pub tcp: TransportCounters,
    /// The connections' counters of SIP over TLS alone.
    pub tls: TransportCounters,
}

/// The connection counters of one transport (TCP or TLS), accepted and
/// dialled connections alike: the same events as the totals in
/// [`StreamCounters`] under the same names, so an operator can tell which
/// listener a refusal, a timeout or a framing error came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransportCounters {
    /// Connections open now (a gauge, not a counter).
    pub open: u64,
    /// Connections accepted and kept.
    pub accepted: u64,
    /// Connections dialled by this layer.
    pub dialled: u64,
    /// Connections closed at once: the total cap was reached.
    pub refused_total: u64,
    /// Connections closed at once: their source had its cap open.
    pub refused_per_source: u64,
    /// Connections closed by their peer.
    pub closed_by_peer: u64,
    /// Connections closed on a read or write error.
    pub io_errors: u64,
    /// Connections closed for sending nothing for the idle timeout.
    pub idle_timeouts: u64,
    /// Connections closed for not completing a message in time.
    pub slow_timeouts: u64,
    /// Connections closed: header block over the limit.
    pub header_too_long: u64,
    /// Connections closed: a message without Content-Length.
    pub no_content_length: u64,
    /// Connections closed: a malformed Content-Length.
    pub bad_content_length: u64,
    /// Connections closed: Content-Length values that differ.
    pub conflicting_content_length: u64,
    /// Connections closed: body over the limit.
    pub body_too_long: u64,
    /// Connections closed: the peer did not read what it was sent.
    pub queue_overflow: u64,
    /// TLS handshakes completed (TLS only).
    pub tls_handshakes: u64,
    /// TLS connections closed: the peer's certificate was missing,
    /// invalid or untrusted.
    pub tls_failed_certificate: u64,
    /// TLS connections closed: not TLS, or TLS we do not accept.
    pub tls_failed_protocol: u64,
    /// TLS connections closed: the peer sent an alert.
    pub tls_failed_alert: u64,
    /// TLS connections closed for another TLS error.
    pub tls_failed_other: u64,
    /// TLS connections closed: the handshake did not complete in time.
    pub tls_handshake_timeouts: u64,
}

impl TransportCounters {
    /// Every counter with its name (the names of [`StreamCounters::named`]);
    /// the `open` gauge is apart.
    pub fn named(&self) -> [(&'static str, u64); 20] {
        [
            ("accepted", self.accepted),
            ("dialled", self.dialled),
            ("refused_total", self.refused_total),
            ("refused_per_source", self.refused_per_source),
            ("closed_by_peer", self.closed_by_peer),
            ("io_errors", self.io_errors),
            ("idle_timeouts", self.idle_timeouts),
            ("slow_timeouts", self.slow_timeouts),
            ("header_too_long", self.header_too_long),
            ("no_content_length", self.no_content_length),
            ("bad_content_length", self.bad_content_length),
            (
                "conflicting_content_length",
                self.conflicting_content_length,
            ),
            ("body_too_long", self.body_too_long),
            ("queue_overflow", self.queue_overflow),
            ("tls_handshakes", self.tls_handshakes),
            ("tls_failed_certificate", self.tls_failed_certificate),
            ("tls_failed_protocol", self.tls_failed_protocol),
            ("tls_failed_alert", self.tls_failed_alert),
            ("tls_failed_other", self.tls_failed_other),
            ("tls_handshake_timeouts", self.tls_handshake_timeouts),
        ]
    }

    /// Counts a connection of this transport closed for `why`.
    fn count_close(&mut self, why: Close) {
        self.open = self.open.saturating_sub(1);
        let n = match why {
            Close::ByPeer => &mut self.closed_by_peer,
            Close::Io => &mut self.io_errors,
            Close::Idle => &mut self.idle_timeouts,
            Close::Slow => &mut self.slow_timeouts,
            Close::Framing(FrameError::HeaderTooLong) => &mut self.header_too_long,
            Close::Framing(FrameError::NoContentLength) => &mut self.no_content_length,
            Close::Framing(FrameError::BadContentLength) => &mut self.bad_content_length,
            Close::Framing(FrameError::ConflictingContentLength) => {
                &mut self.conflicting_content_length
            }
            Close::Framing(FrameError::BodyTooLong) => &mut self.body_too_long,
            Close::Overflow => &mut self.queue_overflow,
            Close::Tls(TlsFailure::Certificate) => &mut self.tls_failed_certificate,
            Close::Tls(TlsFailure::Protocol) => &mut self.tls_failed_protocol,
            Close::Tls(TlsFailure::Alert) => &mut self.tls_failed_alert,
            Close::Tls(TlsFailure::Other) => &mut self.tls_failed_other,
            Close::HandshakeTimeout => &mut self.tls_handshake_timeouts,
            // A dial that failed is counted in the totals' dial_failed.
            Close::DialFailed => return,
        };
        *n += 1;
    }
}

impl StreamCounters {
    /// Every counter with its name (as in metrics and stats).
    pub fn named(&self) -> [(&'static str, u64); 33] {
        [
            ("accepted", self.accepted),
            ("refused_total", self.refused_total),
            ("refused_per_source", self.refused_per_source),
            ("closed_by_peer", self.closed_by_peer),
            ("io_errors", self.io_errors),
            ("idle_timeouts", self.idle_timeouts),
            ("slow_timeouts", self.slow_timeouts),
            ("header_too_long", self.header_too_long),
            ("no_content_length", self.no_content_length),
            ("bad_content_length", self.bad_content_length),
            (
                "conflicting_content_length",
                self.conflicting_content_length,
            ),
            ("body_too_long", self.body_too_long),
            ("queue_overflow", self.queue_overflow),
            ("messages", self.messages),
            ("pings", self.pings),
            ("handler_drops", self.handler_drops),
            ("sent", self.sent),
            ("conn_gone", self.conn_gone),
            ("no_stream_path", self.no_stream_path),
            ("dialled", self.dialled),
            ("dial_failed", self.dial_failed),
            ("handed_over", self.handed_over),
            ("udp_received", self.udp_received),
            ("udp_requests_refused", self.udp_requests_refused),
            ("udp_sent", self.udp_sent),
            ("udp_errors", self.udp_errors),
            ("events_lost", self.events_lost),
            ("tls_handshakes", self.tls_handshakes),
            ("tls_failed_certificate", self.tls_failed_certificate),
            ("tls_failed_protocol", self.tls_failed_protocol),
            ("tls_failed_alert", self.tls_failed_alert),
            ("tls_failed_other", self.tls_failed_other),
            ("tls_handshake_timeouts", self.tls_handshake_timeouts),
        ]
    }

    /// The counters of one transport.
    fn transport(&mut self, tls: bool) -> &mut TransportCounters {
        if tls {
            &mut self.tls
        } else {
            &mut self.tcp
        }
    }

    fn count_framing(&mut self, e: FrameError) {
        *match e {
            FrameError::HeaderTooLong => &mut self.header_too_long,
            FrameError::NoContentLength => &mut self.no_content_length,
            FrameError::BadContentLength => &mut self.bad_content_length,
            FrameError::ConflictingContentLength => &mut self.conflicting_content_length,
            FrameError::BodyTooLong => &mut self.body_too_long,
        } += 1;
    }
}

/// Why a connection was closed (each counted once).
#[derive(Debug, Clone, Copy)]
enum Close {
    ByPeer,
    Io,
    Idle,
    Slow,
    Framing(FrameError),
    Overflow,
    Tls(TlsFailure),
    HandshakeTimeout,
    DialFailed,
}

/// What one TLS read round left.
enum Step {
    More,
    Done,
    Closed,
}

struct Conn {
    id: u64,
    sock: TcpStream,
    /// The TLS session, on a TLS connection.
    tls: Option<Box<Connection>>,
    accepted_at: u64,
    /// Dialled by this layer: to what (it is reused for that target).
    outbound: Option<(SocketAddr, Transport)>,
    /// A dial not yet answered: nothing is written until it is.
    connecting: bool,
    peer: SocketAddr,
    rx: Vec<u8>,
    framer: Framer,
    /// Bytes to write: on TCP, the wire bytes; on TLS, the plaintext of
    /// this round's messages, handed to rustls in one write when the
    /// connection is flushed, so that they share TLS records (rustls seals
    /// every write into records of its own).
    tx: Vec<u8>,
    tx_at: usize,
    last_active: u64,
    message_started: Option<u64>,
    writable: bool,
    /// Bytes queued this round, not yet written (see [`WRITE_BATCH`]).
    unflushed: usize,
}

/// The stream layer: a TCP listener, its connections and a handler; see
/// the [module documentation](self).
pub struct StreamLayer<H: PacketHandler> {
    cfg: StreamConfig,
    poll: Poll,
    events: Events,
    tcp: Option<(TcpListener, SocketAddr)>,
    tls: Option<(TcpListener, SocketAddr, Arc<ServerConfig>)>,
    udp: UdpSocket,
    udp_local: SocketAddr,
    udp_buf: Vec<u8>,
    /// UDP datagrams of this round, not yet sent (see [`UDP_BATCH`]).
    udp_tx: sys::TxBatch,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    by_id: HashMap<u64, usize>,
    by_target: HashMap<(SocketAddr, Transport), usize>,
    per_source: HashMap<IpAddr, usize>,
    open: usize,
    next_id: u64,
    /// Connections with unread data left (their read budget ran out).
    pending: Vec<usize>,
    /// Connections with messages queued this round, written at its end.
    unflushed: Vec<usize>,
    udp_pending: bool,
    ready: Vec<(Token, bool)>,
    staging: Option<OutboxBuffer>,
    waker: Arc<mio::Waker>,
    inbound: Vec<HandoffRx>,
    inbound_buf: Vec<u8>,
    handler: H,
    handler_drops: Vec<u64>,
    counters: StreamCounters,
    refusals: RefusalTally,
    last_sweep: u64,
}

impl<H: PacketHandler> StreamLayer<H> {
    /// Binds the listener (and the UDP socket, on the listener's address
    /// and a free port) and takes the handler.
    pub fn open(cfg: StreamConfig, handler: H) -> io::Result<StreamLayer<H>> {
        Self::open_with(cfg, |_, _| handler)
    }

    /// [`StreamLayer::open`], making the handler once the listeners'
    /// addresses are known (a proxy names them in its Record-Route): TCP,
    /// then TLS.
    pub fn open_with(
        mut cfg: StreamConfig,
        make: impl FnOnce(Option<SocketAddr>, Option<SocketAddr>) -> H,
    ) -> io::Result<StreamLayer<H>> {
        let poll = Poll::new()?;
        let listen = |addr: SocketAddr, token| -> io::Result<(TcpListener, SocketAddr)> {
            let mut l = TcpListener::bind(addr)?;
            let local = l.local_addr()?;
            poll.registry()
                .register(&mut l, token, Interest::READABLE)?;
            Ok((l, local))
        };
        let tcp = cfg.tcp.map(|a| listen(a, TCP_LISTENER)).transpose()?;
        let tls = match &cfg.tls {
            Some((addr, server)) => {
                let (l, local) = listen(*addr, TLS_LISTENER)?;
                Some((l, local, server.clone()))
            }
            None => None,
        };
        cfg.tcp = tcp.as_ref().map(|t| t.1);
        if let (Some((a, _)), Some(t)) = (cfg.tls.as_mut(), &tls) {
            *a = t.1;
        }
        let Some(local) = tcp.as_ref().map(|t| t.1).or(tls.as_ref().map(|t| t.1)) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a stream layer needs a TCP or a TLS address",
            ));
        };
        let mut udp = UdpSocket::bind(SocketAddr::new(local.ip(), 0))?;
        let udp_local = udp.local_addr()?;
        poll.registry()
            .register(&mut udp, UDP, Interest::READABLE)?;
        let slot = cfg.limits.max_message() + STAGING_EXTRA;
        let handler = make(cfg.tcp, tls.as_ref().map(|t| t.1));
        let waker = Arc::new(mio::Waker::new(poll.registry(), WAKE)?);
        Ok(StreamLayer {
            poll,
            events: Events::with_capacity(256),
            tcp,
            tls,
            udp,
            udp_local,
            udp_buf: vec![0; 65_536],
            udp_tx: sys::TxBatch::new(UDP_BATCH),
            conns: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
            by_target: HashMap::new(),
            per_source: HashMap::new(),
            open: 0,
            next_id: 1,
            pending: Vec::new(),
            unflushed: Vec::new(),
            udp_pending: false,
            ready: Vec::with_capacity(256),
            staging: Some(OutboxBuffer::new(STAGING_SLOTS, slot)),
            waker,
            inbound: Vec::new(),
            inbound_buf: vec![0; slot],
            handler_drops: vec![0; H::Drop::NAMES.len()],
            handler,
            counters: StreamCounters::default(),
            refusals: RefusalTally::default(),
            last_sweep: 0,
            cfg,
        })
    }

    /// The address the TCP listener got (port 0 in the configuration is
    /// replaced by the kernel's choice).
    pub fn local_tcp(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().map(|t| t.1)
    }

    /// The address the TLS listener got.
    pub fn local_tls(&self) -> Option<SocketAddr> {
        self.tls.as_ref().map(|t| t.1)
    }

    /// TLS connections accepted from now on use `config` (a reloaded
    /// certificate); open ones keep theirs.
    pub fn set_tls(&mut self, config: Arc<ServerConfig>) {
        if let Some(t) = self.tls.as_mut() {
            t.2 = config;
        }
    }

    /// Sends this layer's UDP from `socket` instead of its own port: the
    /// SIP port, so that a UDP peer sees requests and relayed responses
    /// come from the address it sends to (a NAT or a firewall that admits
    /// only that address drops anything else). With `receive` false the
    /// socket is only sent from: another thread (the UDP workers, socket
    /// mode) reads what arrives on it.
    pub fn set_udp_socket(&mut self, socket: std::net::UdpSocket, receive: bool) -> io::Result<()> {
        // What waits leaves from the socket it was gathered for.
        self.flush_udp();
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        let mut udp = UdpSocket::from_std(socket);
        if receive {
            self.poll
                .registry()
                .register(&mut udp, UDP, Interest::READABLE)?;
        }
        let mut old = std::mem::replace(&mut self.udp, udp);
        self.poll.registry().deregister(&mut old)?;
        self.udp_local = local;
        self.udp_pending = false;
        Ok(())
    }

    /// The UDP socket's address.
    pub fn local_udp(&self) -> SocketAddr {
        self.udp_local
    }

    /// A ring of `bytes` from a UDP worker to this layer: the worker's
    /// handler's messages for TCP and TLS peers arrive through it (see
    /// [`handoff`]).
    pub fn handoff(&mut self, bytes: usize) -> HandoffTx {
        let max = self.cfg.limits.max_message() + STAGING_EXTRA;
        let (tx, rx) = handoff::channel(bytes, max, self.waker.clone());
        self.inbound.push(rx);
        tx
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.open
    }

    /// The counters so far.
    pub fn counters(&self) -> &StreamCounters {
        &self.counters
    }

    /// The last window of connections refused by the caps that had any
    /// (see [`refusals`]): one summary per window, however many there were.
    pub fn refusals(&self) -> Option<RefusalSummary> {
        self.refusals.last()
    }

    /// Handler drops, indexed as the handler's [`DropReason::NAMES`].
    pub fn handler_drops(&self) -> &[u64] {
        &self.handler_drops
    }

    /// The handler (for control messages and statistics).
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// One round: waits up to `timeout` for readiness, then accepts, reads,
    /// frames, handles, writes, and closes what timed out.
    pub fn poll_once(&mut self, timeout: Duration) -> io::Result<()> {
        let backlog = self.inbound.iter().any(HandoffRx::has_records);
        let timeout = if self.pending.is_empty() && !self.udp_pending && !backlog {
            timeout
        } else {
            Duration::ZERO
        };
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let now = crate::now().as_nanos();
        self.handler.between_batches(Timestamp::from_nanos(now));
        self.ready.clear();
        for e in self.events.iter() {
            self.ready.push((e.token(), e.is_writable()));
        }
        for i in 0..self.ready.len() {
            let (token, writable) = self.ready[i];
            match token {
                TCP_LISTENER => self.accept_all(now, false),
                TLS_LISTENER => self.accept_all(now, true),
                WAKE => {} // the rings are read below, every round
                UDP => self.udp_pending = true,
                Token(t) => {
                    let slot = t - FIRST_CONN;
                    if writable {
                        self.writable(slot);
                    }
                    self.read(slot, now);
                }
            }
        }
        let pending = std::mem::take(&mut self.pending);
        for &slot in &pending {
            self.read(slot, now);
        }
        // Hand the (empty) vector back for reuse, keeping what was added.
        let mut pending = pending;
        pending.clear();
        pending.append(&mut self.pending);
        self.pending = pending;
        if self.udp_pending {
            self.read_udp(now);
        }
        self.read_inbound(now);
        self.flush_udp();
        self.flush_queued();
        if now.saturating_sub(self.last_sweep) >= SWEEP_EVERY {
            self.last_sweep = now;
            self.sweep(now);
        }
        Ok(())
    }

    /// Sends the UDP datagrams gathered so far, counting each one the
    /// kernel took or refused.
    fn flush_udp(&mut self) {
        if self.udp_tx.is_empty() {
            return;
        }
        let r = self.udp_tx.flush(&[self.udp.as_raw_fd()]);
        self.counters.udp_sent += r.sent;
        self.counters.udp_errors += r.errors + r.blocked;
    }

    /// Writes what this round queued, once per connection.
    fn flush_queued(&mut self) {
        let mut slots = std::mem::take(&mut self.unflushed);
        for &slot in &slots {
            // A slot closed (and perhaps reused) since: flushing a
            // connection with nothing queued writes nothing.
            if let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) {
                c.unflushed = 0;
                self.flush(slot);
            }
        }
        slots.clear();
        self.unflushed = slots;
    }

    fn accept_all(&mut self, now: u64, tls: bool) {
        loop {
            let accepted = match (tls, &self.tcp, &self.tls) {
                (false, Some((l, _)), _) => l.accept(),
                (true, _, Some((l, _, _))) => l.accept(),
                _ => return,
            };
            let (sock, peer) = match accepted {
                Ok(a) => a,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Out of descriptors, or the peer reset before we got to
                // it: try again on the next readiness.
                Err(_) => return,
            };
            if self.open >= self.cfg.max_connections {
                self.counters.refused_total += 1;
                self.counters.transport(tls).refused_total += 1;
                self.refusals.note(now, source_key(peer.ip()), Cap::Total);
                continue; // dropped: closed
            }
            let n = self.per_source.entry(source_key(peer.ip())).or_insert(0);
            if *n >= self.cfg.max_per_source {
                self.counters.refused_per_source += 1;
                self.counters.transport(tls).refused_per_source += 1;
                self.refusals
                    .note(now, source_key(peer.ip()), Cap::PerSource);
                continue;
            }
            *n += 1;
            let slot = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            let mut sock = sock;
            if self
                .poll
                .registry()
                .register(&mut sock, Token(slot + FIRST_CONN), Interest::READABLE)
                .is_err()
            {
                self.free.push(slot);
                self.release_source(source_key(peer.ip()));
                self.counters.io_errors += 1;
                self.counters.transport(tls).io_errors += 1;
                continue;
            }
            let _ = sock.set_nodelay(true);
            let session = match (tls, &self.tls) {
                (true, Some((_, _, config))) => match ServerConnection::new(config.clone()) {
                    Ok(mut s) => {
                        // rustls's own buffer is the send queue's cap.
                        s.set_buffer_limit(Some(self.cfg.max_queued));
                        Some(Box::new(Connection::Server(s)))
                    }
                    Err(_) => {
                        let _ = self.poll.registry().deregister(&mut sock);
                        self.free.push(slot);
                        self.release_source(source_key(peer.ip()));
                        self.counters.tls_failed_other += 1;
                        self.counters.tls.tls_failed_other += 1;
                        continue;
                    }
                },
                _ => None,
            };
            let id = self.next_id;
            self.next_id += 1;
            self.by_id.insert(id, slot);
            self.conns[slot] = Some(Conn {
                id,
                sock,
                tls: session,
                accepted_at: now,
                outbound: None,
                connecting: false,
                peer,
                rx: Vec::new(),
                framer: Framer::new(self.cfg.limits),
                tx: Vec::new(),
                tx_at: 0,
                last_active: now,
                message_started: None,
                writable: false,
                unflushed: 0,
            });
            self.open += 1;
            self.counters.accepted += 1;
            let t = self.counters.transport(tls);
            t.accepted += 1;
            t.open += 1;
            // Data may have arrived with the handshake.
            self.pending.push(slot);
        }
    }

    fn release_source(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_source.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&ip);
            }
        }
    }

    /// Reads what connection `slot` has (a bounded number of times) and
    /// handles every whole message.
    fn read(&mut self, slot: usize, now: u64) {
        let cap = self.cfg.limits.max_message();
        for _ in 0..READS_PER_ROUND {
            let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
                return;
            };
            if c.tls.is_some() {
                match self.read_tls(slot, now) {
                    Step::More => continue,
                    Step::Done | Step::Closed => return,
                }
            }
            let have = c.rx.len();
            let room = cap.saturating_sub(have).min(READ_CHUNK);
            if room == 0 {
                // Cannot happen: the framer decides within one message's
                // worth. Treated as a header overrun.
                return self.close(slot, Close::Framing(FrameError::HeaderTooLong));
            }
            c.rx.resize(have + room, 0);
            let r = c.sock.read(&mut c.rx[have..]);
            let got = match r {
                Ok(n) => n,
                Err(ref e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(ref e) if e.kind() == io::ErrorKind::Interrupted => {
                    c.rx.truncate(have);
                    continue;
                }
                Err(_) => {
                    c.rx.truncate(have);
                    return self.close(slot, Close::Io);
                }
            };
            c.rx.truncate(have + got);
            match r {
                Ok(0) => {
                    // The peer closed: whole messages already read were
                    // handled; a partial one is lost with it.
                    return self.close(slot, Close::ByPeer);
                }
                Ok(_) => {
                    c.last_active = now;
                    if !self.frame(slot, now) {
                        return;
                    }
                }
                Err(_) => return, // would block: all read
            }
        }
        // Budget spent with data possibly left: revisit next round.
        if self.conns.get(slot).is_some_and(Option::is_some) {
            self.pending.push(slot);
        }
    }

    /// One read from TLS connection `slot`: the records the socket has,
    /// the handshake's progress, and the decrypted bytes framed.
    fn read_tls(&mut self, slot: usize, now: u64) -> Step {
        let cap = self.cfg.limits.max_message();
        let Some(c) = self.conns[slot].as_mut() else {
            return Step::Closed;
        };
        let Conn { tls, sock, .. } = c;
        let Some(tls) = tls.as_mut() else {
            return Step::Closed;
        };
        match tls.read_tls(sock) {
            Ok(0) => {
                self.close(slot, Close::ByPeer);
                return Step::Closed;
            }
            Ok(_) => c.last_active = now,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Done,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Step::More,
            Err(_) => {
                self.close(slot, Close::Io);
                return Step::Closed;
            }
        }
        let Some(tls) = c.tls.as_mut() else {
            return Step::Closed;
        };
        let was_handshaking = tls.is_handshaking();
        let state = match tls.process_new_packets() {
            Ok(state) => state,
            Err(e) => {
                // Send the alert rustls queued, then close.
                let _ = tls.write_tls(&mut c.sock);
                self.close(slot, Close::Tls(TlsFailure::of(&e)));
                return Step::Closed;
            }
        };
        if was_handshaking && !tls.is_handshaking() {
            self.counters.tls_handshakes += 1;
            self.counters.tls.tls_handshakes += 1;
        }
        let mut available = state.plaintext_bytes_to_read();
        let peer_closed = state.peer_has_closed();
        while available > 0 {
            let Some(c) = self.conns[slot].as_mut() else {
                return Step::Closed;
            };
            let Some(tls) = c.tls.as_mut() else {
                return Step::Closed;
            };
            let have = c.rx.len();
            let room = cap.saturating_sub(have).min(available);
            if room == 0 {
                self.close(slot, Close::Framing(FrameError::HeaderTooLong));
                return Step::Closed;
            }
            c.rx.resize(have + room, 0);
            let got = tls.reader().read(&mut c.rx[have..]).unwrap_or(0);
            c.rx.truncate(have + got);
            if got == 0 {
                break;
            }
            available -= got.min(available);
            if !self.frame(slot, now) {
                return Step::Closed;
            }
        }
        // Handshake records, alerts, pongs and answers out.
        if !self.flush(slot) {
            return Step::Closed;
        }
        if peer_closed {
            self.close(slot, Close::ByPeer);
            return Step::Closed;
        }
        Step::More
    }

    /// Frames and handles what connection `slot` holds; false when it was
    /// closed.
    fn frame(&mut self, slot: usize, now: u64) -> bool {
        let mut completed = false;
        loop {
            let Some(c) = self.conns[slot].as_mut() else {
                return false;
            };
            match c.framer.next(&c.rx) {
                Ok(Frame::Incomplete) => break,
                Ok(Frame::Skip(n)) => {
                    c.rx.drain(..n);
                }
                Ok(Frame::Ping(n)) => {
                    c.rx.drain(..n);
                    self.counters.pings += 1;
                    if !self.queue(slot, b"\r\n") {
                        return false;
                    }
                }
                Ok(Frame::Message(n)) => {
                    completed = true;
                    self.counters.messages += 1;
                    let rx = std::mem::take(&mut c.rx);
                    let transport = if c.tls.is_some() {
                        Transport::Tls
                    } else {
                        Transport::Tcp
                    };
                    let from = Peer::on(c.peer, transport, ConnId(c.id));
                    self.handle(now, from, &rx[..n]);
                    match self.conns[slot].as_mut() {
                        Some(c) => {
                            c.rx = rx;
                            c.rx.drain(..n);
                        }
                        None => return false,
                    }
                }
                Err(e) => {
                    self.close(slot, Close::Framing(e));
                    return false;
                }
            }
        }
        if let Some(c) = self.conns[slot].as_mut() {
            c.message_started = match (c.rx.is_empty(), c.message_started) {
                (true, _) => None,
                (false, Some(t)) if !completed => Some(t),
                (false, _) => Some(now),
            };
        }
        self.conns[slot].is_some()
    }

    /// Hands one message to the handler and sends what it wrote.
    fn handle(&mut self, now: u64, from: Peer, payload: &[u8]) {
        let local = match from.transport {
            Transport::Tls => self.local_tls(),
            _ => self.local_tcp(),
        };
        let pkt = Datagram {
            transport: from.transport,
            conn: from.conn,
            ..Datagram::udp(from.addr, local.unwrap_or(self.udp_local), payload)
        };
        self.handle_datagram(now, &pkt);
    }

    fn handle_datagram(&mut self, now: u64, pkt: &Datagram<'_>) {
        let mut staging = self.staging.take().expect("staging is put back");
        staging.clear();
        let r = self
            .handler
            .handle(Timestamp::from_nanos(now), pkt, &mut staging.outbox());
        if let Err(d) = r {
            self.counters.handler_drops += 1;
            if let Some(n) = self.handler_drops.get_mut(d.index()) {
                *n += 1;
            }
        }
        for (to, bytes) in staging.sent() {
            self.deliver(now, to, bytes);
        }
        self.staging = Some(staging);
    }

    /// Sends one message the handler wrote: over UDP from this layer's
    /// socket, on the connection named, or to a target's connection.
    fn deliver(&mut self, now: u64, to: Peer, bytes: &[u8]) {
        if !to.transport.is_stream() {
            if bytes.len() > sys::TX_SLOT {
                // Longer than a batch slot (a large message from a stream
                // caller): sent alone, after what was gathered before it.
                self.flush_udp();
                match self.udp.send_to(bytes, to.addr) {
                    Ok(_) => self.counters.udp_sent += 1,
                    Err(_) => self.counters.udp_errors += 1,
                }
                return;
            }
            if self.udp_tx.is_full() {
                self.flush_udp();
            }
            self.udp_tx.push(bytes, 0, to.addr);
            return;
        }
        let Some(conn) = to.conn else {
            return self.send_to_target(now, to.addr, to.transport, bytes);
        };
        match self.by_id.get(&conn.0) {
            Some(&slot) => {
                if self.queue(slot, bytes) {
                    self.counters.sent += 1;
                }
            }
            None => self.counters.conn_gone += 1,
        }
    }

    /// Sends what the UDP workers handed over: every record each ring held
    /// when the round began. Bounded by that (a busy worker cannot keep the
    /// thread from its sockets), and not by a count: a fixed count per round
    /// lets a ring that filled while the thread waited for its core fill
    /// further, and the workers drop what does not fit.
    fn read_inbound(&mut self, now: u64) {
        let mut buf = std::mem::take(&mut self.inbound_buf);
        for i in 0..self.inbound.len() {
            let mut left = self.inbound[i].waiting();
            while left > 0 {
                let Some((to, bytes)) = self.inbound[i].next(&mut buf) else {
                    break;
                };
                left = left.saturating_sub(handoff::HEADER + bytes.len());
                self.counters.handed_over += 1;
                // Only stream peers are handed over; anything else is a bug
                // of the sender, not a datagram to send from here.
                if to.transport.is_stream() {
                    self.deliver(now, to, bytes);
                }
            }
        }
        self.inbound_buf = buf;
    }

    /// Sends `bytes` on this layer's connection to `addr` over
    /// `transport`, dialling one when there is none.
    fn send_to_target(&mut self, now: u64, addr: SocketAddr, transport: Transport, bytes: &[u8]) {
        let slot = match self.by_target.get(&(addr, transport)) {
            Some(&slot) => slot,
            None => match self.dial(now, addr, transport) {
                Some(slot) => slot,
                None => return,
            },
        };
        if self.queue(slot, bytes) {
            self.counters.sent += 1;
        }
    }

    /// Opens a connection to `addr` (non-blocking: it completes later).
    fn dial(&mut self, now: u64, addr: SocketAddr, transport: Transport) -> Option<usize> {
        let tls = match (transport, &self.cfg.tls_client) {
            (Transport::Tls, None) => {
                self.counters.no_stream_path += 1;
                return None;
            }
            (Transport::Tls, Some(client)) => {
                let name = ServerName::IpAddress(addr.ip().into());
                match ClientConnection::new(client.clone(), name) {
                    Ok(mut c) => {
                        c.set_buffer_limit(Some(self.cfg.max_queued));
                        Some(Box::new(Connection::Client(c)))
                    }
                    Err(_) => {
                        self.counters.dial_failed += 1;
                        return None;
                    }
                }
            }
            _ => None,
        };
        if self.open >= self.cfg.max_connections {
            self.counters.dial_failed += 1;
            return None;
        }
        let Ok(mut sock) = TcpStream::connect(addr) else {
            self.counters.dial_failed += 1;
            return None;
        };
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let interest = Interest::READABLE | Interest::WRITABLE;
        if self
            .poll
            .registry()
            .register(&mut sock, Token(slot + FIRST_CONN), interest)
            .is_err()
        {
            self.free.push(slot);
            self.counters.dial_failed += 1;
            return None;
        }
        let _ = sock.set_nodelay(true);
        let id = self.next_id;
        self.next_id += 1;
        self.by_id.insert(id, slot);
        self.by_target.insert((addr, transport), slot);
        self.conns[slot] = Some(Conn {
            id,
            sock,
            tls,
            accepted_at: now,
            outbound: Some((addr, transport)),
            connecting: true,
            peer: addr,
            rx: Vec::new(),
            framer: Framer::new(self.cfg.limits),
            tx: Vec::new(),
            tx_at: 0,
            last_active: now,
            message_started: None,
            writable: true,
            unflushed: 0,
        });
        self.open += 1;
        self.counters.dialled += 1;
        let t = self.counters.transport(transport == Transport::Tls);
        t.dialled += 1;
        t.open += 1;
        Some(slot)
    }

    /// Connection `slot` can be written to: a dial that completed (or
    /// failed), or room for what is queued.
    fn writable(&mut self, slot: usize) {
        let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if c.connecting {
            match (c.sock.take_error(), c.sock.peer_addr()) {
                (Ok(None), Ok(_)) => c.connecting = false,
                // Not yet (a spurious wakeup).
                (Ok(None), Err(e)) if e.kind() == io::ErrorKind::NotConnected => return,
                _ => return self.close(slot, Close::DialFailed),
            }
        }
        self.flush(slot);
    }

    /// Queues `bytes` on connection `slot`, written at the end of the
    /// round with whatever else the round queued for it (or at once when
    /// [`WRITE_BATCH`] bytes wait); false when the connection was closed
    /// (queue over its cap, write error).
    fn queue(&mut self, slot: usize, bytes: &[u8]) -> bool {
        let Some(c) = self.conns[slot].as_mut() else {
            return false;
        };
        if c.unflushed > 0 && c.unflushed + bytes.len() > WRITE_BATCH {
            // Write what waits first: the cap below is for a peer that does
            // not read, not for a batch this thread has not written yet.
            c.unflushed = 0;
            if !self.flush(slot) {
                return false;
            }
        }
        let Some(c) = self.conns[slot].as_mut() else {
            return false;
        };
        // On TLS the plaintext waits here until the flush (at most
        // WRITE_BATCH bytes and a message, see above), where rustls's
        // buffer limit is the cap.
        if c.tls.is_none() && c.tx.len() - c.tx_at + bytes.len() > self.cfg.max_queued {
            self.close(slot, Close::Overflow);
            return false;
        }
        c.tx.extend_from_slice(bytes);
        if c.unflushed == 0 {
            self.unflushed.push(slot);
        }
        c.unflushed += bytes.len();
        true
    }

    /// Writes what connection `slot` has queued; false when it was closed.
    fn flush(&mut self, slot: usize) -> bool {
        let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return false;
        };
        if let Some(tls) = c.tls.as_mut() {
            if !c.tx.is_empty() {
                // The round's messages in one write: one record for up to
                // 16 KiB of them. rustls holds at most `max_queued` unsent
                // bytes (its buffer limit, which applies while the
                // handshake runs too); what it cannot take whole is an
                // overflow.
                if !matches!(tls.writer().write(&c.tx), Ok(n) if n == c.tx.len()) {
                    return self.closed(slot, Close::Overflow);
                }
                c.tx.clear();
            }
        }
        if c.connecting {
            return true;
        }
        if let Some(tls) = c.tls.as_mut() {
            while tls.wants_write() {
                match tls.write_tls(&mut c.sock) {
                    Ok(0) => return self.closed(slot, Close::Io),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return self.closed(slot, Close::Io),
                }
            }
        }
        while c.tx_at < c.tx.len() {
            match c.sock.write(&c.tx[c.tx_at..]) {
                Ok(0) => return self.closed(slot, Close::Io),
                Ok(n) => c.tx_at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.closed(slot, Close::Io),
            }
        }
        if c.tx_at == c.tx.len() {
            c.tx.clear();
            c.tx_at = 0;
        } else if c.tx_at >= READ_CHUNK {
            c.tx.drain(..c.tx_at);
            c.tx_at = 0;
        }
        if c.rx.is_empty() && c.rx.capacity() > 2 * READ_CHUNK {
            c.rx = Vec::new();
        }
        if c.tx.is_empty() && c.tx.capacity() > 2 * READ_CHUNK {
            c.tx = Vec::new();
        }
        let want_write = !c.tx.is_empty() || c.tls.as_ref().is_some_and(|t| t.wants_write());
        if want_write != c.writable {
            c.writable = want_write;
            let interest = if want_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let token = Token(slot + FIRST_CONN);
            if self
                .poll
                .registry()
                .reregister(&mut c.sock, token, interest)
                .is_err()
            {
                return self.closed(slot, Close::Io);
            }
        }
        true
    }

    fn closed(&mut self, slot: usize, why: Close) -> bool {
        self.close(slot, why);
        false
    }

    fn close(&mut self, slot: usize, why: Close) {
        let Some(mut c) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut c.sock);
        self.by_id.remove(&c.id);
        match c.outbound {
            Some(target) => {
                self.by_target.remove(&target);
            }
            None => self.release_source(source_key(c.peer.ip())),
        }
        self.open -= 1;
        self.free.push(slot);
        self.counters.transport(c.tls.is_some()).count_close(why);
        let k = &mut self.counters;
        match why {
            Close::ByPeer => k.closed_by_peer += 1,
            Close::Io => k.io_errors += 1,
            Close::Idle => k.idle_timeouts += 1,
            Close::Slow => k.slow_timeouts += 1,
            Close::Framing(e) => k.count_framing(e),
            Close::Overflow => k.queue_overflow += 1,
            Close::Tls(TlsFailure::Certificate) => k.tls_failed_certificate += 1,
            Close::Tls(TlsFailure::Protocol) => k.tls_failed_protocol += 1,
            Close::Tls(TlsFailure::Alert) => k.tls_failed_alert += 1,
            Close::Tls(TlsFailure::Other) => k.tls_failed_other += 1,
            Close::HandshakeTimeout => k.tls_handshake_timeouts += 1,
            Close::DialFailed => k.dial_failed += 1,
        }
    }

    fn read_udp(&mut self, now: u64) {
        for _ in 0..UDP_PER_ROUND {
            let (n, src) = match self.udp.recv_from(&mut self.udp_buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.udp_pending = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // An ICMP error queued on the socket: nothing to read.
                Err(_) => continue,
            };
            self.counters.udp_received += 1;
            if !self.cfg.udp_requests && !self.udp_buf[..n].starts_with(b"SIP/2.0 ") {
                self.counters.udp_requests_refused += 1;
                continue;
            }
            let buf = std::mem::take(&mut self.udp_buf);
            let pkt = Datagram::udp(src, self.udp_local, &buf[..n]);
            self.handle_datagram(now, &pkt);
            self.udp_buf = buf;
        }
    }

    fn sweep(&mut self, now: u64) {
        // A window of refusals closes even when no refusal follows it.
        self.refusals.roll(now);
        let idle = self.cfg.idle_timeout.as_nanos() as u64;
        let slow = self.cfg.message_timeout.as_nanos() as u64;
        for slot in 0..self.conns.len() {
            let Some(c) = &self.conns[slot] else {
                continue;
            };
            let late = now.saturating_sub(c.accepted_at) > slow;
            if c.connecting && late {
                self.close(slot, Close::DialFailed);
            } else if c.tls.as_ref().is_some_and(|t| t.is_handshaking()) && late {
                self.close(slot, Close::HandshakeTimeout);
            } else if c
                .message_started
                .is_some_and(|t| now.saturating_sub(t) > slow)
            {
                self.close(slot, Close::Slow);
            } else if now.saturating_sub(c.last_active) > idle {
                self.close(slot, Close::Idle);
            }
        }
    }
}

/// What the per-source cap counts by: an IPv4 address, or an IPv6
/// address's /64 (an IPv4-mapped IPv6 address as the IPv4 address).
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Messages for a stream thread ([`StreamLayer::spawn`]).
enum StreamControl<C> {
    Handler(C),
    SetTls(Arc<ServerConfig>),
    Snapshot,
    Stop,
}

/// A stream thread's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamSnapshot {
    /// Its counters since start.
    pub counters: StreamCounters,
    /// Connections open.
    pub open_connections: usize,
    /// The last window of connections refused by the caps that had any.
    pub refusals: Option<RefusalSummary>,
}

/// A stream layer running on its own thread: control messages in, the
/// handler's events out (both through bounded SPSC rings), counters at the
/// end.
pub struct StreamThread<H: PacketHandler> {
    control: rtrb::Producer<StreamControl<H::Control>>,
    snapshots: rtrb::Consumer<StreamSnapshot>,
    events: rtrb::Consumer<H::Event>,
    waker: Arc<mio::Waker>,
    handle: Option<std::thread::JoinHandle<StreamLayer<H>>>,
    tcp: Option<SocketAddr>,
    tls: Option<SocketAddr>,
}

/// Ring sizes between a stream thread and the control thread.
const STREAM_RING: usize = 1024;

impl<H: PacketHandler> StreamLayer<H> {
    /// Moves the layer onto a thread of its own (named `dce-stream`); it
    /// polls with `wait` as the longest sleep.
    pub fn spawn(mut self, wait: Duration) -> io::Result<StreamThread<H>> {
        let (control, mut control_rx) = rtrb::RingBuffer::new(STREAM_RING);
        let (mut events_tx, events) = rtrb::RingBuffer::new(STREAM_RING);
        let (mut snapshots_tx, snapshots) = rtrb::RingBuffer::new(4);
        let waker = self.waker.clone();
        let (tcp, tls) = (self.local_tcp(), self.local_tls());
        let handle = std::thread::Builder::new()
            .name("dce-stream".into())
            .spawn(move || loop {
                while let Ok(msg) = control_rx.pop() {
                    match msg {
                        StreamControl::Handler(m) => self.handler.on_control(crate::now(), m),
                        StreamControl::SetTls(c) => self.set_tls(c),
                        StreamControl::Snapshot => {
                            // A full ring: the asker stopped waiting for
                            // older ones; it asks again.
                            let _ = snapshots_tx.push(StreamSnapshot {
                                counters: self.counters.clone(),
                                open_connections: self.open,
                                refusals: self.refusals.last(),
                            });
                        }
                        StreamControl::Stop => return self,
                    }
                }
                // An error of the poll itself (not of a connection) ends
                // nothing: the next round polls again.
                let _ = self.poll_once(wait);
                while let Some(ev) = self.handler.poll_event() {
                    if events_tx.push(ev).is_err() {
                        self.counters.events_lost += 1;
                    }
                }
            })?;
        Ok(StreamThread {
            control,
            snapshots,
            events,
            waker,
            handle: Some(handle),
            tcp,
            tls,
        })
    }
}

impl<H: PacketHandler> StreamThread<H> {
    /// The TCP listener's address.
    pub fn local_tcp(&self) -> Option<SocketAddr> {
        self.tcp
    }

    /// The TLS listener's address.
    pub fn local_tls(&self) -> Option<SocketAddr> {
        self.tls
    }

    /// Sends a control message to the handler; gives it back when the ring
    /// is full.
    pub fn send(&mut self, msg: H::Control) -> Result<(), H::Control> {
        let r =
            self.control
                .push(StreamControl::Handler(msg))
                .map_err(|rtrb::PushError::Full(m)| match m {
                    StreamControl::Handler(m) => m,
                    _ => unreachable!("only handler messages are sent here"),
                });
        let _ = self.waker.wake();
        r
    }

    /// TLS connections accepted from now on use `config` (a reloaded
    /// certificate; see [`StreamLayer::set_tls`]). False when the control
    /// ring is full (try again).
    pub fn set_tls(&mut self, config: Arc<ServerConfig>) -> bool {
        let ok = self.control.push(StreamControl::SetTls(config)).is_ok();
        let _ = self.waker.wake();
        ok
    }

    /// The thread's counters now: asks, and waits up to `timeout` for the
    /// answer (`None` when it does not come).
    pub fn snapshot(&mut self, timeout: Duration) -> Option<StreamSnapshot> {
        // Answers to earlier asks that came too late.
        while self.snapshots.pop().is_ok() {}
        self.control.push(StreamControl::Snapshot).ok()?;
        let _ = self.waker.wake();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(s) = self.snapshots.pop() {
                return Some(s);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Takes the handler's events that arrived.
    pub fn poll_events(&mut self, mut f: impl FnMut(H::Event)) {
        while let Ok(ev) = self.events.pop() {
            f(ev);
        }
    }

    /// Stops the thread; the layer (its counters, its handler) comes back.
    pub fn stop(mut self) -> Option<StreamLayer<H>> {
        self.stop_thread()
    }

    fn stop_thread(&mut self) -> Option<StreamLayer<H>> {
        let handle = self.handle.take()?;
        // The ring may be full of handler messages: make room by waiting.
        while self.control.push(StreamControl::Stop).is_err() {
            let _ = self.waker.wake();
            std::thread::yield_now();
        }
        let _ = self.waker.wake();
        handle.join().ok()
    }
}

impl<H: PacketHandler> Drop for StreamThread<H> {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_source_is_counted_by_its_64() {
        let k = |s: &str| source_key(s.parse().unwrap());
        assert_eq!(k("2001:db8:1:2::1"), k("2001:db8:1:2:ffff::9"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("198.18.0.1"), k("::ffff:198.18.0.1"));
        assert_ne!(k("198.18.0.1"), k("198.18.0.2"));
    }
}
