//! `dce-edge routes ...`: check route files, look a number up, generate large
//! synthetic tables. main.rs only dispatches here.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Subcommand;

use config::{ConfigError, SourceFile};
use route::files::{self, LoadedRoutes, RouteErrors, RoutesConfig};
use route::health::HealthSettings;
use route::select::HealthView;
use route::synth;
use route::table::{Action, RouteGroup, RouteTable};

/// The `routes` subcommands.
#[derive(Debug, Subcommand)]
pub enum RoutesCommand {
    /// Check route files and report what they hold: a groups TOML, a
    /// prefixes CSV, both, or an appliance configuration with a [routes]
    /// table. Errors name the file and line; the exit status is 1 if any.
    Check {
        /// Files to check (*.csv are prefixes; *.toml are groups, or an
        /// appliance configuration when they have a [routes] table).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Look a dialed number up: matched prefix, group, action and target.
    Lookup {
        /// The route groups file (TOML).
        #[arg(long, requires = "prefixes")]
        groups: Option<PathBuf>,
        /// The prefixes file (CSV).
        #[arg(long, requires = "groups")]
        prefixes: Option<PathBuf>,
        /// An appliance configuration whose [routes] table names both files.
        #[arg(long, conflicts_with_all = ["groups", "prefixes"])]
        config: Option<PathBuf>,
        /// The Call-ID that picks the target (dialog affinity); the number
        /// stands in for it when not given.
        #[arg(long)]
        call_id: Option<String>,
        /// The number: digits, with an optional leading '+' and the visual
        /// separators - . ( ) and spaces (RFC 3966), which are dropped; it
        /// may be given in several words (+49 30 1234).
        #[arg(required = true, num_args = 1..)]
        number: Vec<String>,
    },
    /// Ask a running appliance, through its control socket, to reload its
    /// route files, and report whether it accepted the new table or kept the
    /// running one, and why.
    Reload {
        /// The appliance's control socket ([edge] control_socket).
        #[arg(long, default_value = appliance::control::DEFAULT_PATH)]
        control: PathBuf,
        /// Take the table even when it has no prefixes, or drops more than
        /// `[routes] reload_max_drop` (default half) of the running ones.
        #[arg(long)]
        force: bool,
    },
    /// Write a synthetic E.164-like table (groups.toml and prefixes.csv) for
    /// trying large tables; never commit what it writes.
    Generate {
        /// Number of prefixes.
        #[arg(long, default_value_t = 1_000_000)]
        prefixes: usize,
        /// Number of forward groups (targets on 198.18.0.0/15).
        #[arg(long, default_value_t = 100)]
        groups: usize,
        /// Seed of the generator (the same seed writes the same files).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
}

/// Runs a `routes` subcommand, printing to stdout and stderr.
pub fn run(command: RoutesCommand) -> ExitCode {
    let (out, ok) = match command {
        RoutesCommand::Check { files } => check(&files),
        RoutesCommand::Lookup {
            groups,
            prefixes,
            config,
            call_id,
            number,
        } => lookup(groups, prefixes, config, call_id, &number.join(" ")),
        RoutesCommand::Generate {
            prefixes,
            groups,
            seed,
            out,
        } => generate(prefixes, groups, seed, &out),
        RoutesCommand::Reload { control, force } => crate::cli::run::ask(
            &control,
            &appliance::control::ControlRequest::ReloadRoutes { force },
        ),
    };
    if ok {
        print!("{out}");
        ExitCode::SUCCESS
    } else {
        eprint!("{out}");
        ExitCode::FAILURE
    }
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn errors_text(errors: &RouteErrors) -> String {
    let n = errors.errors.len() + errors.omitted;
    format!(
        "refused: {n} error{}\n{errors}\n",
        if n == 1 { "" } else { "s" }
    )
}

fn warnings_text(out: &mut String, warnings: &[ConfigError]) {
    if !warnings.is_empty() {
        let _ = writeln!(out, "warnings:");
        for w in warnings {
            let _ = writeln!(out, "  {w}");
        }
    }
}

fn group_counts(groups: &[RouteGroup]) -> String {
    let count = |f: fn(&Action) -> bool| groups.iter().filter(|g| f(&g.action)).count();
    format!(
        "{} (forward {}, redirect {}, reject {})",
        groups.len(),
        count(|a| *a == Action::Forward),
        count(|a| *a == Action::Redirect),
        count(|a| matches!(a, Action::Reject { .. })),
    )
}

fn table_report(out: &mut String, loaded: &LoadedRoutes) {
    let t = &loaded.table;
    let default = t.lookup(b"").is_some_and(|m| m.prefix_len == 0);
    let h = t.health_settings();
    let _ = writeln!(out, "  groups:     {}", group_counts(t.groups()));
    let _ = writeln!(
        out,
        "  targets:    {} ({} distinct addresses)",
        t.target_count(),
        t.upstreams().len()
    );
    let _ = writeln!(
        out,
        "  prefixes:   {} (default route: {})",
        t.prefix_count(),
        if default { "yes" } else { "no" }
    );
    let _ = writeln!(out, "  longest:    {} digits", t.longest_prefix());
    let _ = writeln!(
        out,
        "  probes:     every {} ms, down after {} missed, up after {} answered",
        h.interval.as_millis(),
        h.down_after,
        h.up_after
    );
    let unprobed: Vec<&str> = t
        .groups()
        .iter()
        .filter(|g| g.action == Action::Forward && g.probe == route::Probe::None)
        .map(|g| g.name.as_str())
        .collect();
    if !unprobed.is_empty() {
        let _ = writeln!(out, "  unprobed:   {}", unprobed.join(", "));
    }
    let _ = if h.invite_failures == 0 {
        writeln!(out, "  passive:    off")
    } else {
        writeln!(
            out,
            "  passive:    down after {} INVITEs answered 503 or unanswered for {} ms, hold-down {} s",
            h.invite_failures,
            h.invite_timeout.as_millis(),
            h.hold_down.as_secs()
        )
    };
    let _ = writeln!(out, "  read+parse: {}", ms(loaded.stats.read_and_parse));
    let _ = writeln!(out, "  build:      {}", ms(loaded.stats.build));
    let _ = writeln!(out, "  memory:     {} per worker copy", mib(t.heap_bytes()));
}

/// What kind of file `path` is, by name and (for TOML) content.
enum Kind {
    Groups(SourceFile),
    Prefixes(SourceFile),
    Config(SourceFile, Box<RoutesConfig>),
}

fn classify(path: &Path) -> Result<Kind, RouteErrors> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    {
        return Ok(Kind::Prefixes(route::files::read_prefixes_file(path)?));
    }
    let src = SourceFile::read(path)?;
    let has_routes = toml::from_str::<toml::Table>(src.text())
        .map(|t| t.contains_key("routes"))
        .unwrap_or(false);
    if has_routes {
        let config = RoutesConfig::from_appliance_config(&src)?;
        Ok(Kind::Config(src, Box::new(config)))
    } else {
        Ok(Kind::Groups(src))
    }
}

fn check(paths: &[PathBuf]) -> (String, bool) {
    let mut out = String::new();
    let mut groups = None;
    let mut prefixes = None;
    let mut config = None;
    for path in paths {
        match classify(path) {
            Err(e) => return (errors_text(&e), false),
            Ok(Kind::Groups(src)) if groups.is_none() => groups = Some(src),
            Ok(Kind::Prefixes(src)) if prefixes.is_none() => prefixes = Some(src),
            Ok(Kind::Config(src, c)) if config.is_none() => config = Some((src, *c)),
            Ok(_) => {
                return (
                    format!(
                    "{}: give at most one groups file, one prefixes file and one configuration\n",
                    path.display()
                ),
                    false,
                )
            }
        }
    }
    let result = match (config, groups, prefixes) {
        (Some((src, c)), None, None) => c.load(&src),
        (Some(_), _, _) => {
            return (
                "a configuration names its own groups and prefixes files; check it alone\n".into(),
                false,
            )
        }
        (None, Some(g), Some(p)) => files::load_sources(&g, &p, None),
        (None, Some(g), None) => return check_groups_only(&g),
        (None, None, Some(p)) => return check_prefixes_only(&p),
        (None, None, None) => return ("nothing to check\n".into(), false),
    };
    match result {
        Ok(loaded) => {
            let _ = writeln!(out, "routes: ok");
            table_report(&mut out, &loaded);
            warnings_text(&mut out, &loaded.warnings);
            (out, true)
        }
        Err(e) => (errors_text(&e), false),
    }
}

fn check_groups_only(src: &SourceFile) -> (String, bool) {
    match files::parse_groups(src) {
        Err(e) => (errors_text(&e), false),
        Ok(g) => {
            let mut out =
                String::from("groups: ok (no prefixes file given: group use not checked)\n");
            let _ = writeln!(out, "  groups:     {}", group_counts(&g.groups));
            let _ = writeln!(
                out,
                "  targets:    {}",
                g.groups.iter().map(|g| g.targets.len()).sum::<usize>()
            );
            warnings_text(&mut out, &g.warnings);
            (out, true)
        }
    }
}

fn check_prefixes_only(src: &SourceFile) -> (String, bool) {
    let started = Instant::now();
    let parsed = match files::parse_prefixes(src, None) {
        Err(e) => return (errors_text(&e), false),
        Ok(p) => p,
    };
    let read = started.elapsed();
    // One stand-in group: this checks syntax and duplicates, not group names.
    let stand_in = vec![RouteGroup::new("any", Action::Reject { code: 404 })];
    let started = Instant::now();
    match RouteTable::build(stand_in, &parsed.entries, HealthSettings::default()) {
        Ok(t) => {
            let mut out =
                String::from("prefixes: ok (no groups file given: group names not checked)\n");
            let _ = writeln!(out, "  prefixes:   {}", t.prefix_count());
            let _ = writeln!(out, "  longest:    {} digits", t.longest_prefix());
            let _ = writeln!(out, "  parse:      {}", ms(read));
            let _ = writeln!(out, "  build:      {}", ms(started.elapsed()));
            let _ = writeln!(out, "  memory:     {} per worker copy", mib(t.heap_bytes()));
            (out, true)
        }
        Err(errors) => {
            let mut out = String::new();
            for e in errors {
                if let route::table::TableError::DuplicatePrefix { first, second } = e {
                    let line = |i: usize| parsed.lines[i];
                    let _ = writeln!(
                        out,
                        "{}:{}: prefix repeats line {}",
                        src.path().display(),
                        line(second),
                        line(first)
                    );
                }
            }
            (out, false)
        }
    }
}

/// Digits of a number as a person types it: a leading `+` and the visual
/// separators of RFC 3966 (`-`, `.`, `(`, `)`) and spaces are dropped.
pub fn dialed_digits(number: &str) -> Result<String, String> {
    let rest = number.trim().strip_prefix('+').unwrap_or(number.trim());
    let mut digits = String::with_capacity(rest.len());
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            '-' | '.' | '(' | ')' | ' ' => {}
            other => return Err(format!("{number:?} has {other:?}, which is not a digit")),
        }
    }
    if digits.is_empty() {
        return Err(format!("{number:?} has no digits"));
    }
    Ok(digits)
}

fn lookup(
    groups: Option<PathBuf>,
    prefixes: Option<PathBuf>,
    config: Option<PathBuf>,
    call_id: Option<String>,
    number: &str,
) -> (String, bool) {
    let digits = match dialed_digits(number) {
        Ok(d) => d,
        Err(e) => return (format!("{e}\n"), false),
    };
    let loaded = match (config, groups, prefixes) {
        (Some(c), _, _) => SourceFile::read(&c)
            .map_err(RouteErrors::from)
            .and_then(|src| {
                RoutesConfig::from_appliance_config(&src)
                    .map_err(RouteErrors::from)
                    .and_then(|cfg| cfg.load(&src))
            }),
        (None, Some(g), Some(p)) => files::load_files(&g, &p),
        _ => {
            return (
                "give --config FILE, or --groups FILE and --prefixes FILE\n".into(),
                false,
            )
        }
    };
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => return (errors_text(&e), false),
    };
    let table = &loaded.table;
    let mut out = String::new();
    let _ = writeln!(out, "number:  {digits}");
    let call_id = call_id.unwrap_or_else(|| digits.clone());
    if table.is_emergency_number(digits.as_bytes()) {
        let _ = writeln!(
            out,
            "emergency: yes (past the shields, the budgets for unverified sources, CPS caps and, \
             unless emergency_keep_bans, bans; within the emergency budgets)"
        );
        if let Some(e) = table.emergency() {
            let group = table.group(e.group);
            let _ = writeln!(out, "group:   {} (the emergency group)", group.name);
            let _ = writeln!(out, "action:  forward");
            forward_target(&mut out, table, group, &call_id);
            if let Some(f) = e.fallback {
                let _ = writeln!(
                    out,
                    "fallback: {} (when every target of {} is down)",
                    table.group(f).name,
                    group.name
                );
            }
            return (out, true);
        }
        let _ = writeln!(
            out,
            "          no emergency group: routed by prefix like any number, but never capped"
        );
    }
    let Some(m) = table.lookup(digits.as_bytes()) else {
        let _ = writeln!(
            out,
            "prefix:  none (no route: the edge answers its no-route code)"
        );
        return (out, true);
    };
    let group = table.group(m.group);
    let prefix = if m.prefix_len == 0 {
        files::DEFAULT_PREFIX.to_string()
    } else {
        digits[..m.prefix_len].to_string()
    };
    let _ = writeln!(out, "prefix:  {prefix}");
    let _ = writeln!(out, "group:   {}", group.name);
    match group.action {
        Action::Reject { code } => {
            let _ = writeln!(out, "action:  reject {code}");
        }
        Action::Redirect => {
            let _ = writeln!(out, "action:  redirect (302)");
            for t in &group.targets {
                let _ = writeln!(out, "contact: sip:{} (priority {})", t.addr, t.priority);
            }
        }
        Action::Forward => {
            let _ = writeln!(out, "action:  forward");
            forward_target(&mut out, table, group, &call_id);
        }
    }
    if let Some(cap) = group.cps_cap {
        let _ = writeln!(
            out,
            "cps cap: {cap} per second (Retry-After {} s over it)",
            group.retry_after.as_secs()
        );
    }
    (out, true)
}

/// The target a forward group picks for `call_id`, all targets taken as up.
fn forward_target(out: &mut String, table: &RouteTable, group: &RouteGroup, call_id: &str) {
    let health = HealthView::all_up(table.upstreams().len());
    match group.select(call_id.as_bytes(), &health) {
        Some(t) => {
            let _ = writeln!(
                out,
                "target:  {} (priority {}, weight {}; Call-ID {call_id:?}; all targets taken as up)",
                t.addr, t.priority, t.weight
            );
        }
        None => {
            let _ = writeln!(out, "target:  none");
        }
    }
}

fn generate(prefixes: usize, groups: usize, seed: u64, dir: &Path) -> (String, bool) {
    if groups == 0 {
        return ("--groups must be at least 1\n".into(), false);
    }
    let table = synth::prefixes(seed, prefixes, groups);
    let write = |name: &str, text: String| -> Result<(PathBuf, usize), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(name);
        std::fs::write(&path, &text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok((path, text.len()))
    };
    let result = write("groups.toml", synth::groups_toml(groups))
        .and_then(|g| write("prefixes.csv", synth::prefixes_csv(&table)).map(|p| (g, p)));
    match result {
        Ok(((g, gn), (p, pn))) => (
            format!(
                "wrote {} ({}) and {} ({}): {prefixes} prefixes, {groups} groups, seed {seed}\n",
                g.display(),
                mib(gn),
                p.display(),
                mib(pn)
            ),
            true,
        ),
        Err(e) => (format!("{e}\n"), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_numbers_lose_plus_and_separators() {
        assert_eq!(dialed_digits("+49 (30) 123-45.6").unwrap(), "4930123456");
        assert!(dialed_digits("49a").is_err());
        assert!(dialed_digits("+").is_err());
    }
}
