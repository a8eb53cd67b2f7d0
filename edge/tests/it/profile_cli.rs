//! The `dce-edge profile` and `dce-edge tune` commands as a user runs them:
//! output, JSON, and exit status (0 fine, 1 an audit line failed, 2 a
//! refused profile or bad arguments).

use std::path::PathBuf;
use std::process::{Command, Output};

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/profile/tests/fixtures/hosts")
        .join(name)
        .display()
        .to_string()
}

fn dce_edge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dce-edge"))
        .args(args)
        .output()
        .expect("run dce-edge")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

#[test]
fn list_names_every_builtin_tier() {
    let o = dce_edge(&["profile", "list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for name in ["lab", "cloud-vm", "small-edge", "medium-edge", "large-edge"] {
        assert!(out.contains(name), "{name} missing from:\n{out}");
    }
    // The lab's band is the measured one; the others are extrapolated
    // from a model, which they may not exceed.
    assert!(out.contains("measured 21624 on 2026-12-07"), "{out}");
    assert!(out.contains("extrapolated (model 351758)"), "{out}");
}

#[test]
fn show_prints_the_file_with_its_comments() {
    let o = dce_edge(&["profile", "show", "lab"]);
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(out.starts_with("# hardware-profiles/lab.toml\n"), "{out}");
    assert!(
        out.contains("# band: target 15000 CPS; measured: 21624 CPS held on 2026-12-07"),
        "{out}"
    );
    assert!(out.contains("measured_cps = 21624"), "{out}");
    assert!(
        out.contains("# The capacity `dce-loadgen capacity --profile lab` found"),
        "{out}"
    );
}

#[test]
fn show_json_carries_runtime_and_band() {
    let v = json(&dce_edge(&["profile", "show", "small-edge", "--json"]));
    assert_eq!(v["runtime"]["workers"], 3);
    assert_eq!(v["runtime"]["worker_cores"], serde_json::json!([1, 2, 3]));
    assert_eq!(v["runtime"]["rate_limits"]["invite"]["rate"], 20);
    assert_eq!(v["band"]["target_cps"], 45000);
    assert_eq!(v["band"]["target_basis"], "extrapolated");
    assert_eq!(v["band"]["model"]["supported_cps"], 75376);
    assert_eq!(v["band"]["guide_range_cps"]["max"], 30000);
    assert_eq!(v["band"]["tier_split"], "dce-edge");
    assert_eq!(v["band"]["measured_cps"], serde_json::Value::Null);
    assert_eq!(v["hardware"]["af_xdp"], "zero-copy");
}

#[test]
fn unknown_profile_exits_2_with_the_known_names() {
    let o = dce_edge(&["profile", "show", "huge-edge"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("there are: lab, cloud-vm"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn detect_json_names_the_profile_of_a_fixture() {
    let v = json(&dce_edge(&[
        "profile",
        "detect",
        "--json",
        "--root",
        &fixture("medium-edge"),
    ]));
    assert_eq!(v["best"]["profile"], "medium-edge");
    assert!(
        v["best"]["band"]
            .as_str()
            .is_some_and(|b| b.contains("extrapolated")),
        "{v}"
    );
    assert_eq!(v["best"]["score"], 100);
    assert_eq!(v["host"]["interfaces"][0]["driver"], "ice");
}

#[test]
fn detect_text_lists_what_does_not_match() {
    let o = dce_edge(&["profile", "detect", "--root", &fixture("cloud-vm")]);
    let out = stdout(&o);
    assert!(
        out.contains("best match: cloud-vm on eth0 (85/100)"),
        "{out}"
    );
    assert!(
        out.contains("?     link speed eth0 reports no speed"),
        "{out}"
    );
}

#[test]
fn detect_refuses_an_unknown_interface() {
    let o = dce_edge(&[
        "profile",
        "detect",
        "--root",
        &fixture("lab"),
        "--iface",
        "eth9",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn tune_check_exits_1_on_a_failing_audit() {
    let o = dce_edge(&[
        "tune",
        "--check",
        "--root",
        &fixture("small-edge-untuned"),
        "--profile",
        "small-edge",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(out.contains("FAIL  rss-queues"), "{out}");
    assert!(
        out.contains("      fix: ethtool -L eth0 combined 3"),
        "{out}"
    );
    assert!(out.contains("6 fail"), "{out}");
}

#[test]
fn tune_check_exits_0_on_a_tuned_box() {
    let o = dce_edge(&["tune", "--check", "--root", &fixture("small-edge")]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("chosen by `dce-edge profile detect`"));
}

#[test]
fn tune_check_json_has_lines_and_summary() {
    let o = dce_edge(&[
        "tune",
        "--check",
        "--json",
        "--root",
        &fixture("cloud-vm"),
        "--profile",
        "cloud-vm",
        "--iface",
        "eth0",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let v = json(&o);
    assert_eq!(v["summary"]["fail"], 0);
    let governor = v["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["check"] == "governor")
        .unwrap();
    assert_eq!(governor["status"], "warn");
}

#[test]
fn tune_needs_check_or_fixes() {
    let o = dce_edge(&["tune", "--root", &fixture("lab")]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn profiles_dir_with_a_bad_file_exits_2_naming_file_and_line() {
    let dir = std::env::temp_dir().join(lab::netns::unique_name("pcli"));
    std::fs::create_dir_all(&dir).unwrap();
    let text = profile::BUILTIN
        .iter()
        .find(|(f, _)| *f == "lab.toml")
        .unwrap()
        .1
        .replace("batch_size = 64", "batch_size = 8192");
    std::fs::write(dir.join("lab.toml"), text).unwrap();
    let o = dce_edge(&["profile", "list", "--profiles-dir", dir.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("lab.toml:"), "{err}");
    assert!(err.contains("batch_size = 8192 is out of range"), "{err}");
}
