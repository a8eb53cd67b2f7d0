//! Forensics: copies of the frames the XDP program drops, for a pcap.
//!
//! `dce-edge capture` arms the program's `capture` map with a drop-reason
//! mask, an optional source network and a count; each matching drop then
//! claims a place and, while places remain, copies its first
//! [`abi::CAPTURE_BYTES`] bytes with the reason and a timestamp into the
//! `capture_ring` ring buffer. The reader ([`CaptureReader`]) turns the
//! records into [`CapturedFrame`]s and [`PcapWriter`] writes them out.
//! Unarmed, a drop costs the program one load and compare; a passed
//! packet, nothing. The count bounds the capture in the program itself, so
//! a reader that dies leaves at most that many records behind.

use std::io::{self, Write};
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use aya::maps::{Array, Map, MapData, RingBuf};

use super::abi::{self, DropReason};
use super::config::Cidr;
use super::maps::{map_err, FilterMaps};
use super::FilterError;

/// The most drops one capture may take (the CLI's `--count` limit): a pcap
/// of at most about 30 MB.
pub const MAX_CAPTURE_COUNT: u64 = 100_000;

/// Which drops to capture, and how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureSpec {
    /// Drops of these reasons (empty: every reason).
    pub reasons: Vec<DropReason>,
    /// Drops from sources in this network (none: every source). The program
    /// keys an IPv6 source by its /64, so an IPv6 network longer than /64
    /// is matched as its /64.
    pub source: Option<Cidr>,
    /// How many drops to capture, 1 to [`MAX_CAPTURE_COUNT`].
    pub count: u64,
}

/// The `dce_source` bytes of `source`'s network and their mask, as the
/// program compares them (two native-endian words of the 16 bytes).
fn source_words(source: Option<Cidr>) -> ([u64; 2], [u64; 2]) {
    let Some(c) = source else {
        return ([0; 2], [0; 2]);
    };
    let (addr, bits) = match c.addr {
        // IPv4-mapped: the 96 leading bits are fixed (::ffff:), so IPv6
        // sources never match an IPv4 network.
        IpAddr::V4(a) => (a.to_ipv6_mapped().octets(), 96 + u32::from(c.prefix)),
        IpAddr::V6(a) => (a.octets(), u32::from(c.prefix).min(64)),
    };
    let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0).to_be_bytes();
    let mut net = [0u8; 16];
    for i in 0..16 {
        net[i] = addr[i] & mask[i];
    }
    let word = |b: &[u8; 16], i: usize| {
        u64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
    };
    (
        [word(&net, 0), word(&net, 1)],
        [word(&mask, 0), word(&mask, 1)],
    )
}

impl CaptureSpec {
    /// The `capture` entry that arms this capture for process `pid`.
    pub fn to_abi(&self, pid: u32) -> Result<abi::Capture, FilterError> {
        if self.count == 0 || self.count > MAX_CAPTURE_COUNT {
            return Err(FilterError::Config(format!(
                "a capture takes 1 to {MAX_CAPTURE_COUNT} drops, not {}",
                self.count
            )));
        }
        let (source_net, source_mask) = source_words(self.source);
        Ok(abi::Capture {
            count: self.count,
            taken: 0,
            lost: 0,
            reason_mask: self.reasons.iter().fold(0, |m, r| m | 1 << r.slot()),
            owner_pid: pid,
            source_net,
            source_mask,
        })
    }
}

/// What the `capture` map says of the capture in progress (or the last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureState {
    /// Drops asked for.
    pub count: u64,
    /// Drops that matched and claimed a place (may pass `count`: those
    /// beyond it were not copied).
    pub taken: u64,
    /// Matching drops within `count` the ring had no room for.
    pub lost: u64,
    /// The process that armed it.
    pub owner_pid: u32,
}

impl CaptureState {
    /// True while matching drops are still copied.
    pub fn armed(&self) -> bool {
        self.taken < self.count
    }

    /// Drops copied into the ring so far.
    pub fn copied(&self) -> u64 {
        self.taken.min(self.count).saturating_sub(self.lost)
    }
}

/// One dropped frame, as the program copied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedFrame {
    /// CLOCK_MONOTONIC of the drop, in nanoseconds.
    pub ts_ns: u64,
    /// Why it was dropped (`None`: a slot this build does not know).
    pub reason: Option<DropReason>,
    /// The whole frame's length.
    pub frame_len: u32,
    /// The interface it arrived on.
    pub ifindex: u32,
    /// The receive queue it arrived on.
    pub rx_queue: u32,
    /// Its first bytes (at most [`abi::CAPTURE_BYTES`]), from the Ethernet
    /// header on.
    pub data: Vec<u8>,
}

impl CapturedFrame {
    /// Reads one ring record; `None` when it is not a whole record.
    pub fn from_record(b: &[u8]) -> Option<CapturedFrame> {
        if b.len() < std::mem::size_of::<abi::CaptureRecord>() {
            return None;
        }
        let u64_at = |o: usize| u64::from_ne_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let u32_at = |o: usize| u32::from_ne_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        // Offsets of struct dce_capture_record (held against the compiled
        // layout by `abi::LAYOUTS`' test, and by capture_records_parse).
        let captured = (u32_at(16) as usize).min(abi::CAPTURE_BYTES);
        Some(CapturedFrame {
            ts_ns: u64_at(0),
            reason: DropReason::from_slot(u32_at(8) as usize),
            frame_len: u32_at(12),
            ifindex: u32_at(20),
            rx_queue: u32_at(24),
            data: b[32..32 + captured].to_vec(),
        })
    }
}

fn state_of(c: &abi::Capture) -> CaptureState {
    CaptureState {
        count: c.count,
        taken: c.taken,
        lost: c.lost,
        owner_pid: c.owner_pid,
    }
}

/// True when process `pid` exists.
fn process_alive(pid: u32) -> bool {
    pid != 0 && std::path::Path::new(&format!("/proc/{pid}")).exists()
}

impl FilterMaps {
    /// The capture entry as it is now.
    pub fn capture_state(&self) -> Result<CaptureState, FilterError> {
        let a: Array<&MapData, abi::Capture> =
            Array::try_from(self.capture_map_ref()).map_err(map_err("capture"))?;
        Ok(state_of(&a.get(&0, 0).map_err(map_err("capture"))?))
    }

    /// Arms a capture for process `pid`. Refused while another live
    /// process's capture is armed (one capture at a time: they share the
    /// ring). Records left in the ring by an earlier capture should be
    /// drained first ([`CaptureReader::drain`]).
    pub fn arm_capture(&mut self, spec: &CaptureSpec, pid: u32) -> Result<(), FilterError> {
        let entry = spec.to_abi(pid)?;
        let now = self.capture_state()?;
        if now.armed() && now.owner_pid != pid && process_alive(now.owner_pid) {
            return Err(FilterError::Config(format!(
                "a capture by process {} is running ({} of {} drops taken); one capture at a time",
                now.owner_pid, now.taken, now.count
            )));
        }
        let mut a: Array<&mut MapData, abi::Capture> =
            Array::try_from(self.capture_map()).map_err(map_err("capture"))?;
        a.set(0, entry, 0).map_err(map_err("capture"))
    }

    /// Disarms the capture and says how it ended. The program may still
    /// claim a place between the read and the write; the write makes
    /// `taken` (0) reach `count` (0), so nothing more is copied.
    pub fn disarm_capture(&mut self) -> Result<CaptureState, FilterError> {
        let ended = self.capture_state()?;
        let mut a: Array<&mut MapData, abi::Capture> =
            Array::try_from(self.capture_map()).map_err(map_err("capture"))?;
        a.set(0, abi::Capture::default(), 0)
            .map_err(map_err("capture"))?;
        Ok(ended)
    }

    /// A reader of the capture ring, on its own descriptor (so the maps
    /// stay usable while it reads).
    pub fn capture_reader(&self) -> Result<CaptureReader, FilterError> {
        let Map::RingBuf(data) = self.capture_ring_map() else {
            return Err(FilterError::Map {
                what: "capture_ring",
                error: "not a ring buffer".into(),
            });
        };
        let fd = data
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| FilterError::Map {
                what: "capture_ring",
                error: e.to_string(),
            })?;
        let data = MapData::from_fd(fd).map_err(map_err("capture_ring"))?;
        let ring = RingBuf::try_from(Map::RingBuf(data)).map_err(map_err("capture_ring"))?;
        Ok(CaptureReader { ring })
    }
}

/// Reads the capture ring.
pub struct CaptureReader {
    ring: RingBuf<MapData>,
}

impl std::fmt::Debug for CaptureReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CaptureReader")
    }
}

impl CaptureReader {
    /// The next record in the ring, if one is there.
    pub fn next_frame(&mut self) -> Option<CapturedFrame> {
        loop {
            let item = self.ring.next()?;
            // A record shorter than the struct cannot come from this
            // program; skip it rather than stop.
            if let Some(f) = CapturedFrame::from_record(&item) {
                return Some(f);
            }
        }
    }

    /// Discards every record waiting (left by an earlier capture); says how
    /// many there were.
    pub fn drain(&mut self) -> usize {
        let mut n = 0;
        while self.ring.next().is_some() {
            n += 1;
        }
        n
    }

    /// Waits up to `timeout` for a record to arrive (the ring's descriptor
    /// polls readable); false when none came.
    pub fn wait(&self, timeout: Duration) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.ring.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: poll reads and writes one pollfd we own, for the length
        // given; the descriptor stays open (self.ring) during the call.
        #[allow(unsafe_code)]
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        n > 0
    }
}

/// The pcap magic number of files with nanosecond timestamps.
pub const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;

/// Link type of Ethernet frames (LINKTYPE_ETHERNET).
pub const LINKTYPE_ETHERNET: u32 = 1;

/// Writes a pcap file (the classic format, nanosecond timestamps, Ethernet
/// frames), as tcpdump, tshark and Wireshark read it: a 24-byte file header,
/// then each packet's 16-byte header and bytes, all in this machine's byte
/// order (the magic number tells readers which).
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
    snaplen: u32,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header; packets are cut to `snaplen` bytes.
    pub fn new(mut out: W, snaplen: u32) -> io::Result<PcapWriter<W>> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&PCAP_MAGIC_NS.to_ne_bytes());
        h.extend_from_slice(&2u16.to_ne_bytes()); // version 2.4
        h.extend_from_slice(&4u16.to_ne_bytes());
        h.extend_from_slice(&0i32.to_ne_bytes()); // this zone (UTC)
        h.extend_from_slice(&0u32.to_ne_bytes()); // timestamp accuracy
        h.extend_from_slice(&snaplen.to_ne_bytes());
        h.extend_from_slice(&LINKTYPE_ETHERNET.to_ne_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter { out, snaplen })
    }

    /// Writes one packet: `since_epoch` its time (UTC), `orig_len` its
    /// length on the wire, `data` its first bytes (cut to the snap length).
    pub fn write_packet(
        &mut self,
        since_epoch: Duration,
        orig_len: u32,
        data: &[u8],
    ) -> io::Result<()> {
        let data = &data[..data.len().min(self.snaplen as usize)];
        let mut h = Vec::with_capacity(16);
        h.extend_from_slice(&(since_epoch.as_secs() as u32).to_ne_bytes());
        h.extend_from_slice(&since_epoch.subsec_nanos().to_ne_bytes());
        h.extend_from_slice(&(data.len() as u32).to_ne_bytes());
        h.extend_from_slice(&orig_len.max(data.len() as u32).to_ne_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(data)
    }

    /// Flushes and gives the writer back.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// One packet read back from a pcap file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcapPacket {
    /// Its time since the epoch.
    pub since_epoch: Duration,
    /// Its length on the wire.
    pub orig_len: u32,
    /// The bytes captured.
    pub data: Vec<u8>,
}

/// Reads a pcap file written by [`PcapWriter`] (nanosecond magic, this
/// machine's byte order, Ethernet): its snap length and its packets.
pub fn read_pcap(b: &[u8]) -> Result<(u32, Vec<PcapPacket>), String> {
    let u32_at = |o: usize| -> Result<u32, String> {
        b.get(o..o + 4)
            .map(|s| u32::from_ne_bytes(s.try_into().expect("4 bytes")))
            .ok_or_else(|| format!("cut short at byte {o}"))
    };
    if u32_at(0)? != PCAP_MAGIC_NS {
        return Err(format!("magic {:#x} is not {PCAP_MAGIC_NS:#x}", u32_at(0)?));
    }
    if u32_at(20)? != LINKTYPE_ETHERNET {
        return Err(format!("link type {} is not Ethernet", u32_at(20)?));
    }
    let snaplen = u32_at(16)?;
    let mut packets = Vec::new();
    let mut o = 24;
    while o < b.len() {
        let (secs, nanos, incl, orig) =
            (u32_at(o)?, u32_at(o + 4)?, u32_at(o + 8)?, u32_at(o + 12)?);
        let start = o + 16;
        let data = b
            .get(start..start + incl as usize)
            .ok_or_else(|| format!("packet at byte {o} cut short"))?;
        packets.push(PcapPacket {
            since_epoch: Duration::new(u64::from(secs), nanos),
            orig_len: orig,
            data: data.to_vec(),
        });
        o = start + incl as usize;
    }
    Ok((snaplen, packets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcap_reads_back_what_was_written() {
        let mut w = PcapWriter::new(Vec::new(), 256).unwrap();
        let long = vec![0xabu8; 300];
        w.write_packet(Duration::new(1_700_000_000, 123_456_789), 60, &[1, 2, 3])
            .unwrap();
        w.write_packet(Duration::new(1_700_000_001, 5), 1500, &long)
            .unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len(), 24 + 16 + 3 + 16 + 256);
        let (snaplen, packets) = read_pcap(&bytes).unwrap();
        assert_eq!(snaplen, 256);
        assert_eq!(
            packets,
            [
                PcapPacket {
                    since_epoch: Duration::new(1_700_000_000, 123_456_789),
                    orig_len: 60,
                    data: vec![1, 2, 3],
                },
                PcapPacket {
                    since_epoch: Duration::new(1_700_000_001, 5),
                    orig_len: 1500,
                    data: vec![0xab; 256],
                },
            ]
        );
        // A cut file is said to be cut.
        assert!(read_pcap(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn spec_sets_the_reason_bits_and_the_source_words() {
        let spec = CaptureSpec {
            reasons: vec![DropReason::NotSip, DropReason::RateLimit],
            source: Some("198.51.100.0/24".parse().unwrap()),
            count: 10,
        };
        let c = spec.to_abi(42).unwrap();
        assert_eq!(
            c.reason_mask,
            1 << abi::slot::DROP_NOT_SIP | 1 << abi::slot::DROP_RATE_LIMIT
        );
        assert_eq!((c.count, c.taken, c.owner_pid), (10, 0, 42));
        let bytes = |w: [u64; 2]| {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&w[0].to_ne_bytes());
            b[8..].copy_from_slice(&w[1].to_ne_bytes());
            b
        };
        assert_eq!(
            bytes(c.source_net),
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 0]
        );
        assert_eq!(
            bytes(c.source_mask),
            [
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0
            ]
        );
        // IPv6 longer than /64 is matched as its /64; no source, no mask.
        let v6 = CaptureSpec {
            reasons: vec![],
            source: Some("2001:db8::1/128".parse().unwrap()),
            count: 1,
        }
        .to_abi(1)
        .unwrap();
        assert_eq!(bytes(v6.source_mask), [[0xff; 8], [0; 8]].concat()[..]);
        assert_eq!(
            &bytes(v6.source_net)[..8],
            &[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0]
        );
        let any = CaptureSpec {
            reasons: vec![],
            source: None,
            count: 1,
        }
        .to_abi(1)
        .unwrap();
        assert_eq!((any.reason_mask, any.source_mask), (0, [0, 0]));
    }

    #[test]
    fn a_count_out_of_range_is_refused() {
        for count in [0, MAX_CAPTURE_COUNT + 1] {
            let spec = CaptureSpec {
                reasons: vec![],
                source: None,
                count,
            };
            assert!(spec.to_abi(1).is_err(), "{count}");
        }
    }

    #[test]
    fn a_record_reads_by_its_compiled_offsets() {
        let layout = abi::LAYOUTS
            .iter()
            .find(|l| l.c_name == "dce_capture_record")
            .unwrap();
        assert_eq!(
            layout.members,
            [
                ("ts_ns", 0),
                ("reason", 8),
                ("frame_len", 12),
                ("captured_len", 16),
                ("ifindex", 20),
                ("rx_queue", 24),
                ("_pad", 28),
                ("data", 32),
            ]
        );
        let mut b = vec![0u8; layout.size];
        b[..8].copy_from_slice(&7u64.to_ne_bytes());
        b[8..12].copy_from_slice(&(abi::slot::DROP_SCANNER as u32).to_ne_bytes());
        b[12..16].copy_from_slice(&1500u32.to_ne_bytes());
        b[16..20].copy_from_slice(&3u32.to_ne_bytes());
        b[32..35].copy_from_slice(b"abc");
        let f = CapturedFrame::from_record(&b).unwrap();
        assert_eq!(
            (f.ts_ns, f.reason, f.frame_len, f.data.as_slice()),
            (7, Some(DropReason::Scanner), 1500, &b"abc"[..])
        );
        assert!(CapturedFrame::from_record(&b[..40]).is_none());
    }
}
