//! A [`Snapshot`] rendered as OpenMetrics text, through a `prometheus-client`
//! collector built per scrape: the control thread owns the figures, so the
//! exporter keeps no metric state of its own and never drifts from them.

use std::fmt::Write as _;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::stats::{LatencyHistogram, Role, Snapshot};

/// How many top sources become `dce_edge_top_source_drops` series: each
/// source address is a label value, so the series count must stay bounded
/// however many addresses an attack spoofs.
pub const TOP_SOURCES_EXPORTED: usize = 10;

/// How many networks of each aggregation level (IPv4 /24 and /16, IPv6 /64
/// and /48) become `dce_edge_top_networks_drops` and
/// `dce_edge_top_networks_sources` series: at most 4 x 5 = 20 series each,
/// however an attack spreads its addresses.
pub const TOP_NETWORKS_EXPORTED: usize = 5;

/// Ban reasons always exported (at zero when none is active), so a
/// dashboard's series exist before the first ban.
pub const BAN_REASONS: [&str; 6] = [
    "scanner",
    "manual",
    "not_found",
    "auth_failure",
    "extension_scan",
    "flood",
];

/// The OpenMetrics content type `/metrics` answers with.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Renders a snapshot as a complete OpenMetrics exposition, `# EOF` included.
pub fn render_openmetrics(snapshot: &Snapshot) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector {
        snapshot: snapshot.clone(),
    }));
    let mut text = String::with_capacity(8 * 1024);
    // Writing into a String cannot fail; the encoder only propagates the
    // writer's errors.
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .expect("encoding into a String cannot fail");
    text
}

/// Escapes a label value as OpenMetrics requires (backslash, double quote,
/// line feed); `prometheus-client` writes label values verbatim.
pub fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// One series' labels, values already escaped.
type Labels = Vec<(&'static str, String)>;

fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels {
    pairs
        .into_iter()
        .map(|(k, v)| (k, escape_label_value(v)))
        .collect()
}

/// The collector: one snapshot, encoded once.
#[derive(Debug)]
struct SnapshotCollector {
    snapshot: Snapshot,
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.snapshot;
        let e = &mut encoder;
        encode_info(e, s)?;
        gauge_one(
            e,
            "dce_edge_uptime_seconds",
            "Seconds since the edge started.",
            s.uptime_seconds,
        )?;
        gauge_one(
            e,
            "dce_edge_verified_sources",
            "Sources that proved their address is real and skip the XDP budget for unverified sources.",
            s.verified_sources as f64,
        )?;
        if let Some(xdp) = &s.xdp {
            counters(
                e,
                "dce_edge_xdp_drops",
                "Packets the XDP program dropped, by reason, summed over CPUs.",
                xdp.drops
                    .iter()
                    .map(|(reason, n)| (labels([("reason", reason)]), *n)),
            )?;
            counter_one(
                e,
                "dce_edge_xdp_passed",
                "Packets the XDP program passed to the kernel.",
                xdp.passed,
            )?;
            counter_one(
                e,
                "dce_edge_xdp_redirected",
                "Packets the XDP program redirected to AF_XDP sockets.",
                xdp.redirected,
            )?;
        }
        encode_workers(e, s)?;
        encode_routes(e, s)?;
        counters(
            e,
            "dce_edge_filter_reloads",
            "Reloads of the [filter] table, by result (a refused reload keeps the running rules).",
            [
                ("accepted", s.filter_reloads.accepted),
                ("refused", s.filter_reloads.refused),
            ]
            .into_iter()
            .map(|(result, n)| (labels([("result", result)]), n)),
        )?;
        encode_targets(e, s)?;
        encode_setup_latency(e, &s.setup_latency)?;
        counters(
            e,
            "dce_edge_calls",
            "Calls by outcome: INVITEs forwarded, 2xx answers relayed, final failures.",
            [
                ("forwarded", s.calls.invites_forwarded),
                ("answered", s.calls.answered),
                ("failed", s.calls.failed),
            ]
            .into_iter()
            .map(|(outcome, n)| (labels([("outcome", outcome)]), n)),
        )?;
        let em = &s.emergency;
        counters(
            e,
            "dce_edge_emergency_calls",
            "Emergency calls (911, 112, urn:service:sos, ...) by outcome: INVITEs received, calls forwarded, answered 2xx, failed, and requests of unverified sources over the emergency budget.",
            [
                ("attempted", em.attempted),
                ("forwarded", em.forwarded),
                ("answered", em.answered),
                ("failed", em.failed),
                ("over_budget", em.over_budget),
            ]
            .into_iter()
            .map(|(outcome, n)| (labels([("outcome", outcome)]), n)),
        )?;
        encode_latency(
            e,
            "dce_edge_emergency_call_setup",
            "Emergency call setup latency through the edge: INVITE forwarded to its first final answer relayed.",
            &em.setup_latency,
        )?;
        if let Some(st) = &s.stream {
            gauge_one(
                e,
                "dce_edge_stream_open_connections",
                "SIP over TCP and TLS: connections open.",
                st.open_connections as f64,
            )?;
            counters(
                e,
                "dce_edge_stream",
                "SIP over TCP and TLS, by counter: connections accepted, refused by a cap, timed out (idle, slow message, TLS handshake), closed for framing errors or a full send queue, TLS handshakes completed and failed by reason, messages, pings, dials.",
                st.counters
                    .iter()
                    .map(|(name, n)| (labels([("counter", name)]), *n)),
            )?;
            if !st.transports.is_empty() {
                gauges(
                    e,
                    "dce_edge_stream_transport_open_connections",
                    "SIP over TCP and TLS: connections open, by transport.",
                    None,
                    st.transports
                        .iter()
                        .map(|(t, r)| (labels([("transport", t)]), r.open_connections as f64)),
                )?;
                counters(
                    e,
                    "dce_edge_stream_transport",
                    "SIP over TCP and TLS, by transport and counter: connections accepted, dialled, refused by the total or the per-source cap, closed by the peer or an I/O error, timed out (idle, slow message, TLS handshake), closed for a framing error by kind or a full send queue, TLS handshakes completed and failed by reason.",
                    st.transports.iter().flat_map(|(t, r)| {
                        r.counters.iter().map(move |(name, n)| {
                            (labels([("transport", t), ("counter", name)]), *n)
                        })
                    }),
                )?;
            }
        }
        encode_bans(e, s)?;
        encode_top_sources(e, s)?;
        if let Some(t) = &s.top_networks {
            encode_top_networks(e, t)?;
        }
        if let Some(f) = &s.fleet {
            encode_fleet(e, f)?;
        }
        Ok(())
    }
}

fn encode_fleet(
    e: &mut DescriptorEncoder,
    f: &crate::stats::FleetReport,
) -> Result<(), std::fmt::Error> {
    if let Some(a) = &f.announce {
        gauge_one(
            e,
            "dce_edge_fleet_announced",
            "1 while this edge wants the service address announced through its routing daemon, 0 while withdrawn.",
            if a.announced { 1.0 } else { 0.0 },
        )?;
        gauge_one(
            e,
            "dce_edge_fleet_announce_applied",
            "1 when the routing daemon confirmed the last announce or withdraw, 0 when it could not be told (see the event log).",
            if a.daemon_applied == Some(a.announced) && a.daemon_error.is_none() {
                1.0
            } else {
                0.0
            },
        )?;
        counters(
            e,
            "dce_edge_fleet_withdrawals",
            "Withdrawals of the service address since start; flaps are those soon after an announcement, which grow the hold-down.",
            [("all", a.withdrawals), ("flap", a.flaps)]
                .into_iter()
                .map(|(kind, n)| (labels([("kind", kind)]), n)),
        )?;
    }
    if let Some(b) = &f.bus {
        gauge_one(
            e,
            "dce_edge_fleet_bus_connected",
            "1 while this edge is connected to the fleet's bus and in sync; 0 while it runs on local state only.",
            if b.connected { 1.0 } else { 0.0 },
        )?;
        counter_one(
            e,
            "dce_edge_fleet_bus_outages",
            "Times the fleet's bus was lost since start.",
            b.outages,
        )?;
        counter_one(
            e,
            "dce_edge_fleet_bus_resyncs",
            "Whole reads of the shared state (one per connection to the bus).",
            b.resyncs,
        )?;
        counter_one(
            e,
            "dce_edge_fleet_messages_published",
            "Messages this edge published on the bus (heartbeats, bans, verified sources, operator actions).",
            b.published,
        )?;
        counters(
            e,
            "dce_edge_fleet_messages_received",
            "Messages of other edges read from the bus, by kind and verdict (applied, or why refused: not_bannable, rate_limited, over_quota, bad_signature, ...).",
            b.received.iter().map(|(kv, n)| {
                let (kind, verdict) = kv.split_once(':').unwrap_or((kv.as_str(), ""));
                (labels([("kind", kind), ("verdict", verdict)]), *n)
            }),
        )?;
        gauges(
            e,
            "dce_edge_fleet_bans",
            "Bans shared in the fleet and in force here: made by this edge (own) or taken from others (remote).",
            None,
            [("own", b.own_bans), ("remote", b.remote_bans)]
                .into_iter()
                .map(|(origin, n)| (labels([("origin", origin)]), n as f64)),
        )?;
        gauges(
            e,
            "dce_edge_fleet_peers",
            "Other edges of the fleet heard over the bus: alive, or lost (unheard for five seconds).",
            None,
            [
                ("alive", f.peers.iter().filter(|p| !p.lost).count()),
                ("lost", f.peers.iter().filter(|p| p.lost).count()),
            ]
            .into_iter()
            .map(|(state, n)| (labels([("state", state)]), n as f64)),
        )?;
    }
    Ok(())
}

fn encode_info(e: &mut DescriptorEncoder, s: &Snapshot) -> Result<(), std::fmt::Error> {
    let role = match s.role {
        Role::Appliance => "appliance",
        Role::Filter => "filter",
    };
    let info = Info::new(labels([
        ("version", &s.version),
        ("role", role),
        ("attach_mode", &s.modes.attach),
        ("dataplane_mode", &s.modes.dataplane),
        (
            "attach_fallback",
            if s.modes.attach_fallback {
                "true"
            } else {
                "false"
            },
        ),
    ]));
    let m = e.encode_descriptor(
        "dce_edge",
        "Build and modes: XDP attach mode (native, generic, none), dataplane mode (zero_copy, copy, socket), and whether attach fell back to generic.",
        None,
        MetricType::Info,
    )?;
    info.encode(m)
}

fn encode_workers(e: &mut DescriptorEncoder, s: &Snapshot) -> Result<(), std::fmt::Error> {
    let ids: Vec<String> = s.workers.iter().map(|w| w.id.to_string()).collect();
    let per_worker = |f: fn(&crate::stats::WorkerReport) -> u64| {
        s.workers
            .iter()
            .zip(&ids)
            .map(move |(w, id)| (labels([("worker", id)]), f(w)))
    };
    counters(
        e,
        "dce_edge_worker_received",
        "Datagrams a worker received.",
        per_worker(|w| w.received),
    )?;
    counters(
        e,
        "dce_edge_worker_transmitted",
        "Datagrams a worker transmitted.",
        per_worker(|w| w.transmitted),
    )?;
    counters(
        e,
        "dce_edge_worker_parse_errors",
        "Messages a worker could not parse, by error kind.",
        s.workers.iter().zip(&ids).flat_map(|(w, id)| {
            w.parse_errors
                .iter()
                .map(move |(kind, n)| (labels([("worker", id), ("kind", kind)]), *n))
        }),
    )?;
    counters(
        e,
        "dce_edge_worker_forwarded",
        "Messages a worker forwarded: requests upstream, responses back toward callers.",
        s.workers.iter().zip(&ids).flat_map(|(w, id)| {
            [
                ("request", w.forwarded_requests),
                ("response", w.forwarded_responses),
            ]
            .into_iter()
            .map(move |(direction, n)| (labels([("worker", id), ("direction", direction)]), n))
        }),
    )?;
    counters(
        e,
        "dce_edge_worker_answered",
        "Answers a worker generated locally, by status code.",
        s.workers.iter().zip(&ids).flat_map(|(w, id)| {
            w.answered
                .iter()
                .map(move |(code, n)| (labels([("worker", id), ("code", &code.to_string())]), *n))
        }),
    )?;
    counters(
        e,
        "dce_edge_worker_dropped",
        "Messages a worker neither forwarded nor answered, by reason.",
        s.workers.iter().zip(&ids).flat_map(|(w, id)| {
            w.dropped
                .iter()
                .map(move |(reason, n)| (labels([("worker", id), ("reason", reason)]), *n))
        }),
    )?;
    counters(
        e,
        "dce_edge_worker_ring_events",
        "Ring and fill-queue shortfalls and kernel socket drops seen by a worker, by event.",
        s.workers.iter().zip(&ids).flat_map(|(w, id)| {
            w.rings
                .iter()
                .map(move |(event, n)| (labels([("worker", id), ("event", event)]), *n))
        }),
    )?;
    gauges(
        e,
        "dce_edge_worker_last_snapshot_age",
        "Time since the worker last answered the control thread's once-a-second request for its counters; grows while a worker is stuck.",
        Some(&Unit::Seconds),
        s.workers
            .iter()
            .zip(&ids)
            .map(|(w, id)| (labels([("worker", id)]), w.snapshot_age_ms as f64 / 1000.0)),
    )?;
    let per_worker_secs = |f: fn(&crate::stats::WorkerReport) -> u64| {
        s.workers
            .iter()
            .zip(&ids)
            .map(move |(w, id)| (labels([("worker", id)]), f(w) as f64 / 1e6))
    };
    counters_f64(
        e,
        "dce_edge_worker_cpu_seconds",
        "CPU time a worker's thread has run.",
        per_worker_secs(|w| w.cpu_us),
    )?;
    counters_f64(
        e,
        "dce_edge_worker_core_wait_seconds",
        "Time a worker's thread was ready to run but waited for its core (other threads had it).",
        per_worker_secs(|w| w.cpu_wait_us),
    )
}

fn encode_routes(e: &mut DescriptorEncoder, s: &Snapshot) -> Result<(), std::fmt::Error> {
    let r = &s.routes;
    counter_one(
        e,
        "dce_edge_route_lookups",
        "Route lookups made.",
        r.lookups,
    )?;
    counters(
        e,
        "dce_edge_route_hits",
        "Route lookups that matched, by route group.",
        r.hits
            .iter()
            .map(|(group, n)| (labels([("group", group)]), *n)),
    )?;
    counter_one(
        e,
        "dce_edge_route_batched_lookups",
        "Route lookups answered from a receive batch's side-by-side lookups.",
        r.batched_lookups,
    )?;
    counter_one(
        e,
        "dce_edge_route_misses",
        "Route lookups that matched nothing.",
        r.misses,
    )?;
    counters(
        e,
        "dce_edge_route_cap_rejections",
        "Requests refused with 503 over a route group's CPS cap, by group.",
        r.cap_rejections
            .iter()
            .map(|(group, n)| (labels([("group", group)]), *n)),
    )?;
    gauge_one(
        e,
        "dce_edge_route_table_version",
        "Version of the route table the workers run.",
        r.table_version as f64,
    )?;
    gauge_one(
        e,
        "dce_edge_route_prefixes",
        "Prefixes in the running route table.",
        r.prefixes as f64,
    )?;
    counters(
        e,
        "dce_edge_route_reloads",
        "Route table reloads, by result (a refused reload keeps the running table).",
        [
            ("accepted", r.reloads_accepted),
            ("refused", r.reloads_refused),
        ]
        .into_iter()
        .map(|(result, n)| (labels([("result", result)]), n)),
    )
}

fn encode_targets(e: &mut DescriptorEncoder, s: &Snapshot) -> Result<(), std::fmt::Error> {
    let target_labels = |t: &crate::stats::TargetState| {
        labels([("group", t.group.as_str()), ("target", t.target.as_str())])
    };
    gauges(
        e,
        "dce_edge_target_up",
        "1 when the prober sees the upstream target up, 0 when down.",
        None,
        s.targets
            .iter()
            .map(|t| (target_labels(t), if t.up { 1.0 } else { 0.0 })),
    )?;
    gauges(
        e,
        "dce_edge_target_probe_rtt",
        "Round trip of the last answered probe to the upstream target.",
        Some(&Unit::Seconds),
        s.targets
            .iter()
            .filter_map(|t| t.rtt_ms.map(|ms| (target_labels(t), ms / 1000.0))),
    )?;
    counters(
        e,
        "dce_edge_target_probes_sent",
        "Health probes sent to the upstream target.",
        s.targets.iter().map(|t| (target_labels(t), t.probes_sent)),
    )?;
    counters(
        e,
        "dce_edge_target_probes_answered",
        "Health probes the upstream target answered.",
        s.targets
            .iter()
            .map(|t| (target_labels(t), t.probes_answered)),
    )
}

/// Buckets in seconds, not cumulative, the overflow bucket last with
/// `f64::MAX` as its bound (which `prometheus-client` writes as `+Inf`; it
/// accumulates the counts itself). Returns the buckets and the count that
/// goes with them.
pub fn histogram_buckets_seconds(h: &LatencyHistogram) -> (Vec<(f64, u64)>, u64) {
    if h.counts.is_empty() {
        // No buckets at all: everything observed is in +Inf.
        return (vec![(f64::MAX, h.count)], h.count);
    }
    let mut buckets: Vec<(f64, u64)> = h
        .bounds_ms
        .iter()
        .zip(&h.counts)
        .map(|(ms, n)| (ms / 1000.0, *n))
        .collect();
    // Counts past the last bound (the overflow bucket, or any surplus from a
    // malformed histogram) all land in +Inf, so no observation is lost.
    let overflow: u64 = h.counts.iter().skip(h.bounds_ms.len()).sum();
    buckets.push((f64::MAX, overflow));
    // The +Inf bucket must equal _count: take the count from the buckets.
    let count = buckets.iter().map(|(_, n)| n).sum();
    (buckets, count)
}

fn encode_setup_latency(
    e: &mut DescriptorEncoder,
    h: &LatencyHistogram,
) -> Result<(), std::fmt::Error> {
    encode_latency(
        e,
        "dce_edge_call_setup",
        "Call setup latency through the edge: INVITE forwarded to its first final answer relayed.",
        h,
    )
}

fn encode_latency(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    h: &LatencyHistogram,
) -> Result<(), std::fmt::Error> {
    let (buckets, count) = histogram_buckets_seconds(h);
    let mut m = e.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    m.encode_histogram::<NoLabelSet>(h.sum_ms / 1000.0, count, &buckets, None)
}

fn encode_bans(e: &mut DescriptorEncoder, s: &Snapshot) -> Result<(), std::fmt::Error> {
    let mut by_reason: std::collections::BTreeMap<&str, u64> =
        BAN_REASONS.iter().map(|r| (*r, 0)).collect();
    for ban in &s.bans {
        *by_reason.entry(ban.reason.as_str()).or_default() += 1;
    }
    gauges(
        e,
        "dce_edge_bans_active",
        "Sources banned in the XDP ban map right now, by reason.",
        None,
        by_reason
            .into_iter()
            .map(|(reason, n)| (labels([("reason", reason)]), n as f64)),
    )?;
    if s.ban_maps.is_empty() {
        return Ok(());
    }
    gauges(
        e,
        "dce_edge_ban_map_entries",
        "Entries in each XDP ban map (bans_v4, bans_v6: operators' bans; auto_bans: automatic bans): bans in force, and lapsed ones until the next sweep.",
        None,
        s.ban_maps
            .iter()
            .map(|m| (labels([("map", &m.map)]), m.entries as f64)),
    )?;
    gauges(
        e,
        "dce_edge_ban_map_capacity",
        "Entries each XDP ban map holds at most; a full map refuses new bans of its kind.",
        None,
        s.ban_maps
            .iter()
            .map(|m| (labels([("map", &m.map)]), m.capacity as f64)),
    )
}

fn encode_top_sources(e: &mut DescriptorEncoder, s: &Snapshot) -> Result<(), std::fmt::Error> {
    let mut top: Vec<&crate::stats::TopOffender> = s.top_sources.iter().collect();
    top.sort_by(|a, b| b.drops.cmp(&a.drops).then_with(|| a.source.cmp(&b.source)));
    top.truncate(TOP_SOURCES_EXPORTED);
    gauges(
        e,
        "dce_edge_top_source_drops",
        "Packets dropped from each of the top 10 offending sources, with the reason of the latest drop.",
        None,
        top.into_iter().map(|t| {
            (
                labels([("source", &t.source), ("reason", &t.last_reason)]),
                t.drops as f64,
            )
        }),
    )
}

/// The top offending networks: a few series per level, and per level how
/// many networks the held sources fall in (four series, whatever the attack
/// spoofs). A network label lives only while the network is in its level's
/// top [`TOP_NETWORKS_EXPORTED`]; equal counts keep their order between
/// scrapes (the snapshot breaks ties by address), so series do not flap.
fn encode_top_networks(
    e: &mut DescriptorEncoder,
    t: &crate::stats::networks::NetworkTally,
) -> Result<(), std::fmt::Error> {
    use crate::stats::networks::LEVELS;
    gauge_one(
        e,
        "dce_edge_top_sources_held",
        "Sources the XDP program's top_sources map holds now (an LRU): the top networks are folded from these.",
        t.sources_held as f64,
    )?;
    gauge_one(
        e,
        "dce_edge_top_sources_capacity",
        "Entries the XDP program's top_sources map holds at most.",
        t.capacity as f64,
    )?;
    gauges(
        e,
        "dce_edge_top_sources_networks",
        "Distinct networks of each prefix length (IPv4 /24 and /16, IPv6 /64 and /48) that the held top sources fall in, all reasons: few networks, a concentrated attack; as many as sources, a spread one.",
        None,
        t.levels.iter().map(|l| {
            (
                labels([
                    ("family", l.family.name()),
                    ("prefix_len", &l.prefix_len.to_string()),
                ]),
                l.networks as f64,
            )
        }),
    )?;
    let top: Vec<&crate::stats::networks::TopNetwork> = LEVELS
        .iter()
        .flat_map(|(_, len)| t.at(*len).take(TOP_NETWORKS_EXPORTED))
        .collect();
    let series = |value: fn(&crate::stats::networks::TopNetwork) -> u64| {
        top.iter()
            .map(move |n| {
                (
                    labels([
                        ("network", &n.network),
                        ("prefix_len", &n.prefix_len.to_string()),
                        ("reason", &n.reason),
                    ]),
                    value(n) as f64,
                )
            })
            .collect::<Vec<_>>()
    };
    gauges(
        e,
        "dce_edge_top_networks_drops",
        "Packets dropped from the held top sources of each of the top 5 networks per prefix length and drop reason (a source's drops count under its latest reason).",
        None,
        series(|n| n.drops),
    )?;
    gauges(
        e,
        "dce_edge_top_networks_sources",
        "Distinct held top sources (IPv4 addresses, IPv6 /64s) of each of the top 5 networks per prefix length and drop reason.",
        None,
        series(|n| n.sources),
    )
}

fn counter_one(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(m)
}

/// A counter family; `name` has no `_total`, the encoder appends it.
fn counters(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        ConstCounter::new(value).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// [`counters`] of fractional values (seconds).
fn counters_f64(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, f64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        ConstCounter::new(value).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge_one(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(m)
}

fn gauges(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    series: impl IntoIterator<Item = (Labels, f64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, value) in series {
        ConstGauge::new(value).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The metric names of a rendered exposition's samples (`_total`,
/// `_bucket`, `_info` suffixes included), sorted and without repeats: what a
/// PromQL expression can name.
pub fn sample_names(exposition: &str) -> Vec<String> {
    let mut names: Vec<String> = exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// A one-line `name{labels} value` lookup in an exposition, for tests and
/// tools: the value of the sample whose name and labels match exactly.
pub fn sample_value(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut wanted = String::from(name);
    if !labels.is_empty() {
        wanted.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                wanted.push(',');
            }
            let _ = write!(wanted, "{k}=\"{}\"", escape_label_value(v));
        }
        wanted.push('}');
    }
    wanted.push(' ');
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(wanted.as_str()))
        .and_then(|v| v.split(' ').next())
        .and_then(|v| match v {
            "+Inf" => Some(f64::INFINITY),
            "-Inf" => Some(f64::NEG_INFINITY),
            v => v.parse().ok(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{
        BanInForce, BanMapFill, CallCounters, Modes, RouteCounters, TargetState, TopOffender,
        WorkerReport, XdpCounters,
    };

    fn known_snapshot() -> Snapshot {
        Snapshot {
            verified_sources: 0,
            filter_reloads: Default::default(),
            version: "0.1.0".into(),
            role: Role::Appliance,
            interface: Some("eth0".into()),
            taken_at_ms: 1_700_000_000_000,
            uptime_seconds: 12.5,
            modes: Modes {
                attach: "native".into(),
                attach_fallback: false,
                dataplane: "copy".into(),
                program_id: None,
            },
            xdp: Some(XdpCounters {
                drops: [("not_sip".to_string(), 3), ("scanner".to_string(), 7)].into(),
                passed: 11,
                redirected: 13,
            }),
            top_sources: vec![TopOffender {
                source: "198.18.0.9".into(),
                drops: 7,
                last_reason: "scanner".into(),
            }],
            bans: vec![BanInForce {
                source: "198.18.0.9".into(),
                reason: "scanner".into(),
                seconds_left: 30,
            }],
            ban_maps: vec![
                BanMapFill {
                    map: "bans_v4".into(),
                    entries: 2,
                    capacity: 65536,
                },
                BanMapFill {
                    map: "bans_v6".into(),
                    entries: 0,
                    capacity: 65536,
                },
            ],
            workers: vec![WorkerReport {
                id: 0,
                received: 100,
                transmitted: 90,
                parse_errors: [("bad_start_line".to_string(), 2)].into(),
                forwarded_requests: 40,
                forwarded_responses: 41,
                answered: [(200, 5), (404, 1)].into(),
                dropped: [("max_forwards".to_string(), 1)].into(),
                rings: [("fill_shortfalls".to_string(), 4)].into(),
                snapshot_age_ms: 250,
                cpu_us: 2_500_000,
                cpu_wait_us: 500_000,
                ..Default::default()
            }],
            routes: RouteCounters {
                table_version: 3,
                prefixes: 1000,
                lookups: 50,
                batched_lookups: 40,
                hits: [("carrier_a".to_string(), 45)].into(),
                misses: 5,
                cap_rejections: [("carrier_a".to_string(), 2)].into(),
                reloads_accepted: 2,
                reloads_refused: 1,
                last_reload_error: Some("routes.toml:3: bad prefix".into()),
            },
            targets: vec![TargetState {
                group: "carrier_a".into(),
                target: "198.18.1.10:5060".into(),
                up: true,
                rtt_ms: Some(1.5),
                probes_sent: 10,
                probes_answered: 9,
                cause: None,
            }],
            setup_latency: LatencyHistogram {
                bounds_ms: vec![1.0, 5.0, 50.0],
                counts: vec![4, 3, 2, 1],
                count: 10,
                sum_ms: 70.0,
                p50_ms: 2.0,
                p99_ms: 60.0,
            },
            calls: CallCounters {
                invites_forwarded: 20,
                answered: 18,
                failed: 2,
            },
            emergency: crate::stats::EmergencyReport {
                attempted: 4,
                forwarded: 3,
                answered: 2,
                failed: 1,
                over_budget: 5,
                ..Default::default()
            },
            top_networks: None,
            stream: None,
            fleet: None,
        }
    }

    #[test]
    fn an_edge_of_a_fleet_exports_its_announcement_and_its_bus() {
        use crate::stats::{AnnounceReport, BusReport, FleetReport, PeerReport};
        let mut s = known_snapshot();
        assert!(!render_openmetrics(&s).contains("dce_edge_fleet_"));
        s.fleet = Some(FleetReport {
            name: "lab".into(),
            edge: "e1".into(),
            announce: Some(AnnounceReport {
                announced: true,
                daemon_applied: Some(true),
                withdrawals: 3,
                flaps: 1,
                ..Default::default()
            }),
            bus: Some(BusReport {
                connected: false,
                outages: 2,
                received: [
                    ("ban:applied".to_string(), 4),
                    ("ban:not_bannable".to_string(), 9),
                ]
                .into(),
                own_bans: 1,
                remote_bans: 4,
                ..Default::default()
            }),
            peers: vec![
                PeerReport::default(),
                PeerReport {
                    lost: true,
                    ..Default::default()
                },
            ],
            ..Default::default()
        });
        let text = render_openmetrics(&s);
        for line in [
            "dce_edge_fleet_announced 1.0",
            "dce_edge_fleet_announce_applied 1.0",
            "dce_edge_fleet_withdrawals_total{kind=\"flap\"} 1",
            "dce_edge_fleet_bus_connected 0.0",
            "dce_edge_fleet_bus_outages_total 2",
            "dce_edge_fleet_messages_received_total{kind=\"ban\",verdict=\"not_bannable\"} 9",
            "dce_edge_fleet_bans{origin=\"remote\"} 4.0",
            "dce_edge_fleet_peers{state=\"lost\"} 1.0",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn known_snapshot_renders_expected_lines() {
        let text = render_openmetrics(&known_snapshot());
        for line in [
            "# TYPE dce_edge_xdp_drops counter",
            "dce_edge_xdp_drops_total{reason=\"not_sip\"} 3",
            "dce_edge_xdp_drops_total{reason=\"scanner\"} 7",
            "dce_edge_xdp_passed_total 11",
            "dce_edge_xdp_redirected_total 13",
            "# TYPE dce_edge info",
            "dce_edge_info{version=\"0.1.0\",role=\"appliance\",attach_mode=\"native\",dataplane_mode=\"copy\",attach_fallback=\"false\"} 1",
            "dce_edge_worker_received_total{worker=\"0\"} 100",
            "dce_edge_worker_transmitted_total{worker=\"0\"} 90",
            "dce_edge_worker_parse_errors_total{worker=\"0\",kind=\"bad_start_line\"} 2",
            "dce_edge_worker_forwarded_total{worker=\"0\",direction=\"request\"} 40",
            "dce_edge_worker_forwarded_total{worker=\"0\",direction=\"response\"} 41",
            "dce_edge_worker_answered_total{worker=\"0\",code=\"404\"} 1",
            "dce_edge_worker_dropped_total{worker=\"0\",reason=\"max_forwards\"} 1",
            "dce_edge_worker_ring_events_total{worker=\"0\",event=\"fill_shortfalls\"} 4",
            "# UNIT dce_edge_worker_last_snapshot_age_seconds seconds",
            "dce_edge_worker_last_snapshot_age_seconds{worker=\"0\"} 0.25",
            "dce_edge_worker_cpu_seconds_total{worker=\"0\"} 2.5",
            "dce_edge_worker_core_wait_seconds_total{worker=\"0\"} 0.5",
            "dce_edge_route_lookups_total 50",
            "dce_edge_route_hits_total{group=\"carrier_a\"} 45",
            "dce_edge_route_misses_total 5",
            "dce_edge_route_cap_rejections_total{group=\"carrier_a\"} 2",
            "dce_edge_route_table_version 3.0",
            "dce_edge_route_prefixes 1000.0",
            "dce_edge_route_reloads_total{result=\"accepted\"} 2",
            "dce_edge_route_reloads_total{result=\"refused\"} 1",
            "dce_edge_target_up{group=\"carrier_a\",target=\"198.18.1.10:5060\"} 1.0",
            "# UNIT dce_edge_target_probe_rtt_seconds seconds",
            "dce_edge_target_probe_rtt_seconds{group=\"carrier_a\",target=\"198.18.1.10:5060\"} 0.0015",
            "# TYPE dce_edge_call_setup_seconds histogram",
            "dce_edge_call_setup_seconds_sum 0.07",
            "dce_edge_call_setup_seconds_count 10",
            "dce_edge_call_setup_seconds_bucket{le=\"0.001\"} 4",
            "dce_edge_call_setup_seconds_bucket{le=\"0.005\"} 7",
            "dce_edge_call_setup_seconds_bucket{le=\"0.05\"} 9",
            "dce_edge_call_setup_seconds_bucket{le=\"+Inf\"} 10",
            "dce_edge_calls_total{outcome=\"forwarded\"} 20",
            "dce_edge_calls_total{outcome=\"answered\"} 18",
            "dce_edge_calls_total{outcome=\"failed\"} 2",
            "dce_edge_emergency_calls_total{outcome=\"attempted\"} 4",
            "dce_edge_emergency_calls_total{outcome=\"answered\"} 2",
            "dce_edge_emergency_calls_total{outcome=\"over_budget\"} 5",
            "dce_edge_bans_active{reason=\"scanner\"} 1.0",
            "dce_edge_bans_active{reason=\"flood\"} 0.0",
            "dce_edge_ban_map_entries{map=\"bans_v4\"} 2.0",
            "dce_edge_ban_map_entries{map=\"bans_v6\"} 0.0",
            "dce_edge_ban_map_capacity{map=\"bans_v4\"} 65536.0",
            "dce_edge_ban_map_capacity{map=\"bans_v6\"} 65536.0",
            "dce_edge_top_source_drops{source=\"198.18.0.9\",reason=\"scanner\"} 7.0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing line {line:?} in:\n{text}"
            );
        }
    }

    #[test]
    fn exposition_ends_with_eof() {
        let text = render_openmetrics(&known_snapshot());
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1);
    }

    #[test]
    fn every_counter_sample_ends_in_total() {
        let text = render_openmetrics(&known_snapshot());
        let counters: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.strip_suffix(" counter"))
            .collect();
        assert!(counters.len() > 10, "{counters:?}");
        for name in sample_names(&text) {
            let family = counters.iter().find(|c| {
                name.strip_prefix(**c)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('_'))
            });
            if let Some(family) = family {
                assert_eq!(name, format!("{family}_total"), "counter sample {name}");
            }
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_monotone() {
        let text = render_openmetrics(&known_snapshot());
        let buckets: Vec<(f64, u64)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("dce_edge_call_setup_seconds_bucket{le=\""))
            .map(|l| {
                let (le, rest) = l.split_once("\"} ").unwrap();
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                (le, rest.parse().unwrap())
            })
            .collect();
        assert_eq!(buckets.len(), 4);
        assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0), "{buckets:?}");
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
        let count = sample_value(&text, "dce_edge_call_setup_seconds_count", &[]).unwrap();
        assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, count as u64));
    }

    #[test]
    fn histogram_without_buckets_puts_its_count_in_inf() {
        let h = LatencyHistogram {
            count: 5,
            sum_ms: 10.0,
            ..Default::default()
        };
        assert_eq!(histogram_buckets_seconds(&h), (vec![(f64::MAX, 5)], 5));
    }

    #[test]
    fn histogram_surplus_counts_land_in_inf() {
        let h = LatencyHistogram {
            bounds_ms: vec![1.0],
            counts: vec![1, 2, 3],
            count: 6,
            ..Default::default()
        };
        assert_eq!(
            histogram_buckets_seconds(&h),
            (vec![(0.001, 1), (f64::MAX, 5)], 6)
        );
    }

    #[test]
    fn top_sources_are_capped_at_ten_most_dropped() {
        let mut s = known_snapshot();
        s.top_sources = (0..25)
            .map(|i| TopOffender {
                source: format!("198.18.2.{i}"),
                drops: i,
                last_reason: "rate_limit".into(),
            })
            .collect();
        let text = render_openmetrics(&s);
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("dce_edge_top_source_drops{"))
            .collect();
        assert_eq!(series.len(), TOP_SOURCES_EXPORTED);
        assert!(series.iter().any(|l| l.contains("198.18.2.24\"")));
        assert!(!series.iter().any(|l| l.contains("198.18.2.14\"")));
    }

    #[test]
    fn top_networks_are_exported_five_per_level_with_their_shape() {
        use crate::stats::networks::{aggregate, SourceDrops, TOP_PER_LEVEL};
        let mut s = known_snapshot();
        // A spoofed flood: 2,000 sources with one drop each, in eight /24s
        // of 198.51.0.0/16, and one IPv6 scanner.
        let mut sources: Vec<SourceDrops> = (0..2000u32)
            .map(|i| SourceDrops {
                addr: format!("198.51.{}.{}", i / 250, i % 250).parse().unwrap(),
                drops: 1,
                reason: "rate_limit".into(),
            })
            .collect();
        sources.push(SourceDrops {
            addr: "2001:db8:7::".parse().unwrap(),
            drops: 9,
            reason: "scanner".into(),
        });
        s.top_networks = Some(aggregate(&sources, 8192, TOP_PER_LEVEL));
        let text = render_openmetrics(&s);
        let series = |name: &str| {
            text.lines()
                .filter(|l| l.starts_with(&format!("{name}{{")))
                .count()
        };
        // Eight /24s held, five exported; one /16; one /64 and one /48.
        assert_eq!(series("dce_edge_top_networks_drops"), 5 + 1 + 1 + 1);
        assert_eq!(series("dce_edge_top_networks_sources"), 5 + 1 + 1 + 1);
        assert_eq!(
            sample_value(
                &text,
                "dce_edge_top_networks_drops",
                &[
                    ("network", "198.51.0.0/16"),
                    ("prefix_len", "16"),
                    ("reason", "rate_limit")
                ]
            ),
            Some(2000.0)
        );
        assert_eq!(
            sample_value(
                &text,
                "dce_edge_top_networks_sources",
                &[
                    ("network", "198.51.0.0/24"),
                    ("prefix_len", "24"),
                    ("reason", "rate_limit")
                ]
            ),
            Some(250.0)
        );
        assert_eq!(
            sample_value(
                &text,
                "dce_edge_top_networks_drops",
                &[
                    ("network", "2001:db8:7::/48"),
                    ("prefix_len", "48"),
                    ("reason", "scanner")
                ]
            ),
            Some(9.0)
        );
        // Ties (every /24 has 250) go by address: the first five.
        assert!(text.contains("network=\"198.51.4.0/24\""), "{text}");
        assert!(!text.contains("network=\"198.51.5.0/24\""), "{text}");
        for (family, len, n) in [
            ("ipv4", "24", 8.0),
            ("ipv4", "16", 1.0),
            ("ipv6", "64", 1.0),
        ] {
            assert_eq!(
                sample_value(
                    &text,
                    "dce_edge_top_sources_networks",
                    &[("family", family), ("prefix_len", len)]
                ),
                Some(n),
                "{family}/{len}"
            );
        }
        assert_eq!(
            sample_value(&text, "dce_edge_top_sources_held", &[]),
            Some(2001.0)
        );
        assert_eq!(
            sample_value(&text, "dce_edge_top_sources_capacity", &[]),
            Some(8192.0)
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn no_top_network_families_without_a_filter() {
        let mut s = known_snapshot();
        s.top_networks = None;
        let text = render_openmetrics(&s);
        assert!(!text.contains("dce_edge_top_networks"), "{text}");
        assert!(!text.contains("dce_edge_top_sources_held"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = known_snapshot();
        s.workers[0].dropped = [("odd\"reason\\\n".to_string(), 1)].into();
        let text = render_openmetrics(&s);
        assert!(
            text.contains(
                "dce_edge_worker_dropped_total{worker=\"0\",reason=\"odd\\\"reason\\\\\\n\"} 1"
            ),
            "{text}"
        );
    }

    #[test]
    fn no_xdp_families_without_a_filter() {
        let mut s = known_snapshot();
        s.xdp = None;
        let text = render_openmetrics(&s);
        assert!(!text.contains("dce_edge_xdp_"), "{text}");
        assert!(text.contains("dce_edge_info{"));
    }

    #[test]
    fn no_ban_map_families_without_a_filter() {
        let mut s = known_snapshot();
        s.xdp = None;
        s.ban_maps.clear();
        let text = render_openmetrics(&s);
        assert!(!text.contains("dce_edge_ban_map_"), "{text}");
        // The bans the workers keep themselves are still counted.
        assert!(text.contains("dce_edge_bans_active{reason=\"scanner\"} 1.0"));
    }

    #[test]
    fn a_stuck_worker_shows_its_own_age() {
        let mut s = known_snapshot();
        let mut stuck = s.workers[0].clone();
        stuck.id = 1;
        stuck.snapshot_age_ms = 42_000;
        s.workers.push(stuck);
        let text = render_openmetrics(&s);
        let age = |w: &str| {
            sample_value(
                &text,
                "dce_edge_worker_last_snapshot_age_seconds",
                &[("worker", w)],
            )
        };
        assert_eq!(age("0"), Some(0.25));
        assert_eq!(age("1"), Some(42.0));
    }

    #[test]
    fn sample_value_finds_labelled_series() {
        let text = render_openmetrics(&known_snapshot());
        assert_eq!(
            sample_value(&text, "dce_edge_xdp_drops_total", &[("reason", "scanner")]),
            Some(7.0)
        );
        assert_eq!(
            sample_value(&text, "dce_edge_xdp_drops_total", &[("reason", "nope")]),
            None
        );
    }

    #[test]
    fn stream_counters_render_only_with_a_stream_thread() {
        let mut s = known_snapshot();
        assert!(!render_openmetrics(&s).contains("dce_edge_stream"));
        s.stream = Some(crate::stats::StreamReport {
            open_connections: 2,
            counters: [
                ("accepted".to_string(), 5),
                ("tls_failed_certificate".to_string(), 1),
            ]
            .into(),
            transports: Default::default(),
        });
        let text = render_openmetrics(&s);
        assert!(
            text.contains("dce_edge_stream_open_connections 2"),
            "{text}"
        );
        assert_eq!(
            sample_value(&text, "dce_edge_stream_total", &[("counter", "accepted")]),
            Some(5.0)
        );
        assert_eq!(
            sample_value(
                &text,
                "dce_edge_stream_total",
                &[("counter", "tls_failed_certificate")]
            ),
            Some(1.0)
        );
        // An edge that does not split by transport: no per-transport
        // series at all.
        assert!(!text.contains("dce_edge_stream_transport"), "{text}");
    }

    #[test]
    fn stream_connections_render_by_transport_beside_the_totals() {
        let mut s = known_snapshot();
        let transport = |open: u64, counters: &[(&str, u64)]| crate::stats::TransportReport {
            open_connections: open,
            counters: counters.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
        };
        s.stream = Some(crate::stats::StreamReport {
            open_connections: 5,
            counters: [
                ("accepted".to_string(), 9),
                ("refused_per_source".to_string(), 7),
                ("tls_failed_protocol".to_string(), 2),
            ]
            .into(),
            transports: [
                (
                    "tcp".to_string(),
                    transport(3, &[("accepted", 6), ("refused_per_source", 7)]),
                ),
                (
                    "tls".to_string(),
                    transport(2, &[("accepted", 3), ("tls_failed_protocol", 2)]),
                ),
            ]
            .into(),
        });
        let text = render_openmetrics(&s);
        let open = |t| {
            sample_value(
                &text,
                "dce_edge_stream_transport_open_connections",
                &[("transport", t)],
            )
        };
        assert_eq!((open("tcp"), open("tls")), (Some(3.0), Some(2.0)), "{text}");
        let total = |t, c| {
            sample_value(
                &text,
                "dce_edge_stream_transport_total",
                &[("transport", t), ("counter", c)],
            )
        };
        assert_eq!(total("tcp", "accepted"), Some(6.0), "{text}");
        assert_eq!(total("tls", "accepted"), Some(3.0), "{text}");
        assert_eq!(total("tcp", "refused_per_source"), Some(7.0), "{text}");
        assert_eq!(total("tls", "tls_failed_protocol"), Some(2.0), "{text}");
        assert_eq!(total("tcp", "tls_failed_protocol"), None, "{text}");
        // The totals keep their names.
        assert_eq!(
            sample_value(&text, "dce_edge_stream_total", &[("counter", "accepted")]),
            Some(9.0)
        );
        assert!(
            text.contains("dce_edge_stream_open_connections 5"),
            "{text}"
        );
    }
}
