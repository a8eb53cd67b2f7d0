//! The Prometheus endpoint: `/metrics` in OpenMetrics text and
//! `/snapshot.json` for `dce-edge stats` and the live view, rendered from
//! the [`Snapshot`](telemetry::stats::Snapshot) the control thread assembles.
//! Served by one thread on the control side; nothing here touches a worker.
//!
//! Every exported name is listed, one line each, in `docs/metrics.md`.

mod config;
mod encode;
mod server;

pub use config::{MetricsConfig, MetricsSection, DEFAULT_LISTEN};
pub use encode::{
    escape_label_value, histogram_buckets_seconds, render_openmetrics, sample_names, sample_value,
    BAN_REASONS, OPENMETRICS_CONTENT_TYPE, TOP_NETWORKS_EXPORTED, TOP_SOURCES_EXPORTED,
};
pub use server::{MetricsError, MetricsServer, SnapshotPublisher};
