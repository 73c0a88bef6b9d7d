//! Short runs of the structure-aware fuzz targets (`examples/fuzz_vsiw.rs`,
//! `examples/fuzz_vasm.rs`; a long run is `cargo run --release -p vtpu-isa --example
//! fuzz_vsiw -- --inputs 1000000`), and a replay of every finding kept in
//! `testdata/hostile/fuzz/` as a regression case.
// Each target includes the shared driver: loaded once per target on purpose.
#![allow(clippy::duplicate_mod)]

#[path = "../examples/fuzz_vasm.rs"]
mod fuzz_vasm;
#[path = "../examples/fuzz_vsiw.rs"]
mod fuzz_vsiw;

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

#[test]
fn vsiw_short_run_and_kept_cases() {
    let st = fuzz_vsiw::run(20_000, 21, None);
    println!("{}", st.summary("vsiw"));
    assert!(st.findings.is_empty(), "{:#?}", st.findings);
    assert!(st.accepted > 0 && st.rejected > 0);
    for p in kept("vsiw") {
        let bytes = std::fs::read(&p).unwrap();
        let input = fuzz_vsiw::Input {
            bytes,
            unsealed_damage: false,
        };
        if let fuzz_vsiw::fuzz_support::Outcome::Violation(v) = fuzz_vsiw::check(&input) {
            panic!("{}: {v}", p.display());
        }
    }
}

#[test]
fn vasm_short_run_and_kept_cases() {
    let st = fuzz_vasm::run(5_000, 22, None);
    println!("{}", st.summary("vasm"));
    assert!(st.findings.is_empty(), "{:#?}", st.findings);
    assert!(st.accepted > 0 && st.rejected > 0);
    for p in kept("vasm") {
        let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
        if let fuzz_vasm::fuzz_support::Outcome::Violation(v) = fuzz_vasm::check(&text) {
            panic!("{}: {v}", p.display());
        }
    }
}
