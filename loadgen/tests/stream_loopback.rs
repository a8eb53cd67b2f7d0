//! Callers over TCP and TLS on 127.0.0.1 against a small SIP server in the
//! test (one thread per connection, answering INVITE and BYE with 200):
//! calls complete, and every way a connection can fail (refused, closed
//! under the calls, a TLS handshake that fails) is counted as a loss of
//! its own, never silent.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use loadgen::msg::{self, Response, Transport};
use loadgen::report::UacReport;
use loadgen::sipmsg;
use loadgen::stream::TlsClient;
use loadgen::uac::{self, UacConfig};
use sip::stream::{Frame, Framer};
use testpki::TestCa;

/// What the test server does with a connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// Answers INVITE and BYE with 200.
    Answer,
    /// Closes the connection when the first message arrives.
    CloseOnFirst,
}

/// Serves SIP on one connection until it closes or `stop` is set.
fn serve(mut io: impl Read + Write, behaviour: Behaviour, stop: &AtomicBool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut framer = Framer::default();
    let mut out = vec![0u8; 8192];
    while !stop.load(Ordering::Relaxed) {
        let n = match io.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return,
        };
        buf.extend_from_slice(&chunk[..n]);
        if behaviour == Behaviour::CloseOnFirst {
            return;
        }
        loop {
            match framer.next(&buf) {
                Ok(Frame::Message(len)) => {
                    let req = sipmsg::parse(&buf[..len]).expect("a request the caller wrote");
                    let answer = matches!(
                        req.method(),
                        Some(sip::Method::Invite) | Some(sip::Method::Bye)
                    );
                    if answer {
                        let r = Response {
                            code: 200,
                            to_tag: Some(b"srv"),
                            contact: None,
                            extra: b"",
                            sdp: None,
                        };
                        let n = msg::write_response(&mut out, &req, &r).unwrap();
                        if io.write_all(&out[..n]).is_err() {
                            return;
                        }
                    }
                    buf.drain(..len);
                }
                Ok(Frame::Ping(n)) | Ok(Frame::Skip(n)) => {
                    buf.drain(..n);
                }
                Ok(Frame::Incomplete) => break,
                Err(e) => panic!("the caller's stream lost its framing: {e}"),
            }
        }
        let _ = io.flush();
    }
}

/// A server on 127.0.0.1 (TLS with `tls`); stops when the guard drops.
struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop.
        let _ = TcpStream::connect(self.addr);
    }
}

fn server(behaviour: Behaviour, tls: Option<Arc<rustls::ServerConfig>>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            if flag.load(Ordering::Relaxed) {
                return;
            }
            let Ok(sock) = sock else { continue };
            sock.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let flag = Arc::clone(&flag);
            let tls = tls.clone();
            std::thread::spawn(move || match tls {
                Some(cfg) => {
                    let conn = rustls::ServerConnection::new(cfg).unwrap();
                    serve(rustls::StreamOwned::new(conn, sock), behaviour, &flag);
                }
                None => serve(sock, behaviour, &flag),
            });
        }
    });
    Server { addr, stop }
}

fn callers(target: SocketAddr, transport: Transport, tls: Option<TlsClient>) -> UacConfig {
    let mut c = UacConfig::new(target);
    c.transport = transport;
    c.tls = tls;
    c.connections = 4;
    c.cps = 200.0;
    c.duration = Duration::from_millis(500);
    c.max_calls = 100;
    c.timers.timeout_ns = 3_000_000_000;
    c
}

fn run(c: &UacConfig) -> UacReport {
    let r = uac::run(c, &AtomicBool::new(false)).unwrap();
    assert!(r.accounting.balanced, "{r}");
    r
}

#[test]
fn a_tls_caller_completes_its_calls() {
    let ca = TestCa::new("test ca");
    let (cert, key) = ca.server(&["127.0.0.1"]);
    let srv = server(Behaviour::Answer, Some(testpki::server_config(&cert, &key)));
    let tls = TlsClient::new(ca.pem.as_bytes(), "127.0.0.1").unwrap();
    let r = run(&callers(srv.addr, Transport::Tls, Some(tls)));
    assert_eq!(r.transport, "tls");
    assert_eq!((r.started, r.outcomes.completed), (100, 100), "{r}");
    assert_eq!(r.connections.opened, 4, "{r}");
    // Over a reliable transport the caller never retransmits.
    assert_eq!(r.retransmissions.invite + r.retransmissions.non_invite, 0);
    // INVITE, ACK and BYE per call.
    assert_eq!(r.traffic.sent, 300, "{r}");
}

#[test]
fn a_tcp_caller_completes_its_calls() {
    let srv = server(Behaviour::Answer, None);
    let r = run(&callers(srv.addr, Transport::Tcp, None));
    assert_eq!((r.started, r.outcomes.completed), (100, 100), "{r}");
    assert_eq!(r.connections.opened, 4, "{r}");
}

#[test]
fn calls_on_a_connection_the_server_closes_are_counted_as_closed() {
    let srv = server(Behaviour::CloseOnFirst, None);
    let r = run(&callers(srv.addr, Transport::Tcp, None));
    let o = &r.outcomes;
    assert_eq!(r.started, 100);
    assert_eq!(o.completed, 0, "{r}");
    assert!(o.connection_closed > 0, "{r}");
    // Every call is lost with its connection, none is left to time out.
    assert_eq!(o.connection_closed + o.connection_refused, 100, "{r}");
    assert!(r.connections.closed > 0, "{r}");
    assert!(r
        .warnings
        .iter()
        .any(|w| w.contains("lost with their connection")));
}

#[test]
fn a_failed_tls_handshake_is_counted_as_its_own_loss() {
    let (cert, key) = TestCa::new("test ca").server(&["127.0.0.1"]);
    // The caller trusts another CA: the server's certificate is refused.
    let other_ca = TestCa::new("other ca");
    let srv = server(Behaviour::Answer, Some(testpki::server_config(&cert, &key)));
    let tls = TlsClient::new(other_ca.pem.as_bytes(), "127.0.0.1").unwrap();
    let r = run(&callers(srv.addr, Transport::Tls, Some(tls)));
    assert_eq!(r.started, 100);
    assert_eq!(r.outcomes.completed, 0, "{r}");
    assert_eq!(r.outcomes.tls_failed, 100, "{r}");
    assert!(r.connections.tls_failed >= 4, "{r}");
}

#[test]
fn a_target_that_refuses_connections_loses_every_call_as_refused() {
    // A port with nothing listening: bound, then freed.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let r = run(&callers(addr, Transport::Tcp, None));
    assert_eq!(r.started, 100);
    assert_eq!(r.outcomes.connection_refused, 100, "{r}");
    assert!(r.connections.refused >= 4, "{r}");
}
