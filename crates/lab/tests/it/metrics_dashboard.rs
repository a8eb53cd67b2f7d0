//! The Grafana dashboard in `dashboards/grafana/dce-edge.json` is
//! importable JSON and queries only what the endpoint exports: every
//! `dce_edge_*` name in its expressions is a sample name rendered from a
//! snapshot with every part filled, and every `by (...)` label is a label
//! the endpoint writes (or one Prometheus adds). The Prometheus alert rules
//! in `alerts/dce-edge.rules.yml` are held to the same two rules.

use std::collections::BTreeSet;

use serde_json::Value;
use telemetry::metrics::{render_openmetrics, sample_names};
use telemetry::stats::{
    BanInForce, BanMapFill, CallCounters, EmergencyReport, LatencyHistogram, Modes, Role,
    RouteCounters, Snapshot, TargetState, TopOffender, WorkerReport, XdpCounters,
};

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../dashboards/grafana/dce-edge.json"
);

const ALERT_RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../alerts/dce-edge.rules.yml"
);

fn dashboard() -> Value {
    let text = std::fs::read_to_string(DASHBOARD).expect("dashboard file");
    serde_json::from_str(&text).expect("dashboard is well-formed JSON")
}

/// A snapshot with every section populated, so every family has samples.
fn full_snapshot() -> Snapshot {
    Snapshot {
        verified_sources: 3,
        filter_reloads: Default::default(),
        version: "0.1.0".into(),
        role: Role::Appliance,
        interface: Some("eth0".into()),
        taken_at_ms: 1,
        uptime_seconds: 1.0,
        modes: Modes {
            attach: "native".into(),
            attach_fallback: false,
            dataplane: "zero_copy".into(),
            program_id: None,
        },
        xdp: Some(XdpCounters {
            drops: [("scanner".to_string(), 1)].into(),
            passed: 1,
            redirected: 1,
        }),
        top_sources: vec![TopOffender {
            source: "198.18.0.1".into(),
            drops: 1,
            last_reason: "scanner".into(),
        }],
        bans: vec![BanInForce {
            source: "198.18.0.1".into(),
            reason: "scanner".into(),
            seconds_left: 1,
        }],
        ban_maps: vec![BanMapFill {
            map: "bans_v4".into(),
            entries: 1,
            capacity: 65536,
        }],
        workers: vec![WorkerReport {
            id: 0,
            core: Some(0),
            queue: Some(0),
            received: 1,
            transmitted: 1,
            parse_errors: [("truncated".to_string(), 1)].into(),
            forwarded_requests: 1,
            forwarded_responses: 1,
            answered: [(200, 1)].into(),
            dropped: [("loop".to_string(), 1)].into(),
            rings: [("fill_shortfalls".to_string(), 1)].into(),
            snapshot_age_ms: 5,
            cpu_us: 1,
            cpu_wait_us: 1,
            realtime: true,
        }],
        routes: RouteCounters {
            table_version: 1,
            prefixes: 1,
            lookups: 1,
            batched_lookups: 1,
            hits: [("a".to_string(), 1)].into(),
            misses: 1,
            cap_rejections: [("a".to_string(), 1)].into(),
            reloads_accepted: 1,
            reloads_refused: 1,
            last_reload_error: None,
        },
        targets: vec![TargetState {
            group: "a".into(),
            target: "198.18.1.1:5060".into(),
            up: true,
            rtt_ms: Some(1.0),
            probes_sent: 1,
            probes_answered: 1,
            cause: None,
        }],
        setup_latency: LatencyHistogram {
            bounds_ms: vec![1.0],
            counts: vec![1, 0],
            count: 1,
            sum_ms: 0.5,
            p50_ms: 0.5,
            p99_ms: 0.5,
        },
        calls: CallCounters {
            invites_forwarded: 1,
            answered: 1,
            failed: 0,
        },
        emergency: EmergencyReport {
            attempted: 1,
            forwarded: 1,
            answered: 1,
            ..EmergencyReport::default()
        },
        top_networks: Some(telemetry::stats::networks::aggregate(
            &[telemetry::stats::networks::SourceDrops {
                addr: "198.18.0.9".parse().unwrap(),
                drops: 7,
                reason: "scanner".into(),
            }],
            8192,
            10,
        )),
        stream: None,
        fleet: None,
    }
}

/// Every string in the dashboard that holds a query: panel target `expr`s
/// and template variable queries.
fn queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "definition" | "query", Value::String(s)) => out.push(s.clone()),
                    _ => queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

/// `dce_edge_[a-z_]+` occurrences in an expression that start a name (not
/// inside a longer word such as the label value `no_dce_edge_metrics`).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    let mut before: Option<char> = None;
    while let Some(at) = rest.find("dce_edge_") {
        let starts_a_name = match rest[..at].chars().next_back().or(before) {
            Some(c) => !(c.is_ascii_alphanumeric() || c == '_'),
            None => true,
        };
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        if starts_a_name {
            names.push(tail[..len].to_string());
        }
        before = tail[..len].chars().next_back();
        rest = &tail[len..];
    }
    names
}

/// Label names inside `by (...)` clauses.
fn grouping_labels(expr: &str) -> Vec<String> {
    let mut labels = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("by (") {
        let tail = &rest[at + 4..];
        let end = tail.find(')').expect("closed by clause");
        labels.extend(tail[..end].split(',').map(|l| l.trim().to_string()));
        rest = &tail[end..];
    }
    labels
}

/// Label keys the exposition writes.
fn exported_labels(exposition: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        if let Some((_, labels)) = line.split_once('{') {
            let labels = labels.split('}').next().unwrap_or_default();
            for pair in labels.split(',') {
                if let Some((k, _)) = pair.split_once('=') {
                    keys.insert(k.to_string());
                }
            }
        }
    }
    keys
}

#[test]
fn every_queried_metric_is_exported() {
    let exported: BTreeSet<String> = sample_names(&render_openmetrics(&full_snapshot()))
        .into_iter()
        .collect();
    let mut exprs = Vec::new();
    queries(&dashboard(), &mut exprs);
    let queried: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    assert!(
        queried.len() >= 20,
        "suspiciously few metrics queried: {queried:?}"
    );
    let unknown: Vec<&String> = queried.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "queried but not exported: {unknown:?}\nexported: {exported:?}"
    );
}

#[test]
fn metric_names_are_whole_names_only() {
    assert_eq!(
        metric_names("rate(dce_edge_calls_total[5m]) \"no_dce_edge_metrics\" (dce_edge_info)"),
        ["dce_edge_calls_total", "dce_edge_info"]
    );
}

#[test]
fn every_grouping_label_is_exported() {
    let mut known = exported_labels(&render_openmetrics(&full_snapshot()));
    // Added by Prometheus at scrape time, or the histogram's bucket label.
    known.extend(["instance".to_string(), "job".to_string(), "le".to_string()]);
    let mut exprs = Vec::new();
    queries(&dashboard(), &mut exprs);
    for expr in &exprs {
        for label in grouping_labels(expr) {
            assert!(
                known.contains(&label),
                "label {label:?} of {expr:?} is not exported"
            );
        }
    }
}

/// The alert rules' text: every expression and every templated query in
/// the annotations (the file is YAML; names are looked for in all of it).
fn alert_rules() -> String {
    std::fs::read_to_string(ALERT_RULES).expect("alert rules file")
}

#[test]
fn every_metric_the_alert_rules_name_is_exported() {
    let exported: BTreeSet<String> = sample_names(&render_openmetrics(&full_snapshot()))
        .into_iter()
        .collect();
    let rules = alert_rules();
    let named: BTreeSet<String> = metric_names(&rules).into_iter().collect();
    assert!(
        named.len() >= 10,
        "suspiciously few metrics named: {named:?}"
    );
    let unknown: Vec<&String> = named.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "named by the alert rules but not exported: {unknown:?}\nexported: {exported:?}"
    );
}

#[test]
fn every_label_the_alert_rules_group_by_is_exported() {
    let mut known = exported_labels(&render_openmetrics(&full_snapshot()));
    known.extend(["instance".to_string(), "job".to_string(), "le".to_string()]);
    let rules = alert_rules();
    for label in grouping_labels(&rules) {
        assert!(
            known.contains(&label),
            "the alert rules group by {label:?}, which is not exported"
        );
    }
}

#[test]
fn dashboard_is_importable_with_a_prometheus_datasource_variable() {
    let d = dashboard();
    assert_eq!(d["uid"], "dce-edge");
    assert!(d["schemaVersion"].as_u64().is_some());
    let vars = d["templating"]["list"].as_array().expect("templating list");
    let ds = vars
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(ds["query"], "prometheus");
    let ds_ref = format!("${{{}}}", ds["name"].as_str().unwrap());

    let panels = d["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut rows = Vec::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id {}",
            p["id"]
        );
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
        assert!(x + w <= 24, "panel {} overflows the grid", p["title"]);
        if p["type"] == "row" {
            rows.push(p["title"].as_str().unwrap().to_string());
            continue;
        }
        assert_eq!(
            p["datasource"]["uid"],
            ds_ref.as_str(),
            "panel {}",
            p["title"]
        );
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            assert_eq!(t["datasource"]["uid"], ds_ref.as_str());
            assert!(t["expr"].as_str().is_some_and(|e| e.contains("dce_edge_")));
        }
    }
    assert_eq!(rows, ["Attack", "Service", "Health"]);
}

#[test]
fn views_cover_what_the_soc_asked_for() {
    let mut exprs = Vec::new();
    queries(&dashboard(), &mut exprs);
    let all = exprs.join("\n");
    for needed in [
        "dce_edge_xdp_drops_total",
        "dce_edge_top_source_drops",
        "dce_edge_top_networks_drops",
        "dce_edge_top_sources_networks",
        "dce_edge_bans_active",
        "dce_edge_calls_total",
        "histogram_quantile(0.5, sum by (le) (rate(dce_edge_call_setup_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(dce_edge_call_setup_seconds_bucket",
        "dce_edge_worker_answered_total",
        "dce_edge_worker_received_total",
        "dce_edge_worker_ring_events_total",
        "dce_edge_target_up",
        "dce_edge_target_probe_rtt_seconds",
        "dce_edge_route_reloads_total",
    ] {
        assert!(all.contains(needed), "no panel queries {needed}");
    }
}
