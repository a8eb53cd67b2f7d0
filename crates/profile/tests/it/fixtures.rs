//! Detection and the tuning audit against fixture trees shaped like /sys
//! and /proc, one per tier (no real NIC needed). The trees hold only the
//! files `profile::host` reads; `ethtool/IF/*` hold `ethtool -i`,
//! `-l` and `-k` output.

use std::path::PathBuf;

use profile::detect::{self, Met};
use profile::host::{HostFacts, HostRoot, Reading};
use profile::tune::{self, Fix, Status};
use profile::{self, CpuSet};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hosts")
        .join(name)
}

fn host(name: &str) -> HostFacts {
    HostFacts::read(&HostRoot::at(fixture(name)))
}

fn detected(name: &str) -> detect::ProfileMatch {
    let profiles = profile::list().unwrap();
    detect::detect(host(name), &profiles, None)
        .best
        .expect("a match")
}

fn audit(fixture_name: &str, profile_name: &str) -> tune::Audit {
    let p = profile::load(profile_name).unwrap();
    tune::audit(&host(fixture_name), &p, None)
}

fn status(a: &tune::Audit, check: &str) -> Status {
    a.line(check)
        .unwrap_or_else(|| panic!("no {check} line"))
        .status
}

fn commands(a: &tune::Audit, check: &str) -> Vec<String> {
    a.line(check)
        .unwrap()
        .fixes
        .iter()
        .filter_map(|f| match f {
            Fix::Command(c) => Some(c.clone()),
            Fix::Manual(_) => None,
        })
        .collect()
}

// ---- detection: each tier's box is named for its own profile ----

#[test]
fn small_edge_box_is_detected_as_small_edge() {
    let m = detected("small-edge");
    assert_eq!(
        (m.profile.as_str(), m.interface.as_str()),
        ("small-edge", "eth0")
    );
    assert!(m.is_full(), "{m:?}");
}

#[test]
fn medium_edge_box_is_detected_as_medium_edge() {
    let m = detected("medium-edge");
    assert_eq!(
        (m.profile.as_str(), m.interface.as_str()),
        ("medium-edge", "ens1f0")
    );
    assert!(m.is_full(), "{m:?}");
}

#[test]
fn large_edge_box_is_detected_as_large_edge() {
    let m = detected("large-edge");
    assert_eq!(m.profile, "large-edge");
    assert!(m.is_full(), "{m:?}");
}

#[test]
fn cloud_vm_is_detected_as_cloud_vm_with_unknown_speed() {
    let m = detected("cloud-vm");
    assert_eq!(m.profile, "cloud-vm");
    let misses: Vec<&str> = m.misses().map(|c| c.what).collect();
    assert_eq!(misses, ["link speed"], "virtio reports no speed");
    assert_eq!(m.misses().next().unwrap().met, Met::Unknown);
}

#[test]
fn lab_veth_is_detected_as_lab() {
    let m = detected("lab");
    assert_eq!((m.profile.as_str(), m.interface.as_str()), ("lab", "pv1"));
    assert!(m.is_full(), "{m:?}");
}

#[test]
fn untuned_small_box_is_still_a_small_edge() {
    // Tuning does not change what the box is.
    assert_eq!(detected("small-edge-untuned").profile, "small-edge");
}

#[test]
fn small_box_misses_for_the_large_profile_are_named() {
    let large = profile::load("large-edge").unwrap();
    let h = host("small-edge");
    let m = detect::score(&h, h.interface("eth0").unwrap(), &large);
    let misses: Vec<&str> = m.misses().map(|c| c.what).collect();
    assert_eq!(
        misses,
        ["driver", "cores", "link speed"],
        "ixgbe has 63 channels"
    );
    assert!(
        m.criteria[1]
            .detail
            .contains("4 CPUs online; large-edge expects at least 16"),
        "{}",
        m.criteria[1].detail
    );
}

#[test]
fn detection_reads_host_facts() {
    let h = host("large-edge");
    assert_eq!(h.cpus_online.ok().unwrap().len(), 32);
    assert_eq!(h.numa_nodes.ok().unwrap().len(), 2);
    assert_eq!(
        h.isolated.ok().unwrap(),
        &CpuSet::parse_list("2-15").unwrap()
    );
    assert_eq!(h.cpu_clock.ok().unwrap().mhz, 3700);
    let nic = h.interface("enp65s0f0np0").unwrap();
    assert_eq!(nic.driver.ok().map(String::as_str), Some("mlx5_core"));
    assert_eq!(nic.speed_mbps.ok(), Some(&100_000));
    assert_eq!(nic.numa_node, Some(0));
    assert_eq!(nic.queues_in_use(), Some(14));
    assert_eq!(nic.max_queues(), Some(32));
    let irqs = nic.queue_irqs.ok().unwrap();
    assert_eq!(
        irqs.len(),
        16,
        "async vector left out, 16 completion vectors in"
    );
    assert_eq!((irqs[0].queue, irqs[0].irq), (0, 151));
}

#[test]
fn veth_driver_comes_from_ethtool_and_it_has_no_irqs() {
    let h = host("lab");
    assert_eq!(h.interfaces.len(), 1, "loopback is left out");
    let veth = &h.interfaces[0];
    assert_eq!(veth.driver.ok().map(String::as_str), Some("veth"));
    assert!(veth.software);
    assert_eq!(veth.queues_in_use(), Some(1));
    assert_eq!(veth.capability.zero_copy.to_string(), "no");
    assert!(veth.queue_irqs.ok().unwrap().is_empty());
}

#[test]
fn virtio_queue_irqs_are_found_through_the_pci_parent() {
    let h = host("cloud-vm");
    let nic = h.interface("eth0").unwrap();
    assert_eq!(nic.driver.ok().map(String::as_str), Some("virtio_net"));
    let irqs = nic.queue_irqs.ok().unwrap();
    let names: Vec<&str> = irqs.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "virtio2-input.0",
            "virtio2-input.1",
            "virtio2-input.2",
            "virtio2-input.3"
        ]
    );
}

#[test]
fn clock_falls_back_to_cpuinfo_in_a_vm() {
    let clock = host("cloud-vm").cpu_clock.ok().unwrap().clone();
    assert_eq!(clock.mhz, 2900);
    assert!(clock.source.contains("/proc/cpuinfo"), "{}", clock.source);
}

#[test]
fn only_names_one_interface_when_asked() {
    let profiles = profile::list().unwrap();
    let d = detect::detect(host("lab"), &profiles, Some("nosuch"));
    assert!(d.best.is_none());
}

// ---- the audit: well-tuned boxes pass, a badly tuned one fails ----

#[test]
fn tuned_small_edge_passes_every_check() {
    let a = audit("small-edge", "small-edge");
    assert_eq!(a.summary.fail + a.summary.warn, 0, "{}", tune::render(&a));
    assert_eq!(a.interface.as_deref(), Some("eth0"));
}

#[test]
fn tuned_medium_and_large_edges_pass_every_check() {
    for tier in ["medium-edge", "large-edge"] {
        let a = audit(tier, tier);
        assert_eq!(a.summary.fail + a.summary.warn, 0, "{}", tune::render(&a));
    }
}

#[test]
fn cloud_vm_without_cpufreq_warns_with_the_reason() {
    let a = audit("cloud-vm", "cloud-vm");
    assert!(!a.failed(), "{}", tune::render(&a));
    let gov = a.line("governor").unwrap();
    assert_eq!(gov.status, Status::Warn);
    assert!(gov.detail.contains("cannot read"), "{}", gov.detail);
    assert!(gov.detail.contains("scaling_governor"), "{}", gov.detail);
}

#[test]
fn lab_fixture_passes_with_only_the_cpufreq_warning() {
    let a = audit("lab", "lab");
    assert!(!a.failed(), "{}", tune::render(&a));
    let warns: Vec<&str> = a
        .lines
        .iter()
        .filter(|l| l.status == Status::Warn)
        .map(|l| l.check)
        .collect();
    assert_eq!(warns, ["governor"]);
    assert!(a
        .line("irq-affinity")
        .unwrap()
        .detail
        .contains("software device"));
}

#[test]
fn untuned_box_fails_with_the_exact_fixes() {
    let a = audit("small-edge-untuned", "small-edge");
    assert!(a.failed());
    assert_eq!(status(&a, "rss-queues"), Status::Fail);
    assert_eq!(commands(&a, "rss-queues"), ["ethtool -L eth0 combined 3"]);
    assert_eq!(status(&a, "irq-affinity"), Status::Fail);
    assert_eq!(
        commands(&a, "irq-affinity"),
        [
            "echo 1 > /proc/irq/45/smp_affinity_list",
            "echo 2 > /proc/irq/46/smp_affinity_list",
            "echo 3 > /proc/irq/47/smp_affinity_list",
        ]
    );
    assert_eq!(status(&a, "offloads"), Status::Fail);
    assert_eq!(commands(&a, "offloads"), ["ethtool -K eth0 lro off"]);
    assert_eq!(status(&a, "mtu"), Status::Fail);
    assert_eq!(commands(&a, "mtu"), ["ip link set dev eth0 mtu 1500"]);
    assert_eq!(status(&a, "governor"), Status::Fail);
    assert_eq!(
        commands(&a, "governor")[0],
        "echo performance > /sys/devices/system/cpu/cpu1/cpufreq/scaling_governor"
    );
    assert_eq!(status(&a, "isolation"), Status::Fail);
    let isolation = &a.line("isolation").unwrap().fixes;
    assert!(
        matches!(&isolation[0], Fix::Manual(m) if m.contains("isolcpus=1-3 nohz_full=1-3")),
        "{isolation:?}"
    );
}

#[test]
fn untuned_box_warns_on_busy_polling_and_irqbalance() {
    let a = audit("small-edge-untuned", "small-edge");
    assert_eq!(status(&a, "busy-poll"), Status::Warn);
    assert_eq!(
        commands(&a, "busy-poll"),
        [
            "sysctl -w net.core.busy_poll=50",
            "sysctl -w net.core.busy_read=50"
        ]
    );
    assert_eq!(status(&a, "napi-defer"), Status::Warn);
    assert_eq!(status(&a, "irqbalance"), Status::Warn);
    assert!(a.line("irqbalance").unwrap().detail.contains("pid 812"));
}

#[test]
fn gro_matters_only_to_generic_xdp() {
    // The untuned ixgbe has GRO on: harmless to native XDP (it runs after),
    // but the cloud profile's generic XDP runs after GRO.
    let native = audit("small-edge-untuned", "small-edge");
    assert!(!native
        .line("offloads")
        .unwrap()
        .detail
        .contains("rx-gro on"));
    let mut h = host("cloud-vm");
    let nic = h.interfaces.iter_mut().find(|i| i.name == "eth0").unwrap();
    if let Reading::Read(f) = &mut nic.features {
        f.get_mut("rx-gro").unwrap().on = true;
    }
    let a = tune::audit(&h, &profile::load("cloud-vm").unwrap(), Some("eth0"));
    assert_eq!(status(&a, "offloads"), Status::Warn);
    assert_eq!(commands(&a, "offloads"), ["ethtool -K eth0 gro off"]);
}

#[test]
fn fixed_offload_gets_a_manual_fix_not_a_command() {
    let mut h = host("small-edge");
    let nic = h.interfaces.iter_mut().find(|i| i.name == "eth0").unwrap();
    if let Reading::Read(f) = &mut nic.features {
        let gro_hw = f.get_mut("rx-gro-hw").unwrap();
        gro_hw.on = true;
        gro_hw.fixed = true;
    }
    let a = tune::audit(&h, &profile::load("small-edge").unwrap(), Some("eth0"));
    assert_eq!(status(&a, "offloads"), Status::Fail);
    assert!(commands(&a, "offloads").is_empty());
    assert!(matches!(
        &a.line("offloads").unwrap().fixes[0],
        Fix::Manual(_)
    ));
}

#[test]
fn unreadable_features_warn_instead_of_passing() {
    let mut h = host("small-edge");
    h.interfaces[0].features = Reading::unreadable("ethtool -k eth0", "Operation not supported");
    let a = tune::audit(&h, &profile::load("small-edge").unwrap(), None);
    let l = a.line("offloads").unwrap();
    assert_eq!(l.status, Status::Warn);
    assert!(l.detail.contains("Operation not supported"), "{}", l.detail);
}

#[test]
fn workers_off_the_nics_numa_node_warn() {
    let mut h = host("large-edge");
    h.interfaces[0].numa_node = Some(1);
    let a = tune::audit(&h, &profile::load("large-edge").unwrap(), None);
    let l = a.line("numa").unwrap();
    assert_eq!(l.status, Status::Warn);
    assert!(
        l.detail.contains("worker cores 2-15 are not on"),
        "{}",
        l.detail
    );
    assert!(matches!(&l.fixes[0], Fix::Manual(m) if m.contains("16-31")));
}

#[test]
fn isolated_but_ticking_worker_cores_warn() {
    let mut h = host("small-edge");
    h.nohz_full = Reading::Read(CpuSet::new());
    let a = tune::audit(&h, &profile::load("small-edge").unwrap(), None);
    assert_eq!(status(&a, "isolation"), Status::Warn);
}

#[test]
fn profile_bigger_than_the_box_fails_the_cpu_check() {
    let a = audit("small-edge", "large-edge");
    let l = a.line("cpus").unwrap();
    assert_eq!(l.status, Status::Fail);
    assert!(l.detail.contains("CPUs 4-15"), "{}", l.detail);
    assert_eq!(status(&a, "xdp-mode"), Status::Pass);
    assert_eq!(status(&a, "driver"), Status::Warn);
}

#[test]
fn zero_copy_profile_on_an_old_kernel_fails_with_the_release_needed() {
    let mut h = host("cloud-vm");
    h.interfaces[0].capability =
        profile::drivers::capability("igb", Some(profile::drivers::KernelVersion::new(6, 8)));
    let a = tune::audit(&h, &profile::load("small-edge").unwrap(), None);
    let l = a.line("af-xdp").unwrap();
    assert_eq!(l.status, Status::Fail);
    assert!(matches!(&l.fixes[0], Fix::Manual(m) if m.contains("Linux 6.14")));
}

#[test]
fn audit_of_a_missing_interface_fails() {
    let a = tune::audit(
        &host("lab"),
        &profile::load("lab").unwrap(),
        Some("nosuch0"),
    );
    assert!(a.failed());
    assert_eq!(status(&a, "interface"), Status::Fail);
}

#[test]
fn fixes_plan_lists_commands_then_manual_steps_as_comments() {
    let plan = tune::render_fixes(&audit("small-edge-untuned", "small-edge"));
    let lines: Vec<&str> = plan.lines().collect();
    assert_eq!(lines[0], "ethtool -L eth0 combined 3");
    assert!(lines.last().unwrap().starts_with("# manual (isolation):"));
    assert!(tune::render_fixes(&audit("small-edge", "small-edge")).is_empty());
}
