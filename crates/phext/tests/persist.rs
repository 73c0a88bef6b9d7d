//! Save / load: round trips, the manifest as libphext reads it, and damaged files.

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use common::{bytes, coord, mixed_space, snapshot, spread, TempDir};
use proptest::prelude::*;
use vtpu_phext::{Coord, DType, Layout, LoadMode, PageKind, PersistError, PhextSpace};

/// The manifest's scrolls, by our coordinate.
fn scrolls(manifest: &Path) -> HashMap<Coord, String> {
    let text = fs::read_to_string(manifest).unwrap();
    libphext::phext::explode(&text)
        .into_iter()
        .map(|(c, s)| (Coord::from_libphext(&c, 999).unwrap(), s))
        .collect()
}

fn write_scrolls(manifest: &Path, scrolls: HashMap<Coord, String>) {
    let map = scrolls
        .into_iter()
        .map(|(c, s)| (c.to_libphext(), s))
        .collect();
    fs::write(manifest, libphext::phext::implode(map)).unwrap();
}

fn field(scroll: &str, key: &str) -> String {
    scroll
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap()
        .to_string()
}

fn saved(tag: &str, layout: Layout) -> (TempDir, std::path::PathBuf, PhextSpace) {
    let dir = TempDir::new(tag);
    let m = dir.join("space.phext");
    let s = mixed_space(layout);
    s.save(&m).unwrap();
    (dir, m, s)
}

#[test]
fn round_trip_all_kinds_dtypes_layouts() {
    for layout in Layout::ALL {
        let (dir, m, s) = saved("rt", layout);
        let stats = s.save(&m).unwrap(); // saving twice (same content) is fine too
        let want = snapshot(&s);
        assert_eq!(stats.pages, want.len());
        assert_eq!(stats.skipped_scratch, DType::ALL.len());
        assert_eq!(
            dir.files(),
            vec![
                "space.phext".to_string(),
                stats
                    .sidecar
                    .expect("a sidecar")
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            ]
        );

        // libphext reads the manifest: one scroll per saved page, at its coordinate.
        let sc = scrolls(&m);
        assert_eq!(sc.len(), want.len());
        for (c, ..) in &want {
            assert!(sc[c].starts_with("vtpu-page=1\n"), "{c}");
        }

        for mode in [LoadMode::Copy, LoadMode::Map] {
            let l = PhextSpace::load(&m, mode).unwrap();
            assert_eq!((l.layout(), l.part_limit()), (layout, 999));
            assert_eq!(snapshot(&l), want, "{layout} {mode:?}");
            assert_eq!(
                l.coords(),
                s.coords()
                    .into_iter()
                    .filter(|c| want.iter().any(|w| w.0 == *c))
                    .collect::<Vec<_>>()
            );
            for p in l.pages() {
                let orig = s.get(p.coord()).unwrap();
                assert_eq!(p.address() % 64, 0);
                match mode {
                    LoadMode::Map => {
                        assert_eq!((p.kind(), p.is_read_only()), (PageKind::Mapped, true));
                        assert!(p.view().is_some());
                    }
                    LoadMode::Copy => {
                        assert_eq!(p.kind(), PageKind::Owned);
                        assert_eq!(p.is_read_only(), orig.is_read_only());
                    }
                }
            }
            // Sidecar order is layout order: addresses increase along coords().
            let addrs: Vec<usize> = l
                .coords()
                .iter()
                .map(|&c| l.page_address(c).unwrap())
                .collect();
            assert!(addrs.windows(2).all(|w| w[0] <= w[1]), "{layout} {mode:?}");
        }

        // Mapped pages are saved too: save the mapped space elsewhere and load it back.
        let mapped = PhextSpace::load(&m, LoadMode::Map).unwrap();
        let m2 = dir.join("again.phext");
        mapped.save(&m2).unwrap();
        assert!(scrolls(&m2)
            .values()
            .all(|s| s.contains("kind=mapped\nread_only=true")));
        let back = PhextSpace::load(&m2, LoadMode::Copy).unwrap();
        assert_eq!(snapshot(&back), want);
        assert!(
            back.pages().iter().all(|p| !p.is_read_only()),
            "mapped pages load as writable copies"
        );
        // And saving a mapped space over its own manifest keeps it valid.
        mapped.save(&m).unwrap();
        assert_eq!(
            snapshot(&PhextSpace::load(&m, LoadMode::Map).unwrap()),
            want
        );
        assert_eq!(snapshot(&mapped), want);
    }
}

#[test]
fn copies_are_writable_and_independent_of_the_file() {
    let (_dir, m, _) = saved("copy", Layout::ZOrder);
    let l = PhextSpace::load(&m, LoadMode::Copy).unwrap();
    let p = l
        .pages()
        .into_iter()
        .find(|p| !p.is_read_only() && p.len_bytes() > 0)
        .unwrap();
    p.write(|b| b.fill(0x5A)).unwrap();
    let again = PhextSpace::load(&m, LoadMode::Copy).unwrap();
    assert_ne!(again.get(p.coord()).unwrap().checksum(), p.checksum());
}

#[test]
fn saving_replaces_the_previous_sidecar() {
    let dir = TempDir::new("replace");
    let m = dir.join("s.phext");
    let s = PhextSpace::new(Layout::Hilbert);
    s.insert_f32(spread(1), [1, 4], &[1.0, 2.0, 3.0, 4.0], PageKind::Owned)
        .unwrap();
    let first = s.save(&m).unwrap();
    s.get(spread(1)).unwrap().write_f32(0, &[9.0]).unwrap();
    let second = s.save(&m).unwrap();
    assert_ne!(first.sidecar, second.sidecar);
    assert!(
        !first.sidecar.as_ref().expect("a sidecar").exists(),
        "old sidecar deleted after the commit"
    );
    assert_eq!(second.old_sidecar_left, None);
    assert_eq!(dir.files().len(), 2);
    let l = PhextSpace::load(&m, LoadMode::Map).unwrap();
    assert_eq!(
        l.get(spread(1)).unwrap().to_f32_vec().unwrap(),
        vec![9.0, 2.0, 3.0, 4.0]
    );
}

#[test]
fn empty_space_round_trips() {
    let dir = TempDir::new("empty");
    let m = dir.join("e.phext");
    let s = PhextSpace::new(Layout::ZOrder);
    s.alloc(spread(1), DType::F32, [2, 2], PageKind::Scratch)
        .unwrap();
    let stats = s.save(&m).unwrap();
    assert_eq!((stats.pages, stats.skipped_scratch), (0, 1));
    assert!(PhextSpace::load(&m, LoadMode::Map).unwrap().is_empty());
}

#[test]
fn coordinates_above_999_are_not_saved() {
    let dir = TempDir::new("limit");
    let s = PhextSpace::with_part_limit(Layout::Insertion, 4000).unwrap();
    let c = Coord::new_with_limit([1, 1, 1, 1, 1, 1, 1, 1, 1000], 4000).unwrap();
    s.alloc(c, DType::F32, [1, 1], PageKind::Owned).unwrap();
    let e = s.save(&dir.join("x.phext")).unwrap_err();
    assert!(matches!(e, PersistError::PartAboveFileLimit { coord } if coord == c));
    assert!(dir.files().is_empty(), "nothing written");
    // A wide-limit space whose coordinates fit saves and keeps its limit.
    s.free(c).unwrap();
    s.alloc(spread(3), DType::F32, [1, 1], PageKind::Owned)
        .unwrap();
    s.save(&dir.join("x.phext")).unwrap();
    assert_eq!(
        PhextSpace::load(&dir.join("x.phext"), LoadMode::Copy)
            .unwrap()
            .part_limit(),
        4000
    );
}

// ---- damaged files: each is a specific error, never a panic or wrong data ----

fn load_err(m: &Path) -> PersistError {
    PhextSpace::load(m, LoadMode::Map).expect_err("damaged save must not load")
}

fn sidecar_of(m: &Path) -> std::path::PathBuf {
    let sc = scrolls(m);
    m.parent()
        .unwrap()
        .join(field(sc.values().next().unwrap(), "sidecar"))
}

#[test]
fn truncated_sidecar() {
    let (_d, m, _) = saved("trunc", Layout::Hilbert);
    let sc = sidecar_of(&m);
    let len = fs::metadata(&sc).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&sc)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let e = load_err(&m);
    assert!(
        matches!(e, PersistError::TruncatedSidecar { expected, actual, .. } if expected == len && actual == len - 100),
        "{e}"
    );
    fs::OpenOptions::new()
        .write(true)
        .open(&sc)
        .unwrap()
        .set_len(10)
        .unwrap();
    assert!(matches!(
        load_err(&m),
        PersistError::BadSidecarHeader { .. }
    ));
}

#[test]
fn flipped_byte_names_the_page() {
    let (_d, m, _) = saved("flip", Layout::ZOrder);
    let target = spread(4);
    let scroll = scrolls(&m)[&target].clone();
    let off: usize = field(&scroll, "offset").parse().unwrap();
    let sc = sidecar_of(&m);
    let mut data = fs::read(&sc).unwrap();
    data[off + 1] ^= 0x40;
    fs::write(&sc, data).unwrap();
    for mode in [LoadMode::Map, LoadMode::Copy] {
        let e = PhextSpace::load(&m, mode).unwrap_err();
        assert!(
            matches!(e, PersistError::ChecksumMismatch { coord, .. } if coord == target),
            "{e}"
        );
        assert!(e.to_string().contains(&target.to_string()));
    }
}

#[test]
fn missing_sidecar() {
    let (_d, m, _) = saved("missing", Layout::Insertion);
    fs::remove_file(sidecar_of(&m)).unwrap();
    let e = load_err(&m);
    assert!(matches!(e, PersistError::MissingSidecar { .. }), "{e}");
}

#[test]
fn bad_sidecar_header() {
    let (_d, m, _) = saved("magic", Layout::Insertion);
    let sc = sidecar_of(&m);
    let mut data = fs::read(&sc).unwrap();
    data[0] = b'X';
    fs::write(&sc, &data).unwrap();
    let e = load_err(&m);
    assert!(
        matches!(e, PersistError::BadSidecarHeader { ref problem, .. } if problem.contains("magic")),
        "{e}"
    );
    data[0] = b'V';
    data.extend_from_slice(&[0; 64]);
    fs::write(&sc, &data).unwrap();
    assert!(load_err(&m).to_string().contains("trailing bytes"));
}

/// Edit one scroll of the manifest and expect a specific error.
fn edited(tag: &str, edit: impl FnOnce(&mut HashMap<Coord, String>)) -> PersistError {
    let (_d, m, _) = saved(tag, Layout::Hilbert);
    let mut sc = scrolls(&m);
    edit(&mut sc);
    write_scrolls(&m, sc);
    load_err(&m)
}

fn edit_field(sc: &mut HashMap<Coord, String>, c: Coord, key: &str, value: &str) {
    let s = sc.get_mut(&c).unwrap();
    let old = format!("{key}={}", field(s, key));
    *s = s.replace(&old, &format!("{key}={value}"));
}

#[test]
fn edited_manifest_checksum() {
    let e = edited("ed-sum", |sc| {
        edit_field(sc, spread(3), "xxh3", "0000000000000000")
    });
    assert!(
        matches!(e, PersistError::ChecksumMismatch { coord, expected: 0, .. } if coord == spread(3)),
        "{e}"
    );
}

#[test]
fn edited_manifest_shape() {
    let e = edited("ed-shape", |sc| edit_field(sc, spread(0), "shape", "9x1"));
    assert!(
        matches!(e, PersistError::BadScroll { ref problem, .. } if problem.contains("does not match")),
        "{e}"
    );
}

#[test]
fn edited_manifest_offsets() {
    let e = edited("ed-mis", |sc| {
        let off: u64 = field(&sc[&spread(1)], "offset").parse().unwrap();
        edit_field(sc, spread(1), "offset", &(off + 8).to_string());
    });
    assert!(
        matches!(e, PersistError::MisalignedPage { coord, .. } if coord == spread(1)),
        "{e}"
    );
    let e = edited("ed-out", |sc| {
        edit_field(sc, spread(1), "offset", "1099511627776")
    });
    assert!(matches!(e, PersistError::PageOutOfSidecar { .. }), "{e}");
    let e = edited("ed-hdr", |sc| edit_field(sc, spread(1), "offset", "0"));
    assert!(
        matches!(e, PersistError::PageOutOfSidecar { offset: 0, .. }),
        "{e}"
    );
    let e = edited("ed-overlap", |sc| {
        let off = field(&sc[&spread(4)], "offset");
        edit_field(sc, spread(1), "offset", &off);
    });
    assert!(matches!(e, PersistError::OverlappingPages { .. }), "{e}");
    let e = edited("ed-huge", |sc| {
        edit_field(sc, spread(1), "length", "18446744073709551615")
    });
    assert!(matches!(e, PersistError::BadScroll { .. }), "{e}");
}

#[test]
fn edited_manifest_structure() {
    let e = edited("ed-notpage", |sc| {
        sc.insert(coord([5, 5, 5, 5, 5, 5, 5, 5, 5]), "just some notes".into());
    });
    assert!(
        matches!(e, PersistError::BadScroll { ref problem, .. } if problem.contains("key=value")),
        "{e}"
    );
    let e = edited("ed-nokey", |sc| {
        sc.insert(coord([5, 5, 5, 5, 5, 5, 5, 5, 5]), "title=notes".into());
    });
    assert!(e.to_string().contains("unknown key"), "{e}");
    let e = edited("ed-drop", |sc| {
        sc.remove(&spread(0));
    });
    assert!(matches!(e, PersistError::PageCountMismatch { .. }), "{e}");
    let e = edited("ed-mixed", |sc| {
        edit_field(sc, spread(3), "sidecar", "space.phext.0000000000000001.bin")
    });
    assert!(
        matches!(
            e,
            PersistError::MixedSidecars { .. } | PersistError::BadSidecarName { .. }
        ),
        "{e}"
    );
    let e = edited("ed-escape", |sc| {
        for s in sc.values_mut() {
            let old = format!("sidecar={}", field(s, "sidecar"));
            *s = s.replace(&old, "sidecar=../evil.0000000000000001.bin");
        }
    });
    assert!(matches!(e, PersistError::BadSidecarName { .. }), "{e}");
    let e = edited("ed-other", |sc| {
        for s in sc.values_mut() {
            let old = format!("sidecar={}", field(s, "sidecar"));
            *s = s.replace(&old, "sidecar=space.phext.0000000000000001.bin");
        }
    });
    assert!(matches!(e, PersistError::MissingSidecar { .. }), "{e}");
}

#[test]
fn manifest_coordinates_above_999_and_non_text() {
    let (_d, m, _) = saved("ed-coord", Layout::Insertion);
    let text = fs::read_to_string(&m).unwrap();
    let breaks = "\x17".repeat(1000); // 1000 scroll breaks: a scroll at x.x.1001
    fs::write(&m, format!("{text}{breaks}vtpu-page=1")).unwrap();
    let e = load_err(&m);
    assert!(matches!(e, PersistError::BadCoordinate { .. }), "{e}");
    assert!(e.to_string().contains("must be 1..=999"), "{e}");
    fs::write(&m, [0xff, 0xfe, 0x17]).unwrap();
    assert!(matches!(load_err(&m), PersistError::ManifestNotText { .. }));
    fs::remove_file(&m).unwrap();
    assert!(matches!(load_err(&m), PersistError::Io { .. }));
}

#[test]
fn name_collision_leaves_previous_save_intact() {
    // The sidecar name is deterministic (content id), so a save of the same space in a
    // scratch directory tells us the name; a directory in its way makes the rename fail.
    let dir = TempDir::new("collide");
    let m = dir.join("s.phext");
    let s = mixed_space(Layout::Hilbert);
    s.save(&m).unwrap();
    let before = dir.files();
    let want = snapshot(&s);
    let page = s
        .pages()
        .into_iter()
        .find(|p| !p.is_read_only() && p.kind() == PageKind::Owned && p.len_bytes() > 0)
        .unwrap();
    page.write(|b| b[0] ^= 1).unwrap();
    let probe = TempDir::new("collide-probe");
    let name = s
        .save(&probe.join("s.phext"))
        .unwrap()
        .sidecar
        .expect("a sidecar")
        .file_name()
        .unwrap()
        .to_owned();
    fs::create_dir(dir.path().join(&name)).unwrap();
    fs::write(dir.path().join(&name).join("blocker"), b"x").unwrap();
    let e = s.save(&m).unwrap_err();
    assert!(
        matches!(
            e,
            PersistError::Io {
                op: "rename sidecar to",
                ..
            }
        ),
        "{e}"
    );
    let mut after = dir.files();
    after.retain(|f| *f != name.to_string_lossy());
    assert_eq!(after, before, "no temp files left behind");
    assert_eq!(
        snapshot(&PhextSpace::load(&m, LoadMode::Map).unwrap()),
        want
    );
}

#[test]
fn save_while_sentrons_write_is_consistent() {
    let dir = TempDir::new("busy");
    let m = dir.join("b.phext");
    let s = std::sync::Arc::new(PhextSpace::new(Layout::ZOrder));
    for i in 0..8 {
        s.alloc(spread(i), DType::F32, [64, 64], PageKind::Owned)
            .unwrap();
    }
    let writer = {
        let s = std::sync::Arc::clone(&s);
        std::thread::spawn(move || {
            for r in 0..300u32 {
                s.get(spread(r % 8))
                    .unwrap()
                    .write_f32(0, &[r as f32; 4096])
                    .unwrap();
            }
        })
    };
    for _ in 0..5 {
        s.save(&m).unwrap();
        let l = PhextSpace::load(&m, LoadMode::Map).unwrap(); // checksums verified
        for p in l.pages() {
            let v = p.to_f32_vec().unwrap();
            assert!(v.iter().all(|&x| x == v[0]), "page saved mid-write");
        }
    }
    writer.join().unwrap();
}

#[test]
fn bytes_helper_is_deterministic() {
    assert_eq!(bytes(3, 16), bytes(3, 16));
    assert_ne!(bytes(3, 16), bytes(4, 16));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn garbage_manifests_never_panic(text in "[\\x01\\x17-\\x1f\\na-z0-9=_.x-]{0,200}") {
        let dir = TempDir::new("garbage");
        let m = dir.join("g.phext");
        fs::write(&m, &text).unwrap();
        let _ = PhextSpace::load(&m, LoadMode::Map);
        let _ = PhextSpace::load(&m, LoadMode::Copy);
    }

    #[test]
    fn garbage_sidecars_never_panic(junk in proptest::collection::vec(any::<u8>(), 0..300), at in 0usize..400) {
        let dir = TempDir::new("garbage-sc");
        let m = dir.join("g.phext");
        let s = PhextSpace::new(Layout::Insertion);
        s.insert_bytes(spread(0), DType::I8, [1, 100], &bytes(1, 100), false, PageKind::Owned).unwrap();
        let sc = s.save(&m).unwrap().sidecar.expect("a sidecar");
        let mut data = fs::read(&sc).unwrap();
        let at = at.min(data.len());
        data.splice(at..at.saturating_add(junk.len()).min(data.len()), junk.iter().copied());
        fs::write(&sc, &data).unwrap();
        if let Ok(l) = PhextSpace::load(&m, LoadMode::Copy) {
            // Loading succeeded only if the page bytes are exactly right.
            prop_assert_eq!(l.get(spread(0)).unwrap().read(|b| b.to_vec()), bytes(1, 100));
        }
    }
}
