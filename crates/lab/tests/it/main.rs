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
