//! Compile many random graphs packed and unpacked, run both on the reference executor
//! (and the packed one on the fast executor, and the unpacked program recompiled from
//! its assembly) and compare every page; also requires no dead ops. Prints failures
//! and pipelining statistics.
//!
//! Run: `cargo run --release -p vtpu-compiler --example random_stress -- [COUNT] [FIRST_SEED]`

use vtpu_compiler::random::{random_graph, RandomSpec};
use vtpu_compiler::{compile, CompileOptions};
use vtpu_phext::{Layout, PhextSpace};
use vtpu_runtime::{ExecutorKind, RunConfig};

type Pages = Vec<(vtpu_phext::Coord, Vec<u8>)>;

fn pages(p: &vtpu_isa::Program, n: usize) -> Result<Pages, String> {
    pages_on(p, n, ExecutorKind::Reference)
}

fn pages_on(p: &vtpu_isa::Program, n: usize, executor: ExecutorKind) -> Result<Pages, String> {
    let space = PhextSpace::new(Layout::ZOrder);
    vtpu_runtime::load_pages(p, &space).map_err(|e| e.to_string())?;
    let cfg = RunConfig {
        sentrons: n,
        executor,
        pin: false,
        word_limit: 50_000_000,
        ..RunConfig::default()
    };
    vtpu_runtime::run(p, &space, &cfg).map_err(|e| e.to_string())?;
    let mut v: Vec<_> = space
        .pages()
        .iter()
        .map(|pg| (pg.coord(), pg.read(|b| b.to_vec())))
        .collect();
    v.sort_by_key(|x| x.0);
    Ok(v)
}

fn main() {
    let count: u64 = std::env::args()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(500);
    let first: u64 = std::env::args()
        .nth(2)
        .and_then(|x| x.parse().ok())
        .unwrap_or(1000);
    let (mut fails, mut loops, mut piped, mut skipped) = (0, 0, 0, 0);
    for seed in first..first + count {
        let spec = RandomSpec {
            seed,
            sentrons: 1 + (seed % 3) as u32,
            max_trip: 9,
            chains: seed % 2 == 0,
            ops_per_phase: 12 + (seed % 30) as usize,
            phases: 2 + (seed % 5) as usize,
            ..RandomSpec::default()
        };
        let always = seed % 4 < 2;
        let opts = CompileOptions {
            pipeline_always: always,
            ..CompileOptions::packed()
        };
        let g = random_graph(&spec).expect("graph");
        let n = spec.sentrons as usize;
        let r = (|| -> Result<(), String> {
            let un = match compile(&g, &CompileOptions::unpacked()) {
                Ok(u) => u,
                // Graphs that need more registers than the sentron has, even one op
                // per word: the compiler rightly refuses them.
                Err(vtpu_compiler::CompileError::RegisterPressure { .. }) => {
                    skipped += 1;
                    return Ok(());
                }
                Err(e) => return Err(format!("unpacked: {e}")),
            };
            let pk = compile(&g, &opts).map_err(|e| format!("packed: {e}"))?;
            for s in &pk.streams {
                for l in &s.loops {
                    loops += 1;
                    piped += usize::from(l.pipelined);
                }
            }
            for (what, p) in [("unpacked", &un.program), ("packed", &pk.program)] {
                let dead = vtpu_isa::validate::dead_ops(p);
                if !dead.is_empty() {
                    return Err(format!(
                        "{what}: {} dead op(s), first: {}",
                        dead.len(),
                        dead[0]
                    ));
                }
            }
            let (a, b) = (pages(&un.program, n)?, pages(&pk.program, n)?);
            if a != b {
                return Err("pages differ".into());
            }
            // On the fast executor too (its SIMD kernels round differently from the
            // reference's, so compare it with itself).
            if pages_on(&pk.program, n, ExecutorKind::Fast)?
                != pages_on(&un.program, n, ExecutorKind::Fast)?
            {
                return Err("fast executor: pages differ".into());
            }
            // The unpacked program as .vasm input (renamed by the frontend).
            let re = vtpu_compiler::compile_program(&un.program, &opts)
                .map_err(|e| format!("vasm frontend: {e}"))?;
            if let Some(s) = re
                .streams
                .iter()
                .find(|s| !s.frontend.starts_with("vasm, renamed"))
            {
                return Err(format!("vasm frontend fell back: {}", s.frontend));
            }
            if pages(&re.program, n)? != a {
                return Err("vasm frontend: pages differ".into());
            }
            Ok(())
        })();
        if let Err(e) = r {
            fails += 1;
            println!("seed {seed} (always {always}): {e}");
        }
    }
    println!("{count} graphs, {fails} failure(s), {skipped} refused (unsatisfiable register pressure); {loops} loops, {piped} pipelined");
}
