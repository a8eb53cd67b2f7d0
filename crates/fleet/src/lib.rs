//! A fleet of edges behind one anycast service address, sans-IO: when this
//! edge announces the address through its routing daemon ([`announce`]),
//! and the `[fleet]` configuration ([`config`]). The routing daemon's
//! control socket is driven by the appliance, which owns every socket;
//! here are only the decisions, with the time passed in.

pub mod announce;
pub mod config;

pub use announce::{Announcer, Change, Health, HoldDown, Problem};
pub use config::{AnnounceConfig, FleetConfig};
