//! Running the loaded program on a frame with `BPF_PROG_TEST_RUN`: no
//! interface needed. The unit tests of the filter and the CPU-cost figures
//! of a single program run use it.
//!
//! aya 0.14 does not wrap the command, so this module defines the part of
//! `union bpf_attr` it uses (linux/bpf.h, "anonymous struct used by
//! BPF_PROG_TEST_RUN command") and calls the `bpf` syscall itself.

use std::os::fd::{AsRawFd, BorrowedFd};

use super::FilterError;

/// `XDP_ABORTED`.
pub const XDP_ABORTED: u32 = 0;
/// `XDP_DROP`.
pub const XDP_DROP: u32 = 1;
/// `XDP_PASS`.
pub const XDP_PASS: u32 = 2;
/// `XDP_TX`.
pub const XDP_TX: u32 = 3;
/// `XDP_REDIRECT`.
pub const XDP_REDIRECT: u32 = 4;

const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// The `test` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// `struct xdp_md` as the test run takes it.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct XdpMd {
    /// Must be 0 on input.
    pub data: u32,
    /// Must be 0 on input.
    pub data_end: u32,
    /// Must be 0 on input.
    pub data_meta: u32,
    /// The interface the frame seems to arrive on (0: none).
    pub ingress_ifindex: u32,
    /// Its RX queue (needs `ingress_ifindex`).
    pub rx_queue_index: u32,
    /// Must be 0.
    pub egress_ifindex: u32,
}

/// What one run returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRun {
    /// The XDP action (`XDP_DROP`, `XDP_PASS`, ...).
    pub action: u32,
    /// The frame after the program (it may rewrite it).
    pub frame_out: Vec<u8>,
    /// Average nanoseconds per run, as the kernel measured it.
    pub duration_ns: u32,
}

/// Name of an XDP action, for messages.
pub fn action_name(action: u32) -> &'static str {
    match action {
        XDP_ABORTED => "XDP_ABORTED",
        XDP_DROP => "XDP_DROP",
        XDP_PASS => "XDP_PASS",
        XDP_TX => "XDP_TX",
        XDP_REDIRECT => "XDP_REDIRECT",
        _ => "unknown action",
    }
}

/// Runs the XDP program `prog` once on `frame`, with `ctx` when given
/// (ingress interface and RX queue).
pub fn run(prog: BorrowedFd<'_>, frame: &[u8], ctx: Option<XdpMd>) -> Result<TestRun, FilterError> {
    run_repeat(prog, frame, ctx, 1)
}

/// Like [`run`], `repeat` times in the kernel (for timing one program run).
pub fn run_repeat(
    prog: BorrowedFd<'_>,
    frame: &[u8],
    ctx: Option<XdpMd>,
    repeat: u32,
) -> Result<TestRun, FilterError> {
    let mut out = vec![0u8; frame.len() + 256];
    let mut ctx_in = ctx.unwrap_or_default();
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_size_out: out.len() as u32,
        data_in: frame.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat,
        ..Default::default()
    };
    if ctx.is_some() {
        attr.ctx_size_in = std::mem::size_of::<XdpMd>() as u32;
        attr.ctx_in = &mut ctx_in as *mut XdpMd as u64;
    }
    // SAFETY: the kernel reads `frame` and `ctx_in` (sizes given) and writes
    // at most data_size_out bytes into `out`; all of them stay alive and
    // unaliased across the call.
    #[allow(unsafe_code)]
    unsafe {
        test_run(&mut attr)?
    };
    out.truncate(attr.data_size_out as usize);
    Ok(TestRun {
        action: attr.retval,
        frame_out: out,
        duration_ns: attr.duration,
    })
}

/// `BPF_F_TEST_XDP_LIVE_FRAMES`: the frames a test run's program returns
/// `XDP_TX` or `XDP_REDIRECT` for really go out.
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

/// Runs `prog` `repeat` times on copies of `frame` in live-frame mode: each
/// run gets a fresh page-pool frame (with XDP headroom, as a NIC driver's
/// receive buffer has), and what the program redirects is transmitted, in
/// batches of `batch_size` (at most 256). This is the kernel's XDP traffic
/// generator: the frames enter a redirect target such as a veth as
/// `xdp_frame`s, with no socket buffer, the way a real NIC hands frames to
/// XDP. Runs in the calling thread (and its network namespace: the program's
/// redirect resolves interfaces there); returns when all runs are done.
pub fn run_live_frames(
    prog: BorrowedFd<'_>,
    frame: &[u8],
    repeat: u32,
    batch_size: u32,
) -> Result<(), FilterError> {
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        repeat,
        flags: BPF_F_TEST_XDP_LIVE_FRAMES,
        batch_size,
        ..Default::default()
    };
    // SAFETY: the kernel reads `frame` (size given); live-frame mode writes
    // no output. It stays alive and unaliased across the call.
    #[allow(unsafe_code)]
    unsafe {
        test_run(&mut attr)
    }
}

/// `BPF_PROG_TEST_RUN` with `attr`; the kernel fills in its outputs.
///
/// # Safety
/// Every buffer `attr` points at must be valid for its given size (read, or
/// written for `data_out`/`ctx_out`) and stay alive and unaliased for the
/// call.
#[allow(unsafe_code)]
unsafe fn test_run(attr: &mut TestRunAttr) -> Result<(), FilterError> {
    // SAFETY: the bpf syscall reads `attr` (size given) and the buffers it
    // points at, which the caller vouches for.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            attr as *mut TestRunAttr,
            std::mem::size_of::<TestRunAttr>() as u32,
        )
    };
    if rc != 0 {
        return Err(FilterError::TestRun(
            std::io::Error::last_os_error().to_string(),
        ));
    }
    Ok(())
}
