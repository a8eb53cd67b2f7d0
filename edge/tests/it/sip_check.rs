//! `dce-edge sip check`: one line per file, JSON keys, exit status 0/1/2.

use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/sip/tests/corpus/sip")
        .join(name)
}

fn check(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dce-edge"))
        .arg("sip")
        .arg("check")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[test]
fn all_valid_files_exit_zero_with_one_line_each() {
    let a = corpus("messages/invite-sdp.valid.sip");
    let b = corpus("messages/ok-200-sdp.valid.sip");
    let (code, out) = check(&[a.as_os_str(), b.as_os_str()]);
    assert_eq!(code, 0);
    let lines: Vec<_> = out.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].ends_with("valid: request INVITE, dialed 14155550123"),
        "{}",
        lines[0]
    );
    assert!(lines[1].ends_with("valid: response 200"), "{}", lines[1]);
}

#[test]
fn an_invalid_file_exits_one_and_names_kind_and_offset() {
    let a = corpus("messages/invite-sdp.valid.sip");
    let b = corpus("rfc4475/ncl.invalid.bad_content_length.sip");
    let (code, out) = check(&[a.as_os_str(), b.as_os_str()]);
    assert_eq!(code, 1);
    assert!(out
        .lines()
        .nth(1)
        .unwrap()
        .contains("invalid: bad_content_length at byte 326"));
}

#[test]
fn json_lines_carry_the_documented_keys() {
    let b = corpus("rfc4475/ncl.invalid.bad_content_length.sip");
    let (code, out) = check(&["--json".as_ref(), b.as_os_str()]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
    let mut expected = [
        "file", "valid", "kind", "method", "status", "dialed", "error", "offset",
    ];
    expected.sort();
    let mut keys = keys;
    keys.sort();
    assert_eq!(keys, expected);
    assert_eq!(v["valid"], false);
    assert_eq!(v["error"], "bad_content_length");
    assert_eq!(v["offset"], 326);
}

#[test]
fn an_unreadable_file_exits_two() {
    let missing = corpus("no-such-file.sip");
    let a = corpus("rfc4475/ncl.invalid.bad_content_length.sip");
    let (code, out) = check(&[a.as_os_str(), missing.as_os_str()]);
    assert_eq!(code, 2);
    assert_eq!(out.lines().count(), 2);
}

#[test]
fn no_files_is_a_usage_error() {
    let (code, _) = check(&[]);
    assert_eq!(code, 2);
}
