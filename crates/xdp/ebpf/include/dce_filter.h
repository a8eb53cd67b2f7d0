/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Every type and constant the dce-edge XDP filter shares with userspace:
 * the one truth of the ABI. The Rust side (the `xdp::abi` module) is
 * generated from this file by crates/xdp/build.rs, and a test holds the
 * generated layouts against the compiled object's BTF.
 *
 * Conventions (the generator relies on them and refuses a line that breaks
 * them): fixed-width types only, explicit padding, no bitfields, every
 * struct a multiple of 8 bytes so that arrays of them have no hidden gaps;
 * one member per line, each with a trailing comment (it becomes the Rust
 * documentation); constants are integer literals or (1u << N).
 */
#ifndef DCE_FILTER_H
#define DCE_FILTER_H

#include <linux/types.h>

/* Limits. */
#define DCE_MAX_SIP_PORTS 8               /* most SIP ports the filter watches */
#define DCE_MAX_SIGNATURES 32             /* entries in the signatures map */
#define DCE_SIGNATURE_MAX_LEN 32          /* longest scanner signature, in bytes */
#define DCE_SIGNATURE_WORDS 4             /* 8-byte words of one signature (DCE_SIGNATURE_MAX_LEN / 8) */
#define DCE_SCAN_BYTES 1024               /* bytes of a message the bounded header scan looks at */
#define DCE_MAX_IPV6_EXT_HEADERS 8        /* deepest IPv6 extension-header chain walked; deeper is malformed */
#define DCE_MAX_XSK_QUEUES 256            /* entries in the XSKMAP (one per RX queue) */

/* Map sizes (max_entries). */
#define DCE_LPM_ENTRIES 65536             /* entries in each allow/block/ban trie */
#define DCE_BUCKET_ENTRIES 262144         /* entries of per-source rate-limit state (LRU) */
#define DCE_TOP_SOURCE_ENTRIES 8192       /* entries of the drop tally per source (LRU) */
#define DCE_VERIFIED_ENTRIES 65536        /* entries of sources shown to be real (LRU) */
#define DCE_AUTO_BAN_ENTRIES 65536        /* entries of automatic bans (hash by source: the program's and the appliance's) */
#define DCE_MAX_EMERGENCY_NUMBERS 16      /* entries in the emergency_numbers map */
#define DCE_EMERGENCY_NUMBER_MAX 15       /* longest emergency number, in digits */
#define DCE_EMERGENCY_SOURCE_ENTRIES 4096 /* entries of sources in an emergency call (LRU) */
#define DCE_SYN_BUCKET_ENTRIES 65536      /* entries of per-source SYN budget state (LRU, apart from buckets) */

/*
 * Counter slots in struct dce_counters. Slots 0..DCE_VERDICT_SLOTS-1 are
 * verdicts: every packet the program sees moves exactly one of them. The
 * slots after that are events, counted in addition to a verdict.
 */
enum dce_counter {
	/* drops, one reason each */
	DCE_DROP_BLOCKLIST = 0,           /* source in the static blocklist (UDP to a SIP port, or TCP to a SIP TCP port) */
	DCE_DROP_BANNED = 1,              /* source under an unexpired ban: an operator's (bans_v4/v6) or an automatic one (auto_bans); UDP or TCP */
	DCE_DROP_FRAGMENT = 2,            /* first fragment of a datagram (or of a TCP segment) to a SIP port */
	DCE_DROP_NOT_SIP = 3,             /* payload on a SIP port does not start like SIP */
	DCE_DROP_SCANNER = 4,             /* scanner User-Agent or From display name */
	DCE_DROP_RATE_LIMIT = 5,          /* source over its per-class budget */
	DCE_DROP_OVERLOAD = 6,            /* this CPU's cap on packets to userspace reached */
	DCE_DROP_MALFORMED = 7,           /* IP/UDP/TCP lengths inconsistent (a TCP data offset under 5 or past the segment), or an IPv6 chain too deep */
	DCE_DROP_UNVERIFIED = 8,          /* source neither allowlisted nor verified, this CPU's budget for such sources spent */
	DCE_DROP_EMERGENCY_OVER_BUDGET = 9, /* an emergency call's packet over its budgets (its source's, this CPU's) and refused by the ordinary ones too (a flood of them) */
	DCE_DROP_SYN_RATE_LIMIT = 10,     /* a TCP SYN to a SIP TCP port over its source's SYN budget (config.syn) */
	DCE_DROP_SYN_OVERLOAD = 11,       /* a TCP SYN to a SIP TCP port from a source neither allowlisted nor verified, this CPU's SYN budget (config.syn_cpu) spent */
	/* passes */
	DCE_PASSED = 12,                  /* SIP that passed every check and went to the kernel stack */
	DCE_REDIRECTED = 13,              /* SIP that passed every check and went to the queue's AF_XDP socket */
	DCE_PASSED_OTHER = 14,            /* neither UDP to a SIP port nor TCP to a SIP TCP port: passed untouched */
	DCE_PASSED_STREAM = 15,           /* TCP to a SIP TCP port that passed the lists, the bans and (a SYN) the SYN budgets: to the kernel's TCP stack */
	/* events */
	DCE_EV_FRAGMENT_PASSED = 16,      /* a first fragment passed by policy */
	DCE_EV_ALLOWLISTED = 17,          /* a SIP packet (UDP) from an allowlisted source */
	DCE_EV_AUTO_BAN = 18,             /* the program banned a verified scanner (into auto_bans) */
	DCE_EV_AUTO_BAN_FAILED = 19,      /* ...but auto_bans refused the entry (full) */
	DCE_EV_BAN_EXPIRED = 20,          /* a packet hit an expired ban (which no longer applies) */
	DCE_EV_VERIFIED = 21,             /* a SIP packet (UDP) from an unexpired verified source */
	DCE_EV_SCANNER_UNPROVEN = 22,     /* a scanner from an unverified source (its address may be forged): dropped, nobody banned */
	DCE_EV_AUTO_BAN_LIMITED = 23,     /* a verified scanner not banned: this CPU's auto-ban budget was spent */
	DCE_EV_EMERGENCY_PASSED = 24,     /* an emergency call's packet passed past bans, budgets and rate limits */
	DCE_COUNTER_SLOTS = 25,           /* number of slots */
};

#define DCE_DROP_REASONS 12               /* drop slots: 0 .. DCE_DROP_REASONS - 1 */
#define DCE_VERDICT_SLOTS 16              /* verdict slots: each packet moves exactly one of 0 .. DCE_VERDICT_SLOTS - 1 */

/* Why a source is banned (struct dce_ban.reason). */
enum dce_ban_reason {
	DCE_BAN_MANUAL = 1,               /* an operator, `dce-edge ban` */
	DCE_BAN_SCANNER = 2,              /* auto-ban by the XDP program (a verified source matched a scanner signature) */
	DCE_BAN_NOT_FOUND = 3,            /* the appliance saw a 404 storm */
	DCE_BAN_AUTH_FAILURE = 4,         /* the appliance saw a 401/403 storm */
	DCE_BAN_EXTENSION_SCAN = 5,       /* the appliance saw an extension scan */
	DCE_BAN_FLOOD = 6,                /* the appliance saw a flood */
};

/* Rate-limit classes (index into struct dce_config.rates, dce_bucket.tat). */
enum dce_class {
	DCE_CLASS_INVITE = 0,             /* rate-limit class of an INVITE */
	DCE_CLASS_REGISTER = 1,           /* rate-limit class of a REGISTER */
	DCE_CLASS_OTHER = 2,              /* rate-limit class of every other message, responses included */
	DCE_CLASS_EMERGENCY = 3,          /* per-source budget of an emergency call's packets, before this CPU's emergency budget */
	DCE_CLASSES = 4,                  /* number of classes */
};

/* Arrays indexed by class have 4 slots, so that an index masked with & 3 is
 * inside the array for the verifier. */
#define DCE_CLASS_SLOTS 4                 /* slots of class-indexed arrays */

/* struct dce_config.flags */
#define DCE_CFG_FRAGMENTS_PASS (1u << 0)  /* pass first fragments to SIP ports */
#define DCE_CFG_AUTO_BAN (1u << 1)        /* ban verified sources that match a scanner signature (within config.auto_ban) */
#define DCE_CFG_REDIRECT (1u << 2)        /* good SIP to the XSKMAP (appliance mode) */
#define DCE_CFG_EMERGENCY_URNS (1u << 3)  /* urn:service:sos Request-URIs are emergency calls */
#define DCE_CFG_EMERGENCY_KEEP_BANS (1u << 4) /* bans and the blocklist apply to emergency calls too */

/* struct dce_signature.kinds: which header values a signature applies to. */
#define DCE_SIG_USER_AGENT (1u << 0)      /* the signature applies to User-Agent values */
#define DCE_SIG_FROM_NAME (1u << 1)       /* the signature applies to From display names */

/* struct dce_info.attach_mode */
enum dce_attach_mode {
	DCE_ATTACH_NONE = 0,              /* loaded, not attached (tests) */
	DCE_ATTACH_NATIVE = 1,            /* native (driver) XDP */
	DCE_ATTACH_GENERIC = 2,           /* generic (SKB) XDP */
};

/*
 * A generic cell rate algorithm (GCRA) budget, equivalent to a token bucket
 * with `rate` tokens per second and `burst` tokens: a packet is admitted when
 * the source's theoretical arrival time is at most `tolerance_ns` ahead of
 * now, and then moves it on by `interval_ns`. Userspace derives both from
 * rate and burst: interval = 1e9 / rate, tolerance = (burst - 1) * interval.
 */
struct dce_rate {
	__u64 interval_ns;                /* nanoseconds per admitted packet (1e9 / rate) */
	__u64 tolerance_ns;               /* how far ahead of now the arrival time may run ((burst - 1) * interval) */
};

/* Map `config`, an ARRAY with one entry, written by userspace. */
struct dce_config {
	__u16 sip_ports[DCE_MAX_SIP_PORTS]; /* SIP ports, host byte order; the first n_sip_ports count */
	__u32 n_sip_ports;                /* 0: nothing is SIP, everything passes */
	__u32 flags;                      /* DCE_CFG_* bits */
	__u64 ban_ttl_ns;                 /* duration of the program's automatic bans, nanoseconds */
	struct dce_rate rates[DCE_CLASS_SLOTS]; /* per-source budgets per class (DCE_CLASS_*) */
	__u64 overload_cap;               /* packets to userspace per second per CPU */
	struct dce_rate unverified;       /* per CPU: the GCRA budget of packets from sources neither allowlisted nor verified that reach userspace or the header scan's scanner verdict */
	struct dce_rate auto_ban;         /* per CPU: the GCRA budget of automatic bans the program makes */
	struct dce_rate emergency;        /* per CPU: the GCRA budget of emergency calls' packets that skip bans, budgets and rate limits */
	__u64 sig_first[2][4];            /* per kind (0 User-Agent, 1 From name), the 256-bit set of signature first bytes | 0x20: a value whose first byte is not in it skips the signature loop */
	__u16 tcp_ports[DCE_MAX_SIP_PORTS]; /* TCP ports that carry SIP (over TCP or TLS), host byte order; the first n_tcp_ports count */
	__u32 n_tcp_ports;                /* 0: no TCP is SIP, all of it passes untouched */
	__u32 _pad;                       /* padding */
	struct dce_rate syn;              /* per source: the GCRA budget of TCP SYNs to the SIP TCP ports (state in syn_buckets) */
	struct dce_rate syn_cpu;          /* per CPU: the GCRA budget of such SYNs from sources neither allowlisted nor verified */
};

/*
 * Map `signatures`, an ARRAY of DCE_MAX_SIGNATURES; the first entry with
 * len == 0 ends the list. A header value v matches when, for each of the four
 * 8-byte words w of its first 32 bytes (little-endian loads, zero past the
 * packet), (w | fold) & mask == word. Userspace builds word (the signature,
 * lower case), mask (0xff for each of its len bytes) and fold (0x20 at the
 * letters, so either case matches), which makes matching a case-insensitive
 * prefix test without a per-byte loop.
 */
struct dce_signature {
	__u8 len;                         /* length in bytes; 0 ends the list */
	__u8 kinds;                       /* DCE_SIG_* bits */
	__u8 _pad[6];                     /* padding */
	__u64 word[DCE_SIGNATURE_WORDS];  /* the signature in lower case, as little-endian words */
	__u64 mask[DCE_SIGNATURE_WORDS];  /* 0xff for each of its bytes */
	__u64 fold[DCE_SIGNATURE_WORDS];  /* 0x20 at its letters (either case matches) */
};

/* Map `counters`, a PERCPU_ARRAY with one entry. */
struct dce_counters {
	__u64 slot[DCE_COUNTER_SLOTS];    /* indexed by enum dce_counter */
};

/* LPM trie keys: allow_v4, block_v4, bans_v4 / allow_v6, block_v6, bans_v6
 * (bans_v4 / bans_v6 hold the operators' bans, any prefix). */
struct dce_lpm_v4 {
	__u32 prefixlen;                  /* bits of addr that count */
	__u8 addr[4];                     /* network byte order */
};

struct dce_lpm_v6 {
	__u32 prefixlen;                  /* bits of addr that count */
	__u8 addr[16];                    /* network byte order */
};

/*
 * A source as the rate limits, the top-sources tally, the verified map and
 * the automatic bans see it: IPv4 as an IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d), IPv6 cut to its /64 (the low 8 bytes zero), since one
 * IPv6 host owns a whole /64.
 */
struct dce_source {
	__u8 addr[16];                    /* network byte order */
};

/*
 * Value of bans_v4 / bans_v6 (operator bans, LPM tries written by userspace
 * only) and of auto_bans (automatic bans, a HASH keyed by struct dce_source,
 * written by the program for verified scanners and by the appliance for the
 * proxy's abuse bans). An automatic ban never replaces an operator's: they
 * live in different maps.
 */
struct dce_ban {
	__u64 expires_ns;                 /* CLOCK_MONOTONIC; ~0 = never */
	__u64 banned_ns;                  /* CLOCK_MONOTONIC when banned */
	__u32 reason;                     /* enum dce_ban_reason */
	__u32 prefixlen;                  /* of the entry's own key (auto_bans: 32 for IPv4, 64 for IPv6) */
	__u8 note[32];                    /* operator's text, NUL-padded */
};

/* Value of allow_* / block_* tries: the entry exists, that is all. */
struct dce_list_entry {
	__u32 present;                    /* always 1 */
};

/* Value of `buckets` (LRU_HASH keyed by struct dce_source). */
struct dce_bucket {
	__u64 tat[DCE_CLASS_SLOTS];       /* theoretical arrival time per class */
};

/* Value of `syn_buckets` (LRU_HASH keyed by struct dce_source): a map of
 * its own, so that a SYN flood from forged sources churns its entries, not
 * the UDP budgets in `buckets`. */
struct dce_syn_bucket {
	__u64 tat;                        /* theoretical arrival time of the source's next SYN */
};

/* Value of `top_sources` (LRU_HASH keyed by struct dce_source). */
struct dce_top_source {
	__u64 drops;                      /* packets dropped */
	__u64 last_ns;                    /* CLOCK_MONOTONIC of the last drop */
	__u32 last_reason;                /* enum dce_counter, a drop slot */
	__u32 _pad;                       /* padding */
};

/*
 * Value of `verified` (LRU_HASH keyed by struct dce_source), written by
 * userspace for a source that proved it receives our responses at its
 * address (it came back with our dialog cookie). Until expires_ns it is
 * spared the budget for unverified sources; nothing else changes for it.
 */
struct dce_verified {
	__u64 expires_ns;                 /* CLOCK_MONOTONIC */
	__u64 verified_ns;                /* CLOCK_MONOTONIC of the latest verification */
};

/* Map `overload`, a PERCPU_ARRAY with one entry: this CPU's budgets. */
struct dce_overload {
	__u64 window_start_ns;            /* the overload cap's one-second window */
	__u64 count;                      /* packets to userspace in it */
	__u64 unverified_tat;             /* GCRA state of config.unverified */
	__u64 auto_ban_tat;               /* GCRA state of config.auto_ban */
	__u64 emergency_tat;              /* GCRA state of config.emergency */
	__u64 syn_tat;                    /* GCRA state of config.syn_cpu */
};

/*
 * Map `emergency_numbers`, an ARRAY of DCE_MAX_EMERGENCY_NUMBERS; the first
 * entry with len == 0 ends the list. A request whose Request-URI's user part
 * (sip, sips) or number (tel) is exactly one of them is an emergency call.
 */
struct dce_emergency_number {
	__u8 len;                         /* digits; 0 ends the list */
	__u8 _pad[7];                     /* padding */
	__u8 digits[16];                  /* ASCII digits, zero after len */
};

/*
 * Value of `emergency_sources` (LRU_HASH keyed by struct dce_source), written
 * by userspace when the appliance forwards an emergency call: until
 * expires_ns the source's packets (the call's ACK, BYE, CANCEL) are treated
 * as the call's, within the emergency budget.
 */
struct dce_emergency_source {
	__u64 expires_ns;                 /* CLOCK_MONOTONIC */
};

/* Map `info`, an ARRAY with one entry, written by userspace for a second process. */
struct dce_info {
	__u32 attach_mode;                /* enum dce_attach_mode */
	__u32 fell_back;                  /* 1: auto mode fell back to generic */
	__u32 owner_pid;                  /* the process that attached the program */
	__u32 ifindex;                    /* interface index */
	__u64 loaded_ns;                  /* CLOCK_MONOTONIC */
	__u32 verdict_mode;               /* 0 pass, DCE_CFG_REDIRECT */
	__u32 _pad;                       /* padding */
	__u8 control_socket[108];         /* the owning appliance's control socket path, NUL-padded (empty: none) */
	__u8 _pad2[4];                    /* padding */
};

/*
 * Forensics: `dce-edge capture` copies dropped frames into the ring buffer
 * `capture_ring`. Unarmed (the default, count == taken) the program pays one
 * load and compare per drop; nothing per passed packet. The capture is
 * bounded by count even if the reader dies: a matching drop first claims a
 * place by adding 1 to taken, and is copied only when its place is below
 * count.
 */
#define DCE_CAPTURE_BYTES 256             /* most bytes of a dropped frame copied into a capture record */
#define DCE_CAPTURE_RING_BYTES 1048576    /* size of the capture_ring ring buffer (a power of two, whole pages) */

/* Map `capture`, an ARRAY with one entry, written by userspace to arm or disarm a capture. */
struct dce_capture {
	__u64 count;                      /* drops to capture in all; equal to taken (0 and 0 at load): unarmed */
	__u64 taken;                      /* places claimed by matching drops (the program adds 1 per matching drop; may pass count) */
	__u64 lost;                       /* matching drops within count that the ring had no room for */
	__u32 reason_mask;                /* bit r set: drops of reason r (a drop slot of enum dce_counter) match; 0: every reason */
	__u32 owner_pid;                  /* the process that armed the capture (0: none) */
	__u64 source_net[2];              /* the source filter: a struct dce_source's 16 bytes as two words, in memory order, already masked */
	__u64 source_mask[2];             /* its mask, same words; all zero: every source (and drops before a source was read) match */
};

/* One record of the ring buffer `capture_ring`: a dropped frame's first bytes. */
struct dce_capture_record {
	__u64 ts_ns;                      /* CLOCK_MONOTONIC of the drop */
	__u32 reason;                     /* enum dce_counter, a drop slot */
	__u32 frame_len;                  /* the whole frame's length, in bytes */
	__u32 captured_len;               /* bytes of it in data: min(frame_len, DCE_CAPTURE_BYTES) */
	__u32 ifindex;                    /* the interface it arrived on */
	__u32 rx_queue;                   /* the receive queue it arrived on */
	__u32 _pad;                       /* padding */
	__u8 data[DCE_CAPTURE_BYTES];     /* the frame from its Ethernet header on, zero past captured_len */
};

#endif /* DCE_FILTER_H */
