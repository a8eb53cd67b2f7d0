//! One module per `dce-edge` subcommand: its flags and how it prints. The
//! work itself is done by the library crates.

pub mod capture;
pub mod cleanup;
pub mod demo;
pub mod events;
pub mod filter;
pub mod fleet;
pub mod generate;
pub mod profile;
pub mod routes;
pub mod run;
pub mod sip;
pub mod stats;
pub mod tls;
pub mod watch;
