//! One run, same box, same flood: SIP INVITEs from 1024 sources into a veth,
//! from each of two senders pinned to CPU 0, disposed of by:
//!
//! 1. the dce-edge XDP filter, native and generic (per-source INVITE budget
//!    of 1/s, so all but each source's first packet is `rate_limit`);
//! 2. an equivalent nftables rule set at the netdev ingress hook (UDP dport
//!    5060, payload starting "INVITE", per-source meter 1/s);
//! 3. a userspace UDP socket that reads with recvmmsg and discards.
//!
//! The senders: a raw AF_PACKET `sendmmsg` sender of our own (socket
//! buffers, which the veth copies into a page of its own before native XDP
//! runs, for want of headroom), then the kernel's XDP traffic generator
//! (`BPF_PROG_TEST_RUN` in live-frame mode running `xdp_gen.bpf.c`, paced,
//! 200,000 packets per second by default, DCE_BENCH_LIVE_PPS): the veth's
//! peer receives xdp_frames with headroom, as XDP receives frames from a NIC
//! driver, and only the paths past XDP build socket buffers.
//!
//! It prints the packets per second each path handled and what the box
//! spent per packet: with the AF_PACKET sender, RPS moves the receive work
//! of the generic-XDP, nftables and socket paths to CPU 1, whose kernel time
//! (/proc/stat) is divided by the packets handled; native XDP runs in the
//! veth's NAPI on the sender's CPU, so for every path the bench also prints
//! the whole box's kernel time (plus the socket reader's user time) beyond
//! what the sender alone spends on the same packets (measured first, with
//! the receiving end of the veth down), per packet handled. With the
//! generator there is no RPS (every path runs on CPU 0; the socket reader
//! has CPU 1) and only that whole-box figure applies. It also times the
//! program alone with BPF_PROG_TEST_RUN, on the flood INVITE and on the
//! paths a spoofed flood and a verified caller take. Needs root, nft,
//! ethtool and clang.
//!
//! `cargo bench -p dce-lab --bench xdp_drop` (DCE_BENCH_PACKETS sets the
//! flood size, default 1,000,000).

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aya::programs::Xdp;
use lab::netns::{unique_name, veth_pair, Netns};
use lab::privilege::{have_program, is_root};
use wire::build::{sip_request, UdpFrameBuilder as UdpFrame};
use xdp::test_run::{run_live_frames, run_repeat};
use xdp::{AttachMode, Filter, FilterConfig, RateConfig, VerdictMode};

const SOURCES: u32 = 1024;
const SENDER: &str = "198.18.9.1";
const RECEIVER: &str = "198.18.9.2";

/// Kernel CPU time (system + irq + softirq) per CPU, in /proc/stat ticks:
/// [all CPUs, cpu0, cpu1]. User time is left out: other work on this shared
/// box is mostly user time, while receiving packets is kernel work.
fn kernel_ticks() -> [u64; 3] {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let mut out = [0u64; 3];
    for line in stat.lines() {
        let mut it = line.split_whitespace();
        let slot = match it.next() {
            Some("cpu") => 0,
            Some("cpu0") => 1,
            Some("cpu1") => 2,
            _ => continue,
        };
        // user nice system idle iowait irq softirq steal ...
        let v: Vec<u64> = it.map(|x| x.parse().unwrap_or(0)).collect();
        out[slot] = v[2] + v[5] + v[6];
    }
    out
}

fn ticks_to_ns(t: u64) -> f64 {
    t as f64 * 1e9 / sys::clock_ticks_per_second() as f64
}

/// CPU time of the calling thread, user and system, in nanoseconds.
fn thread_cpu_ns() -> (f64, f64) {
    let (user, system) = sys::thread_user_system_time();
    (user.as_nanos() as f64, system.as_nanos() as f64)
}

/// Pins the calling thread to one CPU.
fn pin_to_cpu(cpu: usize) {
    let _ = sys::pin_to_core(cpu);
}

fn mac_of(ns: &Netns, iface: &str) -> [u8; 6] {
    let out = ns
        .run("cat", &[&format!("/sys/class/net/{iface}/address")])
        .unwrap();
    let mut mac = [0u8; 6];
    for (m, h) in mac.iter_mut().zip(out.trim().split(':')) {
        *m = u8::from_str_radix(h, 16).unwrap();
    }
    mac
}

/// One INVITE per source.
fn invite_frames(dmac: [u8; 6], smac: [u8; 6]) -> Vec<Vec<u8>> {
    (0..SOURCES)
        .map(|i| {
            let src = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 128, 0)) + i);
            let mut f = UdpFrame::new(
                IpAddr::V4(src),
                RECEIVER.parse().unwrap(),
                5060,
                5060,
                &sip_request("INVITE", "Flood/1.0", "flood"),
            );
            f.macs = (dmac, smac);
            f.build()
        })
        .collect()
}

/// A bounded raw sender: `count` frames round robin from `frames`, through
/// an AF_PACKET socket on `iface`, 64 per sendmmsg. Returns how many the
/// kernel took (a full queue refuses some, retried after a yield).
fn send_raw(iface: &str, frames: &[Vec<u8>], count: u64, deadline: Instant) -> u64 {
    const BATCH: usize = 64;
    let sock = sys::PacketSocket::open(iface).expect("AF_PACKET socket");
    let mut sent = 0u64;
    let mut next = 0usize;
    let mut batch: Vec<&[u8]> = Vec::with_capacity(BATCH);
    // A link that takes nothing for 2 s (a veth whose peer is down may
    // refuse every packet) ends the flood early.
    let mut progress = Instant::now();
    while sent < count && Instant::now() < deadline {
        if progress.elapsed() > Duration::from_secs(2) {
            break;
        }
        let n = BATCH.min((count - sent) as usize);
        batch.clear();
        for i in 0..n {
            batch.push(&frames[(next + i) % frames.len()]);
        }
        match sock.send_batch(&batch) {
            Ok(0) => std::thread::yield_now(),
            Ok(k) => {
                progress = Instant::now();
                sent += k as u64;
                next = (next + k) % frames.len();
            }
            Err(e) => panic!("raw send: {e}"),
        }
    }
    sent
}

/// One flood: packets the sender got onto the wire, time, kernel CPU.
struct Flood {
    sent: u64,
    elapsed: Duration,
    kernel_all_ns: f64,
    kernel_cpu1_ns: f64,
    /// Packets the receiving interface dropped before the path saw them
    /// (its rx_dropped: the RPS backlog of CPU 1 was full). They were
    /// received and disposed of on this path's account, so each row counts
    /// them as handled: the cheaper way to count for the slower paths.
    backlog_dropped: u64,
}

/// How the flood gets into the veth.
enum Sender<'a> {
    /// Raw AF_PACKET sendmmsg of these frames, round robin: socket buffers,
    /// which a veth copies into a page of its own before native XDP sees
    /// them (they lack XDP's headroom).
    AfPacket(&'a [Vec<u8>]),
    /// The live-frame generator (`xdp_gen.bpf.c`) on this template: the
    /// veth's peer receives xdp_frames with headroom, as XDP gets frames
    /// from a NIC driver, and only paths past XDP build socket buffers.
    /// Paced at `pps` on average, so that every path can take the whole
    /// flood (a socket reader that only overflows its buffer would be timed
    /// dropping, not reading).
    XdpFrames {
        program: BorrowedFd<'a>,
        template: &'a [u8],
        pps: u64,
    },
}

/// Runs the live-frame generator for `count` frames at `pps` on average, in
/// test runs of 16,384 frames (each run sets up a page pool, which costs
/// milliseconds, so runs must be large). Returns how many it generated.
fn send_live_frames(
    program: BorrowedFd<'_>,
    template: &[u8],
    count: u64,
    pps: u64,
    deadline: Instant,
) -> u64 {
    const BURST: u64 = 16_384;
    let start = Instant::now();
    let mut sent = 0;
    while sent < count && Instant::now() < deadline {
        let n = BURST.min(count - sent);
        run_live_frames(program, template, n as u32, 64).expect("the live-frame generator runs");
        sent += n;
        let due = start + Duration::from_secs_f64(sent as f64 / pps as f64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
    sent
}

impl Sender<'_> {
    fn name(&self) -> &'static str {
        match self {
            Sender::AfPacket(_) => {
                "raw AF_PACKET sendmmsg (socket buffers, which the veth copies for native XDP)"
            }
            Sender::XdpFrames { .. } => {
                "XDP live frames, paced (xdp_frames with headroom, as a NIC driver hands them to XDP)"
            }
        }
    }
}

fn ifindex_of(ns: &Netns, iface: &str) -> u32 {
    ns.run("cat", &[&format!("/sys/class/net/{iface}/ifindex")])
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The live-frame generator, loaded but not attached: test runs drive it.
struct Generator {
    bpf: aya::Ebpf,
}

impl Generator {
    fn fd(&self) -> BorrowedFd<'_> {
        let program: &Xdp = self
            .bpf
            .program("flood_gen")
            .expect("flood_gen")
            .try_into()
            .expect("an XDP program");
        program.fd().expect("loaded").as_fd()
    }
}

/// Builds `benches/xdp_gen.bpf.c` with clang (which the filter's own build
/// needs too) and loads it to redirect into `ifindex` from `SOURCES`
/// addresses.
fn load_generator(dir: &std::path::Path, ifindex: u32) -> Generator {
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/xdp_gen.bpf.c");
    let obj = dir.join("xdp_gen.o");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let include = format!("-I/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    let status = std::process::Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", &include, "-c", src, "-o"])
        .arg(&obj)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {clang}: {e}"));
    assert!(status.success(), "{clang} failed building {src}");
    let object = std::fs::read(&obj).unwrap();
    let mut bpf = aya::EbpfLoader::new()
        .override_global("target_ifindex", &ifindex, true)
        .override_global("sources", &SOURCES, true)
        .load(&object)
        .expect("the generator loads");
    let program: &mut Xdp = bpf
        .program_mut("flood_gen")
        .expect("flood_gen")
        .try_into()
        .expect("an XDP program");
    program.load().expect("the generator passes the verifier");
    Generator { bpf }
}

/// Sends `count` packets from a thread in `sender`, pinned to CPU 0.
fn flood(b: &Bench<'_>, how: &Sender<'_>) -> Flood {
    let (sender, iface, count) = (b.snd, b.s_if, b.count);
    let dropped0 = rx_dropped(b.rcv, b.r_if);
    let k0 = kernel_ticks();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(60);
    let sent = match *how {
        Sender::AfPacket(frames) => sender
            .enter(|| {
                pin_to_cpu(0);
                send_raw(iface, frames, count, deadline)
            })
            .unwrap(),
        Sender::XdpFrames {
            program,
            template,
            pps,
        } => sender
            .enter(|| {
                pin_to_cpu(0);
                send_live_frames(program, template, count, pps, deadline)
            })
            .unwrap(),
    };
    let elapsed = t0.elapsed();
    // Let the receiving side drain what is queued.
    std::thread::sleep(Duration::from_millis(300));
    let k1 = kernel_ticks();
    Flood {
        sent,
        elapsed,
        kernel_all_ns: ticks_to_ns(k1[0] - k0[0]),
        kernel_cpu1_ns: ticks_to_ns(k1[2] - k0[2]),
        backlog_dropped: rx_dropped(b.rcv, b.r_if).saturating_sub(dropped0),
    }
}

/// The interface's rx_dropped counter.
fn rx_dropped(ns: &Netns, iface: &str) -> u64 {
    ns.run(
        "cat",
        &[&format!("/sys/class/net/{iface}/statistics/rx_dropped")],
    )
    .ok()
    .and_then(|v| v.trim().parse().ok())
    .unwrap_or(0)
}

/// UDP receive-buffer drops of the namespace (/proc/net/snmp Udp RcvbufErrors).
fn udp_rcvbuf_errors(ns: &Netns) -> u64 {
    let snmp = ns.run("cat", &["/proc/net/snmp"]).unwrap_or_default();
    let udp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Udp:")).collect();
    if udp.len() < 2 {
        return 0;
    }
    let names: Vec<&str> = udp[0].split_whitespace().collect();
    let values: Vec<&str> = udp[1].split_whitespace().collect();
    names
        .iter()
        .position(|n| *n == "RcvbufErrors")
        .and_then(|i| values.get(i))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct Row {
    name: &'static str,
    flood: Flood,
    handled: u64,
    /// Receive-side CPU: CPU 1's kernel time (+ the reader's own CPU).
    receive_ns: Option<f64>,
    /// User time spent receiving (the socket reader's), on top of kernel time.
    user_ns: f64,
}

impl Row {
    /// What the box spent on this path beyond sending, per packet handled:
    /// whole-box kernel time (+ the reader's user time) minus what the same
    /// number of packets cost the sender alone.
    fn beyond_sender_ns(&self, sender_ns_per_pkt: f64) -> f64 {
        (self.flood.kernel_all_ns + self.user_ns - sender_ns_per_pkt * self.flood.sent as f64)
            / self.handled.max(1) as f64
    }
}

fn main() {
    if !is_root() || !have_program("nft") {
        eprintln!("xdp_drop: needs root and nft; skipped");
        return;
    }
    let count: u64 = std::env::var("DCE_BENCH_PACKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);

    let snd = Netns::create("xbs").unwrap();
    let rcv = Netns::create("xbr").unwrap();
    let (s_if, r_if) = (unique_name("xs"), unique_name("xr"));
    veth_pair(&snd, &s_if, &rcv, &r_if).unwrap();
    snd.addr_up(&s_if, &format!("{SENDER}/24")).unwrap();
    rcv.addr_up(&r_if, &format!("{RECEIVER}/24")).unwrap();
    // The flood's sources are not on the link: route them back through it,
    // so reverse-path filtering does not drop them before the socket.
    rcv.ip(&["route", "add", "198.18.128.0/17", "dev", &r_if])
        .unwrap();
    rcv.run("sysctl", &["-qw", "net.ipv4.conf.all.rp_filter=0"])
        .ok();
    rcv.run(
        "sysctl",
        &["-qw", &format!("net.ipv4.conf.{r_if}.rp_filter=0")],
    )
    .ok();
    // RPS moves the receiving side's stack work (generic XDP, nftables, the
    // socket path) to CPU 1, away from the sender on CPU 0, so it can be
    // measured on its own.
    let rps = format!("/sys/class/net/{r_if}/queues/rx-0/rps_cpus");
    rcv.run("sh", &["-c", &format!("echo 2 > {rps}")]).unwrap();

    let frames = invite_frames(mac_of(&rcv, &r_if), mac_of(&snd, &s_if));
    let frame_len = frames[0].len();
    let dir = std::env::temp_dir().join(unique_name("xbench"));
    std::fs::create_dir_all(&dir).unwrap();

    let cfg = FilterConfig {
        mode: VerdictMode::Pass,
        rate_limits: xdp::RateLimits {
            invite: RateConfig { rate: 1, burst: 1 },
            ..Default::default()
        },
        ..FilterConfig::default()
    };
    // 0. The program alone: BPF_PROG_TEST_RUN, in-kernel loop, no interface.
    let program_ns = {
        let filter = Filter::load_unattached(&cfg).expect("the program loads");
        let cases = [
            ("flood INVITE (rate_limit)", frames[0].clone()),
            ("not SIP on 5060 (not_sip)", {
                let mut f = UdpFrame::new(
                    IpAddr::V4(Ipv4Addr::new(198, 18, 128, 1)),
                    RECEIVER.parse().unwrap(),
                    5060,
                    5060,
                    &[b'x'; 300],
                );
                f.macs.0 = [2, 0, 0, 0, 0, 2];
                f.build()
            }),
            ("UDP to port 53 (passed_other)", {
                let mut f = UdpFrame::new(
                    IpAddr::V4(Ipv4Addr::new(198, 18, 128, 1)),
                    RECEIVER.parse().unwrap(),
                    5060,
                    53,
                    &[b'x'; 300],
                );
                f.macs.0 = [2, 0, 0, 0, 0, 2];
                f.build()
            }),
        ];
        let mut out = cases
            .into_iter()
            .map(|(name, frame)| {
                let r = run_repeat(filter.program_fd(), &frame, None, 200_000).unwrap();
                (name, r.duration_ns)
            })
            .collect::<Vec<_>>();
        // A spoofed flood: every source sends about one packet per second, so
        // each stays inside its own budget and only a per-CPU cap stops it.
        // Here the overload cap (1/s) drops all but the first run.
        let within_budget = FilterConfig {
            rate_limits: xdp::RateLimits {
                invite: RateConfig {
                    rate: 10_000_000,
                    burst: 10_000_000,
                },
                ..Default::default()
            },
            overload_cap_pps: 1,
            ..cfg.clone()
        };
        let filter = Filter::load_unattached(&within_budget).expect("the program loads");
        let r = run_repeat(filter.program_fd(), &frames[0], None, 200_000).unwrap();
        out.push((
            "flood INVITE within its source's budget (overload)",
            r.duration_ns,
        ));
        // The same flood, stopped by this CPU's budget for sources that are
        // neither allowlisted nor verified (1/s).
        let unverified = FilterConfig {
            overload_cap_pps: u32::MAX,
            unverified_cap_pps: 1,
            ..within_budget.clone()
        };
        let filter = Filter::load_unattached(&unverified).expect("the program loads");
        let r = run_repeat(filter.program_fd(), &frames[0], None, 200_000).unwrap();
        out.push((
            "flood INVITE within its source's budget (unverified)",
            r.duration_ns,
        ));
        // A verified caller's INVITE goes all the way: every check, the
        // header scan included, then passes.
        let mut filter = Filter::load_unattached(&unverified).expect("the program loads");
        filter
            .verify(
                IpAddr::V4(Ipv4Addr::new(198, 18, 128, 0)),
                Duration::from_secs(3600),
            )
            .expect("verify");
        let r = run_repeat(filter.program_fd(), &frames[0], None, 200_000).unwrap();
        out.push(("verified caller's INVITE (passed)", r.duration_ns));
        out
    };

    let bench = Bench {
        snd: &snd,
        rcv: &rcv,
        s_if: &s_if,
        r_if: &r_if,
        cfg: &cfg,
        dir: &dir,
        count,
    };
    let mut tables = vec![measure(&bench, &Sender::AfPacket(&frames))];
    // The second sender: XDP live frames, which reach the veth's peer as
    // xdp_frames with headroom, the way a NIC driver hands frames to XDP.
    // GRO on the receiving end gives its veth a NAPI instance, without which
    // it refuses redirected frames when no XDP program is attached.
    let generator = load_generator(&dir, ifindex_of(&snd, &s_if));
    let live_pps: u64 = std::env::var("DCE_BENCH_LIVE_PPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let mut template = frames[0].clone();
    // No UDP checksum: the generator rewrites the source address.
    template[40..42].fill(0);
    rcv.run("ethtool", &["-K", &r_if, "gro", "on"]).unwrap();
    // No RPS: every path runs in the veth's NAPI on CPU 0, where the frames
    // arrive (bursts of 16,384 would overflow CPU 1's backlog); the socket
    // reader has CPU 1 to itself. Only the whole-box figures apply.
    rcv.run("sh", &["-c", &format!("echo 0 > {rps}")]).unwrap();
    // Some kernels refuse live-frame test runs (EPERM was seen on a fresh
    // machine of the build box's kind; this box runs them): one short run
    // first, and without it the other tables are still printed.
    let generator_fd = generator.fd();
    let probe = snd.enter(|| run_live_frames(generator_fd, &template, 64, 64));
    let live_refused = match probe {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(e) => Some(format!("entering the sender's namespace: {e}")),
    };
    if live_refused.is_none() {
        tables.push(measure(
            &bench,
            &Sender::XdpFrames {
                program: generator.fd(),
                template: &template,
                pps: live_pps,
            },
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "xdp_drop: up to {count} SIP INVITEs of {frame_len} bytes from {SOURCES} sources into a \
         veth, from each of two senders on CPU 0 (raw AF_PACKET sendmmsg; XDP live frames), \
         one run per path and sender, same box"
    );
    for (name, ns) in &program_ns {
        println!("program alone, {name}: {ns} ns per run (BPF_PROG_TEST_RUN, 200000 runs)");
    }
    for t in &tables {
        report(t);
    }
    if let Some(e) = &live_refused {
        println!(
            "\nsender: XDP live frames: not measured: this kernel ({}) refused a live-frame \
             test run (BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES): {e}",
            kernel_release()
        );
    }
    println!(
        "receive ns/pkt: kernel CPU time of CPU 1 (RPS target; + the socket reader) per packet \
         handled; XDP native runs on the sender's CPU, so only its whole-box kernel time is shown. \
         kernel ns/pkt (all): system+irq+softirq time of both CPUs, sender included. \
         beyond sender: that whole-box time (+ the socket reader's user time) minus what the \
         sender alone spent on as many packets, per packet handled."
    );
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// What the flood, the lab and the filter's configuration are.
struct Bench<'a> {
    snd: &'a Netns,
    rcv: &'a Netns,
    s_if: &'a str,
    r_if: &'a str,
    cfg: &'a FilterConfig,
    dir: &'a std::path::Path,
    count: u64,
}

/// One sender's figures: the sender alone and each path.
struct Table {
    sender: &'static str,
    /// RPS moved the stack's receive work to CPU 1 (the CPU 1 figures mean
    /// something).
    rps: bool,
    sender_alone: Flood,
    rows: Vec<Row>,
}

/// Floods each path with `how`, after the sender alone.
fn measure(b: &Bench<'_>, how: &Sender<'_>) -> Table {
    let r_if = b.r_if;
    let mut rows = Vec::new();
    // The sender alone: the same flood into the veth with the receiving end
    // down, so each packet is built, sent and dropped by the veth at once.
    // Subtracted from each path's whole-box kernel time, it leaves what the
    // receiving side cost, native XDP included (which runs on the sender's
    // CPU, in the veth's NAPI).
    let sender_alone = {
        b.rcv.ip(&["link", "set", b.r_if, "down"]).unwrap();
        let f = flood(b, how);
        b.rcv.ip(&["link", "set", b.r_if, "up"]).unwrap();
        // Taking the link down removed the route to the flood's sources.
        b.rcv
            .ip(&["route", "replace", "198.18.128.0/17", "dev", b.r_if])
            .unwrap();
        f
    };

    // 1 and 2. The XDP filter, native (in the veth's NAPI, on the sender's
    // CPU) and generic (after RPS, on CPU 1).
    for (name, mode) in [
        ("XDP native", AttachMode::Native),
        ("XDP generic", AttachMode::Generic),
    ] {
        let (cfg, iface) = (b.cfg.clone(), b.r_if.to_string());
        let filter = b
            .rcv
            .enter(move || Filter::load(&cfg, &iface, mode))
            .unwrap()
            .expect("the filter attaches");
        let before = filter.read_stats().unwrap();
        let flood = flood(b, how);
        let after = filter.read_stats().unwrap();
        let handled = after.packets() - before.packets();
        drop(filter);
        rows.push(Row {
            name,
            receive_ns: (mode == AttachMode::Generic).then_some(flood.kernel_cpu1_ns),
            handled: handled + flood.backlog_dropped,
            flood,
            user_ns: 0.0,
        });
    }

    // 3. nftables at the netdev ingress hook (after RPS, on CPU 1).
    {
        let rules = format!(
            "table netdev dcebench {{\n\
               chain ingress {{\n\
                 type filter hook ingress device \"{r_if}\" priority 0; policy accept;\n\
                 ip protocol udp udp dport 5060 @th,64,48 0x494e56495445 \
                   meter sipflood size 65535 {{ ip saddr limit rate over 1/second burst 1 packets }} \
                   counter drop\n\
               }}\n\
             }}\n"
        );
        let file = b.dir.join("rules.nft");
        std::fs::write(&file, rules).unwrap();
        b.rcv.run("nft", &["-f", file.to_str().unwrap()]).unwrap();
        let flood = flood(b, how);
        let listing = b
            .rcv
            .run("nft", &["list", "chain", "netdev", "dcebench", "ingress"])
            .unwrap();
        let dropped: u64 = listing
            .split("counter packets ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .expect("nft counter");
        b.rcv
            .run("nft", &["delete", "table", "netdev", "dcebench"])
            .unwrap();
        rows.push(Row {
            name: "nftables",
            receive_ns: Some(flood.kernel_cpu1_ns),
            handled: dropped + flood.backlog_dropped,
            flood,
            user_ns: 0.0,
        });
    }

    // 4. A UDP socket read with recvmmsg and discarded, its reader on CPU 1.
    {
        let socket = b
            .rcv
            .enter(|| UdpSocket::bind((RECEIVER, 5060)).unwrap())
            .unwrap();
        // Room for a burst of the paced generator (16,384 frames).
        let _ = sys::set_socket_buffers(&socket, 64 << 20);
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let read = Arc::new(AtomicU64::new(0));
        let reader = {
            let (stop, read) = (stop.clone(), read.clone());
            std::thread::spawn(move || {
                pin_to_cpu(1);
                let (u0, s0) = thread_cpu_ns();
                recv_discard(socket, &stop, &read);
                let (u1, s1) = thread_cpu_ns();
                (u1 - u0, s1 - s0)
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        let rcvbuf0 = udp_rcvbuf_errors(b.rcv);
        let flood = flood(b, how);
        stop.store(true, Ordering::Relaxed);
        let (reader_user_ns, reader_sys_ns) = reader.join().unwrap();
        let reader_ns = reader_user_ns + reader_sys_ns;
        let rcvbuf = udp_rcvbuf_errors(b.rcv) - rcvbuf0;
        // The reader's system time is already in CPU 1's kernel time; its
        // user time is small. Count the larger of the two views once.
        let receive = flood.kernel_cpu1_ns.max(reader_ns);
        let handled = read.load(Ordering::Relaxed);
        if rcvbuf > 0 {
            println!(
                "({}: the socket's receive buffer overflowed {rcvbuf} times; those count as handled)",
                how.name()
            );
        }
        rows.push(Row {
            name: "UDP socket",
            receive_ns: Some(receive),
            handled: handled + rcvbuf + flood.backlog_dropped,
            flood,
            user_ns: reader_user_ns,
        });
    }
    Table {
        sender: how.name(),
        rps: matches!(how, Sender::AfPacket(_)),
        sender_alone,
        rows,
    }
}

/// Prints one sender's table and its ratios.
fn report(t: &Table) {
    // A sender that got nothing out with the receiving end down (a raw
    // socket on a veth without carrier may be refused every packet) gives
    // no per-packet cost to subtract: "beyond sender" is not computed then.
    let alone_ok = t.sender_alone.sent > 0;
    let sender_ns_per_pkt = t.sender_alone.kernel_all_ns / t.sender_alone.sent.max(1) as f64;
    println!("\nsender: {}", t.sender);
    if alone_ok {
        println!(
            "sender alone (receiving end down): {} packets, {:.0} ns/pkt whole-box kernel time",
            t.sender_alone.sent, sender_ns_per_pkt
        );
    } else {
        println!(
            "sender alone (receiving end down): sent nothing in {:.1} s (the veth without its peer \
             took no packet), so the 'beyond sender' figures are not computed for this sender",
            t.sender_alone.elapsed.as_secs_f64()
        );
    }
    println!(
        "{:<12} {:>9} {:>9} {:>6} {:>11} {:>18} {:>20} {:>17}",
        "path",
        "sent",
        "handled",
        "secs",
        "pps",
        "receive ns/pkt",
        "kernel ns/pkt (all)",
        "beyond sender"
    );
    for r in t.rows.iter().filter(|r| r.flood.backlog_dropped > 0) {
        println!(
            "({}: {} packets dropped at the full RPS backlog of CPU 1, counted as handled)",
            r.name, r.flood.backlog_dropped
        );
    }
    let mut recv = std::collections::HashMap::new();
    let mut pps = std::collections::HashMap::new();
    let mut beyond = std::collections::HashMap::new();
    for r in &t.rows {
        beyond.insert(r.name, r.beyond_sender_ns(sender_ns_per_pkt));
        let rate = r.handled as f64 / r.flood.elapsed.as_secs_f64();
        let per = r.receive_ns.map(|ns| ns / r.handled.max(1) as f64);
        pps.insert(r.name, rate);
        if let Some(p) = per {
            recv.insert(r.name, p);
        }
        println!(
            "{:<12} {:>9} {:>9} {:>6.2} {:>11.0} {:>18} {:>20.0} {:>17}",
            r.name,
            r.flood.sent,
            r.handled,
            r.flood.elapsed.as_secs_f64(),
            rate,
            per.filter(|_| t.rps)
                .map(|p| format!("{p:.0}"))
                .unwrap_or_else(|| "(on CPU 0)".into()),
            r.flood.kernel_all_ns / r.handled.max(1) as f64,
            if alone_ok {
                format!("{:.0}", beyond[r.name])
            } else {
                "-".into()
            },
        );
    }
    if t.rps {
        println!(
            "ratios: socket/XDP receive CPU per packet = {:.2} (target >= 3); \
             nftables/XDP receive CPU per packet = {:.2} (target > 1); \
             XDP native/nftables pps = {:.2}",
            recv["UDP socket"] / recv["XDP generic"],
            recv["nftables"] / recv["XDP generic"],
            pps["XDP native"] / pps["nftables"].max(1.0),
        );
    }
    if !alone_ok {
        return;
    }
    println!(
        "ratios, whole box beyond the sender: socket/XDP native = {:.2}, socket/XDP generic = {:.2} \
         (target >= 3); nftables/XDP native = {:.2}, nftables/XDP generic = {:.2} (target > 1)",
        beyond["UDP socket"] / beyond["XDP native"],
        beyond["UDP socket"] / beyond["XDP generic"],
        beyond["nftables"] / beyond["XDP native"],
        beyond["nftables"] / beyond["XDP generic"],
    );
}

/// Reads and discards datagrams in batches of 64 until `stop`.
fn recv_discard(socket: UdpSocket, stop: &AtomicBool, read: &AtomicU64) {
    let mut batch = sys::RxBatch::with_slot_size(64, 2048);
    while !stop.load(Ordering::Relaxed) {
        if let Ok(n) = batch.recv_wait(&socket) {
            read.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}
