//! The Rust mirror of `ebpf/include/dce_filter.h`: every type and constant
//! the XDP program shares with userspace, with the same layout.
//!
//! The test at the bottom reads the compiled object's BTF and checks the size
//! and every field offset of each struct against its mirror here, so the two
//! cannot drift apart silently.

/// Most SIP ports the filter watches.
pub const MAX_SIP_PORTS: usize = 8;
/// Entries in the `signatures` map.
pub const MAX_SIGNATURES: usize = 32;
/// Longest scanner signature, in bytes.
pub const SIGNATURE_MAX_LEN: usize = 32;
/// 8-byte words of one signature.
pub const SIGNATURE_WORDS: usize = 4;
/// Bytes of a message the header scan looks at.
pub const SCAN_BYTES: usize = 1024;
/// Deepest IPv6 extension-header chain the program walks.
pub const MAX_IPV6_EXT_HEADERS: usize = 8;
/// Entries in the XSKMAP (one per RX queue).
pub const MAX_XSK_QUEUES: u32 = 256;
/// Entries in each allow/block/ban trie.
pub const LPM_ENTRIES: usize = 65536;
/// Entries in the per-source rate-limit map.
pub const BUCKET_ENTRIES: usize = 262_144;
/// Entries in the top-sources map.
pub const TOP_SOURCE_ENTRIES: usize = 8192;
/// Entries in the map of verified sources.
pub const VERIFIED_ENTRIES: usize = 65536;

/// Counter slots (`enum dce_counter`): drops, then verdicts, then events.
pub mod slot {
    /// Dropped: source in the blocklist.
    pub const DROP_BLOCKLIST: usize = 0;
    /// Dropped: source banned.
    pub const DROP_BANNED: usize = 1;
    /// Dropped: first fragment to a SIP port.
    pub const DROP_FRAGMENT: usize = 2;
    /// Dropped: payload on a SIP port does not start like SIP.
    pub const DROP_NOT_SIP: usize = 3;
    /// Dropped: scanner signature.
    pub const DROP_SCANNER: usize = 4;
    /// Dropped: per-source budget exceeded.
    pub const DROP_RATE_LIMIT: usize = 5;
    /// Dropped: per-CPU cap on packets to userspace reached.
    pub const DROP_OVERLOAD: usize = 6;
    /// Dropped: IP/UDP lengths inconsistent, or IPv6 chain too deep.
    pub const DROP_MALFORMED: usize = 7;
    /// Dropped: source neither allowlisted nor verified, and this CPU's
    /// budget for such sources spent.
    pub const DROP_UNVERIFIED: usize = 8;
    /// SIP passed to the kernel stack.
    pub const PASSED: usize = 9;
    /// SIP redirected to an AF_XDP socket.
    pub const REDIRECTED: usize = 10;
    /// Not UDP to a SIP port: passed untouched.
    pub const PASSED_OTHER: usize = 11;
    /// Event: a first fragment passed by policy.
    pub const EV_FRAGMENT_PASSED: usize = 12;
    /// Event: a SIP packet from an allowlisted source.
    pub const EV_ALLOWLISTED: usize = 13;
    /// Event: the program banned a scanner.
    pub const EV_AUTO_BAN: usize = 14;
    /// Event: the ban trie refused an auto-ban.
    pub const EV_AUTO_BAN_FAILED: usize = 15;
    /// Event: a packet hit an expired ban (which no longer applies).
    pub const EV_BAN_EXPIRED: usize = 16;
    /// Event: a SIP packet from a verified source (unexpired, not allowlisted).
    pub const EV_VERIFIED: usize = 17;
    /// Number of slots.
    pub const SLOTS: usize = 18;
    /// Number of drop reasons (slots `0..DROP_REASONS`).
    pub const DROP_REASONS: usize = 9;
    /// Slots that are verdicts: each packet moves exactly one of `0..VERDICT_SLOTS`.
    pub const VERDICT_SLOTS: usize = 12;
}

/// `enum dce_ban_reason` values.
pub mod ban_reason {
    /// An operator banned the source.
    pub const MANUAL: u32 = 1;
    /// The XDP program saw a scanner signature.
    pub const SCANNER: u32 = 2;
    /// The appliance saw a 404 storm.
    pub const NOT_FOUND: u32 = 3;
    /// The appliance saw a 401/403 storm.
    pub const AUTH_FAILURE: u32 = 4;
    /// The appliance saw an extension scan.
    pub const EXTENSION_SCAN: u32 = 5;
    /// The appliance saw a flood.
    pub const FLOOD: u32 = 6;
}

/// Rate-limit class of an INVITE.
pub const CLASS_INVITE: usize = 0;
/// Rate-limit class of a REGISTER.
pub const CLASS_REGISTER: usize = 1;
/// Rate-limit class of every other message, responses included.
pub const CLASS_OTHER: usize = 2;
/// Slots of class-indexed arrays (the last unused; see the header).
pub const CLASS_SLOTS: usize = 4;

/// `dce_config.flags`: pass first fragments to SIP ports.
pub const CFG_FRAGMENTS_PASS: u32 = 1 << 0;
/// `dce_config.flags`: ban sources that match a scanner signature.
pub const CFG_AUTO_BAN: u32 = 1 << 1;
/// `dce_config.flags`: redirect good SIP to the XSKMAP.
pub const CFG_REDIRECT: u32 = 1 << 2;

/// `dce_signature.kinds`: applies to User-Agent values.
pub const SIG_USER_AGENT: u8 = 1 << 0;
/// `dce_signature.kinds`: applies to From display names.
pub const SIG_FROM_NAME: u8 = 1 << 1;

/// `dce_info.attach_mode`: loaded, not attached.
pub const ATTACH_NONE: u32 = 0;
/// `dce_info.attach_mode`: native (driver) XDP.
pub const ATTACH_NATIVE: u32 = 1;
/// `dce_info.attach_mode`: generic (SKB) XDP.
pub const ATTACH_GENERIC: u32 = 2;

/// `struct dce_rate`: a GCRA budget.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rate {
    /// Nanoseconds per admitted packet (1e9 / rate).
    pub interval_ns: u64,
    /// How far ahead of now the arrival time may run ((burst - 1) * interval).
    pub tolerance_ns: u64,
}

/// `struct dce_config`: the one entry of map `config`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Config {
    /// SIP ports, host byte order; the first `n_sip_ports` count.
    pub sip_ports: [u16; MAX_SIP_PORTS],
    /// Number of ports in use (0: nothing is SIP).
    pub n_sip_ports: u32,
    /// `CFG_*` bits.
    pub flags: u32,
    /// Auto-ban duration.
    pub ban_ttl_ns: u64,
    /// Budgets per class (`CLASS_*`).
    pub rates: [Rate; CLASS_SLOTS],
    /// Packets to userspace per second per CPU.
    pub overload_cap: u64,
    /// Per CPU: the GCRA budget of packets to userspace from sources
    /// neither allowlisted nor verified.
    pub unverified: Rate,
    /// Per kind (0 User-Agent, 1 From name), the set of signature first
    /// bytes `| 0x20`, as a 256-bit map.
    pub sig_first: [[u64; 4]; 2],
}

/// `struct dce_signature`: one entry of map `signatures`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Signature {
    /// Length in bytes; 0 ends the list.
    pub len: u8,
    /// `SIG_*` bits.
    pub kinds: u8,
    /// Padding.
    pub _pad: [u8; 6],
    /// The signature in lower case, as little-endian words.
    pub word: [u64; SIGNATURE_WORDS],
    /// 0xff for each of its bytes.
    pub mask: [u64; SIGNATURE_WORDS],
    /// 0x20 at its letters (either case matches).
    pub fold: [u64; SIGNATURE_WORDS],
}

/// `struct dce_counters`: one CPU's counters.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Indexed by the `slot` constants.
    pub slot: [u64; slot::SLOTS],
}

/// `struct dce_lpm_v4`: an IPv4 trie key.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LpmV4 {
    /// Bits of `addr` that count.
    pub prefixlen: u32,
    /// Network byte order.
    pub addr: [u8; 4],
}

/// `struct dce_lpm_v6`: an IPv6 trie key.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LpmV6 {
    /// Bits of `addr` that count.
    pub prefixlen: u32,
    /// Network byte order.
    pub addr: [u8; 16],
}

/// `struct dce_source`: a source as rate limits and top sources key it
/// (IPv4-mapped IPv4, or an IPv6 /64).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Source {
    /// Network byte order.
    pub addr: [u8; 16],
}

/// `struct dce_ban`: value of the ban tries.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ban {
    /// CLOCK_MONOTONIC nanoseconds; `u64::MAX` never expires.
    pub expires_ns: u64,
    /// CLOCK_MONOTONIC nanoseconds when banned.
    pub banned_ns: u64,
    /// A `ban_reason` value.
    pub reason: u32,
    /// Prefix length of the entry's own key.
    pub prefixlen: u32,
    /// Operator's text, NUL-padded.
    pub note: [u8; 32],
}

/// `struct dce_list_entry`: value of the allow/block tries.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListEntry {
    /// Always 1.
    pub present: u32,
}

/// `struct dce_bucket`: per-source GCRA state.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Theoretical arrival time per class.
    pub tat: [u64; CLASS_SLOTS],
}

/// `struct dce_top_source`: drops tallied for one source.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopSource {
    /// Packets dropped.
    pub drops: u64,
    /// CLOCK_MONOTONIC nanoseconds of the last drop.
    pub last_ns: u64,
    /// The last drop's slot (`slot::DROP_*`).
    pub last_reason: u32,
    /// Padding.
    pub _pad: u32,
}

/// `struct dce_verified`: value of the `verified` map.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verified {
    /// CLOCK_MONOTONIC nanoseconds when the verification lapses.
    pub expires_ns: u64,
    /// CLOCK_MONOTONIC nanoseconds of the latest verification.
    pub verified_ns: u64,
}

/// `struct dce_overload`: one CPU's budgets.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overload {
    /// Start of the emergency cap's current one-second window.
    pub window_start_ns: u64,
    /// Packets to userspace in it.
    pub count: u64,
    /// GCRA state (theoretical arrival time) of the unverified budget.
    pub unverified_tat: u64,
}

/// `struct dce_info`: what a second process needs to know about the running filter.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Info {
    /// `ATTACH_*`.
    pub attach_mode: u32,
    /// 1 when auto mode fell back to generic.
    pub fell_back: u32,
    /// The process that attached the program.
    pub owner_pid: u32,
    /// Interface index.
    pub ifindex: u32,
    /// CLOCK_MONOTONIC nanoseconds at load.
    pub loaded_ns: u64,
    /// 0 for pass mode, `CFG_REDIRECT` for redirect mode.
    pub verdict_mode: u32,
    /// Padding.
    pub _pad: u32,
}

// SAFETY: each type is #[repr(C)], made only of integers and arrays of
// integers with explicit padding fields, so every bit pattern is a valid
// value and there are no uninitialised padding bytes for the kernel to read.
#[allow(unsafe_code)]
mod pod {
    use super::*;
    unsafe impl aya::Pod for Rate {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for Signature {}
    unsafe impl aya::Pod for Counters {}
    unsafe impl aya::Pod for LpmV4 {}
    unsafe impl aya::Pod for LpmV6 {}
    unsafe impl aya::Pod for Source {}
    unsafe impl aya::Pod for Ban {}
    unsafe impl aya::Pod for ListEntry {}
    unsafe impl aya::Pod for Bucket {}
    unsafe impl aya::Pod for TopSource {}
    unsafe impl aya::Pod for Overload {}
    unsafe impl aya::Pod for Verified {}
    unsafe impl aya::Pod for Info {}
}

#[cfg(test)]
mod tests {
    //! Proves the mirror matches the header, from the compiled object's BTF.
    use super::*;
    use std::collections::HashMap;
    use std::mem::{offset_of, size_of};

    /// Struct layouts (size, member name -> byte offset) read from BTF.
    fn btf_structs() -> HashMap<String, (u32, HashMap<String, u32>)> {
        use object::{Object, ObjectSection};
        let file = object::File::parse(crate::OBJECT).expect("the embedded object is ELF");
        let btf = file
            .section_by_name(".BTF")
            .expect("the object carries BTF (built with -g)")
            .data()
            .expect("BTF section readable");
        parse_btf_structs(btf)
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    /// A minimal reader of the BTF format (linux/btf.h): header, then type
    /// records, then strings; keeps struct sizes and member offsets.
    fn parse_btf_structs(btf: &[u8]) -> HashMap<String, (u32, HashMap<String, u32>)> {
        assert_eq!(u16::from_le_bytes([btf[0], btf[1]]), 0xeb9f, "BTF magic");
        let hdr_len = u32_at(btf, 4) as usize;
        let (type_off, type_len) = (u32_at(btf, 8) as usize, u32_at(btf, 12) as usize);
        let str_off = u32_at(btf, 16) as usize;
        let types = &btf[hdr_len + type_off..hdr_len + type_off + type_len];
        let strings = &btf[hdr_len + str_off..];
        let name = |off: u32| {
            let s = &strings[off as usize..];
            let end = s.iter().position(|&c| c == 0).unwrap();
            String::from_utf8_lossy(&s[..end]).into_owned()
        };
        let mut out = HashMap::new();
        let mut at = 0;
        while at < types.len() {
            let name_off = u32_at(types, at);
            let info = u32_at(types, at + 4);
            let size_or_type = u32_at(types, at + 8);
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31;
            at += 12;
            // Extra bytes per kind: BTF_KIND_INT 4, ARRAY 12, STRUCT/UNION 12
            // per member, ENUM 8 per value, FUNC_PROTO 8 per param, VAR 4,
            // DATASEC 12 per var, DECL_TAG 4, ENUM64 12 per value.
            match kind {
                4 | 5 => {
                    let mut members = HashMap::new();
                    for m in 0..vlen {
                        let base = at + m * 12;
                        let bits = u32_at(types, base + 8);
                        let bit_off = if kind_flag == 1 {
                            bits & 0xff_ffff
                        } else {
                            bits
                        };
                        members.insert(name(u32_at(types, base)), bit_off / 8);
                    }
                    if kind == 4 && name_off != 0 {
                        out.insert(name(name_off), (size_or_type, members));
                    }
                    at += vlen * 12;
                }
                1 | 14 | 17 => at += 4,
                3 => at += 12,
                6 | 13 => at += vlen * 8,
                15 | 19 => at += vlen * 12,
                _ => {}
            }
        }
        out
    }

    macro_rules! check_layout {
        ($structs:expr, $c_name:literal, $ty:ty, [$($field:ident),* $(,)?]) => {{
            let (size, members) = $structs
                .get($c_name)
                .unwrap_or_else(|| panic!("struct {} not in the object's BTF", $c_name));
            assert_eq!(*size as usize, size_of::<$ty>(), "size of struct {}", $c_name);
            let mirrored = [$(stringify!($field)),*];
            assert_eq!(
                members.len(), mirrored.len(),
                "struct {} has fields {:?}, the mirror {:?}", $c_name, members, mirrored
            );
            $(
                assert_eq!(
                    members.get(stringify!($field)).copied(),
                    Some(offset_of!($ty, $field) as u32),
                    "offset of {}.{}", $c_name, stringify!($field)
                );
            )*
        }};
    }

    #[test]
    fn every_shared_struct_matches_the_header() {
        let s = btf_structs();
        check_layout!(s, "dce_rate", Rate, [interval_ns, tolerance_ns]);
        check_layout!(
            s,
            "dce_config",
            Config,
            [
                sip_ports,
                n_sip_ports,
                flags,
                ban_ttl_ns,
                rates,
                overload_cap,
                unverified,
                sig_first
            ]
        );
        check_layout!(
            s,
            "dce_signature",
            Signature,
            [len, kinds, _pad, word, mask, fold]
        );
        check_layout!(s, "dce_counters", Counters, [slot]);
        check_layout!(s, "dce_lpm_v4", LpmV4, [prefixlen, addr]);
        check_layout!(s, "dce_lpm_v6", LpmV6, [prefixlen, addr]);
        check_layout!(s, "dce_source", Source, [addr]);
        check_layout!(
            s,
            "dce_ban",
            Ban,
            [expires_ns, banned_ns, reason, prefixlen, note]
        );
        check_layout!(s, "dce_list_entry", ListEntry, [present]);
        check_layout!(s, "dce_bucket", Bucket, [tat]);
        check_layout!(
            s,
            "dce_top_source",
            TopSource,
            [drops, last_ns, last_reason, _pad]
        );
        check_layout!(
            s,
            "dce_overload",
            Overload,
            [window_start_ns, count, unverified_tat]
        );
        check_layout!(s, "dce_verified", Verified, [expires_ns, verified_ns]);
        check_layout!(
            s,
            "dce_info",
            Info,
            [
                attach_mode,
                fell_back,
                owner_pid,
                ifindex,
                loaded_ns,
                verdict_mode,
                _pad
            ]
        );
    }

    /// `NAME = value` (enum members) and `#define NAME value` lines of the header.
    fn header_constants() -> HashMap<String, i64> {
        let header = include_str!("../ebpf/include/dce_filter.h");
        let mut out = HashMap::new();
        for line in header.lines() {
            let line = line.split("/*").next().unwrap().trim();
            let (name, value) = if let Some(rest) = line.strip_prefix("#define ") {
                let rest = rest.trim();
                rest.split_once(char::is_whitespace)
                    .map(|(n, v)| (n, v.trim()))
                    .unwrap_or((rest, ""))
            } else if let Some((n, v)) = line.split_once(" = ") {
                (n.trim(), v.trim_end_matches(','))
            } else {
                continue;
            };
            let value = value.trim_start_matches('(').trim_end_matches(')');
            let parsed = if let Some(shift) = value.strip_prefix("1u << ") {
                shift.parse::<u32>().ok().map(|s| 1i64 << s)
            } else {
                value.trim_end_matches('u').parse::<i64>().ok()
            };
            if let Some(v) = parsed {
                out.insert(name.to_string(), v);
            }
        }
        out
    }

    #[test]
    fn every_shared_constant_matches_the_header() {
        let values = header_constants();
        let expect: &[(&str, i64)] = &[
            ("DCE_MAX_SIP_PORTS", MAX_SIP_PORTS as i64),
            ("DCE_MAX_SIGNATURES", MAX_SIGNATURES as i64),
            ("DCE_SIGNATURE_MAX_LEN", SIGNATURE_MAX_LEN as i64),
            ("DCE_SIGNATURE_WORDS", SIGNATURE_WORDS as i64),
            ("DCE_SCAN_BYTES", SCAN_BYTES as i64),
            ("DCE_MAX_IPV6_EXT_HEADERS", MAX_IPV6_EXT_HEADERS as i64),
            ("DCE_MAX_XSK_QUEUES", MAX_XSK_QUEUES as i64),
            ("DCE_LPM_ENTRIES", LPM_ENTRIES as i64),
            ("DCE_BUCKET_ENTRIES", BUCKET_ENTRIES as i64),
            ("DCE_TOP_SOURCE_ENTRIES", TOP_SOURCE_ENTRIES as i64),
            ("DCE_VERIFIED_ENTRIES", VERIFIED_ENTRIES as i64),
            ("DCE_DROP_BLOCKLIST", slot::DROP_BLOCKLIST as i64),
            ("DCE_DROP_BANNED", slot::DROP_BANNED as i64),
            ("DCE_DROP_FRAGMENT", slot::DROP_FRAGMENT as i64),
            ("DCE_DROP_NOT_SIP", slot::DROP_NOT_SIP as i64),
            ("DCE_DROP_SCANNER", slot::DROP_SCANNER as i64),
            ("DCE_DROP_RATE_LIMIT", slot::DROP_RATE_LIMIT as i64),
            ("DCE_DROP_OVERLOAD", slot::DROP_OVERLOAD as i64),
            ("DCE_DROP_MALFORMED", slot::DROP_MALFORMED as i64),
            ("DCE_DROP_UNVERIFIED", slot::DROP_UNVERIFIED as i64),
            ("DCE_PASSED", slot::PASSED as i64),
            ("DCE_REDIRECTED", slot::REDIRECTED as i64),
            ("DCE_PASSED_OTHER", slot::PASSED_OTHER as i64),
            ("DCE_EV_FRAGMENT_PASSED", slot::EV_FRAGMENT_PASSED as i64),
            ("DCE_EV_ALLOWLISTED", slot::EV_ALLOWLISTED as i64),
            ("DCE_EV_AUTO_BAN", slot::EV_AUTO_BAN as i64),
            ("DCE_EV_AUTO_BAN_FAILED", slot::EV_AUTO_BAN_FAILED as i64),
            ("DCE_EV_BAN_EXPIRED", slot::EV_BAN_EXPIRED as i64),
            ("DCE_EV_VERIFIED", slot::EV_VERIFIED as i64),
            ("DCE_COUNTER_SLOTS", slot::SLOTS as i64),
            ("DCE_DROP_REASONS", slot::DROP_REASONS as i64),
            ("DCE_VERDICT_SLOTS", slot::VERDICT_SLOTS as i64),
            ("DCE_BAN_MANUAL", ban_reason::MANUAL as i64),
            ("DCE_BAN_SCANNER", ban_reason::SCANNER as i64),
            ("DCE_BAN_NOT_FOUND", ban_reason::NOT_FOUND as i64),
            ("DCE_BAN_AUTH_FAILURE", ban_reason::AUTH_FAILURE as i64),
            ("DCE_BAN_EXTENSION_SCAN", ban_reason::EXTENSION_SCAN as i64),
            ("DCE_BAN_FLOOD", ban_reason::FLOOD as i64),
            ("DCE_CLASS_INVITE", CLASS_INVITE as i64),
            ("DCE_CLASS_REGISTER", CLASS_REGISTER as i64),
            ("DCE_CLASS_OTHER", CLASS_OTHER as i64),
            ("DCE_CLASS_SLOTS", CLASS_SLOTS as i64),
            ("DCE_CFG_FRAGMENTS_PASS", CFG_FRAGMENTS_PASS as i64),
            ("DCE_CFG_AUTO_BAN", CFG_AUTO_BAN as i64),
            ("DCE_CFG_REDIRECT", CFG_REDIRECT as i64),
            ("DCE_SIG_USER_AGENT", SIG_USER_AGENT as i64),
            ("DCE_SIG_FROM_NAME", SIG_FROM_NAME as i64),
            ("DCE_ATTACH_NONE", ATTACH_NONE as i64),
            ("DCE_ATTACH_NATIVE", ATTACH_NATIVE as i64),
            ("DCE_ATTACH_GENERIC", ATTACH_GENERIC as i64),
        ];
        for (name, value) in expect {
            assert_eq!(values.get(*name), Some(value), "constant {name}");
        }
    }
}
