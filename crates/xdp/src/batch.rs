//! Reading a whole BPF hash map in a few system calls with
//! `BPF_MAP_LOOKUP_BATCH`. The ban and verified maps hold up to 65,536
//! entries each; listing them one `BPF_MAP_GET_NEXT_KEY` and one lookup at a
//! time costs a system call pair per entry (over half a second for a full
//! map in a debug build on the project's machines), too much for the
//! appliance's once-a-second snapshot and "ban map near full" alert.
//!
//! aya 0.14 does not wrap the command, so this module defines the part of
//! `union bpf_attr` it uses (linux/bpf.h, "struct used by BPF_MAP_*_BATCH
//! commands") and calls the `bpf` syscall itself, as `test_run` does.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use aya::maps::MapData;
use aya::Pod;

/// `BPF_MAP_LOOKUP_BATCH` in `enum bpf_cmd`.
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// Entries asked for per system call: 4,096 keys and values of the ban map
/// are under 300 KiB of buffer, and a full map takes 16 calls.
const CHUNK: usize = 4096;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Every entry of the hash (or LRU hash) map `map`, whose keys are `K` and
/// values `V` (the caller checked the sizes: aya's typed map wrappers do).
/// Entries added or removed during the reading may or may not be seen;
/// none is seen twice.
pub(crate) fn hash_entries<K: Pod, V: Pod>(map: &MapData) -> io::Result<Vec<(K, V)>> {
    let (key_size, value_size) = (size_of::<K>(), size_of::<V>());
    let mut out = Vec::new();
    read_batches(map, key_size, value_size, |keys, values, filled| {
        out.reserve(filled);
        for i in 0..filled {
            // SAFETY: the kernel filled `filled` keys and values of exactly
            // these sizes at these offsets, inside the buffers; K and V are
            // Pod (aya's contract: plain data, every bit pattern valid), so
            // an unaligned read of their bytes is a valid value.
            #[allow(unsafe_code)]
            let entry = unsafe {
                (
                    std::ptr::read_unaligned(keys.as_ptr().add(i * key_size) as *const K),
                    std::ptr::read_unaligned(values.as_ptr().add(i * value_size) as *const V),
                )
            };
            out.push(entry);
        }
    })?;
    Ok(out)
}

/// How many entries the hash (or LRU hash) map `map` holds, its keys and
/// values being `key_size` and `value_size` bytes, without decoding them.
pub(crate) fn hash_len(map: &MapData, key_size: usize, value_size: usize) -> io::Result<usize> {
    let mut n = 0;
    read_batches(map, key_size, value_size, |_, _, filled| n += filled)?;
    Ok(n)
}

/// Reads `map` in batches of up to CHUNK entries, handing each batch's
/// keys and values buffers and its number of entries to `batch`.
fn read_batches(
    map: &MapData,
    key_size: usize,
    value_size: usize,
    mut batch: impl FnMut(&[u8], &[u8], usize),
) -> io::Result<()> {
    let mut keys = vec![0u8; CHUNK * key_size];
    let mut values = vec![0u8; CHUNK * value_size];
    // The hash's batch token is its next bucket index (a u32); 8 bytes is room enough.
    let mut token = [0u64; 2];
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                &token[0] as *const u64 as u64
            },
            out_batch: &mut token[1] as *mut u64 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: CHUNK as u32,
            map_fd: map.fd().as_fd().as_raw_fd() as u32,
            ..Default::default()
        };
        // SAFETY: the kernel reads `attr` (size given) and the in_batch
        // token, and writes at most `count` keys and values into `keys` and
        // `values` (sized for CHUNK of each), the out_batch token and
        // `attr.count`; all of them stay alive and unaliased for the call.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &mut attr as *mut BatchAttr,
                size_of::<BatchAttr>() as u32,
            )
        };
        // ENOENT: the end of the map, with the last entries in this batch.
        let done = if rc == 0 {
            false
        } else {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOENT) {
                return Err(e);
            }
            true
        };
        batch(&keys, &values, (attr.count as usize).min(CHUNK));
        if done {
            return Ok(());
        }
        token[0] = token[1];
        first = false;
    }
}
