//! The appliance (`dce-edge run`): the XDP filter, the workers and their
//! proxies, the route tables and their prober, wired together by a control
//! thread that owns everything the workers do not. The command line that
//! starts it lives in the `dce-edge` binary.

pub mod config;
pub mod control;
pub mod events;
pub mod feeds;
pub mod fleet;
pub mod probe;
pub mod run;
pub mod shield;
pub mod stream;

pub use config::ApplianceConfig;
pub use events::ControlEvent;
pub use run::{Appliance, StartError};
