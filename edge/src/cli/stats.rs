//! The `dce-edge stats` arguments and what the HTTP side of them does:
//! `--watch` runs the live view, `--json` prints one snapshot for scripts,
//! neither prints a short text summary. All three read a running edge's
//! `/snapshot.json`. Reading a filter's pinned BPF maps (`--iface`, no
//! `--url`) belongs to the XDP filter's stats and is not handled here.

use std::io::Write;
use std::time::Duration;

use super::watch::{self, count, WatchError, WatchOptions};
use telemetry::stats::client::{fetch_snapshot, ClientError, DEFAULT_URL};
use telemetry::stats::networks::NetworkTally;
use telemetry::stats::Snapshot;

/// Arguments of `dce-edge stats`.
#[derive(Debug, Clone, Default, PartialEq, clap::Args)]
pub struct StatsArgs {
    /// Live terminal view, refreshed every second (q or Ctrl-C quits).
    #[arg(long)]
    pub watch: bool,
    /// Print one snapshot as JSON, for scripts.
    #[arg(long, conflicts_with = "watch")]
    pub json: bool,
    /// The edge's metrics endpoint [default: http://127.0.0.1:9560].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Read the pinned maps of the filter on this interface instead of an
    /// endpoint (the filter's own stats).
    #[arg(long, value_name = "IFACE")]
    pub iface: Option<String>,
    /// With --iface: how many top sources to show.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// With --iface: seconds between the two reads the rates come from.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
}

impl StatsArgs {
    /// True when these arguments ask for an endpoint over HTTP (this
    /// module) rather than the filter's pinned maps: `--watch`, `--url`,
    /// or no `--iface`.
    pub fn reads_endpoint(&self) -> bool {
        self.watch || self.url.is_some() || self.iface.is_none()
    }

    /// The endpoint URL, the default when none is given.
    pub fn endpoint(&self) -> &str {
        self.url.as_deref().unwrap_or(DEFAULT_URL)
    }
}

/// Why `stats` failed.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The snapshot could not be fetched.
    #[error(transparent)]
    Fetch(#[from] ClientError),
    /// The live view could not run.
    #[error(transparent)]
    Watch(#[from] WatchError),
    /// Standard output could not be written.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    /// `--iface` without `--url` asks for the pinned maps.
    #[error("--iface {iface} without --url reads the filter's pinned maps, which this command does not do; give --url to read an endpoint")]
    PinnedMaps {
        /// The interface given.
        iface: String,
    },
}

/// How long a one-shot fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `stats` over HTTP, printing to `out` (the live view draws on the
/// terminal itself).
pub fn run(args: &StatsArgs, out: &mut impl Write) -> Result<(), StatsError> {
    if !args.reads_endpoint() {
        return Err(StatsError::PinnedMaps {
            iface: args.iface.clone().unwrap_or_default(),
        });
    }
    let url = args.endpoint();
    if args.watch {
        return Ok(watch::run(&WatchOptions::new(url))?);
    }
    let snapshot = fetch_snapshot(url, FETCH_TIMEOUT)?;
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &snapshot).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        out.write_all(summary(&snapshot).as_bytes())?;
    }
    Ok(())
}

/// A few lines for a person: drops by reason, passes, calls, latency, bans,
/// the top sources.
pub fn summary(s: &Snapshot) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "dce-edge {} on {} (attach {}, dataplane {}), up {}",
        s.version,
        s.interface.as_deref().unwrap_or("no interface"),
        s.modes.attach,
        s.modes.dataplane,
        watch::duration(s.uptime_seconds as u64)
    );
    if let Some(x) = &s.xdp {
        let _ = writeln!(
            t,
            "xdp: {} dropped, {} passed, {} redirected",
            count(s.xdp_drops_total()),
            count(x.passed),
            count(x.redirected)
        );
        for (reason, n) in &x.drops {
            let _ = writeln!(t, "  drop {reason:<12} {:>14}", count(*n));
        }
    }
    for w in &s.workers {
        let _ = writeln!(
            t,
            "worker {}{}{}: {} received, {} transmitted, {} dropped; cpu {:.1} s, waited for its core {:.1} s{}",
            w.id,
            w.queue.map(|q| format!(" (queue {q})")).unwrap_or_default(),
            w.core.map(|c| format!(" on core {c}")).unwrap_or_default(),
            count(w.received),
            count(w.transmitted),
            count(w.dropped.values().sum()),
            w.cpu_us as f64 / 1e6,
            w.cpu_wait_us as f64 / 1e6,
            if w.realtime { ", real-time" } else { "" }
        );
        for (reason, n) in w.dropped.iter().filter(|(_, n)| **n > 0) {
            let _ = writeln!(t, "  drop {reason:<26} {:>14}", count(*n));
        }
    }
    let _ = writeln!(
        t,
        "calls: {} forwarded, {} answered, {} failed; setup p50 {:.2} ms, p99 {:.2} ms",
        count(s.calls.invites_forwarded),
        count(s.calls.answered),
        count(s.calls.failed),
        s.setup_latency.p50_ms,
        s.setup_latency.p99_ms
    );
    let e = &s.emergency;
    let _ = writeln!(
        t,
        "emergency calls: {} attempted, {} forwarded, {} answered, {} failed, {} over budget; setup p99 {:.2} ms",
        count(e.attempted),
        count(e.forwarded),
        count(e.answered),
        count(e.failed),
        count(e.over_budget),
        e.setup_latency.p99_ms
    );
    if let Some(st) = &s.stream {
        let m = st.summary();
        let _ = writeln!(
            t,
            "sip over tcp/tls: {} open, {} accepted, {} refused by caps, {} timed out, {} framing errors, {} queue overflows; tls {} handshakes, {} failed",
            count(m.open),
            count(m.accepted),
            count(m.refused_by_caps),
            count(m.timed_out),
            count(m.framing_errors),
            count(m.queue_overflows),
            count(m.tls_handshakes),
            count(m.tls_failed),
        );
        for (name, tr) in &st.transports {
            if tr.open_connections == 0 && tr.counters.values().all(|n| *n == 0) {
                continue; // a transport not in use: no line
            }
            let m = tr.summary();
            let c = |n: &str| count(tr.counters.get(n).copied().unwrap_or(0));
            let _ = write!(
                t,
                "  over {name}: {} open, {} accepted, {} refused by caps ({} per source, {} total), {} timed out, {} framing errors, {} queue overflows",
                count(m.open),
                count(m.accepted),
                count(m.refused_by_caps),
                c("refused_per_source"),
                c("refused_total"),
                count(m.timed_out),
                count(m.framing_errors),
                count(m.queue_overflows),
            );
            if name == "tls" {
                let _ = write!(
                    t,
                    "; {} handshakes, {} failed ({} certificate, {} protocol, {} alert, {} other)",
                    count(m.tls_handshakes),
                    count(m.tls_failed),
                    c("tls_failed_certificate"),
                    c("tls_failed_protocol"),
                    c("tls_failed_alert"),
                    c("tls_failed_other"),
                );
            }
            t.push('\n');
        }
    }
    let _ = writeln!(t, "bans: {} active", s.bans.len());
    for top in s.top_sources.iter().take(5) {
        let _ = writeln!(
            t,
            "  top {:<40} {:>14} {}",
            top.source,
            count(top.drops),
            top.last_reason
        );
    }
    if let Some(n) = &s.top_networks {
        t.push_str(&networks_text(n, 3));
    }
    t
}

/// The top offending networks for a person: the shape line, then the
/// first `per_level` networks of each level held, with drops, distinct
/// sources and reason. Shared by the endpoint and the pinned-maps stats.
pub fn networks_text(n: &NetworkTally, per_level: usize) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    let _ = writeln!(t, "top networks: {}", n.shape());
    for level in &n.levels {
        for net in n.at(level.prefix_len).take(per_level) {
            let _ = writeln!(
                t,
                "  net {:<40} {:>14} from {:>8} sources {}",
                net.network,
                count(net.drops),
                count(net.sources),
                net.reason
            );
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        stats: StatsArgs,
    }

    fn parse(args: &[&str]) -> StatsArgs {
        Cli::try_parse_from(std::iter::once("stats").chain(args.iter().copied()))
            .unwrap()
            .stats
    }

    #[test]
    fn watch_with_url_reads_the_endpoint() {
        let a = parse(&["--watch", "--url", "http://127.0.0.1:1/"]);
        assert!(a.watch && a.reads_endpoint());
        assert_eq!(a.endpoint(), "http://127.0.0.1:1/");
    }

    #[test]
    fn iface_alone_is_for_the_pinned_maps() {
        let a = parse(&["--json", "--iface", "eth0"]);
        assert!(!a.reads_endpoint());
        let err = run(&a, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, StatsError::PinnedMaps { .. }), "{err}");
    }

    #[test]
    fn no_arguments_read_the_default_endpoint() {
        let a = parse(&[]);
        assert!(a.reads_endpoint());
        assert_eq!(a.endpoint(), DEFAULT_URL);
    }

    #[test]
    fn watch_and_json_conflict() {
        assert!(Cli::try_parse_from(["stats", "--watch", "--json"]).is_err());
    }

    #[test]
    fn summary_names_reasons_and_bans() {
        let mut s = Snapshot {
            version: "0.1.0".into(),
            ..Default::default()
        };
        s.xdp = Some(telemetry::stats::XdpCounters {
            drops: [("scanner".to_string(), 1234)].into(),
            passed: 1,
            redirected: 2,
        });
        let text = summary(&s);
        assert!(text.contains("drop scanner"), "{text}");
        assert!(text.contains("1,234"), "{text}");
        assert!(text.contains("bans: 0 active"), "{text}");
        assert!(!text.contains("sip over tcp/tls"), "{text}");
    }

    #[test]
    fn summary_shows_the_shape_of_a_spoofed_flood() {
        use telemetry::stats::networks::{aggregate, SourceDrops, TOP_PER_LEVEL};
        let sources: Vec<SourceDrops> = (0..1000u32)
            .map(|i| SourceDrops {
                addr: format!("198.51.{}.{}", 100 + i / 250, i % 250)
                    .parse()
                    .unwrap(),
                drops: 1,
                reason: "unverified".into(),
            })
            .collect();
        let s = Snapshot {
            top_networks: Some(aggregate(&sources, 8192, TOP_PER_LEVEL)),
            ..Default::default()
        };
        let text = summary(&s);
        assert!(
            text.contains(
                "top networks: 1000 sources held (map of 8192): 1000 ipv4 in 4 /24, 1000 ipv4 in 1 /16"
            ),
            "{text}"
        );
        let line = text.lines().find(|l| l.contains("198.51.0.0/16")).unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            words,
            [
                "net",
                "198.51.0.0/16",
                "1,000",
                "from",
                "1,000",
                "sources",
                "unverified"
            ],
            "{text}"
        );
        // Three /24s of four.
        assert_eq!(text.matches("/24 ").count(), 3, "{text}");
    }

    #[test]
    fn summary_shows_the_stream_thread_when_there_is_one() {
        let s = Snapshot {
            stream: Some(telemetry::stats::StreamReport {
                open_connections: 3,
                counters: [
                    ("accepted".to_string(), 1500),
                    ("refused_per_source".to_string(), 2),
                    ("slow_timeouts".to_string(), 4),
                    ("tls_failed_certificate".to_string(), 5),
                ]
                .into(),
                transports: Default::default(),
            }),
            ..Default::default()
        };
        let text = summary(&s);
        assert!(
            text.contains("sip over tcp/tls: 3 open, 1,500 accepted, 2 refused by caps, 4 timed out, 0 framing errors, 0 queue overflows; tls 0 handshakes, 5 failed"),
            "{text}"
        );
        // No per-transport lines from an edge that does not split them.
        assert!(!text.contains("  over "), "{text}");
    }

    #[test]
    fn summary_splits_the_stream_thread_by_transport() {
        let transport = |open: u64, counters: &[(&str, u64)]| telemetry::stats::TransportReport {
            open_connections: open,
            counters: counters.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
        };
        let s = Snapshot {
            stream: Some(telemetry::stats::StreamReport {
                open_connections: 3,
                counters: [("accepted".to_string(), 1500)].into(),
                transports: [
                    (
                        "tcp".to_string(),
                        transport(
                            2,
                            &[
                                ("accepted", 1200),
                                ("refused_per_source", 2),
                                ("slow_timeouts", 4),
                                ("header_too_long", 1),
                            ],
                        ),
                    ),
                    (
                        "tls".to_string(),
                        transport(
                            1,
                            &[
                                ("accepted", 300),
                                ("refused_total", 1),
                                ("tls_handshakes", 290),
                                ("tls_failed_certificate", 5),
                                ("tls_failed_protocol", 3),
                            ],
                        ),
                    ),
                ]
                .into(),
            }),
            ..Default::default()
        };
        let text = summary(&s);
        assert!(
            text.contains("\n  over tcp: 2 open, 1,200 accepted, 2 refused by caps (2 per source, 0 total), 4 timed out, 1 framing errors, 0 queue overflows\n"),
            "{text}"
        );
        assert!(
            text.contains("\n  over tls: 1 open, 300 accepted, 1 refused by caps (0 per source, 1 total), 0 timed out, 0 framing errors, 0 queue overflows; 290 handshakes, 8 failed (5 certificate, 3 protocol, 0 alert, 0 other)\n"),
            "{text}"
        );
    }

    #[test]
    fn summary_lists_each_workers_drops_by_reason_and_its_wait_for_the_core() {
        let mut s = Snapshot::default();
        s.workers.push(telemetry::stats::WorkerReport {
            id: 1,
            queue: Some(1),
            core: Some(1),
            received: 10,
            dropped: [
                ("rx_ring_full".to_string(), 4321),
                ("tx_device_dropped".to_string(), 7),
            ]
            .into(),
            cpu_us: 2_500_000,
            cpu_wait_us: 9_000_000,
            ..Default::default()
        });
        let text = summary(&s);
        assert!(
            text.contains("worker 1 (queue 1) on core 1: 10 received"),
            "{text}"
        );
        assert!(text.contains("4,328 dropped"), "{text}");
        assert!(text.contains("drop rx_ring_full"), "{text}");
        assert!(text.contains("drop tx_device_dropped"), "{text}");
        assert!(text.contains("waited for its core 9.0 s"), "{text}");
    }
}
