//! `dce-edge generate man|completions --out DIR` (hidden): the manual pages
//! (clap_mangen, one page per command and subcommand) and the bash, zsh and
//! fish completions (clap_complete) of the two binaries the package ships,
//! `dce-edge` and `dce-loadgen`, written from the same clap definitions the
//! binaries parse, so they cannot drift from them. `scripts/package.sh` runs
//! it when it builds the Debian package.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Command, Subcommand};
use clap_complete::Shell;

/// What to generate.
#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// Manual pages: NAME.1 and NAME-SUBCOMMAND.1 for every visible
    /// subcommand, for dce-edge and dce-loadgen.
    Man {
        /// Directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Shell completions: NAME.bash, _NAME (zsh) and NAME.fish, for
    /// dce-edge and dce-loadgen.
    Completions {
        /// Directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
}

/// Writes what `what` asks for about each of `commands` (a binary's whole
/// command line each) and prints the files written.
pub fn run(what: &GenerateCommand, commands: Vec<Command>) -> Result<()> {
    let mut written = Vec::new();
    for cmd in commands {
        written.extend(match what {
            GenerateCommand::Man { out } => man_pages(cmd, out)?,
            GenerateCommand::Completions { out } => completions(cmd, out)?,
        });
    }
    for path in &written {
        println!("{}", path.display());
    }
    Ok(())
}

/// One page per command, `dce-edge.1`, `dce-edge-run.1`, ..., the way git
/// names its pages (clap_mangen's layout); hidden commands get none.
pub fn man_pages(cmd: Command, out: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let name = cmd.get_name().to_string();
    clap_mangen::generate_to(cmd, out)
        .with_context(|| format!("writing the {name} manual pages into {}", out.display()))?;
    let mut written: Vec<PathBuf> = std::fs::read_dir(out)
        .with_context(|| format!("reading {}", out.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.ends_with(".1")
                    && (n == format!("{name}.1") || n.starts_with(&format!("{name}-")))
            })
        })
        .collect();
    written.sort();
    Ok(written)
}

/// Completions for bash, zsh and fish, named as Debian's completion folders
/// expect them.
pub fn completions(cmd: Command, out: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut cmd = cmd;
    let name = cmd.get_name().to_string();
    let mut written = Vec::new();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let path = clap_complete::generate_to(shell, &mut cmd, &name, out)
            .with_context(|| format!("writing {shell} completions into {}", out.display()))?;
        written.push(path);
    }
    Ok(written)
}
