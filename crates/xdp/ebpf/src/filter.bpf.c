// SPDX-License-Identifier: Apache-2.0
/*
 * dce-edge XDP filter: sheds SIP floods, scanners and garbage in the NIC
 * path, counting every drop under exactly one reason.
 *
 * Verdict order (DESIGN.md, cheapest first; each drop counts under the first
 * reason that applies):
 *   1. neither UDP to a SIP port nor TCP to a SIP TCP port  -> PASS (passed_other)
 *      TCP to a SIP TCP port (SIP over TCP or TLS)          -> the TCP order below
 *      UDP to a SIP port whose IP/UDP lengths do not add up -> DROP malformed
 *   2. source in the allowlist (trusted): skips 3, 6 and 7, and is never banned
 *   3. source in the blocklist                              -> DROP blocklist
 *      an unexpired operator ban (LPM, bans_v4/v6), else an
 *      unexpired automatic ban of its source (auto_bans)    -> DROP banned
 *      ...unless the packet belongs to an emergency call (below) and the
 *      operator does not keep bans for those (DCE_CFG_EMERGENCY_KEEP_BANS)
 *   4. first fragment of a datagram to a SIP port           -> DROP fragment, or PASS by policy
 *   5. payload not starting like SIP                        -> DROP not_sip
 *  5a. an emergency call: Request-URI an emergency number (exactly) or
 *      urn:service:sos, or a source userspace put in emergency_sources
 *      (the call's ACK and BYE): skips 6-9 within its source's budget
 *      (class emergency) and this CPU's emergency budget     -> 10
 *      over either: reached through a ban or the blocklist  -> DROP emergency_over_budget
 *      else the ordinary path, whose budget drops (6-8) are -> DROP emergency_over_budget
 *   6. source neither allowlisted nor verified (`verified` map, unexpired),
 *      and this CPU's budget for such sources spent         -> DROP unverified
 *   7. per-source GCRA budget of the message's class        -> DROP rate_limit
 *   8. this CPU's overload cap on packets to userspace
 *      (everyone, allowlisted sources included)             -> DROP overload
 *   9. scanner User-Agent / From display name               -> DROP scanner
 *      verified source: auto-ban within this CPU's auto-ban budget
 *      unverified source: charges the budget of 6, bans nobody
 *  10. REDIRECT to the queue's AF_XDP socket (appliance mode, socket bound), else PASS
 *
 * Trust and evidence (DESIGN.md): what a packet carries (its source address,
 * its User-Agent) is evidence only about that packet, since both can be
 * forged. A scanner signature therefore gets the packet dropped, but bans
 * its source only when the source is verified (userspace saw it receive our
 * answers at its address), and then within a per-CPU budget, so neither a
 * spoofed scanner nor a flood of verified ones can fill the ban map. The
 * program's bans go to auto_bans, never to the operators' tries, so they
 * can neither crowd out nor shorten an operator's ban.
 *
 * The budgets (6-8) come before the header scan (9) because the scan is
 * the most expensive step (a walk over up to DCE_SCAN_BYTES of headers) and
 * a flood is what must be shed cheaply. 6 is checked there and charged by
 * the packets of unverified sources that go on to userspace (10) or are
 * caught as scanners (9): a spoofed scanner flood spends it like any other
 * unverified flood and is then shed before the scan. 8 is charged only by
 * packets that go to userspace. 7 is charged when checked (a source's dropped
 * packets spend its own budget, nobody else's).
 *
 * Truncation: a frame cut before its UDP destination port is readable cannot
 * be shown to be SIP, so it passes (the kernel's own checks drop broken IP).
 * Once the port says SIP, any inconsistency is `malformed`. An IPv6 chain of
 * more than DCE_MAX_IPV6_EXT_HEADERS extension headers is `malformed` too,
 * since passing it would let SIP hide behind a deep chain.
 *
 * Non-first fragments carry no UDP header and pass: without the first
 * fragment (dropped by the default policy) they never reassemble.
 *
 * TCP to a SIP TCP port (config.tcp_ports), every segment:
 *   T1. data offset under 5, or the header past the segment -> DROP malformed
 *   T2. source in the allowlist                             -> PASS (passed_stream), no budget
 *   T3. blocklist / operator ban / automatic ban            -> DROP blocklist / banned
 *   T4. first fragment                                      -> DROP fragment, or PASS by policy
 *   T5. not a SYN (ACK set, or no SYN)                      -> PASS (passed_stream)
 *   T6. a SYN from a source not verified, this CPU's SYN
 *       budget (config.syn_cpu) spent                       -> DROP syn_overload
 *   T7. the source's SYN budget (config.syn) spent          -> DROP syn_rate_limit
 *   T8.                                                     -> PASS (passed_stream)
 * The TCP path is a branch of its own after the IP header, so UDP to the
 * SIP ports pays one comparison for it.
 */
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>

#include "bpf_defs.h"
#include "dce_filter.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* ---------------------------------------------------------------- maps */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dce_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dce_info);
} info SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DCE_MAX_SIGNATURES);
	__type(key, __u32);
	__type(value, struct dce_signature);
} signatures SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dce_counters);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dce_overload);
} overload SEC(".maps");

#define DCE_LPM_MAP(name, key_type, value_type)                                \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);                           \
		__uint(max_entries, DCE_LPM_ENTRIES);                          \
		__uint(map_flags, BPF_F_NO_PREALLOC);                          \
		__type(key, key_type);                                         \
		__type(value, value_type);                                     \
	} name SEC(".maps")

DCE_LPM_MAP(allow_v4, struct dce_lpm_v4, struct dce_list_entry);
DCE_LPM_MAP(allow_v6, struct dce_lpm_v6, struct dce_list_entry);
DCE_LPM_MAP(block_v4, struct dce_lpm_v4, struct dce_list_entry);
DCE_LPM_MAP(block_v6, struct dce_lpm_v6, struct dce_list_entry);
/* Operator bans, any prefix: written by userspace only. */
DCE_LPM_MAP(bans_v4, struct dce_lpm_v4, struct dce_ban);
DCE_LPM_MAP(bans_v6, struct dce_lpm_v6, struct dce_ban);

/* Automatic bans, one per source (an IPv4 address, an IPv6 /64): the
 * program's, of verified scanners, and the appliance's, of abusers the proxy
 * saw. Preallocated, so a ban in the NIC path allocates nothing; a HASH, not
 * an LRU, so a ban is never silently evicted: when it is full, a new one is
 * refused and counted (DCE_EV_AUTO_BAN_FAILED), and the operators' bans,
 * kept in the tries above, are not affected. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DCE_AUTO_BAN_ENTRIES);
	__type(key, struct dce_source);
	__type(value, struct dce_ban);
} auto_bans SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DCE_BUCKET_ENTRIES);
	__type(key, struct dce_source);
	__type(value, struct dce_bucket);
} buckets SEC(".maps");

/* Per-source SYN budgets, apart from `buckets`: a SYN flood from forged
 * sources churns this map's entries, never the UDP budgets. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DCE_SYN_BUCKET_ENTRIES);
	__type(key, struct dce_source);
	__type(value, struct dce_syn_bucket);
} syn_buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DCE_TOP_SOURCE_ENTRIES);
	__type(key, struct dce_source);
	__type(value, struct dce_top_source);
} top_sources SEC(".maps");

/* Written by userspace only: the program never inserts, so a spoofed flood
 * cannot evict a verified source. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DCE_VERIFIED_ENTRIES);
	__type(key, struct dce_source);
	__type(value, struct dce_verified);
} verified SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DCE_MAX_EMERGENCY_NUMBERS);
	__type(key, __u32);
	__type(value, struct dce_emergency_number);
} emergency_numbers SEC(".maps");

/* Written by userspace only (an emergency call it forwarded): a flood cannot
 * add sources to it, and its LRU only pushes out the least recent call. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DCE_EMERGENCY_SOURCE_ENTRIES);
	__type(key, struct dce_source);
	__type(value, struct dce_emergency_source);
} emergency_sources SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, DCE_MAX_XSK_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

/* ------------------------------------------------------------- parsing */

/* Offsets are kept as bounded scalars from ctx->data; every access goes
 * through pkt_ptr(), so the verifier and the reader see one bounds rule. */
#define DCE_MAX_OFFSET 0x7fff

static __always_inline void *pkt_ptr(struct xdp_md *ctx, __u32 off, __u32 len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 o = off;

	if (o > DCE_MAX_OFFSET)
		return 0;
	/* Identity after the check above; the empty asm keeps clang from folding
	 * the mask away, so the verifier sees the bound whatever clang did to
	 * the comparison. */
	asm volatile("" : "+r"(o));
	o &= DCE_MAX_OFFSET;
	if (data + o + len > data_end)
		return 0;
	return data + o;
}

enum parse_result {
	PARSE_SIP_PORT = 0, /* UDP to a SIP port, lengths consistent */
	PARSE_OTHER = 1,    /* not ours: pass untouched */
	PARSE_MALFORMED = 2,
	PARSE_TCP_SIP_PORT = 3, /* TCP to a SIP TCP port, header consistent (or a first fragment) */
};

/* TCP flags byte (RFC 9293 section 3.1), the 14th byte of the header. */
#define DCE_TCP_SYN 0x02
#define DCE_TCP_ACK 0x10

struct packet {
	__u32 payload_off;
	__u32 payload_end;
	__u8 ipv6;
	__u8 first_fragment;
	__u8 have_source;
	__u8 tcp_syn; /* TCP: SYN set, ACK clear (a connection being opened) */
	struct dce_lpm_v4 key4;
	struct dce_lpm_v6 key6;
	struct dce_source source;
};

struct vlan_tag {
	__be16 tci;
	__be16 proto;
};

struct ipv6_ext {
	__u8 nexthdr;
	__u8 len;
};

struct ipv6_frag {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;
	__be32 id;
};

static __always_inline int port_listed(const __u16 *ports, __u32 n, __u16 port)
{
#pragma unroll
	for (int i = 0; i < DCE_MAX_SIP_PORTS; i++) {
		if ((__u32)i >= n)
			return 0;
		if (ports[i] == port)
			return 1;
	}
	return 0;
}

static __always_inline int is_sip_port(const struct dce_config *cfg, __u16 port)
{
	return port_listed(cfg->sip_ports, cfg->n_sip_ports, port);
}

/* The TCP header at tcp_off; l4_end is where the IP packet says the segment
 * ends. Only the ports and flags matter here: the kernel's TCP stack judges
 * everything else. A global function, verified once for both IP versions
 * and kept off the UDP path. Returns PARSE_TCP_SIP_PORT with bit 8 set for
 * a SYN (SYN set, ACK clear), PARSE_OTHER or PARSE_MALFORMED. */
#define DCE_TCP_IS_SYN 0x100

__noinline int dce_parse_tcp(struct xdp_md *ctx, __u32 tcp_off, __u32 l4_end,
			     __u32 first_fragment)
{
	__u32 zero = 0;
	struct dce_config *cfg = bpf_map_lookup_elem(&config, &zero);
	struct tcphdr tcp_hdr;
	__be16 ports[2];

	if (!cfg || !cfg->n_tcp_ports || tcp_off > DCE_MAX_OFFSET)
		return PARSE_OTHER;
	/* A frame cut before the destination port cannot be shown to be ours. */
	if (bpf_xdp_load_bytes(ctx, tcp_off, ports, sizeof(ports)) < 0)
		return PARSE_OTHER;
	if (!port_listed(cfg->tcp_ports, cfg->n_tcp_ports, dce_ntohs(ports[1])))
		return PARSE_OTHER;
	/* The segment continues in later fragments; only the policy matters. */
	if (first_fragment)
		return PARSE_TCP_SIP_PORT;
	__u32 frame_len = ctx->data_end - ctx->data;
	if (l4_end > frame_len || tcp_off + sizeof(tcp_hdr) > l4_end ||
	    bpf_xdp_load_bytes(ctx, tcp_off, &tcp_hdr, sizeof(tcp_hdr)) < 0)
		return PARSE_MALFORMED;
	__u32 doff = tcp_hdr.doff;
	if (doff < 5 || tcp_off + doff * 4 > l4_end)
		return PARSE_MALFORMED;
	__u8 flags = ((__u8 *)&tcp_hdr)[13];
	if ((flags & (DCE_TCP_SYN | DCE_TCP_ACK)) == DCE_TCP_SYN)
		return PARSE_TCP_SIP_PORT | DCE_TCP_IS_SYN;
	return PARSE_TCP_SIP_PORT;
}

/* Marks the packet as ours from the TCP parse's answer. */
static __always_inline int take_tcp(struct packet *pkt, int r)
{
	if ((r & 0xff) != PARSE_TCP_SIP_PORT)
		return r;
	pkt->have_source = 1;
	pkt->tcp_syn = (r & DCE_TCP_IS_SYN) != 0;
	return PARSE_TCP_SIP_PORT;
}

/* The UDP header at udp_off; l4_end is where the IP packet says its payload
 * ends. Fills the payload bounds, or says why the packet is not ours. */
static __always_inline int parse_udp(struct xdp_md *ctx, const struct dce_config *cfg,
				     struct packet *pkt, __u32 udp_off, __u32 l4_end)
{
	struct udphdr udp_hdr;
	struct udphdr *udp = &udp_hdr;
	__u32 frame_len = ctx->data_end - ctx->data;

	/* Read through the helper, not a packet pointer: the offset then stays
	 * imprecise for the verifier, so the IPv6 extension walk converges
	 * instead of being re-verified for every possible header offset. */
	if (udp_off > DCE_MAX_OFFSET || bpf_xdp_load_bytes(ctx, udp_off, udp, sizeof(*udp)) < 0)
		return PARSE_OTHER;
	if (!is_sip_port(cfg, dce_ntohs(udp->dest)))
		return PARSE_OTHER;
	pkt->have_source = 1;
	pkt->payload_off = udp_off + sizeof(*udp);
	if (pkt->first_fragment) {
		/* The datagram continues in later fragments; only the policy matters. */
		pkt->payload_end = pkt->payload_off;
		return PARSE_SIP_PORT;
	}
	__u32 ulen = dce_ntohs(udp->len);
	if (l4_end > frame_len || ulen < sizeof(*udp) || udp_off + ulen > l4_end)
		return PARSE_MALFORMED;
	pkt->payload_end = udp_off + ulen;
	return PARSE_SIP_PORT;
}

static __always_inline int parse_ipv4(struct xdp_md *ctx, const struct dce_config *cfg,
				      struct packet *pkt, __u32 off)
{
	struct iphdr *ip = pkt_ptr(ctx, off, sizeof(*ip));

	if (!ip || ip->version != 4 || ip->ihl < 5)
		return PARSE_OTHER;
	__u8 proto = ip->protocol;
	if (proto != IPPROTO_UDP && proto != IPPROTO_TCP)
		return PARSE_OTHER;
	__u16 frag = dce_ntohs(ip->frag_off);
	if (frag & 0x1fff)
		return PARSE_OTHER; /* non-first fragment: no UDP header to judge */
	pkt->first_fragment = (frag & 0x2000) != 0;

	pkt->key4.prefixlen = 32;
	__builtin_memcpy(pkt->key4.addr, &ip->saddr, 4);
	__builtin_memset(pkt->source.addr, 0, 10);
	pkt->source.addr[10] = 0xff;
	pkt->source.addr[11] = 0xff;
	__builtin_memcpy(&pkt->source.addr[12], &ip->saddr, 4);

	__u32 ihl = ip->ihl * 4;
	__u32 tot_len = dce_ntohs(ip->tot_len);
	if (tot_len < ihl)
		tot_len = 0; /* flagged as malformed by parse_udp's length check */
	if (!pkt_ptr(ctx, off, ihl))
		return PARSE_OTHER;
	if (proto == IPPROTO_TCP) {
		/* A bad total length makes l4_end short of the header: malformed. */
		__u32 end = tot_len ? off + tot_len : 0;
		return take_tcp(pkt, dce_parse_tcp(ctx, off + ihl, end, pkt->first_fragment));
	}
	return parse_udp(ctx, cfg, pkt, off + ihl, off + tot_len);
}

/* Walks the IPv6 extension headers from `off` (after the fixed header)
 * with first next header `nexthdr`. Returns the UDP header's offset, with
 * DCE_WALK_FIRST_FRAGMENT set when a fragment header says this is the first
 * fragment; or DCE_WALK_OTHER / DCE_WALK_MALFORMED. A global function: it is
 * verified once, instead of once per path through the chain in the caller. */
#define DCE_WALK_OTHER (-1)
#define DCE_WALK_MALFORMED (-2)
#define DCE_WALK_FIRST_FRAGMENT 0x10000
#define DCE_WALK_TCP 0x20000

__noinline int dce_ipv6_walk(struct xdp_md *ctx, __u32 off, __u32 nexthdr)
{
	int first_fragment = 0;

	for (int i = 0; i < DCE_MAX_IPV6_EXT_HEADERS + 1; i++) {
		if (off > DCE_MAX_OFFSET)
			return DCE_WALK_OTHER;
		if (nexthdr == IPPROTO_UDP)
			return (int)off | first_fragment;
		if (nexthdr == IPPROTO_TCP)
			return (int)off | first_fragment | DCE_WALK_TCP;
		if (i == DCE_MAX_IPV6_EXT_HEADERS)
			break;
		if (nexthdr == IPPROTO_FRAGMENT) {
			struct ipv6_frag fh;
			if (bpf_xdp_load_bytes(ctx, off, &fh, sizeof(fh)) < 0)
				return DCE_WALK_OTHER;
			__u16 fo = dce_ntohs(fh.frag_off);
			if (fo & 0xfff8)
				return DCE_WALK_OTHER; /* non-first fragment */
			if (fo & 1)
				first_fragment = DCE_WALK_FIRST_FRAGMENT;
			nexthdr = fh.nexthdr;
			off += sizeof(fh);
		} else if (nexthdr == IPPROTO_HOPOPTS || nexthdr == IPPROTO_ROUTING ||
			   nexthdr == IPPROTO_DSTOPTS || nexthdr == IPPROTO_AH) {
			struct ipv6_ext eh;
			if (bpf_xdp_load_bytes(ctx, off, &eh, sizeof(eh)) < 0)
				return DCE_WALK_OTHER;
			/* RFC 8200 section 4.3-4.6 (units of 8 octets, not counting the
			 * first); AH counts 4-octet units minus 2 (RFC 4302 section 2.2). */
			__u32 len = nexthdr == IPPROTO_AH ? ((__u32)eh.len + 2) * 4
							  : ((__u32)eh.len + 1) * 8;
			nexthdr = eh.nexthdr;
			off += len;
		} else {
			return DCE_WALK_OTHER; /* ICMPv6, ESP, no next header, ... */
		}
	}
	/* Still inside the extension chain: too deep to judge. */
	return DCE_WALK_MALFORMED;
}

static __always_inline int parse_ipv6(struct xdp_md *ctx, const struct dce_config *cfg,
				      struct packet *pkt, __u32 off)
{
	struct ipv6hdr *ip6 = pkt_ptr(ctx, off, sizeof(*ip6));

	if (!ip6 || ip6->version != 6)
		return PARSE_OTHER;
	pkt->ipv6 = 1;
	pkt->key6.prefixlen = 128;
	__builtin_memcpy(pkt->key6.addr, &ip6->saddr, 16);
	__builtin_memcpy(pkt->source.addr, &ip6->saddr, 8);
	__builtin_memset(&pkt->source.addr[8], 0, 8);

	__u32 l4_end = off + sizeof(*ip6) + dce_ntohs(ip6->payload_len);
	int walk = dce_ipv6_walk(ctx, off + sizeof(*ip6), ip6->nexthdr);
	if (walk == DCE_WALK_OTHER)
		return PARSE_OTHER;
	if (walk < 0)
		return PARSE_MALFORMED;
	pkt->first_fragment = (walk & DCE_WALK_FIRST_FRAGMENT) != 0;
	if (walk & DCE_WALK_TCP)
		return take_tcp(pkt, dce_parse_tcp(ctx, walk & 0xffff, l4_end, pkt->first_fragment));
	return parse_udp(ctx, cfg, pkt, walk & 0xffff, l4_end);
}

static __always_inline int parse_frame(struct xdp_md *ctx, const struct dce_config *cfg,
				       struct packet *pkt)
{
	struct ethhdr *eth = pkt_ptr(ctx, 0, sizeof(*eth));
	__u32 off = sizeof(*eth);

	if (!eth)
		return PARSE_OTHER;
	__u16 proto = eth->h_proto;

	/* Up to two tags: 802.1Q, or 802.1ad outer + 802.1Q inner (QinQ). */
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != dce_htons(ETH_P_8021Q) && proto != dce_htons(ETH_P_8021AD))
			break;
		struct vlan_tag *tag = pkt_ptr(ctx, off, sizeof(*tag));
		if (!tag)
			return PARSE_OTHER;
		proto = tag->proto;
		off += sizeof(*tag);
	}

	if (proto == dce_htons(ETH_P_IP))
		return parse_ipv4(ctx, cfg, pkt, off);
	if (proto == dce_htons(ETH_P_IPV6))
		return parse_ipv6(ctx, cfg, pkt, off);
	return PARSE_OTHER;
}

/* ------------------------------------------------------- payload checks */

enum sip_start {
	SIP_NOT = -1,
};

static __always_inline int is_token_char(__u8 c)
{
	/* RFC 3261 section 25.1: token = 1*(alphanum / "-" / "." / "!" / "%"
	 * / "*" / "_" / "+" / "`" / "'" / "~") */
	if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
		return 1;
	return c == '-' || c == '.' || c == '!' || c == '%' || c == '*' || c == '_' ||
	       c == '+' || c == '`' || c == '\'' || c == '~';
}

static __always_inline int is_scheme_char(__u8 c)
{
	/* RFC 3986 section 3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) */
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '-' || c == '.';
}

#define SIP_START_BYTES 32
#define SIP_METHOD_MAX 16
#define SIP_SCHEME_MAX 8

/* The class of a message that starts like SIP, or SIP_NOT: a request line
 * "METHOD SP scheme:" (RFC 3261 section 7.1) or a status line
 * "SIP/2.0 SP 3DIGIT SP" (section 7.2). Global, so that each method length
 * does not become a separate path through the rest of the program for the
 * verifier. */
__noinline int dce_sip_class(struct xdp_md *ctx, __u32 payload_off, __u32 payload_end)
{
	__u8 b[SIP_START_BYTES] = {};

	/* No SIP message is this short: RFC 3261 section 8.1.1 requires To,
	 * From, CSeq, Call-ID, Max-Forwards and Via. A fixed-size load keeps the
	 * payload offsets imprecise for the verifier (fewer states to explore). */
	if (payload_off > DCE_MAX_OFFSET || payload_end < payload_off + SIP_START_BYTES)
		return SIP_NOT;
	if (bpf_xdp_load_bytes(ctx, payload_off, b, SIP_START_BYTES) < 0)
		return SIP_NOT;

	if (b[0] == 'S' && b[1] == 'I' && b[2] == 'P' && b[3] == '/' && b[4] == '2' &&
	    b[5] == '.' && b[6] == '0' && b[7] == ' ') {
		if (b[8] < '1' || b[8] > '6' || b[9] < '0' || b[9] > '9' || b[10] < '0' ||
		    b[10] > '9' || b[11] != ' ')
			return SIP_NOT;
		return DCE_CLASS_OTHER;
	}

	int method_len = 0;
#pragma unroll
	for (int i = 0; i < SIP_METHOD_MAX + 1; i++) {
		if (!is_token_char(b[i])) {
			method_len = i;
			break;
		}
	}
	if (method_len == 0 || b[method_len & (SIP_START_BYTES - 1)] != ' ')
		return SIP_NOT;

	int scheme = method_len + 1;
	__u8 first = b[scheme & (SIP_START_BYTES - 1)];
	if (!((first >= 'A' && first <= 'Z') || (first >= 'a' && first <= 'z')))
		return SIP_NOT;
	int colon = 0;
#pragma unroll
	for (int i = 1; i < SIP_SCHEME_MAX + 1; i++) {
		__u8 c = b[(scheme + i) & (SIP_START_BYTES - 1)];
		if (c == ':') {
			colon = i;
			break;
		}
		if (!is_scheme_char(c))
			return SIP_NOT;
	}
	if (!colon)
		return SIP_NOT;

	if (method_len == 6 && b[0] == 'I' && b[1] == 'N' && b[2] == 'V' && b[3] == 'I' &&
	    b[4] == 'T' && b[5] == 'E')
		return DCE_CLASS_INVITE;
	if (method_len == 8 && b[0] == 'R' && b[1] == 'E' && b[2] == 'G' && b[3] == 'I' &&
	    b[4] == 'S' && b[5] == 'T' && b[6] == 'E' && b[7] == 'R')
		return DCE_CLASS_REGISTER;
	return DCE_CLASS_OTHER;
}

/* ------------------------------------------------------ emergency calls */

#define SIP_URI_BYTES 64
/* The longest user part of an emergency Request-URI read: its digits and
 * visual separators. */
#define EMERGENCY_USER_MAX 24

/* 1 when the message at payload_off is a request whose Request-URI is an
 * emergency call: a sip/sips user part or a tel number whose digits (visual
 * separators dropped, as the proxy does; escaped digits are the proxy's
 * alone) are exactly one of the `emergency_numbers`, or (with
 * DCE_CFG_EMERGENCY_URNS) urn:service:sos and its sub-services (RFC 5031),
 * compared without regard to case. Reads the first SIP_URI_BYTES of the
 * message only. Global: verified once. */
__noinline int dce_emergency_uri(struct xdp_md *ctx, __u32 payload_off, __u32 payload_end)
{
	__u8 b[SIP_URI_BYTES] = {};

	if (payload_off > DCE_MAX_OFFSET || payload_end < payload_off + 32)
		return 0;
	__u32 n = payload_end - payload_off;
	if (n > SIP_URI_BYTES)
		n = SIP_URI_BYTES;
	if (bpf_xdp_load_bytes(ctx, payload_off, b, dce_len_in_range(n, SIP_URI_BYTES)) < 0)
		return 0;

	/* The method ends at the first space (dce_sip_class checked the shape). */
	int sp = 0;
#pragma unroll
	for (int i = 1; i < SIP_METHOD_MAX + 1; i++) {
		if (b[i] == ' ') {
			sp = i;
			break;
		}
	}
	if (!sp)
		return 0;
	int at = sp + 1;

	__u32 zero = 0;
	struct dce_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return 0;

	/* urn:service:sos, then the end of the URI or a sub-service. */
	if ((b[at & 63] | 0x20) == 'u') {
		const char urn[] = "urn:service:sos";
		if (!(cfg->flags & DCE_CFG_EMERGENCY_URNS))
			return 0;
#pragma unroll
		for (int i = 0; i < 15; i++) {
			__u8 c = b[(at + i) & 63];
			__u8 w = urn[i];
			if (w >= 'a' && w <= 'z')
				c |= 0x20;
			if (c != w)
				return 0;
		}
		__u8 next = b[(at + 15) & 63];
		return next == ' ' || next == '.' || next == '>' || next == ';';
	}

	/* sip:, sips: or tel: */
	int digits_at;
	__u8 s0 = b[at & 63] | 0x20, s1 = b[(at + 1) & 63] | 0x20, s2 = b[(at + 2) & 63] | 0x20;
	__u8 s3 = b[(at + 3) & 63];
	if (s0 == 's' && s1 == 'i' && s2 == 'p' && s3 == ':')
		digits_at = at + 4;
	else if (s0 == 's' && s1 == 'i' && s2 == 'p' && (s3 | 0x20) == 's' && b[(at + 4) & 63] == ':')
		digits_at = at + 5;
	else if (s0 == 't' && s1 == 'e' && s2 == 'l' && s3 == ':')
		digits_at = at + 4;
	else
		return 0;

	/* The number: its digits up to the end of the user part or of the tel
	 * number, past the visual separators the proxy drops too (+ - . ( )). */
	/* Digits packed little-endian into two words, as the map entry's
	 * bytes read (no variable stack offsets for the verifier). */
	__u64 w0 = 0, w1 = 0;
	int len = 0, ended = 0;
#pragma unroll
	for (int i = 0; i < EMERGENCY_USER_MAX; i++) {
		if (digits_at + i >= SIP_URI_BYTES)
			return 0;
		__u8 c = b[(digits_at + i) & 63];
		if (c >= '0' && c <= '9') {
			if (len >= DCE_EMERGENCY_NUMBER_MAX)
				return 0;
			__u64 shifted = (__u64)c << ((len & 7) * 8);
			if (len < 8)
				w0 |= shifted;
			else
				w1 |= shifted;
			len++;
			continue;
		}
		if (c == '+' || c == '-' || c == '.' || c == '(' || c == ')')
			continue;
		if (c != '@' && c != ';' && c != ' ' && c != '>')
			return 0;
		ended = 1;
		break;
	}
	if (!ended || len == 0)
		return 0;

	for (__u32 i = 0; i < DCE_MAX_EMERGENCY_NUMBERS; i++) {
		__u32 key = i;
		struct dce_emergency_number *e = bpf_map_lookup_elem(&emergency_numbers, &key);
		if (!e || e->len == 0)
			return 0;
		__u64 e0, e1;
		__builtin_memcpy(&e0, e->digits, 8);
		__builtin_memcpy(&e1, e->digits + 8, 8);
		if (e->len == len && e0 == w0 && e1 == w1)
			return 1;
	}
	return 0;
}

/* Global (non-static) functions are verified once each, on their own, so the
 * header scan below does not multiply the verifier's work by every line
 * position. They take the context and scalars only. */

/* 1 when the header value at off (up to end_off) starts with a signature
 * whose kinds include `kind`. */
__noinline int dce_value_is_scanner(struct xdp_md *ctx, __u32 off, __u32 end_off, __u32 kind)
{
	__u64 v[DCE_SIGNATURE_WORDS] = {};

	if (off >= end_off || off > DCE_MAX_OFFSET || end_off > DCE_MAX_OFFSET + 1)
		return 0;
	__u32 n = end_off - off;
	if (n > DCE_SIGNATURE_MAX_LEN)
		n = DCE_SIGNATURE_MAX_LEN;
	if (n < 1)
		return 0;
	if (bpf_xdp_load_bytes(ctx, off, v, dce_len_in_range(n, DCE_SIGNATURE_MAX_LEN)) < 0)
		return 0;

	__u32 zero = 0;
	struct dce_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return 0;
	__u8 first = (v[0] & 0xff) | 0x20;
	__u32 set = kind == DCE_SIG_FROM_NAME;
	if (!((cfg->sig_first[set][first >> 6] >> (first & 63)) & 1))
		return 0;

	for (__u32 i = 0; i < DCE_MAX_SIGNATURES; i++) {
		__u32 key = i;
		struct dce_signature *s = bpf_map_lookup_elem(&signatures, &key);
		if (!s || s->len == 0)
			return 0;
		if (!(s->kinds & kind))
			continue;
		if (((v[0] | s->fold[0]) & s->mask[0]) != s->word[0])
			continue;
		if (((v[1] | s->fold[1]) & s->mask[1]) != s->word[1])
			continue;
		if (((v[2] | s->fold[2]) & s->mask[2]) != s->word[2])
			continue;
		if (((v[3] | s->fold[3]) & s->mask[3]) != s->word[3])
			continue;
		return 1;
	}
	return 0;
}

enum line_kind {
	LINE_OTHER = 0,
	LINE_END = 1,     /* the empty line that ends the headers */
	LINE_SCANNER = 2,
};

/* Skips *(SP / HTAB) from off; returns the new offset. */
static __always_inline __u32 skip_ws(struct xdp_md *ctx, __u32 off)
{
#pragma unroll
	for (int i = 0; i < 8; i++) {
		__u8 *c = pkt_ptr(ctx, off, 1);
		if (!c || (*c != ' ' && *c != '\t'))
			break;
		off++;
	}
	return off;
}

/* HCOLON = *( SP / HTAB ) ":" SWS (RFC 3261 section 25.1), simplified to
 * blanks on one line. Returns the offset after it, or 0 when absent. */
static __always_inline __u32 skip_hcolon(struct xdp_md *ctx, __u32 off)
{
	off = skip_ws(ctx, off);
	__u8 *c = pkt_ptr(ctx, off, 1);
	if (!c || *c != ':')
		return 0;
	return skip_ws(ctx, off + 1);
}

/* Looks at the header line starting at off: the end of the headers, a
 * User-Agent or From header whose value is a scanner's, or anything else. */
__noinline int dce_check_line(struct xdp_md *ctx, __u32 off, __u32 end_off)
{
	if (off > DCE_MAX_OFFSET || end_off > DCE_MAX_OFFSET + 1 || off >= end_off)
		return LINE_OTHER;
	__u8 *p = pkt_ptr(ctx, off, 1);
	if (!p)
		return LINE_OTHER;
	if (*p == '\r' || *p == '\n')
		return LINE_END;

	__u8 c = *p | 0x20;
	if (c == 'u') {
		/* "User-Agent" (no compact form) */
		__u8 *h = pkt_ptr(ctx, off, 10);
		if (!h)
			return LINE_OTHER;
		__u64 w;
		__builtin_memcpy(&w, h, 8);
		/* "user-age" as a little-endian word; | 0x20 folds the letters. */
		if ((w | 0x2020202020202020ULL) != 0x6567612d72657375ULL)
			return LINE_OTHER;
		if ((h[8] | 0x20) != 'n' || (h[9] | 0x20) != 't')
			return LINE_OTHER;
		__u32 v = skip_hcolon(ctx, off + 10);
		if (!v)
			return LINE_OTHER;
		return dce_value_is_scanner(ctx, v, end_off, DCE_SIG_USER_AGENT) ? LINE_SCANNER
										 : LINE_OTHER;
	}
	if (c == 'f') {
		/* "From", or its compact form "f" (RFC 3261 section 7.3.3) */
		__u32 name_end = off + 1;
		__u8 *h = pkt_ptr(ctx, off, 4);
		if (h && (h[1] | 0x20) == 'r' && (h[2] | 0x20) == 'o' && (h[3] | 0x20) == 'm')
			name_end = off + 4;
		__u32 v = skip_hcolon(ctx, name_end);
		if (!v)
			return LINE_OTHER;
		__u8 *q = pkt_ptr(ctx, v, 1);
		if (q && *q == '"')
			v++;
		return dce_value_is_scanner(ctx, v, end_off, DCE_SIG_FROM_NAME) ? LINE_SCANNER
										: LINE_OTHER;
	}
	return LINE_OTHER;
}

/* 1 when a header line in the first DCE_SCAN_BYTES of the message carries a
 * scanner signature. Finds line feeds eight bytes at a time (the classic
 * "has zero byte" test on the word xor '\n'), then looks at each line. */
__noinline int dce_scan_headers(struct xdp_md *ctx, __u32 off, __u32 end_off)
{
	if (off > DCE_MAX_OFFSET || end_off > DCE_MAX_OFFSET + 1)
		return 0;
	if (end_off > off + DCE_SCAN_BYTES)
		end_off = off + DCE_SCAN_BYTES;

	for (int w = 0; w < DCE_SCAN_BYTES / 8; w++) {
		if (off + 8 > end_off)
			break;
		__u8 *p = pkt_ptr(ctx, off, 8);
		if (!p)
			break;
		__u64 v;
		__builtin_memcpy(&v, p, 8);
		__u64 x = v ^ 0x0a0a0a0a0a0a0a0aULL;
		if ((x - 0x0101010101010101ULL) & ~x & 0x8080808080808080ULL) {
			for (int j = 0; j < 8; j++) {
				if (((v >> (j * 8)) & 0xff) != '\n')
					continue;
				if (j < 7) {
					/* The line's first byte is in this word: skip the
					 * call unless it can start User-Agent, From, f, or
					 * the empty line. */
					__u8 first = (v >> ((j + 1) * 8)) & 0xff;
					__u8 folded = first | 0x20;
					if (first != '\r' && first != '\n' && folded != 'u' &&
					    folded != 'f')
						continue;
				}
				int r = dce_check_line(ctx, off + j + 1, end_off);
				if (r == LINE_SCANNER)
					return 1;
				if (r == LINE_END)
					return 0;
			}
		}
		off += 8;
	}
	return 0;
}

/* ------------------------------------------------------------- verdicts */

struct verdict {
	__u32 action;
	__u32 slot; /* enum dce_counter, a verdict slot */
};

struct clock {
	__u64 now;
};

static __always_inline __u64 clock_now(struct clock *clk)
{
	if (!clk->now)
		clk->now = bpf_ktime_get_ns();
	return clk->now;
}

static __always_inline int listed(void *map4, void *map6, const struct packet *pkt)
{
	if (pkt->ipv6)
		return bpf_map_lookup_elem(map6, &pkt->key6) != 0;
	return bpf_map_lookup_elem(map4, &pkt->key4) != 0;
}

/* An unexpired operator ban covering the source. An expired entry is
 * skipped by looking again with a shorter prefix, so an expired /32 never
 * hides an active /24 behind it (up to four entries deep). */
static __always_inline int operator_banned(const struct packet *pkt, struct clock *clk,
					   struct dce_counters *cnt)
{
	struct dce_lpm_v4 k4 = pkt->key4;
	struct dce_lpm_v6 k6 = pkt->key6;

#pragma unroll
	for (int i = 0; i < 4; i++) {
		struct dce_ban *b = pkt->ipv6 ? bpf_map_lookup_elem(&bans_v6, &k6)
					      : bpf_map_lookup_elem(&bans_v4, &k4);
		if (!b)
			return 0;
		if (b->expires_ns > clock_now(clk))
			return 1;
		cnt->slot[DCE_EV_BAN_EXPIRED]++;
		__u32 shorter = b->prefixlen;
		if (shorter == 0)
			return 0;
		k4.prefixlen = shorter - 1;
		k6.prefixlen = shorter - 1;
	}
	return 0;
}

/* An unexpired automatic ban of the source (its address, or its /64). */
static __always_inline int auto_banned(const struct packet *pkt, struct clock *clk,
				       struct dce_counters *cnt)
{
	struct dce_ban *b = bpf_map_lookup_elem(&auto_bans, &pkt->source);

	if (!b)
		return 0;
	if (b->expires_ns > clock_now(clk))
		return 1;
	cnt->slot[DCE_EV_BAN_EXPIRED]++;
	return 0;
}

/* GCRA on one of this CPU's budgets, whose state is `tat`: 1 when spent.
 * Checks only; *next is what the state becomes if the packet is charged. */
static __always_inline int cpu_budget_spent(__u64 tat, const struct dce_rate *rate,
					    struct clock *clk, __u64 *next)
{
	__u64 now = clock_now(clk);

	if (tat < now)
		tat = now;
	if (tat - now > rate->tolerance_ns)
		return 1;
	*next = tat + rate->interval_ns;
	return 0;
}

/* Bans a verified scanner's source (its address, or its /64) for
 * cfg->ban_ttl_ns in auto_bans, within this CPU's auto-ban budget. Never
 * shortens a ban already there: one that lasts at least as long is kept. */
static __always_inline void auto_ban(const struct packet *pkt, const struct dce_config *cfg,
				     struct dce_overload *o, struct clock *clk,
				     struct dce_counters *cnt)
{
	__u64 next = 0;

	if (!o || cpu_budget_spent(o->auto_ban_tat, &cfg->auto_ban, clk, &next)) {
		cnt->slot[DCE_EV_AUTO_BAN_LIMITED]++;
		return;
	}
	o->auto_ban_tat = next;

	struct dce_ban ban = {};
	__u64 now = clock_now(clk);
	ban.banned_ns = now;
	ban.expires_ns = now + cfg->ban_ttl_ns;
	ban.reason = DCE_BAN_SCANNER;
	ban.prefixlen = pkt->ipv6 ? 64 : 32;
	/* An unexpired ban here was written since the ban check (by another
	 * CPU or by userspace); a longer one stays. */
	struct dce_ban *old = bpf_map_lookup_elem(&auto_bans, &pkt->source);
	if (old && old->expires_ns >= ban.expires_ns)
		return;
	long err = bpf_map_update_elem(&auto_bans, &pkt->source, &ban, BPF_ANY);
	cnt->slot[err ? DCE_EV_AUTO_BAN_FAILED : DCE_EV_AUTO_BAN]++;
}

/* GCRA: admit when the theoretical arrival time is at most the tolerance
 * ahead of now, then move it on by one interval. Updates race benignly
 * when one source's packets land on several CPUs at once (a few packets
 * over the burst at worst); the budget is a shield, not an invoice. */
static __always_inline int over_budget(const struct packet *pkt, const struct dce_config *cfg,
				       int class, struct clock *clk)
{
	__u32 c = class;
	if (c >= DCE_CLASSES)
		c = DCE_CLASS_OTHER;
	asm volatile("" : "+r"(c));
	c &= DCE_CLASS_SLOTS - 1;
	__u64 interval = cfg->rates[c].interval_ns;
	__u64 tolerance = cfg->rates[c].tolerance_ns;
	__u64 now = clock_now(clk);

	struct dce_bucket *b = bpf_map_lookup_elem(&buckets, &pkt->source);
	if (!b) {
		struct dce_bucket fresh = {};
		fresh.tat[c] = now + interval;
		bpf_map_update_elem(&buckets, &pkt->source, &fresh, BPF_NOEXIST);
		return 0;
	}
	__u64 tat = b->tat[c];
	if (tat < now)
		tat = now;
	if (tat - now > tolerance)
		return 1;
	b->tat[c] = tat + interval;
	return 0;
}

/* The source's SYN budget (config.syn, GCRA as in over_budget): 1 when
 * spent. Charged when checked, so a source's refused SYNs spend its own
 * budget, nobody else's. */
static __always_inline int syn_over_budget(const struct packet *pkt, const struct dce_config *cfg,
					   struct clock *clk)
{
	__u64 now = clock_now(clk);
	struct dce_syn_bucket *b = bpf_map_lookup_elem(&syn_buckets, &pkt->source);

	if (!b) {
		struct dce_syn_bucket fresh = {.tat = now + cfg->syn.interval_ns};
		bpf_map_update_elem(&syn_buckets, &pkt->source, &fresh, BPF_NOEXIST);
		return 0;
	}
	__u64 tat = b->tat;
	if (tat < now)
		tat = now;
	if (tat - now > cfg->syn.tolerance_ns)
		return 1;
	b->tat = tat + cfg->syn.interval_ns;
	return 0;
}

/* A source that proved it receives our responses at its address, and
 * whose verification has not expired. */
static __always_inline int is_verified(const struct packet *pkt, struct clock *clk)
{
	struct dce_verified *v = bpf_map_lookup_elem(&verified, &pkt->source);

	return v && v->expires_ns > clock_now(clk);
}

/* This CPU's budgets, with the overload cap's one-second window rolled
 * over when it has ended. NULL cannot happen (a one-entry per-CPU array). */
static __always_inline struct dce_overload *cpu_budgets(struct clock *clk)
{
	__u32 zero = 0;
	struct dce_overload *o = bpf_map_lookup_elem(&overload, &zero);
	__u64 now = clock_now(clk);

	if (o && now - o->window_start_ns >= 1000000000ULL) {
		o->window_start_ns = now;
		o->count = 0;
	}
	return o;
}

/* A source whose emergency call userspace forwarded, not yet expired. */
static __always_inline int in_emergency_call(const struct packet *pkt, struct clock *clk)
{
	struct dce_emergency_source *e = bpf_map_lookup_elem(&emergency_sources, &pkt->source);

	return e && e->expires_ns > clock_now(clk);
}

/* Whether the packet, a SIP message, is part of an emergency call. */
static __always_inline int is_emergency(struct xdp_md *ctx, const struct packet *pkt,
					struct clock *clk)
{
	return dce_emergency_uri(ctx, pkt->payload_off, pkt->payload_end) ||
	       in_emergency_call(pkt, clk);
}

static __always_inline void note_drop(const struct packet *pkt, __u32 reason, struct clock *clk)
{
	__u64 now = clock_now(clk);
	struct dce_top_source *t = bpf_map_lookup_elem(&top_sources, &pkt->source);

	if (t) {
		__sync_fetch_and_add(&t->drops, 1);
		t->last_ns = now;
		t->last_reason = reason;
		return;
	}
	struct dce_top_source fresh = {.drops = 1, .last_ns = now, .last_reason = reason};
	bpf_map_update_elem(&top_sources, &pkt->source, &fresh, BPF_NOEXIST);
}

/* ---------------------------------------------------------- forensics */

/* Armed by `dce-edge capture` (struct dce_capture); see dce_filter.h. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dce_capture);
} capture SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, DCE_CAPTURE_RING_BYTES);
} capture_ring SEC(".maps");

/* Fills a reserved record with the frame's first bytes. Not inlined: its
 * prototype puts struct dce_capture_record into the object's BTF, where
 * the ABI test holds the generated Rust layout against it. */
static __noinline void capture_fill(struct xdp_md *ctx, struct dce_capture_record *r, __u32 reason,
				    __u64 now)
{
	__u32 frame_len = ctx->data_end - ctx->data;
	__u32 len = frame_len < DCE_CAPTURE_BYTES ? frame_len : DCE_CAPTURE_BYTES;

	r->ts_ns = now;
	r->reason = reason;
	r->frame_len = frame_len;
	r->ifindex = ctx->ingress_ifindex;
	r->rx_queue = ctx->rx_queue_index;
	r->_pad = 0;
	r->captured_len = 0;
	/* The ring's memory holds earlier records: nothing of them may show. */
	__builtin_memset(r->data, 0, sizeof(r->data));
	if (len && bpf_xdp_load_bytes(ctx, 0, r->data, dce_len_in_range(len, DCE_CAPTURE_BYTES)) == 0)
		r->captured_len = len;
}

/* Copies a matching drop's first bytes into capture_ring. Only reached
 * while a capture is armed. */
static __always_inline void capture_armed(struct xdp_md *ctx, const struct packet *pkt,
					  __u32 reason, struct clock *clk, struct dce_capture *c)
{
	if (c->reason_mask && !(c->reason_mask & (1u << (reason & 31))))
		return;
	__u64 w0, w1;
	__builtin_memcpy(&w0, &pkt->source.addr[0], 8);
	__builtin_memcpy(&w1, &pkt->source.addr[8], 8);
	if ((w0 & c->source_mask[0]) != c->source_net[0] ||
	    (w1 & c->source_mask[1]) != c->source_net[1])
		return;
	/* Claim a place first: however many CPUs race, at most count drops
	 * get one, and a reader that died leaves the capture bounded. */
	if (__sync_fetch_and_add(&c->taken, 1) >= c->count)
		return;
	struct dce_capture_record *r = bpf_ringbuf_reserve(&capture_ring, sizeof(*r), 0);
	if (!r) {
		__sync_fetch_and_add(&c->lost, 1);
		return;
	}
	capture_fill(ctx, r, reason, clock_now(clk));
	bpf_ringbuf_submit(r, 0);
}

/* Every drop passes here. Unarmed, it costs one load and compare of the
 * capture entry (an ARRAY lookup the verifier turns into an address). */
static __always_inline void capture_drop(struct xdp_md *ctx, const struct packet *pkt,
					 __u32 reason, struct clock *clk)
{
	__u32 zero = 0;
	struct dce_capture *c = bpf_map_lookup_elem(&capture, &zero);

	if (!c || c->taken >= c->count)
		return;
	capture_armed(ctx, pkt, reason, clk, c);
}

#define DROP(reason) ((struct verdict){XDP_DROP, (reason)})
#define PASS(slot) ((struct verdict){XDP_PASS, (slot)})
/* A budget's drop, of an emergency call's packet over its own budgets too. */
#define BUDGET_DROP(reason) DROP(emergency_spent ? DCE_DROP_EMERGENCY_OVER_BUDGET : (reason))

/* Good SIP: to the queue's AF_XDP socket (appliance mode, a socket bound),
 * else to the kernel. */
static __always_inline struct verdict to_userspace(struct xdp_md *ctx,
						   const struct dce_config *cfg)
{
	if (cfg->flags & DCE_CFG_REDIRECT) {
		/* XDP_PASS when no AF_XDP socket is bound to this queue. */
		long act = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
		if (act == XDP_REDIRECT)
			return (struct verdict){XDP_REDIRECT, DCE_REDIRECTED};
	}
	return PASS(DCE_PASSED);
}

/* TCP to a SIP TCP port (SIP over TCP or TLS; the TCP part of the verdict
 * order at the top). The lists and the bans apply to every segment, so a
 * banned source can neither open a connection nor go on using one. Only
 * SYNs (SYN set, ACK clear) pay budgets: segments of an established
 * connection are the kernel's TCP state to judge, and a forged one is
 * refused there. The per-CPU SYN budget is checked first and charged only
 * by the SYNs that pass, so forged sources that spent it are shed without
 * touching syn_buckets; allowlisted sources skip both budgets, verified
 * ones the per-CPU budget (they still meet their own). No emergency
 * reach-through: a SYN carries no Request-URI to tell. Returns the verdict
 * slot: a drop reason drops, anything else passes. (Not inlined: it keeps
 * the TCP branch's code and its verification apart from the UDP path's.) */
static __noinline __u32 decide_tcp(const struct dce_config *cfg, struct dce_counters *cnt,
				   struct packet *pkt, struct clock *clk)
{
	if (listed(&allow_v4, &allow_v6, pkt))
		return DCE_PASSED_STREAM;
	if (listed(&block_v4, &block_v6, pkt))
		return DCE_DROP_BLOCKLIST;
	if (operator_banned(pkt, clk, cnt) || auto_banned(pkt, clk, cnt))
		return DCE_DROP_BANNED;
	if (pkt->first_fragment) {
		if (!(cfg->flags & DCE_CFG_FRAGMENTS_PASS))
			return DCE_DROP_FRAGMENT;
		cnt->slot[DCE_EV_FRAGMENT_PASSED]++;
		return DCE_PASSED_STREAM;
	}
	if (!pkt->tcp_syn)
		return DCE_PASSED_STREAM;

	int verified = is_verified(pkt, clk);
	struct dce_overload *o = cpu_budgets(clk);
	__u64 syn_tat = 0;
	if (o && !verified && cpu_budget_spent(o->syn_tat, &cfg->syn_cpu, clk, &syn_tat))
		return DCE_DROP_SYN_OVERLOAD;
	if (syn_over_budget(pkt, cfg, clk))
		return DCE_DROP_SYN_RATE_LIMIT;
	if (o && !verified)
		o->syn_tat = syn_tat;
	return DCE_PASSED_STREAM;
}

static __always_inline struct verdict decide(struct xdp_md *ctx, const struct dce_config *cfg,
					     struct dce_counters *cnt, struct packet *pkt,
					     struct clock *clk)
{
	int r = parse_frame(ctx, cfg, pkt);
	if (r == PARSE_OTHER)
		return PASS(DCE_PASSED_OTHER);
	if (r == PARSE_TCP_SIP_PORT) {
		__u32 slot = decide_tcp(cfg, cnt, pkt, clk);
		return slot < DCE_DROP_REASONS ? DROP(slot) : PASS(slot);
	}
	if (r == PARSE_MALFORMED)
		return DROP(DCE_DROP_MALFORMED);

	int allowlisted = listed(&allow_v4, &allow_v6, pkt);
	/* -1: not yet known whether the packet belongs to an emergency call. */
	int emergency = -1;
	/* 1: an emergency call's packet reached past a ban or the blocklist. */
	int bypassed = 0;
	if (allowlisted) {
		cnt->slot[DCE_EV_ALLOWLISTED]++;
	} else {
		int blocked = listed(&block_v4, &block_v6, pkt);
		int banned = !blocked && (operator_banned(pkt, clk, cnt) || auto_banned(pkt, clk, cnt));
		if (blocked || banned) {
			/* Emergency calls reach through, unless the operator keeps
			 * bans for them too. */
			if (!(cfg->flags & DCE_CFG_EMERGENCY_KEEP_BANS) && !pkt->first_fragment &&
			    dce_sip_class(ctx, pkt->payload_off, pkt->payload_end) != SIP_NOT)
				emergency = is_emergency(ctx, pkt, clk);
			if (emergency != 1)
				return DROP(blocked ? DCE_DROP_BLOCKLIST : DCE_DROP_BANNED);
			bypassed = 1;
		}
	}

	if (pkt->first_fragment) {
		if (!(cfg->flags & DCE_CFG_FRAGMENTS_PASS))
			return DROP(DCE_DROP_FRAGMENT);
		/* AF_XDP workers do not reassemble: fragments go to the kernel. */
		cnt->slot[DCE_EV_FRAGMENT_PASSED]++;
		return PASS(DCE_PASSED);
	}

	int class = dce_sip_class(ctx, pkt->payload_off, pkt->payload_end);
	if (class == SIP_NOT)
		return DROP(DCE_DROP_NOT_SIP);

	/* Emergency calls skip the budgets, rate limits, the overload cap and
	 * the scan, within budgets of their own: their source's (so one address
	 * cannot spend the rest) and this CPU's (so a spoofed flood of them
	 * cannot reach userspace faster than that). Over either, the packet
	 * takes the ordinary path (a verified caller still passes there), and
	 * a budget drop there is counted as emergency_over_budget. One that
	 * reached here through a ban or the blocklist is dropped as such. */
	int emergency_spent = 0;
	if (!allowlisted) {
		if (emergency < 0)
			emergency = is_emergency(ctx, pkt, clk);
		if (emergency) {
			struct dce_overload *eo = cpu_budgets(clk);
			__u64 tat = 0;
			if (eo && cpu_budget_spent(eo->emergency_tat, &cfg->emergency, clk, &tat))
				emergency_spent = 1;
			else if (over_budget(pkt, cfg, DCE_CLASS_EMERGENCY, clk))
				emergency_spent = 1;
			if (!emergency_spent) {
				if (eo)
					eo->emergency_tat = tat;
				cnt->slot[DCE_EV_EMERGENCY_PASSED]++;
				return to_userspace(ctx, cfg);
			}
			if (bypassed)
				return DROP(DCE_DROP_EMERGENCY_OVER_BUDGET);
		}
	}

	int verified = !allowlisted && is_verified(pkt, clk);
	if (verified)
		cnt->slot[DCE_EV_VERIFIED]++;
	int trusted = allowlisted || verified;
	struct dce_overload *o = cpu_budgets(clk);
	__u64 unverified_tat = 0;
	if (o && !trusted &&
	    cpu_budget_spent(o->unverified_tat, &cfg->unverified, clk, &unverified_tat))
		return BUDGET_DROP(DCE_DROP_UNVERIFIED);
	if (!allowlisted && over_budget(pkt, cfg, class, clk))
		return BUDGET_DROP(DCE_DROP_RATE_LIMIT);
	if (o && o->count >= cfg->overload_cap)
		return BUDGET_DROP(DCE_DROP_OVERLOAD);

	if (dce_scan_headers(ctx, pkt->payload_off, pkt->payload_end)) {
		if (!trusted) {
			/* Its source may be forged: the packet is dropped, nobody
			 * is banned, and the scan is paid from the budget of
			 * unverified sources. */
			if (o)
				o->unverified_tat = unverified_tat;
			if (cfg->flags & DCE_CFG_AUTO_BAN)
				cnt->slot[DCE_EV_SCANNER_UNPROVEN]++;
		} else if (verified && (cfg->flags & DCE_CFG_AUTO_BAN)) {
			auto_ban(pkt, cfg, o, clk, cnt);
		}
		return DROP(DCE_DROP_SCANNER);
	}

	/* Going to userspace: charge this CPU's budgets. */
	if (o) {
		o->count++;
		if (!trusted)
			o->unverified_tat = unverified_tat;
	}

	return to_userspace(ctx, cfg);
}

SEC("xdp")
int dce_filter(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct dce_config *cfg = bpf_map_lookup_elem(&config, &zero);
	struct dce_counters *cnt = bpf_map_lookup_elem(&counters, &zero);

	if (!cfg || !cnt)
		return XDP_PASS; /* cannot happen: one-entry arrays always exist */

	struct packet pkt = {};
	struct clock clk = {};
	struct verdict v = decide(ctx, cfg, cnt, &pkt, &clk);

	__u32 slot = v.slot;
	if (slot >= DCE_VERDICT_SLOTS)
		slot = DCE_DROP_MALFORMED;
	cnt->slot[slot]++;
	if (v.action == XDP_DROP) {
		if (pkt.have_source)
			note_drop(&pkt, slot, &clk);
		capture_drop(ctx, &pkt, slot, &clk);
	}
	return v.action;
}
