//! Persistence edge cases (issue 8, item 6): empty manifests and empty spaces, sidecars
//! and manifests that are not regular files, sidecar cleanup that must not touch
//! another manifest's files, and temp files left by a save that was killed.

#![allow(clippy::result_large_err)] // PersistError is the loader's own type

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{spread, TempDir};
use vtpu_phext::{Layout, LoadMode, PageKind, PersistError, PhextSpace};

fn one_page_space(v: f32) -> PhextSpace {
    let s = PhextSpace::new(Layout::ZOrder);
    s.insert_f32(spread(1), [1, 2], &[v, v + 1.0], PageKind::Owned)
        .unwrap();
    s
}

/// Load on another thread and give up after `limit`: a load that blocks (on a FIFO)
/// fails the test instead of hanging it.
fn load_within(m: &Path, mode: LoadMode, limit: Duration) -> Result<PhextSpace, PersistError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = m.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(PhextSpace::load(&path, mode));
    });
    match rx.recv_timeout(limit) {
        Ok(r) => r,
        Err(_) => panic!("load of {} blocked for more than {limit:?}", m.display()),
    }
}

fn mkfifo(p: &Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(p)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "mkfifo {}", p.display());
}

#[test]
fn a_zero_byte_manifest_is_an_error_not_an_empty_space() {
    let dir = TempDir::new("edge-zero");
    let m = dir.join("z.phext");
    fs::write(&m, b"").unwrap();
    for mode in [LoadMode::Map, LoadMode::Copy] {
        let e = PhextSpace::load(&m, mode).unwrap_err();
        assert!(matches!(e, PersistError::EmptyManifest { .. }), "{e}");
        assert!(e.to_string().contains("0 bytes"), "{e}");
    }
    // A document of delimiters only (scroll and section breaks, no text) is not a
    // space either; blank text is a scroll that is not a page.
    fs::write(&m, "\x17\x18\x17").unwrap();
    let e = PhextSpace::load(&m, LoadMode::Map).unwrap_err();
    assert!(matches!(e, PersistError::NoPages { .. }), "{e}");
    fs::write(&m, "\n\n").unwrap();
    let e = PhextSpace::load(&m, LoadMode::Map).unwrap_err();
    assert!(e.to_string().contains("is not key=value"), "{e}");
}

#[test]
fn an_empty_space_saves_a_marker_and_no_sidecar() {
    let dir = TempDir::new("edge-empty");
    let m = dir.join("e.phext");
    // First a save with a page, then the same manifest saved empty: the old sidecar
    // goes, no new one appears, and the manifest says "empty".
    let first = one_page_space(1.0).save(&m).unwrap();
    let old = first.sidecar.expect("a sidecar");
    let empty = PhextSpace::with_part_limit(Layout::Hilbert, 4000).unwrap();
    let stats = empty.save(&m).unwrap();
    assert_eq!(stats.sidecar, None);
    assert_eq!(stats.old_sidecar_left, None);
    assert!(!old.exists(), "old sidecar deleted");
    assert_eq!(dir.files(), vec!["e.phext".to_string()]);
    let text = fs::read_to_string(&m).unwrap();
    assert!(text.starts_with("vtpu-empty-space=1"), "{text:?}");
    for mode in [LoadMode::Map, LoadMode::Copy] {
        let l = PhextSpace::load(&m, mode).unwrap();
        assert!(l.is_empty());
        assert_eq!((l.layout(), l.part_limit()), (Layout::Hilbert, 4000));
    }
    // A marker next to a page scroll is refused.
    let m2 = dir.join("d.phext");
    one_page_space(2.0).save(&m2).unwrap();
    let page_text = fs::read_to_string(&m2).unwrap();
    let marker_scrolls = libphext::phext::explode(&text);
    let mut scrolls = libphext::phext::explode(&page_text);
    for (c, s) in marker_scrolls {
        if !s.is_empty() {
            scrolls.insert(c, s);
        }
    }
    fs::write(&m2, libphext::phext::implode(scrolls)).unwrap();
    let e = PhextSpace::load(&m2, LoadMode::Map).unwrap_err();
    assert!(e.to_string().contains("empty-space marker"), "{e}");
}

#[test]
fn sidecars_that_are_not_regular_files_are_refused_without_blocking() {
    let dir = TempDir::new("edge-fifo");
    let m = dir.join("f.phext");
    let sidecar = one_page_space(1.0).save(&m).unwrap().sidecar.unwrap();
    let limit = Duration::from_secs(5);
    // A FIFO in the sidecar's place.
    fs::remove_file(&sidecar).unwrap();
    mkfifo(&sidecar);
    for mode in [LoadMode::Map, LoadMode::Copy] {
        let t0 = Instant::now();
        let e = load_within(&m, mode, limit).unwrap_err();
        assert!(
            e.to_string().contains("is a FIFO, not a regular file"),
            "{e}"
        );
        assert!(t0.elapsed() < Duration::from_secs(1));
    }
    // A directory.
    fs::remove_file(&sidecar).unwrap();
    fs::create_dir(&sidecar).unwrap();
    let e = load_within(&m, LoadMode::Copy, limit).unwrap_err();
    assert!(e.to_string().contains("is a directory"), "{e}");
    // A device (through a symlink: the target is what is opened).
    fs::remove_dir(&sidecar).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &sidecar).unwrap();
    let e = load_within(&m, LoadMode::Map, limit).unwrap_err();
    assert!(e.to_string().contains("is a character device"), "{e}");
}

#[test]
fn manifests_that_are_not_regular_files_are_refused_without_blocking() {
    let dir = TempDir::new("edge-mfifo");
    let m = dir.join("fifo.phext");
    mkfifo(&m);
    let e = load_within(&m, LoadMode::Map, Duration::from_secs(5)).unwrap_err();
    assert!(e.to_string().contains("manifest"), "{e}");
    assert!(e.to_string().contains("FIFO"), "{e}");
    // /dev/zero claims 0 bytes and never ends: refused as a device, nothing read.
    let e = load_within(
        Path::new("/dev/zero"),
        LoadMode::Map,
        Duration::from_secs(5),
    )
    .unwrap_err();
    assert!(e.to_string().contains("character device"), "{e}");
    // Saving over a FIFO manifest does not block on reading the old one either.
    let t0 = Instant::now();
    let r = one_page_space(3.0).save(&m);
    assert!(t0.elapsed() < Duration::from_secs(5));
    // The rename replaces the FIFO with the new manifest.
    r.unwrap();
    assert_eq!(
        PhextSpace::load(&m, LoadMode::Copy)
            .unwrap()
            .get(spread(1))
            .unwrap()
            .to_f32_vec()
            .unwrap(),
        vec![3.0, 4.0]
    );
}

/// Manifest `m.phext` whose scroll names the sidecar of manifest
/// `m.phext.0123456789abcdef` (the name starts like one of `m.phext`'s own): saving
/// `m.phext` must not delete it.
#[test]
fn cleanup_never_deletes_another_manifests_sidecar() {
    let dir = TempDir::new("edge-owner");
    let other = dir.join("m.phext.0123456789abcdef");
    let other_sidecar = one_page_space(5.0).save(&other).unwrap().sidecar.unwrap();
    let m = dir.join("m.phext");
    fs::copy(&other, &m).unwrap();
    // m.phext loads (it names a valid sidecar), and is then saved with new content.
    PhextSpace::load(&m, LoadMode::Map).unwrap();
    let stats = one_page_space(7.0).save(&m).unwrap();
    assert_eq!(stats.old_sidecar_left, None);
    assert!(
        other_sidecar.exists(),
        "another manifest's sidecar was deleted"
    );
    let l = PhextSpace::load(&other, LoadMode::Map).unwrap();
    assert_eq!(
        l.get(spread(1)).unwrap().to_f32_vec().unwrap(),
        vec![5.0, 6.0]
    );
    // A sidecar that is genuinely m.phext's own is still cleaned up.
    let own = stats.sidecar.unwrap();
    one_page_space(9.0).save(&m).unwrap();
    assert!(!own.exists());
}

/// A pid that certainly belonged to a process that has exited.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn a_killed_saves_temp_files_are_removed_by_the_next_save() {
    let dir = TempDir::new("edge-tmp");
    let m = dir.join("t.phext");
    one_page_space(1.0).save(&m).unwrap();
    let dead = dead_pid();
    let stale = [
        format!(".t.phext.{dead}.0.sidecar.tmp"),
        format!(".t.phext.{dead}.3.manifest.tmp"),
    ];
    let kept = [
        // pid 1 is alive: a save in progress elsewhere is left alone.
        ".t.phext.1.0.sidecar.tmp".to_string(),
        // Another manifest's temp file.
        format!(".t.phext.x.{dead}.0.sidecar.tmp"),
        // Not the pattern.
        format!(".t.phext.{dead}.0.other.tmp"),
    ];
    for f in stale.iter().chain(&kept) {
        fs::write(dir.join(f), b"partial").unwrap();
    }
    one_page_space(2.0).save(&m).unwrap();
    let files = dir.files();
    for f in &stale {
        assert!(!files.contains(f), "{f} left behind: {files:?}");
    }
    for f in &kept {
        assert!(files.contains(f), "{f} deleted: {files:?}");
    }
    // Nothing else of ours is left: the manifest, its sidecar, the other files.
    let ours: Vec<&String> = files
        .iter()
        .filter(|f| f.starts_with("t.phext") || f.starts_with(".t.phext"))
        .filter(|f| !kept.contains(f))
        .collect();
    assert_eq!(ours.len(), 2, "{ours:?}");
}

#[test]
fn an_oversized_manifest_is_refused_before_reading() {
    let dir = TempDir::new("edge-big");
    let m = dir.join("big.phext");
    let f = fs::File::create(&m).unwrap();
    // Sparse: claims more than the cap without using the disk.
    f.set_len(vtpu_phext::MAX_MANIFEST_BYTES + 1).unwrap();
    let t0 = Instant::now();
    let e = PhextSpace::load(&m, LoadMode::Map).unwrap_err();
    assert!(matches!(e, PersistError::ManifestTooLarge { .. }), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(1));
}
