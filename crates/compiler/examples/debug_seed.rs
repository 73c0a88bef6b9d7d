use vtpu_compiler::random::{random_graph, RandomSpec};
use vtpu_compiler::{compile, CompileOptions};
fn main() {
    let seed: u64 = std::env::args().nth(1).unwrap().parse().unwrap();
    let spec = RandomSpec { seed, sentrons: 1 + (seed % 3) as u32, max_trip: 9, chains: seed % 2 == 0, ops_per_phase: 12 + (seed % 30) as usize, phases: 2 + (seed % 5) as usize, ..RandomSpec::default() };
    let g = random_graph(&spec).unwrap();
    let un = compile(&g, &CompileOptions::unpacked()).unwrap();
    let pk = compile(&g, &CompileOptions { pipeline_always: seed % 4 < 2, ..CompileOptions::packed() }).unwrap();
    std::fs::write("/tmp/dbg/un.vasm", vtpu_isa::disassemble(&un.program)).unwrap();
    std::fs::write("/tmp/dbg/pk.vasm", vtpu_isa::disassemble(&pk.program)).unwrap();
    for s in &pk.streams { for l in &s.loops { println!("{:?}", l); } }
    println!("sentrons {}", spec.sentrons);
}
