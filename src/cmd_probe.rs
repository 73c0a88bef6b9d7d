//! `vtpu probe`: this machine's measured ceilings (crates/profile `probe.rs`), from the
//! cache under `<cache>/probe/` unless --force or the cache is not this machine's.

use anyhow::{Context, Result};
use std::path::PathBuf;
use vtpu_profile::probe::{load_or_probe, Probe, ProbeOptions, ProbeSource};
use vtpu_profile::report::bytes;

#[derive(clap::Args)]
pub struct ProbeArgs {
    /// Measure again even if this machine's probe is cached.
    #[arg(long)]
    pub force: bool,
    /// Also write the probe as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Bandwidth buffer in MiB (default: 8x the last-level cache, at least 256).
    #[arg(long, value_name = "MIB", hide = true)]
    pub buffer_mib: Option<usize>,
    /// Timed repetitions per figure (the median is kept).
    #[arg(long, value_name = "N", default_value_t = 7, hide = true)]
    pub reps: usize,
}

/// The cached probe of this machine, or a fresh one; says on stderr which.
pub fn probe(force: bool, opts: &ProbeOptions) -> Result<(Probe, String)> {
    let dir = crate::fetch::cache_dir()?;
    let (p, src) = load_or_probe(&dir, opts, force).context("cannot probe this machine")?;
    let text = match src {
        ProbeSource::Cached(path) => format!("cached probe {}", path.display()),
        ProbeSource::Fresh {
            path,
            miss,
            save_error,
        } => {
            eprintln!("vtpu: {miss}: measured this machine now");
            match save_error {
                Some(e) => {
                    eprintln!("vtpu: warning: {e}");
                    format!("measured now ({miss}); not cached: {e}")
                }
                None => format!("measured now ({miss}), cached in {}", path.display()),
            }
        }
    };
    Ok((p, text))
}

pub fn probe_cmd(a: ProbeArgs) -> Result<()> {
    if let Some(j) = &a.json {
        crate::cmd_profile::check_writable(j, "--json")?;
    }
    let opts = ProbeOptions {
        buffer_bytes: a.buffer_mib.map(|m| m << 20),
        reps: a.reps.max(1),
        max_threads: None,
    };
    let (p, src) = probe(a.force, &opts)?;
    println!(
        "{} ({} cores; {})",
        p.fingerprint.cpu_model,
        p.fingerprint.cores,
        p.fingerprint.features.join(" ")
    );
    println!("source: {src}");
    let caches: Vec<String> = p
        .caches
        .iter()
        .map(|c| {
            format!(
                "L{} {} {} (shared by {})",
                c.level,
                c.kind.to_lowercase(),
                bytes(c.size_bytes),
                c.shared_by
            )
        })
        .collect();
    println!("caches: {}", caches.join(", "));
    println!(
        "streaming read over {}, median of {} after a warm-up; f32: {}; int8: {}",
        bytes(p.buffer_bytes),
        p.reps,
        p.f32_kernel,
        p.int8_kernel
    );
    println!(
        "{:>7} {:>12} {:>14} {:>12}",
        "threads", "read GB/s", "f32 GFLOP/s", "int8 GOP/s"
    );
    for c in &p.ceilings {
        println!(
            "{:>7} {:>12.1} {:>14.1} {:>12.1}",
            c.threads, c.read_gbs, c.f32_gflops, c.int8_gops
        );
    }
    if let Some(j) = &a.json {
        std::fs::write(j, serde_json::to_string_pretty(&p)?)
            .with_context(|| format!("cannot write {}", j.display()))?;
    }
    Ok(())
}
