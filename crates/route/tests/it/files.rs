//! Route files as a person writes them: the example files load, mistakes are
//! refused with file, line and reason.

use std::path::{Path, PathBuf};

use config::SourceFile;
use route::files::{self, RoutesConfig};
use route::{Action, RouteControl};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/routes")
        .join(name)
}

fn text(path: &str, body: &str) -> SourceFile {
    SourceFile::from_text(path, body)
}

const GROUPS: &str = "[[group]]\nname = \"a\"\naction = \"forward\"\ntargets = [{ address = \"198.18.0.1:5060\" }]\n";

fn errors_of(groups: &str, prefixes: &str) -> Vec<String> {
    files::load_sources(
        &text("groups.toml", groups),
        &text("prefixes.csv", prefixes),
        None,
    )
    .unwrap_err()
    .errors
    .iter()
    .map(|e| e.to_string())
    .collect()
}

#[test]
fn the_example_files_load_with_every_action() {
    let loaded = files::load_files(&fixture("groups.toml"), &fixture("prefixes.csv")).unwrap();
    let t = &loaded.table;
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(t.groups().len(), 5);
    assert_eq!(t.prefix_count(), 7);
    let name = |n: &[u8]| t.group(t.lookup(n).unwrap().group).name.clone();
    assert_eq!(name(b"4915112345678"), "de-mobile");
    assert_eq!(name(b"493012345678"), "moved");
    assert_eq!(name(b"4930999"), "de-berlin");
    assert_eq!(name(b"33123"), "world");
    let premium = t.group(t.lookup(b"4990012").unwrap().group);
    assert_eq!(premium.action, Action::Reject { code: 403 });
    let mobile = t.group(t.group_by_name("de-mobile").unwrap());
    assert_eq!(mobile.cps_cap, Some(500));
    assert_eq!(mobile.targets[2].addr.to_string(), "[2001:db8::10]:5060");
    let berlin = t.group(t.group_by_name("de-berlin").unwrap());
    assert_eq!(berlin.targets[0].addr.port(), 5060, "default port");
}

#[test]
fn the_routes_table_of_a_configuration_resolves_paths_and_overrides_health() {
    let src = SourceFile::read(fixture("edge.toml")).unwrap();
    let config = RoutesConfig::from_appliance_config(&src).unwrap();
    let loaded = config.load(&src).unwrap();
    let h = loaded.table.health_settings();
    assert_eq!(h.interval.as_millis(), 2000, "from [routes.health]");
    assert_eq!((h.down_after, h.up_after), (3, 2), "from the groups file");
}

#[test]
fn a_missing_file_points_at_the_line_that_names_it() {
    let src = text(
        "edge.toml",
        "[routes]\ngroups = \"nowhere/groups.toml\"\nprefixes = \"nowhere/prefixes.csv\"\n",
    );
    let config = RoutesConfig::from_appliance_config(&src).unwrap();
    let err = config.load(&src).unwrap_err();
    assert_eq!(err.errors.len(), 2);
    assert_eq!((err.errors[0].line, err.errors[1].line), (2, 3));
    assert!(
        err.errors[0].reason.contains("cannot use groups file"),
        "{err}"
    );
}

#[test]
fn bad_health_values_in_the_configuration_name_their_line() {
    let dir = fixture("");
    let body = format!(
        "[routes]\ngroups = \"{}\"\nprefixes = \"{}\"\n[routes.health]\ndown_after = 0\n",
        dir.join("groups.toml").display(),
        dir.join("prefixes.csv").display()
    );
    let src = text("edge.toml", &body);
    let err = RoutesConfig::from_appliance_config(&src)
        .unwrap()
        .load(&src)
        .unwrap_err();
    assert_eq!(err.errors[0].line, 5, "{err}");
    assert!(err.errors[0].reason.starts_with("down_after is 0"), "{err}");
}

#[test]
fn every_mistake_in_a_groups_file_is_reported_with_its_line() {
    let src = SourceFile::read(fixture("bad-groups.toml")).unwrap();
    let err = files::parse_groups(&src).unwrap_err();
    let lines: Vec<usize> = err.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![3, 8, 11, 12, 17, 17], "{err}");
    let all = err.to_string();
    for needle in [
        "has no targets",
        "reject code is 302",
        "already defined on line 2",
        "\"teleport\" is not forward, redirect or reject",
        "\"not-an-ip:5060\" is not an IP address",
        "weight is 0",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in\n{all}");
    }
    assert!(
        err.errors[0].to_string().ends_with("bad-groups.toml:3:10: forward group \"a\" has no targets; calls to it could go nowhere"),
        "{all}"
    );
}

#[test]
fn every_mistake_in_a_prefixes_file_is_reported_with_its_line() {
    let groups = "[[group]]\nname = \"world\"\naction = \"reject\"\ncode = 404\n";
    let prefixes = std::fs::read_to_string(fixture("bad-prefixes.csv")).unwrap();
    let errors = errors_of(groups, &prefixes);
    assert_eq!(
        errors,
        vec![
            "prefixes.csv:3: prefix \"+4930\" starts with '+'; write E.164 digits without it",
            "prefixes.csv:4: prefix \"49a1\" has a non-digit at position 3; prefixes are digits, or \"default\"",
            "prefixes.csv:5: prefix 4930 repeats line 2",
            "prefixes.csv:6: unknown group \"nobody\"",
            "prefixes.csv:7: expected 2 fields (prefix,group), found 1",
        ]
    );
}

#[test]
fn a_duplicate_prefix_alone_is_found_by_the_build() {
    let errors = errors_of(
        GROUPS,
        "1,a\n# comment\n\n22,a\n1,a\ndefault,a\ndefault,a\n",
    );
    assert_eq!(
        errors,
        vec![
            "prefixes.csv:5: prefix 1 repeats line 1",
            "prefixes.csv:7: prefix default repeats line 6"
        ]
    );
}

#[test]
fn a_byte_order_mark_and_crlf_lines_are_read_as_a_spreadsheet_writes_them() {
    let loaded = files::load_sources(
        &text("g.toml", GROUPS),
        &text("p.csv", "\u{feff}prefix,group\r\n49,a\r\n 4930 , a \r\n"),
        None,
    )
    .unwrap();
    assert_eq!(loaded.table.prefix_count(), 2);
    assert_eq!(loaded.table.lookup(b"493011").unwrap().prefix_len, 4);
}

#[test]
fn an_overlong_prefix_is_refused_with_the_limit() {
    let long = "1".repeat(31);
    let errors = errors_of(GROUPS, &format!("{long},a\n"));
    assert!(
        errors[0].ends_with("has 31 digits; the limit is 30"),
        "{errors:?}"
    );
}

#[test]
fn a_group_no_prefix_uses_is_a_warning() {
    let groups = format!("{GROUPS}\n[[group]]\nname = \"idle\"\naction = \"reject\"\ncode = 503\n");
    let loaded =
        files::load_sources(&text("g.toml", &groups), &text("p.csv", "1,a\n"), None).unwrap();
    assert_eq!(loaded.warnings.len(), 1);
    assert_eq!(
        loaded.warnings[0].to_string(),
        "g.toml:7: group \"idle\" is not used by any prefix"
    );
}

#[test]
fn toml_syntax_and_unknown_keys_are_refused_with_their_line() {
    let err = files::parse_groups(&text(
        "g.toml",
        "[[group]]\nname = \"a\"\naction = \"forward\"\ntarget = []\n",
    ))
    .unwrap_err();
    assert_eq!(err.errors[0].line, 4, "{err}");
    let err = files::parse_groups(&text("g.toml", "[[group]\n")).unwrap_err();
    assert_eq!(err.errors[0].line, 1, "{err}");
}

#[test]
fn too_many_errors_are_counted_not_listed() {
    let body: String = (0..200).map(|i| format!("x{i},a\n")).collect();
    let err =
        files::load_sources(&text("g.toml", GROUPS), &text("p.csv", &body), None).unwrap_err();
    assert_eq!(err.errors.len(), files::MAX_ERRORS);
    assert_eq!(err.omitted, 200 - files::MAX_ERRORS);
    assert!(err.to_string().ends_with("... and 150 more errors"));
}

#[test]
fn a_refused_reload_keeps_the_running_version() {
    let good = files::load_files(&fixture("groups.toml"), &fixture("prefixes.csv")).unwrap();
    let (mut control, mut workers) = RouteControl::new(good.table, 2);
    let err = control
        .reload_files(&fixture("bad-groups.toml"), &fixture("prefixes.csv"))
        .unwrap_err();
    assert!(!err.errors.is_empty());
    assert_eq!(control.version(), 1);
    for w in &mut workers {
        assert_eq!(w.poll().swapped_to, None);
        assert_eq!(w.version(), 1);
    }
    let ok = control
        .reload_files(&fixture("groups.toml"), &fixture("prefixes.csv"))
        .unwrap();
    assert_eq!(ok.version, 2);
}

#[test]
fn a_target_says_its_transport_and_a_tls_target_defaults_to_port_5061() {
    let loaded = files::load_sources(
        &text(
            "groups.toml",
            "[[group]]\nname = \"a\"\naction = \"forward\"\ntargets = [\n\
             { address = \"198.18.0.1:5060\" },\n\
             { address = \"198.18.0.2\", transport = \"tls\" },\n\
             { address = \"198.18.0.3:5080\", transport = \"TCP\" },\n]\n",
        ),
        &text("prefixes.csv", "44,a\n"),
        None,
    )
    .unwrap();
    let g = loaded.table.group(loaded.table.group_by_name("a").unwrap());
    let got: Vec<(String, route::Transport)> = g
        .targets
        .iter()
        .map(|t| (t.addr.to_string(), t.transport))
        .collect();
    assert_eq!(
        got,
        vec![
            ("198.18.0.1:5060".to_string(), route::Transport::Udp),
            ("198.18.0.2:5061".to_string(), route::Transport::Tls),
            ("198.18.0.3:5080".to_string(), route::Transport::Tcp),
        ]
    );
}

#[test]
fn an_unknown_transport_is_refused_with_its_line() {
    let errors = errors_of(
        "[[group]]\nname = \"a\"\naction = \"forward\"\ntargets = [\n\
         { address = \"198.18.0.1:5060\" },\n\
         { address = \"198.18.0.2\", transport = \"sctp\" },\n]\n",
        "44,a\n",
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("groups.toml:6:"), "{errors:?}");
    assert!(
        errors[0].contains("transport \"sctp\" is not udp, tcp or tls"),
        "{errors:?}"
    );
}
