//! Tests of the `dce-edge` command line: `sip check`, `profile`, `routes`, the tuning scripts,
//! the operations commands (`events reopen`, `cleanup`, `generate`).

mod ops_cli;
mod profile_cli;
mod profile_veth;
mod routes_cli;
mod sip_check;
mod tuning_script;
