//! A fleet of edges behind one anycast service address, sans-IO: when this
//! edge announces the address through its routing daemon ([`announce`]),
//! what edges tell each other over the bus ([`message`]) and the rules for
//! taking it ([`shared`]), and the `[fleet]` configuration ([`config`]).
//! The routing daemon's control socket and the bus are driven by the
//! appliance, which owns every socket; here are only the decisions, with
//! the time passed in.

pub mod announce;
pub mod config;
pub mod message;
pub mod shared;

pub use announce::{Announcer, Change, Health, HoldDown, Problem};
pub use config::{AnnounceConfig, BusConfig, Credentials, FleetConfig};
