/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The few libbpf-style macros and helper declarations the filter needs, so
 * that building it takes clang and the kernel's UAPI headers only (no
 * libbpf-dev). Helper numbers are the kernel's stable UAPI (enum bpf_func_id
 * in linux/bpf.h).
 */
#ifndef DCE_BPF_DEFS_H
#define DCE_BPF_DEFS_H

#include <linux/bpf.h>
#include <linux/types.h>

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
#undef __always_inline
#define __always_inline inline __attribute__((always_inline))
#define __noinline __attribute__((noinline))

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define dce_htons(x) __builtin_bswap16(x)
#define dce_ntohs(x) __builtin_bswap16(x)
#else
#define dce_htons(x) (x)
#define dce_ntohs(x) (x)
#endif

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value,
				   __u64 flags) = (void *)BPF_FUNC_map_update_elem;
static long (*bpf_map_delete_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_delete_elem;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)BPF_FUNC_ktime_get_ns;
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)BPF_FUNC_redirect_map;
static long (*bpf_xdp_load_bytes)(struct xdp_md *xdp_md, __u32 offset, void *buf,
				  __u32 len) = (void *)BPF_FUNC_xdp_load_bytes;

static void *(*bpf_ringbuf_reserve)(void *ringbuf, __u64 size, __u64 flags) = (void *)BPF_FUNC_ringbuf_reserve;
static void (*bpf_ringbuf_submit)(void *data, __u64 flags) = (void *)BPF_FUNC_ringbuf_submit;

/*
 * A length in [1, max] (max a power of two) that the verifier can prove is
 * in range: clang may not fold the mask away behind the empty asm, and the
 * verifier tracks the mask and the add exactly. Identity for 1 <= n <= max.
 */
#define dce_len_in_range(n, max)                                               \
	({                                                                     \
		__u32 __n = (n);                                               \
		asm volatile("" : "+r"(__n));                                  \
		((__n - 1) & ((max) - 1)) + 1;                                 \
	})

#endif /* DCE_BPF_DEFS_H */
