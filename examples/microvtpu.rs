//! microvtpu: the classic two-sentron scenario, as real SIW programs on two threads.
//!
//! Alice (sentron 0) gathers q = 3, k = 7 and v = 2 from phext space, computes
//! q * k * v = 42, scatters it back and sends it to Bob (sentron 1) with CSEND. Bob
//! receives it with CRECV, gathers the residual 5, computes 47 and scatters it. Then
//! phext space is saved to a .phext manifest + sidecar, loaded back, and the results are
//! read from the reloaded copy. The programs are `examples/vasm/microvtpu.vasm`, which
//! `vtpu run examples/vasm/microvtpu.vasm --report` runs too.
//!
//! Run: `cargo run --release --example microvtpu [-- OUTPUT_DIR]`

use anyhow::{bail, Context, Result};
use vtpu_phext::{Coord, Layout, LoadMode, PhextSpace};
use vtpu_runtime::{ExecutorKind, RunConfig};

const PROGRAM: &str = include_str!("vasm/microvtpu.vasm");

fn read1(space: &PhextSpace, at: &str) -> Result<f32> {
    let coord = Coord::parse(at)?;
    let page = space
        .get(coord)
        .with_context(|| format!("no page at {coord}"))?;
    let mut v = [0f32; 1];
    page.read_f32(0, &mut v)?;
    Ok(v[0])
}

fn main() -> Result<()> {
    let program = vtpu_isa::asm::assemble_file("examples/vasm/microvtpu.vasm", PROGRAM)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let space = vtpu_runtime::build_space(&program, Layout::ZOrder)?;
    let cfg = RunConfig {
        sentrons: 2,
        executor: ExecutorKind::Fast,
        ..RunConfig::default()
    };
    let report = vtpu_runtime::run(&program, &space, &cfg)?;

    let (q, k, v, res) = (
        read1(&space, "1.1.1/1.1.1/1.1.1")?,
        read1(&space, "1.1.1/1.1.1/1.1.2")?,
        read1(&space, "1.1.1/1.1.1/1.1.3")?,
        read1(&space, "1.1.1/1.1.1/1.1.4")?,
    );
    let alice = read1(&space, "1.1.1/1.1.2/1.1.1")?;
    let bob = read1(&space, "1.1.1/1.1.2/1.1.2")?;
    println!("microvtpu on 2 sentron threads (fast executor)");
    println!("  Alice (sentron 0): gathered q={q} k={k} v={v}, computed q*k*v = {alice}, scattered it to 1.1.1/1.1.2/1.1.1 and sent it to Bob");
    println!("  Bob   (sentron 1): received {alice}, gathered residual {res}, computed {bob}, scattered it to 1.1.1/1.1.2/1.1.2");
    for (name, c) in ["Alice", "Bob"].iter().zip(&report.counters) {
        println!(
            "  {name:<5} counters: {} SIWs, {} ops, {:.3} ops/cycle (virtual), utilization {:.1}% (D {:.0}% S {:.0}% C {:.0}%), PPT hit rate {}, host {:.1} us",
            c.siws,
            c.total_ops(),
            c.ops_per_siw(),
            100.0 * c.utilization(),
            100.0 * c.pipe_utilization(0),
            100.0 * c.pipe_utilization(1),
            100.0 * c.pipe_utilization(2),
            c.ppt_hit_rate().map(|h| format!("{:.1}%", 100.0 * h)).unwrap_or_else(|| "n/a".into()),
            c.host_ns as f64 / 1e3,
        );
    }

    let dir = match std::env::args().nth(1) {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir().join(format!("microvtpu-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let manifest = dir.join("microvtpu.phext");
    space.save(&manifest)?;
    let reloaded = PhextSpace::load(&manifest, LoadMode::Map)?;
    let (a2, b2) = (
        read1(&reloaded, "1.1.1/1.1.2/1.1.1")?,
        read1(&reloaded, "1.1.1/1.1.2/1.1.2")?,
    );
    println!(
        "  persisted phext space to {} and reloaded it: Alice's page = {a2}, Bob's page = {b2}",
        manifest.display()
    );
    if (alice, bob, a2, b2) != (42.0, 47.0, 42.0, 47.0) {
        bail!("wrong results: expected 42 and 47");
    }
    println!("  result survived the round trip: 42 and 47");
    Ok(())
}
