//! dce-loadgen: SIP callers and upstream servers for capacity planning, and
//! attack traffic for the lab.
#![deny(unsafe_code)]
