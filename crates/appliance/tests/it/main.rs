//! Integration tests of the appliance pieces that do I/O: the target health prober, and SIP over TCP through the stream thread.

mod probe;
mod probe_props;
mod stream;
