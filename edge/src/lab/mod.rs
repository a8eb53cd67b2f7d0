//! The lab: network namespaces joined by veth pairs, where the demo and the
//! end-to-end tests run callers, attackers, the edge and upstream servers
//! without touching any real network.

pub mod bin;
pub mod netns;
pub mod ping;
pub mod topology;
