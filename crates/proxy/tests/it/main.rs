//! Tests of the proxy through its public contract only (the unit tests in
//! `src/tests.rs` see its insides).

mod passive_health;
mod props;
