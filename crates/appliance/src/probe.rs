//! Health probes: a SIP OPTIONS (RFC 3261 section 11) to every forward target
//! each interval, answers matched by Call-ID and Via branch.
//!
//! [`ProbeSet`] is the sans-IO core: it decides when a round starts, writes
//! the probes, matches answers and runs each target's [`TargetHealth`]. The
//! clock is passed in. [`Prober`] drives it over a non-blocking UDP socket on
//! the control thread; its [`HealthChange`]s go to
//! [`RouteControl::set_health`](route::reload::RouteControl::set_health),
//! which passes them to the workers through their rings.
//!
//! A probe counts as answered when a final response (200-699) other than 503
//! arrives before the next round starts: any server that answers is alive,
//! except one that says it cannot take calls now. Provisional responses are
//! ignored; an unanswered probe counts as missed when the next round starts.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use route::health::{HealthChange, HealthSettings, TargetHealth};

/// Datagrams [`Prober::poll`] reads at most in one call.
pub const MAX_DATAGRAMS_PER_POLL: usize = 4096;

/// An OPTIONS in flight.
#[derive(Debug, Clone)]
struct Outstanding {
    call_id: String,
    branch: String,
    sent_at: Instant,
}

#[derive(Debug, Clone)]
struct Probed {
    addr: SocketAddr,
    health: TargetHealth,
    outstanding: Option<Outstanding>,
    probes: TargetProbes,
}

/// One target's probe counters (the stats snapshot shows them per target).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetProbes {
    /// OPTIONS sent to it.
    pub sent: u64,
    /// Probes it answered (a final response other than 503, in time).
    pub answered: u64,
    /// Round trip of its last answered probe, when the answer's arrival
    /// time was known ([`ProbeSet::handle_datagram_at`]).
    pub rtt: Option<Duration>,
}

/// Probe state for a set of targets (sans-IO).
#[derive(Debug)]
pub struct ProbeSet {
    settings: HealthSettings,
    sent_by: SocketAddr,
    targets: Vec<Probed>,
    /// Call-ID of each outstanding probe to its target's index.
    by_call_id: HashMap<String, usize>,
    next_round: Option<Instant>,
    /// Makes this prober's Call-IDs unlike any earlier run's.
    instance: u64,
    sequence: u64,
    /// Counters: probes sent, answers matched, datagrams that matched nothing.
    pub stats: ProbeStats,
}

/// Counters of a [`ProbeSet`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeStats {
    /// OPTIONS written.
    pub sent: u64,
    /// OPTIONS that could not be sent (the socket refused them).
    pub send_failed: u64,
    /// Final answers matched to an outstanding probe.
    pub answered: u64,
    /// Probes counted as missed.
    pub missed: u64,
    /// Datagrams that matched no outstanding probe (late, unknown,
    /// provisional or unparsable).
    pub unmatched: u64,
}

impl ProbeSet {
    /// Probes sent with `sent_by` (our address, for the Via and From) on
    /// `settings`' schedule.
    pub fn new(settings: HealthSettings, sent_by: SocketAddr) -> ProbeSet {
        ProbeSet {
            settings,
            sent_by,
            targets: Vec::new(),
            by_call_id: HashMap::new(),
            next_round: None,
            instance: fastrand::u64(..),
            sequence: 0,
            stats: ProbeStats::default(),
        }
    }

    /// Replaces the probe schedule and thresholds (after a reload).
    pub fn set_settings(&mut self, settings: HealthSettings) {
        self.settings = settings;
    }

    /// The targets to probe (after a reload). Targets already known keep
    /// their health and probe; new ones start up.
    pub fn set_targets(&mut self, addrs: &[SocketAddr]) {
        let mut old: HashMap<SocketAddr, Probed> =
            self.targets.drain(..).map(|p| (p.addr, p)).collect();
        self.by_call_id.clear();
        for &addr in addrs {
            let p = old.remove(&addr).unwrap_or(Probed {
                addr,
                health: TargetHealth::new_up(),
                outstanding: None,
                probes: TargetProbes::default(),
            });
            if let Some(o) = &p.outstanding {
                self.by_call_id
                    .insert(o.call_id.clone(), self.targets.len());
            }
            self.targets.push(p);
        }
    }

    /// Whether the target is up by the probes so far (`None` if not probed).
    pub fn is_up(&self, addr: SocketAddr) -> Option<bool> {
        self.targets
            .iter()
            .find(|p| p.addr == addr)
            .map(|p| p.health.is_up())
    }

    /// The probe counters of one target (`None` if not probed).
    pub fn target_probes(&self, addr: SocketAddr) -> Option<TargetProbes> {
        self.targets
            .iter()
            .find(|p| p.addr == addr)
            .map(|p| p.probes)
    }

    /// When the next round is due (`None` before the first).
    pub fn next_round(&self) -> Option<Instant> {
        self.next_round
    }

    /// True when a round is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.next_round.is_none_or(|t| now >= t)
    }

    /// Starts a round if one is due: probes still unanswered count as missed,
    /// then a new OPTIONS is written for every target and passed to `send`
    /// (which returns whether it went out). Changes are appended to `changes`.
    pub fn poll_round(
        &mut self,
        now: Instant,
        changes: &mut Vec<HealthChange>,
        mut send: impl FnMut(SocketAddr, &[u8]) -> bool,
    ) {
        if !self.due(now) {
            return;
        }
        self.next_round = Some(now + self.settings.interval);
        self.by_call_id.clear();
        let mut buf = Vec::with_capacity(512);
        for i in 0..self.targets.len() {
            if self.targets[i].outstanding.take().is_some() {
                self.stats.missed += 1;
                self.record(i, false, changes);
            }
            self.sequence += 1;
            let call_id = format!(
                "{:016x}-{}@{}",
                self.instance,
                self.sequence,
                self.sent_by.ip()
            );
            let branch = format!("z9hG4bK-dce-{:x}-{}", self.instance, self.sequence);
            buf.clear();
            wire::write_options(
                &mut buf,
                self.targets[i].addr,
                self.sent_by,
                &branch,
                &call_id,
                (self.sequence % (1 << 31)) as u32,
            );
            if send(self.targets[i].addr, &buf) {
                self.stats.sent += 1;
                self.targets[i].probes.sent += 1;
            } else {
                self.stats.send_failed += 1;
            }
            // A probe that could not be sent is missed at the next round too.
            self.by_call_id.insert(call_id.clone(), i);
            self.targets[i].outstanding = Some(Outstanding {
                call_id,
                branch,
                sent_at: now,
            });
        }
    }

    /// Handles one datagram received on the probe socket. Returns true when
    /// it answered an outstanding probe.
    pub fn handle_datagram(&mut self, datagram: &[u8], changes: &mut Vec<HealthChange>) -> bool {
        self.handle_reply(datagram, None, changes)
    }

    /// [`ProbeSet::handle_datagram`] for a datagram that arrived at
    /// `received`: an answer also sets its target's round trip.
    pub fn handle_datagram_at(
        &mut self,
        datagram: &[u8],
        received: Instant,
        changes: &mut Vec<HealthChange>,
    ) -> bool {
        self.handle_reply(datagram, Some(received), changes)
    }

    fn handle_reply(
        &mut self,
        datagram: &[u8],
        received: Option<Instant>,
        changes: &mut Vec<HealthChange>,
    ) -> bool {
        let Some(reply) = wire::parse_reply(datagram) else {
            self.stats.unmatched += 1;
            return false;
        };
        let matched = std::str::from_utf8(reply.call_id)
            .ok()
            .and_then(|c| self.by_call_id.get(c).copied())
            .filter(|&i| {
                self.targets[i]
                    .outstanding
                    .as_ref()
                    .is_some_and(|o| o.branch.as_bytes() == reply.branch)
            });
        let Some(i) = matched else {
            self.stats.unmatched += 1;
            return false;
        };
        if reply.status < 200 || !reply.cseq_is_options {
            self.stats.unmatched += 1;
            return false;
        }
        let outstanding = self.targets[i].outstanding.take().expect("matched");
        self.by_call_id.remove(&outstanding.call_id);
        // 503: the server says it cannot take calls now.
        let answered = reply.status != 503;
        if answered {
            self.stats.answered += 1;
            let probes = &mut self.targets[i].probes;
            probes.answered += 1;
            if let Some(at) = received {
                probes.rtt = Some(at.saturating_duration_since(outstanding.sent_at));
            }
        } else {
            self.stats.missed += 1;
        }
        self.record(i, answered, changes);
        true
    }

    fn record(&mut self, i: usize, answered: bool, changes: &mut Vec<HealthChange>) {
        let p = &mut self.targets[i];
        if let Some(up) = p.health.record(answered, &self.settings) {
            changes.push(HealthChange {
                addr: p.addr,
                up,
                after: if up {
                    self.settings.up_after
                } else {
                    self.settings.down_after
                },
            });
        }
    }
}

/// Probes over a UDP socket, for the control thread.
#[derive(Debug)]
pub struct Prober {
    socket: UdpSocket,
    core: ProbeSet,
    buf: Box<[u8]>,
}

impl Prober {
    /// Binds a non-blocking UDP socket at `local` (a specific address: it is
    /// the sent-by of every probe) and probes on `settings`' schedule.
    pub fn bind(local: SocketAddr, settings: HealthSettings) -> io::Result<Prober> {
        Prober::from_socket(UdpSocket::bind(local)?, settings)
    }

    /// Probes from an already bound socket (made non-blocking here).
    pub fn from_socket(socket: UdpSocket, settings: HealthSettings) -> io::Result<Prober> {
        socket.set_nonblocking(true)?;
        let sent_by = socket.local_addr()?;
        Ok(Prober {
            socket,
            core: ProbeSet::new(settings, sent_by),
            buf: vec![0u8; 65_536].into_boxed_slice(),
        })
    }

    /// The socket (to register with a poller).
    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// The probe state.
    pub fn probes(&self) -> &ProbeSet {
        &self.core
    }

    /// The targets to probe (see [`ProbeSet::set_targets`]).
    pub fn set_targets(&mut self, addrs: &[SocketAddr]) {
        self.core.set_targets(addrs);
    }

    /// The probe schedule and thresholds (see [`ProbeSet::set_settings`]).
    pub fn set_settings(&mut self, settings: HealthSettings) {
        self.core.set_settings(settings);
    }

    /// Probes the forward targets of `table` that its groups want probed
    /// ([`RouteTable::probed_upstreams`](route::table::RouteTable::probed_upstreams))
    /// on its schedule: call it at start and after every accepted reload.
    pub fn follow_table(&mut self, table: &route::table::RouteTable) {
        self.core.set_settings(table.health_settings());
        self.core.set_targets(&table.probed_upstreams());
    }

    /// Reads every waiting answer, then starts a round if one is due at
    /// `now`. Health changes are appended to `changes`. Never blocks.
    pub fn poll(&mut self, now: Instant, changes: &mut Vec<HealthChange>) -> io::Result<()> {
        // Bounded, so a flood on the probe socket cannot hold the control
        // thread; what is left is read at the next poll.
        for _ in 0..MAX_DATAGRAMS_PER_POLL {
            match self.socket.recv_from(&mut self.buf) {
                Ok((len, _from)) => {
                    // The clock is read here, at the I/O edge, for the
                    // round trip; the core takes it as an argument.
                    let received = Instant::now();
                    self.core
                        .handle_datagram_at(&self.buf[..len], received, changes);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // An ICMP error reported on the socket says nothing about
                // which probe it was; the probe is simply not answered.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e),
            }
        }
        let socket = &self.socket;
        self.core.poll_round(now, changes, |addr, bytes| {
            socket.send_to(bytes, addr).is_ok()
        });
        Ok(())
    }

    /// When [`Prober::poll`] next has a round to start.
    pub fn next_round(&self) -> Option<Instant> {
        self.core.next_round()
    }
}

/// Writing OPTIONS and reading the answer, with the SIP parser and writer.
pub mod wire {
    use std::net::SocketAddr;

    use sip::write::{RequestBuilder, SentBy};
    use sip::{self, Method};

    /// Appends an OPTIONS request for `target` to `out`.
    pub fn write_options(
        out: &mut Vec<u8>,
        target: SocketAddr,
        sent_by: SocketAddr,
        branch: &str,
        call_id: &str,
        cseq: u32,
    ) {
        // SocketAddr's Display writes [v6]:port, as a SIP hostport needs.
        let uri = format!("sip:{target}");
        let from = format!("<sip:dce-edge@{sent_by}>;tag={cseq:x}");
        let to = format!("<{uri}>");
        let request = RequestBuilder {
            method: Method::Options,
            request_uri: uri.as_bytes(),
            sent_by: SentBy::Addr(sent_by),
            branch: branch.as_bytes(),
            from: from.as_bytes(),
            to: to.as_bytes(),
            call_id: call_id.as_bytes(),
            cseq,
            max_forwards: 70,
            headers: &[("Accept", b"application/sdp")],
            content_type: None,
            body: b"",
        };
        let mut buf = [0u8; 1024];
        if let Ok(len) = request.write(&mut buf) {
            out.extend_from_slice(&buf[..len]);
        }
    }

    /// What the prober needs from a response.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Reply<'a> {
        /// The status code.
        pub status: u16,
        /// The Call-ID value.
        pub call_id: &'a [u8],
        /// The branch of the first Via.
        pub branch: &'a [u8],
        /// True when CSeq names OPTIONS.
        pub cseq_is_options: bool,
    }

    /// Reads a SIP response's status, Call-ID, top Via branch and CSeq
    /// method; `None` for anything else. Never panics.
    pub fn parse_reply(datagram: &[u8]) -> Option<Reply<'_>> {
        let msg = sip::parse(datagram).ok()?;
        Some(Reply {
            status: msg.status()?,
            call_id: msg.call_id(),
            branch: msg.top_via().branch()?,
            cseq_is_options: msg.cseq().method == Method::Options,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings() -> HealthSettings {
        HealthSettings {
            interval: Duration::from_secs(1),
            down_after: 2,
            up_after: 2,
            ..HealthSettings::default()
        }
    }

    /// An answer to `request` with `status`, as a server would write it.
    fn answer(request: &[u8], status: u16) -> Vec<u8> {
        let text = std::str::from_utf8(request).unwrap();
        let mut out = format!("SIP/2.0 {status} Whatever\r\n");
        for line in text.split("\r\n") {
            for h in ["Via:", "From:", "To:", "Call-ID:", "CSeq:"] {
                if line.starts_with(h) {
                    out.push_str(line);
                    out.push_str("\r\n");
                }
            }
        }
        out.push_str("Content-Length: 0\r\n\r\n");
        out.into_bytes()
    }

    fn round(
        set: &mut ProbeSet,
        now: Instant,
        changes: &mut Vec<HealthChange>,
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut sent = Vec::new();
        set.poll_round(now, changes, |a, b| {
            sent.push((a, b.to_vec()));
            true
        });
        sent
    }

    #[test]
    fn the_parser_reads_what_the_writer_and_a_server_write() {
        let mut req = Vec::new();
        wire::write_options(
            &mut req,
            "[2001:db8::5]:5060".parse().unwrap(),
            "198.18.0.1:5060".parse().unwrap(),
            "z9hG4bK-x",
            "c1@h",
            7,
        );
        assert!(req.starts_with(b"OPTIONS sip:[2001:db8::5]:5060 SIP/2.0\r\n"));
        let reply = answer(&req, 200);
        let r = wire::parse_reply(&reply).unwrap();
        assert_eq!(
            (r.status, r.call_id, r.branch, r.cseq_is_options),
            (200, &b"c1@h"[..], &b"z9hG4bK-x"[..], true)
        );
        assert_eq!(wire::parse_reply(&req), None, "a request is not a reply");
        assert_eq!(wire::parse_reply(b"SIP/2.0 2x0 OK\r\n\r\n"), None);
    }

    #[test]
    fn a_silent_target_goes_down_and_an_answering_one_stays_up() {
        let a: SocketAddr = "198.18.0.10:5060".parse().unwrap();
        let b: SocketAddr = "198.18.0.11:5060".parse().unwrap();
        let mut set = ProbeSet::new(settings(), "198.18.0.1:5060".parse().unwrap());
        set.set_targets(&[a, b]);
        let mut changes = Vec::new();
        let t0 = Instant::now();
        for k in 0..4 {
            let now = t0 + Duration::from_secs(k);
            for (addr, req) in round(&mut set, now, &mut changes) {
                if addr == a {
                    assert!(set.handle_datagram(&answer(&req, 200), &mut changes));
                }
            }
        }
        assert_eq!(
            changes,
            vec![HealthChange {
                addr: b,
                up: false,
                after: 2
            }]
        );
        assert_eq!(set.is_up(a), Some(true));
        assert_eq!(set.stats.answered, 4);
    }

    #[test]
    fn probe_counters_and_round_trips_are_kept_per_target() {
        let a: SocketAddr = "198.18.0.10:5060".parse().unwrap();
        let b: SocketAddr = "198.18.0.11:5060".parse().unwrap();
        let mut set = ProbeSet::new(settings(), "198.18.0.1:5060".parse().unwrap());
        set.set_targets(&[a, b]);
        let mut changes = Vec::new();
        let t0 = Instant::now();
        for k in 0..3 {
            let now = t0 + Duration::from_secs(k);
            for (addr, req) in round(&mut set, now, &mut changes) {
                if addr == a {
                    let at = now + Duration::from_millis(3 + k);
                    assert!(set.handle_datagram_at(&answer(&req, 200), at, &mut changes));
                }
            }
        }
        assert_eq!(
            set.target_probes(a),
            Some(TargetProbes {
                sent: 3,
                answered: 3,
                rtt: Some(Duration::from_millis(5)),
            })
        );
        assert_eq!(
            set.target_probes(b),
            Some(TargetProbes {
                sent: 3,
                answered: 0,
                rtt: None,
            })
        );
        // The totals still count both.
        assert_eq!((set.stats.sent, set.stats.answered), (6, 3));
        // A reload that keeps a target keeps its counters.
        set.set_targets(&[b, a]);
        assert_eq!(set.target_probes(a).map(|p| p.answered), Some(3));
        assert_eq!(set.target_probes("198.18.0.12:5060".parse().unwrap()), None);
    }

    #[test]
    fn a_down_target_comes_back_after_m_answers() {
        let b: SocketAddr = "198.18.0.11:5060".parse().unwrap();
        let mut set = ProbeSet::new(settings(), "198.18.0.1:5060".parse().unwrap());
        set.set_targets(&[b]);
        let mut changes = Vec::new();
        let t0 = Instant::now();
        for k in 0..3 {
            round(&mut set, t0 + Duration::from_secs(k), &mut changes);
        }
        assert_eq!(set.is_up(b), Some(false));
        for k in 3..5 {
            for (_, req) in round(&mut set, t0 + Duration::from_secs(k), &mut changes) {
                set.handle_datagram(&answer(&req, 404), &mut changes);
            }
        }
        assert_eq!(
            changes.last(),
            Some(&HealthChange {
                addr: b,
                up: true,
                after: 2
            })
        );
    }

    #[test]
    fn late_provisional_503_and_foreign_answers_do_not_count() {
        let b: SocketAddr = "198.18.0.11:5060".parse().unwrap();
        let mut set = ProbeSet::new(settings(), "198.18.0.1:5060".parse().unwrap());
        set.set_targets(&[b]);
        let mut changes = Vec::new();
        let t0 = Instant::now();
        let first = round(&mut set, t0, &mut changes);
        assert!(
            !set.handle_datagram(&answer(&first[0].1, 100), &mut changes),
            "provisional"
        );
        let second = round(&mut set, t0 + Duration::from_secs(1), &mut changes);
        assert!(
            !set.handle_datagram(&answer(&first[0].1, 200), &mut changes),
            "late"
        );
        assert!(
            set.handle_datagram(&answer(&second[0].1, 503), &mut changes),
            "503 is matched"
        );
        assert_eq!(
            changes,
            vec![HealthChange {
                addr: b,
                up: false,
                after: 2
            }],
            "but counts as missed"
        );
        assert!(!set.handle_datagram(b"garbage", &mut changes));
    }

    #[test]
    fn rounds_wait_for_the_interval() {
        let mut set = ProbeSet::new(settings(), "198.18.0.1:5060".parse().unwrap());
        set.set_targets(&["198.18.0.11:5060".parse().unwrap()]);
        let t0 = Instant::now();
        let mut changes = Vec::new();
        assert_eq!(round(&mut set, t0, &mut changes).len(), 1);
        assert_eq!(
            round(&mut set, t0 + Duration::from_millis(999), &mut changes).len(),
            0
        );
        assert_eq!(
            round(&mut set, t0 + Duration::from_secs(1), &mut changes).len(),
            1
        );
    }
}
