//! Phext space: the PPT (Phext Page Table) mapping coordinates to pages, page allocation,
//! and curve placement of pages in one arena.
//!
//! The table is a `RwLock<HashMap>`: it is the slow path. Sentrons go through their own
//! [`TranslationCache`](crate::TranslationCache), which re-validates against
//! [`PhextSpace::epoch`] with one atomic load per lookup.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use memmap2::Mmap;

use crate::buf::{AlignedBuf, PAGE_ALIGN};
use crate::cache::KeyHashBuilder;
use crate::coord::{Coord, CoordKey, DEFAULT_PART_LIMIT, MAX_PART_LIMIT};
use crate::curve::Layout;
use crate::dtype::DType;
use crate::error::SpaceError;
use crate::page::{page_size, Page, PageKind};

/// Gives every space a distinct id, so a translation cache never serves one space's pages
/// for another's lookups.
static NEXT_SPACE_ID: AtomicU64 = AtomicU64::new(1);

/// A page to create in [`PhextSpace::build_placed`].
#[derive(Clone, Debug, PartialEq)]
pub struct PageInit {
    pub coord: Coord,
    pub dtype: DType,
    pub shape: [usize; 2],
    /// The page's bytes (exactly `dtype.bytes_for(rows * cols)`); `None` = zeroed.
    pub bytes: Option<Vec<u8>>,
    pub read_only: bool,
    /// Owned or Scratch (Mapped pages come from files: see `load`).
    pub kind: PageKind,
}

/// A read-only page of a [`PhextSpace::fill_arena`] arena.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PageSpec {
    pub coord: Coord,
    pub dtype: DType,
    pub shape: [usize; 2],
    /// Owned or Scratch.
    pub kind: PageKind,
}

/// Pages of one arena being filled (see [`PhextSpace::fill_arena`]).
pub struct FillArena {
    buf: AlignedBuf,
    pages: Vec<ArenaPage>,
    lens: Vec<usize>,
}

impl FillArena {
    /// Each page's bytes (zeroed), in the order of the specs: disjoint, so they can be
    /// filled on different threads.
    pub fn slices_mut(&mut self) -> Vec<&mut [u8]> {
        let mut rest = self.buf.as_mut_slice();
        let mut out = Vec::with_capacity(self.pages.len());
        let mut at = 0usize;
        for (p, &len) in self.pages.iter().zip(&self.lens) {
            // Offsets rise in spec order, each at or past the previous page's end.
            let (_, tail) = std::mem::take(&mut rest).split_at_mut(p.offset - at);
            let (mine, tail) = tail.split_at_mut(len);
            out.push(mine);
            rest = tail;
            at = p.offset + len;
        }
        out
    }

    /// Bytes of the arena (the pages with their alignment padding).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the arena holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.buf.len() == 0
    }

    /// Map the filled pages into `space` (the one that made the arena).
    pub fn commit(self, space: &PhextSpace) -> Result<(), SpaceError> {
        space.adopt_arena(self.buf, self.pages)
    }
}

/// A page inside an arena, as `from_arena_pages` needs it.
pub(crate) struct ArenaPage {
    pub coord: Coord,
    pub dtype: DType,
    pub shape: [usize; 2],
    pub kind: PageKind,
    pub read_only: bool,
    pub offset: usize,
}

/// A page inside a mapping, as `from_mapped_pages` needs it.
pub(crate) struct MappedPage {
    pub coord: Coord,
    pub dtype: DType,
    pub shape: [usize; 2],
    pub offset: usize,
}

struct Table {
    map: HashMap<CoordKey, Arc<Page>, KeyHashBuilder>,
    /// Sum of `len_bytes` over mapped pages.
    bytes: usize,
}

/// Phext space: every page, by coordinate. `Send + Sync`; share it as `Arc<PhextSpace>`.
pub struct PhextSpace {
    id: u64,
    layout: Layout,
    limit: u32,
    table: RwLock<Table>,
    /// Bumped after every free or replace; translation caches compare it on every lookup.
    epoch: AtomicU64,
}

impl PhextSpace {
    /// An empty space with part limit 999.
    pub fn new(layout: Layout) -> PhextSpace {
        PhextSpace::make(layout, DEFAULT_PART_LIMIT)
    }

    /// An empty space whose coordinates may use parts up to `limit` (1..=16383). Files
    /// still only hold parts <= 999.
    pub fn with_part_limit(layout: Layout, limit: u32) -> Result<PhextSpace, SpaceError> {
        if !(1..=MAX_PART_LIMIT).contains(&limit) {
            return Err(SpaceError::BadLimit { limit });
        }
        Ok(PhextSpace::make(layout, limit))
    }

    fn make(layout: Layout, limit: u32) -> PhextSpace {
        PhextSpace {
            id: NEXT_SPACE_ID.fetch_add(1, Ordering::Relaxed),
            layout,
            limit,
            table: RwLock::new(Table {
                map: HashMap::with_hasher(KeyHashBuilder),
                bytes: 0,
            }),
            epoch: AtomicU64::new(0),
        }
    }

    pub fn part_limit(&self) -> u32 {
        self.limit
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Process-unique id of this space (translation caches bind to one space at a time).
    #[inline]
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    // A panic while holding the table lock cannot leave the map half-updated (every
    // update is one insert/remove plus a counter), so a poisoned lock is still usable.
    fn read_table(&self) -> RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_table(&self) -> RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn check_coord(&self, coord: Coord) -> Result<(), SpaceError> {
        if coord.max_part() > self.limit {
            return Err(SpaceError::CoordAboveLimit {
                coord,
                limit: self.limit,
            });
        }
        Ok(())
    }

    fn check_heap_kind(coord: Coord, kind: PageKind) -> Result<(), SpaceError> {
        if kind == PageKind::Mapped {
            return Err(SpaceError::BadKind {
                coord,
                kind,
                why: "mapped pages come from a file (insert_mapped or load), not from bytes",
            });
        }
        Ok(())
    }

    /// Put `page` in the table; `replace` swaps out (and returns) an existing page.
    fn map_page(&self, page: Page, replace: bool) -> Result<Arc<Page>, SpaceError> {
        let coord = page.coord();
        let page = Arc::new(page);
        let mut table = self.write_table();
        if !replace && table.map.contains_key(&coord.key()) {
            return Err(SpaceError::AlreadyMapped { coord });
        }
        let len = page.len_bytes();
        let old = table.map.insert(coord.key(), Arc::clone(&page));
        table.bytes += len;
        if let Some(old) = old {
            table.bytes -= old.len_bytes();
            drop(table);
            // After the table change, so a cache that sees the old epoch filled from the
            // old table and will be invalidated.
            self.epoch.fetch_add(1, Ordering::AcqRel);
        }
        Ok(page)
    }

    /// A zeroed, writable page at `coord`. `kind` is Owned or Scratch.
    pub fn alloc(
        &self,
        coord: Coord,
        dtype: DType,
        shape: [usize; 2],
        kind: PageKind,
    ) -> Result<Arc<Page>, SpaceError> {
        self.check_coord(coord)?;
        PhextSpace::check_heap_kind(coord, kind)?;
        let (_, len) = page_size(coord, dtype, shape)?;
        if self.read_table().map.contains_key(&coord.key()) {
            return Err(SpaceError::AlreadyMapped { coord }); // before zeroing a big buffer
        }
        let buf = AlignedBuf::zeroed(len).ok_or(SpaceError::OutOfMemory { coord, bytes: len })?;
        self.map_page(
            Page::from_heap(coord, dtype, shape, kind, buf, false),
            false,
        )
    }

    /// A writable f32 page holding `data` (exactly rows * cols values).
    pub fn insert_f32(
        &self,
        coord: Coord,
        shape: [usize; 2],
        data: &[f32],
        kind: PageKind,
    ) -> Result<Arc<Page>, SpaceError> {
        let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.insert_bytes(coord, DType::F32, shape, &bytes, false, kind)
    }

    /// A page holding a copy of `bytes` (exactly the page size). `read_only` freezes it:
    /// no lock, zero-copy `view()`. `kind` is Owned or Scratch.
    pub fn insert_bytes(
        &self,
        coord: Coord,
        dtype: DType,
        shape: [usize; 2],
        bytes: &[u8],
        read_only: bool,
        kind: PageKind,
    ) -> Result<Arc<Page>, SpaceError> {
        let page = self.page_from_bytes(coord, dtype, shape, bytes, read_only, kind)?;
        self.map_page(page, false)
    }

    /// A page whose bytes `fill` writes once, in place (no staging copy: for large
    /// pages computed at load, such as repacked weights). The buffer `fill` gets is
    /// zeroed and exactly the page size; an error from `fill` maps nothing.
    /// `read_only` freezes the page after `fill`; `kind` is Owned or Scratch.
    pub fn insert_filled<E>(
        &self,
        coord: Coord,
        dtype: DType,
        shape: [usize; 2],
        read_only: bool,
        kind: PageKind,
        fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<Result<Arc<Page>, E>, SpaceError> {
        self.check_coord(coord)?;
        PhextSpace::check_heap_kind(coord, kind)?;
        let (_, len) = page_size(coord, dtype, shape)?;
        if self.read_table().map.contains_key(&coord.key()) {
            return Err(SpaceError::AlreadyMapped { coord }); // before filling a big buffer
        }
        let mut buf = AlignedBuf::zeroed_for_fill(len)
            .ok_or(SpaceError::OutOfMemory { coord, bytes: len })?;
        if let Err(e) = fill(buf.as_mut_slice()) {
            return Ok(Err(e));
        }
        let page = Page::from_heap(coord, dtype, shape, kind, buf, read_only);
        self.map_page(page, false).map(Ok)
    }

    /// Like [`PhextSpace::insert_bytes`], but replaces a page already at `coord` (bumping
    /// the epoch so translation caches drop it).
    pub fn replace_bytes(
        &self,
        coord: Coord,
        dtype: DType,
        shape: [usize; 2],
        bytes: &[u8],
        read_only: bool,
        kind: PageKind,
    ) -> Result<Arc<Page>, SpaceError> {
        let page = self.page_from_bytes(coord, dtype, shape, bytes, read_only, kind)?;
        self.map_page(page, true)
    }

    fn page_from_bytes(
        &self,
        coord: Coord,
        dtype: DType,
        shape: [usize; 2],
        bytes: &[u8],
        read_only: bool,
        kind: PageKind,
    ) -> Result<Page, SpaceError> {
        self.check_coord(coord)?;
        PhextSpace::check_heap_kind(coord, kind)?;
        let (_, len) = page_size(coord, dtype, shape)?;
        if bytes.len() != len {
            return Err(SpaceError::DataLength {
                coord,
                dtype,
                rows: shape[0],
                cols: shape[1],
                expected: len,
                got: bytes.len(),
            });
        }
        let buf =
            AlignedBuf::copy_of(bytes).ok_or(SpaceError::OutOfMemory { coord, bytes: len })?;
        Ok(Page::from_heap(coord, dtype, shape, kind, buf, read_only))
    }

    /// A read-only, zero-copy page over `map[offset..]` (e.g. a tensor of an mmap'd model
    /// file). The address must be 64-byte aligned, like every page.
    pub fn insert_mapped(
        &self,
        coord: Coord,
        dtype: DType,
        shape: [usize; 2],
        map: Arc<Mmap>,
        offset: usize,
    ) -> Result<Arc<Page>, SpaceError> {
        self.check_coord(coord)?;
        let page = Page::from_map(coord, dtype, shape, map, offset)?;
        self.map_page(page, false)
    }

    /// Unmap the page at `coord` and bump the epoch. Threads still holding the `Arc<Page>`
    /// keep valid bytes until they drop it.
    pub fn free(&self, coord: Coord) -> Result<(), SpaceError> {
        let mut table = self.write_table();
        let old = table
            .map
            .remove(&coord.key())
            .ok_or(SpaceError::NotMapped { coord })?;
        table.bytes -= old.len_bytes();
        drop(table);
        // After the removal: see map_page.
        self.epoch.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// The page at `coord` (slow path: takes the table lock; not counted).
    pub fn get(&self, coord: Coord) -> Option<Arc<Page>> {
        self.get_key(coord.key())
    }

    /// The page at a packed key (slow path: takes the table lock; not counted).
    pub fn get_key(&self, key: CoordKey) -> Option<Arc<Page>> {
        self.read_table().map.get(&key).cloned()
    }

    /// Changes after every free or replace.
    #[inline]
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Number of mapped pages.
    pub fn len(&self) -> usize {
        self.read_table().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sum of the byte sizes of all mapped pages.
    pub fn total_bytes(&self) -> usize {
        self.read_table().bytes
    }

    /// Every mapped coordinate, sorted in this space's layout order (Insertion:
    /// coordinate order).
    pub fn coords(&self) -> Vec<Coord> {
        self.pages().iter().map(|p| p.coord()).collect()
    }

    /// A snapshot of every mapped page, in the order of [`PhextSpace::coords`].
    pub fn pages(&self) -> Vec<Arc<Page>> {
        let mut pages: Vec<Arc<Page>> = self.read_table().map.values().cloned().collect();
        let layout = self.layout;
        pages.sort_by_cached_key(|p| layout.order_key(&p.coord()));
        pages
    }

    /// Address of the first byte of the page at `coord` (placement reports and tests).
    pub fn page_address(&self, coord: Coord) -> Option<usize> {
        self.get(coord).map(|p| p.address())
    }

    /// Build a space whose pages live in ONE 64-byte-aligned arena, placed in the order of
    /// the layout's curve over their coordinates (Insertion: the order given), so
    /// coordinate neighbours are memory neighbours. Each page starts on a 64-byte boundary.
    pub fn build_placed(
        layout: Layout,
        pages: Vec<PageInit>,
        limit: u32,
    ) -> Result<PhextSpace, SpaceError> {
        let space = PhextSpace::with_part_limit(layout, limit)?;
        let mut sizes = Vec::with_capacity(pages.len());
        let mut seen = HashMap::with_capacity_and_hasher(pages.len(), KeyHashBuilder);
        for p in &pages {
            let len = space.arena_page_len(&mut seen, p.coord, p.dtype, p.shape, p.kind)?;
            if let Some(bytes) = &p.bytes {
                if bytes.len() != len {
                    return Err(SpaceError::DataLength {
                        coord: p.coord,
                        dtype: p.dtype,
                        rows: p.shape[0],
                        cols: p.shape[1],
                        expected: len,
                        got: bytes.len(),
                    });
                }
            }
            sizes.push(len);
        }
        let mut order: Vec<usize> = (0..pages.len()).collect();
        if layout != Layout::Insertion {
            order.sort_by_cached_key(|&i| layout.order_key(&pages[i].coord));
        }
        let overflow = SpaceError::ArenaOverflow { pages: pages.len() };
        let mut offsets = vec![0usize; pages.len()];
        let mut end = 0usize;
        for &i in &order {
            offsets[i] = end;
            end = align_up(end.checked_add(sizes[i]).ok_or(overflow.clone())?)
                .ok_or(overflow.clone())?;
        }
        let mut arena =
            AlignedBuf::zeroed(end).ok_or(SpaceError::ArenaOutOfMemory { bytes: end })?;
        let dst = arena.as_mut_slice();
        let mut placed = Vec::with_capacity(pages.len());
        for (i, p) in pages.into_iter().enumerate() {
            if let Some(bytes) = &p.bytes {
                dst[offsets[i]..offsets[i] + bytes.len()].copy_from_slice(bytes);
            }
            placed.push(ArenaPage {
                coord: p.coord,
                dtype: p.dtype,
                shape: p.shape,
                kind: p.kind,
                read_only: p.read_only,
                offset: offsets[i],
            });
        }
        space.adopt_arena(arena, placed)?;
        Ok(space)
    }

    /// Bytes of a new page of an arena at `coord`, after the checks every arena page
    /// gets: a valid coordinate, a heap kind, a size, and no other page at `coord`
    /// (among `seen`, the arena's pages so far, or in the space).
    fn arena_page_len(
        &self,
        seen: &mut HashMap<CoordKey, (), KeyHashBuilder>,
        coord: Coord,
        dtype: DType,
        shape: [usize; 2],
        kind: PageKind,
    ) -> Result<usize, SpaceError> {
        self.check_coord(coord)?;
        PhextSpace::check_heap_kind(coord, kind)?;
        let (_, len) = page_size(coord, dtype, shape)?;
        if seen.insert(coord.key(), ()).is_some()
            || self.read_table().map.contains_key(&coord.key())
        {
            return Err(SpaceError::AlreadyMapped { coord });
        }
        Ok(len)
    }

    /// Start an arena of read-only pages that the caller fills itself (possibly on
    /// several threads, through [`FillArena::slices_mut`]) before
    /// [`FillArena::commit`] maps them: one buffer, populated up front with transparent
    /// huge pages where the kernel has them. Why one buffer: weight matrices of a small
    /// model are a few hundred KiB each, too small for a huge page of their own, and
    /// decode streams all of them once per token (a TLB miss per 4 KiB otherwise).
    /// Checks every coordinate, kind and size first; nothing is mapped until `commit`.
    pub fn fill_arena(&self, specs: &[PageSpec]) -> Result<FillArena, SpaceError> {
        let mut seen = HashMap::with_capacity_and_hasher(specs.len(), KeyHashBuilder);
        let overflow = SpaceError::ArenaOverflow { pages: specs.len() };
        let mut pages = Vec::with_capacity(specs.len());
        let mut lens = Vec::with_capacity(specs.len());
        let mut end = 0usize;
        for p in specs {
            let len = self.arena_page_len(&mut seen, p.coord, p.dtype, p.shape, p.kind)?;
            pages.push(ArenaPage {
                coord: p.coord,
                dtype: p.dtype,
                shape: p.shape,
                kind: p.kind,
                read_only: true,
                offset: end,
            });
            lens.push(len);
            end =
                align_up(end.checked_add(len).ok_or(overflow.clone())?).ok_or(overflow.clone())?;
        }
        let buf =
            AlignedBuf::zeroed_for_fill(end).ok_or(SpaceError::ArenaOutOfMemory { bytes: end })?;
        Ok(FillArena { buf, pages, lens })
    }

    /// Map pages that live in `arena` at the given offsets. Checks every range (inside the
    /// arena, 64-byte aligned, disjoint from the others) before creating any page, which is
    /// what makes the per-page borrows of the shared arena sound.
    pub(crate) fn adopt_arena(
        &self,
        arena: AlignedBuf,
        mut pages: Vec<ArenaPage>,
    ) -> Result<(), SpaceError> {
        let mut sized = Vec::with_capacity(pages.len());
        for p in pages.drain(..) {
            self.check_coord(p.coord)?;
            let (_, len) = page_size(p.coord, p.dtype, p.shape)?;
            sized.push((p, len));
        }
        // By offset, zero-length pages first at a shared offset (they overlap nothing).
        sized.sort_by_key(|(p, len)| (p.offset, *len));
        let mut prev_end = 0usize;
        for (p, len) in &sized {
            let len = *len;
            let end = p.offset.checked_add(len);
            let fits = end.is_some_and(|e| e <= arena.len());
            if !fits || p.offset < prev_end || p.offset % PAGE_ALIGN != 0 {
                return Err(SpaceError::BadPlacement {
                    coord: p.coord,
                    offset: p.offset,
                    len,
                    arena_len: arena.len(),
                });
            }
            prev_end = end.unwrap_or(usize::MAX);
        }
        let arena = Arc::new(arena);
        for (p, len) in sized {
            // SAFETY: checked above: in bounds, aligned, and disjoint from every other
            // page's range; nothing else borrows the arena once it is shared.
            let page = unsafe {
                Page::from_arena(
                    p.coord,
                    p.dtype,
                    p.shape,
                    p.kind,
                    Arc::clone(&arena),
                    p.offset,
                    len,
                    p.read_only,
                )
            };
            self.map_page(page, false)?;
        }
        Ok(())
    }

    /// Map read-only pages that live in `map` at the given offsets.
    pub(crate) fn adopt_map(
        &self,
        map: Arc<Mmap>,
        pages: Vec<MappedPage>,
    ) -> Result<(), SpaceError> {
        for p in pages {
            self.check_coord(p.coord)?;
            let page = Page::from_map(p.coord, p.dtype, p.shape, Arc::clone(&map), p.offset)?;
            self.map_page(page, false)?;
        }
        Ok(())
    }
}

/// `n` rounded up to a multiple of 64, `None` on overflow.
pub(crate) fn align_up(n: usize) -> Option<usize> {
    n.checked_add(PAGE_ALIGN - 1).map(|v| v & !(PAGE_ALIGN - 1))
}

impl fmt::Debug for PhextSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhextSpace")
            .field("layout", &self.layout)
            .field("part_limit", &self.limit)
            .field("pages", &self.len())
            .field("total_bytes", &self.total_bytes())
            .field("epoch", &self.epoch())
            .finish()
    }
}
