//! Integration tests of the appliance pieces that do I/O: the target health
//! prober, SIP over TCP through the stream thread, the fleet's bus over a
//! real nats-server.

mod fleet_bus;
mod probe;
mod probe_props;
mod stream;
mod stream_load;
