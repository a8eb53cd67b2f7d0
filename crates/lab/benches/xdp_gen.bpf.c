/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The xdp_drop benchmark's second sender: run with BPF_PROG_TEST_RUN in
 * live-frame mode, it turns one template frame (an IPv4 UDP INVITE with a
 * zero UDP checksum) into a flood from `sources` addresses (198.18.128.0
 * upwards) and redirects each copy into the veth `target_ifindex`. The veth's
 * peer then receives xdp_frames with XDP headroom, as from a NIC driver,
 * instead of socket buffers it must copy first.
 */
#include <linux/bpf.h>
#include <linux/types.h>

#define SEC(name) __attribute__((section(name), used))

static long (*bpf_redirect)(__u32 ifindex, __u64 flags) = (void *)BPF_FUNC_redirect;

volatile const __u32 target_ifindex = 0;
volatile const __u32 sources = 1;
/* One generator runs at a time, on one CPU. */
__u32 next_source = 0;

SEC("xdp")
int flood_gen(struct xdp_md *ctx)
{
	__u8 *data = (void *)(long)ctx->data;
	__u8 *end = (void *)(long)ctx->data_end;

	if (data + 34 > end)
		return XDP_ABORTED;
	__u32 i = next_source++;
	if (next_source >= sources)
		next_source = 0;
	/* The source address's last two octets: 198.18.128.0 + i. */
	data[28] = 128 + ((i >> 8) & 0x7f);
	data[29] = i & 0xff;
	/* The IPv4 header checksum again (the sum of 16-bit words does not
	 * depend on their byte order). */
	__u16 *h = (__u16 *)(data + 14);
	__u32 sum = 0;
	h[5] = 0;
#pragma unroll
	for (int w = 0; w < 10; w++)
		sum += h[w];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	h[5] = ~sum & 0xffff;
	return bpf_redirect(target_ifindex, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
