//! What the edge counts, as one serializable snapshot: the contract between
//! the parts that count (XDP maps, workers, routes, health) and the parts
//! that show (the Prometheus endpoint, `dce-edge stats`, the live view, the
//! demo report). The control thread assembles a [`Snapshot`]; nothing here
//! touches the hot path.

mod snapshot;

pub use snapshot::*;
