//! Tests of the XDP program and its userspace side: BPF_PROG_TEST_RUN runs of
//! every verdict and counter, maps, and attaching to veth pairs in network
//! namespaces.

mod capture;
mod cost;
mod differential;
mod emergency;
mod program;
mod reload;
mod stale_pins;
mod support;
mod tcp;
