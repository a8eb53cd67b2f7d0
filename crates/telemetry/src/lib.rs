//! What dce-edge says about itself: the [`stats::Snapshot`] the control
//! thread assembles from every counter, the Prometheus endpoint that serves
//! it ([`metrics`]), and the JSON event log a SOC feeds to its SIEM
//! ([`events`]). Nothing here touches the hot path.

pub mod events;
pub mod metrics;
pub mod stats;
