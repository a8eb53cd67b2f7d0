//! `dce-edge stats --json --url ...` (the HTTP side of `dce-edge
//! stats`) prints the snapshot the endpoint serves, for scripts; and says
//! which URL it could not reach.

use std::path::PathBuf;
use std::process::Command;

use telemetry::metrics::MetricsServer;
use telemetry::stats::{CallCounters, Snapshot, XdpCounters};

/// The `dce-edge` binary next to this test's folder (`cargo build --bins`
/// puts it there; `scripts/test-all.sh` builds it before the tests).
fn dce_edge_bin() -> PathBuf {
    lab::bin::workspace_binary("dce-edge")
}

#[test]
fn json_prints_the_served_snapshot() {
    let served = Snapshot {
        version: "0.1.0".into(),
        xdp: Some(XdpCounters {
            drops: [("scanner".to_string(), 42)].into(),
            passed: 3,
            redirected: 5,
        }),
        calls: CallCounters {
            invites_forwarded: 9,
            answered: 8,
            failed: 1,
        },
        top_networks: Some(telemetry::stats::networks::aggregate(
            &[telemetry::stats::networks::SourceDrops {
                addr: "198.51.100.7".parse().unwrap(),
                drops: 42,
                reason: "scanner".into(),
            }],
            8192,
            10,
        )),
        ..Default::default()
    };
    let server = {
        let served = served.clone();
        MetricsServer::start("127.0.0.1:0".parse().unwrap(), move || served.clone()).expect("start")
    };
    let out = Command::new(dce_edge_bin())
        .args(["stats", "--json", "--url"])
        .arg(format!("http://{}", server.local_addr()))
        .output()
        .expect("run dce-edge");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Snapshot = serde_json::from_slice(&out.stdout).expect("stdout is a snapshot");
    assert_eq!(printed, served);
    // The top networks under their documented names.
    let raw: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        raw["top_networks"]["networks"][0],
        serde_json::json!({"network": "198.51.100.0/24", "prefix_len": 24, "reason": "scanner", "drops": 42, "sources": 1})
    );
}

#[test]
fn unreachable_endpoint_fails_naming_the_url() {
    // A listener that never answers: the command must give up by itself
    // and say where it tried.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let out = Command::new(dce_edge_bin())
        .args(["stats", "--json", "--url", &url])
        .output()
        .expect("run dce-edge");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&url), "{stderr}");
}
