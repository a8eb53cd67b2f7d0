//! The CPS band a hardware profile says a box must hold.
//!
//! Interim: `dce_edge::profile` is being written on another branch. Until it
//! lands this reads `hardware-profiles/NAME.toml` itself, key
//! `[must_hold] cps_min` / `cps_max`; when it lands, [`cps_band`] becomes a
//! call to `dce_edge::profile::load(name)`.

use std::path::{Path, PathBuf};

use dce_edge::config::{ConfigError, SourceFile};
use serde::Serialize;

/// Calls per second a tier must hold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CpsBand {
    /// The least a box of the tier must sustain.
    pub min: f64,
    /// The top of the band.
    pub max: f64,
}

#[derive(serde::Deserialize)]
struct ProfileFile {
    must_hold: MustHold,
}

#[derive(serde::Deserialize)]
struct MustHold {
    cps_min: toml::Spanned<f64>,
    cps_max: toml::Spanned<f64>,
}

/// Where profile files are looked for: `$DCE_PROFILE_DIR`, else
/// `hardware-profiles/` in the current directory or its parents.
pub fn profile_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DCE_PROFILE_DIR") {
        return d.into();
    }
    let mut at = std::env::current_dir().unwrap_or_default();
    loop {
        let cand = at.join("hardware-profiles");
        if cand.is_dir() {
            return cand;
        }
        if !at.pop() {
            return PathBuf::from("hardware-profiles");
        }
    }
}

/// The CPS band of profile `name` (a file name without `.toml`, or a path).
pub fn cps_band(name: &str) -> Result<CpsBand, ConfigError> {
    let path = if name.ends_with(".toml") || name.contains('/') {
        PathBuf::from(name)
    } else {
        profile_dir().join(format!("{name}.toml"))
    };
    band_from_file(&path)
}

/// Reads the band from a profile file.
pub fn band_from_file(path: &Path) -> Result<CpsBand, ConfigError> {
    let src = SourceFile::read(path)?;
    let p: ProfileFile = src.parse_toml()?;
    let (min, max) = (p.must_hold.cps_min, p.must_hold.cps_max);
    if !(min.get_ref().is_finite() && *min.get_ref() > 0.0) {
        return Err(src.error_at(min.span(), "cps_min must be a positive number"));
    }
    if *max.get_ref() < *min.get_ref() {
        return Err(src.error_at(max.span(), "cps_max is below cps_min"));
    }
    Ok(CpsBand {
        min: *min.get_ref(),
        max: *max.get_ref(),
    })
}

/// How a measured capacity compares with a band.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Verdict {
    /// Profile name.
    pub profile: String,
    /// The band.
    pub band: CpsBand,
    /// The highest rate that held.
    pub measured_cps: f64,
    /// True when the measured rate reaches the band's minimum.
    pub meets: bool,
    /// One sentence for people.
    pub summary: String,
}

/// Compares `measured_cps` with `band`.
pub fn verdict(profile: &str, band: CpsBand, measured_cps: f64) -> Verdict {
    let meets = measured_cps >= band.min;
    let summary = if measured_cps >= band.max {
        format!(
            "meets profile {profile}: held {measured_cps:.0} cps, at or above the band's top ({:.0}-{:.0} cps)",
            band.min, band.max
        )
    } else if meets {
        format!(
            "meets profile {profile}: held {measured_cps:.0} cps, inside the band {:.0}-{:.0} cps",
            band.min, band.max
        )
    } else {
        format!(
            "does NOT meet profile {profile}: held {measured_cps:.0} cps, below the band's minimum {:.0} cps",
            band.min
        )
    };
    Verdict {
        profile: profile.into(),
        band,
        measured_cps,
        meets,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dce-prof-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn band_is_read_from_must_hold() {
        let p = write("ok.toml", "[must_hold]\ncps_min = 5000\ncps_max = 30000\n");
        assert_eq!(band_from_file(&p).unwrap(), CpsBand { min: 5000.0, max: 30000.0 });
    }

    #[test]
    fn inverted_band_names_the_line() {
        let p = write("bad.toml", "[must_hold]\ncps_min = 5000\ncps_max = 100\n");
        let e = band_from_file(&p).unwrap_err();
        assert_eq!(e.line, 3, "{e}");
    }

    #[test]
    fn verdict_says_whether_the_band_is_met() {
        let b = CpsBand { min: 5000.0, max: 30000.0 };
        assert!(verdict("x", b, 6000.0).meets);
        assert!(!verdict("x", b, 4000.0).meets);
        assert!(verdict("x", b, 40000.0).summary.contains("top"));
    }
}
