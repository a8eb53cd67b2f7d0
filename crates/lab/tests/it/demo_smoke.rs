//! `dce-edge demo`, short, with one AF_XDP worker and with two on a
//! two-queue veth: it builds the lab, runs calls and every attack,
//! writes its report, and leaves nothing behind. The assertions are about
//! what happened, not how fast: the scanners find nothing and are dropped
//! in XDP (not banned: their sources never proved their addresses), the
//! flood is dropped in XDP, calls complete, a never-verified caller's
//! emergency calls during the flood all complete, and the lab is gone.

use std::process::Command;

use lab::bin::{workspace_binary, TempDir};
use lab::privilege::privileged_or_skip;

fn namespaces() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect()
}

#[test]
fn the_demo_sheds_every_attack_completes_calls_and_cleans_up() {
    if !privileged_or_skip("the_demo_sheds_every_attack_completes_calls_and_cleans_up") {
        return;
    }
    let r = run_demo(1);
    assert!(r["workers"].as_array().unwrap().len() == 1, "{r}");
}

#[test]
fn the_demo_runs_with_two_afxdp_workers_and_both_carry_calls() {
    if !privileged_or_skip("the_demo_runs_with_two_afxdp_workers_and_both_carry_calls") {
        return;
    }
    let r = run_demo(2);
    // Two queues, one pinned worker each; the veth spreads the 40 caller
    // addresses' flows over both, as RSS would.
    let workers = r["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{r}");
    for w in workers {
        assert!(w["received"].as_u64().unwrap() > 0, "{r}");
        assert!(w["forwarded"].as_u64().unwrap() > 0, "{r}");
    }
}

/// Runs a short demo with `workers` AF_XDP workers, checks what every run
/// must show (below) and returns its JSON report.
fn run_demo(workers: u32) -> serde_json::Value {
    let edge = workspace_binary("dce-edge");
    let _ = workspace_binary("dce-loadgen");
    let dir = TempDir::new("demo").unwrap();
    let report_path = dir.path().join("report.json");
    let child = Command::new(&edge)
        .args([
            "demo",
            "--seconds",
            "12",
            "--cps",
            "100",
            "--flood-pps",
            "5000",
            "--workers",
            &workers.to_string(),
            "--json",
        ])
        .arg(&report_path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run dce-edge demo");
    // The lab's namespaces are named prefix + the demo's pid in hex + 'x' + n.
    let marker = format!("{:x}x", child.id());
    let out = child.wait_with_output().expect("the demo ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed ({}):\n{stderr}",
        out.status
    );
    let text = std::fs::read_to_string(&report_path).expect("the demo wrote its report");
    let r: serde_json::Value = serde_json::from_str(&text).expect("a JSON report");

    // Calls went through the edge.
    let offered = r["calls"]["offered"].as_u64().unwrap();
    let completed = r["calls"]["completed"].as_u64().unwrap();
    assert!(offered > 0 && completed > 0, "{text}");
    // The attacks found nothing and their sources were dealt with.
    for a in r["attacks"].as_array().unwrap() {
        assert!(a["sent"].as_u64().unwrap() > 0, "{a}");
        assert!(
            a["found"].as_array().unwrap().is_empty(),
            "an attack found something: {a}"
        );
    }
    let drops = &r["xdp_drops"];
    assert!(
        drops["scanner"].as_u64().unwrap() + drops["banned"].as_u64().unwrap() > 0,
        "{text}"
    );
    // A scanner signature on an unverified source's packet bans nobody
    // (issue 17).
    assert!(
        !r["bans"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b[1] == "scanner"),
        "{text}"
    );
    assert!(drops["not_sip"].as_u64().unwrap() > 0, "{text}");
    // A caller the edge has never seen dials 112 and 911 during the flood:
    // every call completes, and the edge counts them as emergency calls
    // (issue 18).
    let e = &r["emergency"];
    let attempted = e["attempted"].as_u64().unwrap();
    assert!(attempted > 0, "{text}");
    assert_eq!(e["completed"].as_u64().unwrap(), attempted, "{text}");
    assert_eq!(e["failed"].as_u64().unwrap(), 0, "{text}");
    assert!(
        e["edge"]["forwarded"].as_u64().unwrap() >= attempted,
        "{text}"
    );
    assert!(
        e["edge"]["answered"].as_u64().unwrap() >= attempted,
        "{text}"
    );
    assert!(
        e["edge"]["attempted"].as_u64().unwrap() >= attempted,
        "{text}"
    );
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(
        human.contains(&format!(
            "attempted {attempted}  completed {attempted}  failed 0"
        )),
        "{human}"
    );
    assert!(human.contains("the edge's counters: attempted"), "{human}");
    assert_eq!(r["attach_mode"], "native", "{text}");
    assert_eq!(r["dataplane_mode"], "copy", "{text}");
    assert!(r["prefixes"].as_u64().unwrap() >= 10_000);
    // Nothing left behind.
    let left: Vec<_> = namespaces()
        .into_iter()
        .filter(|n| n.contains(&marker))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    r
}
