//! `dce-edge cleanup --config FILE`: removes what `dce-edge run --config
//! FILE` leaves behind when its process died without stopping (killed, or
//! crashed): the XDP maps pinned for its interface and its control socket.
//! What a live process still owns is left alone, so a service manager can
//! run it after every stop (the packaged unit's `ExecStopPost`).

use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};

use appliance::ApplianceConfig;
use xdp::loader::{remove_leftover_pins, PinFolder};

/// Arguments of `dce-edge cleanup`.
#[derive(Debug, clap::Args)]
pub struct CleanupArgs {
    /// The appliance configuration the process ran with.
    #[arg(long, short)]
    pub config: PathBuf,
}

/// Removes the leftovers of a dead `dce-edge run --config FILE`, printing
/// one line per thing found.
pub fn run(args: &CleanupArgs) -> Result<()> {
    let cfg = ApplianceConfig::load(&args.config).map_err(|e| anyhow!("{e}"))?;
    if cfg.filter.is_some() {
        for folder in remove_leftover_pins(&cfg.dataplane.interface)? {
            match folder {
                PinFolder::Removed(dir) => println!("removed leftover pins {}", dir.display()),
                PinFolder::Running { dir, pid } => println!(
                    "left {} alone: its filter still runs (process {pid})",
                    dir.display()
                ),
            }
        }
    }
    if remove_stale_socket(&cfg.control_socket)? {
        println!(
            "removed stale control socket {}",
            cfg.control_socket.display()
        );
    }
    Ok(())
}

/// Removes `path` when it is a socket nobody answers on; true when it did.
fn remove_stale_socket(path: &Path) -> Result<bool> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(false);
    };
    if !meta.file_type().is_socket() || UnixStream::connect(path).is_ok() {
        return Ok(false);
    }
    std::fs::remove_file(path).map_err(|e| anyhow!("removing {}: {e}", path.display()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn a_socket_nobody_answers_on_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        drop(UnixListener::bind(&path).unwrap());
        assert!(remove_stale_socket(&path).unwrap());
        assert!(!path.exists());
    }

    #[test]
    fn a_live_socket_and_other_files_stay() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live.sock");
        let _listener = UnixListener::bind(&live).unwrap();
        assert!(!remove_stale_socket(&live).unwrap());
        assert!(live.exists());
        let file = dir.path().join("control.sock");
        std::fs::write(&file, "not a socket").unwrap();
        assert!(!remove_stale_socket(&file).unwrap());
        assert!(file.exists());
        assert!(!remove_stale_socket(&dir.path().join("missing.sock")).unwrap());
    }
}
