//! A zeroed, 64-byte-aligned heap buffer addressed through a raw pointer.
//!
//! Pages hand out `&[u8]` / `&mut [u8]` into this memory under their own locks (see
//! `page.rs`), and an arena is shared by many pages, each owning a disjoint range. Holding
//! the memory behind a raw pointer (not a `Vec` or `Box` that Rust treats as uniquely
//! borrowed) is what makes those per-range borrows sound.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

/// Alignment of every page's first byte: one cache line, and enough for AVX-512 loads.
pub const PAGE_ALIGN: usize = 64;

#[repr(C, align(64))]
struct Line([u8; PAGE_ALIGN]);

/// Owned, zero-initialised, 64-byte-aligned bytes. Freed on drop.
pub(crate) struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: AlignedBuf is plain owned memory with no thread affinity. It never creates
// references itself; whoever reads or writes through `as_ptr` is responsible for
// synchronisation (pages do it with a per-page lock over a disjoint range).
unsafe impl Send for AlignedBuf {}
// SAFETY: see Send; `&AlignedBuf` only exposes the pointer and the length.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// `len` zero bytes at a 64-byte-aligned address; `None` if the allocator refuses.
    pub(crate) fn zeroed(len: usize) -> Option<AlignedBuf> {
        if len == 0 {
            // A dangling but aligned, non-null pointer: valid for zero-length slices.
            return Some(AlignedBuf {
                ptr: NonNull::<Line>::dangling().cast(),
                len: 0,
            });
        }
        let layout = Layout::from_size_align(len, PAGE_ALIGN).ok()?;
        // SAFETY: layout has non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        NonNull::new(raw).map(|ptr| AlignedBuf { ptr, len })
    }

    /// A copy of `bytes` in a new aligned buffer.
    pub(crate) fn copy_of(bytes: &[u8]) -> Option<AlignedBuf> {
        let buf = AlignedBuf::zeroed(bytes.len())?;
        // SAFETY: buf is freshly allocated with bytes.len() bytes and not yet shared.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.as_ptr(), bytes.len()) };
        Some(buf)
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
        // SAFETY: we own the allocation of `len` initialised (zeroed) bytes and `&mut self`
        // proves no other borrow of it exists.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.len == 0 {
            return;
        }
        if let Ok(layout) = Layout::from_size_align(self.len, PAGE_ALIGN) {
            // SAFETY: allocated in `zeroed` with exactly this layout.
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
        let c = AlignedBuf::copy_of(&[1, 2, 3]).unwrap();
        // SAFETY: 3 initialised bytes.
        assert_eq!(unsafe { std::slice::from_raw_parts(c.as_ptr(), 3) }, &[1, 2, 3]);
    }

    #[test]
    fn absurd_size_is_refused_not_aborted() {
        assert!(AlignedBuf::zeroed(usize::MAX - 10).is_none());
    }
}
