//! The profile file's schema: the raw TOML shape (with spans, so refusals
//! point at the line), its validation, and the validated, plain types the
//! appliance and the load generator read.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::drivers;
use config::{ConfigError, SourceFile};

/// A validated hardware profile: what the box is, how dce-edge runs on it,
/// what it must hold, and how the host should be tuned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Profile {
    name: String,
    description: String,
    source: String,
    hardware: Hardware,
    runtime: RuntimeDefaults,
    tuning: HostTuning,
    band: Band,
    #[serde(skip)]
    origin: PathBuf,
    #[serde(skip)]
    text: String,
}

impl Profile {
    /// The profile's name (its file name without `.toml`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// One line saying what the tier is.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Where the profile's numbers come from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// What the box is.
    pub fn hardware(&self) -> &Hardware {
        &self.hardware
    }

    /// How dce-edge runs on the box: every default the appliance does not
    /// get from its own configuration.
    pub fn runtime(&self) -> &RuntimeDefaults {
        &self.runtime
    }

    /// How the host should be set up (`dce-edge tune --check` audits it).
    pub fn tuning(&self) -> &HostTuning {
        &self.tuning
    }

    /// What the box must hold (`dce-loadgen capacity --profile` checks it).
    pub fn band(&self) -> &Band {
        &self.band
    }

    /// The file the profile was read from (`hardware-profiles/NAME.toml`
    /// for the built-in ones).
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// The file's text, comments included.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// XDP attachment mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum XdpMode {
    /// Driver mode: the program runs before the kernel allocates anything.
    Native,
    /// SKB mode: works on any driver, after a socket buffer is allocated.
    Generic,
}

/// AF_XDP socket mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AfXdpMode {
    /// The NIC writes into the UMEM directly.
    ZeroCopy,
    /// The kernel copies each frame into the UMEM; works on any driver.
    Copy,
}

/// What the box is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hardware {
    /// Online CPUs (logical, as Linux numbers them); the tier's minimum.
    pub cores: u32,
    /// Minimum maximum clock of a core, MHz.
    pub min_clock_mhz: u32,
    /// NIC drivers this tier is built on (any one of them).
    pub nic_drivers: Vec<String>,
    /// Link speed, Mb/s.
    pub link_speed_mbps: u32,
    /// How the XDP program attaches.
    pub xdp_mode: XdpMode,
    /// How the AF_XDP sockets bind.
    pub af_xdp: AfXdpMode,
}

/// A per-source token bucket: sustained rate and depth, in packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TokenBucket {
    /// Packets per second a source may send sustained.
    pub rate: u32,
    /// Packets a source may send at once.
    pub burst: u32,
}

/// The XDP program's default per-source rate limits, by request class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DefaultRateLimits {
    /// INVITE.
    pub invite: TokenBucket,
    /// REGISTER.
    pub register: TokenBucket,
    /// Every other SIP message.
    pub other: TokenBucket,
}

/// How dce-edge runs on the box: the defaults for everything the appliance
/// configuration does not set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuntimeDefaults {
    /// NIC queues (RSS channels) to use; one AF_XDP socket each.
    pub queues: u32,
    /// Worker threads; one per queue.
    pub workers: u32,
    /// The core each worker is pinned to; worker `i` serves queue `i`.
    pub worker_cores: Vec<u32>,
    /// The core of the control thread (not a worker core).
    pub control_core: u32,
    /// UMEM frames per worker.
    pub umem_frames: u32,
    /// Bytes per UMEM frame.
    pub frame_size: u32,
    /// Fill ring entries.
    pub fill_ring: u32,
    /// Completion ring entries.
    pub completion_ring: u32,
    /// RX ring entries.
    pub rx_ring: u32,
    /// TX ring entries.
    pub tx_ring: u32,
    /// Frames a worker takes from or puts on a ring at once.
    pub batch_size: u32,
    /// Per-source rate limits in the XDP program.
    pub rate_limits: DefaultRateLimits,
    /// Packets per second per CPU redirected to userspace above which the
    /// XDP program drops (`overload`).
    pub overload_cap_pps: u64,
    /// Real-time (SCHED_FIFO) priority of the workers, 0 for ordinary
    /// scheduling: for boxes whose worker cores are shared with other busy
    /// threads (not isolated).
    pub worker_priority: u8,
}

impl RuntimeDefaults {
    /// Bytes of UMEM per worker.
    pub fn umem_bytes(&self) -> u64 {
        u64::from(self.umem_frames) * u64::from(self.frame_size)
    }
}

/// How the host should be set up for the profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostTuning {
    /// Pin queue `i`'s interrupt to worker core `i`.
    pub pin_irqs: bool,
    /// net.core.busy_poll, microseconds (0: off).
    pub busy_poll_us: u32,
    /// net.core.busy_read, microseconds (0: off).
    pub busy_read_us: u32,
    /// The interface's napi_defer_hard_irqs.
    pub napi_defer_hard_irqs: u32,
    /// The interface's gro_flush_timeout, nanoseconds.
    pub gro_flush_timeout_ns: u64,
    /// The CPU frequency governor the worker cores should run.
    pub governor: Option<String>,
    /// Worker cores isolated from the scheduler (isolcpus, nohz_full).
    pub isolate_workers: bool,
}

/// Where a band's target comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetBasis {
    /// A capacity measured on a box of the tier, with its date, command and
    /// the flood that ran during it.
    Measured,
    /// A model from figures measured on another box: CPU per call on one
    /// worker, times the workers the profile gives, with the efficiency lost
    /// from one worker to two as measured here. The target may not exceed
    /// what the model computes.
    Extrapolated,
}

/// Calls per second, from and to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CpsRange {
    /// Lower end.
    pub min: u32,
    /// Upper end.
    pub max: u32,
}

/// A capacity measured on a box of the tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Measurement {
    /// Calls per second that held.
    pub cps: u32,
    /// The day it was measured (YYYY-MM-DD).
    pub on: String,
    /// The command that measured it.
    pub command: String,
    /// Flood packets per second running during the measurement (0: none).
    pub flood_pps: u64,
}

/// The model an extrapolated target rests on: calls per second =
/// 1,000,000 / (CPU µs per call on one worker) x workers x efficiency, the
/// efficiency being 1 for one worker and, for more, the CPU per call of one
/// worker over that of two as measured here (what a second worker costs).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapacityModel {
    /// The model in words, with where its figures come from.
    pub text: String,
    /// Measured CPU per call with one worker, microseconds.
    pub us_per_call_one_worker: f64,
    /// Measured CPU per call with two workers, microseconds.
    pub us_per_call_two_workers: f64,
    /// The workers (and worker cores) the profile gives.
    pub workers: u32,
    /// What the model computes, calls per second.
    pub supported_cps: u32,
}

impl CapacityModel {
    /// Calls per second the model gives `workers` workers.
    pub fn compute(us_one: f64, us_two: f64, workers: u32) -> u32 {
        let per_worker = 1e6 / us_one;
        let efficiency = if workers > 1 { us_one / us_two } else { 1.0 };
        (per_worker * f64::from(workers) * efficiency).floor() as u32
    }
}

/// What a box of this tier must hold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Band {
    /// The architecture guide's figure: a Kamailio-class proxy does
    /// 5,000-30,000 CPS depending on hardware ([`GUIDE_CPS`]).
    pub guide_range_cps: CpsRange,
    /// Who split the guide's range across the tiers: this project
    /// (`"dce-edge"`), not the guide, which gives only the whole range.
    pub tier_split: String,
    /// This tier's share of the guide's range, as this project splits it.
    pub guide_cps: CpsRange,
    /// Calls per second dce-edge must hold on this tier.
    pub target_cps: u32,
    /// Where `target_cps` comes from.
    pub target_basis: TargetBasis,
    /// The measured capacity, for a measured basis.
    pub measured_cps: Option<u32>,
    /// The measurement, for a measured basis.
    pub measurement: Option<Measurement>,
    /// The model, for an extrapolated basis.
    pub model: Option<CapacityModel>,
    /// The command that checks a box against the band.
    pub measure_with: String,
    /// Flood packets per second the XDP tier must drop while legitimate
    /// calls still succeed.
    pub flood_pps: u64,
    /// Percentage of legitimate calls that must succeed during the flood.
    pub flood_legit_success_pct: f64,
    /// Call setup latency SLO at p99, milliseconds.
    pub setup_latency_p99_ms: u32,
}

impl Band {
    /// The setup latency SLO (p99).
    pub fn setup_latency_slo(&self) -> Duration {
        Duration::from_millis(u64::from(self.setup_latency_p99_ms))
    }

    /// True when the target rests on a measurement that has been made.
    pub fn is_confirmed(&self) -> bool {
        self.measured_cps.is_some()
    }

    /// The band and its basis in one line, for people: the guide's figure,
    /// this project's split, the target and what it rests on.
    pub fn basis_line(&self) -> String {
        let basis = match (&self.measurement, &self.model) {
            (Some(m), _) => format!(
                "measured: {} CPS held on {} ({}), {}",
                m.cps,
                m.on,
                m.command,
                if m.flood_pps == 0 {
                    "with no flood running".to_string()
                } else {
                    format!("with a {} pps flood running", m.flood_pps)
                }
            ),
            (None, Some(m)) => format!(
                "extrapolated: the model supports {} CPS ({})",
                m.supported_cps, m.text
            ),
            (None, None) => "no basis".to_string(),
        };
        format!(
            "target {} CPS; {basis}; guide: a Kamailio-class proxy does {}-{} CPS, this tier's {}-{} share of it is {}'s own split",
            self.target_cps,
            self.guide_range_cps.min,
            self.guide_range_cps.max,
            self.guide_cps.min,
            self.guide_cps.max,
            self.tier_split
        )
    }
}

// ---- The file as written, with spans for the refusals. ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: Spanned<String>,
    description: String,
    source: Spanned<String>,
    hardware: RawHardware,
    runtime: RawRuntime,
    tuning: RawTuning,
    band: Spanned<RawBand>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHardware {
    cores: Spanned<u32>,
    min_clock_mhz: Spanned<u32>,
    nic_drivers: Spanned<Vec<Spanned<String>>>,
    link_speed_mbps: Spanned<u32>,
    xdp_mode: XdpMode,
    af_xdp: AfXdpMode,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBucket {
    rate: Spanned<u32>,
    burst: Spanned<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimits {
    invite: RawBucket,
    register: RawBucket,
    other: RawBucket,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuntime {
    queues: Spanned<u32>,
    workers: Spanned<u32>,
    worker_cores: Spanned<Vec<Spanned<u32>>>,
    control_core: Spanned<u32>,
    umem_frames: Spanned<u32>,
    frame_size: Spanned<u32>,
    fill_ring: Spanned<u32>,
    completion_ring: Spanned<u32>,
    rx_ring: Spanned<u32>,
    tx_ring: Spanned<u32>,
    batch_size: Spanned<u32>,
    #[serde(alias = "emergency_cap_pps")]
    overload_cap_pps: Spanned<u64>,
    #[serde(default)]
    worker_priority: Option<Spanned<u8>>,
    rate_limits: RawRateLimits,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTuning {
    pin_irqs: bool,
    busy_poll_us: Spanned<u32>,
    busy_read_us: Spanned<u32>,
    napi_defer_hard_irqs: Spanned<u32>,
    gro_flush_timeout_ns: Spanned<u64>,
    governor: Option<Spanned<String>>,
    isolate_workers: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBand {
    guide_cps: Spanned<Vec<u32>>,
    tier_split: Spanned<String>,
    guide_cps_min: Spanned<u32>,
    guide_cps_max: Spanned<u32>,
    target_cps: Spanned<u32>,
    target_basis: Option<Spanned<TargetBasis>>,
    measured_cps: Option<Spanned<u32>>,
    measured_on: Option<Spanned<String>>,
    command: Option<Spanned<String>>,
    measured_flood_pps: Option<Spanned<u64>>,
    model: Option<Spanned<String>>,
    model_us_per_call: Option<Spanned<f64>>,
    model_us_per_call_two_workers: Option<Spanned<f64>>,
    measure_with: String,
    flood_pps: Spanned<u64>,
    flood_legit_success_pct: Spanned<f64>,
    setup_latency_p99_ms: Spanned<u32>,
}

/// The architecture guide's band for a Kamailio-class proxy, all tiers.
pub const GUIDE_CPS: CpsRange = CpsRange {
    min: 5_000,
    max: 30_000,
};

/// Who split the guide's range across the tiers: this project, not the
/// guide (`tier_split` must say so).
pub const TIER_SPLIT: &str = "dce-edge";

/// The guide's end-to-end call setup budget, milliseconds.
pub const GUIDE_SETUP_LATENCY_MS: u32 = 50;

/// Ethernet link speeds a profile may name, Mb/s.
pub const LINK_SPEEDS_MBPS: &[u32] = &[
    1_000, 2_500, 5_000, 10_000, 25_000, 40_000, 50_000, 100_000, 200_000, 400_000, 800_000,
];

/// CPU frequency governors Linux offers.
pub const GOVERNORS: &[&str] = &[
    "performance",
    "powersave",
    "schedutil",
    "ondemand",
    "conservative",
    "userspace",
];

/// Largest AF_XDP ring a profile may ask for (entries).
pub const MAX_RING: u32 = 65_536;

struct Check<'a> {
    src: &'a SourceFile,
}

impl Check<'_> {
    fn fail<T>(&self, span: Range<usize>, reason: impl Into<String>) -> Result<T, ConfigError> {
        Err(self.src.error_at(span, reason))
    }

    fn range<T: PartialOrd + std::fmt::Display + Copy>(
        &self,
        key: &str,
        v: &Spanned<T>,
        lo: T,
        hi: T,
    ) -> Result<T, ConfigError> {
        let x = *v.get_ref();
        if x < lo || x > hi {
            return self.fail(
                v.span(),
                format!("{key} = {x} is out of range: allowed {lo} to {hi}"),
            );
        }
        Ok(x)
    }

    fn ring(&self, key: &str, v: &Spanned<u32>) -> Result<u32, ConfigError> {
        let x = self.range(key, v, 64, MAX_RING)?;
        if !x.is_power_of_two() {
            return self.fail(
                v.span(),
                format!("{key} = {x}: AF_XDP rings must be a power of two (e.g. 2048)"),
            );
        }
        Ok(x)
    }

    fn bucket(&self, class: &str, b: &RawBucket) -> Result<TokenBucket, ConfigError> {
        Ok(TokenBucket {
            rate: self.range(&format!("{class}.rate"), &b.rate, 1, 1_000_000)?,
            burst: self.range(&format!("{class}.burst"), &b.burst, 1, 10_000_000)?,
        })
    }
}

/// Parses and validates a profile file. The profile's `name` must be the
/// file's name without `.toml`.
pub fn parse(src: &SourceFile) -> Result<Profile, ConfigError> {
    let raw: RawProfile = src.parse_toml()?;
    let c = Check { src };
    c.name_and_provenance(&raw)?;
    let hardware = c.hardware(&raw.hardware)?;
    let runtime = c.runtime(&raw.runtime, hardware.cores)?;
    let tuning = c.tuning(&raw.tuning)?;
    let band = c.band(&raw.band, runtime.workers)?;
    Ok(Profile {
        name: raw.name.into_inner(),
        description: raw.description,
        source: raw.source.into_inner(),
        hardware,
        runtime,
        tuning,
        band,
        origin: src.path().to_path_buf(),
        text: src.text().to_string(),
    })
}

/// The steps of [`parse`], one per table of the file, in the order the
/// file is checked (the first refusal is the one reported).
impl Check<'_> {
    /// The name is the file's name; the source says where the numbers
    /// come from.
    fn name_and_provenance(&self, raw: &RawProfile) -> Result<(), ConfigError> {
        let name = raw.name.get_ref();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return self.fail(
                raw.name.span(),
                format!("name {name:?} must be lowercase letters, digits and '-'"),
            );
        }
        let stem = self.src.path().file_stem().and_then(|s| s.to_str());
        if stem != Some(name.as_str()) {
            return self.fail(
                raw.name.span(),
                format!(
                    "name {name:?} differs from the file name {:?}; a profile is found by its file name",
                    self.src.path().file_name().unwrap_or_default()
                ),
            );
        }
        if raw.source.get_ref().trim().is_empty() {
            return self.fail(
                raw.source.span(),
                "source is empty: say where the profile's numbers come from",
            );
        }
        Ok(())
    }

    /// `[hardware]`: cores, clock, NIC drivers and link speed.
    fn hardware(&self, h: &RawHardware) -> Result<Hardware, ConfigError> {
        let cores = self.range("cores", &h.cores, 1, super::cpus::MAX_CPU + 1)?;
        let min_clock_mhz = self.range("min_clock_mhz", &h.min_clock_mhz, 500, 10_000)?;
        let nic_drivers = self.nic_drivers(&h.nic_drivers, h.af_xdp)?;
        let link = *h.link_speed_mbps.get_ref();
        if !LINK_SPEEDS_MBPS.contains(&link) {
            return self.fail(
                h.link_speed_mbps.span(),
                format!(
                    "link_speed_mbps = {link} is not an Ethernet speed; allowed: {LINK_SPEEDS_MBPS:?}"
                ),
            );
        }
        Ok(Hardware {
            cores,
            min_clock_mhz,
            nic_drivers,
            link_speed_mbps: link,
            xdp_mode: h.xdp_mode,
            af_xdp: h.af_xdp,
        })
    }

    /// At least one driver, each in the driver table, each with zero-copy
    /// AF_XDP if the profile binds that way.
    fn nic_drivers(
        &self,
        listed: &Spanned<Vec<Spanned<String>>>,
        af_xdp: AfXdpMode,
    ) -> Result<Vec<String>, ConfigError> {
        if listed.get_ref().is_empty() {
            return self.fail(
                listed.span(),
                "nic_drivers is empty: name the NIC drivers of this tier",
            );
        }
        let mut nic_drivers = Vec::new();
        for d in listed.get_ref() {
            let Some(support) = drivers::lookup(d.get_ref()) else {
                let known: Vec<&str> = drivers::DRIVERS.iter().map(|d| d.driver).collect();
                return self.fail(
                    d.span(),
                    format!(
                        "driver {:?} is not in the driver table; known: {}",
                        d.get_ref(),
                        known.join(", ")
                    ),
                );
            };
            if af_xdp == AfXdpMode::ZeroCopy && support.zero_copy_since.is_none() {
                return self.fail(
                    d.span(),
                    format!(
                        "driver {:?} has no AF_XDP zero-copy; use af_xdp = \"copy\" or drop the driver",
                        d.get_ref()
                    ),
                );
            }
            nic_drivers.push(d.get_ref().clone());
        }
        Ok(nic_drivers)
    }

    /// `[runtime]` on a box of `cores` CPUs: workers and their cores, the
    /// UMEM and its rings, batches, the overload cap and rate limits.
    fn runtime(&self, r: &RawRuntime, cores: u32) -> Result<RuntimeDefaults, ConfigError> {
        let queues = self.range("queues", &r.queues, 1, cores)?;
        let workers = self.one_worker_per_queue(r, queues)?;
        let control_core = self.range("control_core", &r.control_core, 0, cores - 1)?;
        let worker_cores = self.worker_cores(&r.worker_cores, cores, control_core)?;
        let frame_size = *r.frame_size.get_ref();
        if frame_size != 2048 && frame_size != 4096 {
            return self.fail(
                r.frame_size.span(),
                format!("frame_size = {frame_size}: aligned AF_XDP frames are 2048 or 4096 bytes"),
            );
        }
        let fill_ring = self.ring("fill_ring", &r.fill_ring)?;
        let completion_ring = self.ring("completion_ring", &r.completion_ring)?;
        let rx_ring = self.ring("rx_ring", &r.rx_ring)?;
        let tx_ring = self.ring("tx_ring", &r.tx_ring)?;
        if fill_ring < rx_ring {
            return self.fail(
                r.fill_ring.span(),
                format!("fill_ring = {fill_ring} is smaller than rx_ring = {rx_ring}: the fill ring must cover the RX ring or it runs empty"),
            );
        }
        let umem_frames = self.range("umem_frames", &r.umem_frames, 64, 1 << 22)?;
        if umem_frames < fill_ring + tx_ring {
            return self.fail(
                r.umem_frames.span(),
                format!(
                    "umem_frames = {umem_frames} cannot fill the fill ring ({fill_ring}) and the TX ring ({tx_ring}) at once; at least {} needed",
                    fill_ring + tx_ring
                ),
            );
        }
        let batch_size = self.range("batch_size", &r.batch_size, 1, rx_ring)?;
        let overload_cap_pps = self.range("overload_cap_pps", &r.overload_cap_pps, 1, 1 << 32)?;
        let worker_priority = match &r.worker_priority {
            Some(p) => self.range("worker_priority", p, 0, 99)?,
            None => 0,
        };
        let rl = &r.rate_limits;
        Ok(RuntimeDefaults {
            queues,
            workers,
            worker_cores,
            control_core,
            umem_frames,
            frame_size,
            fill_ring,
            completion_ring,
            rx_ring,
            tx_ring,
            batch_size,
            rate_limits: DefaultRateLimits {
                invite: self.bucket("invite", &rl.invite)?,
                register: self.bucket("register", &rl.register)?,
                other: self.bucket("other", &rl.other)?,
            },
            overload_cap_pps,
            worker_priority,
        })
    }

    /// `workers` equals `queues`, and `worker_cores` names a core for each.
    fn one_worker_per_queue(&self, r: &RawRuntime, queues: u32) -> Result<u32, ConfigError> {
        let workers = *r.workers.get_ref();
        if workers != queues {
            return self.fail(
                r.workers.span(),
                format!(
                    "workers = {workers} but queues = {queues}: dce-edge runs one worker per queue"
                ),
            );
        }
        if r.worker_cores.get_ref().len() != workers as usize {
            return self.fail(
                r.worker_cores.span(),
                format!(
                    "worker_cores names {} cores for {workers} workers",
                    r.worker_cores.get_ref().len()
                ),
            );
        }
        Ok(workers)
    }

    /// Worker cores exist, are not the control core, and are not shared.
    fn worker_cores(
        &self,
        worker_cores: &Spanned<Vec<Spanned<u32>>>,
        cores: u32,
        control_core: u32,
    ) -> Result<Vec<u32>, ConfigError> {
        let mut seen = BTreeSet::new();
        let mut checked = Vec::new();
        for core in worker_cores.get_ref() {
            let n = self.range("worker core", core, 0, cores - 1)?;
            if n == control_core {
                return self.fail(
                    core.span(),
                    format!("worker core {n} is the control_core; workers need cores of their own"),
                );
            }
            if !seen.insert(n) {
                return self.fail(core.span(), format!("worker core {n} is named twice"));
            }
            checked.push(n);
        }
        Ok(checked)
    }

    /// `[tuning]`: busy polling, interrupt moderation and the governor.
    fn tuning(&self, t: &RawTuning) -> Result<HostTuning, ConfigError> {
        let governor = match &t.governor {
            Some(g) if !GOVERNORS.contains(&g.get_ref().as_str()) => {
                return self.fail(
                    g.span(),
                    format!("governor {:?} is not one of {GOVERNORS:?}", g.get_ref()),
                );
            }
            Some(g) => Some(g.get_ref().clone()),
            None => None,
        };
        Ok(HostTuning {
            pin_irqs: t.pin_irqs,
            busy_poll_us: self.range("busy_poll_us", &t.busy_poll_us, 0, 100_000)?,
            busy_read_us: self.range("busy_read_us", &t.busy_read_us, 0, 100_000)?,
            napi_defer_hard_irqs: self.range(
                "napi_defer_hard_irqs",
                &t.napi_defer_hard_irqs,
                0,
                1000,
            )?,
            gro_flush_timeout_ns: self.range(
                "gro_flush_timeout_ns",
                &t.gro_flush_timeout_ns,
                0,
                100_000_000,
            )?,
            governor,
            isolate_workers: t.isolate_workers,
        })
    }

    /// `[band]`: the guide's figure and this project's split of it, a
    /// target above the tier's share with the basis it rests on (a
    /// measurement with its date, command and flood, or a model the target
    /// does not exceed), the flood the box must shed and the setup latency
    /// it must keep.
    fn band(&self, band: &Spanned<RawBand>, workers: u32) -> Result<Band, ConfigError> {
        let b = band.get_ref();
        if b.guide_cps.get_ref().as_slice() != [GUIDE_CPS.min, GUIDE_CPS.max] {
            return self.fail(
                b.guide_cps.span(),
                format!(
                    "guide_cps = {:?}: the architecture guide's figure for a Kamailio-class proxy is [{}, {}]",
                    b.guide_cps.get_ref(),
                    GUIDE_CPS.min,
                    GUIDE_CPS.max
                ),
            );
        }
        if b.tier_split.get_ref() != TIER_SPLIT {
            return self.fail(
                b.tier_split.span(),
                format!(
                    "tier_split = {:?}: the guide gives one range for all hardware; splitting it across tiers is this project's own, say tier_split = \"{TIER_SPLIT}\"",
                    b.tier_split.get_ref()
                ),
            );
        }
        let guide_min = self.range(
            "guide_cps_min",
            &b.guide_cps_min,
            GUIDE_CPS.min,
            GUIDE_CPS.max,
        )?;
        let guide_max = self.range(
            "guide_cps_max",
            &b.guide_cps_max,
            GUIDE_CPS.min,
            GUIDE_CPS.max,
        )?;
        if guide_min > guide_max {
            return self.fail(
                b.guide_cps_max.span(),
                format!("guide_cps_max = {guide_max} is below guide_cps_min = {guide_min}"),
            );
        }
        let target_cps = *b.target_cps.get_ref();
        if target_cps < guide_max {
            return self.fail(
                b.target_cps.span(),
                format!("target_cps = {target_cps} is below the guide's {guide_max} for this tier: dce-edge must beat a Kamailio-class proxy"),
            );
        }
        let Some(basis) = &b.target_basis else {
            return self.fail(
                band.span(),
                "[band] has no target_basis: say where target_cps comes from, \"measured\" (with measured_cps, measured_on, command, measured_flood_pps) or \"extrapolated\" (with model, model_us_per_call, model_us_per_call_two_workers)",
            );
        };
        let (measurement, model) = match basis.get_ref() {
            TargetBasis::Measured => (Some(self.measurement(b, basis, target_cps)?), None),
            TargetBasis::Extrapolated => (None, Some(self.model(b, basis, target_cps, workers)?)),
        };
        let flood_pps = self.range("flood_pps", &b.flood_pps, 1, 1_000_000_000)?;
        let pct = *b.flood_legit_success_pct.get_ref();
        if !(pct > 0.0 && pct <= 100.0) {
            return self.fail(
                b.flood_legit_success_pct.span(),
                format!("flood_legit_success_pct = {pct} must be above 0 and at most 100"),
            );
        }
        let setup_latency_p99_ms = self.range(
            "setup_latency_p99_ms",
            &b.setup_latency_p99_ms,
            1,
            GUIDE_SETUP_LATENCY_MS,
        )?;
        Ok(Band {
            guide_range_cps: GUIDE_CPS,
            tier_split: TIER_SPLIT.to_string(),
            guide_cps: CpsRange {
                min: guide_min,
                max: guide_max,
            },
            target_cps,
            target_basis: *basis.get_ref(),
            measured_cps: measurement.as_ref().map(|m| m.cps),
            measurement,
            model,
            measure_with: b.measure_with.clone(),
            flood_pps,
            flood_legit_success_pct: pct,
            setup_latency_p99_ms,
        })
    }
}

/// The basis checks of [`Check::band`].
impl Check<'_> {
    /// A measured basis: the capacity, its date, the command that measured
    /// it and the flood that ran; the target no higher than what held.
    fn measurement(
        &self,
        b: &RawBand,
        basis: &Spanned<TargetBasis>,
        target_cps: u32,
    ) -> Result<Measurement, ConfigError> {
        for (key, given) in [
            ("model", b.model.is_some()),
            ("model_us_per_call", b.model_us_per_call.is_some()),
            (
                "model_us_per_call_two_workers",
                b.model_us_per_call_two_workers.is_some(),
            ),
        ] {
            if given {
                return self.fail(
                    basis.span(),
                    format!("{key} is given but target_basis = \"measured\": a model belongs to an extrapolated target"),
                );
            }
        }
        let missing = |key: &str| {
            self.fail::<Measurement>(
                basis.span(),
                format!("target_basis = \"measured\" without {key}: a measured target states what held (measured_cps), when (measured_on), how (command) and under which flood (measured_flood_pps, 0 for none)"),
            )
        };
        let Some(cps) = &b.measured_cps else {
            return missing("measured_cps");
        };
        let Some(on) = &b.measured_on else {
            return missing("measured_on");
        };
        let Some(command) = &b.command else {
            return missing("command");
        };
        let Some(flood) = &b.measured_flood_pps else {
            return missing("measured_flood_pps");
        };
        let cps_v = self.range("measured_cps", cps, 1, u32::MAX)?;
        if !is_date(on.get_ref()) {
            return self.fail(
                on.span(),
                format!(
                    "measured_on = {:?} is not a date (YYYY-MM-DD)",
                    on.get_ref()
                ),
            );
        }
        if command.get_ref().trim().is_empty() {
            return self.fail(command.span(), "command is empty: say how it was measured");
        }
        if target_cps > cps_v {
            return self.fail(
                b.target_cps.span(),
                format!("target_cps = {target_cps} is above the measured {cps_v}: a measured target cannot exceed what held"),
            );
        }
        Ok(Measurement {
            cps: cps_v,
            on: on.get_ref().clone(),
            command: command.get_ref().clone(),
            flood_pps: *flood.get_ref(),
        })
    }

    /// An extrapolated basis: the model in words and its figures; the
    /// target no higher than what the model computes for the profile's
    /// workers.
    fn model(
        &self,
        b: &RawBand,
        basis: &Spanned<TargetBasis>,
        target_cps: u32,
        workers: u32,
    ) -> Result<CapacityModel, ConfigError> {
        for (key, given) in [
            ("measured_cps", b.measured_cps.is_some()),
            ("measured_on", b.measured_on.is_some()),
            ("command", b.command.is_some()),
            ("measured_flood_pps", b.measured_flood_pps.is_some()),
        ] {
            if given {
                return self.fail(
                    basis.span(),
                    format!("{key} is given but target_basis = \"extrapolated\": say \"measured\" if the tier was measured"),
                );
            }
        }
        let missing = |key: &str| {
            self.fail::<CapacityModel>(
                basis.span(),
                format!("target_basis = \"extrapolated\" without {key}: an extrapolated target states its model (model) and the figures it computes from (model_us_per_call, model_us_per_call_two_workers)"),
            )
        };
        let Some(text) = &b.model else {
            return missing("model");
        };
        let Some(one) = &b.model_us_per_call else {
            return missing("model_us_per_call");
        };
        let Some(two) = &b.model_us_per_call_two_workers else {
            return missing("model_us_per_call_two_workers");
        };
        if text.get_ref().trim().is_empty() {
            return self.fail(text.span(), "model is empty: state the model in words");
        }
        let us_one = self.range("model_us_per_call", one, 1.0, 1_000_000.0)?;
        let us_two = self.range("model_us_per_call_two_workers", two, us_one, 1_000_000.0)?;
        let supported = CapacityModel::compute(us_one, us_two, workers);
        if target_cps > supported {
            return self.fail(
                b.target_cps.span(),
                format!(
                    "target_cps = {target_cps} is above what its model supports: 1,000,000 / {us_one} us per call x {workers} workers{} = {supported} CPS",
                    if workers > 1 {
                        format!(" x {us_one}/{us_two} (one worker's CPU per call over two workers')")
                    } else {
                        String::new()
                    }
                ),
            );
        }
        Ok(CapacityModel {
            text: text.get_ref().clone(),
            us_per_call_one_worker: us_one,
            us_per_call_two_workers: us_two,
            workers,
            supported_cps: supported,
        })
    }
}

/// True for `YYYY-MM-DD` with a month 01-12 and a day 01-31.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || !digits(0..4) {
        return false;
    }
    if !digits(5..7) || !digits(8..10) {
        return false;
    }
    let month: u32 = s[5..7].parse().unwrap_or(0);
    let day: u32 = s[8..10].parse().unwrap_or(0);
    (1..=12).contains(&month) && (1..=31).contains(&day)
}
