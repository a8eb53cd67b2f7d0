//! Generates the Rust side of the XDP ABI from `ebpf/include/dce_filter.h`,
//! so that the header is the one truth: every `#define DCE_*`, every enum
//! member and every `struct dce_*` becomes a Rust item, and a constant or
//! struct added to the header appears in Rust without anyone writing it.
//!
//! The reader takes the header's own conventions (see its top comment):
//! fixed-width types, no bitfields, one member per line, integer constants
//! as literals or `(1u << N)`. Anything else is refused with the line, so a
//! header change the generator cannot follow fails the build instead of
//! producing a silently wrong mirror.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// How the members of each enum of the header appear in Rust: the module
/// they go in (`None`: the crate's `abi` module itself), the prefixes to
/// strip from their names (first that matches), and their Rust type.
const ENUMS: &[(&str, Option<&str>, &[&str], &str)] = &[
    (
        "dce_counter",
        Some("slot"),
        &["DCE_COUNTER_", "DCE_"],
        "usize",
    ),
    ("dce_ban_reason", Some("ban_reason"), &["DCE_BAN_"], "u32"),
    ("dce_class", None, &["DCE_"], "usize"),
    ("dce_attach_mode", None, &["DCE_"], "u32"),
];

/// `#define`s that go into an enum's module rather than the top level.
const DEFINES_IN: &[(&str, &str)] = &[("DCE_DROP_REASONS", "slot"), ("DCE_VERDICT_SLOTS", "slot")];

#[derive(Debug)]
struct Constant {
    rust: String,
    c_name: String,
    value: u64,
    ty: &'static str,
    doc: String,
}

#[derive(Debug)]
struct Field {
    name: String,
    ty: String,
    doc: String,
    /// Every array length of the member is at most 32 (where std derives
    /// `Default` for arrays).
    default_ok: bool,
}

#[derive(Debug)]
struct Struct {
    c_name: String,
    rust: String,
    doc: String,
    fields: Vec<Field>,
}

/// A header line the generator cannot read.
pub struct HeaderError {
    pub line: usize,
    pub reason: String,
}

fn err(line: usize, reason: impl Into<String>) -> HeaderError {
    HeaderError {
        line,
        reason: reason.into(),
    }
}

/// The comment text of a `/* ... */` on the line, if any.
fn trailing_comment(line: &str) -> Option<String> {
    let start = line.find("/*")?;
    let rest = &line[start + 2..];
    let end = rest.find("*/").unwrap_or(rest.len());
    Some(rest[..end].trim().to_string())
}

fn code_of(line: &str) -> &str {
    line.split("/*").next().unwrap_or("").trim()
}

fn parse_value(text: &str, line: usize) -> Result<(u64, bool), HeaderError> {
    let t = text
        .trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .trim();
    if let Some(shift) = t.strip_prefix("1u << ") {
        let s: u32 = shift
            .trim()
            .parse()
            .map_err(|_| err(line, format!("shift {shift:?} is not a number")))?;
        return Ok((1u64 << s, true));
    }
    let unsigned = t.ends_with('u');
    let digits = t.trim_end_matches('u');
    let v = digits.parse::<u64>().map_err(|_| {
        err(
            line,
            format!("value {t:?} is not an integer literal or (1u << N)"),
        )
    })?;
    Ok((v, unsigned))
}

fn camel(c_name: &str) -> String {
    c_name
        .trim_start_matches("dce_")
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

fn rust_type(c: &str, line: usize) -> Result<String, HeaderError> {
    Ok(match c {
        "__u8" => "u8".into(),
        "__u16" => "u16".into(),
        "__u32" => "u32".into(),
        "__u64" => "u64".into(),
        s if s.starts_with("struct dce_") => camel(s.trim_start_matches("struct ")),
        other => {
            return Err(err(
                line,
                format!("type {other:?} is not a fixed-width type"),
            ))
        }
    })
}

/// Where a constant went in Rust: its path, value and type.
type Paths = BTreeMap<String, (String, u64, &'static str)>;

/// The Rust expression for an array length (a literal, or a constant by its
/// Rust path) and its value.
fn length(text: &str, paths: &Paths, line: usize) -> Result<(String, u64), HeaderError> {
    let t = text.trim();
    if let Ok(v) = t.parse::<u64>() {
        return Ok((t.to_string(), v));
    }
    let (path, value, ty) = paths.get(t).ok_or_else(|| {
        err(
            line,
            format!("array length {t:?} is not a literal or a DCE_ constant defined above"),
        )
    })?;
    let expr = if *ty == "usize" {
        path.clone()
    } else {
        format!("{path} as usize")
    };
    Ok((expr, *value))
}

/// What the header holds: top-level constants, constants by module, structs.
struct Header {
    top: Vec<Constant>,
    modules: Vec<(String, Vec<Constant>)>,
    structs: Vec<Struct>,
}

/// Reads the header.
fn read(header: &str) -> Result<Header, HeaderError> {
    let lines: Vec<&str> = header.lines().collect();
    let mut top = Vec::new();
    let mut modules: BTreeMap<String, Vec<Constant>> = BTreeMap::new();
    let mut structs = Vec::new();
    // Rust paths of every constant by C name, for array lengths.
    let mut paths: Paths = BTreeMap::new();
    // The text of the block comment just before the current line.
    let mut block: Vec<String> = Vec::new();
    let mut in_block = false;
    let mut i = 0;
    while i < lines.len() {
        let raw = lines[i];
        let n = i + 1;
        let line = raw.trim();
        if in_block {
            let text = line.trim_start_matches('*').trim_end_matches("*/").trim();
            if !text.is_empty() && !text.starts_with('/') {
                block.push(text.to_string());
            }
            if line.ends_with("*/") {
                in_block = false;
            }
            i += 1;
            continue;
        }
        if line.starts_with("/*") {
            block.clear();
            let text = line.trim_start_matches("/*").trim_end_matches("*/").trim();
            if !text.is_empty() && !text.starts_with("SPDX") {
                block.push(text.to_string());
            }
            in_block = !line.ends_with("*/");
            i += 1;
            continue;
        }
        if let Some(rest) = line.strip_prefix("#define DCE_") {
            let code = code_of(rest);
            if code.ends_with("_H") && !code.contains(char::is_whitespace) {
                // The include guard.
                i += 1;
                continue;
            }
            let (name, value) = code
                .split_once(char::is_whitespace)
                .ok_or_else(|| err(n, "a DCE_ define without a value"))?;
            let c_name = format!("DCE_{name}");
            let (value, unsigned) = parse_value(value, n)?;
            let doc = trailing_comment(raw).ok_or_else(|| {
                err(
                    n,
                    format!("{c_name} has no /* comment */: the header documents every constant"),
                )
            })?;
            let module = DEFINES_IN
                .iter()
                .find(|(c, _)| *c == c_name)
                .map(|(_, m)| *m);
            let c = Constant {
                rust: name.to_string(),
                c_name: c_name.clone(),
                value,
                ty: if unsigned { "u32" } else { "usize" },
                doc,
            };
            match module {
                Some(m) => {
                    paths.insert(c_name, (format!("{m}::{name}"), c.value, c.ty));
                    modules.entry(m.to_string()).or_default().push(c);
                }
                None => {
                    paths.insert(c_name, (name.to_string(), c.value, c.ty));
                    top.push(c);
                }
            }
            i += 1;
            continue;
        }
        if line.starts_with("#define DCE_FILTER_H") || line.starts_with('#') {
            block.clear();
            i += 1;
            continue;
        }
        if let Some(rest) = line.strip_prefix("enum ") {
            let c_enum = rest.trim_end_matches('{').trim().to_string();
            let (_, module, prefixes, ty) = ENUMS
                .iter()
                .find(|(c, ..)| *c == c_enum)
                .ok_or_else(|| err(n, format!("enum {c_enum} has no entry in the generator's ENUMS table (build/abi.rs): say where its members go")))?;
            let mut members = Vec::new();
            i += 1;
            while i < lines.len() && !lines[i].trim().starts_with("};") {
                let m = lines[i];
                let mn = i + 1;
                let code = code_of(m);
                if code.is_empty() {
                    // A comment line inside the enum heads a group of members.
                    i += 1;
                    continue;
                }
                let (name, value) = code
                    .trim_end_matches(',')
                    .split_once('=')
                    .ok_or_else(|| err(mn, "enum members must give their value: NAME = N,"))?;
                let name = name.trim();
                let (value, _) = parse_value(value, mn)?;
                let stripped = prefixes
                    .iter()
                    .find_map(|p| name.strip_prefix(p))
                    .ok_or_else(|| err(mn, format!("{name} does not start with {prefixes:?}")))?;
                let doc = trailing_comment(m).ok_or_else(|| {
                    err(
                        mn,
                        format!("{name} has no /* comment */: the header documents every member"),
                    )
                })?;
                let path = match module {
                    Some(md) => format!("{md}::{stripped}"),
                    None => stripped.to_string(),
                };
                paths.insert(name.to_string(), (path, value, ty));
                members.push(Constant {
                    rust: stripped.to_string(),
                    c_name: name.to_string(),
                    value,
                    ty,
                    doc,
                });
                i += 1;
            }
            match module {
                Some(md) => modules.entry(md.to_string()).or_default().extend(members),
                None => top.extend(members),
            }
            block.clear();
            i += 1;
            continue;
        }
        if let Some(rest) = line.strip_prefix("struct dce_") {
            if !rest.trim_end().ends_with('{') {
                return Err(err(
                    n,
                    "a struct definition must open its brace on its first line",
                ));
            }
            let c_name = format!("dce_{}", rest.trim_end_matches('{').trim());
            let doc = block.join(" ");
            let mut fields = Vec::new();
            i += 1;
            while i < lines.len() && !lines[i].trim().starts_with("};") {
                let m = lines[i];
                let mn = i + 1;
                let code = code_of(m).trim_end_matches(';').trim();
                if code.is_empty() {
                    i += 1;
                    continue;
                }
                if code.contains(':') {
                    return Err(err(mn, "bitfields are not part of this ABI"));
                }
                let (ty, decl) = code
                    .rsplit_once(char::is_whitespace)
                    .ok_or_else(|| err(mn, "a member is `type name;` or `type name[N];`"))?;
                let mut parts = decl.split('[');
                let name = parts.next().unwrap_or("").trim().to_string();
                let mut ty = rust_type(ty.trim(), mn)?;
                let dims: Vec<(String, u64)> = parts
                    .map(|d| length(d.trim_end_matches(']'), &paths, mn))
                    .collect::<Result<_, _>>()?;
                let default_ok = dims.iter().all(|(_, v)| *v <= 32);
                for (d, _) in dims.iter().rev() {
                    ty = format!("[{ty}; {d}]");
                }
                let doc = trailing_comment(m)
                    .ok_or_else(|| err(mn, format!("member {name} of struct {c_name} has no /* comment */: the header documents every member")))?;
                fields.push(Field {
                    name,
                    ty,
                    doc,
                    default_ok,
                });
                i += 1;
            }
            structs.push(Struct {
                rust: camel(&c_name),
                doc: if doc.is_empty() {
                    format!("`struct {c_name}`.")
                } else {
                    doc
                },
                c_name,
                fields,
            });
            block.clear();
            i += 1;
            continue;
        }
        if !line.is_empty() {
            block.clear();
        }
        i += 1;
    }
    Ok(Header {
        top,
        modules: modules.into_iter().collect(),
        structs,
    })
}

fn doc_lines(out: &mut String, indent: &str, c_name: &str, doc: &str) {
    let text = if doc.is_empty() {
        format!("`{c_name}`.")
    } else {
        format!("`{c_name}`: {doc}")
    };
    for l in text.lines() {
        let _ = writeln!(out, "{indent}/// {l}");
    }
}

fn constant(out: &mut String, indent: &str, c: &Constant) {
    doc_lines(out, indent, &c.c_name, &c.doc);
    let _ = writeln!(out, "{indent}pub const {}: {} = {};", c.rust, c.ty, c.value);
}

/// Turns `NOT_SIP` into `NotSip`.
fn variant(upper: &str) -> String {
    upper
        .split('_')
        .map(|w| {
            let lower = w.to_ascii_lowercase();
            let mut c = lower.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// `slot::NAMES`: every counter slot's name, in slot order (`DROP_X` is
/// `x`, every other `Y` is `y`), after checking the slots are 0 .. SLOTS-1.
fn slot_names(out: &mut String, slot: &[Constant]) -> Result<(), HeaderError> {
    let count = slot
        .iter()
        .find(|c| c.rust == "SLOTS")
        .ok_or_else(|| err(0, "DCE_COUNTER_SLOTS is not defined"))?
        .value;
    let mut slots: Vec<&Constant> = slot
        .iter()
        .filter(|c| {
            c.c_name.starts_with("DCE_")
                && c.value < count
                && c.rust != "DROP_REASONS"
                && c.rust != "VERDICT_SLOTS"
        })
        .collect();
    slots.sort_by_key(|c| c.value);
    for (i, c) in slots.iter().enumerate() {
        if c.value != i as u64 {
            return Err(err(
                0,
                format!("counter slot {} is missing (found {} next)", i, c.c_name),
            ));
        }
    }
    if slots.len() as u64 != count {
        return Err(err(
            0,
            format!(
                "{} counter slots named, DCE_COUNTER_SLOTS is {count}",
                slots.len()
            ),
        ));
    }
    let _ = writeln!(
        out,
        "\n/// Every counter slot's name, in slot order (what tests and tools print)."
    );
    let _ = writeln!(out, "pub const SLOT_NAMES: [&str; {count}] = [");
    for c in &slots {
        let name = c
            .rust
            .strip_prefix("DROP_")
            .unwrap_or(&c.rust)
            .to_ascii_lowercase();
        let _ = writeln!(out, "    \"{name}\",");
    }
    let _ = writeln!(out, "];");
    Ok(())
}

/// The `DropReason` enum from the `DCE_DROP_*` counter slots, after checking
/// they are the first `DCE_DROP_REASONS` slots, in order.
fn drop_reason(out: &mut String, slot: &[Constant]) -> Result<(), HeaderError> {
    let drops: Vec<&Constant> = slot
        .iter()
        .filter(|c| c.rust.starts_with("DROP_") && c.rust != "DROP_REASONS")
        .collect();
    let count = slot
        .iter()
        .find(|c| c.rust == "DROP_REASONS")
        .ok_or_else(|| err(0, "DCE_DROP_REASONS is not defined"))?
        .value;
    if drops.len() as u64 != count {
        return Err(err(
            0,
            format!(
                "{} DCE_DROP_* slots but DCE_DROP_REASONS is {count}",
                drops.len()
            ),
        ));
    }
    for (i, d) in drops.iter().enumerate() {
        if d.value != i as u64 {
            return Err(err(
                0,
                format!(
                    "{} is slot {}, expected {i}: drop reasons are the first slots, in order",
                    d.c_name, d.value
                ),
            ));
        }
    }
    let _ = writeln!(
        out,
        "\n/// Why the XDP program dropped a packet: the `DCE_DROP_*` counter slots,"
    );
    let _ = writeln!(
        out,
        "/// in slot order. Every drop moves exactly one of them; names are the"
    );
    let _ = writeln!(
        out,
        "/// labels of the counters, the metrics and the stats."
    );
    let _ = writeln!(
        out,
        "#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]"
    );
    let _ = writeln!(out, "#[repr(u32)]\npub enum DropReason {{");
    for d in &drops {
        doc_lines(out, "    ", &d.c_name, &d.doc);
        let _ = writeln!(
            out,
            "    {} = {},",
            variant(&d.rust["DROP_".len()..]),
            d.value
        );
    }
    let _ = writeln!(out, "}}\n\nimpl DropReason {{");
    let _ = writeln!(
        out,
        "    /// How many reasons there are.\n    pub const COUNT: usize = {count};"
    );
    let _ = writeln!(
        out,
        "    /// Every reason, in slot order.\n    pub const ALL: [DropReason; {count}] = ["
    );
    for d in &drops {
        let _ = writeln!(
            out,
            "        DropReason::{},",
            variant(&d.rust["DROP_".len()..])
        );
    }
    let _ = writeln!(
        out,
        "    ];\n\n    /// The reason's name: counter label, metric label, stats key."
    );
    let _ = writeln!(
        out,
        "    pub const fn name(self) -> &'static str {{\n        match self {{"
    );
    for d in &drops {
        let _ = writeln!(
            out,
            "            DropReason::{} => \"{}\",",
            variant(&d.rust["DROP_".len()..]),
            d.rust["DROP_".len()..].to_ascii_lowercase()
        );
    }
    let _ = writeln!(
        out,
        "        }}\n    }}\n\n    /// Its counter slot (`slot::DROP_*`)."
    );
    let _ = writeln!(
        out,
        "    pub const fn slot(self) -> usize {{\n        self as usize\n    }}\n"
    );
    let _ = writeln!(
        out,
        "    /// The reason of counter slot `slot`, if it is a drop slot."
    );
    let _ = writeln!(out, "    pub fn from_slot(slot: usize) -> Option<DropReason> {{\n        DropReason::ALL.get(slot).copied()\n    }}\n}}");
    Ok(())
}

/// The generated Rust source, or the line the generator could not read.
pub fn generate(header: &str) -> Result<String, HeaderError> {
    let Header {
        top,
        modules,
        structs,
    } = read(header)?;
    let mut out = String::new();
    out.push_str(
        "// Generated by crates/xdp/build.rs from ebpf/include/dce_filter.h: edit the header.\n\n",
    );
    for c in &top {
        constant(&mut out, "", c);
    }
    for (name, members) in &modules {
        let _ = writeln!(
            out,
            "\n/// Constants of the header that belong together (`{name}`)."
        );
        let _ = writeln!(out, "pub mod {name} {{");
        for c in members {
            constant(&mut out, "    ", c);
        }
        let _ = writeln!(out, "}}");
        if name == "slot" {
            slot_names(&mut out, members)?;
            drop_reason(&mut out, members)?;
        }
    }
    for s in &structs {
        let _ = writeln!(out);
        doc_lines(&mut out, "", &format!("struct {}", s.c_name), &s.doc);
        let derives = if s.fields.iter().all(|f| f.default_ok) {
            "Debug, Clone, Copy, Default, PartialEq, Eq, Hash"
        } else {
            "Debug, Clone, Copy, PartialEq, Eq, Hash"
        };
        let _ = writeln!(
            out,
            "#[repr(C)]\n#[derive({derives})]\npub struct {} {{",
            s.rust
        );
        for f in &s.fields {
            for l in f.doc.lines() {
                let _ = writeln!(out, "    /// {l}");
            }
            let _ = writeln!(out, "    pub {}: {},", f.name, f.ty);
        }
        let _ = writeln!(out, "}}");
        if !s.fields.iter().all(|f| f.default_ok) {
            // std derives Default for arrays of at most 32: zero the rest.
            let _ = writeln!(
                out,
                "\nimpl Default for {} {{\n    fn default() -> Self {{\n        \
                 // SAFETY: made only of integers and arrays of integers (see `pod`\n        \
                 // below): all zeroes is a valid value.\n        \
                 #[allow(unsafe_code)]\n        unsafe {{ core::mem::zeroed() }}\n    }}\n}}",
                s.rust
            );
        }
    }
    let _ = writeln!(
        out,
        "\n// SAFETY: every struct above is #[repr(C)], made only of integers and"
    );
    let _ = writeln!(
        out,
        "// arrays of integers with explicit padding members (the header's rule),"
    );
    let _ = writeln!(
        out,
        "// so every bit pattern is a valid value and no padding byte is uninitialised."
    );
    let _ = writeln!(out, "#[allow(unsafe_code)]\nmod pod {{\n    use super::*;");
    for s in &structs {
        let _ = writeln!(out, "    unsafe impl aya::Pod for {} {{}}", s.rust);
    }
    let _ = writeln!(out, "}}");
    let _ = writeln!(
        out,
        "\n/// Every struct of the header: C name, Rust size, and each member's C name and"
    );
    let _ = writeln!(
        out,
        "/// Rust offset, for the test that holds them against the compiled object's BTF."
    );
    let _ = writeln!(out, "pub const LAYOUTS: &[Layout] = &[");
    for s in &structs {
        let _ = write!(
            out,
            "    Layout {{ c_name: \"{}\", size: ::std::mem::size_of::<{}>(), members: &[",
            s.c_name, s.rust
        );
        for f in &s.fields {
            let _ = write!(
                out,
                "(\"{}\", ::std::mem::offset_of!({}, {})), ",
                f.name, s.rust, f.name
            );
        }
        let _ = writeln!(out, "] }},");
    }
    let _ = writeln!(out, "];");
    Ok(out)
}
