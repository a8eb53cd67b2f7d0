use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Which product mode produced a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// `dce-edge run`: XDP filter plus workers and proxy.
    #[default]
    Appliance,
    /// `dce-edge filter`: the XDP filter alone in front of a SIP server.
    Filter,
}

/// How packets reach the edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Modes {
    /// XDP attach mode actually in use: `native`, `generic`, or `none`.
    pub attach: String,
    /// True when `auto` asked for native and the kernel gave generic.
    pub attach_fallback: bool,
    /// How workers receive: `zero_copy`, `copy` (AF_XDP) or `socket`.
    pub dataplane: String,
    /// The kernel's id of the XDP program (a filter reload keeps it, a
    /// restart changes it).
    #[serde(default)]
    pub program_id: Option<u32>,
}

/// Reloads of one kind (the `[filter]` table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ReloadCounts {
    /// Reloads applied.
    pub accepted: u64,
    /// Reloads refused (the running rules stayed).
    pub refused: u64,
    /// Why the last refused one was refused.
    pub last_error: Option<String>,
}

/// The XDP program's verdict counters, summed over CPUs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct XdpCounters {
    /// Drops by reason (`blocklist`, `banned`, `fragment`, `not_sip`,
    /// `scanner`, `rate_limit`, `overload`, `malformed`, `unverified`,
    /// `emergency_over_budget`, `syn_rate_limit`, `syn_overload`);
    /// every reason is present, zero or not.
    pub drops: BTreeMap<String, u64>,
    /// Packets passed to the kernel (not SIP, SIP over TCP and TLS, or
    /// shield mode).
    pub passed: u64,
    /// Packets redirected to AF_XDP sockets.
    pub redirected: u64,
}

/// A source the XDP program dropped packets from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopOffender {
    /// The address (IPv4) or /64 (IPv6).
    pub source: String,
    /// Packets dropped from it.
    pub drops: u64,
    /// The reason of its latest drop.
    pub last_reason: String,
}

/// A banned source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanInForce {
    /// The address or prefix.
    pub source: String,
    /// Why (`scanner`, `manual`, `not_found`, `auth_failure`,
    /// `extension_scan`, `flood`).
    pub reason: String,
    /// Seconds until the ban lapses.
    pub seconds_left: u64,
}

/// How full one of the XDP program's ban maps is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanMapFill {
    /// The map: `bans_v4` and `bans_v6` (operators' bans, LPM tries) or
    /// `auto_bans` (automatic bans of single sources, both families).
    pub map: String,
    /// Entries in the map now: every ban in force, and lapsed ones until
    /// the control thread's sweep (every 5 s) removes them.
    pub entries: u64,
    /// The most entries the map holds (its `max_entries`); a full map
    /// refuses new bans of its kind (a full `auto_bans` never keeps an
    /// operator from banning).
    pub capacity: u64,
}

/// One worker's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct WorkerReport {
    /// Worker index.
    pub id: usize,
    /// The core it is pinned to.
    pub core: Option<usize>,
    /// The NIC queue it serves (AF_XDP).
    pub queue: Option<u32>,
    /// Datagrams received.
    pub received: u64,
    /// Datagrams transmitted.
    pub transmitted: u64,
    /// Messages that failed to parse, by error kind.
    pub parse_errors: BTreeMap<String, u64>,
    /// Requests forwarded upstream.
    pub forwarded_requests: u64,
    /// Responses forwarded back toward callers.
    pub forwarded_responses: u64,
    /// Answers generated locally, by status code.
    pub answered: BTreeMap<u16, u64>,
    /// Messages neither forwarded nor answered, by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Ring and fill-queue shortfalls and kernel socket drops, by name.
    pub rings: BTreeMap<String, u64>,
    /// Milliseconds since the worker last answered the control thread's
    /// once-a-second request for its counters, measured by the control
    /// thread when it assembled this snapshot (a worker that never answered:
    /// since the appliance started). A worker that loops answers within
    /// milliseconds; one that is stuck stops answering and this grows, even
    /// though its counters above then stay at their last answered values.
    #[serde(default)]
    pub snapshot_age_ms: u64,
    /// CPU time the worker's thread has run, in microseconds.
    #[serde(default)]
    pub cpu_us: u64,
    /// Time the worker's thread was ready to run but waited for its core
    /// (other threads had it), in microseconds: a worker that waits while
    /// its rings overflow is starved, not slow.
    #[serde(default)]
    pub cpu_wait_us: u64,
    /// Whether the worker runs with a real-time priority.
    #[serde(default)]
    pub realtime: bool,
}

/// Route table counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RouteCounters {
    /// Version of the table the workers run.
    pub table_version: u64,
    /// Prefixes in it.
    pub prefixes: u64,
    /// Lookups made.
    pub lookups: u64,
    /// Of those, lookups answered from a receive batch's side-by-side
    /// lookups (the rest were made one at a time).
    #[serde(default)]
    pub batched_lookups: u64,
    /// Lookups that matched, by route group.
    pub hits: BTreeMap<String, u64>,
    /// Lookups that matched nothing.
    pub misses: u64,
    /// Requests refused with 503 over a group's CPS cap, by group.
    pub cap_rejections: BTreeMap<String, u64>,
    /// Reloads accepted.
    pub reloads_accepted: u64,
    /// Reloads refused.
    pub reloads_refused: u64,
    /// Why the last refused reload was refused.
    pub last_reload_error: Option<String>,
}

/// One upstream target's health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetState {
    /// Its route group.
    pub group: String,
    /// host:port.
    pub target: String,
    /// Up or down: as the OPTIONS probes and passive health (what calls
    /// toward it met) see it together.
    pub up: bool,
    /// Why it is in that state: the cause of its last change ("3 OPTIONS
    /// probes unanswered", "5 INVITEs in a row answered 503", "answered
    /// again"); none while it never changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// Round trip of the last answered probe, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Probes sent.
    pub probes_sent: u64,
    /// Probes answered.
    pub probes_answered: u64,
}

/// A latency histogram: counts per bucket with upper bounds in
/// milliseconds (the last bound is +Inf), Prometheus-style.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LatencyHistogram {
    /// Upper bounds of the buckets, in milliseconds, ascending.
    pub bounds_ms: Vec<f64>,
    /// Count in each bucket (not cumulative); one more than `bounds_ms`
    /// (the overflow bucket).
    pub counts: Vec<u64>,
    /// Observations.
    pub count: u64,
    /// Sum of observations in milliseconds.
    pub sum_ms: f64,
    /// Median, in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, in milliseconds.
    pub p99_ms: f64,
}

/// Call counters as the proxy sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CallCounters {
    /// INVITEs forwarded upstream (retransmissions included).
    pub invites_forwarded: u64,
    /// 2xx answers to INVITE relayed back.
    pub answered: u64,
    /// Final non-2xx answers to INVITE relayed back or generated.
    pub failed: u64,
}

/// Emergency calls (911, 112, `urn:service:sos`, ...): never blocked,
/// capped or shed, bounded only by their own budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct EmergencyReport {
    /// Emergency INVITEs received (retransmissions included).
    pub attempted: u64,
    /// New emergency calls forwarded.
    pub forwarded: u64,
    /// Emergency calls answered 2xx.
    pub answered: u64,
    /// Emergency calls that got a final failure.
    pub failed: u64,
    /// Emergency requests from unverified sources over the emergency budget
    /// (a flood of them).
    pub over_budget: u64,
    /// Their setup latency.
    pub setup_latency: LatencyHistogram,
}

/// Everything the edge counts, at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Snapshot {
    /// dce-edge version.
    pub version: String,
    /// Which mode produced it.
    pub role: Role,
    /// The interface the filter is attached to, if any.
    pub interface: Option<String>,
    /// Unix time of the snapshot, in milliseconds.
    pub taken_at_ms: u64,
    /// Seconds since the edge started.
    pub uptime_seconds: f64,
    /// Attach and dataplane modes.
    pub modes: Modes,
    /// XDP verdicts, when a filter is attached.
    pub xdp: Option<XdpCounters>,
    /// Sources with the most drops, most first.
    pub top_sources: Vec<TopOffender>,
    /// The sources the XDP program's `top_sources` map holds, folded into
    /// networks (IPv4 /24 and /16, IPv6 /64 and /48) by drop reason; `None`
    /// when no XDP filter runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_networks: Option<super::networks::NetworkTally>,
    /// Active bans.
    pub bans: Vec<BanInForce>,
    /// How full the XDP ban maps are, one entry per address family; empty
    /// when no XDP filter runs (socket mode without a `[filter]`, where the
    /// workers keep the bans themselves).
    #[serde(default)]
    pub ban_maps: Vec<BanMapFill>,
    /// Sources that proved their address is real (echoed a dialog cookie)
    /// and skip the XDP budget for unverified sources.
    #[serde(default)]
    pub verified_sources: u64,
    /// Per-worker counters.
    pub workers: Vec<WorkerReport>,
    /// Route table counters.
    pub routes: RouteCounters,
    /// Reloads of the `[filter]` table.
    #[serde(default)]
    pub filter_reloads: ReloadCounts,
    /// Upstream target health.
    pub targets: Vec<TargetState>,
    /// Call setup latency through the edge (INVITE forwarded to its first
    /// final answer relayed).
    pub setup_latency: LatencyHistogram,
    /// Call counters.
    pub calls: CallCounters,
    /// Emergency calls.
    #[serde(default)]
    pub emergency: EmergencyReport,
    /// SIP over TCP and TLS, when the edge runs a stream thread.
    #[serde(default)]
    pub stream: Option<StreamReport>,
    /// This edge's place in a fleet, when it is in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetReport>,
}

/// The stream thread (SIP over TCP and TLS): connections and what became
/// of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StreamReport {
    /// Connections open when the snapshot was taken.
    pub open_connections: u64,
    /// Its counters by name (`accepted`, `refused_per_source`,
    /// `slow_timeouts`, `tls_failed_certificate`, ...), since start: both
    /// transports together.
    pub counters: std::collections::BTreeMap<String, u64>,
    /// The connections' counters of each transport (`tcp`, `tls`) apart,
    /// under the same names; empty from an edge that does not split them.
    #[serde(default)]
    pub transports: BTreeMap<String, TransportReport>,
}

/// The connections of one transport of the stream thread (SIP over TCP, or
/// over TLS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TransportReport {
    /// Connections of this transport open when the snapshot was taken.
    pub open_connections: u64,
    /// Its connection counters by name (`accepted`, `dialled`,
    /// `refused_total`, `refused_per_source`, `idle_timeouts`,
    /// `header_too_long`, `tls_failed_protocol`, ...), since start.
    pub counters: BTreeMap<String, u64>,
}

impl TransportReport {
    /// The counters folded into a [`StreamSummary`].
    pub fn summary(&self) -> StreamSummary {
        StreamSummary::of(self.open_connections, &self.counters)
    }
}

/// The stream layer's counters folded the way an operator reads them (the
/// `stats` line and the live view).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamSummary {
    /// Connections open.
    pub open: u64,
    /// Connections accepted.
    pub accepted: u64,
    /// Connections refused by the total or the per-source cap.
    pub refused_by_caps: u64,
    /// Connections closed idle, too slow with a message, or in a TLS
    /// handshake that did not finish.
    pub timed_out: u64,
    /// Connections closed for a framing error (header or body too long,
    /// Content-Length missing, bad or conflicting).
    pub framing_errors: u64,
    /// Connections closed because their peer did not read what was queued.
    pub queue_overflows: u64,
    /// TLS handshakes completed.
    pub tls_handshakes: u64,
    /// TLS handshakes failed (certificate, protocol, alert, other).
    pub tls_failed: u64,
}

impl StreamReport {
    /// The counters folded into a [`StreamSummary`] (both transports).
    pub fn summary(&self) -> StreamSummary {
        StreamSummary::of(self.open_connections, &self.counters)
    }
}

impl StreamSummary {
    /// Folds counters by name (those of [`StreamReport`] or of one
    /// [`TransportReport`]); a name missing counts as 0.
    pub fn of(open: u64, counters: &BTreeMap<String, u64>) -> StreamSummary {
        let c = |names: &[&str]| -> u64 {
            names
                .iter()
                .map(|n| counters.get(*n).copied().unwrap_or(0))
                .sum()
        };
        StreamSummary {
            open,
            accepted: c(&["accepted"]),
            refused_by_caps: c(&["refused_total", "refused_per_source"]),
            timed_out: c(&["idle_timeouts", "slow_timeouts", "tls_handshake_timeouts"]),
            framing_errors: c(&[
                "header_too_long",
                "body_too_long",
                "no_content_length",
                "bad_content_length",
                "conflicting_content_length",
            ]),
            queue_overflows: c(&["queue_overflow"]),
            tls_handshakes: c(&["tls_handshakes"]),
            tls_failed: c(&[
                "tls_failed_certificate",
                "tls_failed_protocol",
                "tls_failed_alert",
                "tls_failed_other",
            ]),
        }
    }
}

/// An edge of a fleet: its announcement of the service address, the bus,
/// and the other edges it hears.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct FleetReport {
    /// The fleet.
    pub name: String,
    /// This edge.
    pub edge: String,
    /// This edge's own address.
    #[serde(default)]
    pub address: Option<String>,
    /// The announcement, when this edge announces the service address.
    #[serde(default)]
    pub announce: Option<AnnounceReport>,
    /// The bus, when this edge shares state over one.
    #[serde(default)]
    pub bus: Option<BusReport>,
    /// The other edges, as heard over the bus.
    #[serde(default)]
    pub peers: Vec<PeerReport>,
    /// Bans shared in the fleet as held here (this edge's and the others'),
    /// longest left first, at most 100.
    #[serde(default)]
    pub shared_bans: Vec<SharedBan>,
}

/// The bus the fleet shares its state over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct BusReport {
    /// Connected and in sync; false: this edge runs on local state only.
    pub connected: bool,
    /// The server.
    pub server: Option<String>,
    /// Seconds since it connected.
    pub connected_for_seconds: Option<f64>,
    /// How the last outage was noticed.
    pub last_down_reason: Option<String>,
    /// Outages since start.
    pub outages: u64,
    /// Whole reads of the shared state (one per connection).
    pub resyncs: u64,
    /// Entries the last one read.
    pub last_resync_entries: u64,
    /// How long it took, in milliseconds.
    pub last_resync_ms: f64,
    /// Messages published.
    pub published: u64,
    /// Publishes refused (not connected, buffer full).
    pub publish_refused: u64,
    /// Messages read, by `kind:verdict` (`ban:applied`,
    /// `ban:not_bannable`, `verified:rate_limited`, ...).
    pub received: BTreeMap<String, u64>,
    /// Messages waiting to go out (paced).
    pub queued_out: u64,
    /// Messages waiting to be applied.
    pub queued_in: u64,
    /// Messages dropped unread: more waited than the queue holds.
    pub dropped_in: u64,
    /// Messages of this edge dropped unsent: more waited than the queue holds.
    pub dropped_out: u64,
    /// Bans this edge made and shares, in force.
    pub own_bans: u64,
    /// Bans of other edges held here, in force.
    pub remote_bans: u64,
    /// Verifications of other edges held here.
    pub remote_verified: u64,
}

/// Another edge of the fleet, as heard over the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PeerReport {
    /// Its name.
    pub edge: String,
    /// Its own address.
    pub address: Option<String>,
    /// Whether it announces the service address (`None`: it announces
    /// nothing itself).
    pub announced: Option<bool>,
    /// Why it is withdrawn.
    pub reason: Option<String>,
    /// Its route table version.
    pub routes_version: u64,
    /// A digest of its route files (equal digests, equal tables).
    pub routes_digest: String,
    /// Bans it made and shares.
    pub bans_made: u64,
    /// Sources verified there.
    pub verified: u64,
    /// Seconds since anything of it was heard.
    pub last_contact_seconds: f64,
    /// Unheard for over five seconds.
    pub lost: bool,
    /// Its bans held here.
    pub bans_held_here: u64,
}

/// A ban shared in the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SharedBan {
    /// The source.
    pub network: String,
    /// Why (for bans of this edge).
    pub reason: String,
    /// The edge that made it.
    pub origin: String,
    /// Seconds left.
    pub seconds_left: u64,
}

/// The announcement of the service address through the routing daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AnnounceReport {
    /// What the edge wants the routing daemon to do: announce.
    pub announced: bool,
    /// Why it is withdrawn (`starting`, `draining`, `stopping`,
    /// `workers_stopped`, `xdp_detached`, `no_upstream`).
    pub reason: Option<String>,
    /// Seconds until it announces if it stays healthy.
    pub announces_in_seconds: Option<f64>,
    /// The hold-down the next announcement waits, in seconds.
    pub hold_down_seconds: f64,
    /// An operator asked it to drain.
    pub draining: bool,
    /// What the routing daemon was last told successfully (`None`: not yet).
    pub daemon_applied: Option<bool>,
    /// Why the routing daemon could not be told, when it could not.
    pub daemon_error: Option<String>,
    /// Withdrawals since start.
    pub withdrawals: u64,
    /// Of those, flaps (withdrawn soon after announcing).
    pub flaps: u64,
}

impl Snapshot {
    /// Sum of one worker counter over all workers.
    pub fn workers_total(&self, f: impl Fn(&WorkerReport) -> u64) -> u64 {
        self.workers.iter().map(f).sum()
    }

    /// Total XDP drops over all reasons.
    pub fn xdp_drops_total(&self) -> u64 {
        self.xdp.as_ref().map_or(0, |x| x.drops.values().sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_round_trips_through_json() {
        let mut s = Snapshot {
            version: "0.1.0".into(),
            ..Snapshot::default()
        };
        s.xdp = Some(XdpCounters {
            drops: [("scanner".to_string(), 7)].into(),
            passed: 1,
            redirected: 2,
        });
        s.workers.push(WorkerReport {
            id: 0,
            received: 10,
            answered: [(200, 3)].into(),
            ..Default::default()
        });
        let text = serde_json::to_string(&s).unwrap();
        let back: Snapshot = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.xdp_drops_total(), 7);
        assert_eq!(back.workers_total(|w| w.received), 10);
    }
}
