//! The live view in a real terminal: tmux runs `dce-edge stats --watch`
//! against a test endpoint whose counters grow with time. The pane first
//! says the edge cannot be reached (the port is held but nobody answers),
//! then, once the endpoint serves, shows drop reasons, top sources, bans and
//! CPS, and its numbers move between captures; `q` quits and gives the
//! terminal back. Only bounded waits, no timing assertions. The test's tmux
//! server runs on its own socket and its session is killed by name, also
//! when the test fails.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lab::privilege::{feature_or_skip, have_program};
use telemetry::metrics::MetricsServer;
use telemetry::stats::{
    BanInForce, CallCounters, LatencyHistogram, Modes, Snapshot, TargetState, TopOffender,
    WorkerReport, XdpCounters,
};

const WAIT: Duration = Duration::from_secs(60);

fn dce_edge_bin() -> PathBuf {
    lab::bin::workspace_binary("dce-edge")
}

/// A tmux server on its own socket (a file this test owns) with one
/// session; session, server and socket file go on drop.
struct Tmux {
    socket: PathBuf,
    session: String,
}

impl Tmux {
    fn start(command: &str) -> Tmux {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("dce-lv-{}-{nanos}", std::process::id());
        let tmux = Tmux {
            socket: std::env::temp_dir().join(&name),
            session: name,
        };
        let status = Command::new("tmux")
            .arg("-S")
            .arg(&tmux.socket)
            .args(["-f", "/dev/null", "new-session", "-d"])
            .args(["-s", &tmux.session, "-x", "150", "-y", "50", command])
            .env_remove("TMUX")
            .status()
            .expect("run tmux");
        assert!(status.success(), "tmux new-session failed");
        tmux
    }

    fn capture(&self) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .expect("run tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn send_keys(&self, keys: &str) {
        let status = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["send-keys", "-t", &self.session, keys])
            .status()
            .expect("run tmux send-keys");
        assert!(status.success());
    }

    /// Captures until `ok` holds, for at most `WAIT`.
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.capture();
            if ok(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "waited {WAIT:?} for {what}; the pane shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["kill-session", "-t", &self.session])
            .stderr(Stdio::null())
            .status();
        // The server on our own socket has no session left; make sure it
        // is gone too (it serves only this test).
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// A snapshot whose counters grow with the time since `started`.
fn growing_snapshot(started: Instant) -> Snapshot {
    let ms = started.elapsed().as_millis() as u64;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let scanner = 1_000 + ms * 3;
    let answered = ms / 20;
    Snapshot {
        version: "0.1.0".into(),
        interface: Some("veth-test".into()),
        taken_at_ms: now_ms,
        uptime_seconds: ms as f64 / 1000.0,
        modes: Modes {
            attach: "native".into(),
            attach_fallback: false,
            dataplane: "copy".into(),
            program_id: None,
        },
        xdp: Some(XdpCounters {
            drops: [
                ("scanner".to_string(), scanner),
                ("rate_limit".to_string(), ms),
                ("not_sip".to_string(), 7),
            ]
            .into(),
            passed: ms / 10,
            redirected: ms * 2,
        }),
        top_sources: vec![
            TopOffender {
                source: "198.18.0.66".into(),
                drops: scanner,
                last_reason: "scanner".into(),
            },
            TopOffender {
                source: "198.18.7.1".into(),
                drops: ms,
                last_reason: "rate_limit".into(),
            },
        ],
        bans: vec![BanInForce {
            source: "198.18.0.66".into(),
            reason: "scanner".into(),
            seconds_left: 600u64.saturating_sub(ms / 1000),
        }],
        workers: vec![WorkerReport {
            id: 0,
            core: Some(1),
            received: ms * 2,
            transmitted: ms * 2,
            forwarded_requests: answered,
            forwarded_responses: answered,
            ..Default::default()
        }],
        targets: vec![TargetState {
            group: "carrier_a".into(),
            target: "198.18.1.10:5060".into(),
            up: true,
            rtt_ms: Some(0.8),
            probes_sent: 10,
            probes_answered: 10,
            cause: None,
        }],
        setup_latency: LatencyHistogram {
            bounds_ms: vec![5.0, 50.0],
            counts: vec![answered, 0, 0],
            count: answered,
            sum_ms: answered as f64 * 2.0,
            p50_ms: 2.0,
            p99_ms: 4.5,
        },
        calls: CallCounters {
            invites_forwarded: answered,
            answered,
            failed: 0,
        },
        ..Default::default()
    }
}

/// The total of the `scanner` row of the drops table.
fn scanner_total(screen: &str) -> Option<u64> {
    screen.lines().find_map(|line| {
        let cell = line.trim_start_matches(['│', ' ']);
        let rest = cell.strip_prefix("scanner ")?;
        let fields: Vec<&str> = rest.split('│').next()?.split_whitespace().collect();
        // rate, total
        fields.get(1)?.replace(',', "").parse().ok()
    })
}

/// The legitimate CPS figure of the service block.
fn cps(screen: &str) -> Option<f64> {
    let at = screen.find("Legitimate CPS: ")?;
    screen[at + "Legitimate CPS: ".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn live_view_shows_rows_that_move_and_quits_on_q() {
    if !feature_or_skip(
        "live_view_shows_rows_that_move_and_quits_on_q",
        have_program("tmux"),
        "tmux",
        "apt-get install tmux, or run scripts/setup.sh",
    ) {
        return;
    }
    // Hold the port without answering: the view must say it cannot reach
    // the edge, then recover once the endpoint serves on that same port.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().unwrap());
    let command = format!(
        "{} stats --watch --url {url}; echo VIEW-EXITED $?; sleep 300",
        dce_edge_bin().display()
    );
    let tmux = Tmux::start(&command);

    tmux.wait_for("the unreachable message", |s| {
        s.contains("EDGE UNREACHABLE")
    });

    let started = Instant::now();
    let _server = MetricsServer::start_on(listener, move || growing_snapshot(started))
        .expect("serve on the held port");

    let first = tmux.wait_for("the figures and their rates", |s| {
        !s.contains("UNREACHABLE")
            && s.contains("198.18.0.66")
            && scanner_total(s).is_some()
            && cps(s).is_some_and(|c| c > 0.0)
    });
    for row in [
        "Drops by reason",
        "rate_limit",
        "not_sip",
        "passed",
        "redirected",
        "Top offending sources",
        "198.18.7.1",
        "Active bans (1)",
        "Legitimate CPS:",
        "p50 2.00 ms  p99 4.50 ms",
        "Workers",
        "carrier_a",
    ] {
        assert!(first.contains(row), "no {row:?} in the pane:\n{first}");
    }
    eprintln!("the pane:\n{first}");
    let first_total = scanner_total(&first).unwrap();
    let second = tmux.wait_for("the scanner total to move", |s| {
        scanner_total(s).is_some_and(|t| t > first_total)
    });
    let third_floor = scanner_total(&second).unwrap();
    tmux.wait_for("the scanner total to move again", |s| {
        scanner_total(s).is_some_and(|t| t > third_floor)
    });

    tmux.send_keys("q");
    let after = tmux.wait_for("the view to quit", |s| s.contains("VIEW-EXITED"));
    assert!(after.contains("VIEW-EXITED 0"), "{after}");
    // The alternate screen is gone: the terminal is the shell's again.
    assert!(!after.contains("Drops by reason"), "{after}");
}

#[test]
fn live_view_quits_on_ctrl_c_and_restores_the_terminal() {
    if !feature_or_skip(
        "live_view_quits_on_ctrl_c_and_restores_the_terminal",
        have_program("tmux"),
        "tmux",
        "apt-get install tmux, or run scripts/setup.sh",
    ) {
        return;
    }
    let started = Instant::now();
    let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), move || {
        growing_snapshot(started)
    })
    .expect("start the endpoint");
    let command = format!(
        "{} stats --watch --url http://{}; echo VIEW-EXITED $?; sleep 300",
        dce_edge_bin().display(),
        server.local_addr()
    );
    let tmux = Tmux::start(&command);
    tmux.wait_for("the figures", |s| scanner_total(s).is_some());
    tmux.send_keys("C-c");
    let after = tmux.wait_for("the view to quit", |s| s.contains("VIEW-EXITED"));
    assert!(after.contains("VIEW-EXITED 0"), "{after}");
    assert!(!after.contains("Drops by reason"), "{after}");
}
