//! Host cost of the fast executor's dispatch: ns per SIW for a long stream of cheap ops.
//!
//! The stream is a counted loop whose words carry a scalar add in the D slot, a
//! coordinate step in the S slot and the loop branch in the C slot (3 ops per word), plus
//! a variant with only the loop branch (1 op per word). Warm-up run first, then the median
//! of several runs. Run: `cargo run --release --example siw_bench [-- WORDS]`

use anyhow::Result;
use std::time::Instant;
use vtpu_phext::{Layout, PhextSpace};
use vtpu_runtime::{ExecutorKind, RunConfig};

fn measure(src: &str, words: u64) -> Result<(f64, f64)> {
    let program =
        vtpu_isa::asm::assemble_file("siw_bench", src).map_err(|e| anyhow::anyhow!("{e}"))?;
    let cfg = RunConfig {
        sentrons: 1,
        executor: ExecutorKind::Fast,
        ..RunConfig::default()
    };
    let mut samples = Vec::new();
    let mut ops_per_siw = 0.0;
    for i in 0..6 {
        let space = PhextSpace::new(Layout::ZOrder);
        let t0 = Instant::now();
        let r = vtpu_runtime::run(&program, &space, &cfg)?;
        let ns = t0.elapsed().as_nanos() as f64;
        let c = &r.counters[0];
        assert!(c.siws >= words, "the loop ran {} words", c.siws);
        ops_per_siw = c.ops_per_siw();
        if i > 0 {
            samples.push(c.host_ns as f64 / c.siws as f64);
        }
        let _ = ns;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    Ok((samples[samples.len() / 2], ops_per_siw))
}

fn main() -> Result<()> {
    let words: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(50_000_000);
    let full = format!(
        "DLI r1, {words}\nSCLI c0, 1.1.1/1.1.1/1.1.1\nDLI r3, 1\nDLI r4, -1\n\
         top:\n  DADDI r2, r2, 7 | SINDEX c1, c0, scroll, r3 | CLOOP r1, top\n"
    );
    let thin = format!("DLI r1, {words}\ntop:\n  CLOOP r1, top\n");
    let (ns_full, o_full) = measure(&full, words)?;
    let (ns_thin, o_thin) = measure(&thin, words)?;
    println!(
        "fast executor, 1 sentron, {words} words per run, median of 5 after warm-up (host figures)"
    );
    println!(
        "  DADDI | SINDEX | CLOOP : {ns_full:.2} ns per SIW ({o_full:.2} ops/SIW, {:.2} ns per op)",
        ns_full / o_full
    );
    println!("  CLOOP only            : {ns_thin:.2} ns per SIW ({o_thin:.2} ops/SIW)");
    Ok(())
}
