//! Pages: a contiguous, 64-byte-aligned byte range at one coordinate, with a dtype and a
//! shape `[rows, cols]`, shared between sentron threads as `Arc<Page>`.
//!
//! Concurrency model (why this is sound):
//! - A writable page keeps its bytes behind a per-page `RwLock<()>`; every `&[u8]` or
//!   `&mut [u8]` to them is created while that lock is held (shared or exclusive), so a
//!   writer never overlaps a reader. Scatters and gathers are bulk copies, so one lock per
//!   access costs little next to the copy.
//! - A read-only page (Mapped, or Owned/Scratch frozen at creation) has no lock: its bytes
//!   never change after construction, so `view()` hands out a plain `&[u8]` for zero-copy
//!   tiles.
//! - Pages placed in one arena each own a disjoint range of it; nothing ever borrows the
//!   arena as a whole once pages exist.

use std::fmt;
use std::ptr::NonNull;
use std::sync::{Arc, PoisonError, RwLock};

use memmap2::Mmap;

use crate::buf::{AlignedBuf, PAGE_ALIGN};

/// Alignment a mapped (zero-copy, read-only) page needs: 32 bytes, GGUF's default
/// `general.alignment`, so a model file's tensors map in place. Every kernel reads
/// pages with unaligned SIMD loads; 32 keeps f32 / f16 elements naturally aligned and
/// AVX2 loads within one cache line pair. Pages this crate places itself (arenas,
/// sidecars) stay 64-byte aligned.
pub const MAPPED_ALIGN: usize = 32;
use crate::coord::Coord;
use crate::dtype::DType;
use crate::error::{PageError, SpaceError};

/// What a page's bytes are and whether they are saved.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub enum PageKind {
    /// Heap (or arena) bytes; writable unless frozen at creation; saved by `save`.
    Owned,
    /// Zero-copy view into an mmap'd file; always read-only; saved by `save`.
    Mapped,
    /// Heap bytes for activations and the KV cache; writable; never saved.
    Scratch,
}

impl PageKind {
    /// "owned", "mapped" or "scratch".
    pub fn name(&self) -> &'static str {
        match self {
            PageKind::Owned => "owned",
            PageKind::Mapped => "mapped",
            PageKind::Scratch => "scratch",
        }
    }

    /// Inverse of [`PageKind::name`].
    pub fn parse(s: &str) -> Option<PageKind> {
        match s {
            "owned" => Some(PageKind::Owned),
            "mapped" => Some(PageKind::Mapped),
            "scratch" => Some(PageKind::Scratch),
            _ => None,
        }
    }

    /// Whether `PhextSpace::save` writes pages of this kind.
    pub fn is_persisted(&self) -> bool {
        !matches!(self, PageKind::Scratch)
    }
}

impl fmt::Display for PageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Elements and bytes of a `dtype` page of `shape`, checked.
pub(crate) fn page_size(
    coord: Coord,
    dtype: DType,
    shape: [usize; 2],
) -> Result<(usize, usize), SpaceError> {
    let [rows, cols] = shape;
    let elems = rows
        .checked_mul(cols)
        .ok_or(SpaceError::ShapeOverflow { coord, rows, cols })?;
    let bytes = dtype
        .bytes_for(elems)
        .map_err(|source| SpaceError::Size { coord, source })?;
    Ok((elems, bytes))
}

/// What keeps a page's memory alive.
enum Backing {
    Heap(#[allow(dead_code)] AlignedBuf),
    Arena(#[allow(dead_code)] Arc<AlignedBuf>),
    Map(Arc<Mmap>),
}

/// A page of phext space. See the module docs for the concurrency model.
pub struct Page {
    coord: Coord,
    dtype: DType,
    shape: [usize; 2],
    kind: PageKind,
    elems: usize,
    /// First byte; 64-byte aligned; valid for `len` bytes as long as `backing` lives.
    ptr: NonNull<u8>,
    len: usize,
    /// `Some` for writable pages: guards every borrow of the bytes. `None`: read-only.
    lock: Option<RwLock<()>>,
    backing: Backing,
}

// SAFETY: the bytes behind `ptr` are owned by `backing` (heap, arena or mmap, all
// Send + Sync). Writable pages only borrow them under `lock`; read-only pages are never
// written after construction. So sharing or sending a Page cannot cause a data race.
unsafe impl Send for Page {}
// SAFETY: see Send.
unsafe impl Sync for Page {}

impl Page {
    /// A page over its own heap buffer (`buf.len()` must equal the page size).
    pub(crate) fn from_heap(
        coord: Coord,
        dtype: DType,
        shape: [usize; 2],
        kind: PageKind,
        buf: AlignedBuf,
        read_only: bool,
    ) -> Page {
        let (elems, len) = (shape[0].saturating_mul(shape[1]), buf.len());
        let ptr = NonNull::new(buf.as_ptr()).unwrap_or(NonNull::dangling());
        Page::assemble(
            coord,
            dtype,
            shape,
            kind,
            elems,
            ptr,
            len,
            read_only,
            Backing::Heap(buf),
        )
    }

    /// A page over `arena[offset..offset + len]`.
    ///
    /// # Safety
    /// `offset + len <= arena.len()`, `offset` is a multiple of 64, and no other page (or
    /// anything else) borrows any byte of that range for as long as this page lives.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn from_arena(
        coord: Coord,
        dtype: DType,
        shape: [usize; 2],
        kind: PageKind,
        arena: Arc<AlignedBuf>,
        offset: usize,
        len: usize,
        read_only: bool,
    ) -> Page {
        let elems = shape[0].saturating_mul(shape[1]);
        // SAFETY: caller guarantees offset <= arena.len(), so this stays in the allocation.
        let raw = unsafe { arena.as_ptr().add(offset) };
        let ptr = NonNull::new(raw).unwrap_or(NonNull::dangling());
        let backing = Backing::Arena(arena);
        Page::assemble(
            coord, dtype, shape, kind, elems, ptr, len, read_only, backing,
        )
    }

    /// A read-only page over `map[offset..offset + len]`, where `len` is the size of a
    /// `dtype` page of `shape`. Checks bounds and [`MAPPED_ALIGN`]-byte alignment.
    pub(crate) fn from_map(
        coord: Coord,
        dtype: DType,
        shape: [usize; 2],
        map: Arc<Mmap>,
        offset: usize,
    ) -> Result<Page, SpaceError> {
        let (elems, len) = page_size(coord, dtype, shape)?;
        let in_bounds = offset.checked_add(len).is_some_and(|end| end <= map.len());
        if !in_bounds {
            return Err(SpaceError::MappedRange {
                coord,
                offset,
                len,
                map_len: map.len(),
            });
        }
        // In bounds, so the add stays inside the mapping (or one past its end when len == 0).
        let raw = map.as_ptr().wrapping_add(offset) as *mut u8;
        if raw as usize % MAPPED_ALIGN != 0 {
            return Err(SpaceError::MappedMisaligned {
                coord,
                address: raw as usize,
            });
        }
        let ptr = NonNull::new(raw).unwrap_or(NonNull::dangling());
        let backing = Backing::Map(map);
        Ok(Page::assemble(
            coord,
            dtype,
            shape,
            PageKind::Mapped,
            elems,
            ptr,
            len,
            true,
            backing,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        coord: Coord,
        dtype: DType,
        shape: [usize; 2],
        kind: PageKind,
        elems: usize,
        ptr: NonNull<u8>,
        len: usize,
        read_only: bool,
        backing: Backing,
    ) -> Page {
        let read_only = read_only || kind == PageKind::Mapped;
        Page {
            coord,
            dtype,
            shape,
            kind,
            elems,
            ptr,
            len,
            lock: if read_only {
                None
            } else {
                Some(RwLock::new(()))
            },
            backing,
        }
    }

    pub fn coord(&self) -> Coord {
        self.coord
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// `[rows, cols]`.
    pub fn shape(&self) -> [usize; 2] {
        self.shape
    }
    pub fn kind(&self) -> PageKind {
        self.kind
    }
    /// rows * cols.
    pub fn elems(&self) -> usize {
        self.elems
    }
    /// `dtype.bytes_for(elems)`.
    pub fn len_bytes(&self) -> usize {
        self.len
    }
    /// Mapped pages, and pages frozen at creation.
    pub fn is_read_only(&self) -> bool {
        self.lock.is_none()
    }
    /// Address of the first byte (64-byte aligned), for placement reports and tests.
    pub fn address(&self) -> usize {
        self.ptr.as_ptr() as usize
    }
    /// Whether the bytes live in a shared placement arena (`build_placed`, `load` Copy).
    pub fn is_in_arena(&self) -> bool {
        matches!(self.backing, Backing::Arena(_))
    }

    /// For a page over a memory map (kind Mapped): the map and the page's byte offset in
    /// it, so another space can map the same bytes zero-copy with `insert_mapped` (a
    /// saved model image's tensors reach the model's space this way). `None` for heap
    /// and arena pages.
    pub fn mapping(&self) -> Option<(&Arc<Mmap>, usize)> {
        match &self.backing {
            // `ptr` was derived from `map.as_ptr() + offset` in `from_map`.
            Backing::Map(map) => Some((map, self.address() - map.as_ptr() as usize)),
            Backing::Heap(_) | Backing::Arena(_) => None,
        }
    }

    /// The bytes, without synchronisation. Only called for read-only pages or with the
    /// page's lock held.
    ///
    /// # Safety
    /// No `&mut` to these bytes may exist for the returned lifetime.
    unsafe fn bytes(&self) -> &[u8] {
        // SAFETY: ptr is valid for len bytes while backing lives (as long as &self);
        // the caller rules out concurrent mutation.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Zero-copy bytes of a read-only page (they never change); `None` for writable pages.
    pub fn view(&self) -> Option<&[u8]> {
        if self.lock.is_none() {
            // SAFETY: read-only pages are never written after construction.
            Some(unsafe { self.bytes() })
        } else {
            None
        }
    }

    /// Run `f` on the bytes; takes the shared lock for writable pages. Do not call
    /// `write` on the same page from inside `f` (it would wait for itself).
    pub fn read<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        match &self.lock {
            None => f(self.view().unwrap_or(&[])),
            Some(lock) => {
                // A panic inside another closure poisons the lock; bytes are plain data,
                // any state is valid, so carry on.
                let _guard = lock.read().unwrap_or_else(PoisonError::into_inner);
                // SAFETY: the shared lock excludes writers for the guard's lifetime.
                f(unsafe { self.bytes() })
            }
        }
    }

    /// Run `f` on the bytes mutably under the exclusive lock; `Err(ReadOnly)` for
    /// read-only pages.
    pub fn write<R>(&self, f: impl FnOnce(&mut [u8]) -> R) -> Result<R, PageError> {
        let lock = self
            .lock
            .as_ref()
            .ok_or(PageError::ReadOnly { coord: self.coord })?;
        let _guard = lock.write().unwrap_or_else(PoisonError::into_inner);
        // SAFETY: the exclusive lock excludes every other borrow of these bytes; ptr is
        // valid for len bytes and was derived from writable memory (heap or arena; Mapped
        // pages have no lock and never get here).
        let bytes = unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) };
        Ok(f(bytes))
    }

    fn check_f32(&self, elem_offset: usize, len: usize) -> Result<(), PageError> {
        if self.dtype != DType::F32 {
            return Err(PageError::DType {
                coord: self.coord,
                expected: DType::F32,
                got: self.dtype,
            });
        }
        let fits = elem_offset
            .checked_add(len)
            .is_some_and(|end| end <= self.elems);
        if fits {
            Ok(())
        } else {
            Err(PageError::OutOfBounds {
                coord: self.coord,
                offset: elem_offset,
                len,
                page_elems: self.elems,
            })
        }
    }

    /// Copy `out.len()` f32 elements starting at element `elem_offset` into `out`.
    pub fn read_f32(&self, elem_offset: usize, out: &mut [f32]) -> Result<(), PageError> {
        self.check_f32(elem_offset, out.len())?;
        self.read(|bytes| {
            // In bounds: checked above (elems * 4 == len for f32 pages).
            let src = &bytes[elem_offset * 4..(elem_offset + out.len()) * 4];
            for (o, c) in out.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        });
        Ok(())
    }

    /// Copy `data` into the page starting at element `elem_offset`.
    pub fn write_f32(&self, elem_offset: usize, data: &[f32]) -> Result<(), PageError> {
        self.check_f32(elem_offset, data.len())?;
        self.write(|bytes| {
            let dst = &mut bytes[elem_offset * 4..(elem_offset + data.len()) * 4];
            for (d, v) in dst.chunks_exact_mut(4).zip(data) {
                d.copy_from_slice(&v.to_le_bytes());
            }
        })
    }

    /// All elements of an f32 page, as a new vector (tests, reports; not for hot loops).
    pub fn to_f32_vec(&self) -> Result<Vec<f32>, PageError> {
        let mut out = vec![
            0.0;
            if self.dtype == DType::F32 {
                self.elems
            } else {
                0
            }
        ];
        self.read_f32(0, &mut out)?;
        Ok(out)
    }

    /// Ask the CPU to pull the page into cache: on x86-64 `prefetcht0` on every 64-byte
    /// line (a hint: it never faults and is not a memory access in Rust's model, so it
    /// needs no lock); elsewhere a volatile read of one byte per line under the read lock.
    pub fn prefetch(&self) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let base = self.ptr.as_ptr() as *const i8;
            let mut off = 0;
            while off < self.len {
                // SAFETY: `base + off` is inside the page's live allocation; prefetch has
                // no architectural effect besides caching.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(base.add(off)) };
                off += PAGE_ALIGN;
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        self.read(|bytes| {
            for i in (0..bytes.len()).step_by(PAGE_ALIGN) {
                // SAFETY: i < bytes.len(); volatile keeps the load from being removed.
                unsafe { std::ptr::read_volatile(bytes.as_ptr().add(i)) };
            }
        });
    }

    /// xxh3-64 of the page's bytes.
    pub fn checksum(&self) -> u64 {
        self.read(xxhash_rust::xxh3::xxh3_64)
    }
}

impl fmt::Debug for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Page")
            .field("coord", &format_args!("{}", self.coord))
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .field("kind", &self.kind)
            .field("len_bytes", &self.len)
            .field("read_only", &self.is_read_only())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    fn heap_page(shape: [usize; 2], read_only: bool) -> Page {
        let (_, len) = page_size(Coord::ORIGIN, DType::F32, shape).unwrap();
        let buf = AlignedBuf::zeroed(len).unwrap();
        Page::from_heap(
            Coord::ORIGIN,
            DType::F32,
            shape,
            PageKind::Owned,
            buf,
            read_only,
        )
    }

    #[test]
    fn read_write_f32_bounds_and_dtype() {
        let p = heap_page([2, 4], false);
        assert_eq!((p.elems(), p.len_bytes()), (8, 32));
        assert_eq!(p.address() % 64, 0);
        p.write_f32(2, &[1.0, 2.0, 3.0]).unwrap();
        let mut out = [0.0f32; 4];
        p.read_f32(1, &mut out).unwrap();
        assert_eq!(out, [0.0, 1.0, 2.0, 3.0]);
        assert!(matches!(
            p.read_f32(6, &mut out),
            Err(PageError::OutOfBounds {
                offset: 6,
                len: 4,
                page_elems: 8,
                ..
            })
        ));
        assert!(p.write_f32(usize::MAX, &[1.0]).is_err());
        assert!(p.view().is_none());
        assert_eq!(
            p.to_f32_vec().unwrap(),
            vec![0.0, 0.0, 1.0, 2.0, 3.0, 0.0, 0.0, 0.0]
        );
        let q = Page::from_heap(
            Coord::ORIGIN,
            DType::I8,
            [1, 4],
            PageKind::Scratch,
            AlignedBuf::zeroed(4).unwrap(),
            false,
        );
        assert!(matches!(
            q.read_f32(0, &mut out[..1]),
            Err(PageError::DType { .. })
        ));
    }

    #[test]
    fn read_only_pages_view_and_refuse_writes() {
        let p = heap_page([1, 16], true);
        assert!(p.is_read_only());
        assert_eq!(p.view().map(<[u8]>::len), Some(64));
        let e = p.write(|b| b[0] = 1).unwrap_err();
        assert_eq!(e.to_string(), "page 1.1.1/1.1.1/1.1.1 is read-only");
        assert!(p.write_f32(0, &[1.0]).is_err());
        assert_eq!(p.checksum(), xxhash_rust::xxh3::xxh3_64(&[0u8; 64]));
        p.prefetch();
    }

    #[test]
    fn mapping_gives_the_map_and_offset_of_mapped_pages_only() {
        let mut anon = memmap2::MmapMut::map_anon(4096).unwrap();
        anon[128] = 7;
        let map = Arc::new(anon.make_read_only().unwrap());
        let p = Page::from_map(Coord::ORIGIN, DType::I8, [1, 64], Arc::clone(&map), 128).unwrap();
        let (m, off) = p.mapping().unwrap();
        assert!(Arc::ptr_eq(m, &map));
        assert_eq!(off, 128);
        assert_eq!(p.view().unwrap()[0], 7);
        assert!(heap_page([1, 16], true).mapping().is_none());
    }

    #[test]
    fn concurrent_readers_and_writers_see_whole_writes() {
        // Each writer fills the page with one value; readers must never see a mix.
        let p = Arc::new(heap_page([64, 64], false));
        let mut handles = Vec::new();
        for t in 0..2u8 {
            let p = Arc::clone(&p);
            handles.push(thread::spawn(move || {
                for i in 0..200u32 {
                    let v = (t as u32 * 1000 + i) as f32;
                    p.write(|b| {
                        for c in b.chunks_exact_mut(4) {
                            c.copy_from_slice(&v.to_le_bytes());
                        }
                    })
                    .unwrap();
                    p.prefetch();
                }
            }));
        }
        for _ in 0..2 {
            let p = Arc::clone(&p);
            handles.push(thread::spawn(move || {
                for _ in 0..200 {
                    p.read(|b| assert!(b.chunks_exact(4).all(|c| c == &b[..4])));
                }
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
    }
}
