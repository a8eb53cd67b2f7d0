//! The red team's tools (issue 17): what the end-to-end attack tests need
//! around a real `dce-edge run` in the lab, so that each test reads like
//! the attack it runs.
//!
//! - [`Victim`]: a third party on the lab LAN, in its own namespace, that
//!   counts every UDP datagram it receives (a raw capture, so nothing is
//!   missed by a socket that is not listening).
//! - [`UdpCounter`]: the same count for any address range of a namespace
//!   (the attacker's spoofed range: what the edge reflects shows there).
//! - [`Spoofer`]: raw frames with any source address from the attacker's
//!   namespace, one at a time or as a bounded, paced flood.
//! - [`Req`], [`forged_response`], [`scanner_options`]: the SIP messages of
//!   the attacks, as text.
//! - [`place_call`]: one real call from a real address, returning the
//!   dialog's Record-Route (and its `dce=` cookie) for later abuse.
//! - [`LoadgenUas`], [`Calls`]: `dce-loadgen` as the upstream server and as
//!   callers that follow the Record-Route, so they verify themselves.
//! - [`RedTeamLab`]: the lab, a victim, an upstream and the edge (with no
//!   allowlisted caller: callers earn their trust), and the edge's bans and
//!   counters as a test needs them.
//!
//! Every sender is bounded in count and time; every namespace, link and
//! process goes with its guard, also when a test fails.

use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::bin::{workspace_binary, TempDir};
use super::edge_process::{groups_toml, EdgeConfig, EdgeProcess};
use super::netns::{unique_name, veth_pair_one_queue, ChildGuard, Netns};
use super::ping::options_ping;
use super::privilege::{feature_or_skip, have_program, privileged_or_skip};
use super::topology::{Host, Lab, LabSpec, ATTACKER_ADDR, EDGE_ADDR, SPOOF_PREFIX};
use dataplane::IoMode;
use telemetry::stats::Snapshot;
use wire::build::UdpFrameBuilder;

/// The victim's address on the lab LAN (between the upstreams and the
/// attacker; nothing else uses it).
pub const VICTIM_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 150);

/// A number the red-team edge routes (prefix `44`, group `uk`).
pub const ROUTED_NUMBER: &str = "442071234567";

/// The edge's SIP address.
pub const EDGE_SIP: SocketAddrV4 = SocketAddrV4::new(EDGE_ADDR, 5060);

/// Long enough for anything a loaded 2-core box does in a few seconds.
pub const PATIENCE: Duration = Duration::from_secs(60);

fn seq() -> u32 {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

// ------------------------------------------------------------- counting

/// What a [`UdpCounter`] has seen.
#[derive(Debug, Clone, Default)]
pub struct Counted {
    /// UDP datagrams to the watched range.
    pub total: u64,
    /// Of those, the ones whose source was the edge.
    pub from_edge: u64,
    /// The first few, as `src -> dst: first line`.
    pub samples: Vec<String>,
}

impl Counted {
    /// One line per sample, for a failure message.
    pub fn samples_text(&self) -> String {
        if self.samples.is_empty() {
            return "  (none)".into();
        }
        self.samples
            .iter()
            .map(|s| format!("  {s}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Counts the IPv4 UDP datagrams arriving in a namespace for an address
/// range, on a raw socket (every interface of the namespace), until
/// dropped.
#[derive(Debug)]
pub struct UdpCounter {
    stop: Arc<AtomicBool>,
    counted: Arc<Mutex<Counted>>,
    thread: Option<JoinHandle<()>>,
}

/// Samples a counter keeps.
const SAMPLES: usize = 12;

impl UdpCounter {
    /// Starts counting datagrams to `net`/`len` arriving in `ns`. The
    /// capture is open when this returns.
    pub fn start(ns: &Netns, net: Ipv4Addr, len: u8) -> io::Result<UdpCounter> {
        let sock = ns.enter(|| sys::CaptureSocket::open_ipv4(Duration::from_millis(50)))??;
        let mask = if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        };
        let net = u32::from(net) & mask;
        let edge = u32::from(EDGE_ADDR);
        let stop = Arc::new(AtomicBool::new(false));
        let counted = Arc::new(Mutex::new(Counted::default()));
        let (stop2, counted2) = (Arc::clone(&stop), Arc::clone(&counted));
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !stop2.load(Ordering::Relaxed) {
                // 0: the wait ended with nothing.
                let n = match sock.recv(&mut buf) {
                    Ok(0) => continue,
                    Ok(n) => n,
                    Err(_) => break,
                };
                let Some(d) = UdpSeen::parse(&buf[..n]) else {
                    continue;
                };
                if u32::from(*d.dst.ip()) & mask != net {
                    continue;
                }
                let mut c = counted2.lock().expect("counter lock");
                c.total += 1;
                if u32::from(*d.src.ip()) == edge {
                    c.from_edge += 1;
                }
                if c.samples.len() < SAMPLES {
                    c.samples
                        .push(format!("{} -> {}: {}", d.src, d.dst, d.first_line));
                }
            }
        });
        Ok(UdpCounter {
            stop,
            counted,
            thread: Some(thread),
        })
    }

    /// What it has seen so far.
    pub fn counted(&self) -> Counted {
        self.counted.lock().expect("counter lock").clone()
    }

    /// Waits until the count has not moved for `quiet` (at most `max`),
    /// and returns it: what the last sends of an attack caused has arrived.
    pub fn settled(&self, quiet: Duration, max: Duration) -> Counted {
        let deadline = Instant::now() + max;
        let mut last = self.counted().total;
        let mut since = Instant::now();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.counted().total;
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                break;
            }
        }
        self.counted()
    }
}

impl Drop for UdpCounter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The addresses and first line of an IPv4 UDP datagram in an Ethernet
/// frame.
struct UdpSeen {
    src: SocketAddrV4,
    dst: SocketAddrV4,
    first_line: String,
}

impl UdpSeen {
    fn parse(f: &[u8]) -> Option<UdpSeen> {
        if f.len() < 14 + 20 + 8 || f[12..14] != [0x08, 0x00] {
            return None;
        }
        let ip = &f[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        if ip[0] >> 4 != 4 || ip[9] != 17 || ihl < 20 || ip.len() < ihl + 8 {
            return None;
        }
        let src_ip = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let dst_ip = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        let udp = &ip[ihl..];
        let sport = u16::from_be_bytes([udp[0], udp[1]]);
        let dport = u16::from_be_bytes([udp[2], udp[3]]);
        let payload = &udp[8..];
        let line_end = payload
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(payload.len())
            .min(80);
        Some(UdpSeen {
            src: SocketAddrV4::new(src_ip, sport),
            dst: SocketAddrV4::new(dst_ip, dport),
            first_line: String::from_utf8_lossy(&payload[..line_end]).into_owned(),
        })
    }
}

// --------------------------------------------------------------- victim

/// A third party on the lab LAN: its own namespace and address, a UDP
/// socket on port 5060 (so its kernel takes SIP quietly), and a count of
/// every UDP datagram that arrives for it.
#[derive(Debug)]
pub struct Victim {
    // Dropped first: the capture thread ends before its namespace goes.
    counter: UdpCounter,
    _socket: UdpSocket,
    addr: Ipv4Addr,
    baseline: AtomicU64,
    iface: String,
    ns: Netns,
}

impl Victim {
    /// Adds a victim host with address `addr` (on the LAN, /24) to `lab`'s
    /// bridge. It goes (namespace and link) when dropped.
    pub fn add(lab: &Lab, addr: Ipv4Addr) -> io::Result<Victim> {
        let ns = Netns::create("lvic")?;
        let iface = unique_name("h");
        let port = unique_name("p");
        veth_pair_one_queue(&ns, &iface, lab.bridge(), &port)?;
        lab.bridge().ip(&["link", "set", &port, "master", "br0"])?;
        lab.bridge().ip(&["link", "set", &port, "up"])?;
        ns.addr_up(&iface, &format!("{addr}/24"))?;
        let socket = ns.enter(move || UdpSocket::bind((addr, 5060)))??;
        let counter = UdpCounter::start(&ns, addr, 32)?;
        Ok(Victim {
            counter,
            _socket: socket,
            addr,
            baseline: AtomicU64::new(0),
            iface,
            ns,
        })
    }

    /// The victim's address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// Its SIP address (port 5060).
    pub fn sip_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.addr, 5060)
    }

    /// Its namespace.
    pub fn ns(&self) -> &Netns {
        &self.ns
    }

    /// Its interface.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// Makes sure the edge can reach the victim and that the count works:
    /// the victim pings the edge with OPTIONS until it is answered (the
    /// edge's kernel and its AF_XDP worker then know the victim's MAC), and
    /// everything received so far becomes the baseline of [`Victim::received`].
    pub fn prime(&self) -> io::Result<()> {
        let from = SocketAddr::from((self.addr, 0));
        let answer = self.ns.enter(move || {
            options_ping(from, SocketAddr::V4(EDGE_SIP), Duration::from_secs(20))
        })??;
        if answer != Some(200) {
            return Err(io::Error::other(format!(
                "the victim's OPTIONS got {answer:?} from the edge, not 200: the edge cannot reach it"
            )));
        }
        let c = self.counter.settled(Duration::from_millis(500), PATIENCE);
        if c.from_edge == 0 {
            return Err(io::Error::other(format!(
                "the victim's capture saw nothing of the edge's answer:\n{}",
                c.samples_text()
            )));
        }
        self.baseline.store(c.total, Ordering::SeqCst);
        Ok(())
    }

    /// Datagrams received since [`Victim::prime`] (or since it was added).
    pub fn received(&self) -> u64 {
        self.counter.counted().total - self.baseline.load(Ordering::SeqCst)
    }

    /// Waits until nothing more arrives for a second (at most
    /// [`PATIENCE`]) and returns [`Victim::received`].
    pub fn settled(&self) -> u64 {
        self.counter.settled(Duration::from_secs(1), PATIENCE);
        self.received()
    }

    /// What it received, for a failure message: the count and the first
    /// datagrams (the priming answer first, when primed).
    pub fn report(&self) -> String {
        let c = self.counter.counted();
        format!(
            "victim {} received {} datagrams since priming ({} in all, {} from the edge); first ones:\n{}",
            self.addr,
            self.received(),
            c.total,
            c.from_edge,
            c.samples_text()
        )
    }
}

// -------------------------------------------------------------- spoofer

/// Raw frames with any source address, sent from the attacker's interface
/// to the edge's SIP port. Opened inside the attacker's namespace; the
/// socket stays bound to it, so it may be used from any thread.
pub struct Spoofer {
    sock: sys::PacketSocket,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    dst: SocketAddrV4,
}

impl std::fmt::Debug for Spoofer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spoofer").field("dst", &self.dst).finish()
    }
}

/// Frames per `sendmmsg` of a flood.
const FLOOD_BATCH: u64 = 32;

impl Spoofer {
    /// A sender on `attacker`'s interface to the edge of `lab`.
    pub fn open(lab: &Lab, attacker: &Host) -> io::Result<Spoofer> {
        let edge_if = lab.edge.iface.clone();
        let dst_mac = lab.edge.ns.enter(move || sys::interface_mac(&edge_if))??;
        let iface = attacker.iface.clone();
        let (sock, src_mac) = attacker.ns.enter(move || -> io::Result<_> {
            Ok((
                sys::PacketSocket::open(&iface)?,
                sys::interface_mac(&iface)?,
            ))
        })??;
        Ok(Spoofer {
            sock,
            src_mac,
            dst_mac,
            dst: EDGE_SIP,
        })
    }

    /// A sender on interface `iface` of namespace `ns` to `dst`, whose
    /// next hop has MAC `dst_mac` (a router's, in the fleet lab).
    pub fn open_to(
        ns: &Netns,
        iface: &str,
        dst_mac: [u8; 6],
        dst: SocketAddrV4,
    ) -> io::Result<Spoofer> {
        let iface = iface.to_string();
        let (sock, src_mac) = ns.enter(move || -> io::Result<_> {
            Ok((
                sys::PacketSocket::open(&iface)?,
                sys::interface_mac(&iface)?,
            ))
        })??;
        Ok(Spoofer {
            sock,
            src_mac,
            dst_mac,
            dst,
        })
    }

    fn frame(&self, src: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
        let mut b = UdpFrameBuilder::new(
            IpAddr::V4(*src.ip()),
            IpAddr::V4(*self.dst.ip()),
            src.port(),
            self.dst.port(),
            payload,
        );
        b.macs = (self.dst_mac, self.src_mac);
        b.build()
    }

    /// Sends each `(source, payload)` once, `pps` per second at most
    /// (bounded by the list and by [`PATIENCE`]); returns how many the
    /// kernel took.
    pub fn send_all(&self, datagrams: &[(SocketAddrV4, String)], pps: u64) -> io::Result<u64> {
        self.flood(
            datagrams.len() as u64,
            pps,
            PATIENCE,
            &FloodControl::default(),
            |i| datagrams[i as usize].clone(),
        )
    }

    /// A flood: `count` datagrams, the `i`th from `next(i)`, paced at
    /// `pps` (0: as fast as the kernel takes them), stopped after
    /// `max_time` or when `ctl.stop` is set, whatever was sent by then.
    /// `ctl.sent` follows the count as it goes, for another thread to act
    /// on ("once 60,000 are out..."). Returns the frames the kernel took.
    pub fn flood(
        &self,
        count: u64,
        pps: u64,
        max_time: Duration,
        ctl: &FloodControl,
        mut next: impl FnMut(u64) -> (SocketAddrV4, String),
    ) -> io::Result<u64> {
        let start = Instant::now();
        let deadline = start + max_time;
        let mut done = 0u64;
        while done < count && Instant::now() < deadline && !ctl.stop.load(Ordering::SeqCst) {
            let n = FLOOD_BATCH.min(count - done);
            let frames: Vec<Vec<u8>> = (done..done + n)
                .map(|i| {
                    let (src, payload) = next(i);
                    self.frame(src, payload.as_bytes())
                })
                .collect();
            let mut taken = 0usize;
            while taken < frames.len() && Instant::now() < deadline {
                let refs: Vec<&[u8]> = frames[taken..].iter().map(Vec::as_slice).collect();
                let k = self.sock.send_batch(&refs)?;
                if k == 0 {
                    // The interface queue is full: let it drain.
                    std::thread::sleep(Duration::from_micros(200));
                }
                taken += k;
            }
            done += taken as u64;
            ctl.sent.store(done, Ordering::SeqCst);
            if pps > 0 {
                let due = start + Duration::from_secs_f64(done as f64 / pps as f64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
        }
        Ok(done)
    }
}

/// Shared between a flood and the thread that watches it.
#[derive(Debug, Default)]
pub struct FloodControl {
    /// Frames sent so far.
    pub sent: AtomicU64,
    /// Set to end the flood early.
    pub stop: AtomicBool,
}

/// The `i`th address of `base`/16 (wrapping within the /16): 65,536
/// distinct sources for `i` in `0..65_536`.
pub fn spoofed_source(base: Ipv4Addr, i: u64) -> Ipv4Addr {
    let b = base.octets();
    Ipv4Addr::new(b[0], b[1], (i >> 8) as u8, i as u8)
}

/// The first address of the lab's spoofed range (198.19.0.0/16, routed to
/// the attacker from every host).
pub fn spoof_base() -> Ipv4Addr {
    SPOOF_PREFIX
        .split_once('/')
        .and_then(|(a, _)| a.parse().ok())
        .expect("SPOOF_PREFIX is an IPv4 prefix")
}

// ------------------------------------------------------------- messages

/// A SIP request as text, with every field a test may want to forge.
#[derive(Debug, Clone)]
pub struct Req {
    /// Method (`INVITE`, `BYE`, ...).
    pub method: String,
    /// Request-URI.
    pub uri: String,
    /// The top Via's sent-by (and the From/Contact host).
    pub via: SocketAddrV4,
    /// Makes branch, tags and Call-ID unique.
    pub id: String,
    /// The From display name.
    pub from_name: String,
    /// The From tag (defaults to one made of `id`).
    pub from_tag: String,
    /// The To URI (defaults to the Request-URI).
    pub to_uri: String,
    /// The To tag: a request inside a dialog has one.
    pub to_tag: Option<String>,
    /// The Call-ID (defaults to one made of `id`).
    pub call_id: String,
    /// The CSeq number.
    pub cseq: u32,
    /// More header lines, each ending in CRLF (Route, User-Agent...).
    pub extra: String,
    /// The body.
    pub body: String,
}

impl Req {
    /// A request with ordinary headers.
    pub fn new(method: &str, uri: &str, via: SocketAddrV4, id: &str) -> Req {
        Req {
            method: method.into(),
            uri: uri.into(),
            via,
            id: id.into(),
            from_name: "caller".into(),
            from_tag: format!("f{id}"),
            to_uri: uri.into(),
            to_tag: None,
            call_id: format!("rt-{id}@{}", via.ip()),
            cseq: 1,
            extra: String::new(),
            body: String::new(),
        }
    }

    /// Sets the To tag (a request inside a dialog).
    pub fn in_dialog(mut self, to_tag: &str) -> Req {
        self.to_tag = Some(to_tag.into());
        self
    }

    /// Adds a header line (without CRLF).
    pub fn header(mut self, line: &str) -> Req {
        self.extra.push_str(line);
        self.extra.push_str("\r\n");
        self
    }

    /// Sets the body (an SDP offer for INVITE, text for MESSAGE).
    pub fn body(mut self, body: &str) -> Req {
        self.body = body.into();
        self
    }

    /// The message as it goes on the wire.
    pub fn text(&self) -> String {
        let v = self.via;
        let to_tag = self
            .to_tag
            .as_ref()
            .map(|t| format!(";tag={t}"))
            .unwrap_or_default();
        let content_type = if self.body.is_empty() {
            ""
        } else if self.body.starts_with("v=0") {
            "Content-Type: application/sdp\r\n"
        } else {
            "Content-Type: text/plain\r\n"
        };
        format!(
            "{m} {uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {v};branch=z9hG4bKrt{id};rport\r\n\
             Max-Forwards: 70\r\n\
             From: \"{name}\" <sip:{name}@{ip}>;tag={from_tag}\r\n\
             To: <{to}>{to_tag}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} {m}\r\n\
             Contact: <sip:{name}@{v}>\r\n\
             {extra}{content_type}Content-Length: {len}\r\n\r\n{body}",
            m = self.method,
            uri = self.uri,
            id = self.id,
            name = self.from_name,
            from_tag = self.from_tag,
            ip = v.ip(),
            to = self.to_uri,
            call_id = self.call_id,
            cseq = self.cseq,
            extra = self.extra,
            len = self.body.len(),
            body = self.body,
        )
    }
}

/// A minimal SDP offer from `ip`.
pub fn sdp(ip: Ipv4Addr) -> String {
    format!(
        "v=0\r\no=rt 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
}

/// An OPTIONS as SIPVicious's svmap sends it (`User-Agent:
/// friendly-scanner`, From display name `sipvicious`), from `src`.
pub fn scanner_options(src: SocketAddrV4, id: &str) -> String {
    let mut r = Req::new("OPTIONS", &format!("sip:100@{EDGE_ADDR}"), src, id)
        .header("User-Agent: friendly-scanner")
        .header("Accept: application/sdp");
    r.from_name = "sipvicious".into();
    r.text()
}

/// A branch shaped like the edge's own: the magic cookie, `dce`, then 24
/// hex digits (16 of transaction hash and 8 of loop key, the same length
/// as the edge's), derived from `id` so it differs per message.
pub fn edge_shaped_branch(id: &str) -> String {
    let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("z9hG4bKdce{h:016x}{:08x}", (h >> 17) as u32)
}

/// The reason phrase the forged responses carry.
fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Forged",
    }
}

/// A "response" nobody asked for: its top Via names the edge with a branch
/// shaped like the edge's own ([`edge_shaped_branch`]) and its second Via
/// names `next_hop` (with `received=` and `rport=`), so a proxy that
/// trusts the shape relays it there. `cseq_method` is the method it claims
/// to answer; a 401 carries a challenge.
pub fn forged_response(code: u16, cseq_method: &str, next_hop: SocketAddrV4, id: &str) -> String {
    let challenge = if code == 401 {
        "WWW-Authenticate: Digest realm=\"rt\", nonce=\"0123456789abcdef\", algorithm=MD5\r\n"
    } else {
        ""
    };
    let ip = next_hop.ip();
    let port = next_hop.port();
    format!(
        "SIP/2.0 {code} {reason}\r\n\
         Via: SIP/2.0/UDP {EDGE_ADDR}:5060;branch={branch}\r\n\
         Via: SIP/2.0/UDP {next_hop};branch=z9hG4bKv{id};received={ip};rport={port}\r\n\
         From: <sip:caller@{ip}>;tag=f{id}\r\n\
         To: <sip:{ROUTED_NUMBER}@{EDGE_ADDR}>;tag=t{id}\r\n\
         Call-ID: forged-{id}@{ip}\r\n\
         CSeq: 1 {cseq_method}\r\n\
         {challenge}Content-Length: 0\r\n\r\n",
        reason = reason(code),
        branch = edge_shaped_branch(id),
    )
}

// ---------------------------------------------------------- a real call

/// What one real call through the edge leaves its caller holding: the
/// dialog's identifiers and the Record-Route the edge put in the 200.
#[derive(Debug, Clone)]
pub struct DialogTicket {
    /// Where the call was placed from.
    pub local: SocketAddrV4,
    /// The dialog's Call-ID.
    pub call_id: String,
    /// The caller's tag.
    pub from_tag: String,
    /// The callee's tag (from the 200).
    pub to_tag: String,
    /// The Record-Route value of the 200 (`<sip:EDGE;lr;dce=...>`).
    pub record_route: String,
    /// The `dce=` parameter of that Record-Route.
    pub cookie: String,
    /// The 200 as received.
    pub answer: String,
}

/// The value of the first header named `name` (case-insensitive) in a
/// message's text.
pub fn header_value<'t>(text: &'t str, name: &str) -> Option<&'t str> {
    text.split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
}

/// The value of parameter `name` in a header value (`;tag=abc`).
fn param<'t>(value: &'t str, name: &str) -> Option<&'t str> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_end_matches('>'))
    })
}

/// Places one real call from `local` (an address of the namespace the
/// calling thread is in) to `number` at the edge, as a plain UAC: INVITE
/// (retransmitted every 500 ms, 20 s at most), the 200, then an ACK along
/// the recorded route. Run it inside the caller's namespace.
pub fn place_call(local: SocketAddrV4, number: &str) -> io::Result<DialogTicket> {
    place_call_to(local, EDGE_SIP, number)
}

/// [`place_call`] to the edge at `edge` (a fleet's service address).
pub fn place_call_to(
    local: SocketAddrV4,
    edge: SocketAddrV4,
    number: &str,
) -> io::Result<DialogTicket> {
    let socket = UdpSocket::bind(local)?;
    socket.set_read_timeout(Some(Duration::from_millis(500)))?;
    let id = format!("call{}x{}", std::process::id(), seq());
    let uri = format!("sip:{number}@{edge}");
    let invite = Req::new("INVITE", &uri, local, &id).body(&sdp(*local.ip()));
    let text = invite.text();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = vec![0u8; 65_536];
    let answer = 'call: loop {
        if Instant::now() >= deadline {
            return Err(io::Error::other(format!(
                "no 200 for the INVITE from {local} to {number} within 20 s"
            )));
        }
        socket.send_to(text.as_bytes(), edge)?;
        let round = Instant::now() + Duration::from_millis(500);
        while Instant::now() < round {
            match socket.recv_from(&mut buf) {
                Ok((n, _)) => {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if header_value(&msg, "Call-ID") != Some(invite.call_id.as_str()) {
                        continue;
                    }
                    if msg.starts_with("SIP/2.0 200") {
                        break 'call msg;
                    }
                    if !msg.starts_with("SIP/2.0 1") {
                        return Err(io::Error::other(format!(
                            "the call from {local} failed:\n{msg}"
                        )));
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => return Err(e),
            }
        }
    };
    let record_route = header_value(&answer, "Record-Route")
        .ok_or_else(|| io::Error::other(format!("the 200 has no Record-Route:\n{answer}")))?
        .to_string();
    let cookie = param(&record_route, "dce")
        .ok_or_else(|| io::Error::other(format!("the Record-Route has no dce= cookie:\n{answer}")))?
        .to_string();
    let to = header_value(&answer, "To").unwrap_or_default();
    let to_tag = param(to, "tag")
        .ok_or_else(|| io::Error::other(format!("the 200 has no To tag:\n{answer}")))?
        .to_string();
    let contact = header_value(&answer, "Contact")
        .or_else(|| header_value(&answer, "m"))
        .and_then(|c| {
            let start = c.find('<')? + 1;
            let end = c[start..].find('>')? + start;
            Some(c[start..end].to_string())
        })
        .unwrap_or_else(|| uri.clone());
    // The ACK follows the route set (RFC 3261 section 12.2.1.1): its Route
    // carries the cookie, which proves this address real to the edge.
    let mut ack = Req::new("ACK", &contact, local, &format!("{id}ack"))
        .in_dialog(&to_tag)
        .header(&format!("Route: {record_route}"));
    ack.to_uri = uri.clone();
    ack.call_id = invite.call_id.clone();
    ack.from_tag = invite.from_tag.clone();
    let ack_text = ack.text();
    socket.send_to(ack_text.as_bytes(), edge)?;
    Ok(DialogTicket {
        local,
        call_id: invite.call_id,
        from_tag: invite.from_tag.clone(),
        to_tag,
        record_route,
        cookie,
        answer,
    })
}

/// Sends OPTIONS to the edge from `local` (inside the namespace the
/// calling thread is in): `count` of them back to back, each its own
/// transaction, then collects answers for up to `wait`; returns how many
/// final answers came back (each transaction counted once).
pub fn options_burst(local: SocketAddrV4, count: usize, wait: Duration) -> io::Result<usize> {
    let socket = UdpSocket::bind(local)?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let bound = match socket.local_addr()? {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => unreachable!("bound to IPv4"),
    };
    let run = format!("ob{}x{}", std::process::id(), seq());
    let ids: Vec<String> = (0..count).map(|i| format!("{run}x{i}")).collect();
    for id in &ids {
        let req = Req::new("OPTIONS", &format!("sip:{EDGE_SIP}"), bound, id);
        socket.send_to(req.text().as_bytes(), EDGE_SIP)?;
    }
    let mut answered = std::collections::HashSet::new();
    let deadline = Instant::now() + wait;
    let mut buf = vec![0u8; 65_536];
    while answered.len() < count && Instant::now() < deadline {
        match socket.recv_from(&mut buf) {
            Ok((n, _)) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                if msg.starts_with("SIP/2.0 ") && !msg.starts_with("SIP/2.0 1") {
                    if let Some(c) = header_value(&msg, "Call-ID") {
                        answered.insert(c.to_string());
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(answered.len())
}

/// Sends each text to the edge from `local` (a real UDP socket inside the
/// namespace the calling thread is in), without waiting for anything.
pub fn send_from(local: SocketAddrV4, messages: &[String]) -> io::Result<()> {
    let socket = UdpSocket::bind(local)?;
    for m in messages {
        socket.send_to(m.as_bytes(), EDGE_SIP)?;
        // Gentle: far under every per-source budget.
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

// ---------------------------------------------------------------- peers

/// `dce-loadgen uas` on port 5060 of a lab host: the upstream server, a
/// real one in what matters here: it answers every request. INVITE gets a
/// 200 (retransmitted until the ACK, as RFC 3261 section 13.3.1.4 says,
/// also for an INVITE with a To tag it does not know), OPTIONS and
/// REGISTER 200, a BYE outside a call 481, other methods (MESSAGE, INFO)
/// 501. Bounded to 15 minutes and ended by its pid when dropped.
#[derive(Debug)]
pub struct LoadgenUas {
    child: ChildGuard,
    addr: SocketAddr,
    log: PathBuf,
}

impl LoadgenUas {
    /// Starts it on `host` and returns once it answers OPTIONS (20 s at
    /// most); its output goes to a file in `dir`.
    pub fn start(host: &Host, dir: &Path) -> io::Result<LoadgenUas> {
        Self::start_with(host, dir, &workspace_binary("dce-loadgen"))
    }

    /// [`LoadgenUas::start`] with the `dce-loadgen` binary at `bin` (the
    /// demo's, next to `dce-edge`).
    pub fn start_with(host: &Host, dir: &Path, bin: &Path) -> io::Result<LoadgenUas> {
        let addr = SocketAddr::from((host.addr(), 5060));
        let log = dir.join(format!("uas-{}-{}.log", host.addr(), seq()));
        let mut cmd = host.ns.command(&bin.to_string_lossy());
        cmd.args(["uas", "--listen", &addr.to_string(), "--duration", "900"])
            .arg("--quiet")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(log.with_extension("err"))?);
        let child =
            ChildGuard::new(cmd.spawn().map_err(|e| {
                io::Error::new(e.kind(), format!("cannot start dce-loadgen uas: {e}"))
            })?);
        let mut uas = LoadgenUas { child, addr, log };
        let from = SocketAddr::from((host.addr(), 0));
        let answered = host
            .ns
            .enter(move || options_ping(from, addr, Duration::from_secs(20)))??;
        if answered != Some(200) {
            let exited = uas.child.wait_timeout(Duration::ZERO)?;
            return Err(io::Error::other(format!(
                "dce-loadgen uas at {addr} did not answer OPTIONS within 20 s (exited: {exited:?}): {}",
                std::fs::read_to_string(uas.log.with_extension("err")).unwrap_or_default()
            )));
        }
        Ok(uas)
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Ends it (SIGTERM, then SIGKILL).
    pub fn stop(&mut self) {
        let _ = self.child.stop(Duration::from_secs(5));
    }
}

/// A run of `dce-loadgen uac` calls (INVITE, 200, ACK, BYE, 200) from
/// caller addresses to the edge. Its callers keep the dialog's route set,
/// so their ACK and BYE echo the edge's cookie and verify them.
#[derive(Debug, Clone)]
pub struct Calls {
    /// Caller addresses (of the namespace the run starts in), one socket
    /// each.
    pub from: Vec<Ipv4Addr>,
    /// Calls per second.
    pub cps: u32,
    /// Calls in all.
    pub calls: u64,
    /// Transaction timeout: a call with no answer by then fails.
    pub timeout: Duration,
    /// Where the calls go (the lab edge's SIP address by default).
    pub target: SocketAddrV4,
    /// Sockets (source address and port pairs), spread over `from`; one
    /// per address by default. More of them spread the calls over more
    /// flows (a router's ECMP hash puts each flow on one path).
    pub sources: usize,
    /// The `dce-loadgen` binary; `None`: the workspace's.
    pub binary: Option<PathBuf>,
}

/// `dce-loadgen` puts this many consecutive calls on one socket before it
/// moves to the next (`CALLS_PER_SOCKET_RUN`): a run must be a multiple of
/// it per address for every address to call.
pub const CALLS_PER_SOCKET_RUN: u64 = 16;

impl Calls {
    /// At least `per_address` calls from each address of `from` (rounded
    /// up to [`CALLS_PER_SOCKET_RUN`], so that every address calls that
    /// many) at `cps`, each call given up 8 s after its last request went
    /// unanswered.
    pub fn new(from: &[Ipv4Addr], cps: u32, per_address: u64) -> Calls {
        let per_address = per_address.max(1).div_ceil(CALLS_PER_SOCKET_RUN) * CALLS_PER_SOCKET_RUN;
        Calls {
            from: from.to_vec(),
            cps: cps.max(1),
            calls: per_address * from.len().max(1) as u64,
            timeout: Duration::from_secs(8),
            target: EDGE_SIP,
            sources: from.len().max(1),
            binary: None,
        }
    }

    /// Starts the run in `ns`; its report goes to a file in `dir`.
    pub fn spawn(&self, ns: &Netns, dir: &Path) -> io::Result<RunningCalls> {
        let n = seq();
        let json = dir.join(format!("calls-{n}.json"));
        let log = dir.join(format!("calls-{n}.log"));
        let seconds = self.calls as f64 / f64::from(self.cps) + 1.0;
        let bin = self
            .binary
            .clone()
            .unwrap_or_else(|| workspace_binary("dce-loadgen"));
        let mut cmd = ns.command(&bin.to_string_lossy());
        cmd.args(["uac", "--target", &self.target.to_string()])
            .args(["--cps", &self.cps.to_string()])
            .args(["--calls", &self.calls.to_string()])
            .args(["--duration", &format!("{seconds:.1}")])
            .args(["--numbers", "4420{0000-9999}"])
            .args(["--sources", &self.sources.max(1).to_string()])
            .args(["--timeout-ms", &self.timeout.as_millis().to_string()])
            .arg("--quiet")
            .arg("--json")
            .arg(&json);
        for a in &self.from {
            cmd.args(["--local-addr", &a.to_string()]);
        }
        cmd.stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(log.with_extension("err"))?);
        let child =
            ChildGuard::new(cmd.spawn().map_err(|e| {
                io::Error::new(e.kind(), format!("cannot start dce-loadgen uac: {e}"))
            })?);
        Ok(RunningCalls {
            child,
            json,
            log,
            calls: self.calls,
            bound: Duration::from_secs_f64(seconds) + self.timeout * 4 + PATIENCE,
        })
    }

    /// Runs it in `ns` and waits for the outcome.
    pub fn run(&self, ns: &Netns, dir: &Path) -> io::Result<CallsOutcome> {
        self.spawn(ns, dir)?.wait()
    }
}

/// A `dce-loadgen uac` run in progress.
#[derive(Debug)]
pub struct RunningCalls {
    child: ChildGuard,
    json: PathBuf,
    log: PathBuf,
    calls: u64,
    bound: Duration,
}

impl RunningCalls {
    /// Waits for the run to end (bounded: its own schedule and timeouts
    /// plus [`PATIENCE`]; then it is ended) and reads its report.
    pub fn wait(mut self) -> io::Result<CallsOutcome> {
        let status = self.child.wait_timeout(self.bound)?;
        if status.is_none() {
            let _ = self.child.stop(Duration::from_secs(5));
        }
        let text = std::fs::read_to_string(&self.json).unwrap_or_default();
        let report: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let u = |path: &[&str]| {
            let mut v = &report;
            for p in path {
                v = &v[*p];
            }
            v.as_u64().unwrap_or(0)
        };
        Ok(CallsOutcome {
            calls: self.calls,
            started: u(&["started"]),
            completed: u(&["outcomes", "completed"]),
            outcomes: report["outcomes"].to_string(),
            answers: report["answers"].to_string(),
            stderr: std::fs::read_to_string(self.log.with_extension("err")).unwrap_or_default(),
        })
    }
}

/// What a `dce-loadgen uac` run reported.
#[derive(Debug, Clone)]
pub struct CallsOutcome {
    /// Calls asked for.
    pub calls: u64,
    /// Calls started.
    pub started: u64,
    /// Calls that ran to the end (INVITE, 200, ACK, BYE, 200).
    pub completed: u64,
    /// The outcome buckets, as JSON.
    pub outcomes: String,
    /// Answers received by code, as JSON.
    pub answers: String,
    /// What the generator said on standard error.
    pub stderr: String,
}

impl CallsOutcome {
    /// Every call asked for started and completed.
    pub fn all_completed(&self) -> bool {
        self.started == self.calls && self.completed == self.calls
    }

    /// One line for a report.
    pub fn summary(&self) -> String {
        format!(
            "{} of {} calls completed ({} started); outcomes {}; answers {}{}",
            self.completed,
            self.calls,
            self.started,
            self.outcomes,
            self.answers,
            if self.stderr.trim().is_empty() {
                String::new()
            } else {
                format!("; stderr: {}", self.stderr.trim())
            }
        )
    }
}

// ----------------------------------------------------------- the edge

/// A ban as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// The network (`198.18.0.10/32`) or address.
    pub network: String,
    /// Why (`manual`, `scanner`, `not_found`, ...).
    pub reason: String,
    /// Seconds left; `None` for a ban that never expires.
    pub secs_left: Option<u64>,
}

impl Ban {
    /// True when the ban covers `ip`.
    pub fn covers(&self, ip: Ipv4Addr) -> bool {
        cidr_contains(&self.network, ip)
    }
}

/// True when `cidr` (`a.b.c.d/len`, or an address alone) contains `ip`.
pub fn cidr_contains(cidr: &str, ip: Ipv4Addr) -> bool {
    let (net, len) = cidr.split_once('/').unwrap_or((cidr, "32"));
    let (Ok(net), Ok(len)) = (net.parse::<Ipv4Addr>(), len.parse::<u32>()) else {
        return false;
    };
    if len > 32 {
        return false;
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(net) & mask == u32::from(ip) & mask
}

/// The bans a list shows covering `ip`.
pub fn bans_covering(bans: &[Ban], ip: Ipv4Addr) -> Vec<Ban> {
    bans.iter().filter(|b| b.covers(ip)).cloned().collect()
}

/// What a red-team lab is built with.
#[derive(Debug, Clone)]
pub struct RedTeamSpec {
    /// The dataplane mode of the edge.
    pub mode: IoMode,
    /// Caller addresses (none of them allowlisted).
    pub callers: usize,
    /// More groups for the groups file (TOML), after `uk` (forward to the
    /// upstream).
    pub groups_extra: String,
    /// More lines for the prefixes file, after `44,uk`.
    pub prefixes_extra: String,
}

impl RedTeamSpec {
    /// `callers` caller addresses, the `uk` group only.
    pub fn new(mode: IoMode, callers: usize) -> RedTeamSpec {
        RedTeamSpec {
            mode,
            callers,
            groups_extra: String::new(),
            prefixes_extra: String::new(),
        }
    }
}

/// The lab of an attack test: callers (not allowlisted: they verify
/// themselves by completing calls, as real customers do), one upstream
/// (`dce-loadgen uas`, group `uk`, prefix `44`), the attacker, a victim,
/// and `dce-edge run` in front of them.
#[derive(Debug)]
pub struct RedTeamLab {
    // Field order is drop order: the edge and the upstream stop before the
    // namespaces they run in go, and the files go last.
    /// The edge.
    pub edge: EdgeProcess,
    /// The upstream server.
    pub upstream: LoadgenUas,
    /// The third party.
    pub victim: Victim,
    /// The lab.
    pub lab: Lab,
    /// The folder with the edge's files and the peers' reports.
    pub dir: TempDir,
    /// What it was built with.
    pub spec: RedTeamSpec,
}

impl RedTeamLab {
    /// Builds it, or skips (returns `None`) where the test may not run
    /// (not root, no `nsenter`), unless `DCE_REQUIRE_PRIVILEGED=1`.
    pub fn start_or_skip(test: &str, spec: &RedTeamSpec) -> Option<RedTeamLab> {
        if !privileged_or_skip(test)
            || !feature_or_skip(
                test,
                have_program("nsenter"),
                "nsenter",
                "apt-get install util-linux (scripts/setup.sh)",
            )
        {
            return None;
        }
        Some(RedTeamLab::start(spec).unwrap_or_else(|e| panic!("{test}: building the lab: {e}")))
    }

    /// Builds the lab, starts the upstream and the edge, and primes the
    /// victim ([`Victim::prime`]).
    pub fn start(spec: &RedTeamSpec) -> io::Result<RedTeamLab> {
        let lab = Lab::build(&LabSpec {
            caller_addrs: spec.callers.max(1),
            upstreams: 1,
            attacker: true,
            edge_queues: 1,
        })?;
        let victim = Victim::add(&lab, VICTIM_ADDR)?;
        let dir = TempDir::new("redteam")?;
        let upstream = LoadgenUas::start(&lab.upstreams[0], dir.path())?;
        let mut groups = groups_toml(None, &[("uk", &[upstream.addr()])]);
        groups.push_str(&spec.groups_extra);
        let mut prefixes = String::from("prefix,group\n44,uk\n");
        prefixes.push_str(&spec.prefixes_extra);
        let mut cfg = EdgeConfig::new(&lab, spec.mode, groups, prefixes);
        // Callers earn their trust (the dialog cookie); only the upstream
        // is trusted by configuration.
        cfg.allowlist = vec![format!("{}/32", upstream.addr().ip())];
        let edge = EdgeProcess::start(&lab, dir.path(), &cfg)?;
        let rt = RedTeamLab {
            edge,
            upstream,
            victim,
            lab,
            dir,
            spec: spec.clone(),
        };
        rt.victim.prime()?;
        Ok(rt)
    }

    /// The attacker's host.
    pub fn attacker(&self) -> &Host {
        self.lab
            .attacker
            .as_ref()
            .expect("a red-team lab has an attacker")
    }

    /// A raw sender in the attacker's namespace.
    pub fn spoofer(&self) -> io::Result<Spoofer> {
        Spoofer::open(&self.lab, self.attacker())
    }

    /// Runs `f` inside the attacker's namespace.
    pub fn as_attacker<R: Send>(&self, f: impl FnOnce() -> R + Send) -> io::Result<R> {
        self.attacker().ns.enter(f)
    }

    /// Runs `f` inside the callers' namespace.
    pub fn as_callers<R: Send>(&self, f: impl FnOnce() -> R + Send) -> io::Result<R> {
        self.lab.callers.ns.enter(f)
    }

    /// Starts calls from caller addresses `from` (at least `per_address`
    /// each, see [`Calls::new`], at `cps`).
    pub fn start_calls(
        &self,
        from: &[Ipv4Addr],
        per_address: u64,
        cps: u32,
    ) -> io::Result<RunningCalls> {
        Calls::new(from, cps, per_address).spawn(&self.lab.callers.ns, self.dir.path())
    }

    /// Places calls from `from` and waits for the outcome.
    pub fn calls(&self, from: &[Ipv4Addr], per_address: u64, cps: u32) -> io::Result<CallsOutcome> {
        self.start_calls(from, per_address, cps)?.wait()
    }

    /// Makes the callers `from` regulars: 16 calls from each, which must
    /// all complete (each ACK and BYE echoes the edge's cookie); in AF_XDP
    /// mode it also waits until the XDP filter counts them verified.
    pub fn verify_callers(&self, from: &[Ipv4Addr]) -> io::Result<CallsOutcome> {
        let outcome = self.calls(from, 16, 100)?;
        if !outcome.all_completed() {
            return Err(io::Error::other(format!(
                "warm-up calls from {from:?} did not all complete (before any attack): {}\n{}",
                outcome.summary(),
                self.describe()
            )));
        }
        if self.spec.mode == IoMode::AfXdp {
            let want = from.len() as u64;
            self.edge
                .wait_for("the callers verified in the XDP filter", PATIENCE, |s| {
                    s.verified_sources >= want
                })?;
        }
        Ok(outcome)
    }

    /// The OPTIONS answer a caller address gets from the edge (retried for
    /// up to 10 s).
    pub fn options_from_caller(&self, from: Ipv4Addr) -> io::Result<Option<u16>> {
        let from = SocketAddr::from((from, 0));
        self.as_callers(move || {
            options_ping(from, SocketAddr::V4(EDGE_SIP), Duration::from_secs(10))
        })?
    }

    /// Packets the edge has accounted for: dropped by the XDP filter, or
    /// received by a worker. Every packet sent to its SIP port ends in
    /// exactly one of these.
    pub fn accounted(s: &Snapshot) -> u64 {
        s.xdp_drops_total() + s.workers_total(|w| w.received)
    }

    /// Waits until the edge has accounted for `sent` packets more than in
    /// `before`, then for two more snapshots (the control thread has acted
    /// on what the workers reported), and returns the last one.
    pub fn wait_accounted(&self, before: &Snapshot, sent: u64) -> io::Result<Snapshot> {
        let want = Self::accounted(before) + sent;
        self.edge.wait_for(
            &format!("{sent} attack packets reaching the edge"),
            PATIENCE,
            |s| Self::accounted(s) >= want,
        )?;
        self.settle()
    }

    /// Waits until the edge's accounted packets ([`RedTeamLab::accounted`])
    /// stay the same over two snapshot refreshes (a flood has been taken
    /// in, whatever part of it the veths dropped on the way), at most
    /// twice [`PATIENCE`], and returns the last snapshot.
    pub fn wait_quiet(&self) -> io::Result<Snapshot> {
        let deadline = Instant::now() + PATIENCE * 2;
        let mut last = self.settle()?;
        loop {
            let next = self.settle()?;
            if Self::accounted(&next) == Self::accounted(&last) || Instant::now() >= deadline {
                return Ok(next);
            }
            last = next;
        }
    }

    /// Waits for two snapshot refreshes (two seconds of the edge's own
    /// clock) and returns the last snapshot.
    pub fn settle(&self) -> io::Result<Snapshot> {
        let first = self.edge.snapshot()?;
        self.edge.wait_for("two snapshot refreshes", PATIENCE, |s| {
            s.taken_at_ms >= first.taken_at_ms + 2_000
        })
    }

    /// The bans as the operator sees them: `dce-edge ban --list --json`
    /// from a second process in AF_XDP mode (the XDP ban map), the
    /// snapshot's bans in socket mode (the workers' own).
    pub fn bans(&self) -> io::Result<Vec<Ban>> {
        if self.spec.mode == IoMode::AfXdp {
            return self.ban_list();
        }
        Ok(self
            .edge
            .snapshot()?
            .bans
            .into_iter()
            .map(|b| Ban {
                network: b.source,
                reason: b.reason,
                secs_left: (b.seconds_left != u64::MAX).then_some(b.seconds_left),
            })
            .collect())
    }

    /// `dce-edge ban --list --json` (AF_XDP mode only), unexpired bans.
    pub fn ban_list(&self) -> io::Result<Vec<Ban>> {
        let iface = self.edge.iface().to_string();
        let out = self
            .edge
            .command(&["ban", "--list", "--json", "--iface", &iface])?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "dce-edge ban --list failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let list: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| io::Error::other(format!("ban --list --json: {e}")))?;
        Ok(list
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or_default()
            .iter()
            .filter(|b| b["expired"] != true)
            .map(|b| Ban {
                network: b["network"].as_str().unwrap_or_default().to_string(),
                reason: b["reason"].as_str().unwrap_or_default().to_string(),
                secs_left: b["secs_left"].as_u64(),
            })
            .collect())
    }

    /// Runs `dce-edge ARGS... --iface EDGE_IFACE` in the edge's namespace
    /// (the interface named, since other filters may run on the same box),
    /// as the operator does: whether it succeeded, and what it printed.
    pub fn operator(&self, args: &[&str]) -> io::Result<(bool, String)> {
        let iface = self.edge.iface().to_string();
        let mut args = args.to_vec();
        args.extend(["--iface", iface.as_str()]);
        let out = self.edge.command(&args)?;
        Ok((
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .trim()
            .to_string(),
        ))
    }

    /// Restarts the upstream and the edge (same files, fresh state: no
    /// verified caller, shields down, no retransmission left over from an
    /// earlier attack), and primes the victim again.
    pub fn restart(&mut self) -> io::Result<()> {
        if self.edge.pid().is_some() {
            self.edge.stop()?;
        }
        self.upstream.stop();
        self.upstream = LoadgenUas::start(&self.lab.upstreams[0], self.dir.path())?;
        self.edge.restart()?;
        self.victim.prime()
    }

    /// The edge's state, for a failure message (the latest snapshot).
    pub fn describe(&self) -> String {
        match self.edge.snapshot() {
            Ok(s) => describe(&s),
            Err(e) => format!("(no snapshot: {e})"),
        }
    }
}

impl Drop for RedTeamLab {
    fn drop(&mut self) {
        // A clean stop (SIGTERM, 30 s grace) removes the filter's pins; the
        // 3 s of the process guard may not be enough for an edge that
        // holds 65,536 bans on a loaded box, and a killed edge leaves them.
        if self.edge.pid().is_some() {
            let _ = self.edge.stop();
        }
    }
}

/// A snapshot in the lines a failure message needs: bans, XDP drops,
/// verified sources, and each worker's traffic, answers, drops and ring
/// shortfalls (`no_neighbour` shows a datagram lost for want of a MAC).
pub fn describe(s: &Snapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "edge ({} mode): {} bans in force, {} verified sources in XDP",
        s.modes.dataplane,
        s.bans.len(),
        s.verified_sources
    );
    for b in s.bans.iter().take(8) {
        let _ = writeln!(
            out,
            "  ban {} ({}), {} s left",
            b.source, b.reason, b.seconds_left
        );
    }
    if s.bans.len() > 8 {
        let _ = writeln!(out, "  ... and {} more bans", s.bans.len() - 8);
    }
    if let Some(x) = &s.xdp {
        let drops: Vec<String> = x
            .drops
            .iter()
            .filter(|(_, &n)| n > 0)
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "  XDP: redirected {}, passed {}, dropped {{{}}}",
            x.redirected,
            x.passed,
            drops.join(", ")
        );
    }
    for w in &s.workers {
        let rings: Vec<String> = w
            .rings
            .iter()
            .filter(|(_, &n)| n > 0)
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "  worker {}: received {}, sent {}, forwarded {} requests and {} responses, answered {:?}, dropped {:?}, rings {{{}}}",
            w.id,
            w.received,
            w.transmitted,
            w.forwarded_requests,
            w.forwarded_responses,
            w.answered,
            w.dropped,
            rings.join(", ")
        );
    }
    let _ = write!(
        out,
        "  calls: {} INVITEs forwarded, {} answered, {} failed",
        s.calls.invites_forwarded, s.calls.answered, s.calls.failed
    );
    out
}

/// The bans in `bans`, one per line, for a failure message (at most 20).
pub fn bans_text(bans: &[Ban]) -> String {
    if bans.is_empty() {
        return "  (no bans)".into();
    }
    let mut out: Vec<String> = bans
        .iter()
        .take(20)
        .map(|b| {
            format!(
                "  {} {} {}",
                b.network,
                b.reason,
                b.secs_left
                    .map_or("never expires".to_string(), |s| format!("{s} s left"))
            )
        })
        .collect();
    if bans.len() > 20 {
        out.push(format!("  ... and {} more", bans.len() - 20));
    }
    out.join("\n")
}

/// Adds a route for `prefix` on every lab host toward the attacker, and
/// makes the attacker accept it locally, as the lab does for
/// [`SPOOF_PREFIX`]: anything sent to those spoofed sources lands on the
/// attacker.
pub fn route_to_attacker(lab: &Lab, prefix: &str) -> io::Result<()> {
    let via = ATTACKER_ADDR.to_string();
    for host in lab.hosts().filter(|h| h.addr() != ATTACKER_ADDR) {
        host.ns.ip(&["route", "add", prefix, "via", &via])?;
    }
    let att = lab
        .attacker
        .as_ref()
        .ok_or_else(|| io::Error::other("the lab has no attacker"))?;
    att.ns.ip(&["route", "add", "local", prefix, "dev", "lo"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edge_shaped_branch_has_the_edges_length_and_prefix() {
        let b = edge_shaped_branch("x1");
        // z9hG4bK + dce + 16 + 8 hex digits: BRANCH_LEN of the proxy.
        assert_eq!(b.len(), 7 + 3 + 16 + 8);
        assert!(b.starts_with("z9hG4bKdce"));
        assert!(b[10..].bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(b, edge_shaped_branch("x2"));
    }

    #[test]
    fn forged_messages_parse_as_sip() {
        let victim = SocketAddrV4::new(VICTIM_ADDR, 5060);
        for code in [200, 401, 404] {
            let r = forged_response(code, "INVITE", victim, "a1");
            let m = sip::parse(r.as_bytes()).unwrap();
            assert_eq!(m.status(), Some(code));
            let next = m.second_via().unwrap().unwrap();
            assert_eq!(next.response_target(), Some(SocketAddr::V4(victim)));
        }
        let req = Req::new("BYE", "sip:1@198.18.0.150:5060", victim, "b1")
            .in_dialog("t1")
            .header("Route: <sip:198.18.0.1:5060;lr;dce=0123456789abcdef>");
        let text = req.text();
        let m = sip::parse(text.as_bytes()).unwrap();
        assert_eq!(m.to_tag(), Some(&b"t1"[..]));
        assert_eq!(m.routes().count(), 1);
        let scan = scanner_options(victim, "s1");
        let m = sip::parse(scan.as_bytes()).unwrap();
        assert_eq!(m.user_agent(), Some(&b"friendly-scanner"[..]));
    }

    #[test]
    fn cidrs_contain_what_they_should() {
        let ip = Ipv4Addr::new(198, 18, 0, 10);
        assert!(cidr_contains("198.18.0.10/32", ip));
        assert!(cidr_contains("198.18.0.10", ip));
        assert!(cidr_contains("198.18.0.0/24", ip));
        assert!(!cidr_contains("198.18.0.11/32", ip));
        assert!(!cidr_contains("garbage", ip));
    }

    #[test]
    fn header_values_and_params_are_found() {
        let text = "SIP/2.0 200 OK\r\nRecord-Route: <sip:198.18.0.1:5060;lr;dce=00ff>\r\nTo: <sip:1@x>;tag=abc\r\n\r\n";
        let rr = header_value(text, "record-route").unwrap();
        assert_eq!(param(rr, "dce"), Some("00ff"));
        assert_eq!(param(header_value(text, "To").unwrap(), "tag"), Some("abc"));
    }
}
