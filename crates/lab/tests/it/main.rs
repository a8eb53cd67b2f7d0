//! End-to-end tests of dce-edge: the real binaries in network namespaces with real peers (SIPp, Kamailio, SIPVicious), bounded senders, clean-up on failure.

mod appliance_sipp;
mod ban_import_e2e;
mod capacity_flood_e2e;
mod capture_e2e;
mod demo_smoke;
mod emergency_e2e;
mod filter_e2e;
mod filter_reload_e2e;
mod filter_tcp_e2e;
mod fleet_e2e;
mod lab_faults;
mod lab_kamailio;
mod lab_scanners;
mod live_view_tmux;
mod metrics_dashboard;
mod metrics_e2e;
mod metrics_endpoint;
mod metrics_stats_cli;
mod redteam;
mod stream_e2e;
mod target_health;

use lab::privilege::{feature_or_skip, have_program, privileged_or_skip};
use lab::topology::{Lab, LabSpec};

/// The lab of a test that runs SIPp through `dce-edge run`: `None` (the
/// test returns) when it is skipped for want of root, `sipp` or `nsenter`,
/// each with its printed reason; otherwise the lab built from `spec`.
pub(crate) fn sipp_lab_or_skip(test: &str, spec: &LabSpec) -> Option<Lab> {
    lab_with_or_skip(
        test,
        spec,
        &[("sipp", "sip-tester"), ("nsenter", "util-linux")],
    )
}

/// The lab of a test that needs root and the given programs (each with
/// the Debian package that has it): `None` (the test returns) when one is
/// missing, with the printed reason; otherwise the lab built from `spec`.
pub(crate) fn lab_with_or_skip(
    test: &str,
    spec: &LabSpec,
    programs: &[(&str, &str)],
) -> Option<Lab> {
    if !privileged_or_skip(test) {
        return None;
    }
    let names: Vec<&str> = programs.iter().map(|(p, _)| *p).collect();
    let what = match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    let packages: Vec<&str> = programs.iter().map(|(_, pkg)| *pkg).collect();
    if !feature_or_skip(
        test,
        programs.iter().all(|(p, _)| have_program(p)),
        &what,
        &format!("apt-get install {}", packages.join(" ")),
    ) {
        return None;
    }
    Some(Lab::build(spec).unwrap())
}
