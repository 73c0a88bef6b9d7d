//! Short runs of the structure-aware fuzz targets (`examples/fuzz_*.rs`; a long run is
//! `cargo run --release -p vtpu-phext --example fuzz_manifest -- --inputs 1000000`),
//! and a replay of every finding kept in `testdata/hostile/fuzz/` as a regression case.
// Each target includes the shared driver: loaded once per target on purpose.
#![allow(clippy::duplicate_mod)]

#[path = "../examples/fuzz_coord.rs"]
mod fuzz_coord;
#[path = "../examples/fuzz_manifest.rs"]
mod fuzz_manifest;
#[path = "../examples/fuzz_sidecar.rs"]
mod fuzz_sidecar;

use std::path::{Path, PathBuf};

fn kept(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/hostile/fuzz")
        .join(target);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    v.retain(|p| p.file_name().is_some_and(|n| n != "README.md"));
    v.sort();
    v
}

fn no_findings(name: &str, st: &fuzz_coord::fuzz_support::Stats) {
    println!("{}", st.summary(name));
    assert!(st.findings.is_empty(), "{name}: {:#?}", st.findings);
    assert!(
        st.accepted > 0 && st.rejected > 0,
        "{name}: the inputs must reach both outcomes"
    );
}

#[test]
fn coord_short_run_and_kept_cases() {
    let st = fuzz_coord::run(20_000, 11, None);
    no_findings("coord", &st);
    for p in kept("coord") {
        let bytes = std::fs::read(&p).unwrap();
        let input = fuzz_coord::parse_saved(&bytes)
            .unwrap_or_else(|| panic!("{}: not a saved coord input", p.display()));
        if let fuzz_coord::fuzz_support::Outcome::Violation(v) = fuzz_coord::check(&input) {
            panic!("{}: {v}", p.display());
        }
    }
}

#[test]
fn manifest_short_run_and_kept_cases() {
    let st = fuzz_manifest::run(3_000, 12, None);
    println!("{}", st.summary("manifest"));
    assert!(st.findings.is_empty(), "{:#?}", st.findings);
    assert!(st.accepted > 0 && st.rejected > 0);
    for p in kept("manifest") {
        let bytes = std::fs::read(&p).unwrap();
        if let fuzz_manifest::fuzz_support::Outcome::Violation(v) = fuzz_manifest::replay(&bytes) {
            panic!("{}: {v}", p.display());
        }
    }
}

#[test]
fn sidecar_short_run_and_kept_cases() {
    let st = fuzz_sidecar::run(3_000, 13, None);
    println!("{}", st.summary("sidecar"));
    assert!(st.findings.is_empty(), "{:#?}", st.findings);
    assert!(st.accepted > 0 && st.rejected > 0);
    for p in kept("sidecar") {
        let bytes = std::fs::read(&p).unwrap();
        if let Some(fuzz_sidecar::fuzz_support::Outcome::Violation(v)) =
            fuzz_sidecar::replay(&bytes)
        {
            panic!("{}: {v}", p.display());
        }
    }
}
