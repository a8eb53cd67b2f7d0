//! Auditing a host's tuning against a profile: IRQ affinity, RSS queues,
//! offloads, MTU, busy polling, CPU governor, isolation, NUMA placement.
//!
//! Each check gives one line: pass, warn or fail, what was found, and the
//! fix (an exact command, or a manual step where none can be run live, such
//! as the kernel command line). A check whose input cannot be read is a
//! warning carrying the reason, never a pass. `tuning/apply.sh` runs the
//! commands; the audit itself changes nothing.

use std::fmt::Write as _;

use serde::Serialize;

use super::drivers::Support;
use super::host::{HostFacts, Interface, Reading};
use super::schema::{AfXdpMode, Profile, XdpMode};
use super::CpuSet;

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As the profile wants.
    Pass,
    /// Costs speed or could not be read.
    Warn,
    /// The profile's band cannot be held like this.
    Fail,
}

/// How to fix a line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fix {
    /// A shell command that fixes it on the live host (as root).
    Command(String),
    /// A step a person must take (kernel command line, hardware).
    Manual(String),
}

/// One audit line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckLine {
    /// Short name of the check (`irq-affinity`, `rss-queues`, ...).
    pub check: &'static str,
    /// Verdict.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do, in order; empty on a pass.
    pub fixes: Vec<Fix>,
}

/// Lines per verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Passes.
    pub pass: usize,
    /// Warnings.
    pub warn: usize,
    /// Failures.
    pub fail: usize,
}

/// A full audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Audit {
    /// The profile audited against.
    pub profile: String,
    /// The interface audited, if the host has one.
    pub interface: Option<String>,
    /// Every check, in a fixed order.
    pub lines: Vec<CheckLine>,
    /// Counts per verdict.
    pub summary: Summary,
}

impl Audit {
    /// True when any line failed (the command exits non-zero).
    pub fn failed(&self) -> bool {
        self.summary.fail > 0
    }

    /// The line of a check.
    pub fn line(&self, check: &str) -> Option<&CheckLine> {
        self.lines.iter().find(|l| l.check == check)
    }

    /// The fix commands of every line that is not a pass, in order.
    pub fn commands(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter(|l| l.status != Status::Pass)
            .flat_map(|l| &l.fixes)
            .filter_map(|f| match f {
                Fix::Command(c) => Some(c.as_str()),
                Fix::Manual(_) => None,
            })
            .collect()
    }
}

/// Bytes between the start of a UMEM frame and the packet in it: the XDP
/// headroom (XDP_PACKET_HEADROOM).
pub const XDP_HEADROOM: u32 = 256;
/// Ethernet header plus one VLAN tag.
pub const L2_HEADER: u32 = 18;

fn plural(n: u32, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn line(check: &'static str, status: Status, detail: String, fixes: Vec<Fix>) -> CheckLine {
    CheckLine {
        check,
        status,
        detail,
        fixes,
    }
}

fn pass(check: &'static str, detail: String) -> CheckLine {
    line(check, Status::Pass, detail, Vec::new())
}

fn unreadable(check: &'static str, what: &str, why: Option<&str>) -> CheckLine {
    line(
        check,
        Status::Warn,
        format!("cannot read {what}: {}", why.unwrap_or("unknown reason")),
        Vec::new(),
    )
}

/// Audits `host` against `profile` on interface `iface` (None: the
/// interface that fits the profile best).
pub fn audit(host: &HostFacts, profile: &Profile, iface: Option<&str>) -> Audit {
    let chosen = match iface {
        Some(name) => host.interface(name),
        None => super::detect::best_interface_for(host, profile),
    };
    let mut lines = Vec::new();
    match chosen {
        Some(i) => {
            lines.push(check_driver(profile, i));
            lines.push(check_xdp_mode(profile, i));
            lines.push(check_af_xdp(profile, i));
        }
        None => lines.push(line(
            "interface",
            Status::Fail,
            match iface {
                Some(name) => format!("no Ethernet interface named {name} on this host"),
                None => "no Ethernet interface on this host".to_string(),
            },
            vec![Fix::Manual("name the SIP interface with --iface".into())],
        )),
    }
    lines.push(check_cpus(host, profile));
    if let Some(i) = chosen {
        lines.push(check_rss(profile, i));
        lines.push(check_irq_affinity(profile, i));
        lines.push(check_irqbalance(host, profile, i));
        lines.push(check_offloads(profile, i));
        lines.push(check_mtu(profile, i));
    }
    lines.push(check_busy_poll(host, profile));
    if let Some(i) = chosen {
        lines.push(check_napi_defer(profile, i));
    }
    lines.push(check_governor(host, profile));
    lines.push(check_isolation(host, profile));
    if let Some(i) = chosen {
        lines.push(check_numa(host, profile, i));
    }
    let mut summary = Summary::default();
    for l in &lines {
        match l.status {
            Status::Pass => summary.pass += 1,
            Status::Warn => summary.warn += 1,
            Status::Fail => summary.fail += 1,
        }
    }
    Audit {
        profile: profile.name().to_string(),
        interface: chosen.map(|i| i.name.clone()),
        lines,
        summary,
    }
}

fn check_driver(profile: &Profile, i: &Interface) -> CheckLine {
    let want = &profile.hardware().nic_drivers;
    match i.driver.ok() {
        None => unreadable("driver", &format!("{}'s driver", i.name), i.driver.why()),
        Some(d) if want.contains(d) => pass("driver", format!("{} is {d}", i.name)),
        Some(d) => line(
            "driver",
            Status::Warn,
            format!(
                "{} is {d}; {} is built for {} (run `dce-edge profile detect`)",
                i.name,
                profile.name(),
                want.join(" or ")
            ),
            Vec::new(),
        ),
    }
}

fn check_xdp_mode(profile: &Profile, i: &Interface) -> CheckLine {
    let native = i.capability.native_xdp;
    match profile.hardware().xdp_mode {
        XdpMode::Generic => pass(
            "xdp-mode",
            format!(
                "generic XDP works on any driver (native on {}: {native})",
                i.name
            ),
        ),
        XdpMode::Native if native == Support::Yes => {
            pass("xdp-mode", format!("native XDP on {}: yes", i.name))
        }
        XdpMode::Native => {
            line(
                "xdp-mode",
                Status::Fail,
                format!(
                    "{} wants native XDP; {} ({}): {native}",
                    profile.name(),
                    i.name,
                    i.driver.ok().map_or("driver unknown", |d| d.as_str())
                ),
                vec![Fix::Manual(match native {
                Support::NeedsKernel(v) => format!("upgrade to Linux {v} or later"),
                _ => "use a profile with xdp_mode = \"generic\" (cloud-vm) or a NIC with native XDP"
                    .to_string(),
            })],
            )
        }
    }
}

fn check_af_xdp(profile: &Profile, i: &Interface) -> CheckLine {
    let zc = i.capability.zero_copy;
    match profile.hardware().af_xdp {
        AfXdpMode::Copy => pass(
            "af-xdp",
            format!(
                "copy-mode AF_XDP works on any driver (zero-copy on {}: {zc})",
                i.name
            ),
        ),
        AfXdpMode::ZeroCopy if zc == Support::Yes => {
            pass("af-xdp", format!("zero-copy AF_XDP on {}: yes", i.name))
        }
        AfXdpMode::ZeroCopy => line(
            "af-xdp",
            Status::Fail,
            format!(
                "{} wants zero-copy AF_XDP; {}: {zc}",
                profile.name(),
                i.name
            ),
            vec![Fix::Manual(match zc {
                Support::NeedsKernel(v) => format!("upgrade to Linux {v} or later"),
                _ => "use a profile with af_xdp = \"copy\" or a NIC with zero-copy AF_XDP"
                    .to_string(),
            })],
        ),
    }
}

fn check_cpus(host: &HostFacts, profile: &Profile) -> CheckLine {
    let rt = profile.runtime();
    let Some(online) = host.cpus_online.ok() else {
        return unreadable("cpus", "the online CPUs", host.cpus_online.why());
    };
    let wanted: CpuSet = rt
        .worker_cores
        .iter()
        .copied()
        .chain([rt.control_core])
        .collect();
    let missing: CpuSet = wanted.iter().filter(|c| !online.contains(*c)).collect();
    if missing.is_empty() {
        pass(
            "cpus",
            format!(
                "worker cores {} and control core {} are online (online: {online})",
                rt.worker_cores.iter().copied().collect::<CpuSet>(),
                rt.control_core
            ),
        )
    } else {
        line(
            "cpus",
            Status::Fail,
            format!("CPUs {missing} of {} are not online (online: {online})", profile.name()),
            vec![Fix::Manual(
                "choose the profile that fits this box (`dce-edge profile detect`), or set the worker cores in the appliance configuration".into(),
            )],
        )
    }
}

fn check_rss(profile: &Profile, i: &Interface) -> CheckLine {
    let want = profile.runtime().queues;
    let Some(have) = i.queues_in_use() else {
        return unreadable(
            "rss-queues",
            &format!("{}'s queues", i.name),
            i.channels.why().or(i.rx_queues.why()),
        );
    };
    if have == want {
        return pass(
            "rss-queues",
            format!(
                "{} has {}, one per worker",
                i.name,
                plural(have, "RX queue")
            ),
        );
    }
    let max = i.max_queues().unwrap_or(have);
    let detail = format!(
        "{} has {}; {} runs {want} worker(s), one per queue{}",
        i.name,
        plural(have, "RX queue"),
        profile.name(),
        if have > want {
            " (traffic hashed to a queue without a worker misses the AF_XDP sockets)"
        } else {
            ""
        }
    );
    let fix = if max < want {
        Fix::Manual(format!(
            "{} gives at most {}: use a profile with at most {max} worker(s)",
            i.name,
            plural(max, "queue")
        ))
    } else {
        let args = match i.channels.ok() {
            Some(ch) => ch.set_args(want),
            None => format!("combined {want}"),
        };
        Fix::Command(format!("ethtool -L {} {args}", i.name))
    };
    line("rss-queues", Status::Fail, detail, vec![fix])
}

fn check_irq_affinity(profile: &Profile, i: &Interface) -> CheckLine {
    if i.software {
        return pass(
            "irq-affinity",
            format!(
                "{} is a software device ({}): no queue interrupts to pin",
                i.name,
                i.driver.ok().map_or("virtual", |d| d.as_str())
            ),
        );
    }
    if !profile.tuning().pin_irqs {
        return pass(
            "irq-affinity",
            format!("{} does not pin queue interrupts", profile.name()),
        );
    }
    let irqs = match &i.queue_irqs {
        Reading::Read(irqs) => irqs,
        Reading::Unreadable { unreadable } => {
            return line(
                "irq-affinity",
                Status::Warn,
                format!("cannot read queue interrupts: {unreadable}"),
                Vec::new(),
            )
        }
    };
    if irqs.is_empty() {
        return line(
            "irq-affinity",
            Status::Warn,
            format!(
                "no queue interrupts of {} found in /proc/interrupts (names not recognised?)",
                i.name
            ),
            Vec::new(),
        );
    }
    let cores = &profile.runtime().worker_cores;
    let mut wrong = Vec::new();
    let mut unread = Vec::new();
    let mut fixes = Vec::new();
    let mut checked = 0;
    for q in irqs {
        let Some(&core) = cores.get(q.queue as usize) else {
            continue;
        };
        checked += 1;
        let want: CpuSet = [core].into_iter().collect();
        match q.affinity.ok() {
            Some(have) if *have == want => {}
            Some(have) => {
                wrong.push(format!(
                    "queue {} IRQ {} on {have}, wants {core}",
                    q.queue, q.irq
                ));
                fixes.push(Fix::Command(format!(
                    "echo {core} > /proc/irq/{}/smp_affinity_list",
                    q.irq
                )));
            }
            None => unread.push(format!(
                "IRQ {}: {}",
                q.irq,
                q.affinity.why().unwrap_or_default()
            )),
        }
    }
    if checked == 0 {
        return line(
            "irq-affinity",
            Status::Warn,
            format!(
                "none of {}'s queue interrupts serves a worker queue",
                i.name
            ),
            Vec::new(),
        );
    }
    if !wrong.is_empty() {
        return line("irq-affinity", Status::Fail, wrong.join("; "), fixes);
    }
    if !unread.is_empty() {
        return line(
            "irq-affinity",
            Status::Warn,
            format!("cannot read affinity: {}", unread.join("; ")),
            Vec::new(),
        );
    }
    pass(
        "irq-affinity",
        format!("{checked} queue interrupts each on their worker's core"),
    )
}

fn check_irqbalance(host: &HostFacts, profile: &Profile, i: &Interface) -> CheckLine {
    if !profile.tuning().pin_irqs || i.software {
        return pass("irqbalance", "no pinned interrupts for it to move".into());
    }
    match &host.irqbalance_pid {
        Reading::Read(None) => pass("irqbalance", "not running".into()),
        Reading::Read(Some(pid)) => line(
            "irqbalance",
            Status::Warn,
            format!("irqbalance is running (pid {pid}) and will move the pinned queue interrupts"),
            vec![Fix::Command("systemctl disable --now irqbalance".into())],
        ),
        Reading::Unreadable { unreadable } => {
            unreadable_line("irqbalance", "processes", unreadable)
        }
    }
}

fn unreadable_line(check: &'static str, what: &str, why: &str) -> CheckLine {
    unreadable(check, what, Some(why))
}

/// An offload that hurts XDP in some mode.
struct Offload {
    /// Kernel feature name.
    feature: &'static str,
    /// The `ethtool -K` name that turns it off.
    ethtool: &'static str,
    /// Verdict when on, for native-mode profiles (None: harmless there,
    /// because it acts after native XDP has run).
    native: Option<Status>,
    /// Verdict when on, for generic-mode profiles.
    generic: Option<Status>,
    /// Why.
    why: &'static str,
}

/// Generic XDP runs after GRO, on socket buffers; native XDP runs before
/// it, on the driver's buffers. So NIC-side merging (LRO, hardware GRO)
/// matters in both modes, and the stack's GRO only in generic mode.
const OFFLOADS: &[Offload] = &[
    Offload {
        feature: "rx-lro",
        ethtool: "lro",
        native: Some(Status::Fail),
        generic: Some(Status::Warn),
        why: "LRO merges segments in the NIC before XDP sees them; drivers refuse native XDP with it or turn it off on attach",
    },
    Offload {
        feature: "rx-gro-hw",
        ethtool: "rx-gro-hw",
        native: Some(Status::Fail),
        generic: Some(Status::Warn),
        why: "hardware GRO merges in the NIC before XDP sees it; drivers refuse native XDP with it",
    },
    Offload {
        feature: "rx-gro-list",
        ethtool: "rx-gro-list",
        native: None,
        generic: Some(Status::Fail),
        why: "GRO fraglist merges UDP datagrams, SIP included, before generic XDP sees them",
    },
    Offload {
        feature: "rx-udp-gro-forwarding",
        ethtool: "rx-udp-gro-forwarding",
        native: None,
        generic: Some(Status::Fail),
        why: "UDP GRO forwarding merges UDP datagrams, SIP included, before generic XDP sees them",
    },
    Offload {
        feature: "rx-gro",
        ethtool: "gro",
        native: None,
        generic: Some(Status::Warn),
        why: "GRO merges TCP segments that generic XDP then has to linearise",
    },
];

fn check_offloads(profile: &Profile, i: &Interface) -> CheckLine {
    let features = match &i.features {
        Reading::Read(f) => f,
        Reading::Unreadable { unreadable } => {
            return unreadable_line("offloads", "offload features", unreadable)
        }
    };
    let mode = profile.hardware().xdp_mode;
    let mut status = Status::Pass;
    let mut found = Vec::new();
    let mut off = Vec::new();
    let mut fixed = Vec::new();
    let mut checked = Vec::new();
    for o in OFFLOADS {
        let severity = match mode {
            XdpMode::Native => o.native,
            XdpMode::Generic => o.generic,
        };
        let Some(severity) = severity else {
            continue;
        };
        checked.push(o.feature);
        let Some(f) = features.get(o.feature) else {
            continue;
        };
        if !f.on {
            continue;
        }
        status = status.max(severity);
        found.push(format!("{} on: {}", o.feature, o.why));
        if f.fixed {
            fixed.push(o.feature);
        } else {
            off.push(format!("{} off", o.ethtool));
        }
    }
    if found.is_empty() {
        return pass(
            "offloads",
            format!(
                "{} off (as {} XDP wants)",
                checked.join(", "),
                mode_name(mode)
            ),
        );
    }
    let mut fixes = Vec::new();
    if !off.is_empty() {
        fixes.push(Fix::Command(format!(
            "ethtool -K {} {}",
            i.name,
            off.join(" ")
        )));
    }
    if !fixed.is_empty() {
        fixes.push(Fix::Manual(format!(
            "{} fixed on by the driver: ethtool cannot change it here (on virtio_net the hypervisor's guest offloads decide)",
            fixed.join(", ")
        )));
    }
    line("offloads", status, found.join("; "), fixes)
}

fn mode_name(mode: XdpMode) -> &'static str {
    match mode {
        XdpMode::Native => "native",
        XdpMode::Generic => "generic",
    }
}

fn check_mtu(profile: &Profile, i: &Interface) -> CheckLine {
    let frame = profile.runtime().frame_size;
    let Some(&mtu) = i.mtu.ok() else {
        return unreadable("mtu", &format!("{}'s MTU", i.name), i.mtu.why());
    };
    let max = frame - XDP_HEADROOM - L2_HEADER;
    if mtu <= max {
        pass(
            "mtu",
            format!("MTU {mtu} fits a {frame}-byte UMEM frame (at most {max})"),
        )
    } else {
        line(
            "mtu",
            Status::Fail,
            format!(
                "MTU {mtu} does not fit a {frame}-byte UMEM frame with {XDP_HEADROOM} bytes of XDP headroom and {L2_HEADER} of Ethernet and VLAN header (at most {max})"
            ),
            vec![Fix::Command(format!(
                "ip link set dev {} mtu {}",
                i.name,
                max.min(1500)
            ))],
        )
    }
}

fn check_busy_poll(host: &HostFacts, profile: &Profile) -> CheckLine {
    let t = profile.tuning();
    let wants = [
        ("net.core.busy_poll", &host.busy_poll_us, t.busy_poll_us),
        ("net.core.busy_read", &host.busy_read_us, t.busy_read_us),
    ];
    let mut found = Vec::new();
    let mut fixes = Vec::new();
    for (key, have, want) in wants {
        match have.ok() {
            None => {
                return line(
                    "busy-poll",
                    Status::Warn,
                    format!(
                        "cannot read {key}: {} (the global net.core sysctls are hidden inside network namespaces, and absent from kernels without CONFIG_NET_RX_BUSY_POLL)",
                        have.why().unwrap_or_default()
                    ),
                    Vec::new(),
                );
            }
            Some(&v) if v == want => found.push(format!("{key} = {v}")),
            Some(&v) => {
                found.push(format!("{key} = {v}, wants {want}"));
                fixes.push(Fix::Command(format!("sysctl -w {key}={want}")));
            }
        }
    }
    let status = if fixes.is_empty() {
        Status::Pass
    } else {
        Status::Warn
    };
    line("busy-poll", status, found.join(", "), fixes)
}

fn check_napi_defer(profile: &Profile, i: &Interface) -> CheckLine {
    let t = profile.tuning();
    let sys = format!("/sys/class/net/{}", i.name);
    let mut found = Vec::new();
    let mut fixes = Vec::new();
    match i.napi_defer_hard_irqs.ok() {
        None => {
            return unreadable(
                "napi-defer",
                "napi_defer_hard_irqs",
                i.napi_defer_hard_irqs.why(),
            )
        }
        Some(&v) if v == t.napi_defer_hard_irqs => {
            found.push(format!("napi_defer_hard_irqs = {v}"))
        }
        Some(&v) => {
            found.push(format!(
                "napi_defer_hard_irqs = {v}, wants {}",
                t.napi_defer_hard_irqs
            ));
            fixes.push(Fix::Command(format!(
                "echo {} > {sys}/napi_defer_hard_irqs",
                t.napi_defer_hard_irqs
            )));
        }
    }
    match i.gro_flush_timeout_ns.ok() {
        None => {
            return unreadable(
                "napi-defer",
                "gro_flush_timeout",
                i.gro_flush_timeout_ns.why(),
            )
        }
        Some(&v) if v == t.gro_flush_timeout_ns => found.push(format!("gro_flush_timeout = {v}")),
        Some(&v) => {
            found.push(format!(
                "gro_flush_timeout = {v}, wants {}",
                t.gro_flush_timeout_ns
            ));
            fixes.push(Fix::Command(format!(
                "echo {} > {sys}/gro_flush_timeout",
                t.gro_flush_timeout_ns
            )));
        }
    }
    let status = if fixes.is_empty() {
        Status::Pass
    } else {
        Status::Warn
    };
    line("napi-defer", status, found.join(", "), fixes)
}

fn check_governor(host: &HostFacts, profile: &Profile) -> CheckLine {
    let Some(want) = &profile.tuning().governor else {
        return pass("governor", format!("{} sets no governor", profile.name()));
    };
    let mut wrong = Vec::new();
    let mut fixes = Vec::new();
    let mut unread = CpuSet::new();
    let mut first_reason = None;
    for &core in &profile.runtime().worker_cores {
        let path = format!("/sys/devices/system/cpu/cpu{core}/cpufreq/scaling_governor");
        let reading = host.governors.get(&core);
        match reading.and_then(|g| g.ok()) {
            Some(g) if g == want => {}
            Some(g) => {
                wrong.push(format!("cpu{core} runs {g}"));
                fixes.push(Fix::Command(format!("echo {want} > {path}")));
            }
            None => {
                unread.insert(core);
                first_reason.get_or_insert_with(|| {
                    reading
                        .and_then(|g| g.why())
                        .map_or(format!("cpu{core} is not online"), str::to_string)
                });
            }
        }
    }
    if !wrong.is_empty() {
        return line(
            "governor",
            Status::Fail,
            format!(
                "{}; {} wants {want} (clock changes add latency jitter)",
                wrong.join(", "),
                profile.name()
            ),
            fixes,
        );
    }
    if let Some(reason) = first_reason {
        return line(
            "governor",
            Status::Warn,
            format!(
                "cannot read the frequency governor of CPUs {unread} (no cpufreq, as in most VMs): {reason}"
            ),
            Vec::new(),
        );
    }
    pass("governor", format!("worker cores run {want}"))
}

fn check_isolation(host: &HostFacts, profile: &Profile) -> CheckLine {
    let rt = profile.runtime();
    if !profile.tuning().isolate_workers {
        return pass(
            "isolation",
            format!("{} does not isolate its worker cores", profile.name()),
        );
    }
    let workers: CpuSet = rt.worker_cores.iter().copied().collect();
    let cmdline = Fix::Manual(format!(
        "add `isolcpus={workers} nohz_full={workers} rcu_nocbs={workers} irqaffinity={}` to GRUB_CMDLINE_LINUX in /etc/default/grub, run update-grub and reboot (isolation cannot be applied live)",
        rt.control_core
    ));
    let Some(isolated) = host.isolated.ok() else {
        return line(
            "isolation",
            Status::Warn,
            format!(
                "cannot read isolated CPUs: {}",
                host.isolated.why().unwrap_or_default()
            ),
            vec![cmdline],
        );
    };
    if !workers.is_subset(isolated) {
        let shown = if isolated.is_empty() {
            "none".to_string()
        } else {
            isolated.to_string()
        };
        return line(
            "isolation",
            Status::Fail,
            format!("worker cores {workers} are not all isolated from the scheduler (isolated: {shown})"),
            vec![cmdline],
        );
    }
    match host.nohz_full.ok() {
        Some(nohz) if workers.is_subset(nohz) => pass(
            "isolation",
            format!("worker cores {workers} are isolated and tickless (nohz_full)"),
        ),
        Some(_) => line(
            "isolation",
            Status::Warn,
            format!("worker cores {workers} are isolated but still take the scheduler tick (not in nohz_full)"),
            vec![cmdline],
        ),
        None => line(
            "isolation",
            Status::Warn,
            format!(
                "worker cores {workers} are isolated; cannot read nohz_full (kernel without NO_HZ_FULL?): {}",
                host.nohz_full.why().unwrap_or_default()
            ),
            Vec::new(),
        ),
    }
}

fn check_numa(host: &HostFacts, profile: &Profile, i: &Interface) -> CheckLine {
    let nodes = host.numa_nodes.ok().map_or(0, |n| n.len());
    if nodes <= 1 {
        return pass("numa", "one NUMA node".into());
    }
    let Some(node) = i.numa_node else {
        return line(
            "numa",
            Status::Warn,
            format!(
                "{nodes} NUMA nodes, and the kernel reports none for {}",
                i.name
            ),
            Vec::new(),
        );
    };
    let far: CpuSet = profile
        .runtime()
        .worker_cores
        .iter()
        .copied()
        .filter(|&c| host.node_of_cpu(c) != Some(node))
        .collect();
    if far.is_empty() {
        return pass(
            "numa",
            format!("worker cores are on {}'s NUMA node {node}", i.name),
        );
    }
    let local = host
        .numa_nodes
        .ok()
        .and_then(|n| n.iter().find(|n| n.id == node))
        .map_or(String::new(), |n| n.cpus.to_string());
    line(
        "numa",
        Status::Warn,
        format!(
            "worker cores {far} are not on {}'s NUMA node {node}: every packet crosses the interconnect",
            i.name
        ),
        vec![Fix::Manual(format!(
            "set the worker cores to CPUs of node {node} ({local}) in the appliance configuration or a copy of the profile"
        ))],
    )
}

/// The human-readable report of an audit.
pub fn render(a: &Audit) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "tune --check: profile {}, interface {}",
        a.profile,
        a.interface.as_deref().unwrap_or("none")
    );
    for l in &a.lines {
        let tag = match l.status {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        let _ = writeln!(out, "{tag}  {:<13} {}", l.check, l.detail);
        if l.status != Status::Pass {
            for f in &l.fixes {
                match f {
                    Fix::Command(c) => {
                        let _ = writeln!(out, "      fix: {c}");
                    }
                    Fix::Manual(m) => {
                        let _ = writeln!(out, "      fix (by hand): {m}");
                    }
                }
            }
        }
    }
    let s = a.summary;
    let _ = writeln!(out, "{} pass, {} warn, {} fail", s.pass, s.warn, s.fail);
    out
}

/// The fixes as a plan `tuning/apply.sh` runs: one shell command per line,
/// manual steps as `# manual:` comments.
pub fn render_fixes(a: &Audit) -> String {
    let mut out = String::new();
    for l in a.lines.iter().filter(|l| l.status != Status::Pass) {
        for f in &l.fixes {
            match f {
                Fix::Command(c) => {
                    let _ = writeln!(out, "{c}");
                }
                Fix::Manual(m) => {
                    let _ = writeln!(out, "# manual ({}): {m}", l.check);
                }
            }
        }
    }
    out
}
