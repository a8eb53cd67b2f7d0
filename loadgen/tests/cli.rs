//! The `dce-loadgen` command: the self-test passes, and bad requests are
//! refused with the reason.

use std::process::Command;

fn loadgen(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dce-loadgen"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn selftest_completes_every_call() {
    let (code, out, err) = loadgen(&["selftest", "--cps", "200", "--duration", "1"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("selftest: PASS"), "{out}");
    assert!(
        out.contains("sum of buckets          200 = 200 started"),
        "{out}"
    );
}

#[test]
fn flood_outside_the_lab_is_refused_with_the_reason() {
    let (code, _, err) = loadgen(&[
        "attack",
        "flood",
        "--iface",
        "lo",
        "--target",
        "192.0.2.1:5060",
        "--count",
        "1",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("198.18.0.0/15"), "{err}");
}

#[test]
fn a_zero_rate_is_refused() {
    let (code, _, err) = loadgen(&["uac", "--target", "127.0.0.1:9", "--cps", "0", "--quiet"]);
    assert_eq!(code, 1);
    assert!(err.contains("calls per second must be above 0"), "{err}");
}

#[test]
fn a_bad_number_pattern_is_refused_with_the_reason() {
    let (code, _, err) = loadgen(&[
        "uac",
        "--target",
        "127.0.0.1:9",
        "--numbers",
        "44{9-1}",
        "--quiet",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("above its end"), "{err}");
}

#[test]
fn capacity_with_a_flood_needs_a_profile_and_an_interface() {
    // The flood is checked against a profile's flood fields and sent as
    // raw frames on a lab interface: neither may be left to a guess.
    let (code, _, err) = loadgen(&[
        "capacity",
        "--target",
        "127.0.0.1:9",
        "--with-flood",
        "1000",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--profile") && err.contains("--flood-iface"),
        "{err}"
    );
}

#[test]
fn capacity_with_a_flood_outside_the_lab_is_refused_before_any_step() {
    let (code, out, err) = loadgen(&[
        "capacity",
        "--target",
        "192.0.2.1:5060",
        "--profile",
        "lab",
        "--with-flood",
        "1000",
        "--flood-iface",
        "lo",
        "--quiet",
    ]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("198.18.0.0/15"), "{err}");
    assert!(!out.contains("highest rate"), "{out}");
}

#[test]
fn tls_callers_without_a_ca_to_trust_are_refused() {
    let (code, _, err) = loadgen(&[
        "uac",
        "--target",
        "127.0.0.1:9",
        "--transport",
        "tls",
        "--quiet",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("--tls-ca"), "{err}");
}

#[test]
fn a_local_address_for_tcp_callers_is_refused_with_the_reason() {
    let (code, _, err) = loadgen(&[
        "uac",
        "--target",
        "127.0.0.1:9",
        "--transport",
        "tcp",
        "--local-addr",
        "127.0.0.2",
        "--quiet",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("--local-addr is for UDP"), "{err}");
}

#[test]
fn tcp_callers_against_a_closed_port_report_every_call_as_refused() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = format!("127.0.0.1:{port}");
    let (code, out, err) = loadgen(&[
        "uac",
        "--target",
        &target,
        "--transport",
        "tcp",
        "--cps",
        "100",
        "--duration",
        "0.2",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("over tcp"), "{out}");
    assert!(out.contains("connection refused      20"), "{out}");
    assert!(
        out.contains("sum of buckets          20 = 20 started"),
        "{out}"
    );
}
