//! Whether a measured capacity meets a hardware profile's band
//! (`profile`): the profile's `target_cps` is what a box of its
//! tier must hold; the architecture guide's band for a Kamailio-class proxy
//! on the tier is shown beside it.

use config::ConfigError;
use profile::Band;
use serde::Serialize;

/// The band of profile `name` (a built-in name, or a path to a file).
pub fn band(name: &str) -> Result<Band, ConfigError> {
    Ok(profile::load(name)?.band().clone())
}

/// How a measured capacity compares with a profile's band.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Verdict {
    /// Profile name.
    pub profile: String,
    /// Calls per second the tier must hold.
    pub target_cps: u32,
    /// The guide's band for a Kamailio-class proxy on the tier.
    pub guide_cps: (u32, u32),
    /// The p99 setup latency the tier must keep, ms.
    pub setup_latency_p99_ms: u32,
    /// The highest rate that held.
    pub measured_cps: f64,
    /// True when the measured rate reaches the target.
    pub meets: bool,
    /// One sentence for people.
    pub summary: String,
}

/// Compares `measured_cps` with `band`.
pub fn verdict(profile: &str, band: &Band, measured_cps: f64) -> Verdict {
    let target = f64::from(band.target_cps);
    let meets = measured_cps >= target;
    let guide = (band.guide_cps.min, band.guide_cps.max);
    let summary = if meets {
        format!(
            "meets profile {profile}: held {measured_cps:.0} cps, target {} cps (guide band for a Kamailio-class proxy {}-{} cps)",
            band.target_cps, guide.0, guide.1
        )
    } else {
        format!(
            "does NOT meet profile {profile}: held {measured_cps:.0} cps, below its target {} cps ({:.0}% of it)",
            band.target_cps,
            measured_cps / target.max(1.0) * 100.0
        )
    };
    Verdict {
        profile: profile.into(),
        target_cps: band.target_cps,
        guide_cps: guide,
        setup_latency_p99_ms: band.setup_latency_p99_ms,
        measured_cps,
        meets,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_compares_with_the_profile_target() {
        let b = band("lab").expect("built-in lab profile");
        let t = f64::from(b.target_cps);
        assert!(verdict("lab", &b, t).meets);
        let below = verdict("lab", &b, t - 1.0);
        assert!(!below.meets);
        assert!(below.summary.contains("does NOT meet"), "{}", below.summary);
    }

    #[test]
    fn unknown_profile_is_refused_with_a_reason() {
        let e = band("no-such-tier").unwrap_err();
        assert!(!e.reason.is_empty());
    }
}
