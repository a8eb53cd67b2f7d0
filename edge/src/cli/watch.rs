//! `dce-edge stats --watch`: a terminal view of the edge during an attack,
//! refreshed every second from `/snapshot.json`: drop rates by reason,
//! passes and redirects, legitimate CPS and setup latency, the top offending
//! sources and the networks they fold into, active bans with time left, workers and upstream targets.
//!
//! [`LiveView`] holds what is shown and draws it on any ratatui backend (the
//! tests draw it into a buffer); [`run`] puts it on the terminal, fetches on
//! a background thread so keys stay responsive, and keeps retrying with a
//! clear message while the edge cannot be reached.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use telemetry::stats::client::{fetch_snapshot, snapshot_url, ClientError};
use telemetry::stats::rates::{network_key, Rates};
use telemetry::stats::{Role, Snapshot};

/// How the live view runs.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The edge's endpoint (`http://127.0.0.1:9560`) or a snapshot URL.
    pub url: String,
    /// Time between fetches.
    pub interval: Duration,
    /// How long one fetch may take before it counts as a failure.
    pub timeout: Duration,
}

impl WatchOptions {
    /// Refresh every second, give up on a fetch after 900 ms.
    pub fn new(url: &str) -> Self {
        WatchOptions {
            url: url.to_string(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(900),
        }
    }
}

/// Why the live view could not run.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The URL is not one the client can fetch.
    #[error(transparent)]
    Url(#[from] ClientError),
    /// No terminal to draw on (output redirected, no TTY).
    #[error("the live view needs a terminal: {0}")]
    Terminal(std::io::Error),
}

/// What the live view shows: the last two snapshots, the rates between
/// them, and the last fetch error.
#[derive(Debug, Clone)]
pub struct LiveView {
    url: String,
    previous: Option<Snapshot>,
    current: Option<Snapshot>,
    rates: Option<Rates>,
    error: Option<String>,
    failures: u64,
}

impl LiveView {
    /// An empty view of the edge at `url`.
    pub fn new(url: &str) -> Self {
        LiveView {
            url: url.to_string(),
            previous: None,
            current: None,
            rates: None,
            error: None,
            failures: 0,
        }
    }

    /// Takes one fetch result: a snapshot moves the view on, an error is
    /// shown over the last figures until a fetch succeeds again.
    pub fn update(&mut self, fetched: Result<Snapshot, ClientError>) {
        match fetched {
            Ok(snapshot) => {
                let same_moment = self
                    .current
                    .as_ref()
                    .is_some_and(|c| c.taken_at_ms > 0 && c.taken_at_ms == snapshot.taken_at_ms);
                if !same_moment {
                    self.previous = self.current.take();
                }
                self.current = Some(snapshot);
                if let (Some(p), Some(c)) = (&self.previous, &self.current) {
                    // A snapshot that did not move keeps the last rates.
                    if let Some(r) = Rates::between(p, c) {
                        self.rates = Some(r);
                    }
                }
                self.error = None;
                self.failures = 0;
            }
            Err(e) => {
                self.error = Some(e.to_string());
                self.failures += 1;
            }
        }
    }

    /// The rates between the last two snapshots (what the tests read back).
    #[cfg(test)]
    pub fn rates(&self) -> Option<&Rates> {
        self.rates.as_ref()
    }

    /// Draws the whole view into the frame.
    pub fn render(&self, frame: &mut Frame) {
        let area = frame.area();
        let banner_height = if self.error.is_some() { 4 } else { 0 };
        let fallback = self
            .current
            .as_ref()
            .is_some_and(|s| s.modes.attach_fallback);
        // Two more lines in the service panel for SIP over TCP/TLS: its
        // ten lines and the borders.
        let top_height = if self.current.as_ref().is_some_and(|s| s.stream.is_some()) {
            Constraint::Length(12)
        } else {
            Constraint::Min(8)
        };
        let [title, banner, warning, top, middle, networks, bottom, footer] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(banner_height),
            Constraint::Length(u16::from(fallback)),
            top_height,
            Constraint::Min(7),
            Constraint::Min(6),
            Constraint::Min(6),
            Constraint::Length(1),
        ])
        .areas(area);
        frame.render_widget(Paragraph::new(self.title_line()), title);
        if let Some(error) = &self.error {
            let text = vec![
                Line::from(Span::styled(
                    format!("EDGE UNREACHABLE: {error}"),
                    Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
                )),
                Line::from(format!(
                    "retrying every second ({} failed in a row); figures below are from the last answer",
                    self.failures
                )),
            ];
            frame.render_widget(
                Paragraph::new(text)
                    .wrap(Wrap { trim: true })
                    .block(Block::bordered().border_style(Style::new().fg(Color::Red))),
                banner,
            );
        }
        if fallback {
            frame.render_widget(
                Paragraph::new(Span::styled(
                    "WARNING: native XDP attach failed; the filter runs in GENERIC mode (slow)",
                    Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
                )),
                warning,
            );
        }
        let [drops, service] =
            Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(top);
        let [sources, bans] =
            Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
                .areas(middle);
        let [workers, targets] =
            Layout::horizontal([Constraint::Percentage(62), Constraint::Percentage(38)])
                .areas(bottom);
        self.render_drops(frame, drops);
        self.render_service(frame, service);
        self.render_sources(frame, sources);
        self.render_networks(frame, networks);
        self.render_bans(frame, bans);
        self.render_workers(frame, workers);
        self.render_targets(frame, targets);
        frame.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled("q", Style::new().add_modifier(Modifier::BOLD)),
                Span::raw(" or "),
                Span::styled("Ctrl-C", Style::new().add_modifier(Modifier::BOLD)),
                Span::raw(" quits · refreshes every second · rates are per second"),
            ])),
            footer,
        );
    }

    fn title_line(&self) -> Line<'static> {
        let Some(s) = &self.current else {
            return Line::from(format!(
                " dce-edge live view · waiting for the first snapshot from {}",
                self.url
            ));
        };
        let role = match s.role {
            Role::Appliance => "appliance",
            Role::Filter => "filter",
        };
        Line::from(vec![
            Span::styled(
                format!(" dce-edge {} ", s.version),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!(
                "· {role} · {} · attach {} · dataplane {} · up {} · {}",
                s.interface.as_deref().unwrap_or("no interface"),
                or_dash(&s.modes.attach),
                or_dash(&s.modes.dataplane),
                duration(s.uptime_seconds as u64),
                self.url
            )),
        ])
    }

    fn render_drops(&self, frame: &mut Frame, area: Rect) {
        let mut rows = Vec::new();
        let xdp = self.current.as_ref().and_then(|s| s.xdp.as_ref());
        match xdp {
            Some(xdp) => {
                for (reason, total) in &xdp.drops {
                    let rate = self.rates.as_ref().and_then(|r| r.drops.get(reason));
                    rows.push(Row::new(vec![
                        reason.clone(),
                        opt_rate(rate.copied()),
                        count(*total),
                    ]));
                }
                let total: u64 = xdp.drops.values().sum();
                rows.push(
                    Row::new(vec![
                        "all drops".to_string(),
                        opt_rate(self.rates.as_ref().map(|r| r.drops_total)),
                        count(total),
                    ])
                    .style(Style::new().add_modifier(Modifier::BOLD)),
                );
                rows.push(Row::new(vec![
                    "passed".to_string(),
                    opt_rate(self.rates.as_ref().map(|r| r.passed)),
                    count(xdp.passed),
                ]));
                rows.push(Row::new(vec![
                    "redirected".to_string(),
                    opt_rate(self.rates.as_ref().map(|r| r.redirected)),
                    count(xdp.redirected),
                ]));
            }
            None => rows.push(Row::new(vec![
                "no XDP filter attached".to_string(),
                String::new(),
                String::new(),
            ])),
        }
        let table = Table::new(
            rows,
            [
                Constraint::Min(12),
                Constraint::Length(10),
                Constraint::Length(14),
            ],
        )
        .header(header(["Reason", "/s", "Total"]))
        .block(Block::bordered().title(" Drops by reason (XDP) "));
        frame.render_widget(table, area);
    }

    fn render_service(&self, frame: &mut Frame, area: Rect) {
        let mut lines = Vec::new();
        if let Some(s) = &self.current {
            let r = self.rates.as_ref();
            let bold = Style::new().add_modifier(Modifier::BOLD);
            lines.push(Line::from(vec![
                Span::raw("Legitimate CPS: "),
                Span::styled(opt_rate(r.map(|r| r.cps)), bold.fg(Color::Green)),
                Span::raw(format!(
                    "   INVITEs fwd/s: {}   failed/s: {}",
                    opt_rate(r.map(|r| r.invites_forwarded)),
                    opt_rate(r.map(|r| r.calls_failed))
                )),
            ]));
            let h = &s.setup_latency;
            lines.push(Line::from(vec![
                Span::raw("Setup latency: "),
                Span::styled(
                    format!("p50 {} ms  p99 {} ms", ms(h.p50_ms), ms(h.p99_ms)),
                    bold,
                ),
                Span::raw(format!("  ({} calls measured)", count(h.count))),
            ]));
            lines.push(Line::from(format!(
                "Calls: {} forwarded, {} answered, {} failed",
                count(s.calls.invites_forwarded),
                count(s.calls.answered),
                count(s.calls.failed)
            )));
            let em = &s.emergency;
            lines.push(Line::from(format!(
                "Emergency: {} attempted · {} forwarded · {} answered · {} failed · {} over budget",
                count(em.attempted),
                count(em.forwarded),
                count(em.answered),
                count(em.failed),
                count(em.over_budget)
            )));
            let rt = &s.routes;
            lines.push(Line::from(format!(
                "Routes: table v{} · {} prefixes · {} lookups ({} batched) · {} misses · {} cap rejections",
                rt.table_version,
                count(rt.prefixes),
                count(rt.lookups),
                count(rt.batched_lookups),
                count(rt.misses),
                count(rt.cap_rejections.values().sum())
            )));
            lines.push(Line::from(format!(
                "Reloads: {} accepted, {} refused",
                rt.reloads_accepted, rt.reloads_refused
            )));
            if let Some(e) = &rt.last_reload_error {
                lines.push(Line::from(Span::styled(
                    format!("Last refused reload: {e}"),
                    Style::new().fg(Color::Yellow),
                )));
            }
            // Last: on a short screen it is what the panel cuts.
            if let Some(st) = &s.stream {
                let m = st.summary();
                lines.push(Line::from(format!(
                    "SIP over TCP/TLS: {} open · {} accepted · {} refused by caps · {} timed out · {} framing errors · TLS {} handshakes, {} failed",
                    count(m.open),
                    count(m.accepted),
                    count(m.refused_by_caps),
                    count(m.timed_out),
                    count(m.framing_errors),
                    count(m.tls_handshakes),
                    count(m.tls_failed)
                )));
            }
        }
        frame.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: true })
                .block(Block::bordered().title(" Service ")),
            area,
        );
    }

    fn render_sources(&self, frame: &mut Frame, area: Rect) {
        let rows: Vec<Row> = self
            .current
            .iter()
            .flat_map(|s| s.top_sources.iter())
            .map(|t| {
                let rate = self.rates.as_ref().and_then(|r| r.sources.get(&t.source));
                Row::new(vec![
                    t.source.clone(),
                    t.last_reason.clone(),
                    count(t.drops),
                    opt_rate(rate.copied()),
                ])
            })
            .collect();
        let table = Table::new(
            rows,
            [
                Constraint::Min(16),
                Constraint::Length(12),
                Constraint::Length(13),
                Constraint::Length(9),
            ],
        )
        .header(header(["Source", "Reason", "Drops", "/s"]))
        .block(Block::bordered().title(" Top offending sources "));
        frame.render_widget(table, area);
    }

    /// The top sources folded into networks: the shape line in the title,
    /// then the first few networks of each level (IPv4 /24, /16, IPv6 /64,
    /// /48), so a flood of single-drop spoofed sources reads as the few
    /// networks it comes from.
    fn render_networks(&self, frame: &mut Frame, area: Rect) {
        let tally = self.current.as_ref().and_then(|s| s.top_networks.as_ref());
        // Rows that fit (borders and header take three), shared by levels.
        let levels = tally.map_or(0, |t| t.levels.len()).max(1);
        let per_level = (usize::from(area.height.saturating_sub(3)) / levels).max(1);
        let rows: Vec<Row> = tally
            .iter()
            .flat_map(|t| {
                t.levels
                    .iter()
                    .flat_map(move |l| t.at(l.prefix_len).take(per_level))
            })
            .map(|n| {
                let rate = self
                    .rates
                    .as_ref()
                    .and_then(|r| r.networks.get(&network_key(&n.network, &n.reason)));
                Row::new(vec![
                    n.network.clone(),
                    n.reason.clone(),
                    count(n.drops),
                    count(n.sources),
                    opt_rate(rate.copied()),
                ])
            })
            .collect();
        let title = match tally {
            Some(t) => format!(" Top offending networks · {} ", t.shape()),
            None => " Top offending networks ".to_string(),
        };
        let table = Table::new(
            rows,
            [
                Constraint::Min(24),
                Constraint::Length(12),
                Constraint::Length(13),
                Constraint::Length(9),
                Constraint::Length(9),
            ],
        )
        .header(header(["Network", "Reason", "Drops", "Sources", "/s"]))
        .block(Block::bordered().title(title));
        frame.render_widget(table, area);
    }

    fn render_bans(&self, frame: &mut Frame, area: Rect) {
        let bans = self.current.as_ref().map_or(&[][..], |s| &s.bans[..]);
        let rows: Vec<Row> = bans
            .iter()
            .map(|b| {
                Row::new(vec![
                    b.source.clone(),
                    b.reason.clone(),
                    duration(b.seconds_left),
                ])
            })
            .collect();
        let table = Table::new(
            rows,
            [
                Constraint::Min(16),
                Constraint::Length(14),
                Constraint::Length(9),
            ],
        )
        .header(header(["Source", "Reason", "Left"]))
        .block(Block::bordered().title(format!(" Active bans ({}) ", bans.len())));
        frame.render_widget(table, area);
    }

    fn render_workers(&self, frame: &mut Frame, area: Rect) {
        let rows: Vec<Row> = self
            .current
            .iter()
            .flat_map(|s| s.workers.iter())
            .map(|w| {
                let r = self
                    .rates
                    .as_ref()
                    .and_then(|r| r.workers.iter().find(|x| x.id == w.id));
                Row::new(vec![
                    w.id.to_string(),
                    w.core.map_or("-".into(), |c| c.to_string()),
                    opt_rate(r.map(|r| r.received)),
                    opt_rate(r.map(|r| r.transmitted)),
                    count(w.forwarded_requests + w.forwarded_responses),
                    count(w.answered.values().sum()),
                    count(w.parse_errors.values().sum()),
                    count(w.dropped.values().sum()),
                    count(w.rings.values().sum()),
                ])
            })
            .collect();
        let table = Table::new(
            rows,
            [
                Constraint::Length(3),
                Constraint::Length(4),
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Length(11),
                Constraint::Length(9),
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Length(8),
            ],
        )
        .header(header([
            "#",
            "core",
            "rx/s",
            "tx/s",
            "forwarded",
            "answered",
            "parse",
            "dropped",
            "rings",
        ]))
        .block(Block::bordered().title(" Workers "));
        frame.render_widget(table, area);
    }

    fn render_targets(&self, frame: &mut Frame, area: Rect) {
        let rows: Vec<Row> = self
            .current
            .iter()
            .flat_map(|s| s.targets.iter())
            .map(|t| {
                let state = if t.up {
                    Span::styled("up", Style::new().fg(Color::Green))
                } else {
                    Span::styled(
                        "DOWN",
                        Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
                    )
                };
                Row::new(vec![
                    Line::from(t.group.clone()),
                    Line::from(t.target.clone()),
                    Line::from(state),
                    // A down target has no round trip to show: why it is
                    // down matters more.
                    Line::from(match (&t.cause, t.up) {
                        (Some(cause), false) => cause.clone(),
                        _ => t.rtt_ms.map_or("-".into(), |v| format!("{} ms", ms(v))),
                    }),
                ])
            })
            .collect();
        let table = Table::new(
            rows,
            [
                Constraint::Length(10),
                Constraint::Min(14),
                Constraint::Length(5),
                Constraint::Min(9),
            ],
        )
        .header(header(["Group", "Target", "State", "RTT / why down"]))
        .block(Block::bordered().title(" Targets "));
        frame.render_widget(table, area);
    }
}

fn header<const N: usize>(names: [&'static str; N]) -> Row<'static> {
    Row::new(names).style(
        Style::new()
            .add_modifier(Modifier::BOLD)
            .add_modifier(Modifier::UNDERLINED),
    )
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// A count with thousands separators: `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate per second, short: `0`, `3.5`, `250`, `12.3k`, `1.25M`.
pub fn rate(v: f64) -> String {
    if v < 0.05 {
        "0".into()
    } else if v < 100.0 {
        format!("{v:.1}")
    } else if v < 10_000.0 {
        format!("{v:.0}")
    } else if v < 1_000_000.0 {
        format!("{:.1}k", v / 1000.0)
    } else {
        format!("{:.2}M", v / 1_000_000.0)
    }
}

fn opt_rate(v: Option<f64>) -> String {
    v.map_or_else(|| "…".into(), rate)
}

fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

/// Seconds as `45s`, `9m 59s`, `1h 02m`, `3d 04h`.
pub fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d {:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Runs the live view on the terminal until `q`, Ctrl-C, or SIGTERM/SIGHUP,
/// then restores the terminal.
pub fn run(options: &WatchOptions) -> Result<(), WatchError> {
    let url = snapshot_url(&options.url)?;
    let quit = Arc::new(AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGINT,
    ] {
        // Without the flag a signal still ends the process, only without
        // restoring the terminal; not worth refusing to start over.
        let _ = signal_hook::flag::register(signal, quit.clone());
    }
    let (tx, rx) = mpsc::channel();
    {
        let url = url.clone();
        let (interval, timeout) = (options.interval, options.timeout);
        let quit = quit.clone();
        // The fetcher ends when the view is gone (its send fails).
        std::thread::Builder::new()
            .name("dce-stats-fetch".into())
            .spawn(move || {
                while !quit.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    if tx.send(fetch_snapshot(&url, timeout)).is_err() {
                        break;
                    }
                    std::thread::sleep(interval.saturating_sub(started.elapsed()));
                }
            })
            .map_err(WatchError::Terminal)?;
    }
    let mut terminal = ratatui::try_init().map_err(WatchError::Terminal)?;
    let mut view = LiveView::new(&options.url);
    let result = event_loop(&mut terminal, &mut view, &rx, &quit);
    ratatui::restore();
    quit.store(true, Ordering::Relaxed);
    result.map_err(WatchError::Terminal)
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    view: &mut LiveView,
    fetched: &mpsc::Receiver<Result<Snapshot, ClientError>>,
    quit: &AtomicBool,
) -> std::io::Result<()> {
    while !quit.load(Ordering::Relaxed) {
        while let Ok(result) = fetched.try_recv() {
            view.update(result);
        }
        terminal.draw(|frame| view.render(frame))?;
        if event::poll(Duration::from_millis(100))? {
            if let Event::Key(key) = event::read()? {
                let ctrl_c =
                    key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
                let q = matches!(key.code, KeyCode::Char('q' | 'Q') | KeyCode::Esc);
                if key.kind == KeyEventKind::Press && (q || ctrl_c) {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use telemetry::stats::{
        BanInForce, Modes, TargetState, TopOffender, WorkerReport, XdpCounters,
    };

    fn snapshot(at_ms: u64, scanner: u64, answered: u64) -> Snapshot {
        Snapshot {
            version: "0.1.0".into(),
            interface: Some("veth0".into()),
            taken_at_ms: at_ms,
            modes: Modes {
                attach: "native".into(),
                attach_fallback: false,
                dataplane: "copy".into(),
                program_id: None,
            },
            xdp: Some(XdpCounters {
                drops: [
                    ("scanner".to_string(), scanner),
                    ("rate_limit".to_string(), 5),
                ]
                .into(),
                passed: 10,
                redirected: 20,
            }),
            top_sources: vec![TopOffender {
                source: "198.18.0.9".into(),
                drops: scanner,
                last_reason: "scanner".into(),
            }],
            bans: vec![BanInForce {
                source: "198.18.0.9".into(),
                reason: "scanner".into(),
                seconds_left: 599,
            }],
            workers: vec![WorkerReport {
                id: 0,
                core: Some(1),
                received: answered * 3,
                ..Default::default()
            }],
            targets: vec![TargetState {
                group: "carrier_a".into(),
                target: "198.18.1.10:5060".into(),
                up: false,
                rtt_ms: None,
                probes_sent: 3,
                probes_answered: 0,
                cause: Some("3 OPTIONS probes unanswered".into()),
            }],
            calls: telemetry::stats::CallCounters {
                invites_forwarded: answered,
                answered,
                failed: 0,
            },
            ..Default::default()
        }
    }

    fn screen(view: &LiveView) -> String {
        let mut terminal = Terminal::new(TestBackend::new(140, 40)).unwrap();
        terminal.draw(|f| view.render(f)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        let width = buffer.area.width as usize;
        buffer
            .content
            .chunks(width)
            .map(|row| row.iter().map(|c| c.symbol()).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn two_snapshots_show_rates_sources_bans_and_cps() {
        let mut view = LiveView::new("http://127.0.0.1:9560");
        view.update(Ok(snapshot(1_000, 100, 10)));
        view.update(Ok(snapshot(2_000, 350, 60)));
        let text = screen(&view);
        for want in [
            "Drops by reason",
            "scanner",
            "scanner                             250        350",
            "Top offending sources",
            "198.18.0.9",
            "Active bans (1)",
            "9m 59s",
            "Legitimate CPS: 50.0",
            "DOWN",
            "3 OPTIONS",
            "attach native",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }

    #[test]
    fn a_spoofed_flood_shows_as_its_networks_with_rates() {
        use telemetry::stats::networks::{aggregate, SourceDrops, TOP_PER_LEVEL};
        // 1,000 sources, `each` drops apiece, in four /24s of 198.51.0.0/16.
        let flood = |at_ms: u64, each: u64| {
            let sources: Vec<SourceDrops> = (0..1000u32)
                .map(|i| SourceDrops {
                    addr: format!("198.51.{}.{}", i / 250, i % 250).parse().unwrap(),
                    drops: each,
                    reason: "unverified".into(),
                })
                .collect();
            let mut s = snapshot(at_ms, 0, 0);
            s.top_networks = Some(aggregate(&sources, 8192, TOP_PER_LEVEL));
            s
        };
        let mut view = LiveView::new("u");
        view.update(Ok(flood(1_000, 1)));
        view.update(Ok(flood(2_000, 3)));
        let text = screen(&view);
        for want in [
            "Top offending networks · 1000 sources held (map of 8192): 1000 ipv4 in 4 /24, 1000 ipv4 in 1 /16",
            "198.51.0.0/24",
            "198.51.0.0/16",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        // The /16: 3,000 drops from 1,000 sources, 2,000 more in a second.
        let line = text.lines().find(|l| l.contains("198.51.0.0/16")).unwrap();
        let cells: Vec<&str> = line.split(['│', ' ']).filter(|c| !c.is_empty()).collect();
        assert_eq!(
            cells,
            ["198.51.0.0/16", "unverified", "3,000", "1,000", "2000"],
            "{line}"
        );
    }

    #[test]
    fn sip_over_tcp_and_tls_shows_its_connections() {
        let mut s = snapshot(1_000, 100, 10);
        s.stream = Some(telemetry::stats::StreamReport {
            open_connections: 12,
            counters: [
                ("accepted", 40),
                ("refused_per_source", 3),
                ("refused_total", 1),
                ("slow_timeouts", 2),
                ("bad_content_length", 1),
                ("tls_handshakes", 30),
                ("tls_failed_certificate", 4),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            transports: Default::default(),
        });
        let mut view = LiveView::new("u");
        view.update(Ok(s));
        let text = screen(&view);
        // The panel wraps the line where its width ends.
        for want in [
            "SIP over TCP/TLS: 12 open",
            "40 accepted",
            "4 refused by caps",
            "2 timed out",
            "1 framing errors",
            "TLS 30 handshakes, 4 failed",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }

    #[test]
    fn unreachable_edge_is_said_and_old_figures_stay() {
        let mut view = LiveView::new("http://127.0.0.1:9560");
        view.update(Ok(snapshot(1_000, 100, 10)));
        view.update(Err(ClientError::Unreachable {
            url: "http://127.0.0.1:9560/snapshot.json".into(),
            reason: "Connection refused".into(),
        }));
        let text = screen(&view);
        assert!(text.contains("EDGE UNREACHABLE"), "{text}");
        assert!(text.contains("Connection refused"), "{text}");
        assert!(text.contains("198.18.0.9"), "{text}");
        view.update(Ok(snapshot(2_000, 100, 10)));
        assert!(!screen(&view).contains("UNREACHABLE"));
    }

    #[test]
    fn fallback_to_generic_is_a_warning() {
        let mut view = LiveView::new("http://127.0.0.1:9560");
        let mut s = snapshot(1_000, 0, 0);
        s.modes.attach = "generic".into();
        s.modes.attach_fallback = true;
        view.update(Ok(s));
        assert!(screen(&view).contains("GENERIC mode"));
    }

    #[test]
    fn the_same_snapshot_twice_keeps_the_rates() {
        let mut view = LiveView::new("u");
        view.update(Ok(snapshot(1_000, 100, 10)));
        view.update(Ok(snapshot(2_000, 300, 10)));
        view.update(Ok(snapshot(2_000, 300, 10)));
        assert_eq!(view.rates().unwrap().drops["scanner"], 200.0);
    }

    #[test]
    fn numbers_are_short_and_readable() {
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(999), "999");
        assert_eq!(rate(0.0), "0");
        assert_eq!(rate(3.46), "3.5");
        assert_eq!(rate(12_345.0), "12.3k");
        assert_eq!(rate(2_500_000.0), "2.50M");
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(3_720), "1h 02m");
    }
}
