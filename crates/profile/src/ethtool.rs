//! What `ethtool` knows about an interface: its driver, its channels (RSS
//! queues) and its offload features.
//!
//! On the live host they come from the SIOCETHTOOL ioctl (no `ethtool`
//! program needed). In a fixture tree they come from files holding the
//! output of `ethtool -i`, `ethtool -l` and `ethtool -k`, which the text
//! parsers here read; a snapshot of a real box is three redirections.

use std::collections::BTreeMap;
use std::io;

use serde::Serialize;

/// Channel counts (`ethtool -l`); 0 where the driver has none of a kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Channels {
    /// Most RX-only channels.
    pub max_rx: u32,
    /// Most TX-only channels.
    pub max_tx: u32,
    /// Most combined (RX and TX) channels.
    pub max_combined: u32,
    /// RX-only channels in use.
    pub rx: u32,
    /// TX-only channels in use.
    pub tx: u32,
    /// Combined channels in use.
    pub combined: u32,
}

impl Channels {
    /// Receive queues in use: combined plus RX-only channels.
    pub fn rx_queues(&self) -> u32 {
        self.combined + self.rx
    }

    /// Most receive queues the NIC can give.
    pub fn max_rx_queues(&self) -> u32 {
        self.max_combined + self.max_rx
    }

    /// The `ethtool -L` arguments that set `n` receive queues: combined
    /// channels where the driver has them, else RX and TX channels (veth).
    pub fn set_args(&self, n: u32) -> String {
        if self.max_combined > 0 {
            format!("combined {n}")
        } else {
            format!("rx {n} tx {n}")
        }
    }
}

/// One offload feature's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Feature {
    /// Active now.
    pub on: bool,
    /// The driver does not let it change (`[fixed]`).
    pub fixed: bool,
}

/// Offload features by their kernel names (`rx-gro`, `rx-lro`, ...).
pub type Features = BTreeMap<String, Feature>;

/// The kernel name of a feature that `ethtool -k` prints under an older
/// name; other names are already the kernel's.
fn kernel_feature_name(ethtool_name: &str) -> &str {
    match ethtool_name {
        "rx-checksumming" => "rx-checksum",
        "generic-receive-offload" => "rx-gro",
        "large-receive-offload" => "rx-lro",
        "rx-vlan-offload" => "rx-vlan-hw-parse",
        "tx-vlan-offload" => "tx-vlan-hw-insert",
        "ntuple-filters" => "rx-ntuple-filter",
        "receive-hashing" => "rx-hashing",
        "generic-segmentation-offload" => "tx-generic-segmentation",
        "udp-fragmentation-offload" => "tx-udp-fragmentation",
        other => other,
    }
}

/// Lines of `ethtool -k` that summarise a group of features rather than
/// name one.
const GROUP_HEADERS: &[&str] = &[
    "tx-checksumming",
    "scatter-gather",
    "tcp-segmentation-offload",
];

/// The driver name in `ethtool -i` output.
pub fn parse_drvinfo(text: &str) -> Result<String, String> {
    text.lines()
        .find_map(|l| l.strip_prefix("driver:"))
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
        .ok_or_else(|| "no \"driver:\" line".to_string())
}

/// `ethtool -l` output.
pub fn parse_channels(text: &str) -> Result<Channels, String> {
    #[derive(PartialEq)]
    enum Part {
        None,
        Max,
        Current,
    }
    let mut part = Part::None;
    let mut ch = Channels::default();
    let mut seen = 0;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("Pre-set maximums") {
            part = Part::Max;
            continue;
        }
        if line.starts_with("Current hardware settings") {
            part = Part::Current;
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let n = if value == "n/a" {
            0
        } else {
            match value.parse::<u32>() {
                Ok(n) => n,
                Err(_) => continue,
            }
        };
        let slot = match (&part, key) {
            (Part::Max, "RX") => &mut ch.max_rx,
            (Part::Max, "TX") => &mut ch.max_tx,
            (Part::Max, "Combined") => &mut ch.max_combined,
            (Part::Current, "RX") => &mut ch.rx,
            (Part::Current, "TX") => &mut ch.tx,
            (Part::Current, "Combined") => &mut ch.combined,
            _ => continue,
        };
        *slot = n;
        seen += 1;
    }
    if seen == 0 {
        return Err("no channel counts (expected `ethtool -l` output)".into());
    }
    Ok(ch)
}

/// `ethtool -k` output.
pub fn parse_features(text: &str) -> Result<Features, String> {
    let mut features = Features::new();
    for line in text.lines() {
        let Some((name, state)) = line.trim().split_once(": ") else {
            continue;
        };
        let on = if state.starts_with("on") {
            true
        } else if state.starts_with("off") {
            false
        } else {
            continue;
        };
        // Group headers stand for the indented features under them, which
        // the kernel reports one by one.
        if GROUP_HEADERS.contains(&name) {
            continue;
        }
        let fixed = state.contains("[fixed]");
        features.insert(kernel_feature_name(name).to_string(), Feature { on, fixed });
    }
    if features.is_empty() {
        return Err("no features (expected `ethtool -k` output)".into());
    }
    Ok(features)
}

// ---- The live host: the SIOCETHTOOL ioctl. ----
// Command numbers and layouts from include/uapi/linux/ethtool.h.

const ETHTOOL_GDRVINFO: u32 = 0x03;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETHTOOL_GCHANNELS: u32 = 0x3c;
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;
/// More feature names than any kernel has (about 70 today); bounds the
/// buffers a confused driver could make us allocate.
const MAX_FEATURES: u32 = 1024;

#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// One string set asked for, so one count comes back.
#[repr(C)]
struct EthtoolSsetInfo {
    cmd: u32,
    reserved: u32,
    sset_mask: u64,
    data: [u32; 1],
}

#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

/// Issues one SIOCETHTOOL request on `iface` with `data` as the command
/// buffer (its first u32 is the command).
fn ethtool_ioctl(iface: &str, data: *mut libc::c_void) -> io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    if iface.is_empty() || iface.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {iface:?}"),
        ));
    }
    // SAFETY: socket() has no memory preconditions; the result is checked.
    #[allow(unsafe_code)]
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a socket we just opened and own alone.
    #[allow(unsafe_code)]
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    #[allow(unsafe_code)]
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(iface.bytes()) {
        *dst = src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = data.cast();
    // SAFETY: ifr holds a NUL-terminated name (checked length, zeroed
    // buffer) and a pointer to a command buffer the caller sized for the
    // command it holds; the kernel writes only within that layout.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The interface's driver name (ETHTOOL_GDRVINFO).
pub fn live_driver(iface: &str) -> io::Result<String> {
    // SAFETY: EthtoolDrvinfo is plain old data; all zeroes is valid.
    #[allow(unsafe_code)]
    let mut info: EthtoolDrvinfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    ethtool_ioctl(iface, (&mut info as *mut EthtoolDrvinfo).cast())?;
    Ok(c_string(&info.driver))
}

/// The interface's channels (ETHTOOL_GCHANNELS).
pub fn live_channels(iface: &str) -> io::Result<Channels> {
    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    ethtool_ioctl(iface, (&mut ch as *mut EthtoolChannels).cast())?;
    Ok(Channels {
        max_rx: ch.max_rx,
        max_tx: ch.max_tx,
        max_combined: ch.max_combined,
        rx: ch.rx_count,
        tx: ch.tx_count,
        combined: ch.combined_count,
    })
}

/// The interface's offload features (ETHTOOL_GSSET_INFO for their number,
/// ETHTOOL_GSTRINGS for their names, ETHTOOL_GFEATURES for their state).
pub fn live_features(iface: &str) -> io::Result<Features> {
    let mut sset = EthtoolSsetInfo {
        cmd: ETHTOOL_GSSET_INFO,
        reserved: 0,
        sset_mask: 1u64 << ETH_SS_FEATURES,
        data: [0],
    };
    ethtool_ioctl(iface, (&mut sset as *mut EthtoolSsetInfo).cast())?;
    if sset.sset_mask & (1u64 << ETH_SS_FEATURES) == 0 {
        return Err(io::Error::other("the driver reports no feature names"));
    }
    let count = sset.data[0];
    if count == 0 || count > MAX_FEATURES {
        return Err(io::Error::other(format!(
            "implausible feature count {count}"
        )));
    }

    // struct ethtool_gstrings { u32 cmd; u32 string_set; u32 len; u8 data[]; }
    let names_len = count as usize * ETH_GSTRING_LEN;
    let mut strings = vec![0u32; 3 + names_len / 4];
    strings[0] = ETHTOOL_GSTRINGS;
    strings[1] = ETH_SS_FEATURES;
    strings[2] = count;
    ethtool_ioctl(iface, strings.as_mut_ptr().cast())?;
    let got = strings[2].min(count) as usize;
    let name_bytes = &bytes_of(&strings)[12..12 + got * ETH_GSTRING_LEN];

    // struct ethtool_gfeatures { u32 cmd; u32 size; struct { u32 available,
    // requested, active, never_changed; } features[size]; }
    let blocks = count.div_ceil(32) as usize;
    let mut feats = vec![0u32; 2 + 4 * blocks];
    feats[0] = ETHTOOL_GFEATURES;
    feats[1] = blocks as u32;
    ethtool_ioctl(iface, feats.as_mut_ptr().cast())?;

    let mut out = Features::new();
    for (i, name) in name_bytes.chunks_exact(ETH_GSTRING_LEN).enumerate() {
        let name = c_string(name);
        if name.is_empty() {
            continue;
        }
        let block = &feats[2 + 4 * (i / 32)..2 + 4 * (i / 32) + 4];
        let bit = 1u32 << (i % 32);
        let (available, active, never_changed) = (block[0], block[2], block[3]);
        out.insert(
            name,
            Feature {
                on: active & bit != 0,
                fixed: available & bit == 0 || never_changed & bit != 0,
            },
        );
    }
    Ok(out)
}

fn bytes_of(words: &[u32]) -> &[u8] {
    // SAFETY: u32 has no padding and any byte is a valid u8; the slice
    // covers exactly the words' memory and borrows it.
    #[allow(unsafe_code)]
    unsafe {
        std::slice::from_raw_parts(words.as_ptr().cast(), std::mem::size_of_val(words))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VETH_L: &str = "Channel parameters for pv1:\nPre-set maximums:\nRX:\t\t2\nTX:\t\t2\nOther:\t\tn/a\nCombined:\tn/a\nCurrent hardware settings:\nRX:\t\t1\nTX:\t\t1\nOther:\t\tn/a\nCombined:\tn/a\n";

    #[test]
    fn channels_of_a_veth() {
        let ch = parse_channels(VETH_L).unwrap();
        assert_eq!(
            (ch.max_rx, ch.rx, ch.max_combined, ch.combined),
            (2, 1, 0, 0)
        );
        assert_eq!(ch.rx_queues(), 1);
        assert_eq!(ch.set_args(1), "rx 1 tx 1");
    }

    #[test]
    fn channels_of_a_combined_nic() {
        let text = "Channel parameters for eth0:\nPre-set maximums:\nRX:\t\tn/a\nTX:\t\tn/a\nOther:\t\t1\nCombined:\t63\nCurrent hardware settings:\nRX:\t\tn/a\nTX:\t\tn/a\nOther:\t\t1\nCombined:\t8\n";
        let ch = parse_channels(text).unwrap();
        assert_eq!((ch.max_rx_queues(), ch.rx_queues()), (63, 8));
        assert_eq!(ch.set_args(3), "combined 3");
    }

    #[test]
    fn features_map_old_names_to_kernel_names() {
        let text = "Features for eth0:\nrx-checksumming: on [fixed]\ngeneric-receive-offload: on\nlarge-receive-offload: off [fixed]\nrx-gro-hw: off [requested on]\n\ttx-checksum-ipv4: off [fixed]\n";
        let f = parse_features(text).unwrap();
        assert_eq!(
            f["rx-gro"],
            Feature {
                on: true,
                fixed: false
            }
        );
        assert_eq!(
            f["rx-lro"],
            Feature {
                on: false,
                fixed: true
            }
        );
        assert!(!f["rx-gro-hw"].on);
        assert!(f.contains_key("tx-checksum-ipv4"));
    }

    #[test]
    fn feature_group_headers_are_not_features() {
        let text = "tx-checksumming: on\n\ttx-checksum-ip-generic: on\nscatter-gather: on\n\ttx-scatter-gather: on\n";
        let f = parse_features(text).unwrap();
        assert_eq!(
            f.keys().collect::<Vec<_>>(),
            ["tx-checksum-ip-generic", "tx-scatter-gather"]
        );
    }

    #[test]
    fn drvinfo_driver_line() {
        assert_eq!(
            parse_drvinfo("driver: ixgbe\nversion: 6.1\n").unwrap(),
            "ixgbe"
        );
        assert!(parse_drvinfo("version: 1\n").is_err());
    }

    #[test]
    fn garbage_is_refused_not_guessed() {
        assert!(parse_channels("hello\n").is_err());
        assert!(parse_features("hello\n").is_err());
    }

    #[test]
    fn live_loopback_features_agree_with_the_kernel() {
        // Loopback exists in every namespace; its features are readable
        // without root, and loopback always has GRO listed.
        let f = live_features("lo").unwrap();
        assert!(f.contains_key("rx-gro"), "{f:?}");
        assert!(f.contains_key("rx-lro"), "{f:?}");
    }

    #[test]
    fn live_request_on_a_missing_interface_is_an_error() {
        assert!(live_channels("nosuchif0").is_err());
    }
}
