//! What travels on the wire below SIP: Ethernet (with 802.1Q/802.1ad tags),
//! IPv4 and IPv6 with UDP, as borrowed views of frames that arrive and
//! in-place writers for frames that leave ([`frame`]); a builder of whole
//! test frames ([`build`]); the internet checksum ([`checksum`]); and CIDR
//! networks ([`Cidr`]).
//!
//! No I/O and no dependencies: the proxy, the dataplane, the XDP loader and
//! the load generator all speak these types.

pub mod build;
pub mod checksum;
mod cidr;
pub mod frame;

pub use cidr::Cidr;
pub use frame::{MacAddr, UdpFrame};
