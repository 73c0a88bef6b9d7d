//! The workloads at test size: correct results, no dead ops, packed >= 2.5 ops/cycle on
//! each sentron for the batched microvtpu, PPT hit rate >= 95% for the GEMV. (The CLI
//! runs them at full size: `vtpu workload microvtpu-batched|gemv --report`.)

use vtpu_compiler::workloads::gemv::GemvParams;
use vtpu_compiler::workloads::microvtpu_batched::MicroParams;
use vtpu_compiler::workloads::{self, RunOptions};
use vtpu_runtime::ExecutorKind;

fn opts() -> RunOptions {
    RunOptions {
        runs: 1,
        executor: ExecutorKind::Reference,
        pin: false,
        ..RunOptions::default()
    }
}

#[test]
fn microvtpu_batched_packs_above_2_5_ops_per_cycle() {
    let w = workloads::microvtpu_batched::build(MicroParams {
        samples: 2048,
        features: 8,
        rows: 8,
    })
    .unwrap();
    let r = workloads::run(&w, &opts()).unwrap();
    for side in &r.sides {
        assert!(
            side.dead_ops.is_empty(),
            "{}: {:?}",
            side.label,
            side.dead_ops
        );
        assert!(side.check.contains("exactly"), "{}", side.check);
    }
    let packed = r.sides.iter().find(|s| s.label == "packed").unwrap();
    for c in &packed.counters {
        assert!(
            c.ops_per_siw() >= 2.5,
            "sentron {}: {:.3} ops/cycle",
            c.sentron,
            c.ops_per_siw()
        );
    }
    let unpacked = r.sides.iter().find(|s| s.label == "unpacked").unwrap();
    // Same useful work: the packed form drops only the last iterations' offset updates.
    assert!(packed.total().total_ops() <= unpacked.total().total_ops());
    let report = vtpu_compiler::report::format_workload(&r);
    assert!(
        report.contains("host wall time") && report.contains("ns per SIW"),
        "{report}"
    );
}

#[test]
fn gemv_keeps_the_translation_cache_hit_rate_above_95_percent() {
    let w = workloads::gemv::build(GemvParams {
        rows: 256,
        cols: 1024,
        tile_rows: 16,
        tile_cols: 32,
        col_blocks: 2,
        sentrons: 2,
    })
    .unwrap();
    let r = workloads::run(&w, &opts()).unwrap();
    for side in &r.sides {
        assert!(
            side.dead_ops.is_empty(),
            "{}: {:?}",
            side.label,
            side.dead_ops
        );
        assert!(side.check.contains("within tolerance"), "{}", side.check);
        let hit = side.total().ppt_hit_rate().unwrap();
        assert!(hit >= 0.95, "{}: PPT hit rate {hit}", side.label);
    }
    let packed = r.sides.iter().find(|s| s.label == "packed").unwrap();
    let prefetches: usize = packed.compiled.streams.iter().map(|s| s.prefetches).sum();
    assert!(prefetches >= 2, "the band pages are prefetched");
    // The compiler places pages by the best-scoring curve for the order bands are read
    // in (row-major bands: Hilbert's locality does not match it).
    let best = r
        .layout
        .scores
        .iter()
        .map(|s| s.sequential)
        .fold(0.0, f64::max);
    let chosen = r
        .layout
        .scores
        .iter()
        .find(|s| s.layout == r.layout.layout)
        .unwrap();
    assert_eq!(chosen.sequential, best, "{:?}", r.layout.scores);
    assert!(best > 0.7, "{:?}", r.layout.scores);
}
