//! Integration tests of the appliance pieces that do I/O: the target health prober.

mod probe;
mod probe_props;
