//! dce-edge: a SIP edge appliance.
//!
//! An XDP program sheds floods, scanners and garbage in the NIC path; pinned
//! worker threads take the rest through AF_XDP (or UDP sockets), parse it and
//! route it statelessly through per-worker route tables. See DESIGN.md in the
//! steering repository and the README for the data path.
#![deny(unsafe_code)]

pub mod appliance;
pub mod config;
pub mod dataplane;
pub mod events;
pub mod lab;
pub mod metrics;
pub mod privilege;
pub mod profile;
pub mod proxy;
pub mod route;
pub mod sip;
pub mod stats;
pub mod xdp;
