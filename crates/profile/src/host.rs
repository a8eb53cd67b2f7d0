//! Reading a host: CPUs, NUMA nodes, isolation, clocks, governors, busy
//! polling, and each interface's driver, speed, queues, offloads and queue
//! interrupts; from the live system or from a fixture tree shaped like it.
//!
//! Everything is read once into [`HostFacts`]; detection and the tuning audit
//! are pure functions of it. A value that cannot be read is kept as
//! [`Reading::Unreadable`] with the path and the reason, so a report can
//! say why instead of guessing.
//!
//! Files read, relative to the root (`/` on a live host):
//! - `proc/sys/kernel/osrelease`, `proc/cpuinfo` (clock fallback),
//!   `proc/interrupts`, `proc/irq/N/smp_affinity_list`,
//!   `proc/sys/net/core/{busy_poll,busy_read}`, `proc/PID/comm` (irqbalance)
//! - `sys/devices/system/cpu/{online,isolated,nohz_full}`,
//!   `sys/devices/system/cpu/cpuN/cpufreq/{cpuinfo_max_freq,scaling_governor}`,
//!   `sys/devices/system/node/nodeN/cpulist`
//! - `sys/class/net/IF/{type,mtu,speed,napi_defer_hard_irqs,gro_flush_timeout}`,
//!   `sys/class/net/IF/queues/{rx-N,tx-N}`, `sys/class/net/IF/device/{uevent,numa_node,msi_irqs/N}`
//! - in a fixture tree only: `ethtool/IF/{info,channels,features}`, the
//!   output of `ethtool -i`, `ethtool -l` and `ethtool -k` (the live host
//!   answers these through the ethtool ioctl instead).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::cpus::CpuSet;
use super::drivers::{self, Capability, KernelVersion};
use super::ethtool::{self, Channels, Features};

/// A value read from the host, or why it could not be.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Reading<T> {
    /// The value.
    Read(T),
    /// The file or request that failed, and why.
    Unreadable {
        /// `path: reason`.
        unreadable: String,
    },
}

impl<T> Reading<T> {
    /// An unreadable value with its reason.
    pub fn unreadable(what: impl std::fmt::Display, reason: impl std::fmt::Display) -> Self {
        Reading::Unreadable {
            unreadable: format!("{what}: {reason}"),
        }
    }

    /// The value, if read.
    pub fn ok(&self) -> Option<&T> {
        match self {
            Reading::Read(v) => Some(v),
            Reading::Unreadable { .. } => None,
        }
    }

    /// Why it could not be read, if it could not.
    pub fn why(&self) -> Option<&str> {
        match self {
            Reading::Read(_) => None,
            Reading::Unreadable { unreadable } => Some(unreadable),
        }
    }

    /// Converts a read value; a conversion error makes it unreadable with
    /// `what` named.
    pub fn and_then<U>(self, what: &str, f: impl FnOnce(T) -> Result<U, String>) -> Reading<U> {
        match self {
            Reading::Read(v) => match f(v) {
                Ok(u) => Reading::Read(u),
                Err(e) => Reading::unreadable(what, e),
            },
            Reading::Unreadable { unreadable } => Reading::Unreadable { unreadable },
        }
    }
}

/// Where a host is read from: the live system (`/`, ethtool through the
/// ioctl) or a fixture tree (ethtool output from files).
#[derive(Debug, Clone)]
pub struct HostRoot {
    root: PathBuf,
    live: bool,
}

impl HostRoot {
    /// The running system.
    pub fn live() -> Self {
        HostRoot {
            root: PathBuf::from("/"),
            live: true,
        }
    }

    /// `dir` as the root: the live system when it is `/`, otherwise a
    /// fixture tree (or a copy of another host's files).
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        let root: PathBuf = dir.into();
        if root == Path::new("/") {
            return HostRoot::live();
        }
        HostRoot { root, live: false }
    }

    /// True for the running system.
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    fn read(&self, abs: &str) -> Reading<String> {
        match std::fs::read_to_string(self.path(abs)) {
            Ok(text) => Reading::Read(text),
            Err(e) => Reading::unreadable(abs, e),
        }
    }

    fn read_trim(&self, abs: &str) -> Reading<String> {
        self.read(abs).and_then(abs, |s| Ok(s.trim().to_string()))
    }

    fn read_num<T: std::str::FromStr>(&self, abs: &str) -> Reading<T> {
        self.read_trim(abs).and_then(abs, |s| {
            s.parse().map_err(|_| format!("not a number: {s:?}"))
        })
    }

    fn read_cpus(&self, abs: &str) -> Reading<CpuSet> {
        self.read(abs).and_then(abs, |s| CpuSet::parse_list(&s))
    }

    fn list_dir(&self, abs: &str) -> Reading<Vec<String>> {
        match std::fs::read_dir(self.path(abs)) {
            Ok(entries) => {
                let mut names: Vec<String> = entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect();
                names.sort();
                Reading::Read(names)
            }
            Err(e) => Reading::unreadable(abs, e),
        }
    }

    fn exists(&self, abs: &str) -> bool {
        self.path(abs).exists()
    }
}

/// A NUMA node and its CPUs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NumaNode {
    /// Node number.
    pub id: u32,
    /// Its CPUs.
    pub cpus: CpuSet,
}

/// A CPU clock and where it was read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Clock {
    /// MHz.
    pub mhz: u32,
    /// `cpuinfo_max_freq` (the maximum) or `/proc/cpuinfo` (the current
    /// clock, where cpufreq is missing, as in most VMs).
    pub source: String,
}

/// One interrupt of an interface's queue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueIrq {
    /// IRQ number.
    pub irq: u32,
    /// Its name in /proc/interrupts.
    pub name: String,
    /// The queue it serves (the number in its name).
    pub queue: u32,
    /// CPUs it may run on.
    pub affinity: Reading<CpuSet>,
}

/// One network interface.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Driver name.
    pub driver: Reading<String>,
    /// A software device (veth, tun, bonding): no hardware queues or queue
    /// interrupts.
    pub software: bool,
    /// Link speed in Mb/s (unreadable while the link is down, and on NICs
    /// that do not report one).
    pub speed_mbps: Reading<u32>,
    /// MTU in bytes.
    pub mtu: Reading<u32>,
    /// The NUMA node of its device, where the kernel knows one.
    pub numa_node: Option<u32>,
    /// RX queues the kernel has (`queues/rx-N`).
    pub rx_queues: Reading<u32>,
    /// TX queues the kernel has (`queues/tx-N`).
    pub tx_queues: Reading<u32>,
    /// Channel counts (`ethtool -l`).
    pub channels: Reading<Channels>,
    /// Offload features (`ethtool -k`).
    pub features: Reading<Features>,
    /// `napi_defer_hard_irqs`.
    pub napi_defer_hard_irqs: Reading<u32>,
    /// `gro_flush_timeout`, nanoseconds.
    pub gro_flush_timeout_ns: Reading<u64>,
    /// Queue interrupts, by queue (empty for software devices).
    pub queue_irqs: Reading<Vec<QueueIrq>>,
    /// Native XDP and zero-copy AF_XDP for this driver on this kernel.
    pub capability: Capability,
}

impl Interface {
    /// Receive queues in use: from the channels where readable, else from
    /// the kernel's queue folders.
    pub fn queues_in_use(&self) -> Option<u32> {
        match (self.channels.ok(), self.rx_queues.ok()) {
            (Some(ch), _) if ch.rx_queues() > 0 => Some(ch.rx_queues()),
            (_, Some(&n)) => Some(n),
            _ => None,
        }
    }

    /// Most receive queues the NIC can give, where known.
    pub fn max_queues(&self) -> Option<u32> {
        match self.channels.ok() {
            Some(ch) if ch.max_rx_queues() > 0 => Some(ch.max_rx_queues()),
            _ => self.queues_in_use(),
        }
    }
}

/// Everything detection and the audit need to know about a host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostFacts {
    /// The root it was read from.
    pub root: PathBuf,
    /// Kernel release.
    pub kernel: Reading<String>,
    /// Online CPUs.
    pub cpus_online: Reading<CpuSet>,
    /// CPUs isolated from the scheduler (isolcpus).
    pub isolated: Reading<CpuSet>,
    /// CPUs without the scheduler tick (nohz_full); unreadable on kernels
    /// built without it.
    pub nohz_full: Reading<CpuSet>,
    /// NUMA nodes.
    pub numa_nodes: Reading<Vec<NumaNode>>,
    /// The first online CPU's clock.
    pub cpu_clock: Reading<Clock>,
    /// Frequency governor by online CPU.
    pub governors: BTreeMap<u32, Reading<String>>,
    /// net.core.busy_poll, microseconds.
    pub busy_poll_us: Reading<u32>,
    /// net.core.busy_read, microseconds.
    pub busy_read_us: Reading<u32>,
    /// The pid of a running irqbalance, if any.
    pub irqbalance_pid: Reading<Option<u32>>,
    /// Ethernet interfaces (loopback and other link types left out).
    pub interfaces: Vec<Interface>,
}

/// ARPHRD_ETHER: the `type` of Ethernet interfaces (veth included).
const ARPHRD_ETHER: u32 = 1;

/// Most processes scanned for irqbalance; bounds the walk of /proc.
const MAX_PIDS_SCANNED: usize = 1 << 20;

impl HostFacts {
    /// Reads the host under `root`.
    pub fn read(root: &HostRoot) -> HostFacts {
        let kernel = root.read_trim("/proc/sys/kernel/osrelease");
        let kernel_version = kernel.ok().and_then(|k| KernelVersion::parse(k));
        let cpus_online = root.read_cpus("/sys/devices/system/cpu/online");
        let first_cpu = cpus_online.ok().and_then(|c| c.iter().next()).unwrap_or(0);
        let governors = cpus_online
            .ok()
            .map(|cpus| {
                cpus.iter()
                    .map(|cpu| {
                        let path =
                            format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor");
                        (cpu, root.read_trim(&path))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let interfaces = read_interfaces(root, kernel_version);
        HostFacts {
            root: root.root().to_path_buf(),
            kernel,
            isolated: root.read_cpus("/sys/devices/system/cpu/isolated"),
            nohz_full: root.read_cpus("/sys/devices/system/cpu/nohz_full"),
            numa_nodes: read_numa(root),
            cpu_clock: read_clock(root, first_cpu),
            governors,
            busy_poll_us: root.read_num("/proc/sys/net/core/busy_poll"),
            busy_read_us: root.read_num("/proc/sys/net/core/busy_read"),
            irqbalance_pid: find_process(root, "irqbalance"),
            cpus_online,
            interfaces,
        }
    }

    /// The running kernel's release, where readable.
    pub fn kernel_version(&self) -> Option<KernelVersion> {
        self.kernel.ok().and_then(|k| KernelVersion::parse(k))
    }

    /// The interface called `name`.
    pub fn interface(&self, name: &str) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.name == name)
    }

    /// The NUMA node holding `cpu`, where known.
    pub fn node_of_cpu(&self, cpu: u32) -> Option<u32> {
        self.numa_nodes
            .ok()?
            .iter()
            .find(|n| n.cpus.contains(cpu))
            .map(|n| n.id)
    }
}

fn read_numa(root: &HostRoot) -> Reading<Vec<NumaNode>> {
    let dir = "/sys/devices/system/node";
    let names = match root.list_dir(dir) {
        Reading::Read(names) => names,
        Reading::Unreadable { unreadable } => return Reading::Unreadable { unreadable },
    };
    let mut nodes = Vec::new();
    for name in names {
        let Some(id) = name.strip_prefix("node").and_then(|n| n.parse().ok()) else {
            continue;
        };
        let path = format!("{dir}/{name}/cpulist");
        match root.read_cpus(&path) {
            Reading::Read(cpus) => nodes.push(NumaNode { id, cpus }),
            Reading::Unreadable { unreadable } => return Reading::Unreadable { unreadable },
        }
    }
    nodes.sort_by_key(|n| n.id);
    Reading::Read(nodes)
}

fn read_clock(root: &HostRoot, cpu: u32) -> Reading<Clock> {
    let max = format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/cpuinfo_max_freq");
    let max_why = match root.read_num::<u64>(&max) {
        Reading::Read(khz) => {
            return Reading::Read(Clock {
                mhz: (khz / 1000) as u32,
                source: "cpuinfo_max_freq".into(),
            })
        }
        Reading::Unreadable { unreadable } => unreadable,
    };
    let cpuinfo = root.read("/proc/cpuinfo");
    let mhz = cpuinfo.ok().and_then(|text| {
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim() == "cpu MHz")
            .and_then(|(_, v)| v.trim().parse::<f64>().ok())
    });
    match mhz {
        Some(mhz) => Reading::Read(Clock {
            mhz: mhz.round() as u32,
            source: "/proc/cpuinfo (current clock; no cpufreq)".into(),
        }),
        None => Reading::unreadable(max_why, "and /proc/cpuinfo has no \"cpu MHz\""),
    }
}

fn find_process(root: &HostRoot, comm: &str) -> Reading<Option<u32>> {
    let names = match root.list_dir("/proc") {
        Reading::Read(names) => names,
        Reading::Unreadable { unreadable } => return Reading::Unreadable { unreadable },
    };
    for name in names.iter().take(MAX_PIDS_SCANNED) {
        let Ok(pid) = name.parse::<u32>() else {
            continue;
        };
        // A process may end between the listing and the read: skip it.
        if let Reading::Read(c) = root.read(&format!("/proc/{pid}/comm")) {
            if c.trim() == comm {
                return Reading::Read(Some(pid));
            }
        }
    }
    Reading::Read(None)
}

fn read_interfaces(root: &HostRoot, kernel: Option<KernelVersion>) -> Vec<Interface> {
    let Reading::Read(names) = root.list_dir("/sys/class/net") else {
        return Vec::new();
    };
    let interrupts = read_interrupts(root);
    names
        .into_iter()
        .filter(|name| name != "lo" && root.path(&format!("/sys/class/net/{name}")).is_dir())
        .filter(|name| {
            root.read_num::<u32>(&format!("/sys/class/net/{name}/type"))
                .ok()
                .is_none_or(|&t| t == ARPHRD_ETHER)
        })
        .map(|name| read_interface(root, &name, kernel, &interrupts))
        .collect()
}

fn count_prefixed(root: &HostRoot, dir: &str, prefix: &str) -> Reading<u32> {
    root.list_dir(dir).and_then(dir, |names| {
        Ok(names.iter().filter(|n| n.starts_with(prefix)).count() as u32)
    })
}

fn read_interface(
    root: &HostRoot,
    name: &str,
    kernel: Option<KernelVersion>,
    interrupts: &Reading<Vec<(u32, String)>>,
) -> Interface {
    let sys = format!("/sys/class/net/{name}");
    let has_device = root.exists(&format!("{sys}/device"));
    let driver = read_driver(root, name, has_device);
    let software = !has_device
        || driver
            .ok()
            .and_then(|d| drivers::lookup(d))
            .is_some_and(|d| d.software);
    let capability = match driver.ok() {
        Some(d) => drivers::capability(d, kernel),
        None => drivers::capability("", kernel),
    };
    let (channels, features) = if root.is_live() {
        (
            match ethtool::live_channels(name) {
                Ok(c) => Reading::Read(c),
                Err(e) => Reading::unreadable(format!("ethtool -l {name}"), e),
            },
            match ethtool::live_features(name) {
                Ok(f) => Reading::Read(f),
                Err(e) => Reading::unreadable(format!("ethtool -k {name}"), e),
            },
        )
    } else {
        let l = format!("/ethtool/{name}/channels");
        let k = format!("/ethtool/{name}/features");
        (
            root.read(&l).and_then(&l, |t| ethtool::parse_channels(&t)),
            root.read(&k).and_then(&k, |t| ethtool::parse_features(&t)),
        )
    };
    let speed_path = format!("{sys}/speed");
    let speed_mbps = match root.read_trim(&speed_path) {
        Reading::Read(s) => match s.parse::<i64>() {
            Ok(n) if n > 0 && n < i64::from(u32::MAX) => Reading::Read(n as u32),
            _ => Reading::unreadable(&speed_path, format!("the driver reports no speed ({s})")),
        },
        Reading::Unreadable { .. } => {
            Reading::unreadable(&speed_path, "not reported (link down, or no speed)")
        }
    };
    let queue_irqs = if software {
        Reading::Read(Vec::new())
    } else {
        read_queue_irqs(root, name, interrupts)
    };
    Interface {
        name: name.to_string(),
        software,
        speed_mbps,
        mtu: root.read_num(&format!("{sys}/mtu")),
        numa_node: root
            .read_num::<i64>(&format!("{sys}/device/numa_node"))
            .ok()
            .and_then(|&n| u32::try_from(n).ok()),
        rx_queues: count_prefixed(root, &format!("{sys}/queues"), "rx-"),
        tx_queues: count_prefixed(root, &format!("{sys}/queues"), "tx-"),
        channels,
        features,
        napi_defer_hard_irqs: root.read_num(&format!("{sys}/napi_defer_hard_irqs")),
        gro_flush_timeout_ns: root.read_num(&format!("{sys}/gro_flush_timeout")),
        queue_irqs,
        capability,
        driver,
    }
}

/// The driver: the device's `uevent` (DRIVER=), its `driver` link, or
/// ethtool's driver info (software devices have no device folder).
fn read_driver(root: &HostRoot, name: &str, has_device: bool) -> Reading<String> {
    let dev = format!("/sys/class/net/{name}/device");
    if has_device {
        if let Reading::Read(uevent) = root.read(&format!("{dev}/uevent")) {
            if let Some(d) = uevent.lines().find_map(|l| l.strip_prefix("DRIVER=")) {
                return Reading::Read(d.trim().to_string());
            }
        }
        if let Ok(target) = std::fs::read_link(root.path(&format!("{dev}/driver"))) {
            if let Some(d) = target.file_name().and_then(|d| d.to_str()) {
                return Reading::Read(d.to_string());
            }
        }
    }
    if root.is_live() {
        return match ethtool::live_driver(name) {
            Ok(d) => Reading::Read(d),
            Err(e) => Reading::unreadable(format!("ethtool -i {name}"), e),
        };
    }
    let info = format!("/ethtool/{name}/info");
    root.read(&info)
        .and_then(&info, |t| ethtool::parse_drvinfo(&t))
}

/// (IRQ, name) for every numbered line of /proc/interrupts; the name is the
/// line's last field (the handler's name).
fn read_interrupts(root: &HostRoot) -> Reading<Vec<(u32, String)>> {
    root.read("/proc/interrupts")
        .and_then("/proc/interrupts", |text| {
            Ok(text
                .lines()
                .filter_map(|line| {
                    let (irq, rest) = line.trim_start().split_once(':')?;
                    let irq = irq.parse().ok()?;
                    let name = rest.split_whitespace().last()?;
                    Some((irq, name.to_string()))
                })
                .collect())
        })
}

/// Whether an interrupt's name marks a receive (or combined) queue rather
/// than a control, mailbox or TX-only vector. Names by driver:
/// ixgbe `eth0-TxRx-0`, i40e/ice `i40e-eth0-TxRx-0`, ena `eth0-Tx-Rx-0`,
/// mlx5 `mlx5_comp0@pci:...`, virtio `virtio2-input.0`, gve
/// `gve-ntfy-blk0@pci:...`, mana `mana_q0@pci:...`.
pub fn is_queue_irq_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    const QUEUE: &[&str] = &[
        "txrx", "tx-rx", "comp", "input", "-rx-", "ntfy-blk", "mana_q",
    ];
    const NOT_QUEUE: &[&str] = &["config", "async", "mgmnt", "mgmt", "ctrl", "control"];
    QUEUE.iter().any(|q| n.contains(q)) && !NOT_QUEUE.iter().any(|q| n.contains(q))
}

/// The queue number in an interrupt's name: its last run of digits, before
/// any `@bus` suffix.
pub fn queue_of_irq_name(name: &str) -> Option<u32> {
    let head = name.split('@').next().unwrap_or(name);
    let end = head.rfind(|c: char| c.is_ascii_digit())? + 1;
    let start = head[..end]
        .rfind(|c: char| !c.is_ascii_digit())
        .map_or(0, |p| p + 1);
    head[start..end].parse().ok()
}

/// The queue interrupts of `name`: the device's MSI vectors (from its
/// `msi_irqs` folder, or its parent's for virtio) or, where those are not
/// listed, interrupts whose name contains the interface's; then those whose
/// name marks a queue.
fn read_queue_irqs(
    root: &HostRoot,
    name: &str,
    interrupts: &Reading<Vec<(u32, String)>>,
) -> Reading<Vec<QueueIrq>> {
    let all = match interrupts {
        Reading::Read(all) => all,
        Reading::Unreadable { unreadable } => {
            return Reading::Unreadable {
                unreadable: unreadable.clone(),
            }
        }
    };
    let dev = format!("/sys/class/net/{name}/device");
    let msi: Option<Vec<u32>> = [format!("{dev}/msi_irqs"), format!("{dev}/../msi_irqs")]
        .iter()
        .find_map(|dir| root.list_dir(dir).ok().cloned())
        .map(|names| names.iter().filter_map(|n| n.parse().ok()).collect());
    let mut irqs: Vec<QueueIrq> = all
        .iter()
        .filter(|(irq, label)| match &msi {
            Some(msi) => msi.contains(irq),
            None => label.contains(name),
        })
        .filter(|(_, label)| is_queue_irq_name(label))
        .enumerate()
        .map(|(i, (irq, label))| QueueIrq {
            irq: *irq,
            name: label.clone(),
            queue: queue_of_irq_name(label).unwrap_or(i as u32),
            affinity: root.read_cpus(&format!("/proc/irq/{irq}/smp_affinity_list")),
        })
        .collect();
    irqs.sort_by_key(|q| (q.queue, q.irq));
    Reading::Read(irqs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_interrupt_names_by_driver() {
        for name in [
            "eth0-TxRx-0",
            "i40e-eth0-TxRx-3",
            "ice-ens1f0-TxRx-7",
            "eth0-Tx-Rx-2",
            "mlx5_comp5@pci:0000:3b:00.0",
            "virtio2-input.0",
        ] {
            assert!(is_queue_irq_name(name), "{name}");
        }
        for name in [
            "virtio2-config",
            "mlx5_async0@pci:0000:3b:00.0",
            "ena-mgmnt@pci:0000:00:05.0",
            "virtio2-output.0",
            "i40e-0000:3b:00.0:misc",
        ] {
            assert!(!is_queue_irq_name(name), "{name}");
        }
    }

    #[test]
    fn queue_number_is_the_last_digits_before_the_bus() {
        assert_eq!(queue_of_irq_name("i40e-eth0-TxRx-12"), Some(12));
        assert_eq!(queue_of_irq_name("mlx5_comp5@pci:0000:3b:00.0"), Some(5));
        assert_eq!(queue_of_irq_name("virtio2-input.0"), Some(0));
        assert_eq!(queue_of_irq_name("txrx"), None);
    }

    #[test]
    fn missing_root_reads_as_unreadable_not_as_values() {
        let host = HostFacts::read(&HostRoot::at("/nonexistent-dce-root"));
        assert!(host
            .cpus_online
            .why()
            .unwrap()
            .contains("/sys/devices/system/cpu/online"));
        assert!(host.interfaces.is_empty());
        assert!(host.governors.is_empty());
    }

    #[test]
    fn live_host_has_online_cpus() {
        let host = HostFacts::read(&HostRoot::live());
        assert!(!host.cpus_online.ok().unwrap().is_empty());
    }
}
