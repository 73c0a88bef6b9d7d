//! Run both workloads and print their before/after reports.
//! `cargo run --release -p vtpu-compiler --example workloads [-- micro|gemv]`
fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    let opts = vtpu_compiler::workloads::RunOptions::default();
    if which.is_empty() || which == "micro" {
        let w = vtpu_compiler::workloads::microvtpu_batched::build(Default::default()).unwrap();
        match vtpu_compiler::workloads::run(&w, &opts) {
            Ok(r) => print!("{}", vtpu_compiler::report::format_workload(&r)),
            Err(e) => println!("error: {e}"),
        }
    }
    if which.is_empty() || which == "gemv" {
        let w = vtpu_compiler::workloads::gemv::build(Default::default()).unwrap();
        match vtpu_compiler::workloads::run(&w, &opts) {
            Ok(r) => print!("{}", vtpu_compiler::report::format_workload(&r)),
            Err(e) => println!("error: {e}"),
        }
    }
}
