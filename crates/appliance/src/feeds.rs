//! Blocklist feeds (`dce-edge ban --import FILE`): plain lists of addresses
//! and networks (one per line, `#` and `;` comments, as Spamhaus DROP and
//! most feeds write them) and the APIBan JSON format (`{"ipaddress": [...],
//! "ID": "..."}`, one or several batches in a file). Parsing keeps every
//! entry's line so what is refused can be shown; applying reports what fit,
//! what was skipped and why.
//!
//! A feed is data from outside: it must not be able to ban everyone (a
//! `0.0.0.0/0` in it is refused as too wide), nor the networks this edge
//! trusts (entries inside or covering an allowlist entry, which holds the
//! route table's upstreams, are skipped and reported), nor exhaust the
//! operator's ban map silently (what does not fit is listed). A feed with
//! an entry that is not a network a feed may ban is refused whole by
//! `dce-edge ban --import`, each such entry named with its line, so that a
//! truncated or garbled download bans nothing and the running bans stay.
//! Emergency calls pass the bans a feed makes as they pass any operator's
//! (unless `emergency_keep_bans`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use xdp::config::Cidr;
use xdp::maps::{BanReason, FilterMaps};
use xdp::FilterError;

/// The widest network a feed may ban: an IPv4 /8.
pub const WIDEST_BAN_V4: u8 = 8;
/// The widest IPv6 network a feed may ban: a /16.
pub const WIDEST_BAN_V6: u8 = 16;

/// Operator bans per address family that feeds leave free for the
/// operator's own bans: an import stops at [`FEED_ROOM`] bans of a family
/// (counting those already there), so a feed never locks the operator out.
pub const OPERATOR_RESERVE: usize = 4096;

/// How many operator bans of one family feeds may fill the map up to.
pub const FEED_ROOM: usize = xdp::abi::LPM_ENTRIES - OPERATOR_RESERVE;

/// Operator bans in the tries, per family, as an import counts them: read
/// at an import's first batch and carried over its next ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Room {
    /// IPv4 operator bans.
    pub v4: usize,
    /// IPv6 operator bans.
    pub v6: usize,
}

impl Room {
    /// Counts the operator bans in the tries (one system call per ban).
    pub fn read(maps: &FilterMaps) -> Result<Room, FilterError> {
        let (v4, v6) = maps.operator_ban_counts()?;
        Ok(Room { v4, v6 })
    }

    fn of(&mut self, c: &Cidr) -> &mut usize {
        if c.addr.is_ipv4() {
            &mut self.v4
        } else {
            &mut self.v6
        }
    }
}

/// How many refused entries of a feed are named before "... and N more".
pub const SHOWN_REFUSED: usize = 20;

/// The largest feed file read.
pub const MAX_FEED_BYTES: u64 = 64 << 20;

/// Bytes of networks sent to the appliance per control request (each
/// request is one line of at most 16 KiB).
pub const BATCH_BYTES: usize = 12 * 1024;

/// Cuts `networks` into batches of at most [`BATCH_BYTES`] of text each.
pub fn batches(networks: &[Cidr]) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut bytes = 0;
    for c in networks {
        let text = c.to_string();
        if out.is_empty() || bytes + text.len() + 3 > BATCH_BYTES {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += text.len() + 3;
        out.last_mut().expect("pushed").push(text);
    }
    out
}

/// The formats `--format` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FeedFormat {
    /// JSON when the file starts with `{` or `[`, else a plain list.
    #[default]
    Auto,
    /// One address or network per line.
    Plain,
    /// APIBan's JSON: `{"ipaddress": [...], "ID": "..."}` batches.
    Apiban,
}

impl std::str::FromStr for FeedFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(FeedFormat::Auto),
            "plain" | "cidr" => Ok(FeedFormat::Plain),
            "apiban" => Ok(FeedFormat::Apiban),
            _ => Err(format!("feed format {s:?}: expected auto, plain or apiban")),
        }
    }
}

/// An entry of a feed that is not a network to ban, with where it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// 1-based line (plain lists) or entry number (APIBan).
    pub at: usize,
    /// The text as written (cut to 64 bytes).
    pub text: String,
    /// Why it is not banned.
    pub reason: String,
}

/// A feed, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Feed {
    /// Networks to ban, in file order, without repeats.
    pub networks: Vec<Cidr>,
    /// Entries that are not networks to ban.
    pub rejected: Vec<Rejected>,
    /// Entries that repeat an earlier one.
    pub repeats: usize,
    /// APIBan batches that said "no new bans".
    pub empty_batches: usize,
}

fn cut(text: &str) -> String {
    let mut end = text.len().min(64);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// Why `c` may not come from a feed, if it may not.
pub fn too_wide(c: &Cidr) -> Option<String> {
    let widest = if c.addr.is_ipv4() {
        WIDEST_BAN_V4
    } else {
        WIDEST_BAN_V6
    };
    (c.prefix < widest).then(|| {
        format!(
            "/{} is wider than a feed may ban (/{widest} at most)",
            c.prefix
        )
    })
}

impl Feed {
    /// Refuses the whole feed when any entry is not a network a feed may
    /// ban (a truncated download, an error page, a `0.0.0.0/0`): one line
    /// per entry, `FILE:LINE: "TEXT": REASON` (the first [`SHOWN_REFUSED`]),
    /// then what that means.
    pub fn check(&self, file: &str) -> Result<(), String> {
        if self.rejected.is_empty() {
            return Ok(());
        }
        let mut s = String::new();
        for r in self.rejected.iter().take(SHOWN_REFUSED) {
            s.push_str(&format!("{file}:{}: {:?}: {}\n", r.at, r.text, r.reason));
        }
        if self.rejected.len() > SHOWN_REFUSED {
            s.push_str(&format!(
                "... and {} more\n",
                self.rejected.len() - SHOWN_REFUSED
            ));
        }
        s.push_str(&format!(
            "{file}: refused: {} of its entries are not networks a feed may ban; nothing was \
             banned and the bans in force stay (fix the feed and import it again)",
            self.rejected.len()
        ));
        Err(s)
    }

    fn add(&mut self, seen: &mut std::collections::HashSet<Cidr>, at: usize, text: &str) {
        match text.parse::<Cidr>() {
            Ok(c) => {
                if let Some(why) = too_wide(&c) {
                    self.rejected.push(Rejected {
                        at,
                        text: cut(text),
                        reason: why,
                    });
                } else if seen.insert(c) {
                    self.networks.push(c);
                } else {
                    self.repeats += 1;
                }
            }
            Err(e) => self.rejected.push(Rejected {
                at,
                text: cut(text),
                reason: e,
            }),
        }
    }
}

/// Parses a feed's text.
pub fn parse_feed(text: &str, format: FeedFormat) -> Result<Feed, String> {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    let json = match format {
        FeedFormat::Auto => trimmed.starts_with('{') || trimmed.starts_with('['),
        FeedFormat::Plain => false,
        FeedFormat::Apiban => true,
    };
    let mut feed = Feed::default();
    let mut seen = std::collections::HashSet::new();
    if !json {
        for (i, line) in text.lines().enumerate() {
            // "1.2.3.0/24 ; SBL123", "1.2.3.4 # note", "# header"
            let entry = line
                .split(['#', ';'])
                .next()
                .unwrap_or("")
                .trim()
                .trim_start_matches('\u{feff}');
            if entry.is_empty() {
                continue;
            }
            // Some lists put more on the line after the network.
            let first = entry.split_whitespace().next().unwrap_or(entry);
            feed.add(&mut seen, i + 1, first);
        }
        return Ok(feed);
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Addresses {
        List(Vec<serde_json::Value>),
        Word(String),
    }
    #[derive(Deserialize)]
    struct Batch {
        ipaddress: Addresses,
    }
    let mut entry = 0usize;
    let mut batches = Vec::new();
    for value in serde_json::Deserializer::from_str(trimmed).into_iter::<serde_json::Value>() {
        let value = value.map_err(|e| format!("not APIBan JSON: {e}"))?;
        match value {
            serde_json::Value::Array(items) => batches.extend(items),
            other => batches.push(other),
        }
    }
    for b in batches {
        let batch: Batch = serde_json::from_value(b).map_err(|e| {
            format!("not an APIBan batch ({{\"ipaddress\": [...], \"ID\": ...}}): {e}")
        })?;
        match batch.ipaddress {
            Addresses::Word(w) => {
                entry += 1;
                feed.rejected.push(Rejected {
                    at: entry,
                    text: cut(&w),
                    reason: "the feed's answer, not an address".into(),
                });
            }
            Addresses::List(list) => {
                for v in list {
                    entry += 1;
                    match v.as_str() {
                        Some("no new bans") => feed.empty_batches += 1,
                        Some(s) => feed.add(&mut seen, entry, s.trim()),
                        None => feed.rejected.push(Rejected {
                            at: entry,
                            text: cut(&v.to_string()),
                            reason: "not a string".into(),
                        }),
                    }
                }
            }
        }
    }
    Ok(feed)
}

/// What applying a batch of bans did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// Networks banned (or whose ban was renewed).
    pub banned: usize,
    /// Networks inside or covering an allowlist entry: not banned.
    pub allowlisted: Vec<String>,
    /// Networks that did not fit: feeds filled the operator ban map as far
    /// as they may ([`FEED_ROOM`] per family).
    pub not_fitted: Vec<String>,
    /// Networks refused for another reason (too wide, a bad address).
    pub refused: Vec<Rejected>,
}

impl ImportReport {
    /// Adds another batch's report.
    pub fn merge(&mut self, other: ImportReport) {
        self.banned += other.banned;
        self.allowlisted.extend(other.allowlisted);
        self.not_fitted.extend(other.not_fitted);
        self.refused.extend(other.refused);
    }
}

/// Adds up the batches of one import, so that it is logged as one event.
#[derive(Debug, Default)]
pub struct ImportTally {
    pending: Option<Pending>,
}

#[derive(Debug)]
struct Pending {
    note: String,
    reason: String,
    seconds: Option<u64>,
    report: ImportReport,
    next: u32,
    total: u32,
    room: Room,
}

impl ImportTally {
    fn continues(&self, note: &str, part: Option<(u32, u32)>) -> bool {
        matches!(
            (&self.pending, part),
            (Some(p), Some((n, total))) if n == p.next && total == p.total && note == p.note
        )
    }

    /// The operator bans per family the batch `part` of the import `note`
    /// starts from: counted in `maps` at an import's first batch, carried
    /// over from the batch before otherwise (a full count per batch would
    /// cost an import of 50,000 networks seconds).
    pub fn room(
        &self,
        note: &str,
        part: Option<(u32, u32)>,
        maps: &FilterMaps,
    ) -> Result<Room, FilterError> {
        match &self.pending {
            Some(p) if self.continues(note, part) => Ok(p.room),
            _ => Room::read(maps),
        }
    }

    /// Takes one batch's report (`part`: its 1-based number and the count;
    /// `None`: a batch on its own) and returns the events to log: the whole
    /// import once its last batch is in, and an import left unfinished (its
    /// client gone) when another starts.
    pub fn add(
        &mut self,
        note: &str,
        reason: &str,
        seconds: Option<u64>,
        part: Option<(u32, u32)>,
        report: ImportReport,
        room: Room,
    ) -> Vec<crate::events::ControlEvent> {
        let mut out = Vec::new();
        let event = |p: Pending, complete| crate::events::ControlEvent::BansImported {
            note: p.note,
            reason: p.reason,
            seconds: p.seconds,
            report: p.report,
            complete,
        };
        if !self.continues(note, part) {
            if let Some(p) = self.pending.take() {
                out.push(event(p, false));
            }
        }
        let (n, total) = part.unwrap_or((1, 1));
        let mut p = self.pending.take().unwrap_or(Pending {
            note: note.to_string(),
            reason: reason.to_string(),
            seconds,
            report: ImportReport::default(),
            next: n,
            total,
            room,
        });
        p.report.merge(report);
        p.next = n + 1;
        p.room = room;
        if n >= total {
            out.push(event(p, true));
        } else {
            self.pending = Some(p);
        }
        out
    }
}

/// Whether `inner` lies wholly inside `outer`.
pub fn within(inner: &Cidr, outer: &Cidr) -> bool {
    inner.addr.is_ipv4() == outer.addr.is_ipv4()
        && outer.prefix <= inner.prefix
        && outer.contains(inner.addr)
}

/// Why a feed may not ban `c` given the `allowlist`, if it may not: `c`
/// lies inside an allowlisted network (a ban would do nothing) or covers
/// one (a feed must not ban the networks around the edge's upstreams and
/// trusted peers either: the operator bans those by hand if need be).
pub fn trusted(c: &Cidr, allowlist: &[Cidr]) -> Option<String> {
    allowlist.iter().find_map(|a| {
        if within(c, a) {
            Some(c.to_string())
        } else if within(a, c) {
            Some(format!("{c} (covers allowlisted {a})"))
        } else {
            None
        }
    })
}

/// One line for the operator: what an import did.
pub fn describe(report: &ImportReport) -> String {
    let mut s = format!("banned {}", report.banned);
    if !report.allowlisted.is_empty() {
        s.push_str(&format!(
            "; {} inside or covering the allowlist, not banned",
            report.allowlisted.len()
        ));
    }
    if !report.refused.is_empty() {
        s.push_str(&format!("; {} refused", report.refused.len()));
    }
    if !report.not_fitted.is_empty() {
        s.push_str(&format!(
            "; {} DID NOT FIT: feeds may fill the ban map up to {FEED_ROOM} per family",
            report.not_fitted.len()
        ));
    }
    s
}

/// Bans `networks` in the filter's operator ban maps, each for `ttl` with
/// `reason` and `note`, skipping those inside or covering an entry of
/// `allowlist` and stopping at nothing: what does not fit is listed, the
/// rest still goes in. A new ban that would take a family past
/// [`FEED_ROOM`] (`room` counts the bans there and is kept up to date) does
/// not fit; renewing a ban already there always does. Entries that do not
/// parse or are too wide are refused here too (a client other than
/// `dce-edge ban --import` may send them).
#[allow(clippy::too_many_arguments)]
pub fn ban_all(
    maps: &mut FilterMaps,
    networks: &[String],
    ttl: Option<Duration>,
    reason: BanReason,
    note: &str,
    allowlist: &[Cidr],
    room: &mut Room,
) -> Result<(ImportReport, Vec<Cidr>), FilterError> {
    let mut report = ImportReport::default();
    let mut made = Vec::new();
    for (i, text) in networks.iter().enumerate() {
        let c = match text.parse::<Cidr>() {
            Ok(c) => c,
            Err(e) => {
                report.refused.push(Rejected {
                    at: i + 1,
                    text: cut(text),
                    reason: e,
                });
                continue;
            }
        };
        if let Some(why) = too_wide(&c) {
            report.refused.push(Rejected {
                at: i + 1,
                text: cut(text),
                reason: why,
            });
            continue;
        }
        if let Some(what) = trusted(&c, allowlist) {
            report.allowlisted.push(what);
            continue;
        }
        let new = !maps.has_operator_ban(c)?;
        if new && *room.of(&c) >= FEED_ROOM {
            report.not_fitted.push(c.to_string());
            continue;
        }
        match maps.ban(c, ttl, reason, note) {
            Ok(()) => {
                report.banned += 1;
                made.push(c);
                if new {
                    *room.of(&c) += 1;
                }
            }
            Err(FilterError::Full { .. }) => report.not_fitted.push(c.to_string()),
            Err(e) => return Err(e),
        }
    }
    Ok((report, made))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_list_with_comments_repeats_and_junk_is_parsed_with_lines() {
        let text = "; Spamhaus DROP List\n1.10.16.0/20 ; SBL256894\n\n# a comment\n\
                    203.0.113.7\n203.0.113.7\n2001:db8::/32 extra words\nnot-an-ip\n\
                    0.0.0.0/0\n198.18.0.1/24\n";
        let f = parse_feed(text, FeedFormat::Auto).unwrap();
        let nets: Vec<String> = f.networks.iter().map(Cidr::to_string).collect();
        assert_eq!(nets, ["1.10.16.0/20", "203.0.113.7/32", "2001:db8::/32"]);
        assert_eq!(f.repeats, 1);
        let at: Vec<usize> = f.rejected.iter().map(|r| r.at).collect();
        assert_eq!(at, [8, 9, 10], "{:?}", f.rejected);
        assert!(f.rejected[1].reason.contains("wider"), "{:?}", f.rejected);
        assert!(
            f.rejected[2].reason.contains("host bits"),
            "{:?}",
            f.rejected
        );
        let refused = f.check("drop.txt").unwrap_err();
        assert!(
            refused.contains("drop.txt:8: \"not-an-ip\"")
                && refused.contains("drop.txt:9: \"0.0.0.0/0\": /0 is wider")
                && refused.contains("refused: 3 of its entries"),
            "{refused}"
        );
        let clean = parse_feed("203.0.113.0/24 ; SBL1\n", FeedFormat::Plain).unwrap();
        assert_eq!(clean.check("drop.txt"), Ok(()));
    }

    #[test]
    fn apiban_batches_are_read_one_after_another() {
        let text = r#"{"ipaddress":["1.2.3.4","1.2.3.5"],"ID":"987654321"}
{"ipaddress":["1.2.3.5","2001:db8::1", 7],"ID":"987654322"}
{"ipaddress":["no new bans"], "ID":"none"}"#;
        let f = parse_feed(text, FeedFormat::Auto).unwrap();
        assert_eq!(f.networks.len(), 3);
        assert_eq!(f.repeats, 1);
        assert_eq!(f.empty_batches, 1);
        assert_eq!(f.rejected.len(), 1, "{:?}", f.rejected);
        let f = parse_feed(
            r#"[{"ipaddress":["1.2.3.4"],"ID":"1"},{"ipaddress":"rate limit exceeded","ID":"unauthorized"}]"#,
            FeedFormat::Apiban,
        )
        .unwrap();
        assert_eq!(f.networks.len(), 1);
        assert!(
            f.rejected[0].text.contains("rate limit"),
            "{:?}",
            f.rejected
        );
        assert!(parse_feed("{\"ip\": 1}", FeedFormat::Auto).is_err());
    }

    #[test]
    fn batches_fit_a_control_request() {
        let nets: Vec<Cidr> = (0..5000u32)
            .map(|i| {
                format!("2001:db8:{:x}:{:x}::1/128", i >> 8, i & 0xff)
                    .parse()
                    .unwrap()
            })
            .collect();
        let b = batches(&nets);
        assert_eq!(b.iter().map(Vec::len).sum::<usize>(), 5000);
        for batch in &b {
            let request = crate::control::ControlRequest::BanMany {
                networks: batch.clone(),
                ttl_seconds: Some(u64::MAX),
                reason: "manual".into(),
                note: "x".repeat(32),
                part: Some((999, 999)),
            };
            let line = serde_json::to_string(&request).unwrap();
            assert!(
                (line.len() as u64) < crate::control::MAX_REQUEST,
                "{}",
                line.len()
            );
        }
    }

    #[test]
    fn an_import_in_batches_is_one_event_and_an_abandoned_one_is_logged_too() {
        let r = |n| ImportReport {
            banned: n,
            ..ImportReport::default()
        };
        let mut t = ImportTally::default();
        assert!(t
            .add("feed", "manual", None, Some((1, 3)), r(2), Room::default())
            .is_empty());
        assert!(t
            .add("feed", "manual", None, Some((2, 3)), r(3), Room::default())
            .is_empty());
        let done = t.add("feed", "manual", None, Some((3, 3)), r(4), Room::default());
        assert!(matches!(
            &done[..],
            [crate::events::ControlEvent::BansImported { report, complete: true, .. }] if report.banned == 9
        ));
        // A client that gave up after one batch of two, then a new import.
        assert!(t
            .add("a", "manual", None, Some((1, 2)), r(1), Room::default())
            .is_empty());
        let out = t.add("b", "manual", None, Some((1, 1)), r(5), Room::default());
        assert!(matches!(
            &out[..],
            [
                crate::events::ControlEvent::BansImported {
                    complete: false,
                    ..
                },
                crate::events::ControlEvent::BansImported { complete: true, .. }
            ]
        ));
    }

    #[test]
    fn a_feed_bans_neither_inside_nor_around_the_allowlist() {
        let c = |s: &str| s.parse::<Cidr>().unwrap();
        let allow = [c("198.18.0.7/32"), c("2001:db8:5::/48")];
        assert_eq!(
            trusted(&c("198.18.0.7/32"), &allow).as_deref(),
            Some("198.18.0.7/32")
        );
        assert!(trusted(&c("198.18.0.0/16"), &allow)
            .unwrap()
            .contains("covers allowlisted 198.18.0.7/32"));
        assert!(trusted(&c("2001:db8::/32"), &allow).is_some());
        assert!(trusted(&c("2001:db8:5:1::/64"), &allow).is_some());
        assert_eq!(trusted(&c("198.18.1.0/24"), &allow), None);
        assert_eq!(trusted(&c("2001:db8:6::/48"), &allow), None);
    }

    #[test]
    fn within_is_containment_of_the_whole_network() {
        let c = |s: &str| s.parse::<Cidr>().unwrap();
        assert!(within(&c("198.51.100.7/32"), &c("198.51.100.0/24")));
        assert!(!within(&c("198.51.0.0/16"), &c("198.51.100.0/24")));
        assert!(!within(&c("2001:db8::/32"), &c("198.51.100.0/24")));
    }
}
