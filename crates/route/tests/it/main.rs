//! Integration tests of the route tables: files, reloads, CPS caps and property tests.

mod cps;
mod files;
mod guards;
mod props;
mod reload;
