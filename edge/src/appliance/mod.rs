//! The appliance (`dce-edge run`): the XDP filter, the workers and their
//! proxies, the route tables and their prober, wired together by a control
//! thread that owns everything the workers do not.

pub mod cli;
pub mod config;

pub use config::ApplianceConfig;
pub mod run;

pub use run::{Appliance, ControlEvent, StartError};
