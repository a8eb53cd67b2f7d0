//! The lab: network namespaces joined by veth pairs, where the demo and the
//! end-to-end tests run callers, attackers, the edge and upstream servers
//! without touching any real network.

pub mod bin;
pub mod cpu;
pub mod demo;
pub mod edge_process;
pub mod fleet;
pub mod fleet_demo;
pub mod kamailio;
pub mod nats;
pub mod netns;
pub mod ping;
pub mod privilege;
pub mod redteam;
pub mod sipp;
pub mod topology;

use std::time::{Duration, Instant};

/// Waits up to `timeout` for `cond`, checking every 100 ms; true if it
/// held. For waiting on something another process does, without assuming
/// how fast a loaded machine does it.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
