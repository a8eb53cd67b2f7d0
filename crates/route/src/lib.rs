//! Route tables: where the edge sends a call, decided by the longest prefix
//! of the dialed number.
//!
//! A [`RouteTable`] maps digit prefixes (E.164 without `+`, plus a default
//! route) to [`RouteGroup`]s: an [`Action`] (forward, redirect, reject), targets
//! with priority and weight, and a CPS cap. Tables come from a groups TOML
//! and a prefixes CSV ([`files`]), are built and checked off the hot path by
//! the control thread ([`reload::RouteControl`]) and handed to each worker,
//! which owns its own copy ([`reload::WorkerRoutes`]). Target health comes from
//! SIP OPTIONS probes and from what calls toward each target meet
//! ([`health`]), as small messages through the same rings.

pub mod cps;
pub mod files;
pub mod health;
pub mod huge;
pub mod reload;
pub mod select;
pub mod synth;
pub mod table;
pub mod trie;

pub use cps::{Admission, CpsShares};
pub use files::{LoadedRoutes, RouteErrors, RoutesConfig};
pub use health::{HealthCause, HealthSettings, InviteActivity, TargetBook, TargetHealth};
pub use reload::{Decision, RouteControl, WorkerRoutes};
pub use select::HealthView;
pub use table::{
    Action, GroupId, Probe, RouteGroup, RouteMatch, RouteTable, Target, Transport, UpstreamId,
    WhenAllDown,
};
