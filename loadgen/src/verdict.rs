//! Whether a measured capacity meets a hardware profile's band
//! (`profile`): the profile's `target_cps` is what a box of its tier must
//! hold, and with `--with-flood`, its `flood_pps` is the flood it must shed
//! while `flood_legit_success_pct` of the legitimate calls still complete.
//! The guide's band and the basis of the target are shown beside it.

use config::ConfigError;
use profile::Band;
use serde::Serialize;

use crate::capacity::Step;
use crate::held::MIN_RATE_SHARE;

/// The band of profile `name` (a built-in name, or a path to a file).
pub fn band(name: &str) -> Result<Band, ConfigError> {
    Ok(profile::load(name)?.band().clone())
}

/// What the flood sent while the search ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct FloodRun {
    /// Packets per second asked for (`--with-flood`).
    pub offered_pps: u64,
    /// Packets per second the kernel took.
    pub achieved_pps: f64,
    /// Packets sent.
    pub sent: u64,
    /// Packets refused or blocked.
    pub send_failed: u64,
}

/// How the legitimate calls fared under the flood, against the profile's
/// flood fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FloodVerdict {
    /// The flood the profile says the box must shed, packets per second.
    pub profile_flood_pps: u64,
    /// The flood that ran.
    pub run: FloodRun,
    /// Legitimate calls started in the steps at or below the target rate.
    pub legit_started: u64,
    /// Of those, completed.
    pub legit_completed: u64,
    /// Completed over started, percent.
    pub legit_success_pct: f64,
    /// The profile's `flood_legit_success_pct`.
    pub required_success_pct: f64,
    /// True when the flood ran at (97% of) the profile's rate or more and
    /// enough legitimate calls completed.
    pub meets: bool,
    /// One sentence for people.
    pub summary: String,
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
    /// What the target rests on ([`Band::basis_line`]).
    pub basis: String,
    /// The p99 setup latency the tier must keep, ms.
    pub setup_latency_p99_ms: u32,
    /// The highest rate that held.
    pub measured_cps: f64,
    /// True when the measured rate reaches the target.
    pub meets_cps: bool,
    /// The flood fields' check, when a flood ran.
    pub flood: Option<FloodVerdict>,
    /// True when the CPS band is met and, if a flood ran, its fields too.
    pub meets: bool,
    /// One sentence for people (two lines with a flood).
    pub summary: String,
}

/// Judges the flood fields of `band` from the flood that ran and the steps
/// run under it: the flood must have run at 97% of the profile's
/// `flood_pps` or more, and the calls of the steps offered at or below the
/// target rate must have completed at `flood_legit_success_pct` or more.
pub fn flood_verdict(band: &Band, run: FloodRun, steps: &[Step]) -> FloodVerdict {
    let target = f64::from(band.target_cps);
    let (started, completed) = steps
        .iter()
        .filter(|s| s.offered_cps <= target)
        .fold((0u64, 0u64), |(a, b), s| (a + s.started, b + s.completed));
    let pct = if started > 0 {
        completed as f64 * 100.0 / started as f64
    } else {
        0.0
    };
    let required = band.flood_legit_success_pct;
    let rate_ok = run.achieved_pps >= band.flood_pps as f64 * MIN_RATE_SHARE;
    let calls_ok = started > 0 && pct >= required;
    let summary = format!(
        "flood: {:.0} pps sent (asked {}; the profile's flood_pps is {}{}), legitimate calls at or below the target rate completed {:.3}% ({completed} of {started}; flood_legit_success_pct {required}): {}",
        run.achieved_pps,
        run.offered_pps,
        band.flood_pps,
        if rate_ok {
            String::new()
        } else {
            format!(
                ", so this flood is below it: the flood fields are NOT shown met (at least {:.0} pps needed)",
                band.flood_pps as f64 * MIN_RATE_SHARE
            )
        },
        pct,
        if rate_ok && calls_ok {
            "meets"
        } else {
            "does NOT meet"
        }
    );
    FloodVerdict {
        profile_flood_pps: band.flood_pps,
        run,
        legit_started: started,
        legit_completed: completed,
        legit_success_pct: pct,
        required_success_pct: required,
        meets: rate_ok && calls_ok,
        summary,
    }
}

/// Compares `measured_cps` with `band`, and the flood, if one ran.
pub fn verdict(
    profile: &str,
    band: &Band,
    measured_cps: f64,
    flood: Option<FloodVerdict>,
) -> Verdict {
    let target = f64::from(band.target_cps);
    let meets_cps = measured_cps >= target;
    let guide = (band.guide_cps.min, band.guide_cps.max);
    let cps = if meets_cps {
        format!(
            "meets profile {profile}'s CPS band: held {measured_cps:.0} cps, target {} cps (guide band for a Kamailio-class proxy {}-{} cps)",
            band.target_cps, guide.0, guide.1
        )
    } else {
        format!(
            "does NOT meet profile {profile}'s CPS band: held {measured_cps:.0} cps, below its target {} cps ({:.0}% of it)",
            band.target_cps,
            measured_cps / target.max(1.0) * 100.0
        )
    };
    let flood_line = match &flood {
        Some(f) => f.summary.clone(),
        None => format!(
            "flood fields not checked (flood_pps {}, flood_legit_success_pct {}): run with --with-flood {}",
            band.flood_pps, band.flood_legit_success_pct, band.flood_pps
        ),
    };
    let meets = meets_cps && flood.as_ref().is_none_or(|f| f.meets);
    Verdict {
        profile: profile.into(),
        target_cps: band.target_cps,
        guide_cps: guide,
        basis: band.basis_line(),
        setup_latency_p99_ms: band.setup_latency_p99_ms,
        measured_cps,
        meets_cps,
        flood,
        meets,
        summary: format!("{cps}\n  {flood_line}\n  band: {}", band.basis_line()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::held::Outcome;
    use crate::report::LatencySummary;

    fn step(cps: f64, started: u64, completed: u64) -> Step {
        Step {
            offered_cps: cps,
            achieved_cps: cps,
            started,
            completed,
            failed_ratio: 0.0,
            latency: LatencySummary::default(),
            retransmissions: 0,
            held: true,
            outcome: Outcome::Held,
            rate_share: 1.0,
            reason: None,
            generator_peak_busy: 0.1,
            pacing_lag_us: 0,
            generator_us_per_call: None,
            warnings: vec![],
        }
    }

    fn flood(pps: f64) -> FloodRun {
        FloodRun {
            offered_pps: pps as u64,
            achieved_pps: pps,
            sent: pps as u64 * 10,
            send_failed: 0,
        }
    }

    #[test]
    fn verdict_compares_with_the_profile_target() {
        let b = band("lab").expect("built-in lab profile");
        let t = f64::from(b.target_cps);
        assert!(verdict("lab", &b, t, None).meets);
        let below = verdict("lab", &b, t - 1.0, None);
        assert!(!below.meets);
        assert!(below.summary.contains("does NOT meet"), "{}", below.summary);
    }

    #[test]
    fn the_verdict_says_what_the_target_rests_on() {
        let b = band("lab").unwrap();
        let v = verdict("lab", &b, 20_000.0, None);
        assert!(
            v.summary.contains("measured: 21624 CPS held on 2026-12-07"),
            "{}",
            v.summary
        );
        let b = band("large-edge").unwrap();
        let v = verdict("large-edge", &b, 1.0, None);
        assert!(v.basis.contains("extrapolated"), "{}", v.basis);
    }

    #[test]
    fn without_a_flood_the_flood_fields_are_said_to_be_unchecked() {
        let b = band("lab").unwrap();
        let v = verdict("lab", &b, 20_000.0, None);
        assert!(v.meets_cps && v.flood.is_none());
        assert!(
            v.summary.contains("flood fields not checked")
                && v.summary.contains("--with-flood 400000"),
            "{}",
            v.summary
        );
    }

    #[test]
    fn a_flood_at_the_profile_rate_with_calls_completing_meets() {
        let b = band("lab").unwrap();
        let steps = [
            step(5_000.0, 50_000, 50_000),
            step(10_000.0, 100_000, 99_950),
        ];
        let f = flood_verdict(&b, flood(400_000.0), &steps);
        assert!(f.meets, "{}", f.summary);
        assert_eq!((f.legit_started, f.legit_completed), (150_000, 149_950));
        let v = verdict("lab", &b, 15_500.0, Some(f));
        assert!(v.meets, "{}", v.summary);
    }

    #[test]
    fn calls_failing_under_the_flood_do_not_meet() {
        let b = band("lab").unwrap();
        let steps = [step(5_000.0, 50_000, 49_000)];
        let f = flood_verdict(&b, flood(400_000.0), &steps);
        assert!(!f.meets);
        assert!(f.summary.contains("98.000%"), "{}", f.summary);
        // The CPS band alone met is not enough.
        assert!(!verdict("lab", &b, 15_500.0, Some(f)).meets);
    }

    #[test]
    fn a_flood_below_the_profile_rate_does_not_show_the_fields_met() {
        let b = band("lab").unwrap();
        let steps = [step(5_000.0, 50_000, 50_000)];
        let f = flood_verdict(&b, flood(20_000.0), &steps);
        assert!(!f.meets);
        assert!(f.summary.contains("below it"), "{}", f.summary);
        // Asked for the profile's rate but sent less: the same 97% rule.
        let short = FloodRun {
            offered_pps: 400_000,
            ..flood(380_000.0)
        };
        assert!(!flood_verdict(&b, short, &steps).meets);
    }

    #[test]
    fn steps_above_the_target_do_not_count_against_the_flood() {
        let b = band("lab").unwrap();
        let steps = [
            step(10_000.0, 100_000, 100_000),
            step(30_000.0, 300_000, 1_000),
        ];
        let f = flood_verdict(&b, flood(400_000.0), &steps);
        assert!(f.meets, "{}", f.summary);
    }

    #[test]
    fn unknown_profile_is_refused_with_a_reason() {
        let e = band("no-such-tier").unwrap_err();
        assert!(!e.reason.is_empty());
    }
}
