//! `dce-edge capture`: samples the frames the running XDP filter drops, of
//! a reason or from a source, into a pcap file, through the filter's
//! pinned maps. The program copies at most `--count` drops whatever
//! happens to this process; this process writes them, then disarms.

use std::fs::OpenOptions;
use std::io::BufWriter;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Args;

use xdp::abi::{self, DropReason};
use xdp::capture::{CaptureSpec, PcapWriter, MAX_CAPTURE_COUNT};
use xdp::config::Cidr;
use xdp::loader::Pinned;
use xdp::maps::monotonic_ns;

/// `dce-edge capture`: write dropped frames to a pcap file.
#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// The interface of the filter (optional when only one filter runs).
    #[arg(long)]
    pub iface: Option<String>,
    /// Drops of this reason (blocklist, banned, fragment, not_sip, scanner,
    /// rate_limit, overload, malformed, unverified, emergency_over_budget);
    /// repeat or separate with commas for several.
    #[arg(long, value_delimiter = ',', required_unless_present = "source")]
    pub reason: Vec<String>,
    /// Drops from sources in this network (ADDRESS or ADDRESS/PREFIX; an
    /// IPv6 network longer than /64 is matched as its /64). With --reason,
    /// drops that match both.
    #[arg(long, value_name = "CIDR")]
    pub source: Option<String>,
    /// How many drops to capture (1 to 100000).
    #[arg(long, default_value_t = 100)]
    pub count: u64,
    /// The pcap file to write (replaced if it exists; created mode 0600).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Give up after this many seconds even if fewer drops came.
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
}

fn parse_reason(name: &str) -> Result<DropReason> {
    DropReason::ALL
        .into_iter()
        .find(|r| r.name() == name.trim())
        .with_context(|| {
            let names: Vec<&str> = DropReason::ALL.iter().map(|r| r.name()).collect();
            format!(
                "--reason {name:?} is not a drop reason; one of {}",
                names.join(", ")
            )
        })
}

/// The capture the arguments ask for.
fn spec(args: &CaptureArgs) -> Result<CaptureSpec> {
    if args.count == 0 || args.count > MAX_CAPTURE_COUNT {
        bail!("--count {} must be 1 to {MAX_CAPTURE_COUNT}", args.count);
    }
    let reasons = args
        .reason
        .iter()
        .map(|r| parse_reason(r))
        .collect::<Result<Vec<_>>>()?;
    let source = match &args.source {
        Some(s) => {
            let c: Cidr = s
                .parse()
                .map_err(|e: String| anyhow::anyhow!("--source {s:?}: {e}"))?;
            if c.addr.is_ipv6() && c.prefix > 64 {
                eprintln!(
                    "dce-edge capture: the filter keys IPv6 sources by /64: --source {c} is matched as its /64"
                );
            }
            Some(c)
        }
        None => None,
    };
    if reasons.is_empty() && source.is_none() {
        bail!("give --reason, --source or both: which drops to capture");
    }
    Ok(CaptureSpec {
        reasons,
        source,
        count: args.count,
    })
}

/// Arms the capture, writes what comes to the pcap file until `--count`
/// frames, `--timeout` or SIGINT/SIGTERM, then disarms and says what it got.
pub fn run(args: &CaptureArgs) -> Result<()> {
    if !(args.timeout > 0.0 && args.timeout <= 86_400.0) {
        bail!(
            "--timeout {} must be above 0 and at most 86400 seconds",
            args.timeout
        );
    }
    let spec = spec(args)?;
    let mut pinned = match &args.iface {
        Some(i) => Pinned::open(i)?,
        None => Pinned::open_only()?,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    // The file holds other people's packets: owner only, and never through
    // a symbolic link planted at its path.
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    let mut pcap = PcapWriter::new(BufWriter::new(file), abi::CAPTURE_BYTES as u32)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    let mut reader = pinned.capture_reader()?;
    let stale = reader.drain();
    if stale > 0 {
        eprintln!("dce-edge capture: discarded {stale} frames an earlier capture left behind");
    }
    // Monotonic drop times to wall-clock times for the pcap.
    let wall_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let mono_ns = monotonic_ns();
    pinned.arm_capture(&spec, std::process::id())?;
    let what = format!(
        "on {}, up to {} drops{}{} into {}",
        pinned.iface(),
        spec.count,
        if spec.reasons.is_empty() {
            String::new()
        } else {
            let names: Vec<&str> = spec.reasons.iter().map(|r| r.name()).collect();
            format!(" of {}", names.join(", "))
        },
        spec.source
            .map(|c| format!(" from {c}"))
            .unwrap_or_default(),
        args.out.display()
    );
    eprintln!("dce-edge capture: {what} (Ctrl-C stops)");
    let iface = pinned.iface().to_string();
    note(&iface, true, &what, 0, 0);
    let deadline = Instant::now() + Duration::from_secs_f64(args.timeout);
    let mut written = 0u64;
    let mut by_reason = std::collections::BTreeMap::<&str, u64>::new();
    let result = (|| -> Result<()> {
        while written < spec.count && !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            while let Some(f) = reader.next_frame() {
                let at =
                    Duration::from_nanos(wall_ns.saturating_sub(mono_ns).saturating_add(f.ts_ns));
                pcap.write_packet(at, f.frame_len, &f.data)?;
                *by_reason
                    .entry(f.reason.map_or("unknown", DropReason::name))
                    .or_default() += 1;
                written += 1;
                if written == spec.count {
                    break;
                }
            }
            if written < spec.count {
                reader.wait(Duration::from_millis(200));
            }
        }
        Ok(())
    })();
    let ended = pinned.disarm_capture();
    note(
        &iface,
        false,
        &what,
        written,
        ended.as_ref().map_or(0, |e| e.lost),
    );
    result?;
    pcap.finish()
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    let ended = ended?;
    let reasons: Vec<String> = by_reason.iter().map(|(r, n)| format!("{n} {r}")).collect();
    println!(
        "captured {written} of {} drops into {}{}{}",
        spec.count,
        args.out.display(),
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join(", "))
        },
        if ended.lost > 0 {
            format!("; {} lost: the ring was full", ended.lost)
        } else {
            String::new()
        }
    );
    Ok(())
}

/// Asks the appliance or shield that runs the filter of `iface` to log
/// the capture's start or end (other people's packets leave the box in a
/// file: the event log says who took which). Without one answering, says
/// so: the capture itself goes on.
fn note(iface: &str, started: bool, what: &str, written: u64, lost: u64) {
    let request = appliance::control::ControlRequest::CaptureNote {
        started,
        pid: std::process::id(),
        what: what.to_string(),
        written,
        lost,
    };
    for path in super::filter::control_sockets(None, Some(iface)) {
        match appliance::control::request(&path, &request, Duration::from_secs(5)) {
            Ok(r) if r.ok => return,
            Ok(r) => {
                eprintln!("dce-edge capture: not in the event log: {}", r.message);
                return;
            }
            Err(_) => continue,
        }
    }
    if started {
        eprintln!(
            "dce-edge capture: no appliance or shield answered on its control socket: this capture is in no event log"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        capture: CaptureArgs,
    }

    fn parse(args: &[&str]) -> Result<CaptureSpec> {
        let cli = Cli::try_parse_from(std::iter::once("capture").chain(args.iter().copied()))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        spec(&cli.capture)
    }

    #[test]
    fn reasons_are_named_and_may_be_listed() {
        let s = parse(&["--reason", "rate_limit,not_sip", "--out", "x.pcap"]).unwrap();
        assert_eq!(s.reasons, [DropReason::RateLimit, DropReason::NotSip]);
        assert_eq!((s.source, s.count), (None, 100));
        let err = parse(&["--reason", "flood", "--out", "x.pcap"]).unwrap_err();
        assert!(err.to_string().contains("not a drop reason"), "{err}");
        assert!(err.to_string().contains("rate_limit"), "{err}");
    }

    #[test]
    fn a_source_alone_is_enough_and_nothing_is_refused() {
        let s = parse(&[
            "--source",
            "198.51.100.0/24",
            "--out",
            "x.pcap",
            "--count",
            "5",
        ])
        .unwrap();
        assert_eq!(s.source, Some("198.51.100.0/24".parse().unwrap()));
        assert!(s.reasons.is_empty());
        assert!(parse(&["--out", "x.pcap"]).is_err());
        assert!(parse(&["--source", "198.51.100.1/24", "--out", "x.pcap"]).is_err());
    }

    #[test]
    fn count_is_bounded() {
        for count in ["0", "100001"] {
            let err = parse(&["--reason", "scanner", "--out", "x", "--count", count]).unwrap_err();
            assert!(err.to_string().contains("--count"), "{err}");
        }
    }
}
