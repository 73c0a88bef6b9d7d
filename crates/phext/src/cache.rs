//! The per-sentron translation cache in front of the PPT, and the cheap key hash it and the
//! page table share.
//!
//! "PPT hit rate" means exactly this cache's hit rate: a lookup that finds a valid entry
//! is a hit; anything else (empty, evicted, invalidated, or a page fault) is a miss.
//!
//! Hit cost: one atomic load (the space epoch) and a compare, one 64x64->128 multiply to
//! pick the set, and a scan of `ways` u128 keys stored side by side (4 ways = one cache
//! line), plus an LRU stamp write.
//!
//! Set index: like a hardware TLB, the lowest part (scroll) indexes the set directly, so
//! up to `sets` consecutive scrolls of one row (all other parts equal) never conflict;
//! the other eight parts are hashed into a pseudo-random offset, so different rows
//! (matrices, layers) start at unrelated sets. A pure hash would scatter a sequential
//! tile stream randomly and cause conflict misses well below capacity. Invalidation is lazy: when the space's epoch (bumped by
//! every free/replace) differs from the epoch the cache was filled under, the whole cache
//! is dropped at the next lookup. Dropping everything (rather than per-entry epochs) also
//! releases the cache's references to freed pages promptly.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use crate::coord::CoordKey;
use crate::page::Page;
use crate::space::PhextSpace;

/// Never a valid key (valid keys use only the low 126 bits): marks an empty way.
const EMPTY: u128 = u128::MAX;
const K_LO: u64 = 0x243F_6A88_85A3_08D3;
/// Top two bits set, so `hi ^ K_HI` is never 0 for a valid key (whose top bits are 0).
const K_HI: u64 = 0xD1B5_4A32_D192_ED03;

/// Mixes a packed coordinate key into 64 bits with one widening multiply (wyhash-style
/// "folded multiply"); every input bit reaches both halves of the result.
#[inline(always)]
pub(crate) fn key_hash(key: u128) -> u64 {
    let lo = key as u64 ^ K_LO;
    let hi = (key >> 64) as u64 ^ K_HI;
    let m = u128::from(lo) * u128::from(hi);
    (m as u64) ^ ((m >> 64) as u64)
}

/// The translation-cache set of `key` (see the module docs): scroll + hash(other parts).
#[inline(always)]
fn set_index(key: u128, set_mask: usize) -> usize {
    let scroll = key as u64 & ((1 << crate::coord::KEY_BITS_PER_PART) - 1);
    (scroll.wrapping_add(key_hash(key >> crate::coord::KEY_BITS_PER_PART)) as usize) & set_mask
}

/// `BuildHasher` for maps keyed by [`CoordKey`]: [`key_hash`] instead of SipHash.
/// Coordinates are not attacker-chosen hash-flooding input in this engine.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct KeyHashBuilder;

pub(crate) struct KeyHasher(u64);

impl BuildHasher for KeyHashBuilder {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = key_hash(n ^ u128::from(self.0));
    }
    fn write(&mut self, bytes: &[u8]) {
        // Not used by CoordKey (which hashes as one u128), kept correct for anything else.
        for chunk in bytes.chunks(16) {
            let mut b = [0u8; 16];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u128(u128::from_le_bytes(b));
        }
    }
}

/// A sentron's private set-associative cache of coordinate -> page translations
/// (LRU within a set). Not shared: every method takes `&mut self`.
pub struct TranslationCache {
    ways: usize,
    /// sets - 1 (sets is a power of two).
    set_mask: usize,
    /// `sets * ways` keys, set-major; `EMPTY` when unused.
    keys: Vec<u128>,
    pages: Vec<Option<Arc<Page>>>,
    /// Last-use tick per way (LRU victim = smallest).
    stamps: Vec<u64>,
    tick: u64,
    /// The space and epoch every current entry was filled under.
    space_id: u64,
    epoch: u64,
    hits: u64,
    misses: u64,
}

impl TranslationCache {
    /// `sets` x `ways` entries. `sets` is rounded up to a power of two and both are at
    /// least 1; [`TranslationCache::sets`] / [`TranslationCache::ways`] report the shape in
    /// use.
    pub fn new(sets: usize, ways: usize) -> TranslationCache {
        let sets = sets.max(1).checked_next_power_of_two().unwrap_or(1 << 20);
        let ways = ways.max(1);
        let n = sets.saturating_mul(ways);
        TranslationCache {
            ways,
            set_mask: sets - 1,
            keys: vec![EMPTY; n],
            pages: vec![None; n],
            stamps: vec![0; n],
            tick: 0,
            space_id: 0, // no space has id 0: the first lookup binds
            epoch: 0,
            hits: 0,
            misses: 0,
        }
    }

    pub fn sets(&self) -> usize {
        self.set_mask + 1
    }

    pub fn ways(&self) -> usize {
        self.ways
    }

    /// The page at `key`, counting a hit or a miss. A miss consults the PPT and fills the
    /// set (evicting its least recently used way); `None` is a page fault (counted as a
    /// miss).
    #[inline]
    pub fn lookup(&mut self, space: &PhextSpace, key: CoordKey) -> Option<Arc<Page>> {
        self.lookup_ref(space, key).cloned()
    }

    /// Like [`TranslationCache::lookup`] but borrows the cached `Arc` (no refcount
    /// traffic): the hot path.
    #[inline]
    pub fn lookup_ref(&mut self, space: &PhextSpace, key: CoordKey) -> Option<&Arc<Page>> {
        let epoch = space.epoch();
        if epoch != self.epoch || space.id() != self.space_id {
            self.rebind(space.id(), epoch);
        }
        let base = set_index(key.0, self.set_mask) * self.ways;
        let hit = self.keys[base..base + self.ways]
            .iter()
            .position(|&k| k == key.0);
        match hit {
            Some(w) => {
                let i = base + w;
                self.hits += 1;
                self.tick += 1;
                self.stamps[i] = self.tick;
                self.pages[i].as_ref()
            }
            None => self.fill(space, key, base),
        }
    }

    /// Miss path: count, ask the PPT, install in the LRU way of the set.
    #[inline(never)]
    fn fill(&mut self, space: &PhextSpace, key: CoordKey, base: usize) -> Option<&Arc<Page>> {
        self.misses += 1;
        let page = space.get_key(key)?;
        let set = base..base + self.ways;
        let victim = self.keys[set.clone()]
            .iter()
            .position(|&k| k == EMPTY)
            .or_else(|| {
                let stamps = &self.stamps[set];
                (0..stamps.len()).min_by_key(|&w| stamps[w])
            })
            .unwrap_or(0);
        let i = base + victim;
        self.tick += 1;
        self.keys[i] = key.0;
        self.stamps[i] = self.tick;
        self.pages[i] = Some(page);
        self.pages[i].as_ref()
    }

    /// Drop every entry and bind to `space_id` at `epoch`.
    fn rebind(&mut self, space_id: u64, epoch: u64) {
        self.clear();
        self.space_id = space_id;
        self.epoch = epoch;
    }

    /// Drop every entry (counters are kept).
    pub fn clear(&mut self) {
        self.keys.fill(EMPTY);
        self.pages.fill(None);
        self.stamps.fill(0);
    }

    pub fn hits(&self) -> u64 {
        self.hits
    }

    pub fn misses(&self) -> u64 {
        self.misses
    }

    /// hits + misses.
    pub fn lookups(&self) -> u64 {
        self.hits + self.misses
    }

    /// hits / lookups, `None` before the first lookup.
    pub fn hit_rate(&self) -> Option<f64> {
        let n = self.lookups();
        (n > 0).then(|| self.hits as f64 / n as f64)
    }

    pub fn reset_counters(&mut self) {
        self.hits = 0;
        self.misses = 0;
    }
}

impl Default for TranslationCache {
    /// 64 sets x 4 ways.
    fn default() -> TranslationCache {
        TranslationCache::new(64, 4)
    }
}

impl fmt::Debug for TranslationCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TranslationCache")
            .field("sets", &self.sets())
            .field("ways", &self.ways)
            .field("hits", &self.hits)
            .field("misses", &self.misses)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Coord, DType, Layout, PageKind};

    fn coord(scroll: u32) -> Coord {
        Coord::new([1, 1, 1, 1, 1, 1, 1, 1, scroll]).unwrap()
    }

    fn space_with(n: u32) -> PhextSpace {
        let s = PhextSpace::new(Layout::Insertion);
        for i in 1..=n {
            s.alloc(coord(i), DType::F32, [1, 16], PageKind::Owned)
                .unwrap();
        }
        s
    }

    #[test]
    fn counts_hits_misses_and_faults() {
        let s = space_with(4);
        let mut c = TranslationCache::default();
        assert_eq!((c.sets(), c.ways()), (64, 4));
        assert_eq!(c.hit_rate(), None);
        assert!(c.lookup(&s, coord(1).key()).is_some());
        assert!(c.lookup(&s, coord(1).key()).is_some());
        assert!(c.lookup_ref(&s, coord(2).key()).is_some());
        assert!(c.lookup(&s, coord(9).key()).is_none(), "page fault");
        assert!(
            c.lookup(&s, coord(9).key()).is_none(),
            "faults are not cached"
        );
        assert_eq!((c.hits(), c.misses()), (1, 4));
        assert_eq!(c.lookup(&s, coord(2).key()).unwrap().coord(), coord(2));
        assert_eq!(c.hit_rate(), Some(2.0 / 6.0));
        c.reset_counters();
        assert_eq!(c.lookups(), 0);
    }

    #[test]
    fn lru_within_a_set() {
        // One set of two ways: every key lands in it.
        let s = space_with(3);
        let mut c = TranslationCache::new(1, 2);
        let (a, b, d) = (coord(1).key(), coord(2).key(), coord(3).key());
        c.lookup(&s, a); // miss
        c.lookup(&s, b); // miss
        c.lookup(&s, a); // hit: b is now LRU
        c.lookup(&s, d); // miss, evicts b
        c.lookup(&s, a); // hit
        c.lookup(&s, b); // miss (evicted), evicts d
        c.lookup(&s, a); // hit
        assert_eq!((c.hits(), c.misses()), (3, 4));
    }

    #[test]
    fn free_and_replace_invalidate_lazily() {
        let s = space_with(2);
        let mut c = TranslationCache::default();
        let k = coord(1).key();
        let before = c.lookup(&s, k).unwrap();
        s.free(coord(1)).unwrap();
        assert!(
            c.lookup(&s, k).is_none(),
            "freed page must not be served from the cache"
        );
        s.insert_f32(coord(1), [1, 1], &[7.0], PageKind::Owned)
            .unwrap();
        let after = c.lookup(&s, k).unwrap();
        assert!(!Arc::ptr_eq(&before, &after));
        let e = s.epoch();
        s.replace_bytes(
            coord(1),
            DType::F32,
            [1, 1],
            &8f32.to_le_bytes(),
            false,
            PageKind::Owned,
        )
        .unwrap();
        assert!(s.epoch() > e);
        assert_eq!(c.lookup(&s, k).unwrap().to_f32_vec().unwrap(), vec![8.0]);
        assert_eq!(c.hits(), 0);
    }

    #[test]
    fn binds_to_one_space_at_a_time() {
        let s1 = space_with(1);
        let s2 = PhextSpace::new(Layout::Insertion);
        s2.insert_f32(coord(1), [1, 1], &[2.0], PageKind::Owned)
            .unwrap();
        let mut c = TranslationCache::default();
        let p1 = c.lookup(&s1, coord(1).key()).unwrap();
        let p2 = c.lookup(&s2, coord(1).key()).unwrap();
        assert!(!Arc::ptr_eq(&p1, &p2));
        assert_eq!(p2.to_f32_vec().unwrap(), vec![2.0]);
        assert_eq!(c.misses(), 2);
    }

    #[test]
    fn odd_shapes_are_rounded_not_rejected() {
        let c = TranslationCache::new(0, 0);
        assert_eq!((c.sets(), c.ways()), (1, 1));
        let c = TranslationCache::new(48, 3);
        assert_eq!((c.sets(), c.ways()), (64, 3));
    }

    #[test]
    fn consecutive_scrolls_never_conflict_up_to_capacity() {
        // Four rows (e.g. four weight matrices) of 64 consecutive tiles each: 256 pages in
        // a 64 x 4 cache, all resident after one pass.
        let s = PhextSpace::new(Layout::Insertion);
        let mut keys = Vec::new();
        for row in 1..=4u32 {
            for t in 1..=64u32 {
                let c = Coord::new([1, row, 1, 1, 1, 1, 1, 3, t]).unwrap();
                s.alloc(c, DType::I8, [1, 1], PageKind::Owned).unwrap();
                keys.push(c.key());
            }
        }
        let mut c = TranslationCache::default();
        for _ in 0..3 {
            for &k in &keys {
                assert!(c.lookup_ref(&s, k).is_some());
            }
        }
        assert_eq!((c.misses(), c.hits()), (256, 512));
    }

    #[test]
    fn key_hash_spreads_neighbouring_keys_over_sets() {
        // 4096 neighbouring coordinates into 64 sets: every set gets a fair share.
        let mut counts = [0u32; 64];
        for i in 1..=64u32 {
            for j in 1..=64u32 {
                let c = Coord::new([1, 1, 1, 1, 1, 1, 1, i, j]).unwrap();
                counts[key_hash(c.key().0) as usize & 63] += 1;
            }
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(
            *min >= 32 && *max <= 100,
            "sets got {min}..{max} of 4096 keys"
        );
    }
}
