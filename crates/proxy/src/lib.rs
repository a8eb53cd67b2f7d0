//! The stateless SIP edge proxy, sans-IO: bytes and where they came from in,
//! what to send and where out, with every message that is neither forwarded
//! nor answered counted under a reason. No socket, thread or clock inside;
//! the dataplane drives it in AF_XDP and socket mode alike.

pub mod abuse;
pub mod answers;
mod batch;
pub mod config;
pub mod cookie;
pub mod emergency;
pub mod handler;
pub mod rate;
pub mod source_table;
pub mod stateless;
pub mod verified;

pub use config::{Cidr, ProxyConfig, ProxySection};
pub use stateless::{EdgeProxy, ProxyControl, ProxyDrop, ProxyEvent, ProxyStats};

#[cfg(test)]
mod tests;
