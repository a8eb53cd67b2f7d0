//! The `dce-edge profile` and `dce-edge tune` subcommands. `main.rs` only
//! dispatches here.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use config::ConfigError;
use profile::host::{HostFacts, HostRoot};
use profile::{detect, tune, Catalog, Profile};

/// Exit status when an audit line fails.
pub const EXIT_AUDIT_FAILED: u8 = 1;
/// Exit status for a refused profile, an unknown name or bad arguments.
pub const EXIT_ERROR: u8 = 2;

/// `dce-edge profile ...`
#[derive(Debug, Args)]
pub struct ProfileArgs {
    #[command(subcommand)]
    command: ProfileCommand,
    /// Also load the profiles in DIR (a file there replaces the built-in
    /// profile of the same name).
    #[arg(long, global = true, value_name = "DIR")]
    profiles_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum ProfileCommand {
    /// List the hardware profiles.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one profile: its file, comments and all (or its values as JSON).
    Show {
        /// The profile's name.
        name: String,
        /// Print the validated values as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Read this host and name the profile that fits it best.
    Detect {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Read /sys and /proc under DIR instead of / (a fixture tree or a
        /// snapshot of another host).
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: PathBuf,
        /// Only match this interface.
        #[arg(long, value_name = "IF")]
        iface: Option<String>,
    },
}

/// `dce-edge tune ...`
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["check", "fixes"])))]
pub struct TuneArgs {
    /// Audit the host against the profile: pass, warn or fail per check,
    /// with the fix; exits 1 if any check fails.
    #[arg(long)]
    check: bool,
    /// Print the fix commands, one per line (manual steps as comments);
    /// `tuning/apply.sh` runs them.
    #[arg(long)]
    fixes: bool,
    /// The SIP interface (default: the one that fits the profile best).
    #[arg(long, value_name = "IF")]
    iface: Option<String>,
    /// The profile (default: the one `profile detect` names).
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Read /sys and /proc under DIR instead of /.
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// Also load the profiles in DIR.
    #[arg(long, value_name = "DIR")]
    profiles_dir: Option<PathBuf>,
}

fn refuse(e: &ConfigError) -> ExitCode {
    eprintln!("dce-edge: {e}");
    ExitCode::from(EXIT_ERROR)
}

fn json<T: serde::Serialize>(value: &T) -> String {
    let mut s = serde_json::to_string_pretty(value).expect("report serialises");
    s.push('\n');
    s
}

/// Runs `dce-edge profile ...`.
pub fn run_profile(args: ProfileArgs) -> ExitCode {
    let catalog = match Catalog::open(args.profiles_dir.as_deref()) {
        Ok(c) => c,
        Err(e) => return refuse(&e),
    };
    match args.command {
        ProfileCommand::List { json: as_json } => {
            if as_json {
                print!("{}", json(&catalog.profiles()));
            } else {
                print!("{}", render_list(catalog.profiles()));
            }
        }
        ProfileCommand::Show {
            name,
            json: as_json,
        } => {
            let profile = match catalog.get(&name) {
                Ok(p) => p,
                Err(e) => return refuse(&e),
            };
            if as_json {
                print!("{}", json(profile));
            } else {
                println!("# {}", profile.origin().display());
                println!("# band: {}", profile.band().basis_line());
                print!("{}", profile.text());
            }
        }
        ProfileCommand::Detect {
            json: as_json,
            root,
            iface,
        } => {
            let host = HostFacts::read(&HostRoot::at(root));
            if let Some(name) = &iface {
                if host.interface(name).is_none() {
                    eprintln!("dce-edge: no Ethernet interface named {name} on this host");
                    return ExitCode::from(EXIT_ERROR);
                }
            }
            let d = detect::detect(host, catalog.profiles(), iface.as_deref());
            if as_json {
                print!("{}", json(&d));
            } else {
                print!("{}", detect::render(&d));
            }
        }
    }
    ExitCode::SUCCESS
}

/// Runs `dce-edge tune ...`.
pub fn run_tune(args: TuneArgs) -> ExitCode {
    let catalog = match Catalog::open(args.profiles_dir.as_deref()) {
        Ok(c) => c,
        Err(e) => return refuse(&e),
    };
    let host = HostFacts::read(&HostRoot::at(&args.root));
    let (profile, detected): (Profile, bool) = match &args.profile {
        Some(name) => match catalog.get(name) {
            Ok(p) => (p.clone(), false),
            Err(e) => return refuse(&e),
        },
        None => {
            let d = detect::detect(host.clone(), catalog.profiles(), args.iface.as_deref());
            match d.best.and_then(|m| catalog.get(&m.profile).ok().cloned()) {
                Some(p) => (p, true),
                None => {
                    eprintln!("dce-edge: no interface to match a profile to; name one with --profile and --iface");
                    return ExitCode::from(EXIT_ERROR);
                }
            }
        }
    };
    let audit = tune::audit(&host, &profile, args.iface.as_deref());
    if args.fixes {
        print!("{}", tune::render_fixes(&audit));
        return ExitCode::SUCCESS;
    }
    if args.json {
        print!("{}", json(&audit));
    } else {
        if detected {
            println!(
                "(profile {} chosen by `dce-edge profile detect`; name one with --profile)",
                profile.name()
            );
        }
        print!("{}", tune::render(&audit));
    }
    if audit.failed() {
        ExitCode::from(EXIT_AUDIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

/// The table `profile list` prints.
pub fn render_list(profiles: &[Profile]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:>5} {:<18} {:>9} {:<7} {:<9} {:>7} {:>13} {:>11} {:<11}",
        "name",
        "cores",
        "drivers",
        "link",
        "xdp",
        "af_xdp",
        "workers",
        "guide cps",
        "target cps",
        "basis"
    );
    for p in profiles {
        let h = p.hardware();
        let b = p.band();
        let basis = match (&b.measurement, &b.model) {
            (Some(m), _) => format!("measured {} on {}", m.cps, m.on),
            (None, Some(m)) => format!("extrapolated (model {})", m.supported_cps),
            (None, None) => "none".to_string(),
        };
        let _ = writeln!(
            out,
            "{:<12} {:>5} {:<18} {:>9} {:<7} {:<9} {:>7} {:>13} {:>11} {:<11}",
            p.name(),
            h.cores,
            h.nic_drivers.join(","),
            format!("{}G", h.link_speed_mbps / 1000),
            match h.xdp_mode {
                profile::XdpMode::Native => "native",
                profile::XdpMode::Generic => "generic",
            },
            match h.af_xdp {
                profile::AfXdpMode::ZeroCopy => "zero-copy",
                profile::AfXdpMode::Copy => "copy",
            },
            p.runtime().workers,
            format!("{}-{}", b.guide_cps.min, b.guide_cps.max),
            b.target_cps,
            basis,
        );
    }
    out
}
