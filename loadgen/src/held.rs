//! When a load step *held*: its calls went well **and** they were started at
//! the rate that was offered. A step whose calls all completed but were
//! started at a fraction of the offered rate measured that fraction, not the
//! offered rate; counting it as held is how a search "holds" rates the
//! generator never sent. The rule is one pure function, shared by the
//! capacity search and the lab's benches (`loadgen_vs_sipp`, `edge_sipp`).
//!
//! When the rate falls short, the verdict says whose limit it was: the
//! generator's (its pacer started calls late, or its busiest thread was
//! saturated), or, when its pacer kept its schedule, the system under
//! test's (a caller with a limit of calls in progress, such as SIPp's, stops
//! starting calls while they wait for answers). A generator that shows no
//! pacer figure (SIPp) cannot be cleared by its CPU alone: one waiting for
//! a core on a loaded box is not busy either, so the verdict says the cause
//! is not known.

use std::fmt;

use serde::Serialize;

use crate::report::SATURATION;

/// A step holds only if calls were started at this share of the offered
/// rate or more.
pub const MIN_RATE_SHARE: f64 = 0.97;

/// A pacer that started calls this late (microseconds) was behind its
/// schedule: the generator, not the system under test, fell behind.
pub const PACING_LAG_LIMIT_US: u64 = 10_000;

/// What the generator knows about its own load during the step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct GeneratorLoad {
    /// The busiest generator thread's busy fraction of a core (its peak
    /// second where the generator measures per second, else its average),
    /// when known.
    pub busy: Option<f64>,
    /// The latest start of a call against its schedule, in microseconds,
    /// when the generator's pacer reports it (SIPp does not).
    pub pacing_lag_us: Option<u64>,
}

impl GeneratorLoad {
    /// Why the generator itself was behind, if its own figures say so.
    fn behind(&self) -> Option<String> {
        let mut why = Vec::new();
        if let Some(lag) = self.pacing_lag_us.filter(|&l| l > PACING_LAG_LIMIT_US) {
            why.push(format!(
                "its pacer started calls up to {:.1} ms late",
                lag as f64 / 1000.0
            ));
        }
        if let Some(b) = self.busy.filter(|&b| b > SATURATION) {
            why.push(format!(
                "its busiest thread used {:.0}% of a core",
                b * 100.0
            ));
        }
        (!why.is_empty()).then(|| why.join(" and "))
    }

    /// Why the starts fell short when the generator's figures do not say
    /// it was behind: only a pacer that kept its schedule clears the
    /// generator; CPU alone cannot, since a generator waiting for a core
    /// (a loaded box) is not busy either.
    fn not_behind(&self) -> String {
        match (self.pacing_lag_us, self.busy) {
            (Some(lag), busy) => format!(
                "the generator kept its schedule (pacer at most {:.1} ms late{}), so calls waiting on the system under test held the starts back",
                lag as f64 / 1000.0,
                busy.map_or(String::new(), |b| format!(", busiest thread {:.0}% of a core", b * 100.0))
            ),
            (None, Some(b)) => format!(
                "the generator used {:.0}% of a core and reports no pacing lag of its own, so whether calls waiting on the system under test or the generator waiting for a core held the starts back is not known",
                b * 100.0
            ),
            (None, None) => "the generator reports no figures of its own load, so whose limit this is is not known".to_string(),
        }
    }
}

/// What one step measured, as the rule reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StepFacts {
    /// Calls per second offered.
    pub offered_cps: f64,
    /// Calls per second really started (calls started over the span they
    /// were started in).
    pub achieved_cps: f64,
    /// Calls started.
    pub started: u64,
    /// Share of started calls that did not complete.
    pub failed_ratio: f64,
    /// The p99 latency the criterion reads, microseconds, if it has one.
    pub p99_us: Option<u64>,
    /// Share of messages sent again, if the criterion reads it.
    pub retransmitted_ratio: Option<f64>,
    /// The generator's own load.
    pub generator: GeneratorLoad,
}

/// The limits a step must keep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Limits {
    /// A step fails when more than this share of calls did not complete.
    pub max_failed_ratio: f64,
    /// A step fails when its p99 latency is above this (microseconds).
    pub max_p99_us: Option<u64>,
    /// A step fails when this share of messages or more was sent again.
    pub max_retransmitted_ratio: Option<f64>,
    /// A step fails when calls were started below this share of the
    /// offered rate ([`MIN_RATE_SHARE`]).
    pub min_rate_share: f64,
}

impl Limits {
    /// Failed calls at most `max_failed_ratio`, started at 97% of the
    /// offered rate or more; no latency or retransmission limit.
    pub fn new(max_failed_ratio: f64) -> Self {
        Limits {
            max_failed_ratio,
            max_p99_us: None,
            max_retransmitted_ratio: None,
            min_rate_share: MIN_RATE_SHARE,
        }
    }
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Calls went well and were started at the offered rate.
    Held,
    /// Calls failed, were too slow or were retransmitted too often, with
    /// the generator keeping up: the system under test did not hold.
    FailedByErrors,
    /// Calls were started below 97% of the offered rate while the
    /// generator's figures do not show it behind: its pacer kept its
    /// schedule (calls waiting on the system under test held the starts
    /// back), or it has no pacer figure and the cause is not known.
    FailedByRate,
    /// Calls were started below 97% of the offered rate and the generator's
    /// own figures say it fell behind: the step measured the generator, not
    /// the system under test.
    GeneratorBound,
}

/// The rule's answer for one step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepVerdict {
    /// How the step ended.
    pub outcome: Outcome,
    /// Achieved over offered rate.
    pub rate_share: f64,
    /// Every limit the step broke, in words (empty when it held).
    pub reasons: Vec<String>,
}

impl StepVerdict {
    /// True when the step held.
    pub fn held(&self) -> bool {
        self.outcome == Outcome::Held
    }
}

impl fmt::Display for StepVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.held() {
            f.write_str("held")
        } else {
            let tag = match self.outcome {
                Outcome::Held => "held",
                Outcome::FailedByErrors => "failed",
                Outcome::FailedByRate => "failed by rate",
                Outcome::GeneratorBound => "generator-bound",
            };
            write!(f, "{tag}: {}", self.reasons.join("; "))
        }
    }
}

/// Applies the rule to one step. Every broken limit is named; the outcome
/// is the generator's when the rate fell short and the generator says it
/// was behind (whatever else went wrong then may be its doing too), else
/// errors before rate.
pub fn judge(s: &StepFacts, l: &Limits) -> StepVerdict {
    let share = if s.offered_cps > 0.0 {
        s.achieved_cps / s.offered_cps
    } else {
        0.0
    };
    let mut errors = Vec::new();
    if s.started == 0 {
        errors.push("no call started".to_string());
    } else if s.failed_ratio > l.max_failed_ratio {
        errors.push(format!(
            "{:.3}% of calls failed (limit {:.3}%)",
            s.failed_ratio * 100.0,
            l.max_failed_ratio * 100.0
        ));
    }
    if let (Some(p99), Some(max)) = (s.p99_us, l.max_p99_us) {
        if s.started > 0 && p99 > max {
            errors.push(format!(
                "p99 {:.1} ms above {:.1} ms",
                p99 as f64 / 1000.0,
                max as f64 / 1000.0
            ));
        }
    }
    if let (Some(r), Some(max)) = (s.retransmitted_ratio, l.max_retransmitted_ratio) {
        if r >= max {
            errors.push(format!(
                "{:.2}% of messages retransmitted (limit {:.2}%)",
                r * 100.0,
                max * 100.0
            ));
        }
    }
    let rate_short = share < l.min_rate_share;
    let mut reasons = errors.clone();
    let outcome = if rate_short {
        let rate = format!(
            "calls started at {:.0} cps, {:.1}% of the {:.0} cps offered (at least {:.0}% needed)",
            s.achieved_cps,
            share * 100.0,
            s.offered_cps,
            l.min_rate_share * 100.0
        );
        match s.generator.behind() {
            Some(why) => {
                reasons.push(format!("{rate}: the generator fell behind ({why})"));
                Outcome::GeneratorBound
            }
            None => {
                reasons.push(format!("{rate}: {}", s.generator.not_behind()));
                if errors.is_empty() {
                    Outcome::FailedByRate
                } else {
                    Outcome::FailedByErrors
                }
            }
        }
    } else if errors.is_empty() {
        Outcome::Held
    } else {
        Outcome::FailedByErrors
    };
    StepVerdict {
        outcome,
        rate_share: share,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(offered: f64, achieved: f64) -> StepFacts {
        StepFacts {
            offered_cps: offered,
            achieved_cps: achieved,
            started: (achieved * 10.0) as u64,
            failed_ratio: 0.0,
            p99_us: Some(2_000),
            retransmitted_ratio: None,
            generator: GeneratorLoad {
                busy: Some(0.4),
                pacing_lag_us: Some(200),
            },
        }
    }

    fn limits() -> Limits {
        Limits {
            max_p99_us: Some(50_000),
            ..Limits::new(0.001)
        }
    }

    #[test]
    fn a_step_started_at_the_offered_rate_without_failures_holds() {
        let v = judge(&step(10_000.0, 9_800.0), &limits());
        assert_eq!(v.outcome, Outcome::Held);
        assert!(v.held() && v.reasons.is_empty());
        assert_eq!(v.to_string(), "held");
    }

    #[test]
    fn failed_calls_fail_the_step_by_errors() {
        let mut s = step(10_000.0, 10_000.0);
        s.failed_ratio = 0.01;
        let v = judge(&s, &limits());
        assert_eq!(v.outcome, Outcome::FailedByErrors);
        assert!(v.reasons[0].contains("1.000% of calls failed"), "{v}");
    }

    #[test]
    fn latency_and_retransmissions_fail_by_errors() {
        let mut s = step(10_000.0, 10_000.0);
        s.p99_us = Some(80_000);
        assert_eq!(judge(&s, &limits()).outcome, Outcome::FailedByErrors);
        let mut s = step(10_000.0, 10_000.0);
        s.retransmitted_ratio = Some(0.02);
        let l = Limits {
            max_retransmitted_ratio: Some(0.01),
            ..limits()
        };
        let v = judge(&s, &l);
        assert_eq!(v.outcome, Outcome::FailedByErrors);
        assert!(v.reasons[0].contains("retransmitted"), "{v}");
    }

    #[test]
    fn a_step_without_failures_started_too_slowly_does_not_hold() {
        // Like the bench's "400,000 cps held" step: every call completed,
        // but they were started at 88,000 cps. Here the generator's pacer
        // kept its schedule, so the shortfall is the system under test's.
        let v = judge(&step(400_000.0, 88_000.0), &limits());
        assert_eq!(v.outcome, Outcome::FailedByRate);
        assert!(!v.held());
        assert!((v.rate_share - 0.22).abs() < 1e-9);
        assert!(v.reasons[0].contains("22.0% of the 400000 cps"), "{v}");
        assert!(v.reasons[0].contains("system under test"), "{v}");
    }

    #[test]
    fn the_boundary_is_97_percent() {
        assert!(judge(&step(1000.0, 970.0), &limits()).held());
        assert!(!judge(&step(1000.0, 969.0), &limits()).held());
    }

    #[test]
    fn a_late_pacer_makes_the_step_generator_bound() {
        let mut s = step(400_000.0, 88_000.0);
        s.generator.pacing_lag_us = Some(18_000_000);
        let v = judge(&s, &limits());
        assert_eq!(v.outcome, Outcome::GeneratorBound);
        assert!(v.reasons[0].contains("18000.0 ms late"), "{v}");
    }

    #[test]
    fn a_saturated_generator_thread_makes_the_step_generator_bound() {
        let mut s = step(50_000.0, 40_000.0);
        s.generator.busy = Some(0.99);
        s.failed_ratio = 0.05;
        let v = judge(&s, &limits());
        // Its failures may be the generator's doing too: both are said.
        assert_eq!(v.outcome, Outcome::GeneratorBound);
        assert_eq!(v.reasons.len(), 2);
        assert!(v.reasons[1].contains("99% of a core"), "{v}");
    }

    #[test]
    fn a_saturated_generator_that_kept_its_rate_does_not_excuse_failures() {
        let mut s = step(50_000.0, 50_000.0);
        s.generator.busy = Some(0.99);
        s.failed_ratio = 0.05;
        assert_eq!(judge(&s, &limits()).outcome, Outcome::FailedByErrors);
    }

    #[test]
    fn a_generator_with_room_but_no_pacer_figure_does_not_blame_anyone() {
        // SIPp: its CPU is known, its pacing is not; on a loaded box a
        // generator waiting for a core is not busy either.
        let mut s = step(4_000.0, 3_848.0);
        s.generator.pacing_lag_us = None;
        let v = judge(&s, &limits());
        assert_eq!(v.outcome, Outcome::FailedByRate);
        assert!(v.reasons[0].contains("40% of a core"), "{v}");
        assert!(v.reasons[0].contains("is not known"), "{v}");
    }

    #[test]
    fn a_generator_without_figures_says_it_cannot_tell() {
        let mut s = step(6_000.0, 4_165.0);
        s.generator = GeneratorLoad::default();
        let v = judge(&s, &limits());
        assert_eq!(v.outcome, Outcome::FailedByRate);
        assert!(v.reasons[0].contains("not known"), "{v}");
    }

    #[test]
    fn no_call_started_fails() {
        let v = judge(&StepFacts::default(), &limits());
        assert!(!v.held());
        assert!(v.reasons[0].contains("no call started"), "{v}");
    }
}
