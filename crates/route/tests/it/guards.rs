//! Reloads that cannot hurt (issue 22): a table without prefixes and a
//! reload that drops most of the running prefixes are refused unless
//! forced, with the file named; route files are read within a size bound.

use std::path::Path;

use config::SourceFile;
use route::{RouteControl, RoutesConfig};

const GROUPS: &str = "[[group]]\nname = \"uk\"\naction = \"forward\"\ntargets = [{ address = \"198.18.0.1:5060\" }]\n";

/// A folder with `edge.toml` (its `[routes]` table plus `extra` lines),
/// `groups.toml` and `prefixes.csv` holding `prefixes` lines.
fn folder(prefixes: usize, extra: &str) -> (tempfile::TempDir, SourceFile, RoutesConfig) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("groups.toml"), GROUPS).unwrap();
    write_prefixes(dir.path(), prefixes);
    let path = dir.path().join("edge.toml");
    std::fs::write(
        &path,
        format!("[routes]\ngroups = \"groups.toml\"\nprefixes = \"prefixes.csv\"\n{extra}"),
    )
    .unwrap();
    let src = SourceFile::read(&path).unwrap();
    let cfg = RoutesConfig::from_appliance_config(&src).unwrap();
    (dir, src, cfg)
}

fn write_prefixes(dir: &Path, n: usize) {
    let mut text = String::from("prefix,group\n");
    for i in 0..n {
        text.push_str(&format!("44{i:04},uk\n"));
    }
    std::fs::write(dir.join("prefixes.csv"), text).unwrap();
}

#[test]
fn a_header_only_prefix_table_is_refused_unless_allowed() {
    let (_dir, src, cfg) = folder(0, "");
    let err = cfg.load(&src).unwrap_err();
    let e = &err.errors[0];
    assert!(e.file.ends_with("prefixes.csv"), "{err}");
    assert!(
        e.reason.contains("no prefixes") && e.reason.contains("--force"),
        "{err}"
    );
    let (_dir, src, cfg) = folder(0, "allow_empty = true\n");
    assert_eq!(cfg.load(&src).unwrap().table.prefix_count(), 0);
}

#[test]
fn a_reload_dropping_more_than_half_the_prefixes_is_refused_unless_forced() {
    let (dir, src, cfg) = folder(100, "");
    let (mut control, _workers) = RouteControl::new(cfg.load(&src).unwrap().table, 1);
    // A truncated file: 40 of the 100 prefixes left.
    write_prefixes(dir.path(), 40);
    let err = control.reload_guarded(&cfg, &src, false).unwrap_err();
    assert!(
        err.to_string().contains("40 prefixes, the running one 100")
            && err.to_string().contains("prefixes.csv"),
        "{err}"
    );
    assert_eq!(control.version(), 1, "the running table stays");
    // Half of them is still within the default share.
    write_prefixes(dir.path(), 50);
    assert_eq!(
        control.reload_guarded(&cfg, &src, false).unwrap().version,
        2
    );
    // An empty file: refused, even though 0 is a share too.
    write_prefixes(dir.path(), 0);
    assert!(control.reload_guarded(&cfg, &src, false).is_err());
    assert_eq!(control.table().prefix_count(), 50);
    // Forced: an operator who means it.
    assert_eq!(control.reload_guarded(&cfg, &src, true).unwrap().version, 3);
    assert_eq!(control.table().prefix_count(), 0);
}

#[test]
fn the_share_a_reload_may_drop_is_configurable_and_checked() {
    let (dir, src, cfg) = folder(100, "reload_max_drop = 0.9\n");
    let (mut control, _workers) = RouteControl::new(cfg.load(&src).unwrap().table, 1);
    write_prefixes(dir.path(), 10);
    assert!(control.reload_guarded(&cfg, &src, false).is_ok());
    let (_dir, src, cfg) = folder(100, "reload_max_drop = 1.5\n");
    let e = cfg.max_drop(&src).unwrap_err();
    assert_eq!(e.line, 4, "{e}");
    assert!(e.reason.contains("between 0 and 1"), "{e}");
}

#[test]
fn an_oversized_or_special_route_file_is_refused_not_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("groups.toml"), GROUPS).unwrap();
    // A FIFO would block a reader forever.
    let fifo = dir.path().join("prefixes.csv");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let err = route::files::load_files(&dir.path().join("groups.toml"), &fifo).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    let big = dir.path().join("big.toml");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(config::MAX_FILE_BYTES + 1).unwrap();
    let err = route::files::read_groups_file(&big).unwrap_err();
    assert!(err.reason.contains("the limit is"), "{err}");
}
