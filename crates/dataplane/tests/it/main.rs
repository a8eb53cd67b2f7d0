//! Integration tests of the dataplane: AF_XDP and socket workers on veth pairs in network namespaces, the frame writer against the kernel, neighbours, no allocation in the steady state, and the TCP stream layer on 127.0.0.1.

mod afxdp;
mod alloc;
#[allow(dead_code)]
mod common;
mod frame_kernel;
mod neigh;
mod socket;
mod stream;
