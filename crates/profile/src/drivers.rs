//! Which network drivers can run dce-edge's XDP program natively and give
//! AF_XDP zero-copy, and since which Linux release.
//!
//! Generic (SKB-mode) XDP and copy-mode AF_XDP work on every driver; this
//! table only says where the fast paths exist. The releases are those in
//! which each feature was merged into Linux mainline (the driver support
//! table of docs.ebpf.io, program type BPF_PROG_TYPE_XDP, checked against
//! the kernel's history; virtio_net zero-copy in 6.11, igb in 6.14). A
//! distribution kernel may have back-ported a feature earlier.

use std::fmt;

use serde::Serialize;

/// A Linux release, major and minor (`6.11`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

impl KernelVersion {
    /// A release.
    pub const fn new(major: u32, minor: u32) -> Self {
        KernelVersion { major, minor }
    }

    /// Reads the leading `major.minor` of a release string such as
    /// `6.18.44-fc-v782` (/proc/sys/kernel/osrelease).
    pub fn parse(release: &str) -> Option<Self> {
        let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(KernelVersion { major, minor })
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl Serialize for KernelVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What one driver supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverSupport {
    /// The driver's name as the kernel reports it (`ethtool -i`, the
    /// device's `uevent`).
    pub driver: &'static str,
    /// Other names the same driver goes by (the PCI driver of a split driver).
    pub aliases: &'static [&'static str],
    /// First release with native (driver-mode) XDP.
    pub native_xdp_since: KernelVersion,
    /// First release with AF_XDP zero-copy, if any.
    pub zero_copy_since: Option<KernelVersion>,
    /// A software device (veth, tun, bonding): no hardware queues, no queue
    /// interrupts to pin.
    pub software: bool,
}

const fn entry(
    driver: &'static str,
    aliases: &'static [&'static str],
    native: (u32, u32),
    zero_copy: Option<(u32, u32)>,
    software: bool,
) -> DriverSupport {
    DriverSupport {
        driver,
        aliases,
        native_xdp_since: KernelVersion::new(native.0, native.1),
        zero_copy_since: match zero_copy {
            Some((major, minor)) => Some(KernelVersion::new(major, minor)),
            None => None,
        },
        software,
    }
}

/// The drivers dce-edge knows, in the order native XDP reached them.
pub const DRIVERS: &[DriverSupport] = &[
    entry("mlx4_en", &["mlx4_core"], (4, 8), None, false),
    entry("mlx5_core", &[], (4, 9), Some((5, 3)), false),
    entry("qede", &[], (4, 10), None, false),
    entry("nfp", &[], (4, 10), Some((5, 18)), false),
    entry("virtio_net", &[], (4, 10), Some((6, 11)), false),
    entry("bnxt_en", &[], (4, 11), None, false),
    entry("ixgbe", &[], (4, 12), Some((4, 20)), false),
    entry("i40e", &[], (4, 13), Some((4, 20)), false),
    entry("tun", &[], (4, 14), None, true),
    entry("ixgbevf", &[], (4, 17), None, false),
    entry("veth", &[], (4, 19), None, true),
    entry("ice", &[], (5, 5), Some((5, 5)), false),
    entry("sfc", &[], (5, 5), None, false),
    entry("ena", &[], (5, 6), None, false),
    entry("hv_netvsc", &[], (5, 6), None, false),
    entry("igb", &[], (5, 10), Some((6, 14)), false),
    entry("igc", &[], (5, 13), Some((5, 14)), false),
    entry("bonding", &[], (5, 15), None, true),
    entry("mana", &[], (5, 17), None, false),
    entry("gve", &[], (6, 4), Some((6, 4)), false),
    entry("vmxnet3", &[], (6, 6), None, false),
    entry("ionic", &[], (6, 9), None, false),
];

/// The table entry for a driver name (or one of its aliases).
pub fn lookup(driver: &str) -> Option<&'static DriverSupport> {
    DRIVERS
        .iter()
        .find(|d| d.driver == driver || d.aliases.contains(&driver))
}

/// Whether a feature is there on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// The driver has it, and the running kernel is recent enough (or its
    /// version could not be read).
    Yes,
    /// The driver does not have it in any release.
    No,
    /// The driver has it from this release on; the running kernel is older.
    NeedsKernel(KernelVersion),
    /// The driver is not in the table: assume neither fast path.
    UnknownDriver,
}

impl Support {
    /// True only for [`Support::Yes`].
    pub fn is_yes(self) -> bool {
        self == Support::Yes
    }

    fn from_since(since: Option<KernelVersion>, kernel: Option<KernelVersion>) -> Self {
        match (since, kernel) {
            (None, _) => Support::No,
            (Some(since), Some(kernel)) if kernel < since => Support::NeedsKernel(since),
            (Some(_), _) => Support::Yes,
        }
    }
}

impl fmt::Display for Support {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Support::Yes => f.write_str("yes"),
            Support::No => f.write_str("no"),
            Support::NeedsKernel(v) => write!(f, "needs Linux {v}"),
            Support::UnknownDriver => f.write_str("unknown driver"),
        }
    }
}

impl Serialize for Support {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Native XDP and AF_XDP zero-copy for a driver on a kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Capability {
    /// Native (driver-mode) XDP.
    pub native_xdp: Support,
    /// AF_XDP zero-copy.
    pub zero_copy: Support,
}

/// What `driver` can do on `kernel` (None when the release is unknown).
pub fn capability(driver: &str, kernel: Option<KernelVersion>) -> Capability {
    match lookup(driver) {
        Some(d) => Capability {
            native_xdp: Support::from_since(Some(d.native_xdp_since), kernel),
            zero_copy: Support::from_since(d.zero_copy_since, kernel),
        },
        None => Capability {
            native_xdp: Support::UnknownDriver,
            zero_copy: Support::UnknownDriver,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_release_strings_parse() {
        assert_eq!(
            KernelVersion::parse("6.18.44-fc-v782"),
            Some(KernelVersion::new(6, 18))
        );
        assert_eq!(
            KernelVersion::parse("5.15.0-91-generic\n"),
            Some(KernelVersion::new(5, 15))
        );
        assert_eq!(KernelVersion::parse("garbage"), None);
    }

    #[test]
    fn veth_is_native_without_zero_copy() {
        let cap = capability("veth", Some(KernelVersion::new(6, 18)));
        assert_eq!(cap.native_xdp, Support::Yes);
        assert_eq!(cap.zero_copy, Support::No);
    }

    #[test]
    fn igb_zero_copy_needs_6_14() {
        let old = capability("igb", Some(KernelVersion::new(6, 8)));
        assert_eq!(old.native_xdp, Support::Yes);
        assert_eq!(
            old.zero_copy,
            Support::NeedsKernel(KernelVersion::new(6, 14))
        );
        assert_eq!(
            capability("igb", Some(KernelVersion::new(6, 14))).zero_copy,
            Support::Yes
        );
    }

    #[test]
    fn split_driver_found_by_its_pci_name() {
        assert_eq!(lookup("mlx4_core").unwrap().driver, "mlx4_en");
    }

    #[test]
    fn unknown_driver_has_no_fast_path() {
        let cap = capability("r8169", None);
        assert_eq!(cap.native_xdp, Support::UnknownDriver);
        assert!(!cap.zero_copy.is_yes());
    }
}
