//! The capacity search against servers on 127.0.0.1: the steps it runs and
//! what it reports (no timing assertion: whether a step holds depends on the
//! machine, only the search's bookkeeping is checked).

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use loadgen::capacity::{self, CapacityConfig};
use loadgen::uac::UacConfig;
use loadgen::uas::{Uas, UasConfig};

#[test]
fn search_rises_geometrically_and_reports_every_step() {
    let uas = Uas::start(UasConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
    let mut u = UacConfig::new(uas.local_addr());
    u.sources = 4;
    let mut cfg = CapacityConfig::new(u);
    cfg.start_cps = 50.0;
    cfg.growth = 2.0;
    cfg.max_cps = 200.0;
    cfg.step_duration = Duration::from_secs(1);
    cfg.settle = Duration::from_millis(100);
    cfg.refine_steps = 1;
    let mut seen = 0;
    let r = capacity::search(&cfg, &AtomicBool::new(false), |_| seen += 1).unwrap();
    uas.stop().unwrap();
    assert_eq!(seen, r.steps.len());
    assert_eq!(r.steps[0].offered_cps, 50.0);
    for s in &r.steps {
        assert!(s.started > 0, "{r}");
        assert_eq!(s.held, s.reason.is_none());
        assert!(s.offered_cps <= 200.0);
    }
    // Rising steps double until one fails or the maximum is reached.
    let rising: Vec<f64> = r.steps.iter().map(|s| s.offered_cps).take(3).collect();
    if r.steps.iter().take(2).all(|s| s.held) {
        assert_eq!(rising, vec![50.0, 100.0, 200.0], "{r}");
    }
    match r.highest_held_cps {
        Some(h) => assert!(r.steps.iter().any(|s| s.held && s.offered_cps == h)),
        None => assert!(!r.steps[0].held),
    }
    let svg = loadgen::plot::latency_vs_cps(&r, 50.0);
    assert_eq!(svg.matches("<polyline").count(), 4);
}

#[test]
fn a_growth_of_one_or_less_is_refused() {
    let mut cfg = CapacityConfig::new(UacConfig::new("127.0.0.1:9".parse().unwrap()));
    cfg.growth = 1.0;
    assert!(capacity::search(&cfg, &AtomicBool::new(false), |_| {}).is_err());
}
