//! No allocation in the steady state: a counting global allocator counts
//! the allocations made on a worker thread between two control messages,
//! while the worker receives, handles and answers thousands of datagrams,
//! in socket mode and in AF_XDP mode. The count must be zero.

use crate::common as dataplane_common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use aya::maps::XskMap;
use aya::programs::{Xdp, XdpMode};
use aya::Ebpf;
use dataplane::echo::{Echo, EchoDrop};
use dataplane::{
    Datagram, Dataplane, DataplaneConfig, IoMode, Outbox, PacketHandler, SocketMap, Timestamp,
};
use dataplane_common::{compile_xsk_redirect, find_clang, run_peer, Lab, TempDir};
use lab::privilege::{feature_or_skip, privileged_or_skip};

thread_local! {
    /// Whether allocations on this thread are being counted.
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    /// Allocations counted on this thread.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

struct CountingAllocator;

// SAFETY: forwards every call to the system allocator unchanged; the
// thread-locals are const-initialised Cells without destructors, so touching
// them cannot allocate or recurse.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn count() {
    let _ = MEASURING.try_with(|m| {
        if m.get() {
            let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
        }
    });
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// The reference echo, measured: `true` through the control ring starts
/// counting this thread's allocations, `false` stops. Stats: (allocations
/// in the window, datagrams echoed in the window).
struct MeasuredEcho {
    echo: Echo,
    echoed_before: u64,
    in_window: u64,
    allocations: u64,
    /// Allocate once per datagram: the control case proving the counter
    /// sees the worker thread.
    allocate: bool,
}

impl PacketHandler for MeasuredEcho {
    type Control = bool;
    type Stats = (u64, u64);
    type Drop = EchoDrop;
    type Event = ();

    fn handle(
        &mut self,
        now: Timestamp,
        pkt: &Datagram<'_>,
        out: &mut Outbox<'_>,
    ) -> Result<(), EchoDrop> {
        if self.allocate {
            std::hint::black_box(Vec::<u8>::with_capacity(16));
        }
        self.echo.handle(now, pkt, out)
    }

    fn on_control(&mut self, _now: Timestamp, start: bool) {
        if start {
            ALLOCATIONS.with(|a| a.set(0));
            self.echoed_before = self.echo.echoed();
            MEASURING.with(|m| m.set(true));
        } else {
            MEASURING.with(|m| m.set(false));
            self.allocations = ALLOCATIONS.with(|a| a.get());
            self.in_window = self.echo.echoed() - self.echoed_before;
        }
    }

    fn stats(&self) -> (u64, u64) {
        (self.allocations, self.in_window)
    }
}

/// Warms up, opens the window, sends `count` datagrams over each family,
/// closes the window; returns (allocations, echoed in window).
fn measure(
    lab: &Lab,
    config: &DataplaneConfig,
    map: Option<&mut dyn SocketMap>,
    count: u64,
    allocate: bool,
) -> (u64, u64) {
    let mut dp = Dataplane::start(config, map, |_| MeasuredEcho {
        echo: Echo::new(),
        echoed_before: 0,
        in_window: 0,
        allocations: 0,
        allocate,
    })
    .unwrap();
    let local = dp.local_addrs().to_vec();
    let (v4, v6) = (local[0], local[1]);
    // Warm-up: both families, so every buffer, table entry and code path
    // has been used once.
    let warm4 = lab
        .peer
        .spawn_thread(move || run_peer("198.18.40.2:0".parse().unwrap(), v4, 500, 64));
    let warm6 = lab
        .peer
        .spawn_thread(move || run_peer("[2001:2:0:40::2]:0".parse().unwrap(), v6, 500, 64));
    assert_eq!(warm4.unwrap().join().unwrap().unwrap().answered, 500);
    assert_eq!(warm6.unwrap().join().unwrap().unwrap().answered, 500);

    assert!(dp.broadcast(true).is_empty());
    std::thread::sleep(Duration::from_millis(50));
    let p4 = lab
        .peer
        .spawn_thread(move || run_peer("198.18.40.2:0".parse().unwrap(), v4, count, 64))
        .unwrap();
    let p6 = lab
        .peer
        .spawn_thread(move || run_peer("[2001:2:0:40::2]:0".parse().unwrap(), v6, count, 64))
        .unwrap();
    let r4 = p4.join().unwrap().unwrap();
    let r6 = p6.join().unwrap().unwrap();
    assert_eq!(r4.answered, count, "{r4:?}");
    assert_eq!(r6.answered, count, "{r6:?}");
    assert!(dp.broadcast(false).is_empty());
    let snaps = dp.snapshots(Duration::from_secs(10));
    assert_eq!(snaps.len(), 1);
    let (allocations, in_window) = snaps[0].handler;
    dp.stop().unwrap();
    (allocations, in_window)
}

#[test]
fn socket_mode_worker_does_not_allocate_in_steady_state() {
    if !privileged_or_skip("socket_mode_worker_does_not_allocate_in_steady_state") {
        return;
    }
    let lab = Lab::new(40);
    let mut config = DataplaneConfig::new(
        IoMode::Socket,
        "",
        vec![
            "198.18.40.1:0".parse().unwrap(),
            "[2001:2:0:40::1]:0".parse().unwrap(),
        ],
        &[0],
    );
    config.idle.busy_polls = 16;
    let (allocations, in_window) = lab
        .edge
        .enter(|| measure(&lab, &config, None, 10_000, false))
        .unwrap();
    // Warm-up datagrams of the measured peers also count; at least the
    // 20,000 measured ones went through the window.
    assert!(in_window >= 20_000, "{in_window}");
    assert_eq!(
        allocations, 0,
        "allocations while echoing {in_window} datagrams"
    );
}

#[test]
fn afxdp_worker_does_not_allocate_in_steady_state() {
    let test = "afxdp_worker_does_not_allocate_in_steady_state";
    if !privileged_or_skip(test) {
        return;
    }
    let clang = find_clang();
    if !feature_or_skip(test, clang.is_some(), "clang", "apt-get install clang") {
        return;
    }
    let tmp = TempDir::new("xsa");
    let obj = compile_xsk_redirect(clang.unwrap(), &tmp.0, 5060);
    let lab = Lab::new(41);
    // The measured peers use subnet 40's addresses in `measure`; give the
    // AF_XDP lab those too.
    lab.edge.addr_up(&lab.edge_if, "198.18.40.1/24").unwrap();
    lab.edge.addr_up(&lab.edge_if, "2001:2:0:40::1/64").unwrap();
    lab.peer.addr_up(&lab.peer_if, "198.18.40.2/24").unwrap();
    lab.peer.addr_up(&lab.peer_if, "2001:2:0:40::2/64").unwrap();
    let mut config = DataplaneConfig::new(
        IoMode::AfXdp,
        &lab.edge_if,
        vec![
            "198.18.40.1:5060".parse().unwrap(),
            "[2001:2:0:40::1]:5060".parse().unwrap(),
        ],
        &[0],
    );
    config.xsk.frame_count = 1024;
    config.xsk.fill_ring = 512;
    config.xsk.rx_ring = 256;
    config.xsk.tx_ring = 256;
    config.xsk.completion_ring = 256;
    config.idle.busy_polls = 16;
    let (allocations, in_window) = lab
        .edge
        .enter(|| {
            let mut bpf = Ebpf::load_file(&obj).unwrap();
            let prog: &mut Xdp = bpf.program_mut("xsk_redirect").unwrap().try_into().unwrap();
            prog.load().unwrap();
            prog.attach(&lab.edge_if, XdpMode::Driver).unwrap();
            let mut map = XskMap::try_from(bpf.map_mut("xsks_map").unwrap()).unwrap();
            measure(&lab, &config, Some(&mut map), 10_000, false)
        })
        .unwrap();
    assert!(in_window >= 20_000, "{in_window}");
    assert_eq!(
        allocations, 0,
        "allocations while echoing {in_window} datagrams"
    );
}

#[test]
fn counting_allocator_sees_allocations_on_the_worker_thread() {
    if !privileged_or_skip("counting_allocator_sees_allocations_on_the_worker_thread") {
        return;
    }
    let lab = Lab::new(42);
    lab.edge.addr_up(&lab.edge_if, "198.18.40.1/24").unwrap();
    lab.edge.addr_up(&lab.edge_if, "2001:2:0:40::1/64").unwrap();
    lab.peer.addr_up(&lab.peer_if, "198.18.40.2/24").unwrap();
    lab.peer.addr_up(&lab.peer_if, "2001:2:0:40::2/64").unwrap();
    let config = DataplaneConfig::new(
        IoMode::Socket,
        "",
        vec![
            "198.18.40.1:0".parse().unwrap(),
            "[2001:2:0:40::1]:0".parse().unwrap(),
        ],
        &[0],
    );
    let (allocations, in_window) = lab
        .edge
        .enter(|| measure(&lab, &config, None, 1_000, true))
        .unwrap();
    assert!(in_window >= 2_000, "{in_window}");
    assert!(allocations >= in_window, "{allocations} < {in_window}");
}
