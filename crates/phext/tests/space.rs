//! The PPT: allocation, lookup, freeing, epochs, ordering, placement, mapped pages and
//! concurrent use from sentron-like threads.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::sync::Arc;
use std::thread;

use common::{bytes, coord, spread, TempDir};
use vtpu_phext::{
    hilbert_key, zorder_key, Coord, DType, Layout, Page, PageInit, PageKind, PhextSpace,
    SpaceError, TranslationCache, PAGE_ALIGN,
};

fn assert_send_sync<T: Send + Sync>() {}
fn assert_send<T: Send>() {}

#[test]
fn shared_types_are_send_and_sync() {
    assert_send_sync::<PhextSpace>();
    assert_send_sync::<Page>();
    assert_send_sync::<Arc<Page>>();
    assert_send::<TranslationCache>();
}

#[test]
fn alloc_get_free_and_epoch() {
    let s = PhextSpace::new(Layout::Insertion);
    assert!(s.is_empty());
    let c = coord([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let p = s.alloc(c, DType::F32, [4, 8], PageKind::Scratch).unwrap();
    assert_eq!(
        (p.elems(), p.len_bytes(), p.kind()),
        (32, 128, PageKind::Scratch)
    );
    assert!(p.read(|b| b.iter().all(|&x| x == 0)), "alloc zeroes");
    assert_eq!(p.address() % PAGE_ALIGN, 0);
    assert_eq!(s.epoch(), 0, "alloc does not bump the epoch");
    assert!(matches!(
        s.alloc(c, DType::F32, [1, 1], PageKind::Owned),
        Err(SpaceError::AlreadyMapped { coord }) if coord == c
    ));
    assert!(Arc::ptr_eq(&s.get(c).unwrap(), &p));
    assert!(Arc::ptr_eq(&s.get_key(c.key()).unwrap(), &p));
    assert_eq!((s.len(), s.total_bytes()), (1, 128));
    assert_eq!(s.page_address(c), Some(p.address()));

    s.free(c).unwrap();
    assert_eq!(s.epoch(), 1);
    assert!(s.get(c).is_none());
    assert_eq!((s.len(), s.total_bytes()), (0, 0));
    let e = s.free(c).unwrap_err();
    assert_eq!(e.to_string(), "no page is mapped at 1.2.3/4.5.6/7.8.9");
    // A holder of the Arc keeps valid bytes after the free.
    p.write_f32(0, &[1.5]).unwrap();
    assert_eq!(p.to_f32_vec().unwrap()[0], 1.5);
}

#[test]
fn insert_checks_sizes_kinds_and_limits() {
    let s = PhextSpace::new(Layout::Insertion);
    let c = Coord::ORIGIN;
    let e = s
        .insert_f32(c, [2, 2], &[1.0; 3], PageKind::Owned)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "page 1.1.1/1.1.1/1.1.1: f32 2x2 needs 16 bytes of data, got 12"
    );
    assert!(matches!(
        s.alloc(c, DType::Q4_0, [1, 31], PageKind::Owned),
        Err(SpaceError::Size { .. })
    ));
    assert!(matches!(
        s.alloc(c, DType::F32, [usize::MAX, 2], PageKind::Owned),
        Err(SpaceError::ShapeOverflow { .. })
    ));
    assert!(matches!(
        s.alloc(c, DType::F32, [1, 1], PageKind::Mapped),
        Err(SpaceError::BadKind { .. })
    ));
    assert!(matches!(
        s.alloc(c, DType::F32, [1 << 40, 1 << 20], PageKind::Owned),
        Err(SpaceError::OutOfMemory { .. }) | Err(SpaceError::Size { .. })
    ));
    let big = Coord::new_with_limit([1, 1, 1, 1, 1, 1, 1, 1, 5000], 16383).unwrap();
    assert!(matches!(
        s.alloc(big, DType::F32, [1, 1], PageKind::Owned),
        Err(SpaceError::CoordAboveLimit { limit: 999, .. })
    ));
    let wide = PhextSpace::with_part_limit(Layout::Hilbert, 16383).unwrap();
    assert_eq!((wide.part_limit(), wide.layout()), (16383, Layout::Hilbert));
    wide.alloc(big, DType::F32, [1, 1], PageKind::Owned)
        .unwrap();
    assert!(PhextSpace::with_part_limit(Layout::Hilbert, 16384).is_err());
    assert!(PhextSpace::with_part_limit(Layout::Hilbert, 0).is_err());

    let ro = s
        .insert_bytes(c, DType::I8, [1, 3], &[1, 2, 3], true, PageKind::Owned)
        .unwrap();
    assert_eq!(ro.view(), Some(&[1u8, 2, 3][..]));
    assert!(ro.write(|_| ()).is_err());
}

#[test]
fn coords_follow_the_layout_order() {
    for layout in Layout::ALL {
        let s = PhextSpace::new(layout);
        for i in (0..30).rev() {
            s.alloc(spread(i), DType::I8, [1, 1], PageKind::Owned)
                .unwrap();
        }
        let got = s.coords();
        let mut want: Vec<Coord> = (0..30).map(spread).collect();
        match layout {
            Layout::Insertion => want.sort(),
            Layout::ZOrder => want.sort_by_key(zorder_key),
            Layout::Hilbert => want.sort_by_key(hilbert_key),
        }
        assert_eq!(got, want, "{layout}");
    }
}

/// Every coordinate with parts in 1..=2 in the last `dims` dimensions.
fn grid(dims: usize) -> Vec<Coord> {
    (0..1u32 << dims)
        .map(|bits| {
            let mut p = [1u32; 9];
            for d in 0..dims {
                p[8 - d] = 1 + ((bits >> d) & 1);
            }
            coord(p)
        })
        .collect()
}

#[test]
fn build_placed_puts_curve_neighbours_next_to_each_other() {
    for layout in Layout::ALL {
        let coords = grid(6);
        let inits: Vec<PageInit> = coords
            .iter()
            .rev()
            .enumerate()
            .map(|(i, &c)| PageInit {
                coord: c,
                dtype: DType::F32,
                shape: [1, 10 + i % 7], // odd sizes: padding to 64 bytes is exercised
                bytes: Some(bytes(i as u64, 4 * (10 + i % 7))),
                read_only: i % 2 == 0,
                kind: if i % 3 == 0 {
                    PageKind::Scratch
                } else {
                    PageKind::Owned
                },
            })
            .collect();
        let s = PhextSpace::build_placed(layout, inits.clone(), 999).unwrap();
        assert_eq!(s.len(), inits.len());
        // Memory order of the pages.
        let mut by_addr: Vec<(usize, Coord)> = coords
            .iter()
            .map(|&c| (s.page_address(c).unwrap(), c))
            .collect();
        by_addr.sort();
        for w in by_addr.windows(2) {
            let p = s.get(w[0].1).unwrap();
            let gap = w[1].0 - w[0].0;
            assert_eq!(
                gap,
                p.len_bytes().div_ceil(64) * 64,
                "{layout}: pages are packed"
            );
        }
        assert!(by_addr.iter().all(|(a, _)| a % 64 == 0));
        let mem_order: Vec<Coord> = by_addr.iter().map(|&(_, c)| c).collect();
        match layout {
            // Insertion: the order given (reversed coordinate order here).
            Layout::Insertion => {
                assert_eq!(mem_order, coords.iter().rev().copied().collect::<Vec<_>>())
            }
            _ => assert_eq!(
                mem_order,
                s.coords(),
                "{layout}: memory order = curve order"
            ),
        }
        if layout == Layout::Hilbert {
            for w in mem_order.windows(2) {
                let diff: u32 = w[0]
                    .parts()
                    .iter()
                    .zip(w[1].parts())
                    .map(|(a, b)| a.abs_diff(b))
                    .sum();
                assert_eq!(
                    diff, 1,
                    "Hilbert memory neighbours {} and {} are coordinate neighbours",
                    w[0], w[1]
                );
            }
        }
        // Contents, kinds and writability survive placement.
        for init in &inits {
            let p = s.get(init.coord).unwrap();
            assert!(p.is_in_arena());
            assert_eq!(p.kind(), init.kind);
            assert_eq!(p.is_read_only(), init.read_only);
            assert_eq!(p.read(|b| b.to_vec()), *init.bytes.as_ref().unwrap());
            if !init.read_only {
                p.write(|b| b.fill(0xAB)).unwrap();
            }
        }
        // Writes stay inside their own page.
        for init in inits.iter().filter(|i| i.read_only) {
            assert_eq!(
                s.get(init.coord).unwrap().view().unwrap(),
                &init.bytes.as_ref().unwrap()[..]
            );
        }
    }
}

#[test]
fn build_placed_rejects_bad_input() {
    let init = |c: Coord, kind, bytes: Option<Vec<u8>>| PageInit {
        coord: c,
        dtype: DType::F32,
        shape: [1, 2],
        bytes,
        read_only: false,
        kind,
    };
    let a = Coord::ORIGIN;
    let dup = vec![
        init(a, PageKind::Owned, None),
        init(a, PageKind::Owned, None),
    ];
    assert!(matches!(
        PhextSpace::build_placed(Layout::ZOrder, dup, 999),
        Err(SpaceError::AlreadyMapped { .. })
    ));
    let mapped = vec![init(a, PageKind::Mapped, None)];
    assert!(matches!(
        PhextSpace::build_placed(Layout::ZOrder, mapped, 999),
        Err(SpaceError::BadKind { .. })
    ));
    let short = vec![init(a, PageKind::Owned, Some(vec![0; 7]))];
    assert!(matches!(
        PhextSpace::build_placed(Layout::ZOrder, short, 999),
        Err(SpaceError::DataLength {
            expected: 8,
            got: 7,
            ..
        })
    ));
    assert!(PhextSpace::build_placed(Layout::ZOrder, vec![], 0).is_err());
    let empty = PhextSpace::build_placed(Layout::Hilbert, vec![], 999).unwrap();
    assert!(empty.is_empty());
    // Zero-length pages share an offset with the next page without overlapping it.
    let zero = PageInit {
        shape: [0, 2],
        ..init(coord([1, 1, 1, 1, 1, 1, 1, 1, 2]), PageKind::Owned, None)
    };
    let s = PhextSpace::build_placed(
        Layout::Insertion,
        vec![init(a, PageKind::Owned, None), zero],
        999,
    )
    .unwrap();
    assert_eq!(s.len(), 2);
    // Curve order puts the zero-length page first (same offset as the next page) while
    // the given order lists it last.
    let origin_zero = PageInit {
        shape: [0, 2],
        ..init(a, PageKind::Owned, None)
    };
    let next = init(coord([1, 1, 1, 1, 1, 1, 1, 1, 2]), PageKind::Owned, None);
    for layout in Layout::ALL {
        let s =
            PhextSpace::build_placed(layout, vec![next.clone(), origin_zero.clone()], 999).unwrap();
        assert_eq!(s.len(), 2, "{layout}");
    }
}

#[test]
fn insert_mapped_is_zero_copy_aligned_and_bounded() {
    let dir = TempDir::new("mapped");
    let path = dir.join("weights.bin");
    let data = bytes(7, 256);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(&data)
        .unwrap();
    let map =
        Arc::new(unsafe { memmap2::Mmap::map(&std::fs::File::open(&path).unwrap()) }.unwrap());
    let s = PhextSpace::new(Layout::Insertion);
    let p = s
        .insert_mapped(Coord::ORIGIN, DType::I8, [2, 32], Arc::clone(&map), 64)
        .unwrap();
    assert_eq!((p.kind(), p.is_read_only()), (PageKind::Mapped, true));
    assert_eq!(p.view().unwrap(), &data[64..128]);
    assert_eq!(p.address(), map.as_ptr() as usize + 64, "zero-copy");
    let c2 = coord([1, 1, 1, 1, 1, 1, 1, 1, 2]);
    assert!(matches!(
        s.insert_mapped(c2, DType::I8, [1, 32], Arc::clone(&map), 16),
        Err(SpaceError::MappedMisaligned { .. })
    ));
    assert!(matches!(
        s.insert_mapped(c2, DType::I8, [1, 128], Arc::clone(&map), 192),
        Err(SpaceError::MappedRange { .. })
    ));
    assert!(matches!(
        s.insert_mapped(c2, DType::I8, [1, 1], Arc::clone(&map), usize::MAX),
        Err(SpaceError::MappedRange { .. })
    ));
}

#[test]
fn sentron_threads_share_a_space() {
    // Two "sentrons" read and write pages through their own caches while the main thread
    // frees and re-creates pages; freed pages must never be served from a cache.
    let s = Arc::new(PhextSpace::new(Layout::Hilbert));
    for i in 0..16 {
        s.alloc(spread(i), DType::F32, [16, 16], PageKind::Owned)
            .unwrap();
    }
    let workers: Vec<_> = (0..2)
        .map(|t| {
            let s = Arc::clone(&s);
            thread::spawn(move || {
                let mut cache = TranslationCache::new(4, 2);
                let mut buf = [0f32; 256];
                for round in 0..2000u32 {
                    let c = spread(round % 16);
                    if let Some(p) = cache.lookup_ref(&s, c.key()) {
                        if round % 2 == t {
                            p.write_f32(0, &[round as f32; 256]).unwrap();
                        } else {
                            p.read_f32(0, &mut buf).unwrap();
                            assert!(buf.iter().all(|&v| v == buf[0]), "torn page");
                        }
                    }
                }
                (cache.hits(), cache.misses())
            })
        })
        .collect();
    let mut gone = HashSet::new();
    for round in 0..200u32 {
        let c = spread(round % 16);
        if gone.remove(&c) {
            s.alloc(c, DType::F32, [16, 16], PageKind::Owned).unwrap();
        } else {
            s.free(c).unwrap();
            gone.insert(c);
        }
    }
    for w in workers {
        let (hits, misses) = w.join().unwrap();
        assert_eq!(hits + misses, 2000);
    }
    let mut cache = TranslationCache::default();
    for c in &gone {
        assert!(cache.lookup(&s, c.key()).is_none());
    }
}

/// `fill_arena`: disjoint slices filled (here on two threads), then mapped read-only with
/// exactly those bytes; duplicates (in the specs or in the space) are refused before
/// anything is mapped.
#[test]
fn a_fill_arena_maps_what_was_filled_and_refuses_duplicates() {
    use vtpu_phext::PageSpec;
    let s = PhextSpace::new(Layout::Insertion);
    // Sizes that are not multiples of the alignment, one over the huge-page size.
    let shapes = [[3usize, 7usize], [1, 1], [600, 1000], [17, 5]];
    let specs: Vec<PageSpec> = shapes
        .iter()
        .enumerate()
        .map(|(i, &shape)| PageSpec {
            coord: spread(i as u32 + 1),
            dtype: DType::I8,
            shape,
            kind: PageKind::Owned,
        })
        .collect();
    let mut arena = s.fill_arena(&specs).unwrap();
    assert!(arena.len() >= 3 * 7 + 1 + 600 * 1000 + 17 * 5);
    let mut slices = arena.slices_mut();
    assert_eq!(
        slices.iter().map(|x| x.len()).collect::<Vec<_>>(),
        vec![21, 1, 600_000, 85]
    );
    assert!(slices.iter().all(|x| x.iter().all(|&b| b == 0)));
    let (a, b) = slices.split_at_mut(2);
    thread::scope(|t| {
        t.spawn(|| {
            for (i, x) in a.iter_mut().enumerate() {
                x.copy_from_slice(&bytes(i as u64, x.len()));
            }
        });
        t.spawn(|| {
            for (i, x) in b.iter_mut().enumerate() {
                x.copy_from_slice(&bytes(i as u64 + 2, x.len()));
            }
        });
    });
    drop(slices);
    assert!(s.is_empty(), "nothing is mapped before commit");
    arena.commit(&s).unwrap();
    for (i, spec) in specs.iter().enumerate() {
        let p = s.get(spec.coord).unwrap();
        assert!(p.is_read_only());
        assert_eq!(p.address() % PAGE_ALIGN, 0);
        let want = bytes(i as u64, spec.shape[0] * spec.shape[1]);
        assert_eq!(p.view().unwrap(), &want[..]);
    }

    let dup = vec![specs[0], specs[0]];
    let fresh = PhextSpace::new(Layout::Insertion);
    assert!(matches!(
        fresh.fill_arena(&dup),
        Err(SpaceError::AlreadyMapped { .. })
    ));
    assert!(matches!(
        s.fill_arena(&specs[1..2]),
        Err(SpaceError::AlreadyMapped { .. })
    ));
}
