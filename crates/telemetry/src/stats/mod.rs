//! What the edge counts, as one serializable snapshot: the contract between
//! the parts that count (XDP maps, workers, routes, health) and the parts
//! that show (the Prometheus endpoint, `dce-edge stats`, the live view, the
//! demo report). The control thread assembles a [`Snapshot`]; nothing here
//! touches the hot path.
//!
//! Around it: [`rates`] (per-second rates from two snapshots),
//! [`networks`] (the top offending sources folded into networks) and
//! [`client`] (fetch a snapshot from a running edge over HTTP). The
//! `dce-edge stats` command and its live view live in the binary.

pub mod client;
pub mod networks;
pub mod rates;
mod snapshot;

pub use snapshot::*;
