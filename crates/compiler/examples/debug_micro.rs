fn main() {
    let w = vtpu_compiler::workloads::microvtpu_batched::build(Default::default()).unwrap();
    let pk = vtpu_compiler::compile(&w.graph, &vtpu_compiler::CompileOptions::packed()).unwrap();
    let text = vtpu_isa::disassemble(&pk.program);
    for l in text.lines().filter(|l| !l.starts_with(".page")) { println!("{l}"); }
}
