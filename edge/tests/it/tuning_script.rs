//! `tuning/apply.sh`: its dry run prints the commands that bring a fixture
//! host to its profile, prints nothing to change for a tuned one, and it
//! refuses to apply a plan made from another host's files.

use std::path::PathBuf;
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/profile/tests/fixtures/hosts")
        .join(name)
        .display()
        .to_string()
}

fn apply(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(repo().join("tuning/apply.sh"))
        .args(args)
        .args(["--dce-edge", env!("CARGO_BIN_EXE_dce-edge")])
        .output()
        .expect("run tuning/apply.sh")
}

#[test]
fn dry_run_prints_the_commands_for_an_untuned_small_edge() {
    let o = apply(&[
        "--profile",
        "small-edge",
        "--iface",
        "eth0",
        "--root",
        &fixture("small-edge-untuned"),
        "--dry-run",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let expected = "\
# dce-edge tuning for profile small-edge on eth0 (dry run: nothing is changed)
ethtool -L eth0 combined 3
echo 1 > /proc/irq/45/smp_affinity_list
echo 2 > /proc/irq/46/smp_affinity_list
echo 3 > /proc/irq/47/smp_affinity_list
systemctl disable --now irqbalance
ethtool -K eth0 lro off
ip link set dev eth0 mtu 1500
sysctl -w net.core.busy_poll=50
sysctl -w net.core.busy_read=50
echo 2 > /sys/class/net/eth0/napi_defer_hard_irqs
echo 200000 > /sys/class/net/eth0/gro_flush_timeout
echo performance > /sys/devices/system/cpu/cpu1/cpufreq/scaling_governor
echo performance > /sys/devices/system/cpu/cpu2/cpufreq/scaling_governor
echo performance > /sys/devices/system/cpu/cpu3/cpufreq/scaling_governor
# ethtool -L renumbers the queue interrupts: a real run re-reads them afterwards
# steps to take by hand:
# manual (isolation): add `isolcpus=1-3 nohz_full=1-3 rcu_nocbs=1-3 irqaffinity=0` to GRUB_CMDLINE_LINUX in /etc/default/grub, run update-grub and reboot (isolation cannot be applied live)
";
    assert_eq!(out, expected);
}

#[test]
fn dry_run_on_a_tuned_box_has_nothing_to_change() {
    let o = apply(&[
        "--profile",
        "medium-edge",
        "--iface",
        "ens1f0",
        "--root",
        &fixture("medium-edge"),
        "--dry-run",
    ]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("# nothing to change"));
}

#[test]
fn a_plan_from_another_hosts_files_is_never_applied() {
    let o = apply(&[
        "--profile",
        "lab",
        "--iface",
        "pv1",
        "--root",
        &fixture("lab"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("only goes with --dry-run"));
}

#[test]
fn unknown_profile_stops_the_script() {
    let o = apply(&[
        "--profile",
        "huge-edge",
        "--iface",
        "eth0",
        "--root",
        &fixture("lab"),
        "--dry-run",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn apply_script_is_shellcheck_clean() {
    if !lab::privilege::have_program("shellcheck") {
        eprintln!("skipping apply_script_is_shellcheck_clean: shellcheck is missing (apt-get install shellcheck)");
        return;
    }
    let o = Command::new("shellcheck")
        .arg(repo().join("tuning/apply.sh"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}
