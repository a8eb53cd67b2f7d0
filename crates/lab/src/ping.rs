//! A SIP OPTIONS ping, for waiting until an edge or a server answers.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sip::{self, write::RequestBuilder, write::SentBy, Method};

/// Sends OPTIONS from `from` (port 0 picks one) to `to` every 200 ms until a
/// final answer arrives or `timeout` passes; returns its status code. Run it
/// inside the namespace that holds `from`.
pub fn options_ping(
    from: SocketAddr,
    to: SocketAddr,
    timeout: Duration,
) -> std::io::Result<Option<u16>> {
    options_ping_uri(from, to, &format!("sip:{to}"), timeout)
}

/// Like [`options_ping`], with the Request-URI (and To) given: an OPTIONS
/// to `sip:33123@edge` asks the edge to route the number rather than to
/// answer for itself, so whoever answers shows where the number goes.
pub fn options_ping_uri(
    from: SocketAddr,
    to: SocketAddr,
    uri: &str,
    timeout: Duration,
) -> std::io::Result<Option<u16>> {
    let socket = UdpSocket::bind(from)?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let local = socket.local_addr()?;
    // Every ping gets Call-IDs of its own: a server that keeps dialogs
    // (SIPp) takes a repeated Call-ID for a message of an old call.
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let deadline = Instant::now() + timeout;
    let mut seq = 0u32;
    let mut out = [0u8; 1500];
    let mut buf = [0u8; 65_536];
    while Instant::now() < deadline {
        seq += 1;
        let branch = format!("z9hG4bKping{}x{run}x{seq}", std::process::id());
        let call_id = format!("ping-{}-{run}-{seq}@{}", std::process::id(), local.ip());
        let from_hdr = format!("<sip:ping@{}>;tag=p{seq}", local.ip());
        let to_hdr = format!("<{uri}>");
        let req = RequestBuilder {
            method: Method::Options,
            request_uri: uri.as_bytes(),
            sent_by: SentBy::Addr(local),
            branch: branch.as_bytes(),
            from: from_hdr.as_bytes(),
            to: to_hdr.as_bytes(),
            call_id: call_id.as_bytes(),
            cseq: seq,
            max_forwards: 70,
            headers: &[],
            content_type: None,
            body: b"",
        };
        let len = req
            .write(&mut out)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        // The destination may not be listening yet: a refused send is a miss.
        let _ = socket.send_to(&out[..len], to);
        let round = Instant::now() + Duration::from_millis(200);
        while Instant::now() < round {
            match socket.recv_from(&mut buf) {
                Ok((n, _)) => {
                    if let Ok(msg) = sip::parse(&buf[..n]) {
                        if msg.call_id() == call_id.as_bytes()
                            && msg.status().is_some_and(|s| s >= 200)
                        {
                            return Ok(msg.status());
                        }
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(None)
}
