//! Host timing of the translation cache (ns per lookup), median of several runs.
//!
//!     cargo run --release -p vtpu-phext --example cache_bench
//!
//! Host figures (wall clock on this machine), not virtual counters. Each run does
//! LOOKUPS lookups cycling over a working set that fits the cache (all hits after the
//! warm-up, checked), then the same keys through the slow path (`PhextSpace::get`, map
//! lock + Arc clone) as the baseline in the same run.

use std::hint::black_box;
use std::time::Instant;

use vtpu_phext::{Coord, CoordKey, DType, Layout, PageKind, PhextSpace, TranslationCache};

const LOOKUPS: usize = 20_000_000;
const RUNS: usize = 7;
/// Working set: ROWS "matrices" of TILES consecutive tiles each (192 of the default
/// cache's 256 entries).
const ROWS: u32 = 4;
const TILES: u32 = 48;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let space = PhextSpace::new(Layout::Hilbert);
    let mut keys: Vec<CoordKey> = Vec::new();
    for row in 1..=ROWS {
        for t in 1..=TILES {
            let c = Coord::new([1, 1 + row, 2, 1, 1, 1, 1, 1, t]).expect("coordinate");
            space
                .alloc(c, DType::F32, [8, 8], PageKind::Owned)
                .expect("alloc");
            keys.push(c.key());
        }
    }
    let mut cache = TranslationCache::default();
    // Warm up and check that the working set really stays resident.
    for &k in &keys {
        cache.lookup_ref(&space, k).expect("mapped");
    }
    cache.reset_counters();
    let n = keys.len();

    let mut hit_ns = Vec::new();
    let mut hit_arc_ns = Vec::new();
    let mut slow_ns = Vec::new();
    let mut miss_ns = Vec::new();
    // A 1 x 1 cache alternating between two pages: every lookup is a miss + fill.
    let mut thrash = TranslationCache::new(1, 1);
    for _ in 0..RUNS {
        let t = Instant::now();
        let mut acc = 0usize;
        // Cycle over the keys without a division in the loop.
        for _ in 0..LOOKUPS / n {
            for &k in &keys {
                let p = cache.lookup_ref(&space, k);
                acc = acc.wrapping_add(p.map_or(0, |p| p.len_bytes()));
            }
        }
        hit_ns.push(t.elapsed().as_nanos() as f64 / (LOOKUPS / n * n) as f64);
        black_box(acc);

        let t = Instant::now();
        for _ in 0..LOOKUPS / 4 / n {
            for &k in &keys {
                black_box(cache.lookup(&space, k));
            }
        }
        hit_arc_ns.push(t.elapsed().as_nanos() as f64 / (LOOKUPS / 4 / n * n) as f64);

        let t = Instant::now();
        for i in 0..LOOKUPS / 10 {
            black_box(space.get_key(keys[i % n]));
        }
        slow_ns.push(t.elapsed().as_nanos() as f64 / (LOOKUPS / 10) as f64);

        let t = Instant::now();
        for i in 0..LOOKUPS / 10 {
            black_box(thrash.lookup_ref(&space, keys[i % 2]));
        }
        miss_ns.push(t.elapsed().as_nanos() as f64 / (LOOKUPS / 10) as f64);
    }
    assert_eq!(thrash.hits(), 0);
    let expected = (RUNS * (LOOKUPS / n * n + LOOKUPS / 4 / n * n)) as u64;
    assert_eq!(cache.misses(), 0, "working set must stay resident");
    assert_eq!(cache.hits(), expected);
    println!("translation cache {} sets x {} ways, working set {} pages, {} runs (host wall clock, median)", cache.sets(), cache.ways(), n, RUNS);
    println!(
        "  hit, lookup_ref (no Arc clone):   {:6.2} ns/lookup",
        median(hit_ns)
    );
    println!(
        "  hit, lookup (Arc clone):          {:6.2} ns/lookup",
        median(hit_arc_ns)
    );
    println!(
        "  miss (PPT consult + fill):        {:6.2} ns/lookup",
        median(miss_ns)
    );
    println!(
        "  PPT slow path, PhextSpace::get_key: {:6.2} ns/lookup",
        median(slow_ns)
    );
    println!(
        "  PPT hit rate (translation cache): {:.4}",
        cache.hit_rate().unwrap_or(0.0)
    );
}
