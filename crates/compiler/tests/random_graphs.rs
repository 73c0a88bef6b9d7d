//! Many random graphs (sentrons, loops, carried values, in-place accumulators, pages
//! written and read back, messages and collectives): the packed program validates,
//! has no dead ops, and leaves every page bit-identical to the unpacked program's on
//! the reference executor; so does the unpacked program recompiled from its .vasm.
//! (`cargo run --release -p vtpu-compiler --example random_stress -- 5000` runs more.)

mod common;

use vtpu_compiler::random::{random_graph, RandomSpec};
use vtpu_compiler::{compile, compile_program, CompileOptions};
use vtpu_runtime::ExecutorKind;

fn check(spec: &RandomSpec, opts: &CompileOptions) {
    let g = random_graph(spec).expect("generator builds valid graphs");
    let n = spec.sentrons as usize;
    let s = spec.seed;
    let un = compile(&g, &CompileOptions::unpacked())
        .unwrap_or_else(|e| panic!("seed {s}: unpacked: {e}"));
    let pk = compile(&g, opts).unwrap_or_else(|e| panic!("seed {s}: packed: {e}"));
    for (what, p) in [("unpacked", &un.program), ("packed", &pk.program)] {
        let dead = vtpu_isa::validate::dead_ops(p);
        assert!(
            dead.is_empty(),
            "seed {s}: {what}: dead ops {:?}",
            &dead[..dead.len().min(3)]
        );
    }
    let (ru, pu) = common::run(&un.program, n, ExecutorKind::Reference);
    let (rp, pp) = common::run(&pk.program, n, ExecutorKind::Reference);
    common::same_pages(&pu, &pp, &format!("seed {s}"));
    let (tu, tp) = (ru.total(), rp.total());
    assert!(
        tp.siws <= tu.siws,
        "seed {s}: packed ran more words ({} > {})",
        tp.siws,
        tu.siws
    );
    // The unpacked program as assembly input: renamed by the frontend, same pages.
    let re = compile_program(&un.program, opts)
        .unwrap_or_else(|e| panic!("seed {s}: vasm frontend: {e}"));
    assert!(
        re.streams
            .iter()
            .all(|x| x.frontend.starts_with("vasm, renamed")),
        "seed {s}"
    );
    let (_, pr) = common::run(&re.program, n, ExecutorKind::Reference);
    common::same_pages(&pu, &pr, &format!("seed {s} (vasm frontend)"));
}

#[test]
fn random_graphs_single_sentron() {
    for seed in 0..80 {
        let spec = RandomSpec {
            seed,
            sentrons: 1,
            messages: false,
            chains: seed % 2 == 0,
            ..RandomSpec::default()
        };
        check(&spec, &CompileOptions::packed());
    }
}

#[test]
fn random_graphs_with_messages() {
    for seed in 100..180 {
        let spec = RandomSpec {
            seed,
            sentrons: 2 + (seed % 2) as u32,
            chains: seed % 3 == 0,
            ..RandomSpec::default()
        };
        check(&spec, &CompileOptions::packed());
    }
}

#[test]
fn random_graphs_always_pipelined() {
    let opts = CompileOptions {
        pipeline_always: true,
        ..CompileOptions::packed()
    };
    for seed in 200..320 {
        let spec = RandomSpec {
            seed,
            sentrons: 1 + (seed % 3) as u32,
            max_trip: 9,
            chains: seed % 2 == 0,
            ..RandomSpec::default()
        };
        check(&spec, &opts);
    }
}
