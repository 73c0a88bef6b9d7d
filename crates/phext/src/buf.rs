//! A 64-byte-aligned buffer addressed through a raw pointer.
//!
//! Pages hand out `&[u8]` / `&mut [u8]` into this memory under their own locks (see
//! `page.rs`), and an arena is shared by many pages, each owning a disjoint range. Holding
//! the memory behind a raw pointer (not a `Vec` or `Box` that Rust treats as uniquely
//! borrowed) is what makes those per-range borrows sound.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

use memmap2::MmapMut;

/// Alignment of every page's first byte: one cache line, and enough for AVX-512 loads.
pub const PAGE_ALIGN: usize = 64;

/// From this size on, buffers are anonymous memory mappings instead of heap blocks. Why:
/// the global allocator has no aligned calloc, so a 64-byte-aligned zeroed heap block is
/// `posix_memalign` + a user-space memset that faults in every 4 KiB page one by one; an
/// anonymous mapping is zeroed by the kernel, may use transparent huge pages, and is
/// pre-faulted in one call.
const ANON_THRESHOLD: usize = 2 << 20;

#[repr(C, align(64))]
struct Line([u8; PAGE_ALIGN]);

/// How a new buffer will be used.
#[derive(Clone, Copy)]
enum Fill {
    /// Zeroed, and written a little at a time if ever (a KV cache, a scratch page):
    /// faulted in as it is touched, 4 KiB at a time.
    Lazy,
    /// Written in full right away: populated up front, with huge pages where the
    /// kernel has them; zeroed first only when `zero` (else the caller fills all of it).
    Now { zero: bool },
}

/// Owned, initialised, 64-byte-aligned bytes. Freed on drop.
pub(crate) struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    /// `Some` for large buffers (see `ANON_THRESHOLD`); `None`: a heap block of `len`
    /// bytes, or nothing when `len == 0`.
    anon: Option<MmapMut>,
}

// SAFETY: AlignedBuf is plain owned memory with no thread affinity. It never creates
// references itself (except through `&mut self`); whoever reads or writes through
// `as_ptr` is responsible for synchronisation (pages do it with a per-page lock over a
// disjoint range).
unsafe impl Send for AlignedBuf {}
// SAFETY: see Send; `&AlignedBuf` only exposes the pointer and the length.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// `len` zero bytes at a 64-byte-aligned address; `None` if the memory is refused.
    pub(crate) fn zeroed(len: usize) -> Option<AlignedBuf> {
        AlignedBuf::allocate(len, Fill::Lazy)
    }

    /// Like [`AlignedBuf::zeroed`], for a buffer the caller is about to write in full
    /// (a page filled at load: repacked weights, a sidecar read into memory). A large one
    /// is asked for transparent huge pages and populated up front, as [`Self::copy_of`]'s
    /// are. Why: decode streams the weights once per token, and with 4 KiB pages every
    /// 4 KiB is a TLB miss; measured on the dev machine (Zen 4 under KVM, 2 threads,
    /// tg64) with huge pages for all anonymous memory: SmolLM2 Q4_0 1.26x, Qwen2.5 Q4_K_M
    /// 1.14x.
    pub(crate) fn zeroed_for_fill(len: usize) -> Option<AlignedBuf> {
        AlignedBuf::allocate(len, Fill::Now { zero: true })
    }

    /// A copy of `bytes` in a new aligned buffer.
    pub(crate) fn copy_of(bytes: &[u8]) -> Option<AlignedBuf> {
        // Not zeroed first: every byte is written right here, before any borrow exists.
        let buf = AlignedBuf::allocate(bytes.len(), Fill::Now { zero: false })?;
        // SAFETY: buf is freshly allocated with bytes.len() bytes and not yet shared.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.as_ptr(), bytes.len()) };
        Some(buf)
    }

    /// `len` bytes, zeroed unless `Fill::Now { zero: false }` (anonymous mappings always
    /// are). A heap block allocated with `zero: false` is uninitialised: the caller must
    /// fill all of it before anything borrows it.
    fn allocate(len: usize, fill: Fill) -> Option<AlignedBuf> {
        let zero = !matches!(fill, Fill::Now { zero: false });
        if len == 0 {
            // A dangling but aligned, non-null pointer: valid for zero-length slices.
            return Some(AlignedBuf {
                ptr: NonNull::<Line>::dangling().cast(),
                len: 0,
                anon: None,
            });
        }
        if len >= ANON_THRESHOLD {
            let mut map = MmapMut::map_anon(len).ok()?;
            #[cfg(target_os = "linux")]
            {
                // Hints only: without THP or MADV_POPULATE_WRITE (Linux < 5.14) the
                // mapping still holds correct, lazily faulted zero pages. A buffer about
                // to be filled is populated up front (one pass instead of a fault per
                // page); a lazy one is left to fault in as it is used, so a KV cache
                // sized for a long context costs memory only for the positions written
                // (and gets no huge pages either: one touch would fault in 2 MiB).
                if matches!(fill, Fill::Now { .. }) {
                    let _ = map.advise(memmap2::Advice::HugePage);
                    let _ = map.advise(memmap2::Advice::PopulateWrite);
                }
            }
            // Page aligned, hence 64-byte aligned.
            let ptr = NonNull::new(map.as_mut_ptr())?;
            return Some(AlignedBuf {
                ptr,
                len,
                anon: Some(map),
            });
        }
        let layout = Layout::from_size_align(len, PAGE_ALIGN).ok()?;
        // SAFETY: layout has non-zero size.
        let raw = unsafe {
            if zero {
                alloc::alloc_zeroed(layout)
            } else {
                alloc::alloc(layout)
            }
        };
        NonNull::new(raw).map(|ptr| AlignedBuf {
            ptr,
            len,
            anon: None,
        })
    }

    /// Start of the buffer (64-byte aligned).
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The whole buffer, mutably. Only for a buffer not yet shared with any page.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: we own `len` initialised bytes (zeroed, or filled by copy_of) and
        // `&mut self` proves no other borrow of them exists.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.len == 0 || self.anon.is_some() {
            return; // nothing to free, or the mapping unmaps itself
        }
        if let Ok(layout) = Layout::from_size_align(self.len, PAGE_ALIGN) {
            // SAFETY: allocated in `allocate` with exactly this layout.
            unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_zeroed() {
        for len in [0usize, 1, 63, 64, 65, 4096, 100_000] {
            let mut b = AlignedBuf::zeroed(len).unwrap();
            assert_eq!(b.as_ptr() as usize % PAGE_ALIGN, 0);
            assert_eq!(b.len(), len);
            assert!(b.as_mut_slice().iter().all(|&x| x == 0));
        }
        let mut c = AlignedBuf::copy_of(&[1, 2, 3]).unwrap();
        assert_eq!(c.as_mut_slice(), &[1, 2, 3]);
    }

    #[test]
    fn large_buffers_are_mapped_zeroed_and_copyable() {
        let mut b = AlignedBuf::zeroed(ANON_THRESHOLD + 100).unwrap();
        assert!(b.anon.is_some());
        assert_eq!(b.as_ptr() as usize % PAGE_ALIGN, 0);
        assert!(b.as_mut_slice().iter().all(|&x| x == 0));
        let src: Vec<u8> = (0..ANON_THRESHOLD + 3).map(|i| i as u8).collect();
        let mut c = AlignedBuf::copy_of(&src).unwrap();
        assert_eq!(c.as_mut_slice(), &src[..]);
        let small: Vec<u8> = (0..1000).map(|i| (i * 7) as u8).collect();
        let mut d = AlignedBuf::copy_of(&small).unwrap();
        assert!(d.anon.is_none());
        assert_eq!(d.as_mut_slice(), &small[..]);
    }

    /// kB of transparent huge pages in the mapping of this process containing `addr`.
    #[cfg(target_os = "linux")]
    fn anon_huge_kb(addr: usize) -> Option<u64> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            let head = line.split_whitespace().next().unwrap_or("");
            if let Some((a, b)) = head.split_once('-') {
                if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
                {
                    inside = (a..b).contains(&addr);
                    continue;
                }
            }
            if inside {
                if let Some(v) = line.strip_prefix("AnonHugePages:") {
                    return v.trim().trim_end_matches("kB").trim().parse().ok();
                }
            }
        }
        None
    }

    #[cfg(target_os = "linux")]
    fn thp_fallbacks() -> u64 {
        let v = std::fs::read_to_string("/proc/vmstat").unwrap_or_default();
        v.lines()
            .find_map(|l| l.strip_prefix("thp_fault_fallback "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// A large buffer filled at once asks for huge pages (and is populated): with THP
    /// enabled ("always" or "madvise") its mapping holds some, unless the kernel had none
    /// to give (counted as a fallback, then the test cannot tell).
    #[test]
    #[cfg(target_os = "linux")]
    fn buffers_filled_at_once_get_huge_pages() {
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .unwrap_or_default();
        if !(thp.contains("[always]") || thp.contains("[madvise]")) {
            return; // no transparent huge pages on this kernel
        }
        let before = thp_fallbacks();
        let mut b = AlignedBuf::zeroed_for_fill(16 << 20).unwrap();
        assert!(b.as_mut_slice().iter().all(|&x| x == 0));
        let huge = anon_huge_kb(b.as_ptr() as usize).expect("the buffer's mapping in smaps");
        if thp_fallbacks() == before {
            assert!(
                huge >= 2048,
                "{huge} kB of huge pages in a 16 MiB filled buffer"
            );
        }
    }

    #[test]
    fn absurd_size_is_refused_not_aborted() {
        assert!(AlignedBuf::zeroed(usize::MAX - 10).is_none());
        assert!(AlignedBuf::zeroed(1 << 62).is_none());
    }
}
