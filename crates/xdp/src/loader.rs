//! Loading, attaching, pinning and detaching the filter.
//!
//! A running filter pins its maps under `/sys/fs/bpf/dce-edge/<ifname>/`
//! (inside a network namespace other than PID 1's, or when PID 1's cannot
//! be read: `/sys/fs/bpf/dce-edge/netns-<inode>/<ifname>/`), so that a second
//! `dce-edge` process can read its counters and change its lists and bans.
//! The pins go when the filter is dropped; a leftover from a crashed run
//! (its owner process gone) is removed by the next start.

use std::ffi::CString;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};

use super::abi;
use super::config::{AttachMode, FilterConfig, VerdictMode};
use super::maps::{monotonic_ns, FilterMaps};
use super::FilterError;

/// The XDP program's function name in the object.
pub const PROGRAM_NAME: &str = "dce_filter";
/// Where bpffs is (or gets) mounted.
pub const BPFFS: &str = "/sys/fs/bpf";
/// Our folder inside it.
pub const PIN_ROOT: &str = "/sys/fs/bpf/dce-edge";

/// How the program ended up attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attached {
    /// In the driver.
    Native,
    /// In the generic path; `fell_back` when native was tried first (auto mode).
    Generic {
        /// True when auto mode tried native and it failed.
        fell_back: bool,
    },
}

impl Attached {
    /// "native" or "generic".
    pub fn name(&self) -> &'static str {
        match self {
            Attached::Native => "native",
            Attached::Generic { .. } => "generic",
        }
    }
}

/// A loaded XDP filter: the program, its configured maps, and (unless
/// loaded for tests) its attachment to an interface and its pins. Dropping
/// it detaches the program and removes the pins.
#[derive(Debug)]
pub struct Filter {
    maps: FilterMaps,
    attached: Option<Attached>,
    iface: Option<String>,
    pin_dir: Option<PathBuf>,
    // Last: dropping the object detaches its links and unloads the program
    // after the maps above were released.
    ebpf: Ebpf,
}

impl Deref for Filter {
    type Target = FilterMaps;
    fn deref(&self) -> &FilterMaps {
        &self.maps
    }
}

impl DerefMut for Filter {
    fn deref_mut(&mut self) -> &mut FilterMaps {
        &mut self.maps
    }
}

impl Filter {
    /// Loads the embedded program, configures every map from `cfg`, attaches
    /// it to `iface` in `mode`, and pins the maps for other processes.
    ///
    /// `AttachMode::Auto` tries native first; when the driver refuses, it
    /// attaches in generic mode and says so on stderr and in the stats
    /// (`fell_back_to_generic`). A filter already running on `iface` is an
    /// error; pins left by a dead process are replaced.
    pub fn load(cfg: &FilterConfig, iface: &str, mode: AttachMode) -> Result<Filter, FilterError> {
        cfg.validate().map_err(FilterError::Config)?;
        let ifindex = if_index(iface)?;
        let pin_dir = pin_dir_for(iface)?;
        prepare_pin_dir(&pin_dir)?;

        let mut filter = Filter::load_unattached(cfg)?;
        let attached = filter.attach(iface, mode)?;
        filter.iface = Some(iface.to_string());
        filter.attached = Some(attached);
        filter.maps.set_info(abi::Info {
            attach_mode: match attached {
                Attached::Native => abi::ATTACH_NATIVE,
                Attached::Generic { .. } => abi::ATTACH_GENERIC,
            },
            fell_back: matches!(attached, Attached::Generic { fell_back: true }) as u32,
            owner_pid: std::process::id(),
            ifindex,
            loaded_ns: monotonic_ns(),
            verdict_mode: if cfg.mode == VerdictMode::Redirect {
                abi::CFG_REDIRECT
            } else {
                0
            },
            _pad: 0,
        })?;
        filter.pin(&pin_dir)?;
        Ok(filter)
    }

    /// Loads and configures the program without attaching or pinning it:
    /// for BPF_PROG_TEST_RUN tests and benchmarks.
    pub fn load_unattached(cfg: &FilterConfig) -> Result<Filter, FilterError> {
        cfg.validate().map_err(FilterError::Config)?;
        let mut ebpf = EbpfLoader::new()
            .load(super::OBJECT)
            .map_err(|e| FilterError::Load(e.to_string()))?;
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or_else(|| FilterError::Load(format!("no program {PROGRAM_NAME} in the object")))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| FilterError::Load(e.to_string()))?;
        program
            .load()
            .map_err(|e| FilterError::Load(verifier_error(e)))?;
        let mut maps = FilterMaps::from_ebpf(&mut ebpf)?;
        maps.configure(cfg)?;
        maps.set_info(abi::Info {
            verdict_mode: if cfg.mode == VerdictMode::Redirect {
                abi::CFG_REDIRECT
            } else {
                0
            },
            loaded_ns: monotonic_ns(),
            owner_pid: std::process::id(),
            ..Default::default()
        })?;
        Ok(Filter {
            maps,
            attached: None,
            iface: None,
            pin_dir: None,
            ebpf,
        })
    }

    fn program(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(PROGRAM_NAME)
            .expect("checked at load")
            .try_into()
            .expect("checked at load")
    }

    fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<Attached, FilterError> {
        let attach = |program: &mut Xdp, m: XdpMode| {
            program.attach(iface, m).map(|_| ()).map_err(|e| {
                let mut reason = e.to_string();
                let mut source: Option<&dyn std::error::Error> = std::error::Error::source(&e);
                while let Some(s) = source {
                    reason.push_str(": ");
                    reason.push_str(&s.to_string());
                    source = s.source();
                }
                if reason.contains("Device or resource busy") || reason.contains("EBUSY") {
                    reason.push_str(&format!(
                        " (another XDP program is attached to {iface}: `ip link show {iface}`; \
                         remove it with `ip link set dev {iface} xdp off`)"
                    ));
                }
                reason
            })
        };
        match mode {
            AttachMode::Native => attach(self.program(), XdpMode::Driver)
                .map(|()| Attached::Native)
                .map_err(|reason| FilterError::Attach {
                    iface: iface.into(),
                    mode: "native",
                    reason,
                }),
            AttachMode::Generic => attach(self.program(), XdpMode::Skb)
                .map(|()| Attached::Generic { fell_back: false })
                .map_err(|reason| FilterError::Attach {
                    iface: iface.into(),
                    mode: "generic",
                    reason,
                }),
            AttachMode::Auto => match attach(self.program(), XdpMode::Driver) {
                Ok(()) => Ok(Attached::Native),
                Err(native_reason) => {
                    eprintln!(
                        "dce-edge: WARNING: native XDP on {iface} failed ({native_reason}); \
                         falling back to GENERIC mode, which is much slower. \
                         Use --mode native to refuse instead."
                    );
                    attach(self.program(), XdpMode::Skb)
                        .map(|()| Attached::Generic { fell_back: true })
                        .map_err(|reason| FilterError::Attach {
                            iface: iface.into(),
                            mode: "generic (after native failed)",
                            reason,
                        })
                }
            },
        }
    }

    fn pin(&mut self, dir: &Path) -> Result<(), FilterError> {
        std::fs::create_dir_all(dir).map_err(|e| FilterError::Pins {
            dir: dir.into(),
            reason: format!("cannot create: {e}"),
        })?;
        self.pin_dir = Some(dir.to_path_buf());
        for (name, map) in self.maps.named() {
            map.pin(dir.join(name)).map_err(|e| FilterError::Pins {
                dir: dir.into(),
                reason: format!("cannot pin {name}: {e}"),
            })?;
        }
        Ok(())
    }

    /// How the program is attached; `None` when loaded unattached.
    pub fn attached(&self) -> Option<Attached> {
        self.attached
    }

    /// The interface it is attached to.
    pub fn iface(&self) -> Option<&str> {
        self.iface.as_deref()
    }

    /// Where its maps are pinned.
    pub fn pin_dir(&self) -> Option<&Path> {
        self.pin_dir.as_deref()
    }

    /// The maps (also reachable through `Deref`).
    pub fn maps(&mut self) -> &mut FilterMaps {
        &mut self.maps
    }

    /// The loaded program's descriptor (for BPF_PROG_TEST_RUN).
    pub fn program_fd(&self) -> BorrowedFd<'_> {
        let program: &Xdp = self
            .ebpf
            .program(PROGRAM_NAME)
            .expect("checked at load")
            .try_into()
            .expect("checked at load");
        program.fd().expect("loaded").as_fd()
    }

    /// The kernel's id of the loaded program: what the interface reports
    /// while this filter is attached to it.
    pub fn program_id(&self) -> Result<u32, FilterError> {
        let program: &Xdp = self
            .ebpf
            .program(PROGRAM_NAME)
            .expect("checked at load")
            .try_into()
            .expect("checked at load");
        program
            .info()
            .map(|i| i.id())
            .map_err(|e| FilterError::Load(e.to_string()))
    }

    /// Runs the program once on `frame` through BPF_PROG_TEST_RUN.
    pub fn test_run(&self, frame: &[u8]) -> Result<super::test_run::TestRun, FilterError> {
        super::test_run::run(self.program_fd(), frame, None)
    }

    /// Detaches the program and removes the pins now (dropping does the same).
    pub fn detach(self) {
        drop(self);
    }
}

impl Drop for Filter {
    fn drop(&mut self) {
        if let Some(dir) = self.pin_dir.take() {
            remove_pins(&dir);
        }
        // The XDP link is released with `self.ebpf` (attached through a
        // bpf_link, or netlink on old kernels: aya detaches both on drop).
    }
}

/// A second process's view of a running filter: its pinned maps.
#[derive(Debug)]
pub struct Pinned {
    maps: FilterMaps,
    iface: String,
    dir: PathBuf,
}

impl Deref for Pinned {
    type Target = FilterMaps;
    fn deref(&self) -> &FilterMaps {
        &self.maps
    }
}

impl DerefMut for Pinned {
    fn deref_mut(&mut self) -> &mut FilterMaps {
        &mut self.maps
    }
}

impl Pinned {
    /// Opens the filter running on `iface` (in this network namespace).
    pub fn open(iface: &str) -> Result<Pinned, FilterError> {
        let dir = pin_dir_for(iface)?;
        if !dir.join("info").exists() {
            return Err(FilterError::NotRunning {
                iface: iface.into(),
                dir,
            });
        }
        let maps = FilterMaps::from_pins(&dir)?;
        Ok(Pinned {
            maps,
            iface: iface.into(),
            dir,
        })
    }

    /// Opens the only filter running in this network namespace; an error
    /// names the choices when there are none or several.
    pub fn open_only() -> Result<Pinned, FilterError> {
        let running = running_ifaces()?;
        match running.as_slice() {
            [one] => Pinned::open(one),
            [] => Err(FilterError::NotRunning {
                iface: "any interface".into(),
                dir: pin_base()?,
            }),
            many => Err(FilterError::Config(format!(
                "filters run on several interfaces ({}); pick one with --iface",
                many.join(", ")
            ))),
        }
    }

    /// The interface.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The pin directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Interfaces with a filter pinned in this network namespace.
pub fn running_ifaces() -> Result<Vec<String>, FilterError> {
    let base = pin_base()?;
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&base) {
        for e in entries.flatten() {
            if e.path().join("info").exists() {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    Ok(out)
}

fn verifier_error(e: aya::programs::ProgramError) -> String {
    match e {
        aya::programs::ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            // The log's tail says why; the whole log can be megabytes.
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            format!(
                "the kernel refused the program ({io_error}); verifier log tail:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        }
        other => other.to_string(),
    }
}

fn if_index(iface: &str) -> Result<u32, FilterError> {
    let name = CString::new(iface).map_err(|_| FilterError::NoInterface(iface.into()))?;
    // SAFETY: if_nametoindex reads the NUL-terminated string it is given and
    // nothing else; `name` lives across the call.
    #[allow(unsafe_code)]
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(FilterError::NoInterface(iface.into()));
    }
    Ok(index)
}

/// `/sys/fs/bpf/dce-edge`, or its `netns-<inode>` subfolder when this
/// process is in another network namespace than PID 1, so that interfaces
/// of the same name in two namespaces do not share pins. When PID 1's
/// namespace cannot be read (some sandboxes deny it even to root), the
/// subfolder is used too: sharing the base folder there would let a filter
/// in one namespace take another namespace's pins for its own. Mounts bpffs
/// at `/sys/fs/bpf` when nothing is mounted there.
pub fn pin_base() -> Result<PathBuf, FilterError> {
    ensure_bpffs()?;
    let ours = std::fs::read_link("/proc/thread-self/ns/net").ok();
    let init = std::fs::read_link("/proc/1/ns/net").ok();
    let base = PathBuf::from(PIN_ROOT);
    match (ours, init) {
        (Some(a), init) if init.as_ref() != Some(&a) => {
            // "net:[4026532285]" -> "netns-4026532285"
            let inode: String = a
                .to_string_lossy()
                .chars()
                .filter(char::is_ascii_digit)
                .collect();
            Ok(base.join(format!("netns-{inode}")))
        }
        _ => Ok(base),
    }
}

/// The pin directory of the filter on `iface`.
pub fn pin_dir_for(iface: &str) -> Result<PathBuf, FilterError> {
    if iface.is_empty() || iface.contains('/') || iface.len() > 15 {
        return Err(FilterError::NoInterface(iface.into()));
    }
    Ok(pin_base()?.join(iface))
}

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

fn is_bpffs(path: &str) -> bool {
    let Ok(c) = CString::new(path) else {
        return false;
    };
    // SAFETY: statfs fills the zeroed struct we own from a NUL-terminated path.
    #[allow(unsafe_code)]
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC
    }
}

/// Mounts a bpffs at `/sys/fs/bpf` unless one is there (PLATFORM.md: it is
/// not mounted by default on our machines).
pub fn ensure_bpffs() -> Result<(), FilterError> {
    if is_bpffs(BPFFS) {
        return Ok(());
    }
    let src = CString::new("bpf").expect("no NUL");
    let target = CString::new(BPFFS).expect("no NUL");
    // SAFETY: mount with NUL-terminated strings that outlive the call and no
    // data argument; it changes only the mount table.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            src.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 && !is_bpffs(BPFFS) {
        return Err(FilterError::Pins {
            dir: BPFFS.into(),
            reason: format!(
                "no bpffs mounted and mounting one failed: {} (try `mount -t bpf bpf {BPFFS}`)",
                std::io::Error::last_os_error()
            ),
        });
    }
    Ok(())
}

/// True when `pid` is a running process. A zombie (dead, not yet reaped
/// by its parent: an edge killed under a supervisor or container init that
/// is slow to reap) holds nothing any more and counts as dead, or a restart
/// would be refused until the zombie went.
fn pid_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')', since comm
        // may itself hold spaces and parentheses.
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            Some('Z' | 'X')
        ),
        Err(_) => Path::new(&format!("/proc/{pid}")).exists(),
    }
}

/// Clears the way for a new filter at `dir`: refuses when a live process
/// owns it, removes what a dead one left.
fn prepare_pin_dir(dir: &Path) -> Result<(), FilterError> {
    if !dir.exists() {
        return Ok(());
    }
    if let Ok(maps) = FilterMaps::from_pins(dir) {
        if let Ok(info) = maps.info() {
            if info.owner_pid != std::process::id() && pid_alive(info.owner_pid) {
                return Err(FilterError::AlreadyRunning {
                    dir: dir.into(),
                    pid: info.owner_pid,
                });
            }
        }
    }
    eprintln!(
        "dce-edge: removing pins left by a filter that is no longer running: {}",
        dir.display()
    );
    remove_pins(dir);
    if dir.exists() {
        return Err(FilterError::Pins {
            dir: dir.into(),
            reason: "cannot remove the leftover pins".into(),
        });
    }
    Ok(())
}

fn remove_pins(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
    // A per-namespace folder goes with its last filter (fails while not empty).
    if let Some(parent) = dir.parent() {
        if parent
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("netns-"))
        {
            let _ = std::fs::remove_dir(parent);
        }
    }
}
