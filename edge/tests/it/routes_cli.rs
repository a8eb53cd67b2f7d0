//! `dce-edge routes check` and `routes lookup` on the route crate's example
//! files: counts, file-and-line errors, lookups.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/route/tests/fixtures/routes")
        .join(name)
}

fn dce_edge(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dce-edge"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn routes_check_reports_counts() {
    let (ok, out, err) = dce_edge(&[
        "routes",
        "check",
        fixture("groups.toml").to_str().unwrap(),
        fixture("prefixes.csv").to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    for needle in [
        "routes: ok",
        "groups:     5 (forward 3, redirect 1, reject 1)",
        "targets:    7",
        "prefixes:   7 (default route: yes)",
        "longest:    8 digits",
        "build:",
        "memory:",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
}

#[test]
fn routes_check_fails_with_file_and_line() {
    let bad = fixture("bad-groups.toml");
    let (ok, _, err) = dce_edge(&["routes", "check", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.starts_with("refused: 6 errors\n"), "{err}");
    assert!(
        err.contains("bad-groups.toml:8:8: reject code is 302"),
        "{err}"
    );
}

#[test]
fn routes_lookup_prints_prefix_group_action_and_target() {
    let config = fixture("edge.toml");
    let (ok, out, err) = dce_edge(&[
        "routes",
        "lookup",
        "--config",
        config.to_str().unwrap(),
        "--call-id",
        "a84b4c76e66710@198.18.0.9",
        "+49 151 2345-678",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("number:  491512345678\n"), "{out}");
    assert!(out.contains("prefix:  4915\n"), "{out}");
    assert!(out.contains("group:   de-mobile\n"), "{out}");
    assert!(out.contains("action:  forward\n"), "{out}");
    assert!(
        out.contains("target:  198.18.1.1"),
        "a priority-1 target: {out}"
    );
}

#[test]
fn routes_lookup_without_a_match_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let prefixes = dir.path().join("prefixes.csv");
    std::fs::write(&prefixes, "4930,de-berlin\n").unwrap();
    let (ok, out, err) = dce_edge(&[
        "routes",
        "lookup",
        "--groups",
        fixture("groups.toml").to_str().unwrap(),
        "--prefixes",
        prefixes.to_str().unwrap(),
        "3312345",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("prefix:  none"), "{out}");
}

#[test]
fn routes_lookup_refuses_bad_files() {
    let (ok, out, _) = dce_edge(&[
        "routes",
        "lookup",
        "--groups",
        fixture("groups.toml").to_str().unwrap(),
        "--prefixes",
        fixture("bad-prefixes.csv").to_str().unwrap(),
        "4930",
    ]);
    assert!(!ok, "a refused file is not looked up: {out}");
}

#[test]
fn routes_lookup_shows_an_emergency_number_going_to_the_emergency_group() {
    let dir = tempfile::tempdir().unwrap();
    let groups = dir.path().join("groups.toml");
    std::fs::write(
        &groups,
        "[[group]]\nname = \"uk\"\naction = \"forward\"\ntargets = [{ address = \"198.18.1.1:5060\" }]\n\n\
         [[group]]\nname = \"psap\"\naction = \"forward\"\nemergency = true\ncps_cap = 1\n\
         targets = [{ address = \"198.18.1.9:5060\" }]\n",
    )
    .unwrap();
    let prefixes = dir.path().join("prefixes.csv");
    std::fs::write(&prefixes, "9,uk\n").unwrap();
    let lookup = |number: &str| {
        dce_edge(&[
            "routes",
            "lookup",
            "--groups",
            groups.to_str().unwrap(),
            "--prefixes",
            prefixes.to_str().unwrap(),
            number,
        ])
    };
    let (ok, out, err) = lookup("911");
    assert!(ok, "{err}");
    assert!(out.contains("emergency: yes"), "{out}");
    assert!(
        out.contains("group:   psap (the emergency group)\n"),
        "{out}"
    );
    assert!(out.contains("target:  198.18.1.9:5060"), "{out}");
    // A number that merely starts with 911 is an ordinary call.
    let (ok, out, err) = lookup("9115551234");
    assert!(ok, "{err}");
    assert!(!out.contains("emergency"), "{out}");
    assert!(out.contains("group:   uk\n"), "{out}");
}
