//! Read-only arrays on transparent huge pages.
//!
//! A route table of a million prefixes is tens of MiB that every lookup
//! touches at a random place. On 4 KiB pages that is one TLB miss per lookup
//! on top of the cache miss, and in a virtual machine a TLB miss walks two
//! sets of page tables. [`HugeSlice`] keeps such an array in its own mapping,
//! aligned to 2 MiB and advised `MADV_HUGEPAGE` before it is first written,
//! so the kernel backs it with 2 MiB pages where it can (transparent huge
//! pages set to `always` or `madvise`). Where it cannot, the array simply
//! lives on small pages: lookups give the same answers either way.
//!
//! Small arrays (under one huge page) stay on the ordinary heap, and so
//! does everything when the crate is built without its `huge-pages` feature
//! (the mapping needs `mmap` and `madvise`; the appliance turns it on).

use std::fmt;
use std::ops::Deref;
use std::ptr::NonNull;

/// The size of a transparent huge page on x86-64 and most arm64 kernels.
pub const HUGE_PAGE: usize = 2 << 20;

/// An immutable array of `T`, on huge pages when it is at least
/// [`HUGE_PAGE`] bytes. Cloning makes an independent copy, also on huge pages.
pub struct HugeSlice<T: Copy> {
    /// Where the values are (inside `storage`), so that reading the array
    /// does not branch on where it lives.
    ptr: NonNull<T>,
    len: usize,
    storage: Storage<T>,
}

// SAFETY: a HugeSlice owns its values exclusively (through `storage`) and
// never writes them after construction: sending or sharing it is as safe as
// sending or sharing a Box<[T]>.
#[allow(unsafe_code)]
unsafe impl<T: Copy + Send> Send for HugeSlice<T> {}
// SAFETY: see above; no interior mutability.
#[allow(unsafe_code)]
unsafe impl<T: Copy + Sync> Sync for HugeSlice<T> {}

enum Storage<T: Copy> {
    Heap(Box<[T]>),
    Mapped(Mapping<T>),
}

/// An anonymous private mapping holding `len` values of `T` at `ptr`.
struct Mapping<T: Copy> {
    ptr: NonNull<T>,
    len: usize,
    /// Bytes mapped at `ptr` (a multiple of [`HUGE_PAGE`]).
    bytes: usize,
}

impl<T: Copy> HugeSlice<T> {
    /// Copies `values` into a new array.
    pub fn from_slice(values: &[T]) -> HugeSlice<T> {
        let bytes = std::mem::size_of_val(values);
        let storage = if bytes < HUGE_PAGE || std::mem::align_of::<T>() > HUGE_PAGE {
            Storage::Heap(values.into())
        } else {
            match Mapping::copy_of(values) {
                Some(m) => Storage::Mapped(m),
                None => Storage::Heap(values.into()),
            }
        };
        HugeSlice::with_storage(storage)
    }

    /// Copies `values` into a new array on the ordinary heap (small pages),
    /// whatever its size: for measuring what huge pages change.
    pub fn on_heap(values: &[T]) -> HugeSlice<T> {
        HugeSlice::with_storage(Storage::Heap(values.into()))
    }

    fn with_storage(storage: Storage<T>) -> HugeSlice<T> {
        let (ptr, len) = match &storage {
            Storage::Heap(b) => (NonNull::from(&**b).cast::<T>(), b.len()),
            Storage::Mapped(m) => (m.ptr, m.len),
        };
        HugeSlice { ptr, len, storage }
    }

    /// True when the array sits in its own huge-page-advised mapping (the
    /// kernel may still have backed some of it with small pages).
    pub fn is_mapped(&self) -> bool {
        matches!(self.storage, Storage::Mapped(_))
    }

    /// Bytes of memory this array holds (whole huge pages when mapped).
    pub fn footprint(&self) -> usize {
        match &self.storage {
            Storage::Heap(b) => std::mem::size_of_val(&**b),
            Storage::Mapped(m) => m.bytes,
        }
    }
}

impl<T: Copy> Mapping<T> {
    /// Without the `huge-pages` feature the crate makes no system calls:
    /// every array stays on the heap.
    #[cfg(not(feature = "huge-pages"))]
    fn copy_of(_values: &[T]) -> Option<Mapping<T>> {
        None
    }

    /// A new mapping, 2 MiB aligned, advised for huge pages, holding a copy of
    /// `values`; `None` if the kernel refuses the mapping.
    #[cfg(feature = "huge-pages")]
    #[allow(unsafe_code)]
    fn copy_of(values: &[T]) -> Option<Mapping<T>> {
        let size = std::mem::size_of_val(values);
        let bytes = size.div_ceil(HUGE_PAGE) * HUGE_PAGE;
        // Map one huge page more than needed, then trim both ends so that
        // what stays starts on a huge-page boundary.
        let over = bytes + HUGE_PAGE;
        // SAFETY: an anonymous private mapping at an address of the kernel's
        // choosing touches no existing memory.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                over,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return None;
        }
        let start = raw as usize;
        let aligned = start.next_multiple_of(HUGE_PAGE);
        let head = aligned - start;
        let tail = over - head - bytes;
        // SAFETY: both ranges lie inside the mapping just made, are page
        // aligned (mmap returns page-aligned memory and HUGE_PAGE is a
        // multiple of the page size) and nothing refers to them.
        unsafe {
            if head > 0 {
                libc::munmap(raw, head);
            }
            if tail > 0 {
                libc::munmap((aligned + bytes) as *mut libc::c_void, tail);
            }
            // Advice only: if the kernel has transparent huge pages off, the
            // mapping keeps small pages and works the same.
            libc::madvise(aligned as *mut libc::c_void, bytes, libc::MADV_HUGEPAGE);
        }
        let ptr = NonNull::new(aligned as *mut T)?;
        // SAFETY: the mapping is `bytes >= size` long, writable, aligned to
        // 2 MiB (more than T needs, checked by the caller) and does not
        // overlap `values`; T is Copy, so a bitwise copy is a valid value.
        unsafe {
            std::ptr::copy_nonoverlapping(values.as_ptr(), ptr.as_ptr(), values.len());
        }
        Some(Mapping {
            ptr,
            len: values.len(),
            bytes,
        })
    }
}

#[cfg(feature = "huge-pages")]
impl<T: Copy> Drop for Mapping<T> {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: the range is exactly the mapping this value owns; no
        // reference to it outlives self.
        unsafe {
            libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.bytes);
        }
    }
}

impl<T: Copy> Deref for HugeSlice<T> {
    type Target = [T];

    #[inline(always)]
    #[allow(unsafe_code)]
    fn deref(&self) -> &[T] {
        // SAFETY: `storage` (a box or a mapping) holds `len` initialised
        // values of T at `ptr` for as long as self lives, never written
        // again; a box's heap memory does not move when the box does.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> Clone for HugeSlice<T> {
    fn clone(&self) -> HugeSlice<T> {
        HugeSlice::from_slice(self)
    }
}

impl<T: Copy> Default for HugeSlice<T> {
    fn default() -> HugeSlice<T> {
        HugeSlice::from_slice(&[])
    }
}

impl<T: Copy + fmt::Debug> fmt::Debug for HugeSlice<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HugeSlice")
            .field("len", &self.len())
            .field("mapped", &self.is_mapped())
            .finish()
    }
}

/// Bytes of this process's memory backed by transparent huge pages
/// (`AnonHugePages` summed over /proc/self/smaps_rollup); `None` where the
/// file is missing.
pub fn process_huge_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    let line = text.lines().find(|l| l.starts_with("AnonHugePages:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_arrays_stay_on_the_heap() {
        let s = HugeSlice::from_slice(&[1u32, 2, 3]);
        assert!(!s.is_mapped());
        assert_eq!(&*s, &[1, 2, 3]);
        let e = HugeSlice::<u64>::default();
        assert!(e.is_empty());
    }

    // Without the feature every array stays on the heap (tested below).
    #[test]
    #[cfg(feature = "huge-pages")]
    fn large_arrays_are_mapped_aligned_and_equal() {
        let values: Vec<u64> = (0..(3 * HUGE_PAGE / 8 + 17) as u64).collect();
        let s = HugeSlice::from_slice(&values);
        assert!(s.is_mapped());
        assert_eq!(s.as_ptr() as usize % HUGE_PAGE, 0);
        assert_eq!(s.footprint(), 4 * HUGE_PAGE);
        assert_eq!(&*s, &values[..]);
        let c = s.clone();
        assert_ne!(c.as_ptr(), s.as_ptr());
        drop(s);
        assert_eq!(&*c, &values[..]);
    }

    #[test]
    fn shares_between_threads() {
        let values: Vec<u32> = (0..HUGE_PAGE as u32).collect();
        let s = std::sync::Arc::new(HugeSlice::from_slice(&values));
        let sums: Vec<u64> = (0..2)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || s.iter().map(|&v| u64::from(v)).sum::<u64>())
            })
            .map(|h| h.join().unwrap())
            .collect();
        assert_eq!(sums[0], sums[1]);
        assert_eq!(sums[0], values.iter().map(|&v| u64::from(v)).sum::<u64>());
    }

    #[test]
    #[cfg(not(feature = "huge-pages"))]
    fn without_the_feature_every_array_stays_on_the_heap() {
        let values: Vec<u64> = (0..(HUGE_PAGE as u64 / 8) * 3).collect();
        let h = HugeSlice::from_slice(&values);
        assert!(!h.is_mapped());
        assert_eq!(&*h, &values[..]);
    }
}
