//! Failure injection for the atomic-save protocol: a save that fails at any step leaves
//! the previous save loadable and intact, and leaves no temp files behind.

use std::fs;
use std::path::{Path, PathBuf};

use super::FAIL_AT;
use crate::{Coord, DType, Layout, LoadMode, PageKind, PersistError, PhextSpace};

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("vtpu-phext-unit-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn c(scroll: u32) -> Coord {
    Coord::new([1, 1, 1, 2, 1, 1, 1, 1, scroll]).unwrap()
}

fn values(m: &Path) -> Vec<Vec<f32>> {
    let s = PhextSpace::load(m, LoadMode::Map).unwrap();
    (1..=4)
        .map(|i| s.get(c(i)).unwrap().to_f32_vec().unwrap())
        .collect()
}

fn fail_at<T>(step: &'static str, f: impl FnOnce() -> T) -> T {
    FAIL_AT.with(|x| x.set(Some(step)));
    let r = f();
    FAIL_AT.with(|x| x.set(None));
    r
}

const STEPS: [&str; 6] = [
    "sidecar-write",
    "sidecar-sync",
    "sidecar-rename",
    "manifest-write",
    "manifest-sync",
    "manifest-rename",
];

#[test]
fn failed_save_at_any_step_keeps_the_previous_save() {
    let dir = Dir::new("failpoints");
    let m = dir.0.join("s.phext");
    let s = PhextSpace::new(Layout::Hilbert);
    for i in 1..=4 {
        s.insert_f32(c(i), [1, 32], &[i as f32; 32], PageKind::Owned)
            .unwrap();
    }
    s.save(&m).unwrap();
    let files_before = dir.files();
    let before = values(&m);
    for (n, step) in STEPS.iter().enumerate() {
        s.get(c(1))
            .unwrap()
            .write_f32(0, &[100.0 + n as f32])
            .unwrap();
        let e = fail_at(step, || s.save(&m)).unwrap_err();
        assert!(e.to_string().contains(step), "{step}: {e}");
        assert_eq!(dir.files(), files_before, "{step}: leftovers");
        assert_eq!(values(&m), before, "{step}: previous save changed");
    }
    // The deletion of the old sidecar happens after the commit: its failure is reported,
    // and the new save is what loads.
    let stats = fail_at("old-sidecar-delete", || s.save(&m)).unwrap();
    let left = stats.old_sidecar_left.expect("old sidecar reported");
    assert!(left.exists());
    assert_eq!(values(&m)[0][0], 105.0);
    assert!(matches!(
        PhextSpace::load(&m, LoadMode::Copy),
        Ok(ref l) if l.len() == 4
    ));
    // The next successful save deletes only the sidecar its predecessor named.
    s.get(c(2)).unwrap().write_f32(0, &[7.0]).unwrap();
    let next = s.save(&m).unwrap();
    assert_eq!(next.old_sidecar_left, None);
    assert_eq!(
        dir.files().len(),
        3,
        "manifest, new sidecar, the reported leftover"
    );
}

#[test]
fn injected_error_is_a_persist_error() {
    let dir = Dir::new("inject");
    let s = PhextSpace::new(Layout::Insertion);
    s.alloc(c(1), DType::I8, [1, 1], PageKind::Owned).unwrap();
    let e = fail_at("manifest-rename", || s.save(&dir.0.join("x.phext"))).unwrap_err();
    assert!(matches!(e, PersistError::Injected("manifest-rename")));
    assert!(dir.files().is_empty(), "{:?}", dir.files());
}
