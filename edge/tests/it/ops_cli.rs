//! The operations commands the package relies on, on a socket-mode
//! appliance on 127.0.0.1 (no XDP, no root needed): `events reopen` after a
//! rotation (what logrotate's postrotate runs), `cleanup` after a kill (the
//! unit's ExecStopPost), and `generate` (the manual pages and completions
//! the package ships).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn dce_edge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dce-edge"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A socket-mode appliance in a folder of its own; killed if still running
/// when dropped.
struct Appliance {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Appliance {
    fn start() -> Appliance {
        let dir = tempfile::tempdir().unwrap();
        // A free port for the metrics endpoint (it refuses port 0).
        let metrics = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        std::fs::write(
            dir.path().join("edge.toml"),
            format!(
                "[edge]\nmode = \"socket\"\nlisten = \"127.0.0.1:0\"\nworkers = 1\n\
                 control_socket = \"run/control.sock\"\n\n\
                 [routes]\ngroups = \"groups.toml\"\nprefixes = \"prefixes.csv\"\n\n\
                 [metrics]\nlisten = \"{metrics}\"\n\n\
                 [events]\nfile = \"events.jsonl\"\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("groups.toml"),
            "[[group]]\nname = \"unrouted\"\naction = \"reject\"\ncode = 404\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("prefixes.csv"),
            "prefix,group\ndefault,unrouted\n",
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_dce-edge"))
            .args(["run", "--config"])
            .arg(dir.path().join("edge.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut a = Appliance {
            dir,
            child: Some(child),
        };
        a.wait_for_control();
        a
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn control(&self) -> String {
        self.path("run/control.sock").display().to_string()
    }

    fn config(&self) -> String {
        self.path("edge.toml").display().to_string()
    }

    /// Waits until the control socket answers a route reload.
    fn wait_for_control(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let o = dce_edge(&["routes", "reload", "--control", &self.control()]);
            if o.status.success() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("dce-edge run exited ({status}): {}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "the control socket did not answer: {}",
                text(&o)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stderr(&mut self) -> String {
        let mut out = String::new();
        if let Some(mut e) = self.child.as_mut().and_then(|c| c.stderr.take()) {
            use std::io::Read;
            let _ = e.read_to_string(&mut out);
        }
        out
    }

    /// SIGTERM, as systemd stops it; waits for the exit.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let kill = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        child.wait().unwrap()
    }

    /// SIGKILL: nothing of its own clean-up runs.
    fn kill(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The `event` field of every line of an events file.
fn events(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["event"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn events_reopen_after_a_rotation_sends_later_events_to_the_new_file() {
    let mut a = Appliance::start();
    let log = a.path("events.jsonl");
    let rotated = a.path("events.jsonl.1");
    // What logrotate does: move the file away, then ask for a reopen.
    std::fs::rename(&log, &rotated).unwrap();
    let o = dce_edge(&["events", "reopen", "--control", &a.control()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("event log reopened: {}", log.display())),
        "{}",
        text(&o)
    );
    let o = dce_edge(&["routes", "reload", "--control", &a.control()]);
    assert!(o.status.success(), "{}", text(&o));
    let status = a.terminate();
    assert!(status.success(), "{status}: {}", a.stderr());
    let before = events(&rotated);
    let after = events(&log);
    assert_eq!(
        before.first().map(String::as_str),
        Some("start"),
        "{before:?}"
    );
    assert!(
        !before.iter().any(|e| e == "stop"),
        "the stop went to the rotated file: {before:?}"
    );
    assert_eq!(
        after,
        ["route_reload_accepted", "stop"],
        "events after the reopen"
    );
}

#[test]
fn events_reopen_without_an_appliance_fails_naming_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("control.sock").display().to_string();
    let o = dce_edge(&["events", "reopen", "--control", &sock]);
    assert!(!o.status.success());
    assert!(text(&o).contains(&sock), "{}", text(&o));
}

#[test]
fn cleanup_after_a_kill_removes_the_stale_control_socket_and_leaves_a_live_one() {
    let mut a = Appliance::start();
    let sock = a.path("run/control.sock");
    // A live appliance's socket stays.
    let o = dce_edge(&["cleanup", "--config", &a.config()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(sock.exists());
    a.kill();
    assert!(sock.exists(), "a killed appliance cannot remove its socket");
    let o = dce_edge(&["cleanup", "--config", &a.config()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("removed stale control socket"),
        "{}",
        text(&o)
    );
    assert!(!sock.exists());
    // Nothing left: a second run says nothing and succeeds.
    let o = dce_edge(&["cleanup", "--config", &a.config()]);
    assert!(o.status.success() && text(&o).is_empty(), "{}", text(&o));
}

#[test]
fn generate_writes_manual_pages_and_completions_of_both_binaries() {
    let dir = tempfile::tempdir().unwrap();
    let man = dir.path().join("man");
    let o = dce_edge(&["generate", "man", "--out", man.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    for page in [
        "dce-edge.1",
        "dce-edge-run.1",
        "dce-edge-routes-reload.1",
        "dce-edge-events-reopen.1",
        "dce-edge-cleanup.1",
        "dce-loadgen.1",
        "dce-loadgen-capacity.1",
    ] {
        let text =
            std::fs::read_to_string(man.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}");
    }
    assert!(
        !man.join("dce-edge-generate.1").exists(),
        "the hidden command gets no page"
    );
    let completions = dir.path().join("completions");
    let o = dce_edge(&[
        "generate",
        "completions",
        "--out",
        completions.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    for file in [
        "dce-edge.bash",
        "_dce-edge",
        "dce-edge.fish",
        "dce-loadgen.bash",
        "_dce-loadgen",
        "dce-loadgen.fish",
    ] {
        let text = std::fs::read_to_string(completions.join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(
            text.contains("routes") || text.contains("capacity"),
            "{file}"
        );
    }
}
