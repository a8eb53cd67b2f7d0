//! Integration tests of the appliance pieces that do I/O: the target health
//! prober, the fleet's bus over a real nats-server.

mod fleet_bus;
mod probe;
mod probe_props;
