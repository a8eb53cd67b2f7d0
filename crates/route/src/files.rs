//! Route files: groups in TOML, prefixes in CSV, and the `[routes]` table of
//! the appliance configuration that points at them.
//!
//! Every refusal names the file, the line and the reason, and a file is read
//! to its end so that one run reports many problems (up to [`MAX_ERRORS`]).
//! See docs/route.md for the formats with examples.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use toml::Spanned;

use crate::health::{limits, HealthSettings};
use crate::table::{
    Action, Emergency, GroupId, Probe, RouteGroup, RouteTable, TableError, Target, Transport,
    WhenAllDown, MAX_EMERGENCY_DIGITS, MAX_EMERGENCY_NUMBERS,
};
use crate::trie::{PrefixKey, MAX_PREFIX_DIGITS};
use config::{ConfigError, SourceFile};

/// Errors reported in full; past this many, only a count is kept.
pub const MAX_ERRORS: usize = 50;

/// The SIP port a target gets when its address has none.
pub const DEFAULT_PORT: u16 = 5060;

/// Longest group name.
pub const GROUP_NAME_MAX: usize = 64;

/// The largest prefixes file read (ten million prefixes of ordinary length
/// fit): a wrong path is refused, not read into memory.
pub const MAX_PREFIXES_FILE_BYTES: u64 = 256 << 20;

/// The largest groups file read.
pub const MAX_GROUPS_FILE_BYTES: u64 = config::MAX_FILE_BYTES;

/// The share of the running table's prefixes a reload may drop unless
/// forced, when `[routes] reload_max_drop` does not say: a half-written or
/// truncated file must not take most routes out of service.
pub const DEFAULT_RELOAD_MAX_DROP: f64 = 0.5;

/// Reads a prefixes file within [`MAX_PREFIXES_FILE_BYTES`].
pub fn read_prefixes_file(path: &Path) -> Result<SourceFile, ConfigError> {
    SourceFile::read_bounded(path, MAX_PREFIXES_FILE_BYTES)
}

/// Reads a groups file within [`MAX_GROUPS_FILE_BYTES`].
pub fn read_groups_file(path: &Path) -> Result<SourceFile, ConfigError> {
    SourceFile::read_bounded(path, MAX_GROUPS_FILE_BYTES)
}

/// The prefix that stands for the default route in the prefixes file.
pub const DEFAULT_PREFIX: &str = "default";

/// A refused set of route files: every error found (up to [`MAX_ERRORS`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RouteErrors {
    /// The errors, in file order.
    pub errors: Vec<ConfigError>,
    /// Errors found beyond [`MAX_ERRORS`] and not kept.
    pub omitted: usize,
}

impl fmt::Display for RouteErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        if self.omitted > 0 {
            write!(f, "\n... and {} more errors", self.omitted)?;
        }
        Ok(())
    }
}

impl From<ConfigError> for RouteErrors {
    fn from(e: ConfigError) -> Self {
        RouteErrors {
            errors: vec![e],
            omitted: 0,
        }
    }
}

/// Collects errors up to [`MAX_ERRORS`].
#[derive(Debug, Default)]
struct ErrorList {
    errors: Vec<ConfigError>,
    omitted: usize,
}

impl ErrorList {
    fn push(&mut self, e: ConfigError) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(e);
        } else {
            self.omitted += 1;
        }
    }

    fn is_empty(&self) -> bool {
        self.errors.is_empty() && self.omitted == 0
    }

    fn into_result<T>(self, ok: T) -> Result<T, RouteErrors> {
        if self.is_empty() {
            Ok(ok)
        } else {
            Err(RouteErrors {
                errors: self.errors,
                omitted: self.omitted,
            })
        }
    }
}

/// Probe settings as a file writes them; every field optional. Used by the
/// groups file's `[health]` table and by `[routes.health]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    /// Milliseconds between probes of a target.
    pub interval_ms: Option<Spanned<i64>>,
    /// Missed probes in a row that take a target down.
    pub down_after: Option<Spanned<i64>>,
    /// Answered probes in a row that bring a target back.
    pub up_after: Option<Spanned<i64>>,
    /// INVITE failures in a row (503s or timeouts) that take a target
    /// down; 0 turns passive health off.
    pub invite_failures: Option<Spanned<i64>>,
    /// Milliseconds an INVITE may wait for any response.
    pub invite_timeout_ms: Option<Spanned<i64>>,
    /// Milliseconds a target taken down by passive health stays down.
    pub hold_down_ms: Option<Spanned<i64>>,
}

impl HealthSpec {
    /// Applies the fields that are set to `settings`, checking their ranges.
    fn apply(&self, src: &SourceFile, settings: &mut HealthSettings, errors: &mut ErrorList) {
        if let Some(v) = &self.interval_ms {
            match in_range(
                v,
                limits::INTERVAL_MS_MIN as i64,
                limits::INTERVAL_MS_MAX as i64,
            ) {
                Ok(ms) => settings.interval = Duration::from_millis(ms as u64),
                Err(why) => errors.push(src.error_at(v.span(), format!("interval_ms {why}"))),
            }
        }
        for (field, value, out) in [
            ("down_after", &self.down_after, &mut settings.down_after),
            ("up_after", &self.up_after, &mut settings.up_after),
        ] {
            if let Some(v) = value {
                match in_range(v, 1, i64::from(limits::COUNT_MAX)) {
                    Ok(n) => *out = n as u32,
                    Err(why) => errors.push(src.error_at(v.span(), format!("{field} {why}"))),
                }
            }
        }
        if let Some(v) = &self.invite_failures {
            match in_range(v, 0, i64::from(limits::COUNT_MAX)) {
                Ok(n) => settings.invite_failures = n as u32,
                Err(why) => errors.push(src.error_at(
                    v.span(),
                    format!("invite_failures {why} (0 turns passive health off)"),
                )),
            }
        }
        for (field, value, out, min, max) in [
            (
                "invite_timeout_ms",
                &self.invite_timeout_ms,
                &mut settings.invite_timeout,
                limits::INVITE_TIMEOUT_MS_MIN,
                limits::INVITE_TIMEOUT_MS_MAX,
            ),
            (
                "hold_down_ms",
                &self.hold_down_ms,
                &mut settings.hold_down,
                limits::HOLD_DOWN_MS_MIN,
                limits::HOLD_DOWN_MS_MAX,
            ),
        ] {
            if let Some(v) = value {
                match in_range(v, min as i64, max as i64) {
                    Ok(ms) => *out = Duration::from_millis(ms as u64),
                    Err(why) => errors.push(src.error_at(v.span(), format!("{field} {why}"))),
                }
            }
        }
    }
}

fn in_range(v: &Spanned<i64>, min: i64, max: i64) -> Result<i64, String> {
    let n = *v.get_ref();
    if (min..=max).contains(&n) {
        Ok(n)
    } else {
        Err(format!("is {n}; it must be between {min} and {max}"))
    }
}

/// The `[routes]` table of the appliance configuration.
///
/// ```toml
/// [routes]
/// groups = "routes/groups.toml"      # relative to the configuration file
/// prefixes = "routes/prefixes.csv"
/// allow_empty = false                # a table without prefixes is refused
/// reload_max_drop = 0.5              # a reload may drop at most half the prefixes
/// [routes.health]                    # optional; overrides the groups file
/// interval_ms = 2000
/// down_after = 3
/// up_after = 2
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoutesConfig {
    /// The route groups file (TOML).
    pub groups: Spanned<PathBuf>,
    /// The prefixes file (CSV).
    pub prefixes: Spanned<PathBuf>,
    /// Probe settings that override the groups file's `[health]`.
    #[serde(default)]
    pub health: Option<HealthSpec>,
    /// Whether a prefixes file with no prefix at all (empty, or a header
    /// only) may start the edge: every call would be refused, so by default
    /// it is a mistake (a reload may still be forced).
    #[serde(default)]
    pub allow_empty: bool,
    /// The share of the running table's prefixes a reload may drop (0 to 1;
    /// default [`DEFAULT_RELOAD_MAX_DROP`]; 1 lets any reload through): a
    /// reload leaving fewer prefixes than that is refused unless forced.
    #[serde(default)]
    pub reload_max_drop: Option<Spanned<f64>>,
}

/// Just the `[routes]` table of a whole appliance configuration.
#[derive(Debug, Deserialize)]
struct ApplianceRoutes {
    routes: Option<RoutesConfig>,
}

impl RoutesConfig {
    /// Reads the `[routes]` table out of an appliance configuration file
    /// (other tables are left to their owners).
    pub fn from_appliance_config(config: &SourceFile) -> Result<RoutesConfig, ConfigError> {
        config
            .parse_toml::<ApplianceRoutes>()?
            .routes
            .ok_or_else(|| ConfigError::file(config.path(), "no [routes] table"))
    }

    /// The share of prefixes a reload may drop, checked (errors point at
    /// the value in `config`).
    pub fn max_drop(&self, config: &SourceFile) -> Result<f64, ConfigError> {
        match &self.reload_max_drop {
            None => Ok(DEFAULT_RELOAD_MAX_DROP),
            Some(v) if (0.0..=1.0).contains(v.get_ref()) => Ok(*v.get_ref()),
            Some(v) => Err(config.error_at(
                v.span(),
                format!(
                    "reload_max_drop {} is not a share between 0 and 1 (0.5: a reload may drop half the prefixes)",
                    v.get_ref()
                ),
            )),
        }
    }

    /// Reads, checks and builds the route table this `[routes]` table points
    /// at. `config` is the appliance configuration it came from: paths are
    /// relative to it, and errors in `[routes]` itself point into it. A
    /// table without any prefix is refused unless `allow_empty` is set.
    pub fn load(&self, config: &SourceFile) -> Result<LoadedRoutes, RouteErrors> {
        self.load_forced(config, self.allow_empty)
    }

    /// [`RoutesConfig::load`]; `allow_empty` takes a table without prefixes.
    pub fn load_forced(
        &self,
        config: &SourceFile,
        allow_empty: bool,
    ) -> Result<LoadedRoutes, RouteErrors> {
        let started = Instant::now();
        let read = |p: &Spanned<PathBuf>, what: &str| {
            let path = config.resolve(p.get_ref());
            let read = if what == "prefixes" {
                read_prefixes_file(&path)
            } else {
                read_groups_file(&path)
            };
            read.map_err(|e| {
                config.error_at(
                    p.span(),
                    format!("cannot use {what} file {}: {}", path.display(), e.reason),
                )
            })
        };
        let groups = read(&self.groups, "groups");
        let prefixes = read(&self.prefixes, "prefixes");
        let (groups, prefixes) = match (groups, prefixes) {
            (Ok(g), Ok(p)) => (g, p),
            (g, p) => {
                return Err(RouteErrors {
                    errors: [g.err(), p.err()].into_iter().flatten().collect(),
                    omitted: 0,
                })
            }
        };
        let reading = started.elapsed();
        let overrides = self.health.as_ref().map(|h| (config, h));
        let mut loaded = load_sources(&groups, &prefixes, overrides)?;
        loaded.stats.read_and_parse += reading;
        if loaded.table.prefix_count() == 0 && !allow_empty {
            return Err(prefixes
                .error_at_line(
                    1,
                    "no prefixes (the file is empty or holds only its header): every call \
                     would be refused; set [routes] allow_empty = true to run without routes, \
                     or force a reload with `dce-edge routes reload --force`",
                )
                .into());
        }
        Ok(loaded)
    }
}

/// A table read from files, with what was noticed on the way.
#[derive(Debug, Clone)]
pub struct LoadedRoutes {
    /// The table, ready to hand to the workers.
    pub table: RouteTable,
    /// Problems that do not stop the table (a group no prefix uses, ...).
    pub warnings: Vec<ConfigError>,
    /// Counts and times.
    pub stats: LoadStats,
}

/// How long loading took.
#[derive(Debug, Clone, Copy)]
pub struct LoadStats {
    /// Reading and parsing both files.
    pub read_and_parse: Duration,
    /// Building the lookup structure from the parsed prefixes.
    pub build: Duration,
}

/// Route groups as read from a groups file, before any prefix is known.
#[derive(Debug, Clone)]
pub struct GroupsFile {
    /// The groups, in file order ([`GroupId`] is the position).
    pub groups: Vec<RouteGroup>,
    /// Line of each group's name.
    pub lines: Vec<usize>,
    /// Probe settings of the file (defaults where it sets none).
    pub health: HealthSettings,
    /// Problems that do not refuse the file.
    pub warnings: Vec<ConfigError>,
    names: HashMap<String, GroupId>,
}

impl GroupsFile {
    /// The group with this name.
    pub fn id(&self, name: &str) -> Option<GroupId> {
        self.names.get(name).copied()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroups {
    #[serde(default)]
    health: Option<HealthSpec>,
    #[serde(default)]
    group: Vec<Spanned<RawGroup>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: Spanned<String>,
    action: Spanned<String>,
    code: Option<Spanned<i64>>,
    cps_cap: Option<Spanned<i64>>,
    retry_after: Option<Spanned<i64>>,
    #[serde(default)]
    targets: Option<Spanned<Vec<Spanned<RawTarget>>>>,
    /// This group takes emergency calls.
    emergency: Option<Spanned<bool>>,
    /// The emergency numbers (default: `DEFAULT_EMERGENCY_NUMBERS`).
    numbers: Option<Spanned<Vec<Spanned<String>>>>,
    /// Whether `urn:service:sos` URIs route here (default true).
    urns: Option<Spanned<bool>>,
    /// The group emergency calls fail over to when all targets are down.
    fallback: Option<Spanned<String>>,
    /// `options` (default) or `none`.
    probe: Option<Spanned<String>>,
    /// `answer_503` (default) or `try_anyway`.
    when_all_down: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    address: Spanned<String>,
    /// `udp` (default), `tcp` or `tls`.
    transport: Option<Spanned<String>>,
    priority: Option<Spanned<i64>>,
    weight: Option<Spanned<i64>>,
}

/// True for names made of ASCII letters, digits, `_`, `.` and `-`.
pub fn valid_group_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= GROUP_NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Parses a target address: `ip:port`, `[ipv6]:port`, or an IP alone (port
/// [`DEFAULT_PORT`]).
pub fn parse_target_address(s: &str) -> Option<SocketAddr> {
    parse_target_address_for(s, Transport::Udp)
}

/// [`parse_target_address`] for a target reached over `transport`: an IP
/// alone gets that transport's default port (5061 for TLS).
pub fn parse_target_address_for(s: &str, transport: Transport) -> Option<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return (a.port() != 0).then_some(a);
    }
    let ip = s
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(s);
    ip.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, transport.default_port()))
}

/// Reads a groups file: syntax, names, actions, codes, targets, caps and the
/// `[health]` table.
pub fn parse_groups(src: &SourceFile) -> Result<GroupsFile, RouteErrors> {
    let raw: RawGroups = src.parse_toml()?;
    let mut errors = ErrorList::default();
    let mut health = HealthSettings::default();
    if let Some(spec) = &raw.health {
        spec.apply(src, &mut health, &mut errors);
    }
    let mut reader = GroupsReader {
        src,
        errors,
        warnings: Vec::new(),
        names: HashMap::new(),
        groups: Vec::with_capacity(raw.group.len()),
        lines: Vec::with_capacity(raw.group.len()),
    };
    for spanned in &raw.group {
        reader.group(spanned.get_ref());
    }
    reader.emergency_fallbacks(&raw.group);
    reader.errors.into_result(GroupsFile {
        groups: reader.groups,
        lines: reader.lines,
        health,
        warnings: reader.warnings,
        names: reader.names,
    })
}

/// A groups file being read, group after group: the groups accepted so
/// far, and the errors and warnings in file order.
struct GroupsReader<'s> {
    src: &'s SourceFile,
    errors: ErrorList,
    warnings: Vec<ConfigError>,
    names: HashMap<String, GroupId>,
    groups: Vec<RouteGroup>,
    lines: Vec<usize>,
}

impl GroupsReader<'_> {
    /// One `[[group]]`: its name, action, targets, cap and retry time.
    /// A group with errors is still kept, so that the prefixes file can be
    /// checked against every name.
    fn group(&mut self, g: &RawGroup) {
        let name = g.name.get_ref();
        self.register_name(&g.name);
        let action = self.action(g);
        let mut group = RouteGroup::new(name.clone(), action.unwrap_or(Action::Forward));
        let targets = g.targets.as_ref().map(|t| &t.get_ref()[..]).unwrap_or(&[]);
        self.add_targets(&mut group, targets);
        self.targets_fit_action(g, action, targets.is_empty());
        self.cps_cap_and_retry_after(&mut group, g);
        self.health_choices(&mut group, g, action);
        self.emergency(&mut group, g, action);
        self.lines.push(self.line_of(g.name.span()));
        self.groups.push(group);
    }

    /// `emergency = true` and what goes with it: numbers (whole numbers of
    /// digits), `urns`, `fallback` (checked once every group is read). One
    /// group only, a forward group.
    fn emergency(&mut self, group: &mut RouteGroup, g: &RawGroup, action: Option<Action>) {
        let name = g.name.get_ref();
        let marked = g.emergency.as_ref().is_some_and(|e| *e.get_ref());
        if !marked {
            for (key, span) in [
                ("numbers", g.numbers.as_ref().map(|n| n.span())),
                ("urns", g.urns.as_ref().map(|u| u.span())),
                ("fallback", g.fallback.as_ref().map(|f| f.span())),
            ] {
                if let Some(span) = span {
                    self.errors.push(self.src.error_at(
                        span,
                        format!("{key} is for the emergency group; group {name:?} does not say emergency = true"),
                    ));
                }
            }
            return;
        }
        let span = g.emergency.as_ref().expect("marked").span();
        if let Some(first) = self.groups.iter().position(|g| g.emergency.is_some()) {
            self.errors.push(self.src.error_at(
                span.clone(),
                format!(
                    "group {:?} on line {} is the emergency group already; one group takes emergency calls",
                    self.groups[first].name, self.lines[first]
                ),
            ));
        }
        if action.is_some_and(|a| a != Action::Forward) {
            self.errors.push(self.src.error_at(
                span,
                format!("emergency group {name:?} must forward (action = \"forward\") to targets"),
            ));
        }
        let mut e = Emergency::default();
        if let Some(numbers) = &g.numbers {
            e.numbers.clear();
            if numbers.get_ref().is_empty() && g.urns.as_ref().is_some_and(|u| !*u.get_ref()) {
                self.errors.push(self.src.error_at(
                    numbers.span(),
                    "an emergency group with no numbers and no URNs takes no call",
                ));
            }
            if numbers.get_ref().len() > MAX_EMERGENCY_NUMBERS {
                self.errors.push(self.src.error_at(
                    numbers.span(),
                    format!(
                        "{} emergency numbers; at most {MAX_EMERGENCY_NUMBERS} (what the XDP filter recognises)",
                        numbers.get_ref().len()
                    ),
                ));
            }
            for n in numbers.get_ref() {
                let digits = n.get_ref();
                if digits.is_empty()
                    || digits.len() > MAX_EMERGENCY_DIGITS
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    self.errors.push(self.src.error_at(
                        n.span(),
                        format!(
                            "emergency number {digits:?} must be 1 to {MAX_EMERGENCY_DIGITS} digits"
                        ),
                    ));
                } else {
                    e.numbers.push(digits.clone());
                }
            }
        }
        if let Some(u) = &g.urns {
            e.urns = *u.get_ref();
        }
        e.fallback = g.fallback.as_ref().map(|f| f.get_ref().clone());
        group.emergency = Some(e);
    }

    /// The emergency group's fallback names another forward group.
    fn emergency_fallbacks(&mut self, raw: &[Spanned<RawGroup>]) {
        for g in raw {
            let g = g.get_ref();
            let Some(fallback) = &g.fallback else {
                continue;
            };
            if !g.emergency.as_ref().is_some_and(|e| *e.get_ref()) {
                continue;
            }
            let wanted = fallback.get_ref();
            let ok = self.names.get(wanted).is_some_and(|&id| {
                let f = &self.groups[id.0 as usize];
                f.action == Action::Forward && f.emergency.is_none() && !f.targets.is_empty()
            });
            if !ok {
                self.errors.push(self.src.error_at(
                    fallback.span(),
                    format!("emergency fallback {wanted:?} must be another forward group with targets, defined in this file"),
                ));
            }
        }
    }

    fn line_of(&self, span: Range<usize>) -> usize {
        config::line_column(self.src.text(), span.start).0
    }

    /// A valid name, not taken by a group before; the first group of a
    /// name is the one it stands for.
    fn register_name(&mut self, spanned: &Spanned<String>) {
        let name = spanned.get_ref();
        if !valid_group_name(name) {
            self.errors.push(self.src.error_at(
                spanned.span(),
                format!(
                    "group name {name:?} must be 1 to {GROUP_NAME_MAX} letters, digits, '_', '.' or '-'"
                ),
            ));
        }
        if let Some(&first) = self.names.get(name.as_str()) {
            self.errors.push(self.src.error_at(
                spanned.span(),
                format!(
                    "group {name:?} is already defined on line {}",
                    self.lines[first.0 as usize]
                ),
            ));
        } else {
            self.names
                .insert(name.clone(), GroupId(self.groups.len() as u32));
        }
    }

    /// The action with its code (reject groups only); `None` if refused.
    fn action(&mut self, g: &RawGroup) -> Option<Action> {
        let name = g.name.get_ref();
        match (g.action.get_ref().as_str(), &g.code) {
            ("forward", None) => Some(Action::Forward),
            ("redirect", None) => Some(Action::Redirect),
            ("forward" | "redirect", Some(code)) => {
                self.errors.push(self.src.error_at(
                    code.span(),
                    format!(
                        "code is for reject groups; group {name:?} has action {}",
                        g.action.get_ref()
                    ),
                ));
                None
            }
            ("reject", None) => {
                self.errors.push(self.src.error_at(
                    g.action.span(),
                    format!(
                        "reject group {name:?} needs a code (400 to 699, such as 403, 404 or 503)"
                    ),
                ));
                None
            }
            ("reject", Some(code)) => match in_range(code, 400, 699) {
                Ok(c) => Some(Action::Reject { code: c as u16 }),
                Err(why) => {
                    self.errors.push(self.src.error_at(
                        code.span(),
                        format!("reject code {why} (a 4xx, 5xx or 6xx final response)"),
                    ));
                    None
                }
            },
            (other, _) => {
                self.errors.push(self.src.error_at(
                    g.action.span(),
                    format!("action {other:?} is not forward, redirect or reject"),
                ));
                None
            }
        }
    }

    /// Each target's address (once per group), priority and weight; a
    /// target without a usable address is left out.
    fn add_targets(&mut self, group: &mut RouteGroup, targets: &[Spanned<RawTarget>]) {
        let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
        for t in targets {
            let t = t.get_ref();
            let transport = match &t.transport {
                None => Transport::Udp,
                Some(name) => match Transport::from_name(name.get_ref().as_bytes()) {
                    Some(tr) => tr,
                    None => {
                        self.errors.push(self.src.error_at(
                            name.span(),
                            format!("transport {:?} is not udp, tcp or tls", name.get_ref()),
                        ));
                        continue;
                    }
                },
            };
            let Some(addr) = parse_target_address_for(t.address.get_ref(), transport) else {
                self.errors.push(self.src.error_at(
                    t.address.span(),
                    format!(
                        "target address {:?} is not an IP address with an optional port (198.18.0.1:5060, [2001:db8::1]:5060)",
                        t.address.get_ref()
                    ),
                ));
                continue;
            };
            if let Some(line) = seen.insert(addr, self.line_of(t.address.span())) {
                self.errors.push(self.src.error_at(
                    t.address.span(),
                    format!(
                        "target {addr} is already in group {:?} on line {line}",
                        group.name
                    ),
                ));
            }
            let priority = self.target_field("priority", &t.priority, 0);
            let weight = self.target_field("weight", &t.weight, 1);
            group
                .targets
                .push(Target::new(addr, priority, weight).with_transport(transport));
        }
    }

    /// A target's priority or weight: 1 when absent or refused.
    fn target_field(&mut self, key: &str, v: &Option<Spanned<i64>>, min: i64) -> u16 {
        match v {
            None => 1,
            Some(v) => in_range(v, min, i64::from(u16::MAX)).unwrap_or_else(|why| {
                self.errors
                    .push(self.src.error_at(v.span(), format!("{key} {why}")));
                1
            }) as u16,
        }
    }

    /// Forward and redirect groups need targets; a reject group's targets
    /// are only warned about.
    fn targets_fit_action(&mut self, g: &RawGroup, action: Option<Action>, no_targets: bool) {
        let name = g.name.get_ref();
        let span = || g.targets.as_ref().map_or(g.action.span(), |t| t.span());
        match action {
            Some(Action::Forward | Action::Redirect) if no_targets => {
                self.errors.push(self.src.error_at(
                    span(),
                    format!(
                        "{} group {name:?} has no targets; calls to it could go nowhere",
                        g.action.get_ref()
                    ),
                ));
            }
            Some(Action::Reject { .. }) if !no_targets => {
                self.warnings.push(self.src.error_at(
                    span(),
                    format!("targets of reject group {name:?} are never used"),
                ));
            }
            _ => {}
        }
    }

    /// `probe` and `when_all_down`: forward groups only (nothing else has
    /// targets whose health matters).
    fn health_choices(&mut self, group: &mut RouteGroup, g: &RawGroup, action: Option<Action>) {
        let name = g.name.get_ref();
        let not_forward = action.is_some_and(|a| a != Action::Forward);
        if let Some(p) = &g.probe {
            match p.get_ref().as_str() {
                "options" => group.probe = Probe::Options,
                "none" => group.probe = Probe::None,
                other => self.errors.push(self.src.error_at(
                    p.span(),
                    format!(
                        "probe {other:?} is not \"options\" (SIP OPTIONS every interval) or \"none\" (calls alone show health)"
                    ),
                )),
            }
            if not_forward {
                self.errors.push(self.src.error_at(
                    p.span(),
                    format!(
                        "probe is for forward groups; group {name:?} has action {}",
                        g.action.get_ref()
                    ),
                ));
            }
        }
        if let Some(w) = &g.when_all_down {
            match w.get_ref().as_str() {
                "answer_503" => group.when_all_down = WhenAllDown::Answer503,
                "try_anyway" => group.when_all_down = WhenAllDown::TryAnyway,
                other => self.errors.push(self.src.error_at(
                    w.span(),
                    format!("when_all_down {other:?} is not \"answer_503\" or \"try_anyway\""),
                )),
            }
            if not_forward {
                self.errors.push(self.src.error_at(
                    w.span(),
                    format!(
                        "when_all_down is for forward groups; group {name:?} has action {}",
                        g.action.get_ref()
                    ),
                ));
            }
        }
    }

    /// The group's calls-per-second cap, and the Retry-After of the 503
    /// sent above it (which means nothing without a cap).
    fn cps_cap_and_retry_after(&mut self, group: &mut RouteGroup, g: &RawGroup) {
        let name = g.name.get_ref();
        if let Some(cap) = &g.cps_cap {
            match in_range(cap, 1, 1_000_000_000) {
                Ok(c) => group.cps_cap = Some(c as u32),
                Err(why) => self.errors.push(self.src.error_at(
                    cap.span(),
                    format!("cps_cap {why} (to refuse every call, use action = \"reject\")"),
                )),
            }
        }
        if let Some(r) = &g.retry_after {
            match in_range(r, 1, 86_400) {
                Ok(s) => group.retry_after = Duration::from_secs(s as u64),
                Err(why) => self.errors.push(
                    self.src
                        .error_at(r.span(), format!("retry_after {why} (seconds)")),
                ),
            }
            if g.cps_cap.is_none() {
                self.warnings.push(self.src.error_at(
                    r.span(),
                    format!(
                        "retry_after of group {name:?} is never used: the group has no cps_cap"
                    ),
                ));
            }
        }
    }
}

/// Prefixes as read from a prefixes file.
#[derive(Debug, Clone, Default)]
pub struct PrefixesFile {
    /// Each prefix and its group (an empty prefix is the default route).
    pub entries: Vec<(PrefixKey, GroupId)>,
    /// Line of each entry.
    pub lines: Vec<u32>,
}

/// What a prefix field says, or why it is refused.
fn parse_prefix(field: &[u8]) -> Result<PrefixKey, String> {
    if field == DEFAULT_PREFIX.as_bytes() {
        return Ok(PrefixKey::from_digits(b"").expect("empty prefix"));
    }
    let shown = String::from_utf8_lossy(field);
    if field.is_empty() {
        return Err(format!(
            "empty prefix (write {DEFAULT_PREFIX:?} for the default route)"
        ));
    }
    if field[0] == b'+' {
        return Err(format!(
            "prefix {shown:?} starts with '+'; write E.164 digits without it"
        ));
    }
    if let Some(pos) = field.iter().position(|b| !b.is_ascii_digit()) {
        return Err(format!(
            "prefix {shown:?} has a non-digit at position {}; prefixes are digits, or {DEFAULT_PREFIX:?}",
            pos + 1
        ));
    }
    if field.len() > MAX_PREFIX_DIGITS {
        return Err(format!(
            "prefix {shown:?} has {} digits; the limit is {MAX_PREFIX_DIGITS}",
            field.len()
        ));
    }
    Ok(PrefixKey::from_digits(field).expect("checked digits"))
}

/// Reads a prefixes file: `prefix,group` per line, `#` comment lines, blank
/// lines, an optional `prefix,group` header. With `groups`, every group name
/// must exist; without, names are not checked and every entry gets group 0.
pub fn parse_prefixes(
    src: &SourceFile,
    groups: Option<&GroupsFile>,
) -> Result<PrefixesFile, RouteErrors> {
    let mut errors = ErrorList::default();
    let mut out = PrefixesFile::default();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .flexible(true)
        // Spreadsheets often start a CSV export with a byte-order mark.
        .from_reader(
            src.text()
                .strip_prefix('\u{feff}')
                .unwrap_or(src.text())
                .as_bytes(),
        );
    let mut record = csv::ByteRecord::new();
    let mut first = true;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                errors.push(src.error_at_line(line, format!("unreadable CSV: {e}")));
                break;
            }
        }
        let line = record.position().map_or(0, |p| p.line() as usize);
        if record.len() == 1 && record[0].is_empty() {
            continue;
        }
        if std::mem::take(&mut first)
            && record.len() == 2
            && record[0].eq_ignore_ascii_case(b"prefix")
            && record[1].eq_ignore_ascii_case(b"group")
        {
            continue;
        }
        if record.len() != 2 {
            errors.push(src.error_at_line(
                line,
                format!("expected 2 fields (prefix,group), found {}", record.len()),
            ));
            continue;
        }
        let key = match parse_prefix(&record[0]) {
            Ok(k) => k,
            Err(why) => {
                errors.push(src.error_at_line(line, why));
                continue;
            }
        };
        let name = String::from_utf8_lossy(&record[1]);
        let group = match groups {
            None => GroupId(0),
            Some(g) => match g.id(&name) {
                Some(id) => id,
                None => {
                    errors.push(src.error_at_line(line, format!("unknown group {name:?}")));
                    continue;
                }
            },
        };
        out.entries.push((key, group));
        out.lines.push(line as u32);
    }
    if !errors.is_empty() {
        // The build that finds repeats will not run; report them with the rest.
        let mut first_line: HashMap<PrefixKey, u32> = HashMap::new();
        for (&(key, _), &line) in out.entries.iter().zip(&out.lines) {
            if let Some(first) = first_line.insert(key, line) {
                errors.push(src.error_at_line(line as usize, repeat_reason(key, first as usize)));
            }
        }
        errors.errors.sort_by_key(|e| e.line);
    }
    errors.into_result(out)
}

fn repeat_reason(key: PrefixKey, first_line: usize) -> String {
    let mut buf = [0u8; MAX_PREFIX_DIGITS];
    let shown = if key.is_empty() {
        DEFAULT_PREFIX.to_string()
    } else {
        String::from_utf8_lossy(key.write_digits(&mut buf)).into_owned()
    };
    format!("prefix {shown} repeats line {first_line}")
}

/// Reads both files and builds the table. `overrides` are probe settings
/// from the appliance configuration, with the file they come from.
pub fn load_sources(
    groups_src: &SourceFile,
    prefixes_src: &SourceFile,
    overrides: Option<(&SourceFile, &HealthSpec)>,
) -> Result<LoadedRoutes, RouteErrors> {
    let started_at = Instant::now();
    let groups = parse_groups(groups_src);
    let prefixes = parse_prefixes(prefixes_src, groups.as_ref().ok());
    let (mut groups, prefixes) = match (groups, prefixes) {
        (Ok(g), Ok(p)) => (g, p),
        (g, p) => {
            let mut all = ErrorList::default();
            for e in [g.err(), p.err()].into_iter().flatten() {
                all.omitted += e.omitted;
                e.errors.into_iter().for_each(|e| all.push(e));
            }
            return Err(RouteErrors {
                errors: all.errors,
                omitted: all.omitted,
            });
        }
    };
    let mut errors = ErrorList::default();
    let mut health = groups.health;
    if let Some((config, spec)) = overrides {
        spec.apply(config, &mut health, &mut errors);
    }
    let parsed = Instant::now();
    let mut used = vec![false; groups.groups.len()];
    for (_, g) in &prefixes.entries {
        used[g.0 as usize] = true;
    }
    let mut warnings = std::mem::take(&mut groups.warnings);
    for (i, g) in groups.groups.iter().enumerate() {
        // The emergency group is reached by its numbers, not by prefixes.
        if !used[i] && g.emergency.is_none() {
            warnings.push(groups_src.error_at_line(
                groups.lines[i],
                format!("group {:?} is not used by any prefix", g.name),
            ));
        }
    }
    let table = RouteTable::build(groups.groups, &prefixes.entries, health);
    let built = Instant::now();
    match table {
        Ok(table) => errors.into_result(LoadedRoutes {
            table,
            warnings,
            stats: LoadStats {
                read_and_parse: parsed - started_at,
                build: built - parsed,
            },
        }),
        Err(table_errors) => {
            for e in table_errors {
                errors.push(table_error(e, prefixes_src, &prefixes));
            }
            Err(RouteErrors {
                errors: errors.errors,
                omitted: errors.omitted,
            })
        }
    }
}

fn table_error(e: TableError, src: &SourceFile, prefixes: &PrefixesFile) -> ConfigError {
    let line = |i: usize| prefixes.lines.get(i).copied().unwrap_or(0) as usize;
    match e {
        TableError::DuplicatePrefix { first, second } => src.error_at_line(
            line(second),
            repeat_reason(prefixes.entries[second].0, line(first)),
        ),
        other => ConfigError::file(src.path(), other.to_string()),
    }
}

/// Reads and builds from two paths (the `routes check` and `routes lookup`
/// tools; the appliance goes through [`RoutesConfig::load`]).
pub fn load_files(groups: &Path, prefixes: &Path) -> Result<LoadedRoutes, RouteErrors> {
    let g = read_groups_file(groups);
    let p = read_prefixes_file(prefixes);
    match (g, p) {
        (Ok(g), Ok(p)) => load_sources(&g, &p, None),
        (g, p) => Err(RouteErrors {
            errors: [g.err(), p.err()].into_iter().flatten().collect(),
            omitted: 0,
        }),
    }
}

#[cfg(test)]
mod emergency_tests {
    use super::*;

    fn groups(text: &str) -> Result<GroupsFile, RouteErrors> {
        parse_groups(&SourceFile::from_text("groups.toml", text))
    }

    const BASE: &str = "[[group]]\nname = \"uk\"\naction = \"forward\"\ntargets = [{ address = \"198.18.0.1:5060\" }]\n";

    #[test]
    fn an_emergency_group_takes_the_default_numbers_and_urns() {
        let g = groups(&format!(
            "{BASE}[[group]]\nname = \"sos\"\naction = \"forward\"\nemergency = true\nfallback = \"uk\"\ntargets = [{{ address = \"198.18.0.9:5060\" }}]\n"
        ))
        .unwrap();
        let e = g.groups[1].emergency.as_ref().unwrap();
        assert_eq!(
            e.numbers,
            vec!["911", "112", "999", "000", "110", "118", "119"]
        );
        assert!(e.urns);
        assert_eq!(e.fallback.as_deref(), Some("uk"));
    }

    #[test]
    fn emergency_mistakes_are_refused_with_their_line() {
        let two = groups(&format!(
            "{BASE}[[group]]\nname = \"a\"\naction = \"forward\"\nemergency = true\ntargets = [{{ address = \"198.18.0.9:5060\" }}]\n\
             [[group]]\nname = \"b\"\naction = \"forward\"\nemergency = true\ntargets = [{{ address = \"198.18.0.8:5060\" }}]\n"
        ))
        .unwrap_err();
        assert!(two.to_string().contains("groups.toml:13:"), "{two}");
        assert!(
            two.to_string().contains("is the emergency group already"),
            "{two}"
        );
        let reject = groups(
            "[[group]]\nname = \"sos\"\naction = \"reject\"\ncode = 403\nemergency = true\n",
        )
        .unwrap_err();
        assert!(reject.to_string().contains("must forward"), "{reject}");
        let bad_number = groups(&format!(
            "{BASE}[[group]]\nname = \"sos\"\naction = \"forward\"\nemergency = true\nnumbers = [\"91a\"]\ntargets = [{{ address = \"198.18.0.9:5060\" }}]\n"
        ))
        .unwrap_err();
        assert!(
            bad_number.to_string().contains("groups.toml:9:"),
            "{bad_number}"
        );
        let fallback = groups(&format!(
            "{BASE}[[group]]\nname = \"sos\"\naction = \"forward\"\nemergency = true\nfallback = \"nowhere\"\ntargets = [{{ address = \"198.18.0.9:5060\" }}]\n"
        ))
        .unwrap_err();
        assert!(
            fallback.to_string().contains("fallback \"nowhere\""),
            "{fallback}"
        );
        let stray = groups(&format!("{BASE}numbers = [\"911\"]\n")).unwrap_err();
        assert!(
            stray.to_string().contains("does not say emergency = true"),
            "{stray}"
        );
    }
}

#[cfg(test)]
mod health_choice_tests {
    use super::*;

    fn groups(text: &str) -> Result<GroupsFile, RouteErrors> {
        parse_groups(&SourceFile::from_text("groups.toml", text))
    }

    fn group(extra: &str) -> String {
        format!("[[group]]\nname = \"uk\"\naction = \"forward\"\n{extra}targets = [{{ address = \"198.18.0.1:5060\" }}]\n")
    }

    #[test]
    fn probe_and_when_all_down_default_to_options_and_503() {
        let g = groups(&group("")).unwrap();
        assert_eq!(g.groups[0].probe, Probe::Options);
        assert_eq!(g.groups[0].when_all_down, WhenAllDown::Answer503);
    }

    #[test]
    fn probe_none_and_try_anyway_are_read() {
        let g = groups(&group("probe = \"none\"\nwhen_all_down = \"try_anyway\"\n")).unwrap();
        assert_eq!(g.groups[0].probe, Probe::None);
        assert_eq!(g.groups[0].when_all_down, WhenAllDown::TryAnyway);
    }

    #[test]
    fn a_bad_probe_is_refused_with_file_line_and_reason() {
        let e = groups(&group("probe = \"ping\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("groups.toml:4:"), "{e}");
        assert!(e.contains("probe \"ping\" is not \"options\""), "{e}");
    }

    #[test]
    fn a_bad_when_all_down_is_refused_with_file_line_and_reason() {
        let e = groups(&group("when_all_down = \"retry\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("groups.toml:4:"), "{e}");
        assert!(e.contains("when_all_down \"retry\""), "{e}");
    }

    #[test]
    fn probe_on_a_reject_group_is_refused() {
        let e =
            groups("[[group]]\nname = \"x\"\naction = \"reject\"\ncode = 403\nprobe = \"none\"\n")
                .unwrap_err()
                .to_string();
        assert!(e.contains("groups.toml:5:"), "{e}");
        assert!(e.contains("probe is for forward groups"), "{e}");
    }

    #[test]
    fn passive_thresholds_are_read_and_checked() {
        let g = groups(&format!(
            "[health]\ninvite_failures = 7\ninvite_timeout_ms = 2000\nhold_down_ms = 10000\n{}",
            group("")
        ))
        .unwrap();
        assert_eq!(g.health.invite_failures, 7);
        assert_eq!(g.health.invite_timeout, Duration::from_secs(2));
        assert_eq!(g.health.hold_down, Duration::from_secs(10));
        let off = groups(&format!("[health]\ninvite_failures = 0\n{}", group(""))).unwrap();
        assert_eq!(off.health.invite_failures, 0);
        let e = groups(&format!("[health]\ninvite_timeout_ms = 100\n{}", group("")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("groups.toml:2:"), "{e}");
        assert!(e.contains("invite_timeout_ms is 100"), "{e}");
    }

    #[test]
    fn a_target_in_a_probe_none_group_is_not_probed_anywhere() {
        let text = format!(
            "{}[[group]]\nname = \"sipp\"\naction = \"forward\"\nprobe = \"none\"\ntargets = [{{ address = \"198.18.0.1:5060\" }}, {{ address = \"198.18.0.2:5060\" }}]\n[[group]]\nname = \"fr\"\naction = \"forward\"\ntargets = [{{ address = \"198.18.0.3:5060\" }}]\n",
            group("")
        );
        let g = groups(&text).unwrap();
        let t = RouteTable::build(
            g.groups,
            &[(PrefixKey::from_digits(b"").unwrap(), GroupId(0))],
            g.health,
        )
        .unwrap();
        assert_eq!(
            t.probed_upstreams(),
            vec!["198.18.0.3:5060".parse::<SocketAddr>().unwrap()]
        );
    }
}
