//! `dce-lab`: the end-to-end tests (`tests/`) and benchmarks (`benches/`) of
//! dce-edge live in this package; it has no library code of its own.
