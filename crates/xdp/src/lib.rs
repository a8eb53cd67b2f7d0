//! The XDP filter: the embedded program (`ebpf/`), its configuration (the
//! `[filter]` table), loading and attaching it, its maps (lists, operator
//! and automatic bans, verified sources, counters, top sources, the XSKMAP,
//! the capture of dropped frames) and the commands around it
//! (`dce-edge filter`, `stats`, `ban`, `unban`, `allow`, `capture`).
//!
//! The appliance's control thread uses [`Filter`]; a second process uses
//! [`Pinned`]. Both dereference to [`FilterMaps`], which holds every map
//! operation.

pub mod abi;
pub mod attachment;
mod batch;
pub mod capture;
pub mod config;
pub mod loader;
pub mod maps;
pub mod stats;
pub mod test_run;

use std::path::PathBuf;

pub use config::{
    AttachMode, Cidr, FilterConfig, FilterSection, FragmentPolicy, RateConfig, RateLimits,
    VerdictMode,
};
pub use loader::{Attached, Filter, Pinned};
pub use maps::{
    AutoBan, BanEntry, BanOrigin, BanReason, FilterMaps, ListChanges, Unbanned, VerifiedEntry,
};
pub use stats::{DropCounts, FilterRates, FilterStats, StatsReport, TopSourceEntry};

/// The compiled XDP program (clang, from `build.rs`).
pub static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/dce_filter.bpf.o"));

/// What can go wrong loading, attaching or driving the filter.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// A configuration value the filter cannot take.
    #[error("filter configuration: {0}")]
    Config(String),
    /// The kernel refused the program or the object is broken.
    #[error("cannot load the XDP program: {0}")]
    Load(String),
    /// No such interface.
    #[error("no network interface named {0:?} (in this network namespace)")]
    NoInterface(String),
    /// Attaching failed.
    #[error("cannot attach XDP to {iface} in {mode} mode: {reason}")]
    Attach {
        /// The interface.
        iface: String,
        /// The mode tried.
        mode: &'static str,
        /// What the kernel said.
        reason: String,
    },
    /// A map operation failed.
    #[error("XDP map {what}: {error}")]
    Map {
        /// Which map.
        what: &'static str,
        /// What failed.
        error: String,
    },
    /// Pinning, or opening pins, failed.
    #[error("pins in {dir}: {reason}")]
    Pins {
        /// The pin directory.
        dir: PathBuf,
        /// What failed.
        reason: String,
    },
    /// No filter runs on that interface.
    #[error("no dce-edge filter is running on {iface} (nothing pinned in {dir}); start `dce-edge filter` or `dce-edge run` first")]
    NotRunning {
        /// The interface asked for.
        iface: String,
        /// Where its pins would be.
        dir: PathBuf,
    },
    /// Another live process runs a filter there.
    #[error(
        "a dce-edge filter is already running there (pid {pid}, pins in {dir}); stop it first"
    )]
    AlreadyRunning {
        /// Its pin directory.
        dir: PathBuf,
        /// Its process.
        pid: u32,
    },
    /// A map has no room for another entry.
    #[error("XDP map {what} is full")]
    Full {
        /// Which map.
        what: &'static str,
    },
    /// BPF_PROG_TEST_RUN failed.
    #[error("BPF_PROG_TEST_RUN: {0}")]
    TestRun(String),
}
