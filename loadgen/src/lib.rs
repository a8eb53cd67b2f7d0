//! dce-loadgen: SIP callers and upstream servers for capacity planning, and
//! attack traffic for the lab.
//!
//! The engine is a library so the lab demo and the end-to-end tests can drive
//! it in-process and read its reports: [`uac::run`] for callers,
//! [`uas::Uas::start`] for servers, [`capacity::search`] for the capacity
//! search, and [`attack`] for scanner sweeps, password guessing, floods,
//! garbage and fragments. The `dce-loadgen` binary only parses its command
//! line ([`cli`]) and calls these.

pub mod attack;
pub mod capacity;
pub mod cli;
pub mod digest;
pub mod held;
pub mod msg;
pub mod msgbuf;
pub mod numbers;
pub mod pacing;
pub mod plot;
pub mod progress;
pub mod report;
pub mod sipmsg;
pub mod stream;
pub mod timers;
pub mod uac;
pub mod uas;
pub mod verdict;
