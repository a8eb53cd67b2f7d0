//! One run, same box, same flood: SIP INVITEs from 1024 sources into a veth
//! (a raw AF_PACKET sender of our own, sendmmsg, pinned to CPU 0), disposed
//! of by:
//!
//! 1. the dce-edge XDP filter, native and generic (per-source INVITE budget
//!    of 1/s, so all but each source's first packet is `rate_limit`);
//! 2. an equivalent nftables rule set at the netdev ingress hook (UDP dport
//!    5060, payload starting "INVITE", per-source meter 1/s);
//! 3. a userspace UDP socket that reads with recvmmsg and discards.
//!
//! It prints the packets per second each path handled and the CPU per packet
//! of the receiving side: RPS moves the receive work of the generic-XDP,
//! nftables and socket paths to CPU 1, whose kernel time (/proc/stat) is
//! divided by the packets handled. Native XDP runs in the veth's NAPI on the
//! sender's CPU, so CPU 1 does not see it; for every path the bench also
//! prints the whole box's kernel time (plus the socket reader's user time)
//! beyond what the sender alone spends on the same packets (measured first,
//! with the receiving end of the veth down), per packet handled. It also
//! times the program alone with BPF_PROG_TEST_RUN, on the flood INVITE
//! and on the paths a spoofed flood and a verified caller take. Needs root
//! and nft.
//!
//! `cargo bench -p dce-lab --bench xdp_drop` (DCE_BENCH_PACKETS sets the
//! flood size, default 1,000,000).

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dce_edge::lab::netns::{unique_name, veth_pair, Netns};
use dce_edge::privilege::{have_program, is_root};
use dce_edge::xdp::frame::{sip_request, UdpFrame};
use dce_edge::xdp::test_run::run_repeat;
use dce_edge::xdp::{AttachMode, Filter, FilterConfig, RateLimit, VerdictMode};

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
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    t as f64 * 1e9 / hz
}

/// CPU time of the calling thread, user and system, in nanoseconds.
fn thread_cpu_ns() -> (f64, f64) {
    // SAFETY: getrusage fills the zeroed struct we own.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1e9 + t.tv_usec as f64 * 1e3;
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

/// Pins the calling thread to one CPU.
fn pin_to_cpu(cpu: usize) {
    // SAFETY: the cpu_set_t is zeroed and filled by CPU_SET before use.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
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
/// an AF_PACKET socket on `ifindex`, 64 per sendmmsg. Returns how many the
/// kernel took (a full queue refuses some: ENOBUFS, retried after a yield).
fn send_raw(ifindex: i32, frames: &[Vec<u8>], count: u64, deadline: Instant) -> u64 {
    const BATCH: usize = 64;
    // SAFETY: plain socket(2) call; the fd is closed at the end.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            (libc::ETH_P_ALL as u16).to_be() as i32,
        )
    };
    assert!(
        fd >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: sockaddr_ll is plain data; zeroed then filled.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = ifindex;
    addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: bind reads the sockaddr_ll we own, of the size given.
    let rc = unsafe {
        libc::bind(
            fd,
            &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
    let mut iovs: Vec<libc::iovec> = frames
        .iter()
        .map(|f| libc::iovec {
            iov_base: f.as_ptr() as *mut libc::c_void,
            iov_len: f.len(),
        })
        .collect();
    let mut sent = 0u64;
    let mut next = 0usize;
    while sent < count && Instant::now() < deadline {
        // SAFETY: mmsghdr is plain data; all-zero is a valid empty header.
        let mut msgs: Vec<libc::mmsghdr> =
            (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
        let n = BATCH.min((count - sent) as usize);
        for m in msgs.iter_mut().take(n) {
            m.msg_hdr.msg_iov = &mut iovs[next] as *mut libc::iovec;
            m.msg_hdr.msg_iovlen = 1;
            next = (next + 1) % iovs.len();
        }
        // SAFETY: n headers, each pointing at one iovec into `frames`, all
        // alive for the call; the socket is bound to the interface.
        let r = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n as u32, 0) };
        if r > 0 {
            sent += r as u64;
        } else {
            std::thread::yield_now();
        }
    }
    // SAFETY: closing the fd we opened.
    unsafe { libc::close(fd) };
    sent
}

/// One flood: packets the sender got onto the wire, time, kernel CPU.
struct Flood {
    sent: u64,
    elapsed: Duration,
    kernel_all_ns: f64,
    kernel_cpu1_ns: f64,
}

/// Sends `count` packets from a thread in `sender`, pinned to CPU 0.
fn flood(sender: &Netns, iface: &str, frames: &[Vec<u8>], count: u64) -> Flood {
    let k0 = kernel_ticks();
    let t0 = Instant::now();
    let ifindex: i32 = sender
        .run("cat", &[&format!("/sys/class/net/{iface}/ifindex")])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = t0 + Duration::from_secs(60);
    let sent = sender
        .enter(|| {
            pin_to_cpu(0);
            send_raw(ifindex, frames, count, deadline)
        })
        .unwrap();
    let elapsed = t0.elapsed();
    // Let the receiving side drain what is queued.
    std::thread::sleep(Duration::from_millis(300));
    let k1 = kernel_ticks();
    Flood {
        sent,
        elapsed,
        kernel_all_ns: ticks_to_ns(k1[0] - k0[0]),
        kernel_cpu1_ns: ticks_to_ns(k1[2] - k0[2]),
    }
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
        rate_limits: dce_edge::xdp::RateLimits {
            invite: RateLimit { rate: 1, burst: 1 },
            ..Default::default()
        },
        ..FilterConfig::default()
    };
    let mut rows = Vec::new();

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
        // Here the emergency cap (1/s) drops all but the first run.
        let within_budget = FilterConfig {
            rate_limits: dce_edge::xdp::RateLimits {
                invite: RateLimit {
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

    // The sender alone: the same flood into the veth with the receiving end
    // down, so each packet is built, sent and dropped by the veth at once.
    // Subtracted from each path's whole-box kernel time, it leaves what the
    // receiving side cost, native XDP included (which runs on the sender's
    // CPU, in the veth's NAPI).
    let sender_alone = {
        rcv.ip(&["link", "set", &r_if, "down"]).unwrap();
        let f = flood(&snd, &s_if, &frames, count);
        rcv.ip(&["link", "set", &r_if, "up"]).unwrap();
        // Taking the link down removed the route to the flood's sources.
        rcv.ip(&["route", "replace", "198.18.128.0/17", "dev", &r_if])
            .unwrap();
        f
    };
    let sender_ns_per_pkt = sender_alone.kernel_all_ns / sender_alone.sent.max(1) as f64;

    // 1 and 2. The XDP filter, native (in the veth's NAPI, on the sender's
    // CPU) and generic (after RPS, on CPU 1).
    for (name, mode) in [
        ("XDP native", AttachMode::Native),
        ("XDP generic", AttachMode::Generic),
    ] {
        let (cfg, iface) = (cfg.clone(), r_if.clone());
        let filter = rcv
            .enter(move || Filter::load(&cfg, &iface, mode))
            .unwrap()
            .expect("the filter attaches");
        let before = filter.read_stats().unwrap();
        let flood = flood(&snd, &s_if, &frames, count);
        let after = filter.read_stats().unwrap();
        let handled = after.packets() - before.packets();
        drop(filter);
        rows.push(Row {
            name,
            receive_ns: (mode == AttachMode::Generic).then_some(flood.kernel_cpu1_ns),
            flood,
            handled,
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
        let file = dir.join("rules.nft");
        std::fs::write(&file, rules).unwrap();
        rcv.run("nft", &["-f", file.to_str().unwrap()]).unwrap();
        let flood = flood(&snd, &s_if, &frames, count);
        let listing = rcv
            .run("nft", &["list", "chain", "netdev", "dcebench", "ingress"])
            .unwrap();
        let dropped: u64 = listing
            .split("counter packets ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .expect("nft counter");
        rcv.run("nft", &["delete", "table", "netdev", "dcebench"])
            .unwrap();
        rows.push(Row {
            name: "nftables",
            receive_ns: Some(flood.kernel_cpu1_ns),
            flood,
            handled: dropped,
            user_ns: 0.0,
        });
    }

    // 4. A UDP socket read with recvmmsg and discarded, its reader on CPU 1.
    {
        let socket = rcv
            .enter(|| UdpSocket::bind((RECEIVER, 5060)).unwrap())
            .unwrap();
        let size: libc::c_int = 16 << 20;
        // SAFETY: setsockopt reads one c_int from a live local; the fd is open.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                &size as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as u32,
            );
        }
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
        let rcvbuf0 = udp_rcvbuf_errors(&rcv);
        let flood = flood(&snd, &s_if, &frames, count);
        stop.store(true, Ordering::Relaxed);
        let (reader_user_ns, reader_sys_ns) = reader.join().unwrap();
        let reader_ns = reader_user_ns + reader_sys_ns;
        let rcvbuf = udp_rcvbuf_errors(&rcv) - rcvbuf0;
        // The reader's system time is already in CPU 1's kernel time; its
        // user time is small. Count the larger of the two views once.
        let receive = flood.kernel_cpu1_ns.max(reader_ns);
        let handled = read.load(Ordering::Relaxed);
        if rcvbuf > 0 {
            println!(
                "(the socket's receive buffer overflowed {rcvbuf} times; those count as handled)"
            );
        }
        rows.push(Row {
            name: "UDP socket",
            receive_ns: Some(receive),
            flood,
            handled: handled + rcvbuf,
            user_ns: reader_user_ns,
        });
    }
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "xdp_drop: up to {count} SIP INVITEs of {frame_len} bytes from {SOURCES} sources into a \
         veth (raw AF_PACKET sendmmsg sender on CPU 0), one run per path, same box"
    );
    for (name, ns) in &program_ns {
        println!("program alone, {name}: {ns} ns per run (BPF_PROG_TEST_RUN, 200000 runs)");
    }
    println!(
        "sender alone (receiving end down): {} packets, {:.0} ns/pkt whole-box kernel time",
        sender_alone.sent, sender_ns_per_pkt
    );
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
    let mut recv = std::collections::HashMap::new();
    let mut pps = std::collections::HashMap::new();
    let mut beyond = std::collections::HashMap::new();
    for r in &rows {
        beyond.insert(r.name, r.beyond_sender_ns(sender_ns_per_pkt));
        let rate = r.handled as f64 / r.flood.elapsed.as_secs_f64();
        let per = r.receive_ns.map(|ns| ns / r.handled.max(1) as f64);
        pps.insert(r.name, rate);
        if let Some(p) = per {
            recv.insert(r.name, p);
        }
        println!(
            "{:<12} {:>9} {:>9} {:>6.2} {:>11.0} {:>18} {:>20.0} {:>17.0}",
            r.name,
            r.flood.sent,
            r.handled,
            r.flood.elapsed.as_secs_f64(),
            rate,
            per.map(|p| format!("{p:.0}"))
                .unwrap_or_else(|| "(on CPU 0)".into()),
            r.flood.kernel_all_ns / r.handled.max(1) as f64,
            beyond[r.name],
        );
    }
    println!(
        "ratios: socket/XDP receive CPU per packet = {:.2} (target >= 3); \
         nftables/XDP receive CPU per packet = {:.2} (target > 1); \
         XDP native/nftables pps = {:.2}",
        recv["UDP socket"] / recv["XDP generic"],
        recv["nftables"] / recv["XDP generic"],
        pps["XDP native"] / pps["nftables"].max(1.0),
    );
    println!(
        "ratios, whole box beyond the sender: socket/XDP native = {:.2}, socket/XDP generic = {:.2} \
         (target >= 3); nftables/XDP native = {:.2}, nftables/XDP generic = {:.2} (target > 1)",
        beyond["UDP socket"] / beyond["XDP native"],
        beyond["UDP socket"] / beyond["XDP generic"],
        beyond["nftables"] / beyond["XDP native"],
        beyond["nftables"] / beyond["XDP generic"],
    );
    println!(
        "receive ns/pkt: kernel CPU time of CPU 1 (RPS target; + the socket reader) per packet \
         handled; XDP native runs on the sender's CPU, so only its whole-box kernel time is shown. \
         kernel ns/pkt (all): system+irq+softirq time of both CPUs, sender included. \
         beyond sender: that whole-box time (+ the socket reader's user time) minus what the \
         sender alone spent on as many packets, per packet handled."
    );
}

/// Reads and discards datagrams in batches of 64 until `stop`.
fn recv_discard(socket: UdpSocket, stop: &AtomicBool, read: &AtomicU64) {
    const BATCH: usize = 64;
    let mut bufs = vec![[0u8; 2048]; BATCH];
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: mmsghdr is plain old data; all-zero is a valid empty header.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
        m.msg_hdr.msg_iov = iov as *mut libc::iovec;
        m.msg_hdr.msg_iovlen = 1;
    }
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: msgs points at BATCH headers whose iovecs point into `bufs`,
        // all alive for the call; the fd is an open UDP socket.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n > 0 {
            read.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}
