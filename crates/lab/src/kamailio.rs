//! Kamailio 5.6 configured as a stateless SIP edge doing dce-edge's job, for
//! the benchmarks that run the two in the same role. One generator of the
//! configuration text; a [`Spec`] says what a benchmark needs (listeners,
//! workers, which checks, where requests go), so both compare the edge with
//! the same Kamailio routing block.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use config::SourceFile;
use route::files::{parse_groups, parse_prefixes};
use route::trie::MAX_PREFIX_DIGITS;
use route::{Action, RouteGroup};
use sip::reason_phrase;
use xdp::config::FilterConfig;

/// The mtree tree's name.
const TREE: &str = "routes";
/// The db_text table holding the trees (the `mtrees` layout).
const TABLE: &str = "mtrees";

/// The transport of a Kamailio listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// SIP over UDP.
    Udp,
    /// SIP over TCP.
    Tcp,
    /// SIP over TLS (needs [`Spec::tls`]).
    Tls,
}

impl Transport {
    /// The protocol as Kamailio's `listen=` spells it.
    fn proto(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// The server certificate and key (PEM files) of the TLS listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain.
    pub certificate: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// Where requests go once they pass the checks.
#[derive(Debug, Clone)]
pub enum Routes<'a> {
    /// Every request to this upstream, over UDP.
    Upstream(SocketAddr),
    /// By dialed number, from dce-edge's own route files (read with
    /// dce-edge's parser, written as an mtree in a db_text directory).
    Files {
        /// The groups file (`groups.toml`).
        groups: &'a Path,
        /// The prefixes file (`prefixes.csv`).
        prefixes: &'a Path,
    },
}

/// What one benchmark's Kamailio does.
#[derive(Debug, Clone)]
pub struct Spec<'a> {
    /// Who wrote the configuration and what it does, for its header
    /// comment (lines without the leading `#`).
    pub about: &'a str,
    /// Worker processes for UDP, and for TCP and TLS when listening on them.
    pub children: u32,
    /// The listening addresses. With no TCP or TLS listener TCP is turned
    /// off altogether.
    pub listen: Vec<(Transport, SocketAddr)>,
    /// The TLS listener's certificate and key; required with a TLS listener.
    pub tls: Option<TlsFiles>,
    /// Drops scanners by User-Agent or From display name, with dce-edge's
    /// default signatures (dce-edge does it in XDP).
    pub scanners: bool,
    /// Runs pike on every request, with this many requests per source per
    /// two-second unit.
    pub pike_density: Option<u32>,
    /// Runs `sanity_check()` on every request.
    pub sanity: bool,
    /// Where requests go.
    pub routes: Routes<'a>,
}

/// What [`write`] made.
#[derive(Debug, Clone)]
pub struct Files {
    /// The configuration (`kamailio -f`).
    pub cfg: PathBuf,
    /// Kamailio's working directory (`-w`).
    pub run_dir: PathBuf,
    /// Where Kamailio writes its PID (`-P`).
    pub pidfile: PathBuf,
    /// Prefixes in the mtree (0 when routing to one upstream).
    pub prefixes: usize,
}

impl Files {
    /// Kamailio on these files, in the foreground (`-DD -E`) inside `ns`,
    /// its output written to `log` (created afresh): spawn it.
    pub fn command(&self, ns: &crate::netns::Netns, log: &Path) -> Result<std::process::Command> {
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = ns.command("kamailio");
        cmd.arg("-f")
            .arg(&self.cfg)
            .args(["-DD", "-E", "-w"])
            .arg(&self.run_dir)
            .arg("-P")
            .arg(&self.pidfile)
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        Ok(cmd)
    }
}

/// A POSIX ERE alternative matching `s` literally.
fn ere_literal(s: &str) -> Result<String> {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | ' ' => out.push(c),
            '.' | '*' | '+' | '?' | '(' | ')' | '{' | '}' | '|' | '$' | '[' => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            other => bail!("scanner signature {s:?}: {other:?} has no literal form here"),
        }
    }
    Ok(out)
}

/// A POSIX ERE alternation matching any of `signatures` literally.
fn ere_alternatives(signatures: &[String]) -> Result<String> {
    Ok(signatures
        .iter()
        .map(|s| ere_literal(s))
        .collect::<Result<Vec<_>>>()?
        .join("|"))
}

/// The route block of one group: what dce-edge's proxy does with it.
fn group_route(out: &mut String, i: usize, g: &RouteGroup) -> Result<()> {
    if g.cps_cap.is_some() {
        bail!(
            "group {:?} has a CPS cap; the Kamailio configuration does not translate caps",
            g.name
        );
    }
    writeln!(out, "# group {:?}: {}", g.name, g.action.name())?;
    writeln!(out, "route[GROUP{i}] {{")?;
    match g.action {
        Action::Forward => {
            // dce-edge: the most preferred priority, weighted between
            // equals, the same Call-ID to the same target. Here: the
            // core's Call-ID hash over the weights of that priority.
            let best = g
                .targets
                .iter()
                .map(|t| t.priority)
                .min()
                .ok_or_else(|| anyhow!("group {:?} has no target", g.name))?;
            let top: Vec<_> = g.targets.iter().filter(|t| t.priority == best).collect();
            let total: u32 = top.iter().map(|t| u32::from(t.weight.max(1))).sum();
            if top.len() == 1 {
                writeln!(out, "    $du = \"sip:{}\";", top[0].addr)?;
            } else {
                writeln!(out, "    $var(h) = $(ci{{s.corehash,{total}}});")?;
                let mut upto = 0u32;
                for (k, t) in top.iter().enumerate() {
                    upto += u32::from(t.weight.max(1));
                    let head = if k == 0 { "if" } else { "} else if" };
                    if k + 1 == top.len() {
                        writeln!(out, "    }} else {{")?;
                    } else {
                        writeln!(out, "    {head} ($var(h) < {upto}) {{")?;
                    }
                    writeln!(out, "        $du = \"sip:{}\";", t.addr)?;
                }
                writeln!(out, "    }}")?;
            }
            writeln!(out, "    forward();")?;
        }
        Action::Redirect => {
            for t in &g.targets {
                writeln!(
                    out,
                    "    append_to_reply(\"Contact: <sip:$rU@{}>\\r\\n\");",
                    t.addr
                )?;
            }
            writeln!(out, "    sl_send_reply(\"302\", \"Moved Temporarily\");")?;
        }
        Action::Reject { code } => {
            writeln!(
                out,
                "    sl_send_reply(\"{code}\", \"{}\");",
                reason_phrase(code)
            )?;
        }
    }
    writeln!(out, "    exit;\n}}\n")?;
    Ok(())
}

/// Where requests go, as configuration text: the end of the request route
/// and the route blocks it calls.
struct Routing {
    /// The end of `request_route`, from where the checks end.
    tail: String,
    /// The `route[GROUPn]` blocks (route files only).
    groups: String,
    /// Prefixes in the mtree.
    prefixes: usize,
}

/// Writes the db_text directory `db` (the mtree from the prefixes file,
/// read with dce-edge's own parser) and returns the routing text.
fn mtree_routes(db: &Path, groups_path: &Path, prefixes_path: &Path) -> Result<Routing> {
    let groups_src = SourceFile::read(groups_path).map_err(|e| anyhow!("{e}"))?;
    let groups = parse_groups(&groups_src).map_err(|e| anyhow!("{e}"))?;
    let prefixes_src = SourceFile::read(prefixes_path).map_err(|e| anyhow!("{e}"))?;
    let prefixes = parse_prefixes(&prefixes_src, Some(&groups)).map_err(|e| anyhow!("{e}"))?;

    // db_text: a header of typed columns, then rows separated by ':'.
    let mut rows = String::from("id(int,auto) tname(str) tprefix(str) tvalue(str)\n");
    let mut default_group = None;
    let mut n = 0usize;
    let mut buf = [0u8; MAX_PREFIX_DIGITS];
    for &(key, group) in &prefixes.entries {
        let name = &groups.groups[group.0 as usize].name;
        if key.is_empty() {
            default_group = Some(group.0 as usize);
            continue;
        }
        n += 1;
        let digits = std::str::from_utf8(key.write_digits(&mut buf)).expect("digits");
        writeln!(rows, "{n}:{TREE}:{digits}:{name}")?;
    }
    std::fs::create_dir_all(db)?;
    std::fs::write(db.join(TABLE), rows)?;
    std::fs::write(
        db.join("version"),
        format!("table_name(str) table_version(int)\n{TABLE}:2\n"),
    )?;

    let mut tail = String::new();
    writeln!(
        tail,
        "\x20   # Requests for the edge's address (initial INVITEs, and ACK and\n\
         \x20   # BYE sent to it) route by the dialed number.\n\
         \x20   if (!mt_match(\"{TREE}\", \"$rU\", \"0\")) {{"
    )?;
    match default_group {
        Some(g) => writeln!(tail, "        route(GROUP{g});")?,
        None => writeln!(
            tail,
            "        sl_send_reply(\"404\", \"Not Found\");\n        exit;"
        )?,
    }
    writeln!(tail, "    }}\n    switch ($var(group)) {{")?;
    for (i, g) in groups.groups.iter().enumerate() {
        writeln!(
            tail,
            "        case \"{}\":\n            route(GROUP{i});\n            break;",
            g.name
        )?;
    }
    writeln!(
        tail,
        "    }}\n    sl_send_reply(\"500\", \"Server Internal Error\");\n    exit;\n}}\n"
    )?;
    let mut blocks = String::new();
    for (i, g) in groups.groups.iter().enumerate() {
        group_route(&mut blocks, i, g)?;
    }
    Ok(Routing {
        tail,
        groups: blocks,
        prefixes: n,
    })
}

/// Writes the configuration, what it reads (the TLS settings, the mtree's
/// db_text directory) and a run folder into `dir`.
pub fn write(dir: &Path, spec: &Spec) -> Result<Files> {
    let run_dir = dir.join("run");
    std::fs::create_dir_all(&run_dir)?;
    let has = |t: Transport| spec.listen.iter().any(|&(l, _)| l == t);
    let stream = has(Transport::Tcp) || has(Transport::Tls);

    let tls_cfg = match (&spec.tls, has(Transport::Tls)) {
        (Some(files), true) => {
            let path = dir.join("tls.cfg");
            std::fs::write(
                &path,
                format!(
                    "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n\
                     private_key = {key}\ncertificate = {cert}\n\n\
                     [client:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n",
                    key = files.key.display(),
                    cert = files.certificate.display(),
                ),
            )?;
            Some(path)
        }
        (None, true) => bail!("a TLS listener needs a certificate and key (Spec::tls)"),
        (_, false) => None,
    };
    let (routing, db) = match spec.routes {
        Routes::Upstream(upstream) => (
            Routing {
                tail: format!(
                    "\x20   $du = \"sip:{upstream};transport=udp\";\n\
                     \x20   forward();\n\
                     \x20   exit;\n\
                     }}\n"
                ),
                groups: String::new(),
                prefixes: 0,
            },
            None,
        ),
        Routes::Files { groups, prefixes } => {
            let db = dir.join("db");
            (mtree_routes(&db, groups, prefixes)?, Some(db))
        }
    };

    let mut cfg = String::from("#!KAMAILIO\n");
    for line in spec.about.lines() {
        writeln!(cfg, "# {line}")?;
    }
    writeln!(cfg, "debug=0\nlog_stderror=yes\nchildren={}", spec.children)?;
    if stream {
        writeln!(cfg, "tcp_children={}", spec.children)?;
        if tls_cfg.is_some() {
            writeln!(cfg, "enable_tls=yes")?;
        }
    } else {
        writeln!(cfg, "disable_tcp=yes")?;
    }
    writeln!(
        cfg,
        "auto_aliases=no\ndns=no\nrev_dns=no\n\
         # The same 4 MiB receive buffer the load generator asks for.\n\
         maxbuffer=4194304"
    )?;
    if stream {
        writeln!(
            cfg,
            "tcp_max_connections=4096\ntcp_connection_lifetime=3600"
        )?;
    }
    for (t, addr) in &spec.listen {
        writeln!(cfg, "listen={}:{addr}", t.proto())?;
    }
    cfg.push('\n');

    let mut modules = Vec::new();
    if tls_cfg.is_some() {
        modules.push("tls");
    }
    modules.extend(["sl", "pv", "maxfwd"]);
    if spec.sanity {
        modules.push("sanity");
    }
    if spec.pike_density.is_some() {
        modules.push("pike");
    }
    modules.extend(["textops", "siputils", "rr"]);
    if db.is_some() {
        modules.extend(["db_text", "mtree"]);
    }
    for m in modules {
        writeln!(cfg, "loadmodule \"{m}.so\"")?;
    }
    cfg.push('\n');

    if let Some(density) = spec.pike_density {
        writeln!(
            cfg,
            "# Per source: as high as the edge's own per-source limits in this\n\
             # bench, so it runs on every request without capping the calls.\n\
             modparam(\"pike\", \"sampling_time_unit\", 2)\n\
             modparam(\"pike\", \"reqs_density_per_unit\", {density})\n\
             modparam(\"pike\", \"remove_latency\", 4)"
        )?;
    }
    if let Some(db) = &db {
        writeln!(
            cfg,
            "modparam(\"mtree\", \"db_url\", \"text://{db}\")\n\
             modparam(\"mtree\", \"db_table\", \"{TABLE}\")\n\
             modparam(\"mtree\", \"pv_value\", \"$var(group)\")",
            db = db.display()
        )?;
    }
    if let Some(path) = &tls_cfg {
        writeln!(cfg, "modparam(\"tls\", \"config\", \"{}\")", path.display())?;
    }
    writeln!(cfg, "modparam(\"rr\", \"append_fromtag\", 0)\n")?;

    writeln!(cfg, "request_route {{")?;
    if spec.scanners {
        let filter = FilterConfig::default();
        let agents = ere_alternatives(&filter.scanner_user_agents)?;
        let from_names = ere_alternatives(&filter.scanner_from_names)?;
        writeln!(
            cfg,
            "\x20   # Scanners, by User-Agent or From display name (dce-edge: in XDP).\n\
             \x20   if ($ua =~ \"^({agents})\" || $fn =~ \"^\\\"?({from_names})\") {{\n\
             \x20       drop;\n\
             \x20   }}"
        )?;
    }
    if spec.pike_density.is_some() {
        writeln!(
            cfg,
            "\x20   if (!pike_check_req()) {{\n\
             \x20       drop;\n\
             \x20   }}"
        )?;
    }
    writeln!(
        cfg,
        "\x20   # RFC 3261 section 16.3.\n\
         \x20   if (!mf_process_maxfwd_header(\"70\")) {{\n\
         \x20       sl_send_reply(\"483\", \"Too Many Hops\");\n\
         \x20       exit;\n\
         \x20   }}"
    )?;
    if spec.sanity {
        writeln!(
            cfg,
            "\x20   if (!sanity_check()) {{\n\
             \x20       exit;\n\
             \x20   }}"
        )?;
    }
    writeln!(
        cfg,
        "\x20   # OPTIONS to the edge itself.\n\
         \x20   if (is_method(\"OPTIONS\") && uri == myself && $rU == $null) {{\n\
         \x20       sl_send_reply(\"200\", \"OK\");\n\
         \x20       exit;\n\
         \x20   }}\n\
         \x20   if (has_totag()) {{\n\
         \x20       if (uri == myself) {{\n\
         \x20           # Sent to the edge's address (Request-URI number@edge,\n\
         \x20           # as SIPp and dce-loadgen do): our Route entry goes and\n\
         \x20           # the number routes it below. loose_route() would take\n\
         \x20           # the previous hop for a strict router and put our\n\
         \x20           # Route entry into the Request-URI.\n\
         \x20           remove_hf(\"Route\");\n\
         \x20       }} else {{\n\
         \x20           loose_route();\n\
         \x20           forward();\n\
         \x20           exit;\n\
         \x20       }}\n\
         \x20   }} else if (is_method(\"INVITE\")) {{\n\
         \x20       record_route();\n\
         \x20   }}"
    )?;
    cfg.push_str(&routing.tail);
    cfg.push_str(&routing.groups);

    let path = dir.join("kamailio.cfg");
    std::fs::write(&path, cfg).with_context(|| format!("writing {}", path.display()))?;
    Ok(Files {
        cfg: path,
        pidfile: run_dir.join("kamailio.pid"),
        run_dir,
        prefixes: routing.prefixes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// edge_stream's Kamailio: UDP and TCP on 5060, TLS on 5061, one
    /// upstream, no pike or sanity.
    fn stream_spec(dir: &Path) -> Spec<'static> {
        let edge = std::net::Ipv4Addr::new(198, 18, 0, 1);
        Spec {
            about: "edge_stream",
            children: 2,
            listen: vec![
                (Transport::Udp, (edge, 5060).into()),
                (Transport::Tcp, (edge, 5060).into()),
                (Transport::Tls, (edge, 5061).into()),
            ],
            tls: Some(TlsFiles {
                certificate: dir.join("edge.crt"),
                key: dir.join("edge.key"),
            }),
            scanners: false,
            pike_density: None,
            sanity: false,
            routes: Routes::Upstream("198.18.2.1:5060".parse().unwrap()),
        }
    }

    /// Route files with a weighted forward group, a redirect, a reject and
    /// a default route.
    fn route_files(dir: &Path) -> (PathBuf, PathBuf) {
        let groups = dir.join("groups.toml");
        let prefixes = dir.join("prefixes.csv");
        std::fs::write(
            &groups,
            "[[group]]\nname = \"uk\"\naction = \"forward\"\ntargets = [\n  \
             { address = \"198.18.2.1:5060\", priority = 1, weight = 1 },\n  \
             { address = \"198.18.2.2:5060\", priority = 1, weight = 3 },\n]\n\n\
             [[group]]\nname = \"moved\"\naction = \"redirect\"\n\
             targets = [ { address = \"198.18.2.9:5060\" } ]\n\n\
             [[group]]\nname = \"blocked\"\naction = \"reject\"\ncode = 403\ntargets = []\n",
        )
        .unwrap();
        std::fs::write(
            &prefixes,
            "prefix,group\n44,uk\n33,moved\n9,blocked\ndefault,uk\n",
        )
        .unwrap();
        (groups, prefixes)
    }

    fn lines(files: &Files) -> Vec<String> {
        std::fs::read_to_string(&files.cfg)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Asserts that each of `present` is a line of `cfg` and none of
    /// `absent` is.
    fn assert_lines(cfg: &[String], present: &[&str], absent: &[&str]) {
        let has = |line: &str| cfg.iter().any(|l| l == line);
        for l in present {
            assert!(has(l), "no {l:?} in\n{}", cfg.join("\n"));
        }
        for l in absent {
            assert!(!has(l), "{l:?} in\n{}", cfg.join("\n"));
        }
    }

    /// Runs `kamailio -c` on the configuration when Kamailio (and, for a
    /// TLS listener, its tls module) is installed.
    fn kamailio_accepts(files: &Files, needs_tls_module: bool) {
        if !crate::privilege::have_program("kamailio") {
            eprintln!("kamailio not installed; not checking the configuration with it");
            return;
        }
        let tls_module = [
            "/usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so",
            "/usr/lib/aarch64-linux-gnu/kamailio/modules/tls.so",
            "/usr/lib/kamailio/modules/tls.so",
        ]
        .iter()
        .any(|p| Path::new(p).exists());
        if needs_tls_module && !tls_module {
            eprintln!("Kamailio's tls module not installed; not checking the configuration");
            return;
        }
        let out = std::process::Command::new("kamailio")
            .arg("-c")
            .arg("-f")
            .arg(&files.cfg)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kamailio -c refused {}:\n{}",
            files.cfg.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn the_stream_bench_config_listens_on_udp_tcp_and_tls_and_forwards_to_its_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let spec = stream_spec(dir.path());
        let files = write(dir.path(), &spec).unwrap();
        assert_lines(
            &lines(&files),
            &[
                "listen=udp:198.18.0.1:5060",
                "listen=tcp:198.18.0.1:5060",
                "listen=tls:198.18.0.1:5061",
                "enable_tls=yes",
                "tcp_children=2",
                "loadmodule \"tls.so\"",
                "    $du = \"sip:198.18.2.1:5060;transport=udp\";",
            ],
            &[
                "disable_tcp=yes",
                "loadmodule \"pike.so\"",
                "loadmodule \"sanity.so\"",
                "loadmodule \"mtree.so\"",
            ],
        );
        let tls = std::fs::read_to_string(dir.path().join("tls.cfg")).unwrap();
        assert!(tls.contains(&format!(
            "private_key = {}",
            dir.path().join("edge.key").display()
        )));
        assert_eq!(files.prefixes, 0);
        kamailio_accepts(&files, true);
    }

    #[test]
    fn the_udp_bench_config_checks_like_the_edge_and_routes_by_the_edges_route_files() {
        let dir = tempfile::tempdir().unwrap();
        let (groups, prefixes) = route_files(dir.path());
        let spec = Spec {
            about: "edge_vs_kamailio",
            children: 2,
            listen: vec![(Transport::Udp, "198.18.0.1:5060".parse().unwrap())],
            tls: None,
            scanners: true,
            pike_density: Some(2_000_000),
            sanity: true,
            routes: Routes::Files {
                groups: &groups,
                prefixes: &prefixes,
            },
        };
        let files = write(dir.path(), &spec).unwrap();
        let cfg = lines(&files);
        assert_lines(
            &cfg,
            &[
                "listen=udp:198.18.0.1:5060",
                "disable_tcp=yes",
                "loadmodule \"pike.so\"",
                "loadmodule \"sanity.so\"",
                "loadmodule \"mtree.so\"",
                "modparam(\"pike\", \"reqs_density_per_unit\", 2000000)",
                "    if (!sanity_check()) {",
                "        route(GROUP0);",
                "    sl_send_reply(\"302\", \"Moved Temporarily\");",
                "    sl_send_reply(\"403\", \"Forbidden\");",
            ],
            &["enable_tls=yes", "loadmodule \"tls.so\"", "tcp_children=2"],
        );
        assert!(cfg.iter().any(|l| l.starts_with("    if ($ua =~ \"^(")));
        assert_eq!(files.prefixes, 3);
        let rows = std::fs::read_to_string(dir.path().join("db").join(TABLE)).unwrap();
        assert!(rows.contains(":routes:44:uk\n"), "{rows}");
        kamailio_accepts(&files, false);
    }

    #[test]
    fn a_tls_listener_without_a_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = stream_spec(dir.path());
        spec.tls = None;
        let e = write(dir.path(), &spec).unwrap_err();
        assert!(e.to_string().contains("TLS listener"), "{e}");
    }
}
