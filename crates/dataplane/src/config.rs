//! Dataplane configuration: which I/O mode, where the workers run, ring and
//! UMEM sizes, the idle strategy and neighbour upkeep. Deserialisable from
//! the appliance's TOML; [`DataplaneConfig::validate`] refuses sizes the
//! kernel or the worker loop cannot use, naming the field, value and limit.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

/// How frames reach the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum IoMode {
    /// One AF_XDP socket per NIC RX queue, fed by the XDP program's XSKMAP.
    #[default]
    #[serde(alias = "afxdp")]
    AfXdp,
    /// One UDP socket per worker on the same address (SO_REUSEPORT).
    Socket,
}

/// Whether AF_XDP binds in zero-copy mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ZeroCopy {
    /// Try zero-copy, fall back to copy mode (the stats say which was used).
    #[default]
    Auto,
    /// Zero-copy or refuse to start.
    Required,
    /// Copy mode only.
    Off,
}

/// UMEM and ring sizes of one AF_XDP socket (one per RX queue).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct XskConfig {
    /// Frames in the UMEM; must cover the fill ring plus the TX ring.
    pub frame_count: u32,
    /// Bytes per frame: 2048 or 4096 (aligned chunk mode).
    pub frame_size: u32,
    /// Fill ring entries (power of two, at least `rx_ring` + `batch`).
    pub fill_ring: u32,
    /// Completion ring entries (power of two, at least `tx_ring`).
    pub completion_ring: u32,
    /// RX ring entries (power of two).
    pub rx_ring: u32,
    /// TX ring entries (power of two).
    pub tx_ring: u32,
    /// Zero-copy policy.
    pub zero_copy: ZeroCopy,
}

impl Default for XskConfig {
    /// Sized for a worker that may wait for its core: 4096 RX entries hold
    /// 68 ms at 60,000 packets/s (1024 overflowed as `rx_ring_full` in the
    /// `edge_sipp` bench while the worker waited tens of milliseconds
    /// behind other threads). 24 MiB of UMEM per socket.
    fn default() -> Self {
        XskConfig {
            frame_count: 12288,
            frame_size: 2048,
            fill_ring: 8192,
            completion_ring: 2048,
            rx_ring: 4096,
            tx_ring: 2048,
            zero_copy: ZeroCopy::Auto,
        }
    }
}

/// When a worker stops spinning and sleeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdleConfig {
    /// Empty loops spun before blocking; 0 blocks as soon as a loop is empty.
    pub busy_polls: u32,
    /// How long one blocking wait lasts at most, in microseconds; also the
    /// longest a control message waits on an idle worker.
    pub wait_us: u64,
}

impl Default for IdleConfig {
    fn default() -> Self {
        IdleConfig {
            busy_polls: 1024,
            wait_us: 1000,
        }
    }
}

impl IdleConfig {
    /// The default for a mode: block as soon as a loop comes up empty.
    ///
    /// A worker that spins between packets looks to the scheduler like a
    /// thread that always wants its core, so on a core it shares (with the
    /// callers, the servers, a build) it waits behind the others when
    /// traffic comes, and its RX ring overflows meanwhile: measured in the
    /// `edge_sipp` bench at 12,000 CPS on the 2-core build box, one AF_XDP
    /// worker spinning 1024 loops lost 2,100-83,000 frames as
    /// `rx_ring_full` (calls failed, up to 18% retransmitted), the same
    /// worker blocking at once lost none and used less CPU per call. In
    /// socket mode an empty loop is also one failing `recvmmsg` per socket.
    /// Spinning pays only on cores the worker has to itself:
    /// [`IdleConfig::isolated`].
    pub fn for_mode(_mode: IoMode) -> Self {
        IdleConfig {
            busy_polls: 0,
            ..IdleConfig::default()
        }
    }

    /// The default for an AF_XDP worker whose core is isolated from the
    /// scheduler (the hardware profile's `isolate_workers`): an empty loop
    /// only reads two ring indices, and spinning a while keeps the worker
    /// awake for the next burst instead of paying a wakeup per packet.
    pub fn isolated(mode: IoMode) -> Self {
        match mode {
            IoMode::AfXdp => IdleConfig::default(),
            IoMode::Socket => IdleConfig::for_mode(mode),
        }
    }

    /// The blocking wait as a duration.
    pub fn wait(&self) -> Duration {
        Duration::from_micros(self.wait_us)
    }
}

/// Neighbour upkeep (AF_XDP mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NeighbourConfig {
    /// How often the kernel's routes and neighbours are read again and
    /// changes published to the workers, in milliseconds.
    pub refresh_ms: u64,
    /// How long the kernel gets to resolve a missing neighbour before it is
    /// reported unresolvable, in milliseconds.
    pub resolve_timeout_ms: u64,
    /// How long a worker waits before asking again about a next hop that is
    /// still unresolved, in milliseconds.
    pub retry_ms: u64,
    /// Entries in each worker's neighbour table.
    pub capacity: usize,
}

impl Default for NeighbourConfig {
    fn default() -> Self {
        NeighbourConfig {
            refresh_ms: 1000,
            resolve_timeout_ms: 3000,
            retry_ms: 1000,
            capacity: 4096,
        }
    }
}

/// One worker: which RX queue it serves (AF_XDP) and which core it runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerPlacement {
    /// The NIC RX queue (AF_XDP); ignored in socket mode.
    #[serde(default)]
    pub queue: u32,
    /// The CPU core to pin to; `None` leaves the thread unpinned.
    #[serde(default)]
    pub core: Option<usize>,
}

/// The whole dataplane.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataplaneConfig {
    /// AF_XDP or socket mode.
    #[serde(default)]
    pub mode: IoMode,
    /// The interface (AF_XDP: the NIC whose queues are bound; socket mode:
    /// unused).
    #[serde(default)]
    pub interface: String,
    /// The edge's own addresses, at most one per IP family. Socket mode binds
    /// every worker's socket to them; AF_XDP sends from them.
    pub local: Vec<SocketAddr>,
    /// One entry per worker.
    pub workers: Vec<WorkerPlacement>,
    /// Datagrams received (and handled) per batch.
    #[serde(default = "defaults::batch")]
    pub batch: usize,
    /// Datagrams the handler may send per batch.
    #[serde(default = "defaults::outbox_capacity")]
    pub outbox_capacity: usize,
    /// Largest UDP payload received or sent in socket mode.
    #[serde(default = "defaults::max_payload")]
    pub max_payload: usize,
    /// AF_XDP sizes.
    #[serde(default)]
    pub xsk: XskConfig,
    /// Idle strategy.
    #[serde(default)]
    pub idle: IdleConfig,
    /// Neighbour upkeep.
    #[serde(default)]
    pub neighbour: NeighbourConfig,
    /// 802.1Q VLAN id of the edge's traffic on a trunk (AF_XDP); frames
    /// with another tag, or none, are dropped as `wrong_vlan`.
    #[serde(default)]
    pub vlan: Option<u16>,
    /// TTL / hop limit of frames built in AF_XDP mode.
    #[serde(default = "defaults::hop_limit")]
    pub hop_limit: u8,
    /// Entries of each worker's control ring.
    #[serde(default = "defaults::ring")]
    pub control_ring: usize,
    /// Real-time priority of the worker threads (SCHED_FIFO, 1-99), or 0
    /// for ordinary scheduling. A worker that shares its core with other
    /// busy threads waits for it after every sleep; its RX ring overflows
    /// meanwhile even while it uses a fraction of the core. With a
    /// real-time priority it runs as soon as traffic wakes it (the kernel
    /// keeps 5% of each core for everything else). Needs CAP_SYS_NICE.
    #[serde(default)]
    pub worker_priority: u8,
}

mod defaults {
    pub fn batch() -> usize {
        64
    }
    pub fn outbox_capacity() -> usize {
        128
    }
    pub fn max_payload() -> usize {
        2048
    }
    pub fn hop_limit() -> u8 {
        64
    }
    pub fn ring() -> usize {
        256
    }
}

impl DataplaneConfig {
    /// A configuration with defaults for `mode`, `local` addresses and one
    /// unpinned worker per entry of `queues`.
    pub fn new(mode: IoMode, interface: &str, local: Vec<SocketAddr>, queues: &[u32]) -> Self {
        DataplaneConfig {
            mode,
            interface: interface.to_string(),
            local,
            workers: queues
                .iter()
                .map(|&queue| WorkerPlacement { queue, core: None })
                .collect(),
            batch: defaults::batch(),
            outbox_capacity: defaults::outbox_capacity(),
            max_payload: defaults::max_payload(),
            xsk: XskConfig::default(),
            idle: IdleConfig::for_mode(mode),
            neighbour: NeighbourConfig::default(),
            vlan: None,
            hop_limit: defaults::hop_limit(),
            control_ring: defaults::ring(),
            worker_priority: 0,
        }
    }

    /// Checks every size and relation; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigProblem> {
        let p = |field: &'static str, value: u64, rule: &'static str| {
            Err(ConfigProblem { field, value, rule })
        };
        if self.workers.is_empty() {
            return p("workers", 0, "at least one worker");
        }
        if self.local.is_empty() || self.local.len() > 2 {
            return p("local", self.local.len() as u64, "one or two addresses");
        }
        if self.local.len() == 2 && self.local[0].is_ipv4() == self.local[1].is_ipv4() {
            return p("local", 2, "at most one address per IP family");
        }
        if self.batch == 0 || self.batch > 1024 {
            return p("batch", self.batch as u64, "between 1 and 1024");
        }
        if self.outbox_capacity == 0 || self.outbox_capacity > 4096 {
            return p(
                "outbox_capacity",
                self.outbox_capacity as u64,
                "between 1 and 4096",
            );
        }
        if self.max_payload < 512 || self.max_payload > 65507 {
            return p(
                "max_payload",
                self.max_payload as u64,
                "between 512 and 65507",
            );
        }
        if self.worker_priority > 99 {
            return p(
                "worker_priority",
                self.worker_priority.into(),
                "between 0 (ordinary scheduling) and 99",
            );
        }
        if self.control_ring == 0 {
            return p("control_ring", 0, "at least 1");
        }
        if self.neighbour.capacity == 0 {
            return p("neighbour.capacity", 0, "at least 1");
        }
        if let Some(v) = self.vlan {
            if v == 0 || v > 4094 {
                return p("vlan", u64::from(v), "between 1 and 4094");
            }
        }
        if self.mode == IoMode::AfXdp {
            if self.interface.is_empty() {
                return p("interface", 0, "an interface name in AF_XDP mode");
            }
            let x = &self.xsk;
            if x.frame_size != 2048 && x.frame_size != 4096 {
                return p("xsk.frame_size", x.frame_size.into(), "2048 or 4096");
            }
            for (field, v) in [
                ("xsk.fill_ring", x.fill_ring),
                ("xsk.completion_ring", x.completion_ring),
                ("xsk.rx_ring", x.rx_ring),
                ("xsk.tx_ring", x.tx_ring),
            ] {
                if !v.is_power_of_two() || v < 64 {
                    return p(field, v.into(), "a power of two, at least 64");
                }
            }
            if (x.fill_ring as usize) < x.rx_ring as usize + self.batch {
                return p(
                    "xsk.fill_ring",
                    x.fill_ring.into(),
                    "at least rx_ring + batch, so the fill ring never runs dry",
                );
            }
            if x.completion_ring < x.tx_ring {
                return p(
                    "xsk.completion_ring",
                    x.completion_ring.into(),
                    "at least tx_ring",
                );
            }
            let needed = u64::from(x.fill_ring) + u64::from(x.tx_ring);
            if u64::from(x.frame_count) < needed {
                return p(
                    "xsk.frame_count",
                    x.frame_count.into(),
                    "at least fill_ring + tx_ring",
                );
            }
        }
        Ok(())
    }
}

/// A configuration value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dataplane.{field} = {value}: must be {rule}")]
pub struct ConfigProblem {
    /// The field, as written in the configuration file.
    pub field: &'static str,
    /// The value found.
    pub value: u64,
    /// What is allowed.
    pub rule: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> DataplaneConfig {
        DataplaneConfig::new(
            IoMode::AfXdp,
            "eth0",
            vec!["198.18.0.1:5060".parse().unwrap()],
            &[0],
        )
    }

    #[test]
    fn defaults_are_valid() {
        base().validate().unwrap();
    }

    #[test]
    fn fill_ring_smaller_than_rx_ring_plus_batch_is_refused() {
        let mut c = base();
        c.xsk.fill_ring = 1024;
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "xsk.fill_ring");
        assert!(e.to_string().contains("rx_ring + batch"), "{e}");
    }

    #[test]
    fn ring_size_not_a_power_of_two_is_refused() {
        let mut c = base();
        c.xsk.tx_ring = 1000;
        assert_eq!(c.validate().unwrap_err().field, "xsk.tx_ring");
    }

    #[test]
    fn worker_priority_above_99_is_refused() {
        let mut c = base();
        c.worker_priority = 99;
        c.validate().unwrap();
        c.worker_priority = 100;
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "worker_priority");
        assert!(e.to_string().contains("99"), "{e}");
    }

    #[test]
    fn two_local_addresses_of_one_family_are_refused() {
        let mut c = base();
        c.local.push("198.18.0.2:5060".parse().unwrap());
        assert_eq!(c.validate().unwrap_err().field, "local");
    }

    #[test]
    fn toml_with_only_the_required_fields_deserialises() {
        let c: DataplaneConfig = toml::from_str(
            r#"
            mode = "socket"
            local = ["198.18.0.1:5060"]
            workers = [{ core = 1 }]
            [idle]
            busy_polls = 0
            "#,
        )
        .unwrap();
        assert_eq!(c.mode, IoMode::Socket);
        assert_eq!(c.workers[0].core, Some(1));
        assert_eq!(c.idle.busy_polls, 0);
        assert_eq!(c.batch, 64);
        c.validate().unwrap();
    }
}
