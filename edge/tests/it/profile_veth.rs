//! Detection, the audit and the tuning script on the lab's real veth
//! interfaces, in network namespaces this test makes (needs root).
//!
//! `ip netns exec` remounts /sys for the namespace, so the real binary runs
//! inside it (`Netns::command`) and sees the namespace's interfaces.

use std::path::PathBuf;
use std::process::Output;

use lab::netns::{unique_name, veth_pair, Netns};
use lab::privilege::{feature_or_skip, have_program, privileged_or_skip};

const BIN: &str = env!("CARGO_BIN_EXE_dce-edge");

/// Two namespaces joined by a veth pair; the first end is the one examined.
struct Lab {
    a: Netns,
    _b: Netns,
    iface: String,
}

fn lab(third_octet: u8) -> Lab {
    let a = Netns::create("pfa").unwrap();
    let b = Netns::create("pfb").unwrap();
    let (ia, ib) = (unique_name("pva"), unique_name("pvb"));
    veth_pair(&a, &ia, &b, &ib).unwrap();
    a.addr_up(&ia, &format!("198.18.{third_octet}.1/30"))
        .unwrap();
    b.addr_up(&ib, &format!("198.18.{third_octet}.2/30"))
        .unwrap();
    Lab {
        a,
        _b: b,
        iface: ia,
    }
}

fn run_in(ns: &Netns, program: &str, args: &[&str]) -> Output {
    ns.command(program).args(args).output().unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn audit_line<'a>(audit: &'a serde_json::Value, check: &str) -> &'a serde_json::Value {
    audit["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["check"] == check)
        .unwrap_or_else(|| panic!("no {check} line in {audit}"))
}

#[test]
fn veth_in_a_namespace_is_detected_as_the_lab() {
    if !privileged_or_skip("veth_in_a_namespace_is_detected_as_the_lab") {
        return;
    }
    let lab = lab(210);
    let o = run_in(
        &lab.a,
        BIN,
        &["profile", "detect", "--json", "--iface", &lab.iface],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let d = json(&o);
    let veth = d["host"]["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == lab.iface.as_str())
        .unwrap();
    assert_eq!(veth["driver"], "veth");
    assert_eq!(veth["software"], true);
    assert_eq!(veth["rx_queues"], 1);
    assert_eq!(veth["channels"]["rx"], 1);
    assert_eq!(veth["capability"]["native_xdp"], "yes");
    assert_eq!(
        veth["capability"]["zero_copy"], "no",
        "veth is copy-mode AF_XDP only"
    );
    assert_eq!(veth["speed_mbps"], 10000);
    assert_eq!(d["best"]["profile"], "lab");
    let driver = &d["best"]["criteria"][0];
    assert_eq!(
        (driver["what"].as_str(), driver["met"].as_str()),
        (Some("driver"), Some("yes"))
    );
}

#[test]
fn tune_check_on_a_lab_veth_passes_the_interface_checks() {
    if !privileged_or_skip("tune_check_on_a_lab_veth_passes_the_interface_checks") {
        return;
    }
    let lab = lab(211);
    let o = run_in(
        &lab.a,
        BIN,
        &[
            "tune",
            "--check",
            "--json",
            "--profile",
            "lab",
            "--iface",
            &lab.iface,
        ],
    );
    let audit = json(&o);
    for check in [
        "driver",
        "xdp-mode",
        "af-xdp",
        "rss-queues",
        "irq-affinity",
        "offloads",
        "mtu",
        "napi-defer",
    ] {
        assert_eq!(
            audit_line(&audit, check)["status"],
            "pass",
            "{check}: {audit}"
        );
    }
    assert!(audit_line(&audit, "irq-affinity")["detail"]
        .as_str()
        .unwrap()
        .contains("software device"));
    // Host-wide lines (governor, busy polling) depend on the machine; the
    // exit status must follow the failures whatever they are.
    let failed = audit["summary"]["fail"].as_u64().unwrap() > 0;
    assert_eq!(o.status.code(), Some(if failed { 1 } else { 0 }), "{audit}");
    // The global net.core sysctls are hidden inside a namespace (Linux 6.x):
    // that must be a warning with the reason, never a silent pass.
    let busy = audit_line(&audit, "busy-poll");
    let detail = busy["detail"].as_str().unwrap();
    if detail.starts_with("cannot read") {
        assert_eq!(busy["status"], "warn", "{busy}");
        assert!(detail.contains("network namespaces"), "{busy}");
    } else {
        assert_ne!(busy["status"], "fail", "{busy}");
    }
}

#[test]
fn apply_script_brings_a_mistuned_lab_veth_back_and_is_idempotent() {
    if !privileged_or_skip("apply_script_brings_a_mistuned_lab_veth_back_and_is_idempotent") {
        return;
    }
    if !feature_or_skip(
        "apply_script_brings_a_mistuned_lab_veth_back_and_is_idempotent",
        have_program("ethtool"),
        "ethtool",
        "apt-get install ethtool",
    ) {
        return;
    }
    let lab = lab(212);
    let ns = &lab.a;
    let ifc = lab.iface.as_str();
    ns.ip(&["link", "set", "dev", ifc, "mtu", "9000"]).unwrap();
    ns.run("ethtool", &["-L", ifc, "rx", "2", "tx", "2"])
        .unwrap();

    // Apply only a plan that touches this namespace's veth: host-wide fixes
    // (a governor, a sysctl) must never be applied to the machine by a test.
    let plan = run_in(
        ns,
        BIN,
        &["tune", "--fixes", "--profile", "lab", "--iface", ifc],
    );
    let plan = String::from_utf8_lossy(&plan.stdout).into_owned();
    let commands: Vec<&str> = plan.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(
        commands.contains(&format!("ip link set dev {ifc} mtu 1500").as_str()),
        "{plan}"
    );
    assert!(
        commands.contains(&format!("ethtool -L {ifc} rx 1 tx 1").as_str()),
        "{plan}"
    );
    if let Some(other) = commands.iter().find(|c| !c.contains(ifc)) {
        eprintln!("skipping the apply part: this host's plan also changes the host ({other})");
        return;
    }

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tuning/apply.sh");
    let script = script.to_str().unwrap();
    let args = ["--profile", "lab", "--iface", ifc, "--dce-edge", BIN];
    let first = run_in(ns, "bash", &[&[script][..], &args[..]].concat());
    let first_out = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(
        first_out.contains(&format!("+ ip link set dev {ifc} mtu 1500")),
        "{first_out}"
    );

    let audit = json(&run_in(
        ns,
        BIN,
        &[
            "tune",
            "--check",
            "--json",
            "--profile",
            "lab",
            "--iface",
            ifc,
        ],
    ));
    assert_eq!(audit_line(&audit, "mtu")["status"], "pass", "{audit}");
    assert_eq!(
        audit_line(&audit, "rss-queues")["status"],
        "pass",
        "{audit}"
    );

    let second = run_in(ns, "bash", &[&[script][..], &args[..]].concat());
    let second_out = String::from_utf8_lossy(&second.stdout);
    assert!(second_out.starts_with("nothing to change"), "{second_out}");
}

#[test]
fn snapshot_of_a_namespace_reads_like_the_live_host() {
    if !privileged_or_skip("snapshot_of_a_namespace_reads_like_the_live_host") {
        return;
    }
    if !feature_or_skip(
        "snapshot_of_a_namespace_reads_like_the_live_host",
        have_program("ethtool"),
        "ethtool",
        "apt-get install ethtool",
    ) {
        return;
    }
    let lab = lab(213);
    let dir = std::env::temp_dir().join(unique_name("psnap"));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tuning/snapshot.sh");
    let snap = run_in(
        &lab.a,
        "bash",
        &[script.to_str().unwrap(), "--out", dir.to_str().unwrap()],
    );
    let live = run_in(&lab.a, BIN, &["profile", "detect", "--json"]);
    let copied = run_in(
        &lab.a,
        BIN,
        &[
            "profile",
            "detect",
            "--json",
            "--root",
            dir.to_str().unwrap(),
        ],
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        snap.status.success(),
        "{}",
        String::from_utf8_lossy(&snap.stderr)
    );
    let (mut live, mut copied) = (json(&live), json(&copied));
    // The root differs by design; /proc/cpuinfo's clock is the current one
    // and moves between the two reads.
    for v in [&mut live, &mut copied] {
        v["host"]["root"] = serde_json::Value::Null;
        v["host"]["cpu_clock"]["mhz"] = serde_json::Value::Null;
        for c in v["candidates"].as_array_mut().unwrap() {
            c["criteria"][5] = serde_json::Value::Null;
        }
        v["best"]["criteria"][5] = serde_json::Value::Null;
    }
    assert_eq!(live["host"]["interfaces"], copied["host"]["interfaces"]);
    assert_eq!(live, copied);
}
