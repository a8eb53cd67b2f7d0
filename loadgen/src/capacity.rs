//! Capacity search: offer rising call rates until the pass criterion breaks
//! (failed calls above 0.1%, p99 setup above 50 ms, or calls started below
//! 97% of the offered rate: [`crate::held`]), then refine
//! between the last rate that held and the first that did not, and report the
//! highest rate that held, with every step's figures.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::held::{self, GeneratorLoad, Limits, Outcome, StepFacts};
use crate::report::{LatencySummary, SATURATION};
use crate::uac::{self, Scenario, UacConfig, UacError};
use crate::verdict::Verdict;

/// How the search runs.
#[derive(Debug, Clone)]
pub struct CapacityConfig {
    /// The callers of every step; `cps`, `duration` and `max_calls` are set
    /// per step.
    pub uac: UacConfig,
    /// First rate offered.
    pub start_cps: f64,
    /// Each rising step offers this factor times the previous one (> 1).
    pub growth: f64,
    /// Never offer more than this.
    pub max_cps: f64,
    /// How long each step offers calls.
    pub step_duration: Duration,
    /// Bisection steps between the last good and first bad rate.
    pub refine_steps: u32,
    /// Pause between steps, so late answers of one step do not load the next.
    pub settle: Duration,
    /// A step fails when more than this share of calls did not complete.
    pub max_failed_ratio: f64,
    /// A step fails when the p99 setup latency is above this.
    pub max_p99: Duration,
}

impl CapacityConfig {
    /// Defaults for `uac`'s target: from 500 cps, ×1.5 per step, 10 s steps,
    /// 3 refinement steps, failed ≤ 0.1%, p99 ≤ 50 ms.
    pub fn new(uac: UacConfig) -> Self {
        CapacityConfig {
            uac,
            start_cps: 500.0,
            growth: 1.5,
            max_cps: 1_000_000.0,
            step_duration: Duration::from_secs(10),
            refine_steps: 3,
            settle: Duration::from_secs(1),
            max_failed_ratio: 0.001,
            max_p99: Duration::from_millis(50),
        }
    }
}

/// One offered rate and what it gave.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Rate offered.
    pub offered_cps: f64,
    /// Rate the generator actually started calls at.
    pub achieved_cps: f64,
    /// Calls started.
    pub started: u64,
    /// Calls completed.
    pub completed: u64,
    /// Share of started calls that did not complete.
    pub failed_ratio: f64,
    /// The latency the criterion reads (setup for calls, the request's
    /// round trip for OPTIONS and REGISTER).
    pub latency: LatencySummary,
    /// Retransmissions sent.
    pub retransmissions: u64,
    /// Did the step pass the criterion (calls went well and were started
    /// at 97% of the offered rate or more).
    pub held: bool,
    /// How it ended: held, failed by errors, failed by rate, or bound by
    /// the generator.
    pub outcome: Outcome,
    /// Achieved over offered rate.
    pub rate_share: f64,
    /// Why it failed, when it did.
    pub reason: Option<String>,
    /// Busiest generator thread (fraction of a core).
    pub generator_peak_busy: f64,
    /// The latest call start against the pacer's schedule, microseconds.
    pub pacing_lag_us: u64,
    /// Generator CPU (all its threads) per completed call, microseconds.
    pub generator_us_per_call: Option<f64>,
    /// The step report's warnings.
    pub warnings: Vec<String>,
}

/// The result of a search.
#[derive(Debug, Clone, Serialize)]
pub struct CapacityReport {
    /// Target.
    pub target: String,
    /// Scenario.
    pub scenario: String,
    /// The criterion in words.
    pub criterion: String,
    /// Every step, in the order run.
    pub steps: Vec<Step>,
    /// Highest offered rate that held.
    pub highest_held_cps: Option<f64>,
    /// Lowest offered rate that failed.
    pub lowest_failed_cps: Option<f64>,
    /// True when a failing step had a saturated generator thread: the limit
    /// found may be the generator's.
    pub generator_limited: bool,
    /// Profile comparison, if one was asked for.
    pub profile: Option<Verdict>,
}

fn step_latency(r: &crate::report::UacReport, scenario: Scenario) -> LatencySummary {
    let name = match scenario {
        Scenario::Call => "setup",
        Scenario::Cancel => "first_answer",
        Scenario::Options => "options",
        Scenario::Register => "register",
    };
    r.latency_us.get(name).copied().unwrap_or_default()
}

/// Runs one step at `cps`.
pub fn run_step(cfg: &CapacityConfig, cps: f64, stop: &AtomicBool) -> Result<Step, UacError> {
    let mut u = cfg.uac.clone();
    u.cps = cps;
    u.duration = cfg.step_duration;
    u.max_calls = u64::MAX;
    let r = uac::run(&u, stop)?;
    let latency = step_latency(&r, u.scenario);
    let generator_peak_busy = r.threads.iter().map(|t| t.peak_busy).fold(0.0, f64::max);
    let pacing_lag_us = r.latency_us.get("start_lag").map_or(0, |l| l.max_us);
    let facts = StepFacts {
        offered_cps: cps,
        achieved_cps: r.achieved_cps,
        started: r.started,
        failed_ratio: r.failed_ratio,
        p99_us: Some(latency.p99_us),
        retransmitted_ratio: None,
        generator: GeneratorLoad {
            busy: Some(generator_peak_busy),
            pacing_lag_us: Some(pacing_lag_us),
        },
    };
    let limits = Limits {
        max_p99_us: Some(cfg.max_p99.as_micros() as u64),
        ..Limits::new(cfg.max_failed_ratio)
    };
    let verdict = held::judge(&facts, &limits);
    let cpu_s: f64 = r.threads.iter().map(|t| t.cpu_s).sum();
    let completed = r.outcomes.completed;
    Ok(Step {
        offered_cps: cps,
        achieved_cps: r.achieved_cps,
        started: r.started,
        completed,
        failed_ratio: r.failed_ratio,
        latency,
        retransmissions: r.retransmissions.invite + r.retransmissions.non_invite,
        held: verdict.held(),
        outcome: verdict.outcome,
        rate_share: verdict.rate_share,
        reason: (!verdict.held()).then(|| verdict.to_string()),
        generator_peak_busy,
        pacing_lag_us,
        generator_us_per_call: (completed > 0).then(|| cpu_s * 1e6 / completed as f64),
        warnings: r.warnings,
    })
}

/// Runs the search. `on_step` sees each step as it ends (for progress).
pub fn search(
    cfg: &CapacityConfig,
    stop: &AtomicBool,
    mut on_step: impl FnMut(&Step),
) -> Result<CapacityReport, UacError> {
    if cfg.growth.is_nan() || cfg.growth <= 1.0 {
        return Err(UacError::Config(format!(
            "growth must be above 1, got {}",
            cfg.growth
        )));
    }
    if !(cfg.start_cps > 0.0 && cfg.start_cps <= cfg.max_cps) {
        return Err(UacError::Config(format!(
            "start rate {} must be above 0 and at most the maximum {}",
            cfg.start_cps, cfg.max_cps
        )));
    }
    let mut steps = Vec::new();
    let mut good: Option<f64> = None;
    let mut bad: Option<f64> = None;
    let mut cps = cfg.start_cps;
    let mut run = |cps: f64, steps: &mut Vec<Step>| -> Result<bool, UacError> {
        let s = run_step(cfg, cps, stop)?;
        on_step(&s);
        let held = s.held;
        steps.push(s);
        std::thread::sleep(cfg.settle);
        Ok(held)
    };
    // Rising phase.
    while !stop.load(Ordering::Relaxed) {
        if run(cps, &mut steps)? {
            good = Some(cps);
            if cps >= cfg.max_cps {
                break;
            }
            cps = (cps * cfg.growth).min(cfg.max_cps);
        } else {
            bad = Some(cps);
            break;
        }
    }
    // Refinement between the last good and the first bad rate.
    if let (Some(_), Some(_)) = (good, bad) {
        for _ in 0..cfg.refine_steps {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let (g, b) = (good.unwrap_or(0.0), bad.unwrap_or(0.0));
            let mid = ((g + b) / 2.0).round();
            if mid <= g || mid >= b {
                break;
            }
            if run(mid, &mut steps)? {
                good = Some(mid);
            } else {
                bad = Some(mid);
            }
        }
    }
    let generator_limited = steps.iter().any(|s| {
        s.outcome == Outcome::GeneratorBound || (!s.held && s.generator_peak_busy > SATURATION)
    });
    Ok(CapacityReport {
        target: cfg.uac.target.to_string(),
        scenario: cfg.uac.scenario.name().into(),
        criterion: format!(
            "failed calls <= {:.3}%, p99 latency <= {} ms, calls started at >= {:.0}% of the offered rate",
            cfg.max_failed_ratio * 100.0,
            cfg.max_p99.as_millis(),
            held::MIN_RATE_SHARE * 100.0
        ),
        steps,
        highest_held_cps: good,
        lowest_failed_cps: bad,
        generator_limited,
        profile: None,
    })
}

impl CapacityReport {
    /// The JSON document.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

impl fmt::Display for CapacityReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "dce-loadgen capacity: {} against {}",
            self.scenario, self.target
        )?;
        writeln!(f, "  criterion: {}", self.criterion)?;
        writeln!(
            f,
            "  {:>10} {:>10} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>6} {:>8} {:>10}  result",
            "offered",
            "achieved",
            "ach%",
            "started",
            "failed%",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "retx",
            "gen%",
            "lag ms",
            "gen us/call"
        )?;
        let ms = |us: u64| us as f64 / 1000.0;
        for s in &self.steps {
            writeln!(
                f,
                "  {:>10.0} {:>10.0} {:>6.1} {:>9} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>7} {:>6.0} {:>8.1} {:>10}  {}",
                s.offered_cps,
                s.achieved_cps,
                s.rate_share * 100.0,
                s.started,
                s.failed_ratio * 100.0,
                ms(s.latency.p50_us),
                ms(s.latency.p90_us),
                ms(s.latency.p99_us),
                ms(s.latency.p999_us),
                s.retransmissions,
                s.generator_peak_busy * 100.0,
                ms(s.pacing_lag_us),
                s.generator_us_per_call
                    .map_or("-".to_string(), |u| format!("{u:.1}")),
                s.reason.as_deref().unwrap_or("held")
            )?;
        }
        match self.highest_held_cps {
            Some(c) => writeln!(f, "  highest rate that held: {c:.0} cps")?,
            None => writeln!(f, "  no rate held")?,
        }
        if let Some(c) = self.lowest_failed_cps {
            writeln!(f, "  lowest rate that failed: {c:.0} cps")?;
        }
        if self.generator_limited {
            writeln!(
                f,
                "  WARNING: the generator fell behind in a failing step (its pacer started calls late, or a thread was above {:.0}% of a core): the limit found may be the generator's; add threads or cores",
                SATURATION * 100.0
            )?;
        }
        if let Some(v) = &self.profile {
            writeln!(f, "  {}", v.summary)?;
        }
        Ok(())
    }
}
