//! Loading, attaching, pinning and detaching the filter.
//!
//! A running filter pins its maps under `/sys/fs/bpf/dce-edge/<ifname>/`
//! (inside a network namespace other than PID 1's, or when PID 1's cannot
//! be read: `/sys/fs/bpf/dce-edge/netns-<inode>/<ifname>/`), so that a second
//! `dce-edge` process can read its counters and change its lists and bans.
//! The pins go when the filter is dropped; a leftover from a crashed run
//! (its owner process gone) is removed by the next start. Pins outlive the
//! interface and the namespace they were made for (and a namespace's inode
//! is reused by the next one), so a folder counts as a running filter only
//! while its program is attached to the interface of that name here
//! ([`pin_state`]).

use std::ffi::CString;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};

use super::abi;
use super::attachment;
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
        private_pin_dirs(&pin_dir, false)?;
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
            ..Default::default()
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
        private_pin_dirs(dir, true)?;
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

    /// The kernel's id of the loaded program (what `ip link` and `bpftool`
    /// show): a reload keeps it, a restart changes it.
    pub fn program_id(&self) -> Option<u32> {
        let program: &Xdp = self.ebpf.program(PROGRAM_NAME)?.try_into().ok()?;
        program.info().ok().map(|i| i.id())
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
        let candidates = pin_dirs_for(iface)?;
        let Some(dir) = candidates.iter().find(|d| d.join("info").exists()).cloned() else {
            return Err(FilterError::NotRunning {
                iface: iface.into(),
                dir: candidates
                    .into_iter()
                    .next()
                    .expect("at least one pin folder"),
            });
        };
        // Pins are only trusted in folders nobody else could have filled.
        private_pin_dirs(&dir, false)?;
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

/// Interfaces of this network namespace with a filter running on them:
/// pin folders whose program is attached to the interface they are named
/// for ([`pin_state`]). A folder that no loaded program uses any more (its
/// process died without removing it) is removed on the way; one whose
/// program still runs elsewhere (its interface was deleted or moved) is
/// skipped and left to its owner.
pub fn running_ifaces() -> Result<Vec<String>, FilterError> {
    let mut out = Vec::new();
    for base in pin_bases()? {
        if let Ok(entries) = std::fs::read_dir(&base) {
            for e in entries.flatten() {
                let dir = e.path();
                if !dir.join("info").exists() {
                    continue;
                }
                let iface = e.file_name().to_string_lossy().into_owned();
                match pin_state(&dir, &iface) {
                    PinState::Running | PinState::Unknown(_) => out.push(iface),
                    PinState::Stale {
                        orphaned: Some(map),
                        ..
                    } => remove_orphaned_pins(&dir, map),
                    PinState::Stale { orphaned: None, .. } => {}
                }
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Whether the filter pinned in a folder runs, judged from inside the
/// folder's own network namespace (the only one whose interfaces can be
/// seen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinState {
    /// Its program is attached to the interface the folder is named for.
    Running,
    /// It does not run on that interface here.
    Stale {
        /// Why, for a person.
        reason: String,
        /// The id of its `config` map when no loaded program uses its maps
        /// any more: whatever made the folder is gone, and removing it
        /// loses nothing.
        orphaned: Option<u32>,
    },
    /// The kernel's answers could not be read (why): taken as running, as
    /// before the check.
    Unknown(String),
}

/// Judges the pin folder `dir` of a filter on `iface` from the calling
/// thread's network namespace, which must be the folder's own ([`pin_bases`]
/// names no other): running only when an interface of that name exists
/// here and the XDP program attached to it is the one that uses these
/// pinned maps. A folder left by a filter whose interface (or whole
/// namespace) is gone is stale, also when a later namespace got the same
/// inode and so the same folder.
pub fn pin_state(dir: &Path, iface: &str) -> PinState {
    // `config` is pinned first and read by every run of the program.
    let map = match attachment::pinned_map_id(&dir.join("config")) {
        Ok(id) => id,
        Err(e) => return PinState::Unknown(format!("cannot open its maps: {e}")),
    };
    let stale = |reason: String| PinState::Stale {
        reason,
        orphaned: (attachment::map_in_use(map) == Some(false)).then_some(map),
    };
    match attachment::link(iface) {
        Err(e) => PinState::Unknown(format!("cannot list the interfaces: {e}")),
        Ok(None) => stale(format!("no interface {iface} in this network namespace")),
        Ok(Some(attachment::Link {
            xdp_program: None, ..
        })) => stale(format!("no XDP program is attached to {iface}")),
        Ok(Some(attachment::Link {
            xdp_program: Some(program),
            ..
        })) => match attachment::program_uses_map(program, map) {
            Some(true) => PinState::Running,
            Some(false) => stale(format!(
                "the XDP program on {iface} (id {program}) is not the one these pins belong to"
            )),
            None => PinState::Unknown(format!(
                "cannot read the maps of the XDP program on {iface} (id {program})"
            )),
        },
    }
}

/// Removes the folder `dir` judged orphaned while its `config` map still
/// is `map`: a filter that started on the same interface since then has
/// pinned maps of its own there, and those stay.
fn remove_orphaned_pins(dir: &Path, map: u32) {
    if attachment::pinned_map_id(&dir.join("config")).ok() == Some(map) {
        eprintln!(
            "dce-edge: removing pins that no running filter uses: {}",
            dir.display()
        );
        remove_pins(dir);
    }
}

/// Removes the pin folders under `netns-<inode>` that no running filter
/// owns (its program is unloaded, or its owner process, not this one, is
/// dead), and returns them. For whoever made that network namespace and
/// is about to delete it (the lab, after a child it ran was killed): call
/// it while the namespace still exists, so that its inode, and with it the
/// folder, cannot belong to another namespace yet. Folders of filters that
/// still run, and folders whose maps cannot be read, are left alone.
pub fn remove_dead_pins_of_netns(inode: u64) -> Result<Vec<PathBuf>, FilterError> {
    let base = PathBuf::from(PIN_ROOT).join(format!("netns-{inode}"));
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(&base) else {
        return Ok(removed);
    };
    private_pin_dirs(&base, false)?;
    for e in entries.flatten() {
        let dir = e.path();
        let unloaded = attachment::pinned_map_id(&dir.join("config"))
            .ok()
            .and_then(attachment::map_in_use)
            == Some(false);
        let owner_dead = FilterMaps::from_pins(&dir)
            .ok()
            .and_then(|m| m.info().ok())
            .is_some_and(|i| i.owner_pid != std::process::id() && !pid_alive(i.owner_pid));
        if unloaded || owner_dead {
            remove_pins(&dir);
            if dir.exists() {
                return Err(FilterError::Pins {
                    dir,
                    reason: "cannot remove the leftover pins".into(),
                });
            }
            removed.push(dir);
        }
    }
    Ok(removed)
}

/// What [`remove_leftover_pins`] found in one pin folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinFolder {
    /// Left by a process that is gone; removed.
    Removed(PathBuf),
    /// Its filter's process still runs; left alone.
    Running {
        /// The folder.
        dir: PathBuf,
        /// The process that owns it.
        pid: u32,
    },
}

/// Removes the pins a filter on `iface` left when its process died without
/// detaching (killed, or crashed): what the next start would remove anyway,
/// for a service manager that cleans up after a failed unit. The pins of a
/// filter whose process still runs are left alone. The XDP program itself
/// goes with its process (it is attached through a bpf_link held by the
/// process's descriptor).
pub fn remove_leftover_pins(iface: &str) -> Result<Vec<PinFolder>, FilterError> {
    let mut out = Vec::new();
    for dir in pin_dirs_for(iface)? {
        if !dir.exists() {
            continue;
        }
        match live_owner(&dir) {
            Some(pid) => out.push(PinFolder::Running { dir, pid }),
            None => {
                remove_pins(&dir);
                if dir.exists() {
                    return Err(FilterError::Pins {
                        dir,
                        reason: "cannot remove the leftover pins".into(),
                    });
                }
                out.push(PinFolder::Removed(dir));
            }
        }
    }
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
    Ok(pin_bases()?.swap_remove(0))
}

/// Every folder a filter in this network namespace may have pinned in,
/// [`pin_base`] first. In PID 1's namespace that is also its
/// `netns-<inode>` subfolder: a filter there that could not read PID 1's
/// namespace (a service run without CAP_SYS_PTRACE cannot) pinned in it,
/// and a reader that can read it must still find that filter. Only this
/// namespace's own folders are ever named.
pub fn pin_bases() -> Result<Vec<PathBuf>, FilterError> {
    ensure_bpffs()?;
    Ok(pin_bases_of(
        std::fs::read_link("/proc/thread-self/ns/net").ok(),
        std::fs::read_link("/proc/1/ns/net").ok(),
    ))
}

/// [`pin_bases`] from this thread's network namespace link (`net:[inode]`)
/// and PID 1's, each `None` when it could not be read.
fn pin_bases_of(ours: Option<PathBuf>, init: Option<PathBuf>) -> Vec<PathBuf> {
    let base = PathBuf::from(PIN_ROOT);
    // "net:[4026532285]" -> "netns-4026532285"
    let own_folder = |ns: &Path| {
        let inode: String = ns
            .to_string_lossy()
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        base.join(format!("netns-{inode}"))
    };
    match (ours, init) {
        (Some(a), Some(init)) if init == a => {
            let own = own_folder(&a);
            vec![base, own]
        }
        (Some(a), _) => vec![own_folder(&a)],
        (None, _) => vec![base],
    }
}

/// The pin directory of the filter on `iface`.
pub fn pin_dir_for(iface: &str) -> Result<PathBuf, FilterError> {
    Ok(pin_dirs_for(iface)?.swap_remove(0))
}

/// Every pin directory a filter on `iface` in this namespace may have
/// ([`pin_bases`]), [`pin_dir_for`] first.
pub fn pin_dirs_for(iface: &str) -> Result<Vec<PathBuf>, FilterError> {
    if iface.is_empty() || iface.contains('/') || iface.len() > 15 {
        return Err(FilterError::NoInterface(iface.into()));
    }
    Ok(pin_bases()?.into_iter().map(|b| b.join(iface)).collect())
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

/// Checks every folder from [`PIN_ROOT`] down to `dir`: each must be a real
/// directory (not a symbolic link) owned by this process's user, or by
/// root, and writable by nobody else; pins in a folder another user could
/// write might be swapped for maps of that user's choosing (an empty
/// allowlist, a ban list of their own), and `dce-edge` commands would
/// trust them. With `create`, missing folders are made root-only (0700);
/// a folder of ours that others may read is narrowed to 0700 too.
pub fn private_pin_dirs(dir: &Path, create: bool) -> Result<(), FilterError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let refuse = |at: &Path, reason: String| FilterError::Pins {
        dir: at.to_path_buf(),
        reason,
    };
    let root = Path::new(PIN_ROOT);
    let rel = dir
        .strip_prefix(root)
        .map_err(|_| refuse(dir, format!("pins must live under {PIN_ROOT}")))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    let me = unsafe { libc::geteuid() };
    let mut at = root.to_path_buf();
    let mut levels = vec![at.clone()];
    for c in rel.components() {
        at.push(c);
        levels.push(at.clone());
    }
    for level in levels {
        match std::fs::symlink_metadata(&level) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !create {
                    return Ok(());
                }
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&level)
                    .or_else(|e| {
                        // Another filter starting at the same moment made it.
                        if e.kind() == std::io::ErrorKind::AlreadyExists {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(|e| refuse(&level, format!("cannot create: {e}")))?;
                let meta = std::fs::symlink_metadata(&level)
                    .map_err(|e| refuse(&level, format!("cannot read: {e}")))?;
                check_private(&level, &meta, me)?;
            }
            Err(e) => return Err(refuse(&level, format!("cannot read: {e}"))),
            Ok(meta) => {
                check_private(&level, &meta, me)?;
                if meta.mode() & 0o077 != 0 && meta.uid() == me {
                    let _ =
                        std::fs::set_permissions(&level, std::fs::Permissions::from_mode(0o700));
                }
            }
        }
    }
    Ok(())
}

/// The system user the Debian package runs `dce-edge run` as (its unit's
/// `User=`): pins it made are trusted like root's, so that root's
/// `dce-edge` commands can read the service's maps. Only root can create a
/// user, so no other user can own pins under that name.
pub const SERVICE_USER: &str = "dce-edge";

/// The uid of [`SERVICE_USER`] in `/etc/passwd` when it is a system
/// account (below 1000, as `adduser --system` makes it); `None` otherwise.
fn service_uid() -> Option<u32> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd_system_uid(&passwd, SERVICE_USER)
}

/// The uid of `user` in a passwd file's text, when it is below 1000.
fn passwd_system_uid(passwd: &str, user: &str) -> Option<u32> {
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[0] == user)
        .and_then(|f| f[2].parse::<u32>().ok())
        .filter(|&uid| uid != 0 && uid < 1000)
}

fn check_private(level: &Path, meta: &std::fs::Metadata, me: u32) -> Result<(), FilterError> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |reason: String| FilterError::Pins {
        dir: level.to_path_buf(),
        reason,
    };
    if !meta.file_type().is_dir() {
        return Err(refuse(
            "is not a directory (or is a symbolic link): refusing to pin or read pins there".into(),
        ));
    }
    if meta.uid() != me && meta.uid() != 0 && Some(meta.uid()) != service_uid() {
        return Err(refuse(format!(
            "belongs to user {}, not to this process's user {me}, root or the service user {SERVICE_USER}: its pins cannot be trusted",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refuse(format!(
            "others may write to it (mode {:o}): its pins cannot be trusted; chmod go-w it",
            meta.mode() & 0o777
        )));
    }
    Ok(())
}

/// Clears the way for a new filter at `dir`: refuses when a live process
/// owns it, removes what a dead one left.
fn prepare_pin_dir(dir: &Path) -> Result<(), FilterError> {
    if !dir.exists() {
        return Ok(());
    }
    if let Some(pid) = live_owner(dir) {
        return Err(FilterError::AlreadyRunning {
            dir: dir.into(),
            pid,
        });
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

/// The process other than this one that owns the pins at `dir`, if it is
/// still running.
fn live_owner(dir: &Path) -> Option<u32> {
    let info = FilterMaps::from_pins(dir).ok()?.info().ok()?;
    (info.owner_pid != std::process::id() && pid_alive(info.owner_pid)).then_some(info.owner_pid)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_system_account_named_dce_edge_is_the_service_user() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      dce-edge:x:110:118::/nonexistent:/usr/sbin/nologin\n\
                      alice:x:1000:1000::/home/alice:/bin/bash\n";
        assert_eq!(passwd_system_uid(passwd, "dce-edge"), Some(110));
        assert_eq!(
            passwd_system_uid(passwd, "alice"),
            None,
            "not a system account"
        );
        assert_eq!(
            passwd_system_uid(passwd, "root"),
            None,
            "root is trusted anyway"
        );
        assert_eq!(passwd_system_uid(passwd, "dce"), None, "whole names only");
        assert_eq!(
            passwd_system_uid("dce-edge:x:notanumber:1::/:/bin/false\n", "dce-edge"),
            None
        );
    }

    fn link(inode: u64) -> Option<PathBuf> {
        Some(PathBuf::from(format!("net:[{inode}]")))
    }

    #[test]
    fn in_pid_1s_namespace_a_reader_also_looks_where_an_unprivileged_filter_pins() {
        assert_eq!(
            pin_bases_of(link(4026531833), link(4026531833)),
            [
                PathBuf::from(PIN_ROOT),
                PathBuf::from(PIN_ROOT).join("netns-4026531833")
            ]
        );
    }

    #[test]
    fn another_namespace_or_an_unreadable_pid_1_uses_only_its_own_folder() {
        let own = vec![PathBuf::from(PIN_ROOT).join("netns-4026532525")];
        assert_eq!(pin_bases_of(link(4026532525), link(4026531833)), own);
        assert_eq!(pin_bases_of(link(4026532525), None), own);
    }
}
