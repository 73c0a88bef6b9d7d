//! Shared test helpers: run programs on the reference executor and compare pages.
#![allow(dead_code)]

use vtpu_isa::Program;
use vtpu_phext::{Coord, Layout, PhextSpace};
use vtpu_runtime::{ExecutorKind, RunConfig, RunReport};

/// Run `p` on `n` sentrons; returns the report and every page's bytes.
pub fn run(p: &Program, n: usize, exec: ExecutorKind) -> (RunReport, Vec<(Coord, Vec<u8>)>) {
    let space = PhextSpace::new(Layout::ZOrder);
    vtpu_runtime::load_pages(p, &space).expect("pages load");
    let cfg = RunConfig {
        sentrons: n,
        executor: exec,
        pin: false,
        word_limit: 50_000_000,
        ..RunConfig::default()
    };
    let report = match vtpu_runtime::run(p, &space, &cfg) {
        Ok(r) => r,
        Err(e) => panic!("run failed: {e}\n{}", vtpu_isa::disassemble(p)),
    };
    let mut pages: Vec<(Coord, Vec<u8>)> = space
        .pages()
        .iter()
        .map(|pg| (pg.coord(), pg.read(|b| b.to_vec())))
        .collect();
    pages.sort_by_key(|x| x.0);
    (report, pages)
}

/// Assert two page sets are bit-identical, naming the first difference.
pub fn same_pages(a: &[(Coord, Vec<u8>)], b: &[(Coord, Vec<u8>)], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: page counts differ");
    for ((ca, ba), (cb, bb)) in a.iter().zip(b) {
        assert_eq!(ca, cb, "{what}: page sets differ");
        if ba != bb {
            let i = ba.iter().zip(bb).position(|(x, y)| x != y).unwrap_or(0);
            panic!("{what}: page {ca} differs at byte {i}");
        }
    }
}
