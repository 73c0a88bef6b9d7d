use vtpu_compiler::random::{random_graph, RandomSpec};
use vtpu_compiler::{compile, CompileOptions};
fn main() {
    let (mut total, mut piped, mut looped, mut unrolled) = (0, 0, 0, 0);
    let mut whys = std::collections::HashMap::new();
    for seed in 0..200u64 {
        let spec = RandomSpec { seed, sentrons: 1 + (seed % 3) as u32, max_trip: 9, chains: seed % 2 == 0, ..RandomSpec::default() };
        let g = random_graph(&spec).unwrap();
        let pk = match compile(&g, &CompileOptions { pipeline_always: true, ..CompileOptions::packed() }) { Ok(p) => p, Err(e) => { println!("seed {seed}: {e}"); continue } };
        for s in &pk.streams { for l in &s.loops { total += 1; if l.pipelined { piped += 1; if l.stages > 1 {} } if l.kernel_trips >= 2 { looped += 1; } if l.unroll > 1 { unrolled += 1; } if let Some(w) = &l.why_not { *whys.entry(w.clone()).or_insert(0) += 1; } } }
    }
    println!("loops {total} pipelined {piped} looping kernels {looped} unrolled {unrolled}");
    for (w, c) in whys { println!("  {c}: {w}"); }
}
