//! Integration tests of the route tables: files, reloads, CPS caps and property tests.

mod cps;
mod files;
mod props;
mod reload;
